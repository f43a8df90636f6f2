//! prism-lsm in the lab kernel. This host's kernel refuses every BPF LSM
//! program (EPERM at load, even an empty one: it runs in lockdown
//! `integrity`), so these are ignored by a plain `cargo test` and run in the
//! lab guest (`bpf` is in its LSM list) by ci/test, with real processes in
//! real cgroups that a hand-filled real bus labels.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use prism_bus::names::{NamedIdentity, NamesFile};
use prism_bus::{BusWriter, Entry, Facets, Flags, Identity, LatencyClass, Weight};
use prism_testkit::fixtures::{JsonChild, TempBusDir, TempCgroup};

fn entry(id: u32, facets: Facets) -> Entry {
    Entry {
        identity: Identity::new(id).unwrap(),
        flags: Flags {
            facets,
            class: LatencyClass::Normal,
            weight: Weight::NEUTRAL,
        },
        label_hash: 0,
        updated_ns: 1,
    }
}

fn bus_with(dir: &TempBusDir, entries: &[(u64, Entry)]) -> BusWriter {
    let mut w = BusWriter::create_or_open(&dir.paths, 1024).unwrap();
    w.write_batch(entries, &[]).unwrap();
    w
}

/// A policy file that lives as long as the test.
struct Policy(std::path::PathBuf);

