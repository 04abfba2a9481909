//! Security groups, their rules and the port attributes that use them
//! (`security-group`, `port-security`, `allowed-address-pairs`), with
//! Neutron's request rules and messages (`neutron/db/securitygroups_db.py`,
//! `neutron/extensions/securitygroup.py`, the ML2 plugin's port-security
//! checks): the project's `default` group and its rules, port range against
//! protocol, one remote (prefix or group), duplicate rules (409
//! `SecurityGroupRuleExists`), a group in use (409 `SecurityGroupInUse`).
//!
//! What the deployment then does with them (which host runs which firewall
//! flows) is the model's and the planner's business: the converter hands
//! groups, rules and port memberships to the topology file.

use crate::body::*;
use crate::error::ApiError;
use crate::logic::{id_taken, new_id};
use crate::resources::*;
use axum::http::StatusCode;
use dvr_model::alloc::derive_id;
// Neutron's protocol names (IPv6 ones included: the API takes them all) and
// the protocols that take a port range: the model's tables.
use dvr_model::security::{NEUTRON_PROTOCOLS as PROTOCOLS, PORT_PROTOCOLS};
use serde_json::Value;
use std::sync::Arc;
use uuid::Uuid;

/// Neutron's description of the groups it creates by itself.
pub const DEFAULT_SG_DESCRIPTION: &str = "Default security group";

/// At most this many address pairs per port (Neutron's `max_allowed_address_pair`).
pub const MAX_ADDRESS_PAIRS: usize = 10;

/// The number of a protocol as a rule stores it (`tcp`, `"6"`), `None` for any.
pub fn protocol_number(p: Option<&str>) -> Option<u8> {
    let p = p?;
    PROTOCOLS.iter().find(|(n, _, _)| *n == p).map(|(_, n, _)| *n).or_else(|| p.parse().ok())
}

fn sg_not_found(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "SecurityGroupNotFound", format!("Security group {id} does not exist"))
}

fn rule_not_found(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "SecurityGroupRuleNotFound", format!("Security group rule {id} does not exist"))
}

/// 404 for a group id that does not exist.
pub fn group_not_found(id: &str) -> ApiError {
    sg_not_found(id)
}

/// 404 for a rule id that does not exist.
pub fn group_rule_not_found(id: &str) -> ApiError {
    rule_not_found(id)
}

fn invalid_input(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "InvalidInput", message)
}

/// A rule as Neutron compares rules for duplicates (`_rule_to_key`): the
/// protocol by number, `0.0.0.0/0` the same as no prefix.
fn rule_key(r: &SecurityGroupRule) -> String {
    let any_prefix = matches!(r.remote_ip_prefix.as_deref(), None | Some("0.0.0.0/0") | Some("::/0"));
    format!(
        "{}_{}_{:?}_{:?}_{:?}_{:?}_{}_{}",
        r.direction,
        r.ethertype,
        r.port_range_max,
        r.port_range_min,
        protocol_number(r.protocol.as_deref()),
        r.remote_group_id,
        if any_prefix { "+" } else { r.remote_ip_prefix.as_deref().unwrap_or("+") },
        r.security_group_id
    )
}

/// The model's project name for a Neutron `project_id` (empty: the file's default project).
pub fn model_project(project: &str) -> &str {
    if project.is_empty() { dvr_model::security::DEFAULT_PROJECT } else { project }
}

/// The id of a new group: the model's derivation from project and name
/// (`{project}/{name}`), so a group created through the API (by `dvr apply`)
/// has the id the topology file gives it.
fn group_id(r: &Resources, project: &str, name: &str) -> Uuid {
    new_id("security_group", &format!("{}/{name}", model_project(project)), |id| id_taken(r, id))
}

