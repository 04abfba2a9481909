//! OpenFlow flows as values: the matches and actions the DVR pipeline uses,
//! printed in `ovs-ofctl` syntax so users can read them and OVS can load them.

use dvr_model::MacAddr;
use serde::Serialize;
use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::nx::{CtAction, CtStateMatch, Masked, SgRuleRef, Subfield};

/// An OpenFlow table number. The meaning of each number is declared once,
/// per bridge kind, by the plan layer (`dvr_plan::tables`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize)]
#[serde(transparent)]
pub struct TableId(pub u8);

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How a flow matches the 802.1Q tag.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VlanMatch {
    /// Frames without a tag (`dl_vlan=0xffff`, Neutron's flat networks).
    Untagged,
    /// Frames tagged with this VLAN id.
    Tagged(u16),
}

/// The protocol part of a match, printed as `ovs-ofctl` shorthands.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Proto {
    /// `arp` (dl_type=0x0806).
    Arp,
    /// `ip` (dl_type=0x0800).
    Ip,
    /// `icmp` (ip, nw_proto=1).
    Icmp,
    /// `tcp` (ip, nw_proto=6).
    Tcp,
    /// `udp` (ip, nw_proto=17).
    Udp,
    /// `icmp6` (dl_type=0x86dd, nw_proto=58): the anti-spoofing of IPv6
    /// neighbour advertisements matches it.
    Icmp6,
    /// `ipv6` (dl_type=0x86dd): Neutron's firewall has IPv6 twins of its
    /// IPv4 flows; the twin's IPv4 frames never match them.
    Ipv6,
    /// `ip,nw_proto=N` for a protocol without a shorthand (a security-group
    /// rule given by number). OVS prints 132 as `sctp`, which reads back here.
    IpProto(u8),
}

impl Proto {
    /// The `ovs-ofctl` keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Proto::Arp => "arp",
            Proto::Ip => "ip",
            Proto::Icmp => "icmp",
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp6 => "icmp6",
            Proto::Ipv6 => "ipv6",
            Proto::IpProto(_) => "ip",
        }
    }
    /// The IPv4 protocol number this shorthand requires, if any.
    pub fn ip_proto(self) -> Option<u8> {
        match self {
            Proto::Icmp => Some(1),
            Proto::Tcp => Some(6),
            Proto::Udp => Some(17),
            Proto::IpProto(n) => Some(n),
            _ => None,
        }
    }
}

/// An IPv4 address with an optional mask (prefix length), as in `nw_dst=10.0.0.0/24`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize)]
pub struct Ipv4Match {
    /// Address (host bits beyond the prefix are zero).
    pub addr: Ipv4Addr,
    /// Prefix length 0..=32.
    pub prefix: u8,
}

impl Ipv4Match {
    /// An exact address.
    pub fn host(addr: Ipv4Addr) -> Self {
        Ipv4Match { addr, prefix: 32 }
    }
    /// Whether `ip` falls inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix) };
        u32::from(ip) & mask == u32::from(self.addr) & mask
    }
}

impl fmt::Display for Ipv4Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addr = dvr_model::text::Ipv4Text(self.addr);
        if self.prefix == 32 { write!(f, "{addr}") } else { write!(f, "{addr}/{}", self.prefix) }
    }
}

