//! `dvr agent`: one process per host that turns the server's state into that
//! host's bridges, flows and namespaces and keeps them there, as Neutron's OVS
//! and L3 agents do.
//!
//! Threads and what each owns:
//! - the **poller** long-polls `GET /v2.0/dvr/changes?since=N` from its own
//!   cursor and says "something changed up to R" (retries with backoff while
//!   the server is down, resumes from N, so no revision is missed);
//! - the **canary** watches br-int table 23 (Neutron's canary table): when
//!   its flows vanish while br-int exists, `ovs-vswitchd` restarted and every
//!   flow must be restored;
//! - the **heartbeat** reports the agent rows (OVS agent + L3 agent) every
//!   10 s with the agent's revision and last convergence;
//! - the **main loop** fetches the state, follows it with its model (in
//!   place where the change allows, rebuilt otherwise: [`follow`]), takes
//!   this host's plan when its inputs changed
//!   ([`dvr_plan::incremental::fingerprint`]) and converges with `realize`
//!   (observe, pure diff, apply the difference). A periodic full resync
//!   (default 30 s) repairs drift.
//!
//! Nothing is persisted: the server and the host tell a restarted agent all it
//! needs, and a host that already matches converges with 0 operations.

mod follow;

use crate::remote::{ServerArg, client::Api};
use anyhow::{Context, Result, bail};
use dvr_model::Topology;
use dvr_plan::{HostPlan, Profile};
use dvr_realize::host::{self, Names};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `dvr agent` options.
#[derive(clap::Args, Clone)]
pub struct AgentArgs {
    /// The host this agent serves (its name on the server).
    #[arg(long, value_name = "NAME")]
    host: String,
    #[command(flatten)]
    server: ServerArg,
    /// `dvr_snat` (network node: SNAT and DHCP) or `dvr` (compute); default:
    /// from the host's role on the server, else from --config, else `dvr`.
    #[arg(long, value_name = "MODE")]
    agent_mode: Option<AgentMode>,
    /// A physical network → bridge mapping (`physnet1:br-vlan`), repeatable.
    #[arg(long = "bridge-mapping", value_name = "PHYSNET:BRIDGE")]
    bridge_mappings: Vec<String>,
    /// A small YAML/JSON file: `{agent_mode: dvr, bridge_mappings: {physnet1: br-vlan}}`.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Name prefix of the emulated lab whose host this is (its namespaces and OVS).
    #[arg(long, default_value = "dvr")]
    prefix: String,
    /// Print the operations a convergence would apply instead of applying them.
    #[arg(long)]
    dry_run: bool,
    /// Full resync period (observe everything, repair drift): `30s`, `500ms`, `2m`.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    resync_interval: Duration,
    /// Converge once and exit (0 operations printed when nothing differs).
    #[arg(long)]
    once: bool,
    /// Which Neutron's pipeline to build.
    #[arg(long, default_value = "walkthrough")]
    profile: Profile,
    /// Run inside this network namespace (an emulated host's, as `lab up
    /// --live` does): entered first, before any thread starts.
    #[arg(long, value_name = "NAME")]
    netns: Option<String>,
    /// After each change followed in place, also rebuild the model from the
    /// server's topology and check this host's plan is the same (after
    /// converging, so latency is unaffected); a difference is logged
    /// (`in place DIFFERS`) and repaired by a rebuild.
    #[arg(long)]
    verify_in_place: bool,
}

/// Neutron's L3 agent modes that DVR uses.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentMode {
    /// Compute node: distributed routing and floating IPs only.
    Dvr,
    /// Network node: also centralized SNAT (and DHCP here).
    DvrSnat,
}

impl AgentMode {
    fn as_str(self) -> &'static str {
        match self {
            AgentMode::Dvr => "dvr",
            AgentMode::DvrSnat => "dvr_snat",
        }
    }
    fn role(self) -> &'static str {
        match self {
            AgentMode::Dvr => "compute",
            AgentMode::DvrSnat => "network",
        }
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    agent_mode: Option<AgentMode>,
    #[serde(default)]
    bridge_mappings: BTreeMap<String, String>,
}

