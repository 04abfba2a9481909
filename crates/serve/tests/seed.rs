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

/// What `dvr export` does: GET every collection, read it back into the
/// typed objects and convert. The result builds to the seed lab.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_from_listed_json_is_the_seed_lab() {
    use dvr_serve::resources::*;
    let s = common::start().await;
    common::build_seed(&s).await;
    async fn list<T: serde::de::DeserializeOwned>(s: &common::Srv, path: &str, key: &str) -> Vec<T> {
        let (st, v) = s.get(path).await;
        assert_eq!(st, 200);
        serde_json::from_value(v[key].clone()).unwrap()
    }
    let (_, d) = s.get("/v2.0/dvr/deployment").await;
    let res = Resources::from_lists(
        d["deployment"]["name"].as_str().map(str::to_string),
        list::<Host>(&s, "/v2.0/dvr/hosts", "hosts").await,
        list::<Network>(&s, "/v2.0/networks", "networks").await,
        list::<Subnet>(&s, "/v2.0/subnets", "subnets").await,
        list::<Port>(&s, "/v2.0/ports", "ports").await,
        list::<Router>(&s, "/v2.0/routers", "routers").await,
        list::<FloatingIp>(&s, "/v2.0/floatingips", "floatingips").await,
        list::<ExternalHost>(&s, "/v2.0/dvr/external-hosts", "external_hosts").await,
    );
    let spec = dvr_serve::resources_to_spec(&res);
    let yaml = serde_yaml_ng::to_string(&spec).unwrap();
    let back = dvr_model::parse_spec("export", &yaml).unwrap();
    let seed = dvr_model::parse_spec("seed", dvr_model::SEED_YAML).unwrap();
    assert_eq!(topo_json(&back), topo_json(&seed));
    assert_eq!(back.name.as_deref(), Some("seed-lab"));
}
