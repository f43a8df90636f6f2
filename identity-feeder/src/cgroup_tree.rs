//! The cgroup tree below a root, kept current with inotify: every cgroup's
//! path (relative to the root) and id, as a first snapshot and then as
//! directories appear and vanish. Runs in its own thread and tells its
//! subscribers; never writes anything.
//!
//! A directory made by userspace (systemd, the kubelet, a container runtime)
//! raises IN_CREATE in its parent. A new directory is watched first and then
//! read, so nothing made in between is missed (it may be reported twice,
//! which subscribers take as a no-op). A queue overflow, or a rescan asked
//! for, sends a whole new snapshot.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use tracing::{debug, warn};

use crate::failure::Failure;
use crate::metrics::Metrics;

/// Deepest cgroup below the root that is followed; real trees are < 10.
const MAX_DEPTH: usize = 32;

/// A cgroup: its path below the root (no leading `/`) and its id.
pub type Cgroup = (String, u64);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeEvent {
    /// Every cgroup below the root now; what is not here is gone.
    Snapshot(Vec<Cgroup>),
    /// A new cgroup and everything already below it, parents first.
    Created(Vec<Cgroup>),
    /// A cgroup and everything below it are gone (or moved away).
    Removed(String),
}

/// Asks a running watcher for a fresh snapshot (a periodic safety net).
#[derive(Clone, Default)]
pub struct RescanHandle(Arc<AtomicBool>);

impl RescanHandle {
    pub fn request(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Gets every tree event; returns false once it wants no more.
pub type Subscriber = Box<dyn FnMut(TreeEvent) -> bool + Send>;

/// Start watching `root`; each subscriber gets every event, in order.
pub fn spawn(
    root: PathBuf,
    subscribers: Vec<Subscriber>,
    metrics: Arc<Metrics>,
) -> io::Result<RescanHandle> {
    let mut watcher = Watcher::new(root, subscribers, metrics)?;
    let rescan = RescanHandle::default();
    let flag = rescan.clone();
    thread::Builder::new()
        .name("cgroup-tree".into())
        .spawn(move || watcher.run(&flag))?;
    Ok(rescan)
}

/// Read the tree once, without watching (tests, tools).
pub fn scan(root: &Path) -> Vec<Cgroup> {
    let mut out = vec![];
    walk(root, "", 0, &mut out, &mut |_, _| {});
    out
}

struct Watcher {
    root: PathBuf,
    inotify: Inotify,
    /// Watched directory -> its path below the root.
    paths: HashMap<WatchDescriptor, String>,
    subscribers: Vec<Subscriber>,
    metrics: Arc<Metrics>,
}

const MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::ONLYDIR)
    .union(WatchMask::DONT_FOLLOW);

impl Watcher {
    fn new(root: PathBuf, subscribers: Vec<Subscriber>, metrics: Arc<Metrics>) -> io::Result<Self> {
        Ok(Watcher {
            root,
            inotify: Inotify::init()?,
            paths: HashMap::new(),
            subscribers,
            metrics,
        })
    }

    fn run(&mut self, rescan: &RescanHandle) {
        self.snapshot();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if rescan.0.swap(false, Ordering::Relaxed) {
                self.snapshot();
            }
            if !self.wait_readable() {
                continue;
            }
            let events: Vec<_> = match self.inotify.read_events(&mut buf) {
                Ok(events) => events
                    .map(|e| (e.wd, e.mask, e.name.map(OsStr::to_owned)))
                    .collect(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    warn!(error = %e, "reading cgroup events failed; rescanning");
                    self.metrics.failure(Failure::CgroupWatch);
                    self.snapshot();
                    continue;
                }
            };
            for (wd, mask, name) in events {
                if mask.contains(EventMask::Q_OVERFLOW) {
                    warn!("cgroup event queue overflowed; rescanning");
                    self.snapshot();
                    break;
                }
                self.handle(wd, mask, name.as_deref());
            }
        }
    }

