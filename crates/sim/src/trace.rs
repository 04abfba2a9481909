//! Following a packet, and then its reply, through the whole twin: every
//! table, flow, NORMAL decision, wire, ARP exchange, rule, route and NAT
//! rewrite becomes a [`Hop`]. Frames are processed in FIFO order from one
//! queue, so floods are followed copy by copy and each copy's fate is in
//! the trace; copies are labelled `1`, `1.2`, `1.2.1` … by lineage.

use crate::netfilter::NatStep;
use crate::ofp::{Meta, OfStep};
use crate::packet::{Encap, Frame, L4, Payload};
use crate::stack::{Ignored, IpPkt, KernelDrop, SpecialAction, StackResult, StackStep};
use crate::step::changes;
pub use crate::step::{
    ArpDecline, ArpFailure, Change, Disposition, DropReason, Dropped, Fate, Hop, HopKind, Lineage, NormalDecision, Place, SpecialStep,
    Step, Verdict,
};
use crate::world::{Attach, StackKind, World};
use serde::Serialize;
use std::collections::VecDeque;
use std::net::Ipv4Addr;

/// Deployments up to this many hosts get a full warm-up (see [`warm_up`]).
pub const FULL_WARM_UP_HOSTS: usize = 64;

/// Events processed before a trace is declared a loop.
pub const MAX_EVENTS: usize = 20_000;

/// A trace of one direction: its steps in processing order (each copy of a
/// flooded frame labelled by [`Lineage`], so the steps form a tree of
/// copies), and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// How it ended.
    pub verdict: Verdict,
    /// Steps.
    pub hops: Vec<Hop>,
    /// The reply's trace (request only, when delivered).
    pub reply: Option<Box<Trace>>,
    /// What the reader needs to interpret the verdict (e.g. what the
    /// anti-spoofing tables do and do not protect when the trace spoofs).
    pub notes: Vec<String>,
}

impl Trace {
    /// The coarse class of the verdict.
    pub fn disposition(&self) -> Disposition {
        self.verdict.disposition()
    }
    /// Whether this direction and (for a request) its reply were delivered.
    pub fn round_trip(&self) -> bool {
        self.verdict.is_delivered() && self.reply.as_ref().is_some_and(|r| r.verdict.is_delivered())
    }
    /// The copies of this direction as a tree: each node is one copy with
    /// its hops, children are the copies made from it (floods).
    pub fn copy_tree(&self) -> Vec<CopyNode<'_>> {
        fn insert<'a>(nodes: &mut Vec<CopyNode<'a>>, h: &'a Hop, depth: usize) {
            let want = &h.copy.0[..depth.min(h.copy.0.len())];
            if let Some(n) = nodes.iter_mut().rev().find(|n| n.copy.0.as_slice() == want) {
                if h.copy.0.len() == depth {
                    n.hops.push(h);
                } else {
                    insert(&mut n.children, h, depth + 1);
                }
                return;
            }
            let mut n = CopyNode { copy: Lineage(want.into()), hops: vec![], children: vec![] };
            if h.copy.0.len() == depth {
                n.hops.push(h);
            } else {
                insert(&mut n.children, h, depth + 1);
            }
            nodes.push(n);
        }
        let mut roots = Vec::new();
        for h in &self.hops {
            insert(&mut roots, h, 1);
        }
        roots
    }
}

/// One copy of a frame in [`Trace::copy_tree`].
#[derive(Debug, Clone)]
pub struct CopyNode<'a> {
    /// Its lineage.
    pub copy: Lineage,
    /// Its own hops, in order.
    pub hops: Vec<&'a Hop>,
    /// Copies made from it.
    pub children: Vec<CopyNode<'a>>,
}

impl Serialize for Trace {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            verdict: &'static str,
            delivered_to: Option<&'a str>,
            drop_reason: Option<String>,
            disposition: Disposition,
            #[serde(skip_serializing_if = "Option::is_none")]
            dropped: Option<&'a Dropped>,
            hops: &'a [Hop],
            #[serde(skip_serializing_if = "Option::is_none")]
            reply: Option<&'a Trace>,
            #[serde(skip_serializing_if = "<[String]>::is_empty")]
            notes: &'a [String],
        }
        Out {
            verdict: if self.verdict.is_delivered() { "delivered" } else { "dropped" },
            delivered_to: self.verdict.delivered_to(),
            drop_reason: self.verdict.dropped().map(ToString::to_string),
            disposition: self.disposition(),
            dropped: self.verdict.dropped(),
            hops: &self.hops,
            reply: self.reply.as_deref(),
            notes: &self.notes,
        }
        .serialize(s)
    }
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

/// The `where` of underlay hops: the routed network joining the VTEPs.
pub const UNDERLAY: &str = "underlay";

#[derive(Debug, Clone, Copy)]
enum Ev {
    Bridge {
        host: usize,
        bridge: usize,
        port: usize,
    },
    /// Sent into a tunnel port with this key: crosses the underlay next.
    Underlay {
        host: usize,
        bridge: usize,
        port: usize,
        tun_id: u64,
    },
    /// Decapsulated by a tunnel port: enters its bridge with tunnel metadata.
    Tunnel {
        host: usize,
        bridge: usize,
        port: usize,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        tun_id: u64,
    },
    Stack {
        stack: usize,
        dev: usize,
    },
    Wire {
        wire: usize,
        port: usize,
    },
}

