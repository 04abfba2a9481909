//! Following a packet, and then its reply, through the whole twin: every
//! table, flow, NORMAL decision, wire, ARP exchange, rule, route and NAT
//! rewrite becomes a [`Hop`]. Frames are processed in FIFO order from one
//! queue, so floods are followed copy by copy and each copy's fate is in
//! the trace; copies are labelled `1`, `1.2`, `1.2.1` … by lineage.

use crate::ofp::OfStep;
use crate::packet::{Frame, L4, PacketView, Payload};
use crate::stack::{IpPkt, StackResult, StackStep, describe};
use crate::world::{Attach, StackKind, World};
use serde::Serialize;
use std::collections::VecDeque;
use std::net::Ipv4Addr;

/// Deployments up to this many hosts get a full warm-up (see [`warm_up`]).
pub const FULL_WARM_UP_HOSTS: usize = 64;

/// Events processed before a trace is declared a loop.
pub const MAX_EVENTS: usize = 20_000;

/// The closed set of hop kinds of the trace contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HopKind {
    /// An OpenFlow table lookup or NORMAL in a bridge.
    Openflow,
    /// A step in a Neutron namespace.
    Namespace,
    /// A frame on a physical network.
    Wire,
    /// A step in an instance, external host or the upstream gateway.
    Endpoint,
}

/// One step of a trace.
#[derive(Debug, Clone, Serialize)]
pub struct Hop {
    /// Host name; `fabric` for wires, `external` outside the cloud.
    pub host: String,
    /// Kind.
    pub kind: HopKind,
    /// Bridge, namespace, endpoint or physical network.
    #[serde(rename = "where")]
    pub where_: String,
    /// What matched or was done.
    pub detail: String,
    /// The frame as it is when the hop is left.
    pub packet: PacketView,
    /// Copy lineage label.
    pub copy: String,
    /// Why the flow exists (openflow hops of planned flows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// What this hop changed in the packet, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<String>,
    /// Whether this copy ended here (dropped, ignored or delivered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fate: Option<String>,
}

/// How a trace ended (closed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Disposition {
    /// Reached its destination.
    Delivered,
    /// Dropped by a flow, a table miss, the kernel or a missing route.
    Dropped,
    /// No route to the destination.
    NoRoute,
    /// The next hop never answered ARP.
    NeighbourUnreachable,
    /// Frames kept circulating.
    Loop,
}

/// A trace of one direction.
#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    /// `delivered` or `dropped`.
    pub verdict: &'static str,
    /// Who received it.
    pub delivered_to: Option<String>,
    /// Why it was not delivered.
    pub drop_reason: Option<String>,
    /// Detailed disposition.
    pub disposition: Disposition,
    /// Steps.
    pub hops: Vec<Hop>,
    /// The reply's trace (request only, when delivered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<Box<Trace>>,
}

/// What to trace.
#[derive(Debug, Clone)]
pub struct TraceRequest {
    /// Instance or external host name.
    pub from: String,
    /// Destination address.
    pub to: Ipv4Addr,
    /// Transport (ICMP echo by default).
    pub l4: L4,
    /// Send from this source IP instead of the endpoint's own (spoofing).
    pub spoof_ip: Option<Ipv4Addr>,
    /// Send from this MAC instead of the endpoint's own (spoofing).
    pub spoof_mac: Option<dvr_model::MacAddr>,
}

/// Why a trace could not start.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// `--from` names no endpoint.
    #[error("no instance or external host called `{0}`; endpoints are: {1}\n    fix: pass one of them to --from")]
    UnknownEndpoint(String, String),
}

#[derive(Debug, Clone, Copy)]
enum Ev {
    Bridge { host: usize, bridge: usize, port: usize },
    Stack { stack: usize, dev: usize },
    Wire { wire: usize, port: usize },
}

