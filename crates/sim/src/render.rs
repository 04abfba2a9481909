//! Three renderers over one [`Trace`] value: text that reads like an
//! explanation, `minimal` (only rewrites, deliveries and drops, like
//! `ovn-trace --minimal`, stable enough for golden tests) and JSON (the
//! trace contract of `spec/topology.md`).

use crate::trace::{Hop, HopKind, Trace};
use std::fmt::Write;

fn hop_line(h: &Hop) -> String {
    let place = match h.kind {
        HopKind::Wire => format!("wire {}", h.where_),
        _ => format!("{} {}", h.host, h.where_),
    };
    let mut s = format!("[{}] {place}: {}", h.copy, h.detail);
    if let Some(r) = &h.rewrite
        && h.kind != HopKind::Wire
    {
        let _ = write!(s, "   ⇒ {r}");
    }
    if let Some(f) = &h.fate {
        let _ = write!(s, "   [{f}]");
    }
    s
}

/// The last line of a trace: verdict and where or why.
pub fn verdict_line(t: &Trace) -> String {
    match (&t.delivered_to, &t.drop_reason) {
        (Some(to), _) => format!("verdict: delivered to {to}"),
        (None, Some(why)) => format!("verdict: dropped ({:?}): {why}", t.disposition),
        (None, None) => "verdict: dropped".into(),
    }
}

/// Full text: every hop.
pub fn text(t: &Trace) -> String {
    let mut o = String::new();
    for h in &t.hops {
        let _ = writeln!(o, "{}", hop_line(h));
    }
    let _ = writeln!(o, "{}", verdict_line(t));
    if let Some(r) = &t.reply {
        let _ = writeln!(o, "\n--- reply ---");
        o.push_str(&text(r));
    }
    for n in &t.notes {
        let _ = writeln!(o, "note: {n}");
    }
    o
}

/// Minimal text: hops that rewrote the packet, crossed a wire, or ended a
/// copy by delivery or a drop of the traced packet.
pub fn minimal(t: &Trace) -> String {
    let mut o = String::new();
    for h in &t.hops {
        let fate = h.fate.as_deref();
        let keep = (h.rewrite.is_some() && h.kind != HopKind::Wire)
            || fate == Some("delivered")
            || (fate == Some("dropped") && h.packet.proto != "arp");
        if keep {
            let what = match (fate, &h.rewrite) {
                (Some("delivered"), _) => format!("delivered: {}", h.detail),
                (Some("dropped"), _) => format!("dropped: {}", h.detail),
                (_, Some(r)) => r.clone(),
                _ => h.detail.clone(),
            };
            let _ = writeln!(o, "{} {} {}: {what}", h.host, h.where_, h.packet.proto);
        }
    }
    let _ = writeln!(o, "{}", verdict_line(t));
    if let Some(r) = &t.reply {
        let _ = writeln!(o, "--- reply ---");
        o.push_str(&minimal(r));
    }
    o
}

/// JSON per the trace contract.
pub fn json(t: &Trace) -> String {
    serde_json::to_string_pretty(t).expect("traces serialise")
}
