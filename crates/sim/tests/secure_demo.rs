//! `dvr demo -t labs/seed-secure.yaml`: every path of the file ends as its
//! `expect` says, under both profiles — the nine walkthrough paths still pass
//! with the openvswitch firewall, tcp 22 to the floating IP passes, tcp 80 is
//! dropped, and the remote-group rule lets vm1 reach vm5 on tcp 80.

use dvr_model::{Expected, PathProto};
use dvr_sim::demo::{expected_of, run_path};

#[test]
fn every_seed_secure_path_ends_as_expected() {
    let topo = dvr_model::load_str("seed-secure.yaml", dvr_model::SEED_SECURE_YAML).unwrap();
    assert_eq!(topo.paths.len(), 12, "nine walkthrough paths and three tcp ones");
    for profile in dvr_plan::Profile::ALL {
        let plan = dvr_plan::plan(&topo, profile).unwrap();
        for p in &topo.paths {
            let t = run_path(&topo, &plan, p).unwrap();
            assert_eq!(Some(expected_of(&t)), p.expect, "{} ({}): {:?}", p.label(), profile.name(), t.verdict);
        }
    }
    // Positive control: the denied path is the tcp 80 one, and it is denied by the firewall.
    let denied: Vec<_> = topo.paths.iter().filter(|p| p.expect == Some(Expected::Dropped)).collect();
    assert_eq!(denied.len(), 1);
    assert_eq!((denied[0].proto, denied[0].dport), (Some(PathProto::Tcp), Some(80)));
    let noop = dvr_model::load_str("seed.yaml", dvr_model::SEED_YAML).unwrap();
    let plan = dvr_plan::plan(&noop, dvr_plan::Profile::Walkthrough).unwrap();
    let t = run_path(&noop, &plan, denied[0]).unwrap();
    assert_eq!(expected_of(&t), Expected::Delivered, "without security groups tcp 80 to the floating IP passes");
}
