//! The twin of a whole deployment, built from the plan: each host's bridges
//! (OpenFlow switches joined by patch ports) and namespaces, the instances
//! and external machines as endpoints, and one learning switch per physical
//! network joining the hosts' NICs — like the Linux bridge of the lab.

use crate::ofp::{OfBridge, OfPort};
use crate::stack::{Dev, Neigh, Stack};
use dvr_model::{MacAddr, Topology};
use dvr_plan::{DeviceLink, NamespaceKind, Plan, PortKind, Route, TableRef};
use ipnet::Ipv4Net;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// Where a port or device leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// A bridge port of a host.
    Bridge {
        /// Host index.
        host: usize,
        /// Bridge index.
        bridge: usize,
        /// Port index.
        port: usize,
    },
    /// A device of a stack.
    Stack {
        /// Stack index.
        stack: usize,
        /// Device index.
        dev: usize,
    },
    /// A port of a physical network.
    Wire {
        /// Wire index.
        wire: usize,
        /// Port index on the wire.
        port: usize,
    },
    /// Nothing (an unplugged port).
    None,
}

/// The OVS side of one host.
#[derive(Debug, Clone)]
pub struct HostDp {
    /// Host name.
    pub name: String,
    /// Bridges.
    pub bridges: Vec<OfBridge>,
    /// For each bridge, where each port leads.
    pub attach: Vec<Vec<Attach>>,
}

/// What kind of thing a stack is, for the trace's `kind` and `delivered_to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackKind {
    /// A Neutron namespace.
    Namespace(NamespaceKind),
    /// A Nova instance.
    Instance,
    /// A machine outside the cloud.
    ExternalHost,
    /// The upstream router of an external subnet.
    Upstream,
}

/// A stack placed in the world.
#[derive(Debug, Clone)]
pub struct StackNode {
    /// Name used as the hop's `where` (namespace or endpoint name).
    pub name: String,
    /// Host it lives on (`external` outside the cloud).
    pub host: String,
    /// The `delivered_to` label.
    pub label: String,
    /// Kind.
    pub kind: StackKind,
    /// The stack.
    pub stack: Stack,
    /// Where each device leads.
    pub attach: Vec<Attach>,
}

/// One physical network: a MAC-learning switch (not VLAN aware, like a Linux
/// bridge with `vlan_filtering` off) joining NICs and external endpoints.
#[derive(Debug, Clone)]
pub struct Wire {
    /// Physical network name.
    pub name: String,
    /// Ports: where each leads and, for endpoints on a VLAN segment, the tag
    /// their frames carry on the wire.
    pub ports: Vec<(Attach, Option<u16>, String)>,
    /// Learned MAC → port.
    pub mac_table: crate::fxhash::FxMap<MacAddr, usize>,
}

/// Where an endpoint is plugged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointAt {
    /// An instance: behind the bridge port of kind `Vif { instance }` with its name.
    Instance,
    /// A machine on a physical network's switch, its frames tagged `vlan` there.
    Outside {
        /// Physical network (the wire's name).
        physnet: String,
        /// 802.1Q tag on the wire (VLAN networks).
        vlan: Option<u16>,
    },
}

/// A machine at the edge of the twin: an instance, an external host or an
/// upstream gateway. One device `eth0` with one address.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Name used by `--from` and in traces.
    pub name: String,
    /// Host it runs on (`external` outside the cloud).
    pub host: String,
    /// Kind (instance, external host, upstream).
    pub kind: StackKind,
    /// Its MAC.
    pub mac: MacAddr,
    /// Address with the subnet's prefix length.
    pub addr: Ipv4Net,
    /// Default gateway, if any.
    pub gateway: Option<Ipv4Addr>,
    /// Further routes (destination, next hop), e.g. DHCP option 121.
    pub routes: Vec<(Ipv4Net, Ipv4Addr)>,
    /// Where it is plugged.
    pub at: EndpointAt,
}

