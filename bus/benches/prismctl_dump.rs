//! How long `prismctl dump` takes on a bus of 100k entries (root; real maps).
//! Prints figures; asserts nothing about speed. Target: < 2 s.
//!
//!     cargo bench -p prism-bus --bench prismctl_dump

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use prism_bus::{BusWriter, Entry, Facets, Flags, Identity, LatencyClass, Weight};
use prism_testkit::fixtures::TempBusDir;

const ENTRIES: u64 = 100_000;
const RUNS: usize = 5;

fn main() {
    let tmp = TempBusDir::new("bench-dump");
    let mut w = BusWriter::create_or_open(&tmp.paths, ENTRIES as u32 * 2).expect("create bus");
    let flags = Flags {
        facets: Facets::SCHED,
        class: LatencyClass::Normal,
        weight: Weight::NEUTRAL,
    };
    let batch: Vec<(u64, Entry)> = (0..ENTRIES)
        .map(|k| {
            let identity = Identity::new(256 + (k % 5000) as u32).expect("24-bit");
            (
                k + 1,
                Entry {
                    identity,
                    flags,
                    label_hash: k,
                    updated_ns: 1,
                },
            )
        })
        .collect();
    let started = Instant::now();
    w.write_batch(&batch, &[]).expect("fill bus");
    println!(
        "write_batch of {ENTRIES} entries: {:.3} s",
        started.elapsed().as_secs_f64()
    );

    for args in [&["dump"][..], &["dump", "--json"], &["stats"]] {
        let mut times: Vec<Duration> = (0..RUNS)
            .map(|_| {
                let t = Instant::now();
                let status = Command::new(env!("CARGO_BIN_EXE_prismctl"))
                    .arg("--bus-dir")
                    .arg(&tmp.paths.dir)
                    .args(args)
                    .stdout(Stdio::null())
                    .status()
                    .expect("run prismctl");
                assert!(status.success());
                t.elapsed()
            })
            .collect();
        times.sort();
        println!(
            "prismctl {:<12} {ENTRIES} entries: median {:.3} s, min {:.3} s, max {:.3} s ({RUNS} runs)",
            args.join(" "),
            times[RUNS / 2].as_secs_f64(),
            times[0].as_secs_f64(),
            times[RUNS - 1].as_secs_f64()
        );
    }
}
