//! Per-host deltas: what an agent must add and delete on one host to go from
//! its old plan to its new one, item by item — a flow on a bridge, a port, a
//! device, route, rule, neighbour, NAT chain or sysctl in a namespace —
//! instead of a whole new [`HostPlan`] to compare against the host.
//!
//! A plan is seen as a multiset of typed [`Item`]s ([`items`]); the delta
//! is the multiset difference, list by list (each bridge's ports and flows,
//! each namespace's devices, routes, rules, neighbours, chains, sysctls).
//! Applying it to the old plan's items gives the new plan's items (the
//! property tests in crates/plan/tests/incremental.rs check this for every
//! change kind). Items compare as the plan model compares them: provenance
//! ([`Origin`]) is metadata and ignored. Order within a list is not part of
//! a delta; the one ordered thing, the rules of an iptables chain, is carried
//! as a whole chain.

use crate::model::*;
use crate::tables::BridgeKind;
use dvr_model::{AgentMode, MacAddr, Role};
use dvr_openflow::Flow;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

/// One thing a host's plan puts on the host.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "item", rename_all = "snake_case")]
pub enum Item {
    /// The host's role, agent mode and DVR MAC.
    Host {
        /// Role.
        role: Role,
        /// l3 agent mode.
        agent_mode: Option<AgentMode>,
        /// DVR MAC.
        dvr_mac: Option<MacAddr>,
    },
    /// A host-wide sysctl.
    Sysctl(Sysctl),
    /// An OVS bridge itself.
    Bridge {
        /// Bridge name.
        name: String,
        /// Integration or physical.
        kind: BridgeKind,
        /// Physical network served.
        physnet: Option<String>,
    },
    /// A port on a bridge.
    BridgePort {
        /// Bridge name.
        bridge: String,
        /// The port.
        port: BridgePort,
    },
    /// A flow on a bridge.
    Flow {
        /// Bridge name.
        bridge: String,
        /// The flow (shared with the plan).
        flow: Arc<Flow>,
    },
    /// A network namespace itself.
    Namespace {
        /// Namespace name.
        name: String,
        /// Kind.
        kind: NamespaceKind,
        /// What it serves.
        serves: String,
    },
    /// A device (with its addresses) in a namespace.
    Device {
        /// Namespace name.
        ns: String,
        /// The device.
        device: Device,
    },
    /// A route in a namespace.
    Route {
        /// Namespace name.
        ns: String,
        /// The route.
        route: Route,
    },
    /// A policy rule in a namespace.
    Rule {
        /// Namespace name.
        ns: String,
        /// The rule.
        rule: Rule,
    },
    /// A permanent neighbour entry in a namespace.
    Neighbour {
        /// Namespace name.
        ns: String,
        /// The entry.
        neighbour: Neighbour,
    },
    /// An iptables chain with its rules, in order.
    Chain {
        /// Namespace name.
        ns: String,
        /// Table (`nat`, `raw`).
        table: String,
        /// The chain.
        chain: Chain,
    },
    /// A namespace sysctl.
    NsSysctl {
        /// Namespace name.
        ns: String,
        /// The sysctl.
        sysctl: Sysctl,
    },
    /// A DHCP service (qdhcp).
    Dhcp {
        /// Namespace name.
        ns: String,
        /// The service.
        dhcp: DhcpService,
    },
}

impl Item {
    /// Whether this item is a flow (agents apply flows and namespace items
    /// through different tools).
    pub fn is_flow(&self) -> bool {
        matches!(self, Item::Flow { .. })
    }
}

/// Every item of a host's plan.
pub fn items(p: &HostPlan) -> Vec<Item> {
    let mut out = vec![Item::Host { role: p.role, agent_mode: p.agent_mode, dvr_mac: p.dvr_mac }];
    out.extend(p.sysctls.iter().cloned().map(Item::Sysctl));
    for b in &p.bridges {
        out.extend(bridge_items(b));
    }
    for n in &p.namespaces {
        out.extend(namespace_items(n));
    }
    out
}

