//! Which security-group rule decided a packet: read from a trace's hops.
//!
//! Neutron's `openvswitch` firewall decides in its rules tables (72 egress,
//! 82 ingress) on the first packet of a connection (`ct_state=+new`), and lets
//! established connections and replies through on their conntrack state
//! alone. The plan attaches the rule a flow implements to the flow
//! ([`dvr_openflow::SgRuleRef`]); a drop is a flow without one (the table's
//! catch-all, or a resubmit to the drop table 93). This module turns the
//! hops into those decisions, so `dvr trace --explain` can say "allowed by
//! rule R of group G in table 82" or "dropped in table 82: no rule allows it".

use crate::step::{Hop, Step};
use crate::trace::Trace;
use dvr_openflow::{Action, SgRuleRef, ct_flags};
use serde::Serialize;
use std::fmt;
use std::sync::Arc;

/// Neutron's firewall tables (`neutron_lib.constants` of the OVS agent):
/// 71 BASE_EGRESS, 72 RULES_EGRESS, 73 ACCEPT_OR_INGRESS, 81 BASE_INGRESS,
/// 82 RULES_INGRESS, 91–94 accepted / dropped traffic.
pub const FIREWALL_TABLES: [u8; 9] = [71, 72, 73, 81, 82, 91, 92, 93, 94];

/// Neutron's DROPPED_TRAFFIC_TABLE.
pub const DROP_TABLE: u8 = 93;

/// How the firewall decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// A security-group rule allowed the packet (it opened the connection
    /// or continues it in the original direction).
    AllowedByRule {
        /// The rule.
        rule: Arc<SgRuleRef>,
    },
    /// Allowed without a rule: the reply or a later packet of a connection a
    /// rule allowed (`ct_state=+est`).
    Established,
    /// Dropped: no rule of the port's groups allows it (or anti-spoofing,
    /// or a revoked connection).
    Dropped {
        /// The `ct_state` the packet had, when it had been tracked.
        ct_state: Option<String>,
    },
}

/// One decision of the firewall on a packet's way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FirewallStep {
    /// `request` or `reply`.
    pub direction: &'static str,
    /// Host.
    pub host: String,
    /// Bridge.
    #[serde(rename = "where")]
    pub where_: String,
    /// The deciding table.
    pub table: u8,
    /// Its name, when known.
    pub table_name: Option<&'static str>,
    /// The decision.
    #[serde(flatten)]
    pub decision: Decision,
    /// The deciding flow, as `ovs-ofctl` prints it.
    pub flow: String,
}

impl fmt::Display for FirewallStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.table_name.map(|n| format!(" ({n})")).unwrap_or_default();
        write!(f, "{}: {} {} table {}{name}: ", self.direction, self.host, self.where_, self.table)?;
        match &self.decision {
            Decision::AllowedByRule { rule } => write!(f, "allowed by {rule}"),
            Decision::Established => write!(f, "allowed as part of an established connection (no rule needed)"),
            Decision::Dropped { ct_state } => {
                write!(f, "dropped: no rule of the port's security groups allows it")?;
                if let Some(s) = ct_state {
                    write!(f, " (ct_state={s})")?;
                }
                Ok(())
            }
        }
    }
}

fn is_fw(t: u8) -> bool {
    FIREWALL_TABLES.contains(&t)
}

/// The firewall decisions of a trace, request then reply, in hop order.
pub fn decisions(tr: &Trace) -> Vec<FirewallStep> {
    let mut out = direction(&tr.hops, "request");
    if let Some(r) = &tr.reply {
        out.extend(direction(&r.hops, "reply"));
    }
    out
}

fn direction(hops: &[Hop], dir: &'static str) -> Vec<FirewallStep> {
    let mut out = Vec::new();
    // Per copy, the last firewall table step and the last ct_state seen.
    let mut last_fw: Option<&Hop> = None;
    let mut ct_state: Option<String> = None;
    for h in hops {
        match &h.step {
            Step::OvsCt { state, .. } => ct_state = Some(state.clone()),
            Step::Table { table, table_name, flow } if is_fw(*table) => {
                let mk = |decision, table: u8, table_name, flow: &dvr_openflow::Flow| FirewallStep {
                    direction: dir,
                    host: h.host.to_string(),
                    where_: h.where_.to_string(),
                    table,
                    table_name,
                    decision,
                    flow: flow.to_string(),
                };
                if let Some(rule) = &flow.sg_rule {
                    out.push(mk(Decision::AllowedByRule { rule: rule.clone() }, *table, *table_name, flow));
                } else if flow.actions.iter().any(|a| matches!(a, Action::Ct(c) if !c.exec.is_empty())) {
                    // Neutron's revocation: an established packet no rule allows
                    // marks its connection (ct_mark=1) and goes nowhere.
                    out.push(mk(Decision::Dropped { ct_state: ct_state.clone() }, *table, *table_name, flow));
                } else if flow.actions == [Action::Drop] && !matches!(table, 91 | 92 | 94) {
                    // (91/92/94 drop the copy left after an accepted packet's
                    // output: not a decision.)
                    // A drop in table 93 was decided by the table that sent it there.
                    let (t, n, fl) = match (last_fw.map(|l| &l.step), *table == DROP_TABLE) {
                        (Some(Step::Table { table, table_name, flow }), true) => (*table, *table_name, flow.clone()),
                        _ => (*table, *table_name, flow.clone()),
                    };
                    out.push(mk(Decision::Dropped { ct_state: ct_state.clone() }, t, n, &fl));
                } else if matches!(table, 72 | 82)
                    && flow.matches.ct_state.is_some_and(|c| c.mask & c.flags & ct_flags::EST != 0)
                    && !flow.actions.iter().any(|a| matches!(a, Action::Resubmit(t) if t.0 == DROP_TABLE))
                    && flow.matches.conj_id.is_none()
                {
                    out.push(mk(Decision::Established, *table, *table_name, flow));
                }
                last_fw = Some(h);
            }
            _ => {}
        }
    }
    out
}
