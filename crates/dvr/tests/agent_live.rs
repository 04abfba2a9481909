//! The live lab end to end on real Open vSwitch: `dvr lab up --live` starts
//! empty (server, one `dvr agent` per emulated host, the outside world's
//! follower), `dvr apply -f labs/seed.yaml` builds it and the nine seed paths
//! ping; then changes through the real `openstack` client (boot an instance,
//! move a floating IP, remove a router interface, re-bind and unbind a port,
//! delete the instance) and faults (`kill -9` of an `ovs-vswitchd`, of an
//! agent with and without changes meanwhile, an instance deleted while its
//! agent is down, a server restart). `scripts/agent-live` drives it and
//! prints the figures; this test runs it and fails on any `FAIL:` line or a
//! non-zero exit, and writes the figures to
//! `target/tmp/agent-live-figures.txt`, which `scripts/test` prints.
//!
//! Needs root, Open vSwitch and the pinned client venv (`scripts/venv`):
//! `flock -o /tmp/dvr-real-ovs.lock cargo test -p dvr --test agent_live -- --ignored --nocapture`.

mod support;

use std::process::Command;

#[test]
#[ignore = "needs root and Open vSwitch"]
fn live_lab_follows_the_openstack_client_through_changes_and_faults() {
    let openstack = support::venv().join("bin/openstack");
    let script = support::repo().join("scripts/agent-live");
    let prefix = format!("dvra{}", std::process::id() % 10000);
    let port = support::free_port();
    let out = Command::new("bash")
        .arg(script)
        .arg(&prefix)
        .env("DVR", env!("CARGO_BIN_EXE_dvr"))
        .env("OPENSTACK", &openstack)
        .env("PORT", port.to_string())
        .output()
        .expect("run scripts/agent-live");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    assert!(!text.contains("FAIL:"), "{text}");
    assert!(out.status.success(), "{text}");
    // Positive control: the script did reach its end, through every stage.
    for stage in [
        "agent rows",
        "the nine seed paths ping",
        "openstack port delete vm6",
        "fault: restart the server",
        "== figures",
        "agent-live: done",
    ] {
        assert!(text.contains(stage), "the run never reached `{stage}`:\n{text}");
    }
    // The figures: written where `scripts/test` shows them in its summary
    // (a passing test's output is captured otherwise).
    let figures = figures(&text);
    assert!(figures.lines().count() >= 8, "the figures section is short:\n{figures}");
    let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("agent-live-figures.txt");
    std::fs::write(&file, &figures).expect("write the figures");
}

/// The `== figures` section of the script's output, up to its last line.
fn figures(text: &str) -> String {
    let from = text.find("== figures").expect("checked by the caller");
    text[from..].lines().take_while(|l| !l.starts_with("agent-live: done")).map(|l| format!("{l}\n")).collect()
}
