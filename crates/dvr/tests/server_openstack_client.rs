//! The real `openstack` client (python-openstackclient, pinned, from PyPI)
//! drives a real `dvr server` process to build the walkthrough's deployment
//! with `openstack network/subnet/router/port/floating ip` commands only.
//! Hosts come from `dvr apply` of a hosts-only file and the external host from
//! one POST to the dvr extension (neither exists in Neutron's API). Then
//! `dvr export` must plan exactly like `labs/seed.yaml`, `dvr apply` of the
//! seed file must find nothing to do, and rule violations must come back
//! through the client as Neutron's messages.

mod support;

use serde_json::json;
use support::*;

struct Osc {
    bin: String,
    url: String,
}

impl Osc {
    fn run(&self, args: &[&str]) -> Out {
        let mut argv = vec![self.bin.as_str(), "--os-auth-type", "none", "--os-endpoint", self.url.as_str()];
        argv.extend_from_slice(args);
        run_bounded(60, &argv, &[("OS_CLOUD", ""), ("HOME", "/tmp")])
    }

    /// A command that must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert_eq!(o.code, Some(0), "openstack {} failed:\n{}{}", args.join(" "), o.stdout, o.stderr);
        o.stdout
    }

    /// A command that must fail; its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert_ne!(o.code, Some(0), "openstack {} should have failed but printed:\n{}", args.join(" "), o.stdout);
        assert_ne!(o.code, Some(124), "openstack {} timed out", args.join(" "));
        o.stderr
    }
}