/// Why a copy died; bridge drops in verdict-only mode are described only
/// when a verdict needs them.
enum Why {
    Text(String),
    Bridge { host: usize, bridge: usize, step: Option<OfStep> },
}

impl Why {
    fn text(&self, w: &World) -> String {
        match self {
            Why::Text(t) => t.clone(),
            Why::Bridge { host, bridge, step } => {
                let br = &w.hosts[*host].bridges[*bridge];
                let why = match step {
                    Some(OfStep::Matched { table, flow }) => {
                        format!("table {table} priority {} {} → drop", flow.priority, flow.match_string())
                    }
                    Some(OfStep::Miss { table, .. }) => format!("table {table}{}: no flow matches", table_name(br.kind, *table)),
                    Some(OfStep::Normal { vlan, .. }) => format!("NORMAL in VLAN {vlan}: no other port"),
                    Some(OfStep::Note(n)) => n.clone(),
                    None => String::new(),
                };
                format!("{} {}: {why}", w.hosts[*host].name, br.name)
            }
        }
    }
}

struct Drop {
    reason: Why,
    disposition: Disposition,
    traced: bool,
    frame: Frame,
}

struct Phase {
    hops: Vec<Hop>,
    delivered: Option<(usize, IpPkt, Option<IpPkt>)>,
    drops: Vec<Drop>,
    looped: bool,
}

/// The identity of the traced packet (either direction, any NAT).
fn is_traced(f: &Frame, l4: L4) -> bool {
    match (f.payload, l4) {
        (Payload::Ip { l4: L4::Icmp { id: a, .. }, .. }, L4::Icmp { id: b, .. }) => a == b,
        (Payload::Ip { l4: x, .. }, y) => {
            let (s, d) = y.ports();
            x.proto() == y.proto() && (x.ports() == (s, d) || x.ports() == (d, s))
        }
        _ => false,
    }
}

fn diff(a: &Frame, b: &Frame) -> Option<String> {
    let mut d = Vec::new();
    if a.vlan != b.vlan {
        let v = |x: Option<u16>| x.map_or("untagged".to_string(), |v| v.to_string());
        d.push(format!("VLAN {}→{}", v(a.vlan), v(b.vlan)));
    }
    if a.src != b.src && a.payload == b.payload {
        d.push(format!("src MAC {}→{}", a.src, b.src));
    }
    if a.dst != b.dst && a.payload == b.payload {
        d.push(format!("dst MAC {}→{}", a.dst, b.dst));
    }
    if let (Payload::Ip { src: s1, dst: d1, .. }, Payload::Ip { src: s2, dst: d2, .. }) = (a.payload, b.payload) {
        if s1 != s2 {
            d.push(format!("src IP {s1}→{s2}"));
        }
        if d1 != d2 {
            d.push(format!("dst IP {d1}→{d2}"));
        }
    }
    (!d.is_empty()).then(|| d.join(", "))
}

struct Runner<'w> {
    w: &'w mut World,
    l4: L4,
    /// Record hops (a full trace) or only find the verdict (fast reachability).
    record: bool,
    /// Physical switches learn but do not forward (a contained warm-up).
    contain: bool,
    queue: VecDeque<(Ev, Frame, String)>,
    phase: Phase,
}

