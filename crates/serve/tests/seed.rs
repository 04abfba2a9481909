//! The walkthrough's deployment built through the API is the seed lab: the
//! live topology builds to exactly what `labs/seed.yaml` builds to (same ids,
//! addresses, MACs, VLANs), and it survives a restart of the server.

mod common;

use serde_json::Value;

fn topo_json(spec: &dvr_model::spec::TopologySpec) -> Value {
    let t = dvr_model::build::build("x", spec).unwrap();
    let mut v = serde_json::to_value(&t).unwrap();
    v["name"] = Value::Null;
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_built_through_the_api_is_the_seed_lab() {
    let s = common::start().await;
    common::build_seed(&s).await;
    let (st, live) = s.get("/v2.0/dvr/topology").await;
    assert_eq!(st, 200);
    let mut live = live;
    live.as_object_mut().unwrap().remove("revision");
    let spec: dvr_model::spec::TopologySpec = serde_json::from_value(live).unwrap();
    assert_eq!(spec.name.as_deref(), Some("seed-lab"));
    let seed = dvr_model::parse_spec("seed", dvr_model::SEED_YAML).unwrap();
    let (a, b) = (topo_json(&spec), topo_json(&seed));
    for k in ["hosts", "networks", "subnets", "routers", "instances", "floating_ips", "external_hosts", "ports"] {
        assert_eq!(a[k], b[k], "{k} differs");
    }
    // Positive control: one moved address is seen.
    let mut moved = seed.clone();
    moved.instances[0].ip = Some("192.168.1.99".parse().unwrap());
    assert_ne!(topo_json(&moved)["ports"], a["ports"]);

    // Restart on the same database: the same state, the same revision.
    let rev = s.running.store.snapshot().revision;
    let db = s.db_url();
    let dir = s.dir;
    s.running.stop().await;
    let cfg = dvr_serve::Config { listen: "127.0.0.1:0".parse().unwrap(), db, ..Default::default() };
    let again = dvr_serve::start(cfg).await.unwrap();
    assert_eq!(again.store.snapshot().revision, rev);
    let spec2 = dvr_serve::resources_to_spec(&again.store.snapshot().res);
    assert_eq!(topo_json(&spec2), a);
    again.stop().await;
    drop(dir);
}