/// A bridge, its ports and its flows.
fn bridge_items(b: &Bridge) -> Vec<Item> {
    let mut out = vec![Item::Bridge { name: b.name.clone(), kind: b.kind, physnet: b.physnet.clone() }];
    out.extend(b.ports.iter().map(|port| Item::BridgePort { bridge: b.name.clone(), port: port.clone() }));
    out.extend(b.flows.iter().map(|f| Item::Flow { bridge: b.name.clone(), flow: f.clone() }));
    out
}

/// A namespace and everything in it.
pub fn namespace_items(n: &Namespace) -> Vec<Item> {
    let ns = || n.name.clone();
    let mut out = vec![Item::Namespace { name: ns(), kind: n.kind, serves: n.serves.clone() }];
    out.extend(n.devices.iter().map(|d| Item::Device { ns: ns(), device: d.clone() }));
    out.extend(n.routes.iter().map(|r| Item::Route { ns: ns(), route: r.clone() }));
    out.extend(n.rules.iter().map(|r| Item::Rule { ns: ns(), rule: r.clone() }));
    out.extend(n.neighbours.iter().map(|x| Item::Neighbour { ns: ns(), neighbour: x.clone() }));
    out.extend(chains(n).map(|(table, c)| Item::Chain { ns: ns(), table: table.to_string(), chain: c.clone() }));
    out.extend(n.sysctls.iter().map(|s| Item::NsSysctl { ns: ns(), sysctl: s.clone() }));
    out.extend(n.dhcp.iter().map(|d| Item::Dhcp { ns: ns(), dhcp: d.clone() }));
    out
}

fn chains(n: &Namespace) -> impl Iterator<Item = (&str, &Chain)> {
    n.iptables.iter().flat_map(|t| t.chains.iter().map(move |c| (t.name.as_str(), c)))
}

/// What changes on one host.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostDelta {
    /// Host name.
    pub host: String,
    /// Items to add.
    pub add: Vec<Item>,
    /// Items to delete.
    pub delete: Vec<Item>,
}

impl HostDelta {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.delete.is_empty()
    }

    /// Flows to add and to delete.
    pub fn flows(&self) -> (usize, usize) {
        (self.add.iter().filter(|i| i.is_flow()).count(), self.delete.iter().filter(|i| i.is_flow()).count())
    }
}

/// A multiset difference of two lists in the planner's deterministic order:
/// the common prefix and suffix are skipped (a change adds or removes a few
/// items in the middle), the rest matched by equality. Returns (added, deleted).
/// `eq` is the items' equality (provenance is ignored, as in the plan model).
fn diff_list<'a, T>(before: &'a [T], after: &'a [T], eq: impl Fn(&T, &T) -> bool) -> (Vec<&'a T>, Vec<&'a T>) {
    let pre = before.iter().zip(after).take_while(|(a, b)| eq(a, b)).count();
    let (b, a) = (&before[pre..], &after[pre..]);
    let suf = b.iter().rev().zip(a.iter().rev()).take_while(|(x, y)| eq(x, y)).count();
    let (b, a) = (&b[..b.len() - suf], &a[..a.len() - suf]);
    let mut used = vec![false; b.len()];
    let mut added = Vec::new();
    for x in a {
        match (0..b.len()).find(|&i| !used[i] && eq(&b[i], x)) {
            Some(i) => used[i] = true,
            None => added.push(x),
        }
    }
    let deleted = b.iter().zip(used).filter(|(_, u)| !u).map(|(x, _)| x).collect();
    (added, deleted)
}

