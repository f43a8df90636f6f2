//! The reconciler's decisions, with no I/O: what the sources say
//! (workloads), what the cgroup tree holds and what the bus holds go in;
//! the bus writes that make the bus say, for every cgroup, the entry of the
//! workload whose cgroup is its nearest ancestor-or-self come out ([`Write`]).
//! A pod's cgroup and each of its containers' carry the pod's entry, so a
//! consumer needs one lookup.
//!
//! What it deletes can only be what it knows is gone: a cgroup the tree
//! lost, or, once every source has listed its workloads, a cgroup no
//! workload claims. Before that, nothing on the bus is deleted except
//! cgroups that no longer exist. A workload its source stops naming (a
//! delete, or a listing without it) while its cgroup still exists leaves
//! only when the cgroup goes or `delete_grace` has passed without its
//! source naming it again: an empty listing from a restarting kubelet
//! deletes nothing and renumbers nothing.
//!
//! Time comes in with each call (`now`), so tests drive it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prism_bus::{Entry, Facets, Flags, Identity};
use tracing::{debug, info, warn};

use super::inbox::{Change, Input, SourceId};
use crate::allocator::{AllocError, Allocator};
use crate::failure::Failure;
use crate::metrics::Metrics;
use crate::pod::cgroup_name::{KubepodsLayout, PodUid};
use crate::sources::cgroup_tree::TreeEvent;
use crate::workload::canonical::Canonical;
use crate::workload::{Workload, WorkloadKey};

/// How often failed allocations and writes are retried.
const RETRY_EVERY: Duration = Duration::from_secs(2);
/// Entries of a workload's subtree looked at for its old id after a restart.
const MAX_HINT_PROBES: usize = 64;

pub struct Config {
    pub layout: KubepodsLayout,
    pub facets: Facets,
    /// Source names, by [`SourceId`].
    pub sources: Vec<&'static str>,
    /// How long a workload its source stopped naming keeps its entries
    /// while its cgroup still exists.
    pub delete_grace: Duration,
}

struct Tracked {
    source: SourceId,
    workload: Workload,
    /// `None` while its allocation fails (it is retried).
    identity: Option<Identity>,
}

/// One write the plan wants on the bus.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    Put {
        cgroup: u64,
        path: Arc<str>,
        entry: Entry,
        /// What the bus held for it before (put back in the plan if the
        /// write fails).
        replaces: Option<Entry>,
    },
    Delete {
        cgroup: u64,
    },
}

/// What the plan holds, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub identities: usize,
    pub entries: usize,
    pub cgroups: usize,
    pub leaving: usize,
}

pub struct Plan {
    allocator: Box<dyn Allocator>,
    config: Config,
    metrics: Arc<Metrics>,

    /// Cgroup path (below the root) -> id.
    tree: BTreeMap<Arc<str>, u64>,
    tree_synced: bool,
    /// Pod uid -> its cgroup's path, for pods whose cgroup exists.
    pod_dirs: HashMap<PodUid, Arc<str>>,
    workloads: HashMap<WorkloadKey, Tracked>,
    cgroup_workloads: usize,
    source_synced: Vec<bool>,
    /// Every source and the tree have been listed: absence means gone.
    synced: bool,

    /// What the bus holds: cgroup id -> entry.
    written: HashMap<u64, Entry>,
    dirty: HashSet<Arc<str>>,
    gone: Vec<u64>,
    /// Workloads their source stopped naming while their cgroup exists,
    /// and when their grace ends.
    leaving: HashMap<WorkloadKey, Instant>,
    /// Cgroups that exist and hold an entry of a previous run that no
    /// source named once all had listed, and when their grace ends: a
    /// source that restarts with the feeder and lists nothing deletes
    /// nothing at once either.
    orphans: HashMap<Arc<str>, Instant>,
    /// The orphans' ids are reserved (no other canonical may take an id a
    /// cgroup still shows) until the last orphan is gone.
    orphan_ids_reserved: bool,
    /// Workloads whose allocation failed, to try again.
    retry: HashMap<WorkloadKey, (SourceId, Workload)>,
    /// Of those, the ones the store has been asked for and not yet answered:
    /// the first readiness waits for them.
    awaiting_answer: HashSet<WorkloadKey>,
    /// Cgroups whose write failed (a full map), to try again.
    blocked: HashSet<Arc<str>>,
    last_retry: Instant,
    /// Source inputs that came before the tree: nothing resolves without it.
    early: Vec<Input>,
}

