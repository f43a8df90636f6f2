//! scx_prism in the sched_ext lab kernel. Ignored by a plain `cargo test`
//! (this host has no sched_ext); ci/test runs them in the lab guest with
//! `--include-ignored --test-threads=1`. Each test loads the real scheduler
//! and asserts what the kernel and the workloads show.

use std::path::PathBuf;
use std::thread::sleep;
use std::time::{Duration, Instant};

use prism_bus::{Entry, LatencyClass};
use prism_testkit::fixtures::{TempBusDir, TempCgroup, sched_entry};
use prism_testkit::lab::{self, Hogs, Probe, SchedProcess, cgroup2_root, stop_cleanly};
use prism_testkit::latency::{Summary, in_turn, median_p50_p99};
use prism_testkit::stats::median;
use prism_testkit::{contract, resilience};

fn entry(id: u32, class: LatencyClass) -> Entry {
    sched_entry(id, class, 0)
}

fn scx_prism() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_scx_prism"))
}

// the lab tests every Prism scheduler passes (prism_testkit::suite)
prism_testkit::lab_tests_of_every_scheduler!(prism_testkit::suite::Scheduler {
    bin: scx_prism(),
    flags: &[],
    tag: "prism",
});

fn probe_bin() -> PathBuf {
    lab::built_beside(&scx_prism(), "prism-probe")
}

/// A probe in `probe_cg` under 2 x nCPU busy hogs in `hogs_cg`, with
/// whatever scheduler runs now: its figures, and the hogs' CPU seconds
/// while it ran.
fn probe_under_hogs(
    probe_cg: &TempCgroup,
    hogs_cg: &TempCgroup,
    label: &str,
    args: &str,
) -> (Summary, f64) {
    let hogs = Hogs::start(&hogs_cg.path, 2 * lab::nr_cpus());
    sleep(Duration::from_millis(300));
    let before = lab::cpu_usage_us(&hogs_cg.path);
    let r = Probe::start(&probe_bin(), &probe_cg.path, label, args).finish();
    let hog_cpu = lab::cpu_usage_us(&hogs_cg.path).saturating_sub(before) as f64 / 1e6;
    drop(hogs);
    (r, hog_cpu)
}

fn start(bus: &TempBusDir, extra: &[&str]) -> SchedProcess {
    let dir = bus.paths.dir.to_str().unwrap().to_string();
    let mut args = vec!["--bus-dir", &dir];
    args.extend_from_slice(extra);
    SchedProcess::start(&scx_prism(), &args)
}

#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn loads_enables_and_unloads_on_sigint() {
    let bus = TempBusDir::new("load");
    let s = start(&bus, &[]);
    assert_eq!(lab::state(), "enabled");
    assert!(
        lab::ops().starts_with("scx_prism"),
        "root/ops is {:?}",
        lab::ops()
    );
    sleep(Duration::from_secs(2));
    stop_cleanly(s);
    assert_eq!(lab::ops(), "");
}

#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn survives_45s_of_stress_ng_with_an_empty_bus() {
    resilience::survives_stress_with_an_empty_bus(|bus| start(bus, &["--stats", "5"]));
}

#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn survives_45s_of_stress_ng_with_bus_entries() {
    resilience::survives_stress_in_a_critical_cgroup(|bus| start(bus, &[]));
}

