//! The loader's explicit bounds (`dvr_model::limits`): each one is hit by an
//! input just past it and gives a `Limit` error that names the bound and a fix;
//! inputs just under it still load (positive controls), so no test here passes
//! because a limit is simply too low.

use dvr_model::limits::*;
use dvr_model::{SEED_YAML, TopologyError, load_file, load_str};
use std::fmt::Write;

const FILE: &str = "test.yaml";

/// The limit error of loading `yaml`, with its name and fix checked.
fn limit_err(yaml: &str, limit: &str) -> String {
    match load_str(FILE, yaml) {
        Err(e @ TopologyError::Limit { .. }) => {
            let text = e.to_string();
            assert!(text.starts_with(FILE), "message does not name the file:\n{text}");
            assert!(text.contains(&format!("{limit} limit exceeded")), "expected the {limit} limit:\n{text}");
            let fix = text.split("fix:").nth(1).unwrap_or_else(|| panic!("no fix in:\n{text}"));
            assert!(!fix.trim().is_empty(), "empty fix:\n{text}");
            text
        }
        Err(other) => panic!("expected the {limit} limit, got:\n{other}"),
        Ok(_) => panic!("accepted, expected the {limit} limit"),
    }
}

/// Finding 1 of issue 13: a 500 KB file of `{a: ` nested 100,000 deep took 66 s
/// in the YAML parser before its error. The depth bound is checked by a linear
/// scan first, and the error says where.
#[test]
fn deep_flow_nesting_is_refused_at_its_place() {
    let y = format!("version: 1\nname: {}", "{a: ".repeat(100_000));
    assert!(y.len() > 400_000);
    let text = limit_err(&y, "nesting depth");
    assert!(text.contains(&format!("deeper than {MAX_DEPTH} levels")), "{text}");
    assert!(text.starts_with(&format!("{FILE}:2:")), "the error must name line 2:\n{text}");
    let y = format!("version: {}", "[".repeat(100_000));
    limit_err(&y, "nesting depth");
}

#[test]
fn deep_block_nesting_is_refused() {
    let mut y = String::from("version: 1\nname:\n");
    for i in 1..=MAX_DEPTH + 2 {
        writeln!(y, "{}a:", " ".repeat(i)).unwrap();
    }
    limit_err(&y, "nesting depth");
    let y = format!("version: 1\nhosts:\n{}x\n", "- ".repeat(MAX_DEPTH + 2));
    limit_err(&y, "nesting depth");
}

/// Positive control: nesting just under the bound reaches the parser, which
/// then says what is wrong with the content (a map where a name belongs).
#[test]
fn nesting_under_the_bound_is_parsed() {
    let n = MAX_DEPTH - 2;
    let y = format!("version: 1\nname: {}x{}\n", "[".repeat(n), "]".repeat(n));
    match load_str(FILE, &y) {
        Err(TopologyError::Syntax { message, .. }) => assert!(message.contains("name"), "{message}"),
        other => panic!("expected a syntax error about `name`, got {other:?}"),
    }
}

#[test]
fn oversized_input_is_refused_by_size() {
    let big = format!("version: 1\nname: x\n# {}\n", "x".repeat(MAX_FILE_BYTES as usize));
    let text = limit_err(&big, "size");
    assert!(text.contains(&MAX_FILE_BYTES.to_string()), "the message must name the bound:\n{text}");
    // The file path: refused after reading at most one byte past the bound.
    let path = std::env::temp_dir().join(format!("dvr-limits-{}.yaml", std::process::id()));
    std::fs::write(&path, &big).unwrap();
    let e = load_file(&path).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(e, TopologyError::Limit { limit: "size", .. }), "{e}");
    // Positive control: the seed is far under it.
    assert!(load_str(FILE, SEED_YAML).is_ok());
}

