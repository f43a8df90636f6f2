//! prism-feeder's cgroup source on this host's real kernel (root): real
//! cgroup v2 directories in a systemd-like layout under a private root, the
//! real pinned bus, the real binary. Built-in unit rules, a rules file with
//! classes and SIGHUP reloads, cgroups appearing and vanishing live, SIGTERM
//! leaving the bus in place, and a restart collecting what went meanwhile.

mod support;

use std::collections::HashSet;
use std::fs;
use std::time::Duration;

use prism_bus::{Facets, LatencyClass};
use support::{CgroupRoot, Feeder, TestBus, same};

const READY: Duration = Duration::from_secs(20);

fn feeder(root: &CgroupRoot, bus: &TestBus, extra: &[&str]) -> Feeder {
    let f = Feeder::start(&support::cgroup_feeder_args(root, bus, extra));
    f.wait_ready(READY);
    f
}

#[test]
fn every_unit_gets_its_own_identity_and_its_descendants_share_it() {
    let root = CgroupRoot::new("feeder-units");
    let bus = TestBus::new("feeder-units");
    let slice = root.mkdir("system.slice");
    let a = root.mkdir("system.slice/a.service");
    let b = root.mkdir("system.slice/b.service");
    let b1 = root.mkdir("system.slice/b.service/payload");
    let b2 = root.mkdir("system.slice/b.service/payload/deeper");
    let scope = root.mkdir("user.slice/session-1.scope");
    let user = root.id("user.slice");
    let stray = root.mkdir("not-a-unit");

    let _f = feeder(&root, &bus, &[]);
    let id = |cg| {
        bus.get(cg)
            .unwrap_or_else(|| panic!("no entry for cgroup {cg}"))
    };
    let ids: HashSet<u32> = [slice, a, b, scope, user]
        .iter()
        .map(|&cg| id(cg).identity.get())
        .collect();
    assert_eq!(ids.len(), 5, "each unit its own identity");
    assert!(ids.iter().all(|&i| i >= 256));
    assert!(
        same(&id(b1), &id(b)),
        "a cgroup below a unit carries the unit's entry"
    );
    assert!(same(&id(b2), &id(b)));
    assert_eq!(
        bus.get(stray),
        None,
        "a directory that is no unit gets nothing"
    );
    let e = id(a);
    assert_eq!(e.flags.facets, Facets::ALL);
    assert_eq!(e.flags.class, LatencyClass::Unset);
    assert_eq!(
        e.label_hash,
        prism_bus::label_hash(b"io.prism/cgroup=system.slice/a.service;")
    );
}

