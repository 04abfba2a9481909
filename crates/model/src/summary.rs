//! The human summary of a validated topology (`dvr topology`, `dvr validate`).

use crate::Topology;

impl Topology {
    /// Hosts, networks, routers, every port with what was allocated for it,
    /// floating IPs and demo paths: what `dvr topology` and `dvr validate` print.
    pub fn summary(&self) -> String {
        let t = self;
        use std::fmt::Write;
        let mut o = String::new();
        let _ = writeln!(o, "hosts:");
        for h in &t.hosts {
            let mac = h.dvr_mac.map(|m| format!(" dvr_mac={m}")).unwrap_or_default();
            let vlans: Vec<String> = h.local_vlans.iter().map(|(n, v)| format!("{}={v}", t.network(*n).name)).collect();
            let _ = writeln!(o, "  {:<12} {:?}{mac} local_vlans[{}]", h.name, h.role, vlans.join(" "));
        }
        let _ = writeln!(o, "networks:");
        for n in &t.networks {
            let seg = serde_json::to_string(&n.segment).unwrap_or_default();
            let _ = writeln!(o, "  {:<12} {} {seg}{}", n.name, n.id, if n.external { " external" } else { "" });
        }
        let _ = writeln!(o, "routers:");
        for r in &t.routers {
            let hosts: Vec<&str> = r.hosts.iter().map(|h| t.host(*h).name.as_str()).collect();
            let _ = writeln!(o, "  {:<12} {} on [{}]", r.name, r.id, hosts.join(", "));
        }
        let _ = writeln!(o, "ports:");
        for p in &t.ports {
            let host = p.host.map(|h| t.host(h).name.clone()).unwrap_or_else(|| "(every router host)".into());
            let _ = writeln!(o, "  {:<15} {:<38} {:<15} {} {}", p.device_name(), p.owner.device_owner(), p.ip, p.mac, host);
        }
        let _ = writeln!(o, "floating_ips:");
        for f in &t.floating_ips {
            let to = f.association.map(|(x, _)| t.instance(x).name.clone()).unwrap_or_else(|| "(not associated)".into());
            let _ = writeln!(o, "  {:<15} -> {to}", f.ip);
        }
        if !t.security.is_noop() {
            let _ = writeln!(o, "security_groups: (firewall driver {})", t.security.driver.name());
            for g in &t.security.groups {
                let implicit = if g.implicit { " (created with the project)" } else { "" };
                let _ = writeln!(o, "  {:<12} {} project {}{implicit}", g.name, g.id, g.project);
                for r in &g.rules {
                    let _ = writeln!(o, "    {} {}", r.id, crate::security::rule_text(t, r));
                }
            }
            for ps in &t.security.ports {
                let groups: Vec<&str> = ps.groups.iter().map(|g| t.security.group(*g).name.as_str()).collect();
                let pairs: Vec<String> = ps.allowed_address_pairs.iter().map(|a| format!("{} {}", a.ip, a.mac)).collect();
                let off = if ps.port_security_enabled { "" } else { " port security off" };
                let pairs = if pairs.is_empty() { String::new() } else { format!(" pairs [{}]", pairs.join(", ")) };
                let _ = writeln!(o, "  {:<12} [{}]{off}{pairs}", t.instance(ps.instance).name, groups.join(", "));
            }
        }
        if !t.paths.is_empty() {
            let _ = writeln!(o, "paths:");
            for p in &t.paths {
                let expect = p.expect.map(|e| format!(" (expect {e})")).unwrap_or_default();
                let _ = writeln!(o, "  {}{expect}", p.label());
            }
        }
        o
    }
}
