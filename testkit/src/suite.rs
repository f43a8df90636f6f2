//! The lab tests every Prism scheduler passes, defined once: each
//! scheduler's test file names itself with [`lab_tests_of_every_scheduler!`]
//! and gets the same tests, under the same names, with the same
//! assertions; what differs between the schedulers stays in their own files.

use std::path::PathBuf;

use prism_bus::{Entry, LatencyClass};

use crate::fixtures::{TempBusDir, TempCgroup, sched_entry};
use crate::lab::{self, SchedProcess, stop_cleanly};
use crate::{contract, hotplug, topology};

/// A scheduler under test: its binary, the flags it runs with in these
/// tests (scx_prism_bpfland: `--prism`), and a short tag that keeps its
/// cgroups' and buses' names apart from the other's.
pub struct Scheduler {
    pub bin: PathBuf,
    pub flags: &'static [&'static str],
    pub tag: &'static str,
}

impl Scheduler {
    /// Start it reading the classes on `bus`, with `extra` flags.
    pub fn start(&self, bus: &TempBusDir, extra: &[&str]) -> SchedProcess {
        let dir = bus.paths.dir.to_str().expect("a UTF-8 bus path");
        let mut args = vec!["--bus-dir", dir];
        args.extend_from_slice(self.flags);
        args.extend_from_slice(extra);
        SchedProcess::start(&self.bin, &args)
    }

    /// `{tag}-{what}`: a name for one test's cgroups and bus.
    fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.tag)
    }

    /// What its statistics lines start with: `[scx_prism]`.
    fn stats_prefix(&self) -> String {
        let file = self.bin.file_name().expect("a binary's name");
        format!("[{}]", file.to_string_lossy())
    }
}

fn entry(id: u32, class: LatencyClass) -> Entry {
    sched_entry(id, class, 0)
}

/// A critical label is the scheduler's only with the sched facet
/// (`lab::check_sched_facet`).
pub fn a_workload_without_the_sched_facet_gets_no_class(s: &Scheduler) {
    let bus = TempBusDir::new(&s.name("facet"));
    lab::check_sched_facet(&bus, || s.start(&bus, &["--stats", "1"]));
}

/// CPU hotplug under load (issue 17): see `hotplug::offline_online_cycles`.
/// The cpu_online/cpu_offline callbacks keep the scheduler loaded; without
/// them the kernel unloaded it at each event and the reload took 22-31 s.
pub fn cpu_hotplug_under_load_keeps_the_scheduler_and_runs_every_task(s: &Scheduler) {
    let bus = TempBusDir::new(&s.name("hotplug"));
    let cg = TempCgroup::new(&s.name("hotplug"));
    lab::label(&bus, &[(&cg, entry(333, LatencyClass::Normal))]);
    let mut sched = s.start(&bus, &[]);
    hotplug::check_scheduler(&mut sched, &cg.path).unwrap_or_else(|e| panic!("{e}"));
    let log = stop_cleanly(sched);
    assert!(!log.contains("runtime error"), "{log}");
}

/// The standard scx libbpf options (scx_utils' LibbpfOpts, flattened) are
/// taken and applied: a custom BTF path that names nothing stops the load.
pub fn loads_with_the_scx_libbpf_options(s: &Scheduler) {
    let bus = TempBusDir::new(&s.name("libbpf-opts"));
    let mut args = s.flags.to_vec();
    args.extend(["--bus-dir", bus.paths.dir.to_str().unwrap()]);
    lab::check_libbpf_options(&s.bin, &args);
}

/// `--monitor` reads a running scheduler's statistics over scx_stats
/// without loading anything.
pub fn monitor_reads_the_running_schedulers_stats(s: &Scheduler) {
    let bus = TempBusDir::new(&s.name("monitor"));
    let sched = s.start(&bus, &[]);
    let text = lab::monitor_output(&s.bin);
    stop_cleanly(sched);
    println!("{text}");
    let prefix = s.stats_prefix();
    let samples = text.lines().filter(|l| l.starts_with(&prefix)).count();
    assert!(samples >= 2, "{samples} samples:\n{text}");
    assert!(text.contains("wait p50/p99"), "{text}");
}

