//! The VXLAN underlay of the lab: the network between the hosts' tunnel
//! endpoints (Neutron's `local_ip`).
//!
//! On a real host the operator puts `local_ip` on a NIC; the agent only
//! creates br-tun's `vxlan-…` ports. With the userspace datapath the tunnel
//! packets are built by ovs-vswitchd itself, which must find a route to the
//! remote endpoint in its own table (`ovs-appctl ovs/route/show`) whose
//! output device is an OVS bridge, and the local endpoint as a *local* route
//! (`tunnel routing failed` otherwise). What works (docs/lab.md):
//!
//! - a netdev bridge `br-underlay` in the host's namespace, fail mode
//!   standalone (NORMAL), with the host's underlay NIC (`underlay0`, a veth
//!   to the `sw-underlay` Linux bridge in the fabric namespace) as a port;
//! - the `tunnel_ip/prefix` address on br-underlay's own (tap) device, so
//!   the kernel has `local TUNNEL_IP` and `UNDERLAY dev br-underlay`, which
//!   ovs-vswitchd learns over netlink (it runs without
//!   `--disable-system-route`); `ovs/route/add` alone is not enough, it
//!   cannot add the local route that `options:local_ip` needs;
//! - ovs-vswitchd resolves the remote endpoints' MACs itself (ARP on
//!   br-underlay, `ovs-appctl tnl/neigh/show`).
//!
//! This is host infrastructure, not part of the agent's plan: the lab's
//! converge leaves `br-underlay` alone ([`BRIDGE`]).

use crate::cmd::CmdError;
use crate::ip;
use crate::ovs::OvsInstance;
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// The netdev bridge holding a host's tunnel endpoint address.
pub const BRIDGE: &str = "br-underlay";
/// The host's underlay NIC (a veth to the fabric).
pub const NIC: &str = "underlay0";
/// The Linux bridge of the underlay network in the fabric namespace.
pub const SWITCH: &str = "sw-underlay";
/// MTU of the underlay links: room for VXLAN's 50 bytes around a full
/// 1500-byte inner frame, as an operator configures the underlay.
pub const MTU: &str = "1600";

/// The fabric port of host number `hi`'s underlay NIC.
pub fn fabric_port(hi: usize) -> String {
    format!("h{hi}-ul")
}

/// Make sure the underlay switch exists in `fabric`.
pub fn ensure_switch(fabric: &str) -> Result<(), CmdError> {
    if !ip::link_names(fabric)?.iter().any(|l| l == SWITCH) {
        ip::ip_ns(fabric, &["link", "add", SWITCH, "type", "bridge", "stp_state", "0", "forward_delay", "0"])?;
        ip::ip_ns(fabric, &["link", "set", SWITCH, "up"])?;
    }
    Ok(())
}

/// Make sure host `hi` (namespace `hns`, OVS `ovs`) has its underlay NIC on
/// the switch, `br-underlay` with the NIC, and `tunnel_ip` on br-underlay.
/// Idempotent; after an ovs-vswitchd restart (the tap is recreated without
/// its address) it puts the address back.
pub fn ensure_host(fabric: &str, hns: &str, hi: usize, ovs: &OvsInstance, tunnel_ip: Ipv4Addr, net: Ipv4Net) -> Result<(), CmdError> {
    let port = fabric_port(hi);
    let fresh_nic = !ip::link_names(hns)?.iter().any(|l| l == NIC);
    if fresh_nic {
        ip::ip(&["link", "add", NIC, "netns", hns, "mtu", MTU, "type", "veth", "peer", "name", &port, "netns", fabric, "mtu", MTU])?;
        ip::tx_off(hns, NIC)?;
        ip::tx_off(fabric, &port)?;
        ip::ip_ns(fabric, &["link", "set", &port, "master", SWITCH, "up"])?;
        ip::ip_ns(hns, &["link", "set", NIC, "up"])?;
    }
    ovs.vsctl(&[
        "--may-exist",
        "add-br",
        BRIDGE,
        "--",
        "set",
        "bridge",
        BRIDGE,
        "datapath_type=netdev",
        "fail_mode=standalone",
        "other_config:disable-in-band=true",
    ])?;
    // OVS keeps a stale socket on a port whose veth was recreated: re-add it
    // in a separate transaction (ovs-lab-notes.md, pitfall 5).
    if fresh_nic {
        ovs.vsctl(&["--if-exists", "del-port", BRIDGE, NIC])?;
    }
    ovs.vsctl(&["--may-exist", "add-port", BRIDGE, NIC])?;
    let err = ovs.vsctl(&["get", "interface", NIC, "error"])?;
    if !matches!(err.trim(), "" | "[]") {
        return Err(CmdError::Failed { cmd: format!("add-port {BRIDGE} {NIC}"), status: "interface error".into(), stderr: err });
    }
    let addr = format!("{tunnel_ip}/{}", net.prefix_len());
    let links = crate::netlink::links(hns)?;
    if !links.get(BRIDGE).is_some_and(|l| l.addrs.contains(&addr)) {
        ip::ip_ns(hns, &["addr", "replace", &addr, "dev", BRIDGE])?;
    }
    ip::ip_ns(hns, &["link", "set", BRIDGE, "mtu", MTU, "up"])
}

/// What is missing from host `hns`'s underlay, in words (empty when it is
/// whole): the NIC, `br-underlay`, the NIC as its port, the tunnel address.
/// `dvr lab status` reports each; `lab up` ([`ensure_host`]) puts it back.
/// Without them ovs-vswitchd cannot route a single tunnel packet, and the
/// plan's br-tun looks perfect while every cross-host VXLAN frame is lost.
pub fn check_host(hns: &str, ovs: &OvsInstance, tunnel_ip: Ipv4Addr, net: Ipv4Net) -> Result<Vec<String>, CmdError> {
    let mut out = Vec::new();
    if !ip::link_names(hns)?.iter().any(|l| l == NIC) {
        out.push(format!("{NIC} (the underlay NIC) is missing"));
    }
    if !ovs.vsctl(&["list-br"])?.lines().any(|b| b.trim() == BRIDGE) {
        out.push(format!("{BRIDGE} is missing: no tunnel can be routed"));
        return Ok(out);
    }
    if !ovs.vsctl(&["list-ports", BRIDGE])?.lines().any(|p| p.trim() == NIC) {
        out.push(format!("{NIC} is not a port of {BRIDGE}"));
    }
    let addr = format!("{tunnel_ip}/{}", net.prefix_len());
    if !crate::netlink::links(hns)?.get(BRIDGE).is_some_and(|l| l.addrs.contains(&addr)) {
        out.push(format!("{BRIDGE} lacks the tunnel endpoint address {addr}"));
    }
    Ok(out)
}
