//! The bus probe: a BPF test consumer of `prism/bus.bpf.h`, for the real-kernel
//! tests in `tests/`. Nothing here is shipped.

#[allow(clippy::all, dead_code, non_camel_case_types, non_snake_case)]
pub mod bus_probe {
    include!(concat!(env!("OUT_DIR"), "/bus_probe_skel.rs"));
}