impl Runner<'_> {
    #[allow(clippy::too_many_arguments)]
    fn hop(&mut self, host: &str, kind: HopKind, where_: &str, detail: String, packet: &Frame, copy: &str, prev: &mut Frame) -> usize {
        if !self.record {
            return usize::MAX;
        }
        let rewrite = diff(prev, packet);
        *prev = *packet;
        self.phase.hops.push(Hop {
            host: host.to_string(),
            kind,
            where_: where_.to_string(),
            detail,
            packet: packet.into(),
            copy: copy.to_string(),
            why: None,
            rewrite,
            fate: None,
        });
        self.phase.hops.len() - 1
    }

    #[allow(clippy::too_many_arguments)]
    fn drop(&mut self, hop: usize, reason: String, disposition: Disposition, traced: bool, fate: &str, frame: Frame) {
        if let Some(h) = self.phase.hops.get_mut(hop) {
            h.fate = Some(fate.to_string());
        }
        self.phase.drops.push(Drop { reason: Why::Text(reason), disposition, traced, frame });
    }

    fn enqueue(&mut self, targets: Vec<(Ev, Frame)>, copy: &str) {
        let n = targets.len();
        for (i, (ev, f)) in targets.into_iter().enumerate() {
            let label = if !self.record {
                String::new()
            } else if n == 1 {
                copy.to_string()
            } else {
                format!("{copy}.{}", i + 1)
            };
            self.queue.push_back((ev, f, label));
        }
    }

    fn from_attach(a: Attach) -> Option<Ev> {
        match a {
            Attach::Bridge { host, bridge, port } => Some(Ev::Bridge { host, bridge, port }),
            Attach::Stack { stack, dev } => Some(Ev::Stack { stack, dev }),
            Attach::Wire { wire, port } => Some(Ev::Wire { wire, port }),
            Attach::None => None,
        }
    }

    fn stack_result(&mut self, s: usize, r: StackResult, input: Frame, copy: &str, want_reply_at: Option<usize>) {
        let node = &self.w.stacks[s];
        let (host, name) = if self.record || r.steps.iter().any(|x| matches!(x, StackStep::Drop(_))) {
            (node.host.clone(), node.name.clone())
        } else {
            (String::new(), String::new())
        };
        let kind = if matches!(node.kind, StackKind::Namespace(_)) { HopKind::Namespace } else { HopKind::Endpoint };
        let mut prev = input;
        let traced = is_traced(&input, self.l4);
        let mut shown = input;
        if !self.record {
            for step in &r.steps {
                if let StackStep::Drop(why) = step {
                    let disp = if why.starts_with("no route") { Disposition::NoRoute } else { Disposition::Dropped };
                    self.phase.drops.push(Drop {
                        reason: Why::Text(format!("{name} on {host}: {why}")),
                        disposition: disp,
                        traced,
                        frame: input,
                    });
                }
            }
        }
        let record = self.record;
        for step in r.steps.iter().filter(|_| record) {
            let (detail, fate) = match step {
                StackStep::Note(n) => (n.clone(), None),
                StackStep::Nat(crate::netfilter::NatStep::Chain { hook, rule, rewrite }, _) => {
                    let d = match (rule, rewrite) {
                        (Some(r), Some(w)) => format!("{hook} {w} ({r})"),
                        (Some(r), None) => format!("{hook} no NAT ({r})"),
                        (None, _) => format!("{hook} no rule matched"),
                    };
                    (d, None)
                }
                StackStep::Nat(crate::netfilter::NatStep::Conntrack { hook, rewrite }, _) => (format!("{hook} conntrack: {rewrite}"), None),
                StackStep::Drop(why) => (format!("dropped: {why}"), Some(why.clone())),
                StackStep::Ignored(why) => (why.clone(), Some(String::new())),
            };
            if let StackStep::Nat(_, p) = step {
                shown.payload = Payload::Ip { src: p.src, dst: p.dst, l4: p.l4 };
            }
            let h = self.hop(&host, kind, &name, detail, &shown, copy, &mut prev);
            match fate {
                Some(why) if why.is_empty() => {
                    if let Some(hop) = self.phase.hops.get_mut(h) {
                        hop.fate = Some("ignored".into());
                    }
                }
                Some(why) => {
                    let disp = if why.starts_with("no route") { Disposition::NoRoute } else { Disposition::Dropped };
                    self.drop(h, format!("{name} on {host}: {why}"), disp, traced, "dropped", input);
                }
                None => {}
            }
        }
        if let Some(p) = r.delivered {
            let matches_phase = match want_reply_at {
                None => p.l4 == self.l4 && self.phase.delivered.is_none(),
                Some(origin) => origin == s && p.l4 == self.l4.reversed() && self.phase.delivered.is_none(),
            };
            if matches_phase {
                let h = self.phase.hops.len().wrapping_sub(1);
                if let Some(hop) = self.phase.hops.get_mut(h) {
                    hop.fate = Some("delivered".into());
                }
                self.phase.delivered = Some((s, p, r.answer));
            } else if want_reply_at.is_none() && p.l4 == self.l4 {
                // A broadcast or multicast reaches several namespaces: the
                // first is the verdict's, each copy shows where it ended.
                if let Some(hop) = self.phase.hops.last_mut() {
                    hop.fate = Some("delivered".into());
                }
            }
        }
        let mut targets = Vec::new();
        for (dev, f) in r.out {
            if self.record {
                let dev_name = self.w.stacks[s].stack.devs[dev].name.clone();
                self.hop(&host, kind, &name, format!("sends on {dev_name}: {}", f), &f, copy, &mut prev);
            }
            if let Some(ev) = Self::from_attach(self.w.stacks[s].attach[dev]) {
                targets.push((ev, f));
            }
        }
        self.enqueue(targets, copy);
    }

    fn process(&mut self, ev: Ev, f: Frame, copy: String, want_reply_at: Option<usize>) {
        match ev {
            Ev::Stack { stack, dev } => {
                self.w.stacks[stack].stack.verbose = self.record;
                let r = self.w.stacks[stack].stack.receive(dev, f);
                self.stack_result(stack, r, f, &copy, want_reply_at);
            }
            Ev::Bridge { host, bridge, port } => {
                let br = &mut self.w.hosts[host].bridges[bridge];
                let kind = br.kind;
                let res = br.process(port, f);
                if !self.record && !res.outputs.is_empty() {
                    // Fast path: only where the frame goes matters.
                    let attach = &self.w.hosts[host].attach[bridge];
                    let targets: Vec<(Ev, Frame)> =
                        res.outputs.iter().filter_map(|(p, out)| Self::from_attach(attach[*p]).map(|ev| (ev, *out))).collect();
                    self.enqueue(targets, &copy);
                    return;
                }
                if !self.record && res.outputs.is_empty() {
                    let traced = is_traced(&f, self.l4);
                    let step = res.steps.last().cloned();
                    self.phase.drops.push(Drop {
                        reason: Why::Bridge { host, bridge, step },
                        disposition: Disposition::Dropped,
                        traced,
                        frame: f,
                    });
                    return;
                }
                let hostname = self.w.hosts[host].name.clone();
                let bname = self.w.hosts[host].bridges[bridge].name.clone();
                let mut prev = f;
                let mut last = None;
                let record = self.record;
                for (i, step) in res.steps.iter().enumerate().filter(|_| record) {
                    let after = res.frame_after(i).unwrap_or(f);
                    let (detail, why) = match step {
                        OfStep::Matched { table, flow } => {
                            let m = flow.match_string();
                            let m = if m.is_empty() { "(any)".to_string() } else { m };
                            (
                                format!("table {table} priority {} {m} → {}", flow.priority, flow.actions_string()),
                                (!flow.reason.is_empty()).then(|| format!("{}: {}", flow.builder, flow.reason)),
                            )
                        }
                        OfStep::Miss { table, fatal: true } => {
                            (format!("table {table}{}: no flow matches: table miss, dropped", table_name(kind, *table)), None)
                        }
                        OfStep::Miss { table, fatal: false } => {
                            (format!("table {table}{}: no flow matches: nothing done", table_name(kind, *table)), None)
                        }
                        OfStep::Normal { vlan, out, learned } => {
                            let ports = &self.w.hosts[host].bridges[bridge].ports;
                            let out: Vec<&str> = out.iter().map(|&p| ports[p].name.as_str()).collect();
                            let d = match (out.as_slice(), learned) {
                                ([], _) => format!("NORMAL in VLAN {vlan}: no other port: dropped"),
                                ([p], true) => {
                                    format!("NORMAL in VLAN {vlan}: destination learned on {p}")
                                }
                                (ps, _) => format!("NORMAL in VLAN {vlan}: destination unknown, flood to {}", ps.join(", ")),
                            };
                            (d, None)
                        }
                        OfStep::Note(n) => (n.clone(), None),
                    };
                    let h = self.hop(&hostname, HopKind::Openflow, &bname, detail, &after, &copy, &mut prev);
                    if let Some(hop) = self.phase.hops.get_mut(h) {
                        hop.why = why;
                    }
                    last = Some(h);
                }
                if res.outputs.is_empty() {
                    if let Some(h) = last {
                        let detail = self.phase.hops[h].detail.clone();
                        let traced = is_traced(&f, self.l4);
                        self.drop(h, format!("{hostname} {bname}: {detail}"), Disposition::Dropped, traced, "dropped", f);
                    }
                    return;
                }
                let mut targets = Vec::new();
                for (p, out) in res.outputs {
                    match self.w.hosts[host].attach[bridge][p] {
                        Attach::None => {
                            let h = self.hop(
                                &hostname,
                                HopKind::Openflow,
                                &bname,
                                format!("output to {}: nothing attached", self.w.hosts[host].bridges[bridge].ports[p].name),
                                &out,
                                &copy,
                                &mut prev,
                            );
                            self.phase.hops[h].fate = Some("dropped".into());
                        }
                        a => targets.extend(Self::from_attach(a).map(|ev| (ev, out))),
                    }
                }
                self.enqueue(targets, &copy);
            }
            Ev::Wire { wire, port } => {
                let w = &mut self.w.wires[wire];
                let in_tag = w.ports[port].1;
                let mut frame = f;
                if let Some(t) = in_tag {
                    frame.vlan = Some(t);
                }
                w.mac_table.insert(frame.src, port);
                if self.contain {
                    return;
                }
                let known = if frame.dst.is_multicast() { None } else { w.mac_table.get(&frame.dst).copied() };
                let outs: Vec<usize> = match known {
                    Some(p) if p == port => vec![],
                    Some(p) => vec![p],
                    None => (0..w.ports.len()).filter(|&p| p != port).collect(),
                };
                if self.record {
                    let from_name = w.ports[port].2.clone();
                    let names: Vec<String> = outs.iter().map(|&p| w.ports[p].2.clone()).collect();
                    let wname = w.name.clone();
                    let vlan = frame.vlan.map_or("untagged".to_string(), |v| format!("VLAN {v}"));
                    let how = if known.is_some() { "learned" } else { "flooded" };
                    let mut prev = f;
                    let detail = format!(
                        "{vlan} from {from_name} → {} ({how})",
                        if names.is_empty() { "nowhere".to_string() } else { names.join(", ") }
                    );
                    let h = self.hop("fabric", HopKind::Wire, &wname, detail, &frame, &copy, &mut prev);
                    self.phase.hops[h].rewrite = None;
                }
                let mut targets = Vec::new();
                for p in outs {
                    let (a, tag, _) = self.w.wires[wire].ports[p].clone();
                    let mut out = frame;
                    if let Some(t) = tag {
                        if out.vlan != Some(t) {
                            continue;
                        }
                        out.vlan = None;
                    }
                    targets.extend(Self::from_attach(a).map(|ev| (ev, out)));
                }
                self.enqueue(targets, &copy);
            }
        }
    }

    fn run(&mut self, want_reply_at: Option<usize>) {
        let mut n = 0;
        while let Some((ev, f, copy)) = self.queue.pop_front() {
            n += 1;
            if n > MAX_EVENTS {
                self.phase.looped = true;
                self.queue.clear();
                break;
            }
            self.process(ev, f, copy, want_reply_at);
        }
    }
}

