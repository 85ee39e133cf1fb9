//! The checker: one thread that runs every real's check on its schedule,
//! all of them over non-blocking sockets and one `poll(2)`, so hundreds of
//! reals cost one thread and a descriptor per check in flight, and the
//! control socket never waits on a real. It only does the I/O: each outcome
//! goes back to the control plane, which keeps the rise/fall state
//! (`monitor`).
//!
//! The plane hands it the whole set of targets whenever it changes; a
//! target is known by an id that the plane changes whenever the target's
//! check changes, so an outcome of an old check is never mistaken for one
//! of the new.

use super::probe::{Failure, Probe};
use super::spec::Target;
use crossbeam::channel::{self, Receiver, Sender, TryRecvError};
use hashbrown::{HashMap, HashSet};
use log::warn;
use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A target's id: new for every real and for every change of its check.
pub type TargetId = u64;

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub id: TargetId,
    pub result: Result<(), Failure>,
}

/// New targets' first checks are spread over this much (or their interval
/// if shorter), so a thousand reals added at once are not a thousand
/// connections in the same millisecond.
const FIRST_CHECK_SPREAD: Duration = Duration::from_secs(1);

/// The longest the thread sleeps in `poll(2)` without a reason to wake.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// The control plane's handle on the checker thread. Dropping it stops
/// the thread (and closes every socket it had open).
pub struct Checker {
    targets: Option<Sender<Vec<(TargetId, Target)>>>,
    outcomes: Receiver<Outcome>,
    /// A byte written here wakes the thread from `poll(2)`; closing it
    /// stops the thread.
    wake: Option<UnixStream>,
    thread: Option<JoinHandle<()>>,
}

impl Checker {
    pub fn spawn() -> io::Result<Checker> {
        let (wake, wakee) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        wakee.set_nonblocking(true)?;
        let (targets_tx, targets_rx) = channel::unbounded();
        let (outcomes_tx, outcomes_rx) = channel::unbounded();
        let thread = thread::Builder::new()
            .name("sluice-health".into())
            .spawn(move || {
                Runner {
                    targets: HashMap::new(),
                    control: targets_rx,
                    outcomes: outcomes_tx,
                    wakee,
                    unavailable_sources: HashSet::new(),
                }
                .run()
            })?;
        Ok(Checker {
            targets: Some(targets_tx),
            outcomes: outcomes_rx,
            wake: Some(wake),
            thread: Some(thread),
        })
    }

    /// Replaces the set of targets: new ids start (their first check
    /// soon), missing ones stop, the others carry on on their schedule.
    pub fn set_targets(&self, targets: Vec<(TargetId, Target)>) {
        if let Some(tx) = &self.targets {
            let _ = tx.send(targets);
        }
        if let Some(mut w) = self.wake.as_ref() {
            // A full socket buffer already holds a wake-up.
            let _ = w.write(&[1]);
        }
    }

