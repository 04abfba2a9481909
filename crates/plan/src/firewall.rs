//! Neutron's `openvswitch` firewall driver (`neutron/agent/linux/
//! openvswitch_firewall/firewall.py` and `rules.py`, Neutron 29): the br-int
//! flows of tables 60 (hooks), 71–73 (egress), 81–82 (ingress) and 91–94
//! (accepted / dropped traffic) for every port of a host, built from the
//! security groups of [`dvr_model::security`].
//!
//! Only planned when the topology declares security groups
//! ([`FirewallDriver::Openvswitch`]); with the `noop` driver this module adds
//! nothing and the plan is what it always was.
//!
//! Neutron identifies a port by its OpenFlow port number in `reg5` and its
//! network by the local VLAN in `reg6`, which is also the port's conntrack
//! zone. The plan numbers br-int's ports in the order it lists them (1, 2, …;
//! [`number_ports`]), and the realizer requests those numbers from OVS
//! (`ofport_request`), so `reg5` values in the plan are the real ones.
//!
//! Modelled: the IPv4 half. Neutron also installs IPv6 twins (ND, DHCPv6, RA
//! drop, `ipv6` conntrack) and RARP flows; the deployment is IPv4 only and
//! these are left out (docs/conformance.md, deviation D2).

use crate::ctx::{HostCtx, flow};
use crate::model::BridgePort;
use crate::tables::*;
use dvr_model::security::*;
use dvr_model::*;
use dvr_openflow::nx::{CtAction, CtStateMatch, CtZoneSrc, Field, Masked, SgRuleRef, Subfield, ct_flags};
use dvr_openflow::{Action, Flow, Ipv4Match, Match, Proto, TableId, VlanMatch};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Neutron's port register (`REG_PORT`): the OpenFlow number of the port a packet belongs to.
pub const REG_PORT: u8 = 5;
/// Neutron's network register (`REG_NET`): the local VLAN, also the conntrack zone.
pub const REG_NET: u8 = 6;
/// Neutron's remote-group register (`REG_REMOTE_GROUP`): the conjunction that accepted a packet.
pub const REG_REMOTE_GROUP: u8 = 7;
/// Conjunction ids come in blocks of 8 per (group, remote group, direction,
/// ethertype) (`ConjIdMap.CONJ_ID_BLOCK_SIZE`); on a fresh bridge the first
/// block handed out is 16.
const CONJ_ID_BLOCK: u32 = 8;
const FIRST_CONJ_ID: u32 = 16;
/// `ct_mark` of connections a rule change revoked (`CT_MARK_INVALID`).
const CT_MARK_INVALID: u32 = 1;

/// Whether hosts run the `openvswitch` firewall.
pub fn enabled(topo: &Topology) -> bool {
    topo.security.driver == FirewallDriver::Openvswitch
}

/// What follows br-int's VLAN translation of frames from a physical bridge.
/// The profile decides ([`crate::Profile::after_vlan_translation`]), except
/// that with the firewall the walkthrough's `NORMAL` would deliver frames
/// from other hosts straight to their port, past the ingress hooks of table
/// 60: Neutron's firewall needs them to reach table 60, so they do.
pub fn after_vlan_translation(cx: &HostCtx) -> Action {
    match (enabled(cx.topo), cx.profile) {
        (true, crate::Profile::Walkthrough) => cx.next(INT_TRANSIENT),
        (_, p) => p.after_vlan_translation(),
    }
}

/// Give br-int's ports their OpenFlow numbers (1, 2, … in list order) when the
/// firewall is on, and return name → number. With the `noop` driver nothing
/// is numbered (the flows use names only), so older plans stay identical.
pub fn number_ports(cx: &HostCtx, ports: &mut [BridgePort]) -> HashMap<String, u32> {
    let mut out = HashMap::new();
    if !enabled(cx.topo) {
        return out;
    }
    for (i, p) in ports.iter_mut().enumerate() {
        let n = i as u32 + 1;
        p.ofport = Some(n);
        out.insert(p.name.clone(), n);
    }
    out
}

fn ct_state(flags: u8, mask: u8) -> Option<CtStateMatch> {
    Some(CtStateMatch { flags, mask })
}

use ct_flags::{EST, INV, NEW, REL, RPL, TRK};

/// `+est-rel-rpl`: an established connection, original direction.
fn est_not_reply() -> Option<CtStateMatch> {
    ct_state(EST, EST | REL | RPL)
}
/// `+new-est`: the first packet of a connection.
fn new_not_est() -> Option<CtStateMatch> {
    ct_state(NEW, NEW | EST)
}

fn regs(port: Option<u32>, net: Option<u32>) -> [Option<Masked<u32>>; 8] {
    let mut r: [Option<Masked<u32>>; 8] = Default::default();
    r[REG_PORT as usize] = port.map(Masked::<u32>::exact);
    r[REG_NET as usize] = net.map(Masked::<u32>::exact);
    r
}

