//! Trace arguments as `dvr trace` reads them (`--from NAME --to NAME|IPV4
//! --spoof-ip IPV4 --spoof-mac MAC --proto P --dport N`, through the same
//! library parsers the CLI uses), then the trace itself on the seed lab: every
//! input is either refused with an error or traced to a verdict, never a panic
//! or a hang.
#![no_main]

use dvr_model::MacAddr;
use dvr_sim::{L4, TraceRequest, World};
use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;
use std::sync::OnceLock;

fn seed_topology() -> &'static dvr_model::Topology {
    static T: OnceLock<dvr_model::Topology> = OnceLock::new();
    T.get_or_init(dvr_model::seed)
}

fn seed_world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let t = dvr_model::seed();
        let plan = dvr_plan::plan(&t, dvr_plan::Profile::Walkthrough).expect("the seed plans");
        let mut w = World::build(&t, &plan);
        dvr_sim::warm_up(&mut w);
        w
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // One argument per line: from, to, spoof-ip, spoof-mac, proto, dport.
    let mut f = text.split('\n');
    let (from, to) = (f.next().unwrap_or(""), f.next().unwrap_or(""));
    let Ok(spoof_ip) = f.next().filter(|s| !s.is_empty()).map(str::parse::<Ipv4Addr>).transpose() else { return };
    let Ok(spoof_mac) = f.next().filter(|s| !s.is_empty()).map(str::parse::<MacAddr>).transpose() else { return };
    let proto = f.next().unwrap_or("icmp");
    let Ok(dport) = f.next().unwrap_or("80").parse::<u16>() else { return };
    let l4 = match proto {
        "tcp" => L4::Tcp { sport: 40000, dport },
        "udp" => L4::Udp { sport: 40000, dport },
        _ => L4::Icmp { reply: false, id: 1 },
    };
    let mut world = seed_world().clone();
    // The one resolver the CLI uses for `--to` (trace) and lab ping/exec.
    let Some(to) = seed_topology().resolve_address(to) else { return };
    let req = TraceRequest { from: from.to_string(), to, l4, spoof_ip, spoof_mac };
    let _ = dvr_sim::trace(&mut world, &req);
});
