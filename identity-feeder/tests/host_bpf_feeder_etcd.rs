//! Cluster-wide identities on a real etcd (Debian's etcd-server, started on
//! loopback for each test): allocators of three nodes racing over
//! overlapping canonical strings agree on one id each and never share one;
//! three real prism-feeder processes (real cgroups, real buses) do the same
//! end to end; a node killed with SIGKILL loses its lease, after which
//! the ids only it used are collected while the shared ones stay; and an
//! etcd that is down or hung delays only new identities.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use prism_bus::Identity;
use prism_feeder::allocator::etcd::{EtcdAllocator, EtcdConfig};
use prism_feeder::allocator::{AllocError, Allocator};
use prism_feeder::metrics::Metrics;
use prism_feeder::workload::canonical::Canonical;
use prism_feeder::workload::labels::Labels;
use support::etcd::Etcd;
use support::{CgroupRoot, Feeder, TestBus, wait_for};

const PREFIX: &str = "/prism-test/";

fn config(etcd: &Etcd, node: &str) -> EtcdConfig {
    EtcdConfig {
        endpoints: vec![etcd.endpoint.clone()],
        prefix: PREFIX.into(),
        node: node.into(),
        lease_ttl: Duration::from_secs(2),
        gc_interval: Duration::from_millis(500),
        timeout: Duration::from_secs(10),
    }
}

/// An allocator, and what its wakes arrive on.
fn connect(rt: &tokio::runtime::Runtime, config: EtcdConfig) -> (EtcdAllocator, Receiver<()>) {
    let (woken, wakes) = channel();
    let wake = Box::new(move || {
        let _ = woken.send(());
    });
    let a = EtcdAllocator::connect(rt.handle(), config, Arc::new(Metrics::new()), wake)
        .expect("connect");
    (a, wakes)
}

/// Acquire as the reconciler does: ask, wait for the wake, take the answer.
fn acquire(a: &mut EtcdAllocator, wakes: &Receiver<()>, c: &Canonical) -> Identity {
    loop {
        match a.acquire(c, None) {
            Ok((id, _)) => return id,
            Err(AllocError::Pending) => {
                wakes
                    .recv_timeout(Duration::from_secs(20))
                    .expect("the worker wakes the caller with its answer");
            }
            Err(e) => panic!("acquiring {c}: {e}"),
        }
    }
}

/// A cgroup-source feeder of node `node-a` on `etcd`, with `extra` flags.
fn etcd_feeder(etcd: &Etcd, root: &CgroupRoot, bus: &TestBus, extra: &[&str]) -> Feeder {
    let mut args = vec![
        "--allocator",
        "etcd",
        "--node-name",
        "node-a",
        "--etcd-endpoints",
        &etcd.endpoint,
        "--etcd-prefix",
        PREFIX,
    ];
    args.extend_from_slice(extra);
    Feeder::start(&support::cgroup_feeder_args(root, bus, &args))
}

fn canonical(app: &str) -> Canonical {
    let labels: Labels = [("app".to_string(), app.to_string())].into();
    Canonical::for_pod("ns", "default", &labels).unwrap()
}

/// canonical -> id as etcd has it, checking the two directions agree.
fn etcd_ids(etcd: &Etcd) -> BTreeMap<String, u32> {
    let keys = etcd.keys(PREFIX);
    let by_canonical: BTreeMap<String, u32> = keys
        .iter()
        .filter_map(|(k, v)| {
            Some((
                k.strip_prefix(&format!("{PREFIX}canonical/"))?.to_string(),
                v.parse().unwrap(),
            ))
        })
        .collect();
    let by_id: BTreeMap<u32, String> = keys
        .iter()
        .filter_map(|(k, v)| {
            Some((
                u32::from_str_radix(k.strip_prefix(&format!("{PREFIX}id/"))?, 16).unwrap(),
                v.clone(),
            ))
        })
        .collect();
    assert_eq!(
        by_canonical.len(),
        by_id.len(),
        "every id has one canonical and back"
    );
    for (c, id) in &by_canonical {
        assert_eq!(
            by_id.get(id),
            Some(c),
            "id {id} is {c}'s in both directions"
        );
    }
    by_canonical
}

