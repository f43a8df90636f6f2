//! prism-lsm: the exec gate (experimental). A BPF LSM program lets each
//! identity execute only the files of its allow-list, or anything but those
//! of its deny-list ([`rules`], [`bpf`]); it never gates the first exec of a
//! process into a cgroup (a container's entrypoint, the runtime's set-up).
//! Denials fail with EPERM, are counted per identity and reported
//! ([`denial`]).

pub mod bpf;
pub mod denial;
pub mod rules;

/// Whether the kernel runs the BPF LSM: `lsm` is the content of
/// `/sys/kernel/security/lsm` (a comma-separated list).
pub fn bpf_lsm_active(lsm: &str) -> bool {
    lsm.trim().split(',').any(|m| m == "bpf")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bpf_lsm_must_be_in_the_list() {
        assert!(super::bpf_lsm_active("lockdown,capability,landlock,bpf\n"));
        assert!(super::bpf_lsm_active("bpf"));
        assert!(!super::bpf_lsm_active("lockdown,capability,yama,apparmor"));
        assert!(!super::bpf_lsm_active("capability,bpfx"));
        assert!(!super::bpf_lsm_active(""));
    }
}
