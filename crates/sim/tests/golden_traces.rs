//! Golden traces of the nine seed paths in the minimal format (rewrites,
//! deliveries, drops): any change in how a packet crosses the deployment
//! shows up as a snapshot diff.

use dvr_sim::demo::run_path;

#[test]
fn seed_paths_minimal() {
    let topo = dvr_model::seed();
    let plan = dvr_plan::plan(&topo, dvr_plan::Profile::Walkthrough).unwrap();
    let paths = dvr_model::seed().paths;
    assert_eq!(paths.len(), 9, "the seed lab lists nine paths");
    let mut out = String::new();
    for p in &paths {
        let t = run_path(&topo, &plan, p).unwrap();
        assert_eq!(p.expect, Some(dvr_sim::demo::expected_of(&t)), "{} -> {}", p.from, p.to);
        out += &format!("=== {} -> {} ({})\n{}\n", p.from, p.to, p.note.as_deref().unwrap_or(""), dvr_sim::render::minimal(&t));
    }
    insta::assert_snapshot!(out);
}

#[test]
fn demo_summary() {
    let topo = dvr_model::seed();
    let plan = dvr_plan::plan(&topo, dvr_plan::Profile::Walkthrough).unwrap();
    let rows: Vec<_> =
        dvr_model::seed().paths.iter().map(|p| dvr_sim::demo::summarise(&topo, p, &run_path(&topo, &plan, p).unwrap())).collect();
    insta::assert_json_snapshot!(rows);
}
