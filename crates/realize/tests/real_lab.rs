//! The seed lab on real Open vSwitch and Linux namespaces: bring it up, ping
//! every path of the walkthrough, capture the physical network to prove what
//! travels on it (VLAN tags, DVR MACs as sources, no gateway ARP: with the
//! neighbour caches flushed, the ARP is seen on the VM's port and answered by
//! the local qrouter, and it does reach the wire once br-vlan's drop flow is
//! removed, so the check can tell), check the
//! floating IP and SNAT from the outside, converge twice (nothing to do the
//! second time), remove a router's namespace and watch it come back, tear
//! down and check that nothing is left. Prints bring-up, tear-down and RTT.
//!
//! Needs root, openvswitch-switch, iputils-ping and tcpdump (`.ci/run`
//! installs them). The test is `#[ignore]`d:
//! `scripts/test` runs it when it can (always in CI), and then a missing
//! prerequisite fails it.

mod common;

use common::Capture;
use dvr_model::MacAddr;
use dvr_realize::{Lab, cmd};
use std::net::Ipv4Addr;
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

/// The Ethernet source of a `tcpdump -e -nn` line ("TIME SRC > DST, …").
fn source_mac(line: &str) -> MacAddr {
    let src = line.split_whitespace().nth(1).unwrap_or_default();
    src.parse().unwrap_or_else(|_| panic!("no source MAC in `{line}`"))
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
    for p in dvr_model::seed().paths {
        let to = topo.resolve_address(&p.to).unwrap();
        let r = lab.ping(&p.from, to, 3).unwrap();
        assert!(r.received >= 1, "{} -> {}: no reply\n{}", p.from, p.to, r.output);
        rtts.push((format!("{} -> {}", p.from, p.to), r.rtt_avg_ms.unwrap_or(f64::NAN)));
    }

    // The wire: compute1's port on the physnet1 switch.
    let fabric = lab.names.fabric_ns();
    let c1 = topo.host_ix("compute1").unwrap();
    let c1_mac = topo.host(c1).dvr_mac.unwrap();
    let c1_port = format!("h{}-eth1", c1.0);
    let dir = std::env::temp_dir();
    let qr_macs: Vec<MacAddr> =
        topo.ports.iter().filter(|p| matches!(p.owner, dvr_model::PortOwner::RouterInterfaceDistributed { .. })).map(|p| p.mac).collect();
    let gw1: Ipv4Addr = "192.168.1.1".parse().unwrap();
    let qr1_mac =
        topo.ports.iter().find(|p| p.ip == gw1 && matches!(p.owner, dvr_model::PortOwner::RouterInterfaceDistributed { .. })).unwrap().mac;
    // compute1's qrouter device on test1, where vm1's ARP for its gateway must be answered.
    let c1_plan = plan.host("compute1").unwrap();
    let qr1 = c1_plan.bridge("br-int").unwrap().ports.iter().find(|p| p.mac == Some(qr1_mac)).unwrap();
    let qr1_tag = qr1.tag.unwrap();
    let c1_qrouter =
        lab.names.svc_ns("compute1", &c1_plan.namespaces.iter().find(|n| n.kind == dvr_plan::NamespaceKind::Qrouter).unwrap().name);
    // The pings above filled the neighbour caches: empty them, or no ARP is sent at all.
    for vm in ["vm1", "vm4"] {
        cmd::run("ip", &["-n", &lab.names.ep_ns(vm), "neigh", "flush", "all"], &[], None).unwrap();
    }
    let wire_cap = Capture::start(&fabric, &c1_port, "", dir.join(format!("{}-wire.txt", lab.names.prefix)));
    let vm_cap = Capture::start(&lab.names.ep_ns("vm1"), "eth0", "arp", dir.join(format!("{}-vm1.txt", lab.names.prefix)));
    let qr_cap = Capture::start(&c1_qrouter, &qr1.name, "arp", dir.join(format!("{}-qr.txt", lab.names.prefix)));
    for (from, to) in [("vm1", "192.168.2.20"), ("vm1", "192.168.1.20"), ("vm1", "192.168.1.1"), ("vm4", "192.168.2.1")] {
        assert!(lab.ping(from, to.parse().unwrap(), 2).unwrap().received >= 1);
    }
    let (wire, at_vm, at_qr) = (wire_cap.stop(), vm_cap.stop(), qr_cap.stop());
    // The ARP happened, on the VM's own port, and compute1's own qrouter answered it.
    let asked = "Request who-has 192.168.1.1 tell 192.168.1.9";
    let answer = format!("Reply 192.168.1.1 is-at {qr1_mac}");
    assert!(at_vm.iter().any(|l| l.contains(asked)), "vm1 ARPs for its gateway after the flush:\n{}", at_vm.join("\n"));
    assert!(at_vm.iter().any(|l| l.contains(&answer)), "vm1 gets the gateway's answer:\n{}", at_vm.join("\n"));
    assert!(at_qr.iter().any(|l| l.contains(asked)), "the request reaches compute1's qrouter:\n{}", at_qr.join("\n"));
    assert!(at_qr.iter().any(|l| l.contains(&answer)), "compute1's qrouter answers it:\n{}", at_qr.join("\n"));
    let routed: Vec<&String> = wire.iter().filter(|l| l.contains("vlan 148") && l.contains("192.168.1.9 > 192.168.2.20")).collect();
    assert!(!routed.is_empty(), "routed vm1 -> vm5 frames on the wire with VLAN 148:\n{}", wire.join("\n"));
    for l in &routed {
        assert_eq!(source_mac(l), c1_mac, "source must be compute1's DVR MAC: {l}");
    }
    assert!(wire.iter().any(|l| l.contains("vlan 196") && l.contains("192.168.1.9 > 192.168.1.20")), "same-network frames carry VLAN 196");
    for l in wire.iter().filter(|l| !l.trim().is_empty()) {
        assert!(!qr_macs.contains(&source_mac(l)), "a gateway MAC as a source on the wire: {l}");
        assert!(!l.contains("who-has 192.168.1.1 ") && !l.contains("who-has 192.168.2.1 "), "ARP for a gateway on the wire: {l}");
    }

    // Positive control: without br-vlan's table-1 drop of gateway ARP, the same
    // ARP reaches the wire, so the capture above can tell.
    let drop_flow = format!("table=1,priority=3,arp,dl_vlan={qr1_tag},arp_tpa=192.168.1.1");
    lab.ovs("compute1").ofctl(&["--strict", "del-flows", "br-vlan", &drop_flow], None).unwrap();
    let arp_on_wire = |lab: &Lab| -> Vec<String> {
        cmd::run("ip", &["-n", &lab.names.ep_ns("vm1"), "neigh", "flush", "all"], &[], None).unwrap();
        let cap = Capture::start(&fabric, &c1_port, "arp", dir.join(format!("{}-wire-arp.txt", lab.names.prefix)));
        assert!(lab.ping("vm1", gw1, 1).unwrap().received >= 1, "vm1 reaches its gateway");
        cap.stop().into_iter().filter(|l| l.contains(asked)).collect()
    };
    let leaked = arp_on_wire(lab);
    assert!(!leaked.is_empty(), "without the drop flow, vm1's ARP for its gateway is on the wire");
    assert!(leaked.iter().all(|l| l.contains("vlan 196")), "tagged with test1's segment: {leaked:?}");
    let st = lab.status(&topo, &plan, &mut |_| {}).unwrap();
    assert!(st.of_host("compute1").any(|d| d.kind == "flows" && d.item.contains("br-vlan") && d.item.contains("1 planned flows missing")));
    lab.up(&topo, &plan, &mut |_| {}).unwrap();
    assert!(arp_on_wire(lab).is_empty(), "with the drop flow restored, the ARP stays on the host again");
    eprintln!(
        "gateway ARP: {} request(s) on vm1's port, answered by compute1's qrouter, 0 on the wire; without br-vlan's drop flow: {} on the wire",
        at_vm.iter().filter(|l| l.contains(asked)).count(),
        leaked.len()
    );

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
