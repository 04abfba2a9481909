//! All-pairs by equivalence classes is exact: on a 100-instance deployment
//! (5 compute hosts, 4 networks on 2 routers, floating IPs), the outcome the
//! classes give every ordered pair equals the pair's own trace. A positive
//! control shows the comparison can fail: a key that forgets the
//! destination's network merges routed and unrouted pairs, and is caught.

use dvr_model::r#gen::{GenParams, generate};
use dvr_sim::World;
use dvr_sim::allpairs::{Classes, EndpointClass, Matrix, brute_force, by_classes};

fn deployment() -> (dvr_model::Topology, World) {
    let p = GenParams { hosts: 5, vms: 100, networks: 4, routers: 2, seed: 3, external_hosts: 1, floating_ips: 6 };
    let topo = dvr_model::build::build("allpairs", &generate(&p)).unwrap();
    let plan = dvr_plan::plan(&topo, dvr_plan::Profile::Walkthrough).unwrap();
    let mut w = World::build(&topo, &plan);
    dvr_sim::warm_up(&mut w);
    (topo, w)
}

/// Pairs whose class outcome differs from their own trace.
fn mismatches(m: &Matrix, brute: &[Vec<Option<dvr_sim::allpairs::Outcome>>]) -> Vec<(usize, usize)> {
    let mut bad = vec![];
    for (a, row) in brute.iter().enumerate() {
        for (b, o) in row.iter().enumerate() {
            if let Some(o) = o
                && m.get(a, b) != Some(*o)
            {
                bad.push((a, b));
            }
        }
    }
    bad
}

#[test]
fn classes_equal_brute_force_and_a_too_coarse_key_is_caught() {
    let (topo, w) = deployment();
    let brute = brute_force(&topo, &w, 2);
    let n = topo.instances.len();
    let reachable = brute.iter().flatten().flatten().filter(|o| o.reached()).count();
    let isolated = brute.iter().flatten().flatten().filter(|o| !o.reached()).count();
    assert_eq!(reachable + isolated, n * (n - 1));
    assert!(reachable > 0 && isolated > 0, "the deployment has routed and unrouted pairs ({reachable} / {isolated})");

    let exact = by_classes(&topo, &w, Classes::new(&topo), 2);
    assert!(exact.traced < n * (n - 1) / 10, "classes trace far fewer pairs: {} of {}", exact.traced, n * (n - 1));
    eprintln!(
        "{n} instances: {reachable} of {} pairs reachable; {} classes, {} pairs traced",
        n * (n - 1),
        exact.classes.classes.len(),
        exact.traced
    );
    assert_eq!(mismatches(&exact, &brute), vec![], "class outcome == each pair's own trace");
    assert_eq!(exact.reachable as usize, reachable);
    assert_eq!(exact.pairs as usize, n * (n - 1));

    // Positive control: every instance in its host kind only (the network,
    // hence the router, forgotten) merges pairs that are routed with pairs
    // that are not; the comparison must notice.
    let coarse = Classes::with(&topo, |x| EndpointClass { network: dvr_model::NetworkIx(0), ..EndpointClass::of(&topo, x) });
    let wrong = by_classes(&topo, &w, coarse, 2);
    assert!(!mismatches(&wrong, &brute).is_empty(), "a key without the network must be caught");
}
