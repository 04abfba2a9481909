//! The live state as the API returns it: as JSON for `apply`'s comparison by
//! name, and as a topology file (version 1) so every file-based command
//! (plan, trace, demo, validate, export) works unchanged on a running deployment.

use super::client::{Api, ApiError};
use dvr_model::spec::TopologySpec;
use serde_json::Value;
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

/// `GET /v2.0/<collection>` → the list under `key`, in the server's order
/// (creation order for `dvr server`).
pub fn list(api: &Api, collection: &str, key: &str) -> Result<Vec<Value>, ApiError> {
    let v = api.get(collection)?;
    Ok(v[key].as_array().cloned().unwrap_or_default())
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
}

/// `GET collection` parsed straight from the text into the server's typed
/// objects: going through `serde_json::Value` would sort map keys, and the
/// order of a host's bridge mappings assigns its default NICs.
fn typed<T: serde::de::DeserializeOwned>(api: &Api, collection: &str, key: &str, optional: bool) -> Result<Vec<T>, ApiError> {
    let text = match api.get_text(collection) {
        Err(e) if optional && e.status() == Some(404) => return Ok(Vec::new()),
        r => r?,
    };
    let mut m: HashMap<String, Vec<T>> = serde_json::from_str(&text).map_err(|e| ApiError::Status {
        method: "GET",
        path: collection.to_string(),
        status: 200,
        kind: "UnexpectedBody".into(),
        message: format!("the answer is not a list of {key} as Neutron writes it ({e})"),
    })?;
    Ok(m.remove(key).unwrap_or_default())
}

/// The live deployment as a topology file (version 1), through the server's
/// own `resources_to_spec` (the function it validates every write with), so
/// export and server agree by construction. `name` overrides the deployment
/// name the server keeps (`/v2.0/dvr/deployment`).
pub fn fetch_spec(api: &Api, name: Option<&str>) -> Result<TopologySpec, ApiError> {
    let kept = match api.get("/v2.0/dvr/deployment") {
        Ok(v) => v["deployment"]["name"].as_str().map(String::from),
        Err(e) if e.status() == Some(404) => None,
        Err(e) => return Err(e),
    };
    let hosts = match list_optional(api, "/v2.0/dvr/hosts", "hosts")? {
        Some(_) => typed(api, "/v2.0/dvr/hosts", "hosts", true)?,
        // A real Neutron: no dvr extension, the hosts are its agents.
        None => hosts_from_agents(api)?,
    };
    let res = dvr_serve::resources::Resources::from_lists(
        name.map(String::from).or(kept),
        hosts,
        typed(api, "/v2.0/networks", "networks", false)?,
        typed(api, "/v2.0/subnets", "subnets", false)?,
        typed(api, "/v2.0/ports", "ports", false)?,
        typed(api, "/v2.0/routers", "routers", false)?,
        typed(api, "/v2.0/floatingips", "floatingips", false)?,
        typed(api, "/v2.0/dvr/external-hosts", "external_hosts", true)?,
    );
    Ok(dvr_serve::convert::resources_to_spec(&res))
}

/// The hosts of a server without the dvr extension (a real Neutron), from its
/// agents: a host with an L3 agent in `dvr_snat` (or `legacy`) mode is a
/// network node, any other host with an agent a compute host; bridge
/// mappings are its Open vSwitch agent's, in the agent's order. Network nodes
/// come first, then compute hosts, each by name. What Neutron's API does not
/// say is noted on stderr: the DVR MACs (kept in Neutron's database only)
/// are allocated by the model, and the controller (no agent) is absent.
pub fn hosts_from_agents(api: &Api) -> Result<Vec<dvr_serve::resources::Host>, ApiError> {
    let agents = list(api, "/v2.0/agents", "agents")?;
    let mut hosts: Vec<(u8, String, dvr_serve::resources::Host)> = Vec::new();
    for a in &agents {
        let Some(name) = a["host"].as_str().filter(|h| !h.is_empty()) else { continue };
        let idx = match hosts.iter().position(|(_, n, _)| n == name) {
            Some(i) => i,
            None => {
                let id = dvr_model::alloc::derive_id("host", name);
                let h = dvr_serve::resources::Host {
                    common: dvr_serve::resources::Common { id, name: name.to_string(), ..Default::default() },
                    role: "compute".into(),
                    ..Default::default()
                };
                hosts.push((1, name.to_string(), h));
                hosts.len() - 1
            }
        };
        let conf = &a["configurations"];
        match a["agent_type"].as_str() {
            Some("L3 agent") if matches!(conf["agent_mode"].as_str(), Some("dvr_snat") | Some("legacy")) => {
                hosts[idx].0 = 0;
                hosts[idx].2.role = "network".into();
            }
            Some("Open vSwitch agent") => {
                if let Some(m) = conf["bridge_mappings"].as_object() {
                    hosts[idx].2.bridge_mappings = m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect();
                }
            }
            _ => {}
        }
    }
    hosts.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    eprintln!(
        "note: {} has no dvr extension: {} hosts taken from its agents ({}); DVR MACs are not in Neutron's API (allocated here); \
         hosts without agents (the controller) and external hosts are not known to Neutron",
        api.base(),
        hosts.len(),
        hosts.iter().map(|(_, n, h)| format!("{n}: {}", h.role)).collect::<Vec<_>>().join(", ")
    );
    Ok(hosts.into_iter().map(|(_, _, h)| h).collect())
}