/// [`diff_list`] for flows: what is left after the common prefix and suffix
/// is matched through a hash map when it is large (a host whose local VLANs
/// shifted changes flows all over its tables), not pair by pair.
fn diff_flows<'a>(before: &'a [Arc<Flow>], after: &'a [Arc<Flow>]) -> (Vec<&'a Arc<Flow>>, Vec<&'a Arc<Flow>>) {
    let pre = before.iter().zip(after).take_while(|(a, b)| same_flow(a, b)).count();
    let (b, a) = (&before[pre..], &after[pre..]);
    let suf = b.iter().rev().zip(a.iter().rev()).take_while(|(x, y)| same_flow(x, y)).count();
    let (b, a) = (&b[..b.len() - suf], &a[..a.len() - suf]);
    if b.len().saturating_mul(a.len()) <= 4096 {
        return diff_list(b, a, same_flow);
    }
    // Most flows are shared (the DVR-MAC ones): match those by pointer first,
    // then hash the contents of the few left.
    let mut shared: rustc_hash::FxHashMap<*const Flow, usize> = rustc_hash::FxHashMap::default();
    shared.reserve(b.len());
    for f in b {
        *shared.entry(Arc::as_ptr(f)).or_default() += 1;
    }
    let mut a_left = Vec::new();
    for f in a {
        match shared.get_mut(&Arc::as_ptr(f)) {
            Some(n) if *n > 0 => *n -= 1,
            _ => a_left.push(f),
        }
    }
    let mut b_left = Vec::new();
    for f in b {
        if let Some(n) = shared.get_mut(&Arc::as_ptr(f))
            && *n > 0
        {
            *n -= 1;
            b_left.push(f);
        }
    }
    let (b, a) = (b_left, a_left);
    let mut count: rustc_hash::FxHashMap<&Flow, usize> = rustc_hash::FxHashMap::default();
    count.reserve(b.len());
    for &f in &b {
        *count.entry(f.as_ref()).or_default() += 1;
    }
    let mut added = Vec::new();
    for f in a {
        match count.get_mut(f.as_ref()) {
            Some(n) if *n > 0 => *n -= 1,
            _ => added.push(f),
        }
    }
    let mut deleted = Vec::new();
    for f in b {
        if let Some(n) = count.get_mut(f.as_ref())
            && *n > 0
        {
            *n -= 1;
            deleted.push(f);
        }
    }
    (added, deleted)
}

/// Flows are shared (`Arc`): the same pointer is the same flow.
fn same_flow(a: &Arc<Flow>, b: &Arc<Flow>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

/// [`diff_list`] for permanent neighbours: blocks the two lists share (the
/// same pointer: a router interface's ARP list, built once for every host)
/// hold the same entries and are matched whole, not entry by entry.
fn diff_neighbours<'a>(before: &'a Neighbours, after: &'a Neighbours) -> (Vec<&'a Neighbour>, Vec<&'a Neighbour>) {
    let b: Vec<_> = before.blocks().collect();
    let a: Vec<_> = after.blocks().collect();
    let mut used = vec![false; b.len()];
    let mut a_left: Vec<&Neighbour> = Vec::new();
    for (entries, ptr) in &a {
        match ptr.and_then(|p| (0..b.len()).find(|&i| !used[i] && b[i].1 == Some(p) && b[i].0.len() == entries.len())) {
            Some(i) => used[i] = true,
            None => a_left.extend(entries.iter()),
        }
    }
    let b_left: Vec<&Neighbour> = b.iter().zip(&used).filter(|(_, u)| !**u).flat_map(|((entries, _), _)| entries.iter()).collect();
    let (added, deleted) = diff_list(&b_left, &a_left, |x, y| x == y);
    (added.into_iter().copied().collect(), deleted.into_iter().copied().collect())
}

/// Items to add and delete to turn the permanent neighbours `before` of
/// namespace `ns` into `after` (a part of the namespace's list).
pub fn diff_neighbour_lists(ns: &str, before: &Neighbours, after: &Neighbours, add: &mut Vec<Item>, delete: &mut Vec<Item>) {
    let (a, d) = diff_neighbours(before, after);
    add.extend(a.into_iter().map(|x| Item::Neighbour { ns: ns.to_string(), neighbour: x.clone() }));
    delete.extend(d.into_iter().map(|x| Item::Neighbour { ns: ns.to_string(), neighbour: x.clone() }));
}

