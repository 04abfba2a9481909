//! The HTTP API: Neutron v2.0 routes and the DVR extension, with Neutron's
//! list semantics (filters, `fields`, `limit`/`marker` with `<collection>_links`,
//! `sort_key`/`sort_dir`), `If-Match: revision_number=N`, and token auth.

use crate::body::{self, Attrs};
use crate::convert::resources_to_spec;
use crate::error::ApiError;
use crate::logic::{Action, settle};
use crate::mutate::{self, Coll, Settings};
use crate::resources::*;
use crate::store::{AgentRow, Store};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};
use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Neutron's `agent_down_time`: an agent is alive when it reported within this.
pub const AGENT_DOWN_TIME_S: i64 = 75;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct App {
    /// The store.
    pub store: Arc<Store>,
    /// Mutation settings.
    pub settings: Arc<Settings>,
    /// `Some(token)` when `--auth token`.
    pub token: Option<Arc<String>>,
}

type Q = Query<Vec<(String, String)>>;
type Res = Result<Response, ApiError>;

/// Largest request body accepted (bulk creates of a whole deployment).
pub const MAX_BODY: usize = 64 << 20;

/// Every route.
pub fn router(app: App) -> Router {
    let mut r = Router::new()
        .route("/", get(versions))
        .route("/v2.0", get(resources_doc))
        .route("/v2.0/", get(resources_doc))
        .route("/v2.0/extensions", get(extensions))
        .route("/v2.0/extensions/{alias}", get(extension))
        .route("/v2.0/routers/{id}/add_router_interface", put(add_interface))
        .route("/v2.0/routers/{id}/remove_router_interface", put(remove_interface))
        .route("/v2.0/agents", get(agents))
        .route("/v2.0/agents/{id}", get(agent).delete(delete_agent))
        .route("/v2.0/dvr/agents/report", post(report_agent))
        .route("/v2.0/dvr/ports/{id}/status", put(set_port_status))
        .route("/v2.0/dvr/topology", get(topology))
        .route("/v2.0/dvr/changes", get(changes))
        .route("/v2.0/dvr/deployment", get(deployment).put(set_deployment));
    for coll in [Coll::Networks, Coll::Subnets, Coll::Ports, Coll::Routers, Coll::FloatingIps, Coll::Hosts, Coll::ExternalHosts] {
        r = r
            .route(
                &format!("/v2.0/{}", coll.path()),
                get(move |s: State<App>, h: HeaderMap, q: Q| list(s, h, q, coll)).post(move |s: State<App>, b: Bytes| create(s, b, coll)),
            )
            .route(
                &format!("/v2.0/{}/{{id}}", coll.path()),
                get(move |s: State<App>, p: Path<String>, q: Q| show(s, p, q, coll))
                    .put(move |s: State<App>, p: Path<String>, h: HeaderMap, b: Bytes| update(s, p, h, b, coll))
                    .delete(move |s: State<App>, p: Path<String>, h: HeaderMap| delete(s, p, h, coll)),
            );
    }
    r.fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "HTTPNotFound", "The resource could not be found.") })
        .layer(middleware::from_fn_with_state(app.clone(), auth))
        .layer(middleware::map_response(method_not_allowed))
        // Bulk creates of a whole deployment (`dvr apply` sends every new
        // instance port of a 1,000-host file in one request, ~5 MB) must fit;
        // axum's default of 2 MB would split them and change allocation order.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

