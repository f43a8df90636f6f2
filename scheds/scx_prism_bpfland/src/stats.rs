//! scx_prism_bpfland's metrics: what `--stats`/`--monitor` print and what
//! scx_stats serves on /var/run/scx/root/stats. Counters are per interval.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Result;
use prism_bus::LatencyClass;
use prism_sched::ClassWaits;
use scx_stats::prelude::*;
use scx_stats_derive::{Stats, stat_doc};
use serde::{Deserialize, Serialize};

use crate::bpf::BpfCounters;

const CRITICAL: usize = LatencyClass::Critical as usize;
const NORMAL: usize = LatencyClass::Normal as usize;
const BATCH: usize = LatencyClass::Batch as usize;
const UNSET: usize = LatencyClass::Unset as usize;

#[stat_doc]
#[derive(Clone, Debug, Default, Serialize, Deserialize, Stats)]
#[stat(top)]
pub struct Metrics {
    #[stat(desc = "The running build (version and build id)")]
    pub build_info: String,
    #[stat(desc = "Bus: -1 --prism off (not opened), 0 not pinned yet, 1 attached")]
    pub bus: i64,
    #[stat(desc = "Total weight of the runnable tasks (100 per nice-0 task)")]
    pub runnable_weight: i64,
    #[stat(desc = "Tasks put on an idle CPU at once")]
    pub direct: u64,
    #[stat(desc = "Tasks that went through a queue")]
    pub queued: u64,
    #[stat(desc = "Waking tasks that preempted a CPU")]
    pub preempted: u64,
    #[stat(desc = "Tasks taken from another LLC's queue")]
    pub steals: u64,
    #[stat(desc = "Tasks run next because they had waited 1 s (a wall-time bound)")]
    pub rescued: u64,
    #[stat(desc = "Critical wakeups owed CPU, queued before the LLC's deadline queue (--prism)")]
    pub owed_critical: u64,
    #[stat(
        desc = "Critical wakees handed their critical waker's CPU, no CPU being idle (--prism)"
    )]
    pub affine: u64,
    #[stat(
        desc = "Tasks preempted inside an RCU read-side section, queued for a short stint soon"
    )]
    pub rcu_readers: u64,
    #[stat(desc = "Dispatches (runs started), critical class (and kernel threads, with --prism)")]
    pub critical_runs: u64,
    #[stat(desc = "Dispatches, normal class and unlabelled tasks")]
    pub normal_runs: u64,
    #[stat(desc = "Dispatches, batch class")]
    pub batch_runs: u64,
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

impl Metrics {
    /// The metrics of the interval between two snapshots of the counters.
    pub fn between(prev: &BpfCounters, cur: &BpfCounters, bus: Option<bool>) -> Metrics {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        let wait = ClassWaits::between(&cur.wait, &prev.wait);
        let throttling = cur.throttling.since(&prev.throttling);
        let cpu_ms = |c: usize| d(cur.class_runtime_ns[c], prev.class_runtime_ns[c]) / 1_000_000;
        let runs = |c: usize| d(cur.runs[c], prev.runs[c]);
        Metrics {
            build_info: scx_utils::build_id::full_version(env!("CARGO_PKG_VERSION")),
            bus: bus.map_or(-1, i64::from),
            runnable_weight: cur.runnable_weight,
            direct: d(cur.direct_dispatches, prev.direct_dispatches),
            queued: d(cur.queued_dispatches, prev.queued_dispatches),
            preempted: d(cur.preemptions, prev.preemptions),
            steals: d(cur.steals, prev.steals),
            rescued: d(cur.rescued, prev.rescued),
            owed_critical: d(cur.owed_critical, prev.owed_critical),
            affine: d(cur.affine, prev.affine),
            rcu_readers: d(cur.rcu_readers, prev.rcu_readers),
            critical_runs: runs(CRITICAL),
            normal_runs: runs(NORMAL) + runs(UNSET),
            batch_runs: runs(BATCH),
            critical_wait_p50_us: wait.critical.percentile_us(50.0),
            critical_wait_p99_us: wait.critical.percentile_us(99.0),
            normal_wait_p50_us: wait.normal.percentile_us(50.0),
            normal_wait_p99_us: wait.normal.percentile_us(99.0),
            batch_wait_p50_us: wait.batch.percentile_us(50.0),
            batch_wait_p99_us: wait.batch.percentile_us(99.0),
            critical_cpu_ms: cpu_ms(CRITICAL),
            normal_cpu_ms: cpu_ms(NORMAL) + cpu_ms(UNSET),
            batch_cpu_ms: cpu_ms(BATCH),
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
            "[scx_prism_bpfland] bus {} weight {} | runs c/n/b {}/{}/{} | cpu ms c/n/b {}/{}/{} | direct {} queued {} preempt {} steal {} rescued {} owed-critical {} affine {} rcu {}",
            match self.bus {
                -1 => "off",
                0 => "waiting",
                _ => "on",
            },
            self.runnable_weight,
            self.critical_runs,
            self.normal_runs,
            self.batch_runs,
            self.critical_cpu_ms,
            self.normal_cpu_ms,
            self.batch_cpu_ms,
            self.direct,
            self.queued,
            self.preempted,
            self.steals,
            self.rescued,
            self.owed_critical,
            self.affine,
            self.rcu_readers,
        )?;
        writeln!(
            w,
            "                     wait p50/p99 us: crit {:.0}/{:.0} norm {:.0}/{:.0} batch {:.0}/{:.0} | bus cache {} hit {} anc {} miss {} no-sched-facet {}",
            self.critical_wait_p50_us,
            self.critical_wait_p99_us,
            self.normal_wait_p50_us,
            self.normal_wait_p99_us,
            self.batch_wait_p50_us,
            self.batch_wait_p99_us,
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
            writeln!(w, "                     {line}")?;
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
