//! The task that owns the [`Server`] and the socket: it reads, sends and waits; every
//! decision (admission, budget, save schedule, held transmits) is the server's.

use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::Instant;

use kad_core::server::{Command, Reply, Server, COMMANDS_PER_PASS};
use smol::channel::{Receiver, Sender, TryRecvError};
use smol::future::FutureExt;
use smol::{Async, Timer};

use kad_core::io::state_file as state;
use kad_core::io::udp::Udp;

/// A command and the reply slot of its caller (a channel of capacity one).
pub(crate) type Call = (Command, Sender<Reply>);

pub(crate) struct Driver {
    server: Server<Sender<Reply>>,
    socket: Async<UdpSocket>,
    commands: Receiver<Call>,
    /// Closed by `stop()` (or when the last handle goes).
    stop: Receiver<()>,
    udp: Udp,
    /// The state file's lock, released when the driver ends (after the last write).
    _lock: Option<std::fs::File>,
    /// The state file, and the result of the write running on the blocking pool.
    state: Option<(PathBuf, Option<Receiver<bool>>)>,
}

/// Why a wait ended.
enum Wake {
    Ready,
    Command(Call),
    Stop,
}

impl Driver {
    pub(crate) fn new(
        mut server: Server<Sender<Reply>>,
        socket: Async<UdpSocket>,
        commands: Receiver<Call>,
        stop: Receiver<()>,
        opened: Option<state::Opened>,
        udp: Udp,
    ) -> Driver {
        // Callers whose futures were dropped: the server ends their queries.
        server.cancel_abandoned_when(Sender::is_closed);
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
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Closed) => return self.shutdown().await,
                }
                busy = true;
            }
            busy |= self.receive();
            self.flush();
            while let Some((reply_to, reply)) = self.server.poll_reply() {
                // The caller may have given up; that is fine.
                let _ = reply_to.try_send(reply);
            }
            if self.stop.is_closed() {
                return self.shutdown().await;
            }
            if busy {
                // More may be waiting: let other tasks run, then come straight back.
                smol::future::yield_now().await;
                continue;
            }
            let deadline = self.server.poll_timeout(Instant::now());
            let blocked = self.server.is_send_blocked();
            let wake = {
                let socket = &self.socket;
                let stop = async {
                    // Only ever closed, never sent to.
                    let _ = self.stop.recv().await;
                    Wake::Stop
                };
                let command =
                    async { self.commands.recv().await.map_or(Wake::Stop, Wake::Command) };
                let writable = async {
                    if blocked {
                        let _ = socket.writable().await;
                    } else {
                        std::future::pending::<()>().await;
                    }
                    Wake::Ready
                };
                let readable = async {
                    let _ = socket.readable().await;
                    Wake::Ready
                };
                let timer = async {
                    Timer::at(deadline).await;
                    Wake::Ready
                };
                stop.or(command).or(writable).or(readable).or(timer).await
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
                self.server
                    .save_finished(writing.recv().await.unwrap_or(false));
            }
            let snapshot = self.server.snapshot(Instant::now());
            let ok = smol::unblock(move || state::write(&path, &snapshot)).await;
            self.server.save_finished(ok);
        }
        tracing::debug!(addr = %self.server.node().local_addr(), "kad node stopped");
    }

    /// Writes `snapshot` on smol's blocking pool; its result comes back through a channel.
    fn start_save(&mut self, snapshot: kad_core::Snapshot) {
        let Some((path, writing)) = &mut self.state else {
            return;
        };
        let path = path.clone();
        let (tx, rx) = smol::channel::bounded(1);
        // Detached: the write finishes even if the driver is gone.
        smol::unblock(move || {
            let _ = tx.try_send(state::write(&path, &snapshot));
        })
        .detach();
        *writing = Some(rx);
    }

    /// Reports the last state write to the server if it has finished.
    fn collect_save(&mut self) {
        let Some((_, Some(writing))) = &mut self.state else {
            return;
        };
        let ok = match writing.try_recv() {
            Ok(ok) => ok,
            Err(TryRecvError::Empty) => return,
            // The write panicked.
            Err(TryRecvError::Closed) => false,
        };
        if let Some((_, writing)) = &mut self.state {
            *writing = None;
        }
        self.server.save_finished(ok);
    }

    /// Reads until the socket would block or the pass's budget is spent; returns whether
    /// it was spent. smol's `Async` keeps no readiness to clear: calls go straight to the
    /// non-blocking socket, and the next `readable()` asks the reactor afresh.
    fn receive(&mut self) -> bool {
        self.udp
            .receive(&mut self.server, self.socket.get_ref(), Instant::now, |f| {
                f()
            })
    }

    /// Sends what the server has to send until the socket's buffer is full.
    fn flush(&mut self) {
        self.udp
            .flush(&mut self.server, self.socket.get_ref(), |f| f());
    }
}
