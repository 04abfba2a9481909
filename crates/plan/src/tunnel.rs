//! VXLAN tenant networks: br-tun and its tunnel ports, the br-int flows for
//! frames from `patch-tun`, and l2population.
//!
//! The layout follows Neutron's OVS agent with `tunnel_types = vxlan`,
//! `enable_distributed_routing`, `l2_population` and `arp_responder` on:
//! `OVSTunnelBridge.setup_default_table`, `OVSDVRNeutronAgent
//! ._setup_dvr_flows_on_tun_br` / `_add_dvr_mac_for_tun_br` /
//! `_add_arp_dvr_mac_for_tun_br`, `provision_local_vlan`, and the l2pop
//! callbacks `fdb_add` → `setup_tunnel_port`, `add_fdb_flow`
//! (`install_flood_to_tun`, `install_unicast_to_tun`, `install_arp_responder`).
//!
//! l2population here is what the server would send this host: for every
//! VXLAN network present on it, each *other* host that also has the network
//! (a port bound there or a copy of a router with an interface on it) is a
//! remote VTEP: it gets a flood entry; each port bound there that is not a
//! distributed router interface (whose MAC is the same on every host) also
//! gets a unicast entry and an ARP-responder entry. Only hosts sharing a
//! network get tunnels to each other.

use crate::ctx::{HostCtx, flow};
use crate::model::{BridgePort, PortKind};
use crate::tables::*;
use dvr_model::*;
use dvr_openflow::{Action, Field, Flow, Ipv4Match, Learn, Match, Proto, Subfield, VlanMatch};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// The IANA VXLAN port, Neutron's `vxlan_udp_port` default.
pub const VXLAN_UDP_PORT: u16 = 4789;

/// The patch port on br-tun (Neutron's `int_peer_patch_port`).
pub const PATCH_INT: &str = "patch-int";

/// The patch port on br-int (Neutron's `tun_peer_patch_port`).
pub const PATCH_TUN: &str = "patch-tun";

/// ICMPv6 router advertisement, which br-tun learns from at priority 2.
const ICMPV6_ROUTER_ADVERT: u8 = 134;
/// ICMPv6 neighbour advertisement, likewise.
const ICMPV6_NEIGHBOR_ADVERT: u8 = 136;

/// Whether the host runs br-tun: every dataplane host of a deployment with
/// tunnels has a `local_ip` and the bridge, whether or not a VXLAN network
/// has ports on it yet (as the agent creates br-tun at start).
pub fn enabled(cx: &HostCtx) -> bool {
    cx.host.has_dataplane() && cx.host.tunnel_ip.is_some()
}

/// Neutron's tunnel port name: the type, a dash and the remote IPv4 address
/// in 8 hex digits (`get_tunnel_name`), e.g. `vxlan-ac100002`.
pub fn tunnel_port_name(remote: Ipv4Addr) -> String {
    format!("vxlan-{:08x}", u32::from(remote))
}

/// One remote port l2population announces: its MAC and address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct FdbPort {
    mac: MacAddr,
    ip: Ipv4Addr,
}

/// l2population's view of one VXLAN network from this host.
struct TunNet<'a> {
    net: &'a Network,
    vni: Vni,
    lvid: VlanId,
    /// Remote VTEP → its ports on the network (empty: flood entry only).
    remotes: BTreeMap<Ipv4Addr, Vec<FdbPort>>,
}

/// Every VXLAN network present on this host, in local-VLAN order, with its
/// remote VTEPs and their ports.
fn tunnel_networks<'a>(cx: &HostCtx<'a>) -> Vec<TunNet<'a>> {
    let t = cx.topo;
    let mut out = Vec::new();
    for &(n, lvid) in &cx.host.local_vlans {
        let net = t.network(n);
        let Some(vni) = net.segment.vni() else { continue };
        let mut remotes: BTreeMap<Ipv4Addr, Vec<FdbPort>> = BTreeMap::new();
        for (o, other) in t.hosts_ix() {
            if o == cx.ix || other.local_vlan(n).is_none() {
                continue;
            }
            let Some(ip) = other.tunnel_ip else { continue };
            let ports = remotes.entry(ip).or_default();
            for p in t.host_ports(o).filter(|p| p.network == n && !matches!(p.owner, PortOwner::RouterInterfaceDistributed { .. })) {
                ports.push(FdbPort { mac: p.mac, ip: p.ip });
            }
            ports.sort();
        }
        out.push(TunNet { net, vni, lvid, remotes });
    }
    out
}

