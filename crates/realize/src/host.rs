//! Converge one host to its plan, as a sans-IO core with the I/O at its edges:
//!
//! 1. [`observe`] reads the host into a typed [`Observed`] snapshot (links,
//!    addresses, routes, rules, neighbours, sysctls, NAT, bridges, ports,
//!    tags, flows). A read that fails is an error, never "absent": treating an
//!    unreadable namespace as missing would make the converge recreate it.
//! 2. [`diff_observed`] is pure: plan + snapshot → the operations that make the
//!    host match. It runs without root, so its behaviour is unit-tested.
//! 3. [`apply_with`] runs operations in dependency order through a [`Backend`]:
//!    [`Linux`] (netlink, `ip`, OVS) or [`Recording`] (tests, `--dry-run`).
//!
//! Applying a plan twice finds nothing to do the second time; anything the plan
//! no longer has (stale namespaces, bridges, ports, routes, rules, neighbours)
//! is removed.

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

/// One end of a veth pair: the device `dev` in namespace `ns`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    /// Namespace holding the device.
    pub ns: String,
    /// Device name.
    pub dev: String,
}

/// A route as the plan and the kernel both describe it (connected and local
/// routes excluded: they come with addresses).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RouteSpec {
    /// Destination prefix, `default` for 0.0.0.0/0.
    pub dst: String,
    /// Next hop, when not on-link.
    pub via: Option<String>,
    /// Output device.
    pub dev: String,
    /// Routing table, `None` for main (254).
    pub table: Option<u32>,
}

impl RouteSpec {
    /// The `ip route` arguments (also the netlink layer's key).
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![self.dst.clone()];
        if let Some(v) = &self.via {
            a.extend(["via".into(), v.clone()]);
        }
        a.extend(["dev".into(), self.dev.clone()]);
        if let Some(t) = self.table {
            a.extend(["table".into(), t.to_string()]);
        }
        a
    }

    /// Read back the netlink layer's key; `None` for a shape it never produces.
    pub fn from_args(a: &[String]) -> Option<RouteSpec> {
        let (dst, rest) = a.split_first()?;
        let mut r = RouteSpec { dst: dst.clone(), via: None, dev: String::new(), table: None };
        for kv in rest.chunks(2) {
            match kv {
                [k, v] if k == "via" => r.via = Some(v.clone()),
                [k, v] if k == "dev" => r.dev = v.clone(),
                [k, v] if k == "table" => r.table = Some(v.parse().ok()?),
                _ => return None,
            }
        }
        Some(r)
    }

    fn of_plan(r: &dvr_plan::Route) -> RouteSpec {
        RouteSpec {
            dst: if r.dst.prefix_len() == 0 { "default".to_string() } else { r.dst.to_string() },
            via: r.via.map(|v| v.to_string()),
            dev: r.dev.clone(),
            table: match r.table {
                TableRef::Id(t) => Some(t),
                _ => None,
            },
        }
    }
}

impl fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.args().join(" "))
    }
}

/// What a policy rule selects packets by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum RuleMatch {
    /// Source prefix (`from 1.2.3.0/24`).
    From(String),
    /// Input device (`iif qr-…`).
    Iif(String),
}

/// A policy routing rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RuleSpec {
    /// Rule priority.
    pub priority: u32,
    /// What the rule selects.
    pub selector: RuleMatch,
    /// Table it looks up.
    pub table: u32,
}

impl RuleSpec {
    /// The `ip rule` arguments (also the netlink layer's key).
    pub fn args(&self) -> Vec<String> {
        let sel = match &self.selector {
            RuleMatch::From(n) => ["from".to_string(), n.clone()],
            RuleMatch::Iif(d) => ["iif".to_string(), d.clone()],
        };
        [vec!["priority".to_string(), self.priority.to_string()], sel.to_vec(), vec!["table".into(), self.table.to_string()]].concat()
    }

    /// Read back the netlink layer's key; `None` for a shape it never produces.
    pub fn from_args(a: &[String]) -> Option<RuleSpec> {
        match a {
            [p, prio, sel, what, t, table] if p == "priority" && t == "table" => Some(RuleSpec {
                priority: prio.parse().ok()?,
                selector: match sel.as_str() {
                    "from" => RuleMatch::From(what.clone()),
                    "iif" => RuleMatch::Iif(what.clone()),
                    _ => return None,
                },
                table: table.parse().ok()?,
            }),
            _ => None,
        }
    }

    fn of_plan(r: &dvr_plan::Rule) -> RuleSpec {
        RuleSpec {
            priority: r.priority,
            selector: match &r.selector {
                RuleSelector::From(n) => RuleMatch::From(n.to_string()),
                RuleSelector::Iif(d) => RuleMatch::Iif(d.clone()),
            },
            table: r.table,
        }
    }
}

impl fmt::Display for RuleSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.args().join(" "))
    }
}

