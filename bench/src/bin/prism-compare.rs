//! prism-compare: schedulers side by side in one boot of the lab kernel.
//!
//! Latency probes run in cgroup /crit while 2 x nCPU CPU hogs run in
//! /batch, under each configuration in turn (interleaved, several trials):
//! the probe alone (its floor), EEVDF with equal weights, EEVDF with cgroup
//! weights (crit 10000, batch 1), scx_prism and scx_prism_bpfland --prism
//! with /crit critical and /batch batch on the bus, scx_prism with an empty
//! bus, scx_prism_bpfland without --prism, and the published scx_bpfland as
//! the peer (when its binary is there: ci/bench-peers installs it). Prints
//! p50/p99/p99.9 (median over trials, and the range) as ratios to EEVDF,
//! and the hogs' throughput as a share of theirs under EEVDF. Run it in the
//! lab guest:
//!
//!     ci/lab run -- target/release/prism-compare --trials 3

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use prism_bench::lab::{self, Hogs, Probe, SchedProcess};
use prism_bench::latency::Summary;
use prism_bus::testing::{TempBusDir, TempCgroup, sched_entry};
use prism_bus::{BusWriter, LatencyClass};

#[derive(Parser)]
#[command(
    about = "Side-by-side latency of a critical probe under CPU hogs: EEVDF vs the Prism schedulers vs scx_bpfland"
)]
struct Opts {
    /// Trials per configuration (interleaved).
    #[arg(long, default_value_t = 3)]
    trials: usize,
    /// Seconds each probe measures.
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// Only the configurations whose name contains one of these (repeatable); the
    /// EEVDF baseline always runs.
    #[arg(long)]
    only: Vec<String>,
    /// The published scx_bpfland binary (the peer); skipped if missing.
    #[arg(long, default_value = ".lab-cache/peers/bin/scx_bpfland")]
    scx_bpfland: PathBuf,
    /// Also write the raw results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Which bus a scheduler reads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Bus {
    Labelled,
    Empty,
}

