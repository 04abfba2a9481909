//! `dvr plan -t FILE` on bad topology files: exit status 2, nothing on stdout,
//! and a message on stderr that names the file and says how to fix it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The seed lab with `from` replaced by `to` (once).
fn seed_with(from: &str, to: &str) -> String {
    let seed = dvr_model::SEED_YAML;
    assert!(seed.contains(from), "the seed lab no longer contains {from:?}");
    seed.replacen(from, to, 1)
}

fn dvr_plan(topology: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dvr")).arg("plan").arg("-t").arg(topology).output().expect("run dvr")
}

fn write(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, yaml).expect("write the topology file");
    path
}

fn scratch_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("dvr-cli-errors-").tempdir_in(std::env::temp_dir()).expect("temporary directory")
}

/// Exit status 2 (bad input), nothing on stdout, and stderr naming the file,
/// saying every `what` and how to fix it.
fn assert_rejected(path: &Path, what: &[&str]) {
    let out = dvr_plan(path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(out.stdout.is_empty(), "a rejected topology must print no plan");
    assert!(stderr.contains(&path.display().to_string()), "stderr does not name {}:\n{stderr}", path.display());
    assert!(stderr.contains("fix:"), "stderr has no fix:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for w in what {
        assert!(stderr.contains(w), "expected {w:?} in:\n{stderr}");
    }
}

#[test]
fn unknown_key_is_rejected_with_its_line() {
    let dir = scratch_dir();
    let yaml = seed_with("    role: network\n", "    role: network\n    brige_mappings: {}\n");
    let line = yaml.lines().position(|l| l.contains("brige_mappings")).unwrap() + 1;
    let path = write(dir.path(), "typo.yaml", &yaml);
    assert_rejected(&path, &[&format!("{}:{line}:", path.display()), "unknown field `brige_mappings`", "did you mean `bridge_mappings`"]);
}

#[test]
fn invalid_deployment_is_rejected_with_every_problem() {
    let dir = scratch_dir();
    let yaml = seed_with("segmentation_id: 148", "segmentation_id: 5000").replacen(
        "{name: vm3, host: compute2",
        "{name: vm3, host: controller",
        1,
    );
    let path = write(dir.path(), "invalid.yaml", &yaml);
    assert_rejected(
        &path,
        &["2 problem(s)", "networks[1] (test2): field `segmentation_id`: 5000 is not a VLAN id", "instances[2] (vm3): field `host`"],
    );
}

#[test]
fn clash_found_during_allocation_is_rejected() {
    let dir = scratch_dir();
    let yaml = seed_with("ip: 192.168.1.20}", "ip: 192.168.1.9}");
    let path = write(dir.path(), "clash.yaml", &yaml);
    assert_rejected(&path, &["instances[2] (vm3): field `ip`: 192.168.1.9 is already used by instances[0] (vm1)"]);
}

#[test]
fn nonexistent_file_is_named() {
    let dir = scratch_dir();
    let path = dir.path().join("no-such-topology.yaml");
    let out = dvr_plan(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "stderr:\n{stderr}");
    assert!(out.stdout.is_empty());
    assert!(stderr.contains(&path.display().to_string()), "stderr does not name the path:\n{stderr}");
    assert!(stderr.contains("cannot read"), "{stderr}");
    assert!(stderr.contains("fix:"), "{stderr}");
}

#[test]
fn valid_copy_of_the_seed_plans() {
    let dir = scratch_dir();
    let path = write(dir.path(), "seed.yaml", dvr_model::SEED_YAML);
    let out = dvr_plan(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("compute1"), "{stdout}");
    assert!(stdout.contains("br-int"), "{stdout}");
}