/// A permanent neighbour entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NeighSpec {
    /// IPv4 address.
    pub ip: String,
    /// Link-layer address.
    pub mac: String,
    /// Device.
    pub dev: String,
}

/// One change to a host, printable for `--verbose`, `--dry-run` and tests.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    /// Create a namespace.
    AddNetns {
        /// Namespace.
        ns: String,
    },
    /// Create a veth pair between two namespaces (tx offload off on both ends).
    AddVeth {
        /// One end.
        a: Endpoint,
        /// The other end.
        b: Endpoint,
    },
    /// Set a device's MAC.
    SetMac {
        /// Namespace.
        ns: String,
        /// Device.
        dev: String,
        /// New MAC.
        mac: String,
    },
    /// Bring a device up.
    LinkUp {
        /// Namespace.
        ns: String,
        /// Device.
        dev: String,
    },
    /// Add an address (`ip addr replace`).
    AddrAdd {
        /// Namespace.
        ns: String,
        /// Device.
        dev: String,
        /// Address with prefix length.
        addr: String,
    },
    /// Remove an address.
    AddrDel {
        /// Namespace.
        ns: String,
        /// Device.
        dev: String,
        /// Address with prefix length.
        addr: String,
    },
    /// Add or replace a route.
    RouteReplace {
        /// Namespace.
        ns: String,
        /// The route.
        route: RouteSpec,
    },
    /// Remove a route.
    RouteDel {
        /// Namespace.
        ns: String,
        /// The route.
        route: RouteSpec,
    },
    /// Remove a policy rule.
    RuleDel {
        /// Namespace.
        ns: String,
        /// The rule.
        rule: RuleSpec,
    },
    /// Add a policy rule.
    RuleAdd {
        /// Namespace.
        ns: String,
        /// The rule.
        rule: RuleSpec,
    },
    /// Add or replace a permanent neighbour.
    NeighReplace {
        /// Namespace.
        ns: String,
        /// The entry.
        neigh: NeighSpec,
    },
    /// Remove a permanent neighbour.
    NeighDel {
        /// Namespace.
        ns: String,
        /// Its address.
        ip: String,
        /// Its device.
        dev: String,
    },
    /// Write a sysctl.
    Sysctl {
        /// Namespace.
        ns: String,
        /// Key (`net.ipv4.ip_forward`).
        key: String,
        /// Value.
        value: String,
    },
    /// Load netfilter tables atomically (`iptables-restore`).
    IptRestore {
        /// Namespace.
        ns: String,
        /// `iptables-save` text to load.
        text: String,
        /// Which rules differ.
        why: RuleDrift,
    },
    /// Create a bridge (userspace datapath, secure fail mode).
    AddBridge {
        /// Bridge.
        bridge: String,
    },
    /// Add a port, with `external_ids` as Neutron's agent and Nova set them
    /// (`iface-id`, `attached-mac`, `vm-uuid`), so `dvr collect` finds
    /// instances in the lab too.
    AddPort {
        /// Bridge.
        bridge: String,
        /// Port (and interface) name.
        port: String,
        /// Patch peer; `None` for an existing device.
        patch_peer: Option<String>,
        /// Access VLAN.
        tag: Option<u16>,
        /// Interface `external_ids`.
        external_ids: BTreeMap<String, String>,
        /// OpenFlow number to request (`ofport_request`): planned with the
        /// openvswitch firewall, whose flows name ports by number in `reg5`.
        ofport: Option<u32>,
    },
    /// Set a port's access VLAN.
    SetTag {
        /// Port.
        port: String,
        /// VLAN.
        tag: u16,
    },
    /// Remove a port.
    DelPort {
        /// Bridge.
        bridge: String,
        /// Port.
        port: String,
    },
    /// Remove a bridge.
    DelBridge {
        /// Bridge.
        bridge: String,
    },
    /// Replace all flows of a bridge atomically (`--bundle replace-flows`).
    ReplaceFlows {
        /// Bridge.
        bridge: String,
        /// Flow text (`ovs-ofctl` syntax, one per line).
        text: String,
        /// What differs.
        why: FlowDrift,
    },
    /// Delete a namespace (and with it its devices).
    DelNetns {
        /// Namespace.
        ns: String,
    },
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::AddNetns { ns } => write!(f, "ip netns add {ns}"),
            Op::AddVeth { a, b } => write!(f, "ip link add {} netns {} type veth peer name {} netns {}", a.dev, a.ns, b.dev, b.ns),
            Op::SetMac { ns, dev, mac } => write!(f, "ip -n {ns} link set {dev} address {mac}"),
            Op::LinkUp { ns, dev } => write!(f, "ip -n {ns} link set {dev} up"),
            Op::AddrAdd { ns, dev, addr } => write!(f, "ip -n {ns} addr replace {addr} dev {dev}"),
            Op::AddrDel { ns, dev, addr } => write!(f, "ip -n {ns} addr del {addr} dev {dev}"),
            Op::RouteReplace { ns, route } => write!(f, "ip -n {ns} route replace {route}"),
            Op::RouteDel { ns, route } => write!(f, "ip -n {ns} route del {route}"),
            Op::RuleDel { ns, rule } => write!(f, "ip -n {ns} rule del {rule}"),
            Op::RuleAdd { ns, rule } => write!(f, "ip -n {ns} rule add {rule}"),
            Op::NeighReplace { ns, neigh } => {
                write!(f, "ip -n {ns} neigh replace {} lladdr {} dev {} nud permanent", neigh.ip, neigh.mac, neigh.dev)
            }
            Op::NeighDel { ns, ip, dev } => write!(f, "ip -n {ns} neigh del {ip} dev {dev}"),
            Op::Sysctl { ns, key, value } => write!(f, "ip netns exec {ns} sysctl -w {key}={value}"),
            Op::IptRestore { ns, why, .. } => write!(f, "ip netns exec {ns} iptables-legacy-restore ({why})"),
            Op::AddBridge { bridge } => write!(f, "ovs-vsctl add-br {bridge}"),
            Op::AddPort { bridge, port, patch_peer, tag, .. } => write!(
                f,
                "ovs-vsctl add-port {bridge} {port}{}{}",
                patch_peer.as_ref().map(|x| format!(" (patch to {x})")).unwrap_or_default(),
                tag.map(|t| format!(" tag={t}")).unwrap_or_default()
            ),
            Op::SetTag { port, tag } => write!(f, "ovs-vsctl set port {port} tag={tag}"),
            Op::DelPort { bridge, port } => write!(f, "ovs-vsctl del-port {bridge} {port}"),
            Op::DelBridge { bridge } => write!(f, "ovs-vsctl del-br {bridge}"),
            Op::ReplaceFlows { bridge, text, why } => {
                write!(f, "ovs-ofctl --bundle replace-flows {bridge} ({} flows; {why})", text.lines().count())
            }
            Op::DelNetns { ns } => write!(f, "ip netns del {ns}"),
        }
    }
}

