//! Golden traces of the nine seed paths in the minimal format (rewrites,
//! deliveries, drops): any change in how a packet crosses the deployment
//! shows up as a snapshot diff.

use dvr_sim::demo::{parse_paths, run_path};

#[test]
fn seed_paths_minimal() {
    let topo = dvr_model::seed();
    let plan = dvr_plan::plan(&topo, dvr_plan::Profile::Walkthrough).unwrap();
    let paths = parse_paths(dvr_model::SEED_YAML);
    assert_eq!(paths.len(), 9, "the seed lab lists nine paths");
    let mut out = String::new();
    for p in &paths {
        let t = run_path(&topo, &plan, p).unwrap();
        out += &format!("=== {} -> {} ({})\n{}\n", p.from, p.to, p.note, dvr_sim::render::minimal(&t));
    }
    insta::assert_snapshot!(out);
}

#[test]
fn demo_summary() {
    let topo = dvr_model::seed();
    let plan = dvr_plan::plan(&topo, dvr_plan::Profile::Walkthrough).unwrap();
    let rows: Vec<_> =
        parse_paths(dvr_model::SEED_YAML).iter().map(|p| dvr_sim::demo::summarise(&topo, p, &run_path(&topo, &plan, p).unwrap())).collect();
    insta::assert_json_snapshot!(rows);
}
