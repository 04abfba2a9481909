//! VXLAN tenant networks in the plan: br-tun with Neutron's tables,
//! l2population (flood, unicast and ARP-responder entries only towards hosts
//! that share a network), the br-int flows for frames from `patch-tun`,
//! mixed VLAN + VXLAN routers, and golden snapshots of `labs/seed-vxlan.yaml`
//! and `labs/seed-mixed.yaml`.

use dvr_model::{SEED_MIXED_YAML, SEED_VXLAN_YAML, SEED_YAML, Topology, load_str};
use dvr_openflow::Flow;
use dvr_plan::tunnel::tunnel_port_name;
use dvr_plan::{Bridge, HostPlan, Plan, PortKind, Profile, plan, render};
use std::net::Ipv4Addr;

fn topo(yaml: &str) -> Topology {
    load_str("lab.yaml", yaml).unwrap()
}

fn plan_of(yaml: &str, profile: Profile) -> Plan {
    plan(&topo(yaml), profile).unwrap()
}

fn bridge<'a>(h: &'a HostPlan, name: &str) -> &'a Bridge {
    h.bridge(name).unwrap_or_else(|| panic!("{} has no {name}", h.host))
}

/// The flows of a table as text.
fn table(b: &Bridge, t: u8) -> Vec<String> {
    b.flows.iter().filter(|f| f.table.0 == t).map(|f| f.to_string()).collect()
}

fn flows_matching<'a>(b: &'a Bridge, t: u8, needle: &str) -> Vec<&'a Flow> {
    b.flows.iter().filter(|f| f.table.0 == t && f.to_string().contains(needle)).map(|f| f.as_ref()).collect()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// Same redaction as golden.rs: builder lines become `L`.