fn load(reg: u8, value: u32) -> Action {
    Action::Load { dst: Subfield::whole(Field::Reg(reg)), value: value.into() }
}

fn resubmit(t: TableDecl) -> Action {
    Action::Resubmit(t.id)
}

/// `zone=NXM_NX_REG6[0..15]`: the port's network is its conntrack zone.
fn zone() -> Option<CtZoneSrc> {
    Some(CtZoneSrc::Field(Subfield { field: Field::Reg(REG_NET), ofs: 0, n_bits: 16 }))
}

fn ct_to(table: TableDecl) -> Action {
    Action::Ct(CtAction { commit: false, table: Some(table.id), zone: zone(), nat: false, exec: vec![] })
}

fn ct_commit() -> Action {
    Action::Ct(CtAction { commit: true, table: None, zone: zone(), nat: false, exec: vec![] })
}

fn ct_commit_mark_invalid() -> Action {
    Action::Ct(CtAction {
        commit: true,
        table: None,
        zone: zone(),
        nat: false,
        exec: vec![Action::Load { dst: Subfield::whole(Field::CtMark), value: CT_MARK_INVALID.into() }],
    })
}

/// One filtered port on this host.
struct FwPort<'a> {
    port: &'a Port,
    sec: &'a PortSecurity,
    dev: String,
    ofport: u32,
    lvid: u32,
    /// (MAC, address) pairs it may send from: its own, then the allowed address pairs.
    pairs: Vec<(MacAddr, Ipv4Match)>,
    /// Every MAC it may use, sorted.
    macs: Vec<MacAddr>,
}

fn net_match(n: ipnet::Ipv4Net) -> Ipv4Match {
    Ipv4Match { addr: n.network(), prefix: n.prefix_len() }
}

/// Every firewall flow of br-int on this host (empty with the `noop` driver).
pub fn flows(cx: &HostCtx, ofports: &HashMap<String, u32>) -> Vec<Arc<Flow>> {
    if !enabled(cx.topo) {
        return vec![];
    }
    let mut v = common_flows();
    let sec = &cx.topo.security;
    // Ports in OpenFlow-number order: the order the agent's devices are filtered in.
    let mut filtered: Vec<FwPort> = Vec::new();
    let mut unfiltered: Vec<(&Port, String, u32)> = Vec::new();
    let mut on_host: Vec<&Port> = cx.dvr_interfaces().into_iter().map(|q| q.port).collect();
    on_host.extend(cx.bound_ports());
    for port in on_host {
        let dev = port.device_name();
        let Some(&ofport) = ofports.get(&dev) else { continue };
        let lvid = u32::from(cx.lvid(port.network).get());
        let ps = match port.owner {
            PortOwner::Compute { instance } => sec.port(instance).filter(|p| p.port_security_enabled),
            _ => None,
        };
        match ps {
            Some(ps) => {
                let mut pairs = vec![(port.mac, Ipv4Match::host(port.ip))];
                pairs.extend(ps.allowed_address_pairs.iter().map(|a| (a.mac, net_match(a.ip))));
                let macs: BTreeSet<MacAddr> = pairs.iter().map(|(m, _)| *m).collect();
                filtered.push(FwPort { port, sec: ps, dev, ofport, lvid, pairs, macs: macs.into_iter().collect() });
            }
            None => unfiltered.push((port, dev, ofport)),
        }
    }
    filtered.sort_by_key(|p| p.ofport);
    unfiltered.sort_by_key(|p| p.2);
    for p in &filtered {
        v.extend(port_base_flows(cx, p));
        v.extend(tracked_flows(p));
        v.extend(rule_flows(cx, p));
    }
    v.extend(conj_flows(cx, &filtered));
    for (port, dev, ofport) in unfiltered {
        v.extend(unfiltered_flows(cx, port, &dev, ofport));
    }
    dedup(v)
}

/// OVS keeps one flow per (table, priority, match): a later `add-flow` of the
/// same match replaces the earlier one, as the agent's repeated adds do.
fn dedup(v: Vec<Arc<Flow>>) -> Vec<Arc<Flow>> {
    let mut seen: HashMap<(TableId, u16, String), usize> = HashMap::new();
    let mut out: Vec<Arc<Flow>> = Vec::with_capacity(v.len());
    for f in v {
        let k = (f.table, f.priority, f.match_string());
        match seen.get(&k) {
            Some(&i) => out[i] = f,
            None => {
                seen.insert(k, out.len());
                out.push(f);
            }
        }
    }
    out
}

