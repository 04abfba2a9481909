//! Exact all-pairs reachability by equivalence classes.
//!
//! Tracing every ordered pair of 1,000 instances is a million request/reply
//! traces. Most of them repeat each other: the twin decides a packet's path
//! by the source's and destination's host *kind* (role and bridge mappings),
//! their networks (which VLAN, which subnet, which router), whether they
//! have a floating IP, their security groups, and whether they share a
//! host — never by which of twenty look-alike instances sent it. So each
//! instance gets an [`EndpointClass`] of exactly those facts, each ordered
//! pair the [`PairKey`] (source class, destination class, same host), and
//! one representative pair per key is traced; every other pair of the key
//! has its outcome.
//!
//! The key is the claim; `tests/allpairs.rs` checks it against the brute
//! force on 100-instance deployments, without and with security groups
//! (and that a key missing the destination's network, or the security
//! class, is caught). A new decision input goes into [`EndpointClass`],
//! which makes classes finer, never wrong.

use crate::trace::{Disposition, TraceRequest, reach};
use crate::{L4, World};
use dvr_model::security::{FirewallDriver, Remote, SecurityGroupIx};
use dvr_model::{HostIx, InstanceIx, MacAddr, NetworkIx, Role, Topology};
use ipnet::Ipv4Net;
use rustc_hash::FxHashMap;
use std::net::Ipv4Addr;

/// What a host contributes to a packet's decisions: its role (which agents
/// and namespaces it runs) and its bridge mappings (which physical networks
/// it reaches, through which bridges). Hosts with the same class are planned
/// alike, up to names and MACs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostClass {
    /// Role.
    pub role: Role,
    /// (physical network, bridge) of each mapping, in file order.
    pub mappings: Vec<(String, String)>,
}

/// What the firewall decides by about one instance's port (all empty with
/// the `noop` driver): its own rules (port security, groups, address
/// pairs) and how the *other* ports' rules see its address — which rule
/// prefixes contain it and which groups' address sets (members' addresses
/// and address pairs, the remote-group conjunctions) contain it. Two ports
/// alike in all of these are filtered alike, whatever their addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecurityClass {
    /// Neutron's `port_security_enabled` (filtering and anti-spoofing).
    pub enabled: bool,
    /// The port's groups, sorted.
    pub groups: Vec<SecurityGroupIx>,
    /// The port's allowed address pairs (what else it may send from).
    pub address_pairs: Vec<(Ipv4Net, MacAddr)>,
    /// The distinct rule prefixes (of any group, `/0` aside) holding its address.
    pub in_prefixes: Vec<Ipv4Net>,
    /// The groups whose address set holds its address.
    pub in_groups: Vec<SecurityGroupIx>,
}

impl SecurityClass {
    /// The security class of every instance, by [`InstanceIx`].
    pub fn all(topo: &Topology) -> Vec<SecurityClass> {
        let sec = &topo.security;
        if sec.driver == FirewallDriver::Noop {
            return vec![SecurityClass::default(); topo.instances.len()];
        }
        let mut prefixes: Vec<Ipv4Net> = sec
            .groups
            .iter()
            .flat_map(|g| &g.rules)
            .filter_map(|r| match r.remote {
                Remote::Prefix(p) if p.prefix_len() > 0 => Some(p),
                _ => None,
            })
            .collect();
        prefixes.sort();
        prefixes.dedup();
        // Address pairs put other addresses into their port's groups' sets.
        let pairs: Vec<(Ipv4Net, &[SecurityGroupIx])> =
            sec.ports.iter().flat_map(|p| p.allowed_address_pairs.iter().map(|a| (a.ip, p.groups.as_slice()))).collect();
        (0..topo.instances.len())
            .map(|i| {
                let ip = topo.port(topo.instances[i].port).ip;
                let Some(p) = sec.port(InstanceIx(i)) else { return SecurityClass::default() };
                let mut groups = p.groups.clone();
                groups.sort();
                let mut in_groups = groups.clone();
                in_groups.extend(pairs.iter().filter(|(net, _)| net.contains(&ip)).flat_map(|(_, gs)| gs.iter().copied()));
                in_groups.sort();
                in_groups.dedup();
                let mut address_pairs: Vec<_> = p.allowed_address_pairs.iter().map(|a| (a.ip, a.mac)).collect();
                address_pairs.sort();
                SecurityClass {
                    enabled: p.port_security_enabled,
                    groups,
                    address_pairs,
                    in_prefixes: prefixes.iter().filter(|n| n.contains(&ip)).copied().collect(),
                    in_groups,
                }
            })
            .collect()
    }
}

