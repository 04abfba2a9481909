//! Deterministic allocators. Neutron draws MACs, local VLANs and link-local
//! pairs at random; we derive them from stable keys (names, UUIDs) and probe
//! on collision, so the same file gives the same plan on every machine, and
//! adding one object does not reshuffle the others.

use crate::types::MacAddr;
use ipnet::Ipv4Net;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use uuid::Uuid;

/// Namespace of every UUID we derive (UUIDv5 of `kind:name`).
pub const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f9e_1c2a_4d3b_4e5f_8a7b_2c1d_0e9f_d7a0);

/// Neutron's `base_mac` prefix for port MACs.
pub const PORT_MAC_PREFIX: [u8; 3] = [0xfa, 0x16, 0x3e];
/// Neutron's default `dvr_base_mac` prefix (`fa:16:3f:00:00:00`).
pub const DVR_MAC_PREFIX: [u8; 3] = [0xfa, 0x16, 0x3f];
/// Prefix for machines outside the cloud (external hosts, upstream gateway),
/// chosen outside both Neutron ranges so they can never collide.
pub const EXTERNAL_MAC_PREFIX: [u8; 3] = [0x52, 0x54, 0x00];

/// `DVR_FIP_LL_CIDR`: the pool of rfp/fpr /31 pairs.
pub const FIP_LINK_LOCAL_POOL: Ipv4Net = match Ipv4Net::new(Ipv4Addr::new(169, 254, 64, 0), 18) {
    Ok(n) => n,
    Err(_) => panic!("constant"),
};

/// A stable UUID for an object of `kind` called `name`.
pub fn derive_id(kind: &str, name: &str) -> Uuid {
    Uuid::new_v5(&ID_NAMESPACE, format!("{kind}:{name}").as_bytes())
}

/// 24 stable bits from a key (32-bit FNV-1a, folded; no need for
/// cryptographic quality). Kept by hand: the `fnv` crate is 64-bit only, and
/// these bits are allocated MACs and link-local pairs, which must not change.
pub fn hash24(key: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h ^ (h >> 24)) & 0x00ff_ffff
}

/// splitmix64: a tiny, fast, deterministic generator for the topology
/// generator and for tests that draw packets. Not for anything secret.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// A generator whose seed is derived from a label (64-bit FNV-1a, from
    /// the `fnv` crate), so each label has its own fixed stream.
    pub fn from_label(label: &str) -> SplitMix64 {
        use std::hash::Hasher;
        let mut h = fnv::FnvHasher::default();
        h.write(label.as_bytes());
        SplitMix64(h.finish())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift.
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// Hands out unique MACs inside one 3-octet prefix.
#[derive(Debug, Default, Clone)]
pub struct MacAllocator {
    used: BTreeSet<MacAddr>,
}

impl MacAllocator {
    /// Reserve an explicit MAC; `false` if it was already taken.
    pub fn reserve(&mut self, mac: MacAddr) -> bool {
        self.used.insert(mac)
    }

    /// Give a MAC back (its port was deleted), so a later port may take it.
    pub fn release(&mut self, mac: MacAddr) {
        self.used.remove(&mac);
    }

    /// A MAC for `key` under `prefix`: the hashed slot, or the next free one.
    /// `None` only when all 2^24 addresses of the prefix are taken.
    pub fn allocate(&mut self, prefix: [u8; 3], key: &str) -> Option<MacAddr> {
        let start = hash24(key);
        (0..1u32 << 24)
            .map(|i| MacAddr::from_prefix(prefix, start.wrapping_add(i)))
            .filter(|m| !m.is_multicast() && m.low24() != 0)
            .find(|m| self.used.insert(*m))
    }
}

/// The addresses of one subnet still free; allocation takes the lowest, as
/// Neutron's IPAM does with its allocation pools.
#[derive(Debug, Clone)]
pub struct IpPool {
    cidr: Ipv4Net,
    /// Inclusive ranges allocation may draw from; empty = the whole subnet.
    ranges: Vec<(u32, u32)>,
    used: BTreeSet<Ipv4Addr>,
    /// Every host address below this one is used: allocation starts here.
    cursor: u32,
}

impl IpPool {
    /// A pool over the usable host addresses of `cidr`.
    pub fn new(cidr: Ipv4Net) -> IpPool {
        IpPool { cidr, ranges: Vec::new(), used: BTreeSet::new(), cursor: u32::from(cidr.network()) + 1 }
    }

    /// A pool that allocates only inside Neutron `allocation_pools` (explicit
    /// addresses outside them can still be reserved, as in Neutron).
    pub fn with_pools(cidr: Ipv4Net, pools: &[crate::spec::AllocationPool]) -> IpPool {
        let mut p = IpPool::new(cidr);
        p.ranges = pools.iter().map(|r| (u32::from(r.start), u32::from(r.end))).collect();
        p
    }

    fn allowed(&self, ip: u32) -> bool {
        self.ranges.is_empty() || self.ranges.iter().any(|&(s, e)| (s..=e).contains(&ip))
    }

    /// Whether `ip` is a usable host address of the subnet.
    pub fn is_host(&self, ip: Ipv4Addr) -> bool {
        self.cidr.contains(&ip) && ip != self.cidr.network() && ip != self.cidr.broadcast()
    }

    /// Reserve `ip`; `false` if already taken.
    pub fn reserve(&mut self, ip: Ipv4Addr) -> bool {
        self.used.insert(ip)
    }

    /// Give an address back (its port or floating IP was deleted): the next
    /// allocation may take it again, as Neutron's IPAM does.
    pub fn release(&mut self, ip: Ipv4Addr) {
        if self.used.remove(&ip) {
            self.cursor = self.cursor.min(u32::from(ip));
        }
    }

    /// The lowest free host address, or `None` when the subnet is full.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let last = u32::from(self.cidr.broadcast());
        while self.cursor < last && (self.used.contains(&Ipv4Addr::from(self.cursor)) || !self.allowed(self.cursor)) {
            self.cursor += 1;
        }
        if self.cursor >= last {
            return None;
        }
        let ip = Ipv4Addr::from(self.cursor);
        self.used.insert(ip);
        self.cursor += 1;
        Some(ip)
    }
}