/// Hash everything the tunnel builders read for host `ix` (its endpoint,
/// and for each of its VXLAN networks the other hosts that have it, their
/// endpoints and their announced ports), for [`crate::incremental`]: a port
/// booted on one host changes the br-tun of every host sharing its network.
pub fn fingerprint(t: &Topology, ix: HostIx, h: &mut impl std::hash::Hasher) {
    use std::hash::Hash;
    let host = t.host(ix);
    host.tunnel_ip.hash(h);
    if host.tunnel_ip.is_none() {
        return;
    }
    for &(n, _) in &host.local_vlans {
        if t.network(n).segment.vni().is_none() {
            continue;
        }
        for (o, other) in t.hosts_ix() {
            if o == ix || other.local_vlan(n).is_none() {
                continue;
            }
            (&other.name, other.tunnel_ip).hash(h);
            for p in t.host_ports(o).filter(|p| p.network == n && !matches!(p.owner, PortOwner::RouterInterfaceDistributed { .. })) {
                (p.mac, p.ip).hash(h);
            }
        }
    }
}

/// The br-tun ports: `patch-int`, then one VXLAN port per remote VTEP that
/// shares a network with this host, by remote address.
pub fn tun_ports(cx: &HostCtx) -> Vec<BridgePort> {
    let local_ip = cx.host.tunnel_ip.expect("br-tun is planned only on hosts with a tunnel_ip");
    let mut ports = vec![patch(PATCH_INT, PATCH_TUN)];
    let mut remotes: Vec<Ipv4Addr> = tunnel_networks(cx).into_iter().flat_map(|n| n.remotes.into_keys()).collect();
    remotes.sort();
    remotes.dedup();
    for remote_ip in remotes {
        ports.push(BridgePort {
            name: tunnel_port_name(remote_ip),
            kind: PortKind::Vxlan { local_ip, remote_ip, dst_port: VXLAN_UDP_PORT },
            tag: None,
            iface_id: None,
            mac: None,
            ofport: None,
        });
    }
    ports
}

/// A patch port.
pub fn patch(name: &str, peer: &str) -> BridgePort {
    BridgePort { name: name.into(), kind: PortKind::Patch { peer: peer.into() }, tag: None, iface_id: None, mac: None, ofport: None }
}

/// br-int flows for frames from br-tun (`_add_dvr_mac_for_tun_br`,
/// `_add_arp_dvr_mac_for_tun_br`): routed frames from a remote DVR MAC go
/// to DVR_TO_SRC_MAC, frames to this host's DVR MAC to ARP_DVR_MAC_TO_DST_MAC.
pub fn int_tun_flows(cx: &HostCtx) -> Vec<Arc<Flow>> {
    let p = cx.profile;
    let on = |m: Match| Match { in_port: Some(PATCH_TUN.into()), ..m };
    let mut v = cx.per_remote_mac(INT_LOCAL_SWITCHING.id.0, 2, PATCH_TUN, move |mac| {
        flow(
            INT_LOCAL_SWITCHING,
            2,
            Match { in_port: Some(PATCH_TUN.into()), dl_src: Some(mac), ..Default::default() },
            vec![p.next(INT_DVR_TO_SRC_MAC)],
            format!("routed frame from the host with DVR MAC {mac} through a tunnel: restore the gateway MAC in DVR_TO_SRC_MAC"),
        )
    });
    v.push(flow(
        INT_LOCAL_SWITCHING,
        5,
        on(Match { dl_dst: Some(cx.dvr_mac()), ..Default::default() }),
        vec![p.next(INT_ARP_DVR_MAC_TO_DST_MAC)],
        "frame from a tunnel addressed to this host's DVR MAC: hand it to the router port in ARP_DVR_MAC_TO_DST_MAC",
    ));
    v
}

