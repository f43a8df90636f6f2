//! ABI v1 of the bus, the Rust half of its two sources of truth.
//!
//! The other half is `include/prism/bus.bpf.h`. Every constant and layout here
//! has a twin there, and `tests/abi_agreement.rs` compiles the header and
//! asserts that the two agree. Change both or neither.
//!
//! This module owns the byte layout and the meaning of every bit. It never
//! silently masks: a value that does not fit its field is an error.

use std::fmt;

use thiserror::Error;

/// Version of the layout below, stored in `prism_meta.abi_version`.
pub const ABI_VERSION: u32 = 1;

/// Name of the identity map (also its pin file name).
pub const IDENTITY_MAP_NAME: &str = "prism_identity";
/// Name of the meta map (also its pin file name).
pub const META_MAP_NAME: &str = "prism_meta";
/// The one directory where the bus is pinned.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/prism";
/// Default capacity of the identity map (an option of the feeder).
pub const DEFAULT_MAX_ENTRIES: u32 = 1 << 20;

/// Kernel map flags (uapi `linux/bpf.h`), as the bus uses them.
pub const BPF_F_NO_PREALLOC: u32 = 1 << 0;
pub const BPF_F_RDONLY_PROG: u32 = 1 << 7;
/// `map_flags` of `prism_identity`: programs may only read; entries are
/// allocated on demand, not 1<<20 of them up front.
pub const IDENTITY_MAP_FLAGS: u32 = BPF_F_RDONLY_PROG | BPF_F_NO_PREALLOC;
/// `map_flags` of `prism_meta`.
pub const META_MAP_FLAGS: u32 = BPF_F_RDONLY_PROG;

/// Size of the identity map's key: a cgroup v2 id.
pub const KEY_SIZE: usize = 8;
/// Size of an identity map value.
pub const VALUE_SIZE: usize = 24;
/// Size of the meta map's only value.
pub const META_SIZE: usize = 24;

/// Identities are 24-bit.
pub const IDENTITY_MASK: u32 = 0x00FF_FFFF;
/// First identity the allocator may hand out; below it, all are reserved.
pub const MIN_DYNAMIC_IDENTITY: u32 = 256;

/// Ancestors a resolver tries after a task's own cgroup has no entry.
pub const ANCESTOR_WALK_MAX: usize = 8;

/// Facet bits (bits 0..2 of `flags`).
pub const FACET_NET: u32 = 0x1;
pub const FACET_SCHED: u32 = 0x2;
pub const FACET_OBSERVE: u32 = 0x4;
pub const FACET_MASK: u32 = FACET_NET | FACET_SCHED | FACET_OBSERVE;

/// Latency class (bits 8..10 of `flags`).
pub const CLASS_SHIFT: u32 = 8;
pub const CLASS_MASK: u32 = 0x7 << CLASS_SHIFT;

/// Weight (bits 11..17 of `flags`): 0 unset, 1..=127, 64 neutral.
pub const WEIGHT_SHIFT: u32 = 11;
pub const WEIGHT_MASK: u32 = 0x7F << WEIGHT_SHIFT;
pub const WEIGHT_MAX: u8 = 127;
pub const WEIGHT_NEUTRAL: u8 = 64;

/// Every bit of `flags` with a meaning in v1; all others must be zero.
pub const FLAGS_DEFINED_MASK: u32 = FACET_MASK | CLASS_MASK | WEIGHT_MASK;

/// What went wrong turning numbers into bus values, or bytes back.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AbiError {
    #[error("identity {0:#x} does not fit in 24 bits")]
    IdentityTooWide(u32),
    #[error("latency class {0} is not defined (0 unset, 1 critical, 2 normal, 3 batch)")]
    BadClass(u32),
    #[error("weight {0} is out of range (1..=127, or 0 for unset)")]
    BadWeight(u32),
    #[error("facet bits {0:#x} are not defined (net 0x1, sched 0x2, observe 0x4)")]
    BadFacets(u32),
    #[error("flags {0:#x} set bits that ABI v1 reserves")]
    ReservedFlags(u32),
    #[error("expected {expected} bytes, got {got}")]
    BadLength { expected: usize, got: usize },
}