#[test]
fn rules_set_classes_weights_and_labels_and_sighup_reloads_them() {
    let root = CgroupRoot::new("feeder-rules");
    let bus = TestBus::new("feeder-rules");
    let pg = root.mkdir("system.slice/postgresql@15.service");
    let pg_child = root.mkdir("system.slice/postgresql@15.service/worker");
    let b1 = root.mkdir("system.slice/batch-1.service");
    let b2 = root.mkdir("system.slice/batch-2.service");
    let other = root.mkdir("system.slice/cron.service");
    let rules = std::env::temp_dir().join(format!("prism-test-rules-{}.toml", std::process::id()));
    let write_rules = |pg_class: &str| {
        fs::write(
            &rules,
            format!(
                r#"
                [[rule]]
                match = "system.slice/postgresql*.service"
                name = "postgres"
                labels = {{ app = "postgres" }}
                class = "{pg_class}"
                weight = 96

                [[rule]]
                match = "system.slice/batch-*.service"
                class = "batch"
                facets = ["sched", "observe"]
                "#
            ),
        )
        .unwrap()
    };
    write_rules("critical");
    let f = feeder(&root, &bus, &["--rules", rules.to_str().unwrap()]);

    let e = bus.get(pg).expect("postgres entry");
    assert_eq!(e.flags.class, LatencyClass::Critical);
    assert_eq!(e.flags.weight.raw(), 96);
    assert_eq!(
        e.label_hash,
        prism_bus::label_hash(b"io.prism/cgroup=system.slice/postgresql*.service;app=postgres;")
    );
    assert!(same(&bus.get(pg_child).unwrap(), &e));
    let (e1, e2) = (bus.get(b1).unwrap(), bus.get(b2).unwrap());
    assert_eq!(e1.identity, e2.identity, "one rule, one identity");
    assert_eq!(e1.flags.class, LatencyClass::Batch);
    assert_eq!(e1.flags.facets, Facets::SCHED.union(Facets::OBSERVE));
    assert_eq!(e.flags.facets, Facets::ALL, "no facets key: the default");
    let cron = bus.get(other).expect("a unit no rule matches");
    assert_eq!(cron.flags.class, LatencyClass::Unset);
    assert_ne!(cron.identity, e1.identity);
    // system.slice, postgres, batch-*, cron: names for people, by identity.
    let names = f.names(4);
    assert_eq!(names[&e.identity.get()], "postgres");
    assert_eq!(names[&e1.identity.get()], "system.slice/batch-*.service");
    assert_eq!(names[&cron.identity.get()], "system.slice/cron.service");
    assert!(
        f.namespaces().is_empty(),
        "no cgroup identity has a namespace"
    );

    // A new class for postgres: same identity, new class, on the next SIGHUP.
    write_rules("batch");
    f.signal(libc::SIGHUP);
    let after = bus
        .wait_entry("postgres relabelled batch", pg, |e| {
            e.is_some_and(|e| e.flags.class == LatencyClass::Batch)
        })
        .unwrap();
    assert_eq!(after.identity, e.identity);
    assert_eq!(bus.get(pg_child).unwrap().flags.class, LatencyClass::Batch);

    // A broken file is refused; the rules in force stay.
    fs::write(&rules, "[[rule]]\nmatch = \"a[\"\n").unwrap();
    f.signal(libc::SIGHUP);
    support::wait_for(
        "the bad rules to be counted",
        Duration::from_secs(10),
        || (f.metric("prism_feeder_failures_total{reason=\"bad_rule\"}") == 1.0).then_some(()),
    );
    assert_eq!(bus.get(pg).unwrap().flags.class, LatencyClass::Batch);
    assert!(f.log().contains("the old ones stay in force"));
    let _ = fs::remove_file(&rules);
}

#[test]
fn cgroups_that_appear_and_vanish_are_followed_and_a_returning_one_gets_its_id_back() {
    let root = CgroupRoot::new("feeder-live");
    let bus = TestBus::new("feeder-live");
    root.mkdir("system.slice");
    // A grace for workloads no source names while their cgroup lives: a
    // unit whose cgroup went is not one of them.
    let f = feeder(&root, &bus, &["--delete-grace", "30s"]);

    let generation = bus.generation();
    let svc = root.mkdir("system.slice/new.service");
    let e = bus
        .wait_entry("the new unit's entry", svc, |e| e.is_some())
        .unwrap();
    // Written once, with its own identity: never first with its slice's
    // (the tree reached the writer before the rules' verdict once, and each
    // new unit went out twice, the first time as system.slice).
    std::thread::sleep(Duration::from_millis(300));
    assert_ne!(
        e.identity,
        bus.get(root.id("system.slice")).unwrap().identity
    );
    assert!(same(&bus.get(svc).unwrap(), &e));
    assert_eq!(bus.generation(), generation + 1, "one batch for a new unit");
    // A container made below it after the unit: the same entry, written for
    // its own cgroup id (one lookup for a consumer).
    let inner = root.mkdir("system.slice/new.service/inner/leaf");
    bus.wait_entry("the nested cgroup's entry", inner, |x| {
        x.is_some_and(|x| same(x, &e))
    });

    root.rmdir("system.slice/new.service/inner/leaf");
    bus.wait_entry("the leaf's entry gone", inner, |x| x.is_none());
    root.rmdir("system.slice/new.service/inner");
    root.rmdir("system.slice/new.service");
    bus.wait_entry("the unit's entry gone", svc, |x| x.is_none());
    assert!(
        !f.log().contains("kept for the grace"),
        "a unit whose cgroup went is not held for --delete-grace"
    );
    assert_eq!(f.metric("prism_feeder_identities_live"), 1.0);

    // Its id stays its own for --id-grace: a new workload gets another one,
    // and the unit made again gets its old one back.
    let next = root.mkdir("system.slice/next.service");
    let n = bus
        .wait_entry("the next unit's entry", next, |e| e.is_some())
        .unwrap();
    assert_ne!(n.identity, e.identity);
    let again = root.mkdir("system.slice/new.service");
    bus.wait_entry("the returning unit's entry", again, |x| {
        x.is_some_and(|x| same(x, &e))
    });
    assert_eq!(
        f.metric("prism_feeder_allocations_total{kind=\"kept\"}"),
        1.0
    );
    assert!(f.metric("prism_feeder_propagation_seconds_count") >= 2.0);
}

