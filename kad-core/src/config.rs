//! Every tunable of a node, validated once at build time.

use std::time::Duration;

use crate::Codec;

/// Longest duration any setting may hold (100 years): keeps `Instant + Duration` from
/// overflowing whatever a user configures.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A node's settings. Build one with [`Config::builder`]; the defaults are the Python
/// package's (`k` 20, `alpha` 3, `query_timeout` 2 s, ...).
///
/// ```
/// use std::time::Duration;
/// use kad_core::{Codec, Config};
/// let config = Config::builder()
///     .codec(Codec::Bencode)
///     .k(16)
///     .query_timeout(Duration::from_millis(500))
///     .build()
///     .unwrap();
/// assert_eq!(config.k(), 16);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub(crate) codec: Codec,
    pub(crate) verify_response_source: bool,
    pub(crate) k: usize,
    pub(crate) alpha: usize,
    pub(crate) get_parallelism: usize,
    pub(crate) get_quorum: usize,
    pub(crate) query_timeout: Duration,
    pub(crate) bucket_refresh_interval: Duration,
    pub(crate) key_expiry: Duration,
    pub(crate) non_publisher_restore_interval: Duration,
    pub(crate) original_publisher_republish_interval: Duration,
    pub(crate) min_cache_ttl: Duration,
    pub(crate) max_dispatch_tasks: usize,
    pub(crate) failures_before_eviction: u32,
    pub(crate) replacement_cache_size: usize,
    pub(crate) max_records: usize,
    pub(crate) max_store_bytes: usize,
    pub(crate) max_key_bytes: usize,
    pub(crate) max_value_bytes: usize,
    pub(crate) max_datagram_bytes: usize,
    pub(crate) max_pending_requests: usize,
    pub(crate) max_queued_transmits: usize,
    pub(crate) max_active_queries: usize,
    pub(crate) max_concurrent_republish: usize,
    pub(crate) max_peers_per_ip_per_bucket: usize,
    pub(crate) max_peers_per_ip: usize,
    pub(crate) ip_limits_exempt_loopback: bool,
    pub(crate) unverified_reply_factor: usize,
    pub(crate) max_held_replies: usize,
    pub(crate) max_verified_addresses: usize,
    pub(crate) pad_requests: bool,
    pub(crate) ping_oldest_after: Duration,
    pub(crate) request_retries: usize,
    pub(crate) reply_allowance: usize,
    pub(crate) store_percent_per_ip: usize,
    pub(crate) ipv6_prefix_len: usize,
    pub(crate) max_lookup_peers_per_ip: usize,
    pub(crate) max_lookup_peers_per_subnet: usize,
    pub(crate) max_ids_per_ip: usize,
    pub(crate) bootstrap_fill: usize,
    pub(crate) client_mode: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            codec: Codec::Json,
            verify_response_source: true,
            k: 20,
            alpha: 3,
            get_parallelism: 6,
            get_quorum: 0,
            query_timeout: Duration::from_secs(2),
            bucket_refresh_interval: Duration::from_secs(3600),
            key_expiry: Duration::from_secs(86410),
            non_publisher_restore_interval: Duration::from_secs(3600),
            original_publisher_republish_interval: Duration::from_secs(86400),
            min_cache_ttl: Duration::from_secs(600),
            max_dispatch_tasks: 64,
            failures_before_eviction: 3,
            replacement_cache_size: 8,
            max_records: 100_000,
            max_store_bytes: 256 * 1024 * 1024,
            max_key_bytes: 1024,
            // What a 65,507-byte datagram carries beside the longest key and the largest
            // envelope: every value a kademlia-dynamic node can send, short of the last
            // ~1.3 KB (see the doc of `max_value_bytes`).
            max_value_bytes: 65_507 - 1024 - 400,
            max_datagram_bytes: 65_507,
            max_pending_requests: 4096,
            max_queued_transmits: 4096,
            max_active_queries: 1024,
            max_concurrent_republish: 16,
            max_peers_per_ip_per_bucket: 2,
            max_peers_per_ip: 10,
            ip_limits_exempt_loopback: true,
            unverified_reply_factor: 4,
            max_held_replies: 256,
            max_verified_addresses: 8192,
            pad_requests: true,
            ping_oldest_after: Duration::from_secs(15 * 60),
            request_retries: 2,
            reply_allowance: 64 * 1024,
            store_percent_per_ip: 1,
            ipv6_prefix_len: 48,
            max_lookup_peers_per_ip: 2,
            max_lookup_peers_per_subnet: 5,
            max_ids_per_ip: 2,
            bootstrap_fill: 10,
            client_mode: false,
        }
    }
}