impl Op {
    /// What kind of host state this operation repairs, for drift reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::AddNetns { .. } | Op::DelNetns { .. } => "namespace",
            Op::AddVeth { .. } | Op::SetMac { .. } | Op::LinkUp { .. } => "device",
            Op::AddrAdd { .. } | Op::AddrDel { .. } => "address",
            Op::RouteReplace { .. } | Op::RouteDel { .. } => "route",
            Op::RuleAdd { .. } | Op::RuleDel { .. } => "rule",
            Op::NeighReplace { .. } | Op::NeighDel { .. } => "neighbour",
            Op::Sysctl { .. } => "sysctl",
            Op::IptRestore { .. } => "nat",
            Op::AddBridge { .. } | Op::DelBridge { .. } => "bridge",
            Op::AddPort { .. } | Op::DelPort { .. } | Op::SetTag { .. } => "port",
            Op::ReplaceFlows { .. } => "flows",
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

/// A device as observed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkObs {
    /// Its MAC (`aa:bb:…`).
    pub mac: String,
    /// Administratively up.
    pub up: bool,
    /// IPv4 addresses with prefix length.
    pub addrs: BTreeSet<String>,
}

/// One namespace as observed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NsObs {
    /// Devices by name.
    pub links: BTreeMap<String, LinkObs>,
    /// Routes of every table except the kernel's own.
    pub routes: BTreeSet<RouteSpec>,
    /// Policy rules beyond the kernel's defaults.
    pub rules: BTreeSet<RuleSpec>,
    /// Permanent neighbours.
    pub neighbours: BTreeSet<NeighSpec>,
    /// The sysctls the plan sets, as read (`None`: key does not exist).
    pub sysctls: BTreeMap<String, Option<String>>,
    /// `iptables-save` output, read when the plan has NAT for this namespace.
    pub iptables: Option<String>,
}

/// One bridge as observed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeObs {
    /// Port names.
    pub ports: BTreeSet<String>,
    /// Flows normalised as [`flow_key`]; read for planned bridges only.
    pub flows: BTreeSet<String>,
}

/// A typed snapshot of one emulated host: everything [`diff_observed`] needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// The host's own namespace and the Neutron namespaces under it that exist.
    pub namespaces: BTreeSet<String>,
    /// Namespaces read (the host's own and the planned ones that exist).
    pub ns: BTreeMap<String, NsObs>,
    /// Bridges by name.
    pub bridges: BTreeMap<String, BridgeObs>,
    /// Access VLAN of every port (`None`: trunk).
    pub port_tags: BTreeMap<String, Option<u16>>,
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

