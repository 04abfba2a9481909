//! Shared pieces of the end-to-end tests against a real `dvr server` process:
//! start/stop a server on a free loopback port, a throw-away PostgreSQL
//! cluster (`scripts/pg`), the pinned OpenStack client venv (`scripts/venv`),
//! and a small JSON HTTP helper. Every guard cleans up in `Drop`, so a failing
//! assertion still stops the server and removes the cluster.
#![allow(dead_code)]

use serde_json::Value;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository root (scripts live there).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The `dvr` binary under test.
pub fn dvr() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dvr"))
}

/// A prerequisite is missing: always a loud failure (never a silent skip),
/// with the command that installs it.
pub fn missing(what: &str, fix: &str) -> ! {
    panic!(
        "prerequisite missing: {what}. Fix: {fix} (bash scripts/test installs everything){}",
        if std::env::var_os("CI").is_some() { " [CI]" } else { "" }
    )
}

/// A free TCP port on 127.0.0.1 (bound, then released for the server).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `dvr server` child process; killed (SIGKILL) and reaped on drop.
pub struct Server {
    /// Base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    /// Port.
    pub port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl Server {
    /// Start `dvr server --listen 127.0.0.1:PORT --db DB` and wait (bounded) until
    /// `GET /` answers. `log` receives its stdout and stderr.
    pub fn start(db: &str, log: &Path) -> Server {
        Self::start_on(free_port(), db, log, &[])
    }

    /// Like [`Server::start`] on a given port, with extra arguments.
    pub fn start_on(port: u16, db: &str, log: &Path, extra: &[&str]) -> Server {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let child = dvr()
            .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--db", db])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn dvr server");
        let mut s = Server { url: format!("http://127.0.0.1:{port}"), port, child: Some(child), log: log.to_path_buf() };
        s.wait_ready(Duration::from_secs(60));
        s
    }

