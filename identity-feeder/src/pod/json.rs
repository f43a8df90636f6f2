//! Reading pods from JSON, one at a time and leniently: of each pod only the
//! few fields the feeder uses are kept ([`PodView`]), everything else (spec,
//! status, managed fields, most annotations: nearly all the bytes) is
//! skipped without being built, and a pod whose fields have the wrong shape
//! becomes [`LenientPod::Malformed`] instead of failing the list or watch
//! stream it came in. Works from any serde deserializer: a watch event is
//! buffered by serde before its object is read.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::{DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::failure::Failure;
use crate::workload::labels::Labels;

/// On a mirror pod (the API's view of a static pod) the kubelet's own uid
/// for it, which names its cgroup.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// What the feeder reads of a pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodView {
    /// name, namespace, uid, resourceVersion and labels; nothing else.
    pub meta: ObjectMeta,
    /// The mirror annotation, if any (believe it only as
    /// [`mirror_uid`](crate::pod::mirror_uid) does).
    pub mirror: Option<String>,
    /// The name of the Node that controls it (`ownerReferences`, kind Node,
    /// `controller: true`): what the kubelet sets on the mirror pods it makes.
    pub controlling_node: Option<String>,
    /// `spec.nodeName`: the node it is bound to.
    pub node_name: Option<String>,
    pub service_account: Option<String>,
    pub phase: Option<String>,
}

/// An owner reference, of which the feeder reads kind, name and controller.
#[derive(Debug, Clone, Deserialize)]
struct OwnerReference {
    kind: String,
    name: String,
    #[serde(default)]
    controller: Option<bool>,
}

/// A pod as a list or a watch delivers it.
#[derive(Debug, Clone)]
pub enum LenientPod {
    Parsed(Box<PodView>),
    /// A field the feeder reads has the wrong shape; `meta` holds what read.
    Malformed(Box<ObjectMeta>),
}

impl LenientPod {
    pub fn pod(&self) -> Result<&PodView, Failure> {
        match self {
            LenientPod::Parsed(p) => Ok(p),
            LenientPod::Malformed(_) => Err(Failure::MalformedPod),
        }
    }
}

/// A value read as `T` if it is one; consumed either way.
struct Lenient<T>(Result<T, ()>);

impl<'de, T: DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Only small values (names, labels) go through here.
        let v = serde_json::Value::deserialize(d)?;
        Ok(Lenient(T::deserialize(v).map_err(drop)))
    }
}

/// An object of which some keys matter: [`Fields::pick`] reads the ones it
/// wants, all others are skipped unread. A value that is no object at all
/// leaves `bad` set.
trait Fields: Default {
    fn pick<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error>;
    fn bad(&mut self);
}

/// Read the next value leniently into `slot`; false if it had the wrong shape.
fn take<'de, A: MapAccess<'de>, T: DeserializeOwned>(
    map: &mut A,
    slot: &mut Option<T>,
) -> Result<bool, A::Error> {
    match map.next_value::<Lenient<Option<T>>>()?.0 {
        Ok(v) => {
            *slot = v;
            Ok(true)
        }
        Err(()) => Ok(false),
    }
}

struct ObjectSeed<F>(PhantomData<F>);

impl<'de, F: Fields> DeserializeSeed<'de> for ObjectSeed<F> {
    type Value = F;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<F, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, F: Fields> Visitor<'de> for ObjectSeed<F> {
    type Value = F;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<F, A::Error> {
        let mut fields = F::default();
        while let Some(key) = map.next_key::<Key>()? {
            if !fields.pick(&key.0, &mut map)? {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(fields)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<F, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(bad())
    }

    fn visit_bool<E>(self, _: bool) -> Result<F, E> {
        Ok(bad())
    }
    fn visit_i64<E>(self, _: i64) -> Result<F, E> {
        Ok(bad())
    }
    fn visit_u64<E>(self, _: u64) -> Result<F, E> {
        Ok(bad())
    }
    fn visit_f64<E>(self, _: f64) -> Result<F, E> {
        Ok(bad())
    }
    fn visit_str<E>(self, _: &str) -> Result<F, E> {
        Ok(bad())
    }
    fn visit_unit<E>(self) -> Result<F, E> {
        Ok(bad())
    }
    fn visit_none<E>(self) -> Result<F, E> {
        Ok(bad())
    }
}

fn bad<F: Fields>() -> F {
    let mut f = F::default();
    f.bad();
    f
}

/// A map key, borrowed from the input when it can be.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

#[derive(Default)]
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    labels: Option<Labels>,
    mirror: Option<String>,
    owners: Option<Vec<OwnerReference>>,
    bad: bool,
}

impl Fields for Meta {
    fn pick<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        let ok = match key {
            "name" => take(map, &mut self.name)?,
            "namespace" => take(map, &mut self.namespace)?,
            "uid" => take(map, &mut self.uid)?,
            "resourceVersion" => take(map, &mut self.resource_version)?,
            "labels" => take(map, &mut self.labels)?,
            "ownerReferences" => take(map, &mut self.owners)?,
            "annotations" => {
                let a: Annotations = map.next_value_seed(ObjectSeed(PhantomData))?;
                self.mirror = a.mirror;
                !a.bad
            }
            _ => return Ok(false),
        };
        self.bad |= !ok;
        Ok(true)
    }

