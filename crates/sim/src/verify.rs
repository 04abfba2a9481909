//! `dvr verify`: the invariants of a DVR deployment, checked on the twin of
//! a plan (from a topology file) or of imported dumps. Each invariant gets a
//! verdict; each violation names the offending or missing item, with its
//! provenance when the item is a planned one (builder and reason, or the
//! dump file and line it was read from), and, where a packet shows it, the
//! counterexample trace: the hops of the packet up to where it dies or leaks.

use crate::trace::{Fate, HopKind, Lineage, Step, Trace, TraceRequest, Verdict, reach, trace, warm_up};
use crate::world::{Endpoint, StackKind, World};
use crate::{L4, render};
use dvr_model::MacAddr;
use dvr_openflow::{Action, Flow, Proto};
use dvr_plan::tables::BridgeKind;
use dvr_plan::{HostPlan, NamespaceKind, Plan, PortKind};
use ipnet::Ipv4Net;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// Neutron's link-local pool for `rfp-`/`fpr-` pairs (`FIP_LL_SUBNET`, 169.254.64.0/18) in /31s.
pub const LINK_LOCAL_PAIRS: usize = 1 << 13;
/// Neutron's floating-IP rule priorities (`FIP_PR_START` 32768 … `FIP_PR_END`, 40,000 of them).
pub const FIP_RULE_PRIORITIES: usize = 40_000;

/// One violation of an invariant.
#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    /// What is wrong, in one sentence.
    pub what: String,
    /// The missing or offending item (a flow, route, rule, device …).
    pub item: String,
    /// Where the item comes from: `STAGE: reason [builder file:line]` for
    /// planned items, `dump: file:line` for imported ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provenance: Option<String>,
    /// The counterexample: the packet's hops to where it died or leaked.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trace: Vec<String>,
}

/// The verdict on one invariant.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Invariant id, e.g. `gateway-arp-contained`.
    pub invariant: &'static str,
    /// Whether it holds.
    pub holds: bool,
    /// What was checked (counts, pool use).
    pub checked: String,
    /// Violations (empty when it holds).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
}

/// One cell of the reachability matrix.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// Sender.
    pub from: String,
    /// Destination name (instance, outside machine or `fip:<ip>`).
    pub to: String,
    /// Expected reachable (routed) or isolated (unrouted).
    pub expect: bool,
    /// Delivered.
    pub reached: bool,
    /// Why the security groups denied it, when they did (the deciding table
    /// and the packet's conntrack state): expected under the groups, so not
    /// a violation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denied_by: Option<String>,
}

/// Everything `verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// One verdict per invariant.
    pub checks: Vec<Check>,
    /// The reachability matrix (every pair traced).
    pub matrix: Vec<Cell>,
}

impl Report {
    /// Whether every invariant holds.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.holds)
    }
}

fn check(invariant: &'static str, checked: String, violations: Vec<Violation>) -> Check {
    Check { invariant, holds: violations.is_empty(), checked, violations }
}

/// A flow and where it came from, for reports.
/// A flow and its provenance: `STAGE: reason [builder location]` for planned
/// flows, `dump: FILE:LINE` for imported ones.
fn flow_item(host: &str, bridge: &str, kind: BridgeKind, f: &Flow) -> (String, Option<String>) {
    let prov = match &*f.builder {
        "" => None,
        "dump" => Some(format!("dump: {}", f.reason)),
        b => {
            let stage = dvr_plan::tables::lookup(kind, f.table).map_or_else(|| format!("table {}", f.table), |t| t.name.to_string());
            Some(format!("{stage}: {} [{b}]", f.reason))
        }
    };
    (format!("{host} {bridge}: {f}"), prov)
}

/// The hops that carried the traced packet to its end (delivery or drop),
/// one line each, plus the verdict.
fn counterexample(t: &Trace) -> Vec<String> {
    let end = t.hops.iter().rposition(|h| h.fate.is_some() && h.packet.proto != "arp").or_else(|| t.hops.len().checked_sub(1));
    let mut out = vec![];
    if let Some(end) = end {
        let label = &t.hops[end].copy;
        for h in t.hops[..=end].iter().filter(|h| h.copy.is_ancestor_of(label) && h.packet.proto != "arp") {
            out.push(format!("{} {}: {}{}", h.host, h.where_, h.step, h.fate.map(|f| format!("   [{f}]")).unwrap_or_default()));
        }
    }
    out.push(render::verdict_line(t));
    out
}

