//! The loader: size the BPF side to this machine's topology, load and
//! attach it, keep the bus slots current (only with --prism), read its
//! counters, report how it exited.

use std::collections::BTreeMap;
use std::mem::MaybeUninit;

use anyhow::{Context, Result, bail};
use libbpf_rs::{MapCore, MapFlags, OpenObject};
use log::info;
use prism_bus::BusPaths;
use prism_bus::consumer::{SlotChange, SlotKeeper};
use prism_sched::cpu_max::{self, CpuMaxPoller};
use prism_sched::{Throttling, WaitHistogram};
use scx_utils::{
    Topology, UserExitInfo, compat, scx_ops_attach, scx_ops_load, scx_ops_open, uei_exited,
    uei_report,
};

use crate::bpf_intf::{consts_MAX_CPUS, consts_MAX_LLCS, consts_MAX_NODES};
use crate::bpf_skel::{BpfSkel, BpfSkelBuilder};

/// Per-class arrays are indexed by the bus's class value.
pub const NR_CLASSES: usize = prism_bus::LatencyClass::ALL.len();
const MAX_CPUS: usize = consts_MAX_CPUS as usize;
const MAX_LLCS: usize = consts_MAX_LLCS as usize;
const MAX_NODES: usize = consts_MAX_NODES as usize;

/// The policy's knobs, from the command line.
pub struct BpfConfig {
    pub slice_max_ns: u64,
    pub slice_min_ns: u64,
    pub slice_lag_ns: u64,
    pub preempt_min_ns: u64,
    pub preempt_same_class: bool,
    pub class_offset_ns: u64,
    pub batch_slice_factor: u32,
    pub affine_burst_ns: u64,
    pub critical_weight_factor: u32,
    /// The bus to read classes from; None: --prism is off, the bus is never opened.
    pub prism: Option<BusPaths>,
    pub partial: bool,
    pub exit_dump_len: u32,
    pub verbose: bool,
    /// libbpf's object-open options (scx_utils' `--relaxed-maps` & co.).
    pub libbpf: scx_utils::libbpf_clap_opts::LibbpfOpts,
}

/// Counters the BPF side keeps (cumulative since load).
#[derive(Clone)]
pub struct BpfCounters {
    pub direct_dispatches: u64,
    pub queued_dispatches: u64,
    pub preemptions: u64,
    pub steals: u64,
    pub rescued: u64,
    pub owed_critical: u64,
    pub affine: u64,
    pub rcu_readers: u64,
    pub runs: [u64; NR_CLASSES],
    pub class_runtime_ns: [u64; NR_CLASSES],
    pub wait: [WaitHistogram; NR_CLASSES],
    pub bus_cached: u64,
    pub bus_own: u64,
    pub bus_ancestor: u64,
    pub bus_miss: u64,
    pub bus_no_sched_facet: u64,
    pub throttling: Throttling,
    pub runnable_weight: i64,
}

pub struct BpfScheduler<'obj> {
    skel: BpfSkel<'obj>,
    struct_ops: Option<libbpf_rs::Link>,
    /// where the kernel passes no cpu.max: user space follows cgroupfs
    cpu_max: Option<CpuMaxPoller>,
    bus: Option<SlotKeeper>,
}

/// Where each CPU sits: dense LLC and node indexes, as the BPF side wants them.
struct Layout {
    cpu_llc: Vec<(usize, u32)>,
    cpu_node: Vec<(usize, u32)>,
    llc_nr_cpus: Vec<u32>,
    smt: bool,
}

/// The layout of CPUs given as (cpu id, LLC id, node id), ids as the
/// kernel numbers them (sparse); the BPF side wants dense indexes.
fn layout(cpus: impl IntoIterator<Item = (usize, usize, usize)>, smt: bool) -> Result<Layout> {
    let mut llcs = BTreeMap::new();
    let mut nodes = BTreeMap::new();
    let (mut cpu_llc, mut cpu_node) = (Vec::new(), Vec::new());
    for (id, llc_id, node_id) in cpus {
        if id >= MAX_CPUS {
            bail!("CPU {id} is beyond the {MAX_CPUS} this scheduler supports");
        }
        let next = llcs.len() as u32;
        let llc = *llcs.entry(llc_id).or_insert(next);
        let next = nodes.len() as u32;
        let node = *nodes.entry(node_id).or_insert(next);
        cpu_llc.push((id, llc));
        cpu_node.push((id, node));
    }
    if cpu_llc.is_empty() {
        bail!("no CPUs in the topology");
    }
    if llcs.len() > MAX_LLCS || nodes.len() > MAX_NODES {
        bail!(
            "{} LLCs / {} nodes: at most {MAX_LLCS} / {MAX_NODES} supported",
            llcs.len(),
            nodes.len()
        );
    }
    let mut llc_nr_cpus = vec![0; llcs.len()];
    for &(_, llc) in &cpu_llc {
        llc_nr_cpus[llc as usize] += 1;
    }
    Ok(Layout {
        cpu_llc,
        cpu_node,
        llc_nr_cpus,
        smt,
    })
}

