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

use crate::conntrack::OvsConntrack;
use crate::name::Name;
use crate::packet::{Frame, L4, Payload};
use dvr_model::MacAddr;
use dvr_openflow::{Action, CtZoneSrc, Field, Flow, Match, Proto, Subfield, VlanMatch};
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
/// insertion order) and its `in_port` resolved to a port index. Kept to 24
/// bytes: a host of a 1,000-host cloud has thousands of DVR-MAC flows, each
/// ranked once per bridge that carries it.
#[derive(Debug, Clone)]
struct Ranked {
    rank: u32,
    /// The resolved `in_port` ([`NO_PORT`] when the name is not a port).
    in_port: Option<u32>,
    /// Whether the match reads packet metadata (registers, conntrack, conj_id).
    meta: bool,
    flow: Arc<Flow>,
}

/// A flow's `in_port` that names no port of the bridge (it never matches a
/// real port; it stands for `usize::MAX`, the index of an unknown one).
const NO_PORT: u32 = u32::MAX;

impl Ranked {
    /// Whether the flow's `in_port` (if any) is port `in_port`.
    fn port_matches(&self, in_port: usize) -> bool {
        self.in_port.is_none_or(|i| if i == NO_PORT { in_port == usize::MAX } else { i as usize == in_port })
    }
}

/// The per-packet metadata OpenFlow matches beside the headers: registers,
/// the conntrack fields a `ct(table=…)` recirculation fills in, and the
/// conjunction id during a conjunctive lookup. Zero when a frame enters a
/// bridge (OVS clears them at patch ports too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    /// `reg0`..`reg7`.
    pub regs: [u32; 8],
    /// `ct_state` ([`dvr_openflow::ct_flags`]).
    pub ct_state: u8,
    /// `ct_zone`.
    pub ct_zone: u16,
    /// `ct_mark`.
    pub ct_mark: u32,
    /// `conj_id` (0 outside a conjunctive re-lookup).
    pub conj_id: u32,
    /// `tun_id`: the tunnel id (VNI) br-tun sets before output to a tunnel
    /// port, or the one a frame arrived with from a tunnel.
    pub tun_id: u64,
    /// `tun_src`: the outer source address of a frame that arrived from a
    /// tunnel (the remote VTEP); `None` for frames from anywhere else.
    pub tun_src: Option<std::net::Ipv4Addr>,
    /// `tun_dst`: the outer destination address (this host's `local_ip`).
    pub tun_dst: Option<std::net::Ipv4Addr>,
}

impl Meta {
    fn get(&self, f: Field, in_port: usize) -> u64 {
        match f {
            Field::Reg(n) => self.regs[n as usize].into(),
            Field::CtMark => self.ct_mark.into(),
            Field::CtZone => self.ct_zone.into(),
            Field::InPort => in_port as u64,
            Field::TunId => self.tun_id,
            // Header fields live in the frame ([`header_get`]), never here.
            _ => 0,
        }
    }
    fn read(&self, s: Subfield, in_port: usize) -> u64 {
        (self.get(s.field, in_port) & s.mask()) >> s.ofs
    }
    fn write(&mut self, s: Subfield, value: u64) {
        let put = |old: u64| (old & !s.mask()) | ((value << s.ofs) & s.mask());
        match s.field {
            Field::Reg(n) => self.regs[n as usize] = put(self.regs[n as usize].into()) as u32,
            Field::CtMark => self.ct_mark = put(self.ct_mark.into()) as u32,
            Field::TunId => self.tun_id = put(self.tun_id),
            // Read-only (refused by the parser); in_port is not rewritten by
            // the twin; header fields are written into the frame ([`header_set`]).
            _ => {}
        }
    }
}

/// The value of a header field of a frame (0 for ARP fields of a non-ARP frame).
fn header_get(f: &Frame, field: Field) -> u64 {
    let mac = |m: MacAddr| m.0.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b));
    match (field, &f.payload) {
        (Field::EthSrc, _) => mac(f.src),
        (Field::EthDst, _) => mac(f.dst),
        (Field::ArpOp, Payload::Arp { op, .. }) => u64::from(*op),
        (Field::ArpSpa, Payload::Arp { spa, .. }) => u32::from(*spa).into(),
        (Field::ArpTpa, Payload::Arp { tpa, .. }) => u32::from(*tpa).into(),
        (Field::ArpSha, Payload::Arp { sha, .. }) => mac(*sha),
        (Field::ArpTha, Payload::Arp { tha, .. }) => mac(*tha),
        _ => 0,
    }
}

