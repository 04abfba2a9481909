//! A Linux network stack in one namespace, sans I/O: frames in, frames out,
//! and every decision as a step. Used for Neutron's namespaces and for the
//! endpoints (instances, external hosts, the upstream gateway), which are
//! namespaces with one device and forwarding off.
//!
//! Modelled: L2 acceptance (own MAC or broadcast), ARP with `arp_ignore`,
//! proxy ARP (reply when the route to the target leaves by another device),
//! permanent and learned neighbours with packets parked while ARP resolves,
//! policy routing (rules by priority, `from`/`iif`, `local`/`main`/numbered
//! tables, longest prefix, falling through on a miss), `ip_forward`,
//! `rp_filter` (strict), nat PREROUTING/OUTPUT/POSTROUTING/INPUT with
//! conntrack, local delivery answering ICMP echo (and any TCP/UDP, as a
//! listening service would). Special destinations as Linux treats them
//! ([`Special`]): `0.0.0.0` and `127.0.0.0/8` are answered by the namespace
//! itself and never leave it; the limited broadcast and multicast go to the
//! link's broadcast/multicast MAC, never to a gateway, and are never forwarded;
//! arriving from a network, `0.0.0.0` and `127/8` are martians and dropped.

use crate::name::Name;
use crate::netfilter::{Conntrack, Hook, NatStep, RuleCtx, Skb, Tuple, mangle};
use crate::packet::{ARP_REPLY, ARP_REQUEST, Frame, L4, Payload};
use dvr_model::MacAddr;
use dvr_model::text::Ipv4Text;
use dvr_plan::{IptTable, Route, Rule, RuleSelector, TableRef};
use ipnet::Ipv4Net;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// One device of a stack.
#[derive(Debug, Clone)]
pub struct Dev {
    /// Name.
    pub name: Name,
    /// MAC.
    pub mac: MacAddr,
    /// Addresses with prefix.
    pub addrs: Vec<Ipv4Net>,
    /// `proxy_arp` on this device.
    pub proxy_arp: bool,
}

/// A neighbour entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neigh {
    /// Link-layer address.
    pub mac: MacAddr,
    /// Written by the agent (never replaced by ARP).
    pub permanent: bool,
}

/// Destinations that Linux never sends to a gateway ([`special`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// `0.0.0.0`: as a destination of a local socket it means "this host"
    /// (the kernel sends it to 127.0.0.1 on `lo`); on the wire it is invalid.
    ThisHost,
    /// `127.0.0.0/8`: the `local` table routes it to `lo`; it never leaves.
    Loopback,
    /// `255.255.255.255`: the limited broadcast, sent to ff:ff:ff:ff:ff:ff on
    /// the link of the route's device, never routed.
    Broadcast,
    /// `224.0.0.0/4`: sent to the group's 01:00:5e MAC on the route's device,
    /// never to a gateway; with no multicast routing nothing forwards it.
    Multicast,
}

/// Which [`Special`] destination `dst` is, if any.
pub fn special(dst: Ipv4Addr) -> Option<Special> {
    if dst.is_unspecified() {
        Some(Special::ThisHost)
    } else if dst.is_loopback() {
        Some(Special::Loopback)
    } else if dst.is_broadcast() {
        Some(Special::Broadcast)
    } else if dst.is_multicast() {
        Some(Special::Multicast)
    } else {
        None
    }
}

/// The Ethernet address of an IPv4 multicast group (RFC 1112: 01:00:5e and
/// the group's low 23 bits).
pub fn multicast_mac(group: Ipv4Addr) -> MacAddr {
    let o = group.octets();
    MacAddr([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
}

/// The all-hosts group every Linux interface joins.
const ALL_HOSTS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 1);

/// An IP packet being handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct IpPkt {
    /// Source.
    pub src: Ipv4Addr,
    /// Destination.
    pub dst: Ipv4Addr,
    /// Transport.
    pub l4: L4,
}

impl IpPkt {
    fn tuple(&self) -> Tuple {
        let (sport, dport) = self.l4.ports();
        Tuple { src: self.src, dst: self.dst, proto: self.l4.proto(), sport, dport }
    }
    fn set_tuple(&mut self, t: &Tuple) {
        self.src = t.src;
        self.dst = t.dst;
        self.l4 = match self.l4 {
            L4::Icmp { reply, .. } => L4::Icmp { reply, id: if reply { t.sport } else { t.dport } },
            L4::Tcp { .. } => L4::Tcp { sport: t.sport, dport: t.dport },
            L4::Udp { .. } => L4::Udp { sport: t.sport, dport: t.dport },
        };
    }
}