/// `--auth token`: everything but the version document needs `X-Auth-Token`.
async fn auth(State(app): State<App>, req: Request, next: Next) -> Response {
    if let Some(token) = &app.token
        && req.uri().path() != "/"
    {
        let given = req.headers().get("x-auth-token").and_then(|v| v.to_str().ok());
        if given != Some(token.as_str()) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "HTTPUnauthorized",
                "Authentication required: send the server's token in the X-Auth-Token header",
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// axum answers a wrong method with an empty 405; give it Neutron's body.
async fn method_not_allowed(res: Response) -> Response {
    if res.status() == StatusCode::METHOD_NOT_ALLOWED && !res.headers().contains_key("content-type") {
        let mut out = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "HTTPMethodNotAllowed", "The method is not allowed for this resource.")
            .into_response();
        if let Some(allow) = res.headers().get("allow") {
            out.headers_mut().insert("allow", allow.clone());
        }
        return out;
    }
    res
}

fn base_url(h: &HeaderMap) -> String {
    let host = h.get("host").and_then(|v| v.to_str().ok()).unwrap_or("127.0.0.1:9696");
    format!("http://{host}")
}

async fn versions(h: HeaderMap) -> Response {
    let href = format!("{}/v2.0/", base_url(&h));
    axum::Json(json!({"versions": [{"id": "v2.0", "status": "CURRENT", "links": [{"href": href, "rel": "self"}]}]})).into_response()
}

async fn resources_doc(h: HeaderMap) -> Response {
    let base = base_url(&h);
    let list: Vec<Value> = [
        ("network", "networks"),
        ("subnet", "subnets"),
        ("port", "ports"),
        ("router", "routers"),
        ("floatingip", "floatingips"),
        ("agent", "agents"),
    ]
    .iter()
    .map(|(n, c)| json!({"name": n, "collection": c, "links": [{"href": format!("{base}/v2.0/{c}"), "rel": "self"}]}))
    .collect();
    axum::Json(json!({"resources": list})).into_response()
}

const EXTENSIONS: [(&str, &str, &str); 12] = [
    ("agent", "agent", "The agent management extension (list and show)."),
    ("binding", "Port Binding", "Expose port bindings of a virtual port to external application."),
    ("dvr", "Distributed Virtual Router", "Enables configuration of Distributed Virtual Routers."),
    ("external-net", "Neutron external network", "Adds external network attribute to network resource."),
    (
        "ext-gw-mode",
        "Neutron L3 Configurable external gateway mode",
        "Extension of the router abstraction for specifying whether SNAT should occur on the external gateway.",
    ),
    ("provider", "Provider Network", "Expose mapping of virtual networks to physical networks."),
    (
        "router",
        "Neutron L3 Router",
        "Router abstraction for basic L3 forwarding between L2 Neutron networks and access to external networks via a NAT gateway.",
    ),
    ("project-id", "project_id field enabled", "Extension that indicates that project_id field is enabled."),
    ("standard-attr-revisions", "Resource revision numbers", "This extension will display the revision number of neutron resources."),
    (
        "standard-attr-timestamp",
        "Resource timestamps",
        "Adds created_at and updated_at fields to all Neutron resources that have Neutron standard attributes.",
    ),
    ("pagination", "Pagination support", "Extension that indicates that pagination is enabled."),
    ("sorting", "Sorting support", "Extension that indicates that sorting is enabled."),
];

fn ext_json(alias: &str, name: &str, desc: &str) -> Value {
    json!({"alias": alias, "name": name, "description": desc, "updated": "2026-12-01T00:00:00-00:00", "links": []})
}

async fn extensions() -> Response {
    let mut list: Vec<Value> = EXTENSIONS.iter().map(|(a, n, d)| ext_json(a, n, d)).collect();
    list.push(ext_json(
        "dvr-topology",
        "dvr topology (not Neutron)",
        "Hosts, external hosts, topology, change log and agent reports under /v2.0/dvr/.",
    ));
    axum::Json(json!({"extensions": list})).into_response()
}

async fn extension(Path(alias): Path<String>) -> Res {
    let (a, n, d) = EXTENSIONS
        .iter()
        .find(|(a, _, _)| *a == alias)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "ExtensionNotFound", format!("Extension with alias {alias} does not exist")))?;
    Ok(axum::Json(json!({"extension": ext_json(a, n, d)})).into_response())
}

/// An object as Neutron shows it (with the derived keys Neutron adds).
fn view(r: &Resources, coll: Coll, id: &Uuid) -> Option<Value> {
    let mut v = match coll {
        Coll::Networks => {
            let n = r.networks.get(id)?;
            let mut v = serde_json::to_value(n).ok()?;
            let subnets: Vec<String> = r.subnets.values().filter(|s| s.network_id == *id).map(|s| s.common.id.to_string()).collect();
            v["subnets"] = json!(subnets);
            v["availability_zone_hints"] = json!([]);
            v["availability_zones"] = json!(["nova"]);
            v["port_security_enabled"] = json!(true);
            v["ipv4_address_scope"] = Value::Null;
            v["ipv6_address_scope"] = Value::Null;
            // auto-allocated-topology: Neutron 29 shows it on external networks.
            if n.external {
                v["is_default"] = json!(false);
            }
            v
        }
        Coll::Subnets => {
            let sub = r.subnets.get(id)?;
            let mut v = serde_json::to_value(sub).ok()?;
            // Neutron 29's subnet-external-network extension: the network's flag.
            v["router:external"] = json!(r.networks.get(&sub.network_id).is_some_and(|n| n.external));
            // (no `segment_id`: Neutron shows it only with the segments plugin)
            for k in ["ipv6_ra_mode", "ipv6_address_mode", "subnetpool_id"] {
                v[k] = Value::Null;
            }
            v["service_types"] = json!([]);
            v
        }
        Coll::Ports => {
            let p = r.ports.get(id)?;
            let mut v = serde_json::to_value(p).ok()?;
            v["binding:profile"] = json!({});
            v["binding:vif_details"] = serde_json::to_value(VifDetails(&p.vif_type)).ok()?;
            v["security_groups"] = json!([]);
            v["allowed_address_pairs"] = json!([]);
            v["extra_dhcp_opts"] = json!([]);
            v["port_security_enabled"] = json!(false);
            v
        }
        Coll::Routers => {
            let mut v = serde_json::to_value(r.routers.get(id)?).ok()?;
            v["availability_zone_hints"] = json!([]);
            v["availability_zones"] = json!(["nova"]);
            v["flavor_id"] = Value::Null;
            v
        }
        Coll::FloatingIps => {
            let f = r.floatingips.get(id)?;
            let mut v = serde_json::to_value(f).ok()?;
            // Neutron's floating IPs have no name (nor, without the
            // port-forwarding plugin, `port_forwardings`).
            if let Some(m) = v.as_object_mut() {
                m.remove("name");
            }
            // Neutron's fip-port-details extension: what the associated port is.
            v["port_details"] = f.port_id.and_then(|p| r.ports.get(&p)).map_or(Value::Null, |p| {
                json!({
                    "name": p.common.name, "network_id": p.network_id, "mac_address": p.mac_address,
                    "admin_state_up": p.admin_state_up, "status": p.status, "device_id": p.device_id,
                    "device_owner": p.device_owner,
                })
            });
            v
        }
        Coll::Hosts => serde_json::to_value(r.hosts.get(id)?).ok()?,
        Coll::ExternalHosts => serde_json::to_value(r.external_hosts.get(id)?).ok()?,
    };
    v["tenant_id"] = v["project_id"].clone();
    Some(v)
}

