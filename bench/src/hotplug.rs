//! CPU hotplug under load, as the lab tests of both schedulers drive it: a
//! CPU taken offline and brought back, again and again, while hogs keep
//! every CPU busy and one hog is pinned to the CPU that goes away. What a
//! node's operator needs to hold: the scheduler stays loaded (or, on a
//! kernel that makes it restart, is back at once) and every task it holds
//! goes on running, the pinned one too.

use std::fs;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::lab::{self, Hogs};

const ENABLE_SEQ: &str = "/sys/kernel/sched_ext/enable_seq";
const SAMPLE: Duration = Duration::from_millis(20);

/// What one offline/online cycle did.
#[derive(Debug, Clone)]
pub struct Cycle {
    /// Time sched_ext's state was not "enabled" during the cycle.
    pub not_enabled: Duration,
    /// From bringing the CPU back until the state was "enabled" again.
    pub back_after: Duration,
    /// CPU time each hog got during the cycle, ns (the pinned one last).
    pub ran_ns: Vec<u64>,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub cycles: Vec<Cycle>,
    /// sched_ext's count of schedulers enabled since boot, before and after:
    /// equal when the scheduler was never unloaded.
    pub enable_seq: (u64, u64),
    /// The CPU was online again at the end.
    pub cpu_back: bool,
}

impl Report {
    /// Every hog ran in every cycle.
    pub fn every_task_ran(&self) -> bool {
        self.cycles
            .iter()
            .all(|c| c.ran_ns.iter().all(|&ns| ns > 0))
    }

    /// The longest time any cycle took to be back to "enabled".
    pub fn worst_back_after(&self) -> Duration {
        self.cycles
            .iter()
            .map(|c| c.back_after)
            .max()
            .unwrap_or_default()
    }
}

/// sched_ext's enable_seq (0 if this kernel has none).
pub fn enable_seq() -> u64 {
    fs::read_to_string(ENABLE_SEQ)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// CPU time a process has had, ns (/proc/PID/schedstat).
fn ran_ns(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn set_online(cpu: usize, online: bool) {
    let path = format!("/sys/devices/system/cpu/cpu{cpu}/online");
    fs::write(&path, if online { "1" } else { "0" })
        .unwrap_or_else(|e| panic!("writing {path}: {e}"));
}

/// Sample sched_ext's state for `span`: how long it was not "enabled", and
/// when it was last seen coming back.
fn watch_state(span: Duration, since: Instant, not_enabled: &mut Duration) -> Option<Duration> {
    let end = Instant::now() + span;
    let mut back = None;
    let mut was_enabled = lab::state() == "enabled";
    while Instant::now() < end {
        sleep(SAMPLE);
        let enabled = lab::state() == "enabled";
        if !enabled {
            *not_enabled += SAMPLE;
        } else if !was_enabled {
            back = Some(since.elapsed());
        }
        was_enabled = enabled;
    }
    back
}

/// `cycles` times: take `cpu` offline for `offline_for`, bring it back, and
/// watch for `settle`; 2 x nCPU hogs in `cgroup` and one pinned to `cpu`
/// run throughout. The state is sampled every 20 ms.
pub fn offline_online_cycles(
    cgroup: &Path,
    cpu: usize,
    cycles: usize,
    offline_for: Duration,
    settle: Duration,
) -> Report {
    assert!(cpu > 0, "cpu0 cannot go offline on x86");
    let n = lab::nr_cpus();
    let hogs = Hogs::start(cgroup, 2 * n);
    let pinned = Hogs::start_pinned(cgroup, &[cpu]);
    let pids: Vec<u32> = hogs.pids().into_iter().chain(pinned.pids()).collect();
    sleep(Duration::from_millis(300));
    let seq_before = enable_seq();
    let mut out = Vec::new();
    for _ in 0..cycles {
        let before: Vec<u64> = pids.iter().map(|&p| ran_ns(p)).collect();
        let mut not_enabled = Duration::ZERO;
        let t0 = Instant::now();
        set_online(cpu, false);
        watch_state(offline_for, t0, &mut not_enabled);
        let t1 = Instant::now();
        set_online(cpu, true);
        let mut back = watch_state(settle, t1, &mut not_enabled);
        // not back within the settle time: wait up to 30 s more to measure it
        let limit = Instant::now() + Duration::from_secs(30);
        while lab::state() != "enabled" && Instant::now() < limit {
            sleep(SAMPLE);
            not_enabled += SAMPLE;
            back = Some(t1.elapsed());
        }
        let ran_ns = pids
            .iter()
            .zip(&before)
            .map(|(&p, &b)| ran_ns(p).saturating_sub(b))
            .collect();
        out.push(Cycle {
            not_enabled,
            back_after: if not_enabled.is_zero() {
                Duration::ZERO
            } else {
                back.unwrap_or(t1.elapsed())
            },
            ran_ns,
        });
    }
    let cpu_back = fs::read_to_string(format!("/sys/devices/system/cpu/cpu{cpu}/online"))
        .is_ok_and(|s| s.trim() == "1");
    Report {
        cycles: out,
        enable_seq: (seq_before, enable_seq()),
        cpu_back,
    }
}