impl Plan {
    /// Take over a bus that holds `on_bus` (what a previous run wrote) and
    /// `malformed` entries (deleted at the first write). Once the tree is
    /// read, the ids of entries whose cgroups still exist are reserved for
    /// their workloads to re-adopt.
    pub fn new(
        on_bus: HashMap<u64, Entry>,
        malformed: Vec<u64>,
        allocator: Box<dyn Allocator>,
        config: Config,
        metrics: Arc<Metrics>,
        now: Instant,
    ) -> Plan {
        let sources = config.sources.len();
        Plan {
            allocator,
            config,
            metrics,
            tree: BTreeMap::new(),
            tree_synced: false,
            pod_dirs: HashMap::new(),
            workloads: HashMap::new(),
            cgroup_workloads: 0,
            source_synced: vec![false; sources],
            synced: false,
            written: on_bus,
            dirty: HashSet::new(),
            gone: malformed,
            leaving: HashMap::new(),
            orphans: HashMap::new(),
            orphan_ids_reserved: false,
            retry: HashMap::new(),
            awaiting_answer: HashSet::new(),
            blocked: HashSet::new(),
            last_retry: now,
            early: vec![],
        }
    }

    /// Periodic work, after each batch of inputs: answers from the identity
    /// store, ids it took back, workloads whose grace ended, retries.
    pub fn tick(&mut self, now: Instant) {
        self.retry_answered();
        self.reacquire_lost();
        self.collect_left(now);
        self.collect_orphans(now);
        if self.orphan_ids_reserved && self.orphans.is_empty() {
            self.allocator.end_adoption();
            self.orphan_ids_reserved = false;
        }
        if now.duration_since(self.last_retry) >= RETRY_EVERY {
            self.retry_failed(now);
        }
    }

    pub fn input(&mut self, input: Input, now: Instant) {
        match input {
            Input::Source { .. } if !self.tree_synced => self.early.push(input),
            Input::Source { source, change, .. } => match change {
                Change::Replace(list) => self.replace(source, list, now),
                Change::Apply(w) => self.apply(source, w),
                Change::Delete(key) => self.leave(source, &key, now),
            },
            Input::Tree(event) => self.tree_event(event, now),
            // Answers are taken in `tick`.
            Input::Answered | Input::Shutdown => {}
        }
    }

    fn replace(&mut self, source: SourceId, list: Vec<Workload>, now: Instant) {
        let listed: HashSet<&WorkloadKey> = list.iter().map(|w| &w.key).collect();
        let stale: Vec<WorkloadKey> = self
            .workloads
            .iter()
            .filter(|(k, t)| t.source == source && !listed.contains(k))
            .map(|(k, _)| k.clone())
            .collect();
        self.retry
            .retain(|k, (s, _)| *s != source || listed.contains(k));
        let retry = &self.retry;
        self.awaiting_answer.retain(|k| retry.contains_key(k));
        for key in stale {
            self.leave(source, &key, now);
        }
        // Workloads whose cgroups hold their old id on the bus first: a
        // replica listed before them (its cgroup new, so no hint) would
        // otherwise mint a new id for the canonical they all share, and
        // theirs would follow it: renumbered by a restart.
        // (Only while adopting: afterwards every listed canonical has its id.)
        let list = if !self.synced && !self.written.is_empty() {
            let (hinted, rest): (Vec<Workload>, Vec<Workload>) = list
                .into_iter()
                .partition(|w| self.old_identity(&w.key, &w.canonical).is_some());
            hinted.into_iter().chain(rest).collect()
        } else {
            list
        };
        for w in list {
            self.apply(source, w);
        }
        if !self.source_synced[source.0] {
            self.source_synced[source.0] = true;
            info!(
                source = self.config.sources[source.0],
                "source listed its workloads"
            );
            self.check_synced(now);
        }
    }

