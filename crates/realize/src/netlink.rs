//! Reading and changing a network namespace over rtnetlink (the `rtnetlink`
//! crate): links, addresses, routes of every table, policy rules and
//! permanent neighbours, as typed messages — no `ip` output is parsed.
//!
//! Each call runs on a short-lived thread that enters the namespace
//! (`setns`), opens a netlink socket there and drives the request on a
//! current-thread runtime; the caller stays in its own namespace.

use crate::cmd::CmdError;
use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags};
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteProtocol, RouteType};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute};
use rtnetlink::{Handle, IpVersion, LinkUnspec, LinkVeth, RouteMessageBuilder};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

fn err(ns: &str, what: &str, e: impl std::fmt::Display) -> CmdError {
    CmdError::Failed { cmd: format!("netlink in {ns}: {what}"), status: "error".into(), stderr: e.to_string() }
}

/// Run `f` with a netlink handle inside namespace `ns`.
pub fn in_netns<T, F, Fut>(ns: &str, what: &str, f: F) -> Result<T, CmdError>
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, String>>,
{
    let path = format!("/run/netns/{ns}");
    let (ns_name, what_s) = (ns.to_string(), what.to_string());
    std::thread::spawn(move || -> Result<T, CmdError> {
        let file = std::fs::File::open(&path).map_err(|e| err(&ns_name, &what_s, format!("open {path}: {e}")))?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| err(&ns_name, &what_s, format!("setns: {e}")))?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().map_err(|e| err(&ns_name, &what_s, e))?;
        rt.block_on(async move {
            let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| err(&ns_name, &what_s, e))?;
            tokio::spawn(conn);
            f(handle).await.map_err(|e| err(&ns_name, &what_s, e))
        })
    })
    .join()
    .map_err(|_| err(ns, what, "netlink thread panicked"))?
}

/// A device as seen from netlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    /// Interface index.
    pub index: u32,
    /// MAC address, `aa:bb:…`.
    pub mac: String,
    /// Administratively up.
    pub up: bool,
    /// IPv4 addresses as `a.b.c.d/p`.
    pub addrs: BTreeSet<String>,
    /// The interface alias (`ip link set DEV alias TEXT`): where the agent
    /// marks the VIFs it plugged, so it never mistakes a foreign device for one.
    pub alias: Option<String>,
}

fn mac_text(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

fn mac_bytes(s: &str) -> Result<Vec<u8>, String> {
    s.split(':').map(|p| u8::from_str_radix(p, 16).map_err(|e| format!("bad MAC {s}: {e}"))).collect()
}

async fn links_of(h: &Handle) -> Result<BTreeMap<String, LinkState>, String> {
    let mut out = BTreeMap::new();
    let mut by_index = BTreeMap::new();
    let mut links = h.link().get().execute();
    while let Some(m) = links.try_next().await.map_err(|e| e.to_string())? {
        let mut name = String::new();
        let mut mac = String::new();
        let mut alias = None;
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => name = n.clone(),
                LinkAttribute::Address(b) => mac = mac_text(b),
                LinkAttribute::IfAlias(t) => alias = Some(t.clone()),
                _ => {}
            }
        }
        by_index.insert(m.header.index, name.clone());
        let up = m.header.flags.contains(LinkFlags::Up);
        out.insert(name, LinkState { index: m.header.index, mac, up, addrs: BTreeSet::new(), alias });
    }
    let mut addrs = h.address().get().execute();
    while let Some(m) = addrs.try_next().await.map_err(|e| e.to_string())? {
        let local = m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        });
        if let (Some(ip), Some(name)) = (local, by_index.get(&m.header.index))
            && let Some(l) = out.get_mut(name)
        {
            l.addrs.insert(format!("{ip}/{}", m.header.prefix_len));
        }
    }
    Ok(out)
}

/// Devices of a namespace with MAC, state and IPv4 addresses.
pub fn links(ns: &str) -> Result<BTreeMap<String, LinkState>, CmdError> {
    in_netns(ns, "list links", |h| async move { links_of(&h).await })
}

async fn index_of(h: &Handle, dev: &str) -> Result<u32, String> {
    links_of(h).await?.get(dev).map(|l| l.index).ok_or_else(|| format!("no device {dev}"))
}

/// A route in the form the plan and the operations use:
/// `[dst, ("via", gw)?, "dev", dev, ("table", n)?]`.
pub type RouteKey = Vec<String>;

