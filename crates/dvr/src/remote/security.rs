//! `dvr apply` for security groups: the file's groups (and the `default`
//! group of each project) exist on the server with exactly the file's IPv4
//! rules, and each instance port carries the file's groups, port security
//! and allowed address pairs.
//!
//! Groups are matched by project and name, rules by what they match
//! (direction, protocol, ports or ICMP type/code, remote prefix or group), so
//! a second apply changes nothing. Rules the server has and the file does not
//! are deleted from the file's groups (`rules: []` means no rule, as in the
//! model); IPv6 rules, which the model does not have, are left alone. A file
//! without groups (the `noop` driver) touches no group and no port setting.

use super::apply::Summary;
use super::client::{Api, ApiError};
use super::state::Resources;
use dvr_model::Topology;
use dvr_model::security::{DEFAULT_GROUP, DEFAULT_PROJECT, FirewallDriver, Remote, RuleProtocol, SecurityGroupRule};
use dvr_model::spec::TopologySpec;
use ipnet::Ipv4Net;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// Neutron's `project_id` for a model project (the file's default project is
/// the server's empty project, as with every other object `dvr apply` creates).
fn server_project(model: &str) -> &str {
    if model == DEFAULT_PROJECT { "" } else { model }
}

/// What a rule matches, in a form both sides reduce to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RuleKey {
    direction: String,
    protocol: Option<u8>,
    min: Option<u16>,
    max: Option<u16>,
    prefix: Option<Ipv4Net>,
    remote_group: Option<String>,
}

/// A server rule's key; `None` for IPv6 rules (not the model's business).
fn server_key(r: &Value) -> Option<RuleKey> {
    if r["ethertype"].as_str() != Some("IPv4") {
        return None;
    }
    let protocol = dvr_serve::sg::protocol_number(r["protocol"].as_str()).filter(|n| *n != 0);
    let prefix = r["remote_ip_prefix"].as_str().and_then(|p| p.parse::<Ipv4Net>().ok()).map(|n| n.trunc()).filter(|n| n.prefix_len() > 0);
    Some(RuleKey {
        direction: r["direction"].as_str().unwrap_or_default().into(),
        protocol,
        min: r["port_range_min"].as_u64().map(|v| v as u16),
        max: r["port_range_max"].as_u64().map(|v| v as u16),
        prefix,
        remote_group: r["remote_group_id"].as_str().map(String::from),
    })
}

/// A model rule's key and the Neutron body that creates it in `group`.
fn model_rule(rule: &SecurityGroupRule, group: &str, ids: &[String]) -> (RuleKey, Value) {
    let full = |p: Option<dvr_model::security::PortRange>| p.filter(|r| !(r.min == 1 && r.max == 65535));
    let (protocol, min, max) = match rule.protocol {
        RuleProtocol::Any => (None, None, None),
        RuleProtocol::Tcp { ports } | RuleProtocol::Udp { ports } | RuleProtocol::Sctp { ports } => {
            let r = full(ports);
            (rule.protocol.number(), r.map(|r| r.min), r.map(|r| r.max))
        }
        RuleProtocol::Icmp { filter } => (Some(1), filter.map(|f| u16::from(f.icmp_type)), filter.and_then(|f| f.icmp_code.map(u16::from))),
        RuleProtocol::Other { number } => (Some(number), None, None),
    };
    let (prefix, remote_group) = match rule.remote {
        Remote::Any => (None, None),
        Remote::Prefix(n) => (Some(n), None),
        Remote::Group(g) => (None, Some(ids[g.0].clone())),
    };
    let key = RuleKey { direction: rule.direction.to_string(), protocol, min, max, prefix, remote_group: remote_group.clone() };
    let name = protocol
        .map(|n| dvr_model::security::protocol_names().find(|(_, k)| *k == n).map_or_else(|| n.to_string(), |(s, _)| s.to_string()));
    let mut body = json!({
        "security_group_id": group,
        "direction": key.direction,
        "ethertype": "IPv4",
        "protocol": name,
        "port_range_min": min,
        "port_range_max": max,
        "remote_ip_prefix": prefix.map(|p| p.to_string()),
        "remote_group_id": remote_group,
    });
    if let Some(d) = &rule.description {
        body["description"] = json!(d);
    }
    (key, body)
}

