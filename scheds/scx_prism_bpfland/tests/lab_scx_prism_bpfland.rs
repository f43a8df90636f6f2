//! scx_prism_bpfland in the sched_ext lab kernel. Ignored by a plain
//! `cargo test` (this host has no sched_ext); ci/test runs them in the lab
//! guest with `--include-ignored --test-threads=1`. Each test loads the real
//! scheduler and asserts what the kernel and the workloads show.

use std::path::PathBuf;
use std::thread::sleep;
use std::time::Duration;

use libbpf_rs::MapCore;
use prism_bus::{Entry, LatencyClass};
use prism_testkit::fixtures::{TempBusDir, TempCgroup, sched_entry};
use prism_testkit::lab::{self, Hogs, Probe, SchedProcess, cgroup2_root, stop_cleanly};
use prism_testkit::latency::{Summary, in_turn, median_p50_p99};
use prism_testkit::{contract, resilience};

fn entry(id: u32, class: LatencyClass) -> Entry {
    sched_entry(id, class, 0)
}

fn scheduler() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_scx_prism_bpfland"))
}

// the lab tests every Prism scheduler passes (prism_testkit::suite), with --prism
prism_testkit::lab_tests_of_every_scheduler!(prism_testkit::suite::Scheduler {
    bin: scheduler(),
    flags: &["--prism"],
    tag: "pbl",
});

fn probe_bin() -> PathBuf {
    lab::built_beside(&scheduler(), "prism-probe")
}

/// Start it; with `prism`, reading the classes on `bus`.
fn start(bus: &TempBusDir, prism: bool, extra: &[&str]) -> SchedProcess {
    let dir = bus.paths.dir.to_str().unwrap().to_string();
    let mut args = vec!["--bus-dir", &dir];
    if prism {
        args.push("--prism");
    }
    args.extend_from_slice(extra);
    SchedProcess::start(&scheduler(), &args)
}

/// Ids of the BPF maps a process holds file descriptors to.
fn map_ids_held_by(pid: u32) -> Vec<u32> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap();
    dir.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("map_id:").map(|v| v.trim().parse().unwrap()))
        })
        .collect()
}

#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn loads_and_unloads_without_prism_and_never_opens_the_bus() {
    let bus = TempBusDir::new("pbl-noprism");
    let cg = TempCgroup::new("pbl-noprism");
    let w = lab::label(&bus, &[(&cg, entry(330, LatencyClass::Critical))]);
    let bus_map = w.bus().identity_map().info().unwrap().info.id;
    let s = start(&bus, false, &[]);
    assert_eq!(lab::state(), "enabled");
    assert!(
        lab::ops().starts_with("scx_prism_bpfland"),
        "root/ops is {:?}",
        lab::ops()
    );
    sleep(Duration::from_secs(2));
    let held = map_ids_held_by(s.pid());
    assert!(!held.is_empty(), "no BPF map fds seen: is fdinfo readable?");
    assert!(
        !held.contains(&bus_map),
        "without --prism the bus map {bus_map} is open: {held:?}"
    );
    let log = stop_cleanly(s);
    assert!(log.contains("classes off (no --prism)"), "{log}");
    assert_eq!(lab::ops(), "");
}

#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn loads_and_unloads_with_prism() {
    let bus = TempBusDir::new("pbl-prism");
    let cg = TempCgroup::new("pbl-prism");
    lab::label(&bus, &[(&cg, entry(331, LatencyClass::Critical))]);
    let s = start(&bus, true, &[]);
    assert_eq!(lab::state(), "enabled");
    sleep(Duration::from_secs(2));
    let log = stop_cleanly(s);
    assert!(log.contains("attached"), "{log}");
}

#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn survives_45s_of_stress_ng_without_prism() {
    resilience::survives_stress_with_an_empty_bus(|bus| start(bus, false, &["--stats", "5"]));
}

#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn survives_45s_of_stress_ng_with_prism_in_a_critical_cgroup() {
    resilience::survives_stress_in_a_critical_cgroup(|bus| start(bus, true, &[]));
}

/// How [`probes_under_hogs`] runs its probes.
#[derive(Clone, Copy)]
enum Run {
    /// All at once, for 6 s: one round.
    SideBySide,
    /// Each alone for 3 s, class after class, this many rounds, each round
    /// starting with the next class: what drifts in the lab (TCG's timer
    /// delivery, the host's load) falls on every class alike.
    InTurn(usize),
}

