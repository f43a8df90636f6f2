//! The scenarios prism-eval runs under each scheduler, in the cgroups the
//! feeder labels: `crit` (critical), `normal`, `batch`, and `plain` and
//! `noise` (no identity).

use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use prism_testkit::fixtures::TempCgroup;

use prism_testkit::contract::{self, Tree};
use prism_testkit::lab::{self, Hogs, Probe};
use prism_testkit::latency::{CDF_PER_MILLE, Summary, cdf_metric};

/// The request probe: a dispatcher hands requests to 2 workers every 2 ms;
/// each worker records hand-off to run (the scheduler's wakeup latency,
/// without the timer's own delivery delay) and works 300 us.
const PROBE: &str = "--workers 2 --interval-us 2000 --work-us 300";
/// Lighter probes for the three-at-once scenario: within a normal task's
/// fair share under this load, so the classes, not the load, decide. Timed
/// from each request's arrival: side by side, the hand-off alone hid how long
/// the batch probe's dispatcher waited (its worker then ran at once in the
/// slot the dispatcher left, and the critical probe's preemptions ended hog
/// slices for it too: batch's hand-off p99 came out below critical's).
const SELECTIVE_PROBE: &str = "--workers 2 --interval-us 2000 --work-us 250 --from-arrival";
/// The RPC chain: 3 services, 100 requests/s, 100 us of work per hop. Each
/// request is 6 wakeups; under TCG with the hogs one costs ~0.3-0.5 ms, so
/// at 500/s the chain could not keep up and every scheduler would only show
/// the queue growing. Measured 2.5 x longer than the probes, for samples.
const RPC: &str = "--stages 3 --rate 100 --work-us 100";
const RPC_LENGTH: f64 = 2.5;
/// The timer's mean lateness is mostly its few waits of a tick (p99 2-5 ms
/// against a median of 0.2-0.3 ms), so it is measured 2 x longer, for more
/// of them: in 2 s windows EEVDF's own mean ranged 381-565 us over three
/// trials of one run, in 4 s windows 446-540 over five.
const TIMER_LENGTH: f64 = 2.0;
/// A control loop's tick: a 1 ms deadline, 50 us of work.
const TIMER_PROBE: &str = "--interval-us 1000 --work-us 50";
/// A CPU-hungry request service: a request every 1 ms, each 1.9 ms of work,
/// handed in turn to 2 workers: 1.9 CPUs of demand on 2 (a service wanting
/// more than its share beside other load), timed from each request's
/// arrival (the queueing behind a worker's last request counts).
const HUNGRY: &str = "--workers 2 --interval-us 1000 --work-us 1900 --from-arrival --cpu-work";
const MESSAGING: &str = "--groups 4 --senders 20 --receivers 20 --messages 200";
const MESSAGING_THREADS: usize = 160;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// The critical probe under k x nCPU batch hogs.
    Contended(usize),
    /// Identical critical, normal and batch probes at once, 2 x nCPU unlabelled hogs.
    Selective,
    /// nCPU critical hogs and nCPU normal hogs: the normal share of CPU.
    Fairness,
    /// Contended(2) with the scheduler reading an empty bus.
    EmptyBus,
    /// The RPC chain (critical) under 2 x nCPU batch hogs.
    Rpc,
    /// The critical probe alone: the floor this machine allows.
    Idle,
    /// The kubelet's cgroup tree, every leaf busy, beside the critical probe.
    KubeNode,
    /// A critical task woken by its own 1 ms timer under 2 x nCPU batch hogs.
    Timer,
    /// Groups of unlabelled senders and receivers over pipes, nothing else:
    /// the time they take.
    Messaging,
    /// The CPU-hungry request service beside 2 x nCPU hogs: critical beside
    /// batch (labelled), or both without identity.
    Hungry { labelled: bool },
}

