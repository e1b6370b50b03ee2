//! Two nodes on loopback, one value: `cargo run -p kad-tokio --example two_nodes`.
//! Exits 0 when the second node reads back what the first stored.

use std::process::ExitCode;

use kad_tokio::{Error, KademliaServer, Value};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<ExitCode, Error> {
    // Port 0: the OS picks a free port; `local_addr` tells which.
    let first = KademliaServer::builder().listen("127.0.0.1:0").await?;
    let second = KademliaServer::builder().listen("127.0.0.1:0").await?;

    // Join through any node that is already in the network.
    second.bootstrap(&[first.local_addr().to_string()]).await?;

    // Stored on the k nodes closest to the key (here, both), and read back from the other.
    let stored = first.set("greeting", "hello").await?;
    let value = second.get("greeting").await?;
    println!(
        "stored on {} other node(s); read back {value:?}",
        stored.replicas
    );

    first.stop().await;
    second.stop().await;
    Ok(match value == Some(Value::from("hello")) {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    })
}