/// Critical ping-pong pairs (stress-ng --switch) hand a CPU back and forth
/// in bursts short enough for wake-affine placement (critical work's
/// alone), and a task on a CPU's local queue runs before ops.dispatch is
/// asked: without a cap on such placements in a row, the pairs could own
/// their CPUs, and a critical hog pinned to each would wait until the
/// watchdog ejected the scheduler. (Without the cap: 0.39 of 2 CPUs for the
/// pinned hogs; with it 1.15.)
#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn ping_pong_pairs_leave_their_cpus_other_work_running() {
    let bus = TempBusDir::new("pingpong");
    let (pinned, pairs) = (
        TempCgroup::new("pingpong-pinned"),
        TempCgroup::new("pingpong-pairs"),
    );
    lab::label(
        &bus,
        &[
            (&pinned, entry(330, LatencyClass::Critical)),
            (&pairs, entry(331, LatencyClass::Critical)),
        ],
    );
    let s = start(&bus, &["--stats", "1"]);
    let n = lab::nr_cpus();
    let hogs = Hogs::start_pinned(&pinned.path, &(0..n).collect::<Vec<_>>());
    sleep(Duration::from_millis(300));
    let (before, t0) = (lab::cpu_usage_us(&pinned.path), Instant::now());
    lab::stress_ng(&pairs.path, &format!("--switch {n} --timeout 10s"));
    let used = lab::cpu_usage_us(&pinned.path).saturating_sub(before) as f64 / 1e6;
    let pinned_cpus = used / t0.elapsed().as_secs_f64();
    drop(hogs);
    assert_eq!(lab::state(), "enabled", "ejected:\n{}", s.log_text());
    let log = stop_cleanly(s);
    let affine = lab::stat_sum(&log, " affine ");
    println!(
        "pinned hogs used {pinned_cpus:.2} CPUs beside {n} ping-pong pairs; {affine} wake-affine placements"
    );
    // with only critical work runnable the share guard finds the lower
    // classes below their share; placements must not stop for that (they
    // did: 2 in 10 s, against some 100,000)
    assert!(
        affine >= 1000,
        "{affine} wake-affine placements: the mechanism barely ran:\n{log}"
    );
    assert!(
        pinned_cpus >= 0.3 * n as f64,
        "the pinned hogs got {pinned_cpus:.2} of {n} CPUs beside the pairs"
    );
}

#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn kill_9_falls_back_to_the_fair_class() {
    let bus = TempBusDir::new("kill9");
    let root = cgroup2_root();
    let hogs = Hogs::start(&root, lab::nr_cpus());
    let s = start(&bus, &[]);
    let killed = Instant::now();
    s.kill9();
    assert!(
        lab::wait_state("disabled", Duration::from_secs(10)),
        "still {} 10 s after SIGKILL",
        lab::state()
    );
    println!(
        "back on the fair class {:?} after SIGKILL",
        killed.elapsed()
    );
    assert!(
        lab::responsive(Duration::from_secs(5)),
        "the guest is not responsive"
    );
    drop(hogs);
}

/// The policy loop stopped (SIGSTOP) for 3 s, then for 10 s, under 2 x
/// nCPU hogs: the per-wakeup path is BPF's, so the hogs keep the CPUs busy
/// through the stop; after SIGCONT the scheduler is still the one loaded
/// (no ejection), and it stops cleanly.
#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn stopping_the_policy_loop_for_3s_and_10s_keeps_every_task_running() {
    let bus = TempBusDir::new("sigstop");
    let hogs_cg = TempCgroup::new("sigstop-hogs");
    let mut s = start(&bus, &["--stats", "1"]);
    let hogs = Hogs::start(&hogs_cg.path, 2 * lab::nr_cpus());
    sleep(Duration::from_millis(500));
    for secs in [3, 10] {
        let before = lab::cpu_usage_us(&hogs_cg.path);
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(s.pid() as i32, libc::SIGSTOP) };
        sleep(Duration::from_secs(secs));
        let used = lab::cpu_usage_us(&hogs_cg.path) - before;
        // SAFETY: as above.
        unsafe { libc::kill(s.pid() as i32, libc::SIGCONT) };
        let share = used as f64 / (secs * 1_000_000 * lab::nr_cpus() as u64) as f64;
        println!(
            "policy loop stopped {secs} s: the hogs used {:.0}% of the CPUs; state {}",
            share * 100.0,
            lab::state()
        );
        assert!(
            share > 0.7,
            "the hogs starved while the loop was stopped: {share:.2}"
        );
        sleep(Duration::from_secs(1));
        assert!(
            s.alive(),
            "scx_prism died after a {secs} s stop:\n{}",
            s.log_text()
        );
        assert_eq!(
            lab::state(),
            "enabled",
            "ejected after a {secs} s stop:\n{}",
            s.log_text()
        );
    }
    drop(hogs);
    let log = stop_cleanly(s);
    assert!(!log.contains("runnable task stall"), "{log}");
}

