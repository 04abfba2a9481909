//! `dvr bench`: what planning and tracing cost, and how it grows. Every
//! figure is measured here and printed; nothing is asserted. Peak memory of
//! a plan is measured in a child process per size, so sizes do not mask each
//! other.

use anyhow::{Context, Result};
use dvr_model::change::Change;
use dvr_model::r#gen::{GenParams, generate};
use dvr_plan::Profile;
use dvr_plan::incremental::Replanner;
use dvr_sim::{L4, TraceRequest, World};
use serde::Serialize;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

mod targets;
pub use targets::{Target, targets};

/// Figures of one full plan.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PlanFigures {
    /// Compute hosts.
    pub hosts: usize,
    /// Instances.
    pub vms: usize,
    /// Tenant networks.
    pub networks: usize,
    /// Routers.
    pub routers: usize,
    /// Building the model (validation + allocation), ms.
    pub model_ms: f64,
    /// Planning every host, ms.
    pub plan_ms: f64,
    /// Peak resident memory of the process doing it, MiB.
    pub peak_rss_mib: f64,
    /// Flows in total.
    pub flows_total: usize,
    /// Flows per dataplane host, average.
    pub flows_per_host_avg: f64,
    /// Flows on the busiest host.
    pub flows_per_host_max: usize,
}

/// Figures of one incremental change.
#[derive(Debug, Clone, Serialize)]
pub struct IncrementalFigures {
    /// Change kind.
    pub change: String,
    /// Rebuilding the model from the edited spec, ms.
    pub model_ms: f64,
    /// Fingerprinting every host, ms.
    pub fingerprint_ms: f64,
    /// Replanning the touched hosts, ms.
    pub replan_ms: f64,
    /// Hosts replanned.
    pub hosts_replanned: usize,
    /// Hosts whose plan changed.
    pub hosts_changed: usize,
}

pub use dvr_sim::throughput::TraceMode;

/// Trace throughput.
#[derive(Debug, Clone, Serialize)]
pub struct TraceFigures {
    /// Deployment.
    pub topology: String,
    /// What each trace produced.
    pub mode: TraceMode,
    /// `warm`: one booted twin traces every path again and again (caches and
    /// MAC tables filled after the first round); `cold`: every trace on a
    /// fresh copy of the booted twin (the first packet ARPs and floods),
    /// the copy not timed.
    pub world: &'static str,
    /// Traces (request + reply) per second.
    pub per_second: f64,
    /// Traces run.
    pub traces: usize,
    /// Distinct paths traced in turn.
    pub paths: usize,
    /// Warm only: the untimed-before first round over every path, which
    /// ARPs, learns and (on a lazy twin) plans and builds the hosts the
    /// packets reach; the rate above is measured after it.
    pub first_round_ms: Option<f64>,
}

/// All-pairs reachability, exact, by equivalence classes
/// ([`dvr_sim::allpairs`]).
#[derive(Debug, Clone, Serialize)]
pub struct AllPairsFigures {
    /// Compute hosts.
    pub hosts: usize,
    /// Instances.
    pub vms: usize,
    /// Ordered pairs decided (each a request and its reply).
    pub pairs: u64,
    /// Pairs that reached each other both ways.
    pub reachable: u64,
    /// Endpoint classes.
    pub classes: usize,
    /// Pairs traced (one per pair class).
    pub traced: usize,
    /// Wall time of classifying and tracing, s (the twin built and warmed before).
    pub seconds: f64,
    /// Building and warming the twin, s.
    pub setup_seconds: f64,
    /// Threads used.
    pub threads: usize,
}

/// Our engine against `ovs-appctl ofproto/trace` on the same bridge, like
/// for like: both sides take the same packet through the same flows and
/// answer with an explanation in text.
#[derive(Debug, Clone, Serialize)]
pub struct OvsFigures {
    /// Bridge traced.
    pub bridge: String,
    /// The packet.
    pub packet: String,
    /// ofproto/trace calls per second (unixctl, no process spawn), answer text received.
    pub ovs_per_second: f64,
    /// Our explained bridge trace, text written, per second.
    pub ours_per_second: f64,
    /// ours / ovs.
    pub ratio: f64,
    /// The (table, priority) of each flow matched, as both sides reported it
    /// (checked equal, and both forward or both drop, before timing).
    pub matched: Vec<(u8, u16)>,
}

