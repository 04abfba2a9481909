//! The Neutron objects the server keeps, in Neutron's own JSON shapes.
//!
//! Every struct serializes to exactly the body Neutron answers (keys copied
//! from real Neutron 29 captures), so the store keeps them as that JSON, the
//! change log carries them verbatim and `dvr export` can read the same types
//! back from any Neutron-compatible server. Nothing here knows about the
//! database: [`Resources`] is the whole deployment as plain data.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;

/// The attributes every Neutron resource has (`standard-attr-*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Common {
    /// UUID.
    pub id: Uuid,
    /// Free name (Neutron does not require it; the model needs one, see `convert`).
    #[serde(default)]
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Owner project (no Keystone: whatever the client sent, else empty).
    #[serde(default)]
    pub project_id: String,
    /// Bumped on every change of the object; `If-Match` compares against it.
    #[serde(default)]
    pub revision_number: u64,
    /// `2026-12-01T15:02:03Z`.
    #[serde(default)]
    pub created_at: String,
    /// `2026-12-01T15:02:03Z`.
    #[serde(default)]
    pub updated_at: String,
    /// Always empty: tags are not implemented, the key is there for clients.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A Neutron network with the `provider` and `external-net` extensions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Network {
    /// Standard attributes.
    #[serde(flatten)]
    pub common: Common,
    /// Administrative state (kept, not used by the dataplane).
    #[serde(default = "yes")]
    pub admin_state_up: bool,
    /// Always `ACTIVE`.
    #[serde(default = "active")]
    pub status: String,
    /// Visible to every project.
    #[serde(default)]
    pub shared: bool,
    /// Router gateway / floating IP network.
    #[serde(rename = "router:external", default)]
    pub external: bool,
    /// `vlan` or `flat`.
    #[serde(rename = "provider:network_type", default)]
    pub network_type: String,
    /// Physical network of the segment.
    #[serde(rename = "provider:physical_network", default)]
    pub physical_network: Option<String>,
    /// VLAN id (allocated when not given).
    #[serde(rename = "provider:segmentation_id", default)]
    pub segmentation_id: Option<u64>,
    /// MTU reported to clients.
    #[serde(default = "mtu")]
    pub mtu: u32,
    /// Subnet ids; derived from the subnets on output, ignored on input.
    #[serde(default)]
    pub subnets: Vec<Uuid>,
}

/// One `allocation_pools` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// First address.
    pub start: String,
    /// Last address.
    pub end: String,
}

/// One `host_routes` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination CIDR.
    pub destination: String,
    /// Next hop.
    pub nexthop: String,
}

/// A Neutron IPv4 subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Subnet {
    /// Standard attributes.
    #[serde(flatten)]
    pub common: Common,
    /// Owning network.
    pub network_id: Uuid,
    /// Always 4.
    #[serde(default = "four")]
    pub ip_version: u8,
    /// Prefix.
    pub cidr: String,
    /// Gateway (first host address when not given).
    #[serde(default)]
    pub gateway_ip: Option<String>,
    /// DHCP enabled.
    #[serde(default = "yes")]
    pub enable_dhcp: bool,
    /// Allocation ranges (the whole subnet minus the gateway by default).
    #[serde(default)]
    pub allocation_pools: Vec<Pool>,
    /// Static routes for DHCP.
    #[serde(default)]
    pub host_routes: Vec<Route>,
    /// DNS servers for DHCP.
    #[serde(default)]
    pub dns_nameservers: Vec<String>,
}

/// One `fixed_ips` entry of a port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixedIp {
    /// Subnet of the address.
    pub subnet_id: Uuid,
    /// The address.
    pub ip_address: String,
}

/// A Neutron port with the `binding` extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Port {
    /// Standard attributes.
    #[serde(flatten)]
    pub common: Common,
    /// Network.
    pub network_id: Uuid,
    /// MAC (allocated under fa:16:3e when not given).
    #[serde(default)]
    pub mac_address: String,
    /// Addresses (allocated when not given). DVR uses one IPv4 address per port.
    #[serde(default)]
    pub fixed_ips: Vec<FixedIp>,
    /// `compute:nova`, `network:dhcp`, `network:router_interface_distributed`, …
    #[serde(default)]
    pub device_owner: String,
    /// Instance, router or agent id.
    #[serde(default)]
    pub device_id: String,
    /// Host the port is bound to.
    #[serde(rename = "binding:host_id", default)]
    pub host_id: String,
    /// `ovs`, `distributed` or `unbound`.
    #[serde(rename = "binding:vif_type", default)]
    pub vif_type: String,
    /// Always `normal`.
    #[serde(rename = "binding:vnic_type", default = "normal")]
    pub vnic_type: String,
    /// `ACTIVE` when bound, else `DOWN`.
    #[serde(default)]
    pub status: String,
    /// Administrative state.
    #[serde(default = "yes")]
    pub admin_state_up: bool,
    /// Security groups as the client gave them; `None` (never given) means
    /// "the project's `default` group", resolved when shown and when the
    /// deployment is built, so a port created before its project had any
    /// group follows the default group once it exists (Neutron binds it at
    /// creation; see docs/api.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_groups: Option<Vec<Uuid>>,
    /// `port-security` extension; `None` means the default (enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_security_enabled: Option<bool>,
    /// `allowed-address-pairs` extension: addresses (a VIP, a prefix) the
    /// port may also send from; each pair's MAC defaults to the port's.
    #[serde(default)]
    pub allowed_address_pairs: Vec<AddressPair>,
}

