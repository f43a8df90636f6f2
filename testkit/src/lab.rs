//! Running schedulers and workloads inside the sched_ext lab guest: the
//! pieces the `lab_*` tests and the benchmarks share.
//!
//! Everything here acts on the real kernel: sched_ext's sysfs state, cgroup2
//! directories, real processes. Nothing is simulated.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::latency::Summary;

const STATE: &str = "/sys/kernel/sched_ext/state";
const OPS: &str = "/sys/kernel/sched_ext/root/ops";

/// Panics with a clear message unless this kernel has sched_ext (the lab guest).
pub fn require_sched_ext() {
    assert!(
        Path::new(STATE).exists(),
        "no sched_ext in this kernel: run the lab tests in the lab guest (ci/lab run -- ...)"
    );
}

pub fn state() -> String {
    fs::read_to_string(STATE)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Name of the running sched_ext scheduler, empty if none.
pub fn ops() -> String {
    fs::read_to_string(OPS)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Wait until sched_ext's state is `want`; false on timeout.
pub fn wait_state(want: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if state() == want {
            return true;
        }
        sleep(Duration::from_millis(50));
    }
    state() == want
}

/// The number of CPUs the guest has online.
pub fn nr_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Turn the cpu controller on for the root's children (cpu.weight, cpu.stat).
pub fn enable_cpu_controller(root: &Path) {
    let _ = fs::write(root.join("cgroup.subtree_control"), "+cpu");
}

/// A scheduler process started by a test.
pub struct SchedProcess {
    child: Child,
    log: PathBuf,
    bin: PathBuf,
}

impl SchedProcess {
    /// Start `bin args`, wait until sched_ext is enabled (the verifier is slow
    /// under emulation). Panics with the scheduler's log if it never is.
    pub fn start(bin: &Path, args: &[&str]) -> SchedProcess {
        SchedProcess::try_start(bin, args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// As `start`, but a scheduler that never enables sched_ext is an error
    /// carrying its log.
    pub fn try_start(bin: &Path, args: &[&str]) -> Result<SchedProcess, String> {
        require_sched_ext();
        if state() != "disabled" {
            return Err(format!("another sched_ext scheduler is loaded ({})", ops()));
        }
        let log =
            std::env::temp_dir().join(format!("sched-{}-{}.log", std::process::id(), rand_tag()));
        let out = fs::File::create(&log).map_err(|e| format!("scheduler log: {e}"))?;
        let err = out.try_clone().map_err(|e| format!("log fd: {e}"))?;
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(err)
            .stderr(out)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let mut s = SchedProcess {
            child,
            log,
            bin: bin.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while state() != "enabled" {
            if !s.alive() || Instant::now() > deadline {
                let _ = s.child.kill();
                let _ = s.child.wait();
                // an ejected scheduler leaves the state "disabling" briefly
                wait_state("disabled", Duration::from_secs(10));
                return Err(format!(
                    "{} never enabled sched_ext:\n{}",
                    bin.display(),
                    s.log_text()
                ));
            }
            sleep(Duration::from_millis(50));
        }
        Ok(s)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The scheduler's binary.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Still running (not ejected, not crashed)?
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }

    /// SIGINT, then wait for it to exit; returns its status and log.
    pub fn stop(mut self) -> (ExitStatus, String) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                let log = self.log_text();
                return (status, log);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "the scheduler ignored SIGINT for 30 s:\n{}",
                    self.log_text()
                );
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no chance to unregister.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SchedProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = fs::remove_file(&self.log);
    }
}

fn rand_tag() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64)
}

/// A shell command line that moves itself into `cgroup` and then execs `cmd`:
/// the workload never runs a cycle outside its cgroup.
fn in_cgroup(cgroup: &Path, cmd: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!(
            "echo $$ > '{}/cgroup.procs' && exec {cmd}",
            cgroup.display()
        ))
        .stdin(Stdio::null());
    c
}

/// CPU hogs (busy shell loops) in a cgroup, killed on drop.
pub struct Hogs {
    children: Vec<Child>,
}

impl Hogs {
    pub fn start(cgroup: &Path, n: usize) -> Hogs {
        Hogs::start_niced(cgroup, n, 0)
    }

