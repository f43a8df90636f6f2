//! prism-testkit: what Prism's tests and benchmarks share, and nothing a
//! node runs. No shipped binary depends on it (`ci/install-check` asserts
//! it from the meson build's dependency tree).
//!
//! - [`fixtures`]: a private bus, temporary cgroups, JSON-lines children,
//!   the kernel's BPF run-time statistics;
//! - [`stats`]: medians, bootstrap intervals, paired overhead trials;
//! - [`latency`]: the latency summary the probes print and the tests read;
//! - [`lab`]: running a scheduler, hogs and probes in the sched_ext lab;
//! - [`contract`], [`hotplug`], [`topology`], [`resilience`]: the lab
//!   experiments both schedulers' tests run, set-up and shared checks in
//!   one place;
//! - [`suite`]: the lab tests every scheduler passes, defined once.

pub mod contract;
pub mod fixtures;
pub mod hotplug;
pub mod lab;
pub mod latency;
pub mod resilience;
pub mod stats;
pub mod suite;
pub mod topology;
