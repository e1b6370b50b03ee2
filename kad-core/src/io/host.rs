//! What an adapter's task holds besides its socket and channels: the [`Server`], the
//! socket's quinn-udp state and the state file, with the steps of a pass that need no
//! runtime. The adapter brings the clock, the waits and its blocking pool.
//!
//! A state-file write is a job the adapter runs on its blocking pool (tokio's
//! `spawn_blocking`, `smol::unblock`); its result comes back through a std channel that
//! the next pass reads without waiting, so nothing here names a runtime.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

use super::os_random;
use super::state_file::{self, Opened};
use super::udp::{self, Received, SocketCall, Udp};
use crate::server::{Command, Error, NodeInfo, Reply, Server, Settings, COMMANDS_PER_PASS};
use crate::Config;

/// What an adapter's command channel gave when asked without waiting.
#[derive(Debug)]
pub enum Next<T> {
    /// A command and its caller's token.
    Call(Command, T),
    /// Nothing waiting.
    Empty,
    /// Every handle is gone: the task should shut down.
    Closed,
}

/// A blocking write of the state file, for the adapter's blocking pool.
pub type SaveJob = Box<dyn FnOnce() + Send + 'static>;

/// The last write of the state file: waits for the write in progress, then writes the final
/// state; returns how both went (`None`: there was no write in progress), for
/// [`Host::last_saved`].
pub type LastSaveJob = Box<dyn FnOnce() -> (Option<bool>, bool) + Send + 'static>;

/// The state file while the node runs.
struct StateFile {
    path: PathBuf,
    /// Held until the last write is done.
    lock: std::fs::File,
    /// The result of the write in progress.
    writing: Option<mpsc::Receiver<bool>>,
}

/// The runtime-free half of an adapter's task: the server, the socket's quinn-udp state and
/// the state file.
pub struct Host<T> {
    server: Server<T>,
    udp: Udp,
    state: Option<StateFile>,
}

impl<T> std::fmt::Debug for Host<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("server", &self.server)
            .field("udp", &self.udp)
            .field("state_file", &self.state.as_ref().map(|s| &s.path))
            .finish()
    }
}

/// What `listen` opens before it binds: the state file of `settings`, if there is one
/// ([`state_file::open`]), as a call for the adapter's blocking pool.
pub fn open_state_file(settings: &Settings) -> Option<StateCall<Opened>> {
    let path = settings.state_file.clone()?;
    let id = settings.id;
    Some(StateCall::new(path.clone(), move || {
        state_file::open(path, id)
    }))
}

/// A blocking call on the state file at `path`, for the adapter's blocking pool.
pub struct StateCall<R> {
    /// The state file (for the error of a call that panicked).
    pub path: PathBuf,
    call: Box<dyn FnOnce() -> Result<R, Error> + Send + 'static>,
}

impl<R> StateCall<R> {
    fn new(path: PathBuf, call: impl FnOnce() -> Result<R, Error> + Send + 'static) -> Self {
        StateCall {
            path,
            call: Box::new(call),
        }
    }

    /// Makes the call (blocking).
    pub fn run(self) -> Result<R, Error> {
        (self.call)()
    }
}

impl<R> std::fmt::Debug for StateCall<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateCall")
            .field("path", &self.path)
            .finish()
    }
}

/// A node [`listen`] started: its socket, for the adapter to hand to its runtime, the rest
/// of what its task owns, and what its handle knows.
#[derive(Debug)]
pub struct Listening<T> {
    /// The bound socket, non-blocking, set up for quinn-udp.
    pub socket: std::net::UdpSocket,
    /// The server, the socket's quinn-udp state and the state file.
    pub host: Host<T>,
    /// A fresh node's first state-file write, which the adapter makes before `listen`
    /// returns, so that a path that cannot be written is `listen`'s error.
    pub first_save: Option<StateCall<()>>,
    /// The node's id, address and query timeout, for its handle.
    pub node: NodeInfo,
}

