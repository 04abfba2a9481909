//! External hosts: machines on an external network, outside the cloud.

use super::Resolve;
use super::check::{Checker, obj};
use crate::error::ProblemKind;
use crate::types::*;
use std::net::Ipv4Addr;

/// An external host after validation: its network and explicit address.
pub(super) type ExternalDraft = (NetworkIx, Option<Ipv4Addr>);

/// Check every external host; `None` for one with a problem (already reported).
pub(super) fn check_external_hosts(c: &mut Checker, cx: &Resolve) -> Vec<Option<ExternalDraft>> {
    let (spec, networks, subnets, net_ix) = (cx.spec, &cx.networks, &cx.subnets, &cx.net_ix);
    let mut out = Vec::new();
    for (i, e) in spec.external_hosts.iter().enumerate() {
        let o = obj("external_hosts", i, &e.name);
        let n = match net_ix.get(e.network.as_str()) {
            None => {
                c.dangling(&o, "network", "network", &e.network, "name an external network");
                out.push(None);
                continue;
            }
            Some(&n) if !networks[n].external => {
                c.bad(
                    &o,
                    "network",
                    format!("`{}` is not an external network", e.network),
                    format!("set `external: true` on `{}` or use an external network", e.network),
                );
                out.push(None);
                continue;
            }
            Some(&n) => n,
        };
        if let Some(ip) = e.ip {
            match networks[n].subnets.iter().map(|s| &subnets[s.0]).find(|s| s.cidr.contains(&ip)) {
                None => {
                    let cidrs: Vec<String> = networks[n].subnets.iter().map(|s| subnets[s.0].cidr.to_string()).collect();
                    c.bad_k(
                        ProblemKind::AddressOutsideSubnet,
                        &o,
                        "ip",
                        format!("{ip} is outside the subnets of external network `{}` ({})", e.network, cidrs.join(", ")),
                        format!("use an address inside {} or remove `ip` to have one allocated", cidrs.join(", ")),
                    )
                }
                Some(s) if ip == s.gateway || ip == s.cidr.network() || ip == s.cidr.broadcast() => {
                    c.bad(&o, "ip", format!("{ip} is the gateway, network or broadcast address of {}", s.cidr), "use a free host address")
                }
                Some(_) => {}
            }
        }
        out.push(Some((NetworkIx(n), e.ip)));
    }
    out
}
