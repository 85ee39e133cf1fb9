//! The HTTP listener for `/metrics` on the main lcore. Deliberately tiny:
//! one GET per connection, bounded in size and time.
//!
//! It never waits on a client. The main lcore also answers the control
//! socket and applies the health checks' verdicts, and a listener that read
//! each client to the end of its request (as this one first did, with a
//! deadline of 2 s a client) let anyone who could reach the port stall all
//! of that: twenty connections that each sent one byte held `sluice ctl`
//! for 25 s. Sockets here are non-blocking; each call of `serve` takes what
//! has arrived, answers the requests that are complete, and keeps the rest,
//! at most `MAX_CLIENTS` of them, each until its own deadline.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Scrapes under way at once; a connection beyond them is closed unread.
pub const MAX_CLIENTS: usize = 16;
/// The most a request head may be.
const REQUEST_LIMIT: usize = 8192;
/// How long a client has to send its request and take the answer.
const DEADLINE: Duration = Duration::from_secs(2);

pub struct MetricsListener {
    listener: TcpListener,
    clients: Vec<Client>,
}

/// One scrape under way.
struct Client {
    stream: TcpStream,
    deadline: Instant,
    request: Vec<u8>,
    /// The answer and how much of it is sent, once the request is read.
    answer: Option<(Vec<u8>, usize)>,
}

