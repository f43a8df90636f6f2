//! Identity allocation: one id per canonical string, refcounted by the
//! workloads that have it, the smallest free id >= 256 for a new one.
//!
//! - [`local`]: this node alone; re-adopts the ids on the bus after a restart.
//! - [`etcd`]: one id per canonical across the cluster, agreed in etcd,
//!   asynchronously: the reconciler never waits for etcd.
//! - [`grace`]: around either, a released id stays its canonical's for a
//!   while, so a workload that comes back gets the same id.
//!
//! Both hold the invariant the prototype broke: an id is never bound to two
//! canonical strings at once.

pub mod etcd;
pub mod grace;
pub mod local;

use prism_bus::Identity;
use thiserror::Error;

use crate::workload::canonical::Canonical;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AllocError {
    #[error("no free identity left below {max:#x}")]
    Exhausted { max: u32 },
    #[error("the identity store is unavailable: {0}")]
    Unavailable(String),
    /// The store was asked; [`Allocator::answered`] names the canonical
    /// once the answer is in, and the next acquire returns it.
    #[error("asked the identity store; the answer is on its way")]
    Pending,
}

/// How an [`Allocator::acquire`] found its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// Another workload already has this canonical string.
    Shared,
    /// A new id for a new canonical string.
    Minted,
    /// The id the bus (or the cluster) already had for it.
    Adopted,
    /// Its own id, kept for it since its last workload left.
    Kept,
}

pub trait Allocator: Send {
    /// One more workload with `canonical`. `hint` is the id the bus held for
    /// it before a restart; it is taken if no other canonical has it.
    fn acquire(
        &mut self,
        canonical: &Canonical,
        hint: Option<Identity>,
    ) -> Result<(Identity, Acquired), AllocError>;

    /// One workload fewer with `canonical`; at none, its id is free again.
    fn release(&mut self, canonical: &Canonical);

    /// Hold `ids` (found on the bus at start) for their owners to re-adopt:
    /// no new canonical gets them until [`Self::end_adoption`].
    fn reserve(&mut self, ids: &[Identity]);

    /// Every source has listed its workloads: unclaimed reservations end.
    fn end_adoption(&mut self);

    /// Canonical strings that have an id now.
    fn live(&self) -> usize;

    /// Periodic work (about once a second). Returns the canonical strings
    /// whose id the store took back (etcd, after this node was cut off past
    /// its lease): the allocator has forgotten them, and their workloads
    /// must acquire again.
    fn housekeeping(&mut self) -> Vec<Canonical> {
        Vec::new()
    }

    /// Canonicals whose [`AllocError::Pending`] acquisition has its answer
    /// now: acquire them again. (Each is named once.)
    fn answered(&mut self) -> Vec<Canonical> {
        Vec::new()
    }
}

/// What the allocators' unit tests share.
#[cfg(test)]
pub(crate) mod test_support {
    use prism_bus::Identity;

    use crate::workload::canonical::Canonical;
    use crate::workload::labels::Labels;

    /// The canonical of a pod labelled `app=name`.
    pub fn c(name: &str) -> Canonical {
        let labels: Labels = [("app".to_string(), name.to_string())].into();
        Canonical::for_pod("ns", "default", &labels).unwrap()
    }

    pub fn id(n: u32) -> Identity {
        Identity::new(n).unwrap()
    }
}