fn table_name(kind: Option<dvr_plan::tables::BridgeKind>, t: u8) -> String {
    kind.and_then(|k| dvr_plan::tables::lookup(k, dvr_openflow::TableId(t))).map(|d| format!(" ({})", d.name)).unwrap_or_default()
}

fn finish(w: &World, p: Phase, target: Ipv4Addr) -> Trace {
    if let Some((s, _, _)) = p.delivered {
        return Trace {
            verdict: "delivered",
            delivered_to: Some(w.stacks[s].label.clone()),
            drop_reason: None,
            disposition: Disposition::Delivered,
            hops: p.hops,
            reply: None,
        };
    }
    let (reason, disposition) = if p.looped {
        (format!("more than {MAX_EVENTS} frames: forwarding loop"), Disposition::Loop)
    } else if let Some(d) = p.drops.iter().rev().find(|d| d.traced) {
        (d.reason.text(w), d.disposition)
    } else if let Some((node, dev, ip)) = w.stacks.iter().find_map(|n| n.stack.unresolved().first().map(|(d, ip)| (n, d.clone(), *ip))) {
        let arp_drop = p.drops.iter().rev().find(|d| matches!(d.frame.payload, Payload::Arp { tpa, .. } if tpa == ip));
        let why = match arp_drop {
            Some(d) => format!("its ARP request was dropped: {}", d.reason.text(w)),
            None => "nothing answered its ARP request".to_string(),
        };
        (
            format!("{} on {}: no ARP reply for {ip} on {dev} ({why}); the packet was never sent", node.name, node.host),
            Disposition::NeighbourUnreachable,
        )
    } else if let Some(d) = p.drops.last() {
        (d.reason.text(w), d.disposition)
    } else {
        (format!("nothing that owns {target} received the packet"), Disposition::Dropped)
    };
    Trace { verdict: "dropped", delivered_to: None, drop_reason: Some(reason), disposition, hops: p.hops, reply: None }
}

