//! The attack simulation of issue 14 ([`attack()`]): a fraction of the nodes turn out to
//! be one attacker, who uses every trick the issue lists against the others, and the
//! honest nodes' gets and routing tables show what came of it.
//!
//! The attacker's nodes join like everyone else (they are [`SimNet`] nodes, proven in
//! honest tables the honest way); then the attack starts. Every IP of an attacker node is
//! scripted ([`SimNet::intercept`]): its real node's own traffic passes, and the attacker
//! answers for many more ids on other ports of the same IP. Everything it sends it writes
//! itself, in the network's codec, and injects with [`SimNet::inject`], spoofing source
//! addresses it does not own where a trick needs it. It knows the whole network (a crawl
//! would tell it) and the keys it wants to censor (it is after those keys).
//!
//! - **eclipse**: for each key, the attacker places `k` Sybil ids close to the key's id
//!   on its own IPs (many ids per IP, spread over many /24s), and announces them to the
//!   `k` honest nodes closest to the key (they answer verification pings, so they are
//!   proven); evicts those nodes' honest entries near the key by claim (bursts of
//!   `find_node`s claiming the entry's id from fresh attacker ports that never answer
//!   the verification ping, so each timeout counts against the real entry); floods
//!   requests from spoofed fresh addresses with ids close to the key (unproven entries,
//!   served until their ping times out, re-injected before every slice of gets); and
//!   keeps a quarter of its own real nodes, now silent, alive in every honest table by
//!   spoofed requests from their addresses (refresh by claim). Its Sybils answer lookups
//!   with attacker-only peers and swallow stores.
//! - **store**: `set`s of a forged value for each key honest nodes published, sent to
//!   its holders and its publisher, spoofed from the publisher's address and from fresh
//!   spoofed addresses (its own ports, asked for the key, answer with the forged value:
//!   a writer holds what it writes); `set_cached` of the forged
//!   value to the honest nodes just outside the key's `k` closest (lookups pass them);
//!   spoofed `check_store`s to the holders (postponing their restores: an effect beyond
//!   this run's horizon, counted but not measured); and, for the keys put after the
//!   attack starts, `max_records + 16` junk `set`s to each of the honest nodes closest to
//!   the key, half spoofed, half from attacker ports that answer pings.
//! - **liars**: the attacker's nodes answer `find_value` with a forged value, and
//!   `find_node` with fake peers close to the target (half at addresses where nothing
//!   answers, half its own).
//! - **overwrite**: `set`s of the forged value for each key, to its holders and its
//!   publisher, from attacker ports that answer pings and stand by the value. With plain
//!   keys and the reference's rule (the last writer wins) this is an update like any
//!   other: no node can tell it from the owner's, and it is not among the tricks.
//!   Signed records are the defence. Kept apart so that `all` measures the rest.
//! - **all**: eclipse, store and liars at once.
//!
//! Honest gets then run in slices ([`AttackPlan::slices`]); before each slice the
//! attacker renews its spoofed entries and refresh claims, and after each the honest
//! tables are scanned for **poisoned entries**: attacker entries (any entry that is not an
//! honest node's true id at its true address) at an address that never answered a
//! request that table's node sent there, with that id.

mod brain;
use crate::forge;
mod tricks;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kad_core::{Node, NodeId, QueryResult, Value};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha12Rng;

use self::brain::{Brain, Tricks};
use self::tricks::{eclipse_wave, refresh_claims, store_wave};
use crate::forge::W;
use crate::SimNet;

/// Which attack to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttackKind {
    /// Routing-table takeover around the keys: Sybils, eviction by claim, spoofed
    /// entries, replacement floods, refresh by claim.
    Eclipse,
    /// Junk floods, forged `set`s spoofed from the publisher's address or from addresses
    /// nobody owns, forged `set_cached` from its own ports, spoofed `check_store`s.
    Store,
    /// Wrong values and fake peers in answers.
    Liars,
    /// `set`s of the attacker's own value for honest keys, from addresses it owns. Under
    /// the last-writer-wins rule of plain keys (the reference's) that is an update, which
    /// no node can tell from the owner's: signed records are the defence. Not in `all`.
    Overwrite,
    /// Eclipse, store and liars at once.
    All,
}

