//! `dvr trace` and `dvr demo`: arguments and printing only; tracing,
//! summaries and renderers live in `dvr-sim`.

use crate::{TopologyArg, load};
use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use dvr_model::{Expected, PathSpec, Topology};
use dvr_plan::Profile;
use dvr_sim::demo::{self, Outcome};

/// How to print a trace.
#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
pub enum TraceFormat {
    /// Every hop, explained.
    Text,
    /// Only rewrites, deliveries and drops (stable; like `ovn-trace --minimal`).
    Minimal,
    /// The trace contract's JSON (docs/topology.md).
    Json,
}

/// Transport of the traced packet.
#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
pub enum Proto {
    /// ICMP echo (ping).
    Icmp,
    /// TCP to --dport.
    Tcp,
    /// UDP to --dport.
    Udp,
}

/// Arguments of `dvr trace`.
#[derive(clap::Args)]
pub struct TraceArgs {
    #[command(flatten)]
    topo: TopologyArg,
    /// Instance or external host that sends.
    #[arg(long, value_name = "NAME")]
    from: String,
    /// Destination address (or an endpoint name).
    #[arg(long, value_name = "IPV4")]
    to: String,
    /// Protocol.
    #[arg(long, value_enum, default_value = "icmp")]
    proto: Proto,
    /// Destination port (tcp/udp).
    #[arg(long, default_value_t = 80)]
    dport: u16,
    /// Source port (tcp/udp).
    #[arg(long, default_value_t = 40000)]
    sport: u16,
    /// After the trace, name what decided it under security groups: the rule
    /// (group and rule id) that allowed the packet, or the table that dropped it.
    #[arg(long)]
    explain: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: TraceFormat,
    /// Send from this source IP instead of the endpoint's (anti-spoofing test).
    #[arg(long, value_name = "IPV4")]
    spoof_ip: Option<std::net::Ipv4Addr>,
    /// Send from this MAC instead of the endpoint's (anti-spoofing test).
    #[arg(long, value_name = "MAC")]
    spoof_mac: Option<dvr_model::MacAddr>,
    /// Let the endpoint first talk to the destination under its own addresses, so the
    /// next hop is already in its ARP cache when it starts spoofing (it sends without
    /// ARPing; a spoofed source IP then passes tables 24/25).
    #[arg(long)]
    neighbour_cached: bool,
    /// Neutron behaviour profile (see `dvr plan --help`).
    #[arg(long, default_value = "walkthrough", value_name = "PROFILE")]
    profile: Profile,
    /// Start from empty MAC tables (by default every endpoint has sent one boot-time
    /// broadcast, so switches know where it is, as in a running cloud).
    #[arg(long)]
    cold: bool,
    /// Exit 1 unless the trace ends this way: `delivered` (request and reply),
    /// `dropped` (the request) or `reply-dropped`. The trace is printed either way.
    #[arg(long, value_name = "OUTCOME")]
    expect: Option<Expected>,
    /// Trace across hosts imported from these dump directories (`dvr collect`,
    /// `dvr lab collect` or real-Neutron captures) instead of a planned topology.
    /// `--from` is then an imported instance or an outside IPv4 address on an external subnet.
    #[arg(long, value_name = "DIR", num_args = 1..)]
    dumps: Vec<std::path::PathBuf>,
}

