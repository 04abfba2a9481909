//! The live model edits a topology in place to exactly what a full build
//! gives: over random sequences of every change kind (instances booted and
//! deleted, floating IPs associated and disassociated, router interfaces
//! added and removed, hosts added and removed), the topology after
//! `Live::apply` equals — every object, allocation and index — a build of the
//! pinned file with the same change applied, and both accept or reject the
//! same changes.

use dvr_model::change::Change;
use dvr_model::live::{Live, pinned_spec};
use dvr_model::spec::TopologySpec;
use dvr_model::{Topology, build::build};
use proptest::prelude::*;

/// The seed lab plus an idle compute node, a network no router joins yet
/// and a legacy router with a gateway and no interface yet.
fn base() -> TopologySpec {
    let yaml = dvr_model::SEED_YAML
        .replace(
            "    external_gateway: external\n",
            "    external_gateway: external\n  - name: router2\n    distributed: false\n    interfaces: []\n    external_gateway: external\n",
        )
        .replace(
            "\nnetworks:",
            "  - name: compute3\n    role: compute\n    bridge_mappings: {physnet1: br-vlan, extnet: br-ex}\n\nnetworks:",
        )
        .replace(
            "  - name: external\n",
            "  - name: test3\n    type: vlan\n    physical_network: physnet1\n    segmentation_id: 300\n    subnets:\n      - {name: test3-v4, cidr: 192.168.3.0/28}\n  - name: external\n",
        );
    dvr_model::parse_spec("base.yaml", &yaml).unwrap()
}

/// Everything about a topology: its objects (JSON, indices included) and its index.
fn same(a: &Topology, b: &Topology) -> Result<(), String> {
    let (ja, jb) = (serde_json::to_string_pretty(a).unwrap(), serde_json::to_string_pretty(b).unwrap());
    if ja != jb {
        let line = ja.lines().zip(jb.lines()).position(|(x, y)| x != y).unwrap_or(0);
        let ctx = |j: &str| j.lines().skip(line.saturating_sub(8)).take(12).collect::<Vec<_>>().join("\n");
        return Err(format!("objects differ at line {line}:\n--- in place\n{}\n--- rebuilt\n{}", ctx(&ja), ctx(&jb)));
    }
    if a.index != b.index {
        return Err(format!("indices differ:\n{:?}\n{:?}", a.index, b.index));
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Step {
    Add(usize, usize),
    Remove(usize),
    Fip(usize, bool),
    Unfip(usize),
    Attach(usize),
    Detach(usize, usize),
    AddHost,
    RemoveHost(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0usize..4, 0usize..3).prop_map(|(h, n)| Step::Add(h, n)),
        3 => (0usize..32).prop_map(Step::Remove),
        2 => (0usize..32, any::<bool>()).prop_map(|(i, explicit)| Step::Fip(i, explicit)),
        2 => (0usize..16).prop_map(Step::Unfip),
        2 => (0usize..4).prop_map(Step::Attach),
        2 => (0usize..2, 0usize..3).prop_map(|(r, i)| Step::Detach(r, i)),
        1 => Just(Step::AddHost),
        1 => (0usize..5).prop_map(Step::RemoveHost),
    ]
}

fn to_change(t: &Topology, s: &Step, serial: usize) -> Option<Change> {
    let hosts: Vec<&str> = t.hosts.iter().filter(|h| h.role == dvr_model::Role::Compute).map(|h| h.name.as_str()).collect();
    let nets = ["test1", "test2", "test3"];
    let pick = |n: usize, i: usize| if n == 0 { None } else { Some(i % n) };
    Some(match s {
        Step::Add(h, n) => Change::AddInstance {
            // Every few, a name already in use: both sides must refuse it.
            name: if serial % 7 == 6 { "vm1".into() } else { format!("new{serial}") },
            host: hosts.get(h % hosts.len().max(1)).map(|s| s.to_string()).unwrap_or_else(|| "compute1".into()),
            network: nets[*n].into(),
        },
        Step::Remove(i) => Change::RemoveInstance { name: t.instances[pick(t.instances.len(), *i)?].name.clone() },
        Step::Fip(i, explicit) => Change::AssociateFloatingIp {
            ip: explicit.then(|| std::net::Ipv4Addr::new(10, 100, 0, 200 + (*i as u8 % 8))),
            instance: t.instances[pick(t.instances.len(), *i)?].name.clone(),
        },
        Step::Unfip(i) => {
            let fips: Vec<_> = t.floating_ips.iter().filter(|f| f.association.is_some()).map(|f| f.ip).collect();
            Change::DisassociateFloatingIp { ip: fips[pick(fips.len(), *i)?] }
        }
        // router1 is distributed, router2 legacy; test2-v4 starts on router1.
        Step::Attach(k) => {
            Change::AddRouterInterface { router: ["router1", "router2"][k / 2].into(), subnet: ["test3-v4", "test2-v4"][k % 2].into() }
        }
        Step::Detach(r, i) => {
            let name = ["router1", "router2"][*r];
            let r = t.routers.iter().find(|r| r.name == name)?;
            let s = r.interfaces[pick(r.interfaces.len(), *i)?];
            Change::RemoveRouterInterface { router: name.into(), subnet: t.subnets[s.0].name.clone() }
        }
        Step::AddHost => Change::AddHost { name: format!("compute{}", 10 + serial), like: None },
        Step::RemoveHost(h) => Change::RemoveHost { name: t.hosts[pick(t.hosts.len(), *h)?].name.clone() },
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, max_global_rejects: 64, ..ProptestConfig::default() })]

    #[test]
    fn in_place_equals_rebuild(steps in proptest::collection::vec(step(), 1..12)) {
        let mut live = Live::build("base.yaml", &base()).unwrap();
        let (mut applied, mut in_place) = (0, 0);
        for (serial, s) in steps.iter().enumerate() {
            let Some(change) = to_change(live.topology(), s, serial) else { continue };
            // The file as Live keeps it (every change so far applied), pinned;
            // every few steps the one written from the topology alone instead.
            let mut spec = if serial % 3 == 2 { pinned_spec(live.topology()) } else { live.pinned_spec() };
            let rebuilt = change.apply(&mut spec).map_err(|e| e.to_string()).and_then(|()| build("base.yaml", &spec).map_err(|e| e.to_string()));
            let before = live.clone();
            let got = live.apply(&change);
            match (&got, &rebuilt) {
                (Ok(a), Ok(t)) => {
                    if let Err(e) = same(live.topology(), t) {
                        prop_assert!(false, "after {:?}: {}", change, e);
                    }
                    applied += 1;
                    in_place += usize::from(!a.rebuilt);
                }
                (Err(_), Err(_)) => {
                    // A refused change leaves the topology as it was.
                    prop_assert!(same(live.topology(), before.topology()).is_ok(), "a refused {:?} changed the topology", change);
                }
                (Ok(_), Err(e)) => prop_assert!(false, "{:?} applied in place, but the rebuild refuses it: {}", change, e),
                (Err(e), Ok(_)) => prop_assert!(false, "{:?} refused in place ({}), but the rebuild accepts it", change, e),
            }
        }
        // A case where nothing applied, or nothing in place, proves nothing about Live.
        prop_assume!(applied > 0 && in_place > 0, "no change of this case was applied in place");
    }
}

