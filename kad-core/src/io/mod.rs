//! The blocking, runtime-independent half of an async adapter (feature `io`): what
//! kad-tokio and kad-smol would otherwise both hold.
//!
//! Nothing here is used by [`Node`](crate::Node) or the [`Server`](crate::server::Server),
//! which stay sans-IO; this module is where their bytes meet the operating system:
//!
//! - [`udp`]: binding the socket, and its calls, batched on Linux (quinn-udp's `recvmmsg`
//!   and GRO; nix's `sendmmsg` to many destinations), with the loops that read into and
//!   send from a [`Server`](crate::server::Server).
//!   An adapter only says how its runtime makes one non-blocking call (tokio's `try_io`
//!   clears its cached readiness on `WouldBlock`; smol calls the socket directly) and
//!   waits for readiness itself.
//! - [`state_file`]: the state file's lock, read and atomic write, blocking calls that an
//!   adapter runs on its runtime's blocking pool.
//! - [`host`]: what the adapter's task owns besides its socket and channels (the server,
//!   the socket's state, the state file), started by [`listen`], and the steps of a pass
//!   that need no runtime.
//!
//! No clock is read here: the receive loop takes the adapter's clock as an argument.

pub mod host;
pub mod state_file;
pub mod udp;

pub use host::{listen, open_state_file, Host, Listening, Next, StateCall};

use crate::server::Error;

/// `N` random bytes from the operating system (a node's id and seed).
pub fn os_random<const N: usize>() -> Result<[u8; N], Error> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| Error::Random(e.to_string()))?;
    Ok(out)
}