/// Where a copy died, by index (names are resolved only for the verdict).
#[derive(Debug, Clone, Copy)]
enum Loc {
    Bridge { host: usize, bridge: usize },
    Stack(usize),
    Underlay,
}

struct DropRec {
    at: Loc,
    reason: DropReason,
    traced: bool,
    frame: Frame,
}

impl DropRec {
    fn resolve(&self, w: &World) -> Dropped {
        let at = match self.at {
            Loc::Bridge { host, bridge } => {
                Place { host: w.hosts[host].name.clone(), kind: HopKind::Openflow, where_: w.hosts[host].bridges[bridge].name.clone() }
            }
            Loc::Stack(s) => stack_place(w, s),
            Loc::Underlay => Place { host: "fabric".into(), kind: HopKind::Wire, where_: UNDERLAY.into() },
        };
        Dropped { at: Some(at), reason: self.reason.clone() }
    }
}

fn stack_kind(w: &World, s: usize) -> HopKind {
    if matches!(w.stacks[s].kind, StackKind::Namespace(_)) { HopKind::Namespace } else { HopKind::Endpoint }
}

fn stack_place(w: &World, s: usize) -> Place {
    Place { host: w.stacks[s].host.clone(), kind: stack_kind(w, s), where_: w.stacks[s].name.clone() }
}

/// Where the hops of a trace go. [`trace`] records them ([`Recorder`]);
/// [`reach`] throws them away before they are built ([`NoSink`]), so a
/// reachability check pays for no names, texts or lineages.
pub trait Sink {
    /// Record the hop `make` builds; its index, or `None` when not recording.
    fn hop(&mut self, make: impl FnOnce() -> Hop) -> Option<usize>;
    /// The recorded hop at `i`.
    fn get_mut(&mut self, i: usize) -> Option<&mut Hop>;
    /// Index of the last recorded hop.
    fn last(&self) -> Option<usize>;
    /// The lineage of the `i`-th of `n` copies made from `parent`.
    fn child(&self, parent: &Lineage, i: usize, n: usize) -> Lineage;
    /// Hand over the hops recorded so far and start afresh.
    fn take(&mut self) -> Vec<Hop>;
}

/// Records every hop (`dvr trace`).
#[derive(Debug)]
pub struct Recorder {
    hops: Vec<Hop>,
}

/// Hops a direction of a typical trace records: reserved up front, so the
/// list is not regrown (and moved) hop by hop.
const TYPICAL_HOPS: usize = 48;

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder { hops: Vec::with_capacity(TYPICAL_HOPS) }
    }
}

impl Sink for Recorder {
    fn hop(&mut self, make: impl FnOnce() -> Hop) -> Option<usize> {
        self.hops.push(make());
        Some(self.hops.len() - 1)
    }
    fn get_mut(&mut self, i: usize) -> Option<&mut Hop> {
        self.hops.get_mut(i)
    }
    fn last(&self) -> Option<usize> {
        self.hops.len().checked_sub(1)
    }
    fn child(&self, parent: &Lineage, i: usize, n: usize) -> Lineage {
        parent.child(i, n)
    }
    fn take(&mut self) -> Vec<Hop> {
        std::mem::replace(&mut self.hops, Vec::with_capacity(TYPICAL_HOPS))
    }
}

/// Records nothing (`reach`, warm-up, benchmarks).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoSink;

impl Sink for NoSink {
    fn hop(&mut self, _: impl FnOnce() -> Hop) -> Option<usize> {
        None
    }
    fn get_mut(&mut self, _: usize) -> Option<&mut Hop> {
        None
    }
    fn last(&self) -> Option<usize> {
        None
    }
    fn child(&self, _: &Lineage, _: usize, _: usize) -> Lineage {
        Lineage::default()
    }
    fn take(&mut self) -> Vec<Hop> {
        Vec::new()
    }
}

struct Phase {
    delivered: Option<(usize, IpPkt, Option<IpPkt>)>,
    drops: Vec<DropRec>,
    looped: bool,
    /// Flooded copies a large lazy twin passed over: (wire, tag) → hosts.
    passed_over: std::collections::BTreeMap<(usize, Option<u16>), usize>,
}

impl Phase {
    fn new() -> Phase {
        Phase { delivered: None, drops: vec![], looped: false, passed_over: Default::default() }
    }
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

/// What physical switches do with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contain {
    /// Learn and forward (a trace, a full warm-up).
    Off,
    /// Learn, do not forward (a contained warm-up).
    Learn,
    /// Neither (a lazily built host's own warm-up: the switch learned its
    /// endpoints when the twin was warmed).
    Silent,
}

struct Runner<'w, S: Sink> {
    w: &'w mut World,
    l4: L4,
    sink: S,
    /// What physical switches do with frames (contained warm-ups).
    contain: Contain,
    queue: VecDeque<(Ev, Frame, Lineage)>,
    phase: Phase,
}

