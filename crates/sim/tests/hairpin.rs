//! Hairpin NAT on a legacy (`distributed: false`) router: vm2 pings vm1's
//! floating IP, both on the same network behind the same router. The qrouter
//! DNATs the floating IP to vm1 and must then SNAT the packet to the router's
//! gateway IP (`-m mark ! --mark 0x2/0xffff -m conntrack --ctstate DNAT -j
//! SNAT`), or vm1 would answer vm2 directly and vm2 would drop a reply from an
//! address it never pinged. Real Neutron does SNAT it; this checks the twin
//! does too, through its conntrack: the connection found at PREROUTING must be
//! the one POSTROUTING sees (a fresh lookup of the DNATed packet finds nothing,
//! and a new entry says "not DNATed").

use dvr_sim::demo::{PathSpec, run_path};
use dvr_sim::step::{Step, Verdict};

const LEGACY: &str = r#"
version: 1
name: hairpin
hosts:
  - {name: controller, role: controller}
  - {name: network, role: network, bridge_mappings: {physnet1: br-vlan, extnet: br-ex}}
  - {name: compute1, role: compute, bridge_mappings: {physnet1: br-vlan, extnet: br-ex}}
networks:
  - name: test1
    type: vlan
    physical_network: physnet1
    segmentation_id: 196
    subnets: [{name: test1-v4, cidr: 192.168.1.0/24, gateway_ip: 192.168.1.1}]
  - name: external
    type: flat
    physical_network: extnet
    external: true
    subnets: [{name: external-v4, cidr: 10.100.0.0/24, gateway_ip: 10.100.0.1, enable_dhcp: false}]
routers:
  - {name: router1, distributed: false, interfaces: [test1-v4], external_gateway: external}
instances:
  - {name: vm1, host: compute1, network: test1, ip: 192.168.1.9}
  - {name: vm2, host: compute1, network: test1, ip: 192.168.1.10}
floating_ips:
  - {ip: 10.100.0.7, instance: vm1}
external_hosts:
  - {name: ext1, network: external, ip: 10.100.0.14}
"#;

fn hairpin(profile: dvr_plan::Profile) -> (String, dvr_sim::Trace) {
    path(profile, "vm2", "10.100.0.7")
}

fn path(profile: dvr_plan::Profile, from: &str, to: &str) -> (String, dvr_sim::Trace) {
    let topo = dvr_model::load_str("hairpin.yaml", LEGACY).expect("the hairpin lab loads");
    let plan = dvr_plan::plan(&topo, profile).expect("the hairpin lab plans");
    let gw = topo.port(topo.gateway_port(dvr_model::RouterIx(0)).expect("router1 has a gateway")).ip.to_string();
    let spec = PathSpec { from: from.into(), to: to.into(), expect: None, note: None, proto: None, dport: None };
    (gw, run_path(&topo, &plan, &spec).expect("the path can be traced"))
}

fn nat_rewrites(t: &dvr_sim::Trace) -> Vec<String> {
    t.hops
        .iter()
        .filter_map(|h| match &h.step {
            Step::Nat { rewrite: Some(r), .. } => Some(r.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn legacy_router_hairpin_is_snatted_to_the_gateway_ip() {
    for profile in [dvr_plan::Profile::Walkthrough, dvr_plan::Profile::Current] {
        let (gw, t) = hairpin(profile);
        let rewrites = nat_rewrites(&t);
        // Positive control: the DNAT itself happens (the test sees NAT steps at all).
        assert!(rewrites.iter().any(|r| r.contains("DNAT 10.100.0.7 → 192.168.1.9")), "{profile:?}: no DNAT in {rewrites:?}");
        assert!(
            rewrites.iter().any(|r| r.contains(&format!("SNAT 192.168.1.10 → {gw}"))),
            "{profile:?}: the hairpin was not SNATed to the gateway {gw}: {rewrites:?}"
        );
        assert!(matches!(&t.verdict, Verdict::Delivered { to } if to == "vm1"), "{profile:?}: {:?}", t.verdict);
        // vm1 sees the gateway as the sender, so its reply goes back through the router.
        let last = t.hops.last().expect("hops");
        assert_eq!(last.packet.ip_src.to_string(), gw, "{profile:?}: vm1 received it from {}", last.packet.ip_src);
        let reply = t.reply.as_deref().expect("a reply was traced");
        assert!(matches!(&reply.verdict, Verdict::Delivered { to } if to == "vm2"), "{profile:?}: reply {:?}", reply.verdict);
        // …and vm2 gets it from the address it pinged.
        assert_eq!(reply.hops.last().expect("reply hops").packet.ip_src.to_string(), "10.100.0.7", "{profile:?}");
    }
}

/// The rule that decided at POSTROUTING is the hairpin SNAT, not the
/// `! --ctstate DNAT -j ACCEPT` rule (which a lookup of the DNATed packet
/// would wrongly match).
#[test]
fn postrouting_cites_the_hairpin_rule() {
    let (_, t) = hairpin(dvr_plan::Profile::Current);
    let post: Vec<String> = t
        .hops
        .iter()
        .filter_map(|h| match &h.step {
            Step::Nat { hook, rule: Some(r), .. } if format!("{hook:?}").contains("Postrouting") => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert!(post.iter().any(|r| r.contains("--ctstate DNAT -j SNAT")), "{post:?}");
    assert!(!post.iter().any(|r| r.contains("! --ctstate DNAT -j ACCEPT")), "{post:?}");
}

/// The mangle mark at work: traffic from outside enters through qg-, gets
/// mark 0x2, and is therefore DNATed to vm1 but *not* hairpin-SNATed: vm1
/// sees the outside sender's address. Without the mark rule the hairpin
/// rule would SNAT it to the gateway too.
#[test]
fn outside_traffic_to_the_floating_ip_keeps_its_source() {
    let (gw, t) = path(dvr_plan::Profile::Current, "ext1", "10.100.0.7");
    let rewrites = nat_rewrites(&t);
    assert!(rewrites.iter().any(|r| r.contains("DNAT 10.100.0.7 → 192.168.1.9")), "{rewrites:?}");
    assert!(!rewrites.iter().any(|r| r.contains(&format!("→ {gw}"))), "outside traffic was SNATed to the gateway: {rewrites:?}");
    assert!(matches!(&t.verdict, Verdict::Delivered { to } if to == "vm1"), "{:?}", t.verdict);
    assert_eq!(t.hops.last().expect("hops").packet.ip_src.to_string(), "10.100.0.14");
}
