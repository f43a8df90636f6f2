//! The bus header on this host's real kernel (root): a BPF program resolves
//! the identity of a real process through prism_task_identity(), in its own
//! cgroup, in a child cgroup created after the entry (ancestor fallback), in
//! an unknown cgroup; its cache follows relabels and cgroup moves; it picks
//! up a bus pinned after it loaded; and every attempt to write the bus is
//! refused by the verifier.

use std::mem::MaybeUninit;
use std::sync::Mutex;

use libbpf_rs::skel::OpenSkel;
use libbpf_rs::{MapCore, PrintLevel};
use prism_bus::consumer::{SlotChange, SlotKeeper};
use prism_bus::{BusWriter, LatencyClass};
use prism_bus_bpf_tests::probe::{
    Echo, SRC_ANCESTOR, SRC_MISS, SRC_OWN, attach_bus, load_and_attach, observed, open, watch,
};
use prism_testkit::fixtures::{TempBusDir, TempCgroup, sched_entry as entry};

/// libbpf's messages (the verifier log among them) for the running test.
static LIBBPF_LOG: Mutex<String> = Mutex::new(String::new());

fn capture_libbpf_log() {
    fn print(_: PrintLevel, msg: String) {
        LIBBPF_LOG.lock().unwrap().push_str(&msg);
    }
    libbpf_rs::set_print(Some((PrintLevel::Debug, print)));
}

#[test]
fn resolves_own_cgroup_ancestor_and_unknown() {
    let bus_dir = TempBusDir::new("resolve");
    let workload = TempCgroup::new("workload");
    let unknown = TempCgroup::new("unknown");
    let mut w = BusWriter::create_or_open(&bus_dir.paths, 1024).unwrap();
    w.write_batch(
        &[(workload.id(), entry(300, LatencyClass::Critical, 90))],
        &[],
    )
    .unwrap();
    // Created after the feeder's write: only the ancestor walk can find it.
    let late_child = workload.child("late");

    let mut obj = MaybeUninit::uninit();
    let skel = load_and_attach(&mut obj);
    let mut keeper = SlotKeeper::new(bus_dir.paths.clone());
    assert!(matches!(
        attach_bus(&skel, &mut keeper),
        SlotChange::Attached { .. }
    ));

    for (cg, want_id, want_src) in [
        (&workload, 300, SRC_OWN),
        (&late_child, 300, SRC_ANCESTOR),
        (&unknown, 0, SRC_MISS),
    ] {
        let mut echo = Echo::spawn();
        cg.enter(echo.pid());
        watch(&skel, echo.pid());
        echo.poke();
        let o = observed(&skel, echo.pid());
        assert_eq!(o.cgroup_id, cg.id(), "{}", cg.path.display());
        assert_eq!(
            (o.identity, o.source),
            (want_id, want_src),
            "{}: {o:?}",
            cg.path.display()
        );
        if want_src != SRC_MISS {
            assert_eq!(
                o.flags,
                entry(300, LatencyClass::Critical, 90).flags.encode()
            );
        }
    }
}

#[test]
fn cache_follows_relabels_and_moves_without_relookups_in_between() {
    let bus_dir = TempBusDir::new("cache");
    let a = TempCgroup::new("a");
    let b = TempCgroup::new("b");
    let mut w = BusWriter::create_or_open(&bus_dir.paths, 1024).unwrap();
    w.write_batch(
        &[
            (a.id(), entry(400, LatencyClass::Batch, 0)),
            (b.id(), entry(401, LatencyClass::Normal, 0)),
        ],
        &[],
    )
    .unwrap();

    let mut obj = MaybeUninit::uninit();
    let skel = load_and_attach(&mut obj);
    attach_bus(&skel, &mut SlotKeeper::new(bus_dir.paths.clone()));

    let mut echo = Echo::spawn();
    a.enter(echo.pid());
    watch(&skel, echo.pid());
    for _ in 0..20 {
        echo.poke();
    }
    let o = observed(&skel, echo.pid());
    assert_eq!(o.identity, 400);
    // cat was already blocked in read() when watched: ~2 syscalls per poke after that
    assert!(o.calls >= 30, "{o:?}");
    assert_eq!(o.resolutions, 1, "steady state must hit the cache: {o:?}");

    // A relabel: the feeder rewrites the entry and bumps the generation.
    let g = w
        .write_batch(&[(a.id(), entry(400, LatencyClass::Critical, 0))], &[])
        .unwrap();
    echo.poke();
    let o = observed(&skel, echo.pid());
    assert_eq!((o.generation, o.resolutions), (g, 2), "{o:?}");
    assert_eq!(o.flags >> 8 & 7, LatencyClass::Critical as u32);

    // A cgroup move, with no feeder write at all.
    b.enter(echo.pid());
    echo.poke();
    let o = observed(&skel, echo.pid());
    assert_eq!(
        (o.identity, o.cgroup_id, o.resolutions),
        (401, b.id(), 3),
        "{o:?}"
    );
}