/// One `allowed_address_pairs` entry of a port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressPair {
    /// An IPv4 address or prefix (`10.0.0.5` or `10.0.0.0/24`).
    pub ip_address: String,
    /// The MAC the address may be sent from (the port's own when not given).
    #[serde(default)]
    pub mac_address: String,
}

/// A Neutron security group (`security-group` extension). Its rules are
/// separate objects ([`SecurityGroupRule`]) as in Neutron, shown inline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SecurityGroup {
    /// Standard attributes; the name `default` is reserved for the
    /// project's default group, which the server creates itself.
    #[serde(flatten)]
    pub common: Common,
    /// Stateful (conntrack) group; stateless groups are not supported by the
    /// plan, so this stays true.
    #[serde(default = "yes")]
    pub stateful: bool,
    /// Always false: no RBAC sharing.
    #[serde(default)]
    pub shared: bool,
}

/// A Neutron security group rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SecurityGroupRule {
    /// Standard attributes (`name` stays empty: rules have none).
    #[serde(flatten)]
    pub common: Common,
    /// The group the rule belongs to.
    pub security_group_id: Uuid,
    /// `ingress` or `egress`.
    pub direction: String,
    /// `IPv4` or `IPv6` (IPv6 rules are kept for clients, the IPv4-only
    /// dataplane ignores them).
    #[serde(default = "ipv4")]
    pub ethertype: String,
    /// `tcp`, `udp`, `icmp`, another name or a number as a string; `None` is any.
    #[serde(default)]
    pub protocol: Option<String>,
    /// First port (TCP/UDP…) or ICMP type.
    #[serde(default)]
    pub port_range_min: Option<u16>,
    /// Last port or ICMP code.
    #[serde(default)]
    pub port_range_max: Option<u16>,
    /// Peer prefix (`0.0.0.0/0` form, with its mask).
    #[serde(default)]
    pub remote_ip_prefix: Option<String>,
    /// Peer group: the addresses of its member ports.
    #[serde(default)]
    pub remote_group_id: Option<Uuid>,
}

/// `external_gateway_info` of a router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayInfo {
    /// External network.
    pub network_id: Uuid,
    /// SNAT through the gateway.
    #[serde(default = "yes")]
    pub enable_snat: bool,
    /// The `qg-` port's addresses (output).
    #[serde(default)]
    pub external_fixed_ips: Vec<FixedIp>,
}

/// A Neutron router with the `dvr` and `ext-gw-mode` extensions. Its
/// interfaces are its ports (`device_owner` router_interface*, `device_id` =
/// router id), as in Neutron.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Router {
    /// Standard attributes.
    #[serde(flatten)]
    pub common: Common,
    /// Administrative state.
    #[serde(default = "yes")]
    pub admin_state_up: bool,
    /// Always `ACTIVE`.
    #[serde(default = "active")]
    pub status: String,
    /// DVR (default from the server's config) or legacy.
    #[serde(default = "yes")]
    pub distributed: bool,
    /// Always false: no L3 HA.
    #[serde(default)]
    pub ha: bool,
    /// Gateway to an external network.
    #[serde(default)]
    pub external_gateway_info: Option<GatewayInfo>,
    /// Always empty: extra routes are not implemented.
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// A Neutron floating IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FloatingIp {
    /// Standard attributes (`name` stays empty, as in Neutron).
    #[serde(flatten)]
    pub common: Common,
    /// External network it comes from.
    pub floating_network_id: Uuid,
    /// Its address (allocated when not given).
    #[serde(default)]
    pub floating_ip_address: String,
    /// Associated instance port.
    #[serde(default)]
    pub port_id: Option<Uuid>,
    /// The associated port's address.
    #[serde(default)]
    pub fixed_ip_address: Option<String>,
    /// Router that serves the association.
    #[serde(default)]
    pub router_id: Option<Uuid>,
    /// `ACTIVE` when associated, else `DOWN`.
    #[serde(default)]
    pub status: String,
}

/// DVR extension: a host of the deployment and its DVR MAC (Neutron keeps
/// these in agent configurations and `dvr_host_macs`; here they are explicit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Host {
    /// Standard attributes; `name` is the host name agents report.
    #[serde(flatten)]
    pub common: Common,
    /// `controller`, `network` or `compute`.
    pub role: String,
    /// Physical network → OVS bridge.
    #[serde(default)]
    pub bridge_mappings: IndexMap<String, String>,
    /// Physical network → wire-facing NIC.
    #[serde(default)]
    pub nics: IndexMap<String, String>,
    /// Unique per host, allocated from the server's `dvr_base_mac`.
    #[serde(default)]
    pub dvr_mac: Option<String>,
}

