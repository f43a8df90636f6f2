//! The exec policy: which files each identity may (allow-listed) or may not
//! (deny-listed) execute, read from TOML, validated whole, and resolved to
//! numbers against the feeder's names. Pure: the file's text in, the maps'
//! content out.
//!
//! ```toml
//! [[workload]]
//! identity = "shop/web"          # a name from the feeder's names file, or a number
//! allow = ["/usr/local/bin/web", "/usr/bin/python3.11"]
//!
//! [[workload]]
//! identity = 300
//! deny = ["/usr/bin/curl", "/usr/bin/wget"]
//! ```
//!
//! Files are named as the kernel names them in the workload's own root:
//! absolute, symbolic links resolved (`/usr/bin/true` on a merged-/usr
//! system, not `/bin/true`), at most 255 bytes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use prism_bus::Identity;
use serde::Deserialize;

use crate::bpf::intf::{
    LSM_PATH_LEN, prism_lsm_mode_LSM_MODE_ALLOW_LISTED as ALLOW_LISTED,
    prism_lsm_mode_LSM_MODE_DENY_LISTED as DENY_LISTED,
};

/// Most identities with a rule (the BPF `modes` map's size).
pub const MAX_WORKLOADS: usize = 4096;
/// Most listed files in all (the BPF `rules` map's size).
pub const MAX_PATHS: usize = 65536;
/// The longest identity name the feeder writes.
const MAX_NAME: usize = 253;
/// The largest policy file read.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    AllowListed,
    DenyListed,
}

impl Mode {
    /// The value the BPF program knows it by.
    pub fn raw(self) -> u32 {
        match self {
            Mode::AllowListed => ALLOW_LISTED,
            Mode::DenyListed => DENY_LISTED,
        }
    }

    pub fn from_raw(raw: u32) -> Option<Mode> {
        match raw {
            ALLOW_LISTED => Some(Mode::AllowListed),
            DENY_LISTED => Some(Mode::DenyListed),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::AllowListed => "allow-listed",
            Mode::DenyListed => "deny-listed",
        }
    }
}

/// Whom a rule is for: an identity's number, or its name in the names file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(untagged)]
pub enum IdentityRef {
    Number(u32),
    Name(String),
}

impl std::fmt::Display for IdentityRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdentityRef::Number(n) => write!(f, "{n}"),
            IdentityRef::Name(s) => write!(f, "{s:?}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub identity: IdentityRef,
    pub mode: Mode,
    pub paths: BTreeSet<String>,
}

/// A whole policy file, valid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    pub rules: Vec<Rule>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RulesError {
    #[error("not a policy file: {0}")]
    Syntax(String),
    #[error("workload {0}: give either `allow` or `deny`, not both and not neither")]
    OneList(IdentityRef),
    #[error("workload {0}: identity {1} is not a workload's (256 to 16777215)")]
    BadIdentity(IdentityRef, u32),
    #[error("workload {0:?}: a name is 1 to 253 printable characters")]
    BadName(String),
    #[error("workload {0} has two rules; merge them")]
    Duplicate(IdentityRef),
    #[error(
        "workload {0}: {1:?} is not a file name the kernel gives (absolute, no `.`, `..` or empty parts, no trailing `/`, at most 255 bytes)"
    )]
    BadPath(IdentityRef, String),
    #[error("{0} workloads have rules; at most {MAX_WORKLOADS}")]
    TooManyWorkloads(usize),
    #[error("{0} files are listed; at most {MAX_PATHS}")]
    TooManyPaths(usize),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default, rename = "workload")]
    workloads: Vec<WorkloadSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkloadSpec {
    identity: IdentityRef,
    allow: Option<Vec<String>>,
    deny: Option<Vec<String>>,
}