/// `_drop_all_unmatched_flows`, `_initialize_common_flows`, `_initialize_third_party_tables`.
fn common_flows() -> Vec<Arc<Flow>> {
    let mut v: Vec<Arc<Flow>> = [INT_BASE_EGRESS, INT_RULES_EGRESS, INT_ACCEPT_OR_INGRESS, INT_BASE_INGRESS, INT_RULES_INGRESS]
        .into_iter()
        .map(|t| flow(t, 0, Match::default(), vec![Action::Drop], "firewall: what no flow of this stage accepts is dropped"))
        .collect();
    v.push(flow(
        INT_BASE_EGRESS,
        110,
        Match { ct_state: ct_state(TRK, TRK), ..Default::default() },
        vec![Action::CtClear, resubmit(INT_BASE_EGRESS)],
        "firewall: forget conntrack state from an earlier pass (e.g. another port's ingress) and start egress afresh",
    ));
    v.push(flow(
        INT_ACCEPTED_EGRESS_TRAFFIC_NORMAL,
        1,
        Match::default(),
        vec![Action::Normal],
        "firewall: accepted egress traffic is switched normally",
    ));
    v.push(flow(
        INT_ACCEPTED_EGRESS_TRAFFIC,
        1,
        Match::default(),
        vec![resubmit(INT_ACCEPTED_EGRESS_TRAFFIC_NORMAL)],
        "firewall: accepted egress traffic (new connections, committed) goes on to normal switching",
    ));
    for t in [INT_ACCEPTED_INGRESS_TRAFFIC, INT_DROPPED_TRAFFIC] {
        v.push(flow(t, 0, Match::default(), vec![Action::Drop], "firewall: end of the pipeline for this traffic (hook for logging)"));
    }
    v
}

/// A port without port security or a trusted `network:` port
/// (`_initialize_egress_no_port_security`): its traffic skips the filter.
fn unfiltered_flows(cx: &HostCtx, port: &Port, dev: &str, ofport: u32) -> Vec<Arc<Flow>> {
    let lvid = u32::from(cx.lvid(port.network).get());
    let why = match port.owner {
        PortOwner::Compute { .. } => "port security disabled",
        _ => "trusted network: port",
    };
    vec![
        flow(
            INT_TRANSIENT,
            100,
            Match { in_port: Some(dev.to_string()), ..Default::default() },
            vec![load(REG_PORT, ofport), load(REG_NET, lvid), resubmit(INT_ACCEPT_OR_INGRESS)],
            format!("firewall: traffic from {dev} ({why}) is not filtered; mark port {ofport}, network {lvid}"),
        ),
        flow(
            INT_ACCEPT_OR_INGRESS,
            80,
            Match { regs: regs(Some(ofport), None), ..Default::default() },
            vec![resubmit(INT_ACCEPTED_EGRESS_TRAFFIC_NORMAL)],
            format!("firewall: egress of unfiltered port {dev} is accepted"),
        ),
    ]
}

