//! prism-lsm: the exec gate. Loads the BPF LSM program, keeps its rules in
//! step with the policy file (SIGHUP) and the feeder's names, follows the
//! bus like every consumer, and prints each denial as a JSON line (and the
//! counts per identity on SIGUSR1 and at exit).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use libbpf_rs::RingBufferBuilder;
use prism_bus::BusPaths;
use prism_bus::consumer::{SlotChange, SlotKeeper};
use prism_bus::names::Names;
use prism_bus::record::BootClock;
use prism_lsm::bpf::{self, skel::LsmSkel};
use prism_lsm::rules::{Changes, MAX_FILE_BYTES, Resolved, Rules};
use prism_lsm::{bpf_lsm_active, denial};
use serde::Serialize;

const LSM_LIST: &str = "/sys/kernel/security/lsm";

/// Refuses, per workload identity, the execution of files: each identity
/// of the policy may execute only the files of its allow-list, or anything
/// but those of its deny-list. A process's first exec into a cgroup (a
/// container's entrypoint, the runtime's set-up, `kubectl exec`) is never
/// gated; everything it starts is. A refused exec fails with EPERM and is
/// printed as a JSON line. Only workloads whose bus entry carries the
/// observe facet are gated. Experimental; needs the BPF LSM (`lsm=...,bpf`).
#[derive(Debug, Parser)]
#[command(version, about, long_about, max_term_width = 100)]
struct Opts {
    /// The policy (TOML: `[[workload]]` tables with `identity` and `allow`
    /// or `deny`). Re-read on SIGHUP; a file that does not parse is refused
    /// whole and the rules in force stay.
    #[arg(
        long,
        env = "PRISM_LSM_POLICY",
        default_value = "/etc/prism/exec-policy.toml"
    )]
    policy: PathBuf,

    /// Check the policy file, print what it says, and exit (no BPF, no root).
    #[arg(long)]
    check: bool,

    /// Gate workloads whatever their facets (default: only those with the
    /// observe facet).
    #[arg(long)]
    any_facet: bool,

    /// Where the bus is pinned.
    #[arg(long, env = "PRISM_BUS_DIR", default_value = prism_bus::abi::DEFAULT_PIN_DIR)]
    bus_dir: PathBuf,

    /// The feeder's identity names file: policy names resolve through it.
    #[arg(long, env = "PRISM_NAMES_FILE", default_value = prism_bus::names::DEFAULT_NAMES_PATH)]
    names_file: PathBuf,
}

fn main() -> ExitCode {
    match run(prism_bus::cli::parse_or_print_man::<Opts>()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("prism-lsm: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn read_policy(path: &Path) -> anyhow::Result<Rules> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text))
        .with_context(|| format!("reading the policy {}", path.display()))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        bail!(
            "the policy {} is over {MAX_FILE_BYTES} bytes",
            path.display()
        );
    }
    Rules::parse(&text).with_context(|| format!("the policy {}", path.display()))
}

fn require_bpf_lsm() -> anyhow::Result<()> {
    let list = std::fs::read_to_string(LSM_LIST).with_context(|| {
        format!("reading {LSM_LIST}: is securityfs mounted (mount -t securityfs none /sys/kernel/security)?")
    })?;
    if !bpf_lsm_active(&list) {
        bail!(
            "the BPF LSM is not active (active: {}); add bpf to the kernel's lsm= parameter, e.g. lsm={},bpf",
            list.trim(),
            list.trim()
        );
    }
    Ok(())
}

/// The rules in force and what resolving them needs.
struct Gate<'a> {
    skel: &'a LsmSkel<'a>,
    rules: Rules,
    applied: Resolved,
    waiting: Vec<String>,
}

impl Gate<'_> {
    /// Bring the maps to what `rules` says under today's names.
    fn sync(&mut self, names: &Names) -> anyhow::Result<bool> {
        let by_name: HashMap<String, u32> =
            names.named().map(|(id, n)| (n.to_string(), id)).collect();
        let (want, unresolved) = self.rules.resolve(&by_name);
        let waiting: Vec<String> = unresolved.iter().map(ToString::to_string).collect();
        let changes = Changes::between(&self.applied, &want);
        if changes.is_empty() && waiting == self.waiting {
            return Ok(false);
        }
        bpf::apply(self.skel, &changes)?;
        self.applied = want;
        self.waiting = waiting;
        Ok(true)
    }

    fn say(&self) {
        eprintln!(
            "prism-lsm: gating {} identities ({} files listed){}",
            self.applied.modes.len(),
            self.applied.paths.len(),
            if self.waiting.is_empty() {
                String::new()
            } else {
                format!(
                    "; waiting for the feeder to name {}",
                    self.waiting.join(", ")
                )
            }
        );
    }
}

