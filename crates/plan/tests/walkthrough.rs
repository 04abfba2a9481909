//! The plan follows the walkthrough (reference/dvr-walkthrough.md) fact by
//! fact: where each namespace lives, which flows carry each path, and what
//! the l3 agent writes into each namespace.

use dvr_model::{PortOwner, Topology, seed};
use dvr_openflow::{Action, Flow, Ipv4Match, Proto, VlanMatch};
use dvr_plan::{HostPlan, NamespaceKind, Profile, RuleSelector, plan};
use std::collections::BTreeSet;

fn host<'a>(p: &'a dvr_plan::Plan, name: &str) -> &'a HostPlan {
    p.host(name).unwrap()
}

fn flows<'a>(h: &'a HostPlan, bridge: &str, table: u8) -> Vec<&'a Flow> {
    h.bridge(bridge).unwrap().flows.iter().filter(|f| f.table.0 == table).map(|f| &**f).collect()
}

fn port_mac(t: &Topology, vm: &str) -> dvr_model::MacAddr {
    let x = t.instances.iter().find(|i| i.name == vm).unwrap();
    t.port(x.port).mac
}

fn kinds(h: &HostPlan) -> Vec<NamespaceKind> {
    h.namespaces.iter().map(|n| n.kind).collect()
}

#[test]
fn namespaces_live_where_neutron_puts_them() {
    let p = plan(&seed(), Profile::Walkthrough).unwrap();
    use NamespaceKind::*;
    assert!(host(&p, "controller").namespaces.is_empty() && host(&p, "controller").bridges.is_empty());
    assert_eq!(kinds(host(&p, "network")), [Qrouter, Snat, Fip, Qdhcp, Qdhcp]);
    assert_eq!(kinds(host(&p, "compute1")), [Qrouter, Fip]);
    assert_eq!(kinds(host(&p, "compute2")), [Qrouter, Fip]);
}

#[test]
fn no_router_copy_on_a_compute_node_without_its_instances() {
    let yaml = dvr_model::SEED_YAML
        .replace(
            "{name: vm3, host: compute2, network: test1, ip: 192.168.1.20}",
            "{name: vm3, host: compute1, network: test1, ip: 192.168.1.20}",
        )
        .replace(
            "{name: vm5, host: compute2, network: test2, ip: 192.168.2.20}",
            "{name: vm5, host: compute1, network: test2, ip: 192.168.2.20}",
        );
    let t = dvr_model::load_str("moved.yaml", &yaml).unwrap();
    let p = plan(&t, Profile::Walkthrough).unwrap();
    let c2 = host(&p, "compute2");
    assert!(c2.namespaces.is_empty(), "compute2 hosts no instance: no qrouter, no fip");
    // It still learns every other host's DVR MAC (the OVS agent programs them all).
    assert_eq!(flows(c2, "br-vlan", 3).iter().filter(|f| f.priority == 2).count(), 2);
}

#[test]
fn same_network_cross_host_translates_local_vlan_to_segment() {
    let t = seed();
    let p = plan(&t, Profile::Walkthrough).unwrap();
    let c1 = host(&p, "compute1");
    let lvid = t.hosts[2].local_vlan(dvr_model::NetworkIx(0)).unwrap().get();
    let out = flows(c1, "br-vlan", 2).into_iter().find(|f| f.matches.dl_vlan == Some(VlanMatch::Tagged(lvid))).unwrap();
    assert_eq!(out.actions, [Action::ModVlanVid(196), Action::Normal]);
    let inn = flows(host(&p, "compute2"), "br-int", 0)
        .into_iter()
        .find(|f| f.priority == 3 && f.matches.dl_vlan == Some(VlanMatch::Tagged(196)))
        .unwrap();
    assert_eq!(inn.matches.in_port.as_deref(), Some("int-br-vlan"));
    assert!(matches!(inn.actions[0], Action::ModVlanVid(_)));
}