/// Everything about one instance that its packets' decisions depend on,
/// apart from its identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointClass {
    /// Its host's kind.
    pub host: HostClass,
    /// Its network (VLAN, subnet, router, DHCP routes).
    pub network: NetworkIx,
    /// Whether a floating IP is associated with it.
    pub floating_ip: bool,
    /// Its security groups.
    pub security: SecurityClass,
}

impl EndpointClass {
    /// The class of instance `x` (one instance; [`Classes::new`] computes
    /// the security classes of all at once).
    pub fn of(topo: &Topology, x: InstanceIx) -> EndpointClass {
        let security = SecurityClass::all(topo).swap_remove(x.0);
        EndpointClass::with_security(topo, x, security)
    }

    /// The class of instance `x` with its security class given.
    pub fn with_security(topo: &Topology, x: InstanceIx, security: SecurityClass) -> EndpointClass {
        let inst = topo.instance(x);
        let host = topo.host(inst.host);
        EndpointClass {
            host: HostClass {
                role: host.role,
                mappings: host.bridge_mappings.iter().map(|m| (m.physnet.clone(), m.bridge.clone())).collect(),
            },
            network: inst.network,
            floating_ip: topo.floating_ips.iter().any(|f| f.association.is_some_and(|(i, _)| i == x)),
            security,
        }
    }
}

/// The class of an ordered pair: the two endpoint classes (interned) and
/// whether both instances are on one host (then the packet never leaves it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PairKey {
    /// Source class (index into [`Classes::classes`]).
    pub src: u32,
    /// Destination class.
    pub dst: u32,
    /// Same host.
    pub same_host: bool,
}

/// How one ordered pair ended, free of the pair's names: the request's and
/// the reply's disposition, and whether the request reached the instance it
/// was sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The request.
    pub request: Disposition,
    /// The reply, when one was sent.
    pub reply: Option<Disposition>,
    /// The request was delivered to the destination instance itself.
    pub to_target: bool,
}

impl Outcome {
    /// Delivered both ways, to the right instance.
    pub fn reached(&self) -> bool {
        self.to_target && self.request == Disposition::Delivered && self.reply == Some(Disposition::Delivered)
    }
}

/// The instances of a topology grouped into endpoint classes.
#[derive(Debug, Clone)]
pub struct Classes {
    /// The distinct endpoint classes.
    pub classes: Vec<EndpointClass>,
    /// Class of each instance (by [`InstanceIx`]).
    pub of: Vec<u32>,
    /// Host of each instance.
    host: Vec<HostIx>,
}

impl Classes {
    /// The exact classes ([`EndpointClass::of`]).
    pub fn new(topo: &Topology) -> Classes {
        let mut security = SecurityClass::all(topo);
        Classes::with(topo, |x| EndpointClass::with_security(topo, x, std::mem::take(&mut security[x.0])))
    }

    /// Classes by any key (tests use a deliberately coarse one, to show the
    /// exactness check catches it).
    pub fn with(topo: &Topology, mut class: impl FnMut(InstanceIx) -> EndpointClass) -> Classes {
        let mut ids: FxHashMap<EndpointClass, u32> = FxHashMap::default();
        let mut classes = Vec::new();
        let mut of = Vec::with_capacity(topo.instances.len());
        for i in 0..topo.instances.len() {
            let c = class(InstanceIx(i));
            let id = *ids.entry(c.clone()).or_insert_with(|| {
                classes.push(c);
                u32::try_from(classes.len() - 1).expect("fewer than 2^32 classes")
            });
            of.push(id);
        }
        Classes { classes, of, host: topo.instances.iter().map(|x| x.host).collect() }
    }

