//! The OpenFlow builders, one per feature of the OVS agent, each pure and
//! small. Names follow the Neutron code that emits the same flows, so
//! `dvr plan --explain` can point a reader at the source.

use crate::ctx::{HostCtx, QrOnHost, flow};
use crate::tables::*;
use dvr_model::*;
use dvr_openflow::{Action, Flow, Ipv4Match, Match, Proto, VlanMatch};
use std::sync::Arc;

/// br-int base flows (`setup_default_table`, DVR `setup_dvr_flows_on_integ_br`).
pub fn int_base_flows(cx: &HostCtx) -> Vec<Arc<Flow>> {
    let p = cx.profile;
    let mut v = vec![
        flow(INT_LOCAL_SWITCHING, 0, Match::default(), vec![p.next(p.egress_start())], "table miss: everything else is switched normally"),
        flow(
            INT_LOCAL_SWITCHING,
            65535,
            Match { dl_vlan: Some(VlanMatch::Tagged(4095)), ..Default::default() },
            vec![Action::Drop],
            "drop traffic of dead ports (VLAN 4095)",
        ),
        flow(INT_CANARY, 0, Match::default(), vec![Action::Drop], "canary: when this stage is empty, OVS restarted and lost the flows"),
        flow(INT_ARP_SPOOF, 0, Match::default(), vec![Action::Drop], "ARP not allowed by a per-port flow is spoofed"),
        flow(INT_TRANSIENT, 1, Match::default(), vec![Action::Normal], "learning switch for all non-DVR traffic"),
        flow(INT_DVR_TO_SRC_MAC, 1, Match::default(), vec![Action::Drop], "DVR: unknown routed frames from remote hosts (tunnels)"),
        flow(
            INT_DVR_TO_SRC_MAC_PHYSICAL,
            1,
            Match::default(),
            vec![Action::Drop],
            "DVR: unknown routed frames from remote hosts (vlan/flat)",
        ),
    ];
    if p.has_passthrough_tables() {
        v.push(flow(INT_LOCAL_EGRESS, 0, Match::default(), vec![p.next(INT_PACKET_RATE_LIMIT)], "local-IP feature off: pass on"));
        v.push(flow(INT_LOCAL_IP, 0, Match::default(), vec![p.next(INT_PACKET_RATE_LIMIT)], "local-IP feature off: pass on"));
        v.push(flow(INT_PACKET_RATE_LIMIT, 0, Match::default(), vec![p.next(INT_BANDWIDTH_RATE_LIMIT)], "no packet-rate limit: pass on"));
        v.push(flow(INT_BANDWIDTH_RATE_LIMIT, 0, Match::default(), vec![p.next(INT_TRANSIENT)], "no bandwidth limit: pass on"));
        v.push(flow(INT_TRANSIENT_EGRESS, 3, Match::default(), vec![Action::Normal], "egress learning switch"));
    }
    v
}

/// br-int flows per physical bridge: stray-frame drop, own and remote DVR
/// MACs (`_add_dvr_mac`), and segment → local VLAN translation per network.
pub fn int_phys_flows(cx: &HostCtx) -> Vec<Arc<Flow>> {
    let p = cx.profile;
    let mut v = Vec::new();
    for m in &cx.host.bridge_mappings {
        let int_patch = cx.int_patch(m);
        let on = |f: Match| Match { in_port: Some(int_patch.clone()), ..f };
        v.push(flow(
            INT_LOCAL_SWITCHING,
            2,
            on(Match::default()),
            vec![Action::Drop],
            format!("drop frames from {} that no translation flow claims", m.bridge),
        ));
        v.extend(cx.per_remote_mac(INT_LOCAL_SWITCHING.id.0, 4, &int_patch, |mac| {
            flow(
                INT_LOCAL_SWITCHING,
                4,
                on(Match { dl_src: Some(mac), ..Default::default() }),
                vec![p.next(INT_DVR_TO_SRC_MAC_PHYSICAL)],
                format!("routed frame from the host with DVR MAC {mac}: restore the gateway MAC in DVR_TO_SRC_MAC_PHYSICAL"),
            )
        }));
        v.push(flow(
            INT_LOCAL_SWITCHING,
            5,
            on(Match { dl_dst: Some(cx.dvr_mac()), ..Default::default() }),
            vec![p.next(INT_ARP_DVR_MAC_TO_DST_MAC_PHYSICAL)],
            "frame addressed to this host's DVR MAC: hand it to the router port in ARP_DVR_MAC_TO_DST_MAC_PHYSICAL",
        ));
        v.extend(cx.host.local_vlans.iter().filter_map(|&(n, lvid)| int_translation(cx, m, n, lvid)));
    }
    v
}

