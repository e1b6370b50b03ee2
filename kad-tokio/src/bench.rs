//! Not part of the API (hidden, may change in any release): what kad's own benches need
//! from inside the crate.

use std::io;

use tokio::net::UdpSocket;

use crate::batch::Inbox;

/// Sends every datagram back to where it came from, until an error other than
/// `WouldBlock` on waiting: the loopback bench's echo server, reading and sending with
/// the node's own batched system calls (`recvmmsg`/`sendmmsg` on Linux) when `batched`,
/// so that the bench's "physical limit" has the same advantage as the node.
pub async fn echo(socket: UdpSocket, batched: bool) -> io::Result<()> {
    let mut inbox = Inbox::new(batched, socket.local_addr()?);
    let slots = inbox.slots();
    loop {
        socket.readable().await?;
        // Nothing to read after all (`WouldBlock`), or an ICMP error report: wait again.
        let Ok(got) = crate::driver::recv(&socket, &mut inbox, slots) else {
            continue;
        };
        let mut next = 0;
        while next < got {
            match send_back(&socket, &inbox, next, got, batched) {
                Ok(sent) => next += sent.max(1),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => socket.writable().await?,
                Err(_) => next += 1,
            }
        }
    }
}

/// Sends datagrams `from..to` of `inbox` back to their sources; returns how many went.
fn send_back(
    socket: &UdpSocket,
    inbox: &Inbox,
    from: usize,
    to: usize,
    batched: bool,
) -> io::Result<usize> {
    #[cfg(target_os = "linux")]
    if batched {
        use std::os::fd::AsRawFd;
        let fd = socket.as_raw_fd();
        return socket.try_io(tokio::io::Interest::WRITABLE, || {
            // Up to the first datagram without a source, which the caller then skips.
            crate::batch::send_mmsg(fd, (from..to).map_while(|i| inbox.datagram(i)))
        });
    }
    let _ = (to, batched);
    let Some((dst, bytes)) = inbox.datagram(from) else {
        return Ok(0);
    };
    socket.try_send_to(bytes, dst).map(|_| 1)
}