    /// Hogs at nice `nice` (-20..=19).
    pub fn start_niced(cgroup: &Path, n: usize, nice: i32) -> Hogs {
        let cmd = format!("nice -n {nice} sh -c 'while :; do :; done'");
        Hogs::spawn(cgroup, (0..n).map(|_| cmd.clone()))
    }

    /// One hog pinned to each of `cpus`.
    pub fn start_pinned(cgroup: &Path, cpus: &[usize]) -> Hogs {
        let cmds = cpus
            .iter()
            .map(|cpu| format!("taskset -c {cpu} sh -c 'while :; do :; done'"));
        Hogs::spawn(cgroup, cmds)
    }

    /// Any long-running command line in the cgroup (a waker beside hogs),
    /// killed on drop like them.
    pub fn start_command(cgroup: &Path, cmd: &str) -> Hogs {
        Hogs::spawn(cgroup, std::iter::once(cmd.to_string()))
    }

    fn spawn(cgroup: &Path, cmds: impl Iterator<Item = String>) -> Hogs {
        let children = cmds
            .map(|cmd| {
                in_cgroup(cgroup, &cmd)
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("spawn hog")
            })
            .collect();
        Hogs { children }
    }

    /// The hog processes (each is the busy loop itself: the shell execs it).
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
        }
        for c in &mut self.children {
            let _ = c.wait();
        }
    }
}

/// A running prism-probe in a cgroup.
pub struct Probe {
    child: Child,
}

impl Probe {
    pub fn start(probe_bin: &Path, cgroup: &Path, label: &str, args: &str) -> Probe {
        let cmd = format!("{} --label {label} {args}", probe_bin.display());
        let child = in_cgroup(cgroup, &cmd)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn probe");
        Probe { child }
    }

    /// Wait for the probe and parse its summary; panics if it failed.
    pub fn finish(self) -> Summary {
        self.try_finish().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Wait for the probe and parse its summary.
    pub fn try_finish(self) -> Result<Summary, String> {
        let v = self.try_json()?;
        serde_json::from_value(v["summary"].clone()).map_err(|e| format!("probe summary: {e}"))
    }

    /// Wait for the program and parse the JSON line it printed.
    pub fn try_json(self) -> Result<serde_json::Value, String> {
        let out = self
            .child
            .wait_with_output()
            .map_err(|e| format!("probe output: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "probe failed ({}; its error went to stderr)",
                out.status
            ));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("probe JSON: {e}"))
    }
}

/// CPU time a process's threads have had, ns (each /proc/PID/task/TID/schedstat).
pub fn process_cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Context switches on every CPU since boot (/proc/stat ctxt).
pub fn context_switches() -> u64 {
    fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("ctxt ")?.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Rescheduling interrupts (IPIs that make another CPU reschedule: a remote
/// preemption's cost) every CPU has taken since boot, from /proc/interrupts.
pub fn resched_ipis() -> u64 {
    let text = fs::read_to_string("/proc/interrupts").expect("/proc/interrupts");
    text.lines()
        .find(|l| l.trim_start().starts_with("RES:"))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .map_while(|f| f.parse::<u64>().ok())
                .sum()
        })
        .expect("a RES line in /proc/interrupts")
}

