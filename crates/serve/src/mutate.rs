//! Create, update and delete of each collection, on plain [`Resources`]:
//! Neutron's request checks (attribute names and types, referenced objects
//! exist, service ports are not deleted directly) happen here; every rule
//! about the deployment itself is left to the model via `logic::settle`.

use crate::body::*;
use crate::error::ApiError;
use crate::logic::{allocate_dvr_mac, id_taken, is_implicit, new_id, port_is_instance};
use crate::resources::*;
use axum::http::StatusCode;
use dvr_model::MacAddr;
use serde_json::Value;
use std::sync::Arc;
use uuid::Uuid;

/// Server settings the mutations need.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Default of a router's `distributed`.
    pub distributed_default: bool,
    /// Neutron's `dvr_base_mac`: base …
    pub dvr_base: MacAddr,
    /// … and mask.
    pub dvr_mask: MacAddr,
}

/// The collections of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coll {
    /// `/v2.0/networks`.
    Networks,
    /// `/v2.0/subnets`.
    Subnets,
    /// `/v2.0/ports`.
    Ports,
    /// `/v2.0/routers`.
    Routers,
    /// `/v2.0/floatingips`.
    FloatingIps,
    /// `/v2.0/dvr/hosts`.
    Hosts,
    /// `/v2.0/dvr/external-hosts`.
    ExternalHosts,
}

impl Coll {
    /// Body key of one object.
    pub fn singular(self) -> &'static str {
        match self {
            Coll::Networks => "network",
            Coll::Subnets => "subnet",
            Coll::Ports => "port",
            Coll::Routers => "router",
            Coll::FloatingIps => "floatingip",
            Coll::Hosts => "host",
            Coll::ExternalHosts => "external_host",
        }
    }
    /// Body key of a list.
    pub fn plural(self) -> &'static str {
        match self {
            Coll::Networks => "networks",
            Coll::Subnets => "subnets",
            Coll::Ports => "ports",
            Coll::Routers => "routers",
            Coll::FloatingIps => "floatingips",
            Coll::Hosts => "hosts",
            Coll::ExternalHosts => "external_hosts",
        }
    }
    /// URL path under `/v2.0/`.
    pub fn path(self) -> &'static str {
        match self {
            Coll::Hosts => "dvr/hosts",
            Coll::ExternalHosts => "dvr/external-hosts",
            other => other.plural(),
        }
    }
    /// Neutron's not-found error type.
    pub fn not_found(self, id: &str) -> ApiError {
        match self {
            Coll::Networks => ApiError::not_found("NetworkNotFound", "Network", id),
            Coll::Subnets => ApiError::not_found("SubnetNotFound", "Subnet", id),
            Coll::Ports => ApiError::not_found("PortNotFound", "Port", id),
            // Neutron 29 writes these two without the final period.
            Coll::Routers => ApiError::new(StatusCode::NOT_FOUND, "RouterNotFound", format!("Router {id} could not be found")),
            Coll::FloatingIps => ApiError::new(StatusCode::NOT_FOUND, "FloatingIPNotFound", format!("Floating IP {id} could not be found")),
            Coll::Hosts => ApiError::not_found("HostNotFound", "Host", id),
            Coll::ExternalHosts => ApiError::not_found("ExternalHostNotFound", "External host", id),
        }
    }
    /// Whether the object exists.
    pub fn contains(self, r: &Resources, id: &Uuid) -> bool {
        match self {
            Coll::Networks => r.networks.contains_key(id),
            Coll::Subnets => r.subnets.contains_key(id),
            Coll::Ports => r.ports.contains_key(id),
            Coll::Routers => r.routers.contains_key(id),
            Coll::FloatingIps => r.floatingips.contains_key(id),
            Coll::Hosts => r.hosts.contains_key(id),
            Coll::ExternalHosts => r.external_hosts.contains_key(id),
        }
    }
    /// The object's `revision_number`.
    pub fn revision(self, r: &Resources, id: &Uuid) -> Option<u64> {
        Some(match self {
            Coll::Networks => r.networks.get(id)?.common.revision_number,
            Coll::Subnets => r.subnets.get(id)?.common.revision_number,
            Coll::Ports => r.ports.get(id)?.common.revision_number,
            Coll::Routers => r.routers.get(id)?.common.revision_number,
            Coll::FloatingIps => r.floatingips.get(id)?.common.revision_number,
            Coll::Hosts => r.hosts.get(id)?.common.revision_number,
            Coll::ExternalHosts => r.external_hosts.get(id)?.common.revision_number,
        })
    }
}

const COMMON_POST: [&str; 4] = ["name", "description", "project_id", "tenant_id"];

fn with_common<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&str> = COMMON_POST.to_vec();
    v.extend_from_slice(extra);
    v
}

const READONLY: [&str; 6] = ["id", "revision_number", "created_at", "updated_at", "status", "tags"];

fn common_from(a: &Attrs, id: Uuid) -> Result<Common, ApiError> {
    Ok(Common {
        id,
        name: string(a, "name")?.unwrap_or_default(),
        description: string(a, "description")?.unwrap_or_default(),
        project_id: string(a, "project_id")?.or(string(a, "tenant_id")?).unwrap_or_default(),
        ..Common::default()
    })
}

fn update_common(c: &mut Common, a: &Attrs) -> Result<(), ApiError> {
    if let Some(n) = string(a, "name")? {
        c.name = n;
    }
    if let Some(d) = string(a, "description")? {
        c.description = d;
    }
    Ok(())
}

fn need_network(r: &Resources, id: Uuid) -> Result<&Network, ApiError> {
    r.networks.get(&id).map(|n| &**n).ok_or_else(|| Coll::Networks.not_found(&id.to_string()))
}

/// Create one object; returns its id.
pub fn create(r: &mut Resources, coll: Coll, a: &Attrs, s: &Settings) -> Result<Uuid, ApiError> {
    match coll {
        Coll::Networks => create_network(r, a),
        Coll::Subnets => create_subnet(r, a),
        Coll::Ports => create_port(r, a),
        Coll::Routers => create_router(r, a, s),
        Coll::FloatingIps => create_fip(r, a),
        Coll::Hosts => create_host(r, a, s),
        Coll::ExternalHosts => create_external_host(r, a),
    }
}

