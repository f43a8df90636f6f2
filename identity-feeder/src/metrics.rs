//! The feeder's Prometheus metrics (prometheus-client), served on /metrics.
//! Every label comes from a closed set (source names, event kinds, failure
//! reasons), so no input can grow the number of series.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::allocator::Acquired;
use crate::failure::Failure;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    source: &'static str,
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// What a source saw happen to a workload.
#[derive(Debug, Clone, Copy)]
pub enum SourceEventKind {
    Apply,
    Delete,
    /// A full listing (initial list, relist, poll).
    Replace,
}

pub struct Metrics {
    registry: Registry,
    processed: Family<EventLabels, Counter>,
    identities_live: Gauge,
    allocations: Family<KindLabels, Counter>,
    failures: Family<ReasonLabels, Counter>,
    propagation: Histogram,
    bus_entries: Gauge,
    bus_generation: Gauge<u64, AtomicU64>,
    cgroups: Gauge,
    leaving: Gauge,
    source_up: Family<SourceLabels, Gauge>,
    etcd_collections: Family<OutcomeLabels, Counter>,
    etcd_collected: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::default(),
            processed: Family::default(),
            identities_live: Gauge::default(),
            allocations: Family::default(),
            failures: Family::default(),
            // 10 us .. ~5 s
            propagation: Histogram::new(exponential_buckets(1e-5, 2.0, 20)),
            bus_entries: Gauge::default(),
            bus_generation: Gauge::default(),
            cgroups: Gauge::default(),
            leaving: Gauge::default(),
            source_up: Family::default(),
            etcd_collections: Family::default(),
            etcd_collected: Counter::default(),
        };
        for f in Failure::ALL {
            m.failures
                .get_or_create(&ReasonLabels { reason: f.reason() })
                .inc_by(0);
        }
        let r = &mut m.registry;
        r.register(
            "prism_feeder_build",
            "The running build: its version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        r.register(
            "prism_feeder_workloads_processed",
            "Pods (or plain-host cgroup workloads) processed, by source and event",
            m.processed.clone(),
        );
        r.register(
            "prism_feeder_identities_live",
            "Canonical strings that hold an identity now",
            m.identities_live.clone(),
        );
        r.register(
            "prism_feeder_allocations",
            "Identities given to a canonical string: minted new, adopted from the bus or the cluster, or kept for it since its last workload left (--id-grace)",
            m.allocations.clone(),
        );
        r.register(
            "prism_feeder_failures",
            "Inputs refused and operations failed, by reason (each is also logged)",
            m.failures.clone(),
        );
        r.register(
            "prism_feeder_propagation_seconds",
            "From a source event reaching the feeder to its bus batch being committed",
            m.propagation.clone(),
        );
        r.register(
            "prism_feeder_bus_entries",
            "Entries in the bus map (cgroups with an identity)",
            m.bus_entries.clone(),
        );
        r.register(
            "prism_feeder_bus_generation",
            "Generation of the last committed bus batch",
            m.bus_generation.clone(),
        );
        r.register(
            "prism_feeder_cgroups",
            "Cgroups in the watched tree",
            m.cgroups.clone(),
        );
        r.register(
            "prism_feeder_workloads_leaving",
            "Workloads no source names any more whose cgroups still exist: kept for --delete-grace",
            m.leaving.clone(),
        );
        r.register(
            "prism_feeder_source_up",
            "1 while a source reaches its API (or tree) and has listed it, else 0",
            m.source_up.clone(),
        );
        r.register(
            "prism_feeder_etcd_collections",
            "Passes of the collector of ids no node uses (--allocator etcd), by outcome (ok, failed)",
            m.etcd_collections.clone(),
        );
        r.register(
            "prism_feeder_etcd_ids_collected",
            "Ids no node used any more, deleted from etcd by this node's collector",
            m.etcd_collected.clone(),
        );
        m
    }

    pub fn processed(&self, source: &'static str, kind: SourceEventKind) {
        let event = match kind {
            SourceEventKind::Apply => "apply",
            SourceEventKind::Delete => "delete",
            SourceEventKind::Replace => "replace",
        };
        self.processed
            .get_or_create(&EventLabels { source, event })
            .inc();
    }

    pub fn failure(&self, f: Failure) {
        self.failures
            .get_or_create(&ReasonLabels { reason: f.reason() })
            .inc();
    }

    pub fn failures(&self, f: Failure) -> u64 {
        self.failures
            .get_or_create(&ReasonLabels { reason: f.reason() })
            .get()
    }

    pub fn allocated(&self, how: Acquired) {
        let kind = match how {
            Acquired::Shared => return,
            Acquired::Minted => "minted",
            Acquired::Adopted => "adopted",
            Acquired::Kept => "kept",
        };
        self.allocations.get_or_create(&KindLabels { kind }).inc();
    }

    /// One pass of the etcd collector: how many ids it collected, or
    /// `None` if it failed.
    pub fn etcd_collection(&self, collected: Option<usize>) {
        let outcome = if collected.is_some() { "ok" } else { "failed" };
        self.etcd_collections
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.etcd_collected.inc_by(collected.unwrap_or(0) as u64);
    }

    pub fn propagated(&self, latency: Duration) {
        self.propagation.observe(latency.as_secs_f64());
    }

    pub fn set_live(&self, identities: usize, entries: u64, generation: u64, cgroups: usize) {
        self.identities_live.set(identities as i64);
        self.bus_entries.set(entries as i64);
        self.bus_generation.set(generation);
        self.cgroups.set(cgroups as i64);
    }

    pub fn set_leaving(&self, workloads: usize) {
        self.leaving.set(workloads as i64);
    }

    pub fn source_up(&self, source: &'static str, up: bool) {
        self.source_up
            .get_or_create(&SourceLabels { source })
            .set(i64::from(up));
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_and_every_failure_reason_are_exported_from_the_start() {
        let text = Metrics::new().encode();
        let build = format!(
            "prism_feeder_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&build), "{text}");
        for f in Failure::ALL {
            let series = format!("prism_feeder_failures_total{{reason=\"{}\"}} 0", f.reason());
            assert!(text.contains(&series), "{series} missing");
        }
    }
}
