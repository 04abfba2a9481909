//! `dvr bench --quick`: every section of the report is produced with
//! figures that hang together, and the targets table judges only what the
//! run measured (the figures themselves are not asserted: they belong to
//! the machine).

use std::process::Command;

#[test]
fn quick_bench_reports_every_section() {
    let out = Command::new(env!("CARGO_BIN_EXE_dvr")).args(["bench", "--quick", "--no-ovs", "--format", "json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let sizes: Vec<u64> = r["plan"].as_array().unwrap().iter().map(|p| p["hosts"].as_u64().unwrap()).collect();
    assert_eq!(sizes, [10, 100]);
    for p in r["plan"].as_array().unwrap() {
        assert!(p["flows_total"].as_u64().unwrap() > 0, "{p}");
        assert!(p["flows_per_host_max"].as_f64().unwrap() >= p["flows_per_host_avg"].as_f64().unwrap(), "{p}");
    }
    let changes = r["live_changes"].as_array().unwrap();
    let boot = changes.iter().find(|c| c["change"] == "boot instance").expect("boot instance measured");
    assert_eq!(boot["in_place"], true, "{boot}");
    let traces = r["traces"].as_array().unwrap();
    for t in traces {
        assert!(t["per_second"].as_f64().unwrap() > 0.0 && t["traces"].as_u64().unwrap() >= t["paths"].as_u64().unwrap(), "{t}");
        // Warm rates come after a first round, reported apart; cold ones have none.
        assert_eq!(t["world"] == "warm", t["first_round_ms"].is_number(), "{t}");
    }
    assert!(traces.iter().any(|t| t["topology"] == "seed lab" && t["mode"] == "text"));
    assert!(traces.iter().any(|t| t["topology"].as_str().unwrap().starts_with("100 hosts")));
    for a in r["all_pairs"].as_array().unwrap() {
        let vms = a["vms"].as_u64().unwrap();
        assert_eq!(a["pairs"].as_u64().unwrap(), vms * (vms - 1), "{a}");
        assert!(a["reachable"].as_u64().unwrap() <= a["pairs"].as_u64().unwrap());
    }
    assert!(r["ovs_skipped"].is_string());
    let targets = r["targets"].as_array().unwrap();
    let row = |what: &str| targets.iter().find(|t| t["what"].as_str().unwrap().starts_with(what)).unwrap_or_else(|| panic!("{what}"));
    // --quick plans 10 and 100 hosts: the 1,000-host rows are not measured, not met.
    assert!(row("full plan in memory, 1,000 hosts")["met"].is_null());
    assert_eq!(row("full plan in memory, 1,000 hosts")["measured"], "not measured in this run");
    assert!(row("one change: boot an instance")["met"].is_boolean());
    assert!(row("explained traces, seed lab (hops recorded)")["met"].is_boolean());
}
