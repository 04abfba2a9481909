//! The typed trace: every step a packet takes is a [`Step`] with data, every
//! copy's end a [`Fate`], every verdict a [`Verdict`] with a [`DropReason`].
//! Renderers (text, minimal, JSON, the pictures of `dvr draw` and the HTML
//! report) pattern-match on these; nothing reads trace text back.

use crate::name::Name;
use crate::netfilter::Hook;
use crate::ofp::OvsEvent;
use crate::packet::{Encap, Frame, PacketView};
use crate::stack::{Describe, IpPkt};
use dvr_model::MacAddr;
use dvr_model::text::Ipv4Text as Ip;
use dvr_openflow::Flow;
use dvr_plan::{Route, Rule, RuleSelector, TableRef};
use serde::{Serialize, Serializer};
use smallvec::SmallVec;
use std::fmt::{self, Write as _};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// The closed set of hop kinds of the trace contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HopKind {
    /// An OpenFlow table lookup or NORMAL in a bridge.
    Openflow,
    /// A step in a Neutron namespace.
    Namespace,
    /// A frame on a physical network.
    Wire,
    /// A step in an instance, external host or the upstream gateway.
    Endpoint,
}

/// What NORMAL decided for a frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum NormalDecision {
    /// The destination was learned on this port.
    Learned {
        /// Output port.
        port: Name,
    },
    /// The destination is unknown: flooded to these ports of the VLAN.
    Flood {
        /// Output ports.
        ports: Vec<Name>,
    },
    /// No other port carries the VLAN: dropped.
    NoPort,
}

/// Why an ARP request was not answered (names resolved).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum ArpDecline {
    /// The address is on another device and `arp_ignore=1`.
    OnOtherDevice {
        /// The device that owns the address.
        dev: Name,
    },
    /// Proxy ARP is on but the route does not leave by another device.
    NoProxyRoute,
    /// Not a local address.
    NotLocal,
}

