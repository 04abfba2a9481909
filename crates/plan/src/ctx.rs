//! What every builder of one host needs to know, computed once: which router
//! copies, ports and networks live on the host.

use crate::Profile;
use crate::model::Neighbour;
use dvr_model::*;
use dvr_openflow::{Action, Flow, Match};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// What is identical on many hosts, built once and shared: the flows per
/// other host's DVR MAC and physical bridge (the hosts² part of a plan), the
/// reasons of permanent ARP entries (one per port), and each router
/// interface's whole permanent-ARP list (repeated on every host with a copy
/// of the router). The flows and reasons depend only on what keys them, so
/// they stay right across topology changes as long as the DVR MACs do; an
/// ARP list is checked against the subnet's ports each time it is handed
/// out ([`FlowCache::arp_block`]), so it never outlives a port change;
/// unless the cache is made for one fixed topology
/// ([`FlowCache::for_fixed_topology`]), where nothing can change.
#[derive(Default)]
pub struct FlowCache {
    fixed: bool,
    flows: RefCell<HashMap<FlowKey, RemoteMacRow>>,
    arp_why: RefCell<rustc_hash::FxHashMap<std::net::Ipv4Addr, Arc<str>>>,
    arp: RefCell<rustc_hash::FxHashMap<SubnetIx, Vec<ArpBlock>>>,
}

/// A router interface's permanent-ARP list, by its qr- device.
type ArpBlock = (Box<str>, Arc<[Neighbour]>);

/// (table, priority, port) of a flow made once per other host's DVR MAC.
pub type FlowKey = (u8, u16, String);

/// Makes the flow of one family for a DVR MAC.
type MakeFlow = Box<dyn Fn(MacAddr) -> Arc<Flow> + Send + Sync>;

/// One family of flows per other host's DVR MAC: how to make one, and the
/// flows made so far, by host position.
struct RemoteMacRow {
    make: MakeFlow,
    flows: Vec<Option<Arc<Flow>>>,
}

/// A family's flows around a host that joined or left ([`FlowCache::host_joined`],
/// [`FlowCache::host_left`]).
pub struct FamilyChange {
    /// (table, priority, port) of the family.
    pub key: FlowKey,
    /// Its flows by host position before the change, as far as made.
    pub before: Vec<Option<Arc<Flow>>>,
    /// The joining host's flow (built now), or the leaving host's (if made).
    pub flow: Option<Arc<Flow>>,
}

impl FlowCache {
    /// A cache that lives no longer than one borrow of one topology (one
    /// [`crate::plan`] call, one streamed plan): what it holds is handed out
    /// again without checking it against the topology. The ARP lists of a
    /// 1,000-host plan are 1.7 million entries; checking them costs a tenth
    /// of the plan. A cache kept across changes (the incremental planner's)
    /// is a [`FlowCache::default`], which checks.
    pub fn for_fixed_topology() -> FlowCache {
        FlowCache { fixed: true, ..FlowCache::default() }
    }

    /// The shared text for `ip`, made by `make` the first time.
    pub fn arp_why(&self, ip: std::net::Ipv4Addr, make: impl FnOnce() -> String) -> Arc<str> {
        self.arp_why.borrow_mut().entry(ip).or_insert_with(|| make().into()).clone()
    }

    /// A host joined at the end of the host list with DVR MAC `mac`: every
    /// family gains its flow, made now (every host that carries the family
    /// needs it). Returns each family as it was and the new flow.
    pub fn host_joined(&self, mac: MacAddr) -> Vec<FamilyChange> {
        let mut rows = self.flows.borrow_mut();
        rows.iter_mut()
            .map(|(key, row)| {
                let before = row.flows.clone();
                let flow = (row.make)(mac);
                row.flows.push(Some(flow.clone()));
                FamilyChange { key: key.clone(), before, flow: Some(flow) }
            })
            .collect()
    }

    /// The host at position `at` left: every family forgets its flow.
    /// Returns each family as it was and the flow gone.
    pub fn host_left(&self, at: usize) -> Vec<FamilyChange> {
        let mut rows = self.flows.borrow_mut();
        rows.iter_mut()
            .map(|(key, row)| {
                let before = row.flows.clone();
                let flow = if at < row.flows.len() { row.flows.remove(at) } else { None };
                FamilyChange { key: key.clone(), before, flow }
            })
            .collect()
    }

