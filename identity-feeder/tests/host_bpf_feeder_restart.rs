//! Crashes and restarts, with real cgroups, the real bus and the real binary:
//! - SIGKILL while the first batch is half written, then a restart: every
//!   entry that was on the bus comes back with the same identity, the rest
//!   are written, none is doubled;
//! - SIGKILL at 100 random points while units come and go: no live entry is
//!   ever deleted, no id ever changes, the names file is always readable;
//! - two feeders started together on one bus, 100 times: one serves, the
//!   other refuses with a clear error, and the bus stays whole.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::thread::sleep;
use std::time::{Duration, Instant};

use prism_bus::{Bus, BusPaths};
use support::{CgroupRoot, Feeder, TestBus};

const UNITS: usize = 3000;

fn start(root: &CgroupRoot, bus: &TestBus) -> Feeder {
    Feeder::start(&support::cgroup_feeder_args(root, bus, &[]))
}

/// Entries on the bus now, without waiting for the pin.
fn count(paths: &BusPaths) -> u64 {
    Bus::open(paths).map(|b| b.count()).unwrap_or(0)
}

#[test]
fn sigkill_mid_write_then_restart_keeps_every_identity() {
    let root = CgroupRoot::new("feeder-crash");
    for i in 0..UNITS {
        root.mkdir(&format!("system.slice/u{i}.service"));
    }
    let total = UNITS as u64 + 1; // and system.slice
    let mut caught = None;
    for attempt in 1..=8 {
        let bus = TestBus::new("feeder-crash");
        let mut f = start(&root, &bus);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = 0;
        while Instant::now() < deadline {
            seen = count(bus.paths());
            if seen > 0 {
                break;
            }
        }
        if seen > 0 && seen < total {
            f.kill9();
            let partial = count(bus.paths());
            println!("attempt {attempt}: killed with {partial} of {total} entries written");
            if partial < total {
                caught = Some((bus, partial));
                break;
            }
            // it finished the batch between the look and the kill
            continue;
        }
        println!("attempt {attempt}: the batch was done before the kill ({seen}); again");
    }
    let (bus, partial) = caught.expect("a kill in the middle of the first batch within 8 attempts");
    let before: HashMap<u64, u32> = bus
        .all()
        .into_iter()
        .map(|(k, e)| (k, e.identity.get()))
        .collect();
    assert_eq!(before.len() as u64, partial);
    assert!(partial < total);

    let f = start(&root, &bus);
    f.wait_ready(Duration::from_secs(60));
    let after: HashMap<u64, u32> = bus
        .all()
        .into_iter()
        .map(|(k, e)| (k, e.identity.get()))
        .collect();
    assert_eq!(
        after.len() as u64,
        total,
        "every cgroup written after the restart"
    );
    for (cg, id) in &before {
        assert_eq!(after.get(cg), Some(id), "cgroup {cg} kept its identity");
    }
    let unique: HashSet<u32> = after.values().copied().collect();
    assert_eq!(
        unique.len(),
        after.len(),
        "each unit its own identity, none doubled"
    );
    assert_eq!(
        f.metric("prism_feeder_allocations_total{kind=\"adopted\"}"),
        partial as f64
    );
}

/// A small seeded generator: the same points every run, and the seed is
/// printed so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// cgroup id -> identity on the bus now.
fn on_bus(bus: &TestBus) -> BTreeMap<u64, u32> {
    bus.all()
        .into_iter()
        .map(|(k, e)| (k, e.identity.get()))
        .collect()
}

/// What must hold after any crash or race: every cgroup in `truth` that
/// still exists (`live`) is on the bus with its identity, and no identity
/// is on two canonicals (units here each have their own).
fn assert_kept(
    truth: &BTreeMap<u64, u32>,
    live: &HashSet<u64>,
    now: &BTreeMap<u64, u32>,
    when: &str,
) {
    for (cgroup, id) in truth.iter().filter(|(c, _)| live.contains(c)) {
        assert_eq!(
            now.get(cgroup),
            Some(id),
            "{when}: cgroup {cgroup} lost or renumbered"
        );
    }
    let ids: HashSet<u32> = now.values().copied().collect();
    assert_eq!(ids.len(), now.len(), "{when}: an id on two cgroups");
}

const SEED: u64 = 0x5eed_c4a5_0f0f;

