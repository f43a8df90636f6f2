//! The kubelet source: polls the node's kubelet `/pods` (HTTPS, the service
//! account's bearer token, a CA file) for clusters where every node watching
//! the API server is unwanted. Each poll is a full listing. A failed poll
//! leaves what the last good one said in force and retries with backoff; a
//! malformed pod in a good list costs only that pod.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use http_body_util::{BodyExt, Limited};
use kube::client::Body;
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::DefaultBackoff;
use tracing::{info, warn};

use super::{Feed, Source};
use crate::failure::Failure;
use crate::metrics::Metrics;
use crate::pod::claims::Claims;
use crate::pod::{Mirrors, PodState, read_pod_list};
use crate::workload::declared::NamespacePolicy;

/// Largest `/pods` answer read (about 20k pods); more is refused.
const MAX_BODY: usize = 128 << 20;

pub struct KubeletConfig {
    /// e.g. `https://10.0.0.5:10250`.
    pub url: http::Uri,
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    /// Skip verifying the kubelet's serving certificate (self-signed ones).
    pub insecure: bool,
    pub interval: Duration,
    pub timeout: Duration,
}

pub struct KubeletSource {
    client: kube::Client,
    interval: Duration,
    policy: NamespacePolicy,
}

impl KubeletSource {
    pub fn new(
        config: KubeletConfig,
        policy: NamespacePolicy,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let mut kc = kube::Config::new(config.url);
        kc.root_cert_file = config.ca_file;
        kc.accept_invalid_certs = config.insecure;
        kc.auth_info.token_file = config.token_file.map(|p| p.to_string_lossy().into_owned());
        kc.connect_timeout = Some(config.timeout);
        kc.read_timeout = Some(config.timeout);
        let client = super::api_client::client(kc, "kubelet", false, metrics)
            .context("setting up the kubelet client")?;
        Ok(KubeletSource {
            client,
            interval: config.interval,
            policy,
        })
    }

    async fn poll(&self) -> anyhow::Result<bytes::Bytes> {
        let request = http::Request::get("/pods").body(Body::empty())?;
        let response = self.client.send(request).await.context("GET /pods")?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading /pods: {e}"))?
            .to_bytes();
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            anyhow::bail!("GET /pods: {status}: {}", crate::failure::shown(&text));
        }
        Ok(body)
    }
}

impl Source for KubeletSource {
    fn name(&self) -> &'static str {
        "kubelet"
    }

    async fn run(self, feed: Feed) {
        let mut backoff = DefaultBackoff::default();
        let mut listed = false;
        let mut claims = Claims::default();
        loop {
            let wait = match self.poll().await {
                Ok(body) => {
                    let mut live = vec![];
                    let read = read_pod_list(&body, |pod| match pod.pod() {
                        Ok(p) => {
                            if let Some(PodState::Live(w)) =
                                feed.interpret_pod(p, Mirrors::Ignore, &self.policy)
                            {
                                live.push((p.meta.uid.as_deref().unwrap_or("").into(), w));
                            }
                        }
                        Err(f) => {
                            warn!(source = "kubelet", uid = ?kube::Resource::meta(&pod).uid, reason = %f, "a pod in /pods does not parse; skipped");
                            feed.failure(f);
                        }
                    });
                    match read {
                        Ok(()) => {
                            // a pod listed twice gets its identity from neither
                            let (live, refused) = claims.relist(live);
                            for (object, w) in &refused {
                                feed.conflict(object, w, None);
                            }
                            if !listed {
                                info!(source = "kubelet", pods = live.len(), "kubelet listed");
                                listed = true;
                            }
                            feed.replace(live);
                            feed.up(true);
                            backoff.reset();
                            self.interval
                        }
                        Err(f) => {
                            warn!(source = "kubelet", reason = %f, "/pods is not a pod list; keeping the last good one");
                            feed.failure(f);
                            feed.up(false);
                            backoff.next().unwrap_or(self.interval)
                        }
                    }
                }
                Err(e) => {
                    warn!(
                        source = "kubelet",
                        error = format!("{e:#}"),
                        "kubelet unreachable; keeping the last good list"
                    );
                    feed.failure(Failure::SourceUnavailable);
                    feed.up(false);
                    backoff.next().unwrap_or(self.interval)
                }
            };
            tokio::time::sleep(wait.min(self.interval)).await;
        }
    }
}
