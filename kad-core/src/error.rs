//! Why a command failed or was refused: [`QueryError`], [`KeyError`], [`PutError`].

/// Why a command failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The routing table is empty: bootstrap first.
    #[error("no known peers: bootstrap first")]
    NoPeers,
    /// Every peer asked failed to answer in time.
    #[error("no peer answered")]
    NoResponse,
    /// The value reached no remote node (it is still stored locally).
    #[error("no remote node stored the value")]
    NotStored,
    /// Too many queries are running ([`crate::Config::max_active_queries`]).
    #[error("too many queries running")]
    TooManyQueries,
    /// The query's deadline ([`crate::Node::set_deadline`]) passed before it finished.
    #[error("the query's deadline passed")]
    DeadlinePassed,
}

/// A key that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Longer than [`crate::Config::max_key_bytes`].
    #[error("key is {len} bytes, the limit is {max}")]
    TooLong {
        /// The key's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Starts with the bencode bytes marker `\0bytes\0`, which would decode as bytes.
    #[error("key starts with the reserved marker \\0bytes\\0")]
    Reserved,
}

/// Why a put was refused before it started.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PutError {
    /// The key cannot be used.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The value is larger than [`crate::Config::max_value_bytes`].
    #[error("value is {len} bytes, the limit is {max}")]
    ValueTooLarge {
        /// The value's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Key and value encode to more than one datagram in this node's wire format.
    #[error("key and value encode to {len} bytes, more than the {max}-byte datagram limit")]
    DatagramTooLarge {
        /// The encoded size of the largest message carrying them.
        len: usize,
        /// [`crate::Config::max_datagram_bytes`].
        max: usize,
    },
    /// The local store is full of records that may not be evicted.
    #[error("the local store is full")]
    StoreFull,
    /// The node's [`crate::Validator`] refused the value (for a signed key: an older
    /// sequence than the one held, or a compare-and-swap that does not match it).
    #[error("the validator refused the value")]
    Rejected,
    /// The salt of a signed record is longer than 64 bytes.
    #[error("salt is {len} bytes, the limit is {max}")]
    SaltTooLong {
        /// The salt's length.
        len: usize,
        /// The limit.
        max: usize,
    },
}
