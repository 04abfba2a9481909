//! `dvr draw` as a user runs it: files written, formats, filters, and errors
//! that name the fix.

use std::process::{Command, Output};

fn dvr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dvr")).args(args).output().unwrap()
}

#[test]
fn draw_writes_svg_and_dot_and_explains_bad_names() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("seed.svg");
    let out = dvr(&["draw", "--trace", "vm1", "vm5", "-o", svg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.contains("class=\"path request\"") && text.contains("class=\"path reply\""));
    assert!(!text.contains("data-name=\"network\""), "vm1 -> vm5 does not cross the network node");

    let out = dvr(&["draw", "--format", "dot", "--host", "compute2"]);
    let dot = String::from_utf8_lossy(&out.stdout);
    assert!(dot.starts_with("digraph dvr {") && dot.contains("cluster_compute2") && !dot.contains("cluster_compute1"), "{dot}");

    let out = dvr(&["draw", "--host", "compute9"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--host compute9") && err.contains("hosts are: network, compute1, compute2"), "{err}");

    let out = dvr(&["draw", "--trace", "vm1", "vm9"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("`vm9`") && err.contains("endpoints are: vm1"), "{err}");
}

/// A traced path over VXLAN marks each tunnel crossing (not drawn as a
/// network) with its VNI and local_ips, between the two br-tun bridges.
#[test]
fn draw_marks_the_tunnel_crossings_of_a_vxlan_path() {
    let lab = concat!(env!("CARGO_MANIFEST_DIR"), "/../../labs/seed-vxlan.yaml");
    let out = dvr(&["draw", "-t", lab, "--trace", "vm1", "vm5", "-o", "-"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let svg = String::from_utf8_lossy(&out.stdout);
    assert!(svg.contains("data-name=\"br-tun\""), "br-tun is drawn");
    // Request routed on compute1 onto test2 (VNI 1002); the reply routed on compute2 onto test1 (VNI 1001).
    assert!(svg.contains("VXLAN VNI 1002 172.16.0.2 → 172.16.0.3"), "{svg}");
    assert!(svg.contains("VXLAN VNI 1001 172.16.0.3 → 172.16.0.2"), "{svg}");
    // The VLAN seed lab has no tunnel.
    let out = dvr(&["draw", "--trace", "vm1", "vm5", "-o", "-"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("VXLAN"));
}
