//! The plain-host source: workloads are cgroups, named by rules.
//!
//! Rules come from a TOML file (`--rules`), first match wins:
//!
//! ```toml
//! units = true                 # every *.service, *.scope, *.slice: its own identity
//!
//! [[rule]]
//! match = "system.slice/postgresql*.service"   # glob on the path below the cgroup root
//! labels = { app = "postgres" }
//! name = "postgres"            # for people (metrics, traces); default: the glob
//! class = "critical"           # critical | normal | batch
//! weight = 96                  # 1..=127
//! facets = ["sched", "observe"] # which consumers act on it (default: --facets)
//! ```
//!
//! Every cgroup a rule matches shares the rule's identity (canonical
//! `io.prism/cgroup=<glob>;` + its labels); a unit no rule matches gets its
//! own (`io.prism/cgroup=<path>;`). The operator writes the rules, so their
//! classes are trusted. SIGHUP re-reads the file; a file that does not parse
//! keeps the rules in force and says why.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use crossbeam_channel::{Receiver, select};
use globset::{GlobBuilder, GlobMatcher};
use serde::Deserialize;
use tracing::{error, info, warn};

use super::{Feed, Source};
use crate::failure::{Failure, shown};
use crate::sources::cgroup_tree::TreeEvent;
use crate::workload::canonical::Canonical;
use crate::workload::declared::{Policy, parse_class, parse_facets};
use crate::workload::labels::Labels;
use crate::workload::{Workload, WorkloadKey};
use prism_bus::Facets;

/// Most rules a file may hold.
const MAX_RULES: usize = 4096;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default = "yes")]
    units: bool,
    #[serde(default, rename = "rule")]
    rules: Vec<RuleSpec>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    #[serde(rename = "match")]
    pattern: String,
    /// What people call the cgroups it matches (default: the glob).
    name: Option<String>,
    #[serde(default)]
    labels: Labels,
    class: Option<String>,
    weight: Option<u32>,
    facets: Option<Vec<String>>,
}

struct Rule {
    glob: GlobMatcher,
    canonical: Canonical,
    policy: Policy,
    /// Its `name`, else its glob.
    name: Arc<str>,
}

/// Compiled rules: which cgroups are workloads, with what identity.
pub struct Rules {
    units: bool,
    rules: Vec<Rule>,
}

impl Rules {
    /// No file: every systemd service, scope and slice, no class.
    pub fn builtin() -> Rules {
        Rules {
            units: true,
            rules: vec![],
        }
    }

    pub fn parse(text: &str) -> anyhow::Result<Rules> {
        let file: RulesFile = toml::from_str(text)?;
        if file.rules.len() > MAX_RULES {
            anyhow::bail!("{} rules; at most {MAX_RULES}", file.rules.len());
        }
        let rules = file
            .rules
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                compile(spec)
                    .with_context(|| format!("rule {} (match = {:?})", i + 1, shown(&spec.pattern)))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Rules {
            units: file.units,
            rules,
        })
    }

    pub fn load(path: &Path) -> anyhow::Result<Rules> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading cgroup rules {}", path.display()))?;
        Rules::parse(&text).with_context(|| format!("cgroup rules {}", path.display()))
    }

    /// The workload the cgroup at `path` (below the root) is, if any.
    pub fn classify(&self, path: &str) -> Result<Option<Workload>, Failure> {
        let shared: Arc<str> = Arc::from(path);
        let (canonical, policy, identity_name) =
            match self.rules.iter().find(|r| r.glob.is_match(path)) {
                Some(rule) => (rule.canonical.clone(), rule.policy, rule.name.clone()),
                None if self.units && is_unit(path) => (
                    Canonical::for_cgroup(path, &Labels::new())?,
                    Policy::default(),
                    shared.clone(),
                ),
                None => return Ok(None),
            };
        Ok(Some(Workload {
            key: WorkloadKey::Cgroup(shared.clone()),
            name: shared,
            identity_name,
            canonical,
            policy,
        }))
    }
}

