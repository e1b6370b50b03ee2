//! Callers that give up: their queries are cancelled in the node; and a command may
//! carry a deadline.

use std::time::Instant;

use crate::QueryId;

use super::{Command, Server};

impl<T> Server<T> {
    /// Says how to tell that a caller gave up on its reply (for an adapter: its reply
    /// channel is closed because the caller dropped the future, e.g.
    /// `oneshot::Sender::is_closed`). The server then cancels ([`crate::Node::cancel`])
    /// such a caller's query, which frees its `max_active_queries` slot: at the start of
    /// every pass, and before a command that would find every slot taken. The token is
    /// dropped, and no reply comes for it. Counted in [`crate::Stats::queries_cancelled`].
    pub fn cancel_abandoned_when(&mut self, abandoned: fn(&T) -> bool) {
        self.abandoned = Some(abandoned);
    }

    /// [`handle_command`](Self::handle_command) with a deadline: a query still running at
    /// `deadline` ends with [`crate::QueryError::DeadlinePassed`]
    /// ([`crate::Node::set_deadline`]).
    pub fn handle_command_until(
        &mut self,
        now: Instant,
        token: T,
        cmd: Command,
        deadline: Instant,
    ) {
        if let Some(id) = self.start_command(now, token, cmd) {
            self.node.set_deadline(id, deadline);
        }
    }

    /// Cancels the queries of the callers who gave up.
    pub(super) fn cancel_abandoned(&mut self, now: Instant) {
        let Some(abandoned) = self.abandoned else {
            return;
        };
        let gone: Vec<QueryId> = self
            .waiting
            .iter()
            .filter(|(_, token)| abandoned(token))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.waiting.remove(&id);
            #[cfg(feature = "tracing")]
            self.spans.remove(&id);
            // A query that finished already has its event queued: nothing to cancel, and
            // its reply goes nowhere.
            self.node.cancel(now, id);
        }
    }
}
