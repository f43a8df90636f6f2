//! prism-eval: the evaluation suite. Boot the lab kernel once and run, side
//! by side in that boot, every scheduler a user would compare — EEVDF (with
//! equal and with cgroup weights), scx_prism, scx_prism_bpfland with and
//! without --prism, and the published scx_bpfland, scx_rustland and
//! scx_layered (`ci/bench-peers`) — through the scenarios of
//! `prism_bench::eval::scenarios`, with the bus filled end to end by the real
//! prism-feeder from cgroup rules. Trials are interleaved (trial-major), so
//! drift of the emulated machine spreads over every scheduler.
//!
//! Writes raw.csv, summary.csv, report.md and PNG plots to --out.
//!
//!     ci/bench-peers && ci/lab run --results target/prism-eval -- \
//!         target/release/prism-eval --out target/prism-eval
//!     ci/lab run --results target/eval-quick -- target/release/prism-eval --quick --out target/eval-quick
//!     prism-eval --report-only target/prism-eval     # tables and plots again from raw.csv

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;
use prism_bench::eval::report::{self, Row};
use prism_bench::eval::scenarios::{self, Cgroups, Scenario, Tools};
use prism_bench::eval::schedulers::{
    self, Binaries, EEVDF, PRISM_BPFLAND_CLASSES, SCX_PRISM, Scheduler,
};
use prism_bench::eval::{Record, feeder::Feeder, plot};
use prism_bus::{BusWriter, LatencyClass};
use prism_testkit::fixtures::TempBusDir;
use prism_testkit::lab::{self, SchedProcess};

#[derive(Parser)]
#[command(
    about = "Prism's evaluation suite: every scheduler, every scenario, one boot; CSV, markdown and PNG plots",
    after_help = "Run it in the lab guest (ci/lab run --results DIR -- target/release/prism-eval --out DIR). \
--quick is what CI runs: EEVDF, scx_prism and scx_prism_bpfland --prism on idle, contended-2x, selective, empty-bus, \
rpc-chain, timer, messaging, hungry and hungry-unlabelled, \
asserting that in the selective scenario the critical label costs no latency beyond noise \
(and under scx_prism's strict tiers is served before batch), that idle both keep their p99 within 2 x EEVDF's, that scx_prism's contended-2x critical p99 is below 0.3 x EEVDF's, \
that with an empty bus its p99 is within 1.1 x EEVDF's, and that its p50 in both is within 1.25 x; \
that neither of ours is worse than EEVDF on the RPC chain's p99 and the timer's mean lateness, nor beyond \
its noise on the messaging time; and bounds on the CPU-hungry service's p99 and its noise's CPUs (see the report) \
(kube-node is in the full run). Each scenario's plot shows its p99 bars and, beside them, the latency CDF per scheduler; \
the report gives each scheduler process's CPU time per 1,000 context switches."
)]
struct Opts {
    /// Where raw.csv, summary.csv, report.md and the plots go.
    #[arg(long, default_value = "target/prism-eval")]
    out: PathBuf,
    /// Trials per scheduler and scenario (interleaved). Default: 5, --quick 3.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    trials: Option<u32>,
    /// Seconds each scenario measures. Default: 4, --quick 2.
    #[arg(long)]
    seconds: Option<f64>,
    /// CI's run: ours and EEVDF on idle, contended-2x, selective, empty-bus, rpc-chain, timer,
    /// messaging, hungry and hungry-unlabelled, with assertions.
    #[arg(long, conflicts_with = "demo")]
    quick: bool,
    /// The README demo: EEVDF vs scx_prism on contended-2x and selective, one trial.
    #[arg(long)]
    demo: bool,
    /// Only schedulers whose name contains one of these (repeatable); EEVDF always runs.
    #[arg(long)]
    only: Vec<String>,
    /// Only these scenarios (repeatable: idle, contended-1x, contended-2x, contended-4x,
    /// selective, fairness, empty-bus, rpc-chain, kube-node, timer, messaging, hungry,
    /// hungry-unlabelled).
    #[arg(long)]
    scenario: Vec<String>,
    /// Where the published peers are (ci/bench-peers installs them); missing ones are skipped.
    #[arg(long, default_value = ".lab-cache/peers/bin")]
    peers_dir: PathBuf,
    /// Make report.md, summary.csv and the plots again from DIR/raw.csv; runs nothing.
    #[arg(long, value_name = "DIR")]
    report_only: Option<PathBuf>,
}

struct Plan {
    schedulers: Vec<Scheduler>,
    scenarios: Vec<Scenario>,
    trials: usize,
    seconds: f64,
}

