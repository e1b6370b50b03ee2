//! Batched datagram I/O: up to [`BATCH`] datagrams per system call, with `recvmmsg` and
//! `sendmmsg` on Linux, and one datagram per call elsewhere or when the builder turns
//! batching off.
//!
//! kad-tokio and kad-smol hold the same copy of this file (keep them identical): it knows
//! no runtime. Each driver makes the calls inside its runtime's readiness handling (tokio's
//! `try_io`, smol's `Async`) and picks the batched or the one-datagram call.
//!
//! The system calls come from `nix`, whose `MultiHeaders` (the kernel's `mmsghdr` array)
//! holds raw pointers and so is not `Send`: a driver cannot own one and still be spawned.
//! Each thread keeps its own headers instead; they are only used inside one synchronous
//! call, never across an `await`, so the nodes of a thread share them safely and the hot
//! path allocates nothing.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;

use kad_core::server::Server;
use kad_core::Transmit;

/// Datagrams moved per system call when batching.
pub(crate) const BATCH: usize = 32;

/// Whether this system has `recvmmsg`/`sendmmsg` (elsewhere a batch is one datagram).
const HAS_MMSG: bool = cfg!(target_os = "linux");

/// Room for one datagram: the largest UDP payload, so that nothing is ever cut short (the
/// core decodes any datagram it is given, up to 65,507 bytes). The slots are one zeroed
/// allocation that the kernel writes only as far as each datagram reaches, so a batch of
/// small datagrams touches a page or two per slot, not 64 KiB.
const SLOT: usize = 65_536;

/// Receive buffers, and the length and source of each datagram the last read put there.
pub(crate) struct Inbox {
    buf: Vec<u8>,
    /// Datagram `i` is in slot `i`, whatever happens to the others: a message the kernel
    /// gave without a source (`None`) keeps its place rather than shifting the rest.
    got: [(usize, Option<SocketAddr>); BATCH],
    /// The socket's family: the kernel writes each source address's length back into the
    /// headers (and nix keeps it), so IPv4 and IPv6 sockets use separate headers.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    v6: bool,
}

impl Inbox {
    /// Buffers for [`BATCH`] datagrams, or for one when `batched` is false or the system
    /// cannot batch.
    pub(crate) fn new(batched: bool, local: SocketAddr) -> Inbox {
        let slots = if batched && HAS_MMSG { BATCH } else { 1 };
        Inbox {
            buf: vec![0; slots * SLOT],
            got: [(0, None); BATCH],
            v6: local.is_ipv6(),
        }
    }

    /// How many datagrams one read can bring: [`BATCH`], or 1 without batching.
    pub(crate) fn slots(&self) -> usize {
        self.buf.len() / SLOT
    }

    /// Datagram `i` of the last read: its source and its bytes; `None` if the kernel named
    /// no source (which a UDP socket does not do, but nothing is answered without one).
    pub(crate) fn datagram(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        let (len, from) = self.got[i];
        Some((from?, &self.buf[i * SLOT..i * SLOT + len]))
    }

    /// Reads one datagram with `recv_from` (a runtime's one-datagram call) into the first
    /// slot; returns 1.
    pub(crate) fn recv_one(
        &mut self,
        recv_from: impl FnOnce(&mut [u8]) -> io::Result<(usize, SocketAddr)>,
    ) -> io::Result<usize> {
        let (len, from) = recv_from(&mut self.buf[..SLOT])?;
        self.got[0] = (len, Some(from));
        Ok(1)
    }

    /// Reads up to `max` datagrams (at most [`slots`](Self::slots)) from the non-blocking
    /// socket `fd` with one `recvmmsg`; returns how many. `WouldBlock` when there are none.
    #[cfg(target_os = "linux")]
    pub(crate) fn recv_mmsg(&mut self, fd: std::os::fd::RawFd, max: usize) -> io::Result<usize> {
        use nix::sys::socket::{SockaddrIn, SockaddrIn6};
        let max = max.clamp(1, self.slots());
        let (buf, got) = (&mut self.buf[..max * SLOT], &mut self.got[..max]);
        if self.v6 {
            mmsg::RECV_V6.with(|h| {
                mmsg::recv(&mut h.borrow_mut(), fd, buf, got, |a: SockaddrIn6| {
                    SocketAddr::V6(a.into())
                })
            })
        } else {
            mmsg::RECV_V4.with(|h| {
                mmsg::recv(&mut h.borrow_mut(), fd, buf, got, |a: SockaddrIn| {
                    SocketAddr::V4(a.into())
                })
            })
        }
    }
}

/// Transmits taken from the server for one send: at most one batch (one datagram without
/// batching). What a full socket buffer refused goes back to the server with
/// [`take`](Self::take).
pub(crate) struct Outbox {
    queue: VecDeque<Transmit>,
    batch: usize,
}

impl Outbox {
    /// Room for [`BATCH`] transmits, or for one when `batched` is false or the system
    /// cannot batch.
    pub(crate) fn new(batched: bool) -> Outbox {
        let batch = if batched && HAS_MMSG { BATCH } else { 1 };
        Outbox {
            queue: VecDeque::with_capacity(batch),
            batch,
        }
    }

