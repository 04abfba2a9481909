//! The twin's verdicts against real pings, on a generated deployment that
//! has reachable and unreachable pairs (two routers, so instances behind
//! different routers cannot reach each other's fixed IPs). For a
//! deterministic sample of instance pairs and instance → external host,
//! `dvr_sim::reach` (request and reply delivered?) must equal what a real
//! ping through the lab says.
//!
//! Needs root, openvswitch-switch, iputils-ping (`.ci/run` installs them).
//! The test is `#[ignore]`d: `scripts/test` runs it when it can (always in
//! CI), and then a missing prerequisite fails it.

use dvr_model::alloc::SplitMix64;
use dvr_model::r#gen::{GenParams, generate};
use dvr_realize::{Lab, cmd};
use dvr_sim::{L4, TraceRequest, World};
use std::net::Ipv4Addr;

#[test]
#[ignore = "needs root and Open vSwitch: scripts/test runs it when it can (always in CI)"]
fn twin_verdicts_match_real_pings() {
    let need = ["ovs-vswitchd", "ovsdb-server", "ovs-vsctl", "ovs-ofctl", "ip", "ping", "ethtool", "iptables-legacy-restore"];
    if let Err(why) = cmd::prerequisites(&need) {
        panic!("the lab-vs-twin test cannot run: {why}");
    }
    let params =
        GenParams { hosts: 3, vms: 18, networks: 4, routers: 2, seed: 7, external_hosts: 1, floating_ips: 2, ..GenParams::default() };
    let topo = dvr_model::build::build("generated", &generate(&params)).unwrap();
    let plan = dvr_plan::plan(&topo, dvr_plan::Profile::Walkthrough).unwrap();
    let mut world = World::build(&topo, &plan);
    dvr_sim::warm_up(&mut world);

    let guard = dvr_realize::lab::TearDown(Lab::new(&format!("dvrv{}", std::process::id())));
    let lab = &guard.0;
    let _ = lab.down();
    lab.up(&topo, &plan, &mut |_| {}).unwrap_or_else(|e| panic!("lab up: {e}"));

    let vms: Vec<(String, Ipv4Addr)> = topo.instances.iter().map(|x| (x.name.clone(), topo.port(x.port).ip)).collect();
    let ext = topo.external_hosts[0].ip;
    let mut rng = SplitMix64::new(11);
    let mut pairs: Vec<(String, Ipv4Addr)> = (0..14)
        .map(|_| {
            let a = rng.below(vms.len());
            let b = (a + 1 + rng.below(vms.len() - 1)) % vms.len();
            (vms[a].0.clone(), vms[b].1)
        })
        .collect();
    pairs.extend(vms.iter().take(4).map(|(n, _)| (n.clone(), ext)));

    let (mut agree, mut reachable) = (0, 0);
    let mut disagreements = Vec::new();
    for (from, to) in &pairs {
        let req = TraceRequest { from: from.clone(), to: *to, l4: L4::Icmp { reply: false, id: 9 }, spoof_ip: None, spoof_mac: None };
        let t = dvr_sim::reach(&mut world, &req).unwrap();
        let twin = t.verdict.is_delivered() && t.reply.as_ref().is_some_and(|r| r.verdict.is_delivered());
        let real = lab.ping(from, *to, 2).unwrap().received > 0;
        if twin == real {
            agree += 1;
        } else {
            disagreements.push(format!("{from} -> {to}: twin {twin}, real {real} ({:?})", t.verdict.drop_reason()));
        }
        reachable += usize::from(real);
    }
    lab.down().unwrap();
    eprintln!("lab vs twin: {agree}/{} pairs agree ({reachable} reachable)", pairs.len());
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    assert!(reachable > 0 && reachable < pairs.len(), "the sample has reachable and unreachable pairs");
    assert!(lab.leftovers().is_empty());
}