    /// The key of the ordered pair (a, b).
    pub fn key(&self, a: usize, b: usize) -> PairKey {
        PairKey { src: self.of[a], dst: self.of[b], same_host: self.host[a] == self.host[b] }
    }

    /// One representative pair per key, with how many ordered pairs the key
    /// stands for, in a deterministic order.
    pub fn representatives(&self) -> Vec<(PairKey, (usize, usize), u64)> {
        // Members of each class by host: the same-host representative of
        // (ca, cb) needs a host holding both; the cross-host one two hosts.
        let n = self.classes.len();
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, &c) in self.of.iter().enumerate() {
            members[c as usize].push(i);
        }
        let mut by_host: Vec<FxHashMap<HostIx, Vec<usize>>> = vec![FxHashMap::default(); n];
        for (c, ms) in members.iter().enumerate() {
            for &i in ms {
                by_host[c].entry(self.host[i]).or_default().push(i);
            }
        }
        let mut hosts_sorted: Vec<Vec<(HostIx, Vec<usize>)>> = by_host
            .into_iter()
            .map(|m| {
                let mut v: Vec<_> = m.into_iter().collect();
                v.sort_by_key(|(h, _)| *h);
                v
            })
            .collect();
        for v in &mut hosts_sorted {
            v.shrink_to_fit();
        }
        let mut out = Vec::new();
        for ca in 0..n {
            for cb in 0..n {
                let (ha, hb) = (&hosts_sorted[ca], &hosts_sorted[cb]);
                // Same host: walk both host lists (sorted) together.
                let mut same: u64 = 0;
                let mut same_rep = None;
                let (mut i, mut j) = (0, 0);
                while i < ha.len() && j < hb.len() {
                    match ha[i].0.cmp(&hb[j].0) {
                        std::cmp::Ordering::Less => i += 1,
                        std::cmp::Ordering::Greater => j += 1,
                        std::cmp::Ordering::Equal => {
                            let (xa, xb) = (&ha[i].1, &hb[j].1);
                            let pairs = (xa.len() * xb.len()) as u64 - if ca == cb { xa.len() as u64 } else { 0 };
                            if pairs > 0 && same_rep.is_none() {
                                same_rep = xa.iter().find_map(|&a| xb.iter().find(|&&b| b != a).map(|&b| (a, b)));
                            }
                            same += pairs;
                            i += 1;
                            j += 1;
                        }
                    }
                }
                let total = (members[ca].len() * members[cb].len()) as u64 - if ca == cb { members[ca].len() as u64 } else { 0 };
                let cross = total - same;
                let key = |same_host| PairKey { src: ca as u32, dst: cb as u32, same_host };
                if let Some(r) = same_rep {
                    out.push((key(true), r, same));
                }
                if cross > 0 {
                    // Two members on different hosts: the first host of each
                    // class, or the second host of one of them.
                    let rep = match (ha.first(), hb.first()) {
                        (Some((h1, a)), Some((h2, b))) if h1 != h2 => (a[0], b[0]),
                        (Some((h1, a)), _) if hb.iter().any(|(h, _)| h != h1) => {
                            (a[0], hb.iter().find(|(h, _)| h != h1).map(|(_, b)| b[0]).expect("checked"))
                        }
                        (_, Some((h2, b))) => (ha.iter().find(|(h, _)| h != h2).map(|(_, a)| a[0]).expect("cross pairs exist"), b[0]),
                        _ => unreachable!("cross pairs exist"),
                    };
                    out.push((key(false), rep, cross));
                }
            }
        }
        out
    }
}