pub const ALL: [Scenario; 13] = [
    Scenario::Idle,
    Scenario::Contended(1),
    Scenario::Contended(2),
    Scenario::Contended(4),
    Scenario::Selective,
    Scenario::Fairness,
    Scenario::EmptyBus,
    Scenario::Rpc,
    Scenario::KubeNode,
    Scenario::Timer,
    Scenario::Messaging,
    Scenario::Hungry { labelled: true },
    Scenario::Hungry { labelled: false },
];
/// CI's run (kube-node is in the full run only, for CI's time).
pub const QUICK: [Scenario; 9] = [
    Scenario::Idle,
    Scenario::Contended(2),
    Scenario::Selective,
    Scenario::EmptyBus,
    Scenario::Rpc,
    Scenario::Timer,
    Scenario::Messaging,
    Scenario::Hungry { labelled: true },
    Scenario::Hungry { labelled: false },
];
pub const DEMO: [Scenario; 2] = [Scenario::Contended(2), Scenario::Selective];

impl Scenario {
    pub fn name(&self) -> String {
        match self {
            Scenario::Contended(k) => format!("contended-{k}x"),
            Scenario::Selective => "selective".into(),
            Scenario::Fairness => "fairness".into(),
            Scenario::EmptyBus => "empty-bus".into(),
            Scenario::Rpc => "rpc-chain".into(),
            Scenario::Idle => "idle".into(),
            Scenario::KubeNode => "kube-node".into(),
            Scenario::Timer => "timer".into(),
            Scenario::Messaging => "messaging".into(),
            Scenario::Hungry { labelled: true } => "hungry".into(),
            Scenario::Hungry { labelled: false } => "hungry-unlabelled".into(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Scenario::Contended(k) => format!(
                "critical request probe (2 workers, 300 us per request, every 2 ms) under {k} x nCPU batch CPU hogs"
            ),
            Scenario::Selective => "identical request probes (250 us) labelled critical, normal and batch at once, under 2 x nCPU unlabelled hogs, each timed from its requests' arrival (the dispatcher's wakeup counts)".into(),
            Scenario::Fairness => "nCPU critical hogs and nCPU normal hogs: normal's share of the CPU time".into(),
            Scenario::EmptyBus => "contended-2x with nothing on the bus (schedulers that read it restarted on an empty one)".into(),
            Scenario::Idle => "the critical request probe alone, every CPU idle: the floor of this machine's wakeup latency (every wakeup wakes an idle vCPU), under which no scheduler's contended figure can go".into(),
            Scenario::KubeNode => "the kubelet's cgroup tree (systemd driver: kubepods.slice, QoS slices, pods, containers; cpu.weight from CPU requests of 100m, 500m and 1000m with 2, 4 and 1 busy threads, a BestEffort pod with 2, one hog in system.slice) beside the critical request probe: each busy leaf's share of the tree's CPU, the largest gap from that promise in percentage points, and the probe's latency".into(),
            Scenario::Rpc => "3 services calling each other over Unix sockets, 100 requests/s offered, 100 us per hop, latency from the intended send time (coordinated omission corrected), under 2 x nCPU batch hogs".into(),
            Scenario::Timer => "a critical task that sleeps to a deadline every 1 ms and works 50 us (a control loop, a media or telemetry tick): how late it wakes, timer delivery included, under 2 x nCPU batch hogs".into(),
            Scenario::Hungry { labelled: true } => "a CPU-hungry critical request service (2 workers, a request every 1 ms, 1.9 ms of work each: 1.9 CPUs of demand) beside 2 x nCPU batch CPU hogs, timed from each request's arrival; the hogs' CPUs show what the noise kept".into(),
            Scenario::Hungry { labelled: false } => "the CPU-hungry request service and 2 x nCPU CPU hogs, both in cgroups without identity (what a scheduler does for a workload nobody labelled)".into(),
            Scenario::Messaging => format!("{MESSAGING_THREADS} unlabelled threads in 4 groups of 20 senders and 20 receivers over pipes, each sender writing 100-byte messages to each receiver of its group, nothing else running: seconds to the last message read (lower is better)"),
        }
    }
}

/// The busy leaves of the kubelet's tree, by their last path component.
fn leaf_name(g: &contract::Group) -> &str {
    let last = g.path.rsplit('/').next().unwrap_or(&g.path);
    last.trim_start_matches("cri-containerd-")
        .trim_end_matches(".scope")
}

/// Each busy leaf's share of the leaves' total (they sum to 1): the probe
/// beside the tree takes CPU from all of them alike.
fn leaf_shares(groups: &[contract::Group], cpus: &[f64]) -> Vec<f64> {
    let total: f64 = groups
        .iter()
        .zip(cpus)
        .filter(|(g, _)| g.hogs > 0)
        .map(|(_, c)| c)
        .sum();
    groups
        .iter()
        .zip(cpus)
        .filter(|(g, _)| g.hogs > 0)
        .map(|(_, c)| c / total.max(1e-9))
        .collect()
}

/// The kube-node figures: each busy leaf's share of the tree's CPU in
/// percent, and the largest gap from what the weights promise in points.
pub fn kube_node_figures(groups: &[contract::Group], cpus: &[f64], nr_cpus: usize) -> Figures {
    let ideal = leaf_shares(groups, &contract::ideal_shares(groups, nr_cpus));
    let got = leaf_shares(groups, cpus);
    let leaves = groups.iter().filter(|g| g.hogs > 0);
    let mut out: Figures = leaves
        .zip(&got)
        .map(|(g, s)| {
            (
                leaf_name(g).to_string(),
                "cpu_share_pct".to_string(),
                100.0 * s,
            )
        })
        .collect();
    out.push((
        "largest gap".into(),
        "points".into(),
        100.0 * contract::max_difference(&got, &ideal),
    ));
    out
}

/// What the kubelet tree's weights promise each busy leaf, in percent of the tree's CPU.
pub fn kube_node_ideal(nr_cpus: usize) -> Vec<(String, f64)> {
    let groups = contract::kubelet_tree(nr_cpus);
    let ideal = leaf_shares(&groups, &contract::ideal_shares(&groups, nr_cpus));
    groups
        .iter()
        .filter(|g| g.hogs > 0)
        .zip(ideal)
        .map(|(g, s)| (leaf_name(g).to_string(), 100.0 * s))
        .collect()
}

/// The scheduler process's own CPU time per 1,000 context switches on the
/// machine (its user-space loop's cost per scheduling event, in us).
pub const SCHEDULER_COST: &str = "cpu_us_per_1k_switches";

pub fn scheduler_cost(cpu_ns: u64, switches: u64) -> Option<f64> {
    (switches > 0).then(|| cpu_ns as f64 / 1000.0 / (switches as f64 / 1000.0))
}

/// The scenario cgroups, under one root the feeder follows.
pub struct Cgroups {
    pub root: TempCgroup,
    pub crit: TempCgroup,
    pub normal: TempCgroup,
    pub batch: TempCgroup,
    pub plain: TempCgroup,
    pub noise: TempCgroup,
}

impl Cgroups {
    pub fn new() -> Cgroups {
        let top = lab::cgroup2_root();
        lab::enable_cpu_controller(&top);
        let root = TempCgroup::new("eval");
        lab::enable_cpu_controller(&root.path);
        Cgroups {
            crit: root.child("crit"),
            normal: root.child("normal"),
            batch: root.child("batch"),
            plain: root.child("plain"),
            noise: root.child("noise"),
            root,
        }
    }

