//! A router interface attached or detached, edited into the bridges of the
//! router's other copies flow by flow.
//!
//! On a host that keeps its copy of the router, keeps its bound ports and
//! keeps every local VLAN but that of the interface's network, what changes
//! on the bridges is the interface's own: its `qr-` port on br-int, its DVR
//! flows on br-int ([`flows::int_dvr_flows_of`]) and on the physical bridge
//! of its network ([`flows::phys_dvr_flows_of`]), and the VLAN translations
//! of its network when the network arrives on or leaves the host. Each of
//! those flows sits under a (table, priority) key only these builders use,
//! in a run ordered by interface (then network) order, so its place is
//! the number of flows the interfaces (networks) before it put under the same
//! key. Those are counted, not built: replanning the bridges instead costs
//! about a millisecond per host (every flow of the host rebuilt and
//! compared), ~70 ms for a router with copies on 65 hosts.
//!
//! On the SNAT host the interface's `sg-` port comes or goes too: its
//! br-int port and the two flows that serve it among the interface's.
//!
//! Anything else (the openvswitch firewall, whose port numbers shift; VXLAN,
//! where l2population replans hosts whole; a local VLAN that moved) is left to
//! [`crate::rebridge::replan_bridges`]. The result equals a full plan (the
//! incremental property tests); a removed flow that is not where the count
//! says also falls back.

use crate::ctx::{HostCtx, QrOnHost};
use crate::delta::{HostDelta, Item};
use crate::{Bridge, flows, tables};
use dvr_model::live::{InterfaceEvent, InterfacePorts};
use dvr_model::{NetworkIx, VlanId};
use dvr_openflow::Flow;
use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;

/// A flow's place in the planner's order: table, then priority high to low.
type Key = (u8, Reverse<u16>);

fn key(f: &Flow) -> Key {
    (f.table.0, Reverse(f.priority))
}

/// Flows to add to (or delete from) one bridge under one key, at a rank
/// within the key's run.
struct Edit {
    bridge: usize,
    rank: usize,
    flows: Vec<Arc<Flow>>,
}

/// How many flows each key gets from the interfaces in `qrs`, per the shape
/// of [`flows::int_dvr_flows_of`] (checked by the tests below).
fn int_dvr_counts(cx: &HostCtx, qrs: &[QrOnHost]) -> HashMap<Key, usize> {
    let mut n: HashMap<Key, usize> = HashMap::new();
    for q in qrs {
        let Some((src, dst)) = flows::dvr_tables(cx, q) else { continue };
        let served = flows::dvr_serviced(cx, q).count();
        *n.entry((dst.id.0, Reverse(5))).or_default() += 1;
        *n.entry((tables::INT_LOCAL_SWITCHING.id.0, Reverse(99))).or_default() += 1;
        *n.entry((src.id.0, Reverse(20))).or_default() += served;
        *n.entry((tables::INT_TRANSIENT.id.0, Reverse(20))).or_default() += served;
    }
    n
}

/// How many flows each key of the physical bridge of `m` gets from the
/// interfaces in `qrs`, per the shape of [`flows::phys_dvr_flows_of`].
fn phys_dvr_counts(cx: &HostCtx, m: &dvr_model::BridgeMapping, qrs: &[QrOnHost]) -> HashMap<Key, usize> {
    let here = qrs.iter().filter(|q| cx.mapping_of(q.subnet.network).is_some_and(|x| x.physnet == m.physnet)).count();
    let keys = [(cx.profile.gateway_arp_drop_table().id.0, 3), (tables::PHYS_DVR_PROCESS.id.0, 2), (tables::PHYS_DVR_PROCESS.id.0, 1)];
    let mut n: HashMap<Key, usize> = HashMap::new();
    for (t, p) in keys {
        *n.entry((t, Reverse(p))).or_default() += here;
    }
    n
}

/// Group `flows` (one builder's output, in emission order) by key into
/// edits of `bridge`, each ranked after what `before` counts for its key.
fn edits(bridge: usize, new: Vec<Arc<Flow>>, before: &HashMap<Key, usize>, out: &mut Vec<Edit>) {
    let mut by_key: Vec<(Key, Vec<Arc<Flow>>)> = Vec::new();
    for f in new {
        let k = key(&f);
        match by_key.iter_mut().find(|(x, _)| *x == k) {
            Some((_, v)) => v.push(f),
            None => by_key.push((k, vec![f])),
        }
    }
    for (k, flows) in by_key {
        out.push(Edit { bridge, rank: before.get(&k).copied().unwrap_or(0), flows });
    }
}

