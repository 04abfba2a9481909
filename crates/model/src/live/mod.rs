//! The live model: a validated [`Topology`] that [`Change`]s edit in place.
//!
//! A control plane (the agents, `dvr server`) changes one object at a time
//! in a deployment of thousands of hosts; rebuilding the model from the file
//! for each change costs what the whole cloud costs (100–260 ms at 1,000
//! hosts). [`Live`] keeps the allocators next to the topology — the free
//! addresses of every subnet and the MACs in use — so a change validates only
//! what it touches, hands out or releases only its own IDs, MACs and IPs, and
//! fixes the indices and per-host allocations (local VLANs, link-local pairs,
//! floating-IP rule priorities) of the hosts it affects.
//!
//! The contract, checked by the property test `in_place_equals_rebuild`
//! (crates/model/tests/live_change.rs): the topology after
//! [`Live::apply`] is identical — every object, every allocation, every index
//! — to a full build of the *pinned* file ([`pinned_spec`]: the deployment
//! written back with every allocation explicit) with the same change applied.
//! Pinning is what makes allocation stable: an object the change does not
//! touch keeps its address, MAC and id, as it does in Neutron.
//!
//! Instances, floating IPs (boot, delete, associate, disassociate) and
//! router interfaces (attach, detach: [`routers`]) are edited in place.
//! A compute host joining, or an empty one leaving ([`hosts`]), changes the
//! other hosts by its DVR MAC alone ([`Applied::host`]). What cannot be
//! edited in place (a host with instances on it, any change with security
//! groups) is applied by rebuilding from the pinned file
//! ([`Applied::rebuilt`] says so), which keeps the same contract.
//!
//! A control plane that already allocated a change (an agent following
//! `dvr server`) makes it with those allocations: [`Live::boot`] and
//! [`Live::reassociate`] (module `pinned`).

mod hosts;
mod routers;

use crate::alloc::*;
use crate::build::{build, reallocate_host};
use crate::change::{Change, ChangeError};
use crate::spec::*;
use crate::topology::*;
use crate::types::*;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

mod pinned;
use pinned::Pin;

/// A topology with its allocators, edited in place by changes.
#[derive(Debug, Clone)]
pub struct Live {
    topo: Topology,
    /// Per subnet: every address in use (gateway, ports, floating IPs,
    /// external hosts, unbound ports) reserved.
    pools: Vec<IpPool>,
    /// Every MAC in use (ports, DVR MACs, external hosts and gateways).
    macs: MacAllocator,
    /// The file the topology was built from, with every change since
    /// applied to it ([`Change::apply`]): what a rebuild starts from, so it
    /// keeps whatever the file says (demo paths, keys this module does not
    /// edit) and only gains the allocations ([`Live::pinned_spec`]).
    spec: TopologySpec,
}

/// What one change did, for the planner: which hosts' plans may differ.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Hosts (by name, after the change) whose plan inputs the change
    /// touched, to be replanned whole. Empty when [`Applied::rebuilt`]: then
    /// any host may have changed.
    pub hosts: BTreeSet<String>,
    /// Routers (by name) whose copies on their other hosts see the change
    /// only in their `qrouter-` namespace (the permanent ARP entry of a port
    /// booted or deleted behind them, [`Applied::port`]): on those hosts only
    /// that entry changes.
    pub routers: BTreeSet<String>,
    /// (host, router) pairs where only the router's copy changes: its
    /// `qrouter-` namespace and the host's `fip-` namespace of the router's
    /// external network (a floating IP associated or disassociated).
    /// Every host not named in `hosts`, `routers` or `copies` is unchanged.
    pub copies: BTreeSet<(String, String)>,
    /// Hosts where only `br-int` changes (besides the ARP entries of
    /// `routers`): the host of an instance booted or deleted when its
    /// networks, router copies, VLANs and floating IPs stay as they were.
    pub int_bridges: BTreeSet<String>,
    /// Hosts where every bridge is replanned (a router interface changed
    /// what the host's copy of the router and its local VLANs look like)
    /// while its namespaces stay, except those named in `namespaces`.
    pub bridges: BTreeSet<String>,
    /// (host, namespace) pairs replanned alone: the copy of a router that
    /// gained or lost an interface, its `snat-` namespace, the `qdhcp-`
    /// namespace of the subnet's network (its default route).
    pub namespaces: BTreeSet<(String, NsRef)>,
    /// The port booted or deleted, if any.
    pub port: Option<PortEvent>,
    /// The router interface attached or detached, if any: the copies of
    /// the router named in `namespaces` can be patched for it alone.
    pub interface: Option<InterfaceEvent>,
    /// The ports of [`Applied::interface`], as attached or as they were
    /// before detaching: what a planner needs to add or remove just that
    /// interface's flows on the router's copies.
    pub interface_ports: Option<InterfacePorts>,
    /// Hosts of `bridges` where no local VLAN moved except the interface's
    /// network's own appearing or going: per host, that network's local
    /// VLAN before and after (`None`: absent). On those the router's copy
    /// changes by that interface's flows and port alone.
    pub steady: std::collections::BTreeMap<String, (Option<VlanId>, Option<VlanId>)>,
    /// A host added (last in the list; named in `hosts`) or removed in
    /// place: every other dataplane host gains or loses the flows that let
    /// routed frames from its DVR MAC through, and nothing else.
    pub host: Option<HostEvent>,
    /// The change was applied by rebuilding from the pinned file (a host
    /// removed with what it carries; any change with security groups), not
    /// in place.
    pub rebuilt: bool,
}