/// Write bits of a header field of a frame (ARP fields of a non-ARP frame are ignored).
fn header_set(f: &mut Frame, s: Subfield, value: u64) {
    let v = (header_get(f, s.field) & !s.mask()) | ((value << s.ofs) & s.mask());
    let mac = |v: u64| {
        let b = v.to_be_bytes();
        MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
    };
    match (s.field, &mut f.payload) {
        (Field::EthSrc, _) => f.src = mac(v),
        (Field::EthDst, _) => f.dst = mac(v),
        (Field::ArpOp, Payload::Arp { op, .. }) => *op = v as u16,
        (Field::ArpSpa, Payload::Arp { spa, .. }) => *spa = std::net::Ipv4Addr::from(v as u32),
        (Field::ArpTpa, Payload::Arp { tpa, .. }) => *tpa = std::net::Ipv4Addr::from(v as u32),
        (Field::ArpSha, Payload::Arp { sha, .. }) => *sha = mac(v),
        (Field::ArpTha, Payload::Arp { tha, .. }) => *tha = mac(v),
        _ => {}
    }
}

/// Read bits of a field: from the frame for headers, else from the metadata.
fn field_read(f: &Frame, meta: &Meta, s: Subfield, in_port: usize) -> u64 {
    if s.field.is_header() { (header_get(f, s.field) & s.mask()) >> s.ofs } else { meta.read(s, in_port) }
}

/// Write bits of a field: into the frame for headers, else into the metadata.
fn field_write(f: &mut Frame, meta: &mut Meta, s: Subfield, value: u64) {
    if s.field.is_header() { header_set(f, s, value) } else { meta.write(s, value) }
}

/// Whether the metadata fields of a match hold.
fn meta_matches(m: &Match, x: &Meta) -> bool {
    m.regs.iter().zip(x.regs).all(|(r, v)| r.is_none_or(|r| r.matches(v)))
        && m.ct_state.is_none_or(|c| c.matches(x.ct_state))
        && m.ct_zone.is_none_or(|z| z == x.ct_zone)
        && m.ct_mark.is_none_or(|c| c.matches(x.ct_mark))
        && m.conj_id.is_none_or(|c| c == x.conj_id)
        && m.tun_id.is_none_or(|t| t == x.tun_id)
}

/// Whether every action is `conjunction(…)`: such a flow is one clause of a
/// conjunctive match, never a match of its own.
fn is_conjunctive(f: &Flow) -> bool {
    !f.actions.is_empty() && f.actions.iter().all(|a| matches!(a, Action::Conjunction { .. }))
}

/// A flow and its resolved `in_port`, before ranking.
type Unranked = (Arc<Flow>, Option<usize>);

/// One flow table, partitioned like a (much simplified) OVS classifier: flows
/// that match an exact `dl_src` are found by hash of the frame's source, those
/// matching an exact `dl_dst` by its destination, those matching only an
/// `in_port` by the ingress port, the rest by scan. The
/// winner is the candidate of lowest rank: the same flow a priority-ordered
/// linear scan finds (property-tested below).
///
/// The buckets are ranges of one array (`flows`, grouped by bucket, each in
/// rank order), not a vector per key: a br-vlan of a 1,000-host cloud has a
/// `dl_src` bucket per other host's DVR MAC, and one allocation each made
/// building a host's twin cost more than planning it.
#[derive(Debug, Clone, Default)]
struct Table {
    flows: Vec<Ranked>,
    by_src: FxMap<MacAddr, Bucket>,
    by_dst: FxMap<MacAddr, Bucket>,
    by_in_port: FxMap<usize, Bucket>,
    rest: Bucket,
    /// Clauses of conjunctive matches (flows whose actions are all
    /// `conjunction`), in rank order.
    conj: Vec<Ranked>,
}

/// A range of [`Table::flows`].
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    start: u32,
    end: u32,
}

/// Which bucket of a [`Table`] a flow goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Src(MacAddr),
    Dst(MacAddr),
    Port(usize),
    Rest,
}

/// The value bits of a [`Key::code`]: a MAC, or a port index (all ones for
/// `usize::MAX`, the index of an unknown port).
const KEY_VALUE: u64 = (1 << 48) - 1;

