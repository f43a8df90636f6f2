//! Where workloads come from. Each source watches one thing (the API server,
//! the kubelet, the cgroup tree with its rules) and reports what it sees
//! through a [`Feed`]: full listings, and single changes in between. It
//! never touches the bus; the reconciler owns that.

pub mod api_client;
pub mod cgroup_rules;
pub mod cgroup_tree;
pub mod kube;
pub mod kubelet;

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::Sender;
use tracing::warn;

use crate::failure::{Failure, shown};
use crate::metrics::{Metrics, SourceEventKind};
use crate::pod::claims::ObjectUid;
use crate::pod::{Mirrors, PodState, PodView, pod_state};
use crate::reconcile::inbox::{Change, Input, SourceId};
use crate::sources::cgroup_tree::TreeEvent;
use crate::workload::declared::NamespacePolicy;
use crate::workload::{Workload, WorkloadKey};

/// A pod's fault, by its uid.
type Reported = (Box<str>, Failure);

/// A source's way to the reconciler.
#[derive(Clone)]
pub struct Feed {
    id: SourceId,
    name: &'static str,
    tx: Sender<Input>,
    metrics: Arc<Metrics>,
    /// (pod uid, fault) already reported.
    seen: Arc<Mutex<HashSet<Reported>>>,
}

impl Feed {
    pub fn new(id: SourceId, name: &'static str, tx: Sender<Input>, metrics: Arc<Metrics>) -> Feed {
        Feed {
            id,
            name,
            tx,
            metrics,
            seen: Arc::default(),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn send(&self, change: Change, kind: SourceEventKind) {
        self.metrics.processed(self.name, kind);
        // The reconciler only goes away when the feeder stops.
        let _ = self.tx.send(Input::Source {
            source: self.id,
            change,
            at: Instant::now(),
        });
    }

    pub fn replace(&self, workloads: Vec<Workload>) {
        self.send(Change::Replace(workloads), SourceEventKind::Replace);
    }

    pub fn apply(&self, workload: Workload) {
        self.send(Change::Apply(workload), SourceEventKind::Apply);
    }

    pub fn delete(&self, key: WorkloadKey) {
        self.send(Change::Delete(key), SourceEventKind::Delete);
    }

    /// Pass a cgroup tree event on to the reconciler. A source that
    /// classifies cgroups relays the tree, so the reconciler hears of each
    /// change in order with that source's verdict on it.
    pub fn relay_tree(&self, event: TreeEvent) {
        let _ = self.tx.send(Input::Tree(event));
    }

    pub fn up(&self, up: bool) {
        self.metrics.source_up(self.name, up);
    }

    pub fn failure(&self, f: Failure) {
        self.metrics.failure(f);
    }

    /// A pod as the bus should see it, or `None` (logged and counted) if it
    /// is refused. Dropped policy labels are logged and counted too.
    pub fn interpret_pod(
        &self,
        pod: &PodView,
        mirrors: Mirrors,
        policy: &NamespacePolicy,
    ) -> Option<PodState> {
        let mut issues = vec![];
        let name = || {
            let m = &pod.meta;
            shown(&format!(
                "{}/{}",
                m.namespace.as_deref().unwrap_or("?"),
                m.name.as_deref().unwrap_or("?")
            ))
        };
        // A pod listed again (every kubelet poll, every update) with the
        // same fault is logged and counted once.
        let uid = pod.meta.uid.as_deref().unwrap_or("");
        let state = match pod_state(pod, mirrors, policy, &mut issues) {
            Ok(s) => Some(s),
            Err(f) => {
                if self.first_time(uid, f) {
                    warn!(source = self.name, pod = %name(), reason = %f, "pod refused: it gets no identity");
                    self.failure(f);
                }
                None
            }
        };
        for f in issues {
            if self.first_time(uid, f) {
                warn!(source = self.name, pod = %name(), reason = %f, "policy label dropped: the pod keeps its identity without it");
                self.failure(f);
            }
        }
        state
    }

    /// A pod refused because another pod object holds the key it names
    /// (claims.rs): logged and counted once per pod.
    pub fn conflict(&self, object: &str, w: &Workload, holder: Option<&ObjectUid>) {
        if self.first_time(object, Failure::ClaimConflict) {
            warn!(
                source = self.name,
                pod = %shown(&w.name),
                uid = %shown(object),
                key = ?w.key,
                holder = holder.map(|h| shown(h)),
                "pod refused: another pod holds the cgroups it names"
            );
            self.failure(Failure::ClaimConflict);
        }
    }

    /// Whether this pod's fault is new (a bounded memory of recent ones).
    fn first_time(&self, uid: &str, f: Failure) -> bool {
        const REMEMBERED: usize = 16 * 1024;
        let mut seen = self.seen.lock().expect("not poisoned");
        if seen.len() >= REMEMBERED {
            seen.clear();
        }
        seen.insert((uid.into(), f))
    }
}

/// A place workloads come from.
pub trait Source: Send + 'static {
    /// The `source` label of its metrics and logs.
    fn name(&self) -> &'static str;

    /// Report through `feed` until the feeder stops: list, then follow,
    /// retrying with backoff on errors (never returning on them).
    fn run(self, feed: Feed) -> impl Future<Output = ()> + Send;
}
