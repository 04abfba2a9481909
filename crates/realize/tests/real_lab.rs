//! The seed lab on real Open vSwitch and Linux namespaces: bring it up, ping
//! every path of the walkthrough, capture the physical network to prove what
//! travels on it (VLAN tags, DVR MACs as sources, no gateway ARP), check the
//! floating IP and SNAT from the outside, converge twice (nothing to do the
//! second time), remove a router's namespace and watch it come back, tear
//! down and check that nothing is left. Prints bring-up, tear-down and RTT.
//!
//! Needs root, openvswitch-switch, iputils-ping and tcpdump (`.ci/run`
//! installs them). The test is `#[ignore]`d:
//! `scripts/test` runs it when it can (always in CI), and then a missing
//! prerequisite fails it.

use dvr_realize::{Lab, cmd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn prerequisites() -> Result<(), String> {
    cmd::prerequisites(&[
        "ovs-vswitchd",
        "ovsdb-server",
        "ovs-vsctl",
        "ovs-ofctl",
        "ip",
        "ping",
        "tcpdump",
        "ethtool",
        "iptables-legacy-restore",
    ])
}

/// A packet capture running in a namespace until stopped.
struct Capture {
    child: Child,
    file: std::path::PathBuf,
}

impl Capture {
    /// Capture decoded lines (`tcpdump -e -nn -l`) into `file` until stopped.
    fn start(ns: &str, dev: &str, filter: &str, file: std::path::PathBuf) -> Capture {
        let out = std::fs::File::create(&file).unwrap();
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "tcpdump", "-i", dev, "-e", "-nn", "-l"])
            .args(filter.split_whitespace())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Traffic may start once tcpdump says it is listening (at most 10 s).
        let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut line = String::new();
            while err.read_line(&mut line).unwrap_or(0) > 0 {
                if line.contains("listening on") {
                    let _ = tx.send(());
                }
                line.clear();
            }
        });
        let _ = rx.recv_timeout(Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(100));
        Capture { child, file }
    }

    /// Stop and return the captured lines.
    fn stop(mut self) -> Vec<String> {
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
        let lines: Vec<String> = std::fs::read_to_string(&self.file).unwrap_or_default().lines().map(String::from).collect();
        let _ = std::fs::remove_file(&self.file);
        lines
    }
}

