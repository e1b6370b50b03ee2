//! The task that owns the [`Server`] and the socket: it reads, sends and waits; every
//! decision (admission, budget, save schedule, held transmits) is the server's.

use std::path::PathBuf;
use std::time::Instant;

use kad_core::server::{Command, Reply, Server, COMMANDS_PER_PASS};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};

use kad_core::io::state_file as state;
use kad_core::io::udp::Udp;

/// A command and the reply slot of its caller.
pub(crate) type Call = (Command, oneshot::Sender<Reply>);

pub(crate) struct Driver {
    server: Server<oneshot::Sender<Reply>>,
    socket: UdpSocket,
    commands: mpsc::Receiver<Call>,
    stop: watch::Receiver<bool>,
    udp: Udp,
    /// The state file's lock, released when the driver ends (after the last write).
    _lock: Option<std::fs::File>,
    /// The state file, and the result of the write running on the blocking pool.
    state: Option<(PathBuf, Option<oneshot::Receiver<bool>>)>,
}

/// Why a wait ended.
enum Wake {
    Ready,
    Command(Call),
    Stop,
}

impl Driver {
    pub(crate) fn new(
        mut server: Server<oneshot::Sender<Reply>>,
        socket: UdpSocket,
        commands: mpsc::Receiver<Call>,
        stop: watch::Receiver<bool>,
        opened: Option<state::Opened>,
        udp: Udp,
    ) -> Driver {
        // A caller that drops its future gives up: the server cancels its query.
        server.cancel_abandoned_when(oneshot::Sender::is_closed);
        let (state, lock) = opened.map(|o| ((o.path, None), o.lock)).unzip();
        Driver {
            server,
            socket,
            commands,
            stop,
            udp,
            _lock: lock,
            state,
        }
    }

    /// Runs until [`crate::KademliaServer::stop`] or until every handle is dropped. The
    /// socket is closed when this returns.
    pub(crate) async fn run(mut self) {
        loop {
            // Time: a fresh `now` every turn; never trust that a timer fired on time.
            let now = Instant::now();
            self.server.begin_pass(now);
            self.collect_save();
            if let Some(snapshot) = self.server.poll_save(now) {
                self.start_save(snapshot);
            }
            let mut busy = false;
            for _ in 0..COMMANDS_PER_PASS {
                match self.commands.try_recv() {
                    Ok(call) => self.on_command(call),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return self.shutdown().await,
                }
                busy = true;
            }
            busy |= self.receive();
            self.flush();
            while let Some((reply_to, reply)) = self.server.poll_reply() {
                // The caller may have given up; that is fine.
                let _ = reply_to.send(reply);
            }
            if *self.stop.borrow() {
                return self.shutdown().await;
            }
            if busy {
                // More may be waiting: let other tasks run, then come straight back.
                tokio::task::yield_now().await;
                continue;
            }
            let deadline = self.server.poll_timeout(Instant::now());
            let blocked = self.server.is_send_blocked();
            let wake = {
                let socket = &self.socket;
                let writable = async {
                    if blocked {
                        socket.writable().await
                    } else {
                        std::future::pending().await
                    }
                };
                tokio::select! {
                    biased;
                    _ = self.stop.changed() => Wake::Stop,
                    call = self.commands.recv() => call.map_or(Wake::Stop, Wake::Command),
                    _ = writable => Wake::Ready,
                    _ = socket.readable() => Wake::Ready,
                    _ = tokio::time::sleep_until(deadline.into()) => Wake::Ready,
                }
            };
            match wake {
                Wake::Ready => {}
                Wake::Command(call) => self.on_command(call),
                Wake::Stop => return self.shutdown().await,
            }
        }
    }

    fn on_command(&mut self, (cmd, reply_to): Call) {
        if matches!(cmd, Command::Stats) {
            self.collect_save();
        }
        self.server.handle_command(Instant::now(), reply_to, cmd);
    }

    /// Callers still waiting see [`crate::Error::Stopped`], queued commands are refused and
    /// the state file is written a last time; the socket closes when `self` is dropped.
    async fn shutdown(mut self) {
        self.commands.close();
        while self.commands.try_recv().is_ok() {}
        self.server.stop();
        if let Some((path, writing)) = self.state.take() {
            // One writer at a time, so the last write is the newest state.
            if let Some(writing) = writing {
                self.server.save_finished(writing.await.unwrap_or(false));
            }
            let snapshot = self.server.snapshot(Instant::now());
            let ok = tokio::task::spawn_blocking(move || state::write(&path, &snapshot)).await;
            self.server.save_finished(ok.unwrap_or(false));
        }
        tracing::debug!(addr = %self.server.node().local_addr(), "kad node stopped");
    }

    /// Writes `snapshot` on the blocking pool; its result comes back through a channel.
    fn start_save(&mut self, snapshot: kad_core::Snapshot) {
        let Some((path, writing)) = &mut self.state else {
            return;
        };
        let path = path.clone();
        let (tx, rx) = oneshot::channel();
        // Detached: the write finishes even if the driver is gone.
        drop(tokio::task::spawn_blocking(move || {
            let _ = tx.send(state::write(&path, &snapshot));
        }));
        *writing = Some(rx);
    }

    /// Reports the last state write to the server if it has finished.
    fn collect_save(&mut self) {
        let Some((_, Some(writing))) = &mut self.state else {
            return;
        };
        let ok = match writing.try_recv() {
            Ok(ok) => ok,
            Err(oneshot::error::TryRecvError::Empty) => return,
            // The write panicked.
            Err(oneshot::error::TryRecvError::Closed) => false,
        };
        if let Some((_, writing)) = &mut self.state {
            *writing = None;
        }
        self.server.save_finished(ok);
    }

    /// Reads until the socket would block or the pass's budget is spent; returns whether
    /// it was spent. Each call runs inside `try_io`, so `WouldBlock` clears tokio's readiness.
    fn receive(&mut self) -> bool {
        let socket = &self.socket;
        self.udp
            .receive(&mut self.server, socket, Instant::now, |f| {
                socket.try_io(Interest::READABLE, f)
            })
    }

    /// Sends what the server has to send until the socket's buffer is full.
    fn flush(&mut self) {
        let socket = &self.socket;
        self.udp.flush(&mut self.server, socket, |f| {
            socket.try_io(Interest::WRITABLE, f)
        });
    }
}
