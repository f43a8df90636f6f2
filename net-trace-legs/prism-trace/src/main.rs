//! prism-trace: exec and exit events with the identity, class and cgroup of
//! the process, as JSON lines (default) or a table. Follows the bus like
//! every consumer (identities are 0 until it is pinned; a re-created bus is
//! picked up), and says on stderr when events were dropped.

use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use libbpf_rs::RingBufferBuilder;
use prism_bus::BusPaths;
use prism_bus::consumer::{SlotChange, SlotKeeper};
use prism_bus::names::Names;
use prism_trace::bpf::{self, Filter};
use prism_trace::event::{Decoder, TABLE_HEADER, table_row};

/// Prints every exec and process exit on this host with the identity, class
/// and cgroup the bus gives the process, its pid, parent, comm, and the file
/// executed or the exit status. Filters run in the kernel.
#[derive(Debug, Parser)]
#[command(version, about, long_about, max_term_width = 100)]
struct Opts {
    /// Output: one JSON object per line, or a table for people.
    #[arg(long, value_enum, default_value = "json")]
    format: Format,

    /// Only processes with this identity (repeatable).
    #[arg(long = "identity")]
    identities: Vec<u32>,

    /// Only processes of this latency class (repeatable).
    #[arg(long = "class", value_enum)]
    classes: Vec<Class>,

    /// Only processes in this cgroup or below it.
    #[arg(long)]
    cgroup: Option<PathBuf>,

    /// Which events.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "exec,exit")]
    events: Vec<Kind>,

    /// Stop after this many events.
    #[arg(long)]
    count: Option<u64>,

    /// Ring buffer size in bytes (a power of two; events are 312 bytes).
    #[arg(long, default_value_t = 1 << 20)]
    ring_size: u32,

    /// Where the bus is pinned.
    #[arg(long, env = "PRISM_BUS_DIR", default_value = prism_bus::abi::DEFAULT_PIN_DIR)]
    bus_dir: PathBuf,

    /// The feeder's identity names file, for the `workload` field.
    #[arg(long, env = "PRISM_NAMES_FILE", default_value = prism_bus::names::DEFAULT_NAMES_PATH)]
    names_file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Json,
    Table,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    Exec,
    Exit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Class {
    Unset,
    Critical,
    Normal,
    Batch,
}

fn main() -> ExitCode {
    match run(prism_bus::cli::parse_or_print_man::<Opts>()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("prism-trace: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(opts: Opts) -> anyhow::Result<()> {
    let filter = Filter {
        identities: opts.identities.clone(),
        classes: opts.classes.iter().map(|c| *c as u32).collect(),
        cgroup: opts.cgroup.clone(),
        exec: opts.events.contains(&Kind::Exec),
        exit: opts.events.contains(&Kind::Exit),
        ring_size: opts.ring_size,
    };
    let mut obj = MaybeUninit::uninit();
    let skel = bpf::load(&mut obj, &filter)?;

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [libc::SIGINT, libc::SIGTERM] {
        signal_hook_flag(sig, &stop)?;
    }
    let mut keeper = SlotKeeper::new(BusPaths::new(&opts.bus_dir));
    attach_bus(&mut keeper, &skel);
    let names = std::cell::RefCell::new(Names::new(Some(opts.names_file.clone())));
    let decoder = Decoder::new();
    let mut out = io::BufWriter::new(io::stdout().lock());
    if opts.format == Format::Table {
        writeln!(out, "{TABLE_HEADER}")?;
    }
    let printed = std::cell::Cell::new(0u64);
    let broken = std::cell::Cell::new(false);
    let out = std::cell::RefCell::new(out);
    let mut rb = RingBufferBuilder::new();
    rb.add(&skel.maps.events, |bytes| {
        let Some(e) = decoder.decode(bytes, |id| names.borrow().get(id).map(str::to_string)) else {
            return 0;
        };
        let line = match opts.format {
            Format::Json => serde_json::to_string(&e).expect("an event serializes"),
            Format::Table => table_row(&e),
        };
        let mut o = out.borrow_mut();
        if writeln!(o, "{line}").and_then(|()| o.flush()).is_err() {
            broken.set(true); // the reader went away (a closed pipe)
            return -1;
        }
        printed.set(printed.get() + 1);
        if opts.count.is_some_and(|c| printed.get() >= c) {
            return -1;
        }
        0
    })?;
    let rb = rb.build()?;

    let (mut last_check, mut dropped) = (Instant::now(), 0u64);
    let limit_reached = || opts.count.is_some_and(|c| printed.get() >= c);
    while !stop.load(Ordering::Relaxed) && !broken.get() && !limit_reached() {
        // Woken only when the buffer fills (the kernel side spares the
        // wakeups), so each pass also takes what came without one.
        match rb
            .poll(Duration::from_millis(100))
            .and_then(|()| rb.consume())
        {
            Ok(()) => {}
            Err(e) if e.kind() == libbpf_rs::ErrorKind::Interrupted => {}
            Err(_) if broken.get() || limit_reached() => break,
            Err(e) => return Err(e).context("reading events"),
        }
        if last_check.elapsed() >= Duration::from_secs(1) {
            last_check = Instant::now();
            attach_bus(&mut keeper, &skel);
            if let Err(e) = names.borrow_mut().refresh() {
                eprintln!(
                    "prism-trace: the identity names file is refused ({e}); keeping the names read before"
                );
            }
            dropped = report_drops(&skel, dropped);
        }
    }
    let _ = rb.consume();
    report_drops(&skel, dropped);
    match bpf::unfaceted(&skel) {
        Ok(0) => {}
        Ok(n) => eprintln!(
            "prism-trace: {n} events of workloads without the observe facet were not reported"
        ),
        Err(e) => eprintln!("prism-trace: reading the unfaceted count failed: {e}"),
    }
    Ok(())
}

fn attach_bus(keeper: &mut SlotKeeper, skel: &bpf::skel::TraceSkel) {
    match keeper.poll(&skel.maps.prism_bus_identity, &skel.maps.prism_bus_meta) {
        Ok(SlotChange::Attached { .. }) => eprintln!("prism-trace: bus attached"),
        Ok(SlotChange::Detached) => {
            eprintln!("prism-trace: the bus went away; identities are 0 until it is back")
        }
        Ok(SlotChange::None) => {}
        Err(e) => eprintln!("prism-trace: the bus cannot be attached ({e}); retrying"),
    }
}

/// Say on stderr how many events were dropped since `before`; the total.
fn report_drops(skel: &bpf::skel::TraceSkel, before: u64) -> u64 {
    match bpf::dropped(skel) {
        Ok(now) if now > before => {
            eprintln!(
                "prism-trace: {} events dropped (the ring buffer was full), {now} in all; a bigger --ring-size helps",
                now - before
            );
            now
        }
        Ok(now) => now,
        Err(e) => {
            eprintln!("prism-trace: reading the drop count failed: {e}");
            before
        }
    }
}

/// Set `flag` on `sig` (and let the ring buffer poll return).
fn signal_hook_flag(sig: i32, flag: &Arc<AtomicBool>) -> anyhow::Result<()> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    let _ = FLAG.set(flag.clone());
    extern "C" fn on_signal(_: i32) {
        if let Some(f) = FLAG.get() {
            f.store(true, Ordering::Relaxed);
        }
    }
    // SAFETY: the handler only stores to an atomic, which is signal-safe.
    let prev = unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    anyhow::ensure!(
        prev != libc::SIG_ERR,
        "installing a handler for signal {sig}"
    );
    Ok(())
}
