//! The validation hook: which values a node stores, serves and returns.
//!
//! A [`Validator`] sees every value that comes in by `set` or `set_cached`, every value our
//! own `put` stores, and every value a lookup is about to return. It may reject a value
//! (an incoming store then gets no `set_res`, a lookup goes on as if the holder had sent no
//! value; both are counted in [`crate::Stats`]), and of two values for one key it says
//! whether the newcomer may take the place of the one held. It is called from the node's
//! own thread with no clock and no randomness of its own, so a node with a validator stays
//! deterministic, and a simulation can give every node one.
//!
//! [`AcceptAll`] is the default (last writer wins, as in the Python package).

use crate::Value;

/// What a [`Validator`] says of a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The value may be stored and returned.
    Accept,
    /// The value is dropped.
    Reject,
}

/// Where a value being validated comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// Another node asked us to store it (`set`).
    Set,
    /// Another node asked us to cache it (`set_cached`).
    SetCached,
    /// Our own `put`.
    Put,
    /// A lookup of ours received it from the node that holds it.
    Lookup,
}

/// Decides which values a node accepts. See the [module docs](self).
pub trait Validator: Send {
    /// May `value` be held under `key` at all?
    fn validate(&mut self, key: &str, value: &Value, origin: Origin) -> Verdict;

    /// Both valid for `key`: may `candidate` take the place of `current`? Asked before a
    /// store replaces the record it holds (`current` is the held value), and when a
    /// collecting lookup (see [`Validator::collects`]) compares a new value with the best it
    /// has (`current` is that best). By default yes: the last writer wins.
    fn replaces(&mut self, key: &str, current: &Value, candidate: &Value, origin: Origin) -> bool {
        let _ = (key, current, candidate, origin);
        true
    }

    /// Should a `get` of `key` collect the values of the k closest holders and return the
    /// one preferred by [`Validator::replaces`], instead of the first that arrives? The
    /// holders that returned another value are then sent the preferred one. By default no.
    fn collects(&self, key: &str) -> bool {
        let _ = key;
        false
    }
}

/// The default validator: every value is accepted and the last writer wins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcceptAll;

impl Validator for AcceptAll {
    fn validate(&mut self, _key: &str, _value: &Value, _origin: Origin) -> Verdict {
        Verdict::Accept
    }
}
