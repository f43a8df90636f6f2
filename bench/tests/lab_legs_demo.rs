//! The three-leg demo in the lab kernel (sched_ext and the BPF LSM): one
//! identity, seen at once by scx_prism, prism-net, prism-trace and
//! prism-lsm, each through the one bus prism-feeder wrote. Ignored by a
//! plain `cargo test`; ci/test runs it in the guest.

use std::process::Command;

use serde_json::Value;

#[test]
#[ignore = "needs sched_ext and the BPF LSM: run in the lab guest"]
fn one_identity_is_scheduled_counted_traced_and_gated_at_once() {
    let out = std::env::temp_dir().join(format!("prism-legs-demo-{}", std::process::id()));
    let run = Command::new(env!("CARGO_BIN_EXE_prism-legs-demo"))
        .args(["--json", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let s: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    println!("{s}");
    assert!(s["identity"].as_u64().unwrap() >= 256);
    assert_eq!(s["class"], "critical", "prismctl reads the rule's class");
    assert!(s["scheduler"].as_str().unwrap().starts_with("scx_prism"));
    assert!(s["latency_samples"].as_u64().unwrap() > 500, "{s}");
    // 200 datagrams of 1000 bytes, each with its IPv4 and UDP headers.
    assert_eq!(s["egress_packets"], 200, "{s}");
    assert_eq!(s["egress_bytes"], 200 * (1000 + 28), "{s}");
    let execs: Vec<&str> = s["execs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    for want in ["/usr/bin/true", "/usr/bin/uname"] {
        assert!(execs.contains(&want), "{want} not traced: {execs:?}");
    }
    assert!(
        !execs.contains(&"/usr/bin/id"),
        "a denied exec never happened"
    );
    assert_eq!(s["denied"], serde_json::json!(["/usr/bin/id"]));
    assert_eq!(
        s["denied_exit_status"], 126,
        "EPERM: the shell's cannot-execute"
    );
    assert!(
        !std::path::Path::new("/sys/fs/cgroup/prism-demo.slice").exists(),
        "the demo removes its cgroups"
    );
    let _ = std::fs::remove_dir_all(&out);
}
