//! Networks and subnets: segments (VLAN ids and VNIs allocated when not
//! given), CIDRs, gateways, allocation pools, and the DHCP agent they need.

use super::Resolve;
use super::check::{Checker, Label, check_unique, first_host, named, obj, overlaps, subnet_obj};
use crate::alloc::*;
use crate::error::ProblemKind;
use crate::spec::*;
use crate::topology::*;
use crate::types::*;
use ipnet::Ipv4Net;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

/// Check every network and its subnets. Returns them in file order, with
/// subnet name → index (of the subnets whose CIDR could be read).
pub(super) fn check_networks<'a>(c: &mut Checker, cx: &Resolve<'a>) -> (Vec<Network>, Vec<Subnet>, HashMap<&'a str, usize>) {
    let (spec, hosts) = (cx.spec, &cx.hosts);
    let mut sub_ix: HashMap<&'a str, usize> = HashMap::new();
    check_unique(c, named("networks", &spec.networks, |n| &n.name), "give every network a unique name");
    let all_subnets = spec
        .networks
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.subnets.iter().enumerate().map(move |(k, s)| (Label::Subnet { spec, i, k }, s.name.as_str())));
    check_unique(c, all_subnets, "give every subnet a unique name, across all networks (routers name them in `interfaces`)");
    let mapped: BTreeSet<&str> = hosts.iter().flat_map(|h| h.bridge_mappings.iter().map(|m| m.physnet.as_str())).collect();
    let mut used_vlans: BTreeMap<(String, u16), usize> = BTreeMap::new();
    let mut vlan_cursor: BTreeMap<String, u16> = BTreeMap::new();
    let mut used_vnis: BTreeMap<u32, usize> = BTreeMap::new();
    let mut flat_physnets: BTreeMap<String, usize> = BTreeMap::new();
    // Explicit segmentation ids first, so allocation never takes one given later.
    for (i, n) in spec.networks.iter().enumerate() {
        match (n.kind, n.segmentation_id, &n.physical_network) {
            (NetworkType::Vlan, Some(v), Some(p)) => {
                // Out-of-range ids are reported below; they must not claim a
                // valid id by truncation (65732 as u16 == 196).
                if let Some(vlan) = u16::try_from(v).ok().and_then(VlanId::new) {
                    used_vlans.entry((p.clone(), vlan.get())).or_insert(i);
                }
            }
            (NetworkType::Vxlan, Some(v), _) => {
                if let Some(vni) = u32::try_from(v).ok().and_then(Vni::new) {
                    used_vnis.entry(vni.get()).or_insert(i);
                }
            }
            _ => {}
        }
    }
    let mut networks = Vec::new();
    let mut subnets = Vec::new();
    for (i, n) in spec.networks.iter().enumerate() {
        let o = obj("networks", i, &n.name);
        let physnet = n.physical_network.clone().unwrap_or_default();
        if n.kind != NetworkType::Vxlan {
            if n.physical_network.is_none() {
                c.bad(
                    &o,
                    "physical_network",
                    format!("a {:?} network needs a physical network", n.kind).to_lowercase(),
                    "add `physical_network: <name>` matching a host's bridge_mappings",
                );
            } else if !mapped.contains(physnet.as_str()) {
                c.bad(
                    &o,
                    "physical_network",
                    format!("physical network `{physnet}` is in no host's bridge_mappings"),
                    format!("add `{physnet}: <bridge>` to the bridge_mappings of the hosts that carry it"),
                );
            }
        } else if n.physical_network.is_some() {
            c.bad(&o, "physical_network", "a vxlan network is an overlay and has no physical network", "remove physical_network");
        }
        let segment = match n.kind {
            NetworkType::Vlan => {
                let vlan = match n.segmentation_id {
                    Some(v) => match u16::try_from(v).ok().and_then(VlanId::new) {
                        Some(vlan) => {
                            if let Some(&first) = used_vlans.get(&(physnet.clone(), vlan.get()))
                                && first != i
                            {
                                c.bad_k(
                                    ProblemKind::VlanInUse,
                                    &o,
                                    "segmentation_id",
                                    format!(
                                        "VLAN {vlan} on `{physnet}` is also used by {}",
                                        obj("networks", first, &spec.networks[first].name)
                                    ),
                                    "give each VLAN network on a physical network its own \
                                     VLAN id, or remove segmentation_id to have one allocated",
                                );
                            }
                            vlan
                        }
                        None => {
                            c.bad(&o, "segmentation_id", format!("{v} is not a VLAN id"), "use a VLAN id in 1..=4094");
                            VlanId::new(1).expect("1 is valid")
                        }
                    },
                    None => {
                        // Ids are only ever taken, so the search resumes where the last one ended:
                        // allocation stays linear in the number of networks.
                        let cursor = vlan_cursor.entry(physnet.clone()).or_insert(1u16);
                        while *cursor <= 4094 && used_vlans.contains_key(&(physnet.clone(), *cursor)) {
                            *cursor += 1;
                        }
                        let free = (*cursor <= 4094).then_some(*cursor);
                        match free {
                            Some(v) => {
                                used_vlans.insert((physnet.clone(), v), i);
                                VlanId::new(v).expect("in range")
                            }
                            None => {
                                c.bad(
                                    &o,
                                    "segmentation_id",
                                    format!("no free VLAN id left on `{physnet}`"),
                                    "use another physical network",
                                );
                                VlanId::new(1).expect("1 is valid")
                            }
                        }
                    }
                };
                Segment::Vlan { physnet: physnet.clone(), vlan }
            }
            NetworkType::Flat => {
                if n.segmentation_id.is_some() {
                    c.bad(
                        &o,
                        "segmentation_id",
                        "a flat network is untagged and has no segmentation id",
                        "remove segmentation_id or use `type: vlan`",
                    );
                }
                if n.physical_network.is_some()
                    && let Some(first) = flat_physnets.insert(physnet.clone(), i)
                {
                    c.bad(
                        &o,
                        "physical_network",
                        format!(
                            "physical network `{physnet}` already carries flat network {}",
                            obj("networks", first, &spec.networks[first].name)
                        ),
                        "a physical network holds one flat network; use a vlan network or \
                         another physical network",
                    );
                }
                Segment::Flat { physnet: physnet.clone() }
            }
            NetworkType::Vxlan => {
                let vni = match n.segmentation_id {
                    Some(v) => match u32::try_from(v).ok().and_then(Vni::new) {
                        Some(vni) => {
                            if let Some(&first) = used_vnis.get(&vni.get())
                                && first != i
                            {
                                c.bad(
                                    &o,
                                    "segmentation_id",
                                    format!("VNI {vni} is also used by {}", obj("networks", first, &spec.networks[first].name)),
                                    "give each vxlan network its own VNI",
                                );
                            }
                            vni
                        }
                        None => {
                            c.bad(&o, "segmentation_id", format!("{v} is not a VNI"), format!("use a VNI in 1..={}", Vni::MAX));
                            Vni::new(1).expect("1 is valid")
                        }
                    },
                    None => {
                        let v = (1..=Vni::MAX).find(|v| !used_vnis.contains_key(v)).unwrap_or(1);
                        used_vnis.insert(v, i);
                        Vni::new(v).expect("in range")
                    }
                };
                Segment::Vxlan { vni }
            }
        };
        let mut subnet_ixs = Vec::new();
        for (k, s) in n.subnets.iter().enumerate() {
            let so = format!("networks[{i}] ({}).subnets[{k}] ({})", n.name, s.name);
            let cidr = match s.cidr.parse::<Ipv4Net>() {
                Ok(cidr) if cidr.trunc() != cidr => {
                    c.bad_k(
                        ProblemKind::InvalidCidr,
                        &so,
                        "cidr",
                        format!("{cidr} has host bits set"),
                        format!("write the network address: {}", cidr.trunc()),
                    );
                    cidr.trunc()
                }
                Ok(cidr) if cidr.prefix_len() > 30 => {
                    c.bad_k(
                        ProblemKind::InvalidCidr,
                        &so,
                        "cidr",
                        format!("{cidr} has no room for a gateway and ports"),
                        "use a prefix of /30 or shorter",
                    );
                    cidr
                }
                Ok(cidr) => cidr,
                Err(_) => {
                    c.bad_k(
                        ProblemKind::InvalidCidr,
                        &so,
                        "cidr",
                        format!("`{}` is not an IPv4 CIDR", s.cidr),
                        "write it like 192.168.1.0/24 (IPv6 is not supported in version 1)",
                    );
                    continue;
                }
            };
            let gateway = match s.gateway_ip {
                Some(g) if !cidr.contains(&g) || g == cidr.network() || g == cidr.broadcast() => {
                    c.bad(
                        &so,
                        "gateway_ip",
                        format!("{g} is not a host address of {cidr}"),
                        format!("use an address inside {cidr}, e.g. {}", first_host(cidr)),
                    );
                    first_host(cidr)
                }
                Some(g) => g,
                None => first_host(cidr),
            };
            for other in subnet_ixs.iter().map(|&SubnetIx(j)| &subnets[j]) {
                let other: &Subnet = other;
                if overlaps(other.cidr, cidr) {
                    c.bad(
                        &so,
                        "cidr",
                        format!("{cidr} overlaps subnet `{}` ({}) of the same network", other.name, other.cidr),
                        "use disjoint CIDRs",
                    );
                    // One overlap per subnet is enough to fix it; reporting every
                    // pair would make n² problems of n subnets.
                    break;
                }
            }
            sub_ix.entry(s.name.as_str()).or_insert(subnets.len());
            subnet_ixs.push(SubnetIx(subnets.len()));
            subnets.push(Subnet {
                id: SubnetId(s.id.unwrap_or_else(|| derive_id("subnet", &s.name))),
                name: s.name.clone(),
                network: NetworkIx(i),
                cidr,
                gateway,
                enable_dhcp: s.enable_dhcp.unwrap_or(true),
                external_gateway_mac: None,
                allocation_pools: check_pools(c, &so, cidr, gateway, &s.allocation_pools),
                host_routes: s.host_routes.clone(),
                dns_nameservers: s.dns_nameservers.clone(),
            });
        }
        if n.subnets.is_empty() && n.external {
            c.bad(&o, "subnets", "an external network needs a subnet for gateway and floating IPs", "add a subnet");
        }
        networks.push(Network {
            id: NetworkId(n.id.unwrap_or_else(|| derive_id("network", &n.name))),
            name: n.name.clone(),
            segment,
            external: n.external,
            subnets: subnet_ixs,
        });
    }
    (networks, subnets, sub_ix)
}

