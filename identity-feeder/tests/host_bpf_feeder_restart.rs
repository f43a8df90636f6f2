//! A crash in the middle of writing the bus (SIGKILL while the first batch
//! is half written), then a restart: every entry that was on the bus comes
//! back with the same identity, the rest are written, none is doubled. Real
//! cgroups, the real bus, the real binary.

mod support;

use std::collections::{HashMap, HashSet};
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
            caught = Some((bus, partial));
            break;
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
