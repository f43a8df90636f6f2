//! The identity names file for people and the node's consumers
//! (`/run/prism/identities.json`, a pod identity's namespace apart):
//! rewritten when the names change, at most
//! once a second; a failed write is logged and tried again next time.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prism_bus::names::{NamedIdentity, NamesFile};
use tracing::{debug, warn};

/// The file is rewritten at most this often.
const EVERY: Duration = Duration::from_secs(1);

pub struct NamesWriter {
    /// `None`: names are written nowhere.
    path: Option<PathBuf>,
    /// What was last written, and when.
    last: BTreeMap<u32, (Arc<str>, Option<Arc<str>>)>,
    written_at: Option<Instant>,
}

impl NamesWriter {
    pub fn new(path: Option<PathBuf>) -> Self {
        NamesWriter {
            path,
            last: BTreeMap::new(),
            written_at: None,
        }
    }

    /// Write `names()` if it is time and they changed (`names` is only
    /// computed when it is time).
    pub fn update(
        &mut self,
        now: Instant,
        names: impl FnOnce() -> BTreeMap<u32, (Arc<str>, Option<Arc<str>>)>,
    ) {
        let Some(path) = &self.path else {
            return;
        };
        if self
            .written_at
            .is_some_and(|t| now.duration_since(t) < EVERY)
        {
            return;
        }
        let names = names();
        if self.written_at.is_some() && names == self.last {
            return;
        }
        let file = NamesFile::new(
            names
                .iter()
                .map(|(&identity, (name, namespace))| {
                    let named = NamedIdentity::new(identity, name);
                    match namespace {
                        Some(ns) => named.in_namespace(ns),
                        None => named,
                    }
                })
                .collect(),
        );
        match prism_bus::names::write(path, &file) {
            Ok(()) => debug!(names = names.len(), file = %path.display(), "identity names written"),
            Err(e) => {
                warn!(file = %path.display(), error = %e, "writing the identity names failed; next time")
            }
        }
        self.last = names;
        self.written_at = Some(now);
    }
}