/// Time and memory of one `dvr` command as a user runs it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct CommandFigures {
    /// The command line (after `dvr`), with the topology file as `FILE`.
    pub command: String,
    /// Compute hosts of the generated deployment `FILE` (0: not recorded).
    #[serde(default)]
    pub hosts: usize,
    /// Wall time, s.
    pub seconds: f64,
    /// Peak resident memory of the command's process (getrusage `ru_maxrss`), MiB.
    pub peak_rss_mib: f64,
    /// What it printed on stdout, MiB.
    pub output_mib: f64,
    /// Exit status 0.
    pub ok: bool,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    /// Machine description.
    pub machine: String,
    /// Full plans per size.
    pub plan: Vec<PlanFigures>,
    /// Incremental changes on the largest size.
    pub incremental: Vec<IncrementalFigures>,
    /// Changes made in place on `dvr gen --hosts N --seed 7` (the largest size).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub live_changes: Vec<LiveChangeFigures>,
    /// Trace throughput.
    pub traces: Vec<TraceFigures>,
    /// All-pairs reachability, per size.
    pub all_pairs: Vec<AllPairsFigures>,
    /// Single commands on the largest generated deployment (time, peak memory).
    pub commands: Vec<CommandFigures>,
    /// Side by side with Open vSwitch.
    pub ovs: Option<OvsFigures>,
    /// Why the OVS comparison did not run, if it did not.
    pub ovs_skipped: Option<String>,
    /// Each target of issue 10 against its figure ([`targets`]).
    pub targets: Vec<Target>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Peak resident set of this process (VmHWM), MiB.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Run `dvr ARGS` and measure it. Done in a child process of its own
/// (`dvr bench --child-measure ARGS`) that has no other children, so
/// `getrusage(RUSAGE_CHILDREN)` there is exactly this command's peak RSS;
/// stdout is read and counted, not kept.
pub fn command_figures(label: &str, args: &[String]) -> Result<CommandFigures> {
    let exe = std::env::current_exe().context("the path of the dvr binary")?;
    let out = std::process::Command::new(exe)
        .arg("bench")
        .arg("--child-measure")
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running the measuring child")?;
    let mut f: CommandFigures = serde_json::from_slice(&out.stdout).context("reading the measuring child's figures")?;
    f.command = label.to_string();
    Ok(f)
}

/// The measuring child of [`command_figures`]: run `dvr ARGS`, drain its
/// stdout, wait, and report the figures.
pub fn measure_child(args: &[String]) -> Result<CommandFigures> {
    use std::io::Read;
    let exe = std::env::current_exe().context("the path of the dvr binary")?;
    let t0 = Instant::now();
    let mut child = std::process::Command::new(exe)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting the measured command")?;
    let mut stdout = child.stdout.take().context("the command's stdout")?;
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = stdout.read(&mut buf)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
    }
    let status = child.wait()?;
    let seconds = t0.elapsed().as_secs_f64();
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)?;
    Ok(CommandFigures {
        command: args.join(" "),
        hosts: 0,
        seconds,
        // Linux reports ru_maxrss in KiB.
        peak_rss_mib: usage.max_rss() as f64 / 1024.0,
        output_mib: bytes as f64 / (1024.0 * 1024.0),
        ok: status.success(),
    })
}

/// The commands measured on a generated deployment written to `file`: the
/// ones an operator runs on the whole cloud (`validate`, one host's `plan`, a
/// `trace`), and the whole plan as text and JSON, whose memory grows with its
/// output.
pub fn commands(file: &str, paths: &[dvr_model::PathSpec], hosts: usize) -> Vec<(String, Vec<String>)> {
    let mut out = vec![
        ("validate -t FILE".to_string(), vec!["validate", "-t", file]),
        ("plan -t FILE --host compute1".to_string(), vec!["plan", "-t", file, "--host", "compute1"]),
        ("plan -t FILE --host compute1 --format json".to_string(), vec!["plan", "-t", file, "--host", "compute1", "--format", "json"]),
    ];
    if hosts <= STREAM_ABOVE_HOSTS {
        out.push(("plan -t FILE (every host, text)".to_string(), vec!["plan", "-t", file]));
        out.push(("plan -t FILE --format json (every host)".to_string(), vec!["plan", "-t", file, "--format", "json"]));
    }
    if let Some(p) = paths.iter().find(|p| p.note.as_deref().is_some_and(|n| n.contains("different hosts"))).or(paths.first()) {
        let label = format!("trace -t FILE --from {} --to {}", p.from, p.to);
        out.push((label, vec!["trace", "-t", file, "--from", &p.from, "--to", &p.to]));
    }
    out.into_iter().map(|(l, a)| (l, a.into_iter().map(String::from).collect())).collect()
}

/// Beyond this many hosts the bench plans host by host (the whole plan is
/// never in memory), traces on a lazy twin, and skips the whole-plan
/// commands (their output grows with hosts²: tens of gigabytes at 10,000).
pub const STREAM_ABOVE_HOSTS: usize = 1_000;

