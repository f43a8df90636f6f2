//! A released id stays its canonical's for a grace: a workload that leaves
//! and comes back (a Deployment's pod replaced, a source that flaps between
//! an empty listing and a full one) gets the id it had, so nothing keyed by
//! the number (a prism-net rule, a dashboard) silently moves to another
//! workload. Around either allocator: the inner one is told of a release
//! only when the grace ends unclaimed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use prism_bus::Identity;

use super::{Acquired, AllocError, Allocator};
use crate::workload::canonical::Canonical;

#[derive(Debug)]
struct Holding {
    id: Identity,
    /// Workloads with this canonical; 0 while its grace runs.
    workloads: u32,
}

pub struct ReleaseGrace<A> {
    inner: A,
    grace: Duration,
    /// Every canonical the inner allocator holds an id for (each once).
    held: HashMap<Canonical, Holding>,
    /// Canonicals without workloads, and when their grace ends.
    idle: HashMap<Canonical, Instant>,
}

impl<A: Allocator> ReleaseGrace<A> {
    pub fn new(inner: A, grace: Duration) -> Self {
        ReleaseGrace {
            inner,
            grace,
            held: HashMap::new(),
            idle: HashMap::new(),
        }
    }

    /// Give the inner allocator back the ids whose grace ended by `now`.
    pub fn expire(&mut self, now: Instant) {
        let ended: Vec<Canonical> = self
            .idle
            .iter()
            .filter(|(_, until)| now >= **until)
            .map(|(c, _)| c.clone())
            .collect();
        for c in ended {
            self.give_back(&c);
        }
    }

    /// Ids kept for canonicals that have no workload now.
    pub fn kept(&self) -> usize {
        self.idle.len()
    }

    fn give_back(&mut self, c: &Canonical) {
        self.idle.remove(c);
        self.held.remove(c);
        self.inner.release(c);
    }

    /// The idle canonical whose grace ends first.
    fn oldest_idle(&self) -> Option<Canonical> {
        self.idle
            .iter()
            .min_by_key(|(_, until)| **until)
            .map(|(c, _)| c.clone())
    }
}

impl<A: Allocator> Allocator for ReleaseGrace<A> {
    fn acquire(
        &mut self,
        canonical: &Canonical,
        hint: Option<Identity>,
    ) -> Result<(Identity, Acquired), AllocError> {
        if let Some(h) = self.held.get_mut(canonical) {
            h.workloads += 1;
            let how = if self.idle.remove(canonical).is_some() {
                Acquired::Kept
            } else {
                Acquired::Shared
            };
            return Ok((h.id, how));
        }
        let got = match self.inner.acquire(canonical, hint) {
            // Every id is taken: the kept ones are the first to give up.
            Err(AllocError::Exhausted { .. }) if !self.idle.is_empty() => {
                let oldest = self.oldest_idle().expect("not empty");
                self.give_back(&oldest);
                self.inner.acquire(canonical, hint)
            }
            other => other,
        };
        let (id, how) = got?;
        self.held
            .insert(canonical.clone(), Holding { id, workloads: 1 });
        Ok((id, how))
    }

    fn release(&mut self, canonical: &Canonical) {
        let Some(h) = self.held.get_mut(canonical) else {
            return;
        };
        if h.workloads == 0 {
            return; // already idle: a release too many
        }
        h.workloads -= 1;
        if h.workloads == 0 {
            if self.grace.is_zero() {
                self.give_back(canonical);
            } else {
                self.idle
                    .insert(canonical.clone(), Instant::now() + self.grace);
            }
        }
    }

    fn reserve(&mut self, ids: &[Identity]) {
        self.inner.reserve(ids);
    }

    fn end_adoption(&mut self) {
        self.inner.end_adoption();
    }

    fn live(&self) -> usize {
        self.held.len() - self.idle.len()
    }

