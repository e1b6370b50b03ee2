//! Command-line flags: parsed by hand (no dependency), every mistake a usage error.

use std::collections::BTreeSet;
use std::time::Duration;

use kad_core::{Codec, MAX_DURATION};

pub const USAGE: &str = "\
usage: kad-sim [--nodes N] [--seed S] [--codec json|bencode] [--concurrency C]
               [--loss P] [--duplicate P] [--jitter DUR] [--lossy-setup true|false]
               [--republish true|false] [--unverified-reply-factor X] [--request-retries R]
               [--replacement-cache N]
               [--check true|false]
  lookups (default):  [--lookups L] [--dead F]
  churn:              --churn F [--churn-every DUR] [--duration DUR] [--keys K] [--keys-per-round M]
  partition:          --partition DUR [--keys K] [--keys-per-round M]
  attack:             --attack eclipse|store|liars|all [--attackers F] [--lookups L]
DUR is a number with a unit: 500ms, 90s, 30m, 2h, 1.5d.";

/// Most nodes a run may build (SimNet's addresses run out at 2^24).
const MAX_NODES: usize = 10_000_000;

/// What to run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Put keys, kill a fraction of the nodes, run lookups (the original benchmark).
    Lookups,
    /// Replace `fraction` of the nodes every `every`, `rounds` times.
    Churn {
        fraction: f64,
        every: Duration,
        rounds: usize,
    },
    /// Split the network into two halves for `split`, then heal.
    Partition { split: Duration },
}

pub struct Args {
    pub mode: Mode,
    pub nodes: usize,
    pub lookups: usize,
    pub dead: f64,
    pub loss: f64,
    pub duplicate: f64,
    /// `None`: the link's default jitter.
    pub jitter: Option<Duration>,
    /// Loss and duplication apply during the setup (bootstrap, and the lookups mode's
    /// puts) too, not only after it.
    pub lossy_setup: bool,
    pub republish: bool,
    pub codec: Codec,
    pub seed: u64,
    pub concurrency: usize,
    /// Overrides kad-core's `unverified_reply_factor` (diagnostics).
    pub reply_factor: Option<usize>,
    /// Overrides kad-core's `request_retries`.
    pub retries: Option<usize>,
    /// Overrides kad-core's `replacement_cache_size`.
    pub replacement_cache: Option<usize>,
    /// Invariant checks after every step.
    pub check: bool,
    /// Keys put before a scenario starts.
    pub keys: usize,
    /// Keys put in each churn round, or by each half in each slice of a partition.
    pub keys_per_round: usize,
    /// `--attack` and `--attackers` (the attacker's fraction of the nodes, default 0.1).
    pub attack: Option<(kad_tests::scenario::AttackKind, f64)>,
}

impl Args {
    /// Were the link's duplication, jitter or loss phase set (the lookups mode then prints
    /// the link)?
    pub fn link_flags(&self) -> bool {
        self.duplicate > 0.0 || self.jitter.is_some() || !self.lossy_setup
    }
}