fn redact_lines(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(".rs:") {
        out.push_str(&rest[..i + 4]);
        rest = &rest[i + 4..];
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            out.push('L');
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

fn text(yaml: &str, profile: Profile, host: &str) -> String {
    let p = plan_of(yaml, profile);
    redact_lines(&render::host_text(p.host(host).unwrap(), render::TextOptions { explain: true }))
}

#[test]
fn seed_vxlan_network() {
    insta::assert_snapshot!(text(SEED_VXLAN_YAML, Profile::Walkthrough, "network"));
}

#[test]
fn seed_vxlan_compute1() {
    insta::assert_snapshot!(text(SEED_VXLAN_YAML, Profile::Walkthrough, "compute1"));
}

#[test]
fn seed_vxlan_compute2() {
    insta::assert_snapshot!(text(SEED_VXLAN_YAML, Profile::Walkthrough, "compute2"));
}

#[test]
fn seed_vxlan_compute1_current_neutron() {
    insta::assert_snapshot!(text(SEED_VXLAN_YAML, Profile::Current, "compute1"));
}

#[test]
fn seed_mixed_compute1() {
    insta::assert_snapshot!(text(SEED_MIXED_YAML, Profile::Walkthrough, "compute1"));
}

#[test]
fn seed_mixed_network_current_neutron() {
    insta::assert_snapshot!(text(SEED_MIXED_YAML, Profile::Current, "network"));
}

#[test]
fn br_tun_only_with_tunnels() {
    // Positive control: the VLAN seed lab has no br-tun and no patch-tun.
    let vlan = plan_of(SEED_YAML, Profile::Walkthrough);
    for h in &vlan.hosts {
        assert!(h.bridge("br-tun").is_none(), "{}", h.host);
        assert!(h.bridges.iter().flat_map(|b| &b.ports).all(|p| p.name != "patch-tun"));
    }
    let vx = plan_of(SEED_VXLAN_YAML, Profile::Walkthrough);
    assert!(vx.host("controller").unwrap().bridges.is_empty());
    for name in ["network", "compute1", "compute2"] {
        let h = vx.host(name).unwrap();
        let tun = bridge(h, "br-tun");
        assert_eq!(tun.ports[0].name, "patch-int");
        assert_eq!(tun.ports[0].kind, PortKind::Patch { peer: "patch-tun".into() });
        let int = bridge(h, "br-int");
        assert!(int.ports.iter().any(|p| p.name == "patch-tun" && p.kind == PortKind::Patch { peer: "patch-int".into() }));
        // No physnet1 in this file: only br-ex besides br-int and br-tun.
        let names: Vec<&str> = h.bridges.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["br-int", "br-ex", "br-tun"], "{name}");
    }
}

#[test]
fn tunnel_ports_are_named_and_configured_as_neutron_does() {
    assert_eq!(tunnel_port_name(ip("172.16.0.3")), "vxlan-ac100003");
    assert_eq!(tunnel_port_name(ip("10.0.0.255")), "vxlan-0a0000ff");
    let p = plan_of(SEED_VXLAN_YAML, Profile::Walkthrough);
    let tun = bridge(p.host("compute1").unwrap(), "br-tun");
    let got: Vec<(String, PortKind)> = tun.ports.iter().skip(1).map(|p| (p.name.clone(), p.kind.clone())).collect();
    let local = ip("172.16.0.2");
    assert_eq!(
        got,
        [
            ("vxlan-ac100001".to_string(), PortKind::Vxlan { local_ip: local, remote_ip: ip("172.16.0.1"), dst_port: 4789 }),
            ("vxlan-ac100003".to_string(), PortKind::Vxlan { local_ip: local, remote_ip: ip("172.16.0.3"), dst_port: 4789 }),
        ]
    );
    let rendered = render::host_text(p.host("compute1").unwrap(), render::TextOptions { explain: false });
    assert!(rendered.contains("vxlan local_ip=172.16.0.2 remote_ip=172.16.0.3 key=flow dst_port=4789"));
}

#[test]
fn vni_to_local_vlan_and_back() {
    let p = plan_of(SEED_VXLAN_YAML, Profile::Walkthrough);
    let h = p.host("compute2").unwrap();
    let tun = bridge(h, "br-tun");
    let t = topo(SEED_VXLAN_YAML);
    let c2 = t.hosts.iter().find(|x| x.name == "compute2").unwrap();
    for (net, vni) in [("test1", 1001u32), ("test2", 1002)] {
        let n = t.networks.iter().position(|x| x.name == net).unwrap();
        let lvid = c2.local_vlan(dvr_model::NetworkIx(n)).unwrap();
        assert!(
            table(tun, 4)
                .contains(&format!("table=4, priority=1,tun_id={vni:#x} actions=push_vlan:0x8100,mod_vlan_vid:{lvid},resubmit(,9)")),
            "{:?}",
            table(tun, 4)
        );
        // Every frame of the network leaving through a tunnel carries its VNI.
        for f in tun.flows.iter().filter(|f| f.table.0 == 20 || f.table.0 == 22) {
            if f.matches.dl_vlan == Some(dvr_openflow::VlanMatch::Tagged(lvid.get())) {
                assert!(f.actions_string().contains(&format!("set_field:{vni:#x}->tun_id")), "{f}");
                assert!(f.actions_string().starts_with("strip_vlan"), "{f}");
            }
        }
    }
}

#[test]
fn l2population_entries_point_at_the_right_tunnels() {
    let t = topo(SEED_VXLAN_YAML);
    let p = plan(&t, Profile::Walkthrough).unwrap();
    let tun_of = |host: &str| tunnel_port_name(t.hosts.iter().find(|h| h.name == host).unwrap().tunnel_ip.unwrap());
    let c1 = bridge(p.host("compute1").unwrap(), "br-tun");
    for vm in &t.instances {
        let port = &t.ports[vm.port.0];
        let host = &t.hosts[vm.host.0].name;
        let ucast = flows_matching(c1, 20, &format!("dl_dst={}", port.mac));
        let arp = flows_matching(c1, 21, &format!("arp_tpa={} ", port.ip));
        if host == "compute1" {
            assert!(ucast.is_empty() && arp.is_empty(), "{}: local ports get no l2pop entries", vm.name);
        } else {
            assert_eq!(ucast.len(), 1, "{}", vm.name);
            assert!(ucast[0].actions_string().ends_with(&format!("output:{}", tun_of(host))), "{}", ucast[0]);
            assert_eq!(arp.len(), 1, "{}", vm.name);
            let a = arp[0].actions_string();
            assert!(
                a.contains(&format!("set_field:{}->arp_sha", port.mac)) && a.contains(&format!("set_field:{}->arp_spa", port.ip)),
                "{a}"
            );
            assert!(a.ends_with("IN_PORT"), "{a}");
        }
    }
    // The distributed router interfaces have the same MAC everywhere: flood entries only.
    for r in t.ports.iter().filter(|p| matches!(p.owner, dvr_model::PortOwner::RouterInterfaceDistributed { .. })) {
        assert!(flows_matching(c1, 20, &format!("dl_dst={}", r.mac)).is_empty());
        assert!(flows_matching(c1, 21, &format!("arp_tpa={} ", r.ip)).is_empty());
    }
    // Flood: both other hosts have both networks.
    let flood = table(c1, 22);
    assert!(
        flood
            .iter()
            .any(|f| f.contains("dl_vlan=1 actions=strip_vlan,set_field:0x3e9->tun_id,output:vxlan-ac100001,output:vxlan-ac100003")),
        "{flood:?}"
    );
}

/// A network with ports on one host only has no tunnels; a host with no
/// ports on a network gets none of its entries and no tunnel for it.
#[test]
fn only_hosts_with_ports_on_a_network_get_its_tunnels() {
    let yaml = SEED_VXLAN_YAML
        .replace(
            "\nnetworks:\n",
            "  - name: compute3\n    role: compute\n    bridge_mappings: {extnet: br-ex}\n\nnetworks:\n  - name: solo\n    type: vxlan\n    segmentation_id: 3000\n    subnets:\n      - {name: solo-v4, cidr: 192.168.9.0/24, enable_dhcp: false}\n",
        )
        .replace("\ninstances:\n", "\ninstances:\n  - {name: vm9, host: compute2, network: solo, ip: 192.168.9.5}\n");
    let t = topo(&yaml);
    let p = plan(&t, Profile::Walkthrough).unwrap();
    let c3 = p.host("compute3").unwrap();
    let c3_tun = bridge(c3, "br-tun");
    assert_eq!(c3_tun.ports.len(), 1, "compute3 has no networks: br-tun with patch-int only");
    assert_eq!(table(c3_tun, 22), ["table=22, priority=0 actions=drop"]);
    let c3_ip = t.hosts.iter().find(|h| h.name == "compute3").unwrap().tunnel_ip.unwrap();
    for h in &p.hosts {
        if let Some(tun) = h.bridge("br-tun") {
            assert!(tun.ports.iter().all(|x| x.name != tunnel_port_name(c3_ip)), "{} has a tunnel to compute3", h.host);
            if h.host != "compute2" {
                assert!(tun.flows.iter().all(|f| f.matches.tun_id != Some(3000)), "{} has VNI 3000", h.host);
            }
        }
    }
    // compute2 has solo (VNI 3000 → local VLAN), but floods it nowhere.
    let c2 = bridge(p.host("compute2").unwrap(), "br-tun");
    assert_eq!(flows_matching(c2, 4, "tun_id=0xbb8").len(), 1);
    let solo_lvid = t.hosts.iter().find(|h| h.name == "compute2").unwrap().local_vlan(dvr_model::NetworkIx(0)).unwrap();
    assert!(flows_matching(c2, 22, &format!("dl_vlan={solo_lvid} ")).is_empty(), "{:?}", table(c2, 22));
    // Positive control: test1 does flood from compute2.
    assert!(!flows_matching(c2, 22, "set_field:0x3e9->tun_id").is_empty());
}

#[test]
fn dvr_process_keeps_gateway_traffic_local_and_rewrites_the_source() {
    let t = topo(SEED_VXLAN_YAML);
    let gw_mac = |s: &str| {
        t.ports.iter().find(|p| p.ip == ip(s) && matches!(p.owner, dvr_model::PortOwner::RouterInterfaceDistributed { .. })).unwrap().mac
    };
    for profile in Profile::ALL {
        let p = plan(&t, profile).unwrap();
        let h = p.host("compute1").unwrap();
        let tun = bridge(h, "br-tun");
        let dvr_mac = h.dvr_mac.unwrap();
        let gw1 = gw_mac("192.168.1.1");
        assert_eq!(flows_matching(tun, 1, &format!("dl_dst={gw1} actions=drop")).len(), 1);
        let src = flows_matching(tun, 1, &format!("dl_src={gw1} "));
        assert_eq!(src.len(), 1);
        assert!(src[0].actions_string().starts_with(&format!("mod_dl_src:{dvr_mac},")), "{}", src[0]);
        let (arp_table, other) = match profile {
            Profile::Walkthrough => (1, 22),
            Profile::Current => (22, 1),
        };
        assert_eq!(flows_matching(tun, arp_table, "arp_tpa=192.168.1.1 actions=drop").len(), 1, "{profile:?}");
        assert!(flows_matching(tun, other, "arp_tpa=192.168.1.1").is_empty(), "{profile:?}");
        // The ARP responder never answers for a gateway.
        assert!(flows_matching(tun, 21, "arp_tpa=192.168.1.1 ").is_empty());
    }
}

#[test]
fn br_int_sends_remote_dvr_macs_from_patch_tun_to_dvr_to_src_mac() {
    let p = plan_of(SEED_VXLAN_YAML, Profile::Walkthrough);
    let c2 = p.host("compute2").unwrap();
    let int = bridge(c2, "br-int");
    let others: Vec<_> = p.hosts.iter().filter(|h| h.host != "compute2").filter_map(|h| h.dvr_mac).collect();
    assert_eq!(others.len(), 2);
    for mac in others {
        let f = flows_matching(int, 0, &format!("in_port=patch-tun,dl_src={mac} "));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].actions_string(), "resubmit(,1)");
        assert_eq!(flows_matching(bridge(c2, "br-tun"), 9, &format!("dl_src={mac} actions=output:patch-int")).len(), 1);
    }
    // vm5 (test2) is DVR-serviced: table 1 restores test2's gateway MAC, table 60 outputs.
    let t = topo(SEED_VXLAN_YAML);
    let vm5 = &t.ports[t.instances.iter().find(|i| i.name == "vm5").unwrap().port.0];
    assert_eq!(flows_matching(int, 1, &format!("dl_dst={}", vm5.mac)).len(), 1);
    assert_eq!(flows_matching(int, 60, &format!("dl_dst={}", vm5.mac)).len(), 1);
    // ... and no physical DVR tables for tunnel networks.
    assert!(table(int, 2).iter().all(|f| f.contains("priority=1 ")), "{:?}", table(int, 2));
    assert_eq!(flows_matching(int, 0, &format!("in_port=patch-tun,dl_dst={} ", c2.dvr_mac.unwrap())).len(), 1);
    assert_eq!(table(int, 3).len(), 2, "one per router interface");
}