/// Hooks in table 60, egress base (71), accept-or-ingress (73) and ingress base (81) of one port.
fn port_base_flows(cx: &HostCtx, p: &FwPort) -> Vec<Arc<Flow>> {
    let dev = &p.dev;
    let (n, l) = (p.ofport, p.lvid);
    let on = |m: Match| Match { in_port: Some(dev.clone()), regs: regs(Some(n), None), ..m };
    let mut v = vec![flow(
        INT_TRANSIENT,
        100,
        Match { in_port: Some(dev.clone()), ..Default::default() },
        vec![load(REG_PORT, n), load(REG_NET, l), resubmit(INT_BASE_EGRESS)],
        format!("firewall: traffic from {dev} is egress of port {n} on network {l}: to BASE_EGRESS"),
    )];
    // Ingress hooks: frames to one of the port's MACs.
    let segment = &cx.topo.network(p.port.network).segment;
    for &mac in &p.macs {
        match segment {
            Segment::Vlan { vlan, .. } => v.push(flow(
                INT_TRANSIENT,
                90,
                Match { dl_dst: Some(mac), dl_vlan: Some(VlanMatch::Tagged(vlan.get())), ..Default::default() },
                vec![load(REG_PORT, n), load(REG_NET, l), Action::StripVlan, resubmit(INT_BASE_INGRESS)],
                format!("firewall: frame to {mac} still tagged with segment VLAN {vlan} is ingress of {dev}"),
            )),
            Segment::Flat { .. } => v.push(flow(
                INT_TRANSIENT,
                90,
                Match { dl_dst: Some(mac), dl_vlan: Some(VlanMatch::Untagged), ..Default::default() },
                vec![load(REG_PORT, n), load(REG_NET, l), resubmit(INT_BASE_INGRESS)],
                format!("firewall: untagged frame to {mac} on the flat network is ingress of {dev}"),
            )),
            Segment::Vxlan { .. } => {}
        }
        v.push(flow(
            INT_TRANSIENT,
            90,
            Match { dl_dst: Some(mac), dl_vlan: Some(VlanMatch::Tagged(l as u16)), ..Default::default() },
            vec![load(REG_PORT, n), load(REG_NET, l), Action::StripVlan, resubmit(INT_BASE_INGRESS)],
            format!("firewall: frame to {mac} on local VLAN {l} is ingress of {dev}: to BASE_INGRESS"),
        ));
    }
    // Egress base: anti-spoofing by (MAC, IP) pair, then conntrack.
    for &(mac, ip) in &p.pairs {
        v.push(flow(
            INT_BASE_EGRESS,
            95,
            on(Match { proto: Some(Proto::Arp), dl_src: Some(mac), arp_spa: Some(ip), ..Default::default() }),
            vec![resubmit(INT_ACCEPTED_EGRESS_TRAFFIC_NORMAL)],
            format!("firewall: ARP from {dev} claiming its own {ip} with {mac} is allowed"),
        ));
        v.push(flow(
            INT_BASE_EGRESS,
            65,
            on(Match { proto: Some(Proto::Ip), dl_src: Some(mac), nw_src: Some(ip), ..Default::default() }),
            vec![ct_to(INT_RULES_EGRESS)],
            format!("firewall: IPv4 from {dev} sent from {ip} with {mac}: track in zone {l}, then RULES_EGRESS"),
        ));
    }
    // DHCP discovery (also from 0.0.0.0), and no DHCP server on an instance.
    let dhcp_sources = p.pairs.iter().copied().chain([(p.port.mac, Ipv4Match::host(Ipv4Addr::UNSPECIFIED))]);
    for (mac, ip) in dhcp_sources {
        v.push(flow(
            INT_BASE_EGRESS,
            80,
            on(Match {
                proto: Some(Proto::Udp),
                dl_src: Some(mac),
                nw_src: Some(ip),
                tp_src: Some(Masked::<u16>::exact(68)),
                tp_dst: Some(Masked::<u16>::exact(67)),
                ..Default::default()
            }),
            vec![resubmit(INT_ACCEPT_OR_INGRESS)],
            format!("firewall: DHCP request from {dev} ({ip}) is allowed"),
        ));
    }
    v.push(flow(
        INT_BASE_EGRESS,
        70,
        on(Match {
            proto: Some(Proto::Udp),
            tp_src: Some(Masked::<u16>::exact(67)),
            tp_dst: Some(Masked::<u16>::exact(68)),
            ..Default::default()
        }),
        vec![resubmit(INT_DROPPED_TRAFFIC)],
        format!("firewall: {dev} may not answer DHCP (no DHCP server on an instance)"),
    ));
    v.push(flow(
        INT_BASE_EGRESS,
        10,
        on(Match::default()),
        vec![Action::CtClear, resubmit(INT_DROPPED_TRAFFIC)],
        format!("firewall: anything else from {dev} (spoofed MAC or IP, other ethertypes) is dropped"),
    ));
    // Accept-or-ingress: traffic to another filtered port of the host goes
    // through that port's ingress; new connections are committed.
    for &mac in &p.macs {
        v.push(flow(
            INT_ACCEPT_OR_INGRESS,
            100,
            Match { dl_dst: Some(mac), regs: regs(None, Some(l)), ..Default::default() },
            vec![load(REG_PORT, n), resubmit(INT_BASE_INGRESS)],
            format!("firewall: accepted egress to {mac} on network {l} is ingress of {dev}"),
        ));
    }
    v.push(flow(
        INT_ACCEPT_OR_INGRESS,
        90,
        Match { proto: Some(Proto::Ip), regs: regs(Some(n), None), ct_state: new_not_est(), ..Default::default() },
        vec![ct_commit(), resubmit(INT_ACCEPTED_EGRESS_TRAFFIC)],
        format!("firewall: a new connection {dev} opened is committed in zone {l}"),
    ));
    v.push(flow(
        INT_ACCEPT_OR_INGRESS,
        80,
        Match { regs: regs(Some(n), None), ..Default::default() },
        vec![resubmit(INT_ACCEPTED_EGRESS_TRAFFIC_NORMAL)],
        format!("firewall: accepted egress of {dev}: switch normally"),
    ));
    // Ingress base.
    let out = Action::Output(dev.clone());
    let reg = |m: Match| Match { regs: regs(Some(n), None), ..m };
    v.push(flow(
        INT_BASE_INGRESS,
        100,
        reg(Match { proto: Some(Proto::Arp), ..Default::default() }),
        vec![out.clone()],
        format!("firewall: ARP to {dev} is always delivered"),
    ));
    v.push(flow(
        INT_BASE_INGRESS,
        95,
        reg(Match {
            proto: Some(Proto::Udp),
            tp_src: Some(Masked::<u16>::exact(67)),
            tp_dst: Some(Masked::<u16>::exact(68)),
            ..Default::default()
        }),
        vec![out],
        format!("firewall: DHCP answers to {dev} are always delivered"),
    ));
    v.push(flow(
        INT_BASE_INGRESS,
        90,
        reg(Match { proto: Some(Proto::Ip), ct_state: ct_state(0, TRK), ..Default::default() }),
        vec![ct_to(INT_RULES_INGRESS)],
        format!("firewall: IPv4 to {dev} not yet tracked: track in zone {l}, then RULES_INGRESS"),
    ));
    v.push(flow(
        INT_BASE_INGRESS,
        80,
        reg(Match { ct_state: ct_state(TRK, TRK), ..Default::default() }),
        vec![resubmit(INT_RULES_INGRESS)],
        format!("firewall: tracked traffic to {dev}: RULES_INGRESS"),
    ));
    v
}

