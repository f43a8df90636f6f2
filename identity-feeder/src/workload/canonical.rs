//! The canonical string of a workload: what its identity is a function of.
//!
//! Kubernetes: `io.prism/namespace=<ns>;io.prism/serviceaccount=<sa>;` then
//! the pod's labels as sorted `key=value;`, without the volatile keys (the
//! ones that differ between replicas or revisions of one workload) and
//! without the `prism.io/` (policy) and `kubectl.kubernetes.io/` prefixes.
//! Namespace and service account lead because a workload cannot set them:
//! labels alone would let any pod claim another's identity.
//!
//! Plain hosts: `io.prism/cgroup=<unit path or rule>;` then the rule's labels.
//!
//! Every input is validated here, so a canonical string is unambiguous:
//! no part can contain the `;` or `=` that separate parts.

use std::fmt;
use std::sync::Arc;

use crate::failure::Failure;
use crate::workload::labels::{self, Labels};

/// Label keys that differ between replicas, revisions or runs of one workload.
const VOLATILE_KEYS: &[&str] = &[
    "pod-template-hash",
    "pod-template-generation",
    "controller-revision-hash",
    "controller-uid",
    "job-name",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "batch.kubernetes.io/controller-uid",
    "batch.kubernetes.io/job-name",
    "batch.kubernetes.io/job-completion-index",
];

/// Label prefixes that never take part in an identity: policy, tooling.
const IGNORED_PREFIXES: &[&str] = &["prism.io/", "kubectl.kubernetes.io/"];

/// Longest selector (unit path or rule pattern) of a plain-host workload.
pub const MAX_SELECTOR: usize = 1024;

/// A workload's canonical string. Cheap to clone (shared).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Canonical(Arc<str>);

impl Canonical {
    /// The canonical string of a pod.
    pub fn for_pod(
        namespace: &str,
        service_account: &str,
        labels: &Labels,
    ) -> Result<Canonical, Failure> {
        if !labels::is_namespace(namespace) {
            return Err(Failure::BadNamespace);
        }
        if !labels::is_service_account(service_account) {
            return Err(Failure::BadServiceAccount);
        }
        labels::validate(labels)?;
        let mut s =
            format!("io.prism/namespace={namespace};io.prism/serviceaccount={service_account};");
        push_labels(&mut s, labels);
        Ok(Canonical(s.into()))
    }

    /// The canonical string of a plain-host workload: a systemd unit's cgroup
    /// path or the glob of the rule that matched it, and the rule's labels.
    pub fn for_cgroup(selector: &str, labels: &Labels) -> Result<Canonical, Failure> {
        if !is_selector(selector) {
            return Err(Failure::BadCgroupName);
        }
        labels::validate(labels)?;
        let mut s = format!("io.prism/cgroup={selector};");
        push_labels(&mut s, labels);
        Ok(Canonical(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// FNV-1a/64 of the string: the bus entry's change detector.
    pub fn label_hash(&self) -> u64 {
        prism_bus::label_hash(self.0.as_bytes())
    }
}

impl fmt::Display for Canonical {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Canonical {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

/// True for labels that take part in an identity.
pub fn is_identity_label(key: &str) -> bool {
    !VOLATILE_KEYS.contains(&key) && !IGNORED_PREFIXES.iter().any(|p| key.starts_with(p))
}

fn push_labels(s: &mut String, labels: &Labels) {
    // BTreeMap iterates in key order: the sort is the map's.
    for (k, v) in labels.iter().filter(|(k, _)| is_identity_label(k)) {
        s.push_str(k);
        s.push('=');
        s.push_str(v);
        s.push(';');
    }
}

/// A cgroup path or glob: printable, bounded, without the separators.
fn is_selector(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SELECTOR
        && s.chars()
            .all(|c| !c.is_control() && c != ';' && c != '=' && c != '\u{7f}')
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::workload::labels::from_pairs as labels;

    #[test]
    fn pod_canonical_is_namespaced_sorted_and_drops_volatile_and_policy_keys() {
        let c = Canonical::for_pod(
            "team-a",
            "api-sa",
            &labels(&[
                ("tier", "frontend"),
                ("app", "api"),
                ("pod-template-hash", "7d9f"),
                ("controller-revision-hash", "abc"),
                ("statefulset.kubernetes.io/pod-name", "api-0"),
                ("batch.kubernetes.io/job-name", "j"),
                ("prism.io/latency-class", "critical"),
                ("prism.io/weight", "90"),
                ("kubectl.kubernetes.io/restartedAt", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.as_str(),
            "io.prism/namespace=team-a;io.prism/serviceaccount=api-sa;app=api;tier=frontend;"
        );
    }

    #[test]
    fn replicas_share_and_policy_does_not_change_the_canonical() {
        let a = Canonical::for_pod(
            "ns",
            "default",
            &labels(&[("app", "x"), ("pod-template-hash", "1")]),
        );
        let b = Canonical::for_pod(
            "ns",
            "default",
            &labels(&[
                ("app", "x"),
                ("pod-template-hash", "2"),
                ("prism.io/latency-class", "batch"),
            ]),
        );
        assert_eq!(a, b);
    }

    #[test]
    fn namespace_and_service_account_separate_identical_labels() {
        let l = labels(&[("app", "x")]);
        let base = Canonical::for_pod("a", "default", &l).unwrap();
        assert_ne!(base, Canonical::for_pod("b", "default", &l).unwrap());
        assert_ne!(base, Canonical::for_pod("a", "other", &l).unwrap());
        assert_ne!(
            base.label_hash(),
            Canonical::for_pod("b", "default", &l).unwrap().label_hash()
        );
    }

    #[test]
    fn a_label_cannot_forge_the_namespace_part() {
        // `;` and `=` can never reach the string: values are validated.
        let forged = labels(&[("x", "1;io.prism/namespace=kube-system")]);
        assert_eq!(
            Canonical::for_pod("a", "default", &forged),
            Err(Failure::BadLabelValue)
        );
        assert_eq!(
            Canonical::for_pod("Kube;System", "default", &Labels::new()),
            Err(Failure::BadNamespace)
        );
        assert_eq!(
            Canonical::for_pod("a", "", &Labels::new()),
            Err(Failure::BadServiceAccount)
        );
    }

    #[test]
    fn cgroup_canonical() {
        let c = Canonical::for_cgroup(
            "system.slice/postgresql*.service",
            &labels(&[("tier", "db"), ("app", "pg")]),
        )
        .unwrap();
        assert_eq!(
            c.as_str(),
            "io.prism/cgroup=system.slice/postgresql*.service;app=pg;tier=db;"
        );
        for bad in ["", "a;b", "a=b", "line\nbreak", "esc\u{1b}"] {
            assert_eq!(
                Canonical::for_cgroup(bad, &Labels::new()),
                Err(Failure::BadCgroupName),
                "{bad:?}"
            );
        }
        assert!(Canonical::for_cgroup(&"s".repeat(MAX_SELECTOR + 1), &Labels::new()).is_err());
    }
}
