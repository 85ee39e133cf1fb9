//! The SYN proxy (after DPVS's synproxy, with Linux-style SYN cookies):
//! sluice answers a client's SYN itself with a cookie SYN-ACK and keeps no
//! state; only an ACK that carries a valid cookie makes a session, and only
//! then does sluice open the connection to the real server and splice the
//! two, translating sequence numbers, timestamps and windows for the life of
//! the session. A spoofed-source SYN flood therefore costs one SYN-ACK per
//! SYN and never a session.
//!
//! Pure functions over byte slices and plain values: `cookie` (making and
//! checking cookies), `adjust` (rewriting a spliced segment). The pipeline
//! (`dataplane::pipeline::synproxy`) drives them.

pub mod adjust;
pub mod cookie;

pub use adjust::{Adjust, Splice};
pub use cookie::CookieKey;

/// What the pipeline needs to proxy handshakes (from `[synproxy]` and the
/// dataplane sizing), carried in every snapshot.
#[derive(Debug, Clone)]
pub struct Settings {
    pub key: CookieKey,
    /// The MSS sluice's SYN-ACK advertises.
    pub mss: u16,
    /// The window scale it advertises to clients that offer one.
    pub window_scale: u8,
    /// "auto" engages when a worker holds this many SYN_RECV sessions...
    pub auto_syn_recv: usize,
    /// ... or sees this many new connections a second.
    pub auto_syn_rate: u32,
    /// Client ACKs a worker holds while their real servers answer.
    pub hold: usize,
    /// Most embryonic sessions a worker keeps (plain forwarding).
    pub syn_recv_budget: usize,
}

/// The cookie key of this process: made once, the same for every worker
/// and every snapshot (a change of configuration must not void the cookies
/// in flight).
pub fn process_key() -> &'static CookieKey {
    static KEY: std::sync::OnceLock<CookieKey> = std::sync::OnceLock::new();
    KEY.get_or_init(CookieKey::random)
}
