//! Golden explained traces: the full text and the JSON of the nine seed
//! paths, byte for byte. The minimal snapshot (`golden_traces.rs`) shows
//! what a packet does; these pin every word `dvr trace` prints, so a change
//! in how hops are recorded or rendered (the compact trace) cannot change
//! the output unnoticed. Each path is traced twice on one world: cold (the
//! first packet ARPs and floods) and warm (caches and MAC tables filled).
//! The JSON (1.2 MB) is pinned by its length and SHA-1; the text snapshot
//! shows a readable diff of the same hops.

use dvr_sim::{L4, TraceRequest, World, render};

fn traces(format: fn(&dvr_sim::Trace) -> String) -> String {
    let topo = dvr_model::seed();
    let plan = dvr_plan::plan(&topo, dvr_plan::Profile::Walkthrough).unwrap();
    let mut out = String::new();
    for p in &topo.paths {
        let mut w = World::build(&topo, &plan);
        dvr_sim::warm_up(&mut w);
        let to = topo.resolve_address(&p.to).unwrap();
        let req = TraceRequest { from: p.from.clone(), to, l4: L4::Icmp { reply: false, id: 1 }, spoof_ip: None, spoof_mac: None };
        for round in ["cold", "warm"] {
            let t = dvr_sim::trace(&mut w, &req).unwrap();
            out += &format!("=== {} -> {} ({round})\n{}\n", p.from, p.to, format(&t));
        }
    }
    out
}

#[test]
fn seed_paths_text() {
    insta::assert_snapshot!(traces(render::text));
}

#[test]
fn seed_paths_json() {
    let json = traces(render::json);
    insta::assert_snapshot!(format!("{} bytes, sha1 {}", json.len(), sha1_smol::Sha1::from(&json).digest()));
}
