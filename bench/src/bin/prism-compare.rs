//! prism-compare: schedulers side by side in one boot of the lab kernel.
//!
//! A latency probe runs in cgroup /crit while 2 x nCPU CPU hogs run in
//! /batch, under each configuration in turn (interleaved, several trials):
//! the probe alone (its floor), EEVDF with equal weights, EEVDF with cgroup
//! weights (crit 10000, batch 1), scx_prism with /crit critical and /batch
//! batch on the bus, and scx_prism with an empty bus. Prints p50/p99/p99.9
//! (median over trials, and the range) as ratios to EEVDF, and the hogs'
//! throughput as a share of theirs under EEVDF. Run it in the lab guest:
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
#[command(about = "Side-by-side latency of a critical probe under CPU hogs: EEVDF vs scx_prism")]
struct Opts {
    /// Trials per configuration (interleaved).
    #[arg(long, default_value_t = 3)]
    trials: usize,
    /// Seconds each probe measures.
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// The scx_prism binary (default: beside this one).
    #[arg(long)]
    scx_prism: Option<PathBuf>,
    /// Also write the raw results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Config {
    Floor,
    Eevdf,
    EevdfWeights,
    Prism,
    PrismEmptyBus,
}

impl Config {
    const ALL: [Config; 5] = [
        Config::Floor,
        Config::Eevdf,
        Config::EevdfWeights,
        Config::Prism,
        Config::PrismEmptyBus,
    ];

    fn name(self) -> &'static str {
        match self {
            Config::Floor => "floor (probe alone, EEVDF)",
            Config::Eevdf => "EEVDF, equal weights",
            Config::EevdfWeights => "EEVDF, cpu.weight 10000/1",
            Config::Prism => "scx_prism, bus: crit/batch",
            Config::PrismEmptyBus => "scx_prism, empty bus",
        }
    }
}

/// Two probes: a light one (sleeps most of the time) and a CPU-hungry one.
const PROBES: [(&str, &str); 2] = [
    ("light", "--interval-us 2000 --work-us 200"),
    ("hungry", "--interval-us 2000 --work-us 1500"),
];

#[derive(Debug, Clone, serde::Serialize)]
struct Trial {
    config: String,
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
    let scx_prism = o
        .scx_prism
        .clone()
        .unwrap_or_else(|| me.with_file_name("scx_prism"));
    for b in [&probe_bin, &scx_prism] {
        if !b.exists() {
            bail!(
                "{} is missing (cargo build --release --workspace)",
                b.display()
            );
        }
    }
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
    let probe_args = |a: &str| format!("{a} --duration-s {}", o.seconds);

    let mut trials: Vec<Trial> = Vec::new();
    let started = Instant::now();
    for trial in 1..=o.trials {
        for config in Config::ALL {
            eprintln!(
                "[{:>5.0}s] trial {trial}/{}: {}",
                started.elapsed().as_secs_f64(),
                o.trials,
                config.name()
            );
            let (cw, bw) = if config == Config::EevdfWeights {
                (10000, 1)
            } else {
                (100, 100)
            };
            set_weight(&crit.path, cw)?;
            set_weight(&batch.path, bw)?;
            let sched = match config {
                Config::Prism => Some(SchedProcess::start(
                    &scx_prism,
                    &["--bus-dir", labelled.paths.dir.to_str().unwrap()],
                )),
                Config::PrismEmptyBus => Some(SchedProcess::start(
                    &scx_prism,
                    &["--bus-dir", empty.paths.dir.to_str().unwrap()],
                )),
                _ => None,
            };
            let hogs = (config != Config::Floor).then(|| Hogs::start(&batch.path, nr_hogs));
            sleep(Duration::from_millis(300));
            for (probe, args) in PROBES {
                let u0 = lab::cpu_usage_us(&batch.path);
                let t0 = Instant::now();
                let summary =
                    Probe::start(&probe_bin, &crit.path, probe, &probe_args(args)).finish();
                let hog_cpus =
                    (lab::cpu_usage_us(&batch.path) - u0) as f64 / 1e6 / t0.elapsed().as_secs_f64();
                trials.push(Trial {
                    config: config.name().into(),
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
                    bail!("scx_prism failed during the run:\n{log}");
                }
            }
        }
    }

    report(&trials);
    if let Some(path) = &o.json {
        std::fs::write(path, serde_json::to_string_pretty(&trials)?)?;
        println!("raw results: {}", path.display());
    }
    Ok(())
}

fn report(trials: &[Trial]) {
    for (probe, _) in PROBES {
        let mut by: BTreeMap<Config, Vec<&Trial>> = BTreeMap::new();
        for c in Config::ALL {
            by.insert(
                c,
                trials
                    .iter()
                    .filter(|t| t.probe == probe && t.config == c.name())
                    .collect(),
            );
        }
        let med = |c: Config, f: &dyn Fn(&Trial) -> f64| -> (f64, f64, f64) {
            let mut v: Vec<f64> = by[&c].iter().map(|t| f(t)).collect();
            let (lo, hi) = v
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
            (median(&mut v), lo, hi)
        };
        let base = |f: &dyn Fn(&Trial) -> f64| med(Config::Eevdf, f).0;
        let (b50, b99, b999, bhog) = (
            base(&|t| t.summary.p50_us),
            base(&|t| t.summary.p99_us),
            base(&|t| t.summary.p999_us),
            base(&|t| t.hog_cpus),
        );
        println!("\nprobe {probe}: median over trials [range]; ratios to EEVDF with equal weights");
        println!(
            "{:<28} {:>18} {:>20} {:>20} {:>8} {:>8} {:>8} {:>9} {:>8}",
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
        for c in Config::ALL {
            let (p50, l50, h50) = med(c, &|t| t.summary.p50_us);
            let (p99, l99, h99) = med(c, &|t| t.summary.p99_us);
            let (p999, l999, h999) = med(c, &|t| t.summary.p999_us);
            let (hog, _, _) = med(c, &|t| t.hog_cpus);
            let samples: usize =
                by[&c].iter().map(|t| t.summary.samples).sum::<usize>() / by[&c].len().max(1);
            println!(
                "{:<28} {:>6.0} [{:>4.0}-{:>4.0}] {:>6.0} [{:>5.0}-{:>5.0}] {:>6.0} [{:>5.0}-{:>5.0}] {:>8.2} {:>8.2} {:>8.2} {:>8.0}% {:>8}",
                c.name(),
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
                if c == Config::Floor {
                    f64::NAN
                } else {
                    100.0 * hog / bhog
                },
                samples
            );
        }
    }
}