fn plan(o: &Opts, bins: &Binaries) -> Result<(Plan, Vec<String>)> {
    let (names, scens): (Vec<&str>, Vec<Scenario>) = if o.quick {
        (schedulers::QUICK.to_vec(), scenarios::QUICK.to_vec())
    } else if o.demo {
        (schedulers::DEMO.to_vec(), scenarios::DEMO.to_vec())
    } else {
        (
            schedulers::ALL.iter().map(|s| s.name).collect(),
            scenarios::ALL.to_vec(),
        )
    };
    let mut skipped = Vec::new();
    let schedulers = names
        .into_iter()
        .filter_map(schedulers::by_name)
        .filter(|s| {
            s.name == EEVDF
                || o.only.is_empty()
                || o.only.iter().any(|w| s.name.contains(w.as_str()))
        })
        .filter(|s| match s.binary(bins) {
            Some(b) if !b.exists() => {
                skipped.push(format!("{}: {} is missing", s.name, b.display()));
                false
            }
            _ => true,
        })
        .collect();
    for want in &o.scenario {
        if !scenarios::ALL.iter().any(|s| &s.name() == want) {
            bail!("no scenario {want:?} (see --help)");
        }
    }
    let scenarios = scens
        .into_iter()
        .filter(|s| o.scenario.is_empty() || o.scenario.contains(&s.name()))
        .collect();
    let trials = o.trials.map_or(
        if o.quick {
            3
        } else if o.demo {
            1
        } else {
            5
        },
        |t| t as usize,
    );
    let seconds = o.seconds.unwrap_or(if o.quick { 2.0 } else { 4.0 });
    if !(seconds > 0.0 && seconds <= 600.0) {
        bail!("--seconds must be in (0, 600]");
    }
    Ok((
        Plan {
            schedulers,
            scenarios,
            trials,
            seconds,
        },
        skipped,
    ))
}

/// Progress on stderr: step i of n, elapsed, a rough time left.
struct Progress {
    started: Instant,
    done: usize,
    total: usize,
}

impl Progress {
    fn step(&mut self, what: &str) {
        let el = self.started.elapsed().as_secs_f64();
        let left = if self.done == 0 {
            String::new()
        } else {
            format!(
                ", ~{:.0}s left",
                el / self.done as f64 * (self.total - self.done) as f64
            )
        };
        eprintln!("[{el:>5.0}s {}/{}{left}] {what}", self.done + 1, self.total);
        self.done += 1;
    }
}

fn main() -> Result<()> {
    let o = Opts::parse();
    if let Some(dir) = &o.report_only {
        let records = report::read_raw(&dir.join("raw.csv"))?;
        let command = format!("prism-eval --report-only {}", dir.display());
        let (rows, _) = write_report(dir, &records, &command, "", &[])?;
        print_summary(&rows);
        return Ok(());
    }
    lab::require_sched_ext();
    let bin_dir = tools_dir()?;
    let bins = Binaries {
        ours: bin_dir.clone(),
        peers: o.peers_dir.clone(),
    };
    let (plan, failures) = plan(&o, &bins)?;
    std::fs::create_dir_all(&o.out).with_context(|| o.out.display().to_string())?;
    let stage = Stage::set_up(&bin_dir, &o.out)?;
    let mut run = Run {
        tools: Tools {
            probe: bin_dir.join("prism-probe"),
            rpc: bin_dir.join("prism-rpc"),
            messaging: bin_dir.join("prism-messaging"),
            seconds: plan.seconds,
        },
        progress: Progress {
            started: Instant::now(),
            done: 0,
            total: plan.trials * plan.schedulers.len() * plan.scenarios.len(),
        },
        o: &o,
        plan: &plan,
        bins: &bins,
        stage,
        records: Vec::new(),
        failures,
    };
    for trial in 1..=plan.trials {
        for s in &plan.schedulers {
            run.one_scheduler(trial, s)?;
        }
    }
    let Run {
        records,
        mut failures,
        stage,
        ..
    } = run;
    drop(stage); // the feeder stops, the cgroups and buses go

    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let (rows, plot_errors) =
        write_report(&o.out, &records, &command, &environment(&plan), &failures)?;
    print_summary(&rows);
    failures.extend(plot_errors);
    for f in &failures {
        eprintln!("not run or failed: {f}");
    }
    if o.quick {
        quick_checks(&rows, &failures)?;
    }
    if o.demo {
        demo_table(&rows);
    }
    Ok(())
}

