//! One bus entry as prismctl shows it, in a table or as JSON.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use prism_bus::Entry;
use prism_bus::cgroup;
use serde::Serialize;

/// cgroup id -> path, for the cgroups that exist now.
pub struct CgroupPaths(HashMap<u64, PathBuf>);

impl CgroupPaths {
    pub fn index() -> Self {
        CgroupPaths(
            cgroup::cgroup2_root()
                .map(|r| cgroup::index_ids(&r))
                .unwrap_or_default(),
        )
    }

    pub fn path_of(&self, id: u64) -> Option<PathBuf> {
        self.0.get(&id).cloned()
    }
}

#[derive(Serialize)]
pub struct Row {
    pub cgroup_id: u64,
    pub path: Option<PathBuf>,
    pub identity: u32,
    pub identity_name: Option<&'static str>,
    pub class: &'static str,
    pub weight: Option<u8>,
    pub facets: Vec<&'static str>,
    pub label_hash: String,
    pub updated_ns: u64,
    /// Seconds since the feeder wrote the entry; None if it gave no time.
    pub age_s: Option<f64>,
}

impl Row {
    pub const HEADER: &'static str =
        "CGROUP_ID       IDENTITY          CLASS     WEIGHT  FACETS             AGE  PATH";

    pub fn new(cgroup_id: u64, e: &Entry, path: Option<PathBuf>, now_ns: u64) -> Row {
        Row {
            cgroup_id,
            path,
            identity: e.identity.get(),
            identity_name: e.identity.well_known_name(),
            class: e.flags.class.name(),
            weight: e.flags.weight.get(),
            facets: e.flags.facets.names(),
            label_hash: format!("{:#018x}", e.label_hash),
            updated_ns: e.updated_ns,
            age_s: (e.updated_ns != 0).then(|| now_ns.saturating_sub(e.updated_ns) as f64 / 1e9),
        }
    }
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let identity = match self.identity_name {
            Some(n) => format!("{}({n})", self.identity),
            None => self.identity.to_string(),
        };
        let weight = self.weight.map_or("-".to_string(), |w| w.to_string());
        let facets = facets_text(&self.facets);
        let age = self.age_s.map_or("-".to_string(), human_age);
        let path = self
            .path
            .as_ref()
            .map_or("-".to_string(), |p| p.display().to_string());
        write!(
            f,
            "{:<15} {identity:<17} {:<9} {weight:>6}  {facets:<17} {age:>5}  {path}",
            self.cgroup_id, self.class
        )
    }
}

/// Facet names as a table shows them: `net,sched`, or `-` for none.
pub fn facets_text(facets: &[&str]) -> String {
    if facets.is_empty() {
        "-".to_string()
    } else {
        facets.join(",")
    }
}

pub fn human_age(s: f64) -> String {
    match s {
        s if s < 60.0 => format!("{s:.0}s"),
        s if s < 3600.0 => format!("{:.0}m", s / 60.0),
        s if s < 86400.0 => format!("{:.0}h", s / 3600.0),
        s => format!("{:.0}d", s / 86400.0),
    }
}

pub fn realtime_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_a_person_would() {
        assert_eq!(human_age(5.2), "5s");
        assert_eq!(human_age(125.0), "2m");
        assert_eq!(human_age(7200.0), "2h");
        assert_eq!(human_age(3.0 * 86400.0), "3d");
    }
}
