//! `docs/pipeline.md` documents every table declared in `dvr_plan::tables`,
//! and every table the seed lab's plan uses is declared there.

use dvr_plan::tables::{self, BridgeKind};

const PIPELINE_MD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/pipeline.md");

fn pipeline_md() -> String {
    std::fs::read_to_string(PIPELINE_MD).unwrap_or_else(|e| panic!("cannot read {PIPELINE_MD}: {e}"))
}

fn bridge_word(kind: BridgeKind) -> &'static str {
    match kind {
        BridgeKind::Int => "br-int",
        BridgeKind::Phys => "br-phys",
        BridgeKind::Tun => "br-tun",
    }
}

fn heading(kind: BridgeKind, id: impl std::fmt::Display, name: &str) -> String {
    format!("## {} table {id}: {name}", bridge_word(kind))
}

/// The table headings of the document, as written.
fn table_headings(doc: &str) -> Vec<&str> {
    doc.lines()
        .map(str::trim_end)
        .filter(|l| l.starts_with("## br-int table ") || l.starts_with("## br-phys table ") || l.starts_with("## br-tun table "))
        .collect()
}

#[test]
fn every_declared_table_has_a_section() {
    let doc = pipeline_md();
    let headings = table_headings(&doc);
    let missing: Vec<String> =
        tables::ALL.iter().map(|t| heading(t.bridge, t.id, t.name)).filter(|h| !headings.contains(&h.as_str())).collect();
    assert!(missing.is_empty(), "docs/pipeline.md lacks these table sections:\n{}", missing.join("\n"));
}

#[test]
fn every_table_section_is_declared() {
    let doc = pipeline_md();
    let declared: Vec<String> = tables::ALL.iter().map(|t| heading(t.bridge, t.id, t.name)).collect();
    let stale: Vec<&str> = table_headings(&doc).into_iter().filter(|h| !declared.iter().any(|d| d == h)).collect();
    assert!(stale.is_empty(), "docs/pipeline.md has sections for tables tables.rs does not declare:\n{}", stale.join("\n"));
}

#[test]
fn every_table_used_by_the_seed_plan_is_declared() {
    let mut undeclared = Vec::new();
    for (topo, profile) in [dvr_model::SEED_YAML, dvr_model::SEED_VXLAN_YAML, dvr_model::SEED_MIXED_YAML]
        .into_iter()
        .map(|y| dvr_model::load_str("lab", y).unwrap())
        .flat_map(|t| dvr_plan::Profile::ALL.map(|p| (t.clone(), p)))
    {
        let plan = dvr_plan::plan(&topo, profile).expect("the seed labs plan");
        for host in &plan.hosts {
            for bridge in &host.bridges {
                for flow in &bridge.flows {
                    if tables::lookup(bridge.kind, flow.table).is_none() {
                        undeclared.push(format!(
                            "profile {}, host {}, {} ({}): table {} ({})",
                            profile.name(),
                            host.host,
                            bridge.name,
                            bridge_word(bridge.kind),
                            flow.table,
                            flow.reason
                        ));
                    }
                }
            }
        }
    }
    assert!(undeclared.is_empty(), "flows in tables not declared in tables.rs:\n{}", undeclared.join("\n"));
}
