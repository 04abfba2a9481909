//! Crash safety: a real `dvr server` process on SQLite is `kill -9`ed in the
//! middle of a burst of 1,000 writes (port creations from 8 clients), then
//! started again on the same file. Every write that was answered 2xx must be
//! there with what the answer said, no object may be half-made, and the change
//! log must have no gap.

mod support;

use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use support::*;

const WRITES: usize = 1000;
const CLIENTS: usize = 8;
/// The kill comes after this many 2xx answers: well inside the burst.
const KILL_AFTER: usize = 300;

#[test]
fn kill_9_mid_burst_loses_no_acknowledged_write_and_leaves_no_gap() {
    let tmp = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", tmp.path().join("dvr.db").display());
    let log = tmp.path().join("server.log");
    let port = free_port();
    let mut server = Server::start_on(port, &db, &log, &[]);
    apply_seed_hosts(&server, tmp.path());
    let (st, net) = server.req(
        "POST",
        "/v2.0/networks",
        Some(&json!({"network": {"name": "crash", "provider:network_type": "vlan", "provider:physical_network": "physnet1", "provider:segmentation_id": 100}})),
    );
    assert_eq!(st, 201, "{net}");
    let net_id = net["network"]["id"].as_str().unwrap().to_string();
    let (st, sub) = server.req(
        "POST",
        "/v2.0/subnets",
        Some(&json!({"subnet": {"name": "crash-v4", "network_id": net_id, "ip_version": 4, "cidr": "10.50.0.0/20"}})),
    );
    assert_eq!(st, 201, "{sub}");

    let acked: Arc<Mutex<Vec<Value>>> = Arc::default();
    let answered = Arc::new(AtomicUsize::new(0));
    let failed_without_answer = Arc::new(AtomicUsize::new(0));
    let url = server.url.clone();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (acked, answered, lost, url, net_id) = (acked.clone(), answered.clone(), failed_without_answer.clone(), url.clone(), net_id.clone());
            std::thread::spawn(move || {
                for i in (c..WRITES).step_by(CLIENTS) {
                    let body = json!({"port": {"name": format!("burst-{i}"), "network_id": net_id, "device_owner": "compute:nova", "binding:host_id": "compute1"}});
                    match try_http("POST", &format!("{url}/v2.0/ports"), Some(&body)) {
                        Ok((st, v)) if (200..300).contains(&st) => {
                            acked.lock().unwrap().push(v["port"].clone());
                            answered.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok((st, v)) => panic!("write {i} answered {st}: {v}"),
                        // The server is gone: this write and the rest of this client's writes have no answer.
                        Err(_) => {
                            lost.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    let t0 = std::time::Instant::now();
    while answered.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(t0.elapsed().as_secs() < 120, "only {} writes answered in 120 s", answered.load(Ordering::SeqCst));
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    server.kill9();
    for w in workers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let lost = failed_without_answer.load(Ordering::SeqCst);
    eprintln!("killed after {} acknowledged writes; {lost} clients saw the connection die", acked.len());
    assert!(acked.len() >= KILL_AFTER && acked.len() < WRITES, "the kill did not land inside the burst ({} acked)", acked.len());
    assert!(lost > 0, "no client saw the kill: it came after the burst");

    // Restart on the same database.
    let server = Server::start_on(free_port(), &db, &log, &[]);
    let all_ports = server.get(&format!("/v2.0/ports?network_id={net_id}"));
    let all_ports = all_ports["ports"].as_array().unwrap();
    // The server's own ports (DHCP) are not part of the burst.
    let (ports, implicit): (Vec<&Value>, Vec<&Value>) = all_ports.iter().partition(|p| p["device_owner"] == "compute:nova");
    assert!(implicit.iter().all(|p| p["device_owner"].as_str().is_some_and(|o| o.starts_with("network:"))), "{implicit:?}");
    let by_id: HashMap<&str, &Value> = ports.iter().map(|p| (p["id"].as_str().unwrap(), *p)).collect();
    // Every acknowledged write is there, exactly as it was answered.
    for a in &acked {
        let id = a["id"].as_str().unwrap();
        let p = by_id.get(id).unwrap_or_else(|| panic!("acknowledged port {} ({id}) is missing after the restart", a["name"]));
        assert_eq!(p["mac_address"], a["mac_address"], "port {id} changed its MAC");
        assert_eq!(p["fixed_ips"], a["fixed_ips"], "port {id} changed its fixed IPs");
    }
    // No half-made object: every port has its name, MAC and exactly one address
    // in the subnet; no address or MAC twice; nothing beyond what was sent.
    let mut ips = HashSet::new();
    let mut macs = HashSet::new();
    for p in all_ports.iter().filter(|p| p["device_owner"] != "compute:nova") {
        let ip = p["fixed_ips"][0]["ip_address"].as_str().unwrap().to_string();
        ips.insert(ip);
        macs.insert(p["mac_address"].as_str().unwrap().to_string());
    }
    for p in &ports {
        assert!(p["name"].as_str().is_some_and(|n| n.starts_with("burst-")), "unexpected port {p}");
        let fixed = p["fixed_ips"].as_array().unwrap_or_else(|| panic!("port without fixed_ips: {p}"));
        assert_eq!(fixed.len(), 1, "port with {} addresses: {p}", fixed.len());
        assert!(fixed[0]["ip_address"].as_str().is_some_and(|ip| ip.starts_with("10.50.")), "{p}");
        assert!(ips.insert(fixed[0]["ip_address"].as_str().unwrap().to_string()), "address given twice: {p}");
        assert!(macs.insert(p["mac_address"].as_str().unwrap().to_string()), "MAC given twice: {p}");
    }
    assert!(ports.len() >= acked.len() && ports.len() <= acked.len() + CLIENTS, "{} ports for {} acked writes", ports.len(), acked.len());
    // The change log: revisions 1..=N with no gap and no repeat.
    // (One transaction may log several changes under one revision.)
    let mut revs = all_change_revisions(&server);
    assert!(!revs.is_empty(), "empty change log");
    assert!(revs.windows(2).all(|w| w[0] <= w[1]), "change log out of order");
    revs.dedup();
    let first = revs[0];
    for (i, r) in revs.iter().enumerate() {
        assert_eq!(*r, first + i as u64, "change log gap at position {i}: {:?}", &revs[i.saturating_sub(3)..(i + 3).min(revs.len())]);
    }
    assert!(revs.len() >= ports.len() + 2, "{} revisions for {} ports + network + subnet", revs.len(), ports.len());
    // And the server still takes writes after the crash.
    let (st, v) = server.req("POST", "/v2.0/ports", Some(&json!({"port": {"name": "after", "network_id": net_id}})));
    assert_eq!(st, 201, "{v}");
    let ip = v["port"]["fixed_ips"][0]["ip_address"].as_str().unwrap().to_string();
    assert!(!ips.contains(&ip), "the new port got an address already in use: {ip}");
}
