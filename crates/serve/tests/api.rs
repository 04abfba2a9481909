//! CRUD of every resource, Neutron list semantics, If-Match, the change log
//! and its long-poll, DVR MACs under concurrency, agents, token auth.

mod common;

use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn is_neutron_time(v: &Value) -> bool {
    let s = v.as_str().unwrap_or("");
    s.len() == 20 && s.ends_with('Z') && chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%SZ").is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_of_every_resource() {
    let s = common::start().await;
    let ids = common::build_seed(&s).await;
    for (path, key, id, new_name) in [
        ("networks", "network", ids["test1"].clone(), "test1-renamed"),
        ("subnets", "subnet", ids["test1-v4"].clone(), "test1-v4-renamed"),
        ("ports", "port", ids["vm2"].clone(), "vm2-renamed"),
        ("routers", "router", ids["router1"].clone(), "router1-renamed"),
    ] {
        let (st, v) = s.get(&format!("/v2.0/{path}/{id}")).await;
        assert_eq!(st, 200);
        let o = &v[key];
        assert_eq!(o["id"], id.as_str());
        assert_eq!(o["tenant_id"], o["project_id"]);
        assert!(is_neutron_time(&o["created_at"]) && is_neutron_time(&o["updated_at"]), "{o}");
        assert_eq!(o["tags"], json!([]));
        assert_eq!(o["description"], "");
        let rev = o["revision_number"].as_u64().unwrap();
        let (st, v) = s.put(&format!("/v2.0/{path}/{id}"), json!({ key: {"name": new_name, "description": "d"} })).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v[key]["name"], new_name);
        assert_eq!(v[key]["revision_number"].as_u64().unwrap(), rev + 1);
        let (_, l) = s.get(&format!("/v2.0/{path}?name={new_name}")).await;
        assert_eq!(l[path].as_array().unwrap().len(), 1);
    }
    // The renamed objects still build the same addresses (nothing renumbered).
    let (_, p) = s.get(&format!("/v2.0/ports/{}", ids["vm2"])).await;
    assert_eq!(p["port"]["fixed_ips"][0]["ip_address"], "192.168.1.10");

    // Router: shapes of the gateway and the implicit ports.
    let (_, r) = s.get(&format!("/v2.0/routers/{}", ids["router1"])).await;
    let gw = &r["router"]["external_gateway_info"];
    assert_eq!(gw["network_id"], ids["external"].as_str());
    assert_eq!(gw["enable_snat"], true);
    assert_eq!(gw["external_fixed_ips"][0]["subnet_id"], ids["external-v4"].as_str());
    assert_eq!(r["router"]["distributed"], true);
    let (_, qr) = s.get(&format!("/v2.0/ports?device_owner=network:router_interface_distributed&device_id={}", ids["router1"])).await;
    let qr = qr["ports"].as_array().unwrap();
    assert_eq!(qr.len(), 2);
    assert!(qr.iter().all(|p| p["binding:vif_type"] == "distributed" && p["binding:host_id"] == ""));
    let gws: HashSet<&str> = qr.iter().map(|p| p["fixed_ips"][0]["ip_address"].as_str().unwrap()).collect();
    assert_eq!(gws, HashSet::from(["192.168.1.1", "192.168.2.1"]));
    for owner in [
        "network:router_centralized_snat",
        "network:router_gateway",
        "network:floatingip_agent_gateway",
        "network:dhcp",
        "network:floatingip",
    ] {
        let (_, l) = s.get(&format!("/v2.0/ports?device_owner={owner}")).await;
        assert!(!l["ports"].as_array().unwrap().is_empty(), "no {owner} port");
    }

    // Floating IP: disassociate, reassociate, delete.
    let fip = ids["fip"].clone();
    let (_, f) = s.get(&format!("/v2.0/floatingips/{fip}")).await;
    assert_eq!(f["floatingip"]["fixed_ip_address"], "192.168.1.9");
    assert_eq!(f["floatingip"]["router_id"], ids["router1"].as_str());
    assert_eq!(f["floatingip"]["status"], "ACTIVE");
    let (st, f) = s.put(&format!("/v2.0/floatingips/{fip}"), json!({"floatingip": {"port_id": null}})).await;
    assert_eq!(st, 200);
    assert_eq!(f["floatingip"]["port_id"], Value::Null);
    assert_eq!(f["floatingip"]["fixed_ip_address"], Value::Null);
    let (st, f) = s.put(&format!("/v2.0/floatingips/{fip}"), json!({"floatingip": {"port_id": ids["vm4"]}})).await;
    assert_eq!(st, 200);
    assert_eq!(f["floatingip"]["fixed_ip_address"], "192.168.2.10");
    assert_eq!(f["floatingip"]["floating_ip_address"], "10.100.0.7", "the address never moves");
    let (st, _) = s.delete(&format!("/v2.0/floatingips/{fip}")).await;
    assert_eq!(st, 204);
    let (st, _) = s.get(&format!("/v2.0/floatingips/{fip}")).await;
    assert_eq!(st, 404);

    // Port: unbound port, allocated address and MAC, then delete.
    let p = s.create("ports", "port", json!({"name": "spare", "network_id": ids["test2"]})).await;
    assert!(p["mac_address"].as_str().unwrap().starts_with("fa:16:3e:"));
    assert_eq!(p["status"], "DOWN");
    let ip = p["fixed_ips"][0]["ip_address"].as_str().unwrap().to_string();
    assert!(ip.starts_with("192.168.2."));
    let (st, _) = s.delete(&format!("/v2.0/ports/{}", p["id"].as_str().unwrap())).await;
    assert_eq!(st, 204);

    // Remove an interface, delete subnet and network in order.
    let n = s.create("networks", "network", json!({"name": "extra"})).await;
    let sub = s.create("subnets", "subnet", json!({"name": "extra-v4", "network_id": n["id"], "cidr": "172.20.0.0/24", "dns_nameservers": ["8.8.8.8"], "host_routes": [{"destination": "10.0.0.0/8", "nexthop": "172.20.0.254"}]})).await;
    assert_eq!(sub["dns_nameservers"], json!(["8.8.8.8"]));
    let rid = ids["router1"].clone();
    let (st, v) = s.put(&format!("/v2.0/routers/{rid}/add_router_interface"), json!({"subnet_id": sub["id"]})).await;
    assert_eq!(st, 200, "{v}");
    // Real Neutron 29's answer (tests/reference/api-parity/neutron.json): no tenant_id.
    for k in ["id", "port_id", "subnet_id", "subnet_ids", "network_id", "project_id"] {
        assert!(v.get(k).is_some(), "add_router_interface lacks {k}: {v}");
    }
    assert!(v.get("tenant_id").is_none(), "Neutron 29 answers add_router_interface without tenant_id: {v}");
    let (st, v) = s.put(&format!("/v2.0/routers/{rid}/remove_router_interface"), json!({"subnet_id": sub["id"]})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(s.delete(&format!("/v2.0/subnets/{}", sub["id"].as_str().unwrap())).await.0, 204);
    assert_eq!(s.delete(&format!("/v2.0/networks/{}", n["id"].as_str().unwrap())).await.0, 204);

    // Router without interfaces can go.
    let r2 = s
        .create("routers", "router", json!({"name": "r2", "external_gateway_info": {"network_id": ids["external"], "enable_snat": false}}))
        .await;
    assert_eq!(r2["external_gateway_info"]["enable_snat"], false);
    assert_eq!(s.delete(&format!("/v2.0/routers/{}", r2["id"].as_str().unwrap())).await.0, 204);

    // DVR extension: hosts and external hosts.
    let h = s.create("dvr/hosts", "host", json!({"name": "compute3", "role": "compute", "bridge_mappings": {"physnet1": "br-vlan"}})).await;
    assert!(h["dvr_mac"].as_str().unwrap().starts_with("fa:16:3f:"));
    let (st, v) = s.put(&format!("/v2.0/dvr/hosts/{}", h["id"].as_str().unwrap()), json!({"host": {"nics": {"physnet1": "eth5"}}})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["host"]["nics"]["physnet1"], "eth5");
    assert_eq!(s.delete(&format!("/v2.0/dvr/hosts/{}", h["id"].as_str().unwrap())).await.0, 204);
    let e = s.create("dvr/external-hosts", "external_host", json!({"name": "ext2", "network_id": ids["external"]})).await;
    assert!(e["ip_address"].as_str().unwrap().starts_with("10.100.0."));
    assert_eq!(s.delete(&format!("/v2.0/dvr/external-hosts/{}", e["id"].as_str().unwrap())).await.0, 204);
    // Removing a host that still has instances is refused by the model's rules.
    let (_, c1) = s.get("/v2.0/dvr/hosts?name=compute1").await;
    let (st, v) = s.delete(&format!("/v2.0/dvr/hosts/{}", c1["hosts"][0]["id"].as_str().unwrap())).await;
    assert_eq!((st, v["NeutronError"]["type"].as_str()), (409, Some("HostInUse")), "{v}");

    // Version and extension documents.
    let (_, v) = s.get("/").await;
    assert_eq!(v["versions"][0]["id"], "v2.0");
    let (_, v) = s.get("/v2.0").await;
    assert!(v["resources"].as_array().unwrap().iter().any(|r| r["collection"] == "ports"));
    let (st, v) = s.get("/v2.0/extensions/dvr").await;
    assert_eq!((st, v["extension"]["alias"].as_str()), (200, Some("dvr")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_filter_select_sort_and_paginate() {
    let s = common::start().await;
    let ids = common::build_seed(&s).await;
    let names = |v: &Value, k: &str| -> Vec<String> {
        v[k].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap_or("").to_string()).collect()
    };
    let (_, v) = s.get(&format!("/v2.0/ports?network_id={}&device_owner=compute:nova", ids["test1"])).await;
    let mut got = names(&v, "ports");
    got.sort();
    assert_eq!(got, ["vm1", "vm2", "vm3"]);
    let (_, v) = s.get("/v2.0/ports?fixed_ips=ip_address=192.168.2.20").await;
    assert_eq!(names(&v, "ports"), ["vm5"]);
    let (_, v) = s.get(&format!("/v2.0/ports?fixed_ips=subnet_id={}&device_owner=compute:nova", ids["test2-v4"])).await;
    assert_eq!(names(&v, "ports").len(), 2);
    let (_, v) = s.get(&format!("/v2.0/networks?id={}&id={}", ids["test1"], ids["test2"])).await;
    assert_eq!(names(&v, "networks").len(), 2);
    let (_, v) = s.get("/v2.0/networks?router:external=True").await;
    assert_eq!(names(&v, "networks"), ["external"]);
    let (_, v) = s.get("/v2.0/networks?name=nope").await;
    assert_eq!(v["networks"], json!([]));
    // fields=
    let (_, v) = s.get("/v2.0/networks?fields=id&fields=name").await;
    for n in v["networks"].as_array().unwrap() {
        let keys: HashSet<&str> = n.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, HashSet::from(["id", "name"]));
    }
    // sorting
    let (_, v) = s.get("/v2.0/networks?sort_key=name&sort_dir=desc").await;
    assert_eq!(names(&v, "networks"), ["test2", "test1", "external"]);
    let (_, v) = s.get("/v2.0/networks?sort_key=name&sort_dir=asc").await;
    assert_eq!(names(&v, "networks"), ["external", "test1", "test2"]);
    // The fast path (typed filters only) renders exactly what the general path renders.
    let (_, fast) = s.get(&format!("/v2.0/ports?network_id={}", ids["test1"])).await;
    let (_, slow) = s.get(&format!("/v2.0/ports?network_id={}&sort_key=id", ids["test1"])).await;
    let by_id = |v: &Value| -> std::collections::BTreeMap<String, Value> {
        v["ports"].as_array().unwrap().iter().map(|p| (p["id"].as_str().unwrap().to_string(), p.clone())).collect()
    };
    assert_eq!(by_id(&fast), by_id(&slow));
    assert!(by_id(&fast).len() >= 5, "vm1..vm3, DHCP, qr, sg on test1");
    // pagination: follow next links through every port, two at a time.
    let (_, all) = s.get("/v2.0/ports?sort_key=id").await;
    let all: Vec<String> = all["ports"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_string()).collect();
    assert!(all.len() > 5);
    let mut seen = Vec::new();
    let mut path = "/v2.0/ports?sort_key=id&limit=2".to_string();
    loop {
        let (st, v) = s.get(&path).await;
        assert_eq!(st, 200);
        let page = v["ports"].as_array().unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|p| p["id"].as_str().unwrap().to_string()));
        let next = v["ports_links"]
            .as_array()
            .and_then(|l| l.iter().find(|x| x["rel"] == "next"))
            .map(|x| x["href"].as_str().unwrap().to_string());
        match next {
            Some(href) => path = href.split_once("/v2.0").map(|(_, p)| format!("/v2.0{p}")).unwrap(),
            None => break,
        }
    }
    assert_eq!(seen, all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_revision_number() {
    let s = common::start().await;
    let n = s.create("networks", "network", json!({"name": "n", "provider:network_type": "vxlan"})).await;
    let id = n["id"].as_str().unwrap();
    let rev = n["revision_number"].as_u64().unwrap();
    let stale = format!("revision_number={}", rev + 5);
    let (st, v) = s.req("PUT", &format!("/v2.0/networks/{id}"), Some(json!({"network": {"name": "m"}})), &[("If-Match", &stale)]).await;
    assert_eq!(st, 412, "{v}");
    assert_eq!(v["NeutronError"]["type"], "RevisionNumberConstraintFailed");
    let (st, _) = s.req("DELETE", &format!("/v2.0/networks/{id}"), None, &[("If-Match", &stale)]).await;
    assert_eq!(st, 412);
    let good = format!("revision_number={rev}");
    let (st, v) = s.req("PUT", &format!("/v2.0/networks/{id}"), Some(json!({"network": {"name": "m"}})), &[("If-Match", &good)]).await;
    assert_eq!(st, 200, "{v}");
    // The old revision no longer matches.
    let (st, _) = s.req("DELETE", &format!("/v2.0/networks/{id}"), None, &[("If-Match", &good)]).await;
    assert_eq!(st, 412);
    let now = format!("revision_number={}", rev + 1);
    let (st, _) = s.req("DELETE", &format!("/v2.0/networks/{id}"), None, &[("If-Match", &now)]).await;
    assert_eq!(st, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_log_has_no_gap_and_long_poll_wakes_on_write() {
    let s = common::start().await;
    common::build_seed(&s).await;
    let (_, v) = s.get("/v2.0/dvr/changes?since=0").await;
    let last = v["revision"].as_i64().unwrap();
    let revs: Vec<i64> = v["changes"].as_array().unwrap().iter().map(|c| c["revision"].as_i64().unwrap()).collect();
    let distinct: Vec<i64> = revs.iter().copied().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    assert_eq!(distinct, (1..=last).collect::<Vec<_>>(), "every revision has its entries, none missing");
    assert!(revs.windows(2).all(|w| w[0] <= w[1]));
    for c in v["changes"].as_array().unwrap() {
        assert!(["create", "update", "delete"].contains(&c["op"].as_str().unwrap()));
        assert!(c["object"].is_object() && c["resource"].is_string() && c["id"].is_string());
    }
    // From any revision: exactly the later entries.
    for since in [0, 1, last / 2, last - 1] {
        let (_, w) = s.get(&format!("/v2.0/dvr/changes?since={since}")).await;
        let want = revs.iter().filter(|r| **r > since).count();
        assert_eq!(w["changes"].as_array().unwrap().len(), want, "since={since}");
    }
    // limit= cuts at a revision boundary; following the answered revision reads everything once.
    let (mut since, mut read) = (0i64, 0usize);
    while since < last {
        let (_, w) = s.get(&format!("/v2.0/dvr/changes?since={since}&limit=3")).await;
        let got = w["changes"].as_array().unwrap();
        let upto = w["revision"].as_i64().unwrap();
        assert!(got.iter().all(|c| c["revision"].as_i64().unwrap() > since && c["revision"].as_i64().unwrap() <= upto));
        assert_eq!(got.len(), revs.iter().filter(|r| **r > since && **r <= upto).count(), "a revision was split");
        read += got.len();
        since = upto;
    }
    assert_eq!(read, revs.len());
    // A follower ahead of the store is answered at once.
    let t0 = Instant::now();
    let (_, w) = s.get(&format!("/v2.0/dvr/changes?since={}&timeout=10", last + 100)).await;
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(w["revision"].as_i64().unwrap(), last);
    // Nothing new: the poll waits out its timeout and answers empty.
    let t0 = Instant::now();
    let (_, w) = s.get(&format!("/v2.0/dvr/changes?since={last}&timeout=0.3")).await;
    assert!(t0.elapsed() >= Duration::from_millis(280));
    assert_eq!(w["changes"], json!([]));
    // A write wakes a waiting poll at once.
    let url = format!("{}/v2.0/dvr/changes?since={last}&timeout=20", s.running.url());
    let http = s.http.clone();
    let poll = tokio::spawn(async move {
        let t = Instant::now();
        let v: Value = http.get(url).send().await.unwrap().json().await.unwrap();
        (v, t.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t_write = Instant::now();
    s.create("networks", "network", json!({"name": "late"})).await;
    let (v, waited) = poll.await.unwrap();
    assert!(waited < Duration::from_secs(5), "the poll slept through the write");
    println!("long-poll woke {:?} after the write was sent", t_write.elapsed());
    assert_eq!(v["revision"].as_i64().unwrap(), last + 1);
    assert_eq!(v["changes"][0]["object"]["name"], "late");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registration_and_ports_never_share_addresses() {
    let s = common::start().await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (http, url) = (s.http.clone(), format!("{}/v2.0/dvr/hosts", s.running.url()));
        tasks.push(tokio::spawn(async move {
            let role = if i == 0 { "network" } else { "compute" };
            let b = json!({"host": {"name": format!("h{i}"), "role": role, "bridge_mappings": {"physnet1": "br-vlan"}}});
            let r = http.post(url).json(&b).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }));
    }
    let mut macs = HashSet::new();
    for t in tasks {
        let (st, v) = t.await.unwrap();
        assert_eq!(st, 201, "{v}");
        assert!(macs.insert(v["host"]["dvr_mac"].as_str().unwrap().to_string()));
    }
    assert_eq!(macs.len(), 40);
    let n = s.create("networks", "network", json!({"name": "n"})).await;
    s.create("subnets", "subnet", json!({"name": "n-v4", "network_id": n["id"], "cidr": "10.1.0.0/22"})).await;
    let mut tasks = Vec::new();
    for c in 0..10 {
        let (http, url, net) = (s.http.clone(), format!("{}/v2.0/ports", s.running.url()), n["id"].clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for k in 0..5 {
                let b = json!({"port": {"name": format!("p{c}-{k}"), "network_id": net, "device_owner": "compute:nova", "binding:host_id": format!("h{}", 1 + (c + k) % 39)}});
                let r = http.post(&url).json(&b).send().await.unwrap();
                assert_eq!(r.status().as_u16(), 201);
                out.push(r.json::<Value>().await.unwrap());
            }
            out
        }));
    }
    let (mut ips, mut pmacs) = (HashSet::new(), HashSet::new());
    for t in tasks {
        for p in t.await.unwrap() {
            assert!(ips.insert(p["port"]["fixed_ips"][0]["ip_address"].as_str().unwrap().to_string()));
            assert!(pmacs.insert(p["port"]["mac_address"].as_str().unwrap().to_string()));
        }
    }
    assert_eq!(ips.len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_report_and_show_alive() {
    let s = common::start().await;
    let body = json!({"agent": {"host": "compute1", "agent_type": "L3 agent", "binary": "dvr-agent",
        "configurations": {"agent_mode": "dvr", "bridge_mappings": {"physnet1": "br-vlan"}}}});
    let (st, v) = s.post("/v2.0/dvr/agents/report", body.clone()).await;
    assert_eq!(st, 200, "{v}");
    let id = v["agent"]["id"].as_str().unwrap().to_string();
    let (st, v2) = s.post("/v2.0/dvr/agents/report", body).await;
    assert_eq!(st, 200);
    assert_eq!(v2["agent"]["id"], id.as_str(), "a report upserts, it does not duplicate");
    let (_, l) = s.get("/v2.0/agents?agent_type=L3 agent").await;
    let a = &l["agents"][0];
    assert_eq!(l["agents"].as_array().unwrap().len(), 1);
    assert_eq!(a["alive"], true);
    assert_eq!(a["host"], "compute1");
    assert_eq!(a["configurations"]["agent_mode"], "dvr");
    let (st, v) = s.get(&format!("/v2.0/agents/{id}")).await;
    assert_eq!((st, v["agent"]["binary"].as_str()), (200, Some("dvr-agent")));
    let (st, v) = s.post("/v2.0/dvr/agents/report", json!({"agent": {"host": "x", "agent_type": "Toaster"}})).await;
    assert_eq!((st, v["NeutronError"]["type"].as_str()), (400, Some("BadRequest")));
    assert_eq!(s.delete(&format!("/v2.0/agents/{id}")).await.0, 204);
    assert_eq!(s.get(&format!("/v2.0/agents/{id}")).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_answers_401_without_the_token() {
    let s = common::start_with(dvr_serve::Auth::Token("s3cret".into())).await;
    let url = s.running.url();
    let plain = reqwest::Client::new();
    let r = plain.get(format!("{url}/v2.0/networks")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["NeutronError"]["type"], "HTTPUnauthorized");
    let r = plain.get(format!("{url}/v2.0/networks")).header("X-Auth-Token", "wrong").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = plain.post(format!("{url}/v2.0/networks")).json(&json!({"network": {"name": "x"}})).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // The version document is public, as in Neutron.
    assert_eq!(plain.get(format!("{url}/")).send().await.unwrap().status().as_u16(), 200);
    // Positive control: the right token works.
    let (st, _) = s.get("/v2.0/networks").await;
    assert_eq!(st, 200);
    assert_eq!(s.running.store.snapshot().revision, 0, "a refused write wrote nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_create_is_one_transaction() {
    let s = common::start().await;
    let ids = common::build_seed(&s).await;
    let rev = s.running.store.snapshot().revision;
    let ports: Vec<Value> = (0..30).map(|i| json!({"name": format!("bulk{i}"), "network_id": ids["test2"]})).collect();
    let (st, v) = s.post("/v2.0/ports", json!({ "ports": ports })).await;
    assert_eq!(st, 201, "{v}");
    let made = v["ports"].as_array().unwrap();
    assert_eq!(made.len(), 30);
    let ips: HashSet<&str> = made.iter().map(|p| p["fixed_ips"][0]["ip_address"].as_str().unwrap()).collect();
    assert_eq!(ips.len(), 30);
    assert_eq!(s.running.store.snapshot().revision, rev + 1, "a bulk create is one revision");
    // One bad entry refuses the whole request.
    let bad = json!({"ports": [{"name": "ok1", "network_id": ids["test2"]}, {"name": "clash", "network_id": ids["test2"], "fixed_ips": [{"ip_address": "192.168.2.10"}]}]});
    let (st, v) = s.post("/v2.0/ports", bad).await;
    assert_eq!((st, v["NeutronError"]["type"].as_str()), (409, Some("IpAddressAlreadyAllocated")));
    let (_, l) = s.get("/v2.0/ports?name=ok1").await;
    assert_eq!(l["ports"], json!([]));
    assert_eq!(s.running.store.snapshot().revision, rev + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_a_port_later_keeps_its_address_and_makes_an_instance() {
    let s = common::start().await;
    let ids = common::build_seed(&s).await;
    let p = s.create("ports", "port", json!({"name": "vm9", "network_id": ids["test1"]})).await;
    let (ip, mac, id) = (p["fixed_ips"][0]["ip_address"].clone(), p["mac_address"].clone(), p["id"].as_str().unwrap().to_string());
    assert_eq!(p["binding:vif_type"], "unbound");
    let (st, v) =
        s.put(&format!("/v2.0/ports/{id}"), json!({"port": {"device_owner": "compute:nova", "binding:host_id": "compute2"}})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["port"]["fixed_ips"][0]["ip_address"], ip);
    assert_eq!(v["port"]["mac_address"], mac);
    // DOWN until compute2's agent says its flows are in place.
    assert_eq!(v["port"]["status"], "DOWN");
    let (st, v) = s.put(&format!("/v2.0/dvr/ports/{id}/status"), json!({"port": {"status": "ACTIVE"}})).await;
    assert_eq!(st, 200, "{v}");
    let (_, v) = s.get(&format!("/v2.0/ports/{id}")).await;
    assert_eq!(v["port"]["status"], "ACTIVE");
    let (_, t) = s.get("/v2.0/dvr/topology").await;
    assert!(t["instances"].as_array().unwrap().iter().any(|x| x["name"] == "vm9" && x["host"] == "compute2"));
    // Deleting other ports never renumbers it.
    assert_eq!(s.delete(&format!("/v2.0/ports/{}", ids["vm2"])).await.0, 204);
    let (_, v) = s.get(&format!("/v2.0/ports/{id}")).await;
    assert_eq!(v["port"]["fixed_ips"][0]["ip_address"], ip);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_interface_by_port_id() {
    let s = common::start().await;
    let ids = common::build_seed(&s).await;
    let n = s.create("networks", "network", json!({"name": "n5"})).await;
    let sub = s.create("subnets", "subnet", json!({"name": "n5-v4", "network_id": n["id"], "cidr": "192.168.5.0/24"})).await;
    let rid = ids["router1"].clone();
    // A port on another address cannot be a DVR interface.
    let other =
        s.create("ports", "port", json!({"name": "gwx", "network_id": n["id"], "fixed_ips": [{"ip_address": "192.168.5.77"}]})).await;
    let (st, v) = s.put(&format!("/v2.0/routers/{rid}/add_router_interface"), json!({"port_id": other["id"]})).await;
    assert_eq!((st, v["NeutronError"]["type"].as_str()), (400, Some("BadRequest")), "{v}");
    // The gateway port becomes the interface and keeps its id and MAC.
    let gw = s
        .create(
            "ports",
            "port",
            json!({"name": "gw5", "network_id": n["id"], "fixed_ips": [{"subnet_id": sub["id"], "ip_address": "192.168.5.1"}]}),
        )
        .await;
    let (st, v) = s.put(&format!("/v2.0/routers/{rid}/add_router_interface"), json!({"port_id": gw["id"]})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["port_id"], gw["id"]);
    assert_eq!(v["subnet_id"], sub["id"]);
    let (_, p) = s.get(&format!("/v2.0/ports/{}", gw["id"].as_str().unwrap())).await;
    assert_eq!(p["port"]["device_owner"], "network:router_interface_distributed");
    assert_eq!(p["port"]["device_id"], rid.as_str());
    assert_eq!(p["port"]["mac_address"], gw["mac_address"]);
    let (_, t) = s.get("/v2.0/dvr/topology").await;
    assert!(t["routers"][0]["interfaces"].as_array().unwrap().contains(&json!("n5-v4")));
    // Removing it by port_id detaches the subnet again.
    let (st, v) = s.put(&format!("/v2.0/routers/{rid}/remove_router_interface"), json!({"port_id": gw["id"]})).await;
    assert_eq!(st, 200, "{v}");
    let (_, t) = s.get("/v2.0/dvr/topology").await;
    assert!(!t["routers"][0]["interfaces"].as_array().unwrap().contains(&json!("n5-v4")));
    assert_eq!(s.get(&format!("/v2.0/ports/{}", gw["id"].as_str().unwrap())).await.0, 404);
}

/// Neutron's `revises_on_change`: a network's revision moves with its
/// subnets, a router's with its interfaces (seen in real Neutron 29,
/// tests/reference/api-parity/neutron.json); and a floating IP shows its
/// port's details (`port_details`, null when unassociated).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parents_revise_on_child_changes_and_floating_ips_show_port_details() {
    let s = common::start().await;
    let ids = common::build_seed(&s).await;
    let rev = |v: &Value, key: &str| v[key]["revision_number"].as_u64().unwrap();
    let n = s.create("networks", "network", json!({"name": "blue"})).await;
    let nid = n["id"].as_str().unwrap().to_string();
    let (_, before) = s.get(&format!("/v2.0/networks/{nid}")).await;
    let sub = s.create("subnets", "subnet", json!({"name": "blue-v4", "network_id": nid, "cidr": "172.21.0.0/24"})).await;
    let (_, after) = s.get(&format!("/v2.0/networks/{nid}")).await;
    assert!(rev(&after, "network") > rev(&before, "network"), "a new subnet did not revise its network: {before} → {after}");

    let rid = ids["router1"].clone();
    let (_, r0) = s.get(&format!("/v2.0/routers/{rid}")).await;
    let (st, v) = s.put(&format!("/v2.0/routers/{rid}/add_router_interface"), json!({"subnet_id": sub["id"]})).await;
    assert_eq!(st, 200, "{v}");
    let (_, r1) = s.get(&format!("/v2.0/routers/{rid}")).await;
    assert!(rev(&r1, "router") > rev(&r0, "router"), "add_router_interface did not revise the router");
    // Positive control: a read changes nothing.
    let (_, r1b) = s.get(&format!("/v2.0/routers/{rid}")).await;
    assert_eq!(rev(&r1b, "router"), rev(&r1, "router"));
    let (st, _) = s.put(&format!("/v2.0/routers/{rid}/remove_router_interface"), json!({"subnet_id": sub["id"]})).await;
    assert_eq!(st, 200);
    let (_, r2) = s.get(&format!("/v2.0/routers/{rid}")).await;
    assert!(rev(&r2, "router") > rev(&r1, "router"), "remove_router_interface did not revise the router");

    let (_, fips) = s.get("/v2.0/floatingips").await;
    let f = &fips["floatingips"][0];
    assert_eq!(f["port_details"]["name"], "vm1", "{f}");
    assert_eq!(f["port_details"]["device_owner"], "compute:nova", "{f}");
    assert!(f.get("name").is_none(), "Neutron's floating IPs have no name: {f}");
    let fid = f["id"].as_str().unwrap();
    let (st, v) = s.put(&format!("/v2.0/floatingips/{fid}"), json!({"floatingip": {"port_id": null}})).await;
    assert_eq!(st, 200, "{v}");
    assert!(v["floatingip"]["port_details"].is_null(), "{v}");
}
