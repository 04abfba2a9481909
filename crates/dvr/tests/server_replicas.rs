//! Two `dvr server` replicas on one PostgreSQL: a write through one is visible
//! through the other, and the other's change-log reader (a long-poll on
//! `GET /v2.0/dvr/changes`) sees it within 100 ms of the write's answer.

mod support;

use serde_json::json;
use std::time::{Duration, Instant};
use support::*;

#[test]
fn a_write_through_one_replica_reaches_the_others_long_poll_within_100_ms() {
    let pg = Pg::start();
    let tmp = tempfile::tempdir().unwrap();
    let a = Server::start(&pg.url, &tmp.path().join("a.log"));
    let b = Server::start(&pg.url, &tmp.path().join("b.log"));
    apply_seed_hosts(&a, tmp.path());
    let mut worst = Duration::ZERO;
    for round in 0..5 {
        // Start from the head both replicas agree on (B catches up asynchronously).
        let head = changes_revision(&a.get("/v2.0/dvr/changes?since=0&timeout=0"));
        let t0 = Instant::now();
        while changes_revision(&b.get(&format!("/v2.0/dvr/changes?since={head}&timeout=0"))) < head {
            assert!(t0.elapsed() < Duration::from_secs(10), "replica B never reached revision {head}");
            std::thread::sleep(Duration::from_millis(10));
        }
        let since = head;
        // B's reader waits (up to 10 s) for anything after `since`.
        let url = b.url.clone();
        let reader = std::thread::spawn(move || {
            let t = Instant::now();
            let (st, v) = http("GET", &format!("{url}/v2.0/dvr/changes?since={since}&timeout=10"), None);
            (st, v, Instant::now(), t.elapsed())
        });
        // Give the long-poll time to be parked on the server.
        std::thread::sleep(Duration::from_millis(300));
        let body = json!({"network": {"name": format!("replicated-{round}"), "provider:network_type": "vlan", "provider:physical_network": "physnet1", "provider:segmentation_id": 500 + round}});
        let (st, v) = a.req("POST", "/v2.0/networks", Some(&body));
        let written = Instant::now();
        assert_eq!(st, 201, "{v}");
        let id = v["network"]["id"].as_str().unwrap().to_string();
        let (st, changes, seen, waited) = reader.join().unwrap();
        assert_eq!(st, 200, "{changes}");
        let revs = change_revisions(&changes);
        assert!(revs.iter().any(|r| *r > since), "B's long-poll returned after {waited:?} without the new change: {changes}");
        assert!(waited >= Duration::from_millis(250), "B's long-poll returned before the write ({waited:?}): it did not wait");
        let lag = seen.saturating_duration_since(written);
        eprintln!("round {round}: B saw A's write {lag:?} after A answered");
        worst = worst.max(lag);
        // Visible through B.
        let shown = b.get(&format!("/v2.0/networks/{id}"));
        assert_eq!(shown["network"]["name"], format!("replicated-{round}"));
    }
    assert!(worst < Duration::from_millis(100), "B's change-log reader saw a write through A only after {worst:?} (must be < 100 ms)");
    drop((a, b));
    drop(pg);
}
