//! The node's CPU contract as a workload: a cgroup tree with cpu.weight set
//! (the kubelet's, or any other), CPU hogs in its leaves, and
//! each cgroup's CPU share measured from cpu.stat. The lab tests and
//! prism-eval run the same tree under EEVDF and under a scheduler in one
//! boot and compare the shares.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::fixtures::TempCgroup;

use crate::lab::{
    Hogs, Probe, SchedProcess, cpu_seconds_over, enable_cpu_controller, nr_cpus, stop_cleanly,
};
use crate::latency::Summary;
use crate::stats::median;

/// One cgroup of a tree: its path below the tree's root ("a/b/c"), what to
/// write to its cpu.weight and cpu.max, and how many busy threads run in it
/// (leaves only: cgroup v2 puts no process beside child cgroups).
#[derive(Debug, Clone)]
pub struct Group {
    pub path: String,
    pub weight: Option<u32>,
    /// cpu.max: (quota, period) in microseconds
    pub max: Option<(u64, u64)>,
    pub hogs: usize,
}

impl Group {
    pub fn new(path: &str, weight: Option<u32>, hogs: usize) -> Group {
        Group {
            path: path.to_string(),
            weight,
            max: None,
            hogs,
        }
    }

    /// The same, limited to `quota_us` per `period_us` (cpu.max).
    pub fn limited(self, quota_us: u64, period_us: u64) -> Group {
        Group {
            max: Some((quota_us, period_us)),
            ..self
        }
    }

    /// The CPUs its cpu.max allows (infinite without one).
    pub fn cpu_limit(&self) -> f64 {
        self.max.map_or(f64::INFINITY, |(q, p)| q as f64 / p as f64)
    }
}

/// The kubelet's cpu.weight for a CPU request of `milli_cpu` (cgroup v2):
/// requests become cpu.shares (`milli * 1024 / 1000`, at least 2), shares
/// map linearly onto 1..10000 as the runtimes convert them
/// (`1 + (shares - 2) * 9999 / 262142`).
pub fn kubelet_weight(milli_cpu: u64) -> u32 {
    let shares = (milli_cpu * 1024 / 1000).clamp(2, 262_144);
    (1 + (shares - 2) * 9999 / 262_142) as u32
}

/// The kubelet's tree (systemd driver) on a node of `nr_cpus` CPUs: three
/// Burstable pods requesting 100m, 500m and 1000m with 2, 4 and 1 busy
/// threads, a BestEffort pod with 2, and one hog in system.slice.
pub fn kubelet_tree(nr_cpus: usize) -> Vec<Group> {
    let kp = "kubepods.slice";
    let bu = "kubepods.slice/kubepods-burstable.slice";
    let be = "kubepods.slice/kubepods-besteffort.slice";
    let pod = |qos: &str, name: &str| format!("{qos}/kubepods-{name}.slice");
    let ctr = |qos: &str, name: &str| format!("{}/cri-containerd-{name}.scope", pod(qos, name));
    let mut tree = vec![
        Group::new(kp, Some(kubelet_weight(nr_cpus as u64 * 1000)), 0),
        Group::new(bu, Some(kubelet_weight(100 + 500 + 1000)), 0),
        Group::new(be, Some(kubelet_weight(0)), 0),
    ];
    for (name, milli, threads) in [
        ("pod100m", 100, 2),
        ("pod500m", 500, 4),
        ("pod1000m", 1000, 1),
    ] {
        tree.push(Group::new(&pod(bu, name), Some(kubelet_weight(milli)), 0));
        tree.push(Group::new(
            &ctr(bu, name),
            Some(kubelet_weight(milli)),
            threads,
        ));
    }
    tree.push(Group::new(&pod(be, "podbe"), Some(kubelet_weight(0)), 0));
    tree.push(Group::new(&ctr(be, "podbe"), Some(kubelet_weight(0)), 2));
    tree.push(Group::new("system.slice", Some(100), 0));
    tree.push(Group::new("system.slice/hog.service", Some(100), 1));
    tree
}