/// The match part of a flow. Unset fields are wildcards.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default, Serialize)]
pub struct Match {
    /// Protocol shorthand (`arp`, `ip`, `icmp` …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proto: Option<Proto>,
    /// Ingress port, by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_port: Option<String>,
    /// 802.1Q tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dl_vlan: Option<VlanMatch>,
    /// Ethernet source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dl_src: Option<MacAddr>,
    /// Ethernet destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dl_dst: Option<MacAddr>,
    /// Bits of `dl_dst` compared (`dl_dst=01:00:00:00:00:00/01:00:00:00:00:00`
    /// matches every multicast frame); `None` compares all 48.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dl_dst_mask: Option<MacAddr>,
    /// Tunnel id (the VNI of a frame received on a VXLAN port).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tun_id: Option<u64>,
    /// ARP opcode (1 request, 2 reply).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arp_op: Option<u16>,
    /// ARP sender protocol address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arp_spa: Option<Ipv4Match>,
    /// ARP target protocol address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arp_tpa: Option<Ipv4Match>,
    /// ARP target hardware address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arp_tha: Option<MacAddr>,
    /// IPv4 source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nw_src: Option<Ipv4Match>,
    /// IPv4 destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nw_dst: Option<Ipv4Match>,
    /// ICMP (with `icmp`) or ICMPv6 (with `icmp6`) type, e.g. 136 for a
    /// neighbour advertisement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    /// ICMP code (with `icmp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
    /// Target address of an IPv6 neighbour solicitation or advertisement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nd_target: Option<Ipv6Addr>,
    /// TCP/UDP source port, maskable (`tp_src`; `tcp_src`/`udp_src` read too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tp_src: Option<Masked<u16>>,
    /// TCP/UDP destination port, maskable: Neutron splits a port range
    /// into masked matches (`tp_dst=0x60/0xffe0`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tp_dst: Option<Masked<u16>>,
    /// Registers `reg0`..`reg7`, maskable (Neutron: reg5 = port, reg6 = zone).
    #[serde(skip_serializing_if = "no_regs")]
    pub regs: [Option<Masked<u32>>; 8],
    /// Conntrack state flags (`ct_state=+trk+est`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ct_state: Option<CtStateMatch>,
    /// Conntrack zone the packet was tracked in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ct_zone: Option<u16>,
    /// Mark of the packet's connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ct_mark: Option<Masked<u32>>,
    /// Conjunction id: matches after every clause of `conjunction(id, k/n)`
    /// matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conj_id: Option<u32>,
}

fn no_regs(r: &[Option<Masked<u32>>; 8]) -> bool {
    r.iter().all(Option::is_none)
}

impl Match {
    /// Whether any field needs per-packet metadata (registers, conntrack,
    /// conjunctions): the twin checks those only then.
    pub fn has_metadata(&self) -> bool {
        !no_regs(&self.regs)
            || self.ct_state.is_some()
            || self.ct_zone.is_some()
            || self.ct_mark.is_some()
            || self.conj_id.is_some()
            || self.tun_id.is_some()
    }

    /// Whether `mac` matches `dl_dst` (under `dl_dst_mask`); true when unset.
    pub fn dl_dst_matches(&self, mac: MacAddr) -> bool {
        let Some(d) = self.dl_dst else { return true };
        let mask = self.dl_dst_mask.map_or([0xff; 6], |m| m.0);
        (0..6).all(|i| d.0[i] & mask[i] == mac.0[i] & mask[i])
    }
}

/// One OpenFlow action.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(tag = "action", content = "arg", rename_all = "snake_case")]
pub enum Action {
    /// `output:PORT`.
    Output(String),
    /// `NORMAL`: hand the frame to the bridge's learning switch.
    Normal,
    /// `drop` (an empty action list).
    Drop,
    /// `resubmit(,T)`: run table T, then continue with the next action.
    Resubmit(TableId),
    /// `goto_table:T` (OpenFlow 1.1+ instruction; must move forward).
    GotoTable(TableId),
    /// `mod_vlan_vid:V`: set (or push, if untagged) the VLAN id.
    ModVlanVid(u16),
    /// `strip_vlan`: remove the outer tag (printed `pop_vlan` by OVS in OF1.3).
    StripVlan,
    /// `push_vlan:0x8100`.
    PushVlan,
    /// `mod_dl_src:MAC`.
    ModDlSrc(MacAddr),
    /// `mod_dl_dst:MAC`.
    ModDlDst(MacAddr),
    /// `ct(…)`: conntrack (commit, zone, recirculation table, nat, exec).
    Ct(CtAction),
    /// `ct_clear`: forget the packet's conntrack state.
    CtClear,
    /// `conjunction(id,k/n)`: this flow is clause `k` of `n` of conjunctive
    /// match `id` (only allowed alone or with other `conjunction`s).
    Conjunction {
        /// Conjunction id (what `conj_id=` matches).
        id: u32,
        /// This clause, 1-based.
        clause: u8,
        /// Number of clauses.
        n_clauses: u8,
    },
    /// Write a constant into (bits of) a field: `set_field:0x5->reg5` for a
    /// whole field, `load:0x1->NXM_NX_REG0[0..3]` for part of one (both
    /// spellings read).
    Load {
        /// Destination bits.
        dst: Subfield,
        /// Value (fits in `dst.n_bits`).
        value: u64,
    },
    /// `move:SRC->DST`: copy bits between fields (equal widths).
    Move {
        /// Source bits.
        src: Subfield,
        /// Destination bits.
        dst: Subfield,
    },
    /// `IN_PORT`: send the frame back out of the port it came in on (OVS
    /// drops a plain `output` to the ingress port); the ARP responder
    /// answers this way.
    InPort,
    /// `learn(…)`: br-tun's MAC learning from tunnel frames.
    Learn(Learn),
}