fn read_ns(ns: &str, sysctl_keys: &[&str], nat: bool) -> Result<NsObs, CmdError> {
    let links = netlink::links(ns)?.into_iter().map(|(n, x)| (n, LinkObs { mac: x.mac, up: x.up, addrs: x.addrs })).collect();
    let unreadable = |what: &str, a: &[String]| CmdError::Failed {
        cmd: format!("netlink in {ns}: {what}"),
        status: "unexpected shape".into(),
        stderr: a.join(" "),
    };
    let routes =
        netlink::routes(ns)?.iter().map(|a| RouteSpec::from_args(a).ok_or_else(|| unreadable("route", a))).collect::<Result<_, _>>()?;
    let rules =
        netlink::rules(ns)?.iter().map(|a| RuleSpec::from_args(a).ok_or_else(|| unreadable("rule", a))).collect::<Result<_, _>>()?;
    let neighbours = netlink::neighbours(ns)?.into_iter().map(|(ip, mac, dev)| NeighSpec { ip, mac, dev }).collect();
    let mut sysctls = BTreeMap::new();
    for k in sysctl_keys {
        sysctls.insert(k.to_string(), ip::sysctl_get(ns, k)?);
    }
    let iptables = if nat { Some(ip::exec(ns, "iptables-legacy-save", &[], None)?) } else { None };
    Ok(NsObs { links, routes, rules, neighbours, sysctls, iptables })
}

/// Read emulated host `hp.host` (namespace [`Names::host_ns`], OVS instance
/// `ovs`): every namespace under it, the planned ones in full, every bridge
/// with its ports, and the flows of planned bridges. The plan only says what
/// to read (which sysctl keys, which bridges' flows); any read that fails is
/// an error.
pub fn observe(names: &Names, hp: &HostPlan, ovs: &OvsInstance) -> Result<Observed, RealizeError> {
    let host_ns = names.host_ns(&hp.host);
    let mut o = Observed::default();
    let prefix = format!("{host_ns}.");
    o.namespaces = ip::netns_list()?.into_iter().filter(|n| *n == host_ns || n.starts_with(&prefix)).collect();
    if o.namespaces.contains(&host_ns) {
        let keys: Vec<&str> = hp.sysctls.iter().map(|s| s.key.as_str()).collect();
        o.ns.insert(host_ns.clone(), read_ns(&host_ns, &keys, false)?);
    }
    for ns in &hp.namespaces {
        let lab_ns = names.svc_ns(&hp.host, &ns.name);
        if o.namespaces.contains(&lab_ns) {
            let keys: Vec<&str> = ns.sysctls.iter().map(|s| s.key.as_str()).collect();
            o.ns.insert(lab_ns.clone(), read_ns(&lab_ns, &keys, !ns.iptables.is_empty())?);
        }
    }
    let planned: BTreeSet<&str> = hp.bridges.iter().map(|b| b.name.as_str()).collect();
    for b in ovs.vsctl(&["list-br"])?.lines() {
        let ports = ovs.vsctl(&["list-ports", b])?.lines().map(String::from).collect();
        let flows = if planned.contains(b) {
            let dump = ovs.ofctl(&["--names", "dump-flows", b], None)?;
            let parsed = dvr_openflow::parse_flows(&dump).map_err(|e| CmdError::Failed {
                cmd: format!("ovs-ofctl dump-flows {b}"),
                status: "unreadable output".into(),
                stderr: e.to_string(),
            })?;
            parsed.iter().map(flow_key).collect()
        } else {
            BTreeSet::new()
        };
        o.bridges.insert(b.to_string(), BridgeObs { ports, flows });
    }
    o.port_tags = port_tags(ovs)?;
    Ok(o)
}

/// What [`observe`] reads on a host that matches `hp` exactly: the reference
/// point of the pure diff (0 operations), for tests and for reasoning about
/// what a converged host holds.
pub fn converged(names: &Names, hp: &HostPlan) -> Observed {
    let host_ns = names.host_ns(&hp.host);
    let mut o = Observed::default();
    o.namespaces.insert(host_ns.clone());
    let mut host = NsObs { sysctls: hp.sysctls.iter().map(|s| (s.key.clone(), Some(s.value.clone()))).collect(), ..NsObs::default() };
    for ns in &hp.namespaces {
        let lab_ns = names.svc_ns(&hp.host, &ns.name);
        o.namespaces.insert(lab_ns.clone());
        let mut n = NsObs::default();
        for d in &ns.devices {
            if matches!(d.link, DeviceLink::Ovs { .. }) {
                host.links.insert(d.name.clone(), LinkObs { mac: String::new(), up: true, addrs: BTreeSet::new() });
            }
            let addrs = d.addrs.iter().map(|a| a.to_string()).collect();
            n.links.insert(d.name.clone(), LinkObs { mac: d.mac.to_string(), up: true, addrs });
        }
        n.routes = ns.routes.iter().filter(|r| r.src.is_none()).map(RouteSpec::of_plan).collect();
        n.rules = ns.rules.iter().map(RuleSpec::of_plan).collect();
        n.neighbours =
            ns.neighbours.iter().map(|x| NeighSpec { ip: x.ip.to_string(), mac: x.mac.to_string(), dev: x.dev.clone() }).collect();
        n.sysctls = ns.sysctls.iter().map(|s| (s.key.clone(), Some(s.value.clone()))).collect();
        n.iptables = (!ns.iptables.is_empty()).then(|| render::iptables_save(&ns.iptables));
        o.ns.insert(lab_ns, n);
    }
    o.ns.insert(host_ns, host);
    for b in &hp.bridges {
        let ports = b.ports.iter().map(|p| p.name.clone()).collect();
        let flows = b.flows.iter().map(|f| flow_key(f)).collect();
        o.bridges.insert(b.name.clone(), BridgeObs { ports, flows });
        for p in &b.ports {
            o.port_tags.insert(p.name.clone(), p.tag);
        }
    }
    o
}

