//! prism-feeder's kubelet source on this host's real kernel (root), against
//! a stand-in kubelet on loopback (HTTPS, a CA of the test's, a bearer
//! token) serving `/pods` payloads in the kubelet's shape, then changed, broken and
//! hostile ones: a bad answer keeps the last good list in force; a bad pod
//! costs only itself; 100k distinct label sets are all served.

mod support;

use std::time::{Duration, Instant};

use prism_bus::LatencyClass;
use serde_json::{Value, json};
use support::fake_kubelet::FakeKubelet;
use support::pods::{FixturePod, Layout, check_listed_node, fixture, make_node};
use support::{CgroupRoot, Feeder, TestBus, wait_for};

fn start(kubelet: &FakeKubelet, root: &CgroupRoot, bus: &TestBus, interval: &str) -> Feeder {
    start_with(kubelet, root, bus, interval, "kubelet", &[])
}

/// The kubelet source (`sources`: `kubelet` or with others) with `extra` flags.
fn start_with(
    kubelet: &FakeKubelet,
    root: &CgroupRoot,
    bus: &TestBus,
    interval: &str,
    sources: &str,
    extra: &[&str],
) -> Feeder {
    let url = kubelet.url();
    let mut args = vec![
        "--source",
        sources,
        "--kubelet-url",
        &url,
        "--kubelet-ca-file",
        kubelet.ca_file.to_str().unwrap(),
        "--kubelet-token-file",
        kubelet.token_file.to_str().unwrap(),
        "--kubelet-interval",
        interval,
        "--cgroup-root",
        root.arg(),
        "--bus-dir",
        bus.arg(),
        "--promote-namespace",
        "shop,kube-system",
    ];
    args.extend_from_slice(extra);
    let f = Feeder::start(&args);
    f.wait_ready(Duration::from_secs(30));
    f
}

fn with_items(list: &Value, items: Vec<Value>) -> String {
    let mut l = list.clone();
    l["items"] = Value::Array(items);
    l.to_string()
}

#[test]
fn polls_over_https_with_the_token_and_follows_each_list() {
    let root = CgroupRoot::new("feeder-kubelet");
    let bus = TestBus::new("feeder-kubelet");
    let list = fixture("kubelet-pods-node-1.json");
    let node = make_node(&root, &list, Layout::Systemd);
    let kubelet = FakeKubelet::start(list.to_string());
    let f = start(&kubelet, &root, &bus, "200ms");
    check_listed_node(&bus, &node, &f);
    assert_eq!(f.metric("prism_feeder_source_up{source=\"kubelet\"}"), 1.0);

    // The next list lacks one pod and has a new one.
    let items = list["items"].as_array().unwrap();
    let (dropped, kept): (Vec<_>, Vec<_>) = items
        .iter()
        .cloned()
        .partition(|p| p["metadata"]["name"] == "cache-0");
    let mut new_pod = kept[0].clone();
    new_pod["metadata"]["name"] = json!("api-0");
    new_pod["metadata"]["uid"] = json!("0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6");
    new_pod["metadata"]["labels"] = json!({"app": "api"});
    let new_fp = FixturePod::from_json(&new_pod);
    let (new_cg, _) = new_fp.make_cgroups(&root, Layout::Systemd);
    kubelet.answer(
        200,
        with_items(&list, kept.into_iter().chain([new_pod]).collect()),
    );
    let cache = FixturePod::from_json(&dropped[0]);
    let cache_cg = root.id(&cache.dir(Layout::Systemd));
    bus.wait_entry("the dropped pod's entry gone", cache_cg, |e| e.is_none());
    bus.wait_entry("the new pod's entry", new_cg, |e| e.is_some());
}

