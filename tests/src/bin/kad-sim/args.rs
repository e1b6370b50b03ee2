//! Command-line flags, parsed by clap (derive) into [`Cli`], then checked and turned into
//! [`Args`]; every mistake is a usage error (exit code 2, the usage on stderr).

use std::time::Duration;

use clap::{ArgAction, Parser};
use kad_core::{Codec, MAX_DURATION};

pub const USAGE: &str = "\
usage: kad-sim [--nodes N] [--seed S] [--codec json|bencode] [--concurrency C]
               [--loss P] [--duplicate P] [--jitter DUR] [--lossy-setup true|false]
               [--rtt-median DUR]
               [--republish true|false] [--unverified-reply-factor X] [--request-retries R]
               [--replacement-cache N] [--bootstrap-fill N]
               [--check true|false] [--threads T]
  lookups (default):  [--lookups L] [--dead F]
  churn:              --churn F [--churn-every DUR] [--duration DUR] [--keys K] [--keys-per-round M]
  partition:          --partition DUR [--keys K] [--keys-per-round M]
  attack:             --attack eclipse|store|liars|overwrite|all [--attackers F] [--signed]
                      [--sybil-ips N] [--lookups L]
DUR is a number with a unit: 500ms, 90s, 30m, 2h, 1.5d.";

/// Most nodes a run may build (SimNet's addresses run out at 2^24).
const MAX_NODES: usize = 10_000_000;

/// Every flag kad-sim takes, as given (`None`: not given). One struct, so that a new flag
/// is one field here and one line in [`Cli::check`].
#[derive(Parser, Debug, Default)]
#[command(
    name = "kad-sim",
    about = "a whole kad network in one process, in virtual time"
)]
pub struct Cli {
    /// Nodes to build (default 2000).
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Seed of every random choice, decimal or 0x hex (default 1).
    #[arg(long, value_parser = parse_seed)]
    pub seed: Option<u64>,
    /// Wire codec: json or bencode (default json).
    #[arg(long)]
    pub codec: Option<Codec>,
    /// Commands in flight at once (default 50).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Probability that a datagram is lost.
    #[arg(long)]
    pub loss: Option<f64>,
    /// Probability that a datagram is delivered twice.
    #[arg(long)]
    pub duplicate: Option<f64>,
    /// Extra one-way delay, uniform in [0, DUR) (default 30ms; 0 with --rtt-median).
    #[arg(long, value_parser = parse_duration)]
    pub jitter: Option<Duration>,
    /// Loss and duplication apply during the setup too (default true).
    #[arg(long, action = ArgAction::Set, value_parser = parse_bool)]
    pub lossy_setup: Option<bool>,
    /// Per-pair round trips, lognormal with this median, instead of the fixed 20 ms link.
    #[arg(long, value_parser = parse_duration)]
    pub rtt_median: Option<Duration>,
    /// Republish records (default true).
    #[arg(long, action = ArgAction::Set, value_parser = parse_bool)]
    pub republish: Option<bool>,
    /// Overrides kad-core's `unverified_reply_factor` (diagnostics).
    #[arg(long)]
    pub unverified_reply_factor: Option<usize>,
    /// Overrides kad-core's `request_retries`.
    #[arg(long)]
    pub request_retries: Option<usize>,
    /// Overrides kad-core's `get_parallelism`.
    #[arg(long)]
    pub get_parallelism: Option<usize>,
    /// Overrides kad-core's `get_quorum`.
    #[arg(long)]
    pub get_quorum: Option<usize>,
    /// Overrides kad-core's `replacement_cache_size`.
    #[arg(long)]
    pub replacement_cache: Option<usize>,
    /// Overrides kad-core's `bootstrap_fill`.
    #[arg(long)]
    pub bootstrap_fill: Option<usize>,
    /// Invariant checks after every step (default false).
    #[arg(long, action = ArgAction::Set, value_parser = parse_bool)]
    pub check: Option<bool>,
    /// Threads for the joins (default: the machine's cores, at most 8); the outcome is
    /// the same for any number.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Lookups mode: gets to run (default 2000).
    #[arg(long)]
    pub lookups: Option<usize>,
    /// Lookups mode: fraction of the nodes killed before the gets.
    #[arg(long)]
    pub dead: Option<f64>,
    /// Churn mode: fraction of the live nodes replaced every --churn-every.
    #[arg(long)]
    pub churn: Option<f64>,
    /// Churn mode: time between rounds (default 2h).
    #[arg(long, value_parser = parse_duration)]
    pub churn_every: Option<Duration>,
    /// Churn mode: length of the run (default 48h).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Partition mode: how long the two halves stay apart.
    #[arg(long, value_parser = parse_duration)]
    pub partition: Option<Duration>,
    /// Keys put before a churn or partition scenario starts (default 500).
    #[arg(long)]
    pub keys: Option<usize>,
    /// Keys put in each churn round or partition slice (default keys / 10).
    #[arg(long)]
    pub keys_per_round: Option<usize>,
    /// Run issue 14's attack simulation: eclipse, store, liars, overwrite or all.
    #[arg(long)]
    pub attack: Option<kad_tests::scenario::AttackKind>,
    /// The attacker's fraction of the nodes (default 0.1; only with --attack).
    #[arg(long)]
    pub attackers: Option<f64>,
    /// Attack mode: the honest keys are signed records (only with --attack).
    #[arg(long)]
    pub signed: bool,
    /// Attack mode: the attacker IPs one key's k Sybils share, 1 to k (default 2; k puts
    /// each on its own IP; never more than the attacker has nodes).
    #[arg(long)]
    pub sybil_ips: Option<usize>,
}

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

