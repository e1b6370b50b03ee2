//! The attacker's side of the wire: one shared state behind every IP the attacker owns,
//! answering what honest nodes send there ([`Brain::on_datagram`], installed with
//! [`crate::SimNet::intercept`]) and remembering which of its addresses ever proved
//! themselves to which honest node (answered a request sent there).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use kad_core::{Codec, Distance, NodeId};
use rand_chacha::rand_core::RngCore;
use rand_chacha::ChaCha12Rng;

use super::AttackLog;
use crate::forge::{self, W};
use crate::{wire, Intercept};

/// Which tricks are on.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Tricks {
    pub eclipse: bool,
    pub store: bool,
    pub liars: bool,
    pub overwrite: bool,
}

pub(crate) struct Brain {
    pub codec: Codec,
    pub k: usize,
    pub tricks: Tricks,
    /// Every identity the attacker answers for (pings, lookups, stores), by address.
    pub book: HashMap<SocketAddr, NodeId>,
    /// The same identities sorted by id, for handing out the ones closest to a target.
    pub sorted: Vec<(NodeId, SocketAddr)>,
    /// The attacker's real nodes (they joined as honest nodes before the attack).
    pub base: HashMap<SocketAddr, NodeId>,
    /// Real nodes that went silent: every datagram to them is dropped.
    pub silent: HashSet<SocketAddr>,
    /// (honest address, attacker address, id): the attacker answered a request that honest
    /// address sent to that attacker address, with that id.
    pub proofs: HashSet<(SocketAddr, SocketAddr, NodeId)>,
    pub rng: ChaCha12Rng,
    pub log: AttackLog,
    /// Counter for fresh unowned addresses.
    fresh: u32,
}

impl Brain {
    pub fn new(codec: Codec, k: usize, tricks: Tricks, rng: ChaCha12Rng) -> Brain {
        Brain {
            codec,
            k,
            tricks,
            book: HashMap::new(),
            sorted: Vec::new(),
            base: HashMap::new(),
            silent: HashSet::new(),
            proofs: HashSet::new(),
            rng,
            log: AttackLog::default(),
            fresh: 0,
        }
    }

    /// Adds an identity the attacker answers for.
    pub fn own(&mut self, id: NodeId, addr: SocketAddr) {
        if let std::collections::hash_map::Entry::Vacant(e) = self.book.entry(addr) {
            e.insert(id);
            self.sorted.push((id, addr));
        }
    }

    /// Sorts the identities; call once all are in.
    pub fn seal(&mut self) {
        self.sorted.sort_unstable();
    }

    /// A fresh address nobody owns (198.18.0.0/15, the benchmarking range: SimNet never
    /// puts a node there), different on each call: a spoofed source, or a fake peer.
    pub fn unowned(&mut self) -> SocketAddr {
        self.fresh = self.fresh.wrapping_add(1);
        let n = self.fresh;
        let ip = Ipv4Addr::new(198, 18 + ((n >> 16) & 1) as u8, (n >> 8) as u8, n as u8);
        SocketAddr::new(IpAddr::V4(ip), 1024 + (n >> 17) as u16 % 60_000)
    }

    /// A transaction id as kad writes its own: 16 lowercase hex digits.
    pub fn txn(&mut self) -> String {
        format!("{:016x}", self.rng.next_u64())
    }

    /// An id sharing at least `min_bits` leading bits with `base` (but not `base` itself).
    pub fn id_near(&mut self, base: &NodeId, min_bits: usize) -> NodeId {
        let lz = min_bits + (self.rng.next_u32() % 40) as usize;
        let mut d = [0u8; 20];
        self.rng.fill_bytes(&mut d);
        for bit in 0..lz.min(160) {
            d[bit / 8] &= !(0x80 >> (bit % 8));
        }
        if lz < 160 {
            d[lz / 8] |= 0x80 >> (lz % 8);
        }
        base.xor(&Distance(d))
    }

