//! The file's `ports:` list: unbound ports (an address and a MAC, nothing
//! planned) and pins that keep an implicit port's id, address and MAC.

use super::Resolve;
use super::check::{Checker, obj};
use crate::alloc::*;
use crate::error::ProblemKind;
use crate::spec::*;
use crate::types::*;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// A checked entry of the spec's `ports:` list.
pub(super) struct PortDraft {
    pub(super) network: NetworkIx,
    pub(super) subnet: SubnetIx,
    pub(super) ip: Option<Ipv4Addr>,
    pub(super) mac: Option<MacAddr>,
    pub(super) id: Option<uuid::Uuid>,
    /// `Some(key)` for a live pin of an implicit port; `None` for an unbound port.
    pub(super) pin_key: Option<String>,
    /// Whether the pinned implicit port will exist (its router, interface,
    /// gateway or host is still there); a dead pin reserves nothing.
    pub(super) live: bool,
}

/// The allocation key of the implicit port a `ports:` entry pins, and whether
/// that port still exists in this spec.
fn pin_key(spec: &TopologySpec, p: &PortSpec, owner: &str, subnet_name: &str, network_node: Option<HostIx>) -> Option<(String, bool)> {
    let router = p.router.as_deref().unwrap_or("");
    let r = spec.routers.iter().find(|r| r.name == router);
    let has_if = r.is_some_and(|r| r.interfaces.iter().any(|s| s == subnet_name));
    let net = spec.networks.iter().find(|n| n.name == p.network);
    Some(match owner {
        "network:dhcp" => (
            format!("dhcp:{}", p.network),
            network_node.is_some() && net.is_some_and(|n| !n.external && n.subnets.iter().any(|s| s.enable_dhcp.unwrap_or(true))),
        ),
        "network:router_interface_distributed" | "network:router_interface" => (format!("qr:{router}:{subnet_name}"), has_if),
        "network:router_centralized_snat" => (
            format!("sg:{router}:{subnet_name}"),
            has_if && r.is_some_and(|r| r.external_gateway.is_some() && r.distributed.unwrap_or(true)),
        ),
        "network:router_gateway" => (format!("qg:{router}"), r.is_some_and(|r| r.external_gateway.as_deref() == Some(p.network.as_str()))),
        "network:floatingip_agent_gateway" => {
            let host = p.host.as_deref().unwrap_or("");
            (
                format!("fg:{}:{host}", p.network),
                net.is_some_and(|n| n.external) && spec.hosts.iter().any(|h| h.name == host && h.role != Role::Controller),
            )
        }
        _ => return None,
    })
}

/// Check every entry of `ports:`; `None` for one with a problem (already reported).
pub(super) fn check_ports(c: &mut Checker, cx: &Resolve) -> Vec<Option<PortDraft>> {
    let (spec, networks, subnets, net_ix, network_node) = (cx.spec, &cx.networks, &cx.subnets, &cx.net_ix, cx.network_node);
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for (i, p) in spec.ports.iter().enumerate() {
        let label = p.name.clone().or_else(|| p.id.map(|u| u.to_string())).unwrap_or_default();
        let o = obj("ports", i, &label);
        let Some(&n) = net_ix.get(p.network.as_str()) else {
            c.dangling(&o, "network", "network", &p.network, "name a network from the networks list");
            out.push(None);
            continue;
        };
        if networks[n].subnets.is_empty() {
            c.bad(&o, "network", format!("network `{}` has no subnet", p.network), "add a subnet to the network");
            out.push(None);
            continue;
        }
        let subnet = match p.ip {
            None => networks[n].subnets[0],
            Some(ip) => match networks[n].subnets.iter().copied().find(|s| subnets[s.0].cidr.contains(&ip)) {
                Some(s) => {
                    let sub = &subnets[s.0];
                    if ip == sub.cidr.network() || ip == sub.cidr.broadcast() {
                        c.bad_k(
                            ProblemKind::AddressOutsideSubnet,
                            &o,
                            "ip",
                            format!("{ip} is the network or broadcast address of {}", sub.cidr),
                            "use a host address",
                        );
                    }
                    s
                }
                None => {
                    let cidrs: Vec<String> = networks[n].subnets.iter().map(|s| subnets[s.0].cidr.to_string()).collect();
                    c.bad_k(
                        ProblemKind::AddressOutsideSubnet,
                        &o,
                        "ip",
                        format!("{ip} is outside the subnets of network `{}` ({})", p.network, cidrs.join(", ")),
                        "use an address inside the network's subnet or remove `ip` to have one allocated",
                    );
                    out.push(None);
                    continue;
                }
            },
        };
        if let Some(m) = p.mac {
            if m.is_multicast() || m == MacAddr::ZERO {
                c.bad(&o, "mac", format!("{m} is not a unicast address"), "use a unicast MAC such as fa:16:3e:00:01:09");
            } else if m.has_prefix(DVR_MAC_PREFIX) {
                c.bad(&o, "mac", format!("{m} is in the DVR base MAC range fa:16:3f"), "use a port MAC (fa:16:3e:…) or remove `mac`");
            }
        }
        let owner = p.device_owner.as_deref().unwrap_or("");
        let (pin_key, live) = match pin_key(spec, p, owner, &subnets[subnet.0].name, network_node) {
            Some((k, live)) => (Some(k), live),
            None => {
                match &p.name {
                    Some(name) if p.id.is_none() => {
                        if let Some(first) = names.insert(name, i) {
                            c.bad_k(
                                ProblemKind::DuplicateName,
                                &o,
                                "name",
                                format!("{} is also called `{name}`", obj("ports", first, name)),
                                "give every port without an id its own name, or give it an `id`",
                            );
                        }
                    }
                    None if p.id.is_none() => {
                        c.bad(&o, "", "an unbound port needs a `name` or an `id`", "add `name:` (its id is derived from it) or `id:`")
                    }
                    _ => {}
                }
                (None, true)
            }
        };
        out.push(Some(PortDraft { network: NetworkIx(n), subnet, ip: p.ip, mac: p.mac, id: p.id, pin_key, live }));
    }
    out
}
