//! Subscribers to the node's events: each has a bounded queue of its own; a slow one
//! loses its oldest events and is told how many, and never slows the node.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::Event;

use super::Server;

/// The smallest queue a subscriber gets, whatever it asked for.
const MIN_CAPACITY: usize = 1;
/// The largest queue a subscriber gets.
const MAX_CAPACITY: usize = 1 << 16;
/// Subscribers a server keeps at once; a new one past it is refused (closed at once).
pub const MAX_SUBSCRIBERS: usize = 64;

/// What a subscriber receives.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Notice {
    /// The next event, in the order the node produced them.
    Event(Event),
    /// This many events were lost here because the queue was full: the oldest went first.
    Missed(u64),
}

/// One subscriber's end of its queue ([`Server::subscribe`]). Clones share the queue
/// (each event goes to one of them). The queue is shared with the server's task, behind
/// a lock held only to push or pop one event; the node itself is never locked.
#[derive(Clone)]
pub struct Subscription {
    queue: Arc<Mutex<Queue>>,
}

struct Queue {
    events: VecDeque<Event>,
    capacity: usize,
    missed: u64,
    closed: bool,
    waker: Option<Waker>,
}

impl Subscription {
    fn new(capacity: usize) -> Subscription {
        Subscription {
            queue: Arc::new(Mutex::new(Queue {
                events: VecDeque::new(),
                capacity: capacity.clamp(MIN_CAPACITY, MAX_CAPACITY),
                missed: 0,
                closed: false,
                waker: None,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock leaves a queue that is still consistent.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next notice if one is waiting: how many were missed first (since the last
    /// notice), then the oldest event kept.
    pub fn try_next(&self) -> Option<Notice> {
        let mut q = self.lock();
        if q.missed > 0 {
            return Some(Notice::Missed(std::mem::take(&mut q.missed)));
        }
        q.events.pop_front().map(Notice::Event)
    }

    /// The next notice, or a wake-up of `cx`'s waker when one comes; `Ready(None)` once
    /// the server has stopped and every notice was taken. The body of an async stream.
    pub fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Notice>> {
        if let Some(n) = self.try_next() {
            return Poll::Ready(Some(n));
        }
        let mut q = self.lock();
        // An event pushed between the two locks is seen here.
        if let Some(e) = q.events.pop_front() {
            return Poll::Ready(Some(Notice::Event(e)));
        }
        if q.closed {
            return Poll::Ready(None);
        }
        q.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Whether the server has stopped sending to this subscriber.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Pushes `event`, dropping the oldest when full; false once nobody holds this
    /// subscription any more (the server then forgets it).
    fn push(&self, event: &Event) -> bool {
        if Arc::strong_count(&self.queue) == 1 {
            return false;
        }
        let mut q = self.lock();
        if q.events.len() >= q.capacity {
            q.events.pop_front();
            q.missed += 1;
        }
        q.events.push_back(event.clone());
        if let Some(w) = q.waker.take() {
            w.wake();
        }
        true
    }

    fn close(&self) {
        let mut q = self.lock();
        q.closed = true;
        if let Some(w) = q.waker.take() {
            w.wake();
        }
    }
}

/// A subscription is the stream of its notices; it ends when the server stops.
#[cfg(feature = "stream")]
impl futures_core::Stream for Subscription {
    type Item = Notice;

    fn poll_next(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Notice>> {
        Subscription::poll_next(&self, cx)
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = self.lock();
        f.debug_struct("Subscription")
            .field("waiting", &q.events.len())
            .field("capacity", &q.capacity)
            .field("missed", &q.missed)
            .field("closed", &q.closed)
            .finish()
    }
}

/// Two handles are equal when they share a queue.
impl PartialEq for Subscription {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.queue, &other.queue)
    }
}

impl Eq for Subscription {}

impl<T> Server<T> {
    /// A new subscriber to the node's events ([`crate::Node::watch`] is turned on while
    /// anyone subscribes): every event from now on, in order, through a queue of
    /// `capacity` events (1 to 65536). When the subscriber falls behind, the oldest events
    /// go and [`Notice::Missed`] says how many; the node never waits for it. Past
    /// [`MAX_SUBSCRIBERS`] the subscription comes back closed. Dropping every handle of a
    /// subscription unsubscribes.
    pub fn subscribe(&mut self, capacity: usize) -> crate::server::Subscription {
        let sub = Subscription::new(capacity);
        self.subscribers.retain(|s| Arc::strong_count(&s.queue) > 1);
        if self.subscribers.len() >= MAX_SUBSCRIBERS {
            sub.close();
            return sub;
        }
        self.subscribers.push(sub.clone());
        self.node.watch(true);
        sub
    }

    /// Gives `event` to every subscriber; forgets those nobody holds any more.
    pub(super) fn publish(&mut self, event: &Event) {
        if self.subscribers.is_empty() {
            return;
        }
        self.subscribers.retain(|s| s.push(event));
        if self.subscribers.is_empty() {
            self.node.watch(false);
        }
    }

    /// Tells every subscriber the server stopped.
    pub(super) fn close_subscribers(&mut self) {
        for s in self.subscribers.drain(..) {
            s.close();
        }
        self.node.watch(false);
    }
}
