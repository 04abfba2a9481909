//! `verify` on the seed lab's plan: every invariant holds in the walkthrough
//! profile; each deliberately broken plan fails exactly the invariant it
//! breaks, naming the item and its provenance.

use dvr_plan::{Plan, Profile};
use dvr_sim::World;
use dvr_sim::verify::{Options, Report, verify};

fn seed(profile: Profile) -> (dvr_model::Topology, Plan) {
    let t = dvr_model::seed();
    let p = dvr_plan::plan(&t, profile).unwrap();
    (t, p)
}

fn run(t: &dvr_model::Topology, p: &Plan) -> Report {
    verify(p, &World::endpoints_of(t, p), &Options::default())
}

fn failed(r: &Report) -> Vec<&'static str> {
    r.checks.iter().filter(|c| !c.holds).map(|c| c.invariant).collect()
}

fn violations<'a>(r: &'a Report, inv: &str) -> &'a [dvr_sim::verify::Violation] {
    &r.checks.iter().find(|c| c.invariant == inv).unwrap().violations
}

#[test]
fn walkthrough_seed_holds_every_invariant() {
    let (t, p) = seed(Profile::Walkthrough);
    let r = run(&t, &p);
    assert!(r.ok(), "{}", dvr_sim::verify::text(&r, false));
    assert_eq!(r.checks.len(), 8);
    // 20 instance pairs, 5 instances to ext1, ext1 to the floating IP: all as expected.
    assert_eq!(r.matrix.len(), 26);
    assert!(r.matrix.iter().all(|c| c.expect && c.reached));
}

#[test]
fn current_profile_leaks_gateway_arp_in_vlan_mode() {
    let (t, p) = seed(Profile::Current);
    let r = run(&t, &p);
    assert_eq!(failed(&r), ["gateway-arp-contained"]);
    let v = violations(&r, "gateway-arp-contained");
    assert_eq!(v.len(), 5, "every instance on a routed subnet");
    assert!(v[0].what.contains("vm1's ARP for its gateway 192.168.1.1 leaves compute1"), "{}", v[0].what);
    assert!(v[0].item.contains("table=22") && v[0].item.contains("inert"), "{}", v[0].item);
    let prov = v[0].provenance.as_deref().unwrap();
    assert!(prov.starts_with("FLOOD_TO_TUN: ARP for gateway 192.168.1.1") && prov.contains("[crates/plan/src/flows.rs:"), "{prov}");
    assert!(v[0].trace.iter().any(|l| l.starts_with("fabric physnet1")), "{:?}", v[0].trace);
}

fn drop_flows(p: &mut Plan, host: &str, bridge: &str, pred: impl Fn(&dvr_openflow::Flow) -> bool) -> usize {
    let b = p.hosts.iter_mut().find(|h| h.host == host).unwrap().bridges.iter_mut().find(|b| b.name == bridge).unwrap();
    let n = b.flows.len();
    b.flows.retain(|f| !pred(f));
    n - b.flows.len()
}

#[test]
fn missing_dvr_mac_rewrite_puts_the_gateway_mac_on_the_wire() {
    let (t, mut p) = seed(Profile::Walkthrough);
    let gw2 = "fa:16:3e:9d:76:3c".parse().unwrap();
    assert_eq!(drop_flows(&mut p, "compute1", "br-vlan", |f| f.table.0 == 1 && f.matches.dl_src == Some(gw2)), 1);
    let r = run(&t, &p);
    assert!(failed(&r).contains(&"no-gateway-mac-on-wire"), "{:?}", failed(&r));
    let v = &violations(&r, "no-gateway-mac-on-wire")[0];
    assert!(v.what.contains("left compute1 with gateway MAC fa:16:3e:9d:76:3c"), "{}", v.what);
    assert!(v.item.contains("missing: compute1") && v.item.contains("dl_src=fa:16:3e:9d:76:3c"), "{}", v.item);
    assert!(v.trace.iter().any(|l| l.starts_with("fabric physnet1")), "{:?}", v.trace);
}

#[test]
fn duplicate_dvr_mac_is_named_with_both_hosts() {
    let (t, mut p) = seed(Profile::Walkthrough);
    let m = p.host("compute1").unwrap().dvr_mac;
    p.hosts.iter_mut().find(|h| h.host == "compute2").unwrap().dvr_mac = m;
    let r = run(&t, &p);
    let v = violations(&r, "dvr-macs-unique");
    assert!(v[0].item.contains("compute1") && v[0].item.contains("compute2"), "{}", v[0].item);
}