/// The one `learn` action the OVS agent installs (br-tun table 10,
/// `_setup_learn_flows`): from a frame received on a tunnel, learn a flow in
/// `table` that sends frames to its source MAC on its local VLAN back out of
/// that tunnel with its tunnel id. Only this spec is modelled, so it is a
/// fixed shape with the three numbers Neutron sets.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Learn {
    /// Table the learned flow goes to (UCAST_TO_TUN, 20).
    pub table: TableId,
    /// Priority of the learned flow (1: below l2population's entries).
    pub priority: u16,
    /// Seconds the learned flow lives (300).
    pub hard_timeout: u16,
}

impl Learn {
    /// The flow spec, as `ovs-ofctl` prints it.
    pub const SPEC: &'static str = "NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[]";
}

/// The three numbers and the fixed spec, so that readers of the JSON plan
/// (the conformance harness) see the whole action, not only what varies.
impl Serialize for Learn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Learn", 4)?;
        st.serialize_field("table", &self.table)?;
        st.serialize_field("priority", &self.priority)?;
        st.serialize_field("hard_timeout", &self.hard_timeout)?;
        st.serialize_field("spec", Learn::SPEC)?;
        st.end()
    }
}

impl fmt::Display for Learn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "learn(table={},hard_timeout={},priority={},{})", self.table, self.hard_timeout, self.priority, Learn::SPEC)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Output(p) => write!(f, "output:{p}"),
            Action::Normal => f.write_str("NORMAL"),
            Action::Drop => f.write_str("drop"),
            Action::Resubmit(t) => write!(f, "resubmit(,{t})"),
            Action::GotoTable(t) => write!(f, "goto_table:{t}"),
            Action::ModVlanVid(v) => write!(f, "mod_vlan_vid:{v}"),
            Action::StripVlan => f.write_str("strip_vlan"),
            Action::PushVlan => f.write_str("push_vlan:0x8100"),
            Action::ModDlSrc(m) => write!(f, "mod_dl_src:{m}"),
            Action::ModDlDst(m) => write!(f, "mod_dl_dst:{m}"),
            Action::Ct(ct) => write!(f, "{ct}"),
            Action::CtClear => f.write_str("ct_clear"),
            Action::Conjunction { id, clause, n_clauses } => write!(f, "conjunction({id},{clause}/{n_clauses})"),
            Action::Load { dst, value } if dst.is_whole() => {
                write!(f, "set_field:{}->{}", dst.field.format_value(*value), dst.field.name())
            }
            Action::Load { dst, value } => write!(f, "load:{}->{dst}", crate::nx::hex(*value)),
            Action::Move { src, dst } => write!(f, "move:{src}->{dst}"),
            Action::InPort => f.write_str("IN_PORT"),
            Action::Learn(l) => write!(f, "{l}"),
        }
    }
}