    fn wait_ready(&mut self, limit: Duration) {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("dvr server exited early ({st}); its log:\n{}", self.log_text());
            }
            if let Ok((200, _)) = try_http("GET", &format!("{}/", self.url), None) {
                return;
            }
            if t0.elapsed() > limit {
                panic!("dvr server did not answer GET / within {limit:?}; its log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's output so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id (for `kill -9`).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGKILL, no chance to flush or roll back: what a power cut looks like to the store.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// GET a path, expecting 200, as JSON.
    pub fn get(&self, path: &str) -> Value {
        let (st, v) = http("GET", &format!("{}{path}", self.url), None);
        assert_eq!(st, 200, "GET {path} answered {st}: {v}");
        v
    }

    /// Any request on a path; status and JSON body.
    pub fn req(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        http(method, &format!("{}{path}", self.url), body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .timeout_connect(Some(Duration::from_secs(20)))
        .build()
        .into()
}

thread_local! {
    static AGENT: ureq::Agent = agent();
}

/// One request; `Err` when there was no answer (refused, reset, timeout).
pub fn try_http(method: &str, url: &str, body: Option<&Value>) -> Result<(u16, Value), ureq::Error> {
    AGENT.with(|a| {
        let r = match (method, body) {
            ("GET", _) => a.get(url).call(),
            ("DELETE", _) => a.delete(url).call(),
            ("POST", Some(b)) => a.post(url).send_json(b),
            ("PUT", Some(b)) => a.put(url).send_json(b),
            (m, _) => panic!("unsupported {m} without body"),
        };
        let mut r = r?;
        let st = r.status().as_u16();
        let text = r.body_mut().with_config().limit(u64::MAX).read_to_string()?;
        Ok((st, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    })
}

/// One request that must be answered.
pub fn http(method: &str, url: &str, body: Option<&Value>) -> (u16, Value) {
    try_http(method, url, body).unwrap_or_else(|e| panic!("{method} {url}: no answer: {e}"))
}

/// A throw-away PostgreSQL cluster (`scripts/pg`); stopped and removed on drop.
pub struct Pg {
    /// Connection URL for `--db`.
    pub url: String,
    dir: tempfile::TempDir,
}

impl Pg {
    /// initdb + start on a free loopback port (bounded by the script's timeouts).
    pub fn start() -> Pg {
        let dir = tempfile::Builder::new().prefix("dvr-pg-").tempdir().unwrap();
        let out =
            Command::new("bash").arg(repo().join("scripts/pg")).args(["start", dir.path().join("pg").to_str().unwrap()]).output().unwrap();
        if out.status.code() == Some(3) {
            missing("PostgreSQL server binaries (initdb, pg_ctl)", "apt-get install postgresql");
        }
        let mut pg = Pg { url: String::from_utf8_lossy(&out.stdout).trim().to_string(), dir };
        if !out.status.success() || pg.url.is_empty() {
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            pg.stop();
            panic!("scripts/pg start failed: {err}");
        }
        pg
    }

    fn stop(&mut self) {
        let _ = Command::new("bash").arg(repo().join("scripts/pg")).args(["stop", self.dir.path().join("pg").to_str().unwrap()]).status();
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The pinned OpenStack client venv (`scripts/venv`), created once and reused.
pub fn venv() -> PathBuf {
    let target = repo().join("target");
    let dir = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or(target).join("openstack-venv");
    // One test at a time builds the venv; the others wait for it.
    let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.with_extension("lock")).unwrap();
    let status = Command::new("flock")
        .arg(dir.with_extension("lock"))
        .arg("bash")
        .arg(repo().join("scripts/venv"))
        .arg(&dir)
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| missing(&format!("flock/bash ({e})"), "apt-get install util-linux bash"));
    drop(lock);
    if !status.success() || !dir.join("bin/openstack").exists() {
        missing(
            "the OpenStack client venv (scripts/venv failed)",
            "run bash scripts/venv and read its error (needs PyPI and python3-venv)",
        );
    }
    dir
}

/// Result of one external command.
pub struct Out {
    /// Exit code (None when killed by `timeout`'s signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Run `argv` under `timeout SECS` (the client must never hang the suite).
pub fn run_bounded(secs: u32, argv: &[&str], env: &[(&str, &str)]) -> Out {
    let out = Command::new("timeout")
        .arg(secs.to_string())
        .args(argv)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"));
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

/// Latest revision in a change-log answer (`GET /v2.0/dvr/changes`): the
/// answer's `revision`, else the highest `revision` among its changes.
pub fn changes_revision(v: &Value) -> u64 {
    v["revision"].as_u64().unwrap_or_else(|| change_revisions(v).into_iter().max().unwrap_or(0))
}

/// The revision of every change in a change-log answer, in answer order.
pub fn change_revisions(v: &Value) -> Vec<u64> {
    v["changes"].as_array().into_iter().flatten().filter_map(|c| c["revision"].as_u64().or(c["revision_number"].as_u64())).collect()
}

/// Every change-log revision from the start, following the log page by page
/// (`since` = the last revision seen; the server may cap each answer).
pub fn all_change_revisions(s: &Server) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::new();
    let mut since = 0;
    loop {
        let v = s.get(&format!("/v2.0/dvr/changes?since={since}&timeout=0"));
        let revs: Vec<u64> = change_revisions(&v).into_iter().filter(|r| *r > since).collect();
        let Some(&last) = revs.last() else { return out };
        out.extend(revs);
        since = last;
    }
}

/// Declare the seed lab's hosts (controller, network, compute1, compute2 with
/// physnet1 → br-vlan and extnet → br-ex) through `dvr apply` of a hosts-only
/// file: the model's rules want every physical network on some host.
pub fn apply_seed_hosts(server: &Server, dir: &Path) {
    let seed_yaml = std::fs::read_to_string(repo().join("labs/seed.yaml")).unwrap();
    let hosts_only = seed_yaml.split("\nnetworks:").next().unwrap().to_string();
    let file = dir.join("seed-hosts.yaml");
    std::fs::write(&file, hosts_only).unwrap();
    let out = dvr().args(["apply", "-f"]).arg(&file).args(["--server", &server.url]).output().unwrap();
    assert!(out.status.success(), "dvr apply of the seed's hosts: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("created 4 hosts") || stdout.contains("0 changes"), "{stdout}");
}