/// Items to add and delete to turn namespace `old` into `new` (either may be
/// absent: a namespace created or removed).
pub fn diff_namespace(old: Option<&Namespace>, new: Option<&Namespace>, add: &mut Vec<Item>, delete: &mut Vec<Item>) {
    let (o, n) = match (old, new) {
        (None, None) => return,
        (None, Some(n)) => return add.extend(namespace_items(n)),
        (Some(o), None) => return delete.extend(namespace_items(o)),
        (Some(o), Some(n)) => (o, n),
    };
    let ns = || n.name.clone();
    if (o.kind, &o.serves) != (n.kind, &n.serves) {
        delete.push(Item::Namespace { name: ns(), kind: o.kind, serves: o.serves.clone() });
        add.push(Item::Namespace { name: ns(), kind: n.kind, serves: n.serves.clone() });
    }
    macro_rules! list {
        ($field:ident, $variant:ident, $name:ident) => {{
            let (a, d) = diff_list(&o.$field, &n.$field, |x, y| x == y);
            add.extend(a.into_iter().map(|x| Item::$variant { ns: ns(), $name: x.clone() }));
            delete.extend(d.into_iter().map(|x| Item::$variant { ns: ns(), $name: x.clone() }));
        }};
    }
    list!(devices, Device, device);
    list!(routes, Route, route);
    list!(rules, Rule, rule);
    let (a, d) = diff_neighbours(&o.neighbours, &n.neighbours);
    add.extend(a.into_iter().map(|x| Item::Neighbour { ns: ns(), neighbour: x.clone() }));
    delete.extend(d.into_iter().map(|x| Item::Neighbour { ns: ns(), neighbour: x.clone() }));
    list!(sysctls, NsSysctl, sysctl);
    let (oc, nc): (Vec<_>, Vec<_>) = (chains(o).collect(), chains(n).collect());
    let (a, d) = diff_list(&oc, &nc, |x, y| x == y);
    add.extend(a.into_iter().map(|(t, c)| Item::Chain { ns: ns(), table: t.to_string(), chain: (*c).clone() }));
    delete.extend(d.into_iter().map(|(t, c)| Item::Chain { ns: ns(), table: t.to_string(), chain: (*c).clone() }));
    if o.dhcp != n.dhcp {
        delete.extend(o.dhcp.iter().map(|d| Item::Dhcp { ns: ns(), dhcp: d.clone() }));
        add.extend(n.dhcp.iter().map(|d| Item::Dhcp { ns: ns(), dhcp: d.clone() }));
    }
}

/// Items to add and delete to turn bridge `old` into `new` (either may be
/// absent: a bridge created or removed).
pub fn diff_bridge(old: Option<&Bridge>, new: Option<&Bridge>, add: &mut Vec<Item>, delete: &mut Vec<Item>) {
    let (o, n) = match (old, new) {
        (None, None) => return,
        (None, Some(n)) => return add.extend(bridge_items(n)),
        (Some(o), None) => return delete.extend(bridge_items(o)),
        (Some(o), Some(n)) => (o, n),
    };
    let br = || n.name.clone();
    if (o.kind, &o.physnet) != (n.kind, &n.physnet) {
        delete.push(Item::Bridge { name: br(), kind: o.kind, physnet: o.physnet.clone() });
        add.push(Item::Bridge { name: br(), kind: n.kind, physnet: n.physnet.clone() });
    }
    let (a, d) = diff_list(&o.ports, &n.ports, |x, y| x == y);
    add.extend(a.into_iter().map(|p| Item::BridgePort { bridge: br(), port: p.clone() }));
    delete.extend(d.into_iter().map(|p| Item::BridgePort { bridge: br(), port: p.clone() }));
    let (a, d) = diff_flows(&o.flows, &n.flows);
    add.extend(a.into_iter().map(|f| Item::Flow { bridge: br(), flow: f.clone() }));
    delete.extend(d.into_iter().map(|f| Item::Flow { bridge: br(), flow: f.clone() }));
}

