//! The node's UDP socket: binding it, and moving datagrams between it and a [`Server`],
//! batched by quinn-udp (up to [`quinn_udp::BATCH_SIZE`] datagrams a read with `recvmmsg`,
//! GRO on Linux), as quinn does.
//!
//! The calls are non-blocking. An adapter passes a `call` closure that makes one of them
//! the way its runtime wants (tokio: inside `try_io`, so that `WouldBlock` clears the
//! readiness tokio caches; smol: as it is), and waits for readiness itself.
//!
//! quinn-udp sends one datagram a system call (`sendmsg`: it batches only segments to one
//! destination, GSO, and a node's replies go to many), so on Linux a batched socket sends
//! with nix's `sendmmsg`, up to [`BATCH_SIZE`] datagrams to as many destinations a call;
//! elsewhere, and without batching, each datagram goes through quinn-udp.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::Instant;

use quinn_udp::{RecvMeta, UdpSocketState, BATCH_SIZE};

use crate::server::{Error, Server};
use crate::Transmit;

mod mmsg;

/// Receive buffer asked of the OS: room for bursts while the adapter is busy.
pub const SOCKET_BUFFER: usize = 1 << 20;

/// Room for one read: the largest UDP payload (nothing is cut short; the core decodes any
/// datagram up to 65,507 bytes), which also holds the largest GRO train the kernel builds.
/// The slots are one zeroed allocation that the kernel writes only as far as each datagram
/// reaches, so a batch of small datagrams touches a page or two per slot.
const SLOT: usize = 65_536;

/// One system call on the socket, made by the adapter's `call` closure.
pub type SocketCall<'a> = &'a mut dyn FnMut() -> io::Result<usize>;

/// Binds a non-blocking UDP socket on `addr` with a [`SOCKET_BUFFER`] receive buffer
/// (best effort: the OS may cap it). An IPv6 socket serves IPv6 only: peers are recorded
/// at their source address, and an IPv4-mapped source would not match the IPv4 address
/// we were given.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Binds the first of `addrs` (what `name` resolved to) that can be bound ([`bind`]) and
/// sets it up for quinn-udp ([`Udp::new`]); [`Error::Bind`] with the last failure.
pub fn bind_first(
    name: &str,
    addrs: impl IntoIterator<Item = SocketAddr>,
    batched: bool,
) -> Result<(std::net::UdpSocket, Udp), Error> {
    let err = |source| Error::Bind {
        addr: name.to_owned(),
        source,
    };
    let mut last = None;
    for a in addrs {
        match bind(a) {
            Ok(s) => {
                let udp = Udp::new(&s, batched).map_err(err)?;
                return Ok((s, udp));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(err(last.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "no address to bind")
    })))
}

/// How a [`Udp::receive`] ended, and so what the adapter does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// The pass's budget is spent and more may be waiting: yield to other tasks, then
    /// come straight back.
    Spent,
    /// A read got fewer datagrams than it asked for: the kernel's queue ran dry within
    /// the call, but under load more come while we answer. With a runtime that keeps the
    /// socket's readiness (tokio), its wait returns at once and the read after it says;
    /// with one that re-arms the socket in its reactor for every wait (smol), yield and
    /// read again: that read costs less than the wait.
    Drained,
    /// A read found nothing (`WouldBlock`): wait for the socket.
    Empty,
}

/// A socket's quinn-udp state, its receive buffers and the transmits of one send.
pub struct Udp {
    state: UdpSocketState,
    buf: Vec<u8>,
    meta: [RecvMeta; BATCH_SIZE],
    /// Reads per call: [`BATCH_SIZE`], or 1 without batching.
    slots: usize,
    /// Datagrams per send: [`BATCH_SIZE`] when batched on Linux, else 1.
    send_slots: usize,
    /// The transmits [`flush`](Self::flush) took from the server for one send; empty
    /// between calls (what was not sent goes back to the server).
    outbox: Vec<Transmit>,
}

impl std::fmt::Debug for Udp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Udp")
            .field("slots", &self.slots)
            .field("send_slots", &self.send_slots)
            .finish()
    }
}

