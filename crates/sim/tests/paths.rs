//! The nine paths of the seed lab (`labs/seed.yaml`, header comments), traced
//! on the dataplane twin and checked against the DVR walkthrough
//! (`reference/dvr-walkthrough.md`) step by step: not only who receives the
//! packet, but the OpenFlow tables, namespaces, policy rules, NAT rewrites,
//! VLANs and wires it crosses, in the order the walkthrough gives.
//!
//! Every expected name, MAC and address comes from the allocated topology
//! (`dvr_model::seed()`), never from a copy of a trace, so the tests state
//! the walkthrough's facts and not the twin's current output.

use dvr_model::{Port, PortOwner, Topology, names};
use dvr_sim::demo::{PathSpec, run_path};
use dvr_sim::{Hop, HopKind, Trace, delivery_path};
use std::net::Ipv4Addr;

// ---------------------------------------------------------------------------
// The lab and its facts
// ---------------------------------------------------------------------------

fn lab() -> (Topology, dvr_plan::Plan) {
    let topo = dvr_model::seed();
    let plan = dvr_plan::plan(&topo, dvr_plan::Profile::Walkthrough).expect("the seed lab has a plan");
    (topo, plan)
}

/// The paths the seed file's header lists; the walkthrough has nine.
fn seed_paths() -> Vec<PathSpec> {
    let paths = dvr_model::seed().paths;
    let list: Vec<String> = paths.iter().map(|p| format!("{} -> {}", p.from, p.to)).collect();
    assert_eq!(paths.len(), 9, "the seed header should list the nine walkthrough paths, got {list:?}");
    paths
}

/// Trace one path of the seed header on a fresh twin.
fn run(from: &str, to: &str) -> (Topology, Trace) {
    let (topo, plan) = lab();
    let spec = seed_paths()
        .into_iter()
        .find(|p| p.from == from && p.to == to)
        .unwrap_or_else(|| panic!("the seed header does not list {from} -> {to}"));
    let t = run_path(&topo, &plan, &spec).unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
    (topo, t)
}

/// The port holding a fixed IP.
fn port<'a>(topo: &'a Topology, ip: &str) -> &'a Port {
    let ip: Ipv4Addr = ip.parse().expect("an IPv4 address");
    topo.ports.iter().find(|p| p.ip == ip).unwrap_or_else(|| panic!("no port has {ip}"))
}

/// Device name (`qvo…`, `qr-…`, `tap…`, `fg-…`) of the port holding `ip`.
fn dev(topo: &Topology, ip: &str) -> String {
    port(topo, ip).device_name()
}

/// MAC of the port holding `ip`.
fn mac(topo: &Topology, ip: &str) -> String {
    port(topo, ip).mac.to_string()
}

/// A port by owner and the name of its subnet.
fn owned<'a>(topo: &'a Topology, subnet: &str, owner: impl Fn(&PortOwner) -> bool) -> &'a Port {
    topo.ports
        .iter()
        .find(|p| owner(&p.owner) && topo.subnet(p.subnet).name == subnet)
        .unwrap_or_else(|| panic!("no such port on {subnet}"))
}

/// The DVR MAC of a host.
fn dvr_mac(topo: &Topology, host: &str) -> String {
    let h = topo.host(topo.host_ix(host).expect("a host of the seed lab"));
    h.dvr_mac.expect("a dataplane host has a DVR MAC").to_string()
}

/// The local VLAN of a network on a host.
fn local_vlan(topo: &Topology, host: &str, network: &str) -> u16 {
    let h = topo.host(topo.host_ix(host).expect("a host of the seed lab"));
    let n = topo.networks.iter().position(|n| n.name == network).expect("a network of the seed lab");
    h.local_vlan(dvr_model::NetworkIx(n)).expect("the network is present on the host").get()
}

fn router(topo: &Topology) -> &dvr_model::Router {
    topo.routers.iter().find(|r| r.name == "router1").expect("router1")
}

fn qrouter_ns(topo: &Topology) -> String {
    names::qrouter_ns(&router(topo).id)
}

fn snat_ns(topo: &Topology) -> String {
    names::snat_ns(&router(topo).id)
}

fn fip_ns(topo: &Topology) -> String {
    let ext = topo.networks.iter().find(|n| n.name == "external").expect("external network");
    names::fip_ns(&ext.id)
}

fn qdhcp_ns(topo: &Topology, network: &str) -> String {
    let n = topo.networks.iter().find(|n| n.name == network).expect("a network of the seed lab");
    names::qdhcp_ns(&n.id)
}

/// (rfp- address, fpr- address) of router1's link to the fip namespace on `host`.
fn fip_link(topo: &Topology, host: &str) -> (String, String) {
    let r = topo.routers.iter().position(|r| r.name == "router1").expect("router1");
    let h = topo.host(topo.host_ix(host).expect("a host"));
    let l = h.fip_link(dvr_model::RouterIx(r)).unwrap_or_else(|| panic!("router1 has no fip link on {host}"));
    (l.rfp_ip().to_string(), l.fpr_ip().to_string())
}

/// MACs of every distributed router interface (`qr-`): the gateway MACs,
/// identical on every host.
fn gateway_macs(topo: &Topology) -> Vec<String> {
    topo.ports.iter().filter(|p| matches!(p.owner, PortOwner::RouterInterfaceDistributed { .. })).map(|p| p.mac.to_string()).collect()
}

// ---------------------------------------------------------------------------
// Matching hops
// ---------------------------------------------------------------------------

/// One expected hop: on `host`, at a bridge / namespace / endpoint / wire
/// whose name starts with `where_`, with every `detail` part present in the
/// hop's detail, in order.
#[derive(Debug)]
struct Step {
    host: String,
    where_: String,
    detail: Vec<String>,
}

fn at(host: &str, where_: &str, detail: &[&str]) -> Step {
    Step { host: host.into(), where_: where_.into(), detail: detail.iter().map(|s| s.to_string()).collect() }
}

/// A step on a physical network.
fn wire(physnet: &str, detail: &[&str]) -> Step {
    at("fabric", physnet, detail)
}