/// The host whose bridge put copy `copy` on the wire: the last OpenFlow hop
/// before it in the copy's lineage.
/// Whether a wire hop is a VXLAN crossing of the underlay (the frame left
/// its host by br-tun, not by a physical bridge).
fn tunnelled(h: &crate::trace::Hop) -> bool {
    matches!(h.step, crate::trace::Step::Tunnel { .. })
}

fn sender_host(before: &[crate::trace::Hop], copy: &Lineage) -> String {
    before.iter().rev().find(|x| x.kind == HopKind::Openflow && x.copy.is_ancestor_of(copy)).map(|x| x.host.to_string()).unwrap_or_default()
}

/// What a failed trace points at: for a packet that died in a bridge on a
/// catch-all drop or a table miss, the flow that is missing there; else the
/// drop reason (of the reply when the request got through).
/// Also returns the provenance of the flow that dropped the packet (its
/// stage reason and builder, or the dump line it was read from).
fn why_item_and_provenance(t: &Trace) -> (String, Option<String>) {
    let (t, dir) = match (&t.verdict, &t.reply) {
        (Verdict::Delivered { .. }, Some(r)) if !r.verdict.is_delivered() => (&**r, "reply: "),
        (Verdict::Delivered { to }, _) => return (format!("delivered to {to}"), None),
        _ => (t, ""),
    };
    let provenance = t
        .hops
        .iter()
        .rev()
        .find(|h| h.fate == Some(Fate::Dropped) && h.packet.proto != "arp")
        .and_then(|h| h.why())
        .map(|w| if w.ends_with("[dump]") { format!("dump: {}", w.trim_end_matches(" [dump]")) } else { w });
    let missing = t.hops.iter().rev().find(|h| h.fate == Some(Fate::Dropped) && h.kind == HopKind::Openflow && h.packet.proto != "arp").and_then(|h| {
        // A catch-all drop (a flow matching anything whose only action is drop) or a table miss.
        let table = match &h.step {
            Step::Table { table, flow, .. } if flow.match_string().is_empty() && flow.actions == [dvr_openflow::Action::Drop] => *table,
            Step::Miss { table, .. } => *table,
            _ => return None,
        };
        Some({
            let p = &h.packet;
            let vlan = p.vlan.map_or("untagged".to_string(), |v| format!("VLAN {v}"));
            format!(
                "{dir}missing: a flow in {} {} table {table} for this packet ({} {} → {}, dst MAC {}, {vlan}); only the table's catch-all drop matched",
                h.host, h.where_, p.proto, p.ip_src, p.ip_dst, p.eth_dst
            )
        })
    });
    (missing.unwrap_or_else(|| format!("{dir}{}", t.verdict.drop_reason().unwrap_or_default())), provenance)
}

fn req_l4(from: &str, to: Ipv4Addr, l4: L4) -> TraceRequest {
    TraceRequest { from: from.to_string(), to, l4, spoof_ip: None, spoof_mac: None }
}

/// `tcp 22`, `udp 53`, `icmp`.
fn l4_label(l4: L4) -> String {
    match l4 {
        L4::Icmp { .. } => "icmp".into(),
        L4::Tcp { dport, .. } => format!("tcp {dport}"),
        L4::Udp { dport, .. } => format!("udp {dport}"),
    }
}

/// The firewall decision that dropped a trace (request or reply), if one did.
fn denied_by(t: &Trace) -> Option<String> {
    crate::firewall::decisions(t)
        .into_iter()
        .find(|d| matches!(d.decision, crate::firewall::Decision::Dropped { .. }))
        .map(|d| d.to_string())
}

/// Whether the trace (request and reply) reached `want` and came back.
fn round_trip(t: &Trace) -> bool {
    t.round_trip()
}

/// The routers (qrouter namespace names) with a `qr-` port on each subnet.
fn routers_by_subnet(plan: &Plan) -> BTreeMap<Ipv4Net, BTreeSet<String>> {
    let mut m: BTreeMap<Ipv4Net, BTreeSet<String>> = BTreeMap::new();
    for n in plan.hosts.iter().flat_map(|h| h.namespaces.iter()).filter(|n| n.kind == NamespaceKind::Qrouter) {
        for d in n.devices.iter().filter(|d| d.name.starts_with("qr-")) {
            for a in &d.addrs {
                m.entry(a.trunc()).or_default().insert(n.name.clone());
            }
        }
    }
    m
}

