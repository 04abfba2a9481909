//! Security groups on real Open vSwitch (Neutron's `openvswitch` firewall
//! driver on the userspace datapath, with its conntrack), and the twin's
//! verdict on every same packet, naming the deciding table and rule.
//!
//! One lab, re-applied stage by stage (each stage a topology: the real
//! `labs/seed-secure.yaml`, then edits of it, then `labs/seed.yaml` with the
//! `noop` driver as the positive control). Every allowing case has a
//! negative with the rule (or the membership, or the address pair) removed:
//! - ext1 -> vm1's floating IP: ICMP and TCP 22 allowed by `ssh-icmp`, TCP
//!   80 and UDP 53 denied; without ssh-icmp's rules ICMP and 22 are denied;
//!   with the noop driver 80 and 53 pass;
//! - a UDP answer that only conntrack lets in (vm1 -> ext1), and the
//!   unsolicited packet from ext1 to the very port vm1 used, dropped; the
//!   same for TCP between instances (vm1 -> vm5 :80 by `web`, vm5 -> vm1
//!   :80 dropped);
//! - default group across hosts and networks (vm1 -> vm3, vm4 -> vm2, vm2
//!   -> vm5), denied once the sender leaves `default`;
//! - remote group: vm5 only in `web` (TCP 80 from members of `ssh-icmp`):
//!   vm2 denied, vm2 joins ssh-icmp: allowed, leaves again: denied;
//! - a spoofed source IP with the next hop pinned in the sender's neighbour
//!   table: dropped; with the noop driver the request is delivered;
//! - vm2's VIP (allowed address pair) passes; the pair removed, or the VIP
//!   sent by vm3, it is dropped.
//!
//! Needs root and Open vSwitch: `cargo test -p dvr-realize --test security_groups -- --ignored`
//! (under `flock /tmp/dvr-real-ovs.lock`).

mod common;
mod traffic;

use dvr_model::security::Direction;
use dvr_model::spec::TopologySpec;
use dvr_realize::Lab;
use dvr_realize::lab::TearDown;
use dvr_sim::firewall::{Decision, decisions};
use dvr_sim::{L4, TraceRequest, World};
use traffic::{CLIENT_PORT, Proto, Verdict};

const VIP: &str = "192.168.1.100";
const SPOOF_IP: &str = "192.168.1.99";
const FIP: &str = "10.100.0.7";

struct Case {
    name: &'static str,
    from: &'static str,
    /// Where the packet is addressed (an instance, or a floating IP).
    to_ip: &'static str,
    /// The endpoint that must (or must not) receive it.
    dst: &'static str,
    proto: Proto,
    /// Send from this address (added to the sender's eth0, next hop pinned).
    src: Option<&'static str>,
    /// The client's source port (0: ephemeral).
    sport: u16,
    expect: Verdict,
    /// What the twin must name as deciding: a pattern of [`twin_decision`]
    /// (a prefix; `*` stands for anything).
    decided: &'static str,
}

fn case(name: &'static str, from: &'static str, to_ip: &'static str, dst: &'static str, proto: Proto) -> Case {
    let expect = Verdict { request_delivered: true, reply_delivered: true };
    Case { name, from, to_ip, dst, proto, src: None, sport: 0, expect, decided: "" }
}

impl Case {
    /// Allowed both ways; the twin names `by`.
    fn allowed(self, by: &'static str) -> Case {
        Case { decided: by, ..self }
    }
    /// Dropped; the twin names `by`.
    fn denied(self, by: &'static str) -> Case {
        Case { expect: Verdict { request_delivered: false, reply_delivered: false }, decided: by, ..self }
    }
    /// The request arrives, no answer comes back (a spoofed source).
    fn one_way(self, by: &'static str) -> Case {
        Case { expect: Verdict { request_delivered: true, reply_delivered: false }, decided: by, ..self }
    }
    fn sent_from(self, ip: &'static str) -> Case {
        Case { src: Some(ip), ..self }
    }
    fn sport(self, p: u16) -> Case {
        Case { sport: p, ..self }
    }
}

