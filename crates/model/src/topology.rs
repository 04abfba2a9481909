//! The validated deployment: every reference resolved to an index, every
//! address, MAC, VLAN and id allocated. Later layers read it and never fail.

use crate::spec::Role;
use crate::types::*;
use ipnet::Ipv4Net;
use serde::Serialize;
use std::net::Ipv4Addr;

/// A validated, fully allocated deployment.
#[derive(Debug, Clone, Serialize)]
pub struct Topology {
    /// Label from the file (or the file stem).
    pub name: String,
    /// Hosts in file order.
    pub hosts: Vec<Host>,
    /// Networks in file order.
    pub networks: Vec<Network>,
    /// Subnets in file order (across networks).
    pub subnets: Vec<Subnet>,
    /// Routers in file order.
    pub routers: Vec<Router>,
    /// Instances in file order.
    pub instances: Vec<Instance>,
    /// Floating IPs in file order.
    pub floating_ips: Vec<FloatingIp>,
    /// External hosts in file order.
    pub external_hosts: Vec<ExternalHost>,
    /// Paths to demonstrate (`paths:`), validated: `from` is an endpoint,
    /// `to` an endpoint or an IPv4 address.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<crate::spec::PathSpec>,
    /// Every Neutron port, the implicit ones (router interfaces, sg-, qg-,
    /// fg-, DHCP) included, in allocation order.
    pub ports: Vec<Port>,
    /// Ports that are not instances and not implicit (no host or no compute
    /// owner): they hold an address and a MAC but nothing is planned for them.
    pub unbound_ports: Vec<UnboundPort>,
    /// Security groups, per-port settings and the firewall driver; left out
    /// of JSON with the `noop` driver so older outputs stay identical.
    #[serde(skip_serializing_if = "crate::security::Security::is_noop")]
    pub security: crate::security::Security,
    /// The underlay subnet of the VXLAN tunnel endpoints (`local_ip`s); `None`
    /// when the deployment uses no tunnels (then no host has a `tunnel_ip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub underlay: Option<Ipv4Net>,
    /// Lookup tables derived from the above (rebuilt by [`Topology::reindex`]).
    #[serde(skip)]
    pub index: Index,
}

/// Derived lookups, so planning a host costs what the host has, not what the
/// whole cloud has (1,000 hosts, 25,000 ports).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Index {
    /// Ports bound to each host, in port order.
    pub host_ports: Vec<Vec<PortIx>>,
    /// Ports on each subnet, in port order.
    pub subnet_ports: Vec<Vec<PortIx>>,
    /// Routers with a copy on each host.
    pub host_routers: Vec<Vec<RouterIx>>,
    /// Routers attached to each subnet.
    pub subnet_routers: Vec<Vec<RouterIx>>,
    /// (router, subnet) → router interface port.
    pub router_interface: std::collections::HashMap<(RouterIx, SubnetIx), PortIx>,
    /// (router, subnet) → sg- port.
    pub snat_port: std::collections::HashMap<(RouterIx, SubnetIx), PortIx>,
    /// router → qg- port.
    pub gateway_port: std::collections::HashMap<RouterIx, PortIx>,
    /// (host, external network) → fg- port.
    pub fip_agent_port: std::collections::HashMap<(HostIx, NetworkIx), PortIx>,
    /// network → DHCP port.
    pub dhcp_port: std::collections::HashMap<NetworkIx, PortIx>,
}

/// The l3 agent mode of a host (Neutron's `agent_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentMode {
    /// Compute node: local routing and floating IPs.
    Dvr,
    /// Network node: also centralised SNAT, DHCP and metadata.
    DvrSnat,
}

/// One physical network reachable from a host.
#[derive(Debug, Clone, Serialize)]
pub struct BridgeMapping {
    /// Physical network name.
    pub physnet: String,
    /// OVS bridge (`br-vlan`, `br-ex`).
    pub bridge: String,
    /// Wire-facing NIC on that bridge.
    pub nic: String,
}

