//! The feeder's one HTTP server (axum on hyper): `/metrics` (Prometheus
//! text), `/healthz` (the reconciler is alive), `/readyz` (every source
//! synced and the bus written).
//!
//! Served by a node agent that must not fall over, to whoever can reach the
//! port: at most [`MAX_CONNECTIONS`] at once (more wait in the kernel's
//! backlog, holding none of the feeder's descriptors: 80 idle connections
//! once exhausted them), a request's header must arrive within
//! [`HEADER_TIMEOUT`], and a connection, kept alive or not, is closed after
//! [`CONNECTION_LIFETIME`], so idle ones cannot hold every slot.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::debug;

/// Connections served at once (a scraper and two probes need three; a
/// quarter of the usual 1024 descriptors).
pub const MAX_CONNECTIONS: usize = 256;
/// The longest a request's header may take to arrive (a scraper sends it at
/// once; a connection that sends nothing frees its slot this soon).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest a connection stays open.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

use crate::health::Health;
use crate::metrics::Metrics;

#[derive(Clone)]
struct Shared {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

pub fn router(metrics: Arc<Metrics>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Shared { metrics, health })
}

/// Serve `router` on `listener` until the process ends.
pub async fn serve(listener: TcpListener, router: Router) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = slots.clone().acquire_owned().await.expect("never closed");
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // out of descriptors, or a connection reset before it was taken:
            // wait a little instead of spinning
            Err(e) => {
                debug!(error = %e, "accepting an HTTP connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
            drop(slot);
        });
    }
}

async fn metrics_text(State(s): State<Shared>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

async fn healthz(State(s): State<Shared>) -> impl IntoResponse {
    if s.health.is_alive() {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the reconciler is not running\n",
        )
    }
}

async fn readyz(State(s): State<Shared>) -> impl IntoResponse {
    if s.health.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: waiting for every source to list its workloads and the bus to be written\n",
        )
    }
}
