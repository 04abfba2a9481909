//! Hosts: names, bridge mappings, NICs and DVR MACs; the physical networks a
//! host must map for the ports it will carry; and, after allocation, each
//! host's local VLANs and rfp/fpr link-local pairs.

use super::Resolve;
use super::check::{Checker, check_unique, named, obj, valid_name};
use super::instances::InstanceDraft;
use super::routers::distributed_routers_by_subnet;
use crate::alloc::*;
use crate::spec::*;
use crate::topology::*;
use crate::types::*;
use std::collections::{BTreeMap, BTreeSet};

/// Check every host of the file; the result is in file order.
pub(super) fn check_hosts(c: &mut Checker, cx: &Resolve) -> Vec<Host> {
    let spec = cx.spec;
    check_unique(c, named("hosts", &spec.hosts, |h| &h.name), "give every host a unique name");
    let mut dvr_macs: BTreeMap<MacAddr, usize> = BTreeMap::new();
    let mut hosts = Vec::new();
    for (i, h) in spec.hosts.iter().enumerate() {
        let o = obj("hosts", i, &h.name);
        if h.role == Role::Controller && !h.bridge_mappings.is_empty() {
            c.bad(
                &o,
                "bridge_mappings",
                "a controller runs no dataplane, so bridge mappings would be ignored",
                "remove bridge_mappings or make the host a network/compute node",
            );
        }
        let mut bridges = BTreeSet::new();
        let mut mappings = Vec::new();
        for (k, (physnet, bridge)) in h.bridge_mappings.iter().enumerate() {
            if !valid_name(physnet) || !valid_name(bridge) || bridge.len() > 15 {
                c.bad(
                    &o,
                    "bridge_mappings",
                    format!("`{physnet}: {bridge}` is not a valid mapping"),
                    "map a physical network name to an OVS bridge name of at most 15 characters",
                );
            }
            if bridge == "br-int" || bridge == "br-tun" {
                c.bad(
                    &o,
                    "bridge_mappings",
                    format!("bridge `{bridge}` is reserved for the OVS agent"),
                    "use another bridge name, e.g. br-vlan or br-ex",
                );
            }
            if !bridges.insert(bridge.as_str()) {
                c.bad(
                    &o,
                    "bridge_mappings",
                    format!("bridge `{bridge}` is mapped to more than one physical network"),
                    "give each physical network its own bridge",
                );
            }
            let nic = h.nics.get(physnet).cloned().unwrap_or_else(|| format!("eth{}", k + 1));
            mappings.push(BridgeMapping { physnet: physnet.clone(), bridge: bridge.clone(), nic });
        }
        for (physnet, nic) in &h.nics {
            if !valid_name(nic) || nic.len() > 15 {
                c.bad(
                    &o,
                    "nics",
                    format!("`{physnet}: {nic}` does not name a valid network interface"),
                    "use a Linux interface name of at most 15 letters, digits, `-`, `_` or `.`, \
                     e.g. eth1",
                );
            }
            if !h.bridge_mappings.contains_key(physnet) {
                c.bad(
                    &o,
                    "nics",
                    format!("physical network `{physnet}` has a NIC but no bridge mapping"),
                    format!("add `{physnet}: <bridge>` to bridge_mappings or remove the NIC"),
                );
            }
        }
        let mut nics = BTreeSet::new();
        for m in &mappings {
            if !nics.insert(m.nic.as_str()) {
                c.bad(&o, "nics", format!("NIC `{}` is used for two physical networks", m.nic), "give each physical network its own NIC");
            }
        }
        let dvr_mac = match (&h.dvr_mac, h.role) {
            (Some(_), Role::Controller) => {
                c.bad(&o, "dvr_mac", "a controller has no DVR MAC (it runs no OVS agent)", "remove dvr_mac");
                None
            }
            (Some(s), _) => match s.parse::<MacAddr>() {
                Ok(m) if m.is_multicast() || m == MacAddr::ZERO => {
                    c.bad(&o, "dvr_mac", format!("{m} is not a unicast address"), "use a unicast MAC such as fa:16:3f:00:00:01");
                    None
                }
                Ok(m) => {
                    if let Some(first) = dvr_macs.insert(m, i) {
                        c.bad(
                            &o,
                            "dvr_mac",
                            format!("{m} is also the DVR MAC of {}", obj("hosts", first, &spec.hosts[first].name)),
                            "DVR MACs must be unique per host; remove it to have one allocated",
                        );
                    }
                    Some(m)
                }
                Err(e) => {
                    c.bad(&o, "dvr_mac", e.to_string(), "write it like fa:16:3f:00:00:01 or remove it to have one allocated");
                    None
                }
            },
            (None, _) => None,
        };
        hosts.push(Host {
            id: HostId(h.id.unwrap_or_else(|| derive_id("host", &h.name))),
            name: h.name.clone(),
            role: h.role,
            bridge_mappings: mappings,
            dvr_mac,
            local_vlans: Vec::new(),
            fip_links: Vec::new(),
            tunnel_ip: None,
        });
    }
    hosts
}