#[test]
fn three_nodes_racing_agree_on_one_id_per_canonical_and_collect_a_dead_nodes() {
    let etcd = Etcd::start();
    let start = Arc::new(Barrier::new(3));
    let nodes: Vec<_> = ["node-a", "node-b", "node-c"]
        .into_iter()
        .map(|node| {
            let (cfg, start) = (config(&etcd, node), start.clone());
            thread::spawn(move || {
                // A runtime per node: dropping it is the node dying.
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .unwrap();
                let (mut a, wakes) = connect(&rt, cfg);
                start.wait();
                // 60 canonicals every node has, 20 of its own, interleaved.
                let mut got = HashMap::new();
                for i in 0..80 {
                    let c = if i % 4 == 3 {
                        canonical(&format!("{node}-own-{i}"))
                    } else {
                        canonical(&format!("shared-{}", i / 4 * 3 + i % 4))
                    };
                    let id = acquire(&mut a, &wakes, &c);
                    got.insert(c.as_str().to_string(), id.get());
                }
                (rt, a, got)
            })
        })
        .collect();
    let mut results: Vec<_> = nodes.into_iter().map(|t| t.join().unwrap()).collect();

    let agreed = etcd_ids(&etcd);
    assert_eq!(agreed.len(), 60 + 3 * 20);
    for (_, _, got) in &results {
        for (c, id) in got {
            assert_eq!(
                agreed.get(c),
                Some(id),
                "{c} has the cluster's id on every node"
            );
        }
    }
    let ids: HashSet<u32> = agreed.values().copied().collect();
    assert_eq!(ids.len(), agreed.len(), "no id is shared by two canonicals");
    assert!(ids.iter().all(|&id| id >= 256));
    assert_eq!(
        ids.iter().max(),
        Some(&(256 + agreed.len() as u32 - 1)),
        "the smallest free ids, with no holes"
    );

    // Node C dies without a word: its lease expires, its own ids go, the
    // ones A and B still use stay.
    let (c_rt, c_alloc, c_got) = results.pop().unwrap();
    drop(c_alloc);
    drop(c_rt);
    wait_for(
        "node C's own ids collected",
        Duration::from_secs(30),
        || {
            let now = etcd_ids(&etcd);
            (!now.keys().any(|c| c.contains("node-c-own"))).then_some(())
        },
    );
    let now = etcd_ids(&etcd);
    assert_eq!(now.len(), 60 + 2 * 20);
    for (_, _, got) in &results {
        for (c, id) in got {
            assert_eq!(now.get(c), Some(id), "a live node's id stays: {c}");
        }
    }
    assert!(c_got.keys().any(|c| c.contains("node-c-own")));

    // A releases everything: what B still uses stays, A's own go.
    let (a_rt, mut a_alloc, a_got) = results.remove(0);
    for c in a_got.keys() {
        let app = c.rsplit("app=").next().unwrap().trim_end_matches(';');
        a_alloc.release(&canonical(app));
    }
    assert_eq!(a_alloc.live(), 0);
    wait_for(
        "node A's own ids collected",
        Duration::from_secs(30),
        || (etcd_ids(&etcd).len() == 60 + 20).then_some(()),
    );
    drop(a_rt);
}

