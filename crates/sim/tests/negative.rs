//! What must not get through: spoofed sources, networks no router joins,
//! floating IPs without an instance, and traces from unknown endpoints.

use dvr_plan::Profile;
use dvr_sim::step::{ArpDecline, ArpFailure};
use dvr_sim::{Disposition, DropReason, L4, Step, Trace, TraceRequest, World, trace};
use std::net::Ipv4Addr;

fn run(yaml: &str, from: &str, to: &str, spoof_ip: Option<&str>, spoof_mac: Option<&str>) -> Trace {
    let topo = dvr_model::load_str("test.yaml", yaml).unwrap();
    let plan = dvr_plan::plan(&topo, Profile::Walkthrough).unwrap();
    let mut w = World::build(&topo, &plan);
    let to: Ipv4Addr = to.parse().unwrap();
    let req = TraceRequest {
        from: from.into(),
        to,
        l4: L4::Icmp { reply: false, id: 7 },
        spoof_ip: spoof_ip.map(|s| s.parse().unwrap()),
        spoof_mac: spoof_mac.map(|s| s.parse().unwrap()),
    };
    trace(&mut w, &req).unwrap()
}

fn dropped_at<'a>(t: &'a Trace, host: &str, bridge: &str) -> Vec<&'a Step> {
    t.hops.iter().filter(|h| h.host == host && h.where_ == bridge && h.fate == Some(dvr_sim::Fate::Dropped)).map(|h| &h.step).collect()
}

/// The table of the flow or miss that dropped the traced packet's ARP, from the typed verdict.
fn arp_drop_table(t: &Trace) -> Option<u8> {
    match &t.verdict.dropped()?.reason {
        DropReason::NeighbourUnreachable { cause: ArpFailure::RequestDropped { drop } | ArpFailure::AnswerDropped { drop }, .. } => {
            match drop.reason {
                DropReason::Flow { table, .. } | DropReason::TableMiss { table, .. } => Some(table),
                _ => None,
            }
        }
        _ => None,
    }
}

#[test]
fn spoofed_source_ip_dies_in_table_24() {
    let t = run(dvr_model::SEED_YAML, "vm1", "192.168.1.10", Some("192.168.1.99"), None);
    assert!(!t.verdict.is_delivered());
    assert_eq!(t.disposition(), Disposition::NeighbourUnreachable);
    let drops = dropped_at(&t, "compute1", "br-int");
    assert!(drops.iter().any(|d| matches!(d, Step::Table { table: 24, flow, .. } if flow.priority == 0)), "{drops:?}");
    assert_eq!(arp_drop_table(&t), Some(24), "{:?}", t.verdict);
    // The spoofed ARP never left br-int: no hop anywhere else saw it.
    assert!(t.hops.iter().all(|h| h.host == "compute1" && (h.where_ == "vm1" || h.where_ == "br-int")));
}

#[test]
fn spoofed_source_mac_dies_in_table_25() {
    let t = run(dvr_model::SEED_YAML, "vm1", "192.168.1.10", None, Some("fa:16:3e:00:00:99"));
    assert!(!t.verdict.is_delivered());
    let drops = dropped_at(&t, "compute1", "br-int");
    assert!(drops.iter().any(|d| matches!(d, Step::Miss { table: 25, table_name: Some("MAC_SPOOF_TABLE"), .. })), "{drops:?}");
    assert!(t.hops.iter().all(|h| h.host == "compute1"), "nothing left compute1");
}

