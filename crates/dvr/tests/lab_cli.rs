//! `dvr lab status` as scripts see it: exit status 0 on a clean lab, non-zero
//! with the drifted host, kind and item named when a daemon died or state
//! drifted, and 0 again after one `dvr lab up`. Also two `dvr lab up` started
//! together on one prefix: both succeed, the second says it waits.
//!
//! Needs root and Open vSwitch: `cargo test -p dvr --test lab_cli -- --ignored`
//! (as root, under `flock /tmp/dvr-real-ovs.lock` when others share the machine).

use std::process::{Command, Output};

fn dvr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dvr")).args(args).output().expect("run dvr")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Tears the lab down however the test ends.
struct Down(String);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = dvr(&["lab", "down", "--prefix", &self.0]);
    }
}

#[test]
#[ignore = "needs root and Open vSwitch"]
fn status_exit_code_follows_drift() {
    let prefix = format!("dvrc{}", std::process::id() % 10000);
    let _down = Down(prefix.clone());
    let p = ["--prefix", prefix.as_str()];

    // Two `lab up` at once: both succeed, one waits for the other.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| dvr(&["lab", "up", p[0], p[1]]));
        std::thread::sleep(std::time::Duration::from_millis(200));
        let b = s.spawn(|| dvr(&["lab", "up", "--prefix", &prefix]));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(a.status.success() && b.status.success(), "both ups succeed:\n{}\n---\n{}", text(&a), text(&b));
    assert!(text(&a).contains("waiting for it") || text(&b).contains("waiting for it"), "one of them waited");

    let clean = dvr(&["lab", "status", "--prefix", &prefix]);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
    assert!(text(&clean).contains("compute1") && text(&clean).contains("matches its plan"));

    let pid = std::fs::read_to_string(format!("/run/dvr-lab/{prefix}/hosts/compute2/ovs-vswitchd.pid")).unwrap();
    assert!(Command::new("kill").args(["-9", pid.trim()]).status().unwrap().success());
    std::thread::sleep(std::time::Duration::from_millis(300));
    let drift = dvr(&["lab", "status", "--prefix", &prefix]);
    let out = text(&drift);
    assert_eq!(drift.status.code(), Some(1), "status must fail on a dead daemon:\n{out}");
    assert!(out.contains("ovs-vswitchd NOT RUNNING"), "{out}");
    assert!(out.lines().any(|l| l.contains("compute2") && l.contains("daemon") && l.contains("ovs-vswitchd is not running")), "{out}");
    assert!(out.contains("`dvr lab up --prefix"), "says how to repair: {out}");

    let json = dvr(&["lab", "status", "--prefix", &prefix, "--format", "json"]);
    assert_eq!(json.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["clean"], false);
    assert!(v["drift"].as_array().unwrap().iter().any(|d| d["host"] == "compute2" && d["kind"] == "daemon"));

    let up = dvr(&["lab", "up", "--prefix", &prefix]);
    assert!(up.status.success(), "{}", text(&up));
    assert!(text(&up).contains("compute2: restarted ovs-vswitchd"), "{}", text(&up));
    let again = dvr(&["lab", "status", "--prefix", &prefix]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));

    let down = dvr(&["lab", "down", "--prefix", &prefix]);
    assert!(down.status.success(), "{}", text(&down));
    let gone = dvr(&["lab", "status", "--prefix", &prefix]);
    assert!(text(&gone).contains("is not up"), "{}", text(&gone));
}