/// One timer-mode probe per class, each alone under 2 x nCPU batch hogs: a
/// waking critical task preempts a hog at once, a normal one once the hog
/// has run --preempt-min-run-us, a batch one waits for a hog's slice to end
/// (batch slices are --batch-slice-factor base slices). Each runs alone:
/// side by side, the critical and normal probes' preemptions end hog
/// slices early for the batch probe too, and in request mode a batch worker
/// runs where its own dispatcher just slept, so neither shows the policy
/// (CI saw critical's p99 at 0.96x batch's so). In turn, three rounds of
/// 3 s, medians: one class after another let a noisy stretch fall on one
/// class only (critical's p50 1.54x normal's once, the policy loop 10x
/// slower than usual meanwhile). The medians carry the policy; the tails
/// also carry TCG's timer delivery, milliseconds for every class.
#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn critical_beats_normal_beats_batch() {
    let bus = TempBusDir::new("order");
    let group = TempCgroup::new("order");
    let (crit, norm, batch, hogs_cg) = (
        group.child("crit"),
        group.child("norm"),
        group.child("batch"),
        group.child("hogs"),
    );
    lab::label(
        &bus,
        &[
            (&crit, entry(301, LatencyClass::Critical)),
            (&norm, entry(302, LatencyClass::Normal)),
            (&batch, entry(303, LatencyClass::Batch)),
            (&hogs_cg, entry(304, LatencyClass::Batch)),
        ],
    );
    let s = start(&bus, &["--stats", "1"]);
    let args = "--interval-us 2000 --work-us 100 --duration-s 3";
    let classes = [("critical", &crit), ("normal", &norm), ("batch", &batch)];
    let rounds: Vec<Vec<Summary>> = in_turn(classes.len(), 3, |i| {
        let (label, cg) = classes[i];
        probe_under_hogs(cg, &hogs_cg, label, args).0
    });
    let log = stop_cleanly(s);
    for ((label, _), class_rounds) in classes.iter().zip(&rounds) {
        for r in class_rounds {
            println!(
                "{label:>8}: p50 {:>8.0} us  p99 {:>8.0} us  max {:>8.0} us  ({} samples)",
                r.p50_us, r.p99_us, r.max_us, r.samples
            );
        }
    }
    assert!(
        rounds.iter().flatten().all(|r| r.samples > 200),
        "too few samples"
    );
    let [(c50, _), (n50, n99), (b50, b99)] = [0, 1, 2].map(|i| median_p50_p99(&rounds[i]));
    // Critical and normal both preempt batch hogs (normal once a hog has
    // run --preempt-min-run-us, which a hog under this load mostly has), so
    // critical is no worse than normal at the median, with 25% for noise;
    // their tails are TCG's timer delivery (1.9-3.7 ms for either, measured)
    // and are not compared. Batch waits for a slice: far behind at the
    // median (measured 17-24x normal's), behind at the tail.
    assert!(
        c50 <= n50 * 1.25,
        "critical p50 {c50} worse than normal {n50}\n{log}"
    );
    assert!(
        b50 > 3.0 * n50 && b99 > n99,
        "batch p50/p99 {b50}/{b99} not behind normal {n50}/{n99}\n{log}"
    );
}

