//! Golden tests: the seed lab's plan of every host, in the native text
//! format, under both profiles. A change in any flow, address, route, rule or
//! NAT rule shows up as a snapshot diff to review (`cargo insta review`).

use dvr_plan::{Profile, plan, render};

fn text(profile: Profile, host: &str) -> String {
    let p = plan(&dvr_model::seed(), profile).unwrap();
    render::host_text(p.host(host).unwrap(), render::TextOptions { explain: true })
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
    insta::assert_json_snapshot!(p.host("compute2").unwrap().namespaces);
}

#[test]
fn same_input_byte_identical_plan() {
    let a = serde_json::to_string(&plan(&dvr_model::seed(), Profile::Walkthrough).unwrap()).unwrap();
    let b = serde_json::to_string(&plan(&dvr_model::seed(), Profile::Walkthrough).unwrap()).unwrap();
    assert_eq!(a, b);
}