    /// Wait up to a second for events, so a rescan request is seen.
    fn wait_readable(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.inotify.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: pfd is a valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut pfd, 1, 1000) > 0 }
    }

    fn handle(&mut self, wd: WatchDescriptor, mask: EventMask, name: Option<&OsStr>) {
        if mask.contains(EventMask::IGNORED) {
            self.paths.remove(&wd);
            return;
        }
        if !mask.contains(EventMask::ISDIR) {
            return;
        }
        let (Some(parent), Some(name)) = (self.paths.get(&wd), name) else {
            return;
        };
        let Some(name) = name.to_str() else {
            self.metrics.failure(Failure::BadCgroupName);
            return;
        };
        let path = join(parent, name);
        if mask.intersects(EventMask::CREATE | EventMask::MOVED_TO) {
            let depth = path.matches('/').count() + 1;
            let dir = self.root.join(&path);
            let mut found = vec![];
            let (inotify, paths, metrics) = (&mut self.inotify, &mut self.paths, &self.metrics);
            walk(&dir, &path, depth, &mut found, &mut |dir, rel| {
                add_watch(inotify, paths, metrics, dir, rel)
            });
            if !found.is_empty() {
                debug!(cgroup = %path, count = found.len(), "cgroup created");
                self.send(TreeEvent::Created(found));
            }
        } else if mask.intersects(EventMask::DELETE | EventMask::MOVED_FROM) {
            debug!(cgroup = %path, "cgroup removed");
            self.send(TreeEvent::Removed(path));
        }
    }

    fn snapshot(&mut self) {
        for wd in self.paths.drain().map(|(wd, _)| wd).collect::<Vec<_>>() {
            let _ = self.inotify.watches().remove(wd);
        }
        let mut found = vec![];
        let (inotify, paths, metrics) = (&mut self.inotify, &mut self.paths, &self.metrics);
        add_watch(inotify, paths, metrics, &self.root, "");
        walk(&self.root, "", 0, &mut found, &mut |dir, rel| {
            add_watch(inotify, paths, metrics, dir, rel)
        });
        self.send(TreeEvent::Snapshot(found));
    }

    fn send(&mut self, event: TreeEvent) {
        self.subscribers.retain_mut(|s| s(event.clone()));
    }
}

/// Watch `dir` before it is read, so nothing created meanwhile is missed.
fn add_watch(
    inotify: &mut Inotify,
    paths: &mut HashMap<WatchDescriptor, String>,
    metrics: &Metrics,
    dir: &Path,
    rel: &str,
) {
    match inotify.watches().add(dir, MASK) {
        Ok(wd) => {
            paths.insert(wd, rel.to_string());
        }
        // Gone already: its removal event follows.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            warn!(cgroup = %dir.display(), error = %e,
                "cannot watch this cgroup (raise fs.inotify.max_user_watches?); changes below it wait for the next rescan");
            metrics.failure(Failure::CgroupWatch);
        }
    }
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

/// Collect `dir` (unless it is the root, `rel` empty) and its subdirectories
/// depth first, parents before children; `on_dir` sees each directory
/// collected before it is read.
fn walk(
    dir: &Path,
    rel: &str,
    depth: usize,
    out: &mut Vec<Cgroup>,
    on_dir: &mut dyn FnMut(&Path, &str),
) {
    if !rel.is_empty() {
        // Vanished between the event and now: nothing to report.
        let Ok(md) = fs::metadata(dir) else { return };
        out.push((rel.to_string(), md.ino()));
        on_dir(dir, rel);
    }
    if depth >= MAX_DEPTH {
        return;
    }
    let Ok(children) = fs::read_dir(dir) else {
        return;
    };
    for child in children.flatten() {
        if !child.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = child.file_name();
        let Some(name) = name.to_str() else { continue };
        walk(&child.path(), &join(rel, name), depth + 1, out, on_dir);
    }
}
