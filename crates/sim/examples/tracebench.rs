//! Micro-benchmark of explained traces on the seed lab, cheaper to build
//! than `dvr bench` (the figures of record live there): traces per second
//! over the seed lab's `paths:` on a warm twin (hops recorded, and with
//! text rendered) and on a fresh copy of a warmed twin per trace (cold).
//!
//! `cargo run --release -p dvr-sim --example tracebench [SECONDS] [reach,trace,text,cold]`

use dvr_sim::throughput::{TraceMode, time_traces};
use dvr_sim::{L4, TraceRequest, World};
use std::time::Duration;

fn main() {
    let secs: f64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let topo = dvr_model::seed();
    let plan = dvr_plan::plan(&topo, dvr_plan::Profile::Walkthrough).expect("plan");
    let mut base = World::build(&topo, &plan);
    dvr_sim::warm_up(&mut base);
    let reqs: Vec<TraceRequest> = topo
        .paths
        .iter()
        .filter_map(|p| {
            let to = topo.resolve_address(&p.to)?;
            Some(TraceRequest { from: p.from.clone(), to, l4: L4::Icmp { reply: false, id: 1 }, spoof_ip: None, spoof_mac: None })
        })
        .collect();
    // An optional second argument picks modes (`trace,text`; `cold` is text on a cold twin).
    let only = std::env::args().nth(2).unwrap_or_default();
    for (mode, cold) in [(TraceMode::Reach, false), (TraceMode::Trace, false), (TraceMode::Text, false), (TraceMode::Text, true)] {
        let key = if cold { "cold" } else { mode.label() };
        if !only.is_empty() && !only.split(',').any(|m| m == key || (m == "text" && key == "trace+text")) {
            continue;
        }
        let cpu0 = on_cpu();
        let t = time_traces(&base, &reqs, mode, cold, Duration::from_secs_f64(secs)).expect("trace");
        let world = if cold { "cold" } else { "warm" };
        let cpu = on_cpu() - cpu0;
        // On a shared machine wall time counts other processes' turns: the
        // CPU time this thread ran is the steadier figure (warm runs only;
        // a cold run's CPU time includes copying the twin, and a warm one's
        // the untimed first round).
        let per_cpu = if cold { String::new() } else { format!(", {:9.0} per CPU second", t.traces as f64 / cpu) };
        let n = t.traces;
        println!(
            "{:10} {world}: {:9.0} traces/s{per_cpu} ({n} traces, {} paths)",
            mode.label(),
            n as f64 / t.spent.as_secs_f64(),
            reqs.len()
        );
    }
}

/// Seconds this thread has run on a CPU (`/proc/thread-self/schedstat`).
fn on_cpu() -> f64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    s.split_whitespace().next().and_then(|ns| ns.parse::<f64>().ok()).unwrap_or(f64::NAN) / 1e9
}
