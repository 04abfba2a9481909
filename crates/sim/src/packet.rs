//! Frames as the twin sees them: Ethernet with an optional 802.1Q tag,
//! carrying ARP or IPv4 (ICMP echo, TCP, UDP). Only the fields DVR looks at.

use dvr_model::MacAddr;
use dvr_model::text::Ipv4Text as Ip;
use serde::Serialize;
use std::fmt;
use std::net::Ipv4Addr;

/// ARP opcode 1.
pub const ARP_REQUEST: u16 = 1;
/// ARP opcode 2.
pub const ARP_REPLY: u16 = 2;

/// Transport part of an IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "l4", rename_all = "snake_case")]
pub enum L4 {
    /// ICMP echo request (`reply = false`) or reply, with its identifier.
    Icmp {
        /// Echo reply?
        reply: bool,
        /// Identifier (conntrack uses it like a port).
        id: u16,
    },
    /// TCP segment.
    Tcp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
    /// UDP datagram.
    Udp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
}

impl L4 {
    /// IP protocol number.
    pub fn proto(&self) -> u8 {
        match self {
            L4::Icmp { .. } => 1,
            L4::Tcp { .. } => 6,
            L4::Udp { .. } => 17,
        }
    }
    /// (source, destination) "ports"; ICMP uses its id for both.
    pub fn ports(&self) -> (u16, u16) {
        match *self {
            L4::Icmp { id, .. } => (id, id),
            L4::Tcp { sport, dport } | L4::Udp { sport, dport } => (sport, dport),
        }
    }
    /// The answer a responder sends.
    pub fn reversed(&self) -> L4 {
        match *self {
            L4::Icmp { id, .. } => L4::Icmp { reply: true, id },
            L4::Tcp { sport, dport } => L4::Tcp { sport: dport, dport: sport },
            L4::Udp { sport, dport } => L4::Udp { sport: dport, dport: sport },
        }
    }
}

/// What an Ethernet frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Payload {
    /// ARP.
    Arp {
        /// Opcode.
        op: u16,
        /// Sender hardware address.
        sha: MacAddr,
        /// Sender protocol address.
        spa: Ipv4Addr,
        /// Target hardware address.
        tha: MacAddr,
        /// Target protocol address.
        tpa: Ipv4Addr,
    },
    /// IPv4.
    Ip {
        /// Source.
        src: Ipv4Addr,
        /// Destination.
        dst: Ipv4Addr,
        /// Transport.
        l4: L4,
    },
}

/// One Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Frame {
    /// Source MAC.
    pub src: MacAddr,
    /// Destination MAC.
    pub dst: MacAddr,
    /// 802.1Q VLAN id, if tagged.
    pub vlan: Option<u16>,
    /// Payload.
    pub payload: Payload,
}

impl Frame {
    /// Whether this is ARP.
    pub fn is_arp(&self) -> bool {
        matches!(self.payload, Payload::Arp { .. })
    }
    /// (source, destination) IPv4 addresses; ARP gives (spa, tpa).
    pub fn ips(&self) -> (Ipv4Addr, Ipv4Addr) {
        match self.payload {
            Payload::Arp { spa, tpa, .. } => (spa, tpa),
            Payload::Ip { src, dst, .. } => (src, dst),
        }
    }
    /// A short protocol label for traces.
    pub fn proto_label(&self) -> String {
        ProtoLabel(self).to_string()
    }
}

/// [`Frame::proto_label`] as a `Display` (written into a hop's line).
struct ProtoLabel<'a>(&'a Frame);

impl fmt::Display for ProtoLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.payload {
            Payload::Arp { op: ARP_REQUEST, tpa, spa, .. } => write!(f, "arp who-has {} tell {}", Ip(tpa), Ip(spa)),
            Payload::Arp { spa, sha, .. } => write!(f, "arp reply {} is-at {sha}", Ip(spa)),
            Payload::Ip { l4: L4::Icmp { reply: false, .. }, .. } => f.write_str("icmp echo-request"),
            Payload::Ip { l4: L4::Icmp { reply: true, .. }, .. } => f.write_str("icmp echo-reply"),
            Payload::Ip { l4: L4::Tcp { sport, dport }, .. } => write!(f, "tcp {sport}->{dport}"),
            Payload::Ip { l4: L4::Udp { sport, dport }, .. } => write!(f, "udp {sport}->{dport}"),
        }
    }
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} > {}", self.src, self.dst)?;
        if let Some(v) = self.vlan {
            write!(f, " vlan {v}")?;
        }
        let (s, d) = self.ips();
        write!(f, ", {} {} > {}", ProtoLabel(self), Ip(s), Ip(d))
    }
}

/// The packet fields a trace hop reports (the contract's `packet` object).
/// Typed and `Copy`: a hop records it without formatting anything; the
/// addresses serialise as the same strings (`fa:16:3e:…`, `192.168.1.10`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PacketView {
    /// Ethernet source.
    pub eth_src: MacAddr,
    /// Ethernet destination.
    pub eth_dst: MacAddr,
    /// VLAN id or null.
    pub vlan: Option<u16>,
    /// IPv4 source (ARP: sender address).
    pub ip_src: Ipv4Addr,
    /// IPv4 destination (ARP: target address).
    pub ip_dst: Ipv4Addr,
    /// `arp`, `icmp`, `tcp` or `udp`.
    pub proto: PacketProto,
    /// The outer headers while the frame crosses the underlay inside a
    /// VXLAN tunnel (the fields above are then the inner frame's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<Encap>,
}

/// The VXLAN encapsulation of a frame on the underlay: outer IPv4 source and
/// destination (the two hosts' `local_ip`s), UDP destination port and VNI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Encap {
    /// Outer source: the sending host's `local_ip`.
    pub src: Ipv4Addr,
    /// Outer destination: the receiving host's `local_ip`.
    pub dst: Ipv4Addr,
    /// The VXLAN network identifier (the sender's `tun_id`).
    pub vni: u32,
    /// The outer UDP destination port (4789).
    pub udp_dst: u16,
}

impl fmt::Display for Encap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VXLAN VNI {} {} > {} udp/{}", self.vni, Ip(self.src), Ip(self.dst), self.udp_dst)
    }
}

impl From<&Frame> for PacketView {
    fn from(f: &Frame) -> Self {
        let (ip_src, ip_dst) = f.ips();
        let proto = match f.payload {
            Payload::Arp { .. } => PacketProto::Arp,
            Payload::Ip { l4: L4::Icmp { .. }, .. } => PacketProto::Icmp,
            Payload::Ip { l4: L4::Tcp { .. }, .. } => PacketProto::Tcp,
            Payload::Ip { l4: L4::Udp { .. }, .. } => PacketProto::Udp,
        };
        PacketView { eth_src: f.src, eth_dst: f.dst, vlan: f.vlan, ip_src, ip_dst, proto, tunnel: None }
    }
}

/// The protocol a trace hop reports for its packet: one byte in the hop
/// (a `&'static str` took sixteen, and every trace records tens of hops).
/// Reads, compares and serialises as its name (`"arp"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketProto {
    /// ARP.
    Arp,
    /// ICMP.
    Icmp,
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl PacketProto {
    /// `arp`, `icmp`, `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            PacketProto::Arp => "arp",
            PacketProto::Icmp => "icmp",
            PacketProto::Tcp => "tcp",
            PacketProto::Udp => "udp",
        }
    }
}

impl fmt::Display for PacketProto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for PacketProto {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl PartialEq<str> for PacketProto {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for PacketProto {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}