/// What the stack did, for the trace: typed, with device indices and
/// addresses only, so building a step costs no formatting and a
/// reachability check can afford to produce them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StackStep {
    /// An ARP reply taught the stack a neighbour.
    ArpLearned {
        /// Device it arrived on.
        dev: usize,
        /// The sender's address.
        ip: Ipv4Addr,
        /// The sender's MAC.
        mac: MacAddr,
    },
    /// An ARP request for a local address was answered.
    ArpAnswered {
        /// Device it arrived on (and the answer left by).
        dev: usize,
        /// The address asked for.
        ip: Ipv4Addr,
    },
    /// Proxy ARP answered for an address routed out of another device.
    ProxyArp {
        /// Device the request arrived on.
        dev: usize,
        /// The address asked for.
        ip: Ipv4Addr,
        /// The device the route to `ip` leaves by.
        out: usize,
    },
    /// Policy routing chose a rule and a route.
    Routed {
        /// Index into the stack's rules; `None` for `32766 from all lookup main`.
        rule: Option<usize>,
        /// Index into the stack's routes.
        route: usize,
    },
    /// A received packet was for a local address and was delivered.
    Local(IpPkt),
    /// A locally generated packet was for a local address.
    LocalOut(IpPkt),
    /// The next hop's MAC is known: the packet is sent.
    Neighbour {
        /// Output device.
        dev: usize,
        /// Next hop.
        nexthop: Ipv4Addr,
        /// Its MAC.
        mac: MacAddr,
        /// Written by the agent (else learned by ARP).
        permanent: bool,
    },
    /// No neighbour entry: an ARP request goes out and the packet waits.
    ArpRequest {
        /// Output device.
        dev: usize,
        /// Next hop asked for.
        nexthop: Ipv4Addr,
    },
    /// ARP for the next hop is already pending: the packet waits too.
    ArpPending {
        /// Next hop.
        nexthop: Ipv4Addr,
    },
    /// A NAT decision or conntrack rewrite, with the packet after the hook.
    Nat(NatStep, IpPkt),
    /// The frame or packet was dropped, with why.
    Drop(KernelDrop),
    /// A flooded or misaddressed frame was ignored (not an error).
    Ignored(Ignored),
    /// A destination Linux never sends to a gateway ([`Special`]), and what
    /// the kernel did with it instead.
    Special {
        /// The destination as the packet had it.
        dst: Ipv4Addr,
        /// Which special destination it is.
        kind: Special,
        /// What the kernel did.
        action: SpecialAction,
    },
}

/// What the kernel does with a [`Special`] destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialAction {
    /// Sent by a local socket to `0.0.0.0` or `127/8`: delivered on `lo` to
    /// this namespace (`0.0.0.0` becomes `to` = 127.0.0.1); it never leaves.
    LocalDelivery {
        /// The address it was delivered to.
        to: Ipv4Addr,
    },
    /// The limited broadcast or a multicast group: sent to the link-layer
    /// broadcast/group MAC on the route's device, not to a gateway.
    SentOnLink {
        /// Output device.
        dev: usize,
        /// Destination MAC of the frame.
        mac: MacAddr,
    },
    /// Received limited broadcast or all-hosts multicast: delivered to this
    /// namespace and never forwarded (even with `ip_forward=1`); no echo
    /// answer (`icmp_echo_ignore_broadcasts=1`).
    ReceivedNotForwarded {
        /// Device it arrived on.
        dev: usize,
        /// Whether `ip_forward` is on (it still does not forward).
        forwarding: bool,
    },
}

/// Why the kernel dropped a frame or packet (closed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelDrop {
    /// A VLAN-tagged frame reached a device with no VLAN sub-device.
    Tagged {
        /// Device index.
        dev: usize,
    },
    /// No rule's table had a route to the destination.
    NoRoute {
        /// Destination.
        dst: Ipv4Addr,
    },
    /// Not a local address and `ip_forward=0`.
    NotForwarding {
        /// Destination.
        dst: Ipv4Addr,
    },
    /// Strict reverse-path filtering: the route back leaves by another device.
    RpFilter {
        /// The packet's source.
        src: Ipv4Addr,
        /// Device it arrived on.
        dev: usize,
    },
    /// `0.0.0.0` or `127.0.0.0/8` arriving from a network: a martian.
    Martian {
        /// Destination.
        dst: Ipv4Addr,
        /// Device it arrived on.
        dev: usize,
    },
}