/// Run `dvr trace`.
pub fn run_trace(a: TraceArgs) -> Result<()> {
    let (mut world, from, to_ip) = if a.dumps.is_empty() {
        let t = load(&a.topo)?;
        // Lazy: only the hosts the packet reaches are planned and built.
        dvr_plan::check_supported(&t)?;
        let to_ip = t.resolve_address(&a.to).with_context(|| {
            format!(
                "--to `{}` is neither an IPv4 address nor an instance/external host name; endpoints are: {}",
                a.to,
                t.endpoint_names().join(", ")
            )
        })?;
        (dvr_sim::World::lazy(std::sync::Arc::new(t), a.profile), a.from.clone(), to_ip)
    } else {
        // No topology: the imported endpoints are the names people can give.
        let mut imp = crate::ops::import_dirs(&a.dumps)?;
        let from = match a.from.parse::<std::net::Ipv4Addr>() {
            Ok(ip) if !imp.endpoints.iter().any(|e| e.addr.addr() == ip) => imp.add_outside(ip)?,
            Ok(ip) => imp.endpoints.iter().find(|e| e.addr.addr() == ip).map(|e| e.name.clone()).unwrap_or(a.from.clone()),
            Err(_) => a.from.clone(),
        };
        let to_ip = match a.to.parse::<std::net::Ipv4Addr>() {
            Ok(ip) => {
                imp.add_outside_destination(ip);
                ip
            }
            Err(_) => imp.endpoints.iter().find(|e| e.name == a.to).map(|e| e.addr.addr()).with_context(|| {
                let names: Vec<&str> = imp.endpoints.iter().map(|e| e.name.as_str()).collect();
                format!("--to `{}` is neither an IPv4 address nor an imported endpoint; endpoints are: {}", a.to, names.join(", "))
            })?,
        };
        for n in &imp.notes {
            eprintln!("note: {n}");
        }
        (imp.world(), from, to_ip)
    };
    if !a.cold {
        dvr_sim::warm_up(&mut world);
    }
    let l4 = match a.proto {
        Proto::Icmp => dvr_sim::L4::Icmp { reply: false, id: 1 },
        Proto::Tcp => dvr_sim::L4::Tcp { sport: a.sport, dport: a.dport },
        Proto::Udp => dvr_sim::L4::Udp { sport: a.sport, dport: a.dport },
    };
    let req = dvr_sim::TraceRequest { from, to: to_ip, l4, spoof_ip: a.spoof_ip, spoof_mac: a.spoof_mac };
    if a.neighbour_cached {
        dvr_sim::prime_neighbours(&mut world, &req)?;
    }
    let tr = dvr_sim::trace(&mut world, &req)?;
    // The process ends after printing: freeing a twin of thousands of hosts
    // piece by piece would only delay the exit (the OS reclaims it at once).
    std::mem::forget(world);
    match a.format {
        TraceFormat::Text => print!("{}", dvr_sim::render::text(&tr)),
        TraceFormat::Minimal => print!("{}", dvr_sim::render::minimal(&tr)),
        // --explain adds the firewall's decisions to the one JSON document.
        TraceFormat::Json if a.explain => {
            let mut v: serde_json::Value = serde_json::from_str(&dvr_sim::render::json(&tr))?;
            v["firewall"] = serde_json::to_value(dvr_sim::firewall::decisions(&tr))?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        TraceFormat::Json => println!("{}", dvr_sim::render::json(&tr)),
    }
    if a.explain && a.format != TraceFormat::Json {
        let fw = dvr_sim::firewall::decisions(&tr);
        if fw.is_empty() {
            println!("firewall: no security-group table decided this packet (noop firewall driver, or it never reached a port's tables)");
        } else {
            for d in &fw {
                println!("firewall {d}");
            }
        }
    }
    if let Some(want) = a.expect {
        let got = demo::expected_of(&tr);
        if got != want {
            let reply = tr.reply.as_ref().map_or("none sent".to_string(), |r| r.verdict.to_string());
            bail!("--expect {want}: the trace ended {got} (request {}; reply {reply})", tr.verdict);
        }
    }
    Ok(())
}

/// Arguments of `dvr demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    #[command(flatten)]
    topo: TopologyArg,
    /// How to print each trace.
    #[arg(long, value_enum, default_value = "minimal")]
    format: TraceFormat,
    /// Print only the summary table.
    #[arg(long)]
    summary_only: bool,
    /// Neutron behaviour profile (see `dvr plan --help`).
    #[arg(long, default_value = "walkthrough", value_name = "PROFILE")]
    profile: Profile,
    /// Also write a self-contained HTML report (deployment diagram, each path's
    /// picture, summary row and hop tree, the summary table) to this file.
    #[arg(long, value_name = "FILE")]
    html: Option<std::path::PathBuf>,
}

