//! The control socket: a Unix stream socket on the main lcore that takes
//! one request per connection (`api`) and answers it.
//!
//! The socket is created mode 0600: only root may change the load balancer.
//! A second sluice pointed at the same path refuses to start instead of
//! taking the socket over. A request is read with a deadline and a size
//! bound; a client that sends garbage, too much, or nothing and goes away
//! gets an error answer (if it is still there) and changes nothing. The
//! workers never wait on any of this.

use super::api::{self, Request, Response, MAX_REQUEST};
use super::timed_read::{self, Ended};
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a client has to send its request and take its answer.
const CLIENT_DEADLINE: Duration = Duration::from_secs(2);

pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlSocket {
    /// Creates the socket at `path` (and its directory, if missing).
    pub fn bind(path: &Path) -> Result<ControlSocket, String> {
        let shown = path.display();
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                fs::create_dir_all(dir).map_err(|e| {
                    format!("control socket {shown}: cannot create its directory: {e}")
                })?;
            }
        }
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                if UnixStream::connect(path).is_ok() {
                    return Err(format!(
                        "control socket {shown} is in use by a running sluice; stop it first, \
                         or give this one another [control] socket"
                    ));
                }
                // Left behind by a sluice that died: nobody listens.
                fs::remove_file(path).map_err(|e| {
                    format!("control socket {shown}: cannot remove the stale socket: {e}")
                })?;
            }
            Ok(_) => {
                return Err(format!(
                    "control socket {shown}: the path exists and is not a socket"
                ))
            }
            Err(_) => {}
        }
        // Created 0600 from the start (no window in which others could
        // connect), then made sure of.
        // SAFETY: umask only changes this process's file creation mask; it
        // is restored right after the bind.
        let old = unsafe { libc::umask(0o177) };
        let bound = UnixListener::bind(path);
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        let listener = bound.map_err(|e| match e.kind() {
            io::ErrorKind::AddrInUse => format!(
                "control socket {shown} is in use by a running sluice; stop it first, \
                 or give this one another [control] socket"
            ),
            _ => format!("control socket {shown}: {e}"),
        })?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("control socket {shown}: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("control socket {shown}: {e}"))?;
        Ok(ControlSocket {
            listener,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn raw_fd(&self) -> i32 {
        self.listener.as_raw_fd()
    }

    /// Serves every connection waiting now, one request each.
    pub fn serve(&self, mut handle: impl FnMut(Request) -> Response) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => serve_one(stream, &mut handle),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("control socket {}: accept: {e}", self.path.display());
                    return;
                }
            }
        }
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn serve_one(mut stream: UnixStream, handle: &mut impl FnMut(Request) -> Response) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(CLIENT_DEADLINE));
    let response = match read_request(&mut stream) {
        Ok(bytes) => match api::parse_request(&bytes) {
            Ok(request) => handle(request),
            Err(e) => Response::error(e),
        },
        Err(e) => Response::error(e),
    };
    if let Ok(mut text) = serde_json::to_vec(&response) {
        text.push(b'\n');
        // A client that left does not get its answer; nothing else happens.
        let _ = stream.write_all(&text);
    }
}

/// Reads one request: up to a newline or the end of the stream, at most
/// `MAX_REQUEST` bytes, within the deadline.
fn read_request(stream: &mut UnixStream) -> Result<Vec<u8>, String> {
    let (buf, ended) =
        timed_read::read_request(stream, CLIENT_DEADLINE, MAX_REQUEST, |b, fresh| {
            b[fresh..].contains(&b'\n')
        });
    match ended {
        Ended::Complete | Ended::Closed => {}
        Ended::TooLarge => return Err(format!("request larger than {MAX_REQUEST} bytes: refused")),
        Ended::Late => {
            return Err(format!(
                "no complete request within {} s",
                CLIENT_DEADLINE.as_secs()
            ))
        }
        Ended::Failed(kind) => return Err(format!("reading the request: {kind}")),
    }
    if buf.iter().all(u8::is_ascii_whitespace) {
        return Err("empty request".into());
    }
    Ok(buf)
}

