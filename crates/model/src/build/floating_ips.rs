//! Floating IPs: the external network they come from, the instance they are
//! associated with and the router that takes that instance outside.

use super::Resolve;
use super::check::{Checker, first_index, obj};
use super::instances::InstanceDraft;
use crate::error::ProblemKind;
use crate::spec::*;
use crate::topology::*;
use crate::types::*;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// How a floating IP is called in messages: its address, else its instance.
fn fip_label(f: &FloatingIpSpec) -> String {
    f.ip.map(|ip| ip.to_string()).or_else(|| f.instance.clone()).unwrap_or_default()
}

/// A floating IP after validation, before allocation.
pub(super) struct FipDraft {
    pub(super) ip: Option<Ipv4Addr>,
    pub(super) network: NetworkIx,
    pub(super) association: Option<(InstanceIx, RouterIx)>,
}

/// Check every floating IP; `None` for one with a problem (already reported).
pub(super) fn check_floating_ips(c: &mut Checker, cx: &Resolve, instances: &[Option<InstanceDraft>]) -> Vec<Option<FipDraft>> {
    let (spec, networks, subnets, routers, net_ix) = (cx.spec, &cx.networks, &cx.subnets, &cx.routers, &cx.net_ix);
    let mut by_instance: BTreeMap<usize, usize> = BTreeMap::new();
    let instance_ix = first_index(spec.instances.iter().map(|x| x.name.as_str()));
    let externals: Vec<usize> = (0..networks.len()).filter(|&n| networks[n].external).collect();
    let mut out = Vec::new();
    for (i, f) in spec.floating_ips.iter().enumerate() {
        let o = obj("floating_ips", i, &fip_label(f));
        let mut network = None;
        if let Some(name) = &f.network {
            match net_ix.get(name.as_str()) {
                Some(&n) if networks[n].external => network = Some(n),
                Some(_) => c.bad(
                    &o,
                    "network",
                    format!("`{name}` is not an external network"),
                    "floating IPs come from a network with `external: true`",
                ),
                None => c.dangling(&o, "network", "network", name, "name an external network"),
            }
        }
        let mut association = None;
        let mut ok = true;
        if let Some(name) = &f.instance {
            match instance_ix.get(name.as_str()).copied() {
                None => {
                    c.dangling(&o, "instance", "instance", name, "name an instance from the instances list");
                    ok = false;
                }
                Some(x) => {
                    if let Some(first) = by_instance.insert(x, i) {
                        c.bad(
                            &o,
                            "instance",
                            format!("instance `{name}` already has {}", obj("floating_ips", first, &fip_label(&spec.floating_ips[first]))),
                            "associate one floating IP per instance",
                        );
                    }
                    if let Some(d) = &instances[x] {
                        let ext_subnets = |r: usize| -> Vec<&Subnet> {
                            routers[r]
                                .external_gateway
                                .map(|e| networks[e.0].subnets.iter().map(|s| &subnets[s.0]))
                                .into_iter()
                                .flatten()
                                .collect()
                        };
                        // Routers that take this instance's subnet to an external
                        // network (the one named by `network`, if given)...
                        let connected: Vec<usize> = (0..routers.len())
                            .filter(|&r| {
                                routers[r].interfaces.contains(&d.subnet)
                                    && routers[r].external_gateway.is_some_and(|e| network.is_none_or(|n| e == NetworkIx(n)))
                            })
                            .collect();
                        // ...and of those, the ones whose external subnets hold `ip`.
                        let serving: Vec<usize> = connected
                            .iter()
                            .copied()
                            .filter(|&r| f.ip.is_none_or(|ip| ext_subnets(r).iter().any(|s| s.cidr.contains(&ip))))
                            .collect();
                        let sub = &subnets[d.subnet.0];
                        match (connected.first(), serving.first()) {
                            (None, _) => {
                                let onto = network
                                    .map(|n| format!("external network `{}`", networks[n].name))
                                    .unwrap_or_else(|| "an external network".to_string());
                                c.bad_k(
                                    ProblemKind::NoRouterToExternal,
                                    &o,
                                    "instance",
                                    format!(
                                        "no router connects subnet `{}` of instance `{name}` to \
                                         {onto}, so the floating IP could not reach it",
                                        sub.name
                                    ),
                                    format!(
                                        "add `{}` to the interfaces of a router whose \
                                         external_gateway is set{}",
                                        sub.name,
                                        network.map(|n| format!(" to `{}`", networks[n].name)).unwrap_or_default()
                                    ),
                                );
                                ok = false;
                            }
                            (Some(&r), None) => {
                                let cidrs: Vec<String> = ext_subnets(r).iter().map(|s| s.cidr.to_string()).collect();
                                let ext = routers[r].external_gateway.expect("connected");
                                c.bad_k(
                                    ProblemKind::AddressOutsideSubnet,
                                    &o,
                                    "ip",
                                    format!(
                                        "{} is outside the subnets of external network `{}` \
                                         ({}), where router `{}` takes instance `{name}`",
                                        f.ip.expect("serving is filtered by ip only"),
                                        networks[ext.0].name,
                                        cidrs.join(", "),
                                        routers[r].name
                                    ),
                                    format!(
                                        "use an address inside {} or remove `ip` to have one \
                                         allocated",
                                        cidrs.join(", ")
                                    ),
                                );
                                ok = false;
                            }
                            (_, Some(&r)) => {
                                network = routers[r].external_gateway.map(|n| n.0);
                                association = Some((InstanceIx(x), RouterIx(r)));
                            }
                        }
                    } else {
                        ok = false;
                    }
                }
            }
        }
        if network.is_none()
            && let Some(ip) = f.ip
        {
            network = externals.iter().copied().find(|&n| networks[n].subnets.iter().any(|s| subnets[s.0].cidr.contains(&ip)));
        }
        if network.is_none() && externals.len() == 1 && f.ip.is_none() {
            network = Some(externals[0]);
        }
        let Some(n) = network else {
            if ok {
                let cidrs: Vec<String> =
                    externals.iter().flat_map(|&n| networks[n].subnets.iter()).map(|s| subnets[s.0].cidr.to_string()).collect();
                match f.ip {
                    Some(ip) if !externals.is_empty() => c.bad(
                        &o,
                        "ip",
                        format!("{ip} is outside every external subnet ({})", cidrs.join(", ")),
                        "use an address of an external subnet or remove `ip` to have one allocated",
                    ),
                    _ if externals.is_empty() => c.bad(
                        &o,
                        "",
                        "there is no external network to take the floating IP from",
                        "add a network with `external: true` and a subnet",
                    ),
                    _ => c.bad(
                        &o,
                        "network",
                        "cannot tell which external network this floating IP belongs to",
                        "give an `ip` inside an external subnet, an associated `instance`, \
                         or `network`",
                    ),
                }
            }
            out.push(None);
            continue;
        };
        if let Some(ip) = f.ip {
            let inside = networks[n].subnets.iter().map(|s| &subnets[s.0]).find(|s| s.cidr.contains(&ip));
            match inside {
                None => c.bad_k(
                    ProblemKind::AddressOutsideSubnet,
                    &o,
                    "ip",
                    format!("{ip} is outside the subnets of external network `{}`", networks[n].name),
                    "use an address of the external subnet or remove `ip` to have one allocated",
                ),
                Some(s) if ip == s.gateway || ip == s.cidr.network() || ip == s.cidr.broadcast() => {
                    c.bad(&o, "ip", format!("{ip} is the gateway, network or broadcast address of {}", s.cidr), "use a free host address")
                }
                Some(_) => {}
            }
        }
        out.push(ok.then_some(FipDraft { ip: f.ip, network: NetworkIx(n), association }));
    }
    out
}