fn contains_in_order(hay: &str, parts: &[String]) -> bool {
    let mut rest = hay;
    for p in parts {
        match rest.find(p.as_str()) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

impl Step {
    fn matches(&self, h: &Hop) -> bool {
        h.host == self.host && h.where_.starts_with(&self.where_) && contains_in_order(&h.detail(), &self.detail)
    }
}

fn show(h: &Hop) -> String {
    let p = &h.packet;
    let vlan = p.vlan.map_or("-".to_string(), |v| v.to_string());
    format!(
        "[{}] {} {}: {}   {{{} {} > {} vlan {} {} > {}}}{}",
        h.copy,
        h.host,
        h.where_,
        h.detail(),
        p.proto,
        p.eth_src,
        p.eth_dst,
        vlan,
        p.ip_src,
        p.ip_dst,
        h.fate.map(|f| format!(" [{f}]")).unwrap_or_default()
    )
}

fn dump(hops: &[&Hop]) -> String {
    hops.iter().enumerate().map(|(i, h)| format!("{i:4} {}\n", show(h))).collect()
}

/// Assert that `steps` occur in `hops` in this order (other hops may come
/// between them); returns the matching hops so their packets can be checked.
fn expect_seq<'a>(what: &str, hops: &[&'a Hop], steps: &[Step]) -> Vec<&'a Hop> {
    let mut found = Vec::new();
    let mut from = 0;
    for (n, s) in steps.iter().enumerate() {
        match hops[from..].iter().position(|h| s.matches(h)) {
            Some(k) => {
                found.push(hops[from + k]);
                from += k + 1;
            }
            None => panic!("{what}: expected step #{n} {s:?} after hop {from}, not found.\nhops:\n{}", dump(hops)),
        }
    }
    found
}

/// Every hop of a trace (one direction), flood copies included.
fn all(t: &Trace) -> Vec<&Hop> {
    t.hops.iter().collect()
}

/// The hops that led to hop `end` (its copy and that copy's ancestors),
/// ARP included: the lineage of one frame through floods.
fn lineage(t: &Trace, end: usize) -> Vec<&Hop> {
    let label = &t.hops[end].copy;
    t.hops[..=end].iter().filter(|h| h.copy.is_ancestor_of(label)).collect()
}

/// Index of the single hop matching `step` (panics if there is not exactly one).
fn find_one(what: &str, t: &Trace, step: &Step) -> usize {
    let hits: Vec<usize> = t.hops.iter().enumerate().filter(|(_, h)| step.matches(h)).map(|(i, _)| i).collect();
    assert_eq!(hits.len(), 1, "{what}: expected exactly one hop like {step:?}, found {hits:?}\nhops:\n{}", dump(&all(t)));
    hits[0]
}

/// The delivery path of a trace, asserting there is one.
fn delivered<'a>(what: &str, t: &'a Trace) -> Vec<&'a Hop> {
    let p = delivery_path(t);
    assert!(!p.is_empty(), "{what}: not delivered: {:?}\nhops:\n{}", t.verdict.drop_reason(), dump(&all(t)));
    p
}

fn reply(t: &Trace) -> &Trace {
    t.reply.as_deref().expect("a delivered request has a reply trace")
}

/// The OpenFlow tables visited on `bridge` of `host`, one list per pass
/// (consecutive hops on that bridge); NORMAL decisions are not tables.
fn passes(hops: &[&Hop], host: &str, bridge: &str) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut inside = false;
    for h in hops {
        if h.host == host && h.where_ == bridge && h.kind == HopKind::Openflow {
            if !inside {
                out.push(Vec::new());
                inside = true;
            }
            if let dvr_sim::Step::Table { table, .. } | dvr_sim::Step::Miss { table, .. } = h.step {
                out.last_mut().expect("a pass").push(table);
            }
        } else {
            inside = false;
        }
    }
    out
}

fn no_wire(what: &str, hops: &[&Hop]) {
    let w: Vec<&Hop> = hops.iter().copied().filter(|h| h.kind == HopKind::Wire).collect();
    assert!(w.is_empty(), "{what}: expected no wire hop, found:\n{}", dump(&w));
}

fn only_on(what: &str, hops: &[&Hop], host: &str) {
    let off: Vec<&Hop> = hops.iter().copied().filter(|h| h.host != host).collect();
    assert!(off.is_empty(), "{what}: expected every hop on {host}, found:\n{}", dump(&off));
}

fn no_qrouter(what: &str, hops: &[&Hop]) {
    let r: Vec<&Hop> = hops.iter().copied().filter(|h| h.where_.starts_with("qrouter-")).collect();
    assert!(r.is_empty(), "{what}: no router is involved, yet:\n{}", dump(&r));
}

fn verdicts(t: &Trace, to: &str, back_to: &str) {
    assert_eq!(t.verdict.delivered_to(), Some(to), "request: {:?}\n{}", t.verdict.drop_reason(), dump(&all(t)));
    let r = reply(t);
    assert_eq!(r.verdict.delivered_to(), Some(back_to), "reply: {:?}\n{}", r.verdict.drop_reason(), dump(&all(r)));
}

// ---------------------------------------------------------------------------
// §2  VM → gateway
// ---------------------------------------------------------------------------