/// Build and plan a generated deployment of `hosts` compute hosts (run in a
/// child); beyond [`STREAM_ABOVE_HOSTS`] host by host.
pub fn plan_figures(hosts: usize) -> Result<PlanFigures> {
    let p = GenParams::scale(hosts);
    let spec = generate(&p);
    let t0 = Instant::now();
    let topo = dvr_model::build::build("generated", &spec).map_err(|e| anyhow::anyhow!("{e}"))?;
    let model = t0.elapsed();
    let t1 = Instant::now();
    let per_host: Vec<usize> = if hosts > STREAM_ABOVE_HOSTS {
        // Host by host (as `dvr plan` streams): the whole plan of 10,000
        // hosts, a DVR-MAC flow per other host on each, does not fit in memory.
        dvr_plan::check_supported(&topo)?;
        let cache = dvr_plan::ctx::FlowCache::for_fixed_topology();
        topo.hosts_ix()
            .map(|(ix, _)| dvr_plan::plan_host_shared(&topo, ix, Profile::Walkthrough, &cache).flow_count())
            .filter(|&n| n > 0)
            .collect()
    } else {
        let plan = dvr_plan::plan(&topo, Profile::Walkthrough)?;
        plan.hosts.iter().filter(|h| !h.bridges.is_empty()).map(|h| h.flow_count()).collect()
    };
    let planned = t1.elapsed();
    let total: usize = per_host.iter().sum();
    Ok(PlanFigures {
        hosts,
        vms: p.vms,
        networks: p.networks,
        routers: p.routers,
        model_ms: ms(model),
        plan_ms: ms(planned),
        peak_rss_mib: peak_rss_mib(),
        flows_total: total,
        flows_per_host_avg: total as f64 / per_host.len().max(1) as f64,
        flows_per_host_max: per_host.iter().copied().max().unwrap_or(0),
    })
}

