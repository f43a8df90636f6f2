//! prismctl: inspect the identity bus.
//!
//! Reads only (the bus is opened read-only), except `create`, which pins an
//! empty bus the way prism-feeder does at start. Exit status: 0 ok, 1 error
//! or nothing found, 2 no bus pinned.

mod identity;
mod lookup;
mod row;
mod watch;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use prism_bus::abi::{DEFAULT_MAX_ENTRIES, DEFAULT_PIN_DIR};
use prism_bus::{Bus, BusError, BusPaths, BusWriter};
use serde::Serialize;

use row::Row;

#[derive(Parser)]
#[command(
    name = "prismctl",
    version,
    about = "Inspect Prism's identity bus (the pinned prism_identity map)"
)]
struct Opts {
    /// Directory where the bus is pinned.
    #[arg(long, env = "PRISM_BUS_DIR", default_value = DEFAULT_PIN_DIR, global = true)]
    bus_dir: PathBuf,

    /// The feeder's identity names file (for `identity`).
    #[arg(long, env = "PRISM_NAMES_FILE", default_value = prism_bus::names::DEFAULT_NAMES_PATH, global = true)]
    names_file: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every entry: cgroup id, cgroup path, identity, class, weight, facets, age.
    Dump {
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The identity of a cgroup (by path or id) or of a process, resolved as
    /// BPF consumers do: its own cgroup first, then its nearest ancestor.
    Lookup {
        /// A cgroup directory, absolute or relative to the cgroup2 mount.
        #[arg(required_unless_present_any = ["id", "pid"], conflicts_with_all = ["id", "pid"])]
        path: Option<PathBuf>,
        /// A cgroup v2 id (the inode of its directory).
        #[arg(long, conflicts_with = "pid")]
        id: Option<u64>,
        /// A process id.
        #[arg(long)]
        pid: Option<u32>,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Identities: one row each (name, class, weight, facets, cgroups, age).
    Identity {
        #[command(subcommand)]
        command: IdentityCommand,
    },
    /// Entries, generation, ABI version and capacity.
    Stats {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print entries as they are added, changed and removed.
    Watch {
        /// How often to check the generation, in milliseconds.
        #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u64).range(10..=60_000))]
        interval_ms: u64,
        /// Exit after this many published batches (default: run until killed).
        #[arg(long)]
        batches: Option<u64>,
    },
    /// Pin an empty bus if none is pinned (what prism-feeder does at start).
    Create {
        /// Capacity of a new identity map.
        #[arg(long, default_value_t = DEFAULT_MAX_ENTRIES, value_parser = clap::value_parser!(u32).range(1..=(1 << 24)))]
        max_entries: u32,
    },
}

#[derive(Subcommand)]
enum IdentityCommand {
    /// Every identity on the bus.
    List {
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One identity and the cgroups that carry it (exit 1 if none does).
    Get {
        /// The identity's number.
        identity: u32,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let opts = prism_bus::cli::parse_or_print_man::<Opts>();
    match run(opts) {
        Ok(code) => code,
        Err(e) => {
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("prismctl: {e:#}");
            match e.downcast_ref::<BusError>() {
                Some(BusError::NotPinned(_)) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn run(opts: Opts) -> Result<ExitCode> {
    let paths = BusPaths::new(&opts.bus_dir);
    let mut out = io::BufWriter::new(io::stdout().lock());
    let code = match opts.command {
        Command::Dump { json } => dump(&Bus::open(&paths)?, json, &mut out)?,
        Command::Lookup {
            path,
            id,
            pid,
            json,
        } => {
            let target = match (path, id, pid) {
                (Some(p), _, _) => lookup::Target::Path(p),
                (_, Some(id), _) => lookup::Target::Id(id),
                (_, _, Some(pid)) => lookup::Target::Pid(pid),
                _ => unreachable!("clap requires one of path, --id, --pid"),
            };
            lookup::run(&Bus::open(&paths)?, &target, json, &mut out)?
        }
        Command::Identity { command } => match command {
            IdentityCommand::List { json } => {
                identity::list(&Bus::open(&paths)?, opts.names_file, json, &mut out)?
            }
            IdentityCommand::Get { identity, json } => identity::get(
                &Bus::open(&paths)?,
                opts.names_file,
                identity,
                json,
                &mut out,
            )?,
        },
        Command::Stats { json } => stats(&Bus::open(&paths)?, json, &mut out)?,
        Command::Watch {
            interval_ms,
            batches,
        } => watch::run(&paths, interval_ms, batches, &mut out)?,
        Command::Create { max_entries } => {
            let writer = BusWriter::create_or_open(&paths, max_entries)?;
            stats(writer.bus(), false, &mut out)?
        }
    };
    out.flush()?;
    Ok(code)
}

fn dump(bus: &Bus, json: bool, out: &mut impl Write) -> Result<ExitCode> {
    let paths = row::CgroupPaths::index();
    let now = row::realtime_ns();
    let mut rows = Vec::new();
    for (cgroup_id, entry) in bus.iter() {
        let entry = entry.with_context(|| format!("reading the entry of cgroup {cgroup_id}"))?;
        rows.push(Row::new(cgroup_id, &entry, paths.path_of(cgroup_id), now));
    }
    rows.sort_unstable_by_key(|r| r.cgroup_id);
    if json {
        serde_json::to_writer(&mut *out, &rows)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{}", Row::HEADER)?;
        for r in &rows {
            writeln!(out, "{r}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct Stats {
    pin_dir: PathBuf,
    abi_version: u32,
    generation: u64,
    entries: u64,
    max_entries: u32,
}

fn stats(bus: &Bus, json: bool, out: &mut impl Write) -> Result<ExitCode> {
    let meta = bus.meta()?;
    let s = Stats {
        pin_dir: bus.paths().dir.clone(),
        abi_version: meta.abi_version,
        generation: meta.generation,
        entries: meta.entries,
        max_entries: bus.max_entries(),
    };
    if json {
        serde_json::to_writer(&mut *out, &s)?;
        writeln!(out)?;
    } else {
        writeln!(out, "bus          {}", s.pin_dir.display())?;
        writeln!(out, "abi_version  {}", s.abi_version)?;
        writeln!(out, "generation   {}", s.generation)?;
        writeln!(out, "entries      {}", s.entries)?;
        writeln!(out, "max_entries  {}", s.max_entries)?;
    }
    Ok(ExitCode::SUCCESS)
}
