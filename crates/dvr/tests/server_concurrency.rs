//! Concurrency: 100 concurrent clients create 20 ports each on one subnet of a
//! real `dvr server` (loopback, every request bounded), on SQLite and on
//! PostgreSQL. No address or MAC may be handed out twice, and every
//! allocation must be accounted for: each answered port is in the list with
//! what its answer said, and the list holds nothing else.

mod support;

use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Barrier};
use support::*;

const CLIENTS: usize = 100;
const PER_CLIENT: usize = 20;

fn hundred_clients(server: &Server, dir: &std::path::Path) {
    apply_seed_hosts(server, dir);
    let (st, net) = server.req(
        "POST",
        "/v2.0/networks",
        Some(&json!({"network": {"name": "busy", "provider:network_type": "vlan", "provider:physical_network": "physnet1", "provider:segmentation_id": 200}})),
    );
    assert_eq!(st, 201, "{net}");
    let net_id = net["network"]["id"].as_str().unwrap().to_string();
    let (st, sub) = server.req(
        "POST",
        "/v2.0/subnets",
        Some(&json!({"subnet": {"name": "busy-v4", "network_id": net_id, "ip_version": 4, "cidr": "10.60.0.0/20", "gateway_ip": "10.60.0.1"}})),
    );
    assert_eq!(st, 201, "{sub}");
    let start = Arc::new(Barrier::new(CLIENTS));
    let t0 = std::time::Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (url, net_id, start) = (server.url.clone(), net_id.clone(), start.clone());
            std::thread::spawn(move || -> Vec<Value> {
                start.wait();
                (0..PER_CLIENT)
                    .map(|i| {
                        let body = json!({"port": {"name": format!("c{c}-p{i}"), "network_id": net_id, "device_owner": "compute:nova", "binding:host_id": format!("compute{}", 1 + c % 2)}});
                        let (st, v) = http("POST", &format!("{url}/v2.0/ports"), Some(&body));
                        assert_eq!(st, 201, "client {c} port {i}: {v}");
                        v["port"].clone()
                    })
                    .collect()
            })
        })
        .collect();
    let answered: Vec<Value> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
    eprintln!("{} ports from {CLIENTS} clients in {:?}", answered.len(), t0.elapsed());
    assert_eq!(answered.len(), CLIENTS * PER_CLIENT);

    let mut ips = HashSet::new();
    let mut macs = HashSet::new();
    for p in &answered {
        let ip = p["fixed_ips"][0]["ip_address"].as_str().unwrap_or_else(|| panic!("answer without address: {p}"));
        assert!(ip.starts_with("10.60.") && ip != "10.60.0.1", "address outside the pool: {p}");
        assert!(ips.insert(ip.to_string()), "address {ip} handed out twice");
        let mac = p["mac_address"].as_str().unwrap();
        assert!(mac.starts_with("fa:16:3e:"), "MAC outside fa:16:3e: {mac}");
        assert!(macs.insert(mac.to_string()), "MAC {mac} handed out twice");
    }
    // The server's own ports (DHCP) on the subnet share neither address nor MAC.
    let own = server.get(&format!("/v2.0/ports?network_id={net_id}&device_owner=network:dhcp"));
    for p in own["ports"].as_array().unwrap() {
        assert!(!ips.contains(p["fixed_ips"][0]["ip_address"].as_str().unwrap()), "DHCP port shares an address: {p}");
        assert!(!macs.contains(p["mac_address"].as_str().unwrap()), "DHCP port shares a MAC: {p}");
    }
    // Accounted for: the server's list of instance ports is exactly what was answered.
    let listed = server.get(&format!("/v2.0/ports?network_id={net_id}&device_owner=compute:nova"));
    let listed: HashMap<String, &Value> =
        listed["ports"].as_array().unwrap().iter().map(|p| (p["id"].as_str().unwrap().to_string(), p)).collect();
    assert_eq!(listed.len(), answered.len(), "the server lists {} ports for {} answered creations", listed.len(), answered.len());
    for p in &answered {
        let l = listed.get(p["id"].as_str().unwrap()).unwrap_or_else(|| panic!("answered port missing from the list: {p}"));
        assert_eq!(l["fixed_ips"], p["fixed_ips"]);
        assert_eq!(l["mac_address"], p["mac_address"]);
    }
}

#[test]
fn hundred_clients_on_sqlite_get_distinct_addresses_and_macs() {
    let tmp = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", tmp.path().join("dvr.db").display());
    let server = Server::start(&db, &tmp.path().join("server.log"));
    hundred_clients(&server, tmp.path());
}

#[test]
fn hundred_clients_on_postgresql_get_distinct_addresses_and_macs() {
    let pg = Pg::start();
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&pg.url, &tmp.path().join("server.log"));
    hundred_clients(&server, tmp.path());
    drop(server);
    drop(pg);
}
