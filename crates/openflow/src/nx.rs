//! The Nicira extensions Neutron's `openvswitch` firewall driver relies on:
//! registers, conntrack (`ct_state`, `ct_zone`, `ct_mark`, the `ct(…)`
//! action), conjunctive matches, and the provenance that ties a firewall flow
//! to the security-group rule it implements.
//!
//! Spellings follow `ovs-ofctl -O OpenFlow13 dump-flows` of Open vSwitch 3.1,
//! so a printed flow loads into OVS and OVS's dump parses back to the same
//! value.

use serde::Serialize;
use std::fmt;

/// A value with a bit mask, as in `reg0=0x1/0x1` or `tp_dst=0x60/0xffe0`.
/// A mask of all ones is an exact match and prints without `/mask`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize)]
pub struct Masked<T> {
    /// The value (bits outside the mask are zero, as OVS stores them).
    pub value: T,
    /// Which bits are compared.
    pub mask: T,
}

impl Masked<u32> {
    /// An exact 32-bit match.
    pub fn exact(value: u32) -> Self {
        Masked { value, mask: u32::MAX }
    }
    /// Whether `x` matches.
    pub fn matches(&self, x: u32) -> bool {
        x & self.mask == self.value & self.mask
    }
}

impl Masked<u16> {
    /// An exact 16-bit match.
    pub fn exact(value: u16) -> Self {
        Masked { value, mask: u16::MAX }
    }
    /// Whether `x` matches.
    pub fn matches(&self, x: u16) -> bool {
        x & self.mask == self.value & self.mask
    }
}

/// OVS's hexadecimal spelling: `0` for zero, else `0x…` (C's `%#x`).
pub(crate) fn hex(v: u64) -> String {
    if v == 0 { "0".into() } else { format!("{v:#x}") }
}

impl fmt::Display for Masked<u32> {
    /// Registers and marks print in hex, as OVS dumps them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mask == u32::MAX {
            f.write_str(&hex(self.value.into()))
        } else {
            write!(f, "{}/{}", hex(self.value.into()), hex(self.mask.into()))
        }
    }
}

impl fmt::Display for Masked<u16> {
    /// Transport ports print in decimal, masked ones in hex (as OVS does).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mask == u16::MAX { write!(f, "{}", self.value) } else { write!(f, "{}/{}", hex(self.value.into()), hex(self.mask.into())) }
    }
}

/// Conntrack state bits as OVS numbers them (`CS_NEW` = 0x01 …); the printer
/// lists them in this order, as `ovs-ofctl` does.
pub mod ct_flags {
    /// `new`: the first packet of a connection not yet committed.
    pub const NEW: u8 = 0x01;
    /// `est`: a packet of a committed connection.
    pub const EST: u8 = 0x02;
    /// `rel`: related to a committed connection (an ICMP error about it).
    pub const REL: u8 = 0x04;
    /// `rpl`: in the reply direction.
    pub const RPL: u8 = 0x08;
    /// `inv`: conntrack could not make sense of the packet.
    pub const INV: u8 = 0x10;
    /// `trk`: the packet went through conntrack.
    pub const TRK: u8 = 0x20;
    /// `snat`: source NAT applied.
    pub const SNAT: u8 = 0x40;
    /// `dnat`: destination NAT applied.
    pub const DNAT: u8 = 0x80;
    /// Names in bit order.
    pub const NAMES: [(u8, &str); 8] =
        [(NEW, "new"), (EST, "est"), (REL, "rel"), (RPL, "rpl"), (INV, "inv"), (TRK, "trk"), (SNAT, "snat"), (DNAT, "dnat")];
}

/// A `ct_state` match: the flags in `mask` must equal those in `flags`
/// (`ct_state=+est-rel-rpl` is flags EST, mask EST|REL|RPL).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize)]
pub struct CtStateMatch {
    /// Required values of the masked bits.
    pub flags: u8,
    /// Which bits are checked.
    pub mask: u8,
}

impl CtStateMatch {
    /// Whether a packet's conntrack state (bits of [`ct_flags`]) matches.
    pub fn matches(&self, state: u8) -> bool {
        state & self.mask == self.flags & self.mask
    }
}

impl fmt::Display for CtStateMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mask == 0 {
            return f.write_str("0/0");
        }
        for (bit, name) in ct_flags::NAMES {
            if self.mask & bit != 0 {
                write!(f, "{}{name}", if self.flags & bit != 0 { '+' } else { '-' })?;
            }
        }
        Ok(())
    }
}

/// A field an action can write or read (`load`, `set_field`, `move`,
/// `ct(zone=…)`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// Register `reg0`..`reg7` (`NXM_NX_REG0`..): Neutron keeps the port's
    /// OpenFlow number in reg5 and its network's local VLAN (the conntrack
    /// zone) in reg6.
    Reg(u8),
    /// `ct_mark` (`NXM_NX_CT_MARK`): Neutron marks connections a rule
    /// change revoked with 1.
    CtMark,
    /// `ct_zone` (`NXM_NX_CT_ZONE`, read-only in OVS).
    CtZone,
    /// `in_port` (`NXM_OF_IN_PORT`).
    InPort,
}