fn ids(r: &Resources, coll: Coll) -> Vec<Uuid> {
    match coll {
        Coll::Networks => r.networks.keys().copied().collect(),
        Coll::Subnets => r.subnets.keys().copied().collect(),
        Coll::Ports => r.ports.keys().copied().collect(),
        Coll::Routers => r.routers.keys().copied().collect(),
        Coll::FloatingIps => r.floatingips.keys().copied().collect(),
        Coll::Hosts => r.hosts.keys().copied().collect(),
        Coll::ExternalHosts => r.external_hosts.keys().copied().collect(),
    }
}

/// A filter value matches a JSON value the way Neutron compares query strings.
fn value_matches(v: &Value, want: &str) -> bool {
    match v {
        Value::String(s) => s == want,
        Value::Bool(b) => want.eq_ignore_ascii_case(if *b { "true" } else { "false" }),
        Value::Number(n) => n.to_string() == want,
        Value::Null => want.is_empty() || want == "None" || want == "null",
        Value::Array(a) => a.iter().any(|x| value_matches(x, want)),
        Value::Object(_) => false,
    }
}

const SPECIAL: [&str; 6] = ["fields", "limit", "marker", "sort_key", "sort_dir", "page_reverse"];

fn matches_filters(v: &Value, filters: &[(String, Vec<String>)]) -> bool {
    filters.iter().all(|(k, wants)| {
        if k == "fixed_ips" {
            // `fixed_ips=ip_address=…` / `fixed_ips=subnet_id=…`: OR within a sub-key, AND across.
            let mut by_key: Vec<(&str, Vec<&str>)> = Vec::new();
            for w in wants {
                let (sk, sv) = w.split_once('=').unwrap_or(("ip_address", w.as_str()));
                match by_key.iter_mut().find(|(k2, _)| *k2 == sk) {
                    Some((_, vs)) => vs.push(sv),
                    None => by_key.push((sk, vec![sv])),
                }
            }
            let ips = v.get("fixed_ips").and_then(Value::as_array).cloned().unwrap_or_default();
            return by_key.iter().all(|(sk, vs)| ips.iter().any(|ip| ip.get(*sk).is_some_and(|x| vs.iter().any(|w| value_matches(x, w)))));
        }
        match v.get(k) {
            // Neutron ignores filters on attributes a resource does not have.
            None => true,
            Some(x) => wants.iter().any(|w| value_matches(x, w)),
        }
    })
}

fn cmp_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64().partial_cmp(&y.as_f64()).unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        _ => a.to_string().cmp(&b.to_string()),
    }
}

fn only_fields(v: Value, fields: &[String]) -> Value {
    if fields.is_empty() {
        return v;
    }
    let Value::Object(m) = v else { return v };
    Value::Object(m.into_iter().filter(|(k, _)| fields.iter().any(|f| f == k)).collect())
}