/// Update one object.
pub fn update(r: &mut Resources, coll: Coll, id: Uuid, a: &Attrs) -> Result<(), ApiError> {
    if !coll.contains(r, &id) {
        return Err(coll.not_found(&id.to_string()));
    }
    match coll {
        Coll::Networks => update_network(r, id, a),
        Coll::Subnets => update_subnet(r, id, a),
        Coll::Ports => update_port(r, id, a),
        Coll::Routers => update_router(r, id, a),
        Coll::FloatingIps => update_fip(r, id, a),
        Coll::Hosts => update_host(r, id, a),
        Coll::ExternalHosts => {
            check_keys(a, &["name", "description", "ip_address"], &["network_id"], "PUT")?;
            let ip = ipv4(a, "ip_address")?;
            let e = r.external_hosts.get_mut(&id).map(Arc::make_mut).expect("checked");
            update_common(&mut e.common, a)?;
            if let Some(ip) = ip {
                e.ip_address = Some(ip.to_string());
            }
            Ok(())
        }
    }
}

/// Delete one object (with what Neutron deletes along with it).
pub fn delete(r: &mut Resources, coll: Coll, id: Uuid) -> Result<(), ApiError> {
    if !coll.contains(r, &id) {
        return Err(coll.not_found(&id.to_string()));
    }
    match coll {
        Coll::Networks => {
            let used =
                r.ports.values().any(|p| p.network_id == id && p.device_owner != "network:dhcp" && p.device_owner != "network:floatingip")
                    || r.floatingips.values().any(|f| f.floating_network_id == id)
                    || r.external_hosts.values().any(|e| e.network_id == id)
                    || r.routers.values().any(|x| x.external_gateway_info.as_ref().is_some_and(|g| g.network_id == id));
            if used {
                let ports: Vec<String> = r
                    .ports
                    .values()
                    .filter(|p| p.network_id == id && p.device_owner != "network:dhcp" && p.device_owner != "network:floatingip")
                    .map(|p| p.common.id.to_string())
                    .collect();
                return Err(ApiError::conflict(
                    "NetworkInUse",
                    format!(
                        "Unable to complete operation on network {id}. There are one or more ports still in use on the network, \
                         id for these ports is: {}.",
                        ports.join(",")
                    ),
                )
                .with_detail("delete its ports, floating IPs, router gateways and external hosts first"));
            }
            r.networks.shift_remove(&id);
            r.subnets.retain(|_, s| s.network_id != id);
            r.ports.retain(|_, p| p.network_id != id);
        }
        Coll::Subnets => {
            let used = r.ports.values().any(|p| p.device_owner != "network:dhcp" && p.fixed_ips.iter().any(|f| f.subnet_id == id));
            if used {
                return Err(ApiError::conflict(
                    "SubnetInUse",
                    format!("Unable to complete operation on subnet {id}: One or more ports have an IP allocation from this subnet."),
                )
                .with_detail("a router interface or a port has an address on it; remove the router interface or delete the ports first"));
            }
            r.subnets.shift_remove(&id);
            r.ports.retain(|_, p| !(p.device_owner == "network:dhcp" && p.fixed_ips.iter().any(|f| f.subnet_id == id)));
        }
        Coll::Ports => {
            let p = &r.ports[&id];
            if is_implicit(&p.device_owner) {
                return Err(ApiError::conflict(
                    "ServicePortInUse",
                    format!(
                        "Port {id} cannot be deleted directly via the port API: has device owner {}; remove the router \
                         interface, gateway or floating IP that owns it",
                        p.device_owner
                    ),
                ));
            }
            for f in r.floatingips.values_mut().filter(|f| f.port_id == Some(id)).map(Arc::make_mut) {
                f.port_id = None;
                f.fixed_ip_address = None;
            }
            r.ports.shift_remove(&id);
        }
        Coll::Routers => {
            let rid = id.to_string();
            if r.ports.values().any(|p| is_router_interface(&p.device_owner) && p.device_id == rid) {
                let ports: Vec<String> = r
                    .ports
                    .values()
                    .filter(|p| is_router_interface(&p.device_owner) && p.device_id == rid)
                    .map(|p| p.common.id.to_string())
                    .collect();
                return Err(ApiError::conflict("RouterInUse", format!("Router {id} has ports still attached: {}", ports.join(", ")))
                    .with_detail("remove its interfaces (remove_router_interface) first"));
            }
            if r.floatingips.values().any(|f| f.router_id == Some(id) && f.port_id.is_some()) {
                return Err(ApiError::conflict(
                    "RouterInUse",
                    format!("Router {id} serves associated floating IPs; disassociate them first"),
                ));
            }
            r.routers.shift_remove(&id);
            r.ports.retain(|_, p| !(p.device_id == rid && is_implicit(&p.device_owner)));
        }
        Coll::FloatingIps => {
            r.floatingips.shift_remove(&id);
        }
        Coll::Hosts => {
            r.hosts.shift_remove(&id);
        }
        Coll::ExternalHosts => {
            r.external_hosts.shift_remove(&id);
        }
    }
    Ok(())
}