/// A flow without its cookie and counters, comparable between plan and dump.
pub fn flow_key(f: &dvr_openflow::Flow) -> String {
    dvr_openflow::Flow::new(f.table.0, f.priority, f.matches.clone(), f.actions.clone()).to_string()
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

/// Observe the host and compute the operations that bring `hp` onto it.
pub fn diff(names: &Names, hp: &HostPlan, ovs: &OvsInstance) -> Result<Vec<Op>, RealizeError> {
    Ok(diff_observed(names, hp, &observe(names, hp, ovs)?))
}

/// The operations that make host `hp.host`, as observed in `o`, match `hp`.
/// Pure: no I/O, so it is tested without root.
pub fn diff_observed(names: &Names, hp: &HostPlan, o: &Observed) -> Vec<Op> {
    let mut ops = Vec::new();
    let empty = NsObs::default();
    let host_ns = names.host_ns(&hp.host);
    let host = o.ns.get(&host_ns).unwrap_or(&empty);
    for sc in &hp.sysctls {
        if !sysctl_holds(host.sysctls.get(&sc.key).cloned().flatten().as_deref(), sc) {
            ops.push(Op::Sysctl { ns: host_ns.clone(), key: sc.key.clone(), value: sc.value.clone() });
        }
    }
    let wanted_ns: BTreeSet<String> = hp.namespaces.iter().map(|n| names.svc_ns(&hp.host, &n.name)).collect();
    for stale in o.namespaces.iter().filter(|n| n.starts_with(&format!("{host_ns}.")) && !wanted_ns.contains(*n)) {
        ops.push(Op::DelNetns { ns: stale.clone() });
    }
    // Devices whose veth is (re)created now: OVS keeps a stale socket on a port
    // whose device was recreated under the same name, so such ports are re-added.
    let mut recreated: BTreeSet<String> = BTreeSet::new();
    for ns in &hp.namespaces {
        let lab_ns = names.svc_ns(&hp.host, &ns.name);
        let exists = o.namespaces.contains(&lab_ns);
        if !exists {
            ops.push(Op::AddNetns { ns: lab_ns.clone() });
        }
        let have = o.ns.get(&lab_ns).unwrap_or(&empty);
        for d in &ns.devices {
            let is_ovs = matches!(d.link, DeviceLink::Ovs { .. });
            match have.links.get(&d.name) {
                None => {
                    let other = match &d.link {
                        DeviceLink::Ovs { .. } => Endpoint { ns: host_ns.clone(), dev: d.name.clone() },
                        DeviceLink::Veth { peer, peer_namespace } => {
                            Endpoint { ns: names.svc_ns(&hp.host, peer_namespace), dev: peer.clone() }
                        }
                    };
                    if is_ovs {
                        recreated.insert(d.name.clone());
                    }
                    let (a, b) = (Endpoint { ns: lab_ns.clone(), dev: d.name.clone() }, other);
                    let op = if a <= b { Op::AddVeth { a, b } } else { Op::AddVeth { a: b, b: a } };
                    if !ops.contains(&op) {
                        ops.push(op);
                    }
                    ops.push(Op::SetMac { ns: lab_ns.clone(), dev: d.name.clone(), mac: d.mac.to_string() });
                    ops.push(Op::LinkUp { ns: lab_ns.clone(), dev: d.name.clone() });
                    if is_ovs {
                        ops.push(Op::LinkUp { ns: host_ns.clone(), dev: d.name.clone() });
                    }
                    for a in &d.addrs {
                        ops.push(Op::AddrAdd { ns: lab_ns.clone(), dev: d.name.clone(), addr: a.to_string() });
                    }
                }
                Some(l) => {
                    if l.mac != d.mac.to_string() {
                        ops.push(Op::SetMac { ns: lab_ns.clone(), dev: d.name.clone(), mac: d.mac.to_string() });
                    }
                    if !l.up {
                        ops.push(Op::LinkUp { ns: lab_ns.clone(), dev: d.name.clone() });
                    }
                    if is_ovs && !host.links.get(&d.name).is_some_and(|l| l.up) {
                        ops.push(Op::LinkUp { ns: host_ns.clone(), dev: d.name.clone() });
                    }
                    let want: BTreeSet<String> = d.addrs.iter().map(|a| a.to_string()).collect();
                    for a in want.difference(&l.addrs) {
                        ops.push(Op::AddrAdd { ns: lab_ns.clone(), dev: d.name.clone(), addr: a.clone() });
                    }
                    for a in l.addrs.difference(&want) {
                        ops.push(Op::AddrDel { ns: lab_ns.clone(), dev: d.name.clone(), addr: a.clone() });
                    }
                }
            }
        }
        let want_routes: BTreeSet<RouteSpec> = ns.routes.iter().filter(|r| r.src.is_none()).map(RouteSpec::of_plan).collect();
        for r in want_routes.difference(&have.routes) {
            ops.push(Op::RouteReplace { ns: lab_ns.clone(), route: r.clone() });
        }
        for r in have.routes.difference(&want_routes) {
            ops.push(Op::RouteDel { ns: lab_ns.clone(), route: r.clone() });
        }
        let want_rules: BTreeSet<RuleSpec> = ns.rules.iter().map(RuleSpec::of_plan).collect();
        for r in have.rules.difference(&want_rules) {
            ops.push(Op::RuleDel { ns: lab_ns.clone(), rule: r.clone() });
        }
        for r in want_rules.difference(&have.rules) {
            ops.push(Op::RuleAdd { ns: lab_ns.clone(), rule: r.clone() });
        }
        let want_n: BTreeSet<NeighSpec> =
            ns.neighbours.iter().map(|n| NeighSpec { ip: n.ip.to_string(), mac: n.mac.to_string(), dev: n.dev.clone() }).collect();
        for n in want_n.difference(&have.neighbours) {
            ops.push(Op::NeighReplace { ns: lab_ns.clone(), neigh: n.clone() });
        }
        for n in have.neighbours.difference(&want_n) {
            ops.push(Op::NeighDel { ns: lab_ns.clone(), ip: n.ip.clone(), dev: n.dev.clone() });
        }
        for sc in &ns.sysctls {
            if !sysctl_holds(have.sysctls.get(&sc.key).cloned().flatten().as_deref(), sc) {
                ops.push(Op::Sysctl { ns: lab_ns.clone(), key: sc.key.clone(), value: sc.value.clone() });
            }
        }
        if !ns.iptables.is_empty() {
            let text = render::iptables_save(&ns.iptables);
            let (want_l, have_l) = (ipt_lines(&text), ipt_lines(have.iptables.as_deref().unwrap_or_default()));
            if want_l.iter().any(|(t, lines)| have_l.get(t) != Some(lines)) {
                let flat = |m: &BTreeMap<String, Vec<String>>| -> BTreeSet<String> {
                    m.iter()
                        .filter(|(t, _)| want_l.contains_key(*t))
                        .flat_map(|(t, ls)| ls.iter().map(move |l| format!("*{t} {l}")))
                        .collect()
                };
                let (w, h) = (flat(&want_l), flat(&have_l));
                let why = RuleDrift { missing: w.difference(&h).cloned().collect(), unexpected: h.difference(&w).cloned().collect() };
                ops.push(Op::IptRestore { ns: lab_ns.clone(), text, why });
            }
        }
    }
    // Open vSwitch: bridges, ports, tags, flows.
    let want_br: BTreeSet<&str> = hp.bridges.iter().map(|b| b.name.as_str()).collect();
    for b in o.bridges.keys().filter(|b| !want_br.contains(b.as_str())) {
        ops.push(Op::DelBridge { bridge: b.clone() });
    }
    let no_bridge = BridgeObs::default();
    for b in &hp.bridges {
        let have = o.bridges.get(&b.name);
        let have_b = have.unwrap_or(&no_bridge);
        if have.is_none() {
            ops.push(Op::AddBridge { bridge: b.name.clone() });
        }
        for p in &b.ports {
            let present = have_b.ports.contains(&p.name);
            if present && recreated.contains(&p.name) {
                ops.push(Op::DelPort { bridge: b.name.clone(), port: p.name.clone() });
            }
            if !present || recreated.contains(&p.name) {
                let patch_peer = match &p.kind {
                    PortKind::Patch { peer } => Some(peer.clone()),
                    _ => None,
                };
                let mut external_ids = BTreeMap::new();
                if let Some(id) = &p.iface_id {
                    external_ids.insert("iface-id".to_string(), id.clone());
                }
                if let Some(m) = p.mac {
                    external_ids.insert("attached-mac".to_string(), m.to_string());
                }
                if let PortKind::Vif { instance } = &p.kind {
                    external_ids.insert("vm-uuid".to_string(), instance.clone());
                }
                ops.push(Op::AddPort {
                    bridge: b.name.clone(),
                    port: p.name.clone(),
                    patch_peer,
                    tag: p.tag,
                    external_ids,
                    ofport: p.ofport,
                });
            } else if let Some(t) = p.tag
                && o.port_tags.get(&p.name) != Some(&Some(t))
            {
                ops.push(Op::SetTag { port: p.name.clone(), tag: t });
            }
        }
        let want_ports: BTreeSet<String> = b.ports.iter().map(|p| p.name.clone()).collect();
        for p in have_b.ports.difference(&want_ports) {
            ops.push(Op::DelPort { bridge: b.name.clone(), port: p.clone() });
        }
        let want: BTreeSet<String> = b.flows.iter().map(|f| flow_key(f)).collect();
        // Ports added now get new OpenFlow numbers; flows loaded earlier still
        // name the old ones (ovs-ofctl resolves names when flows are added), so
        // they are reloaded after the ports, in the same converge.
        let ports_changed = ops.iter().any(|op| match op {
            Op::AddPort { bridge, .. } | Op::DelPort { bridge, .. } | Op::AddBridge { bridge } => *bridge == b.name,
            _ => false,
        });
        if want != have_b.flows || ports_changed {
            let why = FlowDrift {
                missing: want.difference(&have_b.flows).cloned().collect(),
                unexpected: have_b.flows.difference(&want).cloned().collect(),
                ports_changed,
            };
            ops.push(Op::ReplaceFlows { bridge: b.name.clone(), text: render::flows_text(b), why });
        }
    }
    ops
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
        Op::DelNetns { .. } => 0,
        Op::AddNetns { .. } => 1,
        Op::AddVeth { .. } => 2,
        Op::SetMac { .. } => 3,
        Op::LinkUp { .. } => 4,
        Op::AddrDel { .. } => 5,
        Op::AddrAdd { .. } => 6,
        Op::RouteDel { .. } => 7,
        Op::RouteReplace { .. } => 8,
        Op::RuleDel { .. } => 9,
        Op::RuleAdd { .. } => 10,
        Op::NeighDel { .. } => 11,
        Op::NeighReplace { .. } => 12,
        Op::Sysctl { .. } => 13,
        Op::IptRestore { .. } => 14,
        Op::DelBridge { .. } => 15,
        Op::AddBridge { .. } => 16,
        Op::DelPort { .. } => 17,
        Op::AddPort { .. } => 18,
        Op::SetTag { .. } => 19,
        Op::ReplaceFlows { .. } => 20,
    }
}

