//! Bad input and broken rules: every request answers Neutron's status code
//! and error type, and a refused request writes nothing.

mod common;

use serde_json::{Value, json};

/// Method, path and body (a JSON string body is sent raw, unparsed).
type Request = (&'static str, String, Option<Value>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_answer_neutron_errors_and_write_nothing() {
    let s = common::start().await;
    let ids = common::build_seed(&s).await;
    let id = |k: &str| ids[k].clone();
    let rid = id("router1");
    // Objects some cases need: a tenant network with no router, and an instance on it.
    let n3 = s.create("networks", "network", json!({"name": "test3", "provider:segmentation_id": 300})).await;
    let s3 = s.create("subnets", "subnet", json!({"name": "test3-v4", "network_id": n3["id"], "cidr": "192.168.3.0/24"})).await;
    let vm6 = s
        .create(
            "ports",
            "port",
            json!({"name": "vm6", "network_id": n3["id"], "device_owner": "compute:nova", "binding:host_id": "compute1"}),
        )
        .await;
    let n4 = s.create("networks", "network", json!({"name": "test4"})).await;
    let s4 = s.create("subnets", "subnet", json!({"name": "test4-v4", "network_id": n4["id"], "cidr": "192.168.1.0/25"})).await;
    let r2 = s.create("routers", "router", json!({"name": "router2"})).await;
    let tiny = s.create("networks", "network", json!({"name": "tiny"})).await;
    s.create("subnets", "subnet", json!({"name": "tiny-v4", "network_id": tiny["id"], "cidr": "10.9.0.0/29"})).await;
    // /29: 6 host addresses, gateway and DHCP take two; fill the other four.
    for i in 0..4 {
        s.create("ports", "port", json!({"name": format!("fill{i}"), "network_id": tiny["id"]})).await;
    }
    let (_, vm1) = s.get(&format!("/v2.0/ports/{}", id("vm1"))).await;
    let vm1_mac = vm1["port"]["mac_address"].as_str().unwrap().to_string();
    let (_, dhcp) = s.get(&format!("/v2.0/ports?device_owner=network:dhcp&network_id={}", id("test1"))).await;
    let dhcp_id = dhcp["ports"][0]["id"].as_str().unwrap().to_string();
    let (_, hosts) = s.get("/v2.0/dvr/hosts?name=compute1").await;
    let c1_mac = hosts["hosts"][0]["dvr_mac"].as_str().unwrap().to_string();
    let nil = "6f9e1c2a-0000-4000-8000-000000000000";

    // Neutron 29's exact wording for the conflicts clients match on
    // (tests/reference/api-parity/neutron.json).
    let dup_ip = format!("IP address 192.168.1.9 already allocated in subnet {}", id("test1-v4"));
    let dup_mac = format!("Unable to complete operation for network {}. The mac address {vm1_mac} is in use.", id("test1"));
    let before = s.running.store.snapshot().revision;
    let raw = |m: &'static str, p: String, b: &'static str| (m, p, Some(Value::String(b.into())));
    let j = |m: &'static str, p: String, b: Value| (m, p, Some(b));
    let g = |m: &'static str, p: String| (m, p, None::<Value>);
    let net = |v: Value| json!({"network": v});
    let port = |v: Value| json!({"port": v});
    let cases: Vec<(Request, u16, &str, &str)> = vec![
        (raw("POST", "/v2.0/networks".into(), "{\"network\": {"), 400, "HTTPBadRequest", "Body contains invalid data"),
        (j("POST", "/v2.0/networks".into(), net(json!({"name": "x", "foo": 1}))), 400, "HTTPBadRequest", "Unrecognized attribute(s) 'foo'"),
        (j("POST", "/v2.0/networks".into(), json!({"net": {}})), 400, "BadRequest", "Unable to find 'network'"),
        (
            j("POST", "/v2.0/subnets".into(), json!({"subnet": {"network_id": "xyz", "cidr": "10.0.0.0/24"}})),
            400,
            "BadRequest",
            "not a valid UUID",
        ),
        (j("POST", "/v2.0/subnets".into(), json!({"subnet": {"network_id": nil, "cidr": "10.0.0.0/24"}})), 404, "NetworkNotFound", nil),
        (
            j("POST", "/v2.0/subnets".into(), json!({"subnet": {"name": "b", "network_id": id("test1"), "cidr": "192.168.300.0/24"}})),
            400,
            "InvalidInput",
            "is not an IPv4 CIDR",
        ),
        (
            j("POST", "/v2.0/subnets".into(), json!({"subnet": {"name": "b", "network_id": n4["id"], "cidr": "172.16.5.1/24"}})),
            400,
            "InvalidInput",
            "host bits",
        ),
        (
            j(
                "POST",
                "/v2.0/subnets".into(),
                json!({"subnet": {"name": "b", "network_id": n4["id"], "cidr": "fd00::/64", "ip_version": 6}}),
            ),
            400,
            "BadRequest",
            "IPv4 only",
        ),
        (
            j(
                "POST",
                "/v2.0/ports".into(),
                port(json!({"name": "dup", "network_id": id("test1"), "fixed_ips": [{"ip_address": "192.168.1.9"}]})),
            ),
            409,
            "IpAddressAlreadyAllocated",
            &dup_ip,
        ),
        (
            j("POST", "/v2.0/ports".into(), port(json!({"name": "dupmac", "network_id": id("test1"), "mac_address": vm1_mac}))),
            409,
            "MacAddressInUse",
            &dup_mac,
        ),
        (
            j(
                "POST",
                "/v2.0/networks".into(),
                net(json!({"name": "v", "provider:physical_network": "physnet1", "provider:segmentation_id": 196})),
            ),
            409,
            "VlanIdInUse",
            "Unable to create the network. The VLAN 196 on physical network physnet1 is in use.",
        ),
        (g("GET", "/v2.0/networks?colour=blue".into()), 400, "HTTPBadRequest", "['colour'] is invalid attribute for filtering"),
        (g("GET", "/v2.0/ports?sort_key=colour".into()), 400, "HTTPBadRequest", "['colour'] is invalid attribute for sort_keys"),
        (g("GET", "/v2.0/networks?limit=-1".into()), 400, "BadRequest", "Bad limit request"),
        (g("DELETE", format!("/v2.0/networks/{}", id("test1"))), 409, "NetworkInUse", ""),
        (g("DELETE", format!("/v2.0/subnets/{}", id("test1-v4"))), 409, "SubnetInUse", "router interface"),
        (g("DELETE", format!("/v2.0/routers/{rid}")), 409, "RouterInUse", ""),
        (
            j("POST", "/v2.0/floatingips".into(), json!({"floatingip": {"floating_network_id": id("external"), "port_id": vm6["id"]}})),
            404,
            "ExternalGatewayForFloatingIPNotFound",
            "no router connects",
        ),
        (
            j("PUT", format!("/v2.0/routers/{rid}/add_router_interface"), json!({"subnet_id": id("test1-v4")})),
            400,
            "BadRequest",
            "already has a port",
        ),
        (
            j("PUT", format!("/v2.0/routers/{}/add_router_interface", r2["id"].as_str().unwrap()), json!({"subnet_id": id("test1-v4")})),
            400,
            "BadRequest",
            "already attached",
        ),
        (j("PUT", format!("/v2.0/routers/{rid}/add_router_interface"), json!({"subnet_id": s4["id"]})), 400, "BadRequest", "overlaps"),
        (g("GET", format!("/v2.0/networks/{nil}")), 404, "NetworkNotFound", ""),
        (g("GET", "/v2.0/networks/test1".into()), 404, "NetworkNotFound", ""),
        (g("GET", format!("/v2.0/subnets/{nil}")), 404, "SubnetNotFound", ""),
        (g("GET", format!("/v2.0/ports/{nil}")), 404, "PortNotFound", ""),
        (g("GET", format!("/v2.0/routers/{nil}")), 404, "RouterNotFound", ""),
        (g("GET", format!("/v2.0/floatingips/{nil}")), 404, "FloatingIPNotFound", ""),
        (g("GET", "/v2.0/bogus".into()), 404, "HTTPNotFound", ""),
        (g("DELETE", "/v2.0/networks".into()), 405, "HTTPMethodNotAllowed", ""),
        (
            j("PUT", format!("/v2.0/networks/{}", id("test1")), net(json!({"id": nil}))),
            400,
            "HTTPBadRequest",
            "Cannot update read-only attribute id",
        ),
        (
            j(
                "POST",
                "/v2.0/ports".into(),
                port(json!({"name": "out", "network_id": id("test1"), "fixed_ips": [{"ip_address": "10.9.9.9"}]})),
            ),
            400,
            "InvalidIpForNetwork",
            "10.9.9.9",
        ),
        (
            j("POST", "/v2.0/ports".into(), port(json!({"name": "m", "network_id": id("test1"), "mac_address": "zz:16:3e:00:00:01"}))),
            400,
            "BadRequest",
            "not a valid MAC",
        ),
        (g("DELETE", format!("/v2.0/ports/{dhcp_id}")), 409, "ServicePortInUse", "network:dhcp"),
        (
            j("PUT", format!("/v2.0/routers/{rid}/add_router_interface"), json!({"subnet_id": s3["id"], "port_id": vm6["id"]})),
            400,
            "BadRequest",
            "both",
        ),
        (j("PUT", format!("/v2.0/routers/{rid}/add_router_interface"), json!({})), 400, "BadRequest", "Either subnet_id or port_id"),
        (
            j("PUT", format!("/v2.0/routers/{rid}/remove_router_interface"), json!({"subnet_id": s3["id"]})),
            404,
            "RouterInterfaceNotFoundForSubnet",
            "",
        ),
        (
            j("POST", "/v2.0/floatingips".into(), json!({"floatingip": {"floating_network_id": id("test1")}})),
            400,
            "BadRequest",
            "not a valid external network",
        ),
        (
            j("POST", "/v2.0/floatingips".into(), json!({"floatingip": {"floating_network_id": id("external"), "port_id": id("vm1")}})),
            409,
            "FloatingIPPortAlreadyAssociated",
            "",
        ),
        (
            j(
                "POST",
                "/v2.0/floatingips".into(),
                json!({"floatingip": {"floating_network_id": id("external"), "floating_ip_address": "10.200.0.5"}}),
            ),
            400,
            "BadRequest",
            "outside",
        ),
        (j("POST", "/v2.0/routers".into(), json!({"router": {"name": "h", "ha": true}})), 400, "BadRequest", "HA"),
        (
            j("POST", "/v2.0/networks".into(), net(json!({"name": "a", "admin_state_up": "maybe"}))),
            400,
            "InvalidInput",
            "cannot be converted to boolean",
        ),
        (j("POST", "/v2.0/networks".into(), net(json!({"name": "gre", "provider:network_type": "gre"}))), 400, "BadRequest", "gre"),
        (
            j(
                "POST",
                "/v2.0/ports".into(),
                port(json!({"name": "vm1", "network_id": id("test1"), "device_owner": "compute:nova", "binding:host_id": "compute2"})),
            ),
            409,
            "Conflict",
            "vm1",
        ),
        (
            j("POST", "/v2.0/ports".into(), port(json!({"name": "full", "network_id": tiny["id"]}))),
            409,
            "IpAddressGenerationFailure",
            "no free address",
        ),
        (
            j("PUT", format!("/v2.0/routers/{rid}"), json!({"router": {"external_gateway_info": null}})),
            409,
            "RouterExternalGatewayInUseByFloatingIp",
            "",
        ),
        (
            j("PUT", format!("/v2.0/routers/{rid}/remove_router_interface"), json!({"subnet_id": id("test1-v4")})),
            409,
            "RouterInterfaceInUseByFloatingIP",
            "",
        ),
        (
            j("POST", "/v2.0/dvr/hosts".into(), json!({"host": {"name": "c9", "role": "compute", "dvr_mac": c1_mac}})),
            409,
            "MacAddressInUse",
            "",
        ),
        (j("POST", "/v2.0/dvr/hosts".into(), json!({"host": {"name": "c9", "role": "storage"}})), 400, "BadRequest", "storage"),
        (g("GET", "/v2.0/networks?sort_key=name&sort_dir=sideways".into()), 400, "BadRequest", "sort_dir"),
        (g("GET", format!("/v2.0/networks?limit=1&marker={nil}")), 404, "NetworkNotFound", nil),
        (g("GET", "/v2.0/extensions/tag".into()), 404, "ExtensionNotFound", ""),
        (
            j("POST", "/v2.0/ports".into(), port(json!({"name": "own", "network_id": id("test1"), "device_owner": "network:dhcp"}))),
            400,
            "BadRequest",
            "device_owner",
        ),
        (
            j(
                "POST",
                "/v2.0/subnets".into(),
                json!({"subnet": {"name": "b", "network_id": n4["id"], "cidr": "172.16.9.0/24", "allocation_pools": [{"start": "172.16.9.1", "end": "172.16.9.9"}]}}),
            ),
            400,
            "InvalidInput",
            "gateway",
        ),
    ];
    assert!(cases.len() >= 30);
    let mut wrong: Vec<String> = Vec::new();
    for ((method, path, body), status, kind, needle) in &cases {
        let (st, v) = match body {
            Some(Value::String(raw)) => {
                let url = format!("{}{}", s.running.url(), path);
                let r = s
                    .http
                    .request(method.parse().unwrap(), url)
                    .header("content-type", "application/json")
                    .body(raw.clone())
                    .send()
                    .await
                    .unwrap();
                let st = r.status().as_u16();
                (st, serde_json::from_str(&r.text().await.unwrap()).unwrap_or(Value::Null))
            }
            other => s.req(method, path, other.clone(), &[]).await,
        };
        // Every case is checked and every mismatch listed at once.
        // Neutron's wording in `message`; where it is terse, the object at
        // fault and the fix are in `detail`: the needle may be in either.
        let msg = format!(
            "{} {}",
            v["NeutronError"]["message"].as_str().unwrap_or_default(),
            v["NeutronError"]["detail"].as_str().unwrap_or_default()
        );
        if st != *status || v["NeutronError"]["type"] != *kind || !v["NeutronError"]["detail"].is_string() || !msg.contains(needle) {
            wrong.push(format!("{method} {path}: want {status} {kind} `{needle}`, got {st} {v}"));
        }
    }
    assert!(wrong.is_empty(), "{} of {} cases answered otherwise:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
    assert_eq!(s.running.store.snapshot().revision, before, "a refused request wrote something");
    // Positive control: the same server still accepts a valid change.
    s.create("networks", "network", json!({"name": "fine"})).await;
    assert_eq!(s.running.store.snapshot().revision, before + 1);
}