fn create_network(r: &mut Resources, a: &Attrs) -> Result<Uuid, ApiError> {
    let allowed = with_common(&[
        "admin_state_up",
        "shared",
        "router:external",
        "provider:network_type",
        "provider:physical_network",
        "provider:segmentation_id",
        "mtu",
        "availability_zone_hints",
        "port_security_enabled",
    ]);
    check_keys(a, &allowed, &READONLY, "POST")?;
    let network_type = string(a, "provider:network_type")?.unwrap_or_else(|| "vlan".into());
    if !["vlan", "flat", "vxlan"].contains(&network_type.as_str()) {
        return Err(bad_value("provider:network_type", format!("'{network_type}' is not one of vlan, flat, vxlan")));
    }
    let mut physical_network = string(a, "provider:physical_network")?;
    if physical_network.is_none() && network_type != "vxlan" {
        // Neutron's default: the first physical network of the hosts' mappings.
        physical_network = r.hosts.values().flat_map(|h| h.bridge_mappings.keys()).next().cloned();
    }
    let mut c = common_from(a, Uuid::nil())?;
    c.id = new_id("network", &c.name, |id| id_taken(r, id));
    let id = c.id;
    let n = Network {
        common: c,
        admin_state_up: boolean(a, "admin_state_up")?.unwrap_or(true),
        status: "ACTIVE".into(),
        shared: boolean(a, "shared")?.unwrap_or(false),
        external: boolean(a, "router:external")?.unwrap_or(false),
        network_type,
        physical_network,
        segmentation_id: integer(a, "provider:segmentation_id")?,
        mtu: integer(a, "mtu")?.map(|m| m as u32).unwrap_or(1500),
        subnets: Vec::new(),
    };
    if n.network_type == "vlan"
        && let Some(vlan) = n.segmentation_id
        && let Some(other) = r
            .networks
            .values()
            .find(|o| o.network_type == "vlan" && o.physical_network == n.physical_network && o.segmentation_id == Some(vlan))
    {
        let physnet = n.physical_network.clone().unwrap_or_default();
        return Err(ApiError::conflict(
            "VlanIdInUse",
            format!("Unable to create the network. The VLAN {vlan} on physical network {physnet} is in use."),
        )
        .with_detail(format!(
            "network {} ({}) has it; give another provider:segmentation_id or leave it out to have one allocated",
            other.common.id, other.common.name
        )));
    }
    ins(&mut r.networks, id, n);
    Ok(id)
}

fn update_network(r: &mut Resources, id: Uuid, a: &Attrs) -> Result<(), ApiError> {
    check_keys(
        a,
        &["name", "description", "admin_state_up", "shared", "router:external", "mtu", "port_security_enabled"],
        &["provider:network_type", "provider:physical_network", "provider:segmentation_id", "subnets", "project_id", "tenant_id"],
        "PUT",
    )?;
    let n = r.networks.get_mut(&id).map(Arc::make_mut).expect("checked");
    update_common(&mut n.common, a)?;
    if let Some(b) = boolean(a, "admin_state_up")? {
        n.admin_state_up = b;
    }
    if let Some(b) = boolean(a, "shared")? {
        n.shared = b;
    }
    if let Some(b) = boolean(a, "router:external")? {
        n.external = b;
    }
    if let Some(m) = integer(a, "mtu")? {
        n.mtu = m as u32;
    }
    Ok(())
}

fn pools(a: &Attrs) -> Result<Option<Vec<Pool>>, ApiError> {
    let Some(v) = a.get("allocation_pools").filter(|v| !v.is_null()) else { return Ok(None) };
    let list = v.as_array().ok_or_else(|| bad_value("allocation_pools", "must be a list of {start, end}"))?;
    let mut out = Vec::new();
    for p in list {
        let m = p.as_object().ok_or_else(|| bad_value("allocation_pools", format!("'{p}' is not an object with start and end")))?;
        let start = ipv4(m, "start")?.ok_or_else(|| bad_value("allocation_pools", "every pool needs `start`"))?;
        let end = ipv4(m, "end")?.ok_or_else(|| bad_value("allocation_pools", "every pool needs `end`"))?;
        out.push(Pool { start: start.to_string(), end: end.to_string() });
    }
    Ok(Some(out))
}

fn routes(a: &Attrs, k: &str) -> Result<Option<Vec<Route>>, ApiError> {
    let Some(v) = a.get(k).filter(|v| !v.is_null()) else { return Ok(None) };
    let list = v.as_array().ok_or_else(|| bad_value(k, "must be a list of {destination, nexthop}"))?;
    let mut out = Vec::new();
    for x in list {
        let m = x.as_object().ok_or_else(|| bad_value(k, format!("'{x}' is not an object")))?;
        let d = string(m, "destination")?.ok_or_else(|| bad_value(k, "every route needs `destination`"))?;
        d.parse::<ipnet::Ipv4Net>().map_err(|_| bad_value(k, format!("'{d}' is not a valid IPv4 CIDR")))?;
        let nh = ipv4(m, "nexthop")?.ok_or_else(|| bad_value(k, "every route needs `nexthop`"))?;
        out.push(Route { destination: d, nexthop: nh.to_string() });
    }
    Ok(Some(out))
}

