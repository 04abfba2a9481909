//! The scale-test generator: every generated deployment is valid, has the
//! requested counts, reads back from its YAML unchanged, is deterministic, and
//! its header lists demo paths that exist.

use dvr_model::r#gen::{GenParams, MAX_VMS_PER_NETWORK, TenantType, generate, generate_yaml};
use dvr_model::{PortOwner, Role, Topology, build::build, load_str};
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::time::Instant;

/// Build the generated spec and check everything the parameters promise.
fn check(p: &GenParams) -> Topology {
    let spec = generate(p);
    let topo = build("generated.yaml", &spec).unwrap_or_else(|e| panic!("{p:?} gives an invalid topology:\n{e}"));
    let count = |role| topo.hosts.iter().filter(|h| h.role == role).count();
    assert_eq!(count(Role::Compute), p.hosts, "{p:?}");
    assert_eq!(count(Role::Network), 1, "{p:?}");
    assert_eq!(count(Role::Controller), 1, "{p:?}");
    assert_eq!(topo.networks.iter().filter(|n| !n.external).count(), p.networks, "{p:?}");
    assert_eq!(topo.networks.iter().filter(|n| n.external).count(), 1, "{p:?}");
    assert_eq!(topo.routers.len(), p.routers, "{p:?}");
    assert_eq!(topo.instances.len(), p.vms, "{p:?}");
    assert_eq!(topo.floating_ips.len(), p.floating_ips, "{p:?}");
    assert_eq!(topo.external_hosts.len(), p.external_hosts, "{p:?}");

    // Every tenant subnet on exactly one router; every router with a gateway.
    for (s, sub) in topo.subnets.iter().enumerate() {
        let owners = topo.routers.iter().filter(|r| r.interfaces.iter().any(|i| i.0 == s)).count();
        let expected = usize::from(!topo.networks[sub.network.0].external);
        assert_eq!(owners, expected, "{p:?}: subnet {} is on {owners} routers", sub.name);
    }
    assert!(topo.routers.iter().all(|r| r.distributed && r.external_gateway.is_some()), "{p:?}");
    // The networks are shared out evenly: router sizes differ by at most one.
    let sizes: Vec<usize> = topo.routers.iter().map(|r| r.interfaces.len()).collect();
    if let (Some(min), Some(max)) = (sizes.iter().min(), sizes.iter().max()) {
        assert!(max - min <= 1, "{p:?}: router sizes {sizes:?}");
    }

    // No subnet overflows: at most MAX_VMS_PER_NETWORK instances, every address distinct.
    let mut per_subnet = vec![0usize; topo.subnets.len()];
    for port in &topo.ports {
        if matches!(port.owner, PortOwner::Compute { .. }) {
            per_subnet[port.subnet.0] += 1;
        }
        assert!(topo.subnets[port.subnet.0].cidr.contains(&port.ip), "{p:?}: port {} outside its subnet", port.ip);
    }
    assert!(per_subnet.iter().all(|&n| n <= MAX_VMS_PER_NETWORK), "{p:?}: {per_subnet:?}");
    let mut ips = BTreeSet::new();
    for ip in topo.ports.iter().map(|x| x.ip).chain(topo.floating_ips.iter().map(|f| f.ip)).chain(topo.external_hosts.iter().map(|e| e.ip))
    {
        assert!(ips.insert(ip), "{p:?}: {ip} used twice");
    }

    // Floating IPs: each associated with its own instance.
    let associated: BTreeSet<usize> = topo.floating_ips.iter().filter_map(|f| f.association.map(|(x, _)| x.0)).collect();
    assert_eq!(associated.len(), p.floating_ips, "{p:?}");
    topo
}

/// The YAML reads back as the same deployment as the spec it was written from.
fn check_roundtrip(p: &GenParams) {
    let yaml = generate_yaml(p);
    let from_yaml = load_str("generated.yaml", &yaml).unwrap_or_else(|e| panic!("{p:?}: the YAML does not load:\n{e}"));
    let from_spec = build("generated.yaml", &generate(p)).unwrap();
    assert_eq!(serde_json::to_value(&from_yaml).unwrap(), serde_json::to_value(&from_spec).unwrap(), "{p:?}");
}

