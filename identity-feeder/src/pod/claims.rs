//! Which pod object holds each workload key (the pod uid that names a pod's
//! cgroups), so that no pod can take over or delete another pod's entry.
//!
//! Two pod objects can name one key: a mirror pod names its static pod's
//! uid, and a list can carry a pod twice. The first to claim a key holds it
//! until that pod object is deleted, refused, or listed no more; another
//! pod claiming it meanwhile is refused. A full listing in which several
//! pods claim one key grants it to the holder if the holder is exactly one
//! of them, and to none of them otherwise: a forged claim can cost a pod
//! its identity while it lasts (counted, logged), never hand it to another.
//! Deletes go by the pod object, so deleting one pod removes only what it
//! held.

use std::collections::HashMap;

use crate::workload::{Workload, WorkloadKey};

/// The uid of a pod object as its source knows it (`metadata.uid`).
pub type ObjectUid = Box<str>;

/// Workloads, each with the pod object it came from.
pub type Listing = Vec<(ObjectUid, Workload)>;

#[derive(Debug, Default)]
pub struct Claims {
    holder: HashMap<WorkloadKey, ObjectUid>,
    held: HashMap<ObjectUid, WorkloadKey>,
}

/// A claim refused: the key is held by another pod object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub key: WorkloadKey,
    pub holder: ObjectUid,
}

impl Claims {
    /// `object` wants `key` (a watch event). `Ok` with the key it held
    /// before if that was another one (to withdraw); `Err` if another pod
    /// object holds `key`.
    pub fn claim(
        &mut self,
        object: &str,
        key: &WorkloadKey,
    ) -> Result<Option<WorkloadKey>, Conflict> {
        if let Some(holder) = self.holder.get(key)
            && **holder != *object
        {
            return Err(Conflict {
                key: key.clone(),
                holder: holder.clone(),
            });
        }
        let before = self.held.insert(object.into(), key.clone());
        self.holder.insert(key.clone(), object.into());
        Ok(before.filter(|k| k != key).inspect(|k| {
            self.holder.remove(k);
        }))
    }

    /// `object` is gone or refused now: the key it held, to delete.
    pub fn release(&mut self, object: &str) -> Option<WorkloadKey> {
        let key = self.held.remove(object)?;
        self.holder.remove(&key);
        Some(key)
    }

