//! The one error type of the adapters (kad-tokio, kad-smol): what a handle's call or
//! its builder's `listen` can fail with.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::{ConfigError, KeyError, NodeId, PutError, QueryError, SnapshotError};

use super::CommandError;

/// Why an adapter's call (a `KademliaServer` method, or its builder's `listen`) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting given to the builder is out of range.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The UDP socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// A host name could not be resolved.
    #[error("cannot resolve {addr:?}: {source}")]
    Resolve {
        /// The address as given.
        addr: String,
        /// What the resolver said.
        #[source]
        source: io::Error,
    },
    /// The state file (see the builders' `state_file`) could not be read, holds no
    /// valid state, or could not be written when the node started. The node does not
    /// start: a fresh node in its place would have lost the old one's records and id.
    #[error("state file {}: {source}", .path.display())]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: StateError,
    },
    /// The operating system gave no randomness for the node's id and seed.
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    /// An address resolved, but to nothing this node can reach: an IPv4 socket cannot
    /// talk to IPv6 addresses and the reverse.
    #[error("{addr:?} has no address of the same family as this node's {local}")]
    NoUsableAddress {
        /// The address as given.
        addr: String,
        /// The node's own address.
        local: SocketAddr,
    },
    /// `bootstrap` was given no address.
    #[error("bootstrap needs at least one address")]
    NoBootstrapAddress,
    /// No bootstrap address answered our ping in time.
    #[error("bootstrap failed: no answer from {} within {timeout:?}", AddrList(.addrs))]
    BootstrapFailed {
        /// The addresses pinged.
        addrs: Vec<SocketAddr>,
        /// How long each ping was given (the query timeout).
        timeout: Duration,
    },
    /// The network query failed (no peers known, nobody answered, too many queries).
    #[error(transparent)]
    Query(#[from] QueryError),
    /// A value was refused before anything was sent.
    #[error(transparent)]
    Put(#[from] PutError),
    /// The key cannot be used.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The server was stopped (by `KademliaServer::stop`) before or while the
    /// call ran.
    #[error("the server has stopped")]
    Stopped,
    /// The record store given to the builder (`record_store`) went to a node built from
    /// a clone of this builder: one store serves one node.
    #[error("the builder's record store is already in use by another node")]
    RecordStoreTaken,
    /// The node answered a command with the wrong kind of result: a bug in kad.
    #[error("internal error: unexpected result for {0}")]
    Unexpected(&'static str),
}

impl From<CommandError> for Error {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Put(e) => Error::Put(e),
            CommandError::Key(e) => Error::Key(e),
            // `CommandError` may grow; a new refusal is reported, not lost.
            #[allow(unreachable_patterns)]
            _ => Error::Unexpected("command"),
        }
    }
}

/// What is wrong with a state file: the reason inside [`Error::State`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The file is there but could not be read.
    #[error("cannot read it: {0}")]
    Read(#[source] io::Error),
    /// The file is truncated, corrupted, or not a kad state file.
    #[error(transparent)]
    Invalid(#[from] SnapshotError),
    /// The file holds another node's state than the id given to the builder.
    #[error("it holds node {file}, but the builder was given node id {given}")]
    WrongNodeId {
        /// The id in the file.
        file: NodeId,
        /// The id given to the builder's `node_id`.
        given: NodeId,
    },
    /// There was no file, and the first state of the new node could not be written.
    #[error("cannot write it: {0}")]
    Write(#[source] io::Error),
    /// Another running node holds the file's lock (`<path>.lock`): two nodes sharing one
    /// state file would run with the same id and overwrite each other's state.
    #[error("another node is using it (its lock file {} is held)", .lock.display())]
    Locked {
        /// The lock file.
        lock: PathBuf,
    },
    /// The lock file (`<path>.lock`) could not be locked (other than being held).
    #[error("cannot lock it: {0}")]
    Lock(#[source] io::Error),
}

struct AddrList<'a>(&'a [SocketAddr]);

impl fmt::Display for AddrList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}