#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn relabelling_a_running_workload_takes_effect() {
    let bus = TempBusDir::new("relabel");
    let (probe_cg, hogs_cg) = (
        TempCgroup::new("relabel-probe"),
        TempCgroup::new("relabel-hogs"),
    );
    let mut w = lab::label(
        &bus,
        &[
            (&probe_cg, entry(310, LatencyClass::Batch)),
            (&hogs_cg, entry(311, LatencyClass::Batch)),
        ],
    );
    let s = start(&bus, &[]);
    let hogs = Hogs::start(&hogs_cg.path, 2 * lab::nr_cpus());
    sleep(Duration::from_millis(500));
    let args = "--interval-us 2000 --work-us 100 --duration-s 4";
    let before = Probe::start(&probe_bin(), &probe_cg.path, "as-batch", args).finish();
    // The feeder relabels the workload: same process tree, no restart.
    w.write_batch(&[(probe_cg.id(), entry(310, LatencyClass::Critical))], &[])
        .unwrap();
    let after = Probe::start(&probe_bin(), &probe_cg.path, "as-critical", args).finish();
    drop(hogs);
    stop_cleanly(s);
    println!(
        "as batch:    p50 {:.0} us p99 {:.0} us",
        before.p50_us, before.p99_us
    );
    println!(
        "as critical: p50 {:.0} us p99 {:.0} us",
        after.p50_us, after.p99_us
    );
    assert!(
        after.p99_us * 2.0 < before.p99_us,
        "relabelling to critical did not cut p99: {} -> {}",
        before.p99_us,
        after.p99_us
    );
}

/// Critical hogs on every CPU; normal hogs still get the configured share.
#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn normal_work_keeps_its_minimum_share() {
    let root = cgroup2_root();
    lab::enable_cpu_controller(&root);
    let bus = TempBusDir::new("share");
    let (crit, norm) = (TempCgroup::new("share-crit"), TempCgroup::new("share-norm"));
    lab::label(
        &bus,
        &[
            (&crit, entry(320, LatencyClass::Critical)),
            (&norm, entry(321, LatencyClass::Normal)),
        ],
    );
    let s = start(&bus, &["--min-share", "25", "--stats", "1"]);
    let n = lab::nr_cpus();
    let crit_hogs = Hogs::start(&crit.path, n);
    let norm_hogs = Hogs::start(&norm.path, n);
    let used = lab::cpu_seconds_over(
        &[&crit.path, &norm.path],
        Duration::from_secs(1),
        Duration::from_secs(6),
    );
    drop((crit_hogs, norm_hogs));
    let log = stop_cleanly(s);
    let (c, nn) = (used[0], used[1]);
    let share = nn / (c + nn);
    println!(
        "critical {c:.2} s, normal {nn:.2} s of CPU: normal share {:.1}%",
        share * 100.0
    );
    assert!(
        share >= 0.20,
        "normal got {:.1}% (< 25% - 5 points of slack)",
        share * 100.0
    );
    assert!(
        share <= 0.5,
        "critical did not come first: normal got {:.1}%\n{log}",
        share * 100.0
    );
}

/// cgroup cpu.weight scales CPU time: hogs in a weight-300 cgroup get about
/// three times the CPU of the same hogs in a weight-100 one.
#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn cgroup_cpu_weight_is_honoured() {
    let bus = TempBusDir::new("weight");
    let ratio = lab::cpu_weight_ratio("weight", || start(&bus, &[]));
    println!("cpu.weight 300 vs 100: CPU time ratio {ratio:.2} (ideal 3)");
    assert!(
        (2.0..=4.5).contains(&ratio),
        "cpu.weight ratio {ratio:.2} is not about 3"
    );
}