/// "Billion laughs": ten aliases per level, eight levels, from a 500-byte file.
#[test]
fn alias_expansion_is_bounded() {
    let mut y = String::from("version: 1\nx0: &x0 [a, a, a, a, a, a, a, a, a, a]\n");
    for k in 1..8 {
        let p = format!("*x{}", k - 1);
        writeln!(y, "x{k}: &x{k} [{}]", [p.as_str(); 10].join(", ")).unwrap();
    }
    let text = limit_err(&y, "alias expansion");
    assert!(text.contains(&MAX_EXPANDED_NODES.to_string()), "{text}");
    // Positive control: a small alias is used as written (the seed with one host's
    // bridge mappings reused through an anchor).
    let y = SEED_YAML
        .replacen("bridge_mappings: {physnet1: br-vlan, extnet: br-ex}", "bridge_mappings: &maps {physnet1: br-vlan, extnet: br-ex}", 1)
        .replacen("bridge_mappings: {physnet1: br-vlan, extnet: br-ex}", "bridge_mappings: *maps", 1);
    assert!(y.contains("*maps"));
    let t = load_str(FILE, &y).expect("an ordinary alias loads");
    assert_eq!(t.hosts.len(), dvr_model::seed().hosts.len());
}

/// `n` minimal hosts as YAML list items.
fn hosts(n: usize) -> String {
    (0..n).fold(String::new(), |mut s, i| {
        writeln!(s, "  - {{name: h{i}, role: compute, bridge_mappings: {{physnet1: br-vlan}}}}").unwrap();
        s
    })
}

#[test]
fn host_count_is_bounded() {
    let text = limit_err(&format!("version: 1\nhosts:\n{}", hosts(MAX_HOSTS + 1)), "hosts");
    assert!(text.contains(&format!("{} hosts; at most {MAX_HOSTS}", MAX_HOSTS + 1)), "{text}");
    // Positive control: exactly the bound loads.
    let t = load_str(FILE, &format!("version: 1\nhosts:\n{}", hosts(MAX_HOSTS))).expect("MAX_HOSTS hosts load");
    assert_eq!(t.hosts.len(), MAX_HOSTS);
}

/// `n` vlan networks on physnet1 without segmentation ids (allocated).
fn vlan_networks(n: usize) -> String {
    (0..n).fold(String::new(), |mut s, i| {
        writeln!(s, "  - {{name: n{i}, type: vlan, physical_network: physnet1}}").unwrap();
        s
    })
}

#[test]
fn network_count_is_bounded() {
    let y = format!("version: 1\nhosts:\n{}networks:\n{}", hosts(1), vlan_networks(MAX_NETWORKS + 1));
    let text = limit_err(&y, "networks");
    assert!(text.contains(&format!("at most {MAX_NETWORKS}")), "{text}");
}

/// VLAN ids are allocated in one pass (a cursor per physical network): 4,094
/// networks take every id, the 4,095th and later get one problem each.
#[test]
fn vlan_ids_run_out_with_a_clear_problem() {
    let y = format!("version: 1\nhosts:\n{}networks:\n{}", hosts(1), vlan_networks(4094));
    let t = load_str(FILE, &y).expect("4094 VLAN networks fit one physical network");
    assert_eq!(t.networks.len(), 4094);
    let y = format!("version: 1\nhosts:\n{}networks:\n{}", hosts(1), vlan_networks(4096));
    let e = load_str(FILE, &y).unwrap_err();
    let problems = e.problems();
    assert_eq!(problems.len(), 2, "{e}");
    assert!(problems.iter().all(|p| p.contains("no free VLAN id left on `physnet1`")), "{e}");
    assert!(problems[0].starts_with("networks[4094] (n4094)"), "{e}");
}

#[test]
fn instance_count_is_bounded() {
    let mut y = format!("version: 1\nhosts:\n{}instances:\n", hosts(1));
    for i in 0..=MAX_INSTANCES {
        writeln!(y, "  - {{name: v{i}, host: h0, network: n}}").unwrap();
    }
    let text = limit_err(&y, "instances");
    assert!(text.contains(&format!("{} instances; at most {MAX_INSTANCES}", MAX_INSTANCES + 1)), "{text}");
}