/// Operations in the order they must run (stable within a stage).
pub fn ordered(ops: &[Op]) -> Vec<&Op> {
    let mut ops: Vec<&Op> = ops.iter().collect();
    ops.sort_by_key(|o| stage(o));
    ops
}

/// Where operations go: the machine ([`Linux`]) or a record ([`Recording`]),
/// so the converge logic is the same for `--dry-run`, tests and real hosts.
pub trait Backend {
    /// Carry out one operation.
    fn apply_op(&mut self, op: &Op) -> Result<(), RealizeError>;
    /// Called once after a non-empty batch: a place to check the result.
    fn finish(&mut self) -> Result<(), RealizeError> {
        Ok(())
    }
}

/// The real host: netlink, `ip`, `iptables-restore`, one OVS instance.
pub struct Linux<'a> {
    /// The host's Open vSwitch.
    pub ovs: &'a OvsInstance,
}

/// Records operations instead of applying them (tests, `--dry-run`).
#[derive(Debug, Default)]
pub struct Recording {
    /// Operations in the order they would have run.
    pub applied: Vec<Op>,
}

impl Backend for Recording {
    fn apply_op(&mut self, op: &Op) -> Result<(), RealizeError> {
        self.applied.push(op.clone());
        Ok(())
    }
}

/// Apply operations in dependency order through `backend`.
pub fn apply_with(ops: &[Op], backend: &mut dyn Backend) -> Result<(), RealizeError> {
    let ops = ordered(ops);
    for op in &ops {
        backend.apply_op(op)?;
    }
    if !ops.is_empty() {
        backend.finish()?;
    }
    Ok(())
}

