//! A workload's latency class, weight and facets, and who may declare them.
//!
//! Pods declare them with the labels `prism.io/latency-class` (critical |
//! normal | batch), `prism.io/weight` (1..=127, 64 neutral) and
//! `prism.io/facets` (which consumers act on the pod: `.`-separated net,
//! sched, observe, or `none`), which are not part of the identity. A pod can
//! only demote itself: `critical`, a weight above neutral, and facets that
//! leave out one of the feeder's defaults (`--facets`: escaping accounting,
//! tracing or the exec gate) are honoured only in the namespaces the
//! operator allows (`--promote-namespace`); elsewhere they are dropped and
//! counted. A pod may always add facets. An invalid value is dropped and
//! counted too; the pod keeps its identity.

use globset::{Glob, GlobSet, GlobSetBuilder};
use prism_bus::{Facets, LatencyClass, Weight};

use crate::failure::Failure;
use crate::workload::labels::Labels;

pub const CLASS_LABEL: &str = "prism.io/latency-class";
pub const WEIGHT_LABEL: &str = "prism.io/weight";
pub const FACETS_LABEL: &str = "prism.io/facets";

/// What a workload's bus entry says besides its identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Policy {
    pub class: LatencyClass,
    pub weight: Weight,
    /// Which consumers act on it; `None`: the feeder's default (`--facets`).
    pub facets: Option<Facets>,
}

/// `net`, `sched`, `observe`, `.`-separated (a label value has no commas),
/// any case, each at most once; or `none`.
pub fn parse_facets(value: &str) -> Result<Facets, Failure> {
    if value.eq_ignore_ascii_case("none") {
        return Ok(Facets::NONE);
    }
    let mut facets = Facets::NONE;
    for part in value.split('.') {
        let f = match part.to_ascii_lowercase().as_str() {
            "net" => Facets::NET,
            "sched" => Facets::SCHED,
            "observe" => Facets::OBSERVE,
            _ => return Err(Failure::BadFacets),
        };
        if facets.contains(f) {
            return Err(Failure::BadFacets);
        }
        facets = facets.union(f);
    }
    Ok(facets)
}

/// `critical`, `normal` or `batch` (any case).
pub fn parse_class(value: &str) -> Result<LatencyClass, Failure> {
    match value.to_ascii_lowercase().as_str() {
        "critical" => Ok(LatencyClass::Critical),
        "normal" => Ok(LatencyClass::Normal),
        "batch" => Ok(LatencyClass::Batch),
        _ => Err(Failure::BadClass),
    }
}

/// A decimal integer in 1..=127.
pub fn parse_weight(value: &str) -> Result<Weight, Failure> {
    if value.is_empty() || value.len() > 3 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Failure::BadWeight);
    }
    let n: u32 = value.parse().map_err(|_| Failure::BadWeight)?;
    match Weight::new(n) {
        Ok(w) if w.get().is_some() => Ok(w),
        _ => Err(Failure::BadWeight),
    }
}

/// The operator's rule for pods: which namespaces may promote themselves.
#[derive(Debug, Clone)]
pub struct NamespacePolicy {
    promote: GlobSet,
    default_facets: Facets,
}

impl NamespacePolicy {
    /// `globs`: namespaces (shell globs) allowed `critical` and weights above 64.
    pub fn new(globs: &[String]) -> Result<Self, globset::Error> {
        let mut b = GlobSetBuilder::new();
        for g in globs {
            b.add(Glob::new(g)?);
        }
        Ok(NamespacePolicy {
            promote: b.build()?,
            default_facets: Facets::ALL,
        })
    }

    /// The facets every entry gets unless its labels say otherwise (all by
    /// default); only allowed namespaces may leave one out.
    pub fn with_default_facets(mut self, facets: Facets) -> Self {
        self.default_facets = facets;
        self
    }

    pub fn may_promote(&self, namespace: &str) -> bool {
        self.promote.is_match(namespace)
    }

