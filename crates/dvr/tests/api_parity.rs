//! API parity with real Neutron: `scripts/api-parity` sends its sequence of
//! 107 REST requests (create, filtered lists, show, `If-Match` updates,
//! deletes, add/remove router interface, floating IPs, agents and the error
//! cases) to a `dvr server` it starts on SQLite, and compares the status
//! codes, error types, keys and value types, list counts and revision bumps
//! with the answers real Neutron 29.0.0 gave to the same sequence, recorded
//! in `tests/reference/api-parity/neutron.json`. No Neutron is started here.
//!
//! Positive controls: the recorded answers with one difference put back
//! (a status code and error type, a missing key) must be reported by step,
//! and an accepted difference that no longer occurs must fail too.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Run the parity script against `fixture` (default: the committed one).
fn parity(fixture: Option<&std::path::Path>, accept: Option<&std::path::Path>) -> (i32, String) {
    let mut c = Command::new("python3");
    c.arg(root().join("scripts/api-parity")).args(["--dvr-bin", env!("CARGO_BIN_EXE_dvr"), "--quiet"]);
    if let Some(f) = fixture {
        c.arg("--against").arg(f);
    }
    if let Some(a) = accept {
        c.arg("--accept").arg(a);
    }
    let out = c.output().expect("python3 runs scripts/api-parity");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn fixture() -> serde_json::Value {
    let text = std::fs::read_to_string(root().join("tests/reference/api-parity/neutron.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn step<'a>(fx: &'a mut serde_json::Value, id: &str) -> &'a mut serde_json::Value {
    fx["steps"].as_array_mut().unwrap().iter_mut().find(|s| s["id"] == id).unwrap_or_else(|| panic!("no step {id}"))
}

#[test]
fn dvr_server_answers_as_the_recorded_real_neutron() {
    let (code, out) = parity(None, None);
    assert_eq!(code, 0, "dvr server differs from the recorded real Neutron:\n{out}");
    let summary = out.lines().find(|l| l.starts_with("107 requests:")).unwrap_or_else(|| panic!("no summary:\n{out}"));
    assert!(summary.contains("0 differences not accepted"), "{summary}");
    // Most answers are identical in every compared respect.
    let same: usize = summary.split_whitespace().nth(2).and_then(|n| n.parse().ok()).unwrap();
    assert!(same >= 100, "{summary}");
}

#[test]
fn positive_control_differences_are_reported_by_step() {
    let dir = tempfile::tempdir().unwrap();
    let mut fx = fixture();
    // Real Neutron said 409 IpAddressAlreadyAllocated; pretend it said 400 BadRequest.
    let s = step(&mut fx, "ports.create-duplicate-ip");
    assert_eq!(s["status"], 409);
    s["status"] = 400.into();
    s["error_type"] = "BadRequest".into();
    // And that a shown network had a key we do not send.
    step(&mut fx, "networks.show")["shape"]["network"]["dns_domain"] = "str".into();
    // And that a subnet did not revise its network.
    step(&mut fx, "networks.show-after-subnet")["revision_bumped"] = false.into();
    let path = dir.path().join("neutron.json");
    std::fs::write(&path, serde_json::to_string(&fx).unwrap()).unwrap();
    let (code, out) = parity(Some(&path), None);
    assert_eq!(code, 1, "{out}");
    for want in [
        "status 400 != 409",
        "error type BadRequest != IpAddressAlreadyAllocated",
        "key only in neutron: network.dns_domain (str)",
        "revision_number bumped: False != True",
    ] {
        assert!(out.contains(want), "`{want}` not reported:\n{out}");
    }
    assert!(out.lines().any(|l| l.starts_with("ports ") && l.contains("create-duplicate-ip") && l.ends_with("DIFFERS")), "{out}");
}

#[test]
fn positive_control_a_stale_acceptance_fails() {
    let dir = tempfile::tempdir().unwrap();
    let accept = dir.path().join("accepted.txt");
    let mut text = std::fs::read_to_string(root().join("tests/reference/api-parity/accepted.txt")).unwrap();
    text.push_str("networks.show: key only in neutron: network.dns_domain (str)\n");
    std::fs::write(&accept, text).unwrap();
    let (code, out) = parity(None, Some(&accept));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("accepted but no longer seen"), "{out}");
}
