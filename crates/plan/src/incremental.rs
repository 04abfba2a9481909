//! Incremental planning: after a change, replan only the hosts whose inputs
//! changed. Each host's plan is a function of a bounded part of the topology
//! (its own ports, VLANs and links; the routers it carries with their
//! subnets' ports, SNAT and gateway ports and floating IPs; its fip and DHCP
//! namespaces; and the list of other hosts' DVR MACs). [`fingerprint`] hashes
//! exactly that part; a host whose fingerprint is unchanged keeps its plan.
//! The property test `incremental_equals_full` checks this against full
//! replans over random change sequences.
//!
//! A change made in place by [`dvr_model::live::Live`] names the hosts it
//! touched ([`Applied`]); [`Replanner::apply`] replans only those, without
//! fingerprinting the others; on the copies of a router that gained or lost
//! an interface, the interface's flows and ports are edited in
//! ([`crate::ifacepatch`]) rather than the bridges replanned. Either way each
//! replanned host's change comes out as a typed [`HostDelta`] (items to add
//! and delete), which an agent applies directly.

use crate::ctx::FlowCache;
use crate::delta::{HostDelta, diff, diff_bridge, diff_namespace, diff_neighbour_lists};
use crate::{Bridge, HostPlan, Namespace, Neighbour, Plan, Profile, plan_host_shared};
use dvr_model::live::{Applied, HostEvent, NsRef};
use dvr_model::*;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

fn port_hash(t: &Topology, p: &Port, h: &mut DefaultHasher) {
    p.id.hash(h);
    p.ip.hash(h);
    p.mac.hash(h);
    t.network(p.network).id.hash(h);
    t.subnet(p.subnet).id.hash(h);
    p.owner.device_owner().hash(h);
    match p.owner {
        PortOwner::Compute { instance } => t.instance(instance).name.hash(h),
        PortOwner::RouterInterfaceDistributed { router }
        | PortOwner::RouterInterface { router }
        | PortOwner::CentralizedSnat { router }
        | PortOwner::RouterGateway { router } => t.router(router).id.hash(h),
        PortOwner::Dhcp | PortOwner::FloatingIpAgentGateway => {}
    }
    p.host.map(|x| &t.host(x).name).hash(h);
}

fn subnet_hash(t: &Topology, s: SubnetIx, h: &mut DefaultHasher) {
    let sub = t.subnet(s);
    (sub.id, &sub.name, sub.cidr, sub.gateway).hash(h);
    network_hash(t, sub.network, h);
}

fn network_hash(t: &Topology, n: NetworkIx, h: &mut DefaultHasher) {
    let net = t.network(n);
    net.id.hash(h);
    net.name.hash(h);
    format!("{:?}", net.segment).hash(h);
    net.external.hash(h);
}

/// Per-topology hashes shared by every host's fingerprint: the DVR MAC list
/// and, per router, everything about it that does not depend on the host.
pub struct Shared {
    dvr_macs: u64,
    routers: Vec<u64>,
    /// Security groups, their rules and every member port's addresses: with
    /// the openvswitch firewall a host's flows depend on remote groups'
    /// members anywhere, so any change to them replans every host.
    security: u64,
}

/// Hash of the host list and the DVR MACs: what the flows per other host's
/// DVR MAC, and so the [`FlowCache`], depend on.
fn dvr_macs_hash(t: &Topology) -> u64 {
    let mut h = DefaultHasher::new();
    for host in &t.hosts {
        (&host.name, host.dvr_mac).hash(&mut h);
    }
    h.finish()
}

