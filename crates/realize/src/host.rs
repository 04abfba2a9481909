//! Converge one host to its plan: observe what is there, compute the ordered
//! operations that make it match, apply them. Applying a plan twice finds
//! nothing to do the second time; anything the plan no longer has (stale
//! namespaces, bridges, ports, routes, rules, neighbours) is removed.

use crate::cmd::{CmdError, run};
use crate::ip;
use crate::netlink;
use crate::ovs::OvsInstance;
use dvr_plan::{DeviceLink, HostPlan, PortKind, RuleSelector, TableRef, render};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// How lab objects are named on the machine, so several labs (and CI) can
/// coexist and `lab down` can find everything by prefix.
#[derive(Debug, Clone)]
pub struct Names {
    /// Prefix of every namespace and state directory.
    pub prefix: String,
}

impl Names {
    /// The namespace emulating a host (its "root" namespace).
    pub fn host_ns(&self, host: &str) -> String {
        format!("{}-host-{host}", self.prefix)
    }
    /// A Neutron namespace (qrouter-…) of a host.
    pub fn svc_ns(&self, host: &str, ns: &str) -> String {
        format!("{}-host-{host}.{ns}", self.prefix)
    }
    /// An endpoint (instance, external host, upstream gateway).
    pub fn ep_ns(&self, name: &str) -> String {
        format!("{}-ep-{name}", self.prefix)
    }
    /// The physical switches.
    pub fn fabric_ns(&self) -> String {
        format!("{}-fabric", self.prefix)
    }
}

/// How a bridge's flows differ from its plan, so `lab status` can say which
/// flows drifted rather than only that some did.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowDrift {
    /// Planned flows the bridge lacks (`ovs-ofctl` syntax).
    pub missing: Vec<String>,
    /// Flows on the bridge the plan does not have.
    pub unexpected: Vec<String>,
    /// Ports of the bridge are (re)added in the same converge: OVS gives them
    /// new OpenFlow port numbers, and flows that named the old numbers must be
    /// reloaded so their port names resolve again.
    pub ports_changed: bool,
}

impl fmt::Display for FlowDrift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} planned flows missing, {} unexpected", self.missing.len(), self.unexpected.len())?;
        if self.ports_changed {
            write!(f, ", ports re-added (new OpenFlow port numbers)")?;
        }
        if let Some(m) = self.missing.first() {
            write!(f, "; e.g. missing `{m}`")?;
        } else if let Some(u) = self.unexpected.first() {
            write!(f, "; e.g. unexpected `{u}`")?;
        }
        Ok(())
    }
}

/// How a namespace's netfilter tables differ from the plan (lines of
/// `iptables-save`, prefixed by their table), for drift reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct RuleDrift {
    /// Planned chains and rules that are not loaded.
    pub missing: Vec<String>,
    /// Loaded chains and rules the plan does not have.
    pub unexpected: Vec<String>,
}

impl fmt::Display for RuleDrift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} planned rules/chains missing, {} unexpected", self.missing.len(), self.unexpected.len())?;
        // A rule says more than a chain declaration.
        let pick = |v: &[String]| v.iter().find(|l| l.contains(" -A ")).or(v.first()).cloned();
        if let Some(m) = pick(&self.missing) {
            write!(f, "; e.g. missing `{m}`")?;
        } else if let Some(u) = pick(&self.unexpected) {
            write!(f, "; e.g. unexpected `{u}`")?;
        }
        Ok(())
    }
}

