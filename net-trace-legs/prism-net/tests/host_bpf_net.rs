//! prism-net on this host's real kernel (root): real cgroups, a hand-filled
//! real bus, a network namespace joined by veth, and real UDP and TCP
//! traffic from processes placed in those cgroups. Counters per identity
//! and direction equal what was sent (UDP exactly, TCP within the header
//! overhead computed from the packet count), with senders on both CPUs at
//! once; the deny set drops exactly its identity's traffic; the bus can
//! come late or be re-created.

mod support;

use std::path::Path;
use std::time::Duration;

use prism_bus::{BusWriter, Facets, LatencyClass};
use prism_testkit::fixtures::{TempBusDir, TempCgroup, sched_entry};
use support::{Helper, NetNs, PrismNet, labels, pod_labels, wait_for};

/// IPv4 + UDP headers.
const UDP_OVERHEAD: u64 = 20 + 8;

#[test]
fn helper_entry() {
    support::helper_main();
}

struct Setup {
    parent: TempCgroup,
    a: TempCgroup,
    b: TempCgroup,
    bus: TempBusDir,
}

/// cgroups a (identity 300) and b (301) under a parent prism-net attaches at.
fn setup(tag: &str) -> Setup {
    let parent = TempCgroup::new(tag);
    let a = parent.child("a");
    let b = parent.child("b");
    let bus = TempBusDir::new(tag);
    let mut writer = BusWriter::create_or_open(&bus.paths, 1024).unwrap();
    writer
        .write_batch(
            &[
                (a.id(), sched_entry(300, LatencyClass::Critical, 0)),
                (b.id(), sched_entry(301, LatencyClass::Batch, 0)),
            ],
            &[],
        )
        .unwrap();
    Setup { parent, a, b, bus }
}

fn start(s: &Setup, extra: &[&str]) -> PrismNet {
    let mut args = vec![
        "--cgroup",
        s.parent.path.to_str().unwrap(),
        "--bus-dir",
        s.bus.paths.dir.to_str().unwrap(),
        "--names-file",
        "/nonexistent/prism-test-names.json",
    ];
    args.extend_from_slice(extra);
    let net = PrismNet::start(&args);
    wait_for("the bus attached", Duration::from_secs(10), || {
        (net.value("prism_net_bus_attached") == 1).then_some(())
    });
    net
}

fn in_cgroup(mut h: Helper, cg: &Path) -> Helper {
    h.enter(cg);
    h.go();
    h
}

