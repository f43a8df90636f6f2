//! Property tests of the plan: random sequences of source events (applies,
//! deletes, full listings, empty ones from a flapping source), cgroups that
//! appear and vanish, full maps and feeder restarts, against a model of the
//! node. After every step:
//! - no id is on two canonicals;
//! - a live cgroup whose entry keeps its canonical keeps its id (but for
//!   one case the plan cannot tell: after a restart, a canonical's old id is
//!   known from the cgroups of its named workloads; if, when every source
//!   has listed, none of its named workloads has a cgroup showing it (they
//!   are new, or the ones with cgroups are not named), it gets a new id and
//!   its old cgroups follow when named again: the bus keeps only a 64-bit
//!   FNV hash of the canonical, and adopting an id by that hash would let a
//!   tenant who forges a collision take another's id);
//! - a live cgroup loses its entry only with the evidence: no source names a
//!   workload over it, and the grace has passed since the last one stopped
//!   (or, for an entry of a previous run, since every source listed).
//!
//! And once the sources and the tree are quiet past the grace, the bus is
//! exactly what the model says.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prism_bus::{Entry, Facets, LatencyClass};
use proptest::prelude::*;

use super::inbox::{Change, Input, SourceId};
use super::plan::{Config, Plan, Write};
use crate::allocator::grace::ReleaseGrace;
use crate::allocator::local::LocalAllocator;
use crate::metrics::Metrics;
use crate::pod::cgroup_name::{Driver, KubepodsLayout, PodUid};
use crate::sources::cgroup_tree::TreeEvent;
use crate::workload::canonical::Canonical;
use crate::workload::declared::Policy;
use crate::workload::labels::Labels;
use crate::workload::{Workload, WorkloadKey};

const GRACE: Duration = Duration::from_secs(60);
const PODS: usize = 4;
/// Units 0-3 are `system.slice` services; unit 4 is a rule matching pod 0's
/// container (a pod's identity must win there).
const UNITS: usize = 5;
const PODS_SOURCE: usize = 0;
const UNITS_SOURCE: usize = 1;

fn pod_dir(i: usize) -> String {
    format!("kubepods.slice/kubepods-pod{i:08}_0000_0000_0000_000000000000.slice")
}

/// Paths the tree can hold: 4 pod cgroups, a container in each, 4 units.
fn path(k: usize) -> String {
    match k {
        0..4 => pod_dir(k),
        4..8 => format!("{}/cri-containerd-c.scope", pod_dir(k - 4)),
        _ => format!("system.slice/u{}.service", k - 8),
    }
}
const PATHS: usize = 12;

fn unit_path(j: usize) -> String {
    if j == 4 { path(4) } else { path(8 + j) }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum W {
    Pod(usize),
    Unit(usize),
}

impl W {
    fn source(self) -> usize {
        match self {
            W::Pod(_) => PODS_SOURCE,
            W::Unit(_) => UNITS_SOURCE,
        }
    }

    fn key(self) -> WorkloadKey {
        match self {
            W::Pod(i) => WorkloadKey::Pod(
                PodUid::parse(&format!("{i:08}-0000-0000-0000-000000000000")).unwrap(),
            ),
            W::Unit(j) => WorkloadKey::Cgroup(Arc::from(unit_path(j))),
        }
    }

    /// Pods 0 and 2 share a canonical (replicas), so do units 0 and 3 (one
    /// glob rule).
    fn canonical(self) -> Canonical {
        match self {
            W::Pod(i) => {
                let app = ["a", "b", "a", "c"][i];
                let labels: Labels = [("app".to_string(), app.to_string())].into();
                Canonical::for_pod("ns", "default", &labels).unwrap()
            }
            W::Unit(j) => {
                let selector = match j {
                    0 | 3 => "system.slice/*.service".to_string(),
                    _ => unit_path(j),
                };
                Canonical::for_cgroup(&selector, &Labels::new()).unwrap()
            }
        }
    }

    fn workload(self, class: LatencyClass) -> Workload {
        let name: Arc<str> = Arc::from(format!("{self:?}"));
        Workload {
            key: self.key(),
            name: name.clone(),
            identity_name: name,
            canonical: self.canonical(),
            policy: Policy {
                class,
                ..Policy::default()
            },
        }
    }

    /// Its cgroup's path.
    fn anchor(self) -> String {
        match self {
            W::Pod(i) => pod_dir(i),
            W::Unit(j) => unit_path(j),
        }
    }

    /// Does this workload's cgroup hold `p` (itself or an ancestor)?
    fn covers(self, p: &str) -> bool {
        let anchor = self.anchor();
        p == anchor || p.starts_with(&format!("{anchor}/"))
    }
}

fn all_workloads() -> impl Iterator<Item = W> {
    (0..PODS).map(W::Pod).chain((0..UNITS).map(W::Unit))
}

fn class_of(c: u8) -> LatencyClass {
    [
        LatencyClass::Critical,
        LatencyClass::Normal,
        LatencyClass::Batch,
    ][c as usize % 3]
}

#[derive(Debug, Clone)]
enum Op {
    Mkdir(usize),
    Rmdir(usize),
    Snapshot,
    Apply(W, u8),
    Delete(W),
    /// A full listing of the workloads in the mask (0: an empty one).
    Replace(usize, u8),
    Advance(u64),
    Restart,
    /// The next flush finds the map full: every put fails.
    MapFull,
}

fn workload_strategy() -> impl Strategy<Value = W> {
    prop_oneof![(0..PODS).prop_map(W::Pod), (0..UNITS).prop_map(W::Unit),]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..PATHS).prop_map(Op::Mkdir),
        2 => (0..PATHS).prop_map(Op::Rmdir),
        1 => Just(Op::Snapshot),
        4 => (workload_strategy(), any::<u8>()).prop_map(|(w, c)| Op::Apply(w, c)),
        2 => workload_strategy().prop_map(Op::Delete),
        2 => (0..2usize, any::<u8>()).prop_map(|(s, m)| Op::Replace(s, m)),
        3 => (0..45u64).prop_map(Op::Advance),
        1 => Just(Op::Restart),
        1 => Just(Op::MapFull),
    ]
}

