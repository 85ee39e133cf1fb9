//! `ipvsadm --sched-flags`: the options of the sh and mh schedulers.

use std::fmt;

use super::{ParseError, SchedulerKind};

/// Scheduler flags (`ipvsadm --sched-flags`; IPVS `IP_VS_SVC_F_SCHED1` and
/// `IP_VS_SVC_F_SCHED2`). Only sh and mh take any.
#[derive(Default, Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct SchedFlags {
    /// `sh-fallback`/`mh-fallback` (`flag-1`): when the hashed real server
    /// is unavailable (weight 0), pick another by re-hashing instead of
    /// refusing the connection.
    pub fallback: bool,
    /// `sh-port`/`mh-port` (`flag-2`): hash the client's port as well as its
    /// address, so one client's connections spread over the real servers.
    pub port: bool,
}

/// ipvsadm's names for `fallback` and `port` under scheduler `kind`; `None`
/// for a scheduler that takes no flags.
fn names(kind: SchedulerKind) -> Option<(&'static str, &'static str, &'static str)> {
    match kind {
        SchedulerKind::Sh => Some((
            "sh-fallback",
            "sh-port",
            "sh-fallback, sh-port, flag-1, flag-2",
        )),
        SchedulerKind::Mh => Some((
            "mh-fallback",
            "mh-port",
            "mh-fallback, mh-port, flag-1, flag-2",
        )),
        _ => None,
    }
}

impl SchedFlags {
    /// Parses ipvsadm's comma-separated list for scheduler `kind`:
    /// `"sh-fallback,sh-port"`, or the generic `"flag-1,flag-2"`; the empty
    /// string is no flags. As in ipvsadm a flag named for another scheduler
    /// (`mh-port` for sh) is an error. Unlike ipvsadm, which passes
    /// `flag-1`..`flag-3` to any scheduler for the kernel to ignore, any
    /// flag for a scheduler that takes none, and `flag-3`, are errors too:
    /// they would do nothing, so they are most likely a mistake.
    pub fn parse(kind: SchedulerKind, s: &str) -> Result<SchedFlags, ParseError> {
        let mut flags = SchedFlags::default();
        for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let Some((fallback, port, expected)) = names(kind) else {
                return Err(ParseError::new(
                    "scheduler flag",
                    word,
                    "none: only sh and mh take flags",
                ));
            };
            if word.eq_ignore_ascii_case(fallback) || word.eq_ignore_ascii_case("flag-1") {
                flags.fallback = true;
            } else if word.eq_ignore_ascii_case(port) || word.eq_ignore_ascii_case("flag-2") {
                flags.port = true;
            } else {
                return Err(ParseError::new("scheduler flag", word, expected));
            }
        }
        Ok(flags)
    }

    /// ipvsadm's spelling of these flags for scheduler `kind`
    /// (`sh-fallback,sh-port`), which [`SchedFlags::parse`] reads back;
    /// empty when no flag is set. A scheduler without named flags shows
    /// them as `flag-1,flag-2`, as ipvsadm does.
    pub fn display(self, kind: SchedulerKind) -> impl fmt::Display {
        FlagsDisplay { flags: self, kind }
    }
}

struct FlagsDisplay {
    flags: SchedFlags,
    kind: SchedulerKind,
}

impl fmt::Display for FlagsDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (fallback, port) = names(self.kind).map_or(("flag-1", "flag-2"), |(f, p, _)| (f, p));
        let set = [(self.flags.fallback, fallback), (self.flags.port, port)];
        let mut words = set.iter().filter(|(on, _)| *on).map(|&(_, name)| name);
        if let Some(first) = words.next() {
            f.write_str(first)?;
            for word in words {
                write!(f, ",{word}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SchedulerKind::{Mh, Rr, Sh, Wlc};

    const BOTH: SchedFlags = SchedFlags {
        fallback: true,
        port: true,
    };

    #[test]
    fn parse_names_and_aliases() {
        assert_eq!(SchedFlags::parse(Sh, "sh-fallback,sh-port"), Ok(BOTH));
        assert_eq!(SchedFlags::parse(Mh, "mh-port,mh-fallback"), Ok(BOTH));
        assert_eq!(SchedFlags::parse(Sh, "flag-1,flag-2"), Ok(BOTH));
        assert_eq!(SchedFlags::parse(Mh, "flag-2, MH-Fallback"), Ok(BOTH));
        let port = SchedFlags {
            port: true,
            ..SchedFlags::default()
        };
        assert_eq!(SchedFlags::parse(Mh, "mh-port"), Ok(port));
        assert_eq!(SchedFlags::parse(Sh, "sh-port,sh-port"), Ok(port));
        for kind in SchedulerKind::ALL {
            assert_eq!(SchedFlags::parse(kind, ""), Ok(SchedFlags::default()));
        }
    }

    #[test]
    fn parse_rejects_flags_that_do_not_apply() {
        let err = SchedFlags::parse(Sh, "sh-fallback,mh-port").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown scheduler flag \"mh-port\" (expected one of: sh-fallback, sh-port, flag-1, flag-2)"
        );
        assert!(SchedFlags::parse(Mh, "sh-port").is_err());
        assert!(SchedFlags::parse(Sh, "flag-3").is_err());
        assert!(SchedFlags::parse(Sh, "fallback").is_err());
        let err = SchedFlags::parse(Rr, "flag-1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown scheduler flag \"flag-1\" (expected one of: none: only sh and mh take flags)"
        );
        assert!(SchedFlags::parse(Wlc, "sh-port").is_err());
    }

    #[test]
    fn display_round_trips() {
        assert_eq!(BOTH.display(Sh).to_string(), "sh-fallback,sh-port");
        assert_eq!(BOTH.display(Mh).to_string(), "mh-fallback,mh-port");
        assert_eq!(BOTH.display(Rr).to_string(), "flag-1,flag-2");
        assert_eq!(SchedFlags::default().display(Sh).to_string(), "");
        for kind in [Sh, Mh] {
            for fallback in [false, true] {
                for port in [false, true] {
                    let flags = SchedFlags { fallback, port };
                    let text = flags.display(kind).to_string();
                    assert_eq!(SchedFlags::parse(kind, &text), Ok(flags), "{text}");
                }
            }
        }
        let port_only = SchedFlags {
            port: true,
            ..SchedFlags::default()
        };
        assert_eq!(port_only.display(Mh).to_string(), "mh-port");
    }
}
