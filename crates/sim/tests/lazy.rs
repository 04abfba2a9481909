//! A lazy twin ([`World::lazy`]) plans hosts only when a frame reaches them,
//! and its traces are exactly those of the fully built twin.

use dvr_model::r#gen::{GenParams, generate_yaml};
use dvr_plan::Profile;
use dvr_sim::{L4, TraceRequest, World, trace, warm_up};
use std::sync::Arc;

fn topo(p: &GenParams) -> dvr_model::Topology {
    dvr_model::load_str("gen.yaml", &generate_yaml(p)).expect("generated topology is valid")
}

/// A generated deployment with every tenant network on VXLAN (VNIs from
/// 5000): l2population's tunnels instead of the physical switch.
fn topo_vxlan(p: &GenParams) -> dvr_model::Topology {
    let mut spec = dvr_model::parse_spec("gen.yaml", &generate_yaml(p)).unwrap();
    for (i, n) in spec.networks.iter_mut().filter(|n| !n.external).enumerate() {
        n.kind = dvr_model::spec::NetworkType::Vxlan;
        n.physical_network = None;
        n.segmentation_id = Some(5000 + i as u64);
    }
    dvr_model::build::build("gen-vxlan.yaml", &spec).expect("the VXLAN variant is valid")
}

/// Pairs to trace: instance → instance (same and other networks), instance →
/// external host and floating IP, external host → floating IP.
fn requests(t: &dvr_model::Topology) -> Vec<TraceRequest> {
    let n = t.instances.len();
    let mut out = Vec::new();
    let icmp = L4::Icmp { reply: false, id: 1 };
    for k in [0, 1, 3, 7, 11, 17, 29, 41] {
        let a = &t.instances[k % n];
        let b = &t.instances[(k * 13 + 5) % n];
        out.push(TraceRequest { from: a.name.clone(), to: t.port(b.port).ip, l4: icmp, spoof_ip: None, spoof_mac: None });
    }
    for e in &t.external_hosts {
        out.push(TraceRequest { from: t.instances[2 % n].name.clone(), to: e.ip, l4: icmp, spoof_ip: None, spoof_mac: None });
    }
    for f in t.floating_ips.iter().take(3) {
        let e = &t.external_hosts[0];
        out.push(TraceRequest { from: e.name.clone(), to: f.ip, l4: icmp, spoof_ip: None, spoof_mac: None });
    }
    out
}

/// Trace every request in sequence (state carries over, as in a session) on
/// the full twin and on a lazy twin; the traces must be equal.
fn compare(p: &GenParams, warm: bool) -> (usize, usize) {
    let (built, all, _) = compare_on(topo(p), warm);
    (built, all)
}

/// Also returns how many hops of the traces crossed a VXLAN tunnel.
fn compare_on(t: dvr_model::Topology, warm: bool) -> (usize, usize, usize) {
    let plan = dvr_plan::plan(&t, Profile::Walkthrough).unwrap();
    let mut full = World::build(&t, &plan);
    let reqs = requests(&t);
    let mut lazy = World::lazy(Arc::new(t), Profile::Walkthrough);
    assert_eq!(lazy.built_hosts(), 0, "a lazy twin builds nothing up front");
    if warm {
        warm_up(&mut full);
        warm_up(&mut lazy);
    }
    let mut delivered = 0;
    let mut tunnelled = 0;
    for r in &reqs {
        let a = trace(&mut full, r).unwrap();
        let b = trace(&mut lazy, r).unwrap();
        assert_eq!(
            serde_json::to_string_pretty(&a).unwrap(),
            serde_json::to_string_pretty(&b).unwrap(),
            "{} → {}: the lazy twin's trace differs",
            r.from,
            r.to
        );
        delivered += usize::from(a.round_trip());
        tunnelled += a.hops.iter().filter(|h| matches!(h.step, dvr_sim::Step::Tunnel { .. })).count();
    }
    // Generated routers are not joined, so some paths are meant to drop; both
    // outcomes must be among the compared traces.
    assert!(delivered >= 3 && delivered < reqs.len(), "delivered {delivered} of {}", reqs.len());
    (lazy.built_hosts(), full.built_hosts(), tunnelled)
}

#[test]
fn lazy_equals_full_beyond_full_warm_up() {
    // 70 compute hosts: more than FULL_WARM_UP_HOSTS, so warm-up is contained.
    compare(&GenParams::scale(70).with_seed(3), true);
}

#[test]
fn lazy_equals_full_cold() {
    compare(&GenParams::scale(70).with_seed(5), false);
}

