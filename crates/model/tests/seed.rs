//! The embedded seed lab and the shared one describe the same deployment.

use dvr_model::*;

/// The shared folder sits beside the repository in CI and in sessions;
/// elsewhere there is nothing to compare with, hence `ignore`.
#[test]
#[ignore = "needs ../shared beside the repository: scripts/test runs it when present (always in CI)"]
fn shared_embedded_seed_equals_shared_seed() {
    let shared = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/labs/seed.yaml");
    let text = std::fs::read_to_string(shared).unwrap_or_else(|e| panic!("cannot read {shared}: {e}"));
    // The shared file lists its demo paths in header comments (`#   FROM -> TO   NOTE`),
    // ours in a `paths:` section: the same paths, in the same order.
    let header: Vec<(String, String)> = text
        .lines()
        .take_while(|l| l.starts_with('#') || l.trim().is_empty())
        .filter_map(|l| {
            let (from, rest) = l.trim_start_matches('#').trim().split_once(" -> ")?;
            Some((from.to_string(), rest.split_whitespace().next()?.to_string()))
        })
        .collect();
    let mut ours = seed();
    let listed: Vec<(String, String)> = ours.paths.iter().map(|p| (p.from.clone(), p.to.clone())).collect();
    assert_eq!(header, listed);
    ours.paths.clear();
    let a = serde_json::to_value(load_str("shared", &text).unwrap()).unwrap();
    let b = serde_json::to_value(ours).unwrap();
    assert_eq!(a, b);
}

#[test]
fn seed_allocations_follow_the_walkthrough() {
    let t = seed();
    let c1 = &t.hosts[t.host_ix("compute1").unwrap().0];
    assert_eq!(c1.local_vlans.len(), 3, "test1, test2 and external on compute1");
    assert_eq!(c1.local_vlans[0].1.get(), 1);
    assert_eq!(c1.local_vlans[1].1.get(), 2);
    assert!(t.hosts[0].dvr_mac.is_none(), "controller has no DVR MAC");
    for h in &t.hosts[1..] {
        assert!(h.dvr_mac.unwrap().has_prefix(alloc::DVR_MAC_PREFIX));
    }
    let r = &t.routers[0];
    let names: Vec<_> = r.hosts.iter().map(|h| t.host(*h).name.as_str()).collect();
    assert_eq!(names, ["network", "compute1", "compute2"]);
    let sg = t.snat_port(RouterIx(0), SubnetIx(0)).unwrap();
    assert_eq!(t.port(sg).ip.to_string(), "192.168.1.3");
    let fip = &t.floating_ips[0];
    assert_eq!(fip.rule_priority, Some(32768));
    assert_eq!(t.port(t.gateway_port(RouterIx(0)).unwrap()).ip.to_string(), "10.100.0.2");
}

#[test]
fn same_input_same_topology() {
    let a = serde_json::to_string(&seed()).unwrap();
    let b = serde_json::to_string(&seed()).unwrap();
    assert_eq!(a, b);
}

#[test]
fn the_example_file_is_valid_and_lists_its_paths() {
    let t = load_str("example", EXAMPLE_YAML).unwrap();
    assert_eq!(t.paths.len(), 4);
    assert!(t.paths.iter().all(|p| p.expect == Some(Expected::Delivered)));
    assert_eq!(t.floating_ips.len(), 1);
    assert!(EXAMPLE_YAML.lines().filter(|l| l.contains('#')).count() > 10, "it is commented");
}

#[test]
fn endpoint_arguments_resolve_to_addresses() {
    let t = seed();
    assert_eq!(t.resolve_address("vm1"), Some("192.168.1.9".parse().unwrap()));
    assert_eq!(t.resolve_address("10.9.8.7"), Some("10.9.8.7".parse().unwrap()));
    let ext1 = t.external_hosts.iter().find(|e| e.name == "ext1").unwrap().ip;
    assert_eq!(t.resolve_address("ext1"), Some(ext1));
    for bad in ["", "nobody", "192.168.1", "192.168.1.256", " vm1"] {
        assert_eq!(t.resolve_address(bad), None, "{bad:?}");
    }
}
