//! The live state as the API returns it, and its translation into a topology
//! file (version 1) so every file-based command (plan, trace, demo, validate)
//! works unchanged on a running deployment.

use super::client::{Api, ApiError};
use dvr_model::spec::TopologySpec;
use serde_json::{Value, json};
use std::collections::HashMap;

/// Every object of the deployment, as JSON, each list in creation order.
#[derive(Debug, Default)]
pub struct Resources {
    /// `/v2.0/dvr/hosts`; `None` when the server has no dvr extension (404).
    pub hosts: Option<Vec<Value>>,
    /// `/v2.0/dvr/external-hosts`; `None` without the extension.
    pub external_hosts: Option<Vec<Value>>,
    /// `/v2.0/networks`.
    pub networks: Vec<Value>,
    /// `/v2.0/subnets`.
    pub subnets: Vec<Value>,
    /// `/v2.0/routers`.
    pub routers: Vec<Value>,
    /// `/v2.0/ports`.
    pub ports: Vec<Value>,
    /// `/v2.0/floatingips`.
    pub floatingips: Vec<Value>,
}

/// Owners of router interface ports, the ports that say which subnets a router has.
pub const ROUTER_INTERFACE_OWNERS: [&str; 3] =
    ["network:router_interface_distributed", "network:router_interface", "network:ha_router_replicated_interface"];

/// `GET /v2.0/<collection>` → the list under `key`, in creation order.
///
/// Creation order matters: the model hands out local VLANs, floating-IP rule
/// priorities and addresses in file order, so an export must list objects in
/// the order they were applied. Objects are sorted (stably) by `created_at`,
/// which keeps the server's own order among equal timestamps (bulk creates).
pub fn list(api: &Api, collection: &str, key: &str) -> Result<Vec<Value>, ApiError> {
    let v = api.get(collection)?;
    let mut items = v[key].as_array().cloned().unwrap_or_default();
    items.sort_by(|a, b| a["created_at"].as_str().unwrap_or("").cmp(b["created_at"].as_str().unwrap_or("")));
    Ok(items)
}

/// Like [`list`], but a 404 (no such extension on this server, e.g. a real
/// Neutron) gives `None` instead of an error.
pub fn list_optional(api: &Api, collection: &str, key: &str) -> Result<Option<Vec<Value>>, ApiError> {
    match list(api, collection, key) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.status() == Some(404) => Ok(None),
        Err(e) => Err(e),
    }
}

impl Resources {
    /// Read everything the topology needs from the server.
    pub fn fetch(api: &Api) -> Result<Resources, ApiError> {
        Ok(Resources {
            hosts: list_optional(api, "/v2.0/dvr/hosts", "hosts")?,
            external_hosts: list_optional(api, "/v2.0/dvr/external-hosts", "external_hosts")?,
            networks: list(api, "/v2.0/networks", "networks")?,
            subnets: list(api, "/v2.0/subnets", "subnets")?,
            routers: list(api, "/v2.0/routers", "routers")?,
            ports: list(api, "/v2.0/ports", "ports")?,
            floatingips: list(api, "/v2.0/floatingips", "floatingips")?,
        })
    }

    /// Instance ports (`device_owner: compute:*`), the model's instances.
    pub fn instance_ports(&self) -> impl Iterator<Item = &Value> {
        self.ports.iter().filter(|p| p["device_owner"].as_str().is_some_and(|o| o.starts_with("compute:")))
    }

