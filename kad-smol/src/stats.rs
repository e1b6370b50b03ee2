//! What the node and its driver did and dropped.

/// Counters of one [`crate::KademliaServer`]: the core's and the driver's own.
///
/// Every datagram that reached the socket is accounted for: handed to the core (and then
/// counted in [`kad_core::Stats`]), or dropped and counted here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// The protocol's counters (datagrams in and out, malformed, timeouts, ...).
    pub core: kad_core::Stats,
    /// Datagrams read from the socket and dropped because `max_dispatch_tasks` datagrams
    /// had already been handed to the core in that pass (the Python package's "dispatch
    /// queue full" drop).
    pub datagrams_dropped: u64,
    /// Driver passes that stopped at the per-pass datagram cap and yielded before reading
    /// on: a sign of heavy inbound load.
    pub capped_passes: u64,
    /// Datagrams that could not be sent (no route, wrong address family, ...).
    pub send_errors: u64,
    /// Socket read errors other than "nothing to read" (for example an ICMP error report).
    pub recv_errors: u64,
    /// Sends that found the socket's buffer full; the datagram was kept and sent once
    /// the socket was writable again.
    pub send_blocked: u64,
    /// User commands (bootstrap, get, set, ...) that finished.
    pub queries: u64,
    /// Requests sent on behalf of those commands (a measure of lookup cost).
    pub query_requests: u64,
    /// Writes of the state file (see [`crate::Builder::state_file`]) that completed.
    pub state_saves: u64,
    /// Writes of the state file that failed (each is also logged); the file keeps the
    /// last state written.
    pub state_save_errors: u64,
}
