//! Neutron objects → topology file. One function, free of database types, so
//! the server validates with it (the model's rules are the only rules) and
//! `dvr export` turns what it reads from any Neutron-compatible API into a
//! topology file with it.

use crate::resources::{IMPLICIT_OWNERS, Resources, is_router_interface};
use dvr_model::MacAddr;
use dvr_model::security::DEFAULT_GROUP;
use dvr_model::spec::{AddressPairSpec, Direction, ProtocolSpec, RuleSpec, SecurityGroupSpec};
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
    // No group at all: Neutron's noop driver, as a file without groups.
    let firewall = !r.security_groups.is_empty();
    let group_label: HashMap<Uuid, String> =
        r.security_groups.values().map(|g| (g.common.id, label(&g.common.name, g.common.id))).collect();

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
            tunnel_ip: None,
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
            let mut x = InstanceSpec {
                id: Some(p.common.id),
                name,
                host: p.host_id.clone(),
                network,
                ip: first_ip(p),
                mac,
                ..InstanceSpec::default()
            };
            if firewall {
                port_security_to_spec(r, p, &group_label, &mut x);
            }
            instances.push(x);
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
        security_groups: if firewall { groups_to_spec(r, &group_label) } else { Vec::new() },
        underlay: None,
    }
}

/// A port's security settings as the file writes them. A list that is just
/// the project's `default` group is left out (the model puts such ports in
/// it), so a file applied and exported again keeps its shape.
fn port_security_to_spec(r: &Resources, p: &crate::resources::Port, group_label: &HashMap<Uuid, String>, x: &mut InstanceSpec) {
    let project = &p.common.project_id;
    x.project = (!project.is_empty()).then(|| project.clone());
    let enabled = p.port_security_enabled != Some(false);
    x.port_security_enabled = (!enabled).then_some(false);
    x.security_groups = match &p.security_groups {
        None => None,
        Some(l) if !enabled && l.is_empty() => None,
        Some(l) if enabled && l.len() == 1 && Some(l[0]) == r.default_group(project) => None,
        Some(l) => Some(l.iter().map(|g| group_label.get(g).cloned().unwrap_or_else(|| g.to_string())).collect()),
    };
    x.allowed_address_pairs = p
        .allowed_address_pairs
        .iter()
        .map(|a| AddressPairSpec {
            ip_address: a.ip_address.clone(),
            // The port's own MAC is the default: leave it out.
            mac_address: a.mac_address.parse().ok().filter(|m: &MacAddr| Some(*m) != p.mac_address.parse().ok()),
        })
        .collect();
}

/// The groups as the file writes them: IPv4 rules only (the model has no
/// IPv6), `rules` left out when they are exactly the ones Neutron created
/// with the group (same ids as the model derives), the `default` group's
/// standard description left out.
fn groups_to_spec(r: &Resources, group_label: &HashMap<Uuid, String>) -> Vec<SecurityGroupSpec> {
    let mut rules_of: HashMap<Uuid, Vec<&crate::resources::SecurityGroupRule>> = HashMap::new();
    for x in r.security_group_rules.values().filter(|x| x.ethertype == "IPv4") {
        rules_of.entry(x.security_group_id).or_default().push(x);
    }
    r.security_groups
        .values()
        .map(|g| {
            let id = g.common.id;
            let is_default = g.common.name == DEFAULT_GROUP;
            let rules: Vec<RuleSpec> = rules_of
                .get(&id)
                .into_iter()
                .flatten()
                .map(|x| RuleSpec {
                    id: Some(x.common.id),
                    direction: if x.direction == "egress" { Direction::Egress } else { Direction::Ingress },
                    ethertype: None,
                    // Unparseable protocols were refused by the API; pass what parses.
                    protocol: x.protocol.as_deref().and_then(|p| p.parse::<ProtocolSpec>().ok()),
                    port_range_min: x.port_range_min,
                    port_range_max: x.port_range_max,
                    remote_ip_prefix: x.remote_ip_prefix.clone(),
                    remote_group: x.remote_group_id.map(|g| group_label.get(&g).cloned().unwrap_or_else(|| g.to_string())),
                    description: (!x.common.description.is_empty()).then(|| x.common.description.clone()),
                })
                .collect();
            let creation = |k: usize, rule: &RuleSpec| {
                let want_remote = (k == 1).then(|| group_label.get(&id).cloned().unwrap_or_default());
                rule.id == Some(dvr_model::alloc::derive_id("security_group_rule", &format!("{id}/{k}")))
                    && rule.direction == if k == 0 { Direction::Egress } else { Direction::Ingress }
                    && rule.protocol.is_none()
                    && rule.port_range_min.is_none()
                    && rule.port_range_max.is_none()
                    && rule.remote_ip_prefix.is_none()
                    && rule.remote_group == want_remote
                    && rule.description.is_none()
            };
            let as_created = rules.len() == if is_default { 2 } else { 1 } && rules.iter().enumerate().all(|(k, x)| creation(k, x));
            SecurityGroupSpec {
                id: Some(id),
                name: group_label.get(&id).cloned().unwrap_or_default(),
                project: (!g.common.project_id.is_empty()).then(|| g.common.project_id.clone()),
                description: {
                    let standard = is_default && g.common.description == crate::sg::DEFAULT_SG_DESCRIPTION;
                    (!g.common.description.is_empty() && !standard).then(|| g.common.description.clone())
                },
                rules: if as_created { None } else { Some(rules) },
            }
        })
        .collect()
}
