//! A router interface's permanent-ARP list is built once and shared by every
//! host with a copy of the router, through the planner's cache
//! (`FlowCache`). The cache outlives topology changes (the incremental
//! planner keeps it), so a held list must never be handed out once the
//! subnet's ports changed: these tests plan with a cache filled before a
//! port was added or removed and compare with a plan from a fresh cache.

use dvr_model::{HostIx, Topology};
use dvr_plan::ctx::FlowCache;
use dvr_plan::{HostPlan, Profile, plan_host, plan_host_shared};

fn topo(yaml: &str) -> Topology {
    dvr_model::load_str("arpshare.yaml", yaml).unwrap()
}

fn host(t: &Topology, name: &str) -> HostIx {
    t.host_ix(name).unwrap()
}

fn qrouter(p: &HostPlan) -> &dvr_plan::Namespace {
    p.namespaces.iter().find(|n| n.name.starts_with("qrouter-")).expect("a router copy")
}

fn json(p: &HostPlan) -> String {
    serde_json::to_string(p).unwrap()
}

#[test]
fn copies_of_a_router_share_its_arp_entries() {
    let t = topo(dvr_model::SEED_YAML);
    let cache = FlowCache::default();
    let a = plan_host_shared(&t, host(&t, "compute1"), Profile::Walkthrough, &cache);
    let b = plan_host_shared(&t, host(&t, "compute2"), Profile::Walkthrough, &cache);
    let (na, nb) = (qrouter(&a).neighbours.iter().next().unwrap(), qrouter(&b).neighbours.iter().next().unwrap());
    assert!(std::ptr::eq(na, nb), "one entry in memory for both copies");
    // Planned without sharing: equal entries, separate memory.
    let c = plan_host(&t, host(&t, "compute2"), Profile::Walkthrough);
    assert!(!std::ptr::eq(na, qrouter(&c).neighbours.iter().next().unwrap()));
    assert!(json(&b) == json(&c));
}

#[test]
fn a_held_arp_list_is_not_reused_after_its_subnet_changed() {
    let vm5 = "  - {name: vm5, host: compute2, network: test2, ip: 192.168.2.20}\n";
    let added = dvr_model::SEED_YAML.replace(vm5, &format!("{vm5}  - {{name: vm6, host: compute2, network: test1, ip: 192.168.1.30}}\n"));
    // vm3 gone; the demo paths (some name it) are the file's last section.
    let lab = dvr_model::SEED_YAML.split("\npaths:").next().unwrap();
    let removed = lab.replace("  - {name: vm3, host: compute2, network: test1, ip: 192.168.1.20}\n", "");
    // The MAC of vm2's port moves when it is declared after vm3 (MACs are
    // handed out in order): same addresses, other MACs.
    let vm2 = "  - {name: vm2, host: compute1, network: test1, ip: 192.168.1.10}\n";
    let moved = dvr_model::SEED_YAML.replace(vm2, "").replace(vm5, &format!("{vm5}{vm2}"));
    let before = topo(dvr_model::SEED_YAML);
    for (label, yaml, more) in [("added", &added, 1), ("removed", &removed, -1), ("reordered", &moved, 0)] {
        let after = topo(yaml);
        let cache = FlowCache::default();
        let held = plan_host_shared(&before, host(&before, "compute1"), Profile::Walkthrough, &cache);
        let ix = host(&after, "compute1");
        let reused = plan_host_shared(&after, ix, Profile::Walkthrough, &cache);
        let fresh = plan_host(&after, ix, Profile::Walkthrough);
        // Positive control: the change shows in the router's namespace.
        let n = |p: &HostPlan| qrouter(p).neighbours.len() as i64;
        assert_eq!(n(&fresh) - n(&held), more, "{label}");
        assert!(json(&held) != json(&fresh), "{label}: the plan changed");
        assert!(json(&reused) == json(&fresh), "{label}: a stale ARP list was reused");
    }
}