/// The median over rounds of each class's p50 and p99 (us).
fn medians(results: &[Vec<Summary>]) -> Vec<(f64, f64)> {
    results
        .iter()
        .map(|rounds| median_p50_p99(rounds))
        .collect()
}

/// Identical probes, one per class in `classes`, each in its own labelled
/// cgroup, under 2 x nCPU hogs labelled `hogs` (Unset: unlabelled). All are
/// children of one cgroup without the cpu controller: one cpu.weight group,
/// so the classes are compared at equal shares (the group-share tests
/// compare cgroups). With `workers`, request mode (a dispatcher hands
/// `work_us` of work to the next worker every 2 ms): wakeup-to-run only,
/// without the timer's own delivery delay, which under TCG is milliseconds
/// and the same for all. With 0, timer mode: the whole path of a periodic
/// task, its own wakeup included. Each class's results, one per round.
fn probes_under_hogs(
    prism: bool,
    hogs: LatencyClass,
    classes: &[LatencyClass],
    workers: u32,
    work_us: u32,
    run: Run,
) -> Vec<Vec<Summary>> {
    let bus = TempBusDir::new("pbl-order");
    let tag = format!("{}-{}", if prism { "p" } else { "n" }, hogs.name());
    let group = TempCgroup::new(&format!("pbl-order-{tag}"));
    let hogs_cg = group.child("hogs");
    let cgroups: Vec<TempCgroup> = classes.iter().map(|c| group.child(c.name())).collect();
    let mut labels: Vec<(&TempCgroup, Entry)> = cgroups
        .iter()
        .zip(classes)
        .zip(341..)
        .map(|((cg, &class), id)| (cg, entry(id, class)))
        .collect();
    if hogs != LatencyClass::Unset {
        labels.push((&hogs_cg, entry(349, hogs)));
    }
    lab::label(&bus, &labels);
    let s = start(&bus, prism, &["--stats", "2"]);
    let hog_procs = Hogs::start(&hogs_cg.path, 2 * lab::nr_cpus());
    sleep(Duration::from_millis(500));
    let probe = |secs: u32| {
        format!("--workers {workers} --interval-us 2000 --work-us {work_us} --duration-s {secs}")
    };
    let results: Vec<Vec<Summary>> = match run {
        Run::SideBySide => {
            let probes: Vec<Probe> = classes
                .iter()
                .zip(&cgroups)
                .map(|(c, cg)| Probe::start(&probe_bin(), &cg.path, c.name(), &probe(6)))
                .collect();
            probes.into_iter().map(|p| vec![p.finish()]).collect()
        }
        Run::InTurn(rounds) => in_turn(classes.len(), rounds, |i| {
            Probe::start(&probe_bin(), &cgroups[i].path, classes[i].name(), &probe(3)).finish()
        }),
    };
    drop(hog_procs);
    let log = stop_cleanly(s);
    println!("--prism {prism}, hogs {hogs}:");
    log.lines()
        .filter(|l| l.contains("wait p50/p99") || l.starts_with("[scx_prism_bpfland]"))
        .for_each(|l| println!("  {l}"));
    for (class, rounds) in classes.iter().zip(&results) {
        for r in rounds {
            println!(
                "{:>8}: p50 {:>8.0} us  p99 {:>8.0} us  max {:>8.0} us  ({} samples)",
                class.name(),
                r.p50_us,
                r.p99_us,
                r.max_us,
                r.samples
            );
            assert!(r.samples > 100, "too few samples: {}", r.samples);
        }
    }
    if prism {
        assert_steady_state_cache(&log);
    }
    results
}

const THREE: [LatencyClass; 3] = [
    LatencyClass::Critical,
    LatencyClass::Normal,
    LatencyClass::Batch,
];

