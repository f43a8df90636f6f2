// Compiles the exec gate against the shared bus header; bindgen's intf.h.
fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let include = format!("{manifest}/../../bus/include");
    println!("cargo:rerun-if-changed={include}/prism/bus.bpf.h");
    println!("cargo:rerun-if-changed=src/bpf/intf.h");
    scx_cargo::BpfBuilder::new()
        .expect("BPF toolchain (clang-19)")
        .add_include_path(&include)
        .enable_intf("src/bpf/intf.h", "bpf_intf.rs")
        .enable_skel("src/bpf/lsm.bpf.c", "lsm")
        .build()
        .expect("building lsm.bpf.c");
}