#[test]
#[ignore = "needs root and Open vSwitch: scripts/test runs it when it can (always in CI)"]
fn seed_lab_on_real_ovs() {
    if let Err(why) = prerequisites() {
        panic!("the real lab test cannot run: {why}");
    }
    let topo = dvr_model::seed();
    let plan = dvr_plan::plan(&topo, dvr_plan::Profile::Walkthrough).unwrap();
    let guard = dvr_realize::lab::TearDown(Lab::new(&format!("dvrt{}", std::process::id())));
    let lab = &guard.0;
    let _ = lab.down();

    // Bring-up, then a second converge that must find nothing to do.
    let t0 = Instant::now();
    let report = lab.up(&topo, &plan, &mut |_| {}).unwrap_or_else(|e| panic!("lab up: {e}"));
    let up_ms = t0.elapsed().as_millis();
    assert!(report.ops.iter().map(|(_, o)| o.len()).sum::<usize>() > 100);
    let again = lab.up(&topo, &plan, &mut |_| {}).unwrap();
    for (h, ops) in &again.ops {
        assert!(ops.is_empty(), "{h}: second apply changed things: {:?}", ops.iter().map(|o| o.to_string()).collect::<Vec<_>>());
    }

    // Every path of the walkthrough, with a real ping and its reply.
    let mut rtts = Vec::new();
    for p in dvr_sim::demo::parse_paths(dvr_model::SEED_YAML) {
        let to: std::net::Ipv4Addr =
            p.to.parse()
                .ok()
                .or_else(|| topo.instances.iter().find(|x| x.name == p.to).map(|x| topo.port(x.port).ip))
                .or_else(|| topo.external_hosts.iter().find(|e| e.name == p.to).map(|e| e.ip))
                .unwrap();
        let r = lab.ping(&p.from, to, 3).unwrap();
        assert!(r.received >= 1, "{} -> {}: no reply\n{}", p.from, p.to, r.output);
        rtts.push((format!("{} -> {}", p.from, p.to), r.rtt_avg_ms.unwrap_or(f64::NAN)));
    }

    // The wire: compute1's port on the physnet1 switch.
    let fabric = lab.names.fabric_ns();
    let c1 = topo.host_ix("compute1").unwrap();
    let c1_mac = topo.host(c1).dvr_mac.unwrap().to_string();
    let c1_port = format!("h{}-eth1", c1.0);
    let dir = std::env::temp_dir();
    let qr_macs: Vec<String> = topo
        .ports
        .iter()
        .filter(|p| matches!(p.owner, dvr_model::PortOwner::RouterInterfaceDistributed { .. }))
        .map(|p| p.mac.to_string())
        .collect();
    let cap = Capture::start(&fabric, &c1_port, "", dir.join(format!("{}-wire.txt", lab.names.prefix)));
    for (from, to) in [("vm1", "192.168.2.20"), ("vm1", "192.168.1.20"), ("vm1", "192.168.1.1"), ("vm4", "192.168.2.1")] {
        assert!(lab.ping(from, to.parse().unwrap(), 2).unwrap().received >= 1);
    }
    let wire = cap.stop();
    let routed: Vec<&String> = wire.iter().filter(|l| l.contains("vlan 148") && l.contains("192.168.1.9 > 192.168.2.20")).collect();
    assert!(!routed.is_empty(), "routed vm1 -> vm5 frames on the wire with VLAN 148:\n{}", wire.join("\n"));
    for l in &routed {
        assert!(
            l.starts_with(&format!("{} ", l.split_whitespace().next().unwrap())) && l.contains(&format!("{c1_mac} >")),
            "source must be compute1's DVR MAC {c1_mac}: {l}"
        );
    }
    assert!(wire.iter().any(|l| l.contains("vlan 196") && l.contains("192.168.1.9 > 192.168.1.20")), "same-network frames carry VLAN 196");
    for l in &wire {
        for qr in &qr_macs {
            assert!(!l.contains(&format!("{qr} >")), "gateway MAC {qr} as a source on the wire: {l}");
        }
        assert!(!l.contains("who-has 192.168.1.1 ") && !l.contains("who-has 192.168.2.1 "), "ARP for a gateway on the wire: {l}");
    }

    // From the outside: SNAT source and the floating IP.
    let ext = lab.names.ep_ns("ext1");
    let cap = Capture::start(&ext, "eth0", "icmp", dir.join(format!("{}-ext.txt", lab.names.prefix)));
    assert!(lab.ping("vm2", "10.100.0.14".parse().unwrap(), 2).unwrap().received >= 1);
    assert!(lab.ping("vm1", "10.100.0.14".parse().unwrap(), 2).unwrap().received >= 1);
    let seen = cap.stop();
    assert!(
        seen.iter().any(|l| l.contains("10.100.0.2 > 10.100.0.14")),
        "ext1 sees vm2's traffic from the router gateway 10.100.0.2:\n{}",
        seen.join("\n")
    );
    assert!(seen.iter().any(|l| l.contains("10.100.0.7 > 10.100.0.14")), "ext1 sees vm1's traffic from its floating IP");
    assert!(!seen.iter().any(|l| l.contains("192.168.")), "no fixed IP leaks to the outside");
    assert!(lab.ping("ext1", "10.100.0.7".parse().unwrap(), 2).unwrap().received >= 1, "the floating IP answers from ext1");

    // Convergence from drift: a deleted router namespace comes back.
    let qr_ns = lab.namespaces().unwrap().into_iter().find(|n| n.contains("host-compute2.qrouter-")).unwrap();
    cmd::run("ip", &["netns", "del", &qr_ns], &[], None).unwrap();
    assert!(
        lab.ping("vm5", "192.168.1.20".parse().unwrap(), 1).unwrap().received == 0,
        "routing on compute2 is broken without its qrouter"
    );
    let fix = lab.up(&topo, &plan, &mut |_| {}).unwrap();
    assert!(fix.ops.iter().any(|(h, o)| h == "compute2" && !o.is_empty()));
    assert!(lab.ping("vm5", "192.168.1.20".parse().unwrap(), 3).unwrap().received >= 1, "converged again");

    // Tear-down leaves nothing behind.
    let t1 = Instant::now();
    lab.down().unwrap();
    let down_ms = t1.elapsed().as_millis();
    std::thread::sleep(Duration::from_millis(500));
    let left = lab.leftovers();
    assert!(left.is_empty(), "left behind: {left:?}");

    eprintln!("seed lab: bring-up {up_ms} ms ({} namespaces), tear-down {down_ms} ms", report.namespaces);
    for (p, rtt) in rtts {
        eprintln!("  ping {p:<26} rtt avg {rtt:.3} ms");
    }
}
