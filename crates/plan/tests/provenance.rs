//! Provenance everywhere: every planned flow, route, rule, neighbour and NAT
//! rule of the seed lab (both profiles) says which builder made it — a source
//! location recorded by `#[track_caller]`, not a typed label — and why, and
//! the reason names pipeline stages, not raw table numbers.

use dvr_plan::{Origin, Profile, plan};

fn check_origin(what: &str, o: &Origin) {
    assert!(
        o.at.starts_with("crates/plan/src/") && o.at.rsplit(':').next().unwrap().parse::<u32>().is_ok(),
        "{what}: origin at `{}`",
        o.at
    );
    assert!(o.why.len() > 10, "{what}: no reason");
}

#[test]
fn every_planned_item_has_a_builder_location_and_a_reason() {
    for profile in [Profile::Walkthrough, Profile::Current] {
        let p = plan(&dvr_model::seed(), profile).unwrap();
        let mut counts = [0usize; 5];
        for h in &p.hosts {
            for b in &h.bridges {
                for f in &b.flows {
                    counts[0] += 1;
                    assert!(f.builder.starts_with("crates/plan/src/"), "{} {}: {f} builder `{}`", h.host, b.name, f.builder);
                    assert!(!f.reason.is_empty(), "{} {}: {f} has no reason", h.host, b.name);
                    let raw_table = f.reason.split("table ").skip(1).any(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
                    assert!(!raw_table, "{} {}: reason names a raw table number: {}", h.host, b.name, f.reason);
                    assert!(dvr_plan::tables::lookup(b.kind, f.table).is_some(), "{f}: table not declared as a stage");
                }
            }
            for n in &h.namespaces {
                for r in &n.routes {
                    counts[1] += 1;
                    check_origin(&format!("{} {} route {:?}", h.host, n.name, r.dst), &r.origin);
                }
                for r in &n.rules {
                    counts[2] += 1;
                    check_origin(&format!("{} {} rule {}", h.host, n.name, r.priority), &r.origin);
                }
                for x in &n.neighbours {
                    counts[3] += 1;
                    check_origin(&format!("{} {} neighbour {}", h.host, n.name, x.ip), &x.origin);
                }
                for r in n.iptables.iter().flat_map(|t| t.chains.iter()).flat_map(|c| c.rules.iter()) {
                    counts[4] += 1;
                    check_origin(&format!("{} {} iptables {}", h.host, n.name, dvr_plan::render::ipt_rule_args(r)), &r.origin);
                }
            }
        }
        assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
    }
}

/// Positive control: the location is the caller's, so two builders give two locations.
#[test]
fn locations_differ_between_builders_and_explain_prints_them_for_all_kinds() {
    let p = plan(&dvr_model::seed(), Profile::Walkthrough).unwrap();
    let c1 = p.host("compute1").unwrap();
    let at: std::collections::BTreeSet<&str> = c1.bridges.iter().flat_map(|b| b.flows.iter()).map(|f| &*f.builder).collect();
    assert!(at.len() > 10, "{at:?}");
    let text = dvr_plan::render::host_text(c1, dvr_plan::render::TextOptions { explain: true });
    for needle in [
        "#   ^ LOCAL_SWITCHING: drop traffic of dead ports",
        "#   ^ DvrLocalRouter SNAT redirect: traffic from 192.168.1.0/24 looks up its own table [crates/plan/src/netns.rs:",
        "#   ^ _set_subnet_arp_info: permanent ARP for 192.168.1.9",
        "#   ^ floating_forward_rules: DNAT of the floating IP arriving from the fip namespace [crates/plan/src/netns.rs:",
        "#   ^ FipNamespace: floating IP 10.100.0.7 is bound here",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in --explain output");
    }
    // Without --explain the namespace text stays loadable: no comments.
    let plain = dvr_plan::render::host_text(c1, dvr_plan::render::TextOptions::default());
    assert!(!plain.contains("#   ^"));
}
