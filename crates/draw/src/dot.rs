//! The deployment (and a traced path) as Graphviz DOT, for people's own
//! tooling: one cluster per host with its bridges, namespaces and
//! instances; one node per physical network; the path as numbered edges.

use crate::scene::{Filter, path_hops};
use dvr_model::Topology;
use dvr_plan::{DeviceLink, Plan, PortKind};
use dvr_sim::{HopKind, Trace};
use std::fmt::Write;

fn q(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn node_id(host: &str, name: &str) -> String {
    q(&format!("{host}/{name}"))
}

/// The deployment as a DOT digraph; with `trace`, its request (blue) and
/// reply (orange) as numbered edges between the places they crossed.
pub fn render(topo: &Topology, plan: &Plan, filter: &Filter, trace: Option<&Trace>) -> String {
    let mut o = String::from("digraph dvr {\n  rankdir=TB;\n  compound=true;\n  node [shape=box, fontname=\"Helvetica\", fontsize=10];\n");
    for hp in plan.hosts.iter().filter(|h| !h.bridges.is_empty() && filter.hosts.as_ref().is_none_or(|hs| hs.contains(&h.host))) {
        let h = &hp.host;
        let _ = writeln!(o, "  subgraph {} {{", q(&format!("cluster_{h}")));
        let mac = hp.dvr_mac.map(|m| format!("\\nDVR MAC {m}")).unwrap_or_default();
        let _ = writeln!(o, "    label={};", q(&format!("{h}{mac}")).replace("\\\\n", "\\n"));
        for br in &hp.bridges {
            let label = match &br.physnet {
                Some(p) => format!("{}\\n{p}", br.name),
                None => br.name.clone(),
            };
            let _ = writeln!(o, "    {} [label=\"{label}\", style=filled, fillcolor=\"#ddf4ff\"];", node_id(h, &br.name));
            for p in &br.ports {
                match &p.kind {
                    PortKind::Vif { instance } => {
                        let _ = writeln!(o, "    {} [label={}, shape=ellipse];", node_id(h, instance), q(instance));
                        let tag = p.tag.map(|t| format!(" [label=\"tag {t}\"]")).unwrap_or_default();
                        let _ = writeln!(o, "    {} -> {}{tag};", node_id(h, instance), node_id(h, &br.name));
                    }
                    PortKind::Nic => {
                        let phys = br.physnet.clone().unwrap_or_default();
                        let _ = writeln!(
                            o,
                            "    {} -> {} [label={}, arrowhead=none];",
                            node_id(h, &br.name),
                            q(&format!("physnet/{phys}")),
                            q(&p.name)
                        );
                    }
                    PortKind::Patch { peer } => {
                        if let Some(other) = hp.bridges.iter().find(|b| b.ports.iter().any(|x| &x.name == peer))
                            && br.physnet.is_none()
                        {
                            let _ = writeln!(
                                o,
                                "    {} -> {} [label={}, style=dashed, dir=both];",
                                node_id(h, &br.name),
                                node_id(h, &other.name),
                                q("patch")
                            );
                        }
                    }
                    PortKind::Service { .. } | PortKind::Vxlan { .. } => {}
                }
            }
        }
        for ns in &hp.namespaces {
            let devs: Vec<String> = ns
                .devices
                .iter()
                .map(|d| format!("{} {}", d.name, d.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" ")))
                .collect();
            let _ = writeln!(
                o,
                "    {} [label={}, style=filled, fillcolor=\"#fff8c5\"];",
                node_id(h, &ns.name),
                q(&format!("{} ({})\n{}", ns.name, ns.serves, devs.join("\n"))).replace('\n', "\\n")
            );
            for d in &ns.devices {
                match &d.link {
                    DeviceLink::Ovs { bridge } => {
                        let _ =
                            writeln!(o, "    {} -> {} [label={}, arrowhead=none];", node_id(h, &ns.name), node_id(h, bridge), q(&d.name));
                    }
                    DeviceLink::Veth { peer_namespace, .. } if ns.name < *peer_namespace => {
                        let _ = writeln!(
                            o,
                            "    {} -> {} [label={}, style=dotted, dir=both];",
                            node_id(h, &ns.name),
                            node_id(h, peer_namespace),
                            q(&d.name)
                        );
                    }
                    DeviceLink::Veth { .. } => {}
                }
            }
        }
        o.push_str("  }\n");
    }
    let mut physnets: Vec<&str> = topo.networks.iter().filter_map(|n| n.segment.physnet()).collect();
    physnets.dedup();
    for p in physnets {
        let _ = writeln!(o, "  {} [label={}, shape=hexagon, style=filled, fillcolor=\"#eaeef2\"];", q(&format!("physnet/{p}")), q(p));
    }
    for e in &topo.external_hosts {
        if let Some(p) = topo.network(e.network).segment.physnet() {
            let _ = writeln!(
                o,
                "  {} [label={}, shape=ellipse];",
                node_id("external", &e.name),
                q(&format!("{}\n{}", e.name, e.ip)).replace('\n', "\\n")
            );
            let _ = writeln!(o, "  {} -> {} [arrowhead=none];", node_id("external", &e.name), q(&format!("physnet/{p}")));
        }
    }
    if let Some(t) = trace {
        for (tr, colour) in std::iter::once((t, "#1f6feb")).chain(t.reply.as_deref().map(|r| (r, "#e8590c"))) {
            let mut prev: Option<String> = None;
            let mut n = 0;
            for h in path_hops(tr) {
                let id = if h.kind == HopKind::Wire { q(&format!("physnet/{}", h.where_)) } else { node_id(&h.host, &h.where_) };
                if prev.as_ref() != Some(&id) {
                    if let Some(p) = &prev {
                        n += 1;
                        let _ = writeln!(o, "  {p} -> {id} [color=\"{colour}\", penwidth=2.5, label=\"{n}\", fontcolor=\"{colour}\"];");
                    }
                    prev = Some(id);
                }
            }
        }
    }
    o.push_str("}\n");
    o
}
