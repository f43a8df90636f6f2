//! A Kubernetes pod (as [`pod_json`](crate::pod_json) read it) turned into a
//! workload. Untrusted input: every field that reaches the identity is
//! validated (labels.rs, canonical.rs), and a pod missing what every pod has
//! is refused.

use std::sync::Arc;

use crate::canonical::Canonical;
use crate::failure::Failure;
use crate::labels::Labels;
use crate::pod_cgroup::PodUid;
pub use crate::pod_json::{LenientPod, PodView, read_pod_list};
use crate::policy::NamespacePolicy;
use crate::workload::{Workload, WorkloadKey};

/// What a pod object says for the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodState {
    /// Running or about to: its cgroup gets this workload's entry.
    Live(Workload),
    /// Finished (Succeeded, Failed): it has no cgroup any more.
    Finished(WorkloadKey),
}

/// Interpret one pod. `issues` gets the policy labels that were dropped.
pub fn pod_state(
    pod: &PodView,
    policy: &NamespacePolicy,
    issues: &mut Vec<Failure>,
) -> Result<PodState, Failure> {
    let meta = &pod.meta;
    let uid = pod
        .mirror
        .as_deref()
        .or(meta.uid.as_deref())
        .ok_or(Failure::IncompletePod)?;
    let key = WorkloadKey::Pod(PodUid::parse(uid)?);
    if matches!(pod.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return Ok(PodState::Finished(key));
    }
    let namespace = meta.namespace.as_deref().ok_or(Failure::IncompletePod)?;
    let name = meta.name.as_deref().ok_or(Failure::IncompletePod)?;
    // The API server defaults an empty service account to "default".
    let service_account = pod
        .service_account
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or("default");
    let empty = Labels::new();
    let labels = meta.labels.as_ref().unwrap_or(&empty);
    let canonical = Canonical::for_pod(namespace, service_account, labels)?;
    let policy = policy.for_pod(namespace, labels, issues);
    Ok(PodState::Live(Workload {
        key,
        name: Arc::from(format!("{namespace}/{name}")),
        identity_name: identity_name(namespace, service_account, labels).into(),
        canonical,
        policy,
    }))
}

/// Labels that name an app, most specific first.
const APP_LABELS: &[&str] = &[
    "app.kubernetes.io/name",
    "app",
    "k8s-app",
    "component",
    "name",
];

/// `namespace/app` (or `namespace/sa:<service account>` for pods with no
/// app label): how people call the pods that share an identity.
fn identity_name(namespace: &str, service_account: &str, labels: &Labels) -> String {
    match APP_LABELS.iter().find_map(|k| labels.get(*k)) {
        Some(app) if !app.is_empty() => format!("{namespace}/{app}"),
        _ => format!("{namespace}/sa:{service_account}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prism_bus::LatencyClass;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> PodView {
        match serde_json::from_value::<LenientPod>(v).unwrap() {
            LenientPod::Parsed(p) => *p,
            LenientPod::Malformed(m) => panic!("malformed: {m:?}"),
        }
    }

    fn allow(ns: &[&str]) -> NamespacePolicy {
        NamespacePolicy::new(&ns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn live_pod_with_service_account_and_policy() {
        let p = pod(json!({
            "metadata": {"name": "api-7d9f-x", "namespace": "shop", "uid": "8f6a1c2e-3b4d-4e5f-9a0b-1c2d3e4f5a6b",
                "labels": {"app": "api", "pod-template-hash": "7d9f", "prism.io/latency-class": "critical"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"}},
            "spec": {"serviceAccountName": "api", "containers": [{"name": "api", "image": "x"}]},
            "status": {"phase": "Running", "qosClass": "Burstable"}
        }));
        assert_eq!(p.mirror, None);
        let mut issues = vec![];
        let PodState::Live(w) = pod_state(&p, &allow(&["shop"]), &mut issues).unwrap() else {
            panic!("live")
        };
        assert_eq!(
            w.canonical.as_str(),
            "io.prism/namespace=shop;io.prism/serviceaccount=api;app=api;"
        );
        assert_eq!(&*w.name, "shop/api-7d9f-x");
        assert_eq!(&*w.identity_name, "shop/api");
        assert_eq!(w.policy.class, LatencyClass::Critical);
        assert!(issues.is_empty());
        let mut issues = vec![];
        let PodState::Live(w) = pod_state(&p, &allow(&[]), &mut issues).unwrap() else {
            panic!("live")
        };
        assert_eq!(w.policy.class, LatencyClass::Unset);
        assert_eq!(issues, vec![Failure::CriticalNotAllowed]);
    }

    #[test]
    fn default_service_account_mirror_uid_and_finished_pods() {
        let p = pod(json!({
            "metadata": {"name": "etcd-node1", "namespace": "kube-system", "uid": "11111111-2222-3333-4444-555555555555",
                "annotations": {"kubernetes.io/config.mirror": "0f1e2d3c4b5a69788796a5b4c3d2e1f0"}},
            "spec": {"containers": []}
        }));
        let PodState::Live(w) = pod_state(&p, &allow(&[]), &mut vec![]).unwrap() else {
            panic!("live")
        };
        assert_eq!(
            w.key,
            WorkloadKey::Pod(PodUid::parse("0f1e2d3c4b5a69788796a5b4c3d2e1f0").unwrap())
        );
        assert!(w.canonical.as_str().contains("serviceaccount=default;"));
        assert_eq!(&*w.identity_name, "kube-system/sa:default");

        let done = pod(json!({
            "metadata": {"name": "job-x", "namespace": "batch", "uid": "aaaaaaaa-2222-3333-4444-555555555555"},
            "status": {"phase": "Succeeded"}
        }));
        assert!(matches!(
            pod_state(&done, &allow(&[]), &mut vec![]),
            Ok(PodState::Finished(_))
        ));
    }

    #[test]
    fn refuses_incomplete_and_invalid_pods() {
        let no_uid = pod(json!({"metadata": {"name": "x", "namespace": "a"}}));
        assert_eq!(
            pod_state(&no_uid, &allow(&[]), &mut vec![]),
            Err(Failure::IncompletePod)
        );
        let bad_uid = pod(json!({"metadata": {"name": "x", "namespace": "a", "uid": "../../etc"}}));
        assert_eq!(
            pod_state(&bad_uid, &allow(&[]), &mut vec![]),
            Err(Failure::BadUid)
        );
        let bad_label = pod(
            json!({"metadata": {"name": "x", "namespace": "a", "uid": "abc",
            "labels": {"app": "x\u{1b}[2J"}}}),
        );
        assert_eq!(
            pod_state(&bad_label, &allow(&[]), &mut vec![]),
            Err(Failure::BadLabelValue)
        );
    }
}
