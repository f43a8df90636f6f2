//! scx_prism's metrics: what `--stats`/`--monitor` print and what scx_stats
//! serves on /var/run/scx/root/stats.

use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use scx_stats::prelude::*;
use scx_stats_derive::{Stats, stat_doc};
use serde::{Deserialize, Serialize};

use prism_sched::WaitHistogram;

use crate::policy::NR_CLASSES;

#[stat_doc]
#[derive(Clone, Debug, Default, Serialize, Deserialize, Stats)]
#[stat(top)]
pub struct Metrics {
    #[stat(desc = "Online CPUs")]
    pub nr_cpus: u64,
    #[stat(desc = "Tasks running")]
    pub nr_running: u64,
    #[stat(desc = "Tasks waiting in user space for a decision")]
    pub nr_scheduled: u64,
    #[stat(desc = "Is the Prism bus attached (1) or not yet pinned (0)")]
    pub bus_attached: u64,
    #[stat(desc = "Tasks queued to user space, critical class")]
    pub critical_queued: u64,
    #[stat(desc = "Tasks queued to user space, normal class (and unlabelled)")]
    pub normal_queued: u64,
    #[stat(desc = "Tasks queued to user space, batch class")]
    pub batch_queued: u64,
    #[stat(desc = "Decisions sent to BPF, critical class")]
    pub critical_dispatched: u64,
    #[stat(desc = "Decisions sent to BPF, normal class")]
    pub normal_dispatched: u64,
    #[stat(desc = "Decisions sent to BPF, batch class")]
    pub batch_dispatched: u64,
    #[stat(desc = "Critical tasks placed by BPF at once (idle CPU or preemption)")]
    pub critical_direct: u64,
    #[stat(desc = "All tasks dispatched by BPF without user space")]
    pub kernel_dispatches: u64,
    #[stat(desc = "Decisions of user space carried out by BPF")]
    pub user_dispatches: u64,
    #[stat(desc = "Wait to run p50 (us), critical")]
    pub critical_wait_p50_us: f64,
    #[stat(desc = "Wait to run p99 (us), critical")]
    pub critical_wait_p99_us: f64,
    #[stat(desc = "Wait to run p50 (us), normal")]
    pub normal_wait_p50_us: f64,
    #[stat(desc = "Wait to run p99 (us), normal")]
    pub normal_wait_p99_us: f64,
    #[stat(desc = "Wait to run p50 (us), batch")]
    pub batch_wait_p50_us: f64,
    #[stat(desc = "Wait to run p99 (us), batch")]
    pub batch_wait_p99_us: f64,
    #[stat(desc = "CPU share of normal+batch over the guard window (%)")]
    pub non_critical_share_pct: f64,
    #[stat(desc = "Ring buffer full: tasks sent to the shared queue instead")]
    pub congested: u64,
    #[stat(desc = "Stale decisions cancelled")]
    pub cancelled: u64,
    #[stat(desc = "Decisions bounced to another queue (affinity changed)")]
    pub bounced: u64,
    #[stat(
        desc = "Waking tasks that took a busy CPU from lower-class or longer-running work, in BPF"
    )]
    pub direct_preempts: u64,
    #[stat(
        desc = "Waking tasks queued on a busy CPU whose task had not run its minimum: preempted when it has"
    )]
    pub deferred_preempts: u64,
    #[stat(desc = "Preempted tasks resumed from BPF with the rest of their slice")]
    pub resumed: u64,
    #[stat(desc = "Waking tasks queued on their short-burst waker's CPU, to run when it sleeps")]
    pub affine: u64,
    #[stat(desc = "Bus resolutions answered by the per-task cache")]
    pub bus_cached: u64,
    #[stat(desc = "Bus resolutions that found the task's own cgroup")]
    pub bus_hit: u64,
    #[stat(desc = "Bus resolutions that fell back to an ancestor cgroup")]
    pub bus_fallback: u64,
    #[stat(desc = "Bus resolutions that found nothing")]
    pub bus_miss: u64,
}

