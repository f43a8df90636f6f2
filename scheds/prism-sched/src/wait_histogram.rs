//! Wait-time histogram with four buckets per power of two: fixed size, no
//! allocation when recording, so the user-space scheduler can keep one on its
//! hot path and a BPF program can keep the same layout in a plain array
//! (scx_prism_bpfland's `wait_bucket()` computes the same index).

/// Buckets in a histogram: 4 per power of two of a u64.
pub const BUCKETS: usize = 4 * 64;

/// Values are nanoseconds.
#[derive(Clone)]
pub struct WaitHistogram {
    buckets: [u64; BUCKETS],
    count: u64,
}

impl Default for WaitHistogram {
    fn default() -> Self {
        WaitHistogram {
            buckets: [0; BUCKETS],
            count: 0,
        }
    }
}

impl WaitHistogram {
    /// The bucket of `ns`: values below 4 have their own; above, the top two
    /// bits after the leading one pick one of four sub-buckets.
    pub fn bucket(ns: u64) -> usize {
        if ns < 4 {
            return ns as usize;
        }
        let log = 63 - ns.leading_zeros() as usize;
        let frac = ((ns >> (log - 2)) & 3) as usize;
        log * 4 + frac
    }

    /// Upper bound of a bucket: what a percentile in it is reported as.
    pub fn bucket_top(i: usize) -> u64 {
        if i < 4 {
            return i as u64;
        }
        let (log, frac) = (i / 4, (i % 4) as u128);
        let top = (1u128 << log) + ((frac + 1) << (log - 2)) - 1;
        top.min(u64::MAX as u128) as u64
    }

    /// A histogram from bucket counts kept elsewhere (a BPF array).
    pub fn from_buckets(buckets: &[u64; BUCKETS]) -> Self {
        WaitHistogram {
            buckets: *buckets,
            count: buckets.iter().sum(),
        }
    }

    /// What was recorded since `earlier` (a snapshot of the same counters).
    pub fn since(&self, earlier: &Self) -> Self {
        let mut buckets = [0; BUCKETS];
        for (d, (now, then)) in buckets
            .iter_mut()
            .zip(self.buckets.iter().zip(&earlier.buckets))
        {
            *d = now.saturating_sub(*then);
        }
        Self::from_buckets(&buckets)
    }

    /// Add another histogram's counts to this one.
    pub fn merge(&mut self, other: &Self) {
        for (b, o) in self.buckets.iter_mut().zip(&other.buckets) {
            *b += o;
        }
        self.count += other.count;
    }

    pub fn record(&mut self, ns: u64) {
        self.buckets[Self::bucket(ns).min(BUCKETS - 1)] += 1;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The p-th percentile (0..=100), in microseconds; 0 when empty.
    pub fn percentile_us(&self, p: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::bucket_top(i) as f64 / 1000.0;
            }
        }
        Self::bucket_top(BUCKETS - 1) as f64 / 1000.0
    }
}

/// One interval's waits of the three classes both schedulers report
/// (unlabelled tasks count as normal), from per-class snapshots indexed by
/// the bus's class value.
pub struct ClassWaits {
    pub critical: WaitHistogram,
    pub normal: WaitHistogram,
    pub batch: WaitHistogram,
}

impl ClassWaits {
    pub fn between(cur: &[WaitHistogram], prev: &[WaitHistogram]) -> Self {
        use prism_bus::LatencyClass::{Batch, Critical, Normal, Unset};
        let since = |c: prism_bus::LatencyClass| cur[c as usize].since(&prev[c as usize]);
        let mut normal = since(Normal);
        normal.merge(&since(Unset));
        ClassWaits {
            critical: since(Critical),
            normal,
            batch: since(Batch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_land_in_the_right_bucket() {
        let mut h = WaitHistogram::default();
        for us in 1..=100u64 {
            h.record(us * 1000);
        }
        let p50 = h.percentile_us(50.0);
        let p99 = h.percentile_us(99.0);
        assert!((50.0..=62.5).contains(&p50), "{p50}");
        assert!((99.0..=123.0).contains(&p99), "{p99}");
        assert_eq!(WaitHistogram::default().percentile_us(99.0), 0.0);
    }

    #[test]
    fn buckets_are_monotonic() {
        let mut last = 0;
        for ns in [5u64, 7, 8, 100, 1000, 1 << 20, 1 << 40, u64::MAX] {
            let b = WaitHistogram::bucket(ns);
            assert!(b >= last && b < BUCKETS);
            assert!(WaitHistogram::bucket_top(b) >= ns, "{ns}");
            last = b;
        }
    }

    #[test]
    fn since_subtracts_a_snapshot() {
        let mut h = WaitHistogram::default();
        h.record(1000);
        let snap = h.clone();
        h.record(1_000_000);
        let d = h.since(&snap);
        assert_eq!(d.count(), 1);
        assert!(d.percentile_us(50.0) >= 1000.0);
    }
}