/// Over VXLAN: a tunnel's receiving host is built when a frame crosses to
/// it; beyond the full warm-up size (contained: nothing crosses a tunnel
/// during warm-up) and on a small deployment (full warm-up floods the tunnels).
#[test]
fn lazy_equals_full_over_vxlan() {
    let t = topo_vxlan(&GenParams::scale(70).with_seed(3));
    assert!(t.networks.iter().any(|n| n.segment.vni().is_some()));
    let (_, _, tunnelled) = compare_on(t, true);
    assert!(tunnelled > 0, "some traced frames cross a tunnel");
    let (built, all, tunnelled) = compare_on(topo_vxlan(&GenParams::default().with_seed(1)), true);
    assert_eq!(built, all);
    assert!(tunnelled > 0, "some traced frames cross a tunnel");
}

#[test]
fn lazy_equals_full_small_deployment() {
    // Full warm-up: the lazy twin builds every host, then traces the same.
    let (built, all) = compare(&GenParams::default().with_seed(1), true);
    assert_eq!(built, all);
}

#[test]
fn one_trace_builds_only_the_hosts_it_reaches() {
    let t = topo(&GenParams::scale(100).with_seed(7));
    let from = t.instances[5].clone();
    // Another host and network behind the same router: routed on the sender's
    // host, then carried host to host with its DVR MAC (a same-network peer
    // would be ARPed for by broadcast, which reaches every host on the
    // physical network, so the lazy twin builds them all, as the full twin
    // processes them all).
    let router = |x: &dvr_model::Instance| t.routers_on_subnet(t.port(x.port).subnet).next();
    let to = t
        .instances
        .iter()
        .find(|x| x.network != from.network && x.host != from.host && router(x).is_some() && router(x) == router(&from))
        .expect("a peer behind the same router on another host")
        .clone();
    let hosts = [t.host(from.host).name.clone(), t.host(to.host).name.clone()];
    let to_ip = t.port(to.port).ip;
    let mut w = World::lazy(Arc::new(t), Profile::Walkthrough);
    warm_up(&mut w);
    assert_eq!(w.built_hosts(), 0, "warm-up of a large lazy twin builds no host");
    let r =
        trace(&mut w, &TraceRequest { from: from.name, to: to_ip, l4: L4::Icmp { reply: false, id: 1 }, spoof_ip: None, spoof_mac: None })
            .unwrap();
    assert!(r.round_trip(), "{:?}", r.verdict);
    let built: Vec<&str> = w.hosts.iter().filter(|h| !h.bridges.is_empty()).map(|h| h.name.as_str()).collect();
    assert!(built.len() <= 3, "built {built:?}");
    for h in &hosts {
        assert!(built.contains(&h.as_str()), "{h} carries the packet and must be built: {built:?}");
    }
}

/// Beyond the flood limit a broadcast builds only the hosts that carry its
/// VLAN; the others would drop it at br-int table 0. The verdicts are the
/// fully built twin's, and the trace says how many hosts were passed over.
/// Control: under the limit the same broadcast builds every host on the
/// physical network.
#[test]
fn beyond_the_flood_limit_a_broadcast_builds_only_hosts_carrying_its_vlan() {
    let t = topo(&GenParams::scale(70).with_seed(3));
    let from = t.instances[5].clone();
    let to = t.instances.iter().find(|x| x.network == from.network && x.host != from.host).expect("a same-network peer").clone();
    let carrying = t.hosts.iter().filter(|h| h.local_vlans.iter().any(|(n, _)| *n == from.network)).count();
    let req =
        TraceRequest { from: from.name, to: t.port(to.port).ip, l4: L4::Icmp { reply: false, id: 1 }, spoof_ip: None, spoof_mac: None };
    let plan = dvr_plan::plan(&t, Profile::Walkthrough).unwrap();
    let mut full = World::build(&t, &plan);
    warm_up(&mut full);
    let want = trace(&mut full, &req).unwrap();
    assert!(want.round_trip(), "{:?}", want.verdict);
    let t = Arc::new(t);

    let mut limited = World::lazy(t.clone(), Profile::Walkthrough);
    limited.set_flood_limit(10);
    warm_up(&mut limited);
    let got = trace(&mut limited, &req).unwrap();
    assert_eq!(got.verdict, want.verdict);
    assert_eq!(got.reply.as_ref().map(|r| &r.verdict), want.reply.as_ref().map(|r| &r.verdict));
    assert!(got.notes.iter().any(|n| n.contains("carry no network with VLAN")), "{:?}", got.notes);
    assert!(limited.built_hosts() <= carrying, "built {} hosts, {carrying} carry the network", limited.built_hosts());

    let mut unlimited = World::lazy(t, Profile::Walkthrough);
    warm_up(&mut unlimited);
    let all = trace(&mut unlimited, &req).unwrap();
    assert!(all.notes.is_empty(), "{:?}", all.notes);
    assert!(unlimited.built_hosts() > carrying, "the flood builds every host on the wire: {}", unlimited.built_hosts());
}
