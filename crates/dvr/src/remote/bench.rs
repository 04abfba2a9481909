//! `dvr bench-server`: figures of the API server, printed, never asserted.
//!
//! For each database (or an already running server): the time to `apply` the
//! generated 1,000-host deployment, port creations per second with 1 and 16
//! clients, and the p50/p99 latency of `GET /v2.0/ports?network_id=…` once the
//! store holds 20,000 more ports.

use super::client::{Api, ApiError};
use serde::Serialize;
use serde_json::json;
use std::time::{Duration, Instant};

/// Figures of one server.
#[derive(Debug, Serialize)]
pub struct ServerFigures {
    /// The store (`sqlite:…`, `postgres://…`) or the server URL.
    pub store: String,
    /// Seconds to apply the generated deployment, and its size.
    pub apply: Option<ApplyFigure>,
    /// Port creations per second, by client count.
    pub creations: Vec<CreationFigure>,
    /// List latency.
    pub list: Option<ListFigure>,
}

/// `dvr apply` of `dvr gen --hosts N`.
#[derive(Debug, Serialize)]
pub struct ApplyFigure {
    /// Compute hosts in the generated file.
    pub hosts: usize,
    /// Objects created.
    pub changes: usize,
    /// Wall-clock seconds of the first apply.
    pub seconds: f64,
    /// Wall-clock seconds of the second apply (nothing to do).
    pub again_seconds: f64,
    /// Changes reported by the second apply (0 when idempotent).
    pub again_changes: usize,
}

/// Single-port POSTs by concurrent clients.
#[derive(Debug, Serialize)]
pub struct CreationFigure {
    /// Concurrent clients.
    pub clients: usize,
    /// Ports created.
    pub ports: usize,
    /// Ports per second.
    pub per_second: f64,
}

/// Latency of one network's port list.
#[derive(Debug, Serialize)]
pub struct ListFigure {
    /// Ports in the store when measured.
    pub ports_in_store: usize,
    /// Ports returned by each request.
    pub ports_returned: usize,
    /// Requests measured.
    pub requests: usize,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
}

fn network(api: &Api, name: &str, cidr: &str) -> Result<String, ApiError> {
    let n = api.post("/v2.0/networks", &json!({"network": {"name": name}}))?;
    let id = n["network"]["id"].as_str().unwrap_or_default().to_string();
    api.post("/v2.0/subnets", &json!({"subnet": {"name": format!("{name}-v4"), "network_id": id, "ip_version": 4, "cidr": cidr}}))?;
    Ok(id)
}

/// Port creations per second with `clients` concurrent clients, `per_client` each.
pub fn creations(url: &str, token: Option<&str>, tag: &str, clients: usize, per_client: usize) -> Result<CreationFigure, ApiError> {
    let api = Api::new(url, token.map(String::from));
    let net = network(&api, &format!("bench-{tag}-{clients}"), &format!("10.{}.0.0/16", 100 + clients))?;
    let t0 = Instant::now();
    let results: Vec<Result<(), ApiError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let net = net.clone();
                s.spawn(move || {
                    let api = Api::new(url, token.map(String::from));
                    for i in 0..per_client {
                        api.post(
                            "/v2.0/ports",
                            &json!({"port": {"name": format!("b{c}-{i}"), "network_id": net, "device_owner": "compute:nova"}}),
                        )?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("bench client thread")).collect()
    });
    let secs = t0.elapsed().as_secs_f64();
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    Ok(CreationFigure { clients, ports: clients * per_client, per_second: (clients * per_client) as f64 / secs })
}