#[test]
fn udp_from_both_cpus_is_counted_exactly_per_identity_and_direction() {
    let s = setup("net-udp");
    let net = start(&s, &[]);
    let ns = NetNs::new();
    let to = format!("{}:9100", ns.ns_ip);
    const N: u64 = 4000;
    const SIZE: u64 = 300;
    let recv = in_cgroup(
        Helper::spawn(
            Some(&ns),
            &["udp-recv", "0.0.0.0:9100", &(2 * N).to_string()],
        ),
        &s.b.path,
    );
    let senders: Vec<Helper> = (0..2)
        .map(|cpu| {
            let h = Helper::spawn(
                None,
                &[
                    "udp-send",
                    &to,
                    &N.to_string(),
                    &SIZE.to_string(),
                    &cpu.to_string(),
                ],
            );
            in_cgroup(h, &s.a.path)
        })
        .collect();
    for h in senders {
        let r = h.result();
        assert_eq!((r["sent"], r["errors"]), (N, 0));
    }
    let got = recv.result();
    assert_eq!(got["received"], 2 * N, "every datagram arrived");

    let out = labels("300", "egress", "unnamed");
    let into = labels("301", "ingress", "unnamed");
    assert_eq!(
        net.value(&format!("prism_net_packets_total{{{out}}}")),
        2 * N
    );
    assert_eq!(
        net.value(&format!("prism_net_bytes_total{{{out}}}")),
        2 * N * (SIZE + UDP_OVERHEAD)
    );
    assert_eq!(
        net.value(&format!("prism_net_packets_total{{{into}}}")),
        2 * N
    );
    assert_eq!(
        net.value(&format!("prism_net_bytes_total{{{into}}}")),
        2 * N * (SIZE + UDP_OVERHEAD)
    );
    assert_eq!(net.value("prism_net_uncounted_packets_total"), 0);
    assert_eq!(
        net.value(&format!(
            "prism_net_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        1
    );
}

#[test]
fn tcp_is_counted_within_the_header_overhead_both_ways() {
    let s = setup("net-tcp");
    let net = start(&s, &[]);
    let ns = NetNs::new();
    const BYTES: u64 = 8 << 20;
    let recv = in_cgroup(
        Helper::spawn(Some(&ns), &["tcp-recv", "0.0.0.0:9200"]),
        &s.b.path,
    );
    let send = in_cgroup(
        Helper::spawn(
            None,
            &[
                "tcp-send",
                &format!("{}:9200", ns.ns_ip),
                &BYTES.to_string(),
            ],
        ),
        &s.a.path,
    );
    let sent = send.result();
    assert_eq!(sent["sent"], BYTES);
    assert_eq!(recv.result()["received"], BYTES);
    // Sent twice (a tail loss probe, say): on the wire twice, counted twice.
    let data = BYTES + sent["retransmitted"];

    let v = |id: &str, dir: &str, what: &str| {
        net.value(&format!(
            "prism_net_{what}_total{{{}}}",
            labels(id, dir, "unnamed")
        ))
    };
    let (out_pkts, out_bytes) = (v("300", "egress", "packets"), v("300", "egress", "bytes"));
    let (in_pkts, in_bytes) = (v("301", "ingress", "packets"), v("301", "ingress", "bytes"));
    // Each packet carries an IPv4 header (20) and a TCP header of 20 to 60
    // bytes (options) over its share of the data.
    println!(
        "tcp a->b: {out_pkts} packets {out_bytes} bytes out, {in_pkts} packets {in_bytes} bytes in, data {data} ({} sent again)",
        sent["retransmitted"]
    );
    assert!(
        out_bytes >= data + out_pkts * 40,
        "{out_bytes} bytes for {out_pkts} packets"
    );
    assert!(
        out_bytes <= data + out_pkts * 80,
        "{out_bytes} bytes for {out_pkts} packets"
    );
    assert_eq!(
        (in_pkts, in_bytes),
        (out_pkts, out_bytes),
        "veth delivers what was sent, segment for segment"
    );
    // The acknowledgements flow back: b egress, a ingress, equal.
    let (acks_out, acks_in) = (
        v("301", "egress", "packets"),
        v("300", "ingress", "packets"),
    );
    assert!(acks_out > 0);
    assert_eq!(acks_out, acks_in);
}

#[test]
fn a_workload_without_the_net_facet_is_neither_counted_nor_denied() {
    let s = setup("net-facet");
    let d = s.parent.child("d");
    let mut w = BusWriter::create_or_open(&s.bus.paths, 1024).unwrap();
    let mut quiet = sched_entry(302, LatencyClass::Normal, 0);
    quiet.flags.facets = Facets::SCHED.union(Facets::OBSERVE);
    w.write_batch(&[(d.id(), quiet)], &[]).unwrap();
    let policy = std::env::temp_dir().join(format!("prism-net-facet-{}.toml", std::process::id()));
    std::fs::write(&policy, "[[deny]]\nidentity = 302\n").unwrap();
    let net = start(&s, &["--policy", policy.to_str().unwrap()]);
    let ns = NetNs::new();
    let to = format!("{}:9400", ns.ns_ip);
    const N: u64 = 300;
    let recv = in_cgroup(
        Helper::spawn(Some(&ns), &["udp-recv", "0.0.0.0:9400", &N.to_string()]),
        &s.b.path,
    );
    let r = in_cgroup(
        Helper::spawn(None, &["udp-send", &to, &N.to_string(), "100", "0"]),
        &d.path,
    )
    .result();
    assert_eq!(
        (r["sent"], r["errors"]),
        (N, 0),
        "302 is denied only with the net facet"
    );
    assert_eq!(recv.result()["received"], N);
    assert_eq!(
        net.value(&format!(
            "prism_net_packets_total{{{}}}",
            labels("0", "egress", "unknown")
        )),
        N,
        "counted as no workload's"
    );
    assert_eq!(
        net.value(&format!(
            "prism_net_packets_total{{{}}}",
            labels("302", "egress", "unnamed")
        )),
        0
    );
    assert!(net.value("prism_net_unfaceted_sockets_total") >= 1);
    let _ = std::fs::remove_file(&policy);
}

#[test]
fn the_deny_set_drops_exactly_its_identitys_traffic() {
    let s = setup("net-deny");
    let c = s.parent.child("c");
    let policy = std::env::temp_dir().join(format!("prism-net-policy-{}.toml", std::process::id()));
    std::fs::write(
        &policy,
        "[[deny]]\nidentity = 300\ndirection = \"egress\"\n",
    )
    .unwrap();
    let net = start(&s, &["--policy", policy.to_str().unwrap()]);
    let ns = NetNs::new();
    let to = format!("{}:9300", ns.ns_ip);
    const N: u64 = 500;

    // a (300) may not send: every datagram is refused at its socket.
    let recv = in_cgroup(
        Helper::spawn(Some(&ns), &["udp-recv", "0.0.0.0:9300", &N.to_string()]),
        &s.b.path,
    );
    let r = in_cgroup(
        Helper::spawn(None, &["udp-send", &to, &N.to_string(), "100", "0"]),
        &s.a.path,
    )
    .result();
    assert_eq!(r["errors"], N, "{r:?}");
    assert_eq!(recv.result()["received"], 0);
    let dropped = labels("300", "egress", "unnamed");
    assert_eq!(
        net.value(&format!("prism_net_dropped_packets_total{{{dropped}}}")),
        N
    );
    assert_eq!(
        net.value(&format!("prism_net_dropped_bytes_total{{{dropped}}}")),
        N * (100 + UDP_OVERHEAD)
    );
    assert_eq!(
        net.value(&format!("prism_net_packets_total{{{dropped}}}")),
        0
    );

    // c (no entry: identity 0) is not denied, nor is b's ingress.
    let recv = in_cgroup(
        Helper::spawn(Some(&ns), &["udp-recv", "0.0.0.0:9300", &N.to_string()]),
        &s.b.path,
    );
    let r = in_cgroup(
        Helper::spawn(None, &["udp-send", &to, &N.to_string(), "100", "1"]),
        &c.path,
    )
    .result();
    assert_eq!((r["sent"], r["errors"]), (N, 0));
    assert_eq!(recv.result()["received"], N);
    assert_eq!(
        net.value(&format!(
            "prism_net_packets_total{{{}}}",
            labels("0", "egress", "unknown")
        )),
        N
    );

    // The policy lifted (SIGHUP): a sends again.
    std::fs::write(&policy, "").unwrap();
    net.signal(libc::SIGHUP);
    wait_for("the reload", Duration::from_secs(10), || {
        net.log().contains("net policy reloaded").then_some(())
    });
    let recv = in_cgroup(
        Helper::spawn(Some(&ns), &["udp-recv", "0.0.0.0:9300", &N.to_string()]),
        &s.b.path,
    );
    let r = in_cgroup(
        Helper::spawn(None, &["udp-send", &to, &N.to_string(), "100", "0"]),
        &s.a.path,
    )
    .result();
    assert_eq!((r["sent"], r["errors"]), (N, 0));
    assert_eq!(recv.result()["received"], N);
    let _ = std::fs::remove_file(&policy);
}

#[test]
fn a_reserved_identity_is_denied_only_when_said_so() {
    let s = setup("net-reserved");
    let policy =
        std::env::temp_dir().join(format!("prism-net-reserved-{}.toml", std::process::id()));
    std::fs::write(&policy, "[[deny]]\nidentity = 0\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_prism-net"))
        .args([
            "--cgroup",
            s.parent.path.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("reserved = true"), "{err}");
    let _ = std::fs::remove_file(&policy);
}

#[test]
fn a_late_bus_is_picked_up_and_a_recreated_one_followed() {
    let parent = TempCgroup::new("net-late");
    let a = parent.child("a");
    let bus = TempBusDir::new("net-late");
    let net = PrismNet::start(&[
        "--cgroup",
        parent.path.to_str().unwrap(),
        "--bus-dir",
        bus.paths.dir.to_str().unwrap(),
        "--names-file",
        "/nonexistent/prism-test-names.json",
    ]);
    assert_eq!(net.value("prism_net_bus_attached"), 0);
    let ns = NetNs::new();
    let to = format!("{}:9400", ns.ns_ip);
    let send = |n: u64| {
        let r = in_cgroup(
            Helper::spawn(None, &["udp-send", &to, &n.to_string(), "64", "0"]),
            &a.path,
        )
        .result();
        assert_eq!(r["sent"], n);
    };
    let egress = |id: &str, name: &str| {
        net.value(&format!(
            "prism_net_packets_total{{{}}}",
            labels(id, "egress", name)
        ))
    };
    // No bus yet: a's traffic is identity 0's.
    send(100);
    assert_eq!(egress("0", "unknown"), 100);

    let mut w = BusWriter::create_or_open(&bus.paths, 1024).unwrap();
    w.write_batch(&[(a.id(), sched_entry(300, LatencyClass::Normal, 0))], &[])
        .unwrap();
    wait_for("the bus attached", Duration::from_secs(10), || {
        (net.value("prism_net_bus_attached") == 1).then_some(())
    });
    send(100);
    assert_eq!(egress("300", "unnamed"), 100);

    // The feeder restarts on a new bus, and gives a another identity.
    drop(w);
    std::fs::remove_file(bus.paths.identity()).unwrap();
    std::fs::remove_file(bus.paths.meta()).unwrap();
    let mut w = BusWriter::create_or_open(&bus.paths, 1024).unwrap();
    w.write_batch(&[(a.id(), sched_entry(310, LatencyClass::Normal, 0))], &[])
        .unwrap();
    wait_for("the new bus attached", Duration::from_secs(10), || {
        net.log()
            .matches("bus attached")
            .count()
            .ge(&2)
            .then_some(())
    });
    send(100);
    assert_eq!(egress("310", "unnamed"), 100);
    assert_eq!(egress("300", "unnamed"), 100, "what was counted stays");
}

#[test]
fn names_come_from_the_feeders_file_and_series_are_bounded() {
    let s = setup("net-names");
    let c = s.parent.child("c");
    let names = std::env::temp_dir().join(format!(
        "prism-net-names-{}/identities.json",
        std::process::id()
    ));
    prism_bus::names::write(
        &names,
        &prism_bus::names::NamesFile::new(vec![
            prism_bus::names::NamedIdentity::new(300, "shop/web").in_namespace("shop"),
            prism_bus::names::NamedIdentity::new(301, "system.slice/report.service"),
        ]),
    )
    .unwrap();
    let net = PrismNet::start(&[
        "--cgroup",
        s.parent.path.to_str().unwrap(),
        "--bus-dir",
        s.bus.paths.dir.to_str().unwrap(),
        "--names-file",
        names.to_str().unwrap(),
        "--max-identities",
        "2",
    ]);
    wait_for("the bus attached", Duration::from_secs(10), || {
        (net.value("prism_net_bus_attached") == 1).then_some(())
    });
    let ns = NetNs::new();
    let to = format!("{}:9500", ns.ns_ip);
    for cg in [&s.a, &s.b, &c] {
        let r = in_cgroup(
            Helper::spawn(None, &["udp-send", &to, "10", "64", "0"]),
            &cg.path,
        )
        .result();
        assert_eq!(r["sent"], 10);
        // One scrape per sender: the first two identities seen get series.
        net.metrics();
    }
    let packets = net.family("prism_net_packets_total");
    assert_eq!(
        packets.get(&pod_labels("300", "egress", "shop", "web")),
        Some(&10),
        "{packets:?}"
    );
    assert_eq!(
        packets.get(&labels("301", "egress", "system.slice/report.service")),
        Some(&10),
        "{packets:?}"
    );
    assert_eq!(
        packets.get(&labels("other", "egress", "other")),
        Some(&10),
        "the third is summed: {packets:?}"
    );
    let _ = std::fs::remove_dir_all(names.parent().unwrap());
}
