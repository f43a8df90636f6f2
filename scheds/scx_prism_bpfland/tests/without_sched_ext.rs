//! On a kernel without sched_ext (this host, and CI's), scx_prism_bpfland refuses
//! clearly before loading anything. Where the kernel has sched_ext (the lab
//! guest) there is nothing to check.

use std::path::Path;

#[test]
fn refuses_clearly_without_sched_ext() {
    let bin = Path::new(env!("CARGO_BIN_EXE_scx_prism_bpfland"));
    if !prism_testkit::lab::refuses_without_sched_ext(bin, "scx_prism_bpfland") {
        eprintln!("this kernel has sched_ext: no refusal to check");
    }
}