/// br-int's translation of network `n`'s segment on mapping `m` to its
/// local VLAN `lvid` (table 0, priority 3; `None` when `n` is not on `m`).
pub fn int_translation(cx: &HostCtx, m: &BridgeMapping, n: NetworkIx, lvid: VlanId) -> Option<Arc<Flow>> {
    let int_patch = cx.int_patch(m);
    let net = cx.topo.network(n);
    if net.segment.physnet() != Some(m.physnet.as_str()) {
        return None;
    }
    let (vlan, actions) = match &net.segment {
        Segment::Vlan { vlan, .. } => {
            (VlanMatch::Tagged(vlan.get()), vec![Action::ModVlanVid(lvid.get()), crate::firewall::after_vlan_translation(cx)])
        }
        _ => (VlanMatch::Untagged, vec![Action::PushVlan, Action::ModVlanVid(lvid.get()), crate::firewall::after_vlan_translation(cx)]),
    };
    let seg = match vlan {
        VlanMatch::Tagged(s) => format!("VLAN {s}"),
        VlanMatch::Untagged => "untagged".into(),
    };
    Some(flow(
        INT_LOCAL_SWITCHING,
        3,
        Match { in_port: Some(int_patch), dl_vlan: Some(vlan), ..Default::default() },
        actions,
        format!("network {}: {seg} on the wire becomes local VLAN {lvid}", net.name),
    ))
}

/// ICMPv6 type of a neighbour advertisement.
const ICMPV6_NEIGHBOR_ADVERT: u8 = 136;

/// Anti-spoofing for each instance port (`setup_arp_spoofing_protection`,
/// `install_mac_spoofing_protection`): tables 0 → 24 → 25; in the current
/// profile also IPv6 neighbour advertisements (0 → 24 → egress), see
/// [`crate::Profile::has_icmpv6_na_protection`]. None with the
/// `openvswitch` firewall, which replaces them.
pub fn anti_spoof_flows(cx: &HostCtx) -> Vec<Arc<Flow>> {
    let p = cx.profile;
    let mut v = Vec::new();
    // The openvswitch firewall does its own (MAC, IP) anti-spoofing in table 71
    // (`provides_arp_spoofing_protection`), so the agent installs none of these.
    if crate::firewall::enabled(cx.topo) {
        return v;
    }
    for port in cx.bound_ports().filter(|p| matches!(p.owner, PortOwner::Compute { .. })) {
        let dev = port.device_name();
        let on = |m: Match| Match { in_port: Some(dev.clone()), ..m };
        v.push(flow(
            INT_LOCAL_SWITCHING,
            10,
            on(Match { proto: Some(Proto::Arp), ..Default::default() }),
            vec![p.next(INT_ARP_SPOOF)],
            format!("ARP from {dev}: check the sender IP"),
        ));
        v.push(flow(
            INT_LOCAL_SWITCHING,
            9,
            on(Match::default()),
            vec![p.next(INT_MAC_SPOOF)],
            format!("frames from {dev}: check the source MAC"),
        ));
        if p.has_icmpv6_na_protection() {
            let na = Match { proto: Some(Proto::Icmp6), icmp_type: Some(ICMPV6_NEIGHBOR_ADVERT), ..Default::default() };
            let lla = port.mac.ipv6_link_local();
            v.push(flow(
                INT_LOCAL_SWITCHING,
                10,
                on(na.clone()),
                vec![p.next(INT_ARP_SPOOF)],
                format!("IPv6 neighbour advertisement from {dev}: check the target"),
            ));
            v.push(flow(
                INT_ARP_SPOOF,
                2,
                on(Match { nd_target: Some(lla), ..na }),
                vec![p.next(p.egress_start())],
                format!("{dev} may advertise its link-local address {lla} only"),
            ));
        }
        v.push(flow(
            INT_ARP_SPOOF,
            2,
            on(Match { proto: Some(Proto::Arp), arp_spa: Some(Ipv4Match::host(port.ip)), ..Default::default() }),
            vec![p.next(INT_MAC_SPOOF)],
            format!("{dev} may claim {} only", port.ip),
        ));
        v.push(flow(
            INT_MAC_SPOOF,
            2,
            on(Match { dl_src: Some(port.mac), ..Default::default() }),
            vec![p.next(p.after_mac_spoof())],
            format!("{dev} may send from {} only", port.mac),
        ));
    }
    v
}

