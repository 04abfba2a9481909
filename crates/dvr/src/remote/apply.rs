//! `dvr apply`: push a topology file through the API, idempotently.
//!
//! The current state is read first and compared with the file by name; only
//! the difference is sent. Everything the model allocates for the file
//! (segmentation ids, gateway addresses, instance IPs and MACs, DVR MACs,
//! router gateway addresses, floating IPs) is sent explicitly, so that the
//! server holds exactly the deployment the file means and `dvr export` gives a
//! file that plans identically. Creations go in bulk (`{"ports": [...]}`) so a
//! 1,000-host deployment is a few hundred requests, not 20,000.

use super::client::{Api, ApiError};
use super::state::{ROUTER_INTERFACE_OWNERS, Resources};
use dvr_model::Topology;
use dvr_model::spec::TopologySpec;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// How many objects go in one bulk request: large enough to amortise the
/// round trip and the transaction, small enough to keep each request short.
const BULK: usize = 500;

/// What `apply` did, per kind of object.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// Server URL.
    pub server: String,
    /// Objects created, by kind.
    pub created: BTreeMap<&'static str, usize>,
    /// Objects updated, by kind.
    pub updated: BTreeMap<&'static str, usize>,
    /// Total of created and updated objects: 0 means the server already matched the file.
    pub changes: usize,
    /// Things that could not be applied and were skipped, each explained.
    pub warnings: Vec<String>,
    /// Wall-clock time.
    pub millis: u128,
}

impl Summary {
    fn created(&mut self, kind: &'static str, n: usize) {
        if n > 0 {
            *self.created.entry(kind).or_default() += n;
            self.changes += n;
        }
    }
    fn updated(&mut self, kind: &'static str, n: usize) {
        if n > 0 {
            *self.updated.entry(kind).or_default() += n;
            self.changes += n;
        }
    }

    /// One line per kind, then the total.
    pub fn render(&self) -> String {
        let mut o = String::new();
        for (k, n) in &self.created {
            o.push_str(&format!("created {n} {k}\n"));
        }
        for (k, n) in &self.updated {
            o.push_str(&format!("updated {n} {k}\n"));
        }
        for w in &self.warnings {
            o.push_str(&format!("warning: {w}\n"));
        }
        o.push_str(&format!("{} changes applied to {} in {} ms\n", self.changes, self.server, self.millis));
        o
    }
}

/// Create `items` in `collection` (`/v2.0/ports`) under the plural `key`
/// (`ports`), in bulk; returns the created objects in order.
fn create_bulk(api: &Api, collection: &str, key: &str, items: Vec<Value>, progress: &dyn Fn(&str)) -> Result<Vec<Value>, ApiError> {
    create_bulk_sized(api, collection, key, items, BULK, progress)
}

/// [`create_bulk`] with `size` objects per request.
fn create_bulk_sized(
    api: &Api,
    collection: &str,
    key: &str,
    items: Vec<Value>,
    size: usize,
    progress: &dyn Fn(&str),
) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::with_capacity(items.len());
    let total = items.len();
    let mut bulk = true;
    for chunk in items.chunks(size.max(1)) {
        if bulk {
            match api.post(collection, &json!({ key: chunk })) {
                Ok(v) => {
                    out.extend(v[key].as_array().cloned().unwrap_or_default());
                    continue;
                }
                // Real Neutron creates routers and floating IPs one at a time
                // (their extensions do not allow bulk): 400 "Bulk operation not supported".
                Err(ApiError::Status { status: 400, message, .. }) if message.contains("Bulk operation not supported") => {
                    progress(&format!("{key}: the server has no bulk create here; one request each"));
                    bulk = false;
                }
                Err(e) => return Err(e),
            }
        }
        let one = key.strip_suffix('s').unwrap_or(key);
        for item in chunk {
            let v = api.post(collection, &json!({ one: item }))?;
            out.push(v[one].clone());
        }
        if total > size.min(BULK) {
            progress(&format!("{key}: {}/{total}", out.len()));
        }
    }
    Ok(out)
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_string()
}