impl std::str::FromStr for AttackKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "eclipse" => Ok(AttackKind::Eclipse),
            "store" => Ok(AttackKind::Store),
            "liars" => Ok(AttackKind::Liars),
            "overwrite" => Ok(AttackKind::Overwrite),
            "all" => Ok(AttackKind::All),
            _ => Err(format!(
                "unknown attack {s:?} (eclipse, store, liars, overwrite or all)"
            )),
        }
    }
}

impl fmt::Display for AttackKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttackKind::Eclipse => "eclipse",
            AttackKind::Store => "store",
            AttackKind::Liars => "liars",
            AttackKind::Overwrite => "overwrite",
            AttackKind::All => "all",
        })
    }
}

impl AttackKind {
    fn tricks(self) -> Tricks {
        let all = self == AttackKind::All;
        Tricks {
            eclipse: all || self == AttackKind::Eclipse,
            store: all || self == AttackKind::Store,
            liars: all || self == AttackKind::Liars,
            overwrite: self == AttackKind::Overwrite,
        }
    }
}

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct AttackPlan {
    /// The attack.
    pub kind: AttackKind,
    /// The fraction of the nodes that are the attacker's, in `[0, 1)`.
    pub attackers: f64,
    /// Keys honest nodes put (with the store attack, the last quarter after the attack
    /// started, the rest before).
    pub keys: usize,
    /// Honest gets, of random keys from random honest nodes that did not store the key
    /// when it was put.
    pub gets: usize,
    /// Queries in flight at once.
    pub window: usize,
    /// Slices the gets run in (the attacker renews its spoofed traffic before each).
    pub slices: usize,
    /// The attacker IPs one key's `k` Sybil ids share (many ids per IP, the issue's
    /// trick against lookups without per-IP diversity). [`AttackPlan::SYBIL_IPS`] by
    /// default; `k` puts each Sybil on its own IP, which per-IP limits cannot tell from
    /// honest nodes.
    pub sybil_ips: usize,
    /// The honest keys are signed records (each key its own keypair, sequence 1): what
    /// the attacker writes under them is invalid, whoever sends it.
    pub signed: bool,
}

impl AttackPlan {
    /// The default of [`AttackPlan::sybil_ips`].
    pub const SYBIL_IPS: usize = 2;
}

/// What the attacker did: datagrams it injected, by trick, and how it answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttackLog {
    /// Sybil announcements (`find_node` from a Sybil id at its own address).
    pub announces: u64,
    /// Requests claiming an honest entry's id from attacker ports that never answer.
    pub evict_claims: u64,
    /// Requests from spoofed fresh addresses with ids close to a key.
    pub spoofed_entries: u64,
    /// Spoofed pings keeping silent attacker nodes alive in honest tables.
    pub refresh_claims: u64,
    /// `set`s of a forged value for an honest key.
    pub overwrites: u64,
    /// `set_cached`s of a forged value.
    pub cached: u64,
    /// Spoofed `check_store`s.
    pub check_stores: u64,
    /// Junk `set`s.
    pub junk: u64,
    /// Requests the attacker answered (pongs, lies, store acknowledgements).
    pub answered: u64,
    /// Peer lists it handed out.
    pub peer_lies: u64,
    /// Forged values it handed out.
    pub value_lies: u64,
    /// Stores sent to it that it acknowledged and threw away.
    pub stores_swallowed: u64,
    /// Datagrams to its silent nodes, dropped.
    pub silent_drops: u64,
}

impl AttackLog {
    /// Every datagram the attacker injected on its own initiative.
    pub fn injected(&self) -> u64 {
        self.announces
            + self.evict_claims
            + self.spoofed_entries
            + self.refresh_claims
            + self.overwrites
            + self.cached
            + self.check_stores
            + self.junk
    }
}