#[derive(Serialize)]
struct Count {
    identity: u32,
    workload: Option<String>,
    denials: u64,
}

#[derive(Serialize)]
struct Counts {
    event: &'static str,
    identities: Vec<Count>,
    /// Denials not reported one by one (the ring buffer was full).
    unreported: u64,
}

fn print_counts(skel: &LsmSkel, names: &Names, out: &mut impl Write) -> io::Result<()> {
    let counts = Counts {
        event: "counts",
        identities: bpf::denials(skel)
            .into_iter()
            .map(|(identity, denials)| Count {
                identity,
                workload: names.get(identity).map(str::to_string),
                denials,
            })
            .collect(),
        unreported: bpf::dropped(skel).unwrap_or(0),
    };
    writeln!(out, "{}", serde_json::to_string(&counts)?)?;
    out.flush()
}

fn run(opts: Opts) -> anyhow::Result<()> {
    let rules = read_policy(&opts.policy)?;
    if opts.check {
        for r in &rules.rules {
            println!("{}: {}, {} files", r.identity, r.mode.name(), r.paths.len());
        }
        println!(
            "{}: {} workloads, valid",
            opts.policy.display(),
            rules.rules.len()
        );
        return Ok(());
    }
    require_bpf_lsm()?;
    let facets = if opts.any_facet {
        0
    } else {
        prism_bus::abi::FACET_OBSERVE
    };
    let mut obj = MaybeUninit::uninit();
    let skel = bpf::load(&mut obj, facets)?;

    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(AtomicBool::new(false));
    for sig in [libc::SIGINT, libc::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    signal_hook::flag::register(libc::SIGHUP, reload.clone())?;
    signal_hook::flag::register(libc::SIGUSR1, counts.clone())?;

    let mut keeper = SlotKeeper::new(BusPaths::new(&opts.bus_dir));
    attach_bus(&mut keeper, &skel);
    let names = std::cell::RefCell::new(Names::new(Some(opts.names_file.clone())));
    refresh_names(&mut names.borrow_mut());
    let mut gate = Gate {
        skel: &skel,
        rules,
        applied: Resolved::default(),
        waiting: vec![],
    };
    gate.sync(&names.borrow())?;
    gate.say();

    let clock = BootClock::new();
    let out = std::cell::RefCell::new(io::BufWriter::new(io::stdout().lock()));
    let mut rb = RingBufferBuilder::new();
    rb.add(&skel.maps.events, |bytes| {
        let Some(d) = denial::decode(&clock, bytes, |id| {
            names.borrow().get(id).map(str::to_string)
        }) else {
            return 0;
        };
        let line = serde_json::to_string(&d).expect("a denial serializes");
        let mut o = out.borrow_mut();
        let _ = writeln!(o, "{line}").and_then(|()| o.flush());
        0
    })?;
    let rb = rb.build()?;

    let mut last_check = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match rb.poll(Duration::from_millis(100)) {
            Ok(()) => {}
            Err(e) if e.kind() == libbpf_rs::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("reading denials"),
        }
        if reload.swap(false, Ordering::Relaxed) {
            match read_policy(&opts.policy) {
                Ok(rules) => {
                    gate.rules = rules;
                    gate.sync(&names.borrow())?;
                    eprint!("prism-lsm: policy reloaded; ");
                    gate.say();
                }
                Err(e) => eprintln!("prism-lsm: {e:#}; refused, the rules in force stay"),
            }
        }
        if counts.swap(false, Ordering::Relaxed) {
            print_counts(&skel, &names.borrow(), &mut *out.borrow_mut())?;
        }
        if last_check.elapsed() >= Duration::from_secs(1) {
            last_check = Instant::now();
            attach_bus(&mut keeper, &skel);
            refresh_names(&mut names.borrow_mut());
            if gate.sync(&names.borrow())? {
                gate.say();
            }
        }
    }
    let _ = rb.consume();
    print_counts(&skel, &names.borrow(), &mut *out.borrow_mut())?;
    Ok(())
}

fn refresh_names(names: &mut Names) {
    if let Err(e) = names.refresh() {
        eprintln!(
            "prism-lsm: the identity names file is refused ({e}); keeping the names read before"
        );
    }
}

fn attach_bus(keeper: &mut SlotKeeper, skel: &LsmSkel) {
    match keeper.poll(&skel.maps.prism_bus_identity, &skel.maps.prism_bus_meta) {
        Ok(SlotChange::Attached { .. }) => eprintln!("prism-lsm: bus attached"),
        Ok(SlotChange::Detached) => {
            eprintln!("prism-lsm: the bus went away; nothing is gated until it is back")
        }
        Ok(SlotChange::None) => {}
        Err(e) => eprintln!("prism-lsm: the bus cannot be attached ({e}); retrying"),
    }
}
