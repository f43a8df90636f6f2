//! The schedulers prism-eval compares, and how each is started.

use std::path::{Path, PathBuf};

/// How a configuration runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launch {
    /// No sched_ext scheduler: the kernel's fair class (EEVDF).
    Eevdf,
    /// One of this workspace's schedulers, built beside prism-eval.
    Ours(&'static str, &'static [&'static str]),
    /// A published scx scheduler from `ci/bench-peers` (in --peers-dir).
    Peer(&'static str, &'static [&'static str]),
}

#[derive(Debug, Clone, Copy)]
pub struct Scheduler {
    pub name: &'static str,
    pub launch: Launch,
    /// Reads the bus (so the empty-bus scenario restarts it on an empty one).
    pub reads_bus: bool,
    /// Runs with cpu.weight crit 10000 / normal 100 / batch 1 (else all 100).
    pub cgroup_weights: bool,
}

pub const EEVDF: &str = "EEVDF";
pub const SCX_PRISM: &str = "scx_prism";
pub const PRISM_BPFLAND_CLASSES: &str = "scx_prism_bpfland --prism";

pub const ALL: [Scheduler; 8] = [
    Scheduler {
        name: EEVDF,
        launch: Launch::Eevdf,
        reads_bus: false,
        cgroup_weights: false,
    },
    Scheduler {
        name: "EEVDF cpu.weight",
        launch: Launch::Eevdf,
        reads_bus: false,
        cgroup_weights: true,
    },
    Scheduler {
        name: SCX_PRISM,
        launch: Launch::Ours("scx_prism", &[]),
        reads_bus: true,
        cgroup_weights: false,
    },
    Scheduler {
        name: "scx_prism_bpfland",
        launch: Launch::Ours("scx_prism_bpfland", &[]),
        reads_bus: false,
        cgroup_weights: false,
    },
    Scheduler {
        name: PRISM_BPFLAND_CLASSES,
        launch: Launch::Ours("scx_prism_bpfland", &["--prism"]),
        reads_bus: true,
        cgroup_weights: false,
    },
    Scheduler {
        name: "scx_bpfland",
        launch: Launch::Peer("scx_bpfland", &[]),
        reads_bus: false,
        cgroup_weights: false,
    },
    Scheduler {
        name: "scx_rustland",
        launch: Launch::Peer("scx_rustland", &[]),
        reads_bus: false,
        cgroup_weights: false,
    },
    Scheduler {
        name: "scx_layered",
        launch: Launch::Peer("scx_layered", &[]),
        reads_bus: false,
        cgroup_weights: false,
    },
];

/// The `--quick` set (what CI runs: no peers to build).
pub const QUICK: [&str; 3] = [EEVDF, SCX_PRISM, PRISM_BPFLAND_CLASSES];
/// The demo's before and after.
pub const DEMO: [&str; 2] = [EEVDF, SCX_PRISM];

pub fn by_name(name: &str) -> Option<Scheduler> {
    ALL.into_iter().find(|s| s.name == name)
}

/// Where the binaries are.
pub struct Binaries {
    pub ours: PathBuf,
    pub peers: PathBuf,
}

impl Scheduler {
    pub fn is_peer(&self) -> bool {
        matches!(self.launch, Launch::Peer(..))
    }

    /// The binary, or None for EEVDF.
    pub fn binary(&self, b: &Binaries) -> Option<PathBuf> {
        match self.launch {
            Launch::Eevdf => None,
            Launch::Ours(bin, _) => Some(b.ours.join(bin)),
            Launch::Peer(bin, _) => Some(b.peers.join(bin)),
        }
    }

    /// Its arguments: ours read `bus_dir`; scx_layered gets `layered_config`.
    pub fn args(&self, bus_dir: &Path, layered_config: &Path) -> Vec<String> {
        let mut args: Vec<String> = match self.launch {
            Launch::Eevdf => return Vec::new(),
            Launch::Ours(_, a) | Launch::Peer(_, a) => a.iter().map(|s| s.to_string()).collect(),
        };
        match self.launch {
            Launch::Ours(..) => {
                args.push("--bus-dir".into());
                args.push(bus_dir.display().to_string());
            }
            Launch::Peer("scx_layered", _) => {
                args.push(format!("f:{}", layered_config.display()));
            }
            _ => {}
        }
        args
    }
}

/// scx_layered's configuration for the scenarios: the critical cgroup is
/// its own layer (open to every CPU, preempting, heaviest weight), the rest
/// share one open layer — its fair best effort at what the bus says.
/// `crit` is the critical cgroup's path below the cgroup2 root.
pub fn layered_config(crit: &str) -> String {
    serde_json::json!([
        {
            "name": "critical",
            "comment": "prism-eval's critical cgroup",
            "matches": [[{ "CgroupPrefix": format!("{crit}/") }]],
            "kind": { "Open": { "preempt": true, "weight": 10000, "min_exec_us": 100 } }
        },
        {
            "name": "rest",
            "comment": "everything else",
            "matches": [[]],
            "kind": { "Open": { "weight": 100 } }
        }
    ])
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_sets_name_real_schedulers() {
        for (i, a) in ALL.iter().enumerate() {
            assert!(ALL[i + 1..].iter().all(|b| b.name != a.name), "{}", a.name);
        }
        for n in QUICK.iter().chain(&DEMO) {
            assert!(by_name(n).is_some(), "{n}");
        }
    }

    #[test]
    fn arguments() {
        let (bus, cfg) = (Path::new("/b"), Path::new("/c.json"));
        let p = by_name(PRISM_BPFLAND_CLASSES).unwrap();
        assert_eq!(p.args(bus, cfg), ["--prism", "--bus-dir", "/b"]);
        assert_eq!(
            by_name("scx_layered").unwrap().args(bus, cfg),
            ["f:/c.json"]
        );
        assert!(by_name(EEVDF).unwrap().args(bus, cfg).is_empty());
        let v: serde_json::Value = serde_json::from_str(&layered_config("e/crit")).unwrap();
        assert_eq!(v[0]["matches"][0][0]["CgroupPrefix"], "e/crit/");
        assert_eq!(v[1]["matches"][0].as_array().unwrap().len(), 0);
    }
}