/// What came of an attack.
#[derive(Clone, Debug, Default)]
pub struct AttackOutcome {
    /// The attacker's real nodes.
    pub attacker_nodes: usize,
    /// Honest nodes.
    pub honest_nodes: usize,
    /// Ids the attacker answers for (its real nodes, its Sybils, its flood ports).
    pub identities: usize,
    /// Honest puts, and those that succeeded.
    pub puts: (usize, usize),
    /// Honest gets run.
    pub gets: usize,
    /// Gets that found the honest value.
    pub found: usize,
    /// Gets that found nothing.
    pub not_found: usize,
    /// Gets that found another value (the attacker's) or failed.
    pub wrong: usize,
    /// The most poisoned entries (see the module doc) counted after any slice of gets.
    pub poisoned_entries: usize,
    /// Attacker entries in honest tables at that moment, proven or not.
    pub attacker_entries: usize,
    /// Of those, the entries kad-core itself does not count as verified
    /// ([`Node::is_verified_addr`]).
    pub unverified_by_node: usize,
    /// All entries in honest tables at that moment.
    pub honest_table_entries: usize,
    /// Records of honest nodes holding the attacker's forged values at the end.
    pub forged_records: usize,
    /// Honest nodes holding each key right after its put, smallest and mean.
    pub replicas: (usize, f64),
    /// What the attacker did.
    pub log: AttackLog,
}

impl AttackOutcome {
    /// The fraction of honest gets that found the honest value (1 with no gets).
    pub fn success_frac(&self) -> f64 {
        if self.gets == 0 {
            return 1.0;
        }
        self.found as f64 / self.gets as f64
    }

    /// Keeps `scan` if it found at least as many poisoned entries as the worst so far.
    fn keep_worst(&mut self, scan: Scan) {
        if scan.poisoned >= self.poisoned_entries {
            self.poisoned_entries = scan.poisoned;
            self.attacker_entries = scan.attacker;
            self.unverified_by_node = scan.unverified;
            self.honest_table_entries = scan.total;
        }
    }
}

/// The value the attacker wants honest gets of `key` to find.
pub fn forged_value(key: &str) -> String {
    format!("forged value of {key}")
}

/// The honest key and value `i`: `attack-key-{i}`, or with `signed` the key of keypair
/// `i` and its signed record.
fn honest_key(i: usize, signed: bool) -> (String, Value) {
    let value = Value::from(format!("honest value {i}"));
    if !signed {
        return (format!("attack-key-{i}"), value);
    }
    let mut secret = [0u8; 32];
    secret[..8].copy_from_slice(&(i as u64).to_le_bytes());
    secret[8] = 0x5e;
    let keypair = kad_core::Keypair::from_secret(secret);
    let record = kad_core::SignedRecord::sign(&keypair, b"", 1, None, value).expect("no salt");
    (kad_core::signed_key(&keypair.public_key(), b""), record)
}

/// Ports of an attacker IP: Sybil ids from here up.
const SYBIL_PORT: u16 = 20_000;
/// Flood ports (answer pings with their own random id).
const FLOOD_PORT: u16 = 40_000;
/// Flood ports per attacker IP.
const FLOOD_PORTS: u16 = 4;
/// Claim ports (never answer): from here up, one per claim.
const CLAIM_PORT: u16 = 45_000;
/// Claims per honest entry, in one burst: more than `failures_before_eviction`.
const CLAIMS_PER_ENTRY: usize = 4;
/// Spoofed fresh entries per victim and key, per wave.
const SPOOFS_PER_VICTIM: usize = 2;

/// Everything the driver needs about the network and the attacker.
struct Ctx {
    codec: kad_core::Codec,
    k: usize,
    tricks: Tricks,
    attacker: Vec<usize>,
    honest: Vec<usize>,
    /// Honest (id, index), for picking the honest nodes closest to a target.
    honest_ids: Vec<(NodeId, usize)>,
    /// True address -> true id of every honest node.
    truth: HashMap<SocketAddr, NodeId>,
    keys: Vec<(String, Value)>,
    /// The Sybil identities placed near each key.
    sybils: Vec<Vec<(NodeId, SocketAddr)>>,
    /// Owned ports that answer pings (flood sources), with their ids.
    flood: Vec<(NodeId, SocketAddr)>,
    /// Next claim port, counted over all attacker IPs.
    claims: usize,
    brain: Arc<Mutex<Brain>>,
}

