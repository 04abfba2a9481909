//! Security groups, rules and the port security attributes through the API:
//! Neutron's shapes, its default group and rules, its validation (each error
//! with status and type), groups in use, the change log and persistence.

mod common;

use serde_json::{Value, json};
use std::collections::BTreeSet;

/// The keys real Neutron 29 answers for a group and a rule (from the
/// real-Neutron capture `seed-nofip/api/security-groups.json`, without the
/// database-internal `standard_attr_id`).
const GROUP_KEYS: [&str; 12] = [
    "id",
    "name",
    "stateful",
    "tenant_id",
    "project_id",
    "description",
    "shared",
    "security_group_rules",
    "tags",
    "created_at",
    "updated_at",
    "revision_number",
];
const RULE_KEYS: [&str; 19] = [
    "id",
    "project_id",
    "security_group_id",
    "ethertype",
    "direction",
    "protocol",
    "port_range_min",
    "port_range_max",
    "remote_ip_prefix",
    "remote_address_group_id",
    "normalized_cidr",
    "remote_group_id",
    "belongs_to_default_sg",
    "description",
    "tags",
    "created_at",
    "updated_at",
    "revision_number",
    "tenant_id",
];

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn want(k: &[&str]) -> BTreeSet<String> {
    k.iter().map(|s| s.to_string()).collect()
}

/// (direction, ethertype, remote is the group itself) of each rule, sorted.
fn rule_shapes(g: &Value) -> Vec<(String, String, bool)> {
    let id = g["id"].as_str().unwrap();
    let mut v: Vec<(String, String, bool)> = g["security_group_rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (r["direction"].as_str().unwrap().into(), r["ethertype"].as_str().unwrap().into(), r["remote_group_id"].as_str() == Some(id))
        })
        .collect();
    v.sort();
    v
}