/// The pinned file builds back to the same topology (the base of the
/// property above), whether written from the topology alone or over the file
/// it was built from (which keeps the file's own keys, e.g. its paths).
#[test]
fn pinned_spec_builds_back_to_the_same_topology() {
    let live = Live::build("s", &dvr_model::parse_spec("s", dvr_model::SEED_YAML).unwrap()).unwrap();
    let kept = live.pinned_spec();
    assert!(!kept.paths.is_empty(), "the seed lab's paths are kept");
    same(live.topology(), &build("s", &kept).unwrap()).unwrap();
    let g = dvr_model::r#gen::generate(&dvr_model::r#gen::GenParams { hosts: 30, seed: 5, ..Default::default() });
    for (label, spec) in [
        ("seed", dvr_model::parse_spec("s", dvr_model::SEED_YAML).unwrap()),
        ("example", dvr_model::parse_spec("e", dvr_model::EXAMPLE_YAML).unwrap()),
        ("gen", g),
    ] {
        let t = build(label, &spec).unwrap();
        let back = build(label, &pinned_spec(&t)).unwrap();
        same(&t, &back).unwrap_or_else(|e| panic!("{label}: {e}"));
    }
}

/// Positive control for `same`: a topology with one address changed is not the same.
#[test]
fn a_changed_allocation_is_told_apart() {
    let t = build("s", &dvr_model::parse_spec("s", dvr_model::SEED_YAML).unwrap()).unwrap();
    let mut other = t.clone();
    other.ports[3].ip = std::net::Ipv4Addr::new(192, 168, 1, 222);
    assert!(same(&t, &other).is_err());
    let mut other = t.clone();
    other.index.host_ports[2].pop();
    assert!(same(&t, &other).is_err());
}