/// A stack's typed step with its device and route indices resolved to names.
fn stack_step(w: &World, s: usize, step: &StackStep) -> Step {
    let st = &w.stacks[s].stack;
    let dev = |d: usize| st.devs[d].name.clone();
    match step {
        StackStep::ArpLearned { dev: d, ip, mac } => Step::ArpLearned { dev: dev(*d), ip: *ip, mac: *mac },
        StackStep::ArpAnswered { dev: d, ip } => Step::ArpAnswered { dev: dev(*d), ip: *ip },
        StackStep::ProxyArp { dev: d, ip, out } => Step::ProxyArp { dev: dev(*d), ip: *ip, out: dev(*out) },
        StackStep::Routed { rule, route } => {
            let rule = rule.map(|r| st.rules[r].clone());
            let table = rule.as_ref().map_or(dvr_plan::TableRef::Main, |r| dvr_plan::TableRef::Id(r.table));
            Step::Route { rule, table, route: st.routes[*route].clone() }
        }
        StackStep::Local(p) => Step::Deliver { endpoint: w.stacks[s].label.clone(), packet: *p },
        StackStep::LocalOut(p) => Step::LocalOut { packet: *p },
        StackStep::Neighbour { dev: d, nexthop, mac, permanent } => {
            Step::Neighbour { dev: dev(*d), nexthop: *nexthop, mac: *mac, permanent: *permanent }
        }
        StackStep::ArpRequest { dev: d, nexthop } => Step::ArpRequest { dev: dev(*d), nexthop: *nexthop },
        StackStep::ArpPending { nexthop } => Step::ArpPending { nexthop: *nexthop },
        StackStep::Nat(NatStep::Chain { hook, rule, rewrite }, _) => {
            Step::Nat { hook: *hook, rule: rule.clone(), rewrite: rewrite.clone() }
        }
        StackStep::Nat(NatStep::Conntrack { hook, rewrite }, _) => Step::Conntrack { hook: *hook, rewrite: *rewrite },
        StackStep::Drop(k) => Step::Drop { reason: kernel_drop(w, s, k) },
        StackStep::Ignored(Ignored::NotOurMac { dev: d, dst }) => Step::NotOurMac { dev: dev(*d), dst: *dst, mac: st.devs[*d].mac },
        StackStep::Ignored(Ignored::ArpNotAnswered { dev: d, ip, why }) => {
            let why = match why {
                crate::stack::ArpDecline::OnOtherDevice(o) => ArpDecline::OnOtherDevice { dev: dev(*o) },
                crate::stack::ArpDecline::NoProxyRoute => ArpDecline::NoProxyRoute,
                crate::stack::ArpDecline::NotLocal => ArpDecline::NotLocal,
            };
            Step::ArpIgnored { dev: dev(*d), ip: *ip, why }
        }
        StackStep::Ignored(Ignored::GroupNotJoined { dev: d, group }) => Step::GroupNotJoined { dev: dev(*d), group: *group },
        StackStep::Special { dst, kind: _, action } => Step::Special {
            dst: *dst,
            action: match *action {
                SpecialAction::LocalDelivery { to } => SpecialStep::LocalDelivery { to },
                SpecialAction::SentOnLink { dev: d, mac } => SpecialStep::SentOnLink { dev: dev(d), mac },
                SpecialAction::ReceivedNotForwarded { dev: d, forwarding } => SpecialStep::ReceivedNotForwarded { dev: dev(d), forwarding },
            },
        },
    }
}

fn kernel_drop(w: &World, s: usize, k: &KernelDrop) -> DropReason {
    let dev = |d: usize| w.stacks[s].stack.devs[d].name.clone();
    match *k {
        KernelDrop::Tagged { dev: d } => DropReason::Tagged { dev: dev(d) },
        KernelDrop::NoRoute { dst } => DropReason::NoRoute { dst },
        KernelDrop::NotForwarding { dst } => DropReason::NotForwarding { dst },
        KernelDrop::RpFilter { src, dev: d } => DropReason::RpFilter { src, dev: dev(d) },
        KernelDrop::Martian { dst, dev: d } => DropReason::Martian { dst, dev: dev(d) },
    }
}

fn of_step(w: &World, host: usize, bridge: usize, step: &OfStep) -> Step {
    bridge_step(&w.hosts[host].bridges[bridge], step)
}

/// A bridge's typed step with its port indices resolved to names.
fn bridge_step(br: &crate::ofp::OfBridge, step: &OfStep) -> Step {
    match step {
        OfStep::Matched { table, flow } => Step::Table { table: *table, table_name: table_name(br.kind, *table), flow: flow.clone() },
        OfStep::Miss { table, fatal } => Step::Miss { table: *table, table_name: table_name(br.kind, *table), fatal: *fatal },
        OfStep::Normal { vlan, out, learned } => Step::Normal { vlan: *vlan, decision: normal_decision(br, out, *learned) },
        OfStep::Event(e) => Step::Ovs { event: e.clone() },
        OfStep::Conntrack { zone, state, mark, commit, recirc } => Step::OvsCt {
            zone: *zone,
            state: dvr_openflow::CtStateMatch { flags: *state, mask: *state }.to_string(),
            mark: *mark,
            commit: *commit,
            recirc: *recirc,
        },
        OfStep::Recirculated { table } => Step::Recirculate { table: *table, table_name: table_name(br.kind, *table) },
        OfStep::Conjunction { id, clauses } => Step::Conjunction { id: *id, clauses: clauses.clone() },
    }
}

fn normal_decision(br: &crate::ofp::OfBridge, out: &[usize], learned: bool) -> NormalDecision {
    match (out, learned) {
        ([], _) => NormalDecision::NoPort,
        ([p], true) => NormalDecision::Learned { port: br.ports[*p].name.clone() },
        (ps, _) => NormalDecision::Flood { ports: ps.iter().map(|&p| br.ports[p].name.clone()).collect() },
    }
}