/// A host that joined or left the deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEvent {
    /// Its name.
    pub name: String,
    /// Its position in the host list (after joining; before leaving).
    pub at: HostIx,
    /// Its DVR MAC.
    pub dvr_mac: MacAddr,
    /// Joined (`true`) or left.
    pub added: bool,
}

/// The ports a router interface brings or takes away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfacePorts {
    /// The qr- port.
    pub qr: Port,
    /// Its subnet's position among the router's interfaces (after
    /// attaching, before detaching).
    pub at: usize,
    /// The sg- port on the SNAT host, if the router has one.
    pub snat: Option<Port>,
}

/// One namespace of a host's plan, named by the object it serves.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum NsRef {
    /// The `qrouter-` namespace of a router (distributed or legacy).
    Qrouter(String),
    /// The `snat-` namespace of a distributed router.
    Snat(String),
    /// The `qdhcp-` namespace of a network.
    Qdhcp(String),
}

/// A subnet attached to (`added`) or detached from a router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceEvent {
    /// The router.
    pub router: RouterIx,
    /// The subnet.
    pub subnet: SubnetIx,
    /// Attached (`true`) or detached.
    pub added: bool,
}

/// A port booted (`added`) or deleted on a subnet: what the permanent ARP of
/// the router copies behind it gains or loses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortEvent {
    /// Its subnet.
    pub subnet: SubnetIx,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Booted (`true`) or deleted.
    pub added: bool,
}

/// The error of a change, with the fix (`kind` is the change's kind).
fn err(change: &Change, what: impl Into<String>) -> ChangeError {
    ChangeError { kind: change.kind(), what: what.into() }
}

impl Live {
    /// Build the topology of a file and keep both.
    pub fn build(file: &str, spec: &TopologySpec) -> Result<Live, crate::error::TopologyError> {
        let topo = build(file, spec)?;
        Ok(Live::with_spec(topo, spec.clone()))
    }

    /// Take a validated topology (its file is taken to be [`pinned_spec`]).
    pub fn new(topo: Topology) -> Live {
        let spec = pinned_spec(&topo);
        Live::with_spec(topo, spec)
    }

    /// Take a validated topology and the file it was built from, and set up
    /// the allocators (one pass over every port and address).
    fn with_spec(topo: Topology, mut spec: TopologySpec) -> Live {
        // Floating IPs by address from here on (a change names them so).
        for (f, t) in spec.floating_ips.iter_mut().zip(&topo.floating_ips) {
            f.ip = Some(t.ip);
        }
        let mut pools: Vec<IpPool> = topo.subnets.iter().map(|s| IpPool::with_pools(s.cidr, &s.allocation_pools)).collect();
        let mut macs = MacAllocator::default();
        for (i, s) in topo.subnets.iter().enumerate() {
            pools[i].reserve(s.gateway);
            if let Some(m) = s.external_gateway_mac {
                macs.reserve(m);
            }
        }
        for p in &topo.ports {
            pools[p.subnet.0].reserve(p.ip);
            macs.reserve(p.mac);
        }
        for p in &topo.unbound_ports {
            pools[p.subnet.0].reserve(p.ip);
            macs.reserve(p.mac);
        }
        for f in &topo.floating_ips {
            pools[f.subnet.0].reserve(f.ip);
        }
        for e in &topo.external_hosts {
            pools[e.subnet.0].reserve(e.ip);
            macs.reserve(e.mac);
        }
        for h in &topo.hosts {
            if let Some(m) = h.dvr_mac {
                macs.reserve(m);
            }
        }
        Live { topo, pools, macs, spec }
    }

    /// The topology as it is now.
    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    /// The topology, giving up the allocators.
    pub fn into_topology(self) -> Topology {
        self.topo
    }

    /// Apply one change. On error nothing is changed and the message names
    /// what is wrong and the fix.
    pub fn apply(&mut self, change: &Change) -> Result<Applied, ChangeError> {
        // With security groups a port's addresses are in every host's firewall
        // flows (remote groups) and in `security.ports`: rebuild.
        if !self.topo.security.is_noop() {
            return self.rebuild(change);
        }
        let applied = match change {
            Change::AddInstance { name, host, network } => self.add_instance(change, name, host, network, Pin::default()),
            Change::RemoveInstance { name } => self.remove_instance(change, name),
            Change::AssociateFloatingIp { ip, instance } => self.associate(change, *ip, instance),
            Change::DisassociateFloatingIp { ip } => self.disassociate(change, *ip),
            Change::AddRouterInterface { router, subnet } => self.add_interface(change, router, subnet),
            Change::RemoveRouterInterface { router, subnet } => self.remove_interface(change, router, subnet),
            Change::AddHost { .. } | Change::RemoveHost { .. } => match self.host_change(change)? {
                Some(applied) => Ok(applied),
                None => return self.rebuild(change),
            },
        }?;
        // The file follows. A new floating IP is written with its address, so
        // a later change can name it.
        match change {
            Change::AssociateFloatingIp { instance, .. } => {
                let f = self.topo.floating_ips.last().expect("just added");
                self.spec.floating_ips.push(FloatingIpSpec {
                    id: None,
                    ip: Some(f.ip),
                    instance: Some(instance.clone()),
                    network: Some(self.topo.network(f.network).name.clone()),
                });
            }
            _ => {
                if change.apply(&mut self.spec).is_err() {
                    // Cannot happen (the change was valid in place); stay correct anyway.
                    self.spec = pinned_spec(&self.topo);
                }
            }
        }
        Ok(applied)
    }