fn dns(a: &Attrs) -> Result<Option<Vec<String>>, ApiError> {
    let Some(v) = a.get("dns_nameservers").filter(|v| !v.is_null()) else { return Ok(None) };
    let list = v.as_array().ok_or_else(|| bad_value("dns_nameservers", "must be a list of addresses"))?;
    list.iter()
        .map(|x| match x.as_str().and_then(|s| s.parse::<std::net::Ipv4Addr>().ok()) {
            Some(ip) => Ok(ip.to_string()),
            None => Err(bad_value("dns_nameservers", format!("'{x}' is not a valid IPv4 address"))),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn create_subnet(r: &mut Resources, a: &Attrs) -> Result<Uuid, ApiError> {
    let allowed = with_common(&[
        "network_id",
        "ip_version",
        "cidr",
        "gateway_ip",
        "enable_dhcp",
        "allocation_pools",
        "host_routes",
        "dns_nameservers",
        "subnetpool_id",
        "ipv6_ra_mode",
        "ipv6_address_mode",
        "segment_id",
        "service_types",
        "use_default_subnetpool",
    ]);
    check_keys(a, &allowed, &READONLY, "POST")?;
    let network_id = required_uuid(a, "network_id", "network of the subnet")?;
    need_network(r, network_id)?;
    match integer(a, "ip_version")? {
        None | Some(4) => {}
        Some(v) => return Err(bad_value("ip_version", format!("{v} is not supported: dvr networks are IPv4 only"))),
    }
    for k in ["subnetpool_id", "ipv6_ra_mode", "ipv6_address_mode", "segment_id"] {
        if a.get(k).is_some_and(|v| !v.is_null()) {
            return Err(ApiError::bad_request(format!(
                "Invalid input for {k}. Reason: not supported by dvr (IPv4 subnets with a given CIDR only)."
            )));
        }
    }
    let cidr = string(a, "cidr")?.ok_or_else(|| {
        ApiError::bad_request("Failed to parse request. Required attribute 'cidr' not specified (the subnet's prefix, e.g. 192.168.1.0/24)")
    })?;
    if a.get("gateway_ip").is_some_and(Value::is_null) {
        return Err(bad_value(
            "gateway_ip",
            "a subnet without a gateway cannot be routed by a DVR router; give an address or leave it out",
        ));
    }
    let gateway = ipv4(a, "gateway_ip")?;
    let mut c = common_from(a, Uuid::nil())?;
    c.id = new_id("subnet", &c.name, |id| id_taken(r, id));
    let id = c.id;
    ins(
        &mut r.subnets,
        id,
        Subnet {
            common: c,
            network_id,
            ip_version: 4,
            cidr,
            gateway_ip: gateway.map(|g| g.to_string()),
            enable_dhcp: boolean(a, "enable_dhcp")?.unwrap_or(true),
            allocation_pools: pools(a)?.unwrap_or_default(),
            host_routes: routes(a, "host_routes")?.unwrap_or_default(),
            dns_nameservers: dns(a)?.unwrap_or_default(),
        },
    );
    Ok(id)
}

fn update_subnet(r: &mut Resources, id: Uuid, a: &Attrs) -> Result<(), ApiError> {
    check_keys(
        a,
        &["name", "description", "enable_dhcp", "gateway_ip", "allocation_pools", "host_routes", "dns_nameservers"],
        &["network_id", "cidr", "ip_version", "project_id", "tenant_id"],
        "PUT",
    )?;
    let gw = ipv4(a, "gateway_ip")?;
    let (p, h, d, e) = (pools(a)?, routes(a, "host_routes")?, dns(a)?, boolean(a, "enable_dhcp")?);
    let s = r.subnets.get_mut(&id).map(Arc::make_mut).expect("checked");
    update_common(&mut s.common, a)?;
    if let Some(g) = gw {
        s.gateway_ip = Some(g.to_string());
    }
    if let Some(p) = p {
        s.allocation_pools = p;
    }
    if let Some(h) = h {
        s.host_routes = h;
    }
    if let Some(d) = d {
        s.dns_nameservers = d;
    }
    if let Some(e) = e {
        s.enable_dhcp = e;
    }
    Ok(())
}

/// `fixed_ips` of a request: at most one IPv4 address on the port's network.
/// Neutron's 409 for an address some port or floating IP already holds, in
/// its exact wording (clients match on it); our explanation in `detail`.
fn ip_taken(r: &Resources, subnet: Uuid, ip: std::net::Ipv4Addr, except: Option<Uuid>) -> Result<(), ApiError> {
    let text = ip.to_string();
    let port =
        r.ports.values().find(|p| Some(p.common.id) != except && p.fixed_ips.iter().any(|f| f.subnet_id == subnet && f.ip_address == text));
    let fip = r
        .floatingips
        .values()
        .find(|f| f.floating_ip_address == text && r.subnets.get(&subnet).is_some_and(|s| s.network_id == f.floating_network_id));
    let holder = match (port, fip) {
        (Some(p), _) => format!("port {} ({})", p.common.id, if p.common.name.is_empty() { &p.device_owner } else { &p.common.name }),
        (None, Some(f)) => format!("floating IP {}", f.common.id),
        (None, None) => return Ok(()),
    };
    Err(ApiError::conflict("IpAddressAlreadyAllocated", format!("IP address {ip} already allocated in subnet {subnet}"))
        .with_detail(format!("{ip} is held by {holder}; give another address or leave it out to have one allocated")))
}

fn fixed_ips(r: &Resources, a: &Attrs, network_id: Uuid, port: Option<Uuid>) -> Result<Option<Vec<FixedIp>>, ApiError> {
    let Some(v) = a.get("fixed_ips").filter(|v| !v.is_null()) else { return Ok(None) };
    let list = v.as_array().ok_or_else(|| bad_value("fixed_ips", "must be a list of {subnet_id, ip_address}"))?;
    if list.len() > 1 {
        return Err(bad_value("fixed_ips", "dvr ports have exactly one IPv4 address; give one entry"));
    }
    let Some(first) = list.first() else { return Ok(Some(Vec::new())) };
    let m = first.as_object().ok_or_else(|| bad_value("fixed_ips", format!("'{first}' is not an object")))?;
    check_keys(m, &["subnet_id", "ip_address"], &[], "fixed_ips")?;
    let ip = ipv4(m, "ip_address")?;
    let subnets: Vec<&Subnet> = r.subnets.values().filter(|s| s.network_id == network_id).map(|s| &**s).collect();
    let subnet = match uuid(m, "subnet_id")? {
        Some(sid) => {
            let s = r.subnets.get(&sid).ok_or_else(|| Coll::Subnets.not_found(&sid.to_string()))?;
            if s.network_id != network_id {
                return Err(ApiError::bad_request(format!(
                    "Invalid input for operation: Failed to create port on network {network_id}, because fixed_ips included invalid subnet {sid}."
                )));
            }
            if ip.is_none() && subnets.first().map(|f| f.common.id) != Some(sid) {
                return Err(bad_value(
                    "fixed_ips",
                    format!("allocation in subnet {sid}, which is not the network's first, is not supported; give `ip_address` as well"),
                ));
            }
            if let Some(ip) = ip
                && !s.cidr.parse::<ipnet::Ipv4Net>().is_ok_and(|c| c.contains(&ip))
            {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "InvalidIpForSubnet",
                    format!("IP address {ip} is not a valid IP for the specified subnet."),
                )
                .with_detail(format!("subnet {sid} is {}; use an address inside it or leave ip_address out", s.cidr)));
            }
            sid
        }
        None => {
            let ip = ip.ok_or_else(|| bad_value("fixed_ips", "give `subnet_id` or `ip_address`"))?;
            subnets.iter().find(|s| s.cidr.parse::<ipnet::Ipv4Net>().is_ok_and(|c| c.contains(&ip))).map(|s| s.common.id).ok_or_else(
                || {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "InvalidIpForNetwork",
                        format!("IP address {ip} is not a valid IP for any of the subnets on the specified network {network_id}."),
                    )
                },
            )?
        }
    };
    if let Some(ip) = ip {
        ip_taken(r, subnet, ip, port)?;
    }
    Ok(Some(match ip {
        Some(ip) => vec![FixedIp { subnet_id: subnet, ip_address: ip.to_string() }],
        // Allocation on the first subnet: leave the address to the model.
        None => Vec::new(),
    }))
}

