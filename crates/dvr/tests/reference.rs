//! Real Neutron as the reference: every capture committed under
//! `tests/reference/` (made by `scripts/reference`, a real Neutron 29.0.0 DVR
//! deployment) is compared with `dvr plan --profile current` of the same
//! topology by `scripts/compare-reference`, host by host and kind by kind.
//! No Neutron is started here; the captures are the data. Never skipped.
//!
//! Positive control: a capture with one real difference put back (the
//! `--random-fully` of a SNAT rule removed) must be reported, with the line.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Run the comparison; (exit code, stdout + stderr).
fn compare(capture: &Path) -> (i32, String) {
    let out = Command::new("python3")
        .arg(root().join("scripts/compare-reference"))
        .arg(capture)
        .args(["--dvr", env!("CARGO_BIN_EXE_dvr")])
        .output()
        .expect("python3 runs scripts/compare-reference");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn captures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("tests/reference"))
        .expect("tests/reference holds the committed captures")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("topology.yaml").is_file())
        .collect();
    v.sort();
    v
}

#[test]
fn every_committed_capture_matches_the_plan_in_every_modelled_kind() {
    let caps = captures();
    assert!(!caps.is_empty(), "no captures under tests/reference");
    for cap in caps {
        let (code, out) = compare(&cap);
        assert_eq!(code, 0, "{}: real Neutron and the plan differ:\n{out}", cap.display());
        assert!(out.contains("no difference in any modelled kind"), "{out}");
        // Something was compared on every host: flows on br-int at least.
        for line in out.lines().filter(|l| l.starts_with("flows br-int")) {
            let matched: usize = line.split_whitespace().nth(2).and_then(|n| n.parse().ok()).unwrap_or(0);
            assert!(matched > 0, "{}: nothing matched on br-int: {line}", cap.display());
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

#[test]
fn positive_control_a_missing_random_fully_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("seed-fip");
    copy_dir(&root().join("tests/reference/seed-fip"), &cap);
    let snat = std::fs::read_dir(cap.join("network"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("iptables-snat-"))
        .expect("the network node has a snat namespace");
    let text = std::fs::read_to_string(&snat).unwrap();
    let changed = text.replacen(" --random-fully", "", 1);
    assert_ne!(changed, text, "the capture has a --random-fully SNAT rule");
    std::fs::write(&snat, changed).unwrap();
    let (code, out) = compare(&cap);
    assert_eq!(code, 1, "a changed SNAT rule was not reported:\n{out}");
    assert!(out.contains("~ real:") && out.contains("\"random_fully\":false"), "{out}");
}

/// One real ping the capture recorded (`pings.txt`: `FROM TO IP OK|FAIL`).
struct Ping {
    from: String,
    ip: String,
    ok: bool,
}

fn pings(cap: &Path) -> Option<Vec<Ping>> {
    let text = std::fs::read_to_string(cap.join("pings.txt")).ok()?;
    Some(
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                assert_eq!(w.len(), 4, "{}: bad pings.txt line `{l}`", cap.display());
                Ping { from: w[0].to_string(), ip: w[2].to_string(), ok: w[3] == "OK" }
            })
            .collect(),
    )
}

/// The walkthrough's paths traced over real Neutron's own state (`dvr trace
/// --dumps` of the capture, no topology file involved) and over our plan of
/// the same file: each verdict equals the real ping the capture recorded for
/// that path.
#[test]
fn traces_over_real_neutron_state_agree_with_its_real_pings() {
    let mut compared = 0;
    for cap in captures() {
        let Some(pings) = pings(&cap) else { continue };
        let topo = dvr_model::load_file(&cap.join("topology.yaml")).expect("the capture's topology loads");
        for p in pings {
            // An instance sends by name; an external host by its address on the external subnet.
            let from = if topo.instances.iter().any(|i| i.name == p.from) {
                p.from.clone()
            } else {
                topo.resolve_address(&p.from).unwrap_or_else(|| panic!("{}: unknown sender {}", cap.display(), p.from)).to_string()
            };
            // Over real Neutron's imported state, and over our own plan of the same file.
            let topo_file = cap.join("topology.yaml");
            let sources: [(&str, Vec<&std::ffi::OsStr>); 2] = [
                ("the imported capture", vec!["--dumps".as_ref(), cap.as_os_str()]),
                ("the plan of topology.yaml", vec!["-t".as_ref(), topo_file.as_os_str(), "--from".as_ref(), p.from.as_ref()]),
            ];
            for (what, args) in sources {
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_dvr"));
                cmd.args(["trace", "--profile", "current", "--format", "minimal", "--expect", "delivered", "--to", &p.ip]);
                if what.starts_with("the imported") {
                    cmd.args(["--from", &from]);
                }
                let out = cmd.args(args).output().expect("dvr trace runs");
                let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
                let twin_ok = out.status.success();
                assert_eq!(
                    twin_ok,
                    p.ok,
                    "{}: {} -> {}: real ping {}, twin over {what} {}:\n{text}",
                    cap.display(),
                    p.from,
                    p.ip,
                    if p.ok { "answered" } else { "failed" },
                    if twin_ok { "delivered" } else { "not delivered" }
                );
                compared += 1;
            }
        }
    }
    eprintln!("{compared} trace verdicts (imported state and plan) compared with real pings");
    assert!(compared > 0, "no committed capture records real pings (pings.txt)");
}
