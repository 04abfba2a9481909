//! A small HTTP client and an in-process server on a temp SQLite file.

#![allow(dead_code)]

pub mod pg;

use serde_json::{Value, json};

/// A running server with its temp dir.
pub struct Srv {
    pub running: dvr_serve::Running,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    pub token: Option<String>,
}

pub async fn start() -> Srv {
    start_with(dvr_serve::Auth::None).await
}

pub async fn start_with(auth: dvr_serve::Auth) -> Srv {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("dvr.db").display());
    let token = match &auth {
        dvr_serve::Auth::Token(t) => Some(t.clone()),
        dvr_serve::Auth::None => None,
    };
    let cfg = dvr_serve::Config { listen: "127.0.0.1:0".parse().unwrap(), db, auth, ..Default::default() };
    let running = dvr_serve::start(cfg).await.unwrap();
    Srv { running, dir, http: reqwest::Client::new(), token }
}

impl Srv {
    pub fn db_url(&self) -> String {
        format!("sqlite:{}", self.dir.path().join("dvr.db").display())
    }

    /// Any request; returns status and JSON body (Null when empty).
    pub async fn req(&self, method: &str, path: &str, body: Option<Value>, headers: &[(&str, &str)]) -> (u16, Value) {
        let url = format!("{}{}", self.running.url(), path);
        let mut rb = self.http.request(method.parse().unwrap(), url);
        if let Some(t) = &self.token {
            rb = rb.header("X-Auth-Token", t);
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb.header("content-type", "application/json").body(b.to_string());
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) })
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.req("GET", path, None, &[]).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.req("POST", path, Some(body), &[]).await
    }
    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.req("PUT", path, Some(body), &[]).await
    }
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.req("DELETE", path, None, &[]).await
    }

    /// POST that must succeed; returns the created object.
    pub async fn create(&self, coll: &str, key: &str, attrs: Value) -> Value {
        let (s, v) = self.post(&format!("/v2.0/{coll}"), json!({ key: attrs })).await;
        assert_eq!(s, 201, "create {coll} {attrs}: {v}");
        v[key].clone()
    }
}

/// The walkthrough's seed lab, built through the API in the order of
/// `labs/seed.yaml`. Returns (network ids by name, subnet ids by name, router id, vm1 port id).
pub async fn build_seed(s: &Srv) -> std::collections::HashMap<String, String> {
    let mut ids = std::collections::HashMap::new();
    let maps = json!({"physnet1": "br-vlan", "extnet": "br-ex"});
    s.create("dvr/hosts", "host", json!({"name": "controller", "role": "controller"})).await;
    for (n, role) in [("network", "network"), ("compute1", "compute"), ("compute2", "compute")] {
        s.create("dvr/hosts", "host", json!({"name": n, "role": role, "bridge_mappings": maps})).await;
    }
    let (st, _) = s.put("/v2.0/dvr/deployment", json!({"deployment": {"name": "seed-lab"}})).await;
    assert_eq!(st, 200);
    for (name, vlan, cidr, gw) in [("test1", 196, "192.168.1.0/24", "192.168.1.1"), ("test2", 148, "192.168.2.0/24", "192.168.2.1")] {
        let n = s
            .create("networks", "network", json!({"name": name, "provider:network_type": "vlan", "provider:physical_network": "physnet1", "provider:segmentation_id": vlan}))
            .await;
        ids.insert(name.to_string(), n["id"].as_str().unwrap().to_string());
        let sub = s
            .create(
                "subnets",
                "subnet",
                json!({"name": format!("{name}-v4"), "network_id": n["id"], "cidr": cidr, "gateway_ip": gw, "ip_version": 4}),
            )
            .await;
        ids.insert(format!("{name}-v4"), sub["id"].as_str().unwrap().to_string());
    }
    let ext = s
        .create(
            "networks",
            "network",
            json!({"name": "external", "provider:network_type": "flat", "provider:physical_network": "extnet", "router:external": true}),
        )
        .await;
    ids.insert("external".into(), ext["id"].as_str().unwrap().to_string());
    let esub = s
        .create("subnets", "subnet", json!({"name": "external-v4", "network_id": ext["id"], "cidr": "10.100.0.0/24", "gateway_ip": "10.100.0.1", "enable_dhcp": false}))
        .await;
    ids.insert("external-v4".into(), esub["id"].as_str().unwrap().to_string());
    let r = s.create("routers", "router", json!({"name": "router1", "distributed": true})).await;
    let rid = r["id"].as_str().unwrap().to_string();
    ids.insert("router1".into(), rid.clone());
    for sub in ["test1-v4", "test2-v4"] {
        let (st, v) = s.put(&format!("/v2.0/routers/{rid}/add_router_interface"), json!({"subnet_id": ids[sub]})).await;
        assert_eq!(st, 200, "{v}");
    }
    let (st, v) =
        s.put(&format!("/v2.0/routers/{rid}"), json!({"router": {"external_gateway_info": {"network_id": ids["external"]}}})).await;
    assert_eq!(st, 200, "{v}");
    for (vm, host, net, ip) in [
        ("vm1", "compute1", "test1", "192.168.1.9"),
        ("vm2", "compute1", "test1", "192.168.1.10"),
        ("vm3", "compute2", "test1", "192.168.1.20"),
        ("vm4", "compute1", "test2", "192.168.2.10"),
        ("vm5", "compute2", "test2", "192.168.2.20"),
    ] {
        let p = s
            .create(
                "ports",
                "port",
                json!({"name": vm, "network_id": ids[net], "device_owner": "compute:nova", "binding:host_id": host, "fixed_ips": [{"ip_address": ip}]}),
            )
            .await;
        ids.insert(vm.to_string(), p["id"].as_str().unwrap().to_string());
    }
    let f = s
        .create(
            "floatingips",
            "floatingip",
            json!({"floating_network_id": ids["external"], "floating_ip_address": "10.100.0.7", "port_id": ids["vm1"]}),
        )
        .await;
    ids.insert("fip".into(), f["id"].as_str().unwrap().to_string());
    s.create("dvr/external-hosts", "external_host", json!({"name": "ext1", "network_id": ids["external"], "ip_address": "10.100.0.14"}))
        .await;
    ids
}
