//! `prismctl watch`: print entries as they are added, changed and removed.
//!
//! Polls `prism_meta.generation` (one array read) and diffs a snapshot of
//! the map only when it moved, so an idle bus costs almost nothing.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::thread::sleep;
use std::time::Duration;

use anyhow::Result;
use prism_bus::{Bus, BusError, BusPaths, Entry};

use crate::row::{self, Row};

pub fn run(
    paths: &BusPaths,
    interval_ms: u64,
    batches: Option<u64>,
    out: &mut impl Write,
) -> Result<ExitCode> {
    let interval = Duration::from_millis(interval_ms);
    let mut seen: HashMap<u64, Entry> = HashMap::new();
    let mut generation = None;
    let mut published = 0u64;
    let mut waiting_said = false;
    writeln!(out, "  {}", Row::HEADER)?;
    out.flush()?;
    loop {
        let bus = match Bus::open(paths) {
            Ok(bus) => bus,
            Err(BusError::NotPinned(p)) => {
                if !waiting_said {
                    writeln!(
                        out,
                        "# no bus pinned at {}: waiting for prism-feeder",
                        p.display()
                    )?;
                    out.flush()?;
                    waiting_said = true;
                }
                for (id, e) in seen.drain() {
                    print_change(out, '-', id, &e)?;
                }
                generation = None;
                sleep(interval);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        waiting_said = false;
        let meta = bus.meta()?;
        if generation != Some(meta.generation) {
            let first = generation.is_none();
            generation = Some(meta.generation);
            let now: HashMap<u64, Entry> = bus
                .iter()
                .filter_map(|(id, e)| e.ok().map(|e| (id, e)))
                .collect();
            diff(out, &seen, &now)?;
            seen = now;
            if !first {
                published += 1;
            }
            writeln!(
                out,
                "# generation {} entries {}",
                meta.generation,
                seen.len()
            )?;
            out.flush()?;
            if batches.is_some_and(|n| published >= n) {
                return Ok(ExitCode::SUCCESS);
            }
        }
        sleep(interval);
    }
}

fn diff(
    out: &mut impl Write,
    before: &HashMap<u64, Entry>,
    after: &HashMap<u64, Entry>,
) -> Result<()> {
    let mut ids: Vec<u64> = before.keys().chain(after.keys()).copied().collect();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        match (before.get(&id), after.get(&id)) {
            (None, Some(e)) => print_change(out, '+', id, e)?,
            (Some(e), None) => print_change(out, '-', id, e)?,
            (Some(a), Some(b)) if a != b => print_change(out, '~', id, b)?,
            _ => {}
        }
    }
    Ok(())
}

fn print_change(out: &mut impl Write, mark: char, id: u64, e: &Entry) -> Result<()> {
    writeln!(out, "{mark} {}", Row::new(id, e, None, row::realtime_ns()))?;
    Ok(())
}