/// The node as the sources and the tree say it is, the bus as written, and
/// the plan under test.
struct World {
    now: Instant,
    next_cgroup: u64,
    /// Live cgroups: path -> id (the parents always exist).
    tree: BTreeMap<String, u64>,
    /// What each source names now, and with which class.
    named: HashMap<W, LatencyClass>,
    /// When each workload stopped being named while its cgroup existed.
    unnamed_since: HashMap<W, Instant>,
    /// Workloads that stopped being named while their cgroup did not exist:
    /// they left at once (no grace keeps a workload without a cgroup).
    left_at_once: HashSet<W>,
    /// When every source last listed after a (re)start.
    synced_at: Instant,
    /// Canonicals (hashes) on the bus at the last restart with no named
    /// workload over a cgroup showing them: they may be renumbered (see the
    /// module's comment).
    orphaned_canonicals: HashSet<u64>,
    bus: HashMap<u64, Entry>,
    map_full: bool,
    plan: Plan,
}

fn new_plan(bus: &HashMap<u64, Entry>, now: Instant) -> Plan {
    Plan::new(
        bus.clone(),
        vec![],
        Box::new(ReleaseGrace::new(
            LocalAllocator::default(),
            Duration::from_secs(3600),
        )),
        Config {
            layout: KubepodsLayout::new(Driver::Systemd, None),
            facets: Facets::NONE,
            sources: vec!["pods", "units"],
            delete_grace: GRACE,
        },
        Arc::new(Metrics::new()),
        now,
    )
}

impl World {
    fn new() -> World {
        let now = Instant::now();
        let mut w = World {
            now,
            next_cgroup: 100,
            tree: BTreeMap::new(),
            named: HashMap::new(),
            unnamed_since: HashMap::new(),
            left_at_once: HashSet::new(),
            synced_at: now,
            orphaned_canonicals: HashSet::new(),
            bus: HashMap::new(),
            map_full: false,
            plan: new_plan(&HashMap::new(), now),
        };
        for p in ["kubepods.slice", "system.slice"] {
            w.tree.insert(p.to_string(), w.next_cgroup);
            w.next_cgroup += 1;
        }
        w.start();
        w
    }

    /// What a (re)started feeder gets first: the tree, each source's list.
    fn start(&mut self) {
        self.input(Input::Tree(TreeEvent::Snapshot(self.snapshot())));
        for s in [PODS_SOURCE, UNITS_SOURCE] {
            self.input(Input::Source {
                source: SourceId(s),
                change: Change::Replace(self.listing(s)),
                at: self.now,
            });
        }
        self.synced_at = self.now;
    }

    fn snapshot(&self) -> Vec<(Arc<str>, u64)> {
        self.tree
            .iter()
            .map(|(p, id)| (Arc::from(p.as_str()), *id))
            .collect()
    }