impl Shared {
    /// Compute once per topology (cost: every port once).
    pub fn new(t: &Topology) -> Shared {
        let routers = t
            .routers_ix()
            .map(|(r, router)| {
                let mut h = DefaultHasher::new();
                (router.id, &router.name, router.distributed).hash(&mut h);
                router.snat_host.map(|x| &t.host(x).name).hash(&mut h);
                router.external_gateway.map(|n| t.network(n).id).hash(&mut h);
                for &s in &router.interfaces {
                    subnet_hash(t, s, &mut h);
                    for p in t.subnet_ports(s) {
                        port_hash(t, p, &mut h);
                    }
                }
                if let Some(g) = t.gateway_port(r) {
                    port_hash(t, t.port(g), &mut h);
                    subnet_hash(t, t.port(g).subnet, &mut h);
                }
                if !router.distributed {
                    // A legacy router serves every floating IP on its one host.
                    for f in t.floating_ips.iter().filter(|f| matches!(f.association, Some((_, fr)) if fr == r)) {
                        let (x, _) = f.association.expect("filtered");
                        (f.ip, t.port(t.instance(x).port).ip, f.rule_priority).hash(&mut h);
                    }
                }
                h.finish()
            })
            .collect();
        let mut sh = DefaultHasher::new();
        if !t.security.is_noop() {
            format!("{:?}", t.security).hash(&mut sh);
            for ps in &t.security.ports {
                let p = t.port(t.instance(ps.instance).port);
                (p.ip, p.mac, p.id).hash(&mut sh);
            }
        }
        Shared { dvr_macs: dvr_macs_hash(t), routers, security: sh.finish() }
    }
}

/// Hash of everything [`crate::plan_host`] reads for host `ix`.
pub fn fingerprint(t: &Topology, ix: HostIx, profile: Profile, shared: &Shared) -> u64 {
    let mut h = DefaultHasher::new();
    let host = t.host(ix);
    (profile.name(), &host.name, host.role, host.dvr_mac, shared.dvr_macs, shared.security).hash(&mut h);
    for m in &host.bridge_mappings {
        (&m.physnet, &m.bridge, &m.nic).hash(&mut h);
    }
    for (n, v) in &host.local_vlans {
        v.hash(&mut h);
        network_hash(t, *n, &mut h);
    }
    for l in &host.fip_links {
        (t.router(l.router).id, l.pair).hash(&mut h);
    }
    for p in t.host_ports(ix) {
        port_hash(t, p, &mut h);
        if p.owner == PortOwner::Dhcp {
            subnet_hash(t, p.subnet, &mut h);
            t.routers_on_subnet(p.subnet).next().is_some().hash(&mut h);
        }
        if p.owner == PortOwner::FloatingIpAgentGateway {
            subnet_hash(t, p.subnet, &mut h);
        }
    }
    for &r in t.index.host_routers.get(ix.0).into_iter().flatten() {
        (shared.routers[r.0], t.router(r).snat_host == Some(ix)).hash(&mut h);
    }
    // br-tun: this host's endpoint and l2population's view of its VXLAN networks.
    crate::tunnel::fingerprint(t, ix, &mut h);
    // Floating IPs served here: those of instances on this host.
    for p in t.host_ports(ix) {
        if let PortOwner::Compute { instance } = p.owner {
            for f in t.floating_ips.iter().filter(|f| matches!(f.association, Some((x, _)) if x == instance)) {
                let (_, r) = f.association.expect("filtered");
                (f.ip, p.ip, t.router(r).id, f.rule_priority).hash(&mut h);
            }
        }
    }
    h.finish()
}

/// What [`Replanner::apply`] put aside on a patched host: the namespaces it
/// replaced, or the whole old plan when the host had to be replanned whole.
type Replaced = Result<Vec<Option<Namespace>>, HostPlan>;

/// What one update did.
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// Hosts whose plan was recomputed (changed inputs or new).
    pub replanned: Vec<String>,
    /// Hosts where only some namespaces were recomputed (the copies of a
    /// router behind a booted or deleted port).
    pub patched: Vec<String>,
    /// Hosts of `patched` whose bridges took a router interface flow by flow
    /// ([`crate::ifacepatch`]) instead of being replanned.
    pub edited: Vec<String>,
    /// Hosts whose plan actually differs from before.
    pub changed: Vec<String>,
    /// Hosts removed from the deployment.
    pub removed: Vec<String>,
    /// Time spent fingerprinting.
    pub fingerprint_time: Duration,
    /// Time spent replanning.
    pub plan_time: Duration,
    /// Per replanned host whose plan differs (new hosts included): what to
    /// add and delete there.
    pub deltas: Vec<HostDelta>,
    /// Time spent computing the deltas.
    pub delta_time: Duration,
}

