//! The user's handle: [`KademliaServer`] and its [`Builder`].

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::net::{lookup_host, ToSocketAddrs, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use kad_core::server::{Command, Reply};

use crate::driver::{Call, Driver};
use crate::{Error, StateError};
use kad_core::io::{self, StateCall};
use kad_core::server::NodeInfo;

/// Where [`Builder::listen_default`] binds: loopback only, any free port, as the Python
/// package's `listen()` does by default.
pub const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:0";

/// Commands that may wait for the driver at once; senders past that wait their turn.
const COMMAND_QUEUE: usize = 256;

/// A running Kademlia node: a cheap, cloneable handle to the task that owns the node and
/// its UDP socket.
///
/// The API mirrors the Python package's `KademliaServer`: [`bootstrap`](Self::bootstrap),
/// [`set`](Self::set), [`get`](Self::get), [`find_node`](Self::find_node),
/// [`find_value`](Self::find_value), [`stop`](Self::stop). Every call is a message to the
/// node's task and a reply; calls from many tasks run concurrently.
#[derive(Clone)]
pub struct KademliaServer {
    commands: mpsc::Sender<Call>,
    shared: Arc<Shared>,
}

struct Shared {
    node: NodeInfo,
    stop: watch::Sender<bool>,
    /// The driver's task, taken by the first `stop()`; the others wait on `done`.
    task: Mutex<Option<JoinHandle<()>>>,
    done: watch::Receiver<()>,
}

impl KademliaServer {
    /// Shuts the node down: calls still waiting fail with [`Error::Stopped`], the state
    /// file (if [`Builder::state_file`] was set) is written a last time, the socket is
    /// closed (its port can be bound again once this returns) and the node's task has
    /// ended. Calling it again, from any clone, is harmless.
    pub async fn stop(&self) {
        self.shared.stop.send_replace(true);
        let task = self
            .shared
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match task {
            // A panic in the driver has already ended it; there is nothing more to do.
            Some(task) => {
                let _ = task.await;
            }
            None => {
                let mut done = self.shared.done.clone();
                // Err means the driver is gone: exactly what we wait for.
                while done.changed().await.is_ok() {}
            }
        }
    }

    /// Sends `cmd` to the node's task and waits for its reply.
    async fn call(&self, cmd: Command) -> Result<Reply, Error> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send((cmd, tx))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Resolves `addr`, keeping the addresses of our socket's family.
    async fn resolve(&self, addr: &str) -> Result<Vec<SocketAddr>, Error> {
        let all = lookup_host(addr).await;
        kad_core::server::usable_addrs(addr, self.shared.node.local_addr, all)
    }
}

kad_core::handle_methods!(KademliaServer, Builder, ToSocketAddrs);

kad_core::builder_methods!(Builder, settings, kad_tokio);

impl Builder {
    /// Binds a UDP socket on `addr` (`"127.0.0.1:0"`, `"[::1]:4000"`, a `SocketAddr`...;
    /// IPv4 or IPv6) and starts the node's task. Must be called within a tokio runtime.
    /// With a [`state_file`](Self::state_file), restores the node from it first.
    pub async fn listen<A>(self, addr: A) -> Result<KademliaServer, Error>
    where
        A: ToSocketAddrs + fmt::Debug,
    {
        let config = self.build_config()?;
        let opened = match io::open_state_file(&self.settings) {
            Some(open) => Some(blocking(open).await?),
            None => None,
        };
        let name = format!("{addr:?}").trim_matches('"').to_owned();
        let bind_error = |source| Error::Bind {
            addr: name.clone(),
            source,
        };
        let addrs = lookup_host(addr).await.map_err(bind_error)?;
        let abandoned = oneshot::Sender::is_closed;
        let now = Instant::now();
        let started = io::listen(&self.settings, config, opened, &name, addrs, now, abandoned)?;
        let socket = UdpSocket::from_std(started.socket).map_err(bind_error)?;
        if let Some(first) = started.first_save {
            blocking(first).await?;
        }
        let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let (stop, stop_rx) = watch::channel(false);
        let (done_tx, done) = watch::channel(());
        let driver = Driver::new(started.host, socket, command_rx, stop_rx);
        let task = tokio::spawn(async move {
            driver.run().await;
            drop(done_tx);
        });
        let task = Mutex::new(Some(task));
        let shared = Shared {
            node: started.node,
            stop,
            task,
            done,
        };
        Ok(KademliaServer {
            commands,
            shared: Arc::new(shared),
        })
    }

    /// [`listen`](Self::listen) on [`DEFAULT_LISTEN_ADDR`] (`127.0.0.1:0`).
    pub async fn listen_default(self) -> Result<KademliaServer, Error> {
        self.listen(DEFAULT_LISTEN_ADDR).await
    }
}

/// Runs `call` on tokio's blocking pool; a panic in it becomes an error.
async fn blocking<T: Send + 'static>(call: StateCall<T>) -> Result<T, Error> {
    let path = call.path.clone();
    tokio::task::spawn_blocking(move || call.run())
        .await
        .map_err(|e| Error::State {
            path,
            source: StateError::Read(std::io::Error::other(format!("blocking task failed: {e}"))),
        })?
}