    fn apply(&mut self, source: SourceId, w: Workload) {
        self.leaving.remove(&w.key);
        if let Some(t) = self.workloads.get_mut(&w.key)
            && t.identity.is_some()
            && t.workload.canonical == w.canonical
        {
            // Same identity; a new class or weight must reach the bus.
            let policy_changed = t.workload.policy != w.policy;
            t.workload = w;
            t.source = source;
            if policy_changed {
                let key = t.workload.key.clone();
                self.mark_subtree(&key);
            }
            return;
        }
        let hint = self.old_identity(&w.key, &w.canonical);
        match self.allocator.acquire(&w.canonical, hint) {
            Ok((identity, how)) => {
                self.metrics.allocated(how);
                let key = w.key.clone();
                let tracked = Tracked {
                    source,
                    workload: w,
                    identity: Some(identity),
                };
                // Acquire before release: a failed allocation above never
                // costs the workload its old id (the prototype's defect 5).
                match self.workloads.insert(key.clone(), tracked) {
                    Some(old) if old.identity.is_some() => {
                        self.allocator.release(&old.workload.canonical)
                    }
                    Some(_) => {}
                    None => {
                        if matches!(key, WorkloadKey::Cgroup(_)) {
                            self.cgroup_workloads += 1;
                        }
                    }
                }
                self.retry.remove(&key);
                self.awaiting_answer.remove(&key);
                self.mark_subtree(&key);
            }
            Err(e) => {
                if e == AllocError::Pending {
                    self.awaiting_answer.insert(w.key.clone());
                } else {
                    self.awaiting_answer.remove(&w.key);
                    warn!(workload = %w.name, error = %e, "no identity for this workload yet; retrying");
                    self.metrics.failure(Failure::Allocation);
                }
                let key = w.key.clone();
                if !self.workloads.contains_key(&key) {
                    // Known but without an id: its cgroups get no entry (not
                    // their parent's) until the retry succeeds.
                    if matches!(key, WorkloadKey::Cgroup(_)) {
                        self.cgroup_workloads += 1;
                    }
                    self.workloads.insert(
                        key.clone(),
                        Tracked {
                            source,
                            workload: w.clone(),
                            identity: None,
                        },
                    );
                    self.mark_subtree(&key);
                }
                self.retry.insert(key, (source, w));
            }
        }
    }

    /// `source` no longer names `key`: it goes now if its cgroup is gone
    /// (or there is no grace), else when the cgroup goes or the grace ends.
    fn leave(&mut self, source: SourceId, key: &WorkloadKey, now: Instant) {
        self.retry.remove(key);
        self.awaiting_answer.remove(key);
        if self.workloads.get(key).is_none_or(|t| t.source != source) {
            return;
        }
        if self.config.delete_grace.is_zero() || self.anchor_path(key).is_none() {
            self.leaving.remove(key);
            self.delete(source, key);
        } else if !self.leaving.contains_key(key) {
            debug!(workload = ?key, "no longer named while its cgroup exists: kept for the grace");
            self.leaving
                .insert(key.clone(), now + self.config.delete_grace);
        }
    }

    /// Delete the leaving workloads whose cgroup went or whose grace ended.
    fn collect_left(&mut self, now: Instant) {
        if self.leaving.is_empty() {
            return;
        }
        let left: Vec<WorkloadKey> = self
            .leaving
            .iter()
            .filter(|(k, until)| now >= **until || self.anchor_path(k).is_none())
            .map(|(k, _)| k.clone())
            .collect();
        for key in left {
            self.leaving.remove(&key);
            if let Some(source) = self.workloads.get(&key).map(|t| t.source) {
                self.delete(source, &key);
            }
        }
    }

    fn delete(&mut self, source: SourceId, key: &WorkloadKey) {
        self.retry.remove(key);
        self.awaiting_answer.remove(key);
        if self.workloads.get(key).is_none_or(|t| t.source != source) {
            return;
        }
        self.mark_subtree(key);
        let t = self.workloads.remove(key).expect("checked above");
        if matches!(key, WorkloadKey::Cgroup(_)) {
            self.cgroup_workloads -= 1;
        }
        if t.identity.is_some() {
            self.allocator.release(&t.workload.canonical);
        }
    }

