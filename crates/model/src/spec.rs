//! The topology file, version 1, exactly as `docs/topology.md` writes it.
//!
//! These structs mirror the YAML one to one (`deny_unknown_fields` everywhere,
//! so a typo is an error instead of a silently ignored key). They carry no
//! meaning yet: `crate::build` turns them into a validated [`crate::Topology`].

pub use crate::security::{AddressPairSpec, Direction, Ethertype, ProtocolSpec, RuleSpec, SecurityGroupSpec};
use crate::types::MacAddr;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopologySpec {
    /// Must be 1; kept as a plain number so a wrong value gets our message.
    pub version: Option<u64>,
    /// Free label shown in outputs.
    #[serde(default)]
    pub name: Option<String>,
    /// Machines of the deployment.
    #[serde(default)]
    pub hosts: Vec<HostSpec>,
    /// Neutron networks with their subnets.
    #[serde(default)]
    pub networks: Vec<NetworkSpec>,
    /// Neutron routers.
    #[serde(default)]
    pub routers: Vec<RouterSpec>,
    /// Nova instances, one port each.
    #[serde(default)]
    pub instances: Vec<InstanceSpec>,
    /// Floating IPs and their associations.
    #[serde(default)]
    pub floating_ips: Vec<FloatingIpSpec>,
    /// Machines outside the cloud on an external network.
    #[serde(default)]
    pub external_hosts: Vec<ExternalHostSpec>,
    /// Paths `dvr demo` traces, each with what should happen (optional).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<PathSpec>,
    /// Ports that are not instances: unbound ports (they reserve their IP and
    /// MAC) and the already allocated implicit ports of a live deployment
    /// (DHCP, router interface, sg-, qg-, fg-), pinned so that a later change
    /// never renumbers them, as Neutron never does. Optional; `dvr export`
    /// writes it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    /// Security groups (`crate::security`). None declared: the `noop`
    /// firewall driver, as before; any: the `openvswitch` driver everywhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<SecurityGroupSpec>,
}

/// One path to demonstrate: a packet from an endpoint to an endpoint or address.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PathSpec {
    /// Sender: an instance or external host.
    pub from: String,
    /// Destination: an instance or external host name, or an IPv4 address.
    pub to: String,
    /// What should happen; `dvr demo` fails when a path ends otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expected>,
    /// What the path shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Transport of the packet: ICMP echo when absent; tcp/udp need `dport`
    /// (security groups decide by protocol and port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<PathProto>,
    /// Destination port of a tcp/udp path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
}

/// The transport of a demonstrated path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PathProto {
    /// ICMP echo (ping), the default.
    Icmp,
    /// A TCP segment to `dport`.
    Tcp,
    /// A UDP datagram to `dport`.
    Udp,
}

impl PathSpec {
    /// How the path is shown: `from -> to`, with ` tcp/22` for tcp/udp paths.
    pub fn label(&self) -> String {
        match (self.proto, self.dport) {
            (Some(PathProto::Tcp), Some(d)) => format!("{} -> {} tcp/{d}", self.from, self.to),
            (Some(PathProto::Udp), Some(d)) => format!("{} -> {} udp/{d}", self.from, self.to),
            _ => format!("{} -> {}", self.from, self.to),
        }
    }
}

/// The expected end of a demonstrated path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expected {
    /// The request and its reply are delivered.
    Delivered,
    /// The request is dropped.
    Dropped,
    /// The request is delivered, its reply dropped.
    ReplyDropped,
}

impl std::str::FromStr for Expected {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "delivered" => Ok(Expected::Delivered),
            "dropped" => Ok(Expected::Dropped),
            "reply-dropped" => Ok(Expected::ReplyDropped),
            other => Err(format!("`{other}` is not an outcome; use delivered, dropped or reply-dropped")),
        }
    }
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Expected::Delivered => "delivered",
            Expected::Dropped => "dropped",
            Expected::ReplyDropped => "reply-dropped",
        })
    }
}

/// One port that is not an instance (see [`TopologySpec::ports`]).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    /// Port UUID; derived from the name (unbound) or the owner (implicit) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<uuid::Uuid>,
    /// Name; required for an unbound port (unique among unbound ports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Network by name.
    pub network: String,
    /// Fixed IP; allocated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    /// MAC; allocated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    /// Neutron `device_owner`. One of the implicit owners
    /// (`network:dhcp`, `network:router_interface_distributed`,
    /// `network:router_interface`, `network:router_centralized_snat`,
    /// `network:router_gateway`, `network:floatingip_agent_gateway`) pins that
    /// implicit port; anything else (or none) is an unbound port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_owner: Option<String>,
    /// Router by name, for router-owned implicit ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<String>,
    /// Host by name, for a `network:floatingip_agent_gateway` port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// One allocation pool of a subnet (inclusive range), as Neutron has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AllocationPool {
    /// First address of the pool.
    pub start: Ipv4Addr,
    /// Last address of the pool.
    pub end: Ipv4Addr,
}

