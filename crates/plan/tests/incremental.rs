//! Incremental planning equals full planning: over random sequences of
//! changes (instances booted and deleted, floating IPs associated and
//! disassociated, router interfaces added and removed, hosts removed), the plan kept up to date by replanning only the hosts
//! whose inputs changed is identical to planning everything from scratch.

use dvr_model::change::Change;
use dvr_model::spec::TopologySpec;
use dvr_plan::Profile;
use dvr_plan::incremental::Replanner;
use proptest::prelude::*;

/// The seed lab plus an idle compute node and a network no router joins yet.
fn base() -> TopologySpec {
    let yaml = dvr_model::SEED_YAML
        .replace(
            "\nnetworks:",
            "  - name: compute3\n    role: compute\n    bridge_mappings: {physnet1: br-vlan, extnet: br-ex}\n\nnetworks:",
        )
        .replace(
            "  - name: external\n",
            "  - name: test3\n    type: vlan\n    physical_network: physnet1\n    segmentation_id: 300\n    subnets:\n      - {name: test3-v4, cidr: 192.168.3.0/24}\n  - name: external\n",
        );
    dvr_model::parse_spec("base.yaml", &yaml).unwrap()
}

/// [`base`] with test1, test2 and test3 as VXLAN networks: l2population makes
/// a host's br-tun depend on the other hosts' ports on its networks.
fn base_vxlan() -> TopologySpec {
    let mut spec = base();
    for (i, n) in spec.networks.iter_mut().filter(|n| n.name.starts_with("test")).enumerate() {
        n.kind = dvr_model::spec::NetworkType::Vxlan;
        n.physical_network = None;
        n.segmentation_id = Some(1001 + i as u64);
    }
    spec
}

#[derive(Debug, Clone)]
enum Step {
    Add(usize, usize),
    Remove(usize),
    Fip(usize),
    Attach,
    Detach(usize),
    Unfip(usize),
    RemoveHost(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0usize..3, 0usize..3).prop_map(|(h, n)| Step::Add(h, n)),
        2 => (0usize..16).prop_map(Step::Remove),
        1 => (0usize..16).prop_map(Step::Fip),
        1 => Just(Step::Attach),
        1 => (0usize..3).prop_map(Step::Detach),
        1 => (0usize..16).prop_map(Step::Unfip),
        1 => (0usize..3).prop_map(Step::RemoveHost),
    ]
}

fn to_change(spec: &TopologySpec, s: &Step, serial: usize) -> Option<Change> {
    let hosts = ["compute1", "compute2", "compute3"];
    let nets = ["test1", "test2", "test3"];
    match s {
        Step::Add(h, n) => Some(Change::AddInstance { name: format!("new{serial}"), host: hosts[*h].into(), network: nets[*n].into() }),
        Step::Remove(i) => spec.instances.get(i % spec.instances.len().max(1)).map(|x| Change::RemoveInstance { name: x.name.clone() }),
        Step::Fip(i) => {
            spec.instances.get(i % spec.instances.len().max(1)).map(|x| Change::AssociateFloatingIp { ip: None, instance: x.name.clone() })
        }
        Step::Attach => Some(Change::AddRouterInterface { router: "router1".into(), subnet: "test3-v4".into() }),
        Step::Detach(i) => {
            let r = spec.routers.iter().find(|r| r.name == "router1")?;
            r.interfaces
                .get(i % r.interfaces.len().max(1))
                .map(|s| Change::RemoveRouterInterface { router: "router1".into(), subnet: s.clone() })
        }
        Step::Unfip(i) => {
            let fips: Vec<_> = spec.floating_ips.iter().filter(|f| f.instance.is_some()).filter_map(|f| f.ip).collect();
            fips.get(i % fips.len().max(1)).map(|&ip| Change::DisassociateFloatingIp { ip })
        }
        Step::RemoveHost(h) => Some(Change::RemoveHost { name: hosts[*h].into() }),
    }
}

fn json(p: &dvr_plan::Plan) -> String {
    serde_json::to_string(p).unwrap()
}

/// Each host's plan as JSON, by host name.
fn per_host(p: &dvr_plan::Plan) -> std::collections::BTreeMap<String, String> {
    p.hosts.iter().map(|h| (h.host.clone(), serde_json::to_string(h).unwrap())).collect()
}

