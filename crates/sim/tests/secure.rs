//! The seed lab with security groups (`labs/seed-secure.yaml`): Neutron's
//! stateful `openvswitch` firewall in the twin, case by case, each with its
//! negative twin (the allowing rule or pair removed → dropped, and the
//! deciding table named).

use dvr_plan::Profile;
use dvr_sim::firewall::{Decision, FirewallStep, decisions};
use dvr_sim::{L4, Trace, TraceRequest, World, prime_neighbours, trace, warm_up};
use std::net::Ipv4Addr;
use std::sync::Arc;

const FIP: &str = "10.100.0.7";
const SSH_RULE: &str = "      - {direction: ingress, protocol: tcp, port_range_min: 22, port_range_max: 22, remote_ip_prefix: 0.0.0.0/0}\n";
const ICMP_RULE: &str = "      - {direction: ingress, protocol: icmp, remote_ip_prefix: 0.0.0.0/0}\n";
const PAIR: &str = "    allowed_address_pairs: [{ip_address: 192.168.1.100}]\n";

/// The seed-secure topology, with `without` removed from the file.
fn world(without: &[&str]) -> World {
    let mut yaml = dvr_model::SEED_SECURE_YAML.to_string();
    for line in without {
        assert!(yaml.contains(line), "the lab file no longer has {line:?}");
        yaml = yaml.replace(line, "");
    }
    let topo = dvr_model::load_str("seed-secure.yaml", &yaml).unwrap();
    let mut w = World::lazy(Arc::new(topo), Profile::Walkthrough);
    warm_up(&mut w);
    w
}

fn req(from: &str, to: &str, l4: L4) -> TraceRequest {
    TraceRequest { from: from.into(), to: to.parse::<Ipv4Addr>().unwrap(), l4, spoof_ip: None, spoof_mac: None }
}

fn tcp(dport: u16) -> L4 {
    L4::Tcp { sport: 40000, dport }
}

const ICMP: L4 = L4::Icmp { reply: false, id: 7 };

fn rules(t: &Trace) -> Vec<FirewallStep> {
    decisions(t)
}

/// The request's firewall decisions, as (table, "rule group/summary" | "established" | "dropped").
fn summary(t: &Trace, dir: &str) -> Vec<(u8, String)> {
    rules(t)
        .into_iter()
        .filter(|d| d.direction == dir)
        .map(|d| {
            let what = match &d.decision {
                Decision::AllowedByRule { rule } => format!("{}: {}", rule.group, rule.summary),
                Decision::Established => "established".into(),
                Decision::Dropped { .. } => "dropped".into(),
            };
            (d.table, what)
        })
        .collect()
}

#[test]
fn ext1_to_vm1_fip_icmp_is_allowed_by_the_icmp_rule_and_the_reply_passes() {
    let mut w = world(&[]);
    let t = trace(&mut w, &req("ext1", FIP, ICMP)).unwrap();
    assert!(t.round_trip(), "{:?}", t.verdict);
    assert_eq!(summary(&t, "request"), vec![(82, "ssh-icmp: ingress IPv4 icmp from 0.0.0.0/0".to_string())]);
    assert_eq!(summary(&t, "reply"), vec![(72, "established".to_string())], "the reply needs no rule");
}

#[test]
fn without_the_icmp_rule_ext1_ping_is_dropped_in_table_82() {
    let mut w = world(&[ICMP_RULE]);
    let t = trace(&mut w, &req("ext1", FIP, ICMP)).unwrap();
    assert!(!t.verdict.is_delivered());
    assert_eq!(summary(&t, "request"), vec![(82, "dropped".to_string())]);
    let d = t.verdict.dropped().unwrap();
    assert_eq!(d.at.as_ref().map(|p| (p.host.as_str(), p.where_.as_str())), Some(("compute1", "br-int")));
}

#[test]
fn ext1_to_vm1_tcp_22_is_allowed_by_the_ssh_rule() {
    let mut w = world(&[]);
    let t = trace(&mut w, &req("ext1", FIP, tcp(22))).unwrap();
    assert!(t.round_trip(), "{:?}", t.verdict);
    assert_eq!(summary(&t, "request"), vec![(82, "ssh-icmp: ingress IPv4 tcp 22 from 0.0.0.0/0".to_string())]);
    assert_eq!(summary(&t, "reply"), vec![(72, "established".to_string())]);
}