impl Key {
    /// The key as one integer, kind in the top bits and the MAC or port in
    /// the low 48, so grouping flows by bucket sorts integers.
    fn code(self) -> u64 {
        let mac = |m: MacAddr| m.0.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b));
        match self {
            Key::Src(m) => mac(m),
            Key::Dst(m) => (1 << 48) | mac(m),
            Key::Port(p) => (2 << 48) | u64::try_from(p).unwrap_or(KEY_VALUE).min(KEY_VALUE),
            Key::Rest => 3 << 48,
        }
    }

    /// The key of a [`Key::code`].
    fn decode(code: u64) -> Key {
        let v = code & KEY_VALUE;
        let b = v.to_be_bytes();
        let mac = MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]]);
        match code >> 48 {
            0 => Key::Src(mac),
            1 => Key::Dst(mac),
            2 if v == KEY_VALUE => Key::Port(usize::MAX),
            2 => Key::Port(v as usize),
            _ => Key::Rest,
        }
    }
}

/// What a table lookup found: the flow, and the conjunctive match that led
/// to it (its id and the clause flows that matched), if any.
type Found<'a> = (Option<&'a Ranked>, Option<(u32, Vec<Arc<Flow>>)>);

impl Table {
    /// A table of flows given in rank order (descending priority, ties in
    /// insertion order; [`OfBridge::from_shared`] sorts them).
    fn new(entries: impl ExactSizeIterator<Item = Unranked>) -> Table {
        let mut t = Table::default();
        let mut ranked: Vec<Option<Ranked>> = Vec::with_capacity(entries.len());
        // (bucket key, rank) of the ordinary flows; keys as in [`Key::code`].
        let mut keyed: Vec<(u64, u32)> = Vec::with_capacity(entries.len());
        for (rank, (flow, in_port)) in entries.enumerate() {
            let meta = flow.matches.has_metadata();
            // At most a few hundred thousand flows per table: ranks and port indices fit.
            let in_port = in_port.map(|p| u32::try_from(p).unwrap_or(NO_PORT));
            let r = Ranked { rank: u32::try_from(rank).unwrap_or(u32::MAX), in_port, meta, flow };
            if is_conjunctive(&r.flow) {
                t.conj.push(r);
                continue;
            }
            // A masked dl_dst (br-tun's unicast/multicast split) matches many
            // MACs, so it cannot be indexed by one.
            let dst = r.flow.matches.dl_dst.filter(|_| r.flow.matches.dl_dst_mask.is_none());
            let key = match (r.flow.matches.dl_src, dst, in_port) {
                (Some(src), _, _) => Key::Src(src),
                (None, Some(dst), _) => Key::Dst(dst),
                // The bucket of an unknown port name is usize::MAX's, as before.
                (None, None, Some(port)) => Key::Port(if port == NO_PORT { usize::MAX } else { port as usize }),
                (None, None, None) => Key::Rest,
            };
            keyed.push((key.code(), u32::try_from(ranked.len()).unwrap_or(u32::MAX)));
            ranked.push(Some(r));
        }
        // Grouped by bucket, each in rank order (`ranked` is in rank order).
        keyed.sort_unstable();
        t.flows = keyed.iter().filter_map(|&(_, i)| ranked[i as usize].take()).collect();
        let mut start = 0u32;
        for (i, &(code, _)) in keyed.iter().enumerate() {
            if keyed.get(i + 1).is_some_and(|&(next, _)| next == code) {
                continue;
            }
            let b = Bucket { start, end: u32::try_from(i + 1).unwrap_or(u32::MAX) };
            start = b.end;
            match Key::decode(code) {
                Key::Src(m) => drop(t.by_src.insert(m, b)),
                Key::Dst(m) => drop(t.by_dst.insert(m, b)),
                Key::Port(p) => drop(t.by_in_port.insert(p, b)),
                Key::Rest => t.rest = b,
            }
        }
        t
    }

    fn bucket(&self, b: Bucket) -> &[Ranked] {
        &self.flows[b.start as usize..b.end as usize]
    }