/// Parses the flags (without the program name).
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        mode: Mode::Lookups,
        nodes: 2000,
        lookups: 2000,
        dead: 0.0,
        loss: 0.0,
        duplicate: 0.0,
        jitter: None,
        lossy_setup: true,
        republish: true,
        codec: Codec::Json,
        seed: 1,
        concurrency: 50,
        reply_factor: None,
        retries: None,
        replacement_cache: None,
        check: false,
        keys: 500,
        keys_per_round: 0,
        attack: None,
    };
    let (mut attack, mut attackers) = (None, 0.1);
    let mut churn: Option<f64> = None;
    let mut every = Duration::from_secs(2 * 3600);
    let mut duration = Duration::from_secs(48 * 3600);
    let mut split: Option<Duration> = None;
    let mut keys_per_round: Option<usize> = None;
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.into());
        }
        let Some(value) = it.next() else {
            return Err(format!("{flag} needs a value\n{USAGE}"));
        };
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}\n{USAGE}");
        match flag.as_str() {
            "--nodes" => a.nodes = value.parse().map_err(|e| bad(&e))?,
            "--lookups" => a.lookups = value.parse().map_err(|e| bad(&e))?,
            "--dead" => a.dead = value.parse().map_err(|e| bad(&e))?,
            "--loss" => a.loss = value.parse().map_err(|e| bad(&e))?,
            "--duplicate" => a.duplicate = value.parse().map_err(|e| bad(&e))?,
            "--jitter" => a.jitter = Some(parse_duration(&value).map_err(|e| bad(&e))?),
            "--lossy-setup" => a.lossy_setup = value.parse().map_err(|e| bad(&e))?,
            "--republish" => a.republish = value.parse().map_err(|e| bad(&e))?,
            "--codec" => a.codec = value.parse().map_err(|e: String| bad(&e))?,
            "--seed" => a.seed = kad_tests::parse_seed(&value).ok_or_else(|| bad(&"not a u64"))?,
            "--concurrency" => a.concurrency = value.parse().map_err(|e| bad(&e))?,
            "--unverified-reply-factor" => {
                a.reply_factor = Some(value.parse().map_err(|e| bad(&e))?)
            }
            "--request-retries" => a.retries = Some(value.parse().map_err(|e| bad(&e))?),
            "--replacement-cache" => {
                a.replacement_cache = Some(value.parse().map_err(|e| bad(&e))?);
            }
            "--check" => a.check = value.parse().map_err(|e| bad(&e))?,
            "--churn" => churn = Some(value.parse().map_err(|e| bad(&e))?),
            "--churn-every" => every = parse_duration(&value).map_err(|e| bad(&e))?,
            "--duration" => duration = parse_duration(&value).map_err(|e| bad(&e))?,
            "--partition" => split = Some(parse_duration(&value).map_err(|e| bad(&e))?),
            "--keys" => a.keys = value.parse().map_err(|e| bad(&e))?,
            "--keys-per-round" => keys_per_round = Some(value.parse().map_err(|e| bad(&e))?),
            "--attack" => attack = Some(value.parse().map_err(|e: String| bad(&e))?),
            "--attackers" => attackers = value.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
        seen.insert(flag);
    }
    let usage = |what: String| format!("{what}\n{USAGE}");
    let only = |flags: &[&str], mode: &str| -> Result<(), String> {
        match flags.iter().find(|f| seen.contains(**f)) {
            Some(f) => Err(usage(format!("{f} applies only to {mode}"))),
            None => Ok(()),
        }
    };
    a.mode = match (churn, split) {
        (Some(_), Some(_)) => return Err(usage("choose one of --churn and --partition".into())),
        (Some(fraction), None) => {
            only(&["--lookups", "--dead"], "the lookups mode")?;
            if !(fraction > 0.0 && fraction < 1.0) {
                return Err(usage("--churn must be in (0, 1)".into()));
            }
            if every.is_zero() {
                return Err(usage("--churn-every must be positive".into()));
            }
            if duration < every {
                return Err(usage("--duration must be at least --churn-every".into()));
            }
            let rounds = duration.as_nanos() / every.as_nanos();
            Mode::Churn {
                fraction,
                every,
                rounds: usize::try_from(rounds).unwrap_or(usize::MAX),
            }
        }
        (None, Some(split)) => {
            only(&["--lookups", "--dead"], "the lookups mode")?;
            only(&["--churn-every", "--duration"], "--churn")?;
            if split.is_zero() {
                return Err(usage("--partition must be positive".into()));
            }
            Mode::Partition { split }
        }
        (None, None) => {
            only(
                &["--churn-every", "--duration"],
                "--churn (give --churn F to run churn)",
            )?;
            only(&["--keys", "--keys-per-round"], "--churn and --partition")?;
            Mode::Lookups
        }
    };
    a.keys_per_round = keys_per_round.unwrap_or(a.keys.div_ceil(10));
    if attack.is_some() && (a.mode != Mode::Lookups || seen.contains("--dead")) {
        return Err(usage(
            "--attack runs alone (no --churn, --partition or --dead)".into(),
        ));
    }
    if attack.is_none() && seen.contains("--attackers") {
        return Err(usage("--attackers applies only to --attack".into()));
    }
    if !(0.0..1.0).contains(&attackers) {
        return Err(usage("--attackers must be in [0, 1)".into()));
    }
    a.attack = attack.map(|kind| (kind, attackers));
    if !(2..=MAX_NODES).contains(&a.nodes) {
        return Err(usage(format!("--nodes must be between 2 and {MAX_NODES}")));
    }
    if let Mode::Churn {
        fraction, rounds, ..
    } = a.mode
    {
        // Every newcomer gets a new address, and SimNet has 2^24 of them.
        let built = a.nodes as f64 * (1.0 + fraction * rounds as f64);
        if built > MAX_NODES as f64 {
            return Err(usage(format!(
                "--churn builds about {built:.0} nodes in all; at most {MAX_NODES}"
            )));
        }
    }
    if !(0.0..1.0).contains(&a.dead) {
        return Err(usage("--dead must be in [0, 1)".into()));
    }
    if !(0.0..1.0).contains(&a.loss) {
        return Err(usage("--loss must be in [0, 1)".into()));
    }
    if !(0.0..=1.0).contains(&a.duplicate) {
        return Err(usage("--duplicate must be in [0, 1]".into()));
    }
    if a.jitter.is_some_and(|j| j > Duration::from_secs(60)) {
        return Err(usage("--jitter must be at most 60s".into()));
    }
    if a.concurrency == 0 {
        return Err(usage("--concurrency must be at least 1".into()));
    }
    Ok(a)
}