fn originate(r: &mut Runner, s: usize, pkt: IpPkt, want_reply_at: Option<usize>) {
    r.w.stacks[s].stack.verbose = r.record;
    let res = r.w.stacks[s].stack.originate(pkt);
    let src = r.w.stacks[s].stack.devs[0].mac;
    let input = Frame { src, dst: src, vlan: None, payload: Payload::Ip { src: pkt.src, dst: pkt.dst, l4: pkt.l4 } };
    let host = r.w.stacks[s].host.clone();
    let name = r.w.stacks[s].name.clone();
    let kind = if matches!(r.w.stacks[s].kind, StackKind::Namespace(_)) { HopKind::Namespace } else { HopKind::Endpoint };
    let mut prev = input;
    r.hop(&host, kind, &name, format!("sends {}", describe(&pkt)), &input, "1", &mut prev);
    r.stack_result(s, res, input, "1", want_reply_at);
    r.run(want_reply_at);
}

/// Bring the twin to the state of a running cloud: every instance and
/// external host has sent one broadcast (the gratuitous ARP / DHCP request of
/// boot), so bridges and physical switches have learned where each endpoint
/// is, as they have in a real deployment. Without it, the first unicast to an
/// unlearned MAC is flooded everywhere.
///
/// A full boot broadcast costs instances × hosts; beyond
/// [`FULL_WARM_UP_HOSTS`] hosts the broadcast teaches the sender's own host
/// and the physical switch only, and remote bridges learn on first contact.
pub fn warm_up(w: &mut World) {
    let r_contain = w.hosts.len() > FULL_WARM_UP_HOSTS;
    let mut r = Runner {
        w,
        l4: L4::Icmp { reply: false, id: 0 },
        record: false,
        contain: r_contain,
        queue: VecDeque::new(),
        phase: Phase { hops: vec![], delivered: None, drops: vec![], looped: false },
    };
    let endpoints: Vec<usize> =
        (0..r.w.stacks.len()).filter(|&s| matches!(r.w.stacks[s].kind, StackKind::Instance | StackKind::ExternalHost)).collect();
    for s in endpoints {
        let d = &r.w.stacks[s].stack.devs[0];
        let Some(ip) = d.addrs.first().map(|a| a.addr()) else { continue };
        let garp = Frame {
            src: d.mac,
            dst: dvr_model::MacAddr::BROADCAST,
            vlan: None,
            payload: Payload::Arp { op: crate::packet::ARP_REQUEST, sha: d.mac, spa: ip, tha: dvr_model::MacAddr::ZERO, tpa: ip },
        };
        if let Some(ev) = Runner::from_attach(r.w.stacks[s].attach[0]) {
            r.queue.push_back((ev, garp, "boot".into()));
        }
        r.run(None);
    }
}