    fn tree_event(&mut self, event: TreeEvent, now: Instant) {
        match event {
            TreeEvent::Snapshot(cgroups) => {
                self.tree = cgroups.into_iter().collect();
                let tree = &self.tree;
                self.orphans.retain(|p, _| tree.contains_key(p));
                let live: HashSet<u64> = self.tree.values().copied().collect();
                self.gone
                    .extend(self.written.keys().filter(|id| !live.contains(id)));
                self.pod_dirs = self
                    .tree
                    .keys()
                    .filter_map(|p| Some((self.config.layout.pod_of(p)?, p.clone())))
                    .collect();
                self.dirty = self.tree.keys().cloned().collect();
                if !self.tree_synced {
                    self.tree_synced = true;
                    let held: Vec<Identity> = self
                        .written
                        .iter()
                        .filter(|(id, _)| live.contains(id))
                        .map(|(_, e)| e.identity)
                        .collect();
                    self.allocator.reserve(&held);
                    info!(
                        cgroups = self.tree.len(),
                        entries = held.len(),
                        "cgroup tree read; the bus's identities are held for their workloads"
                    );
                    for input in std::mem::take(&mut self.early) {
                        self.input(input, now);
                    }
                    self.check_synced(now);
                }
            }
            TreeEvent::Created(cgroups) => {
                for (path, id) in cgroups {
                    self.created(path, id);
                }
            }
            TreeEvent::Removed(path) => {
                let below: Vec<Arc<str>> = subtree(&self.tree, &path).cloned().collect();
                for p in std::iter::once(path).chain(below) {
                    if let Some(id) = self.tree.remove(&p) {
                        self.gone.push(id);
                    }
                    if let Some(uid) = self.config.layout.pod_of(&p) {
                        self.pod_dirs.remove(&uid);
                    }
                    self.dirty.remove(&p);
                    self.orphans.remove(&p);
                    self.blocked.remove(&p);
                }
            }
        }
    }

    fn created(&mut self, path: Arc<str>, id: u64) {
        match self.tree.insert(path.clone(), id) {
            Some(old) if old == id => return,
            Some(old) => self.gone.push(old),
            None => {}
        }
        if let Some(uid) = self.config.layout.pod_of(&path) {
            self.pod_dirs.insert(uid, path.clone());
        }
        self.dirty.insert(path);
    }

    /// Every source and the tree have been listed: entries of cgroups that
    /// are gone go, those of live cgroups no workload claims go after the
    /// grace (their ids stay reserved until then: a workload that comes
    /// back adopts its own), and the other reservations end.
    fn check_synced(&mut self, now: Instant) {
        if self.synced || !self.tree_synced || self.source_synced.iter().any(|s| !s) {
            return;
        }
        self.synced = true;
        self.allocator.end_adoption();
        self.dirty.extend(self.tree.keys().cloned());
        let live: HashSet<u64> = self.tree.values().copied().collect();
        self.gone
            .extend(self.written.keys().filter(|id| !live.contains(id)));
        if !self.config.delete_grace.is_zero() {
            let until = now + self.config.delete_grace;
            let orphans: Vec<Arc<str>> = self
                .tree
                .iter()
                .filter(|(p, id)| self.written.contains_key(id) && self.owner(p).is_none())
                .map(|(p, _)| p.clone())
                .collect();
            let ids: Vec<Identity> = orphans
                .iter()
                .filter_map(|p| Some(self.written.get(self.tree.get(p)?)?.identity))
                .collect();
            self.allocator.reserve(&ids);
            self.orphan_ids_reserved = !ids.is_empty();
            self.orphans = orphans.into_iter().map(|p| (p, until)).collect();
        }
        info!(
            workloads = self.workloads.len(),
            identities = self.allocator.live(),
            unclaimed = self.orphans.len(),
            "every source listed; entries no workload claims are collected (after the grace where the cgroup exists)"
        );
    }

