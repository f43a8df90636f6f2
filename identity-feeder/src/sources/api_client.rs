//! The HTTP client of the sources that speak Kubernetes' API (the API
//! server, the kubelet): kube's own client, retrying refused requests (429
//! with `Retry-After`, 503, 504: kube's server-aware policy, three times),
//! each retry counted as the source being unavailable and reported as its
//! being down; for the API server, each success as its being up again (a
//! watch resumed after an outage brings no event that would say so). kube retries
//! inside the client, so without this a throttled or restarting API server
//! would never show in the feeder's metrics.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use http::{Request, Response};
use kube::client::retry::RetryPolicy;
use kube::client::{Body, ClientBuilder};
use tower::BoxError;
use tower::buffer::BufferLayer;
use tower::retry::{Policy, RetryLayer};

use crate::failure::Failure;
use crate::metrics::Metrics;

/// A client for `config`, of the source named `source`, that retries
/// refused requests and says so in `metrics`; with `success_means_up`, a
/// successful answer reports the source up (a source that parses what it
/// gets, like the kubelet's poll, says that itself). Call within a tokio
/// runtime (the buffer's worker is spawned on it).
pub fn client(
    mut config: kube::Config,
    source: &'static str,
    success_means_up: bool,
    metrics: Arc<Metrics>,
) -> anyhow::Result<kube::Client> {
    config.default_retry = false;
    // Few, short retries that heed `Retry-After` (kube's `server_retry`
    // retries 15 times with a backoff up to 1000 s: an outage would hide
    // inside the client for minutes, the source never reported down, and
    // the first request after it would wait out a long backoff); past them
    // the error reaches the source, which reports it and backs off itself.
    let policy = RetryPolicy::new(Duration::from_millis(500), Duration::from_secs(5), 3, true)
        .context("the retry policy's backoff")?;
    let layer = RetryLayer::new(CountedRetry {
        policy,
        source,
        success_means_up,
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
    source: &'static str,
    success_means_up: bool,
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
            self.metrics.source_up(self.source, false);
        } else if self.success_means_up && result.as_ref().is_ok_and(|r| r.status().is_success()) {
            self.metrics.source_up(self.source, true);
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
