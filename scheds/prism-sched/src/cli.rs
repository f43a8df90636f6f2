//! The command-line options every scx scheduler has (scx conventions), for
//! `#[command(flatten)]` into a scheduler's own options.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

#[derive(Debug, Args)]
pub struct CommonOpts {
    /// Only schedule tasks that set SCHED_EXT themselves; others stay on the fair class.
    #[arg(short = 'p', long)]
    pub partial: bool,

    /// Size of the debug dump the kernel keeps when it ejects the scheduler (0: default).
    #[arg(long, default_value_t = 0)]
    pub exit_dump_len: u32,

    /// Print statistics every N seconds while scheduling.
    #[arg(long, value_name = "SECS")]
    pub stats: Option<f64>,

    /// Print the running scheduler's statistics every N seconds; does not load anything.
    #[arg(long, value_name = "SECS")]
    pub monitor: Option<f64>,

    /// Describe the statistics and exit.
    #[arg(long)]
    pub help_stats: bool,

    /// Verbose output (libbpf debug messages).
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// Print the version (with build id) and exit.
    #[arg(short = 'V', long)]
    pub version: bool,

    /// libbpf's object-open options, as every scx scheduler takes them
    /// (--relaxed-maps, --pin-root-path, --kconfig, --btf-custom-path,
    /// --bpf-token-path).
    #[command(flatten, next_help_heading = "Libbpf Options")]
    pub libbpf: scx_utils::libbpf_clap_opts::LibbpfOpts,
}

/// What a scheduler does before it loads anything, the scx way: --version
/// and --help-stats print and end; then logging and the SIGINT/SIGTERM flag;
/// --stats starts `monitor` beside the scheduler, --monitor runs it alone and
/// ends. Returns the shutdown flag, or None when there is nothing left to do.
pub fn start(
    common: &CommonOpts,
    version: &str,
    describe_stats: impl FnOnce() -> Result<()>,
    monitor: impl FnOnce(Duration, Arc<AtomicBool>) -> Result<()> + Send + 'static,
) -> Result<Option<Arc<AtomicBool>>> {
    if common.version {
        println!("{version}");
        return Ok(None);
    }
    if common.help_stats {
        describe_stats()?;
        return Ok(None);
    }
    crate::logging::init(common.verbose)?;

    let shutdown = Arc::new(AtomicBool::new(false));
    let flag = shutdown.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
        .context("installing the SIGINT/SIGTERM handler")?;

    if let Some(secs) = common.monitor.or(common.stats) {
        if !(secs > 0.0 && secs.is_finite()) {
            bail!("--stats/--monitor want a positive number of seconds");
        }
        let flag = shutdown.clone();
        let thread = std::thread::spawn(move || monitor(Duration::from_secs_f64(secs), flag));
        if common.monitor.is_some() {
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("monitor thread panicked"))??;
            return Ok(None);
        }
    }
    Ok(Some(shutdown))
}

/// The process's exit code for a scheduler's `run` result; an error is
/// printed once, with its causes, prefixed by the scheduler's name.
pub fn exit_code(scheduler: &str, result: Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{scheduler}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