/// `30s`, `500ms`, `2m`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mul) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.trim().parse().map_err(|_| format!("`{s}` is not a duration (e.g. 30s, 500ms, 2m)"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("`{s}`: the duration must be positive"));
    }
    Ok(Duration::from_secs_f64(v * mul))
}

/// What the agent reports about itself (heartbeat `configurations`).
#[derive(Clone, Default)]
struct Status {
    revision: i64,
    converged_at: Option<String>,
    last_ops: usize,
    convergences: u64,
    dvr_mac: String,
}

enum Event {
    /// The change log moved to this revision.
    Changed(i64),
    /// The server is behind the agent (a new database): start over.
    Reset,
    /// The canary flow is gone: ovs-vswitchd restarted.
    OvsRestart,
}

fn log(host: &str, msg: &str) {
    eprintln!("agent {host} [{}] {msg}", chrono_like_now());
}

fn chrono_like_now() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let s = d.as_secs();
    format!("{:02}:{:02}:{:02}.{:03}", (s / 3600) % 24, (s / 60) % 60, s % 60, d.subsec_millis())
}

/// Declare the host on the server when it is missing; return its DVR MAC and mode.
fn register(api: &Api, host: &str, mode: Option<AgentMode>, mappings: &BTreeMap<String, String>) -> Result<(String, AgentMode)> {
    let hosts = api.get("/v2.0/dvr/hosts")?;
    let found = hosts["hosts"].as_array().into_iter().flatten().find(|h| h["name"] == host).cloned();
    let h = match found {
        Some(h) => h,
        None => {
            let mode = mode.unwrap_or(AgentMode::Dvr);
            let body = json!({"host": {"name": host, "role": mode.role(), "bridge_mappings": mappings}});
            api.post("/v2.0/dvr/hosts", &body).with_context(|| format!("registering host `{host}` on {}", api.base()))?["host"].clone()
        }
    };
    let mode = mode.unwrap_or(match h["role"].as_str() {
        Some("network") => AgentMode::DvrSnat,
        _ => AgentMode::Dvr,
    });
    Ok((h["dvr_mac"].as_str().unwrap_or_default().to_string(), mode))
}

fn report(api: &Api, host: &str, mode: AgentMode, mappings: &BTreeMap<String, String>, st: &Status) -> Result<()> {
    let common = json!({
        "agent_mode": mode.as_str(),
        "bridge_mappings": mappings,
        "dvr_mac": st.dvr_mac,
        "revision": st.revision,
        "last_convergence": st.converged_at,
        "last_operations": st.last_ops,
        "convergences": st.convergences,
    });
    for (t, bin) in [("Open vSwitch agent", "dvr-agent (ovs)"), ("L3 agent", "dvr-agent (l3)")] {
        let body = json!({"agent": {"host": host, "agent_type": t, "binary": bin, "topic": "N/A", "configurations": common}});
        api.post("/v2.0/dvr/agents/report", &body)?;
    }
    Ok(())
}

/// The server's topology at one revision (parsed, not built).
fn fetch(api: &Api) -> Result<(i64, dvr_model::spec::TopologySpec)> {
    let mut v = api.get("/v2.0/dvr/topology")?;
    let rev = v["revision"].as_i64().context("the server's /v2.0/dvr/topology has no revision")?;
    if let Some(o) = v.as_object_mut() {
        o.remove("revision");
    }
    let spec: dvr_model::spec::TopologySpec =
        serde_json::from_value(v).with_context(|| format!("the topology of {} (revision {rev}) is not a topology file", api.base()))?;
    Ok((rev, spec))
}

