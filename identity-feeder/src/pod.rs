//! A Kubernetes pod, as the API server or the kubelet gives it, turned into
//! a workload. Untrusted input: every field that reaches the identity is
//! validated (labels.rs, canonical.rs), a pod missing what every pod has is
//! refused, and pods are parsed one by one so a malformed one costs only
//! itself. Only the few fields the feeder reads are kept ([`PodView`]): the
//! spec, the status and most metadata are skipped, which keeps a node's
//! worth of pods small in memory.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::canonical::Canonical;
use crate::failure::Failure;
use crate::labels::Labels;
use crate::pod_cgroup::PodUid;
use crate::policy::NamespacePolicy;
use crate::workload::{Workload, WorkloadKey};

/// On a mirror pod (the API's view of a static pod) the kubelet's own uid
/// for it, which names its cgroup.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// What the feeder reads of a pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodView {
    /// name, namespace, uid, resourceVersion and labels; nothing else.
    pub meta: ObjectMeta,
    /// The mirror annotation, if any.
    pub mirror: Option<String>,
    pub service_account: Option<String>,
    pub phase: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    labels: Option<Labels>,
    #[serde(default, deserialize_with = "mirror_only")]
    annotations: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawSpec {
    service_account_name: Option<String>,
    service_account: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawStatus {
    phase: Option<String>,
}

#[derive(Deserialize)]
struct RawPod {
    #[serde(default)]
    metadata: RawMeta,
    #[serde(default)]
    spec: Option<RawSpec>,
    #[serde(default)]
    status: Option<RawStatus>,
}

/// Of all annotations, only the mirror one (the others can be large).
fn mirror_only<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let all: Option<std::collections::BTreeMap<String, String>> = Option::deserialize(d)?;
    Ok(all.and_then(|mut a| a.remove(MIRROR_ANNOTATION)))
}

impl From<RawPod> for PodView {
    fn from(p: RawPod) -> PodView {
        let m = p.metadata;
        let spec = p.spec.unwrap_or_default();
        PodView {
            meta: ObjectMeta {
                name: m.name,
                namespace: m.namespace,
                uid: m.uid,
                resource_version: m.resource_version,
                labels: m.labels,
                ..ObjectMeta::default()
            },
            mirror: m.annotations,
            service_account: spec.service_account_name.or(spec.service_account),
            phase: p.status.and_then(|s| s.phase),
        }
    }
}

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
        canonical,
        policy,
    }))
}

/// A pod as a list or a watch delivers it, read on its own: a malformed one
/// stays a failure (with what of its metadata reads) instead of failing the
/// whole list or stream it came in.
#[derive(Debug, Clone)]
pub enum LenientPod {
    Parsed(Box<PodView>),
    Malformed(Box<ObjectMeta>),
}

impl LenientPod {
    pub fn pod(&self) -> Result<&PodView, Failure> {
        match self {
            LenientPod::Parsed(p) => Ok(p),
            LenientPod::Malformed(_) => Err(Failure::MalformedPod),
        }
    }

    /// Which workload it is, even if otherwise refused (to withdraw it).
    pub fn key(&self) -> Option<WorkloadKey> {
        let uid = match self {
            LenientPod::Parsed(p) => p.mirror.as_deref().or(p.meta.uid.as_deref()),
            LenientPod::Malformed(m) => m.uid.as_deref(),
        };
        PodUid::parse(uid?).ok().map(WorkloadKey::Pod)
    }
}

/// The few metadata fields a malformed pod may still be known by.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct IdOnly {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
}

#[derive(Deserialize, Default)]
struct MetaOnly {
    #[serde(default)]
    metadata: IdOnly,
}

impl<'de> Deserialize<'de> for LenientPod {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A JSON value first, so a wrong field fails only this pod. (A watch
        // event is buffered by serde before its object is read: this has to
        // work from any deserializer, which rules out borrowing raw JSON.)
        let value = serde_json::Value::deserialize(d)?;
        if let Ok(pod) = RawPod::deserialize(&value) {
            return Ok(LenientPod::Parsed(Box::new(pod.into())));
        }
        let m = MetaOnly::deserialize(&value).unwrap_or_default().metadata;
        Ok(LenientPod::Malformed(Box::new(ObjectMeta {
            name: m.name,
            namespace: m.namespace,
            uid: m.uid,
            resource_version: m.resource_version,
            ..ObjectMeta::default()
        })))
    }
}