    /// The deployment as a topology file (version 1). Objects the file cannot
    /// express (router, DHCP and fip-gateway ports) are left out: the model
    /// allocates them again, deterministically, when the file is loaded.
    ///
    /// Built as JSON and then deserialised, so optional fields the file format
    /// gains later keep their defaults here.
    pub fn to_spec(&self, name: &str) -> Result<TopologySpec, serde_json::Error> {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let name_by_id = |items: &[Value]| -> HashMap<String, String> { items.iter().map(|n| (s(&n["id"]), s(&n["name"]))).collect() };
        let net_name = name_by_id(&self.networks);
        let subnet_name = name_by_id(&self.subnets);
        let hosts: Vec<Value> = self
            .hosts
            .iter()
            .flatten()
            .map(|h| {
                let mut o = json!({"name": h["name"], "role": h["role"]});
                for k in ["bridge_mappings", "nics"] {
                    if h[k].as_object().is_some_and(|m| !m.is_empty()) {
                        o[k] = h[k].clone();
                    }
                }
                if h["dvr_mac"].is_string() {
                    o["dvr_mac"] = h["dvr_mac"].clone();
                }
                o
            })
            .collect();
        let networks: Vec<Value> = self
            .networks
            .iter()
            .map(|n| {
                let mut o = json!({"name": n["name"], "type": n["provider:network_type"].as_str().unwrap_or("vlan")});
                if n["provider:physical_network"].is_string() {
                    o["physical_network"] = n["provider:physical_network"].clone();
                }
                if n["provider:segmentation_id"].is_u64() {
                    o["segmentation_id"] = n["provider:segmentation_id"].clone();
                }
                if n["router:external"] == true {
                    o["external"] = json!(true);
                }
                let subnets: Vec<Value> = self
                    .subnets
                    .iter()
                    .filter(|sn| sn["network_id"] == n["id"])
                    .map(|sn| {
                        let mut o = json!({"name": sn["name"], "cidr": sn["cidr"]});
                        if sn["gateway_ip"].is_string() {
                            o["gateway_ip"] = sn["gateway_ip"].clone();
                        }
                        if sn["enable_dhcp"] == false {
                            o["enable_dhcp"] = json!(false);
                        }
                        o
                    })
                    .collect();
                o["subnets"] = json!(subnets);
                o
            })
            .collect();
        let routers: Vec<Value> = self
            .routers
            .iter()
            .map(|r| {
                let interfaces: Vec<String> = self
                    .ports
                    .iter()
                    .filter(|p| {
                        p["device_id"] == r["id"] && p["device_owner"].as_str().is_some_and(|o| ROUTER_INTERFACE_OWNERS.contains(&o))
                    })
                    .filter_map(|p| p["fixed_ips"][0]["subnet_id"].as_str())
                    .filter_map(|id| subnet_name.get(id).cloned())
                    .collect();
                let mut o = json!({"name": r["name"], "interfaces": interfaces});
                if r["distributed"].is_boolean() {
                    o["distributed"] = r["distributed"].clone();
                }
                if let Some(n) = r["external_gateway_info"]["network_id"].as_str().and_then(|id| net_name.get(id)) {
                    o["external_gateway"] = json!(n);
                }
                o
            })
            .collect();
        let port_instance: HashMap<String, String> = self.instance_ports().map(|p| (s(&p["id"]), s(&p["name"]))).collect();
        let instances: Vec<Value> = self
            .instance_ports()
            .map(|p| {
                json!({
                    "name": p["name"],
                    "host": p["binding:host_id"],
                    "network": net_name.get(&s(&p["network_id"])),
                    "ip": p["fixed_ips"][0]["ip_address"],
                    "mac": p["mac_address"],
                })
            })
            .collect();
        let floating_ips: Vec<Value> = self
            .floatingips
            .iter()
            .map(|f| {
                let mut o = json!({"ip": f["floating_ip_address"]});
                match f["port_id"].as_str().and_then(|p| port_instance.get(p)) {
                    Some(x) => o["instance"] = json!(x),
                    None => o["network"] = json!(net_name.get(&s(&f["floating_network_id"]))),
                }
                o
            })
            .collect();
        let external_hosts: Vec<Value> = self
            .external_hosts
            .iter()
            .flatten()
            .map(|e| json!({"name": e["name"], "network": net_name.get(&s(&e["network_id"])), "ip": e["ip_address"]}))
            .collect();
        serde_json::from_value(json!({
            "version": 1,
            "name": name,
            "hosts": hosts,
            "networks": networks,
            "routers": routers,
            "instances": instances,
            "floating_ips": floating_ips,
            "external_hosts": external_hosts,
        }))
    }
}
