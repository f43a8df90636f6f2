//! The node-local allocator: refcounted, smallest free id >= 256, idempotent
//! per canonical string. After a restart the feeder reserves every id on the
//! bus, so each workload re-adopts its old id and no new one can take it.

use std::collections::{BTreeMap, HashMap};

use prism_bus::Identity;
use prism_bus::abi::{IDENTITY_MASK, MIN_DYNAMIC_IDENTITY};

use super::{Acquired, AllocError, Allocator};
use crate::workload::canonical::Canonical;

#[derive(Debug)]
enum Slot {
    Bound,
    /// On the bus at start, waiting for its canonical to come back.
    Reserved,
}

#[derive(Debug)]
struct Held {
    id: u32,
    refs: u32,
}

#[derive(Debug)]
pub struct LocalAllocator {
    by_canonical: HashMap<Canonical, Held>,
    by_id: BTreeMap<u32, Slot>,
    /// No id below this one is free (a lower bound, not always tight).
    search_from: u32,
    max: u32,
}

impl Default for LocalAllocator {
    fn default() -> Self {
        LocalAllocator::with_max(IDENTITY_MASK)
    }
}

impl LocalAllocator {
    /// An allocator that hands out ids up to `max` (at most 24 bits).
    pub fn with_max(max: u32) -> Self {
        LocalAllocator {
            by_canonical: HashMap::new(),
            by_id: BTreeMap::new(),
            search_from: MIN_DYNAMIC_IDENTITY,
            max: max.min(IDENTITY_MASK),
        }
    }

    /// The id `canonical` has, if any.
    pub fn get(&self, canonical: &Canonical) -> Option<Identity> {
        self.by_canonical
            .get(canonical)
            .map(|h| Identity::new(h.id).expect("ids are 24-bit"))
    }

    fn is_dynamic(&self, id: u32) -> bool {
        (MIN_DYNAMIC_IDENTITY..=self.max).contains(&id)
    }

    fn smallest_free(&self) -> Option<u32> {
        let mut candidate = self.search_from;
        for &taken in self.by_id.range(candidate..).map(|(id, _)| id) {
            if taken != candidate {
                break;
            }
            candidate += 1;
        }
        (candidate <= self.max).then_some(candidate)
    }
}

impl Allocator for LocalAllocator {
    fn acquire(
        &mut self,
        canonical: &Canonical,
        hint: Option<Identity>,
    ) -> Result<(Identity, Acquired), AllocError> {
        if let Some(held) = self.by_canonical.get_mut(canonical) {
            held.refs += 1;
            return Ok((Identity::new(held.id).expect("24-bit"), Acquired::Shared));
        }
        let hinted = hint.map(Identity::get).filter(|&id| {
            self.is_dynamic(id) && matches!(self.by_id.get(&id), None | Some(Slot::Reserved))
        });
        let (id, how) = match hinted {
            Some(id) => (id, Acquired::Adopted),
            None => {
                let id = self
                    .smallest_free()
                    .ok_or(AllocError::Exhausted { max: self.max })?;
                self.search_from = id + 1;
                (id, Acquired::Minted)
            }
        };
        self.by_id.insert(id, Slot::Bound);
        self.by_canonical
            .insert(canonical.clone(), Held { id, refs: 1 });
        Ok((Identity::new(id).expect("24-bit"), how))
    }

    fn release(&mut self, canonical: &Canonical) {
        let Some(held) = self.by_canonical.get_mut(canonical) else {
            return;
        };
        held.refs -= 1;
        if held.refs == 0 {
            let id = held.id;
            self.by_canonical.remove(canonical);
            self.by_id.remove(&id);
            self.search_from = self.search_from.min(id);
        }
    }

    fn reserve(&mut self, ids: &[Identity]) {
        for id in ids.iter().map(|i| i.get()) {
            if self.is_dynamic(id) {
                self.by_id.entry(id).or_insert(Slot::Reserved);
            }
        }
    }

    fn end_adoption(&mut self) {
        let before = self.by_id.len();
        self.by_id.retain(|_, slot| matches!(slot, Slot::Bound));
        if self.by_id.len() != before {
            self.search_from = MIN_DYNAMIC_IDENTITY;
        }
    }

