//! prism-feeder's kube source on this host's real kernel (root), against a
//! stand-in API server on loopback serving pod payloads in the real shape (no API
//! server can be installed here; see support/fake_api.rs): every QoS class
//! in both cgroup driver layouts, init containers, a terminating pod, a
//! finished job, a static pod known by its mirror, policy labels honoured
//! only where allowed; then watch events (relabel, add before its cgroup
//! exists, delete, delete before the cgroup ever came, a malformed pod), a
//! BPF consumer resolving a container's process to its pod in one lookup, and
//! a tenant forging the mirror annotation to take a static pod's cgroups;
//! and the API server failing as real ones do (a watch expired with 410, a
//! bookmark, lists refused with 429 Retry-After and 503, an expired
//! `continue` token, a list cut off mid-body, 30 s of outage): the feeder
//! retries, counts it, and changes nothing.

mod support;

use std::mem::MaybeUninit;
use std::thread::sleep;
use std::time::{Duration, Instant};

use prism_bus::consumer::SlotKeeper;
use prism_bus::{Facets, LatencyClass};
use prism_bus_bpf_tests::probe::{self, Echo, SRC_OWN};
use serde_json::json;
use support::fake_api::{FakeApi, ListFault};
use support::pods::{FixturePod, Layout, check_listed_node, fixture, make_node};
use support::{CgroupRoot, Feeder, TestBus, same, wait_for};

const READY: Duration = Duration::from_secs(30);

fn start(api: &FakeApi, root: &CgroupRoot, bus: &TestBus, layout: Layout) -> Feeder {
    let driver = match layout {
        Layout::Systemd => "systemd",
        Layout::Cgroupfs => "cgroupfs",
    };
    let f = Feeder::start(&[
        "--source",
        "kube",
        "--kubeconfig",
        api.kubeconfig(),
        "--node-name",
        "node-1",
        "--cgroup-root",
        root.arg(),
        "--cgroup-driver",
        driver,
        "--bus-dir",
        bus.arg(),
        "--promote-namespace",
        "shop,kube-system",
    ]);
    f.wait_ready(READY);
    f
}