/// Create or update the file's groups and rules; returns the server id of
/// each model group (indexed like `topo.security.groups`), empty with the
/// `noop` driver.
pub fn apply_groups(api: &Api, cur: &Resources, topo: &Topology, sum: &mut Summary) -> Result<Vec<String>, ApiError> {
    let sec = &topo.security;
    if sec.driver == FirewallDriver::Noop {
        return Ok(Vec::new());
    }
    let mut have: HashMap<(String, String), Value> = cur
        .security_groups
        .iter()
        .map(|g| {
            ((g["project_id"].as_str().unwrap_or_default().to_string(), g["name"].as_str().unwrap_or_default().to_string()), g.clone())
        })
        .collect();
    // The `default` groups first: Neutron creates them when their project first lists groups.
    for g in sec.groups.iter().filter(|g| g.name == DEFAULT_GROUP) {
        let project = server_project(&g.project).to_string();
        if !have.contains_key(&(project.clone(), g.name.clone())) {
            let listed = api.get_creating_default_group(&format!("/v2.0/security-groups?project_id={project}&name=default"))?;
            if let Some(d) = listed["security_groups"].as_array().and_then(|l| l.first()) {
                have.insert((project, g.name.clone()), d.clone());
                sum.created_kind("security groups", 1);
            }
        }
    }
    let mut ids = Vec::with_capacity(sec.groups.len());
    for g in &sec.groups {
        let project = server_project(&g.project).to_string();
        let id = match have.get(&(project.clone(), g.name.clone())) {
            Some(cur) => {
                if !g.description.is_empty() && cur["description"].as_str() != Some(g.description.as_str()) {
                    api.put(
                        &format!("/v2.0/security-groups/{}", cur["id"].as_str().unwrap_or_default()),
                        &json!({"security_group": {"description": g.description}}),
                    )?;
                    sum.updated_kind("security groups", 1);
                }
                cur["id"].as_str().unwrap_or_default().to_string()
            }
            None => {
                let mut body = json!({"name": g.name, "description": g.description});
                if !project.is_empty() {
                    body["project_id"] = json!(project);
                }
                let v = api.post("/v2.0/security-groups", &json!({ "security_group": body }))?;
                sum.created_kind("security groups", 1);
                v["security_group"]["id"].as_str().unwrap_or_default().to_string()
            }
        };
        ids.push(id);
    }
    // Rules: create what is missing (in file order), then delete what the file does not have.
    let rules = super::state::list(api, "/v2.0/security-group-rules", "security_group_rules")?;
    let (mut created, mut deleted) = (0, 0);
    for (g, gid) in sec.groups.iter().zip(&ids) {
        let server: Vec<(RuleKey, String)> = rules
            .iter()
            .filter(|r| r["security_group_id"].as_str() == Some(gid.as_str()))
            .filter_map(|r| Some((server_key(r)?, r["id"].as_str().unwrap_or_default().to_string())))
            .collect();
        let want: Vec<(RuleKey, Value)> = g.rules.iter().map(|r| model_rule(r, gid, &ids)).collect();
        let new: Vec<Value> = want.iter().filter(|(k, _)| !server.iter().any(|(s, _)| s == k)).map(|(_, b)| b.clone()).collect();
        if !new.is_empty() {
            created += new.len();
            api.post("/v2.0/security-group-rules", &json!({ "security_group_rules": new }))?;
        }
        for (k, id) in &server {
            if !want.iter().any(|(w, _)| w == k) {
                api.delete(&format!("/v2.0/security-group-rules/{id}"))?;
                deleted += 1;
            }
        }
    }
    sum.created_kind("security group rules", created);
    sum.updated_kind("security group rules (deleted)", deleted);
    Ok(ids)
}