/// The seed lab after earlier honest traffic from `from` to `to` (the
/// neighbour is cached), then the spoofed request.
fn run_cached(from: &str, to: &str, spoof_ip: Option<&str>, spoof_mac: Option<&str>) -> Trace {
    let topo = dvr_model::seed();
    let plan = dvr_plan::plan(&topo, Profile::Walkthrough).unwrap();
    let mut w = World::build(&topo, &plan);
    dvr_sim::warm_up(&mut w);
    let req = TraceRequest {
        from: from.into(),
        to: to.parse().unwrap(),
        l4: L4::Icmp { reply: false, id: 7 },
        spoof_ip: spoof_ip.map(|s| s.parse().unwrap()),
        spoof_mac: spoof_mac.map(|s| s.parse().unwrap()),
    };
    dvr_sim::prime_neighbours(&mut w, &req).unwrap();
    trace(&mut w, &req).unwrap()
}

/// The notes say what tables 24/25 protect, and (for an IP spoof) what they do not.
fn assert_explains_anti_spoofing(t: &Trace, ip_spoof: bool) {
    let notes = t.notes.join("\n");
    assert!(notes.contains("table 24") && notes.contains("sender IP"), "{notes}");
    assert!(notes.contains("table 25") && notes.contains("source MAC"), "{notes}");
    assert_eq!(notes.contains("security-group firewall"), ip_spoof, "{notes}");
    assert_eq!(notes.contains("do not check the source IP"), ip_spoof, "{notes}");
}

#[test]
fn spoofed_source_ip_with_cached_neighbour_passes_24_25_and_loses_only_replies() {
    // Same network, same host: delivered to vm2 from the spoofed address.
    let t = run_cached("vm1", "192.168.1.10", Some("192.168.1.99"), None);
    assert_eq!(t.verdict.delivered_to(), Some("vm2"), "{:?}", t.verdict.drop_reason());
    let request = dvr_sim::delivery_path(&t);
    assert!(request.iter().all(|h| h.packet.ip_src.to_string() == "192.168.1.99"), "sent from the spoofed address");
    assert!(
        request.iter().any(|h| h.where_ == "br-int" && matches!(&h.step, Step::Table { table: 25, flow, .. } if flow.priority == 2)),
        "passed table 25"
    );
    assert!(
        !request.iter().any(|h| matches!(h.step, Step::Table { table: 24, .. } | Step::Miss { table: 24, .. })),
        "IP packets do not visit table 24"
    );
    let reply = t.reply.as_deref().expect("a reply was attempted");
    assert!(!reply.verdict.is_delivered());
    assert_eq!(reply.disposition(), Disposition::NeighbourUnreachable);
    let why = reply.verdict.drop_reason().unwrap();
    assert!(why.contains("no ARP reply for 192.168.1.99") && why.contains("answer was dropped") && why.contains("table 24"), "{why}");
    assert_explains_anti_spoofing(&t, true);
    assert!(reply.notes.is_empty(), "notes belong to the request");

    // Routed across hosts: delivered to vm5; compute2's router cannot reach the spoofed address.
    let t = run_cached("vm1", "192.168.2.20", Some("192.168.1.99"), None);
    assert_eq!(t.verdict.delivered_to(), Some("vm5"), "{:?}", t.verdict.drop_reason());
    let reply = t.reply.as_deref().unwrap();
    assert!(!reply.verdict.is_delivered());
    assert!(reply.verdict.drop_reason().unwrap().contains("no ARP reply for 192.168.1.99"), "{:?}", reply.verdict.drop_reason());
}

#[test]
fn spoofed_source_ip_without_cache_and_spoofed_mac_either_way_never_leave_br_int() {
    let t = run(dvr_model::SEED_YAML, "vm1", "192.168.2.20", Some("192.168.1.99"), None);
    assert_eq!(t.disposition(), Disposition::NeighbourUnreachable);
    assert!(
        t.verdict.drop_reason().unwrap().contains("no ARP reply for 192.168.1.1") && t.verdict.drop_reason().unwrap().contains("table 24")
    );
    assert_explains_anti_spoofing(&t, true);
    for cached in [false, true] {
        let t = if cached {
            run_cached("vm1", "192.168.1.10", None, Some("fa:16:3e:00:00:99"))
        } else {
            run(dvr_model::SEED_YAML, "vm1", "192.168.1.10", None, Some("fa:16:3e:00:00:99"))
        };
        assert!(!t.verdict.is_delivered(), "cached={cached}");
        assert!(t.verdict.drop_reason().unwrap().contains("table 25"), "cached={cached}: {:?}", t.verdict.drop_reason());
        assert!(t.hops.iter().all(|h| h.host == "compute1" && (h.where_ == "vm1" || h.where_ == "br-int")), "cached={cached}");
        assert_explains_anti_spoofing(&t, false);
    }
}