/// One flow, with the reason it exists: the builder that emitted it and a
/// sentence a person can read in `dvr plan --explain` and in traces.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize)]
pub struct Flow {
    /// Table.
    pub table: TableId,
    /// Priority (higher wins).
    pub priority: u16,
    /// Match.
    #[serde(rename = "match")]
    pub matches: Match,
    /// Actions in order; `[Drop]` for a drop flow.
    pub actions: Vec<Action>,
    /// Builder that emitted the flow: the source location of the call that
    /// made it (`crates/plan/src/flows.rs:84`, recorded with `#[track_caller]`),
    /// or `dump` for a flow read from a host.
    ///
    /// Borrowed (`'static`) in planned flows: the plan interns each call
    /// site once instead of formatting `file:line` for millions of flows.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub builder: Cow<'static, str>,
    /// Why the flow exists (borrowed when the sentence is a constant, so a
    /// 1,000-host plan does not allocate it per flow).
    #[serde(skip_serializing_if = "str::is_empty")]
    pub reason: Cow<'static, str>,
    /// The security-group rule this firewall flow implements (set by the
    /// plan's firewall builder; traces name it as the deciding rule).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sg_rule: Option<Arc<SgRuleRef>>,
}

impl Flow {
    /// A flow without provenance (parsed from a dump).
    pub fn new(table: u8, priority: u16, matches: Match, actions: Vec<Action>) -> Flow {
        Flow { table: TableId(table), priority, matches, actions, builder: Cow::Borrowed(""), reason: Cow::Borrowed(""), sg_rule: None }
    }

    /// The match part in `ovs-ofctl` syntax, e.g. `arp,in_port=qvo1,arp_spa=192.168.1.9`.
    pub fn match_string(&self) -> String {
        let mut s = String::new();
        let _ = self.write_match(&mut s);
        s
    }

    /// Write the match part (see [`Flow::match_string`]) straight into `o`,
    /// without a string per field: explained traces print one per table
    /// step. Whether anything was written (an empty match matches all).
    pub fn write_match(&self, o: &mut impl fmt::Write) -> Result<bool, fmt::Error> {
        self.write_match_after(o, "")
    }

    /// [`Flow::write_match`], preceded by `lead` when anything is written.
    fn write_match_after(&self, o: &mut impl fmt::Write, lead: &'static str) -> Result<bool, fmt::Error> {
        let m = &self.matches;
        let mut parts = Parts { o, any: false, lead };
        if let Some(x) = m.conj_id {
            parts.put(format_args!("conj_id={x}"))?;
        }
        if let Some(x) = m.ct_state {
            parts.put(format_args!("ct_state={x}"))?;
        }
        if let Some(x) = m.ct_zone {
            parts.put(format_args!("ct_zone={x}"))?;
        }
        if let Some(x) = m.ct_mark {
            parts.put(format_args!("ct_mark={x}"))?;
        }
        if let Some(p) = m.proto {
            parts.put_str("", p.keyword())?;
            if let Proto::IpProto(n) = p {
                parts.put(format_args!("nw_proto={n}"))?;
            }
        }
        for (i, r) in m.regs.iter().enumerate() {
            if let Some(r) = r {
                parts.put(format_args!("reg{i}={r}"))?;
            }
        }
        if let Some(p) = &m.in_port {
            parts.put_str("in_port=", p)?;
        }
        if let Some(t) = m.tun_id {
            parts.put(format_args!("tun_id={}", crate::nx::hex(t)))?;
        }
        match m.dl_vlan {
            Some(VlanMatch::Tagged(v)) => parts.put_num("dl_vlan=", u32::from(v))?,
            Some(VlanMatch::Untagged) => parts.put(format_args!("dl_vlan=0xffff"))?,
            None => {}
        }
        if let Some(x) = m.dl_src {
            parts.put_str("dl_src=", x.encode(&mut [0; 17]))?;
        }
        match (m.dl_dst, m.dl_dst_mask) {
            (Some(x), Some(mask)) => parts.put(format_args!("dl_dst={x}/{mask}"))?,
            (Some(x), None) => parts.put_str("dl_dst=", x.encode(&mut [0; 17]))?,
            _ => {}
        }
        if let Some(x) = m.arp_op {
            parts.put(format_args!("arp_op={x}"))?;
        }
        if let Some(x) = m.arp_spa {
            parts.put(format_args!("arp_spa={x}"))?;
        }
        if let Some(x) = m.arp_tpa {
            parts.put(format_args!("arp_tpa={x}"))?;
        }
        if let Some(x) = m.arp_tha {
            parts.put(format_args!("arp_tha={x}"))?;
        }
        if let Some(x) = m.nw_src {
            parts.put(format_args!("nw_src={x}"))?;
        }
        if let Some(x) = m.nw_dst {
            parts.put(format_args!("nw_dst={x}"))?;
        }
        if let Some(x) = m.tp_src {
            parts.put(format_args!("tp_src={x}"))?;
        }
        if let Some(x) = m.tp_dst {
            parts.put(format_args!("tp_dst={x}"))?;
        }
        if let Some(x) = m.icmp_type {
            parts.put(format_args!("icmp_type={x}"))?;
        }
        if let Some(x) = m.icmp_code {
            parts.put(format_args!("icmp_code={x}"))?;
        }
        if let Some(x) = m.nd_target {
            parts.put(format_args!("nd_target={x}"))?;
        }
        Ok(parts.any)
    }

