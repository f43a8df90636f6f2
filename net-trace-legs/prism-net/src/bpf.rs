//! Loading prism-net's BPF programs, attaching them at a cgroup, and the
//! maps user space works with: the counters (read, summed over CPUs), the
//! deny set (written), and the bus slots (kept on the pinned bus).

use std::collections::BTreeMap;
use std::fs::File;
use std::mem::{MaybeUninit, size_of};
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::Context;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, MapHandle, OpenObject};

use crate::Direction;
use crate::policy::Policy;

#[allow(clippy::all, dead_code, non_camel_case_types, non_snake_case)]
pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/net_skel.rs"));
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

use intf::{NET_PER_SLOT, net_counts, net_key};
use skel::{NetSkel, NetSkelBuilder};

/// Packets and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub packets: u64,
    pub bytes: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.packets += o.packets;
        self.bytes += o.bytes;
    }
}

/// The loaded programs; detached when dropped.
pub struct Attached<'obj> {
    pub skel: NetSkel<'obj>,
    _links: [Link; 2],
}

/// Load the programs and attach both at the cgroup at `cgroup`: every
/// socket of it and below is counted.
pub fn attach<'obj>(
    obj: &'obj mut MaybeUninit<OpenObject>,
    cgroup: &Path,
) -> anyhow::Result<Attached<'obj>> {
    let dir = File::open(cgroup).with_context(|| format!("opening cgroup {}", cgroup.display()))?;
    let skel = NetSkelBuilder::default()
        .open(obj)
        .context("opening the BPF object")?
        .load()
        .context("loading prism-net's BPF programs (root and a BPF-capable kernel needed)")?;
    let fd = dir.as_raw_fd();
    let ingress = skel
        .progs
        .prism_net_ingress
        .attach_cgroup(fd)
        .with_context(|| format!("attaching cgroup_skb/ingress at {}", cgroup.display()))?;
    let egress = skel
        .progs
        .prism_net_egress
        .attach_cgroup(fd)
        .with_context(|| format!("attaching cgroup_skb/egress at {}", cgroup.display()))?;
    Ok(Attached {
        skel,
        _links: [ingress, egress],
    })
}

/// Handles on the maps, usable from any thread.
#[derive(Debug)]
pub struct Maps {
    slots: MapHandle,
    counters: MapHandle,
    overflow: MapHandle,
    unfaceted: MapHandle,
    deny: MapHandle,
    policy: MapHandle,
    pub bus_identity_slot: MapHandle,
    pub bus_meta_slot: MapHandle,
}

impl Maps {
    pub fn of(skel: &NetSkel) -> anyhow::Result<Maps> {
        let m = &skel.maps;
        Ok(Maps {
            slots: MapHandle::try_from(&m.net_slots)?,
            counters: MapHandle::try_from(&m.net_counters)?,
            overflow: MapHandle::try_from(&m.net_overflow)?,
            unfaceted: MapHandle::try_from(&m.net_unfaceted)?,
            deny: MapHandle::try_from(&m.net_deny)?,
            policy: MapHandle::try_from(&m.net_policy)?,
            bus_identity_slot: MapHandle::try_from(&m.prism_bus_identity)?,
            bus_meta_slot: MapHandle::try_from(&m.prism_bus_meta)?,
        })
    }

    /// Packets and bytes counted, per (identity, direction).
    pub fn counts(&self) -> anyhow::Result<BTreeMap<(u32, Direction), Counts>> {
        self.read(false)
    }

    /// What the deny set dropped, per (identity, direction).
    pub fn drops(&self) -> anyhow::Result<BTreeMap<(u32, Direction), Counts>> {
        self.read(true)
    }

