//! The command-line options every scx scheduler has (scx conventions), for
//! `#[command(flatten)]` into a scheduler's own options.

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
}
