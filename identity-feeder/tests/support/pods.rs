//! The fixture pods of tests/fixtures and the cgroups the kubelet would
//! have made for them, in either driver's layout.

use std::collections::BTreeMap;
use std::path::Path;

use prism_bus::{Entry, LatencyClass};
use serde_json::Value;

use super::{CgroupRoot, Feeder, TestBus, same};

pub fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("fixture JSON")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Systemd,
    Cgroupfs,
}

/// One pod of a list, as far as its cgroups go.
#[derive(Debug, Clone)]
pub struct FixturePod {
    /// `namespace/name`
    pub name: String,
    /// The uid its cgroup is named after (a mirror pod's config hash).
    pub cgroup_uid: String,
    pub qos: String,
    pub phase: String,
    pub container_ids: Vec<String>,
    pub json: Value,
}

impl FixturePod {
    pub fn from_json(p: &Value) -> FixturePod {
        let m = &p["metadata"];
        let uid = m["annotations"]["kubernetes.io/config.mirror"]
            .as_str()
            .or(m["uid"].as_str())
            .expect("uid")
            .to_string();
        let container_ids = p["status"]["containerStatuses"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c["containerID"].as_str())
                    .map(|id| id.rsplit("://").next().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
        FixturePod {
            name: format!(
                "{}/{}",
                m["namespace"].as_str().unwrap(),
                m["name"].as_str().unwrap()
            ),
            cgroup_uid: uid,
            qos: p["status"]["qosClass"]
                .as_str()
                .unwrap_or("BestEffort")
                .to_string(),
            phase: p["status"]["phase"]
                .as_str()
                .unwrap_or("Pending")
                .to_string(),
            container_ids,
            json: p.clone(),
        }
    }

    /// The pod's cgroup below the root.
    pub fn dir(&self, layout: Layout) -> String {
        let q = self.qos.to_lowercase();
        let uid = &self.cgroup_uid;
        let uid_ = uid.replace('-', "_");
        match (layout, q.as_str()) {
            (Layout::Systemd, "guaranteed") => format!("kubepods.slice/kubepods-pod{uid_}.slice"),
            (Layout::Systemd, q) => {
                format!("kubepods.slice/kubepods-{q}.slice/kubepods-{q}-pod{uid_}.slice")
            }
            (Layout::Cgroupfs, "guaranteed") => format!("kubepods/pod{uid}"),
            (Layout::Cgroupfs, q) => format!("kubepods/{q}/pod{uid}"),
        }
    }

    /// Its containers' cgroups below the root.
    pub fn container_dirs(&self, layout: Layout) -> Vec<String> {
        let dir = self.dir(layout);
        self.container_ids
            .iter()
            .map(|id| match layout {
                Layout::Systemd => format!("{dir}/cri-containerd-{id}.scope"),
                Layout::Cgroupfs => format!("{dir}/{id}"),
            })
            .collect()
    }

    /// Make the pod's cgroup and its containers'; (pod id, container ids).
    pub fn make_cgroups(&self, root: &CgroupRoot, layout: Layout) -> (u64, Vec<u64>) {
        let pod = root.mkdir(&self.dir(layout));
        let containers = self
            .container_dirs(layout)
            .iter()
            .map(|d| root.mkdir(d))
            .collect();
        (pod, containers)
    }
}

/// Every pod of a list, by `namespace/name`.
pub fn pods_of(list: &Value) -> BTreeMap<String, FixturePod> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(FixturePod::from_json)
        .map(|p| (p.name.clone(), p))
        .collect()
}

/// Every pod of the fixture list that the kubelet would still have
/// cgroups for gets them; the finished job too (a lingering directory).
pub fn make_node(
    root: &CgroupRoot,
    list: &Value,
    layout: Layout,
) -> Vec<(FixturePod, u64, Vec<u64>)> {
    pods_of(list)
        .into_values()
        .map(|p| {
            let (pod, containers) = p.make_cgroups(root, layout);
            (p, pod, containers)
        })
        .collect()
}

pub fn entry_of(bus: &TestBus, node: &[(FixturePod, u64, Vec<u64>)], name: &str) -> Option<Entry> {
    let (_, pod, _) = node.iter().find(|(p, _, _)| p.name == name).expect(name);
    bus.get(*pod)
}

/// What the fixture node's pods must come to on the bus, whichever
/// source read them.
pub fn check_listed_node(bus: &TestBus, node: &[(FixturePod, u64, Vec<u64>)], f: &Feeder) {
    let e = |name| entry_of(bus, node, name).unwrap_or_else(|| panic!("no entry for {name}"));
    for (p, pod, containers) in node {
        if p.phase == "Succeeded" {
            assert_eq!(
                bus.get(*pod),
                None,
                "{}: a finished pod has no entry",
                p.name
            );
            continue;
        }
        let pe = bus
            .get(*pod)
            .unwrap_or_else(|| panic!("no entry for {}", p.name));
        assert!(pe.identity.get() >= 256);
        for c in containers {
            let ce = bus
                .get(*c)
                .unwrap_or_else(|| panic!("{}: no entry for a container", p.name));
            assert!(
                same(&ce, &pe),
                "{}: a container carries its pod's entry",
                p.name
            );
        }
    }
    let web = e("shop/web-7d9f8b6c5d-x2k4p");
    assert_eq!(web.flags.class, LatencyClass::Critical, "shop may promote");
    assert!(
        same(&web, &e("shop/web-5c6b7a8d9e-m4n7q")),
        "replicas of two revisions: one identity"
    );
    assert!(
        same(&web, &e("shop/web-7d9f8b6c5d-old12")),
        "a terminating pod keeps its entry"
    );
    assert_eq!(
        web.label_hash,
        prism_bus::label_hash(
            b"io.prism/namespace=shop;io.prism/serviceaccount=web;app=web;tier=frontend;"
        )
    );
    let tenant = e("tenant-a/web-6b5c4d3e2f-z9y8x");
    assert_ne!(
        tenant.identity, web.identity,
        "the same labels in another namespace"
    );
    assert_eq!(
        tenant.flags.class,
        LatencyClass::Unset,
        "tenant-a may not claim critical"
    );
    let cache = e("shop/cache-0");
    assert_eq!(cache.flags.class, LatencyClass::Critical);
    assert_eq!(
        cache.flags.weight.get(),
        None,
        "weight 200 is invalid: dropped"
    );
    let report = e("batch/report-28961234-abcde");
    assert_eq!(
        (report.flags.class, report.flags.weight.raw()),
        (LatencyClass::Batch, 16)
    );
    assert_eq!(
        report.label_hash,
        prism_bus::label_hash(
            b"io.prism/namespace=batch;io.prism/serviceaccount=report;app=report;"
        ),
        "job uids and names are not part of the identity"
    );
    let apiserver = e("kube-system/kube-apiserver-node-1");
    assert_eq!(
        apiserver.label_hash,
        prism_bus::label_hash(
            b"io.prism/namespace=kube-system;io.prism/serviceaccount=default;component=kube-apiserver;tier=control-plane;"
        )
    );
    assert!(f.metric("prism_feeder_failures_total{reason=\"critical_not_allowed\"}") >= 1.0);
    assert!(f.metric("prism_feeder_failures_total{reason=\"bad_weight\"}") >= 1.0);
}