/// The VLAN a frame from a remote DVR host carries on br-int
/// (`vlan_to_use`): the segment for vlan networks, none for flat ones.
fn wire_vlan(seg: &Segment, lvid: VlanId) -> VlanMatch {
    match seg {
        Segment::Vlan { vlan, .. } => VlanMatch::Tagged(vlan.get()),
        Segment::Flat { .. } => VlanMatch::Untagged,
        Segment::Vxlan { .. } => VlanMatch::Tagged(lvid.get()),
    }
}

/// br-int DVR flows per router interface bound here (`_bind_distributed_router_interface_port`):
/// table 4 (frames to the own DVR MAC), table 0 priority 99 (ARP replies to
/// the DVR MAC), and for each local DVR-serviced port of the subnet, the
/// table 2 source-MAC restore and the table 60 direct output.
pub fn int_dvr_flows(cx: &HostCtx) -> Vec<Arc<Flow>> {
    cx.dvr_interfaces().iter().flat_map(|qr| int_dvr_flows_of(cx, qr)).collect()
}

/// The br-int tables of a router interface's DVR flows: (to source MAC, to
/// destination MAC). Tunnel networks use the tunnel tables (1, 3), vlan/flat
/// ones the physical tables (2, 4) (`_dvr_to_src_mac_table_id`,
/// `_dvr_dst_mac_table_id`); `None` for a network this host cannot reach.
pub fn dvr_tables(cx: &HostCtx, qr: &QrOnHost) -> Option<(TableDecl, TableDecl)> {
    if cx.topo.network(qr.subnet.network).segment.vni().is_some() {
        Some((INT_DVR_TO_SRC_MAC, INT_ARP_DVR_MAC_TO_DST_MAC))
    } else if cx.mapping_of(qr.subnet.network).is_some() {
        Some((INT_DVR_TO_SRC_MAC_PHYSICAL, INT_ARP_DVR_MAC_TO_DST_MAC_PHYSICAL))
    } else {
        None
    }
}

/// The local ports a router interface's DVR flows serve (DVR-serviced
/// ports and the SNAT port of its subnet bound here), in port order.
pub fn dvr_serviced<'a>(cx: &'a HostCtx, qr: &'a QrOnHost) -> impl Iterator<Item = &'a Port> + 'a {
    cx.bound_ports()
        .filter(|p| p.subnet == qr.subnet_ix && (p.owner.is_dvr_serviced() || matches!(p.owner, PortOwner::CentralizedSnat { .. })))
}

/// [`int_dvr_flows`] of one router interface, in the order the planner
/// emits them: (to destination MAC, 5), (0, 99), then per serviced port
/// (to source MAC, 20) and (TRANSIENT, 20). `crate::ifacepatch` counts
/// on this shape.
pub fn int_dvr_flows_of(cx: &HostCtx, qr: &QrOnHost) -> Vec<Arc<Flow>> {
    int_dvr_flows_for(cx, qr, dvr_serviced(cx, qr))
}

