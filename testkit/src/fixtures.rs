//! Fixtures for tests that run against the real kernel as root: a bus pinned
//! in a private directory, cgroups that are removed afterwards, a child that
//! speaks JSON lines, the kernel's BPF run-time statistics.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use prism_bus::abi::{Entry, Facets, Flags, Identity, LatencyClass, Weight};
use prism_bus::cgroup;
use prism_bus::pinned::{BusPaths, ensure_bpffs};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn unique(tag: &str) -> String {
    format!(
        "prism-test-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A bus entry as a test or a lab experiment writes it: identity `id` with
/// every facet (as the feeder stamps by default), `class`, and `weight`
/// (0: unset). Panics on a bad value.
pub fn sched_entry(id: u32, class: LatencyClass, weight: u32) -> Entry {
    Entry {
        identity: Identity::new(id).expect("a 24-bit identity"),
        flags: Flags {
            facets: Facets::ALL,
            class,
            weight: Weight::new(weight).expect("a weight in 0..=127"),
        },
        label_hash: 0,
        updated_ns: 1,
    }
}

/// Poll `f` until it gives a value; panic naming `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(10));
    }
}

/// Ports free_port hands out: below Linux's default ephemeral range
/// (32768-60999), where no client's connect() takes one meanwhile.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_768;

/// A loopback port free a moment ago, never handed out before in this
/// process, and outside the ephemeral range: a port the kernel picked for
/// `bind(:0)` could be taken, before the server binds it, by a client's
/// connect() (every HTTP probe of a test takes one) or handed out again,
/// and the server would fail for a reason the test does not expect.
pub fn free_port() -> u16 {
    static NEXT: std::sync::Mutex<Option<u16>> = std::sync::Mutex::new(None);
    let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
    let span = TEST_PORTS.end - TEST_PORTS.start;
    // processes start at different places, so two test binaries rarely meet
    let mut offset = next.unwrap_or((std::process::id() % u32::from(span)) as u16);
    for _ in 0..span {
        let port = TEST_PORTS.start + offset;
        offset = (offset + 1) % span;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            *next = Some(offset);
            return port;
        }
    }
    panic!("no free loopback port in {TEST_PORTS:?}");
}

/// Panics unless the test runs as root: these tests need the real kernel.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root (real BPF maps and cgroups)"
    );
}

/// A pin directory of its own under /sys/fs/bpf, removed on drop.
pub struct TempBusDir {
    pub paths: BusPaths,
}

impl TempBusDir {
    pub fn new(tag: &str) -> Self {
        require_root();
        let dir = Path::new("/sys/fs/bpf").join(unique(tag));
        ensure_bpffs(&dir).expect("bpffs at /sys/fs/bpf");
        TempBusDir {
            paths: BusPaths::new(dir),
        }
    }
}

impl Drop for TempBusDir {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.paths.identity());
        let _ = fs::remove_file(self.paths.meta());
        let _ = fs::remove_dir(&self.paths.dir);
    }
}

/// A cgroup v2 directory, removed (with its children) on drop; processes
/// still in it are moved to the cgroup2 root first.
pub struct TempCgroup {
    pub path: PathBuf,
    owned: bool,
}

impl TempCgroup {
    /// A new cgroup directly under the cgroup2 root.
    pub fn new(tag: &str) -> Self {
        require_root();
        let root = cgroup::cgroup2_root().expect("cgroup2 mounted");
        let path = root.join(unique(tag));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TempCgroup { path, owned: true }
    }

    /// A child cgroup; removed with its parent.
    pub fn child(&self, name: &str) -> TempCgroup {
        let path = self.path.join(name);
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TempCgroup { path, owned: false }
    }

    pub fn id(&self) -> u64 {
        cgroup::cgroup_id(&self.path).expect("cgroup id")
    }

    /// Move a whole process into this cgroup.
    pub fn enter(&self, pid: u32) {
        fs::write(self.path.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("moving {pid} into {}: {e}", self.path.display()));
    }
}