/// One change to a host, printable for `--verbose` and tests.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    /// Create a namespace.
    AddNetns(String),
    /// Create a veth pair between two namespaces (tx offload off on both ends).
    AddVeth {
        /// (namespace, name) of one end.
        a: (String, String),
        /// (namespace, name) of the other end.
        b: (String, String),
    },
    /// Set a device's MAC.
    SetMac(String, String, String),
    /// Bring a device up.
    LinkUp(String, String),
    /// Add an address (`ip addr replace`).
    AddrAdd(String, String, String),
    /// Remove an address.
    AddrDel(String, String, String),
    /// Add or replace a route (`ip route replace …`): ns, args.
    RouteReplace(String, Vec<String>),
    /// Remove a route: ns, args.
    RouteDel(String, Vec<String>),
    /// Remove a policy rule: ns, args.
    RuleDel(String, Vec<String>),
    /// Add a policy rule: ns, args.
    RuleAdd(String, Vec<String>),
    /// Add or replace a permanent neighbour: ns, ip, mac, dev.
    NeighReplace(String, String, String, String),
    /// Remove a permanent neighbour: ns, ip, dev.
    NeighDel(String, String, String),
    /// Write a sysctl: ns, key, value.
    Sysctl(String, String, String),
    /// Load netfilter tables atomically (`iptables-restore`): ns, text, and
    /// which rules differ.
    IptRestore(String, String, RuleDrift),
    /// Create a bridge (userspace datapath, secure fail mode).
    AddBridge(String),
    /// Add a port: bridge, port, patch peer (None = existing device), tag,
    /// `external_ids` as Neutron's agent and Nova set them (`iface-id`,
    /// `attached-mac`, `vm-uuid`), so `dvr collect` finds instances in the lab too.
    AddPort(String, String, Option<String>, Option<u16>, Vec<(String, String)>),
    /// Set a port's access VLAN.
    SetTag(String, u16),
    /// Remove a port.
    DelPort(String, String),
    /// Remove a bridge.
    DelBridge(String),
    /// Replace all flows of a bridge atomically (`--bundle replace-flows`):
    /// bridge, flow text, and why (what differs).
    ReplaceFlows(String, String, FlowDrift),
    /// Delete a namespace (and with it its devices).
    DelNetns(String),
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::AddNetns(n) => write!(f, "ip netns add {n}"),
            Op::AddVeth { a, b } => write!(f, "ip link add {} netns {} type veth peer name {} netns {}", a.1, a.0, b.1, b.0),
            Op::SetMac(n, d, m) => write!(f, "ip -n {n} link set {d} address {m}"),
            Op::LinkUp(n, d) => write!(f, "ip -n {n} link set {d} up"),
            Op::AddrAdd(n, d, a) => write!(f, "ip -n {n} addr replace {a} dev {d}"),
            Op::AddrDel(n, d, a) => write!(f, "ip -n {n} addr del {a} dev {d}"),
            Op::RouteReplace(n, a) => write!(f, "ip -n {n} route replace {}", a.join(" ")),
            Op::RouteDel(n, a) => write!(f, "ip -n {n} route del {}", a.join(" ")),
            Op::RuleDel(n, a) => write!(f, "ip -n {n} rule del {}", a.join(" ")),
            Op::RuleAdd(n, a) => write!(f, "ip -n {n} rule add {}", a.join(" ")),
            Op::NeighReplace(n, ip, mac, d) => write!(f, "ip -n {n} neigh replace {ip} lladdr {mac} dev {d} nud permanent"),
            Op::NeighDel(n, ip, d) => write!(f, "ip -n {n} neigh del {ip} dev {d}"),
            Op::Sysctl(n, k, v) => write!(f, "ip netns exec {n} sysctl -w {k}={v}"),
            Op::IptRestore(n, _, why) => write!(f, "ip netns exec {n} iptables-legacy-restore ({why})"),
            Op::AddBridge(b) => write!(f, "ovs-vsctl add-br {b}"),
            Op::AddPort(b, p, peer, tag, _) => write!(
                f,
                "ovs-vsctl add-port {b} {p}{}{}",
                peer.as_ref().map(|x| format!(" (patch to {x})")).unwrap_or_default(),
                tag.map(|t| format!(" tag={t}")).unwrap_or_default()
            ),
            Op::SetTag(p, t) => write!(f, "ovs-vsctl set port {p} tag={t}"),
            Op::DelPort(b, p) => write!(f, "ovs-vsctl del-port {b} {p}"),
            Op::DelBridge(b) => write!(f, "ovs-vsctl del-br {b}"),
            Op::ReplaceFlows(b, text, why) => {
                write!(f, "ovs-ofctl --bundle replace-flows {b} ({} flows; {why})", text.lines().count())
            }
            Op::DelNetns(n) => write!(f, "ip netns del {n}"),
        }
    }
}

