//! An OpenFlow switch with Open vSwitch semantics, for the flows the plan
//! generates (and the same flows parsed from a real host's dump).
//!
//! What OVS does and we reproduce: a table is searched by descending
//! priority (first match wins; equal priorities keep insertion order);
//! `resubmit(,T)` runs table T and then continues with the caller's next
//! action, modifications persisting; `goto_table` ends the list and continues
//! in T; a miss in the first table drops, a miss under `resubmit` does
//! nothing; `output` to the ingress port is skipped; `NORMAL` is a MAC-learning
//! switch per VLAN that honours access tags (`tag=`) and trunks, floods to
//! every other port of the VLAN (patch ports and NICs included), tags frames
//! towards trunks and untags them towards access ports, and (before learning)
//! drops frames to the reserved addresses a bridge must never forward (STP,
//! LLDP, pause, CDP …: OVS `eth_addr_is_reserved`, `forward_bpdu` off).

use crate::name::Name;
use crate::packet::{Frame, L4, Payload};
use dvr_model::MacAddr;
use dvr_openflow::{Action, Flow, Match, Proto, VlanMatch};
use rustc_hash::FxHashMap as FxMap;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Longest chain of resubmits before OVS gives up (it uses 64 too).
pub const MAX_RESUBMIT_DEPTH: u32 = 64;

/// One port of a bridge.
#[derive(Debug, Clone)]
pub struct OfPort {
    /// Port name (flows refer to ports by name).
    pub name: Name,
    /// Access VLAN; `None` = trunk.
    pub tag: Option<u16>,
}

/// A flow in a table: its rank (position in priority order, ties in
/// insertion order) and its `in_port` resolved to a port index.
#[derive(Debug, Clone)]
struct Ranked {
    rank: usize,
    flow: Arc<Flow>,
    in_port: Option<usize>,
}

/// A flow and its resolved `in_port`, before ranking.
type Unranked = (Arc<Flow>, Option<usize>);

/// One flow table, partitioned like a (much simplified) OVS classifier: flows
/// that match an exact `dl_src` are found by hash of the frame's source, those
/// matching an exact `dl_dst` by its destination, those matching only an
/// `in_port` by the ingress port, the rest by scan. The
/// winner is the candidate of lowest rank: the same flow a priority-ordered
/// linear scan finds (property-tested below).
#[derive(Debug, Clone, Default)]
struct Table {
    by_src: FxMap<MacAddr, Vec<Ranked>>,
    by_dst: FxMap<MacAddr, Vec<Ranked>>,
    by_in_port: FxMap<usize, Vec<Ranked>>,
    rest: Vec<Ranked>,
}

impl Table {
    fn new(mut entries: Vec<Unranked>) -> Table {
        entries.sort_by_key(|(f, _)| std::cmp::Reverse(f.priority));
        let mut t = Table::default();
        for (rank, (flow, in_port)) in entries.into_iter().enumerate() {
            let r = Ranked { rank, in_port, flow };
            match (r.flow.matches.dl_src, r.flow.matches.dl_dst, r.in_port) {
                (Some(src), _, _) => t.by_src.entry(src).or_default().push(r),
                (None, Some(dst), _) => t.by_dst.entry(dst).or_default().push(r),
                (None, None, Some(port)) => t.by_in_port.entry(port).or_default().push(r),
                (None, None, None) => t.rest.push(r),
            }
        }
        t
    }

    fn find(&self, in_port: usize, f: &Frame) -> Option<&Ranked> {
        let first = |list: &'_ [Ranked]| -> Option<usize> {
            list.iter().position(|e| e.in_port.is_none_or(|i| i == in_port) && fields_match(&e.flow.matches, f))
        };
        let mut best: Option<&Ranked> = first(&self.rest).map(|i| &self.rest[i]);
        for list in [self.by_in_port.get(&in_port), self.by_src.get(&f.src), self.by_dst.get(&f.dst)].into_iter().flatten() {
            if let Some(i) = first(list)
                && best.is_none_or(|b| list[i].rank < b.rank)
            {
                best = Some(&list[i]);
            }
        }
        best
    }
}

