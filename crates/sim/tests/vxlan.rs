//! VXLAN in the twin: `labs/seed-vxlan.yaml` (the seed lab with test1 and
//! test2 in tunnels, VNIs 1001 and 1002) and `labs/seed-mixed.yaml` (test1 on
//! VLAN 196, test2 on VNI 1002, one router). Frames sent into a tunnel port
//! cross the underlay between the hosts' `local_ip`s with the flow's
//! `tun_id` as VNI and enter the receiving host's br-tun by the tunnel port
//! for the sender, with `tun_id`/`tun_src`/`tun_dst` set.
//!
//! The sequence tests state DVR's facts about tunnels and check each with
//! a negative control: the plan with the flow behind the fact removed makes
//! the assertion fail, so the assertion can fail.
//!
//! Expected names, MACs, VNIs and addresses come from the allocated topology.

use dvr_model::{PortOwner, SEED_MIXED_YAML, SEED_VXLAN_YAML, Topology, load_str};
use dvr_openflow::Flow;
use dvr_plan::{Plan, Profile};
use dvr_sim::demo::{expected_of, run_path};
use dvr_sim::packet::Encap;
use dvr_sim::{Fate, Hop, L4, Step, Trace, TraceRequest, World, delivery_path, trace, warm_up};
use std::net::Ipv4Addr;
use std::sync::Arc;

fn lab(yaml: &str, profile: Profile) -> (Topology, Plan) {
    let topo = load_str("lab.yaml", yaml).expect("the lab is valid");
    let plan = dvr_plan::plan(&topo, profile).expect("the lab has a plan");
    (topo, plan)
}

/// Trace `from` → `to` (an endpoint name or address) on a warmed-up twin of `plan`.
fn run(topo: &Topology, plan: &Plan, from: &str, to: &str) -> Trace {
    let mut w = World::build(topo, plan);
    warm_up(&mut w);
    let to = topo.resolve_address(to).unwrap_or_else(|| panic!("{to} is no address"));
    let req = TraceRequest { from: from.into(), to, l4: L4::Icmp { reply: false, id: 1 }, spoof_ip: None, spoof_mac: None };
    trace(&mut w, &req).unwrap()
}

fn reply(t: &Trace) -> &Trace {
    t.reply.as_deref().expect("a delivered request has a reply")
}

/// Remove the flows of `bridge` on `host` that `pick` selects; at least one must go.
fn without(plan: &mut Plan, host: &str, bridge: &str, pick: impl Fn(&Flow) -> bool) {
    let hp = plan.hosts.iter_mut().find(|h| h.host == host).expect("host");
    let b = hp.bridges.iter_mut().find(|b| b.name == bridge).expect("bridge");
    let n = b.flows.len();
    b.flows.retain(|f| !pick(f));
    assert!(b.flows.len() < n, "the negative control removes no flow on {host} {bridge}");
}

fn vni(topo: &Topology, network: &str) -> u32 {
    let n = topo.networks.iter().find(|n| n.name == network).expect("network");
    n.segment.vni().expect("a VXLAN network").get()
}

fn vtep(topo: &Topology, host: &str) -> Ipv4Addr {
    topo.host(topo.host_ix(host).expect("host")).tunnel_ip.expect("a tunnel endpoint")
}

fn dvr_mac(topo: &Topology, host: &str) -> String {
    topo.host(topo.host_ix(host).expect("host")).dvr_mac.expect("a DVR MAC").to_string()
}

fn mac_of(topo: &Topology, ip: &str) -> String {
    let ip: Ipv4Addr = ip.parse().unwrap();
    topo.ports.iter().find(|p| p.ip == ip).expect("a port").mac.to_string()
}

fn gateway_macs(topo: &Topology) -> Vec<String> {
    topo.ports.iter().filter(|p| matches!(p.owner, PortOwner::RouterInterfaceDistributed { .. })).map(|p| p.mac.to_string()).collect()
}

fn local_vlan(topo: &Topology, host: &str, network: &str) -> u16 {
    let n = topo.networks.iter().position(|n| n.name == network).expect("network");
    topo.host(topo.host_ix(host).unwrap()).local_vlan(dvr_model::NetworkIx(n)).expect("present").get()
}