/// Absolute, normalised, short enough for the BPF key, no NUL or newline.
pub fn is_kernel_path(p: &str) -> bool {
    p.len() < LSM_PATH_LEN as usize
        && p.len() > 1
        && p.starts_with('/')
        && !p.ends_with('/')
        && !p.bytes().any(|b| b == 0 || b == b'\n')
        && p[1..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

impl Rules {
    /// The policy in `text`, or the first thing wrong with it.
    pub fn parse(text: &str) -> Result<Rules, RulesError> {
        let spec: FileSpec =
            toml::from_str(text).map_err(|e| RulesError::Syntax(e.message().to_string()))?;
        if spec.workloads.len() > MAX_WORKLOADS {
            return Err(RulesError::TooManyWorkloads(spec.workloads.len()));
        }
        let mut seen = BTreeSet::new();
        let mut total = 0;
        let mut rules = Vec::with_capacity(spec.workloads.len());
        for w in spec.workloads {
            let id = w.identity;
            match &id {
                IdentityRef::Number(n) => {
                    if Identity::new(*n).map_or(true, Identity::is_reserved) {
                        return Err(RulesError::BadIdentity(id.clone(), *n));
                    }
                }
                IdentityRef::Name(s) => {
                    if s.is_empty() || s.len() > MAX_NAME || s.chars().any(char::is_control) {
                        return Err(RulesError::BadName(s.clone()));
                    }
                }
            }
            if !seen.insert(id.clone()) {
                return Err(RulesError::Duplicate(id));
            }
            let (mode, paths) = match (w.allow, w.deny) {
                (Some(p), None) => (Mode::AllowListed, p),
                (None, Some(p)) => (Mode::DenyListed, p),
                _ => return Err(RulesError::OneList(id)),
            };
            if let Some(bad) = paths.iter().find(|p| !is_kernel_path(p)) {
                return Err(RulesError::BadPath(id, bad.clone()));
            }
            total += paths.len();
            if total > MAX_PATHS {
                return Err(RulesError::TooManyPaths(total));
            }
            rules.push(Rule {
                identity: id,
                mode,
                paths: paths.into_iter().collect(),
            });
        }
        Ok(Rules { rules })
    }

    /// The rules by number: names looked up in `names` (name -> identity).
    /// A name not (yet) in it is left out and returned, so its rule applies
    /// once the feeder names it. Two rules that resolve to one identity: the
    /// numbered one wins, and the other is returned as unresolved too.
    pub fn resolve(&self, names: &HashMap<String, u32>) -> (Resolved, Vec<IdentityRef>) {
        let mut out = Resolved::default();
        let mut unresolved = vec![];
        let numbered = self
            .rules
            .iter()
            .filter(|r| matches!(r.identity, IdentityRef::Number(_)));
        let named = self
            .rules
            .iter()
            .filter(|r| matches!(r.identity, IdentityRef::Name(_)));
        for rule in numbered.chain(named) {
            let id = match &rule.identity {
                IdentityRef::Number(n) => Some(*n),
                IdentityRef::Name(s) => names.get(s).copied(),
            };
            match id {
                Some(id) if !out.modes.contains_key(&id) => {
                    out.modes.insert(id, rule.mode);
                    out.paths
                        .extend(rule.paths.iter().map(|p| (id, rule.mode, p.clone())));
                }
                _ => unresolved.push(rule.identity.clone()),
            }
        }
        (out, unresolved)
    }
}

/// What the BPF maps should hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    pub modes: BTreeMap<u32, Mode>,
    pub paths: BTreeSet<(u32, Mode, String)>,
}

/// The writes that take the maps from `old` to `new` without an exec ever
/// seeing half a list: the new files first (keyed by mode, so they do not
/// touch a list in use), then the modes, then what is gone.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub add_paths: Vec<(u32, Mode, String)>,
    pub set_modes: Vec<(u32, Mode)>,
    pub remove_modes: Vec<u32>,
    pub remove_paths: Vec<(u32, Mode, String)>,
}