#[test]
fn vm_to_gateway_arp_and_ping_stay_on_the_host() {
    let (topo, t) = run("vm1", "192.168.1.1");
    verdicts(&t, "router1@compute1", "vm1");
    let qvo1 = dev(&topo, "192.168.1.9");
    let mac1 = mac(&topo, "192.168.1.9");
    let qr1 = dev(&topo, "192.168.1.1");
    let gw1 = mac(&topo, "192.168.1.1");
    let qrouter = qrouter_ns(&topo);
    let lv = local_vlan(&topo, "compute1", "test1");
    let vlan = format!("NORMAL in VLAN {lv}");

    // a–f: ARP through 0 → 24 → 25 → 60 NORMAL, answered by the local qr-,
    // then the ICMP through 0 → 25 → 60 NORMAL to the local qrouter.
    let end = t.hops.iter().position(|h| h.fate == Some(dvr_sim::Fate::Delivered)).expect("a delivering hop");
    let path = lineage(&t, end);
    let hops = expect_seq(
        "vm1 -> gateway",
        &path,
        &[
            at("compute1", "vm1", &["arp who-has 192.168.1.1 tell 192.168.1.9"]),
            at("compute1", "br-int", &["table 0 ", &format!("arp,in_port={qvo1}"), "→ resubmit(,24)"]),
            at("compute1", "br-int", &["table 24 ", &format!("in_port={qvo1}"), "arp_spa=192.168.1.9", "→ resubmit(,25)"]),
            at("compute1", "br-int", &["table 25 ", &format!("in_port={qvo1}"), &format!("dl_src={mac1}"), "→ resubmit(,60)"]),
            at("compute1", "br-int", &["table 60 ", "→ NORMAL"]),
            at("compute1", "br-int", &[&vlan, "flood to", "int-br-vlan", &qr1]),
            at("compute1", &qrouter, &["ARP request for 192.168.1.1: answered by ", &qr1]),
            at("compute1", &qrouter, &[&format!("sends on {qr1}"), &format!("arp reply 192.168.1.1 is-at {gw1}")]),
            at("compute1", "br-int", &["table 0 "]),
            at("compute1", "br-int", &[&vlan, &format!("destination learned on {qvo1}")]),
            at("compute1", "vm1", &[&format!("ARP reply: 192.168.1.1 is-at {gw1}")]),
            at("compute1", "vm1", &["sends on eth0", &format!("> {gw1}"), "icmp echo-request 192.168.1.9 > 192.168.1.1"]),
            at("compute1", "br-int", &["table 0 ", &format!("in_port={qvo1}"), "→ resubmit(,25)"]),
            at("compute1", "br-int", &["table 25 ", &format!("dl_src={mac1}"), "→ resubmit(,60)"]),
            at("compute1", "br-int", &["table 60 ", "→ NORMAL"]),
            at("compute1", "br-int", &[&vlan, &format!("destination learned on {qr1}")]),
            at("compute1", &qrouter, &["192.168.1.1 is local: delivered"]),
        ],
    );
    for h in &hops[1..6] {
        assert_eq!(h.packet.proto, "arp", "the ARP request: {}", show(h));
    }
    let arp: Vec<&Hop> = path.iter().copied().filter(|h| h.packet.proto == "arp").collect();
    assert_eq!(passes(&arp, "compute1", "br-int"), vec![vec![0, 24, 25, 60], vec![0, 60]], "ARP request, then reply\n{}", dump(&arp));
    let icmp = delivered("vm1 -> gateway", &t);
    assert_eq!(passes(&icmp, "compute1", "br-int"), vec![vec![0, 25, 60]], "the ICMP\n{}", dump(&icmp));

    // e: only the local qr- answers the ARP.
    let answers: Vec<&Hop> = t.hops.iter().filter(|h| h.detail().contains("ARP request for 192.168.1.1: answered")).collect();
    assert_eq!(answers.len(), 1, "one answer to the ARP for the gateway:\n{}", dump(&answers));

    // g: the copy NORMAL floods towards br-vlan dies in br-vlan table 1 on
    // the arp_tpa drop flow, after table 0 sent it there.
    let drop = find_one(
        "ARP copy to br-vlan",
        &t,
        &at("compute1", "br-vlan", &["table 1 ", "arp", &format!("dl_vlan={lv}"), "arp_tpa=192.168.1.1", "→ drop"]),
    );
    assert_eq!(t.hops[drop].fate, Some(dvr_sim::Fate::Dropped), "{}", show(&t.hops[drop]));
    assert_eq!(t.hops[drop].packet.proto, "arp");
    let to_vlan = lineage(&t, drop);
    expect_seq(
        "ARP copy to br-vlan",
        &to_vlan,
        &[
            at("compute1", "br-int", &["table 60 ", "→ NORMAL"]),
            at("compute1", "br-int", &[&vlan, "flood to", "int-br-vlan"]),
            at("compute1", "br-vlan", &["table 0 ", "in_port=phy-br-vlan", "→ resubmit(,1)"]),
            at("compute1", "br-vlan", &["table 1 ", "arp_tpa=192.168.1.1", "→ drop"]),
        ],
    );
    assert_eq!(passes(&to_vlan, "compute1", "br-vlan"), vec![vec![0, 1]]);

    // Nothing reaches the wire, in either direction, and no other host sees anything.
    no_wire("request", &all(&t));
    no_wire("reply", &all(reply(&t)));
    only_on("request", &all(&t), "compute1");
    only_on("reply", &all(reply(&t)), "compute1");

    // The reply: from the local qrouter straight back to vm1.
    let back = delivered("gateway -> vm1", reply(&t));
    expect_seq(
        "gateway -> vm1",
        &back,
        &[
            at("compute1", &qrouter, &[&format!("sends on {qr1}"), "icmp echo-reply 192.168.1.1 > 192.168.1.9"]),
            at("compute1", "br-int", &[&vlan, &format!("destination learned on {qvo1}")]),
            at("compute1", "vm1", &["192.168.1.9 is local: delivered"]),
        ],
    );
}

// ---------------------------------------------------------------------------
// §3  East–west
// ---------------------------------------------------------------------------

#[test]
fn same_network_same_host_is_switched_by_br_int() {
    let (topo, t) = run("vm1", "vm2");
    verdicts(&t, "vm2", "vm1");
    let qvo1 = dev(&topo, "192.168.1.9");
    let qvo2 = dev(&topo, "192.168.1.10");
    let mac1 = mac(&topo, "192.168.1.9");
    let mac2 = mac(&topo, "192.168.1.10");
    let lv = local_vlan(&topo, "compute1", "test1");

    let req = delivered("vm1 -> vm2", &t);
    expect_seq(
        "vm1 -> vm2",
        &req,
        &[
            at("compute1", "vm1", &["sends on eth0", &format!("> {mac2}"), "icmp echo-request 192.168.1.9 > 192.168.1.10"]),
            at("compute1", "br-int", &["table 0 ", &format!("in_port={qvo1}"), "→ resubmit(,25)"]),
            at("compute1", "br-int", &["table 25 ", &format!("in_port={qvo1}"), &format!("dl_src={mac1}"), "→ resubmit(,60)"]),
            at("compute1", "br-int", &["table 60 ", "→ NORMAL"]),
            at("compute1", "br-int", &[&format!("NORMAL in VLAN {lv}"), &format!("destination learned on {qvo2}")]),
            at("compute1", "vm2", &["192.168.1.10 is local: delivered"]),
        ],
    );
    assert_eq!(passes(&req, "compute1", "br-int"), vec![vec![0, 25, 60]], "{}", dump(&req));
    no_wire("request", &req);
    only_on("request", &req, "compute1");
    no_qrouter("request", &req);

    let back = delivered("vm2 -> vm1", reply(&t));
    assert_eq!(passes(&back, "compute1", "br-int"), vec![vec![0, 25, 60]], "{}", dump(&back));
    expect_seq(
        "vm2 -> vm1",
        &back,
        &[
            at("compute1", "br-int", &["table 25 ", &format!("dl_src={mac2}")]),
            at("compute1", "br-int", &[&format!("destination learned on {qvo1}")]),
            at("compute1", "vm1", &["delivered"]),
        ],
    );
    no_wire("reply", &back);
    only_on("reply", &back, "compute1");
}

