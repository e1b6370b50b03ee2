//! Not part of the API (hidden, may change in any release): what kad's own benches need
//! from inside the crate.

use std::io;
use std::net::SocketAddr;

use kad_core::io::udp::Udp;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Sends every datagram back to where it came from, until an error other than
/// `WouldBlock` on waiting: the loopback bench's echo server, reading and sending with the
/// node's own socket calls (quinn-udp's batched reads and `sendmmsg` on Linux when
/// `batched`), so that the bench's "physical limit" has the same advantage as the node.
pub async fn echo(socket: UdpSocket, batched: bool) -> io::Result<()> {
    let std = socket.into_std()?;
    let udp = Udp::new(&std, batched)?;
    let socket = UdpSocket::from_std(std)?;
    echo_with(socket, udp).await
}

async fn echo_with(socket: UdpSocket, mut udp: Udp) -> io::Result<()> {
    let slots = udp.slots();
    loop {
        socket.readable().await?;
        // Nothing to read after all (`WouldBlock`), or an ICMP error report: wait again.
        let Ok(got) = udp.recv(&socket, slots, |f| socket.try_io(Interest::READABLE, f)) else {
            continue;
        };
        let replies: Vec<(SocketAddr, &[u8])> = udp.datagrams(got).collect();
        let mut rest = &replies[..];
        while !rest.is_empty() {
            let queued = rest.iter().copied();
            match udp.send_batch(&socket, queued, |f| socket.try_io(Interest::WRITABLE, f)) {
                Ok(sent) => rest = &rest[sent.min(rest.len())..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => socket.writable().await?,
                Err(_) => rest = &rest[1..],
            }
        }
    }
}