/// Apply operations in dependency order on the machine.
pub fn apply(ops: &[Op], ovs: &OvsInstance) -> Result<(), RealizeError> {
    apply_with(ops, &mut Linux { ovs })
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

impl Backend for Linux<'_> {
    fn finish(&mut self) -> Result<(), RealizeError> {
        // Every interface OVS knows must be usable now (patch peers included).
        let out = self.ovs.vsctl(&["--format=json", "--columns=name,error", "list", "interface"])?;
        let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        for row in v["data"].as_array().into_iter().flatten() {
            if let Some(e) = row[1].as_str().filter(|e| !e.is_empty()) {
                return Err(
                    CmdError::Failed { cmd: format!("interface {}", row[0]), status: "OVS error".into(), stderr: e.to_string() }.into()
                );
            }
        }
        Ok(())
    }

    fn apply_op(&mut self, op: &Op) -> Result<(), RealizeError> {
        let ovs = self.ovs;
        match op {
            Op::AddNetns { ns } => ip::netns_add(ns)?,
            Op::AddVeth { a, b } => {
                netlink::veth(&a.ns, &a.dev, &b.ns, &b.dev)?;
                ip::tx_off(&a.ns, &a.dev)?;
                ip::tx_off(&b.ns, &b.dev)?;
            }
            Op::SetMac { ns, dev, mac } => netlink::set_mac(ns, dev, mac)?,
            Op::LinkUp { ns, dev } => netlink::link_up(ns, dev)?,
            Op::AddrAdd { ns, dev, addr } => netlink::addr_add(ns, dev, addr)?,
            Op::AddrDel { ns, dev, addr } => netlink::addr_del(ns, dev, addr)?,
            Op::RouteReplace { ns, route } => netlink::route_replace(ns, &route.args())?,
            Op::RouteDel { ns, route } => netlink::route_del(ns, &route.args())?,
            Op::RuleDel { ns, rule } => netlink::rule_del(ns, &rule.args())?,
            Op::RuleAdd { ns, rule } => netlink::rule_add(ns, &rule.args())?,
            Op::NeighReplace { ns, neigh } => netlink::neigh_replace(ns, &neigh.ip, &neigh.mac, &neigh.dev)?,
            Op::NeighDel { ns, ip, dev } => netlink::neigh_del(ns, ip, dev)?,
            Op::Sysctl { ns, key, value } => ip::sysctl(ns, key, value)?,
            Op::IptRestore { ns, text, .. } => {
                ip::exec(ns, "iptables-legacy-restore", &[], Some(text))?;
            }
            Op::AddBridge { bridge } => {
                ovs.vsctl(&[
                    "--",
                    "add-br",
                    bridge,
                    "--",
                    "set",
                    "bridge",
                    bridge,
                    "datapath_type=netdev",
                    "fail_mode=secure",
                    "protocols=OpenFlow10,OpenFlow13,OpenFlow14",
                    "other_config:disable-in-band=true",
                ])?;
            }
            Op::AddPort { bridge, port, patch_peer, tag, external_ids, ofport } => {
                let mut args: Vec<String> = vec!["--".into(), "add-port".into(), bridge.clone(), port.clone()];
                if let Some(n) = ofport {
                    args.extend(["--".into(), "set".into(), "interface".into(), port.clone(), format!("ofport_request={n}")]);
                }
                if !external_ids.is_empty() {
                    args.extend(["--".into(), "set".into(), "interface".into(), port.clone()]);
                    args.extend(external_ids.iter().map(|(k, v)| format!("external_ids:{k}=\"{v}\"")));
                }
                if let Some(peer) = patch_peer {
                    args.extend([
                        "--".into(),
                        "set".into(),
                        "interface".into(),
                        port.clone(),
                        "type=patch".into(),
                        format!("options:peer={peer}"),
                    ]);
                }
                if let Some(t) = tag {
                    args.extend(["--".into(), "set".into(), "port".into(), port.clone(), format!("tag={t}")]);
                }
                ovs.vsctl(&strs(&args))?;
                // A patch port's peer may be added by a later operation: checked at the end.
                let err = if patch_peer.is_some() { String::new() } else { ovs.vsctl(&["get", "interface", port, "error"])? };
                if !matches!(err.trim(), "" | "[]") {
                    return Err(CmdError::Failed {
                        cmd: format!("add-port {bridge} {port}"),
                        status: "interface error".into(),
                        stderr: err,
                    }
                    .into());
                }
            }
            Op::SetTag { port, tag } => {
                ovs.vsctl(&["set", "port", port, &format!("tag={tag}")])?;
            }
            Op::DelPort { bridge, port } => {
                ovs.vsctl(&["--if-exists", "del-port", bridge, port])?;
            }
            Op::DelBridge { bridge } => ovs.del_bridge(bridge)?,
            Op::ReplaceFlows { bridge, text, .. } => {
                ovs.ofctl(&["--bundle", "replace-flows", bridge, "-"], Some(text))
                    .or_else(|_| ovs.ofctl(&["replace-flows", bridge, "-"], Some(text)))?;
            }
            Op::DelNetns { ns } => {
                let _ = run("ip", &["netns", "del", ns], &[], None)?;
            }
        }
        Ok(())
    }
}