#[test]
fn same_network_different_hosts_crosses_vlan_196() {
    let (topo, t) = run("vm1", "vm3");
    verdicts(&t, "vm3", "vm1");
    let qvo1 = dev(&topo, "192.168.1.9");
    let qvo3 = dev(&topo, "192.168.1.20");
    let lv1 = local_vlan(&topo, "compute1", "test1");
    let lv2 = local_vlan(&topo, "compute2", "test1");
    assert_eq!(lv1, 1, "the walkthrough's local VLAN of test1 on the sending host");

    let req = delivered("vm1 -> vm3", &t);
    let hops = expect_seq(
        "vm1 -> vm3",
        &req,
        &[
            at("compute1", "vm1", &["icmp echo-request 192.168.1.9 > 192.168.1.20"]),
            at("compute1", "br-int", &["table 0 ", &format!("in_port={qvo1}"), "→ resubmit(,25)"]),
            at("compute1", "br-int", &["table 25 ", "→ resubmit(,60)"]),
            at("compute1", "br-int", &["table 60 ", "→ NORMAL"]),
            at("compute1", "br-int", &[&format!("NORMAL in VLAN {lv1}"), "int-br-vlan"]),
            at("compute1", "br-vlan", &["table 0 ", "in_port=phy-br-vlan", "→ resubmit(,1)"]),
            at("compute1", "br-vlan", &["table 1 ", "→ resubmit(,2)"]),
            at("compute1", "br-vlan", &["table 2 ", "in_port=phy-br-vlan", &format!("dl_vlan={lv1}"), "mod_vlan_vid:196", "NORMAL"]),
            wire("physnet1", &["VLAN 196 from compute1:eth1", "compute2:eth1"]),
            at("compute2", "br-vlan", &["table 0 ", "→ resubmit(,3)"]),
            at("compute2", "br-vlan", &["table 3 ", "NORMAL"]),
            at("compute2", "br-int", &["table 0 priority 3 ", "in_port=int-br-vlan", "dl_vlan=196", &format!("mod_vlan_vid:{lv2}")]),
            at("compute2", "br-int", &[&format!("NORMAL in VLAN {lv2}"), &format!("destination learned on {qvo3}")]),
            at("compute2", "vm3", &["192.168.1.20 is local: delivered"]),
        ],
    );
    assert_eq!(hops[7].rewrite().as_deref(), Some(format!("VLAN {lv1}→196").as_str()), "{}", show(hops[7]));
    assert_eq!(hops[7].packet.vlan, Some(196));
    assert_eq!(hops[8].packet.vlan, Some(196), "on the wire: {}", show(hops[8]));
    assert_eq!(hops[11].rewrite().as_deref(), Some(format!("VLAN 196→{lv2}").as_str()), "{}", show(hops[11]));
    assert_eq!(hops[11].packet.vlan, Some(lv2));
    assert_eq!(passes(&req, "compute1", "br-vlan"), vec![vec![0, 1, 2]], "{}", dump(&req));
    assert_eq!(passes(&req, "compute2", "br-vlan"), vec![vec![0, 3]], "{}", dump(&req));
    assert_eq!(passes(&req, "compute2", "br-int"), vec![vec![0]], "{}", dump(&req));
    no_qrouter("request", &req);

    // Reply symmetric: VLAN 196 on the wire from compute2.
    let back = delivered("vm3 -> vm1", reply(&t));
    let hops = expect_seq(
        "vm3 -> vm1",
        &back,
        &[
            at("compute2", "vm3", &["icmp echo-reply 192.168.1.20 > 192.168.1.9"]),
            at("compute2", "br-int", &["table 60 ", "→ NORMAL"]),
            at("compute2", "br-vlan", &["table 2 ", &format!("dl_vlan={lv2}"), "mod_vlan_vid:196"]),
            wire("physnet1", &["VLAN 196 from compute2:eth1", "compute1:eth1"]),
            at("compute1", "br-vlan", &["table 3 "]),
            at("compute1", "br-int", &["table 0 priority 3 ", "dl_vlan=196", &format!("mod_vlan_vid:{lv1}")]),
            at("compute1", "br-int", &[&format!("destination learned on {qvo1}")]),
            at("compute1", "vm1", &["delivered"]),
        ],
    );
    assert_eq!(hops[3].packet.vlan, Some(196), "on the wire: {}", show(hops[3]));
    assert_eq!(passes(&back, "compute2", "br-vlan"), vec![vec![0, 1, 2]], "{}", dump(&back));
    assert_eq!(passes(&back, "compute1", "br-vlan"), vec![vec![0, 3]], "{}", dump(&back));
}

#[test]
fn different_networks_same_host_are_routed_by_the_local_qrouter() {
    let (topo, t) = run("vm1", "vm4");
    verdicts(&t, "vm4", "vm1");
    let qvo4 = dev(&topo, "192.168.2.10");
    let qr1 = dev(&topo, "192.168.1.1");
    let qr2 = dev(&topo, "192.168.2.1");
    let gw2 = mac(&topo, "192.168.2.1");
    let mac4 = mac(&topo, "192.168.2.10");
    let qrouter = qrouter_ns(&topo);
    let lv2 = local_vlan(&topo, "compute1", "test2");

    let req = delivered("vm1 -> vm4", &t);
    let hops = expect_seq(
        "vm1 -> vm4",
        &req,
        &[
            at("compute1", "vm1", &["route default via 192.168.1.1"]),
            at("compute1", "br-int", &["table 60 ", "→ NORMAL"]),
            at("compute1", "br-int", &[&format!("destination learned on {qr1}")]),
            at("compute1", &qrouter, &["PREROUTING"]),
            at("compute1", &qrouter, &[&format!("route 192.168.2.0/24 dev {qr2}")]),
            at("compute1", &qrouter, &["POSTROUTING"]),
            at("compute1", &qrouter, &[&format!("sends on {qr2}"), &format!("{gw2} > {mac4}")]),
            at("compute1", "br-int", &["table 0 "]),
            at("compute1", "br-int", &["table 60 ", "→ NORMAL"]),
            at("compute1", "br-int", &[&format!("NORMAL in VLAN {lv2}"), &qvo4]),
            at("compute1", "vm4", &["192.168.2.10 is local: delivered"]),
        ],
    );
    assert_eq!(hops[6].packet.eth_src.to_string(), gw2, "{}", show(hops[6]));
    assert_eq!(passes(&req, "compute1", "br-int"), vec![vec![0, 25, 60], vec![0, 60]], "{}", dump(&req));
    no_wire("request", &req);
    only_on("request", &req, "compute1");

    let back = delivered("vm4 -> vm1", reply(&t));
    expect_seq(
        "vm4 -> vm1",
        &back,
        &[
            at("compute1", "vm4", &["route default via 192.168.2.1"]),
            at("compute1", "br-int", &[&format!("destination learned on {qr2}")]),
            at("compute1", &qrouter, &[&format!("route 192.168.1.0/24 dev {qr1}")]),
            at("compute1", &qrouter, &[&format!("sends on {qr1}")]),
            at("compute1", "vm1", &["delivered"]),
        ],
    );
    no_wire("reply", &back);
    only_on("reply", &back, "compute1");
}