#[test]
fn a_consumer_started_before_the_feeder_picks_the_bus_up() {
    let bus_dir = TempBusDir::new("late-bus");
    let cg = TempCgroup::new("late-bus");
    let mut obj = MaybeUninit::uninit();
    let skel = load_and_attach(&mut obj);
    let mut keeper = SlotKeeper::new(bus_dir.paths.clone());
    assert_eq!(attach_bus(&skel, &mut keeper), SlotChange::None);

    let mut echo = Echo::spawn();
    cg.enter(echo.pid());
    watch(&skel, echo.pid());
    echo.poke();
    let o = observed(&skel, echo.pid());
    assert_eq!(
        (o.identity, o.source, o.generation),
        (0, SRC_MISS, 0),
        "no bus yet: {o:?}"
    );

    let mut w = BusWriter::create_or_open(&bus_dir.paths, 1024).unwrap();
    w.write_batch(&[(cg.id(), entry(500, LatencyClass::Normal, 64))], &[])
        .unwrap();
    assert!(matches!(
        attach_bus(&skel, &mut keeper),
        SlotChange::Attached { .. }
    ));
    assert_eq!(
        attach_bus(&skel, &mut keeper),
        SlotChange::None,
        "already attached"
    );
    echo.poke();
    let o = observed(&skel, echo.pid());
    assert_eq!((o.identity, o.source), (500, SRC_OWN), "{o:?}");

    // The feeder's bus goes away: back to no identities, without a reload.
    drop(w);
    std::fs::remove_file(bus_dir.paths.identity()).unwrap();
    std::fs::remove_file(bus_dir.paths.meta()).unwrap();
    assert_eq!(attach_bus(&skel, &mut keeper), SlotChange::Detached);
    echo.poke();
    assert_eq!(observed(&skel, echo.pid()).identity, 0);
}

/// Load bus_probe with one writer program enabled; return the verifier's
/// refusal, or panic if the kernel accepted the write.
fn writer_refused(prog: &str, reuse_pin: bool) -> String {
    let bus_dir = TempBusDir::new("writer");
    BusWriter::create_or_open(&bus_dir.paths, 1024).unwrap();
    capture_libbpf_log();
    LIBBPF_LOG.lock().unwrap().clear();
    let mut obj = MaybeUninit::uninit();
    let mut open = open(&mut obj);
    match prog {
        "write_bus_by_helper" => open.progs.write_bus_by_helper.set_autoload(true),
        "write_bus_by_store" => open.progs.write_bus_by_store.set_autoload(true),
        "write_meta_by_store" => open.progs.write_meta_by_store.set_autoload(true),
        "write_pinned_directly" => open.progs.write_pinned_directly.set_autoload(true),
        _ => unreachable!(),
    }
    if reuse_pin {
        open.maps
            .pinned_identity
            .reuse_pinned_map(bus_dir.paths.identity())
            .expect("reuse the pinned bus");
    }
    let loaded = open.load();
    assert!(
        loaded.is_err(),
        "{prog}: the verifier accepted a program that writes the bus"
    );
    let log = LIBBPF_LOG.lock().unwrap().clone();
    assert!(
        log.contains(prog),
        "{prog}: the refusal is not this program's:\n{log}"
    );
    log
}

#[test]
fn the_verifier_refuses_every_write_to_the_bus() {
    let log = writer_refused("write_bus_by_store", false);
    assert!(log.contains("write into map forbidden"), "{log}");
    let log = writer_refused("write_meta_by_store", false);
    assert!(log.contains("write into map forbidden"), "{log}");
    let log = writer_refused("write_bus_by_helper", false);
    assert!(log.contains("write into map forbidden"), "{log}");
    let log = writer_refused("write_pinned_directly", true);
    assert!(log.contains("write into map forbidden"), "{log}");
}

#[test]
fn the_reader_alone_loads() {
    // The control for the refusals above: same object, no writer enabled.
    let mut obj = MaybeUninit::uninit();
    let skel = load_and_attach(&mut obj);
    assert!(skel.maps.prism_bus_identity.info().is_ok());
}
