//! The identity names file: for each identity on the bus, a name people
//! know it by (`shop/web`, `system.slice/postgresql*.service`). The bus
//! carries numbers; consumers that show identities to people (prism-net's
//! metrics, prism-trace's events) read the names here. prism-feeder writes
//! it (atomically: a new file renamed over the old) whenever the set of
//! identities changes; readers re-read it when it changes.
//!
//! ```json
//! {"abi_version": 1, "identities": [{"identity": 300, "name": "shop/web"}]}
//! ```
//!
//! Like the bus, it is root's: the directory is made 0700.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::abi::{ABI_VERSION, IDENTITY_MASK};

/// Where prism-feeder writes it and consumers look for it.
pub const DEFAULT_NAMES_PATH: &str = "/run/prism/identities.json";

/// Largest file a reader accepts.
const MAX_FILE: u64 = 64 << 20;
/// Longest name, in bytes, writer and readers agree on.
pub const MAX_NAME: usize = 253;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedIdentity {
    pub identity: u32,
    pub name: String,
    /// The Kubernetes namespace of a pod identity (`name` is then
    /// `namespace/...`); absent for anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// The longest Kubernetes namespace (a DNS-1123 label).
const MAX_NAMESPACE: usize = 63;

fn is_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= MAX_NAMESPACE
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl NamedIdentity {
    /// `name` as every reader takes it: control characters escaped, and
    /// cut to [`MAX_NAME`] bytes (ending in `...`) if longer; an empty
    /// name becomes `?`. A long service account, label or unit name must
    /// not cost the file its readers.
    pub fn new(identity: u32, name: &str) -> NamedIdentity {
        let mut shown: String = name.chars().flat_map(char::escape_debug).collect();
        if shown.is_empty() {
            shown.push('?');
        }
        if shown.len() > MAX_NAME {
            let mut end = MAX_NAME - 3;
            while !shown.is_char_boundary(end) {
                end -= 1;
            }
            shown.truncate(end);
            shown.push_str("...");
        }
        NamedIdentity {
            identity,
            name: shown,
            namespace: None,
        }
    }

    /// A pod identity's: `namespace` is kept if it is one Kubernetes could
    /// have and `name` starts with it and a `/`.
    pub fn in_namespace(mut self, namespace: &str) -> NamedIdentity {
        if is_namespace(namespace)
            && self
                .name
                .strip_prefix(namespace)
                .is_some_and(|rest| rest.starts_with('/'))
        {
            self.namespace = Some(namespace.to_string());
        }
        self
    }

    /// Whether a reader takes it: a 24-bit identity and a name
    /// [`NamedIdentity::new`] could have written.
    pub fn is_valid(&self) -> bool {
        self.identity & !IDENTITY_MASK == 0
            && !self.name.is_empty()
            && self.name.len() <= MAX_NAME
            && !self.name.chars().any(char::is_control)
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| is_namespace(ns) && self.name.starts_with(&format!("{ns}/")))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamesFile {
    pub abi_version: u32,
    pub identities: Vec<NamedIdentity>,
}

impl NamesFile {
    pub fn new(identities: Vec<NamedIdentity>) -> NamesFile {
        NamesFile {
            abi_version: ABI_VERSION,
            identities,
        }
    }
}

/// Replace the file at `path` with `names`, atomically.
pub fn write(path: &Path, names: &NamesFile) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = path.with_extension("json.tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&serde_json::to_vec(names).map_err(io::Error::other)?)?;
    f.sync_data()?;
    fs::rename(&tmp, path)
}

/// Read and check the file: its ABI version (else `InvalidData`), and each
/// entry ([`NamedIdentity::is_valid`]): one that is not valid is left out,
/// never the whole file.
pub fn read(path: &Path) -> io::Result<NamesFile> {
    let len = fs::metadata(path)?.len();
    if len > MAX_FILE {
        return Err(invalid(format!(
            "{} is {len} bytes, more than a names file has",
            path.display()
        )));
    }
    parse(&fs::read(path)?, path)
}

/// [`read`]'s checks on a names file's bytes; `origin` names it in errors.
pub fn parse(bytes: &[u8], origin: &Path) -> io::Result<NamesFile> {
    let mut names: NamesFile =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("{}: {e}", origin.display())))?;
    if names.abi_version != ABI_VERSION {
        return Err(invalid(format!(
            "{} is for bus ABI v{}, this build speaks v{ABI_VERSION}",
            origin.display(),
            names.abi_version
        )));
    }
    names.identities.retain(NamedIdentity::is_valid);
    Ok(names)
}

/// A consumer's view of the names file: re-read when it changes.
#[derive(Debug, Default)]
pub struct Names {
    path: Option<std::path::PathBuf>,
    seen: Option<std::time::SystemTime>,
    by_id: std::collections::HashMap<u32, NamedIdentity>,
}

impl Names {
    /// Names from the file at `path` (`None`: numbers only).
    pub fn new(path: Option<std::path::PathBuf>) -> Names {
        Names {
            path,
            ..Names::default()
        }
    }