#[test]
fn without_the_ssh_rule_tcp_22_is_dropped_in_table_82() {
    let mut w = world(&[SSH_RULE]);
    let t = trace(&mut w, &req("ext1", FIP, tcp(22))).unwrap();
    assert!(!t.verdict.is_delivered());
    assert_eq!(summary(&t, "request"), vec![(82, "dropped".to_string())]);
    // ICMP still passes: only the ssh rule went.
    assert!(trace(&mut w, &req("ext1", FIP, ICMP)).unwrap().round_trip());
}

#[test]
fn ext1_to_vm1_tcp_80_is_dropped_in_table_82_and_named() {
    let mut w = world(&[]);
    let t = trace(&mut w, &req("ext1", FIP, tcp(80))).unwrap();
    assert!(!t.verdict.is_delivered());
    let fw = rules(&t);
    assert_eq!(fw.len(), 1, "{fw:?}");
    assert_eq!((fw[0].table, fw[0].table_name), (82, Some("RULES_INGRESS_TABLE")));
    assert!(matches!(&fw[0].decision, Decision::Dropped { ct_state: Some(s) } if s == "+new+trk"), "{fw:?}");
    let text = fw[0].to_string();
    assert!(text.contains("table 82 (RULES_INGRESS_TABLE): dropped: no rule"), "{text}");
}

/// Statefulness: a packet from ext1's port 22 to vm1's port 40000 is new
/// (dropped) until vm1 opens that very connection; then it is its reply and
/// passes as established.
#[test]
fn unsolicited_reverse_is_dropped_until_vm1_opens_the_connection() {
    let mut w = world(&[]);
    let reverse = req("ext1", FIP, L4::Tcp { sport: 22, dport: 40000 });
    let t = trace(&mut w, &reverse).unwrap();
    assert!(!t.verdict.is_delivered(), "unsolicited: {:?}", t.verdict);
    assert_eq!(summary(&t, "request"), vec![(82, "dropped".to_string())]);
    // vm1 connects to ext1:22 from port 40000 (egress allowed); the answer passes.
    let out = trace(&mut w, &req("vm1", "10.100.0.14", tcp(22))).unwrap();
    assert!(out.round_trip(), "{:?}", out.verdict);
    assert_eq!(summary(&out, "reply"), vec![(82, "established".to_string())]);
    // The same packet as before is now part of that connection.
    let again = trace(&mut w, &reverse).unwrap();
    assert!(again.verdict.is_delivered(), "{:?}", again.verdict);
    assert_eq!(summary(&again, "request"), vec![(82, "established".to_string())]);
}

/// Time is a parameter: an established TCP connection lives a day in OVS's
/// tracker; a day and a second later, its reply is new again and dropped.
#[test]
fn connections_expire_with_the_twins_clock() {
    let mut w = world(&[]);
    let reverse = req("ext1", FIP, L4::Tcp { sport: 22, dport: 40000 });
    assert!(trace(&mut w, &req("vm1", "10.100.0.14", tcp(22))).unwrap().round_trip());
    w.advance_clock(24 * 3600 - 1);
    assert!(trace(&mut w, &reverse).unwrap().verdict.is_delivered(), "still established");
    w.advance_clock(24 * 3600 + 1);
    let t = trace(&mut w, &reverse).unwrap();
    assert!(!t.verdict.is_delivered(), "expired: {:?}", t.verdict);
    assert_eq!(summary(&t, "request"), vec![(82, "dropped".to_string())]);
}

/// A source address the port does not own is dropped by the firewall's
/// anti-spoofing (table 71), even with the neighbour cached (which gets it
/// past tables 24/25 in the noop lab).
#[test]
fn spoofed_source_ip_is_dropped_in_table_71_even_with_the_neighbour_cached() {
    let spoof = TraceRequest { spoof_ip: Some("192.168.1.99".parse().unwrap()), ..req("vm2", "192.168.1.9", ICMP) };
    let mut w = world(&[]);
    prime_neighbours(&mut w, &spoof).unwrap();
    let t = trace(&mut w, &spoof).unwrap();
    assert!(!t.verdict.is_delivered());
    assert_eq!(summary(&t, "request"), vec![(71, "dropped".to_string())]);
    // Positive control: the noop lab delivers the same spoofed packet.
    let topo = dvr_model::load_str("seed.yaml", dvr_model::SEED_YAML).unwrap();
    let mut noop = World::lazy(Arc::new(topo), Profile::Walkthrough);
    warm_up(&mut noop);
    prime_neighbours(&mut noop, &spoof).unwrap();
    assert!(trace(&mut noop, &spoof).unwrap().verdict.is_delivered());
}