/// One step of a trace, with the data it acted on.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// An endpoint or namespace generated a packet.
    Send {
        /// The packet.
        packet: IpPkt,
    },
    /// A flow matched in an OpenFlow table and its actions ran.
    Table {
        /// Table number.
        table: u8,
        /// The table's name in the pipeline, when known.
        table_name: Option<&'static str>,
        /// The flow, with its provenance (builder and reason).
        flow: Arc<Flow>,
    },
    /// No flow matched in a table.
    Miss {
        /// Table number.
        table: u8,
        /// The table's name, when known.
        table_name: Option<&'static str>,
        /// The first table (the frame is dropped) or a resubmit (nothing done).
        fatal: bool,
    },
    /// NORMAL switched the frame.
    Normal {
        /// VLAN NORMAL worked in.
        vlan: u16,
        /// What it decided.
        decision: NormalDecision,
    },
    /// OVS skipped an action or dropped the frame outside any flow.
    Ovs {
        /// What happened.
        event: OvsEvent,
    },
    /// A `ct` action: what Open vSwitch's connection tracker said of the packet.
    OvsCt {
        /// Conntrack zone (Neutron: the port's network).
        zone: u16,
        /// `ct_state` found, e.g. `+new+trk` or `+est+rpl+trk`.
        state: String,
        /// `ct_mark` of the connection.
        mark: u32,
        /// Whether the connection was committed (created or its mark set).
        commit: bool,
        /// Table the tracked packet resumes in.
        recirc: Option<u8>,
    },
    /// The tracked packet resumed after a `ct(table=…)` recirculation.
    Recirculate {
        /// Table.
        table: u8,
        /// Its name, when known.
        table_name: Option<&'static str>,
    },
    /// A conjunctive match completed (Neutron: a rule with a remote group or
    /// several ports); the next step is the `conj_id` flow it led to.
    Conjunction {
        /// Conjunction id.
        id: u32,
        /// The clause flows that matched.
        clauses: Vec<Arc<Flow>>,
    },
    /// The frame crossed a patch port into another bridge of the same host.
    Patch {
        /// Port it left by.
        port: Name,
        /// Bridge it entered.
        to_bridge: Name,
        /// Port it entered by.
        to_port: Name,
    },
    /// Output to a port with nothing attached: the copy ends.
    Unattached {
        /// The port.
        port: Name,
    },
    /// The frame crossed a physical network.
    Wire {
        /// Physical network.
        network: Name,
        /// Its VLAN on the wire, if tagged.
        vlan: Option<u16>,
        /// The NIC or machine it came from.
        from: Name,
        /// Where the switch sent it.
        to: Vec<Name>,
        /// Whether the destination was learned (else flooded).
        learned: bool,
    },
    /// The frame crossed the underlay inside a VXLAN tunnel: encapsulated
    /// by the sender's tunnel port, decapsulated by the receiver's.
    Tunnel {
        /// The outer headers (local_ips, VNI, UDP port).
        encap: Encap,
        /// The tunnel port it left by (`host:vxlan-…`).
        from: String,
        /// The tunnel port that received it (`host:vxlan-…`); `None` when
        /// no host owns the outer destination or it has no tunnel port for
        /// the outer source (dropped).
        to: Option<String>,
    },
    /// An ARP reply taught a stack a neighbour.
    ArpLearned {
        /// Device.
        dev: Name,
        /// Sender address.
        ip: Ipv4Addr,
        /// Sender MAC.
        mac: MacAddr,
    },
    /// An ARP request for a local address was answered.
    ArpAnswered {
        /// Device.
        dev: Name,
        /// The address asked for.
        ip: Ipv4Addr,
    },
    /// Proxy ARP answered with the device's own MAC.
    ProxyArp {
        /// Device the request came in on.
        dev: Name,
        /// The address asked for.
        ip: Ipv4Addr,
        /// The device the route to it leaves by.
        out: Name,
    },
    /// An ARP request was not answered.
    ArpIgnored {
        /// Device.
        dev: Name,
        /// The address asked for.
        ip: Ipv4Addr,
        /// Why not.
        why: ArpDecline,
    },
    /// A frame for another MAC (a flooded copy) was ignored.
    NotOurMac {
        /// Device.
        dev: Name,
        /// The frame's destination.
        dst: MacAddr,
        /// The device's MAC.
        mac: MacAddr,
    },
    /// Policy routing chose a rule, a table and a route.
    Route {
        /// The rule; `None` for the default `32766 from all lookup main`
        /// (shared with the namespace: recording it copies nothing).
        rule: Option<Arc<Rule>>,
        /// The table looked up.
        table: TableRef,
        /// The route found (shared with the namespace).
        route: Arc<Route>,
    },
    /// The next hop's MAC is known: the packet goes out.
    Neighbour {
        /// Output device.
        dev: Name,
        /// Next hop.
        nexthop: Ipv4Addr,
        /// Its MAC.
        mac: MacAddr,
        /// Agent-written (else learned).
        permanent: bool,
    },
    /// No neighbour entry: ARP request sent, the packet waits.
    ArpRequest {
        /// Output device.
        dev: Name,
        /// Next hop.
        nexthop: Ipv4Addr,
    },
    /// ARP for the next hop already pending: the packet waits.
    ArpPending {
        /// Next hop.
        nexthop: Ipv4Addr,
    },
    /// The nat chain of a hook was walked for a new connection.
    Nat {
        /// Hook.
        #[serde(serialize_with = "ser_hook")]
        hook: Hook,
        /// The deciding rule (`-A CHAIN …`), if any.
        rule: Option<String>,
        /// The rewrite done (`SNAT a → b`), if any.
        rewrite: Option<String>,
    },
    /// Conntrack rewrote a later packet of a known connection.
    Conntrack {
        /// Hook.
        #[serde(serialize_with = "ser_hook")]
        hook: Hook,
        /// What changed (serialised as its sentence).
        rewrite: crate::netfilter::CtRewrite,
    },
    /// A stack sent a frame on a device.
    Transmit {
        /// Device.
        dev: Name,
        /// The frame.
        #[serde(serialize_with = "ser_frame")]
        frame: Frame,
    },
    /// The packet reached a local address of this stack.
    Deliver {
        /// Who received it (the contract's `delivered_to`).
        endpoint: Name,
        /// The packet as delivered (after NAT).
        packet: IpPkt,
    },
    /// A locally generated packet was for a local address.
    LocalOut {
        /// The packet.
        packet: IpPkt,
    },
    /// The kernel dropped the frame or packet.
    Drop {
        /// Why.
        reason: DropReason,
    },
    /// A multicast group the namespace has not joined: ignored.
    GroupNotJoined {
        /// Device it arrived on.
        dev: Name,
        /// The group.
        group: Ipv4Addr,
    },
    /// A destination Linux never sends to a gateway, and what it did instead.
    Special {
        /// The destination as the packet had it.
        dst: Ipv4Addr,
        /// What the kernel did.
        action: SpecialStep,
    },
}