/// The last full stats interval of `log`: the bus answered from the per-task
/// cache, not from hash lookups (a resolution per relabel, move or new task).
fn assert_steady_state_cache(log: &str) {
    let line = log
        .lines()
        .filter(|l| l.contains("bus cache"))
        .nth_back(1)
        .unwrap_or_else(|| panic!("no stats in the log:\n{log}"));
    let field = |name: &str| -> u64 {
        let rest = &line[line.find(name).unwrap() + name.len()..];
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    let cached = field("bus cache ");
    let looked_up = field(" hit ") + field(" anc ") + field(" miss ");
    println!("bus resolutions in one interval: {cached} from the cache, {looked_up} looked up");
    assert!(
        cached >= 10 * looked_up && cached > 1000,
        "not a steady state: {line}"
    );
}

/// Under unlabelled (normal) hogs, each class's timer-mode probe alone:
/// critical preempts a hog at once; batch preempts nobody and comes after
/// the normal queue (measured: p50 5.3-5.6x critical's, p99 2.6-6x).
/// Alone, because side by side in request mode a batch worker runs where
/// its own dispatcher just slept and the critical probe's preemptions end
/// hog slices for it too: a full lab run saw batch's p99 at 1.4x
/// critical's so. In turn, three rounds, medians: one probe after another
/// (a scheduler each) let a noisy stretch of CI fall on one class only
/// (critical's p50 1.5x normal's once, with every p99 over 3 ms). The
/// medians carry the policy; the tails also carry TCG's timer delivery,
/// milliseconds for every class.
#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn with_prism_critical_beats_normal_and_batch() {
    let r = probes_under_hogs(true, LatencyClass::Unset, &THREE, 0, 500, Run::InTurn(3));
    let [(c50, c99), (n50, n99), (b50, b99)] = medians(&r)[..] else {
        unreachable!("three classes")
    };
    // a normal light sleeper also gets a CPU at once at the median (its
    // deadline is the earliest), so critical is held to no worse than
    // normal, with 25% for noise (measured: p50 0.94-1.05x, p99 0.32-0.85x)
    assert!(
        c50 <= 1.25 * n50 && c99 <= 1.25 * n99,
        "critical p50/p99 {c50}/{c99} worse than normal {n50}/{n99}"
    );
    assert!(
        b50 > 3.0 * c50 && b99 > c99,
        "batch p50/p99 {b50}/{b99} not well behind critical {c50}/{c99}"
    );
}

/// Under batch hogs: a waking normal task takes a batch task's CPU (once
/// that has run preempt_min), a waking batch task waits for a slice to end,
/// and batch slices are batch_slice_factor times longer. Each timer-mode
/// probe runs alone under the hogs, in turn, three rounds (why: above).
/// Side by side, the normal probe's preemptions end hog slices early for
/// the batch probe (the earliest batch deadline) too; and in request mode a
/// batch worker runs where its dispatcher just slept, so neither shows the
/// policy (CI saw 3.1x so). The medians carry the policy (measured 7-11x,
/// p99 2.9-7x); the tails also carry TCG's timer delivery, milliseconds
/// for either class.
#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn with_prism_normal_beats_batch() {
    let classes = [LatencyClass::Normal, LatencyClass::Batch];
    let r = probes_under_hogs(true, LatencyClass::Batch, &classes, 0, 500, Run::InTurn(3));
    let [(n50, n99), (b50, b99)] = medians(&r)[..] else {
        unreachable!("two classes")
    };
    assert!(
        b50 > 3.0 * n50 && b99 > n99,
        "batch p50/p99 {b50}/{b99} not well behind normal {n50}/{n99}"
    );
}

/// Without --prism the labels mean nothing. The pair --prism separates most
/// (batch's p99 is over 5x critical's with it: measured 26-1100x) stays within 5x either way
/// (measured 0.8-1.9x; this load is over every worker's fair share, so the
/// three equal probes' tails wander).
#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn without_prism_the_labels_change_nothing() {
    // Loaded past every worker's fair share, equal probes fare alike (at
    // 12.5% one probe's tail can wander alone).
    let r = probes_under_hogs(false, LatencyClass::Unset, &THREE, 2, 700, Run::SideBySide);
    let (c, b) = (&r[0][0], &r[2][0]);
    let ratio = b.p99_us / c.p99_us.max(1.0);
    println!("batch/critical p99 without --prism: {ratio:.2}");
    assert!(
        (0.2..=5.0).contains(&ratio),
        "batch/critical p99 {ratio:.2}: the labels acted without --prism"
    );
}

