//! Batched sends to many destinations: nix's `sendmmsg` on Linux; elsewhere nothing
//! ([`AVAILABLE`] is false and a batched socket sends one datagram a call, through
//! quinn-udp).

#[cfg(target_os = "linux")]
pub(super) use linux::*;
#[cfg(not(target_os = "linux"))]
pub(super) use other::*;

#[cfg(target_os = "linux")]
mod linux {
    use std::cell::RefCell;
    use std::io::{self, IoSlice};
    use std::net::SocketAddr;
    use std::os::fd::{AsFd, AsRawFd};

    use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
    use quinn_udp::BATCH_SIZE;

    use super::super::SocketCall;

    /// Whether sends can be batched here.
    pub(crate) const AVAILABLE: bool = true;

    thread_local! {
        /// The kernel's message headers. nix's `MultiHeaders` holds raw pointers, so it is
        /// not `Send` and a [`super::super::Udp`] cannot own one; each thread keeps its own
        /// instead, used only inside one synchronous call, so the hot path allocates
        /// nothing. Filled afresh (address, payload) on every call.
        static HEADERS: RefCell<MultiHeaders<SockaddrStorage>> =
            RefCell::new(MultiHeaders::preallocate(BATCH_SIZE, None));
    }

    /// One `sendmmsg` of up to [`BATCH_SIZE`] of `datagrams` through `call` (retried when
    /// a signal interrupts it); how many went, at least one, or the error of the first.
    pub(crate) fn send<'p, S: AsFd>(
        socket: &S,
        datagrams: impl Iterator<Item = (SocketAddr, &'p [u8])>,
        call: impl FnOnce(SocketCall<'_>) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let mut addrs: [Option<SockaddrStorage>; BATCH_SIZE] = [None; BATCH_SIZE];
        let mut iovs: [[IoSlice<'p>; 1]; BATCH_SIZE] = [[IoSlice::new(&[])]; BATCH_SIZE];
        let mut n = 0;
        for ((dst, payload), (addr, iov)) in datagrams.zip(addrs.iter_mut().zip(&mut iovs)) {
            *addr = Some(SockaddrStorage::from(dst));
            *iov = [IoSlice::new(payload)];
            n += 1;
        }
        if n == 0 {
            return Ok(0);
        }
        let fd = socket.as_fd().as_raw_fd();
        let no_cmsgs: [ControlMessage<'_>; 0] = [];
        let sent = call(&mut || {
            HEADERS.with(|h| loop {
                let mut headers = h.borrow_mut();
                let flags = MsgFlags::empty();
                match sendmmsg(fd, &mut headers, &iovs[..n], &addrs[..n], no_cmsgs, flags) {
                    Ok(sent) => return Ok(sent.count()),
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(io::Error::from(e)),
                }
            })
        })?;
        // The kernel sends at least one or fails; never report an empty send as progress.
        match sent {
            0 => Err(io::ErrorKind::WouldBlock.into()),
            sent => Ok(sent.min(n)),
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod other {
    use std::io;
    use std::net::SocketAddr;
    use std::os::fd::AsFd;

    use super::super::SocketCall;

    /// Whether sends can be batched here.
    pub(crate) const AVAILABLE: bool = false;

    /// Never called: [`super::super::Udp::send_slots`] is 1 here.
    pub(crate) fn send<'p, S: AsFd>(
        _socket: &S,
        _datagrams: impl Iterator<Item = (SocketAddr, &'p [u8])>,
        _call: impl FnOnce(SocketCall<'_>) -> io::Result<usize>,
    ) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }
}