impl Op {
    /// What kind of host state this operation repairs, for drift reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::AddNetns(_) | Op::DelNetns(_) => "namespace",
            Op::AddVeth { .. } | Op::SetMac(..) | Op::LinkUp(..) => "device",
            Op::AddrAdd(..) | Op::AddrDel(..) => "address",
            Op::RouteReplace(..) | Op::RouteDel(..) => "route",
            Op::RuleAdd(..) | Op::RuleDel(..) => "rule",
            Op::NeighReplace(..) | Op::NeighDel(..) => "neighbour",
            Op::Sysctl(..) => "sysctl",
            Op::IptRestore(..) => "nat",
            Op::AddBridge(_) | Op::DelBridge(_) => "bridge",
            Op::AddPort(..) | Op::DelPort(..) | Op::SetTag(..) => "port",
            Op::ReplaceFlows(..) => "flows",
        }
    }
}

/// Why a host could not be converged.
#[derive(Debug, thiserror::Error)]
pub enum RealizeError {
    /// A command failed.
    #[error(transparent)]
    Cmd(#[from] CmdError),
}

/// Devices of a namespace as observed: name → (mac, up, addresses).
type ObservedLinks = BTreeMap<String, (String, bool, BTreeSet<String>)>;

/// Devices of a namespace: name → (mac, up, addresses "a.b.c.d/p"), over netlink.
/// A namespace that exists but cannot be read is an error, never "no devices"
/// (which would make the converge recreate what is there).
fn observe_links(ns: &str, exists: bool) -> Result<ObservedLinks, CmdError> {
    if !exists {
        return Ok(BTreeMap::new());
    }
    Ok(netlink::links(ns)?.into_iter().map(|(n, x)| (n, (x.mac, x.up, x.addrs))).collect())
}

/// Whether a read-back sysctl value satisfies the plan. `neigh.*.proxy_delay`
/// is kept in jiffies and read back in USER_HZ, so Neutron's 1 reads as 0.
fn sysctl_holds(have: Option<&str>, want: &dvr_plan::Sysctl) -> bool {
    match have {
        Some(h) if h == want.value => true,
        Some(h) if want.key.ends_with(".proxy_delay") => h.parse::<u64>().ok() <= want.value.parse::<u64>().ok(),
        _ => false,
    }
}

fn route_args(r: &dvr_plan::Route) -> Vec<String> {
    let dst = if r.dst.prefix_len() == 0 { "default".to_string() } else { r.dst.to_string() };
    let mut a = vec![dst];
    if let Some(v) = r.via {
        a.extend(["via".into(), v.to_string()]);
    }
    a.extend(["dev".into(), r.dev.clone()]);
    if let TableRef::Id(t) = r.table {
        a.extend(["table".into(), t.to_string()]);
    }
    a
}

/// Routes the plan adds explicitly (connected routes come with addresses).
fn desired_routes(ns: &dvr_plan::Namespace) -> BTreeSet<Vec<String>> {
    ns.routes.iter().filter(|r| r.src.is_none()).map(route_args).collect()
}

fn observe_routes(ns: &str) -> Result<BTreeSet<Vec<String>>, CmdError> {
    netlink::routes(ns)
}

fn rule_args(r: &dvr_plan::Rule) -> Vec<String> {
    let sel = match &r.selector {
        RuleSelector::From(n) => vec!["from".to_string(), n.to_string()],
        RuleSelector::Iif(d) => vec!["iif".to_string(), d.clone()],
    };
    [vec!["priority".to_string(), r.priority.to_string()], sel, vec!["table".into(), r.table.to_string()]].concat()
}

fn observe_rules(ns: &str) -> Result<BTreeSet<Vec<String>>, CmdError> {
    netlink::rules(ns)
}

fn observe_neigh(ns: &str) -> Result<BTreeSet<(String, String, String)>, CmdError> {
    netlink::neighbours(ns)
}

/// Reads `iptables-save` text: the `-A`/`:` lines of the tables present in
/// `text`, per table, with packet counters dropped, so what a namespace has can
/// be compared with what the plan wants. Public so it can be fuzzed.
pub fn ipt_lines(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut table = String::new();
    for l in text.lines() {
        if let Some(t) = l.strip_prefix('*') {
            table = t.to_string();
            out.entry(table.clone()).or_default();
        } else if l.starts_with("-A") || l.starts_with(':') {
            let l = l.split(" [").next().unwrap_or(l).to_string();
            out.entry(table.clone()).or_default().push(l);
        }
    }
    out
}

/// Compute the operations that bring `hp` onto the machine, as emulated host
/// `hp.host` (namespace [`Names::host_ns`], OVS instance `ovs`).
pub fn diff(names: &Names, hp: &HostPlan, ovs: &OvsInstance) -> Result<Vec<Op>, RealizeError> {
    let mut ops = Vec::new();
    let all_ns: BTreeSet<String> = ip::netns_list()?.into_iter().collect();
    let host_ns = names.host_ns(&hp.host);
    for sc in &hp.sysctls {
        if !sysctl_holds(ip::sysctl_get(&host_ns, &sc.key)?.as_deref(), sc) {
            ops.push(Op::Sysctl(host_ns.clone(), sc.key.clone(), sc.value.clone()));
        }
    }
    let wanted_ns: BTreeSet<String> = hp.namespaces.iter().map(|n| names.svc_ns(&hp.host, &n.name)).collect();
    for stale in all_ns.iter().filter(|n| n.starts_with(&format!("{host_ns}.")) && !wanted_ns.contains(*n)) {
        ops.push(Op::DelNetns(stale.clone()));
    }
    let host_links = observe_links(&host_ns, all_ns.contains(&host_ns))?;
    // Devices whose veth is (re)created now: OVS keeps a stale socket on a port
    // whose device was recreated under the same name, so such ports are re-added.
    let mut recreated: BTreeSet<String> = BTreeSet::new();
    for ns in &hp.namespaces {
        let lab_ns = names.svc_ns(&hp.host, &ns.name);
        let exists = all_ns.contains(&lab_ns);
        if !exists {
            ops.push(Op::AddNetns(lab_ns.clone()));
        }
        let links = observe_links(&lab_ns, exists)?;
        for d in &ns.devices {
            match links.get(&d.name) {
                None => {
                    let other = match &d.link {
                        DeviceLink::Ovs { .. } => (host_ns.clone(), d.name.clone()),
                        DeviceLink::Veth { peer, peer_namespace } => (names.svc_ns(&hp.host, peer_namespace), peer.clone()),
                    };
                    if matches!(d.link, DeviceLink::Ovs { .. }) {
                        recreated.insert(d.name.clone());
                    }
                    let (a, b) = ((lab_ns.clone(), d.name.clone()), other);
                    let op = if a <= b { Op::AddVeth { a, b } } else { Op::AddVeth { a: b, b: a } };
                    if !ops.contains(&op) {
                        ops.push(op);
                    }
                    ops.push(Op::SetMac(lab_ns.clone(), d.name.clone(), d.mac.to_string()));
                    ops.push(Op::LinkUp(lab_ns.clone(), d.name.clone()));
                    if matches!(d.link, DeviceLink::Ovs { .. }) {
                        ops.push(Op::LinkUp(host_ns.clone(), d.name.clone()));
                    }
                    for a in &d.addrs {
                        ops.push(Op::AddrAdd(lab_ns.clone(), d.name.clone(), a.to_string()));
                    }
                }
                Some((mac, up, addrs)) => {
                    if *mac != d.mac.to_string() {
                        ops.push(Op::SetMac(lab_ns.clone(), d.name.clone(), d.mac.to_string()));
                    }
                    if !up {
                        ops.push(Op::LinkUp(lab_ns.clone(), d.name.clone()));
                    }
                    if matches!(d.link, DeviceLink::Ovs { .. }) && !host_links.get(&d.name).is_some_and(|l| l.1) {
                        ops.push(Op::LinkUp(host_ns.clone(), d.name.clone()));
                    }
                    let want: BTreeSet<String> = d.addrs.iter().map(|a| a.to_string()).collect();
                    for a in want.difference(addrs) {
                        ops.push(Op::AddrAdd(lab_ns.clone(), d.name.clone(), a.clone()));
                    }
                    for a in addrs.difference(&want) {
                        ops.push(Op::AddrDel(lab_ns.clone(), d.name.clone(), a.clone()));
                    }
                }
            }
        }
        let (want_routes, have_routes) = (desired_routes(ns), if exists { observe_routes(&lab_ns)? } else { BTreeSet::new() });
        for r in want_routes.difference(&have_routes) {
            ops.push(Op::RouteReplace(lab_ns.clone(), r.clone()));
        }
        for r in have_routes.difference(&want_routes) {
            ops.push(Op::RouteDel(lab_ns.clone(), r.clone()));
        }
        let want_rules: BTreeSet<Vec<String>> = ns.rules.iter().map(rule_args).collect();
        let have_rules = if exists { observe_rules(&lab_ns)? } else { BTreeSet::new() };
        for r in have_rules.difference(&want_rules) {
            ops.push(Op::RuleDel(lab_ns.clone(), r.clone()));
        }
        for r in want_rules.difference(&have_rules) {
            ops.push(Op::RuleAdd(lab_ns.clone(), r.clone()));
        }
        let want_n: BTreeSet<(String, String, String)> =
            ns.neighbours.iter().map(|n| (n.ip.to_string(), n.mac.to_string(), n.dev.clone())).collect();
        let have_n = if exists { observe_neigh(&lab_ns)? } else { BTreeSet::new() };
        for (ipa, mac, dev) in want_n.difference(&have_n) {
            ops.push(Op::NeighReplace(lab_ns.clone(), ipa.clone(), mac.clone(), dev.clone()));
        }
        for (ipa, _, dev) in have_n.difference(&want_n) {
            ops.push(Op::NeighDel(lab_ns.clone(), ipa.clone(), dev.clone()));
        }
        for sc in &ns.sysctls {
            let have = if exists { ip::sysctl_get(&lab_ns, &sc.key)? } else { None };
            if !sysctl_holds(have.as_deref(), sc) {
                ops.push(Op::Sysctl(lab_ns.clone(), sc.key.clone(), sc.value.clone()));
            }
        }
        if !ns.iptables.is_empty() {
            let text = render::iptables_save(&ns.iptables);
            let have = if exists { ip::exec(&lab_ns, "iptables-legacy-save", &[], None)? } else { String::new() };
            let (want_l, have_l) = (ipt_lines(&text), ipt_lines(&have));
            if want_l.iter().any(|(t, lines)| have_l.get(t) != Some(lines)) {
                let flat = |m: &BTreeMap<String, Vec<String>>| -> BTreeSet<String> {
                    m.iter()
                        .filter(|(t, _)| want_l.contains_key(*t))
                        .flat_map(|(t, ls)| ls.iter().map(move |l| format!("*{t} {l}")))
                        .collect()
                };
                let (w, h) = (flat(&want_l), flat(&have_l));
                let why = RuleDrift { missing: w.difference(&h).cloned().collect(), unexpected: h.difference(&w).cloned().collect() };
                ops.push(Op::IptRestore(lab_ns.clone(), text, why));
            }
        }
    }
    // Open vSwitch: bridges, ports, tags, flows.
    let have_br: BTreeSet<String> = ovs.vsctl(&["list-br"])?.lines().map(String::from).collect();
    let want_br: BTreeSet<String> = hp.bridges.iter().map(|b| b.name.clone()).collect();
    for b in have_br.difference(&want_br) {
        ops.push(Op::DelBridge(b.clone()));
    }
    let tags = port_tags(ovs)?;
    for b in &hp.bridges {
        let have_ports: BTreeSet<String> = if have_br.contains(&b.name) {
            ovs.vsctl(&["list-ports", &b.name])?.lines().map(String::from).collect()
        } else {
            BTreeSet::new()
        };
        if !have_br.contains(&b.name) {
            ops.push(Op::AddBridge(b.name.clone()));
        }
        for p in &b.ports {
            if have_ports.contains(&p.name) && recreated.contains(&p.name) {
                ops.push(Op::DelPort(b.name.clone(), p.name.clone()));
            }
            if !have_ports.contains(&p.name) || recreated.contains(&p.name) {
                let peer = match &p.kind {
                    PortKind::Patch { peer } => Some(peer.clone()),
                    _ => None,
                };
                let mut ext: Vec<(String, String)> = vec![];
                if let Some(id) = &p.iface_id {
                    ext.push(("iface-id".into(), id.clone()));
                }
                if let Some(m) = p.mac {
                    ext.push(("attached-mac".into(), m.to_string()));
                }
                if let PortKind::Vif { instance } = &p.kind {
                    ext.push(("vm-uuid".into(), instance.clone()));
                }
                ops.push(Op::AddPort(b.name.clone(), p.name.clone(), peer, p.tag, ext));
            } else if let Some(t) = p.tag
                && tags.get(&p.name) != Some(&Some(t))
            {
                ops.push(Op::SetTag(p.name.clone(), t));
            }
        }
        let want_ports: BTreeSet<String> = b.ports.iter().map(|p| p.name.clone()).collect();
        for p in have_ports.difference(&want_ports) {
            ops.push(Op::DelPort(b.name.clone(), p.clone()));
        }
        let text = render::flows_text(b);
        let want = flow_keys(b.flows.iter().map(|f| &**f));
        let have = if have_br.contains(&b.name) {
            let dump = ovs.ofctl(&["--names", "dump-flows", &b.name], None)?;
            let parsed = dvr_openflow::parse_flows(&dump).map_err(|e| CmdError::Failed {
                cmd: format!("ovs-ofctl dump-flows {}", b.name),
                status: "unreadable output".into(),
                stderr: e.to_string(),
            })?;
            flow_keys(parsed.iter())
        } else {
            BTreeSet::new()
        };
        // Ports added now get new OpenFlow numbers; flows loaded earlier still
        // name the old ones (ovs-ofctl resolves names when flows are added), so
        // they are reloaded after the ports, in the same converge.
        let ports_changed = ops.iter().any(|o| match o {
            Op::AddPort(br, ..) | Op::DelPort(br, _) | Op::AddBridge(br) => *br == b.name,
            _ => false,
        });
        if want != have || ports_changed {
            let why = FlowDrift {
                missing: want.difference(&have).cloned().collect(),
                unexpected: have.difference(&want).cloned().collect(),
                ports_changed,
            };
            ops.push(Op::ReplaceFlows(b.name.clone(), text, why));
        }
    }
    Ok(ops)
}

fn flow_keys<'a>(flows: impl Iterator<Item = &'a dvr_openflow::Flow>) -> BTreeSet<String> {
    flows.map(|f| dvr_openflow::Flow::new(f.table.0, f.priority, f.matches.clone(), f.actions.clone()).to_string()).collect()
}