#[test]
fn systemd_driver_list_then_watch_and_one_lookup_for_a_containers_process() {
    let root = CgroupRoot::new("feeder-kube-sd");
    let bus = TestBus::new("feeder-kube-sd");
    let list = fixture("api-pods-node-1.json");
    let node = make_node(&root, &list, Layout::Systemd);
    let tiers = [
        root.id("kubepods.slice"),
        root.id("kubepods.slice/kubepods-burstable.slice"),
    ];
    let api = FakeApi::start(list.clone());
    let f = start(&api, &root, &bus, Layout::Systemd);
    assert!(
        api.queries()
            .iter()
            .any(|q| q.contains("fieldSelector=spec.nodeName%3Dnode-1")),
        "only this node's pods are asked for: {:?}",
        api.queries()
    );
    check_listed_node(&bus, &node, &f);
    assert_eq!(f.metric("prism_feeder_source_up{source=\"kube\"}"), 1.0);
    let names = f.names(5);
    let named: std::collections::BTreeSet<&str> = names.values().map(String::as_str).collect();
    assert_eq!(
        named,
        [
            "batch/report",
            "kube-system/kube-apiserver",
            "shop/cache",
            "shop/web",
            "tenant-a/web"
        ]
        .into(),
        "{names:?}"
    );
    // A pod identity's namespace, apart, for the consumers' labels.
    let namespaces = f.namespaces();
    for (id, name) in &names {
        let ns = name.split_once('/').unwrap().0;
        assert_eq!(namespaces.get(id).map(String::as_str), Some(ns), "{name}");
    }
    for t in tiers {
        assert_eq!(bus.get(t), None, "the kubepods slices are no pod's");
    }

    // A BPF consumer sees a container's process as its pod, in one lookup.
    let (web, _, web_containers) = node
        .iter()
        .find(|(p, _, _)| p.name == "shop/web-7d9f8b6c5d-x2k4p")
        .unwrap();
    let mut echo = Echo::spawn();
    std::fs::write(
        root.path()
            .join(&web.container_dirs(Layout::Systemd)[0])
            .join("cgroup.procs"),
        echo.pid().to_string(),
    )
    .unwrap();
    let mut obj = MaybeUninit::uninit();
    let skel = probe::load_and_attach(&mut obj);
    probe::attach_bus(&skel, &mut SlotKeeper::new(bus.paths().clone()));
    probe::watch(&skel, echo.pid());
    echo.poke();
    let o = probe::observed(&skel, echo.pid());
    let web_entry = bus.get(web_containers[0]).unwrap();
    assert_eq!(o.cgroup_id, web_containers[0]);
    assert_eq!(
        (o.identity, o.source),
        (web_entry.identity.get(), SRC_OWN),
        "resolved from the container's own cgroup, no ancestor walk: {o:?}"
    );
    drop(echo);

    api.wait_watching();
    let pod = |name: &str| {
        node.iter()
            .find(|(p, _, _)| p.name == name)
            .unwrap()
            .clone()
    };

    // MODIFIED: facets. A namespace allowed to promote may leave some out
    // (here: everything but sched); a tenant's attempt is dropped, counted,
    // and its entry keeps every facet.
    let (web, web_cg, _) = pod("shop/web-7d9f8b6c5d-x2k4p");
    let mut faceted = web.json.clone();
    faceted["metadata"]["labels"]["prism.io/facets"] = json!("sched");
    faceted["metadata"]["resourceVersion"] = json!("5990");
    api.event("MODIFIED", &faceted);
    let e = bus
        .wait_entry("the facets label", web_cg, |e| {
            e.is_some_and(|e| e.flags.facets == Facets::SCHED)
        })
        .unwrap();
    assert_eq!(e.identity, web_entry.identity);
    let (tenant, tenant_cg, _) = node
        .iter()
        .find(|(p, _, _)| p.name.starts_with("tenant-a/"))
        .unwrap()
        .clone();
    let mut escaping = tenant.json.clone();
    escaping["metadata"]["labels"]["prism.io/facets"] = json!("sched");
    escaping["metadata"]["resourceVersion"] = json!("5991");
    api.event("MODIFIED", &escaping);
    wait_for(
        "the tenant's facets refused",
        Duration::from_secs(10),
        || {
            (f.metric("prism_feeder_failures_total{reason=\"facets_not_allowed\"}") >= 1.0)
                .then_some(())
        },
    );
    assert_eq!(bus.get(tenant_cg).unwrap().flags.facets, Facets::ALL);

    // MODIFIED: the class label removed. Same identity, no class (and the
    // facets label gone with it: every facet again).
    let mut relabelled = web.json.clone();
    relabelled["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("prism.io/latency-class");
    relabelled["metadata"]["resourceVersion"] = json!("6000");
    api.event("MODIFIED", &relabelled);
    let after = bus
        .wait_entry("the relabel", web_cg, |e| {
            e.is_some_and(|e| e.flags.class == LatencyClass::Unset && e.flags.facets == Facets::ALL)
        })
        .unwrap();
    assert_eq!(after.identity, web_entry.identity);

    // The watch connection drops: the feeder watches again, from where it
    // was (the resource version of the last event), without a relist.
    let lists = api.queries().len() - api.watches();
    api.disconnect();
    api.wait_watching();
    assert_eq!(
        api.queries().len() - api.watches(),
        lists,
        "resumed, not relisted"
    );
    assert!(
        api.queries()
            .last()
            .unwrap()
            .contains("resourceVersion=6000"),
        "{:?}",
        api.queries().last()
    );

    // ADDED before its cgroup exists: nothing to write until it appears.
    let live_before = f.metric("prism_feeder_identities_live");
    let mut new_pod = web.json.clone();
    new_pod["metadata"]["name"] = json!("api-66c9d8f7b4-r2d2x");
    new_pod["metadata"]["uid"] = json!("0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6");
    new_pod["metadata"]["labels"] = json!({"app": "api", "pod-template-hash": "66c9d8f7b4"});
    new_pod["metadata"]["resourceVersion"] = json!("6001");
    api.event("ADDED", &new_pod);
    wait_for("the new pod's identity", Duration::from_secs(10), || {
        (f.metric("prism_feeder_identities_live") == live_before + 1.0).then_some(())
    });
    let new_fp = FixturePod::from_json(&new_pod);
    let (new_cg, new_containers) = new_fp.make_cgroups(&root, Layout::Systemd);
    let new_e = bus
        .wait_entry("the new pod's cgroup entry", new_cg, |e| e.is_some())
        .unwrap();
    bus.wait_entry("its container's entry", new_containers[0], |e| {
        e.is_some_and(|e| same(e, &new_e))
    });

    // DELETED: its cgroups (still on disk) lose their entries.
    let (old_rev, old_cg, old_containers) = pod("shop/web-5c6b7a8d9e-m4n7q");
    let mut gone = old_rev.json.clone();
    gone["metadata"]["resourceVersion"] = json!("6002");
    api.event("DELETED", &gone);
    bus.wait_entry("the deleted pod's entry gone", old_cg, |e| e.is_none());
    assert_eq!(bus.get(old_containers[0]), None);

    // ADDED then DELETED before any cgroup: no identity leaks.
    let live = f.metric("prism_feeder_identities_live");
    let mut flash = new_pod.clone();
    flash["metadata"]["name"] = json!("flash-0");
    flash["metadata"]["uid"] = json!("1e2f3a4b-5c6d-4e7f-8091-a2b3c4d5e6f7");
    flash["metadata"]["labels"] = json!({"app": "flash"});
    api.event("ADDED", &flash);
    api.event("DELETED", &flash);
    // A malformed pod: counted, and costs nothing else.
    api.raw_event(
        r#"{"type":"ADDED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"bad","namespace":"shop","uid":"c0ffee00-0000-4000-8000-000000000001","resourceVersion":"6010","labels":{"app":7}}}}"#,
    );
    wait_for(
        "the malformed pod to be counted",
        Duration::from_secs(10),
        || (f.metric("prism_feeder_failures_total{reason=\"malformed_pod\"}") >= 1.0).then_some(()),
    );
    assert_eq!(f.metric("prism_feeder_identities_live"), live);
    // The pod's cgroup vanishes while the pod still exists: its entry goes.
    root.rmdir(&new_fp.container_dirs(Layout::Systemd)[0]);
    bus.wait_entry(
        "the vanished container's entry gone",
        new_containers[0],
        |e| e.is_none(),
    );
    assert!(bus.get(new_cg).is_some());
    assert_eq!(
        bus.get(web_cg).map(|e| e.identity),
        Some(web_entry.identity)
    );
    f.assert_running();
}

#[test]
fn cgroupfs_driver_every_qos_class() {
    let root = CgroupRoot::new("feeder-kube-fs");
    let bus = TestBus::new("feeder-kube-fs");
    let list = fixture("api-pods-node-1.json");
    let node = make_node(&root, &list, Layout::Cgroupfs);
    let qos: std::collections::BTreeSet<_> = node.iter().map(|(p, _, _)| p.qos.as_str()).collect();
    assert_eq!(qos.len(), 3, "the fixture covers every QoS class: {qos:?}");
    let api = FakeApi::start(list);
    let f = start(&api, &root, &bus, Layout::Cgroupfs);
    check_listed_node(&bus, &node, &f);
    assert_eq!(bus.get(root.id("kubepods")), None);
    assert_eq!(bus.get(root.id("kubepods/burstable")), None);
}

/// A tenant forging the mirror annotation to name kube-apiserver's static
/// pod: a plain forgery is refused (`forged_mirror`), one that copies every
/// mark of a mirror pod finds the key held (`claim_conflict`), and deleting
/// it leaves the real entry alone.
#[test]
fn a_tenant_forging_the_mirror_annotation_takes_over_nothing() {
    let root = CgroupRoot::new("feeder-kube-forge");
    let bus = TestBus::new("feeder-kube-forge");
    let list = fixture("api-pods-node-1.json");
    let node = make_node(&root, &list, Layout::Systemd);
    let api = FakeApi::start(list.clone());
    let f = start(&api, &root, &bus, Layout::Systemd);
    check_listed_node(&bus, &node, &f);
    let (mirror, apiserver_cg, apiserver_containers) = node
        .iter()
        .find(|(p, _, _)| p.name == "kube-system/kube-apiserver-node-1")
        .unwrap()
        .clone();
    let real = bus.get(apiserver_cg).unwrap();
    api.wait_watching();

    let hash = mirror.json["metadata"]["annotations"]["kubernetes.io/config.mirror"].clone();
    let forged = |uid: &str, rv: &str, mimic: bool| {
        let mut p = json!({
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": format!("forged-{rv}"), "namespace": "tenant-a", "uid": uid,
                "resourceVersion": rv,
                "labels": {"app": "forged", "prism.io/latency-class": "batch", "prism.io/weight": "1"},
                "annotations": {"kubernetes.io/config.mirror": hash}},
            "spec": {"nodeName": "node-1", "serviceAccountName": "forger", "containers": [{"name": "x", "image": "x"}]},
            "status": {"phase": "Running", "qosClass": "BestEffort"}
        });
        if mimic {
            p["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "Node",
                "name": "node-1", "uid": "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9", "controller": true}]);
            p["spec"]
                .as_object_mut()
                .unwrap()
                .remove("serviceAccountName");
        }
        p
    };
    let metric = |reason: &str| {
        f.metric(&format!(
            "prism_feeder_failures_total{{reason=\"{reason}\"}}"
        ))
    };

    // A pod that only carries the annotation.
    api.event(
        "ADDED",
        &forged("f0f0f0f0-0000-4000-8000-000000000001", "7001", false),
    );
    wait_for("the forgery counted", Duration::from_secs(10), || {
        (metric("forged_mirror") >= 1.0).then_some(())
    });
    // One with every mark a mirror pod has: the real mirror pod holds the key.
    let mimic = forged("f0f0f0f0-0000-4000-8000-000000000002", "7002", true);
    api.event("ADDED", &mimic);
    wait_for(
        "the conflicting claim counted",
        Duration::from_secs(10),
        || (metric("claim_conflict") >= 1.0).then_some(()),
    );
    // Deleting the forger deletes nothing of the real pod's.
    let mut gone = mimic.clone();
    gone["metadata"]["resourceVersion"] = json!("7003");
    api.event("DELETED", &gone);
    // an event after it, to know the delete was processed
    let mut marker = forged("f0f0f0f0-0000-4000-8000-000000000003", "7004", false);
    marker["metadata"]["name"] = json!("marker");
    api.event("ADDED", &marker);
    wait_for("the events processed", Duration::from_secs(10), || {
        (metric("forged_mirror") >= 2.0).then_some(())
    });
    for cg in std::iter::once(apiserver_cg).chain(apiserver_containers.iter().copied()) {
        let e = bus
            .get(cg)
            .expect("kube-apiserver's cgroups keep their entries");
        assert!(
            same(&e, &real),
            "kube-apiserver's entry changed: {e:?} vs {real:?}"
        );
    }
    f.assert_running();
}

