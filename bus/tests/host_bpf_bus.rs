//! The pinned bus on this host's real kernel (root): create, reopen, refuse
//! wrong shapes, write, batch, iterate, lock out a second writer.

use std::os::unix::fs::PermissionsExt;

use libbpf_rs::{MapCore, MapHandle, MapType};
use prism_bus::abi::{BPF_F_NO_PREALLOC, BPF_F_RDONLY_PROG, IDENTITY_MAP_FLAGS};
use prism_bus::{Bus, BusError, BusWriter, Entry, LatencyClass, label_hash};
use prism_testkit::fixtures::{TempBusDir, sched_entry};

fn entry(id: u32, class: LatencyClass, weight: u32) -> Entry {
    Entry {
        label_hash: label_hash(format!("app=svc{id};").as_bytes()),
        ..sched_entry(id, class, weight)
    }
}

#[test]
fn create_pins_an_empty_v1_bus_in_a_private_dir() {
    let tmp = TempBusDir::new("create");
    let w = BusWriter::create_or_open(&tmp.paths, 1024).expect("create");
    let mode = std::fs::metadata(&tmp.paths.dir)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);

    let bus = Bus::open(&tmp.paths).expect("open");
    let meta = bus.meta().unwrap();
    assert_eq!(meta.abi_version, 1);
    assert_eq!(meta.entries, 0);
    assert_eq!(meta.generation, w.generation());
    assert!(
        meta.generation > 1_000_000_000,
        "a new bus starts at the clock"
    );
    assert_eq!(bus.max_entries(), 1024);
    assert_eq!(bus.iter().count(), 0);
    let info = bus.identity_map().info().unwrap().info;
    assert_eq!(info.map_flags, BPF_F_RDONLY_PROG | BPF_F_NO_PREALLOC);
}

#[test]
fn writes_batches_and_generations() {
    let tmp = TempBusDir::new("write");
    let mut w = BusWriter::create_or_open(&tmp.paths, 1024).unwrap();
    let g0 = w.generation();
    let g1 = w
        .write_batch(
            &[
                (10, entry(256, LatencyClass::Critical, 64)),
                (11, entry(257, LatencyClass::Batch, 1)),
            ],
            &[],
        )
        .unwrap();
    assert_eq!(g1, g0 + 1);

    let bus = Bus::open(&tmp.paths).unwrap();
    assert_eq!(
        bus.get(10).unwrap(),
        Some(entry(256, LatencyClass::Critical, 64))
    );
    assert_eq!(bus.get(12).unwrap(), None);
    let m = bus.meta().unwrap();
    assert_eq!((m.generation, m.entries), (g1, 2));

    // Replacing is not a new entry; deleting a missing key is not an error.
    let g2 = w
        .write_batch(&[(10, entry(256, LatencyClass::Normal, 64))], &[11, 99])
        .unwrap();
    assert_eq!(g2, g1 + 1);
    let m = bus.meta().unwrap();
    assert_eq!((m.generation, m.entries), (g2, 1));
    assert_eq!(
        bus.get(10).unwrap().unwrap().flags.class,
        LatencyClass::Normal
    );
    let all: Vec<_> = bus.iter().map(|(k, e)| (k, e.unwrap())).collect();
    assert_eq!(all, vec![(10, entry(256, LatencyClass::Normal, 64))]);
    assert!(!w.delete(11).unwrap());
}

#[test]
fn reopening_keeps_entries_and_moves_the_generation_on() {
    let tmp = TempBusDir::new("reopen");
    let g = {
        let mut w = BusWriter::create_or_open(&tmp.paths, 1024).unwrap();
        w.write_batch(
            &[
                (1, entry(300, LatencyClass::Unset, 0)),
                (2, entry(301, LatencyClass::Unset, 0)),
            ],
            &[],
        )
        .unwrap()
    };
    let w = BusWriter::create_or_open(&tmp.paths, 4096).unwrap();
    assert!(w.generation() > g);
    let m = w.bus().meta().unwrap();
    assert_eq!(m.entries, 2, "entries recounted from the map");
    assert_eq!(
        w.bus().max_entries(),
        1024,
        "an existing map keeps its capacity"
    );
}

