//! `dvr demo --html`: one self-contained HTML file (inline CSS and SVG, no
//! scripts, no fetches) with the deployment diagram, one section per path
//! (its picture, summary row and hop tree) and the summary table.

use crate::scene::{Filter, build_scene};
use crate::svg::esc;
use dvr_model::{PathSpec, Topology};
use dvr_plan::Plan;
use dvr_sim::demo::{Outcome, Summary};
use dvr_sim::trace::CopyNode;
use dvr_sim::{Fate, Hop, Trace};
use std::fmt::Write;

const CSS: &str = "
body { font-family: 'DejaVu Sans', Arial, sans-serif; margin: 24px; color: #1b1f24; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #d0d7de; }
table { border-collapse: collapse; font-size: 12px; } td, th { border: 1px solid #d0d7de; padding: 3px 6px; text-align: left; vertical-align: top; }
.ok { color: #1a7f37; font-weight: bold; } .bad { color: #cf222e; font-weight: bold; }
.picture { overflow-x: auto; border: 1px solid #d0d7de; margin: 8px 0; }
details { margin-left: 14px; font-size: 12px; } summary { cursor: pointer; }
.hop { font-family: 'DejaVu Sans Mono', monospace; font-size: 11px; margin: 1px 0 1px 14px; white-space: pre-wrap; }
.why { color: #57606a; } .chg { color: #0b3d91; } .fate-dropped { color: #cf222e; } .fate-delivered { color: #1a7f37; }
.note { color: #57606a; font-style: italic; }
";

fn outcome(o: &Outcome) -> String {
    match o {
        Outcome::Delivered { to } => format!(r#"<span class="ok">delivered to {}</span>"#, esc(to)),
        Outcome::Dropped { reason } => format!(r#"<span class="bad">dropped</span>: {}"#, esc(reason)),
    }
}

fn summary_row(r: &Summary, anchor: Option<usize>) -> String {
    let path = match anchor {
        Some(i) => format!(r##"<a href="#path-{i}">{}</a>"##, esc(&r.path)),
        None => esc(&r.path),
    };
    format!(
        "<tr><td>{path}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        esc(&r.note),
        outcome(&r.request),
        r.reply.as_ref().map_or("-".to_string(), outcome),
        esc(&r.hosts.join(" → ")),
        esc(&r.rewrites.join("; "))
    )
}

const HEAD: &str = "<tr><th>path</th><th>what it shows</th><th>request</th><th>reply</th><th>hosts crossed</th><th>key rewrites</th></tr>";

fn hop_html(h: &Hop) -> String {
    let mut s = format!("{} {}: {}", esc(&h.host), esc(&h.where_), esc(&h.step.to_string()));
    if let Some(why) = h.why() {
        let _ = write!(s, r#"<br><span class="why">  why: {}</span>"#, esc(&why));
    }
    if !h.changed.is_empty() {
        let c: Vec<String> = h.changed.iter().map(ToString::to_string).collect();
        let _ = write!(s, r#" <span class="chg">⇒ {}</span>"#, esc(&c.join(", ")));
    }
    if let Some(f) = h.fate {
        let class = match f {
            Fate::Dropped => "fate-dropped",
            Fate::Delivered => "fate-delivered",
            Fate::Ignored => "why",
        };
        let _ = write!(s, r#" <span class="{class}">[{f}]</span>"#);
    }
    format!(r#"<div class="hop">{s}</div>"#)
}

fn tree_html(nodes: &[CopyNode], o: &mut String, depth: usize) {
    for n in nodes {
        let ends = n.hops.last().and_then(|h| h.fate).map(|f| format!(" — {f}")).unwrap_or_default();
        let open = if depth == 0 { " open" } else { "" };
        let _ = writeln!(o, "<details{open}><summary>copy {} ({} hops{ends})</summary>", n.copy, n.hops.len());
        for h in &n.hops {
            o.push_str(&hop_html(h));
            o.push('\n');
        }
        tree_html(&n.children, o, depth + 1);
        o.push_str("</details>\n");
    }
}

fn trace_tree(t: &Trace, o: &mut String) {
    let _ = writeln!(o, "<details><summary>request: {} hops, {}</summary>", t.hops.len(), esc(&t.verdict.to_string()));
    tree_html(&t.copy_tree(), o, 0);
    o.push_str("</details>\n");
    if let Some(r) = t.reply.as_deref() {
        let _ = writeln!(o, "<details><summary>reply: {} hops, {}</summary>", r.hops.len(), esc(&r.verdict.to_string()));
        tree_html(&r.copy_tree(), o, 0);
        o.push_str("</details>\n");
    }
    for n in &t.notes {
        let _ = writeln!(o, r#"<p class="note">note: {}</p>"#, esc(n));
    }
}

/// The report. `paths`, `traces` and `rows` are parallel (one per path).
pub fn html(topo: &Topology, plan: &Plan, paths: &[PathSpec], traces: &[Trace], rows: &[Summary]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>dvr demo: {}</title><style>{CSS}</style></head><body>",
        esc(&topo.name)
    );
    let _ = writeln!(o, "<h1>dvr demo: {}</h1>", esc(&topo.name));
    let _ = writeln!(
        o,
        "<p>{} hosts, {} networks, {} routers, {} instances. Every path below was traced through the twin of the plan, hop by hop; blue is the request, orange the reply.</p>",
        topo.hosts.len(),
        topo.networks.len(),
        topo.routers.len(),
        topo.instances.len()
    );
    let _ = writeln!(o, "<h2 id=\"summary\">Summary</h2>\n<table class=\"summary\">{HEAD}");
    for (i, r) in rows.iter().enumerate() {
        o.push_str(&summary_row(r, Some(i + 1)));
        o.push('\n');
    }
    o.push_str("</table>\n");
    let big = plan.hosts.iter().filter(|h| !h.bridges.is_empty()).count() > 8;
    let filter = if big {
        // A large deployment: the hosts the demo paths cross.
        let mut hosts: Vec<String> = Vec::new();
        for t in traces {
            for h in Filter::crossed_by(t).hosts.unwrap_or_default() {
                if !hosts.contains(&h) {
                    hosts.push(h);
                }
            }
        }
        Filter { hosts: Some(hosts) }
    } else {
        Filter::default()
    };
    let _ = writeln!(
        o,
        "<h2 id=\"deployment\">Deployment</h2>\n<div class=\"picture\">{}</div>",
        crate::svg::render(&build_scene(topo, plan, &filter))
    );
    for (i, ((p, t), r)) in paths.iter().zip(traces).zip(rows).enumerate() {
        let n = i + 1;
        let _ = writeln!(o, "<section class=\"path\" id=\"path-{n}\" data-path=\"{}\">", esc(&r.path));
        let _ = writeln!(o, "<h2>{n}. {} — {}</h2>", esc(&r.path), esc(&r.note));
        let _ = writeln!(o, "<table>{HEAD}{}</table>", summary_row(r, None));
        let mut sc = build_scene(topo, plan, &Filter::crossed_by(t));
        sc.overlay(t, &p.from, &p.to);
        let _ = writeln!(o, "<div class=\"picture\">{}</div>", crate::svg::render(&sc));
        trace_tree(t, &mut o);
        o.push_str("</section>\n");
    }
    o.push_str("</body></html>\n");
    o
}