fn spawn_poller(api: Api, host: String, mut since: i64, tx: Sender<Event>) {
    std::thread::spawn(move || {
        let mut backoff = Duration::from_millis(100);
        let mut down = false;
        loop {
            // A server shutting down answers pending polls at once, so the
            // poll length only bounds how long a silent peer is trusted.
            match api.get(&format!("/v2.0/dvr/changes?since={since}&timeout=30&limit=1000")) {
                Ok(v) => {
                    if down {
                        log(&host, &format!("server back; resuming from revision {since}"));
                        down = false;
                    }
                    backoff = Duration::from_millis(100);
                    let r = v["revision"].as_i64().unwrap_or(since);
                    let ev = if r < since {
                        Some(Event::Reset)
                    } else if r > since {
                        Some(Event::Changed(r))
                    } else {
                        None
                    };
                    since = r;
                    if let Some(ev) = ev
                        && tx.send(ev).is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    if !down {
                        log(&host, &format!("change log unreachable ({e}); retrying"));
                        down = true;
                    }
                    std::thread::sleep(backoff);
                    // Capped at 0.5 s: a restarted server is followed again
                    // within half a second of listening (a refused connect
                    // on loopback costs nothing).
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
            }
        }
    });
}

/// Whether br-int's canary table still holds flows. `None`: cannot tell
/// (vswitchd down, no br-int yet); only a readable, empty table is a restart.
fn canary_present(ovs: &dvr_realize::OvsInstance) -> Option<bool> {
    let out = ovs.ofctl(&["dump-flows", "br-int", "table=23"], None).ok()?;
    Some(out.lines().any(|l| l.contains("table=23")))
}

fn spawn_canary(ovs: dvr_realize::OvsInstance, armed: Arc<Mutex<bool>>, tx: Sender<Event>) {
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let is_armed = *armed.lock().unwrap_or_else(|e| e.into_inner());
            if is_armed && canary_present(&ovs) == Some(false) {
                *armed.lock().unwrap_or_else(|e| e.into_inner()) = false;
                if tx.send(Event::OvsRestart).is_err() {
                    return;
                }
            }
        }
    });
}

struct Agent {
    host: String,
    api: Api,
    names: Names,
    ovs: dvr_realize::OvsInstance,
    profile: Profile,
    dry_run: bool,
    status: Arc<Mutex<Status>>,
    /// The last planned state and the fingerprint of its inputs.
    planned: Option<(u64, HostPlan)>,
    /// The model following the server (`None`: rebuilt at the next step).
    model: Option<follow::Model>,
    verify_in_place: bool,
    canary_armed: Arc<Mutex<bool>>,
    /// The emulated lab this host belongs to (instance namespaces live there).
    lab: dvr_realize::Lab,
    /// Instances of this host still plugged on their previous host at the
    /// last step: the agent steps again shortly until they are free.
    waiting: Vec<String>,
    /// Since when each of them has been waiting (for [`TAKEOVER_AFTER`]).
    waiting_since: BTreeMap<String, Instant>,
}

/// How long an agent waits for an instance's previous host to unplug it
/// before taking its namespace over (that host's agent is down or stuck).
const TAKEOVER_AFTER: Duration = Duration::from_secs(5);

/// How often an agent looks again while an instance waits for its previous host.
const WAITING_RETRY: Duration = Duration::from_millis(200);

/// `plan` without the ports named `devs` and the flows that name them.
fn without_ports(plan: &HostPlan, devs: &[String]) -> HostPlan {
    let mut hp = plan.clone();
    for b in &mut hp.bridges {
        b.ports.retain(|p| !devs.contains(&p.name));
        b.flows.retain(|f| {
            let text = f.to_string();
            !devs.iter().any(|d| text.contains(d.as_str()))
        });
    }
    hp
}

/// What plugging did in one step.
#[derive(Default)]
struct Vifs {
    /// Namespaces plugged or unplugged.
    changed: usize,
    /// Instances of this host whose namespace another host still holds (a
    /// re-bound port its old host has not unplugged yet): retried shortly.
    waiting: Vec<String>,
    /// Port UUIDs (hyphenated) whose VIF is plugged here after the step.
    plugged_ports: BTreeSet<String>,
}