#[test]
fn subnets_per_network_and_router_interfaces_are_bounded() {
    let subnets: String =
        (0..=MAX_SUBNETS_PER_NETWORK).map(|i| format!("{{name: s{i}, cidr: 10.{}.{}.0/24}}, ", i / 256, i % 256)).collect();
    let y = format!("version: 1\nnetworks:\n  - {{name: n, type: vxlan, subnets: [{subnets}]}}\n");
    let text = limit_err(&y, "subnets per network");
    assert!(text.contains("networks[0] (n)"), "{text}");
    let names: Vec<String> = (0..=MAX_INTERFACES_PER_ROUTER).map(|i| format!("s{i}")).collect();
    let y = format!("version: 1\nrouters:\n  - {{name: r, interfaces: [{}]}}\n", names.join(", "));
    let text = limit_err(&y, "router interfaces");
    assert!(text.contains("routers[0] (r)"), "{text}");
}

/// A mistake repeated in every object gives a bounded report, not a message per
/// pair: 2,000 hosts of one name would otherwise be 1,999 problems (and every
/// subnet overlapping every other, millions).
#[test]
fn problems_are_capped_with_a_count_of_the_rest() {
    let same: String = (0..2000).map(|_| "  - {name: h, role: compute}\n").collect();
    let e = load_str(FILE, &format!("version: 1\nhosts:\n{same}")).unwrap_err();
    let problems = e.problems();
    assert_eq!(problems.len(), dvr_model::build::MAX_PROBLEMS + 1, "{e}");
    let last = problems.last().unwrap();
    assert!(last.contains("more problem(s) not shown") && last.contains("fix:"), "{last}");
}

/// Validation stays near-linear on a hostile file the size of the 1,000-host
/// deployment (1 MB): 20,000 subnets that all overlap, on five routers of 4,000
/// interfaces. Every pair used to be a problem (42 million, formatted: 20 s);
/// now each subnet and interface reports its first overlap only.
#[test]
fn overlapping_subnets_report_one_problem_each_not_every_pair() {
    let mut y = String::from("version: 1\nhosts:\n  - {name: n1, role: network, bridge_mappings: {physnet1: br-vlan}}\nnetworks:\n");
    let mut names = Vec::new();
    for n in 0..80 {
        writeln!(y, "  - name: net{n}\n    type: vlan\n    physical_network: physnet1\n    subnets:").unwrap();
        for k in 0..250 {
            writeln!(y, "      - {{name: s{n}x{k}, cidr: 10.0.0.0/8}}").unwrap();
            names.push(format!("s{n}x{k}"));
        }
    }
    y += "routers:\n";
    for r in 0..5 {
        writeln!(y, "  - name: r{r}\n    interfaces: [{}]", names[r * 4000..(r + 1) * 4000].join(", ")).unwrap();
    }
    let e = load_str(FILE, &y).unwrap_err();
    let problems = e.problems();
    let last = problems.last().unwrap();
    let more: usize = last.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{last}"));
    // 80 × 249 subnets and 5 × 3,999 interfaces overlap one before them.
    assert_eq!(more + dvr_model::build::MAX_PROBLEMS, 80 * 249 + 5 * 3999, "{last}");
}

/// An anchor on one host with a large map, reused by 200 aliases: under the
/// parser's own repetition guard (few jumps) but 4 million nodes once
/// expanded. Before the limit, 2,000 such aliases of a 50,000-entry map (an
/// 840 KB file) ran 88 s and died out of memory at 4 GB.
#[test]
fn a_large_anchor_reused_many_times_is_refused() {
    let maps: Vec<String> = (0..20_000).map(|i| format!("p{i}: br{i}")).collect();
    let mut y = format!("version: 1\nhosts:\n  - &h {{name: a, role: compute, bridge_mappings: {{{}}}}}\n", maps.join(", "));
    for _ in 0..200 {
        y += "  - *h\n";
    }
    limit_err(&y, "alias expansion");
}