#[test]
fn mixed_router_uses_physical_tables_for_vlan_and_tunnel_tables_for_vxlan() {
    let t = topo(SEED_MIXED_YAML);
    let p = plan(&t, Profile::Walkthrough).unwrap();
    let c1 = p.host("compute1").unwrap();
    let vm1 = &t.ports[t.instances.iter().find(|i| i.name == "vm1").unwrap().port.0];
    let vm4 = &t.ports[t.instances.iter().find(|i| i.name == "vm4").unwrap().port.0];
    let int = bridge(c1, "br-int");
    // vm1 on test1 (VLAN 196): table 2; vm4 on test2 (VNI 1002): table 1.
    assert_eq!(flows_matching(int, 2, &format!("dl_vlan=196,dl_dst={}", vm1.mac)).len(), 1);
    assert_eq!(flows_matching(int, 1, &format!("dl_dst={}", vm4.mac)).len(), 1);
    assert!(flows_matching(int, 1, &format!("dl_dst={}", vm1.mac)).is_empty());
    // br-vlan translates test1 only; br-tun carries test2 only.
    let vlan = bridge(c1, "br-vlan");
    assert!(table(vlan, 2).iter().any(|f| f.contains("mod_vlan_vid:196")));
    let tun = bridge(c1, "br-tun");
    assert_eq!(table(tun, 4).iter().filter(|f| f.contains("tun_id=")).count(), 1);
    assert!(table(tun, 4).iter().any(|f| f.contains("tun_id=0x3ea")));
    assert!(flows_matching(tun, 21, "arp_tpa=192.168.1.").is_empty(), "no l2pop for the VLAN network");
    assert!(!flows_matching(tun, 21, "arp_tpa=192.168.2.20 ").is_empty());
}

