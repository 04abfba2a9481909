//! The text of the steps an explained trace prints most (flow matched,
//! NORMAL, frame sent, route, patch port, packet sent, neighbour, delivery)
//! and of packet changes, pushed straight onto the output string.
//!
//! Why not `Display`: `dvr trace` prints tens of hops per trace and the
//! formatting machinery (an `Arguments` walk and a call per piece, numbers
//! and addresses through `Formatter`) was most of the cost of the text.
//! `Display` on [`Step`] stays the definition of every sentence; the
//! functions here write the same bytes for the common steps and hand the
//! others to it (`tests::same_text_as_display` compares both on every hop
//! of the seed labs).

use crate::packet::{ARP_REQUEST, Frame, L4, Payload};
use crate::stack::IpPkt;
use crate::step::{Change, NormalDecision, Step};
use dvr_model::MacAddr;
use dvr_model::text::Ipv4Text;
use dvr_openflow::Flow;
use dvr_plan::{Route, Rule, RuleSelector, TableRef};
use std::fmt::Write;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Push `s`'s sentence (what `s.to_string()` gives).
pub(crate) fn push_step(o: &mut String, s: &Step) {
    match s {
        Step::Table { table, flow, .. } => push_flow_line(o, *table, flow),
        Step::Normal { vlan, decision } => {
            o.push_str("NORMAL in VLAN ");
            push_num(o, u32::from(*vlan));
            match decision {
                NormalDecision::NoPort => o.push_str(": no other port: dropped"),
                NormalDecision::Learned { port } => {
                    o.push_str(": destination learned on ");
                    o.push_str(port);
                }
                NormalDecision::Flood { ports } => {
                    o.push_str(": destination unknown, flood to ");
                    for (i, p) in ports.iter().enumerate() {
                        if i > 0 {
                            o.push_str(", ");
                        }
                        o.push_str(p);
                    }
                }
            }
        }
        Step::Send { packet } => {
            o.push_str("sends ");
            push_describe(o, packet);
        }
        Step::Transmit { dev, frame } => {
            o.push_str("sends on ");
            o.push_str(dev);
            o.push_str(": ");
            push_frame(o, frame);
        }
        Step::Route { rule, route, .. } => {
            o.push_str("ip rule ");
            push_rule(o, rule);
            o.push_str(" → ");
            push_route(o, route);
        }
        Step::Patch { port, to_bridge, to_port } => {
            o.push_str("patch port ");
            o.push_str(port);
            o.push_str(" → ");
            o.push_str(to_bridge);
            o.push_str(" (");
            o.push_str(to_port);
            o.push(')');
        }
        Step::Neighbour { dev, nexthop, mac, permanent } => {
            o.push_str("neighbour ");
            push_ip(o, *nexthop);
            o.push_str(" is ");
            push_mac(o, *mac);
            o.push_str(if *permanent { " (permanent): send on " } else { " (learned): send on " });
            o.push_str(dev);
        }
        Step::Deliver { packet, .. } => {
            push_ip(o, packet.dst);
            o.push_str(" is local: delivered (");
            push_describe(o, packet);
            o.push(')');
        }
        _ => {
            let _ = write!(o, "{s}");
        }
    }
}

/// Push a change (what `c.to_string()` gives).
pub(crate) fn push_change(o: &mut String, c: &Change) {
    let (what, from, to): (&str, Addr, Addr) = match *c {
        Change::Vlan { from, to } => {
            o.push_str("VLAN ");
            push_vlan(o, from);
            o.push('→');
            push_vlan(o, to);
            return;
        }
        Change::SrcMac { from, to } => ("src MAC ", Addr::Mac(from), Addr::Mac(to)),
        Change::DstMac { from, to } => ("dst MAC ", Addr::Mac(from), Addr::Mac(to)),
        Change::SrcIp { from, to } => ("src IP ", Addr::Ip(from), Addr::Ip(to)),
        Change::DstIp { from, to } => ("dst IP ", Addr::Ip(from), Addr::Ip(to)),
    };
    o.push_str(what);
    from.push(o);
    o.push('→');
    to.push(o);
}