    fn listing(&self, source: usize) -> Vec<Workload> {
        let mut named: Vec<_> = self
            .named
            .iter()
            .filter(|(w, _)| w.source() == source)
            .collect();
        named.sort();
        named.into_iter().map(|(w, c)| w.workload(*c)).collect()
    }

    fn input(&mut self, input: Input) {
        self.plan.input(input, self.now);
    }

    fn name(&mut self, w: W, class: LatencyClass) {
        self.named.insert(w, class);
        self.unnamed_since.remove(&w);
        self.left_at_once.remove(&w);
    }

    fn unname(&mut self, w: W) {
        if self.named.remove(&w).is_some() {
            if self.tree.contains_key(&w.anchor()) {
                self.unnamed_since.insert(w, self.now);
            } else {
                self.left_at_once.insert(w);
            }
        }
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Mkdir(k) => {
                let mut made = vec![];
                if (4..8).contains(&k) && !self.tree.contains_key(&path(k - 4)) {
                    made.push(path(k - 4));
                }
                if !self.tree.contains_key(&path(k)) {
                    made.push(path(k));
                }
                let made: Vec<(Arc<str>, u64)> = made
                    .into_iter()
                    .map(|p| {
                        self.next_cgroup += 1;
                        self.tree.insert(p.clone(), self.next_cgroup);
                        (Arc::from(p), self.next_cgroup)
                    })
                    .collect();
                if !made.is_empty() {
                    self.input(Input::Tree(TreeEvent::Created(made)));
                }
            }
            Op::Rmdir(k) => {
                let p = path(k);
                if self.tree.contains_key(&p) {
                    self.tree
                        .retain(|q, _| q != &p && !q.starts_with(&format!("{p}/")));
                    self.input(Input::Tree(TreeEvent::Removed(Arc::from(p))));
                }
            }
            Op::Snapshot => self.input(Input::Tree(TreeEvent::Snapshot(self.snapshot()))),
            Op::Apply(w, c) => {
                self.name(w, class_of(c));
                self.input(Input::Source {
                    source: SourceId(w.source()),
                    change: Change::Apply(w.workload(class_of(c))),
                    at: self.now,
                });
            }
            Op::Delete(w) => {
                self.unname(w);
                self.input(Input::Source {
                    source: SourceId(w.source()),
                    change: Change::Delete(w.key()),
                    at: self.now,
                });
            }
            Op::Replace(source, mask) => {
                let of_source: Vec<W> = all_workloads().filter(|w| w.source() == source).collect();
                for (bit, w) in of_source.into_iter().enumerate() {
                    if mask & (1 << bit) != 0 {
                        let class = self.named.get(&w).copied().unwrap_or(LatencyClass::Normal);
                        self.name(w, class);
                    } else {
                        self.unname(w);
                    }
                }
                self.input(Input::Source {
                    source: SourceId(source),
                    change: Change::Replace(self.listing(source)),
                    at: self.now,
                });
            }
            Op::Advance(s) => self.now += Duration::from_secs(s),
            Op::Restart => {
                let shown = |w: &W| {
                    let hash = w.canonical().label_hash();
                    self.tree.iter().any(|(p, id)| {
                        w.covers(p) && self.bus.get(id).is_some_and(|e| e.label_hash == hash)
                    })
                };
                let adoptable: HashSet<u64> = self
                    .named
                    .keys()
                    .filter(|w| shown(w))
                    .map(|w| w.canonical().label_hash())
                    .collect();
                // Once renumbered, its cgroups of either id may follow later.
                let orphaned: Vec<u64> = self
                    .bus
                    .values()
                    .map(|e| e.label_hash)
                    .filter(|h| !adoptable.contains(h))
                    .collect();
                self.orphaned_canonicals.extend(orphaned);
                self.plan = new_plan(&self.bus, self.now);
                self.start();
            }
            Op::MapFull => self.map_full = true,
        }
        self.plan.tick(self.now);
        self.flush();
    }

    fn flush(&mut self) {
        for write in self.plan.writes(0) {
            match write {
                Write::Put { .. } if self.map_full => self.plan.failed(write),
                Write::Put { cgroup, entry, .. } => {
                    self.bus.insert(cgroup, entry);
                }
                Write::Delete { cgroup } => {
                    self.bus.remove(&cgroup);
                }
            }
        }
        self.map_full = false;
    }

    fn live(&self, cgroup: u64) -> Option<&str> {
        self.tree
            .iter()
            .find(|(_, id)| **id == cgroup)
            .map(|(p, _)| p.as_str())
    }

    /// May the plan have deleted the entry of live cgroup `p` by now?
    fn deletion_allowed(&self, p: &str) -> Result<(), String> {
        for w in all_workloads().filter(|w| w.covers(p)) {
            if self.named.contains_key(&w) {
                return Err(format!("{w:?} is named"));
            }
            if self.left_at_once.contains(&w) {
                continue;
            }
            // A workload this run never knew (or knew before a restart):
            // its entry is an orphan, kept from when every source listed.
            let since = self
                .unnamed_since
                .get(&w)
                .copied()
                .unwrap_or(self.synced_at)
                .max(self.synced_at);
            if self.now < since + GRACE {
                return Err(format!(
                    "{w:?} stopped being named {:?} ago, within the grace",
                    self.now - since
                ));
            }
        }
        Ok(())
    }

    /// What the bus must say once everything is quiet past the grace:
    /// cgroup -> (canonical's hash, class).
    fn desired(&self) -> BTreeMap<u64, (u64, LatencyClass)> {
        self.tree
            .iter()
            .filter_map(|(p, id)| {
                let pod = (0..PODS)
                    .map(W::Pod)
                    .find(|w| w.covers(p) && self.named.contains_key(w));
                let unit = (0..UNITS)
                    .map(W::Unit)
                    .find(|w| w.covers(p) && self.named.contains_key(w));
                let owner = pod.or(unit)?;
                Some((*id, (owner.canonical().label_hash(), self.named[&owner])))
            })
            .collect()
    }
}

