//! prism-syscalls: syscalls per workload, every second (docs/CONSUMER.md).

use std::mem::MaybeUninit;
use std::time::Duration;

use prism_bus::BusPaths;
use prism_bus::consumer::SlotKeeper;
use prism_bus::names::{DEFAULT_NAMES_PATH, Names};

fn main() -> anyhow::Result<()> {
    let mut obj = MaybeUninit::uninit();
    let skel = prism_consumer_example::load(&mut obj)?;
    let mut keeper = SlotKeeper::new(BusPaths::default());
    let mut names = Names::new(Some(DEFAULT_NAMES_PATH.into()));
    loop {
        // Attach the bus when it appears, follow a re-created one.
        keeper.poll(&skel.maps.prism_bus_identity, &skel.maps.prism_bus_meta)?;
        let _ = names.refresh();
        for (identity, n) in prism_consumer_example::counts(&skel)? {
            println!(
                "{identity:>8} {:<30} {n}",
                names.get(identity).unwrap_or("-")
            );
        }
        println!();
        std::thread::sleep(Duration::from_secs(1));
    }
}
