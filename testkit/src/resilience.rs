//! The robustness experiments both schedulers' lab tests run, set-up and
//! the checks every Prism scheduler must pass in one place; a test names
//! only what differs (the scheduler, how it is started, its flags).

use std::path::Path;

use prism_bus::LatencyClass;

use crate::fixtures::{TempBusDir, TempCgroup, sched_entry};
use crate::lab::{self, SchedProcess, cgroup2_root, stop_cleanly, stress};

/// It is still running and still the loaded scheduler after `what`.
fn assert_still_loaded(s: &mut SchedProcess, what: &str) {
    assert!(s.alive(), "died under {what}:\n{}", s.log_text());
    assert_eq!(
        lab::state(),
        "enabled",
        "ejected under {what}:\n{}",
        s.log_text()
    );
}

/// 45 s of stress-ng on the whole machine with an empty bus: it stays
/// loaded, and tasks preempted inside RCU read-side sections got their
/// short stint (prism/rcu_reader.bpf.h: what keeps this from RCU stalls),
/// which `start` must let it report (`--stats`).
pub fn survives_stress_with_an_empty_bus(start: impl FnOnce(&TempBusDir) -> SchedProcess) {
    let bus = TempBusDir::new("stress-empty");
    let mut s = start(&bus);
    stress(&cgroup2_root(), 45);
    assert_still_loaded(&mut s, "stress");
    let log = stop_cleanly(s);
    let rcu = lab::stat_sum(&log, " rcu ");
    println!("{rcu} preempted RCU readers queued for a short stint");
    assert!(rcu > 0, "no preempted RCU reader seen under stress:\n{log}");
}

/// 45 s of stress-ng in a cgroup the bus labels critical: it stays loaded,
/// with no BPF runtime error.
pub fn survives_stress_in_a_critical_cgroup(start: impl FnOnce(&TempBusDir) -> SchedProcess) {
    let bus = TempBusDir::new("stress-bus");
    let cg = TempCgroup::new("stress-crit");
    lab::label(&bus, &[(&cg, sched_entry(300, LatencyClass::Critical, 0))]);
    let mut s = start(&bus);
    stress(&cg.path, 45);
    assert_still_loaded(&mut s, "stress in a critical cgroup");
    let log = stop_cleanly(s);
    assert!(!log.contains("runtime error"), "{log}");
}

/// Thousands of queued batch tasks never get ahead of critical work: the
/// critical probe's p99 beside 2,000 always-runnable batch threads stays
/// within twice (plus 2 ms of emulation noise) its p99 beside 4 batch hogs
/// (lab::assert_depth_does_not_reorder_classes), under `scheduler` as
/// `start` loads it on the bus that labels the two cgroups.
pub fn batch_depth_never_gets_ahead_of_critical(
    scheduler: &Path,
    start: impl FnOnce(&TempBusDir) -> SchedProcess,
) {
    lab::enable_cpu_controller(&cgroup2_root());
    let bus = TempBusDir::new("depth");
    let (crit, batch) = (
        TempCgroup::new("depth-crit"),
        TempCgroup::new("depth-batch"),
    );
    lab::label(
        &bus,
        &[
            (&crit, sched_entry(340, LatencyClass::Critical, 0)),
            (&batch, sched_entry(341, LatencyClass::Batch, 0)),
        ],
    );
    let (few, thousands) =
        lab::critical_beside_few_and_thousands_of_batch(scheduler, &crit.path, &batch.path, || {
            start(&bus)
        });
    lab::assert_depth_does_not_reorder_classes(&few, &thousands);
}
