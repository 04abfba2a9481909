//! Anti-spoofing on real Open vSwitch, and the twin on the same packets.
//!
//! vm1 (compute1) sends to vm2 (same network, same host) and vm5 (routed,
//! compute2) with a MAC it does not own, and from an IP it does not own with
//! an empty ARP cache and with the next hop already cached. Captures on the
//! sender's and the destination's ports say exactly what passed and what was
//! dropped; `ping` says whether a reply came back. Then the twin traces the
//! same packets (`prime_neighbours` for the cached case) and must give the
//! same two verdicts: request delivered? reply delivered?
//!
//! Neutron's tables 24/25 check ARP sender IPs and source MACs only: a
//! spoofed source IP is stopped only while the instance must ARP first.
//! (A MAC spoof is tested with an empty cache only: Linux flushes a device's
//! neighbours when its MAC changes; the twin covers the cached MAC spoof.)
//!
//! Needs root and Open vSwitch: `cargo test -p dvr-realize --test anti_spoofing -- --ignored`.

mod common;

use common::Capture;
use dvr_realize::lab::{TearDown, parse_ping};
use dvr_realize::{Lab, cmd};
use dvr_sim::{L4, TraceRequest, World};
use std::net::Ipv4Addr;

const SPOOF_IP: &str = "192.168.1.99";
const SPOOF_MAC: &str = "fa:16:3e:00:00:99";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spoof {
    Mac,
    Ip,
}

struct Case {
    name: &'static str,
    spoof: Spoof,
    cached: bool,
    to: &'static str,
    to_ip: &'static str,
    /// The next hop vm1 ARPs for (the destination, or its gateway).
    next_hop: &'static str,
    /// Expected: the echo request reaches the destination.
    request: bool,
}

/// What happened to one spoofed ping: did the request reach the destination, did a reply come back?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Verdict {
    request_delivered: bool,
    reply_delivered: bool,
}

fn sh(args: &[&str]) {
    cmd::run("ip", args, &[], None).unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
}

fn ping(ns: &str, src: Option<&str>, to: &str, count: u32) -> dvr_realize::lab::PingResult {
    let c = count.to_string();
    let mut args = vec!["netns", "exec", ns, "ping", "-n", "-c", &c, "-i", "0.2", "-W", "1"];
    if let Some(s) = src {
        args.extend(["-I", s]);
    }
    args.push(to);
    let out = match cmd::run("ip", &args, &[], None) {
        Ok(o) => o,
        Err(cmd::CmdError::Failed { stderr, .. }) => stderr,
        Err(e) => panic!("{e}"),
    };
    parse_ping(&out)
}

/// The twin's verdicts for the same packet.
fn twin(topo: &dvr_model::Topology, plan: &dvr_plan::Plan, case: &Case, cached: bool) -> (Verdict, dvr_sim::Trace) {
    let mut w = World::build(topo, plan);
    dvr_sim::warm_up(&mut w);
    let req = TraceRequest {
        from: "vm1".into(),
        to: case.to_ip.parse().unwrap(),
        l4: L4::Icmp { reply: false, id: 3 },
        spoof_ip: (case.spoof == Spoof::Ip).then(|| SPOOF_IP.parse().unwrap()),
        spoof_mac: (case.spoof == Spoof::Mac).then(|| SPOOF_MAC.parse().unwrap()),
    };
    if cached {
        dvr_sim::prime_neighbours(&mut w, &req).unwrap();
    }
    let t = dvr_sim::trace(&mut w, &req).unwrap();
    let v = Verdict {
        request_delivered: t.verdict.delivered_to() == Some(case.to),
        reply_delivered: t.reply.as_ref().is_some_and(|r| r.verdict.is_delivered()),
    };
    (v, t)
}