/// Neutron's list semantics over already rendered objects.
///
/// `known`: the attributes of this resource (the keys of one rendered
/// object); a filter on anything else answers 400 as Neutron 29 does
/// (`filter_validation`). `None` (an empty collection) checks nothing.
pub fn list_objects(
    mut objs: Vec<Value>,
    q: &[(String, String)],
    base: &str,
    plural: &str,
    known: Option<&serde_json::Map<String, Value>>,
) -> Result<Value, ApiError> {
    let get_all = |k: &str| q.iter().filter(|(a, _)| a == k).map(|(_, v)| v.clone()).collect::<Vec<_>>();
    if let Some(known) = known {
        let mut bad: Vec<&str> = q.iter().map(|(k, _)| k.as_str()).filter(|k| !SPECIAL.contains(k) && !known.contains_key(*k)).collect();
        bad.dedup();
        if !bad.is_empty() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "HTTPBadRequest",
                format!("{bad:?} is invalid attribute for filtering").replace('"', "'"),
            )
            .with_detail(format!("{plural} can be filtered on: {}", known.keys().cloned().collect::<Vec<_>>().join(", "))));
        }
    }
    let mut filters: Vec<(String, Vec<String>)> = Vec::new();
    for (k, v) in q.iter().filter(|(k, _)| !SPECIAL.contains(&k.as_str())) {
        match filters.iter_mut().find(|(f, _)| f == k) {
            Some((_, vs)) => vs.push(v.clone()),
            None => filters.push((k.clone(), vec![v.clone()])),
        }
    }
    objs.retain(|o| matches_filters(o, &filters));
    let keys = get_all("sort_key");
    let dirs = get_all("sort_dir");
    for d in &dirs {
        if d != "asc" && d != "desc" {
            return Err(ApiError::bad_request(format!("Invalid input for sort_dir. Reason: '{d}' is not one of asc, desc.")));
        }
    }
    let sortable = |k: &str| match known {
        Some(m) => m.contains_key(k),
        None => objs.first().is_none_or(|o| o.get(k).is_some()),
    };
    if let Some(bad) = keys.iter().find(|k| !sortable(k)) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "HTTPBadRequest", format!("['{bad}'] is invalid attribute for sort_keys")));
    }
    if !keys.is_empty() {
        objs.sort_by(|a, b| {
            for (i, k) in keys.iter().enumerate() {
                let o = cmp_values(&a[k.as_str()], &b[k.as_str()]);
                let o = if dirs.get(i).map(String::as_str) == Some("desc") { o.reverse() } else { o };
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        });
    }
    let reverse = get_all("page_reverse").first().is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if reverse {
        objs.reverse();
    }
    let limit = match get_all("limit").first() {
        None => None,
        Some(l) => match l.parse::<usize>() {
            Ok(0) => None,
            Ok(n) => Some(n),
            Err(_) => {
                return Err(ApiError::bad_request(format!("Bad limit request: Limit must be an integer 0 or greater and not '{l}'.")));
            }
        },
    };
    let marker = get_all("marker").first().cloned();
    let start = match &marker {
        None => 0,
        Some(m) => objs
            .iter()
            .position(|o| o["id"].as_str() == Some(m.as_str()))
            .map(|p| p + 1)
            // Neutron looks the marker up as an object of the collection.
            .ok_or_else(|| {
                let (kind, what) = match plural {
                    "networks" => ("NetworkNotFound", "Network"),
                    "subnets" => ("SubnetNotFound", "Subnet"),
                    "ports" => ("PortNotFound", "Port"),
                    "routers" => ("RouterNotFound", "Router"),
                    "floatingips" => ("FloatingIPNotFound", "Floating IP"),
                    "agents" => ("AgentNotFound", "Agent"),
                    _ => ("MarkerNotFound", "Marker"),
                };
                ApiError::not_found(kind, what, m).with_detail(format!("marker {m} is not in the list; start again without marker"))
            })?,
    };
    let total = objs.len();
    let end = limit.map(|l| (start + l).min(total)).unwrap_or(total);
    let mut page: Vec<Value> = objs.drain(start.min(total)..end).collect();
    let mut links = Vec::new();
    if let Some(l) = limit {
        let keep: Vec<String> = q
            .iter()
            .filter(|(k, _)| k != "marker" && k != "limit" && k != "page_reverse")
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect();
        let link = |marker: &str, rev: bool| {
            let mut parts = vec![format!("limit={l}")];
            parts.extend(keep.iter().cloned());
            parts.push(format!("marker={marker}"));
            if rev {
                parts.push("page_reverse=True".into());
            }
            format!("{base}/v2.0/{plural}?{}", parts.join("&"))
        };
        let (next_rel, prev_rel) = if reverse { ("previous", "next") } else { ("next", "previous") };
        if end < total
            && let Some(last) = page.last().and_then(|o| o["id"].as_str())
        {
            links.push(json!({"rel": next_rel, "href": link(last, reverse)}));
        }
        if marker.is_some()
            && let Some(first) = page.first().and_then(|o| o["id"].as_str())
        {
            links.push(json!({"rel": prev_rel, "href": link(first, !reverse)}));
        }
    }
    if reverse {
        page.reverse();
    }
    let fields = get_all("fields");
    let page: Vec<Value> = page.into_iter().map(|o| only_fields(o, &fields)).collect();
    let mut out = json!({ plural: page });
    if !links.is_empty() {
        out[format!("{plural}_links")] = json!(links);
    }
    Ok(out)
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A port as Neutron shows it, serialized straight to the response (no
/// intermediate JSON tree): the fast path of large port lists.
#[derive(serde::Serialize)]
struct PortView<'a> {
    #[serde(flatten)]
    port: &'a Port,
    tenant_id: &'a str,
    #[serde(rename = "binding:profile")]
    profile: Empty,
    #[serde(rename = "binding:vif_details")]
    vif_details: VifDetails<'a>,
    security_groups: [(); 0],
    allowed_address_pairs: [(); 0],
    extra_dhcp_opts: [(); 0],
    port_security_enabled: bool,
}

/// `binding:vif_details` as Neutron's Open vSwitch mechanism driver reports it
/// for a port bound with `vif_type` `ovs` (what Nova's os-vif reads to plug
/// it); `{}` for any other binding (unbound, distributed), as Neutron does.
struct VifDetails<'a>(&'a str);
impl serde::Serialize for VifDetails<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        if self.0 != "ovs" {
            return s.serialize_map(Some(0))?.end();
        }
        let mut m = s.serialize_map(Some(6))?;
        m.serialize_entry("connectivity", "l2")?;
        m.serialize_entry("port_filter", &true)?;
        m.serialize_entry("ovs_hybrid_plug", &false)?;
        m.serialize_entry("datapath_type", "system")?;
        m.serialize_entry("bridge_name", "br-int")?;
        m.serialize_entry("bound_drivers", &json!({"0": "openvswitch"}))?;
        m.end()
    }
}

