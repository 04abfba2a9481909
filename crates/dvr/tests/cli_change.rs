//! `dvr plan --change`: the plan after a change, computed by the incremental
//! planner, equals the full plan of the same deployment written as a file;
//! a change that names nothing fails as bad input with a fix.

use std::process::{Command, Output};

fn dvr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dvr")).args(args).output().expect("run dvr")
}

fn plan_json(args: &[&str]) -> serde_json::Value {
    let out = dvr(&[&["plan", "--profile", "current", "--format", "json"], args].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The seed lab with `edits` applied to its YAML, as a file.
fn seed_file(dir: &tempfile::TempDir, edits: &[(&str, &str)]) -> String {
    // The demo paths do not shape the plan; an edit that removes an endpoint
    // would leave paths naming it, which validation rejects.
    let mut yaml = dvr_model::SEED_YAML.split("\npaths:").next().expect("text before paths").to_string();
    for (from, to) in edits {
        assert!(yaml.contains(from), "the seed lab no longer contains {from:?}");
        yaml = yaml.replacen(from, to, 1);
    }
    let p = dir.path().join("changed.yaml");
    std::fs::write(&p, yaml).unwrap();
    p.display().to_string()
}

#[test]
fn incremental_change_equals_the_edited_file() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, Vec<(&str, &str)>); 4] = [
        (
            "remove-instance:vm1",
            vec![
                ("  - {name: vm1, host: compute1, network: test1, ip: 192.168.1.9}\n", ""),
                ("floating_ips:\n  - {ip: 10.100.0.7, instance: vm1}\n", "floating_ips: []\n"),
            ],
        ),
        ("remove-router-interface:router1:test2-v4", vec![("interfaces: [test1-v4, test2-v4]", "interfaces: [test1-v4]")]),
        (
            "disassociate-floating-ip:10.100.0.7",
            vec![("  - {ip: 10.100.0.7, instance: vm1}\n", "  - {ip: 10.100.0.7, network: external}\n")],
        ),
        (
            "remove-host:compute2",
            vec![
                ("  - name: compute2\n    role: compute\n    bridge_mappings: {physnet1: br-vlan, extnet: br-ex}\n", ""),
                ("  - {name: vm3, host: compute2, network: test1, ip: 192.168.1.20}\n", ""),
                ("  - {name: vm5, host: compute2, network: test2, ip: 192.168.2.20}\n", ""),
            ],
        ),
    ];
    for (change, edits) in cases {
        let before = plan_json(&[]);
        let after = plan_json(&["--change", change]);
        assert_ne!(before["hosts"], after["hosts"], "{change} changed nothing");
        let file = seed_file(&dir, &edits);
        let full = plan_json(&["-t", &file]);
        assert_eq!(after["hosts"], full["hosts"], "{change}");
    }
}

#[test]
fn a_change_that_names_nothing_is_bad_input_with_a_fix() {
    let out = dvr(&["plan", "--change", "remove-host:nope"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(out.stdout.is_empty());
    assert!(err.contains("no host `nope`") && err.contains("fix: name one of: controller, network, compute1, compute2"), "{err}");
    let out = dvr(&["plan", "--change", "reboot:compute1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown change kind"));
}