/// Starts a node on the first of `addrs` (what `name` resolved to) that can be bound
/// ([`udp::bind_first`]), with the state file `opened` ([`open_state_file`]).
///
/// The node is restored from `opened`'s snapshot if it has one, else new with the id of
/// `settings` or a random one; its seed is that of `settings` or the operating system's.
/// `abandoned` tells a caller's token whose caller gave up
/// ([`Server::cancel_abandoned_when`]).
pub fn listen<T>(
    settings: &Settings,
    config: Config,
    opened: Option<Opened>,
    name: &str,
    addrs: impl IntoIterator<Item = SocketAddr>,
    now: Instant,
    abandoned: fn(&T) -> bool,
) -> Result<Listening<T>, Error> {
    let (socket, udp) = udp::bind_first(name, addrs, settings.batched())?;
    let local_addr = socket.local_addr().map_err(|source| Error::Bind {
        addr: name.to_owned(),
        source,
    })?;
    let query_timeout = config.query_timeout();
    let restored = opened.as_ref().and_then(|o| o.restored.as_ref());
    let seed = match settings.seed {
        Some(s) => s,
        None => os_random::<32>()?,
    };
    let (mut server, left_out) =
        settings.server(config, restored, seed, os_random::<20>()?, local_addr, now)?;
    if left_out > 0 {
        tracing::warn!(
            left_out,
            "state file records beyond this node's limits left out"
        );
    }
    server.cancel_abandoned_when(abandoned);
    let id = server.node().id();
    let first_save = opened.as_ref().filter(|o| o.restored.is_none()).map(|o| {
        let (path, snapshot) = (o.path.clone(), server.snapshot(now));
        StateCall::new(o.path.clone(), move || state_file::create(&path, &snapshot))
    });
    let state = opened.map(|o| StateFile {
        path: o.path,
        lock: o.lock,
        writing: None,
    });
    tracing::debug!(%local_addr, node_id = %id, "kad node listening");
    Ok(Listening {
        socket,
        host: Host { server, udp, state },
        first_save,
        node: NodeInfo {
            id,
            local_addr,
            query_timeout,
        },
    })
}

impl<T> Host<T> {
    /// The server inside.
    pub fn server(&self) -> &Server<T> {
        &self.server
    }

    /// Starts a pass ([`Server::begin_pass`]) at `now`, a fresh reading of the clock;
    /// reports a state-file write that has finished, and returns the next one when it is
    /// due, a job for the adapter's blocking pool.
    pub fn begin_pass(&mut self, now: Instant) -> Option<SaveJob> {
        self.server.begin_pass(now);
        self.collect_save();
        let snapshot = self.server.poll_save(now)?;
        let state = self.state.as_mut()?;
        let path = state.path.clone();
        let (tx, rx) = mpsc::sync_channel(1);
        state.writing = Some(rx);
        // The job may outlive the task: the write finishes anyway.
        Some(Box::new(move || {
            let _ = tx.send(state_file::write(&path, &snapshot));
        }))
    }

    /// Takes up to [`COMMANDS_PER_PASS`] commands from `next`, the adapter's channel asked
    /// without waiting; `Some(whether it took any)`, or `None` when the channel is closed
    /// (every handle is gone: the task should shut down).
    /// Each command is handled at a fresh reading of `clock`.
    pub fn take_commands(
        &mut self,
        clock: impl Fn() -> Instant,
        mut next: impl FnMut() -> Next<T>,
    ) -> Option<bool> {
        let mut took = false;
        for _ in 0..COMMANDS_PER_PASS {
            match next() {
                Next::Call(cmd, token) => self.handle_command(clock(), cmd, token),
                Next::Empty => break,
                Next::Closed => return None,
            }
            took = true;
        }
        Some(took)
    }

    /// Runs `cmd` for the caller holding `token` ([`Server::handle_command`]); `Stats`
    /// first takes in the result of a state-file write that has finished.
    pub fn handle_command(&mut self, now: Instant, cmd: Command, token: T) {
        if matches!(cmd, Command::Stats) {
            self.collect_save();
        }
        self.server.handle_command(now, token, cmd);
    }