/// Why a bridge sent a frame nowhere, from its last step.
fn bridge_drop(w: &World, host: usize, bridge: usize, last: Option<&OfStep>) -> DropReason {
    bridge_drop_in(&w.hosts[host].bridges[bridge], last)
}

fn bridge_drop_in(br: &crate::ofp::OfBridge, last: Option<&OfStep>) -> DropReason {
    match last {
        Some(OfStep::Matched { table, flow }) => DropReason::Flow { table: *table, flow: flow.clone() },
        Some(OfStep::Miss { table, fatal }) => {
            DropReason::TableMiss { table: *table, table_name: table_name(br.kind, *table), fatal: *fatal }
        }
        Some(OfStep::Normal { vlan, out, learned }) => DropReason::Normal { vlan: *vlan, decision: normal_decision(br, out, *learned) },
        Some(OfStep::Event(e)) => DropReason::Ovs { event: e.clone() },
        Some(OfStep::Conntrack { .. } | OfStep::Recirculated { .. } | OfStep::Conjunction { .. }) | None => {
            DropReason::Ovs { event: crate::ofp::OvsEvent::ResubmitDepthExceeded }
        }
    }
}

impl<S: Sink> Runner<'_, S> {
    /// Record a hop (when the sink records; place and step are built only
    /// then); `prev` is the frame before it, updated to `packet` so the next
    /// hop's changes are its own.
    fn hop(
        &mut self,
        at: impl FnOnce(&World) -> Place,
        step: impl FnOnce(&World) -> Step,
        packet: &Frame,
        copy: &Lineage,
        prev: &mut Frame,
    ) -> Option<usize> {
        let w = &*self.w;
        let p = *prev;
        let i = self.sink.hop(|| {
            let at = at(w);
            Hop {
                host: at.host,
                kind: at.kind,
                where_: at.where_,
                step: step(w),
                packet: packet.into(),
                copy: copy.clone(),
                changed: changes(&p, packet),
                fate: None,
            }
        });
        if i.is_some() {
            *prev = *packet;
        }
        i
    }

    fn set_fate(&mut self, i: Option<usize>, fate: Fate) {
        if let Some(h) = i.and_then(|i| self.sink.get_mut(i)) {
            h.fate = Some(fate);
        }
    }

    fn enqueue(&mut self, targets: Vec<(Ev, Frame)>, copy: &Lineage) {
        let n = targets.len();
        for (i, (ev, f)) in targets.into_iter().enumerate() {
            let label = self.sink.child(copy, i, n);
            self.queue.push_back((ev, f, label));
        }
    }

    fn from_attach(a: Attach) -> Option<Ev> {
        match a {
            Attach::Bridge { host, bridge, port } => Some(Ev::Bridge { host, bridge, port }),
            Attach::Stack { stack, dev } => Some(Ev::Stack { stack, dev }),
            Attach::Wire { wire, port } => Some(Ev::Wire { wire, port }),
            // Tunnel ports are handled where the bridge outputs (they need the key).
            Attach::None | Attach::Pending { .. } | Attach::Tunnel { .. } => None,
        }
    }

    fn stack_result(&mut self, s: usize, r: StackResult, input: Frame, copy: &Lineage, want_reply_at: Option<usize>) {
        let traced = is_traced(&input, self.l4);
        let mut prev = input;
        let mut shown = input;
        for step in &r.steps {
            if let StackStep::Nat(_, p) = step {
                shown.payload = Payload::Ip { src: p.src, dst: p.dst, l4: p.l4 };
            }
            let h = self.hop(|w| stack_place(w, s), |w| stack_step(w, s, step), &shown, copy, &mut prev);
            match step {
                StackStep::Ignored(_) => self.set_fate(h, Fate::Ignored),
                StackStep::Drop(k) => {
                    self.set_fate(h, Fate::Dropped);
                    let reason = kernel_drop(self.w, s, k);
                    self.phase.drops.push(DropRec { at: Loc::Stack(s), reason, traced, frame: input });
                }
                _ => {}
            }
        }
        if let Some(p) = r.delivered {
            let matches_phase = match want_reply_at {
                None => p.l4 == self.l4 && self.phase.delivered.is_none(),
                Some(origin) => origin == s && p.l4 == self.l4.reversed() && self.phase.delivered.is_none(),
            };
            if matches_phase {
                let last = self.sink.last();
                self.set_fate(last, Fate::Delivered);
                self.phase.delivered = Some((s, p, r.answer));
            } else if want_reply_at.is_none() && p.l4 == self.l4 {
                // A broadcast or multicast reaches several namespaces: the
                // first is the verdict's, each copy shows where it ended.
                let last = self.sink.last();
                self.set_fate(last, Fate::Delivered);
            }
        }
        let mut targets = Vec::new();
        for (dev, f) in r.out {
            self.hop(
                |w| stack_place(w, s),
                |w| Step::Transmit { dev: w.stacks[s].stack.devs[dev].name.clone(), frame: f },
                &f,
                copy,
                &mut prev,
            );
            if let Some(ev) = Self::from_attach(self.w.stack_attach(s, dev)) {
                targets.push((ev, f));
            }
        }
        self.enqueue(targets, copy);
    }

    fn process(&mut self, ev: Ev, f: Frame, copy: Lineage, want_reply_at: Option<usize>) {
        match ev {
            Ev::Stack { stack, dev } => {
                let r = self.w.stacks[stack].stack.receive(dev, f);
                self.stack_result(stack, r, f, &copy, want_reply_at);
            }
            Ev::Bridge { host, bridge, port } => self.bridge(host, bridge, port, f, Meta::default(), copy),
            Ev::Underlay { host, bridge, port, tun_id } => self.underlay(host, bridge, port, tun_id, f, copy),
            Ev::Tunnel { host, bridge, port, src, dst, tun_id } => {
                let meta = Meta { tun_id, tun_src: Some(src), tun_dst: Some(dst), ..Meta::default() };
                self.bridge(host, bridge, port, f, meta, copy);
            }
            Ev::Wire { wire, port } => {
                let w = &mut self.w.wires[wire];
                let in_tag = w.ports[port].1;
                let mut frame = f;
                if let Some(t) = in_tag {
                    frame.vlan = Some(t);
                }
                match self.contain {
                    Contain::Off => {}
                    Contain::Learn => {
                        w.mac_table.insert(frame.src, port);
                        return;
                    }
                    Contain::Silent => return,
                }
                w.mac_table.insert(frame.src, port);
                let known = if frame.dst.is_multicast() { None } else { w.mac_table.get(&frame.dst).copied() };
                let outs: Vec<usize> = match known {
                    Some(p) if p == port => vec![],
                    Some(p) => vec![p],
                    None => (0..w.ports.len()).filter(|&p| p != port).collect(),
                };
                let mut prev = frame;
                self.hop(
                    |w| Place { host: "fabric".into(), kind: HopKind::Wire, where_: w.wires[wire].name.clone() },
                    |w| {
                        let wr = &w.wires[wire];
                        Step::Wire {
                            network: wr.name.clone(),
                            vlan: frame.vlan,
                            from: wr.ports[port].2.clone(),
                            to: outs.iter().map(|&p| wr.ports[p].2.clone()).collect(),
                            learned: known.is_some(),
                        }
                    },
                    &frame,
                    &copy,
                    &mut prev,
                );
                let mut targets = Vec::new();
                for p in outs {
                    if known.is_none() && self.w.flood_passes_over(wire, p, frame.vlan) {
                        *self.phase.passed_over.entry((wire, frame.vlan)).or_default() += 1;
                        continue;
                    }
                    let tag = self.w.wires[wire].ports[p].1;
                    let a = self.w.wire_attach(wire, p);
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

    /// A frame entering `bridge` of `host` by `port` with metadata `meta`
    /// (zero, or the tunnel fields of a decapsulated frame).
    fn bridge(&mut self, host: usize, bridge: usize, port: usize, f: Frame, meta: Meta, copy: Lineage) {
        let res = self.w.hosts[host].bridges[bridge].process_meta(port, f, meta);
        let mut prev = f;
        let mut last = None;
        for (i, step) in res.steps.iter().enumerate() {
            let after = res.frame_after(i).unwrap_or(f);
            last = self.hop(|w| bridge_place(w, host, bridge), |w| of_step(w, host, bridge, step), &after, &copy, &mut prev);
        }
        if res.outputs.is_empty() {
            self.set_fate(last, Fate::Dropped);
            let reason = bridge_drop(
                self.w,
                host,
                bridge,
                res.steps
                    .iter()
                    .rev()
                    .find(|s| !matches!(s, OfStep::Conntrack { .. } | OfStep::Recirculated { .. } | OfStep::Conjunction { .. })),
            );
            let traced = is_traced(&f, self.l4);
            self.phase.drops.push(DropRec { at: Loc::Bridge { host, bridge }, reason, traced, frame: f });
            return;
        }
        let mut targets = Vec::new();
        for ((p, out), tun_id) in res.outputs.into_iter().zip(res.tun_ids) {
            match self.w.hosts[host].attach[bridge][p] {
                Attach::None => {
                    let h = self.hop(
                        |w| bridge_place(w, host, bridge),
                        |w| Step::Unattached { port: w.hosts[host].bridges[bridge].ports[p].name.clone() },
                        &out,
                        &copy,
                        &mut prev,
                    );
                    self.set_fate(h, Fate::Dropped);
                }
                // Encapsulated with the flow's tun_id; the underlay hop follows.
                Attach::Tunnel { .. } => targets.push((Ev::Underlay { host, bridge, port: p, tun_id }, out)),
                a => {
                    if let Attach::Bridge { bridge: pb, port: pp, .. } = a {
                        // The tag NORMAL or an output adds on a trunk patch port is
                        // the frame as it enters the peer, not a rewrite of this hop.
                        prev = out;
                        self.hop(
                            |w| bridge_place(w, host, bridge),
                            |w| {
                                let hd = &w.hosts[host];
                                Step::Patch {
                                    port: hd.bridges[bridge].ports[p].name.clone(),
                                    to_bridge: hd.bridges[pb].name.clone(),
                                    to_port: hd.bridges[pb].ports[pp].name.clone(),
                                }
                            },
                            &out,
                            &copy,
                            &mut prev,
                        );
                    }
                    targets.extend(Self::from_attach(a).map(|ev| (ev, out)));
                }
            }
        }
        self.enqueue(targets, &copy);
    }

    /// A frame sent into tunnel port `port` of `bridge` on `host` with key
    /// `tun_id`: VXLAN-encapsulated from this host's `local_ip` to the
    /// port's `remote_ip`, across the underlay, and decapsulated by the
    /// receiving host's tunnel port for this host (or dropped when there is none).
    fn underlay(&mut self, host: usize, bridge: usize, port: usize, tun_id: u64, f: Frame, copy: Lineage) {
        let Attach::Tunnel { local, remote, dst_port } = self.w.hosts[host].attach[bridge][port] else { return };
        // VXLAN carries 24 bits of the key.
        let encap = Encap { src: local, dst: remote, vni: (tun_id & 0xff_ffff) as u32, udp_dst: dst_port };
        if self.contain != Contain::Off {
            // Contained warm-ups stop at the host's edge, as on the wires.
            return;
        }
        let peer = self.w.tunnel_peer(local, remote);
        let mut prev = f;
        let h = self.hop(
            |_| Place { host: "fabric".into(), kind: HopKind::Wire, where_: UNDERLAY.into() },
            |w| {
                let name = |h: usize, b: usize, p: usize| format!("{}:{}", w.hosts[h].name, w.hosts[h].bridges[b].ports[p].name);
                Step::Tunnel { encap, from: name(host, bridge, port), to: peer.map(|(h, b, p)| name(h, b, p)) }
            },
            &f,
            &copy,
            &mut prev,
        );
        if let Some(hop) = h.and_then(|i| self.sink.get_mut(i)) {
            hop.packet.tunnel = Some(encap);
        }
        match peer {
            Some((h2, b2, p2)) => {
                let ev = Ev::Tunnel { host: h2, bridge: b2, port: p2, src: local, dst: remote, tun_id };
                self.enqueue(vec![(ev, f)], &copy);
            }
            None => {
                self.set_fate(h, Fate::Dropped);
                let traced = is_traced(&f, self.l4);
                self.phase.drops.push(DropRec { at: Loc::Underlay, reason: DropReason::NoTunnel { encap }, traced, frame: f });
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

fn bridge_place(w: &World, host: usize, bridge: usize) -> Place {
    Place { host: w.hosts[host].name.clone(), kind: HopKind::Openflow, where_: w.hosts[host].bridges[bridge].name.clone() }
}

fn table_name(kind: Option<dvr_plan::tables::BridgeKind>, t: u8) -> Option<&'static str> {
    kind.and_then(|k| dvr_plan::tables::lookup(k, dvr_openflow::TableId(t))).map(|d| d.name)
}

fn finish(w: &World, p: Phase, hops: Vec<Hop>, target: Ipv4Addr) -> Trace {
    let verdict = if let Some((s, _, _)) = p.delivered {
        Verdict::Delivered { to: w.stacks[s].label.clone() }
    } else if p.looped {
        Verdict::Dropped(Dropped { at: None, reason: DropReason::Loop { events: MAX_EVENTS } })
    } else if let Some(d) = p.drops.iter().rev().find(|d| d.traced) {
        Verdict::Dropped(d.resolve(w))
    } else if let Some((_, s, dev, ip)) = w
        .stacks
        .iter()
        .enumerate()
        .filter_map(|(i, n)| n.stack.unresolved().first().map(|(d, ip)| (n.order, i, d.clone(), *ip)))
        .min_by_key(|x| x.0)
    {
        // An answer that was sent and dropped (e.g. by anti-spoofing) explains
        // more than the flooded copies of the request that died elsewhere.
        let answer_drop =
            p.drops.iter().rev().find(|d| matches!(d.frame.payload, Payload::Arp { op: crate::packet::ARP_REPLY, spa, .. } if spa == ip));
        let arp_drop = p.drops.iter().rev().find(|d| matches!(d.frame.payload, Payload::Arp { tpa, .. } if tpa == ip));
        let cause = match (answer_drop, arp_drop) {
            (Some(d), _) => ArpFailure::AnswerDropped { drop: Box::new(d.resolve(w)) },
            (None, Some(d)) => ArpFailure::RequestDropped { drop: Box::new(d.resolve(w)) },
            (None, None) => ArpFailure::NoAnswer,
        };
        Verdict::Dropped(Dropped { at: Some(stack_place(w, s)), reason: DropReason::NeighbourUnreachable { ip, dev, cause } })
    } else if let Some(d) = p.drops.last() {
        Verdict::Dropped(d.resolve(w))
    } else {
        Verdict::Dropped(Dropped { at: None, reason: DropReason::NotReceived { target } })
    };
    let notes = p
        .passed_over
        .iter()
        .map(|(&(wire, vlan), n)| {
            let tag = vlan.map_or("untagged frames".to_string(), |v| format!("VLAN {v}"));
            format!(
                "{n} hosts on {} carry no network with {tag}: their br-int drops the flooded copy at table 0, so the lazy twin \
                 did not build them (more than {} hosts)",
                w.wires[wire].name,
                w.flood_limit()
            )
        })
        .collect();
    Trace { verdict, hops, reply: None, notes }
}

fn originate<S: Sink>(r: &mut Runner<S>, s: usize, pkt: IpPkt, want_reply_at: Option<usize>) {
    let res = r.w.stacks[s].stack.originate(pkt);
    let src = r.w.stacks[s].stack.devs[0].mac;
    let input = Frame { src, dst: src, vlan: None, payload: Payload::Ip { src: pkt.src, dst: pkt.dst, l4: pkt.l4 } };
    let mut prev = input;
    let root = r.sink.child(&Lineage::root(), 0, 1);
    r.hop(|w| stack_place(w, s), |_| Step::Send { packet: pkt }, &input, &root, &mut prev);
    r.stack_result(s, res, input, &root, want_reply_at);
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
///
/// A lazy twin ([`World::lazy`]) stays lazy: beyond that size its switches
/// learn where each instance is without building its host, and a host built
/// later replays its own instances' broadcasts then ([`warm_host`]).
pub fn warm_up(w: &mut World) {
    let contain = w.hosts.len() > FULL_WARM_UP_HOSTS;
    let endpoints: Vec<usize> = if w.is_lazy() && contain {
        let mut eps = w.warm_unbuilt();
        eps.extend((0..w.stacks.len()).filter(|&s| w.stacks[s].kind == StackKind::ExternalHost));
        eps
    } else {
        w.materialize_all();
        (0..w.stacks.len()).filter(|&s| matches!(w.stacks[s].kind, StackKind::Instance | StackKind::ExternalHost)).collect()
    };
    broadcast(w, &endpoints, if contain { Contain::Learn } else { Contain::Off });
}

/// The boot broadcasts of the instances on a lazily built host, contained
/// to the host (the physical switch already learned them in [`warm_up`]).
pub(crate) fn warm_host(w: &mut World, host: &str) {
    let endpoints: Vec<usize> =
        (0..w.stacks.len()).filter(|&s| w.stacks[s].kind == StackKind::Instance && w.stacks[s].host == host).collect();
    broadcast(w, &endpoints, Contain::Silent);
}

/// Each endpoint's gratuitous ARP, one after another.
fn broadcast(w: &mut World, endpoints: &[usize], contain: Contain) {
    let mut r = Runner { w, l4: L4::Icmp { reply: false, id: 0 }, sink: NoSink, contain, queue: VecDeque::new(), phase: Phase::new() };
    for &s in endpoints {
        let d = &r.w.stacks[s].stack.devs[0];
        let Some(ip) = d.addrs.first().map(|a| a.addr()) else { continue };
        let garp = Frame {
            src: d.mac,
            dst: dvr_model::MacAddr::BROADCAST,
            vlan: None,
            payload: Payload::Arp { op: crate::packet::ARP_REQUEST, sha: d.mac, spa: ip, tha: dvr_model::MacAddr::ZERO, tpa: ip },
        };
        if let Some(ev) = Runner::<NoSink>::from_attach(r.w.stack_attach(s, 0)) {
            r.queue.push_back((ev, garp, Lineage::default()));
        }
        r.run(None);
    }
}

/// Trace a packet from an endpoint to an address, then its reply. The world
/// keeps what the trace taught it (MAC tables, ARP caches, conntrack).
pub fn trace(w: &mut World, req: &TraceRequest) -> Result<Trace, TraceError> {
    run_trace(w, req, Recorder::default())
}

/// Like [`trace`] but records no hops: only verdicts, reasons and who
/// received what. The fast path for reachability checks and benchmarks.
pub fn reach(w: &mut World, req: &TraceRequest) -> Result<Trace, TraceError> {
    run_trace(w, req, NoSink)
}

/// The cached-neighbour case of a spoofing trace: send `req` once under the
/// endpoint's own addresses (unrecorded), so its ARP cache holds the next hop
/// (the destination or its gateway) and the bridges know the path, as after
/// earlier traffic. A spoofed trace after this sends its packet without
/// ARPing first, as a real instance that starts spoofing mid-conversation does.
pub fn prime_neighbours(w: &mut World, req: &TraceRequest) -> Result<(), TraceError> {
    let honest = TraceRequest { spoof_ip: None, spoof_mac: None, ..req.clone() };
    run_trace(w, &honest, NoSink).map(|_| ())
}

/// What tables 24/25 protect and what they do not, for a spoofing trace.
fn spoof_notes(req: &TraceRequest) -> Vec<String> {
    let mut notes = Vec::new();
    if req.spoof_ip.is_none() && req.spoof_mac.is_none() {
        return notes;
    }
    // The plan builds either firewall driver (none declared: `noop`; any
    // security group: `openvswitch`), so the notes say what each one does.
    notes.push(
        "anti-spoofing: br-int table 24 (ARP_SPOOF_TABLE) passes an ARP packet from an instance port only when its sender IP \
         (arp_spa) is the port's own fixed IP; table 25 (MAC_SPOOF_TABLE) passes a frame only when its source MAC is the \
         port's own MAC. Those are the checks of Neutron's `noop` firewall driver (a topology without security groups); \
         with security groups (the `openvswitch` driver) the firewall's table 71 (BASE_EGRESS) makes them instead, for \
         the port's own addresses and its allowed address pairs"
            .into(),
    );
    if req.spoof_mac.is_some() {
        notes.push(
            "a spoofed source MAC dies (table 25, or table 71 with security groups) whether or not the instance has to ARP first".into(),
        );
    }
    if req.spoof_ip.is_some() {
        notes.push(
            "tables 24/25 do not check the source IP of IP packets: that is the security-group firewall's job (port \
             security). Without security groups (the `noop` driver) nothing checks it: a spoofed source IP is stopped only \
             while the instance must ARP first (its ARP names the spoofed address and dies in table 24); with the next hop \
             already in its ARP cache (`--neighbour-cached`) the packets pass table 25 and are delivered, and only the \
             replies are lost: the destination or its router must ARP for the spoofed address, and no answer gets through \
             (the spoofer's own answer claims an address its port does not own and dies in table 24). With security groups \
             (the `openvswitch` driver) table 71 drops an IP packet whose source is neither the port's own IP nor one of its \
             allowed address pairs, ARP cache or not, unless the port has port security disabled"
                .into(),
        );
    }
    notes
}

fn run_trace<S: Sink>(w: &mut World, req: &TraceRequest, sink: S) -> Result<Trace, TraceError> {
    let s = w.endpoint(&req.from).ok_or_else(|| TraceError::UnknownEndpoint(req.from.clone(), w.endpoint_names().join(", ")))?;
    if let Some(mac) = req.spoof_mac {
        w.stacks[s].stack.devs[0].mac = mac;
    }
    if let Some(ip) = req.spoof_ip {
        let a = &mut w.stacks[s].stack.devs[0].addrs[0];
        *a = ipnet::Ipv4Net::new(ip, a.prefix_len()).expect("prefix");
        for r in &mut w.stacks[s].stack.routes {
            if r.src.is_some() {
                std::sync::Arc::make_mut(r).src = Some(ip);
            }
        }
    }
    let src = w.stacks[s].stack.devs[0].addrs[0].addr();
    let pkt = IpPkt { src, dst: req.to, l4: req.l4 };
    let mut r = Runner { w, l4: req.l4, sink, contain: Contain::Off, queue: VecDeque::new(), phase: Phase::new() };
    originate(&mut r, s, pkt, None);
    let phase = std::mem::replace(&mut r.phase, Phase::new());
    let answer = phase.delivered.and_then(|(ds, _, a)| a.map(|a| (ds, a)));
    let hops = r.sink.take();
    let mut request = finish(r.w, phase, hops, req.to);
    request.notes.splice(0..0, spoof_notes(req));
    if let Some((ds, a)) = answer {
        originate(&mut r, ds, a, Some(s));
        let phase = std::mem::replace(&mut r.phase, Phase::new());
        let hops = r.sink.take();
        request.reply = Some(Box::new(finish(r.w, phase, hops, a.dst)));
    }
    Ok(request)
}

/// One frame through one bridge, explained: what `ovs-appctl ofproto/trace`
/// answers, from the twin's OpenFlow engine. `dvr bench` times it against
/// the real `ofproto/trace` on the same flows and packet, so both sides do
/// the same work: match every table, then write the explanation as text.
#[derive(Debug, Clone)]
pub struct BridgeTrace {
    /// The steps (tables matched or missed, NORMAL, skipped actions).
    pub steps: Vec<Step>,
    /// Where copies left the bridge: (port, frame as sent).
    pub outputs: Vec<(crate::Name, Frame)>,
    /// The explanation, one line per step, then one per output (or the drop).
    pub text: String,
}

impl BridgeTrace {
    /// The (table, priority) of each flow that matched, in order: the part
    /// of an `ofproto/trace` answer two implementations must agree on.
    pub fn matched(&self) -> Vec<(u8, u16)> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Table { table, flow, .. } => Some((*table, flow.priority)),
                _ => None,
            })
            .collect()
    }
}

/// Run `frame`, received on port `in_port`, through bridge `br` of `host`
/// and explain it ([`BridgeTrace`]). The bridge learns, as on a real switch.
pub fn trace_bridge(host: &str, br: &mut crate::ofp::OfBridge, in_port: usize, frame: Frame) -> BridgeTrace {
    use std::fmt::Write;
    let res = br.process(in_port, frame);
    let mut text = String::new();
    let mut steps = Vec::with_capacity(res.steps.len());
    for (i, st) in res.steps.iter().enumerate() {
        let step = bridge_step(br, st);
        let before = res.frames.get(i).copied().unwrap_or(frame);
        let after = res.frame_after(i).unwrap_or(frame);
        let _ = write!(text, "{host} {}: {step}", br.name);
        let changed = changes(&before, &after);
        for (k, c) in changed.iter().enumerate() {
            let _ = write!(text, "{}{c}", if k == 0 { "   ⇒ " } else { ", " });
        }
        text.push('\n');
        steps.push(step);
    }
    let outputs: Vec<(crate::Name, Frame)> = res.outputs.iter().map(|(p, f)| (br.ports[*p].name.clone(), *f)).collect();
    for (port, f) in &outputs {
        let _ = writeln!(text, "output to {port}: {f}");
    }
    if outputs.is_empty() {
        let _ = writeln!(text, "dropped: {}", bridge_drop_in(br, res.steps.last()));
    }
    BridgeTrace { steps, outputs, text }
}

/// The hops that carried the delivered packet itself: the ancestors (by copy
/// label) of the delivering hop, restricted to the traced packet (no ARP).
pub fn delivery_path(t: &Trace) -> Vec<&Hop> {
    let Some(end) = t.hops.iter().rposition(|h| h.fate == Some(Fate::Delivered)) else {
        return vec![];
    };
    let label = &t.hops[end].copy;
    t.hops[..=end].iter().filter(|h| h.copy.is_ancestor_of(label) && h.packet.proto != "arp").collect()
}
