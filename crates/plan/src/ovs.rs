//! Bridges and their ports (what `ovs-vsctl show` would list), with the
//! flows of each bridge from [`crate::flows`].

use crate::ctx::HostCtx;
use crate::flows::{self, sort_flows};
use crate::model::*;
use crate::tables::BridgeKind;
use dvr_model::*;

/// The namespace a service port's device lives in.
fn namespace_of(cx: &HostCtx, port: &Port) -> String {
    let t = cx.topo;
    match port.owner {
        PortOwner::RouterInterfaceDistributed { router } | PortOwner::RouterInterface { router } => names::qrouter_ns(&t.router(router).id),
        PortOwner::CentralizedSnat { router } => names::snat_ns(&t.router(router).id),
        PortOwner::RouterGateway { router } if t.router(router).distributed => names::snat_ns(&t.router(router).id),
        PortOwner::RouterGateway { router } => names::qrouter_ns(&t.router(router).id),
        PortOwner::FloatingIpAgentGateway => names::fip_ns(&t.network(port.network).id),
        PortOwner::Dhcp => names::qdhcp_ns(&t.network(port.network).id),
        PortOwner::Compute { .. } => String::new(),
    }
}

fn bridge_port(cx: &HostCtx, port: &Port) -> BridgePort {
    bridge_port_tagged(cx, port, cx.lvid(port.network))
}

/// A port's entry on br-int with local VLAN `tag` (that of its network,
/// given when the network has just left the host).
pub(crate) fn bridge_port_tagged(cx: &HostCtx, port: &Port, tag: VlanId) -> BridgePort {
    let kind = match port.owner {
        PortOwner::Compute { instance } => PortKind::Vif { instance: cx.topo.instance(instance).name.clone() },
        _ => PortKind::Service { namespace: namespace_of(cx, port) },
    };
    BridgePort {
        name: port.device_name(),
        kind,
        tag: Some(tag.get()),
        iface_id: Some(port.id.hyphenated()),
        mac: Some(port.mac),
        ofport: None,
    }
}

/// br-int with every port of the host, then one bridge per mapping, then
/// br-tun when the host has VXLAN networks.
pub fn bridges(cx: &HostCtx) -> Vec<Bridge> {
    let mut out = vec![int_bridge(cx)];
    out.extend(cx.host.bridge_mappings.iter().map(|m| phys_bridge(cx, m)));
    out.extend(tun_bridge(cx));
    out
}

/// br-tun, on a host with VXLAN networks only (Neutron creates it whenever
/// tunnelling is on; a host without tunnel networks has nothing to put there).
pub fn tun_bridge(cx: &HostCtx) -> Option<Bridge> {
    if !crate::tunnel::enabled(cx) {
        return None;
    }
    let mut f = crate::tunnel::tun_flows(cx);
    sort_flows(&mut f);
    Some(Bridge { name: "br-tun".into(), kind: BridgeKind::Tun, physnet: None, ports: crate::tunnel::tun_ports(cx), flows: f })
}

/// The physical bridge of one mapping: its patch and NIC ports and flows.
pub fn phys_bridge(cx: &HostCtx, m: &BridgeMapping) -> Bridge {
    let mut f = flows::phys_flows(cx, m);
    sort_flows(&mut f);
    Bridge {
        name: m.bridge.clone(),
        kind: BridgeKind::Phys,
        physnet: Some(m.physnet.clone()),
        ports: vec![
            BridgePort {
                name: cx.phy_patch(m),
                kind: PortKind::Patch { peer: cx.int_patch(m) },
                tag: None,
                iface_id: None,
                mac: None,
                ofport: None,
            },
            BridgePort { name: m.nic.clone(), kind: PortKind::Nic, tag: None, iface_id: None, mac: None, ofport: None },
        ],
        flows: f,
    }
}

/// `br-int` alone: its ports (patches, router interfaces, bound ports) and
/// flows. The incremental planner replans just this bridge on the host of a
/// booted or deleted instance.
pub fn int_bridge(cx: &HostCtx) -> Bridge {
    let mut ports: Vec<BridgePort> = cx
        .host
        .bridge_mappings
        .iter()
        .map(|m| BridgePort {
            name: cx.int_patch(m),
            kind: PortKind::Patch { peer: cx.phy_patch(m) },
            tag: None,
            iface_id: None,
            mac: None,
            ofport: None,
        })
        .collect();
    let tunnels = crate::tunnel::enabled(cx);
    if tunnels {
        ports.push(crate::tunnel::patch(crate::tunnel::PATCH_TUN, crate::tunnel::PATCH_INT));
    }
    // Distributed router interfaces are bound on every host carrying the router.
    for qr in cx.dvr_interfaces() {
        ports.push(bridge_port(cx, qr.port));
    }
    for p in cx.bound_ports() {
        ports.push(bridge_port(cx, p));
    }
    let ofports = crate::firewall::number_ports(cx, &mut ports);
    let mut int_flows = [
        flows::int_base_flows(cx),
        flows::int_phys_flows(cx),
        flows::anti_spoof_flows(cx),
        flows::int_dvr_flows(cx),
        crate::firewall::flows(cx, &ofports),
    ]
    .concat();
    if tunnels {
        int_flows.extend(crate::tunnel::int_tun_flows(cx));
    }
    sort_flows(&mut int_flows);
    Bridge { name: "br-int".into(), kind: BridgeKind::Int, physnet: None, ports, flows: int_flows }
}
