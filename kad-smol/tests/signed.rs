//! `put_signed` and `get_signed` on smol: the newest valid version wins, an older one is
//! refused by every replica, and a key nobody signed reads as `None`.

use kad_smol::{Error, KademliaServer, Keypair, QueryError, Value};

#[test]
fn signed_put_and_get_keep_the_newest_version() {
    smol::block_on(async {
        let a = KademliaServer::builder().listen_default().await.unwrap();
        let b = KademliaServer::builder().listen_default().await.unwrap();
        b.bootstrap(&[a.local_addr().to_string()]).await.unwrap();
        let owner = Keypair::from_secret([7; 32]);
        b.put_signed(&owner, b"profile", "v1", 1, None)
            .await
            .unwrap();
        b.put_signed(&owner, b"profile", "v2", 2, Some(1))
            .await
            .unwrap();
        let got = a.get_signed(&owner.public_key(), b"profile").await.unwrap();
        let got = got.expect("a signed record");
        assert_eq!((got.seq, got.value), (2, Value::from("v2")));
        // Another writer replays version 1 from a fresh node: every replica refuses it.
        let c = KademliaServer::builder().listen_default().await.unwrap();
        c.bootstrap(&[a.local_addr().to_string()]).await.unwrap();
        let replay = c.put_signed(&owner, b"profile", "v1", 1, None).await;
        assert!(
            matches!(replay, Err(Error::Query(QueryError::NotStored))),
            "{replay:?}"
        );
        let got = c.get_signed(&owner.public_key(), b"profile").await.unwrap();
        assert_eq!(got.map(|r| r.seq), Some(2));
        // Nothing under another salt or another key.
        assert_eq!(
            a.get_signed(&owner.public_key(), b"other").await.unwrap(),
            None
        );
        let stranger = Keypair::from_secret([8; 32]).public_key();
        assert_eq!(a.get_signed(&stranger, b"").await.unwrap(), None);
        for n in [a, b, c] {
            n.stop().await;
        }
    });
}