#[test]
fn a_bad_answer_keeps_the_last_good_list_and_a_bad_pod_costs_only_itself() {
    let root = CgroupRoot::new("feeder-kubelet-bad");
    let bus = TestBus::new("feeder-kubelet-bad");
    let list = fixture("kubelet-pods-node-1.json");
    let node = make_node(&root, &list, Layout::Systemd);
    let kubelet = FakeKubelet::start(list.to_string());
    let f = start(&kubelet, &root, &bus, "100ms");
    let before = bus.all();

    kubelet.answer(
        200,
        "{\"kind\":\"PodList\",\"items\":[{\"metadata\":".into(),
    );
    wait_for(
        "the malformed list to be counted",
        Duration::from_secs(20),
        || (f.metric("prism_feeder_failures_total{reason=\"malformed_pod\"}") >= 2.0).then_some(()),
    );
    assert_eq!(f.metric("prism_feeder_source_up{source=\"kubelet\"}"), 0.0);
    kubelet.answer(500, "internal error".into());
    wait_for("the 500 to be counted", Duration::from_secs(20), || {
        (f.metric("prism_feeder_failures_total{reason=\"source_unavailable\"}") >= 1.0)
            .then_some(())
    });
    assert_eq!(bus.all(), before, "nothing changed on the bus");

    // Hostile pods among good ones: each refused alone, counted by reason.
    let items = list["items"].as_array().unwrap().clone();
    let hostile = |name: &str, labels: Value| {
        let mut p = items[0].clone();
        p["metadata"]["name"] = json!(name);
        let n = prism_bus::label_hash(name.as_bytes()) & 0xffff_ffff_ffff;
        p["metadata"]["uid"] = json!(format!("deadbeef-0000-4000-8000-{n:012x}"));
        p["metadata"]["labels"] = labels;
        p
    };
    let many: serde_json::Map<String, Value> =
        (0..10_000).map(|i| (format!("k{i}"), json!("v"))).collect();
    let mut with_hostile = items.clone();
    with_hostile.extend([
        hostile("ten-thousand-labels", Value::Object(many)),
        hostile("control-chars", json!({"app": "x\u{1b}[2J\u{7}"})),
        hostile("overlong-key", json!({ "k".repeat(300): "v" })),
        hostile("bad-class-pod", json!({"app": "y", "prism.io/latency-class": "urgent"})),
        json!({"metadata": {"name": "not-a-pod", "namespace": "shop", "uid": "c0ffee00-0000-4000-8000-000000000001", "labels": 7}}),
    ]);
    kubelet.answer(200, with_items(&list, with_hostile));
    for reason in [
        "too_many_labels",
        "bad_label_value",
        "bad_label_key",
        "bad_class",
    ] {
        wait_for(reason, Duration::from_secs(20), || {
            (f.metric(&format!(
                "prism_feeder_failures_total{{reason=\"{reason}\"}}"
            )) >= 1.0)
                .then_some(())
        });
    }
    check_listed_node(&bus, &node, &f);
    // Listed again and again, a bad pod is logged and counted once.
    kubelet.wait_polls(3);
    assert_eq!(
        f.metric("prism_feeder_failures_total{reason=\"too_many_labels\"}"),
        1.0
    );
    let bad_class_cg = FixturePod::from_json(&hostile("bad-class-pod", json!({})));
    let (cg, _) = bad_class_cg.make_cgroups(&root, Layout::Systemd);
    let e = bus
        .wait_entry("the bad-class pod keeps an identity", cg, |e| e.is_some())
        .unwrap();
    assert_eq!(e.flags.class, LatencyClass::Unset);
    f.assert_running();
}

#[test]
fn a_hundred_thousand_distinct_label_sets_are_all_served() {
    let root = CgroupRoot::new("feeder-kubelet-flood");
    let bus = TestBus::new("feeder-kubelet-flood");
    let list = fixture("kubelet-pods-node-1.json");
    let node = make_node(&root, &list, Layout::Systemd);
    let mut body = String::with_capacity(20 << 20);
    body.push_str("{\"kind\":\"PodList\",\"apiVersion\":\"v1\",\"metadata\":{},\"items\":[");
    for item in list["items"].as_array().unwrap() {
        body.push_str(&item.to_string());
        body.push(',');
    }
    const FLOOD: usize = 100_000;
    for i in 0..FLOOD {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            "{{\"metadata\":{{\"name\":\"flood-{i}\",\"namespace\":\"flood\",\"uid\":\"f100d000-0000-4000-8000-{i:012x}\",\"labels\":{{\"app\":\"a{i}\"}}}},\"status\":{{\"phase\":\"Running\"}}}}"
        ));
    }
    body.push_str("]}");
    let kubelet = FakeKubelet::start(body);
    let t0 = Instant::now();
    let f = start(&kubelet, &root, &bus, "1h");
    let real = 5.0; // distinct canonicals among the fixture pods that run
    assert_eq!(
        f.metric("prism_feeder_identities_live"),
        FLOOD as f64 + real
    );
    check_listed_node(&bus, &node, &f);
    let rss = std::fs::read_to_string(format!("/proc/{}/status", f.pid()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().to_string()))
        .unwrap();
    println!(
        "100k distinct label sets: ready in {:.2} s (debug build), RSS {rss}",
        t0.elapsed().as_secs_f64()
    );
}