/// A plan kept up to date across topology changes.
pub struct Replanner {
    profile: Profile,
    plan: Plan,
    prints: HashMap<String, u64>,
    /// Flows shared across hosts (per other host's DVR MAC), valid while the
    /// list of hosts and their DVR MACs is unchanged (`cache_key`).
    cache: FlowCache,
    cache_key: u64,
}

impl Replanner {
    /// Plan everything once.
    pub fn new(t: &Topology, profile: Profile) -> Replanner {
        let shared = Shared::new(t);
        let cache = FlowCache::default();
        let hosts = t.hosts_ix().map(|(i, _)| plan_host_shared(t, i, profile, &cache)).collect();
        let plan = Plan { topology: t.name.clone(), profile, hosts };
        let prints = t.hosts_ix().map(|(i, h)| (h.name.clone(), fingerprint(t, i, profile, &shared))).collect();
        Replanner { profile, plan, prints, cache, cache_key: shared.dvr_macs }
    }

    /// The current plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Bring the plan up to date with `t` (the topology after a change).
    pub fn update(&mut self, t: &Topology) -> Update {
        let mut u = Update::default();
        let t0 = Instant::now();
        let shared = Shared::new(t);
        let prints: Vec<(HostIx, String, u64)> =
            t.hosts_ix().map(|(i, h)| (i, h.name.clone(), fingerprint(t, i, self.profile, &shared))).collect();
        u.fingerprint_time = t0.elapsed();
        let t1 = Instant::now();
        if shared.dvr_macs != self.cache_key {
            self.cache = FlowCache::default();
            self.cache_key = shared.dvr_macs;
        }
        let mut old: HashMap<String, HostPlan> = std::mem::take(&mut self.plan.hosts).into_iter().map(|h| (h.host.clone(), h)).collect();
        let mut hosts = Vec::with_capacity(prints.len());
        let mut new_prints = HashMap::with_capacity(prints.len());
        let mut befores = Vec::new();
        for (i, name, fp) in prints {
            let keep = self.prints.get(&name) == Some(&fp);
            let hp = match (keep, old.remove(&name)) {
                (true, Some(hp)) => hp,
                (_, before) => {
                    u.replanned.push(name.clone());
                    befores.push((hosts.len(), before));
                    plan_host_shared(t, i, self.profile, &self.cache)
                }
            };
            new_prints.insert(name, fp);
            hosts.push(hp);
        }
        u.plan_time = t1.elapsed();
        let t2 = Instant::now();
        for (at, before) in &befores {
            let d = diff(before.as_ref(), &hosts[*at]);
            if !d.is_empty() {
                u.deltas.push(d);
            }
        }
        u.delta_time = t2.elapsed();
        // Which replanned hosts really changed (outside the timed part).
        for (at, before) in befores {
            let after = &hosts[at];
            if before.is_none_or(|b| serde_json::to_string(&b).ok() != serde_json::to_string(after).ok()) {
                u.changed.push(after.host.clone());
            }
        }
        u.removed = old.into_keys().collect();
        u.removed.sort();
        self.plan.hosts = hosts;
        self.plan.topology = t.name.clone();
        self.prints = new_prints;
        u
    }

