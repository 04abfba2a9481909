//! The twin of a deployment from dumps alone, with no topology file: what
//! `dvr collect` (or the real-Neutron capture scripts) wrote for each host is
//! read back into host plans (bridges, ports, flows, namespaces with devices,
//! routes, rules, permanent neighbours, NAT, sysctls) and endpoints
//! (instances), which [`crate::World::assemble`] turns into a twin.
//!
//! Two layouts are read, file by file, so a directory may mix them:
//! - `dvr collect`: `ovs-{bridge,port,interface}.json` (`ovs-vsctl
//!   --format=json list …`), `flows-<br>.txt`, `netns-<ns>.{addr,route,rule,neigh}.json`
//!   (`ip -j …`), `netns-<ns>.sysctl.txt`, `iptables-<ns>.txt`;
//! - the real-Neutron captures: `ovs-interfaces.txt`, `ovs-ports.txt`,
//!   `ovs-vsctl-show.txt`, `flows-<br>.txt`, `netns-<ns>.txt` (sections
//!   `### ip addr`, `### ip rule`, `### ip route (all tables)`, `### ip neigh`,
//!   `### sysctl`), `iptables-<ns>.txt`.
//!
//! What the dumps cannot say is derived the way Neutron lays it out, and
//! every such guess is reported in [`Imported::notes`]: instances are the
//! br-int ports with `external_ids:attached-mac`/`iface-id` that no namespace
//! owns, named by `vm-uuid` (else `iface-id`); their addresses come from the
//! ARP anti-spoofing flows (br-int table 24, `arp_spa`); their subnet and
//! gateway from the router port (`qr-`) whose subnet holds that address;
//! every physical bridge of the same name on every host joins one physical
//! network. Pure: the caller reads the files.

use crate::world::{Endpoint, EndpointAt, StackKind};
use dvr_model::{AgentMode, MacAddr, Role};
use dvr_openflow::{Action, Flow, parse_flow_lenient};
use dvr_plan::tables::BridgeKind;
use dvr_plan::*;
use ipnet::Ipv4Net;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// The files of one host's dump: file name → contents.
#[derive(Debug, Clone, Default)]
pub struct HostDump {
    /// Host name (the dump directory's name, or `manifest.json`'s `host`).
    pub host: String,
    /// File name → text.
    pub files: BTreeMap<String, String>,
}

/// Why dumps could not be imported. Each names the host, the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file every dump needs is absent.
    #[error(
        "host `{host}`: no {what} in the dump (looked for {files})\n    fix: collect the host with `dvr collect --out DIR` (or `dvr lab collect`) and pass that directory"
    )]
    Missing {
        /// Host.
        host: String,
        /// What is missing.
        what: String,
        /// The file names looked for.
        files: String,
    },
    /// A flow line could not be read.
    #[error(
        "host `{host}`, bridge `{bridge}` ({at}): {what}\n    flow: {text}\n    fix: the twin does not model this; remove or report the flow, or extend dvr-openflow's parser"
    )]
    Flow {
        /// Host.
        host: String,
        /// Bridge.
        bridge: String,
        /// File and line, `flows-br-int.txt line 12`.
        at: String,
        /// The whole flow line.
        text: String,
        /// What is wrong (names the token).
        what: String,
    },
    /// A file is not in the expected format.
    #[error("host `{host}`, {file}: {what}\n    fix: re-collect it with the command in the dump's manifest.json")]
    Bad {
        /// Host.
        host: String,
        /// File.
        file: String,
        /// What is wrong.
        what: String,
    },
    /// `--from` names neither an imported instance nor an address on an external subnet.
    #[error(
        "`{0}` is neither an imported instance nor an address on a subnet of a `qg-`/`fg-` gateway port; instances are: {1}\n    fix: pass an instance name, or an outside IPv4 address on an external network"
    )]
    UnknownEndpoint(String, String),
}

/// The result of an import.
#[derive(Debug, Clone)]
pub struct Imported {
    /// One plan per host (no provenance: flows come from dumps).
    pub plan: Plan,
    /// Instances found.
    pub endpoints: Vec<Endpoint>,
    /// Everything derived rather than read, and everything skipped.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default)]
struct Iface {
    ofport: Option<u32>,
    typ: String,
    peer: Option<String>,
    ext: BTreeMap<String, String>,
    /// `options` (a tunnel port's `local_ip`, `remote_ip`, `dst_port`).
    options: BTreeMap<String, String>,
}

impl Iface {
    /// The VXLAN port this interface is (`type=vxlan` with both addresses).
    fn vxlan(&self) -> Option<PortKind> {
        let ip = |k: &str| self.options.get(k).and_then(|v| v.parse().ok());
        (self.typ == "vxlan").then_some(())?;
        Some(PortKind::Vxlan {
            local_ip: ip("local_ip")?,
            remote_ip: ip("remote_ip")?,
            dst_port: self.options.get("dst_port").and_then(|v| v.parse().ok()).unwrap_or(dvr_plan::tunnel::VXLAN_UDP_PORT),
        })
    }
}

#[derive(Debug, Default)]
struct Ovs {
    /// Bridge → its ports (without the bridge's own internal port).
    bridges: Vec<(String, Vec<String>)>,
    ifaces: BTreeMap<String, Iface>,
    tags: BTreeMap<String, u16>,
    /// Port → `other_config:physical_network` (Neutron's agent sets it on br-int ports).
    physnets: BTreeMap<String, String>,
}

type Res<T> = Result<T, ImportError>;

fn bad(host: &str, file: &str, what: impl Into<String>) -> ImportError {
    ImportError::Bad { host: host.into(), file: file.into(), what: what.into() }
}

// ---------- OVSDB ----------

/// `ovs-vsctl --format=json list TABLE` → rows of heading → value.
fn ovsdb_rows(host: &str, file: &str, text: &str) -> Res<Vec<BTreeMap<String, Value>>> {
    let v: Value = serde_json::from_str(text).map_err(|e| bad(host, file, format!("not JSON: {e}")))?;
    let heads: Vec<String> = v["headings"]
        .as_array()
        .ok_or_else(|| bad(host, file, "no `headings`"))?
        .iter()
        .map(|h| h.as_str().unwrap_or_default().to_string())
        .collect();
    let data = v["data"].as_array().ok_or_else(|| bad(host, file, "no `data`"))?;
    Ok(data.iter().filter_map(|r| r.as_array()).map(|r| heads.iter().cloned().zip(r.iter().cloned()).collect()).collect())
}

/// An OVSDB atom or set as strings (`["set",[…]]`, `["uuid","…"]`, atoms).
fn ovsdb_set(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) if a.len() == 2 && a[0] == "set" => {
            a[1].as_array().map(|x| x.iter().flat_map(ovsdb_set).collect()).unwrap_or_default()
        }
        Value::Array(a) if a.len() == 2 && (a[0] == "uuid" || a[0] == "named-uuid") => vec![a[1].as_str().unwrap_or_default().to_string()],
        Value::String(s) => vec![s.clone()],
        Value::Number(n) => vec![n.to_string()],
        Value::Bool(b) => vec![b.to_string()],
        _ => vec![],
    }
}