/// [`int_dvr_flows_of`] for the given serviced ports (e.g. with a port
/// that has just left the host).
pub fn int_dvr_flows_for<'a>(cx: &HostCtx, qr: &QrOnHost, serviced: impl Iterator<Item = &'a Port>) -> Vec<Arc<Flow>> {
    let p = cx.profile;
    let mut v = Vec::new();
    let Some((to_src_mac, to_dst_mac)) = dvr_tables(cx, qr) else { return v };
    let qr_dev = qr.port.device_name();
    let gw_mac = qr.port.mac;
    v.push(flow(
        to_dst_mac,
        5,
        Match { dl_vlan: Some(VlanMatch::Tagged(qr.lvid.get())), dl_dst: Some(cx.dvr_mac()), ..Default::default() },
        vec![Action::ModDlDst(gw_mac), Action::StripVlan, Action::Output(qr_dev.clone())],
        format!("to this host's DVR MAC on local VLAN {}: deliver to {qr_dev} (matches the local VLAN, quirk Q4)", qr.lvid),
    ));
    v.push(flow(
        INT_LOCAL_SWITCHING,
        99,
        Match { proto: Some(Proto::Arp), dl_dst: Some(cx.dvr_mac()), arp_op: Some(2), arp_tha: Some(gw_mac), ..Default::default() },
        vec![Action::ModDlDst(gw_mac), p.next(p.egress_start())],
        format!("ARP reply meant for gateway {}: restore its MAC as destination", qr.subnet.gateway),
    ));
    let net = cx.topo.network(qr.subnet.network);
    let vlan = wire_vlan(&net.segment, qr.lvid);
    for port in serviced {
        let dev = port.device_name();
        let m = Match { dl_vlan: Some(vlan), dl_dst: Some(port.mac), ..Default::default() };
        v.push(flow(
            to_src_mac,
            20,
            m.clone(),
            vec![Action::ModDlSrc(gw_mac), p.next(p.egress_start())],
            format!("routed frame for {dev} ({}) from a remote host: the source becomes gateway {} again", port.ip, qr.subnet.gateway),
        ));
        let mut out = Vec::new();
        if vlan != VlanMatch::Untagged {
            out.push(Action::StripVlan);
        }
        out.push(Action::Output(dev.clone()));
        v.push(flow(INT_TRANSIENT, 20, m, out, format!("routed frame for {dev}: untag and output directly")));
    }
    v
}

/// Physical-bridge flows (`setup_dvr_flows_on_phys_br`, `provision_local_vlan`,
/// DVR_PROCESS per router interface) for the bridge of `mapping`.
pub fn phys_flows(cx: &HostCtx, mapping: &BridgeMapping) -> Vec<Arc<Flow>> {
    let p = cx.profile;
    let phy = cx.phy_patch(mapping);
    let from_int = Match { in_port: Some(phy.clone()), ..Default::default() };
    let mut v = vec![
        flow(PHYS_LOCAL_SWITCHING, 0, Match::default(), vec![Action::Normal], "default: learning switch"),
        flow(PHYS_LOCAL_SWITCHING, 2, from_int.clone(), vec![p.next(PHYS_DVR_PROCESS)], "from br-int: DVR processing first"),
        flow(PHYS_LOCAL_SWITCHING, 1, Match::default(), vec![p.next(PHYS_DVR_NOT_LEARN)], "from the wire: check for remote DVR MACs"),
        flow(PHYS_DVR_PROCESS, 0, Match::default(), vec![p.next(PHYS_LOCAL_VLAN_TRANSLATION)], "not routed: go on to VLAN translation"),
        flow(PHYS_LOCAL_VLAN_TRANSLATION, 2, from_int.clone(), vec![Action::Drop], "from br-int on a VLAN without translation: drop"),
        flow(PHYS_DVR_NOT_LEARN, 1, Match::default(), vec![Action::Normal], "ordinary frame from the wire: learning switch to br-int"),
    ];
    v.extend(cx.per_remote_mac(PHYS_DVR_NOT_LEARN.id.0, 2, &phy, |mac| {
        flow(
            PHYS_DVR_NOT_LEARN,
            2,
            Match { dl_src: Some(mac), ..Default::default() },
            vec![Action::Output(phy.clone())],
            format!("routed frame from DVR MAC {mac}: straight to br-int, never learned"),
        )
    }));
    v.extend(cx.host.local_vlans.iter().filter_map(|&(n, lvid)| phys_translation(cx, mapping, n, lvid)));
    for qr in cx.dvr_interfaces() {
        v.extend(phys_dvr_flows_of(cx, mapping, &qr));
    }
    v
}

