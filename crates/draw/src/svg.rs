//! A [`Scene`] as SVG: every part is a `<g>` with a class (`host`,
//! `bridge`, `namespace qrouter`, `instance`, `nic`, `outside`, `network`,
//! `link patch` …, `path request`, `hop reply`, `drop`) and `data-` names,
//! so tests and stylesheets can find parts without coordinates.

use crate::scene::{Direction, Scene};
use std::fmt::Write;

/// Escape text for XML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const STYLE: &str = "
  text { font-family: 'DejaVu Sans', Arial, sans-serif; font-size: 11px; fill: #1b1f24; }
  .title { font-weight: bold; }
  .host > rect { fill: #f6f8fa; stroke: #57606a; stroke-width: 1.5; }
  .bridge > rect { fill: #ddf4ff; stroke: #0969da; }
  .namespace > rect { fill: #fff8c5; stroke: #9a6700; }
  .namespace.snat > rect { fill: #ffebe9; stroke: #cf222e; }
  .namespace.fip > rect { fill: #dafbe1; stroke: #1a7f37; }
  .namespace.qdhcp > rect { fill: #fbefff; stroke: #8250df; }
  .instance > rect { fill: #ffffff; stroke: #24292f; }
  .nic > rect, .outside > rect { fill: #eaeef2; stroke: #24292f; }
  .link line { stroke: #6e7781; stroke-width: 1.2; }
  .link.patch line { stroke: #0969da; stroke-dasharray: 4 3; }
  .link.veth line { stroke: #1a7f37; stroke-dasharray: 2 2; }
  .network line { stroke: #24292f; stroke-width: 3; }
  .path polyline { fill: none; stroke-width: 3; opacity: 0.8; }
  .path.request polyline { stroke: #1f6feb; }
  .path.reply polyline { stroke: #e8590c; }
  .hop circle { stroke: #fff; stroke-width: 1.5; }
  .hop.request circle { fill: #1f6feb; }
  .hop.reply circle { fill: #e8590c; }
  .hop .n { fill: #fff; font-weight: bold; font-size: 10px; }
  .hop .note { font-size: 10px; fill: #0b3d91; }
  .hop.reply .note { fill: #8a3000; }
  .drop line { stroke: #cf222e; stroke-width: 3; }
  .drop text { fill: #cf222e; font-weight: bold; }
  .legend .head { font-weight: bold; }
";

/// Draw the scene (with its overlays and their legend).
pub fn render(sc: &Scene) -> String {
    let legend_lines: usize = sc.overlays.iter().map(|o| 1 + o.marks.len()).sum::<usize>() + usize::from(sc.hidden_hosts > 0);
    let height = sc.height + 16.0 * legend_lines as f64 + 20.0;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{height:.0}" viewBox="0 0 {w:.0} {height:.0}" class="dvr-diagram">"#,
        w = sc.width
    );
    let _ = writeln!(o, "<style>{STYLE}</style>");
    let _ = writeln!(o, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    for s in &sc.shapes {
        let r = s.rect;
        let _ = writeln!(o, r#"<g class="{}" data-host="{}" data-name="{}">"#, s.kind.class(), esc(&s.host), esc(&s.name));
        let _ = writeln!(o, r#"  <rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" rx="4"/>"#, r.x, r.y, r.w, r.h);
        let _ = writeln!(o, r#"  <text class="title" x="{:.1}" y="{:.1}">{}</text>"#, r.x + 6.0, r.y + 15.0, esc(&s.title));
        for (i, l) in s.lines.iter().enumerate() {
            let _ = writeln!(o, r#"  <text x="{:.1}" y="{:.1}">{}</text>"#, r.x + 6.0, r.y + 29.0 + 14.0 * i as f64, esc(l));
        }
        let _ = writeln!(o, "</g>");
    }
    for l in &sc.links {
        let _ = writeln!(o, r#"<g class="{}">"#, l.kind.class());
        let _ = writeln!(o, r#"  <line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}"/>"#, l.from.0, l.from.1, l.to.0, l.to.1);
        if let Some(t) = &l.label {
            let (mx, my) = ((l.from.0 + l.to.0) / 2.0 + 4.0, (l.from.1 + l.to.1) / 2.0 + 4.0);
            let _ = writeln!(o, r#"  <text x="{mx:.1}" y="{my:.1}">{}</text>"#, esc(t));
        }
        let _ = writeln!(o, "</g>");
    }
    for n in &sc.networks {
        let _ = writeln!(o, r#"<g class="network" data-name="{}">"#, esc(&n.name));
        let _ = writeln!(o, r#"  <line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}"/>"#, n.x0, n.y, n.x1, n.y);
        let _ = writeln!(o, r#"  <text class="title" x="{:.1}" y="{:.1}">{}</text>"#, n.x0 + 4.0, n.y - 5.0, esc(&n.label));
        let _ = writeln!(o, "</g>");
    }
    for ov in &sc.overlays {
        let pts: Vec<String> = ov.points.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let _ = writeln!(o, r#"<g class="path {}"><polyline points="{}"/></g>"#, ov.direction.class(), pts.join(" "));
    }
    for ov in &sc.overlays {
        // Request notes go above-right of their marker, reply notes below-right,
        // so the two directions through one place do not overwrite each other.
        let up = ov.direction == Direction::Request;
        for m in &ov.marks {
            let (x, y) = m.at;
            let _ = writeln!(o, r#"<g class="hop {}" data-n="{}" data-place="{}">"#, ov.direction.class(), m.n, esc(&m.place));
            let _ = writeln!(o, r#"  <circle cx="{x:.1}" cy="{y:.1}" r="8"/>"#);
            let _ = writeln!(o, r#"  <text class="n" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#, x, y + 3.5, m.n);
            let k = m.notes.len() as f64;
            for (i, note) in m.notes.iter().enumerate() {
                let ny = if up { y - 10.0 - 12.0 * (k - 1.0 - i as f64) } else { y + 18.0 + 12.0 * i as f64 };
                let _ = writeln!(o, r#"  <text class="note" x="{:.1}" y="{ny:.1}">{}</text>"#, x + 10.0, esc(note));
            }
            let _ = writeln!(o, "</g>");
            if let Some(why) = &m.dropped {
                let _ = writeln!(o, r#"<g class="drop" data-n="{}">"#, m.n);
                let _ = writeln!(o, r#"  <line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}"/>"#, x - 10.0, y - 10.0, x + 10.0, y + 10.0);
                let _ = writeln!(o, r#"  <line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}"/>"#, x - 10.0, y + 10.0, x + 10.0, y - 10.0);
                let _ = writeln!(o, r#"  <text x="{:.1}" y="{:.1}">dropped: {}</text>"#, x + 14.0, y - 12.0, esc(why));
                let _ = writeln!(o, "</g>");
            }
        }
    }
    // Legend: each path's stops in order, in words.
    let mut y = sc.height + 10.0;
    let _ = writeln!(o, r#"<g class="legend">"#);
    if sc.hidden_hosts > 0 {
        let _ =
            writeln!(o, r#"  <text x="16" y="{y:.1}">{} more hosts not shown (use --host or --trace to choose)</text>"#, sc.hidden_hosts);
        y += 16.0;
    }
    for ov in &sc.overlays {
        let _ = writeln!(o, r#"  <text class="head {}" x="16" y="{y:.1}">{}</text>"#, ov.direction.class(), esc(&ov.title));
        y += 16.0;
        for m in &ov.marks {
            let mut what = m.notes.join("; ");
            if m.delivered {
                what = if what.is_empty() { "delivered".into() } else { format!("{what}; delivered") };
            }
            if let Some(d) = &m.dropped {
                what = format!("dropped: {d}");
            }
            let _ = writeln!(
                o,
                r#"  <text x="28" y="{y:.1}">{}. {}{}</text>"#,
                m.n,
                esc(&m.place),
                if what.is_empty() { String::new() } else { format!(" — {}", esc(&what)) }
            );
            y += 16.0;
        }
    }
    let _ = writeln!(o, "</g>");
    o.push_str("</svg>\n");
    o
}