/// Per-class numbers the loop keeps between two stats reads.
#[derive(Default, Clone)]
pub struct ClassCounters {
    pub queued: [u64; NR_CLASSES],
    pub dispatched: [u64; NR_CLASSES],
    pub wait: [WaitHistogram; NR_CLASSES],
}

impl Metrics {
    pub fn format<W: Write>(&self, w: &mut W) -> Result<()> {
        writeln!(
            w,
            "[scx_prism] run {}/{} held {} bus {} | queued c/n/b {}/{}/{} | sent c/n/b {}/{}/{} | user {} kernel {} (crit {})",
            self.nr_running,
            self.nr_cpus,
            self.nr_scheduled,
            if self.bus_attached == 1 { "on" } else { "off" },
            self.critical_queued,
            self.normal_queued,
            self.batch_queued,
            self.critical_dispatched,
            self.normal_dispatched,
            self.batch_dispatched,
            self.user_dispatches,
            self.kernel_dispatches,
            self.critical_direct,
        )?;
        writeln!(
            w,
            "            wait p50/p99 us: crit {:.0}/{:.0} norm {:.0}/{:.0} batch {:.0}/{:.0} | non-crit share {:.0}% | cong {} cancel {} bounce {} preempt {} deferred {} resumed {} affine {} | bus cache {} hit {} anc {} miss {}",
            self.critical_wait_p50_us,
            self.critical_wait_p99_us,
            self.normal_wait_p50_us,
            self.normal_wait_p99_us,
            self.batch_wait_p50_us,
            self.batch_wait_p99_us,
            self.non_critical_share_pct,
            self.congested,
            self.cancelled,
            self.bounced,
            self.direct_preempts,
            self.deferred_preempts,
            self.resumed,
            self.affine,
            self.bus_cached,
            self.bus_hit,
            self.bus_fallback,
            self.bus_miss,
        )?;
        Ok(())
    }

    /// The counters as increments since `prev` (gauges and percentiles as they are).
    pub fn delta(&self, prev: &Self) -> Self {
        Self {
            critical_direct: self.critical_direct - prev.critical_direct,
            kernel_dispatches: self.kernel_dispatches - prev.kernel_dispatches,
            user_dispatches: self.user_dispatches - prev.user_dispatches,
            congested: self.congested - prev.congested,
            cancelled: self.cancelled - prev.cancelled,
            bounced: self.bounced - prev.bounced,
            direct_preempts: self.direct_preempts - prev.direct_preempts,
            deferred_preempts: self.deferred_preempts - prev.deferred_preempts,
            resumed: self.resumed - prev.resumed,
            affine: self.affine - prev.affine,
            bus_cached: self.bus_cached - prev.bus_cached,
            bus_hit: self.bus_hit - prev.bus_hit,
            bus_fallback: self.bus_fallback - prev.bus_fallback,
            bus_miss: self.bus_miss - prev.bus_miss,
            ..self.clone()
        }
    }
}

pub fn server_data() -> StatsServerData<(), Metrics> {
    let open: Box<dyn StatsOpener<(), Metrics>> = Box::new(move |(req_ch, res_ch)| {
        req_ch.send(())?;
        let mut prev = res_ch.recv()?;
        let read: Box<dyn StatsReader<(), Metrics>> = Box::new(move |_args, (req_ch, res_ch)| {
            req_ch.send(())?;
            let cur = res_ch.recv()?;
            let delta = cur.delta(&prev);
            prev = cur;
            delta.to_json()
        });
        Ok(read)
    });
    StatsServerData::new()
        .add_meta(Metrics::meta())
        .add_ops("top", StatsOps { open, close: None })
}

pub fn monitor(
    interval: Duration,
    shutdown: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Result<()> {
    scx_utils::monitor_stats::<Metrics>(
        &[],
        interval,
        || shutdown.load(std::sync::atomic::Ordering::Relaxed),
        |m| m.format(&mut std::io::stdout()),
    )
}
