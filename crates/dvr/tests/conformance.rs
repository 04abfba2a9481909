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

/// One run of every scenario, shared by the tests that read it.
struct Full {
    code: i32,
    out: String,
    err: String,
    report: Vec<serde_json::Value>,
}

fn full() -> &'static Full {
    static FULL: std::sync::OnceLock<Full> = std::sync::OnceLock::new();
    FULL.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("report.json");
        let (code, out, err) = run(&["--json", json.to_str().unwrap()]);
        let report = std::fs::read_to_string(&json).map(|t| serde_json::from_str(&t).unwrap()).unwrap_or_default();
        Full { code, out, err, report }
    })
}

#[test]
fn plan_matches_neutrons_own_ovs_agent_on_every_bridge() {
    let Full { code, out, err, report } = full();
    println!("{out}");
    assert_eq!(*code, 0, "differences from Neutron's agent (see above):\n{out}\n{err}");

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
    for r in report {
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
    // On VLAN networks (table 4) and on VXLAN ones (table 3).
    let d1 = with("D1");
    assert_eq!(d1.len(), 6, "{d1:?}");
    assert!(
        d1.iter()
            .all(|r| r["scenario"].as_str().unwrap().ends_with("remove router interface (router1, test2-v4)") && r["bridge"] == "br-int")
    );
    assert!(
        report.iter().all(|r| r["deviations"].as_array().unwrap().iter().all(|d| ["D1", "D2", "D3"].contains(&d["id"].as_str().unwrap())))
    );

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

/// VXLAN: Neutron's `OVSTunnelBridge`, l2population (`add_fdb_entries` with
/// the server's own `_create_agent_fdb`, `remove_fdb_entries` on changes) and
/// the ARP responder, against our br-tun, its tunnel ports and br-int's
/// tunnel flows (`labs/seed-vxlan.yaml`, `labs/seed-mixed.yaml`, the
/// generated deployment as VXLAN and three changes).
#[test]
fn plan_matches_neutrons_tunnel_bridge_and_l2population() {
    let Full { code, out, err, report } = full();
    assert_eq!(*code, 0, "differences from Neutron's agent:\n{out}\n{err}");
    let rows = |scenario: &str, bridge: &str| report.iter().filter(|r| r["scenario"] == scenario && r["bridge"] == bridge).count();
    // Every dataplane host has br-tun and its tunnel ports compared.
    for (scenario, hosts) in [
        ("seed-vxlan", 3),
        ("seed-mixed", 3),
        ("gen10-vxlan", 11),
        ("seed-vxlan: remove VM port (vm3)", 3),
        ("seed-vxlan: remove router interface (router1, test2-v4)", 3),
        ("seed-vxlan: remove host compute2", 2),
        ("seed-vxlan: add instance vm6 (compute2, test2)", 3),
    ] {
        assert_eq!(rows(scenario, "br-tun"), hosts, "{scenario}");
        assert_eq!(rows(scenario, "tun-ports"), hosts, "{scenario}");
        assert_eq!(rows(scenario, "br-int"), hosts, "{scenario}");
    }
    assert_eq!(rows("seed-mixed", "br-vlan"), 3, "the VLAN network's bridge is compared too");
    for r in report {
        assert!(r["matched"].as_u64().unwrap() > 0, "Neutron installed nothing on {r}");
        assert_eq!(r["missing"].as_array().unwrap().len(), 0, "{r}");
        assert_eq!(r["extra"].as_array().unwrap().len(), 0, "{r}");
        // D3 (egress_pkt_mark=0) is on every set of tunnel ports, and only there.
        let devs: Vec<&str> = r["deviations"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
        if r["bridge"] == "tun-ports" {
            assert_eq!(devs, ["D3"], "{r}");
        } else {
            assert!(!devs.contains(&"D3"), "{r}");
        }
    }
    let row = |scenario: &str, host: &str, bridge: &str| {
        format!("{scenario:<52} {host:<12} {bridge:<9} ")
            + &report
                .iter()
                .find(|r| r["scenario"] == scenario && r["host"] == host && r["bridge"] == bridge)
                .map(|r| format!("{:>7}", r["matched"].as_u64().unwrap()))
                .unwrap()
    };
    // Flow for flow: br-tun's defaults, DVR tables, per-network VNI, flood,
    // unicast and ARP-responder entries (two remote VTEPs per host).
    for (host, n) in [("network", 41), ("compute1", 43), ("compute2", 45)] {
        assert!(out.contains(&format!("{}       0     0", row("seed-vxlan", host, "br-tun"))), "{host}: {n}\n{out}");
        assert!(row("seed-vxlan", host, "br-tun").ends_with(&format!("{n:>7}")), "{host}");
        assert!(row("seed-vxlan", host, "tun-ports").ends_with("      2"), "{host}");
    }
    // vm3 gone: its unicast and ARP-responder entries leave the other hosts'
    // br-tun (compute2 keeps test1 through the router, so its tunnels stay).
    assert!(row("seed-vxlan: remove VM port (vm3)", "compute1", "br-tun").ends_with("     41"));
    // compute2 gone: its flood entries, unicast/ARP entries, tunnel port and
    // DVR MAC flows leave every other host.
    assert!(row("seed-vxlan: remove host compute2", "compute1", "tun-ports").ends_with("      1"));
    // vm6 booted on compute2: compute1 gets its unicast and ARP-responder entries.
    assert!(row("seed-vxlan: add instance vm6 (compute2, test2)", "compute1", "br-tun").ends_with("     45"));
}

#[test]
fn tunnel_positive_control_l2pop_entries_and_tunnel_ports_are_compared() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let (code, out, _) = run(&["--only", "seed-vxlan", "--control-tunnel", "--json", json.to_str().unwrap()]);
    assert_eq!(code, 1, "a plan missing l2population entries must fail:\n{out}");
    let report: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let missing = |host: &str, bridge: &str| {
        report.iter().find(|r| r["host"] == host && r["bridge"] == bridge).unwrap()["missing"].as_array().unwrap().len()
    };
    // Tables 0 (tunnel port), 4 (VNI), 20 (unicast), 21 (ARP responder), 22 (flood), and one tunnel port.
    for host in ["network", "compute1", "compute2"] {
        assert_eq!(missing(host, "br-tun"), 5, "{host}:\n{out}");
        assert_eq!(missing(host, "tun-ports"), 1, "{host}:\n{out}");
        assert_eq!(missing(host, "br-int"), 0, "{host}");
    }
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
    for r in report {
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