/// Why a [`Config`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A count that must be at least 1 was 0, or one above its ceiling.
    #[error("{name} must be between {min} and {max}, got {got}")]
    OutOfRange {
        /// The setting's name.
        name: &'static str,
        /// Smallest allowed value.
        min: usize,
        /// Largest allowed value.
        max: usize,
        /// What was given.
        got: usize,
    },
    /// A duration that must be positive was zero, or one above [`MAX_DURATION`].
    #[error("{name} must be between 1 ms and 100 years, got {got:?}")]
    Duration {
        /// The setting's name.
        name: &'static str,
        /// What was given.
        got: Duration,
    },
    /// A duration that may be zero was above [`MAX_DURATION`].
    #[error("{name} must be at most 100 years, got {got:?}")]
    DurationTooLong {
        /// The setting's name.
        name: &'static str,
        /// What was given.
        got: Duration,
    },
    /// `alpha` is larger than `k`.
    #[error("alpha ({alpha}) must not exceed k ({k})")]
    AlphaAboveK {
        /// Given alpha.
        alpha: usize,
        /// Given k.
        k: usize,
    },
    /// `max_value_bytes` plus its envelope cannot fit one datagram.
    #[error("max_value_bytes ({value}) + max_key_bytes ({key}) do not fit a {datagram}-byte datagram with their envelope")]
    ValueTooLargeForDatagram {
        /// Given max_value_bytes.
        value: usize,
        /// Given max_key_bytes.
        key: usize,
        /// Given max_datagram_bytes.
        datagram: usize,
    },
}