/// Serializes as `{}`.
struct Empty;
impl serde::Serialize for Empty {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        s.serialize_map(Some(0))?.end()
    }
}

async fn list(State(app): State<App>, h: HeaderMap, Query(q): Q, coll: Coll) -> Res {
    let snap = app.store.current().await?;
    const TYPED: [&str; 6] = ["network_id", "device_owner", "device_id", "binding:host_id", "name", "id"];
    if coll == Coll::Ports && q.iter().all(|(k, _)| TYPED.contains(&k.as_str())) {
        // Only typed filters: the prefilter is the whole filter, nothing to sort or page.
        let views: Vec<PortView> = snap
            .res
            .ports
            .iter()
            .filter(|(id, _)| prefilter(&snap.res, coll, id, &q))
            .map(|(_, p)| PortView {
                port: p,
                tenant_id: &p.common.project_id,
                profile: Empty,
                vif_details: VifDetails(&p.vif_type),
                security_groups: [],
                allowed_address_pairs: [],
                extra_dhcp_opts: [],
                port_security_enabled: false,
            })
            .collect();
        #[derive(serde::Serialize)]
        struct Ports<'a> {
            ports: Vec<PortView<'a>>,
        }
        let body = serde_json::to_vec(&Ports { ports: views }).map_err(|e| ApiError::internal(e.to_string()))?;
        return Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response());
    }
    let objs: Vec<Value> =
        ids(&snap.res, coll).iter().filter(|id| prefilter(&snap.res, coll, id, &q)).filter_map(|id| view(&snap.res, coll, id)).collect();
    let known = ids(&snap.res, coll).first().and_then(|id| view(&snap.res, coll, id)).and_then(|v| v.as_object().cloned());
    let out = list_objects(objs, &q, &base_url(&h), coll.plural(), known.as_ref())?;
    Ok(axum::Json(out).into_response())
}

/// Cheap typed checks of the most common port filters, so a filtered list of
/// 20,000 ports renders only the matches (the full filter runs afterwards).
fn prefilter(r: &Resources, coll: Coll, id: &Uuid, q: &[(String, String)]) -> bool {
    if coll != Coll::Ports {
        return true;
    }
    let Some(p) = r.ports.get(id) else { return false };
    let any = |key: &str, have: &str| {
        let mut wants = q.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).peekable();
        wants.peek().is_none() || wants.any(|w| w == have)
    };
    any("network_id", &p.network_id.to_string())
        && any("device_owner", &p.device_owner)
        && any("device_id", &p.device_id)
        && any("binding:host_id", &p.host_id)
        && any("name", &p.common.name)
        && any("id", &p.common.id.to_string())
}

fn path_id(coll: Coll, id: &str) -> Result<Uuid, ApiError> {
    // A name (the client looks names up this way first) is simply not found.
    Uuid::parse_str(id).map_err(|_| coll.not_found(id))
}

async fn show(State(app): State<App>, Path(id): Path<String>, Query(q): Q, coll: Coll) -> Res {
    let uid = path_id(coll, &id)?;
    let snap = app.store.current().await?;
    let v = view(&snap.res, coll, &uid).ok_or_else(|| coll.not_found(&id))?;
    let fields: Vec<String> = q.iter().filter(|(k, _)| k == "fields").map(|(_, v)| v.clone()).collect();
    Ok(axum::Json(json!({ coll.singular(): only_fields(v, &fields) })).into_response())
}

