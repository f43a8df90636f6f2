//! The pinned bus maps: create-or-open for the one writer (the feeder), open
//! for everyone else (prismctl, consumers' user space).
//!
//! Owns the shape check: a pin whose type, key, value or flags differ from
//! ABI v1 is refused, never reused. Only [`BusWriter`] changes entries, and
//! only one of it may exist per pin directory (an exclusive flock on it).

use std::ffi::CString;
use std::fs::{self, File};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};
use thiserror::Error;

use crate::abi::{
    ABI_VERSION, AbiError, DEFAULT_PIN_DIR, Entry, IDENTITY_MAP_FLAGS, IDENTITY_MAP_NAME, KEY_SIZE,
    META_MAP_FLAGS, META_MAP_NAME, META_SIZE, Meta, VALUE_SIZE,
};

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
const BPFFS_MOUNT: &str = "/sys/fs/bpf";

#[derive(Debug, Error)]
pub enum BusError {
    #[error("no bus pinned at {}: is prism-feeder running?", .0.display())]
    NotPinned(PathBuf),
    #[error("{path} is not a Prism bus map: {what} is {found}, ABI v1 wants {expected}")]
    ShapeMismatch {
        path: PathBuf,
        what: &'static str,
        expected: String,
        found: String,
    },
    #[error("{} speaks bus ABI v{found}, this build speaks v{}", .path.display(), ABI_VERSION)]
    AbiVersion { path: PathBuf, found: u32 },
    #[error("{}: {reason}", .path.display())]
    UnsafeDir { path: PathBuf, reason: String },
    #[error("another writer holds the bus at {} (only prism-feeder writes it)", .0.display())]
    Busy(PathBuf),
    #[error("the bus at {} is full ({max} entries): raise --max-entries", .path.display())]
    Full { path: PathBuf, max: u32 },
    #[error("entry for cgroup {cgroup_id} is invalid: {source}")]
    BadEntry { cgroup_id: u64, source: AbiError },
    #[error("{what} {}: {source}", .path.display())]
    Bpf {
        what: &'static str,
        path: PathBuf,
        source: libbpf_rs::Error,
    },
    #[error("{what} {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, BusError>;

/// Where the two pins live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusPaths {
    pub dir: PathBuf,
}

impl Default for BusPaths {
    fn default() -> Self {
        BusPaths::new(DEFAULT_PIN_DIR)
    }
}

impl BusPaths {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        BusPaths { dir: dir.into() }
    }

    pub fn identity(&self) -> PathBuf {
        self.dir.join(IDENTITY_MAP_NAME)
    }

    pub fn meta(&self) -> PathBuf {
        self.dir.join(META_MAP_NAME)
    }
}

/// A read-only view of a pinned bus.
#[derive(Debug)]
pub struct Bus {
    paths: BusPaths,
    identity: MapHandle,
    meta: MapHandle,
    max_entries: u32,
}

impl Bus {
    /// Open an existing bus read-only, checking both maps' shape.
    pub fn open(paths: &BusPaths) -> Result<Bus> {
        Bus::open_with(paths, libbpf_sys::BPF_F_RDONLY)
    }

    fn open_with(paths: &BusPaths, file_flags: u32) -> Result<Bus> {
        let identity_path = paths.identity();
        if !identity_path.exists() {
            return Err(BusError::NotPinned(identity_path));
        }
        check_private_dir(&paths.dir)?;
        let identity = open_pinned(&identity_path, file_flags)?;
        let max_entries = check_shape(&identity, &identity_path, &IDENTITY_SHAPE)?;
        let meta_path = paths.meta();
        if !meta_path.exists() {
            return Err(BusError::NotPinned(meta_path));
        }
        let meta = open_pinned(&meta_path, file_flags)?;
        check_shape(&meta, &meta_path, &META_SHAPE)?;
        let bus = Bus {
            paths: paths.clone(),
            identity,
            meta,
            max_entries,
        };
        let m = bus.meta()?;
        if m.abi_version != ABI_VERSION {
            return Err(BusError::AbiVersion {
                path: meta_path,
                found: m.abi_version,
            });
        }
        Ok(bus)
    }

    pub fn paths(&self) -> &BusPaths {
        &self.paths
    }

    pub fn max_entries(&self) -> u32 {
        self.max_entries
    }

    /// The identity map, for consumers that install it into their slots.
    pub fn identity_map(&self) -> &MapHandle {
        &self.identity
    }

    /// The meta map, for consumers that install it into their slots.
    pub fn meta_map(&self) -> &MapHandle {
        &self.meta
    }

