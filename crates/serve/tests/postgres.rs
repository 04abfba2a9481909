//! The same server on PostgreSQL: the seed lab builds identically, and two
//! replicas on one database share one revision sequence (writes serialized by
//! `SELECT … FOR UPDATE`, caches caught up from the change log, change-log
//! readers woken by LISTEN/NOTIFY).

mod common;

use common::pg::Pg;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::{Duration, Instant};

async fn server(url: &str) -> common::Srv {
    let cfg = dvr_serve::Config { listen: "127.0.0.1:0".parse().unwrap(), db: url.to_string(), ..Default::default() };
    common::Srv {
        running: dvr_serve::start(cfg).await.unwrap(),
        dir: tempfile::tempdir().unwrap(),
        http: reqwest::Client::new(),
        token: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_postgres() {
    let pg = Pg::start();
    let a = server(&pg.url).await;
    let b = server(&pg.url).await;
    common::build_seed(&a).await;
    let rev = a.running.store.snapshot().revision;

    // The seed through replica A is the seed lab, seen through replica B.
    let seed = dvr_model::parse_spec("seed", dvr_model::SEED_YAML).unwrap();
    let want = serde_json::to_value(dvr_model::build::build("x", &seed).unwrap().ports).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.running.store.snapshot().revision < rev && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (_, topo) = b.get("/v2.0/dvr/topology").await;
    assert_eq!(topo["revision"].as_i64().unwrap(), rev);
    let mut topo = topo;
    topo.as_object_mut().unwrap().shift_remove("revision");
    let spec: dvr_model::spec::TopologySpec = serde_json::from_value(topo).unwrap();
    assert_eq!(serde_json::to_value(dvr_model::build::build("x", &spec).unwrap().ports).unwrap(), want);

    // B's change-log reader wakes on A's write (NOTIFY), long before its timeout.
    let url = format!("{}/v2.0/dvr/changes?since={rev}&timeout=20", b.running.url());
    let http = b.http.clone();
    let poll = tokio::spawn(async move {
        let v: Value = http.get(url).send().await.unwrap().json().await.unwrap();
        (v, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Instant::now();
    let (st, _) = a.post("/v2.0/networks", json!({"network": {"name": "from-a"}})).await;
    let answered = Instant::now();
    assert_eq!(st, 201);
    let (v, woke) = poll.await.unwrap();
    assert_eq!(v["changes"][0]["object"]["name"], "from-a");
    assert!(woke.duration_since(sent) < Duration::from_secs(5), "B's reader slept through A's write");
    println!(
        "replica B's change-log reader woke {:?} after A answered (write took {:?})",
        woke.saturating_duration_since(answered),
        answered - sent
    );

    // Both replicas write concurrently: one revision sequence, no duplicate address.
    let n = a.create("networks", "network", json!({"name": "shared"})).await;
    a.create("subnets", "subnet", json!({"name": "shared-v4", "network_id": n["id"], "cidr": "10.2.0.0/24"})).await;
    let mut tasks = Vec::new();
    for (r, srv) in [(0, &a), (1, &b)] {
        for c in 0..4 {
            let (http, url, net) = (srv.http.clone(), format!("{}/v2.0/ports", srv.running.url()), n["id"].clone());
            tasks.push(tokio::spawn(async move {
                let mut ips = Vec::new();
                for k in 0..5 {
                    let body = json!({"port": {"name": format!("r{r}c{c}p{k}"), "network_id": net}});
                    let resp = http.post(&url).json(&body).send().await.unwrap();
                    let st = resp.status().as_u16();
                    let v: Value = resp.json().await.unwrap();
                    assert_eq!(st, 201, "{v}");
                    ips.push(v["port"]["fixed_ips"][0]["ip_address"].as_str().unwrap().to_string());
                }
                ips
            }));
        }
    }
    let mut ips = HashSet::new();
    for t in tasks {
        for ip in t.await.unwrap() {
            assert!(ips.insert(ip.clone()), "{ip} handed out twice");
        }
    }
    assert_eq!(ips.len(), 40);
    let (_, log) = a.get("/v2.0/dvr/changes?since=0").await;
    let last = log["revision"].as_i64().unwrap();
    let revs: std::collections::BTreeSet<i64> =
        log["changes"].as_array().unwrap().iter().map(|c| c["revision"].as_i64().unwrap()).collect();
    assert_eq!(revs, (1..=last).collect(), "the log has a gap");
    a.running.stop().await;
    b.running.stop().await;
}