    fn bad(&mut self) {
        self.bad = true;
    }
}

/// Of all annotations only the mirror one: the others can be large.
#[derive(Default)]
struct Annotations {
    mirror: Option<String>,
    bad: bool,
}

impl Fields for Annotations {
    fn pick<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        if key != MIRROR_ANNOTATION {
            return Ok(false);
        }
        self.bad |= !take(map, &mut self.mirror)?;
        Ok(true)
    }

    fn bad(&mut self) {
        self.bad = true;
    }
}

#[derive(Default)]
struct Spec {
    service_account_name: Option<String>,
    service_account: Option<String>,
    node_name: Option<String>,
    bad: bool,
}

impl Fields for Spec {
    fn pick<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        let ok = match key {
            "serviceAccountName" => take(map, &mut self.service_account_name)?,
            "serviceAccount" => take(map, &mut self.service_account)?,
            "nodeName" => take(map, &mut self.node_name)?,
            _ => return Ok(false),
        };
        self.bad |= !ok;
        Ok(true)
    }

    fn bad(&mut self) {
        self.bad = true;
    }
}

#[derive(Default)]
struct Status {
    phase: Option<String>,
    bad: bool,
}

impl Fields for Status {
    fn pick<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        if key != "phase" {
            return Ok(false);
        }
        self.bad |= !take(map, &mut self.phase)?;
        Ok(true)
    }

    fn bad(&mut self) {
        self.bad = true;
    }
}

#[derive(Default)]
struct Whole {
    meta: Meta,
    spec: Spec,
    status: Status,
    bad: bool,
}

impl Fields for Whole {
    fn pick<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        // `null` spec or status (a pod without them) is fine: absent fields.
        match key {
            "metadata" => self.meta = map.next_value_seed(Nullable(PhantomData))?,
            "spec" => self.spec = map.next_value_seed(Nullable(PhantomData))?,
            "status" => self.status = map.next_value_seed(Nullable(PhantomData))?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn bad(&mut self) {
        self.bad = true;
    }
}

/// An object, or `null` for an empty one.
struct Nullable<F>(PhantomData<F>);

impl<'de, F: Fields> DeserializeSeed<'de> for Nullable<F> {
    type Value = F;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<F, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, F: Fields> Visitor<'de> for Nullable<F> {
    type Value = F;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object or null")
    }

    fn visit_none<E>(self) -> Result<F, E> {
        Ok(F::default())
    }