    pub fn meta(&self) -> Result<Meta> {
        let bytes = self
            .meta
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .map_err(|source| self.bpf_err("reading", source, true))?
            .unwrap_or_else(|| vec![0; META_SIZE]);
        Meta::from_bytes(&bytes).map_err(|source| BusError::BadEntry {
            cgroup_id: 0,
            source,
        })
    }

    /// The entry for one cgroup id.
    pub fn get(&self, cgroup_id: u64) -> Result<Option<Entry>> {
        let bytes = self
            .identity
            .lookup(&cgroup_id.to_ne_bytes(), MapFlags::ANY)
            .map_err(|source| self.bpf_err("reading", source, false))?;
        bytes
            .map(|b| {
                Entry::from_bytes(&b).map_err(|source| BusError::BadEntry { cgroup_id, source })
            })
            .transpose()
    }

    /// Every entry, in the map's order. An entry deleted while iterating is
    /// skipped; a malformed value is reported, not hidden.
    pub fn iter(&self) -> impl Iterator<Item = (u64, Result<Entry>)> + '_ {
        self.identity.keys().filter_map(move |key| {
            let cgroup_id = u64::from_ne_bytes(key.as_slice().try_into().ok()?);
            match self.get(cgroup_id) {
                Ok(Some(e)) => Some((cgroup_id, Ok(e))),
                Ok(None) => None,
                Err(e) => Some((cgroup_id, Err(e))),
            }
        })
    }

    /// Number of entries, counted (not read from meta).
    pub fn count(&self) -> u64 {
        self.identity.keys().count() as u64
    }

    fn bpf_err(&self, what: &'static str, source: libbpf_rs::Error, meta: bool) -> BusError {
        let path = if meta {
            self.paths.meta()
        } else {
            self.paths.identity()
        };
        BusError::Bpf { what, path, source }
    }
}

/// The one writer of a bus. Holds an exclusive lock on the pin directory.
#[derive(Debug)]
pub struct BusWriter {
    bus: Bus,
    meta: Meta,
    _lock: File,
}

impl BusWriter {
    /// Create the bus (mounting bpffs at /sys/fs/bpf if needed), or open the
    /// one already pinned. `max_entries` applies to a new map only.
    pub fn create_or_open(paths: &BusPaths, max_entries: u32) -> Result<BusWriter> {
        ensure_bpffs(&paths.dir)?;
        ensure_private_dir(&paths.dir)?;
        let lock = lock_dir(&paths.dir)?;

        let identity_path = paths.identity();
        if !identity_path.exists() {
            let map = create_map(&IDENTITY_SHAPE, max_entries, &identity_path)?;
            pin(map, &identity_path)?;
        }
        let meta_path = paths.meta();
        let new_meta = !meta_path.exists();
        if new_meta {
            let map = create_map(&META_SHAPE, 1, &meta_path)?;
            pin(map, &meta_path)?;
        }

        let meta_fresh = Meta {
            abi_version: ABI_VERSION,
            generation: 0,
            entries: 0,
        };
        if new_meta {
            // Written before the ABI check below, which a zeroed meta would fail.
            let m = open_pinned(&meta_path, 0)?;
            write_meta(&m, &meta_path, &meta_fresh)?;
        }
        let bus = Bus::open_with(paths, 0)?;
        let stored = bus.meta()?;
        let mut writer = BusWriter {
            meta: Meta {
                abi_version: ABI_VERSION,
                // A new bus starts at the clock, far above any earlier bus's
                // generation, so no consumer cache can mistake it for an old one.
                generation: if stored.generation == 0 {
                    realtime_ns().max(1)
                } else {
                    stored.generation
                },
                entries: bus.count(),
            },
            bus,
            _lock: lock,
        };
        writer.commit()?;
        Ok(writer)
    }

    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    pub fn generation(&self) -> u64 {
        self.meta.generation
    }

    /// Insert or replace one entry. Visible at once; call [`Self::commit`]
    /// after a batch so consumers re-resolve their cached tasks.
    pub fn put(&mut self, cgroup_id: u64, entry: &Entry) -> Result<()> {
        let key = cgroup_id.to_ne_bytes();
        let value = entry.to_bytes();
        match self.bus.identity.update(&key, &value, MapFlags::NO_EXIST) {
            Ok(()) => {
                self.meta.entries += 1;
                Ok(())
            }
            Err(e) if e.kind() == libbpf_rs::ErrorKind::AlreadyExists => self
                .bus
                .identity
                .update(&key, &value, MapFlags::EXIST)
                .map_err(|source| self.bus.bpf_err("writing", source, false)),
            Err(e) if is_full(&e) => Err(BusError::Full {
                path: self.bus.paths.identity(),
                max: self.bus.max_entries,
            }),
            Err(source) => Err(self.bus.bpf_err("writing", source, false)),
        }
    }

