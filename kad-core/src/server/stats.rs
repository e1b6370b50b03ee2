//! The server's counters: the core's, and what the server admitted, dropped and wrote.

/// Counters of one [`super::Server`]: the core's and the I/O layer's own.
///
/// Every datagram an adapter read is accounted for: handed to the core (and then counted
/// in [`crate::Stats`]), or dropped and counted here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// The protocol's counters (datagrams in and out, malformed, timeouts, ...).
    pub core: crate::Stats,
    /// Datagrams read and dropped because `max_dispatch_tasks` datagrams had already been
    /// handed to the core in that pass and their senders are not verified (the Python
    /// package's "dispatch queue full" drop).
    pub datagrams_dropped: u64,
    /// Passes that stopped at the per-pass datagram budget: a sign of heavy inbound load.
    pub capped_passes: u64,
    /// Datagrams that could not be sent (no route, wrong address family, ...).
    pub send_errors: u64,
    /// Socket read errors other than "nothing to read" (for example an ICMP error report).
    pub recv_errors: u64,
    /// Sends that found the socket's buffer full; the datagrams were held and sent once
    /// the socket was writable again.
    pub send_blocked: u64,
    /// User commands (bootstrap, get, set, ...) that finished.
    pub queries: u64,
    /// Requests sent on behalf of those commands (a measure of lookup cost).
    pub query_requests: u64,
    /// State snapshots written (reported by the adapter through
    /// [`super::Server::save_finished`]).
    pub state_saves: u64,
    /// State snapshot writes that failed; the file keeps the last state written.
    pub state_save_errors: u64,
    /// Gauge: peers in the routing table now.
    pub peers: usize,
    /// Gauge: records in the local store now (expired ones linger until the next sweep).
    pub records: usize,
    /// Gauge: queries running now, the user's and the node's own (refresh, republish).
    pub active_queries: usize,
}
