//! A stand-in for the Kubernetes API server's pod endpoints, on loopback:
//! `GET /api/v1/pods` answers a pod list (paged), and with `watch=true`
//! streams the watch events the test sends, one JSON object per line, as
//! the real server does. No API server can be installed here; the payloads
//! are in the shape the real one sends (tests/fixtures).
//!
//! It fails as a real one does, on demand: a list answered with a `Status`
//! (429 with `Retry-After` from its priority-and-fairness limits, 503 while
//! it restarts), a `continue` token answered with 410 `Expired` (the token
//! outlived etcd's compaction, about 5 minutes), a list cut off mid-body (a
//! connection reset behind a proxy), an outage of every request for a
//! while, and, sent as raw events, the watch's `ERROR` 410 and `BOOKMARK`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// Not JSON: tells the watch streams to end.
const CLOSE: &str = "\u{0}close";

#[derive(Clone)]
struct Shared {
    /// The list's resourceVersion and its items, each already JSON.
    list: Arc<Mutex<(Value, Vec<String>)>>,
    queries: Arc<Mutex<Vec<String>>>,
    events: broadcast::Sender<String>,
    /// Answers for the next list requests, in order, instead of a page.
    faults: Arc<Mutex<VecDeque<ListFault>>>,
    /// Every request (list or watch) is refused with 503 until then.
    down_until: Arc<Mutex<Option<Instant>>>,
    /// The next request carrying a `continue` token gets 410 Expired.
    expire_continue: Arc<Mutex<bool>>,
}

/// How the stand-in refuses one list request, as the real server would.
#[derive(Clone, Copy, Debug)]
pub enum ListFault {
    /// 429 TooManyRequests with `Retry-After: seconds` (API priority and
    /// fairness rejecting the request).
    TooManyRequests { retry_after_s: u32 },
    /// 503 ServiceUnavailable (an apiserver restarting behind its balancer).
    Unavailable,
    /// 200, but the body ends mid-object (the connection cut off).
    Truncated,
}

impl ListFault {
    fn answer(self) -> Response {
        match self {
            ListFault::TooManyRequests { retry_after_s } => status_response(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "too many requests, please try again later",
                Some(retry_after_s),
            ),
            ListFault::Unavailable => unavailable(),
            ListFault::Truncated => (
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"7000"},"items":[{"metadata":{"name":"#,
            )
                .into_response(),
        }
    }
}

fn unavailable() -> Response {
    status_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        "the server is currently unable to handle the request",
        None,
    )
}

/// A pod list's resourceVersion and its items, each as JSON.
fn list_parts(list: &Value) -> (Value, Vec<String>) {
    let items = list["items"]
        .as_array()
        .map(|items| items.iter().map(Value::to_string).collect())
        .unwrap_or_default();
    (list["metadata"]["resourceVersion"].clone(), items)
}

/// A `metav1.Status` failure body, with the code in the HTTP status too.
fn status_response(
    code: StatusCode,
    reason: &str,
    message: &str,
    retry_after_s: Option<u32>,
) -> Response {
    let mut details = json!({});
    if let Some(s) = retry_after_s {
        details["retryAfterSeconds"] = json!(s);
    }
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason,
        "details": details, "code": code.as_u16(),
    })
    .to_string();
    let mut r = (code, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Some(s) = retry_after_s {
        r.headers_mut()
            .insert(header::RETRY_AFTER, s.to_string().parse().expect("header"));
    }
    r
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
            list: Arc::new(Mutex::new(list_parts(&list))),
            queries: Arc::default(),
            events: broadcast::channel(4096).0,
            faults: Arc::default(),
            down_until: Arc::default(),
            expire_continue: Arc::default(),
        };
        let router = Router::new()
            .route("/api/v1/pods", get(pods))
            .with_state(shared.clone());
        // As the real server (Go) does: no Nagle delay on the watch stream.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
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

    /// The next list requests are refused, one per fault, in order.
    pub fn fail_lists(&self, faults: &[ListFault]) {
        self.shared.faults.lock().unwrap().extend(faults);
    }

    /// Refuse every request for `how_long`, and end the watches now: the
    /// server is down.
    pub fn outage(&self, how_long: Duration) {
        *self.shared.down_until.lock().unwrap() = Some(Instant::now() + how_long);
        self.raw_event(CLOSE);
    }

    /// Refusals still to be answered.
    pub fn pending_faults(&self) -> usize {
        self.shared.faults.lock().unwrap().len()
    }

    /// The next page request with a `continue` token gets 410 Expired.
    pub fn expire_next_continue(&self) {
        *self.shared.expire_continue.lock().unwrap() = true;
    }

    /// Replace the list the server answers (a relist sees it).
    pub fn set_list(&self, list: &Value) {
        *self.shared.list.lock().unwrap() = list_parts(list);
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

    /// End every watch stream, as a server restart or a load balancer
    /// would; the client must watch again.
    pub fn disconnect(&self) {
        let watches = self.watches();
        self.raw_event(CLOSE);
        super::wait_for("the client to watch again", Duration::from_secs(30), || {
            (self.watches() > watches).then_some(())
        });
    }

    /// Watch requests so far.
    pub fn watches(&self) -> usize {
        self.queries()
            .iter()
            .filter(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"))
            .count()
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
    if s.down_until
        .lock()
        .unwrap()
        .is_some_and(|t| Instant::now() < t)
    {
        return unavailable();
    }
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_string)
    };
    if !matches!(param("watch").as_deref(), Some("true" | "1")) {
        if let Some(fault) = s.faults.lock().unwrap().pop_front() {
            return fault.answer();
        }
        if param("continue").is_some() && std::mem::take(&mut *s.expire_continue.lock().unwrap()) {
            return status_response(
                StatusCode::GONE,
                "Expired",
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                None,
            );
        }
        // A page of `limit` pods from `continue` on, as the server pages.
        let list = s.list.lock().unwrap();
        let (version, items) = (&list.0, &list.1);
        let from: usize = param("continue").and_then(|c| c.parse().ok()).unwrap_or(0);
        let limit: usize = param("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(usize::MAX);
        let to = from.saturating_add(limit).min(items.len());
        let mut meta = json!({"resourceVersion": version});
        if to < items.len() {
            meta["continue"] = json!(to.to_string());
        }
        let page = format!(
            "{{\"kind\":\"PodList\",\"apiVersion\":\"v1\",\"metadata\":{meta},\"items\":[{}]}}",
            items[from.min(to)..to].join(",")
        );
        return ([(header::CONTENT_TYPE, "application/json")], page).into_response();
    }
    let rx = s.events.subscribe();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(line) if line == CLOSE => return None,
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