#[test]
fn sigterm_leaves_the_bus_and_a_restart_collects_what_went_meanwhile() {
    let root = CgroupRoot::new("feeder-restart");
    let bus = TestBus::new("feeder-restart");
    let keep = root.mkdir("system.slice/keep.service");
    let going = root.mkdir("system.slice/going.service");
    let mut f = feeder(&root, &bus, &[]);
    let before = bus.all();
    assert_eq!(before.len(), 3);
    assert!(f.stop().success(), "SIGTERM is a clean exit");
    assert_eq!(bus.all(), before, "the bus is left for its consumers");

    // While the feeder is down: one unit goes, one comes.
    root.rmdir("system.slice/going.service");
    let came = root.mkdir("system.slice/came.service");
    let _f = feeder(&root, &bus, &[]);
    let keep_before = before.iter().find(|(k, _)| *k == keep).unwrap().1;
    assert_eq!(
        bus.get(keep).map(|e| e.identity),
        Some(keep_before.identity)
    );
    assert_eq!(bus.get(going), None, "the gone cgroup's entry is collected");
    let came_e = bus.get(came).expect("the new unit's entry");
    let going_id = before.iter().find(|(k, _)| *k == going).unwrap().1.identity;
    assert_eq!(
        came_e.identity, going_id,
        "the freed id is the smallest free one again"
    );
}

#[test]
fn a_full_bus_is_reported_the_rest_served_and_room_reused() {
    let root = CgroupRoot::new("feeder-full");
    let bus = TestBus::new("feeder-full");
    let units: Vec<u64> = (0..6)
        .map(|i| root.mkdir(&format!("u{i}.service")))
        .collect();
    let f = feeder(&root, &bus, &["--max-entries", "4"]);
    support::wait_for(
        "the full map to be counted",
        Duration::from_secs(10),
        || (f.metric("prism_feeder_failures_total{reason=\"bus_full\"}") >= 2.0).then_some(()),
    );
    assert_eq!(bus.all().len(), 4, "what fits is written");
    assert!(f.log().contains("is full"), "said clearly:\n{}", f.log());
    // A unit goes: its slot is taken by one that waited.
    let written: Vec<u64> = bus.all().into_iter().map(|(k, _)| k).collect();
    let waiting: Vec<u64> = units
        .iter()
        .copied()
        .filter(|u| !written.contains(u))
        .collect();
    let gone = units.iter().position(|u| *u == written[0]).unwrap();
    root.rmdir(&format!("u{gone}.service"));
    support::wait_for("a waiting unit written", Duration::from_secs(10), || {
        waiting.iter().any(|w| bus.get(*w).is_some()).then_some(())
    });
    assert_eq!(bus.all().len(), 4);
}

#[test]
fn systemd_hears_ready_once_and_only_after_the_bus_is_written() {
    let root = CgroupRoot::new("feeder-notify");
    let bus = TestBus::new("feeder-notify");
    let a = root.mkdir("system.slice/a.service");
    let sock_path =
        std::env::temp_dir().join(format!("prism-feeder-notify-{}.sock", std::process::id()));
    let _ = fs::remove_file(&sock_path);
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(READY)).unwrap();
    let _f = Feeder::start_env(
        &support::cgroup_feeder_args(&root, &bus, &[]),
        &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())],
    );
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("READY=1 from the feeder");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg:?}");
    assert!(
        bus.get(a).is_some(),
        "READY=1 came before the bus held the unit's entry"
    );
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    assert!(sock.recv(&mut buf).is_err(), "READY=1 is sent once");
    let _ = fs::remove_file(&sock_path);
}
