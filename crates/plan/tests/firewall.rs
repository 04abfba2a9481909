//! The `openvswitch` firewall in the plan: present exactly when the topology
//! declares security groups, per-port flows for filtered ports, conjunctions
//! for remote groups, and the anti-spoofing of tables 24/25 replaced.

use dvr_model::{SEED_SECURE_YAML, SEED_YAML, load_str};
use dvr_plan::{Bridge, Profile, plan};

fn br_int<'a>(p: &'a dvr_plan::Plan, host: &str) -> &'a Bridge {
    p.host(host).unwrap().bridges.iter().find(|b| b.name == "br-int").unwrap()
}

fn flows(b: &Bridge) -> Vec<String> {
    b.flows.iter().map(|f| f.to_string()).collect()
}

fn secure() -> dvr_model::Topology {
    load_str("seed-secure", SEED_SECURE_YAML).unwrap()
}

#[test]
fn noop_driver_plans_no_firewall_table() {
    let p = plan(&load_str("seed", SEED_YAML).unwrap(), Profile::Current).unwrap();
    for h in &p.hosts {
        for b in &h.bridges {
            assert!(b.flows.iter().all(|f| !(71..=94).contains(&f.table.0)), "{} {}", h.host, b.name);
            assert!(b.ports.iter().all(|x| x.ofport.is_none()));
        }
    }
    // Positive control: the anti-spoofing the firewall replaces is there.
    assert!(flows(br_int(&p, "compute1")).iter().any(|f| f.contains("table=24") && f.contains("arp_spa=192.168.1.9")));
}

#[test]
fn firewall_replaces_arp_spoofing_tables_and_numbers_ports() {
    let p = plan(&secure(), Profile::Current).unwrap();
    let b = br_int(&p, "compute1");
    let f = flows(b);
    assert!(!f.iter().any(|x| x.contains("table=24") && x.contains("arp_spa")), "no per-port table 24 flows");
    assert!(!f.iter().any(|x| x.contains("table=25,")), "no table 25 flows");
    let numbers: Vec<u32> = b.ports.iter().map(|x| x.ofport.unwrap()).collect();
    assert_eq!(numbers, (1..=b.ports.len() as u32).collect::<Vec<_>>());
    let vm1 = b.ports.iter().find(|x| matches!(&x.kind, dvr_plan::PortKind::Vif { instance } if instance == "vm1")).unwrap();
    let n = vm1.ofport.unwrap();
    let hook = format!("in_port={} actions=set_field:{:#x}->reg5,set_field:0x1->reg6,resubmit(,71)", vm1.name, n);
    assert!(f.iter().any(|x| x.contains(&hook)), "{hook}");
    // vm1 (ssh-icmp): tcp 22 and ICMP from anywhere, each a pair (established / new + commit).
    let reg = format!("reg5={n:#x}");
    let tcp22: Vec<&String> =
        f.iter().filter(|x| x.contains("table=82, priority=77") && x.contains(&reg) && x.contains("tp_dst=22")).collect();
    assert_eq!(tcp22.len(), 2, "{tcp22:#?}");
    assert!(tcp22.iter().any(|x| x.contains("+new-est") && x.contains("ct(commit,zone=NXM_NX_REG6[0..15])")));
    assert!(f.iter().any(|x| x.contains("table=82, priority=75") && x.contains(&reg) && x.contains("icmp")));
    // No rule admits tcp 80 to vm1 without a remote group.
    assert!(!f.iter().any(|x| x.contains("table=82") && x.contains(&reg) && x.contains("tp_dst=80")));
}

#[test]
fn remote_group_rules_are_conjunctions_over_member_addresses() {
    let p = plan(&secure(), Profile::Current).unwrap();
    let f = flows(br_int(&p, "compute2"));
    // vm5 is in `web`: tcp 80 from members of ssh-icmp (vm1 192.168.1.9, vm3 192.168.1.20).
    let port_half: Vec<&String> = f.iter().filter(|x| x.contains("tp_dst=80") && x.contains(",2/2)")).collect();
    assert_eq!(port_half.len(), 2, "{port_half:#?}");
    let id: u32 = port_half[0].split("conjunction(").nth(1).unwrap().split(',').next().unwrap().parse().unwrap();
    let addr_half: Vec<&String> = f.iter().filter(|x| x.contains(&format!("conjunction({id},1/2)"))).collect();
    let addrs: Vec<&str> = addr_half.iter().map(|x| x.split("nw_src=").nth(1).unwrap().split(' ').next().unwrap()).collect();
    assert_eq!(addrs, ["192.168.1.9", "192.168.1.20"], "only ssh-icmp members: {addr_half:#?}");
    assert!(f.iter().any(|x| x.contains(&format!("conj_id={id},")) && x.contains(&format!("set_field:{id:#x}->reg7"))));
    // The default group's ingress-from-members rule also lists vm2's allowed address pair.
    assert!(f.iter().any(|x| x.contains("nw_src=192.168.1.100") && x.contains(",1/2)")));
}

