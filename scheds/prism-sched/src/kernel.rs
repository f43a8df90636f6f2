//! A clear refusal on a kernel without sched_ext, before anything is loaded.

use std::path::Path;

use anyhow::{Result, bail};

/// Ok if this kernel has sched_ext; otherwise an error that says what is
/// missing and how to run `scheduler` anyway (the lab VM).
pub fn check_sched_ext(scheduler: &str) -> Result<()> {
    if Path::new("/sys/kernel/sched_ext").exists() {
        return Ok(());
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    bail!(
        "this kernel ({}) has no sched_ext: {scheduler} needs a kernel built with CONFIG_SCHED_CLASS_EXT=y \
         (and CONFIG_BPF_SYSCALL, CONFIG_BPF_JIT, CONFIG_DEBUG_INFO_BTF). Debian's kernels have it from 6.14 on \
         (trixie-backports). To run it on this host anyway, use the lab VM: \
         `ci/lab run -- target/release/{scheduler}` (README, section \"{scheduler}\").",
        release.trim()
    )
}