async fn error(s: &common::Srv, method: &str, path: &str, body: Option<Value>) -> (u16, String, String) {
    let (st, v) = s.req(method, path, body, &[]).await;
    (st, v["NeutronError"]["type"].as_str().unwrap_or("").into(), v["NeutronError"]["message"].as_str().unwrap_or("").into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_group_is_created_on_first_list_with_neutrons_rules() {
    let s = common::start().await;
    let (_, v) = s.get("/v2.0/dvr/changes?since=0").await;
    let rev0 = v["revision"].as_i64().unwrap();
    let (st, v) = s.get("/v2.0/security-groups").await;
    assert_eq!(st, 200, "{v}");
    let groups = v["security_groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{v}");
    let g = &groups[0];
    assert_eq!(g["name"], "default");
    assert_eq!(g["description"], "Default security group");
    assert_eq!(g["stateful"], true);
    assert_eq!(keys(g), want(&GROUP_KEYS), "{g}");
    for r in g["security_group_rules"].as_array().unwrap() {
        assert_eq!(keys(r), want(&RULE_KEYS), "{r}");
        assert_eq!(r["security_group_id"], g["id"]);
        assert!(r["protocol"].is_null() && r["port_range_min"].is_null() && r["remote_ip_prefix"].is_null(), "{r}");
    }
    assert_eq!(
        rule_shapes(g),
        vec![
            ("egress".into(), "IPv4".into(), false),
            ("egress".into(), "IPv6".into(), false),
            ("ingress".into(), "IPv4".into(), true),
            ("ingress".into(), "IPv6".into(), true)
        ]
    );
    // Listed again: the same group, nothing new written.
    let (_, v2) = s.get("/v2.0/security-groups").await;
    assert_eq!(v2["security_groups"][0]["id"], g["id"]);
    let (_, log) = s.get(&format!("/v2.0/dvr/changes?since={rev0}")).await;
    let kinds: Vec<(&str, &str)> =
        log["changes"].as_array().unwrap().iter().map(|c| (c["op"].as_str().unwrap(), c["resource"].as_str().unwrap())).collect();
    assert_eq!(kinds.iter().filter(|k| **k == ("create", "security_group")).count(), 1, "{log}");
    assert_eq!(kinds.iter().filter(|k| **k == ("create", "security_group_rule")).count(), 4, "{log}");
    assert_eq!(log["revision"].as_i64().unwrap(), rev0 + 1, "one transaction: {log}");
    // Another project gets its own default group when it lists.
    let (_, v) = s.get("/v2.0/security-groups?project_id=p2").await;
    let l = v["security_groups"].as_array().unwrap();
    assert_eq!(l.len(), 1, "{v}");
    assert_eq!(l[0]["project_id"], "p2");
    assert_ne!(l[0]["id"], g["id"]);
    // The rules list shows every rule (2 × 4).
    let (_, v) = s.get("/v2.0/security-group-rules").await;
    assert_eq!(v["security_group_rules"].as_array().unwrap().len(), 8, "{v}");
    // The extensions are listed.
    let (_, v) = s.get("/v2.0/extensions").await;
    let aliases: Vec<&str> = v["extensions"].as_array().unwrap().iter().map(|e| e["alias"].as_str().unwrap()).collect();
    for a in ["security-group", "port-security", "allowed-address-pairs"] {
        assert!(aliases.contains(&a), "{a} missing from {aliases:?}");
        let (st, _) = s.get(&format!("/v2.0/extensions/{a}")).await;
        assert_eq!(st, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_and_rules_crud_and_validation() {
    let s = common::start().await;
    let web = s.create("security-groups", "security_group", json!({"name": "web", "description": "web servers"})).await;
    let wid = web["id"].as_str().unwrap().to_string();
    assert_eq!(rule_shapes(&web), vec![("egress".into(), "IPv4".into(), false), ("egress".into(), "IPv6".into(), false)]);
    // Creating a group made the project's default group as well.
    let (_, v) = s.get("/v2.0/security-groups?name=default").await;
    assert_eq!(v["security_groups"].as_array().unwrap().len(), 1);
    let def = v["security_groups"][0]["id"].as_str().unwrap().to_string();
    // The model names groups per project: a second `web` is refused, in another project it is fine.
    let (st, k, msg) = error(&s, "POST", "/v2.0/security-groups", Some(json!({"security_group": {"name": "web"}}))).await;
    assert_eq!((st, k.as_str()), (409, "Conflict"), "{msg}");
    assert!(msg.contains("web"), "{msg}");
    let (st, v) = s.post("/v2.0/security-groups", json!({"security_group": {"name": "web", "project_id": "p2"}})).await;
    assert_eq!(st, 201, "{v}");
    let (st, _) = s.delete(&format!("/v2.0/security-groups/{}", v["security_group"]["id"].as_str().unwrap())).await;
    assert_eq!(st, 204);

    let rule = |extra: Value| {
        let mut b = json!({"security_group_id": wid, "direction": "ingress"});
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({ "security_group_rule": b })
    };
    let (st, v) = s.post("/v2.0/security-group-rules", rule(json!({"protocol": "TCP", "port_range_min": 22, "port_range_max": 22}))).await;
    assert_eq!(st, 201, "{v}");
    let ssh = v["security_group_rule"].clone();
    assert_eq!(keys(&ssh), want(&RULE_KEYS));
    assert_eq!(ssh["protocol"], "tcp");
    assert_eq!(ssh["ethertype"], "IPv4");
    assert_eq!(ssh["port_range_min"], 22);
    // The same rule again, even spelled with the protocol number and 0.0.0.0/0: 409 naming the existing rule.
    let (st, kind, msg) = error(
        &s,
        "POST",
        "/v2.0/security-group-rules",
        Some(rule(json!({"protocol": "6", "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "0.0.0.0/0"}))),
    )
    .await;
    assert_eq!((st, kind.as_str()), (409, "SecurityGroupRuleExists"), "{msg}");
    assert!(msg.contains(ssh["id"].as_str().unwrap()), "{msg}");
    // A host address gets its /32; the entire range becomes no range.
    let (st, v) = s
        .post(
            "/v2.0/security-group-rules",
            rule(json!({"protocol": "udp", "port_range_min": 1, "port_range_max": 65535, "remote_ip_prefix": "10.0.0.5"})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["security_group_rule"]["remote_ip_prefix"], "10.0.0.5/32");
    assert_eq!(v["security_group_rule"]["normalized_cidr"], "10.0.0.5/32");
    assert!(v["security_group_rule"]["port_range_min"].is_null() && v["security_group_rule"]["port_range_max"].is_null());
    // ICMP type/code.
    let (st, v) = s.post("/v2.0/security-group-rules", rule(json!({"protocol": "icmp", "port_range_min": 8, "port_range_max": 0}))).await;
    assert_eq!(st, 201, "{v}");
    // Remote group.
    let (st, v) = s
        .post(
            "/v2.0/security-group-rules",
            rule(json!({"protocol": "tcp", "port_range_min": 80, "port_range_max": 80, "remote_group_id": def})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let remote_rule = v["security_group_rule"]["id"].as_str().unwrap().to_string();

    // Every bad rule: status, Neutron type, and a message naming what is wrong.
    let bad: Vec<(Value, u16, &str, &str)> = vec![
        (json!({"port_range_min": 22, "port_range_max": 22}), 400, "InvalidInput", "Must also specify protocol"),
        (
            json!({"protocol": "tcp", "port_range_min": 30, "port_range_max": 20}),
            400,
            "InvalidInput",
            "port_range_min must be <= port_range_max",
        ),
        (json!({"protocol": "tcp", "port_range_min": 0, "port_range_max": 20}), 400, "InvalidInput", "Invalid value for port 0"),
        (json!({"protocol": "tcp", "port_range_min": 70000}), 400, "InvalidInput", "Invalid value for port 70000"),
        (json!({"protocol": "icmp", "port_range_min": 300}), 400, "InvalidInput", "ICMP type (port_range_min) 300"),
        (json!({"protocol": "icmp", "port_range_max": 3}), 400, "InvalidInput", "ICMP type (port-range-min) is missing"),
        (
            json!({"protocol": "gre", "port_range_min": 1, "port_range_max": 2}),
            400,
            "InvalidInput",
            "Ports cannot be specified for protocol 47",
        ),
        (json!({"protocol": "bogus"}), 400, "InvalidInput", "protocol \"bogus\" not supported"),
        (json!({"protocol": "ipv6-icmp"}), 400, "InvalidInput", "Invalid ethertype IPv4 for protocol ipv6-icmp"),
        (json!({"ethertype": "IPv5"}), 400, "InvalidInput", "ethertype 'IPv5' not supported"),
        (
            json!({"remote_ip_prefix": "10.0.0.0/8", "remote_group_id": def}),
            400,
            "InvalidInput",
            "Only one of remote_ip_prefix or remote_group_id",
        ),
        (json!({"remote_ip_prefix": "fd00::/8"}), 400, "InvalidInput", "Conflicting value ethertype IPv4 for CIDR fd00::/8"),
        (json!({"remote_ip_prefix": "10.0.0.300/8"}), 400, "InvalidCIDR", "Invalid CIDR 10.0.0.300/8"),
        (
            json!({"remote_group_id": "5b1b1fd0-0000-4000-8000-000000000000"}),
            404,
            "SecurityGroupNotFound",
            "5b1b1fd0-0000-4000-8000-000000000000",
        ),
        (json!({"direction": "sideways"}), 400, "BadRequest", "'sideways' is not in ['ingress', 'egress']"),
        (json!({"frobnicate": 1}), 400, "HTTPBadRequest", "Unrecognized attribute(s) 'frobnicate'"),
    ];
    for (extra, status, kind, text) in bad {
        let (st, k, msg) = error(&s, "POST", "/v2.0/security-group-rules", Some(rule(extra.clone()))).await;
        assert_eq!((st, k.as_str()), (status, kind), "{extra}: {msg}");
        assert!(msg.contains(text), "{extra}: `{msg}` should say `{text}`");
    }
    let (st, k, _) = error(
        &s,
        "POST",
        "/v2.0/security-group-rules",
        Some(json!({"security_group_rule": {"security_group_id": "5b1b1fd0-0000-4000-8000-000000000001", "direction": "ingress"}})),
    )
    .await;
    assert_eq!((st, k.as_str()), (404, "SecurityGroupNotFound"));
    let (st, k, _) = error(&s, "POST", "/v2.0/security-groups", Some(json!({"security_group": {"name": "Default"}}))).await;
    assert_eq!((st, k.as_str()), (409, "SecurityGroupDefaultAlreadyExists"));
    let (st, k, _) = error(&s, "PUT", &format!("/v2.0/security-groups/{def}"), Some(json!({"security_group": {"name": "x"}}))).await;
    assert_eq!((st, k.as_str()), (409, "SecurityGroupCannotUpdateDefault"));
    let (st, k, _) = error(&s, "GET", "/v2.0/security-groups/5b1b1fd0-0000-4000-8000-000000000002", None).await;
    assert_eq!((st, k.as_str()), (404, "SecurityGroupNotFound"));
    let (st, k, _) =
        error(&s, "PUT", &format!("/v2.0/security-group-rules/{remote_rule}"), Some(json!({"security_group_rule": {"protocol": "udp"}})))
            .await;
    assert_eq!((st, k.as_str()), (400, "HTTPBadRequest"));

    // Rename and describe; the group shows its rules in order.
    let (st, v) = s.put(&format!("/v2.0/security-groups/{wid}"), json!({"security_group": {"name": "www", "description": "d"}})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["security_group"]["name"], "www");
    assert_eq!(v["security_group"]["revision_number"], 2);
    assert_eq!(v["security_group"]["security_group_rules"].as_array().unwrap().len(), 6);
    // Filters on rules.
    let (_, v) = s.get(&format!("/v2.0/security-group-rules?security_group_id={wid}&protocol=tcp")).await;
    assert_eq!(v["security_group_rules"].as_array().unwrap().len(), 2, "{v}");

    // The default group is named by web's remote rule: in use until that rule goes.
    let (st, k, msg) = error(&s, "DELETE", &format!("/v2.0/security-groups/{def}"), None).await;
    assert_eq!((st, k.as_str()), (409, "SecurityGroupInUse"), "{msg}");
    assert!(msg.contains(&remote_rule), "{msg}");
    let (st, _) = s.delete(&format!("/v2.0/security-group-rules/{remote_rule}")).await;
    assert_eq!(st, 204);
    let (st, k, _) = error(&s, "DELETE", &format!("/v2.0/security-group-rules/{remote_rule}"), None).await;
    assert_eq!((st, k.as_str()), (404, "SecurityGroupRuleNotFound"));
    // Deleting a group deletes its rules.
    let (st, _) = s.delete(&format!("/v2.0/security-groups/{wid}")).await;
    assert_eq!(st, 204);
    let (_, v) = s.get(&format!("/v2.0/security-group-rules?security_group_id={wid}")).await;
    assert_eq!(v["security_group_rules"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_security_groups_port_security_and_address_pairs() {
    let s = common::start().await;
    let ids = common::build_seed(&s).await;
    let (vm1, vm2) = (ids["vm1"].clone(), ids["vm2"].clone());
    // Before any group exists, ports are in none (the deployment runs the noop driver).
    let (_, v) = s.get(&format!("/v2.0/ports/{vm1}")).await;
    assert_eq!(v["port"]["security_groups"], json!([]));
    assert_eq!(v["port"]["port_security_enabled"], true);
    assert_eq!(v["port"]["allowed_address_pairs"], json!([]));
    let web = s.create("security-groups", "security_group", json!({"name": "web"})).await;
    let wid = web["id"].as_str().unwrap().to_string();
    let (_, v) = s.get("/v2.0/security-groups?name=default").await;
    let def = v["security_groups"][0]["id"].as_str().unwrap().to_string();
    // Now every instance port without an explicit list is in the default group; service ports in none.
    let (_, v) = s.get("/v2.0/ports").await;
    for p in v["ports"].as_array().unwrap() {
        let owner = p["device_owner"].as_str().unwrap();
        if owner.starts_with("compute:") {
            assert_eq!(p["security_groups"], json!([def]), "{p}");
        } else {
            assert_eq!(p["security_groups"], json!([]), "{p}");
            assert_eq!(p["port_security_enabled"], false, "{p}");
        }
    }
    // The same through the generic (filtered, sorted) list path.
    let (_, v) = s.get("/v2.0/ports?sort_key=name&device_owner=compute:nova").await;
    assert!(v["ports"].as_array().unwrap().iter().all(|p| p["security_groups"] == json!([def])), "{v}");
    // The default group is in use by those ports.
    let (st, k, _) = error(&s, "DELETE", &format!("/v2.0/security-groups/{def}"), None).await;
    assert_eq!((st, k.as_str()), (409, "SecurityGroupInUse"));

    // Explicit groups on update and on create; a missing group is 404.
    let (st, v) = s.put(&format!("/v2.0/ports/{vm1}"), json!({"port": {"security_groups": [def, wid]}})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["port"]["security_groups"], json!([def, wid]));
    let (st, k, _) = error(
        &s,
        "PUT",
        &format!("/v2.0/ports/{vm1}"),
        Some(json!({"port": {"security_groups": ["5b1b1fd0-0000-4000-8000-000000000003"]}})),
    )
    .await;
    assert_eq!((st, k.as_str()), (404, "SecurityGroupNotFound"));
    let (st, v) = s
        .post(
            "/v2.0/ports",
            json!({"port": {"name": "vm6", "network_id": ids["test1"], "device_owner": "compute:nova", "binding:host_id": "compute2", "security_groups": [wid]}}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["port"]["security_groups"], json!([wid]));
    let vm6 = v["port"]["id"].as_str().unwrap().to_string();
    // web is in use now.
    let (st, k, msg) = error(&s, "DELETE", &format!("/v2.0/security-groups/{wid}"), None).await;
    assert_eq!((st, k.as_str()), (409, "SecurityGroupInUse"));
    assert!(msg.contains("vm1") && msg.contains("vm6"), "{msg}");

    // Allowed address pairs: the MAC defaults to the port's; duplicates and missing addresses are refused.
    let (st, v) = s.put(&format!("/v2.0/ports/{vm2}"), json!({"port": {"allowed_address_pairs": [{"ip_address": "192.168.1.100"}]}})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["port"]["allowed_address_pairs"], json!([{"ip_address": "192.168.1.100", "mac_address": v["port"]["mac_address"]}]));
    for (pairs, status, kind) in [
        (json!([{"ip_address": "192.168.1.100"}, {"ip_address": "192.168.1.100"}]), 400, "InvalidInput"),
        (json!([{"mac_address": "fa:16:3e:00:00:01"}]), 400, "InvalidInput"),
        (json!([{"ip_address": "nope"}]), 400, "BadRequest"),
    ] {
        let (st, k, msg) = error(&s, "PUT", &format!("/v2.0/ports/{vm2}"), Some(json!({"port": {"allowed_address_pairs": pairs}}))).await;
        assert_eq!((st, k.as_str()), (status, kind), "{pairs}: {msg}");
    }

    // Port security off: refused while the port has groups or pairs, allowed when both go in the same request.
    let (st, k, _) = error(&s, "PUT", &format!("/v2.0/ports/{vm1}"), Some(json!({"port": {"port_security_enabled": false}}))).await;
    assert_eq!((st, k.as_str()), (409, "PortSecurityPortHasSecurityGroup"));
    let (st, k, _) =
        error(&s, "PUT", &format!("/v2.0/ports/{vm2}"), Some(json!({"port": {"port_security_enabled": false, "security_groups": []}})))
            .await;
    assert_eq!((st, k.as_str()), (409, "AddressPairAndPortSecurityRequired"), "vm2 still has its address pair");
    let (st, v) = s.put(&format!("/v2.0/ports/{vm1}"), json!({"port": {"port_security_enabled": false, "security_groups": []}})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["port"]["port_security_enabled"], false);
    assert_eq!(v["port"]["security_groups"], json!([]));
    let (st, k, _) = error(&s, "PUT", &format!("/v2.0/ports/{vm1}"), Some(json!({"port": {"security_groups": [wid]}}))).await;
    assert_eq!((st, k.as_str()), (400, "InvalidInput"));
    let (st, k, _) = error(
        &s,
        "PUT",
        &format!("/v2.0/ports/{vm1}"),
        Some(json!({"port": {"allowed_address_pairs": [{"ip_address": "192.168.1.101"}]}})),
    )
    .await;
    assert_eq!((st, k.as_str()), (409, "AddressPairAndPortSecurityRequired"));
    // Created without port security: in no group, even once groups exist.
    let (st, v) =
        s.post("/v2.0/ports", json!({"port": {"name": "p-nosec", "network_id": ids["test1"], "port_security_enabled": false}})).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["port"]["security_groups"], json!([]));
    let (st, k, _) = error(
        &s,
        "POST",
        "/v2.0/ports",
        Some(json!({"port": {"name": "p-bad", "network_id": ids["test1"], "port_security_enabled": false, "security_groups": [wid]}})),
    )
    .await;
    assert_eq!((st, k.as_str()), (400, "InvalidInput"));
    // Service ports keep refusing security changes.
    let (_, v) = s.get("/v2.0/ports?device_owner=network:router_interface_distributed").await;
    let qr = v["ports"][0]["id"].as_str().unwrap().to_string();
    let (st, k, _) = error(&s, "PUT", &format!("/v2.0/ports/{qr}"), Some(json!({"port": {"security_groups": [wid]}}))).await;
    assert_eq!((st, k.as_str()), (409, "ServicePortInUse"));

    // Everything survives a restart of the server on the same database.
    let (_, before) = s.get(&format!("/v2.0/ports/{vm6}")).await;
    let (_, groups_before) = s.get("/v2.0/security-groups").await;
    let db = s.db_url();
    let common::Srv { running, dir, .. } = s;
    running.stop().await;
    let cfg = dvr_serve::Config { listen: "127.0.0.1:0".parse().unwrap(), db, ..Default::default() };
    let running = dvr_serve::start(cfg).await.unwrap();
    let s2 = common::Srv { running, dir, http: reqwest::Client::new(), token: None };
    let (_, after) = s2.get(&format!("/v2.0/ports/{vm6}")).await;
    assert_eq!(before, after);
    let (_, groups_after) = s2.get("/v2.0/security-groups").await;
    assert_eq!(groups_before, groups_after);
}