/// What the kernel did with a special destination (`0.0.0.0`, `127/8`,
/// `255.255.255.255`, `224.0.0.0/4`), device names resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum SpecialStep {
    /// Sent by a local socket to `0.0.0.0` or `127/8`: delivered on `lo`.
    LocalDelivery {
        /// The address it was delivered to (127.0.0.1 for `0.0.0.0`).
        to: Ipv4Addr,
    },
    /// The limited broadcast or a multicast group: sent to the link's
    /// broadcast/group MAC, not to a gateway.
    SentOnLink {
        /// Output device.
        dev: Name,
        /// The frame's destination MAC.
        mac: MacAddr,
    },
    /// Received broadcast or all-hosts multicast: delivered here, never forwarded.
    ReceivedNotForwarded {
        /// Device it arrived on.
        dev: Name,
        /// Whether `ip_forward` is on (it still does not forward).
        forwarding: bool,
    },
}

fn ser_hook<S: Serializer>(h: &Hook, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(h.chain())
}

fn ser_frame<S: Serializer>(f: &Frame, s: S) -> Result<S::Ok, S::Error> {
    PacketView::from(f).serialize(s)
}

/// ` (NAME)` after a table number, when the table has a name.
struct TableSuffix<'a>(&'a Option<&'static str>);

impl fmt::Display for TableSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => write!(f, " ({n})"),
            None => Ok(()),
        }
    }
}

/// The lines below write straight into the formatter: an explained trace
/// prints one per hop, and a string per field was most of its cost.
fn flow_line(f: &mut fmt::Formatter<'_>, table: u8, flow: &Flow) -> fmt::Result {
    write!(f, "table {table} priority {} ", flow.priority)?;
    if !flow.write_match(f)? {
        f.write_str("(any)")?;
    }
    f.write_str(" → ")?;
    flow.write_actions(f)?;
    match &flow.sg_rule {
        Some(r) => write!(f, " [{r}]"),
        None => Ok(()),
    }
}

fn normal_line(f: &mut fmt::Formatter<'_>, vlan: u16, d: &NormalDecision) -> fmt::Result {
    match d {
        NormalDecision::NoPort => write!(f, "NORMAL in VLAN {vlan}: no other port: dropped"),
        NormalDecision::Learned { port } => write!(f, "NORMAL in VLAN {vlan}: destination learned on {port}"),
        NormalDecision::Flood { ports } => {
            write!(f, "NORMAL in VLAN {vlan}: destination unknown, flood to ")?;
            for (i, p) in ports.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                f.write_str(p)?;
            }
            Ok(())
        }
    }
}

fn miss_line(f: &mut fmt::Formatter<'_>, table: u8, name: &Option<&'static str>, fatal: bool) -> fmt::Result {
    let what = if fatal { "table miss, dropped" } else { "nothing done" };
    write!(f, "table {table}{}: no flow matches: {what}", TableSuffix(name))
}

/// `ip rule` as `ip rule show` prints it (the default main rule for `None`).
pub fn rule_line(rule: &Option<Arc<Rule>>) -> String {
    RuleLine(rule).to_string()
}

/// [`rule_line`] as a `Display`.
struct RuleLine<'a>(&'a Option<Arc<Rule>>);

impl fmt::Display for RuleLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("32766 from all lookup main"),
            Some(r) => {
                write!(f, "{} ", r.priority)?;
                match &r.selector {
                    RuleSelector::From(n) if n.prefix_len() == 32 => write!(f, "from {}", Ip(n.addr()))?,
                    RuleSelector::From(n) => write!(f, "from {}/{}", Ip(n.addr()), n.prefix_len())?,
                    RuleSelector::Iif(d) => write!(f, "from all iif {d}")?,
                }
                write!(f, " lookup {}", r.table)
            }
        }
    }
}