/// One host.
#[derive(Debug, Clone, Serialize)]
pub struct Host {
    /// Derived id.
    pub id: HostId,
    /// Name from the file.
    pub name: String,
    /// Role from the file.
    pub role: Role,
    /// Bridge mappings in file order.
    pub bridge_mappings: Vec<BridgeMapping>,
    /// DVR MAC; `None` for a controller (it runs no OVS agent).
    pub dvr_mac: Option<MacAddr>,
    /// Local VLAN of each network present on the host, in allocation order.
    pub local_vlans: Vec<(NetworkIx, VlanId)>,
    /// rfp-/fpr- link-local pair of each router with a gateway on this host.
    pub fip_links: Vec<FipLink>,
    /// VXLAN tunnel endpoint (Neutron's `local_ip`): set on every dataplane
    /// host when the deployment uses tunnels, `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_ip: Option<Ipv4Addr>,
}

/// The veth between a `qrouter-` and the `fip-` namespace of one host.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FipLink {
    /// The router.
    pub router: RouterIx,
    /// The /31 pair; the even address is `rfp-` (qrouter), the odd `fpr-` (fip).
    pub pair: Ipv4Net,
}

impl FipLink {
    /// Address of the `rfp-` end, in the qrouter namespace.
    pub fn rfp_ip(&self) -> Ipv4Addr {
        self.pair.network()
    }
    /// Address of the `fpr-` end, in the fip namespace.
    pub fn fpr_ip(&self) -> Ipv4Addr {
        self.pair.broadcast()
    }
}

impl Host {
    /// The l3 agent mode; `None` for a controller.
    pub fn agent_mode(&self) -> Option<AgentMode> {
        match self.role {
            Role::Controller => None,
            Role::Network => Some(AgentMode::DvrSnat),
            Role::Compute => Some(AgentMode::Dvr),
        }
    }

    /// The local VLAN of a network on this host.
    pub fn local_vlan(&self, network: NetworkIx) -> Option<VlanId> {
        self.local_vlans.iter().find(|(n, _)| *n == network).map(|(_, v)| *v)
    }

    /// The fip link of a router on this host.
    pub fn fip_link(&self, router: RouterIx) -> Option<&FipLink> {
        self.fip_links.iter().find(|l| l.router == router)
    }

    /// Whether the host runs a dataplane at all.
    pub fn has_dataplane(&self) -> bool {
        self.role != Role::Controller
    }

    /// The mapping of a physical network, if the host has it.
    pub fn mapping(&self, physnet: &str) -> Option<&BridgeMapping> {
        self.bridge_mappings.iter().find(|m| m.physnet == physnet)
    }
}

/// How a network is carried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Segment {
    /// Tagged with `vlan` on `physnet`.
    Vlan {
        /// Physical network.
        physnet: String,
        /// Segmentation VLAN on the wire.
        vlan: VlanId,
    },
    /// Untagged on `physnet`.
    Flat {
        /// Physical network.
        physnet: String,
    },
    /// VXLAN overlay.
    Vxlan {
        /// VNI.
        vni: Vni,
    },
}

impl Segment {
    /// The VNI of a VXLAN segment.
    pub fn vni(&self) -> Option<Vni> {
        match self {
            Segment::Vxlan { vni } => Some(*vni),
            _ => None,
        }
    }

    /// The physical network for vlan/flat segments.
    pub fn physnet(&self) -> Option<&str> {
        match self {
            Segment::Vlan { physnet, .. } | Segment::Flat { physnet } => Some(physnet),
            Segment::Vxlan { .. } => None,
        }
    }
}

/// One network.
#[derive(Debug, Clone, Serialize)]
pub struct Network {
    /// Derived id.
    pub id: NetworkId,
    /// Name.
    pub name: String,
    /// Segment.
    pub segment: Segment,
    /// External (gateway / floating IP) network.
    pub external: bool,
    /// Its subnets.
    pub subnets: Vec<SubnetIx>,
}

