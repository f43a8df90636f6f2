//! scx_prism: Prism's identity-aware sched_ext scheduler.
//!
//! The BPF side (src/bpf/main.bpf.c) resolves every task's Prism identity
//! and latency class from the bus and sends the tasks it cannot place at
//! once to this process; the policy (src/policy.rs) orders them, critical
//! before normal before batch, with weights and a starvation bound, and
//! sends back a CPU, a slice and an order.

mod bpf_skel;
pub use bpf_skel::*;
pub mod bpf_intf;

mod bpf;
mod policy;
mod stats;

use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use libbpf_rs::OpenObject;
use log::{info, warn};
use prism_bus::BusPaths;
use prism_bus::abi::DEFAULT_PIN_DIR;
use prism_sched::cli::CommonOpts;
use scx_stats::prelude::*;
use scx_utils::{UserExitInfo, build_id};

use crate::bpf::{BpfConfig, BpfScheduler};
use crate::bpf_intf::{PRISM_CPU_ANY, dispatched_task, queued_task};
use crate::policy::{BATCH, CRITICAL, NORMAL, NR_CLASSES, Policy, Runnable, Tunables};
use crate::stats::{ClassCounters, Metrics};

const SCHEDULER_NAME: &str = "scx_prism";

/// scx_prism: an identity-aware sched_ext scheduler.
///
/// Reads each task's latency class (critical, normal, batch) and weight from
/// the Prism bus (pinned by prism-feeder at /sys/fs/bpf/prism) and schedules
/// critical work first, without starving the rest. With no bus, or an empty
/// one, it is a weighted vruntime scheduler. Needs a kernel with sched_ext
/// (CONFIG_SCHED_CLASS_EXT=y) and root.
#[derive(Debug, Parser)]
#[command(disable_version_flag = true)]
struct Opts {
    /// Base time slice in microseconds.
    #[arg(short = 's', long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(100..=100_000))]
    slice_us: u64,

    /// Shortest base slice in microseconds: slices shrink toward it as more
    /// tasks wait for the CPUs (slice x CPUs / (CPUs + waiting)).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(100..=100_000))]
    slice_min_us: u64,

    /// Batch tasks get this many base slices (a waking critical task preempts them).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=20))]
    batch_slice_factor: u64,

    /// Minimum CPU share, in percent, that normal+batch work keeps when
    /// critical work could use every CPU.
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u64).range(0..=100))]
    min_share: u64,

    /// Minimum share, in percent, of the normal+batch CPU time that batch keeps.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=100))]
    batch_min_share: u64,

    /// Never preempt: by default a task waking with no CPU idle preempts lower-class work
    /// (critical preempts batch, else normal; normal preempts batch).
    #[arg(long)]
    no_preempt: bool,

    /// A waker that ran less than this (microseconds) since it last slept,
    /// and as little the time before, hands its CPU to the task it wakes when
    /// no CPU is idle: the wakee runs as soon as the waker sleeps, no IPI.
    /// 0 turns this off.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    affine_burst_us: u64,

    /// A task waking with no CPU idle preempts one running lower-class work,
    /// or, if it is interactive, same-class work, once that has run this long
    /// (microseconds); it waits for that, not for the end of the slice. It
    /// bounds how often one task is preempted.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(50..=100_000))]
    preempt_min_run_us: u64,

    /// Directory where the Prism bus is pinned.
    #[arg(long, env = "PRISM_BUS_DIR", default_value = DEFAULT_PIN_DIR)]
    bus_dir: PathBuf,

    #[command(flatten)]
    common: CommonOpts,
}

struct Scheduler<'a> {
    bpf: BpfScheduler<'a>,
    policy: Policy,
    stats_server: StatsServer<(), Metrics>,
    counters: ClassCounters,
    shutdown: Arc<AtomicBool>,
    last_account: Instant,
    last_bus_poll: Instant,
    /// The policy's clock for queue ages.
    started: Instant,
}

/// How often the share guard's window is updated, and how much of it decays each time.
const ACCOUNT_EVERY: Duration = Duration::from_millis(20);
const ACCOUNT_DECAY: f64 = 0.9;
const BUS_POLL_EVERY: Duration = Duration::from_secs(1);
const QUEUE_CAPACITY: usize = 8192;

