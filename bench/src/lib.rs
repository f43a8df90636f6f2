//! Measurement tools shared by the lab tests and the benchmarks.

pub mod lab;
pub mod latency;
