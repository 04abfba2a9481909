//! A distributed router's `qrouter-` namespace patched for one interface
//! attached or detached, instead of replanned: the router's copies on many
//! hosts each list the permanent ARP of every port behind it, so
//! replanning them all costs what the whole router costs, on every host.
//!
//! [`crate::netns::qrouter_dvr`] lays out per interface (in the router's
//! interface order) a qr- device, routes, ARP entries, a SNAT rule and a
//! sysctl, then the fip link. An attached interface is the router's last, so
//! its items go right before the fip link's; a detached one's items are
//! those naming its qr- device (and its subnet's SNAT rule). The property
//! tests in crates/plan/tests/incremental.rs compare the result with full plans.

use crate::ctx::HostCtx;
use crate::delta::Item;
use crate::model::*;
use crate::netns::{FIP_RT_TBL, dvr_interface};
use dvr_model::{RouterIx, SubnetIx};

/// Patch `ns`, the copy of distributed router `r` on this host as planned
/// before subnet `s` was attached (`attached`) or detached, and add the
/// items added and deleted to `add`/`delete`. `false` (and nothing touched)
/// when `ns` does not look as expected; then it must be replanned.
pub fn patch_interface(
    cx: &HostCtx,
    r: RouterIx,
    s: SubnetIx,
    attached: bool,
    ns: &mut Namespace,
    add: &mut Vec<Item>,
    delete: &mut Vec<Item>,
) -> bool {
    let t = cx.topo;
    let router = t.router(r);
    if !router.distributed {
        return false;
    }
    let sub = t.subnet(s);
    let gw = ipnet::Ipv4Net::new(sub.gateway, sub.cidr.prefix_len()).expect("prefix ≤ 32");
    let name = ns.name.clone();
    if attached {
        if router.interfaces.last() != Some(&s) {
            return false;
        }
        let mut part = Namespace { name: name.clone(), ..blank(ns) };
        dvr_interface(cx, r, s, &mut part);
        // What follows the interfaces: the fip link (rfp- device, its two
        // routes and the fpr- neighbour) and the router-wide sysctl.
        let link = usize::from(cx.host.fip_link(r).is_some());
        let tail = (link, 2 * link, link, usize::from(router.external_gateway.is_some()));
        if ns.devices.len() < tail.0 || ns.routes.len() < tail.1 || ns.neighbours.len() < tail.2 || ns.sysctls.len() < tail.3 {
            return false;
        }
        add.extend(items(&name, &part));
        insert_before_tail(&mut ns.devices, part.devices, tail.0);
        insert_before_tail(&mut ns.routes, part.routes, tail.1);
        ns.neighbours.insert_before_tail(tail.2, part.neighbours);
        insert_before_tail(&mut ns.sysctls, part.sysctls, tail.3);
        // Rules are sorted by priority (stably): an interface's rule goes
        // after the interface rules of equal priority, before the fip ones.
        for rule in part.rules {
            let at = ns.rules.partition_point(|x| x.priority < rule.priority || (x.priority == rule.priority && x.table != FIP_RT_TBL));
            ns.rules.insert(at, rule);
        }
    } else {
        let Some(dev) =
            ns.devices.iter().find(|d| matches!(d.link, DeviceLink::Ovs { .. }) && d.addrs.first() == Some(&gw)).map(|d| d.name.clone())
        else {
            return false;
        };
        let sysctl = format!("net.ipv4.conf.{dev}.send_redirects");
        let mut gone = Namespace { name: name.clone(), ..blank(ns) };
        take(&mut ns.devices, &mut gone.devices, |d| d.name == dev);
        take(&mut ns.routes, &mut gone.routes, |x| x.dev == dev);
        gone.neighbours = ns.neighbours.take_where(|x| x.dev == dev);
        take(&mut ns.rules, &mut gone.rules, |x| x.table != FIP_RT_TBL && x.selector == RuleSelector::From(gw));
        take(&mut ns.sysctls, &mut gone.sysctls, |x| x.key == sysctl);
        delete.extend(items(&name, &gone));
    }
    true
}

/// An empty namespace of the same kind.
fn blank(ns: &Namespace) -> Namespace {
    Namespace {
        name: String::new(),
        kind: ns.kind,
        serves: ns.serves.clone(),
        devices: vec![],
        routes: vec![],
        rules: vec![],
        neighbours: Neighbours::new(),
        iptables: vec![],
        sysctls: vec![],
        dhcp: None,
    }
}

/// The device, route, rule, neighbour and sysctl items of a part of a namespace.
fn items(ns: &str, part: &Namespace) -> Vec<Item> {
    let n = || ns.to_string();
    let mut out: Vec<Item> = part.devices.iter().map(|d| Item::Device { ns: n(), device: d.clone() }).collect();
    out.extend(part.routes.iter().map(|r| Item::Route { ns: n(), route: r.clone() }));
    out.extend(part.rules.iter().map(|r| Item::Rule { ns: n(), rule: r.clone() }));
    out.extend(part.neighbours.iter().map(|x| Item::Neighbour { ns: n(), neighbour: x.clone() }));
    out.extend(part.sysctls.iter().map(|s| Item::NsSysctl { ns: n(), sysctl: s.clone() }));
    out
}

fn insert_before_tail<T>(list: &mut Vec<T>, new: Vec<T>, tail: usize) {
    let at = list.len() - tail;
    list.splice(at..at, new);
}

/// Move the items matching `f` from `list` to `out`, keeping both in order
/// (block by block: an interface's items are together, in lists of hundreds).
fn take<T>(list: &mut Vec<T>, out: &mut Vec<T>, f: impl Fn(&T) -> bool) {
    let mut i = 0;
    while i < list.len() {
        if !f(&list[i]) {
            i += 1;
            continue;
        }
        let end = i + list[i..].iter().take_while(|x| f(x)).count();
        out.extend(list.drain(i..end));
    }
}
