//! Packets aimed at the firewall (Neutron's `openvswitch` driver) of a
//! br-int, and the per-bridge tally of what conntrack saw.
//!
//! Why a generator of its own: the generic draws (random fields, or a flow's
//! match imposed back to table 0) rarely satisfy the firewall's entry
//! conditions all at once. Egress needs the VM's port, its MAC *and* its IP
//! (table 71's anti-spoofing); ingress needs the VM's MAC as destination with
//! the VLAN of its network, entering where table 60 hands it to table 81 or
//! table 73 (not on the VM's own port). Imposing one flow's match then the
//! matches of the flows before it loses those conjunctions (actions such as
//! `mod_vlan_vid` or `mod_dl_dst` in between are not undone), so only ~7% of
//! the packets reached a `ct()`. Here the packet is built from the VM itself.

use super::{CT_STATES, Pools, Rng, ct_next};
use dvr_model::MacAddr;
use dvr_plan::{Bridge, PortKind};
use dvr_sim::ofp::{OfResult, OfStep};
use dvr_sim::packet::{Frame, L4, Payload};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// Share of a firewalled bridge's packets built by [`at_firewall`], in
/// percent (the rest are the generic random and aimed draws).
pub const FIREWALL_SHARE: u64 = 65;

/// An instance port of the bridge: where it is, its MAC, its IP, its VLAN.
#[derive(Clone, Copy)]
struct Vm {
    port: usize,
    mac: MacAddr,
    ip: Option<Ipv4Addr>,
    tag: Option<u16>,
}

fn vms(pools: &Pools, bridge: &Bridge) -> Vec<Vm> {
    bridge
        .ports
        .iter()
        .enumerate()
        .filter(|(_, p)| matches!(p.kind, PortKind::Vif { .. }))
        .filter_map(|(i, p)| p.mac.map(|mac| Vm { port: i, mac, ip: pools.port_ip.get(&mac).copied(), tag: p.tag }))
        .collect()
}

/// An IP packet with a transport mostly allowed by the seed-secure groups
/// (ICMP, TCP 22) and otherwise anything.
fn ip_to(pools: &Pools, rng: &mut Rng, src: Ipv4Addr, dst: Ipv4Addr) -> Payload {
    let l4 = match rng.below(4) {
        0 => L4::Icmp { reply: rng.chance(50), id: rng.u16() },
        1 => L4::Tcp { sport: rng.u16() | 1024, dport: 22 },
        _ => {
            let proto = rng.pick(&[1, 6, 17]);
            pools.l4(rng, proto)
        }
    };
    Payload::Ip { src, dst, l4 }
}

/// A packet for the firewall of one of the bridge's VMs, or `None` when the
/// bridge has no instance port. Half egress (from the VM's port, its own
/// MAC, mostly its own IP: 8% spoofed), half ingress (to its MAC, mostly its
/// IP), entering from another VM of its network, its router's `qr-` port
/// (routed), or a patch port with one of the lab's VLANs.
pub fn at_firewall(pools: &Pools, rng: &mut Rng, bridge: &Bridge) -> Option<(usize, Frame)> {
    let vms = vms(pools, bridge);
    if vms.is_empty() {
        return None;
    }
    let vm = vms[rng.below(vms.len())];
    let own_ip = |rng: &mut Rng, pools: &Pools| match vm.ip {
        Some(ip) if rng.chance(92) => ip,
        _ => pools.ip(rng),
    };
    if rng.chance(50) {
        let src = own_ip(rng, pools);
        let dst_ip = pools.ip(rng);
        let payload = ip_to(pools, rng, src, dst_ip);
        return Some((vm.port, Frame { src: vm.mac, dst: pools.mac(rng), vlan: None, payload }));
    }
    let dst_ip = own_ip(rng, pools);
    let neighbours: Vec<Vm> = vms.iter().copied().filter(|o| o.port != vm.port && o.tag == vm.tag).collect();
    let routers: Vec<(usize, MacAddr)> = bridge
        .ports
        .iter()
        .enumerate()
        .filter(|(_, p)| matches!(p.kind, PortKind::Service { .. }) && p.tag == vm.tag && p.name.starts_with("qr-"))
        .filter_map(|(i, p)| p.mac.map(|m| (i, m)))
        .collect();
    let patches: Vec<usize> =
        bridge.ports.iter().enumerate().filter(|(_, p)| matches!(p.kind, PortKind::Patch { .. })).map(|(i, _)| i).collect();
    let (in_port, src, src_ip, vlan) = match rng.below(100) {
        0..40 if !neighbours.is_empty() => {
            let n = neighbours[rng.below(neighbours.len())];
            (n.port, n.mac, n.ip.unwrap_or_else(|| pools.ip(rng)), None)
        }
        0..80 if !routers.is_empty() => {
            let (p, mac) = routers[rng.below(routers.len())];
            (p, mac, pools.ip(rng), None)
        }
        _ if !patches.is_empty() => {
            let vlan = if rng.chance(50) { vm.tag } else { Some(rng.pick(&pools.vlans)) };
            (patches[rng.below(patches.len())], pools.mac(rng), pools.ip(rng), vlan)
        }
        _ => return None,
    };
    let payload = ip_to(pools, rng, src_ip, dst_ip);
    Some((in_port, Frame { src, dst: vm.mac, vlan, payload }))
}

/// Conntrack states for a firewall packet: each recirculation draws any of
/// [`CT_STATES`] evenly, so new, established, related, reply and invalid
/// all reach the `ct_state` flows of tables 72 and 82.
pub fn mixed_states(rng: &mut Rng) -> Vec<u8> {
    (0..2).map(|_| rng.pick(&CT_STATES)).collect()
}

/// What one bridge's packets did, for the per-bridge table.
#[derive(Default, Clone)]
pub struct BridgeTally {
    /// `profile host bridge`.
    pub name: String,
    pub packets: usize,
    pub agree: usize,
    /// Packets that went through a `ct()` action in the twin.
    pub tracked: usize,
    /// Tracked packets by the state of their first conntrack lookup
    /// (`--ct-next` names, e.g. `trk,new`).
    pub by_state: BTreeMap<String, usize>,
}

impl BridgeTally {
    /// Count a packet's twin run.
    pub fn count(&mut self, r: &OfResult, agreed: bool) {
        self.packets += 1;
        self.agree += usize::from(agreed);
        let first = r.steps.iter().find_map(|s| match s {
            OfStep::Conntrack { state, .. } => Some(*state),
            _ => None,
        });
        if let Some(state) = first {
            self.tracked += 1;
            *self.by_state.entry(ct_next(state)).or_default() += 1;
        }
    }

    /// Tracked packets whose first state has all of `flags` (e.g. `new`).
    pub fn with(&self, flag: &str) -> usize {
        self.by_state.iter().filter(|(s, _)| s.split(',').any(|f| f == flag)).map(|(_, n)| n).sum()
    }

    /// One line of the per-bridge table.
    pub fn line(&self) -> String {
        let states: Vec<String> = self.by_state.iter().map(|(s, n)| format!("{s}={n}")).collect();
        format!(
            "{:<30} {:>5} total {:>5} through ct {:>5} agree | new {} est {} rel {} rpl {} inv {} | {}",
            self.name,
            self.packets,
            self.tracked,
            self.agree,
            self.with("new"),
            self.with("est"),
            self.with("rel"),
            self.with("rpl"),
            self.with("inv"),
            states.join(" ")
        )
    }
}
