//! The reconciler: the one owner of the bus. It keeps what the sources say
//! (workloads), what the cgroup tree holds, and what the bus holds, and
//! makes the bus say, for every cgroup, the entry of the workload whose
//! cgroup is its nearest ancestor-or-self: a pod's cgroup and each of its
//! containers' carry the pod's entry, so a consumer needs one lookup.
//!
//! One thread does it all, so what it deletes can only be what it knows is
//! gone: a cgroup the tree lost, or, once every source has listed its
//! workloads, a cgroup no workload claims. Before that, nothing on the bus
//! is deleted except cgroups that no longer exist. A workload its source
//! stops naming (a delete, or a listing without it) while its cgroup still
//! exists leaves only when the cgroup goes or `delete_grace` has passed
//! without its source naming it again: an empty listing from a restarting
//! kubelet deletes nothing and renumbers nothing. Changes are applied in
//! batches (everything queued when the thread wakes), each committed with
//! one generation bump.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use prism_bus::names::{NamedIdentity, NamesFile};
use prism_bus::{BusError, BusWriter, Entry, Facets, Flags, Identity};
use tracing::{debug, error, info, warn};

use crate::allocator::{AllocError, Allocator};
use crate::canonical::Canonical;
use crate::cgroup_tree::TreeEvent;
use crate::failure::Failure;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::pod_cgroup::{KubepodsLayout, PodUid};
use crate::sources::{Change, Input, SourceId};
use crate::workload::{Workload, WorkloadKey};

/// Most inputs applied before a flush, so a flood still commits regularly.
const MAX_BATCH: usize = 8192;
/// A batch this big is a burst: freed memory goes back to the kernel after.
const BURST: usize = 1024;
/// How often failed allocations and writes are retried.
const RETRY_EVERY: Duration = Duration::from_secs(2);
/// Entries of a workload's subtree looked at for its old id after a restart.
const MAX_HINT_PROBES: usize = 64;

pub struct Config {
    pub layout: KubepodsLayout,
    pub facets: Facets,
    /// Source names, by [`SourceId`].
    pub sources: Vec<&'static str>,
    /// Where the identity names file goes (`None`: nowhere).
    pub names_file: Option<PathBuf>,
    /// How long a workload its source stopped naming keeps its entries
    /// while its cgroup still exists.
    pub delete_grace: Duration,
}

/// The names file is rewritten at most this often.
const NAMES_EVERY: Duration = Duration::from_secs(1);

struct Tracked {
    source: SourceId,
    workload: Workload,
    /// `None` while its allocation fails (it is retried).
    identity: Option<Identity>,
}

pub struct Reconciler {
    bus: BusWriter,
    allocator: Box<dyn Allocator>,
    config: Config,
    metrics: Arc<Metrics>,
    health: Arc<Health>,

    /// Cgroup path (below the root) -> id.
    tree: BTreeMap<String, u64>,
    tree_synced: bool,
    /// Pod uid -> its cgroup's path, for pods whose cgroup exists.
    pod_dirs: HashMap<PodUid, String>,
    workloads: HashMap<WorkloadKey, Tracked>,
    cgroup_workloads: usize,
    source_synced: Vec<bool>,
    /// Every source and the tree have been listed: absence means gone.
    synced: bool,

    /// What the bus holds: cgroup id -> entry.
    written: HashMap<u64, Entry>,
    dirty: HashSet<String>,
    gone: Vec<u64>,
    /// Workloads their source stopped naming while their cgroup exists,
    /// and when their grace ends.
    leaving: HashMap<WorkloadKey, Instant>,
    /// Workloads whose allocation failed, to try again.
    retry: HashMap<WorkloadKey, (SourceId, Workload)>,
    /// Of those, the ones the store has been asked for and not yet answered:
    /// the first readiness waits for them.
    awaiting_answer: HashSet<WorkloadKey>,
    /// Cgroups whose write failed (a full map), to try again.
    blocked: HashSet<String>,
    last_retry: Instant,
    /// When each source event of the pending batch arrived.
    arrivals: Vec<Instant>,
    /// Source inputs that came before the tree: nothing resolves without it.
    early: Vec<Input>,
    /// The identity names last written, and when.
    names: BTreeMap<u32, Arc<str>>,
    names_written: Option<Instant>,
}

