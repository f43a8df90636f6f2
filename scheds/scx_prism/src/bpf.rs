//! The connector to scx_prism's BPF side: load and attach it, move records
//! through the two ring buffers, read its counters, report how it exited.
//!
//! Owns nothing of the policy. Everything that maps memory (the skeleton,
//! the ring buffers) is set up in `init`, before the scx_rustland_core
//! allocator locks memory and forbids mmap.

use std::cell::Cell;
use std::mem::MaybeUninit;
use std::rc::Rc;

use anyhow::{Context, Result, bail};
use libbpf_rs::{OpenObject, RingBuffer, RingBufferBuilder, UserRingBuffer};
use prism_bus::BusPaths;
use prism_bus::consumer::{SlotChange, SlotKeeper};
use scx_rustland_core::ALLOCATOR;
use scx_utils::{
    UserExitInfo, compat, scx_ops_attach, scx_ops_load, scx_ops_open, uei_exited, uei_report,
};

use crate::bpf_intf::{dispatched_task, queued_task};
use crate::bpf_skel::{BpfSkel, BpfSkelBuilder};
use crate::policy::NR_CLASSES;

/// What the loader needs to know, from the command line.
pub struct BpfConfig {
    pub slice_ns: u64,
    pub partial: bool,
    pub exit_dump_len: u32,
    pub preempt_lower: bool,
    pub affine_burst_ns: u64,
    pub preempt_min_run_ns: u64,
    pub verbose: bool,
}

/// Counters the BPF side keeps (cumulative since load).
#[derive(Debug, Default, Clone, Copy)]
pub struct BpfCounters {
    pub nr_running: u64,
    pub nr_online_cpus: u64,
    pub nr_user_dispatches: u64,
    pub nr_kernel_dispatches: u64,
    pub nr_direct_critical: u64,
    pub nr_cancel_dispatches: u64,
    pub nr_bounce_dispatches: u64,
    pub nr_congested: u64,
    pub nr_direct_preempt: u64,
    pub nr_deferred_preempt: u64,
    pub nr_resumed: u64,
    pub nr_affine: u64,
    pub nr_bus_cached: u64,
    pub nr_bus_own: u64,
    pub nr_bus_ancestor: u64,
    pub nr_bus_miss: u64,
    pub class_runtime_ns: [u64; NR_CLASSES],
}

pub struct BpfScheduler<'obj> {
    skel: BpfSkel<'obj>,
    queued: RingBuffer<'obj>,
    dispatched: UserRingBuffer,
    received: Rc<Cell<Option<queued_task>>>,
    struct_ops: Option<libbpf_rs::Link>,
    bus: SlotKeeper,
}

// SAFETY: both are plain C structs of integers (bindgen'd from intf.h).
unsafe impl plain::Plain for dispatched_task {}

