//! The policy user space decides: the share guard between the classes.
//! Pure: no BPF, no clock, no I/O, so it is tested on its own.
//!
//! BPF runs the classes as strict tiers (critical, then normal and
//! unlabelled, then batch). The guard keeps that from starving anyone: over
//! a decaying window of the CPU time each class used, normal+batch are owed
//! a minimum share when they are runnable (and batch a smaller one of
//! that). While a share is owed, the policy it publishes turns the order
//! around (lower classes first) and stops critical wakeups from preempting.

use prism_bus::LatencyClass;

/// Per-class arrays are indexed by the bus's class value (unset is scheduled as normal).
pub const UNSET: usize = LatencyClass::Unset as usize;
pub const CRITICAL: usize = LatencyClass::Critical as usize;
pub const NORMAL: usize = LatencyClass::Normal as usize;
pub const BATCH: usize = LatencyClass::Batch as usize;
pub const NR_CLASSES: usize = LatencyClass::ALL.len();

/// What the guard tells BPF.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassOrder {
    /// Normal+batch got less than their minimum share lately: they go first,
    /// and critical wakeups do not preempt.
    pub lower_classes_starving: bool,
    /// Batch got less than its share of normal+batch time: it goes before normal.
    pub batch_owed: bool,
}

#[derive(Debug, Clone)]
pub struct ShareGuard {
    /// Minimum share of CPU time for normal+batch, in percent.
    min_share_pct: u64,
    /// Minimum share of batch within the normal+batch time, in percent.
    batch_min_share_pct: u64,
    /// Per class: decayed CPU time (the window).
    window: [f64; NR_CLASSES],
    /// BPF's cumulative per-class CPU time at the last update.
    last_runtime: [u64; NR_CLASSES],
}

impl ShareGuard {
    pub fn new(min_share_pct: u64, batch_min_share_pct: u64) -> Self {
        ShareGuard {
            min_share_pct,
            batch_min_share_pct,
            window: [0.0; NR_CLASSES],
            last_runtime: [0; NR_CLASSES],
        }
    }

    /// Fold BPF's cumulative per-class CPU time into the window. `decay` in
    /// (0, 1]: the weight kept of the past (called periodically).
    pub fn account(&mut self, cumulative_ns: [u64; NR_CLASSES], decay: f64) {
        for ((window, last), now) in self
            .window
            .iter_mut()
            .zip(&mut self.last_runtime)
            .zip(cumulative_ns)
        {
            *window = *window * decay + now.saturating_sub(*last) as f64;
            *last = now;
        }
    }

    /// Share of recent CPU time used by normal+batch (unset counts as normal).
    pub fn non_critical_share(&self) -> f64 {
        let total: f64 = self.window.iter().sum();
        if total <= 0.0 {
            return 1.0;
        }
        1.0 - self.window[CRITICAL] / total
    }

    fn batch_share_of_non_critical(&self) -> f64 {
        let nc = self.window[UNSET] + self.window[NORMAL] + self.window[BATCH];
        if nc <= 0.0 {
            return 1.0;
        }
        self.window[BATCH] / nc
    }

    /// The order to publish. BPF skips empty queues whatever the order, so
    /// a lower class with nothing runnable never holds critical work back.
    pub fn order(&self) -> ClassOrder {
        ClassOrder {
            lower_classes_starving: self.non_critical_share() * 100.0 < self.min_share_pct as f64,
            batch_owed: self.batch_share_of_non_critical() * 100.0
                < self.batch_min_share_pct as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime(critical: u64, normal: u64, batch: u64) -> [u64; NR_CLASSES] {
        let mut r = [0; NR_CLASSES];
        r[CRITICAL] = critical;
        r[NORMAL] = normal;
        r[BATCH] = batch;
        r
    }

    #[test]
    fn critical_goes_first_while_the_others_keep_their_share() {
        let mut g = ShareGuard::new(25, 10);
        g.account(runtime(700, 250, 50), 0.9);
        assert_eq!(g.order(), ClassOrder::default());
    }

    #[test]
    fn normal_work_below_its_minimum_share_goes_first() {
        let mut g = ShareGuard::new(25, 10);
        g.account(runtime(900, 80, 20), 0.9);
        assert!(g.order().lower_classes_starving);
        // Its share restored over the next intervals, critical goes first again.
        for i in 1..=20u64 {
            g.account(runtime(900 + i * 10, 80 + i * 90, 20 + i * 10), 0.9);
        }
        assert!(!g.order().lower_classes_starving, "{:?}", g.window);
    }

    #[test]
    fn batch_is_owed_a_share_of_non_critical_time() {
        let mut g = ShareGuard::new(25, 10);
        g.account(runtime(0, 970, 30), 0.9);
        assert!(g.order().batch_owed);
        g.account(runtime(0, 970, 300), 0.9);
        assert!(!g.order().batch_owed);
    }

    #[test]
    fn the_window_forgets_the_past() {
        let mut g = ShareGuard::new(25, 10);
        g.account(runtime(1_000_000, 0, 0), 0.5);
        assert!(g.order().lower_classes_starving);
        // Only normal work from now on: the old critical time decays away.
        for i in 1..=30u64 {
            g.account(runtime(1_000_000, i * 100_000, 0), 0.5);
        }
        assert!(g.non_critical_share() > 0.99, "{}", g.non_critical_share());
    }

    #[test]
    fn an_idle_machine_owes_nothing() {
        let g = ShareGuard::new(25, 10);
        assert_eq!(g.non_critical_share(), 1.0);
        assert_eq!(g.order(), ClassOrder::default());
    }
}