/// Floating IPs: those a fip namespace routes to a router (`FIP/32 via
/// fpr-`), with the fixed IP when a qrouter DNAT rule names it.
fn floating_ips(plan: &Plan) -> BTreeMap<Ipv4Addr, Option<Ipv4Addr>> {
    let mut m = BTreeMap::new();
    for n in plan.hosts.iter().flat_map(|h| h.namespaces.iter()) {
        if n.kind == NamespaceKind::Fip {
            for r in n.routes.iter().filter(|r| r.dst.prefix_len() == 32 && r.dev.starts_with("fpr-")) {
                m.entry(r.dst.addr()).or_insert(None);
            }
        }
        if n.kind == NamespaceKind::Qrouter {
            for r in n.iptables.iter().flat_map(|t| t.chains.iter()).flat_map(|c| c.rules.iter()) {
                if let dvr_plan::IptTarget::Dnat { to } = r.target
                    && let Some(dvr_plan::IptMatch::Dst { net }) = r.matches.iter().find(|m| matches!(m, dvr_plan::IptMatch::Dst { .. }))
                {
                    m.insert(net.addr(), Some(to));
                }
            }
        }
    }
    m
}

/// The qrouter a fip namespace hands a floating IP to: (host, qrouter
/// namespace, its `rfp-` device, the origin of the fip namespace's route).
fn fip_router(plan: &Plan, fip: Ipv4Addr) -> Option<(String, String, String, String)> {
    for h in &plan.hosts {
        for n in h.namespaces.iter().filter(|n| n.kind == NamespaceKind::Fip) {
            for r in n.routes.iter().filter(|r| r.dst.prefix_len() == 32 && r.dst.addr() == fip) {
                let rfp = r.dev.replacen("fpr-", "rfp-", 1);
                if let Some(q) = h.namespaces.iter().find(|q| q.kind == NamespaceKind::Qrouter && q.device(&rfp).is_some()) {
                    return Some((h.host.clone(), q.name.clone(), rfp, r.origin.to_string()));
                }
            }
        }
    }
    None
}

fn int_bridge(hp: &HostPlan) -> Option<&dvr_plan::Bridge> {
    hp.bridges.iter().find(|b| b.kind == BridgeKind::Int)
}

/// Options of a verification.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Trace at most this many ordered instance pairs (0: all).
    pub max_pairs: usize,
    /// The packet the matrix sends (`None`: ICMP echo). Under security
    /// groups, e.g. TCP to port 22 asks "who may ssh to whom".
    pub l4: Option<L4>,
}