impl<'obj> BpfScheduler<'obj> {
    pub fn init(
        open_object: &'obj mut MaybeUninit<OpenObject>,
        cfg: &BpfConfig,
        bus_paths: BusPaths,
    ) -> Result<Self> {
        let mut builder = BpfSkelBuilder::default();
        builder.obj_builder.debug(cfg.verbose);
        let mut skel = scx_ops_open!(
            builder,
            open_object,
            prism_ops,
            None::<libbpf_rs::libbpf_sys::bpf_object_open_opts>
        )?;

        let ops = skel.struct_ops.prism_ops_mut();
        ops.flags = *compat::SCX_OPS_ENQ_LAST | *compat::SCX_OPS_ALLOW_QUEUED_WAKEUP;
        if cfg.partial {
            ops.flags |= *compat::SCX_OPS_SWITCH_PARTIAL;
        }
        ops.exit_dump_len = cfg.exit_dump_len;

        let rodata = skel.maps.rodata_data.as_mut().context("no rodata")?;
        rodata.usersched_pid = std::process::id();
        rodata.khugepaged_pid = khugepaged_pid();
        rodata.slice_ns = cfg.slice_ns;
        rodata.preempt_lower = cfg.preempt_lower;
        rodata.affine_burst_ns = cfg.affine_burst_ns;
        rodata.preempt_min_run_ns = cfg.preempt_min_run_ns;

        // The bus slots' template must match the pinned map when there is one;
        // libbpf reads the fd at load time, so the bus stays open until then.
        let template = prism_bus::Bus::open(&bus_paths).ok();
        if let Some(bus) = &template {
            use std::os::fd::AsFd;
            skel.maps
                .prism_bus_identity
                .set_inner_map_fd(bus.identity_map().as_fd())
                .context("sizing the bus slot")?;
        }

        let mut skel = scx_ops_load!(skel, prism_ops, uei)?;
        drop(template);

        let received = Rc::new(Cell::new(None));
        let sink = received.clone();
        let mut rbb = RingBufferBuilder::new();
        rbb.add(&skel.maps.queued, move |data: &[u8]| {
            if data.len() >= size_of::<queued_task>() {
                // SAFETY: the BPF side writes exactly one queued_task per record.
                sink.set(Some(unsafe {
                    std::ptr::read_unaligned(data.as_ptr().cast::<queued_task>())
                }));
            }
            0
        })
        .context("queued ring buffer")?;
        let queued = rbb.build().context("queued ring buffer")?;
        let dispatched =
            UserRingBuffer::new(&skel.maps.dispatched).context("dispatched ring buffer")?;

        let mut bus = SlotKeeper::new(bus_paths);
        bus.poll(&skel.maps.prism_bus_identity, &skel.maps.prism_bus_meta)?;

        // No page faults on the hot path, no new mappings from here on. Done
        // before attaching: once attached, every task waits for this loop,
        // and locking the heap takes seconds under emulation.
        ALLOCATOR.lock_memory();
        ALLOCATOR
            .disable_mmap()
            .map_err(|e| anyhow::anyhow!("disabling mmap: {e}"))?;

        let struct_ops = Some(scx_ops_attach!(skel, prism_ops)?);
        Ok(BpfScheduler {
            skel,
            queued,
            dispatched,
            received,
            struct_ops,
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

    /// The next task that needs a decision, if any.
    pub fn dequeue(&mut self) -> Result<Option<queued_task>> {
        let n = self.queued.consume_raw_n(1);
        if n < 0 {
            bail!("reading the queued ring buffer: {n}");
        }
        let bss = self.skel.maps.bss_data.as_mut().expect("bss");
        match self.received.take() {
            Some(t) => {
                bss.nr_queued = bss.nr_queued.saturating_sub(1);
                Ok(Some(t))
            }
            None => {
                bss.nr_queued = 0;
                Ok(None)
            }
        }
    }

    /// Send one decision. Fails when the user ring buffer is full.
    pub fn dispatch(&mut self, d: &dispatched_task) -> Result<(), libbpf_rs::Error> {
        let mut sample = self.dispatched.reserve(size_of::<dispatched_task>())?;
        let slot = plain::from_mut_bytes::<dispatched_task>(sample.as_mut())
            .expect("sized for a dispatched_task");
        *slot = *d;
        self.dispatched.submit(sample)
    }

    /// Tell BPF whether normal+batch are below their minimum share (critical
    /// wakeups then stop taking their CPUs).
    pub fn set_lower_classes_starving(&mut self, starving: bool) {
        self.skel
            .maps
            .bss_data
            .as_mut()
            .expect("bss")
            .lower_classes_starving = starving;
    }

    /// Tell BPF how many tasks user space still holds, and let others run.
    pub fn notify_complete(&mut self, nr_pending: u64) {
        self.skel.maps.bss_data.as_mut().expect("bss").nr_scheduled = nr_pending;
        std::thread::yield_now();
    }

    pub fn counters(&self) -> BpfCounters {
        let b = self.skel.maps.bss_data.as_ref().expect("bss");
        BpfCounters {
            nr_running: b.nr_running,
            nr_online_cpus: b.nr_online_cpus,
            nr_user_dispatches: b.nr_user_dispatches,
            nr_kernel_dispatches: b.nr_kernel_dispatches,
            nr_direct_critical: b.nr_direct_critical,
            nr_cancel_dispatches: b.nr_cancel_dispatches,
            nr_bounce_dispatches: b.nr_bounce_dispatches,
            nr_congested: b.nr_congested,
            nr_direct_preempt: b.nr_direct_preempt,
            nr_deferred_preempt: b.nr_deferred_preempt,
            nr_resumed: b.nr_resumed,
            nr_affine: b.nr_affine,
            nr_bus_cached: b.nr_bus_cached,
            nr_bus_own: b.nr_bus_own,
            nr_bus_ancestor: b.nr_bus_ancestor,
            nr_bus_miss: b.nr_bus_miss,
            class_runtime_ns: b.class_runtime_ns,
        }
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
        ALLOCATOR.unlock_memory();
    }
}

/// khugepaged must not wait for user space (its page faults would).
fn khugepaged_pid() -> u32 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "khugepaged")
        })
        .unwrap_or(0)
}