/// A tree of cgroups built under a fresh cgroup of the root (removed on drop),
/// the cpu controller on all the way down.
pub struct Tree {
    root: TempCgroup,
    pub groups: Vec<Group>,
}

impl Tree {
    pub fn build(tag: &str, groups: &[Group]) -> Tree {
        let top = crate::lab::cgroup2_root();
        enable_cpu_controller(&top);
        let root = TempCgroup::new(tag);
        for g in groups {
            let mut dir = root.path.clone();
            for part in g.path.split('/') {
                enable_cpu_controller(&dir);
                dir.push(part);
                if !dir.exists() {
                    fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
                }
            }
            if let Some(w) = g.weight {
                write(&dir.join("cpu.weight"), &w.to_string());
            }
            if let Some((quota, period)) = g.max {
                write(&dir.join("cpu.max"), &format!("{quota} {period}"));
            }
        }
        Tree {
            root,
            groups: groups.to_vec(),
        }
    }

    pub fn path(&self, g: &Group) -> PathBuf {
        self.root.path.join(&g.path)
    }

    /// Every group's hogs, running until the result is dropped.
    fn start_hogs(&self) -> Vec<Hogs> {
        self.groups
            .iter()
            .filter(|g| g.hogs > 0)
            .map(|g| Hogs::start(&self.path(g), g.hogs))
            .collect()
    }

    /// Each group's CPU, in CPUs (1.0 = one whole CPU), over `window` after
    /// a second of warm-up, with every group's hogs running.
    pub fn cpus_used(&self, window: Duration) -> Vec<f64> {
        let _hogs = self.start_hogs();
        let paths: Vec<PathBuf> = self.groups.iter().map(|g| self.path(g)).collect();
        let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
        cpu_seconds_over(&refs, Duration::from_secs(1), window)
            .into_iter()
            .map(|s| s / window.as_secs_f64())
            .collect()
    }

    /// Each group's CPUs in each of `seconds` one-second steps after a
    /// second of warm-up, with every group's hogs running (a row per group),
    /// and the machine's idle CPUs in each step.
    pub fn cpus_used_each_second(&self, seconds: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
        let _hogs = self.start_hogs();
        std::thread::sleep(Duration::from_secs(1));
        let paths: Vec<PathBuf> = self.groups.iter().map(|g| self.path(g)).collect();
        let mut rows = vec![Vec::with_capacity(seconds); paths.len()];
        let mut idle = Vec::with_capacity(seconds);
        for _ in 0..seconds {
            let (before, times_before) = (usage_each(&paths), idle_and_all_jiffies());
            let t0 = std::time::Instant::now();
            std::thread::sleep(Duration::from_secs(1));
            let (after, times_after) = (usage_each(&paths), idle_and_all_jiffies());
            let dt = t0.elapsed().as_secs_f64();
            for (row, (b, a)) in rows.iter_mut().zip(before.iter().zip(&after)) {
                row.push(a.saturating_sub(*b) as f64 / 1e6 / dt);
            }
            let (idle_j, all_j) = (
                times_after.0 - times_before.0,
                (times_after.1 - times_before.1).max(1),
            );
            idle.push(idle_j as f64 / all_j as f64 * nr_cpus() as f64);
        }
        (rows, idle)
    }

    /// Each group's share of the machine (1.0 = every CPU) over `window`.
    pub fn shares(&self, window: Duration) -> Vec<f64> {
        let n = nr_cpus() as f64;
        self.cpus_used(window).into_iter().map(|c| c / n).collect()
    }
}

/// Idle jiffies and all jiffies, summed over the CPUs (/proc/stat).
fn idle_and_all_jiffies() -> (u64, u64) {
    crate::topology::cpu_times()
        .iter()
        .fold((0, 0), |(i, a), &(busy, all)| (i + all - busy, a + all))
}

/// Each cgroup's CPU usage now, in microseconds.
fn usage_each(paths: &[PathBuf]) -> Vec<u64> {
    paths.iter().map(|p| crate::lab::cpu_usage_us(p)).collect()
}

fn write(file: &Path, value: &str) {
    fs::write(file, value).unwrap_or_else(|e| panic!("{value} > {}: {e}", file.display()));
}