#[test]
fn a_network_no_router_joins_cannot_reach_another_network() {
    let yaml = dvr_model::SEED_YAML
        .replace(
            "  - name: external\n",
            "  - name: test3\n    type: vlan\n    physical_network: physnet1\n    segmentation_id: 300\n    subnets:\n      - {name: test3-v4, cidr: 192.168.3.0/24}\n  - name: external\n",
        )
        .replace("\nfloating_ips:", "  - {name: vm6, host: compute1, network: test3, ip: 192.168.3.5}\n\nfloating_ips:");
    let t = run(&yaml, "vm6", "192.168.1.9", None, None);
    assert!(!t.verdict.is_delivered());
    assert_eq!(t.disposition(), Disposition::NeighbourUnreachable);
    assert!(t.verdict.drop_reason().unwrap().contains("no ARP reply for 192.168.3.1"), "{:?}", t.verdict.drop_reason());
    // Its gateway ARP went out on VLAN 300 (no DVR flow drops it: no router owns 192.168.3.1) and nobody answered.
    assert!(t.hops.iter().any(|h| h.where_ == "physnet1" && h.packet.vlan == Some(300)));
    assert!(!t.hops.iter().any(|h| h.where_ == "vm1"), "vm1 never sees it");
}

#[test]
fn an_unassociated_floating_ip_is_unreachable() {
    let yaml =
        dvr_model::SEED_YAML.replace("  - {ip: 10.100.0.7, instance: vm1}", "  - {ip: 10.100.0.7, instance: vm1}\n  - {ip: 10.100.0.8}");
    let t = run(&yaml, "ext1", "10.100.0.8", None, None);
    assert!(!t.verdict.is_delivered());
    assert!(t.verdict.drop_reason().unwrap().contains("no ARP reply for 10.100.0.8"));
    assert!(!t.hops.iter().any(|h| matches!(h.step, Step::ProxyArp { .. })), "no fg- answers for an unassociated FIP");
    assert!(
        t.hops.iter().filter(|h| matches!(h.step, Step::ArpIgnored { why: ArpDecline::NoProxyRoute, .. })).count() >= 3,
        "each fg- considered and declined"
    );
    // The associated one still works in the same deployment.
    let ok = run(&yaml, "ext1", "10.100.0.7", None, None);
    assert_eq!(ok.verdict.delivered_to(), Some("vm1"));
}

#[test]
fn unknown_endpoint_is_an_error_that_lists_the_endpoints() {
    let topo = dvr_model::seed();
    let plan = dvr_plan::plan(&topo, Profile::Walkthrough).unwrap();
    let mut w = World::build(&topo, &plan);
    let req = TraceRequest {
        from: "vm9".into(),
        to: Ipv4Addr::new(192, 168, 1, 1),
        l4: L4::Icmp { reply: false, id: 1 },
        spoof_ip: None,
        spoof_mac: None,
    };
    let e = trace(&mut w, &req).unwrap_err().to_string();
    assert!(e.contains("vm9") && e.contains("vm1, vm2") && e.contains("ext1") && e.contains("fix:"), "{e}");
}