#[test]
fn an_instance_change_touches_only_its_hosts() {
    let mut live = Live::new(build("b", &base()).unwrap());
    let a = live.apply(&Change::AddInstance { name: "lonely".into(), host: "compute3".into(), network: "test3".into() }).unwrap();
    assert!(!a.rebuilt);
    assert_eq!(a.hosts.iter().collect::<Vec<_>>(), ["compute3"]);
    assert!(a.routers.is_empty(), "no router on test3");
    let a = live.apply(&Change::RemoveInstance { name: "lonely".into() }).unwrap();
    assert_eq!(a.hosts.iter().collect::<Vec<_>>(), ["compute3"]);
    // On a routed network its host already carries: only its host's br-int,
    // and the copies of router1 (their permanent ARP).
    let a = live.apply(&Change::AddInstance { name: "vm9".into(), host: "compute2".into(), network: "test1".into() }).unwrap();
    assert!(a.hosts.is_empty());
    assert_eq!(a.int_bridges.iter().collect::<Vec<_>>(), ["compute2"]);
    assert_eq!(a.routers.iter().collect::<Vec<_>>(), ["router1"]);
}

/// On a generated deployment (many routers, networks and floating IPs), a
/// long random run of instance, floating-IP and router-interface changes made in place equals
/// the rebuild of the pinned file after every step.
#[test]
fn generated_deployment_in_place_equals_rebuild() {
    let mut spec = dvr_model::r#gen::generate(&dvr_model::r#gen::GenParams::scale(12).with_seed(7));
    // Networks no router has yet (the generated ones all have one, and a
    // floating IP behind each: detaching them is refused).
    for i in 0..3 {
        spec.networks.push(dvr_model::spec::NetworkSpec {
            id: None,
            name: format!("free{i}"),
            kind: dvr_model::spec::NetworkType::Vlan,
            physical_network: Some("physnet1".into()),
            segmentation_id: None,
            external: false,
            subnets: vec![dvr_model::spec::SubnetSpec {
                name: format!("free{i}-v4"),
                cidr: format!("198.18.{i}.0/24"),
                ..Default::default()
            }],
        });
    }
    let mut live = Live::build("g", &spec).unwrap();
    let mut rng = dvr_model::alloc::SplitMix64::new(7);
    let (mut applied, mut refused, mut interfaces) = (0, 0, 0);
    for serial in 0..60 {
        let t = live.topology();
        let computes: Vec<&str> = t.hosts.iter().filter(|h| h.role == dvr_model::Role::Compute).map(|h| h.name.as_str()).collect();
        let tenant: Vec<&str> = t.networks.iter().filter(|n| !n.external).map(|n| n.name.as_str()).collect();
        let change = match rng.below(6) {
            4 => {
                // Detach an interface (refused while a floating IP needs it).
                let routed: Vec<_> = t.routers.iter().filter(|r| !r.interfaces.is_empty()).collect();
                let r = routed[rng.below(routed.len())];
                let s = r.interfaces[rng.below(r.interfaces.len())];
                Change::RemoveRouterInterface { router: r.name.clone(), subnet: t.subnets[s.0].name.clone() }
            }
            5 => {
                // Attach a subnet no router has to any router.
                let free: Vec<_> = (0..t.subnets.len())
                    .filter(|&s| {
                        !t.networks[t.subnets[s].network.0].external && t.routers_on_subnet(dvr_model::SubnetIx(s)).next().is_none()
                    })
                    .collect();
                if free.is_empty() {
                    continue;
                }
                let s = &t.subnets[free[rng.below(free.len())]].name;
                Change::AddRouterInterface { router: t.routers[rng.below(t.routers.len())].name.clone(), subnet: s.clone() }
            }
            0 => Change::AddInstance {
                name: format!("g{serial}"),
                host: computes[rng.below(computes.len())].into(),
                network: tenant[rng.below(tenant.len())].into(),
            },
            1 => Change::RemoveInstance { name: t.instances[rng.below(t.instances.len())].name.clone() },
            2 => Change::AssociateFloatingIp { ip: None, instance: t.instances[rng.below(t.instances.len())].name.clone() },
            _ => match t.floating_ips.iter().filter(|f| f.association.is_some()).map(|f| f.ip).collect::<Vec<_>>() {
                v if v.is_empty() => continue,
                v => Change::DisassociateFloatingIp { ip: v[rng.below(v.len())] },
            },
        };
        let mut next = live.pinned_spec();
        let rebuilt = change.apply(&mut next).ok().and_then(|()| build("g", &next).ok());
        match (live.apply(&change), rebuilt) {
            (Ok(a), Some(t)) => {
                assert!(!a.rebuilt);
                same(live.topology(), &t).unwrap_or_else(|e| panic!("after {change:?}: {e}"));
                applied += 1;
                interfaces += usize::from(matches!(change, Change::AddRouterInterface { .. } | Change::RemoveRouterInterface { .. }));
            }
            (Err(_), None) => refused += 1,
            (got, rebuilt) => {
                panic!("{change:?}: in place {:?}, rebuild {}", got.map(|_| ()), if rebuilt.is_some() { "ok" } else { "refused" })
            }
        }
    }
    assert!(applied >= 30, "only {applied} changes applied ({refused} refused)");
    assert!(interfaces >= 4, "only {interfaces} router interfaces attached or detached");
}