/// The directory of this binary, which holds the tools it runs.
fn tools_dir() -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let bin_dir = me.parent().context("own directory")?.to_path_buf();
    for tool in [
        "prism-probe",
        "prism-rpc",
        "prism-messaging",
        "prism-feeder",
    ] {
        if !bin_dir.join(tool).exists() {
            bail!(
                "{} is missing (cargo build --release --workspace)",
                bin_dir.join(tool).display()
            );
        }
    }
    Ok(bin_dir)
}

/// What every run shares: the scenario cgroups, labelled by the real feeder,
/// an empty bus beside, scx_layered's configuration, the logs directory.
struct Stage {
    cg: Cgroups,
    labelled: TempBusDir,
    empty: TempBusDir,
    feeder: Feeder,
    layered_cfg: PathBuf,
    logs: PathBuf,
}

impl Stage {
    fn set_up(bin_dir: &Path, out: &Path) -> Result<Stage> {
        let cg = Cgroups::new();
        let labelled = TempBusDir::new("eval");
        let empty = TempBusDir::new("eval-empty");
        BusWriter::create_or_open(&empty.paths, 1024)?;
        let mut feeder = Feeder::start(
            &bin_dir.join("prism-feeder"),
            &cg.root.path,
            &labelled.paths.dir,
        )?;
        feeder.wait_for(
            &labelled.paths.dir,
            &[
                (cg.crit.id(), LatencyClass::Critical),
                (cg.normal.id(), LatencyClass::Normal),
                (cg.batch.id(), LatencyClass::Batch),
            ],
        )?;
        eprintln!("prism-feeder labelled crit/normal/batch (plain has no identity)");
        let layered_cfg = out.join("scx_layered.json");
        std::fs::write(
            &layered_cfg,
            schedulers::layered_config(&format!("{}/crit", cg.root_relative())),
        )?;
        let logs = out.join("logs");
        std::fs::create_dir_all(&logs)?;
        Ok(Stage {
            cg,
            labelled,
            empty,
            feeder,
            layered_cfg,
            logs,
        })
    }
}

/// A run in progress: what it measured and what failed so far.
struct Run<'a> {
    o: &'a Opts,
    plan: &'a Plan,
    bins: &'a Binaries,
    tools: Tools,
    stage: Stage,
    progress: Progress,
    records: Vec<Record>,
    failures: Vec<String>,
}

impl Run<'_> {
    /// One trial of one scheduler: every scenario on the feeder's bus, then
    /// (for a scheduler that reads the bus) the empty-bus scenario on the
    /// empty one, each group under one load of the scheduler.
    fn one_scheduler(&mut self, trial: usize, s: &Scheduler) -> Result<()> {
        let weights = if s.cgroup_weights {
            (10000, 100, 1)
        } else {
            (100, 100, 100)
        };
        self.stage.cg.set_weights(weights)?;
        for use_empty in [false, true] {
            let group: Vec<Scenario> = self
                .plan
                .scenarios
                .iter()
                .copied()
                .filter(|sc| (*sc == Scenario::EmptyBus && s.reads_bus) == use_empty)
                .collect();
            if !group.is_empty() {
                self.one_load(trial, s, use_empty, &group)?;
            }
        }
        // what was measured so far survives a crash or an interrupted run
        report::write_csv(&self.o.out.join("raw.csv"), &self.records)?;
        if !self.stage.feeder.alive() {
            bail!("prism-feeder died:\n{}", self.stage.feeder.log());
        }
        Ok(())
    }

    /// Load the scheduler, run `group` under it, stop it and keep its log.
    fn one_load(
        &mut self,
        trial: usize,
        s: &Scheduler,
        use_empty: bool,
        group: &[Scenario],
    ) -> Result<()> {
        let bus = if use_empty {
            &self.stage.empty.paths.dir
        } else {
            &self.stage.labelled.paths.dir
        };
        let mut sched = match s.binary(self.bins) {
            None => None,
            Some(bin) => {
                let args = s.args(bus, &self.stage.layered_cfg);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                match SchedProcess::try_start(&bin, &args) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        self.failures.push(format!(
                            "{} (trial {trial}) did not load: {}",
                            s.name,
                            tail(&e)
                        ));
                        self.progress.done += group.len();
                        return Ok(());
                    }
                }
            }
        };
        for &sc in group {
            if !self.one_scenario(trial, s, sc, sched.as_mut()) {
                break;
            }
        }
        if let Some(p) = sched {
            let (status, log) = p.stop();
            let bus_kind = if use_empty { "empty-bus" } else { "bus" };
            let file = format!(
                "{}-trial{trial}-{bus_kind}.log",
                s.name.replace([' ', '/'], "_")
            );
            std::fs::write(self.stage.logs.join(file), &log)?;
            if !status.success() && !lab::wait_state("disabled", std::time::Duration::from_secs(10))
            {
                self.failures.push(format!(
                    "{} (trial {trial}) did not stop cleanly: {}",
                    s.name,
                    tail(&log)
                ));
            }
        }
        Ok(())
    }

    /// Run one scenario and record its figures, with the scheduler
    /// process's CPU per context switch; false if the scheduler was ejected.
    fn one_scenario(
        &mut self,
        trial: usize,
        s: &Scheduler,
        sc: Scenario,
        sched: Option<&mut SchedProcess>,
    ) -> bool {
        self.progress.step(&format!(
            "trial {trial}/{}: {} / {}",
            self.plan.trials,
            s.name,
            sc.name()
        ));
        let cost_from = sched
            .as_ref()
            .map(|p| (lab::process_cpu_ns(p.pid()), lab::context_switches()));
        let mut figures = match scenarios::run(sc, &self.stage.cg, &self.tools) {
            Ok(f) => f,
            Err(e) => {
                self.failures
                    .push(format!("{} / {} (trial {trial}): {e}", s.name, sc.name()));
                return true;
            }
        };
        if let Some(p) = sched {
            if !p.alive() || lab::state() != "enabled" {
                self.failures.push(format!(
                    "{} (trial {trial}) was ejected during {}: {}",
                    s.name,
                    sc.name(),
                    tail(&p.log_text())
                ));
                return false;
            }
            if let Some((cpu, switches)) = cost_from
                && let Some(v) = scenarios::scheduler_cost(
                    lab::process_cpu_ns(p.pid()).saturating_sub(cpu),
                    lab::context_switches().saturating_sub(switches),
                )
            {
                figures.push(("scheduler".into(), scenarios::SCHEDULER_COST.into(), v));
            }
        }
        self.records
            .extend(figures.into_iter().map(|(subject, metric, value)| Record {
                trial,
                scheduler: s.name.into(),
                scenario: sc.name(),
                subject,
                metric,
                value,
            }));
        true
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(6)..].join(" | ")
}