impl Agent {
    /// Nova's part in the lab: plug a namespace for each instance bound to
    /// this host that has none, unplug the ones this host plugged that are no
    /// longer bound here (deleted meanwhile, even while the agent was down,
    /// or re-bound). What this host plugged is read from the host itself
    /// (the VIF markers, [`dvr_realize::Lab::plugged_vifs`]): the agent
    /// remembers nothing and never touches a namespace it did not plug.
    fn vifs(&mut self, topo: &Topology, ix: dvr_model::HostIx) -> Result<Vifs> {
        let mine: BTreeMap<&str, &dvr_model::Instance> =
            topo.instances.iter().filter(|x| x.host == ix).map(|x| (x.name.as_str(), x)).collect();
        let mut out = Vifs::default();
        let mut kept = BTreeSet::new();
        for v in self.lab.plugged_vifs(&self.host)? {
            // Still bound here, and to the same port (a port deleted and
            // created again under the same name has another device).
            match mine.get(v.instance.as_str()) {
                Some(x) if topo.port(x.port).device_name() == v.device => {
                    out.plugged_ports.insert(topo.port(x.port).id.hyphenated());
                    kept.insert(v.instance);
                }
                _ => {
                    self.lab.unplug_instance(&v.instance)?;
                    log(&self.host, &format!("unplugged instance {} (no longer bound here)", v.instance));
                    out.changed += 1;
                }
            }
        }
        let mut routes: Option<dvr_plan::Plan> = None;
        let now = Instant::now();
        self.waiting_since.retain(|n, _| mine.contains_key(n.as_str()) && !kept.contains(n));
        for (name, x) in mine.iter().filter(|(n, _)| !kept.contains(**n)) {
            if self.lab.instance_plugged_anywhere(name)? {
                // Plugged, but not by this host: its previous host (a re-bound
                // port) still has it and unplugs it when its agent follows the
                // change. Wait for that; after TAKEOVER_AFTER that agent is
                // down or stuck, and the namespace (named after an instance
                // the server binds here) is taken over.
                let since = *self.waiting_since.entry(name.to_string()).or_insert(now);
                if now.duration_since(since) < TAKEOVER_AFTER {
                    out.waiting.push(name.to_string());
                    continue;
                }
                log(&self.host, &format!("instance {name}: its previous host did not unplug it in {TAKEOVER_AFTER:?}; taking it over"));
                self.lab.unplug_instance(name)?;
            }
            self.waiting_since.remove(*name);
            // The DHCP-pushed host routes come from the qdhcp namespace's plan.
            if routes.is_none() {
                routes = Some(dvr_plan::plan(topo, self.profile)?);
            }
            let plan = routes.as_ref().expect("set above");
            self.lab.plug_instance(topo, x, &plan.dhcp_host_routes(&topo.network(x.network).name))?;
            log(&self.host, &format!("plugged instance {name}"));
            out.plugged_ports.insert(topo.port(x.port).id.hyphenated());
            out.changed += 1;
        }
        Ok(out)
    }

    /// Fetch the state; replan when this host's inputs changed (or `force`);
    /// converge when replanned or `full`. Returns the operations applied.
    fn step(&mut self, why: &str, full: bool) -> Result<usize> {
        let t0 = Instant::now();
        let (rev, spec) = fetch(&self.api)?;
        let t_fetch = t0.elapsed();
        let label = format!("server {} revision {rev}", self.api.base());
        let mut model = self.model.take();
        let followed = follow::follow(&mut model, &label, spec, self.profile)?;
        let model = model.expect("follow leaves a model");
        let t_model = t0.elapsed();
        let topo = model.topology();
        let Some(ix) = topo.hosts.iter().position(|h| h.name == self.host) else {
            bail!("host `{}` is not declared on {} (revision {rev}); register it with POST /v2.0/dvr/hosts", self.host, self.api.base());
        };
        let ix = dvr_model::HostIx(ix);
        let shared = dvr_plan::incremental::Shared::new(topo);
        let fp = dvr_plan::incremental::fingerprint(topo, ix, self.profile, &shared);
        let changed = self.planned.as_ref().is_none_or(|(f, _)| *f != fp);
        if changed {
            self.planned = Some((fp, model.host_plan(ix).clone()));
        }
        let t_plan = t0.elapsed();
        let outcome = self.converge(&model, ix, rev, why, full, changed, (t_fetch, t_model, t_plan, t0), &followed);
        let in_place = matches!(followed.how, follow::How::InPlace(_));
        let check = (self.verify_in_place && in_place).then(|| follow::verify(&model, &label, &self.host, self.profile));
        self.model = Some(model);
        let n = outcome?;
        match check {
            Some(Err(diff)) => {
                log(&self.host, &format!("revision {rev}: in place DIFFERS from a rebuild ({diff}); rebuilding"));
                self.model = None;
                self.planned = None;
                Ok(n + self.step("repair: the in-place model differed from a rebuild", true)?)
            }
            Some(Ok(())) => {
                log(&self.host, &format!("revision {rev}: in place matches a rebuild"));
                Ok(n)
            }
            None => Ok(n),
        }
    }

