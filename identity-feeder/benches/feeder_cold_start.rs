//! prism-feeder's speed and size on a 10k-pod node (root; real cgroups, the
//! real bus, the release binary; the API server and kubelet are the
//! loopback stand-ins of the tests):
//! - cold start: process start -> every pod and container cgroup on the bus;
//! - one pod event (a watch ADDED or MODIFIED) -> its bus entry, p50/p99;
//! - resident memory with 10k pods.
//!
//! Targets (issue [3/6]): cold start <= 1 s, event p99 <= 1 ms, RSS <= 40 MiB;
//! and on a 50k-pod node (100k cgroups): cold start <= 5 s, RSS <= 100 MiB.
//! Prints figures; asserts only that the work was done.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use prism_bus::{Bus, LatencyClass};
use serde_json::{Value, json};
use support::fake_api::FakeApi;
use support::fake_kubelet::FakeKubelet;
use support::pods::{FixturePod, Layout, fixture};
use support::{CgroupRoot, Feeder, TestBus, wait_for};

const PODS: usize = 10_000;
const BIG_PODS: usize = 50_000;
const REPLICAS: usize = 10; // pods per workload: 1,000 distinct identities
const EVENTS: usize = 300;

/// A fixture pod (with its managed fields, statuses, ...) made the i-th.
fn nth_pod(template: &Value, i: usize) -> Value {
    let mut p = template.clone();
    let m = &mut p["metadata"];
    m["name"] = json!(format!("app{}-7d9f8b6c5d-{i:05}", i / REPLICAS));
    m["namespace"] = json!(format!("team-{}", i / REPLICAS % 7));
    m["uid"] = json!(format!("0b0c0d0e-{:04x}-4000-8000-{i:012x}", i / 65536));
    m["labels"] = json!({
        "app": format!("app{}", i / REPLICAS),
        "tier": "backend",
        "pod-template-hash": "7d9f8b6c5d",
        "prism.io/latency-class": if i.is_multiple_of(3) { "critical" } else { "batch" },
    });
    m["resourceVersion"] = json!((10_000 + i).to_string());
    p["status"]["qosClass"] = json!(["Guaranteed", "Burstable", "BestEffort"][i % 3]);
    p
}

struct Node {
    root: CgroupRoot,
    list: Value,
    pods: Vec<FixturePod>,
}

fn build_node(n: usize) -> Node {
    let template = fixture("api-pods-node-1.json")["items"][0].clone();
    let root = CgroupRoot::new("feeder-bench");
    let t0 = Instant::now();
    let pods: Vec<FixturePod> = (0..n)
        .map(|i| FixturePod::from_json(&nth_pod(&template, i)))
        .collect();
    for p in &pods {
        p.make_cgroups(&root, Layout::Systemd);
    }
    let list = json!({
        "kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "20000"},
        "items": pods.iter().map(|p| p.json.clone()).collect::<Vec<_>>(),
    });
    println!(
        "node: {n} pods ({} distinct identities), {} cgroups made in {:.1} s, pod list {:.1} MB",
        n / REPLICAS,
        support::cgroup_count(root.path()),
        t0.elapsed().as_secs_f64(),
        list.to_string().len() as f64 / 1e6
    );
    Node { root, list, pods }
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// The kube source on `api`, as node-1, onto `root` and `bus`.
fn kube_args<'a>(api: &'a FakeApi, root: &'a CgroupRoot, bus: &'a TestBus) -> Vec<&'a str> {
    vec![
        "--source",
        "kube",
        "--kubeconfig",
        api.kubeconfig(),
        "--node-name",
        "node-1",
        "--cgroup-root",
        root.arg(),
        "--bus-dir",
        bus.arg(),
        "--promote-namespace",
        "team-*",
    ]
}

/// Start the feeder and time how long until the bus holds `want` entries.
fn cold_start(args: &[&str], bus: &TestBus, want: u64) -> (Feeder, Duration) {
    let t0 = Instant::now();
    let f = Feeder::start(args);
    wait_for(
        "the whole node on the bus",
        Duration::from_secs(120),
        || {
            f.assert_running();
            let n = Bus::open(bus.paths()).map(|b| b.count()).unwrap_or(0);
            (n >= want).then_some(())
        },
    );
    let took = t0.elapsed();
    f.wait_ready(Duration::from_secs(60));
    (f, took)
}