fn environment(p: &Plan) -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "Kernel {}, {} CPUs; {} trials x {} s per scenario; probes and hogs are prism-probe, prism-rpc and busy shell loops.",
        kernel.trim(),
        lab::nr_cpus(),
        p.trials,
        p.seconds
    )
}

/// summary.csv, report.md and the plots in `dir` (raw.csv too, unless it is
/// what the report was made from). Returns the summary and what could not
/// be plotted.
fn write_report(
    dir: &Path,
    records: &[Record],
    command: &str,
    env: &str,
    failures: &[String],
) -> Result<(Vec<Row>, Vec<String>)> {
    if !env.is_empty() {
        report::write_csv(&dir.join("raw.csv"), records)?;
    }
    let rows = report::summarize(records);
    report::write_csv(&dir.join("summary.csv"), &rows)?;
    let scheds = report::ordered(rows.iter().map(|r| r.scheduler.as_str()));
    let described: Vec<(String, String)> = scenarios::ALL
        .iter()
        .filter(|s| rows.iter().any(|r| r.scenario == s.name()))
        .map(|s| match s {
            Scenario::KubeNode => {
                let n = lab::nr_cpus();
                let promised: Vec<String> = scenarios::kube_node_ideal(n)
                    .iter()
                    .map(|(leaf, pct)| format!("{leaf} {pct:.1}%"))
                    .collect();
                let promise = format!(" The weights promise ({n} CPUs): {}.", promised.join(", "));
                (s.name(), s.describe() + &promise)
            }
            _ => (s.name(), s.describe()),
        })
        .collect();
    let mut plots = Vec::new();
    let mut plot_errors = Vec::new();
    for sc in scenarios::ALL
        .iter()
        .filter(|s| rows.iter().any(|r| r.scenario == s.name()))
    {
        // the bars, and beside them the latency distribution of the one
        // the scenario is for
        let (subjects, metric, cdf_of): (Vec<String>, &str, _) = match sc {
            Scenario::Selective => (
                vec!["critical".into(), "normal".into(), "batch".into()],
                "p99_us",
                Some("critical"),
            ),
            Scenario::Fairness => (
                vec!["critical".into(), "normal".into()],
                "cpu_share_pct",
                None,
            ),
            Scenario::Messaging => (vec!["messaging".into()], "seconds", None),
            Scenario::Hungry { .. } => (vec!["service".into()], "p99_us", Some("service")),
            _ => (vec!["critical".into()], "p99_us", Some("critical")),
        };
        let file = format!("{}.png", sc.name());
        match plot::scenario(
            &dir.join(&file),
            &rows,
            &sc.name(),
            &scheds,
            &subjects,
            metric,
            cdf_of,
        ) {
            Ok(()) => plots.push(file),
            Err(e) => plot_errors.push(format!("plot {file}: {e}")),
        }
    }
    let mut all_failures = failures.to_vec();
    all_failures.extend(plot_errors.iter().cloned());
    let md = report::markdown(
        &rows,
        &report::Head {
            title: "Prism evaluation",
            command,
            environment: if env.is_empty() {
                "(re-made from raw.csv)"
            } else {
                env
            },
            scenarios: &described,
            failures: &all_failures,
            plots: &plots,
        },
    );
    std::fs::write(dir.join("report.md"), &md)?;
    println!("{md}");
    println!(
        "written: {}/{{raw.csv,summary.csv,report.md}} and {} plots",
        dir.display(),
        plots.len()
    );
    Ok((rows, plot_errors))
}

