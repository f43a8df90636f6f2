//! prism-legs-demo: one identity read by every leg at once. It starts
//! prism-feeder (cgroup rules), scx_prism, prism-net, prism-trace and
//! prism-lsm on one bus, runs a labelled workload (`demo/web`, critical)
//! beside batch CPU hogs, and prints, for that one identity: its scheduling
//! latency, its bytes, its exec events and the exec the gate denied.
//! Root, on a kernel with sched_ext and the BPF LSM (ci/demo --legs runs it
//! in the lab kernel). Everything it starts, it stops; the cgroups and the
//! bus it made, it removes.
//!
//!     prism-legs-demo --out target/legs-demo [--json]

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, Subcommand};
use serde::Serialize;
use serde_json::Value;

#[derive(Parser)]
#[command(about = "The three legs and the scheduler on one identity, side by side")]
struct Opts {
    /// Where the logs, the policy files and legs.json go.
    #[arg(long, default_value = "target/legs-demo")]
    out: PathBuf,
    /// Print the summary as one JSON object instead of text.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    helper: Option<Helper>,
}

/// What the workload runs (it execs this binary again).
#[derive(Subcommand)]
enum Helper {
    /// Send `count` UDP datagrams of `size` bytes to `to`.
    #[command(hide = true)]
    SendUdp { to: String, count: u32, size: usize },
}

const NAME: &str = "demo/web";
const DENIED: &str = "/usr/bin/id";
const DATAGRAMS: u32 = 200;
const DATAGRAM_BYTES: usize = 1000;
const NET_PORT: u16 = 19_465;
const FEEDER_PORT: u16 = 19_464;

#[derive(Serialize)]
struct Summary {
    identity: u32,
    name: &'static str,
    class: String,
    latency_p50_us: f64,
    latency_p99_us: f64,
    latency_samples: u64,
    egress_bytes: u64,
    egress_packets: u64,
    execs: Vec<String>,
    denied: Vec<String>,
    denied_exit_status: i32,
    scheduler: String,
}

