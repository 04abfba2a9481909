//! VXLAN tunnel endpoints: each dataplane host's `tunnel_ip` (Neutron's
//! `[ovs] local_ip`) and the underlay subnet they live in.
//!
//! Tunnels are in use when a network is of type `vxlan`, or when the file
//! gives an `underlay:` or any `tunnel_ip` itself. Then every dataplane host
//! gets an endpoint: its own `tunnel_ip`, or the first free host address of
//! the underlay (file order, after the explicit ones are reserved), so the
//! same file always gives the same addresses and adding a host at the end
//! renumbers nobody. A file that says nothing about tunnels still works.

use super::Resolve;
use super::check::{Checker, obj, overlaps, subnet_obj};
use crate::spec::{NetworkType, Role};
use ipnet::Ipv4Net;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The underlay used when the file has no `underlay:` key: a private /24
/// that none of the walkthrough's subnets use.
pub const DEFAULT_UNDERLAY: &str = "172.16.0.0/24";

/// Check the `underlay:` key and every host's `tunnel_ip`, then set
/// `tunnel_ip` on every dataplane host of `cx.hosts`. Returns the underlay
/// when tunnels are in use (`None` otherwise; then no host has an endpoint).
pub(super) fn check_tunnels(c: &mut Checker, cx: &mut Resolve) -> Option<Ipv4Net> {
    let spec = cx.spec;
    let in_use = spec.networks.iter().any(|n| n.kind == NetworkType::Vxlan)
        || spec.underlay.is_some()
        || spec.hosts.iter().any(|h| h.tunnel_ip.is_some());
    if !in_use {
        return None;
    }
    let text = spec.underlay.as_deref().unwrap_or(DEFAULT_UNDERLAY);
    let underlay = match text.parse::<Ipv4Net>() {
        Ok(n) if n != n.trunc() => {
            c.bad("topology", "underlay", format!("`{text}` has host bits set"), format!("write the network address, `{}`", n.trunc()));
            return None;
        }
        Ok(n) if n.prefix_len() > 30 => {
            c.bad(
                "topology",
                "underlay",
                format!("`{text}` has no room for tunnel endpoints"),
                "use a prefix of /30 or shorter, e.g. 172.16.0.0/24",
            );
            return None;
        }
        Ok(n) => n,
        Err(e) => {
            c.bad("topology", "underlay", format!("`{text}` is not an IPv4 CIDR ({e})"), "write it like 172.16.0.0/24");
            return None;
        }
    };
    // The underlay carries the hosts' own traffic; an address that is also a
    // tenant or external address would be ambiguous on every host.
    let mut clash = false;
    for (i, n) in spec.networks.iter().enumerate() {
        for (k, s) in n.subnets.iter().enumerate() {
            if let Ok(cidr) = s.cidr.parse::<Ipv4Net>()
                && overlaps(cidr.trunc(), underlay)
            {
                clash = true;
                c.bad(
                    "topology",
                    "underlay",
                    format!("underlay {underlay} overlaps {} ({})", subnet_obj(spec, i, k), cidr.trunc()),
                    "set `underlay:` to a private subnet no network uses, e.g. 172.16.0.0/24",
                );
            }
        }
    }
    if clash {
        return None;
    }
    // Explicit endpoints first: inside the underlay, host addresses, unique.
    let mut taken: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
    for (i, h) in spec.hosts.iter().enumerate() {
        let Some(ip) = h.tunnel_ip else { continue };
        let o = obj("hosts", i, &h.name);
        if h.role == Role::Controller {
            c.bad(&o, "tunnel_ip", "a controller runs no OVS agent, so it has no tunnel endpoint", "remove tunnel_ip");
            continue;
        }
        if !underlay.contains(&ip) || ip == underlay.network() || ip == underlay.broadcast() {
            c.bad(
                &o,
                "tunnel_ip",
                format!("{ip} is not a host address of the underlay {underlay}"),
                format!(
                    "use an address in {underlay} (not its network or broadcast address), or set `underlay:` to the subnet your hosts use"
                ),
            );
            continue;
        }
        if let Some(&first) = taken.get(&ip) {
            c.bad(
                &o,
                "tunnel_ip",
                format!("{ip} is also the tunnel_ip of {}", obj("hosts", first, &spec.hosts[first].name)),
                "every host needs its own tunnel endpoint; remove it to have one allocated",
            );
            continue;
        }
        taken.insert(ip, i);
        cx.hosts[i].tunnel_ip = Some(ip);
    }
    // Then the others, in file order, from the first free host address.
    let mut free = underlay.hosts().filter(|a| !taken.contains_key(a));
    for (i, h) in spec.hosts.iter().enumerate() {
        if h.role == Role::Controller || h.tunnel_ip.is_some() || i >= cx.hosts.len() {
            continue;
        }
        match free.next() {
            Some(ip) => cx.hosts[i].tunnel_ip = Some(ip),
            None => {
                c.bad(
                    obj("hosts", i, &h.name),
                    "tunnel_ip",
                    format!("the underlay {underlay} has no free address left for this host's tunnel endpoint"),
                    "set `underlay:` to a larger subnet",
                );
                break;
            }
        }
    }
    Some(underlay)
}