    /// The permanent-ARP list of subnet `s` on device `dev`, shared by every
    /// host: the one held if `valid` says it still describes the subnet's
    /// ports, else the one `make` builds (then held in its place). Checking
    /// costs a comparison per port, building an allocation or more per port.
    pub fn arp_block(
        &self,
        s: SubnetIx,
        dev: &str,
        valid: impl FnOnce(&[Neighbour]) -> bool,
        make: impl FnOnce() -> Vec<Neighbour>,
    ) -> Arc<[Neighbour]> {
        let held = self.arp.borrow().get(&s).and_then(|v| v.iter().find(|(d, _)| &**d == dev).map(|(_, b)| b.clone()));
        if let Some(b) = held
            && (self.fixed || valid(&b))
        {
            return b;
        }
        let fresh: Arc<[Neighbour]> = make().into();
        let mut arp = self.arp.borrow_mut();
        let row = arp.entry(s).or_default();
        match row.iter_mut().find(|(d, _)| &**d == dev) {
            Some(slot) => slot.1 = fresh.clone(),
            None => row.push((dev.into(), fresh.clone())),
        }
        fresh
    }
}

/// The view of the topology from one host.
pub struct HostCtx<'a> {
    /// The deployment.
    pub topo: &'a Topology,
    /// This host.
    pub ix: HostIx,
    /// This host, resolved.
    pub host: &'a Host,
    /// Behaviour profile.
    pub profile: Profile,
    /// Flows shared between hosts.
    pub cache: &'a FlowCache,
    /// When set, [`HostCtx::per_remote_mac`] builds nothing and records the
    /// (table, priority) it left out: the incremental planner keeps those
    /// flows (one per other host: the hosts² part) from the host's old plan,
    /// which a change of ports, routers or VLANs leaves as they were.
    pub skipped: Option<RefCell<Vec<(u8, u16)>>>,
}

/// A router interface (`qr-`) present on this host.
pub struct QrOnHost<'a> {
    /// Router.
    pub router: RouterIx,
    /// Interface port.
    pub port: &'a Port,
    /// Subnet.
    pub subnet: &'a Subnet,
    /// Subnet index.
    pub subnet_ix: SubnetIx,
    /// Local VLAN of its network here.
    pub lvid: VlanId,
}

impl<'a> HostCtx<'a> {
    /// Build the view.
    pub fn new(topo: &'a Topology, ix: HostIx, profile: Profile, cache: &'a FlowCache) -> Self {
        HostCtx { topo, ix, host: topo.host(ix), profile, cache, skipped: None }
    }

    /// The view, leaving the flows per other host's DVR MAC out ([`HostCtx::skipped`]).
    pub fn without_remote_macs(topo: &'a Topology, ix: HostIx, profile: Profile, cache: &'a FlowCache) -> Self {
        HostCtx { skipped: Some(RefCell::new(Vec::new())), ..HostCtx::new(topo, ix, profile, cache) }
    }

    /// The (table, priority) pairs left out since the last call, sorted and deduplicated.
    pub fn take_skipped(&self) -> Vec<(u8, u16)> {
        let mut v = self.skipped.as_ref().map(|s| std::mem::take(&mut *s.borrow_mut())).unwrap_or_default();
        v.sort();
        v.dedup();
        v
    }

    /// One flow per other host's DVR MAC for (table, priority, port), each
    /// built once per plan and shared by every host that needs it.
    /// `make` is kept with the family, so a host that joins later gets its
    /// flow on every host without replanning them ([`FlowCache::host_joined`]).
    pub fn per_remote_mac(
        &self,
        table: u8,
        priority: u16,
        port: &str,
        make: impl Fn(MacAddr) -> Arc<Flow> + Send + Sync + 'static,
    ) -> Vec<Arc<Flow>> {
        if let Some(s) = &self.skipped {
            s.borrow_mut().push((table, priority));
            return Vec::new();
        }
        let mut cache = self.cache.flows.borrow_mut();
        let row = cache
            .entry((table, priority, port.to_string()))
            .or_insert_with(|| RemoteMacRow { make: Box::new(make), flows: vec![None; self.topo.hosts.len()] });
        let mut out = Vec::with_capacity(self.topo.hosts.len());
        for (i, h) in self.topo.hosts.iter().enumerate() {
            if i == self.ix.0 {
                continue;
            }
            if let Some(mac) = h.dvr_mac {
                out.push(row.flows[i].get_or_insert_with(|| (row.make)(mac)).clone());
            }
        }
        out
    }