    /// Remove one entry; `false` if there was none.
    pub fn delete(&mut self, cgroup_id: u64) -> Result<bool> {
        match self.bus.identity.delete(&cgroup_id.to_ne_bytes()) {
            Ok(()) => {
                self.meta.entries = self.meta.entries.saturating_sub(1);
                Ok(true)
            }
            Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(self.bus.bpf_err("deleting from", source, false)),
        }
    }

    /// Publish a batch: bump the generation and the entry count.
    pub fn commit(&mut self) -> Result<u64> {
        self.meta.generation += 1;
        write_meta(&self.bus.meta, &self.bus.paths.meta(), &self.meta)?;
        Ok(self.meta.generation)
    }

    /// Apply `puts` then `deletes`, then commit once. Stops at the first
    /// error; entries already written stay written and are committed.
    pub fn write_batch(&mut self, puts: &[(u64, Entry)], deletes: &[u64]) -> Result<u64> {
        let applied = puts
            .iter()
            .try_for_each(|(cgid, e)| self.put(*cgid, e))
            .and_then(|()| {
                deletes
                    .iter()
                    .try_for_each(|cgid| self.delete(*cgid).map(drop))
            });
        let generation = self.commit()?;
        applied.map(|()| generation)
    }
}

struct Shape {
    ty: MapType,
    key_size: u32,
    value_size: u32,
    flags: u32,
    name: &'static str,
}

const IDENTITY_SHAPE: Shape = Shape {
    ty: MapType::Hash,
    key_size: KEY_SIZE as u32,
    value_size: VALUE_SIZE as u32,
    flags: IDENTITY_MAP_FLAGS,
    name: IDENTITY_MAP_NAME,
};

const META_SHAPE: Shape = Shape {
    ty: MapType::Array,
    key_size: 4,
    value_size: META_SIZE as u32,
    flags: META_MAP_FLAGS,
    name: META_MAP_NAME,
};

/// Refuse a map that is not what ABI v1 says; return its max_entries.
fn check_shape(map: &MapHandle, path: &Path, want: &Shape) -> Result<u32> {
    let info = map.info().map_err(|source| BusError::Bpf {
        what: "querying",
        path: path.to_path_buf(),
        source,
    })?;
    let i = &info.info;
    let mismatch = |what, expected: String, found: String| {
        Err(BusError::ShapeMismatch {
            path: path.to_path_buf(),
            what,
            expected,
            found,
        })
    };
    let found_ty = MapType::from(i.type_);
    if found_ty != want.ty {
        return mismatch("type", format!("{:?}", want.ty), format!("{found_ty:?}"));
    }
    if i.key_size != want.key_size {
        return mismatch(
            "key size",
            want.key_size.to_string(),
            i.key_size.to_string(),
        );
    }
    if i.value_size != want.value_size {
        return mismatch(
            "value size",
            want.value_size.to_string(),
            i.value_size.to_string(),
        );
    }
    if i.map_flags != want.flags {
        return mismatch(
            "map_flags",
            format!("{:#x}", want.flags),
            format!("{:#x}", i.map_flags),
        );
    }
    Ok(i.max_entries)
}

fn create_map(shape: &Shape, max_entries: u32, path: &Path) -> Result<MapHandle> {
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as libbpf_sys::size_t,
        map_flags: shape.flags,
        ..Default::default()
    };
    MapHandle::create(
        shape.ty,
        Some(shape.name),
        shape.key_size,
        shape.value_size,
        max_entries,
        &opts,
    )
    .map_err(|source| BusError::Bpf {
        what: "creating",
        path: path.to_path_buf(),
        source,
    })
}

fn pin(mut map: MapHandle, path: &Path) -> Result<()> {
    map.pin(path).map_err(|source| BusError::Bpf {
        what: "pinning",
        path: path.to_path_buf(),
        source,
    })
}

