//! `prismctl identity list|get`: the bus seen by identity rather than by
//! cgroup (one row per workload identity: its name, class, weight, facets,
//! how many cgroups carry it, and how long the oldest of its entries has
//! stood), like `cilium identity list`.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use prism_bus::names::Names;
use prism_bus::{Bus, Entry};
use serde::Serialize;

use crate::row::{CgroupPaths, facets_text, human_age, realtime_ns};

#[derive(Debug, Serialize, PartialEq)]
pub struct IdentityRow {
    pub identity: u32,
    /// A well-known id's name, else the feeder's names file's.
    pub name: Option<String>,
    pub class: &'static str,
    pub weight: Option<u8>,
    pub facets: Vec<&'static str>,
    pub cgroups: usize,
    /// Seconds since the oldest of its entries was written.
    pub age_s: Option<f64>,
    /// Its entries' cgroup ids (with `get`; paths where the cgroup exists).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<Member>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Member {
    pub cgroup_id: u64,
    pub path: Option<PathBuf>,
}

/// One row per identity, by number. Class, weight and facets are those of
/// its most recently written entry (the feeder writes them alike).
pub fn summarize(
    entries: impl IntoIterator<Item = (u64, Entry)>,
    name: impl Fn(u32) -> Option<String>,
    now_ns: u64,
) -> Vec<IdentityRow> {
    let mut by_id: BTreeMap<u32, Vec<(u64, Entry)>> = BTreeMap::new();
    for (cgroup, e) in entries {
        by_id.entry(e.identity.get()).or_default().push((cgroup, e));
    }
    by_id
        .into_iter()
        .map(|(id, members)| {
            let newest = members
                .iter()
                .max_by_key(|(cg, e)| (e.updated_ns, *cg))
                .map(|(_, e)| *e)
                .expect("a group has a member");
            let oldest = members
                .iter()
                .map(|(_, e)| e.updated_ns)
                .filter(|&t| t != 0)
                .min();
            IdentityRow {
                identity: id,
                name: name(id),
                class: newest.flags.class.name(),
                weight: newest.flags.weight.get(),
                facets: newest.flags.facets.names(),
                cgroups: members.len(),
                age_s: oldest.map(|t| now_ns.saturating_sub(t) as f64 / 1e9),
                members: vec![],
            }
        })
        .collect()
}

impl IdentityRow {
    pub const HEADER: &'static str = "IDENTITY  NAME                            CLASS     WEIGHT  FACETS             CGROUPS    AGE";
}

impl fmt::Display for IdentityRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name: String = self
            .name
            .as_deref()
            .unwrap_or("-")
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        let weight = self.weight.map_or("-".to_string(), |w| w.to_string());
        let facets = facets_text(&self.facets);
        let age = self.age_s.map_or("-".to_string(), human_age);
        write!(
            f,
            "{:<9} {name:<31} {:<9} {weight:>6}  {facets:<17} {:>7} {age:>6}",
            self.identity, self.class, self.cgroups
        )
    }
}

fn entries(bus: &Bus) -> Result<Vec<(u64, Entry)>> {
    bus.iter()
        .map(|(cg, e)| {
            e.map(|e| (cg, e))
                .with_context(|| format!("reading the entry of cgroup {cg}"))
        })
        .collect()
}

fn names(file: PathBuf) -> Names {
    let mut names = Names::new(Some(file));
    if let Err(e) = names.refresh() {
        eprintln!("prismctl: the identity names file is refused ({e}); numbers only");
    }
    names
}

pub fn list(bus: &Bus, names_file: PathBuf, json: bool, out: &mut impl Write) -> Result<ExitCode> {
    let names = names(names_file);
    let rows = summarize(
        entries(bus)?,
        |id| names.get(id).map(str::to_string),
        realtime_ns(),
    );
    if json {
        serde_json::to_writer(&mut *out, &rows)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{}", IdentityRow::HEADER)?;
        for r in &rows {
            writeln!(out, "{r}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One identity with its cgroups; exit 1 if no entry carries it.
pub fn get(
    bus: &Bus,
    names_file: PathBuf,
    identity: u32,
    json: bool,
    out: &mut impl Write,
) -> Result<ExitCode> {
    let names = names(names_file);
    let mine: Vec<(u64, Entry)> = entries(bus)?
        .into_iter()
        .filter(|(_, e)| e.identity.get() == identity)
        .collect();
    let mut cgroups: Vec<u64> = mine.iter().map(|(cg, _)| *cg).collect();
    cgroups.sort_unstable();
    let Some(mut row) =
        summarize(mine, |id| names.get(id).map(str::to_string), realtime_ns()).pop()
    else {
        eprintln!("prismctl: no entry carries identity {identity}");
        return Ok(ExitCode::FAILURE);
    };
    let paths = CgroupPaths::index();
    row.members = cgroups
        .into_iter()
        .map(|cgroup_id| Member {
            cgroup_id,
            path: paths.path_of(cgroup_id),
        })
        .collect();
    if json {
        serde_json::to_writer(&mut *out, &row)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{}", IdentityRow::HEADER)?;
        writeln!(out, "{row}")?;
        writeln!(out, "\nCGROUP_ID       PATH")?;
        for m in &row.members {
            let path = m
                .path
                .as_ref()
                .map_or("-".to_string(), |p| p.display().to_string());
            writeln!(out, "{:<15} {path}", m.cgroup_id)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prism_bus::{Facets, Flags, Identity, LatencyClass, Weight};

    fn e(id: u32, class: LatencyClass, facets: Facets, t: u64) -> Entry {
        Entry {
            identity: Identity::new(id).unwrap(),
            flags: Flags {
                facets,
                class,
                weight: Weight::new(70).unwrap(),
            },
            label_hash: 1,
            updated_ns: t,
        }
    }

    #[test]
    fn entries_group_by_identity_newest_flags_oldest_age() {
        let s = 1_000_000_000;
        let rows = summarize(
            [
                (10, e(300, LatencyClass::Normal, Facets::ALL, 100 * s)),
                (11, e(300, LatencyClass::Critical, Facets::SCHED, 150 * s)),
                (12, e(301, LatencyClass::Batch, Facets::NONE, 0)),
                (13, e(1, LatencyClass::Unset, Facets::NONE, 190 * s)),
            ],
            |id| (id == 300).then(|| "shop/web".to_string()),
            200 * s,
        );
        assert_eq!(
            rows.iter()
                .map(|r| (r.identity, r.cgroups))
                .collect::<Vec<_>>(),
            vec![(1, 1), (300, 2), (301, 1)]
        );
        let web = &rows[1];
        assert_eq!(web.name.as_deref(), Some("shop/web"));
        assert_eq!((web.class, web.facets.clone()), ("critical", vec!["sched"]));
        assert_eq!(web.age_s, Some(100.0));
        assert_eq!(rows[2].age_s, None, "no time written: no age");
        assert!(summarize([], |_| None, 0).is_empty());
    }

    #[test]
    fn a_hostile_name_cannot_break_the_table() {
        let rows = summarize(
            [(10, e(300, LatencyClass::Normal, Facets::ALL, 1))],
            |_| Some("evil\n\x1b[2Jname".to_string()),
            2,
        );
        let line = rows[0].to_string();
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }
}
