//! prism-trace on this host's real kernel (root): real processes exec'd in
//! real cgroups that a hand-filled real bus labels. Events carry the right
//! identity, class, cgroup, parent and file; the kernel-side filters keep
//! others out; the bus may come late or be re-created; a full ring buffer's
//! drops are reported.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use prism_bus::{BusWriter, Facets, LatencyClass};
use prism_testkit::fixtures::{JsonChild, TempBusDir, TempCgroup, sched_entry};
use serde_json::Value;

/// A running prism-trace, its JSON lines read.
fn start(args: &[&str]) -> JsonChild {
    JsonChild::spawn(
        Command::new(env!("CARGO_BIN_EXE_prism-trace"))
            .args(args)
            .args(["--names-file", "/nonexistent/prism-test-names.json"]),
    )
}

/// `sh -c 'read x; exec <cmd>'` moved into `cg` first: the exec happens in
/// it. (The move can beat the exec tracepoint of `sh` itself, so tests look
/// for the exec of `<cmd>` by its file.)
fn exec_in(cg: &Path, cmd: &str) -> Child {
    let mut sh = Command::new("sh")
        .args(["-c", &format!("read x; exec {cmd}")])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::fs::write(cg.join("cgroup.procs"), sh.id().to_string()).unwrap();
    writeln!(sh.stdin.as_mut().unwrap(), "go").unwrap();
    sh
}

fn bus_with(dir: &TempBusDir, entries: &[(u64, u32, LatencyClass)]) -> BusWriter {
    let mut w = BusWriter::create_or_open(&dir.paths, 1024).unwrap();
    let puts: Vec<_> = entries
        .iter()
        .map(|&(cg, id, class)| (cg, sched_entry(id, class, 0)))
        .collect();
    w.write_batch(&puts, &[]).unwrap();
    w
}

#[test]
fn an_exec_in_a_labelled_cgroup_carries_its_identity_class_and_parent() {
    let cg = TempCgroup::new("trace-exec");
    let bus = TempBusDir::new("trace-exec");
    let _w = bus_with(&bus, &[(cg.id(), 300, LatencyClass::Critical)]);
    let t = start(&[
        "--cgroup",
        cg.path.to_str().unwrap(),
        "--bus-dir",
        bus.paths.dir.to_str().unwrap(),
    ]);
    t.wait_stderr("bus attached");

    let mut p = exec_in(&cg.path, "/bin/true");
    let pid = p.id();
    assert!(p.wait().unwrap().success());
    let exec = t.next(|e| e["event"] == "exec" && e["pid"] == pid && e["filename"] == "/bin/true");
    assert_eq!(exec["comm"], "true");
    assert_eq!(exec["identity"], 300);
    assert_eq!(exec["class"], "critical");
    assert_eq!(exec["cgroup_id"], cg.id());
    assert_eq!(exec["ppid"], std::process::id());
    let exit = t.next(|e| e["event"] == "exit" && e["pid"] == pid);
    assert_eq!(
        (exit["exit_code"].as_i64(), exit["identity"].as_u64()),
        (Some(0), Some(300))
    );

    // Killed by a signal: the exit says which.
    let mut sleeper = exec_in(&cg.path, "sleep 60");
    let pid = sleeper.id();
    t.next(|e| e["event"] == "exec" && e["pid"] == pid && e["comm"] == "sleep");
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let exit = t.next(|e| e["event"] == "exit" && e["pid"] == pid);
    assert_eq!(exit["exit_signal"], 9, "{exit}");
}

#[test]
fn a_workload_without_the_observe_facet_is_not_reported() {
    let (seen, unseen) = (
        TempCgroup::new("trace-facet-a"),
        TempCgroup::new("trace-facet-b"),
    );
    let bus = TempBusDir::new("trace-facet");
    let mut quiet = sched_entry(331, LatencyClass::Normal, 0);
    quiet.flags.facets = Facets::NET.union(Facets::SCHED);
    let mut w = BusWriter::create_or_open(&bus.paths, 1024).unwrap();
    w.write_batch(
        &[
            (seen.id(), sched_entry(330, LatencyClass::Normal, 0)),
            (unseen.id(), quiet),
        ],
        &[],
    )
    .unwrap();
    let t = start(&[
        "--events",
        "exec",
        "--bus-dir",
        bus.paths.dir.to_str().unwrap(),
    ]);
    t.wait_stderr("bus attached");
    for cg in [&unseen, &seen] {
        assert!(exec_in(&cg.path, "/bin/true").wait().unwrap().success());
    }
    let all = t.drain(Duration::from_secs(2));
    assert!(all.iter().any(|e| e["identity"] == 330), "{all:?}");
    assert!(all.iter().all(|e| e["identity"] != 331), "{all:?}");
    t.signal(libc::SIGTERM);
    t.wait_stderr("events of workloads without the observe facet were not reported");
}

