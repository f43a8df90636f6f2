//! prism-trace: the trace leg. A BPF program reports every exec and process
//! exit with the task's identity, class and cgroup ([`bpf`]); [`event`]
//! decodes and prints them (JSON lines or a table).

pub mod bpf;
pub mod event;
