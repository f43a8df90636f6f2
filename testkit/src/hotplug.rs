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

use crate::lab::{self, Hogs, SchedProcess};

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
    /// What the scheduler failed to keep, one line each (none: it held):
    /// sched_ext never left "enabled", no new scheduler was enabled, every
    /// hog ran in every cycle, the CPU came back.
    pub fn failures(&self) -> Vec<String> {
        let mut bad = Vec::new();
        if !self.cpu_back {
            bad.push("the CPU did not come back online".to_string());
        }
        if let Some(worst) = self.cycles.iter().map(|c| c.not_enabled).max()
            && !worst.is_zero()
        {
            let back = self
                .cycles
                .iter()
                .map(|c| c.back_after)
                .max()
                .unwrap_or_default();
            bad.push(format!(
                "unloaded on hotplug: not enabled for up to {worst:?}, back after up to {back:?}"
            ));
        }
        if self.enable_seq.0 != self.enable_seq.1 {
            bad.push(format!(
                "a scheduler was enabled again: enable_seq {} -> {}",
                self.enable_seq.0, self.enable_seq.1
            ));
        }
        for (i, c) in self.cycles.iter().enumerate() {
            if c.ran_ns.contains(&0) {
                bad.push(format!("cycle {i}: a hog did not run: {:?} ns", c.ran_ns));
            }
        }
        bad
    }

    /// One line per cycle, for the test's output.
    pub fn print(&self) {
        for (i, c) in self.cycles.iter().enumerate() {
            let ms: Vec<u64> = c.ran_ns.iter().map(|ns| ns / 1_000_000).collect();
            eprintln!(
                "cycle {i}: not enabled {:?}, back after {:?}, each hog ran (ms) {ms:?}",
                c.not_enabled, c.back_after
            );
        }
        eprintln!("enable_seq before/after {:?}", self.enable_seq);
    }
}

/// sched_ext's enable_seq (0 if this kernel has none).
pub fn enable_seq() -> u64 {
    fs::read_to_string(ENABLE_SEQ)
        .ok()
        .and_then(|s| s.trim().parse().ok())
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

/// What the lab tests run: the last CPU offline for 300 ms and back, 10
/// times, watched for 700 ms after each.
pub fn ten_cycles_of_the_last_cpu(cgroup: &Path) -> Report {
    offline_online_cycles(
        cgroup,
        lab::nr_cpus() - 1,
        10,
        Duration::from_millis(300),
        Duration::from_millis(700),
    )
}

/// The lab tests' check, for the scheduler `s` runs: ten cycles of the last
/// CPU with hogs in `cgroup`, printed; what `s` failed to keep (it exited,
/// or [`Report::failures`]), with its log.
pub fn check_scheduler(s: &mut SchedProcess, cgroup: &Path) -> Result<(), String> {
    let r = ten_cycles_of_the_last_cpu(cgroup);
    r.print();
    let mut bad = r.failures();
    if !s.alive() {
        bad.insert(0, "the scheduler exited".into());
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("{}:\n{}", bad.join("; "), s.log_text()))
    }
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
        let before: Vec<u64> = pids.iter().map(|&p| lab::process_cpu_ns(p)).collect();
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
            .map(|(&p, &b)| lab::process_cpu_ns(p).saturating_sub(b))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn held() -> Report {
        Report {
            cycles: vec![
                Cycle {
                    not_enabled: Duration::ZERO,
                    back_after: Duration::ZERO,
                    ran_ns: vec![340_000_000, 350_000_000],
                };
                3
            ],
            enable_seq: (2, 2),
            cpu_back: true,
        }
    }

    #[test]
    fn a_scheduler_that_stayed_and_ran_everything_has_no_failures() {
        assert!(held().failures().is_empty());
    }

    #[test]
    fn an_unload_a_reload_a_starved_hog_and_a_lost_cpu_are_each_failures() {
        let mut r = held();
        r.cycles[1].not_enabled = Duration::from_secs(20);
        r.cycles[1].back_after = Duration::from_secs(22);
        r.enable_seq = (1, 5);
        r.cycles[2].ran_ns[1] = 0;
        r.cpu_back = false;
        let bad = r.failures();
        assert_eq!(bad.len(), 4, "{bad:?}");
        assert!(bad[1].contains("back after up to 22s"), "{bad:?}");
        assert!(bad[2].contains("1 -> 5"), "{bad:?}");
        assert!(bad[3].starts_with("cycle 2"), "{bad:?}");
    }
}
