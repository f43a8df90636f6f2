//! prism-rpc: a microservice-chain stand-in. A client sends requests at a
//! fixed offered rate to the first of `--stages` service processes; each
//! service works `--work-us` on a request, calls the next one and waits for
//! its reply (a synchronous RPC server with one worker), the last answers.
//! Latency is measured from each request's *intended* send time, so a
//! stalled chain is charged for every request it delayed (corrected for
//! coordinated omission). Prints one JSON line, like prism-probe, with
//! `services_preempted`: how often the services were switched out while
//! still runnable (their involuntary context switches, from the kernel).
//!
//!     prism-rpc --stages 3 --rate 100 --work-us 100 --duration-s 10

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use prism_bench::timing::{monotonic_ns, sleep_until, spin_for};
use prism_testkit::latency::Summary;

#[derive(Parser)]
#[command(
    about = "RPC-chain stand-in: requests at a fixed rate through N service processes; latency from the intended send time, as JSON"
)]
struct Opts {
    /// Service processes in the chain.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=16))]
    stages: u32,
    /// Offered load, requests per second.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    rate: u64,
    /// Work per request in each service, microseconds.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    work_us: u64,
    /// How long to offer load, seconds.
    #[arg(long, default_value_t = 5.0)]
    duration_s: f64,
    /// Label printed with the result.
    #[arg(long, default_value = "rpc")]
    label: String,
    /// Internal: run as service `N` of the chain, listening in --socket-dir.
    #[arg(long, hide = true)]
    serve: Option<u32>,
    #[arg(long, hide = true)]
    socket_dir: Option<PathBuf>,
}

/// A request on the wire: its number and its intended send time.
const MSG: usize = 16;

fn socket(dir: &Path, stage: u32) -> PathBuf {
    dir.join(format!("stage-{stage}.sock"))
}

/// Connect to a service, waiting for it: its socket file appears at bind(2),
/// a moment before it listens (connect(2) is refused in between).
fn connect(dir: &Path, stage: u32) -> Result<UnixStream> {
    let path = socket(dir, stage);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match UnixStream::connect(&path) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() > deadline => {
                return Err(e).with_context(|| format!("connecting to {}", path.display()));
            }
            Err(_) => thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// One service: accept the caller, then per request work, call the next
/// service (if any) and answer. Ends when the caller hangs up.
fn serve(o: &Opts, stage: u32, dir: &Path) -> Result<()> {
    let listener = UnixListener::bind(socket(dir, stage)).context("bind")?;
    let mut next = if stage + 1 < o.stages {
        Some(connect(dir, stage + 1)?)
    } else {
        None
    };
    let (mut caller, _) = listener.accept()?;
    let work = Duration::from_micros(o.work_us);
    let mut msg = [0u8; MSG];
    while caller.read_exact(&mut msg).is_ok() {
        spin_for(work);
        if let Some(n) = next.as_mut() {
            n.write_all(&msg)?;
            n.read_exact(&mut msg)?;
        }
        caller.write_all(&msg)?;
    }
    Ok(())
}

/// The services, started last to first so each finds its callee listening.
struct Chain {
    children: Vec<Child>,
    dir: PathBuf,
}

impl Chain {
    fn start(o: &Opts) -> Result<Chain> {
        let dir = std::env::temp_dir().join(format!("prism-rpc-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let me = std::env::current_exe()?;
        let mut chain = Chain {
            children: Vec::new(),
            dir,
        };
        for stage in (0..o.stages).rev() {
            let child = Command::new(&me)
                .args(["--stages", &o.stages.to_string()])
                .args(["--work-us", &o.work_us.to_string()])
                .args(["--serve", &stage.to_string()])
                .arg("--socket-dir")
                .arg(&chain.dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .context("starting a service")?;
            chain.children.push(child);
            // its caller (started next) connects with connect(), which waits
        }
        Ok(chain)
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Involuntary context switches of this process's reaped children (the
/// services, once the chain is dropped): each is a moment a service was
/// runnable and the scheduler ran something else.
fn reaped_children_involuntary_switches() -> Result<u64> {
    // SAFETY: getrusage writes one rusage into the zeroed struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getrusage");
    }
    Ok(usage.ru_nivcsw as u64)
}

fn main() -> Result<()> {
    let o = Opts::parse();
    if let Some(stage) = o.serve {
        let dir = o.socket_dir.clone().context("--serve needs --socket-dir")?;
        return serve(&o, stage, &dir);
    }
    if o.duration_s.is_nan() || o.duration_s <= 0.0 || o.duration_s > 3600.0 {
        bail!("--duration-s must be in (0, 3600]");
    }
    let chain = Chain::start(&o)?;
    let mut tx = connect(&chain.dir, 0)?;
    let mut rx = tx.try_clone()?;
    let period_ns = 1_000_000_000 / o.rate;
    let total = (o.duration_s * o.rate as f64) as u64;

    // The receiver records each reply's lateness against its intended send time.
    let receiver = thread::spawn(move || -> Vec<u64> {
        let mut lat = Vec::with_capacity(total as usize);
        let mut msg = [0u8; MSG];
        for _ in 0..total {
            if rx.read_exact(&mut msg).is_err() {
                break;
            }
            let intended = u64::from_le_bytes(msg[8..].try_into().unwrap());
            lat.push(monotonic_ns().saturating_sub(intended));
        }
        lat
    });
    // The sender keeps the schedule whatever the chain does: a late send is
    // still stamped with the time it should have gone.
    let start = monotonic_ns() + 1_000_000;
    for i in 0..total {
        let intended = start + i * period_ns;
        sleep_until(intended);
        let mut msg = [0u8; MSG];
        msg[..8].copy_from_slice(&i.to_le_bytes());
        msg[8..].copy_from_slice(&intended.to_le_bytes());
        tx.write_all(&msg)?;
    }
    let mut lat = receiver.join().expect("receiver thread");
    drop(chain);
    let services_preempted = reaped_children_involuntary_switches()?;
    if (lat.len() as u64) < total {
        bail!("only {} of {total} replies came back", lat.len());
    }
    let summary = Summary::of(&mut lat);
    println!(
        "{}",
        serde_json::json!({
            "label": o.label,
            "rate": o.rate,
            "stages": o.stages,
            "services_preempted": services_preempted,
            "summary": summary,
        })
    );
    Ok(())
}