    /// A `ports:` pin (id, address, MAC) for every implicit port (DHCP,
    /// router, SNAT, gateway and fip-agent ports): what a control plane that
    /// made the same change should have allocated, to check against it.
    pub fn implicit_ports(&self) -> Vec<PortSpec> {
        implicit_pins(&self.topo)
    }

    /// The file with the change history applied and every allocation made
    /// explicit: building it gives this topology.
    pub fn pinned_spec(&self) -> TopologySpec {
        let mut spec = self.spec.clone();
        pin(&mut spec, &self.topo);
        spec
    }

    /// Apply a change to the pinned file and build it.
    fn rebuild(&mut self, change: &Change) -> Result<Applied, ChangeError> {
        let mut spec = self.pinned_spec();
        change.apply(&mut spec).map_err(|what| err(change, what))?;
        let topo = build(&self.topo.name, &spec).map_err(|e| err(change, e.to_string()))?;
        *self = Live::with_spec(topo, spec);
        Ok(Applied { rebuilt: true, ..Applied::default() })
    }

    // ------------------------------------------------------------ instances

    fn add_instance(&mut self, change: &Change, name: &str, host: &str, network: &str, pin: Pin) -> Result<Applied, ChangeError> {
        let t = &self.topo;
        if t.instances.len() >= crate::limits::MAX_INSTANCES {
            return Err(err(
                change,
                format!("the deployment has {} instances, the most supported\n    fix: delete an instance first", t.instances.len()),
            ));
        }
        if name.is_empty() || !name.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)) {
            return Err(err(change, format!("`{name}` is not a valid name\n    fix: use letters, digits, `-`, `_` or `.` only")));
        }
        if t.instances.iter().any(|x| x.name == name) || t.external_hosts.iter().any(|e| e.name == name) {
            return Err(err(
                change,
                format!("an instance or external host is already called `{name}`\n    fix: give the new instance a name not in use"),
            ));
        }
        let h = t.host_ix(host).ok_or_else(|| {
            err(change, format!("no host is called `{host}`\n    fix: name one of: {}", names(t.hosts.iter().map(|h| &h.name))))
        })?;
        if t.host(h).role != Role::Compute {
            return Err(err(
                change,
                format!("host `{host}` is not a compute host\n    fix: place the instance on a host with `role: compute`"),
            ));
        }
        let n = t.networks.iter().position(|x| x.name == network).map(NetworkIx).ok_or_else(|| {
            err(change, format!("no network is called `{network}`\n    fix: name one of: {}", names(t.networks.iter().map(|n| &n.name))))
        })?;
        let net = t.network(n);
        if net.external {
            return Err(err(
                change,
                format!("`{network}` is an external network\n    fix: attach instances to tenant networks; reach them with a floating IP"),
            ));
        }
        let Some(&s) = net.subnets.first() else {
            return Err(err(change, format!("network `{network}` has no subnet\n    fix: add a subnet to the network")));
        };
        // The physical networks the host needs: the instance's own, and those
        // of the copies of distributed routers it will carry (as the build checks).
        let mut need: Vec<(NetworkIx, String)> = vec![(n, format!("network `{network}` of the instance"))];
        for r in t.routers_on_subnet(s).filter(|&r| t.router(r).distributed) {
            let router = t.router(r);
            for &i in &router.interfaces {
                need.push((t.subnet(i).network, format!("its copy of distributed router `{}`", router.name)));
            }
            if let Some(e) = router.external_gateway {
                need.push((e, format!("the fg- port of its copy of distributed router `{}`", router.name)));
            }
        }
        for (nx, why) in need {
            if let Some(p) = t.network(nx).segment.physnet()
                && !p.is_empty()
                && t.host(h).mapping(p).is_none()
            {
                return Err(err(
                    change,
                    format!(
                        "host `{host}` has no bridge mapping for physical network `{p}`, needed for {why}\n    fix: add `{p}: <bridge>` to the bridge_mappings of `{host}` or use another host"
                    ),
                ));
            }
        }
        let key = format!("vm:{name}");
        let id = PortId(pin.id.unwrap_or_else(|| derive_id("port", &key)));
        let ip = match pin.ip {
            Some(ip) => self.reserve_ip(change, s, ip)?,
            None => self.take_ip(change, s, &format!("instance `{name}`"))?,
        };
        let mac = match pin.mac {
            Some(m) if self.macs.reserve(m) => Some(m),
            Some(m) => {
                self.pools[s.0].release(ip);
                return Err(err(change, format!("MAC {m} is already in use\n    fix: give the port a free MAC")));
            }
            None => self.macs.allocate(PORT_MAC_PREFIX, &id.hyphenated()),
        };
        let Some(mac) = mac else {
            self.pools[s.0].release(ip);
            return Err(err(change, "no free MAC address left\n    fix: delete unused ports"));
        };
        let x = InstanceIx(self.topo.instances.len());
        // Instance ports sit after the router ports and before the fg- ports.
        let at = self.topo.ports.len() - self.fg_count();
        let port = Port { id, owner: PortOwner::Compute { instance: x }, network: n, subnet: s, ip, mac, host: Some(h) };
        self.insert_port(at, port);
        self.topo.instances.push(Instance { name: name.to_string(), host: h, network: n, port: PortIx(at) });
        let vxlan_before = self.vxlan_networks(h);
        let host_changed = self.refresh_host(h);
        let mut a = self.applied(h, host_changed, PortEvent { subnet: s, ip, added: true });
        a.hosts.extend(self.tunnel_peers(h, vxlan_before));
        Ok(a)
    }

    fn remove_instance(&mut self, change: &Change, name: &str) -> Result<Applied, ChangeError> {
        let t = &self.topo;
        let Some(x) = t.instances.iter().position(|x| x.name == name) else {
            return Err(err(
                change,
                format!("no instance `{name}` to remove\n    fix: name one of: {}", names(t.instances.iter().map(|x| &x.name))),
            ));
        };
        let inst = t.instances[x].clone();
        let port = t.port(inst.port).clone();
        let h = inst.host;
        let mut touched = BTreeSet::new();
        // Its floating IPs go with it (and their addresses back to the pool).
        let mut f = 0;
        while f < self.topo.floating_ips.len() {
            let fip = &self.topo.floating_ips[f];
            if matches!(fip.association, Some((i, _)) if i.0 == x) {
                self.touch_fip_hosts(fip.association, &mut touched);
                self.pools[fip.subnet.0].release(fip.ip);
                self.topo.floating_ips.remove(f);
            } else {
                f += 1;
            }
        }
        self.topo.paths.retain(|p| p.from != name && p.to != name);
        self.remove_port(inst.port);
        self.pools[port.subnet.0].release(port.ip);
        self.macs.release(port.mac);
        self.topo.instances.remove(x);
        for p in &mut self.topo.ports {
            if let PortOwner::Compute { instance } = &mut p.owner
                && instance.0 > x
            {
                instance.0 -= 1;
            }
        }
        for f in &mut self.topo.floating_ips {
            if let Some((i, _)) = &mut f.association
                && i.0 > x
            {
                i.0 -= 1;
            }
        }
        self.renumber_fip_rules(h);
        let vxlan_before = self.vxlan_networks(h);
        let host_changed = self.refresh_host(h) || !touched.is_empty();
        let mut a = self.applied(h, host_changed, PortEvent { subnet: port.subnet, ip: port.ip, added: false });
        a.hosts.extend(touched.into_iter().map(|x| self.topo.host(x).name.clone()));
        a.hosts.extend(self.tunnel_peers(h, vxlan_before));
        Ok(a)
    }

    // -------------------------------------------------------- floating IPs

    fn associate(&mut self, change: &Change, ip: Option<Ipv4Addr>, instance: &str) -> Result<Applied, ChangeError> {
        let t = &self.topo;
        if t.floating_ips.len() >= crate::limits::MAX_FLOATING_IPS {
            return Err(err(change, "the deployment has the most floating IPs supported\n    fix: delete a floating IP first"));
        }
        let x = t.instances.iter().position(|i| i.name == instance).map(InstanceIx).ok_or_else(|| {
            err(change, format!("no instance is called `{instance}`\n    fix: name one of: {}", names(t.instances.iter().map(|x| &x.name))))
        })?;
        if let Some(f) = t.floating_ips.iter().find(|f| matches!(f.association, Some((i, _)) if i == x)) {
            return Err(err(
                change,
                format!("instance `{instance}` already has floating IP {}\n    fix: associate one floating IP per instance", f.ip),
            ));
        }
        let sub = t.port(t.instance(x).port).subnet;
        let ext_holds = |r: RouterIx, ip: Ipv4Addr| {
            t.router(r).external_gateway.is_some_and(|e| t.network(e).subnets.iter().any(|s| t.subnet(*s).cidr.contains(&ip)))
        };
        // The build's rule: the first router (in file order) that takes the
        // instance's subnet outside, and whose external subnets hold `ip`.
        let connected: Vec<RouterIx> =
            t.routers_ix().filter(|(_, r)| r.interfaces.contains(&sub) && r.external_gateway.is_some()).map(|(r, _)| r).collect();
        let Some(&first) = connected.first() else {
            return Err(err(
                change,
                format!(
                    "no router connects subnet `{}` of instance `{instance}` to an external network\n    fix: add `{}` to the interfaces of a router whose external_gateway is set",
                    t.subnet(sub).name,
                    t.subnet(sub).name
                ),
            ));
        };
        let Some(r) = connected.iter().copied().find(|&r| ip.is_none_or(|ip| ext_holds(r, ip))) else {
            let e = t.router(first).external_gateway.expect("connected");
            let cidrs: Vec<String> = t.network(e).subnets.iter().map(|s| t.subnet(*s).cidr.to_string()).collect();
            return Err(err(
                change,
                format!(
                    "{} is outside the subnets of external network `{}` ({})\n    fix: use an address inside {} or give none to have one allocated",
                    ip.expect("only an address can miss"),
                    t.network(e).name,
                    cidrs.join(", "),
                    cidrs.join(", ")
                ),
            ));
        };
        let n = t.router(r).external_gateway.expect("connected");
        let (s, ip) = match ip {
            Some(ip) => {
                let s = *t.network(n).subnets.iter().find(|s| t.subnet(**s).cidr.contains(&ip)).expect("checked above");
                let sn = t.subnet(s);
                if ip == sn.gateway || ip == sn.cidr.network() || ip == sn.cidr.broadcast() {
                    return Err(err(
                        change,
                        format!("{ip} is the gateway, network or broadcast address of {}\n    fix: use a free host address", sn.cidr),
                    ));
                }
                if !self.pools[s.0].reserve(ip) {
                    return Err(err(
                        change,
                        format!("{ip} is already in use\n    fix: use a free address or give none to have one allocated"),
                    ));
                }
                (s, ip)
            }
            None => {
                let s = t.network(n).subnets[0];
                (s, self.take_ip(change, s, &format!("floating_ips[{}]", self.topo.floating_ips.len()))?)
            }
        };
        self.topo.floating_ips.push(FloatingIp {
            id: FloatingIpId(derive_id("floatingip", &ip.to_string())),
            ip,
            network: n,
            subnet: s,
            association: Some((x, r)),
            rule_priority: None,
        });
        self.renumber_fip_rules(self.topo.instance(x).host);
        Ok(self.applied_fip((x, r)))
    }

    fn disassociate(&mut self, change: &Change, ip: Ipv4Addr) -> Result<Applied, ChangeError> {
        let Some(f) = self.topo.floating_ips.iter().position(|f| f.ip == ip && f.association.is_some()) else {
            return Err(err(change, format!("no floating IP {ip} associated with an instance\n    fix: name an associated floating IP")));
        };
        let assoc = self.topo.floating_ips[f].association.take();
        self.topo.floating_ips[f].rule_priority = None;
        let assoc = assoc.expect("found associated");
        self.renumber_fip_rules(self.topo.instance(assoc.0).host);
        Ok(self.applied_fip(assoc))
    }

    // -------------------------------------------------------------- helpers

    fn take_ip(&mut self, change: &Change, s: SubnetIx, who: &str) -> Result<Ipv4Addr, ChangeError> {
        self.pools[s.0].allocate().ok_or_else(|| {
            let sub = self.topo.subnet(s);
            err(
                change,
                format!(
                    "no free address left in subnet `{}` ({}) for {who}\n    fix: use a larger subnet or delete unused ports",
                    sub.name, sub.cidr
                ),
            )
        })
    }

    /// The hosts whose plan shows a floating IP: the instance's host and,
    /// for a legacy router, the router's host.
    fn touch_fip_hosts(&self, assoc: Option<(InstanceIx, RouterIx)>, touched: &mut BTreeSet<HostIx>) {
        if let Some((x, r)) = assoc {
            touched.insert(self.topo.instance(x).host);
            let router = self.topo.router(r);
            if !router.distributed {
                touched.extend(router.hosts.iter().copied());
            }
        }
    }

    /// The build's per-host rule priorities (32768 upwards, in floating-IP
    /// order) for the associated floating IPs of instances on `h`.
    fn renumber_fip_rules(&mut self, h: HostIx) {
        let mut next = 32768;
        for f in &mut self.topo.floating_ips {
            if let Some((x, _)) = f.association
                && self.topo.instances[x.0].host == h
            {
                f.rule_priority = Some(next);
                next += 1;
            }
        }
    }

    /// What a port change on host `h` touched: the host whole when its
    /// networks, router copies or allocations changed (else only its br-int),
    /// and the copies of the routers attached to the port's subnet (their
    /// permanent ARP for the subnet's ports). The DHCP namespace lists no instance.
    fn applied(&self, h: HostIx, host_changed: bool, port: PortEvent) -> Applied {
        let t = &self.topo;
        let name = BTreeSet::from([t.host(h).name.clone()]);
        let (hosts, int_bridges) = if host_changed { (name, BTreeSet::new()) } else { (BTreeSet::new(), name) };
        Applied {
            hosts,
            int_bridges,
            routers: t.routers_on_subnet(port.subnet).map(|r| t.router(r).name.clone()).collect(),
            port: Some(port),
            ..Applied::default()
        }
    }

    /// A floating IP of instance `x` behind router `r` changed: the router's
    /// copy on the instance's host (distributed), or the legacy router's hosts.
    fn applied_fip(&self, (x, r): (InstanceIx, RouterIx)) -> Applied {
        let t = &self.topo;
        let router = t.router(r);
        let host = t.host(t.instance(x).host).name.clone();
        if router.distributed {
            Applied { copies: BTreeSet::from([(host, router.name.clone())]), ..Applied::default() }
        } else {
            let mut hosts: BTreeSet<String> = router.hosts.iter().map(|h| t.host(*h).name.clone()).collect();
            hosts.insert(host);
            Applied { hosts, ..Applied::default() }
        }
    }

    /// The VXLAN networks present on host `h`.
    fn vxlan_networks(&self, h: HostIx) -> BTreeSet<NetworkIx> {
        let t = &self.topo;
        t.host(h).local_vlans.iter().map(|&(n, _)| n).filter(|&n| t.network(n).segment.vni().is_some()).collect()
    }

    /// The other hosts sharing a VXLAN network with host `h`, before
    /// (`before`) or after a port change there. l2population announces a
    /// port to every host with its network, and a host gaining or losing a
    /// network gains or loses the tunnels to it: their br-tun changes, so
    /// they are replanned whole.
    fn tunnel_peers(&self, h: HostIx, mut before: BTreeSet<NetworkIx>) -> BTreeSet<String> {
        let t = &self.topo;
        before.extend(self.vxlan_networks(h));
        t.hosts_ix()
            .filter(|&(o, other)| o != h && before.iter().any(|&n| other.local_vlan(n).is_some()))
            .map(|(_, other)| other.name.clone())
            .collect()
    }

    fn fg_count(&self) -> usize {
        self.topo.ports.iter().rev().take_while(|p| p.owner == PortOwner::FloatingIpAgentGateway).count()
    }

    /// Bring host `h` in line with its ports: which distributed routers it
    /// carries, its fg- ports, local VLANs and link-local pairs (the build's
    /// steps 6, 7 and 10 for one host). Hosts whose router copies appear or
    /// disappear are already in `touched` (they carry a router of the port's
    /// subnet). Returns whether any of this changed for the host.
    fn refresh_host(&mut self, h: HostIx) -> bool {
        let state = |t: &Topology| {
            let links: Vec<(RouterIx, ipnet::Ipv4Net)> = t.hosts[h.0].fip_links.iter().map(|l| (l.router, l.pair)).collect();
            (t.index.host_routers[h.0].clone(), t.hosts[h.0].local_vlans.clone(), links)
        };
        let before = state(&self.topo);
        let t = &self.topo;
        // Distributed routers with a DVR-serviced port of this host behind them.
        let mut wanted: BTreeSet<RouterIx> = BTreeSet::new();
        for p in t.host_ports(h).filter(|p| p.owner.is_dvr_serviced()) {
            wanted.extend(t.routers_on_subnet(p.subnet).filter(|&r| t.router(r).distributed));
        }
        let mut changed = false;
        for r in 0..self.topo.routers.len() {
            let router = &mut self.topo.routers[r];
            let want = wanted.contains(&RouterIx(r)) || router.snat_host == Some(h);
            let has = router.hosts.binary_search(&h);
            match (want, has) {
                (true, Err(at)) => {
                    router.hosts.insert(at, h);
                    let list = &mut self.topo.index.host_routers[h.0];
                    let pos = list.binary_search(&RouterIx(r)).unwrap_err();
                    list.insert(pos, RouterIx(r));
                    changed = true;
                }
                (false, Ok(at)) => {
                    router.hosts.remove(at);
                    self.topo.index.host_routers[h.0].retain(|x| x.0 != r);
                    changed = true;
                }
                _ => {}
            }
        }
        if changed {
            self.refresh_fg_ports(h);
        }
        // Local VLANs and link-local pairs, as the build computes them. They
        // run out only past 4,094 networks or 8,192 routers on one host, which
        // the instance's validation above cannot cause alone; the host keeps
        // what fits, as a build that reports the problem would.
        let _ = reallocate_host(&mut self.topo, h);
        before != state(&self.topo)
    }

    /// Add or remove host `h`'s fg- ports so it has one per external network
    /// that a distributed router it carries uses as gateway.
    fn refresh_fg_ports(&mut self, h: HostIx) {
        let t = &self.topo;
        let wanted: BTreeSet<NetworkIx> =
            t.index.host_routers[h.0].iter().map(|r| t.router(*r)).filter(|r| r.distributed).filter_map(|r| r.external_gateway).collect();
        let have: Vec<(NetworkIx, PortIx)> =
            t.index.fip_agent_port.iter().filter(|((host, _), _)| *host == h).map(|((_, n), p)| (*n, *p)).collect();
        for (n, p) in have {
            if !wanted.contains(&n) {
                let port = self.topo.port(p).clone();
                self.remove_port(p);
                self.pools[port.subnet.0].release(port.ip);
                self.macs.release(port.mac);
            }
        }
        for n in wanted {
            if self.topo.fip_agent_port(h, n).is_some() {
                continue;
            }
            let key = format!("fg:{}:{}", self.topo.network(n).name, self.topo.host(h).name);
            let s = self.topo.network(n).subnets[0];
            // A full external subnet leaves the port out, as the build reports it.
            let Some(ip) = self.pools[s.0].allocate() else { continue };
            let id = PortId(derive_id("port", &key));
            let mac = self.macs.allocate(PORT_MAC_PREFIX, &id.hyphenated()).unwrap_or(MacAddr::ZERO);
            self.insert_fg_port(Port { id, owner: PortOwner::FloatingIpAgentGateway, network: n, subnet: s, ip, mac, host: Some(h) });
        }
    }

    /// Insert an fg- port where the build puts it: last, by (network, host).
    fn insert_fg_port(&mut self, port: Port) {
        let key = (port.network, port.host.expect("fg- ports are bound"));
        let first = self.topo.ports.len() - self.fg_count();
        let at = first + self.topo.ports[first..].iter().take_while(|q| (q.network, q.host.expect("fg- ports are bound")) < key).count();
        self.insert_port(at, port);
    }

    /// Insert a port at `at`, shifting every later port and every index that
    /// names one.
    fn insert_port(&mut self, at: usize, port: Port) {
        let t = &mut self.topo;
        shift_ports(t, |p| if p >= at { p + 1 } else { p });
        let (host, subnet) = (port.host, port.subnet);
        let owner = port.owner;
        let network = port.network;
        t.ports.insert(at, port);
        let pi = PortIx(at);
        if let Some(h) = host {
            let list = &mut t.index.host_ports[h.0];
            let pos = list.binary_search(&pi).unwrap_err();
            list.insert(pos, pi);
        }
        let list = &mut t.index.subnet_ports[subnet.0];
        let pos = list.binary_search(&pi).unwrap_err();
        list.insert(pos, pi);
        index_port(&mut t.index, owner, host, network, subnet, Some(pi));
    }

    /// Remove the port at `at`, shifting every later port and every index.
    fn remove_port(&mut self, at: PortIx) {
        let t = &mut self.topo;
        let port = t.ports.remove(at.0);
        if let Some(h) = port.host {
            t.index.host_ports[h.0].retain(|p| *p != at);
        }
        t.index.subnet_ports[port.subnet.0].retain(|p| *p != at);
        index_port(&mut t.index, port.owner, port.host, port.network, port.subnet, None);
        shift_ports(t, |p| if p > at.0 { p - 1 } else { p });
    }
}

