//! What prism-trace costs an exec (root; the release binary): 1,000
//! fork+exec+wait of /bin/true, alternately without and with prism-trace
//! reporting every exec and exit (to /dev/null), in the same run. Prints
//! each trial, the medians and the difference per exec.

use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use prism_testkit::stats::paired_trials;

const EXECS: u32 = 1000;
const PAIRS: usize = 7;

/// Microseconds per fork+exec+wait of /bin/true.
fn execs() -> f64 {
    let t0 = Instant::now();
    for _ in 0..EXECS {
        assert!(Command::new("/bin/true").status().unwrap().success());
    }
    t0.elapsed().as_secs_f64() * 1e6 / f64::from(EXECS)
}

fn start_trace() -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_prism-trace"))
        .args([
            "--bus-dir",
            "/nonexistent/bus",
            "--names-file",
            "/nonexistent/names",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prism-trace");
    // Loaded and attached well within this (the verifier takes milliseconds).
    sleep(Duration::from_millis(700));
    child
}

fn main() {
    prism_testkit::fixtures::require_root();
    let stats = prism_testkit::fixtures::BpfStats::enable();
    let pairs = paired_trials(PAIRS, execs, start_trace, || {
        for prog in ["trace_exec", "trace_exit"] {
            let (runs, ns) = stats.of(prog);
            println!(
                "{prog}: {runs} runs, {:.0} ns each in the kernel",
                ns as f64 / runs.max(1) as f64
            );
        }
    });
    prism_testkit::stats::report_pairs("exec+exit of /bin/true", "prism-trace", EXECS, pairs);
}