fn mac(a: &Attrs) -> Result<Option<String>, ApiError> {
    match string(a, "mac_address")? {
        None => Ok(None),
        Some(s) => match s.parse::<MacAddr>() {
            Ok(m) if !m.is_multicast() && m != MacAddr::ZERO => Ok(Some(m.to_string())),
            _ => Err(bad_value("mac_address", format!("'{s}' is not a valid MAC address"))),
        },
    }
}

const PORT_IGNORED: [&str; 7] = [
    "security_groups",
    "port_security_enabled",
    "allowed_address_pairs",
    "binding:profile",
    "binding:vnic_type",
    "admin_state_up",
    "extra_dhcp_opts",
];

fn create_port(r: &mut Resources, a: &Attrs) -> Result<Uuid, ApiError> {
    let mut allowed = with_common(&["network_id", "mac_address", "fixed_ips", "device_owner", "device_id", "binding:host_id"]);
    allowed.extend_from_slice(&PORT_IGNORED);
    check_keys(a, &allowed, &["binding:vif_type", "binding:vif_details", "id", "status"], "POST")?;
    let network_id = required_uuid(a, "network_id", "network of the port")?;
    need_network(r, network_id)?;
    let device_owner = string(a, "device_owner")?.unwrap_or_default();
    if is_implicit(&device_owner) {
        return Err(bad_value(
            "device_owner",
            format!("'{device_owner}' ports are created by the server itself; use add_router_interface, a router gateway or a floating IP"),
        ));
    }
    let fixed = fixed_ips(r, a, network_id, None)?.unwrap_or_default();
    let mac_address = mac(a)?.unwrap_or_default();
    if !mac_address.is_empty()
        && let Some(other) = r.ports.values().find(|p| p.mac_address == mac_address)
    {
        return Err(ApiError::conflict(
            "MacAddressInUse",
            format!("Unable to complete operation for network {network_id}. The mac address {mac_address} is in use."),
        )
        .with_detail(format!("port {} has it; leave mac_address out to have one allocated", other.common.id)));
    }
    let host_id = string(a, "binding:host_id")?.unwrap_or_default();
    let mut c = common_from(a, Uuid::nil())?;
    let key = if crate::convert::is_instance(&device_owner, &host_id) { format!("vm:{}", c.name) } else { format!("port:{}", c.name) };
    c.id = new_id("port", &key, |id| id_taken(r, id));
    let id = c.id;
    ins(
        &mut r.ports,
        id,
        Port {
            common: c,
            network_id,
            mac_address,
            fixed_ips: fixed,
            device_owner,
            device_id: string(a, "device_id")?.unwrap_or_default(),
            host_id,
            vif_type: "unbound".into(),
            vnic_type: "normal".into(),
            status: "DOWN".into(),
            admin_state_up: boolean(a, "admin_state_up")?.unwrap_or(true),
        },
    );
    Ok(id)
}

fn update_port(r: &mut Resources, id: Uuid, a: &Attrs) -> Result<(), ApiError> {
    let mut allowed = vec!["name", "description", "mac_address", "fixed_ips", "device_owner", "device_id", "binding:host_id"];
    allowed.extend_from_slice(&PORT_IGNORED);
    check_keys(a, &allowed, &["network_id", "binding:vif_type", "project_id", "tenant_id"], "PUT")?;
    let p = &r.ports[&id];
    if is_implicit(&p.device_owner) && a.keys().any(|k| k != "name" && k != "description") {
        return Err(ApiError::conflict(
            "ServicePortInUse",
            format!("Port {id} is owned by {}; only its name and description can be changed", p.device_owner),
        ));
    }
    let network_id = p.network_id;
    let fixed = fixed_ips(r, a, network_id, Some(id))?;
    let mac = mac(a)?;
    // Neutron: the MAC of a bound port is what the hypervisor plugged; it cannot change.
    if let Some(m) = &mac
        && *m != p.mac_address
        && !p.host_id.is_empty()
        && p.vif_type != "unbound"
    {
        return Err(ApiError::conflict(
            "PortBound",
            format!(
                "Unable to complete operation on port {id}, port is already bound, port type: {}, old_mac {}, new_mac {m}.",
                p.vif_type, p.mac_address
            ),
        )
        .with_detail("unbind it first (binding:host_id: \"\"), or create a new port"));
    }
    let owner = string(a, "device_owner")?;
    if owner.as_deref().is_some_and(is_implicit) {
        return Err(bad_value("device_owner", "network:* owners are set by the server itself"));
    }
    let (dev, host) = (string(a, "device_id")?, string(a, "binding:host_id")?);
    let p = r.ports.get_mut(&id).map(Arc::make_mut).expect("checked");
    update_common(&mut p.common, a)?;
    if let Some(f) = fixed {
        p.fixed_ips = f;
    }
    if let Some(m) = mac {
        p.mac_address = m;
    }
    if let Some(o) = owner {
        p.device_owner = o;
    }
    if let Some(d) = dev {
        p.device_id = d;
    }
    if let Some(h) = host {
        p.host_id = h;
    }
    Ok(())
}