    /// The policy a pod's labels ask for, less what its namespace may not
    /// have; `issues` gets one entry per label dropped.
    pub fn for_pod(&self, namespace: &str, labels: &Labels, issues: &mut Vec<Failure>) -> Policy {
        let may_promote = self.may_promote(namespace);
        let mut policy = Policy::default();
        if let Some(v) = labels.get(CLASS_LABEL) {
            match parse_class(v) {
                Ok(LatencyClass::Critical) if !may_promote => {
                    issues.push(Failure::CriticalNotAllowed)
                }
                Ok(class) => policy.class = class,
                Err(f) => issues.push(f),
            }
        }
        if let Some(v) = labels.get(WEIGHT_LABEL) {
            match parse_weight(v) {
                Ok(w) if w > Weight::NEUTRAL && !may_promote => {
                    issues.push(Failure::WeightNotAllowed)
                }
                Ok(w) => policy.weight = w,
                Err(f) => issues.push(f),
            }
        }
        if let Some(v) = labels.get(FACETS_LABEL) {
            match parse_facets(v) {
                Ok(f) if !may_promote && !f.contains(self.default_facets) => {
                    issues.push(Failure::FacetsNotAllowed)
                }
                Ok(f) => policy.facets = Some(f),
                Err(f) => issues.push(f),
            }
        }
        policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::workload::labels::from_pairs as labels;

    #[test]
    fn class_and_weight_values() {
        assert_eq!(parse_class("critical"), Ok(LatencyClass::Critical));
        assert_eq!(parse_class("Batch"), Ok(LatencyClass::Batch));
        assert_eq!(parse_class("superfast"), Err(Failure::BadClass));
        assert_eq!(parse_class(""), Err(Failure::BadClass));
        assert_eq!(parse_weight("1").map(|w| w.raw()), Ok(1));
        assert_eq!(parse_weight("127").map(|w| w.raw()), Ok(127));
        for bad in ["0", "128", "999", "-1", "+5", "1.5", "", "abc", "0127"] {
            assert_eq!(parse_weight(bad), Err(Failure::BadWeight), "{bad:?}");
        }
    }

    #[test]
    fn facet_values() {
        assert_eq!(parse_facets("net.sched.observe"), Ok(Facets::ALL));
        assert_eq!(parse_facets("Observe"), Ok(Facets::OBSERVE));
        assert_eq!(parse_facets("none"), Ok(Facets::NONE));
        for bad in ["", "net,sched", "net.", "net.net", "cpu", "none.net", "."] {
            assert_eq!(parse_facets(bad), Err(Failure::BadFacets), "{bad:?}");
        }
    }

    #[test]
    fn a_pod_may_add_facets_but_only_allowed_namespaces_drop_them() {
        let p = NamespacePolicy::new(&["prod-*".into()])
            .unwrap()
            .with_default_facets(Facets::NET.union(Facets::OBSERVE));
        let mut issues = vec![];
        let all = labels(&[(FACETS_LABEL, "net.sched.observe")]);
        assert_eq!(
            p.for_pod("tenant", &all, &mut issues).facets,
            Some(Facets::ALL)
        );
        let quiet = labels(&[(FACETS_LABEL, "sched")]);
        assert_eq!(p.for_pod("tenant", &quiet, &mut issues).facets, None);
        assert_eq!(issues, vec![Failure::FacetsNotAllowed]);
        issues.clear();
        assert_eq!(
            p.for_pod("prod-eu", &quiet, &mut issues).facets,
            Some(Facets::SCHED)
        );
        assert!(issues.is_empty());
        assert_eq!(p.for_pod("tenant", &labels(&[]), &mut issues).facets, None);
        let bad = labels(&[(FACETS_LABEL, "everything")]);
        assert_eq!(p.for_pod("prod-eu", &bad, &mut issues).facets, None);
        assert_eq!(issues, vec![Failure::BadFacets]);
    }

    #[test]
    fn only_allowed_namespaces_may_promote() {
        let p = NamespacePolicy::new(&["prod-*".into(), "kube-system".into()]).unwrap();
        let crit = labels(&[(CLASS_LABEL, "critical"), (WEIGHT_LABEL, "120")]);
        let mut issues = vec![];
        let got = p.for_pod("prod-eu", &crit, &mut issues);
        assert_eq!(got.class, LatencyClass::Critical);
        assert_eq!(got.weight.raw(), 120);
        assert!(issues.is_empty());

        let got = p.for_pod("tenant", &crit, &mut issues);
        assert_eq!(got, Policy::default());
        assert_eq!(
            issues,
            vec![Failure::CriticalNotAllowed, Failure::WeightNotAllowed]
        );
    }

    #[test]
    fn any_namespace_may_demote() {
        let p = NamespacePolicy::new(&[]).unwrap();
        let mut issues = vec![];
        let got = p.for_pod(
            "tenant",
            &labels(&[(CLASS_LABEL, "batch"), (WEIGHT_LABEL, "16")]),
            &mut issues,
        );
        assert_eq!(got.class, LatencyClass::Batch);
        assert_eq!(got.weight.raw(), 16);
        assert!(issues.is_empty());
    }

    #[test]
    fn invalid_values_are_dropped_and_reported() {
        let p = NamespacePolicy::new(&["*".into()]).unwrap();
        let mut issues = vec![];
        let got = p.for_pod(
            "ns",
            &labels(&[(CLASS_LABEL, "urgent"), (WEIGHT_LABEL, "500")]),
            &mut issues,
        );
        assert_eq!(got, Policy::default());
        assert_eq!(issues, vec![Failure::BadClass, Failure::BadWeight]);
    }
}
