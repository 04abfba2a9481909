//! Allocation: what the file leaves open, handed out in a fixed order —
//! explicit values reserved first, then DVR MACs, DHCP, router (qr-, sg-,
//! qg-), instance and unbound ports, which hosts carry each router, fip-agent
//! (fg-) ports, floating IPs, external hosts, and per-host VLANs and links.

use super::Drafts;
use super::check::{Checker, obj};
use super::floating_ips::FipDraft;
use super::hosts::allocate_host;
use super::instances::InstanceDraft;
use super::ports::PortDraft;
use super::routers::distributed_routers_by_subnet;
use crate::alloc::*;
use crate::error::ProblemKind;
use crate::spec::*;
use crate::topology::*;
use crate::types::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

/// Everything allocation needs, so the steps stay small.
struct Alloc {
    pools: Vec<IpPool>,
    macs: MacAllocator,
    /// Allocation key (`dhcp:net`, `qr:router:subnet`, `vm:name`…) → what is
    /// already fixed for that port (pinned implicit ports, explicit ids).
    pins: HashMap<String, Pin>,
}

/// What is already decided about one port before allocation.
#[derive(Debug, Clone, Copy, Default)]
struct Pin {
    id: Option<uuid::Uuid>,
    ip: Option<Ipv4Addr>,
    mac: Option<MacAddr>,
}

impl Alloc {
    fn take_ip(&mut self, c: &mut Checker, topo: &Topology, s: SubnetIx, who: &str) -> Ipv4Addr {
        self.pools[s.0].allocate().unwrap_or_else(|| {
            let sub = &topo.subnets[s.0];
            let n = sub.network.0;
            let k = topo.networks[n].subnets.iter().position(|&x| x == s).unwrap_or(0);
            let prefix = sub.cidr.prefix_len();
            let size = (1u64 << (32 - u32::from(prefix))).saturating_sub(2);
            c.bad_k(
                ProblemKind::PoolExhausted,
                format!("networks[{n}] ({}).subnets[{k}] ({})", topo.networks[n].name, sub.name),
                "cidr",
                format!("no free address left in {} ({size} host addresses) for {who}", sub.cidr),
                format!(
                    "use a larger subnet (e.g. a /{} instead of /{prefix}) or fewer ports; the \
                     gateway, the DHCP port, router ports (sg-, qg-, fg-) and floating IPs take \
                     addresses too",
                    prefix.saturating_sub(1)
                ),
            );
            Ipv4Addr::UNSPECIFIED
        })
    }

    /// The address a pinned implicit port already has.
    fn pinned_ip(&self, key: &str) -> Option<Ipv4Addr> {
        self.pins.get(key).and_then(|p| p.ip)
    }

    fn take_mac(&mut self, c: &mut Checker, prefix: [u8; 3], key: &str, who: &str) -> MacAddr {
        self.macs.allocate(prefix, key).unwrap_or_else(|| {
            c.bad(who.to_string(), "mac", "no free MAC address left", "remove explicit MACs");
            MacAddr::ZERO
        })
    }
}

