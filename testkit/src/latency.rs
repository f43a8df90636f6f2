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
    /// The distribution's shape: the latency at each of [`CDF_PER_MILLE`]
    /// (empty from a probe that predates it).
    #[serde(default)]
    pub cdf_us: Vec<f64>,
}

/// Where the summary samples the distribution, in per mille: evenly through
/// the body, densely in the tail, where schedulers differ.
pub const CDF_PER_MILLE: [usize; 17] = [
    10, 50, 100, 200, 300, 400, 500, 600, 700, 800, 900, 950, 980, 990, 995, 998, 999,
];

/// The figure name of the latency at `per_mille` of the distribution.
pub fn cdf_metric(per_mille: usize) -> String {
    format!("cdf_{per_mille}_us")
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
            cdf_us: CDF_PER_MILLE.iter().map(|&pm| pct(pm)).collect(),
        }
    }
}

/// `run(i)` for each of `n` probes, `rounds` times, in turn, each round
/// starting with the next probe (none always runs first): each probe's
/// results, one per round.
pub fn in_turn<T>(n: usize, rounds: usize, mut run: impl FnMut(usize) -> T) -> Vec<Vec<T>> {
    let mut results: Vec<Vec<T>> = (0..n).map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for i in (0..n).map(|k| (round + k) % n) {
            results[i].push(run(i));
        }
    }
    results
}

/// The median over `rounds` of each round's p50 and of its p99 (us): probes
/// run in turn, so a noisy stretch of the lab moves one round, not the figure.
pub fn median_p50_p99(rounds: &[Summary]) -> (f64, f64) {
    let of =
        |f: fn(&Summary) -> f64| crate::stats::median(&rounds.iter().map(f).collect::<Vec<_>>());
    (of(|r| r.p50_us), of(|r| r.p99_us))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_turn_rotates_the_first_probe_and_keeps_each_probes_rounds() {
        let mut order = Vec::new();
        let r = in_turn(3, 3, |i| {
            order.push(i);
            i * 10 + order.len()
        });
        assert_eq!(order, [0, 1, 2, 1, 2, 0, 2, 0, 1]);
        assert_eq!(r, [vec![1, 6, 8], vec![12, 14, 19], vec![23, 25, 27]]);
    }

    #[test]
    fn medians_over_rounds_ignore_one_noisy_round() {
        let round = |p50_us, p99_us| Summary {
            p50_us,
            p99_us,
            ..Summary::of(&mut [1])
        };
        let rounds = [
            round(200.0, 900.0),
            round(560.0, 4000.0),
            round(240.0, 700.0),
        ];
        assert_eq!(median_p50_p99(&rounds), (240.0, 900.0));
        assert!(median_p50_p99(&[]).0.is_nan());
    }

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<u64> = (1..=1000).map(|i| i * 1000).collect();
        let s = Summary::of(&mut v);
        assert_eq!(s.samples, 1000);
        assert_eq!(s.p50_us, 500.0);
        assert_eq!(s.p99_us, 990.0);
        assert_eq!(s.p999_us, 999.0);
        assert_eq!(s.max_us, 1000.0);
        assert_eq!(s.cdf_us.len(), CDF_PER_MILLE.len());
        assert_eq!(s.cdf_us[0], 10.0);
        assert_eq!(s.cdf_us[6], s.p50_us);
        assert_eq!(*s.cdf_us.last().unwrap(), s.p999_us);
        assert!(s.cdf_us.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(Summary::of(&mut []).p99_us, 0.0);
    }
}