/// Incremental changes on a generated deployment.
pub fn incremental_figures(hosts: usize) -> Result<Vec<IncrementalFigures>> {
    let p = GenParams::scale(hosts);
    let mut spec = generate(&p);
    let topo = dvr_model::build::build("generated", &spec).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut r = Replanner::new(&topo, Profile::Walkthrough);
    let host = spec.hosts.iter().rev().find(|h| h.role == dvr_model::Role::Compute).map(|h| h.name.clone()).context("a compute host")?;
    let routed = spec.routers.first().and_then(|r| r.interfaces.first()).cloned().context("a router interface")?;
    let routed_net =
        spec.networks.iter().find(|n| n.subnets.iter().any(|s| s.name == routed)).map(|n| n.name.clone()).context("network")?;
    let with_fip: std::collections::BTreeSet<String> = spec.floating_ips.iter().filter_map(|f| f.instance.clone()).collect();
    let fip_target = spec.instances.iter().find(|x| x.network == routed_net && !with_fip.contains(&x.name)).map(|x| x.name.clone());
    let mut changes = vec![
        Change::AddInstance { name: "bench-new".into(), host: host.clone(), network: routed_net.clone() },
        Change::RemoveInstance { name: "bench-new".into() },
    ];
    if let Some(x) = fip_target {
        changes.push(Change::AssociateFloatingIp { ip: None, instance: x });
    }
    // A fresh network attached to the first router.
    spec.networks.push(dvr_model::r#gen::spare_network());
    let topo = dvr_model::build::build("generated", &spec).map_err(|e| anyhow::anyhow!("{e}"))?;
    r.update(&topo);
    changes.push(Change::AddRouterInterface { router: spec.routers[0].name.clone(), subnet: "bench-sub".into() });
    let mut out = Vec::new();
    for c in changes {
        c.apply(&mut spec).map_err(anyhow::Error::msg)?;
        let t0 = Instant::now();
        let topo = dvr_model::build::build("generated", &spec).map_err(|e| anyhow::anyhow!("{}: {e}", c.kind()))?;
        let model = t0.elapsed();
        let u = r.update(&topo);
        out.push(IncrementalFigures {
            change: c.kind().into(),
            model_ms: ms(model),
            fingerprint_ms: ms(u.fingerprint_time),
            replan_ms: ms(u.plan_time),
            hosts_replanned: u.replanned.len(),
            hosts_changed: u.changed.len(),
        });
    }
    Ok(out)
}

/// The requests of the topology's `paths:`. Beyond [`STREAM_ABOVE_HOSTS`]
/// hosts, only paths between instances: an ARP broadcast on the external
/// network reaches every compute host's fip namespace, and a lazy twin
/// builds them all (not yet bounded; see the bench's notes).
fn requests(topo: &dvr_model::Topology) -> Vec<TraceRequest> {
    let large = topo.hosts.len() > STREAM_ABOVE_HOSTS;
    let outside: std::collections::BTreeSet<Ipv4Addr> =
        topo.external_hosts.iter().map(|e| e.ip).chain(topo.floating_ips.iter().map(|f| f.ip)).collect();
    topo.paths
        .iter()
        .filter_map(|p| {
            let to = topo.resolve_address(&p.to)?;
            if large && (outside.contains(&to) || topo.external_hosts.iter().any(|e| e.name == p.from)) {
                return None;
            }
            Some(TraceRequest { from: p.from.clone(), to, l4: L4::Icmp { reply: false, id: 1 }, spoof_ip: None, spoof_mac: None })
        })
        .collect()
}

/// Traces per second over the topology's `paths:`, for `budget`, in one
/// mode on a warm or a cold twin (see [`TraceFigures::world`]).
pub fn trace_figures(name: &str, topo: &dvr_model::Topology, mode: TraceMode, cold: bool, budget: Duration) -> Result<TraceFigures> {
    let mut base = if topo.hosts.len() > STREAM_ABOVE_HOSTS {
        dvr_plan::check_supported(topo)?;
        World::lazy(std::sync::Arc::new(topo.clone()), Profile::Walkthrough)
    } else {
        World::build(topo, &dvr_plan::plan(topo, Profile::Walkthrough)?)
    };
    dvr_sim::warm_up(&mut base);
    let reqs = requests(topo);
    anyhow::ensure!(!reqs.is_empty(), "no paths listed in {name}");
    let t = dvr_sim::throughput::time_traces(&base, &reqs, mode, cold, budget)?;
    Ok(TraceFigures {
        topology: name.into(),
        mode,
        world: if cold { "cold" } else { "warm" },
        per_second: t.traces as f64 / t.spent.as_secs_f64(),
        traces: t.traces,
        paths: reqs.len(),
        first_round_ms: t.first_round.map(ms),
    })
}

/// Every ordered pair of instances of a generated deployment of `hosts`
/// compute hosts, request and reply, exact, by equivalence classes.
pub fn all_pairs(hosts: usize, threads: usize) -> Result<AllPairsFigures> {
    let p = GenParams::scale(hosts);
    let t0 = Instant::now();
    let topo = dvr_model::build::build("generated", &generate(&p)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let plan = dvr_plan::plan(&topo, Profile::Walkthrough)?;
    let mut world = World::build(&topo, &plan);
    drop(plan);
    dvr_sim::warm_up(&mut world);
    let setup = t0.elapsed();
    let t1 = Instant::now();
    let classes = dvr_sim::allpairs::Classes::new(&topo);
    let m = dvr_sim::allpairs::by_classes(&topo, &world, classes, threads);
    Ok(AllPairsFigures {
        hosts,
        vms: topo.instances.len(),
        pairs: m.pairs,
        reachable: m.reachable,
        classes: m.classes.classes.len(),
        traced: m.traced,
        seconds: t1.elapsed().as_secs_f64(),
        setup_seconds: setup.as_secs_f64(),
        threads,
    })
}

/// The (table, priority) of each flow an `ofproto/trace` answer lists
/// (` 0. in_port=…, priority 10, cookie …`), and whether its datapath
/// actions drop.
pub fn ofproto_matched(answer: &str) -> (Vec<(u8, u16)>, bool) {
    let mut matched = Vec::new();
    let mut drops = false;
    for line in answer.lines() {
        let l = line.trim_start();
        if let Some(rest) = l.strip_prefix("Datapath actions:") {
            drops = rest.trim() == "drop";
            continue;
        }
        let Some((table, rest)) = l.split_once(". ") else { continue };
        let (Ok(table), Some(prio)) = (table.parse::<u8>(), rest.split("priority ").nth(1)) else { continue };
        if let Ok(prio) = prio.split(|c: char| !c.is_ascii_digit()).next().unwrap_or_default().parse::<u16>() {
            matched.push((table, prio));
        }
    }
    (matched, drops)
}

/// The same packet traced `n` times by real OVS (`ofproto/trace` over
/// unixctl) and by our engine, on compute1's br-int of the seed lab. Like
/// for like: our side is an explained bridge trace with its text
/// ([`dvr_sim::trace::trace_bridge`]), and both sides must match the same
/// flows and agree on forwarding before anything is timed.
pub fn ovs_figures(n: usize) -> Result<OvsFigures> {
    use dvr_realize::{OvsInstance, unixctl::Unixctl};
    let topo = dvr_model::seed();
    let plan = dvr_plan::plan(&topo, Profile::Walkthrough)?;
    let host = plan.host("compute1").context("compute1")?;
    let bridge = host.bridge("br-int").context("br-int")?;
    let dir = std::env::temp_dir().join(format!("dvr-bench-ovs-{}", std::process::id()));
    let ovs = OvsInstance::start(&format!("dvrbench-{}", std::process::id()), &dir)?;
    ovs.add_bridge(bridge)?;
    ovs.ofctl(&["add-flows", &bridge.name, "-"], Some(&dvr_plan::render::flows_text(bridge)))?;
    let vm1 = topo.port(topo.instances[0].port);
    let qvo = vm1.device_name();
    // vm1's ARP for its gateway: tables 0 → 24 → 25 → 60 NORMAL.
    let flow = format!(
        "arp,in_port={qvo},dl_src={},dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1,arp_spa={},arp_tpa=192.168.1.1,arp_sha={},arp_tha=00:00:00:00:00:00",
        vm1.mac, vm1.ip, vm1.mac
    );
    let mut ctl = Unixctl::connect(&ovs)?;
    let answer = ctl.call("ofproto/trace", &[&bridge.name, &flow]).map_err(anyhow::Error::msg)?;
    let ports = bridge.ports.iter().map(|p| dvr_sim::ofp::OfPort { name: p.name.as_str().into(), tag: p.tag }).collect();
    let mut br = dvr_sim::ofp::OfBridge::from_shared(&bridge.name, ports, &bridge.flows);
    br.kind = Some(bridge.kind);
    let in_port = br.port(&qvo).context("qvo port")?;
    let frame = dvr_sim::packet::Frame {
        src: vm1.mac,
        dst: dvr_model::MacAddr::BROADCAST,
        vlan: None,
        payload: dvr_sim::packet::Payload::Arp {
            op: 1,
            sha: vm1.mac,
            spa: vm1.ip,
            tha: dvr_model::MacAddr::ZERO,
            tpa: Ipv4Addr::new(192, 168, 1, 1),
        },
    };
    let ours = dvr_sim::trace::trace_bridge("compute1", &mut br, in_port, frame);
    let (theirs, ovs_drops) = ofproto_matched(&answer);
    anyhow::ensure!(
        theirs == ours.matched() && ovs_drops == ours.outputs.is_empty(),
        "ofproto/trace and the twin disagree on {flow}:\n--- ofproto/trace\n{answer}\n--- twin\n{}",
        ours.text
    );
    let t0 = Instant::now();
    for _ in 0..n {
        std::hint::black_box(ctl.call("ofproto/trace", &[&bridge.name, &flow]).map_err(anyhow::Error::msg)?);
    }
    let ovs_rate = n as f64 / t0.elapsed().as_secs_f64();
    let m = n * 20;
    let t1 = Instant::now();
    for _ in 0..m {
        std::hint::black_box(dvr_sim::trace::trace_bridge("compute1", &mut br, in_port, frame).text);
    }
    let ours_rate = m as f64 / t1.elapsed().as_secs_f64();
    drop(ovs);
    Ok(OvsFigures {
        bridge: format!("compute1 {}", bridge.name),
        packet: flow,
        ovs_per_second: ovs_rate,
        ours_per_second: ours_rate,
        ratio: ours_rate / ovs_rate,
        matched: ours.matched(),
    })
}

/// A readable table of the report.
pub fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "dvr bench on {}\n", r.machine);
    let _ = writeln!(o, "FULL PLAN (generated: 20 VMs per host, 1 network per 2 hosts, 1 router per 4 hosts)");
    let _ = writeln!(
        o,
        "{:>6} {:>7} {:>5} {:>5} {:>10} {:>10} {:>9} {:>11} {:>9} {:>9}",
        "hosts", "vms", "nets", "rtrs", "model ms", "plan ms", "peak MiB", "flows", "flows/h", "max/h"
    );
    for p in &r.plan {
        let _ = writeln!(
            o,
            "{:>6} {:>7} {:>5} {:>5} {:>10.1} {:>10.1} {:>9.1} {:>11} {:>9.0} {:>9}",
            p.hosts,
            p.vms,
            p.networks,
            p.routers,
            p.model_ms,
            p.plan_ms,
            p.peak_rss_mib,
            p.flows_total,
            p.flows_per_host_avg,
            p.flows_per_host_max
        );
    }
    if !r.incremental.is_empty() {
        let _ = writeln!(o, "\nINCREMENTAL (largest size; model rebuilt from the edited file, then only touched hosts replanned)");
        let _ = writeln!(
            o,
            "{:<24} {:>10} {:>14} {:>10} {:>10} {:>8}",
            "change", "model ms", "fingerprint ms", "replan ms", "replanned", "changed"
        );
        for i in &r.incremental {
            let _ = writeln!(
                o,
                "{:<24} {:>10.2} {:>14.3} {:>10.3} {:>10} {:>8}",
                i.change, i.model_ms, i.fingerprint_ms, i.replan_ms, i.hosts_replanned, i.hosts_changed
            );
        }
    }
    render_live_changes(&mut o, &r.live_changes);
    if !r.traces.is_empty() {
        let _ = writeln!(
            o,
            "\nTRACES (request + reply, paths listed in the topology file; reach = verdicts only, trace = every hop \
             recorded, trace+text = rendered as `dvr trace` prints it; warm = one twin, cold = a fresh copy of the booted \
             twin per trace, copy not timed)"
        );
        for t in &r.traces {
            let _ = writeln!(
                o,
                "{:<28} {:<10} {:<4} {:>12.0} traces/s  ({} traces over {} paths{})",
                t.topology,
                t.mode.label(),
                t.world,
                t.per_second,
                t.traces,
                t.paths,
                t.first_round_ms.map(|f| format!("; first round {f:.0} ms")).unwrap_or_default()
            );
        }
    }
    if !r.all_pairs.is_empty() {
        let _ = writeln!(o, "\nALL PAIRS (exact, one trace per equivalence class of pairs; twin built and warmed before)");
        let _ = writeln!(
            o,
            "{:>6} {:>7} {:>12} {:>12} {:>8} {:>8} {:>9} {:>9} {:>8}",
            "hosts", "vms", "pairs", "reachable", "classes", "traced", "seconds", "setup s", "threads"
        );
        for a in &r.all_pairs {
            let _ = writeln!(
                o,
                "{:>6} {:>7} {:>12} {:>12} {:>8} {:>8} {:>9.2} {:>9.2} {:>8}",
                a.hosts, a.vms, a.pairs, a.reachable, a.classes, a.traced, a.seconds, a.setup_seconds, a.threads
            );
        }
    }
    if !r.commands.is_empty() {
        let _ = writeln!(o, "\nCOMMANDS (FILE = dvr gen --hosts HOSTS; each a child process; peak RSS from getrusage)");
        let _ = writeln!(o, "{:>6} {:<52} {:>9} {:>9} {:>10}", "hosts", "command", "seconds", "peak MiB", "stdout MiB");
        for c in &r.commands {
            let failed = if c.ok { "" } else { "  (FAILED)" };
            let _ =
                writeln!(o, "{:>6} {:<52} {:>9.3} {:>9.1} {:>10.2}{failed}", c.hosts, c.command, c.seconds, c.peak_rss_mib, c.output_mib);
        }
    }
    match (&r.ovs, &r.ovs_skipped) {
        (Some(v), _) => {
            let matched: Vec<String> = v.matched.iter().map(|(t, p)| format!("{t}/{p}")).collect();
            let _ = writeln!(
                o,
                "\nVS OPEN VSWITCH ({}, the same packet through the same flows, both answering with an explained trace \
                 in text; both matched table/priority {}): ofproto/trace {:.0}/s, ours {:.0}/s, ratio {:.0}x",
                v.bridge,
                matched.join(" → "),
                v.ovs_per_second,
                v.ours_per_second,
                v.ratio
            );
        }
        (None, Some(why)) => {
            let _ = writeln!(o, "\nVS OPEN VSWITCH: skipped ({why})");
        }
        _ => {}
    }
    targets::render(&mut o, &r.targets);
    o
}