/// One IPv4 subnet.
#[derive(Debug, Clone, Serialize)]
pub struct Subnet {
    /// Derived id.
    pub id: SubnetId,
    /// Name.
    pub name: String,
    /// Owning network.
    pub network: NetworkIx,
    /// Prefix (host bits zero).
    pub cidr: Ipv4Net,
    /// Gateway address.
    pub gateway: Ipv4Addr,
    /// DHCP enabled.
    pub enable_dhcp: bool,
    /// MAC of the upstream gateway device outside the cloud (external
    /// subnets only; the twin's fabric answers for it).
    pub external_gateway_mac: Option<MacAddr>,
    /// Ranges allocation draws from (empty: the whole subnet).
    pub allocation_pools: Vec<crate::spec::AllocationPool>,
    /// Static routes DHCP hands out.
    pub host_routes: Vec<crate::spec::HostRoute>,
    /// DNS servers DHCP hands out.
    pub dns_nameservers: Vec<Ipv4Addr>,
}

/// One router.
#[derive(Debug, Clone, Serialize)]
pub struct Router {
    /// Derived id.
    pub id: RouterId,
    /// Name.
    pub name: String,
    /// DVR or legacy.
    pub distributed: bool,
    /// Attached internal subnets.
    pub interfaces: Vec<SubnetIx>,
    /// External network.
    pub external_gateway: Option<NetworkIx>,
    /// Neutron's `enable_snat` (kept for the API; the plan always builds SNAT
    /// for a router with a gateway).
    pub enable_snat: bool,
    /// The host that runs SNAT (and, for a legacy router, the whole router).
    pub snat_host: Option<HostIx>,
    /// Hosts with a copy of the router (`qrouter-`), in host order: the SNAT
    /// host and every host with a DVR-serviced port on one of its subnets.
    pub hosts: Vec<HostIx>,
}

/// What a port is for (Neutron's `device_owner`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "owner", rename_all = "snake_case")]
pub enum PortOwner {
    /// `compute:nova`.
    Compute {
        /// The instance.
        instance: InstanceIx,
    },
    /// `network:dhcp`.
    Dhcp,
    /// `network:router_interface_distributed` (`qr-`, same on every host).
    RouterInterfaceDistributed {
        /// The router.
        router: RouterIx,
    },
    /// `network:router_interface` of a legacy router.
    RouterInterface {
        /// The router.
        router: RouterIx,
    },
    /// `network:router_centralized_snat` (`sg-`).
    CentralizedSnat {
        /// The router.
        router: RouterIx,
    },
    /// `network:router_gateway` (`qg-`).
    RouterGateway {
        /// The router.
        router: RouterIx,
    },
    /// `network:floatingip_agent_gateway` (`fg-`), one per (external network, host).
    FloatingIpAgentGateway,
}

impl PortOwner {
    /// Neutron's `device_owner` string.
    pub fn device_owner(&self) -> &'static str {
        match self {
            PortOwner::Compute { .. } => "compute:nova",
            PortOwner::Dhcp => "network:dhcp",
            PortOwner::RouterInterfaceDistributed { .. } => "network:router_interface_distributed",
            PortOwner::RouterInterface { .. } => "network:router_interface",
            PortOwner::CentralizedSnat { .. } => "network:router_centralized_snat",
            PortOwner::RouterGateway { .. } => "network:router_gateway",
            PortOwner::FloatingIpAgentGateway => "network:floatingip_agent_gateway",
        }
    }

    /// Device name prefix on the host (Neutron naming).
    pub fn device_prefix(&self) -> &'static str {
        match self {
            PortOwner::Compute { .. } => "qvo",
            PortOwner::Dhcp => "tap",
            PortOwner::RouterInterfaceDistributed { .. } | PortOwner::RouterInterface { .. } => "qr-",
            PortOwner::CentralizedSnat { .. } => "sg-",
            PortOwner::RouterGateway { .. } => "qg-",
            PortOwner::FloatingIpAgentGateway => "fg-",
        }
    }

    /// Ports Neutron's DVR treats as "DVR serviced" (`is_dvr_serviced`): they
    /// get the DVR-to-source-MAC and direct-output flows.
    pub fn is_dvr_serviced(&self) -> bool {
        matches!(self, PortOwner::Compute { .. } | PortOwner::Dhcp)
    }
}