    fn visit_unit<E>(self) -> Result<F, E> {
        Ok(F::default())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<F, D::Error> {
        ObjectSeed(PhantomData).deserialize(d)
    }
}

impl<'de> Deserialize<'de> for LenientPod {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w: Whole = ObjectSeed(PhantomData).deserialize(d)?;
        let m = w.meta;
        let meta = ObjectMeta {
            name: m.name,
            namespace: m.namespace,
            uid: m.uid,
            resource_version: m.resource_version,
            labels: m.labels,
            ..ObjectMeta::default()
        };
        if w.bad || m.bad || w.spec.bad || w.status.bad {
            return Ok(LenientPod::Malformed(Box::new(ObjectMeta {
                labels: None,
                ..meta
            })));
        }
        let controlling_node = m
            .owners
            .unwrap_or_default()
            .into_iter()
            .find(|o| o.kind == "Node" && o.controller == Some(true))
            .map(|o| o.name);
        Ok(LenientPod::Parsed(Box::new(PodView {
            meta,
            mirror: m.mirror,
            controlling_node,
            node_name: w.spec.node_name,
            service_account: w.spec.service_account_name.or(w.spec.service_account),
            phase: w.status.phase,
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
/// malformed (after the pods before the fault were handed over). Bytes
/// that are not UTF-8 (JSON allows none) become U+FFFD first, which no
/// name, label or uid accepts: they cost the pod that holds them, not the
/// list.
pub fn read_pod_list(body: &[u8], each: impl FnMut(LenientPod)) -> Result<(), Failure> {
    match std::str::from_utf8(body) {
        Ok(_) => read_utf8_pod_list(body, each),
        Err(_) => read_utf8_pod_list(String::from_utf8_lossy(body).as_bytes(), each),
    }
}

fn read_utf8_pod_list(body: &[u8], each: impl FnMut(LenientPod)) -> Result<(), Failure> {
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
        while let Some(key) = map.next_key::<Key>()? {
            if key.0 == "items" {
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
    use serde_json::json;

    fn read(v: serde_json::Value) -> LenientPod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_malformed_item_costs_only_itself() {
        let body = br#"{"kind":"PodList","items":[
            {"metadata":{"name":"a","namespace":"n","uid":"a1"}},
            {"metadata":{"name":"b","namespace":"n","uid":"b2","labels":{"app":7}}},
            {"metadata":{"name":"c","namespace":"n","uid":"c3"}, "spec": 5},
            7,
            {"metadata":{"name":"e","namespace":"n","uid":"e5"}, "spec": null, "status": null}]}"#;
        let mut pods = vec![];
        read_pod_list(body, |p| pods.push(p)).unwrap();
        assert_eq!(pods.len(), 5);
        assert!(pods[0].pod().is_ok());
        assert_eq!(pods[1].pod().err(), Some(Failure::MalformedPod));
        assert_eq!(
            pods[1].meta().uid.as_deref(),
            Some("b2"),
            "still known by its uid"
        );
        assert_eq!(pods[2].pod().err(), Some(Failure::MalformedPod));
        assert_eq!(pods[3].pod().err(), Some(Failure::MalformedPod));
        assert!(pods[4].pod().is_ok());
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
    fn bytes_that_are_not_utf8_cost_only_their_pod() {
        let mut body =
            br#"{"items":[{"metadata":{"name":"a","namespace":"n","uid":"a1","labels":{"app":"x"#
                .to_vec();
        body.extend_from_slice(&[0xff, 0xfe]);
        body.extend_from_slice(br#""}}},{"metadata":{"name":"b","namespace":"n","uid":"b2"}}]}"#);
        let mut pods = vec![];
        read_pod_list(&body, |p| pods.push(p)).unwrap();
        assert_eq!(pods.len(), 2);
        let bad = pods[0].pod().unwrap();
        assert!(!crate::workload::labels::is_label_value(
            &bad.meta.labels.as_ref().unwrap()["app"]
        ));
        assert_eq!(pods[1].pod().unwrap().meta.uid.as_deref(), Some("b2"));
    }

    #[test]
    fn wrong_shapes_of_read_fields_are_malformed() {
        for bad in [
            json!({"metadata": {"uid": 5}}),
            json!({"metadata": {"uid": "u", "annotations": {"kubernetes.io/config.mirror": ["x"]}}}),
            json!({"metadata": {"uid": "u", "annotations": "x"}}),
            json!({"metadata": 3}),
            json!({"metadata": {"uid": "u"}, "spec": {"serviceAccountName": {}}}),
            json!({"metadata": {"uid": "u"}, "status": {"phase": 1}}),
            json!({"metadata": {"uid": "u", "ownerReferences": [{"kind": "Node"}]}}),
            json!({"metadata": {"uid": "u"}, "spec": {"nodeName": 7}}),
        ] {
            assert!(read(bad.clone()).pod().is_err(), "{bad}");
        }
        // What is not read may be anything.
        let ok = read(
            json!({"metadata": {"uid": "u", "generation": "x", "annotations": {"a": 5}},
            "spec": {"containers": 7}, "status": {"conditions": "?"}, "extra": [1, 2]}),
        );
        assert!(ok.pod().is_ok());
    }

    #[test]
    fn fixture_pods_read_as_the_full_type_does() {
        // The view must agree with k8s-openapi's full Pod on what it reads.
        let list: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/api-pods-node-1.json"))
                .unwrap();
        for item in list["items"].as_array().unwrap() {
            let full: Pod = serde_json::from_value(item.clone()).expect("a valid Pod");
            // Through the watch event path too: serde buffers the object.
            let event: kube::core::WatchEvent<LenientPod> =
                serde_json::from_value(json!({"type": "ADDED", "object": item})).unwrap();
            let kube::core::WatchEvent::Added(from_event) = event else {
                panic!("added")
            };
            for view in [read(item.clone()), from_event] {
                let view = view.pod().unwrap().clone();
                assert_eq!(view.meta.uid, full.metadata.uid);
                assert_eq!(view.meta.name, full.metadata.name);
                assert_eq!(view.meta.resource_version, full.metadata.resource_version);
                assert_eq!(view.meta.labels, full.metadata.labels);
                assert_eq!(
                    view.mirror,
                    full.metadata
                        .annotations
                        .clone()
                        .and_then(|a| a.get(MIRROR_ANNOTATION).cloned())
                );
                let node_controller = full.metadata.owner_references.clone().and_then(|o| {
                    o.into_iter()
                        .find(|o| o.kind == "Node" && o.controller == Some(true))
                        .map(|o| o.name)
                });
                assert_eq!(view.controlling_node, node_controller);
                let spec = full.spec.clone().unwrap();
                assert_eq!(view.node_name, spec.node_name);
                assert_eq!(
                    view.service_account,
                    spec.service_account_name.or(spec.service_account)
                );
                assert_eq!(view.phase, full.status.clone().and_then(|s| s.phase));
            }
        }
    }
}
