//! `dvr gen`: every generator parameter is a flag, and impossible
//! combinations fail with the flag to change.

use std::process::{Command, Output};

fn dvr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dvr")).args(args).output().expect("run dvr")
}

fn gen_topo(args: &[&str]) -> dvr_model::Topology {
    let out = dvr(&[&["gen"], args].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dvr_model::load_str("gen.yaml", &String::from_utf8(out.stdout).unwrap()).expect("generated file is valid")
}

#[test]
fn every_parameter_is_a_flag() {
    let t = gen_topo(&[
        "--hosts",
        "4",
        "--vms-per-host",
        "3",
        "--networks",
        "3",
        "--routers",
        "2",
        "--fips",
        "5",
        "--external-hosts",
        "1",
        "--seed",
        "9",
    ]);
    assert_eq!(t.hosts.iter().filter(|h| h.name.starts_with("compute")).count(), 4);
    assert_eq!(t.instances.len(), 12);
    assert_eq!(t.networks.iter().filter(|n| !n.external).count(), 3);
    assert_eq!(t.routers.len(), 2);
    assert_eq!(t.floating_ips.len(), 5);
    assert_eq!(t.external_hosts.len(), 1);
    // The seed changes placement, not counts.
    let other = gen_topo(&[
        "--hosts",
        "4",
        "--vms-per-host",
        "3",
        "--networks",
        "3",
        "--routers",
        "2",
        "--fips",
        "5",
        "--external-hosts",
        "1",
        "--seed",
        "10",
    ]);
    let placement = |t: &dvr_model::Topology| t.instances.iter().map(|x| (x.host, x.network)).collect::<Vec<_>>();
    assert_eq!(other.instances.len(), 12);
    assert_ne!(placement(&t), placement(&other));
}

#[test]
fn defaults_are_the_scale_proportions() {
    let t = gen_topo(&["--hosts", "8"]);
    assert_eq!(t.instances.len(), 160);
    assert_eq!(t.networks.iter().filter(|n| !n.external).count(), 4);
    assert_eq!(t.routers.len(), 2);
    assert_eq!(t.floating_ips.len(), 8);
}

#[test]
fn impossible_parameters_name_the_flags() {
    let out = dvr(&["gen", "--hosts", "4", "--networks", "0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("do not fit into 0 networks") && err.contains("fix:") && err.contains("--networks"), "{err}");
}

#[test]
fn ten_thousand_hosts_generate() {
    // More networks than VLANs would be needed at hosts / 2: scale caps them.
    let out = dvr(&["gen", "--hosts", "10000"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).matches("\n- name: vm").count(), 200_000);
}

/// `--tenant-type vxlan`: VXLAN networks with distinct VNIs, tunnel
/// endpoints allocated on the underlay, no VLAN physical network; and the
/// generated paths trace as expected, cross-host ones through the tunnel.
#[test]
fn vxlan_deployments_generate_and_trace() {
    let t = gen_topo(&["--hosts", "6", "--tenant-type", "vxlan", "--seed", "3"]);
    let tenant: Vec<_> = t.networks.iter().filter(|n| !n.external).collect();
    let vnis: std::collections::BTreeSet<_> = tenant.iter().map(|n| n.segment.vni().expect("a VXLAN network")).collect();
    assert_eq!(vnis.len(), tenant.len(), "one VNI per network");
    let underlay: ipnet::Ipv4Net = "172.16.0.0/16".parse().unwrap();
    for h in t.hosts.iter().filter(|h| h.has_dataplane()) {
        assert!(h.tunnel_ip.is_some_and(|ip| underlay.contains(&ip)), "{}: {:?}", h.name, h.tunnel_ip);
        assert!(h.mapping("physnet1").is_none(), "{} maps a VLAN physical network", h.name);
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gen-vxlan.yaml");
    let out = dvr(&["gen", "--hosts", "6", "--tenant-type", "vxlan", "--seed", "3"]);
    std::fs::write(&file, &out.stdout).unwrap();
    let out = dvr(&["demo", "-t", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "every generated path ends as expected:\n{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("VXLAN VNI"), "a cross-host path crosses a tunnel:\n{text}");
    // The VLAN default is unchanged.
    let vlan = gen_topo(&["--hosts", "6", "--seed", "3"]);
    assert!(vlan.networks.iter().filter(|n| !n.external).all(|n| n.segment.vni().is_none()));
}
