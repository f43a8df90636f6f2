//! prism-bus: the identity bus every Prism component shares.
//!
//! - [`abi`]: ABI v1, the Rust twin of `include/prism/bus.bpf.h`;
//! - [`label_hash()`]: FNV-1a/64 of a canonical string;
//! - [`pinned`]: the pinned maps, opened read-only by readers and
//!   created-or-opened by the one writer, prism-feeder;
//! - [`consumer`]: filling a BPF consumer's bus slots with the pinned maps,
//!   now or whenever the bus appears;
//! - [`cgroup`]: cgroup v2 ids, paths and processes;
//! - [`names`]: the identity names file (identity -> a name for people).

pub mod abi;
pub mod cgroup;
pub mod cli;
pub mod consumer;
mod label_hash;
pub mod names;
pub mod pinned;
pub mod record;

pub use abi::{AbiError, Entry, Facets, Flags, Identity, LatencyClass, Meta, Weight};
pub use label_hash::label_hash;
pub use pinned::{Bus, BusError, BusPaths, BusWriter};
