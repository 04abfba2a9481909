//! Text renderers in the formats operators already read: `ovs-vsctl`-like
//! port lists, `ovs-ofctl dump-flows` lines, `ip -br addr`, `ip route`,
//! `ip rule`, `ip neigh`, `sysctl` and `iptables-save`.

use crate::model::*;
use std::fmt::Write;

/// Options of the text renderer.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextOptions {
    /// Print each flow's stage, reason and builder location, and each route,
    /// rule, neighbour and NAT rule's reason and builder, as a comment after it.
    pub explain: bool,
}

/// One host's plan as text.
pub fn host_text(p: &HostPlan, opts: TextOptions) -> String {
    let mut o = String::new();
    let mode = p
        .agent_mode
        .map(|m| format!(", l3 agent_mode {}", serde_json::to_value(m).expect("enum").as_str().unwrap_or_default()))
        .unwrap_or_default();
    let mac = p.dvr_mac.map(|m| format!(", DVR MAC {m}")).unwrap_or_default();
    let _ = writeln!(o, "#### host {} (role {:?}{mode}{mac})", p.host, p.role);
    if p.bridges.is_empty() && p.namespaces.is_empty() {
        let _ = writeln!(o, "# no dataplane: this host runs the API only");
        return o;
    }
    if !p.sysctls.is_empty() {
        let _ = writeln!(o, "\n## sysctl (root namespace)");
        for s in &p.sysctls {
            let _ = writeln!(o, "{} = {}", s.key, s.value);
        }
    }
    for b in &p.bridges {
        o.push_str(&bridge_text(b, opts));
    }
    for ns in &p.namespaces {
        o.push_str(&namespace_text_with(ns, opts));
    }
    o
}

/// A bridge: ports as comments, then flows that `ovs-ofctl add-flows` loads.
pub fn bridge_text(b: &Bridge, opts: TextOptions) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "\n## bridge {} ({} flows)", b.name, b.flows.len());
    for port in &b.ports {
        let kind = match &port.kind {
            PortKind::Patch { peer } => format!("patch peer={peer}"),
            PortKind::Nic => "nic".to_string(),
            PortKind::Vif { instance } => format!("vif of {instance}"),
            PortKind::Service { namespace } => format!("in {namespace}"),
            PortKind::Vxlan { local_ip, remote_ip, dst_port } => {
                format!("vxlan local_ip={local_ip} remote_ip={remote_ip} key=flow dst_port={dst_port}")
            }
        };
        let tag = port.tag.map(|t| format!(" tag={t}")).unwrap_or_default();
        let mac = port.mac.map(|m| format!(" mac={m}")).unwrap_or_default();
        let _ = writeln!(o, "# port {:<15}{tag} {kind}{mac}", port.name);
    }
    for f in &b.flows {
        let _ = writeln!(o, "{f}");
        if opts.explain {
            let stage = crate::tables::lookup(b.kind, f.table).map_or_else(|| format!("table {}", f.table), |t| t.name.to_string());
            let _ = writeln!(o, "#   ^ {stage}: {} [{}]", f.reason, f.builder);
        }
    }
    o
}

/// The flows of a bridge only, one per line (for `ovs-ofctl add-flows BR -`).
pub fn flows_text(b: &Bridge) -> String {
    b.flows.iter().map(|f| format!("{f}\n")).collect()
}

/// A namespace in `ip` and `iptables-save` formats.
pub fn namespace_text(ns: &Namespace) -> String {
    namespace_text_with(ns, TextOptions::default())
}

/// `#   ^ why [file:line]` after an item, when explaining.
fn explain_line(o: &mut String, opts: TextOptions, origin: &Origin) {
    if opts.explain && !origin.is_empty() {
        let _ = writeln!(o, "#   ^ {origin}");
    }
}

