//! scx_prism's metrics: what `--stats`/`--monitor` print and what scx_stats
//! serves on /var/run/scx/root/stats. Counters are per interval.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Result;
use prism_sched::ClassWaits;
use scx_stats::prelude::*;
use scx_stats_derive::{Stats, stat_doc};
use serde::{Deserialize, Serialize};

use crate::bpf::BpfCounters;
use crate::share_guard::{BATCH, CRITICAL, ClassOrder, NORMAL, UNSET};

#[stat_doc]
#[derive(Clone, Debug, Default, Serialize, Deserialize, Stats)]
#[stat(top)]
pub struct Metrics {
    #[stat(desc = "The running build (version and build id)")]
    pub build_info: String,
    #[stat(desc = "Online CPUs")]
    pub nr_cpus: u64,
    #[stat(desc = "Tasks running")]
    pub nr_running: u64,
    #[stat(desc = "Is the Prism bus attached (1) or not yet pinned (0)")]
    pub bus_attached: u64,
    #[stat(desc = "Total weight of the runnable tasks (100 per nice-0 task)")]
    pub runnable_weight: i64,
    #[stat(desc = "Tasks put on an idle CPU at once")]
    pub direct: u64,
    #[stat(desc = "Tasks that went through a class queue")]
    pub queued: u64,
    #[stat(desc = "Critical tasks placed at once (idle CPU or preemption)")]
    pub critical_direct: u64,
    #[stat(desc = "Waking tasks that took a busy CPU from lower-class or longer-running work")]
    pub direct_preempts: u64,
    #[stat(
        desc = "Waking tasks queued on a busy CPU whose task had not run its minimum: preempted when it has"
    )]
    pub deferred_preempts: u64,
    #[stat(
        desc = "Critical waking tasks queued on their short-burst critical waker's CPU, to run when it sleeps"
    )]
    pub affine: u64,
    #[stat(
        desc = "Tasks run next because they had waited 1 s (the bound every queued task keeps)"
    )]
    pub rescued: u64,
    #[stat(
        desc = "Tasks preempted inside an RCU read-side section, queued for a short stint soon"
    )]
    pub rcu_readers: u64,
    #[stat(desc = "Wait to run p50 (us), critical")]
    pub critical_wait_p50_us: f64,
    #[stat(desc = "Wait to run p99 (us), critical")]
    pub critical_wait_p99_us: f64,
    #[stat(desc = "Wait to run p50 (us), normal and unlabelled")]
    pub normal_wait_p50_us: f64,
    #[stat(desc = "Wait to run p99 (us), normal and unlabelled")]
    pub normal_wait_p99_us: f64,
    #[stat(desc = "Wait to run p50 (us), batch")]
    pub batch_wait_p50_us: f64,
    #[stat(desc = "Wait to run p99 (us), batch")]
    pub batch_wait_p99_us: f64,
    #[stat(desc = "CPU time of critical tasks (ms)")]
    pub critical_cpu_ms: u64,
    #[stat(desc = "CPU time of normal and unlabelled tasks (ms)")]
    pub normal_cpu_ms: u64,
    #[stat(desc = "CPU time of batch tasks (ms)")]
    pub batch_cpu_ms: u64,
    #[stat(desc = "CPU share of normal+batch over the guard window (%)")]
    pub non_critical_share_pct: f64,
    #[stat(desc = "Normal+batch are below their minimum share: they go first (1) or not (0)")]
    pub lower_classes_starving: u64,
    #[stat(desc = "The policy loop's CPU time per 1,000 scheduling events (us)")]
    pub loop_us_per_1k_events: f64,
    #[stat(desc = "Bus resolutions answered by the per-task cache")]
    pub bus_cached: u64,
    #[stat(desc = "Bus resolutions that found the task's own cgroup")]
    pub bus_hit: u64,
    #[stat(desc = "Bus resolutions that fell back to an ancestor cgroup")]
    pub bus_fallback: u64,
    #[stat(desc = "Bus resolutions that found nothing")]
    pub bus_miss: u64,
    #[stat(desc = "Bus resolutions of workloads without the sched facet (no class, no weight)")]
    pub bus_no_sched_facet: u64,
    #[stat(desc = "cgroups with a cpu.max limit")]
    pub limited_cgroups: u64,
    #[stat(desc = "Times limited cgroups ran out of budget")]
    pub throttles: u64,
    #[stat(desc = "Time limited cgroups spent out of budget (ms, summed)")]
    pub throttled_ms: u64,
    #[stat(desc = "The cgroup throttled longest in the interval (cgroup id, 0: none)")]
    pub most_throttled_cgroup: u64,
    #[stat(desc = "Its times out of budget")]
    pub most_throttled_times: u64,
    #[stat(desc = "Its time out of budget (ms)")]
    pub most_throttled_ms: u64,
}

/// What the policy loop adds to BPF's counters for one interval.
pub struct LoopState {
    pub bus_attached: bool,
    pub non_critical_share: f64,
    pub order: ClassOrder,
    /// The loop's own CPU time in the interval.
    pub loop_cpu_ns: u64,
}

