//! Golden tests: the seed lab's plan of every host, in the native text
//! format, under both profiles. A change in any flow, address, route, rule or
//! NAT rule shows up as a snapshot diff to review (`cargo insta review`).

use dvr_plan::{Profile, plan, render};

/// Builder locations (`crates/plan/src/flows.rs:208`, recorded by
/// `#[track_caller]`) with the line replaced by `L`: the snapshot shows which
/// file built each item without changing whenever a builder moves a line.
/// `provenance.rs` checks the real locations.
fn redact_lines(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(".rs:") {
        out.push_str(&rest[..i + 4]);
        rest = &rest[i + 4..];
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            out.push('L');
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

fn text(profile: Profile, host: &str) -> String {
    let p = plan(&dvr_model::seed(), profile).unwrap();
    redact_lines(&render::host_text(p.host(host).unwrap(), render::TextOptions { explain: true }))
}

#[test]
fn seed_controller() {
    insta::assert_snapshot!(text(Profile::Walkthrough, "controller"));
}

#[test]
fn seed_network() {
    insta::assert_snapshot!(text(Profile::Walkthrough, "network"));
}

#[test]
fn seed_compute1() {
    insta::assert_snapshot!(text(Profile::Walkthrough, "compute1"));
}

#[test]
fn seed_compute2() {
    insta::assert_snapshot!(text(Profile::Walkthrough, "compute2"));
}

#[test]
fn seed_compute1_current_neutron() {
    insta::assert_snapshot!(text(Profile::Current, "compute1"));
}

#[test]
fn seed_plan_json_is_stable() {
    let p = plan(&dvr_model::seed(), Profile::Walkthrough).unwrap();
    let json = serde_json::to_string_pretty(&p.host("compute2").unwrap().namespaces).unwrap();
    insta::assert_snapshot!(redact_lines(&json));
}

#[test]
fn same_input_byte_identical_plan() {
    let a = serde_json::to_string(&plan(&dvr_model::seed(), Profile::Walkthrough).unwrap()).unwrap();
    let b = serde_json::to_string(&plan(&dvr_model::seed(), Profile::Walkthrough).unwrap()).unwrap();
    assert_eq!(a, b);
}

fn secure_text(profile: Profile, host: &str) -> String {
    let topo = dvr_model::load_str("seed-secure", dvr_model::SEED_SECURE_YAML).unwrap();
    let p = plan(&topo, profile).unwrap();
    redact_lines(&render::host_text(p.host(host).unwrap(), render::TextOptions { explain: true }))
}

/// The seed lab with security groups: Neutron's `openvswitch` firewall on every host.
#[test]
fn seed_secure_network() {
    insta::assert_snapshot!(secure_text(Profile::Current, "network"));
}

#[test]
fn seed_secure_compute1() {
    insta::assert_snapshot!(secure_text(Profile::Current, "compute1"));
}

#[test]
fn seed_secure_compute2() {
    insta::assert_snapshot!(secure_text(Profile::Current, "compute2"));
}
