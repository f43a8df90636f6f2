//! The reconciler: the one owner of the bus. [`plan`] decides (pure: inputs
//! in, bus writes out); this loop does the I/O around it: it takes the
//! sources' and the tree's inputs in batches (everything queued when the
//! thread wakes), applies the plan's writes to the bus and commits each
//! batch with one generation bump, and writes the names file
//! ([`names`]), the metrics and the readiness.

pub mod inbox;
pub mod names;
pub mod plan;
#[cfg(test)]
mod plan_properties;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use prism_bus::{BusError, BusWriter};
use tracing::{debug, error, info, warn};

use crate::allocator::Allocator;
use crate::failure::Failure;
use crate::health::Health;
use crate::metrics::Metrics;
use inbox::Input;
use names::NamesWriter;
pub use plan::{Config, Plan, Write};

/// Most inputs applied before a flush, so a flood still commits regularly.
const MAX_BATCH: usize = 8192;
/// A batch this big is a burst: freed memory goes back to the kernel after.
const BURST: usize = 1024;

pub struct Reconciler {
    bus: BusWriter,
    plan: Plan,
    names: NamesWriter,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// When each source event of the pending batch arrived.
    arrivals: Vec<Instant>,
}

impl Reconciler {
    /// Take over `bus`: what it holds is what a previous run wrote (a
    /// malformed entry is deleted).
    pub fn new(
        bus: BusWriter,
        allocator: Box<dyn Allocator>,
        config: Config,
        names_file: Option<std::path::PathBuf>,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Reconciler {
        let mut on_bus = HashMap::new();
        let mut malformed = vec![];
        for (cgroup_id, entry) in bus.bus().iter() {
            match entry {
                Ok(e) => {
                    on_bus.insert(cgroup_id, e);
                }
                Err(e) => {
                    warn!(cgroup_id, error = %e, "malformed bus entry: deleting it");
                    malformed.push(cgroup_id);
                }
            }
        }
        info!(entries = on_bus.len(), "bus opened");
        let plan = Plan::new(
            on_bus,
            malformed,
            allocator,
            config,
            metrics.clone(),
            Instant::now(),
        );
        Reconciler {
            bus,
            plan,
            names: NamesWriter::new(names_file),
            metrics,
            health,
            arrivals: vec![],
        }
    }

    /// Run until [`Input::Shutdown`] or every sender is gone.
    pub fn run(mut self, inputs: Receiver<Input>) {
        loop {
            let mut stop = false;
            let mut work = 0;
            match inputs.recv_timeout(Duration::from_secs(1)) {
                Ok(first) => {
                    for input in std::iter::once(first).chain(inputs.try_iter().take(MAX_BATCH)) {
                        if matches!(input, Input::Shutdown) {
                            stop = true;
                            break;
                        }
                        if let Input::Source { at, .. } = &input {
                            self.arrivals.push(*at);
                        }
                        work += input.size();
                        self.plan.input(input, Instant::now());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => stop = true,
            }
            self.plan.tick(Instant::now());
            self.flush();
            if work >= BURST {
                crate::memory::release_free();
            }
            self.health.beat();
            if stop {
                info!(
                    entries = self.plan.written().len(),
                    "stopping; the bus stays pinned for its consumers"
                );
                return;
            }
        }
    }

    /// Apply the plan's writes, then commit once.
    fn flush(&mut self) {
        let mut wrote = 0usize;
        for write in self.plan.writes(realtime_ns()) {
            let done = match &write {
                Write::Put { cgroup, entry, .. } => self.bus.put(*cgroup, entry),
                Write::Delete { cgroup } => self.bus.delete(*cgroup).map(drop),
            };
            match done {
                Ok(()) => wrote += 1,
                Err(e) => {
                    self.write_failed(&e);
                    self.plan.failed(write);
                }
            }
        }
        if wrote > 0 {
            match self.bus.commit() {
                Ok(generation) => debug!(generation, writes = wrote, "bus batch committed"),
                Err(e) => {
                    error!(error = %e, "committing the bus batch failed");
                    self.metrics.failure(Failure::BusWrite);
                }
            }
        }
        let done = Instant::now();
        for at in self.arrivals.drain(..) {
            self.metrics.propagated(done - at);
        }
        let counts = self.plan.counts();
        self.metrics.set_live(
            counts.identities,
            counts.entries as u64,
            self.bus.generation(),
            counts.cgroups,
        );
        self.metrics.set_leaving(counts.leaving);
        if self.plan.synced() {
            let plan = &self.plan;
            self.names.update(done, || plan.names());
        }
        if self.plan.ready() && !self.health.is_ready() {
            info!(
                entries = counts.entries,
                generation = self.bus.generation(),
                "bus written: ready"
            );
            self.health.set_ready();
        }
    }

    fn write_failed(&self, e: &BusError) {
        let f = match e {
            BusError::Full { .. } => Failure::BusFull,
            _ => Failure::BusWrite,
        };
        // One line per failed write would flood the log when the map is full.
        if self.metrics.failures(f).is_multiple_of(1000) {
            error!(error = %e, reason = %f, "bus write failed; the rest is served, this is retried");
        }
        self.metrics.failure(f);
    }
}

fn realtime_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