/// Set (`Some`) or clear the entry of a port in the index map of its kind.
fn index_port(ix: &mut Index, owner: PortOwner, host: Option<HostIx>, network: NetworkIx, subnet: SubnetIx, at: Option<PortIx>) {
    fn set<K: std::hash::Hash + Eq>(map: &mut std::collections::HashMap<K, PortIx>, k: K, at: Option<PortIx>) {
        match at {
            Some(p) => {
                map.insert(k, p);
            }
            None => {
                map.remove(&k);
            }
        }
    }
    match owner {
        PortOwner::RouterInterfaceDistributed { router } | PortOwner::RouterInterface { router } => {
            set(&mut ix.router_interface, (router, subnet), at)
        }
        PortOwner::CentralizedSnat { router } => set(&mut ix.snat_port, (router, subnet), at),
        PortOwner::RouterGateway { router } => set(&mut ix.gateway_port, router, at),
        PortOwner::FloatingIpAgentGateway => {
            if let Some(h) = host {
                set(&mut ix.fip_agent_port, (h, network), at);
            }
        }
        PortOwner::Dhcp => set(&mut ix.dhcp_port, network, at),
        PortOwner::Compute { .. } => {}
    }
}

/// Renumber every reference to a port.
fn shift_ports(t: &mut Topology, f: impl Fn(usize) -> usize) {
    let fix = |p: &mut PortIx| p.0 = f(p.0);
    for x in &mut t.instances {
        fix(&mut x.port);
    }
    let ix = &mut t.index;
    for list in ix.host_ports.iter_mut().chain(ix.subnet_ports.iter_mut()) {
        list.iter_mut().for_each(fix);
    }
    ix.router_interface.values_mut().for_each(fix);
    ix.snat_port.values_mut().for_each(fix);
    ix.gateway_port.values_mut().for_each(fix);
    ix.fip_agent_port.values_mut().for_each(fix);
    ix.dhcp_port.values_mut().for_each(fix);
}