/// A namespace; with `explain`, each route, rule, neighbour and NAT rule is
/// followed by its origin (why it exists and the builder that made it).
pub fn namespace_text_with(ns: &Namespace, opts: TextOptions) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "\n## namespace {} ({:?} of {})", ns.name, ns.kind, ns.serves);
    let _ = writeln!(o, "### ip -br link");
    let _ = writeln!(o, "{:<16} {:<14} 00:00:00:00:00:00 <LOOPBACK,UP,LOWER_UP>", "lo", "UNKNOWN");
    for d in &ns.devices {
        let via = match &d.link {
            DeviceLink::Ovs { bridge } => format!("ovs:{bridge}"),
            DeviceLink::Veth { peer, peer_namespace } => format!("veth peer {peer}@{peer_namespace}"),
        };
        let _ = writeln!(o, "{:<16} {:<14} {} ({via})", d.name, "UP", d.mac);
    }
    let _ = writeln!(o, "### ip -br addr");
    let _ = writeln!(o, "{:<16} {:<14} 127.0.0.1/8", "lo", "UNKNOWN");
    for d in &ns.devices {
        let addrs: Vec<String> = d.addrs.iter().map(|a| a.to_string()).collect();
        let _ = writeln!(o, "{:<16} {:<14} {}", d.name, "UP", addrs.join(" "));
    }
    let _ = writeln!(o, "### ip route show table all");
    o.push_str(&routes_text_with(&ns.routes, opts));
    let _ = writeln!(o, "### ip rule");
    o.push_str(&rules_text_with(&ns.rules, opts));
    if !ns.neighbours.is_empty() {
        let _ = writeln!(o, "### ip neigh (permanent)");
        for n in &ns.neighbours {
            let _ = writeln!(o, "{} dev {} lladdr {} PERMANENT", n.ip, n.dev, n.mac);
            explain_line(&mut o, opts, &n.origin);
        }
    }
    if !ns.sysctls.is_empty() {
        let _ = writeln!(o, "### sysctl");
        for s in &ns.sysctls {
            let _ = writeln!(o, "{} = {}", s.key, s.value);
        }
    }
    if let Some(d) = &ns.dhcp {
        let _ = writeln!(o, "### dhcp (pushed to instances)");
        let _ =
            writeln!(o, "subnet {} router {}{}", d.subnet, d.router, if d.metadata { " metadata 169.254.169.254 served here" } else { "" });
        for (dst, via) in &d.host_routes {
            let _ = writeln!(o, "option 121 host route {dst} via {via}");
        }
    }
    if !ns.iptables.is_empty() {
        let _ = writeln!(o, "### iptables-save");
        o.push_str(&iptables_save_with(&ns.iptables, opts));
    }
    o
}

/// `ip route show table all` lines (main first, then numbered tables).
pub fn routes_text(routes: &[Route]) -> String {
    routes_text_with(routes, TextOptions::default())
}

/// [`routes_text`], each route followed by its origin when explaining.
pub fn routes_text_with(routes: &[Route], opts: TextOptions) -> String {
    let mut sorted: Vec<&Route> = routes.iter().collect();
    sorted.sort_by_key(|r| r.table);
    let mut o = String::new();
    for r in sorted {
        let dst = if r.dst.prefix_len() == 0 { "default".to_string() } else { r.dst.to_string() };
        let mut line = dst;
        if let Some(v) = r.via {
            let _ = write!(line, " via {v}");
        }
        let _ = write!(line, " dev {}", r.dev);
        if let TableRef::Id(t) = r.table {
            let _ = write!(line, " table {t}");
        }
        if let Some(s) = r.src {
            let _ = write!(line, " proto kernel scope link src {s}");
        }
        let _ = writeln!(o, "{line}");
        explain_line(&mut o, opts, &r.origin);
    }
    o
}

/// `ip rule` output including the kernel's default rules.
pub fn rules_text(rules: &[Rule]) -> String {
    rules_text_with(rules, TextOptions::default())
}