/// Sends `request` to the socket at `path` and returns the answer (the
/// client side, for `sluice ctl` and tests).
pub fn call(path: &Path, request: &Request) -> Result<Response, String> {
    let shown = path.display();
    let mut stream = UnixStream::connect(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => format!(
            "cannot reach sluice at {shown}: {e} (is it running? --socket chooses another path)"
        ),
        io::ErrorKind::PermissionDenied => {
            format!("cannot reach sluice at {shown}: {e} (the control socket is root's)")
        }
        _ => format!("cannot reach sluice at {shown}: {e}"),
    })?;
    let envelope = api::Envelope {
        version: api::VERSION,
        request: request.clone(),
    };
    let mut text = serde_json::to_vec(&envelope).map_err(|e| e.to_string())?;
    text.push(b'\n');
    stream
        .write_all(&text)
        .map_err(|e| format!("sending to {shown}: {e}"))?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("reading from {shown}: {e}"))?;
    serde_json::from_slice(&answer).map_err(|e| {
        format!(
            "sluice answered something unreadable ({e}): {}",
            String::from_utf8_lossy(&answer)
        )
    })
}

/// Waits until one of `fds` is readable or `timeout` passes.
pub fn wait_readable(fds: &[i32], timeout: Duration) {
    let mut polls: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `polls` is a live array of `polls.len()` pollfd structs.
    unsafe {
        libc::poll(
            polls.as_mut_ptr(),
            polls.len() as libc::nfds_t,
            timeout.as_millis().min(i32::MAX as u128) as i32,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::api::Answer;

    fn temp_socket(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("sluice-test-{}-{name}.sock", std::process::id()))
    }

    #[test]
    fn answers_requests_refuses_garbage_and_a_second_owner() {
        let path = temp_socket("serve");
        let _ = fs::remove_file(&path);
        let socket = ControlSocket::bind(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let second = ControlSocket::bind(&path).err().unwrap();
        assert!(second.contains("in use by a running sluice"), "{second}");

        let handle = |r: Request| match r {
            Request::Timeouts => Response::Ok(Answer::Done { done: true }),
            _ => Response::error("unexpected"),
        };
        std::thread::scope(|scope| {
            let t = scope.spawn(|| {
                for _ in 0..40 {
                    socket.serve(handle);
                    std::thread::sleep(Duration::from_millis(25));
                }
            });
            let ok = call(&path, &Request::Timeouts).unwrap();
            assert_eq!(ok, Response::Ok(Answer::Done { done: true }));
            // Garbage, and a client that goes away without a word.
            let mut raw = UnixStream::connect(&path).unwrap();
            raw.write_all(b"\x00\x01garbage\n").unwrap();
            let mut answer = String::new();
            raw.read_to_string(&mut answer).unwrap();
            assert!(answer.contains("\"status\":\"error\""), "{answer}");
            drop(UnixStream::connect(&path).unwrap());
            // Oversized.
            let mut big = UnixStream::connect(&path).unwrap();
            let blob = vec![b'x'; MAX_REQUEST + 10];
            let _ = big.write_all(&blob);
            let mut answer = String::new();
            let _ = big.read_to_string(&mut answer);
            assert!(
                answer.is_empty() || answer.contains("larger than"),
                "{answer}"
            );
            let ok = call(&path, &Request::Timeouts).unwrap();
            assert_eq!(ok, Response::Ok(Answer::Done { done: true }));
            t.join().unwrap();
        });
        drop(socket);
        assert!(!path.exists(), "removed on drop");
        let e = call(&path, &Request::Timeouts).unwrap_err();
        assert!(e.contains("is it running"), "{e}");
    }

    #[test]
    fn a_stale_socket_is_replaced_and_a_file_is_not() {
        let path = temp_socket("stale");
        let _ = fs::remove_file(&path);
        {
            let l = UnixListener::bind(&path).unwrap();
            drop(l); // the file stays, nobody listens
        }
        let s = ControlSocket::bind(&path).unwrap();
        drop(s);
        fs::write(&path, b"not a socket").unwrap();
        let e = ControlSocket::bind(&path).err().unwrap();
        assert!(e.contains("not a socket"), "{e}");
        fs::remove_file(&path).unwrap();
    }
}
