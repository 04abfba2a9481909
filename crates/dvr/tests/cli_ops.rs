//! `dvr import`, `dvr trace --dumps` and `dvr verify` as a user runs them:
//! on the committed lab fixture (always) and on the real Neutron captures of
//! the shared reference (when present; required in CI).

use std::path::PathBuf;
use std::process::Command;

fn dvr(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dvr")).args(args).output().unwrap()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The shared real-Neutron capture (the tests using it are `shared_*`, ignored without ../shared).
fn capture() -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/real-neutron/seed-fip");
    assert!(p.exists(), "no shared reference capture at {}: this test needs ../shared beside the repository", p.display());
    p.display().to_string()
}

fn fixture() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sim/tests/fixtures/lab-compute1").display().to_string()
}

#[test]
fn verify_exit_status_is_0_when_all_hold_and_1_on_a_violation() {
    let ok = dvr(&["verify"]);
    assert_eq!(ok.status.code(), Some(0), "{}{}", stdout(&ok), stderr(&ok));
    assert!(stdout(&ok).ends_with("all invariants hold\n"), "{}", stdout(&ok));
    let bad = dvr(&["verify", "--profile", "current", "--format", "json"]);
    assert_eq!(bad.status.code(), Some(1), "{}", stderr(&bad));
    let v: serde_json::Value = serde_json::from_slice(&bad.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let failed: Vec<&str> =
        v["checks"].as_array().unwrap().iter().filter(|c| c["holds"] == false).map(|c| c["invariant"].as_str().unwrap()).collect();
    assert_eq!(failed, ["gateway-arp-contained"]);
    let matrix = dvr(&["verify", "--change", "remove-router-interface:router1:test2-v4", "--matrix"]);
    assert_eq!(matrix.status.code(), Some(0), "{}", stdout(&matrix));
    assert!(stdout(&matrix).contains("vm1          -> vm5                · unrouted"), "{}", stdout(&matrix));
}

#[test]
fn import_of_one_collected_host_lists_what_it_found() {
    let out = dvr(&["import", &fixture()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = stdout(&out);
    assert!(s.contains("host compute1 (Compute, DVR MAC fa:16:3f:d6:34:e2)"), "{s}");
    assert!(s.contains("  bridge br-int   8 ports, 40 flows"), "{s}");
    assert!(s.contains("  vm1      192.168.1.9/24     fa:16:3e:c9:17:ac on compute1 via 192.168.1.1"), "{s}");
}

#[test]
fn bad_dump_directories_are_bad_input_with_a_fix() {
    let out = dvr(&["import", env!("CARGO_MANIFEST_DIR")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("holds no host dump") && stderr(&out).contains("fix: pass what `dvr collect"), "{}", stderr(&out));
    let out = dvr(&["trace", "--dumps", &fixture(), "--from", "vm9", "--to", "192.168.1.10"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no instance or external host called `vm9`; endpoints are: vm1, vm2, vm4"), "{}", stderr(&out));
}

#[test]
#[ignore = "needs ../shared beside the repository: scripts/test runs it when present (always in CI)"]
fn shared_trace_and_verify_across_the_real_neutron_capture() {
    let cap = capture();
    let out = dvr(&["trace", "--dumps", &cap, "--from", "10.100.0.14", "--to", "10.100.0.39", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["delivered_to"], "vm1");
    assert_eq!(v["reply"]["delivered_to"], "10.100.0.14");
    let out = dvr(&["verify", "--dumps", &cap]);
    assert_eq!(out.status.code(), Some(1));
    let s = stdout(&out);
    assert!(s.contains("FAIL   gateway-arp-contained"), "{s}");
    assert!(s.contains("provenance: dump: flows-br-vlan.txt:"), "{s}");
    assert!(s.contains("ok     reachability                           26 pairs: 26 as expected"), "{s}");
}

#[test]
fn collect_says_what_is_missing_and_lab_collect_needs_a_lab() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("h").display().to_string();
    let o = dvr(&["lab", "collect", "--prefix", "dvr-no-such-lab", "--out", &out]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("lab `dvr-no-such-lab` is not up; run `dvr lab up` first"), "{}", stderr(&o));
    let o = dvr(&["collect", "--out", &out, "--host", "h1"]);
    if std::path::Path::new("/var/run/openvswitch/db.sock").exists() {
        // A system Open vSwitch runs here: the dump is written with its manifest.
        assert!(o.status.success(), "{}", stderr(&o));
        let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out_dir.path().join("h/manifest.json")).unwrap()).unwrap();
        assert_eq!(m["host"], "h1");
        assert!(m["files"].as_array().unwrap().iter().any(|f| f["command"].as_str().unwrap().contains("--format=json list interface")));
    } else {
        assert_eq!(o.status.code(), Some(1));
        assert!(
            stderr(&o).contains("host `h1`: cannot read Open vSwitch") && stderr(&o).contains("fix: run `dvr collect` as root"),
            "{}",
            stderr(&o)
        );
    }
}