    fn find<'a>(&'a self, in_port: usize, f: &Frame, x: &Meta) -> Option<&'a Ranked> {
        let first = |list: &'a [Ranked]| -> Option<&'a Ranked> {
            list.iter()
                .find(|e| e.port_matches(in_port) && fields_match(&e.flow.matches, f) && (!e.meta || meta_matches(&e.flow.matches, x)))
        };
        let mut best: Option<&Ranked> = first(self.bucket(self.rest));
        for b in [self.by_in_port.get(&in_port), self.by_src.get(&f.src), self.by_dst.get(&f.dst)].into_iter().flatten() {
            if let Some(e) = first(self.bucket(*b))
                && best.is_none_or(|b| e.rank < b.rank)
            {
                best = Some(e);
            }
        }
        best
    }

    /// OVS's lookup with conjunctive matches (`classifier_lookup`): the best
    /// ordinary flow ("hard" match) unless conjunction clauses of a higher
    /// priority match; then, from the highest priority down, the first
    /// conjunction (lowest id) whose every clause `k/n` has a matching flow
    /// makes a second lookup with `conj_id` set (conjunction flows left out);
    /// its result wins. Without a complete conjunction the hard match stands.
    fn lookup(&self, in_port: usize, f: &Frame, x: &Meta) -> Found<'_> {
        let hard = self.find(in_port, f, x);
        if self.conj.is_empty() {
            return (hard, None);
        }
        let floor = hard.map(|h| h.flow.priority);
        let soft: Vec<&Ranked> = self
            .conj
            .iter()
            .filter(|e| floor.is_none_or(|p| e.flow.priority > p))
            .filter(|e| e.port_matches(in_port) && fields_match(&e.flow.matches, f) && (!e.meta || meta_matches(&e.flow.matches, x)))
            .collect();
        for level in soft.chunk_by(|a, b| a.flow.priority == b.flow.priority) {
            let mut seen: BTreeMap<u32, (u8, u64)> = BTreeMap::new();
            for e in level {
                for a in &e.flow.actions {
                    if let Action::Conjunction { id, clause, n_clauses } = *a {
                        let s = seen.entry(id).or_insert((n_clauses, 0));
                        if s.0 == n_clauses {
                            s.1 |= 1 << (clause - 1);
                        }
                    }
                }
            }
            for (id, (n, bits)) in seen {
                let all = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
                if bits != all {
                    continue;
                }
                let again = Meta { conj_id: id, ..*x };
                if let Some(r) = self.find(in_port, f, &again) {
                    let clauses = level
                        .iter()
                        .filter(|e| e.flow.actions.iter().any(|a| matches!(a, Action::Conjunction { id: i, .. } if *i == id)))
                        .map(|e| e.flow.clone())
                        .collect();
                    return (Some(r), Some((id, clauses)));
                }
            }
        }
        (hard, None)
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
    tables: Vec<Table>,
    /// Table number → 1 + its index in `tables` (0: no such table), so a
    /// lookup, done at every table of every frame, is two array reads.
    slot: Box<[u8; 256]>,
    /// Port name → index (`Output` actions name their port).
    port_ix: FxMap<Name, usize>,
    /// NORMAL's learned (VLAN, MAC) → port.
    pub mac_table: FxMap<(u16, MacAddr), usize>,
    /// Integration or physical bridge, when known (names tables in traces).
    pub kind: Option<dvr_plan::tables::BridgeKind>,
    /// The connection tracker the bridge's `ct` actions use (Neutron's
    /// firewall runs on br-int only, so one per bridge is one per datapath
    /// for it). Its clock is [`OvsConntrack::now`].
    pub ct: OvsConntrack,
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
    /// A `ct` action ran: the state conntrack gave the packet.
    Conntrack {
        /// Zone.
        zone: u16,
        /// `ct_state` found ([`dvr_openflow::ct_flags`]).
        state: u8,
        /// `ct_mark` of the connection after the action.
        mark: u32,
        /// Whether the connection was committed (created or updated).
        commit: bool,
        /// The table the packet recirculates to, if any.
        recirc: Option<u8>,
    },
    /// Processing resumed after a `ct(table=…)` recirculation.
    Recirculated {
        /// The table it resumed in.
        table: u8,
    },
    /// A conjunctive match completed: the next `Matched` step is the flow
    /// found with `conj_id` set.
    Conjunction {
        /// Conjunction id.
        id: u32,
        /// The clause flows that matched (one or more per clause).
        clauses: Vec<Arc<Flow>>,
    },
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
    /// An action the twin does not execute: the frame is dropped.
    NotModelled {
        /// The action as printed.
        action: String,
    },
    /// Never reached through a lookup (conjunction clauses are not matches
    /// of their own); kept for a flow run directly.
    ConjunctionOnly,
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
            OvsEvent::NotModelled { action } => write!(f, "action {action} is not modelled by the twin: dropped"),
            OvsEvent::ConjunctionOnly => write!(f, "a conjunction clause matched alone: dropped"),
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
    /// The `tun_id` metadata at each output (parallel to `outputs`): the key
    /// a flow-based tunnel port (`options:key=flow`) encapsulates with.
    pub tun_ids: Vec<u64>,
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
        // By name index, not by scan: br-tun has a tunnel port and an
        // `in_port` flow per other host (hosts² comparisons at 1,000 hosts).
        let port_ix: FxMap<Name, usize> = ports.iter().enumerate().rev().map(|(i, p)| (p.name.clone(), i)).collect();
        // Each flow's place, (table, descending priority, position): unique,
        // so one unstable sort of these small keys gives every table's rank
        // order, ties in insertion order (this runs for every bridge of every
        // host a lazy twin builds: thousands of DVR-MAC flows each).
        let mut order: Vec<(u8, std::cmp::Reverse<u16>, u32)> =
            flows.iter().enumerate().map(|(i, f)| (f.table.0, std::cmp::Reverse(f.priority), i as u32)).collect();
        order.sort_unstable();
        let mut slot = Box::new([0u8; 256]);
        let mut tables = Vec::new();
        for group in order.chunk_by(|a, b| a.0 == b.0) {
            tables.push(Table::new(group.iter().map(|&(_, _, i)| {
                let f = &flows[i as usize];
                (f.clone(), f.matches.in_port.as_ref().map(|n| port_ix.get(n.as_str()).copied().unwrap_or(usize::MAX)))
            })));
            // At most 256 tables, so the index fits.
            slot[usize::from(group[0].0)] = u8::try_from(tables.len()).unwrap_or(0);
        }
        OfBridge { name: name.into(), ports, tables, slot, port_ix, mac_table: FxMap::default(), kind: None, ct: OvsConntrack::default() }
    }

    /// The flow table `t`, if the bridge has one.
    fn table(&self, t: u8) -> Option<&Table> {
        self.slot[usize::from(t)].checked_sub(1).map(|i| &self.tables[usize::from(i)])
    }

    /// Port index by name (the first port of that name).
    pub fn port(&self, name: &str) -> Option<usize> {
        // `ports` is public: trust the index only while it still names the port.
        match self.port_ix.get(name) {
            Some(&i) if self.ports.get(i).is_some_and(|p| p.name == name) => Some(i),
            _ => self.ports.iter().position(|p| p.name == name),
        }
    }

    /// The first flow of `table` matching the frame (priority order), with
    /// empty metadata.
    pub fn lookup(&self, table: u8, in_port: &str, f: &Frame) -> Option<&Flow> {
        self.lookup_meta(table, in_port, f, &Meta::default())
    }

    /// The flow of `table` OVS would pick for the frame with this metadata
    /// (conjunctive matches included).
    pub fn lookup_meta(&self, table: u8, in_port: &str, f: &Frame, meta: &Meta) -> Option<&Flow> {
        let ix = self.port(in_port).unwrap_or(usize::MAX);
        self.table(table)?.lookup(ix, f, meta).0.map(|r| &*r.flow)
    }

    /// Run a frame received on port `in_port` through the pipeline from table 0.
    pub fn process(&mut self, in_port: usize, frame: Frame) -> OfResult {
        self.process_meta(in_port, frame, Meta::default())
    }

    /// [`Self::process`] with the frame's metadata preset (registers,
    /// conntrack fields), as `ofproto/trace` accepts them.
    pub fn process_meta(&mut self, in_port: usize, frame: Frame, meta: Meta) -> OfResult {
        let mut x = Exec { frame, in_port, res: OfResult::default(), stop: false, meta, recirc: Vec::new() };
        self.run_table(&mut x, 0, 0);
        // `ct(table=N)` forks: the current actions finish first, then each
        // tracked copy resumes in its table (a miss there drops, as at table 0).
        let mut next = 0;
        while next < x.recirc.len() && !x.stop {
            let (table, frame, meta) = x.recirc[next];
            next += 1;
            x.frame = frame;
            x.meta = meta;
            x.push(OfStep::Recirculated { table });
            self.run_table(&mut x, table, 0);
        }
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
        let (found, conj) = match self.table(table) {
            Some(t) => {
                let (r, c) = t.lookup(inp, &x.frame, &x.meta);
                (r.map(|r| r.flow.clone()), c)
            }
            None => (None, None),
        };
        let Some(flow) = found else {
            x.push(OfStep::Miss { table, fatal: depth == 0 });
            return;
        };
        if let Some((id, clauses)) = conj {
            x.push(OfStep::Conjunction { id, clauses });
        }
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
                    Some(p) => x.output(p, x.frame),
                    None => x.push(OfStep::Event(OvsEvent::UnknownPort { port: name.clone() })),
                },
                Action::Normal => self.normal(x),
                Action::Ct(ct) => {
                    let zone = match ct.zone {
                        None => 0,
                        Some(CtZoneSrc::Imm(z)) => z,
                        Some(CtZoneSrc::Field(s)) => x.meta.read(s, x.in_port) as u16,
                    };
                    let mark = ct.exec.iter().rev().find_map(|a| match a {
                        Action::Load { dst, value } if dst.field == Field::CtMark => {
                            let mut m = Meta { ct_mark: x.meta.ct_mark, ..Meta::default() };
                            m.write(*dst, *value);
                            Some(m.ct_mark)
                        }
                        _ => None,
                    });
                    // A scripted tracker (ofproto/trace --ct-next) answers only recirculations.
                    let r = if self.ct.script.is_some() && ct.table.is_none() {
                        crate::conntrack::CtResult { state: x.meta.ct_state, mark: x.meta.ct_mark }
                    } else {
                        self.ct.execute(zone, &x.frame, ct.commit, mark)
                    };
                    let recirc = ct.table.map(|t| t.0);
                    x.push(OfStep::Conntrack { zone, state: r.state, mark: r.mark, commit: ct.commit, recirc });
                    if let Some(t) = recirc {
                        let meta = Meta { ct_state: r.state, ct_zone: zone, ct_mark: r.mark, ..x.meta };
                        x.recirc.push((t, x.frame, meta));
                    }
                }
                Action::CtClear => {
                    x.meta.ct_state = 0;
                    x.meta.ct_zone = 0;
                    x.meta.ct_mark = 0;
                }
                Action::Load { dst, value } => field_write(&mut x.frame, &mut x.meta, *dst, *value),
                Action::Move { src, dst } => {
                    let v = field_read(&x.frame, &x.meta, *src, x.in_port);
                    field_write(&mut x.frame, &mut x.meta, *dst, v);
                }
                // The ARP responder's answer goes back where the request came from.
                Action::InPort => x.output(x.in_port, x.frame),
                // br-tun learning only caches what flooding already reaches
                // (l2population's unicast entries outrank learned flows), so
                // the twin does not add learned flows.
                Action::Learn(_) => {}
                Action::Conjunction { .. } => {
                    x.push(OfStep::Event(OvsEvent::ConjunctionOnly));
                    x.stop = true;
                }
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
            x.output(p, out);
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
    meta: Meta,
    /// Copies waiting to resume after `ct(table=…)`: (table, frame, metadata).
    recirc: Vec<(u8, Frame, Meta)>,
}