    /// Plug, converge and report one step (see [`Agent::step`]).
    #[allow(clippy::too_many_arguments)]
    fn converge(
        &mut self,
        model: &follow::Model,
        ix: dvr_model::HostIx,
        rev: i64,
        why: &str,
        full: bool,
        changed: bool,
        (t_fetch, t_model, t_plan, t0): (Duration, Duration, Duration, Instant),
        followed: &follow::Followed,
    ) -> Result<usize> {
        let topo = model.topology();
        let mut n = 0;
        let vifs = if self.dry_run { Vifs::default() } else { self.vifs(topo, ix)? };
        n += vifs.changed;
        let waiting_changed = vifs.waiting != self.waiting;
        self.waiting = vifs.waiting.clone();
        let mut t_obs = t_plan;
        if changed || full || vifs.changed > 0 || waiting_changed {
            let planned = &self.planned.as_ref().expect("set above").1;
            // An instance still held by its previous host has no device here
            // yet: converge without its port (and the flows naming it) now,
            // with it once it is plugged.
            let filtered;
            let hp = if self.waiting.is_empty() {
                planned
            } else {
                let devs: Vec<String> =
                    topo.instances.iter().filter(|x| self.waiting.contains(&x.name)).map(|x| topo.port(x.port).device_name()).collect();
                filtered = without_ports(planned, &devs);
                &filtered
            };
            let obs = host::observe(&self.names, hp, &self.ovs)?;
            let ops = host::diff_observed(&self.names, hp, &obs);
            t_obs = t0.elapsed();
            n += ops.len();
            if self.dry_run {
                for op in host::ordered(&ops) {
                    println!("{op}");
                }
            } else {
                host::apply(&ops, &self.ovs)?;
                *self.canary_armed.lock().unwrap_or_else(|e| e.into_inner()) = true;
            }
        }
        let t_applied = t0.elapsed();
        if !self.dry_run {
            self.port_status(&vifs.plugged_ports)?;
        }
        let total = t_applied;
        {
            let mut st = self.status.lock().unwrap_or_else(|e| e.into_inner());
            st.revision = rev;
            st.last_ops = n;
            st.convergences += 1;
            st.converged_at = Some(crate::agent::chrono_like_now());
        }
        if !changed && !full && n == 0 {
            println!("agent {}: revision {rev}: host unaffected ({why}; fetch {} ms, {followed})", self.host, t_fetch.as_millis());
            return Ok(0);
        }
        println!(
            "agent {}: revision {rev}: {n} operations{} ({why}; {} in {} ms: fetch {} ms, {followed}, host plan {} ms, observe+diff {} ms, apply {} ms)",
            self.host,
            if self.dry_run { " (dry run, not applied)" } else { "" },
            if changed {
                "host replanned"
            } else if full {
                "plan unchanged, full resync"
            } else {
                "host unaffected"
            },
            total.as_millis(),
            t_fetch.as_millis(),
            (t_plan - t_model).as_millis(),
            (t_obs - t_plan).as_millis(),
            (total - t_obs).as_millis(),
        );
        Ok(n)
    }
}

