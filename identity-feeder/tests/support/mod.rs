//! What the feeder's real-kernel tests share: the prism-feeder binary run as
//! a process (its HTTP endpoints, its signals, its log), a private cgroup
//! root to build cgroup trees in, and waiting for the bus to say something.

#![allow(dead_code)] // each test binary uses its own part of this

pub use prism_testkit::fixtures::{free_port, wait_for};

pub mod etcd;
pub mod fake_api;
pub mod fake_kubelet;
pub mod pods;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use prism_bus::{Bus, BusPaths, Entry};
use prism_testkit::fixtures::{TempBusDir, TempCgroup};

/// The same entry, whenever it was written.
pub fn same(a: &Entry, b: &Entry) -> bool {
    (a.identity, a.flags, a.label_hash) == (b.identity, b.flags, b.label_hash)
}

/// The flags of a feeder on `root`'s cgroup tree writing `bus`, and `extra`.
pub fn cgroup_feeder_args<'a>(
    root: &'a CgroupRoot,
    bus: &'a TestBus,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "--source",
        "cgroup",
        "--cgroup-root",
        root.arg(),
        "--bus-dir",
        bus.arg(),
    ];
    args.extend_from_slice(extra);
    args
}

/// A running prism-feeder; killed (and its log shown, if the test failed)
/// when dropped.
pub struct Feeder {
    child: Option<Child>,
    pub port: u16,
    log: PathBuf,
    /// Its identity names file (each test's own).
    pub names_file: PathBuf,
}

impl Feeder {
    /// Start the binary with `args` plus its own --listen port.
    pub fn start(args: &[&str]) -> Feeder {
        Feeder::start_env(args, &[])
    }

    /// Unless `args` set `--delete-grace`, it is 0s here (a workload leaves
    /// the moment its source stops naming it): the tests of the grace
    /// itself set their own.
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Feeder {
        Feeder::start_in(args, env, None)
    }

    /// Started inside the cgroup whose `cgroup.procs` file is `procs` (it
    /// joins before it runs a single instruction of the feeder).
    pub fn start_in(args: &[&str], env: &[(&str, &str)], procs: Option<&Path>) -> Feeder {
        let port = free_port();
        let log = std::env::temp_dir().join(format!(
            "prism-feeder-test-{}-{port}.log",
            std::process::id()
        ));
        let out = fs::File::create(&log).expect("log file");
        let names_file = log.with_extension("names.json");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_prism-feeder"));
        if let Some(procs) = procs {
            let procs = std::ffi::CString::new(procs.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: between fork and exec only open/write/close, with
            // nothing allocated.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                    let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                    if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(fd);
                    Ok(())
                });
            }
        }
        let child = cmd
            .args(args)
            .args(if args.contains(&"--delete-grace") {
                &[][..]
            } else {
                &["--delete-grace", "0s"][..]
            })
            .args(["--listen", &format!("127.0.0.1:{port}"), "-v"])
            .arg("--names-file")
            .arg(&names_file)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("spawn prism-feeder");
        Feeder {
            child: Some(child),
            port,
            log,
            names_file,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// GET `path` on the feeder's HTTP server: (status, body).
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.port, path)
    }

    pub fn wait_ready(&self, timeout: Duration) {
        wait_for("the feeder to be ready", timeout, || {
            self.assert_running();
            matches!(self.get("/readyz"), Some((200, _))).then_some(())
        });
    }

    /// One sample of the metrics text, e.g. `prism_feeder_failures_total{reason="bad_class"}`.
    pub fn metric(&self, series: &str) -> f64 {
        let (_, body) = self.get("/metrics").expect("metrics served");
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no series {series} in\n{body}"))
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill has no memory preconditions.
        assert_eq!(unsafe { libc::kill(self.pid() as i32, sig) }, 0);
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// How it exited, if it has (without waiting).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().expect("wait")
    }

    /// SIGTERM, and how it exited.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        let mut c = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = c.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit 10 s after SIGTERM");
            sleep(Duration::from_millis(20));
        }
    }

    pub fn assert_running(&self) {
        if let Some(c) = &self.child {
            // try_wait needs &mut; peek at /proc instead.
            let state = fs::read_to_string(format!("/proc/{}/stat", c.id())).unwrap_or_default();
            assert!(
                !state.is_empty() && !state.contains(") Z "),
                "prism-feeder exited:\n{}",
                self.log()
            );
        }
    }

    /// identity -> name, as the names file says (waiting for it to say `want` names).
    pub fn names(&self, want: usize) -> std::collections::BTreeMap<u32, String> {
        wait_for("the identity names file", Duration::from_secs(10), || {
            let f = prism_bus::names::read(&self.names_file).ok()?;
            let names: std::collections::BTreeMap<u32, String> = f
                .identities
                .into_iter()
                .map(|n| (n.identity, n.name))
                .collect();
            (names.len() == want).then_some(names)
        })
    }

    /// identity -> namespace, for the pod identities of the names file.
    pub fn namespaces(&self) -> std::collections::BTreeMap<u32, String> {
        prism_bus::names::read(&self.names_file)
            .map(|f| {
                f.identities
                    .into_iter()
                    .filter_map(|n| Some((n.identity, n.namespace?)))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("---- prism-feeder log ----\n{}", self.log());
        }
        let _ = fs::remove_file(&self.log);
        let _ = fs::remove_file(&self.names_file);
    }
}

pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// A private cgroup root to build trees in (the feeder's --cgroup-root).
pub struct CgroupRoot {
    pub cg: TempCgroup,
}

impl CgroupRoot {
    pub fn new(tag: &str) -> CgroupRoot {
        CgroupRoot {
            cg: TempCgroup::new(tag),
        }
    }

    pub fn path(&self) -> &Path {
        &self.cg.path
    }

    pub fn arg(&self) -> &str {
        self.cg.path.to_str().expect("utf-8 path")
    }

    /// mkdir -p `rel` below the root; the cgroup's id.
    pub fn mkdir(&self, rel: &str) -> u64 {
        let p = self.cg.path.join(rel);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        prism_bus::cgroup::cgroup_id(&p).expect("cgroup id")
    }

    pub fn rmdir(&self, rel: &str) {
        let p = self.cg.path.join(rel);
        fs::remove_dir(&p).unwrap_or_else(|e| panic!("rmdir {}: {e}", p.display()));
    }

    pub fn id(&self, rel: &str) -> u64 {
        prism_bus::cgroup::cgroup_id(&self.cg.path.join(rel)).expect("cgroup id")
    }
}

/// Cgroups below `root` (not counting it).
pub fn cgroup_count(root: &Path) -> usize {
    prism_bus::cgroup::index_ids(root).len() - 1
}

/// A test's own bus directory and a way to read it.
pub struct TestBus {
    pub dir: TempBusDir,
}

impl TestBus {
    pub fn new(tag: &str) -> TestBus {
        TestBus {
            dir: TempBusDir::new(tag),
        }
    }

    pub fn paths(&self) -> &BusPaths {
        &self.dir.paths
    }

    pub fn arg(&self) -> &str {
        self.dir.paths.dir.to_str().expect("utf-8 path")
    }

    pub fn get(&self, cgroup_id: u64) -> Option<Entry> {
        Bus::open(self.paths())
            .ok()?
            .get(cgroup_id)
            .expect("bus read")
    }

    /// The generation of the last committed batch.
    pub fn generation(&self) -> u64 {
        let bus = Bus::open(self.paths()).expect("bus pinned");
        bus.meta().expect("bus meta").generation
    }

    /// Every entry, by cgroup id.
    /// cgroup id -> identity, of every entry (what "nothing deleted or
    /// renumbered" compares).
    pub fn ids(&self) -> std::collections::BTreeMap<u64, u32> {
        self.all()
            .into_iter()
            .map(|(k, e)| (k, e.identity.get()))
            .collect()
    }

    pub fn all(&self) -> Vec<(u64, Entry)> {
        let bus = Bus::open(self.paths()).expect("bus pinned");
        let mut v: Vec<_> = bus
            .iter()
            .map(|(k, e)| (k, e.expect("valid entry")))
            .collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }

    /// Wait until the entry for `cgroup_id` satisfies `ok`.
    pub fn wait_entry(
        &self,
        what: &str,
        cgroup_id: u64,
        ok: impl Fn(Option<&Entry>) -> bool,
    ) -> Option<Entry> {
        wait_for(what, Duration::from_secs(10), || {
            let e = self.get(cgroup_id);
            ok(e.as_ref()).then_some(e)
        })
    }
}
