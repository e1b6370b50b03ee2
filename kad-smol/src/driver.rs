//! The task that owns the [`Host`] (the server, its socket state and state file) and the
//! socket: it reads, sends and waits; every decision (admission, budget, save schedule,
//! held transmits) is the server's.

use std::net::UdpSocket;
use std::time::Instant;

use kad_core::io::udp::Received;
use kad_core::io::{Host, Next};
use kad_core::server::{Command, Reply};
use smol::channel::{Receiver, Sender, TryRecvError};
use smol::future::FutureExt;
use smol::{Async, Timer};

/// A command and the reply slot of its caller (a channel of capacity one).
pub(crate) type Call = (Command, Sender<Reply>);

pub(crate) struct Driver {
    host: Host<Sender<Reply>>,
    socket: Async<UdpSocket>,
    commands: Receiver<Call>,
    /// Closed by `stop()` (or when the last handle goes).
    stop: Receiver<()>,
}

/// Why a wait ended.
enum Wake {
    Ready,
    Command(Call),
    Stop,
}

/// What the command channel holds, asked without waiting.
fn next(commands: &Receiver<Call>) -> Next<Sender<Reply>> {
    match commands.try_recv() {
        Ok((cmd, reply_to)) => Next::Call(cmd, reply_to),
        Err(TryRecvError::Empty) => Next::Empty,
        Err(TryRecvError::Closed) => Next::Closed,
    }
}

impl Driver {
    /// Runs until [`crate::KademliaServer::stop`] or until every handle is dropped. The
    /// socket is closed when this returns.
    pub(crate) async fn run(mut self) {
        loop {
            // Time: a fresh `now` every turn; never trust that a timer fired on time.
            if let Some(save) = self.host.begin_pass(Instant::now()) {
                // Detached: the write finishes even if the driver is gone.
                smol::unblock(save).detach();
            }
            let commands = &self.commands;
            let Some(took) = self.host.take_commands(Instant::now, || next(commands)) else {
                return self.shutdown().await;
            };
            // Drained too: a wait would re-arm the socket in the reactor and poll it, which
            // costs more than the read that comes back and finds out.
            let busy = self.receive() != Received::Empty || took;
            self.flush();
            // The caller may have given up; that is fine.
            self.host
                .send_replies(|reply_to, reply| drop(reply_to.try_send(reply)));
            if self.stop.is_closed() {
                return self.shutdown().await;
            }
            if busy {
                // More may be waiting: let other tasks run, then come straight back.
                smol::future::yield_now().await;
                continue;
            }
            let (deadline, blocked) = self.host.poll_timeout(Instant::now());
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
            if let Wake::Command((cmd, reply_to)) = wake {
                self.host.handle_command(Instant::now(), cmd, reply_to);
            } else if let Wake::Stop = wake {
                return self.shutdown().await;
            }
        }
    }

    /// Callers still waiting see [`crate::Error::Stopped`], queued commands are refused and
    /// the state file is written a last time (on smol's blocking pool); the socket closes
    /// when `self` is dropped.
    async fn shutdown(mut self) {
        self.commands.close();
        while self.commands.try_recv().is_ok() {}
        if let Some(last) = self.host.stop(Instant::now()) {
            let result = smol::unblock(last).await;
            self.host.last_saved(Some(result));
        }
        let addr = self.host.server().node().local_addr();
        tracing::debug!(%addr, "kad node stopped");
    }

    /// Reads until the socket would block, runs dry or the pass's budget is spent. smol's
    /// `Async` keeps no readiness to clear: calls go straight to the non-blocking socket,
    /// and the next `readable()` asks the reactor afresh.
    fn receive(&mut self) -> Received {
        self.host
            .receive(self.socket.get_ref(), Instant::now, |f| f())
    }

    /// Sends what the server has to send until the socket's buffer is full.
    fn flush(&mut self) {
        self.host.flush(self.socket.get_ref(), |f| f());
    }

    /// Callers whose futures were dropped: `host` was started with `Sender::is_closed`, so
    /// the server ends their queries.
    pub(crate) fn new(
        host: Host<Sender<Reply>>,
        socket: Async<UdpSocket>,
        commands: Receiver<Call>,
        stop: Receiver<()>,
    ) -> Driver {
        Driver {
            host,
            socket,
            commands,
            stop,
        }
    }
}
