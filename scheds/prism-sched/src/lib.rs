//! What scx_prism and scx_prism_bpfland share on the Rust side.

pub mod cli;
pub mod cpu_max;
pub mod kernel;
pub mod logging;
pub mod throttling;
pub mod verifier;
pub mod wait_histogram;

pub use throttling::{Throttling, ThrottlingInterval};
pub use wait_histogram::{ClassWaits, WaitHistogram};