#[test]
fn a_router_interface_touches_only_the_hosts_of_its_router() {
    use dvr_model::live::NsRef;
    let mut live = Live::new(build("b", &base()).unwrap());
    let attach = Change::AddRouterInterface { router: "router1".into(), subnet: "test3-v4".into() };
    let a = live.apply(&attach).unwrap();
    assert!(!a.rebuilt);
    // No port on test3 yet: router1's copies stay where they are; each gets
    // its bridges and qrouter- namespace replanned, the network node its
    // snat- and qdhcp- namespaces too.
    assert!(a.hosts.is_empty(), "{a:?}");
    assert_eq!(a.bridges.iter().collect::<Vec<_>>(), ["compute1", "compute2", "network"]);
    let ns: Vec<(&str, NsRef)> = a.namespaces.iter().map(|(h, n)| (h.as_str(), n.clone())).collect();
    assert!(ns.contains(&("network", NsRef::Snat("router1".into()))), "{ns:?}");
    assert!(ns.contains(&("network", NsRef::Qdhcp("test3".into()))), "{ns:?}");
    assert!(ns.contains(&("compute1", NsRef::Qrouter("router1".into()))), "{ns:?}");
    assert!(!ns.iter().any(|(h, _)| *h == "compute3"), "compute3 has no copy of router1");
    // An instance on test3 on compute3 brings a copy of router1 there.
    live.apply(&Change::AddInstance { name: "v3".into(), host: "compute3".into(), network: "test3".into() }).unwrap();
    let detach = Change::RemoveRouterInterface { router: "router1".into(), subnet: "test3-v4".into() };
    let a = live.apply(&detach).unwrap();
    assert_eq!(a.hosts.iter().collect::<Vec<_>>(), ["compute3"], "compute3 loses its copy: replanned whole");
    let a = live.apply(&attach).unwrap();
    assert_eq!(a.hosts.iter().collect::<Vec<_>>(), ["compute3"]);
    let t = live.topology();
    let r1 = t.routers.iter().find(|r| r.name == "router1").unwrap();
    assert!(r1.hosts.contains(&t.host_ix("compute3").unwrap()));
    // Refused like the build refuses: attached twice, to a second router, an external subnet.
    let ext = t.subnets.iter().find(|s| t.networks[s.network.0].external).unwrap().name.clone();
    assert!(live.apply(&attach).is_err());
    assert!(live.apply(&Change::AddRouterInterface { router: "router2".into(), subnet: "test3-v4".into() }).is_err());
    assert!(live.apply(&Change::AddRouterInterface { router: "router2".into(), subnet: ext }).is_err());
}

