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