/// Routes of every table that are not the kernel's own (connected, local).
pub fn routes(ns: &str) -> Result<BTreeSet<RouteKey>, CmdError> {
    in_netns(ns, "list routes", |h| async move {
        let names: BTreeMap<u32, String> = links_of(&h).await?.into_iter().map(|(n, l)| (l.index, n)).collect();
        let mut out = BTreeSet::new();
        let mut routes = h.route().get(RouteMessageBuilder::<Ipv4Addr>::new().build()).execute();
        while let Some(m) = routes.try_next().await.map_err(|e| e.to_string())? {
            if m.header.protocol == RouteProtocol::Kernel || m.header.kind != RouteType::Unicast {
                continue;
            }
            let mut table = u32::from(m.header.table);
            let (mut dst, mut gw, mut oif) = (None, None, None);
            for a in &m.attributes {
                match a {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = Some(*ip),
                    RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gw = Some(*ip),
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    RouteAttribute::Table(t) => table = *t,
                    _ => {}
                }
            }
            if table == 255 {
                continue;
            }
            let len = m.header.destination_prefix_length;
            let mut key = vec![if len == 0 { "default".to_string() } else { format!("{}/{len}", dst.unwrap_or(Ipv4Addr::UNSPECIFIED)) }];
            if let Some(g) = gw {
                key.extend(["via".into(), g.to_string()]);
            }
            key.extend(["dev".into(), oif.and_then(|i| names.get(&i).cloned()).unwrap_or_default()]);
            if table != 254 {
                key.extend(["table".into(), table.to_string()]);
            }
            out.insert(key);
        }
        Ok(out)
    })
}

fn parse_route(key: &[String]) -> Result<(Ipv4Net, Option<Ipv4Addr>, String, u32), String> {
    let dst: Ipv4Net = if key[0] == "default" { Ipv4Net::default() } else { key[0].parse().map_err(|e| format!("{}: {e}", key[0]))? };
    let mut gw = None;
    let mut dev = String::new();
    let mut table = 254;
    let mut it = key[1..].iter();
    while let Some(k) = it.next() {
        let v = it.next().ok_or("route key without value")?;
        match k.as_str() {
            "via" => gw = Some(v.parse().map_err(|e| format!("{v}: {e}"))?),
            "dev" => dev = v.clone(),
            "table" => table = v.parse().map_err(|e| format!("{v}: {e}"))?,
            _ => return Err(format!("unknown route key {k}")),
        }
    }
    Ok((dst, gw, dev, table))
}

fn route_message(idx: u32, dst: Ipv4Net, gw: Option<Ipv4Addr>, table: u32) -> rtnetlink::packet_route::route::RouteMessage {
    let mut b =
        RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(dst.addr(), dst.prefix_len()).output_interface(idx).table_id(table);
    if let Some(g) = gw {
        b = b.gateway(g);
    }
    b.build()
}

/// `ip route replace` of a route key.
pub fn route_replace(ns: &str, key: &RouteKey) -> Result<(), CmdError> {
    let (dst, gw, dev, table) = parse_route(key).map_err(|e| err(ns, "route", e))?;
    let what = format!("replace route {}", key.join(" "));
    in_netns(ns, &what, move |h| async move {
        let idx = index_of(&h, &dev).await?;
        h.route().add(route_message(idx, dst, gw, table)).replace().execute().await.map_err(|e| e.to_string())
    })
}

/// `ip route del` of a route key.
pub fn route_del(ns: &str, key: &RouteKey) -> Result<(), CmdError> {
    let (dst, gw, dev, table) = parse_route(key).map_err(|e| err(ns, "route", e))?;
    let what = format!("delete route {}", key.join(" "));
    in_netns(ns, &what, move |h| async move {
        let idx = index_of(&h, &dev).await?;
        h.route().del(route_message(idx, dst, gw, table)).execute().await.map_err(|e| e.to_string())
    })
}

/// A policy rule as `["priority", p, ("from", net) | ("iif", dev), "table", t]`.
pub type RuleKey = Vec<String>;

fn rule_key(m: &rtnetlink::packet_route::rule::RuleMessage) -> Option<RuleKey> {
    let mut prio = None;
    let mut table = u32::from(m.header.table);
    let mut src = None;
    let mut iif = None;
    for a in &m.attributes {
        match a {
            RuleAttribute::Priority(p) => prio = Some(*p),
            RuleAttribute::Table(t) => table = *t,
            RuleAttribute::Source(IpAddr::V4(ip)) => src = Some(*ip),
            RuleAttribute::Iifname(d) => iif = Some(d.clone()),
            _ => {}
        }
    }
    let prio = prio.unwrap_or(0);
    if matches!(prio, 0 | 32766 | 32767) {
        return None;
    }
    let sel = match (iif, src) {
        (Some(d), _) => vec!["iif".to_string(), d],
        (None, Some(ip)) => vec!["from".to_string(), format!("{ip}/{}", m.header.src_len)],
        (None, None) => vec!["from".to_string(), "0.0.0.0/0".to_string()],
    };
    Some([vec!["priority".to_string(), prio.to_string()], sel, vec!["table".into(), table.to_string()]].concat())
}