/// The id of a group's next rule: the model's derivation from the group and
/// the rule's position among the group's IPv4 rules (`{group}/{k}`), so the
/// rules `dvr apply` creates in file order get the file's ids; IPv6 rules,
/// which the model does not have, are numbered apart.
fn next_rule_id(r: &Resources, group: Uuid, ethertype: &str, pending: &[SecurityGroupRule]) -> Uuid {
    let same = |x: &SecurityGroupRule| x.security_group_id == group && x.ethertype == ethertype;
    let k = r.security_group_rules.values().filter(|x| same(x)).count() + pending.iter().filter(|x| same(x)).count();
    let key = if ethertype == "IPv4" { format!("{group}/{k}") } else { format!("{group}/{ethertype}/{k}") };
    let id = derive_id("security_group_rule", &key);
    if id_taken(r, &id) || pending.iter().any(|x| x.common.id == id) { Uuid::new_v4() } else { id }
}

/// The template rules Neutron gives a new group: egress to anywhere (IPv4
/// and IPv6) and, for the `default` group, ingress from its own members.
fn template_rules(r: &Resources, group: Uuid, project: &str, default: bool) -> Vec<SecurityGroupRule> {
    let mut out: Vec<SecurityGroupRule> = Vec::new();
    let mut push = |direction: &str, ethertype: &str, remote: Option<Uuid>| {
        let mut x = SecurityGroupRule {
            common: Common { project_id: project.to_string(), ..Common::default() },
            security_group_id: group,
            direction: direction.into(),
            ethertype: ethertype.into(),
            remote_group_id: remote,
            ..SecurityGroupRule::default()
        };
        x.common.id = next_rule_id(r, group, ethertype, &out);
        out.push(x);
    };
    push("egress", "IPv4", None);
    push("egress", "IPv6", None);
    if default {
        push("ingress", "IPv4", Some(group));
        push("ingress", "IPv6", Some(group));
    }
    out
}

/// The project's `default` group, created with Neutron's default rules when
/// it does not exist yet; returns its id.
pub fn ensure_default(r: &mut Resources, project: &str) -> Uuid {
    if let Some(id) = r.default_group(project) {
        return id;
    }
    let id = group_id(r, project, "default");
    let g = SecurityGroup {
        common: Common {
            id,
            name: "default".into(),
            description: DEFAULT_SG_DESCRIPTION.into(),
            project_id: project.into(),
            ..Common::default()
        },
        stateful: true,
        shared: false,
    };
    ins(&mut r.security_groups, id, g);
    for rule in template_rules(r, id, project, true) {
        ins(&mut r.security_group_rules, rule.common.id, rule);
    }
    id
}

fn project_of(a: &Attrs) -> Result<String, ApiError> {
    Ok(string(a, "project_id")?.or(string(a, "tenant_id")?).unwrap_or_default())
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.eq_ignore_ascii_case("default") {
        return Err(ApiError::conflict(
            "SecurityGroupDefaultAlreadyExists",
            "Default security group already exists. (`default` is the name of the group the server creates per project; pick another name)",
        ));
    }
    Ok(())
}

/// `POST /v2.0/security-groups`.
pub fn create_group(r: &mut Resources, a: &Attrs) -> Result<Uuid, ApiError> {
    check_keys(
        a,
        &["name", "description", "project_id", "tenant_id", "stateful", "tags"],
        &["id", "security_group_rules", "shared"],
        "POST",
    )?;
    let name = string(a, "name")?.unwrap_or_default();
    check_name(&name)?;
    if boolean(a, "stateful")? == Some(false) {
        return Err(bad_value(
            "stateful",
            "stateless security groups are not supported by dvr's firewall (Neutron's openvswitch driver, stateful); leave it out",
        ));
    }
    let project = project_of(a)?;
    ensure_default(r, &project);
    let id = group_id(r, &project, &name);
    let g = SecurityGroup {
        common: Common {
            id,
            name,
            description: string(a, "description")?.unwrap_or_default(),
            project_id: project.clone(),
            ..Common::default()
        },
        stateful: true,
        shared: false,
    };
    ins(&mut r.security_groups, id, g);
    for rule in template_rules(r, id, &project, false) {
        ins(&mut r.security_group_rules, rule.common.id, rule);
    }
    Ok(id)
}