/// A route as `ip route` prints it, with its table when not `main`.
pub fn route_line(r: &Route) -> String {
    RouteLine(r).to_string()
}

/// [`route_line`] as a `Display`.
struct RouteLine<'a>(&'a Route);

impl fmt::Display for RouteLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        f.write_str("route ")?;
        if r.dst.prefix_len() == 0 {
            f.write_str("default")?;
        } else {
            // As ipnet writes it (`addr/len`), without its formatting calls.
            write!(f, "{}/{}", Ip(r.dst.addr()), r.dst.prefix_len())?;
        }
        if let Some(v) = r.via {
            write!(f, " via {}", Ip(v))?;
        }
        f.write_str(" dev ")?;
        f.write_str(&r.dev)?;
        if r.table != TableRef::Main {
            write!(f, " table {}", r.table)?;
        }
        Ok(())
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Send { packet } => write!(f, "sends {}", Describe(packet)),
            Step::Table { table, flow, .. } => flow_line(f, *table, flow),
            Step::Miss { table, table_name, fatal } => miss_line(f, *table, table_name, *fatal),
            Step::Normal { vlan, decision } => normal_line(f, *vlan, decision),
            Step::Ovs { event } => write!(f, "{event}"),
            Step::OvsCt { zone, state, mark, commit, recirc } => {
                write!(f, "conntrack zone {zone}: ct_state={state}")?;
                if *mark != 0 {
                    write!(f, " ct_mark={mark:#x}")?;
                }
                if *commit {
                    f.write_str(", committed")?;
                }
                match recirc {
                    Some(t) => write!(f, ", recirculates to table {t}"),
                    None => Ok(()),
                }
            }
            Step::Recirculate { table, table_name } => write!(f, "resumed in table {table}{} after conntrack", TableSuffix(table_name)),
            Step::Conjunction { id, clauses } => {
                write!(f, "conjunction {id} complete ({} clause flows matched)", clauses.len())?;
                for c in clauses.iter().filter_map(|c| c.sg_rule.as_ref()).take(1) {
                    write!(f, " [{c}]")?;
                }
                Ok(())
            }
            Step::Patch { port, to_bridge, to_port } => write!(f, "patch port {port} → {to_bridge} ({to_port})"),
            Step::Unattached { port } => write!(f, "output to {port}: nothing attached"),
            Step::Wire { vlan, from, to, learned, .. } => {
                let vlan = vlan.map_or("untagged".to_string(), |v| format!("VLAN {v}"));
                let to = if to.is_empty() { "nowhere".to_string() } else { to.join(", ") };
                write!(f, "{vlan} from {from} → {to} ({})", if *learned { "learned" } else { "flooded" })
            }
            Step::Tunnel { encap, from, to } => {
                let to = to.as_deref().unwrap_or("no tunnel port: dropped");
                write!(f, "{encap} from {from} → {to}")
            }
            Step::ArpLearned { dev, ip, mac } => write!(f, "ARP reply: {} is-at {mac} (learned on {dev})", Ip(*ip)),
            Step::ArpAnswered { dev, ip } => write!(f, "ARP request for {}: answered by {dev}", Ip(*ip)),
            Step::ProxyArp { dev, ip, out } => {
                write!(f, "proxy ARP on {dev}: the route to {ip} leaves by {out}, so {dev} answers with its own MAC")
            }
            Step::ArpIgnored { dev, ip, why } => {
                let why = match why {
                    ArpDecline::OnOtherDevice { dev: o } => format!("{ip} is on {o}, not on {dev} (arp_ignore=1)"),
                    ArpDecline::NoProxyRoute => format!("{ip} is not local and its route does not leave by another device: no proxy ARP"),
                    ArpDecline::NotLocal => format!("{ip} is not a local address"),
                };
                write!(f, "ARP request on {dev} not answered: {why}")
            }
            Step::NotOurMac { dev, dst, mac } => write!(f, "frame for {dst} is not addressed to {dev} ({mac})"),
            Step::Route { rule, route, .. } => write!(f, "ip rule {} → {}", RuleLine(rule), RouteLine(route)),
            Step::Neighbour { dev, nexthop, mac, permanent } => {
                let kind = if *permanent { "permanent" } else { "learned" };
                write!(f, "neighbour {} is {mac} ({kind}): send on {dev}", Ip(*nexthop))
            }
            Step::ArpRequest { dev, nexthop } => write!(f, "no neighbour entry for {} on {dev}: ARP request, packet waits", Ip(*nexthop)),
            Step::ArpPending { nexthop } => write!(f, "ARP for {} already pending: packet waits", Ip(*nexthop)),
            Step::Nat { hook, rule, rewrite } => match (rule, rewrite) {
                (Some(r), Some(w)) => write!(f, "{} {w} ({r})", hook.chain()),
                (Some(r), None) => write!(f, "{} no NAT ({r})", hook.chain()),
                (None, _) => write!(f, "{} no rule matched", hook.chain()),
            },
            Step::Conntrack { hook, rewrite } => write!(f, "{} conntrack: {rewrite}", hook.chain()),
            Step::Transmit { dev, frame } => write!(f, "sends on {dev}: {frame}"),
            Step::GroupNotJoined { dev, group } => {
                write!(f, "{group} is a multicast group {dev}'s namespace has not joined; nothing forwards multicast")
            }
            Step::Special { dst, action } => match action {
                SpecialStep::LocalDelivery { to } if dst.is_unspecified() => {
                    write!(f, "destination 0.0.0.0 means this host: Linux sends it to {to} on lo; it never leaves")
                }
                SpecialStep::LocalDelivery { .. } => {
                    write!(f, "{dst} is in 127.0.0.0/8 (local table, dev lo): delivered here, it never leaves")
                }
                SpecialStep::SentOnLink { dev, mac } => {
                    let what = if dst.is_broadcast() { "the limited broadcast" } else { "multicast" };
                    write!(f, "{dst} is {what}: sent to {mac} on {dev}, not to a gateway")
                }
                SpecialStep::ReceivedNotForwarded { dev, forwarding } => {
                    let what = if dst.is_broadcast() { "the limited broadcast" } else { "the all-hosts multicast group" };
                    let although = if *forwarding { " although ip_forward=1" } else { "" };
                    write!(
                        f,
                        "{dst} is {what}: delivered to this namespace on {dev}, never forwarded{although}; no answer \
                         (Linux ignores echo requests to broadcast and multicast: icmp_echo_ignore_broadcasts=1)"
                    )
                }
            },
            Step::Deliver { packet, .. } => write!(f, "{} is local: delivered ({})", Ip(packet.dst), Describe(packet)),
            Step::LocalOut { packet } => write!(f, "{} is local", Ip(packet.dst)),
            Step::Drop { reason } => write!(f, "dropped: {reason}"),
        }
    }
}