    /// The host's own DVR MAC (dataplane hosts always have one).
    pub fn dvr_mac(&self) -> MacAddr {
        self.host.dvr_mac.expect("dataplane hosts have a DVR MAC")
    }

    /// Routers with a copy on this host.
    pub fn routers(&self) -> Vec<RouterIx> {
        self.topo.index.host_routers.get(self.ix.0).cloned().unwrap_or_default()
    }

    /// Whether this host runs the router's SNAT (or the whole legacy router).
    pub fn is_snat_host(&self, r: RouterIx) -> bool {
        self.topo.router(r).snat_host == Some(self.ix)
    }

    /// Distributed router interfaces on this host (one per router subnet).
    pub fn dvr_interfaces(&self) -> Vec<QrOnHost<'a>> {
        let mut out = Vec::new();
        for r in self.routers() {
            let router = self.topo.router(r);
            if !router.distributed {
                continue;
            }
            for &s in &router.interfaces {
                let port = self.topo.port(self.topo.router_interface(r, s).expect("every interface has a port"));
                let subnet = self.topo.subnet(s);
                let lvid = self.host.local_vlan(subnet.network).expect("router networks have a local VLAN");
                out.push(QrOnHost { router: r, port, subnet, subnet_ix: s, lvid });
            }
        }
        out
    }

    /// Ports bound to this host (VMs, DHCP, sg-, qg-, fg-, legacy qr-).
    pub fn bound_ports(&self) -> impl Iterator<Item = &'a Port> + '_ {
        self.topo.host_ports(self.ix)
    }

    /// Local VLAN of a network here.
    pub fn lvid(&self, n: NetworkIx) -> VlanId {
        self.host.local_vlan(n).expect("networks with ports here have a local VLAN")
    }

    /// The mapping carrying a network, if it is a physical network this host maps.
    pub fn mapping_of(&self, n: NetworkIx) -> Option<&'a BridgeMapping> {
        self.topo.network(n).segment.physnet().and_then(|p| self.host.mapping(p))
    }

    /// The `int-<bridge>` patch port name on br-int.
    pub fn int_patch(&self, m: &BridgeMapping) -> String {
        patch_name("int-", &m.bridge)
    }

    /// The `phy-<bridge>` patch port name on the physical bridge.
    pub fn phy_patch(&self, m: &BridgeMapping) -> String {
        patch_name("phy-", &m.bridge)
    }

    /// `resubmit`/`goto` to a table, per profile.
    pub fn next(&self, t: crate::tables::TableDecl) -> Action {
        self.profile.next(t)
    }
}

/// Neutron's patch port name, hashed when longer than 15 characters.
pub fn patch_name(prefix: &str, bridge: &str) -> String {
    dvr_model::names::interface_name(prefix, bridge, |s| sha1_smol::Sha1::from(s).digest().to_string())
}

/// A flow with provenance: `builder` is the source location of the call that
/// made it, recorded by `#[track_caller]` (never a hand-typed label), and the
/// reason says why it exists; the stage is the table's declared name.
#[track_caller]
pub fn flow(
    t: crate::tables::TableDecl,
    priority: u16,
    matches: Match,
    actions: Vec<Action>,
    reason: impl Into<std::borrow::Cow<'static, str>>,
) -> Arc<Flow> {
    Arc::new(Flow {
        table: t.id,
        priority,
        matches,
        actions,
        builder: std::borrow::Cow::Borrowed(crate::model::call_site(std::panic::Location::caller())),
        reason: reason.into(),
        sg_rule: None,
    })
}