/// Items to add and delete to turn the flows `before` of bridge `bridge`
/// into `after` (a part of the bridge's flow list).
pub fn diff_flow_lists(bridge: &str, before: &[Arc<Flow>], after: &[Arc<Flow>], add: &mut Vec<Item>, delete: &mut Vec<Item>) {
    let (a, d) = diff_flows(before, after);
    add.extend(a.into_iter().map(|f| Item::Flow { bridge: bridge.to_string(), flow: f.clone() }));
    delete.extend(d.into_iter().map(|f| Item::Flow { bridge: bridge.to_string(), flow: f.clone() }));
}

/// Items to add and delete to turn the ports `before` of bridge `bridge` into `after`.
pub fn diff_port_lists(bridge: &str, before: &[BridgePort], after: &[BridgePort], add: &mut Vec<Item>, delete: &mut Vec<Item>) {
    let (a, d) = diff_list(before, after, |x, y| x == y);
    add.extend(a.into_iter().map(|p| Item::BridgePort { bridge: bridge.to_string(), port: p.clone() }));
    delete.extend(d.into_iter().map(|p| Item::BridgePort { bridge: bridge.to_string(), port: p.clone() }));
}

/// Pair up named things of two lists: (old, new) per name, in `new`'s order
/// then the old-only ones.
fn pairs<'a, T>(old: &'a [T], new: &'a [T], name: impl Fn(&T) -> &str) -> Vec<(Option<&'a T>, Option<&'a T>)> {
    let by_name: HashMap<&str, &T> = old.iter().map(|x| (name(x), x)).collect();
    let mut out: Vec<(Option<&T>, Option<&T>)> = new.iter().map(|x| (by_name.get(name(x)).copied(), Some(x))).collect();
    let kept: std::collections::HashSet<&str> = new.iter().map(&name).collect();
    out.extend(old.iter().filter(|x| !kept.contains(name(x))).map(|x| (Some(x), None)));
    out
}

