//! The statistics tests and benchmarks share: medians over trials, their
//! bootstrap confidence intervals, paired with/without overhead trials.

/// An overhead benchmark's trials: `measure` without, then with, the
/// program `start` launches (killed after each trial), `pairs` times,
/// alternating so drift hits both sides; `after_first` runs once, after the
/// first trial with it (to read the kernel's per-program costs). Returns the
/// (without, with) figures of each pair.
pub fn paired_trials(
    pairs: usize,
    mut measure: impl FnMut() -> f64,
    mut start: impl FnMut() -> std::process::Child,
    mut after_first: impl FnMut(),
) -> Vec<(f64, f64)> {
    (0..pairs)
        .map(|pair| {
            let without = measure();
            let mut child = start();
            let with = measure();
            if pair == 0 {
                after_first();
            }
            let _ = child.kill();
            let _ = child.wait();
            (without, with)
        })
        .collect()
}

/// The median of `v` (the mean of the middle two for an even count); NaN if empty.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => s[n / 2],
        _ => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Print an overhead benchmark's pairs, then the medians and the
/// difference: `what` names one measured operation (e.g. "exec of
/// /bin/true"), `with` the program measured, `per` how many operations a
/// trial made.
pub fn report_pairs(what: &str, with: &str, per: u32, pairs: Vec<(f64, f64)>) {
    for (pair, (a, b)) in pairs.iter().enumerate() {
        println!("pair {pair}: without {a:.1} us, with {b:.1} us per {what}");
    }
    let n = pairs.len();
    let (without, with_it): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
    let (a, b) = (median(&without), median(&with_it));
    println!(
        "{what}: median without {a:.1} us, with {with} {b:.1} us: {:+.1} us each ({:+.1}%), {n} pairs of {per}",
        b - a,
        (b / a - 1.0) * 100.0
    );
}

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
