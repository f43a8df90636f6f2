//! Wakeup latency samples and their summary.

use serde::{Deserialize, Serialize};

/// Percentiles of a set of latency samples, in microseconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub samples: usize,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Summary {
    /// Summarise samples given in nanoseconds (sorted in place).
    pub fn of(samples_ns: &mut [u64]) -> Summary {
        samples_ns.sort_unstable();
        let n = samples_ns.len();
        // nearest rank, in integers (0.999 * 1000 is not 999 in floating point)
        let pct = |per_mille: usize| {
            if n == 0 {
                return 0.0;
            }
            let rank = (per_mille * n).div_ceil(1000).max(1);
            samples_ns[rank.min(n) - 1] as f64 / 1000.0
        };
        let mean = if n == 0 {
            0.0
        } else {
            samples_ns.iter().sum::<u64>() as f64 / n as f64 / 1000.0
        };
        Summary {
            samples: n,
            p50_us: pct(500),
            p90_us: pct(900),
            p99_us: pct(990),
            p999_us: pct(999),
            max_us: samples_ns.last().map_or(0.0, |&m| m as f64 / 1000.0),
            mean_us: mean,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<u64> = (1..=1000).map(|i| i * 1000).collect();
        let s = Summary::of(&mut v);
        assert_eq!(s.samples, 1000);
        assert_eq!(s.p50_us, 500.0);
        assert_eq!(s.p99_us, 990.0);
        assert_eq!(s.p999_us, 999.0);
        assert_eq!(s.max_us, 1000.0);
        assert_eq!(Summary::of(&mut []).p99_us, 0.0);
    }
}