/// The fixture's node (systemd layout), its cgroups made, served by a
/// stand-in API server: what the API server failure tests share.
struct ServedNode {
    root: CgroupRoot,
    bus: TestBus,
    pods: Vec<(FixturePod, u64, Vec<u64>)>,
    api: FakeApi,
}

impl ServedNode {
    /// `extra` pods are served beside the fixture's, without cgroups here.
    fn new(tag: &str, extra: Vec<serde_json::Value>) -> ServedNode {
        let root = CgroupRoot::new(tag);
        let bus = TestBus::new(tag);
        let mut list = fixture("api-pods-node-1.json");
        let pods = make_node(&root, &list, Layout::Systemd);
        list["items"].as_array_mut().unwrap().extend(extra);
        let api = FakeApi::start(list);
        ServedNode {
            root,
            bus,
            pods,
            api,
        }
    }

    fn feeder(&self) -> Feeder {
        start(&self.api, &self.root, &self.bus, Layout::Systemd)
    }

    fn web(&self) -> (FixturePod, u64) {
        let (pod, cg, _) = self
            .pods
            .iter()
            .find(|(p, _, _)| p.name == "shop/web-7d9f8b6c5d-x2k4p")
            .unwrap();
        (pod.clone(), *cg)
    }

    /// A MODIFIED event setting (or, with None, removing) the web pod's
    /// class label; waits until the bus shows `want`.
    fn relabel_web(&self, class: Option<&str>, want: LatencyClass, what: &str) {
        let (web, web_cg) = self.web();
        let mut pod = web.json;
        let labels = pod["metadata"]["labels"].as_object_mut().unwrap();
        match class {
            Some(c) => labels.insert("prism.io/latency-class".into(), json!(c)),
            None => labels.remove("prism.io/latency-class"),
        };
        pod["metadata"]["resourceVersion"] = json!("6100");
        self.api.event("MODIFIED", &pod);
        self.bus
            .wait_entry(what, web_cg, |e| e.is_some_and(|e| e.flags.class == want));
    }
}