// ------------------------------------------------------------ live changes

/// One change made in place ([`dvr_model::live::Live`]) and replanned from
/// the hosts it names, end to end: model edit, replan, per-host deltas.
#[derive(Debug, Clone, Serialize)]
pub struct LiveChangeFigures {
    /// What was changed.
    pub change: String,
    /// Edited in place (`false`: rebuilt from the pinned file).
    pub in_place: bool,
    /// Editing the model (validation, allocation, indices), ms.
    pub model_ms: f64,
    /// Replanning the touched hosts (and fingerprinting, for a rebuilt change), ms.
    pub replan_ms: f64,
    /// Computing the per-host deltas, ms.
    pub delta_ms: f64,
    /// All of it, ms.
    pub total_ms: f64,
    /// The target for this kind of change, ms.
    pub target_ms: Option<f64>,
    /// Hosts replanned.
    pub hosts_replanned: usize,
    /// Hosts whose plan changed (with a delta).
    pub hosts_changed: usize,
    /// Flows added / deleted over all deltas.
    pub flows: (usize, usize),
    /// Other items (ports, namespace items) added / deleted over all deltas.
    pub items: (usize, usize),
}

/// Changes made in place on `dvr gen --hosts HOSTS --seed SEED`, each timed
/// end to end: boot and delete an instance, associate, disassociate and move
/// a floating IP, add and remove a router interface, add and remove a host. Targets
/// (issue 10): < 1 ms for a port or instance change, < 5 ms for a router
/// interface; measured, never asserted.
pub fn live_change_figures(hosts: usize, seed: u64) -> Result<Vec<LiveChangeFigures>> {
    use dvr_model::live::Live;
    let mut spec = generate(&GenParams::scale(hosts).with_seed(seed));
    // A fresh network the first router can be attached to.
    spec.networks.push(dvr_model::r#gen::spare_network());
    let topo = dvr_model::build::build("generated", &spec).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut r = Replanner::new(&topo, Profile::Walkthrough);
    let mut live = Live::new(topo);
    let t = live.topology();
    let host = t.hosts.iter().rev().find(|h| h.role == dvr_model::Role::Compute).map(|h| h.name.clone()).context("a compute host")?;
    // A network behind a distributed router with a gateway, so the instance has
    // router copies to update and can take a floating IP.
    let routed = t
        .routers
        .iter()
        .find(|r| r.distributed && r.external_gateway.is_some() && !r.interfaces.is_empty())
        .context("a distributed router with a gateway")?;
    let router = routed.name.clone();
    let routed_net = t.network(t.subnet(routed.interfaces[0]).network).name.clone();
    // A host that already has a port on that network: the common case, where
    // booting adds no network (and no local VLAN) to the host.
    let net_ix = t.subnet(routed.interfaces[0]).network;
    let busy = t
        .instances
        .iter()
        .filter(|x| x.network == net_ix)
        .map(|x| t.host(x.host).name.clone())
        .next_back()
        .context("an instance on the routed network")?;
    // And one that has none (booting there adds a network and a router copy).
    let on_net: std::collections::HashSet<dvr_model::HostIx> = t.instances.iter().filter(|x| x.network == net_ix).map(|x| x.host).collect();
    let host = t
        .hosts
        .iter()
        .enumerate()
        .rev()
        .find(|(i, h)| h.role == dvr_model::Role::Compute && !on_net.contains(&dvr_model::HostIx(*i)))
        .map(|(_, h)| h.name.clone())
        .unwrap_or(host);
    // An instance behind a router with a gateway and without a floating IP.
    let with_fip: std::collections::HashSet<usize> = t.floating_ips.iter().filter_map(|f| f.association.map(|(x, _)| x.0)).collect();
    let fip_owner_free = t
        .instances
        .iter()
        .enumerate()
        .find(|(i, x)| {
            !with_fip.contains(i)
                && t.routers_on_subnet(t.port(x.port).subnet).any(|r| t.router(r).distributed && t.router(r).external_gateway.is_some())
        })
        .map(|(_, x)| x.name.clone())
        .context("an instance that can take a floating IP")?;
    // Each change with the one that undoes it, repeated: the machine is shared,
    // so every row is the run with the median total of its repetitions.
    let pairs: Vec<(Step, Step, usize)> = vec![
        (
            ("boot instance", Change::AddInstance { name: "bench-vm".into(), host: busy, network: routed_net.clone() }, Some(1.0)),
            ("delete instance", Change::RemoveInstance { name: "bench-vm".into() }, Some(1.0)),
            9,
        ),
        (
            (
                "boot instance, new net on host",
                Change::AddInstance { name: "bench-new".into(), host: host.clone(), network: routed_net.clone() },
                Some(1.0),
            ),
            ("delete it (net leaves host)", Change::RemoveInstance { name: "bench-new".into() }, Some(1.0)),
            9,
        ),
        (
            ("associate floating IP", Change::AssociateFloatingIp { ip: None, instance: fip_owner_free.clone() }, Some(1.0)),
            // The address is known once associated; filled in below.
            ("disassociate floating IP", Change::DisassociateFloatingIp { ip: Ipv4Addr::UNSPECIFIED }, Some(1.0)),
            9,
        ),
        (
            ("add router interface", Change::AddRouterInterface { router: router.clone(), subnet: "bench-sub".into() }, Some(5.0)),
            ("remove router interface", Change::RemoveRouterInterface { router, subnet: "bench-sub".into() }, Some(5.0)),
            3,
        ),
        (
            ("add host", Change::AddHost { name: "bench-host".into(), like: None }, None),
            ("remove host", Change::RemoveHost { name: "bench-host".into() }, None),
            3,
        ),
    ];
    let mut out = Vec::new();
    for ((label, change, target), (undo_label, undo, undo_target), reps) in pairs {
        let (mut done, mut undone) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            done.push(time_change(&mut live, &mut r, label, &change, target)?);
            let mut undo = undo.clone();
            if let Change::DisassociateFloatingIp { ip } = &mut undo {
                let x = live.topology().instances.iter().position(|x| x.name == fip_owner_free).context("the instance")?;
                *ip = live.topology().floating_ips.iter().find(|f| f.association.is_some_and(|(i, _)| i.0 == x)).context("its FIP")?.ip;
            }
            undone.push(time_change(&mut live, &mut r, undo_label, &undo, undo_target)?);
        }
        out.push(median(done));
        out.push(median(undone));
    }
    // Moving a floating IP is one disassociation and one association.
    if let (Some(a), Some(d)) =
        (out.iter().find(|f| f.change == "associate floating IP"), out.iter().find(|f| f.change == "disassociate floating IP"))
    {
        let mut m = a.clone();
        m.change = "move floating IP (the two)".into();
        m.model_ms += d.model_ms;
        m.replan_ms += d.replan_ms;
        m.delta_ms += d.delta_ms;
        m.total_ms += d.total_ms;
        m.hosts_replanned += d.hosts_replanned;
        m.hosts_changed += d.hosts_changed;
        m.flows = (m.flows.0 + d.flows.0, m.flows.1 + d.flows.1);
        m.items = (m.items.0 + d.items.0, m.items.1 + d.items.1);
        let at = out.iter().position(|f| f.change == "disassociate floating IP").expect("found") + 1;
        out.insert(at, m);
    }
    Ok(out)
}