    /// Unclaimed entries whose grace ended go.
    fn collect_orphans(&mut self, now: Instant) {
        if self.orphans.is_empty() {
            return;
        }
        let ended: Vec<Arc<str>> = self
            .orphans
            .iter()
            .filter(|(_, until)| now >= **until)
            .map(|(p, _)| p.clone())
            .collect();
        for path in ended {
            self.orphans.remove(&path);
            self.dirty.insert(path);
        }
    }

    /// Workloads whose id the store took back acquire a new one.
    fn reacquire_lost(&mut self) {
        let lost = self.allocator.housekeeping();
        if lost.is_empty() {
            return;
        }
        let lost: HashSet<Canonical> = lost.into_iter().collect();
        let hit: Vec<(SourceId, Workload)> = self
            .workloads
            .values_mut()
            .filter(|t| t.identity.is_some() && lost.contains(&t.workload.canonical))
            .map(|t| {
                t.identity = None;
                (t.source, t.workload.clone())
            })
            .collect();
        for (source, w) in hit {
            self.mark_subtree(&w.key);
            self.apply(source, w);
        }
    }

    /// Workloads waiting for the store's answer on their canonical take it.
    fn retry_answered(&mut self) {
        let answered: HashSet<Canonical> = self.allocator.answered().into_iter().collect();
        if answered.is_empty() {
            return;
        }
        let waiting: Vec<WorkloadKey> = self
            .retry
            .iter()
            .filter(|(_, (_, w))| answered.contains(&w.canonical))
            .map(|(k, _)| k.clone())
            .collect();
        for key in waiting {
            if let Some((source, w)) = self.retry.remove(&key) {
                self.apply(source, w);
            }
        }
    }

    fn retry_failed(&mut self, now: Instant) {
        self.last_retry = now;
        let retry: Vec<_> = self.retry.drain().map(|(_, v)| v).collect();
        for (source, w) in retry {
            self.apply(source, w);
        }
        self.dirty.extend(self.blocked.drain());
    }

    /// Where a workload's cgroup is in the tree, if it exists.
    fn anchor_path(&self, key: &WorkloadKey) -> Option<&Arc<str>> {
        match key {
            WorkloadKey::Pod(uid) => self.pod_dirs.get(uid),
            WorkloadKey::Cgroup(path) => self.tree.get_key_value(&**path).map(|(p, _)| p),
        }
    }

    fn mark_subtree(&mut self, key: &WorkloadKey) {
        let Some(path) = self.anchor_path(key) else {
            return; // its cgroup does not exist (yet)
        };
        let marked: Vec<Arc<str>> = std::iter::once(path.clone())
            .chain(subtree(&self.tree, path).cloned())
            .collect();
        self.dirty.extend(marked);
    }

    /// The id a previous run gave `canonical` in this workload's cgroups.
    fn old_identity(&self, key: &WorkloadKey, canonical: &Canonical) -> Option<Identity> {
        let path = self.anchor_path(key)?;
        let hash = canonical.label_hash();
        std::iter::once(path)
            .chain(subtree(&self.tree, path))
            .take(MAX_HINT_PROBES)
            .filter_map(|p| self.written.get(self.tree.get(p)?))
            .find(|e| e.label_hash == hash)
            .map(|e| e.identity)
    }

    /// The workload of `path`: the pod whose cgroup is `path` or one of its
    /// ancestors, else the cgroup workload nearest above it. A pod's
    /// cgroups are the pod's, whatever unit or rule also matches them (the
    /// `.scope` of each container is a unit too).
    fn owner(&self, path: &str) -> Option<&Tracked> {
        let mut p = path;
        let mut nearest_cgroup = None;
        loop {
            if nearest_cgroup.is_none() && self.cgroup_workloads > 0 {
                nearest_cgroup = self.workloads.get(&WorkloadKey::Cgroup(Arc::from(p)));
            }
            if let Some(uid) = self.config.layout.pod_of(p)
                && let Some(t) = self.workloads.get(&WorkloadKey::Pod(uid))
            {
                return Some(t);
            }
            match p.rfind('/') {
                Some(parent) => p = &p[..parent],
                None => return nearest_cgroup,
            }
        }
    }