impl Ctx {
    /// The `n` honest nodes closest to `target`, closest first.
    fn closest_honest(&mut self, target: &NodeId, n: usize) -> Vec<usize> {
        let n = n.min(self.honest_ids.len());
        if n == 0 {
            return Vec::new();
        }
        let ids = &mut self.honest_ids;
        ids.select_nth_unstable_by_key(n - 1, |(id, _)| id.distance(target));
        let mut near: Vec<(NodeId, usize)> = ids[..n].to_vec();
        near.sort_by_key(|(id, _)| id.distance(target));
        near.into_iter().map(|(_, i)| i).collect()
    }

    /// Sends a request the attacker wrote: `kind` with `fields`, claiming `sender` from
    /// `src` (owned or not), to node `dst`, after `delay`.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        net: &mut SimNet,
        delay: Duration,
        kind: &str,
        sender: &NodeId,
        src: SocketAddr,
        dst: SocketAddr,
        fields: Vec<(&'static str, W)>,
    ) {
        let txn = self.brain.lock().expect("brain").txn();
        let msg = forge::message(self.codec, kind, &txn, (sender, src), fields);
        net.inject(delay, src, dst, msg);
    }

    /// A fresh claim port on one of the attacker's IPs (never answers anything).
    fn claim_port(&mut self, net: &SimNet) -> SocketAddr {
        let n = self.claims;
        self.claims += 1;
        let host = self.attacker[n % self.attacker.len()];
        let port = CLAIM_PORT + ((n / self.attacker.len()) % 20_000) as u16;
        SocketAddr::new(net.addr(host).ip(), port)
    }

    fn log(&self, f: impl FnOnce(&mut AttackLog)) {
        f(&mut self.brain.lock().expect("brain").log);
    }
}

/// Runs the attack on a network that has joined ([`SimNet::bootstrap_all`]); see the
/// module doc. Deterministic: everything follows from the network's seed.
pub fn attack(net: &mut SimNet, plan: &AttackPlan) -> AttackOutcome {
    let mut ctx = setup(net, plan);
    let mut out = AttackOutcome {
        attacker_nodes: ctx.attacker.len(),
        honest_nodes: ctx.honest.len(),
        identities: ctx.brain.lock().expect("brain").book.len(),
        ..AttackOutcome::default()
    };
    if ctx.honest.is_empty() || plan.keys == 0 {
        return out;
    }

    // The routing attack comes first: the keys are put into tables it has worked on.
    if ctx.tricks.eclipse {
        for _ in 0..2 {
            eclipse_wave(net, &mut ctx, true);
            net.run_for(Duration::from_secs(30));
        }
    }
    let late = if ctx.tricks.store {
        (plan.keys / 4).max(usize::from(plan.keys >= 2))
    } else {
        0
    };
    let early = plan.keys - late;
    let mut holders: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); plan.keys];
    let mut publishers = vec![0; plan.keys];
    let puts_ok = put_keys(
        net,
        &ctx,
        0..early,
        plan.window,
        &mut holders,
        &mut publishers,
    );
    let mut puts_ok_late = 0;
    if ctx.tricks.store || ctx.tricks.overwrite {
        store_wave(
            net,
            &mut ctx,
            0..early,
            early..plan.keys,
            &holders,
            &publishers,
        );
        net.run_for(Duration::from_secs(40));
        puts_ok_late = put_keys(
            net,
            &ctx,
            early..plan.keys,
            plan.window,
            &mut holders,
            &mut publishers,
        );
    }
    out.puts = (plan.keys, puts_ok + puts_ok_late);
    let counts: Vec<usize> = holders.iter().map(BTreeSet::len).collect();
    out.replicas = (
        counts.iter().copied().min().unwrap_or(0),
        counts.iter().sum::<usize>() as f64 / counts.len().max(1) as f64,
    );

    // The gets, slice by slice, the attacker renewing its spoofed traffic before each.
    let slices = plan.slices.max(1);
    for s in 0..slices {
        let n = plan.gets * (s + 1) / slices - plan.gets * s / slices;
        if ctx.tricks.eclipse {
            eclipse_wave(net, &mut ctx, false);
            refresh_claims(net, &ctx);
            // The gets start while the spoofed entries are fresh, as a steady attacker's
            // would; the tables are counted at that moment as well as after the gets.
            net.run_for(Duration::from_millis(500));
            out.keep_worst(scan_tables(net, &ctx));
        }
        let jobs: Vec<(usize, usize)> = (0..n)
            .map(|_| {
                let key = net.pick(plan.keys);
                let mut getter = ctx.honest[net.pick(ctx.honest.len())];
                for _ in 0..100 {
                    if !holders[key].contains(&getter) {
                        break;
                    }
                    getter = ctx.honest[net.pick(ctx.honest.len())];
                }
                (getter, key)
            })
            .collect();
        let batch: Vec<_> = jobs
            .iter()
            .map(|&(g, key)| {
                let name = ctx.keys[key].0.clone();
                (g, move |n: &mut Node, now| n.get(now, &name).expect("get"))
            })
            .collect();
        let results = net.run_batch(batch, plan.window);
        for (f, &(_, key)) in results.iter().zip(&jobs) {
            out.gets += 1;
            match &f.result {
                QueryResult::Get(Ok(Some(v))) if *v == ctx.keys[key].1 => out.found += 1,
                QueryResult::Get(Ok(None)) => out.not_found += 1,
                _ => out.wrong += 1,
            }
        }
        out.keep_worst(scan_tables(net, &ctx));
    }
    let now = net.now();
    out.forged_records = ctx
        .honest
        .iter()
        .map(|&i| {
            ctx.keys
                .iter()
                .filter(|(key, _)| {
                    net.node(i).get_local(now, key) == Some(Value::from(forged_value(key)))
                })
                .count()
        })
        .sum();
    out.log = ctx.brain.lock().expect("brain").log;
    out
}