/// One Neutron port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Port {
    /// Derived id.
    pub id: PortId,
    /// Owner.
    #[serde(flatten)]
    pub owner: PortOwner,
    /// Network.
    pub network: NetworkIx,
    /// Subnet of its (single) fixed IP.
    pub subnet: SubnetIx,
    /// Fixed IP.
    pub ip: Ipv4Addr,
    /// MAC.
    pub mac: MacAddr,
    /// Binding host; `None` for a distributed router interface (bound everywhere).
    pub host: Option<HostIx>,
}

impl Port {
    /// Device name as Neutron builds it: prefix + port id, cut to 14 characters.
    pub fn device_name(&self) -> String {
        let mut s = format!("{}{}", self.owner.device_prefix(), self.id.hyphenated());
        s.truncate(crate::names::LINUX_DEV_LEN);
        s
    }
}

/// A port that reserves an address and a MAC without being an instance.
#[derive(Debug, Clone, Serialize)]
pub struct UnboundPort {
    /// Port id.
    pub id: PortId,
    /// Name.
    pub name: String,
    /// Neutron `device_owner` as given (may be empty).
    pub device_owner: String,
    /// Network.
    pub network: NetworkIx,
    /// Subnet of its fixed IP.
    pub subnet: SubnetIx,
    /// Fixed IP.
    pub ip: Ipv4Addr,
    /// MAC.
    pub mac: MacAddr,
}

/// One instance.
#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    /// Name.
    pub name: String,
    /// Compute host.
    pub host: HostIx,
    /// Network.
    pub network: NetworkIx,
    /// Its port.
    pub port: PortIx,
}

/// One floating IP.
#[derive(Debug, Clone, Serialize)]
pub struct FloatingIp {
    /// Derived id.
    pub id: FloatingIpId,
    /// Address.
    pub ip: Ipv4Addr,
    /// External network.
    pub network: NetworkIx,
    /// External subnet holding it.
    pub subnet: SubnetIx,
    /// Association: (instance, router that serves it).
    pub association: Option<(InstanceIx, RouterIx)>,
    /// `ip rule` priority in the instance host's qrouter (32768.. per host).
    pub rule_priority: Option<u32>,
}

/// One machine outside the cloud.
#[derive(Debug, Clone, Serialize)]
pub struct ExternalHost {
    /// Name.
    pub name: String,
    /// External network.
    pub network: NetworkIx,
    /// Subnet.
    pub subnet: SubnetIx,
    /// Address.
    pub ip: Ipv4Addr,
    /// MAC (allocated outside Neutron's ranges).
    pub mac: MacAddr,
}

