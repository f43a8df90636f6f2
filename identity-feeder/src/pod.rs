//! A Kubernetes pod, as the API server or the kubelet gives it, turned into
//! a workload. Untrusted input: every field that reaches the identity is
//! validated (labels.rs, canonical.rs), a pod missing what every pod has is
//! refused, and a pod list is parsed item by item so one malformed pod
//! costs only itself.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::canonical::Canonical;
use crate::failure::Failure;
use crate::labels::Labels;
use crate::pod_cgroup::PodUid;
use crate::policy::NamespacePolicy;
use crate::workload::{Workload, WorkloadKey};

/// On a mirror pod (the API's view of a static pod) the kubelet's own uid
/// for it, which names its cgroup.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

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
    pod: &Pod,
    policy: &NamespacePolicy,
    issues: &mut Vec<Failure>,
) -> Result<PodState, Failure> {
    let meta = &pod.metadata;
    let key = WorkloadKey::Pod(PodUid::parse(
        cgroup_uid(pod).ok_or(Failure::IncompletePod)?,
    )?);
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return Ok(PodState::Finished(key));
    }
    let namespace = meta.namespace.as_deref().ok_or(Failure::IncompletePod)?;
    let name = meta.name.as_deref().ok_or(Failure::IncompletePod)?;
    let spec = pod.spec.as_ref();
    // The API server defaults an empty service account to "default".
    let service_account = spec
        .and_then(|s| {
            s.service_account_name
                .as_deref()
                .or(s.service_account.as_deref())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or("default");
    let empty = Labels::new();
    let labels = meta.labels.as_ref().unwrap_or(&empty);
    let canonical = Canonical::for_pod(namespace, service_account, labels)?;
    let policy = policy.for_pod(namespace, labels, issues);
    Ok(PodState::Live(Workload {
        key,
        name: Arc::from(format!("{namespace}/{name}")),
        canonical,
        policy,
    }))
}

/// The uid the pod's cgroup is named after.
fn cgroup_uid(pod: &Pod) -> Option<&str> {
    let meta = &pod.metadata;
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(MIRROR_ANNOTATION))
        .or(meta.uid.as_ref())
        .map(String::as_str)
}

/// Which workload a pod is, even one that is otherwise refused (to delete it).
pub fn pod_key(pod: &Pod) -> Option<WorkloadKey> {
    PodUid::parse(cgroup_uid(pod)?).ok().map(WorkloadKey::Pod)
}

/// `{"items": [...]}` of a pod list, each item left unparsed.
#[derive(Deserialize)]
struct RawPodList<'a> {
    #[serde(borrow)]
    items: Vec<&'a RawValue>,
}

/// Parse a pod list (the kubelet's `/pods`): `Err` if the document itself is
/// malformed; otherwise every pod that parses, and a failure per pod that
/// does not.
pub fn parse_pod_list(body: &[u8]) -> Result<Vec<Result<Pod, Failure>>, Failure> {
    let list: RawPodList = serde_json::from_slice(body).map_err(|_| Failure::MalformedPod)?;
    Ok(list
        .items
        .into_iter()
        .map(|raw| serde_json::from_str::<Pod>(raw.get()).map_err(|_| Failure::MalformedPod))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prism_bus::LatencyClass;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn allow(ns: &[&str]) -> NamespacePolicy {
        NamespacePolicy::new(&ns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn live_pod_with_service_account_and_policy() {
        let p = pod(json!({
            "metadata": {"name": "api-7d9f-x", "namespace": "shop", "uid": "8f6a1c2e-3b4d-4e5f-9a0b-1c2d3e4f5a6b",
                "labels": {"app": "api", "pod-template-hash": "7d9f", "prism.io/latency-class": "critical"}},
            "spec": {"serviceAccountName": "api", "containers": []},
            "status": {"phase": "Running", "qosClass": "Burstable"}
        }));
        let mut issues = vec![];
        let PodState::Live(w) = pod_state(&p, &allow(&["shop"]), &mut issues).unwrap() else {
            panic!("live")
        };
        assert_eq!(
            w.canonical.as_str(),
            "io.prism/namespace=shop;io.prism/serviceaccount=api;app=api;"
        );
        assert_eq!(&*w.name, "shop/api-7d9f-x");
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

    #[test]
    fn a_malformed_item_costs_only_itself() {
        let body = br#"{"kind":"PodList","items":[
            {"metadata":{"name":"a","namespace":"n","uid":"a1"}},
            {"metadata":{"name":"b","namespace":"n","uid":"b2","labels":{"app":7}}},
            {"metadata":{"name":"c","namespace":"n","uid":"c3"}}]}"#;
        let pods = parse_pod_list(body).unwrap();
        assert_eq!(pods.len(), 3);
        assert!(pods[0].is_ok() && pods[2].is_ok());
        assert_eq!(pods[1].as_ref().err(), Some(&Failure::MalformedPod));
        assert_eq!(
            parse_pod_list(b"{\"items\": [").err(),
            Some(Failure::MalformedPod)
        );
        assert_eq!(parse_pod_list(b"[]").err(), Some(Failure::MalformedPod));
    }
}