/// `external_gateway_info` of a request; `Some(None)` clears the gateway.
fn gateway(r: &mut Resources, a: &Attrs, router: Uuid, router_label: &str) -> Result<Option<Option<GatewayInfo>>, ApiError> {
    let Some(v) = a.get("external_gateway_info") else { return Ok(None) };
    let m = match v {
        Value::Null => return Ok(Some(None)),
        Value::Object(m) if m.is_empty() => return Ok(Some(None)),
        Value::Object(m) => m,
        other => return Err(bad_value("external_gateway_info", format!("'{other}' is not an object"))),
    };
    check_keys(m, &["network_id", "enable_snat", "external_fixed_ips", "qos_policy_id"], &[], "external_gateway_info")?;
    let network_id = required_uuid(m, "network_id", "external network of the gateway")?;
    need_network(r, network_id)?;
    let enable_snat = boolean(m, "enable_snat")?.unwrap_or(true);
    // A requested gateway address: pin the qg- port on it before the model allocates.
    if let Some(list) = m.get("external_fixed_ips").and_then(Value::as_array)
        && let Some(first) = list.first().and_then(Value::as_object)
        && let Some(ip) = ipv4(first, "ip_address")?
    {
        let subnet = r
            .subnets
            .values()
            .find(|s| s.network_id == network_id && s.cidr.parse::<ipnet::Ipv4Net>().is_ok_and(|c| c.contains(&ip)))
            .map(|s| s.common.id)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "InvalidIpForNetwork",
                    format!("IP address {ip} is not a valid IP for any of the subnets on the specified network {network_id}."),
                )
            })?;
        let rid = router.to_string();
        r.ports.retain(|_, p| !(p.device_owner == "network:router_gateway" && p.device_id == rid));
        let id = new_id("port", &format!("qg:{router_label}"), |id| id_taken(r, id));
        ins(
            &mut r.ports,
            id,
            Port {
                common: Common { id, ..Common::default() },
                network_id,
                fixed_ips: vec![FixedIp { subnet_id: subnet, ip_address: ip.to_string() }],
                device_owner: "network:router_gateway".into(),
                device_id: rid,
                ..Port::default()
            },
        );
    }
    Ok(Some(Some(GatewayInfo { network_id, enable_snat, external_fixed_ips: Vec::new() })))
}

fn create_router(r: &mut Resources, a: &Attrs, s: &Settings) -> Result<Uuid, ApiError> {
    let allowed = with_common(&["admin_state_up", "distributed", "ha", "external_gateway_info", "availability_zone_hints", "flavor_id"]);
    check_keys(a, &allowed, &READONLY, "POST")?;
    if boolean(a, "ha")? == Some(true) {
        return Err(bad_value("ha", "L3 HA routers are not supported; dvr routers are distributed"));
    }
    let mut c = common_from(a, Uuid::nil())?;
    c.id = new_id("router", &c.name, |id| id_taken(r, id));
    let id = c.id;
    let label = if c.name.is_empty() { id.to_string() } else { c.name.clone() };
    let gw = gateway(r, a, id, &label)?.flatten();
    ins(
        &mut r.routers,
        id,
        Router {
            common: c,
            admin_state_up: boolean(a, "admin_state_up")?.unwrap_or(true),
            status: "ACTIVE".into(),
            distributed: boolean(a, "distributed")?.unwrap_or(s.distributed_default),
            ha: false,
            external_gateway_info: gw,
            routes: Vec::new(),
        },
    );
    Ok(id)
}

fn update_router(r: &mut Resources, id: Uuid, a: &Attrs) -> Result<(), ApiError> {
    check_keys(
        a,
        &["name", "description", "admin_state_up", "external_gateway_info", "distributed", "routes"],
        &["ha", "project_id", "tenant_id"],
        "PUT",
    )?;
    if routes(a, "routes")?.is_some_and(|x| !x.is_empty()) {
        return Err(bad_value("routes", "extra routes are not supported by dvr"));
    }
    let label = {
        let x = &r.routers[&id];
        if x.common.name.is_empty() { id.to_string() } else { x.common.name.clone() }
    };
    if let Some(v) = a.get("external_gateway_info") {
        let rid = id.to_string();
        let new_net = v.get("network_id").and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok());
        let old_net = r.routers[&id].external_gateway_info.as_ref().map(|g| g.network_id);
        let explicit_ip = v.get("external_fixed_ips").and_then(Value::as_array).is_some_and(|l| !l.is_empty());
        if new_net != old_net || explicit_ip {
            r.ports.retain(|_, p| !(p.device_owner == "network:router_gateway" && p.device_id == rid));
        }
    }
    let gw = gateway(r, a, id, &label)?;
    let (admin, dist) = (boolean(a, "admin_state_up")?, boolean(a, "distributed")?);
    let x = r.routers.get_mut(&id).map(Arc::make_mut).expect("checked");
    update_common(&mut x.common, a)?;
    if let Some(b) = admin {
        x.admin_state_up = b;
    }
    if let Some(d) = dist {
        x.distributed = d;
    }
    if let Some(g) = gw {
        x.external_gateway_info = g;
    }
    Ok(())
}