impl Drop for TempCgroup {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let root = cgroup::cgroup2_root().expect("cgroup2 mounted");
        remove_tree(&self.path, &root);
    }
}

fn remove_tree(dir: &Path, root: &Path) {
    if let Ok(children) = fs::read_dir(dir) {
        for c in children.flatten() {
            if c.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&c.path(), root);
            }
        }
    }
    if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in procs.split_whitespace() {
            let _ = fs::write(root.join("cgroup.procs"), pid);
        }
    }
    // rmdir can race the exit of a process that just left.
    for _ in 0..50 {
        if fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        sleep(Duration::from_millis(20));
    }
}

/// Kernel BPF run-time statistics (`kernel.bpf_stats_enabled`) while this
/// lives; the previous setting is restored on drop. Benchmarks use it to
/// say what a program costs per run, exactly, beside their noisy totals.
pub struct BpfStats {
    before: String,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    pub fn enable() -> BpfStats {
        require_root();
        let before = fs::read_to_string(BPF_STATS).unwrap_or_else(|_| "0".into());
        fs::write(BPF_STATS, "1").expect("enabling kernel.bpf_stats_enabled");
        BpfStats { before }
    }

    /// (runs, total ns) of every loaded program named `name` (the kernel
    /// keeps 15 bytes of a name).
    pub fn of(&self, name: &str) -> (u64, u64) {
        let kept = &name.as_bytes()[..name.len().min(15)];
        libbpf_rs::query::ProgInfoIter::default()
            .filter(|p| p.name.as_encoded_bytes() == kept)
            .fold((0, 0), |(n, t), p| (n + p.run_cnt, t + p.run_time_ns))
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = fs::write(BPF_STATS, self.before.trim());
    }
}

/// A running program that prints JSON lines: its lines on a channel, its
/// stderr kept; killed on drop.
pub struct JsonChild {
    pub child: std::process::Child,
    lines: std::sync::mpsc::Receiver<serde_json::Value>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl JsonChild {
    /// Spawn `cmd` with stdout and stderr piped.
    pub fn spawn(cmd: &mut std::process::Command) -> JsonChild {
        use std::io::{BufRead, BufReader};
        use std::process::Stdio;
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
        let (tx, lines) = std::sync::mpsc::channel();
        let out = BufReader::new(child.stdout.take().expect("piped"));
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                let _ = tx.send(v);
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let err = BufReader::new(child.stderr.take().expect("piped"));
        let keep = stderr.clone();
        std::thread::spawn(move || {
            for line in err.lines().map_while(Result::ok) {
                keep.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        JsonChild {
            child,
            lines,
            stderr,
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Wait (20 s at most) until stderr holds `what` `times` times.
    pub fn wait_stderr_n(&self, what: &str, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.stderr().matches(what).count() < times {
            assert!(
                Instant::now() < deadline,
                "no {what:?} (x{times}) on stderr:\n{}",
                self.stderr()
            );
            sleep(Duration::from_millis(20));
        }
    }

    pub fn wait_stderr(&self, what: &str) {
        self.wait_stderr_n(what, 1);
    }

    /// The next line satisfying `want` within 10 s, skipping others.
    pub fn next(&self, want: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) if want(&v) => return v,
                Ok(_) => {}
                Err(_) => panic!("no such line; stderr:\n{}", self.stderr()),
            }
        }
    }

    /// Every line that arrives within `d`.
    pub fn drain(&self, d: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + d;
        let mut v = vec![];
        while let Ok(e) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            v.push(e);
        }
        v
    }

    /// Send `sig` (e.g. `libc::SIGHUP`).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill has no memory preconditions.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill {sig}");
    }
}

impl Drop for JsonChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_bindable_and_outside_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "{ports:?}");
        for p in ports {
            assert!(TEST_PORTS.contains(&p), "{p}");
            std::net::TcpListener::bind(("127.0.0.1", p)).expect("still free");
        }
    }
}