/// A change to time: its label, the change, its target in ms.
type Step<'a> = (&'a str, Change, Option<f64>);

/// The run with the median total.
fn median(mut runs: Vec<LiveChangeFigures>) -> LiveChangeFigures {
    runs.sort_by(|a, b| a.total_ms.total_cmp(&b.total_ms));
    runs.swap_remove(runs.len() / 2)
}

/// Apply one change in place and bring the plan up to date, timed.
fn time_change(
    live: &mut dvr_model::live::Live,
    r: &mut Replanner,
    label: &str,
    c: &Change,
    target_ms: Option<f64>,
) -> Result<LiveChangeFigures> {
    let t0 = Instant::now();
    let a = live.apply(c).map_err(|e| anyhow::anyhow!("{label}: {e}"))?;
    let model = t0.elapsed();
    let u = r.apply(live.topology(), &a);
    let mut f = LiveChangeFigures {
        change: label.into(),
        in_place: !a.rebuilt,
        model_ms: ms(model),
        replan_ms: ms(u.fingerprint_time + u.plan_time),
        delta_ms: ms(u.delta_time),
        total_ms: ms(model + u.fingerprint_time + u.plan_time + u.delta_time),
        target_ms,
        hosts_replanned: u.replanned.len(),
        hosts_changed: u.deltas.len(),
        flows: (0, 0),
        items: (0, 0),
    };
    for d in &u.deltas {
        let (fa, fd) = d.flows();
        f.flows.0 += fa;
        f.flows.1 += fd;
        f.items.0 += d.add.len() - fa;
        f.items.1 += d.delete.len() - fd;
    }
    Ok(f)
}

