//! Not part of the API (hidden, may change in any release): what kad's own benches need
//! from inside the crate.

use std::io;

use kad_core::io::udp::Udp;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Sends every datagram back to where it came from, until an error other than
/// `WouldBlock` on waiting: the loopback bench's echo server, reading and sending with the
/// node's own socket calls (quinn-udp: batched reads when `batched`, one datagram a send),
/// so that the bench's "physical limit" has the same advantage as the node.
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
        for (dst, bytes) in udp.datagrams(got) {
            loop {
                match udp.send(&socket, dst, bytes, |f| {
                    socket.try_io(Interest::WRITABLE, f)
                }) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => socket.writable().await?,
                    _ => break,
                }
            }
        }
    }
}