    fn desired(&self, path: &str, now_ns: u64) -> Option<Entry> {
        let t = self.owner(path)?;
        Some(Entry {
            identity: t.identity?,
            flags: Flags {
                facets: t.workload.policy.facets.unwrap_or(self.config.facets),
                class: t.workload.policy.class,
                weight: t.workload.policy.weight,
            },
            label_hash: t.workload.canonical.label_hash(),
            updated_ns: now_ns,
        })
    }

    /// The writes that make the bus say what the plan wants, assuming they
    /// succeed (one that fails comes back through [`Self::failed`]).
    /// `now_ns` stamps the entries.
    pub fn writes(&mut self, now_ns: u64) -> Vec<Write> {
        let mut out = vec![];
        for cgroup in std::mem::take(&mut self.gone) {
            if self.written.remove(&cgroup).is_some() {
                out.push(Write::Delete { cgroup });
            }
        }
        for path in std::mem::take(&mut self.dirty) {
            let Some(&cgroup) = self.tree.get(&path) else {
                continue;
            };
            let desired = self.desired(&path, now_ns);
            if desired.is_some() {
                self.orphans.remove(&path); // claimed again
            }
            match (desired, self.written.get(&cgroup)) {
                (Some(want), Some(have)) if same_entry(&want, have) => {}
                (Some(want), _) => {
                    let replaces = self.written.insert(cgroup, want);
                    out.push(Write::Put {
                        cgroup,
                        path,
                        entry: want,
                        replaces,
                    });
                }
                (None, Some(_)) if self.synced && !self.orphans.contains_key(&path) => {
                    self.written.remove(&cgroup);
                    out.push(Write::Delete { cgroup });
                }
                (None, _) => {}
            }
        }
        out
    }

    /// A write of [`Self::writes`] failed. A put (a full map): the bus
    /// still holds what it replaced, and the put is tried again at the next
    /// retry. A delete: nothing to undo (the plan no longer counts it).
    pub fn failed(&mut self, write: Write) {
        if let Write::Put {
            cgroup,
            path,
            replaces,
            ..
        } = write
        {
            match replaces {
                Some(old) => self.written.insert(cgroup, old),
                None => self.written.remove(&cgroup),
            };
            self.blocked.insert(path);
        }
    }

    /// Every source and the tree have been listed (absence means gone).
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Synced, and no id asked at start is still on its way: the bus says
    /// what the node runs.
    pub fn ready(&self) -> bool {
        self.synced && self.awaiting_answer.is_empty()
    }

    /// Identity -> its name, for every workload that has an id.
    /// Each identity's name for people, and a pod identity's namespace.
    pub fn names(&self) -> BTreeMap<u32, (Arc<str>, Option<Arc<str>>)> {
        self.workloads
            .values()
            .filter_map(|t| {
                let name = t.workload.identity_name.clone();
                let namespace = match t.workload.key {
                    WorkloadKey::Pod(_) => name.split_once('/').map(|(ns, _)| Arc::from(ns)),
                    WorkloadKey::Cgroup(_) => None,
                };
                Some((t.identity?.get(), (name, namespace)))
            })
            .collect()
    }

    pub fn counts(&self) -> Counts {
        Counts {
            identities: self.allocator.live(),
            entries: self.written.len(),
            cgroups: self.tree.len(),
            leaving: self.leaving.len() + self.orphans.len(),
        }
    }

    /// The bus as the plan believes it is.
    pub fn written(&self) -> &HashMap<u64, Entry> {
        &self.written
    }
}

/// The paths strictly below `path` (a contiguous range: `/` sorts just
/// before `0`).
fn subtree<'a>(
    tree: &'a BTreeMap<Arc<str>, u64>,
    path: &str,
) -> impl Iterator<Item = &'a Arc<str>> + 'a {
    let lo = format!("{path}/");
    let hi = format!("{path}0");
    tree.range::<str, _>((Bound::Included(lo.as_str()), Bound::Excluded(hi.as_str())))
        .map(|(p, _)| p)
}

fn same_entry(a: &Entry, b: &Entry) -> bool {
    a.identity == b.identity && a.flags == b.flags && a.label_hash == b.label_hash
}