fn print_summary(rows: &[Row]) {
    let n = rows.iter().filter(|r| r.metric == "p99_us").count();
    eprintln!("{} figures summarised ({n} p99s)", rows.len());
}

fn p99(rows: &[Row], s: &str, sc: &str, su: &str) -> Option<f64> {
    metric(rows, s, sc, su, "p99_us")
}

fn metric(rows: &[Row], s: &str, sc: &str, su: &str, m: &str) -> Option<f64> {
    report::find(rows, s, sc, su, m).map(|r| r.median)
}

/// CI's assertions on a --quick run. The selective scenario (timed from
/// each request's arrival): for both of our bus-reading schedulers the
/// critical label never costs latency beyond noise (critical's p50 within
/// 1.25 x normal's and batch's, its p99 within 1.5 x: the p99s of all three
/// sit near 4 ms, where this emulated machine delivers timers late under
/// load); scx_prism, whose classes are strict tiers, also serves critical
/// strictly before batch at the median. (scx_prism_bpfland's classes are
/// weights and preemption rights: a batch probe that sleeps most of the time
/// is served nearly as soon; its p50s were within 2-17% of each other.)
/// Idle, both keep their p99 within 2 x EEVDF's.
/// scx_prism's contended-2x critical p99 is below 0.3 x EEVDF's; with an
/// empty bus its p99 is within 1.1 x EEVDF's; and its p50 in both is within
/// 1.25 x (the targets, but for the 1/15 no scheduler reaches under
/// emulation, and with room for EEVDF's p50, which ranged 240-710 us over
/// 2 s runs, against ours 175-320).
fn quick_checks(rows: &[Row], failures: &[String]) -> Result<()> {
    let mut bad: Vec<String> = failures.iter().map(|f| format!("failure: {f}")).collect();
    for s in [SCX_PRISM, PRISM_BPFLAND_CLASSES] {
        let get = |su, m| metric(rows, s, "selective", su, m);
        match (
            [
                get("critical", "p50_us"),
                get("normal", "p50_us"),
                get("batch", "p50_us"),
            ],
            [
                get("critical", "p99_us"),
                get("normal", "p99_us"),
                get("batch", "p99_us"),
            ],
        ) {
            ([Some(c50), Some(n50), Some(b50)], [Some(c99), Some(n99), Some(b99)]) => {
                if !(c50 <= 1.25 * n50 && c50 <= 1.25 * b50) {
                    bad.push(format!(
                        "{s}: selective p50 critical {c50:.0} us: above 1.25 x normal {n50:.0} or batch {b50:.0}"
                    ));
                }
                if !(c99 <= 1.5 * n99 && c99 <= 1.5 * b99) {
                    bad.push(format!(
                        "{s}: selective p99 critical {c99:.0} us: above 1.5 x normal {n99:.0} or batch {b99:.0}"
                    ));
                }
                if s == SCX_PRISM && c50 >= b50 {
                    bad.push(format!(
                        "{s}: selective p50 critical {c50:.0} us: not below batch {b50:.0} (strict tiers)"
                    ));
                }
            }
            _ => bad.push(format!("{s}: no selective figures")),
        }
    }
    // With every CPU idle, both of ours stay near the machine's floor: the
    // idle tail scx_prism_bpfland had without queued wakeups was 5-8x EEVDF's
    // p99; since, quick runs gave 0.73-1.12x for both
    for s in [SCX_PRISM, PRISM_BPFLAND_CLASSES] {
        match (
            p99(rows, s, "idle", "critical"),
            p99(rows, EEVDF, "idle", "critical"),
        ) {
            (Some(p), Some(e)) if p <= 2.0 * e => {}
            (Some(p), Some(e)) => bad.push(format!(
                "{s}: idle critical p99 {p:.0} us > 2 x EEVDF's {e:.0} us"
            )),
            _ => bad.push(format!("{s}: no idle figures")),
        }
    }
    // EEVDF reads no bus: its contended-2x and empty-bus runs are the same
    // experiment, so its baseline is both (one 3 x 2 s p99 median ranged 2.2-7 ms)
    let eevdf = |m: &str| match (
        metric(rows, EEVDF, "empty-bus", "critical", m),
        metric(rows, EEVDF, "contended-2x", "critical", m),
    ) {
        (Some(a), Some(b)) => Some((a + b) / 2.0),
        (a, b) => a.or(b),
    };
    for (scenario, m, bound) in [
        ("contended-2x", "p99_us", 0.3),
        ("contended-2x", "p50_us", 1.25),
        ("empty-bus", "p99_us", 1.1),
        ("empty-bus", "p50_us", 1.25),
    ] {
        match (metric(rows, SCX_PRISM, scenario, "critical", m), eevdf(m)) {
            (Some(p), Some(e)) if p <= bound * e => {}
            (Some(p), Some(e)) => bad.push(format!(
                "scx_prism {scenario} critical {m} {p:.0} us > {bound} x EEVDF's {e:.0} us"
            )),
            _ => bad.push(format!("no {scenario} {m} figures for scx_prism and EEVDF")),
        }
    }
    // The workloads an outside evaluation found missing from the suite: an
    // RPC chain's tail, a timer-driven task's mean lateness, a messaging
    // load's time. Neither of ours may be worse than EEVDF on them; for the
    // messaging time, beyond its noise (scx_prism 0.82-1.01 s against
    // EEVDF's 1.01-1.27 s in one 5-trial run; it took 2.4-2.8x before
    // interactive tasks stopped preempting each other).
    for s in [SCX_PRISM, PRISM_BPFLAND_CLASSES] {
        for (scenario, subject, m, bound) in [
            ("rpc-chain", "critical", "p99_us", 1.0),
            ("timer", "critical", "mean_us", 1.0),
            ("messaging", "messaging", "seconds", 1.25),
        ] {
            match (
                metric(rows, s, scenario, subject, m),
                metric(rows, EEVDF, scenario, subject, m),
            ) {
                (Some(p), Some(e)) if p <= bound * e => {}
                (Some(p), Some(e)) => bad.push(format!(
                    "{s}: {scenario} {subject} {m} {p:.2} > {bound} x EEVDF's {e:.2}"
                )),
                _ => bad.push(format!("{s}: no {scenario} figures")),
            }
        }
    }
    hungry_checks(rows, &mut bad);
    if !bad.is_empty() {
        bail!("quick evaluation failed:\n  {}", bad.join("\n  "));
    }
    eprintln!(
        "quick evaluation: selective: the critical label costs nothing (scx_prism: served before batch); idle p99 within 2 x EEVDF; scx_prism contended-2x critical p99 below 0.3 x EEVDF's; empty-bus p99 within 1.1 x; p50 in both within 1.25 x"
    );
    Ok(())
}