/// Every host that gets a port on a vlan/flat network must map its physical
/// network, or the port would be planned without a way to the wire. The
/// instances' own networks are checked with the instances; this covers what
/// the file does not place explicitly: DHCP, router (qr-, sg-, qg-) ports on
/// the network node, and the copies of distributed routers (qr-, fg-) that
/// Neutron's DVR scheduler puts on every compute host with a port behind them.
pub(super) fn check_host_mappings(c: &mut Checker, cx: &Resolve, instances: &[Option<InstanceDraft>]) {
    let (spec, hosts, networks, subnets, routers) = (cx.spec, &cx.hosts, &cx.networks, &cx.subnets, &cx.routers);
    let network_node = cx.network_node;
    // (host, physnet) -> why the host needs it; the first reason is reported.
    let mut need: BTreeMap<(usize, String), String> = BTreeMap::new();
    let mut require = |h: usize, n: NetworkIx, why: String| {
        if let Some(p) = networks[n.0].segment.physnet()
            && !p.is_empty()
        {
            need.entry((h, p.to_string())).or_insert(why);
        }
    };
    if let Some(HostIx(nn)) = network_node {
        for (n, net) in networks.iter().enumerate() {
            if !net.external && net.subnets.iter().any(|s| subnets[s.0].enable_dhcp) {
                require(nn, NetworkIx(n), format!("the DHCP port of network `{}`", net.name));
            }
        }
        for r in routers {
            for s in &r.interfaces {
                let sub = &subnets[s.0];
                require(nn, sub.network, format!("router `{}`, whose interface on subnet `{}` it hosts", r.name, sub.name));
            }
            if let Some(e) = r.external_gateway {
                require(nn, e, format!("the gateway (qg-) port of router `{}` on external network `{}`", r.name, networks[e.0].name));
            }
        }
    }
    let by_subnet = distributed_routers_by_subnet(routers, subnets.len());
    for (i, d) in instances.iter().enumerate() {
        let Some(d) = d else { continue };
        let x = &spec.instances[i].name;
        for r in by_subnet[d.subnet.0].iter().map(|&r| &routers[r]) {
            for s in &r.interfaces {
                let sub = &subnets[s.0];
                if sub.network != d.network {
                    require(
                        d.host.0,
                        sub.network,
                        format!(
                            "its copy of distributed router `{}` (instance `{x}` is behind it), \
                             which has an interface on subnet `{}`",
                            r.name, sub.name
                        ),
                    );
                }
            }
            if let Some(e) = r.external_gateway {
                require(
                    d.host.0,
                    e,
                    format!(
                        "the floating IP (fg-) port of its copy of distributed router `{}` \
                         (instance `{x}` is behind it) on external network `{}`",
                        r.name, networks[e.0].name
                    ),
                );
            }
        }
    }
    for ((h, p), why) in need {
        if hosts[h].mapping(&p).is_some() {
            continue;
        }
        // A physical network mapped nowhere is reported once, on its network.
        let Some(example) = hosts.iter().find_map(|o| o.mapping(&p)) else {
            continue;
        };
        c.bad(
            obj("hosts", h, &hosts[h].name),
            "bridge_mappings",
            format!("physical network `{p}` is not mapped, but this host needs it for {why}"),
            format!("add `{p}: <bridge>` to the bridge_mappings of `{}` (other hosts use `{p}: {}`)", hosts[h].name, example.bridge),
        );
    }
}

/// Networks present on a host (those of its bound ports and of the routers it
/// carries), in network order: the order local VLANs are handed out in.
pub fn networks_on_host(topo: &Topology, h: HostIx) -> Vec<NetworkIx> {
    let mut nets: Vec<NetworkIx> = topo.host_ports(h).map(|p| p.network).collect();
    for r in topo.index.host_routers.get(h.0).into_iter().flatten() {
        nets.extend(topo.routers[r.0].interfaces.iter().map(|s| topo.subnets[s.0].network));
    }
    nets.sort();
    nets.dedup();
    nets
}

/// Hand out host `h`'s local VLANs (one per network present, in network
/// order) and one link-local pair per distributed router with a gateway.
pub(super) fn allocate_host(c: &mut Checker, topo: &mut Topology, h: HostIx) {
    if !topo.hosts[h.0].has_dataplane() {
        return;
    }
    allocate_vlans(c, topo, h);
    let mut ll = LinkLocalAllocator::default();
    let mut links = Vec::new();
    for &RouterIx(r) in topo.index.host_routers.get(h.0).into_iter().flatten() {
        let router = &topo.routers[r];
        if router.distributed && router.external_gateway.is_some() {
            match ll.allocate(&router.id.hyphenated()) {
                Some(pair) => links.push(FipLink { router: RouterIx(r), pair }),
                None => c.bad(
                    obj("hosts", h.0, &topo.hosts[h.0].name),
                    "",
                    "more than 8192 routers with a gateway on one host: no free link-local pair",
                    "spread the routers over more hosts",
                ),
            }
        }
    }
    topo.hosts[h.0].fip_links = links;
}

/// Hand out host `h`'s local VLANs alone (one per network present, in
/// network order): all a host needs when its networks changed but not its
/// routers (whose link-local pairs stay).
pub(super) fn allocate_vlans(c: &mut Checker, topo: &mut Topology, h: HostIx) {
    if !topo.hosts[h.0].has_dataplane() {
        return;
    }
    let mut vlans = LocalVlanAllocator::default();
    let mut local = Vec::new();
    for n in networks_on_host(topo, h) {
        match vlans.allocate() {
            Some(v) => local.push((n, v)),
            None => {
                c.bad(
                    obj("hosts", h.0, &topo.hosts[h.0].name),
                    "",
                    "more than 4094 networks on one host: no free local VLAN",
                    "spread the instances over more hosts",
                );
                break;
            }
        }
    }
    topo.hosts[h.0].local_vlans = local;
}
