//! Every way an input or an operation can fail, as one closed set: each is
//! logged, counted under its reason in `prism_feeder_failures_total`, and
//! never stops the feeder serving everything else. A closed set keeps the
//! metric's label cardinality bounded whatever the input.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Failure {
    /// A pod object or pod list that is not valid JSON of the expected shape.
    MalformedPod,
    /// A pod without the fields every pod has (uid, namespace, name).
    IncompletePod,
    /// A label key that is not a Kubernetes qualified name.
    BadLabelKey,
    /// A label value that is not a Kubernetes label value.
    BadLabelValue,
    /// More labels than a workload may have.
    TooManyLabels,
    BadNamespace,
    BadServiceAccount,
    /// A pod uid that cannot name a cgroup.
    BadUid,
    /// `prism.io/latency-class` is not critical, normal or batch.
    BadClass,
    /// `prism.io/weight` is not an integer in 1..=127.
    BadWeight,
    /// `critical` from a namespace the operator did not allow.
    CriticalNotAllowed,
    /// A weight above neutral from a namespace not allowed to promote.
    WeightNotAllowed,
    /// `prism.io/facets` is not a `.`-separated list of net, sched, observe, or `none`.
    BadFacets,
    /// Facets that drop one of the feeder's defaults, from a namespace not allowed to.
    FacetsNotAllowed,
    /// A cgroup rule that cannot be used (bad glob, label or class).
    BadRule,
    /// A cgroup directory name that cannot be part of an identity.
    BadCgroupName,
    /// The identity allocator could not give an id (space, etcd).
    Allocation,
    /// The bus map is full: the entry waits for room.
    BusFull,
    /// Any other bus syscall failure.
    BusWrite,
    /// A source could not reach its API (it retries with backoff).
    SourceUnavailable,
    /// Reading the cgroup tree failed (a directory vanished mid-walk is not one).
    CgroupWatch,
    /// A pod carrying the mirror annotation that is no mirror pod the
    /// kubelet made (pod.rs, `mirror_uid`): it gets no identity.
    ForgedMirror,
    /// A pod naming a workload key another pod object holds (claims.rs).
    ClaimConflict,
}

impl Failure {
    pub const ALL: [Failure; 23] = [
        Failure::MalformedPod,
        Failure::IncompletePod,
        Failure::BadLabelKey,
        Failure::BadLabelValue,
        Failure::TooManyLabels,
        Failure::BadNamespace,
        Failure::BadServiceAccount,
        Failure::BadUid,
        Failure::BadClass,
        Failure::BadWeight,
        Failure::CriticalNotAllowed,
        Failure::WeightNotAllowed,
        Failure::BadFacets,
        Failure::FacetsNotAllowed,
        Failure::BadRule,
        Failure::BadCgroupName,
        Failure::Allocation,
        Failure::BusFull,
        Failure::BusWrite,
        Failure::SourceUnavailable,
        Failure::CgroupWatch,
        Failure::ForgedMirror,
        Failure::ClaimConflict,
    ];

    /// The `reason` label of the failure metric.
    pub fn reason(self) -> &'static str {
        match self {
            Failure::MalformedPod => "malformed_pod",
            Failure::IncompletePod => "incomplete_pod",
            Failure::BadLabelKey => "bad_label_key",
            Failure::BadLabelValue => "bad_label_value",
            Failure::TooManyLabels => "too_many_labels",
            Failure::BadNamespace => "bad_namespace",
            Failure::BadServiceAccount => "bad_service_account",
            Failure::BadUid => "bad_uid",
            Failure::BadClass => "bad_class",
            Failure::BadWeight => "bad_weight",
            Failure::CriticalNotAllowed => "critical_not_allowed",
            Failure::WeightNotAllowed => "weight_not_allowed",
            Failure::BadFacets => "bad_facets",
            Failure::FacetsNotAllowed => "facets_not_allowed",
            Failure::BadRule => "bad_rule",
            Failure::BadCgroupName => "bad_cgroup_name",
            Failure::Allocation => "allocation",
            Failure::BusFull => "bus_full",
            Failure::BusWrite => "bus_write",
            Failure::SourceUnavailable => "source_unavailable",
            Failure::CgroupWatch => "cgroup_watch",
            Failure::ForgedMirror => "forged_mirror",
            Failure::ClaimConflict => "claim_conflict",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// An untrusted string (a pod name, a label) as a log line may show it:
/// at most 80 characters, control characters escaped.
pub fn shown(s: &str) -> String {
    const MAX: usize = 80;
    let mut out: String = s.chars().take(MAX).flat_map(char::escape_debug).collect();
    if s.chars().nth(MAX).is_some() {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_escapes_and_truncates() {
        assert_eq!(shown("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
        assert_eq!(shown(&"x".repeat(100)).len(), 83);
    }

    #[test]
    fn reasons_are_distinct() {
        let mut r: Vec<_> = Failure::ALL.iter().map(|f| f.reason()).collect();
        r.sort_unstable();
        r.dedup();
        assert_eq!(r.len(), Failure::ALL.len());
    }
}