impl Changes {
    pub fn between(old: &Resolved, new: &Resolved) -> Changes {
        Changes {
            add_paths: new.paths.difference(&old.paths).cloned().collect(),
            set_modes: new
                .modes
                .iter()
                .filter(|(id, m)| old.modes.get(id) != Some(m))
                .map(|(&id, &m)| (id, m))
                .collect(),
            remove_modes: old
                .modes
                .keys()
                .filter(|id| !new.modes.contains_key(id))
                .copied()
                .collect(),
            remove_paths: old.paths.difference(&new.paths).cloned().collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self == &Changes::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
        [[workload]]
        identity = "shop/web"
        allow = ["/usr/local/bin/web", "/usr/bin/python3.11"]

        [[workload]]
        identity = 300
        deny = ["/usr/bin/curl"]
    "#;

    #[test]
    fn the_example_parses() {
        let r = Rules::parse(EXAMPLE).unwrap();
        assert_eq!(r.rules.len(), 2);
        assert_eq!(r.rules[0].identity, IdentityRef::Name("shop/web".into()));
        assert_eq!(r.rules[0].mode, Mode::AllowListed);
        assert_eq!(r.rules[1].identity, IdentityRef::Number(300));
        assert_eq!(r.rules[1].mode, Mode::DenyListed);
        assert!(r.rules[1].paths.contains("/usr/bin/curl"));
        assert_eq!(Rules::parse(""), Ok(Rules::default()));
    }

    #[test]
    fn the_shipped_example_parses() {
        let text = include_str!("../../../services/exec-policy.example.toml");
        assert_eq!(Rules::parse(text).map(|r| r.rules.len()), Ok(2));
    }

    #[test]
    fn bad_files_are_refused_whole() {
        type Check = fn(&RulesError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("[[workload]]\nidentity = 300", |e| {
                matches!(e, RulesError::OneList(_))
            }),
            ("[[workload]]\nidentity = 300\nallow = []\ndeny = []", |e| {
                matches!(e, RulesError::OneList(_))
            }),
            ("[[workload]]\nidentity = 5\ndeny = []", |e| {
                matches!(e, RulesError::BadIdentity(_, 5))
            }),
            ("[[workload]]\nidentity = 16777216\ndeny = []", |e| {
                matches!(e, RulesError::BadIdentity(..))
            }),
            ("[[workload]]\nidentity = \"\"\ndeny = []", |e| {
                matches!(e, RulesError::BadName(_))
            }),
            (
                "[[workload]]\nidentity = 300\ndeny = []\n[[workload]]\nidentity = 300\nallow = []",
                |e| matches!(e, RulesError::Duplicate(_)),
            ),
            ("[[workload]]\nidentity = 300\ndeny = [\"bin/sh\"]", |e| {
                matches!(e, RulesError::BadPath(..))
            }),
            ("[[workload]]\nidentity = 300\nallow = 7", |e| {
                matches!(e, RulesError::Syntax(_))
            }),
            ("[[workload]]\nidentity = 300\ndeny = []\nmode = 1", |e| {
                matches!(e, RulesError::Syntax(_))
            }),
            ("workloads = 1", |e| matches!(e, RulesError::Syntax(_))),
        ];
        for (text, want) in cases {
            let e = Rules::parse(text).unwrap_err();
            assert!(want(&e), "{text:?} gave {e}");
        }
    }

    #[test]
    fn only_names_the_kernel_gives_are_paths() {
        for ok in ["/usr/bin/true", "/a", &format!("/{}", "p".repeat(254))] {
            assert!(is_kernel_path(ok), "{ok}");
        }
        for bad in [
            "",
            "/",
            "usr/bin/true",
            "/usr/bin/",
            "/usr//bin",
            "/usr/./bin",
            "/usr/../bin",
            "/a\0b",
            "/a\nb",
            &format!("/{}", "p".repeat(255)),
        ] {
            assert!(!is_kernel_path(bad), "{bad:?}");
        }
    }

    #[test]
    fn size_limits_hold() {
        let many: String = (0..=MAX_WORKLOADS)
            .map(|i| format!("[[workload]]\nidentity = {}\ndeny = []\n", 256 + i))
            .collect();
        assert_eq!(
            Rules::parse(&many),
            Err(RulesError::TooManyWorkloads(MAX_WORKLOADS + 1))
        );
        let paths: Vec<String> = (0..=MAX_PATHS).map(|i| format!("\"/b/{i}\"")).collect();
        let big = format!(
            "[[workload]]\nidentity = 300\ndeny = [{}]\n",
            paths.join(",")
        );
        assert_eq!(
            Rules::parse(&big),
            Err(RulesError::TooManyPaths(MAX_PATHS + 1))
        );
    }

    #[test]
    fn names_resolve_when_known_and_numbers_win() {
        let r = Rules::parse(EXAMPLE).unwrap();
        let (got, unresolved) = r.resolve(&HashMap::new());
        assert_eq!(got.modes, BTreeMap::from([(300, Mode::DenyListed)]));
        assert_eq!(unresolved, vec![IdentityRef::Name("shop/web".into())]);

        let names = HashMap::from([("shop/web".to_string(), 301)]);
        let (got, unresolved) = r.resolve(&names);
        assert!(unresolved.is_empty());
        assert_eq!(got.modes[&301], Mode::AllowListed);
        assert!(
            got.paths
                .contains(&(301, Mode::AllowListed, "/usr/local/bin/web".into()))
        );

        // The name resolves to the numbered rule's identity: the number wins.
        let names = HashMap::from([("shop/web".to_string(), 300)]);
        let (got, unresolved) = r.resolve(&names);
        assert_eq!(got.modes[&300], Mode::DenyListed);
        assert_eq!(got.paths.len(), 1);
        assert_eq!(unresolved.len(), 1);
    }

    #[test]
    fn changes_write_new_lists_before_flipping_modes() {
        let deny = Rules::parse("[[workload]]\nidentity = 300\ndeny = [\"/a\", \"/b\"]").unwrap();
        let allow = Rules::parse("[[workload]]\nidentity = 300\nallow = [\"/b\"]").unwrap();
        let none = HashMap::new();
        let (old, _) = deny.resolve(&none);
        let (new, _) = allow.resolve(&none);
        let c = Changes::between(&old, &new);
        assert_eq!(c.add_paths, vec![(300, Mode::AllowListed, "/b".into())]);
        assert_eq!(c.set_modes, vec![(300, Mode::AllowListed)]);
        assert!(c.remove_modes.is_empty());
        assert_eq!(c.remove_paths.len(), 2);
        assert!(Changes::between(&new, &new).is_empty());

        let c = Changes::between(&new, &Resolved::default());
        assert_eq!(c.remove_modes, vec![300]);
        assert_eq!(c.remove_paths, vec![(300, Mode::AllowListed, "/b".into())]);
    }
}