/// The checked settings of a run, defaults filled in.
pub struct Args {
    pub mode: Mode,
    pub nodes: usize,
    pub lookups: usize,
    pub dead: f64,
    pub loss: f64,
    pub duplicate: f64,
    /// `None`: the link's default jitter (none with `rtt_median`).
    pub jitter: Option<Duration>,
    /// Per-pair round trips with this median (`None`: the fixed default link).
    pub rtt_median: Option<Duration>,
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
    /// Overrides kad-core's `get_parallelism`.
    pub get_parallelism: Option<usize>,
    /// Overrides kad-core's `get_quorum`.
    pub get_quorum: Option<usize>,
    /// Overrides kad-core's `replacement_cache_size`.
    pub replacement_cache: Option<usize>,
    /// Overrides kad-core's `bootstrap_fill`.
    pub bootstrap_fill: Option<usize>,
    /// Invariant checks after every step.
    pub check: bool,
    /// Threads for the joins.
    pub threads: usize,
    /// Keys put before a scenario starts.
    pub keys: usize,
    /// Keys put in each churn round, or by each half in each slice of a partition.
    pub keys_per_round: usize,
    /// `--attack` and `--attackers` (the attacker's fraction of the nodes, default 0.1).
    pub attack: Option<(kad_tests::scenario::AttackKind, f64)>,
    /// `--signed`: the attack's honest keys are signed records.
    pub signed: bool,
    /// `--sybil-ips`: the attacker IPs one key's Sybils share.
    pub sybil_ips: usize,
}

impl Args {
    /// Were the link's duplication, jitter or loss phase set (the lookups mode then prints
    /// the link)?
    pub fn link_flags(&self) -> bool {
        self.duplicate > 0.0
            || self.jitter.is_some()
            || !self.lossy_setup
            || self.rtt_median.is_some()
    }
}

fn parse_bool(s: &str) -> Result<bool, String> {
    s.parse().map_err(|e| format!("{e}"))
}

fn parse_seed(s: &str) -> Result<u64, String> {
    kad_tests::parse_seed(s).ok_or_else(|| "not a u64".into())
}

/// Parses the flags (without the program name). `--help` is an `Err` holding the help.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let argv = std::iter::once("kad-sim".to_string()).chain(args);
    let cli = Cli::try_parse_from(argv).map_err(|e| match e.kind() {
        clap::error::ErrorKind::DisplayHelp => format!("{}", e.render()),
        _ => format!("{}\n{USAGE}", e.render()),
    })?;
    cli.check()
}

