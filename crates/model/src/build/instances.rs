//! Instances: the host (a compute node mapping the network's physical
//! network), the network and subnet, explicit addresses and MACs.

use super::Resolve;
use super::check::{Checker, check_unique, named, obj, role_name};
use crate::alloc::*;
use crate::error::ProblemKind;
use crate::spec::*;
use crate::types::*;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// An instance after validation, before allocation.
pub(super) struct InstanceDraft {
    pub(super) host: HostIx,
    pub(super) network: NetworkIx,
    pub(super) subnet: SubnetIx,
    pub(super) ip: Option<Ipv4Addr>,
    pub(super) mac: Option<MacAddr>,
}

/// Check every instance; `None` for one with a problem (already reported).
pub(super) fn check_instances(c: &mut Checker, cx: &Resolve) -> Vec<Option<InstanceDraft>> {
    let (spec, hosts, networks, subnets, host_ix, net_ix) = (cx.spec, &cx.hosts, &cx.networks, &cx.subnets, &cx.host_ix, &cx.net_ix);
    let names = named("instances", &spec.instances, |x| &x.name).chain(named("external_hosts", &spec.external_hosts, |x| &x.name));
    check_unique(
        c,
        names,
        "instances and external hosts share one namespace (they are the endpoints of \
         `dvr trace --from NAME`); rename one of them",
    );
    let mut macs: BTreeMap<MacAddr, usize> = BTreeMap::new();
    let mut dvr_macs: BTreeMap<MacAddr, usize> = BTreeMap::new();
    for (j, h) in hosts.iter().enumerate() {
        if let Some(m) = h.dvr_mac {
            dvr_macs.entry(m).or_insert(j);
        }
    }
    let mut out = Vec::new();
    for (i, x) in spec.instances.iter().enumerate() {
        let o = obj("instances", i, &x.name);
        let host = match host_ix.get(x.host.as_str()) {
            None => {
                c.dangling(&o, "host", "host", &x.host, "name a host from the hosts list");
                None
            }
            Some(&h) if hosts[h].role != Role::Compute => {
                c.bad(
                    &o,
                    "host",
                    format!("host `{}` has role {}; instances run on compute hosts", x.host, role_name(hosts[h].role)),
                    "place the instance on a host with `role: compute`",
                );
                None
            }
            Some(&h) => Some(h),
        };
        let network = match net_ix.get(x.network.as_str()) {
            None => {
                c.dangling(&o, "network", "network", &x.network, "name a network from the networks list");
                None
            }
            Some(&n) if networks[n].external => {
                c.bad(
                    &o,
                    "network",
                    format!("`{}` is an external network", x.network),
                    "attach instances to tenant networks; reach them from outside with a floating IP",
                );
                None
            }
            Some(&n) if networks[n].subnets.is_empty() => {
                // Subnets with an invalid CIDR are reported on the subnet.
                if spec.networks[n].subnets.is_empty() {
                    c.bad(&o, "network", format!("network `{}` has no subnet", x.network), "add a subnet to the network");
                }
                None
            }
            Some(&n) => Some(n),
        };
        if let (Some(h), Some(n)) = (host, network)
            && let Some(p) = networks[n].segment.physnet()
            // A missing physical network is reported on the network.
            && !p.is_empty()
            && hosts[h].mapping(p).is_none()
        {
            c.bad(
                &o,
                "host",
                format!("host `{}` has no bridge mapping for physical network `{p}` of network `{}`", x.host, x.network),
                format!("add `{p}: <bridge>` to the bridge_mappings of `{}`", x.host),
            );
        }
        let mut subnet = None;
        if let Some(n) = network {
            subnet = match x.ip {
                None => Some(networks[n].subnets[0]),
                Some(ip) => {
                    let found = networks[n].subnets.iter().copied().find(|s| subnets[s.0].cidr.contains(&ip));
                    match found {
                        None => {
                            let cidrs: Vec<String> = networks[n].subnets.iter().map(|s| subnets[s.0].cidr.to_string()).collect();
                            c.bad_k(
                                ProblemKind::AddressOutsideSubnet,
                                &o,
                                "ip",
                                format!("{ip} is outside the subnets of network `{}` ({})", x.network, cidrs.join(", ")),
                                "use an address inside the network's subnet or remove `ip` to have one allocated",
                            );
                            None
                        }
                        Some(s) => {
                            let sub = &subnets[s.0];
                            if ip == sub.cidr.network() || ip == sub.cidr.broadcast() {
                                c.bad(&o, "ip", format!("{ip} is the network or broadcast address of {}", sub.cidr), "use a host address");
                            } else if ip == sub.gateway {
                                c.bad(
                                    &o,
                                    "ip",
                                    format!("{ip} is the gateway of subnet `{}`", sub.name),
                                    "use another address; the gateway belongs to the router",
                                );
                            }
                            Some(s)
                        }
                    }
                }
            };
        }
        if let Some(m) = x.mac {
            if m.is_multicast() || m == MacAddr::ZERO {
                c.bad(&o, "mac", format!("{m} is not a unicast address"), "use a unicast MAC such as fa:16:3e:00:01:09");
            } else if m.has_prefix(DVR_MAC_PREFIX) {
                c.bad(&o, "mac", format!("{m} is in the DVR base MAC range fa:16:3f"), "use a port MAC (fa:16:3e:…) or remove `mac`");
            } else if let Some(first) = macs.insert(m, i) {
                c.bad_k(
                    ProblemKind::MacInUse,
                    &o,
                    "mac",
                    format!("{m} is also the MAC of {}", obj("instances", first, &spec.instances[first].name)),
                    "MACs must be unique; remove `mac` to have one allocated",
                );
            } else if let Some(&j) = dvr_macs.get(&m) {
                c.bad_k(
                    ProblemKind::MacInUse,
                    &o,
                    "mac",
                    format!("{m} is the DVR MAC of {}", obj("hosts", j, &hosts[j].name)),
                    "use another MAC or remove `mac` to have one allocated",
                );
            }
        }
        out.push(match (host, network, subnet) {
            (Some(h), Some(n), Some(s)) => Some(InstanceDraft { host: HostIx(h), network: NetworkIx(n), subnet: s, ip: x.ip, mac: x.mac }),
            _ => None,
        });
    }
    out
}