/// Every setting of [`Config`], written once: its doc, name, type and (`as "..."`) the
/// Python package's name for it. `config_settings!(callback { prefix })` expands to
/// `callback! { prefix <the list> }` (`config_settings!(@call [path::to::callback] { prefix
/// })` for a macro named by its path), so that each place that names every
/// setting (the getters and setters here, the adapters' builder setters, the CLI's config
/// file) is generated from this list.
#[doc(hidden)]
#[macro_export]
macro_rules! config_settings {
    ($callback:ident { $($prefix:tt)* }) => {
        $crate::config_settings!(@call [$callback] { $($prefix)* });
    };
    (@call [$($callback:tt)*] { $($prefix:tt)* }) => {
        $($callback)*! { $($prefix)*
        /// Wire format (default JSON).
        codec: $crate::Codec,
        /// Accept a response only from the exact address its request went to (default true).
        verify_response_source: bool,
        /// Bucket size and replication factor (default 20).
        k: usize,
        /// Requests in flight per lookup (default 3). A `get` or `find_value` counts only
        /// its requests to the k closest nodes it knows, up to k in flight in all.
        alpha: usize,
        /// Requests a plain key's (majority) `get` keeps in flight to the k closest nodes it
        /// knows that have not stalled (default 6; alpha if that is more): a request to a
        /// node that closer ones have pushed out of them frees its slot, up to k in flight in
        /// all. A get asks the closest nodes for their values and ends once
        /// `get_quorum` IPs agree with no other value offered: the more it
        /// asks at once, the sooner it hears enough of them, and the more requests it
        /// sends. At 10,000 nodes with 80 ms lognormal round trips, 5 / 6 / 7 / 8 give a
        /// median of 204 / 185 / 172 / 162 ms for 18 / 21 / 25 / 28 requests a get.
        get_parallelism: usize,
        /// Agreeing voters that end a plain key's (majority) `get` early: this many IPs
        /// among the k closest nodes the get knows hold one value, and nobody has offered
        /// another; our own replica, if we hold one, is a voter too (1 to k; 0, the
        /// default, means a quarter of k, at least 3: 5 with the default k). Otherwise the
        /// get asks the k closest and counts their votes. Fewer voters end gets sooner, but
        /// fewer liars among the closest can then end one with their value alone: at
        /// 100,000 simulated nodes 5 / 3 / 1 voters take 3.22 / 3.03 / 2.65 rounds, and in
        /// the attack simulation (2,000 nodes, a tenth of them lying) 2 / 26 / 563 of
        /// 2,000 gets return a liar's value (BENCHMARKS.md).
        get_quorum: usize,
        /// How long to wait for a response (default 2 s).
        query_timeout: ::std::time::Duration,
        /// A bucket untouched this long is refreshed (default 3600 s). Nodes look for
        /// such buckets every quarter of it, each from a random phase of its own.
        bucket_refresh_interval: ::std::time::Duration,
        /// How long a stored value lives (default 86410 s).
        key_expiry: ::std::time::Duration as "key_expiry_seconds",
        /// How often a node re-replicates records it holds for others (default 3600 s).
        non_publisher_restore_interval: ::std::time::Duration,
        /// How often a node republishes records it published itself (default 86400 s).
        original_publisher_republish_interval: ::std::time::Duration,
        /// Shortest life of a cached copy (default 600 s).
        min_cache_ttl: ::std::time::Duration as "min_cache_ttl_seconds",
        /// The adapters' receive budget per pass (default 64, the number the Python package's
        /// `max_dispatch_tasks` has, with another meaning). Each time the socket is readable,
        /// an adapter reads up to four times this many datagrams; the first
        /// `max_dispatch_tasks` go to the node whatever their source, and of the rest only
        /// those from addresses the node has verified (or awaits an answer from); the others
        /// are dropped and counted (`datagrams_dropped` in the adapter's stats). So under a
        /// flood from strangers the peers we know still get through. The Python package
        /// instead caps the handler tasks running at once and drops a datagram that arrives
        /// while that many run; kad's node handles each datagram to its end before the next,
        /// so there is nothing concurrent to cap. The node itself does not read this setting.
        max_dispatch_tasks: usize,
        /// Consecutive failed requests after which a peer leaves the routing table (default 3).
        failures_before_eviction: u32,
        /// Replacement-cache entries per bucket (default 8): peers heard from while their
        /// bucket was full, newest kept, promoted when an entry is evicted. Only the freshest
        /// is ever promoted, and traffic keeps refilling the cache, so depth buys little: 8
        /// and 20 gave the same results with 60 % of a 2,000-node network replaced every two
        /// hours, and 20 cost 2 KB a node more at 100,000 nodes (BENCHMARKS.md section 4).
        replacement_cache_size: usize,
        /// Most records the store holds (default 100,000).
        max_records: usize,
        /// Most bytes of keys and values the store holds (default 256 MiB).
        max_store_bytes: usize,
        /// Longest key in bytes (default 1024).
        max_key_bytes: usize,
        /// Largest value in bytes, ours or one a peer asks us to store (default 64,083: what
        /// a 65,507-byte datagram carries beside a `max_key_bytes` key and the envelope of a
        /// `set_cached`, the largest message that carries a value; a value that size fits,
        /// with any allowed key, every message we pass it on in, unless its encoding grows it
        /// as JSON's base64 and escapes do). The Python package has no limit but the
        /// datagram: its `set` of a value up to about 65,370 bytes (with a short key) reaches
        /// us. Up to 64,083 bytes we store it like any other; above (or above a smaller limit
        /// configured here) the `set` is refused without a reply, counted in
        /// `Stats::requests_refused`, and the Python sender, having no answer within its
        /// timeout, drops us from its table. There is no "refused" message in the protocol,
        /// and a `set_res` would claim a copy we do not hold.
        max_value_bytes: usize,
        /// Largest datagram we send (default 65,507, the IPv4 UDP maximum).
        max_datagram_bytes: usize,
        /// Most requests in flight at once (default 4096).
        max_pending_requests: usize,
        /// Most datagrams waiting in `poll_transmit` (default 4096).
        max_queued_transmits: usize,
        /// Most user and maintenance queries running at once (default 1024).
        max_active_queries: usize,
        /// Most republish operations running at once (default 16).
        max_concurrent_republish: usize,
        /// Most routing-table entries (and replacements) one IP may hold in a bucket (default 2;
        /// an IPv6 /64 counts as one IP).
        max_peers_per_ip_per_bucket: usize,
        /// Most routing-table entries one IP may hold in the whole table (default 10).
        max_peers_per_ip: usize,
        /// Loopback addresses are exempt from the per-IP caps, so local swarms work (default true).
        ip_limits_exempt_loopback: bool,
        /// A reply to a sender that has not yet answered us from its address is at most this many
        /// times the size of its request (default 4). A larger reply (a full peer list, a value)
        /// waits until the sender answers a verification ping, which costs a first contact one
        /// extra round trip and a forged source address nothing but one small ping. No
        /// amplification.
        unverified_reply_factor: usize,
        /// Most requests (stores, or requests whose reply is too large to send at once) waiting
        /// for their unproven senders to answer a verification ping, and most such pings in
        /// flight (default 256; at most 8 of either per IP). When full, the oldest goes first.
        max_held_replies: usize,
        /// Most addresses remembered as verified (they answered a request of ours from that
        /// address) beside the routing table's own entries (default 8192). A verification lasts
        /// an hour.
        max_verified_addresses: usize,
        /// Pad `find_node` and `find_value` requests (with a `pad` field, which every
        /// kademlia-dynamic node ignores) so that a full peer list fits the responder's
        /// `unverified_reply_factor` budget at once (default true). A request grows from about
        /// 200 to about 500 bytes; in return a first contact gets its answer in one round trip
        /// instead of two (no verification ping). The amplification bound is unchanged: the
        /// responder still never sends an unverified sender more than the factor times what it
        /// received. Off: requests are as small as the reference's.
        pad_requests: bool,
        /// A full bucket pings its least-recently-seen entry (and evicts it if it stays silent)
        /// before a newcomer can take its place only when that entry has been silent this long
        /// (default 15 minutes, BitTorrent's "questionable" age). Fresher entries stay without
        /// a ping, and the newcomer waits in the replacement cache. Zero pings the oldest every
        /// time, as the Kademlia paper and the reference do; on a busy node that is a ping for
        /// nearly every request from a stranger.
        ping_oldest_after: ::std::time::Duration,
        /// How many more times an unanswered request goes out, unchanged (same transaction
        /// id), within its `query_timeout` (default 2, at most 8). The copies are spread
        /// evenly: with 2 the request is sent again at a third and at two thirds of the way to
        /// its deadline, with 1 halfway. An answer to any copy completes the request, and the
        /// deadline does not move, so a lookup's time budget is the same; what changes is that
        /// a lost datagram no longer costs a lookup its peer (or a joining node its bootstrap).
        /// At 20% loss each way a round trip fails 36% of the time with 0 retries, 13% with 1
        /// and 4.7% with 2. A peer that answers costs nothing extra; a dead one costs the
        /// copies.
        /// Zero sends each request once, as the reference does. A ping that verifies a
        /// stranger's address is never repeated, so a forged source draws one ping and no more. Requests are idempotent on the
        /// wire (a repeated `store` stores the same record), so a copy that crosses a late
        /// answer costs one datagram and nothing else.
        request_retries: usize,
        /// Bytes a proven address may receive in replies beyond `unverified_reply_factor` times
        /// its requests, per minute (a token bucket; default 64 KiB, one large value with its
        /// envelope). A proof (an answer to our ping) shows that an address exists, not that it
        /// asked: a forged request naming a DHT node as its source would otherwise turn us into
        /// an amplifier aimed at that node. So whatever the address, replies to it are bounded
        /// by the factor times what it sent us plus this allowance; a reply that does not fit
        /// is shortened (a peer list) or not sent (a value).
        reply_allowance: usize,
        /// Share of `max_records` and of `max_store_bytes`, in percent, that the records
        /// stored by one source IP may take (default 1; an IPv6 prefix of `ipv6_prefix_len`
        /// bits counts as one IP, loopback is exempt when `ip_limits_exempt_loopback`). One
        /// host flooding us with junk keys fills its share, not the store.
        store_percent_per_ip: usize,
        /// How many leading bits of an IPv6 address count as one IP for every per-IP limit
        /// (routing-table caps, store quotas, lookup diversity; default 48: one site).
        ipv6_prefix_len: usize,
        /// Most candidates one IP may hold among a lookup's peers (default 2; loopback exempt
        /// when `ip_limits_exempt_loopback`): one host with many ids cannot fill the k closest.
        max_lookup_peers_per_ip: usize,
        /// Most candidates one IPv4 /24 or one IPv6 prefix of `ipv6_prefix_len` bits may hold
        /// among a lookup's peers (default 5).
        max_lookup_peers_per_subnet: usize,
        /// Most distinct node ids one IP (an IPv6 prefix of `ipv6_prefix_len` bits) may prove
        /// to us within an hour (default 2, at most 7, 0 for no limit; addresses outside the
        /// public internet are exempt when `ip_limits_exempt_loopback`, as for lookups). A host
        /// runs one node, or a few behind a NAT; one that answers for more ids is placing them
        /// where it likes (next to a key, to swallow its stores and outvote its replicas). Such
        /// a crowded IP loses all standing: its entries leave the routing table, lookups
        /// neither ask nor count it, and its stores are refused. Only answers to our own
        /// requests count, so no one can crowd an IP they do not answer from. The IPs
        /// remembered are bounded by `max_verified_addresses`.
        max_ids_per_ip: usize,
        /// Entries the bootstrap's bucket refresh aims for in each bucket farther than our
        /// closest neighbours (default 10, half of the default k; more than k counts as k; 0
        /// refreshes no bucket and joins by the self lookup alone, as mainline does). Each
        /// entry a refresh lookup adds costs one request, since only an answer proves a peer.
        /// The rest of a bucket fills at no extra cost, from the strangers who query us and
        /// answer the ping we send before answering them. At 30,000 simulated nodes, 10
        /// instead of k halves the bootstrap's requests (227 to 120 a node) and lowers the
        /// lookup rounds (2.96 to 2.78), with tables 18 % smaller at the end of the run.
        bootstrap_fill: usize,
        /// Client mode (default false): the node queries and stores through the network but
        /// never enters anyone's routing table. Its messages carry the `ro` field, and kad nodes
        /// never add a sender that sets it; it answers pings and lookups but stores nothing
        /// for others (their `set` and `set_cached` go unanswered). Python nodes ignore the
        /// field and add it as any sender (docs/PROTOCOL.md). For one-shot tools and nodes
        /// behind NAT or on batteries.
        client_mode: bool,
        }
    };
}

