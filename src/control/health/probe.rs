//! One check of one real server over an ordinary non-blocking kernel
//! socket: connect, and for HTTP send `GET path` and read the status line.
//! Nothing here waits: the checker polls the socket with every other
//! check's and calls `advance` when it is ready, and gives up on it at its
//! deadline.

use super::spec::{CheckKind, Target};
use std::fmt;
use std::io::{self, Read, Write};
use std::mem;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Why a check failed, as `sluice ctl -L` and the log say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Nothing listens (the real's kernel answered with a RST).
    Refused,
    /// No route to the real, or its host does not answer ARP.
    Unreachable,
    /// Not connected within the timeout.
    Timeout,
    /// Another error while connecting.
    Connect(String),
    /// Connected, but no status line within the timeout.
    HttpTimeout,
    /// The status line named another status than the one expected.
    HttpStatus(u16),
    /// The answer does not start with an HTTP status line.
    HttpMalformed,
    /// The real closed the connection before answering.
    HttpClosed,
    /// A send or receive error once connected.
    HttpIo(String),
    /// No socket to check with (out of file descriptors, ...).
    Socket(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Refused => f.write_str("connect: refused"),
            Failure::Unreachable => f.write_str("connect: unreachable"),
            Failure::Timeout => f.write_str("timeout"),
            Failure::Connect(e) => write!(f, "connect: {e}"),
            Failure::HttpTimeout => f.write_str("http: timeout"),
            Failure::HttpStatus(s) => write!(f, "http status {s}"),
            Failure::HttpMalformed => f.write_str("http: malformed status line"),
            Failure::HttpClosed => f.write_str("http: closed before answering"),
            Failure::HttpIo(e) => write!(f, "http: {e}"),
            Failure::Socket(e) => write!(f, "socket: {e}"),
        }
    }
}

/// The longest status line read before the answer counts as malformed.
const MAX_STATUS_LINE: usize = 1024;

enum Stage {
    Connecting,
    Sending { sent: usize },
    Receiving,
}

/// A check in progress.
pub struct Probe {
    stream: TcpStream,
    /// The target's source address, when the host does not have it (its
    /// port has no kernel twin): the check went from the kernel's choice.
    source_unavailable: Option<Ipv4Addr>,
    stage: Stage,
    /// HTTP: the request, and what was read of the answer.
    request: Vec<u8>,
    expect: u16,
    answer: Vec<u8>,
}

/// The result of a step: still going, or done.
pub type Step = Option<Result<(), Failure>>;

impl Probe {
    /// Starts the check of `target`: opens the socket and begins
    /// connecting. A connection refused or completed at once (a local
    /// real) is already an outcome.
    pub fn start(target: &Target) -> Result<Probe, Failure> {
        let (stream, bound) = connect_nonblocking(target.addr, target.source)?;
        let (request, expect) = match &target.kind {
            CheckKind::Http { path, expect } => (request(path, target.addr), *expect),
            CheckKind::Tcp | CheckKind::None => (Vec::new(), 0),
        };
        Ok(Probe {
            stream,
            source_unavailable: target.source.filter(|_| !bound),
            stage: Stage::Connecting,
            request,
            expect,
            answer: Vec::new(),
        })
    }

    /// The source address the check could not bind to, if any.
    pub fn source_unavailable(&self) -> Option<Ipv4Addr> {
        self.source_unavailable
    }

    pub fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// What `poll(2)` should wait for.
    pub fn events(&self) -> i16 {
        match self.stage {
            Stage::Connecting | Stage::Sending { .. } => libc::POLLOUT,
            Stage::Receiving => libc::POLLIN,
        }
    }

    /// The failure of a check still going at its deadline.
    pub fn timed_out(&self) -> Failure {
        match self.stage {
            Stage::Connecting => Failure::Timeout,
            Stage::Sending { .. } | Stage::Receiving => Failure::HttpTimeout,
        }
    }

    /// Moves the check on after `poll(2)` reported `revents` on its socket.
    pub fn advance(&mut self, revents: i16) -> Step {
        if revents == 0 {
            return None;
        }
        if let Stage::Connecting = self.stage {
            if let Err(e) = socket_error(&self.stream) {
                return Some(Err(connect_failure(e)));
            }
            if self.request.is_empty() {
                return Some(Ok(()));
            }
            self.stage = Stage::Sending { sent: 0 };
        }
        if let Stage::Sending { sent } = &mut self.stage {
            while *sent < self.request.len() {
                match self.stream.write(&self.request[*sent..]) {
                    Ok(0) => return Some(Err(Failure::HttpClosed)),
                    Ok(n) => *sent += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Some(Err(io_failure(e))),
                }
            }
            self.stage = Stage::Receiving;
        }
        self.receive()
    }

    fn receive(&mut self) -> Step {
        let mut chunk = [0u8; 512];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Some(self.judge(true)),
                Ok(n) => {
                    self.answer.extend_from_slice(&chunk[..n]);
                    if let Some(done) = self.judge_if_complete() {
                        return Some(done);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Some(Err(io_failure(e))),
            }
        }
    }

    fn judge_if_complete(&self) -> Option<Result<(), Failure>> {
        if self.answer.contains(&b'\n') || self.answer.len() >= MAX_STATUS_LINE {
            Some(self.judge(false))
        } else {
            None
        }
    }