/// `_initialize_tracked_ingress` / `_initialize_tracked_egress`: conntrack
/// states every port's rule tables start with.
fn tracked_flows(p: &FwPort) -> Vec<Arc<Flow>> {
    let dev = &p.dev;
    let (n, l) = (p.ofport, p.lvid);
    let mut v = Vec::new();
    for (table, accept, what) in
        [(INT_RULES_INGRESS, Action::Output(dev.clone()), "to"), (INT_RULES_EGRESS, resubmit(INT_ACCEPTED_EGRESS_TRAFFIC_NORMAL), "from")]
    {
        v.push(flow(
            table,
            50,
            Match { ct_state: ct_state(TRK | INV, TRK | INV), ..Default::default() },
            vec![resubmit(INT_DROPPED_TRAFFIC)],
            "firewall: packets conntrack finds invalid are dropped",
        ));
        v.push(flow(
            table,
            50,
            Match { regs: regs(Some(n), None), ct_mark: Some(Masked::<u32>::exact(CT_MARK_INVALID)), ..Default::default() },
            vec![resubmit(INT_DROPPED_TRAFFIC)],
            format!("firewall: connections {what} {dev} that a removed rule had allowed are dropped"),
        ));
        for (state, name) in
            [(ct_state(EST | RPL, EST | REL | RPL), "replies of established"), (ct_state(REL, NEW | EST | REL | INV), "related")]
        {
            v.push(flow(
                table,
                50,
                Match {
                    regs: regs(Some(n), None),
                    ct_state: state,
                    ct_mark: Some(Masked::<u32>::exact(0)),
                    ct_zone: Some(l as u16),
                    ..Default::default()
                },
                vec![accept.clone()],
                format!("firewall: {name} connections {what} {dev} pass"),
            ));
        }
        v.push(flow(
            table,
            40,
            Match { regs: regs(Some(n), None), ct_state: ct_state(0, EST), ..Default::default() },
            vec![resubmit(INT_DROPPED_TRAFFIC)],
            format!("firewall: a new connection {what} {dev} that no rule allows is dropped"),
        ));
        v.push(flow(
            table,
            40,
            Match { proto: Some(Proto::Ip), regs: regs(Some(n), None), ct_state: ct_state(EST, EST), ..Default::default() },
            vec![ct_commit_mark_invalid()],
            format!("firewall: an established connection {what} {dev} that no rule allows any more is marked invalid"),
        ));
    }
    v
}

/// The match part a rule adds (protocol, ports / ICMP type), one per masked port range.
fn rule_matches(protocol: &RuleProtocol) -> Vec<Match> {
    let base = |proto| Match { proto: Some(proto), ..Default::default() };
    match protocol {
        RuleProtocol::Any => vec![base(Proto::Ip)],
        RuleProtocol::Tcp { ports } | RuleProtocol::Udp { ports } | RuleProtocol::Sctp { ports } => {
            let proto = match protocol {
                RuleProtocol::Tcp { .. } => Proto::Tcp,
                RuleProtocol::Udp { .. } => Proto::Udp,
                _ => Proto::IpProto(132),
            };
            match ports {
                None => vec![base(proto)],
                Some(r) => port_masks(r.min, r.max).into_iter().map(|m| Match { tp_dst: Some(m), ..base(proto) }).collect(),
            }
        }
        RuleProtocol::Icmp { filter } => {
            let mut m = base(Proto::Icmp);
            if let Some(f) = filter {
                m.icmp_type = Some(f.icmp_type);
                m.icmp_code = f.icmp_code;
            }
            vec![m]
        }
        RuleProtocol::Other { number } => vec![base(Proto::IpProto(*number))],
    }
}

/// Neutron's `flow_priority_offset`: more specific rules get higher priority
/// (0 any protocol, 1 ICMP any type, 2 ICMP type, 3 the rest); +4 for rules
/// without a remote group.
fn priority_offset(protocol: &RuleProtocol, conjunction: bool) -> u16 {
    let base = if conjunction { 0 } else { 4 };
    base + match protocol {
        RuleProtocol::Any => 0,
        RuleProtocol::Icmp { filter: None } => 1,
        RuleProtocol::Icmp { filter: Some(IcmpFilter { icmp_code: None, .. }) } => 2,
        _ => 3,
    }
}