/// A 24-bit workload identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Identity(u32);

impl Identity {
    pub const UNKNOWN: Identity = Identity(0);
    pub const HOST: Identity = Identity(1);
    pub const WORLD: Identity = Identity(2);
    pub const UNMANAGED: Identity = Identity(3);
    pub const HEALTH: Identity = Identity(4);
    pub const INIT: Identity = Identity(5);
    pub const REMOTE_NODE: Identity = Identity(6);
    pub const KUBE_APISERVER: Identity = Identity(7);
    pub const INGRESS: Identity = Identity(8);
    pub const MAX: Identity = Identity(IDENTITY_MASK);

    pub fn new(raw: u32) -> Result<Self, AbiError> {
        if raw & !IDENTITY_MASK != 0 {
            return Err(AbiError::IdentityTooWide(raw));
        }
        Ok(Identity(raw))
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// Ids below 256 are well-known or reserved, never allocated.
    pub fn is_reserved(self) -> bool {
        self.0 < MIN_DYNAMIC_IDENTITY
    }

    /// The name of a well-known id, if it has one.
    pub fn well_known_name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "unknown",
            1 => "host",
            2 => "world",
            3 => "unmanaged",
            4 => "health",
            5 => "init",
            6 => "remote-node",
            7 => "kube-apiserver",
            8 => "ingress",
            _ => return None,
        })
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.well_known_name() {
            Some(name) => write!(f, "{}({name})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

/// Declared latency class of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(u8)]
pub enum LatencyClass {
    #[default]
    Unset = 0,
    Critical = 1,
    Normal = 2,
    Batch = 3,
}

impl LatencyClass {
    pub const ALL: [LatencyClass; 4] = [
        LatencyClass::Unset,
        LatencyClass::Critical,
        LatencyClass::Normal,
        LatencyClass::Batch,
    ];

    pub fn from_raw(raw: u32) -> Result<Self, AbiError> {
        Ok(match raw {
            0 => LatencyClass::Unset,
            1 => LatencyClass::Critical,
            2 => LatencyClass::Normal,
            3 => LatencyClass::Batch,
            _ => return Err(AbiError::BadClass(raw)),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            LatencyClass::Unset => "unset",
            LatencyClass::Critical => "critical",
            LatencyClass::Normal => "normal",
            LatencyClass::Batch => "batch",
        }
    }
}

impl fmt::Display for LatencyClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Scheduling weight: `None` is unset, otherwise 1..=127 with 64 neutral.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Weight(u8);

impl Weight {
    pub const UNSET: Weight = Weight(0);
    pub const NEUTRAL: Weight = Weight(WEIGHT_NEUTRAL);

    /// 0 means unset; 1..=127 are weights; anything else is an error.
    pub fn new(raw: u32) -> Result<Self, AbiError> {
        if raw > u32::from(WEIGHT_MAX) {
            return Err(AbiError::BadWeight(raw));
        }
        Ok(Weight(raw as u8))
    }

    pub fn get(self) -> Option<u8> {
        (self.0 != 0).then_some(self.0)
    }

    pub fn raw(self) -> u8 {
        self.0
    }
}

/// Which subsystems act on a workload (bits 0..2 of `flags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Facets(u32);

impl Facets {
    pub const NONE: Facets = Facets(0);
    pub const NET: Facets = Facets(FACET_NET);
    pub const SCHED: Facets = Facets(FACET_SCHED);
    pub const OBSERVE: Facets = Facets(FACET_OBSERVE);
    pub const ALL: Facets = Facets(FACET_MASK);

    pub fn new(raw: u32) -> Result<Self, AbiError> {
        if raw & !FACET_MASK != 0 {
            return Err(AbiError::BadFacets(raw));
        }
        Ok(Facets(raw))
    }

    pub fn bits(self) -> u32 {
        self.0
    }

    pub fn contains(self, other: Facets) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn union(self, other: Facets) -> Facets {
        Facets(self.0 | other.0)
    }

    /// Names of the set facets, e.g. `["net", "sched"]`.
    pub fn names(self) -> Vec<&'static str> {
        [
            (FACET_NET, "net"),
            (FACET_SCHED, "sched"),
            (FACET_OBSERVE, "observe"),
        ]
        .into_iter()
        .filter(|(bit, _)| self.0 & bit != 0)
        .map(|(_, name)| name)
        .collect()
    }
}

impl fmt::Display for Facets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = self.names();
        if names.is_empty() {
            f.write_str("-")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

/// The policy half of `flags`: facets, class and weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags {
    pub facets: Facets,
    pub class: LatencyClass,
    pub weight: Weight,
}

impl Flags {
    pub fn encode(self) -> u32 {
        self.facets.bits()
            | (u32::from(self.class as u8) << CLASS_SHIFT)
            | (u32::from(self.weight.raw()) << WEIGHT_SHIFT)
    }

    pub fn decode(raw: u32) -> Result<Self, AbiError> {
        if raw & !FLAGS_DEFINED_MASK != 0 {
            return Err(AbiError::ReservedFlags(raw & !FLAGS_DEFINED_MASK));
        }
        Ok(Flags {
            facets: Facets::new(raw & FACET_MASK)?,
            class: LatencyClass::from_raw((raw & CLASS_MASK) >> CLASS_SHIFT)?,
            weight: Weight::new((raw & WEIGHT_MASK) >> WEIGHT_SHIFT)?,
        })
    }
}

/// One value of `prism_identity`: what the bus says about one cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Entry {
    pub identity: Identity,
    pub flags: Flags,
    /// FNV-1a/64 of the canonical string; change detection only.
    pub label_hash: u64,
    /// Wall-clock (CLOCK_REALTIME) nanoseconds of the feeder's write.
    pub updated_ns: u64,
}

impl Entry {
    /// Little-endian `{ identity u32, flags u32, label_hash u64, updated_ns u64 }`.
    pub fn to_bytes(&self) -> [u8; VALUE_SIZE] {
        let mut out = [0u8; VALUE_SIZE];
        out[0..4].copy_from_slice(&self.identity.get().to_le_bytes());
        out[4..8].copy_from_slice(&self.flags.encode().to_le_bytes());
        out[8..16].copy_from_slice(&self.label_hash.to_le_bytes());
        out[16..24].copy_from_slice(&self.updated_ns.to_le_bytes());
        out
    }

    /// Decode and validate a value read from the map.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AbiError> {
        let b: &[u8; VALUE_SIZE] = bytes.try_into().map_err(|_| AbiError::BadLength {
            expected: VALUE_SIZE,
            got: bytes.len(),
        })?;
        Ok(Entry {
            identity: Identity::new(le_u32(&b[0..4]))?,
            flags: Flags::decode(le_u32(&b[4..8]))?,
            label_hash: le_u64(&b[8..16]),
            updated_ns: le_u64(&b[16..24]),
        })
    }
}

