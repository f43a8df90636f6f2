//! The verifier's budget: how many instructions the kernel's verifier
//! processed for each of a scheduler's BPF programs when it loaded
//! (`bpf_prog_info.verified_insns`), against the verifier's complexity limit
//! of 1,000,000. A program near the limit fails to load after the next
//! change or on the next kernel, so every load logs the figures and the lab
//! tests fail a program past half the limit.

use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

/// The verifier's limit on instructions processed per program.
pub const COMPLEXITY_LIMIT: u32 = 1_000_000;

/// One loaded program's verification cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramCost {
    pub name: String,
    pub verified_insns: u32,
}

/// The cost of every loaded program of `obj` (programs not loaded, and
/// kernels that do not report it, are left out).
pub fn costs(obj: &libbpf_rs::Object) -> Vec<ProgramCost> {
    obj.progs()
        .filter_map(|prog| {
            let mut info = libbpf_rs::libbpf_sys::bpf_prog_info::default();
            let mut len = std::mem::size_of_val(&info) as u32;
            // SAFETY: info and len describe a valid, writable bpf_prog_info.
            let rc = unsafe {
                libbpf_rs::libbpf_sys::bpf_prog_get_info_by_fd(
                    prog.as_fd().as_raw_fd(),
                    &mut info,
                    &mut len,
                )
            };
            (rc == 0).then(|| ProgramCost {
                name: prog.name().to_string_lossy().into_owned(),
                verified_insns: info.verified_insns,
            })
        })
        .collect()
}

/// The line a scheduler logs after loading, e.g. "verifier: 21 programs
/// loaded in 5.2 s; largest prism_dispatch, 41234 instructions (4.1% of the
/// 1000000 limit)".
pub fn summary(costs: &[ProgramCost], load_time: Duration) -> String {
    let largest = costs.iter().max_by_key(|c| c.verified_insns);
    let head = format!(
        "verifier: {} programs loaded in {:.1} s",
        costs.len(),
        load_time.as_secs_f64()
    );
    match largest {
        Some(c) => format!(
            "{head}; largest {}, {} instructions ({:.1}% of the {COMPLEXITY_LIMIT} limit)",
            c.name,
            c.verified_insns,
            share_of_limit(c.verified_insns)
        ),
        None => format!("{head}; no instruction counts from this kernel"),
    }
}

/// `insns` as a percentage of the complexity limit.
pub fn share_of_limit(insns: u32) -> f64 {
    100.0 * f64::from(insns) / f64::from(COMPLEXITY_LIMIT)
}

/// The percentage a [`summary`] line reports for its largest program.
pub fn parse_largest_share(line: &str) -> Option<f64> {
    let (_, rest) = line.split_once("instructions (")?;
    rest.split_once("% of")?.0.parse().ok()
}

/// Where a scheduler's log says how much of the verifier's budget its
/// largest program used: the line, if under `max_share` percent; otherwise
/// (or with no such line) why not.
pub fn check_log(log: &str, max_share: f64) -> Result<String, String> {
    let line = log
        .lines()
        .find(|l| l.contains("verifier: "))
        .ok_or_else(|| format!("no verifier line in the log:\n{log}"))?;
    match parse_largest_share(line) {
        Some(share) if share < max_share => Ok(line.to_string()),
        Some(_) => Err(format!("over {max_share}% of the limit: {line}")),
        None => Err(format!("no instruction count: {line}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(name: &str, n: u32) -> ProgramCost {
        ProgramCost {
            name: name.into(),
            verified_insns: n,
        }
    }

    #[test]
    fn the_summary_names_the_largest_program_and_its_share_of_the_limit() {
        let line = summary(
            &[
                cost("enqueue", 1200),
                cost("dispatch", 41234),
                cost("init", 90),
            ],
            Duration::from_millis(5200),
        );
        assert_eq!(
            line,
            "verifier: 3 programs loaded in 5.2 s; largest dispatch, 41234 instructions (4.1% of the 1000000 limit)"
        );
        assert_eq!(parse_largest_share(&line), Some(4.1));
    }

    #[test]
    fn a_log_passes_only_with_a_count_under_the_budget() {
        let line = summary(&[cost("dispatch", 400_000)], Duration::from_secs(5));
        let log = format!("starting\n12:00 [INFO] {line}\nrunning");
        assert!(check_log(&log, 50.0).unwrap().ends_with(&line));
        assert!(check_log(&log, 30.0).unwrap_err().contains("over 30%"));
        assert!(
            check_log("starting", 50.0)
                .unwrap_err()
                .contains("no verifier line")
        );
        let none = summary(&[], Duration::from_secs(1));
        assert!(
            check_log(&none, 50.0)
                .unwrap_err()
                .contains("no instruction count")
        );
    }

    #[test]
    fn a_kernel_without_counts_says_so_and_parses_as_nothing() {
        let line = summary(&[], Duration::from_secs(1));
        assert!(line.ends_with("no instruction counts from this kernel"));
        assert_eq!(parse_largest_share(&line), None);
    }
}