/// DVR extension: a machine outside the cloud on an external network (the
/// lab builds it; Neutron has no such object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ExternalHost {
    /// Standard attributes.
    #[serde(flatten)]
    pub common: Common,
    /// External network.
    pub network_id: Uuid,
    /// Its address (allocated when not given).
    #[serde(default)]
    pub ip_address: Option<String>,
}

/// The whole deployment as Neutron objects plus the DVR extension objects,
/// each collection in creation order (the order allocation follows).
///
/// Objects are shared (`Arc`): a mutation clones the deployment cheaply and
/// copies only the objects it changes (`Arc::make_mut`), and the store finds
/// the changed objects by pointer before comparing any value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    /// Deployment label (the topology file's `name`).
    pub name: Option<String>,
    /// DVR extension hosts.
    pub hosts: IndexMap<Uuid, Arc<Host>>,
    /// Networks.
    pub networks: IndexMap<Uuid, Arc<Network>>,
    /// Subnets.
    pub subnets: IndexMap<Uuid, Arc<Subnet>>,
    /// Ports, implicit ones included.
    pub ports: IndexMap<Uuid, Arc<Port>>,
    /// Routers.
    pub routers: IndexMap<Uuid, Arc<Router>>,
    /// Floating IPs.
    pub floatingips: IndexMap<Uuid, Arc<FloatingIp>>,
    /// DVR extension external hosts.
    pub external_hosts: IndexMap<Uuid, Arc<ExternalHost>>,
    /// Security groups.
    pub security_groups: IndexMap<Uuid, Arc<SecurityGroup>>,
    /// Security group rules, in creation order.
    pub security_group_rules: IndexMap<Uuid, Arc<SecurityGroupRule>>,
}

/// Insert a new object (wrapped for sharing).
pub fn ins<T>(coll: &mut IndexMap<Uuid, Arc<T>>, id: Uuid, v: T) {
    coll.insert(id, Arc::new(v));
}

pub use dvr_model::live::IMPLICIT_OWNERS;

/// Whether a `device_owner` is one of a router's interface owners.
pub fn is_router_interface(owner: &str) -> bool {
    owner == "network:router_interface_distributed" || owner == "network:router_interface"
}

impl Resources {
    /// Build from plain lists (what `GET /v2.0/<collection>` answers), keeping
    /// their order: the entry point for `dvr export`.
    #[allow(clippy::too_many_arguments)]
    pub fn from_lists(
        name: Option<String>,
        hosts: Vec<Host>,
        networks: Vec<Network>,
        subnets: Vec<Subnet>,
        ports: Vec<Port>,
        routers: Vec<Router>,
        floatingips: Vec<FloatingIp>,
        external_hosts: Vec<ExternalHost>,
    ) -> Resources {
        Resources {
            name,
            hosts: hosts.into_iter().map(|x| (x.common.id, Arc::new(x))).collect(),
            networks: networks.into_iter().map(|x| (x.common.id, Arc::new(x))).collect(),
            subnets: subnets.into_iter().map(|x| (x.common.id, Arc::new(x))).collect(),
            ports: ports.into_iter().map(|x| (x.common.id, Arc::new(x))).collect(),
            routers: routers.into_iter().map(|x| (x.common.id, Arc::new(x))).collect(),
            floatingips: floatingips.into_iter().map(|x| (x.common.id, Arc::new(x))).collect(),
            external_hosts: external_hosts.into_iter().map(|x| (x.common.id, Arc::new(x))).collect(),
            ..Resources::default()
        }
    }
}

impl Resources {
    /// Add security groups and rules read from a server (`dvr export`, the
    /// agents): a separate step so [`Resources::from_lists`] keeps its shape.
    pub fn with_security_groups(mut self, groups: Vec<SecurityGroup>, rules: Vec<SecurityGroupRule>) -> Resources {
        self.security_groups = groups.into_iter().map(|x| (x.common.id, Arc::new(x))).collect();
        self.security_group_rules = rules.into_iter().map(|x| (x.common.id, Arc::new(x))).collect();
        self
    }

    /// The `default` group of `project`, when it exists.
    pub fn default_group(&self, project: &str) -> Option<Uuid> {
        self.security_groups.values().find(|g| g.common.name == "default" && g.common.project_id == project).map(|g| g.common.id)
    }

    /// The groups a port is in: its explicit list, else its project's
    /// `default` group once that exists. Ports the server owns (router,
    /// DHCP, gateway, floating IP) and ports with port security disabled
    /// are in none, as Neutron's "trusted" ports.
    pub fn port_groups(&self, p: &Port) -> Vec<Uuid> {
        if p.port_security_enabled == Some(false) || p.device_owner.starts_with("network:") {
            return p.security_groups.clone().unwrap_or_default();
        }
        match &p.security_groups {
            Some(l) => l.clone(),
            None => self.default_group(&p.common.project_id).into_iter().collect(),
        }
    }
}

fn ipv4() -> String {
    "IPv4".into()
}
fn yes() -> bool {
    true
}
fn four() -> u8 {
    4
}
fn mtu() -> u32 {
    1500
}
fn active() -> String {
    "ACTIVE".into()
}
fn normal() -> String {
    "normal".into()
}