fn render_live_changes(o: &mut String, live: &[LiveChangeFigures]) {
    use std::fmt::Write;
    if live.is_empty() {
        return;
    }
    let _ =
        writeln!(o, "\nCHANGES IN PLACE (dvr gen --seed 7, largest size; model edited in place, touched hosts replanned, per-host deltas)");
    let _ = writeln!(
        o,
        "{:<30} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>13} {:>13}  target",
        "change", "how", "model ms", "replan ms", "delta ms", "total ms", "replanned", "changed", "flows +/-", "items +/-"
    );
    for f in live {
        let target = match f.target_ms {
            Some(t) if f.total_ms < t => format!("< {t} ms: met"),
            Some(t) => format!("< {t} ms: NOT met"),
            None => "-".into(),
        };
        let _ = writeln!(
            o,
            "{:<30} {:>8} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9} {:>8} {:>13} {:>13}  {target}",
            f.change,
            if f.in_place { "in place" } else { "rebuilt" },
            f.model_ms,
            f.replan_ms,
            f.delta_ms,
            f.total_ms,
            f.hosts_replanned,
            f.hosts_changed,
            format!("{}/{}", f.flows.0, f.flows.1),
            format!("{}/{}", f.items.0, f.items.1)
        );
    }
}

/// The report of `dvr bench --changes-only`.
pub fn render_changes_only(r: &Report) -> String {
    let mut o = format!("dvr bench on {}\n", r.machine);
    render_live_changes(&mut o, &r.live_changes);
    o
}