impl Exec {
    fn output(&mut self, port: usize, frame: Frame) {
        self.res.outputs.push((port, frame));
        self.res.tun_ids.push(self.meta.tun_id);
    }

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
    if m.dl_src.is_some_and(|s| s != f.src) || !m.dl_dst_matches(f.dst) {
        return false;
    }
    let arp_fields = m.arp_op.is_some() || m.arp_spa.is_some() || m.arp_tpa.is_some() || m.arp_tha.is_some();
    let ip_fields = m.nw_src.is_some()
        || m.nw_dst.is_some()
        || m.icmp_type.is_some()
        || m.icmp_code.is_some()
        || m.tp_src.is_some()
        || m.tp_dst.is_some();
    // The twin carries ARP and IPv4 only: nothing it sends is ICMPv6, so a
    // flow asking for `icmp6` or an ND target never matches (as in OVS for
    // the same ARP/IPv4 frames).
    if matches!(m.proto, Some(Proto::Icmp6 | Proto::Ipv6)) || m.nd_target.is_some() {
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
                Some(Proto::Icmp6 | Proto::Ipv6) => false,
                Some(Proto::IpProto(n)) => l4.proto() == n,
            };
            // Transport ports: TCP and UDP only (OVS requires tcp/udp for tp_*).
            let ports_ok = match l4 {
                L4::Tcp { sport, dport } | L4::Udp { sport, dport } => {
                    m.tp_src.is_none_or(|p| p.matches(sport)) && m.tp_dst.is_none_or(|p| p.matches(dport))
                }
                L4::Icmp { .. } => m.tp_src.is_none() && m.tp_dst.is_none(),
            };
            // ICMP echo has code 0.
            let icmp_code_ok = match (m.icmp_code, l4) {
                (None, _) => true,
                (Some(c), L4::Icmp { .. }) => c == 0,
                (Some(_), _) => false,
            };
            if !ports_ok || !icmp_code_ok {
                return false;
            }
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