/// A range of ports as masked matches (`utils.port_rule_masking`): the
/// smallest set of value/mask pairs covering exactly `min..=max`.
pub fn port_masks(min: u16, max: u16) -> Vec<Masked<u16>> {
    let mut out = Vec::new();
    let (mut lo, hi) = (u32::from(min), u32::from(max));
    while lo <= hi {
        // The largest aligned block starting at `lo` that fits.
        let mut size = if lo == 0 { 1 << 16 } else { lo & lo.wrapping_neg() };
        while lo + size - 1 > hi {
            size >>= 1;
        }
        out.push(Masked { value: lo as u16, mask: !(size - 1) as u16 });
        lo += size;
    }
    out
}

fn rule_ref(g: &SecurityGroup, r: &SecurityGroupRule, cx: &HostCtx) -> Arc<SgRuleRef> {
    Arc::new(SgRuleRef { group: g.name.clone(), group_id: g.id.to_string(), rule_id: r.id.to_string(), summary: rule_summary(cx.topo, r) })
}

/// A rule in one line: `ingress IPv4 tcp 22 from 0.0.0.0/0` ([`dvr_model::security::rule_text`]).
pub fn rule_summary(topo: &Topology, r: &SecurityGroupRule) -> String {
    rule_text(topo, r)
}

fn with_rule(f: Arc<Flow>, rule: &Arc<SgRuleRef>) -> Arc<Flow> {
    let mut f = Arc::unwrap_or_clone(f);
    f.sg_rule = Some(rule.clone());
    Arc::new(f)
}

/// Table and accepting actions of a rule direction (`populate_flow_common`).
fn direction_table(d: Direction) -> TableDecl {
    match d {
        Direction::Ingress => INT_RULES_INGRESS,
        Direction::Egress => INT_RULES_EGRESS,
    }
}

fn accept_actions(d: Direction, dev: &str) -> Vec<Action> {
    match d {
        Direction::Ingress => vec![Action::Output(dev.to_string())],
        Direction::Egress => vec![resubmit(INT_ACCEPT_OR_INGRESS)],
    }
}

/// `create_accept_flows`: an established connection's packets pass; a new
/// connection is committed (ingress: then delivered and copied to table 92).
fn accept_pair(d: Direction, dev: &str, prio: u16, m: Match, reason: String) -> [Arc<Flow>; 2] {
    let table = direction_table(d);
    let est = flow(table, prio, Match { ct_state: est_not_reply(), ..m.clone() }, accept_actions(d, dev), reason.clone());
    let new_actions = match d {
        Direction::Ingress => vec![ct_commit(), Action::Output(dev.to_string()), resubmit(INT_ACCEPTED_INGRESS_TRAFFIC)],
        Direction::Egress => accept_actions(d, dev),
    };
    let new = flow(table, prio, Match { ct_state: new_not_est(), ..m }, new_actions, reason);
    [est, new]
}

/// Flows of the port's rules without a remote group (`add_flows_from_rules`).
fn rule_flows(cx: &HostCtx, p: &FwPort) -> Vec<Arc<Flow>> {
    let sec = &cx.topo.security;
    let mut v = Vec::new();
    for &g in &p.sec.groups {
        let group = sec.group(g);
        for r in group.rules.iter().filter(|r| !matches!(r.remote, Remote::Group(_))) {
            let rr = rule_ref(group, r, cx);
            let prio = 70 + priority_offset(&r.protocol, false);
            for mut m in rule_matches(&r.protocol) {
                m.regs = regs(Some(p.ofport), None);
                if let Remote::Prefix(n) = r.remote {
                    match r.direction {
                        Direction::Ingress => m.nw_src = Some(net_match(n)),
                        Direction::Egress => m.nw_dst = Some(net_match(n)),
                    }
                }
                let why = format!("firewall: {} of {} allows {}", group.name, p.dev, rule_summary(cx.topo, r));
                for f in accept_pair(r.direction, &p.dev, prio, m, why) {
                    v.push(with_rule(f, &rr));
                }
            }
        }
    }
    v
}

/// One remote-group rule of a port, with its conjunction id.
struct ConjRule<'a> {
    group: &'a SecurityGroup,
    rule: &'a SecurityGroupRule,
    conj_id: u32,
}

