//! VXLAN tunnel endpoints in the topology file: `tunnel_ip` per host,
//! allocation from `underlay:`, validation, and VNIs.

use dvr_model::{SEED_MIXED_YAML, SEED_VXLAN_YAML, SEED_YAML, Segment, load_str};
use std::net::Ipv4Addr;

fn problems(yaml: &str) -> Vec<String> {
    match load_str("f.yaml", yaml) {
        Ok(_) => vec![],
        Err(e) => e.problems(),
    }
}

fn ips(yaml: &str) -> Vec<Option<Ipv4Addr>> {
    load_str("f.yaml", yaml).unwrap().hosts.iter().map(|h| h.tunnel_ip).collect()
}

fn ip(s: &str) -> Option<Ipv4Addr> {
    Some(s.parse().unwrap())
}

const COMPUTE1: &str = "  - name: compute1\n    role: compute\n    bridge_mappings: {extnet: br-ex}\n";

#[test]
fn vlan_only_file_has_no_tunnels() {
    let t = load_str("seed", SEED_YAML).unwrap();
    assert!(t.underlay.is_none());
    assert!(t.hosts.iter().all(|h| h.tunnel_ip.is_none()));
    let json = serde_json::to_string(&t).unwrap();
    assert!(!json.contains("tunnel_ip") && !json.contains("underlay"), "vlan-only topology JSON is unchanged");
}

#[test]
fn seed_vxlan_allocates_endpoints_from_the_default_underlay() {
    let t = load_str("seed-vxlan", SEED_VXLAN_YAML).unwrap();
    assert_eq!(t.underlay, Some("172.16.0.0/24".parse().unwrap()));
    // controller, network, compute1, compute2: the controller has none.
    assert_eq!(ips(SEED_VXLAN_YAML), [None, ip("172.16.0.1"), ip("172.16.0.2"), ip("172.16.0.3")]);
    let vnis: Vec<u32> = t.networks.iter().filter_map(|n| n.segment.vni()).map(|v| v.get()).collect();
    assert_eq!(vnis, [1001, 1002]);
}

#[test]
fn mixed_file_has_vlan_and_vxlan_on_one_router() {
    let t = load_str("seed-mixed", SEED_MIXED_YAML).unwrap();
    let kinds: Vec<&str> = t
        .networks
        .iter()
        .map(|n| match n.segment {
            Segment::Vlan { .. } => "vlan",
            Segment::Flat { .. } => "flat",
            Segment::Vxlan { .. } => "vxlan",
        })
        .collect();
    assert_eq!(kinds, ["vlan", "vxlan", "flat"]);
    assert_eq!(t.routers[0].interfaces.len(), 2);
    assert!(t.hosts.iter().filter(|h| h.has_dataplane()).all(|h| h.tunnel_ip.is_some()));
}

#[test]
fn explicit_endpoints_are_kept_and_skipped_by_allocation() {
    let y = SEED_VXLAN_YAML.replace(COMPUTE1, &format!("{COMPUTE1}    tunnel_ip: 172.16.0.1\n"));
    assert_ne!(y, SEED_VXLAN_YAML);
    // compute1 keeps .1; network (first in file order) gets the next free one.
    assert_eq!(ips(&y), [None, ip("172.16.0.2"), ip("172.16.0.1"), ip("172.16.0.3")]);
}

#[test]
fn underlay_key_moves_the_endpoints() {
    let y = SEED_VXLAN_YAML.replace("name: seed-vxlan\n", "name: seed-vxlan\nunderlay: 10.200.0.0/28\n");
    assert_eq!(ips(&y), [None, ip("10.200.0.1"), ip("10.200.0.2"), ip("10.200.0.3")]);
}

#[test]
fn endpoint_errors_name_the_host_and_the_fix() {
    let outside = SEED_VXLAN_YAML.replace(COMPUTE1, &format!("{COMPUTE1}    tunnel_ip: 10.9.9.9\n"));
    let p = problems(&outside);
    assert!(
        p.iter().any(|m| m.contains("hosts[2] (compute1)") && m.contains("tunnel_ip") && m.contains("not a host address of the underlay")),
        "{p:?}"
    );

    let dup = SEED_VXLAN_YAML
        .replace(COMPUTE1, &format!("{COMPUTE1}    tunnel_ip: 172.16.0.9\n"))
        .replace("  - name: compute2\n    role: compute\n", "  - name: compute2\n    role: compute\n    tunnel_ip: 172.16.0.9\n");
    let p = problems(&dup);
    assert!(p.iter().any(|m| m.contains("compute2") && m.contains("also the tunnel_ip of hosts[2] (compute1)")), "{p:?}");

    let ctl = SEED_VXLAN_YAML.replace("role: controller\n", "role: controller\n    tunnel_ip: 172.16.0.50\n");
    let p = problems(&ctl);
    assert!(p.iter().any(|m| m.contains("controller") && m.contains("no tunnel endpoint")), "{p:?}");

    let network_addr = SEED_VXLAN_YAML.replace(COMPUTE1, &format!("{COMPUTE1}    tunnel_ip: 172.16.0.0\n"));
    assert!(!problems(&network_addr).is_empty());
}

#[test]
fn underlay_errors() {
    let with = |u: &str| SEED_VXLAN_YAML.replace("name: seed-vxlan\n", &format!("name: seed-vxlan\nunderlay: {u}\n"));
    let p = problems(&with("192.168.0.0/16"));
    assert!(p.iter().any(|m| m.contains("underlay 192.168.0.0/16 overlaps networks[0] (test1).subnets[0] (test1-v4)")), "{p:?}");
    assert!(problems(&with("172.16.0.1/24")).iter().any(|m| m.contains("host bits")));
    assert!(problems(&with("nonsense")).iter().any(|m| m.contains("not an IPv4 CIDR")));
    // A /30 has two host addresses, the lab three dataplane hosts.
    let p = problems(&with("172.16.0.0/30"));
    assert!(p.iter().any(|m| m.contains("compute2") && m.contains("no free address")), "{p:?}");
    // Positive control: a /29 fits them.
    assert!(problems(&with("172.16.0.0/29")).is_empty());
}

#[test]
fn vni_validation() {
    let bad = SEED_VXLAN_YAML.replace("segmentation_id: 1002", "segmentation_id: 16777216");
    assert!(problems(&bad).iter().any(|m| m.contains("not a VNI")), "{:?}", problems(&bad));
    let dup = SEED_VXLAN_YAML.replace("segmentation_id: 1002", "segmentation_id: 1001");
    assert!(problems(&dup).iter().any(|m| m.contains("VNI 1001 is also used by")), "{:?}", problems(&dup));
    let zero = SEED_VXLAN_YAML.replace("segmentation_id: 1002", "segmentation_id: 0");
    assert!(!problems(&zero).is_empty());
    let max = SEED_VXLAN_YAML.replace("segmentation_id: 1002", "segmentation_id: 16777215");
    assert!(problems(&max).is_empty());
}