/// Each group's share of the machine over `window` under EEVDF, then under
/// the scheduler `start` loads (stopped cleanly before returning): one boot,
/// one tree, the same hogs.
pub fn shares_under_eevdf_then(
    tree: &Tree,
    window: Duration,
    start: impl FnOnce() -> SchedProcess,
) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(crate::lab::ops(), "", "a scheduler is already loaded");
    let eevdf = tree.shares(window);
    let s = start();
    let ours = tree.shares(window);
    let log = stop_cleanly(s);
    assert!(!log.contains("runtime error"), "{log}");
    (eevdf, ours)
}

/// Two cgroups, A with 2 busy threads at cpu.weight 300 and B with 10 at
/// 100: A's share of their CPU (A / (A + B)) under EEVDF and under the
/// scheduler. Group shares give A 3/4, per-task weighting 6/16 = 0.375.
pub fn unequal_thread_counts(tag: &str, start: impl FnOnce() -> SchedProcess) -> (f64, f64) {
    let tree = Tree::build(
        tag,
        &[
            Group::new("a", Some(300), 2),
            Group::new("b", Some(100), 10),
        ],
    );
    let (eevdf, ours) = shares_under_eevdf_then(&tree, Duration::from_secs(6), start);
    println!(
        "{}",
        share_table(&tree.groups, ("EEVDF", &eevdf), ("ours", &ours))
    );
    let a = |v: &[f64]| v[0] / (v[0] + v[1]).max(1e-9);
    (a(&eevdf), a(&ours))
}

/// Two cgroups at equal cpu.weight: A with nCPU busy threads and a thread
/// that wakes every millisecond for 50 us (a server's acceptor, a
/// sidecar's tick), B with 2 x nCPU busy threads. A's share of their CPU
/// under EEVDF and under the scheduler (ideal: a half). With `sidecar` the
/// waker is in a cgroup of its own beside A's busy threads (A/app and
/// A/sidecar: a pod's two containers).
pub fn share_beside_a_waker(
    tag: &str,
    probe_bin: &Path,
    sidecar: bool,
    start: impl FnOnce() -> SchedProcess,
) -> (f64, f64) {
    let n = nr_cpus();
    let groups = if sidecar {
        vec![
            Group::new("a/app", None, n),
            Group::new("a/sidecar", None, 0),
            Group::new("b", None, 2 * n),
        ]
    } else {
        vec![Group::new("a", None, n), Group::new("b", None, 2 * n)]
    };
    let tree = Tree::build(tag, &groups);
    let waker = format!(
        "{} --interval-us 1000 --work-us 50 --duration-s 600",
        probe_bin.display()
    );
    let _waker = Hogs::start_command(&tree.path(&groups[groups.len() - 2]), &waker);
    let (eevdf, ours) = shares_under_eevdf_then(&tree, Duration::from_secs(4), start);
    println!(
        "{}",
        share_table(&tree.groups, ("EEVDF", &eevdf), ("ours", &ours))
    );
    let a = |v: &[f64]| {
        let (a, b) = (v[..v.len() - 1].iter().sum::<f64>(), v[v.len() - 1]);
        a / (a + b).max(1e-9)
    };
    (a(&eevdf), a(&ours))
}

/// [`share_beside_a_waker`] in both layouts, asserted: A keeps at least
/// EEVDF's share (or a half, if EEVDF gave more) less 2.5 points beside the
/// waker and less 7 with the waker as a sidecar (a guard only: a task's
/// wait for a CPU still counts against its siblings there, 44-47% where
/// EEVDF gives 49-50%, and it was 42-43%), and takes at most 4 points more.
pub fn assert_a_waker_costs_its_cgroup_no_share(
    tag: &str,
    probe_bin: &Path,
    start: impl Fn() -> SchedProcess,
) {
    for sidecar in [false, true] {
        let (eevdf, ours) = share_beside_a_waker(tag, probe_bin, sidecar, &start);
        println!(
            "waker{}: A's share: EEVDF {:.1}%, ours {:.1}% (ideal 50%)",
            if sidecar { " in a sidecar cgroup" } else { "" },
            eevdf * 100.0,
            ours * 100.0
        );
        let slack = if sidecar { 0.07 } else { 0.025 };
        assert!(
            ours >= eevdf.min(0.5) - slack && ours <= eevdf.max(0.5) + 0.04,
            "sidecar {sidecar}: A got {:.1}% under us, {:.1}% under EEVDF",
            ours * 100.0,
            eevdf * 100.0
        );
    }
}

