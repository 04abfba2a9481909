//! Conformance with Neutron's own OVS agent code: runs `scripts/conformance`
//! (Neutron 29.0.0 from PyPI in a venv under `target/`, its native bridges and
//! `OVSDVRNeutronAgent` driven on a fake datapath) against this build's
//! `dvr plan --profile current`, and checks the report.
//!
//! Never skipped: when pip cannot reach the registry the script exits 2 with
//! a message saying the check did not run, and this test fails with it.
//! A positive control (`--control`: one planned flow dropped per bridge) must
//! be caught, so a harness that compares nothing cannot pass.

use std::path::PathBuf;
use std::process::Command;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/conformance")
}

/// Run the harness; (exit code, stdout, stderr).
fn run(extra: &[&str]) -> (i32, String, String) {
    let out = Command::new("bash")
        .arg(script())
        .args(["--dvr", env!("CARGO_BIN_EXE_dvr")])
        .args(extra)
        .output()
        .expect("bash runs scripts/conformance");
    let (so, se) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    let code = out.status.code().unwrap_or(-1);
    assert_ne!(code, 2, "scripts/conformance could not install Neutron, so conformance was NOT checked:\n{se}");
    (code, so, se)
}

#[test]
fn plan_matches_neutrons_own_ovs_agent_on_every_bridge() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let (code, out, err) = run(&["--json", json.to_str().unwrap()]);
    println!("{out}");
    assert_eq!(code, 0, "differences from Neutron's agent (see above):\n{out}\n{err}");
    let report: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();

    // Scope: every dataplane host and bridge of every scenario was compared.
    let bridges = |scenario: &str| report.iter().filter(|r| r["scenario"] == scenario).count();
    assert_eq!(bridges("seed"), 9, "seed lab: network, compute1, compute2 × br-int, br-vlan, br-ex");
    assert_eq!(bridges("gen10"), 33, "generated deployment: 11 dataplane hosts × 3 bridges");
    assert_eq!(bridges("seed: remove host compute2"), 6, "the removed host is gone, the other two remain");
    for s in
        ["seed: remove VM port (vm1)", "seed: remove router interface (router1, test2-v4)", "seed: disassociate floating IP 10.100.0.7"]
    {
        assert_eq!(bridges(s), 9, "{s}");
    }
    for r in &report {
        assert!(r["matched"].as_u64().unwrap() > 0, "Neutron installed nothing on {r}");
        assert_eq!(r["missing"].as_array().unwrap().len(), 0, "{r}");
        assert_eq!(r["extra"].as_array().unwrap().len(), 0, "{r}");
    }
    // A removed host's DVR MAC flows disappear everywhere, on both sides: on
    // the network node, br-int loses the two table-0 `dl_src=<MAC>` flows
    // (one per physical bridge) and each physical bridge its table-3 flow.
    let matched = |scenario: &str, host: &str, bridge: &str| {
        report.iter().find(|r| r["scenario"] == scenario && r["host"] == host && r["bridge"] == bridge).unwrap()["matched"]
            .as_u64()
            .unwrap()
    };
    for (bridge, gone) in [("br-int", 2), ("br-vlan", 1), ("br-ex", 1)] {
        assert_eq!(matched("seed: remove host compute2", "network", bridge), matched("seed", "network", bridge) - gone, "{bridge}");
    }
    // The ICMPv6 neighbour-advertisement flows are compared, not ignored.
    assert!(out.contains("seed                                                 compute1     br-int         51       0     0"), "{out}");
    // The one documented deviation (docs/conformance.md, D1) shows up exactly
    // where it should: after the router interface removal, once per host.
    let with = |id: &str| -> Vec<&serde_json::Value> {
        report.iter().filter(|r| r["deviations"].as_array().unwrap().iter().any(|d| d["id"] == id)).collect()
    };
    let d1 = with("D1");
    assert_eq!(d1.len(), 3, "{d1:?}");
    assert!(d1.iter().all(|r| r["scenario"] == "seed: remove router interface (router1, test2-v4)" && r["bridge"] == "br-int"));
    assert!(report.iter().all(|r| r["deviations"].as_array().unwrap().iter().all(|d| d["id"] == "D1" || d["id"] == "D2")));

    // Security groups: Neutron's OVSFirewallDriver on every host of seed-secure.
    assert_eq!(bridges("seed-secure"), 9, "seed-secure: 3 dataplane hosts × 3 bridges");
    // The firewall tables are compared flow by flow (178 on compute1's br-int
    // against 51 without groups), IPv4 complete; only the IPv6/RARP twins are
    // the documented deviation D2, and only where filtered ports are.
    assert!(out.contains("seed-secure                                          compute1     br-int        178       0     0"), "{out}");
    assert!(out.contains("seed-secure                                          compute2     br-int        149       0     0"), "{out}");
    // More rule shapes: prefixes, ICMP type/code, masked port ranges, merged
    // overlapping remote-group ranges, protocol numbers, sctp, egress rules
    // and a port without port security.
    assert_eq!(bridges("seed-secure: more rules"), 9);
    assert!(out.contains("seed-secure: more rules                              compute1     br-int        226       0     0"), "{out}");
    let d2 = with("D2");
    assert_eq!(d2.len(), 4, "{d2:?}");
    assert!(
        d2.iter().all(|r| r["scenario"].as_str().unwrap().starts_with("seed-secure") && r["bridge"] == "br-int" && r["host"] != "network")
    );
}

#[test]
fn firewall_positive_control_every_firewall_table_is_compared() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let (code, out, _) = run(&["--only", "seed-secure", "--control-firewall", "--json", json.to_str().unwrap()]);
    assert_eq!(code, 1, "a plan missing one flow per firewall table must fail:\n{out}");
    let report: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let missing = |host: &str, bridge: &str| {
        report.iter().find(|r| r["host"] == host && r["bridge"] == bridge).unwrap()["missing"].as_array().unwrap().len()
    };
    // Tables 71, 72, 73, 81, 82, 91, 92, 93, 94 on every br-int (the network
    // node has only unfiltered ports, but the tables are there too).
    for host in ["network", "compute1", "compute2"] {
        assert_eq!(missing(host, "br-int"), 9, "{host}:\n{out}");
        assert_eq!(missing(host, "br-vlan"), 0, "{host}");
    }
}

#[test]
fn positive_control_dropped_flows_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let (code, out, _) = run(&["--only", "seed", "--control", "--json", json.to_str().unwrap()]);
    assert_eq!(code, 1, "a plan missing one flow per bridge must fail:\n{out}");
    let report: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report.len(), 9);
    for r in &report {
        assert_eq!(r["missing"].as_array().unwrap().len(), 1, "{r}");
        assert_eq!(r["extra"].as_array().unwrap().len(), 0, "{r}");
    }
}

/// The harness itself against reality: Neutron's agent on the fake datapath
/// gives, bridge by bridge, exactly the flows a real Neutron 29.0.0
/// deployment of the seed lab had (the shared reference capture, ports mapped
/// by role because the real server chose its own ids and service-port MACs).
#[test]
fn harness_reproduces_a_real_neutron_capture() {
    // The same capture, committed with the project (tests/reference/seed-fip).
    let capture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/seed-fip");
    assert!(capture.is_dir(), "tests/reference/seed-fip is missing");
    let (code, out, err) = run(&["--capture", capture.to_str().unwrap()]);
    assert_eq!(code, 0, "the harness differs from the real capture:\n{out}\n{err}");
    assert!(out.contains("the harness reproduces the real capture; 9 bridges compared"), "{out}");
    assert!(out.contains("compute1     br-int         51         0            0"), "{out}");
}
