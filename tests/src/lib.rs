//! Deterministic simulation of kad networks.
//!
//! [`SimNet`] holds many [`kad_core::Node`]s at virtual addresses, one virtual clock and a
//! seeded priority queue of datagrams in flight, with latency, jitter, loss, duplication,
//! partitions and dead nodes ([`Link`]). [`SimNet::step`] jumps to the earliest delivery or
//! node deadline, so hours of protocol time cost only the work done in them. The same seed
//! and script give the same run, datagram for datagram ([`SimNet::trace_hash`]).
//!
//! ```
//! use kad_core::{Config, QueryResult, Value};
//! use kad_tests::{Link, SimNet};
//!
//! let mut net = SimNet::with_nodes(kad_tests::seed(7), Link::default(), 30, &Config::default());
//! net.bootstrap_all(8);
//! let (put, _) = net.run_query(3, |n, now| n.put(now, "colour", "blue").unwrap());
//! assert!(matches!(put, QueryResult::Put(Ok(_))));
//! let (got, stats) = net.run_query(17, |n, now| n.get(now, "colour").unwrap());
//! assert_eq!(got, QueryResult::Get(Ok(Some(Value::from("blue")))));
//! assert!(stats.rounds <= 3); // 0 when node 17 holds a replica itself
//! ```

pub mod forge;
mod link;
mod net;
pub mod scenario;
mod summary;
mod trace;
pub mod wire;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;

pub use link::{Link, RttModel};
pub use net::{BootstrapReport, Finished, Intercept, JoinProgressFn, NetStats, SimNet};
pub use summary::Summary;
pub use trace::TraceHash;

/// The environment variable that replays a simulation with a given seed.
pub const SEED_VAR: &str = "KAD_SIM_SEED";

/// The seed to run with: `KAD_SIM_SEED` (decimal, or hex with `0x`) if set, else `default`.
/// Printed, so that a failing test's output shows it.
///
/// # Panics
/// If `KAD_SIM_SEED` is set but is not a number.
pub fn seed(default: u64) -> u64 {
    let seed = match std::env::var(SEED_VAR) {
        Ok(s) => parse_seed(&s).unwrap_or_else(|| panic!("{SEED_VAR}={s:?} is not a u64")),
        Err(_) => default,
    };
    println!("simulation seed {seed} (replay with {SEED_VAR}={seed})");
    seed
}

/// Parses a seed written in decimal or as `0x` hex.
pub fn parse_seed(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse_in_decimal_and_hex() {
        assert_eq!(parse_seed("42"), Some(42));
        assert_eq!(parse_seed(" 0x2a "), Some(42));
        assert_eq!(parse_seed("0X2A"), Some(42));
        assert_eq!(parse_seed("forty-two"), None);
    }
}