/// What cpu.weight promises each group of `groups`: its share of a machine
/// of `nr_cpus` CPUs when every leaf's threads are busy, hierarchically
/// (a cgroup's CPU is split among its busy children by weight, and a child
/// that cannot use its part, one CPU per thread at most, leaves the rest
/// to its siblings). The tree's own root holds the whole machine.
pub fn ideal_shares(groups: &[Group], nr_cpus: usize) -> Vec<f64> {
    let parent = |path: &str| path.rsplit_once('/').map_or("", |(p, _)| p).to_string();
    let children = |of: &str| -> Vec<usize> {
        (0..groups.len())
            .filter(|&i| parent(&groups[i].path) == of)
            .collect()
    };
    let demand = |i: usize| -> f64 {
        let prefix = format!("{}/", groups[i].path);
        groups
            .iter()
            .filter(|g| g.path == groups[i].path || g.path.starts_with(&prefix))
            .map(|g| g.hogs as f64)
            .sum()
    };
    let mut cpus = vec![0.0; groups.len()];
    // (parent path, CPUs it has), top down
    let total: f64 = groups.iter().map(|g| g.hogs as f64).sum();
    let mut todo = vec![(String::new(), total.min(nr_cpus as f64))];
    while let Some((of, amount)) = todo.pop() {
        let mut open: Vec<usize> = children(&of)
            .into_iter()
            .filter(|&i| demand(i) > 0.0)
            .collect();
        let mut left = amount;
        // water-filling: children that cannot use their part get what they can use
        loop {
            let weights: f64 = open
                .iter()
                .map(|&i| f64::from(groups[i].weight.unwrap_or(100)))
                .sum();
            let full: Vec<usize> = open
                .iter()
                .copied()
                .filter(|&i| {
                    demand(i) <= left * f64::from(groups[i].weight.unwrap_or(100)) / weights
                })
                .collect();
            if full.is_empty() {
                for &i in &open {
                    cpus[i] = left * f64::from(groups[i].weight.unwrap_or(100)) / weights;
                }
                break;
            }
            for i in full {
                cpus[i] = demand(i);
                left -= cpus[i];
                open.retain(|&j| j != i);
            }
        }
        for i in children(&of) {
            todo.push((groups[i].path.clone(), cpus[i]));
        }
    }
    cpus.into_iter().map(|c| c / nr_cpus as f64).collect()
}

/// The kubelet's tree (kubelet_tree): each cgroup's share of the machine
/// under EEVDF, under the scheduler and as cpu.weight promises it
/// (ideal_shares); returns the largest differences of EEVDF and of the
/// scheduler from the promise.
pub fn kubelet_tree_shares(tag: &str, start: impl FnOnce() -> SchedProcess) -> (f64, f64) {
    let groups = kubelet_tree(nr_cpus());
    let ideal = ideal_shares(&groups, nr_cpus());
    let tree = Tree::build(tag, &groups);
    let (eevdf, ours) = shares_under_eevdf_then(&tree, Duration::from_secs(8), start);
    println!(
        "{}",
        share_table(&tree.groups, ("EEVDF", &eevdf), ("ours", &ours))
    );
    println!(
        "{}",
        share_table(&tree.groups, ("weights", &ideal), ("ours", &ours))
    );
    (
        max_difference(&eevdf, &ideal),
        max_difference(&ours, &ideal),
    )
}

/// The most runnable weight an idle lab guest shows to a scheduler (its
/// own threads, the monitor, the test: a few nice-0 tasks at 100 each).
const IDLE_WEIGHT_MAX: u64 = 500;