/// All br-tun flows of the host.
pub fn tun_flows(cx: &HostCtx) -> Vec<Arc<Flow>> {
    let p = cx.profile;
    let from_int = Match { in_port: Some(PATCH_INT.into()), ..Default::default() };
    let multicast = MacAddr([1, 0, 0, 0, 0, 0]);
    let learn = vec![Action::Learn(Learn { table: TUN_UCAST_TO_TUN.id, priority: 1, hard_timeout: 300 }), Action::Output(PATCH_INT.into())];
    // setup_default_table (dvr_enabled, arp_responder_enabled) and the DVR defaults.
    let mut v = vec![
        flow(TUN_LOCAL_SWITCHING, 1, from_int, vec![p.next(TUN_DVR_PROCESS)], "from br-int: DVR processing first"),
        flow(TUN_LOCAL_SWITCHING, 0, Match::default(), vec![Action::Drop], "from an unknown port: drop"),
        flow(TUN_DVR_PROCESS, 0, Match::default(), vec![p.next(TUN_PATCH_LV_TO_TUN)], "not routed here: go on to the tunnels"),
        flow(
            TUN_PATCH_LV_TO_TUN,
            1,
            Match { proto: Some(Proto::Arp), dl_dst: Some(MacAddr::BROADCAST), ..Default::default() },
            vec![p.next(TUN_ARP_RESPONDER)],
            "ARP broadcast: let the ARP responder answer it locally",
        ),
        flow(
            TUN_PATCH_LV_TO_TUN,
            0,
            Match { dl_dst: Some(MacAddr::ZERO), dl_dst_mask: Some(multicast), ..Default::default() },
            vec![p.next(TUN_UCAST_TO_TUN)],
            "unicast: to the tunnel of the destination's host",
        ),
        flow(
            TUN_PATCH_LV_TO_TUN,
            0,
            Match { dl_dst: Some(multicast), dl_dst_mask: Some(multicast), ..Default::default() },
            vec![p.next(TUN_FLOOD_TO_TUN)],
            "broadcast and multicast: flood to the network's tunnels",
        ),
        flow(TUN_GRE_TUN_TO_LV, 0, Match::default(), vec![Action::Drop], "GRE: no network of this tunnel type"),
        flow(TUN_VXLAN_TUN_TO_LV, 0, Match::default(), vec![Action::Drop], "VXLAN: unknown VNI, drop"),
        flow(TUN_GENEVE_TUN_TO_LV, 0, Match::default(), vec![Action::Drop], "Geneve: no network of this tunnel type"),
        flow(TUN_DVR_NOT_LEARN, 0, Match::default(), vec![p.next(TUN_LEARN_FROM_TUN)], "not from a DVR MAC: learn the source"),
        flow(
            TUN_LEARN_FROM_TUN,
            2,
            Match { proto: Some(Proto::Arp), arp_tha: Some(MacAddr::BROADCAST), ..Default::default() },
            learn.clone(),
            "gratuitous ARP from a tunnel: learn its source, then to br-int",
        ),
        flow(
            TUN_LEARN_FROM_TUN,
            2,
            Match { proto: Some(Proto::Icmp6), icmp_type: Some(ICMPV6_ROUTER_ADVERT), ..Default::default() },
            learn.clone(),
            "IPv6 router advertisement from a tunnel: learn its source, then to br-int",
        ),
        flow(
            TUN_LEARN_FROM_TUN,
            2,
            Match { proto: Some(Proto::Icmp6), icmp_type: Some(ICMPV6_NEIGHBOR_ADVERT), ..Default::default() },
            learn.clone(),
            "IPv6 neighbour advertisement from a tunnel: learn its source, then to br-int",
        ),
        flow(TUN_LEARN_FROM_TUN, 1, Match::default(), learn, "frame from a tunnel: learn its source's tunnel, then to br-int"),
        flow(TUN_UCAST_TO_TUN, 0, Match::default(), vec![p.next(TUN_FLOOD_TO_TUN)], "unknown unicast: flood"),
        flow(TUN_ARP_RESPONDER, 0, Match::default(), vec![p.next(TUN_FLOOD_TO_TUN)], "no local answer: flood the ARP request"),
        flow(TUN_FLOOD_TO_TUN, 0, Match::default(), vec![Action::Drop], "a network without remote VTEPs floods nowhere"),
    ];
    // Remote DVR MACs (`add_dvr_mac_tun`): straight to br-int, never learned.
    v.extend(cx.per_remote_mac(TUN_DVR_NOT_LEARN.id.0, 1, PATCH_INT, move |mac| {
        flow(
            TUN_DVR_NOT_LEARN,
            1,
            Match { dl_src: Some(mac), ..Default::default() },
            vec![Action::Output(PATCH_INT.into())],
            format!("routed frame from DVR MAC {mac}: straight to br-int, never learned"),
        )
    }));
    let nets = tunnel_networks(cx);
    // One tunnel port per remote VTEP (`setup_tunnel_port`).
    let mut remotes: Vec<Ipv4Addr> = nets.iter().flat_map(|n| n.remotes.keys().copied()).collect();
    remotes.sort();
    remotes.dedup();
    for r in &remotes {
        let port = tunnel_port_name(*r);
        v.push(flow(
            TUN_LOCAL_SWITCHING,
            1,
            Match { in_port: Some(port.clone()), ..Default::default() },
            vec![p.next(TUN_VXLAN_TUN_TO_LV)],
            format!("from the VXLAN tunnel to {r}: find the network by VNI"),
        ));
    }
    let set_vni = |vni: Vni| Action::Load { dst: Subfield::whole(Field::TunId), value: vni.get().into() };
    for n in &nets {
        let (lvid, vni, name) = (n.lvid, n.vni, &n.net.name);
        let vl = Some(VlanMatch::Tagged(lvid.get()));
        // provision_local_vlan (distributed): VNI → local VLAN, then DVR_NOT_LEARN.
        v.push(flow(
            TUN_VXLAN_TUN_TO_LV,
            1,
            Match { tun_id: Some(vni.get().into()), ..Default::default() },
            vec![Action::PushVlan, Action::ModVlanVid(lvid.get()), p.next(TUN_DVR_NOT_LEARN)],
            format!("network {name}: VNI {vni} becomes local VLAN {lvid}"),
        ));
        if !n.remotes.is_empty() {
            let mut actions = vec![Action::StripVlan, set_vni(vni)];
            actions.extend(n.remotes.keys().map(|r| Action::Output(tunnel_port_name(*r))));
            let to: Vec<String> = n.remotes.keys().map(|r| r.to_string()).collect();
            v.push(flow(
                TUN_FLOOD_TO_TUN,
                1,
                Match { dl_vlan: vl, ..Default::default() },
                actions,
                format!("network {name}: flood with VNI {vni} to every host with ports on it ({})", to.join(", ")),
            ));
        }
        for (r, ports) in &n.remotes {
            let tun = tunnel_port_name(*r);
            for fp in ports {
                v.push(flow(
                    TUN_UCAST_TO_TUN,
                    2,
                    Match { dl_vlan: vl, dl_dst: Some(fp.mac), ..Default::default() },
                    vec![Action::StripVlan, set_vni(vni), Action::Output(tun.clone())],
                    format!("network {name}: {} ({}) is behind the tunnel to {r}", fp.mac, fp.ip),
                ));
                v.push(arp_responder(lvid, fp, name));
            }
        }
    }
    // DVR_PROCESS per router interface on a VXLAN network (install_dvr_process_ipv4, install_dvr_process).
    for qr in cx.dvr_interfaces() {
        if cx.topo.network(qr.subnet.network).segment.vni().is_none() {
            continue;
        }
        let vl = Some(VlanMatch::Tagged(qr.lvid.get()));
        let gw = qr.subnet.gateway;
        v.push(flow(
            p.tun_gateway_arp_drop_table(),
            3,
            Match { proto: Some(Proto::Arp), dl_vlan: vl, arp_tpa: Some(Ipv4Match::host(gw)), ..Default::default() },
            vec![Action::Drop],
            format!("ARP for gateway {gw} never enters a tunnel: the local router answers"),
        ));
        v.push(flow(
            TUN_DVR_PROCESS,
            2,
            Match { dl_vlan: vl, dl_dst: Some(qr.port.mac), ..Default::default() },
            vec![Action::Drop],
            format!("frames to gateway MAC {} never enter a tunnel", qr.port.mac),
        ));
        v.push(flow(
            TUN_DVR_PROCESS,
            1,
            Match { dl_vlan: vl, dl_src: Some(qr.port.mac), ..Default::default() },
            vec![Action::ModDlSrc(cx.dvr_mac()), p.next(TUN_PATCH_LV_TO_TUN)],
            format!("routed by the local router ({gw}): source becomes this host's DVR MAC"),
        ));
    }
    v
}