/// The bus deleted and re-created 10 times a second during 30 s of
/// stress-ng in a labelled cgroup: no ejection, and the scheduler follows
/// the bus to its last incarnation.
pub fn survives_the_bus_recreated_10_times_a_second_under_stress(s: &Scheduler) {
    let bus = TempBusDir::new(&s.name("bus-churn"));
    let cg = TempCgroup::new(&s.name("bus-churn"));
    let n =
        lab::survives_bus_churn_under_stress(&bus, &cg, entry(333, LatencyClass::Critical), || {
            s.start(&bus, &["--stats", "1"])
        });
    println!("the bus was re-created {n} times under stress");
    assert!(n >= 100, "only {n} re-creations in 30 s");
}

/// Relabels and cgroup moves reach tasks that are already running (issue
/// 17): the same hog processes throughout, their share follows the bus
/// weight (which acts within one cpu.weight group) and the cgroup they are
/// moved into.
pub fn relabels_and_cgroup_moves_reach_running_tasks(s: &Scheduler) {
    let r =
        contract::relabels_and_moves_of_running_tasks(&s.name("relabel"), |bus| s.start(bus, &[]));
    println!(
        "heavy/light CPU time: before {:.2}, after the relabel {:.2}; after the move (equal weights) {:.2}",
        r.before, r.relabelled, r.moved
    );
    let bad = r.failures();
    assert!(bad.is_empty(), "{}", bad.join("; "));
}

/// The kubelet's cgroup tree (QoS slices, pods, containers, weights from
/// their requests, a BestEffort pod, a system.slice hog): every cgroup's
/// share of the machine within 9 points of what the weights promise
/// (contract::ideal_shares). EEVDF's own distance from it is printed: on
/// 2 CPUs it splits a group's weight per CPU and misses by 10-15 points.
pub fn the_kubelet_tree_gets_the_shares_its_weights_promise(s: &Scheduler) {
    let bus = TempBusDir::new(&s.name("kubelet"));
    let (eevdf, ours) = contract::kubelet_tree_shares(&s.name("kubelet"), || s.start(&bus, &[]));
    println!(
        "largest difference from the weights' shares: EEVDF {:.1}, ours {:.1} points",
        eevdf * 100.0,
        ours * 100.0
    );
    assert!(
        ours <= 0.09,
        "a cgroup is {:.1} points off its share",
        ours * 100.0
    );
}

/// cpu.max: a 4-thread pod limited to 0.5 CPU uses 0.5, and a parent
/// limited to 1 CPU uses 1 over its two unlimited 4-thread children, each
/// within 10% of the limit (EEVDF's usage printed beside), and no weight
/// stays counted once the hogs stop (`contract::limits_usage`).
pub fn cpu_max_caps_a_cgroup_and_its_descendants(s: &Scheduler) {
    let bus = TempBusDir::new(&s.name("limits"));
    for (g, limit, _eevdf, ours) in contract::limits_usage(&s.name("limits"), || s.start(&bus, &[]))
    {
        assert!(
            (ours - limit).abs() <= 0.1 * limit,
            "{} used {ours:.3} CPUs under cpu.max {limit}",
            g.path
        );
    }
}

/// A limit written to a running pod, and its removal, reach the scheduler
/// (on kernels without the bandwidth callback, through user space
/// following cgroupfs: the 6.12 lab runs this too).
pub fn cpu_max_written_while_running_takes_effect(s: &Scheduler) {
    let bus = TempBusDir::new(&s.name("relimit"));
    let (limited, lifted) =
        contract::limit_changes_while_running(&s.name("relimit"), || s.start(&bus, &[]));
    assert!(
        (limited - 0.5).abs() <= 0.05,
        "{limited:.3} CPUs under cpu.max 50000 100000"
    );
    assert!(lifted > 1.5, "{lifted:.3} CPUs once the limit was lifted");
}