/// Apply the file (`spec` as written, `topo` as validated and allocated).
pub fn apply(api: &Api, spec: &TopologySpec, topo: &Topology, progress: &dyn Fn(&str)) -> Result<Summary, ApiError> {
    let t0 = Instant::now();
    let mut sum = Summary { server: api.base().to_string(), ..Default::default() };
    progress("reading the current state");
    let cur = Resources::fetch(api)?;

    // 1. Hosts (dvr extension): name, role, bridge mappings, NICs and the DVR MAC.
    match &cur.hosts {
        None => {
            sum.warnings.push(format!(
                "{} has no /v2.0/dvr/hosts (404): {} hosts not declared (nor their DVR MACs); a real Neutron learns hosts from its agents",
                api.base(),
                topo.hosts.len()
            ));
            // Neutron binds a port only to a host whose OVS agent is alive:
            // say which of the file's hosts it does not know yet.
            let agents = super::state::list(api, "/v2.0/agents", "agents").unwrap_or_default();
            let alive = |h: &str| agents.iter().any(|a| a["host"] == h && a["agent_type"] == "Open vSwitch agent" && a["alive"] != false);
            for x in &topo.instances {
                let host = &topo.host(x.host).name;
                if !alive(host) {
                    sum.warnings.push(format!(
                        "instance `{}`: host `{host}` has no live Open vSwitch agent on {}; Neutron will leave its port unbound (binding_failed) until one reports",
                        x.name,
                        api.base()
                    ));
                }
            }
        }
        Some(have) => {
            let have: HashMap<&str, &Value> = have.iter().map(|h| (h["name"].as_str().unwrap_or_default(), h)).collect();
            let mut new = Vec::new();
            for (h, hs) in topo.hosts.iter().zip(&spec.hosts) {
                let body = json!({
                    "name": h.name,
                    "role": hs.role,
                    "bridge_mappings": hs.bridge_mappings,
                    "nics": hs.nics,
                    "dvr_mac": h.dvr_mac.map(|m| m.to_string()),
                });
                match have.get(h.name.as_str()) {
                    None => new.push(body),
                    Some(cur) => {
                        if cur["role"] != body["role"] {
                            sum.warnings.push(format!(
                                "host `{}` is a {} on the server and a {} in the file; a host's role cannot change (delete and re-declare it)",
                                h.name, cur["role"], body["role"]
                            ));
                        }
                        let differs = |k: &str| {
                            cur[k].as_object().map(|m| m.len()).unwrap_or(0) + body[k].as_object().map(|m| m.len()).unwrap_or(0) > 0
                                && cur[k] != body[k]
                        };
                        if differs("bridge_mappings") || differs("nics") {
                            let id = id_of(cur);
                            api.put(
                                &format!("/v2.0/dvr/hosts/{id}"),
                                &json!({"host": {"bridge_mappings": body["bridge_mappings"], "nics": body["nics"]}}),
                            )?;
                            sum.updated("hosts", 1);
                        }
                    }
                }
            }
            progress(&format!("hosts: {} to create", new.len()));
            let n = create_bulk(api, "/v2.0/dvr/hosts", "hosts", new, progress)?.len();
            sum.created("hosts", n);
        }
    }

    // The deployment's name (dvr extension): `dvr export` writes it back.
    if cur.hosts.is_some()
        && let Some(name) = &spec.name
    {
        let have = api.get("/v2.0/dvr/deployment")?;
        if have["deployment"]["name"].as_str() != Some(name) {
            api.put("/v2.0/dvr/deployment", &json!({"deployment": {"name": name}}))?;
            sum.updated("deployment name", 1);
        }
    }

    // 2. Networks, with the segment the model settled on.
    let mut net_id: HashMap<String, String> =
        cur.networks.iter().map(|n| (n["name"].as_str().unwrap_or_default().into(), id_of(n))).collect();
    let mut new = Vec::new();
    for n in &topo.networks {
        if net_id.contains_key(&n.name) {
            continue;
        }
        let mut body = json!({"name": n.name, "router:external": n.external, "admin_state_up": true});
        match &n.segment {
            dvr_model::Segment::Vlan { physnet, vlan } => {
                body["provider:network_type"] = json!("vlan");
                body["provider:physical_network"] = json!(physnet);
                body["provider:segmentation_id"] = json!(vlan.to_string().parse::<u64>().unwrap_or_default());
            }
            dvr_model::Segment::Flat { physnet } => {
                body["provider:network_type"] = json!("flat");
                body["provider:physical_network"] = json!(physnet);
            }
            dvr_model::Segment::Vxlan { vni } => {
                body["provider:network_type"] = json!("vxlan");
                body["provider:segmentation_id"] = json!(vni.to_string().parse::<u64>().unwrap_or_default());
            }
        }
        new.push(body);
    }
    progress(&format!("networks: {} to create", new.len()));
    for n in create_bulk(api, "/v2.0/networks", "networks", new, progress)? {
        net_id.insert(n["name"].as_str().unwrap_or_default().into(), id_of(&n));
        sum.created("networks", 1);
    }

    // 3. Subnets.
    let mut subnet_id: HashMap<String, String> =
        cur.subnets.iter().map(|n| (n["name"].as_str().unwrap_or_default().into(), id_of(n))).collect();
    let new: Vec<Value> = topo
        .subnets
        .iter()
        .filter(|s| !subnet_id.contains_key(&s.name))
        .map(|s| {
            json!({
                "name": s.name,
                "network_id": net_id[&topo.network(s.network).name],
                "ip_version": 4,
                "cidr": s.cidr.to_string(),
                "gateway_ip": s.gateway.to_string(),
                "enable_dhcp": s.enable_dhcp,
            })
        })
        .collect();
    progress(&format!("subnets: {} to create", new.len()));
    for s in create_bulk(api, "/v2.0/subnets", "subnets", new, progress)? {
        subnet_id.insert(s["name"].as_str().unwrap_or_default().into(), id_of(&s));
        sum.created("subnets", 1);
    }

    // 4. Routers: created with their gateway (Neutron needs the gateway before
    //    DVR interfaces get their SNAT ports), then interfaces one by one.
    let mut router_id: HashMap<String, String> = HashMap::new();
    let mut has_gateway: HashMap<String, bool> = HashMap::new();
    for r in &cur.routers {
        let name = r["name"].as_str().unwrap_or_default().to_string();
        has_gateway.insert(name.clone(), r["external_gateway_info"]["network_id"].is_string());
        router_id.insert(name, id_of(r));
    }
    let gateway_info = |ri: usize| -> Option<Value> {
        let r = &topo.routers[ri];
        let ext = r.external_gateway?;
        let mut info = json!({"network_id": net_id[&topo.network(ext).name], "enable_snat": true});
        if let Some(p) = topo.gateway_port(dvr_model::RouterIx(ri)) {
            let p = topo.port(p);
            info["external_fixed_ips"] = json!([{"subnet_id": subnet_id[&topo.subnet(p.subnet).name], "ip_address": p.ip.to_string()}]);
        }
        Some(info)
    };
    // New routers go in one bulk request: the server then places every gateway
    // at once, as the model does for the file (one by one, the server would
    // give the first router's fip-agent gateway port the next router's address).
    let mut new = Vec::new();
    for (ri, r) in topo.routers.iter().enumerate() {
        match router_id.get(&r.name) {
            None => {
                let mut body = json!({"name": r.name, "distributed": r.distributed, "admin_state_up": true});
                if let Some(g) = gateway_info(ri) {
                    body["external_gateway_info"] = g;
                }
                new.push(body);
            }
            Some(id) => {
                if r.external_gateway.is_some() && !has_gateway.get(&r.name).copied().unwrap_or(false) {
                    api.put(&format!("/v2.0/routers/{id}"), &json!({"router": {"external_gateway_info": gateway_info(ri)}}))?;
                    sum.updated("router gateways", 1);
                }
            }
        }
    }
    let mut created_routers = 0;
    for r in create_bulk(api, "/v2.0/routers", "routers", new, progress)? {
        router_id.insert(r["name"].as_str().unwrap_or_default().into(), id_of(&r));
        created_routers += 1;
    }
    progress(&format!("routers: {created_routers} created"));
    sum.created("routers", created_routers);
    let mut attached: HashMap<(String, String), ()> = HashMap::new();
    for p in &cur.ports {
        if p["device_owner"].as_str().is_some_and(|o| ROUTER_INTERFACE_OWNERS.contains(&o)) {
            for ip in p["fixed_ips"].as_array().into_iter().flatten() {
                attached
                    .insert((p["device_id"].as_str().unwrap_or_default().into(), ip["subnet_id"].as_str().unwrap_or_default().into()), ());
            }
        }
    }
    let mut interfaces = 0;
    for r in &topo.routers {
        let rid = &router_id[&r.name];
        for s in &r.interfaces {
            let sid = &subnet_id[&topo.subnet(*s).name];
            if attached.contains_key(&(rid.clone(), sid.clone())) {
                continue;
            }
            api.put(&format!("/v2.0/routers/{rid}/add_router_interface"), &json!({"subnet_id": sid}))?;
            interfaces += 1;
        }
    }
    progress(&format!("router interfaces: {interfaces} added"));
    sum.created("router interfaces", interfaces);

    // 5. Instance ports: name = instance name, bound to its host, with the
    //    model's IP and MAC.
    let have: HashMap<&str, &Value> = cur.instance_ports().map(|p| (p["name"].as_str().unwrap_or_default(), p)).collect();
    let mut port_id: HashMap<String, String> = have.iter().map(|(k, v)| (k.to_string(), id_of(v))).collect();
    let mut new = Vec::new();
    let mut moved = 0;
    for x in &topo.instances {
        let p = topo.port(x.port);
        let host = &topo.host(x.host).name;
        match have.get(x.name.as_str()) {
            Some(cur) => {
                if cur["binding:host_id"].as_str() != Some(host) {
                    api.put(&format!("/v2.0/ports/{}", id_of(cur)), &json!({"port": {"binding:host_id": host}}))?;
                    moved += 1;
                }
            }
            None => new.push(json!({
                "name": x.name,
                "network_id": net_id[&topo.network(x.network).name],
                "device_owner": "compute:nova",
                "device_id": uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("dvr-instance:{}", x.name).as_bytes()).to_string(),
                "binding:host_id": host,
                "mac_address": p.mac.to_string(),
                "fixed_ips": [{"subnet_id": subnet_id[&topo.subnet(p.subnet).name], "ip_address": p.ip.to_string()}],
            })),
        }
    }
    progress(&format!("instance ports: {} to create", new.len()));
    // In one request when the server takes it: binding ports to hosts puts
    // routers there and gives each such host its fip-agent gateway port; the
    // model hands those out in host order, which only one transaction for all
    // instances reproduces (chunks would number the hosts in file order).
    let created = match create_bulk_sized(api, "/v2.0/ports", "ports", new.clone(), usize::MAX, progress) {
        // A body over the server's limit: 413, or the connection closed while sending.
        Err(e) if matches!(e.status(), Some(413) | None) => {
            sum.warnings.push(format!(
                "{} refused {} instance ports in one request ({e}); sent in chunks of {BULK}: fip-agent gateway addresses may differ from the file's plan",
                api.base(),
                new.len()
            ));
            // Whatever the failed request did not create (it may have been cut after the server read it).
            let now: std::collections::HashSet<String> =
                super::state::list(api, "/v2.0/ports?device_owner=compute:nova&fields=name", "ports")?
                    .iter()
                    .filter_map(|p| p["name"].as_str().map(String::from))
                    .collect();
            let rest: Vec<Value> = new.into_iter().filter(|p| !now.contains(p["name"].as_str().unwrap_or_default())).collect();
            create_bulk(api, "/v2.0/ports", "ports", rest, progress)?
        }
        r => r?,
    };
    for p in created {
        port_id.insert(p["name"].as_str().unwrap_or_default().into(), id_of(&p));
        sum.created("instance ports", 1);
    }
    sum.updated("instance ports (host binding)", moved);

    // 6. Floating IPs, by address.
    let have: HashMap<&str, &Value> = cur.floatingips.iter().map(|f| (f["floating_ip_address"].as_str().unwrap_or_default(), f)).collect();
    let mut new = Vec::new();
    let mut reassociated = 0;
    for f in &topo.floating_ips {
        let want_port = f.association.map(|(x, _)| port_id[&topo.instance(x).name].clone());
        match have.get(f.ip.to_string().as_str()) {
            Some(cur) => {
                if cur["port_id"].as_str().map(String::from) != want_port {
                    api.put(&format!("/v2.0/floatingips/{}", id_of(cur)), &json!({"floatingip": {"port_id": want_port}}))?;
                    reassociated += 1;
                }
            }
            None => {
                let mut body = json!({
                    "floating_network_id": net_id[&topo.network(f.network).name],
                    "floating_ip_address": f.ip.to_string(),
                });
                if let Some(p) = want_port {
                    body["port_id"] = json!(p);
                }
                new.push(body);
            }
        }
    }
    progress(&format!("floating IPs: {} to create", new.len()));
    let n = create_bulk(api, "/v2.0/floatingips", "floatingips", new, progress)?.len();
    sum.created("floating IPs", n);
    sum.updated("floating IPs (association)", reassociated);

    // 7. External hosts (dvr extension).
    match &cur.external_hosts {
        None => {
            if !topo.external_hosts.is_empty() {
                sum.warnings.push(format!(
                    "{} has no /v2.0/dvr/external-hosts (404): {} external hosts not declared",
                    api.base(),
                    topo.external_hosts.len()
                ))
            }
        }
        Some(have) => {
            let have: HashMap<&str, &Value> = have.iter().map(|h| (h["name"].as_str().unwrap_or_default(), h)).collect();
            let new: Vec<Value> = topo
                .external_hosts
                .iter()
                .filter(|e| !have.contains_key(e.name.as_str()))
                .map(|e| json!({"name": e.name, "network_id": net_id[&topo.network(e.network).name], "ip_address": e.ip.to_string()}))
                .collect();
            let n = create_bulk(api, "/v2.0/dvr/external-hosts", "external_hosts", new, progress)?.len();
            sum.created("external hosts", n);
        }
    }
    sum.millis = t0.elapsed().as_millis();
    Ok(sum)
}
