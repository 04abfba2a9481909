//! The demo: every path of a topology file's `paths:` section, traced on a
//! fresh twin each, with a summary of what happened on the way.

use crate::trace::{Change, HopKind, Step, Trace, TraceError, TraceRequest, Verdict, delivery_path, trace};
use crate::{L4, World};
use dvr_model::Topology;
use serde::Serialize;

pub use dvr_model::{Expected, PathSpec};

/// Paths from lines `#   FROM -> TO   NOTE` at the top of a topology file:
/// the format before `paths:` existed, still read for one version (the CLI
/// warns when it falls back to it).
pub fn parse_paths(yaml: &str) -> Vec<PathSpec> {
    yaml.lines()
        .take_while(|l| l.starts_with('#') || l.trim().is_empty())
        .filter_map(|l| {
            let body = l.trim_start_matches('#').trim();
            let (from, rest) = body.split_once(" -> ")?;
            let rest = rest.trim();
            let (to, note) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            (!from.contains(' ')).then(|| PathSpec {
                from: from.to_string(),
                to: to.to_string(),
                expect: None,
                note: Some(note.trim().to_string()).filter(|n| !n.is_empty()),
                proto: None,
                dport: None,
            })
        })
        .collect()
}

/// What the summary table shows for one path.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// `from -> to`.
    pub path: String,
    /// The note from the file.
    pub note: String,
    /// How the request ended.
    pub request: Outcome,
    /// How the reply ended (`None` when no reply was sent).
    pub reply: Option<Outcome>,
    /// Hosts the request crossed, in order.
    pub hosts: Vec<String>,
    /// Key rewrites on the way.
    pub rewrites: Vec<String>,
}

/// One direction's end, for tables: who received it, or the drop sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Outcome {
    /// Delivered.
    Delivered {
        /// To whom.
        to: String,
    },
    /// Dropped.
    Dropped {
        /// Where and why, as a sentence.
        reason: String,
    },
}

impl Outcome {
    /// The outcome of a verdict.
    pub fn of(v: &Verdict) -> Outcome {
        match v {
            Verdict::Delivered { to } => Outcome::Delivered { to: to.to_string() },
            Verdict::Dropped(d) => Outcome::Dropped { reason: d.to_string() },
        }
    }
    /// Whether delivered.
    pub fn is_delivered(&self) -> bool {
        matches!(self, Outcome::Delivered { .. })
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Delivered { to } => write!(f, "delivered to {to}"),
            Outcome::Dropped { reason } => write!(f, "dropped: {reason}"),
        }
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
        if h.host != "fabric" && hosts.last().map(String::as_str) != Some(h.host.as_str()) {
            add(&mut hosts, h.host.to_string());
        }
        match (&h.step, h.kind) {
            (Step::Wire { network, vlan, .. }, _) => {
                let tag = vlan.map_or("untagged".to_string(), |v| format!("VLAN {v}"));
                add(&mut rewrites, format!("{tag} on {network}"));
            }
            (Step::Tunnel { encap, .. }, _) => add(&mut rewrites, format!("VXLAN VNI {} {} → {}", encap.vni, encap.src, encap.dst)),
            (_, HopKind::Openflow) => {
                for c in &h.changed {
                    match c {
                        Change::SrcMac { to, .. } => {
                            if let Some(owner) = topo.hosts.iter().find(|x| x.dvr_mac == Some(*to)) {
                                add(&mut rewrites, format!("src MAC → DVR MAC of {}", owner.name));
                            } else if topo
                                .ports
                                .iter()
                                .any(|x| x.mac == *to && matches!(x.owner, dvr_model::PortOwner::RouterInterfaceDistributed { .. }))
                            {
                                add(&mut rewrites, format!("src MAC → gateway MAC on {}", h.host));
                            }
                        }
                        Change::Vlan { .. } if h.where_ != "br-int" => add(&mut rewrites, format!("{c} ({} {})", h.host, h.where_)),
                        _ => {}
                    }
                }
            }
            (Step::Nat { hook, rewrite: Some(w), .. }, _) if !h.changed.is_empty() => {
                add(&mut rewrites, format!("{} {w} in {}@{}", hook.chain(), short_ns(&h.where_), h.host));
            }
            (Step::Conntrack { hook, rewrite }, _) if !h.changed.is_empty() => {
                add(&mut rewrites, format!("{} conntrack: {rewrite} in {}@{}", hook.chain(), short_ns(&h.where_), h.host));
            }
            _ => {}
        }
    }
    Summary {
        path: p.label(),
        note: p.note.clone().unwrap_or_default(),
        request: Outcome::of(&t.verdict),
        reply: t.reply.as_ref().map(|r| Outcome::of(&r.verdict)),
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

/// Why a path could not be traced.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// `to` does not resolve (only possible for paths not validated with the topology).
    #[error(
        "path {from} -> {to}: `{to}` is neither an IPv4 address nor an instance/external host\n    fix: name an endpoint or give an address"
    )]
    Unresolved {
        /// Sender.
        from: String,
        /// The destination as written.
        to: String,
    },
    /// The sender is not an endpoint.
    #[error(transparent)]
    Trace(#[from] TraceError),
}