#[test]
fn different_networks_different_hosts_carry_the_dvr_mac_on_the_wire() {
    let (topo, t) = run("vm1", "vm5");
    verdicts(&t, "vm5", "vm1");
    let qvo1 = dev(&topo, "192.168.1.9");
    let qvo5 = dev(&topo, "192.168.2.20");
    let mac1 = mac(&topo, "192.168.1.9");
    let mac5 = mac(&topo, "192.168.2.20");
    let qr1 = dev(&topo, "192.168.1.1");
    let qr2 = dev(&topo, "192.168.2.1");
    let gw1 = mac(&topo, "192.168.1.1");
    let gw2 = mac(&topo, "192.168.2.1");
    let dvr1 = dvr_mac(&topo, "compute1");
    let dvr2 = dvr_mac(&topo, "compute2");
    let qrouter = qrouter_ns(&topo);
    let lv2 = local_vlan(&topo, "compute1", "test2");
    assert_eq!(lv2, 2, "the walkthrough's local VLAN of test2 on the sending host");
    assert_ne!(dvr1, dvr2, "every compute node has its own DVR MAC");

    let req = delivered("vm1 -> vm5", &t);
    let hops = expect_seq(
        "vm1 -> vm5",
        &req,
        &[
            at("compute1", "br-int", &[&format!("destination learned on {qr1}")]),
            at("compute1", &qrouter, &[&format!("route 192.168.2.0/24 dev {qr2}")]),
            at("compute1", &qrouter, &[&format!("sends on {qr2}")]),
            at("compute1", "br-int", &[&format!("NORMAL in VLAN {lv2}"), "int-br-vlan"]),
            at("compute1", "br-vlan", &["table 0 ", "in_port=phy-br-vlan", "→ resubmit(,1)"]),
            at("compute1", "br-vlan", &["table 1 ", &format!("dl_vlan={lv2}"), &format!("dl_src={gw2}"), &format!("mod_dl_src:{dvr1}")]),
            at("compute1", "br-vlan", &["table 2 ", &format!("dl_vlan={lv2}"), "mod_vlan_vid:148", "NORMAL"]),
            wire("physnet1", &["VLAN 148 from compute1:eth1", "compute2:eth1"]),
            at("compute2", "br-vlan", &["table 0 ", "→ resubmit(,3)"]),
            at("compute2", "br-vlan", &["table 3 ", &format!("dl_src={dvr1}"), "output:phy-br-vlan"]),
            at("compute2", "br-int", &["table 0 ", "in_port=int-br-vlan", &format!("dl_src={dvr1}"), "→ resubmit(,2)"]),
            at(
                "compute2",
                "br-int",
                &["table 2 ", "dl_vlan=148", &format!("dl_dst={mac5}"), &format!("mod_dl_src:{gw2}"), "resubmit(,60)"],
            ),
            at(
                "compute2",
                "br-int",
                &["table 60 priority 20 ", "dl_vlan=148", &format!("dl_dst={mac5}"), "strip_vlan", &format!("output:{qvo5}")],
            ),
            at("compute2", "vm5", &["192.168.2.20 is local: delivered"]),
        ],
    );
    assert_eq!(hops[2].packet.eth_src.to_string(), gw2, "the qrouter sends from the gateway MAC: {}", show(hops[2]));
    assert_eq!(hops[5].rewrite().as_deref(), Some(format!("src MAC {gw2}→{dvr1}").as_str()), "{}", show(hops[5]));
    assert_eq!(hops[6].rewrite().as_deref(), Some(format!("VLAN {lv2}→148").as_str()), "{}", show(hops[6]));
    assert_eq!(hops[7].packet.vlan, Some(148), "on the wire: {}", show(hops[7]));
    assert_eq!(hops[7].packet.eth_src.to_string(), dvr1, "on the wire: {}", show(hops[7]));
    assert_eq!(hops[11].packet.eth_src.to_string(), gw2, "back to the test2 gateway MAC: {}", show(hops[11]));
    assert_eq!(hops[12].packet.vlan, None, "stripped: {}", show(hops[12]));
    assert_eq!(passes(&req, "compute1", "br-vlan"), vec![vec![0, 1, 2]], "{}", dump(&req));
    assert_eq!(passes(&req, "compute2", "br-vlan"), vec![vec![0, 3]], "{}", dump(&req));
    assert_eq!(passes(&req, "compute2", "br-int"), vec![vec![0, 2, 60]], "{}", dump(&req));
    assert_eq!(passes(&req, "compute1", "br-int"), vec![vec![0, 25, 60], vec![0, 60]], "{}", dump(&req));
    assert!(req.iter().all(|h| !(h.host == "compute2" && h.where_.starts_with("qrouter-"))), "compute2's qrouter is not on the way");

    // Reply symmetric: compute2 routes, its DVR MAC on VLAN 196.
    let back = delivered("vm5 -> vm1", reply(&t));
    let hops = expect_seq(
        "vm5 -> vm1",
        &back,
        &[
            at("compute2", &qrouter, &[&format!("route 192.168.1.0/24 dev {qr1}")]),
            at("compute2", &qrouter, &[&format!("sends on {qr1}")]),
            at("compute2", "br-vlan", &["table 1 ", &format!("dl_src={gw1}"), &format!("mod_dl_src:{dvr2}")]),
            at("compute2", "br-vlan", &["table 2 ", "mod_vlan_vid:196"]),
            wire("physnet1", &["VLAN 196 from compute2:eth1", "compute1:eth1"]),
            at("compute1", "br-vlan", &["table 3 ", &format!("dl_src={dvr2}")]),
            at("compute1", "br-int", &["table 0 ", &format!("dl_src={dvr2}"), "→ resubmit(,2)"]),
            at("compute1", "br-int", &["table 2 ", "dl_vlan=196", &format!("dl_dst={mac1}"), &format!("mod_dl_src:{gw1}")]),
            at("compute1", "br-int", &["table 60 priority 20 ", "strip_vlan", &format!("output:{qvo1}")]),
            at("compute1", "vm1", &["delivered"]),
        ],
    );
    assert_eq!(hops[4].packet.vlan, Some(196), "on the wire: {}", show(hops[4]));
    assert_eq!(hops[4].packet.eth_src.to_string(), dvr2, "on the wire: {}", show(hops[4]));
    assert_eq!(hops[7].packet.eth_src.to_string(), gw1, "{}", show(hops[7]));
    assert_eq!(passes(&back, "compute1", "br-int"), vec![vec![0, 2, 60]], "{}", dump(&back));
}

// ---------------------------------------------------------------------------
// §4  SNAT
// ---------------------------------------------------------------------------