#[test]
fn three_feeders_on_one_etcd_give_every_canonical_one_id_and_a_killed_ones_go() {
    let etcd = Etcd::start();
    let nodes = ["node-a", "node-b", "node-c"];
    let roots: Vec<CgroupRoot> = nodes
        .iter()
        .map(|n| CgroupRoot::new(&format!("feeder-etcd-{n}")))
        .collect();
    let buses: Vec<TestBus> = nodes
        .iter()
        .map(|n| TestBus::new(&format!("feeder-etcd-{n}")))
        .collect();
    for (node, root) in nodes.iter().zip(&roots) {
        for i in 0..30 {
            root.mkdir(&format!("system.slice/shared-{i}.service"));
        }
        for i in 0..10 {
            root.mkdir(&format!("system.slice/{node}-own-{i}.service"));
        }
    }
    // Started together: they race for the shared canonicals.
    let mut feeders: Vec<Feeder> = nodes
        .iter()
        .zip(roots.iter().zip(&buses))
        .map(|(node, (root, bus))| {
            Feeder::start(&support::cgroup_feeder_args(
                root,
                bus,
                &[
                    "--allocator",
                    "etcd",
                    "--node-name",
                    node,
                    "--etcd-endpoints",
                    &etcd.endpoint,
                    "--etcd-prefix",
                    PREFIX,
                    "--etcd-lease-ttl",
                    "2s",
                    "--etcd-gc-interval",
                    "1s",
                ],
            ))
        })
        .collect();
    for f in &feeders {
        f.wait_ready(Duration::from_secs(60));
    }

    // Each bus: label_hash -> identity. All of them together must agree.
    let mut by_hash: HashMap<u64, u32> = HashMap::new();
    let mut by_id: HashMap<u32, u64> = HashMap::new();
    for bus in &buses {
        let entries = bus.all();
        assert_eq!(entries.len(), 1 + 30 + 10, "system.slice and its units");
        for (_, e) in entries {
            let id = e.identity.get();
            assert_eq!(
                *by_hash.entry(e.label_hash).or_insert(id),
                id,
                "one canonical, one id on every node"
            );
            assert_eq!(
                *by_id.entry(id).or_insert(e.label_hash),
                e.label_hash,
                "one id, one canonical"
            );
        }
    }
    assert_eq!(by_hash.len(), 1 + 30 + 3 * 10);
    assert_eq!(etcd_ids(&etcd).len(), by_hash.len());

    // SIGKILL node C: after its lease, only the ids it alone used are collected.
    feeders[2].kill9();
    wait_for(
        "node C's own canonicals collected",
        Duration::from_secs(30),
        || {
            let ids = etcd_ids(&etcd);
            (!ids.keys().any(|c| c.contains("node-c-own"))).then_some(ids)
        },
    );
    let ids = etcd_ids(&etcd);
    assert_eq!(
        ids.len(),
        1 + 30 + 2 * 10,
        "the shared and A's and B's own stay"
    );
    for f in &feeders[..2] {
        f.assert_running();
        assert_eq!(f.metric("prism_feeder_identities_live"), 41.0);
    }
}

#[test]
fn an_etcd_outage_delays_only_new_identities() {
    let mut etcd = Etcd::start();
    let root = CgroupRoot::new("feeder-etcd-outage");
    let bus = TestBus::new("feeder-etcd-outage");
    let old = root.mkdir("system.slice/old.service");
    let going = root.mkdir("system.slice/going.service");
    let f = etcd_feeder(
        &etcd,
        &root,
        &bus,
        &[
            "--etcd-timeout",
            "1s",
            "--etcd-gc-interval",
            "1s",
            "--id-grace",
            "0s",
        ],
    );
    f.wait_ready(Duration::from_secs(30));
    let old_id = bus.get(old).unwrap().identity;

    etcd.kill();
    // A new workload cannot get an id while etcd is away; it is counted and
    // retried, and everything else goes on: a removal is applied at once.
    let new = root.mkdir("system.slice/new.service");
    wait_for(
        "the failed allocation to be counted",
        Duration::from_secs(20),
        || (f.metric("prism_feeder_failures_total{reason=\"allocation\"}") >= 1.0).then_some(()),
    );
    root.rmdir("system.slice/going.service");
    bus.wait_entry("the removed unit's entry gone", going, |e| e.is_none());
    assert_eq!(bus.get(new), None);
    assert_eq!(bus.get(old).map(|e| e.identity), Some(old_id));
    assert_eq!(f.get("/healthz").map(|(s, _)| s), Some(200));

    etcd.restart();
    let new_e = bus
        .wait_entry("the new unit's entry once etcd is back", new, |e| {
            e.is_some()
        })
        .unwrap();
    assert_ne!(new_e.identity, old_id);
    // The removed unit's id, released while etcd was away, is told and collected.
    wait_for(
        "the removed unit's canonical collected",
        Duration::from_secs(30),
        || (!etcd_ids(&etcd).keys().any(|c| c.contains("going.service"))).then_some(()),
    );
    assert!(etcd_ids(&etcd).keys().any(|c| c.contains("old.service")));
}