/// Why a frame was ignored without being an error (closed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// A unicast frame for another MAC (a flooded copy).
    NotOurMac {
        /// Device index.
        dev: usize,
        /// The frame's destination MAC.
        dst: MacAddr,
    },
    /// An ARP request this stack does not answer.
    ArpNotAnswered {
        /// Device it arrived on.
        dev: usize,
        /// The address asked for.
        ip: Ipv4Addr,
        /// Why not.
        why: ArpDecline,
    },
    /// A multicast group this namespace has not joined (only all-hosts is):
    /// nothing forwards multicast either.
    GroupNotJoined {
        /// Device it arrived on.
        dev: usize,
        /// The group.
        group: Ipv4Addr,
    },
}

/// Why an ARP request was not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpDecline {
    /// The address is on another device and `arp_ignore=1`.
    OnOtherDevice(usize),
    /// Proxy ARP is on, but the route to the address does not leave by another device.
    NoProxyRoute,
    /// Not a local address (and no proxy ARP).
    NotLocal,
}

/// The outcome of handing one frame (or packet) to a stack.
#[derive(Debug, Clone, Default)]
pub struct StackResult {
    /// Steps in order.
    pub steps: Vec<StackStep>,
    /// Frames sent: (device index, frame).
    pub out: Vec<(usize, Frame)>,
    /// A packet delivered locally to this stack (after NAT).
    pub delivered: Option<IpPkt>,
    /// The answer a local service generates for a delivered packet (sent later).
    pub answer: Option<IpPkt>,
}

impl StackResult {
    fn new() -> StackResult {
        StackResult::default()
    }
    fn note(&mut self, s: StackStep) {
        self.steps.push(s);
    }
    fn ignored(&mut self, i: Ignored) {
        self.steps.push(StackStep::Ignored(i));
    }
}

/// A network namespace.
#[derive(Debug, Clone)]
pub struct Stack {
    /// Devices.
    pub devs: Vec<Dev>,
    /// Routes of all tables.
    pub routes: Vec<Arc<Route>>,
    /// Policy rules beyond the kernel's defaults.
    pub rules: Vec<Arc<Rule>>,
    /// Neighbours per (device, address).
    pub neigh: BTreeMap<(usize, Ipv4Addr), Neigh>,
    /// `net.ipv4.ip_forward`.
    pub forward: bool,
    /// `net.ipv4.conf.all.arp_ignore` (0 or 1).
    pub arp_ignore: u8,
    /// `rp_filter` (0 off, 1 strict).
    pub rp_filter: u8,
    /// The nat table, if any.
    pub nat: Option<IptTable>,
    /// The mangle table, if any: its PREROUTING/OUTPUT chains set the packet
    /// mark that nat rules test (`-m mark ! --mark 0x2/0xffff`).
    pub mangle: Option<IptTable>,
    /// `raw PREROUTING -j CT --notrack`: no conntrack, hence no NAT.
    pub notrack: bool,
    /// Connection tracking.
    pub ct: Conntrack,
    /// Packets waiting for ARP: (device, next hop) → packets.
    pub pending: BTreeMap<(usize, Ipv4Addr), Vec<IpPkt>>,
}

/// Where a route lookup sends a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteResult {
    /// Delivered to this namespace.
    Local,
    /// Out of a device towards a next hop.
    Unicast {
        /// Output device.
        dev: usize,
        /// Next hop (the destination for on-link routes).
        nexthop: Ipv4Addr,
        /// How it was chosen, for the trace.
        why: StackStep,
    },
}

impl Stack {
    /// An empty stack with forwarding off.
    pub fn new(devs: Vec<Dev>) -> Stack {
        Stack {
            devs,
            routes: vec![],
            rules: vec![],
            neigh: BTreeMap::new(),
            forward: false,
            arp_ignore: 0,
            rp_filter: 0,
            nat: None,
            mangle: None,
            notrack: false,
            ct: Conntrack::default(),
            pending: BTreeMap::new(),
        }
    }

    /// Device index by name.
    pub fn dev(&self, name: &str) -> Option<usize> {
        self.devs.iter().position(|d| d.name == name)
    }

    fn is_local(&self, ip: Ipv4Addr) -> Option<usize> {
        self.devs.iter().position(|d| d.addrs.iter().any(|a| a.addr() == ip))
    }

