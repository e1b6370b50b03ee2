//! The task that owns the [`Host`] (the server, its socket state and state file) and the
//! socket: it reads, sends and waits; every decision (admission, budget, save schedule,
//! held transmits) is the server's.

use std::time::Instant;

use kad_core::io::udp::Received;
use kad_core::io::{Host, Next};
use kad_core::server::{Command, Reply};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot, watch};

/// A command and the reply slot of its caller.
pub(crate) type Call = (Command, oneshot::Sender<Reply>);

pub(crate) struct Driver {
    host: Host<oneshot::Sender<Reply>>,
    socket: UdpSocket,
    commands: mpsc::Receiver<Call>,
    stop: watch::Receiver<bool>,
}

/// Why a wait ended.
enum Wake {
    Ready,
    Command(Call),
    Stop,
}

impl Driver {
    /// Runs until [`crate::KademliaServer::stop`] or until every handle is dropped. The
    /// socket is closed when this returns.
    pub(crate) async fn run(mut self) {
        loop {
            // Time: a fresh `now` every turn; never trust that a timer fired on time.
            let now = Instant::now();
            if let Some(save) = self.host.begin_pass(now) {
                // Detached: the write finishes even if the driver is gone.
                drop(tokio::task::spawn_blocking(save));
            }
            let commands = &mut self.commands;
            let Some(mut busy) =
                self.host
                    .take_commands(Instant::now, || match commands.try_recv() {
                        Ok((cmd, reply_to)) => Next::Call(cmd, reply_to),
                        Err(TryRecvError::Empty) => Next::Empty,
                        Err(TryRecvError::Disconnected) => Next::Closed,
                    })
            else {
                return self.shutdown().await;
            };
            // Drained: tokio kept the socket's readiness, so the wait below returns at once
            // and the read after it tells whether more came.
            busy |= self.receive() == Received::Spent;
            self.flush();
            // The caller may have given up; that is fine.
            self.host
                .send_replies(|reply_to, reply| drop(reply_to.send(reply)));
            if *self.stop.borrow() {
                return self.shutdown().await;
            }
            if busy {
                // More may be waiting: let other tasks run, then come straight back.
                tokio::task::yield_now().await;
                continue;
            }
            let (deadline, blocked) = self.host.poll_timeout(Instant::now());
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
                Wake::Command((cmd, reply_to)) => {
                    self.host.handle_command(Instant::now(), cmd, reply_to);
                }
                Wake::Stop => return self.shutdown().await,
            }
        }
    }

    /// Callers still waiting see [`crate::Error::Stopped`], queued commands are refused and
    /// the state file is written a last time (on tokio's blocking pool); the socket closes
    /// when `self` is dropped.
    async fn shutdown(mut self) {
        self.commands.close();
        while self.commands.try_recv().is_ok() {}
        if let Some(last) = self.host.stop(Instant::now()) {
            let result = tokio::task::spawn_blocking(last).await.ok();
            self.host.last_saved(result);
        }
        let addr = self.host.server().node().local_addr();
        tracing::debug!(%addr, "kad node stopped");
    }

    /// Reads until the socket would block, runs dry or the pass's budget is spent. Each
    /// call runs inside `try_io`, so `WouldBlock` clears tokio's readiness.
    fn receive(&mut self) -> Received {
        let socket = &self.socket;
        self.host.receive(socket, Instant::now, |f| {
            socket.try_io(Interest::READABLE, f)
        })
    }

    /// Sends what the server has to send until the socket's buffer is full.
    fn flush(&mut self) {
        let socket = &self.socket;
        self.host
            .flush(socket, |f| socket.try_io(Interest::WRITABLE, f));
    }

    /// A caller that drops its future gives up: `host` was started with
    /// `oneshot::Sender::is_closed`, so the server cancels its query.
    pub(crate) fn new(
        host: Host<oneshot::Sender<Reply>>,
        socket: UdpSocket,
        commands: mpsc::Receiver<Call>,
        stop: watch::Receiver<bool>,
    ) -> Driver {
        Driver {
            host,
            socket,
            commands,
            stop,
        }
    }
}
