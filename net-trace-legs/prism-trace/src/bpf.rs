//! Loading the tracer with its filters, and reading what it reports: the
//! events (a ring buffer) and how many found it full.

use std::mem::MaybeUninit;
use std::path::Path;

use anyhow::Context;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, OpenObject};

#[allow(clippy::all, dead_code, non_camel_case_types, non_snake_case)]
pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/trace_skel.rs"));
}

#[allow(
    clippy::all,
    dead_code,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals
)]
pub mod intf {
    include!(concat!(env!("OUT_DIR"), "/bpf_intf.rs"));
}

use skel::{TraceSkel, TraceSkelBuilder};

/// What to report.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only these identities (empty: all).
    pub identities: Vec<u32>,
    /// Only these classes, by bus value 0..=3 (empty: all).
    pub classes: Vec<u32>,
    /// Only tasks at or below this cgroup.
    pub cgroup: Option<std::path::PathBuf>,
    pub exec: bool,
    pub exit: bool,
    /// Ring buffer bytes (a power of two, at least a page).
    pub ring_size: u32,
}

/// The level of a cgroup (0 for the root), and its id.
fn cgroup_level_and_id(path: &Path) -> anyhow::Result<(u32, u64)> {
    let id =
        prism_bus::cgroup::cgroup_id(path).with_context(|| format!("cgroup {}", path.display()))?;
    let root = prism_bus::cgroup::cgroup2_root().context("finding the cgroup2 mount")?;
    let rel = path
        .canonicalize()?
        .strip_prefix(root.canonicalize()?)
        .with_context(|| {
            format!(
                "{} is not below the cgroup2 root {}",
                path.display(),
                root.display()
            )
        })?
        .components()
        .count();
    Ok((rel as u32, id))
}

/// Load and attach with `filter` applied in the kernel.
pub fn load<'obj>(
    obj: &'obj mut MaybeUninit<OpenObject>,
    filter: &Filter,
) -> anyhow::Result<TraceSkel<'obj>> {
    let mut open = TraceSkelBuilder::default()
        .open(obj)
        .context("opening the BPF object")?;
    let ro = open
        .maps
        .rodata_data
        .as_deref_mut()
        .expect("the object has rodata");
    ro.filter_identities = !filter.identities.is_empty();
    ro.wanted_classes = filter.classes.iter().fold(0, |m, c| m | (1 << c));
    if let Some(cg) = &filter.cgroup {
        let (level, id) = cgroup_level_and_id(cg)?;
        ro.wanted_cgroup = id;
        ro.wanted_cgroup_level = level;
    }
    ro.wake_at = u64::from(filter.ring_size / 8);
    open.progs.trace_exec.set_autoload(filter.exec);
    open.progs.trace_exit.set_autoload(filter.exit);
    open.maps
        .events
        .set_max_entries(filter.ring_size)
        .context("--ring-size must be a power of two of at least a page")?;
    let mut skel = open
        .load()
        .context("loading prism-trace's BPF program (root and a BPF-capable kernel needed)")?;
    for id in &filter.identities {
        skel.maps
            .wanted_identities
            .update(&id.to_ne_bytes(), &[1], MapFlags::ANY)?;
    }
    skel.attach()
        .context("attaching to the exec and exit tracepoints")?;
    Ok(skel)
}

/// Events that found the ring buffer full, since load.
pub fn dropped(skel: &TraceSkel) -> anyhow::Result<u64> {
    Ok(prism_bus::consumer::sum_per_cpu_u64(&skel.maps.dropped)?)
}

/// Events of workloads without the observe facet (not reported), since load.
pub fn unfaceted(skel: &TraceSkel) -> anyhow::Result<u64> {
    Ok(prism_bus::consumer::sum_per_cpu_u64(&skel.maps.unfaceted)?)
}
