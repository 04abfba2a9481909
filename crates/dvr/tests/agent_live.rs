//! The live control plane end to end on real Open vSwitch: `dvr server`, the
//! seed applied through the API, one `dvr agent` per emulated host, then
//! changes through the API (move a floating IP, remove a router interface,
//! boot and delete an instance) and faults (`kill -9` of an `ovs-vswitchd`, of
//! an agent, a server restart). `scripts/agent-live` drives it and prints the
//! figures; this test runs it and fails on any `FAIL:` line or a non-zero exit.
//!
//! Needs root and Open vSwitch:
//! `flock -o /tmp/dvr-real-ovs.lock cargo test -p dvr --test agent_live -- --ignored --nocapture`.

use std::process::Command;

#[test]
#[ignore = "needs root and Open vSwitch"]
fn agents_follow_the_server_through_changes_and_faults() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/agent-live");
    let prefix = format!("dvra{}", std::process::id() % 10000);
    let port = 20000 + std::process::id() % 20000;
    let out = Command::new("bash")
        .arg(script)
        .arg(&prefix)
        .env("DVR", env!("CARGO_BIN_EXE_dvr"))
        .env("PORT", port.to_string())
        .output()
        .expect("run scripts/agent-live");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    assert!(!text.contains("FAIL:"), "{text}");
    assert!(out.status.success(), "{text}");
    // Positive control: the script did reach its end and saw the agents.
    assert!(text.contains("agent rows"), "{text}");
    assert!(text.contains("fault: restart the server"), "{text}");
}