    /// The `n` attacker identities closest to `target` (near enough: the neighbours of
    /// `target` in id order, which share the longest prefixes with it).
    pub fn closest_own(&self, target: &NodeId, n: usize) -> Vec<(NodeId, SocketAddr)> {
        let pos = self.sorted.partition_point(|(id, _)| id < target);
        let lo = pos.saturating_sub(n);
        let hi = (pos + n).min(self.sorted.len());
        let mut near: Vec<(NodeId, SocketAddr)> = self.sorted[lo..hi].to_vec();
        near.sort_by_key(|(id, _)| id.distance(target));
        near.truncate(n);
        near
    }

    /// What the liars and the eclipse hand out for `target`: attacker identities closest
    /// to it, and with liars, half of them fake peers close to it at addresses where
    /// nothing answers.
    fn lie_peers(&mut self, target: &NodeId) -> Vec<(NodeId, SocketAddr)> {
        let k = self.k;
        let mut out = self.closest_own(target, k);
        if self.tricks.liars {
            out.truncate(k / 2);
            while out.len() < k {
                let id = self.id_near(target, 24);
                let addr = self.unowned();
                out.push((id, addr));
            }
        }
        out
    }

    /// Shown every datagram for an attacker IP: answers it, drops it, or passes it to the
    /// attacker's real node there.
    pub fn on_datagram(&mut self, from: SocketAddr, to: SocketAddr, payload: &[u8]) -> Intercept {
        if self.silent.contains(&to) {
            self.log.silent_drops += 1;
            return Intercept::Answer(vec![]);
        }
        let is_base = self.base.contains_key(&to);
        let pass_or_drop = if is_base {
            Intercept::Pass
        } else {
            Intercept::Answer(vec![])
        };
        let Some(kind) = wire::message_type(payload) else {
            return pass_or_drop;
        };
        if wire::is_response(payload) {
            return pass_or_drop;
        }
        // Ports that only ever claim other ids (eviction by claim) never answer.
        let Some(&id) = self.book.get(&to) else {
            return Intercept::Answer(vec![]);
        };
        let lying = self.tricks.liars || self.tricks.eclipse;
        let (reply, fields): (&str, Vec<(&'static str, W)>) = match kind {
            "ping" if is_base => return Intercept::Pass,
            "ping" => ("pong", vec![]),
            "find_node" | "find_value" if !lying && is_base => return Intercept::Pass,
            "find_node" => {
                let target = wire::field(payload, "target")
                    .and_then(|t| NodeId::from_hex_bytes(t).ok())
                    .unwrap_or(id);
                self.log.peer_lies += 1;
                let peers = if lying {
                    self.lie_peers(&target)
                } else {
                    vec![]
                };
                ("find_node_res", vec![("peers", forge::peers(&peers))])
            }
            "find_value" => {
                let key = String::from_utf8_lossy(wire::field(payload, "key").unwrap_or(b""))
                    .into_owned();
                // Its own ports stand by the values it writes: asked for a key, they
                // answer with the forged value (a writer holds what it writes).
                let stands_by = (self.tricks.store || self.tricks.overwrite) && !is_base;
                if self.tricks.liars || stands_by {
                    self.log.value_lies += 1;
                    let value = super::forged_value(&key);
                    ("find_value_res", vec![("value", W::S(value))])
                } else {
                    self.log.peer_lies += 1;
                    let peers = if lying {
                        self.lie_peers(&NodeId::for_key(&key))
                    } else {
                        vec![]
                    };
                    ("find_value_res", vec![("peers", forge::peers(&peers))])
                }
            }
            "set" | "set_cached" | "check_store" if !lying && is_base => return Intercept::Pass,
            // Stores sent to the attacker are acknowledged and thrown away.
            "set" => {
                self.log.stores_swallowed += 1;
                ("set_res", vec![])
            }
            "set_cached" => {
                self.log.stores_swallowed += 1;
                ("set_cached_res", vec![])
            }
            "check_store" => ("check_store_res", vec![("has_key", W::B(true))]),
            _ => return pass_or_drop,
        };
        self.log.answered += 1;
        self.proofs.insert((from, to, id));
        let txn = String::from_utf8_lossy(wire::txn(payload).unwrap_or_default()).into_owned();
        let msg = forge::message(self.codec, reply, &txn, (&id, to), fields);
        Intercept::Answer(vec![(to, from, msg)])
    }
}