/// Every `paths:` entry names existing endpoints and has the property its note claims.
fn check_paths(p: &GenParams, topo: &Topology) -> Vec<String> {
    let yaml = generate_yaml(p);
    let vm = |name: &str| topo.instances.iter().find(|x| x.name == name).unwrap_or_else(|| panic!("{p:?}: no instance {name}"));
    let router_of = |x: &dvr_model::Instance| {
        let subnet = topo.ports[x.port.0].subnet;
        topo.routers.iter().position(|r| r.interfaces.contains(&subnet)).expect("every subnet has a router")
    };
    let mut notes = Vec::new();
    let listed = load_str("generated.yaml", &yaml).unwrap().paths;
    assert_eq!(listed.is_empty(), p.vms == 0, "{p:?}: the generated file lists demo paths when it has instances");
    for ps in listed {
        assert_eq!(ps.expect, Some(dvr_model::Expected::Delivered), "{p:?}: {ps:?}");
        let (from, to, note) = (ps.from, ps.to, ps.note.unwrap_or_default());
        if note.starts_with("floating IP in") {
            assert!(topo.external_hosts.iter().any(|e| e.name == from), "{p:?}: {from}");
            let ip: std::net::Ipv4Addr = to.parse().unwrap();
            let fip = topo.floating_ips.iter().find(|f| f.ip == ip).unwrap_or_else(|| panic!("{p:?}: no floating IP {ip}"));
            assert!(fip.association.is_some());
        } else if to.parse::<std::net::Ipv4Addr>().is_ok() {
            vm(&from);
        } else if to.starts_with("ext") {
            let x = vm(&from);
            assert!(topo.external_hosts.iter().any(|e| e.name == to));
            let has_fip = topo.floating_ips.iter().any(|f| f.association.is_some_and(|(i, _)| topo.instances[i.0].name == x.name));
            assert_eq!(has_fip, note.starts_with("floating IP"), "{p:?}: {from} -> {to}: {note}");
        } else {
            let (a, b) = (vm(&from), vm(&to));
            assert_ne!(a.name, b.name);
            let same_net = a.network == b.network;
            let same_host = a.host == b.host;
            assert_eq!(router_of(a), router_of(b), "{p:?}: {from} -> {to} crosses routers");
            let expected = match (same_net, same_host) {
                (true, true) => "same network, same host",
                (true, false) => "same network, different hosts",
                (false, true) => "different networks, same host",
                (false, false) => "different networks, different hosts",
            };
            assert!(note.starts_with(expected), "{p:?}: {from} -> {to}: `{note}` but {expected}");
        }
        notes.push(note);
    }
    notes
}

fn check_all(p: &GenParams) -> Topology {
    let topo = check(p);
    check_roundtrip(p);
    check_paths(p, &topo);
    assert_eq!(generate_yaml(p), generate_yaml(p), "{p:?}: not deterministic");
    topo
}

#[test]
fn scale_sizes_are_valid_and_round_trip() {
    for hosts in [1, 3, 10, 50] {
        let p = GenParams::scale(hosts);
        assert_eq!(p.vms, 20 * hosts);
        assert_eq!(p.networks, (hosts / 2).max(2));
        assert_eq!(p.routers, (hosts / 4).max(1));
        assert_eq!(p.floating_ips, p.vms / 20);
        assert_eq!(p.external_hosts, 2);
        check_all(&p);
    }
}

#[test]
fn default_is_small_and_valid() {
    let p = GenParams::default();
    assert!(p.hosts <= 5 && p.vms <= 50);
    check_all(&p);
}

#[test]
fn header_lists_every_kind_of_path() {
    for hosts in [3, 10, 50] {
        let p = GenParams::scale(hosts);
        let notes = check_paths(&p, &check(&p));
        for kind in [
            "VM to its gateway",
            "same network, same host",
            "same network, different hosts",
            "different networks, same host",
            "different networks, different hosts",
            "metadata",
            "SNAT",
            "floating IP 100.64.",
            "floating IP in",
        ] {
            assert!(notes.iter().any(|n| n.starts_with(kind)), "hosts={hosts}: no `{kind}` path in {notes:#?}");
        }
    }
}

#[test]
fn deterministic_and_seed_dependent() {
    let p = GenParams::scale(10);
    assert_eq!(generate_yaml(&p), generate_yaml(&p));
    let placement = |p: &GenParams| generate(p).instances.iter().map(|x| (x.host.clone(), x.network.clone())).collect::<Vec<_>>();
    assert_eq!(placement(&p), placement(&p));
    assert_ne!(placement(&p), placement(&p.with_seed(1)));
    assert_ne!(generate_yaml(&p), generate_yaml(&p.with_seed(1)));
    assert_ne!(placement(&p.with_seed(1)), placement(&p.with_seed(2)));
}

#[test]
fn full_networks_never_overflow() {
    // Exactly as many instances as the networks hold.
    let p = GenParams {
        hosts: 4,
        vms: 3 * MAX_VMS_PER_NETWORK,
        networks: 3,
        routers: 1,
        seed: 7,
        external_hosts: 1,
        floating_ips: 10,
        ..GenParams::default()
    };
    let topo = check_all(&p);
    for n in topo.networks.iter().filter(|n| !n.external) {
        assert_eq!(topo.instances.iter().filter(|x| topo.networks[x.network.0].name == n.name).count(), MAX_VMS_PER_NETWORK);
    }
}