fn compile(spec: &RuleSpec) -> anyhow::Result<Rule> {
    let glob = GlobBuilder::new(spec.pattern.trim_start_matches('/'))
        .literal_separator(true)
        .build()
        .context("not a glob")?
        .compile_matcher();
    let canonical = Canonical::for_cgroup(&spec.pattern, &spec.labels)
        .map_err(|f| anyhow::anyhow!("its glob or labels cannot be part of an identity ({f})"))?;
    let class = spec
        .class
        .as_deref()
        .map(parse_class)
        .transpose()
        .map_err(|_| anyhow::anyhow!("class must be critical, normal or batch"))?
        .unwrap_or_default();
    let weight = match spec.weight {
        None => prism_bus::Weight::UNSET,
        Some(w) if (1..=127).contains(&w) => prism_bus::Weight::new(w).expect("in range"),
        Some(w) => anyhow::bail!("weight {w} is not in 1..=127"),
    };
    let name = match &spec.name {
        Some(n) if !n.is_empty() && n.len() <= 253 && !n.chars().any(char::is_control) => n,
        Some(_) => anyhow::bail!("name must be 1..253 printable characters"),
        None => &spec.pattern,
    };
    let facets = match &spec.facets {
        None => None,
        Some(names) => Some(names.iter().try_fold(Facets::NONE, |all, n| {
            let f = parse_facets(n)
                .ok()
                .filter(|f| *f != Facets::NONE && !all.contains(*f))
                .ok_or_else(|| {
                    anyhow::anyhow!("facets are net, sched and observe, each at most once: {n:?}")
                })?;
            anyhow::Ok(all.union(f))
        })?),
    };
    Ok(Rule {
        glob,
        canonical,
        policy: Policy {
            class,
            weight,
            facets,
        },
        name: Arc::from(name.as_str()),
    })
}

fn is_unit(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    [".service", ".scope", ".slice"]
        .iter()
        .any(|s| name.len() > s.len() && name.ends_with(s))
}

/// The source: follows the cgroup tree and classifies what it sees.
pub struct CgroupRulesSource {
    rules: Rules,
    path: Option<PathBuf>,
    tree: Receiver<TreeEvent>,
    reload: Receiver<()>,
}

impl CgroupRulesSource {
    /// `path`: the rules file, re-read on each `reload`; `None`: built-in.
    pub fn new(
        path: Option<PathBuf>,
        tree: Receiver<TreeEvent>,
        reload: Receiver<()>,
    ) -> anyhow::Result<Self> {
        let rules = match &path {
            Some(p) => Rules::load(p)?,
            None => Rules::builtin(),
        };
        Ok(CgroupRulesSource {
            rules,
            path,
            tree,
            reload,
        })
    }

    fn follow(mut self, feed: Feed) {
        // Paths in the tree now, and which of them are workloads.
        let mut known: BTreeSet<Arc<str>> = BTreeSet::new();
        let mut workloads: BTreeSet<Arc<str>> = BTreeSet::new();
        loop {
            select! {
                recv(self.tree) -> event => {
                    let Ok(event) = event else { return };
                    // The reconciler hears the tree from here: of a cgroup
                    // after this source's verdict on it (a unit made below a
                    // slice is never first written with the slice's
                    // identity), of a removal before (a unit whose cgroup
                    // went is not first held for --delete-grace).
                    if let TreeEvent::Removed(_) = event {
                        feed.relay_tree(event.clone());
                        self.follow_tree(&feed, &event, &mut known, &mut workloads);
                    } else {
                        self.follow_tree(&feed, &event, &mut known, &mut workloads);
                        feed.relay_tree(event);
                    }
                }
                recv(self.reload) -> r => {
                    if r.is_err() {
                        return;
                    }
                    self.reload_rules(&feed, &known, &mut workloads);
                }
            }
        }
    }

    /// Classify what one tree event made or removed.
    fn follow_tree(
        &self,
        feed: &Feed,
        event: &TreeEvent,
        known: &mut BTreeSet<Arc<str>>,
        workloads: &mut BTreeSet<Arc<str>>,
    ) {
        match event {
            TreeEvent::Snapshot(cgroups) => {
                *known = cgroups.iter().map(|(p, _)| p.clone()).collect();
                self.replace(feed, known, workloads);
                feed.up(true);
            }
            TreeEvent::Created(cgroups) => {
                for (path, _) in cgroups {
                    if let Some(w) = self.classify(feed, path) {
                        workloads.insert(path.clone());
                        feed.apply(w);
                    }
                    known.insert(path.clone());
                }
            }
            TreeEvent::Removed(path) => {
                let lo = format!("{path}/");
                let gone: Vec<Arc<str>> = known
                    .range::<str, _>((Bound::Included(&**path), Bound::Unbounded))
                    .take_while(|p| **p == *path || p.starts_with(&lo))
                    .cloned()
                    .collect();
                for p in gone {
                    known.remove(&p);
                    if workloads.remove(&p) {
                        feed.delete(WorkloadKey::Cgroup(p));
                    }
                }
            }
        }
    }

    fn reload_rules(
        &mut self,
        feed: &Feed,
        known: &BTreeSet<Arc<str>>,
        workloads: &mut BTreeSet<Arc<str>>,
    ) {
        let Some(path) = &self.path else {
            info!("reload asked; the built-in cgroup rules have nothing to re-read");
            return;
        };
        match Rules::load(path) {
            Ok(rules) => {
                info!(rules = %path.display(), "cgroup rules reloaded");
                self.rules = rules;
                self.replace(feed, known, workloads);
            }
            Err(e) => {
                error!(
                    error = format!("{e:#}"),
                    "the new cgroup rules are refused; the old ones stay in force"
                );
                feed.failure(Failure::BadRule);
            }
        }
    }

