//! Placement checks on the lab's `numa` profile (8 vCPUs, 2 NUMA nodes, 2
//! LLCs): where a scheduler ran tasks, read from the kernel (each task's
//! last CPU in /proc, each CPU's busy time in /proc/stat), never from the
//! scheduler's own word. Under TCG 8 vCPUs share 2 host cores: these checks
//! are about placement and survival, not latency.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::lab::{self, SchedProcess, stop_cleanly};

/// Each CPU's LLC, by CPU number: the CPUs sharing its L3 cache, as the
/// kernel lists them (`shared_cpu_list`, as scx_utils groups them: QEMU
/// gives every vCPU's L3 its own `id`).
pub fn llc_of_cpus() -> Vec<String> {
    (0..lab::nr_cpus())
        .map(|cpu| {
            let p = format!("/sys/devices/system/cpu/cpu{cpu}/cache/index3/shared_cpu_list");
            fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("{p}: {e}"))
                .trim()
                .to_string()
        })
        .collect()
}

/// NUMA nodes of this machine.
pub fn nr_numa_nodes() -> usize {
    fs::read_dir("/sys/devices/system/node")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    n.starts_with("node") && n[4..].parse::<u32>().is_ok()
                })
                .count()
        })
        .unwrap_or(1)
}

/// Panics unless this is the `numa` profile: 2+ NUMA nodes, 2+ LLCs.
pub fn require_numa_profile() -> Vec<String> {
    let llcs = llc_of_cpus();
    let mut distinct = llcs.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(
        distinct.len() >= 2 && nr_numa_nodes() >= 2,
        "not the lab's numa profile (PRISM_LAB_TOPOLOGY=numa): {} NUMA nodes, LLCs {llcs:?}",
        nr_numa_nodes()
    );
    llcs
}

/// The CPU a task last ran on (field 39 of /proc/<pid>/stat).
fn last_cpu(pid: u32) -> Option<usize> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    after_comm.split_whitespace().nth(36)?.parse().ok()
}

/// How tasks moved while sampled every 10 ms.
#[derive(Debug, Default, Clone, Copy)]
pub struct Moves {
    pub samples: u64,
    /// Consecutive samples on different CPUs.
    pub cpu: u64,
    /// ... on CPUs of different LLCs.
    pub llc: u64,
}

/// Sample the CPU each of `pids` is on every 10 ms for `d`.
pub fn sample_moves(pids: &[u32], llcs: &[String], d: Duration) -> Moves {
    let mut last: Vec<Option<usize>> = pids.iter().map(|&p| last_cpu(p)).collect();
    let mut m = Moves::default();
    let end = Instant::now() + d;
    while Instant::now() < end {
        sleep(Duration::from_millis(10));
        for (i, &pid) in pids.iter().enumerate() {
            let now = last_cpu(pid);
            if let (Some(a), Some(b)) = (last[i], now) {
                m.samples += 1;
                m.cpu += u64::from(a != b);
                m.llc += u64::from(llcs[a] != llcs[b]);
            }
            last[i] = now;
        }
    }
    m
}

/// Busy jiffies and all jiffies of each CPU, from /proc/stat.
pub(crate) fn cpu_times() -> Vec<(u64, u64)> {
    fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let idle = v[3] + v.get(4).copied().unwrap_or(0);
            (v.iter().sum::<u64>() - idle, v.iter().sum())
        })
        .collect()
}

/// Each CPU's busy fraction over `d`.
pub fn busy_per_cpu(d: Duration) -> Vec<f64> {
    let before = cpu_times();
    sleep(d);
    cpu_times()
        .iter()
        .zip(&before)
        .map(|(&(b1, t1), &(b0, t0))| (b1 - b0) as f64 / (t1 - t0).max(1) as f64)
        .collect()
}