/// Source port of a tcp/udp path (`dvr trace --sport`'s default).
pub const PATH_SPORT: u16 = 40000;

/// Trace one path on a fresh twin.
pub fn run_path(topo: &Topology, plan: &dvr_plan::Plan, p: &PathSpec) -> Result<Trace, PathError> {
    let mut w = World::build(topo, plan);
    crate::trace::warm_up(&mut w);
    let to = topo.resolve_address(&p.to).ok_or_else(|| PathError::Unresolved { from: p.from.clone(), to: p.to.clone() })?;
    let l4 = match (p.proto, p.dport) {
        (Some(dvr_model::PathProto::Tcp), Some(dport)) => L4::Tcp { sport: PATH_SPORT, dport },
        (Some(dvr_model::PathProto::Udp), Some(dport)) => L4::Udp { sport: PATH_SPORT, dport },
        _ => L4::Icmp { reply: false, id: 1 },
    };
    let req = TraceRequest { from: p.from.clone(), to, l4, spoof_ip: None, spoof_mac: None };
    Ok(trace(&mut w, &req)?)
}

/// How a trace ended, in the terms of a path's `expect`.
pub fn expected_of(t: &Trace) -> Expected {
    match (&t.verdict, t.reply.as_deref().map(|r| &r.verdict)) {
        (Verdict::Dropped(_), _) => Expected::Dropped,
        (Verdict::Delivered { .. }, Some(Verdict::Delivered { .. })) => Expected::Delivered,
        (Verdict::Delivered { .. }, _) => Expected::ReplyDropped,
    }
}

/// The demo's summary as an aligned table: who each path reached, whether
/// the reply came back, the hosts crossed and the key rewrites; then one
/// line per path that did not make the round trip, with the reasons.
pub fn summary_table(rows: &[Summary]) -> String {
    use std::fmt::Write;
    let mut o = String::from("\nSUMMARY\n");
    let reached = |x: &Outcome| match x {
        Outcome::Delivered { to } => to.clone(),
        Outcome::Dropped { .. } => "DROPPED".to_string(),
    };
    let reply = |x: &Option<Outcome>| match x {
        Some(Outcome::Delivered { .. }) => "delivered",
        Some(Outcome::Dropped { .. }) => "DROPPED",
        None => "-",
    };
    let w = rows.iter().map(|r| r.path.len()).max().unwrap_or(4).max(4);
    let w2 = rows.iter().map(|r| reached(&r.request).len()).max().unwrap_or(7).max(7);
    let _ = writeln!(o, "{:<w$}  {:<w2$}  {:<9} {:<28} KEY REWRITES", "PATH", "REACHED", "REPLY", "HOSTS CROSSED");
    for r in rows {
        let _ = writeln!(
            o,
            "{:<w$}  {:<w2$}  {:<9} {:<28} {}",
            r.path,
            reached(&r.request),
            reply(&r.reply),
            r.hosts.join(" → "),
            r.rewrites.join("; ")
        );
    }
    for r in rows {
        let back_ok = r.reply.as_ref().is_some_and(Outcome::is_delivered);
        if !r.request.is_delivered() || !back_ok {
            let back = r.reply.as_ref().map_or("-".to_string(), ToString::to_string);
            let _ = writeln!(o, "  {}: request {}; reply {back}", r.path, r.request);
        }
    }
    o
}