impl<'obj> BpfScheduler<'obj> {
    pub fn init(open_object: &'obj mut MaybeUninit<OpenObject>, cfg: &BpfConfig) -> Result<Self> {
        let topo = Topology::new().context("reading the CPU topology")?;
        let layout = layout(
            topo.all_cpus.values().map(|c| (c.id, c.llc_id, c.node_id)),
            topo.smt_enabled,
        )?;
        info!(
            "topology: {} CPUs, {} LLCs, SMT {}",
            layout.cpu_llc.len(),
            layout.llc_nr_cpus.len(),
            if layout.smt { "on" } else { "off" }
        );

        let mut builder = BpfSkelBuilder::default();
        builder.obj_builder.debug(cfg.verbose);
        let mut skel = scx_ops_open!(
            builder,
            open_object,
            prism_bpfland_ops,
            cfg.libbpf.clone().into_bpf_open_opts()
        )?;

        let ops = skel.struct_ops.prism_bpfland_ops_mut();
        // Kernels that still gate the cgroup weight callbacks behind a flag
        // (6.15 .. 6.17) want it set; later ones call them always.
        // ENQ_LAST: a task out of slice with nothing else to run comes back
        // through ops.enqueue (where cpu.max holds it), not kept running.
        // ALLOW_QUEUED_WAKEUP: a wakeup aimed at another CPU is queued on
        // that CPU's wake list, not enqueued by the waker under the remote
        // run queue's lock; without it the idle request probe's p99 was
        // 2.3-2.6 ms against EEVDF's 0.28-0.52 (with it 0.27-0.35, same boot)
        ops.flags = *compat::SCX_OPS_ENQ_LAST
            | *compat::SCX_OPS_ALLOW_QUEUED_WAKEUP
            | compat::read_enum("scx_ops_flags", "SCX_OPS_HAS_CGROUP_WEIGHT").unwrap_or(0);
        if cfg.partial {
            ops.flags |= *compat::SCX_OPS_SWITCH_PARTIAL;
        }
        ops.exit_dump_len = cfg.exit_dump_len;

        let rodata = skel.maps.rodata_data.as_mut().context("no rodata")?;
        rodata.slice_max_ns = cfg.slice_max_ns;
        rodata.slice_min_ns = cfg.slice_min_ns;
        rodata.slice_lag_ns = cfg.slice_lag_ns;
        rodata.preempt_min_ns = cfg.preempt_min_ns;
        rodata.preempt_same_class = cfg.preempt_same_class;
        rodata.class_offset_ns = cfg.class_offset_ns;
        rodata.batch_slice_factor = cfg.batch_slice_factor;
        rodata.affine_burst_ns = cfg.affine_burst_ns;
        rodata.critical_weight_factor = cfg.critical_weight_factor;
        rodata.prism_enabled = cfg.prism.is_some();
        rodata.smt_enabled = layout.smt;
        rodata.nr_llcs = layout.llc_nr_cpus.len() as u32;
        rodata.nr_cpus = layout.cpu_llc.len() as u32;
        for &(cpu, llc) in &layout.cpu_llc {
            rodata.cpu_llc[cpu] = llc;
        }
        for &(cpu, node) in &layout.cpu_node {
            rodata.cpu_node[cpu] = node;
        }
        for (llc, &n) in layout.llc_nr_cpus.iter().enumerate() {
            rodata.llc_nr_cpus[llc] = n;
        }

        // With --prism, the bus slots' template must match the pinned map
        // when there is one; libbpf reads the fd at load time.
        let template = cfg
            .prism
            .as_ref()
            .and_then(|paths| prism_bus::Bus::open(paths).ok());
        if let Some(bus) = &template {
            use std::os::fd::AsFd;
            skel.maps
                .prism_bus_identity
                .set_inner_map_fd(bus.identity_map().as_fd())
                .context("sizing the bus slot")?;
        }
        let load_started = std::time::Instant::now();
        let mut skel = scx_ops_load!(skel, prism_bpfland_ops, uei)?;
        info!(
            "{}",
            prism_sched::verifier::summary(
                &prism_sched::verifier::costs(libbpf_rs::skel::Skel::object(&skel)),
                load_started.elapsed()
            )
        );
        drop(template);

        let bus = match &cfg.prism {
            Some(paths) => {
                let mut keeper = SlotKeeper::new(paths.clone());
                keeper.poll(&skel.maps.prism_bus_identity, &skel.maps.prism_bus_meta)?;
                Some(keeper)
            }
            None => None,
        };
        let struct_ops = Some(scx_ops_attach!(skel, prism_bpfland_ops)?);
        let cpu_max = cpu_max::start(
            compat::struct_has_field("sched_ext_ops", "cgroup_set_bandwidth").unwrap_or(false),
            &mut skel.progs.prism_bw_publish,
        );
        Ok(BpfScheduler {
            skel,
            struct_ops,
            cpu_max,
            bus,
        })
    }