/// Picks the attacker's nodes, builds its identities and scripts its IPs.
fn setup(net: &mut SimNet, plan: &AttackPlan) -> Ctx {
    let config = net.node(0).config().clone();
    let (k, codec) = (config.k(), config.codec());
    let tricks = plan.kind.tricks();
    let live = net.live();
    let wanted = ((plan.attackers.clamp(0.0, 1.0) * live.len() as f64).round() as usize)
        .min(live.len().saturating_sub(1));
    let mut chosen = BTreeSet::new();
    while chosen.len() < wanted {
        chosen.insert(live[net.pick(live.len())]);
    }
    let attacker: Vec<usize> = chosen.iter().copied().collect();
    let honest: Vec<usize> = live
        .iter()
        .copied()
        .filter(|i| !chosen.contains(i))
        .collect();
    let honest_ids = honest.iter().map(|&i| (net.node(i).id(), i)).collect();
    let truth = honest
        .iter()
        .map(|&i| (net.addr(i), net.node(i).id()))
        .collect();
    let keys: Vec<(String, Value)> = (0..plan.keys).map(|i| honest_key(i, plan.signed)).collect();

    let rng = ChaCha12Rng::seed_from_u64(net.seed() ^ 0x0a77_ac4e_d00d_f00d);
    let mut brain = Brain::new(codec, k, tricks, rng);
    let mut sybils = vec![Vec::new(); plan.keys];
    let mut flood = Vec::new();
    if !attacker.is_empty() {
        for &a in &attacker {
            let (id, addr) = (net.node(a).id(), net.addr(a));
            brain.base.insert(addr, id);
            brain.own(id, addr);
        }
        // A quarter of the attacker's real nodes go silent; the eclipse keeps them in
        // honest tables by claim.
        if tricks.eclipse {
            for &a in attacker.iter().skip(3).step_by(4) {
                brain.silent.insert(net.addr(a));
            }
        }
        // Sybils: k ids near each key, round robin over the attacker's IPs.
        if tricks.eclipse {
            let mut next_port = vec![SYBIL_PORT; attacker.len()];
            let ips = plan.sybil_ips.clamp(1, attacker.len());
            for (i, (key, _)) in keys.iter().enumerate() {
                let target = NodeId::for_key(key);
                for j in 0..k {
                    let h = (i * ips + j % ips) % attacker.len();
                    let addr = SocketAddr::new(net.addr(attacker[h]).ip(), next_port[h]);
                    next_port[h] = next_port[h].saturating_add(1).min(FLOOD_PORT - 1);
                    let id = brain.id_near(&target, 40);
                    brain.own(id, addr);
                    sybils[i].push((id, addr));
                }
            }
        }
        if tricks.store || tricks.overwrite {
            for &a in &attacker {
                for p in 0..FLOOD_PORTS {
                    let addr = SocketAddr::new(net.addr(a).ip(), FLOOD_PORT + p);
                    let mut id = [0u8; 20];
                    net.random_bytes(&mut id);
                    brain.own(NodeId(id), addr);
                    flood.push((NodeId(id), addr));
                }
            }
        }
    }
    brain.seal();
    let brain = Arc::new(Mutex::new(brain));
    for &a in &attacker {
        let b = Arc::clone(&brain);
        net.intercept(net.addr(a).ip(), move |_, from, to, payload| {
            b.lock().expect("brain").on_datagram(from, to, payload)
        });
    }
    Ctx {
        codec,
        k,
        tricks,
        attacker,
        honest,
        honest_ids,
        truth,
        keys,
        sybils,
        flood,
        claims: 0,
        brain,
    }
}