/// Whether two short lists hold the same flows, in any order.
fn same_set(a: &[Arc<Flow>], b: &[Arc<Flow>]) -> bool {
    let mut used = vec![false; a.len()];
    a.len() == b.len()
        && b.iter().all(|f| match (0..a.len()).find(|&i| !used[i] && a[i] == *f) {
            Some(i) => {
                used[i] = true;
                true
            }
            None => false,
        })
}

/// Edit the interface of `ev` (its `ports`) into or out of `bridges`, the bridges of the host of
/// `cx` (the topology after the change), where the interface's network had
/// local VLAN `vlans.0` before and has `vlans.1` after. Adds the change to
/// `d` and returns `true`; returns `false`, with `bridges` untouched, when
/// the change is not one this module edits (see the module doc).
pub fn patch_bridges(
    cx: &HostCtx,
    ev: InterfaceEvent,
    ports: &InterfacePorts,
    vlans: (Option<VlanId>, Option<VlanId>),
    bridges: &mut [Bridge],
    d: &mut HostDelta,
) -> bool {
    let t = cx.topo;
    let router = t.router(ev.router);
    let n = t.subnet(ev.subnet).network;
    if !router.distributed || crate::firewall::enabled(t) || t.network(n).segment.vni().is_some() {
        return false;
    }
    let (port, at) = (&ports.qr, ports.at);
    // The sg- port, when it is (or was) bound here.
    let sg = ports.snat.as_ref().filter(|p| p.host == Some(cx.ix));
    let Some(lvid) = (if ev.added { vlans.1 } else { vlans.0 }) else { return false };
    if vlans.0.is_some() && vlans.1.is_some() && vlans.0 != vlans.1 {
        return false;
    }
    let Some(int) = bridges.iter().position(|b| b.name == "br-int") else { return false };
    let qr = QrOnHost { router: ev.router, port, subnet: t.subnet(ev.subnet), subnet_ix: ev.subnet, lvid };
    // The interfaces before this one, in the planner's order.
    let all = cx.dvr_interfaces();
    let first = all.iter().position(|q| q.router >= ev.router).unwrap_or(all.len());
    let Some(earlier) = all.get(..first + at) else { return false };
    if ev.added && all.get(first + at).is_none_or(|q| (q.router, q.subnet_ix) != (ev.router, ev.subnet)) {
        return false;
    }
    let mut todo = Vec::new();
    let mut own = flows::int_dvr_flows_of(cx, &qr);
    if let (Some(sg), false) = (sg, ev.added) {
        // Its flows were among the interface's (checked as a set below).
        own.extend(flows::int_dvr_flows_for(cx, &qr, std::iter::once(sg)).into_iter().skip(2));
    }
    edits(int, own, &int_dvr_counts(cx, earlier), &mut todo);
    // The VLAN translations of a network arriving or leaving, per mapping.
    let moved = vlans.0.is_none() != vlans.1.is_none();
    let on = |m: &dvr_model::BridgeMapping, x: NetworkIx| x != n && t.network(x).segment.physnet() == Some(m.physnet.as_str());
    let mut int_rank = 0;
    for m in &cx.host.bridge_mappings {
        let below = cx.host.local_vlans.iter().filter(|(x, _)| on(m, *x) && *x < n).count();
        if moved && let Some(f) = flows::int_translation(cx, m, n, lvid) {
            todo.push(Edit { bridge: int, rank: int_rank + below, flows: vec![f] });
        }
        int_rank += cx.host.local_vlans.iter().filter(|(x, _)| on(m, *x)).count();
        if t.network(n).segment.physnet() != Some(m.physnet.as_str()) {
            continue;
        }
        let Some(b) = bridges.iter().position(|b| b.name == m.bridge) else { return false };
        if moved && let Some(f) = flows::phys_translation(cx, m, n, lvid) {
            todo.push(Edit { bridge: b, rank: below, flows: vec![f] });
        }
        edits(b, flows::phys_dvr_flows_of(cx, m, &qr), &phys_dvr_counts(cx, m, earlier), &mut todo);
    }
    // The qr- port: after the patch ports, at the interface's place.
    let at_port = cx.host.bridge_mappings.len() + usize::from(crate::tunnel::enabled(cx)) + earlier.len();
    let entry = crate::ovs::bridge_port_tagged(cx, port, lvid);
    // Check everything before changing anything; each edit's place, once.
    let mut places = Vec::with_capacity(todo.len());
    for e in &todo {
        let flows = &bridges[e.bridge].flows;
        let k = key(&e.flows[0]);
        let lo = flows.partition_point(|f| key(f) < k);
        places.push((e.bridge, lo + e.rank));
        // Within the run: what precedes the place is under the same key
        // (every flow from `lo` on has a key ≥ k); the flows to delete are
        // there (equal flows have the same key).
        let fits = if ev.added {
            e.rank == 0 || flows.get(lo + e.rank - 1).is_some_and(|f| key(f) == k)
        } else {
            flows.get(lo + e.rank..lo + e.rank + e.flows.len()).is_some_and(|held| same_set(held, &e.flows))
        };
        if !fits {
            return false;
        }
    }
    let list = &mut bridges[int].ports;
    // The sg- port among the bound ones (after the patches and qr- ports), in port order.
    let sg_entry = sg.map(|p| crate::ovs::bridge_port_tagged(cx, p, lvid));
    if ev.added {
        let sg_at = sg.map(|p| at_port - earlier.len() + all.len() + cx.bound_ports().position(|x| x.id == p.id).unwrap_or(usize::MAX / 2));
        if at_port > list.len() || sg_at.is_some_and(|i| i > list.len() + 1) {
            return false;
        }
        list.insert(at_port, entry.clone());
        d.add.push(Item::BridgePort { bridge: "br-int".into(), port: entry });
        if let (Some(i), Some(e)) = (sg_at, sg_entry) {
            list.insert(i, e.clone());
            d.add.push(Item::BridgePort { bridge: "br-int".into(), port: e });
        }
    } else {
        let sg_at = sg_entry.as_ref().map(|e| list.iter().position(|x| x == e));
        if list.get(at_port) != Some(&entry) || sg_at.is_some_and(|i| i.is_none_or(|i| i <= at_port)) {
            return false;
        }
        if let Some(Some(i)) = sg_at {
            let held = list.remove(i);
            d.delete.push(Item::BridgePort { bridge: "br-int".into(), port: held });
        }
        let held = list.remove(at_port);
        d.delete.push(Item::BridgePort { bridge: "br-int".into(), port: held });
    }
    // Runs of different keys do not overlap: from the last place to the
    // first, an edit moves no place still to come. Keys absent from a
    // bridge (a router's first interface) share one place: the higher key
    // goes in first, so the lower ones land before it.
    let mut order: Vec<usize> = (0..todo.len()).collect();
    order.sort_by_key(|&i| Reverse((places[i], key(&todo[i].flows[0]))));
    let mut todo: Vec<Option<Edit>> = todo.into_iter().map(Some).collect();
    for i in order {
        let e = todo[i].take().expect("each edit once");
        let b = &mut bridges[e.bridge];
        let at = places[i].1;
        let name = &b.name;
        if ev.added {
            d.add.extend(e.flows.iter().map(|f| Item::Flow { bridge: name.clone(), flow: f.clone() }));
            b.flows.splice(at..at, e.flows);
        } else {
            let held: Vec<Arc<Flow>> = b.flows.drain(at..at + e.flows.len()).collect();
            d.delete.extend(held.into_iter().map(|f| Item::Flow { bridge: b.name.clone(), flow: f }));
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::FlowCache;
    use crate::{Profile, flows};

    fn counted(new: Vec<Arc<Flow>>) -> HashMap<Key, usize> {
        let mut n: HashMap<Key, usize> = HashMap::new();
        for f in new {
            *n.entry(key(&f)).or_default() += 1;
        }
        n
    }

    /// The counts the places are computed from match what the builders
    /// emit, per interface, on every host of the seed lab and a generated
    /// deployment, in both profiles (keys without flows count zero).
    #[test]
    fn counts_match_the_builders() {
        let generated = dvr_model::build::build("gen", &dvr_model::r#gen::generate(&dvr_model::r#gen::GenParams::scale(10).with_seed(7)))
            .expect("builds");
        let mut seen = 0;
        for t in [dvr_model::seed(), generated] {
            for profile in [Profile::Walkthrough, Profile::Current] {
                let cache = FlowCache::default();
                for (h, host) in t.hosts_ix().filter(|(_, x)| x.has_dataplane()) {
                    let cx = HostCtx::new(&t, h, profile, &cache);
                    for qr in cx.dvr_interfaces() {
                        let q = std::slice::from_ref(&qr);
                        let mut want = int_dvr_counts(&cx, q);
                        want.retain(|_, n| *n > 0);
                        assert_eq!(counted(flows::int_dvr_flows_of(&cx, &qr)), want, "{} br-int", host.name);
                        for m in &host.bridge_mappings {
                            let mut want = phys_dvr_counts(&cx, m, q);
                            want.retain(|_, n| *n > 0);
                            assert_eq!(counted(flows::phys_dvr_flows_of(&cx, m, &qr)), want, "{} {}", host.name, m.bridge);
                        }
                        seen += 1;
                    }
                }
            }
        }
        assert!(seen > 20, "interfaces checked: {seen}");
    }
}