    fn housekeeping(&mut self) -> Vec<Canonical> {
        self.expire(Instant::now());
        let lost = self.inner.housekeeping();
        for c in &lost {
            self.held.remove(c);
            self.idle.remove(c);
        }
        lost
    }

    fn answered(&mut self) -> Vec<Canonical> {
        self.inner.answered()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocator::local::LocalAllocator;
    use crate::allocator::test_support::{c, id};

    const GRACE: Duration = Duration::from_secs(300);

    #[test]
    fn a_workload_that_comes_back_within_the_grace_gets_its_id_back() {
        let mut a = ReleaseGrace::new(LocalAllocator::default(), GRACE);
        assert_eq!(a.acquire(&c("a"), None), Ok((id(256), Acquired::Minted)));
        assert_eq!(a.acquire(&c("b"), None), Ok((id(257), Acquired::Minted)));
        a.release(&c("a"));
        assert_eq!((a.live(), a.kept()), (1, 1));
        // A newcomer does not get the released id while it is kept...
        assert_eq!(a.acquire(&c("new"), None), Ok((id(258), Acquired::Minted)));
        // ...and the one that left gets it back.
        assert_eq!(a.acquire(&c("a"), None), Ok((id(256), Acquired::Kept)));
        assert_eq!(a.acquire(&c("a"), None), Ok((id(256), Acquired::Shared)));
        assert_eq!((a.live(), a.kept()), (3, 0));
    }

    #[test]
    fn the_id_is_free_again_once_the_grace_ends() {
        let mut a = ReleaseGrace::new(LocalAllocator::default(), GRACE);
        a.acquire(&c("a"), None).unwrap();
        a.release(&c("a"));
        a.expire(Instant::now() + GRACE / 2);
        assert_eq!(a.kept(), 1, "still within the grace");
        a.expire(Instant::now() + GRACE);
        assert_eq!(a.kept(), 0);
        assert_eq!(a.acquire(&c("b"), None), Ok((id(256), Acquired::Minted)));
        assert_eq!(a.acquire(&c("a"), None), Ok((id(257), Acquired::Minted)));
    }

    #[test]
    fn only_the_last_workloads_release_starts_the_grace() {
        let mut a = ReleaseGrace::new(LocalAllocator::default(), GRACE);
        a.acquire(&c("a"), None).unwrap();
        a.acquire(&c("a"), None).unwrap();
        a.release(&c("a"));
        assert_eq!((a.live(), a.kept()), (1, 0));
        a.release(&c("a"));
        a.release(&c("a")); // one too many changes nothing
        assert_eq!((a.live(), a.kept()), (0, 1));
        assert_eq!(a.acquire(&c("a"), None), Ok((id(256), Acquired::Kept)));
    }

    #[test]
    fn without_a_grace_a_release_frees_the_id_at_once() {
        let mut a = ReleaseGrace::new(LocalAllocator::default(), Duration::ZERO);
        a.acquire(&c("a"), None).unwrap();
        a.release(&c("a"));
        assert_eq!(a.kept(), 0);
        assert_eq!(a.acquire(&c("b"), None), Ok((id(256), Acquired::Minted)));
    }

    #[test]
    fn when_every_id_is_taken_the_longest_kept_one_is_given_up() {
        let mut a = ReleaseGrace::new(LocalAllocator::with_max(257), GRACE);
        a.acquire(&c("a"), None).unwrap();
        a.acquire(&c("b"), None).unwrap();
        a.release(&c("a"));
        std::thread::sleep(Duration::from_millis(2));
        a.release(&c("b"));
        assert_eq!(a.acquire(&c("x"), None), Ok((id(256), Acquired::Minted)));
        assert_eq!(a.kept(), 1, "b's id is still kept");
        assert_eq!(a.acquire(&c("b"), None), Ok((id(257), Acquired::Kept)));
        assert_eq!(
            a.acquire(&c("y"), None),
            Err(AllocError::Exhausted { max: 257 })
        );
    }
}