/// Run `dvr demo`.
pub fn run_demo(a: DemoArgs) -> Result<()> {
    let t = load(&a.topo)?;
    let paths = paths_of(&a.topo, &t)?;
    if paths.is_empty() {
        bail!(
            "no paths to demonstrate: add a `paths:` section to the topology file, e.g.\n  paths:\n    - {{from: vm1, to: vm5, expect: delivered, note: routed across hosts}}\n(see docs/topology.md)"
        );
    }
    let plan = dvr_plan::plan(&t, a.profile)?;
    let mut rows = Vec::new();
    let mut traces = Vec::new();
    let mut json = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        eprintln!("[{}/{}] tracing {} -> {}", i + 1, paths.len(), p.from, p.to);
        let tr = demo::run_path(&t, &plan, p)?;
        if !a.summary_only {
            match a.format {
                TraceFormat::Json => json.push(serde_json::json!({"path": format!("{} -> {}", p.from, p.to), "trace": tr})),
                TraceFormat::Text => {
                    println!("=== {} -> {}: {}\n{}", p.from, p.to, p.note.as_deref().unwrap_or(""), dvr_sim::render::text(&tr))
                }
                TraceFormat::Minimal => {
                    println!("=== {} -> {}: {}\n{}", p.from, p.to, p.note.as_deref().unwrap_or(""), dvr_sim::render::minimal(&tr))
                }
            }
        }
        rows.push(demo::summarise(&t, p, &tr));
        traces.push(tr);
    }
    if a.format == TraceFormat::Json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"traces": json, "summary": rows}))?);
    } else {
        print!("{}", demo::summary_table(&rows));
    }
    if let Some(file) = &a.html {
        let html = dvr_draw::report::html(&t, &plan, &paths, &traces, &rows);
        std::fs::write(file, html).with_context(|| format!("cannot write the HTML report to {}", file.display()))?;
        eprintln!("wrote {}", file.display());
    }
    let unexpected: Vec<String> = paths
        .iter()
        .zip(&rows)
        .filter_map(|(p, r)| {
            let want = p.expect?;
            let got = match (&r.request, &r.reply) {
                (Outcome::Delivered { .. }, Some(Outcome::Delivered { .. })) => Expected::Delivered,
                (Outcome::Delivered { .. }, _) => Expected::ReplyDropped,
                (Outcome::Dropped { .. }, _) => Expected::Dropped,
            };
            (got != want).then(|| format!("{}: expected {want}, got {got}", r.path))
        })
        .collect();
    if !unexpected.is_empty() {
        bail!(
            "{} of {} paths did not end as the topology file's `paths:` expects:\n  {}",
            unexpected.len(),
            rows.len(),
            unexpected.join("\n  ")
        );
    }
    Ok(())
}

/// The paths to demonstrate: the topology's `paths:` section; for one more
/// version, the header comments of the file (`#   FROM -> TO   NOTE`), with
/// a warning, when it has no `paths:`.
pub fn paths_of(arg: &TopologyArg, t: &Topology) -> Result<Vec<PathSpec>> {
    // A live deployment has no paths of its own: take them from -t FILE (or
    // the seed lab's list) and keep those whose endpoints exist there.
    if arg.server.api().is_some() {
        let listed = match &arg.topology {
            Some(f) => dvr_model::load_file(f)?.paths,
            None => dvr_model::seed().paths,
        };
        return Ok(listed.into_iter().filter(|p| t.endpoint_ip(&p.from).is_some() && t.resolve_address(&p.to).is_some()).collect());
    }
    if !t.paths.is_empty() {
        return Ok(t.paths.clone());
    }
    let Some(file) = &arg.topology else { return Ok(vec![]) };
    let yaml = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let old = demo::parse_paths(&yaml);
    if !old.is_empty() {
        eprintln!(
            "warning: {}: demo paths in header comments are deprecated and will not be read by the next version; \
             move them to a `paths:` section (see docs/topology.md), e.g.\n  paths:\n{}",
            file.display(),
            old.iter().map(|p| format!("    - {{from: {}, to: {}, expect: delivered}}", p.from, p.to)).collect::<Vec<_>>().join("\n")
        );
    }
    for p in &old {
        if t.resolve_address(&p.to).is_none() || t.endpoint_ip(&p.from).is_none() {
            bail!(
                "{}: header path {} -> {}: unknown endpoint or address; endpoints are: {}",
                file.display(),
                p.from,
                p.to,
                t.endpoint_names().join(", ")
            );
        }
    }
    Ok(old)
}