/// One side of an address change.
#[derive(Clone, Copy)]
enum Addr {
    Mac(MacAddr),
    Ip(Ipv4Addr),
}

impl Addr {
    fn push(self, o: &mut String) {
        match self {
            Addr::Mac(m) => push_mac(o, m),
            Addr::Ip(i) => push_ip(o, i),
        }
    }
}

fn push_vlan(o: &mut String, v: Option<u16>) {
    match v {
        Some(v) => push_num(o, u32::from(v)),
        None => o.push_str("untagged"),
    }
}

/// `table T priority P MATCH → ACTIONS [RULE]`.
fn push_flow_line(o: &mut String, table: u8, flow: &Flow) {
    o.push_str("table ");
    push_num(o, u32::from(table));
    o.push_str(" priority ");
    push_num(o, u32::from(flow.priority));
    o.push(' ');
    if !flow.write_match(o).unwrap_or(true) {
        o.push_str("(any)");
    }
    o.push_str(" → ");
    let _ = flow.write_actions(o);
    if let Some(r) = &flow.sg_rule {
        let _ = write!(o, " [{r}]");
    }
}

/// What [`crate::stack::Describe`] writes.
fn push_describe(o: &mut String, p: &IpPkt) {
    match p.l4 {
        L4::Icmp { reply: false, .. } => o.push_str("icmp echo-request"),
        L4::Icmp { reply: true, .. } => o.push_str("icmp echo-reply"),
        L4::Tcp { sport, dport } => push_ports(o, "tcp ", sport, dport),
        L4::Udp { sport, dport } => push_ports(o, "udp ", sport, dport),
    }
    o.push(' ');
    push_ip(o, p.src);
    o.push_str(" → ");
    push_ip(o, p.dst);
}

fn push_ports(o: &mut String, proto: &str, sport: u16, dport: u16) {
    o.push_str(proto);
    push_num(o, u32::from(sport));
    o.push('→');
    push_num(o, u32::from(dport));
}

/// What `Frame`'s `Display` writes.
fn push_frame(o: &mut String, f: &Frame) {
    push_mac(o, f.src);
    o.push_str(" > ");
    push_mac(o, f.dst);
    if let Some(v) = f.vlan {
        o.push_str(" vlan ");
        push_num(o, u32::from(v));
    }
    o.push_str(", ");
    match f.payload {
        Payload::Arp { op: ARP_REQUEST, tpa, spa, .. } => {
            o.push_str("arp who-has ");
            push_ip(o, tpa);
            o.push_str(" tell ");
            push_ip(o, spa);
        }
        Payload::Arp { spa, sha, .. } => {
            o.push_str("arp reply ");
            push_ip(o, spa);
            o.push_str(" is-at ");
            push_mac(o, sha);
        }
        Payload::Ip { l4: L4::Icmp { reply: false, .. }, .. } => o.push_str("icmp echo-request"),
        Payload::Ip { l4: L4::Icmp { reply: true, .. }, .. } => o.push_str("icmp echo-reply"),
        Payload::Ip { l4: L4::Tcp { sport, dport }, .. } => push_proto_ports(o, "tcp ", sport, dport),
        Payload::Ip { l4: L4::Udp { sport, dport }, .. } => push_proto_ports(o, "udp ", sport, dport),
    }
    let (s, d) = f.ips();
    o.push(' ');
    push_ip(o, s);
    o.push_str(" > ");
    push_ip(o, d);
}

/// `tcp 1->2` (a frame's label, ASCII arrow).
fn push_proto_ports(o: &mut String, proto: &str, sport: u16, dport: u16) {
    o.push_str(proto);
    push_num(o, u32::from(sport));
    o.push_str("->");
    push_num(o, u32::from(dport));
}