impl Reconciler {
    /// Take over `bus`: what it holds is what a previous run wrote. Once the
    /// tree is read, the ids of its entries whose cgroups still exist are
    /// reserved for their workloads to re-adopt.
    pub fn new(
        bus: BusWriter,
        allocator: Box<dyn Allocator>,
        config: Config,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Reconciler {
        let mut written = HashMap::new();
        let mut malformed = vec![];
        for (cgroup_id, entry) in bus.bus().iter() {
            match entry {
                Ok(e) => {
                    written.insert(cgroup_id, e);
                }
                Err(e) => {
                    warn!(cgroup_id, error = %e, "malformed bus entry: deleting it");
                    malformed.push(cgroup_id);
                }
            }
        }
        info!(entries = written.len(), "bus opened");
        let sources = config.sources.len();
        Reconciler {
            bus,
            allocator,
            config,
            metrics,
            health,
            tree: BTreeMap::new(),
            tree_synced: false,
            pod_dirs: HashMap::new(),
            workloads: HashMap::new(),
            cgroup_workloads: 0,
            source_synced: vec![false; sources],
            synced: false,
            written,
            dirty: HashSet::new(),
            gone: malformed,
            leaving: HashMap::new(),
            retry: HashMap::new(),
            awaiting_answer: HashSet::new(),
            blocked: HashSet::new(),
            last_retry: Instant::now(),
            arrivals: vec![],
            early: vec![],
            names: BTreeMap::new(),
            names_written: None,
        }
    }

    /// Run until [`Input::Shutdown`] or every sender is gone.
    pub fn run(mut self, inputs: Receiver<Input>) {
        loop {
            let mut stop = false;
            let mut work = 0;
            match inputs.recv_timeout(Duration::from_secs(1)) {
                Ok(first) => {
                    for input in std::iter::once(first).chain(inputs.try_iter().take(MAX_BATCH)) {
                        if matches!(input, Input::Shutdown) {
                            stop = true;
                            break;
                        }
                        work += input.size();
                        self.input(input);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => stop = true,
            }
            self.retry_answered();
            self.reacquire_lost();
            self.collect_left();
            if self.last_retry.elapsed() >= RETRY_EVERY {
                self.retry_failed();
            }
            self.flush();
            if work >= BURST {
                crate::memory::release_free();
            }
            self.health.beat();
            if stop {
                info!(
                    entries = self.written.len(),
                    "stopping; the bus stays pinned for its consumers"
                );
                return;
            }
        }
    }

    pub fn input(&mut self, input: Input) {
        match input {
            Input::Source { .. } if !self.tree_synced => self.early.push(input),
            Input::Source { source, change, at } => {
                self.arrivals.push(at);
                match change {
                    Change::Replace(list) => self.replace(source, list),
                    Change::Apply(w) => self.apply(source, w),
                    Change::Delete(key) => self.leave(source, &key),
                }
            }
            Input::Tree(event) => self.tree_event(event),
            // Taken below, after the batch (see `run`).
            Input::Answered | Input::Shutdown => {}
        }
    }

    fn replace(&mut self, source: SourceId, list: Vec<Workload>) {
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
            self.leave(source, &key);
        }
        for w in list {
            self.apply(source, w);
        }
        if !self.source_synced[source.0] {
            self.source_synced[source.0] = true;
            info!(
                source = self.config.sources[source.0],
                "source listed its workloads"
            );
            self.check_synced();
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
    fn leave(&mut self, source: SourceId, key: &WorkloadKey) {
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
                .insert(key.clone(), Instant::now() + self.config.delete_grace);
        }
    }

    /// Delete the leaving workloads whose cgroup went or whose grace ended.
    fn collect_left(&mut self) {
        if self.leaving.is_empty() {
            return;
        }
        let now = Instant::now();
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

    fn tree_event(&mut self, event: TreeEvent) {
        match event {
            TreeEvent::Snapshot(cgroups) => {
                self.tree = cgroups.into_iter().collect();
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
                        self.input(input);
                    }
                    self.check_synced();
                }
            }
            TreeEvent::Created(cgroups) => {
                for (path, id) in cgroups {
                    self.created(path, id);
                }
            }
            TreeEvent::Removed(path) => {
                let below: Vec<String> = subtree(&self.tree, &path).cloned().collect();
                for p in std::iter::once(path).chain(below) {
                    if let Some(id) = self.tree.remove(&p) {
                        self.gone.push(id);
                    }
                    if let Some(uid) = self.config.layout.pod_of(&p) {
                        self.pod_dirs.remove(&uid);
                    }
                    self.dirty.remove(&p);
                    self.blocked.remove(&p);
                }
            }
        }
    }

    fn created(&mut self, path: String, id: u64) {
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

    /// Every source and the tree have been listed: what no workload claims
    /// now is stale, and reservations nobody re-adopted end.
    fn check_synced(&mut self) {
        if self.synced || !self.tree_synced || self.source_synced.iter().any(|s| !s) {
            return;
        }
        self.synced = true;
        self.allocator.end_adoption();
        self.dirty.extend(self.tree.keys().cloned());
        let live: HashSet<u64> = self.tree.values().copied().collect();
        self.gone
            .extend(self.written.keys().filter(|id| !live.contains(id)));
        info!(
            workloads = self.workloads.len(),
            identities = self.allocator.live(),
            "every source listed; unclaimed entries are collected"
        );
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

    fn retry_failed(&mut self) {
        self.last_retry = Instant::now();
        let retry: Vec<_> = self.retry.drain().map(|(_, v)| v).collect();
        for (source, w) in retry {
            self.apply(source, w);
        }
        self.dirty.extend(self.blocked.drain());
    }

    /// Where a workload's cgroup is in the tree, if it exists.
    fn anchor_path(&self, key: &WorkloadKey) -> Option<&str> {
        match key {
            WorkloadKey::Pod(uid) => self.pod_dirs.get(uid).map(String::as_str),
            WorkloadKey::Cgroup(path) => self.tree.get_key_value(&**path).map(|(p, _)| p.as_str()),
        }
    }

    fn mark_subtree(&mut self, key: &WorkloadKey) {
        let Some(path) = self.anchor_path(key) else {
            return; // its cgroup does not exist (yet)
        };
        let marked: Vec<String> = std::iter::once(path.to_string())
            .chain(subtree(&self.tree, path).cloned())
            .collect();
        self.dirty.extend(marked);
    }

    /// The id a previous run gave `canonical` in this workload's cgroups.
    fn old_identity(&self, key: &WorkloadKey, canonical: &Canonical) -> Option<Identity> {
        let path = self.anchor_path(key)?;
        let hash = canonical.label_hash();
        std::iter::once(path)
            .chain(subtree(&self.tree, path).map(String::as_str))
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
                facets: self.config.facets,
                class: t.workload.policy.class,
                weight: t.workload.policy.weight,
            },
            label_hash: t.workload.canonical.label_hash(),
            updated_ns: now_ns,
        })
    }

    /// Write what changed since the last flush, then commit once.
    pub fn flush(&mut self) {
        let now = realtime_ns();
        let mut wrote = 0usize;
        for id in std::mem::take(&mut self.gone) {
            if self.written.remove(&id).is_some() {
                match self.bus.delete(id) {
                    Ok(_) => wrote += 1,
                    Err(e) => self.write_failed(&e),
                }
            }
        }
        for path in std::mem::take(&mut self.dirty) {
            let Some(&id) = self.tree.get(&path) else {
                continue;
            };
            let want = self.desired(&path, now);
            match (want, self.written.get(&id)) {
                (Some(w), Some(have)) if same_entry(&w, have) => {}
                (Some(w), _) => match self.bus.put(id, &w) {
                    Ok(()) => {
                        self.written.insert(id, w);
                        wrote += 1;
                    }
                    Err(e) => {
                        self.write_failed(&e);
                        self.blocked.insert(path);
                    }
                },
                (None, Some(_)) if self.synced => {
                    self.written.remove(&id);
                    match self.bus.delete(id) {
                        Ok(_) => wrote += 1,
                        Err(e) => self.write_failed(&e),
                    }
                }
                (None, _) => {}
            }
        }
        if wrote > 0 {
            match self.bus.commit() {
                Ok(generation) => debug!(generation, writes = wrote, "bus batch committed"),
                Err(e) => {
                    error!(error = %e, "committing the bus batch failed");
                    self.metrics.failure(Failure::BusWrite);
                }
            }
        }
        let done = Instant::now();
        for at in self.arrivals.drain(..) {
            self.metrics.propagated(done - at);
        }
        self.metrics.set_live(
            self.allocator.live(),
            self.written.len() as u64,
            self.bus.generation(),
            self.tree.len(),
        );
        self.metrics.set_leaving(self.leaving.len());
        if self.synced {
            self.write_names();
        }
        if self.synced && self.awaiting_answer.is_empty() && !self.health.is_ready() {
            info!(
                entries = self.written.len(),
                generation = self.bus.generation(),
                "bus written: ready"
            );
            self.health.set_ready();
        }
    }

    /// Rewrite the identity names file if the names changed (at most once
    /// a second).
    fn write_names(&mut self) {
        let Some(path) = &self.config.names_file else {
            return;
        };
        if self
            .names_written
            .is_some_and(|t| t.elapsed() < NAMES_EVERY)
        {
            return;
        }
        let names: BTreeMap<u32, Arc<str>> = self
            .workloads
            .values()
            .filter_map(|t| Some((t.identity?.get(), t.workload.identity_name.clone())))
            .collect();
        if self.names_written.is_some() && names == self.names {
            return;
        }
        let file = NamesFile::new(
            names
                .iter()
                .map(|(&identity, name)| NamedIdentity::new(identity, name))
                .collect(),
        );
        match prism_bus::names::write(path, &file) {
            Ok(()) => debug!(names = names.len(), file = %path.display(), "identity names written"),
            Err(e) => {
                warn!(file = %path.display(), error = %e, "writing the identity names failed; next time")
            }
        }
        self.names = names;
        self.names_written = Some(Instant::now());
    }

    fn write_failed(&self, e: &BusError) {
        let f = match e {
            BusError::Full { .. } => Failure::BusFull,
            _ => Failure::BusWrite,
        };
        // One line per failed write would flood the log when the map is full.
        if self.metrics.failures(f).is_multiple_of(1000) {
            error!(error = %e, reason = %f, "bus write failed; the rest is served, this is retried");
        }
        self.metrics.failure(f);
    }

    /// The bus as this reconciler believes it is (tests).
    pub fn written(&self) -> &HashMap<u64, Entry> {
        &self.written
    }
}

/// The paths strictly below `path` (a contiguous range: `/` sorts just
/// before `0`).
fn subtree<'a>(
    tree: &'a BTreeMap<String, u64>,
    path: &str,
) -> impl Iterator<Item = &'a String> + 'a {
    let lo = format!("{path}/");
    let hi = format!("{path}0");
    tree.range::<str, _>((Bound::Included(lo.as_str()), Bound::Excluded(hi.as_str())))
        .map(|(p, _)| p)
}

fn same_entry(a: &Entry, b: &Entry) -> bool {
    a.identity == b.identity && a.flags == b.flags && a.label_hash == b.label_hash
}

fn realtime_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