/// An instance port's security settings as the file means them.
#[derive(Debug, Clone, Default)]
pub struct PortSecurity {
    /// The firewall runs (the file declares groups); nothing else applies otherwise.
    firewall: bool,
    /// Owning project on the server (empty: the default project).
    project: String,
    /// The groups the file lists (`None`: the project's `default`).
    explicit: Option<Vec<String>>,
    /// The groups the port ends up in.
    effective: Vec<String>,
    /// `port_security_enabled`.
    enabled: bool,
    /// `allowed_address_pairs`, as Neutron writes them.
    pairs: Vec<(Ipv4Net, String)>,
}

/// The security settings of instance `xi`.
pub fn port_body(topo: &Topology, spec: &TopologySpec, xi: usize, group_id: &[String]) -> PortSecurity {
    let Some(ps) = topo.security.port(dvr_model::InstanceIx(xi)) else { return PortSecurity::default() };
    if topo.security.driver == FirewallDriver::Noop {
        return PortSecurity::default();
    }
    let effective: Vec<String> = ps.groups.iter().map(|g| group_id[g.0].clone()).collect();
    PortSecurity {
        firewall: true,
        project: server_project(&ps.project).to_string(),
        explicit: spec.instances.get(xi).and_then(|x| x.security_groups.as_ref()).map(|_| effective.clone()),
        effective,
        enabled: ps.port_security_enabled,
        pairs: ps.allowed_address_pairs.iter().map(|a| (a.ip, a.mac.to_string())).collect(),
    }
}

fn pairs_json(pairs: &[(Ipv4Net, String)]) -> Value {
    let l: Vec<Value> = pairs
        .iter()
        .map(|(ip, mac)| {
            let ip = if ip.prefix_len() == 32 { ip.addr().to_string() } else { ip.to_string() };
            json!({"ip_address": ip, "mac_address": mac})
        })
        .collect();
    json!(l)
}

/// A new port's body with its security settings added.
pub fn with(sec: PortSecurity, mut body: Value) -> Value {
    if !sec.firewall {
        return body;
    }
    if !sec.project.is_empty() {
        body["project_id"] = json!(sec.project);
    }
    if !sec.enabled {
        body["port_security_enabled"] = json!(false);
    }
    if let Some(l) = &sec.explicit {
        body["security_groups"] = json!(l);
    }
    if !sec.pairs.is_empty() {
        body["allowed_address_pairs"] = pairs_json(&sec.pairs);
    }
    body
}

/// The `PUT` that brings an existing port's security settings to the file's,
/// or `None` when they already match.
pub fn port_change(cur: &Value, sec: &PortSecurity) -> Option<Value> {
    if !sec.firewall {
        return None;
    }
    let mut have: Vec<String> =
        cur["security_groups"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(String::from)).collect();
    have.sort();
    let mut want = sec.effective.clone();
    want.sort();
    let have_pairs: Vec<(Option<Ipv4Net>, String)> = cur["allowed_address_pairs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let ip = p["ip_address"].as_str().unwrap_or_default();
            let net = ip.parse::<Ipv4Net>().ok().or_else(|| ip.parse::<std::net::Ipv4Addr>().ok().map(Ipv4Net::from));
            (net, p["mac_address"].as_str().unwrap_or_default().to_lowercase())
        })
        .collect();
    let want_pairs: Vec<(Option<Ipv4Net>, String)> = sec.pairs.iter().map(|(n, m)| (Some(*n), m.to_lowercase())).collect();
    let enabled = cur["port_security_enabled"].as_bool().unwrap_or(true);
    if have == want && have_pairs == want_pairs && enabled == sec.enabled {
        return None;
    }
    let mut m = Map::new();
    m.insert("port_security_enabled".into(), json!(sec.enabled));
    m.insert("security_groups".into(), json!(sec.effective));
    m.insert("allowed_address_pairs".into(), pairs_json(&sec.pairs));
    Some(Value::Object(m))
}
