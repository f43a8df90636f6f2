//! scx_prism_bpfland: an in-kernel deadline scheduler in the bpfland style.
//!
//! The whole policy is in src/bpf/main.bpf.c; this process sizes it to the
//! machine, loads it, serves its statistics, follows the Prism bus (with
//! --prism) and reports how it exited.

mod bpf_skel;
pub use bpf_skel::*;
pub mod bpf_intf;

mod bpf;
mod stats;

use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use libbpf_rs::OpenObject;
use log::info;
use prism_bus::BusPaths;
use prism_bus::abi::DEFAULT_PIN_DIR;
use prism_sched::cli::CommonOpts;
use scx_stats::prelude::*;
use scx_utils::{UserExitInfo, build_id};

use crate::bpf::{BpfConfig, BpfCounters, BpfScheduler};
use crate::stats::Metrics;

const SCHEDULER_NAME: &str = "scx_prism_bpfland";

/// scx_prism_bpfland: a deadline sched_ext scheduler, all policy in BPF.
///
/// Tasks are ordered by virtual deadline (weighted CPU time, with a bounded
/// credit for tasks that sleep often); idle CPUs are chosen by SMT, LLC and
/// NUMA topology. With --prism it also applies the latency classes and
/// weights that prism-feeder publishes on the Prism bus: critical work
/// first and preempting batch work, batch last with longer slices, none
/// starved. Needs a kernel with sched_ext (CONFIG_SCHED_CLASS_EXT=y) and root.
#[derive(Debug, Parser)]
#[command(disable_version_flag = true)]
struct Opts {
    /// Apply the Prism bus's latency classes and weights. Without it the bus is not opened.
    #[arg(long)]
    prism: bool,

    /// Directory where the Prism bus is pinned (with --prism).
    #[arg(long, env = "PRISM_BUS_DIR", default_value = DEFAULT_PIN_DIR)]
    bus_dir: PathBuf,

    /// Longest time slice, microseconds (slices shrink as queues grow).
    #[arg(short = 's', long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(100..=100_000))]
    slice_us: u64,

    /// Shortest time slice, microseconds.
    #[arg(short = 'S', long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(50..=100_000))]
    slice_us_min: u64,

    /// Most CPU time, microseconds, a sleeping task of weight 100 is credited against
    /// the others (in proportion to its weight, twice that if it wakes often).
    #[arg(short = 'l', long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(0..=200_000))]
    slice_us_lag: u64,

    /// A waking task preempts a task with a later deadline on the CPU it wakes on (and,
    /// with --prism, normal preempts batch anywhere) once that has run this long,
    /// microseconds; critical tasks preempt lower classes at once.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    preempt_min_us: u64,

    /// Let a waking task also preempt same-class tasks with later deadlines on other
    /// CPUs of its LLC (after --preempt-min-us). Each costs an IPI.
    #[arg(long)]
    preempt_same_class: bool,

    /// With --prism: how much earlier (critical) or later (batch) a deadline is, microseconds.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(0..=200_000))]
    class_offset_us: u64,

    /// With --prism: critical tasks weigh this many times their weight within their cgroup
    /// (their part of its CPU share can reach this multiple of a fair one; 1 gives them latency
    /// but no extra CPU; across cgroups, cpu.weight decides).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=16))]
    critical_weight_factor: u32,

    /// With --prism and no CPU idle: a critical waker that ran less than this since it
    /// last woke, microseconds, and as little the time before, hands its CPU to the
    /// critical task it wakes (the wakee runs when the waker sleeps, no IPI). 0 turns it off.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    affine_burst_us: u64,

    /// With --prism: batch tasks get this many times the slice.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=20))]
    batch_slice_factor: u32,

    #[command(flatten)]
    common: CommonOpts,
}

impl Opts {
    fn bpf_config(&self) -> Result<BpfConfig> {
        if self.slice_us_min > self.slice_us {
            bail!(
                "--slice-us-min ({}) is above --slice-us ({})",
                self.slice_us_min,
                self.slice_us
            );
        }
        // the kernel ejects a scheduler that lets a runnable task wait 5 s
        if self.slice_us * u64::from(self.batch_slice_factor) > 500_000 {
            bail!(
                "--slice-us x --batch-slice-factor is {} us: at most 500000",
                self.slice_us * u64::from(self.batch_slice_factor)
            );
        }
        Ok(BpfConfig {
            slice_max_ns: self.slice_us * 1000,
            slice_min_ns: self.slice_us_min * 1000,
            slice_lag_ns: self.slice_us_lag * 1000,
            preempt_min_ns: self.preempt_min_us * 1000,
            preempt_same_class: self.preempt_same_class,
            class_offset_ns: self.class_offset_us * 1000,
            batch_slice_factor: self.batch_slice_factor,
            affine_burst_ns: self.affine_burst_us * 1000,
            critical_weight_factor: self.critical_weight_factor,
            prism: self.prism.then(|| BusPaths::new(&self.bus_dir)),
            partial: self.common.partial,
            exit_dump_len: self.common.exit_dump_len,
            verbose: self.common.verbose,
            libbpf: self.common.libbpf.clone(),
        })
    }
}

const BUS_POLL_EVERY: Duration = Duration::from_secs(1);
const TICK: Duration = Duration::from_millis(100);

/// Run one load of the scheduler until it exits or we are told to stop.
fn run_once(
    cfg: &BpfConfig,
    open_object: &mut MaybeUninit<OpenObject>,
    stats_server: &StatsServer<(), Metrics>,
    shutdown: &AtomicBool,
) -> Result<UserExitInfo> {
    let mut sched = BpfScheduler::init(open_object, cfg)?;
    info!(
        "{SCHEDULER_NAME} {} started; {}",
        build_id::full_version(env!("CARGO_PKG_VERSION")),
        match (&cfg.prism, sched.bus_attached()) {
            (Some(p), Some(true)) => format!("--prism: bus {} attached", p.dir.display()),
            (Some(p), _) => format!(
                "--prism: bus {} not pinned yet: no classes until prism-feeder runs",
                p.dir.display()
            ),
            (None, _) => "classes off (no --prism)".to_string(),
        }
    );
    let (res_ch, req_ch) = stats_server.channels();
    let mut last: BpfCounters = sched.counters();
    let mut last_bus_poll = Instant::now();
    while !shutdown.load(Ordering::Relaxed) && !sched.exited() {
        if req_ch.recv_timeout(TICK).is_ok() {
            let cur = sched.counters();
            res_ch.send(Metrics::between(&last, &cur, sched.bus_attached()))?;
            last = cur;
        }
        if last_bus_poll.elapsed() >= BUS_POLL_EVERY {
            prism_sched::logging::bus_poll(sched.poll_bus(), "classes");
            sched.poll_cpu_max();
            last_bus_poll = Instant::now();
        }
    }
    sched.shutdown_and_report()
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
    let cfg = opts.bpf_config()?;

    prism_sched::kernel::check_sched_ext(SCHEDULER_NAME)?;
    let stats_server = StatsServer::new(stats::server_data()).launch()?;
    let mut open_object = MaybeUninit::uninit();
    loop {
        let exit = run_once(&cfg, &mut open_object, &stats_server, &shutdown)?;
        info!("{SCHEDULER_NAME} unregistered");
        if !exit.should_restart() || shutdown.load(Ordering::Relaxed) {
            return Ok(());
        }
        info!("the kernel asked for a restart: loading again");
    }
}
