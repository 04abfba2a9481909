//! `dvr draw`: arguments and file handling only; layout and drawing live in
//! `dvr-draw`.

use crate::{TopologyArg, load};
use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use dvr_draw::Filter;
use dvr_plan::Profile;

/// Picture format.
#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
pub enum DrawFormat {
    /// SVG, laid out by dvr.
    Svg,
    /// Graphviz DOT, for your own tooling (`dot -Tpng`).
    Dot,
}

/// Arguments of `dvr draw`.
#[derive(clap::Args)]
pub struct DrawArgs {
    #[command(flatten)]
    topo: TopologyArg,
    /// Only this host (repeatable); keeps a large deployment readable.
    #[arg(long = "host", value_name = "HOST")]
    hosts: Vec<String>,
    /// Overlay the traced path from endpoint FROM to endpoint or address TO
    /// (and its reply); draws only the hosts it crosses unless --host is given.
    #[arg(long, num_args = 2, value_names = ["FROM", "TO"])]
    trace: Option<Vec<String>>,
    /// Output file (`-` for standard output).
    #[arg(short = 'o', long, value_name = "FILE", default_value = "-")]
    output: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "svg")]
    format: DrawFormat,
    /// Neutron behaviour profile (see `dvr plan --help`).
    #[arg(long, default_value = "walkthrough", value_name = "PROFILE")]
    profile: Profile,
}

/// Run `dvr draw`.
pub fn run(a: DrawArgs) -> Result<()> {
    let t = load(&a.topo)?;
    let plan = dvr_plan::plan(&t, a.profile)?;
    for h in &a.hosts {
        if !plan.hosts.iter().any(|p| &p.host == h && !p.bridges.is_empty()) {
            let names: Vec<&str> = plan.hosts.iter().filter(|p| !p.bridges.is_empty()).map(|p| p.host.as_str()).collect();
            bail!("--host {h}: no host with a dataplane is called `{h}`; hosts are: {}", names.join(", "));
        }
    }
    let traced = match &a.trace {
        None => None,
        Some(v) => {
            let (from, to) = (&v[0], &v[1]);
            let to_ip = t.resolve_address(to).with_context(|| {
                format!(
                    "--trace {from} {to}: `{to}` is neither an IPv4 address nor an endpoint; endpoints are: {}",
                    t.endpoint_names().join(", ")
                )
            })?;
            let mut w = dvr_sim::World::build(&t, &plan);
            dvr_sim::warm_up(&mut w);
            let req = dvr_sim::TraceRequest {
                from: from.clone(),
                to: to_ip,
                l4: dvr_sim::L4::Icmp { reply: false, id: 1 },
                spoof_ip: None,
                spoof_mac: None,
            };
            Some((from.clone(), to.clone(), dvr_sim::trace(&mut w, &req)?))
        }
    };
    let filter = match (&traced, a.hosts.is_empty()) {
        (_, false) => Filter { hosts: Some(a.hosts.clone()) },
        (Some((_, _, tr)), true) => Filter::crossed_by(tr),
        (None, true) => Filter::default(),
    };
    let out = match a.format {
        DrawFormat::Dot => dvr_draw::dot::render(&t, &plan, &filter, traced.as_ref().map(|(_, _, tr)| tr)),
        DrawFormat::Svg => {
            let mut sc = dvr_draw::build_scene(&t, &plan, &filter);
            if let Some((from, to, tr)) = &traced {
                sc.overlay(tr, from, to);
            }
            dvr_draw::svg::render(&sc)
        }
    };
    if a.output == "-" {
        print!("{out}");
    } else {
        std::fs::write(&a.output, out).with_context(|| format!("cannot write {}", a.output))?;
        eprintln!("wrote {}", a.output);
    }
    Ok(())
}
