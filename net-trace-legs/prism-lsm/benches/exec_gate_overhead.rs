//! What the exec gate costs an exec (root; the release binary): a shell in
//! a labelled cgroup runs /usr/bin/true 500 times, so each exec goes
//! through the whole gate (origin, identity, d_path, the rule lookup) and
//! is allowed; alternately without and with prism-lsm loaded (an
//! allow-list naming /usr/bin/true for that identity), in the same run.
//! Prints each pair, the medians and the difference per exec.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use prism_bus::{BusWriter, Entry, Facets, Flags, Identity, LatencyClass, Weight};
use prism_testkit::fixtures::{TempBusDir, TempCgroup};
use prism_testkit::stats::paired_trials;

const EXECS: u32 = 500;
const PAIRS: usize = 7;
const IDENTITY: u32 = 700;

fn main() {
    prism_testkit::fixtures::require_root();
    let cg = TempCgroup::new("lsm-bench");
    let bus = TempBusDir::new("lsm-bench");
    let mut w = BusWriter::create_or_open(&bus.paths, 1024).unwrap();
    let entry = Entry {
        identity: Identity::new(IDENTITY).unwrap(),
        flags: Flags {
            facets: Facets::ALL,
            class: LatencyClass::Normal,
            weight: Weight::NEUTRAL,
        },
        label_hash: 0,
        updated_ns: 1,
    };
    w.write_batch(&[(cg.id(), entry)], &[]).unwrap();
    let policy = std::env::temp_dir().join(format!("prism-lsm-bench-{}.toml", std::process::id()));
    std::fs::write(
        &policy,
        format!(
            "[[workload]]\nidentity = {IDENTITY}\nallow = [\"/usr/bin/true\", \"/usr/bin/dash\"]\n"
        ),
    )
    .unwrap();

    // Microseconds per exec of /usr/bin/true from a shell in the cgroup.
    let execs = || {
        // The shell's own exec happens outside the cgroup; it re-execs
        // itself inside, so the execs of its children are the workload's
        // own (gated), as a container entrypoint's children are.
        let mut sh = Command::new("/usr/bin/dash")
            .args([
                "-c",
                "read go; exec /usr/bin/dash -c \"$0\"",
                &format!("i=0; while [ $i -lt {EXECS} ]; do /usr/bin/true; i=$((i+1)); done"),
            ])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        cg.enter(sh.id());
        let t0 = Instant::now();
        writeln!(sh.stdin.as_mut().unwrap(), "go").unwrap();
        assert!(sh.wait().unwrap().success(), "an exec was refused");
        t0.elapsed().as_secs_f64() * 1e6 / f64::from(EXECS)
    };
    let start = || -> Child {
        let child = Command::new(env!("CARGO_BIN_EXE_prism-lsm"))
            .args(["--policy", policy.to_str().unwrap(), "--bus-dir"])
            .arg(&bus.paths.dir)
            .args(["--names-file", "/nonexistent/names"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prism-lsm");
        sleep(Duration::from_millis(1500));
        child
    };
    let stats = prism_testkit::fixtures::BpfStats::enable();
    let pairs = paired_trials(PAIRS, execs, start, || {
        for prog in ["gate_exec", "record_origin", "inherit_origin"] {
            let (runs, ns) = stats.of(prog);
            println!(
                "{prog}: {runs} runs, {:.0} ns each in the kernel",
                ns as f64 / runs.max(1) as f64
            );
        }
    });
    prism_testkit::stats::report_pairs("gated exec of /usr/bin/true", "prism-lsm", EXECS, pairs);
    let _ = std::fs::remove_file(policy);
}