/// Trace a packet from an endpoint to an address, then its reply. The world
/// keeps what the trace taught it (MAC tables, ARP caches, conntrack).
pub fn trace(w: &mut World, req: &TraceRequest) -> Result<Trace, TraceError> {
    run_trace(w, req, true)
}

/// Like [`trace`] but records no hops: only verdicts, reasons and who
/// received what. The fast path for reachability checks and benchmarks.
pub fn reach(w: &mut World, req: &TraceRequest) -> Result<Trace, TraceError> {
    run_trace(w, req, false)
}

fn run_trace(w: &mut World, req: &TraceRequest, record: bool) -> Result<Trace, TraceError> {
    let s = w.endpoint(&req.from).ok_or_else(|| TraceError::UnknownEndpoint(req.from.clone(), w.endpoint_names().join(", ")))?;
    if let Some(mac) = req.spoof_mac {
        w.stacks[s].stack.devs[0].mac = mac;
    }
    if let Some(ip) = req.spoof_ip {
        let a = &mut w.stacks[s].stack.devs[0].addrs[0];
        *a = ipnet::Ipv4Net::new(ip, a.prefix_len()).expect("prefix");
        for r in &mut w.stacks[s].stack.routes {
            if r.src.is_some() {
                r.src = Some(ip);
            }
        }
    }
    let src = w.stacks[s].stack.devs[0].addrs[0].addr();
    let pkt = IpPkt { src, dst: req.to, l4: req.l4 };
    let mut r = Runner {
        w,
        l4: req.l4,
        record,
        contain: false,
        queue: VecDeque::new(),
        phase: Phase { hops: vec![], delivered: None, drops: vec![], looped: false },
    };
    originate(&mut r, s, pkt, None);
    let phase = std::mem::replace(&mut r.phase, Phase { hops: vec![], delivered: None, drops: vec![], looped: false });
    let answer = phase.delivered.and_then(|(ds, _, a)| a.map(|a| (ds, a)));
    let mut request = finish(r.w, phase, req.to);
    if let Some((ds, a)) = answer {
        originate(&mut r, ds, a, Some(s));
        let phase = std::mem::replace(&mut r.phase, Phase { hops: vec![], delivered: None, drops: vec![], looped: false });
        request.reply = Some(Box::new(finish(r.w, phase, a.dst)));
    }
    Ok(request)
}

/// The hops that carried the delivered packet itself: the ancestors (by copy
/// label) of the delivering hop, restricted to the traced packet (no ARP).
pub fn delivery_path(t: &Trace) -> Vec<&Hop> {
    let Some(end) = t.hops.iter().rposition(|h| h.fate.as_deref() == Some("delivered")) else {
        return vec![];
    };
    let label = &t.hops[end].copy;
    let is_ancestor = |c: &str| label == c || label.starts_with(&format!("{c}."));
    t.hops[..=end].iter().filter(|h| is_ancestor(&h.copy) && h.packet.proto != "arp").collect()
}
