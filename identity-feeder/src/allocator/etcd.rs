//! The cluster-wide allocator: one id per canonical string on every node,
//! agreed in etcd with transactions.
//!
//! Keys, below a prefix (default `/prism/v1/`):
//! - `canonical/<canonical>` -> its id (decimal);
//! - `id/<id as 6 hex digits>` -> its canonical (ids sort by key);
//! - `uses/<id>/<node>` -> empty, attached to the node's lease: this node
//!   has workloads with that id. A dead node's lease expires and takes its
//!   `uses` keys with it.
//!
//! Minting is one transaction that creates `canonical/` and `id/` only if
//! neither exists, so two nodes racing for a canonical get one id and no id
//! gets two canonicals. Joining an existing id is a transaction on the
//! `canonical/` key's revision. Any node collects an id no node uses, in a
//! transaction that holds only while no `uses/<id>/` key exists, so a node
//! joining at that moment either wins (and keeps it) or retries.
//!
//! The feeder's reconciler never waits for etcd: one worker task makes the
//! calls, each bounded by `timeout`, and wakes the reconciler with the
//! answers, so a slow or absent etcd delays only new identities while every
//! other bus write goes on. Locally, ids are refcounted: etcd is asked only
//! for a canonical's first workload and told after its last one.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KeyValue, PutOptions,
    Txn, TxnOp,
};
use prism_bus::Identity;
use prism_bus::abi::{IDENTITY_MASK, MIN_DYNAMIC_IDENTITY};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::{Acquired, AllocError, Allocator};
use crate::metrics::Metrics;
use crate::workload::canonical::Canonical;
use crate::workload::labels;

/// Transactions tried before contention is reported as a failure.
const MAX_TRIES: usize = 16;
/// `id/` keys read per page when looking for the smallest free id.
const PAGE: i64 = 1024;
/// How long calls fail at once after etcd did not answer, and how often
/// untold releases are retried.
const RETRY_AFTER: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    pub prefix: String,
    /// This node's name, in its `uses` keys.
    pub node: String,
    pub lease_ttl: Duration,
    /// How often this node collects ids no node uses.
    pub gc_interval: Duration,
    /// Longest any one call may take.
    pub timeout: Duration,
}

/// What the background tasks and the allocator share.
#[derive(Clone)]
struct Store {
    client: Client,
    prefix: String,
    node: String,
    lease: Arc<AtomicI64>,
}

type EtcdResult<T> = Result<T, etcd_client::Error>;

impl Store {
    fn canonical_key(&self, c: &str) -> Vec<u8> {
        format!("{}canonical/{c}", self.prefix).into_bytes()
    }

    fn id_key(&self, id: u32) -> String {
        format!("{}id/{id:06x}", self.prefix)
    }

    fn uses_prefix(&self, id: u32) -> String {
        format!("{}uses/{id:06x}/", self.prefix)
    }

    fn use_key(&self, id: u32) -> String {
        format!("{}uses/{id:06x}/{}", self.prefix, self.node)
    }

    fn with_lease(&self) -> Option<PutOptions> {
        Some(PutOptions::new().with_lease(self.lease.load(Ordering::Relaxed)))
    }

