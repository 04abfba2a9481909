//! Security groups through a real `dvr server` process: `dvr apply` of
//! `labs/seed-secure.yaml` and `dvr export` round-trip (the same validated
//! security model, ids included, and a byte-identical plan), a second apply
//! changes nothing and a changed rule is applied as exactly that change;
//! reading a deployment without groups never turns its firewall on; the real
//! `openstack` client manages groups, rules and ports' security settings.

mod support;

use serde_json::{Value, json};
use support::*;

fn out_ok(args: &[&str]) -> Vec<u8> {
    let out = dvr().args(args).output().unwrap();
    assert!(out.status.success(), "dvr {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// The validated security model (`dvr topology --format json`'s `security`).
fn security(args: &[&str]) -> Value {
    let mut a = vec!["topology", "--format", "json"];
    a.extend_from_slice(args);
    let v: Value = serde_json::from_slice(&out_ok(&a)).unwrap();
    v["security"].clone()
}

fn plan(args: &[&str]) -> Vec<u8> {
    let mut a = vec!["plan", "--format", "json"];
    a.extend_from_slice(args);
    out_ok(&a)
}

fn apply(file: &str, url: &str) -> Value {
    serde_json::from_slice(&out_ok(&["apply", "-f", file, "--server", url, "--format", "json"])).unwrap()
}

#[test]
fn apply_seed_secure_and_export_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", tmp.path().join("dvr.db").display());
    let server = Server::start(&db, &tmp.path().join("server.log"));
    let file = tmp.path().join("seed-secure.yaml");
    std::fs::copy(repo().join("labs/seed-secure.yaml"), &file).unwrap();
    let f = file.to_str().unwrap();

    let first = apply(f, &server.url);
    // default, ssh-icmp, web; ssh-icmp's icmp and ssh rules and web's http rule
    // (each group's egress rule is Neutron's creation rule).
    assert_eq!(first["created"]["security groups"], 3, "{first}");
    assert_eq!(first["created"]["security group rules"], 3, "{first}");
    let again = apply(f, &server.url);
    assert_eq!(again["changes"], 0, "the second apply changed something: {again}");

    let exported = tmp.path().join("exported.yaml");
    std::fs::write(&exported, out_ok(&["export", "--server", &server.url])).unwrap();
    let e = exported.to_str().unwrap();
    let want = security(&["-t", f]);
    assert_eq!(want["driver"], "openvswitch");
    assert_eq!(want["groups"].as_array().unwrap().len(), 3);
    assert_eq!(security(&["-t", e]), want, "the exported file's security model differs from the applied file's");
    assert_eq!(security(&["--server", &server.url]), want, "the server's security model differs from the file's");
    let want_plan = plan(&["-t", f]);
    assert!(plan(&["-t", e]) == want_plan, "the exported file plans differently from the applied one");
    assert!(plan(&["--server", &server.url]) == want_plan, "plan --server differs from planning the applied file");

    // Neutron's view: vm1 in default + ssh-icmp, vm2 with its VIP, vm4 in default only.
    let ports = server.get("/v2.0/ports?device_owner=compute:nova")["ports"].as_array().unwrap().clone();
    let groups = server.get("/v2.0/security-groups")["security_groups"].as_array().unwrap().clone();
    let gid = |n: &str| groups.iter().find(|g| g["name"] == n).unwrap()["id"].clone();
    let port = |n: &str| ports.iter().find(|p| p["name"] == n).unwrap().clone();
    assert_eq!(port("vm1")["security_groups"], json!([gid("default"), gid("ssh-icmp")]));
    assert_eq!(port("vm4")["security_groups"], json!([gid("default")]));
    assert_eq!(port("vm2")["allowed_address_pairs"], json!([{"ip_address": "192.168.1.100", "mac_address": port("vm2")["mac_address"]}]));

    // A change in the file: ssh-icmp loses its ssh rule, vm4 joins web, vm2's VIP moves.
    let text = std::fs::read_to_string(&file).unwrap();
    let changed = text
        .replace("      - {direction: ingress, protocol: tcp, port_range_min: 22, port_range_max: 22, remote_ip_prefix: 0.0.0.0/0}\n", "")
        .replace(
            "{name: vm4, host: compute1, network: test2, ip: 192.168.2.10}",
            "{name: vm4, host: compute1, network: test2, ip: 192.168.2.10, security_groups: [web]}",
        )
        .replace("{ip_address: 192.168.1.100}", "{ip_address: 192.168.1.101}");
    assert_ne!(changed, text);
    std::fs::write(&file, changed).unwrap();
    let third = apply(f, &server.url);
    assert_eq!(third["updated"]["security group rules (deleted)"], 1, "{third}");
    assert_eq!(third["updated"]["instance ports (security)"], 2, "{third}");
    assert_eq!(third["changes"], 3, "{third}");
    let new_plan = plan(&["-t", f]);
    assert_ne!(security(&["-t", f]), want, "positive control: the change must change the security model");
    assert_eq!(security(&["--server", &server.url]), security(&["-t", f]));
    assert!(plan(&["--server", &server.url]) == new_plan, "after the change, plan --server differs from planning the file");
    assert_eq!(apply(f, &server.url)["changes"], 0);
}

#[test]
fn reading_a_deployment_without_groups_keeps_the_noop_driver() {
    let tmp = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", tmp.path().join("dvr.db").display());
    let server = Server::start(&db, &tmp.path().join("server.log"));
    let seed = repo().join("labs/seed.yaml");
    let s = seed.to_str().unwrap();
    apply(s, &server.url);
    let want = plan(&["-t", s]);
    // dvr's own readers (export, --server) leave the deployment as it is.
    let exported = String::from_utf8(out_ok(&["export", "--server", &server.url])).unwrap();
    assert!(!exported.contains("security_groups"), "{exported}");
    assert!(security(&["--server", &server.url]).is_null(), "noop: no security model");
    assert!(plan(&["--server", &server.url]) == want);
    // A Neutron client listing groups makes the project's default group (Neutron's behaviour):
    let v = server.get("/v2.0/security-groups");
    assert_eq!(v["security_groups"][0]["name"], "default", "{v}");
    // ...and from then on the deployment runs the openvswitch driver, every instance in `default`.
    let sec = security(&["--server", &server.url]);
    assert_eq!(sec["driver"], "openvswitch", "{sec}");
    assert_eq!(sec["ports"].as_array().unwrap().len(), 5, "{sec}");
    assert!(sec["ports"].as_array().unwrap().iter().all(|p| p["groups"] == json!([0])), "{sec}");
}

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
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert_eq!(o.code, Some(0), "openstack {} failed:\n{}{}", args.join(" "), o.stdout, o.stderr);
        o.stdout
    }
    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend_from_slice(&["-f", "json"]);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }
    fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert_ne!(o.code, Some(0), "openstack {} should have failed but printed:\n{}", args.join(" "), o.stdout);
        assert_ne!(o.code, Some(124), "openstack {} timed out", args.join(" "));
        o.stderr
    }
}