    /// The actions part, e.g. `mod_dl_src:fa:16:3f:…,resubmit(,2)`.
    pub fn actions_string(&self) -> String {
        let mut s = String::new();
        let _ = self.write_actions(&mut s);
        s
    }

    /// Write the actions part (see [`Flow::actions_string`]) straight into `o`.
    pub fn write_actions(&self, o: &mut impl fmt::Write) -> fmt::Result {
        if self.actions.is_empty() {
            return o.write_str("drop");
        }
        for (i, a) in self.actions.iter().enumerate() {
            if i > 0 {
                o.write_char(',')?;
            }
            write_action(o, a)?;
        }
        Ok(())
    }
}

/// What `Action`'s `Display` writes, the common actions without the
/// formatting machinery (explained traces print one flow per hop).
fn write_action(o: &mut impl fmt::Write, a: &Action) -> fmt::Result {
    match a {
        Action::Output(p) => {
            o.write_str("output:")?;
            o.write_str(p)
        }
        Action::Normal => o.write_str("NORMAL"),
        Action::Resubmit(t) => {
            o.write_str("resubmit(,")?;
            write_num(o, u32::from(t.0))?;
            o.write_char(')')
        }
        Action::ModVlanVid(v) => {
            o.write_str("mod_vlan_vid:")?;
            write_num(o, u32::from(*v))
        }
        Action::ModDlSrc(m) => {
            o.write_str("mod_dl_src:")?;
            o.write_str(m.encode(&mut [0; 17]))
        }
        Action::ModDlDst(m) => {
            o.write_str("mod_dl_dst:")?;
            o.write_str(m.encode(&mut [0; 17]))
        }
        _ => write!(o, "{a}"),
    }
}

/// A number in decimal, in one `write_str` (itoa: no formatting machinery).
fn write_num(o: &mut impl fmt::Write, n: u32) -> fmt::Result {
    o.write_str(itoa::Buffer::new().format(n))
}

/// Comma-separated fields written as they come (see [`Flow::write_match`]).
struct Parts<'a, W: fmt::Write> {
    o: &'a mut W,
    any: bool,
    /// Written before the first field.
    lead: &'static str,
}

impl<W: fmt::Write> Parts<'_, W> {
    fn put(&mut self, a: fmt::Arguments<'_>) -> fmt::Result {
        self.o.write_str(if self.any { "," } else { self.lead })?;
        self.any = true;
        self.o.write_fmt(a)
    }
    /// `key` then `value`, without the formatting machinery.
    fn put_str(&mut self, key: &str, value: &str) -> fmt::Result {
        self.o.write_str(if self.any { "," } else { self.lead })?;
        self.any = true;
        self.o.write_str(key)?;
        self.o.write_str(value)
    }
    /// `key` then a number.
    fn put_num(&mut self, key: &str, n: u32) -> fmt::Result {
        self.o.write_str(if self.any { "," } else { self.lead })?;
        self.any = true;
        self.o.write_str(key)?;
        write_num(self.o, n)
    }
}

/// `ovs-ofctl dump-flows --no-stats --names` style; `ovs-ofctl add-flows`
/// loads it unchanged.
impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "table={}, priority={}", self.table, self.priority)?;
        self.write_match_after(f, ",")?;
        f.write_str(" actions=")?;
        self.write_actions(f)
    }
}