#[test]
fn missing_arp_spoofing_flow_is_named() {
    let (t, mut p) = seed(Profile::Walkthrough);
    let vm1: std::net::Ipv4Addr = "192.168.1.9".parse().unwrap();
    assert_eq!(drop_flows(&mut p, "compute1", "br-int", |f| f.table.0 == 24 && f.matches.arp_spa.is_some_and(|m| m.addr == vm1)), 1);
    let r = run(&t, &p);
    // Its ARP now dies in table 24 too, so vm1 reaches nothing.
    assert_eq!(failed(&r), ["reachability", "anti-spoofing-every-vm-port"]);
    let v = violations(&r, "anti-spoofing-every-vm-port");
    assert!(v[0].what.starts_with("vm1 ("), "{}", v[0].what);
    assert!(v[0].item.contains("table 24 flow arp,in_port=qvo"), "{}", v[0].item);
}

#[test]
fn flushed_qrouter_nat_breaks_the_floating_ip_with_a_counterexample() {
    let (t, mut p) = seed(Profile::Walkthrough);
    let c1 = p.hosts.iter_mut().find(|h| h.host == "compute1").unwrap();
    let qr = c1.namespaces.iter_mut().find(|n| n.name.starts_with("qrouter-")).unwrap();
    for c in qr.iptables.iter_mut().flat_map(|t| t.chains.iter_mut()) {
        c.rules.clear();
    }
    let r = run(&t, &p);
    assert_eq!(failed(&r), ["reachability"]);
    let v = violations(&r, "reachability");
    assert!(v.iter().any(|v| v.what.starts_with("vm1 -> outside ext1")), "{v:#?}");
    // Without its DNAT nothing answers for the floating IP any more.
    let fip = v.iter().find(|v| v.what.contains("floating IP 10.100.0.7")).expect("the FIP fails");
    assert!(!fip.trace.is_empty() && fip.trace.last().unwrap().contains("dropped"), "{:?}", fip.trace);
    assert!(fip.item.starts_with("missing: compute1 qrouter-") && fip.item.contains("-d 10.100.0.7/32"), "{}", fip.item);
    assert!(fip.provenance.as_deref().unwrap().contains("FipNamespace: floating IP 10.100.0.7 is bound here"), "{:?}", fip.provenance);
}

/// Under security groups, the matrix of `--proto tcp --dport N` shows who may
/// reach whom: on seed-secure, tcp 22 reaches vm1's floating IP from ext1 and
/// tcp 80 is denied there (named: table 82), not counted as a violation;
/// with the ssh rule removed, tcp 22 is denied too.
#[test]
fn seed_secure_matrix_under_security_groups() {
    let secure = |without: &str| {
        let yaml = dvr_model::SEED_SECURE_YAML.replace(without, "");
        let t = dvr_model::load_str("seed-secure.yaml", &yaml).unwrap();
        let p = dvr_plan::plan(&t, Profile::Walkthrough).unwrap();
        (t, p)
    };
    let fip = |r: &Report| r.matrix.iter().find(|c| c.from == "ext1" && c.to == "fip:10.100.0.7").cloned().unwrap();
    let tcp = |dport| Options { l4: Some(dvr_sim::L4::Tcp { sport: 40000, dport }), ..Options::default() };
    let (t, p) = secure("");
    let r22 = verify(&p, &World::endpoints_of(&t, &p), &tcp(22));
    assert!(r22.ok(), "{}", dvr_sim::verify::text(&r22, true));
    assert!(fip(&r22).reached && fip(&r22).denied_by.is_none());
    let r80 = verify(&p, &World::endpoints_of(&t, &p), &tcp(80));
    assert!(r80.ok(), "denied by a group is not a violation: {}", dvr_sim::verify::text(&r80, true));
    let c = fip(&r80);
    assert!(!c.reached);
    assert!(c.denied_by.as_deref().is_some_and(|d| d.contains("table 82 (RULES_INGRESS_TABLE)")), "{c:?}");
    assert!(dvr_sim::verify::text(&r80, false).contains("1 of the routed denied by security groups"));
    // Negative twin: without the ssh rule, tcp 22 is denied as well.
    let (t, p) =
        secure("      - {direction: ingress, protocol: tcp, port_range_min: 22, port_range_max: 22, remote_ip_prefix: 0.0.0.0/0}\n");
    let r = verify(&p, &World::endpoints_of(&t, &p), &tcp(22));
    assert!(fip(&r).denied_by.is_some(), "{:?}", fip(&r));
}