#[test]
fn openstack_client_manages_groups_rules_and_port_security() {
    let venv = venv();
    let tmp = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", tmp.path().join("dvr.db").display());
    let server = Server::start(&db, &tmp.path().join("server.log"));
    let seed = repo().join("labs/seed.yaml");
    apply(seed.to_str().unwrap(), &server.url);
    let osc = Osc { bin: venv.join("bin/openstack").display().to_string(), url: server.url.clone() };

    // The client lists: the default group appears with Neutron's four rules.
    let list = osc.json(&["security", "group", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["Name"], "default");
    let rules = osc.json(&["security", "group", "rule", "list", "default"]);
    assert_eq!(rules.as_array().unwrap().len(), 4, "{rules}");

    // The seed-secure groups, with the client.
    osc.ok(&["security", "group", "create", "--description", "ICMP and SSH from anywhere", "ssh-icmp"]);
    osc.ok(&["security", "group", "rule", "create", "--ingress", "--protocol", "icmp", "ssh-icmp"]);
    osc.ok(&["security", "group", "rule", "create", "--ingress", "--protocol", "tcp", "--dst-port", "22", "ssh-icmp"]);
    osc.ok(&["security", "group", "create", "--description", "HTTP from the members of ssh-icmp", "web"]);
    let r = osc.json(&[
        "security",
        "group",
        "rule",
        "create",
        "--ingress",
        "--protocol",
        "tcp",
        "--dst-port",
        "80",
        "--remote-group",
        "ssh-icmp",
        "web",
    ]);
    assert_eq!(r["port_range_min"], 80, "{r}");
    // Neutron's refusals, through the client.
    let e = osc.fails(&["security", "group", "rule", "create", "--ingress", "--protocol", "tcp", "--dst-port", "22", "ssh-icmp"]);
    assert!(e.contains("Security group rule already exists"), "{e}");
    let e = osc.fails(&["security", "group", "rule", "create", "--ingress", "--protocol", "icmp", "--icmp-type", "300", "web"]);
    assert!(e.contains("It must be 0 to 255"), "{e}");
    let e = osc.fails(&["security", "group", "create", "default"]);
    assert!(e.contains("Default security group already exists"), "{e}");
    // Ports: groups, address pairs.
    osc.ok(&["port", "set", "--security-group", "ssh-icmp", "vm1"]);
    osc.ok(&["port", "set", "--security-group", "ssh-icmp", "vm3"]);
    osc.ok(&["port", "set", "--no-security-group", "--security-group", "default", "--security-group", "web", "vm5"]);
    osc.ok(&["port", "set", "--allowed-address", "ip-address=192.168.1.100", "vm2"]);
    let vm1 = osc.json(&["port", "show", "vm1"]);
    assert_eq!(vm1["security_group_ids"].as_array().unwrap().len(), 2, "{vm1}");
    let e = osc.fails(&["security", "group", "delete", "web"]);
    assert!(e.contains("in use"), "{e}");
    let e = osc.fails(&["port", "set", "--disable-port-security", "vm1"]);
    assert!(e.contains("Port has security group associated"), "{e}");

    // The result is labs/seed-secure.yaml's security model (ids aside: the client's
    // rules are created in another order) and exports to a file that plans like the server.
    let want = security(&["-t", repo().join("labs/seed-secure.yaml").to_str().unwrap()]);
    let got = security(&["--server", &server.url]);
    let shape = |s: &Value| -> Vec<(String, Vec<String>)> {
        let groups = s["groups"].as_array().unwrap();
        let mut v: Vec<(String, Vec<String>)> = groups
            .iter()
            .map(|g| {
                let mut r: Vec<String> = g["rules"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| format!("{} {} {}", r["direction"], r["protocol"], r["remote"]["kind"]))
                    .collect();
                r.sort();
                (g["name"].as_str().unwrap().to_string(), r)
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(shape(&got), shape(&want));
    let members = |s: &Value| -> Vec<Value> { s["ports"].as_array().unwrap().iter().map(|p| p["groups"].clone()).collect() };
    assert_eq!(members(&got).len(), 5);
    let exported = tmp.path().join("exported.yaml");
    std::fs::write(&exported, out_ok(&["export", "--server", &server.url])).unwrap();
    assert!(plan(&["-t", exported.to_str().unwrap()]) == plan(&["--server", &server.url]));
    // Deleting what the client made: rule, then the group once no port uses it.
    osc.ok(&["port", "set", "--no-security-group", "--security-group", "default", "vm5"]);
    osc.ok(&["security", "group", "delete", "web"]);
    let list = osc.json(&["security", "group", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
}
