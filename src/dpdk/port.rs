//! Ethernet ports: set-up, link state, rx/tx bursts.

use super::{DpdkError, Mbuf, Mempool, BURST};
use crate::wire::EthernetAddress;
use arrayvec::ArrayVec;
use dpdk_sys as sys;
use std::ffi::CStr;

/// How to set a port up.
#[derive(Debug, Clone, Copy)]
pub struct PortSetup {
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    /// Use the NIC's IPv4/TCP/UDP tx checksum offload if it has all three.
    pub tx_checksum_offload: bool,
}

impl Default for PortSetup {
    fn default() -> Self {
        PortSetup {
            rx_queues: 1,
            tx_queues: 1,
            rx_desc: 1024,
            tx_desc: 1024,
            tx_checksum_offload: true,
        }
    }
}

/// `RTE_ETH_TX_OFFLOAD_{IPV4,UDP,TCP}_CKSUM` (macros bindgen cannot see).
pub const TX_OFFLOAD_CHECKSUMS: u64 = (1 << 1) | (1 << 2) | (1 << 3);
/// `RTE_ETH_RX_OFFLOAD_IPV4_CKSUM`: the NIC checks IPv4 header checksums
/// and says so in each mbuf's flags.
const RX_OFFLOAD_IPV4_CKSUM: u64 = 1 << 1;
/// `RTE_ETH_RSS_IPV4 | NONFRAG_IPV4_TCP | NONFRAG_IPV4_UDP`.
const RSS_IPV4_TCP_UDP: u64 = (1 << 2) | (1 << 4) | (1 << 5);

/// Drivers that receive from the local kernel's network stack.
const KERNEL_FED_DRIVERS: [&str; 4] = ["net_af_packet", "net_af_xdp", "net_tap", "net_virtio_user"];

/// What the driver says the port can do (recorded at set-up; offloads are
/// used by later stages).
#[derive(Debug, Clone)]
pub struct PortInfo {
    pub driver: String,
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
    pub rx_offload_capa: u64,
    pub tx_offload_capa: u64,
    pub flow_type_rss_offloads: u64,
    /// The kernel interface a virtual port is bound to (af_packet, tap),
    /// 0 for none.
    pub if_index: u32,
}

impl PortInfo {
    /// True when the port computes IPv4, TCP and UDP checksums on transmit.
    pub fn has_tx_checksum_offload(&self) -> bool {
        self.tx_offload_capa & TX_OFFLOAD_CHECKSUMS == TX_OFFLOAD_CHECKSUMS
    }

