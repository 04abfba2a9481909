//! Micro-benchmark of a router interface attached and detached in place at
//! 1,000 hosts (the `dvr bench --changes-only` row, without the binary):
//! `cargo run --release -p dvr-plan --example iface_change [hosts] [reps] [boot|host]`
//! (`boot`: an instance booted on a host new to its network, and deleted;
//! `host`: a compute host joining and leaving).

use dvr_model::change::Change;
use dvr_model::r#gen::{GenParams, generate};
use dvr_model::live::Live;
use dvr_plan::Profile;
use dvr_plan::incremental::Replanner;
use std::time::Instant;

/// The allocator of the `dvr` binary, so the figures match `dvr bench`'s.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let hosts: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let reps: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let mode = args.next().unwrap_or_default();
    let boot = mode == "boot";
    let mut spec = generate(&GenParams::scale(hosts).with_seed(7));
    spec.networks.push(dvr_model::r#gen::spare_network());
    let topo = dvr_model::build::build("generated", &spec).expect("builds");
    let mut r = Replanner::new(&topo, Profile::Walkthrough);
    let mut live = Live::new(topo);
    let t = live.topology();
    let router = t
        .routers
        .iter()
        .find(|r| r.distributed && r.external_gateway.is_some() && !r.interfaces.is_empty())
        .expect("a distributed router with a gateway")
        .name
        .clone();
    let (add, del) = if mode == "host" {
        (Change::AddHost { name: "bench-host".into(), like: None }, Change::RemoveHost { name: "bench-host".into() })
    } else if boot {
        // As `dvr bench`: the routed network, on the last compute host without it.
        let r = t.routers.iter().find(|r| r.name == router).expect("found");
        let net = t.subnet(r.interfaces[0]).network;
        let on: std::collections::HashSet<_> = t.instances.iter().filter(|x| x.network == net).map(|x| x.host).collect();
        let host = t
            .hosts
            .iter()
            .enumerate()
            .rev()
            .find(|(i, h)| h.role == dvr_model::Role::Compute && !on.contains(&dvr_model::HostIx(*i)))
            .map(|(_, h)| h.name.clone())
            .expect("a host without the network");
        let network = t.network(net).name.clone();
        (Change::AddInstance { name: "bench-new".into(), host, network }, Change::RemoveInstance { name: "bench-new".into() })
    } else {
        (
            Change::AddRouterInterface { router: router.clone(), subnet: "bench-sub".into() },
            Change::RemoveRouterInterface { router, subnet: "bench-sub".into() },
        )
    };
    for _ in 0..reps {
        for (label, c) in [("add", &add), ("remove", &del)] {
            let t0 = Instant::now();
            let a = live.apply(c).expect("applies");
            let model = t0.elapsed();
            let u = r.apply(live.topology(), &a);
            let total = t0.elapsed();
            let flows: (usize, usize) = u.deltas.iter().map(|d| d.flows()).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
            println!(
                "{label:7} total {:7.3} ms  model {:6.3}  plan {:7.3}  delta {:6.3}  hosts {} patched {} edited {} changed {} flows +{} -{}",
                total.as_secs_f64() * 1e3,
                model.as_secs_f64() * 1e3,
                u.plan_time.as_secs_f64() * 1e3,
                u.delta_time.as_secs_f64() * 1e3,
                u.replanned.len(),
                u.patched.len(),
                u.edited.len(),
                u.deltas.len(),
                flows.0,
                flows.1
            );
        }
    }
}