    fn replace(&self, feed: &Feed, known: &BTreeSet<Arc<str>>, workloads: &mut BTreeSet<Arc<str>>) {
        let list: BTreeMap<Arc<str>, Workload> = known
            .iter()
            .filter_map(|p| Some((p.clone(), self.classify(feed, p)?)))
            .collect();
        *workloads = list.keys().cloned().collect();
        feed.replace(list.into_values().collect());
    }

    fn classify(&self, feed: &Feed, path: &str) -> Option<Workload> {
        match self.rules.classify(path) {
            Ok(w) => w,
            Err(f) => {
                warn!(cgroup = %shown(path), reason = %f, "cgroup refused: it gets no identity of its own");
                feed.failure(f);
                None
            }
        }
    }
}

impl Source for CgroupRulesSource {
    fn name(&self) -> &'static str {
        "cgroup"
    }

    async fn run(self, feed: Feed) {
        // Blocking channel reads: a thread of its own, not a runtime worker.
        let _ = tokio::task::spawn_blocking(move || self.follow(feed)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prism_bus::LatencyClass;

    #[test]
    fn first_matching_rule_wins_and_units_get_their_own() {
        let rules = Rules::parse(
            r#"
            [[rule]]
            match = "system.slice/postgresql*.service"
            labels = { app = "postgres" }
            class = "critical"
            weight = 96

            [[rule]]
            match = "system.slice/*.service"
            class = "batch"
            "#,
        )
        .unwrap();
        let pg = rules
            .classify("system.slice/postgresql@15.service")
            .unwrap()
            .unwrap();
        assert_eq!(
            pg.canonical.as_str(),
            "io.prism/cgroup=system.slice/postgresql*.service;app=postgres;"
        );
        assert_eq!(pg.policy.class, LatencyClass::Critical);
        assert_eq!(pg.policy.weight.raw(), 96);
        let cron = rules
            .classify("system.slice/cron.service")
            .unwrap()
            .unwrap();
        assert_eq!(cron.policy.class, LatencyClass::Batch);
        // `*` does not cross `/`: a container below a service is not a match,
        // and not a unit: it is covered by its service's entry instead.
        assert!(
            rules
                .classify("system.slice/cron.service/sub")
                .unwrap()
                .is_none()
        );
        let scope = rules
            .classify("user.slice/session-2.scope")
            .unwrap()
            .unwrap();
        assert_eq!(
            scope.canonical.as_str(),
            "io.prism/cgroup=user.slice/session-2.scope;"
        );
        assert!(rules.classify("not-a-unit").unwrap().is_none());
        assert!(rules.classify(".slice").unwrap().is_none());
    }

    #[test]
    fn units_can_be_turned_off() {
        let rules = Rules::parse("units = false\n[[rule]]\nmatch = \"a/**\"\n").unwrap();
        assert!(rules.classify("system.slice/x.service").unwrap().is_none());
        assert!(rules.classify("a/b/c").unwrap().is_some());
    }

    #[test]
    fn bad_rules_say_which_and_why() {
        for (text, why) in [
            ("[[rule]]\nmatch = \"a[\"\n", "not a glob"),
            (
                "[[rule]]\nmatch = \"a;b\"\n",
                "cannot be part of an identity",
            ),
            (
                "[[rule]]\nmatch = \"a\"\nclass = \"urgent\"\n",
                "critical, normal or batch",
            ),
            ("[[rule]]\nmatch = \"a\"\nweight = 0\n", "not in 1..=127"),
            (
                "[[rule]]\nmatch = \"a\"\nlabels = { \"bad key\" = \"v\" }\n",
                "cannot be part",
            ),
            (
                "[[rule]]\nmatch = \"a\"\ncolour = \"red\"\n",
                "unknown field",
            ),
            ("units = \"yes\"\n", "invalid type"),
        ] {
            let e = format!("{:#}", Rules::parse(text).err().expect(text));
            assert!(e.contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn the_shipped_example_parses() {
        let rules =
            Rules::parse(include_str!("../../../services/cgroup-rules.example.toml")).unwrap();
        let pg = rules
            .classify("system.slice/postgresql.service")
            .unwrap()
            .unwrap();
        assert_eq!(pg.policy.class, LatencyClass::Critical);
        let shell = rules
            .classify("user.slice/user-1000.slice/session-3.scope")
            .unwrap()
            .unwrap();
        assert_eq!(shell.policy.class, LatencyClass::Normal);
    }

    #[test]
    fn a_unit_named_to_forge_a_canonical_is_refused() {
        let rules = Rules::builtin();
        assert_eq!(
            rules
                .classify("user.slice/x;io.prism/namespace=kube-system.service")
                .err(),
            Some(Failure::BadCgroupName)
        );
    }
}