/// The demo's before (EEVDF) / after (scx_prism) table.
/// The CPU-hungry service (1.9 CPUs of demand on 2, beside 2 x nCPU hogs;
/// its p99 is the backlog the CPU it is given leaves). Labelled critical:
/// scx_prism's p99 within 0.6 x EEVDF's (the target is 0.5; the
/// quick run of 2026-12-05 measured 0.38) with the noise keeping at least
/// 0.8 x its 25% --min-share of the CPUs (measured 0.59 CPUs of 2);
/// scx_prism_bpfland --prism within 1.1 x EEVDF: its classes act inside a
/// cgroup's share, and this service is a cgroup of its own, so it gets the
/// CPU EEVDF gives it (measured 1.02-1.03 x; the 0.78-0.90 x before the
/// averaged runnable weights came from taking a tenth of the batch
/// cgroup's CPU through instantaneous sums). Unlabelled: both within
/// 1.35 x EEVDF (measured 1.07 and 1.11; the 1.0 is not met,
/// scx_bpfland's 1.98 is beaten).
fn hungry_checks(rows: &[Row], bad: &mut Vec<String>) {
    let bounds = [
        (SCX_PRISM, "hungry", 0.6),
        (PRISM_BPFLAND_CLASSES, "hungry", 1.1),
        (SCX_PRISM, "hungry-unlabelled", 1.35),
        (PRISM_BPFLAND_CLASSES, "hungry-unlabelled", 1.35),
    ];
    for (s, scenario, bound) in bounds {
        match (
            p99(rows, s, scenario, "service"),
            p99(rows, EEVDF, scenario, "service"),
        ) {
            (Some(p), Some(e)) if p <= bound * e => {}
            (Some(p), Some(e)) => bad.push(format!(
                "{s}: {scenario} service p99 {p:.0} us > {bound} x EEVDF's {e:.0} us"
            )),
            _ => bad.push(format!("{s}: no {scenario} figures")),
        }
    }
    let floor = 0.8 * 0.25 * lab::nr_cpus() as f64;
    match metric(rows, SCX_PRISM, "hungry", "hogs", "cpus") {
        Some(c) if c >= floor => {}
        Some(c) => bad.push(format!(
            "scx_prism: hungry noise kept {c:.2} CPUs, under {floor:.2} (its --min-share)"
        )),
        None => bad.push("scx_prism: no hungry noise figure".into()),
    }
}

