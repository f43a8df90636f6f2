//! A stand-in for the Kubernetes API server's pod endpoints, on loopback:
//! `GET /api/v1/pods` answers a recorded pod list, and with `watch=true`
//! streams the watch events the test sends, one JSON object per line, as
//! the real server does. No API server can be installed here; the payloads
//! are in the shape the real one sends (tests/fixtures).

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::broadcast;

#[derive(Clone)]
struct Shared {
    list: Arc<Mutex<Value>>,
    queries: Arc<Mutex<Vec<String>>>,
    events: broadcast::Sender<String>,
}

pub struct FakeApi {
    pub port: u16,
    shared: Shared,
    kubeconfig: PathBuf,
    _rt: tokio::runtime::Runtime,
}

impl FakeApi {
    pub fn start(list: Value) -> FakeApi {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let port = listener.local_addr().unwrap().port();
        let shared = Shared {
            list: Arc::new(Mutex::new(list)),
            queries: Arc::default(),
            events: broadcast::channel(4096).0,
        };
        let router = Router::new()
            .route("/api/v1/pods", get(pods))
            .with_state(shared.clone());
        rt.spawn(async move { axum::serve(listener, router).await });
        let kubeconfig = std::env::temp_dir().join(format!(
            "prism-test-kubeconfig-{}-{port}.yaml",
            std::process::id()
        ));
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
                 clusters: [{{name: fake, cluster: {{server: \"http://127.0.0.1:{port}\"}}}}]\n\
                 users: [{{name: fake, user: {{token: test-token}}}}]\n\
                 contexts: [{{name: fake, context: {{cluster: fake, user: fake}}}}]\n"
            ),
        )
        .expect("kubeconfig");
        FakeApi {
            port,
            shared,
            kubeconfig,
            _rt: rt,
        }
    }

    pub fn kubeconfig(&self) -> &str {
        self.kubeconfig.to_str().unwrap()
    }

    /// Query strings of every request so far.
    pub fn queries(&self) -> Vec<String> {
        self.shared.queries.lock().unwrap().clone()
    }

    /// Wait until a client is watching (events sent before are lost, as
    /// they would be for a real watch not yet started).
    pub fn wait_watching(&self) {
        super::wait_for("a pod watch", Duration::from_secs(20), || {
            (self.shared.events.receiver_count() > 0).then_some(())
        });
    }

    /// A watch event: ADDED, MODIFIED or DELETED of `pod`.
    pub fn event(&self, kind: &str, pod: &Value) {
        self.raw_event(&json!({"type": kind, "object": pod}).to_string());
    }

    /// A line of the watch stream, as is.
    pub fn raw_event(&self, line: &str) {
        self.shared
            .events
            .send(line.to_string())
            .expect("a watcher is connected");
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

async fn pods(State(s): State<Shared>, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    s.queries.lock().unwrap().push(query.clone());
    if !query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1")
    {
        let list = s.list.lock().unwrap().clone();
        return (
            [(header::CONTENT_TYPE, "application/json")],
            list.to_string(),
        )
            .into_response();
    }
    let rx = s.events.subscribe();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(line) => return Some((Ok::<_, Infallible>(Bytes::from(line + "\n")), rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}
