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

/// Run `scripts/compare-export` over a recorded real-Neutron API dump.
fn compare_export(dump: &std::path::Path) -> (i32, String) {
    let out = Command::new("python3")
        .arg(root().join("scripts/compare-export"))
        .arg("--api-dump")
        .arg(dump)
        .arg(root().join("labs/seed.yaml"))
        .args(["--allow-host", "controller", "--dvr", env!("CARGO_BIN_EXE_dvr")])
        .output()
        .expect("python3 runs scripts/compare-export");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// Client compatibility: real Neutron 29.0.0's state after
/// `dvr apply -f labs/seed.yaml` (recorded in
/// `tests/reference/api-parity/seed-applied/`), read back by `dvr export`
/// (hosts from its agents), plans like `labs/seed.yaml` on every host once
/// what Neutron allocates itself (ids, router/DHCP port MACs and addresses)
/// is mapped by role. The controller runs no agent: Neutron does not know it.
#[test]
fn export_of_the_real_neutron_plans_like_the_applied_file() {
    let (code, out) = compare_export(&root().join("tests/reference/api-parity/seed-applied"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("the export plans like the file on every host"), "{out}");
    assert!(out.contains("3 hosts taken from its agents"), "{out}");
    for host in ["network", "compute1", "compute2"] {
        let line = out.lines().find(|l| l.starts_with(&format!("{host} "))).unwrap_or_else(|| panic!("no row for {host}:\n{out}"));
        let n: Vec<usize> = line.split_whitespace().skip(1).take(3).map(|x| x.parse().unwrap()).collect();
        assert!(n[0] > 150 && n[1] == 0 && n[2] == 0, "{host}: {line}");
    }
}

#[test]
fn positive_control_an_export_of_another_deployment_differs() {
    let dir = tempfile::tempdir().unwrap();
    let src = root().join("tests/reference/api-parity/seed-applied");
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    // vm4 bound to compute2 instead of compute1: the plans of both hosts must change.
    let ports = dir.path().join("ports.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&ports).unwrap()).unwrap();
    let vm4 = v["ports"].as_array_mut().unwrap().iter_mut().find(|p| p["name"] == "vm4").unwrap();
    assert_eq!(vm4["binding:host_id"], "compute1");
    vm4["binding:host_id"] = "compute2".into();
    std::fs::write(&ports, serde_json::to_string(&v).unwrap()).unwrap();
    let (code, out) = compare_export(dir.path());
    assert_eq!(code, 1, "{out}");
    for host in ["compute1", "compute2"] {
        assert!(out.lines().any(|l| l.starts_with(&format!("{host} ")) && l.ends_with("DIFFERS")), "{host} not reported:\n{out}");
    }
}

/// A loopback HTTP server answering `GET /v2.0/<c>` with `dir/<c>.json` and
/// 404 (Neutron's body) to anything else: a real Neutron's recorded state,
/// read-only. Returns its URL; the thread ends with the test process.
fn serve_dump(dir: std::path::PathBuf) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            reader.read_line(&mut first).unwrap_or_default();
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let mut parts = first.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("").split('?').next().unwrap_or(""));
            let file = path.strip_prefix("/v2.0/").map(|c| dir.join(format!("{c}.json")));
            let (status, body) = match file {
                Some(f) if method == "GET" && f.is_file() => ("200 OK", std::fs::read_to_string(f).unwrap()),
                _ => (
                    "404 Not Found",
                    r#"{"NeutronError": {"type": "HTTPNotFound", "message": "The resource could not be found.", "detail": ""}}"#.into(),
                ),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

/// `dvr apply` against the real Neutron's recorded state after the apply:
/// nothing left to create (compared by name, so no POST is sent; the dump
/// server would refuse it), and the skipped parts are said: hosts and
/// external hosts (no dvr extension). Positive control: with compute2's
/// Open vSwitch agent gone, the instances bound there are named.
#[test]
fn apply_to_the_real_neutron_state_changes_nothing_and_says_what_it_skips() {
    let apply = |dir: std::path::PathBuf| {
        let url = serve_dump(dir);
        let out = Command::new(env!("CARGO_BIN_EXE_dvr"))
            .args(["apply", "-f"])
            .arg(root().join("labs/seed.yaml"))
            .args(["--server", &url, "--format", "json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "dvr apply: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let sum = apply(root().join("tests/reference/api-parity/seed-applied"));
    assert_eq!(sum["changes"], 0, "{sum}");
    let warnings: Vec<&str> = sum["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("4 hosts not declared"), "{warnings:?}");
    assert!(warnings[1].contains("1 external hosts not declared"), "{warnings:?}");

    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(root().join("tests/reference/api-parity/seed-applied")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    let agents = dir.path().join("agents.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&agents).unwrap()).unwrap();
    v["agents"].as_array_mut().unwrap().retain(|a| !(a["host"] == "compute2" && a["agent_type"] == "Open vSwitch agent"));
    std::fs::write(&agents, serde_json::to_string(&v).unwrap()).unwrap();
    let sum = apply(dir.path().to_path_buf());
    let text = sum["warnings"].to_string();
    for vm in ["vm3", "vm5"] {
        assert!(text.contains(&format!("instance `{vm}`: host `compute2` has no live Open vSwitch agent")), "{vm}: {text}");
    }
    assert!(!text.contains("instance `vm1`"), "{text}");
}
