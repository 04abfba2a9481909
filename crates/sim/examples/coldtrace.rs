//! Phase timings of one trace in a cold process, cheaper to build than the
//! `dvr` binary (the figure of record is `dvr bench`'s "one trace, cold
//! process"): read, limits scan, YAML parse, model build, lazy twin, warm-up,
//! trace and text, each in CPU and wall milliseconds, then the peak RSS; the
//! trace's text on stdout.
//!
//! `cargo run --release -p dvr-sim --example coldtrace -- FILE FROM TO`

use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, file, from, to] = &args[..] else {
        eprintln!("usage: coldtrace FILE FROM TO");
        std::process::exit(2);
    };
    if std::env::var_os("COLDTRACE_SIZES").is_some() {
        eprintln!(
            "StackNode {} Stack {} Route {} Conntrack {} Dev {}",
            size_of::<dvr_sim::world::StackNode>(),
            size_of::<dvr_sim::stack::Stack>(),
            size_of::<dvr_plan::Route>(),
            size_of::<dvr_sim::netfilter::Conntrack>(),
            size_of::<dvr_sim::stack::Dev>()
        );
    }
    let mut clock = Clock::new();
    let yaml = std::fs::read_to_string(file).expect("read");
    clock.lap("read");
    dvr_model::limits::scan(&yaml).expect("scan");
    clock.lap("limits scan");
    let spec = dvr_model::parse_spec(file, &yaml).expect("parse");
    clock.lap("parse (scan included)");
    let topo = dvr_model::build(file, &spec).expect("build");
    clock.lap("model build");
    drop(spec);
    drop(yaml);
    clock.lap("drop spec");
    dvr_plan::check_supported(&topo).expect("supported");
    let to = topo.resolve_address(to).expect("destination");
    clock.lap("check_supported");
    let mut w = dvr_sim::World::lazy(std::sync::Arc::new(topo), dvr_plan::Profile::Walkthrough);
    clock.lap("World::lazy");
    dvr_sim::warm_up(&mut w);
    clock.lap("warm_up");
    let req =
        dvr_sim::TraceRequest { from: from.clone(), to, l4: dvr_sim::L4::Icmp { reply: false, id: 1 }, spoof_ip: None, spoof_mac: None };
    let tr = dvr_sim::trace(&mut w, &req).expect("trace");
    clock.lap("trace");
    let text = dvr_sim::render::text(&tr);
    clock.lap("render");
    eprintln!("{} hosts built, {} lines", w.built_hosts(), text.lines().count());
    std::mem::forget(w);
    // The trace on stdout (what `dvr trace` prints): compare it before/after a change.
    print!("{text}");
    eprintln!(
        "total {:.1} ms CPU, {:.1} ms wall, peak RSS {} KB",
        clock.cpu0.elapsed_ms(),
        clock.wall0.elapsed().as_secs_f64() * 1e3,
        peak_kb()
    );
}

/// CPU time of this (only) thread in ms, from the scheduler's nanoseconds.
struct Cpu(f64);
impl Cpu {
    fn now() -> Cpu {
        let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
        Cpu(s.split_whitespace().next().and_then(|n| n.parse::<f64>().ok()).unwrap_or(0.0) / 1e6)
    }
    fn elapsed_ms(&self) -> f64 {
        Cpu::now().0 - self.0
    }
}

struct Clock {
    cpu0: Cpu,
    wall0: Instant,
    cpu: f64,
    wall: Instant,
}
impl Clock {
    fn new() -> Clock {
        let c = Cpu::now();
        Clock { cpu: c.0, cpu0: c, wall0: Instant::now(), wall: Instant::now() }
    }
    fn lap(&mut self, what: &str) {
        let c = Cpu::now().0;
        eprintln!("{what:24} {:7.1} ms CPU {:7.1} ms wall", c - self.cpu, self.wall.elapsed().as_secs_f64() * 1e3);
        self.cpu = c;
        self.wall = Instant::now();
    }
}

fn peak_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines().find(|l| l.starts_with("VmHWM")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
}
