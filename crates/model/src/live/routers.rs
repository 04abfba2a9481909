//! Router interfaces attached and detached in place.
//!
//! Attaching subnet `s` to router `r` adds the qr- port (on the gateway
//! address) and, for a distributed router with a gateway, the sg- port on the
//! SNAT host; the hosts with a DVR-serviced port on `s` gain a copy of `r`
//! (and an fg- port when they had none on its external network); every host
//! carrying `r` gets the subnet's network, so its local VLANs are handed out
//! again. Detaching undoes each step. Validation checks only what the build
//! would check about this router, this subnet and the hosts behind them, and
//! allocation hands out what the build of the pinned file would, in the same
//! order (qr- MAC, sg- address and MAC, then fg- ports by host).

use super::{Applied, InterfaceEvent, InterfacePorts, Live, NsRef, err, names};
use crate::alloc::*;
use crate::build::{reallocate_host, reallocate_vlans};
use crate::change::{Change, ChangeError};
use crate::topology::*;
use crate::types::*;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// Two subnets share an address.
fn overlaps(a: ipnet::Ipv4Net, b: ipnet::Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// What attaching or detaching an interface allocated or freed, and where.
struct Reach {
    /// Hosts with a copy of the router before the change.
    before: Vec<HostIx>,
    /// And after it.
    after: Vec<HostIx>,
    /// The ports attached or detached.
    ports: InterfacePorts,
}

impl Live {
    fn router_named(&self, change: &Change, router: &str) -> Result<RouterIx, ChangeError> {
        let t = &self.topo;
        t.routers.iter().position(|r| r.name == router).map(RouterIx).ok_or_else(|| {
            err(change, format!("no router is called `{router}`\n    fix: name one of: {}", names(t.routers.iter().map(|r| &r.name))))
        })
    }

    /// Hosts of the DVR-serviced ports on `subnets` (those that carry a
    /// copy of a distributed router attached to them).
    fn serviced_hosts<'a>(&self, subnets: impl Iterator<Item = &'a SubnetIx>) -> BTreeSet<HostIx> {
        let t = &self.topo;
        let mut out = BTreeSet::new();
        for s in subnets {
            for p in t.subnet_ports(*s).filter(|p| p.owner.is_dvr_serviced()) {
                out.extend(p.host);
            }
        }
        out
    }

    /// The physical network of `n` that host `h` must map but does not (and
    /// that some host maps: one mapped nowhere is the network's problem).
    fn unmapped(&self, h: HostIx, n: NetworkIx) -> Option<String> {
        let t = &self.topo;
        let p = t.network(n).segment.physnet().filter(|p| !p.is_empty())?;
        (t.host(h).mapping(p).is_none() && t.hosts.iter().any(|o| o.mapping(p).is_some())).then(|| p.to_string())
    }

    pub(super) fn add_interface(&mut self, change: &Change, router: &str, subnet: &str) -> Result<Applied, ChangeError> {
        let r = self.router_named(change, router)?;
        let t = &self.topo;
        let s = t.subnets.iter().position(|x| x.name == subnet).map(SubnetIx).ok_or_else(|| {
            err(change, format!("no subnet is called `{subnet}`\n    fix: name one of: {}", names(t.subnets.iter().map(|s| &s.name))))
        })?;
        let (rt, sub) = (t.router(r), t.subnet(s));
        let n = sub.network;
        if t.network(n).external {
            return Err(err(
                change,
                format!(
                    "`{subnet}` belongs to external network `{}`\n    fix: attach external networks with external_gateway, not as an interface",
                    t.network(n).name
                ),
            ));
        }
        if let Some(o) = t.routers_on_subnet(s).next() {
            return Err(err(
                change,
                format!(
                    "subnet `{subnet}` is already attached to router `{}`; its gateway IP can belong to one router only\n    fix: detach it from `{}` first",
                    t.router(o).name,
                    t.router(o).name
                ),
            ));
        }
        if rt.interfaces.len() >= crate::limits::MAX_INTERFACES_PER_ROUTER {
            return Err(err(change, format!("router `{router}` has the most interfaces supported\n    fix: use another router")));
        }
        let ext_subnets = rt.external_gateway.map(|e| t.network(e).subnets.clone()).unwrap_or_default();
        if let Some(o) = rt.interfaces.iter().chain(&ext_subnets).find(|o| overlaps(t.subnet(**o).cidr, sub.cidr)) {
            return Err(err(
                change,
                format!(
                    "{} ({subnet}) overlaps {} ({}) of router `{router}`\n    fix: a router cannot route between overlapping subnets; use disjoint CIDRs or two routers",
                    sub.cidr,
                    t.subnet(*o).cidr,
                    t.subnet(*o).name
                ),
            ));
        }
        if t.unbound_ports.iter().any(|p| p.subnet == s && p.ip == sub.gateway) {
            return Err(err(
                change,
                format!(
                    "the gateway {} of subnet `{subnet}` is held by an unbound port\n    fix: delete that port or give it another address",
                    sub.gateway
                ),
            ));
        }
        // Physical networks the hosts behind the router must map (the build's
        // check_host_mappings, for this router only).
        let mut need: Vec<(HostIx, NetworkIx)> = rt.snat_host.map(|h| (h, n)).into_iter().collect();
        if rt.distributed {
            let all: Vec<NetworkIx> = rt.interfaces.iter().map(|i| t.subnet(*i).network).chain(rt.external_gateway).collect();
            for i in &rt.interfaces {
                for p in t.subnet_ports(*i).filter(|p| matches!(p.owner, PortOwner::Compute { .. }) && p.network != n) {
                    need.extend(p.host.map(|h| (h, n)));
                }
            }
            for p in t.subnet_ports(s).filter(|p| matches!(p.owner, PortOwner::Compute { .. })) {
                let h = p.host.expect("instance ports are bound");
                need.extend(all.iter().filter(|m| **m != n).map(|m| (h, *m)));
            }
        }
        for (h, m) in need {
            if let Some(p) = self.unmapped(h, m) {
                return Err(err(
                    change,
                    format!(
                        "host `{}` has no bridge mapping for physical network `{p}`, needed for its copy of router `{router}`\n    fix: add `{p}: <bridge>` to the bridge_mappings of `{}`",
                        t.host(h).name,
                        t.host(h).name
                    ),
                ));
            }
        }
        // Who carries the router afterwards, and which of them need an fg- port.
        let before = rt.hosts.clone();
        let mut after: BTreeSet<HostIx> = before.iter().copied().collect();
        if rt.distributed {
            after.extend(self.serviced_hosts(std::iter::once(&s)));
        }
        let gained: Vec<HostIx> = after.iter().copied().filter(|h| before.binary_search(h).is_err()).collect();
        let fg_net = rt.external_gateway.filter(|_| rt.distributed);
        let need_fg: Vec<HostIx> = match fg_net {
            Some(e) => gained.iter().copied().filter(|h| t.fip_agent_port(*h, e).is_none()).collect(),
            None => Vec::new(),
        };
        // Allocate in the build's order; give everything back on failure.
        let qr_key = format!("qr:{router}:{subnet}");
        let qr_id = PortId(derive_id("port", &qr_key));
        let gateway = sub.gateway;
        let Some(qr_mac) = self.macs.allocate(PORT_MAC_PREFIX, &qr_id.hyphenated()) else {
            return Err(err(change, "no free MAC address left\n    fix: delete unused ports"));
        };
        let mut macs = vec![qr_mac];
        let mut ips: Vec<(SubnetIx, Ipv4Addr)> = Vec::new();
        let rollback = |me: &mut Live, macs: &[MacAddr], ips: &[(SubnetIx, Ipv4Addr)]| {
            macs.iter().for_each(|m| me.macs.release(*m));
            ips.iter().for_each(|(s, ip)| me.pools[s.0].release(*ip));
        };
        let mut sg = None;
        if let (Some(_), true) = (self.topo.router(r).external_gateway, self.topo.router(r).distributed) {
            let key = format!("sg:{router}:{subnet}");
            let id = PortId(derive_id("port", &key));
            match self.take_ip(change, s, "the router's SNAT (sg-) port") {
                Ok(ip) => ips.push((s, ip)),
                Err(e) => {
                    rollback(self, &macs, &ips);
                    return Err(e);
                }
            }
            let mac = self.macs.allocate(PORT_MAC_PREFIX, &id.hyphenated()).unwrap_or(MacAddr::ZERO);
            macs.push(mac);
            sg = Some((id, ips[0].1, mac));
        }
        let mut fgs = Vec::new();
        if let Some(e) = fg_net {
            let es = self.topo.network(e).subnets[0];
            for &h in &need_fg {
                let key = format!("fg:{}:{}", self.topo.network(e).name, self.topo.host(h).name);
                let id = PortId(derive_id("port", &key));
                let who = format!("the fip-agent gateway (fg-) port of host `{}`", self.topo.host(h).name);
                let ip = match self.take_ip(change, es, &who) {
                    Ok(ip) => ip,
                    Err(e) => {
                        rollback(self, &macs, &ips);
                        return Err(e);
                    }
                };
                ips.push((es, ip));
                let mac = self.macs.allocate(PORT_MAC_PREFIX, &id.hyphenated()).unwrap_or(MacAddr::ZERO);
                macs.push(mac);
                fgs.push(Port { id, owner: PortOwner::FloatingIpAgentGateway, network: e, subnet: es, ip, mac, host: Some(h) });
            }
        }
        // Nothing can fail from here on.
        let (distributed, snat_host) = (self.topo.router(r).distributed, self.topo.router(r).snat_host);
        let (start, qrs, sgs) = self.router_block(r);
        let owner =
            if distributed { PortOwner::RouterInterfaceDistributed { router: r } } else { PortOwner::RouterInterface { router: r } };
        let host = if distributed { None } else { snat_host };
        let qr = Port { id: qr_id, owner, network: n, subnet: s, ip: gateway, mac: qr_mac, host };
        self.insert_port(start + qrs, qr.clone());
        let mut snat = None;
        if let Some((id, ip, mac)) = sg {
            let port = Port { id, owner: PortOwner::CentralizedSnat { router: r }, network: n, subnet: s, ip, mac, host: snat_host };
            self.insert_port(start + qrs + 1 + sgs, port.clone());
            snat = Some(port);
        }
        self.topo.routers[r.0].interfaces.push(s);
        self.topo.index.subnet_routers[s.0] = vec![r];
        for &h in &gained {
            let list = &mut self.topo.routers[r.0].hosts;
            list.insert(list.binary_search(&h).unwrap_err(), h);
            let list = &mut self.topo.index.host_routers[h.0];
            list.insert(list.binary_search(&r).unwrap_err(), r);
        }
        for p in fgs {
            self.insert_fg_port(p);
        }
        let after: Vec<HostIx> = after.into_iter().collect();
        let at = self.topo.router(r).interfaces.len() - 1;
        let ports = InterfacePorts { qr, at, snat };
        Ok(self.interface_applied(InterfaceEvent { router: r, subnet: s, added: true }, Reach { before, after, ports }))
    }

    pub(super) fn remove_interface(&mut self, change: &Change, router: &str, subnet: &str) -> Result<Applied, ChangeError> {
        let r = self.router_named(change, router)?;
        let t = &self.topo;
        let rt = t.router(r);
        let Some(&s) = rt.interfaces.iter().find(|i| t.subnet(**i).name == subnet) else {
            return Err(err(
                change,
                format!(
                    "router `{router}` has no interface on subnet `{subnet}`\n    fix: name one of its subnets: {}",
                    names(rt.interfaces.iter().map(|i| &t.subnet(*i).name))
                ),
            ));
        };
        // A floating IP of an instance behind it would lose its way out.
        if let Some(f) =
            t.floating_ips.iter().find(|f| matches!(f.association, Some((x, fr)) if fr == r && t.port(t.instance(x).port).subnet == s))
        {
            let (x, _) = f.association.expect("found associated");
            return Err(err(
                change,
                format!(
                    "floating IP {} of instance `{}` on subnet `{subnet}` needs router `{router}`\n    fix: disassociate the floating IP first",
                    f.ip,
                    t.instance(x).name
                ),
            ));
        }
        let before = rt.hosts.clone();
        let after: Vec<HostIx> = if rt.distributed {
            let mut a = self.serviced_hosts(rt.interfaces.iter().filter(|i| **i != s));
            a.extend(rt.snat_host);
            a.into_iter().collect()
        } else {
            before.clone()
        };
        let snat = t.snat_port(r, s).map(|p| t.port(p).clone());
        if let Some(p) = t.snat_port(r, s) {
            let port = t.port(p).clone();
            self.remove_port(p);
            self.pools[port.subnet.0].release(port.ip);
            self.macs.release(port.mac);
        }
        let p = self.topo.router_interface(r, s).expect("every interface has a port");
        let at = self.topo.router(r).interfaces.iter().position(|i| *i == s).expect("found above");
        let qr = self.topo.port(p).clone();
        // Its address is the subnet's gateway, which stays reserved.
        let mac = qr.mac;
        self.remove_port(p);
        self.macs.release(mac);
        self.topo.routers[r.0].interfaces.retain(|i| *i != s);
        self.topo.index.subnet_routers[s.0].clear();
        for &h in before.iter().filter(|h| after.binary_search(h).is_err()) {
            self.topo.routers[r.0].hosts.retain(|x| *x != h);
            self.topo.index.host_routers[h.0].retain(|x| *x != r);
            self.refresh_fg_ports(h);
        }
        let ports = InterfacePorts { qr, at, snat };
        Ok(self.interface_applied(InterfaceEvent { router: r, subnet: s, added: false }, Reach { before, after, ports }))
    }

    /// Where router `r`'s ports start, and how many qr- and sg- ports it has
    /// (its block: qr- ports, sg- ports, the qg- port; after the DHCP ports
    /// and the blocks of the routers before it).
    fn router_block(&self, r: RouterIx) -> (usize, usize, usize) {
        let t = &self.topo;
        let of = |p: &Port| match p.owner {
            PortOwner::RouterInterfaceDistributed { router }
            | PortOwner::RouterInterface { router }
            | PortOwner::CentralizedSnat { router }
            | PortOwner::RouterGateway { router } => Some(router),
            _ => None,
        };
        let start = t.ports.iter().position(|p| p.owner != PortOwner::Dhcp && of(p).is_none_or(|x| x >= r)).unwrap_or(t.ports.len());
        let mine = t.ports[start..].iter().take_while(|p| of(p) == Some(r));
        let (mut qrs, mut sgs) = (0, 0);
        for p in mine {
            match p.owner {
                PortOwner::CentralizedSnat { .. } => sgs += 1,
                PortOwner::RouterGateway { .. } => {}
                _ => qrs += 1,
            }
        }
        (start, qrs, sgs)
    }

    /// Fix the local VLANs and links of every host that carries (or carried)
    /// router `r`, and say what to replan: hosts that gained or lost the
    /// copy whole; on the others their bridges and the copy's namespace; the
    /// router's `snat-` namespace; the `qdhcp-` namespace of the network.
    fn interface_applied(&mut self, ev: InterfaceEvent, reach: Reach) -> Applied {
        let (r, s) = (ev.router, ev.subnet);
        let Reach { before, after, ports } = reach;
        let n = self.topo.subnet(s).network;
        let mut all: BTreeSet<HostIx> = before.iter().copied().collect();
        all.extend(after.iter().copied());
        // Per host: the network's local VLAN before and after, when no other moved.
        let mut steps = std::collections::BTreeMap::new();
        for &h in &all {
            let old = self.topo.hosts[h.0].local_vlans.clone();
            // Local VLANs run out only past 4,094 networks on one host; the
            // host keeps what fits, as a build that reports it would.
            // A host that keeps its copy keeps its routers, so its link-local pairs.
            let _ = if before.binary_search(&h).is_ok() && after.binary_search(&h).is_ok() {
                reallocate_vlans(&mut self.topo, h)
            } else {
                reallocate_host(&mut self.topo, h)
            };
            let new = &self.topo.hosts[h.0].local_vlans;
            if old.iter().filter(|(m, _)| *m != n).eq(new.iter().filter(|(m, _)| *m != n)) {
                let of = |l: &[(NetworkIx, VlanId)]| l.iter().find(|(m, _)| *m == n).map(|(_, v)| *v);
                steps.insert(h, (of(&old), of(new)));
            }
        }
        let t = &self.topo;
        let router = t.router(r);
        let name = |h: HostIx| t.host(h).name.clone();
        let mut a = Applied { interface: Some(ev), interface_ports: Some(ports), ..Applied::default() };
        for h in all {
            if before.binary_search(&h).is_ok() && after.binary_search(&h).is_ok() {
                a.bridges.insert(name(h));
                if let Some(step) = steps.get(&h) {
                    a.steady.insert(name(h), *step);
                }
                a.namespaces.insert((name(h), NsRef::Qrouter(router.name.clone())));
                if router.distributed && router.external_gateway.is_some() && router.snat_host == Some(h) {
                    a.namespaces.insert((name(h), NsRef::Snat(router.name.clone())));
                }
            } else {
                a.hosts.insert(name(h));
            }
        }
        // On VXLAN, l2population announces the router's ports (and a copy's
        // arrival or departure changes a host's networks) to every host
        // with one of the router's networks: their br-tun changes.
        let vxlan: Vec<NetworkIx> = router
            .interfaces
            .iter()
            .map(|i| t.subnet(*i).network)
            .chain(std::iter::once(n))
            .filter(|m| t.network(*m).segment.vni().is_some())
            .collect();
        if !vxlan.is_empty() {
            for (_, host) in t.hosts_ix() {
                if !a.hosts.contains(&host.name) && vxlan.iter().any(|m| host.local_vlan(*m).is_some()) {
                    a.hosts.insert(host.name.clone());
                }
            }
        }
        if let Some(h) = t.dhcp_port(n).and_then(|p| t.port(p).host) {
            a.namespaces.insert((name(h), NsRef::Qdhcp(t.network(n).name.clone())));
        }
        a
    }
}