#[test]
fn sigkill_at_100_random_points_never_deletes_or_renumbers_a_live_entry() {
    let root = CgroupRoot::new("feeder-kill100");
    let bus = TestBus::new("feeder-kill100");
    let mut units: Vec<(String, u64)> = (0..200)
        .map(|i| {
            let rel = format!("system.slice/k{i}.service");
            let id = root.mkdir(&rel);
            (rel, id)
        })
        .collect();
    let system = root.id("system.slice");
    let f = start(&root, &bus);
    f.wait_ready(Duration::from_secs(30));
    drop(f);
    let mut truth = on_bus(&bus);
    assert_eq!(truth.len(), units.len() + 1);
    let mut rng = Rng(SEED);
    println!("seed {SEED:#x}");
    let mut next = units.len();
    let mut killed_unready = 0;
    for round in 0..100 {
        // Units come and go while no feeder runs, as on a busy node.
        for _ in 0..rng.below(4) {
            if rng.below(2) == 0 && units.len() > 100 {
                let (rel, _) = units.remove(rng.below(units.len() as u64) as usize);
                root.rmdir(&rel);
            } else {
                let rel = format!("system.slice/k{next}.service");
                next += 1;
                let id = root.mkdir(&rel);
                units.push((rel, id));
            }
        }
        let mut f = start(&root, &bus);
        // Two kills in three land in the first 30 ms (start, the tree
        // read, the first batch), the rest anywhere in 300 ms.
        let within_us = if rng.below(3) < 2 { 30_000 } else { 300_000 };
        sleep(Duration::from_micros(rng.below(within_us)));
        if !matches!(f.get("/readyz"), Some((200, _))) {
            killed_unready += 1;
        }
        let names = f.names_file.clone();
        f.kill9();
        let live: HashSet<u64> = units.iter().map(|(_, id)| *id).chain([system]).collect();
        let now = on_bus(&bus);
        assert_kept(&truth, &live, &now, &format!("round {round}"));
        if names.exists() {
            prism_bus::names::read(&names)
                .unwrap_or_else(|e| panic!("round {round}: the names file is unreadable: {e}"));
        }
        // What this run wrote for new units is theirs from now on.
        for (cgroup, id) in now {
            truth.entry(cgroup).or_insert(id);
        }
    }
    println!("{killed_unready} of 100 kills came before the feeder was ready");
    assert!(
        killed_unready > 0,
        "no kill came before readiness: the points are not random enough"
    );

    // A last, undisturbed run: everything live is on the bus, with the ids
    // it had; what went is gone.
    let f = start(&root, &bus);
    f.wait_ready(Duration::from_secs(30));
    let live: HashSet<u64> = units.iter().map(|(_, id)| *id).chain([system]).collect();
    let now = on_bus(&bus);
    assert_kept(&truth, &live, &now, "after the last restart");
    assert_eq!(now.keys().copied().collect::<HashSet<_>>(), live);
    assert!(f.metric("prism_feeder_allocations_total{kind=\"adopted\"}") >= 100.0);
}

#[test]
fn two_feeders_started_together_100_times_one_serves_and_the_other_refuses() {
    let root = CgroupRoot::new("feeder-race100");
    let bus = TestBus::new("feeder-race100");
    for i in 0..50 {
        root.mkdir(&format!("system.slice/r{i}.service"));
    }
    let mut truth: Option<BTreeMap<u64, u32>> = None;
    for round in 0..100 {
        let mut pair = [start(&root, &bus), start(&root, &bus)];
        // One of them exits (the pin directory is locked by the other).
        let loser = support::wait_for("one of the two to exit", Duration::from_secs(20), || {
            pair.iter_mut().position(|f| f.try_exit().is_some())
        });
        let winner = &pair[1 - loser];
        winner.wait_ready(Duration::from_secs(30));
        let log = pair[loser].log();
        assert!(
            log.contains("another writer holds the bus"),
            "round {round}: the refusal says why:\n{log}"
        );
        let now = on_bus(&bus);
        let live: HashSet<u64> = now.keys().copied().collect();
        match &truth {
            None => truth = Some(now),
            Some(t) => {
                assert_kept(t, &live, &now, &format!("round {round}"));
                assert_eq!(&now, t, "round {round}: the bus changed");
            }
        }
        assert_eq!(truth.as_ref().unwrap().len(), 51);
    }
}
