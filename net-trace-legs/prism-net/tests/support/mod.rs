//! What prism-net's real-kernel tests share: the prism-net binary as a
//! process, network namespaces joined to the host by a veth pair, and
//! traffic processes (this test binary run again as a helper) that the test
//! places in cgroups before they send or receive.

#![allow(dead_code)] // each test binary uses its own part of this

pub use prism_testkit::fixtures::{free_port, wait_for};

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::Duration;

fn run(cmd: &[&str]) {
    let out = Command::new(cmd[0]).args(&cmd[1..]).output().expect(cmd[0]);
    assert!(
        out.status.success(),
        "{}: {}",
        cmd.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace with a veth to the host: host side `host_ip`,
/// namespace side `ns_ip` (a /30 of 10.233.x.0).
pub struct NetNs {
    pub name: String,
    pub host_ip: String,
    pub ns_ip: String,
}

impl NetNs {
    pub fn new() -> NetNs {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}{n}", std::process::id() % 10000);
        let name = format!("prism-test-{tag}");
        let (host_if, ns_if) = (format!("pth{tag}"), format!("ptn{tag}"));
        let net = (std::process::id() % 60) * 4 + n * 4 % 250;
        let host_ip = format!("10.233.{}.1", net % 250);
        let ns_ip = format!("10.233.{}.2", net % 250);
        run(&["ip", "netns", "add", &name]);
        run(&[
            "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        run(&["ip", "link", "set", &ns_if, "netns", &name]);
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{host_ip}/30"),
            "dev",
            &host_if,
        ]);
        run(&["ip", "link", "set", &host_if, "up"]);
        run(&[
            "ip",
            "-n",
            &name,
            "addr",
            "add",
            &format!("{ns_ip}/30"),
            "dev",
            &ns_if,
        ]);
        run(&["ip", "-n", &name, "link", "set", &ns_if, "up"]);
        run(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        NetNs {
            name,
            host_ip,
            ns_ip,
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, and so the pair.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A traffic process: this test binary again, running `helper_entry` with a
/// role. It says "ready", waits for "go" (time to put it in a cgroup: a
/// socket belongs to the cgroup it was made in, so none is made before),
/// makes its socket and says "started", does its work, and prints one line
/// of results.
pub struct Helper {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

pub const HELPER_ENV: &str = "PRISM_NET_HELPER";

impl Helper {
    /// `role` and its arguments; in the namespace `netns` if given.
    pub fn spawn(netns: Option<&NetNs>, role: &[&str]) -> Helper {
        let exe = std::env::current_exe().expect("test binary");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns.name]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let mut child = cmd
            .args([
                "--exact",
                "helper_entry",
                "--nocapture",
                "--test-threads",
                "1",
                "--quiet",
            ])
            .env(HELPER_ENV, role.join(" "))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn helper");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while line.trim() != "ready" {
            line.clear();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "helper {role:?} died"
            );
        }
        Helper {
            child,
            stdin,
            stdout,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Move it into the cgroup at `cgroup`.
    pub fn enter(&self, cgroup: &Path) {
        fs::write(cgroup.join("cgroup.procs"), self.pid().to_string()).expect("cgroup.procs");
    }

    /// Start it; returns once its socket exists (a receiver is listening).
    pub fn go(&mut self) {
        writeln!(self.stdin, "go").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        while line.trim() != "started" {
            line.clear();
            assert!(self.stdout.read_line(&mut line).unwrap() > 0, "helper died");
        }
    }

    /// Its result line as `key value` pairs.
    pub fn result(mut self) -> BTreeMap<String, u64> {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let _ = self.child.wait();
        let words: Vec<&str> = line.split_whitespace().collect();
        words
            .chunks(2)
            .map(|kv| (kv[0].to_string(), kv[1].parse().expect("a number")))
            .collect()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The helper side: call from a `#[test] fn helper_entry()`.
pub fn helper_main() {
    let Ok(role) = std::env::var(HELPER_ENV) else {
        return; // an ordinary test run: nothing to do
    };
    let args: Vec<&str> = role.split_whitespace().collect();
    println!("ready");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    // Now in its cgroup: make the socket, then work.
    let work: Box<dyn FnOnce() -> String> = match args[0] {
        "udp-recv" => {
            let sock = UdpSocket::bind(args[1]).unwrap();
            let want: u64 = args[2].parse().unwrap();
            Box::new(move || udp_recv(sock, want))
        }
        "udp-send" => {
            let (to, count, size, cpu) = (
                args[1].to_string(),
                args[2].parse().unwrap(),
                args[3].parse().unwrap(),
                args[4].parse().unwrap(),
            );
            Box::new(move || udp_send(&to, count, size, cpu))
        }
        "tcp-recv" => {
            let l = TcpListener::bind(args[1]).unwrap();
            Box::new(move || tcp_recv(l))
        }
        "tcp-send" => {
            let (to, bytes) = (args[1].to_string(), args[2].parse().unwrap());
            Box::new(move || tcp_send(&to, bytes))
        }
        other => panic!("unknown helper role {other}"),
    };
    println!("started");
    println!("{}", work());
    std::process::exit(0);
}

fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set is a valid mask.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set),
            0
        );
    }
}

fn udp_send(to: &str, count: u64, size: usize, cpu: usize) -> String {
    pin_to(cpu);
    let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
    let buf = vec![0x5a; size];
    let (mut sent, mut errors) = (0u64, 0u64);
    for i in 0..count {
        match sock.send_to(&buf, to) {
            Ok(_) => sent += 1,
            Err(_) => errors += 1,
        }
        // Paced: no queue between here and the receiver overflows.
        if i % 32 == 31 {
            sleep(Duration::from_micros(500));
        }
    }
    format!("sent {sent} errors {errors}")
}

fn udp_recv(sock: UdpSocket, want: u64) -> String {
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = vec![0u8; 65536];
    let (mut packets, mut bytes) = (0u64, 0u64);
    while packets < want {
        match sock.recv(&mut buf) {
            Ok(n) => {
                packets += 1;
                bytes += n as u64;
            }
            Err(_) => break, // nothing for 3 s: all that comes has come
        }
    }
    format!("received {packets} bytes {bytes}")
}

fn tcp_recv(l: TcpListener) -> String {
    let (mut s, _) = l.accept().unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n as u64,
        }
    }
    format!("received {total}")
}

fn tcp_send(to: &str, bytes: u64) -> String {
    let mut s = TcpStream::connect(to).unwrap();
    let buf = vec![0xa5; 1 << 16];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        s.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = vec![];
    let _ = s.read_to_end(&mut rest); // the peer's close
    format!("sent {bytes} retransmitted {}", retransmitted(&s))
}

/// Bytes the kernel sent again on this connection (TCP_INFO).
fn retransmitted(s: &TcpStream) -> u64 {
    use std::os::fd::AsRawFd;
    // SAFETY: a zeroed tcp_info is valid; getsockopt writes at most `len`.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        assert_eq!(rc, 0, "TCP_INFO");
        info.tcpi_bytes_retrans
    }
}