    fn lookup_table(&self, table: TableRef, dst: Ipv4Addr) -> Option<usize> {
        self.routes
            .iter()
            .enumerate()
            .filter(|(_, r)| r.table == table && r.dst.contains(&dst))
            .max_by_key(|(_, r)| r.dst.prefix_len())
            .map(|(i, _)| i)
    }

    /// Policy routing: `local`, the rules by priority (with `main` at 32766),
    /// falling through to the next rule when a table has no route.
    pub fn route(&self, src: Ipv4Addr, dst: Ipv4Addr, iif: Option<usize>) -> Option<RouteResult> {
        if self.is_local(dst).is_some() {
            return Some(RouteResult::Local);
        }
        let mut rules: Vec<(u32, Option<usize>)> = self.rules.iter().enumerate().map(|(i, r)| (r.priority, Some(i))).collect();
        rules.push((32766, None));
        rules.sort_by_key(|(p, _)| *p);
        for (_, rule) in rules {
            let table = match rule {
                None => TableRef::Main,
                Some(i) => {
                    let r = &self.rules[i];
                    let ok = match &r.selector {
                        RuleSelector::From(n) => n.contains(&src),
                        RuleSelector::Iif(d) => iif.is_some_and(|i| &self.devs[i].name == d),
                    };
                    if !ok {
                        continue;
                    }
                    TableRef::Id(r.table)
                }
            };
            if let Some(ri) = self.lookup_table(table, dst)
                && let Some(dev) = self.dev(&self.routes[ri].dev)
            {
                let r = &self.routes[ri];
                let why = StackStep::Routed { rule, route: ri };
                return Some(RouteResult::Unicast { dev, nexthop: r.via.unwrap_or(dst), why });
            }
        }
        None
    }

    /// Hand a frame received on device `dev` to the stack.
    pub fn receive(&mut self, dev: usize, f: Frame) -> StackResult {
        let mut res = StackResult::new();
        let d = &self.devs[dev];
        if f.vlan.is_some() {
            res.steps.push(StackStep::Drop(KernelDrop::Tagged { dev }));
            return res;
        }
        if f.dst != d.mac && !f.dst.is_multicast() {
            res.ignored(Ignored::NotOurMac { dev, dst: f.dst });
            return res;
        }
        match f.payload {
            Payload::Arp { op, sha, spa, tpa, .. } => self.receive_arp(dev, op, sha, spa, tpa, &mut res),
            Payload::Ip { src, dst, l4 } => self.receive_ip(dev, IpPkt { src, dst, l4 }, &mut res),
        }
        res
    }

    fn learn(&mut self, dev: usize, ip: Ipv4Addr, mac: MacAddr) {
        let e = self.neigh.entry((dev, ip)).or_insert(Neigh { mac, permanent: false });
        if !e.permanent {
            e.mac = mac;
        }
    }

    fn receive_arp(&mut self, dev: usize, op: u16, sha: MacAddr, spa: Ipv4Addr, tpa: Ipv4Addr, res: &mut StackResult) {
        if op == ARP_REPLY {
            self.learn(dev, spa, sha);
            res.note(StackStep::ArpLearned { dev, ip: spa, mac: sha });
            self.flush_pending(dev, spa, res);
            return;
        }
        let owner = self.is_local(tpa);
        let answer_local = match owner {
            Some(o) => self.arp_ignore == 0 || o == dev,
            None => false,
        };
        if answer_local {
            self.learn(dev, spa, sha);
            res.note(StackStep::ArpAnswered { dev, ip: tpa });
            res.out.push((dev, arp_frame(ARP_REPLY, self.devs[dev].mac, tpa, sha, spa)));
            return;
        }
        if owner.is_none()
            && self.devs[dev].proxy_arp
            && self.forward
            && let Some(RouteResult::Unicast { dev: out, .. }) = self.route(spa, tpa, Some(dev))
            && out != dev
        {
            res.note(StackStep::ProxyArp { dev, ip: tpa, out });
            res.out.push((dev, arp_frame(ARP_REPLY, self.devs[dev].mac, tpa, sha, spa)));
            return;
        }
        let why = match owner {
            Some(o) => ArpDecline::OnOtherDevice(o),
            None if self.devs[dev].proxy_arp => ArpDecline::NoProxyRoute,
            None => ArpDecline::NotLocal,
        };
        res.ignored(Ignored::ArpNotAnswered { dev, ip: tpa, why });
    }

