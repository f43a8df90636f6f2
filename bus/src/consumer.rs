//! Filling a BPF consumer's bus slots.
//!
//! A consumer program never references the pinned maps: it declares the
//! one-slot map-in-map tables `prism_bus_identity` and `prism_bus_meta`
//! (`bus.bpf.h`), and its user space puts the pinned maps in them. Until it
//! does, the program sees no identities. [`SlotKeeper`] does this when the
//! bus first appears and again if the feeder re-creates it, so a consumer
//! started before the feeder needs no restart.

use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::{MapCore, MapFlags};

use crate::pinned::{Bus, BusError, BusPaths};

/// Names of the slot maps every consumer object declares.
pub const IDENTITY_SLOT_MAP: &str = "prism_bus_identity";
pub const META_SLOT_MAP: &str = "prism_bus_meta";

/// What a [`SlotKeeper::poll`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotChange {
    /// Nothing: still attached to the same bus, or still no bus.
    None,
    /// The bus (a new one, or the first) is now in the slots.
    Attached { identity_map_id: u32 },
    /// The bus disappeared; the slots are empty again.
    Detached,
}

/// The sum over CPUs of slot 0 of a one-slot per-CPU array of u64: how a
/// consumer's BPF side counts what it could not do (events dropped,
/// workloads without its facet).
pub fn sum_per_cpu_u64(map: &dyn MapCore) -> Result<u64, libbpf_rs::Error> {
    let per_cpu = map
        .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)?
        .unwrap_or_default();
    Ok(per_cpu
        .iter()
        .filter_map(|b| Some(u64::from_ne_bytes(b.get(..8)?.try_into().ok()?)))
        .sum())
}

/// Puts a bus's maps in a consumer's slots.
pub fn attach(
    identity_slot: &dyn MapCore,
    meta_slot: &dyn MapCore,
    bus: &Bus,
) -> Result<(), BusError> {
    put_fd(identity_slot, bus.identity_map().as_fd().as_raw_fd(), bus)?;
    put_fd(meta_slot, bus.meta_map().as_fd().as_raw_fd(), bus)
}

/// Empties a consumer's slots: it sees no identities until the next attach.
pub fn detach(identity_slot: &dyn MapCore, meta_slot: &dyn MapCore) {
    // Deleting an empty slot fails with ENOENT; either way the slot is empty.
    let _ = identity_slot.delete(&0u32.to_ne_bytes());
    let _ = meta_slot.delete(&0u32.to_ne_bytes());
}

fn put_fd(slot: &dyn MapCore, fd: i32, bus: &Bus) -> Result<(), BusError> {
    slot.update(
        &0u32.to_ne_bytes(),
        &(fd as u32).to_ne_bytes(),
        MapFlags::ANY,
    )
    .map_err(|source| BusError::Bpf {
        what: "installing into a consumer slot",
        path: bus.paths().identity(),
        source,
    })
}

/// Keeps a consumer's slots on the bus pinned at `paths`, across the bus
/// appearing late, disappearing and being re-created. Call `poll` from the
/// consumer's housekeeping loop (about once a second is plenty).
#[derive(Debug)]
pub struct SlotKeeper {
    paths: BusPaths,
    /// (identity map id, meta map id) now in the slots.
    attached: Option<(u32, u32)>,
}

impl SlotKeeper {
    pub fn new(paths: BusPaths) -> Self {
        SlotKeeper {
            paths,
            attached: None,
        }
    }

    /// Id of the identity map in the slots, if any.
    pub fn attached(&self) -> Option<u32> {
        self.attached.map(|(identity, _)| identity)
    }

    pub fn poll(
        &mut self,
        identity_slot: &dyn MapCore,
        meta_slot: &dyn MapCore,
    ) -> Result<SlotChange, BusError> {
        let bus = match Bus::open(&self.paths) {
            Ok(bus) => bus,
            Err(BusError::NotPinned(_)) => {
                if self.attached.take().is_some() {
                    detach(identity_slot, meta_slot);
                    return Ok(SlotChange::Detached);
                }
                return Ok(SlotChange::None);
            }
            Err(e) => return Err(e),
        };
        let ids = (
            map_id(bus.identity_map(), &self.paths)?,
            map_id(bus.meta_map(), &self.paths)?,
        );
        if self.attached == Some(ids) {
            return Ok(SlotChange::None);
        }
        attach(identity_slot, meta_slot, &bus)?;
        self.attached = Some(ids);
        Ok(SlotChange::Attached {
            identity_map_id: ids.0,
        })
    }
}

fn map_id(map: &dyn MapCore, paths: &BusPaths) -> Result<u32, BusError> {
    Ok(map
        .info()
        .map_err(|source| BusError::Bpf {
            what: "querying",
            path: paths.dir.clone(),
            source,
        })?
        .info
        .id)
}