    /// Each output carries the `tun_id` at the time of the output (what a
    /// `key=flow` tunnel port encapsulates with); a frame from a tunnel
    /// matches on the `tun_id` it arrived with.
    #[test]
    fn outputs_carry_the_tun_id_and_tunnel_frames_match_it() {
        let flows = parse_flows(
            "table=0, priority=1,in_port=a actions=set_field:0x3e9->tun_id,output:b,set_field:0x3ea->tun_id,output:c\n\
             table=0, priority=1,in_port=trunk,tun_id=0x3e9 actions=output:a\n\
             table=0, priority=0 actions=drop",
        )
        .unwrap();
        let mut br = OfBridge::new("br-tun", ports(), &flows);
        let r = br.process(0, icmp(mac(1), mac(2), None));
        let outs: Vec<(usize, u64)> = r.outputs.iter().map(|(p, _)| *p).zip(r.tun_ids.iter().copied()).collect();
        assert_eq!(outs, [(1, 0x3e9), (2, 0x3ea)]);
        let from_tunnel = |tun_id| Meta { tun_id, tun_src: Some(Ipv4Addr::new(172, 16, 0, 3)), ..Meta::default() };
        assert_eq!(br.process_meta(3, icmp(mac(2), mac(1), None), from_tunnel(0x3e9)).outputs.len(), 1);
        assert!(br.process_meta(3, icmp(mac(2), mac(1), None), from_tunnel(0x3ea)).outputs.is_empty(), "another VNI: dropped");
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

    /// The classifier against a trivial reference: OVS's lookup written the
    /// obvious way over the whole flow list: the highest-priority matching
    /// ordinary flow (earliest among equals); conjunctive clauses above it,
    /// level by level from the highest priority, complete conjunctions in id
    /// order, each re-looked-up with `conj_id` set.
    fn reference<'a>(flows: &'a [Flow], table: u8, in_port: &str, f: &Frame, meta: &Meta) -> Option<&'a Flow> {
        let ok = |fl: &Flow, m: &Meta| fl.table.0 == table && flow_matches(&fl.matches, in_port, f) && meta_matches(&fl.matches, m);
        let hard = |m: &Meta| {
            let mut best: Option<&'a Flow> = None;
            for fl in flows.iter().filter(|fl| !is_conjunctive(fl) && ok(fl, m)) {
                if best.is_none_or(|b| fl.priority > b.priority) {
                    best = Some(fl);
                }
            }
            best
        };
        let h = hard(meta);
        let soft: Vec<&Flow> =
            flows.iter().filter(|fl| is_conjunctive(fl) && ok(fl, meta) && h.is_none_or(|h| fl.priority > h.priority)).collect();
        let mut pris: Vec<u16> = soft.iter().map(|fl| fl.priority).collect();
        pris.sort_unstable_by(|a, b| b.cmp(a));
        pris.dedup();
        for p in pris {
            let at: Vec<&Flow> = soft.iter().copied().filter(|fl| fl.priority == p).collect();
            let mut ids: Vec<(u32, u8)> = Vec::new();
            for fl in &at {
                for a in &fl.actions {
                    if let Action::Conjunction { id, n_clauses, .. } = *a
                        && !ids.iter().any(|(i, _)| *i == id)
                    {
                        ids.push((id, n_clauses));
                    }
                }
            }
            ids.sort();
            for (id, n) in ids {
                let has = |k: u8| at.iter().any(|fl| fl.actions.contains(&Action::Conjunction { id, clause: k, n_clauses: n }));
                if (1..=n).all(has)
                    && let Some(r) = hard(&Meta { conj_id: id, ..*meta })
                {
                    return Some(r);
                }
            }
        }
        h
    }

    proptest! {
        #[test]
        fn classifier_agrees_with_linear_scan(
            rules in proptest::collection::vec((0u8..3, 0u16..5, proptest::option::of(0usize..4), proptest::option::of(1u8..4), proptest::option::of(prop_oneof![Just(None), (1u16..3).prop_map(Some)]), proptest::option::of(1u8..4), (proptest::option::of(0u32..2), proptest::option::of(1u32..4), proptest::collection::vec((1u32..4, 1u8..4), 0..3))), 0..30),
            pkt in (0usize..4, 1u8..4, 1u8..4, proptest::option::of(1u16..3), 0u8..3, 0u32..2),
        ) {
            let names = ["a", "b", "c", "trunk"];
            let flows: Vec<Flow> = rules.iter().enumerate().map(|(i, (t, prio, inp, src, vlan, dst, (reg0, conj_id, conj)))| {
                let mut m = Match {
                    in_port: inp.map(|p| names[p].to_string()),
                    dl_src: src.map(mac),
                    dl_dst: dst.map(mac),
                    dl_vlan: vlan.map(|v| v.map_or(VlanMatch::Untagged, VlanMatch::Tagged)),
                    conj_id: *conj_id,
                    ..Default::default()
                };
                m.regs[0] = reg0.map(dvr_openflow::Masked::<u32>::exact);
                // Conjunction id `id` always has id+1 clauses (OVS leaves mixed
                // clause counts undefined); clause numbers are clamped into range.
                let actions = if conj.is_empty() {
                    vec![Action::Output(format!("x{i}"))]
                } else {
                    conj.iter().map(|&(id, k)| Action::Conjunction { id, clause: k.min(id as u8 + 1), n_clauses: id as u8 + 1 }).collect()
                };
                Flow::new(*t, *prio, m, actions)
            }).collect();
            let br = OfBridge::new("br", ports(), &flows);
            let f = icmp(mac(pkt.1), mac(pkt.2), pkt.3);
            let mut meta = Meta::default();
            meta.regs[0] = pkt.5;
            prop_assert_eq!(br.lookup_meta(pkt.4, names[pkt.0], &f, &meta), reference(&flows, pkt.4, names[pkt.0], &f, &meta));
        }
    }

    /// A bucket key survives its integer code, and kinds group apart.
    #[test]
    fn bucket_keys_round_trip() {
        for k in [Key::Src(mac(7)), Key::Dst(MacAddr([0xff; 6])), Key::Port(0), Key::Port(3), Key::Port(usize::MAX), Key::Rest] {
            assert_eq!(Key::decode(k.code()), k);
        }
        assert!(Key::Src(MacAddr([0xff; 6])).code() < Key::Dst(MacAddr::ZERO).code());
        assert!(Key::Port(usize::MAX).code() < Key::Rest.code());
    }

    /// A flow whose `in_port` names no port of the bridge never matches a
    /// frame from a real port; a frame from an unknown port name meets it
    /// (both sides are "no such port").
    #[test]
    fn in_port_naming_no_port() {
        let flows = parse_flows("table=0, priority=10,in_port=ghost actions=output:c\ntable=0, priority=1 actions=output:b").unwrap();
        let br = OfBridge::new("br", ports(), &flows);
        let found = |port| br.lookup(0, port, &icmp(mac(1), mac(2), None)).map(|f| f.actions_string());
        assert_eq!(found("a").as_deref(), Some("output:b"));
        assert_eq!(found("ghost").as_deref(), Some("output:c"));
    }

    /// A conjunction completes only when every clause matches, at a priority
    /// above the best ordinary flow; then the `conj_id` flow is chosen.
    #[test]
    fn conjunctive_match_needs_every_clause() {
        let flows = parse_flows(
            "table=0, priority=10,dl_src=fa:16:3e:00:00:01 actions=conjunction(5,1/2)\n\
             table=0, priority=10,dl_dst=fa:16:3e:00:00:02 actions=conjunction(5,2/2)\n\
             table=0, priority=10,conj_id=5 actions=output:c\n\
             table=0, priority=1 actions=output:b",
        )
        .unwrap();
        let br = OfBridge::new("br", ports(), &flows);
        let found = |s, d| br.lookup(0, "a", &icmp(mac(s), mac(d), None)).map(|f| f.actions_string());
        assert_eq!(found(1, 2).as_deref(), Some("output:c"), "both clauses: the conj_id flow");
        assert_eq!(found(1, 3).as_deref(), Some("output:b"), "one clause only: the ordinary flow");
        assert_eq!(found(3, 2).as_deref(), Some("output:b"));
    }
}