#[test]
fn firewall_flows_name_their_rule() {
    let p = plan(&secure(), Profile::Current).unwrap();
    let b = br_int(&p, "compute1");
    let named: Vec<_> = b.flows.iter().filter_map(|f| f.sg_rule.as_ref()).collect();
    assert!(named.iter().any(|r| r.group == "ssh-icmp" && r.summary == "ingress IPv4 tcp 22 from 0.0.0.0/0"), "{named:#?}");
    assert!(named.iter().any(|r| r.group == "default" && r.summary == "ingress IPv4 any from group default"));
}

#[test]
fn port_security_disabled_is_unfiltered() {
    let yaml = SEED_SECURE_YAML.replace(
        "  - {name: vm4, host: compute1, network: test2, ip: 192.168.2.10}",
        "  - {name: vm4, host: compute1, network: test2, ip: 192.168.2.10, port_security_enabled: false}",
    );
    assert_ne!(yaml, SEED_SECURE_YAML);
    let p = plan(&load_str("t", &yaml).unwrap(), Profile::Current).unwrap();
    let b = br_int(&p, "compute1");
    let vm4 = b.ports.iter().find(|x| matches!(&x.kind, dvr_plan::PortKind::Vif { instance } if instance == "vm4")).unwrap();
    let f = flows(b);
    assert!(f.iter().any(|x| x.contains(&format!("in_port={}", vm4.name)) && x.contains("resubmit(,73)")));
    assert!(!f.iter().any(|x| x.contains(&format!("in_port={}", vm4.name)) && x.contains("resubmit(,71)")));
}

/// With the firewall a host's flows depend on remote groups' members on other
/// hosts: after a change of membership alone, the incremental planner must
/// still equal a full plan.
#[test]
fn incremental_replans_firewall_hosts_like_a_full_plan() {
    let mut spec = dvr_model::parse_spec("seed-secure", SEED_SECURE_YAML).unwrap();
    let before = dvr_model::build::build("t", &spec).unwrap();
    let mut r = dvr_plan::incremental::Replanner::new(&before, Profile::Current);
    let conj80 = |p: &dvr_plan::Plan| {
        let f = flows(br_int(p, "compute2"));
        let port_half = f.iter().find(|x| x.contains("tp_dst=80") && x.contains(",2/2)")).unwrap().clone();
        let id = port_half.split("conjunction(").nth(1).unwrap().split(',').next().unwrap().to_string();
        f.into_iter().filter(|x| x.contains(&format!("conjunction({id},1/2)"))).count()
    };
    assert_eq!(conj80(r.plan()), 2, "vm1 and vm3 may reach vm5 on tcp 80");
    // vm1 (compute1) leaves ssh-icmp: only compute2's flows (vm5's `web` rule) change.
    let vm1 = spec.instances.iter_mut().find(|x| x.name == "vm1").unwrap();
    vm1.security_groups = Some(vec!["default".into()]);
    let after = dvr_model::build::build("t", &spec).unwrap();
    let u = r.update(&after);
    assert!(u.changed.contains(&"compute2".to_string()), "{:?}", u.changed);
    let full = plan(&after, Profile::Current).unwrap();
    for h in &full.hosts {
        let inc = r.plan().host(&h.host).unwrap();
        assert_eq!(serde_json::to_string(inc).unwrap(), serde_json::to_string(h).unwrap(), "{}", h.host);
    }
    assert_eq!(conj80(r.plan()), 1, "only vm3 is left in ssh-icmp");
}

/// Under the walkthrough profile the VLAN translation ends in NORMAL; with
/// the firewall it must reach table 60, or frames from other hosts on the
/// same network would skip the ingress filter.
#[test]
fn walkthrough_profile_sends_translated_frames_through_the_firewall() {
    let secure = plan(&secure(), Profile::Walkthrough).unwrap();
    let noop = plan(&load_str("seed", SEED_YAML).unwrap(), Profile::Walkthrough).unwrap();
    let translation =
        |p: &dvr_plan::Plan| flows(br_int(p, "compute2")).into_iter().find(|x| x.contains("in_port=int-br-vlan,dl_vlan=196")).unwrap();
    assert!(translation(&noop).ends_with("actions=mod_vlan_vid:1,NORMAL"), "{}", translation(&noop));
    assert!(translation(&secure).ends_with("actions=mod_vlan_vid:1,resubmit(,60)"), "{}", translation(&secure));
}
