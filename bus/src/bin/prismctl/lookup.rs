//! `prismctl lookup`: resolve one cgroup or process the way BPF consumers do.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use prism_bus::abi::ANCESTOR_WALK_MAX;
use prism_bus::{Bus, Entry, cgroup};
use serde::Serialize;

use crate::row::{self, Row};

pub enum Target {
    Path(PathBuf),
    Id(u64),
    Pid(u32),
}

#[derive(Serialize)]
struct Found {
    /// The cgroup asked about.
    cgroup_id: u64,
    path: Option<PathBuf>,
    /// "own" or "ancestor".
    matched: &'static str,
    entry: Row,
}

pub fn run(bus: &Bus, target: &Target, json: bool, out: &mut impl Write) -> Result<ExitCode> {
    let root = cgroup::cgroup2_root().ok();
    let (cgroup_id, path) = locate(target, root.as_deref())?;
    let now = row::realtime_ns();

    let found = match bus.get(cgroup_id)? {
        Some(e) => Some(("own", Row::new(cgroup_id, &e, path.clone(), now))),
        None => nearest_ancestor(bus, path.as_deref(), root.as_deref())?
            .map(|(id, p, e)| ("ancestor", Row::new(id, &e, Some(p), now))),
    };
    let what = path.as_ref().map_or(format!("cgroup {cgroup_id}"), |p| {
        format!("{} (cgroup {cgroup_id})", p.display())
    });
    let Some((matched, entry)) = found else {
        eprintln!("no bus entry for {what} or its nearest {ANCESTOR_WALK_MAX} ancestors");
        return Ok(ExitCode::FAILURE);
    };
    let found = Found {
        cgroup_id,
        path,
        matched,
        entry,
    };
    if json {
        serde_json::to_writer(&mut *out, &found)?;
        writeln!(out)?;
    } else {
        writeln!(out, "cgroup      {what}")?;
        match matched {
            "own" => writeln!(out, "matched     its own entry")?,
            _ => writeln!(
                out,
                "matched     ancestor {} (cgroup {})",
                found
                    .entry
                    .path
                    .as_ref()
                    .map_or("?".into(), |p| p.display().to_string()),
                found.entry.cgroup_id
            )?,
        }
        let e = &found.entry;
        writeln!(
            out,
            "identity    {}",
            e.identity_name
                .map_or(e.identity.to_string(), |n| format!("{}({n})", e.identity))
        )?;
        writeln!(out, "class       {}", e.class)?;
        writeln!(
            out,
            "weight      {}",
            e.weight.map_or("unset".into(), |w| w.to_string())
        )?;
        writeln!(
            out,
            "facets      {}",
            if e.facets.is_empty() {
                "-".into()
            } else {
                e.facets.join(",")
            }
        )?;
        writeln!(out, "label_hash  {}", e.label_hash)?;
        writeln!(
            out,
            "age         {}",
            e.age_s.map_or("-".into(), |s| format!("{s:.1}s"))
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The cgroup id a target names, and its path when one can be known.
fn locate(target: &Target, root: Option<&Path>) -> Result<(u64, Option<PathBuf>)> {
    match target {
        Target::Path(p) => {
            let path = if p.is_absolute() || p.exists() {
                p.clone()
            } else {
                root.context("no cgroup2 filesystem is mounted")?.join(p)
            };
            let id = cgroup::cgroup_id(&path)
                .with_context(|| format!("{} is not a cgroup", path.display()))?;
            Ok((id, Some(path)))
        }
        Target::Pid(pid) => {
            let root = root.context("no cgroup2 filesystem is mounted")?;
            let path = cgroup::pid_cgroup(root, *pid)
                .with_context(|| format!("finding the cgroup of process {pid}"))?;
            let id = cgroup::cgroup_id(&path)
                .with_context(|| format!("{} is not a cgroup", path.display()))?;
            Ok((id, Some(path)))
        }
        Target::Id(id) => Ok((*id, root.and_then(|r| cgroup::index_ids(r).remove(id)))),
    }
}

/// The nearest ancestor with an entry, within the walk BPF consumers do.
fn nearest_ancestor(
    bus: &Bus,
    path: Option<&Path>,
    root: Option<&Path>,
) -> Result<Option<(u64, PathBuf, Entry)>> {
    let (Some(path), Some(root)) = (path, root) else {
        return Ok(None);
    };
    for anc in path.ancestors().skip(1).take(ANCESTOR_WALK_MAX) {
        if !anc.starts_with(root) {
            break;
        }
        let Ok(id) = cgroup::cgroup_id(anc) else {
            continue;
        };
        if let Some(e) = bus.get(id)? {
            return Ok(Some((id, anc.to_path_buf(), e)));
        }
    }
    Ok(None)
}