fn port_tags(ovs: &OvsInstance) -> Result<BTreeMap<String, Option<u16>>, CmdError> {
    let out = ovs.vsctl(&["--format=json", "--columns=name,tag", "list", "port"])?;
    let v: Value = serde_json::from_str(&out).map_err(|e| CmdError::Failed {
        cmd: "ovs-vsctl list port".into(),
        status: "unreadable output".into(),
        stderr: e.to_string(),
    })?;
    Ok(v["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| {
            let name = row[0].as_str().unwrap_or_default().to_string();
            let tag = row[1].as_u64().map(|t| t as u16);
            (name, tag)
        })
        .collect())
}

/// The order operations must run in: namespaces before devices, devices
/// before addresses and routes, devices before the OVS ports that use them.
fn stage(op: &Op) -> u8 {
    match op {
        Op::DelNetns(_) => 0,
        Op::AddNetns(_) => 1,
        Op::AddVeth { .. } => 2,
        Op::SetMac(..) => 3,
        Op::LinkUp(..) => 4,
        Op::AddrDel(..) => 5,
        Op::AddrAdd(..) => 6,
        Op::RouteDel(..) => 7,
        Op::RouteReplace(..) => 8,
        Op::RuleDel(..) => 9,
        Op::RuleAdd(..) => 10,
        Op::NeighDel(..) => 11,
        Op::NeighReplace(..) => 12,
        Op::Sysctl(..) => 13,
        Op::IptRestore(..) => 14,
        Op::DelBridge(_) => 15,
        Op::AddBridge(_) => 16,
        Op::DelPort(..) => 17,
        Op::AddPort(..) => 18,
        Op::SetTag(..) => 19,
        Op::ReplaceFlows(..) => 20,
    }
}

