//! Liveness and readiness, as /healthz and /readyz report them: alive while
//! the reconciler keeps beating (it wakes at least once a second), ready once
//! every source and the cgroup tree were listed and the bus written.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct Health {
    start: Instant,
    /// Milliseconds since `start` of the reconciler's last beat.
    beat_ms: AtomicU64,
    ready: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            start: Instant::now(),
            beat_ms: AtomicU64::new(0),
            ready: AtomicBool::new(false),
        }
    }
}

/// A reconciler silent this long is stuck (or dead).
const STALE: Duration = Duration::from_secs(10);

impl Health {
    pub fn beat(&self) {
        self.beat_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub fn is_alive(&self) -> bool {
        let last = Duration::from_millis(self.beat_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last) < STALE
    }

    /// Ready from now on; the first time, systemd is told too (`READY=1`
    /// on `$NOTIFY_SOCKET`, for `Type=notify`: units ordered after the
    /// feeder start on a written bus). Nothing without the socket.
    pub fn set_ready(&self) {
        if !self.ready.swap(true, Ordering::Relaxed)
            && let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready])
        {
            tracing::warn!(error = %e, "telling systemd the feeder is ready failed");
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}