/// Why a packet or frame was dropped (closed set, with data).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum DropReason {
    /// A flow's actions sent it nowhere (an explicit drop, or outputs all skipped).
    Flow {
        /// Table.
        table: u8,
        /// The flow.
        flow: Arc<Flow>,
    },
    /// No flow matched.
    TableMiss {
        /// Table.
        table: u8,
        /// Its name, when known.
        table_name: Option<&'static str>,
        /// First table (dropped) or a resubmit (nothing done, nothing left).
        fatal: bool,
    },
    /// NORMAL had nowhere to send it.
    Normal {
        /// VLAN.
        vlan: u16,
        /// What NORMAL decided.
        decision: NormalDecision,
    },
    /// OVS dropped it outside any flow.
    Ovs {
        /// What happened.
        event: OvsEvent,
    },
    /// A VXLAN packet on the underlay that no tunnel port receives.
    NoTunnel {
        /// The outer headers.
        encap: Encap,
    },
    /// A VLAN-tagged frame on a device without a VLAN sub-device.
    Tagged {
        /// Device.
        dev: Name,
    },
    /// No route to the destination.
    NoRoute {
        /// Destination.
        dst: Ipv4Addr,
    },
    /// Not local and `ip_forward=0`.
    NotForwarding {
        /// Destination.
        dst: Ipv4Addr,
    },
    /// Strict reverse-path filtering.
    RpFilter {
        /// Source of the packet.
        src: Ipv4Addr,
        /// Device it arrived on.
        dev: Name,
    },
    /// `0.0.0.0` or `127.0.0.0/8` arriving from a network: a martian.
    Martian {
        /// Destination.
        dst: Ipv4Addr,
        /// Device it arrived on.
        dev: Name,
    },
    /// The next hop never answered ARP: the packet was never sent.
    NeighbourUnreachable {
        /// Next hop.
        ip: Ipv4Addr,
        /// Device the ARP went out of.
        dev: Name,
        /// What became of the ARP exchange.
        cause: ArpFailure,
    },
    /// Frames kept circulating.
    Loop {
        /// Events processed before giving up.
        events: usize,
    },
    /// Nothing that owns the destination received the packet.
    NotReceived {
        /// The destination.
        target: Ipv4Addr,
    },
}