/// Policy rules beyond the kernel's three defaults.
pub fn rules(ns: &str) -> Result<BTreeSet<RuleKey>, CmdError> {
    in_netns(ns, "list rules", |h| async move {
        let mut out = BTreeSet::new();
        let mut rules = h.rule().get(IpVersion::V4).execute();
        while let Some(m) = rules.try_next().await.map_err(|e| e.to_string())? {
            out.extend(rule_key(&m));
        }
        Ok(out)
    })
}

/// `ip rule add` of a rule key.
pub fn rule_add(ns: &str, key: &RuleKey) -> Result<(), CmdError> {
    let key = key.clone();
    in_netns(ns, "add rule", move |h| async move {
        let get = |k: &str| key.iter().position(|x| x == k).and_then(|i| key.get(i + 1)).cloned();
        let prio: u32 = get("priority").ok_or("no priority")?.parse().map_err(|e| format!("{e}"))?;
        let table: u32 = get("table").ok_or("no table")?.parse().map_err(|e| format!("{e}"))?;
        let mut req = h.rule().add().priority(prio).table_id(table).action(RuleAction::ToTable);
        if let Some(d) = get("iif") {
            req = req.input_interface(d);
        }
        let mut req = req.v4();
        if let Some(f) = get("from") {
            let net: Ipv4Net = f.parse().map_err(|e| format!("{f}: {e}"))?;
            req = req.source_prefix(net.addr(), net.prefix_len());
        }
        req.execute().await.map_err(|e| e.to_string())
    })
}

/// `ip rule del` of a rule key.
pub fn rule_del(ns: &str, key: &RuleKey) -> Result<(), CmdError> {
    let key = key.clone();
    in_netns(ns, "delete rule", move |h| async move {
        let mut rules = h.rule().get(IpVersion::V4).execute();
        let mut found = None;
        while let Some(m) = rules.try_next().await.map_err(|e| e.to_string())? {
            if rule_key(&m).as_ref() == Some(&key) {
                found = Some(m);
            }
        }
        match found {
            Some(m) => h.rule().del(m).execute().await.map_err(|e| e.to_string()),
            None => Ok(()),
        }
    })
}

/// Permanent neighbours as (ip, mac, dev).
pub fn neighbours(ns: &str) -> Result<BTreeSet<(String, String, String)>, CmdError> {
    in_netns(ns, "list neighbours", |h| async move {
        let names: BTreeMap<u32, String> = links_of(&h).await?.into_iter().map(|(n, l)| (l.index, n)).collect();
        let mut out = BTreeSet::new();
        let mut neigh = h.neighbours().get().set_family(IpVersion::V4).execute();
        while let Some(m) = neigh.try_next().await.map_err(|e| e.to_string())? {
            if m.header.state != NeighbourState::Permanent {
                continue;
            }
            let mut ip = None;
            let mut mac = String::new();
            for a in &m.attributes {
                match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(x)) => ip = Some(*x),
                    NeighbourAttribute::LinkLocalAddress(b) => mac = mac_text(b),
                    _ => {}
                }
            }
            if let Some(ip) = ip {
                out.insert((ip.to_string(), mac, names.get(&m.header.ifindex).cloned().unwrap_or_default()));
            }
        }
        Ok(out)
    })
}

/// `ip neigh replace IP lladdr MAC dev DEV nud permanent`.
pub fn neigh_replace(ns: &str, ip: &str, mac: &str, dev: &str) -> Result<(), CmdError> {
    let (ip, mac, dev) = (ip.to_string(), mac.to_string(), dev.to_string());
    in_netns(ns, "replace neighbour", move |h| async move {
        let idx = index_of(&h, &dev).await?;
        let ip: Ipv4Addr = ip.parse().map_err(|e| format!("{ip}: {e}"))?;
        h.neighbours()
            .add(idx, IpAddr::V4(ip))
            .link_local_address(&mac_bytes(&mac)?)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(|e| e.to_string())
    })
}

/// `ip neigh del IP dev DEV`.
pub fn neigh_del(ns: &str, ip: &str, dev: &str) -> Result<(), CmdError> {
    let (ip, dev) = (ip.to_string(), dev.to_string());
    in_netns(ns, "delete neighbour", move |h| async move {
        let idx = index_of(&h, &dev).await?;
        let mut neigh = h.neighbours().get().set_family(IpVersion::V4).execute();
        while let Some(m) = neigh.try_next().await.map_err(|e| e.to_string())? {
            let hit = m.header.ifindex == idx
                && m.attributes
                    .iter()
                    .any(|a| matches!(a, NeighbourAttribute::Destination(NeighbourAddress::Inet(x)) if x.to_string() == ip));
            if hit {
                return h.neighbours().del(m).execute().await.map_err(|e| e.to_string());
            }
        }
        Ok(())
    })
}