    /// Reads from `socket` into the server ([`Udp::receive`]), and how that ended.
    pub fn receive<S: AsFd>(
        &mut self,
        socket: &S,
        clock: impl Fn() -> Instant,
        call: impl FnMut(SocketCall<'_>) -> std::io::Result<usize>,
    ) -> Received {
        self.udp.receive(&mut self.server, socket, clock, call)
    }

    /// Sends what the server has to send ([`Udp::flush`]).
    pub fn flush<S: AsFd>(
        &mut self,
        socket: &S,
        call: impl FnMut(SocketCall<'_>) -> std::io::Result<usize>,
    ) {
        self.udp.flush(&mut self.server, socket, call);
    }

    /// Hands every ready reply to `send` with its caller's token.
    pub fn send_replies(&mut self, mut send: impl FnMut(T, Reply)) {
        while let Some((token, reply)) = self.server.poll_reply() {
            send(token, reply);
        }
    }

    /// When the next pass is due if nothing comes first ([`Server::poll_timeout`]), and
    /// whether the adapter should also wait for the socket to be writable
    /// ([`Server::is_send_blocked`]).
    pub fn poll_timeout(&self, now: Instant) -> (Instant, bool) {
        (self.server.poll_timeout(now), self.server.is_send_blocked())
    }

    /// Stops the server (callers still waiting see `Error::Stopped`) and returns the state
    /// file's last write, for the adapter's blocking pool; its result goes to
    /// [`last_saved`](Self::last_saved). The file's lock is released when the job ends.
    pub fn stop(&mut self, now: Instant) -> Option<LastSaveJob> {
        self.server.stop();
        let StateFile {
            path,
            lock,
            writing,
        } = self.state.take()?;
        let snapshot = self.server.snapshot(now);
        Some(Box::new(move || {
            // One writer at a time, so the last write is the newest state.
            let before = writing.map(|w| w.recv().unwrap_or(false));
            let ok = state_file::write(&path, &snapshot);
            drop(lock);
            (before, ok)
        }))
    }

    /// Takes the result of the last write ([`stop`](Self::stop)): `None` when its job
    /// failed to run.
    pub fn last_saved(&mut self, result: Option<(Option<bool>, bool)>) {
        let (before, ok) = match result {
            Some((before, ok)) => (before, ok),
            None => (None, false),
        };
        if let Some(before) = before {
            self.server.save_finished(before);
        }
        self.server.save_finished(ok);
    }

    /// Reports the last state write to the server if it has finished.
    fn collect_save(&mut self) {
        let Some(StateFile {
            writing: Some(writing),
            ..
        }) = &mut self.state
        else {
            return;
        };
        let ok = match writing.try_recv() {
            Ok(ok) => ok,
            Err(mpsc::TryRecvError::Empty) => return,
            // The write panicked.
            Err(mpsc::TryRecvError::Disconnected) => false,
        };
        if let Some(state) = &mut self.state {
            state.writing = None;
        }
        self.server.save_finished(ok);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A fresh node writes its file before `listen` returns, then whenever the server says
    /// a snapshot is due, and a last time on `stop`, which releases the lock; between
    /// writes only the file and its lock are in the directory. (Moved here from both
    /// adapters' `state.rs`, where it slept through real intervals.)
    #[test]
    fn the_state_file_is_written_at_start_every_interval_and_at_stop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.state");
        let settings = Settings {
            state_file: Some(path.clone()),
            state_interval: Some(Duration::from_millis(50)),
            ..Settings::default()
        };
        let opened = open_state_file(&settings).expect("a state file").run();
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        let addr = "127.0.0.1:0".parse().expect("an address");
        let mut listening = listen::<u32>(
            &settings,
            Config::default(),
            Some(opened.expect("open")),
            "127.0.0.1:0",
            [addr],
            now,
            |_| false,
        )
        .expect("listen");
        listening
            .first_save
            .take()
            .expect("a fresh node")
            .run()
            .expect("first write");
        let id = listening.node.id;
        let read = || state_file::load(&path).expect("load").expect("a file").id;
        assert_eq!(read(), id);
        let host = &mut listening.host;
        assert!(host.begin_pass(now).is_none(), "not due yet");
        for i in 1..=2 {
            let save = host
                .begin_pass(now + Duration::from_millis(50 * i))
                .expect("due");
            save();
        }
        let last = host
            .stop(now + Duration::from_millis(120))
            .expect("a last write");
        assert!(matches!(
            state_file::lock(&path),
            Err(crate::server::StateError::Locked { .. })
        ));
        let result = last();
        host.last_saved(Some(result));
        let stats = host.server().stats();
        assert_eq!((stats.state_saves, stats.state_save_errors), (3, 0));
        assert_eq!(read(), id);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["node.state", "node.state.lock"]);
        drop(state_file::lock(&path).expect("released by the last write"));
    }
}