/// What became of the ARP exchange of an unreachable neighbour.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "arp", rename_all = "snake_case")]
pub enum ArpFailure {
    /// The request was answered, but the answer was dropped.
    AnswerDropped {
        /// Where and why.
        drop: Box<Dropped>,
    },
    /// The request itself was dropped.
    RequestDropped {
        /// Where and why.
        drop: Box<Dropped>,
    },
    /// Nothing answered.
    NoAnswer,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::Flow { table, flow } => flow_line(f, *table, flow),
            DropReason::TableMiss { table, table_name, fatal } => miss_line(f, *table, table_name, *fatal),
            DropReason::Normal { vlan, decision } => normal_line(f, *vlan, decision),
            DropReason::Ovs { event } => write!(f, "{event}"),
            DropReason::NoTunnel { encap } => {
                write!(f, "{encap}: no host has local_ip {} with a tunnel port for remote_ip {}", encap.dst, encap.src)
            }
            DropReason::Tagged { dev } => write!(f, "{dev} received a VLAN-tagged frame; it has no VLAN device"),
            DropReason::NoRoute { dst } => write!(f, "no route to {dst}"),
            DropReason::NotForwarding { dst } => write!(f, "{dst} is not local and ip_forward=0"),
            DropReason::RpFilter { src, dev } => write!(f, "rp_filter: the route back to {src} does not leave by {dev}"),
            DropReason::Martian { dst, dev } => {
                write!(f, "martian destination {dst} arrived on {dev}: Linux drops 0.0.0.0 and 127.0.0.0/8 from a network")
            }
            DropReason::NeighbourUnreachable { ip, dev, cause } => {
                let why = match cause {
                    ArpFailure::AnswerDropped { drop } => format!("its ARP request was answered, but the answer was dropped: {drop}"),
                    ArpFailure::RequestDropped { drop } => format!("its ARP request was dropped: {drop}"),
                    ArpFailure::NoAnswer => "nothing answered its ARP request".to_string(),
                };
                write!(f, "no ARP reply for {ip} on {dev} ({why}); the packet was never sent")
            }
            DropReason::Loop { events } => write!(f, "more than {events} frames: forwarding loop"),
            DropReason::NotReceived { target } => write!(f, "nothing that owns {target} received the packet"),
        }
    }
}

/// Where something happened: a bridge, namespace or endpoint of a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Place {
    /// Host (`fabric`, `external`).
    pub host: Name,
    /// Kind of place.
    pub kind: HopKind,
    /// Bridge, namespace, endpoint or network name.
    #[serde(rename = "where")]
    pub where_: Name,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            HopKind::Openflow => write!(f, "{} {}", self.host, self.where_),
            HopKind::Wire => write!(f, "wire {}", self.where_),
            HopKind::Namespace | HopKind::Endpoint => write!(f, "{} on {}", self.where_, self.host),
        }
    }
}

/// A drop: where, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dropped {
    /// Where (none for a loop or a packet nothing received).
    pub at: Option<Place>,
    /// Why.
    pub reason: DropReason,
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.at {
            Some(at) => write!(f, "{at}: {}", self.reason),
            None => write!(f, "{}", self.reason),
        }
    }
}

/// How one direction of a trace ended (closed set, with data).
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Reached its destination.
    Delivered {
        /// Who received it (the contract's `delivered_to`).
        to: Name,
    },
    /// Did not.
    Dropped(Dropped),
}

/// The coarse class of a verdict, for scripts and tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Disposition {
    /// Reached its destination.
    Delivered,
    /// Dropped by a flow, a table miss, the kernel or OVS.
    Dropped,
    /// No route to the destination.
    NoRoute,
    /// The next hop never answered ARP.
    NeighbourUnreachable,
    /// Frames kept circulating.
    Loop,
}