    /// Bring the plan up to date after a change made in place: replan the
    /// hosts `applied` names whole; on the hosts where only a router's copy
    /// changed, replan just its namespaces; on the other copies of the routers
    /// behind a booted or deleted port, add or remove just its permanent ARP
    /// entry. A change applied by rebuilding falls back to [`Replanner::update`].
    pub fn apply(&mut self, t: &Topology, applied: &Applied) -> Update {
        if let Some(ev) = &applied.host
            && !applied.rebuilt
        {
            return self.apply_host(t, ev);
        }
        if applied.rebuilt || t.hosts.len() != self.plan.hosts.len() {
            return self.update(t);
        }
        let mut u = Update::default();
        let t1 = Instant::now();
        // Hosts by name: a map when the change names many (a router's copies).
        let named =
            applied.hosts.len() + applied.int_bridges.len() + applied.bridges.len() + applied.namespaces.len() + applied.copies.len();
        let map: Option<HashMap<&str, HostIx>> = (named > 16).then(|| t.hosts_ix().map(|(i, h)| (h.name.as_str(), i)).collect());
        let host_ix = |n: &str| match &map {
            Some(m) => m.get(n).copied(),
            None => t.host_ix(n),
        };
        let mut befores = Vec::with_capacity(applied.hosts.len());
        for name in &applied.hosts {
            let Some(i) = host_ix(name) else { continue };
            let hp = plan_host_shared(t, i, self.profile, &self.cache);
            befores.push((i.0, std::mem::replace(&mut self.plan.hosts[i.0], hp)));
            // Its old fingerprint no longer describes the plan held.
            self.prints.remove(name);
            u.replanned.push(name.clone());
        }
        let whole: std::collections::HashSet<&str> = applied.hosts.iter().map(String::as_str).collect();
        // Hosts where only br-int changes (an instance booted or deleted there).
        let mut bridges: Vec<(usize, Bridge)> = Vec::new();
        for name in &applied.int_bridges {
            let Some(h) = host_ix(name) else { continue };
            if whole.contains(name.as_str()) {
                continue;
            }
            let cx = crate::ctx::HostCtx::new(t, h, self.profile, &self.cache);
            let fresh = crate::ovs::int_bridge(&cx);
            let plan = &mut self.plan.hosts[h.0];
            match plan.bridges.iter_mut().find(|b| b.name == fresh.name) {
                Some(slot) => bridges.push((h.0, std::mem::replace(slot, fresh))),
                None => befores.push((h.0, std::mem::replace(plan, plan_host_shared(t, h, self.profile, &self.cache)))),
            }
            self.mark_patched(&mut u, name);
        }
        let router_ix = |name: &str| t.routers.iter().position(|x| x.name == name).map(RouterIx);
        // Deltas computed as the plan is patched (bridges, ARP entries).
        let mut arp: Vec<HostDelta> = Vec::new();
        // Hosts where every bridge is replanned (a router interface attached
        // or detached: qr- port, local VLANs, DVR flows).
        for name in &applied.bridges {
            let Some(h) = host_ix(name) else { continue };
            if whole.contains(name.as_str()) {
                continue;
            }
            let mut d = HostDelta { host: name.clone(), ..HostDelta::default() };
            if let (Some(ev), Some(ports), Some(vlans)) = (applied.interface, &applied.interface_ports, applied.steady.get(name)) {
                let cx = crate::ctx::HostCtx::new(t, h, self.profile, &self.cache);
                let bridges = &mut self.plan.hosts[h.0].bridges;
                if crate::ifacepatch::patch_bridges(&cx, ev, ports, *vlans, bridges, &mut d) {
                    arp.push(d);
                    u.edited.push(name.clone());
                    self.mark_patched(&mut u, name);
                    continue;
                }
            }
            // The flows per other host's DVR MAC are kept, the rest replanned
            // and compared (the delta comes out here, not below).
            let old = std::mem::take(&mut self.plan.hosts[h.0].bridges);
            self.plan.hosts[h.0].bridges = crate::rebridge::replan_bridges(t, h, self.profile, &self.cache, old, &mut d);
            arp.push(d);
            self.mark_patched(&mut u, name);
        }
        // Per patched host: the namespaces before, or its whole plan when it
        // had to be replanned whole; or the delta itself (ARP entries).
        let mut patches: Vec<(usize, Replaced)> = Vec::new();
        // Namespaces replanned alone, host by host (the set is sorted by host).
        let mut fresh: Vec<Option<Namespace>> = Vec::new();
        let mut it = applied.namespaces.iter().filter(|(h, _)| !whole.contains(h.as_str())).peekable();
        while let Some((host, ns)) = it.next() {
            let Some(h) = host_ix(host) else { continue };
            let cx = crate::ctx::HostCtx::new(t, h, self.profile, &self.cache);
            // The copy of a router that gained or lost an interface: patched for it alone.
            let patched = match (ns, applied.interface) {
                (NsRef::Qrouter(name), Some(ev)) if t.router(ev.router).name == *name => {
                    let ns_name = dvr_model::names::qrouter_ns(&t.router(ev.router).id);
                    let plan = &mut self.plan.hosts[h.0];
                    let mut d = HostDelta { host: host.clone(), ..HostDelta::default() };
                    let ok = plan.namespaces.iter_mut().find(|n| n.name == ns_name).is_some_and(|held| {
                        crate::qrpatch::patch_interface(&cx, ev.router, ev.subnet, ev.added, held, &mut d.add, &mut d.delete)
                    });
                    if ok {
                        arp.push(d);
                    }
                    ok
                }
                _ => false,
            };
            if patched {
                self.mark_patched(&mut u, host);
            } else {
                fresh.push(match ns {
                    NsRef::Qrouter(r) => router_ix(r).map(|r| {
                        if t.router(r).distributed { crate::netns::qrouter_dvr(&cx, r) } else { crate::netns::qrouter_legacy(&cx, r) }
                    }),
                    NsRef::Snat(r) => router_ix(r).map(|r| crate::netns::snat(&cx, r)),
                    NsRef::Qdhcp(n) => t
                        .host_ports(h)
                        .find(|p| p.owner == PortOwner::Dhcp && t.network(p.network).name == *n)
                        .map(|p| crate::netns::qdhcp(&cx, p)),
                });
            }
            if it.peek().is_none_or(|(next, _)| next != host) && !fresh.is_empty() {
                patches.push((h.0, self.replace_namespaces(t, h, std::mem::take(&mut fresh))));
                self.mark_patched(&mut u, host);
            }
        }
        for (host, router) in &applied.copies {
            let (Some(h), Some(r)) = (host_ix(host), router_ix(router)) else { continue };
            if whole.contains(host.as_str()) {
                continue;
            }
            let cx = crate::ctx::HostCtx::new(t, h, self.profile, &self.cache);
            let mut fresh = vec![Some(crate::netns::qrouter_dvr(&cx, r))];
            if let Some(e) = t.router(r).external_gateway {
                fresh.push(crate::netns::fip(&cx, e));
            }
            patches.push((h.0, self.replace_namespaces(t, h, fresh)));
            self.mark_patched(&mut u, host);
        }
        let copies: std::collections::HashSet<(&str, &str)> = applied.copies.iter().map(|(h, r)| (h.as_str(), r.as_str())).collect();
        for name in &applied.routers {
            let Some(r) = router_ix(name) else { continue };
            let router = t.router(r);
            let mut entry: Option<ArpSwap> = None;
            // The qr- device of the port's subnet and the namespace, the same on every copy.
            let site = applied
                .port
                .and_then(|ev| t.router_interface(r, ev.subnet))
                .map(|p| (t.port(p).device_name(), dvr_model::names::qrouter_ns(&router.id)));
            for &h in &router.hosts {
                let host = &t.host(h).name;
                if whole.contains(host.as_str()) || copies.contains(&(host.as_str(), name.as_str())) {
                    continue;
                }
                self.mark_patched(&mut u, host);
                if router.distributed
                    && let (Some(ev), Some(site)) = (applied.port, &site)
                    && let Some(d) = self.patch_arp(t, h, site, ev, &mut entry)
                {
                    arp.push(d);
                    continue;
                }
                // No quick patch: replan the router's namespace on this host.
                let cx = crate::ctx::HostCtx::new(t, h, self.profile, &self.cache);
                let ns = if router.distributed { crate::netns::qrouter_dvr(&cx, r) } else { crate::netns::qrouter_legacy(&cx, r) };
                patches.push((h.0, self.replace_namespaces(t, h, vec![Some(ns)])));
            }
        }
        u.plan_time = t1.elapsed();
        let t2 = Instant::now();
        for (at, before) in &befores {
            let d = diff(Some(before), &self.plan.hosts[*at]);
            if !d.is_empty() {
                u.deltas.push(d);
            }
        }
        for (at, old) in patches {
            let plan = &self.plan.hosts[at];
            let d = match old {
                Ok(old) => {
                    let mut d = HostDelta { host: plan.host.clone(), ..HostDelta::default() };
                    for o in old.iter().flatten() {
                        let new = plan.namespaces.iter().find(|n| n.name == o.name);
                        diff_namespace(Some(o), new, &mut d.add, &mut d.delete);
                    }
                    d
                }
                Err(old) => diff(Some(&old), plan),
            };
            u.deltas.push(d);
        }
        for (at, old) in bridges {
            let plan = &self.plan.hosts[at];
            let mut d = HostDelta { host: plan.host.clone(), ..HostDelta::default() };
            diff_bridge(Some(&old), plan.bridges.iter().find(|b| b.name == old.name), &mut d.add, &mut d.delete);
            u.deltas.push(d);
        }
        u.deltas.extend(arp);
        // One delta per host, in the order hosts were first touched.
        let mut merged: Vec<HostDelta> = Vec::with_capacity(u.deltas.len());
        for mut d in std::mem::take(&mut u.deltas) {
            match merged.iter_mut().find(|x| x.host == d.host) {
                Some(x) => {
                    x.add.append(&mut d.add);
                    x.delete.append(&mut d.delete);
                }
                None => merged.push(d),
            }
        }
        merged.retain(|d| !d.is_empty());
        u.changed = merged.iter().map(|d| d.host.clone()).collect();
        u.deltas = merged;
        u.delta_time = t2.elapsed();
        self.plan.topology = t.name.clone();
        u
    }