/// A critical request probe under 2 x nCPU batch CPU hogs, EEVDF and then
/// scx_prism in the same boot: scx_prism's p99 must be below half EEVDF's,
/// and the hogs must keep at least 75% of the CPU time EEVDF gives them (a
/// preempted hog goes back to its queue in BPF, no round trip).
#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn critical_requests_beat_eevdf_under_batch_hogs() {
    lab::enable_cpu_controller(&cgroup2_root());
    let bus = TempBusDir::new("hurry");
    let (crit, batch) = (
        TempCgroup::new("hurry-crit"),
        TempCgroup::new("hurry-batch"),
    );
    lab::label(
        &bus,
        &[
            (&crit, entry(320, LatencyClass::Critical)),
            (&batch, entry(321, LatencyClass::Batch)),
        ],
    );
    let args = "--workers 2 --interval-us 2000 --work-us 300 --duration-s 5";
    let measure = || probe_under_hogs(&crit, &batch, "critical", args);
    let (eevdf, eevdf_hogs) = measure();
    let s = start(&bus, &["--stats", "1"]);
    let (prism, prism_hogs) = measure();
    let log = stop_cleanly(s);
    println!(
        "critical request p99: EEVDF {:.0} us, scx_prism {:.0} us ({:.2}x); p50 {:.0} / {:.0} us",
        eevdf.p99_us,
        prism.p99_us,
        prism.p99_us / eevdf.p99_us,
        eevdf.p50_us,
        prism.p50_us
    );
    let preempts = lab::stat_sum(&log, " preempt ");
    let affine = lab::stat_sum(&log, " affine ");
    println!(
        "hogs' CPU seconds while the probe ran: EEVDF {eevdf_hogs:.2}, scx_prism {prism_hogs:.2} ({:.2}x); {preempts} wakeups preempted, {affine} on the waker's CPU",
        prism_hogs / eevdf_hogs
    );
    assert!(
        eevdf.samples > 1000 && prism.samples > 1000,
        "too few samples"
    );
    assert!(
        prism.p99_us < 0.5 * eevdf.p99_us,
        "critical p99 {:.0} us is not below half EEVDF's {:.0} us",
        prism.p99_us,
        eevdf.p99_us
    );
    assert!(preempts > 0, "no critical wakeup preempted a hog:\n{log}");
    // the dispatcher wakes a worker and sleeps: the worker should take its CPU
    assert!(
        affine > 0,
        "no wakeup was placed on its waker's CPU:\n{log}"
    );
    assert!(
        prism_hogs >= 0.75 * eevdf_hogs,
        "the hogs got {prism_hogs:.2} s of CPU under scx_prism, under 75% of EEVDF's {eevdf_hogs:.2} s"
    );
}

/// With nothing on the bus every task is of one class: a request probe's
/// wakeups under 2 x nCPU hogs take the CPU they wake on by same-class
/// preemption when its hog has run --preempt-min-run-us (no timer for
/// unlabelled work: if it has not, the probe queues by its deadline). Three
/// interleaved trials against EEVDF in the same boot; the median p99 must
/// be below EEVDF's (391 us against 2121 in the lab; before same-class
/// preemption it was 1.7x EEVDF's in CI's evaluation), wakeups must have
/// preempted, and hardly any preemption timer may have been armed.
#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn same_class_wakeups_beat_eevdf_with_an_empty_bus() {
    let bus = TempBusDir::new("sameclass");
    let (probe_cg, hogs_cg) = (
        TempCgroup::new("sameclass-probe"),
        TempCgroup::new("sameclass-hogs"),
    );
    let args = "--workers 2 --interval-us 2000 --work-us 300 --duration-s 3";
    let measure = || {
        probe_under_hogs(&probe_cg, &hogs_cg, "normal", args)
            .0
            .p99_us
    };
    let (mut eevdf, mut prism, mut preempts, mut timed) = (Vec::new(), Vec::new(), 0, 0);
    for _ in 0..3 {
        eevdf.push(measure());
        let s = start(&bus, &["--stats", "1"]);
        prism.push(measure());
        let log = stop_cleanly(s);
        preempts += lab::stat_sum(&log, " preempt ");
        timed += lab::stat_sum(&log, " deferred ");
    }
    let (e, p) = (median(&eevdf), median(&prism));
    println!(
        "same-class request p99, median of 3: EEVDF {e:.0} us, scx_prism {p:.0} us ({:.2}x); {preempts} wakeups preempted, {timed} timers armed",
        p / e
    );
    assert!(preempts > 0, "no wakeup preempted: nothing was tested");
    // unlabelled work spends no timer on same-class preemption (a messaging
    // load armed 12,000 a second and lost to EEVDF in some boots; 172 here
    // before, 0 since). Per-CPU kthreads are critical and may time theirs.
    assert!(
        timed * 100 <= preempts,
        "{timed} preemption timers armed for {preempts} preemptions"
    );
    assert!(
        p < e,
        "scx_prism's p99 {p:.0} us is not below EEVDF's {e:.0} us"
    );
}