    /// With --prism, keep the bus slots on the pinned bus (attach late,
    /// follow re-creation).
    pub fn poll_bus(&mut self) -> Result<SlotChange> {
        match &mut self.bus {
            Some(keeper) => Ok(keeper.poll(
                &self.skel.maps.prism_bus_identity,
                &self.skel.maps.prism_bus_meta,
            )?),
            None => Ok(SlotChange::None),
        }
    }

    /// None without --prism; else whether the bus is attached.
    pub fn bus_attached(&self) -> Option<bool> {
        self.bus.as_ref().map(|k| k.attached().is_some())
    }

    /// Where the kernel passes no cpu.max: publish what changed in cgroupfs.
    pub fn poll_cpu_max(&mut self) {
        if let Some(poller) = &mut self.cpu_max {
            poller.follow(&mut self.skel.progs.prism_bw_publish);
        }
    }

    pub fn counters(&self) -> BpfCounters {
        let b = self.skel.maps.bss_data.as_ref().expect("bss");
        BpfCounters {
            direct_dispatches: b.nr_direct_dispatches,
            queued_dispatches: b.nr_queued_dispatches,
            preemptions: b.nr_preemptions,
            steals: b.nr_steals,
            rescued: b.nr_rescued,
            owed_critical: b.nr_owed_critical,
            affine: b.nr_affine,
            rcu_readers: b.nr_rcu_readers,
            runs: b.nr_runs,
            class_runtime_ns: b.class_runtime_ns,
            wait: std::array::from_fn(|c| WaitHistogram::from_buckets(&b.wait_hist[c])),
            bus_cached: b.nr_bus_cached,
            bus_own: b.nr_bus_own,
            bus_ancestor: b.nr_bus_ancestor,
            bus_miss: b.nr_bus_miss,
            bus_no_sched_facet: b.nr_bus_no_sched_facet,
            throttling: self.throttling(),
            runnable_weight: b.prism_cg_total,
        }
    }

    /// Every limited cgroup's throttling so far (cpu.max).
    fn throttling(&self) -> Throttling {
        let map = &self.skel.maps.prism_bws;
        Throttling::decode(map.keys().filter_map(|k| {
            let v = map.lookup(&k, MapFlags::ANY).ok().flatten()?;
            Some((k, v))
        }))
    }

    /// True once the kernel has ejected or stopped the scheduler.
    pub fn exited(&mut self) -> bool {
        uei_exited!(&self.skel, uei)
    }

    /// Unregister and say why the scheduler stopped.
    pub fn shutdown_and_report(&mut self) -> Result<UserExitInfo> {
        let _ = self.struct_ops.take();
        uei_report!(&self.skel, uei)
    }
}

impl Drop for BpfScheduler<'_> {
    fn drop(&mut self) {
        let _ = self.struct_ops.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_llc_and_node_ids_become_dense_indexes() {
        // two sockets, LLC ids 4 and 9, nodes 0 and 3
        let l = layout([(0, 4, 0), (1, 4, 0), (2, 9, 3), (3, 9, 3)], true).unwrap();
        assert_eq!(l.cpu_llc, [(0, 0), (1, 0), (2, 1), (3, 1)]);
        assert_eq!(l.cpu_node, [(0, 0), (1, 0), (2, 1), (3, 1)]);
        assert_eq!(l.llc_nr_cpus, [2, 2]);
        assert!(l.smt);
    }

    #[test]
    fn refuses_what_the_bpf_arrays_cannot_hold() {
        assert!(layout([(MAX_CPUS, 0, 0)], false).is_err());
        assert!(layout((0..=MAX_LLCS).map(|i| (i, i, 0)), false).is_err());
        assert!(layout([], false).is_err());
    }
}