/// [`rules_text`], each planned rule followed by its origin when explaining.
pub fn rules_text_with(rules: &[Rule], opts: TextOptions) -> String {
    let none = Origin::default();
    let mut all: Vec<(u32, String, &Origin)> = vec![
        (0, "from all lookup local".into(), &none),
        (32766, "from all lookup main".into(), &none),
        (32767, "from all lookup default".into(), &none),
    ];
    for r in rules {
        let sel = match &r.selector {
            RuleSelector::From(n) if n.prefix_len() == 32 => format!("from {}", n.addr()),
            RuleSelector::From(n) => format!("from {n}"),
            RuleSelector::Iif(d) => format!("from all iif {d}"),
        };
        all.push((r.priority, format!("{sel} lookup {}", r.table), &r.origin));
    }
    all.sort_by_key(|(p, _, _)| *p);
    let mut o = String::new();
    for (p, s, origin) in all {
        let _ = writeln!(o, "{p}:\t{s}");
        explain_line(&mut o, opts, origin);
    }
    o
}

/// One rule's arguments in `iptables-save` order.
pub fn ipt_rule_args(r: &IptRule) -> String {
    let mut a: Vec<String> = Vec::new();
    let neg = |not: bool| if not { "! " } else { "" };
    for m in &r.matches {
        match m {
            IptMatch::Src { net } => a.push(format!("-s {net}")),
            IptMatch::Dst { net } => a.push(format!("-d {net}")),
            IptMatch::InIface { dev, not } => a.push(format!("{}-i {dev}", neg(*not))),
            IptMatch::OutIface { dev, not } => a.push(format!("{}-o {dev}", neg(*not))),
            IptMatch::TcpDport { port } => a.push(format!("-p tcp -m tcp --dport {port}")),
            IptMatch::CtStateDnat { not } => a.push(format!("-m conntrack {}--ctstate DNAT", neg(*not))),
            IptMatch::Mark { value, mask, not } => a.push(format!("-m mark {}--mark 0x{value:x}/0x{mask:x}", neg(*not))),
        }
    }
    if let Some(c) = &r.comment {
        a.push(format!("-m comment --comment \"{c}\""));
    }
    a.push(match &r.target {
        IptTarget::Jump { chain } => format!("-j {chain}"),
        IptTarget::Accept => "-j ACCEPT".into(),
        IptTarget::Snat { to, random_fully: false } => format!("-j SNAT --to-source {to}"),
        IptTarget::Snat { to, random_fully: true } => format!("-j SNAT --to-source {to} --random-fully"),
        IptTarget::Dnat { to } => format!("-j DNAT --to-destination {to}"),
        IptTarget::Redirect { port } => format!("-j REDIRECT --to-ports {port}"),
        IptTarget::NoTrack => "-j CT --notrack".into(),
        IptTarget::Mark { value, mask } => format!("-j MARK --set-xmark {value:#x}/{mask:#x}"),
    });
    a.join(" ")
}

/// Tables in `iptables-save` format (loadable by `iptables-restore`).
pub fn iptables_save(tables: &[IptTable]) -> String {
    iptables_save_with(tables, TextOptions::default())
}

/// [`iptables_save`], each rule followed by its origin as a `#` comment
/// (which `iptables-restore` skips) when explaining.
pub fn iptables_save_with(tables: &[IptTable], opts: TextOptions) -> String {
    let mut o = String::new();
    for t in tables {
        let _ = writeln!(o, "*{}", t.name);
        for c in &t.chains {
            let _ = writeln!(o, ":{} {} [0:0]", c.name, if c.builtin { "ACCEPT" } else { "-" });
        }
        for c in &t.chains {
            for r in &c.rules {
                let _ = writeln!(o, "-A {} {}", c.name, ipt_rule_args(r));
                explain_line(&mut o, opts, &r.origin);
            }
        }
        let _ = writeln!(o, "COMMIT");
    }
    o
}
