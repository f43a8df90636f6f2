//! A Kubernetes pod (as [`json`] read it) turned into a workload. Untrusted
//! input: every field that reaches the identity is validated
//! ([`crate::workload::labels`], [`crate::workload::canonical`]), and a pod
//! missing what every pod has is refused.
//!
//! - [`json`]: reading pod objects and lists, leniently;
//! - [`cgroup_name`]: how the kubelet names a pod's cgroup, read backwards;
//! - [`claims`]: which pod object holds each workload key.

pub mod cgroup_name;
pub mod claims;
pub mod json;

use std::sync::Arc;

use crate::failure::Failure;
use crate::pod::cgroup_name::PodUid;
pub use crate::pod::json::{LenientPod, PodView, read_pod_list};
use crate::workload::canonical::Canonical;
use crate::workload::declared::NamespacePolicy;
use crate::workload::labels::Labels;
use crate::workload::{Workload, WorkloadKey};

/// What a pod object says for the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodState {
    /// Running or about to: its cgroup gets this workload's entry.
    Live(Workload),
    /// Finished (Succeeded, Failed): it has no cgroup any more.
    Finished(WorkloadKey),
}

/// Whether a source's pods can be mirror pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mirrors {
    /// The API server's: a static pod appears as its mirror pod, whose
    /// annotation names the static pod's uid (believed as [`mirror_uid`] does).
    Believe,
    /// The kubelet's `/pods`: it lists the pods it runs, static pods under
    /// their own uid, mirror pods never; the annotation is ignored.
    Ignore,
}

/// The uid a mirror pod's annotation names (the static pod's, which names
/// its cgroup), if the pod is a mirror pod the kubelet made; `Ok(None)` for
/// a pod without the annotation.
///
/// Any user allowed to create pods can set the annotation. What only the
/// kubelet's mirror pods have: the kubelet makes each one controlled by its
/// Node (an owner reference, kind Node, `controller: true`, the Node's uid,
/// which the garbage collector checks; the NodeRestriction admission plugin
/// lets a kubelet create only mirror pods that name its own Node), bound to
/// that node (the API server requires `spec.nodeName` with the annotation
/// and keeps the annotation immutable, kubernetes/kubernetes#45775), and
/// naming no service account (the ServiceAccount admission plugin refuses
/// mirror pods that do). A pod with the annotation but not all of that is
/// refused ([`Failure::ForgedMirror`]); a forger that passes still cannot
/// take a key a mirror pod holds (claims.rs).
pub fn mirror_uid(pod: &PodView) -> Result<Option<&str>, Failure> {
    let Some(uid) = pod.mirror.as_deref() else {
        return Ok(None);
    };
    let node = pod.node_name.as_deref().filter(|n| !n.is_empty());
    let made_by_its_kubelet = node.is_some() && pod.controlling_node.as_deref() == node;
    let no_service_account = pod.service_account.as_deref().is_none_or(str::is_empty);
    if made_by_its_kubelet && no_service_account {
        Ok(Some(uid))
    } else {
        Err(Failure::ForgedMirror)
    }
}

