//! The task that owns the [`Server`] and the socket: it reads, sends and waits; every
//! decision (admission, budget, save schedule, held transmits) is the server's.

use std::io;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::Instant;

use kad_core::server::{Command, Reply, Server, COMMANDS_PER_PASS};
use smol::channel::{Receiver, Sender, TryRecvError};
use smol::future::FutureExt;
use smol::{Async, Timer};

use crate::batch::{Inbox, Outbox};
use crate::state;

/// A command and the reply slot of its caller (a channel of capacity one).
pub(crate) type Call = (Command, Sender<Reply>);

pub(crate) struct Driver {
    server: Server<Sender<Reply>>,
    socket: Async<UdpSocket>,
    commands: Receiver<Call>,
    /// Closed by `stop()` (or when the last handle goes).
    stop: Receiver<()>,
    outbox: Outbox,
    inbox: Inbox,
    /// The state file's lock, released when the driver ends (after the last write).
    _lock: Option<std::fs::File>,
    /// The state file, and the result of the write running on the blocking pool.
    state: Option<(PathBuf, Option<Receiver<io::Result<()>>>)>,
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
        state: Option<(PathBuf, std::fs::File)>,
        batch_io: bool,
    ) -> Driver {
        // Callers whose futures were dropped: the server ends their queries.
        server.cancel_abandoned_when(Sender::is_closed);
        let (state, lock) = state.unzip();
        let inbox = Inbox::new(batch_io, server.node().local_addr());
        Driver {
            server,
            socket,
            commands,
            stop,
            outbox: Outbox::new(batch_io),
            inbox,
            _lock: lock,
            state: state.map(|path| (path, None)),
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
                let result = writing.recv().await.unwrap_or_else(|_| Err(panicked()));
                self.server.save_finished(logged(&path, result));
            }
            let snapshot = self.server.snapshot(Instant::now());
            let file = path.clone();
            let result = smol::unblock(move || state::save(&file, &snapshot)).await;
            self.server.save_finished(logged(&path, result));
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
            let _ = tx.try_send(state::save(&path, &snapshot));
        })
        .detach();
        *writing = Some(rx);
    }

    /// Reports the last state write to the server if it has finished.
    fn collect_save(&mut self) {
        let Some((path, Some(writing))) = &mut self.state else {
            return;
        };
        let result = match writing.try_recv() {
            Ok(result) => result,
            Err(TryRecvError::Empty) => return,
            Err(TryRecvError::Closed) => Err(panicked()),
        };
        let ok = logged(path, result);
        if let Some((_, writing)) = &mut self.state {
            *writing = None;
        }
        self.server.save_finished(ok);
    }

    /// Reads datagrams until the socket would block or the pass's budget is spent; returns
    /// whether it was spent (more may be waiting).
    fn receive(&mut self) -> bool {
        loop {
            let want = self.server.datagrams_wanted().min(self.inbox.slots());
            if want == 0 {
                return true;
            }
            let got = match recv(&self.socket, &mut self.inbox, want) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) => {
                    // ICMP errors and the like: count them and read on.
                    tracing::trace!(error = %e, "recv error");
                    self.server.recv_error();
                    continue;
                }
            };
            // One receive time for a batch: its datagrams were all waiting at that call.
            let now = Instant::now();
            for i in 0..got {
                match self.inbox.datagram(i) {
                    Some((from, bytes)) => self.server.handle_datagram(now, from, bytes),
                    None => self.server.recv_error(),
                }
            }
            if got < want {
                // The kernel's queue ran dry within the call; the next wait on
                // `readable` sees anything that came since.
                return false;
            }
        }
    }

    /// Sends what the server has to send, a batch per system call, until the socket's
    /// buffer is full (the rest is held by the server) or nothing is left. A datagram
    /// that fails for good is counted and dropped; the ones behind it are still sent.
    fn flush(&mut self) {
        loop {
            self.outbox.fill(&mut self.server);
            let Some(first) = self.outbox.front() else {
                return;
            };
            match send(self.socket.get_ref(), &self.outbox) {
                Ok(sent) if sent > 0 => self.outbox.done(sent),
                Ok(_) => return self.server.transmit_blocked(self.outbox.take()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return self.server.transmit_blocked(self.outbox.take())
                }
                Err(e) => {
                    tracing::debug!(dst = %first.dst, error = %e, "send failed");
                    self.server.transmit_failed();
                    self.outbox.done(1);
                }
            }
        }
    }
}

/// One read from the non-blocking `socket` into `inbox`: up to `max` datagrams with
/// `recvmmsg` when batching, else one with `recv_from`. Returns how many were read.
fn recv(socket: &Async<UdpSocket>, inbox: &mut Inbox, max: usize) -> io::Result<usize> {
    #[cfg(target_os = "linux")]
    if inbox.slots() > 1 {
        use std::os::fd::AsRawFd;
        return inbox.recv_mmsg(socket.get_ref().as_raw_fd(), max);
    }
    let _ = max;
    inbox.recv_one(|buf| socket.get_ref().recv_from(buf))
}

/// One send of the front of `outbox` on the non-blocking `socket`: a batch with
/// `sendmmsg` when batching, else its first datagram with `send_to`. Returns how many
/// datagrams went.
fn send(socket: &UdpSocket, outbox: &Outbox) -> io::Result<usize> {
    #[cfg(target_os = "linux")]
    if outbox.batched() {
        use std::os::fd::AsRawFd;
        return crate::batch::send_mmsg(socket.as_raw_fd(), outbox.datagrams());
    }
    let Some(t) = outbox.front() else {
        return Ok(0);
    };
    socket.send_to(&t.payload, t.dst).map(|_| 1)
}

fn panicked() -> io::Error {
    io::Error::other("the state write task panicked")
}

/// Logs a failed state write; returns whether it went well.
fn logged(path: &std::path::Path, result: io::Result<()>) -> bool {
    if let Err(e) = &result {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the state file");
    }
    result.is_ok()
}