impl Field {
    /// Width in bits.
    pub fn width(self) -> u8 {
        match self {
            Field::Reg(_) | Field::CtMark => 32,
            Field::CtZone | Field::InPort => 16,
        }
    }
    /// The NXM name `move` and `load` print (`NXM_NX_REG6`).
    pub fn nxm_name(self) -> String {
        match self {
            Field::Reg(n) => format!("NXM_NX_REG{n}"),
            Field::CtMark => "NXM_NX_CT_MARK".into(),
            Field::CtZone => "NXM_NX_CT_ZONE".into(),
            Field::InPort => "NXM_OF_IN_PORT".into(),
        }
    }
    /// The OXM-style name `set_field` prints (`reg6`).
    pub fn name(self) -> String {
        match self {
            Field::Reg(n) => format!("reg{n}"),
            Field::CtMark => "ct_mark".into(),
            Field::CtZone => "ct_zone".into(),
            Field::InPort => "in_port".into(),
        }
    }
    /// Read either spelling.
    pub fn from_name(s: &str) -> Option<Field> {
        let reg = |n: &str| n.parse::<u8>().ok().filter(|n| *n < 8).map(Field::Reg);
        if let Some(n) = s.strip_prefix("NXM_NX_REG") {
            return reg(n);
        }
        if let Some(n) = s.strip_prefix("reg") {
            return reg(n);
        }
        match s {
            "NXM_NX_CT_MARK" | "ct_mark" => Some(Field::CtMark),
            "NXM_NX_CT_ZONE" | "ct_zone" => Some(Field::CtZone),
            "NXM_OF_IN_PORT" | "in_port" => Some(Field::InPort),
            _ => None,
        }
    }
}

/// Bits `ofs..ofs+n_bits` of a field, printed `NXM_NX_REG6[0..15]` (all bits:
/// `NXM_NX_REG6[]`, one bit: `[3]`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize)]
pub struct Subfield {
    /// The field.
    pub field: Field,
    /// First bit.
    pub ofs: u8,
    /// Number of bits (1..=width).
    pub n_bits: u8,
}

impl Subfield {
    /// The whole field.
    pub fn whole(field: Field) -> Self {
        Subfield { field, ofs: 0, n_bits: field.width() }
    }
    /// Whether this covers the whole field.
    pub fn is_whole(&self) -> bool {
        self.ofs == 0 && self.n_bits == self.field.width()
    }
    /// The bit mask of the covered bits, in field position.
    pub fn mask(&self) -> u64 {
        (if self.n_bits >= 64 { u64::MAX } else { (1u64 << self.n_bits) - 1 }) << self.ofs
    }
}

impl fmt::Display for Subfield {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.field.nxm_name();
        if self.is_whole() {
            write!(f, "{name}[]")
        } else if self.n_bits == 1 {
            write!(f, "{name}[{}]", self.ofs)
        } else {
            write!(f, "{name}[{}..{}]", self.ofs, self.ofs + self.n_bits - 1)
        }
    }
}

/// The conntrack zone of a `ct` action: a constant or read from a register
/// (Neutron: `zone=NXM_NX_REG6[0..15]`, the port's network).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CtZoneSrc {
    /// `zone=N`.
    Imm(u16),
    /// `zone=NXM_NX_REGn[a..b]` (16 bits).
    Field(Subfield),
}

impl fmt::Display for CtZoneSrc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtZoneSrc::Imm(z) => write!(f, "{z}"),
            CtZoneSrc::Field(s) => write!(f, "{s}"),
        }
    }
}

/// `ct(commit,table=N,zone=…,nat,exec(set_field:V->ct_mark))`: send the
/// packet through the connection tracker of a zone; with `table`, continue
/// in that table with `ct_state` filled in (a recirculation: the current
/// action list ends for this copy of the packet).
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default, Serialize)]
pub struct CtAction {
    /// Create the connection (or update its mark) in the tracker.
    pub commit: bool,
    /// Recirculate to this table after tracking.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<crate::TableId>,
    /// Zone (default 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<CtZoneSrc>,
    /// Apply the connection's NAT (plain `nat`, no arguments).
    pub nat: bool,
    /// `exec(…)`: writes to the connection's `ct_mark` on commit.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exec: Vec<crate::Action>,
}

impl fmt::Display for CtAction {
    /// OVS's order: commit, table, zone, nat, exec.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if self.commit {
            parts.push("commit".into());
        }
        if let Some(t) = self.table {
            parts.push(format!("table={t}"));
        }
        if let Some(z) = self.zone {
            parts.push(format!("zone={z}"));
        }
        if self.nat {
            parts.push("nat".into());
        }
        if !self.exec.is_empty() {
            parts.push(format!("exec({})", self.exec.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",")));
        }
        write!(f, "ct({})", parts.join(","))
    }
}

/// Which security-group rule a firewall flow implements: the provenance the
/// plan attaches so a trace can say which rule of which group allowed (or,
/// by its absence, did not allow) a packet. Shared (`Arc`) by every flow of
/// one rule; `None` on the pipeline's own flows.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize)]
pub struct SgRuleRef {
    /// Security group name (as in the topology file / API).
    pub group: String,
    /// Security group id.
    pub group_id: String,
    /// Rule id.
    pub rule_id: String,
    /// The rule in one line, e.g. `ingress IPv4 tcp 22 from 0.0.0.0/0`.
    pub summary: String,
}

impl fmt::Display for SgRuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "security group {} rule {} ({})", self.group, self.rule_id, self.summary)
    }
}