#[test]
fn snat_goes_through_the_snat_namespace_on_the_network_node() {
    let (topo, t) = run("vm2", "ext1");
    verdicts(&t, "ext1", "vm2");
    let qr1 = dev(&topo, "192.168.1.1");
    let gw1 = mac(&topo, "192.168.1.1");
    let sg = owned(&topo, "test1-v4", |o| matches!(o, PortOwner::CentralizedSnat { .. }));
    let (sg_ip, sg_dev, sg_mac) = (sg.ip.to_string(), sg.device_name(), sg.mac.to_string());
    let qg = owned(&topo, "external-v4", |o| matches!(o, PortOwner::RouterGateway { .. }));
    let (qg_ip, qg_dev) = (qg.ip.to_string(), qg.device_name());
    let dvr1 = dvr_mac(&topo, "compute1");
    let qrouter = qrouter_ns(&topo);
    let snat = snat_ns(&topo);
    // Neutron's per-subnet SNAT table: the integer value of the router's
    // interface address on the subnet.
    let table = u32::from("192.168.1.1".parse::<Ipv4Addr>().expect("an address"));
    assert_eq!(table, 3_232_235_777);

    let req = delivered("vm2 -> ext1", &t);
    let hops = expect_seq(
        "vm2 -> ext1",
        &req,
        &[
            at("compute1", "vm2", &["icmp echo-request 192.168.1.10 > 10.100.0.14"]),
            at("compute1", "br-int", &[&format!("destination learned on {qr1}")]),
            at("compute1", &qrouter, &["PREROUTING no rule matched"]),
            at(
                "compute1",
                &qrouter,
                &[&format!("ip rule {table} "), &format!("lookup {table}"), &format!("route default via {sg_ip} dev {qr1} table {table}")],
            ),
            at("compute1", &qrouter, &[&format!("sends on {qr1}"), &format!("{gw1} > {sg_mac}")]),
            at("compute1", "br-vlan", &["table 1 ", &format!("dl_src={gw1}"), &format!("mod_dl_src:{dvr1}")]),
            at("compute1", "br-vlan", &["table 2 ", "mod_vlan_vid:196"]),
            wire("physnet1", &["VLAN 196 from compute1:eth1", "network:eth1"]),
            at("network", "br-vlan", &["table 3 ", &format!("dl_src={dvr1}")]),
            at("network", "br-int", &["table 0 ", &format!("dl_src={dvr1}"), "→ resubmit(,2)"]),
            at("network", "br-int", &["table 2 ", &format!("dl_dst={sg_mac}"), &format!("mod_dl_src:{gw1}")]),
            at("network", "br-int", &["table 60 ", "strip_vlan", &format!("output:{sg_dev}")]),
            at("network", &snat, &["PREROUTING"]),
            at("network", &snat, &["route ", &format!("dev {qg_dev}")]),
            at("network", &snat, &[&format!("POSTROUTING SNAT 192.168.1.10 → {qg_ip}")]),
            at("network", &snat, &[&format!("sends on {qg_dev}"), &format!("icmp echo-request {qg_ip} > 10.100.0.14")]),
            at("network", "br-ex", &["strip_vlan"]),
            wire("extnet", &["untagged from network:eth2", "ext1"]),
            at("external", "ext1", &["10.100.0.14 is local: delivered"]),
        ],
    );
    assert_eq!(hops[3].packet.ip_src.to_string(), "192.168.1.10", "no NAT in the qrouter: {}", show(hops[3]));
    assert_eq!(hops[4].packet.eth_dst.to_string(), sg_mac, "to the sg- port: {}", show(hops[4]));
    assert_eq!(hops[7].packet.vlan, Some(196), "{}", show(hops[7]));
    assert_eq!(hops[7].packet.eth_src.to_string(), dvr1, "{}", show(hops[7]));
    assert_eq!(hops[14].rewrite().as_deref(), Some(format!("src IP 192.168.1.10→{qg_ip}").as_str()), "{}", show(hops[14]));
    let last = req.last().expect("a delivering hop");
    assert_eq!(last.packet.ip_src.to_string(), qg_ip, "ext1 sees the router gateway address: {}", show(last));
    assert!(req.iter().any(|h| h.host == "network"), "the frame crosses to the network node");

    // Reply: conntrack undoes the SNAT in the snat namespace, back over VLAN 196.
    let back = delivered("ext1 -> vm2", reply(&t));
    let hops = expect_seq(
        "ext1 -> vm2",
        &back,
        &[
            at("external", "ext1", &[&format!("icmp echo-reply 10.100.0.14 > {qg_ip}")]),
            wire("extnet", &["from ext1", "network:eth2"]),
            at("network", "br-int", &[&format!("destination learned on {qg_dev}")]),
            at("network", &snat, &["PREROUTING conntrack", &format!("{qg_ip} → 192.168.1.10")]),
            at("network", &snat, &[&format!("route 192.168.1.0/24 dev {sg_dev}")]),
            at("network", &snat, &[&format!("sends on {sg_dev}")]),
            at("network", "br-vlan", &["table 2 ", "mod_vlan_vid:196"]),
            wire("physnet1", &["VLAN 196 from network:eth1", "compute1:eth1"]),
            at("compute1", "br-int", &["table 0 priority 3 ", "dl_vlan=196"]),
            at("compute1", "vm2", &["192.168.1.10 is local: delivered"]),
        ],
    );
    assert_eq!(hops[3].packet.ip_dst.to_string(), "192.168.1.10", "{}", show(hops[3]));
    assert_eq!(hops[7].packet.vlan, Some(196), "{}", show(hops[7]));
    let last = back.last().expect("a delivering hop");
    assert_eq!(last.packet.ip_src.to_string(), "10.100.0.14", "{}", show(last));
    assert_eq!(last.packet.ip_dst.to_string(), "192.168.1.10", "{}", show(last));
}

// ---------------------------------------------------------------------------
// §5  Floating IP
// ---------------------------------------------------------------------------

