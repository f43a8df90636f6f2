//! The real prism-feeder, labelling the scenario cgroups from cgroup rules:
//! the bus every bus-reading scheduler sees in prism-eval is filled end to
//! end, as on a node.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use prism_bus::{Bus, BusPaths, LatencyClass};

/// The rules: each scenario cgroup below the feeder's --cgroup-root gets its
/// class; nothing else gets an identity (`units = false`), so `plain`, `noise` and
/// the root stay unlabelled.
pub const RULES: &str = r#"units = false

[[rule]]
match = "crit"
name = "eval-critical"
labels = { app = "eval", tier = "critical" }
class = "critical"

[[rule]]
match = "normal"
name = "eval-normal"
labels = { app = "eval", tier = "normal" }
class = "normal"

[[rule]]
match = "batch"
name = "eval-batch"
labels = { app = "eval", tier = "batch" }
class = "batch"
"#;

pub struct Feeder {
    child: Child,
    dir: PathBuf,
}

impl Feeder {
    /// Start `bin` on the cgroup tree at `root` writing the bus in `bus_dir`.
    pub fn start(bin: &Path, root: &Path, bus_dir: &Path) -> Result<Feeder> {
        let dir = std::env::temp_dir().join(format!("prism-eval-feeder-{}", std::process::id()));
        fs::create_dir_all(&dir)?;
        let rules = dir.join("rules.toml");
        fs::write(&rules, RULES)?;
        let log = fs::File::create(dir.join("feeder.log"))?;
        let port = prism_testkit::fixtures::free_port();
        let child = Command::new(bin)
            .args(["--source", "cgroup", "--cgroup-root"])
            .arg(root)
            .arg("--rules")
            .arg(&rules)
            .arg("--bus-dir")
            .arg(bus_dir)
            .arg("--names-file")
            .arg(dir.join("identities.json"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Feeder { child, dir })
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("feeder.log")).unwrap_or_default()
    }

    /// Wait until the bus carries `want` (cgroup id, class) for each cgroup.
    pub fn wait_for(&mut self, bus_dir: &Path, want: &[(u64, LatencyClass)]) -> Result<()> {
        let paths = BusPaths::new(bus_dir);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("prism-feeder exited ({status}):\n{}", self.log());
            }
            let labelled = Bus::open(&paths).is_ok_and(|bus| {
                want.iter().all(
                    |&(cg, class)| matches!(bus.get(cg), Ok(Some(e)) if e.flags.class == class),
                )
            });
            if labelled {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "prism-feeder did not label the scenario cgroups in 30 s:\n{}",
                    self.log()
                );
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child: SIGTERM, the feeder's clean stop.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.alive() && Instant::now() < deadline {
            sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
