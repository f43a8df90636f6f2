//! scx_prism: Prism's identity-aware sched_ext scheduler.
//!
//! The BPF side (src/bpf/main.bpf.c) resolves every task's Prism identity
//! and latency class from the bus and schedules it: classes as strict tiers
//! (critical, normal, batch), each task by its fair deadline on cgroup group
//! shares. This process is the policy (src/share_guard.rs): every 50 ms it
//! reads the CPU time each class used and publishes the class order that
//! keeps normal+batch their minimum share; it is never on a task's path.

mod bpf_skel;
pub use bpf_skel::*;
pub mod bpf_intf;

mod bpf;
mod share_guard;
mod stats;

use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Parser;
use libbpf_rs::OpenObject;
use log::info;
use prism_bus::BusPaths;
use prism_bus::abi::DEFAULT_PIN_DIR;
use prism_sched::cli::CommonOpts;
use scx_stats::prelude::*;
use scx_utils::{UserExitInfo, build_id};

use crate::bpf::{BpfConfig, BpfCounters, BpfScheduler};
use crate::share_guard::ShareGuard;
use crate::stats::{LoopState, Metrics};

const SCHEDULER_NAME: &str = "scx_prism";

/// scx_prism: an identity-aware sched_ext scheduler.
///
/// Reads each task's latency class (critical, normal, batch) and weight from
/// the Prism bus (pinned by prism-feeder at /sys/fs/bpf/prism) and schedules
/// critical work first, without starving the rest. cgroup cpu.weight gives
/// group shares as under CFS/EEVDF; with no bus, or an empty one, it is a
/// fair deadline scheduler. Needs a kernel with sched_ext
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
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=20))]
    batch_slice_factor: u32,

    /// Sleep credit in microseconds: how far ahead of the CPU hogs of its
    /// class a waking task may start (twice that for tasks that wake often;
    /// batch gets no bonus).
    #[arg(long, default_value_t = 20000, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    slice_lag_us: u64,

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

    /// A critical waker that ran less than this (microseconds) since it last
    /// slept, and as little the time before, hands its CPU to the critical
    /// task it wakes when no CPU is idle: the wakee runs as soon as the waker
    /// sleeps, no IPI. 0 turns this off.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    affine_burst_us: u64,

    /// A task waking with no CPU idle preempts one running lower-class work,
    /// or same-class work on its own CPU, once that has run this long
    /// (microseconds; same-class work, only once it has also run 2.5 ms
    /// since it last woke); for a lower class, and within critical, it waits
    /// for that with a timer, not for the end of the slice. It bounds how
    /// often one task is preempted.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(50..=100_000))]
    preempt_min_run_us: u64,

    /// Directory where the Prism bus is pinned.
    #[arg(long, env = "PRISM_BUS_DIR", default_value = DEFAULT_PIN_DIR)]
    bus_dir: PathBuf,

    #[command(flatten)]
    common: CommonOpts,
}

impl Opts {
    fn bpf_config(&self) -> BpfConfig {
        BpfConfig {
            slice_ns: self.slice_us * 1000,
            slice_min_ns: self.slice_min_us.min(self.slice_us) * 1000,
            slice_lag_ns: self.slice_lag_us * 1000,
            batch_slice_factor: self.batch_slice_factor,
            preempt_lower: !self.no_preempt,
            affine_burst_ns: self.affine_burst_us * 1000,
            preempt_min_run_ns: self.preempt_min_run_us * 1000,
            bus: BusPaths::new(&self.bus_dir),
            partial: self.common.partial,
            exit_dump_len: self.common.exit_dump_len,
            verbose: self.common.verbose,
            libbpf: self.common.libbpf.clone(),
        }
    }
}

/// How often the share guard's window is updated, and how much of it
/// decays each time (a time constant of about 200 ms). Each round wakes
/// this process: 50 ms keeps its CPU time near 1% of one CPU under TCG.
const ACCOUNT_EVERY: Duration = Duration::from_millis(50);
const ACCOUNT_DECAY: f64 = 0.77;
const BUS_POLL_EVERY: Duration = Duration::from_secs(1);

