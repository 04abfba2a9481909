//! Domain value types shared by every layer.
//!
//! Each type parses once at the edge (YAML, CLI, `ovs-ofctl` text) and is then
//! valid by construction, so later layers never re-check a MAC or a VLAN range.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// An Ethernet address. Printed the way `ip` and `ovs-ofctl` print it
/// (lower-case, colon separated), because users compare it with those tools.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The broadcast address, the destination of ARP requests.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// The all-zero address (unset ARP target hardware address).
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// The IPv6 link-local address derived from this MAC (modified EUI-64,
    /// RFC 4291 appendix A): what an instance uses for neighbour discovery,
    /// so Neutron's anti-spoofing lets it advertise exactly this target.
    pub fn ipv6_link_local(self) -> std::net::Ipv6Addr {
        let m = self.0;
        std::net::Ipv6Addr::from([0xfe, 0x80, 0, 0, 0, 0, 0, 0, m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]])
    }

    /// Group bit set: such an address can never be a port's own MAC.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 == 1
    }

    /// Whether the first three octets equal `prefix`; used to check that
    /// DVR MACs stay in the DVR base range and port MACs in the port range.
    pub fn has_prefix(self, prefix: [u8; 3]) -> bool {
        self.0[..3] == prefix
    }

    /// The three octets after the prefix as one number; allocators probe in
    /// this space.
    pub fn low24(self) -> u32 {
        u32::from_be_bytes([0, self.0[3], self.0[4], self.0[5]])
    }

    /// A MAC from a 3-octet prefix and the low 24 bits of `low`.
    pub fn from_prefix(prefix: [u8; 3], low: u32) -> MacAddr {
        let b = low.to_be_bytes();
        MacAddr([prefix[0], prefix[1], prefix[2], b[1], b[2], b[3]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // By hand, not six `{:02x}`: traces print several MACs per hop.
        let mut out = [0; 17];
        f.write_str(self.encode(&mut out))
    }
}

impl MacAddr {
    /// The address as `fa:16:3e:…` written into `out` (what `Display` writes).
    pub fn encode(self, out: &mut [u8; 17]) -> &str {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        *out = [b':'; 17];
        for (i, b) in self.0.iter().enumerate() {
            out[3 * i] = HEX[usize::from(b >> 4)];
            out[3 * i + 1] = HEX[usize::from(b & 0xf)];
        }
        std::str::from_utf8(out).unwrap_or_default()
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a text is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a MAC address (expected six hex octets like fa:16:3e:00:01:09)")]
pub struct MacParseError(pub String);

impl FromStr for MacAddr {
    type Err = MacParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for o in out.iter_mut() {
            let p = parts.next().ok_or_else(err)?;
            // Hex digits only: from_str_radix would also take a sign (`+f`).
            if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An 802.1Q VLAN id usable for traffic: 1..=4094. 0 means "priority tag only"
/// and 4095 is Neutron's dead VLAN, so neither can be a segment or a local VLAN.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct VlanId(u16);

impl VlanId {
    /// Smallest usable id.
    pub const MIN: u16 = 1;
    /// Largest usable id (4095 is reserved as Neutron's `DEAD_VLAN_TAG`).
    pub const MAX: u16 = 4094;

    /// Checked constructor.
    pub fn new(v: u16) -> Option<VlanId> {
        (Self::MIN..=Self::MAX).contains(&v).then_some(VlanId(v))
    }

    /// The raw id.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for VlanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for VlanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vlan{}", self.0)
    }
}

impl<'de> Deserialize<'de> for VlanId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u16::deserialize(d)?;
        VlanId::new(v).ok_or_else(|| serde::de::Error::custom(format!("{v} is not a VLAN id in 1..=4094")))
    }
}

/// A VXLAN network identifier (24 bits, 0 reserved).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize)]
#[serde(transparent)]
pub struct Vni(u32);

impl Vni {
    /// Largest VNI (24 bits).
    pub const MAX: u32 = (1 << 24) - 1;
    /// Checked constructor.
    pub fn new(v: u32) -> Option<Vni> {
        (1..=Self::MAX).contains(&v).then_some(Vni(v))
    }
    /// The raw id.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Vni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

macro_rules! typed_id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub uuid::Uuid);

        impl $name {
            /// The canonical hyphenated form Neutron prints and names devices from.
            pub fn hyphenated(&self) -> String {
                self.0.hyphenated().to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }
    };
}

typed_id!(
    /// Neutron network UUID; names the `qdhcp-` and `fip-` namespaces.
    NetworkId
);
typed_id!(
    /// Neutron subnet UUID.
    SubnetId
);
typed_id!(
    /// Neutron router UUID; names `qrouter-`/`snat-` namespaces and `rfp-`/`fpr-` devices.
    RouterId
);
typed_id!(
    /// Neutron port UUID; names `qr-`, `sg-`, `qg-`, `fg-`, `qvo`, `tap` devices.
    PortId
);
typed_id!(
    /// Neutron floating IP UUID.
    FloatingIpId
);
typed_id!(
    /// Agent host UUID (Neutron keys hosts by name; the id keeps JSON uniform).
    HostId
);

macro_rules! typed_index {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize)]
        #[serde(transparent)]
        pub struct $name(pub usize);
    };
}

typed_index!(
    /// Index into `Topology::hosts`.
    HostIx
);
typed_index!(
    /// Index into `Topology::networks`.
    NetworkIx
);
typed_index!(
    /// Index into `Topology::subnets`.
    SubnetIx
);
typed_index!(
    /// Index into `Topology::routers`.
    RouterIx
);
typed_index!(
    /// Index into `Topology::ports`.
    PortIx
);
typed_index!(
    /// Index into `Topology::instances`.
    InstanceIx
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn mac_roundtrips(b in proptest::array::uniform6(any::<u8>())) {
            let m = MacAddr(b);
            prop_assert_eq!(m.to_string().parse::<MacAddr>().unwrap(), m);
        }

        #[test]
        fn mac_parse_never_panics(s in "\\PC{0,24}") {
            let _ = s.parse::<MacAddr>();
        }

        #[test]
        fn vlan_range(v in any::<u16>()) {
            prop_assert_eq!(VlanId::new(v).is_some(), (1..=4094).contains(&v));
        }
    }

    #[test]
    fn mac_rejects_garbage() {
        for bad in
            ["", "fa:16:3e", "fa:16:3e:00:00:00:00", "zz:16:3e:00:00:00", "fa:16:3e:000:0:0", "+f:16:3e:00:00:00", "fa:16:3e:00:00:+0"]
        {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }
}