fn spawn_all(cmds: impl IntoIterator<Item = String>) -> Vec<Child> {
    cmds.into_iter()
        .map(|c| {
            Command::new("sh")
                .args(["-c", &format!("exec {c}")])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect()
}

fn stop_all(children: &mut [Child]) {
    for c in children.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// What `check_placement` measured.
#[derive(Debug)]
pub struct Placement {
    /// The pipe pairs under EEVDF, in the same boot, before the scheduler.
    pub eevdf: Moves,
    /// ... and under the scheduler.
    pub pipes: Moves,
    /// Each CPU's busy fraction under 2 x nCPU hogs.
    pub busy: Vec<f64>,
    /// Of a move to another CPU chosen at random, the chance it crosses
    /// LLCs on this machine (4/7 with 2 LLCs of 4).
    pub random_cross: f64,
}

impl Moves {
    /// The share of CPU changes that crossed LLCs.
    pub fn cross_share(&self) -> f64 {
        self.llc as f64 / self.cpu.max(1) as f64
    }
}

/// Four producer-consumer pipe pairs (`yes | cat`), waking each other
/// constantly, sampled every 10 ms for 5 s.
fn pipe_pairs_moves(llcs: &[String]) -> Moves {
    let mut pipes = spawn_all((0..4).map(|_| "sh -c 'yes prism | cat > /dev/null'".to_string()));
    sleep(Duration::from_secs(1));
    let pids: Vec<u32> = pipes.iter().flat_map(|c| children_of(c.id())).collect();
    assert!(pids.len() >= 8, "the pipe pairs' processes: {pids:?}");
    let moves = sample_moves(&pids, llcs, Duration::from_secs(5));
    stop_all(&mut pipes);
    for pid in &pids {
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
    }
    moves
}

/// On the numa profile: the pipe pairs under EEVDF, then under the
/// scheduler `start` loads, must move across LLCs well under as often as
/// placement blind to LLCs would (3/4 of it: scx_prism_bpfland measured
/// 32-34% where random is 57%); 2 x nCPU hogs must keep every
/// CPU of both LLCs and nodes busy (both LLCs' queues serve); 45 s of
/// stress-ng on all 8 vCPUs must eject nothing. Prints and returns the
/// figures.
pub fn check_placement(start: impl FnOnce() -> SchedProcess) -> Placement {
    let p = measure_placement(start);
    println!(
        "pipe pairs, CPU changes that crossed LLCs: {:.0}% ({} of {}) under this scheduler, {:.0}% under EEVDF, {:.0}% at random",
        p.pipes.cross_share() * 100.0,
        p.pipes.llc,
        p.pipes.cpu,
        p.eevdf.cross_share() * 100.0,
        p.random_cross * 100.0
    );
    let busy: Vec<String> = p
        .busy
        .iter()
        .map(|b| format!("{:.0}%", b * 100.0))
        .collect();
    println!("busy per CPU under hogs: {busy:?}");
    assert!(p.pipes.samples > 1000, "{p:?}");
    assert!(
        p.pipes.cross_share() < p.random_cross * 3.0 / 4.0,
        "{:.0}% of CPU changes crossed LLCs (random: {:.0}%)",
        p.pipes.cross_share() * 100.0,
        p.random_cross * 100.0
    );
    assert!(
        p.busy.iter().all(|&b| b > 0.7),
        "a CPU of one LLC sat idle beside runnable hogs: {busy:?}"
    );
    p
}

fn measure_placement(start: impl FnOnce() -> SchedProcess) -> Placement {
    let llcs = require_numa_profile();
    let n = llcs.len();
    let others = |cpu: usize| llcs.iter().filter(|l| **l != llcs[cpu]).count();
    let random_cross = (0..n)
        .map(|c| others(c) as f64 / (n - 1) as f64)
        .sum::<f64>()
        / n as f64;
    let eevdf = pipe_pairs_moves(&llcs);

    let mut s = start();
    let pipes = pipe_pairs_moves(&llcs);
    let mut hogs = spawn_all((0..2 * n).map(|_| "sh -c 'while :; do :; done'".to_string()));
    sleep(Duration::from_secs(1));
    let busy = busy_per_cpu(Duration::from_secs(3));
    stop_all(&mut hogs);

    lab::stress(Path::new(&lab::cgroup2_root()), 45);
    assert!(s.alive(), "died under stress:\n{}", s.log_text());
    assert_eq!(lab::state(), "enabled", "ejected:\n{}", s.log_text());
    stop_cleanly(s);
    Placement {
        eevdf,
        pipes,
        busy,
        random_cross,
    }
}

/// The pids of `pid`'s children.
fn children_of(pid: u32) -> Vec<u32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}