impl Agent {
    /// Neutron's `update_device_up`/`update_device_down`: an instance port
    /// bound to this host is `ACTIVE` once its VIF is plugged here and a
    /// convergence has put its flows in place, `DOWN` otherwise (not plugged
    /// yet, its old host still holding it, unplugged). Each report names this
    /// host, so the server ignores it when the port was re-bound meanwhile.
    fn port_status(&self, plugged: &BTreeSet<String>) -> Result<()> {
        let ports = self.api.get(&format!("/v2.0/ports?binding:host_id={}&fields=id&fields=status&fields=device_owner", self.host))?;
        for p in ports["ports"].as_array().into_iter().flatten() {
            if !p["device_owner"].as_str().is_some_and(|o| o.starts_with("compute:")) {
                continue;
            }
            let id = p["id"].as_str().unwrap_or_default();
            let want = if plugged.contains(id) { "ACTIVE" } else { "DOWN" };
            if p["status"] != want {
                self.api
                    .put(&format!("/v2.0/dvr/ports/{id}/status"), &json!({"port": {"status": want, "host": self.host}}))
                    .with_context(|| format!("setting port {id} {want}"))?;
                log(&self.host, &format!("port {id} {want}"));
            }
        }
        Ok(())
    }
}

/// Run `dvr agent` until killed (or once with `--once`).
pub fn run(args: AgentArgs) -> Result<()> {
    if let Some(ns) = &args.netns {
        dvr_realize::netlink::enter(ns).with_context(|| format!("--netns {ns}: cannot enter it (is the lab up?)"))?;
    }
    let url = args.server.server.clone().context("dvr agent needs --server URL (e.g. http://127.0.0.1:9696)")?;
    let mk_api = || Api::new(&url, args.server.token.clone());
    let mut cfg = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("cannot read agent config {}", p.display()))?;
            serde_yaml_ng::from_str::<ConfigFile>(&text).with_context(|| {
                format!("agent config {}: expected `agent_mode: dvr|dvr_snat` and `bridge_mappings: {{physnet: bridge}}`", p.display())
            })?
        }
        None => ConfigFile::default(),
    };
    for m in &args.bridge_mappings {
        let (net, br) =
            m.split_once(':').with_context(|| format!("--bridge-mapping `{m}`: expected PHYSNET:BRIDGE, e.g. physnet1:br-vlan"))?;
        cfg.bridge_mappings.insert(net.to_string(), br.to_string());
    }
    let mode = args.agent_mode.or(cfg.agent_mode);
    let api = mk_api();
    let lab = dvr_realize::Lab::new(&args.prefix);
    let ovs = lab.ovs(&args.host);
    // Register, retrying while the server is not up yet.
    let mut backoff = Duration::from_millis(100);
    let (dvr_mac, mode) = loop {
        match register(&api, &args.host, mode, &cfg.bridge_mappings) {
            Ok(x) => break x,
            Err(e) if args.once => return Err(e),
            Err(e) => {
                log(&args.host, &format!("cannot register yet: {e:#}"));
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    };
    log(&args.host, &format!("registered: agent_mode {}, DVR MAC {dvr_mac}", mode.as_str()));
    let status = Arc::new(Mutex::new(Status { dvr_mac, ..Status::default() }));
    let mut agent = Agent {
        host: args.host.clone(),
        api,
        names: lab.names.clone(),
        ovs: lab.ovs(&args.host),
        profile: args.profile,
        dry_run: args.dry_run,
        status: status.clone(),
        planned: None,
        model: None,
        verify_in_place: args.verify_in_place,
        canary_armed: Arc::new(Mutex::new(false)),
        lab: dvr_realize::Lab::new(&args.prefix),
        waiting: Vec::new(),
        waiting_since: BTreeMap::new(),
    };
    // First convergence (retried: the server may restart under us).
    loop {
        match agent.step("start", true) {
            Ok(_) => break,
            Err(e) if args.once => return Err(e),
            Err(e) => {
                log(&args.host, &format!("first convergence failed: {e:#}; retrying"));
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
    if args.once {
        let st = status.lock().unwrap_or_else(|e| e.into_inner()).clone();
        return report(&agent.api, &args.host, mode, &cfg.bridge_mappings, &st);
    }
    let (tx, rx) = channel();
    let since = status.lock().unwrap_or_else(|e| e.into_inner()).revision;
    spawn_poller(mk_api(), args.host.clone(), since, tx.clone());
    if !args.dry_run {
        spawn_canary(ovs, agent.canary_armed.clone(), tx);
    }
    {
        let (api, host, st, mappings) = (mk_api(), args.host.clone(), status.clone(), cfg.bridge_mappings.clone());
        std::thread::spawn(move || {
            loop {
                let snapshot = st.lock().unwrap_or_else(|e| e.into_inner()).clone();
                if let Err(e) = report(&api, &host, mode, &mappings, &snapshot) {
                    log(&host, &format!("heartbeat failed: {e:#}"));
                }
                std::thread::sleep(Duration::from_secs(10));
            }
        });
    }
    let mut next_resync = Instant::now() + args.resync_interval;
    loop {
        // While an instance waits for its previous host, step again shortly
        // (a light step: fetch, plug if free, converge only if anything moved).
        let retry = (!agent.waiting.is_empty()).then(|| Instant::now() + WAITING_RETRY);
        let until = retry.map_or(next_resync, |r| r.min(next_resync));
        let first = match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(ev) => Some(ev),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => bail!("the agent's watcher threads stopped"),
        };
        // Coalesce whatever else is queued: one convergence serves them all.
        let mut events: Vec<Event> = first.into_iter().collect();
        events.extend(rx.try_iter());
        let cur = status.lock().unwrap_or_else(|e| e.into_inner()).revision;
        let restart = events.iter().any(|e| matches!(e, Event::OvsRestart));
        let reset = events.iter().any(|e| matches!(e, Event::Reset));
        let newer = events.iter().any(|e| matches!(e, Event::Changed(r) if *r > cur));
        let resync = events.is_empty() && Instant::now() >= next_resync;
        let waiting = events.is_empty() && !resync && !agent.waiting.is_empty();
        if !(restart || reset || newer || resync || waiting) {
            continue;
        }
        let why = if restart {
            "ovs-vswitchd restarted (canary flow gone)"
        } else if reset {
            "server reset"
        } else if newer {
            "change"
        } else if resync {
            "periodic resync"
        } else {
            "instance waiting for its previous host"
        };
        if restart || reset {
            agent.planned = None;
        }
        if reset {
            agent.model = None;
        }
        if let Err(e) = agent.step(why, restart || reset || resync) {
            log(&args.host, &format!("convergence failed ({why}): {e:#}; retrying at the next event or in 1 s"));
            next_resync = Instant::now() + Duration::from_secs(1);
            continue;
        }
        // Report at once, so `GET /v2.0/agents` shows the new revision without
        // waiting for the next heartbeat.
        let st = status.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Err(e) = report(&agent.api, &args.host, mode, &cfg.bridge_mappings, &st) {
            log(&args.host, &format!("report failed: {e:#}"));
        }
        if resync || restart {
            next_resync = Instant::now() + args.resync_interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_duration, without_ports};
    use std::time::Duration;

    #[test]
    fn a_waiting_instance_is_left_out_of_the_converged_plan_and_nothing_else() {
        let topo = dvr_model::seed();
        let x = topo.instances.iter().find(|x| x.name == "vm1").expect("seed has vm1");
        let dev = topo.port(x.port).device_name();
        let plan = dvr_plan::plan_host(&topo, x.host, dvr_plan::Profile::Walkthrough);
        let names =
            |hp: &dvr_plan::HostPlan| -> Vec<String> { hp.bridges.iter().flat_map(|b| b.ports.iter().map(|p| p.name.clone())).collect() };
        let naming = |hp: &dvr_plan::HostPlan| hp.bridges.iter().flat_map(|b| &b.flows).filter(|f| f.to_string().contains(&dev)).count();
        // Positive control: the plan has the port and flows naming it.
        assert!(names(&plan).contains(&dev));
        assert!(naming(&plan) > 0);
        let cut = without_ports(&plan, std::slice::from_ref(&dev));
        assert!(!names(&cut).contains(&dev));
        assert_eq!(naming(&cut), 0);
        assert_eq!(names(&cut).len(), names(&plan).len() - 1);
        assert_eq!(cut.flow_count(), plan.flow_count() - naming(&plan));
        assert_eq!(cut.namespaces.len(), plan.namespaces.len());
    }

    #[test]
    fn durations_parse_with_units_and_refuse_nonsense() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").unwrap_err().contains("e.g. 30s"));
    }
}
