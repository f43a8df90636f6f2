//! prism-feeder: the one writer of Prism's identity bus.
//!
//! The stages, in the order data flows through them:
//! - [`sources`] report workloads: pods from the API server or the kubelet,
//!   or cgroups named by rules on a plain host; the cgroup tree as inotify
//!   sees it ([`sources::cgroup_tree`]);
//! - [`pod`] turns an untrusted pod object into a workload (parsing, the
//!   kubelet's cgroup names, which pod holds which key);
//! - [`workload`]: what a workload is, its canonical string (what its
//!   identity is a function of) and the class, weight and facets it declares
//!   where the operator allows them;
//! - [`allocator`] gives each canonical string its identity (local, or
//!   agreed cluster-wide through etcd);
//! - [`reconcile`] plans the entry of every cgroup of every workload (pure),
//!   writes them to the bus in batches, collects what is gone, and writes
//!   the names file.
//!
//! Around them: [`http`] serves metrics, liveness and readiness; every
//! failure is one of [`failure`]'s closed set.

// The stages, in the order data flows through them.
pub mod allocator;
pub mod pod;
pub mod reconcile;
pub mod sources;
pub mod workload;

// The process around them.
pub mod failure;
pub mod health;
pub mod http;
pub mod logging;
pub mod memory;
pub mod metrics;