const UNAVAILABLE: &str = "prism_feeder_failures_total{reason=\"source_unavailable\"}";

/// The watch's `ERROR` 410: the server compacted past the client's version.
const EXPIRED: &str = r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 5000 (6000)","reason":"Expired","code":410}}"#;

/// The watch answers `410 Expired` (the server compacted past the client's
/// resource version), as a real API server does: the feeder lists again,
/// and nothing is deleted or renumbered meanwhile.
#[test]
fn an_expired_watch_relists_and_changes_nothing() {
    let n = ServedNode::new("feeder-kube-410", vec![]);
    let f = n.feeder();
    check_listed_node(&n.bus, &n.pods, &f);
    let before = n.bus.ids();
    n.api.wait_watching();
    let lists = n.api.queries().len() - n.api.watches();
    n.api.raw_event(EXPIRED);
    wait_for("a relist after 410", Duration::from_secs(30), || {
        (n.api.queries().len() - n.api.watches() > lists).then_some(())
    });
    n.api.wait_watching();
    // one event after the relist, to know the listing was applied
    n.relabel_web(None, LatencyClass::Unset, "the event after the relist");
    assert_eq!(
        n.bus.ids(),
        before,
        "the relist deleted or renumbered entries"
    );
    f.assert_running();
}

/// The API server refuses the first lists (429 with Retry-After, as its
/// priority-and-fairness limits do, and 503, as while it restarts): the
/// feeder retries with backoff, counts each refusal, and the listing lands
/// whole.
#[test]
fn a_throttled_or_restarting_api_server_is_retried_until_the_listing_lands() {
    let n = ServedNode::new("feeder-kube-429", vec![]);
    let faults = [
        ListFault::TooManyRequests { retry_after_s: 1 },
        ListFault::Unavailable,
        ListFault::TooManyRequests { retry_after_s: 1 },
    ];
    n.api.fail_lists(&faults);
    let f = n.feeder();
    assert_eq!(
        n.api.pending_faults(),
        0,
        "ready before every refusal was answered"
    );
    check_listed_node(&n.bus, &n.pods, &f);
    assert!(
        f.metric(UNAVAILABLE) >= faults.len() as f64,
        "each refusal is counted"
    );
    f.assert_running();
}

