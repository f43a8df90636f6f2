//! Medians over trials and their bootstrap confidence intervals.

pub use prism_bus::testing::median;

/// A median and its 95% percentile-bootstrap confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Estimate {
    pub median: f64,
    pub lo: f64,
    pub hi: f64,
    pub n: usize,
}

/// Resamples per interval: enough for stable 2.5/97.5 percentiles.
const RESAMPLES: usize = 2000;

/// The median of `v` with a 95% bootstrap interval: `v` resampled with
/// replacement, the median of each resample, their 2.5th and 97.5th
/// percentiles. Seeded, so a report is reproducible from its raw data.
/// With few trials the interval is coarse (it cannot be wider than the
/// values' range), which is what it should say.
pub fn bootstrap_median(v: &[f64], seed: u64) -> Estimate {
    let n = v.len();
    if n == 0 {
        return Estimate {
            median: f64::NAN,
            lo: f64::NAN,
            hi: f64::NAN,
            n,
        };
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut medians: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let sample: Vec<f64> = (0..n).map(|_| v[rng.usize(..n)]).collect();
            median(&sample)
        })
        .collect();
    medians.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| medians[((q * RESAMPLES as f64) as usize).min(RESAMPLES - 1)];
    Estimate {
        median: median(v),
        lo: at(0.025),
        hi: at(0.975),
        n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_odd_even_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn bootstrap_interval_brackets_the_median_within_the_range() {
        let v: Vec<f64> = (1..=21).map(f64::from).collect();
        let e = bootstrap_median(&v, 7);
        assert_eq!(e.median, 11.0);
        assert!(e.lo < 11.0 && e.hi > 11.0, "{e:?}");
        assert!(e.lo >= 1.0 && e.hi <= 21.0, "{e:?}");
        // a tight sample gives a tight interval
        let t = bootstrap_median(&[5.0, 5.0, 5.0, 5.1], 7);
        assert!(t.hi - t.lo <= 0.1 + 1e-9, "{t:?}");
        // reproducible
        assert_eq!(bootstrap_median(&v, 7), e);
    }
}
