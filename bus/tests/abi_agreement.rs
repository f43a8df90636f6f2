//! The C header and the Rust module are the bus ABI's two sources of truth:
//! compile the header's ABI part, print every constant and layout fact, and
//! assert each equals its Rust twin. Any one-sided change fails here.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use prism_bus::abi::*;
use prism_bus::{Entry, Meta};

/// What the C side says, compiled with the host C compiler.
fn c_side() -> BTreeMap<String, String> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::env::temp_dir().join(format!("prism-abi-dump-{}", std::process::id()));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Werror", "-I"])
        .arg(here.join("include"))
        .arg(here.join("tests/abi/abi_dump.c"))
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("running {cc}: {e}"));
    assert!(status.success(), "the header's ABI part does not compile");
    let printed = Command::new(&out).output().expect("run abi_dump");
    std::fs::remove_file(&out).ok();
    assert!(printed.status.success());
    String::from_utf8(printed.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').expect("NAME VALUE");
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// What the Rust side says, in the same vocabulary.
fn rust_side() -> BTreeMap<String, String> {
    let n = |v: u64| v.to_string();
    let mut m: BTreeMap<String, String> = [
        ("PRISM_ABI_VERSION", n(ABI_VERSION.into())),
        ("PRISM_PIN_DIR", DEFAULT_PIN_DIR.into()),
        ("PRISM_IDENTITY_MAP_NAME", IDENTITY_MAP_NAME.into()),
        ("PRISM_META_MAP_NAME", META_MAP_NAME.into()),
        ("PRISM_DEFAULT_MAX_ENTRIES", n(DEFAULT_MAX_ENTRIES.into())),
        ("PRISM_BPF_F_NO_PREALLOC", n(BPF_F_NO_PREALLOC.into())),
        ("PRISM_BPF_F_RDONLY_PROG", n(BPF_F_RDONLY_PROG.into())),
        ("PRISM_IDENTITY_MAP_FLAGS", n(IDENTITY_MAP_FLAGS.into())),
        ("PRISM_META_MAP_FLAGS", n(META_MAP_FLAGS.into())),
        ("PRISM_IDENTITY_MASK", n(IDENTITY_MASK.into())),
        ("PRISM_MIN_DYNAMIC_IDENTITY", n(MIN_DYNAMIC_IDENTITY.into())),
        ("PRISM_ID_UNKNOWN", n(Identity::UNKNOWN.get().into())),
        ("PRISM_ID_HOST", n(Identity::HOST.get().into())),
        ("PRISM_ID_WORLD", n(Identity::WORLD.get().into())),
        ("PRISM_ID_UNMANAGED", n(Identity::UNMANAGED.get().into())),
        ("PRISM_ID_HEALTH", n(Identity::HEALTH.get().into())),
        ("PRISM_ID_INIT", n(Identity::INIT.get().into())),
        (
            "PRISM_ID_REMOTE_NODE",
            n(Identity::REMOTE_NODE.get().into()),
        ),
        (
            "PRISM_ID_KUBE_APISERVER",
            n(Identity::KUBE_APISERVER.get().into()),
        ),
        ("PRISM_ID_INGRESS", n(Identity::INGRESS.get().into())),
        ("PRISM_ANCESTOR_WALK_MAX", n(ANCESTOR_WALK_MAX as u64)),
        ("PRISM_FACET_NET", n(FACET_NET.into())),
        ("PRISM_FACET_SCHED", n(FACET_SCHED.into())),
        ("PRISM_FACET_OBSERVE", n(FACET_OBSERVE.into())),
        ("PRISM_FACET_MASK", n(FACET_MASK.into())),
        ("PRISM_CLASS_SHIFT", n(CLASS_SHIFT.into())),
        ("PRISM_CLASS_MASK", n(CLASS_MASK.into())),
        ("PRISM_CLASS_UNSET", n(LatencyClass::Unset as u64)),
        ("PRISM_CLASS_CRITICAL", n(LatencyClass::Critical as u64)),
        ("PRISM_CLASS_NORMAL", n(LatencyClass::Normal as u64)),
        ("PRISM_CLASS_BATCH", n(LatencyClass::Batch as u64)),
        ("PRISM_WEIGHT_SHIFT", n(WEIGHT_SHIFT.into())),
        ("PRISM_WEIGHT_MASK", n(WEIGHT_MASK.into())),
        ("PRISM_WEIGHT_MAX", n(WEIGHT_MAX.into())),
        ("PRISM_WEIGHT_NEUTRAL", n(WEIGHT_NEUTRAL.into())),
        ("PRISM_FLAGS_DEFINED_MASK", n(FLAGS_DEFINED_MASK.into())),
        ("sizeof(prism_identity)", n(VALUE_SIZE as u64)),
        ("sizeof(prism_meta)", n(META_SIZE as u64)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (field, off, size) in value_layout() {
        m.insert(format!("offsetof(prism_identity.{field})"), n(off));
        m.insert(format!("sizeof(prism_identity.{field})"), n(size));
    }
    for (field, off, size) in meta_layout() {
        m.insert(format!("offsetof(prism_meta.{field})"), n(off));
        m.insert(format!("sizeof(prism_meta.{field})"), n(size));
    }
    m
}

/// (field, offset, size) as Entry::to_bytes lays a value out: found by
/// encoding a value whose every field is a distinct marker.
fn value_layout() -> Vec<(&'static str, u64, u64)> {
    let e = Entry {
        identity: Identity::new(0xA1A1A1).unwrap(),
        flags: Flags::decode(0x3F807).unwrap(),
        label_hash: 0xB2B2_B2B2_B2B2_B2B2,
        updated_ns: 0xC3C3_C3C3_C3C3_C3C3,
    };
    let b = e.to_bytes();
    vec![
        ("identity", find(&b, &0xA1A1A1u32.to_le_bytes()), 4),
        ("flags", find(&b, &0x3F807u32.to_le_bytes()), 4),
        ("label_hash", find(&b, &[0xB2; 8]), 8),
        ("updated_ns", find(&b, &[0xC3; 8]), 8),
    ]
}

fn meta_layout() -> Vec<(&'static str, u64, u64)> {
    let m = Meta {
        abi_version: 0xD4D4_D4D4,
        generation: 0xE5E5_E5E5_E5E5_E5E5,
        entries: 0xF6F6_F6F6_F6F6_F6F6,
    };
    let b = m.to_bytes();
    let version = find(&b, &[0xD4; 4]);
    vec![
        ("abi_version", version, 4),
        ("reserved", version + 4, 4),
        ("generation", find(&b, &[0xE5; 8]), 8),
        ("entries", find(&b, &[0xF6; 8]), 8),
    ]
}

fn find(hay: &[u8], needle: &[u8]) -> u64 {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("marker encoded") as u64
}

#[test]
fn header_and_rust_module_agree() {
    let c = c_side();
    let rust = rust_side();
    let keys: std::collections::BTreeSet<_> = c.keys().chain(rust.keys()).collect();
    let diffs: Vec<String> = keys
        .into_iter()
        .filter(|k| c.get(*k) != rust.get(*k))
        .map(|k| format!("{k}: C {:?} vs Rust {:?}", c.get(k), rust.get(k)))
        .collect();
    assert!(diffs.is_empty(), "ABI disagreement:\n{}", diffs.join("\n"));
    assert!(c.len() >= 50, "the dump lost lines: {}", c.len());
}
