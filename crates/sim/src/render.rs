//! Three renderers over one [`Trace`] value: text that reads like an
//! explanation, `minimal` (only rewrites, deliveries and drops, like
//! `ovn-trace --minimal`, stable enough for golden tests) and JSON (the
//! trace contract of `docs/topology.md`). Each is a pattern match on the
//! typed steps, fates and verdicts.

use crate::trace::{Fate, Hop, HopKind, Step, Trace, Verdict};
use std::fmt::Write;

fn hop_line(h: &Hop) -> String {
    let place = match h.kind {
        HopKind::Wire => format!("wire {}", h.where_),
        _ => format!("{} {}", h.host, h.where_),
    };
    let mut s = format!("[{}] {place}: {}", h.copy, h.step);
    if let Some(r) = h.rewrite()
        && h.kind != HopKind::Wire
    {
        let _ = write!(s, "   ⇒ {r}");
    }
    if let Some(f) = h.fate {
        let _ = write!(s, "   [{f}]");
    }
    s
}

/// The verdict as one line (`verdict: delivered to vm5`).
pub fn verdict_line(t: &Trace) -> String {
    match &t.verdict {
        Verdict::Delivered { to } => format!("verdict: delivered to {to}"),
        Verdict::Dropped(d) => format!("verdict: dropped ({:?}): {d}", t.disposition()),
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

/// Whether `minimal` shows a hop: it rewrote the packet (not on a wire),
/// delivered it, dropped the traced packet (not ARP), or carried it (not
/// ARP) through a VXLAN tunnel, whose encapsulation is a rewrite too.
pub fn is_key_hop(h: &Hop) -> bool {
    match h.fate {
        Some(Fate::Delivered) => true,
        Some(Fate::Dropped) if h.packet.proto != "arp" => true,
        _ if matches!(h.step, Step::Tunnel { .. }) => h.packet.proto != "arp",
        _ => !h.changed.is_empty() && h.kind != HopKind::Wire,
    }
}

/// Minimal text: hops that rewrote the packet, crossed a wire, or ended a
/// copy by delivery or a drop of the traced packet.
pub fn minimal(t: &Trace) -> String {
    let mut o = String::new();
    for h in t.hops.iter().filter(|h| is_key_hop(h)) {
        let what = match (h.fate, h.rewrite()) {
            (Some(Fate::Delivered), _) => format!("delivered: {}", h.step),
            (Some(Fate::Dropped), _) => format!("dropped: {}", h.step),
            (_, Some(r)) => r,
            _ => h.step.to_string(),
        };
        let _ = writeln!(o, "{} {} {}: {what}", h.host, h.where_, h.packet.proto);
    }
    let _ = writeln!(o, "{}", verdict_line(t));
    if let Some(r) = &t.reply {
        let _ = writeln!(o, "--- reply ---");
        o.push_str(&minimal(r));
    }
    o
}

/// JSON per the trace contract (plus the typed `step`, `changed`, `fate`
/// and `dropped` of each hop and verdict).
pub fn json(t: &Trace) -> String {
    serde_json::to_string_pretty(t).expect("traces serialise")
}