/// The bus weight splits a cgroup's share among the workloads in it, as nice
/// does under CFS: two CPU-bound batch workloads with bus weights 32 and 96,
/// in child cgroups without the cpu controller (so they share their parent's
/// cpu.weight group), share the CPUs about 1:3. Across cgroups with the cpu
/// controller, cpu.weight decides (the group-share tests).
#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn bus_weight_scales_cpu_time() {
    let root = cgroup2_root();
    lab::enable_cpu_controller(&root);
    let bus = TempBusDir::new("pbl-weight");
    let group = TempCgroup::new("pbl-weight");
    let (light, heavy) = (group.child("w32"), group.child("w96"));
    lab::label(
        &bus,
        &[
            (&light, sched_entry(351, LatencyClass::Batch, 32)),
            (&heavy, sched_entry(352, LatencyClass::Batch, 96)),
        ],
    );
    let s = start(&bus, true, &[]);
    let n = lab::nr_cpus();
    let hogs = (Hogs::start(&light.path, n), Hogs::start(&heavy.path, n));
    let used = lab::cpu_seconds_over(
        &[&light.path, &heavy.path],
        Duration::from_secs(1),
        Duration::from_secs(6),
    );
    drop(hogs);
    stop_cleanly(s);
    let ratio = used[1] / used[0].max(1e-6);
    println!(
        "bus weight 96 vs 32: {:.2} s vs {:.2} s of CPU, ratio {ratio:.2} (ideal 3)",
        used[1], used[0]
    );
    assert!(
        (2.0..=4.5).contains(&ratio),
        "bus weight ratio {ratio:.2} is not about 3"
    );
}

/// cgroup cpu.weight 300 vs 100: about three times the CPU, no --prism needed.
#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn cgroup_cpu_weight_is_honoured() {
    let bus = TempBusDir::new("pbl-cgweight");
    let ratio = lab::cpu_weight_ratio("pbl-cgweight", || start(&bus, false, &[]));
    println!("cpu.weight 300 vs 100: CPU time ratio {ratio:.2} (ideal 3)");
    assert!(
        (2.0..=4.5).contains(&ratio),
        "cpu.weight ratio {ratio:.2} is not about 3"
    );
}

/// N critical CPU hogs on N CPUs cannot starve a normal hog of their cpu.weight
/// group: the critical lead is bounded, then CPU time is shared by weight,
/// critical tasks weighing --critical-weight-factor (4) times more: ideal
/// 1/(4N+1). (In cgroups of their own, cpu.weight would split them.)
#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn critical_hogs_cannot_starve_a_normal_hog() {
    let root = cgroup2_root();
    lab::enable_cpu_controller(&root);
    let bus = TempBusDir::new("pbl-starve");
    let group = TempCgroup::new("pbl-starve");
    let (crit, norm) = (group.child("crit"), group.child("norm"));
    lab::label(
        &bus,
        &[
            (&crit, entry(361, LatencyClass::Critical)),
            (&norm, entry(362, LatencyClass::Normal)),
        ],
    );
    let s = start(&bus, true, &[]);
    let n = lab::nr_cpus();
    let hogs = (Hogs::start(&crit.path, n), Hogs::start(&norm.path, 1));
    let used = lab::cpu_seconds_over(
        &[&crit.path, &norm.path],
        Duration::from_secs(1),
        Duration::from_secs(6),
    );
    drop(hogs);
    stop_cleanly(s);
    let share = used[1] / (used[0] + used[1]);
    let fair = 1.0 / (4.0 * n as f64 + 1.0);
    println!(
        "{n} critical hogs {:.2} s, 1 normal hog {:.2} s: normal share {:.1}% (by weight {:.1}%)",
        used[0],
        used[1],
        share * 100.0,
        fair * 100.0
    );
    assert!(
        share >= fair / 2.0,
        "the normal hog got {:.1}%, under half its weighted share {:.1}%",
        share * 100.0,
        fair * 100.0
    );
}