    async fn acquire(
        &self,
        c: &Canonical,
        hint: Option<u32>,
    ) -> Result<(u32, Acquired), AllocError> {
        let mut kv = self.client.clone();
        let ck = self.canonical_key(c.as_str());
        for _ in 0..MAX_TRIES {
            let got = kv.get(ck.clone(), None).await.map_err(unavailable)?;
            if let Some(existing) = got.kvs().first() {
                let id = parse_id(existing.value())?;
                let join = Txn::new()
                    .when([Compare::mod_revision(
                        ck.clone(),
                        CompareOp::Equal,
                        existing.mod_revision(),
                    )])
                    .and_then([TxnOp::put(self.use_key(id), "", self.with_lease())]);
                if kv.txn(join).await.map_err(unavailable)?.succeeded() {
                    return Ok((id, Acquired::Adopted));
                }
                continue; // collected or changed meanwhile: look again
            }
            let candidate = match hint {
                Some(h) if self.is_free(h).await.map_err(unavailable)? => h,
                _ => self.smallest_free().await?,
            };
            let mint = Txn::new()
                .when([
                    Compare::create_revision(ck.clone(), CompareOp::Equal, 0),
                    Compare::create_revision(self.id_key(candidate), CompareOp::Equal, 0),
                ])
                .and_then([
                    TxnOp::put(ck.clone(), candidate.to_string(), None),
                    TxnOp::put(self.id_key(candidate), c.as_str(), None),
                    TxnOp::put(self.use_key(candidate), "", self.with_lease()),
                ]);
            if kv.txn(mint).await.map_err(unavailable)?.succeeded() {
                let how = if Some(candidate) == hint {
                    Acquired::Adopted
                } else {
                    Acquired::Minted
                };
                return Ok((candidate, how));
            }
        }
        Err(AllocError::Unavailable(format!(
            "{MAX_TRIES} transactions lost to other nodes in a row"
        )))
    }

    async fn is_free(&self, id: u32) -> EtcdResult<bool> {
        if !(MIN_DYNAMIC_IDENTITY..=IDENTITY_MASK).contains(&id) {
            return Ok(false);
        }
        let mut kv = self.client.clone();
        Ok(kv.get(self.id_key(id), None).await?.kvs().is_empty())
    }

    /// The smallest id >= 256 with no `id/` key.
    async fn smallest_free(&self) -> Result<u32, AllocError> {
        let mut kv = self.client.clone();
        let end = format!("{}id0", self.prefix); // '0' sorts right after '/'
        let mut candidate = MIN_DYNAMIC_IDENTITY;
        loop {
            let opts = GetOptions::new()
                .with_range(end.clone())
                .with_keys_only()
                .with_limit(PAGE);
            let page = kv
                .get(self.id_key(candidate), Some(opts))
                .await
                .map_err(unavailable)?;
            for k in page.kvs() {
                let taken = parse_id_key(k.key()).ok_or_else(corrupt)?;
                if taken != candidate {
                    return Ok(candidate);
                }
                candidate += 1;
            }
            if candidate > IDENTITY_MASK {
                return Err(AllocError::Exhausted { max: IDENTITY_MASK });
            }
            if (page.kvs().len() as i64) < PAGE {
                return Ok(candidate);
            }
        }
    }

    async fn release(&self, id: u32) -> EtcdResult<()> {
        let mut kv = self.client.clone();
        kv.delete(self.use_key(id), None).await.map(drop)
    }

    /// Every key under `prefix`, a page at a time (`keys_only`: without
    /// values), handed to `each` in key order: no answer grows with the
    /// number of ids (one answer for all of them failed past gRPC's 4 MiB).
    async fn for_each_under(
        &self,
        prefix: &str,
        keys_only: bool,
        mut each: impl FnMut(&KeyValue),
    ) -> EtcdResult<()> {
        let mut kv = self.client.clone();
        let end = prefix_end(prefix.as_bytes());
        let mut from = prefix.as_bytes().to_vec();
        loop {
            let mut opts = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if keys_only {
                opts = opts.with_keys_only();
            }
            let page = kv.get(from.clone(), Some(opts)).await?;
            page.kvs().iter().for_each(&mut each);
            match page.kvs().last() {
                Some(last) if page.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok(()),
            }
        }
    }