#[test]
fn more_routers_than_networks_and_no_instances() {
    check_all(&GenParams {
        hosts: 2,
        vms: 0,
        networks: 2,
        routers: 5,
        seed: 0,
        external_hosts: 0,
        floating_ips: 0,
        ..GenParams::default()
    });
    check_all(&GenParams {
        hosts: 0,
        vms: 0,
        networks: 0,
        routers: 0,
        seed: 0,
        external_hosts: 1,
        floating_ips: 0,
        ..GenParams::default()
    });
}

#[test]
fn impossible_parameters_are_refused() {
    let ok = GenParams::default();
    assert!(ok.check().is_ok());
    for bad in [
        GenParams { vms: 4 * MAX_VMS_PER_NETWORK + 1, ..ok },
        GenParams { hosts: 0, ..ok },
        GenParams { routers: 0, ..ok },
        GenParams { floating_ips: ok.vms + 1, ..ok },
        GenParams { networks: 5000, ..ok },
    ] {
        let e = bad.check().expect_err("refused");
        assert!(!e.is_empty());
    }
    // generate panics with the message of check.
    let bad = GenParams { floating_ips: ok.vms + 1, ..ok };
    let e = std::panic::catch_unwind(|| generate(&bad)).expect_err("panics");
    let message = e.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains(&bad.check().unwrap_err()), "{message}");
}

#[test]
fn large_deployment_is_valid() {
    let hosts = 1000;
    let p = GenParams::scale(hosts);
    let t0 = Instant::now();
    let spec = generate(&p);
    let t_gen = t0.elapsed();
    let t1 = Instant::now();
    let yaml = generate_yaml(&p);
    let t_yaml = t1.elapsed();
    let t2 = Instant::now();
    let topo = build("generated.yaml", &spec).unwrap_or_else(|e| panic!("{e}"));
    let t_build = t2.elapsed();
    let t3 = Instant::now();
    let reloaded = load_str("generated.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"));
    let t_load = t3.elapsed();
    eprintln!(
        "gen {hosts} hosts ({} instances, {} networks, {} routers, {} ports, {} KiB of YAML): generate {t_gen:.2?}, \
         generate_yaml {t_yaml:.2?}, build {t_build:.2?}, load_str {t_load:.2?}",
        topo.instances.len(),
        topo.networks.len(),
        topo.routers.len(),
        topo.ports.len(),
        yaml.len() / 1024
    );
    assert_eq!(topo.hosts.len(), hosts + 2);
    assert_eq!(topo.instances.len(), p.vms);
    assert_eq!(topo.networks.len(), p.networks + 1);
    assert_eq!(topo.routers.len(), p.routers);
    assert_eq!(topo.floating_ips.len(), p.floating_ips);
    assert_eq!(reloaded.ports.len(), topo.ports.len());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn small_random_parameters_are_valid(
        hosts in 1usize..20, vms in 0usize..200, networks in 1usize..20, routers in 1usize..10,
        seed in any::<u64>(), external_hosts in 0usize..3, fip_share in 0.0f64..=1.0, vxlan in any::<bool>(),
    ) {
        let floating_ips = (vms as f64 * fip_share) as usize;
        let tenant_type = if vxlan { TenantType::Vxlan } else { TenantType::Vlan };
        let p = GenParams { hosts, vms, networks, routers, seed, external_hosts, floating_ips, tenant_type };
        prop_assert!(p.check().is_ok());
        check(&p);
        check_roundtrip(&p);
        check_paths(&p, &check(&p));
    }
}

#[test]
fn limits_hold() {
    use dvr_model::r#gen::MAX_NETWORKS;
    // The most networks: VLAN ids wrap from 4094 to 1..=99, and the network node
    // (every network plus the external one) still has a local VLAN for each.
    let p = GenParams {
        hosts: 1,
        vms: 2,
        networks: MAX_NETWORKS,
        routers: 1,
        seed: 0,
        external_hosts: 1,
        floating_ips: 1,
        ..GenParams::default()
    };
    let t0 = Instant::now();
    let topo = check(&p);
    eprintln!("{MAX_NETWORKS} networks on one router: generate + build {:.2?}", t0.elapsed());
    let vlans: BTreeSet<String> = topo.networks.iter().filter(|n| !n.external).map(|n| format!("{:?}", n.segment)).collect();
    assert_eq!(vlans.len(), MAX_NETWORKS);
    assert!(GenParams { networks: MAX_NETWORKS + 1, ..p }.check().is_err());

    // Many floating IPs widen the external subnet beyond a /16.
    let p = GenParams {
        hosts: 10,
        vms: 70_000,
        networks: 350,
        routers: 10,
        seed: 0,
        external_hosts: 2,
        floating_ips: 70_000,
        ..GenParams::default()
    };
    let spec = generate(&p);
    let external = spec.networks.iter().find(|n| n.external).unwrap();
    assert_eq!(external.subnets[0].cidr, "100.64.0.0/15");
    assert!(GenParams { floating_ips: 10, ..p }.check().is_ok());
    assert_eq!(generate(&GenParams { floating_ips: 10, ..p }).networks.last().unwrap().subnets[0].cidr, "100.64.0.0/16");
}