impl Topology {
    /// Names of every endpoint (instances, then external hosts), for messages.
    pub fn endpoint_names(&self) -> Vec<&str> {
        self.instances.iter().map(|x| x.name.as_str()).chain(self.external_hosts.iter().map(|e| e.name.as_str())).collect()
    }
    /// The address of an instance or external host by name.
    pub fn endpoint_ip(&self, name: &str) -> Option<Ipv4Addr> {
        self.instances
            .iter()
            .find(|x| x.name == name)
            .map(|x| self.port(x.port).ip)
            .or_else(|| self.external_hosts.iter().find(|e| e.name == name).map(|e| e.ip))
    }
    /// An IPv4 address as written, or the address of the endpoint so named:
    /// the one place a destination given by people is resolved.
    pub fn resolve_address(&self, to: &str) -> Option<Ipv4Addr> {
        to.parse().ok().or_else(|| self.endpoint_ip(to))
    }
    /// Host index by name.
    pub fn host_ix(&self, name: &str) -> Option<HostIx> {
        self.hosts.iter().position(|h| h.name == name).map(HostIx)
    }
    /// Host by index.
    pub fn host(&self, ix: HostIx) -> &Host {
        &self.hosts[ix.0]
    }
    /// Network by index.
    pub fn network(&self, ix: NetworkIx) -> &Network {
        &self.networks[ix.0]
    }
    /// Subnet by index.
    pub fn subnet(&self, ix: SubnetIx) -> &Subnet {
        &self.subnets[ix.0]
    }
    /// Router by index.
    pub fn router(&self, ix: RouterIx) -> &Router {
        &self.routers[ix.0]
    }
    /// Port by index.
    pub fn port(&self, ix: PortIx) -> &Port {
        &self.ports[ix.0]
    }
    /// Instance by index.
    pub fn instance(&self, ix: InstanceIx) -> &Instance {
        &self.instances[ix.0]
    }
    /// Routers with their indices.
    pub fn routers_ix(&self) -> impl Iterator<Item = (RouterIx, &Router)> {
        self.routers.iter().enumerate().map(|(i, r)| (RouterIx(i), r))
    }
    /// Hosts with their indices.
    pub fn hosts_ix(&self) -> impl Iterator<Item = (HostIx, &Host)> {
        self.hosts.iter().enumerate().map(|(i, h)| (HostIx(i), h))
    }
    /// The router's interface port on a subnet.
    pub fn router_interface(&self, router: RouterIx, subnet: SubnetIx) -> Option<PortIx> {
        self.index.router_interface.get(&(router, subnet)).copied()
    }
    /// The router's `sg-` port on a subnet.
    pub fn snat_port(&self, router: RouterIx, subnet: SubnetIx) -> Option<PortIx> {
        self.index.snat_port.get(&(router, subnet)).copied()
    }
    /// The router's `qg-` port.
    pub fn gateway_port(&self, router: RouterIx) -> Option<PortIx> {
        self.index.gateway_port.get(&router).copied()
    }
    /// The `fg-` port of a host on an external network.
    pub fn fip_agent_port(&self, host: HostIx, network: NetworkIx) -> Option<PortIx> {
        self.index.fip_agent_port.get(&(host, network)).copied()
    }
    /// The DHCP port of a network.
    pub fn dhcp_port(&self, network: NetworkIx) -> Option<PortIx> {
        self.index.dhcp_port.get(&network).copied()
    }
    /// Ports bound to a host.
    pub fn host_ports(&self, host: HostIx) -> impl Iterator<Item = &Port> + '_ {
        self.index.host_ports.get(host.0).into_iter().flatten().map(move |p| &self.ports[p.0])
    }
    /// Ports on a subnet.
    pub fn subnet_ports(&self, subnet: SubnetIx) -> impl Iterator<Item = &Port> + '_ {
        self.index.subnet_ports.get(subnet.0).into_iter().flatten().map(move |p| &self.ports[p.0])
    }
    /// Rebuild [`Index`] after the vectors changed.
    pub fn reindex(&mut self) {
        let mut ix = Index {
            host_ports: vec![vec![]; self.hosts.len()],
            subnet_ports: vec![vec![]; self.subnets.len()],
            host_routers: vec![vec![]; self.hosts.len()],
            subnet_routers: vec![vec![]; self.subnets.len()],
            ..Default::default()
        };
        for (i, p) in self.ports.iter().enumerate() {
            let pi = PortIx(i);
            if let Some(h) = p.host {
                ix.host_ports[h.0].push(pi);
            }
            ix.subnet_ports[p.subnet.0].push(pi);
            match p.owner {
                PortOwner::RouterInterfaceDistributed { router } | PortOwner::RouterInterface { router } => {
                    ix.router_interface.entry((router, p.subnet)).or_insert(pi);
                }
                PortOwner::CentralizedSnat { router } => {
                    ix.snat_port.entry((router, p.subnet)).or_insert(pi);
                }
                PortOwner::RouterGateway { router } => {
                    ix.gateway_port.entry(router).or_insert(pi);
                }
                PortOwner::FloatingIpAgentGateway => {
                    if let Some(h) = p.host {
                        ix.fip_agent_port.entry((h, p.network)).or_insert(pi);
                    }
                }
                PortOwner::Dhcp => {
                    ix.dhcp_port.entry(p.network).or_insert(pi);
                }
                PortOwner::Compute { .. } => {}
            }
        }
        for (r, router) in self.routers.iter().enumerate() {
            for h in &router.hosts {
                ix.host_routers[h.0].push(RouterIx(r));
            }
            for s in &router.interfaces {
                ix.subnet_routers[s.0].push(RouterIx(r));
            }
        }
        self.index = ix;
    }
    /// Every router attached to a subnet.
    pub fn routers_on_subnet(&self, subnet: SubnetIx) -> impl Iterator<Item = RouterIx> + '_ {
        self.index.subnet_routers.get(subnet.0).into_iter().flatten().copied()
    }
}
