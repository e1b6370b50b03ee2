//! How the simulated network treats each datagram.

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