/// Conjunctive flows for rules with a remote group (`_add_non_ip_conj_flows`
/// and `ConjIPFlowManager`): clause 2/2 matches the port and protocol, clause
/// 1/2 the address of a member of the remote group (on the port's network);
/// `conj_id` flows accept and record the conjunction in reg7.
fn conj_flows(cx: &HostCtx, ports: &[FwPort]) -> Vec<Arc<Flow>> {
    let sec = &cx.topo.security;
    let mut blocks: HashMap<(SecurityGroupIx, SecurityGroupIx, Direction), u32> = HashMap::new();
    let mut next_block = FIRST_CONJ_ID;
    // Per local VLAN: (direction) → remote group → conj ids.
    let mut per_vlan: BTreeMap<u32, BTreeMap<Direction, BTreeMap<SecurityGroupIx, BTreeSet<u32>>>> = BTreeMap::new();
    let mut v = Vec::new();
    for p in ports {
        let mut rules: Vec<ConjRule> = Vec::new();
        for &g in &p.sec.groups {
            let group = sec.group(g);
            for rule in &group.rules {
                let Remote::Group(remote) = rule.remote else { continue };
                let block = *blocks.entry((g, remote, rule.direction)).or_insert_with(|| {
                    let b = next_block;
                    next_block += CONJ_ID_BLOCK;
                    b
                });
                let conj_id = block + 2 * u32::from(priority_offset(&rule.protocol, true));
                per_vlan.entry(p.lvid).or_default().entry(rule.direction).or_default().entry(remote).or_default().insert(conj_id);
                rules.push(ConjRule { group, rule, conj_id });
            }
        }
        // Group by (direction, protocol number), merge port ranges, one clause per match.
        let mut by_kind: BTreeMap<(Direction, Option<u8>), Vec<&ConjRule>> = BTreeMap::new();
        for r in &rules {
            by_kind.entry((r.rule.direction, r.rule.protocol.number())).or_default().push(r);
        }
        for ((direction, _), list) in &by_kind {
            let all_ids: BTreeSet<u32> = list.iter().map(|r| r.conj_id).collect();
            for (protocol, ids, first) in merge_rules(list) {
                let prio = 70 + priority_offset(&protocol, true);
                let rr = rule_ref(first.group, first.rule, cx);
                for mut m in rule_matches(&protocol) {
                    m.regs = regs(Some(p.ofport), None);
                    for (k, state) in [est_not_reply(), new_not_est()].into_iter().enumerate() {
                        let actions = ids.iter().map(|&c| Action::Conjunction { id: c + k as u32, clause: 2, n_clauses: 2 }).collect();
                        let f = flow(
                            direction_table(*direction),
                            prio,
                            Match { ct_state: state, ..m.clone() },
                            actions,
                            format!("firewall: {} of {}: {} (the port half of the conjunction)", first.group.name, p.dev, protocol),
                        );
                        v.push(with_rule(f, &rr));
                    }
                }
            }
            for &c in &all_ids {
                let r = list.iter().find(|r| r.conj_id == c).expect("every id comes from a rule");
                let rr = rule_ref(r.group, r.rule, cx);
                let prio = 70 + ((c % CONJ_ID_BLOCK) / 2) as u16;
                let m = Match { proto: Some(Proto::Ip), regs: regs(Some(p.ofport), None), ..Default::default() };
                let why = format!("firewall: {} of {} allows {}", r.group.name, p.dev, rule_summary(cx.topo, r.rule));
                let [est, new] = accept_pair(*direction, &p.dev, prio, m, why);
                for (f, id) in [(est, c), (new, c + 1)] {
                    let mut f = Arc::unwrap_or_clone(f);
                    f.matches.conj_id = Some(id);
                    f.actions.insert(0, load(REG_REMOTE_GROUP, id));
                    f.sg_rule = Some(rr.clone());
                    v.push(Arc::new(f));
                }
            }
        }
    }
    // Clause 1/2: the members' addresses, per network.
    for (lvid, dirs) in per_vlan {
        for (direction, remotes) in dirs {
            let mut addr_ids: BTreeMap<Ipv4Match, BTreeSet<u32>> = BTreeMap::new();
            for (remote, ids) in remotes {
                for ip in member_addresses(cx.topo, remote) {
                    addr_ids.entry(ip).or_default().extend(ids.iter().copied());
                }
            }
            for (ip, ids) in addr_ids {
                let mut by_offset: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
                for c in ids {
                    by_offset.entry((c % CONJ_ID_BLOCK) / 2).or_default().push(c);
                }
                for (offset, ids) in by_offset {
                    let mut m = Match { proto: Some(Proto::Ip), regs: regs(None, Some(lvid)), ..Default::default() };
                    match direction {
                        Direction::Ingress => m.nw_src = Some(ip),
                        Direction::Egress => m.nw_dst = Some(ip),
                    }
                    for (k, state) in [est_not_reply(), new_not_est()].into_iter().enumerate() {
                        let actions = ids.iter().map(|&c| Action::Conjunction { id: c + k as u32, clause: 1, n_clauses: 2 }).collect();
                        v.push(flow(
                            direction_table(direction),
                            70 + offset as u16,
                            Match { ct_state: state, ..m.clone() },
                            actions,
                            format!("firewall: {ip} is a member of a remote group (the address half of the conjunction)"),
                        ));
                    }
                }
            }
        }
    }
    v
}