#[test]
fn floating_ip_out_leaves_through_the_local_fip_namespace() {
    let (topo, t) = run("vm1", "ext1");
    verdicts(&t, "ext1", "vm1");
    let qr1 = dev(&topo, "192.168.1.1");
    let fg1 = dev(&topo, "10.100.0.4");
    assert_eq!(port(&topo, "10.100.0.4").host, topo.host_ix("compute1"), "10.100.0.4 is compute1's fg- port");
    let qvo1 = dev(&topo, "192.168.1.9");
    let qrouter = qrouter_ns(&topo);
    let fip = fip_ns(&topo);
    let (rfp_ip, fpr_ip) = fip_link(&topo, "compute1");
    let r = router(&topo);
    let (rfp, fpr) = (names::rfp_dev(&r.id), names::fpr_dev(&r.id));
    let fip_rule = topo.floating_ips[0].rule_priority.expect("an associated floating IP has a rule");
    assert_eq!(fip_rule, 32768);

    let req = delivered("vm1 -> ext1", &t);
    let hops = expect_seq(
        "vm1 -> ext1",
        &req,
        &[
            at("compute1", "vm1", &["icmp echo-request 192.168.1.9 > 10.100.0.14"]),
            at("compute1", "br-int", &[&format!("destination learned on {qr1}")]),
            at("compute1", &qrouter, &["PREROUTING no rule matched"]),
            at(
                "compute1",
                &qrouter,
                &[&format!("ip rule {fip_rule} from 192.168.1.9 lookup 16"), &format!("route default via {fpr_ip} dev {rfp}"), "table 16"],
            ),
            at("compute1", &qrouter, &["POSTROUTING SNAT 192.168.1.9 → 10.100.0.7"]),
            at("compute1", &qrouter, &[&format!("sends on {rfp}"), "icmp echo-request 10.100.0.7 > 10.100.0.14"]),
            at("compute1", &fip, &["route ", &format!("dev {fg1}")]),
            at("compute1", &fip, &[&format!("sends on {fg1}"), "icmp echo-request 10.100.0.7 > 10.100.0.14"]),
            at("compute1", "br-int", &["NORMAL", "int-br-ex"]),
            at("compute1", "br-ex", &["strip_vlan"]),
            wire("extnet", &["untagged from compute1:eth2", "ext1"]),
            at("external", "ext1", &["10.100.0.14 is local: delivered"]),
        ],
    );
    assert_eq!(hops[4].rewrite().as_deref(), Some("src IP 192.168.1.9→10.100.0.7"), "{}", show(hops[4]));
    assert_eq!(hops[10].packet.vlan, None, "extnet is flat: {}", show(hops[10]));
    let last = req.last().expect("a delivering hop");
    assert_eq!(last.packet.ip_src.to_string(), "10.100.0.7", "ext1 sees the floating IP: {}", show(last));
    // Never through the network node: not on the delivery path, and no
    // copy of the IP packet there at all (only ARP broadcasts reach it).
    let net: Vec<&Hop> = t.hops.iter().filter(|h| h.host == "network" && h.packet.proto != "arp").collect();
    assert!(net.is_empty(), "the request must not cross the network node:\n{}", dump(&net));
    assert!(req.iter().all(|h| h.host != "network" && h.host != "compute2"), "{}", dump(&req));
    assert!(!req.iter().any(|h| h.where_.starts_with("snat-")), "no snat namespace on the way");

    // Reply: fip routes it to fpr-, the qrouter's conntrack undoes the SNAT.
    let back = delivered("ext1 -> vm1", reply(&t));
    let hops = expect_seq(
        "ext1 -> vm1 (reply)",
        &back,
        &[
            wire("extnet", &["from ext1", "compute1:eth2"]),
            at("compute1", "br-int", &[&format!("destination learned on {fg1}")]),
            at("compute1", &fip, &[&format!("route 10.100.0.7/32 via {rfp_ip} dev {fpr}")]),
            at("compute1", &fip, &[&format!("sends on {fpr}")]),
            at("compute1", &qrouter, &["conntrack", "10.100.0.7 → 192.168.1.9"]),
            at("compute1", &qrouter, &[&format!("route 192.168.1.0/24 dev {qr1}")]),
            at("compute1", &qrouter, &[&format!("sends on {qr1}")]),
            at("compute1", "br-int", &[&format!("destination learned on {qvo1}")]),
            at("compute1", "vm1", &["192.168.1.9 is local: delivered"]),
        ],
    );
    assert_eq!(hops[4].packet.ip_dst.to_string(), "192.168.1.9", "{}", show(hops[4]));
    assert!(back.iter().all(|h| h.host != "network"), "{}", dump(&back));
}

#[test]
fn floating_ip_in_is_proxy_arped_by_fg_and_dnatted_in_the_qrouter() {
    let (topo, t) = run("ext1", "10.100.0.7");
    verdicts(&t, "vm1", "ext1");
    let qr1 = dev(&topo, "192.168.1.1");
    let qvo1 = dev(&topo, "192.168.1.9");
    let fg1 = dev(&topo, "10.100.0.4");
    let fg1_mac = mac(&topo, "10.100.0.4");
    assert_eq!(port(&topo, "10.100.0.4").host, topo.host_ix("compute1"), "10.100.0.4 is compute1's fg- port");
    let qrouter = qrouter_ns(&topo);
    let fip = fip_ns(&topo);
    let (rfp_ip, _) = fip_link(&topo, "compute1");
    let r = router(&topo);
    let (rfp, fpr) = (names::rfp_dev(&r.id), names::fpr_dev(&r.id));

    // Exactly one device answers the ARP for the floating IP: compute1's fg-, by proxy ARP.
    let answers: Vec<&Hop> = t
        .hops
        .iter()
        .filter(|h| {
            h.packet.proto == "arp"
                && h.packet.ip_dst.to_string() == "10.100.0.7"
                && (h.detail().starts_with("proxy ARP on ") || h.detail().contains(": answered by"))
        })
        .collect();
    assert_eq!(answers.len(), 1, "one answer to the ARP for 10.100.0.7:\n{}", dump(&answers));
    let a = answers[0];
    assert_eq!((a.host.as_str(), a.where_.as_str()), ("compute1", fip.as_str()), "{}", show(a));
    assert!(matches!(&a.step, dvr_sim::Step::ProxyArp { dev, .. } if *dev == fg1), "{}", show(a));
    let replies = t.hops.iter().filter(|h| h.detail().contains("arp reply 10.100.0.7 is-at")).count();
    assert_eq!(replies, 1, "one ARP reply for the floating IP");

    let end = t.hops.iter().position(|h| h.fate == Some(dvr_sim::Fate::Delivered)).expect("a delivering hop");
    let path = lineage(&t, end);
    let hops = expect_seq(
        "ext1 -> 10.100.0.7",
        &path,
        &[
            at("external", "ext1", &["arp who-has 10.100.0.7 tell 10.100.0.14"]),
            wire("extnet", &["from ext1", "compute1:eth2"]),
            at("compute1", "br-int", &["NORMAL", &fg1]),
            at("compute1", &fip, &[&format!("proxy ARP on {fg1}"), &format!("leaves by {fpr}")]),
            at("compute1", &fip, &[&format!("sends on {fg1}"), &format!("arp reply 10.100.0.7 is-at {fg1_mac}")]),
            at("external", "ext1", &[&format!("ARP reply: 10.100.0.7 is-at {fg1_mac}")]),
            at("external", "ext1", &["sends on eth0", &format!("> {fg1_mac}"), "icmp echo-request 10.100.0.14 > 10.100.0.7"]),
            wire("extnet", &["from ext1", "compute1:eth2"]),
            at("compute1", "br-int", &[&format!("destination learned on {fg1}")]),
            at("compute1", &fip, &[&format!("route 10.100.0.7/32 via {rfp_ip} dev {fpr}")]),
            at("compute1", &fip, &[&format!("sends on {fpr}")]),
            at("compute1", &qrouter, &["PREROUTING DNAT 10.100.0.7 → 192.168.1.9", &format!("-i {rfp}")]),
            at("compute1", &qrouter, &[&format!("route 192.168.1.0/24 dev {qr1}")]),
            at("compute1", &qrouter, &[&format!("sends on {qr1}")]),
            at("compute1", "br-int", &[&qvo1]),
            at("compute1", "vm1", &["192.168.1.9 is local: delivered"]),
        ],
    );
    assert_eq!(hops[11].rewrite().as_deref(), Some("dst IP 10.100.0.7→192.168.1.9"), "{}", show(hops[11]));
    let req = delivered("ext1 -> 10.100.0.7", &t);
    assert!(req.iter().all(|h| h.host != "network" && h.host != "compute2"), "{}", dump(&req));

    // Reply: vm1 → qrouter (SNAT back to the floating IP by conntrack) → fip → ext1.
    let back = delivered("vm1 -> ext1 (reply)", reply(&t));
    expect_seq(
        "vm1 -> ext1 (reply)",
        &back,
        &[
            at("compute1", "vm1", &["icmp echo-reply 192.168.1.9 > 10.100.0.14"]),
            at("compute1", &qrouter, &["ip rule ", "from 192.168.1.9 lookup 16"]),
            at("compute1", &qrouter, &["conntrack", "192.168.1.9 → 10.100.0.7"]),
            at("compute1", &qrouter, &[&format!("sends on {rfp}")]),
            at("compute1", &fip, &[&format!("sends on {fg1}")]),
            wire("extnet", &["from compute1:eth2", "ext1"]),
            at("external", "ext1", &["delivered"]),
        ],
    );
    let last = back.last().expect("a delivering hop");
    assert_eq!(last.packet.ip_src.to_string(), "10.100.0.7", "ext1 sees the reply from the floating IP: {}", show(last));
}