#[test]
#[ignore = "needs root and Open vSwitch"]
fn spoofing_verdicts_twin_equals_real_ovs() {
    let topo = dvr_model::seed();
    let plan = dvr_plan::plan(&topo, dvr_plan::Profile::Walkthrough).unwrap();
    let guard = TearDown(Lab::new(&format!("dvrs{}", std::process::id() % 10000)));
    let lab = &guard.0;
    lab.down().unwrap();
    lab.up(&topo, &plan, &mut |_| {}).unwrap_or_else(|e| panic!("lab up: {e}"));
    let vm1 = lab.names.ep_ns("vm1");
    let dir = std::env::temp_dir();
    let cases = [
        Case {
            name: "MAC spoof",
            spoof: Spoof::Mac,
            cached: false,
            to: "vm2",
            to_ip: "192.168.1.10",
            next_hop: "192.168.1.10",
            request: false,
        },
        Case {
            name: "IP spoof, empty ARP cache",
            spoof: Spoof::Ip,
            cached: false,
            to: "vm2",
            to_ip: "192.168.1.10",
            next_hop: "192.168.1.10",
            request: false,
        },
        Case {
            name: "IP spoof, empty ARP cache, routed",
            spoof: Spoof::Ip,
            cached: false,
            to: "vm5",
            to_ip: "192.168.2.20",
            next_hop: "192.168.1.1",
            request: false,
        },
        Case {
            name: "IP spoof, neighbour cached",
            spoof: Spoof::Ip,
            cached: true,
            to: "vm2",
            to_ip: "192.168.1.10",
            next_hop: "192.168.1.10",
            request: true,
        },
        Case {
            name: "IP spoof, neighbour cached, routed",
            spoof: Spoof::Ip,
            cached: true,
            to: "vm5",
            to_ip: "192.168.2.20",
            next_hop: "192.168.1.1",
            request: true,
        },
    ];
    let mut table = Vec::new();
    for case in &cases {
        // Positive control: vm1 reaches the destination honestly (this also caches the next hop).
        assert!(ping(&vm1, None, case.to_ip, 1).received == 1, "{}: honest vm1 -> {} works", case.name, case.to);
        if !case.cached {
            sh(&["-n", &vm1, "neigh", "flush", "all"]);
        }
        let dst_ns = lab.names.ep_ns(case.to);
        // The destination forgets what earlier cases taught it (a FAILED entry for the spoofed address).
        sh(&["-n", &dst_ns, "neigh", "flush", "all"]);
        let at_src = Capture::start(&vm1, "eth0", "arp or icmp", dir.join(format!("{}-spoof-src.txt", lab.names.prefix)));
        let at_dst = Capture::start(&dst_ns, "eth0", "arp or icmp", dir.join(format!("{}-spoof-dst.txt", lab.names.prefix)));
        let (src_ip, r) = match case.spoof {
            Spoof::Mac => {
                sh(&["-n", &vm1, "link", "set", "eth0", "address", SPOOF_MAC]);
                let r = ping(&vm1, None, case.to_ip, 3);
                let own = topo.port(topo.instances.iter().find(|x| x.name == "vm1").unwrap().port).mac.to_string();
                sh(&["-n", &vm1, "link", "set", "eth0", "address", &own]);
                ("192.168.1.9", r)
            }
            Spoof::Ip => {
                sh(&["-n", &vm1, "addr", "add", &format!("{SPOOF_IP}/32"), "dev", "eth0"]);
                let r = ping(&vm1, Some(SPOOF_IP), case.to_ip, 3);
                // Drop the packets still queued on an unresolved neighbour first: once the
                // spoofed address is gone, the kernel's next ARP retry names vm1's own address,
                // passes table 24, and would release them after the captures end.
                sh(&["-n", &vm1, "neigh", "flush", "all"]);
                sh(&["-n", &vm1, "addr", "del", &format!("{SPOOF_IP}/32"), "dev", "eth0"]);
                (SPOOF_IP, r)
            }
        };
        let (src, dst) = (at_src.stop(), at_dst.stop());
        let echo = format!("{src_ip} > {}: ICMP echo request", case.to_ip);
        let real = Verdict { request_delivered: dst.iter().any(|l| l.contains(&echo)), reply_delivered: r.received > 0 };
        let ctx = format!("{}\nat vm1:\n{}\nat {}:\n{}", case.name, src.join("\n"), case.to, dst.join("\n"));

        // Exactly what passed and what was dropped, on real OVS.
        assert_eq!(real, Verdict { request_delivered: case.request, reply_delivered: false }, "real OVS: {ctx}");
        assert!(src.iter().any(|l| l.contains(&format!("{src_ip} > {}: ICMP echo request", case.to_ip))) || !case.request, "{ctx}");
        match (case.spoof, case.cached) {
            (Spoof::Mac, _) => {
                assert!(src.iter().any(|l| l.starts_with_mac(SPOOF_MAC)), "vm1 sent from the spoofed MAC: {ctx}");
                assert!(!dst.iter().any(|l| l.contains(SPOOF_MAC)), "no frame from the spoofed MAC passed table 25: {ctx}");
            }
            (Spoof::Ip, false) => {
                let asked = format!("Request who-has {} tell {SPOOF_IP}", case.next_hop);
                assert!(src.iter().any(|l| l.contains(&asked)), "vm1 had to ARP, naming the spoofed IP: {ctx}");
                assert!(!src.iter().any(|l| l.contains(&format!("Reply {} is-at", case.next_hop))), "that ARP died in table 24: {ctx}");
                assert!(!dst.iter().any(|l| l.contains(SPOOF_IP)), "nothing from the spoofed IP reached {}: {ctx}", case.to);
            }
            (Spoof::Ip, true) => {
                assert!(!src.iter().any(|l| l.contains(&format!("tell {SPOOF_IP}"))), "cached: vm1 sent without ARPing: {ctx}");
                assert!(
                    dst.iter().any(|l| l.contains(&format!("192.168.2.20 > {SPOOF_IP}: ICMP echo reply")) || case.to != "vm5"),
                    "{ctx}"
                );
                if case.to == "vm2" {
                    // vm2 answers by ARPing for the spoofed address; vm1's answer dies in table 24.
                    assert!(dst.iter().any(|l| l.contains(&format!("Request who-has {SPOOF_IP} tell 192.168.1.10"))), "{ctx}");
                    assert!(src.iter().any(|l| l.contains(&format!("Reply {SPOOF_IP} is-at"))), "vm1 answered: {ctx}");
                    assert!(!dst.iter().any(|l| l.contains(&format!("Reply {SPOOF_IP} is-at"))), "the answer never reached vm2: {ctx}");
                }
            }
        }

        // The twin on the same packet.
        let (tv, t) = twin(&topo, &plan, case, case.cached);
        assert_eq!(
            tv,
            real,
            "twin != real OVS for {}: twin said {:?} / reply {:?}",
            case.name,
            t.verdict.drop_reason(),
            t.reply.as_ref().map(|r| r.verdict.drop_reason())
        );
        if case.cached {
            // Positive control: the twin without the cached neighbour (its old behaviour) disagrees.
            let (cold, _) = twin(&topo, &plan, case, false);
            assert_ne!(cold, real, "{}: the comparison must tell the cached case from the uncached one", case.name);
        }
        table.push(format!(
            "  {:<36} vm1 -> {}: request {:<9} reply {:<9} (real == twin)",
            case.name,
            case.to,
            if real.request_delivered { "delivered" } else { "dropped" },
            if real.reply_delivered { "delivered" } else { "lost" }
        ));
    }
    // vm1 is itself again.
    assert!(ping(&vm1, None, "192.168.1.10", 2).received >= 1);
    let to: Ipv4Addr = "192.168.2.20".parse().unwrap();
    assert!(lab.ping("vm1", to, 2).unwrap().received >= 1);
    eprintln!("anti-spoofing, real OVS and twin:\n{}", table.join("\n"));
}

trait StartsWithMac {
    fn starts_with_mac(&self, mac: &str) -> bool;
}

impl StartsWithMac for String {
    /// Whether a `tcpdump -e` line's Ethernet source is `mac`.
    fn starts_with_mac(&self, mac: &str) -> bool {
        self.split_whitespace().nth(1) == Some(mac)
    }
}
