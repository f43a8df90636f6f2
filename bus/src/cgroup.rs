//! cgroup v2 ids, paths and processes, as the bus keys them.
//!
//! A cgroup v2 id is the inode number of its directory in cgroupfs (what the
//! kernel's `kn->id` is on 64-bit hosts). Works on a pure v2 host and on a
//! hybrid one (v2 mounted at /sys/fs/cgroup/unified).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Deepest directory walked when indexing cgroupfs; real trees are < 10.
const MAX_DEPTH: usize = 32;

/// Where cgroup v2 is mounted (the first cgroup2 mount of this namespace).
pub fn cgroup2_root() -> io::Result<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts")?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, dir, fstype) = (f.next()?, f.next()?, f.next()?);
            (fstype == "cgroup2").then(|| PathBuf::from(unescape_mount_path(dir)))
        })
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no cgroup2 filesystem is mounted"))
}

/// /proc/self/mounts escapes spaces and a few other bytes as \ooo.
fn unescape_mount_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v as char);
            i += 4;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// The id of the cgroup at `path`.
pub fn cgroup_id(path: &Path) -> io::Result<u64> {
    let md = fs::metadata(path)?;
    if !md.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a cgroup directory", path.display()),
        ));
    }
    Ok(md.ino())
}

/// The cgroup v2 directory a process is in.
pub fn pid_cgroup(root: &Path, pid: u32) -> io::Result<PathBuf> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("process {pid} has no cgroup v2 membership"),
            )
        })?;
    Ok(root.join(rel.trim_start_matches('/')))
}

/// id -> path for every cgroup under `root` (inclusive).
pub fn index_ids(root: &Path) -> HashMap<u64, PathBuf> {
    let mut index = HashMap::new();
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(md) = fs::metadata(&dir) else { continue };
        index.insert(md.ino(), dir.clone());
        if depth >= MAX_DEPTH {
            continue;
        }
        let Ok(children) = fs::read_dir(&dir) else {
            continue;
        };
        for child in children.flatten() {
            if child.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push((child.path(), depth + 1));
            }
        }
    }
    index
}

/// A cgroup removed while it was read: cgroupfs answers NotFound, or
/// ENODEV for the files of a cgroup that is going away.
pub fn vanished(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENODEV)
}

/// Walk `dir` (`rel`: its path below the tree's root, "" for the root,
/// `depth` levels down) and the directories below it, to `max_depth`,
/// depth first, parents before children: `visit(path, rel, id)` sees each
/// one but the root, before it is read. A directory that vanished meanwhile
/// is skipped; any other failure to read one (descriptors exhausted, ...) is
/// an error, never "no children". Names that are not UTF-8 are skipped.
pub fn walk_tree(
    dir: &Path,
    rel: &str,
    depth: usize,
    max_depth: usize,
    visit: &mut dyn FnMut(&Path, &str, u64) -> io::Result<()>,
) -> io::Result<()> {
    if !rel.is_empty() {
        let md = match fs::metadata(dir) {
            Ok(md) => md,
            Err(e) if vanished(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        visit(dir, rel, md.ino())?;
    }
    if depth >= max_depth {
        return Ok(());
    }
    let children = match fs::read_dir(dir) {
        Ok(children) => children,
        Err(e) if vanished(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    for child in children {
        let child = match child {
            Ok(child) => child,
            Err(e) if vanished(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        match child.file_type() {
            Ok(t) if t.is_dir() => {}
            Ok(_) => continue,
            Err(e) if vanished(&e) => continue,
            Err(e) => return Err(e),
        }
        let name = child.file_name();
        let Some(name) = name.to_str() else { continue };
        let rel = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        walk_tree(&child.path(), &rel, depth + 1, max_depth, visit)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(unescape_mount_path("/a\\040b"), "/a b");
        assert_eq!(unescape_mount_path("/plain"), "/plain");
        assert_eq!(unescape_mount_path("/end\\"), "/end\\");
    }

    #[test]
    fn finds_this_process_cgroup() {
        let root = cgroup2_root().expect("cgroup2 mounted");
        let mine = pid_cgroup(&root, std::process::id()).expect("own cgroup");
        assert!(mine.starts_with(&root));
        let id = cgroup_id(&mine).expect("id");
        assert_eq!(index_ids(&root).get(&id), Some(&mine));
    }
}
