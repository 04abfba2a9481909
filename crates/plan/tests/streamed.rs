//! `StreamedPlan` (host by host, for `dvr plan --format json`) serializes to
//! the same JSON value as the whole `Plan`, under both profiles and on a
//! generated deployment as well as the seed.

use dvr_plan::{Profile, StreamedPlan, plan};

#[test]
fn streamed_plan_is_the_same_json_as_the_whole_plan() {
    let seed = dvr_model::seed();
    let generated = dvr_model::build::build("gen", &dvr_model::r#gen::generate(&dvr_model::r#gen::GenParams::scale(6))).unwrap();
    for topo in [&seed, &generated] {
        for profile in [Profile::Walkthrough, Profile::Current] {
            let whole = serde_json::to_value(plan(topo, profile).unwrap()).unwrap();
            let streamed = serde_json::to_value(StreamedPlan { topo, profile }).unwrap();
            assert!(whole["hosts"].as_array().is_some_and(|h| h.len() == topo.hosts.len()));
            assert_eq!(streamed, whole, "{} {profile:?}", topo.name);
        }
    }
}