/// The heaviest weights there are (nice -20 hogs, critical, bus weight 127:
/// ~70,000 each) against one nice-19 hog (weight 1) of the same cpu.weight
/// group: by weight it would wait minutes for a slice and the kernel's 5 s
/// watchdog would eject the scheduler. Every bound is a wall-time bound, so
/// it runs, a little.
#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn a_nice_19_hog_among_the_heaviest_weights_is_never_stalled() {
    let root = cgroup2_root();
    lab::enable_cpu_controller(&root);
    let bus = TempBusDir::new("pbl-heavy");
    let group = TempCgroup::new("pbl-heavy");
    let (heavy, light) = (group.child("heavy"), group.child("light"));
    lab::label(
        &bus,
        &[(&heavy, sched_entry(380, LatencyClass::Critical, 127))],
    );
    let mut s = start(&bus, true, &["--stats", "1"]);
    let n = lab::nr_cpus();
    let hogs = (
        Hogs::start_niced(&heavy.path, 3 * n, -20),
        Hogs::start_niced(&light.path, 1, 19),
    );
    let used = lab::cpu_seconds_over(
        &[&heavy.path, &light.path],
        Duration::from_secs(1),
        Duration::from_secs(10),
    );
    drop(hogs);
    assert!(s.alive(), "ejected:\n{}", s.log_text());
    let log = stop_cleanly(s);
    let rescued = lab::stat_sum(&log, " rescued ");
    println!(
        "heavy hogs {:.2} s, the nice-19 hog {:.3} s of CPU in 10 s; {rescued} tasks run after waiting 1 s",
        used[0], used[1]
    );
    // its weight would give it ~0; each wall-time bound gives it a slice now and then
    assert!(used[1] >= 0.02, "the nice-19 hog got {:.3} s", used[1]);
}

/// cpu.weight is a group share whatever the thread counts: 2 busy threads at
/// weight 300 beside 10 at weight 100 get EEVDF's share or better (the
/// weights promise 75%; per-task weighting gave 37.5%), with and without
/// --prism.
#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn group_shares_do_not_depend_on_thread_counts() {
    for prism in [false, true] {
        let bus = TempBusDir::new("pbl-groups");
        let (eevdf, ours) =
            contract::unequal_thread_counts("pbl-groups", || start(&bus, prism, &[]));
        println!(
            "--prism {prism}: A's share: EEVDF {:.1}%, ours {:.1}% (ideal 75%)",
            eevdf * 100.0,
            ours * 100.0
        );
        assert!(
            ours >= eevdf.min(0.75) - 0.05 && ours <= 0.82,
            "--prism {prism}: A got {:.1}% under us, {:.1}% under EEVDF",
            ours * 100.0,
            eevdf * 100.0
        );
    }
}

/// cpu.weight holds beside a thread that wakes every millisecond (a
/// server's acceptor; in a cgroup of its own, a pod's sidecar): cgroup A,
/// with the waker and nCPU busy threads, keeps its half of the CPU against
/// B's 2 x nCPU, as under EEVDF, and takes no more than 4 points over it.
/// Weighed by the runnable weight of the instant, each wakeup cost A's
/// threads their weight: A got 43-46% (42-43% with the sidecar); the
/// averaged weights give 50-52% (44-47%; EEVDF 48-50%).
#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn a_waking_thread_costs_its_cgroup_no_share() {
    let bus = TempBusDir::new("pbl-waker");
    contract::assert_a_waker_costs_its_cgroup_no_share("pbl-waker", &probe_bin(), || {
        start(&bus, false, &[])
    });
}