fn names<'a>(it: impl Iterator<Item = &'a String>) -> String {
    it.map(String::as_str).collect::<Vec<_>>().join(", ")
}

/// Device owners of the ports Neutron (and the model) create by themselves:
/// the implicit ports a `ports:` entry can pin, which the API server
/// manages with the objects that imply them.
pub const IMPLICIT_OWNERS: [&str; 6] = [
    "network:dhcp",
    "network:router_interface_distributed",
    "network:router_interface",
    "network:router_centralized_snat",
    "network:router_gateway",
    "network:floatingip_agent_gateway",
];

/// Write every allocation of `t` into `spec`, the file `t` was built from:
/// ids, segmentation ids, DVR MACs, gateways, instance, floating and external
/// addresses and MACs, unbound ports, and a pin for every implicit port.
/// Everything else the file says is kept.
fn pin(spec: &mut TopologySpec, t: &Topology) {
    use std::collections::HashMap;
    let hosts: HashMap<&str, &Host> = t.hosts.iter().map(|h| (h.name.as_str(), h)).collect();
    for h in &mut spec.hosts {
        if let Some(x) = hosts.get(h.name.as_str()) {
            h.id = Some(x.id.0);
            h.dvr_mac = x.dvr_mac.map(|m| m.to_string());
            h.tunnel_ip = x.tunnel_ip;
        }
    }
    spec.underlay = t.underlay.map(|u| u.to_string());
    let networks: HashMap<&str, &Network> = t.networks.iter().map(|n| (n.name.as_str(), n)).collect();
    let subnets: HashMap<&str, &Subnet> = t.subnets.iter().map(|s| (s.name.as_str(), s)).collect();
    for n in &mut spec.networks {
        if let Some(x) = networks.get(n.name.as_str()) {
            n.id = Some(x.id.0);
            n.segmentation_id = match &x.segment {
                Segment::Vlan { vlan, .. } => Some(u64::from(vlan.get())),
                Segment::Vxlan { vni } => Some(u64::from(vni.get())),
                Segment::Flat { .. } => None,
            };
        }
        for s in &mut n.subnets {
            if let Some(x) = subnets.get(s.name.as_str()) {
                s.id = Some(x.id.0);
                s.gateway_ip = Some(x.gateway);
            }
        }
    }
    let routers: HashMap<&str, &Router> = t.routers.iter().map(|r| (r.name.as_str(), r)).collect();
    for r in &mut spec.routers {
        if let Some(x) = routers.get(r.name.as_str()) {
            r.id = Some(x.id.0);
        }
    }
    let instances: HashMap<&str, &Instance> = t.instances.iter().map(|x| (x.name.as_str(), x)).collect();
    for x in &mut spec.instances {
        if let Some(i) = instances.get(x.name.as_str()) {
            let p = t.port(i.port);
            (x.id, x.ip, x.mac) = (Some(p.id.0), Some(p.ip), Some(p.mac));
        }
    }
    for (f, x) in spec.floating_ips.iter_mut().zip(&t.floating_ips) {
        (f.id, f.ip, f.network) = (Some(x.id.0), Some(x.ip), Some(t.network(x.network).name.clone()));
    }
    for (e, x) in spec.external_hosts.iter_mut().zip(&t.external_hosts) {
        e.ip = Some(x.ip);
    }
    spec.ports.retain(|p| !p.device_owner.as_deref().is_some_and(|o| IMPLICIT_OWNERS.contains(&o)));
    for (p, x) in spec.ports.iter_mut().zip(&t.unbound_ports) {
        (p.id, p.ip, p.mac) = (Some(x.id.0), Some(x.ip), Some(x.mac));
    }
    spec.ports.extend(implicit_pins(t));
}