    /// True for the virtual ports whose frames can come from the local
    /// kernel, which leaves a TCP/UDP checksum partial (only the
    /// pseudo-header sum) when the sending device offloads it: veth and tap
    /// do by default, and these drivers pass the frame on as it is.
    pub fn rx_partial_checksums(&self) -> bool {
        KERNEL_FED_DRIVERS.contains(&self.driver.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkStatus {
    pub up: bool,
    pub speed_mbps: u32,
}

/// A started ethdev port. Its queues are handed out once, as `RxQueue` and
/// `TxQueue` values, so that each is polled by the one lcore that owns it.
pub struct Port {
    id: u16,
    mac: EthernetAddress,
    info: PortInfo,
    rss: bool,
    tx_checksum_offload: bool,
    rx_ip_checksum_offload: bool,
    queues: Option<Vec<(RxQueue, TxQueue)>>,
}

/// The NIC's own figures (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    /// Dropped by the NIC: rx queues full.
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    /// Receive failed for lack of mbufs.
    pub rx_nombuf: u64,
}

/// Receive queue `queue` of a port. Owned by one lcore: DPDK's rx burst on
/// a queue is not safe from two lcores at once, so the handle is neither
/// `Clone` nor `Sync`. Valid while its `Port` is (the runtime joins the
/// workers before it drops the ports).
pub struct RxQueue {
    port: u16,
    queue: u16,
}

/// Transmit queue `queue` of a port; as `RxQueue`.
pub struct TxQueue {
    port: u16,
    queue: u16,
}

impl Port {
    /// Configures `id` with the queues in `setup`, all rx queues filling
    /// from `pool`, and starts it in promiscuous mode.
    pub fn start(id: u16, setup: PortSetup, pool: &Mempool) -> Result<Port, DpdkError> {
        let info = Self::query_info(id)?;
        let call = |what: &str| format!("{what}(port {id})");
        if setup.rx_queues > info.max_rx_queues || setup.tx_queues > info.max_tx_queues {
            return Err(DpdkError::new(
                format!(
                    "port {id} ({}) has {} rx / {} tx queues but {} workers need {} of each \
                     (for net_af_packet add qpairs={} to its --vdev)",
                    info.driver,
                    info.max_rx_queues,
                    info.max_tx_queues,
                    setup.rx_queues,
                    setup.rx_queues,
                    setup.rx_queues
                ),
                22,
            ));
        }

        // SAFETY: zeroed rte_eth_conf is DPDK's "all defaults".
        let mut conf: sys::rte_eth_conf = unsafe { std::mem::zeroed() };
        // Several queues: spread flows by RSS where the NIC hashes IPv4/L4
        // (af_packet has no RSS; the kernel's fanout spreads flows instead).
        let rss_hf = info.flow_type_rss_offloads & RSS_IPV4_TCP_UDP;
        let rss = setup.rx_queues > 1 && rss_hf != 0;
        if rss {
            conf.rxmode.mq_mode = sys::RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
        }
        let tx_checksum_offload = setup.tx_checksum_offload && info.has_tx_checksum_offload();
        if tx_checksum_offload {
            conf.txmode.offloads = TX_OFFLOAD_CHECKSUMS;
        }
        // Always wanted where offered: the pipeline skips its own check of
        // a header the NIC marked good (and still checks one it did not).
        let rx_ip_checksum_offload = info.rx_offload_capa & RX_OFFLOAD_IPV4_CKSUM != 0;
        if rx_ip_checksum_offload {
            conf.rxmode.offloads |= RX_OFFLOAD_IPV4_CKSUM;
        }
        // SAFETY: valid port id (checked by dev_info_get), conf outlives the call.
        let rc = unsafe { sys::rte_eth_dev_configure(id, setup.rx_queues, setup.tx_queues, &conf) };
        if rc < 0 {
            return Err(DpdkError::new(call("rte_eth_dev_configure"), rc));
        }
        let mut rx_desc = setup.rx_desc;
        let mut tx_desc = setup.tx_desc;
        // SAFETY: the pointers are to live locals.
        let rc = unsafe { sys::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut rx_desc, &mut tx_desc) };
        if rc < 0 {
            return Err(DpdkError::new(call("rte_eth_dev_adjust_nb_rx_tx_desc"), rc));
        }
        // SAFETY: valid port.
        let socket = unsafe { sys::rte_eth_dev_socket_id(id) };
        let socket = if socket < 0 { 0 } else { socket as u32 };
        for q in 0..setup.rx_queues {
            // SAFETY: null rx_conf = driver defaults; the pool outlives the port.
            let rc = unsafe {
                sys::rte_eth_rx_queue_setup(id, q, rx_desc, socket, std::ptr::null(), pool.as_ptr())
            };
            if rc < 0 {
                return Err(DpdkError::new(
                    call(&format!("rte_eth_rx_queue_setup q{q}")),
                    rc,
                ));
            }
        }
        for q in 0..setup.tx_queues {
            // SAFETY: null tx_conf = driver defaults.
            let rc =
                unsafe { sys::rte_eth_tx_queue_setup(id, q, tx_desc, socket, std::ptr::null()) };
            if rc < 0 {
                return Err(DpdkError::new(
                    call(&format!("rte_eth_tx_queue_setup q{q}")),
                    rc,
                ));
            }
        }
        // SAFETY: configured port.
        let rc = unsafe { sys::rte_eth_dev_start(id) };
        if rc < 0 {
            return Err(DpdkError::new(call("rte_eth_dev_start"), rc));
        }
        // Promiscuous so frames for our VIPs' MAC reach us whatever the
        // port's filters; the pipeline checks destination MACs itself. Not
        // every driver supports it (that's fine).
        // SAFETY: started port.
        unsafe { sys::rte_eth_promiscuous_enable(id) };

        let mut addr = sys::rte_ether_addr::default();
        // SAFETY: addr is a live local.
        let rc = unsafe { sys::rte_eth_macaddr_get(id, &mut addr) };
        if rc < 0 {
            return Err(DpdkError::new(call("rte_eth_macaddr_get"), rc));
        }
        let queues = (0..setup.rx_queues.min(setup.tx_queues))
            .map(|q| {
                (
                    RxQueue { port: id, queue: q },
                    TxQueue { port: id, queue: q },
                )
            })
            .collect();
        Ok(Port {
            id,
            mac: EthernetAddress(addr.addr_bytes),
            info,
            rss,
            tx_checksum_offload,
            rx_ip_checksum_offload,
            queues: Some(queues),
        })
    }

    fn query_info(id: u16) -> Result<PortInfo, DpdkError> {
        let mut raw = sys::rte_eth_dev_info::default();
        // SAFETY: raw is a live local; invalid ids return an error.
        let rc = unsafe { sys::rte_eth_dev_info_get(id, &mut raw) };
        if rc < 0 {
            return Err(DpdkError::new(
                format!("rte_eth_dev_info_get(port {id})"),
                rc,
            ));
        }
        let driver = if raw.driver_name.is_null() {
            String::from("?")
        } else {
            // SAFETY: non-null driver names are static C strings.
            unsafe { CStr::from_ptr(raw.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        Ok(PortInfo {
            driver,
            max_rx_queues: raw.max_rx_queues,
            max_tx_queues: raw.max_tx_queues,
            rx_offload_capa: raw.rx_offload_capa,
            tx_offload_capa: raw.tx_offload_capa,
            flow_type_rss_offloads: raw.flow_type_rss_offloads,
            if_index: raw.if_index,
        })
    }

    pub fn id(&self) -> u16 {
        self.id
    }

    pub fn mac(&self) -> EthernetAddress {
        self.mac
    }

    pub fn info(&self) -> &PortInfo {
        &self.info
    }

    /// Whether rx queues are fed by the NIC's RSS hash.
    pub fn rss(&self) -> bool {
        self.rss
    }

    /// Whether tx checksum offload is enabled on this port.
    pub fn tx_checksum_offload(&self) -> bool {
        self.tx_checksum_offload
    }

    /// Whether the NIC checks IPv4 header checksums on receive.
    pub fn rx_ip_checksum_offload(&self) -> bool {
        self.rx_ip_checksum_offload
    }

    /// The (rx, tx) queue pairs, one per worker, handed out once: None on
    /// a second call.
    pub fn take_queues(&mut self) -> Option<Vec<(RxQueue, TxQueue)>> {
        self.queues.take()
    }

    /// The NIC's counters. Safe from the control lcore while workers poll.
    pub fn stats(&self) -> PortStats {
        let mut raw = sys::rte_eth_stats::default();
        // SAFETY: raw is a live local; the port is started.
        let rc = unsafe { sys::rte_eth_stats_get(self.id, &mut raw) };
        if rc < 0 {
            return PortStats::default();
        }
        PortStats {
            ipackets: raw.ipackets,
            opackets: raw.opackets,
            ibytes: raw.ibytes,
            obytes: raw.obytes,
            imissed: raw.imissed,
            ierrors: raw.ierrors,
            oerrors: raw.oerrors,
            rx_nombuf: raw.rx_nombuf,
        }
    }

    pub fn link(&self) -> LinkStatus {
        let mut link = sys::rte_eth_link::default();
        // SAFETY: link is a live local.
        unsafe { sys::rte_eth_link_get_nowait(self.id, &mut link) };
        LinkStatus {
            up: link.link_status() != 0,
            speed_mbps: link.link_speed,
        }
    }
}

impl Drop for Port {
    /// Stops and closes the port. Closing hands every mbuf the driver still
    /// holds back to its pool, so ports must go before their pool (and
    /// before EAL cleans up): some drivers, net_pcap's replay buffer among
    /// them, would otherwise free into a dead pool.
    fn drop(&mut self) {
        // SAFETY: valid port; dropped after the workers are joined, so no
        // lcore polls it any more.
        unsafe {
            sys::rte_eth_dev_stop(self.id);
            sys::rte_eth_dev_close(self.id);
        }
    }
}

impl RxQueue {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Receives up to the free room of `out` packets.
    #[inline]
    pub fn burst(&mut self, out: &mut ArrayVec<Mbuf, BURST>) -> usize {
        let len = out.len();
        let room = BURST - len;
        // SAFETY: Mbuf is repr(transparent) over a non-null rte_mbuf pointer,
        // so the vector's spare capacity is an array of `room` mbuf pointers;
        // the driver fills n <= room of them with owned, valid mbufs. This
        // handle is the queue's only user.
        unsafe {
            let slots = out.as_mut_ptr().add(len) as *mut *mut sys::rte_mbuf;
            let n = sys::rte_eth_rx_burst(self.port, self.queue, slots, room as u16) as usize;
            out.set_len(len + n);
            n
        }
    }
}

impl TxQueue {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sends the packets in `pkts`; those the driver took are removed,
    /// those it could not take (ring full) stay in `pkts` for the caller to
    /// retry or drop.
    #[inline]
    pub fn burst(&mut self, pkts: &mut ArrayVec<Mbuf, BURST>) -> usize {
        let len = pkts.len();
        if len == 0 {
            return 0;
        }
        // SAFETY: as in RxQueue::burst; the driver owns the first n mbufs
        // afterwards, so they are removed without running Drop, and the rest
        // shift down. This handle is the queue's only user.
        unsafe {
            let base = pkts.as_mut_ptr();
            let n = sys::rte_eth_tx_burst(
                self.port,
                self.queue,
                base as *mut *mut sys::rte_mbuf,
                len as u16,
            ) as usize;
            if n < len {
                std::ptr::copy(base.add(n), base, len - n);
            }
            pkts.set_len(len - n);
            n
        }
    }
}
