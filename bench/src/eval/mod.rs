//! prism-eval's parts: the schedulers it compares, the scenarios it runs
//! under each, the prism-feeder that labels the scenario cgroups, and the
//! report (CSV, markdown, plots) made from the raw records.

pub mod feeder;
pub mod plot;
pub mod report;
pub mod scenarios;
pub mod schedulers;

use serde::{Deserialize, Serialize};

/// One measured figure of one trial: the raw data every summary, table and
/// plot is computed from (`raw.csv`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub trial: usize,
    pub scheduler: String,
    pub scenario: String,
    /// Whose figure: a probe's class ("critical", "normal", "batch") or "hogs".
    pub subject: String,
    /// "p50_us", "p99_us", "p999_us", "cpu_share_pct" or "cpus".
    pub metric: String,
    pub value: f64,
}
