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
//! fingerprinting the others. Either way each replanned host's change comes
//! out as a typed [`HostDelta`] (items to add and delete), which an agent
//! applies directly.

use crate::ctx::FlowCache;
use crate::delta::{HostDelta, diff, diff_namespace};
use crate::{HostPlan, Namespace, Plan, Profile, plan_host_shared};
use dvr_model::live::Applied;
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
}

impl Shared {
    /// Compute once per topology (cost: every port once).
    pub fn new(t: &Topology) -> Shared {
        let mut h = DefaultHasher::new();
        for host in &t.hosts {
            (&host.name, host.dvr_mac).hash(&mut h);
        }
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
        Shared { dvr_macs: h.finish(), routers }
    }
}

/// Hash of everything [`plan_host`] reads for host `ix`.
pub fn fingerprint(t: &Topology, ix: HostIx, profile: Profile, shared: &Shared) -> u64 {
    let mut h = DefaultHasher::new();
    let host = t.host(ix);
    (profile.name(), &host.name, host.role, host.dvr_mac, shared.dvr_macs).hash(&mut h);
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

/// What one update did.
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// Hosts whose plan was recomputed (changed inputs or new).
    pub replanned: Vec<String>,
    /// Hosts where only some namespaces were recomputed (the copies of a
    /// router behind a booted or deleted port).
    pub patched: Vec<String>,
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

    /// Bring the plan up to date after a change made in place: replan only
    /// the hosts `applied` names (a change applied by rebuilding falls back
    /// to [`Replanner::update`]).
    pub fn apply(&mut self, t: &Topology, applied: &Applied) -> Update {
        if applied.rebuilt || t.hosts.len() != self.plan.hosts.len() {
            return self.update(t);
        }
        let mut u = Update::default();
        let t1 = Instant::now();
        let mut befores = Vec::with_capacity(applied.hosts.len());
        for name in &applied.hosts {
            let Some(i) = t.host_ix(name) else { continue };
            let hp = plan_host_shared(t, i, self.profile, &self.cache);
            befores.push((i.0, std::mem::replace(&mut self.plan.hosts[i.0], hp)));
            // Its old fingerprint no longer describes the plan held.
            self.prints.remove(name);
            u.replanned.push(name.clone());
        }
        // Copies of the routers named on the other hosts: only their qrouter- namespace.
        let whole: std::collections::HashSet<&str> = applied.hosts.iter().map(String::as_str).collect();
        // Per patched host: its old namespace, or its old plan when replanned whole.
        let mut namespaces: Vec<(usize, Result<Namespace, HostPlan>)> = Vec::new();
        for name in &applied.routers {
            let Some(r) = t.routers.iter().position(|x| &x.name == name).map(RouterIx) else { continue };
            let router = t.router(r);
            for &h in &router.hosts {
                let host = &t.host(h).name;
                if whole.contains(host.as_str()) {
                    continue;
                }
                let cx = crate::ctx::HostCtx::new(t, h, self.profile, &self.cache);
                let ns = if router.distributed { crate::netns::qrouter_dvr(&cx, r) } else { crate::netns::qrouter_legacy(&cx, r) };
                let plan = &mut self.plan.hosts[h.0];
                let old = match plan.namespaces.iter_mut().find(|n| n.name == ns.name) {
                    Some(slot) => Ok(std::mem::replace(slot, ns)),
                    // Not there before: replan the host whole.
                    None => Err(std::mem::replace(plan, plan_host_shared(t, h, self.profile, &self.cache))),
                };
                self.prints.remove(host);
                if !u.patched.contains(host) {
                    u.patched.push(host.clone());
                }
                namespaces.push((h.0, old));
            }
        }
        u.plan_time = t1.elapsed();
        let t2 = Instant::now();
        for (at, before) in &befores {
            let d = diff(Some(before), &self.plan.hosts[*at]);
            if !d.is_empty() {
                u.changed.push(d.host.clone());
                u.deltas.push(d);
            }
        }
        for (at, old) in namespaces {
            let plan = &self.plan.hosts[at];
            let mut d = HostDelta { host: plan.host.clone(), ..HostDelta::default() };
            match old {
                Ok(old) => {
                    let new = plan.namespaces.iter().find(|n| n.name == old.name);
                    diff_namespace(Some(&old), new, &mut d.add, &mut d.delete);
                }
                Err(old) => d = diff(Some(&old), plan),
            }
            if d.is_empty() {
                continue;
            }
            match u.deltas.iter_mut().find(|x| x.host == d.host) {
                Some(x) => {
                    x.add.append(&mut d.add);
                    x.delete.append(&mut d.delete);
                }
                None => {
                    u.changed.push(d.host.clone());
                    u.deltas.push(d);
                }
            }
        }
        u.delta_time = t2.elapsed();
        self.plan.topology = t.name.clone();
        u
    }
}