/// `install_arp_responder`: answer an ARP request for a remote port on this
/// host, turning the request into the reply in place and sending it back.
fn arp_responder(lvid: VlanId, fp: &FdbPort, network: &str) -> Arc<Flow> {
    let whole = Subfield::whole;
    let mac_value = fp.mac.0.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b));
    flow(
        TUN_ARP_RESPONDER,
        1,
        Match {
            proto: Some(Proto::Arp),
            dl_vlan: Some(VlanMatch::Tagged(lvid.get())),
            arp_tpa: Some(Ipv4Match::host(fp.ip)),
            ..Default::default()
        },
        vec![
            Action::Load { dst: whole(Field::ArpOp), value: 2 },
            Action::Move { src: whole(Field::ArpSha), dst: whole(Field::ArpTha) },
            Action::Move { src: whole(Field::ArpSpa), dst: whole(Field::ArpTpa) },
            Action::Load { dst: whole(Field::ArpSha), value: mac_value },
            Action::Load { dst: whole(Field::ArpSpa), value: u32::from(fp.ip).into() },
            Action::Move { src: whole(Field::EthSrc), dst: whole(Field::EthDst) },
            Action::ModDlSrc(fp.mac),
            Action::InPort,
        ],
        format!("network {network}: ARP responder answers {} is-at {} locally (l2population)", fp.ip, fp.mac),
    )
}