/// `add_router_interface`: answers Neutron's body.
pub fn add_interface(r: &mut Resources, router: Uuid, a: &Attrs) -> Result<Value, ApiError> {
    let x = r.routers.get(&router).ok_or_else(|| Coll::Routers.not_found(&router.to_string()))?;
    check_keys(a, &["subnet_id", "port_id"], &[], "add_router_interface")?;
    let rid = router.to_string();
    let label = if x.common.name.is_empty() { rid.clone() } else { x.common.name.clone() };
    let project = x.common.project_id.clone();
    let owner = if x.distributed { "network:router_interface_distributed" } else { "network:router_interface" };
    let (sid, pid) = (uuid(a, "subnet_id")?, uuid(a, "port_id")?);
    let (port_id, subnet_id) = match (sid, pid) {
        (Some(_), Some(_)) => return Err(ApiError::bad_request("Bad router request: Cannot specify both subnet-id and port-id.")),
        (None, None) => return Err(ApiError::bad_request("Bad router request: Either subnet_id or port_id must be specified.")),
        (Some(sid), None) => {
            let s = r.subnets.get(&sid).ok_or_else(|| Coll::Subnets.not_found(&sid.to_string()))?;
            if r.ports
                .values()
                .any(|p| is_router_interface(&p.device_owner) && p.device_id == rid && p.fixed_ips.iter().any(|f| f.subnet_id == sid))
            {
                return Err(ApiError::bad_request(format!("Bad router request: Router already has a port on subnet {sid}.")));
            }
            let sub_label = if s.common.name.is_empty() { sid.to_string() } else { s.common.name.clone() };
            let gw = s.gateway_ip.clone().unwrap_or_default();
            let network_id = s.network_id;
            let id = new_id("port", &format!("qr:{label}:{sub_label}"), |id| id_taken(r, id));
            ins(
                &mut r.ports,
                id,
                Port {
                    common: Common { id, project_id: project.clone(), ..Common::default() },
                    network_id,
                    fixed_ips: vec![FixedIp { subnet_id: sid, ip_address: gw }],
                    device_owner: owner.into(),
                    device_id: rid.clone(),
                    ..Port::default()
                },
            );
            (id, sid)
        }
        (None, Some(pid)) => {
            let p = r.ports.get(&pid).ok_or_else(|| Coll::Ports.not_found(&pid.to_string()))?;
            if !p.device_owner.is_empty() || !p.device_id.is_empty() {
                return Err(ApiError::conflict(
                    "PortInUse",
                    format!("Port {pid} is in use by {} {}; use a free port", p.device_owner, p.device_id),
                ));
            }
            let f = p
                .fixed_ips
                .first()
                .cloned()
                .ok_or_else(|| ApiError::bad_request(format!("Bad router request: Port {pid} has no fixed IP.")))?;
            let s = &r.subnets[&f.subnet_id];
            if s.gateway_ip.as_deref() != Some(f.ip_address.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "Bad router request: port {pid} has {} but dvr router interfaces sit on the subnet's gateway {}; create the port with that address or add the subnet by subnet_id",
                    f.ip_address,
                    s.gateway_ip.clone().unwrap_or_default()
                )));
            }
            if r.ports.values().any(|p| {
                is_router_interface(&p.device_owner) && p.device_id == rid && p.fixed_ips.iter().any(|x| x.subnet_id == f.subnet_id)
            }) {
                return Err(ApiError::bad_request(format!("Bad router request: Router already has a port on subnet {}.", f.subnet_id)));
            }
            let p = r.ports.get_mut(&pid).map(Arc::make_mut).expect("checked");
            p.device_owner = owner.into();
            p.device_id = rid.clone();
            (pid, f.subnet_id)
        }
    };
    let network_id = r.subnets[&subnet_id].network_id;
    Ok(serde_json::json!({
        "id": router, "project_id": project, "port_id": port_id,
        "subnet_id": subnet_id, "subnet_ids": [subnet_id], "network_id": network_id,
    }))
}

/// `remove_router_interface`: answers Neutron's body.
pub fn remove_interface(r: &mut Resources, router: Uuid, a: &Attrs) -> Result<Value, ApiError> {
    let x = r.routers.get(&router).ok_or_else(|| Coll::Routers.not_found(&router.to_string()))?;
    check_keys(a, &["subnet_id", "port_id"], &[], "remove_router_interface")?;
    let project = x.common.project_id.clone();
    let rid = router.to_string();
    let (sid, pid) = (uuid(a, "subnet_id")?, uuid(a, "port_id")?);
    let found = r
        .ports
        .values()
        .find(|p| {
            is_router_interface(&p.device_owner)
                && p.device_id == rid
                && pid.is_none_or(|id| p.common.id == id)
                && sid.is_none_or(|s| p.fixed_ips.iter().any(|f| f.subnet_id == s))
        })
        .map(|p| (p.common.id, p.fixed_ips.first().map(|f| f.subnet_id), p.network_id));
    let (port_id, subnet_id, network_id) = match (found, sid, pid) {
        (_, None, None) => return Err(ApiError::bad_request("Bad router request: Either subnet_id or port_id must be specified.")),
        (Some(f), _, _) => f,
        (None, Some(s), None) => {
            return Err(ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "RouterInterfaceNotFoundForSubnet",
                format!("Router {router} has no interface on subnet {s}"),
            ));
        }
        (None, _, Some(p)) => {
            return Err(ApiError::not_found("RouterInterfaceNotFound", "Router interface on port", &format!("{p} of router {router}")));
        }
    };
    r.ports.shift_remove(&port_id);
    Ok(serde_json::json!({
        "id": router, "project_id": project, "port_id": port_id,
        "subnet_id": subnet_id, "subnet_ids": subnet_id.into_iter().collect::<Vec<_>>(), "network_id": network_id,
    }))
}

fn associate(r: &Resources, fip: Option<Uuid>, a: &Attrs) -> Result<Option<Option<Uuid>>, ApiError> {
    if !a.contains_key("port_id") {
        return Ok(None);
    }
    let Some(pid) = uuid(a, "port_id")? else { return Ok(Some(None)) };
    let p = r.ports.get(&pid).ok_or_else(|| Coll::Ports.not_found(&pid.to_string()))?;
    if !port_is_instance(p) {
        return Err(ApiError::bad_request(format!(
            "Bad floatingip request: port {pid} is not an instance port (device_owner compute:* bound to a host); dvr associates floating IPs with instances only"
        )));
    }
    if let Some(ip) = ipv4(a, "fixed_ip_address")?
        && p.fixed_ips.first().map(|f| f.ip_address.as_str()) != Some(ip.to_string().as_str())
    {
        return Err(ApiError::bad_request(format!("Bad floatingip request: Port {pid} does not have fixed ip {ip}.")));
    }
    if let Some(other) = r.floatingips.values().find(|f| f.port_id == Some(pid) && Some(f.common.id) != fip) {
        return Err(ApiError::conflict(
            "FloatingIPPortAlreadyAssociated",
            format!(
                "Cannot associate floating IP {} with port {pid} using fixed IP {}, as that fixed IP already has a floating IP on external network {}.",
                fip.map(|f| f.to_string()).unwrap_or_default(),
                p.fixed_ips.first().map(|f| f.ip_address.clone()).unwrap_or_default(),
                other.floating_network_id
            ),
        ));
    }
    Ok(Some(Some(pid)))
}