macro_rules! getters {
    ($($(#[$m:meta])* $name:ident: $ty:ty $(as $alias:literal)?),* $(,)?) => {
        impl Config {
            $($(#[$m])* $(#[doc(alias = $alias)])? pub fn $name(&self) -> $ty { self.$name })*
        }
        impl ConfigBuilder {
            $($(#[$m])* $(#[doc(alias = $alias)])? pub fn $name(mut self, v: $ty) -> Self { self.0.$name = v; self })*
        }

        /// A builder holding every setting of `config`: the one path from a [`Config`] back
        /// to a builder (the adapters' `Builder::config` uses it), so later settings apply
        /// on top.
        ///
        /// The conversion names every field (an exhaustive destructuring) and passes each
        /// through its setter: a new field fails to compile here until it is in the list of
        /// `config_settings!`.
        impl From<Config> for ConfigBuilder {
            fn from(config: Config) -> Self {
                let Config { $($name),* } = config;
                Config::builder()$(.$name($name))*
            }
        }
    };
}

config_settings!(getters {});

impl Config {
    /// The voters that end a get early: [`Config::get_quorum`], or a quarter of k (at
    /// least 3, which a k below 3 may never reach) when that is 0.
    pub(crate) fn settle_voters(&self) -> usize {
        match self.get_quorum {
            0 => (self.k / 4).max(3),
            n => n,
        }
    }

    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder(Config::default())
    }

    /// Checks every setting; [`ConfigBuilder::build`] calls this.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let range = |name, got, min, max| {
            if got < min || got > max {
                Err(ConfigError::OutOfRange {
                    name,
                    min,
                    max,
                    got,
                })
            } else {
                Ok(())
            }
        };
        // k peers must fit one find_node_res datagram (about 100 bytes each in JSON).
        range("k", self.k, 1, 256)?;
        range("alpha", self.alpha, 1, 256)?;
        if self.alpha > self.k {
            return Err(ConfigError::AlphaAboveK {
                alpha: self.alpha,
                k: self.k,
            });
        }
        range("get_parallelism", self.get_parallelism, 1, 256)?;
        range("get_quorum", self.get_quorum, 0, self.k)?;
        range("max_dispatch_tasks", self.max_dispatch_tasks, 1, 1 << 20)?;
        range(
            "failures_before_eviction",
            self.failures_before_eviction as usize,
            1,
            1000,
        )?;
        range(
            "replacement_cache_size",
            self.replacement_cache_size,
            0,
            1024,
        )?;
        range("max_records", self.max_records, 1, 1 << 32)?;
        range("max_store_bytes", self.max_store_bytes, 1, usize::MAX)?;
        range("max_key_bytes", self.max_key_bytes, 1, 16 * 1024)?;
        range("max_value_bytes", self.max_value_bytes, 1, 64 * 1024)?;
        range("max_datagram_bytes", self.max_datagram_bytes, 1200, 65_507)?;
        range(
            "max_pending_requests",
            self.max_pending_requests,
            1,
            1 << 24,
        )?;
        range(
            "max_queued_transmits",
            self.max_queued_transmits,
            1,
            1 << 24,
        )?;
        range("max_active_queries", self.max_active_queries, 1, 1 << 20)?;
        range(
            "max_concurrent_republish",
            self.max_concurrent_republish,
            1,
            1 << 16,
        )?;
        range(
            "max_peers_per_ip_per_bucket",
            self.max_peers_per_ip_per_bucket,
            1,
            usize::MAX,
        )?;
        range("max_peers_per_ip", self.max_peers_per_ip, 1, usize::MAX)?;
        range(
            "unverified_reply_factor",
            self.unverified_reply_factor,
            1,
            1000,
        )?;
        range("max_held_replies", self.max_held_replies, 1, 1 << 20)?;
        range(
            "max_verified_addresses",
            self.max_verified_addresses,
            2,
            1 << 24,
        )?;
        range("request_retries", self.request_retries, 0, 8)?;
        range("reply_allowance", self.reply_allowance, 0, 1 << 30)?;
        range("store_percent_per_ip", self.store_percent_per_ip, 1, 100)?;
        range("ipv6_prefix_len", self.ipv6_prefix_len, 16, 64)?;
        range(
            "max_lookup_peers_per_ip",
            self.max_lookup_peers_per_ip,
            1,
            usize::MAX,
        )?;
        range(
            "max_lookup_peers_per_subnet",
            self.max_lookup_peers_per_subnet,
            1,
            usize::MAX,
        )?;
        range("max_ids_per_ip", self.max_ids_per_ip, 0, 7)?;
        for (name, got) in [
            ("query_timeout", self.query_timeout),
            ("bucket_refresh_interval", self.bucket_refresh_interval),
            ("key_expiry", self.key_expiry),
            (
                "non_publisher_restore_interval",
                self.non_publisher_restore_interval,
            ),
            (
                "original_publisher_republish_interval",
                self.original_publisher_republish_interval,
            ),
            ("min_cache_ttl", self.min_cache_ttl),
        ] {
            if got < Duration::from_millis(1) || got > MAX_DURATION {
                return Err(ConfigError::Duration { name, got });
            }
        }
        if self.ping_oldest_after > MAX_DURATION {
            return Err(ConfigError::DurationTooLong {
                name: "ping_oldest_after",
                got: self.ping_oldest_after,
            });
        }
        // The envelope of the largest message carrying a value (set_cached) is under 400
        // bytes; JSON may grow a value by 4/3 (base64) or 6x (escaped control characters),
        // which the put path checks exactly, so here we only refuse what can never fit.
        if self.max_value_bytes + self.max_key_bytes + 400 > self.max_datagram_bytes {
            return Err(ConfigError::ValueTooLargeForDatagram {
                value: self.max_value_bytes,
                key: self.max_key_bytes,
                datagram: self.max_datagram_bytes,
            });
        }
        Ok(())
    }
}

/// Builds a [`Config`]; every setter is named after the setting it sets.
#[derive(Clone, Debug, Default)]
pub struct ConfigBuilder(Config);

impl ConfigBuilder {
    /// Validates and returns the config.
    pub fn build(self) -> Result<Config, ConfigError> {
        self.0.validate()?;
        Ok(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_python_defaults_and_valid() {
        let c = Config::builder().build().unwrap();
        assert_eq!((c.k(), c.alpha()), (20, 3));
        assert_eq!(c.query_timeout(), Duration::from_secs(2));
        assert_eq!(c.key_expiry(), Duration::from_secs(86410));
        assert_eq!(c.min_cache_ttl(), Duration::from_secs(600));
        assert_eq!(c.max_dispatch_tasks(), 64);
        assert!(c.verify_response_source());
    }

    #[test]
    fn bad_settings_are_typed_errors() {
        assert!(matches!(
            Config::builder().k(0).build(),
            Err(ConfigError::OutOfRange { name: "k", .. })
        ));
        assert_eq!(
            Config::builder().k(2).alpha(3).build(),
            Err(ConfigError::AlphaAboveK { alpha: 3, k: 2 })
        );
        assert!(matches!(
            Config::builder().query_timeout(Duration::ZERO).build(),
            Err(ConfigError::Duration {
                name: "query_timeout",
                ..
            })
        ));
        assert!(matches!(
            Config::builder().max_value_bytes(65_000).build(),
            Err(ConfigError::ValueTooLargeForDatagram { .. })
        ));
        let msg = Config::builder().k(0).build().unwrap_err().to_string();
        assert_eq!(msg, "k must be between 1 and 256, got 0");
        let msg = Config::builder().request_retries(9).build().unwrap_err();
        assert_eq!(
            msg.to_string(),
            "request_retries must be between 0 and 8, got 9"
        );
        let long = MAX_DURATION + Duration::from_secs(1);
        let msg = Config::builder()
            .ping_oldest_after(long)
            .build()
            .unwrap_err();
        assert_eq!(
            msg.to_string(),
            format!("ping_oldest_after must be at most 100 years, got {long:?}")
        );
        assert!(Config::builder()
            .ping_oldest_after(Duration::ZERO)
            .request_retries(0)
            .build()
            .is_ok());
    }

    #[test]
    fn a_config_converts_back_into_a_builder_whole() {
        let config = Config::builder()
            .codec(Codec::Bencode)
            .k(8)
            .alpha(2)
            .request_retries(0)
            .pad_requests(false)
            .max_verified_addresses(77)
            .build()
            .unwrap();
        let back = ConfigBuilder::from(config.clone());
        assert_eq!(back.clone().build().unwrap(), config);
        // Settings made afterwards apply on top.
        assert_eq!(back.k(9).build().unwrap().k(), 9);
    }
}