/// A running prism-net; killed when dropped (its log shown if the test failed).
pub struct PrismNet {
    child: Option<Child>,
    pub port: u16,
    log: PathBuf,
}

impl PrismNet {
    pub fn start(args: &[&str]) -> PrismNet {
        let port = free_port();
        let log =
            std::env::temp_dir().join(format!("prism-net-test-{}-{port}.log", std::process::id()));
        let child = Command::new(env!("CARGO_BIN_EXE_prism-net"))
            .args(args)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn prism-net");
        let net = PrismNet {
            child: Some(child),
            port,
            log,
        };
        wait_for("prism-net to serve", Duration::from_secs(20), || {
            net.assert_running();
            net.metrics()
        });
        net
    }

    pub fn assert_running(&self) {
        if let Some(c) = &self.child {
            let stat = fs::read_to_string(format!("/proc/{}/stat", c.id())).unwrap_or_default();
            assert!(
                !stat.is_empty() && !stat.contains(") Z "),
                "prism-net exited:\n{}",
                self.log()
            );
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(self.child.as_ref().unwrap().id() as i32, sig) };
    }

    pub fn metrics(&self) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        write!(s, "GET /metrics HTTP/1.0\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        Some(text.split_once("\r\n\r\n")?.1.to_string())
    }

    /// The value of one series, e.g. `prism_net_packets_total{identity="300",direction="egress",workload="a"}`;
    /// 0 if absent.
    pub fn value(&self, series: &str) -> u64 {
        let body = self.metrics().expect("metrics served");
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    }

    /// Every series of a family: labels -> value.
    pub fn family(&self, name: &str) -> BTreeMap<String, u64> {
        let body = self.metrics().expect("metrics served");
        body.lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(name)?.strip_prefix('{')?;
                let (labels, value) = rest.rsplit_once("} ")?;
                Some((labels.to_string(), value.parse().ok()?))
            })
            .collect()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        self.child.take().unwrap().wait().unwrap()
    }
}

impl Drop for PrismNet {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- prism-net log ----\n{}", self.log());
        }
        let _ = fs::remove_file(&self.log);
    }
}

/// `identity="N",direction="D",namespace="",workload="W"` as the exporter
/// writes it for a workload that is no pod.
pub fn labels(identity: &str, direction: &str, workload: &str) -> String {
    pod_labels(identity, direction, "", workload)
}

/// The labels of a pod identity's series: its namespace apart.
pub fn pod_labels(identity: &str, direction: &str, namespace: &str, workload: &str) -> String {
    format!(
        "identity=\"{identity}\",direction=\"{direction}\",namespace=\"{namespace}\",workload=\"{workload}\""
    )
}
