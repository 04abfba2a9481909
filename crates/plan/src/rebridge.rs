//! Replanning a host's bridges after a change of its ports, routers or local
//! VLANs, without rebuilding the flows per other host's DVR MAC.
//!
//! Those flows (one per other host and physical bridge: the hosts² part of a
//! plan, thousands per host at 1,000 hosts) depend only on the list of hosts,
//! their DVR MACs and the host's bridge mappings, which such a change leaves
//! as they were. So the bridges are planned without them
//! ([`HostCtx::without_remote_macs`]), the old plan's runs of those flows are
//! moved into the result where the planner's sort puts them, and only the
//! rest is compared with the old bridges for the delta. The result is the
//! bridges a full replan gives (checked by the incremental property tests).

use crate::ctx::{FlowCache, HostCtx};
use crate::delta::{HostDelta, diff_bridge, diff_flow_lists, diff_port_lists};
use crate::{Bridge, Profile, ovs};
use dvr_model::{HostIx, Topology};
use dvr_openflow::Flow;
use std::cmp::Reverse;
use std::sync::Arc;

/// The planner's flow order: table, then priority from high to low.
fn key(f: &Arc<Flow>) -> (u8, Reverse<u16>) {
    (f.table.0, Reverse(f.priority))
}

/// Replan every bridge of host `h`, whose bridges were `old`, and add the
/// difference to `d`. Returns the new bridges.
pub fn replan_bridges(t: &Topology, h: HostIx, profile: Profile, cache: &FlowCache, old: Vec<Bridge>, d: &mut HostDelta) -> Vec<Bridge> {
    let cx = HostCtx::without_remote_macs(t, h, profile, cache);
    let mut fresh = vec![(ovs::int_bridge(&cx), cx.take_skipped())];
    for m in &cx.host.bridge_mappings {
        fresh.push((ovs::phys_bridge(&cx, m), cx.take_skipped()));
    }
    if let Some(b) = ovs::tun_bridge(&cx) {
        fresh.push((b, cx.take_skipped()));
    }
    let full = |i: usize| {
        let cx = HostCtx::new(t, h, profile, cache);
        let n = cx.host.bridge_mappings.len();
        match i {
            0 => ovs::int_bridge(&cx),
            i if i <= n => ovs::phys_bridge(&cx, &cx.host.bridge_mappings[i - 1]),
            _ => ovs::tun_bridge(&cx).expect("br-tun was planned without the remote MACs, so it is planned with them"),
        }
    };
    if !fresh.iter().map(|(b, _)| &b.name).eq(old.iter().map(|b| &b.name)) {
        let new: Vec<Bridge> = (0..fresh.len()).map(full).collect();
        for b in &old {
            diff_bridge(Some(b), new.iter().find(|n| n.name == b.name), &mut d.add, &mut d.delete);
        }
        for b in new.iter().filter(|n| !old.iter().any(|o| o.name == n.name)) {
            diff_bridge(None, Some(b), &mut d.add, &mut d.delete);
        }
        return new;
    }
    let mut out = Vec::with_capacity(fresh.len());
    for (i, ((b, skipped), o)) in fresh.into_iter().zip(old).enumerate() {
        match splice(b, o, &skipped, d) {
            Ok(b) => out.push(b),
            Err(o) => {
                let n = full(i);
                diff_bridge(Some(&o), Some(&n), &mut d.add, &mut d.delete);
                out.push(n);
            }
        }
    }
    out
}

/// Move the runs of flows with the `skipped` (table, priority) keys from
/// `old` into `fresh`, after adding the difference of everything else to
/// `d`. `Err(old)` when `fresh` has a flow of its own under such a key (then
/// the runs are not the remote-MAC flows alone) or the bridge changed kind.
fn splice(mut fresh: Bridge, old: Bridge, skipped: &[(u8, u16)], d: &mut HostDelta) -> Result<Bridge, Bridge> {
    let keys: Vec<(u8, Reverse<u16>)> = {
        let mut k: Vec<_> = skipped.iter().map(|&(t, p)| (t, Reverse(p))).collect();
        k.sort();
        k
    };
    if (fresh.kind, &fresh.physnet) != (old.kind, &old.physnet) {
        return Err(old);
    }
    // (old run start, old run end, fresh insertion point) per key.
    let mut cuts = Vec::with_capacity(keys.len());
    for k in &keys {
        let p = fresh.flows.partition_point(|f| key(f) < *k);
        if fresh.flows.get(p).is_some_and(|f| key(f) == *k) {
            return Err(old);
        }
        let lo = old.flows.partition_point(|f| key(f) < *k);
        let hi = lo + old.flows[lo..].partition_point(|f| key(f) <= *k);
        cuts.push((lo, hi, p));
    }
    diff_port_lists(&fresh.name, &old.ports, &fresh.ports, &mut d.add, &mut d.delete);
    let (mut oi, mut ni) = (0, 0);
    for &(lo, hi, p) in &cuts {
        diff_flow_lists(&fresh.name, &old.flows[oi..lo], &fresh.flows[ni..p], &mut d.add, &mut d.delete);
        (oi, ni) = (hi, p);
    }
    diff_flow_lists(&fresh.name, &old.flows[oi..], &fresh.flows[ni..], &mut d.add, &mut d.delete);
    // Move, not clone: thousands of shared flows per bridge.
    let run_len: usize = cuts.iter().map(|(lo, hi, _)| hi - lo).sum();
    let mut flows = Vec::with_capacity(fresh.flows.len() + run_len);
    let (mut olds, mut news) = (old.flows.into_iter(), std::mem::take(&mut fresh.flows).into_iter());
    let (mut oi, mut ni) = (0, 0);
    for (lo, hi, p) in cuts {
        flows.extend(news.by_ref().take(p - ni));
        olds.by_ref().take(lo - oi).for_each(drop);
        flows.extend(olds.by_ref().take(hi - lo));
        (oi, ni) = (hi, p);
    }
    flows.extend(news);
    fresh.flows = flows;
    Ok(fresh)
}