/// `--source kubelet,cgroup`: a pod's identity wins over the unit identities
/// the cgroup source gives the `.scope`s and slices inside the pod, and the
/// host's own units keep theirs. A list naming one uid twice gives it to
/// neither pod (counted), then to the one listed alone again.
#[test]
fn with_cgroup_rules_beside_it_pods_keep_their_cgroups_and_a_duplicate_uid_takes_none() {
    let root = CgroupRoot::new("feeder-kubelet-both");
    let bus = TestBus::new("feeder-kubelet-both");
    let list = fixture("kubelet-pods-node-1.json");
    let node = make_node(&root, &list, Layout::Systemd);
    root.mkdir("system.slice/sshd.service");
    let kubelet = FakeKubelet::start(list.to_string());
    let f = start_with(&kubelet, &root, &bus, "200ms", "kubelet,cgroup", &[]);
    pods_own_their_cgroups(&bus, &node);
    let sshd = bus
        .get(root.id("system.slice/sshd.service"))
        .expect("a host unit keeps its own identity");
    let (web, web_cg, _) = node
        .iter()
        .find(|(p, _, _)| p.name == "shop/web-7d9f8b6c5d-x2k4p")
        .unwrap()
        .clone();
    let web_identity = bus.get(web_cg).unwrap().identity;
    assert_ne!(web_identity, sshd.identity);

    // The same pod listed twice (another name, same uid): neither is believed.
    let mut twin = web.json.clone();
    twin["metadata"]["name"] = json!("twin");
    twin["metadata"]["labels"] = json!({"app": "twin", "prism.io/latency-class": "batch"});
    let mut items = list["items"].as_array().unwrap().clone();
    items.push(twin);
    kubelet.answer(200, with_items(&list, items));
    wait_for("the duplicate counted", Duration::from_secs(10), || {
        (f.metric("prism_feeder_failures_total{reason=\"claim_conflict\"}") >= 1.0).then_some(())
    });
    // (its pod slice is a unit: the cgroup source's identity, not the pod's)
    bus.wait_entry("the contested pod's identity withdrawn", web_cg, |e| {
        e.is_none_or(|e| e.identity != web_identity)
    });
    kubelet.answer(200, list.to_string());
    bus.wait_entry("the pod's identity back", web_cg, |e| {
        e.is_some_and(|e| e.flags.class == LatencyClass::Critical)
    });
    pods_own_their_cgroups(&bus, &node);
    f.assert_running();
}

/// Every running pod's containers carry its entry, and shop's web pod its
/// critical class: the pods' identities, not the units'. (A finished pod's
/// slice left on disk is just a unit here.)
fn pods_own_their_cgroups(bus: &TestBus, node: &[(FixturePod, u64, Vec<u64>)]) {
    for (p, pod, containers) in node.iter().filter(|(p, _, _)| p.phase != "Succeeded") {
        let pe = bus.wait_entry(&p.name, *pod, |e| e.is_some()).unwrap();
        for c in containers {
            bus.wait_entry(
                &format!("{}: a container carries its pod's entry", p.name),
                *c,
                |e| e.is_some_and(|e| support::same(e, &pe)),
            );
        }
        if p.name == "shop/web-7d9f8b6c5d-x2k4p" {
            assert_eq!(pe.flags.class, LatencyClass::Critical, "{}", p.name);
        }
    }
}

/// A restarting kubelet answers an empty list: nothing is deleted within
/// the grace and nothing renumbered when the pods come back; a pod whose
/// cgroup is gone leaves at once; one still on disk but no longer listed
/// leaves when the grace ends.
#[test]
fn an_empty_list_deletes_nothing_within_the_grace_and_renumbers_nothing() {
    let root = CgroupRoot::new("feeder-kubelet-grace");
    let bus = TestBus::new("feeder-kubelet-grace");
    let list = fixture("kubelet-pods-node-1.json");
    let node = make_node(&root, &list, Layout::Systemd);
    let kubelet = FakeKubelet::start(list.to_string());
    let f = start_with(
        &kubelet,
        &root,
        &bus,
        "200ms",
        "kubelet",
        &["--delete-grace", "4s"],
    );
    check_listed_node(&bus, &node, &f);
    let before = bus.ids();

    kubelet.answer(200, with_items(&list, vec![]));
    kubelet.wait_polls(5);
    assert_eq!(
        bus.ids(),
        before,
        "an empty list deleted or renumbered entries"
    );
    assert!(f.metric("prism_feeder_workloads_leaving") >= 1.0);
    kubelet.answer(200, list.to_string());
    kubelet.wait_polls(3);
    assert_eq!(bus.ids(), before, "the pods came back with other ids");
    assert_eq!(f.metric("prism_feeder_workloads_leaving"), 0.0);

    // Two pods dropped from the list: one whose cgroups are gone leaves at
    // once, one still on disk keeps its entry until the grace ends.
    let pod = |name: &str| {
        node.iter()
            .find(|(p, _, _)| p.name == name)
            .unwrap()
            .clone()
    };
    let (gone, gone_cg, _) = pod("shop/web-5c6b7a8d9e-m4n7q");
    let (kept, kept_cg, _) = pod("shop/cache-0");
    let items: Vec<Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| {
            let uid = i["metadata"]["uid"].as_str();
            uid != gone.json["metadata"]["uid"].as_str()
                && uid != kept.json["metadata"]["uid"].as_str()
        })
        .cloned()
        .collect();
    for dir in gone.container_dirs(Layout::Systemd) {
        root.rmdir(&dir);
    }
    root.rmdir(&gone.dir(Layout::Systemd));
    let dropped = Instant::now();
    kubelet.answer(200, with_items(&list, items));
    bus.wait_entry("the pod whose cgroup went", gone_cg, |e| e.is_none());
    assert!(bus.get(kept_cg).is_some(), "deleted within the grace");
    bus.wait_entry("the pod still on disk, after the grace", kept_cg, |e| {
        e.is_none()
    });
    let waited = dropped.elapsed();
    assert!(
        waited >= Duration::from_secs(4),
        "left after {waited:?}, within the grace"
    );
    f.assert_running();
}

