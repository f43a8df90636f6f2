//! The example consumer of docs/CONSUMER.md on this host's real kernel
//! (root): built, loaded, and a process in a labelled cgroup is counted
//! under its identity.

use std::io::{BufRead, BufReader, Write};
use std::mem::MaybeUninit;
use std::process::{Command, Stdio};

use prism_bus::consumer::SlotKeeper;
use prism_bus::{BusWriter, LatencyClass};
use prism_testkit::fixtures::{TempBusDir, TempCgroup, sched_entry};

#[test]
fn a_labelled_process_is_counted_under_its_identity() {
    let cg = TempCgroup::new("example");
    let bus = TempBusDir::new("example");
    BusWriter::create_or_open(&bus.paths, 1024)
        .unwrap()
        .write_batch(&[(cg.id(), sched_entry(700, LatencyClass::Normal, 0))], &[])
        .unwrap();
    let mut obj = MaybeUninit::uninit();
    let skel = prism_consumer_example::load(&mut obj).unwrap();
    SlotKeeper::new(bus.paths.clone())
        .poll(&skel.maps.prism_bus_identity, &skel.maps.prism_bus_meta)
        .unwrap();

    // A cat in the cgroup echoes 100 lines: at least 200 syscalls there.
    let mut cat = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    cg.enter(cat.id());
    let mut input = cat.stdin.take().unwrap();
    let mut output = BufReader::new(cat.stdout.take().unwrap());
    for _ in 0..100 {
        writeln!(input, "x").unwrap();
        let mut line = String::new();
        output.read_line(&mut line).unwrap();
    }
    drop(input);
    cat.wait().unwrap();
    let counts = prism_consumer_example::counts(&skel).unwrap();
    let ours = counts.iter().find(|(id, _)| *id == 700).map(|(_, n)| *n);
    assert!(ours.is_some_and(|n| n >= 200), "{counts:?}");
}