#[test]
fn one_writer_at_a_time() {
    let tmp = TempBusDir::new("lock");
    let _w = BusWriter::create_or_open(&tmp.paths, 16).unwrap();
    match BusWriter::create_or_open(&tmp.paths, 16) {
        Err(BusError::Busy(dir)) => assert_eq!(dir, tmp.paths.dir),
        other => panic!("second writer got {other:?}"),
    }
}

#[test]
fn a_full_bus_says_so() {
    let tmp = TempBusDir::new("full");
    let mut w = BusWriter::create_or_open(&tmp.paths, 4).unwrap();
    for k in 0..4 {
        w.put(k, &entry(256, LatencyClass::Unset, 0)).unwrap();
    }
    let err = w.put(4, &entry(256, LatencyClass::Unset, 0)).unwrap_err();
    assert!(matches!(err, BusError::Full { max: 4, .. }), "{err:?}");
    assert!(err.to_string().contains("--max-entries"));
}

#[test]
fn missing_bus_is_a_clear_error() {
    let tmp = TempBusDir::new("missing");
    let err = Bus::open(&tmp.paths).unwrap_err();
    assert!(matches!(err, BusError::NotPinned(_)));
    assert_eq!(
        err.to_string(),
        format!(
            "no bus pinned at {}: is prism-feeder running?",
            tmp.paths.identity().display()
        )
    );
}

/// Pin `map` where the identity map belongs, then try to use it as the bus.
fn refused(tag: &str, ty: MapType, key: u32, value: u32, flags: u32) -> BusError {
    let tmp = TempBusDir::new(tag);
    std::fs::create_dir_all(&tmp.paths.dir).unwrap();
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        map_flags: flags,
        ..Default::default()
    };
    let mut map = MapHandle::create(ty, Some("impostor"), key, value, 16, &opts).unwrap();
    map.pin(tmp.paths.identity()).unwrap();
    BusWriter::create_or_open(&tmp.paths, 16).unwrap_err()
}

#[test]
fn a_pin_of_another_shape_is_refused() {
    let e = refused("flags", MapType::Hash, 8, 24, BPF_F_NO_PREALLOC);
    assert!(
        e.to_string()
            .contains("map_flags is 0x1, ABI v1 wants 0x81"),
        "{e}"
    );
    let e = refused("value", MapType::Hash, 8, 32, IDENTITY_MAP_FLAGS);
    assert!(e.to_string().contains("value size is 32"), "{e}");
    let e = refused("key", MapType::Hash, 4, 24, IDENTITY_MAP_FLAGS);
    assert!(e.to_string().contains("key size is 4"), "{e}");
    let e = refused("type", MapType::LruHash, 8, 24, BPF_F_RDONLY_PROG);
    assert!(e.to_string().contains("type is LruHash"), "{e}");
}

/// A reader trusts the maps only in a directory that is root's alone; the
/// writer refuses a directory someone else made first.
#[test]
fn readers_and_the_writer_refuse_a_pin_directory_others_can_touch() {
    let tmp = TempBusDir::new("unsafe-dir");
    drop(BusWriter::create_or_open(&tmp.paths, 64).expect("create"));
    let dir = &tmp.paths.dir;
    let set_mode = |m| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(m)).unwrap();
    set_mode(0o777);
    let err = Bus::open(&tmp.paths).unwrap_err();
    assert!(matches!(err, BusError::UnsafeDir { .. }), "{err}");
    assert!(err.to_string().contains("0777"), "{err}");
    set_mode(0o700);
    Bus::open(&tmp.paths).expect("root's alone again");

    // Owned by another user: readers refuse it, and the writer will not take it.
    std::os::unix::fs::chown(dir, Some(65534), None).unwrap();
    let err = Bus::open(&tmp.paths).unwrap_err();
    assert!(err.to_string().contains("uid 65534"), "{err}");
    let err = BusWriter::create_or_open(&tmp.paths, 64).expect_err("refused");
    assert!(err.to_string().contains("uid 65534"), "{err}");
    std::os::unix::fs::chown(dir, Some(0), None).unwrap();
}
