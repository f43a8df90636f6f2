// intf.h, bindgen'd by build.rs: what BPF and Rust share.
#![allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    dead_code
)]
include!(concat!(env!("OUT_DIR"), "/bpf_intf.rs"));
