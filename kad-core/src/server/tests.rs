//! The server layer without sockets: replies routed by token, admission under a flood,
//! the save schedule and the transmits held after `WouldBlock`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::{Config, NodeId, Peer, QueryId, QueryResult};

/// One real instant as a base: the servers only see offsets from it.
#[allow(clippy::disallowed_methods)]
fn start() -> Instant {
    Instant::now()
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn server(port: u16, config: Config, now: Instant) -> Server<u32> {
    let id = NodeId::for_key(&format!("node {port}"));
    let mut node = Node::new(config, id, [port as u8; 32], now);
    node.set_local_addr(addr(port));
    Server::new(node)
}

/// Delivers everything `from` wants sent to `to` (and drops the rest).
fn deliver(from: &mut Server<u32>, from_addr: SocketAddr, to: &mut Server<u32>, now: Instant) {
    while let Some(t) = from.poll_transmit() {
        if t.dst == to.node().local_addr() {
            to.handle_datagram(now, from_addr, &t.payload);
        }
    }
}

#[test]
fn replies_go_back_to_their_callers_token() {
    let now = start();
    let (mut a, mut b) = (
        server(1, Config::default(), now),
        server(2, Config::default(), now),
    );
    a.begin_pass(now);
    a.handle_command(now, 7, Command::Ping(addr(2)));
    a.handle_command(now, 8, Command::Stats);
    a.handle_command(now, 9, Command::Get("k".repeat(5000)));
    // The immediate answers come first, in order, each with its own token.
    assert!(matches!(a.poll_reply(), Some((8, Reply::Stats(_)))));
    assert!(matches!(
        a.poll_reply(),
        Some((9, Reply::Query(Err(CommandError::Key(_)))))
    ));
    assert_eq!(a.poll_reply(), None, "the ping has not been answered yet");
    deliver(&mut a, addr(1), &mut b, now);
    deliver(&mut b, addr(2), &mut a, now);
    match a.poll_reply() {
        Some((7, Reply::Query(Ok((QueryResult::Ping(Ok(peer)), _))))) => {
            assert_eq!(peer.id, b.node().id())
        }
        other => panic!("expected the ping's reply for token 7, got {other:?}"),
    }
    assert_eq!(a.stats().queries, 1);
    assert_eq!(a.stats().query_requests, 1);
}

#[test]
fn past_the_dispatch_budget_only_awaited_or_verified_senders_get_through() {
    let now = start();
    let config = Config::builder().max_dispatch_tasks(2).build().unwrap();
    let (mut a, mut b) = (server(1, config, now), server(2, Config::default(), now));
    a.begin_pass(now);
    a.handle_command(now, 1, Command::Ping(addr(2)));
    deliver(&mut a, addr(1), &mut b, now);
    // b pings back the newcomer, then answers.
    let from_b: Vec<Transmit> = std::iter::from_fn(|| b.poll_transmit()).collect();
    assert_eq!(from_b.len(), 2);
    assert_eq!(a.datagrams_wanted(), 8, "2 dispatched x READS_PER_DISPATCH");
    // Two strangers fill the pass's dispatch budget; then b's two datagrams, then
    // strangers again.
    a.handle_datagram(now, addr(100), b"junk");
    a.handle_datagram(now, addr(101), b"junk");
    for t in &from_b {
        a.handle_datagram(now, addr(2), &t.payload);
    }
    for port in 102..106 {
        a.handle_datagram(now, addr(port), b"junk");
    }
    let stats = a.stats();
    assert_eq!(
        stats.core.malformed, 2,
        "only the first two strangers reach the core"
    );
    // b's ping gets through too: a awaits a reply from b's address.
    assert_eq!(
        stats.datagrams_dropped, 4,
        "the four strangers past the budget"
    );
    assert_eq!(
        stats.core.responses_accepted, 1,
        "the awaited answer got through"
    );
    assert!(matches!(a.poll_reply(), Some((1, Reply::Query(Ok(_))))));
    // The budget is spent; b (awaited again) still gets through, a stranger does not.
    assert_eq!(a.datagrams_wanted(), 0);
    assert!(a.is_capped());
    assert_eq!(a.stats().capped_passes, 1);
    assert_eq!(a.datagrams_wanted(), 0);
    assert_eq!(a.stats().capped_passes, 1, "a capped pass counts once");
    a.handle_command(now, 2, Command::Ping(addr(2)));
    deliver(&mut a, addr(1), &mut b, now);
    let second = b.poll_transmit().expect("b answers again");
    a.handle_datagram(now, addr(100), b"junk");
    a.handle_datagram(now, addr(2), &second.payload);
    assert_eq!(a.stats().datagrams_dropped, 5, "the stranger only");
    assert_eq!(a.stats().core.responses_accepted, 2);
    // A new pass has a new budget.
    a.begin_pass(now);
    assert_eq!(a.datagrams_wanted(), 8);
    a.handle_datagram(now, addr(100), b"junk");
    assert_eq!(a.stats().core.malformed, 3);
    a.recv_error();
    assert_eq!(a.stats().recv_errors, 1);
    assert_eq!(a.datagrams_wanted(), 6, "a failed read uses the budget too");
}

#[test]
fn a_snapshot_is_due_every_interval_and_a_slow_write_skips_a_turn() {
    let t0 = start();
    let mut s = server(1, Config::default(), t0);
    assert!(s.poll_save(t0).is_none(), "no schedule, no snapshot");
    s.save_every(t0, Duration::from_secs(10));
    let sec = |n| t0 + Duration::from_secs(n);
    assert!(s.poll_save(sec(9)).is_none());
    assert_eq!(
        s.poll_timeout(sec(9)),
        sec(10),
        "the save is the next deadline"
    );
    let snap = s.poll_save(sec(10)).expect("due at 10 s");
    assert_eq!(snap.id, s.node().id());
    assert!(s.is_saving());
    // Still writing at 20 s: that turn is skipped, the next is at 30 s.
    assert!(s.poll_save(sec(20)).is_none());
    s.save_finished(true);
    assert!(s.poll_save(sec(29)).is_none());
    assert!(s.poll_save(sec(30)).is_some());
    s.save_finished(false);
    let stats = s.stats();
    assert_eq!((stats.state_saves, stats.state_save_errors), (1, 1));
}

#[test]
fn transmits_refused_by_a_full_socket_go_first_later() {
    let now = start();
    let mut a = server(1, Config::default(), now);
    a.handle_command(now, 1, Command::Ping(addr(2)));
    a.handle_command(now, 2, Command::Ping(addr(3)));
    let first = a.poll_transmit().unwrap();
    let second = a.poll_transmit().unwrap();
    assert!(!a.is_send_blocked());
    a.transmit_blocked([first.clone(), second.clone()]);
    assert!(a.is_send_blocked());
    assert_eq!(a.stats().send_blocked, 1);
    assert_eq!(a.poll_transmit(), Some(first));
    assert_eq!(a.poll_transmit(), Some(second));
    assert!(!a.is_send_blocked());
    assert_eq!(a.poll_transmit(), None);
    a.transmit_failed();
    assert_eq!(a.stats().send_errors, 1);
}

#[test]
fn stop_drops_every_waiting_token() {
    let now = start();
    let mut a = server(1, Config::default(), now);
    a.handle_command(now, 1, Command::Ping(addr(2)));
    a.handle_command(now, 2, Command::Peers);
    a.stop();
    assert_eq!(a.poll_reply(), None);
    // The ping still times out inside the node, but nobody is waiting for it.
    let later = now + Duration::from_secs(10);
    a.begin_pass(later);
    assert_eq!(a.poll_reply(), None);
    assert_eq!(a.stats().queries, 1);
}

/// Past the budget, a flood whose source is a verified address (forged, or the peer gone
/// mad) gets `PAST_BUDGET_PER_ADDRESS` datagrams of the pass, not all of them.
#[test]
fn a_flood_spoofing_one_verified_address_gets_only_its_share_of_a_pass() {
    let now = start();
    let config = Config::builder().max_dispatch_tasks(2).build().unwrap();
    let (mut a, mut b) = (server(1, config, now), server(2, Config::default(), now));
    // a pings b; b's answer makes b a verified table entry of a.
    a.begin_pass(now);
    a.handle_command(now, 1, Command::Ping(addr(2)));
    deliver(&mut a, addr(1), &mut b, now);
    deliver(&mut b, addr(2), &mut a, now);
    assert!(a.node().is_verified_addr(now, addr(2)));
    while a.poll_transmit().is_some() {}
    // A new pass: two strangers spend the budget, then 50 datagrams "from" b.
    a.begin_pass(now);
    a.handle_datagram(now, addr(100), b"junk");
    a.handle_datagram(now, addr(101), b"junk");
    let before = a.stats();
    for _ in 0..50 {
        a.handle_datagram(now, addr(2), b"junk");
    }
    let after = a.stats();
    let passed = after.core.malformed - before.core.malformed;
    let dropped = after.datagrams_dropped - before.datagrams_dropped;
    assert_eq!(passed, u64::from(PAST_BUDGET_PER_ADDRESS));
    assert_eq!(dropped, 50 - u64::from(PAST_BUDGET_PER_ADDRESS));
    // The next pass gives it its share again.
    a.begin_pass(now);
    a.handle_datagram(now, addr(100), b"junk");
    a.handle_datagram(now, addr(101), b"junk");
    a.handle_datagram(now, addr(2), b"junk");
    assert_eq!(a.stats().datagrams_dropped, after.datagrams_dropped);
}

/// Everything a subscription holds now.
fn drain(sub: &Subscription) -> Vec<Notice> {
    std::iter::from_fn(|| sub.try_next()).collect()
}

#[test]
fn subscribers_see_events_in_order_and_a_slow_one_loses_only_the_oldest() {
    let now = start();
    let (mut a, mut b) = (
        server(1, Config::default(), now),
        server(2, Config::default(), now),
    );
    let fast = a.subscribe(1000);
    let slow = a.subscribe(3);
    a.begin_pass(now);
    for token in 0..4 {
        a.handle_command(now, token, Command::Ping(addr(2)));
    }
    for _ in 0..3 {
        deliver(&mut a, addr(1), &mut b, now);
        deliver(&mut b, addr(2), &mut a, now);
    }
    while a.poll_reply().is_some() {}
    let seen: Vec<Event> = drain(&fast)
        .into_iter()
        .map(|n| match n {
            Notice::Event(e) => e,
            other => panic!("the fast subscriber missed events: {other:?}"),
        })
        .collect();
    // In order: the four queries start, b joins the table, the four pings finish.
    let started: Vec<QueryId> = (1..=4).map(QueryId).collect();
    let finished: Vec<QueryId> = seen
        .iter()
        .filter_map(|e| match e {
            Event::QueryFinished { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(finished, started);
    let peer = Peer {
        id: b.node().id(),
        addr: addr(2),
    };
    let mut expected: Vec<Event> = started
        .iter()
        .map(|&id| Event::QueryStarted { id })
        .collect();
    expected.push(Event::PeerAdded { peer });
    assert_eq!(seen.len(), 9, "{seen:#?}");
    assert_eq!(seen[..5], expected[..], "{seen:#?}");
    // The slow one kept the newest three, after word of the six it lost.
    let mut slow_seen = drain(&slow);
    assert_eq!(slow_seen.remove(0), Notice::Missed(6));
    let newest: Vec<Notice> = seen[6..].iter().cloned().map(Notice::Event).collect();
    assert_eq!(slow_seen, newest);
    // A dropped subscription is forgotten; a stop closes the others.
    drop(slow);
    a.stop();
    assert!(fast.is_closed());
}
