//! The optional keys a live control plane needs: explicit ids, unbound ports,
//! pinned implicit ports, allocation pools, and typed problem kinds.

use dvr_model::spec::{AllocationPool, PortSpec};
use dvr_model::{PortOwner, ProblemKind, build::build, parse_spec};

fn seed_spec() -> dvr_model::spec::TopologySpec {
    parse_spec("seed", dvr_model::SEED_YAML).unwrap()
}

fn kinds(spec: &dvr_model::spec::TopologySpec) -> Vec<ProblemKind> {
    build("t", spec).err().map(|e| e.problem_list().iter().map(|p| p.kind).collect()).unwrap_or_default()
}

#[test]
fn pinned_implicit_ports_keep_their_addresses() {
    let mut spec = seed_spec();
    let topo = build("t", &spec).unwrap();
    let sg = topo.ports.iter().find(|p| matches!(p.owner, PortOwner::CentralizedSnat { .. })).unwrap().clone();
    let sub = topo.subnets[sg.subnet.0].name.clone();
    // Pin the sg- port on an address allocation would not pick.
    let net = &topo.networks[sg.network.0].name;
    spec.ports.push(PortSpec {
        id: Some(uuid::Uuid::from_u128(7)),
        network: net.clone(),
        ip: Some("192.168.1.200".parse().unwrap()),
        mac: Some("fa:16:3e:00:00:77".parse().unwrap()),
        device_owner: Some("network:router_centralized_snat".into()),
        router: Some("router1".into()),
        ..PortSpec::default()
    });
    let pinned = build("t", &spec).unwrap();
    let p = pinned.ports.iter().find(|p| p.id.0 == uuid::Uuid::from_u128(7)).expect("the pin names the port");
    assert_eq!(p.ip.to_string(), "192.168.1.200");
    assert_eq!(p.mac.to_string(), "fa:16:3e:00:00:77");
    assert_eq!(pinned.subnets[p.subnet.0].name, sub);
    // Positive control: without the pin the port is elsewhere.
    assert_ne!(sg.ip.to_string(), "192.168.1.200");
    // A dead pin (router without that interface) reserves nothing.
    spec.routers[0].interfaces.retain(|s| s != &sub);
    spec.instances.retain(|x| x.network != *net);
    spec.floating_ips.clear();
    let dead = build("t", &spec).unwrap();
    assert!(dead.ports.iter().all(|p| p.id.0 != uuid::Uuid::from_u128(7)));
}

#[test]
fn unbound_ports_reserve_addresses_and_clash_by_kind() {
    let mut spec = seed_spec();
    spec.ports.push(PortSpec { name: Some("spare".into()), network: "test1".into(), ..PortSpec::default() });
    let topo = build("t", &spec).unwrap();
    assert_eq!(topo.unbound_ports.len(), 1);
    let u = &topo.unbound_ports[0];
    assert!(topo.ports.iter().all(|p| p.ip != u.ip && p.mac != u.mac));
    spec.ports.push(PortSpec {
        name: Some("clash".into()),
        network: "test1".into(),
        ip: Some("192.168.1.9".parse().unwrap()),
        ..PortSpec::default()
    });
    assert!(kinds(&spec).contains(&ProblemKind::IpInUse));
    spec.ports.pop();
    spec.ports.push(PortSpec {
        name: Some("outside".into()),
        network: "test1".into(),
        ip: Some("10.9.9.9".parse().unwrap()),
        ..PortSpec::default()
    });
    assert_eq!(kinds(&spec), vec![ProblemKind::AddressOutsideSubnet]);
}

#[test]
fn allocation_pools_bound_allocation() {
    let mut spec = seed_spec();
    spec.networks[0].subnets[0].allocation_pools =
        vec![AllocationPool { start: "192.168.1.100".parse().unwrap(), end: "192.168.1.120".parse().unwrap() }];
    let topo = build("t", &spec).unwrap();
    let dhcp = topo.ports.iter().find(|p| p.owner == PortOwner::Dhcp && topo.networks[p.network.0].name == "test1").unwrap();
    assert_eq!(dhcp.ip.to_string(), "192.168.1.100");
    spec.networks[0].subnets[0].allocation_pools =
        vec![AllocationPool { start: "192.168.1.1".parse().unwrap(), end: "192.168.1.5".parse().unwrap() }];
    assert!(build("t", &spec).is_err(), "a pool holding the gateway is refused");
}

#[test]
fn problem_kinds_are_typed() {
    let mut spec = seed_spec();
    spec.networks[1].segmentation_id = Some(196);
    assert_eq!(kinds(&spec), vec![ProblemKind::VlanInUse]);
    let mut spec = seed_spec();
    spec.instances[1].mac = Some("fa:16:3e:00:00:01".parse().unwrap());
    spec.instances[2].mac = Some("fa:16:3e:00:00:01".parse().unwrap());
    assert_eq!(kinds(&spec), vec![ProblemKind::MacInUse]);
    let mut spec = seed_spec();
    spec.instances[0].network = "nope".into();
    assert!(kinds(&spec).contains(&ProblemKind::DanglingReference));
    let mut spec = seed_spec();
    spec.routers[0].interfaces.clear();
    assert!(kinds(&spec).contains(&ProblemKind::NoRouterToExternal));
    // Positive control: the seed itself has no problem.
    assert!(kinds(&seed_spec()).is_empty());
}