    /// A host joined (planned whole; every other host gains its DVR MAC's
    /// flows) or left (every other host loses them), flow by flow
    /// ([`crate::hostpatch`]).
    fn apply_host(&mut self, t: &Topology, ev: &HostEvent) -> Update {
        let mut u = Update::default();
        let t1 = Instant::now();
        let mut befores = Vec::new();
        if ev.added {
            let has_mac: Vec<bool> = t.hosts[..ev.at.0].iter().map(|h| h.dvr_mac.is_some()).collect();
            let families = self.cache.host_joined(ev.dvr_mac);
            for h in 0..ev.at.0 {
                let plan = &mut self.plan.hosts[h];
                let mut d = HostDelta { host: plan.host.clone(), ..HostDelta::default() };
                if crate::hostpatch::join(plan, h, &has_mac, &families, &mut d) {
                    u.deltas.push(d);
                    u.patched.push(plan.host.clone());
                } else {
                    befores.push((h, std::mem::replace(plan, plan_host_shared(t, HostIx(h), self.profile, &self.cache))));
                    u.replanned.push(t.hosts[h].name.clone());
                }
            }
            let new = plan_host_shared(t, ev.at, self.profile, &self.cache);
            u.deltas.push(diff(None, &new));
            self.plan.hosts.push(new);
            u.replanned.push(ev.name.clone());
        } else {
            let families = self.cache.host_left(ev.at.0);
            self.plan.hosts.remove(ev.at.0);
            for plan in &mut self.plan.hosts {
                let mut d = HostDelta { host: plan.host.clone(), ..HostDelta::default() };
                crate::hostpatch::leave(plan, &families, &mut d);
                u.patched.push(plan.host.clone());
                u.deltas.push(d);
            }
            u.removed.push(ev.name.clone());
        }
        for (at, before) in befores {
            u.deltas.push(diff(Some(&before), &self.plan.hosts[at]));
        }
        u.deltas.retain(|d| !d.is_empty());
        u.changed = u.deltas.iter().map(|d| d.host.clone()).collect();
        u.plan_time = t1.elapsed();
        // Every fingerprint covers the DVR MAC list: none describes its plan now.
        self.prints.clear();
        self.cache_key = dvr_macs_hash(t);
        self.plan.topology = t.name.clone();
        u
    }

