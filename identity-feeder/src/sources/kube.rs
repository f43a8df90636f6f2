//! The Kubernetes API source: watches this node's pods (field selector
//! `spec.nodeName=<node>`) with kube-runtime's watcher, which lists, then
//! follows, and resumes after a disconnect from the last resource version
//! (relisting when that is too old). Errors back off exponentially. Every
//! `resync` the watch is started over, so a full listing corrects anything
//! a lost event could have left wrong.

use std::time::Duration;

use futures::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource};
use tracing::{info, warn};

use super::{Feed, Source};
use crate::failure::Failure;
use crate::pod::claims::{Claims, ObjectUid};
use crate::pod::{LenientPod, Mirrors, PodState};
use crate::workload::declared::NamespacePolicy;

/// Pods per page of a listing.
const PAGE: u32 = 500;

pub struct KubeSource {
    client: kube::Client,
    node: String,
    policy: NamespacePolicy,
    resync: Duration,
    /// Which pod object holds each key: a mirror pod and a forger can name one.
    claims: Claims,
}

impl KubeSource {
    pub fn new(
        client: kube::Client,
        node: String,
        policy: NamespacePolicy,
        resync: Duration,
    ) -> Self {
        KubeSource {
            client,
            node,
            policy,
            resync,
            claims: Claims::default(),
        }
    }

    /// One watch, until `resync` is due.
    async fn watch_once(&mut self, feed: &Feed) {
        let api: Api<LenientPod> = Api::all(self.client.clone());
        let config = watcher::Config::default()
            .fields(&format!("spec.nodeName={}", self.node))
            .page_size(PAGE);
        let stream = watcher::watcher(api, config).default_backoff();
        let deadline = tokio::time::sleep(self.resync);
        tokio::pin!(stream, deadline);
        let mut listing: Option<Vec<_>> = None;
        loop {
            let event = tokio::select! {
                _ = &mut deadline => return,
                event = stream.next() => event,
            };
            match event {
                Some(Ok(Event::Init)) => listing = Some(vec![]),
                Some(Ok(Event::InitApply(pod))) => {
                    if let Some(PodState::Live(w)) = self.interpret(feed, &pod) {
                        listing.get_or_insert_default().push((object_uid(&pod), w));
                    }
                }
                Some(Ok(Event::InitDone)) => {
                    let (pods, refused) = self.claims.relist(listing.take().unwrap_or_default());
                    for (object, w) in &refused {
                        feed.conflict(object, w, None);
                    }
                    info!(source = "kube", node = %self.node, pods = pods.len(), "pods listed");
                    feed.replace(pods);
                    feed.up(true);
                }
                Some(Ok(Event::Apply(pod))) => {
                    let object = object_uid(&pod);
                    match self.interpret(feed, &pod) {
                        Some(PodState::Live(w)) => match self.claims.claim(&object, &w.key) {
                            Ok(withdrawn) => {
                                if let Some(key) = withdrawn {
                                    feed.delete(key);
                                }
                                feed.apply(w);
                            }
                            Err(c) => feed.conflict(&object, &w, Some(&c.holder)),
                        },
                        // Finished or refused now: what it held is withdrawn.
                        _ => {
                            if let Some(key) = self.claims.release(&object) {
                                feed.delete(key);
                            }
                        }
                    }
                }
                Some(Ok(Event::Delete(pod))) => {
                    // only what this pod object held: never another pod's entry
                    if let Some(key) = self.claims.release(&object_uid(&pod)) {
                        feed.delete(key);
                    }
                }
                Some(Err(e)) => {
                    warn!(source = "kube", error = %e, "watching pods failed; retrying with backoff");
                    feed.failure(Failure::SourceUnavailable);
                    feed.up(false);
                }
                None => return,
            }
        }
    }
}

/// The pod object's own uid (not the key it names).
fn object_uid(pod: &LenientPod) -> ObjectUid {
    pod.meta().uid.as_deref().unwrap_or("").into()
}

impl KubeSource {
    fn interpret(&self, feed: &Feed, pod: &LenientPod) -> Option<PodState> {
        match pod.pod() {
            Ok(p) => feed.interpret_pod(p, Mirrors::Believe, &self.policy),
            Err(f) => {
                warn!(source = "kube", uid = ?pod.meta().uid, reason = %f, "a pod does not parse; it gets no identity");
                feed.failure(f);
                None
            }
        }
    }
}

impl Source for KubeSource {
    fn name(&self) -> &'static str {
        "kube"
    }

    async fn run(mut self, feed: Feed) {
        loop {
            self.watch_once(&feed).await;
        }
    }
}
