//! A workload: something with one identity, found by a source, living in a
//! cgroup subtree (a pod's cgroup, or a unit's on a plain host), every
//! cgroup of which gets the same bus entry.
//!
//! - [`labels`]: what a valid name or label is, and the bounds on them;
//! - [`canonical`]: the string a workload's identity is a function of;
//! - [`declared`]: the class, weight and facets a workload declares, and
//!   who may declare them.

pub mod canonical;
pub mod declared;
pub mod labels;

use std::fmt;
use std::sync::Arc;

use crate::pod::cgroup_name::PodUid;
use crate::workload::canonical::Canonical;
use crate::workload::declared::Policy;

/// Which workload, and how its cgroup is found.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkloadKey {
    /// A pod: its cgroup is the one the kubelet names after its uid.
    Pod(PodUid),
    /// A cgroup of a plain host, by its path below the cgroup root.
    Cgroup(Arc<str>),
}

impl fmt::Debug for WorkloadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkloadKey::Pod(uid) => write!(f, "pod {uid}"),
            WorkloadKey::Cgroup(path) => write!(f, "cgroup {path}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub key: WorkloadKey,
    /// For people: `namespace/name` of a pod, the cgroup path of a unit.
    pub name: Arc<str>,
    /// For people, of its identity (which many workloads share): e.g.
    /// `shop/web` for the pods of an app, the rule or unit for cgroups.
    pub identity_name: Arc<str>,
    pub canonical: Canonical,
    pub policy: Policy,
}