/// This process's CPU time so far (the policy loop and the stats server).
fn process_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a pointer to a timespec we own.
    if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Run one load of the scheduler until it exits or we are told to stop: a
/// table of the loop's three steps, each below.
fn run_once(
    opts: &Opts,
    open_object: &mut MaybeUninit<OpenObject>,
    stats_server: &StatsServer<(), Metrics>,
    shutdown: &AtomicBool,
) -> Result<UserExitInfo> {
    let cfg = opts.bpf_config();
    let mut sched = BpfScheduler::init(open_object, &cfg)?;
    info!(
        "{SCHEDULER_NAME} {} started; bus {} ({})",
        build_id::full_version(env!("CARGO_PKG_VERSION")),
        opts.bus_dir.display(),
        if sched.bus_attached() {
            "attached"
        } else {
            "not pinned yet: no identities until prism-feeder runs"
        }
    );
    let mut guard = ShareGuard::new(opts.min_share, opts.batch_min_share);
    let (res_ch, req_ch) = stats_server.channels();
    let mut since_last_report = StatsBaseline::now(&sched);
    let mut last_bus_poll = Instant::now();
    let mut next_account = Instant::now() + ACCOUNT_EVERY;
    while !shutdown.load(Ordering::Relaxed) && !sched.exited() {
        let wait = next_account.saturating_duration_since(Instant::now());
        if req_ch.recv_timeout(wait).is_ok() {
            res_ch.send(since_last_report.report(&sched, &guard))?;
            continue;
        }
        next_account = Instant::now() + ACCOUNT_EVERY;
        apply_policy(&mut sched, &mut guard);
        if last_bus_poll.elapsed() >= BUS_POLL_EVERY {
            follow_bus_and_limits(&mut sched);
            last_bus_poll = Instant::now();
        }
    }
    sched.shutdown_and_report()
}

/// Step 1, every ACCOUNT_EVERY: fold the classes' CPU time into the share
/// guard and publish the class order it decides.
fn apply_policy(sched: &mut BpfScheduler<'_>, guard: &mut ShareGuard) {
    guard.account(sched.class_runtime_ns(), ACCOUNT_DECAY);
    sched.set_order(guard.order());
}

/// Step 2, every BUS_POLL_EVERY: keep the bus slots on the pinned bus (it
/// may appear late or be re-created) and, on kernels that do not pass
/// cpu.max to the scheduler, publish the limits read from cgroupfs.
fn follow_bus_and_limits(sched: &mut BpfScheduler<'_>) {
    prism_sched::logging::bus_poll(sched.poll_bus(), "identities");
    sched.poll_cpu_max();
}

/// Step 3, on request: the metrics since the last report (counters are per
/// interval), with this process's own CPU time in it.
struct StatsBaseline {
    counters: BpfCounters,
    cpu_ns: u64,
}

impl StatsBaseline {
    fn now(sched: &BpfScheduler<'_>) -> StatsBaseline {
        StatsBaseline {
            counters: sched.counters(),
            cpu_ns: process_cpu_ns(),
        }
    }

    fn report(&mut self, sched: &BpfScheduler<'_>, guard: &ShareGuard) -> Metrics {
        let cur = StatsBaseline::now(sched);
        let state = LoopState {
            bus_attached: sched.bus_attached(),
            non_critical_share: guard.non_critical_share(),
            order: guard.order(),
            loop_cpu_ns: cur.cpu_ns.saturating_sub(self.cpu_ns),
        };
        let metrics = Metrics::between(&self.counters, &cur.counters, &state);
        *self = cur;
        metrics
    }
}

fn main() -> std::process::ExitCode {
    prism_sched::cli::exit_code(
        SCHEDULER_NAME,
        run(prism_bus::cli::parse_or_print_man::<Opts>()),
    )
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
    let stats_server = StatsServer::new(stats::server_data()).launch()?;
    let mut open_object = MaybeUninit::uninit();
    loop {
        let exit = run_once(&opts, &mut open_object, &stats_server, &shutdown)?;
        info!("{SCHEDULER_NAME} unregistered");
        if !exit.should_restart() || shutdown.load(Ordering::Relaxed) {
            return Ok(());
        }
        info!("the kernel asked for a restart: loading again");
    }
}