#[test]
fn routed_cross_host_uses_dvr_mac_and_restores_gateway_mac() {
    let t = seed();
    let p = plan(&t, Profile::Walkthrough).unwrap();
    let c1_mac = t.hosts[2].dvr_mac.unwrap();
    let (c1, c2) = (host(&p, "compute1"), host(&p, "compute2"));
    // Sender: br-vlan table 1 rewrites the source of frames routed by the local qr- (gateway MAC).
    let qr_test2 = c1.bridge("br-int").unwrap().ports.iter().find(|p| p.name.starts_with("qr-") && p.tag == Some(2)).unwrap().mac.unwrap();
    let rewrite = flows(c1, "br-vlan", 1).into_iter().find(|f| f.matches.dl_src == Some(qr_test2)).unwrap();
    assert_eq!(rewrite.actions, [Action::ModDlSrc(c1_mac), Action::Resubmit(dvr_openflow::TableId(2))]);
    // Receiver: br-vlan table 3 sends DVR-MAC frames straight to br-int …
    assert!(
        flows(c2, "br-vlan", 3).iter().any(|f| f.matches.dl_src == Some(c1_mac) && f.actions == [Action::Output("phy-br-vlan".into())])
    );
    // … br-int table 0 to table 2 …
    assert!(
        flows(c2, "br-int", 0)
            .iter()
            .any(|f| f.priority == 4 && f.matches.dl_src == Some(c1_mac) && f.actions == [Action::Resubmit(dvr_openflow::TableId(2))])
    );
    // … table 2 restores the gateway MAC for vm5 and table 60 outputs to vm5 without the tag.
    let vm5 = port_mac(&t, "vm5");
    let t2 = flows(c2, "br-int", 2).into_iter().find(|f| f.matches.dl_dst == Some(vm5)).unwrap();
    assert_eq!(t2.matches.dl_vlan, Some(VlanMatch::Tagged(148)));
    assert_eq!(t2.actions[0], Action::ModDlSrc(qr_test2));
    let t60 = flows(c2, "br-int", 60).into_iter().find(|f| f.matches.dl_dst == Some(vm5)).unwrap();
    assert_eq!(t60.actions[0], Action::StripVlan);
    assert!(matches!(&t60.actions[1], Action::Output(p) if p.starts_with("qvo")));
}

