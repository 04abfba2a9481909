//! What a mutation means: the state after the change is converted to a
//! topology file and built by the model crate (its rules are the only
//! rules), the model's problems become Neutron errors by their typed kind,
//! and what the model allocated (addresses, MACs, VLANs, implicit ports) is
//! written back into the Neutron objects so the next change keeps it.

use crate::convert::{default_pools, is_instance, resources_to_spec};
use crate::error::ApiError;
use crate::resources::*;
use axum::http::StatusCode;
use dvr_model::alloc::derive_id;
use dvr_model::{MacAddr, PortOwner, ProblemKind, Segment, Topology, TopologyError};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use uuid::Uuid;

/// What kind of request is being validated; decides how a model problem
/// reads as a Neutron error (a dangling reference after a delete is "in use").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Creating an object of this resource.
    Create(&'static str),
    /// Updating an object of this resource.
    Update(&'static str),
    /// Deleting an object of this resource.
    Delete(&'static str),
    /// `add_router_interface`.
    AddInterface,
    /// `remove_router_interface`.
    RemoveInterface,
}

fn in_use_type(resource: &str) -> &'static str {
    match resource {
        "network" => "NetworkInUse",
        "subnet" => "SubnetInUse",
        "port" => "PortInUse",
        "router" => "RouterInUse",
        "host" => "HostInUse",
        _ => "InUse",
    }
}

/// A model error as the Neutron error a client expects.
pub fn model_error(err: &TopologyError, action: Action) -> ApiError {
    let problems = err.problem_list();
    let Some(p) = problems.iter().find(|p| p.kind != ProblemKind::Other).or_else(|| problems.first()) else {
        return ApiError::bad_request(err.to_string());
    };
    let message = p.to_string().replace("\n    fix:", "; fix:");
    let (status, kind) = match (p.kind, action) {
        (ProblemKind::IpInUse, _) => (StatusCode::CONFLICT, "IpAddressAlreadyAllocated"),
        (ProblemKind::MacInUse, _) => (StatusCode::CONFLICT, "MacAddressInUse"),
        (ProblemKind::VlanInUse, _) => (StatusCode::CONFLICT, "VlanIdInUse"),
        (ProblemKind::PoolExhausted, _) => (StatusCode::CONFLICT, "IpAddressGenerationFailure"),
        (ProblemKind::DuplicateName, _) => (StatusCode::CONFLICT, "Conflict"),
        (ProblemKind::NoRouterToExternal, Action::RemoveInterface) => (StatusCode::CONFLICT, "RouterInterfaceInUseByFloatingIP"),
        (ProblemKind::NoRouterToExternal, Action::Update("router")) => (StatusCode::CONFLICT, "RouterExternalGatewayInUseByFloatingIp"),
        (ProblemKind::NoRouterToExternal, _) => (StatusCode::NOT_FOUND, "ExternalGatewayForFloatingIPNotFound"),
        (ProblemKind::DanglingReference, Action::Delete(r)) => (StatusCode::CONFLICT, in_use_type(r)),
        (ProblemKind::AddressOutsideSubnet, Action::Create("port") | Action::Update("port")) => {
            (StatusCode::BAD_REQUEST, "InvalidIpForNetwork")
        }
        // Neutron's subnet checks (overlap, CIDR format) raise InvalidInput.
        (_, Action::Create("subnet") | Action::Update("subnet")) => (StatusCode::BAD_REQUEST, "InvalidInput"),
        _ => (StatusCode::BAD_REQUEST, "BadRequest"),
    };
    let more = if problems.len() > 1 { format!(" (and {} more problem(s))", problems.len() - 1) } else { String::new() };
    let message = if kind == "InvalidInput" { format!("Invalid input for operation: {message}") } else { message };
    ApiError::new(status, kind, format!("{message}{more}"))
}

/// Validate `res` with the model and write back what it allocated.
pub fn settle(res: &mut Resources, action: Action) -> Result<Topology, ApiError> {
    let spec = resources_to_spec(res);
    let topo = dvr_model::build::build("api", &spec).map_err(|e| model_error(&e, action))?;
    sync(res, &topo);
    Ok(topo)
}

/// A stable id for a new object: the model's UUIDv5 of its name (so a
/// deployment built through the API has the ids its topology file would),
/// unless that id is taken, then a random one.
pub fn new_id(kind: &str, key: &str, taken: impl Fn(&Uuid) -> bool) -> Uuid {
    let id = derive_id(kind, key);
    if key.is_empty() || key.ends_with(':') || taken(&id) { Uuid::new_v4() } else { id }
}

/// Whether any collection already uses `id`.
pub fn id_taken(res: &Resources, id: &Uuid) -> bool {
    res.networks.contains_key(id)
        || res.subnets.contains_key(id)
        || res.ports.contains_key(id)
        || res.routers.contains_key(id)
        || res.floatingips.contains_key(id)
        || res.hosts.contains_key(id)
        || res.external_hosts.contains_key(id)
}

/// Write the model's allocations back into the Neutron objects.
fn sync(res: &mut Resources, topo: &Topology) {
    // Networks: allocated VLANs.
    for n in &topo.networks {
        if let Some(x) = res.networks.get_mut(&n.id.0).map(Arc::make_mut) {
            x.segmentation_id = match &n.segment {
                Segment::Vlan { vlan, .. } => Some(u64::from(vlan.get())),
                Segment::Vxlan { vni } => Some(u64::from(vni.get())),
                Segment::Flat { .. } => None,
            };
        }
    }
    // Subnets: gateway and the pools Neutron reports.
    for s in &topo.subnets {
        if let Some(x) = res.subnets.get_mut(&s.id.0).map(Arc::make_mut) {
            x.gateway_ip = Some(s.gateway.to_string());
            if x.allocation_pools.is_empty() {
                x.allocation_pools = default_pools(s.cidr, Some(s.gateway))
                    .into_iter()
                    .map(|(a, b)| Pool { start: a.to_string(), end: b.to_string() })
                    .collect();
            }
        }
    }
    for h in &topo.hosts {
        if let Some(x) = res.hosts.get_mut(&h.id.0).map(Arc::make_mut) {
            x.dvr_mac = h.dvr_mac.map(|m| m.to_string());
        }
    }
    let subnet_id = |ix: dvr_model::SubnetIx| topo.subnets[ix.0].id.0;
    // User ports: instances and unbound ports.
    // (Typed values: formatting 20,000 addresses on every write is what cost.)
    let mut user: HashMap<Uuid, (Uuid, std::net::Ipv4Addr, MacAddr, bool)> =
        HashMap::with_capacity(topo.instances.len() + topo.unbound_ports.len());
    for x in &topo.instances {
        let p = &topo.ports[x.port.0];
        user.insert(p.id.0, (subnet_id(p.subnet), p.ip, p.mac, true));
    }
    for p in &topo.unbound_ports {
        user.insert(p.id.0, (subnet_id(p.subnet), p.ip, p.mac, false));
    }
    // Implicit ports, as Neutron shows them.
    let mut implicit: HashMap<Uuid, Port> = HashMap::new();
    let mut order: Vec<Uuid> = Vec::new();
    for p in topo.ports.iter().filter(|p| !matches!(p.owner, PortOwner::Compute { .. })) {
        let router = match p.owner {
            PortOwner::RouterInterfaceDistributed { router }
            | PortOwner::RouterInterface { router }
            | PortOwner::CentralizedSnat { router }
            | PortOwner::RouterGateway { router } => Some(&topo.routers[router.0]),
            _ => None,
        };
        let host = p.host.map(|h| &topo.hosts[h.0]);
        let device_id = match (router, p.owner) {
            (Some(r), _) => r.id.to_string(),
            (None, PortOwner::Dhcp) => format!("dhcp-{}", topo.networks[p.network.0].id),
            (None, _) => host.map(|h| h.id.to_string()).unwrap_or_default(),
        };
        let distributed_if = matches!(p.owner, PortOwner::RouterInterfaceDistributed { .. });
        let port = Port {
            common: Common {
                id: p.id.0,
                project_id: router.and_then(|r| res.routers.get(&r.id.0)).map(|r| r.common.project_id.clone()).unwrap_or_default(),
                ..Common::default()
            },
            network_id: topo.networks[p.network.0].id.0,
            mac_address: p.mac.to_string(),
            fixed_ips: vec![FixedIp { subnet_id: subnet_id(p.subnet), ip_address: p.ip.to_string() }],
            device_owner: p.owner.device_owner().to_string(),
            device_id,
            host_id: host.map(|h| h.name.clone()).unwrap_or_default(),
            vif_type: if distributed_if { "distributed".into() } else { "ovs".into() },
            vnic_type: "normal".into(),
            status: "ACTIVE".into(),
            admin_state_up: true,
        };
        order.push(p.id.0);
        implicit.insert(p.id.0, port);
    }
    // Floating IPs and Neutron's network:floatingip ports.
    for f in &topo.floating_ips {
        let Some(x) = res.floatingips.get_mut(&f.id.0).map(Arc::make_mut) else { continue };
        x.floating_ip_address = f.ip.to_string();
        match f.association {
            Some((inst, r)) => {
                let port = &topo.ports[topo.instances[inst.0].port.0];
                x.port_id = Some(port.id.0);
                x.fixed_ip_address = Some(port.ip.to_string());
                x.router_id = Some(topo.routers[r.0].id.0);
                x.status = "ACTIVE".into();
            }
            None => {
                x.port_id = None;
                x.fixed_ip_address = None;
                x.router_id = None;
                x.status = "DOWN".into();
            }
        }
        let id = derive_id("port", &format!("fip:{}", f.id));
        let mac = MacAddr::from_prefix(dvr_model::alloc::PORT_MAC_PREFIX, dvr_model::alloc::hash24(&id.to_string()));
        order.push(id);
        implicit.insert(
            id,
            Port {
                common: Common { id, project_id: x.common.project_id.clone(), ..Common::default() },
                network_id: topo.networks[f.network.0].id.0,
                mac_address: mac.to_string(),
                fixed_ips: vec![FixedIp { subnet_id: subnet_id(f.subnet), ip_address: f.ip.to_string() }],
                device_owner: "network:floatingip".into(),
                device_id: f.id.to_string(),
                host_id: String::new(),
                vif_type: "unbound".into(),
                vnic_type: "normal".into(),
                status: "N/A".into(),
                admin_state_up: true,
            },
        );
    }
    // Replace the implicit ports, keeping what the user set on them (name,
    // description) and the standard attributes of those that stay.
    let stale: Vec<Uuid> =
        res.ports.values().filter(|p| is_implicit(&p.device_owner) && !implicit.contains_key(&p.common.id)).map(|p| p.common.id).collect();
    for id in stale {
        res.ports.shift_remove(&id);
    }
    for id in order {
        let mut fresh = implicit.remove(&id).expect("inserted above");
        match res.ports.get_mut(&id).map(Arc::make_mut) {
            Some(old) => {
                fresh.common = old.common.clone();
                if fresh.common.project_id.is_empty() {
                    fresh.common.project_id = old.common.project_id.clone();
                }
                *old = fresh;
            }
            None => {
                ins(&mut res.ports, id, fresh);
            }
        }
    }
    for p in res.ports.values_mut() {
        if let Some((sid, ip, mac, bound)) = user.get(&p.common.id) {
            // As in Neutron, a bound port is DOWN until its host's agent has
            // wired it and says ACTIVE (`PUT /v2.0/dvr/ports/{id}/status`);
            // the agent's word is kept across later writes while it stays bound.
            let (status, vif) = if *bound { (if p.status == "ACTIVE" { "ACTIVE" } else { "DOWN" }, "ovs") } else { ("DOWN", "unbound") };
            let same_ip = p.fixed_ips.len() == 1 && p.fixed_ips[0].subnet_id == *sid && p.fixed_ips[0].ip_address.parse().ok() == Some(*ip);
            let same_mac = p.mac_address.parse::<MacAddr>().ok() == Some(*mac);
            if same_ip && same_mac && p.status == status && p.vif_type == vif {
                continue;
            }
            let p = Arc::make_mut(p);
            // Pinned ports come back as they were: rewrite only what the model allocated or changed.
            if !same_ip {
                p.fixed_ips = vec![FixedIp { subnet_id: *sid, ip_address: ip.to_string() }];
            }
            if !same_mac {
                p.mac_address = mac.to_string();
            }
            if p.status != status {
                p.status = status.into();
            }
            if p.vif_type != vif {
                p.vif_type = vif.into();
            }
        }
    }
    // Routers: the gateway port's addresses.
    let gw: HashMap<String, Vec<FixedIp>> = res
        .ports
        .values()
        .filter(|p| p.device_owner == "network:router_gateway")
        .map(|p| (p.device_id.clone(), p.fixed_ips.clone()))
        .collect();
    for r in res.routers.values_mut() {
        let want = gw.get(&r.common.id.to_string()).cloned().unwrap_or_default();
        if r.external_gateway_info.as_ref().is_some_and(|g| g.external_fixed_ips != want)
            && let Some(g) = Arc::make_mut(r).external_gateway_info.as_mut()
        {
            g.external_fixed_ips = want;
        }
    }
    // External hosts: their addresses.
    let ext: HashMap<&str, String> = topo.external_hosts.iter().map(|e| (e.name.as_str(), e.ip.to_string())).collect();
    for e in res.external_hosts.values_mut() {
        let name = if e.common.name.is_empty() { e.common.id.to_string() } else { e.common.name.clone() };
        if let Some(ip) = ext.get(name.as_str())
            && e.ip_address.as_ref() != Some(ip)
        {
            Arc::make_mut(e).ip_address = Some(ip.clone());
        }
    }
}

/// Ports the server manages by itself (router, DHCP, gateway, fip-agent,
/// floating IP ports): they come and go with the objects that imply them.
pub fn is_implicit(owner: &str) -> bool {
    IMPLICIT_OWNERS.contains(&owner) || owner == "network:floatingip"
}

/// Whether a user port is an instance (compute owner, bound to a host).
pub fn port_is_instance(p: &Port) -> bool {
    is_instance(&p.device_owner, &p.host_id)
}

/// The DVR MAC for a new host: the model's hashed slot under the base MAC and
/// mask (Neutron's `dvr_base_mac`), probing past every MAC already taken.
pub fn allocate_dvr_mac(res: &Resources, name: &str, base: MacAddr, mask: MacAddr) -> Option<MacAddr> {
    let taken: HashSet<String> = res.hosts.values().filter_map(|h| h.dvr_mac.clone()).collect();
    let free_bits: u64 = !mac_u64(mask) & 0xffff_ffff_ffff;
    if free_bits == 0 {
        return None;
    }
    let start = u64::from(dvr_model::alloc::hash24(&format!("dvr:{name}")));
    let base = mac_u64(base) & mac_u64(mask);
    let span = free_bits.min(1 << 24) + 1;
    (0..span).find_map(|i| {
        let low = (start + i) & free_bits;
        let m = u64_mac(base | low);
        (low != 0 && !m.is_multicast() && !taken.contains(&m.to_string())).then_some(m)
    })
}

fn mac_u64(m: MacAddr) -> u64 {
    m.0.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

fn u64_mac(v: u64) -> MacAddr {
    let b = v.to_be_bytes();
    MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
}