/// All ordered pairs' outcomes, by class.
#[derive(Debug, Clone)]
pub struct Matrix {
    /// The classes.
    pub classes: Classes,
    /// Outcome of each pair key.
    pub outcomes: FxHashMap<PairKey, Outcome>,
    /// Ordered pairs (n × (n − 1)).
    pub pairs: u64,
    /// Ordered pairs that reached each other both ways.
    pub reachable: u64,
    /// Pairs traced (one per key).
    pub traced: usize,
}

impl Matrix {
    /// The outcome of the ordered pair of instances (a, b), a ≠ b.
    pub fn get(&self, a: usize, b: usize) -> Option<Outcome> {
        self.outcomes.get(&self.classes.key(a, b)).copied()
    }
}

/// The request of instance `a` to instance `b`'s address.
fn request(topo: &Topology, a: usize, b: usize) -> (TraceRequest, String) {
    let (xa, xb) = (&topo.instances[a], &topo.instances[b]);
    let to: Ipv4Addr = topo.port(xb.port).ip;
    (TraceRequest { from: xa.name.clone(), to, l4: L4::Icmp { reply: false, id: 1 }, spoof_ip: None, spoof_mac: None }, xb.name.clone())
}

/// Trace `a` → `b` (request and reply, verdicts only) on `w`.
pub fn outcome(topo: &Topology, w: &mut World, a: usize, b: usize) -> Outcome {
    let (req, target) = request(topo, a, b);
    match reach(w, &req) {
        Ok(t) => Outcome {
            request: t.disposition(),
            reply: t.reply.as_ref().map(|r| r.disposition()),
            to_target: t.verdict.delivered_to() == Some(target.as_str()),
        },
        Err(_) => Outcome { request: Disposition::Dropped, reply: None, to_target: false },
    }
}

/// Run `jobs` on `threads` clones of `world` (round robin), in order.
fn parallel<T: Send>(world: &World, threads: usize, jobs: &[(usize, usize)], f: impl Fn(&mut World, usize, usize) -> T + Sync) -> Vec<T> {
    let threads = threads.clamp(1, jobs.len().max(1));
    let mut parts: Vec<Vec<(usize, T)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let mut w = world.clone();
                let f = &f;
                s.spawn(move || jobs.iter().enumerate().skip(t).step_by(threads).map(|(k, &(a, b))| (k, f(&mut w, a, b))).collect())
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("an all-pairs thread panicked")).collect()
    });
    let mut all: Vec<(usize, T)> = parts.drain(..).flatten().collect();
    all.sort_by_key(|(k, _)| *k);
    all.into_iter().map(|(_, t)| t).collect()
}

/// Every ordered pair of instances, by equivalence classes: one trace per
/// [`PairKey`] on `threads` copies of the warmed `world`.
pub fn by_classes(topo: &Topology, world: &World, classes: Classes, threads: usize) -> Matrix {
    let reps = classes.representatives();
    let jobs: Vec<(usize, usize)> = reps.iter().map(|(_, r, _)| *r).collect();
    let results = parallel(world, threads, &jobs, |w, a, b| outcome(topo, w, a, b));
    let n = topo.instances.len() as u64;
    let mut reachable = 0;
    let mut outcomes = FxHashMap::default();
    for ((key, _, count), o) in reps.iter().zip(results) {
        if o.reached() {
            reachable += count;
        }
        outcomes.insert(*key, o);
    }
    Matrix { classes, outcomes, pairs: n * n.saturating_sub(1), reachable, traced: jobs.len() }
}

/// Every ordered pair traced, one after another on `threads` copies of the
/// warmed `world` (the reference [`by_classes`] is checked against).
pub fn brute_force(topo: &Topology, world: &World, threads: usize) -> Vec<Vec<Option<Outcome>>> {
    let n = topo.instances.len();
    let jobs: Vec<(usize, usize)> = (0..n).flat_map(|a| (0..n).filter(move |&b| b != a).map(move |b| (a, b))).collect();
    let results = parallel(world, threads, &jobs, |w, a, b| outcome(topo, w, a, b));
    let mut m = vec![vec![None; n]; n];
    for ((a, b), o) in jobs.into_iter().zip(results) {
        m[a][b] = Some(o);
    }
    m
}
