//! The user's handle: [`KademliaServer`] and its [`Builder`].

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use smol::channel::{bounded, Receiver, Sender};
use smol::net::{resolve, AsyncToSocketAddrs};
use smol::{Async, Task};

use kad_core::server::{Command, Reply};

use crate::driver::{Call, Driver};
use crate::Error;
use kad_core::io;
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
    commands: Sender<Call>,
    shared: Arc<Shared>,
}

struct Shared {
    node: NodeInfo,
    /// Closed to stop the driver.
    stop: Sender<()>,
    /// The driver's task, taken by the first `stop()`; the others wait on `done`.
    /// Detached when the last handle goes.
    task: Mutex<Option<Task<()>>>,
    /// Closed when the driver has returned.
    done: Receiver<()>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The last handle is gone. Dropping the task would cancel the driver mid-turn;
        // detached, it sees its channels close and shuts down as `stop()` does, writing
        // the state file a last time.
        let task = self
            .task
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            task.detach();
        }
    }
}

impl KademliaServer {
    /// Shuts the node down: calls still waiting fail with [`Error::Stopped`], the state
    /// file (if [`Builder::state_file`] was set) is written a last time, the socket is
    /// closed (its port can be bound again once this returns) and the node's task has
    /// ended. Calling it again, from any clone, is harmless.
    pub async fn stop(&self) {
        self.shared.stop.close();
        let task = self
            .shared
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match task {
            Some(task) => task.await,
            None => {
                // Err means the driver is gone: exactly what we wait for.
                while self.shared.done.recv().await.is_ok() {}
            }
        }
    }

    /// Sends `cmd` to the node's task and waits for its reply.
    async fn call(&self, cmd: Command) -> Result<Reply, Error> {
        let (tx, rx) = bounded(1);
        self.commands
            .send((cmd, tx))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.recv().await.map_err(|_| Error::Stopped)
    }

    /// Resolves `addr`, keeping the addresses of our socket's family.
    async fn resolve(&self, addr: &str) -> Result<Vec<SocketAddr>, Error> {
        let local = self.shared.node.local_addr;
        kad_core::server::usable_addrs(addr, local, resolve(addr).await)
    }
}

kad_core::handle_methods!(KademliaServer, Builder, AsyncToSocketAddrs);

kad_core::builder_methods!(Builder, settings, kad_smol);

impl Builder {
    /// Binds a UDP socket on `addr` (`"127.0.0.1:0"`, `"[::1]:4000"`, a `SocketAddr`...;
    /// IPv4 or IPv6) and starts the node's task. The node runs on
    /// smol's global executor (`smol::spawn`), whatever executor awaits this. With a
    /// [`state_file`](Self::state_file), restores the node from it first.
    pub async fn listen<A>(self, addr: A) -> Result<KademliaServer, Error>
    where
        A: AsyncToSocketAddrs + fmt::Debug,
    {
        let config = self.build_config()?;
        let opened = io::open_state_file(&self.settings).map(|open| smol::unblock(|| open.run()));
        let opened = match opened {
            Some(opening) => Some(opening.await?),
            None => None,
        };
        let name = format!("{addr:?}").trim_matches('"').to_owned();
        let err = |source| Error::Bind {
            addr: name.clone(),
            source,
        };
        let resolved = resolve(addr).await.map_err(err)?;
        let settings = &self.settings;
        let started = io::listen(
            settings,
            config,
            opened,
            &name,
            resolved,
            Instant::now(),
            Sender::is_closed,
        )?;
        let socket = Async::new(started.socket).map_err(err)?;
        if let Some(first) = started.first_save {
            smol::unblock(|| first.run()).await?;
        }
        let (commands, command_rx) = bounded(COMMAND_QUEUE);
        let (stop, stop_rx) = bounded(1);
        let (done_tx, done) = bounded::<()>(1);
        let driver = Driver::new(started.host, socket, command_rx, stop_rx);
        let task = smol::spawn(async move {
            driver.run().await;
            drop(done_tx);
        });
        Ok(KademliaServer {
            commands,
            shared: Arc::new(Shared {
                node: started.node,
                task: Mutex::new(Some(task)),
                stop,
                done,
            }),
        })
    }

    /// [`listen`](Self::listen) on [`DEFAULT_LISTEN_ADDR`] (`127.0.0.1:0`).
    pub async fn listen_default(self) -> Result<KademliaServer, Error> {
        self.listen(DEFAULT_LISTEN_ADDR).await
    }
}
