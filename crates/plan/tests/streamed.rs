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

/// Above 64 hosts `plan` splits the hosts between two threads, and
/// `for_each_host` plans on a second thread while the caller writes: both
/// must give exactly what one host at a time on one thread gives, in order.
#[test]
fn threaded_planning_is_the_same_as_host_by_host() {
    let topo = dvr_model::build::build("gen", &dvr_model::r#gen::generate(&dvr_model::r#gen::GenParams::scale(70))).unwrap();
    assert!(topo.hosts.len() > 64, "the two-thread path runs: {} hosts", topo.hosts.len());
    let profile = Profile::Walkthrough;
    let one_by_one: Vec<serde_json::Value> =
        topo.hosts_ix().map(|(ix, _)| serde_json::to_value(dvr_plan::plan_host(&topo, ix, profile)).unwrap()).collect();
    let whole = serde_json::to_value(plan(&topo, profile).unwrap()).unwrap();
    assert_eq!(whole["hosts"].as_array().unwrap(), &one_by_one);
    let ixs: Vec<dvr_model::HostIx> = topo.hosts_ix().map(|(ix, _)| ix).collect();
    let mut streamed = Vec::new();
    dvr_plan::for_each_host(&topo, &ixs, profile, |hp| {
        streamed.push(serde_json::to_value(hp).unwrap());
        Ok::<(), ()>(())
    })
    .unwrap();
    assert_eq!(streamed, one_by_one);
}

/// The first error of the consumer ends `for_each_host` (and its planner
/// thread) and is returned; a consumer that never fails sees every host.
#[test]
fn for_each_host_stops_at_the_first_error() {
    let topo = dvr_model::seed();
    let ixs: Vec<dvr_model::HostIx> = topo.hosts_ix().map(|(ix, _)| ix).collect();
    assert!(ixs.len() > 3);
    let mut seen = 0;
    let r = dvr_plan::for_each_host(&topo, &ixs, Profile::Walkthrough, |_| {
        seen += 1;
        if seen == 3 { Err("full disk") } else { Ok(()) }
    });
    assert_eq!((r, seen), (Err("full disk"), 3));
    let mut all = 0;
    dvr_plan::for_each_host(&topo, &ixs, Profile::Walkthrough, |_| {
        all += 1;
        Ok::<(), ()>(())
    })
    .unwrap();
    assert_eq!(all, ixs.len());
}