/// Allocate everything of a checked spec into `topo` (which holds the
/// checked hosts, networks, subnets and routers). Problems found here (a full
/// pool, a clash of explicit addresses) go to `c`.
pub(super) fn allocate(c: &mut Checker, topo: &mut Topology, spec: &TopologySpec, drafts: &Drafts, network_node: Option<HostIx>) {
    let (instances, fips, ext_hosts, ports) = (&drafts.instances, &drafts.fips, &drafts.ext_hosts, &drafts.ports);
    let mut a = Alloc {
        pools: topo.subnets.iter().map(|s| IpPool::with_pools(s.cidr, &s.allocation_pools)).collect(),
        macs: MacAllocator::default(),
        pins: HashMap::new(),
    };
    for p in ports.iter().flatten() {
        if let (Some(key), true) = (&p.pin_key, p.live) {
            a.pins.insert(key.clone(), Pin { id: p.id, ip: p.ip, mac: p.mac });
        }
    }
    for x in spec.instances.iter().filter(|x| x.id.is_some()) {
        a.pins.insert(format!("vm:{}", x.name), Pin { id: x.id, ..Pin::default() });
    }
    // 1. Explicit addresses and MACs are reserved first; a clash is an error naming both.
    let mut owner: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    let mut claim = |c: &mut Checker, a: &mut Alloc, s: SubnetIx, ip: Ipv4Addr, who: String, field: &str| {
        if !a.pools[s.0].reserve(ip) {
            let first = owner.get(&ip).cloned().unwrap_or_default();
            c.bad_k(
                ProblemKind::IpInUse,
                &who,
                field,
                format!("{ip} is already used by {first}"),
                "give every port its own address or remove `ip` to have one allocated",
            );
        } else {
            owner.insert(ip, who);
        }
    };
    for (i, s) in topo.subnets.iter().enumerate() {
        claim(c, &mut a, SubnetIx(i), s.gateway, format!("the gateway of subnet `{}`", s.name), "gateway_ip");
    }
    // Pinned implicit ports keep what they have: claimed before anything new.
    for (i, p) in ports.iter().enumerate() {
        if let Some(PortDraft { pin_key: Some(_), live: true, ip: Some(ip), subnet, .. }) = p
            && *ip != topo.subnets[subnet.0].gateway
        {
            let label = spec.ports[i].name.clone().or_else(|| spec.ports[i].id.map(|u| u.to_string())).unwrap_or_default();
            claim(c, &mut a, *subnet, *ip, obj("ports", i, &label), "ip");
        }
    }
    for (i, d) in instances.iter().enumerate() {
        if let Some(InstanceDraft { subnet, ip: Some(ip), .. }) = d {
            claim(c, &mut a, *subnet, *ip, obj("instances", i, &spec.instances[i].name), "ip");
        }
        if let Some(InstanceDraft { mac: Some(m), .. }) = d {
            a.macs.reserve(*m);
        }
    }
    let mut gateway_holders: BTreeSet<SubnetIx> = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let Some(p) = p else { continue };
        let label = spec.ports[i].name.clone().or_else(|| spec.ports[i].id.map(|u| u.to_string())).unwrap_or_default();
        match (&p.pin_key, p.ip) {
            // An unbound port on the gateway address is a router interface in
            // the making (Neutron's add_router_interface by port): allowed
            // once per subnet, while no router holds that gateway.
            (None, Some(ip)) if ip == topo.subnets[p.subnet.0].gateway => {
                let routed = topo.routers.iter().any(|r| r.interfaces.contains(&p.subnet));
                if routed || !gateway_holders.insert(p.subnet) {
                    c.bad_k(
                        ProblemKind::IpInUse,
                        obj("ports", i, &label),
                        "ip",
                        format!(
                            "{ip} is the gateway of subnet `{}` and already taken by a router interface or another port",
                            topo.subnets[p.subnet.0].name
                        ),
                        "use another address or remove `ip` to have one allocated",
                    );
                }
            }
            (None, Some(ip)) => claim(c, &mut a, p.subnet, ip, obj("ports", i, &label), "ip"),
            _ => {}
        }
        if let (true, Some(m)) = (p.live, p.mac)
            && !a.macs.reserve(m)
        {
            c.bad_k(
                ProblemKind::MacInUse,
                obj("ports", i, &label),
                "mac",
                format!("{m} is already the MAC of another port"),
                "MACs must be unique; remove `mac` to have one allocated",
            );
        }
    }
    let subnet_of = |topo: &Topology, n: NetworkIx, ip: Ipv4Addr| {
        topo.networks[n.0].subnets.iter().copied().find(|s| topo.subnets[s.0].cidr.contains(&ip))
    };
    for (i, f) in fips.iter().enumerate() {
        if let Some(FipDraft { ip: Some(ip), network, .. }) = f
            && let Some(s) = subnet_of(topo, *network, *ip)
        {
            claim(c, &mut a, s, *ip, obj("floating_ips", i, &ip.to_string()), "ip");
        }
    }
    for (i, e) in ext_hosts.iter().enumerate() {
        if let Some((n, Some(ip))) = e
            && let Some(s) = subnet_of(topo, *n, *ip)
        {
            claim(c, &mut a, s, *ip, obj("external_hosts", i, &spec.external_hosts[i].name), "ip");
        }
    }
    for h in &topo.hosts {
        if let Some(m) = h.dvr_mac {
            a.macs.reserve(m);
        }
    }
    // 2. DVR MACs of the dataplane hosts.
    for (i, h) in topo.hosts.iter_mut().enumerate().filter(|(_, h)| h.role != Role::Controller && h.dvr_mac.is_none()) {
        h.dvr_mac = Some(a.take_mac(c, DVR_MAC_PREFIX, &format!("dvr:{}", h.name), &obj("hosts", i, &h.name)));
    }
    // 3. DHCP ports, one per network with a DHCP subnet, on the network node.
    if let Some(nn) = network_node {
        for n in 0..topo.networks.len() {
            let Some(s) = topo.networks[n].subnets.iter().copied().find(|s| topo.subnets[s.0].enable_dhcp) else {
                continue;
            };
            if topo.networks[n].external {
                continue;
            }
            let key = format!("dhcp:{}", topo.networks[n].name);
            let ip = a.pinned_ip(&key).unwrap_or_else(|| a.take_ip(c, topo, s, "the DHCP port"));
            a.push_port(c, topo, NewPort { key: &key, owner: PortOwner::Dhcp, subnet: s, ip, host: Some(nn) });
        }
    }
    // 4. Router ports: qr- on the gateway IP, sg- and qg- on fresh addresses.
    for r in 0..topo.routers.len() {
        let router = topo.routers[r].clone();
        for &s in &router.interfaces {
            let key = format!("qr:{}:{}", router.name, topo.subnets[s.0].name);
            let owner = if router.distributed {
                PortOwner::RouterInterfaceDistributed { router: RouterIx(r) }
            } else {
                PortOwner::RouterInterface { router: RouterIx(r) }
            };
            let host = if router.distributed { None } else { router.snat_host };
            let gw = topo.subnets[s.0].gateway;
            a.push_port(c, topo, NewPort { key: &key, owner, subnet: s, ip: gw, host });
        }
        let Some(ext) = router.external_gateway else {
            continue;
        };
        if router.distributed {
            for &s in &router.interfaces {
                let key = format!("sg:{}:{}", router.name, topo.subnets[s.0].name);
                let ip = a.pinned_ip(&key).unwrap_or_else(|| a.take_ip(c, topo, s, "the router's SNAT (sg-) port"));
                a.push_port(
                    c,
                    topo,
                    NewPort { key: &key, owner: PortOwner::CentralizedSnat { router: RouterIx(r) }, subnet: s, ip, host: router.snat_host },
                );
            }
        }
        let es = topo.networks[ext.0].subnets[0];
        let ip = a.pinned_ip(&format!("qg:{}", router.name)).unwrap_or_else(|| a.take_ip(c, topo, es, "the router gateway (qg-) port"));
        a.push_port(
            c,
            topo,
            NewPort {
                key: &format!("qg:{}", router.name),
                owner: PortOwner::RouterGateway { router: RouterIx(r) },
                subnet: es,
                ip,
                host: router.snat_host,
            },
        );
    }
    // 5. Instance ports.
    for (i, d) in instances.iter().enumerate() {
        let Some(d) = d else { continue };
        let name = &spec.instances[i].name;
        let ip = d.ip.unwrap_or_else(|| a.take_ip(c, topo, d.subnet, &format!("instance `{name}`")));
        let port = PortIx(topo.ports.len());
        let key = format!("vm:{name}");
        match d.mac {
            Some(mac) => topo.ports.push(Port {
                id: PortId(a.pins.get(&key).and_then(|p| p.id).unwrap_or_else(|| derive_id("port", &key))),
                owner: PortOwner::Compute { instance: InstanceIx(i) },
                network: d.network,
                subnet: d.subnet,
                ip,
                mac,
                host: Some(d.host),
            }),
            None => a.push_port(
                c,
                topo,
                NewPort { key: &key, owner: PortOwner::Compute { instance: InstanceIx(i) }, subnet: d.subnet, ip, host: Some(d.host) },
            ),
        }
        topo.instances.push(Instance { name: name.clone(), host: d.host, network: d.network, port });
    }
    // 5b. Unbound ports: an address and a MAC, nothing planned.
    for (i, p) in ports.iter().enumerate() {
        let Some(p) = p else { continue };
        if p.pin_key.is_some() {
            continue;
        }
        let ps = &spec.ports[i];
        let name = ps.name.clone().unwrap_or_default();
        let id = PortId(p.id.unwrap_or_else(|| derive_id("port", &format!("port:{name}"))));
        let ip = p.ip.unwrap_or_else(|| a.take_ip(c, topo, p.subnet, &format!("port `{name}`")));
        let mac = p.mac.unwrap_or_else(|| a.take_mac(c, PORT_MAC_PREFIX, &id.hyphenated(), &obj("ports", i, &name)));
        topo.unbound_ports.push(UnboundPort {
            id,
            name,
            device_owner: ps.device_owner.clone().unwrap_or_default(),
            network: p.network,
            subnet: p.subnet,
            ip,
            mac,
        });
    }
    // 6. Which hosts carry each router: the SNAT host plus every host with a
    //    DVR-serviced port on one of its subnets (Neutron's DVR scheduler).
    //    One pass over the ports through a subnet → routers index (not a pass
    //    per router: routers × ports is quadratic in the deployment's size).
    let mut router_hosts: Vec<BTreeSet<HostIx>> = topo.routers.iter().map(|r| r.snat_host.into_iter().collect()).collect();
    let by_subnet = distributed_routers_by_subnet(&topo.routers, topo.subnets.len());
    for p in topo.ports.iter().filter(|p| p.owner.is_dvr_serviced()) {
        for &r in &by_subnet[p.subnet.0] {
            router_hosts[r].extend(p.host);
        }
    }
    for (router, hosts) in topo.routers.iter_mut().zip(router_hosts) {
        router.hosts = hosts.into_iter().collect();
    }
    // 7. fip-agent gateway (fg-) ports: one per (external network, host with a
    //    copy of a router whose gateway is on that network).
    for n in 0..topo.networks.len() {
        if !topo.networks[n].external {
            continue;
        }
        let hosts: BTreeSet<HostIx> = topo
            .routers
            .iter()
            .filter(|r| r.distributed && r.external_gateway == Some(NetworkIx(n)))
            .flat_map(|r| r.hosts.iter().copied())
            .collect();
        for h in hosts {
            let key = format!("fg:{}:{}", topo.networks[n].name, topo.hosts[h.0].name);
            let s = topo.networks[n].subnets[0];
            let ip = a
                .pinned_ip(&key)
                .unwrap_or_else(|| a.take_ip(c, topo, s, &format!("the fip-agent gateway (fg-) port of host `{}`", topo.hosts[h.0].name)));
            a.push_port(c, topo, NewPort { key: &key, owner: PortOwner::FloatingIpAgentGateway, subnet: s, ip, host: Some(h) });
        }
    }
    // 8. Floating IPs and their per-host rule priorities.
    let mut next_prio: BTreeMap<HostIx, u32> = BTreeMap::new();
    for (i, f) in fips.iter().enumerate() {
        let Some(f) = f else { continue };
        let s = f.ip.and_then(|ip| subnet_of(topo, f.network, ip)).unwrap_or(topo.networks[f.network.0].subnets[0]);
        let ip = f.ip.unwrap_or_else(|| a.take_ip(c, topo, s, &format!("floating_ips[{i}]")));
        let rule_priority = f.association.map(|(x, _)| {
            let p = next_prio.entry(topo.instances[x.0].host).or_insert(32768);
            *p += 1;
            *p - 1
        });
        topo.floating_ips.push(FloatingIp {
            id: FloatingIpId(spec.floating_ips[i].id.unwrap_or_else(|| derive_id("floatingip", &ip.to_string()))),
            ip,
            network: f.network,
            subnet: s,
            association: f.association,
            rule_priority,
        });
    }
    // 9. External hosts and the upstream gateway of each external subnet.
    for (i, e) in ext_hosts.iter().enumerate() {
        let Some((n, ip)) = e else { continue };
        let name = &spec.external_hosts[i].name;
        let s = ip.and_then(|ip| subnet_of(topo, *n, ip)).unwrap_or(topo.networks[n.0].subnets[0]);
        let ip = ip.unwrap_or_else(|| a.take_ip(c, topo, s, &format!("external host `{name}`")));
        let mac = a.take_mac(c, EXTERNAL_MAC_PREFIX, &format!("ext:{name}"), &obj("external_hosts", i, name));
        topo.external_hosts.push(ExternalHost { name: name.clone(), network: *n, subnet: s, ip, mac });
    }
    for s in 0..topo.subnets.len() {
        if topo.networks[topo.subnets[s].network.0].external {
            let key = format!("extgw:{}", topo.subnets[s].name);
            topo.subnets[s].external_gateway_mac = Some(a.take_mac(c, EXTERNAL_MAC_PREFIX, &key, &key));
        }
    }
    // 10. Per-host local VLANs and rfp/fpr link-local pairs.
    topo.reindex();
    for h in 0..topo.hosts.len() {
        allocate_host(c, topo, HostIx(h));
    }
}

/// An implicit port to add: its allocation key (`qr:router:subnet`…),
/// owner, subnet, address and host (`None` for a distributed port).
struct NewPort<'k> {
    key: &'k str,
    owner: PortOwner,
    subnet: SubnetIx,
    ip: Ipv4Addr,
    host: Option<HostIx>,
}

impl Alloc {
    /// Add a port, with the id and MAC its pin keeps or freshly derived ones.
    fn push_port(&mut self, c: &mut Checker, topo: &mut Topology, p: NewPort) {
        let NewPort { key, owner, subnet, ip, host } = p;
        let pin = self.pins.get(key).copied().unwrap_or_default();
        let id = PortId(pin.id.unwrap_or_else(|| derive_id("port", key)));
        let mac = pin.mac.unwrap_or_else(|| self.take_mac(c, PORT_MAC_PREFIX, &id.hyphenated(), key));
        let network = topo.subnets[subnet.0].network;
        topo.ports.push(Port { id, owner, network, subnet, ip, mac, host });
    }
}