/// A `ports:` pin (id, address, MAC) for every implicit port.
fn implicit_pins(t: &Topology) -> Vec<PortSpec> {
    let mut ports = Vec::new();
    for p in t.ports.iter().filter(|p| !matches!(p.owner, PortOwner::Compute { .. })) {
        let router = match p.owner {
            PortOwner::RouterInterfaceDistributed { router }
            | PortOwner::RouterInterface { router }
            | PortOwner::CentralizedSnat { router }
            | PortOwner::RouterGateway { router } => Some(t.router(router).name.clone()),
            _ => None,
        };
        let host = (p.owner == PortOwner::FloatingIpAgentGateway).then(|| p.host.map(|h| t.host(h).name.clone())).flatten();
        ports.push(PortSpec {
            id: Some(p.id.0),
            name: None,
            network: t.network(p.network).name.clone(),
            ip: Some(p.ip),
            mac: Some(p.mac),
            device_owner: Some(p.owner.device_owner().to_string()),
            router,
            host,
        });
    }
    ports
}

/// The deployment as a topology file with every allocation explicit: ids,
/// segmentation ids, DVR MACs, instance addresses and MACs, floating and
/// external addresses, and a `ports:` pin (id, address, MAC) for every
/// implicit port. Building it gives back the same topology; building it after
/// a [`Change`] gives what [`Live::apply`] gives, with every untouched object
/// keeping its allocations.
// `..Default::default()`: keys the file gains later start empty here.
#[allow(clippy::needless_update)]
pub fn pinned_spec(t: &Topology) -> TopologySpec {
    let hosts = t
        .hosts
        .iter()
        .map(|h| HostSpec {
            id: Some(h.id.0),
            name: h.name.clone(),
            role: h.role,
            bridge_mappings: h.bridge_mappings.iter().map(|m| (m.physnet.clone(), m.bridge.clone())).collect(),
            nics: h.bridge_mappings.iter().map(|m| (m.physnet.clone(), m.nic.clone())).collect(),
            dvr_mac: h.dvr_mac.map(|m| m.to_string()),
            tunnel_ip: h.tunnel_ip,
        })
        .collect();
    let networks = t
        .networks
        .iter()
        .map(|n| {
            let (kind, physical_network, segmentation_id) = match &n.segment {
                Segment::Vlan { physnet, vlan } => (NetworkType::Vlan, Some(physnet.clone()), Some(u64::from(vlan.get()))),
                Segment::Flat { physnet } => (NetworkType::Flat, Some(physnet.clone()), None),
                Segment::Vxlan { vni } => (NetworkType::Vxlan, None, Some(u64::from(vni.get()))),
            };
            NetworkSpec {
                id: Some(n.id.0),
                name: n.name.clone(),
                kind,
                physical_network,
                segmentation_id,
                external: n.external,
                subnets: n
                    .subnets
                    .iter()
                    .map(|s| {
                        let s = t.subnet(*s);
                        SubnetSpec {
                            id: Some(s.id.0),
                            name: s.name.clone(),
                            cidr: s.cidr.to_string(),
                            gateway_ip: Some(s.gateway),
                            enable_dhcp: Some(s.enable_dhcp),
                            allocation_pools: s.allocation_pools.clone(),
                            host_routes: s.host_routes.clone(),
                            dns_nameservers: s.dns_nameservers.clone(),
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    let routers = t
        .routers
        .iter()
        .map(|r| RouterSpec {
            id: Some(r.id.0),
            name: r.name.clone(),
            distributed: Some(r.distributed),
            interfaces: r.interfaces.iter().map(|s| t.subnet(*s).name.clone()).collect(),
            external_gateway: r.external_gateway.map(|n| t.network(n).name.clone()),
            enable_snat: Some(r.enable_snat),
        })
        .collect();
    let instances = t
        .instances
        .iter()
        .map(|x| {
            let p = t.port(x.port);
            InstanceSpec {
                id: Some(p.id.0),
                name: x.name.clone(),
                host: t.host(x.host).name.clone(),
                network: t.network(x.network).name.clone(),
                ip: Some(p.ip),
                mac: Some(p.mac),
                ..InstanceSpec::default()
            }
        })
        .collect();
    let floating_ips = t
        .floating_ips
        .iter()
        .map(|f| FloatingIpSpec {
            id: Some(f.id.0),
            ip: Some(f.ip),
            instance: f.association.map(|(x, _)| t.instance(x).name.clone()),
            network: Some(t.network(f.network).name.clone()),
        })
        .collect();
    let external_hosts = t
        .external_hosts
        .iter()
        .map(|e| ExternalHostSpec { name: e.name.clone(), network: t.network(e.network).name.clone(), ip: Some(e.ip) })
        .collect();
    let mut ports: Vec<PortSpec> = t
        .unbound_ports
        .iter()
        .map(|p| PortSpec {
            id: Some(p.id.0),
            name: Some(p.name.clone()),
            network: t.network(p.network).name.clone(),
            ip: Some(p.ip),
            mac: Some(p.mac),
            device_owner: (!p.device_owner.is_empty()).then(|| p.device_owner.clone()),
            router: None,
            host: None,
        })
        .collect();
    ports.extend(implicit_pins(t));
    TopologySpec {
        version: Some(1),
        name: Some(t.name.clone()),
        hosts,
        networks,
        routers,
        instances,
        floating_ips,
        external_hosts,
        paths: t.paths.clone(),
        ports,
        underlay: t.underlay.map(|u| u.to_string()),
        ..TopologySpec::default()
    }
}
