//! openstacksdk (pinned, from the same venv as the client) against a real
//! `dvr server`: `scripts/sdk_check.py` creates, lists with filters, updates
//! with `If-Match` (`if_revision=`, a stale one must get 412) and deletes
//! every resource type.

mod support;

use support::*;

#[test]
fn openstacksdk_creates_lists_updates_with_if_match_and_deletes_everything() {
    let venv = venv();
    let tmp = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", tmp.path().join("dvr.db").display());
    let server = Server::start(&db, &tmp.path().join("server.log"));
    apply_seed_hosts(&server, tmp.path());
    let py = venv.join("bin/python3").display().to_string();
    let script = repo().join("scripts/sdk_check.py").display().to_string();
    let o = run_bounded(300, &[&py, &script, &server.url], &[("HOME", "/tmp")]);
    assert_eq!(o.code, Some(0), "sdk_check.py failed:\n{}\n{}\nserver log:\n{}", o.stdout, o.stderr, server.log_text());
    // The script's own checks, counted: a script that checked nothing must not pass.
    let oks = o.stdout.lines().filter(|l| l.starts_with("ok: ")).count();
    assert!(oks >= 35, "only {oks} checks ran:\n{}", o.stdout);
    assert!(o.stdout.contains("sdk_check: all good"));
}