fn plan_json(topology: &std::path::Path) -> serde_json::Value {
    let out = dvr().args(["plan", "--format", "json", "-t"]).arg(topology).output().unwrap();
    assert!(out.status.success(), "dvr plan -t {}: {}", topology.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn openstack_client_builds_the_seed_lab_and_export_plans_identically() {
    let venv = venv();
    let tmp = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", tmp.path().join("dvr.db").display());
    let server = Server::start(&db, &tmp.path().join("server.log"));
    let osc = Osc { bin: venv.join("bin/openstack").display().to_string(), url: server.url.clone() };

    // Hosts: `dvr apply` of a file with only the seed's hosts (the extension).
    apply_seed_hosts(&server, tmp.path());

    // The deployment, with the client only.
    osc.ok(&[
        "network",
        "create",
        "--provider-network-type",
        "vlan",
        "--provider-physical-network",
        "physnet1",
        "--provider-segment",
        "196",
        "test1",
    ]);
    osc.ok(&["subnet", "create", "--network", "test1", "--subnet-range", "192.168.1.0/24", "--gateway", "192.168.1.1", "test1-v4"]);
    osc.ok(&[
        "network",
        "create",
        "--provider-network-type",
        "vlan",
        "--provider-physical-network",
        "physnet1",
        "--provider-segment",
        "148",
        "test2",
    ]);
    osc.ok(&["subnet", "create", "--network", "test2", "--subnet-range", "192.168.2.0/24", "--gateway", "192.168.2.1", "test2-v4"]);
    osc.ok(&["network", "create", "--external", "--provider-network-type", "flat", "--provider-physical-network", "extnet", "external"]);
    osc.ok(&[
        "subnet",
        "create",
        "--network",
        "external",
        "--subnet-range",
        "10.100.0.0/24",
        "--gateway",
        "10.100.0.1",
        "--no-dhcp",
        "external-v4",
    ]);
    osc.ok(&["router", "create", "--distributed", "router1"]);
    osc.ok(&["router", "set", "--external-gateway", "external", "router1"]);
    osc.ok(&["router", "add", "subnet", "router1", "test1-v4"]);
    osc.ok(&["router", "add", "subnet", "router1", "test2-v4"]);
    // Instance ports with the MACs the model gives the seed's instances (so the
    // exported file, which carries every instance's MAC, plans identically).
    let seed = dvr_model::seed();
    for x in &seed.instances {
        let p = seed.port(x.port);
        let subnet = &seed.subnet(p.subnet).name;
        osc.ok(&[
            "port",
            "create",
            "--network",
            &seed.network(x.network).name,
            "--fixed-ip",
            &format!("subnet={subnet},ip-address={}", p.ip),
            "--mac-address",
            &p.mac.to_string(),
            "--host",
            &seed.host(x.host).name,
            "--device-owner",
            "compute:nova",
            &x.name,
        ]);
    }
    let fip = osc.ok(&["floating", "ip", "create", "--floating-ip-address", "10.100.0.7", "--port", "vm1", "-f", "json", "external"]);
    let fip: serde_json::Value = serde_json::from_str(&fip).unwrap();
    assert_eq!(fip["floating_ip_address"], "10.100.0.7", "{fip}");
    assert_eq!(fip["fixed_ip_address"], "192.168.1.9", "{fip}");
    // The external host ext1 (dvr extension; Neutron has no such object).
    let net = osc.ok(&["network", "show", "external", "-f", "value", "-c", "id"]);
    let (st, v) = server.req(
        "POST",
        "/v2.0/dvr/external-hosts",
        Some(&json!({"external_host": {"name": "ext1", "network_id": net.trim(), "ip_address": "10.100.0.14"}})),
    );
    assert_eq!(st, 201, "{v}");

    // Lists through the client: what was built is what the client sees.
    let ports = osc.ok(&["port", "list", "--device-owner", "compute:nova", "-f", "json"]);
    let ports: serde_json::Value = serde_json::from_str(&ports).unwrap();
    assert_eq!(ports.as_array().unwrap().len(), 5, "{ports}");
    let shown = osc.ok(&["router", "show", "router1", "-f", "json"]);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["distributed"], true, "{shown}");

    // Export, then plan both files: identical.
    let out = dvr().args(["export", "--server", &server.url, "--name", "seed-lab"]).output().unwrap();
    assert!(out.status.success(), "dvr export: {}", String::from_utf8_lossy(&out.stderr));
    let exported = tmp.path().join("exported.yaml");
    std::fs::write(&exported, &out.stdout).unwrap();
    let want = plan_json(&repo().join("labs/seed.yaml"));
    let got = plan_json(&exported);
    if want != got {
        let w = serde_json::to_string_pretty(&want).unwrap();
        let g = serde_json::to_string_pretty(&got).unwrap();
        let first = w.lines().zip(g.lines()).position(|(a, b)| a != b).unwrap_or(0);
        panic!(
            "the exported deployment plans differently from labs/seed.yaml; first difference at line {first}:\nseed:     {}\nexported: {}\nexported file:\n{}",
            w.lines().nth(first).unwrap_or(""),
            g.lines().nth(first).unwrap_or(""),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // And `dvr plan --server` equals planning the file.
    let out = dvr().args(["plan", "--format", "json", "--server", &server.url]).output().unwrap();
    assert!(out.status.success(), "dvr plan --server: {}", String::from_utf8_lossy(&out.stderr));
    let live: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(live["hosts"], want["hosts"], "dvr plan --server differs from the seed's plan");

    // The seed file applied over the client-built state: nothing to do.
    let out = dvr()
        .args(["apply", "-f"])
        .arg(repo().join("labs/seed.yaml"))
        .args(["--server", &server.url, "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "dvr apply seed: {}", String::from_utf8_lossy(&out.stderr));
    let sum: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sum["changes"], 0, "applying the seed over the client-built lab should change nothing: {sum}");

    // Neutron's rules, through the client (its message) and the API (Neutron's error type).
    let e = osc.fails(&["port", "create", "--network", "test1", "--fixed-ip", "subnet=test1-v4,ip-address=192.168.1.9", "dup"]);
    assert!(e.contains("409") && e.contains("192.168.1.9") && e.contains("already"), "duplicate IP: {e}");
    let test1 = osc.ok(&["network", "show", "test1", "-f", "value", "-c", "id"]);
    let test1_v4 = osc.ok(&["subnet", "show", "test1-v4", "-f", "value", "-c", "id"]);
    let (st, v) = server.req(
        "POST",
        "/v2.0/ports",
        Some(&json!({"port": {"network_id": test1.trim(), "fixed_ips": [{"subnet_id": test1_v4.trim(), "ip_address": "192.168.1.9"}]}})),
    );
    assert_eq!((st, v["NeutronError"]["type"].as_str()), (409, Some("IpAddressAlreadyAllocated")), "{v}");
    let e = osc.fails(&["network", "delete", "test1"]);
    assert!(e.contains("409") && e.to_lowercase().contains("in use"), "network in use: {e}");
    let (st, v) = server.req("DELETE", &format!("/v2.0/networks/{}", test1.trim()), None);
    assert_eq!((st, v["NeutronError"]["type"].as_str()), (409, Some("NetworkInUse")), "{v}");
    let e = osc.fails(&["subnet", "create", "--network", "test2", "--subnet-range", "192.168.300.0/24", "bad"]);
    assert!(e.contains("400") && e.contains("192.168.300.0/24"), "bad CIDR: {e}");
    eprintln!("client messages: duplicate IP, network in use, bad CIDR as shown above");
    // Nothing of the failed calls was kept.
    let ports = osc.ok(&["port", "list", "--name", "dup", "-f", "value", "-c", "ID"]);
    assert_eq!(ports.trim(), "", "a failed port create left a port");
    osc.ok(&["network", "show", "test1"]);
}
