//! Watch events: what a node does, for whoever wants to see it ([`Node::watch`]).

use std::net::SocketAddr;
use std::time::Instant;

use crate::{Event, RefuseReason};

use super::{Core, Node};

/// Watch events that may wait to be polled; past this they are dropped and counted in
/// [`crate::Stats::events_dropped`] (a [`Event::QueryFinished`] never is).
pub(crate) const WATCH_QUEUE: usize = 4096;

impl Node {
    /// Turns the watch events on or off (off by default: a node nobody watches spends
    /// nothing on them). While on, [`Node::poll_event`] also gives what the node does:
    /// queries started, peers added to, evicted from and replaced in the table, addresses
    /// verified, records stored, refreshed, refused (with the reason) and expired, in the
    /// order they happened. At most 4096 wait to be polled; more are dropped and counted in
    /// [`crate::Stats::events_dropped`].
    pub fn watch(&mut self, on: bool) {
        self.core.watching = on;
    }

    /// Whether watch events are on.
    pub fn is_watched(&self) -> bool {
        self.core.watching
    }
}

impl Core {
    /// Queues the watch event `event` makes, if the node is watched.
    pub(super) fn note(&mut self, event: impl FnOnce() -> Event) {
        if !self.watching {
            return;
        }
        if self.events.len() >= WATCH_QUEUE {
            self.stats.events_dropped += 1;
            return;
        }
        self.events.push_back(event());
    }

    /// A store request for `key` from `from` was refused.
    pub(super) fn refused(&mut self, from: SocketAddr, key: &str, reason: RefuseReason) {
        self.note(|| Event::RecordRefused {
            key: key.to_owned(),
            from,
            reason,
        });
    }

    /// Whether a record of `key` is held, when somebody watches (a stored record is then
    /// told apart from a refreshed one).
    pub(super) fn held_before(&self, now: Instant, key: &str) -> bool {
        self.watching && self.store.get(now, key).is_some()
    }

    /// A store request for `key` from `from` was stored; `held`: a record of the key was
    /// there before.
    pub(super) fn stored(&mut self, from: SocketAddr, key: &str, cached: bool, held: bool) {
        self.note(|| match held {
            true => Event::RecordRefreshed {
                key: key.to_owned(),
                from,
            },
            false => Event::RecordStored {
                key: key.to_owned(),
                from,
                cached,
            },
        });
    }
}
