//! Loading the gate, writing its rules into the maps, and reading what it
//! counted.

use std::mem::MaybeUninit;

use anyhow::Context;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, OpenObject};

use crate::rules::{Changes, Mode};

#[allow(clippy::all, dead_code, non_camel_case_types, non_snake_case)]
pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/lsm_skel.rs"));
}

#[allow(
    clippy::all,
    dead_code,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals
)]
pub mod intf {
    include!(concat!(env!("OUT_DIR"), "/bpf_intf.rs"));
}

use intf::prism_lsm_rule_key;
use skel::{LsmSkel, LsmSkelBuilder};

/// Load and attach the gate; it gates nothing until rules are written.
/// `required_facets`: the bus facets a workload must carry to be gated.
pub fn load(
    obj: &mut MaybeUninit<OpenObject>,
    required_facets: u32,
) -> anyhow::Result<LsmSkel<'_>> {
    let mut open = LsmSkelBuilder::default()
        .open(obj)
        .context("opening the BPF object")?;
    open.maps
        .rodata_data
        .as_deref_mut()
        .expect("the object has rodata")
        .required_facets = required_facets;
    let mut skel = open.load().context(
        "loading prism-lsm's BPF program (root and the BPF LSM needed; a kernel in lockdown, \
         or a sandbox, may refuse LSM programs with EPERM)",
    )?;
    skel.attach().context(
        "attaching to the LSM hooks task_alloc, bprm_committed_creds, bprm_check_security",
    )?;
    Ok(skel)
}

fn rule_key(identity: u32, mode: Mode, path: &str) -> prism_lsm_rule_key {
    let mut key = prism_lsm_rule_key {
        identity,
        mode: mode.raw(),
        path: [0; intf::LSM_PATH_LEN as usize],
    };
    for (dst, src) in key.path.iter_mut().zip(path.bytes()) {
        *dst = src as _;
    }
    key
}

fn bytes_of<T>(v: &T) -> &[u8] {
    // SAFETY: plain C data with no padding (u32, u32, char[256]; u32).
    unsafe { std::slice::from_raw_parts((v as *const T).cast(), size_of::<T>()) }
}

/// Write `changes` in their safe order; the first failure stops it (the
/// caller keeps its old view and retries the whole difference).
pub fn apply(skel: &LsmSkel, changes: &Changes) -> anyhow::Result<()> {
    for (id, mode, path) in &changes.add_paths {
        skel.maps
            .rules
            .update(bytes_of(&rule_key(*id, *mode, path)), &[1], MapFlags::ANY)
            .with_context(|| format!("listing {path} for identity {id}"))?;
    }
    for (id, mode) in &changes.set_modes {
        skel.maps
            .modes
            .update(&id.to_ne_bytes(), &mode.raw().to_ne_bytes(), MapFlags::ANY)
            .with_context(|| format!("setting identity {id} {}", mode.name()))?;
    }
    for id in &changes.remove_modes {
        let _ = skel.maps.modes.delete(&id.to_ne_bytes());
    }
    for (id, mode, path) in &changes.remove_paths {
        let _ = skel
            .maps
            .rules
            .delete(bytes_of(&rule_key(*id, *mode, path)));
    }
    Ok(())
}

/// Denials per identity since load.
pub fn denials(skel: &LsmSkel) -> Vec<(u32, u64)> {
    let map = &skel.maps.denials;
    let mut out: Vec<(u32, u64)> = map
        .keys()
        .filter_map(|k| {
            let id = u32::from_ne_bytes(k.as_slice().try_into().ok()?);
            let v = map.lookup(&k, MapFlags::ANY).ok()??;
            Some((id, u64::from_ne_bytes(v.as_slice().try_into().ok()?)))
        })
        .collect();
    out.sort_unstable();
    out
}

/// Denials that found the ring buffer full (denied and counted all the same).
pub fn dropped(skel: &LsmSkel) -> anyhow::Result<u64> {
    Ok(prism_bus::consumer::sum_per_cpu_u64(&skel.maps.dropped)?)
}
