//! How the simulated network treats each datagram.

use std::net::SocketAddr;
use std::time::Duration;

/// Delay and damage applied to every datagram sent in a [`crate::SimNet`].
///
/// Each datagram independently is lost with probability `loss`, else delivered after
/// `latency` plus a uniform `[0, jitter)` delay; a delivered datagram is delivered a second
/// time (with its own delay) with probability `duplicate`. Jitter reorders datagrams.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Link {
    /// Fixed one-way delay.
    pub latency: Duration,
    /// Extra one-way delay, uniform in `[0, jitter)`.
    pub jitter: Duration,
    /// Probability that a datagram is dropped, in `[0, 1]`.
    pub loss: f64,
    /// Probability that a delivered datagram arrives twice, in `[0, 1]`.
    pub duplicate: f64,
}

impl Default for Link {
    /// 20 ms plus up to 30 ms of jitter, no loss, no duplication: a continental WAN.
    fn default() -> Self {
        Link {
            latency: Duration::from_millis(20),
            jitter: Duration::from_millis(30),
            loss: 0.0,
            duplicate: 0.0,
        }
    }
}

impl Link {
    /// A lossless link with a fixed delay and no jitter.
    pub fn fixed(latency: Duration) -> Link {
        Link {
            latency,
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
        }
    }

    /// The same link with loss probability `p`.
    pub fn with_loss(self, p: f64) -> Link {
        Link { loss: p, ..self }
    }

    /// The same link with duplication probability `p`.
    pub fn with_duplicate(self, p: f64) -> Link {
        Link {
            duplicate: p,
            ..self
        }
    }
}

/// Round trips that differ from pair to pair: each pair of addresses has its own round
/// trip, drawn once from a lognormal distribution with median `median` and shape `sigma`
/// (truncated at four sigmas either side), fixed for the run and the same both ways.
///
/// Nothing is stored per pair: the round trip is a hash of the two addresses and the
/// network's seed, turned into a normal deviate (Box-Muller), so a million nodes cost
/// nothing more than ten. With `sigma` 0.6 the 99th percentile is 4 x the median and the
/// longest possible round trip 11 x the median, about what measured Internet round-trip
/// matrices show (a long tail of far or congested pairs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RttModel {
    /// Half the pairs have a shorter round trip, half a longer one.
    pub median: Duration,
    /// Standard deviation of the round trip's natural logarithm.
    pub sigma: f64,
}

impl RttModel {
    /// Lognormal round trips with median `median` and the default shape (sigma 0.6).
    pub fn lognormal(median: Duration) -> RttModel {
        RttModel { median, sigma: 0.6 }
    }

    /// The round trip between `a` and `b` (in either order) in a network seeded `seed`;
    /// at least 1 ms.
    pub fn rtt(&self, seed: u64, a: SocketAddr, b: SocketAddr) -> Duration {
        let (lo, hi) = if key(a) <= key(b) {
            (key(a), key(b))
        } else {
            (key(b), key(a))
        };
        let h = splitmix(splitmix(seed ^ 0x5851_f42d_4c95_7f2d) ^ lo);
        let h = splitmix(h ^ hi.rotate_left(32));
        // Two uniforms from the two halves of the hash; u1 in (0, 1].
        let u1 = ((h >> 32) as f64 + 1.0) / 4_294_967_296.0;
        let u2 = (h & 0xffff_ffff) as f64 / 4_294_967_296.0;
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        let factor = (self.sigma * z.clamp(-4.0, 4.0)).exp();
        self.median.mul_f64(factor).max(Duration::from_millis(1))
    }
}

impl RttModel {
    /// The shortest round trip the model gives any pair (four sigmas under the median,
    /// at least 1 ms).
    pub fn min_rtt(&self) -> Duration {
        let factor = (-4.0 * self.sigma.abs()).exp();
        self.median.mul_f64(factor).max(Duration::from_millis(1))
    }
}

/// An address as one number (IPv4 and port; an IPv6 address folded).
fn key(a: SocketAddr) -> u64 {
    let ip = match a.ip() {
        std::net::IpAddr::V4(v4) => u64::from(u32::from(v4)),
        std::net::IpAddr::V6(v6) => {
            let n = u128::from(v6);
            splitmix((n >> 64) as u64 ^ splitmix(n as u64))
        }
    };
    (ip << 16) ^ u64::from(a.port())
}

/// SplitMix64's finaliser: a cheap, well-mixed hash of a `u64`.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn addr(i: u32) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::from(0x0a00_0000 | i), 4000 + (i % 61) as u16))
    }

    #[test]
    fn round_trips_are_symmetric_fixed_and_centred_on_the_median() {
        let m = RttModel::lognormal(Duration::from_millis(80));
        let mut all = Vec::new();
        for i in 0..300 {
            for j in (i + 1)..300 {
                let r = m.rtt(7, addr(i), addr(j));
                assert_eq!(r, m.rtt(7, addr(j), addr(i)));
                assert_eq!(r, m.rtt(7, addr(i), addr(j)));
                all.push(r);
            }
        }
        all.sort_unstable();
        let at = |q: f64| all[((all.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
        // Median 80 ms; the 99th percentile about 4 x the median (exp(0.6 x 2.33) = 4.05).
        assert!((76.0..84.0).contains(&at(0.5)), "p50 {}", at(0.5));
        assert!((280.0..370.0).contains(&at(0.99)), "p99 {}", at(0.99));
        assert!(at(1.0) <= 80.0 * 11.03, "max {}", at(1.0));
        // Another seed, other round trips.
        assert_ne!(m.rtt(8, addr(1), addr(2)), m.rtt(7, addr(1), addr(2)));
    }
}