/// One bridge: ports, flow tables and the NORMAL learning table.
#[derive(Debug, Clone)]
pub struct OfBridge {
    /// Bridge name.
    pub name: Name,
    /// Ports; the index is our port number.
    pub ports: Vec<OfPort>,
    /// Per table, flows by descending priority with their `in_port` resolved
    /// to a port index (`usize::MAX` when the name is not a port: never matches).
    tables: BTreeMap<u8, Table>,
    /// NORMAL's learned (VLAN, MAC) → port.
    pub mac_table: FxMap<(u16, MacAddr), usize>,
    /// Integration or physical bridge, when known (names tables in traces).
    pub kind: Option<dvr_plan::tables::BridgeKind>,
}

/// What one flow lookup did (a trace step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfStep {
    /// A flow matched and its actions ran.
    Matched {
        /// Table.
        table: u8,
        /// The flow (match, actions, provenance), shared with the table.
        flow: Arc<Flow>,
    },
    /// No flow matched.
    Miss {
        /// Table.
        table: u8,
        /// Whether this ended processing (first table) or was a no-op (resubmit).
        fatal: bool,
    },
    /// NORMAL switched the frame.
    Normal {
        /// VLAN NORMAL worked in.
        vlan: u16,
        /// Output ports (indices into the bridge's ports); several when flooding.
        out: Vec<usize>,
        /// Whether the destination was learned (else flooded).
        learned: bool,
    },
    /// An action was skipped or the frame was dropped for a reason OVS logs.
    Event(OvsEvent),
}

/// What OVS logs when it skips an action or drops a frame outside any flow
/// (closed set; the trace renders each with its own sentence).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum OvsEvent {
    /// Resubmits nested deeper than OVS allows: the frame is dropped.
    ResubmitDepthExceeded,
    /// `push_vlan` on an already tagged frame (QinQ) is not modelled.
    QinQNotModelled,
    /// `output` to the port the frame came in on is skipped, as OVS does.
    OutputToInputPort {
        /// The port.
        port: String,
    },
    /// `output` to a port the bridge does not have: dropped.
    UnknownPort {
        /// The port name in the action.
        port: String,
    },
    /// NORMAL drops a tagged frame received on an access (tagged) port.
    TaggedOnAccessPort {
        /// The frame's VLAN.
        vlan: u16,
        /// The access port.
        port: String,
    },
    /// NORMAL never forwards to reserved (link-local multicast) destinations.
    ReservedDestination {
        /// The destination MAC.
        mac: MacAddr,
    },
}

impl std::fmt::Display for OvsEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OvsEvent::ResubmitDepthExceeded => write!(f, "resubmit depth exceeded: dropped"),
            OvsEvent::QinQNotModelled => write!(f, "push_vlan on a tagged frame (QinQ) is not modelled"),
            OvsEvent::OutputToInputPort { port } => write!(f, "skipping output to input port {port}"),
            OvsEvent::UnknownPort { port } => write!(f, "output to unknown port {port}: dropped"),
            OvsEvent::TaggedOnAccessPort { vlan, port } => {
                write!(f, "NORMAL: dropping VLAN {vlan} tagged frame received on access port {port}")
            }
            OvsEvent::ReservedDestination { mac } => write!(f, "NORMAL: dropping frame to reserved destination {mac}"),
        }
    }
}

/// The result of running one frame through one bridge.
#[derive(Debug, Clone, Default)]
pub struct OfResult {
    /// Steps in order.
    pub steps: Vec<OfStep>,
    /// Frames leaving the bridge: (port index, frame as sent).
    pub outputs: Vec<(usize, Frame)>,
    /// The frame as it was when each step began (parallel to `steps`).
    pub frames: Vec<Frame>,
    /// The frame when processing ended.
    pub last: Option<Frame>,
}

impl OfResult {
    /// The frame as it was when step `i` was left.
    pub fn frame_after(&self, i: usize) -> Option<Frame> {
        self.frames.get(i + 1).copied().or(self.last)
    }
}

impl OfBridge {
    /// A bridge with ports and flows (flows keep their given order within a priority).
    pub fn new(name: &str, ports: Vec<OfPort>, flows: &[Flow]) -> OfBridge {
        let shared: Vec<Arc<Flow>> = flows.iter().cloned().map(Arc::new).collect();
        Self::from_shared(name, ports, &shared)
    }