impl<'a> Scheduler<'a> {
    fn init(
        opts: &Opts,
        open_object: &'a mut MaybeUninit<OpenObject>,
        shutdown: Arc<AtomicBool>,
    ) -> Result<Self> {
        // Threads first: after BpfScheduler::init no thread may be started (no mmap).
        let stats_server = StatsServer::new(stats::server_data()).launch()?;
        let tunables = Tunables {
            slice_ns: opts.slice_us * 1000,
            slice_min_ns: opts.slice_min_us.min(opts.slice_us) * 1000,
            batch_slice_factor: opts.batch_slice_factor,
            min_share_pct: opts.min_share,
            batch_min_share_pct: opts.batch_min_share,
            ..Tunables::default()
        };
        let policy = Policy::new(tunables, QUEUE_CAPACITY);
        let cfg = BpfConfig {
            slice_ns: opts.slice_us * 1000,
            partial: opts.common.partial,
            exit_dump_len: opts.common.exit_dump_len,
            preempt_lower: !opts.no_preempt,
            affine_burst_ns: opts.affine_burst_us * 1000,
            preempt_min_run_ns: opts.preempt_min_run_us * 1000,
            verbose: opts.common.verbose,
        };
        let bpf = BpfScheduler::init(open_object, &cfg, BusPaths::new(&opts.bus_dir))?;
        info!(
            "{SCHEDULER_NAME} {} started; bus {} ({})",
            build_id::full_version(env!("CARGO_PKG_VERSION")),
            opts.bus_dir.display(),
            if bpf.bus_attached() {
                "attached"
            } else {
                "not pinned yet: no identities until prism-feeder runs"
            }
        );
        Ok(Scheduler {
            bpf,
            policy,
            stats_server,
            counters: ClassCounters::default(),
            shutdown,
            last_account: Instant::now(),
            last_bus_poll: Instant::now(),
            started: Instant::now(),
        })
    }

    fn runnable(t: &queued_task) -> Runnable {
        Runnable {
            pid: t.pid,
            cpu: t.cpu,
            nr_cpus_allowed: t.nr_cpus_allowed,
            flags: t.flags,
            last_ran_ns: t.stop_ts.saturating_sub(t.start_ts),
            exec_runtime: t.exec_runtime,
            vruntime: t.vruntime,
            enq_cnt: t.enq_cnt,
            class: t.class,
            nice_weight: t.nice_weight,
            cgroup_weight: t.cgroup_weight,
            bus_weight: t.bus_weight,
            woke: t.woke != 0,
        }
    }

    /// One round: take every waiting task in, then decide for as many as
    /// there are CPUs to fill (at least one), then let them run.
    fn schedule(&mut self) -> Result<()> {
        self.policy.tick(
            self.started
                .elapsed()
                .as_nanos()
                .try_into()
                .unwrap_or(u64::MAX),
        );
        while let Some(t) = self.bpf.dequeue()? {
            let class = (t.class as usize).min(NR_CLASSES - 1);
            self.counters.queued[class] += 1;
            if t.last_wait_ns > 0 {
                self.counters.wait[(t.last_wait_class as usize).min(NR_CLASSES - 1)]
                    .record(t.last_wait_ns);
            }
            self.policy.enqueue(Self::runnable(&t));
        }

        if self.last_account.elapsed() >= ACCOUNT_EVERY {
            self.policy
                .account(self.bpf.counters().class_runtime_ns, ACCOUNT_DECAY);
            self.bpf
                .set_lower_classes_starving(self.policy.lower_classes_starving());
            self.last_account = Instant::now();
        }
        if self.last_bus_poll.elapsed() >= BUS_POLL_EVERY {
            match self.bpf.poll_bus() {
                Ok(prism_bus::consumer::SlotChange::Attached { identity_map_id }) => {
                    info!("bus attached (map id {identity_map_id})")
                }
                Ok(prism_bus::consumer::SlotChange::Detached) => {
                    warn!("bus gone: no identities until it is back")
                }
                Ok(prism_bus::consumer::SlotChange::None) => {}
                Err(e) => warn!("bus: {e}"),
            }
            self.last_bus_poll = Instant::now();
        }

        let c = self.bpf.counters();
        let nr_cpus = c.nr_online_cpus.max(1);
        let budget = nr_cpus.saturating_sub(c.nr_running).max(1);
        for _ in 0..budget {
            let Some(d) = self.policy.next(nr_cpus) else {
                break;
            };
            let record = dispatched_task {
                pid: d.pid,
                cpu: d.cpu.unwrap_or(PRISM_CPU_ANY as i32),
                flags: d.flags,
                slice_ns: d.slice_ns,
                dsq_vtime: d.dsq_vtime,
                vruntime: d.vruntime,
                enq_cnt: d.enq_cnt,
            };
            if self.bpf.dispatch(&record).is_err() {
                self.policy.requeue(&d);
                break;
            }
            self.counters.dispatched[d.class] += 1;
        }
        self.bpf.notify_complete(self.policy.waiting() as u64);
        Ok(())
    }