/// Puts keys `range` from random honest nodes; records each key's publisher and the
/// honest nodes that hold it right after. Returns the puts that succeeded.
fn put_keys(
    net: &mut SimNet,
    ctx: &Ctx,
    range: std::ops::Range<usize>,
    window: usize,
    holders: &mut [BTreeSet<usize>],
    publishers: &mut [usize],
) -> usize {
    let idx: Vec<usize> = range.collect();
    // A publisher whose own store the junk filled cannot even start its put: that put
    // fails (the job then runs a harmless lookup in its place).
    let refused = Arc::new(Mutex::new(0usize));
    let jobs: Vec<_> = idx
        .iter()
        .map(|&i| {
            let p = ctx.honest[net.pick(ctx.honest.len())];
            publishers[i] = p;
            let (key, value) = ctx.keys[i].clone();
            let refused = Arc::clone(&refused);
            (p, move |n: &mut Node, now| match n.put(now, &key, value) {
                Ok(q) => q,
                Err(_) => {
                    *refused.lock().expect("refused") += 1;
                    n.find_node(now, NodeId::for_key(&key))
                }
            })
        })
        .collect();
    let results = net.run_batch(jobs, window);
    let now = net.now();
    for &i in &idx {
        let key = &ctx.keys[i].0;
        holders[i] = ctx
            .honest
            .iter()
            .copied()
            .filter(|&h| net.node(h).get_local(now, key).is_some())
            .collect();
    }
    results
        .iter()
        .filter(|f| matches!(f.result, QueryResult::Put(Ok(_))))
        .count()
}

struct Scan {
    total: usize,
    attacker: usize,
    poisoned: usize,
    unverified: usize,
}

/// Counts attacker entries in honest tables, and the poisoned ones among them.
fn scan_tables(net: &SimNet, ctx: &Ctx) -> Scan {
    let b = ctx.brain.lock().expect("brain");
    let now = net.now();
    let mut s = Scan {
        total: 0,
        attacker: 0,
        poisoned: 0,
        unverified: 0,
    };
    for &h in &ctx.honest {
        let node = net.node(h);
        let me = net.addr(h);
        for p in node.peers() {
            s.total += 1;
            if ctx.truth.get(&p.addr) == Some(&p.id) {
                continue;
            }
            s.attacker += 1;
            let verified = node.is_verified_addr(now, p.addr);
            // The attacker's real nodes proved themselves the honest way, before the
            // attack: kad-core's own flag is the record of that.
            let proven = b.proofs.contains(&(me, p.addr, p.id))
                || (b.base.get(&p.addr) == Some(&p.id) && verified);
            if !proven {
                s.poisoned += 1;
            }
            if !verified {
                s.unverified += 1;
            }
        }
    }
    s
}
