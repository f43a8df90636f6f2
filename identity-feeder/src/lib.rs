//! prism-feeder: the one writer of Prism's identity bus.
//!
//! Sources ([`sources`]) report workloads: pods from the API server or the
//! kubelet, or cgroups named by rules on a plain host. Each workload gets an
//! identity from its canonical string ([`canonical`], [`allocator`]) and a
//! class and weight from its policy labels where the operator allows them
//! ([`policy`]). [`reconcile`] plans that entry for every cgroup of the
//! workload ([`cgroup_tree`], [`pod_cgroup`]), writes it in batches, and
//! collects what is gone. [`http`] serves metrics, liveness and readiness.

pub mod allocator;
pub mod canonical;
pub mod cgroup_tree;
pub mod claims;
pub mod failure;
pub mod health;
pub mod http;
pub mod labels;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod pod;
pub mod pod_cgroup;
pub mod pod_json;
pub mod policy;
pub mod reconcile;
pub mod sources;
pub mod workload;