impl kube::Resource for LenientPod {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        <Pod as kube::Resource>::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        <Pod as kube::Resource>::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        <Pod as kube::Resource>::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        <Pod as kube::Resource>::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        match self {
            LenientPod::Parsed(p) => &p.meta,
            LenientPod::Malformed(m) => m,
        }
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            LenientPod::Parsed(p) => &mut p.meta,
            LenientPod::Malformed(m) => m,
        }
    }
}

/// Read a pod list (the kubelet's `/pods`), handing each pod to `each` as
/// it is read, so a big list is never held whole: `Err` if the document is
/// malformed (after the pods before the fault were handed over).
pub fn read_pod_list(body: &[u8], each: impl FnMut(LenientPod)) -> Result<(), Failure> {
    let mut de = serde_json::Deserializer::from_slice(body);
    PodListSeed(each)
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|_| Failure::MalformedPod)
}

/// `{"items": [...], anything else}`, each item to the closure.
struct PodListSeed<F>(F);

impl<'de, F: FnMut(LenientPod)> DeserializeSeed<'de> for PodListSeed<F> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, F: FnMut(LenientPod)> Visitor<'de> for PodListSeed<F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a pod list")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let mut items = false;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == "items" {
                map.next_value_seed(ItemsSeed(&mut self.0))?;
                items = true;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if items {
            Ok(())
        } else {
            Err(serde::de::Error::missing_field("items"))
        }
    }
}

struct ItemsSeed<'a, F>(&'a mut F);

impl<'de, F: FnMut(LenientPod)> DeserializeSeed<'de> for ItemsSeed<'_, F> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(LenientPod)> Visitor<'de> for ItemsSeed<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of pods")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(pod) = seq.next_element::<LenientPod>()? {
            (self.0)(pod);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;
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
            {"metadata":{"name":"c","namespace":"n","uid":"c3"}, "spec": 5}]}"#;
        let mut pods = vec![];
        read_pod_list(body, |p| pods.push(p)).unwrap();
        assert_eq!(pods.len(), 3);
        assert!(pods[0].pod().is_ok());
        assert_eq!(pods[1].pod().err(), Some(Failure::MalformedPod));
        assert_eq!(
            pods[1].meta().uid.as_deref(),
            Some("b2"),
            "still known by its uid"
        );
        assert_eq!(
            pods[1].key(),
            Some(WorkloadKey::Pod(PodUid::parse("b2").unwrap()))
        );
        assert_eq!(pods[2].pod().err(), Some(Failure::MalformedPod));
        for bad in [
            &b"{\"items\": ["[..],
            b"[]",
            b"{\"kind\":\"PodList\"}",
            b"{\"items\":[]} x",
        ] {
            assert_eq!(
                read_pod_list(bad, drop),
                Err(Failure::MalformedPod),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn recorded_pods_read_as_the_full_type_does() {
        // The view must agree with k8s-openapi's full Pod on what it reads.
        let list: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/api-pods-node-1.json")).unwrap();
        for item in list["items"].as_array().unwrap() {
            let full: Pod = serde_json::from_value(item.clone()).expect("a valid Pod");
            let view = pod(item.clone());
            assert_eq!(view.meta.uid, full.metadata.uid);
            assert_eq!(view.meta.labels, full.metadata.labels);
            assert_eq!(
                view.mirror,
                full.metadata
                    .annotations
                    .and_then(|a| a.get(MIRROR_ANNOTATION).cloned())
            );
            let spec = full.spec.unwrap();
            assert_eq!(
                view.service_account,
                spec.service_account_name.or(spec.service_account)
            );
            assert_eq!(view.phase, full.status.and_then(|s| s.phase));
        }
    }
}