/// A relist the server refuses (503, then 429) after a watch expired: the
/// bus keeps every entry and id until a listing succeeds, the refusals are
/// counted, and the watch resumes.
#[test]
fn a_refused_relist_deletes_and_renumbers_nothing() {
    let n = ServedNode::new("feeder-kube-503", vec![]);
    let f = n.feeder();
    check_listed_node(&n.bus, &n.pods, &f);
    let before = n.bus.ids();
    let failures = f.metric(UNAVAILABLE);
    n.api.wait_watching();
    n.api.fail_lists(&[
        ListFault::Unavailable,
        ListFault::TooManyRequests { retry_after_s: 1 },
    ]);
    n.api.raw_event(EXPIRED);
    wait_for("both refusals answered", Duration::from_secs(60), || {
        (n.api.pending_faults() == 0).then_some(())
    });
    assert_eq!(n.bus.ids(), before, "a refused relist changed the bus");
    n.api.wait_watching();
    n.relabel_web(
        Some("batch"),
        LatencyClass::Batch,
        "the event after the relist",
    );
    assert_eq!(
        n.bus.ids(),
        before,
        "the relist deleted or renumbered entries"
    );
    assert!(f.metric(UNAVAILABLE) >= failures + 2.0, "refusals counted");
    f.assert_running();
}

/// A `BOOKMARK` (only a resource version, no pod) on the watch: not a pod
/// event, so nothing changes and no relist follows; the next real event
/// still lands.
#[test]
fn a_bookmark_changes_nothing_and_the_watch_goes_on() {
    let n = ServedNode::new("feeder-kube-bm", vec![]);
    let f = n.feeder();
    check_listed_node(&n.bus, &n.pods, &f);
    let before = n.bus.ids();
    n.api.wait_watching();
    let requests = n.api.queries().len();
    n.api.raw_event(
        r#"{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"6050","annotations":{"k8s.io/initial-events-end":"true"}}}}"#,
    );
    n.relabel_web(
        Some("batch"),
        LatencyClass::Batch,
        "the event after the bookmark",
    );
    assert_eq!(n.bus.ids(), before, "a bookmark changed ids");
    assert_eq!(
        n.api.queries().len(),
        requests,
        "a bookmark caused a new request"
    );
    f.assert_running();
}

