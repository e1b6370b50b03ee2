//! A key-value service on smol that watches what its node does:
//! `cargo run -p kad-smol --example kv_service`.
//!
//! The service's node subscribes to its events (`events()`); a client (in client mode: it
//! queries and writes, but no node adds it to its routing table) joins and writes a few
//! keys. The service sees each record arrive (`Event::RecordStored`), reads it from its own
//! store, and stops once it has every key. Exits 0 then; 1 on an error or after 30 s.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::Duration;

use kad_smol::{Error, Event, KademliaServer, Notice};
use smol::future::FutureExt;
use smol::stream::StreamExt;

const DATA: [(&str, &str); 3] = [("alice", "lyon"), ("bob", "porto"), ("carol", "graz")];

fn main() -> ExitCode {
    let timeout = async {
        smol::Timer::after(Duration::from_secs(30)).await;
        Err("timed out".to_owned())
    };
    let run = async { run().await.map_err(|e| e.to_string()) };
    match smol::block_on(run.or(timeout)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Error> {
    let service = KademliaServer::builder().listen("127.0.0.1:0").await?;
    // From now on, in order; a subscriber that falls behind gets `Notice::Missed`.
    let mut events = service.events().await?;

    let client = KademliaServer::builder()
        .client_mode(true)
        .listen("127.0.0.1:0")
        .await?;
    client
        .bootstrap(&[service.local_addr().to_string()])
        .await?;
    for (key, value) in DATA {
        client.set(key, value).await?;
    }

    let mut waiting: BTreeSet<&str> = DATA.iter().map(|(k, _)| *k).collect();
    while !waiting.is_empty() {
        let Some(notice) = events.next().await else {
            return Err(Error::Stopped); // the stream ends when the node stops
        };
        match notice {
            Notice::Event(Event::RecordStored { key, from, .. }) => {
                let value = service.get_local(&key).await?;
                println!("{key} = {value:?} (from {from})");
                waiting.remove(key.as_str());
            }
            Notice::Event(Event::PeerAdded { peer }) => println!("peer {} joined", peer.addr),
            Notice::Missed(n) => println!("({n} events missed)"),
            _ => {} // queries started and finished, addresses verified...
        }
    }
    client.stop().await;
    service.stop().await;
    Ok(())
}
