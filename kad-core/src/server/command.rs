//! What an adapter's handle asks of the server, and what comes back.

use std::net::SocketAddr;

use crate::{KeyError, NodeId, Peer, PutError, QueryResult, QueryStats, Value};

use super::{ServerStats, Subscription};

/// A request from the user's handle, given to [`super::Server::handle_command`] with a
/// token of the caller's choosing (a reply channel, an id...) that comes back with its
/// [`Reply`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// Ping these addresses, then look up our own id and every bucket's range.
    Bootstrap(Vec<SocketAddr>),
    /// Store a value under a key on the k closest nodes (and locally, as its publisher).
    Put(String, Value),
    /// A value: our own copy if we hold one, else the network's.
    Get(String),
    /// The k live peers closest to an id.
    FindNode(NodeId),
    /// A value and the closest peers that answered, from the network only.
    FindValue(String),
    /// Ping one address.
    Ping(SocketAddr),
    /// The server's counters ([`ServerStats`]).
    Stats,
    /// Every peer in the routing table.
    Peers,
    /// Our own unexpired copy of a key, without asking the network.
    GetLocal(String),
    /// A subscription to the node's events with a queue of this many
    /// ([`super::Server::subscribe`]).
    Subscribe(usize),
    /// The `kad_` metrics in the Prometheus text format ([`crate::metrics`]).
    #[cfg(feature = "metrics")]
    Metrics,
}

/// The answer to a [`Command`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// A network command finished (`Bootstrap` to `Ping`), or was refused before it
    /// started.
    Query(Result<(QueryResult, QueryStats), CommandError>),
    /// The answer to [`Command::Stats`].
    Stats(Box<ServerStats>),
    /// The answer to [`Command::Peers`].
    Peers(Vec<Peer>),
    /// The answer to [`Command::GetLocal`].
    Local(Option<Value>),
    /// The answer to [`Command::Subscribe`].
    Subscribed(Subscription),
    /// The answer to [`Command::Metrics`]: the text exposition.
    #[cfg(feature = "metrics")]
    Metrics(String),
}

/// Why a network command was refused before anything was sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The value (or its key) cannot be stored.
    #[error(transparent)]
    Put(#[from] PutError),
    /// The key cannot be used.
    #[error(transparent)]
    Key(#[from] KeyError),
}

#[cfg(feature = "signed")]
impl Command {
    /// The [`Command::Put`] of a signed record: `value` signed with `keypair` for `salt` at
    /// sequence `seq` (with `cas`, only over the version of sequence `cas`), under
    /// [`crate::signed_key`]`(&keypair.public_key(), salt)`; what
    /// [`crate::Node::put_signed`] stores. The adapters' `put_signed` sends it.
    pub fn put_signed(
        keypair: &crate::Keypair,
        salt: &[u8],
        value: Value,
        seq: u64,
        cas: Option<u64>,
    ) -> Result<Command, PutError> {
        let key = crate::signed_key(&keypair.public_key(), salt);
        crate::SignedRecord::sign(keypair, salt, seq, cas, value)
            .map(|record| Command::Put(key, record))
            .map_err(|_| PutError::SaltTooLong {
                len: salt.len(),
                max: crate::MAX_SALT_BYTES,
            })
    }
}
