//! prism-feeder under injected faults, on this host's real kernel (root):
//! real cgroups, the real bus, the real binary. After each fault no live
//! entry is deleted and no id changes.
//! - the feeder out of file descriptors (prlimit on the running process)
//!   while it rescans the cgroup tree, and a unit created meanwhile;
//! - hundreds of idle HTTP connections.

mod support;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::{CgroupRoot, Feeder, TestBus, wait_for};

const READY: Duration = Duration::from_secs(30);
const UNITS: usize = 20;

fn feeder(root: &CgroupRoot, bus: &TestBus) -> Feeder {
    for i in 0..UNITS {
        root.mkdir(&format!("system.slice/u{i}.service"));
    }
    let f = Feeder::start(&support::cgroup_feeder_args(root, bus, &["--resync", "1s"]));
    f.wait_ready(READY);
    wait_for("every unit on the bus", READY, || {
        (bus.all().len() > UNITS).then_some(())
    });
    f
}

fn fds(pid: u32) -> Vec<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Every entry of `before` is in `after` with the same identity (new ones may have come).
fn kept_every_entry(before: &BTreeMap<u64, u32>, after: &BTreeMap<u64, u32>, when: &str) {
    for (cgroup, id) in before {
        assert_eq!(after.get(cgroup), Some(id), "cgroup {cgroup} {when}");
    }
}

fn open_fds(pid: u32) -> usize {
    fds(pid).len()
}

/// The descriptor number the process would get next: with its limit set
/// there, every open fails (EMFILE).
fn lowest_free_fd(pid: u32) -> usize {
    let open = fds(pid);
    (0..).find(|n| !open.contains(n)).unwrap()
}

fn set_nofile(pid: u32, limit: usize) {
    let status = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={limit}:4096")])
        .status()
        .expect("prlimit (util-linux)");
    assert!(status.success());
}

#[test]
fn out_of_descriptors_the_feeder_keeps_every_entry() {
    let root = CgroupRoot::new("feeder-nofile");
    let bus = TestBus::new("feeder-nofile");
    let f = feeder(&root, &bus);
    let before = bus.ids();
    let failures = f.metric("prism_feeder_failures_total{reason=\"cgroup_watch\"}");

    // No descriptor left: every rescan (each second) fails to read the tree.
    set_nofile(f.pid(), lowest_free_fd(f.pid()));
    root.mkdir("system.slice/late.service/sub");
    sleep(Duration::from_secs(4));
    f.assert_running();
    kept_every_entry(&before, &bus.ids(), "without descriptors");

    // Descriptors back: the failures were counted, and the tree catches up.
    set_nofile(f.pid(), 1024);
    let late = root.id("system.slice/late.service/sub");
    wait_for("the unit made meanwhile on the bus", READY, || {
        bus.get(late).map(|_| ())
    });
    kept_every_entry(&before, &bus.ids(), "after the descriptors came back");
    assert!(
        f.metric("prism_feeder_failures_total{reason=\"cgroup_watch\"}") > failures,
        "the failed reads are counted"
    );
    f.assert_running();
}

#[test]
fn hundreds_of_idle_connections_neither_exhaust_nor_block_the_server() {
    let root = CgroupRoot::new("feeder-idle-http");
    let bus = TestBus::new("feeder-idle-http");
    let f = feeder(&root, &bus);
    let before = bus.ids();
    let fds = open_fds(f.pid());

    // 300 connections that never send a byte.
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(("127.0.0.1", f.port)).expect("connect"))
        .collect();
    sleep(Duration::from_millis(500));
    let held = open_fds(f.pid()) - fds;
    println!("300 idle connections: the feeder holds {held} more descriptors");
    assert!(
        held <= prism_feeder::http::MAX_CONNECTIONS + 2,
        "{held} descriptors for idle connections"
    );
    // The probes are answered while they wait: idle ones are closed after
    // their header timeout, and the backlog moves on.
    let asked = Instant::now();
    wait_for("/healthz answered", Duration::from_secs(30), || {
        matches!(f.get("/healthz"), Some((200, _))).then_some(())
    });
    println!(
        "/healthz answered after {:.1} s",
        asked.elapsed().as_secs_f64()
    );
    drop(idle);
    kept_every_entry(&before, &bus.ids(), "beside idle connections");
    f.assert_running();
}
