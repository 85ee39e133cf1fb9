//! sluice: a layer-4 load balancer (IPVS NAT and FULLNAT) on DPDK.
//!
//! The layout is the architecture: `wire` (packet formats) -> `net` (ARP,
//! neighbours, routes) -> `lb` (services, schedulers, sessions, NAT) ->
//! `dataplane` (the per-packet pipeline and the lcore loop), with `dpdk` at
//! the edge and `control` (configuration) beside it; `kernel` holds what
//! sluice asks of the host's Linux about the interfaces behind its ports. Everything but `dpdk`
//! and the lcore loop works on byte slices and plain structs.

/// Serializes a type as its `Display` text and deserializes it with its
/// `FromStr`, so configuration words ("tcp", "fullnat", "10.0.0.0/8") read
/// the same in the control protocol's JSON as in TOML and on the command
/// line.
macro_rules! serde_as_text {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> ::core::result::Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> ::core::result::Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

pub mod control;
pub mod dataplane;
pub mod dpdk;
pub mod kernel;
pub mod lb;
pub mod net;
pub mod wire;