async fn create(State(app): State<App>, b: Bytes, coll: Coll) -> Res {
    let v = body::parse_json(&b)?;
    let (objs, bulk) = body::objects(&v, coll.singular(), coll.plural())?;
    let settings = app.settings.clone();
    let (snap, made) = app
        .store
        .write(|cur| {
            let mut new = cur.clone();
            let mut made = Vec::new();
            for a in &objs {
                made.push(mutate::create(&mut new, coll, a, &settings)?);
            }
            settle(&mut new, Action::Create(coll.singular())).map_err(|e| {
                // Neutron's wording where a client may match it; the model's explanation as detail.
                let network = objs.first().and_then(|a| a.get("network_id")).and_then(Value::as_str).unwrap_or_default();
                let attr = |k: &str| objs.first().and_then(|a| a.get(k)).and_then(Value::as_str).unwrap_or_default().to_string();
                let neutron = |e: ApiError, message: String| {
                    let detail = e.message.clone();
                    ApiError { message, detail, ..e }
                };
                match (coll, e.kind) {
                    (Coll::Ports, "IpAddressGenerationFailure") => {
                        neutron(e, format!("No more IP addresses available on network {network}."))
                    }
                    (Coll::Subnets, "InvalidInput") => {
                        let cidr = attr("cidr");
                        match cidr.parse::<ipnet::Ipv4Net>() {
                            Err(_) => neutron(e, format!("Invalid input for operation: {cidr} is not in a CIDR format.")),
                            Ok(c) if cur.subnets.values().any(|s| {
                                s.network_id.to_string() == network
                                    && s.cidr.parse::<ipnet::Ipv4Net>().is_ok_and(|o| o.contains(&c.network()) || c.contains(&o.network()))
                            }) =>
                            {
                                neutron(
                                    e,
                                    format!(
                                        "Invalid input for operation: Requested subnet with cidr: {cidr} for network: {network} overlaps with another subnet."
                                    ),
                                )
                            }
                            Ok(_) => e,
                        }
                    }
                    (Coll::FloatingIps, "ExternalGatewayForFloatingIPNotFound") => {
                        let port = attr("port_id");
                        let subnet = Uuid::parse_str(&port)
                            .ok()
                            .and_then(|p| cur.ports.get(&p))
                            .and_then(|p| {
                                p.fixed_ips.first().map(|f| f.subnet_id).or_else(|| {
                                    cur.subnets.values().find(|s| s.network_id == p.network_id).map(|s| s.common.id)
                                })
                            })
                            .map(|s| s.to_string())
                            .unwrap_or_default();
                        neutron(
                            e,
                            format!(
                                "External network {} is not reachable from subnet {subnet}.  Therefore, cannot associate Port {port} with a Floating IP.",
                                attr("floating_network_id")
                            ),
                        )
                    }
                    _ => e,
                }
            })?;
            Ok((new, made))
        })
        .await?;
    let mut views: Vec<Value> = made.iter().filter_map(|id| view(&snap.res, coll, id)).collect();
    if coll == Coll::Networks {
        // Neutron 29 answers a network's creation with `is_default` (auto-allocated-topology) whatever the network.
        for v in &mut views {
            v["is_default"] = json!(false);
        }
    }
    let body = if bulk { json!({ coll.plural(): views }) } else { json!({ coll.singular(): views.into_iter().next() }) };
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// `If-Match: revision_number=N` against the object's current revision.
fn check_if_match(h: &HeaderMap, current: Option<u64>) -> Result<(), ApiError> {
    let Some(v) = h.get("if-match").and_then(|v| v.to_str().ok()) else { return Ok(()) };
    for part in v.split(',').map(str::trim) {
        if let Some(n) = part.strip_prefix("revision_number=") {
            let want: u64 =
                n.parse().map_err(|_| ApiError::bad_request(format!("If-Match `{part}`: the revision number must be an integer")))?;
            if let Some(cur) = current
                && cur != want
            {
                return Err(ApiError::new(
                    StatusCode::PRECONDITION_FAILED,
                    "RevisionNumberConstraintFailed",
                    format!("Constrained to {want}, but current revision is {cur}"),
                ));
            }
        }
    }
    Ok(())
}

async fn update(State(app): State<App>, Path(id): Path<String>, h: HeaderMap, b: Bytes, coll: Coll) -> Res {
    let uid = path_id(coll, &id)?;
    let v = body::parse_json(&b)?;
    let a = body::object(&v, coll.singular())?;
    let (snap, ()) = app
        .store
        .write(|cur| {
            if !coll.contains(cur, &uid) {
                return Err(coll.not_found(&id));
            }
            check_if_match(&h, coll.revision(cur, &uid))?;
            let mut new = cur.clone();
            mutate::update(&mut new, coll, uid, &a)?;
            settle(&mut new, Action::Update(coll.singular()))?;
            Ok((new, ()))
        })
        .await?;
    let v = view(&snap.res, coll, &uid).ok_or_else(|| coll.not_found(&id))?;
    Ok(axum::Json(json!({ coll.singular(): v })).into_response())
}

async fn delete(State(app): State<App>, Path(id): Path<String>, h: HeaderMap, coll: Coll) -> Res {
    let uid = path_id(coll, &id)?;
    app.store
        .write(|cur| {
            if !coll.contains(cur, &uid) {
                return Err(coll.not_found(&id));
            }
            check_if_match(&h, coll.revision(cur, &uid))?;
            let mut new = cur.clone();
            mutate::delete(&mut new, coll, uid)?;
            settle(&mut new, Action::Delete(coll.singular()))?;
            Ok((new, ()))
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn interface(app: App, id: String, b: Bytes, add: bool) -> Res {
    let uid = path_id(Coll::Routers, &id)?;
    let v = body::parse_json(&b)?;
    let a: Attrs = v.as_object().cloned().ok_or_else(|| ApiError::bad_request("Body contains invalid data: expected a JSON object"))?;
    let (_, out) = app
        .store
        .write(|cur| {
            let mut new = cur.clone();
            let out = if add { mutate::add_interface(&mut new, uid, &a)? } else { mutate::remove_interface(&mut new, uid, &a)? };
            settle(&mut new, if add { Action::AddInterface } else { Action::RemoveInterface }).map_err(|e| {
                if e.kind == "RouterInterfaceInUseByFloatingIP" {
                    let detail = e.message.clone();
                    ApiError { message: format!(
                        "Router interface for subnet {} on router {uid} cannot be deleted, as it is required by one or more floating IPs.",
                        out["subnet_id"].as_str().unwrap_or_default()
                    ), detail, ..e }
                } else {
                    e
                }
            })?;
            Ok((new, out))
        })
        .await?;
    Ok(axum::Json(out).into_response())
}

async fn add_interface(State(app): State<App>, Path(id): Path<String>, b: Bytes) -> Res {
    interface(app, id, b, true).await
}

async fn remove_interface(State(app): State<App>, Path(id): Path<String>, b: Bytes) -> Res {
    interface(app, id, b, false).await
}

async fn topology(State(app): State<App>) -> Res {
    let snap = app.store.current().await?;
    let spec = resources_to_spec(&snap.res);
    let mut v = serde_json::to_value(&spec).map_err(|e| ApiError::internal(e.to_string()))?;
    v["revision"] = json!(snap.revision);
    Ok(axum::Json(v).into_response())
}

async fn deployment(State(app): State<App>) -> Res {
    let snap = app.store.current().await?;
    Ok(axum::Json(json!({"deployment": {"name": snap.res.name, "revision": snap.revision}})).into_response())
}

async fn set_deployment(State(app): State<App>, b: Bytes) -> Res {
    let v = body::parse_json(&b)?;
    let a = body::object(&v, "deployment")?;
    body::check_keys(&a, &["name"], &["revision"], "PUT")?;
    let name = body::string(&a, "name")?;
    let (snap, ()) = app
        .store
        .write(|cur| {
            let mut new = cur.clone();
            new.name = name;
            Ok((new, ()))
        })
        .await?;
    Ok(axum::Json(json!({"deployment": {"name": snap.res.name, "revision": snap.revision}})).into_response())
}

/// Long-poll the change log: answers as soon as something newer than
/// `since` exists, or after `timeout` seconds (at most 300) with no changes.
async fn changes(State(app): State<App>, Query(q): Q) -> Res {
    let get = |k: &str| q.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
    let since: i64 = match get("since") {
        None => 0,
        Some(s) => s.parse().map_err(|_| body::bad_value("since", format!("'{s}' is not a revision number")))?,
    };
    let timeout: f64 = match get("timeout") {
        None => 0.0,
        Some(s) => s
            .parse::<f64>()
            .ok()
            .filter(|t| t.is_finite() && *t >= 0.0)
            .ok_or_else(|| body::bad_value("timeout", format!("'{s}' is not a number of seconds")))?,
    };
    let limit: Option<usize> = match get("limit") {
        None => None,
        Some(s) => Some(
            s.parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| body::bad_value("limit", format!("'{s}' is not a positive number of entries")))?,
        ),
    };
    let mut rx = app.store.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(timeout.min(300.0));
    loop {
        let rev = app.store.current().await?.revision;
        if since > rev {
            // The follower is ahead of the store (a new database): answer at once
            // with the store's revision so it resynchronizes instead of waiting.
            return Ok(axum::Json(json!({"revision": rev, "changes": []})).into_response());
        }
        if rev > since {
            let mut list = app.store.changes(since, rev).await?;
            let mut upto = rev;
            if let Some(n) = limit
                && list.len() > n
            {
                // Whole revisions only: cut after the revision of entry n.
                upto = list[n - 1].revision;
                list.retain(|c| c.revision <= upto);
            }
            return Ok(axum::Json(json!({"revision": upto, "changes": list})).into_response());
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => continue,
            _ => return Ok(axum::Json(json!({"revision": rev, "changes": []})).into_response()),
        }
    }
}

fn agent_view(a: &AgentRow, now: i64) -> Value {
    let fmt = |t: i64| chrono::DateTime::from_timestamp(t, 0).map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default();
    let b = &a.body;
    json!({
        "id": a.id, "agent_type": a.agent_type, "host": a.host,
        "binary": b.get("binary").cloned().unwrap_or(Value::Null),
        "topic": b.get("topic").cloned().unwrap_or(Value::Null),
        "configurations": b.get("configurations").cloned().unwrap_or(json!({})),
        "availability_zone": b.get("availability_zone").cloned().unwrap_or(Value::Null),
        "admin_state_up": true, "alive": now - a.heartbeat < AGENT_DOWN_TIME_S,
        "created_at": fmt(a.created), "started_at": fmt(a.created), "heartbeat_timestamp": fmt(a.heartbeat),
        "description": Value::Null, "resources_synced": Value::Null,
    })
}

async fn agents(State(app): State<App>, h: HeaderMap, Query(q): Q) -> Res {
    let now = chrono::Utc::now().timestamp();
    let objs: Vec<Value> = app.store.agents().await?.iter().map(|a| agent_view(a, now)).collect();
    let known = objs.first().and_then(|v| v.as_object().cloned());
    Ok(axum::Json(list_objects(objs, &q, &base_url(&h), "agents", known.as_ref())?).into_response())
}

async fn agent(State(app): State<App>, Path(id): Path<String>) -> Res {
    let now = chrono::Utc::now().timestamp();
    let a = app.store.agents().await?.into_iter().find(|a| a.id == id).ok_or_else(|| ApiError::not_found("AgentNotFound", "Agent", &id))?;
    Ok(axum::Json(json!({"agent": agent_view(&a, now)})).into_response())
}

async fn delete_agent(State(app): State<App>, Path(id): Path<String>) -> Res {
    if app.store.delete_agent(&id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found("AgentNotFound", "Agent", &id))
    }
}

/// DVR extension: a host's agent reports a port's status (Neutron's agents
/// do this over RPC with `update_device_up`/`update_device_down`): `ACTIVE`
/// once the port's flows are in place, `DOWN` when it is unplugged. Only a
/// port bound to a host can be `ACTIVE`.
async fn set_port_status(State(app): State<App>, Path(id): Path<String>, b: Bytes) -> Res {
    let v = body::parse_json(&b)?;
    let a = body::object(&v, "port")?;
    body::check_keys(&a, &["status"], &[], "PUT")?;
    let status = body::string(&a, "status")?.unwrap_or_default();
    if status != "ACTIVE" && status != "DOWN" {
        return Err(body::bad_value("status", format!("'{status}' is not ACTIVE or DOWN")));
    }
    let uuid: Uuid = id.parse().map_err(|_| ApiError::not_found("PortNotFound", "Port", &id))?;
    let (snap, ()) = app
        .store
        .write(|cur| {
            let mut new = cur.clone();
            let p = new.ports.get_mut(&uuid).ok_or_else(|| ApiError::not_found("PortNotFound", "Port", &id))?;
            if status == "ACTIVE" && p.host_id.is_empty() {
                return Err(ApiError::conflict(
                    "PortNotBound",
                    format!("port {id} is not bound to a host (binding:host_id is empty): only a bound port can be ACTIVE"),
                ));
            }
            if p.status != status {
                Arc::make_mut(p).status = status.clone();
            }
            Ok((new, ()))
        })
        .await?;
    let p = snap.res.ports.get(&uuid).ok_or_else(|| ApiError::not_found("PortNotFound", "Port", &id))?;
    Ok(axum::Json(json!({"port": {"id": id, "status": p.status}})).into_response())
}

/// DVR extension: an agent reports itself (registration and heartbeat).
async fn report_agent(State(app): State<App>, b: Bytes) -> Res {
    let v = body::parse_json(&b)?;
    let a = body::object(&v, "agent")?;
    body::check_keys(&a, &["host", "agent_type", "binary", "topic", "configurations", "availability_zone"], &["id", "alive"], "POST")?;
    let host = body::string(&a, "host")?
        .filter(|h| !h.is_empty())
        .ok_or_else(|| ApiError::bad_request("Failed to parse request. Required attribute 'host' not specified"))?;
    let agent_type = body::string(&a, "agent_type")?
        .ok_or_else(|| ApiError::bad_request("Failed to parse request. Required attribute 'agent_type' not specified"))?;
    if !["Open vSwitch agent", "L3 agent", "DHCP agent", "Metadata agent"].contains(&agent_type.as_str()) {
        return Err(body::bad_value(
            "agent_type",
            format!("'{agent_type}' is not one of Open vSwitch agent, L3 agent, DHCP agent, Metadata agent"),
        ));
    }
    if let Some(c) = a.get("configurations")
        && !c.is_object()
    {
        return Err(body::bad_value("configurations", "must be an object (agent_mode, bridge_mappings, …)"));
    }
    let now = chrono::Utc::now().timestamp();
    let existing = app.store.agents().await?.into_iter().find(|x| x.host == host && x.agent_type == agent_type);
    let row = AgentRow {
        id: existing
            .as_ref()
            .map(|e| e.id.clone())
            .unwrap_or_else(|| dvr_model::alloc::derive_id("agent", &format!("{host}:{agent_type}")).to_string()),
        host,
        agent_type,
        body: Value::Object(a),
        heartbeat: now,
        created: existing.map(|e| e.created).unwrap_or(now),
    };
    app.store.upsert_agent(&row).await?;
    Ok(axum::Json(json!({"agent": agent_view(&row, now)})).into_response())
}