/// Check every invariant.
pub fn verify(plan: &Plan, endpoints: &[Endpoint], opts: &Options) -> Report {
    let l4 = opts.l4.unwrap_or(L4::Icmp { reply: false, id: 7 });
    let req = |from: &str, to: Ipv4Addr| req_l4(from, to, l4);
    let mut base = World::assemble(plan, endpoints);
    warm_up(&mut base);
    let instances: Vec<&Endpoint> = endpoints.iter().filter(|e| e.kind == StackKind::Instance).collect();
    let outside: Vec<&Endpoint> = endpoints.iter().filter(|e| e.kind == StackKind::ExternalHost).collect();
    let routers = routers_by_subnet(plan);
    let fips = floating_ips(plan);
    let gw_macs: BTreeMap<MacAddr, String> = plan
        .hosts
        .iter()
        .flat_map(|h| h.namespaces.iter().filter(|n| n.kind == NamespaceKind::Qrouter).flat_map(|n| n.devices.iter()))
        .filter(|d| d.name.starts_with("qr-"))
        .map(|d| (d.mac, format!("{} ({})", d.name, d.addrs.first().map(|a| a.addr().to_string()).unwrap_or_default())))
        .collect();
    let mut checks = vec![];

    // 1. DVR MACs unique, and every host knows every other host's.
    let mut by_mac: BTreeMap<MacAddr, Vec<String>> = BTreeMap::new();
    for h in &plan.hosts {
        if let Some(m) = h.dvr_mac {
            by_mac.entry(m).or_default().push(h.host.clone());
        }
    }
    let mut v = vec![];
    for (m, hs) in by_mac.iter().filter(|(_, hs)| hs.len() > 1) {
        v.push(Violation {
            what: format!("DVR MAC {m} is used by {} hosts", hs.len()),
            item: format!("hosts {}", hs.join(", ")),
            provenance: Some("the `dvr_host_macs` table of Neutron's server (or the topology's `dvr_mac`)".into()),
            trace: vec![],
        });
    }
    for h in &plan.hosts {
        let Some(int) = int_bridge(h) else { continue };
        for (m, owners) in by_mac.iter().filter(|(m, _)| Some(**m) != h.dvr_mac) {
            let known = int.flows.iter().any(|f| f.table.0 == 0 && f.matches.dl_src == Some(*m));
            if !known {
                v.push(Violation {
                    what: format!("{} does not accept routed frames from {} (DVR MAC {m})", h.host, owners.join(", ")),
                    item: format!("missing: {} br-int table 0 flow in_port=<patch>,dl_src={m} → table 2 (DVR_TO_SRC_MAC)", h.host),
                    provenance: Some("the OVS agent's DVR-MAC flows (int_dvr_flows), one per other host's DVR MAC".into()),
                    trace: vec![],
                });
            }
        }
    }
    checks.push(check("dvr-macs-unique", format!("{} DVR MACs on {} hosts", by_mac.len(), plan.hosts.len()), v));

    // 2 + 4. Reachability, and no gateway MAC on the wire on routed paths.
    let mut matrix = vec![];
    let mut reach_v = vec![];
    let mut wire_v = vec![];
    let subnet = |e: &Endpoint| e.addr.trunc();
    let mut pairs: Vec<(&Endpoint, &Endpoint)> = vec![];
    for a in &instances {
        for b in &instances {
            if a.name != b.name {
                pairs.push((a, b));
            }
        }
    }
    let all_pairs = pairs.len();
    if opts.max_pairs > 0 && pairs.len() > opts.max_pairs {
        let step = pairs.len() / opts.max_pairs;
        pairs = pairs.into_iter().step_by(step.max(1)).take(opts.max_pairs).collect();
    }
    let routed = |a: &Endpoint, b: &Endpoint| -> bool {
        subnet(a) == subnet(b)
            || match (routers.get(&subnet(a)), routers.get(&subnet(b))) {
                (Some(x), Some(y)) => !x.is_disjoint(y),
                _ => false,
            }
    };
    for (a, b) in &pairs {
        let expect = routed(a, b);
        let mut w = base.clone();
        let r = reach(&mut w, &req(&a.name, b.addr.addr())).map(|t| round_trip(&t) && t.verdict.delivered_to() == Some(b.name.as_str()));
        let reached = r.unwrap_or(false);
        let routed_across = subnet(a) != subnet(b) && expect;
        if reached != expect || routed_across {
            let mut w = base.clone();
            let Ok(t) = trace(&mut w, &req(&a.name, b.addr.addr())) else {
                matrix.push(Cell { from: a.name.clone(), to: b.name.clone(), expect, reached, denied_by: None });
                continue;
            };
            let denied = if expect && !reached { denied_by(&t) } else { None };
            let allowed = denied.is_none();
            matrix.push(Cell { from: a.name.clone(), to: b.name.clone(), expect, reached, denied_by: denied });
            if reached != expect && allowed {
                reach_v.push(Violation {
                    what: if expect {
                        format!("{} cannot reach {} ({}), though they are routed", a.name, b.name, b.addr.addr())
                    } else {
                        format!("{} reaches {} ({}), though no router joins their subnets", a.name, b.name, b.addr.addr())
                    },
                    item: why_item_and_provenance(&t).0,
                    provenance: why_item_and_provenance(&t).1,
                    trace: counterexample(&t),
                });
            }
            for (dir, tt) in [("request", Some(&t)), ("reply", t.reply.as_deref())] {
                let Some(tt) = tt else { continue };
                if let Some(i) = tt.hops.iter().position(|h| h.kind == HopKind::Wire && gw_macs.contains_key(&h.packet.eth_src)) {
                    let h = &tt.hops[i];
                    let m = h.packet.eth_src;
                    let from_host = sender_host(&tt.hops[..i], &h.copy);
                    wire_v.push(Violation {
                        what: format!(
                            "{} -> {} ({dir}): a frame left {from_host} with gateway MAC {m} of {} as its source",
                            a.name, b.name, gw_macs[&m]
                        ),
                        item: if tunnelled(h) {
                            format!(
                                "missing: {from_host} br-tun table 1 (DVR_PROCESS) flow dl_src={m} → mod_dl_src:<DVR MAC of {from_host}>"
                            )
                        } else {
                            format!("missing: {from_host} physical bridge table 1 flow dl_src={m} → mod_dl_src:<DVR MAC of {from_host}>")
                        },
                        provenance: Some(
                            if tunnelled(h) {
                                "the OVS agent's DVR-MAC rewrite on br-tun (_setup_dvr_flows_on_tun_br), one per local gateway port"
                            } else {
                                "the OVS agent's DVR-MAC rewrite (phys_dvr_flows), one per local gateway port"
                            }
                            .into(),
                        ),
                        trace: counterexample(tt),
                    });
                    break;
                }
            }
        } else {
            matrix.push(Cell { from: a.name.clone(), to: b.name.clone(), expect, reached, denied_by: None });
        }
    }
    // Outside: every instance out through its router, every floating IP in.
    for a in &instances {
        for o in &outside {
            let has_fip = fips.values().any(|x| *x == Some(a.addr.addr()));
            let snat = routers
                .get(&subnet(a))
                .is_some_and(|rs| rs.iter().any(|r| plan.hosts.iter().any(|h| h.namespace(&r.replacen("qrouter-", "snat-", 1)).is_some())));
            let expect = has_fip || snat;
            let mut w = base.clone();
            let reached = reach(&mut w, &req(&a.name, o.addr.addr())).is_ok_and(|t| round_trip(&t));
            let mut cell = Cell { from: a.name.clone(), to: o.name.clone(), expect, reached, denied_by: None };
            if reached != expect {
                let mut w = base.clone();
                if let Ok(t) = trace(&mut w, &req(&a.name, o.addr.addr()))
                    && let Some(d) = denied_by(&t).filter(|_| expect)
                {
                    cell.denied_by = Some(d);
                } else if let Ok(t) = trace(&mut base.clone(), &req(&a.name, o.addr.addr())) {
                    reach_v.push(Violation {
                        what: format!(
                            "{} -> outside {} ({}): expected {}",
                            a.name,
                            o.name,
                            o.addr.addr(),
                            if expect { "reachable" } else { "isolated" }
                        ),
                        item: why_item_and_provenance(&t).0,
                        provenance: why_item_and_provenance(&t).1,
                        trace: counterexample(t.reply.as_deref().filter(|_| t.verdict.is_delivered()).unwrap_or(&t)),
                    });
                }
            }
            matrix.push(cell);
        }
    }
    for o in outside.iter().take(1) {
        for (fip, fixed) in &fips {
            let vm = fixed.and_then(|f| instances.iter().find(|e| e.addr.addr() == f));
            let mut w = base.clone();
            let reached = reach(&mut w, &req(&o.name, *fip))
                .is_ok_and(|t| round_trip(&t) && vm.is_none_or(|vm| t.verdict.delivered_to() == Some(vm.name.as_str())));
            let mut cell = Cell { from: o.name.clone(), to: format!("fip:{fip}"), expect: true, reached, denied_by: None };
            if !reached {
                let mut w = base.clone();
                if let Ok(t) = trace(&mut w, &req(&o.name, *fip))
                    && let Some(d) = denied_by(&t)
                {
                    cell.denied_by = Some(d);
                } else if let Ok(t) = trace(&mut base.clone(), &req(&o.name, *fip)) {
                    let whose = match (vm, fixed) {
                        (Some(vm), _) => format!("of {}", vm.name),
                        (None, Some(f)) => format!("of {f}"),
                        (None, None) => "(no qrouter DNAT rule names its instance)".to_string(),
                    };
                    let (mut item, mut provenance) = why_item_and_provenance(&t);
                    if fixed.is_none()
                        && let Some((host, qr, rfp, origin)) = fip_router(plan, *fip)
                    {
                        item = format!(
                            "missing: {host} {qr} nat rule -d {fip}/32 -i {rfp} -j DNAT --to-destination <fixed IP> (the fip namespace routes {fip} there; nothing translates it)"
                        );
                        provenance = Some(format!("the fip namespace's route: {origin}"));
                    }
                    reach_v.push(Violation {
                        what: format!("floating IP {fip} {whose} does not answer from outside ({})", o.name),
                        item,
                        provenance,
                        trace: counterexample(t.reply.as_deref().filter(|_| t.verdict.is_delivered()).unwrap_or(&t)),
                    });
                }
            }
            matrix.push(cell);
        }
    }
    let routed_across_n = pairs.iter().filter(|(a, b)| subnet(a) != subnet(b) && routed(a, b)).count();
    let n_ok = matrix.iter().filter(|c| c.expect == c.reached || c.denied_by.is_some()).count();
    let n_denied = matrix.iter().filter(|c| c.denied_by.is_some()).count();
    checks.push(check(
        "no-gateway-mac-on-wire",
        format!("{} routed pairs across subnets traced, {} gateway MACs", routed_across_n, gw_macs.len()),
        wire_v,
    ));

    // 3. Gateway ARP stays on its host.
    let mut v = vec![];
    for a in instances.iter().filter(|a| routers.contains_key(&subnet(a))) {
        let Some(gw) = a.gateway else { continue };
        let mut w = base.clone();
        // Forget the gateway: the instance must ARP for it.
        if let Some(s) = w.endpoint(&a.name) {
            w.stacks[s].stack.neigh.retain(|(_, ip), _| *ip != gw);
        }
        let Ok(t) = trace(&mut w, &req_l4(&a.name, gw, L4::Icmp { reply: false, id: 7 })) else { continue };
        if let Some(i) = t.hops.iter().position(|h| h.kind == HopKind::Wire && h.packet.proto == "arp" && h.packet.ip_dst == gw) {
            let h = &t.hops[i];
            let leak_host = sender_host(&t.hops[..i], &h.copy);
            // Is there a drop flow for it somewhere that no packet reaches (Neutron's Q1)?
            let inert = plan.host(&leak_host).and_then(|hp| {
                hp.bridges.iter().filter(|b| b.kind == BridgeKind::Phys).find_map(|b| {
                    b.flows
                        .iter()
                        .find(|f| {
                            f.matches.proto == Some(Proto::Arp)
                                && f.matches.arp_tpa.is_some_and(|m| m.contains(gw))
                                && f.actions == [Action::Drop]
                        })
                        .map(|f| (b.name.clone(), b.kind, f.clone()))
                })
            });
            let (item, provenance) = match &inert {
                Some((b, kind, f)) => {
                    let (i, p) = flow_item(&leak_host, b, *kind, f);
                    (
                        format!(
                            "{i} exists but no flow sends packets to table {} (Neutron's leak Q1: the gateway-ARP drop sits in an inert table)",
                            f.table
                        ),
                        p,
                    )
                }
                None if tunnelled(h) => (
                    format!("missing: {leak_host} br-tun table 1 (DVR_PROCESS) flow arp,arp_tpa={gw} → drop"),
                    Some("the OVS agent's br-tun DVR flows (gateway ARP containment)".into()),
                ),
                None => (
                    format!("missing: {leak_host} physical bridge table 1 flow arp,arp_tpa={gw} → drop"),
                    Some("phys_dvr_flows (gateway ARP containment)".into()),
                ),
            };
            v.push(Violation {
                what: format!(
                    "{}'s ARP for its gateway {gw} leaves {leak_host} on {} ({})",
                    a.name,
                    h.where_,
                    match &h.packet.tunnel {
                        Some(e) => format!("VXLAN VNI {}", e.vni),
                        None => format!("VLAN {}", h.packet.vlan.map_or("none".into(), |x| x.to_string())),
                    }
                ),
                item,
                provenance,
                trace: t
                    .hops
                    .iter()
                    .enumerate()
                    .filter(|(i, x)| x.packet.proto == "arp" && x.copy.is_ancestor_of(&h.copy) && (*i == 0 || x.where_ != "br-int"))
                    .map(|(_, x)| format!("{} {}: {}", x.host, x.where_, x.step))
                    .collect(),
            });
        }
    }
    let routed_vms = instances.iter().filter(|a| routers.contains_key(&subnet(a))).count();
    checks.push(check("gateway-arp-contained", format!("{routed_vms} instances on routed subnets ARP for their gateway"), v));

    let sampled = if pairs.len() < all_pairs {
        format!(" (instance pairs evenly sampled: {} of {all_pairs}; --max-pairs 0 traces all)", pairs.len())
    } else {
        String::new()
    };
    checks.push(check(
        "reachability",
        format!(
            "{} pairs{}: {n_ok} as expected ({} routed, {} isolated{}){sampled}",
            matrix.len(),
            if opts.l4.is_some() { format!(" ({})", l4_label(l4)) } else { String::new() },
            matrix.iter().filter(|c| c.expect).count(),
            matrix.iter().filter(|c| !c.expect).count(),
            if n_denied > 0 { format!(", {n_denied} of the routed denied by security groups") } else { String::new() }
        ),
        reach_v,
    ));

    // 5. A floating IP is proxy-ARPed on one host only.
    let mut v = vec![];
    let mut proxied: BTreeMap<Ipv4Addr, Vec<String>> = BTreeMap::new();
    for h in &plan.hosts {
        for n in h.namespaces.iter().filter(|n| n.kind == NamespaceKind::Fip) {
            for r in n.routes.iter().filter(|r| r.dst.prefix_len() == 32 && r.dev.starts_with("fpr-")) {
                proxied.entry(r.dst.addr()).or_default().push(h.host.clone());
            }
        }
    }
    for (ip, hs) in proxied.iter().filter(|(_, hs)| hs.len() > 1) {
        v.push(Violation {
            what: format!("floating IP {ip} is answered (proxy ARP on fg-) by {} hosts", hs.len()),
            item: format!("fip namespace host route {ip}/32 via fpr- on {}", hs.join(", ")),
            provenance: Some("the l3 agent's floating-IP setup (fip_ns routes)".into()),
            trace: vec![],
        });
    }
    checks.push(check("fip-proxy-arp-single-host", format!("{} floating IPs", proxied.len()), v));

    // 6. One fg- per host and external network.
    let mut v = vec![];
    let mut n_fg = 0;
    for h in &plan.hosts {
        let mut per: BTreeMap<Ipv4Net, Vec<String>> = BTreeMap::new();
        for n in h.namespaces.iter().filter(|n| n.kind == NamespaceKind::Fip) {
            for d in n.devices.iter().filter(|d| d.name.starts_with("fg-")) {
                n_fg += 1;
                for a in &d.addrs {
                    per.entry(a.trunc()).or_default().push(format!("{} in {}", d.name, n.name));
                }
            }
        }
        for (net, devs) in per.iter().filter(|(_, d)| d.len() > 1) {
            v.push(Violation {
                what: format!("{} has {} fg- ports on external subnet {net}", h.host, devs.len()),
                item: devs.join(", "),
                provenance: Some("floating-IP agent gateway ports (one per host and external network)".into()),
                trace: vec![],
            });
        }
    }
    checks.push(check("one-fg-per-host-and-external-network", format!("{n_fg} fg- ports"), v));

    // 7. Pools: link-local /31 pairs and FIP rule priorities, per host.
    let mut v = vec![];
    let (mut max_ll, mut max_pr) = (0, 0);
    for h in &plan.hosts {
        let mut ll: BTreeMap<Ipv4Net, Vec<String>> = BTreeMap::new();
        let mut prios: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for n in &h.namespaces {
            for d in n.devices.iter().filter(|d| d.name.starts_with("rfp-")) {
                for a in &d.addrs {
                    ll.entry(a.trunc()).or_default().push(format!("{} in {}", d.name, n.name));
                }
            }
            if n.kind == NamespaceKind::Qrouter {
                for r in n.rules.iter().filter(|r| (32768..32768 + FIP_RULE_PRIORITIES as u32).contains(&r.priority)) {
                    prios.entry(r.priority).or_default().push(format!("{} in {}", r.priority, n.name));
                }
            }
        }
        max_ll = max_ll.max(ll.len());
        max_pr = max_pr.max(prios.len());
        for (net, who) in ll.iter().filter(|(_, w)| w.len() > 1) {
            v.push(Violation {
                what: format!("{}: link-local pair {net} used twice", h.host),
                item: who.join(", "),
                provenance: None,
                trace: vec![],
            });
        }
        for (p, who) in prios.iter().filter(|(_, w)| w.len() > 1) {
            v.push(Violation {
                what: format!("{}: FIP rule priority {p} used twice", h.host),
                item: who.join(", "),
                provenance: None,
                trace: vec![],
            });
        }
        if ll.len() >= LINK_LOCAL_PAIRS || prios.len() >= FIP_RULE_PRIORITIES {
            v.push(Violation {
                what: format!(
                    "{}: pool exhausted ({} of {LINK_LOCAL_PAIRS} link-local pairs, {} of {FIP_RULE_PRIORITIES} rule priorities)",
                    h.host,
                    ll.len(),
                    prios.len()
                ),
                item: "169.254.64.0/18 or FIP rule priorities 32768…72767".into(),
                provenance: None,
                trace: vec![],
            });
        }
    }
    checks.push(check(
        "pools-not-exhausted",
        format!("busiest host: {max_ll} of {LINK_LOCAL_PAIRS} link-local pairs, {max_pr} of {FIP_RULE_PRIORITIES} FIP rule priorities"),
        v,
    ));

    // 8. Anti-spoofing on every VM port.
    let mut v = vec![];
    let mut ports = 0;
    for h in &plan.hosts {
        let Some(int) = int_bridge(h) else { continue };
        for p in int.ports.iter().filter(|p| matches!(p.kind, PortKind::Vif { .. })) {
            ports += 1;
            let PortKind::Vif { instance } = &p.kind else { continue };
            let has =
                |pred: &dyn Fn(&Flow) -> bool| int.flows.iter().any(|f| f.matches.in_port.as_deref() == Some(p.name.as_str()) && pred(f));
            if !has(&|f| f.matches.proto == Some(Proto::Arp) && f.matches.arp_spa.is_some()) {
                v.push(Violation {
                    what: format!("{instance} ({} on {}) may send ARP for any address", p.name, h.host),
                    item: format!("missing: {} br-int table 24 flow arp,in_port={},arp_spa=<its IP>", h.host, p.name),
                    provenance: Some("the OVS agent's ARP spoofing protection (int_port_flows)".into()),
                    trace: vec![],
                });
            }
            // Without a firewall, table 25 (any protocol); with Neutron's
            // openvswitch firewall, its BASE_EGRESS table 71 (per protocol).
            if !has(&|f| f.matches.dl_src.is_some() && (f.matches.proto.is_none() || f.table.0 == 71)) {
                v.push(Violation {
                    what: format!("{instance} ({} on {}) may send from any MAC", p.name, h.host),
                    item: format!(
                        "missing: {} br-int table 25 flow in_port={},dl_src=<its MAC> (or, with the firewall, table 71 flows)",
                        h.host, p.name
                    ),
                    provenance: Some("the OVS agent's MAC spoofing protection (int_port_flows)".into()),
                    trace: vec![],
                });
            }
        }
    }
    checks.push(check("anti-spoofing-every-vm-port", format!("{ports} VM ports"), v));
    Report { checks, matrix }
}