impl Udp {
    /// Sets `socket` up for quinn-udp, reading up to [`BATCH_SIZE`] datagrams a call when
    /// `batched` (else one), and sending as many (Linux; else one). IP fragmentation, which
    /// quinn-udp turns off (QUIC sizes its packets to the path), is turned back on: a kad
    /// reply may be up to 64 KiB, and the Python package relies on the IP layer to carry it.
    pub fn new(socket: &std::net::UdpSocket, batched: bool) -> io::Result<Udp> {
        let state = UdpSocketState::new(socket.into())?;
        allow_fragments(socket, socket.local_addr()?.is_ipv6())?;
        no_ancillary_data(socket, socket.local_addr()?.is_ipv6());
        let slots = if batched { BATCH_SIZE } else { 1 };
        let send_slots = if batched && mmsg::AVAILABLE {
            BATCH_SIZE
        } else {
            1
        };
        Ok(Udp {
            state,
            buf: vec![0; slots * SLOT],
            meta: [RecvMeta::default(); BATCH_SIZE],
            slots,
            send_slots,
            outbox: Vec::with_capacity(send_slots),
        })
    }

    /// How many reads one call can bring.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// One read of up to `max` buffers (at most [`slots`](Self::slots)) from `socket`,
    /// through `call`; returns how many buffers were filled, each one datagram or a GRO
    /// train ([`datagrams`](Self::datagrams) splits them). `WouldBlock` when there was none.
    pub fn recv<S: AsFd>(
        &mut self,
        socket: &S,
        max: usize,
        call: impl FnOnce(SocketCall<'_>) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let n = max.clamp(1, self.slots);
        let (state, meta) = (&self.state, &mut self.meta[..n]);
        let mut chunks = self.buf.chunks_exact_mut(SLOT);
        let mut bufs: [IoSliceMut<'_>; BATCH_SIZE] =
            std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or(&mut [])));
        let bufs = &mut bufs[..n];
        call(&mut || state.recv(socket.into(), bufs, meta))
    }

