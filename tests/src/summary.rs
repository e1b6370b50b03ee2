//! Summaries of per-lookup numbers (rounds, requests) for reports and assertions.

/// Mean, percentiles and maximum of a set of counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    sorted: Vec<u64>,
}

impl Summary {
    /// Summarises `values`.
    pub fn new(values: impl IntoIterator<Item = u64>) -> Summary {
        let mut sorted: Vec<u64> = values.into_iter().collect();
        sorted.sort_unstable();
        Summary { sorted }
    }

    /// Number of values.
    pub fn count(&self) -> usize {
        self.sorted.len()
    }

    /// The mean, 0 for no values.
    pub fn mean(&self) -> f64 {
        if self.sorted.is_empty() {
            return 0.0;
        }
        self.sorted.iter().sum::<u64>() as f64 / self.sorted.len() as f64
    }

    /// The `p`-th percentile (nearest rank, `p` in 0..=100), 0 for no values.
    pub fn percentile(&self, p: u32) -> u64 {
        if self.sorted.is_empty() {
            return 0;
        }
        let n = self.sorted.len();
        // Nearest rank: the smallest value with at least p% of values at or below it.
        let rank = (u64::from(p.min(100)) * n as u64).div_ceil(100).max(1) as usize;
        self.sorted[rank.min(n) - 1]
    }

    /// The largest value, 0 for no values.
    pub fn max(&self) -> u64 {
        self.sorted.last().copied().unwrap_or(0)
    }

    /// How many values are below `limit`.
    pub fn count_below(&self, limit: u64) -> usize {
        self.sorted.partition_point(|&v| v < limit)
    }

    /// The smallest value, 0 for no values.
    pub fn min(&self) -> u64 {
        self.sorted.first().copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s = Summary::new(1..=10);
        assert_eq!(s.percentile(50), 5);
        assert_eq!(s.percentile(90), 9);
        assert_eq!(s.percentile(100), 10);
        assert_eq!(s.percentile(0), 1);
        assert_eq!(s.max(), 10);
        assert!((s.mean() - 5.5).abs() < 1e-9);
        assert_eq!(Summary::new([]).percentile(90), 0);
        assert_eq!(Summary::new([7]).percentile(90), 7);
    }
}
