//! `Builder::config(Config)` keeps every setting, in both adapters (issue 15, item 4).
//!
//! Until the fix, each adapter copied 22 of `Config`'s 31 fields into its builder by hand
//! and the other nine silently fell back to their defaults.

use std::time::Duration;

use kad_core::{Codec, Config};

/// A config in which every setting differs from its default (and is still valid).
fn every_field_changed() -> Config {
    let config = Config::builder()
        .codec(Codec::Bencode)
        .verify_response_source(false)
        .k(12)
        .alpha(4)
        .get_parallelism(12)
        .get_quorum(4)
        .query_timeout(Duration::from_millis(1500))
        .bucket_refresh_interval(Duration::from_secs(1800))
        .key_expiry(Duration::from_secs(7200))
        .non_publisher_restore_interval(Duration::from_secs(1200))
        .original_publisher_republish_interval(Duration::from_secs(40_000))
        .min_cache_ttl(Duration::from_secs(300))
        .max_dispatch_tasks(48)
        .failures_before_eviction(5)
        .replacement_cache_size(6)
        .max_records(5_000)
        .max_store_bytes(1 << 20)
        .max_key_bytes(512)
        .max_value_bytes(16 * 1024)
        .max_datagram_bytes(32_000)
        .max_pending_requests(1000)
        .max_queued_transmits(2000)
        .max_active_queries(100)
        .max_concurrent_republish(4)
        .max_peers_per_ip_per_bucket(3)
        .max_peers_per_ip(7)
        .ip_limits_exempt_loopback(false)
        .unverified_reply_factor(3)
        .max_held_replies(99)
        .max_verified_addresses(1234)
        .pad_requests(false)
        .ping_oldest_after(Duration::from_secs(60))
        .request_retries(1)
        .reply_allowance(10_000)
        .store_percent_per_ip(5)
        .ipv6_prefix_len(56)
        .max_lookup_peers_per_ip(3)
        .max_lookup_peers_per_subnet(7)
        .max_ids_per_ip(5)
        .bootstrap_fill(16)
        .client_mode(true)
        .build()
        .expect("a valid config");
    let d = Config::default();
    // Each setting really is changed, so a dropped one cannot hide behind its default.
    let changed = [
        config.codec() != d.codec(),
        config.verify_response_source() != d.verify_response_source(),
        config.k() != d.k(),
        config.alpha() != d.alpha(),
        config.get_parallelism() != d.get_parallelism(),
        config.get_quorum() != d.get_quorum(),
        config.query_timeout() != d.query_timeout(),
        config.bucket_refresh_interval() != d.bucket_refresh_interval(),
        config.key_expiry() != d.key_expiry(),
        config.non_publisher_restore_interval() != d.non_publisher_restore_interval(),
        config.original_publisher_republish_interval() != d.original_publisher_republish_interval(),
        config.min_cache_ttl() != d.min_cache_ttl(),
        config.max_dispatch_tasks() != d.max_dispatch_tasks(),
        config.failures_before_eviction() != d.failures_before_eviction(),
        config.replacement_cache_size() != d.replacement_cache_size(),
        config.max_records() != d.max_records(),
        config.max_store_bytes() != d.max_store_bytes(),
        config.max_key_bytes() != d.max_key_bytes(),
        config.max_value_bytes() != d.max_value_bytes(),
        config.max_datagram_bytes() != d.max_datagram_bytes(),
        config.max_pending_requests() != d.max_pending_requests(),
        config.max_queued_transmits() != d.max_queued_transmits(),
        config.max_active_queries() != d.max_active_queries(),
        config.max_concurrent_republish() != d.max_concurrent_republish(),
        config.max_peers_per_ip_per_bucket() != d.max_peers_per_ip_per_bucket(),
        config.max_peers_per_ip() != d.max_peers_per_ip(),
        config.ip_limits_exempt_loopback() != d.ip_limits_exempt_loopback(),
        config.unverified_reply_factor() != d.unverified_reply_factor(),
        config.max_held_replies() != d.max_held_replies(),
        config.max_verified_addresses() != d.max_verified_addresses(),
        config.pad_requests() != d.pad_requests(),
        config.ping_oldest_after() != d.ping_oldest_after(),
        config.request_retries() != d.request_retries(),
        config.reply_allowance() != d.reply_allowance(),
        config.store_percent_per_ip() != d.store_percent_per_ip(),
        config.ipv6_prefix_len() != d.ipv6_prefix_len(),
        config.max_lookup_peers_per_ip() != d.max_lookup_peers_per_ip(),
        config.max_lookup_peers_per_subnet() != d.max_lookup_peers_per_subnet(),
        config.max_ids_per_ip() != d.max_ids_per_ip(),
        config.bootstrap_fill() != d.bootstrap_fill(),
        config.client_mode() != d.client_mode(),
    ];
    let unchanged: Vec<usize> = (0..changed.len()).filter(|&i| !changed[i]).collect();
    assert!(
        unchanged.is_empty(),
        "settings left at their default: {unchanged:?}"
    );
    config
}

#[test]
fn kad_tokio_builder_keeps_every_setting() {
    let config = every_field_changed();
    let built = kad_tokio::KademliaServer::builder()
        .config(config.clone())
        .build_config()
        .unwrap();
    assert_eq!(built, config);
}

#[test]
fn kad_smol_builder_keeps_every_setting() {
    let config = every_field_changed();
    let built = kad_smol::KademliaServer::builder()
        .config(config.clone())
        .build_config()
        .unwrap();
    assert_eq!(built, config);
}