/// Without a network node, no subnet may ask for DHCP.
pub(super) fn check_dhcp_host(c: &mut Checker, cx: &Resolve) {
    let spec = cx.spec;
    if cx.network_node.is_some() {
        return;
    }
    for (i, n) in spec.networks.iter().enumerate() {
        for (k, s) in n.subnets.iter().enumerate() {
            if n.external || !s.enable_dhcp.unwrap_or(true) {
                continue;
            }
            c.bad(
                subnet_obj(spec, i, k),
                "enable_dhcp",
                "DHCP is enabled but no host has `role: network` to run the DHCP agent",
                "add a network node or set `enable_dhcp: false`",
            );
        }
    }
}

/// Allocation pools must be inside the subnet's host range, ordered, disjoint
/// and must not contain the gateway (Neutron's rules).
fn check_pools(c: &mut Checker, so: &str, cidr: Ipv4Net, gateway: Ipv4Addr, pools: &[AllocationPool]) -> Vec<AllocationPool> {
    let first = u32::from(cidr.network()) + 1;
    let last = u32::from(cidr.broadcast()).saturating_sub(1);
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for p in pools {
        let (s, e) = (u32::from(p.start), u32::from(p.end));
        if s > e || s < first || e > last {
            c.bad_k(
                ProblemKind::AddressOutsideSubnet,
                so,
                "allocation_pools",
                format!("pool {}-{} is not an ordered range of host addresses of {cidr}", p.start, p.end),
                format!("use start <= end between {} and {}", Ipv4Addr::from(first), Ipv4Addr::from(last)),
            );
            continue;
        }
        if (s..=e).contains(&u32::from(gateway)) {
            c.bad(
                so,
                "allocation_pools",
                format!("pool {}-{} contains the gateway {gateway}", p.start, p.end),
                "leave the gateway address out of every allocation pool",
            );
        }
        if ranges.iter().any(|&(a, b)| s <= b && a <= e) {
            c.bad(so, "allocation_pools", format!("pool {}-{} overlaps another pool", p.start, p.end), "use disjoint pools");
        }
        ranges.push((s, e));
    }
    pools.to_vec()
}