/// A duration written as a number and a unit: `500ms`, `90s`, `30m`, `2h`, `1.5d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s
        .find(|c: char| c.is_ascii_alphabetic())
        .ok_or("a duration needs a unit (ms, s, m, h or d), as in 2h")?;
    let (number, unit) = s.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{number:?} is not a number"))?;
    let unit = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return Err(format!("unknown unit {unit:?} (ms, s, m, h or d)")),
    };
    let secs = number * unit;
    if !secs.is_finite() || secs < 0.0 {
        return Err("a duration must be a finite, non-negative number".into());
    }
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if d <= MAX_DURATION => Ok(d),
        _ => Err("a duration must be at most 100 years".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args, String> {
        parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("2").is_err());
        assert!(parse_duration("-1h").is_err());
        assert!(parse_duration("nanh").is_err());
        assert!(parse_duration("2 h").is_err());
        assert!(parse_duration("1e30d").is_err());
    }

    #[test]
    fn modes_and_their_flags() {
        let a = args("--churn 0.5 --churn-every 2h --duration 48h").unwrap();
        assert_eq!(
            a.mode,
            Mode::Churn {
                fraction: 0.5,
                every: Duration::from_secs(7200),
                rounds: 24
            }
        );
        assert_eq!((a.keys, a.keys_per_round), (500, 50));
        let a = args("--partition 1h --keys 40").unwrap();
        assert_eq!(
            a.mode,
            Mode::Partition {
                split: Duration::from_secs(3600)
            }
        );
        assert_eq!(a.keys_per_round, 4);
        assert_eq!(args("--dead 0.25").unwrap().mode, Mode::Lookups);
        for bad in [
            "--churn 0.5 --partition 1h",
            "--churn 0.5 --dead 0.1",
            "--churn 1",
            "--churn 0.5 --duration 1h",
            "--partition 1h --churn-every 2h",
            "--keys 5",
            "--churn-every 2h",
            "--duplicate 2",
            "--jitter 30",
            "--nodes",
            "--nodes 1",
            "--nodes 100000000",
            "--nodes 1000000 --churn 0.5 --churn-every 1h --duration 48h",
            "--republish maybe",
        ] {
            assert!(args(bad).is_err(), "{bad} was accepted");
        }
    }
}