    #[allow(clippy::too_many_arguments)]
    fn nat(&mut self, hook: Hook, p: &mut IpPkt, in_dev: Option<usize>, out_dev: Option<usize>, skb: &mut Skb, res: &mut StackResult) {
        let mut t = p.tuple();
        let names = (in_dev.map(|d| self.devs[d].name.as_str()), out_dev.map(|d| self.devs[d].name.as_str()));
        let cx = RuleCtx { in_dev: names.0, out_dev: names.1, mark: skb.mark };
        if matches!(hook, Hook::Prerouting | Hook::Output)
            && let Some(m) = &self.mangle
        {
            // mangle runs before nat at the same hook (priority -150 < -100).
            (skb.mark, _) = mangle(m, hook.chain(), &t, &cx, skb.mark);
        }
        if self.notrack {
            return;
        }
        let cx = RuleCtx { mark: skb.mark, ..cx };
        let local = in_dev.and_then(|d| self.devs[d].addrs.first().map(|a| a.addr()));
        // The table is borrowed, not cloned: this runs at every hook of every packet.
        let steps = self.ct.process(self.nat.as_ref(), hook, &mut t, &cx, local, &mut skb.ct);
        p.set_tuple(&t);
        let after = *p;
        res.steps.extend(steps.into_iter().map(|s| StackStep::Nat(s, after)));
    }

    fn receive_ip(&mut self, dev: usize, mut p: IpPkt, res: &mut StackResult) {
        match special(p.dst) {
            Some(Special::ThisHost | Special::Loopback) => {
                res.steps.push(StackStep::Drop(KernelDrop::Martian { dst: p.dst, dev }));
                return;
            }
            Some(Special::Multicast) if p.dst != ALL_HOSTS => {
                res.ignored(Ignored::GroupNotJoined { dev, group: p.dst });
                return;
            }
            Some(kind @ (Special::Broadcast | Special::Multicast)) => {
                res.note(StackStep::Special {
                    dst: p.dst,
                    kind,
                    action: SpecialAction::ReceivedNotForwarded { dev, forwarding: self.forward },
                });
                res.delivered = Some(p);
                return;
            }
            None => {}
        }
        let mut skb = Skb::default();
        self.nat(Hook::Prerouting, &mut p, Some(dev), None, &mut skb, res);
        match self.route(p.src, p.dst, Some(dev)) {
            Some(RouteResult::Local) => {
                self.nat(Hook::Input, &mut p, Some(dev), None, &mut skb, res);
                res.note(StackStep::Local(p));
                res.delivered = Some(p);
                res.answer = answer_to(&p);
            }
            None => res.steps.push(StackStep::Drop(KernelDrop::NoRoute { dst: p.dst })),
            Some(RouteResult::Unicast { dev: out, nexthop, why }) => {
                if !self.forward {
                    res.steps.push(StackStep::Drop(KernelDrop::NotForwarding { dst: p.dst }));
                    return;
                }
                if self.rp_filter == 1
                    && !matches!(self.route(p.dst, p.src, None), Some(RouteResult::Unicast { dev: back, .. }) if back == dev)
                {
                    res.steps.push(StackStep::Drop(KernelDrop::RpFilter { src: p.src, dev }));
                    return;
                }
                res.steps.push(why);
                self.nat(Hook::Postrouting, &mut p, Some(dev), Some(out), &mut skb, res);
                self.transmit(out, nexthop, p, res);
            }
        }
    }

    /// Send a locally generated packet (an endpoint's ping, a service's answer).
    pub fn originate(&mut self, mut p: IpPkt) -> StackResult {
        let mut res = StackResult::new();
        match special(p.dst) {
            Some(kind @ (Special::ThisHost | Special::Loopback)) => {
                let asked = p.dst;
                if kind == Special::ThisHost {
                    p.dst = Ipv4Addr::LOCALHOST;
                }
                if !p.src.is_loopback() {
                    p.src = Ipv4Addr::LOCALHOST;
                }
                res.note(StackStep::Special { dst: asked, kind, action: SpecialAction::LocalDelivery { to: p.dst } });
                res.delivered = Some(p);
                res.answer = answer_to(&p);
                return res;
            }
            Some(kind @ (Special::Broadcast | Special::Multicast)) => {
                let Some(RouteResult::Unicast { dev, why, .. }) = self.route(p.src, p.dst, None) else {
                    res.steps.push(StackStep::Drop(KernelDrop::NoRoute { dst: p.dst }));
                    return res;
                };
                res.steps.push(why);
                let mac = match kind {
                    Special::Broadcast => MacAddr::BROADCAST,
                    _ => multicast_mac(p.dst),
                };
                res.note(StackStep::Special { dst: p.dst, kind, action: SpecialAction::SentOnLink { dev, mac } });
                let d = &self.devs[dev];
                res.out.push((dev, Frame { src: d.mac, dst: mac, vlan: None, payload: Payload::Ip { src: p.src, dst: p.dst, l4: p.l4 } }));
                return res;
            }
            None => {}
        }
        let mut skb = Skb::default();
        self.nat(Hook::Output, &mut p, None, None, &mut skb, &mut res);
        match self.route(p.src, p.dst, None) {
            None => res.steps.push(StackStep::Drop(KernelDrop::NoRoute { dst: p.dst })),
            Some(RouteResult::Local) => {
                res.note(StackStep::LocalOut(p));
                res.delivered = Some(p);
            }
            Some(RouteResult::Unicast { dev, nexthop, why }) => {
                res.steps.push(why);
                self.nat(Hook::Postrouting, &mut p, None, Some(dev), &mut skb, &mut res);
                self.transmit(dev, nexthop, p, &mut res);
            }
        }
        res
    }

