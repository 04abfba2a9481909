//! Neutron objects → topology file. One function, free of database types, so
//! the server validates with it (the model's rules are the only rules) and
//! `dvr export` turns what it reads from any Neutron-compatible API into a
//! topology file with it.

use crate::resources::{IMPLICIT_OWNERS, Resources, is_router_interface};
use dvr_model::spec::{
    AllocationPool, ExternalHostSpec, FloatingIpSpec, HostRoute, HostSpec, InstanceSpec, NetworkSpec, NetworkType, PortSpec, Role,
    RouterSpec, SubnetSpec, TopologySpec,
};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use uuid::Uuid;

/// The name an object has in the topology file: its Neutron name, or its id
/// when the name is empty (Neutron allows empty names, the file does not).
fn label(name: &str, id: Uuid) -> String {
    if name.is_empty() { id.to_string() } else { name.to_string() }
}

/// Whether a port is an instance: a `compute:*` owner bound to a host.
pub fn is_instance(owner: &str, host: &str) -> bool {
    owner.starts_with("compute:") && !host.is_empty()
}

/// The default allocation pool of a subnet: every host address but the
/// gateway, as Neutron reports when none was given.
pub fn default_pools(cidr: ipnet::Ipv4Net, gateway: Option<Ipv4Addr>) -> Vec<(Ipv4Addr, Ipv4Addr)> {
    let first = u32::from(cidr.network()) + 1;
    let last = u32::from(cidr.broadcast()).saturating_sub(1);
    let mut out = Vec::new();
    let mut start = first;
    if let Some(g) = gateway.map(u32::from).filter(|g| (first..=last).contains(g)) {
        if g > first {
            out.push((Ipv4Addr::from(first), Ipv4Addr::from(g - 1)));
        }
        start = g + 1;
    }
    if start <= last {
        out.push((Ipv4Addr::from(start), Ipv4Addr::from(last)));
    }
    out
}