    /// Delete every id no node uses; how many.
    async fn collect(&self) -> EtcdResult<usize> {
        let mut kv = self.client.clone();
        let uses_prefix = format!("{}uses/", self.prefix);
        let mut used = BTreeSet::new();
        self.for_each_under(&uses_prefix, true, |k| {
            let id = k
                .key()
                .strip_prefix(uses_prefix.as_bytes())
                .and_then(|rest| std::str::from_utf8(rest.get(..6)?).ok())
                .and_then(|hex| u32::from_str_radix(hex, 16).ok());
            used.extend(id);
        })
        .await?;
        let mut unused = vec![];
        self.for_each_under(&format!("{}id/", self.prefix), false, |k| {
            if let Some(id) = parse_id_key(k.key())
                && !used.contains(&id)
            {
                unused.push((id, k.mod_revision(), k.value().to_vec()));
            }
        })
        .await?;
        let mut collected = 0;
        for (id, revision, canonical) in unused {
            let ck = self.canonical_key(std::str::from_utf8(&canonical).unwrap_or_default());
            let gc = Txn::new()
                .when([
                    Compare::version(self.uses_prefix(id), CompareOp::Equal, 0).with_prefix(),
                    Compare::mod_revision(self.id_key(id), CompareOp::Equal, revision),
                    Compare::value(ck.clone(), CompareOp::Equal, id.to_string()),
                ])
                .and_then([
                    TxnOp::delete(self.id_key(id), None::<DeleteOptions>),
                    TxnOp::delete(ck, None::<DeleteOptions>),
                ]);
            if kv.txn(gc).await?.succeeded() {
                collected += 1;
            }
        }
        Ok(collected)
    }

    /// Put this node's `uses` key for `id` again (a new lease), if `c` still
    /// has it; false if it was collected meanwhile.
    async fn register(&self, c: &Canonical, id: u32) -> EtcdResult<bool> {
        let mut kv = self.client.clone();
        let again = Txn::new()
            .when([Compare::value(
                self.canonical_key(c.as_str()),
                CompareOp::Equal,
                id.to_string(),
            )])
            .and_then([TxnOp::put(self.use_key(id), "", self.with_lease())]);
        Ok(kv.txn(again).await?.succeeded())
    }
}

/// The first key after every key that starts with `prefix` (etcd's range end).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

fn parse_id(value: &[u8]) -> Result<u32, AllocError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|id| (MIN_DYNAMIC_IDENTITY..=IDENTITY_MASK).contains(id))
        .ok_or_else(corrupt)
}

