//! prism-feeder: fills Prism's identity bus from Kubernetes, the kubelet, or
//! cgroup rules on a plain host. Reads top to bottom as the program: the
//! options, then `run`, which wires the sources, the cgroup tree, the
//! reconciler (the bus's one writer) and the HTTP server, and stops cleanly
//! on SIGTERM leaving the bus pinned for its consumers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use crossbeam_channel::{Receiver, Sender, unbounded};
use prism_bus::{BusPaths, BusWriter, Facets};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

use prism_feeder::allocator::Allocator;
use prism_feeder::allocator::etcd::{EtcdAllocator, EtcdConfig};
use prism_feeder::allocator::grace::ReleaseGrace;
use prism_feeder::allocator::local::LocalAllocator;
use prism_feeder::health::Health;
use prism_feeder::logging::{self, LogFormat};
use prism_feeder::metrics::Metrics;
use prism_feeder::pod::cgroup_name::{Driver, KubepodsLayout};
use prism_feeder::reconcile::inbox::{Input, SourceId};
use prism_feeder::reconcile::{self, Reconciler};
use prism_feeder::sources::cgroup_rules::CgroupRulesSource;
use prism_feeder::sources::cgroup_tree::{self, RescanHandle, Subscriber};
use prism_feeder::sources::kube::KubeSource;
use prism_feeder::sources::kubelet::{KubeletConfig, KubeletSource};
use prism_feeder::sources::{Feed, Source};
use prism_feeder::workload::declared::NamespacePolicy;