/// What `step::RuleLine` writes, for the default rule and `from` rules.
fn push_rule(o: &mut String, rule: &Option<Arc<Rule>>) {
    let Some(r) = rule else {
        o.push_str("32766 from all lookup main");
        return;
    };
    push_num(o, r.priority);
    o.push(' ');
    match &r.selector {
        RuleSelector::From(n) => {
            o.push_str("from ");
            push_ip(o, n.addr());
            if n.prefix_len() != 32 {
                o.push('/');
                push_num(o, u32::from(n.prefix_len()));
            }
        }
        RuleSelector::Iif(d) => {
            let _ = write!(o, "from all iif {d}");
        }
    }
    o.push_str(" lookup ");
    push_num(o, r.table);
}

/// What `step::RouteLine` writes.
fn push_route(o: &mut String, r: &Route) {
    o.push_str("route ");
    if r.dst.prefix_len() == 0 {
        o.push_str("default");
    } else {
        push_ip(o, r.dst.addr());
        o.push('/');
        push_num(o, u32::from(r.dst.prefix_len()));
    }
    if let Some(v) = r.via {
        o.push_str(" via ");
        push_ip(o, v);
    }
    o.push_str(" dev ");
    o.push_str(&r.dev);
    if let TableRef::Id(n) = r.table {
        o.push_str(" table ");
        push_num(o, n);
    }
}

fn push_ip(o: &mut String, ip: Ipv4Addr) {
    let mut buf = [0; 15];
    let n = Ipv4Text(ip).encode(&mut buf);
    o.push_str(std::str::from_utf8(&buf[..n]).unwrap_or_default());
}

fn push_mac(o: &mut String, m: MacAddr) {
    o.push_str(m.encode(&mut [0; 17]));
}

/// A number in decimal, without the formatting machinery (itoa).
pub(crate) fn push_num(o: &mut String, n: u32) {
    o.push_str(itoa::Buffer::new().format(n));
}

#[cfg(test)]
mod tests {
    use super::{push_change, push_num, push_step};
    use crate::{L4, TraceRequest, World};

    #[test]
    fn numbers() {
        for n in [0, 7, 10, 99, 100, 4095, 65535, 32766, u32::MAX] {
            let mut s = String::new();
            push_num(&mut s, n);
            assert_eq!(s, n.to_string());
        }
    }

    /// Every hop and change of every path of the seed labs (VLAN, security
    /// groups, VXLAN, mixed), cold and warm, request and reply: the pushed
    /// text is `Display`'s, byte for byte.
    #[test]
    fn same_text_as_display() {
        let (mut hops, mut fast) = (0, 0);
        for yaml in [dvr_model::SEED_YAML, dvr_model::SEED_SECURE_YAML, dvr_model::SEED_VXLAN_YAML, dvr_model::SEED_MIXED_YAML] {
            let topo = dvr_model::load_str("lab.yaml", yaml).expect("lab");
            let plan = dvr_plan::plan(&topo, dvr_plan::Profile::Walkthrough).expect("plan");
            let mut w = World::build(&topo, &plan);
            crate::warm_up(&mut w);
            for p in &topo.paths {
                let Some(to) = topo.resolve_address(&p.to) else { continue };
                let req = TraceRequest { from: p.from.clone(), to, l4: L4::Icmp { reply: false, id: 1 }, spoof_ip: None, spoof_mac: None };
                for _ in 0..2 {
                    let t = crate::trace(&mut w, &req).expect("trace");
                    for h in t.hops.iter().chain(t.reply.iter().flat_map(|r| r.hops.iter())) {
                        let mut s = String::new();
                        push_step(&mut s, &h.step);
                        assert_eq!(s, h.step.to_string(), "{:?}", h.step);
                        for c in &h.changed {
                            let mut s = String::new();
                            push_change(&mut s, c);
                            assert_eq!(s, c.to_string());
                        }
                        hops += 1;
                        fast += usize::from(matches!(h.step, crate::Step::Table { .. } | crate::Step::Route { .. }));
                    }
                }
            }
        }
        assert!(hops > 1000 && fast > hops / 2, "{hops} hops, {fast} on the fast path");
    }
}
