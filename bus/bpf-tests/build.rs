// Compiles the bus probe program against the shared bus header.
fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let include = format!("{manifest}/../include");
    println!("cargo:rerun-if-changed={include}/prism/bus.bpf.h");
    scx_cargo::BpfBuilder::new()
        .expect("BPF toolchain (clang-19)")
        .add_include_path(&include)
        .enable_skel("src/bpf/bus_probe.bpf.c", "bus_probe")
        .build()
        .expect("building bus_probe.bpf.c");
}