#[test]
fn identity_and_class_filters_run_in_the_kernel() {
    let a = TempCgroup::new("trace-filter-a");
    let b = TempCgroup::new("trace-filter-b");
    let bus = TempBusDir::new("trace-filter");
    let _w = bus_with(
        &bus,
        &[
            (a.id(), 310, LatencyClass::Critical),
            (b.id(), 311, LatencyClass::Batch),
        ],
    );
    let by_id = start(&[
        "--identity",
        "311",
        "--bus-dir",
        bus.paths.dir.to_str().unwrap(),
    ]);
    let by_class = start(&[
        "--class",
        "critical",
        "--events",
        "exec",
        "--bus-dir",
        bus.paths.dir.to_str().unwrap(),
    ]);
    by_id.wait_stderr("bus attached");
    by_class.wait_stderr("bus attached");
    for cg in [&a, &b] {
        assert!(exec_in(&cg.path, "/bin/true").wait().unwrap().success());
    }
    let ids: Vec<Value> = by_id.drain(Duration::from_secs(2));
    assert!(
        !ids.is_empty() && ids.iter().all(|e| e["identity"] == 311),
        "{ids:?}"
    );
    let crit: Vec<Value> = by_class.drain(Duration::from_millis(500));
    assert!(!crit.is_empty(), "the critical exec is reported");
    assert!(
        crit.iter()
            .all(|e| e["class"] == "critical" && e["event"] == "exec"),
        "{crit:?}"
    );
}

#[test]
fn a_late_bus_is_picked_up_and_a_recreated_one_followed() {
    let cg = TempCgroup::new("trace-late");
    let bus = TempBusDir::new("trace-late");
    let t = start(&[
        "--cgroup",
        cg.path.to_str().unwrap(),
        "--events",
        "exec",
        "--bus-dir",
        bus.paths.dir.to_str().unwrap(),
    ]);
    thread::sleep(Duration::from_millis(500)); // loaded (no bus to say so)
    let run = || {
        let mut p = exec_in(&cg.path, "/bin/true");
        let pid = p.id();
        p.wait().unwrap();
        t.next(|e| e["pid"] == pid && e["filename"] == "/bin/true")["identity"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(run(), 0, "no bus yet: no identity");
    let w = bus_with(&bus, &[(cg.id(), 320, LatencyClass::Normal)]);
    t.wait_stderr("bus attached");
    assert_eq!(run(), 320);
    drop(w);
    std::fs::remove_file(bus.paths.identity()).unwrap();
    std::fs::remove_file(bus.paths.meta()).unwrap();
    let _w = bus_with(&bus, &[(cg.id(), 321, LatencyClass::Normal)]);
    t.wait_stderr_n("bus attached", 2);
    assert_eq!(run(), 321);
}

#[test]
fn a_full_ring_buffer_is_reported_not_silent() {
    let cg = TempCgroup::new("trace-drops");
    let t = start(&[
        "--cgroup",
        cg.path.to_str().unwrap(),
        "--ring-size",
        "4096",
        "--bus-dir",
        "/nonexistent/bus",
    ]);
    thread::sleep(Duration::from_millis(500));
    // prism-trace stops reading; the burst overflows its 4 KiB buffer.
    t.signal(libc::SIGSTOP);
    let mut burst = exec_in(&cg.path, "sh -c 'for i in $(seq 100); do /bin/true; done'");
    assert!(burst.wait().unwrap().success());
    t.signal(libc::SIGCONT);
    t.wait_stderr("events dropped");
    let printed = t.drain(Duration::from_secs(1)).len();
    let err = t.stderr();
    let total: usize = err
        .split("dropped (the ring buffer was full), ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect(&err);
    println!("{printed} events printed, {total} dropped");
    assert!(printed > 0 && total > 0);
    assert!(
        printed + total >= 200,
        "100 execs and 100 exits, each printed or counted"
    );
}