/// Fills Prism's identity bus: every workload on this node (a Kubernetes pod,
/// or a systemd unit on a plain host) gets a stable 24-bit identity and its
/// latency class, written for each of its cgroups into the bus pinned at
/// --bus-dir. The only program that writes the bus.
///
/// Kubernetes nodes: `--source kube` (watch the API server; needs NODE_NAME)
/// or `--source kubelet` (poll the node's kubelet). Pods declare
/// `prism.io/latency-class` (critical | normal | batch) and `prism.io/weight`
/// (1..127); critical and weights above 64 count only in --promote-namespace
/// namespaces. Plain hosts: `--source cgroup` with --rules (TOML; SIGHUP
/// re-reads it), or without rules every systemd service, scope and slice.
#[derive(Debug, Parser)]
#[command(version, about, long_about, max_term_width = 100)]
struct Opts {
    /// Where workloads come from (repeat or comma-separate: cgroup combines
    /// with kube or kubelet). auto: kube inside a Kubernetes pod, else cgroup.
    #[arg(
        long = "source",
        value_enum,
        env = "PRISM_SOURCE",
        value_delimiter = ',',
        default_value = "auto"
    )]
    sources: Vec<SourceKind>,

    /// This node's name (the kube source watches only its pods).
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,

    /// kubeconfig for the kube source; default: in-cluster, then ~/.kube/config.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,

    /// How long a workload no source names any more keeps its entries while
    /// its cgroup still exists (an empty or partial listing from a source
    /// that is restarting deletes nothing this long); 0s: at once.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    delete_grace: Duration,

    /// How long an id stays its canonical's after its last workload left,
    /// so a workload that comes back (a replaced pod, a flapping source)
    /// gets the same id; 0s: free at once.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    id_grace: Duration,

    /// Start the pod watch over (a full relist) this often, and rescan the
    /// cgroup tree: a safety net for anything an event could have missed.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    resync: Duration,

    /// The kubelet's HTTPS endpoint (kubelet source).
    #[arg(long, default_value = "https://127.0.0.1:10250")]
    kubelet_url: http::Uri,

    /// Bearer token for the kubelet, re-read as it rotates.
    #[arg(
        long,
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )]
    kubelet_token_file: PathBuf,

    /// CA bundle that signed the kubelet's serving certificate.
    #[arg(
        long,
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
    )]
    kubelet_ca_file: PathBuf,

    /// Do not verify the kubelet's certificate (kubelets with self-signed ones).
    #[arg(long)]
    kubelet_insecure_tls: bool,

    /// How often the kubelet source polls /pods.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    kubelet_interval: Duration,

    /// Cgroup rules (TOML) for the cgroup source; default: built-in (every
    /// systemd service, scope and slice gets its own identity, no class).
    #[arg(long, env = "PRISM_CGROUP_RULES")]
    rules: Option<PathBuf>,

    /// Namespaces (globs) whose pods may declare `critical` or a weight above
    /// 64; elsewhere those labels are dropped and counted. Default: none.
    #[arg(
        long = "promote-namespace",
        env = "PRISM_PROMOTE_NAMESPACES",
        value_delimiter = ','
    )]
    promote_namespaces: Vec<String>,

    /// The facets every entry gets (which consumers act on workloads) unless
    /// a pod's `prism.io/facets` label or a cgroup rule's `facets` says
    /// otherwise; only --promote-namespace namespaces may leave one out.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "net,sched,observe"
    )]
    facets: Vec<Facet>,

    /// The cgroup v2 root to follow; default: where cgroup2 is mounted.
    #[arg(long)]
    cgroup_root: Option<PathBuf>,

    /// The kubelet's cgroup driver layout to recognise pod cgroups by.
    #[arg(long, value_enum, default_value = "auto")]
    cgroup_driver: Driver,

    /// The kubepods cgroup below the root, for a kubelet with its own
    /// --cgroup-root (e.g. kubelet.slice/kubelet-kubepods.slice).
    #[arg(long)]
    kubepods_cgroup: Option<String>,

    /// Where the bus is pinned.
    #[arg(long, env = "PRISM_BUS_DIR", default_value = prism_bus::abi::DEFAULT_PIN_DIR)]
    bus_dir: PathBuf,

    /// The identity names file (identity -> a name for people) that
    /// consumers such as prism-net read; "off" writes none.
    #[arg(long, env = "PRISM_NAMES_FILE", default_value = prism_bus::names::DEFAULT_NAMES_PATH)]
    names_file: PathBuf,

    /// Capacity of a new bus map (an existing one keeps its own).
    #[arg(long, default_value_t = prism_bus::abi::DEFAULT_MAX_ENTRIES)]
    max_entries: u32,

    /// Identity allocation: local (this node), or etcd (agreed cluster-wide).
    #[arg(long, value_enum, default_value = "local")]
    allocator: AllocatorKind,

    /// etcd endpoints for --allocator etcd.
    #[arg(
        long,
        env = "PRISM_ETCD_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    etcd_endpoints: Vec<String>,

    /// Key prefix of Prism's identities in etcd.
    #[arg(long, default_value = "/prism/v1/")]
    etcd_prefix: String,

    /// This node's etcd lease: how long after it dies its ids stay held.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    etcd_lease_ttl: Duration,

    /// How often this node collects ids that no node uses any more.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    etcd_gc_interval: Duration,

    /// Longest an etcd call may take before the allocation is retried later.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    etcd_timeout: Duration,

    /// /metrics, /healthz and /readyz; "off" serves nothing. Loopback by
    /// default: the port has no authentication (the DaemonSet listens on
    /// the pod's address for its probes and Prometheus).
    #[arg(long, default_value = "127.0.0.1:9464", value_parser = parse_listen)]
    listen: Listen,

    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,

    /// More detail in the log (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SourceKind {
    Auto,
    Kube,
    Kubelet,
    Cgroup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Facet {
    Net,
    Sched,
    Observe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AllocatorKind {
    Local,
    Etcd,
}

#[derive(Debug, Clone, Copy)]
struct Listen(Option<SocketAddr>);

fn parse_listen(s: &str) -> Result<Listen, String> {
    if s == "off" {
        return Ok(Listen(None));
    }
    s.parse()
        .map(|a| Listen(Some(a)))
        .map_err(|e| format!("{e} (an address like 0.0.0.0:9464, or off)"))
}

fn main() -> ExitCode {
    prism_feeder::memory::limit_arenas();
    let opts = prism_bus::cli::parse_or_print_man::<Opts>();
    logging::init(opts.log_format, opts.verbose);
    match run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(opts: Opts) -> anyhow::Result<()> {
    // Everything the command line can get wrong, before anything is created.
    let kinds = resolve_sources(&opts.sources)?;
    let facets = default_facets(&opts.facets);
    let policy = NamespacePolicy::new(&opts.promote_namespaces)
        .context("--promote-namespace is not a glob")?
        .with_default_facets(facets);
    let root = cgroup_root(&opts)?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let bus = BusWriter::create_or_open(&BusPaths::new(&opts.bus_dir), opts.max_entries)
        .with_context(|| format!("opening the bus at {}", opts.bus_dir.display()))?;
    let (inputs, inbox) = unbounded();
    let (reload_tx, reload_rx) = unbounded::<()>();

    let sources = start_sources(&opts, &kinds, &rt, &policy, &inputs, &metrics, reload_rx)?;
    let allocator = allocator(&opts, &rt, &inputs, &metrics)?;
    let reconciler = Reconciler::new(
        bus,
        allocator,
        reconcile::Config {
            layout: KubepodsLayout::new(opts.cgroup_driver, opts.kubepods_cgroup.as_deref()),
            facets,
            sources: sources.names.clone(),
            delete_grace: opts.delete_grace,
        },
        (opts.names_file.as_os_str() != "off").then(|| opts.names_file.clone()),
        metrics.clone(),
        health.clone(),
    );
    let worker = thread::Builder::new()
        .name("reconciler".into())
        .spawn(move || reconciler.run(inbox))
        .context("starting the reconciler")?;
    let rescan = cgroup_tree::spawn(root.clone(), sources.subscribers, metrics.clone())
        .with_context(|| format!("watching the cgroup tree at {}", root.display()))?;
    rt.spawn(rescan_every(opts.resync, rescan));
    if let Listen(Some(addr)) = opts.listen {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(addr))
            .with_context(|| format!("listening on {addr}"))?;
        let router = prism_feeder::http::router(metrics.clone(), health.clone());
        rt.spawn(prism_feeder::http::serve(listener, router));
    }
    info!(
        sources = ?sources.names,
        bus = %opts.bus_dir.display(),
        cgroup_root = %root.display(),
        listen = ?opts.listen.0,
        "prism-feeder started"
    );

    let why = rt.block_on(wait_for_stop(
        &worker,
        &reload_tx,
        kinds.contains(&SourceKind::Cgroup),
    ))?;
    info!("{why}: committing what is pending");
    let _ = inputs.send(Input::Shutdown);
    if worker.join().is_err() {
        bail!("the reconciler panicked");
    }
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// The facets every workload gets unless it declares otherwise (`--facets`).
fn default_facets(facets: &[Facet]) -> Facets {
    facets.iter().fold(Facets::NONE, |f, x| {
        f.union(match x {
            Facet::Net => Facets::NET,
            Facet::Sched => Facets::SCHED,
            Facet::Observe => Facets::OBSERVE,
        })
    })
}

/// The cgroup2 root the feeder watches: `--cgroup-root`, else the mount.
fn cgroup_root(opts: &Opts) -> anyhow::Result<PathBuf> {
    let root = match &opts.cgroup_root {
        Some(r) => r.clone(),
        None => prism_bus::cgroup::cgroup2_root().context("finding the cgroup2 mount")?,
    };
    if !root.is_dir() {
        bail!("cgroup root {} is not a directory", root.display());
    }
    Ok(root)
}

/// The sources started: their names (in [`SourceId`] order) and who hears
/// the cgroup tree: the cgroup-rules source, which relays each event to the
/// reconciler after classifying it, else the reconciler itself.
struct StartedSources {
    names: Vec<&'static str>,
    subscribers: Vec<Subscriber>,
}

/// Start every source on the runtime, each with its [`Feed`] to the
/// reconciler.
fn start_sources(
    opts: &Opts,
    kinds: &[SourceKind],
    rt: &tokio::runtime::Runtime,
    policy: &NamespacePolicy,
    inputs: &Sender<Input>,
    metrics: &Arc<Metrics>,
    reload_rx: Receiver<()>,
) -> anyhow::Result<StartedSources> {
    let mut subscribers: Vec<Subscriber> = vec![];
    if !kinds.contains(&SourceKind::Cgroup) {
        let inputs = inputs.clone();
        subscribers.push(Box::new(move |e| inputs.send(Input::Tree(e)).is_ok()));
    }
    let mut names = vec![];
    for (i, kind) in kinds.iter().enumerate() {
        let feed = |name| Feed::new(SourceId(i), name, inputs.clone(), metrics.clone());
        match kind {
            SourceKind::Cgroup => {
                let (tree_tx, tree_rx) = unbounded();
                subscribers.push(Box::new(move |e| tree_tx.send(e).is_ok()));
                let source =
                    CgroupRulesSource::new(opts.rules.clone(), tree_rx, reload_rx.clone())?;
                names.push(start(rt, source, feed));
            }
            SourceKind::Kube => {
                let node = opts
                    .node_name
                    .clone()
                    .context("the kube source needs --node-name (or NODE_NAME): it watches this node's pods only")?;
                let client =
                    rt.block_on(kube_client(opts.kubeconfig.as_deref(), metrics.clone()))?;
                let source = KubeSource::new(client, node, policy.clone(), opts.resync);
                names.push(start(rt, source, feed));
            }
            SourceKind::Kubelet => {
                let config = KubeletConfig {
                    url: opts.kubelet_url.clone(),
                    token_file: Some(opts.kubelet_token_file.clone()),
                    ca_file: (!opts.kubelet_insecure_tls).then(|| opts.kubelet_ca_file.clone()),
                    insecure: opts.kubelet_insecure_tls,
                    interval: opts.kubelet_interval,
                    timeout: Duration::from_secs(30),
                };
                let source = {
                    let _rt = rt.enter();
                    KubeletSource::new(config, policy.clone(), metrics.clone())?
                };
                names.push(start(rt, source, feed));
            }
            SourceKind::Auto => unreachable!("resolved before"),
        }
    }
    Ok(StartedSources { names, subscribers })
}

/// The identity allocator `--allocator` names, with the release grace.
fn allocator(
    opts: &Opts,
    rt: &tokio::runtime::Runtime,
    inputs: &Sender<Input>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Box<dyn Allocator>> {
    Ok(match opts.allocator {
        AllocatorKind::Local => {
            Box::new(ReleaseGrace::new(LocalAllocator::default(), opts.id_grace))
        }
        AllocatorKind::Etcd => Box::new(ReleaseGrace::new(
            EtcdAllocator::connect(
                rt.handle(),
                EtcdConfig {
                    endpoints: opts.etcd_endpoints.clone(),
                    prefix: opts.etcd_prefix.clone(),
                    node: opts
                        .node_name
                        .clone()
                        .context("--allocator etcd needs --node-name (or NODE_NAME)")?,
                    lease_ttl: opts.etcd_lease_ttl,
                    gc_interval: opts.etcd_gc_interval,
                    timeout: opts.etcd_timeout,
                },
                metrics.clone(),
                {
                    let inputs = inputs.clone();
                    Box::new(move || {
                        let _ = inputs.send(Input::Answered);
                    })
                },
            )?,
            opts.id_grace,
        )),
    })
}

/// A whole new snapshot of the cgroup tree every `period` (`--resync`): what
/// inotify could have missed is found.
async fn rescan_every(period: Duration, rescan: RescanHandle) {
    let mut every = tokio::time::interval(period);
    every.tick().await;
    loop {
        every.tick().await;
        rescan.request();
    }
}

/// Run a source on the runtime; its name.
fn start<S: Source>(
    rt: &tokio::runtime::Runtime,
    source: S,
    feed: impl FnOnce(&'static str) -> Feed,
) -> &'static str {
    let name = source.name();
    rt.spawn(source.run(feed(name)));
    name
}

/// SIGTERM/SIGINT stop; SIGHUP re-reads the cgroup rules. Also returns if
/// the reconciler stopped by itself (which is an error).
async fn wait_for_stop(
    worker: &thread::JoinHandle<()>,
    reload: &crossbeam_channel::Sender<()>,
    has_rules: bool,
) -> anyhow::Result<&'static str> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut check = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = term.recv() => return Ok("SIGTERM"),
            _ = int.recv() => return Ok("SIGINT"),
            _ = hup.recv() => {
                if has_rules {
                    let _ = reload.send(());
                } else {
                    warn!("SIGHUP: no cgroup source, nothing to re-read");
                }
            }
            _ = check.tick() => {
                if worker.is_finished() {
                    bail!("the reconciler stopped unexpectedly");
                }
            }
        }
    }
}

fn resolve_sources(asked: &[SourceKind]) -> anyhow::Result<Vec<SourceKind>> {
    let mut kinds: Vec<SourceKind> = asked
        .iter()
        .map(|k| match k {
            SourceKind::Auto if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => {
                SourceKind::Kube
            }
            SourceKind::Auto => SourceKind::Cgroup,
            k => *k,
        })
        .collect();
    let mut seen = vec![];
    kinds.retain(|k| {
        let new = !seen.contains(k);
        seen.push(*k);
        new
    });
    if kinds.contains(&SourceKind::Kube) && kinds.contains(&SourceKind::Kubelet) {
        bail!("--source kube and kubelet both list the node's pods: choose one");
    }
    Ok(kinds)
}

async fn kube_client(
    kubeconfig: Option<&std::path::Path>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no in-cluster service account and no kubeconfig: pass --kubeconfig")?,
    };
    prism_feeder::sources::api_client::client(config, "kube", true, metrics)
}