/// A waking task does not preempt a same-class waker that has run less than
/// 2.5 ms since it woke (an interactive task sleeps soon on its own). An
/// unlabelled chain of services (prism-rpc, 5 stages, 100 requests a second,
/// 1 ms of work a hop: past --preempt-min-run-us, below 2.5 ms) beside
/// 2 x nCPU unlabelled hogs: each hop wakes the next service from the one
/// that spun 1 ms and is about to wait for the reply. The services'
/// involuntary context switches (prism-rpc reads them from the kernel) count
/// how often one was switched out while runnable (by a wakee, or at the end
/// of a slice when requests queue up). 300 requests, measured in the lab
/// (7.3): 5-19 now; 268-436 with the minimum run alone (stop 37's rule).
/// The scheduler's own count of preemptions, which the client's timer
/// wakeups taking hogs' CPUs swell, was 488-555 against 213-283: too close
/// to tell apart (CI once saw 319). On 6.12, slower here, the chain
/// sometimes falls behind and its services then run back to back: 22-123
/// now, 452-486 with stop 37's rule.
#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn an_interactive_waker_is_not_preempted_by_its_wakee() {
    let bus = TempBusDir::new("waker-kept");
    let group = TempCgroup::new("waker-kept");
    let (chain, hogs_cg) = (group.child("chain"), group.child("hogs"));
    let rpc = lab::built_beside(&scx_prism(), "prism-rpc");
    let (rate, seconds) = (100, 3);
    let s = start(&bus, &["--stats", "1"]);
    let hogs = Hogs::start(&hogs_cg.path, 2 * lab::nr_cpus());
    sleep(Duration::from_millis(500));
    let out = Probe::start(
        &rpc,
        &chain.path,
        "rpc",
        &format!("--stages 5 --rate {rate} --work-us 1000 --duration-s {seconds}"),
    )
    .try_json()
    .unwrap_or_else(|e| panic!("{e}"));
    drop(hogs);
    let log = stop_cleanly(s);
    let summary: Summary = serde_json::from_value(out["summary"].clone()).expect("rpc summary");
    let services_preempted = out["services_preempted"]
        .as_u64()
        .expect("prism-rpc reports services_preempted");
    let preempts = lab::stat_sum(&log, " preempt ");
    let requests = rate * seconds;
    println!(
        "{services_preempted} times a service was preempted, {preempts} wakeups preempted, for {requests} requests; chain p50/p99 {:.0}/{:.0} us",
        summary.p50_us, summary.p99_us
    );
    assert!(
        preempts > 0,
        "no wakeup preempted a hog: nothing was tested"
    );
    assert!(
        services_preempted * 5 <= requests,
        "services preempted {services_preempted} times in {requests} requests: wakees preempted their wakers"
    );
}

