//! A host joining or leaving, flow by flow.
//!
//! An empty compute node changes every other host by its DVR MAC alone: each
//! family of flows made once per other host's DVR MAC ([`HostCtx::per_remote_mac`],
//! e.g. "routed frame from DVR MAC m: straight to br-int") gains or loses
//! one member on every bridge that carries the family. Replanning those
//! bridges instead would cost the whole cloud (thousands of hosts with
//! thousands of such flows each), for one flow per family per host.
//!
//! The planner lists a family's flows in host order inside the run of their
//! (table, priority), so a host joining at the end of the list has its flow
//! right after that of the last other host with a DVR MAC; a host leaving
//! has its flow, shared by every host, removed by identity. The property
//! tests of crates/plan/tests/incremental.rs check the result against a
//! full plan after every change.
//!
//! [`HostCtx::per_remote_mac`]: crate::ctx::HostCtx::per_remote_mac

use crate::HostPlan;
use crate::ctx::FamilyChange;
use crate::delta::{HostDelta, Item};
use std::cmp::Reverse;
use std::ops::Range;
use std::sync::Arc;

/// Where the planner's sort (table, then priority from high to low) puts
/// the flows of (table, priority) in a bridge's list.
fn run(flows: &[Arc<dvr_openflow::Flow>], table: u8, priority: u16) -> Range<usize> {
    let key = |f: &Arc<dvr_openflow::Flow>| (f.table.0, Reverse(f.priority));
    let k = (table, Reverse(priority));
    let lo = flows.partition_point(|f| key(f) < k);
    lo..lo + flows[lo..].partition_point(|f| key(f) <= k)
}

/// Give host `h` (plan `plan`) the joining host's flow of every family it
/// carries, and add them to `d`. `has_mac[j]`: whether the host at position
/// `j` before the join has a DVR MAC. `false` when no other host has one:
/// then `h`'s runs were empty, nothing marks where they go, and the caller
/// replans the host.
pub fn join(plan: &mut HostPlan, h: usize, has_mac: &[bool], families: &[FamilyChange], d: &mut HostDelta) -> bool {
    let Some(prev) = (0..has_mac.len()).rev().find(|&j| j != h && has_mac[j]) else {
        return false;
    };
    for fam in families {
        // The family's flow of `prev` was made when any host carrying the
        // family was planned; a family without one is not on this host.
        let (Some(Some(anchor)), Some(new)) = (fam.before.get(prev), &fam.flow) else { continue };
        for b in &mut plan.bridges {
            let r = run(&b.flows, fam.key.0, fam.key.1);
            if let Some(at) = b.flows[r.clone()].iter().rposition(|f| Arc::ptr_eq(f, anchor)) {
                b.flows.insert(r.start + at + 1, new.clone());
                d.add.push(Item::Flow { bridge: b.name.clone(), flow: new.clone() });
            }
        }
    }
    true
}

/// Take the leaving host's flow of every family out of `plan`'s bridges,
/// and add them to `d`.
pub fn leave(plan: &mut HostPlan, families: &[FamilyChange], d: &mut HostDelta) {
    for fam in families {
        let Some(gone) = &fam.flow else { continue };
        for b in &mut plan.bridges {
            let r = run(&b.flows, fam.key.0, fam.key.1);
            if let Some(at) = b.flows[r.clone()].iter().position(|f| Arc::ptr_eq(f, gone)) {
                let f = b.flows.remove(r.start + at);
                d.delete.push(Item::Flow { bridge: b.name.clone(), flow: f });
            }
        }
    }
}