/// One configuration: a scheduler (None: EEVDF) with its arguments, the
/// cgroup weights of /crit and /batch, and whether the hogs run.
#[derive(Clone, Copy, Debug)]
struct Config {
    name: &'static str,
    scheduler: Option<(&'static str, &'static [&'static str], Bus)>,
    weights: (u32, u32),
    hogs: bool,
}

const FLOOR: &str = "floor (probe alone, EEVDF)";
const EEVDF: &str = "EEVDF, equal weights";

const CONFIGS: [Config; 8] = [
    Config {
        name: FLOOR,
        scheduler: None,
        weights: (100, 100),
        hogs: false,
    },
    Config {
        name: EEVDF,
        scheduler: None,
        weights: (100, 100),
        hogs: true,
    },
    Config {
        name: "EEVDF, cpu.weight 10000/1",
        scheduler: None,
        weights: (10000, 1),
        hogs: true,
    },
    Config {
        name: "scx_prism, bus: crit/batch",
        scheduler: Some(("scx_prism", &[], Bus::Labelled)),
        weights: (100, 100),
        hogs: true,
    },
    Config {
        name: "scx_prism, empty bus",
        scheduler: Some(("scx_prism", &[], Bus::Empty)),
        weights: (100, 100),
        hogs: true,
    },
    Config {
        name: "scx_bpfland 1.1.4 (peer)",
        scheduler: Some(("scx_bpfland", &[], Bus::Empty)),
        weights: (100, 100),
        hogs: true,
    },
    Config {
        name: "scx_prism_bpfland",
        scheduler: Some(("scx_prism_bpfland", &[], Bus::Empty)),
        weights: (100, 100),
        hogs: true,
    },
    Config {
        name: "scx_prism_bpfland --prism",
        scheduler: Some(("scx_prism_bpfland", &["--prism"], Bus::Labelled)),
        weights: (100, 100),
        hogs: true,
    },
];

/// The probes, and how many times --seconds each measures (so that each
/// records ~1,000 wakeups per trial at --seconds 4: tails need samples):
/// sleepy (wakes every 10 ms for 100 us), light (every 2 ms for 200 us),
/// request (a dispatcher hands requests to 2 workers: wakeup to run
/// without the timer's own delay) and CPU-hungry (1.5 ms of every 2).
const PROBES: [(&str, &str, f64); 4] = [
    ("sleepy", "--interval-us 10000 --work-us 100", 2.5),
    ("light", "--interval-us 2000 --work-us 200", 1.0),
    (
        "request",
        "--workers 2 --interval-us 2000 --work-us 300",
        1.0,
    ),
    ("hungry", "--interval-us 2000 --work-us 1500", 1.0),
];

#[derive(Debug, Clone, serde::Serialize)]
struct Trial {
    config: &'static str,
    probe: &'static str,
    trial: usize,
    summary: Summary,
    /// CPU seconds the hogs got per wall second of the probe window.
    hog_cpus: f64,
}

fn set_weight(cg: &Path, w: u32) -> Result<()> {
    std::fs::write(cg.join("cpu.weight"), w.to_string())
        .with_context(|| format!("cpu.weight of {}", cg.display()))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let o = Opts::parse();
    lab::require_sched_ext();
    if o.trials == 0 || o.seconds.is_nan() || o.seconds <= 0.0 {
        bail!("--trials and --seconds must be positive");
    }
    let me = std::env::current_exe()?;
    let probe_bin = me.with_file_name("prism-probe");
    if !probe_bin.exists() {
        bail!(
            "{} is missing (cargo build --release --workspace)",
            probe_bin.display()
        );
    }
    // Where each scheduler binary is; a configuration whose binary is missing is skipped.
    let binary = |name: &str| -> PathBuf {
        if name == "scx_bpfland" {
            o.scx_bpfland.clone()
        } else {
            me.with_file_name(name)
        }
    };
    let configs: Vec<Config> = CONFIGS
        .into_iter()
        .filter(|c| {
            c.name == EEVDF
                || o.only.is_empty()
                || o.only.iter().any(|w| c.name.contains(w.as_str()))
        })
        .filter(|c| match c.scheduler {
            Some((bin, ..)) if !binary(bin).exists() => {
                eprintln!(
                    "skipping \"{}\": {} is missing",
                    c.name,
                    binary(bin).display()
                );
                false
            }
            _ => true,
        })
        .collect();

    let root = prism_bus::cgroup::cgroup2_root()?;
    lab::enable_cpu_controller(&root);
    let crit = TempCgroup::new("crit");
    let batch = TempCgroup::new("batch");
    let labelled = TempBusDir::new("compare");
    let empty = TempBusDir::new("compare-empty");
    let mut w = BusWriter::create_or_open(&labelled.paths, 1024)?;
    w.write_batch(
        &[
            (crit.id(), sched_entry(300, LatencyClass::Critical, 0)),
            (batch.id(), sched_entry(301, LatencyClass::Batch, 0)),
        ],
        &[],
    )?;
    BusWriter::create_or_open(&empty.paths, 1024)?;
    let nr_hogs = 2 * lab::nr_cpus();
    let probe_args = |a: &str, x: f64| format!("{a} --duration-s {}", o.seconds * x);

    let mut trials: Vec<Trial> = Vec::new();
    let started = Instant::now();
    for trial in 1..=o.trials {
        for config in &configs {
            eprintln!(
                "[{:>5.0}s] trial {trial}/{}: {}",
                started.elapsed().as_secs_f64(),
                o.trials,
                config.name
            );
            set_weight(&crit.path, config.weights.0)?;
            set_weight(&batch.path, config.weights.1)?;
            let sched = config.scheduler.map(|(bin, args, bus)| {
                let dir = match bus {
                    Bus::Labelled => &labelled.paths.dir,
                    Bus::Empty => &empty.paths.dir,
                };
                let mut all: Vec<&str> = args.to_vec();
                if bin != "scx_bpfland" {
                    all.extend(["--bus-dir", dir.to_str().unwrap()]);
                }
                SchedProcess::start(&binary(bin), &all)
            });
            let hogs = config.hogs.then(|| Hogs::start(&batch.path, nr_hogs));
            sleep(Duration::from_millis(300));
            for (probe, args, x) in PROBES {
                let u0 = lab::cpu_usage_us(&batch.path);
                let t0 = Instant::now();
                let summary =
                    Probe::start(&probe_bin, &crit.path, probe, &probe_args(args, x)).finish();
                let hog_cpus =
                    (lab::cpu_usage_us(&batch.path) - u0) as f64 / 1e6 / t0.elapsed().as_secs_f64();
                trials.push(Trial {
                    config: config.name,
                    probe,
                    trial,
                    summary,
                    hog_cpus,
                });
            }
            drop(hogs);
            if let Some(s) = sched {
                let (status, log) = s.stop();
                if !status.success() {
                    bail!("{} failed during the run:\n{log}", config.name);
                }
            }
        }
    }

    report(&trials, &configs);
    if let Some(path) = &o.json {
        std::fs::write(path, serde_json::to_string_pretty(&trials)?)?;
        println!("raw results: {}", path.display());
    }
    Ok(())
}

fn report(trials: &[Trial], configs: &[Config]) {
    for (probe, ..) in PROBES {
        let mut by: BTreeMap<&str, Vec<&Trial>> = BTreeMap::new();
        for c in configs {
            by.insert(
                c.name,
                trials
                    .iter()
                    .filter(|t| t.probe == probe && t.config == c.name)
                    .collect(),
            );
        }
        let med = |c: &str, f: &dyn Fn(&Trial) -> f64| -> (f64, f64, f64) {
            let mut v: Vec<f64> = by[c].iter().map(|t| f(t)).collect();
            let (lo, hi) = v
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
            (median(&mut v), lo, hi)
        };
        let base = |f: &dyn Fn(&Trial) -> f64| med(EEVDF, f).0;
        let (b50, b99, b999, bhog) = (
            base(&|t| t.summary.p50_us),
            base(&|t| t.summary.p99_us),
            base(&|t| t.summary.p999_us),
            base(&|t| t.hog_cpus),
        );
        println!("\nprobe {probe}: median over trials [range]; ratios to EEVDF with equal weights");
        println!(
            "{:<30} {:>18} {:>20} {:>20} {:>8} {:>8} {:>8} {:>9} {:>8}",
            "configuration",
            "p50 us",
            "p99 us",
            "p99.9 us",
            "p50 x",
            "p99 x",
            "p99.9 x",
            "hogs %",
            "samples"
        );
        for c in configs.iter().map(|c| c.name) {
            let (p50, l50, h50) = med(c, &|t| t.summary.p50_us);
            let (p99, l99, h99) = med(c, &|t| t.summary.p99_us);
            let (p999, l999, h999) = med(c, &|t| t.summary.p999_us);
            let (hog, _, _) = med(c, &|t| t.hog_cpus);
            let samples: usize =
                by[c].iter().map(|t| t.summary.samples).sum::<usize>() / by[c].len().max(1);
            println!(
                "{:<30} {:>6.0} [{:>4.0}-{:>4.0}] {:>6.0} [{:>5.0}-{:>5.0}] {:>6.0} [{:>5.0}-{:>5.0}] {:>8.2} {:>8.2} {:>8.2} {:>8.0}% {:>8}",
                c,
                p50,
                l50,
                h50,
                p99,
                l99,
                h99,
                p999,
                l999,
                h999,
                p50 / b50,
                p99 / b99,
                p999 / b999,
                if c == FLOOR {
                    f64::NAN
                } else {
                    100.0 * hog / bhog
                },
                samples
            );
        }
    }
}