    /// A bridge over flows shared with the plan (no copies). Each flow's
    /// `in_port` is resolved to a port index once, here.
    pub fn from_shared(name: &str, ports: Vec<OfPort>, flows: &[Arc<Flow>]) -> OfBridge {
        let mut by_table: BTreeMap<u8, Vec<Unranked>> = BTreeMap::new();
        for f in flows {
            let ix = f.matches.in_port.as_ref().map(|n| ports.iter().position(|p| &p.name == n).unwrap_or(usize::MAX));
            by_table.entry(f.table.0).or_default().push((f.clone(), ix));
        }
        let tables = by_table.into_iter().map(|(t, e)| (t, Table::new(e))).collect();
        OfBridge { name: name.into(), ports, tables, mac_table: FxMap::default(), kind: None }
    }

    /// Port index by name.
    pub fn port(&self, name: &str) -> Option<usize> {
        self.ports.iter().position(|p| p.name == name)
    }

    /// The first flow of `table` matching the frame (priority order).
    pub fn lookup(&self, table: u8, in_port: &str, f: &Frame) -> Option<&Flow> {
        let ix = self.port(in_port).unwrap_or(usize::MAX);
        self.tables.get(&table)?.find(ix, f).map(|r| &*r.flow)
    }

    /// Run a frame received on port `in_port` through the pipeline from table 0.
    pub fn process(&mut self, in_port: usize, frame: Frame) -> OfResult {
        let mut x = Exec { frame, in_port, res: OfResult::default(), stop: false };
        self.run_table(&mut x, 0, 0);
        x.res.last = Some(x.frame);
        x.res
    }

    fn run_table(&mut self, x: &mut Exec, table: u8, depth: u32) {
        if depth > MAX_RESUBMIT_DEPTH {
            x.push(OfStep::Event(OvsEvent::ResubmitDepthExceeded));
            x.stop = true;
            return;
        }
        let inp = x.in_port;
        let found = self.tables.get(&table).and_then(|t| t.find(inp, &x.frame)).map(|r| r.flow.clone());
        let Some(flow) = found else {
            x.push(OfStep::Miss { table, fatal: depth == 0 });
            return;
        };
        x.push(OfStep::Matched { table, flow: flow.clone() });
        for a in &flow.actions {
            if x.stop {
                return;
            }
            match a {
                Action::Drop => {}
                Action::Resubmit(t) => self.run_table(x, t.0, depth + 1),
                Action::GotoTable(t) => {
                    self.run_table(x, t.0, depth + 1);
                    return;
                }
                Action::ModVlanVid(v) => x.frame.vlan = Some(*v),
                Action::StripVlan => x.frame.vlan = None,
                Action::PushVlan => {
                    if x.frame.vlan.is_none() {
                        x.frame.vlan = Some(0);
                    } else {
                        x.push(OfStep::Event(OvsEvent::QinQNotModelled));
                    }
                }
                Action::ModDlSrc(m) => x.frame.src = *m,
                Action::ModDlDst(m) => x.frame.dst = *m,
                Action::Output(name) => match self.port(name) {
                    Some(p) if p == x.in_port => x.push(OfStep::Event(OvsEvent::OutputToInputPort { port: name.clone() })),
                    Some(p) => x.res.outputs.push((p, x.frame)),
                    None => x.push(OfStep::Event(OvsEvent::UnknownPort { port: name.clone() })),
                },
                Action::Normal => self.normal(x),
            }
        }
    }

    /// OVS NORMAL: learn the source, forward to the learned port or flood.
    fn normal(&mut self, x: &mut Exec) {
        let inp = &self.ports[x.in_port];
        let vlan = match (inp.tag, x.frame.vlan) {
            (Some(tag), None | Some(0)) => tag,
            (Some(_), Some(v)) => {
                x.push(OfStep::Event(OvsEvent::TaggedOnAccessPort { vlan: v, port: inp.name.to_string() }));
                return;
            }
            (None, v) => v.unwrap_or(0),
        };
        if is_reserved(x.frame.dst) {
            x.push(OfStep::Event(OvsEvent::ReservedDestination { mac: x.frame.dst }));
            return;
        }
        if !x.frame.src.is_multicast() {
            self.mac_table.insert((vlan, x.frame.src), x.in_port);
        }
        let carries = |p: &OfPort| match p.tag {
            Some(t) => t == vlan,
            None => true,
        };
        let learned = if x.frame.dst.is_multicast() { None } else { self.mac_table.get(&(vlan, x.frame.dst)).copied() };
        let targets: Vec<usize> = match learned {
            Some(p) if p == x.in_port => vec![],
            Some(p) => vec![p],
            None => (0..self.ports.len()).filter(|&p| p != x.in_port && carries(&self.ports[p])).collect(),
        };
        for &p in &targets {
            let mut out = x.frame;
            out.vlan = match self.ports[p].tag {
                Some(_) => None,
                None if vlan == 0 => None,
                None => Some(vlan),
            };
            x.res.outputs.push((p, out));
        }
        x.push(OfStep::Normal { vlan, out: targets, learned: learned.is_some() });
    }
}