/// The id of an `.../id/<6 hex>` key.
fn parse_id_key(key: &[u8]) -> Option<u32> {
    let hex = key.rsplit(|&b| b == b'/').next()?;
    u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

fn unavailable(e: etcd_client::Error) -> AllocError {
    AllocError::Unavailable(e.to_string())
}

fn corrupt() -> AllocError {
    AllocError::Unavailable("a key under the etcd prefix is not what prism-feeder writes".into())
}

#[derive(Debug)]
struct Held {
    id: u32,
    refs: u32,
}

/// Called by the etcd worker when an answer is waiting, from its own
/// thread: it must only wake the reconciler (which then calls
/// [`Allocator::answered`]).
pub type Wake = Box<dyn Fn() + Send + Sync>;

/// What the reconciler asks the etcd worker, in order.
enum Request {
    Acquire(Canonical, Option<u32>),
    /// This node stopped using the id.
    Release(u32),
}

/// The store's answer to one acquire.
type Answered = Result<(u32, Acquired), AllocError>;

type Answer = (Canonical, Answered);

/// Where the worker leaves its answers for the reconciler's thread.
struct Mailbox {
    answers: Mutex<Vec<Answer>>,
    /// The reconciler has been woken for what is in `answers`: one wake for
    /// a burst of answers, not one input per workload.
    woken: AtomicBool,
    wake: Wake,
}

impl Mailbox {
    fn post(&self, answer: Answer) {
        self.answers.lock().expect("not poisoned").push(answer);
        if !self.woken.swap(true, Ordering::AcqRel) {
            (self.wake)();
        }
    }

    fn take(&self) -> Vec<Answer> {
        self.woken.store(false, Ordering::Release);
        std::mem::take(&mut *self.answers.lock().expect("not poisoned"))
    }
}

/// The reconciler's side: it never waits for etcd. A canonical's first
/// acquire asks the worker and returns [`AllocError::Pending`]; the answer
/// wakes the reconciler, whose next acquire takes it. Releases are queued
/// behind the acquires, so etcd sees them in the reconciler's order.
pub struct EtcdAllocator {
    requests: mpsc::UnboundedSender<Request>,
    mailbox: Arc<Mailbox>,
    held: HashMap<Canonical, Held>,
    /// Asked and not answered yet.
    asked: HashSet<Canonical>,
    /// Answered and not taken yet, since when.
    ready: HashMap<Canonical, (Answered, Instant)>,
    /// Answered since the last [`Allocator::answered`].
    unreported: Vec<Canonical>,
    /// The ids this node uses, for re-registering after a lost lease.
    in_use: Arc<Mutex<HashMap<u32, Canonical>>>,
    /// Canonicals whose id was collected while this node was cut off.
    lost: Arc<Mutex<Vec<Canonical>>>,
}

/// An answer nobody took this long (its workload left while etcd was
/// asked) is given back.
const UNCLAIMED: Duration = Duration::from_secs(30);

impl EtcdAllocator {
    /// Connect, take this node's lease, and start, on `rt`, the worker that
    /// talks to etcd, the lease keeper and the collector of unused ids.
    pub fn connect(
        rt: &Handle,
        config: EtcdConfig,
        metrics: Arc<Metrics>,
        wake: Wake,
    ) -> anyhow::Result<EtcdAllocator> {
        if !labels::is_service_account(&config.node) {
            anyhow::bail!(
                "node name {:?} cannot be part of an etcd key (a DNS subdomain is needed)",
                crate::failure::shown(&config.node)
            );
        }
        let ttl = config.lease_ttl.as_secs().max(1) as i64;
        let options = ConnectOptions::new()
            .with_connect_timeout(config.timeout)
            .with_timeout(config.timeout);
        let (client, lease) = rt
            .block_on(async {
                let mut client = Client::connect(&config.endpoints, Some(options)).await?;
                let lease = client.lease_grant(ttl, None).await?.id();
                Ok::<_, etcd_client::Error>((client, lease))
            })
            .with_context(|| format!("connecting to etcd at {}", config.endpoints.join(",")))?;
        let store = Store {
            client,
            prefix: config.prefix.clone(),
            node: config.node.clone(),
            lease: Arc::new(AtomicI64::new(lease)),
        };
        let in_use = Arc::new(Mutex::new(HashMap::new()));
        let lost = Arc::new(Mutex::new(vec![]));
        let mailbox = Arc::new(Mailbox {
            answers: Mutex::new(vec![]),
            woken: AtomicBool::new(false),
            wake,
        });
        let (requests, inbox) = mpsc::unbounded_channel();
        let worker = Worker {
            store: store.clone(),
            timeout: config.timeout,
            mailbox: mailbox.clone(),
            in_use: in_use.clone(),
            unreleased: BTreeSet::new(),
            down_until: None,
        };
        rt.spawn(worker.run(inbox));
        rt.spawn(keep_lease(store.clone(), ttl, in_use.clone(), lost.clone()));
        rt.spawn(collect_unused(store, config.gc_interval, metrics));
        info!(endpoints = %config.endpoints.join(","), prefix = %config.prefix, node = %config.node, lease,
            "identities are agreed in etcd");
        Ok(EtcdAllocator {
            requests,
            mailbox,
            held: HashMap::new(),
            asked: HashSet::new(),
            ready: HashMap::new(),
            unreported: vec![],
            in_use,
            lost,
        })
    }

    /// Move the worker's answers here.
    fn collect_answers(&mut self) {
        let now = Instant::now();
        for (c, answer) in self.mailbox.take() {
            self.asked.remove(&c);
            self.unreported.push(c.clone());
            self.ready.insert(c, (answer, now));
        }
    }

    fn ask(&mut self, request: Request) {
        // The worker lives as long as the runtime; without it there is no
        // etcd to tell, and the next acquire reports it.
        let _ = self.requests.send(request);
    }
}

impl Allocator for EtcdAllocator {
    fn acquire(
        &mut self,
        canonical: &Canonical,
        hint: Option<Identity>,
    ) -> Result<(Identity, Acquired), AllocError> {
        if let Some(h) = self.held.get_mut(canonical) {
            h.refs += 1;
            return Ok((Identity::new(h.id).expect("24-bit"), Acquired::Shared));
        }
        self.collect_answers();
        if let Some((answer, _)) = self.ready.remove(canonical) {
            let (id, how) = answer?;
            self.held.insert(canonical.clone(), Held { id, refs: 1 });
            return Ok((Identity::new(id).expect("24-bit"), how));
        }
        if self.requests.is_closed() {
            return Err(AllocError::Unavailable(
                "the etcd worker stopped (the runtime is shutting down)".into(),
            ));
        }
        if self.asked.insert(canonical.clone()) {
            self.ask(Request::Acquire(canonical.clone(), hint.map(Identity::get)));
        }
        Err(AllocError::Pending)
    }

    fn release(&mut self, canonical: &Canonical) {
        let Some(h) = self.held.get_mut(canonical) else {
            return;
        };
        h.refs -= 1;
        if h.refs > 0 {
            return;
        }
        let id = h.id;
        self.held.remove(canonical);
        self.ask(Request::Release(id));
    }

    // The cluster holds every id; a restart asks it, not the bus.
    fn reserve(&mut self, _ids: &[Identity]) {}

    fn end_adoption(&mut self) {}

    fn live(&self) -> usize {
        self.held.len()
    }

    fn housekeeping(&mut self) -> Vec<Canonical> {
        self.collect_answers();
        let now = Instant::now();
        let unclaimed: Vec<u32> = self
            .ready
            .iter()
            .filter(|(_, (_, since))| now.duration_since(*since) >= UNCLAIMED)
            .filter_map(|(_, (answer, _))| answer.as_ref().ok().map(|(id, _)| *id))
            .collect();
        self.ready
            .retain(|_, (_, since)| now.duration_since(*since) < UNCLAIMED);
        for id in unclaimed {
            self.ask(Request::Release(id));
        }
        let lost = std::mem::take(&mut *self.lost.lock().expect("not poisoned"));
        for c in &lost {
            if let Some(h) = self.held.remove(c) {
                self.in_use.lock().expect("not poisoned").remove(&h.id);
            }
        }
        lost
    }

    fn answered(&mut self) -> Vec<Canonical> {
        self.collect_answers();
        std::mem::take(&mut self.unreported)
    }
}

/// The one task that talks to etcd for the reconciler, a request at a time
/// in the order they were made.
struct Worker {
    store: Store,
    timeout: Duration,
    mailbox: Arc<Mailbox>,
    in_use: Arc<Mutex<HashMap<u32, Canonical>>>,
    /// Ids this node stopped using but could not tell etcd yet. (Its lease
    /// lives on, so without telling, they would never be collected.)
    unreleased: BTreeSet<u32>,
    /// After a failure, requests fail at once until then: an unreachable
    /// etcd costs one timeout, not one per workload.
    down_until: Option<Instant>,
}

impl Worker {
    async fn run(mut self, mut inbox: mpsc::UnboundedReceiver<Request>) {
        let mut tick = tokio::time::interval(RETRY_AFTER);
        loop {
            tokio::select! {
                request = inbox.recv() => match request {
                    Some(r) => self.handle(r).await,
                    None => return, // the allocator is gone
                },
                _ = tick.tick() => self.catch_up().await,
            }
        }
    }

    async fn handle(&mut self, request: Request) {
        match request {
            Request::Acquire(c, hint) => {
                let store = self.store.clone();
                let answer = self.call(store.acquire(&c, hint)).await;
                if let Ok((id, _)) = &answer {
                    self.unreleased.remove(id);
                    self.in_use
                        .lock()
                        .expect("not poisoned")
                        .insert(*id, c.clone());
                }
                self.mailbox.post((c, answer));
            }
            Request::Release(id) => {
                self.in_use.lock().expect("not poisoned").remove(&id);
                self.unreleased.insert(id);
                self.catch_up().await;
            }
        }
    }

    /// One etcd exchange, bounded by the timeout.
    async fn call<T>(
        &mut self,
        f: impl Future<Output = Result<T, AllocError>>,
    ) -> Result<T, AllocError> {
        if self.down_until.is_some_and(|t| Instant::now() < t) {
            return Err(AllocError::Unavailable(
                "etcd did not answer a moment ago; retrying shortly".into(),
            ));
        }
        let r = tokio::time::timeout(self.timeout, f)
            .await
            .unwrap_or_else(|_| {
                Err(AllocError::Unavailable(
                    "etcd did not answer in time".into(),
                ))
            });
        self.down_until = match &r {
            Err(AllocError::Unavailable(_)) => Some(Instant::now() + RETRY_AFTER),
            _ => None,
        };
        r
    }

    /// Tell etcd about the ids released while it was unreachable (those not
    /// taken again meanwhile).
    async fn catch_up(&mut self) {
        let mut pending = std::mem::take(&mut self.unreleased).into_iter();
        while let Some(id) = pending.next() {
            if self.in_use.lock().expect("not poisoned").contains_key(&id) {
                continue;
            }
            let store = self.store.clone();
            if let Err(e) = self
                .call(async move { store.release(id).await.map_err(unavailable) })
                .await
            {
                self.unreleased.insert(id);
                self.unreleased.extend(pending);
                warn!(ids = self.unreleased.len(), error = %e,
                    "could not tell etcd this node stopped using ids; later");
                return;
            }
        }
    }
}

/// Keep this node's lease alive; if it is lost (a partition longer than the
/// TTL), take a new one and register every id in use again.
async fn keep_lease(
    store: Store,
    ttl: i64,
    in_use: Arc<Mutex<HashMap<u32, Canonical>>>,
    lost: Arc<Mutex<Vec<Canonical>>>,
) {
    let beat = Duration::from_millis((ttl as u64 * 1000 / 3).max(200));
    loop {
        let lease = store.lease.load(Ordering::Relaxed);
        let mut client = store.client.clone();
        let expired = match client.lease_keep_alive(lease).await {
            Ok((mut keeper, mut answers)) => loop {
                tokio::time::sleep(beat).await;
                if keeper.keep_alive().await.is_err() {
                    break false;
                }
                match answers.message().await {
                    Ok(Some(a)) if a.ttl() > 0 => continue,
                    Ok(_) => break true,
                    Err(_) => break false,
                }
            },
            Err(_) => false,
        };
        if !expired {
            // etcd unreachable: the lease may well still be alive.
            tokio::time::sleep(beat).await;
            match client.lease_time_to_live(lease, None).await {
                Ok(t) if t.ttl() > 0 => continue,
                Ok(_) => {}
                Err(_) => continue,
            }
        }
        warn!(lease, "this node's etcd lease expired; taking a new one");
        let new = loop {
            match client.lease_grant(ttl, None).await {
                Ok(g) => break g.id(),
                Err(e) => {
                    error!(error = %e, "cannot take an etcd lease; retrying");
                    tokio::time::sleep(beat).await;
                }
            }
        };
        store.lease.store(new, Ordering::Relaxed);
        let held: Vec<(u32, Canonical)> = in_use
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|(id, c)| (*id, c.clone()))
            .collect();
        for (id, c) in held {
            match store.register(&c, id).await {
                Ok(true) => {}
                Ok(false) => {
                    warn!(id, canonical = %c, "collected while this node was cut off; its workloads get a new id");
                    lost.lock().expect("not poisoned").push(c);
                }
                Err(e) => error!(id, error = %e, "re-registering an id failed"),
            }
        }
    }
}

async fn collect_unused(store: Store, every: Duration, metrics: Arc<Metrics>) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let outcome = store.collect().await;
        metrics.etcd_collection(outcome.as_ref().ok().copied());
        match outcome {
            Ok(0) => {}
            Ok(n) => info!(collected = n, "ids no node uses were collected"),
            Err(e) => warn!(error = %e, "collecting unused ids failed; next time"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_at_its_next_key() {
        assert_eq!(prefix_end(b"/prism/id/"), b"/prism/id0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }
}