    /// The outcomes reported since the last call.
    pub fn outcomes(&self) -> impl Iterator<Item = Outcome> + '_ {
        self.outcomes.try_iter()
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.targets.take();
        self.wake.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One target on its schedule.
struct Scheduled {
    target: Target,
    /// When its next check starts (while none runs).
    due: Instant,
    running: Option<Running>,
}

struct Running {
    probe: Probe,
    started: Instant,
    deadline: Instant,
}

struct Runner {
    targets: HashMap<TargetId, Scheduled>,
    control: Receiver<Vec<(TargetId, Target)>>,
    outcomes: Sender<Outcome>,
    wakee: UnixStream,
    /// Source addresses the host turned out not to have, each logged once.
    unavailable_sources: HashSet<Ipv4Addr>,
}

impl Runner {
    fn run(mut self) {
        let mut fds: Vec<libc::pollfd> = Vec::new();
        let mut ids: Vec<TargetId> = Vec::new();
        loop {
            loop {
                match self.control.try_recv() {
                    Ok(set) => self.reconcile(set, Instant::now()),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            let now = Instant::now();
            if !self.start_due(now) || !self.expire(now) {
                return;
            }
            fds.clear();
            ids.clear();
            fds.push(libc::pollfd {
                fd: self.wakee.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
            let mut wake_at = now + MAX_SLEEP;
            for (&id, s) in &self.targets {
                match &s.running {
                    Some(r) => {
                        fds.push(libc::pollfd {
                            fd: r.probe.fd(),
                            events: r.probe.events(),
                            revents: 0,
                        });
                        ids.push(id);
                        wake_at = wake_at.min(r.deadline);
                    }
                    None => wake_at = wake_at.min(s.due),
                }
            }
            let sleep = wake_at.saturating_duration_since(now);
            // Round up: waking a little early would only spin.
            let ms = sleep.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
            // SAFETY: fds is a valid array of fds.len() pollfd structs.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // Nothing sensible to do but try again shortly.
                thread::sleep(Duration::from_millis(10));
                continue;
            }
            if fds[0].revents != 0 && !self.drain_wake() {
                return;
            }
            let now = Instant::now();
            for (pfd, &id) in fds[1..].iter().zip(&ids) {
                if pfd.revents == 0 {
                    continue;
                }
                let Some(s) = self.targets.get_mut(&id) else {
                    continue;
                };
                let Some(r) = s.running.as_mut() else {
                    continue;
                };
                if let Some(result) = r.probe.advance(pfd.revents) {
                    let started = r.started;
                    s.running = None;
                    s.due = next_due(started, s.target.interval_ms, now);
                    if self.outcomes.send(Outcome { id, result }).is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Takes the plane's new set of targets.
    fn reconcile(&mut self, set: Vec<(TargetId, Target)>, now: Instant) {
        let wanted: HashMap<TargetId, Target> = set.into_iter().collect();
        self.targets.retain(|id, _| wanted.contains_key(id));
        let mut fresh: Vec<(TargetId, Target)> = wanted
            .into_iter()
            .filter(|(id, _)| !self.targets.contains_key(id))
            .collect();
        fresh.sort_by_key(|(id, _)| *id);
        let n = fresh.len() as u32;
        for (i, (id, target)) in fresh.into_iter().enumerate() {
            let spread = FIRST_CHECK_SPREAD.min(Duration::from_millis(target.interval_ms.into()));
            let due = now + spread * i as u32 / n.max(1);
            self.targets.insert(
                id,
                Scheduled {
                    target,
                    due,
                    running: None,
                },
            );
        }
    }

    /// Starts every check that is due. False if the plane is gone.
    fn start_due(&mut self, now: Instant) -> bool {
        for (&id, s) in self.targets.iter_mut() {
            if s.running.is_some() || s.due > now {
                continue;
            }
            match Probe::start(&s.target) {
                Ok(probe) => {
                    if let Some(ip) = probe.source_unavailable() {
                        if self.unavailable_sources.insert(ip) {
                            warn!(
                                "health: {ip} is not an address of the host (its port has no \
                                 kernel twin?): checks from it go from the kernel's choice"
                            );
                        }
                    }
                    s.running = Some(Running {
                        probe,
                        started: now,
                        deadline: now + Duration::from_millis(s.target.timeout_ms.into()),
                    })
                }
                Err(failure) => {
                    s.due = next_due(now, s.target.interval_ms, now);
                    let outcome = Outcome {
                        id,
                        result: Err(failure),
                    };
                    if self.outcomes.send(outcome).is_err() {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Fails every check past its deadline. False if the plane is gone.
    fn expire(&mut self, now: Instant) -> bool {
        for (&id, s) in self.targets.iter_mut() {
            let Some(r) = &s.running else {
                continue;
            };
            if r.deadline > now {
                continue;
            }
            let failure = r.probe.timed_out();
            s.due = next_due(r.started, s.target.interval_ms, now);
            s.running = None;
            let outcome = Outcome {
                id,
                result: Err(failure),
            };
            if self.outcomes.send(outcome).is_err() {
                return false;
            }
        }
        true
    }

    /// Empties the wake-up socket. False when the plane closed it.
    fn drain_wake(&mut self) -> bool {
        let mut buf = [0u8; 64];
        loop {
            match self.wakee.read(&mut buf) {
                Ok(0) => return false,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }
}

/// A check starts `interval` after the previous one started, or at once if
/// that one ran longer.
fn next_due(started: Instant, interval_ms: u32, now: Instant) -> Instant {
    (started + Duration::from_millis(interval_ms.into())).max(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::health::spec::CheckKind;
    use std::net::{SocketAddrV4, TcpListener};
    use std::os::fd::{FromRawFd, OwnedFd};

    fn target(addr: SocketAddrV4, kind: CheckKind, interval_ms: u32, timeout_ms: u32) -> Target {
        Target {
            addr,
            source: None,
            kind,
            interval_ms,
            timeout_ms,
        }
    }

    fn local(listener: &TcpListener) -> SocketAddrV4 {
        match listener.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            a => panic!("{a}"),
        }
    }

    /// The next `n` outcomes, waiting up to `within`.
    fn collect(c: &Checker, n: usize, within: Duration) -> Vec<Outcome> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        while out.len() < n && Instant::now() < deadline {
            out.extend(c.outcomes());
            thread::sleep(Duration::from_millis(5));
        }
        out
    }

    /// The first outcome of one check of `target`.
    fn check_once(target: Target) -> Result<(), Failure> {
        let c = Checker::spawn().unwrap();
        c.set_targets(vec![(1, target)]);
        let got = collect(&c, 1, Duration::from_secs(5));
        got.into_iter().next().expect("an outcome").result
    }

    fn tcp(addr: SocketAddrV4) -> Target {
        target(addr, CheckKind::Tcp, 60_000, 400)
    }

    fn http(addr: SocketAddrV4, path: &str) -> Target {
        let kind = CheckKind::Http {
            path: path.into(),
            expect: 200,
        };
        target(addr, kind, 60_000, 400)
    }

    /// A one-connection HTTP server: reads the request, waits `delay`,
    /// answers `answer`, closes. Returns its address and the request.
    fn serve_once(
        answer: &'static [u8],
        delay: Duration,
    ) -> (SocketAddrV4, thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = local(&listener);
        let t = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 512];
            while !req.ends_with(b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            thread::sleep(delay);
            let _ = s.write_all(answer);
            String::from_utf8_lossy(&req).into_owned()
        });
        (addr, t)
    }

    #[test]
    fn tcp_check_connects_or_says_why_not() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(check_once(tcp(local(&listener))), Ok(()));
        let closed = local(&listener);
        drop(listener);
        assert_eq!(check_once(tcp(closed)), Err(Failure::Refused));
        // A listener whose queue is full drops the SYN: the check times out.
        let full = full_listener();
        let started = Instant::now();
        assert_eq!(check_once(tcp(full.0)), Err(Failure::Timeout));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(390) && took < Duration::from_millis(1500),
            "a 400 ms timeout took {took:?}"
        );
    }

    /// A listener with a backlog of 0 and one connection waiting in it,
    /// so the next SYN is dropped. Returns its address and what keeps it so.
    fn full_listener() -> (SocketAddrV4, OwnedFd, std::net::TcpStream) {
        // SAFETY: plain socket calls on a fresh descriptor; results checked.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0);
            let owned = OwnedFd::from_raw_fd(fd);
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
                },
                sin_zero: [0; 8],
            };
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            assert_eq!(
                libc::bind(fd, (&sin as *const libc::sockaddr_in).cast(), len),
                0
            );
            assert_eq!(libc::listen(fd, 0), 0);
            let mut bound: libc::sockaddr_in = std::mem::zeroed();
            let mut blen = len;
            assert_eq!(
                libc::getsockname(fd, (&mut bound as *mut libc::sockaddr_in).cast(), &mut blen),
                0
            );
            let addr =
                SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, u16::from_be(bound.sin_port));
            let first = std::net::TcpStream::connect(addr).unwrap();
            (addr, owned, first)
        }
    }

    #[test]
    fn checks_go_from_the_source_address_or_the_kernels_choice() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let from = |source: &str| {
            let t = Target {
                source: Some(source.parse().unwrap()),
                ..tcp(local(&listener))
            };
            assert_eq!(check_once(t), Ok(()), "from {source}");
            let (_, peer) = listener.accept().unwrap();
            peer.ip().to_string()
        };
        assert_eq!(from("127.0.0.2"), "127.0.0.2");
        // An address the host does not have (a port without a kernel twin):
        // the kernel chooses, the check still runs.
        assert_eq!(from("192.0.2.1"), "127.0.0.1");
    }

    #[test]
    fn http_check_judges_the_status_line() {
        let (addr, server) = serve_once(
            b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
            Duration::ZERO,
        );
        assert_eq!(check_once(http(addr, "/health?x=1")), Ok(()));
        let request = server.join().unwrap();
        assert!(
            request.starts_with("GET /health?x=1 HTTP/1.0\r\n"),
            "{request:?}"
        );
        assert!(
            request.contains(&format!("\r\nHost: {addr}\r\n")),
            "{request:?}"
        );
        let (addr, _s) = serve_once(
            b"HTTP/1.1 500 Internal Server Error\r\n\r\n",
            Duration::ZERO,
        );
        assert_eq!(check_once(http(addr, "/")), Err(Failure::HttpStatus(500)));
        let (addr, _s) = serve_once(b"hello there\r\n", Duration::ZERO);
        assert_eq!(check_once(http(addr, "/")), Err(Failure::HttpMalformed));
        let (addr, _s) = serve_once(b"", Duration::ZERO);
        assert_eq!(check_once(http(addr, "/")), Err(Failure::HttpClosed));
        // A status line cut short by the close still counts.
        let (addr, _s) = serve_once(b"HTTP/1.0 200 OK", Duration::ZERO);
        assert_eq!(check_once(http(addr, "/")), Ok(()));
        // Too slow: the answer comes after the 400 ms timeout.
        let (addr, _s) = serve_once(b"HTTP/1.0 200 OK\r\n\r\n", Duration::from_millis(1000));
        let started = Instant::now();
        assert_eq!(check_once(http(addr, "/")), Err(Failure::HttpTimeout));
        assert!(started.elapsed() < Duration::from_millis(900));
        // Nothing listening: refused, as for TCP.
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            local(&l)
        };
        assert_eq!(check_once(http(closed, "/")), Err(Failure::Refused));
    }

    #[test]
    fn checks_repeat_at_their_interval_and_stop_when_removed() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = Checker::spawn().unwrap();
        let t = target(local(&listener), CheckKind::Tcp, 100, 500);
        let started = Instant::now();
        c.set_targets(vec![(7, t.clone())]);
        let got = collect(&c, 4, Duration::from_secs(3));
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(got.iter().all(|o| o.id == 7 && o.result.is_ok()), "{got:?}");
        // The first at once, then one every 100 ms.
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(290) && took < Duration::from_millis(900),
            "4 checks 100 ms apart took {took:?}"
        );
        // A new id for the same real replaces the old one at once.
        c.set_targets(vec![(8, t)]);
        thread::sleep(Duration::from_millis(50));
        let got = collect(&c, 2, Duration::from_secs(2));
        assert!(got.iter().skip(1).all(|o| o.id == 8), "{got:?}");
        c.set_targets(Vec::new());
        thread::sleep(Duration::from_millis(50));
        let _ = c.outcomes().count();
        thread::sleep(Duration::from_millis(300));
        assert_eq!(c.outcomes().count(), 0, "no checks after removal");
    }

    #[test]
    fn many_targets_on_one_thread() {
        // 200 listeners, each checked every 200 ms: all answered, nothing
        // waits on anything else.
        let listeners: Vec<TcpListener> = (0..200)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let c = Checker::spawn().unwrap();
        c.set_targets(
            listeners
                .iter()
                .enumerate()
                .map(|(i, l)| (i as u64, target(local(l), CheckKind::Tcp, 200, 1000)))
                .collect(),
        );
        let got = collect(&c, 600, Duration::from_secs(5));
        assert!(got.len() >= 600, "{} outcomes", got.len());
        assert!(got.iter().all(|o| o.result.is_ok()));
        let mut seen: Vec<u64> = got.iter().map(|o| o.id).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 200);
    }
}