/// Apply operations in dependency order.
pub fn apply(ops: &[Op], ovs: &OvsInstance) -> Result<(), RealizeError> {
    let mut ops: Vec<&Op> = ops.iter().collect();
    ops.sort_by_key(|o| stage(o));
    for op in &ops {
        apply_one(op, ovs)?;
    }
    // Every interface OVS knows must be usable now (patch peers included).
    if !ops.is_empty() {
        let out = ovs.vsctl(&["--format=json", "--columns=name,error", "list", "interface"])?;
        let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        for row in v["data"].as_array().into_iter().flatten() {
            if let Some(e) = row[1].as_str().filter(|e| !e.is_empty()) {
                return Err(
                    CmdError::Failed { cmd: format!("interface {}", row[0]), status: "OVS error".into(), stderr: e.to_string() }.into()
                );
            }
        }
    }
    Ok(())
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn apply_one(op: &Op, ovs: &OvsInstance) -> Result<(), RealizeError> {
    match op {
        Op::AddNetns(n) => ip::netns_add(n)?,
        Op::AddVeth { a, b } => {
            netlink::veth(&a.0, &a.1, &b.0, &b.1)?;
            ip::tx_off(&a.0, &a.1)?;
            ip::tx_off(&b.0, &b.1)?;
        }
        Op::SetMac(n, d, m) => netlink::set_mac(n, d, m)?,
        Op::LinkUp(n, d) => netlink::link_up(n, d)?,
        Op::AddrAdd(n, d, a) => netlink::addr_add(n, d, a)?,
        Op::AddrDel(n, d, a) => netlink::addr_del(n, d, a)?,
        Op::RouteReplace(n, a) => netlink::route_replace(n, a)?,
        Op::RouteDel(n, a) => netlink::route_del(n, a)?,
        Op::RuleDel(n, a) => netlink::rule_del(n, a)?,
        Op::RuleAdd(n, a) => netlink::rule_add(n, a)?,
        Op::NeighReplace(n, ipa, mac, d) => netlink::neigh_replace(n, ipa, mac, d)?,
        Op::NeighDel(n, ipa, d) => netlink::neigh_del(n, ipa, d)?,
        Op::Sysctl(n, k, v) => ip::sysctl(n, k, v)?,
        Op::IptRestore(n, text, _) => {
            ip::exec(n, "iptables-legacy-restore", &[], Some(text))?;
        }
        Op::AddBridge(b) => {
            ovs.vsctl(&[
                "--",
                "add-br",
                b,
                "--",
                "set",
                "bridge",
                b,
                "datapath_type=netdev",
                "fail_mode=secure",
                "protocols=OpenFlow10,OpenFlow13,OpenFlow14",
                "other_config:disable-in-band=true",
            ])?;
        }
        Op::AddPort(b, p, peer, tag, ext) => {
            let mut args: Vec<String> = vec!["--".into(), "add-port".into(), b.clone(), p.clone()];
            if !ext.is_empty() {
                args.extend(["--".into(), "set".into(), "interface".into(), p.clone()]);
                args.extend(ext.iter().map(|(k, v)| format!("external_ids:{k}=\"{v}\"")));
            }
            if let Some(peer) = peer {
                args.extend([
                    "--".into(),
                    "set".into(),
                    "interface".into(),
                    p.clone(),
                    "type=patch".into(),
                    format!("options:peer={peer}"),
                ]);
            }
            if let Some(t) = tag {
                args.extend(["--".into(), "set".into(), "port".into(), p.clone(), format!("tag={t}")]);
            }
            ovs.vsctl(&strs(&args))?;
            // A patch port's peer may be added by a later operation: checked at the end.
            let err = if peer.is_some() { String::new() } else { ovs.vsctl(&["get", "interface", p, "error"])? };
            if !matches!(err.trim(), "" | "[]") {
                return Err(CmdError::Failed { cmd: format!("add-port {b} {p}"), status: "interface error".into(), stderr: err }.into());
            }
        }
        Op::SetTag(p, t) => {
            ovs.vsctl(&["set", "port", p, &format!("tag={t}")])?;
        }
        Op::DelPort(b, p) => {
            ovs.vsctl(&["--if-exists", "del-port", b, p])?;
        }
        Op::DelBridge(b) => ovs.del_bridge(b)?,
        Op::ReplaceFlows(b, text, _) => {
            ovs.ofctl(&["--bundle", "replace-flows", b, "-"], Some(text)).or_else(|_| ovs.ofctl(&["replace-flows", b, "-"], Some(text)))?;
        }
        Op::DelNetns(n) => {
            let _ = run("ip", &["netns", "del", n], &[], None)?;
        }
    }
    Ok(())
}
