// Compiles the BPF side against the shared bus and scheduler headers; bindgen's intf.h.
fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let bus_include = format!("{manifest}/../../bus/include");
    let sched_include = format!("{manifest}/../include");
    println!("cargo:rerun-if-changed={bus_include}/prism/bus.bpf.h");
    println!("cargo:rerun-if-changed={sched_include}/prism");
    scx_cargo::BpfBuilder::new()
        .expect("BPF toolchain (clang-19)")
        .add_include_path(&bus_include)
        .add_include_path(&sched_include)
        .enable_intf("src/bpf/intf.h", "bpf_intf.rs")
        .enable_skel("src/bpf/main.bpf.c", "bpf")
        .build()
        .expect("building the scx_prism BPF side");
}