/// The tunnel hops of some hops, with their encapsulation.
fn tunnel_hops<'a>(hops: impl IntoIterator<Item = &'a Hop>) -> Vec<(&'a Hop, Encap, String, Option<String>)> {
    hops.into_iter()
        .filter_map(|h| match &h.step {
            Step::Tunnel { encap, from, to } => Some((h, *encap, from.clone(), to.clone())),
            _ => None,
        })
        .collect()
}

fn show(hops: &[&Hop]) -> String {
    hops.iter().map(|h| format!("[{}] {} {}: {} {{{:?}}}\n", h.copy, h.host, h.where_, h.detail(), h.packet)).collect()
}

fn all(t: &Trace) -> Vec<&Hop> {
    t.hops.iter().collect()
}

/// Assert that hops matching each `(host, where, detail parts)` occur in order.
fn expect_seq(what: &str, hops: &[&Hop], steps: &[(&str, &str, &[&str])]) {
    let mut from = 0;
    for (n, (host, where_, parts)) in steps.iter().enumerate() {
        let hit = hops[from..].iter().position(|h| {
            let d = h.detail();
            h.host == *host && h.where_.starts_with(where_) && parts.iter().all(|p| d.contains(p))
        });
        match hit {
            Some(k) => from += k + 1,
            None => panic!("{what}: step #{n} {host} {where_} {parts:?} not found after hop {from}\n{}", show(hops)),
        }
    }
}

// ---------------------------------------------------------------------------
// All nine paths
// ---------------------------------------------------------------------------