/// The twin's firewall decision in one line: the request's dropping step or
/// its last allowing rule, then the reply's.
fn twin_decision(t: &dvr_sim::Trace) -> String {
    let steps = decisions(t);
    if steps.is_empty() {
        return "no firewall".into();
    }
    let pick = |dir: &str| {
        let s: Vec<_> = steps.iter().filter(|s| s.direction == dir).collect();
        let d = s.iter().find(|s| matches!(s.decision, Decision::Dropped { .. })).or_else(|| s.last()).copied()?;
        Some(match &d.decision {
            Decision::Dropped { .. } => format!("dropped t{}", d.table),
            Decision::AllowedByRule { rule } => format!("t{} {}: {}", d.table, rule.group, rule.summary),
            Decision::Established => format!("t{} established", d.table),
        })
    };
    let mut out = pick("request").unwrap_or_else(|| "request: none".into());
    if let Some(r) = pick("reply") {
        out += &format!("; reply {r}");
    }
    out
}

/// Whether `s` starts with `pattern`, where `*` stands for anything.
fn matches_pattern(s: &str, pattern: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(rest) = parts.next().and_then(|first| s.strip_prefix(first)) else { return false };
    let mut rest = rest;
    for p in parts {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

#[test]
fn decision_patterns() {
    let s = "t72 ssh-icmp: egress IPv4 any to 0.0.0.0/0; reply t82 established";
    assert!(matches_pattern(s, "t72 * egress*; reply t82 established"));
    assert!(matches_pattern(s, "t72"));
    assert!(!matches_pattern(s, "t82"));
    assert!(!matches_pattern(s, "t72 * ingress"));
    assert!(!matches_pattern("dropped t82", "dropped t71"));
}

/// The twin's verdict on the same packet (neighbours primed when sending from another address).
fn twin(topo: &dvr_model::Topology, plan: &dvr_plan::Plan, case: &Case) -> (Verdict, String) {
    let mut w = World::build(topo, plan);
    dvr_sim::warm_up(&mut w);
    let sport = if case.sport == 0 { CLIENT_PORT } else { case.sport };
    let l4 = match case.proto {
        Proto::Icmp => L4::Icmp { reply: false, id: 7 },
        Proto::Tcp(p) => L4::Tcp { sport, dport: p },
        Proto::Udp(p) => L4::Udp { sport, dport: p },
    };
    let spoof_ip = case.src.map(|s| s.parse().unwrap());
    let req = TraceRequest { from: case.from.into(), to: case.to_ip.parse().unwrap(), l4, spoof_ip, spoof_mac: None };
    if case.src.is_some() {
        dvr_sim::prime_neighbours(&mut w, &req).unwrap();
    }
    let t = dvr_sim::trace(&mut w, &req).unwrap();
    let v = Verdict {
        request_delivered: t.verdict.delivered_to() == Some(case.dst),
        reply_delivered: t.reply.as_ref().is_some_and(|r| r.verdict.is_delivered()),
    };
    (v, twin_decision(&t))
}

fn secure(edit: &dyn Fn(&mut TopologySpec)) -> dvr_model::Topology {
    let mut spec = dvr_model::parse_spec("seed-secure", dvr_model::SEED_SECURE_YAML).unwrap();
    edit(&mut spec);
    dvr_model::build::build("seed-secure", &spec).unwrap()
}

fn set_groups(spec: &mut TopologySpec, vm: &str, groups: &[&str]) {
    let x = spec.instances.iter_mut().find(|x| x.name == vm).unwrap();
    x.security_groups = Some(groups.iter().map(|s| s.to_string()).collect());
}

/// The stages: a name, the topology, the cases.
fn stages() -> Vec<(&'static str, dvr_model::Topology, Vec<Case>)> {
    use Proto::*;
    let web_only = |s: &mut TopologySpec| set_groups(s, "vm5", &["web"]);
    vec![
        (
            "labs/seed-secure.yaml",
            secure(&|_| {}),
            vec![
                case("ext1 -> vm1 fip ICMP", "ext1", FIP, "vm1", Icmp).allowed("t82 ssh-icmp"),
                case("ext1 -> vm1 fip TCP 22", "ext1", FIP, "vm1", Tcp(22)).allowed("t82 ssh-icmp"),
                case("ext1 -> vm1 fip TCP 80 (no rule)", "ext1", FIP, "vm1", Tcp(80)).denied("dropped t82"),
                case("ext1 -> vm1 fip UDP 53 (no rule)", "ext1", FIP, "vm1", Udp(53)).denied("dropped t82"),
                case("vm1:40000 -> ext1 UDP 5353, answer by conntrack", "vm1", "10.100.0.14", "ext1", Udp(5353))
                    .sport(CLIENT_PORT)
                    .allowed("t72 * egress*; reply t82 established"),
                case("ext1 -> vm1 fip UDP 40000 (unsolicited)", "ext1", FIP, "vm1", Udp(CLIENT_PORT)).denied("dropped t82"),
                case("vm1 -> vm3 ICMP, same network across hosts", "vm1", "192.168.1.20", "vm3", Icmp).allowed("t82"),
                case("vm4 -> vm2 UDP 5353, routed (default)", "vm4", "192.168.1.10", "vm2", Udp(5353)).allowed("t82 default"),
                case("vm2 -> vm5 TCP 80, routed across hosts (default)", "vm2", "192.168.2.20", "vm5", Tcp(80)).allowed("t82 default"),
                case("vm1 from spoofed .99 -> vm2, next hop pinned", "vm1", "192.168.1.10", "vm2", Icmp)
                    .sent_from(SPOOF_IP)
                    .denied("dropped t71"),
                case("vm2 from its VIP (address pair) -> vm1", "vm2", "192.168.1.9", "vm1", Icmp).sent_from(VIP).allowed("t82"),
                case("vm3 from vm2's VIP -> vm1", "vm3", "192.168.1.9", "vm1", Icmp).sent_from(VIP).denied("dropped t71"),
            ],
        ),
        (
            "ssh-icmp without its ingress rules, vm1 leaves default",
            secure(&|s| {
                let g = s.security_groups.iter_mut().find(|g| g.name == "ssh-icmp").unwrap();
                g.rules.as_mut().unwrap().retain(|r| r.direction == Direction::Egress);
                set_groups(s, "vm1", &["ssh-icmp"]);
            }),
            vec![
                case("ext1 -> vm1 fip ICMP", "ext1", FIP, "vm1", Icmp).denied("dropped t82"),
                case("ext1 -> vm1 fip TCP 22", "ext1", FIP, "vm1", Tcp(22)).denied("dropped t82"),
                case("vm1 -> vm3 ICMP, across hosts", "vm1", "192.168.1.20", "vm3", Icmp).denied("dropped t82"),
            ],
        ),
        (
            "vm2 loses its address pair, vm4 leaves default",
            secure(&|s| {
                s.instances.iter_mut().find(|x| x.name == "vm2").unwrap().allowed_address_pairs.clear();
                set_groups(s, "vm4", &["ssh-icmp"]);
            }),
            vec![
                case("vm2 from its former VIP -> vm1", "vm2", "192.168.1.9", "vm1", Icmp).sent_from(VIP).denied("dropped t71"),
                case("vm4 -> vm2 UDP 5353, routed", "vm4", "192.168.1.10", "vm2", Udp(5353)).denied("dropped t82"),
            ],
        ),
        (
            "vm5 only in web (TCP 80 from members of ssh-icmp)",
            secure(&web_only),
            vec![
                case("vm1 (ssh-icmp) -> vm5 TCP 80", "vm1", "192.168.2.20", "vm5", Tcp(80)).allowed("t82 web"),
                case("vm5 -> vm1 TCP 80 (the reverse, unsolicited)", "vm5", "192.168.1.9", "vm1", Tcp(80)).denied("dropped t82"),
                case("vm2 (not in ssh-icmp) -> vm5 TCP 80", "vm2", "192.168.2.20", "vm5", Tcp(80)).denied("dropped t82"),
            ],
        ),
        (
            "vm2 joins ssh-icmp",
            secure(&|s| {
                web_only(s);
                set_groups(s, "vm2", &["default", "ssh-icmp"]);
            }),
            vec![case("vm2 (now in ssh-icmp) -> vm5 TCP 80", "vm2", "192.168.2.20", "vm5", Tcp(80)).allowed("t82 web")],
        ),
        (
            "vm2 leaves ssh-icmp again",
            secure(&web_only),
            vec![case("vm2 (left ssh-icmp) -> vm5 TCP 80", "vm2", "192.168.2.20", "vm5", Tcp(80)).denied("dropped t82")],
        ),
        (
            "labs/seed.yaml (noop driver: the positive controls)",
            dvr_model::seed(),
            vec![
                case("ext1 -> vm1 fip TCP 80", "ext1", FIP, "vm1", Tcp(80)).allowed("no firewall"),
                case("ext1 -> vm1 fip UDP 53", "ext1", FIP, "vm1", Udp(53)).allowed("no firewall"),
                case("vm1 from spoofed .99 -> vm2, next hop pinned", "vm1", "192.168.1.10", "vm2", Icmp)
                    .sent_from(SPOOF_IP)
                    .one_way("no firewall"),
                case("vm3 from vm2's VIP -> vm1", "vm3", "192.168.1.9", "vm1", Icmp).sent_from(VIP).one_way("no firewall"),
            ],
        ),
    ]
}

#[test]
#[ignore = "needs root and Open vSwitch"]
fn security_groups_real_ovs_equals_twin() {
    let profile = dvr_plan::Profile::Current;
    let guard = TearDown(Lab::new(&format!("dvrsg{}", std::process::id() % 10000)));
    let lab = &guard.0;
    lab.down().unwrap();
    let mut table = vec![format!("  {:<50} {:<12} {:<12} {:<12} twin's deciding step", "case", "expected", "real", "twin")];
    let mut failures = Vec::new();
    let (mut n, mut agree) = (0, 0);
    for (stage, topo, cases) in &stages() {
        let plan = dvr_plan::plan(topo, profile).unwrap();
        let t0 = std::time::Instant::now();
        let report = lab.up(topo, &plan, &mut |_| {}).unwrap_or_else(|e| panic!("lab up ({stage}): {e}"));
        let ops: usize = report.ops.iter().map(|(_, o)| o.len()).sum();
        table.push(format!("{stage}: applied in {} ms ({ops} operations)", t0.elapsed().as_millis()));
        for c in cases {
            let (real, rctx) = traffic::send(lab, c.from, c.to_ip, c.dst, c.proto, c.src, c.sport);
            let (tw, why) = twin(topo, &plan, c);
            n += 1;
            agree += usize::from(tw == real);
            let line = format!("  {:<50} {:<12} {:<12} {:<12} {why}", c.name, c.expect.to_string(), real.to_string(), tw.to_string());
            table.push(line.clone());
            if real != c.expect || tw != real || !matches_pattern(&why, c.decided) {
                failures.push(format!("{stage}:\n{line}\n    twin must name: {}\n    real: {rctx}", c.decided));
            }
        }
    }
    eprintln!("security groups, real OVS ({profile:?} profile) and twin: {agree}/{n} agree\n{}", table.join("\n"));
    assert!(failures.is_empty(), "{} case(s) wrong:\n{}", failures.len(), failures.join("\n"));
}