    /// Every identity's counters (summed over CPUs), through its slot.
    fn read(&self, dropped: bool) -> anyhow::Result<BTreeMap<(u32, Direction), Counts>> {
        let mut out = BTreeMap::new();
        for key in self.slots.keys() {
            let Some(slot) = self.slots.lookup(&key, MapFlags::ANY)? else {
                continue;
            };
            let identity = u32::from_ne_bytes(key[..4].try_into().expect("a u32 key"));
            let slot = u32::from_ne_bytes(slot[..4].try_into().expect("a u32 value"));
            for direction in Direction::BOTH {
                let index = slot * NET_PER_SLOT + u32::from(dropped) * 2 + direction as u32;
                let total = sum_percpu(&self.counters, index)?;
                if total.packets > 0 {
                    out.insert((identity, direction), total);
                }
            }
        }
        Ok(out)
    }

    /// Packets that found no room in the counter maps.
    pub fn overflow(&self) -> anyhow::Result<Counts> {
        let per_cpu = self
            .overflow
            .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)?
            .unwrap_or_default();
        Ok(per_cpu
            .iter()
            .map(|b| decode_counts(b))
            .fold(Counts::default(), |mut a, c| {
                a += c;
                a
            }))
    }

    /// Sockets resolved to a workload without the net facet (counted as
    /// identity 0, never denied).
    pub fn unfaceted(&self) -> anyhow::Result<u64> {
        Ok(prism_bus::consumer::sum_per_cpu_u64(&self.unfaceted)?)
    }

    /// Make the deny set `policy`'s, then bump its generation so sockets
    /// re-resolve (their cached verdicts are from the old set).
    pub fn apply(&self, policy: &Policy) -> anyhow::Result<()> {
        let keys: Vec<Vec<u8>> = self.deny.keys().collect();
        for k in keys {
            if !policy.deny.contains(&decode_key(&k)) {
                self.deny.delete(&k)?;
            }
        }
        for &(identity, direction) in &policy.deny {
            self.deny
                .update(&encode_key(identity, direction), &[1], MapFlags::ANY)?;
        }
        let zero = 0u32.to_ne_bytes();
        let generation = self
            .policy
            .lookup(&zero, MapFlags::ANY)?
            .map(|b| u64::from_ne_bytes(b[..8].try_into().expect("8 bytes")))
            .unwrap_or(0);
        self.policy
            .update(&zero, &(generation + 1).to_ne_bytes(), MapFlags::ANY)?;
        Ok(())
    }
}

/// A per-CPU array element, summed over CPUs.
fn sum_percpu(map: &MapHandle, index: u32) -> anyhow::Result<Counts> {
    let per_cpu = map
        .lookup_percpu(&index.to_ne_bytes(), MapFlags::ANY)?
        .unwrap_or_default();
    let mut total = Counts::default();
    for value in per_cpu {
        total += decode_counts(&value);
    }
    Ok(total)
}

fn encode_key(identity: u32, direction: Direction) -> Vec<u8> {
    let k = net_key {
        identity,
        direction: direction as u32,
    };
    // SAFETY: net_key is a plain #[repr(C)] struct of two u32s.
    unsafe { std::slice::from_raw_parts((&k as *const net_key).cast::<u8>(), size_of::<net_key>()) }
        .to_vec()
}

fn decode_key(bytes: &[u8]) -> (u32, Direction) {
    assert_eq!(
        bytes.len(),
        size_of::<net_key>(),
        "the kernel gave a net_key of another size"
    );
    // SAFETY: the length is checked; net_key is plain data.
    let k: net_key = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    (
        k.identity,
        Direction::from_raw(k.direction).unwrap_or(Direction::Ingress),
    )
}

fn decode_counts(bytes: &[u8]) -> Counts {
    assert!(
        bytes.len() >= size_of::<net_counts>(),
        "a net_counts value is short"
    );
    // SAFETY: the length is checked; net_counts is plain data.
    let c: net_counts = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    Counts {
        packets: c.packets,
        bytes: c.bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_the_generated_type() {
        for d in Direction::BOTH {
            assert_eq!(decode_key(&encode_key(300, d)), (300, d));
        }
        assert_eq!(size_of::<net_key>(), 8);
        assert_eq!(size_of::<net_counts>(), 16);
    }
}