fn main() -> ExitCode {
    let opts = Opts::parse();
    if let Some(Helper::SendUdp { to, count, size }) = opts.helper {
        return match send_udp(&to, count, size) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("send-udp: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let mut demo = Demo::default();
    let result = demo.run(&opts);
    demo.stop();
    match result {
        Ok(s) => {
            if opts.json {
                println!("{}", serde_json::to_string(&s).expect("serializes"));
            } else {
                print_summary(&s);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("prism-legs-demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn send_udp(to: &str, count: u32, size: usize) -> Result<()> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    let buf = vec![7u8; size];
    for _ in 0..count {
        sock.send_to(&buf, to)?;
    }
    Ok(())
}

/// What the demo started and made, for stopping and removing.
#[derive(Default)]
struct Demo {
    children: Vec<(&'static str, Child)>,
    cgroups: Vec<PathBuf>,
    bus_dir: Option<PathBuf>,
}

fn beside(name: &str) -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let p = me.with_file_name(name);
    ensure!(
        p.exists(),
        "{} is missing: build the workspace's binaries (cargo build --release --workspace --bins)",
        p.display()
    );
    Ok(p)
}

fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        sleep(Duration::from_millis(100));
    }
}

/// The body of `GET path` on 127.0.0.1:`port`.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_string()))
}

/// The value of the Prometheus series whose line starts with `prefix` and
/// carries every label of `labels`.
fn metric(text: &str, prefix: &str, labels: &[&str]) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(prefix) && labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

fn json_lines(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

impl Demo {
    fn spawn(&mut self, name: &'static str, cmd: &mut Command, log: &Path) -> Result<()> {
        let out = fs::File::create(log)?;
        let child = cmd
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        self.children.push((name, child));
        Ok(())
    }

    /// `stdout` apart from stderr (the legs print their events on stdout).
    fn spawn_split(
        &mut self,
        name: &'static str,
        cmd: &mut Command,
        stdout: &Path,
        stderr: &Path,
    ) -> Result<()> {
        let child = cmd
            .stdout(fs::File::create(stdout)?)
            .stderr(fs::File::create(stderr)?)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        self.children.push((name, child));
        Ok(())
    }

    fn alive(&mut self) -> Result<()> {
        for (name, c) in &mut self.children {
            if let Some(status) = c.try_wait()? {
                bail!("{name} exited early ({status}); its log is in the --out directory");
            }
        }
        Ok(())
    }

    fn run(&mut self, opts: &Opts) -> Result<Summary> {
        ensure!(
            unsafe { libc::geteuid() } == 0,
            "run as root (it pins BPF maps, loads a scheduler and BPF LSM programs)"
        );
        ensure!(
            Path::new("/sys/kernel/sched_ext").is_dir(),
            "this kernel has no sched_ext: run `ci/demo --legs`, which boots the lab kernel"
        );
        let lsm = fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default();
        ensure!(
            lsm.split(',').any(|m| m.trim() == "bpf"),
            "the BPF LSM is not active here (lsm: {:?}): run `ci/demo --legs`",
            lsm.trim()
        );
        let out = &opts.out;
        fs::create_dir_all(out)?;
        let out = out.canonicalize()?;
        let cg_root = prism_bus::cgroup::cgroup2_root()?;

        println!(
            "[1/6] cgroups: prism-demo.slice/web.service (the workload), hogs.service (batch)"
        );
        let slice = cg_root.join("prism-demo.slice");
        let web = slice.join("web.service");
        let hogs = slice.join("hogs.service");
        for d in [&slice, &web, &hogs] {
            fs::create_dir_all(d).with_context(|| format!("mkdir {}", d.display()))?;
            self.cgroups.push(d.clone());
        }

        println!("[2/6] prism-feeder labels them from its cgroup rules");
        let bus_dir = PathBuf::from(format!("/sys/fs/bpf/prism-demo-{}", std::process::id()));
        self.bus_dir = Some(bus_dir.clone());
        let names = out.join("identities.json");
        let rules = out.join("cgroup-rules.toml");
        fs::write(
            &rules,
            format!(
                "units = false\n\n[[rule]]\nmatch = \"prism-demo.slice/web.service\"\nname = \"{NAME}\"\nclass = \"critical\"\n\n\
                 [[rule]]\nmatch = \"prism-demo.slice/hogs.service\"\nname = \"demo/hogs\"\nclass = \"batch\"\n"
            ),
        )?;
        let bus_arg = bus_dir.to_str().context("bus dir")?.to_string();
        let names_arg = names.to_str().context("names path")?.to_string();
        self.spawn(
            "prism-feeder",
            Command::new(beside("prism-feeder")?).args([
                "--source",
                "cgroup",
                "--rules",
                rules.to_str().unwrap(),
                "--bus-dir",
                &bus_arg,
                "--names-file",
                &names_arg,
                "--listen",
                &format!("127.0.0.1:{FEEDER_PORT}"),
            ]),
            &out.join("prism-feeder.log"),
        )?;
        wait_until("the feeder's readiness", Duration::from_secs(30), || {
            http_get(FEEDER_PORT, "/readyz")
        })?;
        let identity = wait_until(
            "the feeder to name demo/web",
            Duration::from_secs(10),
            || {
                let file = prism_bus::names::read(&names).ok()?;
                file.identities
                    .iter()
                    .find(|n| n.name == NAME)
                    .map(|n| n.identity)
            },
        )?;
        println!("      {NAME} is identity {identity}");

        println!("[3/6] scx_prism, prism-net, prism-trace and prism-lsm on the same bus");
        self.spawn(
            "scx_prism",
            Command::new(beside("scx_prism")?).args(["--bus-dir", &bus_arg, "--stats", "1"]),
            &out.join("scx_prism.log"),
        )?;
        wait_until("sched_ext enabled", Duration::from_secs(60), || {
            let state = fs::read_to_string("/sys/kernel/sched_ext/state").ok()?;
            (state.trim() == "enabled").then_some(())
        })?;
        self.spawn(
            "prism-net",
            Command::new(beside("prism-net")?).args([
                "--bus-dir",
                &bus_arg,
                "--names-file",
                &names_arg,
                "--listen",
                &format!("127.0.0.1:{NET_PORT}"),
            ]),
            &out.join("prism-net.log"),
        )?;
        let trace_out = out.join("prism-trace.jsonl");
        self.spawn_split(
            "prism-trace",
            Command::new(beside("prism-trace")?).args([
                "--bus-dir",
                &bus_arg,
                "--names-file",
                &names_arg,
                "--identity",
                &identity.to_string(),
                "--events",
                "exec",
            ]),
            &trace_out,
            &out.join("prism-trace.log"),
        )?;
        let policy = out.join("exec-policy.toml");
        fs::write(
            &policy,
            format!("[[workload]]\nidentity = \"{NAME}\"\ndeny = [\"{DENIED}\"]\n"),
        )?;
        let lsm_out = out.join("prism-lsm.jsonl");
        let lsm_log = out.join("prism-lsm.log");
        self.spawn_split(
            "prism-lsm",
            Command::new(beside("prism-lsm")?).args([
                "--policy",
                policy.to_str().unwrap(),
                "--bus-dir",
                &bus_arg,
                "--names-file",
                &names_arg,
            ]),
            &lsm_out,
            &lsm_log,
        )?;
        wait_until("every leg on the bus", Duration::from_secs(30), || {
            let net = http_get(NET_PORT, "/metrics")?;
            let trace = fs::read_to_string(out.join("prism-trace.log")).ok()?;
            let lsm = fs::read_to_string(&lsm_log).ok()?;
            (net.contains("prism_net_bus_attached 1")
                && trace.contains("bus attached")
                && lsm.contains("gating 1 identities"))
            .then_some(())
        })?;
        self.alive()?;

        println!(
            "[4/6] the workload: a latency probe beside 2 x nCPU batch hogs, UDP, execs, and {DENIED}"
        );
        let ncpu = std::thread::available_parallelism().map_or(2, |n| n.get());
        for _ in 0..2 * ncpu {
            let hog = Command::new("/bin/sh")
                .args(["-c", "read go; exec /bin/sh -c 'while :; do :; done'"])
                .stdin(Stdio::piped())
                .spawn()?;
            fs::write(hogs.join("cgroup.procs"), hog.id().to_string())?;
            let mut hog = hog;
            writeln!(hog.stdin.as_mut().unwrap(), "go")?;
            self.children.push(("hog", hog));
        }
        let sink = UdpSocket::bind("127.0.0.1:0")?;
        let to = sink.local_addr()?.to_string();
        let me = std::env::current_exe()?;
        let script = format!(
            "{probe} --label web --interval-us 2000 --work-us 100 --duration-s 3 > {out}/probe.json; \
             {me} send-udp {to} {DATAGRAMS} {DATAGRAM_BYTES}; /usr/bin/true; /usr/bin/uname -r > /dev/null; \
             {DENIED} > /dev/null 2>&1; echo $? > {out}/denied.status",
            probe = beside("prism-probe")?.display(),
            out = out.display(),
            me = me.display(),
        );
        // The runtime's way: a shell exec'd outside moves into the cgroup,
        // then execs the entrypoint (never gated) whose children are.
        let mut entry = Command::new("/bin/sh")
            .args(["-c", "read go; exec /bin/sh -c \"$0\"", &script])
            .stdin(Stdio::piped())
            .spawn()?;
        fs::write(web.join("cgroup.procs"), entry.id().to_string())?;
        writeln!(entry.stdin.as_mut().unwrap(), "go")?;
        let status = entry.wait()?;
        ensure!(status.success(), "the workload failed: {status}");

        println!("[5/6] what each leg saw of identity {identity}");
        sleep(Duration::from_millis(1500)); // the legs' readers poll every 100 ms-1 s
        let probe: Value = serde_json::from_str(&fs::read_to_string(out.join("probe.json"))?)?;
        let net = http_get(NET_PORT, "/metrics").context("prism-net's metrics")?;
        let id_label = format!("identity=\"{identity}\"");
        let egress_bytes = metric(
            &net,
            "prism_net_bytes_total",
            &[&id_label, "direction=\"egress\""],
        );
        let egress_packets = metric(
            &net,
            "prism_net_packets_total",
            &[&id_label, "direction=\"egress\""],
        );
        let execs: Vec<String> = json_lines(&trace_out)
            .iter()
            .filter(|e| e["identity"] == identity && e["event"] == "exec")
            .filter_map(|e| e["filename"].as_str().map(str::to_string))
            .collect();
        let denied: Vec<String> = json_lines(&lsm_out)
            .iter()
            .filter(|e| e["event"] == "denied" && e["identity"] == identity)
            .filter_map(|e| e["path"].as_str().map(str::to_string))
            .collect();
        let denied_exit_status = fs::read_to_string(out.join("denied.status"))?
            .trim()
            .parse()
            .unwrap_or(-1);
        let prismctl = Command::new(beside("prismctl")?)
            .args(["--bus-dir", &bus_arg, "--names-file", &names_arg])
            .args(["identity", "get", &identity.to_string(), "--json"])
            .output()?;
        let row: Value = serde_json::from_slice(&prismctl.stdout).unwrap_or_default();
        let summary = Summary {
            identity,
            name: NAME,
            class: row["class"].as_str().unwrap_or("?").to_string(),
            latency_p50_us: probe["summary"]["p50_us"].as_f64().unwrap_or(f64::NAN),
            latency_p99_us: probe["summary"]["p99_us"].as_f64().unwrap_or(f64::NAN),
            latency_samples: probe["summary"]["samples"].as_u64().unwrap_or(0),
            egress_bytes,
            egress_packets,
            execs,
            denied,
            denied_exit_status,
            scheduler: fs::read_to_string("/sys/kernel/sched_ext/root/ops")
                .unwrap_or_default()
                .trim()
                .to_string(),
        };
        self.alive()?;
        println!("[6/6] stopping everything; logs in {}", out.display());
        fs::write(
            out.join("legs.json"),
            serde_json::to_string_pretty(&summary)?,
        )?;
        Ok(summary)
    }

    /// SIGINT the scheduler, SIGTERM the rest, kill what does not go; remove
    /// the cgroups and the bus's pins.
    fn stop(&mut self) {
        for (name, c) in &mut self.children {
            let sig = if *name == "scx_prism" {
                libc::SIGINT
            } else {
                libc::SIGTERM
            };
            // SAFETY: kill has no memory preconditions.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        for (_, c) in &mut self.children {
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
        for cg in self.cgroups.iter().rev() {
            for _ in 0..50 {
                if fs::remove_dir(cg).is_ok() || !cg.exists() {
                    break;
                }
                sleep(Duration::from_millis(20));
            }
        }
        if let Some(dir) = self.bus_dir.take() {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

fn print_summary(s: &Summary) {
    println!(
        "\nidentity {} ({}, class {}), under {}:",
        s.identity, s.name, s.class, s.scheduler
    );
    println!(
        "  scheduling (scx_prism, beside batch hogs): wakeup latency p50 {:.0} us, p99 {:.0} us ({} samples)",
        s.latency_p50_us, s.latency_p99_us, s.latency_samples
    );
    println!(
        "  network (prism-net): {} bytes in {} packets sent",
        s.egress_bytes, s.egress_packets
    );
    println!(
        "  execs (prism-trace): {}: {}",
        s.execs.len(),
        s.execs.join(", ")
    );
    println!(
        "  denied (prism-lsm): {} (the workload saw exit status {})",
        s.denied.join(", "),
        s.denied_exit_status
    );
}
