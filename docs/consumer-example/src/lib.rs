//! The example consumer of docs/CONSUMER.md: counts syscalls per identity.

use std::mem::MaybeUninit;

use anyhow::Context;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, OpenObject};

#[allow(clippy::all, dead_code, non_camel_case_types, non_snake_case)]
pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/syscalls_skel.rs"));
}

pub use skel::SyscallsSkel;

/// Load and attach the counter.
pub fn load(obj: &mut MaybeUninit<OpenObject>) -> anyhow::Result<SyscallsSkel<'_>> {
    let mut skel = skel::SyscallsSkelBuilder::default()
        .open(obj)
        .context("opening the BPF object")?
        .load()
        .context("loading (root and a BPF-capable kernel needed)")?;
    skel.attach().context("attaching to sys_enter")?;
    Ok(skel)
}

/// Syscalls so far, per identity (summed over CPUs).
pub fn counts(skel: &SyscallsSkel) -> anyhow::Result<Vec<(u32, u64)>> {
    let map = &skel.maps.syscalls;
    let mut out = vec![];
    for key in map.keys() {
        let Some(per_cpu) = map.lookup_percpu(&key, MapFlags::ANY)? else {
            continue;
        };
        let identity = u32::from_ne_bytes(key[..4].try_into()?);
        let total = per_cpu
            .iter()
            .map(|v| u64::from_ne_bytes(v[..8].try_into().expect("a u64")))
            .sum();
        out.push((identity, total));
    }
    out.sort();
    Ok(out)
}