/// 200 cgroups limited to 0.5% of a CPU each on the lab's 2 CPUs (1% on
/// 4: the limits add up to half the machine) with 2 busy threads, for 30 s:
/// no ejection, and an unlimited probe keeps its latency: p50 within 1.5x
/// of before, p99 within 5x or 4 ms. What this guards against is
/// throttling stalling others: a stall costs a share of the 200 ms period,
/// tens of ms; 4 ms is what EEVDF gives the same probe under 2 x nCPU hogs
/// in this lab (p99 3.3-3.7 ms in the 5-trial evaluation). The history,
/// measured with scx_prism_bpfland: since queued wakeups the probe alone
/// has p99 220-370 us, and 5x of that alone is noise: beside the cgroups
/// p99 was 585, 736, 1521 and 1634 us in four runs (5.0-6.9x in the last
/// two). While released tasks had a waking task's credit it failed: 4.0
/// and 8.5 ms in the lab, 28.6 ms in CI; from the fair clock, 0.8-1.8 ms.
/// The p50 ratio is what caught the fair clock on an averaged machine
/// total (stop 34): beside / alone 1.51-2.05 in 4 runs of 4, against
/// 0.82-1.28 in 9 runs of stop 33's build and the fix (the p50s themselves
/// are bimodal, 106-229 us, alone as well as beside). The probe's start
/// can take over a minute: see cgroup_bandwidth.bpf.h on locks held by
/// throttled tasks.
pub fn hundreds_of_throttled_cgroups_neither_eject_nor_delay_others(s: &Scheduler) {
    let bus = TempBusDir::new(&s.name("many"));
    let limit = (1000, 400_000 / lab::nr_cpus() as u64);
    let probe = lab::built_beside(&s.bin, "prism-probe");
    let (alone, beside) =
        contract::many_limited_cgroups(&s.name("many"), 200, limit, 30, &probe, || {
            s.start(&bus, &[])
        });
    assert!(
        beside.p50_us <= 1.5 * alone.p50_us && beside.p99_us <= (5.0 * alone.p99_us).max(4000.0),
        "probe p50/p99 {:.0}/{:.0} us beside the throttled cgroups, {:.0}/{:.0} us alone",
        beside.p50_us,
        beside.p99_us,
        alone.p50_us,
        alone.p99_us
    );
}

/// On the lab's numa profile (8 vCPUs, 2 NUMA nodes, 2 LLCs; ci/test runs
/// the `topology_` tests there, and only there): pipe pairs move across
/// LLCs well under as often as placement blind to LLCs would (3/4 of it),
/// hogs fill both LLCs, 45 s of stress-ng on 8 vCPUs ejects nothing.
pub fn topology_places_by_llc_and_survives_stress_on_two_numa_nodes(s: &Scheduler) {
    let bus = TempBusDir::new(&s.name("topology"));
    topology::check_placement(|| s.start(&bus, &["--stats", "5"]));
}

/// The tests of this module for the scheduler `$scheduler` (an expression
/// giving a [`Scheduler`]), as `#[test]`s of the calling test crate, ignored
/// by a plain `cargo test` (this host has no sched_ext); ci/test runs them
/// in the lab guest (the `topology_` one on its numa profile only).
#[macro_export]
macro_rules! lab_tests_of_every_scheduler {
    (@each $scheduler:expr; $($test:ident),*) => {
        $(
            /// See prism_testkit::suite.
            #[test]
            #[ignore = "needs the sched_ext lab kernel (ci/test runs it in the guest)"]
            fn $test() {
                $crate::suite::$test(&$scheduler);
            }
        )*
    };
    ($scheduler:expr) => {
        $crate::lab_tests_of_every_scheduler!(@each $scheduler;
            a_workload_without_the_sched_facet_gets_no_class,
            cpu_hotplug_under_load_keeps_the_scheduler_and_runs_every_task,
            loads_with_the_scx_libbpf_options,
            monitor_reads_the_running_schedulers_stats,
            survives_the_bus_recreated_10_times_a_second_under_stress,
            relabels_and_cgroup_moves_reach_running_tasks,
            the_kubelet_tree_gets_the_shares_its_weights_promise,
            cpu_max_caps_a_cgroup_and_its_descendants,
            cpu_max_written_while_running_takes_effect,
            hundreds_of_throttled_cgroups_neither_eject_nor_delay_others);
        /// See prism_testkit::suite.
        #[test]
        #[ignore = "needs the lab's numa profile (PRISM_LAB_TOPOLOGY=numa)"]
        fn topology_places_by_llc_and_survives_stress_on_two_numa_nodes() {
            $crate::suite::topology_places_by_llc_and_survives_stress_on_two_numa_nodes(
                &$scheduler,
            );
        }
    };
}
