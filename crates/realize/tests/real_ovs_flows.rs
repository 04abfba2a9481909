//! Every flow set the plan generates loads into a real Open vSwitch bridge
//! with `ovs-ofctl add-flows`, and reads back identical: the flow count
//! matches and the OpenFlow 1.3 dump (`set_field:…->vlan_vid`, `pop_vlan`,
//! …), read with our parser, is the same set of flows as planned.
//! (`ovs-ofctl diff-flows` cannot be used: it prints a file's actions in
//! OpenFlow 1.0 words and the switch's in 1.3 words, so every rewrite differs.)
//!
//! Needs root and Debian's openvswitch-switch (`.ci/run` installs it). The test is
//! `#[ignore]`d: `scripts/test` runs it when it can (root and the programs
//! present; always in CI), and then a missing prerequisite is a failure.

use dvr_openflow::{Flow, parse_flows};
use dvr_plan::Profile;
use dvr_realize::{OvsInstance, cmd};
use std::collections::BTreeSet;

fn prerequisites() -> Result<(), String> {
    cmd::prerequisites(&["ovs-vswitchd", "ovsdb-server", "ovsdb-tool", "ovs-vsctl", "ovs-ofctl", "ovs-appctl", "ip"])
}

/// A flow without provenance, comparable with what OVS dumps.
fn key(f: &Flow) -> String {
    Flow::new(f.table.0, f.priority, f.matches.clone(), f.actions.clone()).to_string()
}

#[test]
#[ignore = "needs root and Open vSwitch: scripts/test runs it when it can (always in CI)"]
fn every_planned_flow_set_loads_into_real_ovs_unchanged() {
    if let Err(why) = prerequisites() {
        panic!("the real-OVS flow test cannot run: {why}");
    }
    let dir = std::env::temp_dir().join(format!("dvr-ovs-flows-{}", std::process::id()));
    let ovs = OvsInstance::start(&format!("dvrtest-flows-{}", std::process::id()), &dir).expect("start OVS");
    let topo = dvr_model::seed();
    let mut checked_bridges = 0;
    let mut checked_flows = 0;
    for profile in Profile::ALL {
        let plan = dvr_plan::plan(&topo, profile).unwrap();
        for host in &plan.hosts {
            for b in &host.bridges {
                ovs.add_bridge(b).unwrap_or_else(|e| panic!("{} {}: {e}", host.host, b.name));
            }
            for b in &host.bridges {
                let text = dvr_plan::render::flows_text(b);
                ovs.ofctl(&["add-flows", &b.name, "-"], Some(&text)).unwrap_or_else(|e| panic!("{} {} add-flows: {e}", host.host, b.name));
                let dump = ovs.ofctl(&["--names", "dump-flows", &b.name], None).unwrap();
                let parsed = parse_flows(&dump).unwrap_or_else(|e| panic!("{} {}: cannot parse OVS dump: {e}\n{dump}", host.host, b.name));
                assert_eq!(parsed.len(), b.flows.len(), "{} {}: flow count", host.host, b.name);
                let planned: BTreeSet<String> = b.flows.iter().map(|f| key(f)).collect();
                let dumped: BTreeSet<String> = parsed.iter().map(key).collect();
                assert_eq!(planned, dumped, "{} {}: dump parsed back differs", host.host, b.name);
                checked_bridges += 1;
                checked_flows += b.flows.len();
            }
            for b in &host.bridges {
                ovs.del_bridge(&b.name).unwrap();
            }
        }
    }
    eprintln!("real OVS accepted {checked_flows} flows on {checked_bridges} bridges, identical on read-back");
    assert!(checked_bridges >= 18, "3 dataplane hosts x 3 bridges x 2 profiles");
}