impl Verdict {
    /// Who received it, when delivered.
    pub fn delivered_to(&self) -> Option<&str> {
        match self {
            Verdict::Delivered { to } => Some(to),
            Verdict::Dropped(_) => None,
        }
    }
    /// Whether it was delivered.
    pub fn is_delivered(&self) -> bool {
        matches!(self, Verdict::Delivered { .. })
    }
    /// The drop, when dropped.
    pub fn dropped(&self) -> Option<&Dropped> {
        match self {
            Verdict::Dropped(d) => Some(d),
            Verdict::Delivered { .. } => None,
        }
    }
    /// The coarse class.
    pub fn disposition(&self) -> Disposition {
        match self {
            Verdict::Delivered { .. } => Disposition::Delivered,
            Verdict::Dropped(d) => match d.reason {
                DropReason::NoRoute { .. } => Disposition::NoRoute,
                DropReason::NeighbourUnreachable { .. } => Disposition::NeighbourUnreachable,
                DropReason::Loop { .. } => Disposition::Loop,
                _ => Disposition::Dropped,
            },
        }
    }
}

impl Verdict {
    /// The drop as a sentence (the contract's `drop_reason`), when dropped.
    pub fn drop_reason(&self) -> Option<String> {
        self.dropped().map(ToString::to_string)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Delivered { to } => write!(f, "delivered to {to}"),
            Verdict::Dropped(d) => write!(f, "dropped: {d}"),
        }
    }
}

/// How one copy of a frame ended at a hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fate {
    /// Delivered to its destination.
    Delivered,
    /// Dropped.
    Dropped,
    /// Ignored as not addressed here (a flooded copy; not an error).
    Ignored,
}

impl Fate {
    /// The fate as one word (`delivered`, `dropped`, `ignored`).
    pub fn as_str(self) -> &'static str {
        match self {
            Fate::Delivered => "delivered",
            Fate::Dropped => "dropped",
            Fate::Ignored => "ignored",
        }
    }
}

impl fmt::Display for Fate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A packet field a hop changed, old → new.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "field", rename_all = "snake_case")]
pub enum Change {
    /// VLAN tag (`None` = untagged).
    Vlan {
        /// Before.
        from: Option<u16>,
        /// After.
        to: Option<u16>,
    },
    /// Ethernet source.
    SrcMac {
        /// Before.
        from: MacAddr,
        /// After.
        to: MacAddr,
    },
    /// Ethernet destination.
    DstMac {
        /// Before.
        from: MacAddr,
        /// After.
        to: MacAddr,
    },
    /// IPv4 source.
    SrcIp {
        /// Before.
        from: Ipv4Addr,
        /// After.
        to: Ipv4Addr,
    },
    /// IPv4 destination.
    DstIp {
        /// Before.
        from: Ipv4Addr,
        /// After.
        to: Ipv4Addr,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Vlan { from, to } => write!(f, "VLAN {}→{}", VlanId(*from), VlanId(*to)),
            Change::SrcMac { from, to } => write!(f, "src MAC {from}→{to}"),
            Change::DstMac { from, to } => write!(f, "dst MAC {from}→{to}"),
            Change::SrcIp { from, to } => write!(f, "src IP {}→{}", Ip(*from), Ip(*to)),
            Change::DstIp { from, to } => write!(f, "dst IP {}→{}", Ip(*from), Ip(*to)),
        }
    }
}

/// A VLAN id, or `untagged`.
struct VlanId(Option<u16>);

impl fmt::Display for VlanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => write!(f, "{v}"),
            None => f.write_str("untagged"),
        }
    }
}

/// The fields that differ between two frames (MACs only when the payload
/// is the same frame's).
pub fn changes(a: &Frame, b: &Frame) -> Vec<Change> {
    use crate::packet::Payload;
    let mut d = Vec::new();
    if a == b {
        // Most hops change nothing: one comparison of two small values.
        return d;
    }
    if a.vlan != b.vlan {
        d.push(Change::Vlan { from: a.vlan, to: b.vlan });
    }
    if a.src != b.src && a.payload == b.payload {
        d.push(Change::SrcMac { from: a.src, to: b.src });
    }
    if a.dst != b.dst && a.payload == b.payload {
        d.push(Change::DstMac { from: a.dst, to: b.dst });
    }
    if let (Payload::Ip { src: s1, dst: d1, .. }, Payload::Ip { src: s2, dst: d2, .. }) = (a.payload, b.payload) {
        if s1 != s2 {
            d.push(Change::SrcIp { from: s1, to: s2 });
        }
        if d1 != d2 {
            d.push(Change::DstIp { from: d1, to: d2 });
        }
    }
    d
}

