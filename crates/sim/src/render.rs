//! Three renderers over one [`Trace`] value: text that reads like an
//! explanation, `minimal` (only rewrites, deliveries and drops, like
//! `ovn-trace --minimal`, stable enough for golden tests) and JSON (the
//! trace contract of `docs/topology.md`). Each is a pattern match on the
//! typed steps, fates and verdicts.

use crate::steptext::{push_change, push_num, push_step};
use crate::trace::{Fate, Hop, HopKind, Step, Trace, Verdict};
use std::fmt::Write;

/// One hop's line, written straight into `o` (no string per part: an
/// explained trace writes tens of these).
fn hop_line(o: &mut String, h: &Hop) {
    o.push('[');
    for (i, &n) in h.copy.0.iter().enumerate() {
        if i > 0 {
            o.push('.');
        }
        push_num(o, u32::from(n));
    }
    o.push_str("] ");
    if h.kind == HopKind::Wire {
        o.push_str("wire ");
    } else {
        o.push_str(&h.host);
        o.push(' ');
    }
    o.push_str(&h.where_);
    o.push_str(": ");
    push_step(o, &h.step);
    if !h.changed.is_empty() && h.kind != HopKind::Wire {
        for (i, c) in h.changed.iter().enumerate() {
            o.push_str(if i == 0 { "   ⇒ " } else { ", " });
            push_change(o, c);
        }
    }
    if let Some(f) = h.fate {
        o.push_str("   [");
        o.push_str(f.as_str());
        o.push(']');
    }
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
    // A hop's line is 100 to 300 bytes: one allocation for most traces.
    let hops = t.hops.len() + t.reply.as_ref().map_or(0, |r| r.hops.len());
    let mut o = String::with_capacity(256 * (hops + 2));
    text_into(&mut o, t);
    o
}

fn text_into(o: &mut String, t: &Trace) {
    for h in &t.hops {
        hop_line(o, h);
        o.push('\n');
    }
    let _ = match &t.verdict {
        Verdict::Delivered { to } => writeln!(o, "verdict: delivered to {to}"),
        Verdict::Dropped(d) => writeln!(o, "verdict: dropped ({:?}): {d}", t.disposition()),
    };
    if let Some(r) = &t.reply {
        o.push_str("\n--- reply ---\n");
        text_into(o, r);
    }
    for n in &t.notes {
        let _ = writeln!(o, "note: {n}");
    }
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