/// Interpret one pod from a source whose pods are `mirrors`. `issues` gets
/// the policy labels that were dropped.
pub fn pod_state(
    pod: &PodView,
    mirrors: Mirrors,
    policy: &NamespacePolicy,
    issues: &mut Vec<Failure>,
) -> Result<PodState, Failure> {
    let meta = &pod.meta;
    let mirror = match mirrors {
        Mirrors::Believe => mirror_uid(pod)?,
        Mirrors::Ignore => None,
    };
    let uid = mirror
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
        let PodState::Live(w) =
            pod_state(&p, Mirrors::Believe, &allow(&["shop"]), &mut issues).unwrap()
        else {
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
        let PodState::Live(w) = pod_state(&p, Mirrors::Believe, &allow(&[]), &mut issues).unwrap()
        else {
            panic!("live")
        };
        assert_eq!(w.policy.class, LatencyClass::Unset);
        assert_eq!(issues, vec![Failure::CriticalNotAllowed]);
    }

    #[test]
    fn default_service_account_mirror_uid_and_finished_pods() {
        let p = pod(json!({
            "metadata": {"name": "etcd-node1", "namespace": "kube-system", "uid": "11111111-2222-3333-4444-555555555555",
                "annotations": {"kubernetes.io/config.mirror": "0f1e2d3c4b5a69788796a5b4c3d2e1f0"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "node1", "uid": "n1", "controller": true}]},
            "spec": {"nodeName": "node1", "containers": []}
        }));
        let PodState::Live(w) = pod_state(&p, Mirrors::Believe, &allow(&[]), &mut vec![]).unwrap()
        else {
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
            pod_state(&done, Mirrors::Believe, &allow(&[]), &mut vec![]),
            Ok(PodState::Finished(_))
        ));
    }

    #[test]
    fn a_mirror_annotation_counts_only_on_a_mirror_pod_its_kubelet_made() {
        let mirror = json!({
            "metadata": {"name": "kube-apiserver-node1", "namespace": "kube-system", "uid": "6a7b8c9d-0e1f-4a2b-83c4-d5e6f7a8b9c0",
                "annotations": {"kubernetes.io/config.mirror": "8c1b9f3a2d4e5f60718293a4b5c6d7e8"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "node1", "uid": "n1", "controller": true}]},
            "spec": {"nodeName": "node1"}
        });
        let static_pod =
            WorkloadKey::Pod(PodUid::parse("8c1b9f3a2d4e5f60718293a4b5c6d7e8").unwrap());
        let state =
            |v: &serde_json::Value, m| pod_state(&pod(v.clone()), m, &allow(&[]), &mut vec![]);
        let Ok(PodState::Live(w)) = state(&mirror, Mirrors::Believe) else {
            panic!("a real mirror pod")
        };
        assert_eq!(w.key, static_pod);
        // The kubelet's /pods never lists mirror pods: its uid is the pod's own.
        let Ok(PodState::Live(w)) = state(&mirror, Mirrors::Ignore) else {
            panic!("live")
        };
        assert_eq!(
            w.key,
            WorkloadKey::Pod(PodUid::parse("6a7b8c9d-0e1f-4a2b-83c4-d5e6f7a8b9c0").unwrap())
        );
        // Forgeries: each lacks one thing only the kubelet's mirror pods have.
        let forged = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut v = mirror.clone();
            edit(&mut v);
            state(&v, Mirrors::Believe)
        };
        for (what, edit) in [
            (
                "no owner",
                &(|v: &mut serde_json::Value| v["metadata"]["ownerReferences"] = json!([]))
                    as &dyn Fn(&mut serde_json::Value),
            ),
            ("another node owns it", &|v| {
                v["metadata"]["ownerReferences"][0]["name"] = json!("node2")
            }),
            ("owned, not controlled", &|v| {
                v["metadata"]["ownerReferences"][0]["controller"] = json!(false)
            }),
            ("a ReplicaSet controls it", &|v| {
                v["metadata"]["ownerReferences"][0]["kind"] = json!("ReplicaSet")
            }),
            ("not bound", &|v| v["spec"] = json!({})),
            ("a service account", &|v| {
                v["spec"]["serviceAccountName"] = json!("admin")
            }),
        ] {
            assert_eq!(forged(edit), Err(Failure::ForgedMirror), "{what}");
        }
    }

    #[test]
    fn refuses_incomplete_and_invalid_pods() {
        let no_uid = pod(json!({"metadata": {"name": "x", "namespace": "a"}}));
        assert_eq!(
            pod_state(&no_uid, Mirrors::Believe, &allow(&[]), &mut vec![]),
            Err(Failure::IncompletePod)
        );
        let bad_uid = pod(json!({"metadata": {"name": "x", "namespace": "a", "uid": "../../etc"}}));
        assert_eq!(
            pod_state(&bad_uid, Mirrors::Believe, &allow(&[]), &mut vec![]),
            Err(Failure::BadUid)
        );
        let bad_label = pod(
            json!({"metadata": {"name": "x", "namespace": "a", "uid": "abc",
            "labels": {"app": "x\u{1b}[2J"}}}),
        );
        assert_eq!(
            pod_state(&bad_label, Mirrors::Believe, &allow(&[]), &mut vec![]),
            Err(Failure::BadLabelValue)
        );
    }
}