/// Addresses of a group's members (fixed IPs and allowed address pairs),
/// as the server's `_select_ips_for_remote_group` lists them.
fn member_addresses(topo: &Topology, group: SecurityGroupIx) -> BTreeSet<Ipv4Match> {
    let mut out = BTreeSet::new();
    for i in topo.security.members(group) {
        let port = topo.port(topo.instance(i).port);
        out.insert(Ipv4Match::host(port.ip));
        if let Some(ps) = topo.security.port(i) {
            out.extend(ps.allowed_address_pairs.iter().map(|a| net_match(a.ip)));
        }
    }
    out
}

/// Merge the remote-group rules of one (direction, protocol) of a port as
/// Neutron does (`merge_port_ranges` for tcp/udp/sctp: non-overlapping
/// ranges, each with every conjunction covering it; `merge_common_rules`
/// otherwise: equal rules share a flow). Returns (protocol, conj ids, first rule).
fn merge_rules<'a>(list: &[&'a ConjRule<'a>]) -> Vec<(RuleProtocol, Vec<u32>, &'a ConjRule<'a>)> {
    let proto = list[0].rule.protocol;
    if list.len() == 1 {
        return vec![(proto, vec![list[0].conj_id], list[0])];
    }
    if proto.number().is_some_and(|n| [6, 17, 132].contains(&n)) {
        // Sweep over range ends: (port, is_max, conj id).
        let mut ends: Vec<(u32, bool, u32, usize)> = Vec::new();
        for (i, r) in list.iter().enumerate() {
            let (lo, hi) = r.rule.protocol.ports().map_or((1, 65535), |p| (p.min, p.max));
            ends.push((u32::from(lo), false, r.conj_id, i));
            ends.push((u32::from(hi), true, r.conj_id, i));
        }
        ends.sort_by_key(|&(port, is_max, _, _)| port * 2 + u32::from(is_max));
        let mut out: Vec<(u32, u32, Vec<u32>)> = Vec::new();
        let mut cur: BTreeMap<u32, u32> = BTreeMap::new(); // conj id → open count
        let mut cur_min = 0;
        for (port, is_max, c, _) in ends {
            if !is_max {
                if let Some(n) = cur.get_mut(&c) {
                    *n += 1;
                    continue;
                }
                if !cur.is_empty() && cur_min != port {
                    out.push((cur_min, port - 1, cur.keys().copied().collect()));
                }
                cur_min = port;
                cur.insert(c, 1);
            } else {
                let n = cur.get_mut(&c).expect("a range ends after it starts");
                if *n > 1 {
                    *n -= 1;
                    continue;
                }
                if cur_min <= port {
                    out.push((cur_min, port, cur.keys().copied().collect()));
                    cur_min = port + 1;
                }
                cur.remove(&c);
            }
        }
        let with = |ports: Option<PortRange>| match proto {
            RuleProtocol::Tcp { .. } => RuleProtocol::Tcp { ports },
            RuleProtocol::Udp { .. } => RuleProtocol::Udp { ports },
            _ => RuleProtocol::Sctp { ports },
        };
        if out.len() == 1 && out[0].0 == 1 && out[0].1 == 65535 {
            return vec![(with(None), out.remove(0).2, list[0])];
        }
        return out.into_iter().map(|(lo, hi, ids)| (with(Some(PortRange { min: lo as u16, max: hi as u16 })), ids, list[0])).collect();
    }
    // Same protocol, maybe different ICMP type/code: one flow per distinct filter.
    let mut out: Vec<(RuleProtocol, Vec<u32>, &ConjRule)> = Vec::new();
    for r in list {
        match out.iter_mut().find(|(p, _, _)| *p == r.rule.protocol) {
            Some((_, ids, _)) => ids.push(r.conj_id),
            None => out.push((r.rule.protocol, vec![r.conj_id], r)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covered(masks: &[Masked<u16>]) -> Vec<u16> {
        (0..=u16::MAX).filter(|&p| masks.iter().any(|m| m.matches(p))).collect()
    }

    #[test]
    fn port_masks_cover_exactly_the_range() {
        for (lo, hi, n) in [(22, 22, 1), (16, 23, 1), (40, 105, 5), (1, 65535, 16), (1024, 2047, 1), (80, 81, 1), (79, 80, 2)] {
            let m = port_masks(lo, hi);
            assert_eq!(covered(&m), (lo..=hi).collect::<Vec<_>>(), "{lo}-{hi}");
            assert_eq!(m.len(), n, "{lo}-{hi}: {m:?}");
        }
        // Neutron's own example: [64, 105] = 0x40/0xffe0, 0x60/0xfff8, 0x68/0xfffe.
        assert_eq!(
            port_masks(64, 105),
            [Masked { value: 0x40, mask: 0xffe0 }, Masked { value: 0x60, mask: 0xfff8 }, Masked { value: 0x68, mask: 0xfffe }]
        );
    }
}