    fn metrics(&mut self) -> Metrics {
        let c = self.bpf.counters();
        let k = std::mem::take(&mut self.counters);
        let merged = |a: usize| {
            if a == NORMAL {
                k.queued[NORMAL] + k.queued[0]
            } else {
                k.queued[a]
            }
        };
        let wait = |class: usize, p: f64| k.wait[class].percentile_us(p);
        Metrics {
            nr_cpus: c.nr_online_cpus,
            nr_running: c.nr_running,
            nr_scheduled: self.policy.waiting() as u64,
            bus_attached: u64::from(self.bpf.bus_attached()),
            critical_queued: k.queued[CRITICAL],
            normal_queued: merged(NORMAL),
            batch_queued: k.queued[BATCH],
            critical_dispatched: k.dispatched[CRITICAL],
            normal_dispatched: k.dispatched[NORMAL],
            batch_dispatched: k.dispatched[BATCH],
            critical_direct: c.nr_direct_critical,
            kernel_dispatches: c.nr_kernel_dispatches,
            user_dispatches: c.nr_user_dispatches,
            critical_wait_p50_us: wait(CRITICAL, 50.0),
            critical_wait_p99_us: wait(CRITICAL, 99.0),
            normal_wait_p50_us: wait(NORMAL, 50.0).max(wait(0, 50.0)),
            normal_wait_p99_us: wait(NORMAL, 99.0).max(wait(0, 99.0)),
            batch_wait_p50_us: wait(BATCH, 50.0),
            batch_wait_p99_us: wait(BATCH, 99.0),
            non_critical_share_pct: self.policy.non_critical_share() * 100.0,
            congested: c.nr_congested,
            cancelled: c.nr_cancel_dispatches,
            bounced: c.nr_bounce_dispatches,
            direct_preempts: c.nr_direct_preempt,
            deferred_preempts: c.nr_deferred_preempt,
            resumed: c.nr_resumed,
            affine: c.nr_affine,
            bus_cached: c.nr_bus_cached,
            bus_hit: c.nr_bus_own,
            bus_fallback: c.nr_bus_ancestor,
            bus_miss: c.nr_bus_miss,
        }
    }

    fn run(&mut self) -> Result<UserExitInfo> {
        let (res_ch, req_ch) = self.stats_server.channels();
        while !self.shutdown.load(Ordering::Relaxed) && !self.bpf.exited() {
            self.schedule()?;
            if req_ch.try_recv().is_ok() {
                res_ch.send(self.metrics())?;
            }
        }
        self.bpf.shutdown_and_report()
    }
}

fn main() -> std::process::ExitCode {
    prism_sched::cli::exit_code(SCHEDULER_NAME, run(Opts::parse()))
}

fn run(opts: Opts) -> Result<()> {
    let version = format!(
        "{SCHEDULER_NAME} {}",
        build_id::full_version(env!("CARGO_PKG_VERSION"))
    );
    let Some(shutdown) = prism_sched::cli::start(
        &opts.common,
        &version,
        || stats::server_data().describe_meta(&mut std::io::stdout(), None),
        stats::monitor,
    )?
    else {
        return Ok(());
    };

    prism_sched::kernel::check_sched_ext(SCHEDULER_NAME)?;
    let mut open_object = MaybeUninit::uninit();
    let mut sched = Scheduler::init(&opts, &mut open_object, shutdown)?;
    let exit = sched.run()?;
    drop(sched);
    info!("{SCHEDULER_NAME} unregistered");
    if exit.should_restart() {
        // The seccomp filter of scx_rustland_core forbids the mmaps a reload
        // needs: exit non-zero and let the service manager start us afresh.
        bail!(
            "the kernel asked for a restart; exiting so that the service manager restarts scx_prism"
        );
    }
    Ok(())
}