/// Create a veth pair with one end in each namespace.
pub fn veth(a_ns: &str, a: &str, b_ns: &str, b: &str) -> Result<(), CmdError> {
    let peer_ns = std::fs::File::open(format!("/run/netns/{b_ns}")).map_err(|e| err(b_ns, "open", e))?;
    let (a, b) = (a.to_string(), b.to_string());
    in_netns(a_ns, "add veth", move |h| async move {
        // Create both ends here under a temporary peer name, then move the peer.
        let tmp = format!("t{}", std::process::id() % 100_000_000);
        h.link().add(LinkVeth::new(&a, &tmp).build()).execute().await.map_err(|e| e.to_string())?;
        h.link()
            .set(LinkUnspec::new_with_name(&tmp).setns_by_fd(peer_ns.as_raw_fd()).build())
            .execute()
            .await
            .map_err(|e| format!("move {tmp}: {e}"))?;
        Ok(())
    })?;
    // Rename the peer in its namespace.
    let tmp = format!("t{}", std::process::id() % 100_000_000);
    in_netns(b_ns, "rename veth peer", move |h| async move {
        let idx = index_of(&h, &tmp).await?;
        h.link().set(LinkUnspec::new_with_index(idx).name(b).build()).execute().await.map_err(|e| e.to_string())
    })
}

/// Set a device's MAC.
pub fn set_mac(ns: &str, dev: &str, mac: &str) -> Result<(), CmdError> {
    let (dev, mac) = (dev.to_string(), mac.to_string());
    in_netns(ns, "set MAC", move |h| async move {
        let idx = index_of(&h, &dev).await?;
        h.link().set(LinkUnspec::new_with_index(idx).address(mac_bytes(&mac)?).build()).execute().await.map_err(|e| e.to_string())
    })
}

/// Bring a device up.
pub fn link_up(ns: &str, dev: &str) -> Result<(), CmdError> {
    let dev = dev.to_string();
    in_netns(ns, "set up", move |h| async move {
        let idx = index_of(&h, &dev).await?;
        h.link().set(LinkUnspec::new_with_index(idx).up().build()).execute().await.map_err(|e| e.to_string())
    })
}

/// `ip addr replace NET dev DEV`.
pub fn addr_add(ns: &str, dev: &str, net: &str) -> Result<(), CmdError> {
    let (dev, net) = (dev.to_string(), net.to_string());
    in_netns(ns, "add address", move |h| async move {
        let idx = index_of(&h, &dev).await?;
        let n: Ipv4Net = net.parse().map_err(|e| format!("{net}: {e}"))?;
        let mut req = h.address().add(idx, IpAddr::V4(n.addr()), n.prefix_len()).replace();
        // Like `ip addr add` without `brd`: no broadcast address. (The builder
        // derives one, which on a /31 rfp/fpr link is the peer's address.)
        req.message_mut().attributes.retain(|a| !matches!(a, AddressAttribute::Broadcast(_)));
        req.execute().await.map_err(|e| e.to_string())
    })
}

/// `ip addr del NET dev DEV`.
pub fn addr_del(ns: &str, dev: &str, net: &str) -> Result<(), CmdError> {
    let (dev, net) = (dev.to_string(), net.to_string());
    in_netns(ns, "delete address", move |h| async move {
        let idx = index_of(&h, &dev).await?;
        let n: Ipv4Net = net.parse().map_err(|e| format!("{net}: {e}"))?;
        let mut addrs = h.address().get().set_link_index_filter(idx).execute();
        while let Some(m) = addrs.try_next().await.map_err(|e| e.to_string())? {
            let hit = m.header.prefix_len == n.prefix_len()
                && m.attributes.iter().any(|a| matches!(a, AddressAttribute::Local(IpAddr::V4(ip)) if *ip == n.addr()));
            if hit {
                return h.address().del(m).execute().await.map_err(|e| e.to_string());
            }
        }
        Ok(())
    })
}

/// Move the calling thread into namespace `ns` for good (threads it spawns
/// afterwards start there too). Unlike `ip netns exec`, the mount namespace
/// stays the machine's, so namespaces this process adds later (`ip netns
/// add`) are seen by everyone. Call it before spawning any thread.
pub fn enter(ns: &str) -> Result<(), CmdError> {
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).map_err(|e| err(ns, "enter", format!("open {path}: {e}")))?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| err(ns, "enter", format!("setns: {e}")))
}