    fn mark_patched(&mut self, u: &mut Update, host: &str) {
        self.prints.remove(host);
        if !u.patched.iter().any(|h| h == host) {
            u.patched.push(host.to_string());
        }
    }

    /// Put freshly planned namespaces in place of the held ones of the same
    /// name (`None`: a namespace that does not exist, e.g. no fip- namespace).
    /// Returns the ones replaced; when one is new or gone, the host is
    /// replanned whole and its old plan returned instead.
    fn replace_namespaces(&mut self, t: &Topology, h: HostIx, fresh: Vec<Option<Namespace>>) -> Replaced {
        let plan = &mut self.plan.hosts[h.0];
        let fits = fresh.iter().flatten().all(|n| plan.namespaces.iter().any(|o| o.name == n.name)) && fresh.iter().all(Option::is_some);
        if !fits {
            return Err(std::mem::replace(plan, plan_host_shared(t, h, self.profile, &self.cache)));
        }
        Ok(fresh
            .into_iter()
            .flatten()
            .map(|n| {
                let slot = plan.namespaces.iter_mut().find(|o| o.name == n.name).expect("checked");
                Some(std::mem::replace(slot, n))
            })
            .collect())
    }

    /// Add or remove the permanent ARP entry of a booted or deleted port in
    /// the `qrouter-` namespace of distributed router `r` on host `h`, where
    /// a full replan of that namespace would put it: the interface's ARP list
    /// is one block, the same on every copy, so the new list (built on the
    /// first copy and shared by all) takes the old one's place. The copies
    /// held the same old block too, so the delta is worked out once.
    /// `None` when the namespace does not look as expected (then it is replanned).
    fn patch_arp(
        &mut self,
        t: &Topology,
        h: HostIx,
        (dev, ns_name): &(String, String),
        ev: dvr_model::live::PortEvent,
        swap: &mut Option<ArpSwap>,
    ) -> Option<HostDelta> {
        let swap = match swap {
            Some(s) => s,
            None => {
                let cx = crate::ctx::HostCtx::new(t, h, self.profile, &self.cache);
                swap.insert(ArpSwap { block: crate::netns::subnet_arp(&cx, ev.subnet, dev), known: None })
            }
        };
        let plan = &mut self.plan.hosts[h.0];
        let ns = plan.namespaces.iter_mut().find(|n| &n.name == ns_name)?;
        let old = ns.neighbours.replace_run(dev, swap.block.clone())?;
        let mut d = HostDelta { host: plan.host.clone(), ..HostDelta::default() };
        let was = old.blocks().next().and_then(|(_, p)| p);
        match &swap.known {
            Some((held, add, delete)) if was.is_some() && was == held.blocks().next().and_then(|(_, p)| p) => {
                d.add.clone_from(add);
                d.delete.clone_from(delete);
            }
            _ => {
                let mut new = crate::Neighbours::new();
                new.push_shared(swap.block.clone());
                diff_neighbour_lists(ns_name, &old, &new, &mut d.add, &mut d.delete);
                if was.is_some() {
                    swap.known = Some((old, d.add.clone(), d.delete.clone()));
                }
            }
        }
        Some(d)
    }
}

/// A booted or deleted port's subnet ARP list, as every copy of the router
/// gets it, and the delta it makes on a copy that held a given old shared
/// list (kept here, so its pointer identifies it for the whole update).
struct ArpSwap {
    block: std::sync::Arc<[Neighbour]>,
    known: Option<(crate::Neighbours, Vec<crate::delta::Item>, Vec<crate::delta::Item>)>,
}