/// The only value of `prism_meta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    pub abi_version: u32,
    /// Bumped by the feeder after every batch of writes. Readers compare it
    /// for equality only; a new bus starts far above any earlier one's.
    pub generation: u64,
    /// Number of entries in `prism_identity`, as of the last batch.
    pub entries: u64,
}

impl Meta {
    pub fn to_bytes(&self) -> [u8; META_SIZE] {
        let mut out = [0u8; META_SIZE];
        out[0..4].copy_from_slice(&self.abi_version.to_le_bytes());
        out[8..16].copy_from_slice(&self.generation.to_le_bytes());
        out[16..24].copy_from_slice(&self.entries.to_le_bytes());
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AbiError> {
        let b: &[u8; META_SIZE] = bytes.try_into().map_err(|_| AbiError::BadLength {
            expected: META_SIZE,
            got: bytes.len(),
        })?;
        Ok(Meta {
            abi_version: le_u32(&b[0..4]),
            generation: le_u64(&b[8..16]),
            entries: le_u64(&b[16..24]),
        })
    }
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b.try_into().expect("caller passes 4 bytes"))
}

fn le_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().expect("caller passes 8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_rejects_25_bits() {
        assert_eq!(
            Identity::new(0x100_0000),
            Err(AbiError::IdentityTooWide(0x100_0000))
        );
        assert_eq!(Identity::new(0xFF_FFFF).map(Identity::get), Ok(0xFF_FFFF));
    }

    #[test]
    fn class_and_weight_reject_out_of_range() {
        assert_eq!(LatencyClass::from_raw(5), Err(AbiError::BadClass(5)));
        assert_eq!(LatencyClass::from_raw(4), Err(AbiError::BadClass(4)));
        assert_eq!(Weight::new(200), Err(AbiError::BadWeight(200)));
        assert_eq!(Weight::new(128), Err(AbiError::BadWeight(128)));
        assert_eq!(Weight::new(127).map(Weight::get), Ok(Some(127)));
        assert_eq!(Weight::new(0).map(Weight::get), Ok(None));
        assert_eq!(Facets::new(0x8), Err(AbiError::BadFacets(0x8)));
    }

    #[test]
    fn fields_do_not_overlap() {
        assert_eq!(FACET_MASK & CLASS_MASK, 0);
        assert_eq!(FACET_MASK & WEIGHT_MASK, 0);
        assert_eq!(CLASS_MASK & WEIGHT_MASK, 0);
        assert_eq!(CLASS_MASK, 0x700);
        assert_eq!(WEIGHT_MASK, 0x3F800);
    }

    #[test]
    fn flags_round_trip_every_class_and_weight() {
        for class in LatencyClass::ALL {
            for w in [0, 1, 64, 127] {
                for facets in 0..=FACET_MASK {
                    let f = Flags {
                        facets: Facets::new(facets).unwrap(),
                        class,
                        weight: Weight::new(w).unwrap(),
                    };
                    assert_eq!(Flags::decode(f.encode()), Ok(f));
                }
            }
        }
    }

    #[test]
    fn reserved_flag_bits_are_errors() {
        assert_eq!(Flags::decode(1 << 3), Err(AbiError::ReservedFlags(1 << 3)));
        assert_eq!(
            Flags::decode(1 << 18),
            Err(AbiError::ReservedFlags(1 << 18))
        );
        // class 5 fits the 3-bit field but is reserved
        assert_eq!(Flags::decode(5 << CLASS_SHIFT), Err(AbiError::BadClass(5)));
    }

    #[test]
    fn entry_bytes_are_little_endian_and_round_trip() {
        let e = Entry {
            identity: Identity::new(0x012345).unwrap(),
            flags: Flags {
                facets: Facets::SCHED,
                class: LatencyClass::Critical,
                weight: Weight::new(64).unwrap(),
            },
            label_hash: 0x1122_3344_5566_7788,
            updated_ns: 42,
        };
        let b = e.to_bytes();
        assert_eq!(&b[0..4], &[0x45, 0x23, 0x01, 0x00]);
        assert_eq!(
            u32::from_le_bytes(b[4..8].try_into().unwrap()),
            0x2 | 0x100 | (64 << 11)
        );
        assert_eq!(b[8], 0x88);
        assert_eq!(Entry::from_bytes(&b), Ok(e));
        assert!(matches!(
            Entry::from_bytes(&b[..23]),
            Err(AbiError::BadLength { .. })
        ));
    }

    #[test]
    fn identity_display_names_well_known_ids() {
        assert_eq!(Identity::HOST.to_string(), "1(host)");
        assert_eq!(Identity::new(300).unwrap().to_string(), "300");
        assert!(Identity::INGRESS.is_reserved());
        assert!(!Identity::new(256).unwrap().is_reserved());
    }
}
