//! Label one cgroup on a bus by hand, the way prism-feeder would (for lab
//! experiments and demos; not shipped).
//!
//!     cargo run --example label -- /sys/fs/bpf/prism /sys/fs/cgroup/crit critical [weight]

use prism_bus::{BusPaths, BusWriter, LatencyClass, cgroup};
use prism_testkit::fixtures::sched_entry;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() >= 4,
        "usage: label BUS_DIR CGROUP_DIR unset|critical|normal|batch [WEIGHT]"
    );
    let class = match args[3].as_str() {
        "unset" => LatencyClass::Unset,
        "critical" => LatencyClass::Critical,
        "normal" => LatencyClass::Normal,
        "batch" => LatencyClass::Batch,
        other => anyhow::bail!("unknown class {other}"),
    };
    let weight: u32 = args.get(4).map_or(Ok(0), |w| w.parse())?;
    anyhow::ensure!(
        weight <= 127,
        "weight {weight} is out of range (1..=127, 0 unset)"
    );
    let id = cgroup::cgroup_id(std::path::Path::new(&args[2]))?;
    let mut w = BusWriter::create_or_open(&BusPaths::new(&args[1]), 1 << 16)?;
    let entry = sched_entry(256 + (id % 1000) as u32, class, weight);
    let generation = w.write_batch(&[(id, entry)], &[])?;
    println!("cgroup {id} -> {class} (generation {generation})");
    Ok(())
}