impl Cli {
    /// Checks the flags against each other and fills in the defaults.
    pub fn check(self) -> Result<Args, String> {
        let usage = |what: String| format!("{what}\n{USAGE}");
        let given = |flags: &[(&str, bool)], mode: &str| -> Result<(), String> {
            match flags.iter().find(|(_, g)| *g) {
                Some((f, _)) => Err(usage(format!("{f} applies only to {mode}"))),
                None => Ok(()),
            }
        };
        let lookup_flags = [
            ("--lookups", self.lookups.is_some()),
            ("--dead", self.dead.is_some()),
        ];
        let churn_flags = [
            ("--churn-every", self.churn_every.is_some()),
            ("--duration", self.duration.is_some()),
        ];
        let every = self.churn_every.unwrap_or(Duration::from_secs(2 * 3600));
        let duration = self.duration.unwrap_or(Duration::from_secs(48 * 3600));
        let mode = match (self.churn, self.partition) {
            (Some(_), Some(_)) => {
                return Err(usage("choose one of --churn and --partition".into()))
            }
            (Some(fraction), None) => {
                given(&lookup_flags, "the lookups mode")?;
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
                given(&lookup_flags, "the lookups mode")?;
                given(&churn_flags, "--churn")?;
                if split.is_zero() {
                    return Err(usage("--partition must be positive".into()));
                }
                Mode::Partition { split }
            }
            (None, None) => {
                given(&churn_flags, "--churn (give --churn F to run churn)")?;
                given(
                    &[
                        ("--keys", self.keys.is_some()),
                        ("--keys-per-round", self.keys_per_round.is_some()),
                    ],
                    "--churn and --partition",
                )?;
                Mode::Lookups
            }
        };
        let keys = self.keys.unwrap_or(500);
        let a = Args {
            mode,
            nodes: self.nodes.unwrap_or(2000),
            lookups: self.lookups.unwrap_or(2000),
            dead: self.dead.unwrap_or(0.0),
            loss: self.loss.unwrap_or(0.0),
            duplicate: self.duplicate.unwrap_or(0.0),
            jitter: self.jitter,
            rtt_median: self.rtt_median,
            lossy_setup: self.lossy_setup.unwrap_or(true),
            republish: self.republish.unwrap_or(true),
            codec: self.codec.unwrap_or(Codec::Json),
            seed: self.seed.unwrap_or(1),
            concurrency: self.concurrency.unwrap_or(50),
            reply_factor: self.unverified_reply_factor,
            retries: self.request_retries,
            get_parallelism: self.get_parallelism,
            get_quorum: self.get_quorum,
            replacement_cache: self.replacement_cache,
            bootstrap_fill: self.bootstrap_fill,
            check: self.check.unwrap_or(false),
            threads: self.threads.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
            }),
            keys,
            keys_per_round: self.keys_per_round.unwrap_or(keys.div_ceil(10)),
            attack: None,
            signed: self.signed,
            sybil_ips: self
                .sybil_ips
                .unwrap_or(kad_tests::scenario::AttackPlan::SYBIL_IPS),
        };
        let mut a = a;
        let attackers = self.attackers.unwrap_or(0.1);
        if self.attack.is_some() && (a.mode != Mode::Lookups || self.dead.is_some()) {
            return Err(usage(
                "--attack runs alone (no --churn, --partition or --dead)".into(),
            ));
        }
        if self.attack.is_none() && self.signed {
            return Err(usage("--signed applies only to --attack".into()));
        }
        if self.attack.is_none() && self.sybil_ips.is_some() {
            return Err(usage("--sybil-ips applies only to --attack".into()));
        }
        // A key has k Sybils, so more IPs than k would be printed but not used.
        let k = kad_core::Config::default().k();
        if self.sybil_ips.is_some_and(|n| n == 0 || n > k) {
            return Err(usage(format!("--sybil-ips must be between 1 and k ({k})")));
        }
        if self.attack.is_none() && self.attackers.is_some() {
            return Err(usage("--attackers applies only to --attack".into()));
        }
        if !(0.0..1.0).contains(&attackers) {
            return Err(usage("--attackers must be in [0, 1)".into()));
        }
        a.attack = self.attack.map(|kind| (kind, attackers));
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
        if a.rtt_median
            .is_some_and(|m| m.is_zero() || m > Duration::from_secs(10))
        {
            return Err(usage("--rtt-median must be in (0, 10s]".into()));
        }
        if a.threads == 0 {
            return Err(usage("--threads must be at least 1".into()));
        }
        if a.concurrency == 0 {
            return Err(usage("--concurrency must be at least 1".into()));
        }
        Ok(a)
    }
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
        let a = args("--rtt-median 80ms --seed 0x10 --check true --codec bencode").unwrap();
        assert_eq!(a.rtt_median, Some(Duration::from_millis(80)));
        assert_eq!((a.seed, a.check, a.codec), (16, true, Codec::Bencode));
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
            "--rtt-median 0ms",
            "--rtt-median 80",
        ] {
            assert!(args(bad).is_err(), "{bad} was accepted");
        }
    }
}