// ---------------------------------------------------------------------------
// §0  Metadata (force_metadata: served by the DHCP namespace)
// ---------------------------------------------------------------------------

#[test]
fn metadata_goes_to_the_qdhcp_namespace_over_vlan_196() {
    let (topo, t) = run("vm3", "169.254.169.254");
    verdicts(&t, "dhcp-test1@network", "vm3");
    let dhcp = owned(&topo, "test1-v4", |o| matches!(o, PortOwner::Dhcp));
    let (dhcp_ip, dhcp_dev, dhcp_mac) = (dhcp.ip.to_string(), dhcp.device_name(), dhcp.mac.to_string());
    let qvo3 = dev(&topo, "192.168.1.20");
    let qdhcp = qdhcp_ns(&topo, "test1");
    let lv_c2 = local_vlan(&topo, "compute2", "test1");
    let lv_net = local_vlan(&topo, "network", "test1");

    let req = delivered("vm3 -> metadata", &t);
    let hops = expect_seq(
        "vm3 -> metadata",
        &req,
        &[
            at("compute2", "vm3", &[&format!("route 169.254.169.254/32 via {dhcp_ip} dev eth0")]),
            at("compute2", "vm3", &["sends on eth0", &format!("> {dhcp_mac}"), "icmp echo-request 192.168.1.20 > 169.254.169.254"]),
            at("compute2", "br-int", &["table 0 ", &format!("in_port={qvo3}"), "→ resubmit(,25)"]),
            at("compute2", "br-int", &["table 60 ", "→ NORMAL"]),
            at("compute2", "br-vlan", &["table 2 ", &format!("dl_vlan={lv_c2}"), "mod_vlan_vid:196"]),
            wire("physnet1", &["VLAN 196 from compute2:eth1", "network:eth1"]),
            at("network", "br-vlan", &["table 3 "]),
            at("network", "br-int", &["table 0 priority 3 ", "dl_vlan=196", &format!("mod_vlan_vid:{lv_net}")]),
            at("network", "br-int", &[&format!("destination learned on {dhcp_dev}")]),
            at("network", &qdhcp, &["169.254.169.254 is local: delivered"]),
        ],
    );
    assert_eq!(hops[5].packet.vlan, Some(196), "{}", show(hops[5]));
    no_qrouter("request", &req);

    let back = delivered("metadata -> vm3", reply(&t));
    let hops = expect_seq(
        "metadata -> vm3",
        &back,
        &[
            at("network", &qdhcp, &[&format!("sends on {dhcp_dev}"), "icmp echo-reply 169.254.169.254 > 192.168.1.20"]),
            at("network", "br-vlan", &["table 2 ", "mod_vlan_vid:196"]),
            wire("physnet1", &["VLAN 196 from network:eth1", "compute2:eth1"]),
            at("compute2", "br-int", &["table 0 priority 3 ", "dl_vlan=196"]),
            at("compute2", "vm3", &["192.168.1.20 is local: delivered"]),
        ],
    );
    assert_eq!(hops[2].packet.vlan, Some(196), "{}", show(hops[2]));
}

// ---------------------------------------------------------------------------
// All nine paths
// ---------------------------------------------------------------------------

/// Every path of the seed header, request and reply, each on a fresh twin.
fn all_traces() -> Vec<(PathSpec, Trace)> {
    let (topo, plan) = lab();
    seed_paths()
        .into_iter()
        .map(|p| {
            let t = run_path(&topo, &plan, &p).unwrap_or_else(|e| panic!("{} -> {}: {e}", p.from, p.to));
            (p, t)
        })
        .collect()
}

#[test]
fn the_gateway_mac_never_appears_as_a_source_on_the_wire() {
    let (topo, _) = lab();
    let gw = gateway_macs(&topo);
    assert!(!gw.is_empty(), "the seed lab has distributed router interfaces");
    let mut checked = 0;
    for (p, t) in all_traces() {
        assert!(t.verdict.is_delivered(), "{} -> {}: {:?}", p.from, p.to, t.verdict.drop_reason());
        for (dir, tr) in [("request", &t), ("reply", reply(&t))] {
            for h in tr.hops.iter().filter(|h| h.kind == HopKind::Wire) {
                checked += 1;
                assert!(
                    !gw.contains(&h.packet.eth_src.to_string()),
                    "{} -> {} ({dir}): a gateway (qr-) MAC is the source of a frame on the wire: {}",
                    p.from,
                    p.to,
                    show(h)
                );
            }
        }
    }
    assert!(checked > 0, "some paths cross a wire");
}

#[test]
#[ignore = "needs ../shared beside the repository: scripts/test runs it when present (always in CI)"]
fn shared_every_trace_passes_the_json_contract_checker() {
    let checker = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/tools/check-trace-json");
    assert!(std::path::Path::new(checker).exists(), "the trace contract checker {checker} is missing");
    for (p, t) in all_traces() {
        let json = dvr_sim::render::json(&t);
        let mut child = std::process::Command::new("python3")
            .arg(checker)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("a stdin pipe");
            stdin.write_all(json.as_bytes()).expect("the checker reads its input");
        }
        let out = child.wait_with_output().expect("the checker finishes");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.trim() == "ok",
            "{} -> {}: the checker said ({}):\n{stdout}{}",
            p.from,
            p.to,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
