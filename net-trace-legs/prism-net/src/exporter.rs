//! The Prometheus side: on each scrape, the BPF counters summed over CPUs,
//! labelled by identity, direction, and the namespace and workload name the feeder's names
//! file gives (re-read when it changes). At most `max_identities` get series
//! of their own, the first seen keeping theirs; the traffic of any more is
//! summed under identity "other", so no traffic pattern can grow the number
//! of series without bound.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prism_bus::names::Names;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use tracing::warn;

use crate::Direction;
use crate::bpf::{Counts, Maps};

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct NetLabels {
    identity: String,
    direction: &'static str,
    /// A pod identity's namespace; empty for anything else.
    namespace: String,
    /// A pod identity's name within its namespace; anything else's name.
    workload: String,
}

/// The feeder's names for identities, as (namespace, workload): a pod
/// identity's namespace apart, a well-known one's name, or "unnamed".
fn name_of(names: &Names, identity: u32) -> (String, String) {
    match names.workload(identity) {
        Some((ns, name)) => (ns.unwrap_or_default().to_string(), name.to_string()),
        None => (String::new(), "unnamed".to_string()),
    }
}

#[derive(Debug)]
pub struct Exporter {
    maps: Arc<Maps>,
    names: Mutex<Names>,
    exported: Mutex<HashSet<u32>>,
    max_identities: usize,
    pub bus_attached: AtomicBool,
}

impl Exporter {
    pub fn new(maps: Arc<Maps>, names_file: Option<PathBuf>, max_identities: usize) -> Exporter {
        Exporter {
            maps,
            names: Mutex::new(Names::new(names_file)),
            exported: Mutex::new(HashSet::new()),
            max_identities,
            bus_attached: AtomicBool::new(false),
        }
    }

    /// Sum `counts` into label sets, identities past the bound as "other".
    fn labelled(
        &self,
        counts: BTreeMap<(u32, Direction), Counts>,
        names: &Names,
    ) -> BTreeMap<NetLabels, Counts> {
        let mut exported = self.exported.lock().expect("not poisoned");
        let mut out: BTreeMap<NetLabels, Counts> = BTreeMap::new();
        for ((identity, direction), c) in counts {
            let own = exported.contains(&identity)
                || (exported.len() < self.max_identities && exported.insert(identity));
            let labels = if own {
                let (namespace, workload) = name_of(names, identity);
                NetLabels {
                    identity: identity.to_string(),
                    direction: direction.name(),
                    namespace,
                    workload,
                }
            } else {
                NetLabels {
                    identity: "other".into(),
                    direction: direction.name(),
                    namespace: String::new(),
                    workload: "other".into(),
                }
            };
            *out.entry(labels).or_default() += c;
        }
        out
    }
}

fn counters(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &BTreeMap<NetLabels, Counts>,
    value: fn(&Counts) -> u64,
) -> fmt::Result {
    let c = ConstCounter::new(0u64);
    let mut family = encoder.encode_descriptor(name, help, None, c.metric_type())?;
    for (labels, counts) in series {
        ConstCounter::new(value(counts)).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for Exporter {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let mut names = self.names.lock().expect("not poisoned");
        if let Err(e) = names.refresh() {
            warn!(error = %e, "the identity names file is refused; keeping the names read before");
        }
        let read = |what, r: anyhow::Result<BTreeMap<(u32, Direction), Counts>>| {
            r.unwrap_or_else(|e| {
                warn!(error = format!("{e:#}"), "reading the {what} map failed");
                BTreeMap::new()
            })
        };
        let counts = self.labelled(read("counter", self.maps.counts()), &names);
        let drops = self.labelled(read("drop", self.maps.drops()), &names);
        counters(
            &mut encoder,
            "prism_net_packets",
            "Packets, by identity and direction",
            &counts,
            |c| c.packets,
        )?;
        counters(
            &mut encoder,
            "prism_net_bytes",
            "Bytes (IP packets, headers included), by identity and direction",
            &counts,
            |c| c.bytes,
        )?;
        counters(
            &mut encoder,
            "prism_net_dropped_packets",
            "Packets the deny set dropped",
            &drops,
            |c| c.packets,
        )?;
        counters(
            &mut encoder,
            "prism_net_dropped_bytes",
            "Bytes the deny set dropped",
            &drops,
            |c| c.bytes,
        )?;
        let overflow = self.maps.overflow().unwrap_or_default();
        let c = ConstCounter::new(overflow.packets);
        c.encode(encoder.encode_descriptor(
            "prism_net_uncounted_packets",
            "Packets with no room left in the per-identity counters (counted here instead)",
            None,
            c.metric_type(),
        )?)?;
        let c = ConstCounter::new(self.maps.unfaceted().unwrap_or_default());
        c.encode(encoder.encode_descriptor(
            "prism_net_unfaceted_sockets",
            "Sockets of workloads whose bus entry lacks the net facet (counted as identity 0, never denied)",
            None,
            c.metric_type(),
        )?)?;
        let g = ConstGauge::new(i64::from(self.bus_attached.load(Ordering::Relaxed)));
        g.encode(encoder.encode_descriptor(
            "prism_net_bus_attached",
            "1 once the bus is attached (before, all traffic counts as identity 0)",
            None,
            g.metric_type(),
        )?)?;
        Ok(())
    }
}

#[derive(Clone)]
struct Shared {
    registry: Arc<Registry>,
}

pub fn router(exporter: Arc<Exporter>) -> Router {
    let mut registry = Registry::default();
    registry.register(
        "prism_net_build",
        "The running build: its version",
        Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
    );
    registry.register_collector(Box::new(exporter));
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(Shared {
            registry: Arc::new(registry),
        })
}

async fn metrics(State(s): State<Shared>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &s.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            "encoding the metrics failed\n".to_string(),
        ),
    }
}