/// vm2's allowed address pair (the VIP 192.168.1.100) may send; without the
/// pair the same packet is spoofed and dropped in table 71.
#[test]
fn allowed_address_pair_passes_and_without_it_is_dropped() {
    let vip = TraceRequest { spoof_ip: Some("192.168.1.100".parse().unwrap()), ..req("vm2", "192.168.1.9", ICMP) };
    let mut w = world(&[]);
    prime_neighbours(&mut w, &vip).unwrap();
    let t = trace(&mut w, &vip).unwrap();
    assert!(t.verdict.is_delivered(), "{:?}", t.verdict);
    assert!(
        rules(&t).iter().any(|d| d.direction == "request" && d.table == 82 && matches!(d.decision, Decision::AllowedByRule { .. })),
        "{:?}",
        summary(&t, "request")
    );
    let mut w = world(&[PAIR]);
    prime_neighbours(&mut w, &vip).unwrap();
    let t = trace(&mut w, &vip).unwrap();
    assert!(!t.verdict.is_delivered());
    assert_eq!(summary(&t, "request"), vec![(71, "dropped".to_string())]);
}

/// The remote-group rule: vm1 (a member of ssh-icmp) reaches vm5 on tcp 80
/// by `web`, through a conjunction; vm2 (only in `default`) reaches vm5 by
/// `default`'s own remote-group rule; without `default` on vm5, vm2 is dropped.
#[test]
fn remote_group_rule_through_a_conjunction() {
    let mut w = world(&[]);
    let t = trace(&mut w, &req("vm2", "192.168.2.20", tcp(80))).unwrap();
    assert!(t.round_trip(), "{:?}", t.verdict);
    assert!(
        summary(&t, "request").contains(&(82, "default: ingress IPv4 any from group default".to_string())),
        "{:?}",
        summary(&t, "request")
    );
    let t = trace(&mut w, &req("vm1", "192.168.2.20", tcp(80))).unwrap();
    assert!(t.round_trip(), "{:?}", t.verdict);
    assert!(
        summary(&t, "request").contains(&(82, "web: ingress IPv4 tcp 80 from group ssh-icmp".to_string())),
        "{:?}",
        summary(&t, "request")
    );
    assert!(t.hops.iter().any(|h| matches!(h.step, dvr_sim::Step::Conjunction { .. })), "decided through a conjunctive match");
    let vm5 = "  - {name: vm5, host: compute2, network: test2, ip: 192.168.2.20, security_groups: [default, web]}\n";
    let mut yaml_without_default = dvr_model::SEED_SECURE_YAML.replace(vm5, &vm5.replace("[default, web]", "[web]"));
    assert_ne!(yaml_without_default, dvr_model::SEED_SECURE_YAML);
    yaml_without_default.push('\n');
    let topo = dvr_model::load_str("seed-secure.yaml", &yaml_without_default).unwrap();
    let mut w = World::lazy(Arc::new(topo), Profile::Walkthrough);
    warm_up(&mut w);
    let t = trace(&mut w, &req("vm2", "192.168.2.20", tcp(80))).unwrap();
    assert!(!t.verdict.is_delivered(), "{:?}", t.verdict);
    assert_eq!(summary(&t, "request").last().map(|(t, w)| (*t, w.as_str())), Some((82, "dropped")));
    let t = trace(&mut w, &req("vm1", "192.168.2.20", tcp(80))).unwrap();
    assert!(t.verdict.is_delivered(), "vm1 is still allowed by web: {:?}", t.verdict);
}

/// Found while writing these tests: vm4 and vm5 share network test2 on
/// different hosts; the frame arrives on br-int from int-br-vlan, and table
/// 0 hands it to NORMAL, which delivers it to vm5's port without passing
/// table 60's firewall hooks (81/82). Neutron resubmits that traffic to
/// table 60 (via 59); so does the plan (`firewall::after_vlan_translation`).
#[test]
fn same_network_traffic_from_another_host_meets_the_ingress_rules() {
    let vm5 = "  - {name: vm5, host: compute2, network: test2, ip: 192.168.2.20, security_groups: [default, web]}\n";
    let yaml = dvr_model::SEED_SECURE_YAML.replace(vm5, &vm5.replace("[default, web]", "[web]"));
    let topo = dvr_model::load_str("seed-secure.yaml", &yaml).unwrap();
    let mut w = World::lazy(Arc::new(topo), Profile::Walkthrough);
    warm_up(&mut w);
    let t = trace(&mut w, &req("vm4", "192.168.2.20", tcp(80))).unwrap();
    assert!(!t.verdict.is_delivered(), "vm4 is not in ssh-icmp and vm5 is not in default: {:?}", t.verdict);
}