/// `PUT /v2.0/security-groups/{id}`: name and description; the `default`
/// group keeps its name.
pub fn update_group(r: &mut Resources, id: Uuid, a: &Attrs) -> Result<(), ApiError> {
    check_keys(a, &["name", "description", "stateful", "tags"], &["project_id", "tenant_id", "security_group_rules", "shared"], "PUT")?;
    let g = r.security_groups.get(&id).ok_or_else(|| sg_not_found(&id.to_string()))?;
    let name = string(a, "name")?;
    if g.common.name == "default" && name.is_some() {
        return Err(ApiError::conflict("SecurityGroupCannotUpdateDefault", "Updating default security group not allowed."));
    }
    if let Some(n) = &name {
        check_name(n)?;
    }
    if boolean(a, "stateful")? == Some(false) {
        return Err(bad_value("stateful", "stateless security groups are not supported by dvr's firewall; leave it out"));
    }
    let description = string(a, "description")?;
    let g = r.security_groups.get_mut(&id).map(Arc::make_mut).expect("checked");
    if let Some(n) = name {
        g.common.name = n;
    }
    if let Some(d) = description {
        g.common.description = d;
    }
    Ok(())
}

/// `DELETE /v2.0/security-groups/{id}`: refused while a port is in the
/// group (the `default` group too: its ports are the project's ports without
/// an explicit list) or a rule of another group names it as remote.
pub fn delete_group(r: &mut Resources, id: Uuid) -> Result<(), ApiError> {
    if !r.security_groups.contains_key(&id) {
        return Err(sg_not_found(&id.to_string()));
    }
    let users: Vec<String> = r
        .ports
        .values()
        .filter(|p| r.port_groups(p).contains(&id))
        .map(|p| if p.common.name.is_empty() { p.common.id.to_string() } else { p.common.name.clone() })
        .collect();
    if !users.is_empty() {
        return Err(ApiError::conflict(
            "SecurityGroupInUse",
            format!(
                "Security Group {id} in use. (by port(s) {}; remove the group from those ports or delete them first)",
                users.join(", ")
            ),
        ));
    }
    if let Some(rule) = r.security_group_rules.values().find(|x| x.remote_group_id == Some(id) && x.security_group_id != id) {
        return Err(ApiError::conflict(
            "SecurityGroupInUse",
            format!(
                "Security Group {id} in use. (rule {} of group {} names it as remote_group_id; delete that rule first)",
                rule.common.id, rule.security_group_id
            ),
        ));
    }
    r.security_groups.shift_remove(&id);
    r.security_group_rules.retain(|_, x| x.security_group_id != id);
    Ok(())
}

fn port_value(a: &Attrs, k: &str) -> Result<Option<u16>, ApiError> {
    match a.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let n = match v {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            };
            match n {
                Some(n) if n <= 65535 => Ok(Some(n as u16)),
                _ => Err(invalid_input(format!("Invalid value for port {v}"))),
            }
        }
    }
}

