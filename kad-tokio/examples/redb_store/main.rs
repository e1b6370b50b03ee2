//! A node whose records live in a redb database, and survive a restart without a state
//! file: `cargo run -p kad-tokio --example redb_store`.
//!
//! Node `a` keeps its records in `records.redb` ([`store::RedbStore`]); node `b` stores a
//! value on it, and `a` publishes one of its own. Both stop; a new node built on the same
//! file, with no state file and no network, still holds both records. Exits 0 when it
//! does, 1 when it does not, within 30 seconds.

mod store;

use std::process::ExitCode;
use std::time::Duration;

use kad_tokio::{KademliaServer, Value};
use store::RedbStore;

/// The store's limits: the default node's (`max_records`, `max_store_bytes`,
/// `store_percent_per_ip`).
const LIMITS: (usize, usize, usize) = (100_000, 256 << 20, 1);

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match tokio::time::timeout(Duration::from_secs(30), run()).await {
        Ok(Ok(true)) => ExitCode::SUCCESS,
        Ok(Ok(false)) => ExitCode::FAILURE,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("error: timed out");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<bool, store::DbError> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("records.redb");
    let open = || RedbStore::open(&path, LIMITS.0, LIMITS.1, LIMITS.2);

    let a = KademliaServer::builder()
        .record_store(open()?)
        .listen("127.0.0.1:0")
        .await?;
    let b = KademliaServer::builder().listen("127.0.0.1:0").await?;
    b.bootstrap(&[a.local_addr().to_string()]).await?;
    b.set("greeting", "hello").await?; // a stores it for b: a replica
    a.set("mine", vec![1u8, 2, 3]).await?; // a publishes it
    let id = a.node_id();
    a.stop().await; // the store (and its file) is closed with the node
    b.stop().await;

    // The same node (same id) back on the same file: no state file, no bootstrap.
    let again = KademliaServer::builder()
        .node_id(id)
        .record_store(open()?)
        .listen("127.0.0.1:0")
        .await?;
    let greeting = again.get_local("greeting").await?;
    let mine = again.get_local("mine").await?;
    again.stop().await;
    println!("after the restart: greeting = {greeting:?}, mine = {mine:?}");
    Ok(greeting == Some(Value::from("hello")) && mine == Some(Value::from(vec![1u8, 2, 3])))
}
