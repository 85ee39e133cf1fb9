//! Reading one bounded request from a client of the control socket within
//! one deadline for the whole request. (Only root can reach that socket;
//! `/metrics`, which anyone on its address can, never waits on a client:
//! `metrics_http`.)
//!
//! Two things make a plain `read` loop wrong here:
//! - Signals. net_tap, the kernel twin's PMD, has the kernel signal the
//!   process (a real-time signal, SIGRTMIN+1 here) for every packet the
//!   kernel stack sends it. A socket read with a receive timeout is not
//!   restarted after a signal, even with SA_RESTART (signal(7)): it fails
//!   with EINTR. Health checks and ARP make such packets all the time, and
//!   a scrape that met one was answered 400 (it failed a CI run).
//! - Slow clients. A timeout per read lets a client that trickles a byte
//!   now and then hold the main lcore for as long as it likes; the
//!   deadline here is for the whole request.

use std::io::{self, Read};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// A stream whose reads can be given a timeout.
pub trait TimedStream: Read {
    fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

impl TimedStream for TcpStream {
    fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(timeout)
    }
}

impl TimedStream for UnixStream {
    fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(timeout)
    }
}

/// How a read ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// `complete` said the bytes so far make a request.
    Complete,
    /// The client closed its side first.
    Closed,
    /// More than the limit came without making a request.
    TooLarge,
    /// The deadline passed first.
    Late,
    /// The socket failed.
    Failed(io::ErrorKind),
}

/// Reads from `stream` until `complete(bytes so far, where this read's bytes
/// begin)` holds, the client closes, more than `limit` bytes arrive, or
/// `budget` has passed since the call. Interrupted reads are retried within
/// the budget. (`complete` gets the start of the new bytes so that it need
/// not scan a large request again on every read.)
pub fn read_request(
    stream: &mut impl TimedStream,
    budget: Duration,
    limit: usize,
    complete: impl Fn(&[u8], usize) -> bool,
) -> (Vec<u8>, Ended) {
    let deadline = Instant::now() + budget;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // A zero timeout would mean "no timeout" to the kernel.
        if left.is_zero() || stream.set_timeout(Some(left)).is_err() {
            return (buf, Ended::Late);
        }
        match stream.read(&mut chunk) {
            Ok(0) => return (buf, Ended::Closed),
            Ok(n) => {
                let fresh = buf.len();
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > limit {
                    return (buf, Ended::TooLarge);
                }
                if complete(&buf, fresh) {
                    return (buf, Ended::Complete);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return (buf, Ended::Late)
            }
            Err(e) => return (buf, Ended::Failed(e.kind())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc};
    use std::thread;

    fn ends_in_newline(b: &[u8], _: usize) -> bool {
        b.ends_with(b"\n")
    }

    extern "C" fn nothing(_: libc::c_int) {}

    #[test]
    fn a_signal_during_the_read_does_not_end_it() {
        // A handler without SA_RESTART, as net_tap's is; the socket
        // timeout makes the read fail with EINTR regardless.
        // SAFETY: the handler does nothing; SIGUSR2 is otherwise unused by
        // the test binary.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = nothing as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            assert_eq!(libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut()), 0);
        }
        let (mut client, mut server) = UnixStream::pair().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = thread::spawn(move || {
            // SAFETY: pthread_self has no preconditions.
            tx.send(unsafe { libc::pthread_self() }).unwrap();
            read_request(&mut server, Duration::from_secs(5), 100, ends_in_newline)
        });
        let id = rx.recv().unwrap();
        // Signal the reader a few times while it waits, then send.
        for _ in 0..5 {
            thread::sleep(Duration::from_millis(20));
            // SAFETY: the thread is alive: it waits for the request.
            assert_eq!(unsafe { libc::pthread_kill(id, libc::SIGUSR2) }, 0);
        }
        client.write_all(b"hello\n").unwrap();
        let (got, ended) = reader.join().unwrap();
        assert_eq!((got.as_slice(), ended), (&b"hello\n"[..], Ended::Complete));
    }

    #[test]
    fn the_deadline_is_for_the_whole_request_not_each_read() {
        let (mut client, mut server) = UnixStream::pair().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let trickle = {
            let stop = stop.clone();
            thread::spawn(move || {
                // A byte every 50 ms: each read alone is quick.
                while !stop.load(Ordering::Relaxed) {
                    if client.write_all(b"x").is_err() {
                        break;
                    }
                    thread::sleep(Duration::from_millis(50));
                }
            })
        };
        let started = Instant::now();
        let (got, ended) = read_request(
            &mut server,
            Duration::from_millis(400),
            1000,
            ends_in_newline,
        );
        let took = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        trickle.join().unwrap();
        assert_eq!(ended, Ended::Late);
        assert!(!got.is_empty() && got.len() < 20, "{} bytes", got.len());
        assert!(
            took < Duration::from_secs(3),
            "a trickle held the reader for {took:?}"
        );
    }

    #[test]
    fn size_close_and_completion_end_the_read() {
        let (mut client, mut server) = UnixStream::pair().unwrap();
        client.write_all(&[b'x'; 300]).unwrap();
        let (got, ended) = read_request(&mut server, Duration::from_secs(2), 100, ends_in_newline);
        assert_eq!(ended, Ended::TooLarge);
        assert!(got.len() > 100);

        let (mut client, mut server) = UnixStream::pair().unwrap();
        client.write_all(b"half").unwrap();
        drop(client);
        let (got, ended) = read_request(&mut server, Duration::from_secs(2), 100, ends_in_newline);
        assert_eq!((got.as_slice(), ended), (&b"half"[..], Ended::Closed));
    }
}