/// cpu.max on its own (the machine has CPU to spare): a 4-thread pod
/// limited to half a CPU, and a parent limited to one CPU over two
/// unlimited 4-thread children (a limit caps its descendants together).
pub fn limits_tree() -> Vec<Group> {
    vec![
        Group::new("pod", None, 4).limited(50_000, 100_000),
        Group::new("parent", None, 0).limited(100_000, 100_000),
        Group::new("parent/a", None, 4),
        Group::new("parent/b", None, 4),
    ]
}

/// The limited groups of `limits_tree`: the CPUs each used under EEVDF and
/// under the scheduler `start` loads, beside its limit, as (group, limit,
/// EEVDF, ours); printed as a table, with each second's figures. Each
/// figure is the median of 7 one-second steps: a limit holds in every
/// period, so the steady state is what a step shows, and a lone stall of
/// the lab's emulated CPUs (a host's noise: CI saw a run lose a second)
/// moves one step, not the figure. The machine's idle CPUs are printed
/// beside, so a shortfall shows whether the CPUs idled or went elsewhere,
/// and the scheduler's statistics meanwhile (the idle column is a hint:
/// /proc/stat measures idle time but samples busy time at ticks, and in the
/// lab it disagreed with cpu.stat by up to 0.6 CPU). Asserts that once the hogs
/// stop, the scheduler's runnable weight is back to an idle machine's
/// (IDLE_WEIGHT_MAX): every throttled task it uncounted and counted again
/// left nothing behind (two CPUs releasing one task at once once counted it
/// twice, 2,000 of weight a second that never went away).
pub fn limits_usage(
    tag: &str,
    start: impl FnOnce() -> SchedProcess,
) -> Vec<(Group, f64, f64, f64)> {
    let tree = Tree::build(tag, &limits_tree());
    let steps = 7;
    assert_eq!(crate::lab::ops(), "", "a scheduler is already loaded");
    let eevdf = tree.cpus_used_each_second(steps);
    let s = start();
    // the scheduler's own statistics meanwhile, for a shortfall's post-mortem
    let (ours, stats) = std::thread::scope(|scope| {
        let monitor = scope.spawn(|| crate::lab::monitor_output(s.bin()));
        let ours = tree.cpus_used_each_second(steps);
        (ours, monitor.join().unwrap_or_default())
    });
    for line in stats
        .lines()
        .filter(|l| l.starts_with('[') || l.contains("cpu.max"))
    {
        println!("{line}");
    }
    // every hold and release undone: the hogs gone, their weight is too
    let left = crate::lab::runnable_weight(s.bin());
    println!("runnable weight after the hogs stopped: {left:?}");
    let log = stop_cleanly(s);
    assert!(
        left.is_some_and(|w| w <= IDLE_WEIGHT_MAX),
        "the scheduler still counts {left:?} of runnable weight with the hogs gone:\n{log}"
    );
    assert!(!log.contains("runtime error"), "{log}");
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let rows: Vec<(Group, f64, f64, f64)> = tree
        .groups
        .iter()
        .zip(eevdf.0.iter().zip(&ours.0))
        .filter(|(g, _)| g.max.is_some())
        .map(|(g, (e, o))| {
            println!(
                "{:<12} each second: EEVDF [{}] ours [{}]",
                g.path,
                fmt(e),
                fmt(o)
            );
            (g.clone(), g.cpu_limit(), median(e), median(o))
        })
        .collect();
    println!(
        "idle CPUs each second: EEVDF [{}] ours [{}]",
        fmt(&eevdf.1),
        fmt(&ours.1)
    );
    println!(
        "{:<12} {:>8} {:>8} {:>8}",
        "cgroup", "cpu.max", "EEVDF", "ours"
    );
    for (g, limit, e, o) in &rows {
        println!("{:<12} {limit:>8.2} {e:>8.3} {o:>8.3}", g.path);
    }
    rows
}

