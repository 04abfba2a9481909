//! Micro-benchmark of the full in-memory plan (what `dvr bench` reports as
//! "plan"), cheap to rebuild while profiling: `cargo run --release -p dvr-plan
//! --example plan_scale -- 1000`. The figures that count are `dvr bench`'s.
use std::time::Instant;

/// The allocator of the `dvr` binary, so the figures match `dvr bench`'s.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let hosts: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let spec = dvr_model::r#gen::generate(&dvr_model::r#gen::GenParams::scale(hosts));
    let t0 = Instant::now();
    let topo = dvr_model::build::build("generated", &spec).expect("generated topologies are valid");
    let model = t0.elapsed();
    let rss_model = rss_mib();
    let t1 = Instant::now();
    let plan = dvr_plan::plan(&topo, dvr_plan::Profile::Walkthrough).expect("plannable");
    let planned = t1.elapsed();
    let flows: usize = plan.hosts.iter().map(|h| h.flow_count()).sum();
    println!(
        "hosts {hosts}: model {:.0} ms, plan {:.0} ms, {flows} flows; RSS {rss_model:.0} MiB after the model, {:.0} MiB with the plan",
        model.as_secs_f64() * 1e3,
        planned.as_secs_f64() * 1e3,
        rss_mib()
    );
}

/// Resident memory now (Linux), in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    kb.unwrap_or(0.0) / 1024.0
}