fn ovsdb_map(v: &Value) -> BTreeMap<String, String> {
    match v {
        Value::Array(a) if a.len() == 2 && a[0] == "map" => a[1]
            .as_array()
            .map(|kv| {
                kv.iter()
                    .filter_map(|p| {
                        let p = p.as_array()?;
                        Some((ovsdb_set(&p[0]).concat(), ovsdb_set(&p[1]).concat()))
                    })
                    .collect()
            })
            .unwrap_or_default(),
        _ => BTreeMap::new(),
    }
}

fn ovs_from_json(d: &HostDump) -> Res<Option<Ovs>> {
    let (Some(b), Some(p), Some(i)) = (d.files.get("ovs-bridge.json"), d.files.get("ovs-port.json"), d.files.get("ovs-interface.json"))
    else {
        return Ok(None);
    };
    let mut o = Ovs::default();
    for r in ovsdb_rows(&d.host, "ovs-interface.json", i)? {
        let name = r.get("name").map(|v| ovsdb_set(v).concat()).unwrap_or_default();
        let ofport = r.get("ofport").and_then(|v| ovsdb_set(v).first().and_then(|x| x.parse::<i64>().ok())).filter(|n| *n >= 0);
        let options = r.get("options").map(ovsdb_map).unwrap_or_default();
        o.ifaces.insert(
            name,
            Iface {
                ofport: ofport.map(|n| n as u32),
                typ: r.get("type").map(|v| ovsdb_set(v).concat()).unwrap_or_default(),
                peer: options.get("peer").cloned(),
                ext: r.get("external_ids").map(ovsdb_map).unwrap_or_default(),
                options,
            },
        );
    }
    let mut port_by_uuid: BTreeMap<String, String> = BTreeMap::new();
    for r in ovsdb_rows(&d.host, "ovs-port.json", p)? {
        let name = r.get("name").map(|v| ovsdb_set(v).concat()).unwrap_or_default();
        if let Some(t) = r.get("tag").and_then(|v| ovsdb_set(v).first().and_then(|x| x.parse::<u16>().ok())) {
            o.tags.insert(name.clone(), t);
        }
        if let Some(pn) = r.get("other_config").map(ovsdb_map).and_then(|m| m.get("physical_network").cloned()) {
            o.physnets.insert(name.clone(), pn);
        }
        if let Some(u) = r.get("_uuid").map(|v| ovsdb_set(v).concat()) {
            port_by_uuid.insert(u, name);
        }
    }
    for r in ovsdb_rows(&d.host, "ovs-bridge.json", b)? {
        let name = r.get("name").map(|v| ovsdb_set(v).concat()).unwrap_or_default();
        let mut ports: Vec<String> = r
            .get("ports")
            .map(ovsdb_set)
            .unwrap_or_default()
            .iter()
            .filter_map(|u| port_by_uuid.get(u).cloned())
            .filter(|p| *p != name)
            .collect();
        ports.sort_by_key(|p| o.ifaces.get(p).and_then(|i| i.ofport).unwrap_or(u32::MAX));
        o.bridges.push((name, ports));
    }
    o.bridges.sort_by_key(|(n, _)| (n != "br-int", n.clone()));
    Ok(Some(o))
}