#[test]
fn current_neutron_profile_lets_gateway_arp_reach_the_wire() {
    // Quirk Q1: today's Neutron puts the gateway ARP drop in the unreached br-phys table 22.
    let topo = dvr_model::seed();
    let plan = dvr_plan::plan(&topo, Profile::Current).unwrap();
    let mut w = World::build(&topo, &plan);
    let req = TraceRequest {
        from: "vm1".into(),
        to: Ipv4Addr::new(192, 168, 1, 1),
        l4: L4::Icmp { reply: false, id: 1 },
        spoof_ip: None,
        spoof_mac: None,
    };
    let t = trace(&mut w, &req).unwrap();
    assert_eq!(t.verdict.delivered_to(), Some("router1@compute1"));
    assert!(t.hops.iter().any(|h| h.kind == dvr_sim::HopKind::Wire && h.packet.proto == "arp"), "the ARP for the gateway crosses the wire");
}

#[test]
fn reach_gives_the_same_verdicts_as_trace() {
    let topo = dvr_model::seed();
    let plan = dvr_plan::plan(&topo, Profile::Walkthrough).unwrap();
    let mut cases: Vec<TraceRequest> = dvr_model::seed()
        .paths
        .iter()
        .map(|p| TraceRequest {
            from: p.from.clone(),
            to: topo.resolve_address(&p.to).unwrap(),
            l4: L4::Icmp { reply: false, id: 3 },
            spoof_ip: None,
            spoof_mac: None,
        })
        .collect();
    cases.push(TraceRequest {
        from: "vm1".into(),
        to: Ipv4Addr::new(192, 168, 1, 10),
        l4: L4::Icmp { reply: false, id: 3 },
        spoof_ip: Some(Ipv4Addr::new(192, 168, 1, 99)),
        spoof_mac: None,
    });
    cases.push(TraceRequest {
        from: "vm4".into(),
        to: Ipv4Addr::new(10, 100, 0, 99),
        l4: L4::Udp { sport: 5, dport: 53 },
        spoof_ip: None,
        spoof_mac: None,
    });
    for req in cases {
        let mut a = World::build(&topo, &plan);
        let mut b = a.clone();
        dvr_sim::warm_up(&mut a);
        dvr_sim::warm_up(&mut b);
        let full = trace(&mut a, &req).unwrap();
        let fast = dvr_sim::reach(&mut b, &req).unwrap();
        assert!(fast.hops.is_empty());
        assert_eq!(full.verdict, fast.verdict, "{req:?}");
        assert_eq!(
            full.reply.map(|r| r.verdict.delivered_to().map(String::from)),
            fast.reply.map(|r| r.verdict.delivered_to().map(String::from)),
            "{req:?}"
        );
    }
}

#[test]
fn copies_form_a_tree_that_holds_every_hop_once() {
    // Cold MAC tables: the first frames are flooded, so copies branch.
    let topo = dvr_model::seed();
    let plan = dvr_plan::plan(&topo, Profile::Walkthrough).unwrap();
    let mut w = World::build(&topo, &plan);
    let req = TraceRequest {
        from: "vm1".into(),
        to: topo.resolve_address("vm3").unwrap(),
        l4: L4::Icmp { reply: false, id: 9 },
        spoof_ip: None,
        spoof_mac: None,
    };
    let t = trace(&mut w, &req).unwrap();
    fn walk(n: &dvr_sim::trace::CopyNode, seen: &mut usize, branched: &mut bool) {
        for h in &n.hops {
            assert_eq!(h.copy, n.copy, "a node holds only its own copy's hops");
        }
        *seen += n.hops.len();
        *branched |= n.children.len() > 1;
        for c in &n.children {
            assert!(n.copy.is_ancestor_of(&c.copy) && c.copy.0.len() == n.copy.0.len() + 1, "{} under {}", c.copy, n.copy);
            walk(c, seen, branched);
        }
    }
    let (mut seen, mut branched) = (0, false);
    for root in t.copy_tree() {
        walk(&root, &mut seen, &mut branched);
    }
    assert_eq!(seen, t.hops.len());
    assert!(branched, "a flood makes sibling copies");
}