/// cpu.max written while the scheduler `start` loads runs: a new cgroup of
/// 4 busy threads limited to 0.5 CPU (`50000 100000`) after it was
/// created, then its limit lifted (`max`). The CPUs it used over 5 s in each
/// state, after 2 s to settle: a limit or its removal must reach a running
/// scheduler (through the kernel's callback, or where the kernel has none,
/// user space following cgroupfs).
pub fn limit_changes_while_running(tag: &str, start: impl FnOnce() -> SchedProcess) -> (f64, f64) {
    enable_cpu_controller(&crate::lab::cgroup2_root());
    let s = start();
    let pod = TempCgroup::new(tag);
    let hogs = Hogs::start(&pod.path, 4);
    write(&pod.path.join("cpu.max"), "50000 100000");
    let (warmup, window) = (Duration::from_secs(2), Duration::from_secs(5));
    let limited = cpu_seconds_over(&[&pod.path], warmup, window)[0] / window.as_secs_f64();
    write(&pod.path.join("cpu.max"), "max 100000");
    let lifted = cpu_seconds_over(&[&pod.path], warmup, window)[0] / window.as_secs_f64();
    drop(hogs);
    let log = stop_cleanly(s);
    assert!(!log.contains("runtime error"), "{log}");
    println!(
        "cpu.max 50000 100000 written while running: {limited:.3} CPUs; lifted: {lifted:.3} CPUs"
    );
    (limited, lifted)
}

/// `n` cgroups, each limited to `quota_us` per `period_us` with 2 busy threads,
/// for `seconds` (at least 10), beside an unlimited request-mode probe in a
/// cgroup of its own, under the scheduler `start` loads: the probe's
/// latency before the limited cgroups exist and over their last 6 s. Panics
/// if the scheduler dies or is ejected meanwhile.
pub fn many_limited_cgroups(
    tag: &str,
    n: usize,
    (quota_us, period_us): (u64, u64),
    seconds: u64,
    probe_bin: &Path,
    start: impl FnOnce() -> SchedProcess,
) -> (Summary, Summary) {
    enable_cpu_controller(&crate::lab::cgroup2_root());
    let root = TempCgroup::new(tag);
    enable_cpu_controller(&root.path);
    let probe_cg = root.child("probe");
    let limited = root.child("limited");
    enable_cpu_controller(&limited.path);
    let groups: Vec<TempCgroup> = (0..n)
        .map(|i| {
            let g = limited.child(&format!("pod{i}"));
            write(&g.path.join("cpu.max"), &format!("{quota_us} {period_us}"));
            g
        })
        .collect();
    let mut s = start();
    let probe_args = "--workers 2 --interval-us 2000 --work-us 300 --duration-s 6";
    let probe = || Probe::start(probe_bin, &probe_cg.path, "probe", probe_args).finish();
    let alone = probe();
    let begun = std::time::Instant::now();
    let hogs: Vec<Hogs> = groups.iter().map(|g| Hogs::start(&g.path, 2)).collect();
    println!(
        "{n} limited cgroups of 2 busy threads started in {:.1} s",
        begun.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(seconds.max(10) - 6).saturating_sub(begun.elapsed()));
    let probing = begun.elapsed();
    let beside = probe();
    println!(
        "probed from {:.1} s to {:.1} s",
        probing.as_secs_f64(),
        begun.elapsed().as_secs_f64()
    );
    let used: f64 = groups
        .iter()
        .map(|g| crate::lab::cpu_usage_us(&g.path) as f64 / 1e6)
        .sum();
    assert!(s.alive(), "the scheduler died:\n{}", s.log_text());
    assert_eq!(crate::lab::state(), "enabled", "ejected:\n{}", s.log_text());
    let measured = begun.elapsed();
    // all killed at once (cgroup.kill) and unlimited, so they run to their exit now
    write(&limited.path.join("cgroup.kill"), "1");
    for g in &groups {
        write(&g.path.join("cpu.max"), "max");
    }
    drop(hogs);
    let log = stop_cleanly(s);
    assert!(!log.contains("runtime error"), "{log}");
    println!(
        "the limited cgroups used {used:.1} CPU-seconds in {:.0} s (their limits: {:.2} CPUs); \
         unlimited, killed and unloaded in {:.1} s",
        measured.as_secs_f64(),
        n as f64 * quota_us as f64 / period_us as f64,
        (begun.elapsed() - measured).as_secs_f64()
    );
    for (what, r) in [("alone", &alone), ("beside them", &beside)] {
        println!(
            "probe {what:>12}: p50 {:>7.0} us  p99 {:>7.0} us  ({} samples)",
            r.p50_us, r.p99_us, r.samples
        );
    }
    (alone, beside)
}

