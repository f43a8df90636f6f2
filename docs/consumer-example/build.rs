// Compiles the example against the bus header (bus/include).
fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let include = format!("{manifest}/../../bus/include");
    println!("cargo:rerun-if-changed={include}/prism/bus.bpf.h");
    scx_cargo::BpfBuilder::new()
        .expect("BPF toolchain (clang-19)")
        .add_include_path(&include)
        .enable_skel("src/bpf/syscalls.bpf.c", "syscalls")
        .build()
        .expect("building syscalls.bpf.c");
}