/// The report for people: one line per invariant, then each violation.
pub fn text(r: &Report, matrix: bool) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    for c in &r.checks {
        let _ = writeln!(o, "{:<6} {:<38} {}", if c.holds { "ok" } else { "FAIL" }, c.invariant, c.checked);
        for v in &c.violations {
            let _ = writeln!(o, "       - {}", v.what);
            let _ = writeln!(o, "         item: {}", v.item);
            if let Some(p) = &v.provenance {
                let _ = writeln!(o, "         provenance: {p}");
            }
            for l in &v.trace {
                let _ = writeln!(o, "         | {l}");
            }
        }
    }
    if matrix {
        let _ = writeln!(o, "\nreachability matrix (✓ reached, · isolated, ✗ denied by security groups; ! = not as expected):");
        for c in &r.matrix {
            let mark = if c.reached {
                "✓"
            } else if c.denied_by.is_some() {
                "✗"
            } else {
                "·"
            };
            let bad = if c.reached != c.expect && c.denied_by.is_none() { " !" } else { "" };
            let denied = c.denied_by.as_ref().map(|d| format!("  {d}")).unwrap_or_default();
            let _ = writeln!(o, "  {:<12} -> {:<18} {mark} {}{bad}{denied}", c.from, c.to, if c.expect { "routed" } else { "unrouted" });
        }
    }
    let failed = r.checks.iter().filter(|c| !c.holds).count();
    let _ = writeln!(o, "{}", if failed == 0 { "all invariants hold".to_string() } else { format!("{failed} invariant(s) violated") });
    o
}