/// Whether NORMAL must never forward a frame to `mac` (OVS `eth_addr_is_reserved`,
/// with the bridge's `other_config:forward-bpdu` at its default, false): the
/// IEEE 802.1D/802.1Q link-local block 01:80:c2:00:00:0x (STP, pause, LACP,
/// LLDP …), Extreme's EDP/EAPS and Cisco's ISL, CDP/VTP/DTP/PAgP/UDLD, PVST+,
/// UplinkFast and CFM addresses.
pub fn is_reserved(mac: MacAddr) -> bool {
    match mac.0 {
        [0x01, 0x80, 0xc2, 0x00, 0x00, last] => last <= 0x0f,
        [0x00, 0xe0, 0x2b, 0x00, 0x00, last] => matches!(last, 0x00 | 0x04 | 0x06),
        [0x01, 0x00, 0x0c, 0xcc, 0xcc, last] => matches!(last, 0xc0..=0xc7 | 0xcc | 0xcd),
        [0x01, 0x00, 0x0c, 0x00, 0x00, 0x00] | [0x01, 0x00, 0x0c, 0xcd, 0xcd, 0xcd] => true,
        _ => false,
    }
}

struct Exec {
    frame: Frame,
    in_port: usize,
    res: OfResult,
    stop: bool,
}

impl Exec {
    fn push(&mut self, s: OfStep) {
        self.res.steps.push(s);
        self.res.frames.push(self.frame);
    }
}

/// Whether a flow's match holds for a frame received on `in_port`.
pub fn flow_matches(m: &Match, in_port: &str, f: &Frame) -> bool {
    if let Some(p) = &m.in_port
        && p != in_port
    {
        return false;
    }
    fields_match(m, f)
}