#[test]
fn every_path_of_the_vxlan_and_mixed_labs_ends_as_its_file_says() {
    for (name, yaml) in [("seed-vxlan", SEED_VXLAN_YAML), ("seed-mixed", SEED_MIXED_YAML)] {
        for profile in [Profile::Walkthrough, Profile::Current] {
            let (topo, plan) = lab(yaml, profile);
            assert_eq!(topo.paths.len(), 9, "{name} lists the nine walkthrough paths");
            for p in &topo.paths {
                let t = run_path(&topo, &plan, p).unwrap();
                let want = p.expect.unwrap_or(dvr_model::Expected::Delivered);
                assert_eq!(expected_of(&t), want, "{name} {profile:?} {} -> {}: {}", p.from, p.to, t.verdict);
                assert!(t.round_trip(), "{name} {profile:?} {} -> {}: every path of the lab makes the round trip", p.from, p.to);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Cross-host frames carry the VNI
// ---------------------------------------------------------------------------

#[test]
fn cross_host_frames_carry_the_vni_between_the_local_ips() {
    let (topo, plan) = lab(SEED_VXLAN_YAML, Profile::Walkthrough);
    let (c1, c2) = (vtep(&topo, "compute1"), vtep(&topo, "compute2"));
    let port_to = |ip: Ipv4Addr| dvr_plan::tunnel::tunnel_port_name(ip);
    let (to, net, dst_ip) = ("vm3", "test1", "192.168.1.20");
    let t = run(&topo, &plan, "vm1", to);
    assert!(t.round_trip(), "{}", t.verdict);
    let vni1 = vni(&topo, net);
    let path = delivery_path(&t);
    let tun = tunnel_hops(path.iter().copied());
    assert_eq!(tun.len(), 1, "one tunnel crossing:\n{}", show(&path));
    let (h, encap, from, into) = &tun[0];
    assert_eq!(*encap, Encap { src: c1, dst: c2, vni: vni1, udp_dst: 4789 });
    assert_eq!(from, &format!("compute1:{}", port_to(c2)));
    assert_eq!(into.as_deref(), Some(format!("compute2:{}", port_to(c1)).as_str()));
    assert_eq!(h.packet.tunnel, Some(*encap), "the hop's packet shows the outer headers");
    assert_eq!(h.packet.vlan, None, "no local VLAN inside the tunnel");
    assert_eq!(h.packet.eth_dst.to_string(), mac_of(&topo, dst_ip));
    let tun_id = format!("{vni1:#x}");
    let lv2 = local_vlan(&topo, "compute2", net);
    expect_seq(
        "vm1 -> vm3",
        &path,
        &[
            ("compute1", "br-tun", &["table 20 ", &format!("set_field:{tun_id}->tun_id"), &format!("output:{}", port_to(c2))]),
            ("fabric", "underlay", &[&format!("VXLAN VNI {vni1} {c1} > {c2} udp/4789")]),
            ("compute2", "br-tun", &["table 0 ", &format!("in_port={}", port_to(c1)), "resubmit(,4)"]),
            ("compute2", "br-tun", &["table 4 ", &format!("tun_id={tun_id}"), &format!("mod_vlan_vid:{lv2}")]),
            ("compute2", "br-tun", &["patch port patch-int → br-int"]),
            ("compute2", "vm3", &["delivered"]),
        ],
    );
    // The reply crosses back with the same VNI.
    let back = delivery_path(reply(&t));
    let tun = tunnel_hops(back.iter().copied());
    assert_eq!(tun.len(), 1, "{}", show(&back));
    assert_eq!(tun[0].1, Encap { src: c2, dst: c1, vni: vni1, udp_dst: 4789 });
    // Routed onto test2: VNI 1002.
    let t = run(&topo, &plan, "vm1", "vm5");
    let tun = tunnel_hops(delivery_path(&t));
    assert_eq!(tun.len(), 1);
    assert_eq!(tun[0].1.vni, vni(&topo, "test2"));
    // On the mixed lab test1 is VLAN 196: vm1 -> vm3 crosses physnet1, no tunnel.
    let (mt, mp) = lab(SEED_MIXED_YAML, Profile::Walkthrough);
    let t = run(&mt, &mp, "vm1", "vm3");
    assert!(t.round_trip());
    assert!(tunnel_hops(all(&t)).is_empty(), "a VLAN network uses no tunnel:\n{}", show(&all(&t)));
    assert!(delivery_path(&t).iter().any(|h| matches!(h.step, Step::Wire { vlan: Some(196), .. })));
}

/// Negative control: without compute2's table 4 flow for test1's VNI the
/// frame that arrives with it goes nowhere, so the VNI is what carries it.
#[test]
fn without_the_receivers_tunnel_id_flow_the_frame_dies_in_br_tun() {
    let (topo, mut plan) = lab(SEED_VXLAN_YAML, Profile::Walkthrough);
    let tun_id = format!("tun_id={:#x}", vni(&topo, "test1"));
    without(&mut plan, "compute2", "br-tun", |f| f.table.0 == 4 && f.to_string().contains(&tun_id));
    let t = run(&topo, &plan, "vm1", "vm3");
    assert!(!t.verdict.is_delivered(), "{}", t.verdict);
    let d = t.verdict.dropped().unwrap();
    let at = d.at.as_ref().unwrap();
    assert_eq!((at.host.as_str(), at.where_.as_str()), ("compute2", "br-tun"), "{d}");
    // It did cross the underlay with the VNI.
    assert!(tunnel_hops(all(&t)).iter().any(|(_, e, ..)| e.vni == vni(&topo, "test1")));
}

/// A tunnel port whose peer has no tunnel back is a drop on the underlay.
#[test]
fn a_packet_no_tunnel_port_receives_is_dropped_on_the_underlay() {
    let (topo, mut plan) = lab(SEED_VXLAN_YAML, Profile::Walkthrough);
    let back = dvr_plan::tunnel::tunnel_port_name(vtep(&topo, "compute1"));
    let hp = plan.hosts.iter_mut().find(|h| h.host == "compute2").unwrap();
    let b = hp.bridges.iter_mut().find(|b| b.name == "br-tun").unwrap();
    let before = b.ports.len();
    b.ports.retain(|p| p.name != back);
    assert_eq!(b.ports.len(), before - 1);
    let t = run(&topo, &plan, "vm1", "vm3");
    let d = t.verdict.dropped().unwrap_or_else(|| panic!("{}", t.verdict));
    assert!(matches!(d.reason, dvr_sim::DropReason::NoTunnel { .. }), "{d}");
    assert_eq!(d.at.as_ref().unwrap().where_, "underlay");
    let tun = tunnel_hops(all(&t));
    assert!(tun.iter().any(|(h, _, _, to)| to.is_none() && h.fate == Some(Fate::Dropped)));
}

// ---------------------------------------------------------------------------
// Routed frames leave with the sender's DVR MAC inside the tunnel
// ---------------------------------------------------------------------------

/// vm1 -> vm5 (test1 to test2, compute1 to compute2). On the mixed lab only
/// the request crosses a tunnel (compute1 routes onto VXLAN test2); the
/// reply is routed on compute2 onto VLAN test1 and crosses physnet1.
fn check_dvr_mac_in_tunnel(topo: &Topology, plan: &Plan, reply_tunnelled: bool) {
    let gws = gateway_macs(topo);
    let t = run(topo, plan, "vm1", "vm5");
    assert!(t.round_trip(), "{}", t.verdict);
    for (dir, tr, sender) in [("request", &t, "compute1"), ("reply", reply(&t), "compute2")] {
        let path = delivery_path(tr);
        let tun = tunnel_hops(path.iter().copied());
        if dir == "reply" && !reply_tunnelled {
            assert!(tun.is_empty(), "{}", show(&path));
            let wire = path.iter().find(|h| matches!(h.step, Step::Wire { vlan: Some(196), .. })).expect("VLAN 196 on physnet1");
            assert_eq!(wire.packet.eth_src.to_string(), dvr_mac(topo, sender), "reply: the sender's DVR MAC on the wire");
            continue;
        }
        assert_eq!(tun.len(), 1, "{dir}:\n{}", show(&path));
        assert_eq!(tun[0].0.packet.eth_src.to_string(), dvr_mac(topo, sender), "{dir}: the sender's DVR MAC inside the tunnel");
        for (h, ..) in tunnel_hops(all(tr)) {
            assert!(!gws.contains(&h.packet.eth_src.to_string()), "{dir}: a gateway MAC in a tunnel: {}", show(&[h]));
        }
    }
    let path = delivery_path(&t);
    let (d1, gw2) = (dvr_mac(topo, "compute1"), mac_of(topo, "192.168.2.1"));
    expect_seq(
        "vm1 -> vm5",
        &path,
        &[
            ("compute1", "br-tun", &["table 1 ", &format!("mod_dl_src:{d1}")]),
            ("fabric", "underlay", &["VXLAN VNI"]),
            ("compute2", "br-tun", &["table 9 ", &format!("dl_src={d1}"), "output:patch-int"]),
            ("compute2", "br-int", &["table 0 ", "in_port=patch-tun", &format!("dl_src={d1}")]),
            ("compute2", "br-int", &["table 1 ", &format!("mod_dl_src:{gw2}")]),
            ("compute2", "vm5", &["delivered"]),
        ],
    );
}

#[test]
fn routed_cross_host_frames_leave_with_the_senders_dvr_mac_inside_the_tunnel() {
    for profile in [Profile::Walkthrough, Profile::Current] {
        let (topo, plan) = lab(SEED_VXLAN_YAML, profile);
        check_dvr_mac_in_tunnel(&topo, &plan, true);
        // Mixed: vm1 on VLAN test1 routed locally onto VXLAN test2.
        let (topo, plan) = lab(SEED_MIXED_YAML, profile);
        check_dvr_mac_in_tunnel(&topo, &plan, false);
    }
}

/// Negative control: without compute1's DVR_PROCESS source rewrite the
/// routed frame enters the tunnel with the gateway MAC, and the check fails.
#[test]
fn without_the_dvr_mac_rewrite_the_gateway_mac_enters_the_tunnel() {
    let (topo, mut plan) = lab(SEED_VXLAN_YAML, Profile::Walkthrough);
    let d1 = dvr_mac(&topo, "compute1");
    without(&mut plan, "compute1", "br-tun", |f| f.table.0 == 1 && f.to_string().contains(&format!("mod_dl_src:{d1}")));
    let t = run(&topo, &plan, "vm1", "vm5");
    let gw2 = mac_of(&topo, "192.168.2.1");
    let leaked = tunnel_hops(all(&t)).into_iter().any(|(h, ..)| h.packet.eth_src.to_string() == gw2);
    assert!(leaked, "the gateway MAC crosses the underlay:\n{}", show(&all(&t)));
    let caught = std::panic::catch_unwind(|| check_dvr_mac_in_tunnel(&topo, &plan, true));
    assert!(caught.is_err(), "the check must fail on this plan");
}

// ---------------------------------------------------------------------------
// Gateway ARP never leaves a host
// ---------------------------------------------------------------------------

fn check_gateway_arp_stays(topo: &Topology, plan: &Plan, vm: &str, host: &str, gw: &str) {
    let t = run(topo, plan, vm, gw);
    assert!(t.round_trip(), "{vm} -> {gw}: {}", t.verdict);
    for tr in [&t, reply(&t)] {
        let tun = tunnel_hops(all(tr));
        let shown: Vec<&Hop> = tun.iter().map(|x| x.0).collect();
        assert!(tun.is_empty(), "{vm} -> {gw}: nothing enters a tunnel:\n{}", show(&shown));
        let off: Vec<&Hop> = tr.hops.iter().filter(|h| h.host != host).collect();
        assert!(off.is_empty(), "{vm} -> {gw}: every hop on {host}:\n{}", show(&off));
    }
    // The ARP copy NORMAL floods to patch-tun dies in br-tun.
    let died = t.hops.iter().any(|h| {
        h.host == host
            && h.where_ == "br-tun"
            && h.packet.proto == "arp"
            && h.packet.ip_dst.to_string() == gw
            && h.fate == Some(Fate::Dropped)
    });
    assert!(died, "{vm} -> {gw}: the ARP for the gateway is dropped in br-tun:\n{}", show(&all(&t)));
}

#[test]
fn gateway_arp_never_leaves_a_host() {
    for profile in [Profile::Walkthrough, Profile::Current] {
        let (topo, plan) = lab(SEED_VXLAN_YAML, profile);
        check_gateway_arp_stays(&topo, &plan, "vm1", "compute1", "192.168.1.1");
        check_gateway_arp_stays(&topo, &plan, "vm5", "compute2", "192.168.2.1");
        let (topo, plan) = lab(SEED_MIXED_YAML, profile);
        check_gateway_arp_stays(&topo, &plan, "vm5", "compute2", "192.168.2.1");
    }
}

/// Negative control: without br-tun's drop of ARP for the gateway, the
/// request floods into the tunnels (the ARP responder does not answer for
/// distributed router interfaces).
#[test]
fn without_the_gateway_arp_drop_the_request_floods_into_the_tunnels() {
    for profile in [Profile::Walkthrough, Profile::Current] {
        let (topo, mut plan) = lab(SEED_VXLAN_YAML, profile);
        let gw: Ipv4Addr = "192.168.1.1".parse().unwrap();
        without(&mut plan, "compute1", "br-tun", |f| {
            f.matches.arp_tpa.is_some_and(|m| m.contains(gw)) && f.actions == [dvr_openflow::Action::Drop]
        });
        let t = run(&topo, &plan, "vm1", "192.168.1.1");
        let arp: Vec<&Hop> = tunnel_hops(all(&t)).into_iter().filter(|(h, ..)| h.packet.proto == "arp").map(|x| x.0).collect();
        assert!(!arp.is_empty(), "{profile:?}: the gateway ARP crosses the underlay");
        // The broadcast request reaches the other hosts' copies of the router,
        // and their answers cross back.
        let requests = arp
            .iter()
            .filter(|h| h.packet.eth_dst.to_string() == "ff:ff:ff:ff:ff:ff" && h.packet.ip_dst.to_string() == "192.168.1.1")
            .count();
        assert_eq!(requests, 2, "to the network node and compute2:\n{}", show(&arp));
        let caught = std::panic::catch_unwind(|| check_gateway_arp_stays(&topo, &plan, "vm1", "compute1", "192.168.1.1"));
        assert!(caught.is_err(), "the check must fail on this plan");
    }
}

// ---------------------------------------------------------------------------
// The ARP responder answers for a remote VM locally
// ---------------------------------------------------------------------------

fn check_arp_responder(topo: &Topology, plan: &Plan) {
    let t = run(topo, plan, "vm1", "vm3");
    assert!(t.round_trip(), "{}", t.verdict);
    let mac3 = mac_of(topo, "192.168.1.20");
    let arp_in_tunnels: Vec<&Hop> = tunnel_hops(all(&t)).into_iter().filter(|(h, ..)| h.packet.proto == "arp").map(|x| x.0).collect();
    assert!(arp_in_tunnels.is_empty(), "no ARP enters a tunnel:\n{}", show(&arp_in_tunnels));
    let hops = all(&t);
    expect_seq(
        "vm1 ARPs for vm3",
        &hops,
        &[
            ("compute1", "vm1", &["arp who-has 192.168.1.20 tell 192.168.1.9"]),
            ("compute1", "br-int", &["NORMAL in VLAN", "patch-tun"]),
            ("compute1", "br-tun", &["table 21 ", "arp_tpa=192.168.1.20", "IN_PORT"]),
            ("compute1", "br-tun", &["patch port patch-int → br-int"]),
            ("compute1", "vm1", &[&format!("ARP reply: 192.168.1.20 is-at {mac3}")]),
            ("compute1", "vm1", &["icmp echo-request 192.168.1.9 > 192.168.1.20"]),
            ("fabric", "underlay", &["VXLAN VNI"]),
            ("compute2", "vm3", &["delivered"]),
        ],
    );
    // vm3 was not asked: nothing on compute2 sees an ARP before the ping.
    let first_icmp = t.hops.iter().position(|h| h.host == "compute2").expect("compute2 is reached");
    assert_ne!(t.hops[first_icmp].packet.proto, "arp", "{}", show(&hops));
}

#[test]
fn the_arp_responder_answers_for_a_remote_vm_locally_with_no_broadcast_into_the_tunnels() {
    for profile in [Profile::Walkthrough, Profile::Current] {
        let (topo, plan) = lab(SEED_VXLAN_YAML, profile);
        check_arp_responder(&topo, &plan);
    }
}

/// Negative control: without the responder entry for vm3 the request is
/// flooded into the tunnels (table 22) and vm3 answers from compute2.
#[test]
fn without_the_arp_responder_entry_the_request_is_flooded_into_the_tunnels() {
    let (topo, mut plan) = lab(SEED_VXLAN_YAML, Profile::Walkthrough);
    without(&mut plan, "compute1", "br-tun", |f| f.table.0 == 21 && f.to_string().contains("arp_tpa=192.168.1.20"));
    let t = run(&topo, &plan, "vm1", "vm3");
    assert!(t.round_trip(), "still delivered: vm3 answers itself");
    let arp: Vec<(&Hop, Encap)> = tunnel_hops(all(&t)).into_iter().filter(|(h, ..)| h.packet.proto == "arp").map(|x| (x.0, x.1)).collect();
    let to: Vec<Ipv4Addr> = arp.iter().filter(|(h, _)| h.packet.eth_dst.to_string() == "ff:ff:ff:ff:ff:ff").map(|(_, e)| e.dst).collect();
    // Flooded to every VTEP with test1: compute2 and the network node.
    assert!(to.contains(&vtep(&topo, "compute2")) && to.contains(&vtep(&topo, "network")), "{to:?}");
    let caught = std::panic::catch_unwind(|| check_arp_responder(&topo, &plan));
    assert!(caught.is_err(), "the check must fail on this plan");
}

// ---------------------------------------------------------------------------
// The lazy twin
// ---------------------------------------------------------------------------

/// A lazy twin builds a tunnel's receiving host when a frame crosses to it,
/// and traces exactly as the full twin does.
#[test]
fn a_lazy_twin_crosses_tunnels_as_the_full_twin_does() {
    let (topo, plan) = lab(SEED_VXLAN_YAML, Profile::Walkthrough);
    let mut full = World::build(&topo, &plan);
    let mut lazy = World::lazy(Arc::new(topo.clone()), Profile::Walkthrough);
    warm_up(&mut full);
    warm_up(&mut lazy);
    for (from, to) in [("vm1", "vm3"), ("vm1", "vm5"), ("vm2", "ext1"), ("vm3", "169.254.169.254")] {
        let to = topo.resolve_address(to).unwrap();
        let req = TraceRequest { from: from.into(), to, l4: L4::Icmp { reply: false, id: 1 }, spoof_ip: None, spoof_mac: None };
        let a = trace(&mut full, &req).unwrap();
        let b = trace(&mut lazy, &req).unwrap();
        assert!(a.round_trip());
        assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap(), "{from} -> {to}");
    }
    // Cold (no warm-up): the first frame into a tunnel builds the receiving host.
    let mut cold = World::lazy(Arc::new(topo.clone()), Profile::Walkthrough);
    let req = TraceRequest {
        from: "vm1".into(),
        to: topo.resolve_address("vm5").unwrap(),
        l4: L4::Icmp { reply: false, id: 2 },
        spoof_ip: None,
        spoof_mac: None,
    };
    let t = trace(&mut cold, &req).unwrap();
    assert!(t.round_trip(), "{}", t.verdict);
}

// ---------------------------------------------------------------------------
// verify
// ---------------------------------------------------------------------------

fn verify(topo: &Topology, plan: &Plan) -> dvr_sim::verify::Report {
    dvr_sim::verify::verify(plan, &World::endpoints_of(topo, plan), &dvr_sim::verify::Options::default())
}

fn failed(r: &dvr_sim::verify::Report) -> Vec<&'static str> {
    r.checks.iter().filter(|c| !c.holds).map(|c| c.invariant).collect()
}

/// Every invariant holds on both VXLAN labs in both profiles: in tunnel mode
/// the current agent's gateway-ARP drop in br-tun table 22 is on the path
/// (in VLAN mode it is inert, Neutron's leak Q1).
#[test]
fn verify_holds_on_the_vxlan_labs_in_both_profiles() {
    for yaml in [SEED_VXLAN_YAML, SEED_MIXED_YAML] {
        let (topo, plan) = lab(yaml, Profile::Walkthrough);
        let r = verify(&topo, &plan);
        assert!(r.ok(), "{}", dvr_sim::verify::text(&r, false));
        assert!(r.matrix.iter().all(|c| c.expect && c.reached));
    }
    let (topo, plan) = lab(SEED_VXLAN_YAML, Profile::Current);
    let r = verify(&topo, &plan);
    assert!(r.ok(), "{}", dvr_sim::verify::text(&r, false));
}

/// verify catches a gateway MAC and a gateway ARP inside a tunnel, and
/// names the br-tun flow that is missing.
#[test]
fn verify_names_the_missing_br_tun_flows() {
    let (topo, mut plan) = lab(SEED_VXLAN_YAML, Profile::Walkthrough);
    let d1 = dvr_mac(&topo, "compute1");
    without(&mut plan, "compute1", "br-tun", |f| f.table.0 == 1 && f.to_string().contains(&format!("mod_dl_src:{d1}")));
    let r = verify(&topo, &plan);
    assert!(failed(&r).contains(&"no-gateway-mac-on-wire"), "{}", dvr_sim::verify::text(&r, false));
    let c = r.checks.iter().find(|c| c.invariant == "no-gateway-mac-on-wire").unwrap();
    assert!(c.violations[0].item.contains("compute1 br-tun table 1 (DVR_PROCESS)"), "{}", c.violations[0].item);

    let (topo, mut plan) = lab(SEED_VXLAN_YAML, Profile::Walkthrough);
    let gw: Ipv4Addr = "192.168.1.1".parse().unwrap();
    without(&mut plan, "compute1", "br-tun", |f| {
        f.matches.arp_tpa.is_some_and(|m| m.contains(gw)) && f.actions == [dvr_openflow::Action::Drop]
    });
    let r = verify(&topo, &plan);
    assert_eq!(failed(&r), ["gateway-arp-contained"], "{}", dvr_sim::verify::text(&r, false));
    let v = &r.checks.iter().find(|c| c.invariant == "gateway-arp-contained").unwrap().violations[0];
    assert!(v.what.contains("leaves compute1 on underlay (VXLAN VNI 1001)"), "{}", v.what);
    assert!(v.item.contains("compute1 br-tun table 1 (DVR_PROCESS) flow arp,arp_tpa=192.168.1.1 → drop"), "{}", v.item);
}