/// The whole twin.
#[derive(Debug, Clone)]
pub struct World {
    /// Hosts with a dataplane.
    pub hosts: Vec<HostDp>,
    /// Namespaces and endpoints.
    pub stacks: Vec<StackNode>,
    /// Physical networks.
    pub wires: Vec<Wire>,
    /// Endpoint (instance, external host) name → stack index.
    endpoints: HashMap<String, usize>,
}

fn sysctl(ns: &dvr_plan::Namespace, key: &str) -> Option<String> {
    ns.sysctls.iter().rev().find(|s| s.key == key).map(|s| s.value.clone())
}

impl World {
    /// Build the twin of a planned deployment.
    pub fn build(topo: &Topology, plan: &Plan) -> World {
        World::assemble(plan, &World::endpoints_of(topo, plan))
    }

    /// The machines at the edge of a planned deployment: instances, external
    /// hosts and the upstream gateway of each external subnet.
    pub fn endpoints_of(topo: &Topology, plan: &Plan) -> Vec<Endpoint> {
        let mut eps = Vec::new();
        for x in &topo.instances {
            let port = topo.port(x.port);
            let sub = topo.subnet(port.subnet);
            let network = &topo.network(x.network).name;
            eps.push(Endpoint {
                name: x.name.clone(),
                host: topo.host(x.host).name.clone(),
                kind: StackKind::Instance,
                mac: port.mac,
                addr: Ipv4Net::new(port.ip, sub.cidr.prefix_len()).expect("prefix"),
                gateway: Some(sub.gateway),
                routes: plan.dhcp_host_routes(network),
                at: EndpointAt::Instance,
            });
        }
        let outside = |network: dvr_model::NetworkIx| {
            let net = topo.network(network);
            let vlan = match &net.segment {
                dvr_model::Segment::Vlan { vlan, .. } => Some(vlan.get()),
                _ => None,
            };
            net.segment.physnet().map(|p| EndpointAt::Outside { physnet: p.to_string(), vlan })
        };
        for e in &topo.external_hosts {
            let sub = topo.subnet(e.subnet);
            if let Some(at) = outside(e.network) {
                eps.push(Endpoint {
                    name: e.name.clone(),
                    host: "external".into(),
                    kind: StackKind::ExternalHost,
                    mac: e.mac,
                    addr: Ipv4Net::new(e.ip, sub.cidr.prefix_len()).expect("prefix"),
                    gateway: Some(sub.gateway),
                    routes: vec![],
                    at,
                });
            }
        }
        for sub in topo.subnets.iter().filter(|s| s.external_gateway_mac.is_some()) {
            if let Some(at) = outside(sub.network) {
                eps.push(Endpoint {
                    name: format!("gateway-{}", sub.name),
                    host: "external".into(),
                    kind: StackKind::Upstream,
                    mac: sub.external_gateway_mac.expect("filtered"),
                    addr: Ipv4Net::new(sub.gateway, sub.cidr.prefix_len()).expect("prefix"),
                    gateway: None,
                    routes: vec![],
                    at,
                });
            }
        }
        eps
    }