/// Hosts join and leave in place: an empty compute node added (VLAN and
/// VXLAN deployments: its DVR MAC and tunnel endpoint are what the build of
/// the pinned file hands out) and removed again equals the rebuild after
/// each step; a host that still carries instances is rebuilt, and says so.
#[test]
fn hosts_join_and_leave_in_place() {
    use dvr_model::r#gen::{GenParams, TenantType, generate};
    let vxlan = generate(&GenParams { tenant_type: TenantType::Vxlan, ..GenParams::scale(6).with_seed(3) });
    let vlan = generate(&GenParams::scale(6).with_seed(3));
    for (label, spec) in [("vlan", vlan), ("vxlan", vxlan), ("base", base())] {
        let mut live = Live::build(label, &spec).unwrap();
        let step = |live: &mut Live, change: Change| {
            let mut next = live.pinned_spec();
            change.apply(&mut next).unwrap();
            let t = build(label, &next).unwrap_or_else(|e| panic!("{label}: {change:?}: rebuild refused: {e}"));
            let a = live.apply(&change).unwrap();
            same(live.topology(), &t).unwrap_or_else(|e| panic!("{label}: after {change:?}: {e}"));
            a
        };
        for name in ["joiner1", "joiner2"] {
            let a = step(&mut live, Change::AddHost { name: name.into(), like: None });
            assert!(!a.rebuilt, "{label}: adding {name}");
            let ev = a.host.expect("a host event");
            assert!(ev.added && ev.name == name && ev.at.0 == live.topology().hosts.len() - 1);
            assert_eq!(a.hosts.iter().collect::<Vec<_>>(), [name]);
            assert_eq!(live.topology().host(ev.at).tunnel_ip.is_some(), label == "vxlan", "{label}: tunnel endpoint of {name}");
        }
        // The first joiner leaves (the second is renumbered), then the second.
        for name in ["joiner1", "joiner2"] {
            let at = live.topology().host_ix(name).unwrap();
            let a = step(&mut live, Change::RemoveHost { name: name.into() });
            assert!(!a.rebuilt, "{label}: removing {name}");
            assert_eq!(a.host.map(|e| (e.at, e.added)), Some((at, false)));
        }
        // A host with instances on it is removed by rebuilding.
        let busy = live.topology().instances[0].host;
        let name = live.topology().host(busy).name.clone();
        let a = step(&mut live, Change::RemoveHost { name });
        assert!(a.rebuilt, "{label}: a busy host is rebuilt");
    }
    // A refused join changes nothing: a name in use, a model host that is not there.
    let mut live = Live::build("base", &base()).unwrap();
    let before = serde_json::to_string(live.topology()).unwrap();
    assert!(live.apply(&Change::AddHost { name: "compute1".into(), like: None }).is_err());
    assert!(live.apply(&Change::AddHost { name: "new".into(), like: Some("nowhere".into()) }).is_err());
    assert_eq!(serde_json::to_string(live.topology()).unwrap(), before);
}

/// A host described by a control plane (its id and DVR MAC given, as `dvr
/// server` registers an agent) joins in place, equal to the rebuild of the
/// file with it; one that clashes is refused and changes nothing.
#[test]
fn a_described_host_joins_in_place() {
    use dvr_model::r#gen::{GenParams, TenantType, generate};
    let vxlan = generate(&GenParams { tenant_type: TenantType::Vxlan, ..GenParams::scale(4).with_seed(1) });
    for (label, spec) in [("base", base()), ("vxlan", vxlan)] {
        let mut live = Live::build(label, &spec).unwrap();
        let model = live.pinned_spec().hosts.into_iter().find(|h| h.role == dvr_model::spec::Role::Compute).unwrap();
        let joiner = dvr_model::spec::HostSpec {
            id: Some(uuid::Uuid::from_u128(0xfeed)),
            name: "joiner".into(),
            dvr_mac: Some("fa:16:3f:aa:bb:cc".into()),
            tunnel_ip: None,
            ..model.clone()
        };
        let mut next = live.pinned_spec();
        next.hosts.push(joiner.clone());
        let rebuilt = build(label, &next).unwrap();
        let a = live.join(&joiner).unwrap();
        assert!(!a.rebuilt && a.host.as_ref().is_some_and(|e| e.added && e.name == "joiner"));
        same(live.topology(), &rebuilt).unwrap_or_else(|e| panic!("{label}: {e}"));
        // The pinned file Live keeps builds back to the same topology.
        same(live.topology(), &build(label, &live.pinned_spec()).unwrap()).unwrap();
        // Clashes: the same name again; another host's DVR MAC; a bad bridge mapping.
        let before = serde_json::to_string(live.topology()).unwrap();
        let again = dvr_model::spec::HostSpec { dvr_mac: None, ..joiner.clone() };
        let taken = dvr_model::spec::HostSpec { name: "other".into(), ..joiner.clone() };
        let mut bad = dvr_model::spec::HostSpec { name: "bad".into(), dvr_mac: None, ..joiner.clone() };
        bad.bridge_mappings.insert("physx".into(), "br-int".into());
        for h in [again, taken, bad] {
            assert!(live.join(&h).is_err(), "{label}: {} joined", h.name);
            assert_eq!(serde_json::to_string(live.topology()).unwrap(), before, "{label}: a refused join changed the topology");
        }
    }
}
