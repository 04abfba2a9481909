//! Incremental planning: after a change, replan only the hosts whose inputs
//! changed. Each host's plan is a function of a bounded part of the topology
//! (its own ports, VLANs and links; the routers it carries with their
//! subnets' ports, SNAT and gateway ports and floating IPs; its fip and DHCP
//! namespaces; and the list of other hosts' DVR MACs). [`fingerprint`] hashes
//! exactly that part; a host whose fingerprint is unchanged keeps its plan.
//! The property test `incremental_equals_full` checks this against full
//! replans over random change sequences.

use crate::ctx::FlowCache;
use crate::{HostPlan, Plan, Profile, plan_host_shared};
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
        let mut sh = DefaultHasher::new();
        if !t.security.is_noop() {
            format!("{:?}", t.security).hash(&mut sh);
            for ps in &t.security.ports {
                let p = t.port(t.instance(ps.instance).port);
                (p.ip, p.mac, p.id).hash(&mut sh);
            }
        }
        Shared { dvr_macs: h.finish(), routers, security: sh.finish() }
    }
}

/// Hash of everything [`plan_host`] reads for host `ix`.
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
    /// Hosts whose plan actually differs from before.
    pub changed: Vec<String>,
    /// Hosts removed from the deployment.
    pub removed: Vec<String>,
    /// Time spent fingerprinting.
    pub fingerprint_time: Duration,
    /// Time spent replanning.
    pub plan_time: Duration,
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
}