/// `{a=b, c="d e"}` as printed by `ovs-vsctl list`.
fn text_map(s: &str) -> BTreeMap<String, String> {
    let inner = s.trim().trim_start_matches('{').trim_end_matches('}');
    let mut out = BTreeMap::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut parts = Vec::new();
    for ch in inner.chars() {
        match ch {
            '"' => quoted = !quoted,
            ',' if !quoted => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    parts.push(cur);
    for p in parts {
        if let Some((k, v)) = p.trim().split_once('=') {
            out.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    out
}

/// Records of `ovs-vsctl list TABLE` (blank-line separated `key : value`).
fn text_records(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut out = vec![];
    let mut cur = BTreeMap::new();
    for l in text.lines() {
        if l.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if let Some((k, v)) = l.split_once(':') {
            cur.insert(k.trim().to_string(), v.trim().trim_matches('"').to_string());
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn ovs_from_text(d: &HostDump) -> Res<Option<Ovs>> {
    let (Some(i), Some(show)) = (d.files.get("ovs-interfaces.txt"), d.files.get("ovs-vsctl-show.txt")) else {
        return Ok(None);
    };
    let mut o = Ovs::default();
    for r in text_records(i) {
        let Some(name) = r.get("name").cloned() else { continue };
        o.ifaces.insert(
            name,
            Iface {
                ofport: r.get("ofport").and_then(|x| x.parse::<i64>().ok()).filter(|n| *n >= 0).map(|n| n as u32),
                typ: r.get("type").cloned().unwrap_or_default(),
                peer: r.get("options").map(|x| text_map(x)).and_then(|m| m.get("peer").cloned()),
                ext: r.get("external_ids").map(|x| text_map(x)).unwrap_or_default(),
                options: r.get("options").map(|x| text_map(x)).unwrap_or_default(),
            },
        );
    }
    if let Some(p) = d.files.get("ovs-ports.txt") {
        for r in text_records(p) {
            if let (Some(n), Some(t)) = (r.get("name"), r.get("tag").and_then(|t| t.parse::<u16>().ok())) {
                o.tags.insert(n.clone(), t);
            }
            if let (Some(n), Some(pn)) =
                (r.get("name"), r.get("other_config").map(|x| text_map(x)).and_then(|m| m.get("physical_network").cloned()))
            {
                o.physnets.insert(n.clone(), pn);
            }
        }
    }
    for l in show.lines() {
        let t = l.trim();
        if let Some(b) = t.strip_prefix("Bridge ") {
            o.bridges.push((b.trim_matches('"').to_string(), vec![]));
        } else if let Some(p) = t.strip_prefix("Port ") {
            let p = p.trim_matches('"').to_string();
            if let Some((b, ports)) = o.bridges.last_mut()
                && *b != p
            {
                ports.push(p);
            }
        }
    }
    for (_, ports) in &mut o.bridges {
        ports.sort_by_key(|p| o.ifaces.get(p).and_then(|i| i.ofport).unwrap_or(u32::MAX));
    }
    o.bridges.sort_by_key(|(n, _)| (n != "br-int", n.clone()));
    Ok(Some(o))
}

// ---------- namespaces ----------

#[derive(Debug, Default)]
struct NsDump {
    devs: Vec<(String, MacAddr, Vec<Ipv4Net>)>,
    routes: Vec<Route>,
    rules: Vec<Rule>,
    neigh: Vec<Neighbour>,
    sysctls: Vec<Sysctl>,
}

fn table_ref(t: &str) -> Option<TableRef> {
    match t {
        "main" | "254" => Some(TableRef::Main),
        "local" | "255" | "default" | "253" => None,
        n => n.parse().ok().map(TableRef::Id),
    }
}

fn rule_table(t: &str) -> Option<u32> {
    match t {
        "main" => Some(254),
        "local" => Some(255),
        "default" => Some(253),
        n => n.parse().ok(),
    }
}

fn net(s: &str) -> Option<Ipv4Net> {
    if s == "default" {
        return Some(Ipv4Net::default());
    }
    if s.contains(':') {
        return None;
    }
    if s.contains('/') { s.parse().ok() } else { s.parse::<Ipv4Addr>().ok().map(|a| Ipv4Net::new(a, 32).expect("32")) }
}

fn sysctl_lines(text: &str) -> Vec<Sysctl> {
    text.lines()
        .filter_map(|l| l.split_once(" = ").or_else(|| l.split_once('=')))
        .map(|(k, v)| Sysctl::new(k.trim(), v.trim()))
        .filter(|s| s.key.starts_with("net."))
        .collect()
}

/// The `netns-<ns>.txt` layout of the real-Neutron captures.
fn ns_from_text(text: &str) -> NsDump {
    let mut n = NsDump::default();
    let mut section = "";
    for l in text.lines() {
        if let Some(s) = l.strip_prefix("### ") {
            section = match s.trim() {
                "ip addr" => "addr",
                "ip rule" => "rule",
                "ip route (all tables)" => "route",
                "ip neigh" => "neigh",
                "sysctl" => "sysctl",
                _ => "",
            };
            continue;
        }
        let toks: Vec<&str> = l.split_whitespace().collect();
        match section {
            "addr" => {
                if !l.starts_with(' ') {
                    if let Some(name) = toks.get(1) {
                        let name = name.trim_end_matches(':');
                        let name = name.split('@').next().unwrap_or(name).to_string();
                        n.devs.push((name, MacAddr::ZERO, vec![]));
                    }
                } else if let Some(d) = n.devs.last_mut() {
                    match toks.first().copied() {
                        Some("link/ether") => d.1 = toks.get(1).and_then(|m| m.parse().ok()).unwrap_or(MacAddr::ZERO),
                        Some("inet") => d.2.extend(toks.get(1).and_then(|a| a.parse::<Ipv4Net>().ok())),
                        _ => {}
                    }
                }
            }
            "rule" => parse_rule_words(&mut n.rules, l),
            "route" => {
                if let Some(r) = parse_route_words(&toks) {
                    n.routes.push(r);
                }
            }
            "neigh" => {
                if toks.last() == Some(&"PERMANENT")
                    && let (Some(ip), Some(dev), Some(mac)) = (
                        toks.first().and_then(|a| a.parse::<Ipv4Addr>().ok()),
                        word_after(&toks, "dev"),
                        word_after(&toks, "lladdr").and_then(|m| m.parse().ok()),
                    )
                {
                    n.neigh.push(Neighbour { ip, mac, dev, origin: Origin::default() });
                }
            }
            "sysctl" => n.sysctls.extend(sysctl_lines(l)),
            _ => {}
        }
    }
    n.devs.retain(|d| d.0 != "lo");
    n
}

fn word_after(toks: &[&str], key: &str) -> Option<String> {
    toks.iter().position(|t| *t == key).and_then(|i| toks.get(i + 1)).map(|s| s.to_string())
}

fn parse_rule_words(rules: &mut Vec<Rule>, l: &str) {
    let Some((prio, rest)) = l.split_once(':') else { return };
    let Ok(priority) = prio.trim().parse::<u32>() else { return };
    let toks: Vec<&str> = rest.split_whitespace().collect();
    let Some(table) = word_after(&toks, "lookup").and_then(|t| rule_table(&t)) else { return };
    let selector = if let Some(dev) = word_after(&toks, "iif") {
        RuleSelector::Iif(dev)
    } else {
        match word_after(&toks, "from").as_deref() {
            Some("all") | None => return,
            Some(s) => match net(s) {
                Some(n) => RuleSelector::From(n),
                None => return,
            },
        }
    };
    rules.push(Rule { priority, selector, table, origin: Origin::default() });
}

fn parse_route_words(toks: &[&str]) -> Option<Route> {
    let first = *toks.first()?;
    if matches!(first, "local" | "broadcast" | "multicast" | "anycast" | "unreachable" | "blackhole" | "prohibit" | "throw" | "nat") {
        return None;
    }
    let dst = net(first)?;
    // `default via fe80::… dev …` is an IPv6 route: its destination looks like ours.
    let via = match word_after(toks, "via") {
        Some(v) => Some(v.parse::<Ipv4Addr>().ok()?),
        None => None,
    };
    let table = match word_after(toks, "table") {
        Some(t) => table_ref(&t)?,
        None => TableRef::Main,
    };
    Some(Route {
        table,
        dst: dst.trunc(),
        via,
        dev: word_after(toks, "dev")?,
        src: word_after(toks, "src").and_then(|v| v.parse().ok()),
        origin: Origin::default(),
    })
}

fn json_array(host: &str, file: &str, text: &str) -> Res<Vec<Value>> {
    if text.trim().is_empty() {
        return Ok(vec![]);
    }
    let v: Value = serde_json::from_str(text).map_err(|e| bad(host, file, format!("not JSON: {e}")))?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

fn s(v: &Value, k: &str) -> Option<String> {
    match &v[k] {
        Value::String(x) => Some(x.clone()),
        Value::Number(x) => Some(x.to_string()),
        _ => None,
    }
}

/// The `dvr collect` layout: `ip -j` output per namespace.
fn ns_from_json(d: &HostDump, ns: &str) -> Res<NsDump> {
    let mut n = NsDump::default();
    let f = |k: &str| format!("netns-{ns}.{k}");
    let get = |k: &str| d.files.get(&f(k)).map(String::as_str).unwrap_or("");
    for dev in json_array(&d.host, &f("addr.json"), get("addr.json"))? {
        let Some(name) = s(&dev, "ifname") else { continue };
        if name == "lo" {
            continue;
        }
        let mac = s(&dev, "address").and_then(|m| m.parse().ok()).unwrap_or(MacAddr::ZERO);
        let addrs = dev["addr_info"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|x| x["family"] == "inet")
                    .filter_map(|x| Ipv4Net::new(s(x, "local")?.parse().ok()?, x["prefixlen"].as_u64()? as u8).ok())
                    .collect()
            })
            .unwrap_or_default();
        n.devs.push((name, mac, addrs));
    }
    for r in json_array(&d.host, &f("route.json"), get("route.json"))? {
        if s(&r, "type").is_some_and(|t| t != "unicast") {
            continue;
        }
        let Some(dst) = s(&r, "dst").and_then(|x| net(&x)) else { continue };
        let table = match s(&r, "table") {
            Some(t) => match table_ref(&t) {
                Some(t) => t,
                None => continue,
            },
            None => TableRef::Main,
        };
        let Some(dev) = s(&r, "dev") else { continue };
        let via = match s(&r, "gateway") {
            Some(g) => match g.parse::<Ipv4Addr>() {
                Ok(g) => Some(g),
                Err(_) => continue,
            },
            None => None,
        };
        n.routes.push(Route {
            table,
            dst: dst.trunc(),
            via,
            dev,
            src: s(&r, "prefsrc").and_then(|g| g.parse().ok()),
            origin: Origin::default(),
        });
    }
    for r in json_array(&d.host, &f("rule.json"), get("rule.json"))? {
        let (Some(priority), Some(table)) = (r["priority"].as_u64(), s(&r, "table").and_then(|t| rule_table(&t))) else { continue };
        let selector = if let Some(dev) = s(&r, "iif") {
            RuleSelector::Iif(dev)
        } else {
            match s(&r, "src").as_deref() {
                Some("all") | None => continue,
                Some(a) => {
                    let len = r["srclen"].as_u64().unwrap_or(32) as u8;
                    match a.parse::<Ipv4Addr>().ok().and_then(|a| Ipv4Net::new(a, len).ok()) {
                        Some(n) => RuleSelector::From(n),
                        None => continue,
                    }
                }
            }
        };
        n.rules.push(Rule { priority: priority as u32, selector, table, origin: Origin::default() });
    }
    for e in json_array(&d.host, &f("neigh.json"), get("neigh.json"))? {
        let permanent = e["state"].as_array().is_some_and(|st| st.iter().any(|x| x == "PERMANENT"));
        if let (true, Some(ip), Some(mac), Some(dev)) =
            (permanent, s(&e, "dst").and_then(|x| x.parse().ok()), s(&e, "lladdr").and_then(|x| x.parse().ok()), s(&e, "dev"))
        {
            n.neigh.push(Neighbour { ip, mac, dev, origin: Origin::default() });
        }
    }
    n.sysctls = sysctl_lines(get("sysctl.txt"));
    Ok(n)
}

// ---------- iptables ----------

/// Shell-like split (double quotes group words).
fn words(l: &str) -> Vec<String> {
    let mut out = vec![];
    let mut cur = String::new();
    let mut q = false;
    for ch in l.chars() {
        match ch {
            '"' => q = !q,
            c if c.is_whitespace() && !q => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The `nat` and `raw` tables of an `iptables-save`, in the subset the twin
/// executes; rules it cannot express are skipped and reported.
pub fn parse_iptables(text: &str, notes: &mut Vec<String>, wherefrom: &str) -> Vec<IptTable> {
    let mut tables: Vec<IptTable> = vec![];
    let mut cur: Option<IptTable> = None;
    for l in text.lines() {
        if let Some(t) = l.strip_prefix('*') {
            cur = matches!(t, "nat" | "raw" | "mangle").then(|| IptTable { name: t.to_string(), chains: vec![] });
        } else if l == "COMMIT" {
            tables.extend(cur.take());
        } else if let Some(t) = cur.as_mut() {
            if let Some(c) = l.strip_prefix(':') {
                let mut it = c.split_whitespace();
                let name = it.next().unwrap_or_default().to_string();
                let builtin = it.next() != Some("-");
                t.chains.push(Chain { name, builtin, rules: vec![] });
            } else if let Some(r) = l.strip_prefix("-A ") {
                let w = words(r);
                let Some(chain) = w.first().cloned() else { continue };
                match ipt_rule(&w[1..], t) {
                    Ok(rule) => {
                        if let Some(c) = t.chains.iter_mut().find(|c| c.name == chain) {
                            c.rules.push(rule);
                        }
                    }
                    Err(why) => notes.push(format!("{wherefrom}: {} rule `-A {r}` skipped: {why}", t.name)),
                }
            }
        }
    }
    tables
}

fn ipt_rule(w: &[String], t: &IptTable) -> Result<IptRule, String> {
    let mut matches = vec![];
    let mut comment = None;
    let mut target = None;
    let mut not = false;
    let mut i = 0;
    let arg = |i: usize| w.get(i + 1).cloned().ok_or_else(|| format!("`{}` without a value", w[i]));
    while i < w.len() {
        let a = w[i].as_str();
        match a {
            "!" => {
                not = true;
                i += 1;
                continue;
            }
            "-s" => matches.push(IptMatch::Src { net: net(&arg(i)?).ok_or("bad -s")? }),
            "-d" => matches.push(IptMatch::Dst { net: net(&arg(i)?).ok_or("bad -d")? }),
            "-i" => matches.push(IptMatch::InIface { dev: arg(i)?, not }),
            "-o" => matches.push(IptMatch::OutIface { dev: arg(i)?, not }),
            "-p" if arg(i)? == "tcp" => {}
            "-m" if matches!(arg(i)?.as_str(), "tcp" | "conntrack" | "mark" | "comment") => {}
            "--dport" => matches.push(IptMatch::TcpDport { port: arg(i)?.parse().map_err(|_| "bad --dport")? }),
            "--ctstate" if arg(i)? == "DNAT" => matches.push(IptMatch::CtStateDnat { not }),
            "--mark" => {
                let v = arg(i)?;
                let (val, mask) = v.split_once('/').unwrap_or((&v, "0xffffffff"));
                let p = |x: &str| u32::from_str_radix(x.trim_start_matches("0x"), 16).map_err(|_| "bad --mark".to_string());
                matches.push(IptMatch::Mark { value: p(val)?, mask: p(mask)?, not });
            }
            "--comment" => comment = Some(arg(i)?),
            "-j" => {
                let j = arg(i)?;
                target = Some(match j.as_str() {
                    "ACCEPT" => IptTarget::Accept,
                    "SNAT" | "DNAT" | "REDIRECT" | "CT" | "MARK" => IptTarget::Accept, // refined by its option below
                    c if t.chains.iter().any(|x| x.name == c) => IptTarget::Jump { chain: c.to_string() },
                    other => return Err(format!("target {other} is not modelled")),
                });
                if j == "CT" {
                    target = None;
                }
            }
            "--to-source" => target = Some(IptTarget::Snat { to: ip_part(&arg(i)?)?, random_fully: false }),
            "--set-xmark" => {
                let v = arg(i)?;
                let (val, mask) = v.split_once('/').unwrap_or((&v, "0xffffffff"));
                let p = |x: &str| u32::from_str_radix(x.trim_start_matches("0x"), 16).map_err(|_| "bad --set-xmark".to_string());
                target = Some(IptTarget::Mark { value: p(val)?, mask: p(mask)? });
            }
            "--to-destination" => target = Some(IptTarget::Dnat { to: ip_part(&arg(i)?)? }),
            "--to-ports" => target = Some(IptTarget::Redirect { port: arg(i)?.parse().map_err(|_| "bad --to-ports")? }),
            "--notrack" => {
                target = Some(IptTarget::NoTrack);
                i += 1;
                not = false;
                continue;
            }
            "--random-fully" => {
                if let Some(IptTarget::Snat { random_fully, .. }) = target.as_mut() {
                    *random_fully = true;
                }
                i += 1;
                continue;
            }
            "--random" | "--persistent" => {
                i += 1;
                continue;
            }
            other => return Err(format!("`{other}` is not modelled")),
        }
        not = false;
        i += 2;
    }
    Ok(IptRule { matches, target: target.ok_or("no target")?, comment, origin: Origin::default() })
}

fn ip_part(s: &str) -> Result<Ipv4Addr, String> {
    s.split([':', '-']).next().unwrap_or(s).parse().map_err(|_| format!("bad address `{s}`"))
}

// ---------- flows ----------

fn read_flows(
    host: &str,
    bridge: &str,
    file: &str,
    text: &str,
    names: &BTreeMap<u32, String>,
    notes: &mut Vec<String>,
) -> Res<Vec<Arc<Flow>>> {
    let mut out = vec![];
    let name = |p: &str| -> String { p.parse::<u32>().ok().and_then(|n| names.get(&n).cloned()).unwrap_or_else(|| p.to_string()) };
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with("OFPST_FLOW") || l.starts_with("NXST_FLOW") {
            continue;
        }
        let (mut f, ignored) = parse_flow_lenient(l).map_err(|e| ImportError::Flow {
            host: host.into(),
            bridge: bridge.into(),
            at: format!("{file} line {}", i + 1),
            text: l.to_string(),
            what: format!("{} `{}`", e.what, e.text),
        })?;
        if !ignored.is_empty() {
            notes.push(format!("{host} {bridge}: flow `{f}` matches on {} which the twin ignores", ignored.join(",")));
        }
        if let Some(p) = f.matches.in_port.take() {
            f.matches.in_port = Some(name(&p));
        }
        for a in &mut f.actions {
            if let Action::Output(p) = a {
                *p = name(p);
            }
        }
        f.builder = "dump".into();
        f.reason = format!("{file}:{}", i + 1).into();
        out.push(Arc::new(f));
    }
    out.sort_by(|a, b| a.table.cmp(&b.table).then(b.priority.cmp(&a.priority)));
    Ok(out)
}

// ---------- the import ----------

/// Name each physical bridge's physical network the way Neutron does, when
/// the dump says it: br-int's table-0 flow from the bridge's patch port gives
/// frames a local VLAN; a br-int port with that tag carries
/// `other_config:physical_network`. Without it the bridge's name stands for
/// its network (the same bridge name on every host is one network).
fn name_physnets(bridges: &mut [Bridge], physnets: &BTreeMap<String, String>) {
    let Some(int) = bridges.iter().find(|b| b.kind == BridgeKind::Int) else { return };
    let mut found: Vec<(String, String)> = vec![];
    for b in bridges.iter().filter(|b| b.kind == BridgeKind::Phys) {
        let Some(patch) = int.ports.iter().find(|p| matches!(&p.kind, PortKind::Patch { peer } if b.ports.iter().any(|x| &x.name == peer)))
        else {
            continue;
        };
        let lvids: BTreeSet<u16> = int
            .flows
            .iter()
            .filter(|f| f.table.0 == 0 && f.matches.in_port.as_deref() == Some(patch.name.as_str()))
            .flat_map(|f| f.actions.iter().filter_map(|a| if let Action::ModVlanVid(v) = a { Some(*v) } else { None }))
            .collect();
        if let Some(pn) = int.ports.iter().filter(|p| p.tag.is_some_and(|t| lvids.contains(&t))).find_map(|p| physnets.get(&p.name)) {
            found.push((b.name.clone(), pn.clone()));
        }
    }
    for (b, pn) in found {
        if let Some(br) = bridges.iter_mut().find(|x| x.name == b) {
            br.physnet = Some(pn);
        }
    }
}

/// The prefix and gateway of the subnet holding `ip`, from a router port.
fn subnet_of(plans: &[HostPlan], host: &str, ip: Ipv4Addr) -> Option<(Ipv4Net, Option<Ipv4Addr>)> {
    let mut best = None;
    for hp in plans {
        for ns in &hp.namespaces {
            for d in &ns.devices {
                for a in &d.addrs {
                    if a.trunc().contains(&ip) && a.prefix_len() < 32 {
                        let gw = (ns.kind == NamespaceKind::Qrouter && d.name.starts_with("qr-")).then_some(a.addr());
                        let rank = (gw.is_some(), hp.host == host);
                        if best.as_ref().is_none_or(|(r, _, _)| rank > *r) {
                            best = Some((rank, *a, gw));
                        }
                    }
                }
            }
        }
    }
    best.map(|(_, a, g)| (Ipv4Net::new(ip, a.prefix_len()).expect("prefix"), g))
}

fn ns_kind(name: &str) -> Option<NamespaceKind> {
    Some(match name.split('-').next()? {
        "qrouter" => NamespaceKind::Qrouter,
        "snat" => NamespaceKind::Snat,
        "fip" => NamespaceKind::Fip,
        "qdhcp" => NamespaceKind::Qdhcp,
        _ => return None,
    })
}

/// Import the dumps of several hosts.
pub fn import(dumps: &[HostDump]) -> Result<Imported, ImportError> {
    let mut notes = vec![];
    let mut plans = vec![];
    let mut instances: Vec<(String, String, String, MacAddr)> = vec![]; // host, instance, port, mac
    for d in dumps {
        let ovs = match ovs_from_json(d)? {
            Some(o) => o,
            None => ovs_from_text(d)?.ok_or_else(|| ImportError::Missing {
                host: d.host.clone(),
                what: "Open vSwitch tables".into(),
                files: "ovs-bridge.json + ovs-port.json + ovs-interface.json, or ovs-interfaces.txt + ovs-vsctl-show.txt".into(),
            })?,
        };
        // Namespaces.
        let mut ns_names: BTreeSet<String> = BTreeSet::new();
        for f in d.files.keys() {
            if let Some(rest) = f.strip_prefix("netns-") {
                let ns = rest.strip_suffix(".txt").or_else(|| rest.split_once('.').map(|x| x.0)).unwrap_or(rest);
                let ns = ns.split('.').next().unwrap_or(ns);
                if ns_kind(ns).is_some() {
                    ns_names.insert(ns.to_string());
                }
            }
        }
        let mut namespaces = vec![];
        for ns in &ns_names {
            let dump = match d.files.get(&format!("netns-{ns}.txt")) {
                Some(t) => ns_from_text(t),
                None => ns_from_json(d, ns)?,
            };
            let mut sysctls = dump.sysctls.clone();
            let kind = ns_kind(ns).expect("filtered");
            let mut devices = vec![];
            for (name, mac, addrs) in &dump.devs {
                let link = if let Some(id) = name.strip_prefix("rfp-") {
                    DeviceLink::Veth { peer: format!("fpr-{id}"), peer_namespace: String::new() }
                } else if let Some(id) = name.strip_prefix("fpr-") {
                    DeviceLink::Veth { peer: format!("rfp-{id}"), peer_namespace: String::new() }
                } else {
                    let br = ovs.bridges.iter().find(|(_, ps)| ps.contains(name)).map(|b| b.0.clone()).unwrap_or_else(|| "br-int".into());
                    DeviceLink::Ovs { bridge: br }
                };
                if kind == NamespaceKind::Fip && name.starts_with("fg-") {
                    let key = format!("net.ipv4.conf.{name}.proxy_arp");
                    if !sysctls.iter().any(|s| s.key == key) {
                        notes.push(format!("{} {ns}: the dump has no {key}; assumed 1, as Neutron's FIP namespace sets it", d.host));
                        sysctls.push(Sysctl::new(key, 1));
                    }
                }
                devices.push(Device { name: name.clone(), mac: *mac, addrs: addrs.clone(), link });
            }
            let iptables = match d.files.get(&format!("iptables-{ns}.txt")) {
                Some(t) => parse_iptables(t, &mut notes, &format!("{} {ns}", d.host)),
                None => {
                    notes.push(format!("{} {ns}: no iptables-{ns}.txt; no NAT there", d.host));
                    vec![]
                }
            };
            // Provenance of imported items: the dump file they were read from.
            let text_file = d.files.contains_key(&format!("netns-{ns}.txt"));
            let from = |k: &str| Origin::dump(if text_file { format!("netns-{ns}.txt") } else { format!("netns-{ns}.{k}.json") });
            let mut dump = dump;
            dump.routes.iter_mut().for_each(|r| r.origin = from("route"));
            dump.rules.iter_mut().for_each(|r| r.origin = from("rule"));
            dump.neigh.iter_mut().for_each(|r| r.origin = from("neigh"));
            let mut iptables = iptables;
            for r in iptables.iter_mut().flat_map(|t| t.chains.iter_mut()).flat_map(|c| c.rules.iter_mut()) {
                r.origin = Origin::dump(format!("iptables-{ns}.txt"));
            }
            namespaces.push(Namespace {
                name: ns.clone(),
                kind,
                serves: ns.split_once('-').map(|x| x.1.to_string()).unwrap_or_default(),
                devices,
                routes: dump.routes,
                rules: dump.rules,
                neighbours: dump.neigh.into(),
                iptables,
                sysctls,
                dhcp: None,
            });
        }
        // Veth peers: the namespace of this host holding the peer device.
        let where_dev: BTreeMap<String, String> =
            namespaces.iter().flat_map(|n| n.devices.iter().map(move |x| (x.name.clone(), n.name.clone()))).collect();
        for n in &mut namespaces {
            for dev in &mut n.devices {
                if let DeviceLink::Veth { peer, peer_namespace } = &mut dev.link {
                    *peer_namespace = where_dev.get(peer).cloned().unwrap_or_default();
                }
            }
        }
        // Bridges.
        let mut bridges = vec![];
        for (bname, ports) in &ovs.bridges {
            let names: BTreeMap<u32, String> = ports.iter().filter_map(|p| Some((ovs.ifaces.get(p)?.ofport?, p.clone()))).collect();
            let file = format!("flows-{bname}.txt");
            let flows = match d.files.get(&file) {
                Some(t) => read_flows(&d.host, bname, &file, t, &names, &mut notes)?,
                None => {
                    return Err(ImportError::Missing { host: d.host.clone(), what: format!("flows of bridge {bname}"), files: file });
                }
            };
            let tunnels = ports.iter().any(|p| ovs.ifaces.get(p).is_some_and(|i| i.typ == "vxlan"));
            let kind = match bname.as_str() {
                "br-int" => BridgeKind::Int,
                "br-tun" => BridgeKind::Tun,
                _ if tunnels => BridgeKind::Tun,
                _ => BridgeKind::Phys,
            };
            let mut bports = vec![];
            for p in ports {
                let i = ovs.ifaces.get(p).cloned().unwrap_or_default();
                let mac = i.ext.get("attached-mac").and_then(|m| m.parse().ok());
                let pk = if i.typ == "patch" {
                    PortKind::Patch { peer: i.peer.clone().unwrap_or_default() }
                } else if let Some(v) = i.vxlan() {
                    v
                } else if let Some(ns) = where_dev.get(p) {
                    PortKind::Service { namespace: ns.clone() }
                } else if kind == BridgeKind::Int && (mac.is_some() || i.ext.contains_key("iface-id")) {
                    let name = i.ext.get("vm-uuid").or_else(|| i.ext.get("iface-id")).cloned().unwrap_or_else(|| p.clone());
                    if let Some(m) = mac {
                        instances.push((d.host.clone(), name.clone(), p.clone(), m));
                    }
                    PortKind::Vif { instance: name }
                } else {
                    PortKind::Nic
                };
                bports.push(BridgePort {
                    name: p.clone(),
                    kind: pk,
                    tag: ovs.tags.get(p).copied(),
                    iface_id: i.ext.get("iface-id").cloned(),
                    mac,
                    ofport: None,
                });
            }
            bridges.push(Bridge {
                name: bname.clone(),
                kind,
                physnet: (kind == BridgeKind::Phys).then(|| bname.clone()),
                ports: bports,
                flows,
            });
        }
        name_physnets(&mut bridges, &ovs.physnets);
        let is_network = namespaces.iter().any(|n| n.kind == NamespaceKind::Snat);
        let dvr_mac = bridges.iter().find(|b| b.kind == BridgeKind::Int).and_then(|b| {
            b.flows.iter().find_map(|f| {
                (f.table.0 == 0
                    && f.matches.proto.is_none()
                    && f.actions.iter().any(|a| matches!(a, Action::GotoTable(t) | Action::Resubmit(t) if t.0 == 4)))
                .then_some(f.matches.dl_dst)
                .flatten()
            })
        });
        plans.push(HostPlan {
            host: d.host.clone(),
            role: if is_network { Role::Network } else { Role::Compute },
            agent_mode: Some(if is_network { AgentMode::DvrSnat } else { AgentMode::Dvr }),
            dvr_mac,
            sysctls: d.files.get("sysctl.txt").map(|t| sysctl_lines(t)).unwrap_or_default(),
            bridges,
            namespaces,
        });
    }
    // Instances: address from the ARP anti-spoofing flow of their port.
    let mut endpoints = vec![];
    for (host, name, port, mac) in instances {
        let hp = plans.iter().find(|h| h.host == host).expect("own host");
        let ip = hp.bridges.iter().filter(|b| b.kind == BridgeKind::Int).flat_map(|b| b.flows.iter()).find_map(|f| {
            (f.matches.proto == Some(dvr_openflow::Proto::Arp) && f.matches.in_port.as_deref() == Some(port.as_str()))
                .then_some(f.matches.arp_spa)
                .flatten()
                .filter(|m| m.prefix == 32)
                .map(|m| m.addr)
        });
        let Some(ip) = ip else {
            notes.push(format!("{host}: instance {name} (port {port}) has no ARP anti-spoofing flow with its address; not traceable"));
            continue;
        };
        let (addr, gateway) = subnet_of(&plans, &host, ip).unwrap_or_else(|| {
            notes.push(format!("{host}: no router or DHCP port on the subnet of {name} ({ip}); assumed /24 without a gateway"));
            (Ipv4Net::new(ip, 24).expect("24"), None)
        });
        // DHCP option 121 is not in any dump: with `force_metadata` Neutron's DHCP agent
        // pushes 169.254.169.254/32 via its port, so the qdhcp namespace holding both
        // the metadata address and one on this subnet stands for it.
        let metadata: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
        let mut routes = vec![];
        for n in plans.iter().flat_map(|h| h.namespaces.iter()).filter(|n| n.kind == NamespaceKind::Qdhcp) {
            let addrs: Vec<Ipv4Net> = n.devices.iter().flat_map(|d| d.addrs.iter().copied()).collect();
            if addrs.iter().any(|a| a.addr() == metadata)
                && let Some(port) = addrs.iter().find(|a| a.addr() != metadata && a.trunc().contains(&ip))
            {
                routes.push((Ipv4Net::new(metadata, 32).expect("32"), port.addr()));
                notes.push(format!(
                    "{host}: instance {name}: metadata route 169.254.169.254 via {} assumed (DHCP option 121 of {})",
                    port.addr(),
                    n.name
                ));
                break;
            }
        }
        endpoints.push(Endpoint { name, host, kind: StackKind::Instance, mac, addr, gateway, routes, at: EndpointAt::Instance });
    }
    endpoints.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Imported { plan: Plan { topology: "imported".into(), profile: Profile::Current, hosts: plans }, endpoints, notes })
}

impl Imported {
    /// Add a machine outside the cloud with address `ip`, on the physical
    /// network of the external subnet holding it: found from the `qg-`/`fg-`
    /// port on that subnet, its local VLAN on br-int, the patch port whose
    /// table-0 flow gives frames that VLAN, and the physical bridge's table-2
    /// flow (untagged or the segment's VLAN on the wire). Returns its name.
    pub fn add_outside(&mut self, ip: Ipv4Addr) -> Result<String, ImportError> {
        let name = ip.to_string();
        if self.endpoints.iter().any(|e| e.name == name) {
            return Ok(name);
        }
        let unknown =
            || ImportError::UnknownEndpoint(name.clone(), self.endpoints.iter().map(|e| e.name.clone()).collect::<Vec<_>>().join(", "));
        for hp in &self.plan.hosts {
            for ns in hp.namespaces.iter().filter(|n| matches!(n.kind, NamespaceKind::Fip | NamespaceKind::Snat)) {
                for d in ns.devices.iter().filter(|d| d.name.starts_with("fg-") || d.name.starts_with("qg-")) {
                    let Some(a) = d.addrs.iter().find(|a| a.trunc().contains(&ip)) else { continue };
                    let Some(int) = hp.bridges.iter().find(|b| b.kind == BridgeKind::Int) else { continue };
                    let Some(tag) = int.ports.iter().find(|p| p.name == d.name).and_then(|p| p.tag) else { continue };
                    let Some(patch) = int.flows.iter().find_map(|f| {
                        (f.table.0 == 0 && f.actions.contains(&Action::ModVlanVid(tag))).then(|| f.matches.in_port.clone()).flatten()
                    }) else {
                        continue;
                    };
                    let Some(PortKind::Patch { peer }) = int.ports.iter().find(|p| p.name == patch).map(|p| p.kind.clone()) else {
                        continue;
                    };
                    let Some(phys) = hp.bridges.iter().find(|b| b.ports.iter().any(|p| p.name == peer)) else { continue };
                    let vlan = phys.flows.iter().find_map(|f| {
                        (f.matches.in_port.as_deref() == Some(peer.as_str())
                            && f.matches.dl_vlan == Some(dvr_openflow::VlanMatch::Tagged(tag)))
                        .then(|| {
                            f.actions.iter().find_map(|x| match x {
                                Action::ModVlanVid(v) => Some(Some(*v)),
                                Action::StripVlan => Some(None),
                                _ => None,
                            })
                        })
                        .flatten()
                    });
                    let Some(vlan) = vlan else { continue };
                    let gateway = ns.routes.iter().find(|r| r.dst.prefix_len() == 0 && r.dev == d.name).and_then(|r| r.via);
                    let o = u32::from(ip).to_be_bytes();
                    self.endpoints.push(Endpoint {
                        name: name.clone(),
                        host: "external".into(),
                        kind: StackKind::ExternalHost,
                        mac: MacAddr([0x02, 0xee, o[0], o[1], o[2], o[3]]),
                        addr: Ipv4Net::new(ip, a.prefix_len()).expect("prefix"),
                        gateway,
                        routes: vec![],
                        at: EndpointAt::Outside { physnet: phys.physnet.clone().unwrap_or_else(|| phys.name.clone()), vlan },
                    });
                    self.notes.push(format!(
                        "outside machine {ip} placed on physical network {} ({}), MAC {}",
                        phys.physnet.as_deref().unwrap_or(&phys.name),
                        vlan.map_or("untagged".to_string(), |v| format!("VLAN {v}")),
                        self.endpoints.last().expect("pushed").mac
                    ));
                    return Ok(name);
                }
            }
        }
        Err(unknown())
    }

    /// For a destination address: add an outside machine there when the
    /// address is on an external subnet and nothing in the cloud owns it (no
    /// device has it, no host route points at it as a floating IP does).
    pub fn add_outside_destination(&mut self, ip: Ipv4Addr) -> Option<String> {
        let owned = self.endpoints.iter().any(|e| e.addr.addr() == ip)
            || self.plan.hosts.iter().flat_map(|h| h.namespaces.iter()).any(|n| {
                n.devices.iter().any(|d| d.addrs.iter().any(|a| a.addr() == ip))
                    || n.routes.iter().any(|r| r.dst.prefix_len() == 32 && r.dst.addr() == ip)
            });
        if owned { None } else { self.add_outside(ip).ok() }
    }

    /// Add one outside machine for checks that need the outside world: the
    /// highest free address of the first external subnet (that of a `qg-` or
    /// `fg-` port). `None` when the deployment has no external network.
    pub fn add_default_outside(&mut self) -> Option<String> {
        let subnets: Vec<Ipv4Net> = self
            .plan
            .hosts
            .iter()
            .flat_map(|h| h.namespaces.iter())
            .flat_map(|n| n.devices.iter())
            .filter(|d| d.name.starts_with("qg-") || d.name.starts_with("fg-"))
            .flat_map(|d| d.addrs.iter().map(|a| a.trunc()))
            .collect();
        let net = subnets.into_iter().min()?;
        let hosts: Vec<Ipv4Addr> = net.hosts().collect();
        hosts.into_iter().rev().take(64).find_map(|ip| self.add_outside_destination(ip))
    }

    /// The twin of the imported deployment.
    pub fn world(&self) -> crate::World {
        crate::World::assemble(&self.plan, &self.endpoints)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tunnel port's options, as `ovs-vsctl list interface` prints them
    /// and as OVSDB JSON holds them, give the plan's `PortKind::Vxlan`.
    #[test]
    fn vxlan_interfaces_become_tunnel_ports() {
        let want = PortKind::Vxlan { local_ip: "172.16.0.2".parse().unwrap(), remote_ip: "172.16.0.3".parse().unwrap(), dst_port: 4789 };
        let text = text_map(r#"{df_default="true", in_key=flow, local_ip="172.16.0.2", out_key=flow, remote_ip="172.16.0.3"}"#);
        let i = Iface { typ: "vxlan".into(), options: text, ..Iface::default() };
        assert_eq!(i.vxlan(), Some(want.clone()));
        let json: Value =
            serde_json::from_str(r#"["map",[["dst_port","4789"],["key","flow"],["local_ip","172.16.0.2"],["remote_ip","172.16.0.3"]]]"#)
                .unwrap();
        let i = Iface { typ: "vxlan".into(), options: ovsdb_map(&json), ..Iface::default() };
        assert_eq!(i.vxlan(), Some(want));
        // Not a tunnel: another type, or a remote_ip=flow port (no fixed peer).
        assert_eq!(Iface { typ: "patch".into(), ..i.clone() }.vxlan(), None);
        let mut flow = i.clone();
        flow.options.insert("remote_ip".into(), "flow".into());
        assert_eq!(flow.vxlan(), None);
    }
}