impl Policy {
    fn new(text: &str) -> Policy {
        let p = std::env::temp_dir().join(format!(
            "prism-lsm-{}-{:?}.toml",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&p, text).unwrap();
        Policy(p)
    }

    fn set(&self, text: &str) {
        std::fs::write(&self.0, text).unwrap();
    }
}

impl Drop for Policy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn start(policy: &Policy, bus: &TempBusDir, names: &Path, extra: &[&str]) -> JsonChild {
    let lsm = JsonChild::spawn(
        Command::new(env!("CARGO_BIN_EXE_prism-lsm"))
            .arg("--policy")
            .arg(&policy.0)
            .arg("--bus-dir")
            .arg(&bus.paths.dir)
            .arg("--names-file")
            .arg(names)
            .args(extra),
    );
    lsm.wait_stderr("bus attached");
    lsm.wait_stderr("prism-lsm: gating");
    lsm
}

/// A workload started the way a container runtime starts one: a shell
/// exec'd outside, moved into `cg`, where it execs its entrypoint (a shell
/// running `script`). Returns the entrypoint's exit status and output.
fn workload(cg: &TempCgroup, script: &str) -> (i32, String) {
    let mut sh = Command::new("/usr/bin/dash")
        .args(["-c", "read go; exec /usr/bin/dash -c \"$0\" 2>&1", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    cg.enter(sh.id());
    writeln!(sh.stdin.as_mut().unwrap(), "go").unwrap();
    let out = sh.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// What `sh -c '<cmd>; echo rc=$?'` says a command's exit status was.
fn rc_of(output: &str, tag: &str) -> i32 {
    output
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{tag}=")))
        .unwrap_or_else(|| panic!("no {tag}= in {output:?}"))
        .trim()
        .parse()
        .unwrap()
}

const NO_NAMES: &str = "/nonexistent/prism-lsm-names.json";

#[test]
#[ignore = "needs the BPF LSM: run in the lab guest"]
fn a_listed_exec_fails_with_eperm_for_its_identity_only() {
    let (a, b) = (TempCgroup::new("lsm-deny-a"), TempCgroup::new("lsm-deny-b"));
    let bus = TempBusDir::new("lsm-deny");
    let _w = bus_with(
        &bus,
        &[
            (a.id(), entry(400, Facets::ALL)),
            (b.id(), entry(401, Facets::ALL)),
        ],
    );
    let policy = Policy::new("[[workload]]\nidentity = 400\ndeny = [\"/usr/bin/id\"]\n");
    let lsm = start(&policy, &bus, Path::new(NO_NAMES), &[]);

    let (_, out) = workload(
        &a,
        "/usr/bin/id -u; echo id=$?; /usr/bin/true; echo true=$?",
    );
    assert_eq!(
        rc_of(&out, "id"),
        126,
        "EPERM: the shell's 'cannot execute'\n{out}"
    );
    assert!(out.contains("Operation not permitted"), "{out}");
    assert_eq!(rc_of(&out, "true"), 0, "an unlisted file runs: {out}");
    let d = lsm.next(|d| d["event"] == "denied");
    assert_eq!(d["identity"], 400);
    assert_eq!(d["path"], "/usr/bin/id");
    assert_eq!(d["mode"], "deny-listed");
    assert_eq!(d["cgroup_id"], a.id());
    assert_eq!(d["denials"], 1);

    // Another identity, and a process in no workload, run it.
    let (_, out) = workload(&b, "/usr/bin/id -u; echo id=$?");
    assert_eq!(rc_of(&out, "id"), 0, "{out}");
    assert!(
        Command::new("/usr/bin/id")
            .output()
            .unwrap()
            .status
            .success()
    );
    assert!(
        lsm.drain(Duration::from_millis(500))
            .iter()
            .all(|d| d["identity"] == 400),
        "only identity 400 is denied"
    );

    // The counts, on SIGUSR1: 1 denial, for 400 only.
    lsm.signal(libc::SIGUSR1);
    let c = lsm.next(|c| c["event"] == "counts");
    assert_eq!(
        c["identities"],
        serde_json::json!([{"identity": 400, "workload": null, "denials": 1}])
    );
}

#[test]
#[ignore = "needs the BPF LSM: run in the lab guest"]
fn the_entrypoint_and_the_runtimes_execs_always_run() {
    let cg = TempCgroup::new("lsm-entry");
    let bus = TempBusDir::new("lsm-entry");
    let _w = bus_with(&bus, &[(cg.id(), entry(402, Facets::ALL))]);
    // Only /usr/bin/true is allowed: not the shell that is the entrypoint.
    let policy = Policy::new("[[workload]]\nidentity = 402\nallow = [\"/usr/bin/true\"]\n");
    let lsm = start(&policy, &bus, Path::new(NO_NAMES), &[]);

    let (status, out) = workload(
        &cg,
        "/usr/bin/true; echo true=$?; /usr/bin/id -u; echo id=$?",
    );
    assert_eq!(
        status, 0,
        "the entrypoint (dash, not on the list) ran: {out}"
    );
    assert_eq!(rc_of(&out, "true"), 0, "{out}");
    assert_eq!(rc_of(&out, "id"), 126, "{out}");
    let d = lsm.next(|d| d["event"] == "denied");
    assert_eq!(
        (d["path"].as_str(), d["mode"].as_str()),
        (Some("/usr/bin/id"), Some("allow-listed"))
    );

    // The runtime's own exec into the running workload (kubectl exec): a
    // process from outside, moved in, execs a file not on the list.
    let (status, out) = {
        let mut p = Command::new("/usr/bin/dash")
            .args(["-c", "read go; exec /usr/bin/id -u"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        cg.enter(p.id());
        writeln!(p.stdin.as_mut().unwrap(), "go").unwrap();
        let o = p.wait_with_output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    assert_eq!((status, out.trim()), (Some(0), "0"));
}

#[test]
#[ignore = "needs the BPF LSM: run in the lab guest"]
fn a_process_moving_deeper_or_forking_stays_gated() {
    let cg = TempCgroup::new("lsm-deeper");
    let sub = cg.child("sub");
    let bus = TempBusDir::new("lsm-deeper");
    // Only the pod's cgroup has an entry: `sub` resolves through its parent.
    let _w = bus_with(&bus, &[(cg.id(), entry(403, Facets::ALL))]);
    let policy = Policy::new("[[workload]]\nidentity = 403\ndeny = [\"/usr/bin/id\"]\n");
    let lsm = start(&policy, &bus, Path::new(NO_NAMES), &[]);
    let script = format!(
        "echo $$ > {}/cgroup.procs; (/usr/bin/id -u; echo forked=$?) ; /usr/bin/id -u; echo deeper=$?",
        sub.path.display()
    );
    let (_, out) = workload(&cg, &script);
    assert_eq!(rc_of(&out, "deeper"), 126, "{out}");
    assert_eq!(rc_of(&out, "forked"), 126, "{out}");
    let d = lsm.next(|d| d["event"] == "denied");
    assert_eq!(
        (d["identity"].as_u64(), d["cgroup_id"].as_u64()),
        (Some(403), Some(sub.id()))
    );
}

#[test]
#[ignore = "needs the BPF LSM: run in the lab guest"]
fn sighup_reloads_and_a_bad_policy_keeps_the_rules_in_force() {
    let cg = TempCgroup::new("lsm-reload");
    let bus = TempBusDir::new("lsm-reload");
    let _w = bus_with(&bus, &[(cg.id(), entry(404, Facets::ALL))]);
    let policy = Policy::new("[[workload]]\nidentity = 404\ndeny = [\"/usr/bin/id\"]\n");
    let lsm = start(&policy, &bus, Path::new(NO_NAMES), &[]);
    let probe = "/usr/bin/id -u; echo id=$?; /usr/bin/true; echo true=$?";
    let (_, out) = workload(&cg, probe);
    assert_eq!((rc_of(&out, "id"), rc_of(&out, "true")), (126, 0), "{out}");

    // Switch the identity to an allow-list of id only.
    policy.set("[[workload]]\nidentity = 404\nallow = [\"/usr/bin/id\"]\n");
    lsm.signal(libc::SIGHUP);
    lsm.wait_stderr("policy reloaded");
    let (_, out) = workload(&cg, probe);
    assert_eq!((rc_of(&out, "id"), rc_of(&out, "true")), (0, 126), "{out}");

    // A file that does not parse is refused whole; the allow-list stays.
    policy.set("[[workload]]\nidentity = 404\nallow = [\"relative/path\"]\n");
    lsm.signal(libc::SIGHUP);
    lsm.wait_stderr("refused, the rules in force stay");
    let (_, out) = workload(&cg, probe);
    assert_eq!((rc_of(&out, "id"), rc_of(&out, "true")), (0, 126), "{out}");

    // No rule at all: nothing is gated.
    policy.set("");
    lsm.signal(libc::SIGHUP);
    lsm.wait_stderr_n("policy reloaded", 2);
    let (_, out) = workload(&cg, probe);
    assert_eq!((rc_of(&out, "id"), rc_of(&out, "true")), (0, 0), "{out}");
}

#[test]
#[ignore = "needs the BPF LSM: run in the lab guest"]
fn names_resolve_through_the_feeders_file_and_the_observe_facet_decides() {
    let (a, b) = (
        TempCgroup::new("lsm-named-a"),
        TempCgroup::new("lsm-named-b"),
    );
    let bus = TempBusDir::new("lsm-named");
    // 405 carries every facet; 406 has no observe facet.
    let _w = bus_with(
        &bus,
        &[
            (a.id(), entry(405, Facets::ALL)),
            (b.id(), entry(406, Facets::NET.union(Facets::SCHED))),
        ],
    );
    let names = std::env::temp_dir().join(format!("prism-lsm-names-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&names);
    let policy = Policy::new(
        "[[workload]]\nidentity = \"shop/web\"\ndeny = [\"/usr/bin/id\"]\n\
         [[workload]]\nidentity = 406\ndeny = [\"/usr/bin/id\"]\n",
    );
    let lsm = start(&policy, &bus, &names, &[]);
    lsm.wait_stderr("waiting for the feeder to name \"shop/web\"");
    let (_, out) = workload(&a, "/usr/bin/id -u; echo id=$?");
    assert_eq!(rc_of(&out, "id"), 0, "not named yet: {out}");

    prism_bus::names::write(
        &names,
        &NamesFile::new(vec![NamedIdentity::new(405, "shop/web")]),
    )
    .unwrap();
    lsm.wait_stderr_n("prism-lsm: gating", 2);
    let (_, out) = workload(&a, "/usr/bin/id -u; echo id=$?");
    assert_eq!(rc_of(&out, "id"), 126, "{out}");
    assert_eq!(lsm.next(|d| d["event"] == "denied")["workload"], "shop/web");

    // 406 has a rule but not the observe facet: not gated.
    let (_, out) = workload(&b, "/usr/bin/id -u; echo id=$?");
    assert_eq!(rc_of(&out, "id"), 0, "{out}");
    drop(lsm);
    // ... unless told to gate whatever the facets.
    let lsm = start(&policy, &bus, &names, &["--any-facet"]);
    let (_, out) = workload(&b, "/usr/bin/id -u; echo id=$?");
    assert_eq!(rc_of(&out, "id"), 126, "{out}");
    drop(lsm);
    let _ = std::fs::remove_file(&names);
}