    /// Whether sends go out a batch at a time.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn batched(&self) -> bool {
        self.batch > 1
    }

    /// Tops the queue up from `server`'s transmits, to one batch.
    pub(crate) fn fill<T>(&mut self, server: &mut Server<T>) {
        while self.queue.len() < self.batch {
            let Some(t) = server.poll_transmit() else {
                return;
            };
            self.queue.push_back(t);
        }
    }

    /// The next transmit to send.
    pub(crate) fn front(&self) -> Option<&Transmit> {
        self.queue.front()
    }

    /// The queued transmits, in order, as (destination, payload).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.queue.iter().map(|t| (t.dst, &t.payload[..]))
    }

    /// Empties the queue: what it holds was not sent.
    pub(crate) fn take(&mut self) -> impl Iterator<Item = Transmit> + '_ {
        self.queue.drain(..)
    }

    /// Forgets the first `n` transmits: sent, or failed for good.
    pub(crate) fn done(&mut self, n: usize) {
        self.queue.drain(..n.min(self.queue.len()));
    }
}

/// Sends the first (up to [`BATCH`]) of `datagrams` on the non-blocking socket `fd` with one
/// `sendmmsg`; returns how many went. The kernel stops at the first datagram it cannot
/// send: an error is returned only when that is the first one (`WouldBlock` when the
/// socket's buffer is full), so the caller drops or keeps exactly that datagram and sends
/// the rest again.
#[cfg(target_os = "linux")]
pub(crate) fn send_mmsg<'p>(
    fd: std::os::fd::RawFd,
    datagrams: impl Iterator<Item = (SocketAddr, &'p [u8])>,
) -> io::Result<usize> {
    mmsg::SEND.with(|h| mmsg::send(&mut h.borrow_mut(), fd, datagrams))
}

#[cfg(target_os = "linux")]
mod mmsg {
    use std::cell::RefCell;
    use std::io::{self, IoSlice, IoSliceMut};
    use std::net::SocketAddr;
    use std::os::fd::RawFd;

    use nix::sys::socket::{
        recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrIn, SockaddrIn6,
        SockaddrLike, SockaddrStorage,
    };

    use super::{BATCH, SLOT};

    thread_local! {
        /// Headers typed by family: preallocated with the family's exact address length,
        /// which is what the kernel writes back.
        pub(super) static RECV_V4: RefCell<MultiHeaders<SockaddrIn>> =
            RefCell::new(MultiHeaders::preallocate(BATCH, None));
        pub(super) static RECV_V6: RefCell<MultiHeaders<SockaddrIn6>> =
            RefCell::new(MultiHeaders::preallocate(BATCH, None));
        /// Send headers are filled afresh (address, length, payload) on every call; they
        /// are never used to receive, since they then point at the caller's addresses.
        pub(super) static SEND: RefCell<MultiHeaders<SockaddrStorage>> =
            RefCell::new(MultiHeaders::preallocate(BATCH, None));
    }

    pub(super) fn recv<S: SockaddrLike + Copy>(
        headers: &mut MultiHeaders<S>,
        fd: RawFd,
        buf: &mut [u8],
        got: &mut [(usize, Option<SocketAddr>)],
        to_std: impl Fn(S) -> SocketAddr,
    ) -> io::Result<usize> {
        let mut slots = buf.chunks_exact_mut(SLOT);
        let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] =
            std::array::from_fn(|_| [IoSliceMut::new(slots.next().unwrap_or(&mut []))]);
        let n = got.len().min(BATCH);
        let results = recvmmsg(fd, headers, &mut iovs[..n], MsgFlags::empty(), None)?;
        let mut read = 0;
        for (msg, slot) in results.zip(got.iter_mut()) {
            *slot = (msg.bytes, msg.address.map(&to_std));
            read += 1;
        }
        Ok(read)
    }

    pub(super) fn send<'p>(
        headers: &mut MultiHeaders<SockaddrStorage>,
        fd: RawFd,
        datagrams: impl Iterator<Item = (SocketAddr, &'p [u8])>,
    ) -> io::Result<usize> {
        let mut addrs: [Option<SockaddrStorage>; BATCH] = [None; BATCH];
        let mut iovs: [[IoSlice<'p>; 1]; BATCH] = [[IoSlice::new(&[])]; BATCH];
        let mut n = 0;
        for ((dst, payload), (addr, iov)) in datagrams.zip(addrs.iter_mut().zip(&mut iovs)) {
            *addr = Some(SockaddrStorage::from(dst));
            *iov = [IoSlice::new(payload)];
            n += 1;
        }
        if n == 0 {
            return Ok(0);
        }
        let no_cmsgs: [ControlMessage<'_>; 0] = [];
        let sent = sendmmsg(
            fd,
            headers,
            &iovs[..n],
            &addrs[..n],
            no_cmsgs,
            MsgFlags::empty(),
        )?;
        Ok(sent.count())
    }
}
