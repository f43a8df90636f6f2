//! What prism-net costs a packet (root; the release binary, real sockets):
//! a TCP stream and a flood of small UDP datagrams over loopback, each run
//! alternately without and with prism-net's programs attached at the
//! sender's and receiver's cgroup, in the same run. Prints each trial, the
//! medians and the loss. Target (issue [5/6]): <= 3% on the TCP stream.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use prism_testkit::fixtures::{TempBusDir, TempCgroup};
use prism_testkit::stats::{median, paired_trials};

const TRIAL: Duration = Duration::from_secs(2);
const PAIRS: usize = 11;

/// MB/s of one TCP stream over loopback for TRIAL.
fn tcp_stream() -> f64 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let reader = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = vec![0u8; 1 << 17];
        let mut total = 0u64;
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        total
    });
    let mut s = TcpStream::connect(addr).unwrap();
    let buf = vec![0x5a; 1 << 16];
    let t0 = Instant::now();
    while t0.elapsed() < TRIAL {
        s.write_all(&buf).unwrap();
    }
    drop(s);
    let total = reader.join().unwrap();
    total as f64 / t0.elapsed().as_secs_f64() / 1e6
}

/// Thousands of 64-byte datagrams a second sent over loopback for TRIAL.
fn udp_flood() -> f64 {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = rx.local_addr().unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let drain = thread::spawn(move || {
        let mut buf = [0u8; 128];
        while rx.recv(&mut buf).is_ok() {}
    });
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let buf = [0u8; 64];
    let (t0, mut sent) = (Instant::now(), 0u64);
    while t0.elapsed() < TRIAL {
        if tx.send_to(&buf, to).is_ok() {
            sent += 1;
        }
    }
    let kpps = sent as f64 / t0.elapsed().as_secs_f64() / 1e3;
    drain.join().unwrap();
    kpps
}

fn start_prism_net(cg: &TempCgroup, bus: &TempBusDir) -> Child {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_prism-net"))
        .args([
            "--cgroup",
            cg.path.to_str().unwrap(),
            "--bus-dir",
            bus.paths.dir.to_str().unwrap(),
        ])
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--names-file",
            "/nonexistent",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prism-net");
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "prism-net did not start"
        );
        thread::sleep(Duration::from_millis(20));
    }
    child
}

fn main() {
    prism_testkit::fixtures::require_root();
    let cg = TempCgroup::new("net-bench");
    let bus = TempBusDir::new("net-bench");
    prism_bus::BusWriter::create_or_open(&bus.paths, 1024).unwrap();
    cg.enter(std::process::id()); // every socket made from now on is counted
    let stats = prism_testkit::fixtures::BpfStats::enable();
    for (what, unit, run) in [
        ("TCP stream", "MB/s", tcp_stream as fn() -> f64),
        ("UDP 64 B datagrams", "k/s", udp_flood as fn() -> f64),
    ] {
        let pairs = paired_trials(
            PAIRS,
            run,
            || start_prism_net(&cg, &bus),
            || {
                for prog in ["prism_net_ingress", "prism_net_egress"] {
                    let (runs, ns) = stats.of(prog);
                    println!(
                        "  {prog}: {runs} packets, {:.0} ns each in the kernel",
                        ns as f64 / runs.max(1) as f64
                    );
                }
            },
        );
        for (pair, (without, with)) in pairs.iter().enumerate() {
            println!("{what}, pair {pair}: without {without:.0} {unit}, with {with:.0} {unit}");
        }
        let (without, with): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
        let (a, b) = (median(&without), median(&with));
        println!(
            "{what}: median without {a:.0} {unit}, with {b:.0} {unit}: {:+.1}% ({PAIRS} pairs, {} s each; target for TCP: >= -3%)",
            (b / a - 1.0) * 100.0,
            TRIAL.as_secs()
        );
    }
}
