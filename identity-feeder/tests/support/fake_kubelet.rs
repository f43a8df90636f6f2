//! A stand-in for the kubelet's `/pods` endpoint on loopback: HTTPS with a
//! certificate from a CA made for the test, a bearer token it checks, and
//! whatever answer the test sets (a pod list, garbage, an error).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, pki_types::PrivateKeyDer, pki_types::PrivatePkcs8KeyDer};

pub const TOKEN: &str = "kubelet-test-token";

#[derive(Clone)]
struct Shared {
    answer: Arc<Mutex<(u16, String)>>,
    polls: Arc<AtomicUsize>,
}

pub struct FakeKubelet {
    pub port: u16,
    shared: Shared,
    pub ca_file: PathBuf,
    pub token_file: PathBuf,
    _rt: tokio::runtime::Runtime,
}

impl FakeKubelet {
    pub fn start(body: String) -> FakeKubelet {
        let mut ca = CertificateParams::new(vec![]).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "prism test kubelet CA");
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        leaf.subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = leaf.signed_by(&leaf_key, &ca).unwrap();

        let tag = format!("{}-{}", std::process::id(), rand_tag());
        let ca_file = std::env::temp_dir().join(format!("prism-test-kubelet-ca-{tag}.pem"));
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let token_file = std::env::temp_dir().join(format!("prism-test-kubelet-token-{tag}"));
        std::fs::write(&token_file, TOKEN).unwrap();

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
            )
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(tls));

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Shared {
            answer: Arc::new(Mutex::new((200, body))),
            polls: Arc::default(),
        };
        let router = Router::new()
            .route("/pods", get(pods))
            .with_state(shared.clone());
        rt.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, router) = (acceptor.clone(), router.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(router))
                        .await;
                });
            }
        });
        FakeKubelet {
            port,
            shared,
            ca_file,
            token_file,
            _rt: rt,
        }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// What `/pods` answers from now on.
    pub fn answer(&self, status: u16, body: String) {
        *self.shared.answer.lock().unwrap() = (status, body);
    }

    /// Requests with the right token so far.
    pub fn polls(&self) -> usize {
        self.shared.polls.load(Ordering::Relaxed)
    }

    /// Wait for `n` more good polls.
    pub fn wait_polls(&self, n: usize) {
        let target = self.polls() + n;
        super::wait_for("kubelet polls", std::time::Duration::from_secs(60), || {
            (self.polls() >= target).then_some(())
        });
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca_file);
        let _ = std::fs::remove_file(&self.token_file);
    }
}

fn rand_tag() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::Instant::now())
}

async fn pods(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {TOKEN}")) {
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    }
    s.polls.fetch_add(1, Ordering::Relaxed);
    let (status, body) = s.answer.lock().unwrap().clone();
    (
        StatusCode::from_u16(status).unwrap(),
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}