proptest! {
    // A case whose every change is rejected tests nothing: it is discarded
    // (prop_assume), and the run fails if more than this many are.
    #![proptest_config(ProptestConfig { cases: 40, max_global_rejects: 40, ..ProptestConfig::default() })]

    #[test]
    fn incremental_equals_full(steps in proptest::collection::vec(step(), 1..8), profile in prop_oneof![Just(Profile::Walkthrough), Just(Profile::Current)], vxlan in any::<bool>()) {
        let mut spec = if vxlan { base_vxlan() } else { base() };
        let topo = dvr_model::build::build("base.yaml", &spec).unwrap();
        let mut r = Replanner::new(&topo, profile);
        let mut before = per_host(&dvr_plan::plan(&topo, profile).unwrap());
        let mut applied = 0;
        for (serial, s) in steps.iter().enumerate() {
            let Some(change) = to_change(&spec, s, serial) else { continue };
            let mut next = spec.clone();
            if change.apply(&mut next).is_err() {
                continue;
            }
            // Changes the model rejects (e.g. a floating IP for an instance no router serves) are skipped.
            let Ok(topo) = dvr_model::build::build("base.yaml", &next) else { continue };
            spec = next;
            let u = r.update(&topo);
            let full = dvr_plan::plan(&topo, profile).unwrap();
            prop_assert_eq!(json(r.plan()), json(&full), "after {:?}", change);
            // Which hosts really changed, from two full plans (not from the
            // replanner's own report): each was replanned, and the report says so.
            let after = per_host(&full);
            let changed: Vec<&String> = after.iter().filter(|(h, j)| before.get(*h) != Some(*j)).map(|(h, _)| h).collect();
            for h in &changed {
                prop_assert!(u.replanned.contains(h), "{} changed but was not replanned after {:?}", h, change);
            }
            let mut reported: Vec<&String> = u.changed.iter().collect();
            reported.sort();
            prop_assert_eq!(reported, changed, "the replanner's changed hosts after {:?}", change);
            let removed: Vec<&String> = before.keys().filter(|h| !after.contains_key(*h)).collect();
            prop_assert_eq!(u.removed.iter().collect::<Vec<_>>(), removed, "removed hosts after {:?}", change);
            before = after;
            applied += 1;
        }
        prop_assume!(applied > 0, "every change of this case was rejected");
    }
}

#[test]
fn booting_an_instance_replans_only_the_hosts_it_touches() {
    let mut spec = base();
    let topo = dvr_model::build::build("base.yaml", &spec).unwrap();
    let mut r = Replanner::new(&topo, Profile::Walkthrough);
    // A VM on test3 (no router): only its own host changes.
    Change::AddInstance { name: "lonely".into(), host: "compute3".into(), network: "test3".into() }.apply(&mut spec).unwrap();
    let u = r.update(&dvr_model::build::build("b", &spec).unwrap());
    assert_eq!(u.replanned, ["compute3"]);
    // A VM on test1 (router1) on compute2: its host and every host with a copy of router1 (permanent ARP).
    Change::AddInstance { name: "vm9".into(), host: "compute2".into(), network: "test1".into() }.apply(&mut spec).unwrap();
    let u = r.update(&dvr_model::build::build("b", &spec).unwrap());
    assert_eq!(u.replanned, ["network", "compute1", "compute2"]);
    assert_eq!(u.changed, ["network", "compute1", "compute2"]);
}

#[test]
fn booting_an_instance_on_vxlan_replans_the_hosts_sharing_its_network() {
    let mut spec = base_vxlan();
    let topo = dvr_model::build::build("base.yaml", &spec).unwrap();
    assert!(topo.networks.iter().any(|n| n.segment.vni().is_some()));
    let mut r = Replanner::new(&topo, Profile::Walkthrough);
    // A VM on test3 (no router) on compute3: its host, and the network node,
    // whose DHCP port on test3 now has a remote VTEP (flood, unicast and ARP
    // entries for the VM). compute1 and compute2 do not have test3: untouched.
    Change::AddInstance { name: "lonely".into(), host: "compute3".into(), network: "test3".into() }.apply(&mut spec).unwrap();
    let u = r.update(&dvr_model::build::build("b", &spec).unwrap());
    assert_eq!(u.replanned, ["network", "compute3"]);
    // A second one on compute1: compute1, compute3 and the network node now share test3's tunnels.
    Change::AddInstance { name: "peer".into(), host: "compute1".into(), network: "test3".into() }.apply(&mut spec).unwrap();
    let topo = dvr_model::build::build("b", &spec).unwrap();
    let u = r.update(&topo);
    assert!(u.changed.contains(&"compute3".to_string()), "compute3 learns the new peer by l2population: {:?}", u.changed);
    assert_eq!(json(r.plan()), json(&dvr_plan::plan(&topo, Profile::Walkthrough).unwrap()));
}
