//! A `tracing` span per user query (`kad.query`, with its `id` and `kind`), from the
//! command that starts it to its `QueryFinished`, which it logs at debug level with the
//! query's stats. The server is where a query's id is known at both ends for both
//! adapters; the node under it never logs.

use crate::{QueryId, QueryStats};

use super::{Command, Server};

/// The `kind` of the query `cmd` starts.
pub(super) fn kind(cmd: &Command) -> &'static str {
    match cmd {
        Command::Bootstrap(_) => "bootstrap",
        Command::Put(..) => "put",
        Command::Get(_) => "get",
        Command::FindNode(_) => "find_node",
        Command::FindValue(_) => "find_value",
        Command::Ping(_) => "ping",
        _ => "none",
    }
}

impl<T> Server<T> {
    /// Opens the span of query `id`.
    pub(super) fn open_span(&mut self, id: QueryId, kind: &'static str) {
        let span = tracing::debug_span!("kad.query", id = id.0, kind);
        self.spans.insert(id, span);
    }

    /// Closes the span of query `id`, logging its stats inside it.
    pub(super) fn close_span(&mut self, id: QueryId, stats: &QueryStats) {
        let Some(span) = self.spans.remove(&id) else {
            return;
        };
        span.in_scope(|| {
            tracing::debug!(
                rounds = stats.rounds,
                requests = stats.requests,
                responses = stats.responses,
                timeouts = stats.timeouts,
                duration_ms = stats.duration().as_secs_f64() * 1e3,
                "query finished"
            );
        });
    }
}
