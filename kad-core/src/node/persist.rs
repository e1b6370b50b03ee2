//! A node's state across restarts: [`Node::snapshot`] and [`Node::restore`].

use super::*;

impl Node {
    /// The node's persistent state at `now`: id, routing table, unexpired records with their
    /// remaining lifetimes. Write it with [`Snapshot::to_bytes`].
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let records = self
            .core
            .store
            .iter()
            .filter(|(_, r)| now < r.expires)
            .map(|(key, r)| SnapshotRecord {
                key: key.clone(),
                value: r.value.clone(),
                kind: match r.kind {
                    store::Kind::Published => RecordKind::Published,
                    store::Kind::Replica => RecordKind::Replica,
                    store::Kind::Cached => RecordKind::Cached,
                },
                expires_in: r.expires.saturating_duration_since(now),
                republish_in: r.republish_at.map(|t| t.saturating_duration_since(now)),
            })
            .collect();
        Snapshot {
            id: self.core.id,
            peers: self.core.table.peers().collect(),
            records,
        }
    }

    /// A node brought back from a snapshot: same id, its peers back in the routing table
    /// (they must answer again before they count as verified), its records with the
    /// lifetimes they had left. Records beyond this config's limits are left out; the
    /// number left out is returned.
    pub fn restore(
        config: impl Into<Arc<Config>>,
        snapshot: &Snapshot,
        seed: [u8; 32],
        now: Instant,
    ) -> (Node, usize) {
        let config: Arc<Config> = config.into();
        let store = super::default_store(&config);
        Node::restore_with_store(config, snapshot, seed, now, store)
    }

    /// [`Node::restore`] onto another [`RecordStore`] (see [`Node::with_store`]): a record
    /// the store already holds stays as the store has it (a store that keeps its records,
    /// on disk, is at least as recent as the snapshot).
    pub fn restore_with_store(
        config: impl Into<Arc<Config>>,
        snapshot: &Snapshot,
        seed: [u8; 32],
        now: Instant,
        store: impl RecordStore + 'static,
    ) -> (Node, usize) {
        let mut node = Node::with_store(config, snapshot.id, seed, now, store);
        for p in &snapshot.peers {
            node.core.table.on_heard(now, *p, false);
        }
        let mut left_out = 0;
        for r in &snapshot.records {
            let record = Record {
                value: r.value.clone(),
                kind: match r.kind {
                    RecordKind::Published => store::Kind::Published,
                    RecordKind::Replica => store::Kind::Replica,
                    RecordKind::Cached => store::Kind::Cached,
                },
                expires: snapshot::at(now, r.expires_in),
                republish_at: r.republish_in.map(|d| snapshot::at(now, d)),
                source: None,
            };
            if node.core.store.get(now, &r.key).is_some() {
                continue;
            }
            let fits = node.core.check_key(&r.key).is_ok()
                && r.value.byte_len() <= node.core.config.max_value_bytes;
            if !fits || node.core.store.put(&r.key, record).is_err() {
                left_out += 1;
            }
        }
        (node, left_out)
    }
}