/// A copy's lineage: `1`, `1.2`, `1.2.1` … (the copy tree of floods).
#[derive(Debug, Default, PartialEq, Eq, Hash)]
pub struct Lineage(pub SmallVec<[u16; 4]>);

/// By copying the numbers (`SmallVec`'s own `Clone` pushes them one by
/// one): every hop and every queued frame clones its lineage.
impl Clone for Lineage {
    fn clone(&self) -> Lineage {
        Lineage(SmallVec::from_slice(&self.0))
    }
}

impl Lineage {
    /// The first copy of a phase.
    pub fn root() -> Lineage {
        Lineage(smallvec::smallvec![1])
    }
    /// The `i`-th (0-based) of `n` copies made from this one (the same copy when `n == 1`).
    pub fn child(&self, i: usize, n: usize) -> Lineage {
        let mut l = self.clone();
        if n > 1 {
            l.0.push(u16::try_from(i + 1).unwrap_or(u16::MAX));
        }
        l
    }
    /// Whether `self` is `other` or one of its ancestors.
    pub fn is_ancestor_of(&self, other: &Lineage) -> bool {
        other.0.starts_with(&self.0)
    }
}

impl fmt::Display for Lineage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &n) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            // Every hop's line starts with its lineage, mostly `1`.
            match u8::try_from(n) {
                Ok(d @ 0..=9) => f.write_char(char::from(b'0' + d))?,
                _ => write!(f, "{n}")?,
            }
        }
        Ok(())
    }
}

impl Serialize for Lineage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One step of a trace, where it happened and what it did to the frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Hop {
    /// Host name; `fabric` for wires, `external` outside the cloud.
    pub host: Name,
    /// Kind.
    pub kind: HopKind,
    /// Bridge, namespace, endpoint or physical network.
    pub where_: Name,
    /// What matched or was done.
    pub step: Step,
    /// The frame as it is when the hop is left.
    pub packet: PacketView,
    /// Copy lineage.
    pub copy: Lineage,
    /// The fields this hop changed.
    pub changed: Vec<Change>,
    /// Whether this copy ended here.
    pub fate: Option<Fate>,
}

impl Hop {
    /// The step as a sentence (the contract's `detail`).
    pub fn detail(&self) -> String {
        self.step.to_string()
    }
    /// Why the flow of a table step exists (`reason [builder]`).
    pub fn why(&self) -> Option<String> {
        match &self.step {
            Step::Table { flow, .. } if !flow.reason.is_empty() => Some(format!("{} [{}]", flow.reason, flow.builder)),
            _ => None,
        }
    }
    /// The changes as one phrase (`VLAN 2→148, src MAC …`), if any.
    pub fn rewrite(&self) -> Option<String> {
        (!self.changed.is_empty()).then(|| self.changed.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
    }
    /// The place of this hop.
    pub fn place(&self) -> Place {
        Place { host: self.host.clone(), kind: self.kind, where_: self.where_.clone() }
    }
}

impl Serialize for Hop {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            host: &'a str,
            kind: HopKind,
            #[serde(rename = "where")]
            where_: &'a str,
            detail: String,
            packet: &'a PacketView,
            copy: &'a Lineage,
            step: &'a Step,
            #[serde(skip_serializing_if = "Option::is_none")]
            why: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            rewrite: Option<String>,
            #[serde(skip_serializing_if = "<[Change]>::is_empty")]
            changed: &'a [Change],
            #[serde(skip_serializing_if = "Option::is_none")]
            fate: Option<Fate>,
        }
        Out {
            host: &self.host,
            kind: self.kind,
            where_: &self.where_,
            detail: self.detail(),
            packet: &self.packet,
            copy: &self.copy,
            step: &self.step,
            why: self.why(),
            rewrite: self.rewrite(),
            changed: &self.changed,
            fate: self.fate,
        }
        .serialize(s)
    }
}