/// A listing of more than one page whose `continue` token expires between
/// pages (410 Expired): the feeder starts the list over from the first page
/// and applies one whole, consistent listing.
#[test]
fn an_expired_continue_token_starts_the_list_over() {
    // pods enough for two pages, the extra ones without cgroups on this node
    let template = fixture("api-pods-node-1.json")["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["metadata"]["name"] == "web-7d9f8b6c5d-x2k4p")
        .unwrap()
        .clone();
    let filler = (0..600)
        .map(|i| {
            let mut p = template.clone();
            p["metadata"]["name"] = json!(format!("filler-{i}"));
            p["metadata"]["uid"] = json!(format!("0f0f0f0f-0000-4000-8000-{i:012}"));
            p
        })
        .collect();
    let n = ServedNode::new("feeder-kube-cont", filler);
    n.api.expire_next_continue();
    let f = n.feeder();
    check_listed_node(&n.bus, &n.pods, &f);
    let queries = n.api.queries();
    let expired = queries
        .iter()
        .position(|q| q.contains("continue="))
        .expect("the list was paged");
    assert!(
        queries[expired + 1..]
            .iter()
            .any(|q| !q.contains("continue=") && !q.contains("watch=")),
        "no fresh list after the expired token: {queries:?}"
    );
    assert!(f.metric(UNAVAILABLE) >= 1.0, "the expired token counted");
    f.assert_running();
}

/// A list cut off mid-body (200, then the connection ends), at start and
/// on a relist: refused whole (never taken as a short listing), counted,
/// retried; the bus keeps every entry and id.
#[test]
fn a_truncated_listing_is_refused_whole_and_retried() {
    let n = ServedNode::new("feeder-kube-cut", vec![]);
    n.api
        .fail_lists(&[ListFault::Truncated, ListFault::Truncated]);
    let f = n.feeder();
    assert_eq!(n.api.pending_faults(), 0, "ready on a cut-off list");
    check_listed_node(&n.bus, &n.pods, &f);
    let before = n.bus.ids();
    let failures = f.metric(UNAVAILABLE);
    assert!(failures >= 2.0, "each cut-off list is counted");

    n.api.wait_watching();
    n.api.fail_lists(&[ListFault::Truncated]);
    n.api.raw_event(EXPIRED);
    wait_for(
        "the cut-off relist answered",
        Duration::from_secs(30),
        || (n.api.pending_faults() == 0).then_some(()),
    );
    n.api.wait_watching();
    n.relabel_web(
        Some("batch"),
        LatencyClass::Batch,
        "the event after the relist",
    );
    assert_eq!(n.bus.ids(), before, "a cut-off list changed the bus");
    assert!(f.metric(UNAVAILABLE) > failures);
    f.assert_running();
}

/// The API server is down for 30 s (every request refused, the watch
/// ended): the source is reported down, the bus keeps every entry and id
/// all along, and once the server is back the feeder lists and follows
/// events again.
#[test]
fn a_30s_api_outage_deletes_and_renumbers_nothing() {
    const UP: &str = "prism_feeder_source_up{source=\"kube\"}";
    let n = ServedNode::new("feeder-kube-outage", vec![]);
    let f = n.feeder();
    check_listed_node(&n.bus, &n.pods, &f);
    let before = n.bus.ids();
    n.api.wait_watching();
    let outage = Duration::from_secs(30);
    let began = Instant::now();
    n.api.outage(outage);
    wait_for("the source reported down", Duration::from_secs(20), || {
        (f.metric(UP) == 0.0).then_some(())
    });
    while began.elapsed() < outage {
        assert_eq!(n.bus.ids(), before, "the bus changed during the outage");
        assert_eq!(f.get("/healthz").map(|(s, _)| s), Some(200));
        sleep(Duration::from_secs(2));
    }
    wait_for("the source back up", Duration::from_secs(60), || {
        (f.metric(UP) == 1.0).then_some(())
    });
    println!(
        "source up again {:.1} s after the outage ended",
        (began.elapsed() - outage).as_secs_f64()
    );
    n.api.wait_watching();
    n.relabel_web(
        Some("batch"),
        LatencyClass::Batch,
        "an event after the outage",
    );
    assert_eq!(
        n.bus.ids(),
        before,
        "the outage deleted or renumbered entries"
    );
    assert!(f.metric(UNAVAILABLE) >= 1.0, "the outage is counted");
    f.assert_running();
}
