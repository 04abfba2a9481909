//! Per-host deltas: what an agent must add and delete on one host to go from
//! its old plan to its new one, item by item — a flow on a bridge, a port, a
//! device, route, rule, neighbour, NAT chain or sysctl in a namespace —
//! instead of a whole new [`HostPlan`] to compare against the host.
//!
//! A plan is seen as a multiset of typed [`Item`]s ([`items`]); the delta
//! is the multiset difference. Applying it to the old plan's items gives the
//! new plan's items exactly (the property test in crates/plan/tests/incremental.rs
//! checks this for every change kind). Order within a list is not part of a
//! delta: flows are matched by table and priority, addresses, routes, rules
//! and neighbours are sets; the one ordered thing, the rules of an iptables
//! chain, is carried as a whole chain.

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
        out.push(Item::Bridge { name: b.name.clone(), kind: b.kind, physnet: b.physnet.clone() });
        out.extend(b.ports.iter().map(|port| Item::BridgePort { bridge: b.name.clone(), port: port.clone() }));
        out.extend(b.flows.iter().map(|f| Item::Flow { bridge: b.name.clone(), flow: f.clone() }));
    }
    for n in &p.namespaces {
        let ns = || n.name.clone();
        out.push(Item::Namespace { name: ns(), kind: n.kind, serves: n.serves.clone() });
        out.extend(n.devices.iter().map(|d| Item::Device { ns: ns(), device: d.clone() }));
        out.extend(n.routes.iter().map(|r| Item::Route { ns: ns(), route: r.clone() }));
        out.extend(n.rules.iter().map(|r| Item::Rule { ns: ns(), rule: r.clone() }));
        out.extend(n.neighbours.iter().map(|x| Item::Neighbour { ns: ns(), neighbour: x.clone() }));
        for t in &n.iptables {
            out.extend(t.chains.iter().map(|c| Item::Chain { ns: ns(), table: t.name.clone(), chain: c.clone() }));
        }
        out.extend(n.sysctls.iter().map(|s| Item::NsSysctl { ns: ns(), sysctl: s.clone() }));
        out.extend(n.dhcp.iter().map(|d| Item::Dhcp { ns: ns(), dhcp: d.clone() }));
    }
    out
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

/// The identity of an item for comparison: flows by their content (shared
/// flows by pointer first, which is what makes the DVR-MAC flows cheap), the
/// rest by their JSON.
#[derive(PartialEq, Eq, Hash)]
enum Key<'a> {
    Flow(&'a str, FlowRef<'a>),
    Other(String),
}

/// A flow compared by pointer, then by value.
struct FlowRef<'a>(&'a Arc<Flow>);

impl PartialEq for FlowRef<'_> {
    fn eq(&self, o: &Self) -> bool {
        Arc::ptr_eq(self.0, o.0) || self.0 == o.0
    }
}
impl Eq for FlowRef<'_> {}
impl std::hash::Hash for FlowRef<'_> {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        // Table and priority only: cheap, and equal flows agree on them.
        (self.0.table, self.0.priority).hash(h);
    }
}

fn key(i: &Item) -> Key<'_> {
    match i {
        Item::Flow { bridge, flow } => Key::Flow(bridge, FlowRef(flow)),
        other => Key::Other(serde_json::to_string(other).expect("plan items serialize")),
    }
}

/// The delta from `old` to `new` (the plans of one host; `old` is `None` for
/// a new host).
pub fn diff(old: Option<&HostPlan>, new: &HostPlan) -> HostDelta {
    let before = old.map(items).unwrap_or_default();
    let after = items(new);
    let (add, delete) = diff_items(&before, &after);
    HostDelta { host: new.host.clone(), add, delete }
}

/// Multiset difference: (in `after` but not `before`, in `before` but not `after`).
pub fn diff_items(before: &[Item], after: &[Item]) -> (Vec<Item>, Vec<Item>) {
    let mut count: HashMap<Key, isize> = HashMap::with_capacity(before.len());
    for i in before {
        *count.entry(key(i)).or_default() += 1;
    }
    let mut add = Vec::new();
    for i in after {
        match count.get_mut(&key(i)) {
            Some(n) if *n > 0 => *n -= 1,
            _ => add.push(i.clone()),
        }
    }
    // What is left counted in `before` is gone.
    let mut delete = Vec::new();
    for i in before {
        if let Some(n) = count.get_mut(&key(i))
            && *n > 0
        {
            *n -= 1;
            delete.push(i.clone());
        }
    }
    (add, delete)
}