/// `POST /v2.0/security-group-rules` (one rule; bulk calls it per rule and
/// checks the batch for duplicates).
pub fn create_rule(r: &mut Resources, a: &Attrs) -> Result<Uuid, ApiError> {
    check_keys(
        a,
        &[
            "security_group_id",
            "direction",
            "ethertype",
            "protocol",
            "port_range_min",
            "port_range_max",
            "remote_ip_prefix",
            "remote_group_id",
            "remote_address_group_id",
            "description",
            "project_id",
            "tenant_id",
        ],
        &["id", "normalized_cidr", "belongs_to_default_sg"],
        "POST",
    )?;
    let gid = required_uuid(a, "security_group_id", "group the rule belongs to")?;
    let group = r.security_groups.get(&gid).ok_or_else(|| sg_not_found(&gid.to_string()))?;
    let project = match project_of(a)? {
        p if p.is_empty() => group.common.project_id.clone(),
        p => p,
    };
    let direction = string(a, "direction")?.ok_or_else(|| {
        ApiError::bad_request("Failed to parse request. Required attribute 'direction' not specified (ingress or egress)")
    })?;
    if direction != "ingress" && direction != "egress" {
        return Err(bad_value("direction", format!("'{direction}' is not in ['ingress', 'egress']")));
    }
    let ethertype = match string(a, "ethertype")? {
        None => "IPv4".to_string(),
        Some(e) if e.eq_ignore_ascii_case("ipv4") => "IPv4".into(),
        Some(e) if e.eq_ignore_ascii_case("ipv6") => "IPv6".into(),
        Some(e) => {
            return Err(invalid_input(format!(
                "Security group rule for ethertype '{e}' not supported. Allowed values are ['IPv4', 'IPv6']."
            )));
        }
    };
    // Protocol: a name (any case) or 0..255; "any" and null mean every protocol.
    let protocol = match a.get("protocol") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let s = match v {
                Value::String(s) => s.to_lowercase(),
                Value::Number(n) => n.to_string(),
                other => other.to_string(),
            };
            if s == "any" {
                None
            } else if PROTOCOLS.iter().any(|(n, _, _)| *n == s) || s.parse::<u8>().is_ok() {
                Some(s)
            } else {
                let names: Vec<&str> = PROTOCOLS.iter().map(|(n, _, _)| *n).collect();
                return Err(invalid_input(format!(
                    "Security group rule protocol {v} not supported. Only protocol values [None, 'any', '{}'] and integer representations [0 to 255] are supported.",
                    names.join("', '")
                )));
            }
        }
    };
    let mut min = port_value(a, "port_range_min")?;
    let mut max = port_value(a, "port_range_max")?;
    // Neutron turns the entire range into "no range" (`_make_canonical_port_range`).
    if min == Some(1) && max == Some(65535) {
        (min, max) = (None, None);
    }
    if min.is_some() || max.is_some() {
        let Some(num) = protocol_number(protocol.as_deref()) else {
            return Err(invalid_input("Must also specify protocol if port range is given."));
        };
        if PORT_PROTOCOLS.contains(&num) {
            if min == Some(0) || max == Some(0) {
                return Err(invalid_input("Invalid value for port 0"));
            }
            if !matches!((min, max), (Some(a), Some(b)) if a <= b) {
                return Err(invalid_input("For TCP/UDP protocols, port_range_min must be <= port_range_max"));
            }
        } else if num == 1 || num == 58 {
            for (v, attr, field) in [(min, "port_range_min", "type"), (max, "port_range_max", "code")] {
                if let Some(v) = v
                    && v > 255
                {
                    return Err(invalid_input(format!("Invalid value for ICMP {field} ({attr}) {v}. It must be 0 to 255.")));
                }
            }
            if min.is_none()
                && let Some(code) = max
            {
                return Err(invalid_input(format!(
                    "ICMP code (port-range-max) {code} is provided but ICMP type (port-range-min) is missing."
                )));
            }
        } else {
            return Err(invalid_input(format!(
                "Ports cannot be specified for protocol {num}. Ports are only supported for DCCP, SCTP, TCP, UDP, UDPLITE."
            )));
        }
    }
    if ethertype == "IPv4" && matches!(protocol_number(protocol.as_deref()), Some(41 | 43 | 44 | 58 | 59 | 60)) {
        return Err(invalid_input(format!("Invalid ethertype {ethertype} for protocol {}.", protocol.clone().unwrap_or_default())));
    }
    let remote_ip_prefix = match string(a, "remote_ip_prefix")? {
        None => None,
        Some(p) if p.is_empty() => None,
        Some(p) => {
            let (v4, v6) = (p.parse::<ipnet::Ipv4Net>().ok(), p.parse::<ipnet::Ipv6Net>().ok());
            let (v4, v6) = (
                v4.or_else(|| p.parse::<std::net::Ipv4Addr>().ok().map(|a| ipnet::Ipv4Net::new(a, 32).expect("/32"))),
                v6.or_else(|| p.parse::<std::net::Ipv6Addr>().ok().map(|a| ipnet::Ipv6Net::new(a, 128).expect("/128"))),
            );
            let (text, family) = match (v4, v6) {
                (Some(n), _) => (n.to_string(), "IPv4"),
                (_, Some(n)) => (n.to_string(), "IPv6"),
                _ => {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "InvalidCIDR",
                        format!("Invalid CIDR {p} given as IP prefix (remote_ip_prefix, e.g. 10.0.0.0/24)."),
                    ));
                }
            };
            if family != ethertype {
                return Err(invalid_input(format!("Conflicting value ethertype {ethertype} for CIDR {p}")));
            }
            Some(text)
        }
    };
    let remote_group_id = uuid(a, "remote_group_id")?;
    if a.get("remote_address_group_id").is_some_and(|v| !v.is_null()) {
        return Err(bad_value(
            "remote_address_group_id",
            "address groups are not supported by dvr; use remote_ip_prefix or remote_group_id",
        ));
    }
    if remote_ip_prefix.is_some() && remote_group_id.is_some() {
        return Err(invalid_input("Only one of remote_ip_prefix or remote_group_id or remote_address_group_id may be provided."));
    }
    if let Some(rg) = remote_group_id
        && !r.security_groups.contains_key(&rg)
    {
        return Err(sg_not_found(&rg.to_string()));
    }
    let mut rule = SecurityGroupRule {
        common: Common { project_id: project, description: string(a, "description")?.unwrap_or_default(), ..Common::default() },
        security_group_id: gid,
        direction,
        ethertype,
        protocol,
        port_range_min: min,
        port_range_max: max,
        remote_ip_prefix,
        remote_group_id,
    };
    let key = rule_key(&rule);
    if let Some(same) = r.security_group_rules.values().find(|x| rule_key(x) == key) {
        return Err(ApiError::conflict(
            "SecurityGroupRuleExists",
            format!("Security group rule already exists. Rule id is {}.", same.common.id),
        ));
    }
    rule.common.id = next_rule_id(r, gid, &rule.ethertype, &[]);
    let id = rule.common.id;
    ins(&mut r.security_group_rules, id, rule);
    Ok(id)
}