/// The largest absolute difference between two lists of shares.
pub fn max_difference(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// A table of each group's share under two schedulers, for a test's output.
pub fn share_table(groups: &[Group], a: (&str, &[f64]), b: (&str, &[f64])) -> String {
    let mut out = format!("{:<64} {:>8} {:>8}\n", "cgroup", a.0, b.0);
    for ((g, x), y) in groups.iter().zip(a.1).zip(b.1) {
        out += &format!("{:<64} {:>7.1}% {:>7.1}%\n", g.path, x * 100.0, y * 100.0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_changes_fail_only_where_they_did_not_reach_the_tasks() {
        let held = RunningChanges {
            before: 3.0,
            relabelled: 3.1,
            moved: 1.0,
        };
        assert!(held.failures().is_empty());
        let missed = RunningChanges {
            relabelled: 0.34,
            moved: 3.0,
            ..held
        };
        let bad = missed.failures();
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(
            bad[0].contains("relabel") && bad[1].contains("move"),
            "{bad:?}"
        );
    }

    #[test]
    fn kubelet_weights_follow_its_conversion() {
        // cgroup v1 shares 2 (BestEffort) -> weight 1; 1 CPU -> 1024 shares -> 39
        assert_eq!(kubelet_weight(0), 1);
        assert_eq!(kubelet_weight(100), 4);
        assert_eq!(kubelet_weight(500), 20);
        assert_eq!(kubelet_weight(1000), 39);
        assert_eq!(kubelet_weight(2000), 79);
        // the largest shares map to the largest weight
        assert_eq!(kubelet_weight(1_000_000), 10000);
    }

    #[test]
    fn the_kubelet_tree_has_its_levels_and_leaves() {
        let t = kubelet_tree(2);
        let leaves: usize = t.iter().map(|g| g.hogs).sum();
        assert_eq!(leaves, 2 + 4 + 1 + 2 + 1);
        assert!(
            t.iter()
                .any(|g| g.path.ends_with("cri-containerd-pod500m.scope"))
        );
        assert_eq!(t[0].weight, Some(79), "kubepods.slice for 2 CPUs");
    }

    fn assert_shares_start_with(shares: &[f64], expected: &[f64]) {
        assert!(
            shares.len() >= expected.len()
                && shares
                    .iter()
                    .zip(expected)
                    .all(|(s, e)| (s - e).abs() < 1e-9),
            "{shares:?}, expected {expected:?} first"
        );
    }

    #[test]
    fn ideal_shares_split_by_weight_and_give_what_one_thread_cannot_use_away() {
        // A (2 threads, 300) beside B (10 threads, 100) on 2 CPUs: 3/4 to A
        let two = [
            Group::new("a", Some(300), 2),
            Group::new("b", Some(100), 10),
        ];
        assert_shares_start_with(&ideal_shares(&two, 2), &[0.75, 0.25]);
        // one thread can use one CPU of two: its heavy weight goes to the other
        let capped = [
            Group::new("a", Some(1000), 1),
            Group::new("b", Some(100), 4),
        ];
        assert_shares_start_with(&ideal_shares(&capped, 2), &[0.5, 0.5]);
        // nested: the parent's share splits among its busy children only
        let nested = [
            Group::new("p", Some(100), 0),
            Group::new("p/x", Some(300), 2),
            Group::new("p/idle", Some(100), 0),
            Group::new("q", Some(100), 2),
        ];
        let s = ideal_shares(&nested, 2);
        assert_shares_start_with(&s, &[0.5, 0.5]);
        assert_eq!(s[2], 0.0);
    }

    #[test]
    fn the_kubelet_tree_splits_by_requests() {
        let t = kubelet_tree(2);
        let s = ideal_shares(&t, 2);
        let at = |p: &str| s[t.iter().position(|g| g.path.ends_with(p)).unwrap()];
        // system.slice (100) beside kubepods.slice (79): its one thread takes one CPU
        assert!((at("system.slice") - 0.5).abs() < 1e-9);
        // within Burstable: 4 : 20 : 39 by requests
        let ratio = at("pod1000m.slice") / at("pod100m.slice");
        assert!((ratio - 39.0 / 4.0).abs() < 1e-6, "{ratio}");
        assert!(at("kubepods-besteffort.slice") < 0.01);
    }

    #[test]
    fn max_difference_is_the_largest_gap() {
        assert_eq!(max_difference(&[0.5, 0.25], &[0.4, 0.5]), 0.25);
    }
}

/// CPU-time ratios heavy/light of running hogs as the bus and the cgroup
/// tree change under them: the same hog processes throughout. Cgroups a, b
/// and c of one cpu.weight group, labelled batch with bus weights 32, 96, 32;
/// nCPU hogs in a and nCPU in b. The bus weight acts within the group, as
/// nice does.
pub fn relabels_and_moves_of_running_tasks(
    tag: &str,
    start: impl FnOnce(&crate::fixtures::TempBusDir) -> SchedProcess,
) -> RunningChanges {
    use crate::fixtures::{TempBusDir, sched_entry};
    use prism_bus::LatencyClass;

    enable_cpu_controller(&crate::lab::cgroup2_root());
    let bus = TempBusDir::new(tag);
    let group = TempCgroup::new(tag);
    let (a, b, c) = (group.child("a"), group.child("b"), group.child("c"));
    let weighted = |id, w| sched_entry(id, LatencyClass::Batch, w);
    let mut w = crate::lab::label(
        &bus,
        &[
            (&a, weighted(370, 32)),
            (&b, weighted(371, 96)),
            (&c, weighted(372, 32)),
        ],
    );
    let s = start(&bus);
    let n = nr_cpus();
    let hogs = (Hogs::start(&a.path, n), Hogs::start(&b.path, n));
    let ratio = |x: &TempCgroup, y: &TempCgroup| {
        let used = cpu_seconds_over(
            &[&x.path, &y.path],
            Duration::from_millis(500),
            Duration::from_secs(4),
        );
        used[0] / used[1].max(1e-6)
    };
    let before = ratio(&b, &a);
    // relabel: a becomes the heavy one
    w.write_batch(
        &[(a.id(), weighted(370, 96)), (b.id(), weighted(371, 32))],
        &[],
    )
    .expect("bus write");
    let relabelled = ratio(&a, &b);
    // move a's running hogs into c (weight 32): now even with b
    for pid in hogs.0.pids() {
        c.enter(pid);
    }
    let moved = ratio(&c, &b);
    drop(hogs);
    stop_cleanly(s);
    RunningChanges {
        before,
        relabelled,
        moved,
    }
}

/// What [`relabels_and_moves_of_running_tasks`] measured: heavy/light CPU
/// time of the same running hogs.
#[derive(Debug, Clone, Copy)]
pub struct RunningChanges {
    /// b/a at bus weights 96:32 (ideal 3).
    pub before: f64,
    /// a/b once the bus swapped their weights (ideal 3).
    pub relabelled: f64,
    /// c/b once a's hogs moved into c, b's equal now (ideal 1).
    pub moved: f64,
}

impl RunningChanges {
    /// What did not reach the running tasks, one line each.
    pub fn failures(&self) -> Vec<String> {
        let mut bad = Vec::new();
        if self.before <= 1.8 {
            bad.push(format!("weights 96:32 gave {:.2}", self.before));
        }
        if self.relabelled <= 1.8 {
            bad.push(format!(
                "the relabel did not reach running tasks: {:.2}",
                self.relabelled
            ));
        }
        if !(0.5..=2.0).contains(&self.moved) {
            bad.push(format!(
                "the move did not reach running tasks: {:.2} for equal weights",
                self.moved
            ));
        }
        bad
    }
}