/// Convert the deployment to a topology file (version 1, with the optional
/// live keys: explicit ids, unbound and pinned ports, pools).
///
/// Unparseable values (a CIDR, an address) are passed through as far as the
/// file can carry them, so that the model reports them with its own message.
pub fn resources_to_spec(r: &Resources) -> TopologySpec {
    let net_name: HashMap<Uuid, String> = r.networks.values().map(|n| (n.common.id, label(&n.common.name, n.common.id))).collect();
    let sub_name: HashMap<Uuid, String> = r.subnets.values().map(|s| (s.common.id, label(&s.common.name, s.common.id))).collect();
    let router_name: HashMap<String, String> =
        r.routers.values().map(|x| (x.common.id.to_string(), label(&x.common.name, x.common.id))).collect();
    let unknown = |id: &Uuid| id.to_string();

    let hosts = r
        .hosts
        .values()
        .map(|h| HostSpec {
            id: Some(h.common.id),
            name: label(&h.common.name, h.common.id),
            role: match h.role.as_str() {
                "controller" => Role::Controller,
                "network" => Role::Network,
                _ => Role::Compute,
            },
            bridge_mappings: h.bridge_mappings.clone(),
            nics: h.nics.clone(),
            dvr_mac: h.dvr_mac.clone(),
        })
        .collect();

    // An external network without a subnet is a step on the way (Neutron
    // creates the network first); the file cannot express it, so it is left
    // out until its subnet exists.
    let mut subnets_of: HashMap<Uuid, Vec<&crate::resources::Subnet>> = HashMap::new();
    for s in r.subnets.values() {
        subnets_of.entry(s.network_id).or_default().push(s);
    }
    let networks = r
        .networks
        .values()
        .filter(|n| !n.external || subnets_of.contains_key(&n.common.id))
        .map(|n| NetworkSpec {
            id: Some(n.common.id),
            name: label(&n.common.name, n.common.id),
            kind: match n.network_type.as_str() {
                "flat" => NetworkType::Flat,
                "vxlan" => NetworkType::Vxlan,
                _ => NetworkType::Vlan,
            },
            physical_network: n.physical_network.clone(),
            segmentation_id: n.segmentation_id,
            external: n.external,
            subnets: subnets_of
                .get(&n.common.id)
                .into_iter()
                .flatten()
                .map(|s| {
                    let gateway_ip = s.gateway_ip.as_deref().and_then(|g| g.parse().ok());
                    let pools: Vec<AllocationPool> = s
                        .allocation_pools
                        .iter()
                        .filter_map(|p| Some(AllocationPool { start: p.start.parse().ok()?, end: p.end.parse().ok()? }))
                        .collect();
                    let default = s
                        .cidr
                        .parse::<ipnet::Ipv4Net>()
                        .ok()
                        .map(|c| default_pools(c, gateway_ip.or_else(|| c.hosts().next())))
                        .unwrap_or_default();
                    let is_default = pools.iter().map(|p| (p.start, p.end)).eq(default.iter().copied());
                    SubnetSpec {
                        id: Some(s.common.id),
                        name: label(&s.common.name, s.common.id),
                        cidr: s.cidr.clone(),
                        gateway_ip,
                        enable_dhcp: Some(s.enable_dhcp),
                        allocation_pools: if is_default { Vec::new() } else { pools },
                        host_routes: s
                            .host_routes
                            .iter()
                            .filter_map(|h| Some(HostRoute { destination: h.destination.parse().ok()?, nexthop: h.nexthop.parse().ok()? }))
                            .collect(),
                        dns_nameservers: s.dns_nameservers.iter().filter_map(|d| d.parse().ok()).collect(),
                    }
                })
                .collect(),
        })
        .collect();

    // Router interfaces are the routers' interface ports (one pass over the ports).
    let mut interfaces_of: HashMap<&str, Vec<String>> = HashMap::new();
    for p in r.ports.values().filter(|p| is_router_interface(&p.device_owner)) {
        let list = interfaces_of.entry(p.device_id.as_str()).or_default();
        for f in &p.fixed_ips {
            let s = sub_name.get(&f.subnet_id).cloned().unwrap_or_else(|| unknown(&f.subnet_id));
            if !list.contains(&s) {
                list.push(s);
            }
        }
    }
    let routers = r
        .routers
        .values()
        .map(|x| {
            let interfaces = interfaces_of.remove(x.common.id.to_string().as_str()).unwrap_or_default();
            RouterSpec {
                id: Some(x.common.id),
                name: label(&x.common.name, x.common.id),
                distributed: Some(x.distributed),
                interfaces,
                external_gateway: x
                    .external_gateway_info
                    .as_ref()
                    .map(|g| net_name.get(&g.network_id).cloned().unwrap_or_else(|| unknown(&g.network_id))),
                enable_snat: x.external_gateway_info.as_ref().map(|g| g.enable_snat).filter(|s| !s),
            }
        })
        .collect();

    let first_ip = |p: &crate::resources::Port| p.fixed_ips.first().and_then(|f| f.ip_address.parse::<Ipv4Addr>().ok());
    let mut instances = Vec::new();
    let mut ports = Vec::new();
    let mut instance_name: HashMap<Uuid, String> = HashMap::new();
    for p in r.ports.values() {
        let network = net_name.get(&p.network_id).cloned().unwrap_or_else(|| unknown(&p.network_id));
        let mac = p.mac_address.parse().ok();
        if is_instance(&p.device_owner, &p.host_id) {
            let name = label(&p.common.name, p.common.id);
            instance_name.insert(p.common.id, name.clone());
            instances.push(InstanceSpec {
                id: Some(p.common.id),
                name,
                host: p.host_id.clone(),
                network,
                ip: first_ip(p),
                mac,
                ..InstanceSpec::default()
            });
        } else if p.device_owner == "network:floatingip" {
            // Neutron's own record of a floating IP address; the floating IP carries it.
        } else if IMPLICIT_OWNERS.contains(&p.device_owner.as_str()) {
            // A router interface's address is its subnet's gateway even before allocation.
            let ip = first_ip(p).or_else(|| {
                let f = p.fixed_ips.first()?;
                r.subnets.get(&f.subnet_id)?.gateway_ip.as_deref()?.parse().ok()
            });
            ports.push(PortSpec {
                id: Some(p.common.id),
                name: (!p.common.name.is_empty()).then(|| p.common.name.clone()),
                network,
                ip,
                mac,
                device_owner: Some(p.device_owner.clone()),
                router: router_name.get(&p.device_id).cloned(),
                host: (!p.host_id.is_empty()).then(|| p.host_id.clone()),
            });
        } else {
            ports.push(PortSpec {
                id: Some(p.common.id),
                name: Some(label(&p.common.name, p.common.id)),
                network,
                ip: first_ip(p),
                mac,
                device_owner: (!p.device_owner.is_empty()).then(|| p.device_owner.clone()),
                router: None,
                host: None,
            });
        }
    }

    let floating_ips = r
        .floatingips
        .values()
        .map(|f| FloatingIpSpec {
            id: Some(f.common.id),
            ip: f.floating_ip_address.parse().ok(),
            instance: f.port_id.map(|p| instance_name.get(&p).cloned().unwrap_or_else(|| p.to_string())),
            network: Some(net_name.get(&f.floating_network_id).cloned().unwrap_or_else(|| unknown(&f.floating_network_id))),
        })
        .collect();

    let external_hosts = r
        .external_hosts
        .values()
        .map(|e| ExternalHostSpec {
            name: label(&e.common.name, e.common.id),
            network: net_name.get(&e.network_id).cloned().unwrap_or_else(|| unknown(&e.network_id)),
            ip: e.ip_address.as_deref().and_then(|i| i.parse().ok()),
        })
        .collect();

    TopologySpec {
        version: Some(1),
        name: r.name.clone(),
        hosts,
        networks,
        routers,
        instances,
        floating_ips,
        external_hosts,
        ports,
        paths: Vec::new(),
        security_groups: Vec::new(),
    }
}
