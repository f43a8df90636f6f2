//! The HTTP client of the sources that speak Kubernetes' API (the API
//! server, the kubelet): kube's own client, whose retry of refused requests
//! (429 with `Retry-After`, 503, 504: kube's server-aware policy) is kept,
//! and each retry is counted as the source being unavailable. kube retries
//! inside the client, so without this a throttled or restarting API server
//! would never show in the feeder's metrics.

use std::sync::Arc;

use anyhow::Context;
use http::{Request, Response};
use kube::client::retry::RetryPolicy;
use kube::client::{Body, ClientBuilder};
use tower::BoxError;
use tower::buffer::BufferLayer;
use tower::retry::{Policy, RetryLayer};

use crate::failure::Failure;
use crate::metrics::Metrics;

/// A client for `config` that retries as kube's default client does and
/// counts every retry in `metrics`. Call within a tokio runtime (the
/// buffer's worker is spawned on it).
pub fn client(mut config: kube::Config, metrics: Arc<Metrics>) -> anyhow::Result<kube::Client> {
    config.default_retry = false;
    let layer = RetryLayer::new(CountedRetry {
        policy: RetryPolicy::server_retry(),
        metrics,
    });
    // a retry sends the request again through a clone of the stack below
    // it; kube's stack is one boxed service, so a buffer makes it cloneable
    Ok(ClientBuilder::try_from(config)
        .context("setting up the Kubernetes client")?
        .with_layer(&BufferLayer::new(1024))
        .with_layer(&layer)
        .build())
}

/// kube's retry policy, counting each retry it grants.
#[derive(Clone)]
struct CountedRetry {
    policy: RetryPolicy,
    metrics: Arc<Metrics>,
}

impl<Res> Policy<Request<Body>, Response<Res>, BoxError> for CountedRetry {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        req: &mut Request<Body>,
        result: &mut Result<Response<Res>, BoxError>,
    ) -> Option<Self::Future> {
        let again = self.policy.retry(req, result);
        if again.is_some() {
            self.metrics.failure(Failure::SourceUnavailable);
        }
        again
    }

    fn clone_request(&mut self, req: &Request<Body>) -> Option<Request<Body>> {
        <RetryPolicy as Policy<Request<Body>, Response<Res>, BoxError>>::clone_request(
            &mut self.policy,
            req,
        )
    }
}