/// The delta from `old` to `new` (the plans of one host; `old` is `None` for
/// a new host).
pub fn diff(old: Option<&HostPlan>, new: &HostPlan) -> HostDelta {
    let mut d = HostDelta { host: new.host.clone(), ..HostDelta::default() };
    let Some(old) = old else {
        d.add = items(new);
        return d;
    };
    if (old.role, old.agent_mode, old.dvr_mac) != (new.role, new.agent_mode, new.dvr_mac) {
        d.delete.push(Item::Host { role: old.role, agent_mode: old.agent_mode, dvr_mac: old.dvr_mac });
        d.add.push(Item::Host { role: new.role, agent_mode: new.agent_mode, dvr_mac: new.dvr_mac });
    }
    let (a, del) = diff_list(&old.sysctls, &new.sysctls, |x, y| x == y);
    d.add.extend(a.into_iter().cloned().map(Item::Sysctl));
    d.delete.extend(del.into_iter().cloned().map(Item::Sysctl));
    for (o, n) in pairs(&old.bridges, &new.bridges, |b| &b.name) {
        diff_bridge(o, n, &mut d.add, &mut d.delete);
    }
    for (o, n) in pairs(&old.namespaces, &new.namespaces, |n| &n.name) {
        diff_namespace(o, n, &mut d.add, &mut d.delete);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use dvr_openflow::Match;

    fn flow(i: u16) -> Arc<Flow> {
        let mut f = Flow::new((i % 5) as u8, i, Match::default(), vec![]);
        f.reason = format!("flow {i}").into();
        Arc::new(f)
    }

    /// `before - deleted + added == after`, as multisets of flow contents.
    fn check(before: &[Arc<Flow>], after: &[Arc<Flow>]) -> (usize, usize) {
        let (added, deleted) = diff_flows(before, after);
        let mut got: Vec<&Flow> = before.iter().map(|f| f.as_ref()).collect();
        for d in &deleted {
            let at = got.iter().position(|f| *f == d.as_ref()).expect("deletes a flow it has");
            got.remove(at);
        }
        got.extend(added.iter().map(|f| f.as_ref()));
        let key = |v: &mut Vec<&Flow>| v.sort_by_key(|f| (f.table, f.priority, f.reason.clone()));
        let mut want: Vec<&Flow> = after.iter().map(|f| f.as_ref()).collect();
        key(&mut got);
        key(&mut want);
        assert!(got == want, "before - deleted + added != after");
        (added.len(), deleted.len())
    }

    #[test]
    fn flow_diffs_small_and_large_shared_and_fresh() {
        let before: Vec<Arc<Flow>> = (0..300).map(flow).collect();
        // Large middle: both ends change, the rest is the same flows reordered,
        // some shared (same Arc), some fresh copies of equal flows.
        let mut after: Vec<Arc<Flow>> = before[1..299].iter().rev().cloned().collect();
        for f in after.iter_mut().step_by(3) {
            *f = Arc::new(Flow::clone(f));
        }
        after.insert(0, flow(1000));
        after.push(flow(1001));
        after.push(flow(5)); // a duplicate of a kept flow
        assert_eq!(check(&before, &after), (3, 2));
        // Small: one flow inserted in the middle.
        let mut small = before.clone();
        small.insert(150, flow(2000));
        assert_eq!(check(&before, &small), (1, 0));
        assert_eq!(check(&small, &before), (0, 1));
        assert_eq!(check(&before, &before), (0, 0));
    }

    fn neigh(i: u8, dev: &str) -> Neighbour {
        let mac = dvr_model::MacAddr::from_prefix([0xfa, 0x16, 0x3e], u32::from(i));
        Neighbour { ip: std::net::Ipv4Addr::new(10, 0, 0, i), mac, dev: dev.into(), origin: Origin::default() }
    }

    #[test]
    fn neighbour_diffs_match_shared_blocks_whole_and_the_rest_by_value() {
        let a: Arc<[Neighbour]> = (1..40).map(|i| neigh(i, "qr-a")).collect::<Vec<_>>().into();
        let b: Arc<[Neighbour]> = (40..60).map(|i| neigh(i, "qr-b")).collect::<Vec<_>>().into();
        let b2: Arc<[Neighbour]> = (40..61).filter(|&i| i != 45).map(|i| neigh(i, "qr-b")).collect::<Vec<_>>().into();
        let mut before = Neighbours::new();
        before.push_shared(a.clone());
        before.push_shared(b);
        before.push(neigh(99, "rfp"));
        // The same shared block, a changed one, and an owned copy of `a`'s
        // entries (equal by value, not by pointer) in another order.
        let mut after = Neighbours::new();
        after.push_shared(b2);
        after.push_shared(a.clone());
        after.push(neigh(99, "rfp"));
        let (added, deleted) = diff_neighbours(&before, &after);
        assert_eq!(added.iter().map(|x| x.ip.octets()[3]).collect::<Vec<_>>(), vec![60]);
        assert_eq!(deleted.iter().map(|x| x.ip.octets()[3]).collect::<Vec<_>>(), vec![45]);
        let copied: Neighbours = a.iter().cloned().collect();
        let mut shared = Neighbours::new();
        shared.push_shared(a);
        let (added, deleted) = diff_neighbours(&shared, &copied);
        assert!(added.is_empty() && deleted.is_empty());
        let none = Neighbours::new();
        let (added, deleted) = diff_neighbours(&none, &copied);
        assert_eq!((added.len(), deleted.len()), (39, 0));
    }
}