    fn transmit(&mut self, dev: usize, nexthop: Ipv4Addr, p: IpPkt, res: &mut StackResult) {
        let d = &self.devs[dev];
        match self.neigh.get(&(dev, nexthop)) {
            Some(n) => {
                res.note(StackStep::Neighbour { dev, nexthop, mac: n.mac, permanent: n.permanent });
                res.out
                    .push((dev, Frame { src: d.mac, dst: n.mac, vlan: None, payload: Payload::Ip { src: p.src, dst: p.dst, l4: p.l4 } }));
            }
            None => {
                let q = self.pending.entry((dev, nexthop)).or_default();
                q.push(p);
                if q.len() == 1 {
                    let spa = d
                        .addrs
                        .iter()
                        .find(|a| a.contains(&nexthop))
                        .or(d.addrs.first())
                        .map(|a| a.addr())
                        .unwrap_or(Ipv4Addr::UNSPECIFIED);
                    res.note(StackStep::ArpRequest { dev, nexthop });
                    res.out.push((dev, arp_frame(ARP_REQUEST, d.mac, spa, MacAddr::BROADCAST, nexthop)));
                } else {
                    res.note(StackStep::ArpPending { nexthop });
                }
            }
        }
    }

    fn flush_pending(&mut self, dev: usize, ip: Ipv4Addr, res: &mut StackResult) {
        for p in self.pending.remove(&(dev, ip)).unwrap_or_default() {
            self.transmit(dev, ip, p, res);
        }
    }

    /// Next hops still waiting for ARP, for the end-of-trace verdict.
    pub fn unresolved(&self) -> Vec<(Name, Ipv4Addr)> {
        self.pending.keys().map(|(d, ip)| (self.devs[*d].name.clone(), *ip)).collect()
    }
}

fn arp_frame(op: u16, src: MacAddr, spa: Ipv4Addr, tha: MacAddr, tpa: Ipv4Addr) -> Frame {
    let (dst, tha) = if op == ARP_REQUEST { (MacAddr::BROADCAST, MacAddr::ZERO) } else { (tha, tha) };
    Frame { src, dst, vlan: None, payload: Payload::Arp { op, sha: src, spa, tha, tpa } }
}

/// "icmp echo-request 192.168.1.9 → 192.168.2.20" style.
pub fn describe(p: &IpPkt) -> String {
    Describe(p).to_string()
}

/// [`describe`] as a `Display`, for writing into a longer line.
pub struct Describe<'a>(pub &'a IpPkt);

impl std::fmt::Display for Describe<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = self.0;
        match p.l4 {
            L4::Icmp { reply: false, .. } => f.write_str("icmp echo-request")?,
            L4::Icmp { reply: true, .. } => f.write_str("icmp echo-reply")?,
            L4::Tcp { sport, dport } => write!(f, "tcp {sport}→{dport}")?,
            L4::Udp { sport, dport } => write!(f, "udp {sport}→{dport}")?,
        }
        write!(f, " {} → {}", Ipv4Text(p.src), Ipv4Text(p.dst))
    }
}

/// What a local service answers: echo replies to echo requests; a TCP/UDP
/// listener answers in kind. Replies themselves get no answer.
fn answer_to(p: &IpPkt) -> Option<IpPkt> {
    match p.l4 {
        L4::Icmp { reply: true, .. } => None,
        _ => Some(IpPkt { src: p.dst, dst: p.src, l4: p.l4.reversed() }),
    }
}
