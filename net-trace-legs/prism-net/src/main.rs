//! prism-net: per-identity network accounting. Loads the cgroup_skb
//! programs, attaches them at --cgroup, keeps them on the bus (waiting for
//! it if it is not pinned yet, following it if the feeder re-creates it),
//! applies the deny set (SIGHUP re-reads it) and serves the counters.

use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use prism_bus::BusPaths;
use prism_bus::consumer::{SlotChange, SlotKeeper};
use prism_net::bpf::{self, Maps};
use prism_net::exporter::{self, Exporter};
use prism_net::policy::Policy;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

/// Counts every packet and its bytes under the identity the bus gives its
/// socket's cgroup, per direction, and drops the traffic a deny set names.
/// Serves the counters on /metrics (prism_net_packets_total,
/// prism_net_bytes_total, by identity, direction and workload name).
/// Starts before the bus exists (traffic counts as identity 0 until then).
#[derive(Debug, Parser)]
#[command(version, about, long_about, max_term_width = 100)]
struct Opts {
    /// The cgroup to attach at: its sockets and all below it are counted.
    /// Default: the cgroup v2 root (every socket of the host).
    #[arg(long)]
    cgroup: Option<PathBuf>,

    /// Where the bus is pinned.
    #[arg(long, env = "PRISM_BUS_DIR", default_value = prism_bus::abi::DEFAULT_PIN_DIR)]
    bus_dir: PathBuf,

    /// Deny set (TOML): [[deny]] identity = N, direction = ingress|egress|both,
    /// reserved = true to deny an identity below 256. SIGHUP re-reads it.
    #[arg(long)]
    policy: Option<PathBuf>,

    /// The feeder's identity names file, for the `workload` label.
    #[arg(long, env = "PRISM_NAMES_FILE", default_value = prism_bus::names::DEFAULT_NAMES_PATH)]
    names_file: PathBuf,

    /// /metrics and /healthz.
    #[arg(long, default_value = "0.0.0.0:9465")]
    listen: SocketAddr,

    /// Identities with series of their own; more are summed as "other".
    #[arg(long, default_value_t = 1000)]
    max_identities: usize,

    /// More detail in the log (-v debug).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn main() -> ExitCode {
    let opts = prism_bus::cli::parse_or_print_man::<Opts>();
    let level = if opts.verbose > 0 { "debug" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    match run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(opts: Opts) -> anyhow::Result<()> {
    let policy = match &opts.policy {
        Some(p) => Policy::load(p)?,
        None => Policy::default(),
    };
    let cgroup = match &opts.cgroup {
        Some(c) => c.clone(),
        None => prism_bus::cgroup::cgroup2_root().context("finding the cgroup2 mount")?,
    };
    let mut obj = MaybeUninit::uninit();
    let attached = bpf::attach(&mut obj, &cgroup)?;
    let maps = Arc::new(Maps::of(&attached.skel)?);
    maps.apply(&policy)?;
    let exporter = Arc::new(Exporter::new(
        maps.clone(),
        Some(opts.names_file.clone()),
        opts.max_identities,
    ));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(opts.listen))
        .with_context(|| format!("listening on {}", opts.listen))?;
    let router = exporter::router(exporter.clone());
    rt.spawn(async move { axum::serve(listener, router).await });
    info!(cgroup = %cgroup.display(), bus = %opts.bus_dir.display(), listen = %opts.listen,
        denied = policy.deny.len(), "prism-net counting");

    let why = rt.block_on(follow(&opts, &maps, &exporter))?;
    info!("{why}: detaching");
    drop(attached);
    Ok(())
}

/// Keep the programs on the bus and the deny set current until a stop signal.
async fn follow(opts: &Opts, maps: &Maps, exporter: &Exporter) -> anyhow::Result<&'static str> {
    let mut keeper = SlotKeeper::new(BusPaths::new(&opts.bus_dir));
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = term.recv() => return Ok("SIGTERM"),
            _ = int.recv() => return Ok("SIGINT"),
            _ = hup.recv() => match &opts.policy {
                Some(path) => match Policy::load(path).and_then(|p| maps.apply(&p).map(|()| p)) {
                    Ok(p) => info!(denied = p.deny.len(), "net policy reloaded"),
                    Err(e) => error!(error = format!("{e:#}"), "the new net policy is refused; the one in force stays"),
                },
                None => warn!("SIGHUP: no --policy to re-read"),
            },
            _ = tick.tick() => match keeper.poll(&maps.bus_identity_slot, &maps.bus_meta_slot) {
                Ok(SlotChange::Attached { identity_map_id }) => {
                    info!(identity_map_id, "bus attached");
                    exporter.bus_attached.store(true, Ordering::Relaxed);
                }
                Ok(SlotChange::Detached) => {
                    warn!("the bus went away; counting as identity 0 until it is back");
                    exporter.bus_attached.store(false, Ordering::Relaxed);
                }
                Ok(SlotChange::None) => {}
                Err(e) => warn!(error = %e, "the bus cannot be attached; retrying"),
            },
        }
    }
}