/// CPU time a cgroup has used, microseconds (cpu.stat usage_usec).
pub fn cpu_usage_us(cgroup: &Path) -> u64 {
    fs::read_to_string(cgroup.join("cpu.stat"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("usage_usec ")
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// Is the system still responsive: does a fresh process run to completion quickly?
pub fn responsive(within: Duration) -> bool {
    let started = Instant::now();
    let Ok(mut child) = Command::new("sh")
        .args(["-c", "echo alive"])
        .stdout(Stdio::null())
        .spawn()
    else {
        return false;
    };
    while started.elapsed() < within {
        if child.try_wait().ok().flatten().is_some() {
            return true;
        }
        sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    false
}

/// The cgroup v2 root of this machine.
pub fn cgroup2_root() -> PathBuf {
    prism_bus::cgroup::cgroup2_root().expect("cgroup v2 is mounted")
}

/// The sum, over the lines of a scheduler's `--stats` log, of the number
/// after `name` (e.g. " resumed "; of `a/b/c` figures, the first): a
/// counter's total over the run.
pub fn stat_sum(log: &str, name: &str) -> u64 {
    log.lines()
        .filter_map(|l| {
            let rest = &l[l.find(name)? + name.len()..];
            let figure = rest.split_whitespace().next()?;
            figure.split('/').next()?.parse::<u64>().ok()
        })
        .sum()
}

/// 30 s of stress-ng in `cgroup` (labelled `entry` on `bus`) while the bus
/// is deleted and re-created 10 times a second, under the scheduler `start`
/// loads: no ejection, and the scheduler ends attached to the bus (its
/// last stats line says `bus on`). Returns how many times the bus was
/// re-created.
pub fn survives_bus_churn_under_stress(
    bus: &crate::fixtures::TempBusDir,
    cgroup: &crate::fixtures::TempCgroup,
    entry: prism_bus::Entry,
    start: impl FnOnce() -> SchedProcess,
) -> u64 {
    use std::sync::atomic::{AtomicBool, Ordering};
    drop(label(bus, &[(cgroup, entry)]));
    let mut s = start();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let churn = {
        let (stop, paths, cg) = (stop.clone(), bus.paths.clone(), cgroup.id());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = fs::remove_file(paths.identity());
                let _ = fs::remove_file(paths.meta());
                let mut w = prism_bus::BusWriter::create_or_open(&paths, 1024).expect("bus");
                w.write_batch(&[(cg, entry)], &[]).expect("bus write");
                n += 1;
                drop(w);
                sleep(Duration::from_millis(100));
            }
            n
        })
    };
    stress(&cgroup.path, 30);
    stop.store(true, Ordering::Relaxed);
    let recreated = churn.join().expect("the churn thread");
    assert!(s.alive(), "died under bus churn:\n{}", s.log_text());
    assert_eq!(
        state(),
        "enabled",
        "ejected under bus churn:\n{}",
        s.log_text()
    );
    sleep(Duration::from_secs(3));
    let log = stop_cleanly(s);
    let last = log
        .lines()
        .rev()
        .find(|l| l.starts_with("[scx_prism") && l.contains(" bus "))
        .unwrap_or_default()
        .to_string();
    assert!(
        last.contains(" bus on "),
        "not attached to the last bus: {last}\n{log}"
    );
    recreated
}

/// prism-swarm (`bin`) in `cgroup` with `args`: its JSON line.
fn swarm(bin: &Path, cgroup: &Path, args: &str) -> serde_json::Value {
    let out = in_cgroup(cgroup, &format!("{} {args}", bin.display()))
        .output()
        .expect("prism-swarm");
    assert!(
        out.status.success(),
        "prism-swarm failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("prism-swarm's JSON")
}

/// A SCHED_FIFO hog taking a CPU, under the scheduler `start` loads, with
/// prism-swarm (built beside `scheduler`) in `cgroup`; the longest any
/// thread waited runnable (ms) in two runs:
///  - displaced: one always-runnable thread per CPU and one more, the hog
///    for 5 s of 9. The thread the hog preempts (and any queued on that
///    CPU) must move to the other CPUs: under 500 ms. Left in the CPU's
///    local queue it waits for the kernel's server for the lower classes,
///    50 ms a second (measured in the lab: 950 ms every run for both
///    schedulers before they re-enqueued in ops.cpu_release);
///  - swarm: 50 threads, a fork stream, the hog for 10 s of 30: under half
///    the schedulers' 5 s watchdog timeout.
///
/// Both with no ejection.
pub fn longest_waits_beside_a_fifo_hog_ms(
    scheduler: &Path,
    cgroup: &Path,
    start: impl FnOnce() -> SchedProcess,
) -> (f64, f64) {
    let bin = built_beside(scheduler, "prism-swarm");
    let mut s = start();
    let longest = |v: serde_json::Value| v["longest_wait_ms"].as_f64().expect("longest_wait_ms");
    let displaced = swarm(
        &bin,
        cgroup,
        &format!(
            "--threads {} --forks-per-s 0 --duration-s 9 --fifo-hog-s 5",
            nr_cpus() + 1
        ),
    );
    let crowd = swarm(
        &bin,
        cgroup,
        "--threads 50 --forks-per-s 100 --duration-s 30 --fifo-hog-s 10",
    );
    assert!(s.alive(), "died beside the FIFO hog:\n{}", s.log_text());
    assert_eq!(
        state(),
        "enabled",
        "ejected beside the FIFO hog:\n{}",
        s.log_text()
    );
    stop_cleanly(s);
    println!("prism-swarm, displaced by a SCHED_FIFO hog: {displaced}");
    println!("prism-swarm beside a SCHED_FIFO hog: {crowd}");
    let (displaced, crowd) = (longest(displaced), longest(crowd));
    assert!(
        displaced < 500.0,
        "a thread the FIFO hog displaced waited {displaced:.0} ms runnable"
    );
    assert!(crowd < 2500.0, "a thread waited {crowd:.0} ms runnable");
    (displaced, crowd)
}

/// The class order at depth: a critical request probe in `crit` beside 4
/// batch hogs in `batch`, then beside 2,000 always-runnable batch threads
/// (prism-swarm, built beside `scheduler`), under the scheduler `start`
/// loads. Thousands of queued lower-class tasks must not get ahead of
/// critical work: returns the probe's figures with few and with thousands
/// (the caller bounds the second by the first), after checking nothing was
/// ejected and every batch thread ran (prism-swarm's longest wait, printed).
pub fn critical_beside_few_and_thousands_of_batch(
    scheduler: &Path,
    crit: &Path,
    batch: &Path,
    start: impl FnOnce() -> SchedProcess,
) -> (Summary, Summary) {
    const PROBE: &str = "--workers 2 --interval-us 2000 --work-us 300 --duration-s 5";
    let probe = built_beside(scheduler, "prism-probe");
    let s = start();
    let few = {
        let _hogs = Hogs::start(batch, 4);
        sleep(Duration::from_millis(300));
        Probe::start(&probe, crit, "beside-4", PROBE).finish()
    };
    let swarm = built_beside(scheduler, "prism-swarm");
    let cmd = format!(
        "{} --threads 2000 --forks-per-s 0 --duration-s 12",
        swarm.display()
    );
    let swarm = in_cgroup(batch, &cmd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("prism-swarm");
    // its threads start behind a barrier, released when the last exists
    let t0 = Instant::now();
    while fs::read_to_string(batch.join("cgroup.threads")).map_or(0, |t| t.lines().count()) < 2000 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "prism-swarm's threads did not start"
        );
        sleep(Duration::from_millis(100));
    }
    sleep(Duration::from_millis(500));
    let thousands = Probe::start(&probe, crit, "beside-2000", PROBE).finish();
    let out = swarm.wait_with_output().expect("prism-swarm");
    assert!(
        out.status.success(),
        "prism-swarm failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("prism-swarm's JSON");
    assert_eq!(
        state(),
        "enabled",
        "ejected beside 2,000 batch threads:\n{}",
        s.log_text()
    );
    let log = stop_cleanly(s);
    let tail: Vec<&str> = log.lines().rev().take(12).collect();
    println!("the scheduler's last lines:");
    for l in tail.iter().rev() {
        println!("  {l}");
    }
    println!(
        "critical p50/p99 beside 4 batch hogs {:.0}/{:.0} us, beside 2,000 batch threads {:.0}/{:.0} us; prism-swarm: {v}",
        few.p50_us, few.p99_us, thousands.p50_us, thousands.p99_us
    );
    (few, thousands)
}

/// The bound of `critical_beside_few_and_thousands_of_batch`: critical's
/// p99 beside thousands of batch threads within twice its p99 beside a
/// few, plus 2 ms for what emulation adds (a queue of any depth ahead of
/// it would cost a batch slice per task: seconds).
pub fn assert_depth_does_not_reorder_classes(few: &Summary, thousands: &Summary) {
    assert!(
        few.samples > 1000 && thousands.samples > 1000,
        "too few samples"
    );
    assert!(
        thousands.p99_us <= 2.0 * few.p99_us + 2000.0,
        "critical p99 {:.0} us beside 2,000 batch threads, {:.0} us beside 4",
        thousands.p99_us,
        few.p99_us
    );
}

/// The scx libbpf options reach libbpf: `scheduler` (started with `args`)
/// fails to load with `--btf-custom-path` naming no file, and loads with it
/// naming the kernel's own BTF.
pub fn check_libbpf_options(scheduler: &Path, args: &[&str]) {
    let with = |btf: &str| {
        let mut all = args.to_vec();
        all.extend(["--btf-custom-path", btf]);
        SchedProcess::try_start(scheduler, &all)
    };
    let refused = with("/nonexistent/vmlinux")
        .err()
        .expect("loaded with no BTF file");
    assert!(refused.contains("never enabled"), "{refused}");
    let s = with("/sys/kernel/btf/vmlinux").unwrap_or_else(|e| panic!("{e}"));
    stop_cleanly(s);
}

/// One busy task in `cgroup` for 3 s under the scheduler `start` loads
/// (with `--stats 1`): the critical class's CPU ms and the bus resolutions
/// of workloads without the sched facet, summed from its log.
fn one_hogs_critical_cpu_ms(cgroup: &Path, start: &impl Fn() -> SchedProcess) -> (u64, u64) {
    let s = start();
    let hog = Hogs::start(cgroup, 1);
    sleep(Duration::from_secs(3));
    drop(hog);
    let log = stop_cleanly(s);
    (
        stat_sum(&log, "cpu ms c/n/b "),
        stat_sum(&log, "no-sched-facet "),
    )
}

/// A critical label is the scheduler's only with the sched facet: under
/// the scheduler `start` loads on `bus` (with `--stats 1`), a busy task of
/// a critical workload whose entry lacks it runs as no class (a quarter at
/// most of the critical CPU time the same task gets with the facet), and
/// the scheduler counts the entry.
pub fn check_sched_facet(bus: &crate::fixtures::TempBusDir, start: impl Fn() -> SchedProcess) {
    use prism_bus::{Facets, LatencyClass};
    let with = crate::fixtures::TempCgroup::new("facet-with");
    let without = crate::fixtures::TempCgroup::new("facet-without");
    let mut quiet = crate::fixtures::sched_entry(312, LatencyClass::Critical, 0);
    quiet.flags.facets = Facets::NET.union(Facets::OBSERVE);
    label(
        bus,
        &[
            (
                &with,
                crate::fixtures::sched_entry(311, LatencyClass::Critical, 0),
            ),
            (&without, quiet),
        ],
    );
    let (crit_without, unfaceted) = one_hogs_critical_cpu_ms(&without.path, &start);
    let (crit_with, _) = one_hogs_critical_cpu_ms(&with.path, &start);
    println!(
        "critical CPU ms: {crit_without} without the sched facet, {crit_with} with it; {unfaceted} resolutions without it"
    );
    assert!(unfaceted >= 1, "the entry without the facet is counted");
    // The stats lines cover most of the 3 s the hog ran (at least a
    // quarter of it is asked); the contrast is the point.
    assert!(
        crit_with > 750 && crit_without < crit_with / 4,
        "critical CPU {crit_without} ms without the facet, {crit_with} ms with it"
    );
}

/// SIGINT the scheduler and assert it went away cleanly: exit status 0,
/// sched_ext back to disabled, and the kernel's "unregistered from user
/// space". Returns its log.
pub fn stop_cleanly(s: SchedProcess) -> String {
    let (status, log) = s.stop();
    assert!(
        status.success(),
        "the scheduler exited with {status}:\n{log}"
    );
    assert!(
        wait_state("disabled", Duration::from_secs(10)),
        "state stayed {}",
        state()
    );
    assert!(
        log.contains("unregistered from user space"),
        "not a clean unregister:\n{log}"
    );
    log
}

/// stress-ng's CPU, fork and context-switch stressors for `seconds`, all
/// of them in `cgroup`.
pub fn stress(cgroup: &Path, seconds: u64) {
    stress_ng(
        cgroup,
        &format!("--cpu 2 --fork 2 --switch 2 --timeout {seconds}s"),
    );
}

/// Run stress-ng with `args` in a cgroup; it must succeed.
pub fn stress_ng(cgroup: &Path, args: &str) {
    let status = in_cgroup(cgroup, &format!("stress-ng {args} --quiet"))
        .status()
        .expect("sh");
    assert!(
        status.success(),
        "stress-ng failed (apt install stress-ng): {status}"
    );
}

/// Pin a bus in `bus` with an entry for each cgroup, as the feeder would.
pub fn label(
    bus: &crate::fixtures::TempBusDir,
    labels: &[(&crate::fixtures::TempCgroup, prism_bus::Entry)],
) -> prism_bus::BusWriter {
    let mut w = prism_bus::BusWriter::create_or_open(&bus.paths, 1024).expect("bus");
    let entries: Vec<(u64, prism_bus::Entry)> =
        labels.iter().map(|(cg, e)| (cg.id(), *e)).collect();
    w.write_batch(&entries, &[]).expect("bus write");
    w
}

/// CPU time, seconds, each cgroup used over `window`, after `warmup`.
pub fn cpu_seconds_over(cgroups: &[&Path], warmup: Duration, window: Duration) -> Vec<f64> {
    sleep(warmup);
    let before: Vec<u64> = cgroups.iter().map(|c| cpu_usage_us(c)).collect();
    sleep(window);
    cgroups
        .iter()
        .zip(before)
        .map(|(c, b)| cpu_usage_us(c).saturating_sub(b) as f64 / 1e6)
        .collect()
}

/// CPU time of nCPU hogs in a cgroup with cpu.weight 300 over that of nCPU
/// hogs in one with cpu.weight 100 (ideal: 3), under the scheduler `start`
/// loads (stopped cleanly before returning).
pub fn cpu_weight_ratio(tag: &str, start: impl FnOnce() -> SchedProcess) -> f64 {
    enable_cpu_controller(&cgroup2_root());
    let light = crate::fixtures::TempCgroup::new(&format!("{tag}-w100"));
    let heavy = crate::fixtures::TempCgroup::new(&format!("{tag}-w300"));
    fs::write(light.path.join("cpu.weight"), "100").expect("cpu.weight");
    fs::write(heavy.path.join("cpu.weight"), "300").expect("cpu.weight");
    let s = start();
    let n = nr_cpus();
    let hogs = (Hogs::start(&light.path, n), Hogs::start(&heavy.path, n));
    let used = cpu_seconds_over(
        &[&light.path, &heavy.path],
        Duration::from_secs(1),
        Duration::from_secs(6),
    );
    drop(hogs);
    stop_cleanly(s);
    used[1] / used[0].max(1e-6)
}

/// What `bin --monitor 1` prints in 7 s (then SIGINT).
pub fn monitor_output(bin: &Path) -> String {
    monitor_for(bin, 7)
}

/// What `bin --monitor 1` prints in `seconds` (then SIGINT).
fn monitor_for(bin: &Path, seconds: u32) -> String {
    let out = Command::new("timeout")
        .args(["-s", "INT", &seconds.to_string()])
        .arg(bin)
        .args(["--monitor", "1"])
        .output()
        .expect("timeout(1)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The runnable weight a running scheduler reports (the `weight N` of its
/// last statistics line over scx_stats, both schedulers print it), read
/// over 3 s.
pub fn runnable_weight(bin: &Path) -> Option<u64> {
    let text = monitor_for(bin, 3);
    text.lines()
        .rev()
        .filter(|l| l.starts_with('['))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "weight")?;
            words.next()?.parse().ok()
        })
        .next()
}

/// The binary `name` built beside `bin` (same target dir and profile).
pub fn built_beside(bin: &Path, name: &str) -> PathBuf {
    let p = bin.with_file_name(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace's binaries (same profile)",
        p.display()
    );
    p
}

/// On a kernel without sched_ext, `scheduler` (a binary of that name) must
/// refuse before loading anything, saying what the kernel lacks, the config
/// it needs, and how to run it in the lab VM. Returns false (nothing to
/// check) where the kernel has sched_ext.
pub fn refuses_without_sched_ext(bin: &Path, scheduler: &str) -> bool {
    if Path::new(STATE).exists() {
        return false;
    }
    let out = Command::new(bin).output().expect("run the scheduler");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{scheduler} ran on a kernel without sched_ext:\n{stderr}"
    );
    let lab = format!("ci/lab run -- target/release/{scheduler}");
    for needed in ["has no sched_ext", "CONFIG_SCHED_CLASS_EXT=y", lab.as_str()] {
        assert!(
            stderr.contains(needed),
            "{scheduler}'s refusal does not say {needed:?}:\n{stderr}"
        );
    }
    true
}