/// With --prism, a critical task woken by a critical task that runs only
/// briefly (a chain of services: prism-rpc, 3 stages over Unix sockets,
/// 100 us a hop, under 2 x nCPU batch hogs) takes its waker's CPU when the
/// waker sleeps, instead of preempting a batch task on another CPU: the
/// `affine` statistic counts the hand-offs, and the chain costs at most 0.4x
/// the rescheduling IPIs it costs with the hand-off off (--affine-burst-us
/// 0; measured 0.23-0.25x on 7.3, 0.36x on 6.12; 0.44-0.57x on 7.3 and
/// 0.56x on 6.12 while a spurious wakee already handed off, a unix socket's
/// writer woken as its reader freed the message, turned 29% of the critical
/// wakeups away; without hand-offs, about 1x). Each load runs the chain 3 times; its latency is
/// printed beside, not asserted: the hand-off moves it little in the lab
/// (p50 2.6-2.9 ms, 3.1-3.6 ms without), and with --prism its p50 is still
/// above its p50 without (docs/EVALUATION.md, "Stop 37", "Stop 40").
#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn with_prism_a_critical_chain_hands_its_cpu_on_without_ipis() {
    let bus = TempBusDir::new("pbl-rpc");
    let group = TempCgroup::new("pbl-rpc");
    let (crit, hogs_cg) = (group.child("critical"), group.child("batch"));
    lab::label(
        &bus,
        &[
            (&crit, entry(361, LatencyClass::Critical)),
            (&hogs_cg, entry(362, LatencyClass::Batch)),
        ],
    );
    let rpc = lab::built_beside(&scheduler(), "prism-rpc");
    let args = "--stages 3 --rate 100 --work-us 100 --duration-s 3";
    let mut figures = Vec::new();
    for affine_us in ["500", "0"] {
        let s = start(
            &bus,
            true,
            &["--stats", "1", "--affine-burst-us", affine_us],
        );
        let hogs = Hogs::start(&hogs_cg.path, 2 * lab::nr_cpus());
        sleep(Duration::from_millis(500));
        let ipis = lab::resched_ipis();
        let runs: Vec<Summary> = (0..3)
            .map(|_| Probe::start(&rpc, &crit.path, "rpc", args).finish())
            .collect();
        let ipis = lab::resched_ipis().saturating_sub(ipis);
        drop(hogs);
        let log = stop_cleanly(s);
        let affine = lab::stat_sum(&log, " affine ");
        let (p50, p99) = median_p50_p99(&runs);
        println!(
            "--affine-burst-us {affine_us}: {affine} hand-offs, {ipis} rescheduling IPIs; \
             chain p50/p99 {p50:.0}/{p99:.0} us (median of 3)"
        );
        figures.push((affine, ipis));
    }
    let [(affine, ipis), (affine_off, ipis_off)] = figures[..] else {
        unreachable!("two loads")
    };
    assert!(affine > 0, "no critical wakee took its waker's CPU");
    assert_eq!(affine_off, 0, "--affine-burst-us 0 still handed CPUs on");
    assert!(
        5 * ipis <= 2 * ipis_off,
        "{ipis} rescheduling IPIs with the hand-off, {ipis_off} without"
    );
}

/// The verifier's budget (issue 17): the load logs each program's
/// instructions processed; the largest must stay under half the verifier's
/// complexity limit, so the next change or kernel does not fail to load.
#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn every_program_verifies_under_half_the_complexity_limit() {
    let bus = TempBusDir::new("pbl-verifier");
    let s = start(&bus, true, &[]);
    let log = stop_cleanly(s);
    let line = prism_sched::verifier::check_log(&log, 50.0).unwrap_or_else(|e| panic!("{e}"));
    println!("{line}");
}

/// A SCHED_FIFO hog taking a CPU: the tasks it displaces move to the other
/// CPUs (under 500 ms runnable; measured in the lab with 3 threads: EEVDF
/// 116-166 ms, scx_prism 24-32, scx_prism_bpfland 28-108, both 950 before
/// ops.cpu_release re-enqueued), and beside 50 always-runnable threads and
/// a fork stream no thread waits runnable half the watchdog timeout
/// (measured: EEVDF 626-1,004 ms, scx_prism 520-1,077), no ejection.
#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn survives_a_sched_fifo_hog_beside_runnable_threads_and_forks() {
    let bus = TempBusDir::new("fifo-hog");
    let cg = TempCgroup::new("fifo-hog");
    let (displaced, crowd) =
        lab::longest_waits_beside_a_fifo_hog_ms(&scheduler(), &cg.path, || start(&bus, false, &[]));
    println!(
        "longest runnable wait beside the FIFO hog: displaced {displaced:.0} ms, among 50 {crowd:.0} ms"
    );
}

/// Thousands of queued batch tasks never get ahead of critical work under
/// --prism: see scx_prism's test of the same name. Here the classes are
/// weights in one queue, so the proof is the jump: an owed critical wakeup
/// queued before a batch head (without it: 302 us -> 48-124 ms, waits of
/// 1.6 s). Not yet reliable: with the queue 5 of 6 runs passed (333-454 us
/// -> 475-763 us), one failed (708 us -> 381 ms, critical waiting ~0.8 s
/// while the 2,000 threads were released); ci/test leaves it out
/// (LAB_SKIP) until that is found, and it runs by name.
#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn thousands_of_queued_batch_tasks_never_get_ahead_of_critical_with_prism() {
    resilience::batch_depth_never_gets_ahead_of_critical(&scheduler(), |bus| {
        start(bus, true, &["--stats", "1"])
    });
}