/// One static route DHCP hands to instances of a subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostRoute {
    /// Destination prefix.
    pub destination: ipnet::Ipv4Net,
    /// Next hop.
    pub nexthop: Ipv4Addr,
}

/// What a host does; decides its agents and `agent_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// API only, no dataplane.
    Controller,
    /// l3 agent `agent_mode = dvr_snat`: SNAT, DHCP, metadata.
    Network,
    /// l3 agent `agent_mode = dvr`.
    Compute,
}

/// One host.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    /// Explicit host id; derived from the name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<uuid::Uuid>,
    /// Unique host name.
    pub name: String,
    /// Host role.
    pub role: Role,
    /// Physical network → OVS bridge, in file order (the order assigns default NICs).
    #[serde(default)]
    pub bridge_mappings: IndexMap<String, String>,
    /// Physical network → wire-facing device on its bridge.
    #[serde(default)]
    pub nics: IndexMap<String, String>,
    /// Explicit DVR MAC; else allocated from the DVR base MAC.
    #[serde(default)]
    pub dvr_mac: Option<String>,
}

/// Network type as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkType {
    /// 802.1Q segment on a physical network.
    Vlan,
    /// Untagged physical network.
    Flat,
    /// VXLAN overlay.
    Vxlan,
}

/// One network.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Explicit network UUID; derived from the name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<uuid::Uuid>,
    /// Unique network name.
    pub name: String,
    /// Segment type.
    #[serde(rename = "type")]
    pub kind: NetworkType,
    /// Physical network (vlan/flat).
    #[serde(default)]
    pub physical_network: Option<String>,
    /// VLAN id or VNI; allocated when absent.
    #[serde(default)]
    pub segmentation_id: Option<u64>,
    /// Router gateway / floating IP network.
    #[serde(default)]
    pub external: bool,
    /// Subnets of the network.
    #[serde(default)]
    pub subnets: Vec<SubnetSpec>,
}

/// One IPv4 subnet.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetSpec {
    /// Explicit subnet UUID; derived from the name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<uuid::Uuid>,
    /// Unique subnet name.
    pub name: String,
    /// CIDR text, parsed during validation so the error names the subnet.
    pub cidr: String,
    /// Gateway; first host address when absent.
    #[serde(default)]
    pub gateway_ip: Option<Ipv4Addr>,
    /// DHCP on the subnet; default true.
    #[serde(default)]
    pub enable_dhcp: Option<bool>,
    /// Ranges addresses are allocated from; default the whole subnet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allocation_pools: Vec<AllocationPool>,
    /// Static routes handed out by DHCP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_routes: Vec<HostRoute>,
    /// DNS servers handed out by DHCP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_nameservers: Vec<Ipv4Addr>,
}

/// One router.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouterSpec {
    /// Explicit router UUID; derived from the name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<uuid::Uuid>,
    /// Unique router name.
    pub name: String,
    /// DVR (default) or legacy centralised router.
    #[serde(default)]
    pub distributed: Option<bool>,
    /// Subnets attached by name.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// External network for SNAT and floating IPs.
    #[serde(default)]
    pub external_gateway: Option<String>,
    /// SNAT through the gateway (Neutron's `enable_snat`); default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_snat: Option<bool>,
}

/// One instance.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceSpec {
    /// Explicit UUID of the instance's port; derived from the name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<uuid::Uuid>,
    /// Unique endpoint name.
    pub name: String,
    /// Compute host.
    pub host: String,
    /// Network of its single port.
    pub network: String,
    /// Fixed IP; allocated when absent.
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    /// Port MAC; allocated (fa:16:3e) when absent.
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// Owning project; `default` when absent (decides its `default` group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Security groups of its port by name; the project's `default` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_groups: Option<Vec<String>>,
    /// Neutron's `port_security_enabled`; default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_security_enabled: Option<bool>,
    /// Extra (IP, MAC) pairs the port may send from (VIPs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_address_pairs: Vec<AddressPairSpec>,
}

/// One floating IP.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FloatingIpSpec {
    /// Explicit floating IP UUID; derived from the address when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<uuid::Uuid>,
    /// Address; allocated from the external subnet when absent.
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    /// Associated instance; none = allocated but unassociated.
    #[serde(default)]
    pub instance: Option<String>,
    /// External network; needed only when the instance does not imply it.
    #[serde(default)]
    pub network: Option<String>,
}

/// One external host.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalHostSpec {
    /// Unique endpoint name.
    pub name: String,
    /// External network it sits on.
    pub network: String,
    /// Its address.
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
}