/// Fill the store with `total` ports over 100 networks (bulk), then time `requests` list calls.
pub fn list_latency(api: &Api, total: usize, requests: usize, progress: &dyn Fn(&str)) -> Result<ListFigure, ApiError> {
    let nets = 100;
    let mut first = String::new();
    for n in 0..nets {
        let id = network(api, &format!("bench-list-{n}"), &format!("10.{}.{}.0/24", 200 + n / 100, n % 100))?;
        let ports: Vec<_> = (0..total / nets).map(|i| json!({"name": format!("l{n}-{i}"), "network_id": id})).collect();
        for chunk in ports.chunks(250) {
            api.post("/v2.0/ports", &json!({ "ports": chunk }))?;
        }
        if n == 0 {
            first = id;
        }
        if n % 10 == 9 {
            progress(&format!("list figure: {} ports created", (n + 1) * (total / nets)));
        }
    }
    let mut lat = Vec::with_capacity(requests);
    let mut returned = 0;
    for _ in 0..requests {
        let t = Instant::now();
        let v = api.get(&format!("/v2.0/ports?network_id={first}"))?;
        lat.push(t.elapsed());
        returned = v["ports"].as_array().map(|a| a.len()).unwrap_or(0);
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1000.0;
    Ok(ListFigure { ports_in_store: total, ports_returned: returned, requests, p50_ms: pct(0.50), p99_ms: pct(0.99) })
}

/// Apply `dvr gen --hosts hosts` twice.
pub fn apply_figure(api: &Api, hosts: usize, progress: &dyn Fn(&str)) -> anyhow::Result<ApplyFigure> {
    let yaml = dvr_model::r#gen::generate_yaml(&dvr_model::r#gen::GenParams::scale(hosts));
    let spec = dvr_model::parse_spec("generated", &yaml)?;
    let topo = dvr_model::build::build("generated", &spec)?;
    let t0 = Instant::now();
    let first = super::apply::apply(api, &spec, &topo, progress)?;
    let seconds = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let again = super::apply::apply(api, &spec, &topo, progress)?;
    Ok(ApplyFigure { hosts, changes: first.changes, seconds, again_seconds: t1.elapsed().as_secs_f64(), again_changes: again.changes })
}

/// A `dvr server` child on a free loopback port, killed on drop.
pub struct Spawned {
    /// Its URL.
    pub url: String,
    child: std::process::Child,
}

impl Spawned {
    /// Start `<this binary> server --listen 127.0.0.1:PORT --db DB` and wait for `GET /`.
    pub fn start(db: &str) -> anyhow::Result<Spawned> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = std::process::Command::new(std::env::current_exe()?)
            .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--db", db])
            .stdout(std::process::Stdio::null())
            .spawn()?;
        let mut s = Spawned { url: format!("http://127.0.0.1:{port}"), child };
        let api = Api::new(&s.url, None);
        let t0 = Instant::now();
        while api.get("/").is_err() {
            if let Some(st) = s.child.try_wait()? {
                anyhow::bail!("`dvr server --db {db}` exited ({st}) before answering");
            }
            anyhow::ensure!(t0.elapsed() < Duration::from_secs(60), "`dvr server --db {db}` did not answer within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(s)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// All figures of one server (fresh store expected: the apply comes first).
pub fn figures(store: &str, url: &str, token: Option<&str>, hosts: usize, list_ports: usize) -> anyhow::Result<ServerFigures> {
    let api = Api::new(url, token.map(String::from));
    let t0 = Instant::now();
    let progress = |m: &str| eprintln!("bench-server [{store}] [{:>6.1}s] {m}", t0.elapsed().as_secs_f64());
    let apply = if hosts > 0 {
        progress(&format!("apply of the generated {hosts}-host deployment"));
        Some(apply_figure(&api, hosts, &progress)?)
    } else {
        None
    };
    let mut creations_v = Vec::new();
    for (clients, per) in [(1, 400), (16, 50)] {
        progress(&format!("port creations, {clients} client(s)"));
        creations_v.push(creations(url, token, "c", clients, per)?);
    }
    let list = if list_ports > 0 {
        progress(&format!("filling {list_ports} ports for the list figure"));
        Some(list_latency(&api, list_ports, 200, &progress)?)
    } else {
        None
    };
    Ok(ServerFigures { store: store.to_string(), apply, creations: creations_v, list })
}

/// The figures as text.
pub fn render(all: &[ServerFigures]) -> String {
    let mut o = String::new();
    for f in all {
        o.push_str(&format!("server on {}\n", f.store));
        if let Some(a) = &f.apply {
            o.push_str(&format!(
                "  apply `dvr gen --hosts {}`: {} objects in {:.1} s; again: {} changes in {:.1} s\n",
                a.hosts, a.changes, a.seconds, a.again_changes, a.again_seconds
            ));
        }
        for c in &f.creations {
            o.push_str(&format!("  port creations, {:>2} client(s): {:>7.0} ports/s ({} ports)\n", c.clients, c.per_second, c.ports));
        }
        if let Some(l) = &f.list {
            o.push_str(&format!(
                "  GET /v2.0/ports?network_id=… with {} ports stored ({} returned): p50 {:.2} ms, p99 {:.2} ms ({} requests)\n",
                l.ports_in_store, l.ports_returned, l.p50_ms, l.p99_ms, l.requests
            ));
        }
    }
    o
}