/// A messaging load (160 unlabelled threads over pipes, prism-messaging,
/// hackbench's shape) finishes sooner than under EEVDF: a woken receiver
/// preempts its sender only once that has shown itself CPU-bound, with no timer,
/// and unlabelled work gets no wake-affine placement. When every woken
/// receiver preempted its sender, it took 1.9-3.1 s against EEVDF's
/// 1.42-1.56 s; with timers and wake-affine placement for unlabelled work
/// 0.78-1.25 s, and up to 4.3 s in some boots.
///
/// The load had two regimes under scx_prism: most runs found 11-15
/// messages waiting per read (1.0-1.6 s), some 7-10 (1.8-2.8 s); EEVDF's
/// always find about 4 (1.4-3.4 s). The slow runs were those whose woken
/// receivers preempted their senders mid-burst (1,000-1,200 preemptions a
/// run against 200-400): CI failed at 2.56 s against 2.35 (3 slow runs of
/// 5). A receiver now preempts only a sender that has run 2.5 ms since it
/// woke, as within critical: 92-325 preemptions, median 0.93-0.97 s in two
/// boots against 1.20-1.44 s before. Five interleaved trials, medians
/// compared.
#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn a_messaging_load_finishes_sooner_than_under_eevdf() {
    let bus = TempBusDir::new("prism-messaging");
    let cg = TempCgroup::new("prism-messaging");
    let bin = lab::built_beside(&scx_prism(), "prism-messaging");
    let measure = |who: &str| {
        let v = Probe::start(&bin, &cg.path, "messaging", "--messages 200")
            .try_json()
            .unwrap_or_else(|e| panic!("{e}"));
        let (seconds, batch) = (
            v["seconds"].as_f64().expect("seconds"),
            v["messages_per_read"].as_f64().expect("messages_per_read"),
        );
        println!("{who}: {seconds:.2} s, {batch:.1} messages per read");
        seconds
    };
    let (mut eevdf, mut prism) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        eevdf.push(measure("EEVDF"));
        let s = start(&bus, &[]);
        prism.push(measure("scx_prism"));
        stop_cleanly(s);
    }
    let (e, p) = (median(&eevdf), median(&prism));
    println!(
        "messaging, median of 5: EEVDF {e:.2} s, scx_prism {p:.2} s ({:.2}x)",
        p / e
    );
    assert!(p < e, "scx_prism took {p:.2} s, EEVDF {e:.2} s");
}

/// The stall reproducer: a 160-task messaging storm (4 groups of 20
/// senders and 20 receivers over pipes) run again and again for 60 s, the
/// load under which the watchdog once ejected scx_prism. No ejection, every
/// run completes, and the rescues of the scheduler's own watchdog are
/// reported.
#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn a_60s_messaging_storm_never_stalls_a_task() {
    let bus = TempBusDir::new("storm");
    let cg = TempCgroup::new("storm");
    let bin = lab::built_beside(&scx_prism(), "prism-messaging");
    let mut s = start(&bus, &["--stats", "1"]);
    let t0 = Instant::now();
    let mut runs = 0;
    while t0.elapsed() < Duration::from_secs(60) {
        Probe::start(&bin, &cg.path, "storm", "--messages 200")
            .try_json()
            .unwrap_or_else(|e| panic!("run {runs}: {e}\n{}", s.log_text()));
        runs += 1;
        assert_eq!(
            lab::state(),
            "enabled",
            "ejected in run {runs}:\n{}",
            s.log_text()
        );
    }
    assert!(s.alive(), "{}", s.log_text());
    let log = stop_cleanly(s);
    let rescued = lab::stat_sum(&log, " rescued ");
    println!(
        "{runs} messaging runs in 60 s, no ejection; {rescued} tasks rescued by scx_prism's own watchdog"
    );
    assert!(runs >= 5, "only {runs} runs in 60 s");
    assert!(!log.contains("runnable task stall"), "{log}");
}

/// cpu.weight is a group share whatever the thread counts: 2 busy threads at
/// weight 300 beside 10 at weight 100 get EEVDF's share (ideal 75%), not
/// the 37.5% per-task weighting gives.
#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn group_shares_do_not_depend_on_thread_counts() {
    let bus = TempBusDir::new("prism-groups");
    let (eevdf, ours) = contract::unequal_thread_counts("prism-groups", || start(&bus, &[]));
    println!(
        "A's share: EEVDF {:.1}%, ours {:.1}% (ideal 75%)",
        eevdf * 100.0,
        ours * 100.0
    );
    assert!(
        ours >= eevdf.min(0.75) - 0.05 && ours <= 0.82,
        "A got {:.1}% under us, {:.1}% under EEVDF",
        ours * 100.0,
        eevdf * 100.0
    );
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
    let bus = TempBusDir::new("prism-waker");
    contract::assert_a_waker_costs_its_cgroup_no_share("prism-waker", &probe_bin(), || {
        start(&bus, &[])
    });
}

