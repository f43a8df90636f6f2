//! Measurement tools shared by the lab tests and the benchmarks.

pub mod contract;
pub mod eval;
pub mod hotplug;
pub mod lab;
pub mod latency;
pub mod stats;
pub mod timing;
pub mod topology;