    /// The verdict on the status line read so far; `closed`: the real
    /// closed the connection (the line may lack its end).
    fn judge(&self, closed: bool) -> Result<(), Failure> {
        if closed && self.answer.is_empty() {
            return Err(Failure::HttpClosed);
        }
        let line_end = self
            .answer
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(self.answer.len());
        match status_code(&self.answer[..line_end.min(MAX_STATUS_LINE)]) {
            Some(status) if status == self.expect => Ok(()),
            Some(status) => Err(Failure::HttpStatus(status)),
            None => Err(Failure::HttpMalformed),
        }
    }
}

/// `GET path HTTP/1.0` with a Host header naming the address checked, as
/// keepalived sends (virtual hosts may route on it).
fn request(path: &str, addr: SocketAddrV4) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: sluice-health\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// The status of `HTTP/1.x NNN ...`; None for anything else.
pub fn status_code(line: &[u8]) -> Option<u16> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let (&minor, rest) = rest.split_first()?;
    if !minor.is_ascii_digit() {
        return None;
    }
    let rest = rest.strip_prefix(b" ")?;
    let code = rest.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit) || rest.get(3).is_some_and(|&b| b != b' ') {
        return None;
    }
    let status = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    (100..=599).contains(&status).then_some(status)
}

/// A non-blocking TCP socket connecting to `addr` from `source` (our
/// interface address on the real's side), or from the kernel's choice when
/// the host does not hold `source` (a port without a kernel twin) or none
/// is given. Also says whether it is bound to `source`.
fn connect_nonblocking(
    addr: SocketAddrV4,
    source: Option<Ipv4Addr>,
) -> Result<(TcpStream, bool), Failure> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(Failure::Socket(io::Error::last_os_error().to_string()));
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    let stream = TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let bound = match source {
        Some(ip) => bind_source(&stream, ip)?,
        None => false,
    };
    let sin = sockaddr(addr);
    // SAFETY: sin is a valid sockaddr_in and its size is given.
    let rc = unsafe {
        libc::connect(
            stream.as_raw_fd(),
            (&sin as *const libc::sockaddr_in).cast(),
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        return Ok((stream, bound));
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINPROGRESS) | Some(libc::EINTR) => Ok((stream, bound)),
        _ => Err(connect_failure(e)),
    }
}

/// Binds `stream` to `ip` (the port is left to `connect`, so checks share
/// the ephemeral ports as unbound sockets do). False if the host does not
/// have `ip`.
fn bind_source(stream: &TcpStream, ip: Ipv4Addr) -> Result<bool, Failure> {
    let fd = stream.as_raw_fd();
    let one: libc::c_int = 1;
    // SAFETY: fd is open; the option value is a c_int of the size given.
    // Failing (a kernel before 4.2) only means bind picks the port.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    let sin = sockaddr(SocketAddrV4::new(ip, 0));
    // SAFETY: sin is a valid sockaddr_in and its size is given.
    let rc = unsafe {
        libc::bind(
            fd,
            (&sin as *const libc::sockaddr_in).cast(),
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EADDRNOTAVAIL) => Ok(false),
        _ => Err(Failure::Socket(format!("bind {ip}: {}", os_message(&e)))),
    }
}

fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// The outcome of a non-blocking connect (SO_ERROR).
fn socket_error(stream: &TcpStream) -> Result<(), io::Error> {
    match stream.take_error() {
        Ok(None) => Ok(()),
        Ok(Some(e)) | Err(e) => Err(e),
    }
}

fn connect_failure(e: io::Error) -> Failure {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => Failure::Refused,
        Some(libc::EHOSTUNREACH) | Some(libc::ENETUNREACH) => Failure::Unreachable,
        Some(libc::ETIMEDOUT) => Failure::Timeout,
        _ => Failure::Connect(os_message(&e)),
    }
}

fn io_failure(e: io::Error) -> Failure {
    match e.raw_os_error() {
        Some(libc::ECONNRESET) => Failure::HttpIo("connection reset".into()),
        _ => Failure::HttpIo(os_message(&e)),
    }
}

/// An OS error's message without Rust's " (os error N)" suffix.
fn os_message(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_lowercase(),
        None => text.to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"HTTP/1.0 200 OK\r"), Some(200));
        assert_eq!(
            status_code(b"HTTP/1.1 500 Internal Server Error"),
            Some(500)
        );
        assert_eq!(status_code(b"HTTP/1.1 204"), Some(204));
        assert_eq!(status_code(b"HTTP/1.1 2000 OK"), None);
        assert_eq!(status_code(b"HTTP/1.1 20 OK"), None);
        assert_eq!(status_code(b"HTTP/2 200 OK"), None);
        assert_eq!(status_code(b"hello"), None);
        assert_eq!(status_code(b"HTTP/1.1 999 Nope"), None);
        assert_eq!(status_code(b""), None);
    }

    #[test]
    fn failures_read_as_the_listing_shows_them() {
        assert_eq!(Failure::Refused.to_string(), "connect: refused");
        assert_eq!(Failure::Timeout.to_string(), "timeout");
        assert_eq!(Failure::HttpStatus(500).to_string(), "http status 500");
        assert_eq!(
            os_message(&io::Error::from_raw_os_error(libc::EMFILE)),
            "too many open files"
        );
    }
}
