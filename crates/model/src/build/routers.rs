//! Routers: interfaces on tenant subnets (one router per subnet, no
//! overlaps), the external gateway, and the network node they need.

use super::Resolve;
use super::check::{Checker, check_unique, named, obj, overlaps};
use crate::alloc::*;
use crate::error::ProblemKind;
use crate::topology::*;
use crate::types::*;
use std::collections::BTreeMap;

/// For each subnet (by index), the distributed routers with an interface on
/// it, in router order: instance → router lookups without scanning every router.
pub(super) fn distributed_routers_by_subnet(routers: &[Router], subnets: usize) -> Vec<Vec<usize>> {
    let mut by_subnet = vec![Vec::new(); subnets];
    for (r, router) in routers.iter().enumerate().filter(|(_, r)| r.distributed) {
        for s in &router.interfaces {
            if let Some(list) = by_subnet.get_mut(s.0) {
                list.push(r);
            }
        }
    }
    by_subnet
}

/// Check every router of the file; the result is in file order.
pub(super) fn check_routers(c: &mut Checker, cx: &Resolve) -> Vec<Router> {
    let (spec, networks, subnets, net_ix, sub_ix) = (cx.spec, &cx.networks, &cx.subnets, &cx.net_ix, &cx.sub_ix);
    let network_node = cx.network_node;
    check_unique(c, named("routers", &spec.routers, |r| &r.name), "give every router a unique name");
    let mut owner_of_subnet: BTreeMap<usize, usize> = BTreeMap::new();
    let declared_subnets: std::collections::HashSet<&str> =
        spec.networks.iter().flat_map(|n| n.subnets.iter().map(|s| s.name.as_str())).collect();
    let mut routers = Vec::new();
    for (i, r) in spec.routers.iter().enumerate() {
        let o = obj("routers", i, &r.name);
        let distributed = r.distributed.unwrap_or(true);
        let mut interfaces: Vec<SubnetIx> = Vec::new();
        for name in &r.interfaces {
            let Some(&s) = sub_ix.get(name.as_str()) else {
                let declared = declared_subnets.contains(name.as_str());
                if declared {
                    // Its CIDR is invalid, which is reported on the subnet.
                    continue;
                }
                c.dangling(&o, "interfaces", "subnet", name, "name a subnet defined under networks[].subnets");
                continue;
            };
            let sub = &subnets[s];
            if networks[sub.network.0].external {
                c.bad(
                    &o,
                    "interfaces",
                    format!("`{name}` belongs to external network `{}`", networks[sub.network.0].name),
                    "attach external networks with external_gateway, not as an interface",
                );
                continue;
            }
            if owner_of_subnet.get(&s) == Some(&i) {
                c.bad(&o, "interfaces", format!("subnet `{name}` is listed twice"), "list each subnet once");
                continue;
            }
            if let Some(&other) = owner_of_subnet.get(&s) {
                c.bad_k(
                    ProblemKind::SubnetAlreadyRouted,
                    &o,
                    "interfaces",
                    format!(
                        "subnet `{name}` is already attached to {}; its gateway IP can belong \
                         to one router only",
                        obj("routers", other, &spec.routers[other].name)
                    ),
                    format!("remove `{name}` from the interfaces of one of the two routers"),
                );
            }
            for &SubnetIx(prev) in &interfaces {
                if overlaps(subnets[prev].cidr, sub.cidr) {
                    c.bad_k(
                        ProblemKind::OverlappingSubnets,
                        &o,
                        "interfaces",
                        format!("{} ({name}) overlaps {} ({}) on the same router", sub.cidr, subnets[prev].cidr, subnets[prev].name),
                        "a router cannot route between overlapping subnets; use disjoint CIDRs or two routers",
                    );
                    // One overlap per interface (not every pair: n² problems).
                    break;
                }
            }
            owner_of_subnet.insert(s, i);
            interfaces.push(SubnetIx(s));
        }
        let external_gateway = match &r.external_gateway {
            None => None,
            Some(name) => match net_ix.get(name.as_str()) {
                None => {
                    c.dangling(&o, "external_gateway", "network", name, "name a network with `external: true`");
                    None
                }
                Some(&n) if !networks[n].external => {
                    c.bad(
                        &o,
                        "external_gateway",
                        format!("network `{name}` is not external"),
                        format!("set `external: true` on network `{name}` or pick an external network"),
                    );
                    None
                }
                Some(&n) => Some(NetworkIx(n)),
            },
        };
        if let Some(ext) = external_gateway {
            for &SubnetIx(s) in &interfaces {
                for &SubnetIx(e) in &networks[ext.0].subnets {
                    if overlaps(subnets[s].cidr, subnets[e].cidr) {
                        c.bad_k(
                            ProblemKind::OverlappingSubnets,
                            &o,
                            "external_gateway",
                            format!(
                                "external subnet `{}` ({}) overlaps interface subnet `{}` ({}) \
                                 of this router",
                                subnets[e].name, subnets[e].cidr, subnets[s].name, subnets[s].cidr
                            ),
                            "a router cannot route between overlapping subnets; use disjoint \
                             CIDRs for the external and the tenant subnets",
                        );
                        break;
                    }
                }
            }
        }
        if network_node.is_none() {
            let kind = if distributed {
                "a distributed router needs a network node for SNAT and DHCP"
            } else {
                "a legacy router runs on a network node"
            };
            c.bad(&o, "", format!("{kind}, but no host has `role: network`"), "add a host with `role: network` (l3 agent_mode dvr_snat)");
        }
        routers.push(Router {
            id: RouterId(r.id.unwrap_or_else(|| derive_id("router", &r.name))),
            name: r.name.clone(),
            distributed,
            interfaces,
            external_gateway,
            enable_snat: r.enable_snat.unwrap_or(true),
            snat_host: network_node,
            hosts: Vec::new(),
        });
    }
    routers
}