#[test]
fn security_groups_work_over_vxlan() {
    let yaml = dvr_model::SEED_SECURE_YAML
        .replace(
            "    type: vlan\n    physical_network: physnet1\n    segmentation_id: 196\n",
            "    type: vxlan\n    segmentation_id: 1001\n",
        )
        .replace(
            "    type: vlan\n    physical_network: physnet1\n    segmentation_id: 148\n",
            "    type: vxlan\n    segmentation_id: 1002\n",
        );
    assert_ne!(yaml, dvr_model::SEED_SECURE_YAML);
    let t = topo(&yaml);
    assert!(t.networks.iter().filter(|n| n.segment.vni().is_some()).count() == 2);
    let p = plan(&t, Profile::Current).unwrap();
    let int = bridge(p.host("compute1").unwrap(), "br-int");
    assert!(!table(int, 71).is_empty() && !table(int, 82).is_empty(), "firewall tables are planned");
    assert!(p.host("compute1").unwrap().bridge("br-tun").is_some());
}

#[test]
fn every_vxlan_flow_has_provenance_and_a_declared_table() {
    for yaml in [SEED_VXLAN_YAML, SEED_MIXED_YAML] {
        for profile in Profile::ALL {
            let p = plan_of(yaml, profile);
            let mut n = 0;
            for h in &p.hosts {
                for b in &h.bridges {
                    for f in &b.flows {
                        assert!(f.builder.starts_with("crates/plan/src/"), "{f}: builder `{}`", f.builder);
                        assert!(f.reason.len() > 10, "{f}: no reason");
                        assert!(dvr_plan::tables::lookup(b.kind, f.table).is_some(), "{} {f}: table not declared", b.name);
                        if b.name == "br-tun" {
                            n += 1;
                            assert!(f.builder.starts_with("crates/plan/src/tunnel.rs:"), "{f}");
                        }
                    }
                }
            }
            assert!(n > 50, "br-tun flows planned: {n}");
        }
    }
}

#[test]
fn vxlan_plan_is_deterministic() {
    let a = serde_json::to_string(&plan_of(SEED_VXLAN_YAML, Profile::Walkthrough)).unwrap();
    let b = serde_json::to_string(&plan_of(SEED_VXLAN_YAML, Profile::Walkthrough)).unwrap();
    assert_eq!(a, b);
}