fn open_pinned(path: &Path, file_flags: u32) -> Result<MapHandle> {
    MapHandle::from_pinned_path_with_file_flags(path, file_flags).map_err(|source| {
        if source.kind() == libbpf_rs::ErrorKind::NotFound {
            BusError::NotPinned(path.to_path_buf())
        } else {
            BusError::Bpf {
                what: "opening",
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

fn write_meta(map: &MapHandle, path: &Path, meta: &Meta) -> Result<()> {
    map.update(&0u32.to_ne_bytes(), &meta.to_bytes(), MapFlags::ANY)
        .map_err(|source| BusError::Bpf {
            what: "writing",
            path: path.to_path_buf(),
            source,
        })
}

fn is_full(e: &libbpf_rs::Error) -> bool {
    // The kernel says E2BIG when a hash map has no free element.
    e.kind() == libbpf_rs::ErrorKind::TooBig
}

fn realtime_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BusError + use<> {
    let path = path.to_path_buf();
    move |source| BusError::Io { what, path, source }
}

/// Make sure `dir` will live on a bpf filesystem, mounting the conventional
/// one at /sys/fs/bpf when the host has not (bpffs is not always mounted).
pub fn ensure_bpffs(dir: &Path) -> Result<()> {
    let existing = dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or_else(|| Path::new("/"));
    if fs_magic(existing)? == BPF_FS_MAGIC {
        return Ok(());
    }
    if existing == Path::new(BPFFS_MOUNT) {
        mount_bpffs()?;
        if fs_magic(existing)? == BPF_FS_MAGIC {
            return Ok(());
        }
    }
    Err(BusError::UnsafeDir {
        path: dir.to_path_buf(),
        reason: "is not on a bpf filesystem (mount -t bpf bpf /sys/fs/bpf)".into(),
    })
}

fn fs_magic(path: &Path) -> Result<i64> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| BusError::UnsafeDir {
        path: path.to_path_buf(),
        reason: "path contains a NUL byte".into(),
    })?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid C string and st a valid out-pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io_err("statfs", path)(std::io::Error::last_os_error()));
    }
    Ok(st.f_type as i64)
}

fn mount_bpffs() -> Result<()> {
    let target = Path::new(BPFFS_MOUNT);
    let c = CString::new(BPFFS_MOUNT).expect("no NUL");
    let bpf = CString::new("bpf").expect("no NUL");
    // Not the kernel's default 1777: a user could make the pin directory
    // first, and the feeder would refuse to start.
    let data = CString::new("mode=0755").expect("no NUL");
    // SAFETY: all pointers are valid C strings.
    let rc = unsafe {
        libc::mount(
            bpf.as_ptr(),
            c.as_ptr(),
            bpf.as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(io_err("mounting bpffs on", target)(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// The pin directory is root's alone (mode 0700): the bus tells the node's
/// schedulers who is critical, so nobody else may even list it.
fn ensure_private_dir(dir: &Path) -> Result<()> {
    match fs::create_dir_all(dir) {
        Ok(()) => {}
        Err(e) => return Err(io_err("creating", dir)(e)),
    }
    let md = fs::metadata(dir).map_err(io_err("reading", dir))?;
    if md.uid() != 0 {
        return Err(BusError::UnsafeDir {
            path: dir.to_path_buf(),
            reason: format!("is owned by uid {}, not root", md.uid()),
        });
    }
    if md.permissions().mode() & 0o777 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(io_err("restricting to 0700", dir))?;
    }
    check_private_dir(dir)
}

/// What every reader checks before it trusts the maps in `dir`: root's, and
/// nobody else's to write, list or enter (0700 or stricter), so the maps in
/// it are the ones the feeder pinned.
fn check_private_dir(dir: &Path) -> Result<()> {
    let md = fs::symlink_metadata(dir).map_err(io_err("reading", dir))?;
    let unsafe_dir = |reason: String| BusError::UnsafeDir {
        path: dir.to_path_buf(),
        reason,
    };
    if !md.is_dir() {
        return Err(unsafe_dir("is not a directory".into()));
    }
    if md.uid() != 0 {
        return Err(unsafe_dir(format!(
            "is owned by uid {}, not root",
            md.uid()
        )));
    }
    let mode = md.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(unsafe_dir(format!(
            "has mode {mode:04o}: others could replace the maps (it must be 0700)"
        )));
    }
    Ok(())
}

fn lock_dir(dir: &Path) -> Result<File> {
    let f = File::open(dir).map_err(io_err("opening", dir))?;
    // SAFETY: f owns a valid fd for the duration of the call.
    if unsafe { libc::flock(f.as_fd().as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return if e.kind() == std::io::ErrorKind::WouldBlock {
            Err(BusError::Busy(dir.to_path_buf()))
        } else {
            Err(io_err("locking", dir)(e))
        };
    }
    Ok(f)
}