impl MetricsListener {
    pub fn bind(addr: SocketAddr) -> Result<MetricsListener, String> {
        let listener =
            TcpListener::bind(addr).map_err(|e| format!("control.metrics {addr}: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("control.metrics {addr}: {e}"))?;
        Ok(MetricsListener {
            listener,
            clients: Vec::with_capacity(MAX_CLIENTS),
        })
    }

    /// The descriptors to wait on for input: the listener's and those of
    /// the clients whose request is not complete. (One whose answer waits
    /// for room in its socket is tried again on the next tick; were it
    /// here, bytes it sent after its request would wake the loop at once,
    /// again and again.)
    pub fn raw_fds(&self, out: &mut Vec<i32>) {
        out.push(self.listener.as_raw_fd());
        out.extend(
            self.clients
                .iter()
                .filter(|c| c.answer.is_none())
                .map(|c| c.stream.as_raw_fd()),
        );
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Takes new connections and moves every scrape on as far as it goes
    /// without waiting; `body` renders the metrics for each complete
    /// request.
    pub fn serve(&mut self, mut body: impl FnMut() -> String) {
        let now = Instant::now();
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    // Beyond the bound, or unusable: dropped, so closed.
                    if self.clients.len() < MAX_CLIENTS && stream.set_nonblocking(true).is_ok() {
                        self.clients.push(Client {
                            stream,
                            deadline: now + DEADLINE,
                            request: Vec::new(),
                            answer: None,
                        });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        self.clients.retain_mut(|c| c.advance(now, &mut body));
    }
}

impl Client {
    /// Reads what has come, answers once the request is there, writes what
    /// the socket takes. False once the client is done with: answered,
    /// gone, failed or late.
    fn advance(&mut self, now: Instant, body: &mut impl FnMut() -> String) -> bool {
        if now >= self.deadline {
            return false;
        }
        if self.answer.is_none() {
            let mut chunk = [0u8; 2048];
            while !head_complete(&self.request) && self.request.len() <= REQUEST_LIMIT {
                match self.stream.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => self.request.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                    Err(_) => return false,
                }
            }
            // A head, a head too large, or all the client will send.
            self.answer = Some((answer(&self.request, body), 0));
        }
        let Some((bytes, sent)) = self.answer.as_mut() else {
            return false;
        };
        while *sent < bytes.len() {
            match self.stream.write(&bytes[*sent..]) {
                Ok(0) => return false,
                Ok(n) => *sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        }
        false
    }
}

/// Whether `request` holds a whole head (the blank line that ends it).
fn head_complete(request: &[u8]) -> bool {
    request.windows(4).any(|w| w == b"\r\n\r\n") || request.windows(2).any(|w| w == b"\n\n")
}

/// The response to `request`: the metrics for `GET /metrics`.
fn answer(request: &[u8], body: &mut impl FnMut() -> String) -> Vec<u8> {
    let line = String::from_utf8_lossy(request);
    let mut words = line.split_whitespace();
    let (status, content) = match (words.next(), words.next()) {
        (Some("GET"), Some(path)) if path == "/metrics" || path.starts_with("/metrics?") => {
            ("200 OK", body())
        }
        (Some("GET"), Some(_)) => ("404 Not Found", "only /metrics here\n".to_string()),
        _ => ("400 Bad Request", "bad request\n".to_string()),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        content.len()
    )
    .into_bytes();
    out.extend_from_slice(content.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    fn listener() -> (MetricsListener, SocketAddr) {
        let l = MetricsListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        (l, addr)
    }

    /// Serves until `done` or 3 s; how many bodies were rendered.
    fn serve_until(l: &mut MetricsListener, done: impl Fn() -> bool) -> usize {
        let mut rendered = 0;
        let until = Instant::now() + Duration::from_secs(3);
        while !done() && Instant::now() < until {
            l.serve(|| {
                rendered += 1;
                "m 1\n".to_string()
            });
            thread::sleep(Duration::from_millis(5));
        }
        rendered
    }

    fn status(stream: &mut TcpStream) -> String {
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.lines().next().unwrap_or("").to_string()
    }

    #[test]
    fn silent_clients_do_not_hold_up_a_scrape() {
        let (mut l, addr) = listener();
        // Clients that connect and send a byte, then nothing.
        let idle: Vec<TcpStream> = (0..MAX_CLIENTS - 1)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"G").unwrap();
                s
            })
            .collect();
        l.serve(|| unreachable!("no request is complete"));
        assert_eq!(l.clients.len(), MAX_CLIENTS - 1);
        // A real scrape, its request in two parts, is answered at once.
        let mut scrape = TcpStream::connect(addr).unwrap();
        scrape.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
        l.serve(|| unreachable!("half a request"));
        scrape.write_all(b"Host: x\r\n\r\n").unwrap();
        scrape
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let reader = thread::spawn(move || status(&mut scrape));
        let rendered = serve_until(&mut l, || reader.is_finished());
        assert_eq!(reader.join().unwrap(), "HTTP/1.1 200 OK");
        assert_eq!(rendered, 1);
        // One more connection than the bound is closed unread.
        let extra = TcpStream::connect(addr).unwrap();
        let mut over = TcpStream::connect(addr).unwrap();
        l.serve(|| unreachable!());
        assert_eq!(l.clients.len(), MAX_CLIENTS);
        over.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        assert_eq!(status(&mut over), "", "closed without an answer");
        // The idle ones go at their deadline.
        let late = Instant::now() + DEADLINE;
        while Instant::now() < late {
            thread::sleep(Duration::from_millis(50));
        }
        l.serve(|| unreachable!());
        assert!(l.clients.is_empty());
        drop((idle, extra));
    }

    #[test]
    fn answers_other_paths_and_garbage_without_rendering() {
        for (request, expected) in [
            (
                &b"GET /other HTTP/1.1\r\n\r\n"[..],
                "HTTP/1.1 404 Not Found",
            ),
            (b"\x00\xff garbage\n\n", "HTTP/1.1 400 Bad Request"),
            (&[b'x'; REQUEST_LIMIT + 100][..], "HTTP/1.1 400 Bad Request"),
        ] {
            let (mut l, addr) = listener();
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(request).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let reader = thread::spawn(move || status(&mut s));
            let rendered = serve_until(&mut l, || reader.is_finished());
            assert_eq!(reader.join().unwrap(), expected);
            assert_eq!(rendered, 0);
        }
    }
}
