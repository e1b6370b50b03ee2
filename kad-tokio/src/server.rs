//! The user's handle: [`KademliaServer`] and its [`Builder`].

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kad_core::NodeId;
use tokio::net::{lookup_host, ToSocketAddrs, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use kad_core::server::{Command, Reply};

use crate::driver::{Call, Driver};
use crate::{Error, StateError};
use kad_core::io::os_random;
use kad_core::io::state_file as state;
use kad_core::io::udp::{self, Udp};

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
    id: NodeId,
    local_addr: SocketAddr,
    query_timeout: Duration,
    stop: watch::Sender<bool>,
    /// The driver's task, taken by the first `stop()`; the others wait on `done`.
    task: Mutex<Option<JoinHandle<()>>>,
    done: watch::Receiver<()>,
}

impl KademliaServer {
    /// A node with the default settings listening on `addr`: shorthand for
    /// `KademliaServer::builder().listen(addr)`.
    pub async fn listen<A>(addr: A) -> Result<KademliaServer, Error>
    where
        A: ToSocketAddrs + fmt::Debug,
    {
        Builder::default().listen(addr).await
    }

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
            .unwrap_or_else(|e| e.into_inner())
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
        let local = self.shared.local_addr;
        let all = lookup_host(addr).await.map_err(|source| Error::Resolve {
            addr: addr.to_owned(),
            source,
        })?;
        kad_core::server::usable_addrs(addr, local, all)
    }
}

kad_core::handle_methods!(KademliaServer, Builder);

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
        let opened = match self.settings.state_file.clone() {
            Some(path) => {
                let id = self.settings.id;
                Some(blocking(&path.clone(), move || state::open(path, id)).await??)
            }
            None => None,
        };
        let restored = opened.as_ref().and_then(|o| o.restored.as_ref());
        let name = format!("{addr:?}").trim_matches('"').to_owned();
        let (socket, udp) = bind(&name, addr, self.settings.batched()).await?;
        let local_addr = socket.local_addr().map_err(|source| Error::Bind {
            addr: name.clone(),
            source,
        })?;
        let seed = match self.settings.seed {
            Some(s) => s,
            None => os_random::<32>()?,
        };
        let query_timeout = config.query_timeout();
        let (server, left_out) = self.settings.server(
            config,
            restored,
            seed,
            os_random::<20>()?,
            local_addr,
            Instant::now(),
        )?;
        if left_out > 0 {
            tracing::warn!(
                left_out,
                "state file records beyond this node's limits left out"
            );
        }
        let id = server.node().id();
        if let Some(file) = opened.as_ref().filter(|o| o.restored.is_none()) {
            let path = file.path.clone();
            let snapshot = server.snapshot(Instant::now());
            blocking(&file.path, move || state::create(&path, &snapshot)).await??;
        }
        let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let (stop, stop_rx) = watch::channel(false);
        let (done_tx, done) = watch::channel(());
        let driver = Driver::new(server, socket, command_rx, stop_rx, opened, udp);
        let task = tokio::spawn(async move {
            driver.run().await;
            drop(done_tx);
        });
        tracing::debug!(%local_addr, node_id = %id, "kad node listening");
        Ok(KademliaServer {
            commands,
            shared: Arc::new(Shared {
                id,
                local_addr,
                query_timeout,
                stop,
                task: Mutex::new(Some(task)),
                done,
            }),
        })
    }

    /// [`listen`](Self::listen) on [`DEFAULT_LISTEN_ADDR`] (`127.0.0.1:0`).
    pub async fn listen_default(self) -> Result<KademliaServer, Error> {
        self.listen(DEFAULT_LISTEN_ADDR).await
    }
}

/// Runs `f`, a call on the state file at `path`, on tokio's blocking pool; a panic in it
/// becomes an error.
async fn blocking<T, F>(path: &std::path::Path, f: F) -> Result<T, Error>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::State {
            path: path.to_owned(),
            source: StateError::Read(std::io::Error::other(format!("blocking task failed: {e}"))),
        })
}

/// Binds the first address `addr` resolves to, with a generous receive buffer, and sets
/// it up for quinn-udp.
async fn bind<A: ToSocketAddrs>(
    name: &str,
    addr: A,
    batched: bool,
) -> Result<(UdpSocket, Udp), Error> {
    let err = |source| Error::Bind {
        addr: name.to_owned(),
        source,
    };
    let addrs = lookup_host(addr).await.map_err(err)?;
    let (socket, udp) = udp::bind_first(name, addrs, batched)?;
    Ok((UdpSocket::from_std(socket).map_err(err)?, udp))
}