fn check_step(
    before: &HashMap<u64, Entry>,
    world: &World,
    step: usize,
) -> Result<(), TestCaseError> {
    // No id on two canonicals.
    let mut canonical_of: HashMap<u32, u64> = HashMap::new();
    for e in world.bus.values() {
        let hash = *canonical_of.entry(e.identity.get()).or_insert(e.label_hash);
        prop_assert_eq!(
            hash,
            e.label_hash,
            "step {}: id {} on two canonicals",
            step,
            e.identity.get()
        );
    }
    for (cgroup, old) in before {
        let Some(p) = world.live(*cgroup) else {
            continue;
        };
        match world.bus.get(cgroup) {
            Some(new)
                if new.label_hash == old.label_hash
                    && !world.orphaned_canonicals.contains(&new.label_hash) =>
            {
                prop_assert_eq!(
                    new.identity,
                    old.identity,
                    "step {}: {} renumbered with the same canonical",
                    step,
                    p
                );
            }
            Some(_) => {}
            None => {
                if let Err(why) = world.deletion_allowed(p) {
                    return Err(TestCaseError::fail(format!(
                        "step {step}: the entry of live {p} deleted without evidence: {why}"
                    )));
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_plan_keeps_its_word_under_any_sequence(ops in prop::collection::vec(op_strategy(), 1..80)) {
        let mut world = World::new();
        for (step, op) in ops.into_iter().enumerate() {
            let before = world.bus.clone();
            world.step(op);
            check_step(&before, &world, step)?;
        }
        // Quiet: the tree and every source say it all again, the grace passes.
        world.step(Op::Snapshot);
        world.step(Op::Replace(PODS_SOURCE, pods_mask(&world)));
        world.step(Op::Replace(UNITS_SOURCE, units_mask(&world)));
        world.step(Op::Advance(2 * GRACE.as_secs()));
        world.step(Op::Advance(3));
        let have: BTreeMap<u64, (u64, LatencyClass)> = world
            .bus
            .iter()
            .map(|(c, e)| (*c, (e.label_hash, e.flags.class)))
            .collect();
        prop_assert_eq!(have, world.desired(), "converged to the model");
        let ids: BTreeSet<u32> = world.bus.values().map(|e| e.identity.get()).collect();
        let canonicals: BTreeSet<u64> = world.bus.values().map(|e| e.label_hash).collect();
        prop_assert_eq!(ids.len(), canonicals.len(), "one id per canonical");
    }
}

fn mask_of(world: &World, source: usize) -> u8 {
    all_workloads()
        .filter(|w| w.source() == source)
        .enumerate()
        .filter(|(_, w)| world.named.contains_key(w))
        .fold(0, |m, (bit, _)| m | (1 << bit))
}

fn pods_mask(world: &World) -> u8 {
    mask_of(world, PODS_SOURCE)
}

fn units_mask(world: &World) -> u8 {
    mask_of(world, UNITS_SOURCE)
}