    /// Build the twin from host plans and the machines around them: what
    /// [`World::build`] does after reading a topology, and what an import of
    /// dumps does with no topology at all. Instances are plugged into the
    /// bridge port whose kind is `Vif { instance: name }`; outside machines
    /// onto their physical network's switch.
    pub fn assemble(plan: &Plan, endpoints: &[Endpoint]) -> World {
        let mut w = World { hosts: vec![], stacks: vec![], wires: vec![], endpoints: HashMap::new() };
        let mut wire_of: HashMap<String, usize> = HashMap::new();
        let mut wire = |w: &mut World, physnet: &str| -> usize {
            *wire_of.entry(physnet.to_string()).or_insert_with(|| {
                w.wires.push(Wire { name: physnet.to_string(), ports: vec![], mac_table: Default::default() });
                w.wires.len() - 1
            })
        };
        // Bridges and namespaces of every dataplane host.
        let mut ns_index: HashMap<(String, String), usize> = HashMap::new();
        for hp in plan.hosts.iter().filter(|h| !h.bridges.is_empty()) {
            let bridges: Vec<OfBridge> = hp
                .bridges
                .iter()
                .map(|b| {
                    let mut ob = OfBridge::from_shared(
                        &b.name,
                        b.ports.iter().map(|p| OfPort { name: p.name.clone(), tag: p.tag }).collect(),
                        &b.flows,
                    );
                    ob.kind = Some(b.kind);
                    ob
                })
                .collect();
            let attach = hp.bridges.iter().map(|b| vec![Attach::None; b.ports.len()]).collect();
            w.hosts.push(HostDp { name: hp.host.clone(), bridges, attach });
            for ns in &hp.namespaces {
                let devs = ns
                    .devices
                    .iter()
                    .map(|d| Dev {
                        name: d.name.clone(),
                        mac: d.mac,
                        addrs: d.addrs.clone(),
                        proxy_arp: sysctl(ns, &format!("net.ipv4.conf.{}.proxy_arp", d.name)).as_deref() == Some("1"),
                    })
                    .collect();
                let mut st = Stack::new(devs);
                st.routes = ns.routes.clone();
                st.rules = ns.rules.clone();
                st.forward = sysctl(ns, "net.ipv4.ip_forward").as_deref() == Some("1");
                st.arp_ignore = sysctl(ns, "net.ipv4.conf.all.arp_ignore").and_then(|v| v.parse().ok()).unwrap_or(0);
                st.rp_filter = sysctl(ns, "net.ipv4.conf.all.rp_filter").and_then(|v| v.parse().ok()).unwrap_or(0);
                st.nat = ns.table("nat").cloned();
                st.mangle = ns.table("mangle").cloned();
                st.notrack = ns
                    .table("raw")
                    .and_then(|t| t.chain("PREROUTING"))
                    .is_some_and(|c| c.rules.iter().any(|r| r.target == dvr_plan::IptTarget::NoTrack));
                for n in &ns.neighbours {
                    if let Some(d) = st.dev(&n.dev) {
                        st.neigh.insert((d, n.ip), Neigh { mac: n.mac, permanent: true });
                    }
                }
                let label = match ns.kind {
                    NamespaceKind::Qrouter => format!("{}@{}", ns.serves, hp.host),
                    NamespaceKind::Qdhcp => format!("dhcp-{}@{}", ns.serves, hp.host),
                    NamespaceKind::Snat => format!("snat-{}@{}", ns.serves, hp.host),
                    NamespaceKind::Fip => format!("fip-{}@{}", ns.serves, hp.host),
                };
                ns_index.insert((hp.host.clone(), ns.name.clone()), w.stacks.len());
                let n = ns.devices.len();
                w.stacks.push(StackNode {
                    name: ns.name.clone(),
                    host: hp.host.clone(),
                    label,
                    kind: StackKind::Namespace(ns.kind),
                    stack: st,
                    attach: vec![Attach::None; n],
                });
            }
        }
        // Instances, then the machines outside the cloud.
        let mut vm_index: HashMap<String, usize> = HashMap::new();
        for e in endpoints {
            let mut st = endpoint_stack(e.mac, e.addr.addr(), e.addr.trunc());
            if let Some(g) = e.gateway {
                st.routes.push(route(Ipv4Net::default(), Some(g), e.addr.addr()));
            }
            for (dst, via) in &e.routes {
                st.routes.push(route(*dst, Some(*via), e.addr.addr()));
            }
            match &e.at {
                EndpointAt::Instance => {
                    vm_index.insert(e.name.clone(), w.stacks.len());
                    w.stacks.push(StackNode {
                        name: e.name.clone(),
                        host: e.host.clone(),
                        label: e.name.clone(),
                        kind: e.kind,
                        stack: st,
                        attach: vec![Attach::None],
                    });
                }
                EndpointAt::Outside { physnet, vlan } => {
                    let wi = wire(&mut w, physnet);
                    let s = w.stacks.len();
                    w.stacks.push(StackNode {
                        name: e.name.clone(),
                        host: e.host.clone(),
                        label: e.name.clone(),
                        kind: e.kind,
                        stack: st,
                        attach: vec![Attach::Wire { wire: wi, port: w.wires[wi].ports.len() }],
                    });
                    w.wires[wi].ports.push((Attach::Stack { stack: s, dev: 0 }, *vlan, e.name.clone()));
                }
            }
        }
        // Wiring: bridge ports to peers, namespace devices, instances and wires.
        let plan_hosts: Vec<&dvr_plan::HostPlan> = plan.hosts.iter().filter(|h| !h.bridges.is_empty()).collect();
        for (h, hp) in plan_hosts.iter().enumerate() {
            for (b, br) in hp.bridges.iter().enumerate() {
                for (p, port) in br.ports.iter().enumerate() {
                    let a = match &port.kind {
                        PortKind::Patch { peer } => hp
                            .bridges
                            .iter()
                            .enumerate()
                            .find_map(|(pb, pbr)| {
                                pbr.ports.iter().position(|x| &x.name == peer).map(|pp| Attach::Bridge { host: h, bridge: pb, port: pp })
                            })
                            .unwrap_or(Attach::None),
                        PortKind::Nic => {
                            let physnet = br.physnet.clone().unwrap_or_default();
                            let wi = wire(&mut w, &physnet);
                            let wp = w.wires[wi].ports.len();
                            w.wires[wi].ports.push((
                                Attach::Bridge { host: h, bridge: b, port: p },
                                None,
                                format!("{}:{}", hp.host, port.name),
                            ));
                            Attach::Wire { wire: wi, port: wp }
                        }
                        PortKind::Vif { instance } => match vm_index.get(instance) {
                            Some(&s) => {
                                w.stacks[s].attach[0] = Attach::Bridge { host: h, bridge: b, port: p };
                                Attach::Stack { stack: s, dev: 0 }
                            }
                            None => Attach::None,
                        },
                        PortKind::Service { namespace } => match ns_index.get(&(hp.host.clone(), namespace.clone())) {
                            Some(&s) => match w.stacks[s].stack.dev(&port.name) {
                                Some(d) => {
                                    w.stacks[s].attach[d] = Attach::Bridge { host: h, bridge: b, port: p };
                                    Attach::Stack { stack: s, dev: d }
                                }
                                None => Attach::None,
                            },
                            None => Attach::None,
                        },
                    };
                    w.hosts[h].attach[b][p] = a;
                }
            }
            for ns in &hp.namespaces {
                let s = ns_index[&(hp.host.clone(), ns.name.clone())];
                for (d, dev) in ns.devices.iter().enumerate() {
                    if let DeviceLink::Veth { peer, peer_namespace } = &dev.link
                        && let Some(&ps) = ns_index.get(&(hp.host.clone(), peer_namespace.clone()))
                        && let Some(pd) = w.stacks[ps].stack.dev(peer)
                    {
                        w.stacks[s].attach[d] = Attach::Stack { stack: ps, dev: pd };
                    }
                }
            }
        }
        w.endpoints = w
            .stacks
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s.kind, StackKind::Instance | StackKind::ExternalHost))
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        w
    }

    /// Stack index of an endpoint (instance or external host) by name.
    pub fn endpoint(&self, name: &str) -> Option<usize> {
        self.endpoints.get(name).copied()
    }

    /// Names of all endpoints, for error messages.
    pub fn endpoint_names(&self) -> Vec<String> {
        self.stacks.iter().filter(|s| matches!(s.kind, StackKind::Instance | StackKind::ExternalHost)).map(|s| s.name.clone()).collect()
    }
}

/// An endpoint: one device `eth0` with one address and its connected route.
fn endpoint_stack(mac: MacAddr, ip: Ipv4Addr, cidr: Ipv4Net) -> Stack {
    let mut st = Stack::new(vec![Dev {
        name: "eth0".into(),
        mac,
        addrs: vec![Ipv4Net::new(ip, cidr.prefix_len()).expect("prefix")],
        proxy_arp: false,
    }]);
    st.routes.push(route(cidr, None, ip));
    st
}

fn route(dst: Ipv4Net, via: Option<Ipv4Addr>, src: Ipv4Addr) -> Route {
    Route {
        table: TableRef::Main,
        dst: dst.trunc(),
        via,
        dev: "eth0".into(),
        src: if via.is_none() { Some(src) } else { None },
        origin: dvr_plan::Origin::default(),
    }
}
