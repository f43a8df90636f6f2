//! prism-feeder under injected faults, on this host's real kernel (root):
//! real cgroups, the real bus, the real binary. After each fault no live
//! entry is deleted and no id changes.
//! - the feeder out of file descriptors (prlimit on the running process)
//!   while it rescans the cgroup tree, and a unit created meanwhile;
//! - a thousand idle HTTP connections;
//! - the feeder confined to a 32 MiB memory cgroup on a node of 3,000 units.

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
fn a_thousand_idle_connections_neither_exhaust_nor_block_the_server() {
    let root = CgroupRoot::new("feeder-idle-http");
    let bus = TestBus::new("feeder-idle-http");
    let f = feeder(&root, &bus);
    let before = bus.ids();
    let fds = open_fds(f.pid());

    // 1,000 connections that never send a byte.
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(("127.0.0.1", f.port)).expect("connect"))
        .collect();
    sleep(Duration::from_millis(500));
    let held = open_fds(f.pid()) - fds;
    println!("1000 idle connections: the feeder holds {held} more descriptors");
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

/// A memory cgroup of `limit` bytes to run the feeder in: cgroup v2's memory
/// controller if the v2 root has it, else v1's (this host is hybrid).
struct MemoryCgroup {
    dir: std::path::PathBuf,
    v2: bool,
}

impl MemoryCgroup {
    fn new(tag: &str, limit: u64) -> MemoryCgroup {
        let v2_root = prism_bus::cgroup::cgroup2_root().ok();
        let v2 = v2_root.as_ref().is_some_and(|r| {
            std::fs::read_to_string(r.join("cgroup.controllers"))
                .is_ok_and(|c| c.split_whitespace().any(|x| x == "memory"))
        });
        let base = match (&v2_root, v2) {
            (Some(r), true) => r.clone(),
            _ => "/sys/fs/cgroup/memory".into(),
        };
        assert!(
            base.join("cgroup.procs").exists(),
            "no memory controller, v2 or v1, to confine the feeder in"
        );
        let dir = base.join(format!("prism-test-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (file, value) = if v2 {
            ("memory.max", limit.to_string())
        } else {
            ("memory.limit_in_bytes", limit.to_string())
        };
        std::fs::write(dir.join(file), value).unwrap();
        MemoryCgroup { dir, v2 }
    }

    fn procs(&self) -> std::path::PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// Peak usage in bytes (v1: max_usage_in_bytes; v2: memory.peak).
    fn peak(&self) -> u64 {
        let file = if self.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        std::fs::read_to_string(self.dir.join(file))
            .map(|s| s.trim().parse().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Processes the kernel killed in it for want of memory.
    fn oom_kills(&self) -> u64 {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        std::fs::read_to_string(self.dir.join(file))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        for _ in 0..100 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            sleep(Duration::from_millis(20)); // its last process is exiting
        }
    }
}

/// The feeder inside 32 MiB (a tight DaemonSet limit) on a node of 3,000
/// units: it serves every one, is never killed for memory, and its names
/// file is whole.
#[test]
fn in_32_mib_the_feeder_serves_3000_units() {
    const UNITS: usize = 3000;
    let root = CgroupRoot::new("feeder-32mib");
    let bus = TestBus::new("feeder-32mib");
    for i in 0..UNITS {
        root.mkdir(&format!("system.slice/m{i}.service"));
    }
    let memcg = MemoryCgroup::new("feeder-32mib", 32 << 20);
    let mut f = Feeder::start_in(
        &support::cgroup_feeder_args(&root, &bus, &[]),
        &[],
        Some(&memcg.procs()),
    );
    f.wait_ready(READY);
    assert_eq!(bus.all().len(), UNITS + 1, "every unit and system.slice");
    assert_eq!(f.names(UNITS + 1).len(), UNITS + 1);
    let before = bus.ids();
    // A burst of change inside the limit: a tenth of the units replaced.
    let new: Vec<u64> = (0..UNITS / 10)
        .map(|i| {
            root.rmdir(&format!("system.slice/m{i}.service"));
            root.mkdir(&format!("system.slice/n{i}.service"))
        })
        .collect();
    wait_for(
        "the replacing units on the bus, the replaced gone",
        READY,
        || {
            (new.iter().all(|c| bus.get(*c).is_some()) && bus.all().len() == UNITS + 1)
                .then_some(())
        },
    );
    f.assert_running();
    let after = bus.ids();
    for (cgroup, id) in before.iter().filter(|(c, _)| after.contains_key(c)) {
        assert_eq!(after.get(cgroup), Some(id), "a live unit renumbered");
    }
    println!(
        "peak memory of the feeder's cgroup: {:.1} MiB of 32",
        memcg.peak() as f64 / (1 << 20) as f64
    );
    assert_eq!(memcg.oom_kills(), 0, "killed for memory");
    f.kill9();
}