fn main() {
    prism_testkit::fixtures::require_root();
    let node = build_node(PODS);
    let want = support::cgroup_count(node.root.path()) as u64 - 3; // kubepods.slice and its burstable and besteffort slices are no pod's

    // --- kube source: list (20 pages of 500) + watch
    let api = FakeApi::start(node.list.clone());
    let mut cold = vec![];
    for run in 0..3 {
        // An empty bus each time: a first start on the node.
        let bus = TestBus::new("feeder-bench");
        let args = kube_args(&api, &node.root, &bus);
        let (mut f, took) = cold_start(&args, &bus, want);
        cold.push(took);
        println!(
            "kube cold start {run}: {want} entries in {:.3} s; RSS {} KiB (peak {} KiB)",
            took.as_secs_f64(),
            rss_kib(f.pid(), "VmRSS:"),
            rss_kib(f.pid(), "VmHWM:")
        );
        if run < 2 {
            assert!(f.stop().success());
            continue;
        }
        events(&api, &f, &node, &bus);
        let rss = rss_kib(f.pid(), "VmRSS:");
        println!("kube after {EVENTS} more pods: RSS {rss} KiB");
        // A restart onto the full bus: every entry re-adopted.
        assert!(f.stop().success());
        let t0 = Instant::now();
        let f = Feeder::start(&args);
        f.wait_ready(Duration::from_secs(60));
        println!(
            "kube restart onto the full bus: ready in {:.3} s, {} ids adopted",
            t0.elapsed().as_secs_f64(),
            f.metric("prism_feeder_allocations_total{kind=\"adopted\"}")
        );
    }
    cold.sort();
    println!(
        "kube cold start ({PODS} pods, {want} cgroups): median {:.3} s [{:.3} .. {:.3}] (target <= 1 s)",
        cold[1].as_secs_f64(),
        cold[0].as_secs_f64(),
        cold[2].as_secs_f64()
    );
    drop(api);

    // --- kubelet source: one /pods of 10k
    let bus = TestBus::new("feeder-bench-kubelet");
    let kubelet = FakeKubelet::start(node.list.to_string());
    let url = kubelet.url();
    let args = [
        "--source",
        "kubelet",
        "--kubelet-url",
        &url,
        "--kubelet-ca-file",
        kubelet.ca_file.to_str().unwrap(),
        "--kubelet-token-file",
        kubelet.token_file.to_str().unwrap(),
        "--kubelet-interval",
        "10s",
        "--cgroup-root",
        node.root.arg(),
        "--bus-dir",
        bus.arg(),
        "--promote-namespace",
        "team-*",
    ];
    let (f, took) = cold_start(&args, &bus, want);
    println!(
        "kubelet cold start ({PODS} pods): {:.3} s; RSS {} KiB (peak {} KiB)",
        took.as_secs_f64(),
        rss_kib(f.pid(), "VmRSS:"),
        rss_kib(f.pid(), "VmHWM:")
    );
    drop((f, kubelet, node));

    // --- 50k pods, 100k cgroups: one kube cold start
    let big = build_node(BIG_PODS);
    let want = support::cgroup_count(big.root.path()) as u64 - 3;
    let api = FakeApi::start(big.list.clone());
    let bus = TestBus::new("feeder-bench-big");
    let args = kube_args(&api, &big.root, &bus);
    let (f, took) = cold_start(&args, &bus, want);
    println!(
        "kube cold start ({BIG_PODS} pods, {want} cgroups): {:.3} s (target <= 5 s); RSS {} KiB (peak {} KiB; target <= 100 MiB)",
        took.as_secs_f64(),
        rss_kib(f.pid(), "VmRSS:"),
        rss_kib(f.pid(), "VmHWM:")
    );
}

/// One watch event at a time, each timed until the bus shows it.
fn events(api: &FakeApi, f: &Feeder, node: &Node, bus: &TestBus) {
    api.wait_watching();
    let bus_map = Bus::open(bus.paths()).unwrap();
    let template = &node.pods[0].json;
    let (mut added, mut modified) = (vec![], vec![]);
    for i in 0..EVENTS {
        // A new pod whose cgroup the kubelet already made.
        let p = FixturePod::from_json(&nth_pod(template, PODS + i));
        let (cg, _) = p.make_cgroups(&node.root, Layout::Systemd);
        let t0 = Instant::now();
        api.event("ADDED", &p.json);
        while bus_map.get(cg).unwrap().is_none() {
            std::thread::yield_now();
        }
        added.push(t0.elapsed());

        // An existing pod relabelled (a class change: same identity).
        let old = &node.pods[i * 7];
        let cg = node.root.id(&old.dir(Layout::Systemd));
        let before = bus_map.get(cg).unwrap().unwrap().flags.class;
        let mut changed = old.json.clone();
        let to = if before == LatencyClass::Batch {
            "critical"
        } else {
            "batch"
        };
        changed["metadata"]["labels"]["prism.io/latency-class"] = json!(to);
        let t0 = Instant::now();
        api.event("MODIFIED", &changed);
        while bus_map.get(cg).unwrap().unwrap().flags.class == before {
            std::thread::yield_now();
        }
        modified.push(t0.elapsed());
    }
    for (what, mut lat) in [("ADDED (new pod)", added), ("MODIFIED (class)", modified)] {
        lat.sort();
        println!(
            "pod event -> bus entry, {what}, {EVENTS} events: p50 {:.0} us, p99 {:.0} us, max {:.0} us (target p99 <= 1 ms)",
            percentile(&lat, 0.5).as_secs_f64() * 1e6,
            percentile(&lat, 0.99).as_secs_f64() * 1e6,
            lat.last().unwrap().as_secs_f64() * 1e6
        );
    }
    println!(
        "feeder's own propagation histogram: {} events, mean {:.0} us",
        f.metric("prism_feeder_propagation_seconds_count"),
        f.metric("prism_feeder_propagation_seconds_sum")
            / f.metric("prism_feeder_propagation_seconds_count")
            * 1e6
    );
}