/// Whether every field but `in_port` matches.
fn fields_match(m: &Match, f: &Frame) -> bool {
    match m.dl_vlan {
        Some(VlanMatch::Untagged) if f.vlan.is_some() => return false,
        Some(VlanMatch::Tagged(v)) if f.vlan != Some(v) => return false,
        _ => {}
    }
    if m.dl_src.is_some_and(|s| s != f.src) || m.dl_dst.is_some_and(|d| d != f.dst) {
        return false;
    }
    let arp_fields = m.arp_op.is_some() || m.arp_spa.is_some() || m.arp_tpa.is_some() || m.arp_tha.is_some();
    let ip_fields = m.nw_src.is_some() || m.nw_dst.is_some() || m.icmp_type.is_some();
    // The twin carries ARP and IPv4 only: nothing it sends is ICMPv6, so a
    // flow asking for `icmp6` or an ND target never matches (as in OVS for
    // the same ARP/IPv4 frames).
    if m.proto == Some(Proto::Icmp6) || m.nd_target.is_some() {
        return false;
    }
    match f.payload {
        Payload::Arp { op, spa, tha, tpa, .. } => {
            if matches!(m.proto, Some(p) if p != Proto::Arp) || ip_fields {
                return false;
            }
            if m.arp_op.is_some_and(|o| o != op)
                || m.arp_spa.is_some_and(|a| !a.contains(spa))
                || m.arp_tpa.is_some_and(|a| !a.contains(tpa))
                || m.arp_tha.is_some_and(|a| a != tha)
            {
                return false;
            }
        }
        Payload::Ip { src, dst, l4 } => {
            if arp_fields {
                return false;
            }
            let ok = match m.proto {
                None | Some(Proto::Ip) => true,
                Some(Proto::Arp) => false,
                Some(Proto::Icmp) => l4.proto() == 1,
                Some(Proto::Tcp) => l4.proto() == 6,
                Some(Proto::Udp) => l4.proto() == 17,
                Some(Proto::Icmp6) => false,
            };
            // ICMP type: echo request 8, echo reply 0; only ICMP has one.
            let icmp_type_ok = match (m.icmp_type, l4) {
                (None, _) => true,
                (Some(t), L4::Icmp { reply, .. }) => t == if reply { 0 } else { 8 },
                (Some(_), _) => false,
            };
            if !ok || !icmp_type_ok || m.nw_src.is_some_and(|a| !a.contains(src)) || m.nw_dst.is_some_and(|a| !a.contains(dst)) {
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::L4;
    use dvr_openflow::parse_flows;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn icmp(src: MacAddr, dst: MacAddr, vlan: Option<u16>) -> Frame {
        Frame {
            src,
            dst,
            vlan,
            payload: Payload::Ip { src: Ipv4Addr::new(10, 0, 0, 1), dst: Ipv4Addr::new(10, 0, 0, 2), l4: L4::Icmp { reply: false, id: 1 } },
        }
    }
    fn mac(n: u8) -> MacAddr {
        MacAddr([0xfa, 0x16, 0x3e, 0, 0, n])
    }
    fn ports() -> Vec<OfPort> {
        vec![
            OfPort { name: "a".into(), tag: Some(1) },
            OfPort { name: "b".into(), tag: Some(1) },
            OfPort { name: "c".into(), tag: Some(2) },
            OfPort { name: "trunk".into(), tag: None },
        ]
    }

    #[test]
    fn normal_floods_in_vlan_then_learns() {
        let flows = parse_flows("table=0, priority=0 actions=NORMAL").unwrap();
        let mut br = OfBridge::new("br", ports(), &flows);
        let r = br.process(0, icmp(mac(1), mac(2), None));
        let outs: Vec<_> = r.outputs.iter().map(|(p, f)| (br.ports[*p].name.clone(), f.vlan)).collect();
        assert_eq!(outs, [(Name::from("b"), None), (Name::from("trunk"), Some(1))], "flood in VLAN 1 only; tag on trunk");
        let r = br.process(3, icmp(mac(2), mac(1), Some(1)));
        assert_eq!(r.outputs.len(), 1);
        assert_eq!((r.outputs[0].0, r.outputs[0].1.vlan), (0, None), "learned, untagged to access port");
    }

    /// The ICMPv6 neighbour-advertisement anti-spoofing flows never match
    /// the twin's ARP/IPv4 frames (as in OVS); `icmp_type` on IPv4 ICMP
    /// tells echo requests (8) from replies (0).
    #[test]
    fn icmp6_and_icmp_type_fields() {
        let flows = parse_flows(
            "table=0, priority=10,icmp6,in_port=a,icmp_type=136 actions=drop\n\
             table=24, priority=2,icmp6,in_port=a,icmp_type=136,nd_target=fe80::f816:3eff:fe00:1 actions=drop\n\
             table=0, priority=1,icmp,icmp_type=8 actions=drop\n\
             table=0, priority=1,icmp,icmp_type=0 actions=drop",
        )
        .unwrap();
        let request = icmp(mac(1), mac(2), None);
        let arp = Frame {
            src: mac(1),
            dst: MacAddr::BROADCAST,
            vlan: None,
            payload: Payload::Arp {
                op: crate::packet::ARP_REQUEST,
                sha: mac(1),
                spa: Ipv4Addr::new(10, 0, 0, 1),
                tha: MacAddr::ZERO,
                tpa: Ipv4Addr::new(10, 0, 0, 2),
            },
        };
        for f in [&request, &arp] {
            assert!(!flow_matches(&flows[0].matches, "a", f), "icmp6 flow matched {f:?}");
            assert!(!flow_matches(&flows[1].matches, "a", f), "nd_target flow matched {f:?}");
        }
        assert!(flow_matches(&flows[2].matches, "a", &request), "echo request is ICMP type 8");
        assert!(!flow_matches(&flows[3].matches, "a", &request), "echo request is not type 0");
        assert!(!flow_matches(&flows[2].matches, "a", &arp), "ARP has no ICMP type");
    }

    #[test]
    fn resubmit_continues_and_goto_ends() {
        let flows = parse_flows(
            "table=0, priority=1 actions=resubmit(,1),output:b\ntable=1, priority=1 actions=mod_vlan_vid:7\ntable=2, priority=1 actions=goto_table:3,output:c\ntable=3, priority=1 actions=output:trunk",
        )
        .unwrap();
        let mut br = OfBridge::new("br", ports(), &flows);
        let r = br.process(0, icmp(mac(1), mac(2), None));
        assert_eq!(r.outputs, vec![(1, Frame { vlan: Some(7), ..icmp(mac(1), mac(2), None) })]);
    }

    #[test]
    fn first_table_miss_drops_and_output_to_in_port_is_skipped() {
        let flows = parse_flows("table=0, priority=5,in_port=b actions=drop\ntable=0, priority=1,in_port=c actions=output:c").unwrap();
        let mut br = OfBridge::new("br", ports(), &flows);
        let r = br.process(0, icmp(mac(1), mac(2), None));
        assert!(r.outputs.is_empty());
        assert_eq!(r.steps, vec![OfStep::Miss { table: 0, fatal: true }]);
        let r = br.process(2, icmp(mac(1), mac(2), None));
        assert!(r.outputs.is_empty());
    }

    #[test]
    fn normal_never_forwards_to_reserved_addresses_and_does_not_learn_from_them() {
        let flows = parse_flows("table=0, priority=0 actions=NORMAL").unwrap();
        let mut br = OfBridge::new("br", ports(), &flows);
        for dst in ["01:80:c2:00:00:00", "01:80:c2:00:00:0e", "01:00:0c:cc:cc:cc", "00:e0:2b:00:00:00", "01:00:0c:cc:cc:c3"] {
            let dst: MacAddr = dst.parse().unwrap();
            assert!(is_reserved(dst), "{dst}");
            let r = br.process(0, icmp(mac(1), dst, None));
            assert!(r.outputs.is_empty(), "{dst} must not be forwarded: {:?}", r.outputs);
            assert!(matches!(r.steps.last(), Some(OfStep::Event(OvsEvent::ReservedDestination { .. }))), "{:?}", r.steps);
        }
        assert!(br.mac_table.is_empty(), "OVS checks admissibility before learning");
        for other in ["01:80:c2:00:00:10", "01:00:5e:00:00:01", "33:33:00:00:00:01", "00:e0:2b:00:00:01", "ff:ff:ff:ff:ff:ff"] {
            let dst: MacAddr = other.parse().unwrap();
            assert!(!is_reserved(dst), "{dst}");
            assert_eq!(br.process(0, icmp(mac(1), dst, None)).outputs.len(), 2, "{dst} floods in VLAN 1");
        }
    }

    /// The classifier against a trivial reference: the highest-priority
    /// matching flow, earliest among equals, found by scanning everything.
    fn reference<'a>(flows: &'a [Flow], table: u8, in_port: &str, f: &Frame) -> Option<&'a Flow> {
        let mut best: Option<&Flow> = None;
        for fl in flows.iter().filter(|fl| fl.table.0 == table && flow_matches(&fl.matches, in_port, f)) {
            if best.is_none_or(|b| fl.priority > b.priority) {
                best = Some(fl);
            }
        }
        best
    }

    proptest! {
        #[test]
        fn classifier_agrees_with_linear_scan(
            rules in proptest::collection::vec((0u8..3, 0u16..5, proptest::option::of(0usize..4), proptest::option::of(1u8..4), proptest::option::of(prop_oneof![Just(None), (1u16..3).prop_map(Some)]), proptest::option::of(1u8..4)), 0..30),
            pkt in (0usize..4, 1u8..4, 1u8..4, proptest::option::of(1u16..3), 0u8..3),
        ) {
            let names = ["a", "b", "c", "trunk"];
            let flows: Vec<Flow> = rules.iter().enumerate().map(|(i, (t, prio, inp, src, vlan, dst))| {
                let m = Match {
                    in_port: inp.map(|p| names[p].to_string()),
                    dl_src: src.map(mac),
                    dl_dst: dst.map(mac),
                    dl_vlan: vlan.map(|v| v.map_or(VlanMatch::Untagged, VlanMatch::Tagged)),
                    ..Default::default()
                };
                Flow::new(*t, *prio, m, vec![Action::Output(format!("x{i}"))])
            }).collect();
            let br = OfBridge::new("br", ports(), &flows);
            let f = icmp(mac(pkt.1), mac(pkt.2), pkt.3);
            prop_assert_eq!(br.lookup(pkt.4, names[pkt.0], &f), reference(&flows, pkt.4, names[pkt.0], &f));
        }
    }
}