/// The physical bridge's translation of local VLAN `lvid` of network `n`
/// back to its segment (LOCAL_VLAN_TRANSLATION, priority 4; `None` when `n`
/// is not on `mapping`).
pub fn phys_translation(cx: &HostCtx, mapping: &BridgeMapping, n: NetworkIx, lvid: VlanId) -> Option<Arc<Flow>> {
    let net = cx.topo.network(n);
    if net.segment.physnet() != Some(mapping.physnet.as_str()) {
        return None;
    }
    let (actions, what) = match &net.segment {
        Segment::Vlan { vlan, .. } => (vec![Action::ModVlanVid(vlan.get()), Action::Normal], format!("VLAN {vlan}")),
        _ => (vec![Action::StripVlan, Action::Normal], "untagged".to_string()),
    };
    Some(flow(
        PHYS_LOCAL_VLAN_TRANSLATION,
        4,
        Match { in_port: Some(cx.phy_patch(mapping)), dl_vlan: Some(VlanMatch::Tagged(lvid.get())), ..Default::default() },
        actions,
        format!("network {}: local VLAN {lvid} leaves as {what}", net.name),
    ))
}

/// A router interface's DVR_PROCESS flows on the physical bridge of
/// `mapping`, in emission order: (gateway ARP drop table, 3), (DVR_PROCESS,
/// 2), (DVR_PROCESS, 1); none when its network is on another bridge.
pub fn phys_dvr_flows_of(cx: &HostCtx, mapping: &BridgeMapping, qr: &QrOnHost) -> Vec<Arc<Flow>> {
    let p = cx.profile;
    if cx.mapping_of(qr.subnet.network).map(|m| m.physnet.as_str()) != Some(mapping.physnet.as_str()) {
        return Vec::new();
    }
    let vl = Some(VlanMatch::Tagged(qr.lvid.get()));
    let gw = qr.subnet.gateway;
    vec![
        flow(
            p.gateway_arp_drop_table(),
            3,
            Match { proto: Some(Proto::Arp), dl_vlan: vl, arp_tpa: Some(Ipv4Match::host(gw)), ..Default::default() },
            vec![Action::Drop],
            format!("ARP for gateway {gw} never leaves the host: the local router answers"),
        ),
        flow(
            PHYS_DVR_PROCESS,
            2,
            Match { dl_vlan: vl, dl_dst: Some(qr.port.mac), ..Default::default() },
            vec![Action::Drop],
            format!("frames to gateway MAC {} never leave the host", qr.port.mac),
        ),
        flow(
            PHYS_DVR_PROCESS,
            1,
            Match { dl_vlan: vl, dl_src: Some(qr.port.mac), ..Default::default() },
            vec![Action::ModDlSrc(cx.dvr_mac()), p.next(PHYS_LOCAL_VLAN_TRANSLATION)],
            format!("routed by the local router ({}): source becomes this host's DVR MAC", qr.subnet.gateway),
        ),
    ]
}

/// Sort flows the way `ovs-ofctl dump-flows --rsort`-like readers expect:
/// by table, then descending priority; stable for equal keys.
pub fn sort_flows(flows: &mut [Arc<Flow>]) {
    flows.sort_by(|a, b| a.table.cmp(&b.table).then(b.priority.cmp(&a.priority)));
}