    /// Re-read the file if it changed. A file not written yet leaves the
    /// names empty; one that does not read is an error, and the names read
    /// before stay.
    pub fn refresh(&mut self) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let Ok(mtime) = fs::metadata(path).and_then(|m| m.modified()) else {
            return Ok(());
        };
        if self.seen == Some(mtime) {
            return Ok(());
        }
        self.seen = Some(mtime);
        let file = read(path)?;
        self.by_id = file
            .identities
            .into_iter()
            .map(|n| (n.identity, n))
            .collect();
        Ok(())
    }

    /// Every identity the file names, with its name.
    pub fn named(&self) -> impl Iterator<Item = (u32, &str)> {
        self.by_id.iter().map(|(&id, n)| (id, n.name.as_str()))
    }

    /// The name of `identity`: a well-known one's, else the file's.
    pub fn get(&self, identity: u32) -> Option<&str> {
        crate::Identity::new(identity)
            .ok()
            .and_then(crate::Identity::well_known_name)
            .or_else(|| self.by_id.get(&identity).map(|n| n.name.as_str()))
    }

    /// A pod identity's namespace and its name within it (`shop/web`:
    /// `(Some("shop"), "web")`); anything else's whole name, no namespace.
    pub fn workload(&self, identity: u32) -> Option<(Option<&str>, &str)> {
        if let Some(n) = self.by_id.get(&identity)
            && let Some(ns) = n.namespace.as_deref()
            && let Some(rest) = n.name.strip_prefix(ns).and_then(|r| r.strip_prefix('/'))
        {
            return Some((Some(ns), rest));
        }
        self.get(identity).map(|name| (None, name))
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let dir = std::env::temp_dir().join(format!("prism-names-{}", std::process::id()));
        let path = dir.join("identities.json");
        let names = NamesFile::new(vec![
            NamedIdentity::new(300, "shop/web").in_namespace("shop"),
            NamedIdentity::new(302, "system.slice/cron.service"),
        ]);
        write(&path, &names).unwrap();
        assert_eq!(read(&path).unwrap(), names);
        assert_eq!(names.identities[0].namespace.as_deref(), Some("shop"));
        // An entry no writer makes costs only itself.
        for bad_entry in [
            r#"{"identity":16777216,"name":"x"}"#,
            r#"{"identity":300,"name":"a\u001bb"}"#,
            r#"{"identity":300,"name":""}"#,
            &format!(
                r#"{{"identity":300,"name":"{}"}}"#,
                "x".repeat(MAX_NAME + 1)
            ),
            r#"{"identity":300,"name":"shop/web","namespace":"other"}"#,
            r#"{"identity":300,"name":"shop/web","namespace":"Shop"}"#,
        ] {
            let text = format!(
                r#"{{"abi_version":1,"identities":[{bad_entry},{{"identity":301,"name":"shop/db"}}]}}"#
            );
            fs::write(&path, text).unwrap();
            let read = read(&path).unwrap();
            assert_eq!(
                read.identities,
                [NamedIdentity::new(301, "shop/db")],
                "{bad_entry}"
            );
        }
        for bad in [
            r#"{"abi_version":2,"identities":[]}"#,
            r#"{"abi_version":1,"identities":[{"identity":"x","name":"x"}]}"#,
            r#"{"abi_version":1}"#,
        ] {
            fs::write(&path, bad).unwrap();
            assert_eq!(
                read(&path).unwrap_err().kind(),
                io::ErrorKind::InvalidData,
                "{bad}"
            );
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_pods_namespace_is_kept_only_when_its_name_is_in_it() {
        assert_eq!(
            NamedIdentity::new(300, "shop/web")
                .in_namespace("shop")
                .namespace
                .as_deref(),
            Some("shop")
        );
        for (name, ns) in [
            ("shop/web", "sho"),
            ("shopweb", "shop"),
            ("a/b", "A"),
            ("x/y", ""),
        ] {
            assert_eq!(
                NamedIdentity::new(300, name).in_namespace(ns).namespace,
                None,
                "{name} {ns}"
            );
        }
        let dir = std::env::temp_dir().join(format!("prism-names-ns-{}", std::process::id()));
        let path = dir.join("identities.json");
        write(
            &path,
            &NamesFile::new(vec![
                NamedIdentity::new(300, "shop/web").in_namespace("shop"),
                NamedIdentity::new(301, "system.slice/cron.service"),
            ]),
        )
        .unwrap();
        let mut names = Names::new(Some(path));
        names.refresh().unwrap();
        assert_eq!(names.workload(300), Some((Some("shop"), "web")));
        assert_eq!(
            names.workload(301),
            Some((None, "system.slice/cron.service"))
        );
        assert_eq!(names.workload(1), Some((None, "host")));
        assert_eq!(names.workload(999), None);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn any_name_is_written_as_one_every_reader_takes() {
        let long_unit = format!("system.slice/{}.scope", "é".repeat(200));
        for name in ["shop/web", "", "a\u{1b}[2Jb", &"s".repeat(300), &long_unit] {
            let n = NamedIdentity::new(300, name);
            assert!(n.is_valid(), "{name:?} -> {:?}", n.name);
            if name.len() <= MAX_NAME && !name.is_empty() && !name.contains('\u{1b}') {
                assert_eq!(n.name, name);
            }
        }
        assert_eq!(NamedIdentity::new(1, "a\nb").name, "a\\nb");
        let cut = NamedIdentity::new(1, &long_unit).name;
        assert!(cut.ends_with("...") && cut.len() <= MAX_NAME, "{cut}");
    }

    #[test]
    fn names_follow_the_file_and_keep_the_last_good_one() {
        let dir = std::env::temp_dir().join(format!("prism-names-cache-{}", std::process::id()));
        let path = dir.join("identities.json");
        let mut names = Names::new(Some(path.clone()));
        names.refresh().unwrap();
        assert_eq!(names.get(300), None, "no file yet");
        assert_eq!(names.get(1), Some("host"));
        let one = |id, name: &str| NamesFile::new(vec![NamedIdentity::new(id, name)]);
        write(&path, &one(300, "shop/web")).unwrap();
        names.refresh().unwrap();
        assert_eq!(names.get(300), Some("shop/web"));
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&path, "garbage").unwrap();
        assert!(names.refresh().is_err());
        assert_eq!(names.get(300), Some("shop/web"), "the last good names stay");
        let _ = fs::remove_dir_all(&dir);
    }
}