/// `PUT /v2.0/security-group-rules/{id}`: only the description changes.
pub fn update_rule(r: &mut Resources, id: Uuid, a: &Attrs) -> Result<(), ApiError> {
    check_keys(
        a,
        &["description"],
        &[
            "security_group_id",
            "direction",
            "ethertype",
            "protocol",
            "port_range_min",
            "port_range_max",
            "remote_ip_prefix",
            "remote_group_id",
            "project_id",
            "tenant_id",
        ],
        "PUT",
    )?;
    let d = string(a, "description")?;
    let x = r.security_group_rules.get_mut(&id).map(Arc::make_mut).ok_or_else(|| rule_not_found(&id.to_string()))?;
    if let Some(d) = d {
        x.common.description = d;
    }
    Ok(())
}

/// `DELETE /v2.0/security-group-rules/{id}`.
pub fn delete_rule(r: &mut Resources, id: Uuid) -> Result<(), ApiError> {
    r.security_group_rules.shift_remove(&id).map(|_| ()).ok_or_else(|| rule_not_found(&id.to_string()))
}

/// The security attributes of a port request (`security_groups`,
/// `port_security_enabled`, `allowed_address_pairs`) applied to `p`, with
/// the ML2 plugin's rules: groups must exist, port security off allows
/// neither groups nor address pairs, pairs need an address and are unique.
pub fn port_attrs(r: &mut Resources, p: &mut Port, a: &Attrs, creating: bool) -> Result<(), ApiError> {
    let groups: Option<Option<Vec<Uuid>>> = match a.get("security_groups") {
        None => None,
        Some(Value::Null) => Some(Some(Vec::new())),
        Some(Value::Array(l)) => {
            let mut out = Vec::new();
            for v in l {
                let s = v.as_str().ok_or_else(|| bad_value("security_groups", format!("'{v}' is not a valid UUID")))?;
                let id = Uuid::parse_str(s).map_err(|_| bad_value("security_groups", format!("'{s}' is not a valid UUID")))?;
                if !r.security_groups.contains_key(&id) {
                    return Err(sg_not_found(s));
                }
                if !out.contains(&id) {
                    out.push(id);
                }
            }
            Some(Some(out))
        }
        Some(v) => return Err(bad_value("security_groups", format!("'{v}' is not a list of security group ids"))),
    };
    let psec = boolean(a, "port_security_enabled")?;
    let pairs = match a.get("allowed_address_pairs") {
        None => None,
        Some(Value::Null) => Some(Vec::new()),
        Some(Value::Array(l)) => {
            if l.len() > MAX_ADDRESS_PAIRS {
                return Err(invalid_input(format!("The number of allowed address pair exceeds the maximum {MAX_ADDRESS_PAIRS}.")));
            }
            let mut out: Vec<AddressPair> = Vec::new();
            for v in l {
                let m =
                    v.as_object().ok_or_else(|| bad_value("allowed_address_pairs", format!("'{v}' is not an object with ip_address")))?;
                check_keys(m, &["ip_address", "mac_address"], &[], "allowed_address_pairs")?;
                let ip = string(m, "ip_address")?.ok_or_else(|| invalid_input("AllowedAddressPair must contain ip_address"))?;
                let ip = match (ip.parse::<ipnet::Ipv4Net>(), ip.parse::<std::net::Ipv4Addr>()) {
                    (Ok(n), _) => n.to_string(),
                    (_, Ok(a)) => a.to_string(),
                    _ => return Err(bad_value("allowed_address_pairs", format!("'{ip}' is not an IPv4 address or prefix"))),
                };
                let mac = match string(m, "mac_address")? {
                    None => String::new(),
                    Some(s) => s
                        .parse::<dvr_model::MacAddr>()
                        .map(|m| m.to_string())
                        .map_err(|_| bad_value("allowed_address_pairs", format!("'{s}' is not a valid MAC address")))?,
                };
                let pair = AddressPair { ip_address: ip, mac_address: mac };
                if out.contains(&pair) {
                    return Err(invalid_input(format!(
                        "Request contains duplicate address pair: mac_address {} ip_address {}.",
                        pair.mac_address, pair.ip_address
                    )));
                }
                out.push(pair);
            }
            Some(out)
        }
        Some(v) => return Err(bad_value("allowed_address_pairs", format!("'{v}' is not a list of {{ip_address, mac_address}}"))),
    };
    let had_groups = !r.port_groups(p).is_empty();
    if let Some(b) = psec {
        p.port_security_enabled = Some(b);
    }
    let enabled = p.port_security_enabled != Some(false);
    if let Some(pairs) = pairs {
        if !pairs.is_empty() && !enabled {
            return Err(ApiError::conflict(
                "AddressPairAndPortSecurityRequired",
                "Port Security must be enabled in order to have allowed address pairs on a port.",
            ));
        }
        p.allowed_address_pairs = pairs;
    } else if !enabled && !p.allowed_address_pairs.is_empty() {
        return Err(ApiError::conflict(
            "AddressPairAndPortSecurityRequired",
            "Port Security must be enabled in order to have allowed address pairs on a port. (remove its allowed_address_pairs in the same request)",
        ));
    }
    match groups {
        Some(Some(list)) if !list.is_empty() && !enabled => {
            return Err(invalid_input("Port security must be enabled and port must have an IP address in order to use security groups."));
        }
        Some(g) => {
            if g.as_ref().is_some_and(|l| !l.is_empty()) {
                ensure_default(r, &p.common.project_id);
            }
            p.security_groups = g;
        }
        None if !enabled && !creating && had_groups && psec == Some(false) => {
            return Err(ApiError::conflict(
                "PortSecurityPortHasSecurityGroup",
                "Port has security group associated. Cannot disable port security or ip address until security group is removed (send \"security_groups\": [] in the same request).",
            ));
        }
        None if !enabled && creating => {
            // Neutron binds no group to a port created without port security.
            p.security_groups = Some(Vec::new());
        }
        None => {}
    }
    Ok(())
}