    /// The datagrams of the last [`recv`](Self::recv) that filled `n` buffers, with their
    /// sources, in the order they came.
    pub fn datagrams(&self, n: usize) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.meta[..n.min(self.slots)]
            .iter()
            .zip(self.buf.chunks_exact(SLOT))
            .flat_map(|(meta, slot)| {
                let bytes = &slot[..meta.len.min(SLOT)];
                // A stride of 0 never comes from the kernel; it would loop forever.
                let stride = if meta.stride == 0 { SLOT } else { meta.stride };
                bytes.chunks(stride).map(move |d| (meta.addr, d))
            })
    }

    /// Sends `payload` to `dst` on `socket` through `call`; `WouldBlock` when the socket's
    /// buffer is full.
    pub fn send<S: AsFd>(
        &self,
        socket: &S,
        dst: SocketAddr,
        payload: &[u8],
        call: impl FnOnce(SocketCall<'_>) -> io::Result<usize>,
    ) -> io::Result<()> {
        let transmit = quinn_udp::Transmit {
            destination: dst,
            ecn: None,
            contents: payload,
            segment_size: None,
            src_ip: None,
        };
        call(&mut || self.state.try_send(socket.into(), &transmit).map(|()| 1)).map(drop)
    }

    /// How many datagrams one [`send_batch`](Self::send_batch) can send.
    pub fn send_slots(&self) -> usize {
        self.send_slots
    }

    /// Sends the first of `datagrams` (up to [`send_slots`](Self::send_slots): one
    /// `sendmmsg` when batched on Linux, else one datagram through quinn-udp) on `socket`
    /// through `call`; returns how many went, at least one. The kernel stops at the first
    /// datagram it cannot send, and an error is returned only when that is the first one
    /// (`WouldBlock` when the socket's buffer is full), so the caller keeps or drops exactly
    /// that datagram and sends the rest again.
    pub fn send_batch<'p, S: AsFd>(
        &self,
        socket: &S,
        datagrams: impl IntoIterator<Item = (SocketAddr, &'p [u8])>,
        mut call: impl FnMut(SocketCall<'_>) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let mut datagrams = datagrams.into_iter();
        if self.send_slots > 1 {
            return mmsg::send(socket, datagrams.take(self.send_slots), call);
        }
        match datagrams.next() {
            Some((dst, payload)) => self.send(socket, dst, payload, &mut call).map(|()| 1),
            None => Ok(0),
        }
    }

    /// Reads datagrams into `server` until the socket would block, a read gets fewer than
    /// it asked for, or the pass's budget ([`Server::datagrams_wanted`]) is spent, and
    /// says which ([`Received`]). Each batch's datagrams reach the
    /// server with one receive time from `clock`; a failed read is counted and reading
    /// goes on.
    pub fn receive<S: AsFd, T>(
        &mut self,
        server: &mut Server<T>,
        socket: &S,
        clock: impl Fn() -> Instant,
        mut call: impl FnMut(SocketCall<'_>) -> io::Result<usize>,
    ) -> Received {
        loop {
            let want = server.datagrams_wanted().min(self.slots);
            if want == 0 {
                return Received::Spent;
            }
            let got = match self.recv(socket, want, &mut call) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Received::Empty,
                // ICMP errors and the like.
                Err(_) => {
                    server.recv_error();
                    continue;
                }
            };
            let now = clock();
            for (from, bytes) in self.datagrams(got) {
                server.handle_datagram(now, from, bytes);
            }
            if got < want {
                return if got == 0 {
                    Received::Empty
                } else {
                    Received::Drained
                };
            }
        }
    }

    /// Sends what `server` has to send, up to [`send_slots`](Self::send_slots) datagrams a
    /// call ([`send_batch`](Self::send_batch)), until the socket's buffer is full (what was
    /// not sent goes back to the server, first in line, in order) or nothing is left. A
    /// datagram that fails for good is counted and dropped; the ones behind it still go.
    pub fn flush<S: AsFd, T>(
        &mut self,
        server: &mut Server<T>,
        socket: &S,
        mut call: impl FnMut(SocketCall<'_>) -> io::Result<usize>,
    ) {
        loop {
            while self.outbox.len() < self.send_slots {
                match server.poll_transmit() {
                    Some(t) => self.outbox.push(t),
                    None => break,
                }
            }
            if self.outbox.is_empty() {
                return;
            }
            let queued = self.outbox.iter().map(|t| (t.dst, &t.payload[..]));
            match self.send_batch(socket, queued, &mut call) {
                Ok(sent) => {
                    // Their buffers back to the node, for its next replies.
                    for t in self.outbox.drain(..sent.clamp(1, self.outbox.len())) {
                        server.recycle(t.payload);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return server.transmit_blocked(self.outbox.drain(..));
                }
                Err(_) => {
                    server.transmit_failed();
                    drop(self.outbox.remove(0));
                }
            }
        }
    }
}

/// Lets the kernel fragment datagrams larger than the path's MTU again (Linux; quinn-udp
/// sets `IP_PMTUDISC_PROBE` and `IPV6_DONTFRAG`, which refuse them with `EMSGSIZE`).
#[cfg(target_os = "linux")]
fn allow_fragments<S: AsFd>(socket: &S, v6: bool) -> io::Result<()> {
    use rustix::net::sockopt;
    if v6 {
        sockopt::set_ipv6_mtu_discover(socket, sockopt::Ipv6PathMtuDiscovery::DONT)?;
        nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::Ipv6DontFrag, &false)
            .map_err(io::Error::from)?;
    } else {
        sockopt::set_ip_mtu_discover(socket, sockopt::Ipv4PathMtuDiscovery::DONT)?;
    }
    Ok(())
}

/// Asks the kernel for no ancillary data with each datagram received: quinn-udp turns on
/// the destination address (`IP_PKTINFO`) and the ECN bits (`IP_RECVTOS`), which kad uses
/// neither of, and whose control messages cost every read (Linux; best effort: a socket
/// that keeps them works the same, a little slower).
#[cfg(target_os = "linux")]
fn no_ancillary_data<S: AsFd>(socket: &S, v6: bool) {
    use nix::sys::socket::{setsockopt, sockopt};
    let _ = setsockopt(socket, sockopt::IpRecvTos, &false);
    let _ = setsockopt(socket, sockopt::Ipv4PacketInfo, &false);
    if v6 {
        let _ = setsockopt(socket, sockopt::Ipv6RecvTClass, &false);
        let _ = setsockopt(socket, sockopt::Ipv6RecvPacketInfo, &false);
    }
}

#[cfg(not(target_os = "linux"))]
fn no_ancillary_data<S: AsFd>(_socket: &S, _v6: bool) {}

#[cfg(not(target_os = "linux"))]
fn allow_fragments<S: AsFd>(_socket: &S, _v6: bool) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(addr: &str) -> std::net::UdpSocket {
        bind(addr.parse().expect("an address")).expect("bind")
    }

    /// quinn-udp sets `IP_PMTUDISC_PROBE`, which refuses a datagram larger than the link's
    /// MTU (a 20-peer JSON reply over Ethernet); `Udp::new` must undo it.
    #[cfg(target_os = "linux")]
    #[test]
    #[cfg(target_os = "linux")]
    fn no_ancillary_data_is_asked_for() {
        use nix::sys::socket::{getsockopt, sockopt};
        let v4 = socket("127.0.0.1:0");
        let _udp = Udp::new(&v4, true).expect("quinn-udp state");
        assert!(!getsockopt(&v4, sockopt::Ipv4PacketInfo).expect("IP_PKTINFO"));
        assert!(!getsockopt(&v4, sockopt::IpRecvTos).expect("IP_RECVTOS"));
        let v6 = socket("[::1]:0");
        let _udp = Udp::new(&v6, true).expect("quinn-udp state");
        assert!(!getsockopt(&v6, sockopt::Ipv6RecvPacketInfo).expect("IPV6_RECVPKTINFO"));
        assert!(!getsockopt(&v6, sockopt::Ipv6RecvTClass).expect("IPV6_RECVTCLASS"));
    }

    #[test]
    fn fragmentation_is_allowed_again() {
        use rustix::net::sockopt;
        let v4 = socket("127.0.0.1:0");
        let _udp = Udp::new(&v4, true).expect("quinn-udp state");
        assert_eq!(
            sockopt::ip_mtu_discover(&v4).expect("IP_MTU_DISCOVER"),
            sockopt::Ipv4PathMtuDiscovery::DONT
        );
        let v6 = socket("[::1]:0");
        let _udp = Udp::new(&v6, true).expect("quinn-udp state");
        assert_eq!(
            sockopt::ipv6_mtu_discover(&v6).expect("IPV6_MTU_DISCOVER"),
            sockopt::Ipv6PathMtuDiscovery::DONT
        );
        let dontfrag = nix::sys::socket::getsockopt(&v6, nix::sys::socket::sockopt::Ipv6DontFrag);
        assert!(!dontfrag.expect("IPV6_DONTFRAG"));
    }

    /// `receive` says how a pass's reading ended: a read that got fewer datagrams than it
    /// asked for is `Drained`, one that got none `Empty`, and a pass past its budget
    /// (`max_dispatch_tasks` x `READS_PER_DISPATCH` = 4 here) `Spent`.
    #[test]
    fn receive_says_how_reading_ended() {
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        for batched in [true, false] {
            let mut server = server(
                crate::Config::builder()
                    .max_dispatch_tasks(1)
                    .build()
                    .expect("a config"),
            );
            let (tx, rx) = (socket("127.0.0.1:0"), socket("127.0.0.1:0"));
            let mut udp = Udp::new(&rx, batched).expect("state");
            let dst = rx.local_addr().expect("addr");
            let send = |n: usize| {
                for _ in 0..n {
                    tx.send_to(b"junk", dst).expect("send");
                }
                // Loopback delivers at once; a moment for the receiving queue all the same.
                std::thread::sleep(std::time::Duration::from_millis(20));
            };
            let mut read = |server: &mut Server<u32>| udp.receive(server, &rx, || now, |f| f());
            server.begin_pass(now);
            send(2);
            let want = if batched && cfg!(target_os = "linux") {
                Received::Drained
            } else {
                // One datagram a read: a read never gets fewer than it asked for.
                Received::Empty
            };
            assert_eq!(read(&mut server), want, "batched {batched}");
            assert_eq!(read(&mut server), Received::Empty);
            // Two more fill the pass's budget of four; three wait for the next pass.
            send(5);
            assert_eq!(read(&mut server), Received::Spent);
            server.begin_pass(now);
            assert_eq!(read(&mut server), want, "the rest");
            assert_eq!(read(&mut server), Received::Empty);
        }
    }

    /// A server whose node sends nothing by itself yet, with `transmits` queued to go
    /// first (as after `WouldBlock`; that counts once in `send_blocked`).
    fn server_with(transmits: Vec<Transmit>) -> Server<u32> {
        let mut server = server(crate::Config::default());
        server.transmit_blocked(transmits);
        server
    }

    /// A server over a node with `config`, bound (as it says) to 127.0.0.1:1.
    fn server(config: crate::Config) -> Server<u32> {
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        let mut node = crate::Node::new(config, crate::NodeId::for_key("udp"), [1; 32], now);
        node.set_local_addr("127.0.0.1:1".parse().expect("an address"));
        Server::new(node)
    }

    /// `n` receivers, each with a read timeout (loopback delivers at once; the timeout
    /// only keeps a lost datagram from hanging the test).
    fn receivers(n: usize) -> Vec<std::net::UdpSocket> {
        (0..n)
            .map(|_| {
                let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
                s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                    .expect("timeout");
                s
            })
            .collect()
    }

    fn to(s: &std::net::UdpSocket, payload: &[u8]) -> Transmit {
        Transmit {
            dst: s.local_addr().expect("addr"),
            payload: payload.to_vec(),
        }
    }

    fn received(s: &std::net::UdpSocket) -> Vec<u8> {
        let mut buf = vec![0; SLOT];
        let n = s.recv(&mut buf).expect("a datagram");
        buf.truncate(n);
        buf
    }

    /// 40 transmits to 40 destinations all arrive, each with its bytes; batched on Linux
    /// that takes two calls (32 + 8: `sendmmsg`), one a datagram otherwise.
    #[test]
    fn a_batch_to_many_destinations_all_arrives() {
        for batched in [true, false] {
            let (sock, rx) = (socket("127.0.0.1:0"), receivers(40));
            let payloads: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 10 + i as usize]).collect();
            let mut server = server_with(rx.iter().zip(&payloads).map(|(r, p)| to(r, p)).collect());
            let mut udp = Udp::new(&sock, batched).expect("state");
            let mut calls = 0;
            udp.flush(&mut server, &sock, |f| {
                calls += 1;
                f()
            });
            for (r, p) in rx.iter().zip(&payloads) {
                assert_eq!(&received(r), p, "batched {batched}");
            }
            assert_eq!(server.poll_transmit(), None);
            assert_eq!(server.stats().send_errors, 0);
            let want = if batched && cfg!(target_os = "linux") {
                2
            } else {
                40
            };
            assert_eq!(calls, want, "batched {batched}: system calls");
        }
    }

    /// A datagram the kernel refuses (broadcast without `SO_BROADCAST`; larger than UDP
    /// allows) is counted and dropped; the ones before and after it still go.
    #[test]
    fn a_failed_send_loses_only_its_own_datagram() {
        for batched in [true, false] {
            let (sock, rx) = (socket("127.0.0.1:0"), receivers(3));
            let broadcast = Transmit {
                dst: "255.255.255.255:9".parse().expect("an address"),
                payload: b"nobody".to_vec(),
            };
            let server_transmits = vec![
                to(&rx[0], b"first"),
                broadcast,
                to(&rx[1], b"second"),
                to(&rx[2], &[0; 70_000]),
                to(&rx[2], b"third"),
            ];
            let mut server = server_with(server_transmits);
            let mut udp = Udp::new(&sock, batched).expect("state");
            udp.flush(&mut server, &sock, |f| f());
            assert_eq!(received(&rx[0]), b"first");
            assert_eq!(received(&rx[1]), b"second");
            assert_eq!(received(&rx[2]), b"third", "the too-large one is not sent");
            assert_eq!(server.stats().send_errors, 2, "batched {batched}");
            assert!(!server.is_send_blocked());
        }
    }

    /// When the socket's buffer fills in the middle (the second call reports
    /// `WouldBlock`), what was not sent stays with the server, in order, first in line,
    /// and goes with the next flush.
    #[test]
    fn what_a_full_socket_refused_stays_queued_in_order() {
        for batched in [true, false] {
            let (sock, rx) = (socket("127.0.0.1:0"), receivers(40));
            let payloads: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 3]).collect();
            let transmits: Vec<Transmit> =
                rx.iter().zip(&payloads).map(|(r, p)| to(r, p)).collect();
            let mut server = server_with(transmits.clone());
            let mut udp = Udp::new(&sock, batched).expect("state");
            let mut calls = 0;
            udp.flush(&mut server, &sock, |f| {
                calls += 1;
                if calls == 1 {
                    f()
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                }
            });
            let went = udp.send_slots();
            assert!(server.is_send_blocked());
            assert_eq!(server.stats().send_blocked, 2, "queued once, refused once");
            for (r, p) in rx.iter().zip(&payloads).take(went) {
                assert_eq!(&received(r), p);
            }
            // The rest, in order, then nothing.
            let mut held = Vec::new();
            while let Some(t) = server.poll_transmit() {
                held.push(t);
            }
            assert_eq!(held, transmits[went..], "batched {batched}");
            server.transmit_blocked(held);
            udp.flush(&mut server, &sock, |f| f());
            for (r, p) in rx.iter().zip(&payloads).skip(went) {
                assert_eq!(&received(r), p);
            }
            assert_eq!(server.poll_transmit(), None);
        }
    }

    /// Batched and one-a-call sockets exchange large datagrams (30 KB, far beyond a
    /// typical one) both ways through `flush` and `recv`, over IPv4 and IPv6 on one thread,
    /// whose send headers serve both families. (Moved here from both adapters'
    /// `batch_io.rs`; their IPv6 smoke tests stay in `sockets.rs`.)
    #[test]
    fn batched_and_unbatched_sockets_agree_over_ipv4_and_ipv6() {
        for host in ["127.0.0.1:0", "[::1]:0", "127.0.0.1:0"] {
            let Ok(first) = bind(host.parse().expect("an address")) else {
                eprintln!("{host} skipped: no such loopback here");
                continue;
            };
            let second = socket(host);
            let mut ends = [
                (Udp::new(&first, true).expect("state"), first),
                (Udp::new(&second, false).expect("state"), second),
            ];
            for (from, to) in [(0, 1), (1, 0)] {
                let src = ends[from].1.local_addr().expect("addr");
                let dst = ends[to].1.local_addr().expect("addr");
                let large: Vec<u8> = (0..30_000u32).map(|i| (i as u8) ^ from as u8).collect();
                let sent = [large, b"small".to_vec()];
                let mut server = server_with(
                    sent.iter()
                        .map(|p| Transmit {
                            dst,
                            payload: p.clone(),
                        })
                        .collect(),
                );
                let (udp, sock) = &mut ends[from];
                udp.flush(&mut server, sock, |f| f());
                assert_eq!(server.stats().send_errors, 0);
                let (udp, sock) = &mut ends[to];
                let mut got = Vec::new();
                while got.len() < sent.len() {
                    match udp.recv(sock, 32, |f| f()) {
                        Ok(n) => got.extend(udp.datagrams(n).map(|(a, d)| (a, d.to_vec()))),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                        Err(e) => panic!("recv: {e}"),
                    }
                }
                let want: Vec<(SocketAddr, Vec<u8>)> =
                    sent.iter().map(|p| (src, p.clone())).collect();
                assert_eq!(got, want, "{host}, {from} to {to}");
            }
        }
    }

    /// A GRO train is split at its stride into the datagrams the peer sent.
    #[test]
    fn a_read_is_split_at_its_stride() {
        let s = socket("127.0.0.1:0");
        let mut udp = Udp::new(&s, true).expect("quinn-udp state");
        let from: SocketAddr = "127.0.0.1:9".parse().expect("an address");
        udp.buf[..5].copy_from_slice(b"aabbc");
        udp.meta[0].addr = from;
        udp.meta[0].len = 5;
        udp.meta[0].stride = 2;
        udp.buf[SLOT..SLOT + 3].copy_from_slice(b"xyz");
        udp.meta[1].addr = from;
        udp.meta[1].len = 3;
        udp.meta[1].stride = 3;
        let got: Vec<&[u8]> = udp.datagrams(2).map(|(_, d)| d).collect();
        assert_eq!(got, [&b"aa"[..], b"bb", b"c", b"xyz"]);
    }

    /// Reads and sends go through quinn-udp, batched, and each datagram keeps its bytes
    /// and source.
    #[test]
    fn datagrams_go_and_come_back() {
        let (a, b) = (socket("127.0.0.1:0"), socket("127.0.0.1:0"));
        let (ua, mut ub) = (
            Udp::new(&a, true).expect("state"),
            Udp::new(&b, true).expect("state"),
        );
        let dst = b.local_addr().expect("addr");
        for p in [&b"one"[..], b"two", &[7u8; 3000]] {
            ua.send(&a, dst, p, |f| f()).expect("send");
        }
        let mut got = Vec::new();
        while got.len() < 3 {
            match ub.recv(&b, 32, |f| f()) {
                Ok(n) => got.extend(ub.datagrams(n).map(|(from, d)| (from, d.to_vec()))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("recv: {e}"),
            }
        }
        let from = a.local_addr().expect("addr");
        assert_eq!(got[0], (from, b"one".to_vec()));
        assert_eq!(got[1], (from, b"two".to_vec()));
        assert_eq!(got[2], (from, vec![7u8; 3000]));
    }
}