    /// The root's path below the cgroup2 mount (for scx_layered's prefix match).
    pub fn root_relative(&self) -> String {
        self.root
            .path
            .strip_prefix(lab::cgroup2_root())
            .expect("below cgroup2")
            .display()
            .to_string()
    }

    /// cpu.weight of crit / normal / batch (plain stays 100).
    pub fn set_weights(&self, w: (u32, u32, u32)) -> std::io::Result<()> {
        for (cg, w) in [(&self.crit, w.0), (&self.normal, w.1), (&self.batch, w.2)] {
            std::fs::write(cg.path.join("cpu.weight"), w.to_string())?;
        }
        Ok(())
    }
}

impl Default for Cgroups {
    fn default() -> Self {
        Cgroups::new()
    }
}

/// The programs a scenario runs and for how long.
pub struct Tools {
    pub probe: PathBuf,
    pub rpc: PathBuf,
    pub messaging: PathBuf,
    pub seconds: f64,
}

/// (subject, metric, value) figures of one run.
pub type Figures = Vec<(String, String, f64)>;

fn latency(subject: &str, s: &Summary, out: &mut Figures) {
    for (metric, v) in [
        ("p50_us", s.p50_us),
        ("p99_us", s.p99_us),
        ("p999_us", s.p999_us),
    ] {
        out.push((subject.into(), metric.into(), v));
    }
    for (&pm, &v) in CDF_PER_MILLE.iter().zip(&s.cdf_us) {
        out.push((subject.into(), cdf_metric(pm), v));
    }
}

/// Start a probe for `length` x the scenario's seconds.
fn probe(t: &Tools, bin: &Path, cg: &Path, label: &str, args: &str, length: f64) -> Probe {
    Probe::start(
        bin,
        cg,
        label,
        &format!("{args} --duration-s {}", t.seconds * length),
    )
}

/// Run `s` under whatever scheduler is loaded now; a probe that fails is an error.
pub fn run(s: Scenario, cg: &Cgroups, t: &Tools) -> Result<Figures, String> {
    let n = lab::nr_cpus();
    let mut out = Figures::new();
    let settle = || sleep(Duration::from_millis(300));
    match s {
        Scenario::Contended(_) | Scenario::EmptyBus | Scenario::Rpc => {
            let k = if let Scenario::Contended(k) = s { k } else { 2 };
            let _hogs = Hogs::start(&cg.batch.path, k * n);
            settle();
            let (u0, t0) = (lab::cpu_usage_us(&cg.batch.path), Instant::now());
            let summary = if s == Scenario::Rpc {
                probe(t, &t.rpc, &cg.crit.path, "rpc", RPC, RPC_LENGTH).try_finish()?
            } else {
                probe(t, &t.probe, &cg.crit.path, "critical", PROBE, 1.0).try_finish()?
            };
            let cpus =
                (lab::cpu_usage_us(&cg.batch.path) - u0) as f64 / 1e6 / t0.elapsed().as_secs_f64();
            latency("critical", &summary, &mut out);
            out.push(("hogs".into(), "cpus".into(), cpus));
        }
        Scenario::KubeNode => {
            let groups = contract::kubelet_tree(n);
            let tree = Tree::build("eval-kube", &groups);
            // shares need a longer window than latency; the tree's hogs
            // warm up for a second before it opens
            let window = t.seconds.max(4.0);
            let p = probe(
                t,
                &t.probe,
                &cg.crit.path,
                "critical",
                PROBE,
                (window + 1.0) / t.seconds,
            );
            let cpus = tree.cpus_used(Duration::from_secs_f64(window));
            latency("critical", &p.try_finish()?, &mut out);
            out.extend(kube_node_figures(&groups, &cpus, n));
        }
        Scenario::Idle => {
            let summary = probe(t, &t.probe, &cg.crit.path, "critical", PROBE, 1.0).try_finish()?;
            latency("critical", &summary, &mut out);
        }
        Scenario::Timer => {
            let _hogs = Hogs::start(&cg.batch.path, 2 * n);
            settle();
            let summary = probe(
                t,
                &t.probe,
                &cg.crit.path,
                "critical",
                TIMER_PROBE,
                TIMER_LENGTH,
            )
            .try_finish()?;
            latency("critical", &summary, &mut out);
            out.push(("critical".into(), "mean_us".into(), summary.mean_us));
        }
        Scenario::Messaging => {
            let v =
                Probe::start(&t.messaging, &cg.plain.path, "messaging", MESSAGING).try_json()?;
            let seconds = v["seconds"]
                .as_f64()
                .ok_or_else(|| format!("prism-messaging printed no time: {v}"))?;
            out.push(("messaging".into(), "seconds".into(), seconds));
        }
        Scenario::Hungry { labelled } => {
            let (service, noise) = if labelled {
                (&cg.crit.path, &cg.batch.path)
            } else {
                (&cg.plain.path, &cg.noise.path)
            };
            let _hogs = Hogs::start(noise, 2 * n);
            settle();
            let (u0, t0) = (lab::cpu_usage_us(noise), Instant::now());
            let summary = probe(t, &t.probe, service, "service", HUNGRY, 1.0).try_finish()?;
            let cpus = (lab::cpu_usage_us(noise) - u0) as f64 / 1e6 / t0.elapsed().as_secs_f64();
            latency("service", &summary, &mut out);
            out.push(("hogs".into(), "cpus".into(), cpus));
        }
        Scenario::Selective => {
            let _hogs = Hogs::start(&cg.plain.path, 2 * n);
            settle();
            let probes: Vec<(&str, Probe)> = [
                ("critical", &cg.crit),
                ("normal", &cg.normal),
                ("batch", &cg.batch),
            ]
            .into_iter()
            .map(|(l, c)| (l, probe(t, &t.probe, &c.path, l, SELECTIVE_PROBE, 1.0)))
            .collect();
            for (label, p) in probes {
                latency(label, &p.try_finish()?, &mut out);
            }
        }
        Scenario::Fairness => {
            let _hogs = (
                Hogs::start(&cg.crit.path, n),
                Hogs::start(&cg.normal.path, n),
            );
            let used = lab::cpu_seconds_over(
                &[&cg.crit.path, &cg.normal.path],
                Duration::from_millis(500),
                Duration::from_secs_f64(t.seconds),
            );
            let total = (used[0] + used[1]).max(1e-9);
            out.push((
                "normal".into(),
                "cpu_share_pct".into(),
                100.0 * used[1] / total,
            ));
            out.push((
                "critical".into(),
                "cpu_share_pct".into(),
                100.0 * used[0] / total,
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_node_figures_measure_the_gap_from_the_weights_promise() {
        let groups = contract::kubelet_tree(2);
        let ideal = kube_node_ideal(2);
        assert_eq!(
            ideal.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["pod100m", "pod500m", "pod1000m", "podbe", "hog.service"]
        );
        assert!((ideal.iter().map(|(_, s)| s).sum::<f64>() - 100.0).abs() < 1e-9);
        // CPUs used as promised: no gap
        let promised = contract::ideal_shares(&groups, 2);
        let f = kube_node_figures(&groups, &promised, 2);
        let gap = f.iter().find(|(s, _, _)| s == "largest gap").unwrap().2;
        assert!(gap < 1e-9, "{gap}");
        // the system hog takes 0.2 CPU from pod1000m's leaf: 10 points of 2 CPUs
        let mut skewed = promised.clone();
        let hog = groups
            .iter()
            .position(|g| g.path.ends_with("hog.service"))
            .unwrap();
        let big = groups
            .iter()
            .position(|g| g.path.ends_with("pod1000m.scope"))
            .unwrap();
        skewed[hog] += 0.1;
        skewed[big] -= 0.1;
        let f = kube_node_figures(&groups, &skewed, 2);
        let gap = f.iter().find(|(s, _, _)| s == "largest gap").unwrap().2;
        assert!((gap - 10.0).abs() < 1e-6, "{gap}");
    }

    #[test]
    fn scheduler_cost_is_cpu_per_thousand_switches() {
        assert_eq!(scheduler_cost(5_000_000, 10_000), Some(500.0));
        assert_eq!(scheduler_cost(0, 2_000), Some(0.0));
        assert_eq!(scheduler_cost(1_000, 0), None);
    }

    #[test]
    fn scenario_names_are_unique() {
        for (i, a) in ALL.iter().enumerate() {
            assert!(ALL[i + 1..].iter().all(|b| b.name() != a.name()));
        }
        assert!(QUICK.iter().chain(&DEMO).all(|s| ALL.contains(s)));
    }
}