/// The feeder restarts while the kubelet restarts too and answers an empty
/// list: the entries of the previous run whose cgroups exist are kept for
/// the grace (their ids reserved), and the pods, listed again, get their
/// own ids back.
#[test]
fn restarted_beside_a_restarting_kubelet_it_deletes_and_renumbers_nothing() {
    let root = CgroupRoot::new("feeder-kubelet-restart");
    let bus = TestBus::new("feeder-kubelet-restart");
    let list = fixture("kubelet-pods-node-1.json");
    let node = make_node(&root, &list, Layout::Systemd);
    let kubelet = FakeKubelet::start(list.to_string());
    let grace = ["--delete-grace", "60s"];
    let mut f = start_with(&kubelet, &root, &bus, "200ms", "kubelet", &grace);
    check_listed_node(&bus, &node, &f);
    let before = bus.ids();
    assert!(f.stop().success());

    kubelet.answer(200, with_items(&list, vec![]));
    let f = start_with(&kubelet, &root, &bus, "200ms", "kubelet", &grace);
    kubelet.wait_polls(5);
    assert_eq!(bus.ids(), before, "an empty first list deleted entries");
    assert!(f.metric("prism_feeder_workloads_leaving") >= 1.0);
    kubelet.answer(200, list.to_string());
    kubelet.wait_polls(3);
    assert_eq!(bus.ids(), before, "the pods came back with other ids");
    assert_eq!(f.metric("prism_feeder_workloads_leaving"), 0.0);
    f.assert_running();
}

/// A pod whose service account has 253 characters (a DNS subdomain, the
/// longest Kubernetes accepts) and whose container made 1,000 sub-cgroups:
/// the pod gets its identity, every sub-cgroup carries the pod's entry, and
/// the names file stays readable.
#[test]
fn a_253_character_service_account_and_1000_sub_cgroups_under_one_pod() {
    let root = CgroupRoot::new("feeder-kubelet-big-pod");
    let bus = TestBus::new("feeder-kubelet-big-pod");
    let mut list = fixture("kubelet-pods-node-1.json");
    let account = [
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61),
    ]
    .join(".");
    assert_eq!(account.len(), 253);
    // shop/cache-0: the fixture's checks do not look at its identity
    let cache = &mut list["items"][2];
    cache["spec"]["serviceAccountName"] = json!(account);
    let node = make_node(&root, &list, Layout::Systemd);
    let name = FixturePod::from_json(&list["items"][2]).name;
    assert_eq!(name, "shop/cache-0");
    let (pod, pod_cg, _) = node.iter().find(|(p, _, _)| p.name == name).unwrap();
    let container = &pod.container_dirs(Layout::Systemd)[0];
    let subs: Vec<u64> = (0..1000)
        .map(|i| root.mkdir(&format!("{container}/sub{i}")))
        .collect();
    let kubelet = FakeKubelet::start(list.to_string());
    let f = start(&kubelet, &root, &bus, "200ms");
    check_listed_node(&bus, &node, &f);
    let e = bus.get(*pod_cg).expect("the pod's entry");
    for sub in &subs {
        assert_eq!(
            bus.get(*sub),
            Some(e),
            "a sub-cgroup without the pod's entry"
        );
    }
    assert_eq!(
        f.metric("prism_feeder_failures_total{reason=\"bad_service_account\"}"),
        0.0
    );
    let names = f.names(f.metric("prism_feeder_identities_live") as usize);
    assert!(names.contains_key(&e.identity.get()));
    f.assert_running();
}
