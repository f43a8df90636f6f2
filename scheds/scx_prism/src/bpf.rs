//! The connector to scx_prism's BPF side: load and attach it, publish the
//! policy loop's class order, read its counters, keep the bus slots on the
//! pinned bus, report how it exited. Owns nothing of the policy.

use std::mem::MaybeUninit;

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags, OpenObject};
use log::info;
use prism_bus::BusPaths;
use prism_bus::consumer::{SlotChange, SlotKeeper};
use prism_sched::cpu_max::{self, CpuMaxPoller};
use prism_sched::{Throttling, WaitHistogram};
use scx_utils::{
    UserExitInfo, compat, scx_ops_attach, scx_ops_load, scx_ops_open, uei_exited, uei_report,
};

use crate::bpf_skel::{BpfSkel, BpfSkelBuilder};
use crate::share_guard::{ClassOrder, NR_CLASSES};

/// What the loader needs to know, from the command line.
#[derive(Clone)]
pub struct BpfConfig {
    pub slice_ns: u64,
    pub slice_min_ns: u64,
    pub slice_lag_ns: u64,
    pub batch_slice_factor: u32,
    pub preempt_lower: bool,
    pub affine_burst_ns: u64,
    pub preempt_min_run_ns: u64,
    pub bus: BusPaths,
    pub partial: bool,
    pub exit_dump_len: u32,
    pub verbose: bool,
    /// libbpf's object-open options (scx_utils' `--relaxed-maps` & co.).
    pub libbpf: scx_utils::libbpf_clap_opts::LibbpfOpts,
}

/// Counters the BPF side keeps (cumulative since load).
#[derive(Clone)]
pub struct BpfCounters {
    pub nr_running: u64,
    pub nr_online_cpus: u64,
    pub direct_dispatches: u64,
    pub queued_dispatches: u64,
    pub direct_critical: u64,
    pub direct_preempts: u64,
    pub deferred_preempts: u64,
    pub affine: u64,
    pub rescued: u64,
    pub rcu_readers: u64,
    pub class_runtime_ns: [u64; NR_CLASSES],
    pub runnable_weight: i64,
    pub wait: [WaitHistogram; NR_CLASSES],
    pub bus_cached: u64,
    pub bus_own: u64,
    pub bus_ancestor: u64,
    pub bus_miss: u64,
    pub bus_no_sched_facet: u64,
    pub throttling: Throttling,
}

pub struct BpfScheduler<'obj> {
    skel: BpfSkel<'obj>,
    struct_ops: Option<libbpf_rs::Link>,
    /// where the kernel passes no cpu.max: user space follows cgroupfs
    cpu_max: Option<CpuMaxPoller>,
    bus: SlotKeeper,
}

impl<'obj> BpfScheduler<'obj> {
    pub fn init(open_object: &'obj mut MaybeUninit<OpenObject>, cfg: &BpfConfig) -> Result<Self> {
        let mut builder = BpfSkelBuilder::default();
        builder.obj_builder.debug(cfg.verbose);
        let mut skel = scx_ops_open!(
            builder,
            open_object,
            prism_ops,
            cfg.libbpf.clone().into_bpf_open_opts()
        )?;

        let ops = skel.struct_ops.prism_ops_mut();
        ops.flags = *compat::SCX_OPS_ENQ_LAST
            | *compat::SCX_OPS_ALLOW_QUEUED_WAKEUP
            | compat::read_enum("scx_ops_flags", "SCX_OPS_HAS_CGROUP_WEIGHT").unwrap_or(0);
        if cfg.partial {
            ops.flags |= *compat::SCX_OPS_SWITCH_PARTIAL;
        }
        ops.exit_dump_len = cfg.exit_dump_len;

        let rodata = skel.maps.rodata_data.as_mut().context("no rodata")?;
        rodata.usersched_pid = std::process::id();
        rodata.slice_ns = cfg.slice_ns;
        rodata.slice_min_ns = cfg.slice_min_ns;
        rodata.slice_lag_ns = cfg.slice_lag_ns;
        rodata.batch_slice_factor = cfg.batch_slice_factor;
        rodata.preempt_lower = cfg.preempt_lower;
        rodata.affine_burst_ns = cfg.affine_burst_ns;
        rodata.preempt_min_run_ns = cfg.preempt_min_run_ns;

        // The bus slots' template must match the pinned map when there is one;
        // libbpf reads the fd at load time, so the bus stays open until then.
        let template = prism_bus::Bus::open(&cfg.bus).ok();
        if let Some(bus) = &template {
            use std::os::fd::AsFd;
            skel.maps
                .prism_bus_identity
                .set_inner_map_fd(bus.identity_map().as_fd())
                .context("sizing the bus slot")?;
        }
        let load_started = std::time::Instant::now();
        let mut skel = scx_ops_load!(skel, prism_ops, uei)?;
        info!(
            "{}",
            prism_sched::verifier::summary(
                &prism_sched::verifier::costs(libbpf_rs::skel::Skel::object(&skel)),
                load_started.elapsed()
            )
        );
        drop(template);

        let mut bus = SlotKeeper::new(cfg.bus.clone());
        bus.poll(&skel.maps.prism_bus_identity, &skel.maps.prism_bus_meta)?;
        let struct_ops = Some(scx_ops_attach!(skel, prism_ops)?);
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

    /// Keep the bus slots on the pinned bus (attach late, follow re-creation).
    pub fn poll_bus(&mut self) -> Result<SlotChange> {
        Ok(self.bus.poll(
            &self.skel.maps.prism_bus_identity,
            &self.skel.maps.prism_bus_meta,
        )?)
    }

    pub fn bus_attached(&self) -> bool {
        self.bus.attached().is_some()
    }

    /// Publish the share guard's class order (BPF reads it at every dispatch).
    pub fn set_order(&mut self, order: ClassOrder) {
        let bss = self.skel.maps.bss_data.as_mut().expect("bss");
        bss.lower_classes_starving = order.lower_classes_starving;
        bss.batch_owed = order.batch_owed;
    }

    /// CPU time each class used since load (what the share guard reads).
    pub fn class_runtime_ns(&self) -> [u64; NR_CLASSES] {
        self.skel
            .maps
            .bss_data
            .as_ref()
            .expect("bss")
            .class_runtime_ns
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
            nr_running: b.nr_running,
            nr_online_cpus: b.nr_online_cpus,
            direct_dispatches: b.nr_direct_dispatches,
            queued_dispatches: b.nr_queued_dispatches,
            direct_critical: b.nr_direct_critical,
            direct_preempts: b.nr_direct_preempt,
            deferred_preempts: b.nr_deferred_preempt,
            affine: b.nr_affine,
            rescued: b.nr_rescued,
            rcu_readers: b.nr_rcu_readers,
            class_runtime_ns: b.class_runtime_ns,
            runnable_weight: b.prism_cg_total,
            wait: std::array::from_fn(|c| WaitHistogram::from_buckets(&b.wait_hist[c])),
            bus_cached: b.nr_bus_cached,
            bus_own: b.nr_bus_own,
            bus_ancestor: b.nr_bus_ancestor,
            bus_miss: b.nr_bus_miss,
            bus_no_sched_facet: b.nr_bus_no_sched_facet,
            throttling: self.throttling(),
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