/// The class decides who runs first, the limit caps: a critical pod
/// limited to 0.2 CPU (cpu.max 20000 100000) keeps its requests' latency
/// under batch hogs while it stays under the limit (p50 within 1.5x, p99
/// within 2x of the same pod unlimited, medians of 3 rounds run in turn: one
/// round each failed a run of the suite in CI's order at 540 us limited
/// against 259 unlimited, where other runs measured 502-643 unlimited), and
/// critical hogs inside it use no more than the limit (5% over at most).
#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn a_limited_critical_pod_keeps_its_latency_and_no_more_than_its_limit() {
    lab::enable_cpu_controller(&cgroup2_root());
    let bus = TempBusDir::new("limcrit");
    let (crit, batch) = (
        TempCgroup::new("limcrit-crit"),
        TempCgroup::new("limcrit-batch"),
    );
    lab::label(
        &bus,
        &[
            (&crit, entry(322, LatencyClass::Critical)),
            (&batch, entry(323, LatencyClass::Batch)),
        ],
    );
    let s = start(&bus, &[]);
    // a request every 4 ms, 300 us of work each: under a fifth of a CPU
    let args = "--workers 2 --interval-us 4000 --work-us 300 --duration-s 3";
    let limits = ["max 100000", "20000 100000"];
    let rounds = in_turn(limits.len(), 3, |i| {
        std::fs::write(crit.path.join("cpu.max"), limits[i]).unwrap();
        probe_under_hogs(&crit, &batch, "critical", args).0
    });
    let [(u50, u99), (l50, l99)] = [0, 1].map(|i| median_p50_p99(&rounds[i]));
    std::fs::write(crit.path.join("cpu.max"), limits[1]).unwrap();
    let hogs = Hogs::start(&crit.path, 2);
    let used = lab::cpu_seconds_over(
        &[&crit.path],
        Duration::from_secs(1),
        Duration::from_secs(5),
    )[0] / 5.0;
    drop(hogs);
    stop_cleanly(s);
    println!(
        "critical requests p50/p99 (median of 3): unlimited {u50:.0}/{u99:.0} us, limited to 0.2 CPU {l50:.0}/{l99:.0} us; 2 critical hogs in it used {used:.3} CPUs"
    );
    assert!(
        l50 <= 1.5 * u50 && l99 <= 2.0 * u99,
        "the limit cost the critical requests their latency"
    );
    assert!(
        used <= 0.21,
        "critical hogs used {used:.3} CPUs under a 0.2 limit"
    );
}

/// The verifier's budget (issue 17): the load logs each program's
/// instructions processed; the largest must stay under half the verifier's
/// complexity limit, so the next change or kernel does not fail to load.
#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn every_program_verifies_under_half_the_complexity_limit() {
    let bus = TempBusDir::new("prism-verifier");
    let s = start(&bus, &[]);
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
        lab::longest_waits_beside_a_fifo_hog_ms(&scx_prism(), &cg.path, || start(&bus, &[]));
    println!(
        "longest runnable wait beside the FIFO hog: displaced {displaced:.0} ms, among 50 {crowd:.0} ms"
    );
}

/// Thousands of queued batch tasks never get ahead of critical work (what a
/// ring buffer to user space that overflowed once let happen): the critical
/// probe's p99 beside 2,000 always-runnable batch threads stays within
/// twice (plus 2 ms of emulation noise) its p99 beside 4 batch hogs.
/// Measured: 297 -> 266 us, batch threads' longest wait 1.17 s.
/// scx_prism_bpfland's suite runs the same check.
#[test]
#[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
fn thousands_of_queued_batch_tasks_never_get_ahead_of_critical() {
    resilience::batch_depth_never_gets_ahead_of_critical(&scx_prism(), |bus| {
        start(bus, &["--stats", "1"])
    });
}
