//! The demo: every path listed in a topology file's header comments
//! (`#   vm1 -> vm5   different networks, different hosts`), traced on a
//! fresh twin each, with a summary of what happened on the way.

use crate::trace::{HopKind, Trace, TraceError, TraceRequest, delivery_path, trace};
use crate::{L4, World};
use dvr_model::Topology;
use serde::Serialize;
use std::net::Ipv4Addr;

/// One path to demonstrate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathSpec {
    /// Source endpoint.
    pub from: String,
    /// Destination: an endpoint name or an IPv4 address.
    pub to: String,
    /// What the path shows.
    pub note: String,
}

/// Paths from lines `#   FROM -> TO   NOTE` at the top of a topology file.
pub fn parse_paths(yaml: &str) -> Vec<PathSpec> {
    yaml.lines()
        .take_while(|l| l.starts_with('#') || l.trim().is_empty())
        .filter_map(|l| {
            let body = l.trim_start_matches('#').trim();
            let (from, rest) = body.split_once(" -> ")?;
            let rest = rest.trim();
            let (to, note) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            (!from.contains(' ')).then(|| PathSpec { from: from.to_string(), to: to.to_string(), note: note.trim().to_string() })
        })
        .collect()
}

/// Resolve a destination (endpoint name or address).
pub fn resolve(world: &World, to: &str) -> Option<Ipv4Addr> {
    to.parse().ok().or_else(|| world.endpoint_ip(to))
}

/// What the summary table shows for one path.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// `from -> to`.
    pub path: String,
    /// The note from the file.
    pub note: String,
    /// Request verdict (and where).
    pub request: String,
    /// Reply verdict.
    pub reply: String,
    /// Hosts the request crossed, in order.
    pub hosts: Vec<String>,
    /// Key rewrites on the way.
    pub rewrites: Vec<String>,
}

fn verdict(t: &Trace) -> String {
    match &t.delivered_to {
        Some(to) => format!("delivered to {to}"),
        None => format!("dropped: {}", t.drop_reason.clone().unwrap_or_default()),
    }
}

/// Summarise a trace: hosts crossed and the rewrites that matter (VLAN on
/// the wire, source MAC to a DVR MAC, NAT).
pub fn summarise(topo: &Topology, p: &PathSpec, t: &Trace) -> Summary {
    let path = delivery_path(t);
    let mut hosts: Vec<String> = Vec::new();
    let mut rewrites: Vec<String> = Vec::new();
    let add = |v: &mut Vec<String>, s: String| {
        if !v.contains(&s) {
            v.push(s);
        }
    };
    for h in &path {
        if h.host != "fabric" && hosts.last() != Some(&h.host) {
            add(&mut hosts, h.host.clone());
        }
        match h.kind {
            HopKind::Wire => {
                let tag = h.packet.vlan.map_or("untagged".to_string(), |v| format!("VLAN {v}"));
                add(&mut rewrites, format!("{tag} on {}", h.where_));
            }
            HopKind::Openflow => {
                if let Some(r) = &h.rewrite {
                    for part in r.split(", ") {
                        if let Some(m) = part.strip_prefix("src MAC ").and_then(|x| x.split('→').nth(1)) {
                            if let Some(owner) = topo.hosts.iter().find(|x| x.dvr_mac.map(|d| d.to_string()).as_deref() == Some(m)) {
                                add(&mut rewrites, format!("src MAC → DVR MAC of {}", owner.name));
                            } else if topo.ports.iter().any(|x| {
                                x.mac.to_string() == m && matches!(x.owner, dvr_model::PortOwner::RouterInterfaceDistributed { .. })
                            }) {
                                add(&mut rewrites, format!("src MAC → gateway MAC on {}", h.host));
                            }
                        } else if part.starts_with("VLAN") && h.where_ != "br-int" {
                            add(&mut rewrites, format!("{part} ({} {})", h.host, h.where_));
                        }
                    }
                }
            }
            HopKind::Namespace | HopKind::Endpoint => {
                if h.rewrite.is_some() && (h.detail.contains("NAT") || h.detail.contains("conntrack")) {
                    let what = h.detail.split(" (").next().unwrap_or(&h.detail).to_string();
                    add(&mut rewrites, format!("{what} in {}@{}", short_ns(&h.where_), h.host));
                }
            }
        }
    }
    Summary {
        path: format!("{} -> {}", p.from, p.to),
        note: p.note.clone(),
        request: verdict(t),
        reply: t.reply.as_ref().map(|r| verdict(r)).unwrap_or_else(|| "-".into()),
        hosts,
        rewrites,
    }
}

fn short_ns(ns: &str) -> String {
    match ns.split_once('-') {
        Some((kind, id)) if id.len() > 8 => format!("{kind}-{}", &id[..8]),
        _ => ns.to_string(),
    }
}

/// Trace one path on a fresh twin.
pub fn run_path(topo: &Topology, plan: &dvr_plan::Plan, p: &PathSpec) -> Result<Trace, String> {
    let mut w = World::build(topo, plan);
    crate::trace::warm_up(&mut w);
    let to =
        resolve(&w, &p.to).ok_or_else(|| format!("path {} -> {}: `{}` is neither an IPv4 address nor an endpoint", p.from, p.to, p.to))?;
    let req = TraceRequest { from: p.from.clone(), to, l4: L4::Icmp { reply: false, id: 1 }, spoof_ip: None, spoof_mac: None };
    trace(&mut w, &req).map_err(|e: TraceError| e.to_string())
}
