//! The topology file, version 1, exactly as `docs/topology.md` writes it.
//!
//! These structs mirror the YAML one to one (`deny_unknown_fields` everywhere,
//! so a typo is an error instead of a silently ignored key). They carry no
//! meaning yet: `crate::build` turns them into a validated [`crate::Topology`].

use crate::types::MacAddr;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// The whole file.
#[derive(Debug, Clone, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetSpec {
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
}

/// One router.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouterSpec {
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
}

/// One instance.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceSpec {
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
}

/// One floating IP.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FloatingIpSpec {
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