/// Local VLAN ids of one host: 1..=4094 in the order networks appear.
#[derive(Debug, Clone, Default)]
pub struct LocalVlanAllocator {
    next: u16,
}

impl LocalVlanAllocator {
    /// The next local VLAN, or `None` when 4094 are in use.
    pub fn allocate(&mut self) -> Option<crate::VlanId> {
        let v = crate::VlanId::new(self.next + 1)?;
        self.next += 1;
        Some(v)
    }
}

/// The rfp/fpr link-local /31 pairs of one host (8192 in `169.254.64.0/18`).
#[derive(Debug, Clone, Default)]
pub struct LinkLocalAllocator {
    used: BTreeSet<u32>,
}

impl LinkLocalAllocator {
    /// Number of /31 pairs in the pool.
    pub const PAIRS: u32 = 1 << (32 - 18 - 1);

    /// A pair for `key` (the router id): hashed slot, then the next free.
    /// Returns the /31 whose even address is the `rfp-` end.
    pub fn allocate(&mut self, key: &str) -> Option<Ipv4Net> {
        let start = hash24(key) % Self::PAIRS;
        let slot = (0..Self::PAIRS).map(|i| (start + i) % Self::PAIRS).find(|s| self.used.insert(*s))?;
        let base = u32::from(FIP_LINK_LOCAL_POOL.network()) + 2 * slot;
        Some(Ipv4Net::new(Ipv4Addr::from(base), 31).expect("31 is a valid prefix"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn macs_unique_and_deterministic(keys in proptest::collection::vec("[a-z0-9]{1,8}", 1..200)) {
            let run = || {
                let mut a = MacAllocator::default();
                keys.iter().map(|k| a.allocate(PORT_MAC_PREFIX, k).unwrap()).collect::<Vec<_>>()
            };
            let first = run();
            prop_assert_eq!(&first, &run());
            let set: BTreeSet<_> = first.iter().collect();
            prop_assert_eq!(set.len(), first.len());
            prop_assert!(first.iter().all(|m| m.has_prefix(PORT_MAC_PREFIX) && !m.is_multicast()));
        }

        #[test]
        fn ip_pool_unique_and_exhausts(prefix in 24u8..=30) {
            let cidr: Ipv4Net = format!("10.0.0.0/{prefix}").parse().unwrap();
            let mut pool = IpPool::new(cidr);
            let hosts = cidr.hosts().count();
            let got: Vec<_> = std::iter::from_fn(|| pool.allocate()).collect();
            prop_assert_eq!(got.len(), hosts);
            prop_assert!(got.iter().all(|ip| cidr.contains(ip) && *ip != cidr.network() && *ip != cidr.broadcast()));
            prop_assert!(got.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(pool.allocate().is_none());
        }

        #[test]
        fn link_local_pairs_unique(keys in proptest::collection::btree_set("[a-f0-9]{8}", 1..300)) {
            let mut a = LinkLocalAllocator::default();
            let nets: Vec<_> = keys.iter().map(|k| a.allocate(k).unwrap()).collect();
            let set: BTreeSet<_> = nets.iter().collect();
            prop_assert_eq!(set.len(), nets.len());
            prop_assert!(nets.iter().all(|n| FIP_LINK_LOCAL_POOL.contains(n) && u32::from(n.network()) % 2 == 0));
        }
    }

    #[test]
    fn link_local_exhausts_after_8192() {
        let mut a = LinkLocalAllocator::default();
        for i in 0..LinkLocalAllocator::PAIRS {
            assert!(a.allocate(&i.to_string()).is_some());
        }
        assert!(a.allocate("one-more").is_none());
    }

    #[test]
    fn local_vlans_exhaust_after_4094() {
        let mut a = LocalVlanAllocator::default();
        for i in 1..=4094u16 {
            assert_eq!(a.allocate().unwrap().get(), i);
        }
        assert!(a.allocate().is_none());
    }
}