/// 2,500 ids no node uses, each with a 2 KiB canonical string: 5 MiB, more
/// than one gRPC answer may carry (4 MiB). The collector reads them a page
/// at a time and collects every one.
#[test]
fn ids_past_one_answers_size_are_all_collected() {
    use etcd_client::{Client, GetOptions};
    const IDS: u32 = 2500;
    let etcd = Etcd::start();
    support::etcd::rt().block_on(async {
        let mut c = Client::connect([&etcd.endpoint], None).await.unwrap();
        for i in 0..IDS {
            let id = 0x1000 + i;
            let canonical = format!(
                "io.prism/namespace=ns;io.prism/serviceaccount=default;app=a{i}-{};",
                "x".repeat(2048)
            );
            c.put(format!("{PREFIX}id/{id:06x}"), canonical.clone(), None)
                .await
                .unwrap();
            c.put(
                format!("{PREFIX}canonical/{canonical}"),
                id.to_string(),
                None,
            )
            .await
            .unwrap();
        }
    });
    let count = |what: &str| -> i64 {
        support::etcd::rt().block_on(async {
            let mut c = Client::connect([&etcd.endpoint], None).await.unwrap();
            c.get(
                format!("{PREFIX}{what}/"),
                Some(GetOptions::new().with_prefix().with_count_only()),
            )
            .await
            .unwrap()
            .count()
        })
    };
    assert_eq!(count("id"), IDS as i64);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _node = connect(&rt, config(&etcd, "node-a"));
    wait_for("every unused id collected", Duration::from_secs(60), || {
        (count("id") == 0 && count("canonical") == 0).then_some(())
    });
}

/// A hung etcd (SIGSTOP: nothing answered, nothing refused), with calls
/// allowed 30 s: the new units wait for their ids, and everything else
/// reaches the bus at once. (When the reconciler itself called etcd, a
/// removal waited behind each pending call's 30 s.)
#[test]
fn a_hung_etcd_holds_up_only_the_new_identities() {
    let etcd = Etcd::start();
    let root = CgroupRoot::new("feeder-etcd-hung");
    let bus = TestBus::new("feeder-etcd-hung");
    let old = root.mkdir("system.slice/old.service");
    let going = root.mkdir("system.slice/going.service");
    let f = etcd_feeder(&etcd, &root, &bus, &["--etcd-timeout", "30s"]);
    f.wait_ready(Duration::from_secs(30));
    let old_id = bus.get(old).unwrap().identity;

    etcd.pause();
    let new: Vec<u64> = (0..5)
        .map(|i| root.mkdir(&format!("system.slice/new-{i}.service")))
        .collect();
    // Long enough for the reconciler to have asked for every new id.
    thread::sleep(Duration::from_millis(500));
    let removed = Instant::now();
    root.rmdir("system.slice/going.service");
    bus.wait_entry("the removed unit's entry gone", going, |e| e.is_none());
    let took = removed.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "the removal waited {took:?} behind etcd"
    );
    assert!(new.iter().all(|&c| bus.get(c).is_none()));
    assert_eq!(bus.get(old).map(|e| e.identity), Some(old_id));
    assert_eq!(f.get("/healthz").map(|(s, _)| s), Some(200));

    etcd.resume();
    let ids: HashSet<u32> = new
        .iter()
        .map(|&c| {
            bus.wait_entry("a new unit's entry once etcd answers", c, |e| e.is_some())
                .unwrap()
                .identity
                .get()
        })
        .collect();
    assert_eq!(ids.len(), new.len(), "one id each");
    assert!(!ids.contains(&old_id.get()));
    f.assert_running();
}
