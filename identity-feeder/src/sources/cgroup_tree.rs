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
use std::io;
use std::os::fd::AsRawFd;
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

/// A cgroup: its path below the root (no leading `/`) and its id. The path
/// is shared by everyone who keeps it (this watcher, the reconciler, the
/// cgroup source): a node's 100,000 paths are held once.
pub type Cgroup = (Arc<str>, u64);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeEvent {
    /// Every cgroup below the root now; what is not here is gone.
    Snapshot(Vec<Cgroup>),
    /// A new cgroup and everything already below it, parents first.
    Created(Vec<Cgroup>),
    /// A cgroup and everything below it are gone (or moved away).
    Removed(Arc<str>),
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

struct Watcher {
    root: PathBuf,
    inotify: Inotify,
    /// Watched directory -> its path below the root.
    paths: HashMap<WatchDescriptor, Arc<str>>,
    subscribers: Vec<Subscriber>,
    metrics: Arc<Metrics>,
    /// The last snapshot could not read the whole tree: none was sent, and
    /// one is tried again each second.
    snapshot_failed: bool,
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
            snapshot_failed: false,
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
                if self.snapshot_failed {
                    self.snapshot();
                }
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
        let path: Arc<str> = Arc::from(join(parent, name));
        if mask.intersects(EventMask::CREATE | EventMask::MOVED_TO) {
            let depth = path.matches('/').count() + 1;
            let dir = self.root.join(&*path);
            let mut found = vec![];
            let (inotify, paths, metrics) = (&mut self.inotify, &mut self.paths, &self.metrics);
            let read = walk(&dir, &path, depth, &mut found, &mut |dir, rel| {
                add_watch(inotify, paths, metrics, dir, rel)
            });
            if let Err(e) = read {
                // what was read is sent; a snapshot catches up on the rest
                warn!(cgroup = %path, error = %e, "reading a new cgroup failed; rescanning");
                self.metrics.failure(Failure::CgroupWatch);
                self.snapshot_failed = true;
            }
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
        add_watch(inotify, paths, metrics, &self.root, &Arc::from(""));
        let read = walk(&self.root, "", 0, &mut found, &mut |dir, rel| {
            add_watch(inotify, paths, metrics, dir, rel)
        });
        match read {
            Ok(()) => {
                if self.snapshot_failed {
                    warn!(cgroups = found.len(), "the cgroup tree reads again");
                }
                self.snapshot_failed = false;
                self.send(TreeEvent::Snapshot(found));
            }
            // A snapshot stands for the whole tree: a part of it would delete
            // the entries of every cgroup it missed (descriptors exhausted
            // once took a bus from 21 entries to 0).
            Err(e) => {
                if !self.snapshot_failed {
                    warn!(error = %e, read = found.len(),
                        "reading the cgroup tree failed; keeping every entry, retrying each second");
                }
                self.metrics.failure(Failure::CgroupWatch);
                self.snapshot_failed = true;
            }
        }
    }

    fn send(&mut self, event: TreeEvent) {
        self.subscribers.retain_mut(|s| s(event.clone()));
    }
}

/// Watch `dir` before it is read, so nothing created meanwhile is missed.
fn add_watch(
    inotify: &mut Inotify,
    paths: &mut HashMap<WatchDescriptor, Arc<str>>,
    metrics: &Metrics,
    dir: &Path,
    rel: &Arc<str>,
) {
    match inotify.watches().add(dir, MASK) {
        Ok(wd) => {
            paths.insert(wd, rel.clone());
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
/// collected before it is read (prism_bus::cgroup::walk_tree: a directory
/// that vanished meanwhile is skipped, any other failed read is an error).
fn walk(
    dir: &Path,
    rel: &str,
    depth: usize,
    out: &mut Vec<Cgroup>,
    on_dir: &mut dyn FnMut(&Path, &Arc<str>),
) -> io::Result<()> {
    prism_bus::cgroup::walk_tree(dir, rel, depth, MAX_DEPTH, &mut |dir, rel, id| {
        let rel: Arc<str> = Arc::from(rel);
        on_dir(dir, &rel);
        out.push((rel, id));
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for d in ["a/b/c", "a/d", "e"] {
            fs::create_dir_all(t.path().join(d)).unwrap();
        }
        fs::write(t.path().join("a/cpu.weight"), "100").unwrap();
        t
    }

    fn paths(found: &[Cgroup]) -> Vec<&str> {
        let mut p: Vec<&str> = found.iter().map(|(p, _)| &**p).collect();
        p.sort_unstable();
        p
    }

    #[test]
    fn walks_directories_parents_first_and_skips_files() {
        let t = tree();
        let mut found = vec![];
        walk(t.path(), "", 0, &mut found, &mut |_, _| {}).unwrap();
        assert_eq!(paths(&found), ["a", "a/b", "a/b/c", "a/d", "e"]);
        let at = |p: &str| found.iter().position(|(q, _)| &**q == p).unwrap();
        assert!(at("a") < at("a/b") && at("a/b") < at("a/b/c"));
        let mut below = vec![];
        walk(&t.path().join("a/b"), "a/b", 2, &mut below, &mut |_, _| {}).unwrap();
        assert_eq!(paths(&below), ["a/b", "a/b/c"]);
    }

    #[test]
    fn a_vanished_directory_is_nothing_and_a_failed_read_an_error() {
        let t = tree();
        let mut found = vec![];
        walk(
            &t.path().join("gone"),
            "gone",
            1,
            &mut found,
            &mut |_, _| {},
        )
        .unwrap();
        assert!(found.is_empty());
        // A directory that cannot be read (here: not a directory at all;
        // in the field: no descriptor left) is no empty directory.
        let e = walk(
            &t.path().join("a/cpu.weight"),
            "",
            0,
            &mut found,
            &mut |_, _| {},
        );
        assert_eq!(e.unwrap_err().raw_os_error(), Some(libc::ENOTDIR));
    }

    #[test]
    fn running_out_of_descriptors_fails_the_walk() {
        // A child process, so the lowered limit touches no other test.
        let t = tree();
        // SAFETY: fork in a test; the child only calls async-signal-safe
        // functions and walks, then exits without unwinding.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: plain syscalls in the child.
            let code = unsafe {
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
                match walk(t.path(), "", 0, &mut vec![], &mut |_, _| {}) {
                    Err(e) if e.raw_os_error() == Some(libc::EMFILE) => 0,
                    Err(_) => 2,
                    Ok(()) => 1,
                }
            };
            // SAFETY: leave the child at once.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for the child just forked.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status), "{status}");
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "1: read as empty, 2: another error"
        );
    }
}