fn create_fip(r: &mut Resources, a: &Attrs) -> Result<Uuid, ApiError> {
    let allowed = with_common(&[
        "floating_network_id",
        "floating_ip_address",
        "port_id",
        "fixed_ip_address",
        "subnet_id",
        "dns_name",
        "dns_domain",
        "qos_policy_id",
    ]);
    check_keys(a, &allowed, &READONLY, "POST")?;
    let net = required_uuid(a, "floating_network_id", "external network to take the address from")?;
    let n = need_network(r, net)?;
    if !n.external {
        return Err(ApiError::bad_request(format!("Bad floatingip request: Network {net} is not a valid external network.")));
    }
    let ip = ipv4(a, "floating_ip_address")?;
    if let Some(ip) = ip
        && let Some(sub) =
            r.subnets.values().find(|s| s.network_id == net && s.cidr.parse::<ipnet::Ipv4Net>().is_ok_and(|c| c.contains(&ip)))
    {
        ip_taken(r, sub.common.id, ip, None)?;
    }
    let port = associate(r, None, a)?.flatten();
    let mut c = common_from(a, Uuid::nil())?;
    c.name = String::new();
    c.id = match ip {
        Some(ip) => new_id("floatingip", &ip.to_string(), |id| id_taken(r, id)),
        None => Uuid::new_v4(),
    };
    let id = c.id;
    ins(
        &mut r.floatingips,
        id,
        FloatingIp {
            common: c,
            floating_network_id: net,
            floating_ip_address: ip.map(|i| i.to_string()).unwrap_or_default(),
            port_id: port,
            fixed_ip_address: None,
            router_id: None,
            status: "DOWN".into(),
        },
    );
    Ok(id)
}

fn update_fip(r: &mut Resources, id: Uuid, a: &Attrs) -> Result<(), ApiError> {
    check_keys(
        a,
        &["port_id", "fixed_ip_address", "description", "qos_policy_id"],
        &["floating_network_id", "floating_ip_address", "project_id", "tenant_id"],
        "PUT",
    )?;
    let port = associate(r, Some(id), a)?;
    let f = r.floatingips.get_mut(&id).map(Arc::make_mut).expect("checked");
    if let Some(d) = string(a, "description")? {
        f.common.description = d;
    }
    if let Some(p) = port {
        f.port_id = p;
    }
    Ok(())
}

fn map_of_strings(a: &Attrs, k: &str) -> Result<Option<indexmap::IndexMap<String, String>>, ApiError> {
    let Some(v) = a.get(k).filter(|v| !v.is_null()) else { return Ok(None) };
    let m = v.as_object().ok_or_else(|| bad_value(k, "must be an object of strings, e.g. {\"physnet1\": \"br-vlan\"}"))?;
    m.iter()
        .map(|(k2, v)| {
            v.as_str().map(|s| (k2.clone(), s.to_string())).ok_or_else(|| bad_value(k, format!("value of `{k2}` must be a string")))
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

fn create_host(r: &mut Resources, a: &Attrs, s: &Settings) -> Result<Uuid, ApiError> {
    check_keys(a, &["name", "description", "role", "bridge_mappings", "nics", "dvr_mac"], &READONLY, "POST")?;
    let name = string(a, "name")?.filter(|n| !n.is_empty()).ok_or_else(|| {
        ApiError::bad_request("Failed to parse request. Required attribute 'name' not specified (the host name agents report)")
    })?;
    let role = string(a, "role")?.ok_or_else(|| {
        ApiError::bad_request("Failed to parse request. Required attribute 'role' not specified (controller, network or compute)")
    })?;
    if !["controller", "network", "compute"].contains(&role.as_str()) {
        return Err(bad_value("role", format!("'{role}' is not one of controller, network, compute")));
    }
    let dvr_mac = match string(a, "dvr_mac")? {
        Some(m) => {
            let mac = m.parse::<MacAddr>().map_err(|_| bad_value("dvr_mac", format!("'{m}' is not a valid MAC address")))?;
            if r.hosts.values().any(|h| h.dvr_mac.as_deref() == Some(mac.to_string().as_str())) {
                return Err(ApiError::conflict(
                    "MacAddressInUse",
                    format!("Unable to complete operation for host {name}. The DVR MAC {mac} is in use by another host."),
                ));
            }
            Some(mac.to_string())
        }
        None if role == "controller" => None,
        None => Some(
            allocate_dvr_mac(r, &name, s.dvr_base, s.dvr_mask)
                .ok_or_else(|| {
                    ApiError::conflict(
                        "MacAddressGenerationFailure",
                        "no free DVR MAC left under the server's --dvr-base-mac; widen its mask",
                    )
                })?
                .to_string(),
        ),
    };
    let c = Common {
        id: new_id("host", &name, |id| id_taken(r, id)),
        name,
        description: string(a, "description")?.unwrap_or_default(),
        ..Common::default()
    };
    let id = c.id;
    ins(
        &mut r.hosts,
        id,
        Host {
            common: c,
            role,
            bridge_mappings: map_of_strings(a, "bridge_mappings")?.unwrap_or_default(),
            nics: map_of_strings(a, "nics")?.unwrap_or_default(),
            dvr_mac,
        },
    );
    Ok(id)
}

fn update_host(r: &mut Resources, id: Uuid, a: &Attrs) -> Result<(), ApiError> {
    check_keys(a, &["description", "bridge_mappings", "nics"], &["name", "role", "dvr_mac"], "PUT")?;
    let (b, n) = (map_of_strings(a, "bridge_mappings")?, map_of_strings(a, "nics")?);
    let h = r.hosts.get_mut(&id).map(Arc::make_mut).expect("checked");
    if let Some(d) = string(a, "description")? {
        h.common.description = d;
    }
    if let Some(b) = b {
        h.bridge_mappings = b;
    }
    if let Some(n) = n {
        h.nics = n;
    }
    Ok(())
}

fn create_external_host(r: &mut Resources, a: &Attrs) -> Result<Uuid, ApiError> {
    check_keys(a, &["name", "description", "network_id", "ip_address"], &READONLY, "POST")?;
    let name = string(a, "name")?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("Failed to parse request. Required attribute 'name' not specified"))?;
    let network_id = required_uuid(a, "network_id", "external network it sits on")?;
    need_network(r, network_id)?;
    let c = Common {
        id: new_id("external_host", &name, |id| id_taken(r, id)),
        name,
        description: string(a, "description")?.unwrap_or_default(),
        ..Common::default()
    };
    let id = c.id;
    ins(&mut r.external_hosts, id, ExternalHost { common: c, network_id, ip_address: ipv4(a, "ip_address")?.map(|i| i.to_string()) });
    Ok(id)
}