#[test]
fn gateway_traffic_never_leaves_the_host() {
    let t = seed();
    let p = plan(&t, Profile::Walkthrough).unwrap();
    let mut checked = 0;
    for h in ["network", "compute1", "compute2"] {
        let hp = host(&p, h);
        let t1 = flows(hp, "br-vlan", 1);
        for port in hp.bridge("br-int").unwrap().ports.iter().filter(|p| p.name.starts_with("qr-")) {
            let mac = port.mac.unwrap_or_else(|| panic!("{h}: {} has no MAC", port.name));
            let tag = VlanMatch::Tagged(port.tag.unwrap_or_else(|| panic!("{h}: {} has no local VLAN", port.name)));
            // The router interface with this MAC, and the gateway address it owns.
            let rif = t
                .ports
                .iter()
                .find(|x| x.mac == mac && matches!(x.owner, PortOwner::RouterInterfaceDistributed { .. }))
                .unwrap_or_else(|| panic!("{h}: no router interface has {}'s MAC {mac}", port.name));
            let gateway = t.subnet(rif.subnet).gateway;
            assert_eq!(rif.ip, gateway, "a qr- port owns its subnet's gateway address");
            assert!(
                t1.iter().any(|f| f.matches.dl_dst == Some(mac) && f.matches.dl_vlan == Some(tag) && f.actions == [Action::Drop]),
                "{h}: frames to the gateway MAC {mac} dropped on br-vlan"
            );
            assert!(
                t1.iter().any(|f| f.matches.proto == Some(Proto::Arp)
                    && f.matches.arp_tpa == Some(Ipv4Match::host(gateway))
                    && f.matches.dl_vlan == Some(tag)
                    && f.actions == [Action::Drop]),
                "{h}: ARP for the gateway {gateway} dropped on br-vlan"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 6, "two router interfaces on each of three hosts");
}

#[test]
fn anti_spoofing_chain_24_25_60() {
    let t = seed();
    let p = plan(&t, Profile::Walkthrough).unwrap();
    let c1 = host(&p, "compute1");
    let vm1 = t.port(t.instances[0].port);
    let dev = vm1.device_name();
    assert!(flows(c1, "br-int", 0).iter().any(|f| f.priority == 10
        && f.matches.in_port.as_deref() == Some(&dev)
        && f.actions == [Action::Resubmit(dvr_openflow::TableId(24))]));
    assert!(flows(c1, "br-int", 24).iter().any(|f| f.matches.arp_spa.map(|a| a.addr) == Some(vm1.ip)));
    assert!(
        flows(c1, "br-int", 25)
            .iter()
            .any(|f| f.matches.dl_src == Some(vm1.mac) && f.actions == [Action::Resubmit(dvr_openflow::TableId(60))])
    );
    let cur = plan(&t, Profile::Current).unwrap();
    assert!(
        flows(host(&cur, "compute1"), "br-int", 25).iter().any(|f| f.actions == [Action::GotoTable(dvr_openflow::TableId(30))]),
        "quirk Q2"
    );
    assert!(flows(host(&cur, "compute1"), "br-vlan", 22).iter().any(|f| f.matches.arp_tpa.is_some()), "quirk Q1");
    assert!(flows(host(&cur, "compute1"), "br-vlan", 1).iter().all(|f| f.matches.arp_tpa.is_none()), "quirk Q1");
}

#[test]
fn qrouter_policy_routing_and_permanent_arp() {
    let t = seed();
    let p = plan(&t, Profile::Walkthrough).unwrap();
    let c1 = host(&p, "compute1");
    let q = c1.namespaces.iter().find(|n| n.kind == NamespaceKind::Qrouter).unwrap();
    // SNAT redirect: from the subnet, table = the gateway address as an integer.
    let idx = u32::from(std::net::Ipv4Addr::new(192, 168, 1, 1));
    let r = q.rules.iter().find(|r| r.table == idx).unwrap();
    assert_eq!(r.priority, idx);
    // `from 192.168.1.1/24`: the gateway address with the subnet's prefix, as the
    // agent adds it and `ip rule` prints it (real Neutron's capture shows this form).
    assert_eq!(r.selector, RuleSelector::From("192.168.1.1/24".parse().unwrap()));
    assert_eq!(dvr_plan::render::namespace_text(q).lines().filter(|l| l.contains("from 192.168.1.1/24 lookup")).count(), 1);
    let sg = t.port(t.snat_port(dvr_model::RouterIx(0), dvr_model::SubnetIx(0)).unwrap());
    assert!(q.routes.iter().any(|r| r.table == dvr_plan::TableRef::Id(idx) && r.via == Some(sg.ip)));
    // Floating IP rule from vm1's fixed IP into table 16.
    assert!(
        q.rules.iter().any(|r| r.table == 16 && r.priority == 32768 && r.selector == RuleSelector::From("192.168.1.9/32".parse().unwrap()))
    );
    // Permanent ARP for every instance and sg- port of both subnets (remote ones too).
    let ips: BTreeSet<String> = q.neighbours.iter().map(|n| n.ip.to_string()).collect();
    for ip in ["192.168.1.9", "192.168.1.10", "192.168.1.20", "192.168.2.10", "192.168.2.20", "192.168.1.3", "192.168.2.3"] {
        assert!(ips.contains(ip), "permanent ARP for {ip}");
    }
    let nat = dvr_plan::render::iptables_save(&q.iptables);
    assert!(nat.contains("-A neutron-l3-agent-PREROUTING -d 10.100.0.7/32 -i rfp-"));
    assert!(nat.contains("-A neutron-l3-agent-float-snat -s 192.168.1.9/32 -j SNAT --to-source 10.100.0.7"));
    // compute2 has no floating IP: no FIP rule, no DNAT.
    let q2 = host(&p, "compute2").namespaces.iter().find(|n| n.kind == NamespaceKind::Qrouter).unwrap();
    assert!(q2.rules.iter().all(|r| r.table != 16));
    assert!(!dvr_plan::render::iptables_save(&q2.iptables).contains("DNAT"));
}

#[test]
fn fip_namespace_proxies_arp_and_routes_the_floating_ip() {
    let p = plan(&seed(), Profile::Walkthrough).unwrap();
    let f = host(&p, "compute1").namespaces.iter().find(|n| n.kind == NamespaceKind::Fip).unwrap();
    let fg = f.devices.iter().find(|d| d.name.starts_with("fg-")).unwrap();
    assert!(f.sysctls.iter().any(|s| s.key == format!("net.ipv4.conf.{}.proxy_arp", fg.name) && s.value == "1"));
    assert!(f.routes.iter().any(|r| r.dst.to_string() == "10.100.0.7/32" && r.dev.starts_with("fpr-")));
    assert!(f.rules.iter().any(|r| matches!(&r.selector, RuleSelector::Iif(d) if d.starts_with("fpr-"))));
    let snat = host(&p, "network").namespaces.iter().find(|n| n.kind == NamespaceKind::Snat).unwrap();
    assert!(dvr_plan::render::iptables_save(&snat.iptables).contains("-j SNAT --to-source 10.100.0.2"));
}

#[test]
fn names_fit_linux_and_flows_are_unique() {
    for profile in Profile::ALL {
        let p = plan(&seed(), profile).unwrap();
        for h in &p.hosts {
            for b in &h.bridges {
                let mut seen = BTreeSet::new();
                for f in &b.flows {
                    assert!(seen.insert((f.table, f.priority, f.match_string())), "{} {}: duplicate flow {f}", h.host, b.name);
                }
                for port in &b.ports {
                    assert!(port.name.len() <= 15, "{}", port.name);
                }
            }
            for ns in &h.namespaces {
                for d in &ns.devices {
                    assert!(d.name.len() <= 14, "{}", d.name);
                }
            }
        }
    }
}
