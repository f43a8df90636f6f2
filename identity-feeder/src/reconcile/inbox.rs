//! The reconciler's inbox: what the sources and the cgroup tree send it.
//! Sources send through their [`Feed`](crate::sources::Feed); the tree
//! sends its events as they come.

use std::time::Instant;

use crate::sources::cgroup_tree::TreeEvent;
use crate::workload::{Workload, WorkloadKey};

/// A source's position in the feeder's list of sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceId(pub usize);

/// What a source saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Everything the source knows now; what it reported before and is not
    /// here is gone. The first one marks the source as synced.
    Replace(Vec<Workload>),
    Apply(Workload),
    Delete(WorkloadKey),
}

/// Everything the reconciler reacts to.
#[derive(Debug)]
pub enum Input {
    Source {
        source: SourceId,
        change: Change,
        /// When the feeder received it: the start of its propagation.
        at: Instant,
    },
    Tree(TreeEvent),
    /// The identity store answered: acquire what waited for it.
    Answered,
    /// Commit what is pending and stop (SIGTERM); the bus stays pinned.
    Shutdown,
}

impl Input {
    /// How much work it carries (workloads or cgroups).
    pub fn size(&self) -> usize {
        match self {
            Input::Source {
                change: Change::Replace(list),
                ..
            } => list.len(),
            Input::Tree(TreeEvent::Snapshot(cgroups) | TreeEvent::Created(cgroups)) => {
                cgroups.len()
            }
            _ => 1,
        }
    }
}