    /// A source's full listing, each workload with the pod object it came
    /// from: the workloads granted (in listing order) and the refused ones
    /// with their objects. Claims of objects not listed are dropped.
    pub fn relist(&mut self, listing: Listing) -> (Vec<Workload>, Listing) {
        let mut claimants: HashMap<&WorkloadKey, Vec<&str>> = HashMap::new();
        for (object, w) in &listing {
            claimants.entry(&w.key).or_default().push(object);
        }
        let winner: HashMap<WorkloadKey, ObjectUid> = claimants
            .into_iter()
            .filter_map(|(key, objects)| {
                let holder = self.holder.get(key).map(|h| &**h);
                let chosen = match objects.as_slice() {
                    [only] => Some(*only),
                    _ => holder.filter(|h| objects.iter().filter(|o| *o == h).count() == 1),
                };
                chosen.map(|o| (key.clone(), o.into()))
            })
            .collect();
        self.holder.clear();
        self.held.clear();
        let (mut granted, mut refused) = (vec![], vec![]);
        for (object, w) in listing {
            if winner.get(&w.key) == Some(&object) && !self.held.contains_key(&object) {
                self.held.insert(object.clone(), w.key.clone());
                self.holder.insert(w.key.clone(), object);
                granted.push(w);
            } else {
                refused.push((object, w));
            }
        }
        (granted, refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::cgroup_name::PodUid;
    use crate::workload::canonical::Canonical;
    use crate::workload::declared::Policy;
    use crate::workload::labels::Labels;
    use std::sync::Arc;

    fn key(uid: &str) -> WorkloadKey {
        WorkloadKey::Pod(PodUid::parse(uid).unwrap())
    }

    fn workload(uid: &str, name: &str) -> Workload {
        Workload {
            key: key(uid),
            name: Arc::from(name),
            identity_name: Arc::from(name),
            canonical: Canonical::for_pod("ns", "default", &Labels::new()).unwrap(),
            policy: Policy::default(),
        }
    }

    fn names(ws: &[Workload]) -> Vec<&str> {
        ws.iter().map(|w| &*w.name).collect()
    }

    fn refused_names(ws: &[(ObjectUid, Workload)]) -> Vec<(&str, &str)> {
        ws.iter().map(|(o, w)| (&**o, &*w.name)).collect()
    }

    #[test]
    fn a_held_key_is_refused_to_another_pod_and_deleted_only_by_its_holder() {
        let mut c = Claims::default();
        let static_pod = key("8c1b9f3a2d4e5f60718293a4b5c6d7e8");
        assert_eq!(c.claim("mirror-api-uid", &static_pod), Ok(None));
        assert_eq!(
            c.claim("mirror-api-uid", &static_pod),
            Ok(None),
            "again: still ok"
        );
        assert_eq!(
            c.claim("forger-uid", &static_pod),
            Err(Conflict {
                key: static_pod.clone(),
                holder: "mirror-api-uid".into()
            })
        );
        assert_eq!(c.release("forger-uid"), None, "the forger held nothing");
        assert_eq!(c.release("mirror-api-uid"), Some(static_pod.clone()));
        assert_eq!(c.claim("forger-uid", &static_pod), Ok(None), "free now");
    }

    #[test]
    fn a_pod_that_names_another_key_withdraws_the_old_one() {
        let mut c = Claims::default();
        assert_eq!(c.claim("p", &key("aaaa")), Ok(None));
        assert_eq!(c.claim("p", &key("bbbb")), Ok(Some(key("aaaa"))));
        assert_eq!(c.claim("q", &key("aaaa")), Ok(None), "aaaa was released");
    }

    #[test]
    fn a_listing_with_two_claims_keeps_the_holder_or_grants_neither() {
        let mut c = Claims::default();
        let (granted, refused) = c.relist(vec![
            ("real".into(), workload("aaaa", "kube-system/etcd")),
            ("other".into(), workload("cccc", "shop/api")),
        ]);
        assert_eq!(names(&granted), ["kube-system/etcd", "shop/api"]);
        assert!(refused.is_empty());

        // A forger joins, listed first: the holder keeps the key.
        let (granted, refused) = c.relist(vec![
            ("forger".into(), workload("aaaa", "tenant/forged")),
            ("real".into(), workload("aaaa", "kube-system/etcd")),
            ("other".into(), workload("cccc", "shop/api")),
        ]);
        assert_eq!(names(&granted), ["kube-system/etcd", "shop/api"]);
        assert_eq!(refused_names(&refused), [("forger", "tenant/forged")]);
        assert_eq!(c.release("forger"), None);

        // No holder among the claimants (a restart): neither gets it.
        let mut fresh = Claims::default();
        let (granted, refused) = fresh.relist(vec![
            ("forger".into(), workload("aaaa", "tenant/forged")),
            ("real".into(), workload("aaaa", "kube-system/etcd")),
        ]);
        assert!(granted.is_empty());
        assert_eq!(refused.len(), 2);

        // One object listed twice (a kubelet list with a duplicate): refused.
        let (granted, refused) = c.relist(vec![
            ("real".into(), workload("aaaa", "kube-system/etcd")),
            ("real".into(), workload("aaaa", "kube-system/etcd-again")),
        ]);
        assert!(granted.is_empty());
        assert_eq!(refused.len(), 2);
    }

    #[test]
    fn a_listing_drops_the_claims_of_pods_not_in_it() {
        let mut c = Claims::default();
        c.relist(vec![("gone".into(), workload("aaaa", "a/gone"))]);
        c.relist(vec![("other".into(), workload("bbbb", "a/other"))]);
        assert_eq!(c.release("gone"), None);
        assert_eq!(c.claim("new", &key("aaaa")), Ok(None));
    }
}