    fn live(&self) -> usize {
        self.by_canonical.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::allocator::test_support::{c, id};

    #[test]
    fn smallest_free_from_256_idempotent_and_refcounted() {
        let mut a = LocalAllocator::default();
        assert_eq!(a.acquire(&c("a"), None), Ok((id(256), Acquired::Minted)));
        assert_eq!(a.acquire(&c("b"), None), Ok((id(257), Acquired::Minted)));
        assert_eq!(a.acquire(&c("a"), None), Ok((id(256), Acquired::Shared)));
        a.release(&c("a"));
        assert_eq!(a.get(&c("a")), Some(id(256)), "one reference left");
        a.release(&c("a"));
        assert_eq!(a.get(&c("a")), None);
        assert_eq!(a.acquire(&c("c"), None), Ok((id(256), Acquired::Minted)));
        assert_eq!(a.acquire(&c("d"), None), Ok((id(258), Acquired::Minted)));
        assert_eq!(a.live(), 3);
    }

    #[test]
    fn releasing_an_unknown_canonical_is_harmless() {
        let mut a = LocalAllocator::default();
        a.release(&c("never"));
        let (x, _) = a.acquire(&c("a"), None).unwrap();
        a.release(&c("never"));
        assert_eq!(a.get(&c("a")), Some(x));
    }

    #[test]
    fn restart_readopts_reserved_ids_in_any_order_and_never_duplicates() {
        // The prototype gave two canonicals one id when several survivors
        // were reserved out of order (its defect 2). Reserve them unordered.
        let mut a = LocalAllocator::default();
        a.reserve(&[id(300), id(256), id(270), id(5)]);
        assert_eq!(a.acquire(&c("new"), None), Ok((id(257), Acquired::Minted)));
        assert_eq!(
            a.acquire(&c("was-256"), Some(id(256))),
            Ok((id(256), Acquired::Adopted))
        );
        assert_eq!(
            a.acquire(&c("was-300"), Some(id(300))),
            Ok((id(300), Acquired::Adopted))
        );
        // A hint already bound elsewhere is not taken.
        assert_eq!(
            a.acquire(&c("liar"), Some(id(256))),
            Ok((id(258), Acquired::Minted))
        );
        // Reserved ids (270) are skipped until adoption ends.
        for n in 259..270 {
            a.acquire(&c(&format!("f{n}")), None).unwrap();
        }
        assert_eq!(a.acquire(&c("next"), None), Ok((id(271), Acquired::Minted)));
        a.end_adoption();
        assert_eq!(
            a.acquire(&c("after"), None),
            Ok((id(270), Acquired::Minted))
        );
        // Reserved well-known ids are ignored, never handed out.
        assert_eq!(
            a.acquire(&c("host-hint"), Some(id(1))),
            Ok((id(272), Acquired::Minted))
        );
    }

    #[test]
    fn exhaustion_is_an_error_not_a_wrap() {
        let mut a = LocalAllocator::with_max(257);
        a.acquire(&c("a"), None).unwrap();
        a.acquire(&c("b"), None).unwrap();
        assert_eq!(
            a.acquire(&c("c"), None),
            Err(AllocError::Exhausted { max: 257 })
        );
        a.release(&c("a"));
        assert_eq!(a.acquire(&c("c"), None), Ok((id(256), Acquired::Minted)));
    }

    #[test]
    fn churn_keeps_ids_unique() {
        // A deterministic pseudo-random walk of acquires and releases.
        let mut a = LocalAllocator::default();
        let mut refs: HashMap<usize, u32> = HashMap::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = (x % 300) as usize;
            if x & 0x100 == 0 || refs.get(&k).copied().unwrap_or(0) == 0 {
                a.acquire(&c(&format!("w{k}")), None).unwrap();
                *refs.entry(k).or_default() += 1;
            } else {
                a.release(&c(&format!("w{k}")));
                *refs.get_mut(&k).unwrap() -= 1;
            }
            if x.is_multiple_of(997) {
                let live: Vec<_> = refs
                    .iter()
                    .filter(|(_, r)| **r > 0)
                    .map(|(k, _)| a.get(&c(&format!("w{k}"))).expect("held"))
                    .collect();
                let unique: HashSet<_> = live.iter().collect();
                assert_eq!(unique.len(), live.len(), "an id bound twice");
                assert_eq!(a.live(), live.len());
            }
        }
    }
}