fn demo_table(rows: &[Row]) {
    println!(
        "\n{:<30} {:>16} {:>16} {:>8}",
        "wakeup p99 (us)", "before: EEVDF", "after: scx_prism", "ratio"
    );
    for (sc, su) in [
        ("contended-2x", "critical"),
        ("selective", "critical"),
        ("selective", "batch"),
    ] {
        if let (Some(b), Some(a)) = (p99(rows, EEVDF, sc, su), p99(rows, SCX_PRISM, sc, su)) {
            println!(
                "{:<30} {:>16.0} {:>16.0} {:>8.2}",
                format!("{sc}, {su}"),
                b,
                a,
                a / b
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(s: &str, sc: &str, su: &str, m: &str, v: f64) -> Row {
        Row {
            scheduler: s.into(),
            scenario: sc.into(),
            subject: su.into(),
            metric: m.into(),
            median: v,
            ci_lo: v,
            ci_hi: v,
            trials: 3,
            vs_eevdf: f64::NAN,
        }
    }

    /// A run that passes every check: the figures of the quick run at
    /// 4078adc with the selective probes timed from arrival.
    fn passing() -> Vec<Row> {
        let mut rows = Vec::new();
        for s in [SCX_PRISM, PRISM_BPFLAND_CLASSES] {
            for (su, p50, p99) in [
                ("critical", 720.0, 4050.0),
                ("normal", 780.0, 4040.0),
                ("batch", 860.0, 4780.0),
            ] {
                rows.push(row(s, "selective", su, "p50_us", p50));
                rows.push(row(s, "selective", su, "p99_us", p99));
            }
        }
        for (sc, s, p50, p99) in [
            ("idle", EEVDF, 110.0, 420.0),
            ("idle", SCX_PRISM, 100.0, 360.0),
            ("idle", PRISM_BPFLAND_CLASSES, 100.0, 310.0),
            ("contended-2x", EEVDF, 390.0, 3840.0),
            ("empty-bus", EEVDF, 400.0, 4080.0),
            ("contended-2x", SCX_PRISM, 150.0, 370.0),
            ("empty-bus", SCX_PRISM, 150.0, 320.0),
        ] {
            rows.push(row(s, sc, "critical", "p50_us", p50));
            rows.push(row(s, sc, "critical", "p99_us", p99));
        }
        // the quick run of 2026-12-04 (scx_prism's same-class preemption
        // sparing interactive tasks); messaging from the 5-trial run with
        // each thread timing itself
        for (s, rpc99, timer_mean, seconds) in [
            (EEVDF, 11196.0, 404.0, 1.15),
            (SCX_PRISM, 6411.0, 303.0, 1.01),
            (PRISM_BPFLAND_CLASSES, 6633.0, 313.0, 0.69),
        ] {
            rows.push(row(s, "rpc-chain", "critical", "p99_us", rpc99));
            rows.push(row(s, "timer", "critical", "mean_us", timer_mean));
            rows.push(row(s, "messaging", "messaging", "seconds", seconds));
        }
        // the quick run of 2026-12-05
        for (s, labelled, unlabelled) in [
            (EEVDF, 1967941.0, 1967033.0),
            (SCX_PRISM, 753554.0, 2210449.0),
            (PRISM_BPFLAND_CLASSES, 1621519.0, 2288701.0),
        ] {
            rows.push(row(s, "hungry", "service", "p99_us", labelled));
            rows.push(row(s, "hungry-unlabelled", "service", "p99_us", unlabelled));
        }
        rows.push(row(
            SCX_PRISM,
            "hungry",
            "hogs",
            "cpus",
            0.3 * lab::nr_cpus() as f64,
        ));
        rows
    }

    fn set(rows: &mut [Row], s: &str, sc: &str, su: &str, m: &str, v: f64) {
        let r = rows
            .iter_mut()
            .find(|r| r.scheduler == s && r.scenario == sc && r.subject == su && r.metric == m)
            .expect("row");
        r.median = v;
    }

    #[test]
    fn worse_than_eevdf_on_messaging_timer_or_rpc_fails() {
        let mut rows = passing();
        set(
            &mut rows,
            SCX_PRISM,
            "messaging",
            "messaging",
            "seconds",
            2.41,
        );
        set(
            &mut rows,
            PRISM_BPFLAND_CLASSES,
            "timer",
            "critical",
            "mean_us",
            7560.0,
        );
        let e = quick_checks(&rows, &[]).unwrap_err().to_string();
        assert!(
            e.contains("scx_prism: messaging messaging seconds 2.41"),
            "{e}"
        );
        assert!(e.contains("timer critical mean_us 7560.00"), "{e}");
        assert!(!e.contains("rpc-chain"), "{e}");
    }

    #[test]
    fn a_hungry_service_starved_or_starving_the_noise_fails() {
        let mut rows = passing();
        set(
            &mut rows,
            SCX_PRISM,
            "hungry",
            "service",
            "p99_us",
            1_400_000.0,
        );
        set(&mut rows, SCX_PRISM, "hungry", "hogs", "cpus", 0.1);
        let e = quick_checks(&rows, &[]).unwrap_err().to_string();
        assert!(e.contains("scx_prism: hungry service p99 1400000"), "{e}");
        assert!(e.contains("hungry noise kept 0.10 CPUs"), "{e}");
        assert!(!e.contains("hungry-unlabelled"), "{e}");
        let mut rows = passing();
        set(
            &mut rows,
            PRISM_BPFLAND_CLASSES,
            "hungry-unlabelled",
            "service",
            "p99_us",
            3e6,
        );
        let e = quick_checks(&rows, &[]).unwrap_err().to_string();
        assert!(e.contains("hungry-unlabelled service p99 3000000"), "{e}");
    }

    #[test]
    fn a_run_meeting_every_bound_passes() {
        quick_checks(&passing(), &[]).unwrap();
    }

    #[test]
    fn critical_served_later_than_normal_beyond_noise_fails() {
        let mut rows = passing();
        let s = PRISM_BPFLAND_CLASSES;
        set(&mut rows, s, "selective", "critical", "p50_us", 1000.0);
        let e = quick_checks(&rows, &[]).unwrap_err().to_string();
        assert!(e.contains("selective p50 critical 1000"), "{e}");
    }

    #[test]
    fn strict_tiers_must_serve_critical_before_batch_and_weights_need_not() {
        let mut rows = passing();
        for s in [SCX_PRISM, PRISM_BPFLAND_CLASSES] {
            set(&mut rows, s, "selective", "critical", "p50_us", 870.0);
        }
        let e = quick_checks(&rows, &[]).unwrap_err().to_string();
        assert!(
            e.contains("scx_prism: selective p50 critical 870 us: not below batch"),
            "{e}"
        );
        assert!(!e.contains(PRISM_BPFLAND_CLASSES), "{e}");
    }

    #[test]
    fn a_tail_inversion_beyond_the_timer_noise_fails() {
        let mut rows = passing();
        set(&mut rows, SCX_PRISM, "selective", "batch", "p99_us", 2000.0);
        let e = quick_checks(&rows, &[]).unwrap_err().to_string();
        assert!(e.contains("selective p99 critical 4050"), "{e}");
    }

    #[test]
    fn missing_figures_and_probe_failures_fail() {
        let rows: Vec<Row> = passing()
            .into_iter()
            .filter(|r| r.subject != "batch")
            .collect();
        let e = quick_checks(&rows, &["probe died".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no selective figures") && e.contains("probe died"),
            "{e}"
        );
    }

    #[test]
    fn an_idle_tail_like_the_missing_queued_wakeups_fails() {
        let mut rows = passing();
        set(
            &mut rows,
            PRISM_BPFLAND_CLASSES,
            "idle",
            "critical",
            "p99_us",
            2433.0,
        );
        let e = quick_checks(&rows, &[]).unwrap_err().to_string();
        assert!(e.contains("idle critical p99 2433"), "{e}");
    }

    #[test]
    fn scx_prism_above_its_bounds_against_eevdf_fails() {
        let mut rows = passing();
        set(
            &mut rows,
            SCX_PRISM,
            "empty-bus",
            "critical",
            "p99_us",
            5000.0,
        );
        let e = quick_checks(&rows, &[]).unwrap_err().to_string();
        assert!(e.contains("empty-bus critical p99_us 5000"), "{e}");
    }
}