impl Metrics {
    /// The metrics of the interval between two snapshots of the counters.
    pub fn between(prev: &BpfCounters, cur: &BpfCounters, l: &LoopState) -> Metrics {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        let wait = ClassWaits::between(&cur.wait, &prev.wait);
        let throttling = cur.throttling.since(&prev.throttling);
        let cpu_ms = |c: usize| d(cur.class_runtime_ns[c], prev.class_runtime_ns[c]) / 1_000_000;
        let direct = d(cur.direct_dispatches, prev.direct_dispatches);
        let queued = d(cur.queued_dispatches, prev.queued_dispatches);
        let preempts = d(cur.direct_preempts, prev.direct_preempts);
        let deferred = d(cur.deferred_preempts, prev.deferred_preempts);
        let affine = d(cur.affine, prev.affine);
        let events = direct + queued + preempts + deferred + affine;
        Metrics {
            build_info: scx_utils::build_id::full_version(env!("CARGO_PKG_VERSION")),
            nr_cpus: cur.nr_online_cpus,
            nr_running: cur.nr_running,
            bus_attached: u64::from(l.bus_attached),
            runnable_weight: cur.runnable_weight,
            direct,
            queued,
            critical_direct: d(cur.direct_critical, prev.direct_critical),
            direct_preempts: preempts,
            deferred_preempts: deferred,
            affine,
            rescued: d(cur.rescued, prev.rescued),
            rcu_readers: d(cur.rcu_readers, prev.rcu_readers),
            critical_wait_p50_us: wait.critical.percentile_us(50.0),
            critical_wait_p99_us: wait.critical.percentile_us(99.0),
            normal_wait_p50_us: wait.normal.percentile_us(50.0),
            normal_wait_p99_us: wait.normal.percentile_us(99.0),
            batch_wait_p50_us: wait.batch.percentile_us(50.0),
            batch_wait_p99_us: wait.batch.percentile_us(99.0),
            critical_cpu_ms: cpu_ms(CRITICAL),
            normal_cpu_ms: cpu_ms(NORMAL) + cpu_ms(UNSET),
            batch_cpu_ms: cpu_ms(BATCH),
            non_critical_share_pct: l.non_critical_share * 100.0,
            lower_classes_starving: u64::from(l.order.lower_classes_starving),
            loop_us_per_1k_events: l.loop_cpu_ns as f64 / events.max(1) as f64,
            bus_cached: d(cur.bus_cached, prev.bus_cached),
            bus_hit: d(cur.bus_own, prev.bus_own),
            bus_fallback: d(cur.bus_ancestor, prev.bus_ancestor),
            bus_miss: d(cur.bus_miss, prev.bus_miss),
            bus_no_sched_facet: d(cur.bus_no_sched_facet, prev.bus_no_sched_facet),
            limited_cgroups: throttling.limited as u64,
            throttles: throttling.throttles,
            throttled_ms: throttling.throttled_ns / 1_000_000,
            most_throttled_cgroup: throttling.most.map_or(0, |(id, _)| id),
            most_throttled_times: throttling.most.map_or(0, |(_, m)| m.nr_throttled),
            most_throttled_ms: throttling
                .most
                .map_or(0, |(_, m)| m.throttled_ns / 1_000_000),
        }
    }

    pub fn format<W: Write>(&self, w: &mut W) -> Result<()> {
        writeln!(
            w,
            "[scx_prism] run {}/{} bus {} weight {} | cpu ms c/n/b {}/{}/{} non-crit {:.0}%{} | direct {} (crit {}) queued {} preempt {} deferred {} affine {} rescued {} rcu {}",
            self.nr_running,
            self.nr_cpus,
            if self.bus_attached == 1 { "on" } else { "off" },
            self.runnable_weight,
            self.critical_cpu_ms,
            self.normal_cpu_ms,
            self.batch_cpu_ms,
            self.non_critical_share_pct,
            if self.lower_classes_starving == 1 {
                " (owed)"
            } else {
                ""
            },
            self.direct,
            self.critical_direct,
            self.queued,
            self.direct_preempts,
            self.deferred_preempts,
            self.affine,
            self.rescued,
            self.rcu_readers,
        )?;
        writeln!(
            w,
            "            wait p50/p99 us: crit {:.0}/{:.0} norm {:.0}/{:.0} batch {:.0}/{:.0} | loop {:.1} us/1k events | bus cache {} hit {} anc {} miss {} no-sched-facet {}",
            self.critical_wait_p50_us,
            self.critical_wait_p99_us,
            self.normal_wait_p50_us,
            self.normal_wait_p99_us,
            self.batch_wait_p50_us,
            self.batch_wait_p99_us,
            self.loop_us_per_1k_events,
            self.bus_cached,
            self.bus_hit,
            self.bus_fallback,
            self.bus_miss,
            self.bus_no_sched_facet,
        )?;
        let most = (self.most_throttled_cgroup != 0).then_some((
            self.most_throttled_cgroup,
            self.most_throttled_times,
            self.most_throttled_ms,
        ));
        if let Some(line) = prism_sched::throttling::stats_line(
            self.limited_cgroups,
            self.throttles,
            self.throttled_ms,
            most,
        ) {
            writeln!(w, "            {line}")?;
        }
        Ok(())
    }
}

/// The scheduler answers each request with the metrics since the previous one.
pub fn server_data() -> StatsServerData<(), Metrics> {
    let open: Box<dyn StatsOpener<(), Metrics>> = Box::new(move |(req_ch, res_ch)| {
        req_ch.send(())?;
        res_ch.recv()?;
        let read: Box<dyn StatsReader<(), Metrics>> = Box::new(move |_args, (req_ch, res_ch)| {
            req_ch.send(())?;
            res_ch.recv()?.to_json()
        });
        Ok(read)
    });
    StatsServerData::new()
        .add_meta(Metrics::meta())
        .add_ops("top", StatsOps { open, close: None })
}

pub fn monitor(interval: Duration, shutdown: Arc<AtomicBool>) -> Result<()> {
    scx_utils::monitor_stats::<Metrics>(
        &[],
        interval,
        || shutdown.load(Ordering::Relaxed),
        |m| m.format(&mut std::io::stdout()),
    )
}
