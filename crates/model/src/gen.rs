//! A deterministic topology generator for scale tests.
//!
//! [`generate`] builds a [`TopologySpec`] of any size from a few numbers
//! ([`GenParams`]): one controller, one network node, `hosts` compute nodes,
//! `networks` VLAN tenant networks spread over `routers` distributed routers
//! (every network on exactly one router, every router with a gateway on one
//! flat external network), `vms` instances placed by a seeded PRNG, floating
//! IPs on distinct instances and external hosts on the external network.
//! Everything optional (fixed IPs, MACs, DVR MACs, gateways) is left to the
//! allocator of [`crate::build`], so the file stays small and realistic.
//!
//! [`generate_yaml`] writes the spec as topology YAML (version 1) with a
//! `paths:` section of demo paths chosen so that every listed
//! path exists, for `dvr demo -t FILE`. The same parameters always give
//! byte-identical YAML.
//!
//! Address plan: tenant subnet `n` (0-based) is `10.(n / 256).(n % 256).0/24`,
//! the external subnet is `100.64.0.0/16` (widened down to `/10` when the
//! gateway, fip-agent, floating IP and external host addresses need more),
//! tenant VLANs are 100, 101, … on `physnet1` (wrapping to 1..=99 past 4094);
//! with [`TenantType::Vxlan`] the networks are VXLAN with VNIs 1001, 1002, …,
//! the hosts map only the external network, and the tunnel endpoints are
//! allocated from the underlay `172.16.0.0/16` (room for 65,534 hosts).

use crate::alloc::SplitMix64;
use crate::spec::*;
use indexmap::IndexMap;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// At most this many instances per tenant network: a /24 has 253 addresses
/// after the gateway, minus the DHCP and SNAT (sg-) ports; 200 leaves room.
pub const MAX_VMS_PER_NETWORK: usize = 200;

/// At most this many tenant networks: VLAN ids 1..=4094 on `physnet1`, and the
/// network node, which carries every network plus the external one, has 4094
/// local VLANs.
pub const MAX_NETWORKS: usize = 4093;

/// At most this many routers: the network node carries all of them, and a host
/// has 8192 rfp/fpr link-local pairs for routers with a gateway.
pub const MAX_ROUTERS: usize = 8192;

/// Name of the external network (and prefix of its subnet's name).
pub const EXTERNAL_NETWORK: &str = "external";

/// The segmentation of the generated tenant networks: the walkthrough's
/// VLANs, or the VXLAN tunnels most clouds run DVR over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TenantType {
    /// VLAN networks on `physnet1` (`br-vlan`).
    #[default]
    Vlan,
    /// VXLAN networks between the hosts' tunnel endpoints (`br-tun`).
    Vxlan,
}

/// The underlay of generated VXLAN deployments: a /16, where the model's
/// default /24 holds only 254 tunnel endpoints.
pub const GEN_UNDERLAY: &str = "172.16.0.0/16";

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenParams {
    /// Compute hosts (besides the controller and the network node).
    pub hosts: usize,
    /// Instances, spread over the compute hosts and tenant networks.
    pub vms: usize,
    /// VLAN tenant networks, one /24 subnet each.
    pub networks: usize,
    /// Distributed routers; the networks are split between them in contiguous blocks.
    pub routers: usize,
    /// Seed of the placement PRNG.
    pub seed: u64,
    /// Machines on the external network.
    pub external_hosts: usize,
    /// Floating IPs, each associated with a distinct instance.
    pub floating_ips: usize,
    /// VLAN or VXLAN tenant networks.
    pub tenant_type: TenantType,
}

impl Default for GenParams {
    /// A small deployment: 3 compute hosts, 12 instances, 4 networks on 2 routers,
    /// 2 floating IPs, 2 external hosts.
    fn default() -> Self {
        GenParams { hosts: 3, vms: 12, networks: 4, routers: 2, seed: 0, external_hosts: 2, floating_ips: 2, tenant_type: TenantType::Vlan }
    }
}

impl GenParams {
    /// The proportions of a large deployment (1,000 hosts ≈ 20,000 instances,
    /// 500 networks, 250 routers): `vms = 20 × hosts`, `networks = hosts / 2`
    /// (at least 2, at most [`MAX_NETWORKS`], the VLANs the network node can
    /// carry: 10,000 hosts get 4,093 networks), `routers = hosts / 4` (at least
    /// 1), one floating IP per 20 instances, 2 external hosts, seed 0.
    pub fn scale(hosts: usize) -> Self {
        let vms = 20 * hosts;
        GenParams {
            hosts,
            vms,
            networks: (hosts / 2).clamp(2, MAX_NETWORKS),
            routers: (hosts / 4).max(1),
            seed: 0,
            external_hosts: 2,
            floating_ips: vms / 20,
            tenant_type: TenantType::Vlan,
        }
    }

    /// The same parameters with another seed.
    pub fn with_seed(self, seed: u64) -> Self {
        GenParams { seed, ..self }
    }

    /// Why these parameters cannot give a valid deployment, if they cannot.
    /// [`generate`] panics with this message.
    pub fn check(&self) -> Result<(), String> {
        let p = self;
        if p.vms > 0 && p.hosts == 0 {
            return Err(format!("{} instances need at least one compute host", p.vms));
        }
        if p.vms > p.networks.saturating_mul(MAX_VMS_PER_NETWORK) {
            return Err(format!(
                "{} instances do not fit into {} networks of at most {MAX_VMS_PER_NETWORK} instances each; use at least {} networks",
                p.vms,
                p.networks,
                p.vms.div_ceil(MAX_VMS_PER_NETWORK)
            ));
        }
        if p.networks > MAX_NETWORKS {
            return Err(format!("{} networks exceed the {MAX_NETWORKS} VLANs the network node can carry", p.networks));
        }
        if p.networks > 0 && p.routers == 0 {
            return Err("every network is attached to a router: use at least one router".to_string());
        }
        if p.routers > MAX_ROUTERS {
            return Err(format!("{} routers exceed the {MAX_ROUTERS} link-local pairs of the network node", p.routers));
        }
        if p.floating_ips > p.vms {
            return Err(format!("{} floating IPs need as many instances, but there are {}", p.floating_ips, p.vms));
        }
        external_prefix(p).map(|_| ())
    }
}

/// The external subnet's prefix length: `/16` unless its users need more
/// addresses (gateway, qg- per router, fg- per dataplane host, floating IPs,
/// external hosts, the demo floating IP at the top end).
fn external_prefix(p: &GenParams) -> Result<u8, String> {
    let need = [1, p.routers, p.hosts, 1, p.floating_ips, p.external_hosts, 1].iter().fold(0usize, |a, b| a.saturating_add(*b));
    (10..=16u8)
        .rev()
        .find(|&len| (1usize << (32 - len)) - 2 >= need)
        .ok_or_else(|| format!("{need} external addresses do not fit into 100.64.0.0/10"))
}

/// Host names, for the compute host `h` (0-based).
fn compute_name(h: usize) -> String {
    format!("compute{}", h + 1)
}

fn network_name(n: usize) -> String {
    format!("net{}", n + 1)
}

fn subnet_name(n: usize) -> String {
    format!("net{}-v4", n + 1)
}

fn vm_name(v: usize) -> String {
    format!("vm{}", v + 1)
}

fn ext_name(e: usize) -> String {
    format!("ext{}", e + 1)
}

/// The /24 of tenant network `n`.
fn tenant_net(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, (n / 256) as u8, (n % 256) as u8, 0)
}

/// The VLAN id of tenant network `n`: 100.., then 1..=99.
/// The VNI of tenant network `n` (VXLAN deployments).
fn tenant_vni(n: usize) -> u64 {
    1001 + n as u64
}

fn tenant_vlan(n: usize) -> u64 {
    let v = 100 + n as u64;
    if v <= 4094 { v } else { v - 4094 }
}

/// The router of tenant network `n`: contiguous blocks of `networks / routers`.
fn router_of(p: &GenParams, n: usize) -> usize {
    n * p.routers / p.networks
}

/// The generated deployment before it becomes a spec: where everything went.
struct Layout {
    /// (compute host, network) of each instance.
    vms: Vec<(usize, usize)>,
    /// Instances with a floating IP, ascending.
    fips: Vec<usize>,
    /// Address of the first floating IP (the one of the demo path).
    demo_fip: Option<Ipv4Addr>,
    /// The external subnet.
    external_cidr: (Ipv4Addr, u8),
}

fn layout(p: &GenParams) -> Layout {
    if let Err(e) = p.check() {
        panic!("dvr_model::gen: invalid parameters {p:?}: {e}");
    }
    let mut rng = SplitMix64::new(p.seed);
    // Networks that still have room; a full one is swapped out.
    let mut open: Vec<usize> = (0..p.networks).collect();
    let mut load = vec![0usize; p.networks];
    let mut vms = Vec::with_capacity(p.vms);
    for _ in 0..p.vms {
        let host = rng.below(p.hosts);
        let k = rng.below(open.len());
        let net = open[k];
        load[net] += 1;
        if load[net] == MAX_VMS_PER_NETWORK {
            open.swap_remove(k);
        }
        vms.push((host, net));
    }
    // Floating IPs on distinct instances: a partial Fisher-Yates shuffle.
    let mut order: Vec<usize> = (0..p.vms).collect();
    for i in 0..p.floating_ips {
        let j = i + rng.below(p.vms - i);
        order.swap(i, j);
    }
    let mut fips = order[..p.floating_ips].to_vec();
    fips.sort_unstable();
    let prefix = external_prefix(p).expect("checked");
    let base = Ipv4Addr::new(100, 64, 0, 0);
    let broadcast = u32::from(base) | (u32::MAX >> prefix);
    let demo_fip = (!fips.is_empty()).then(|| Ipv4Addr::from(broadcast - 1));
    Layout { vms, fips, demo_fip, external_cidr: (base, prefix) }
}

/// Generate the deployment described by `p`. Panics when [`GenParams::check`] fails.
pub fn generate(p: &GenParams) -> TopologySpec {
    spec_of(p, &layout(p))
}

fn spec_of(p: &GenParams, l: &Layout) -> TopologySpec {
    let vxlan = p.tenant_type == TenantType::Vxlan;
    // VXLAN tenant networks need no physical network of their own.
    let mappings: IndexMap<String, String> = [("physnet1", "br-vlan"), ("extnet", "br-ex")]
        .into_iter()
        .filter(|(physnet, _)| !(vxlan && *physnet == "physnet1"))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let host = |name: String, role: Role| HostSpec {
        id: None,
        name,
        role,
        bridge_mappings: if role == Role::Controller { IndexMap::new() } else { mappings.clone() },
        nics: IndexMap::new(),
        dvr_mac: None,
        tunnel_ip: None,
    };
    let mut hosts = vec![host("controller".into(), Role::Controller), host("network".into(), Role::Network)];
    hosts.extend((0..p.hosts).map(|h| host(compute_name(h), Role::Compute)));

    let mut networks: Vec<NetworkSpec> = (0..p.networks)
        .map(|n| NetworkSpec {
            id: None,
            name: network_name(n),
            kind: if vxlan { NetworkType::Vxlan } else { NetworkType::Vlan },
            physical_network: (!vxlan).then(|| "physnet1".into()),
            segmentation_id: Some(if vxlan { tenant_vni(n) } else { tenant_vlan(n) }),
            external: false,
            subnets: vec![SubnetSpec { name: subnet_name(n), cidr: format!("{}/24", tenant_net(n)), ..SubnetSpec::default() }],
        })
        .collect();
    let (ext_base, ext_prefix) = l.external_cidr;
    networks.push(NetworkSpec {
        id: None,
        name: EXTERNAL_NETWORK.into(),
        kind: NetworkType::Flat,
        physical_network: Some("extnet".into()),
        segmentation_id: None,
        external: true,
        subnets: vec![SubnetSpec {
            name: format!("{EXTERNAL_NETWORK}-v4"),
            cidr: format!("{ext_base}/{ext_prefix}"),
            enable_dhcp: Some(false),
            ..SubnetSpec::default()
        }],
    });

    let mut routers: Vec<RouterSpec> = (0..p.routers)
        .map(|r| RouterSpec {
            name: format!("router{}", r + 1),
            distributed: Some(true),
            interfaces: Vec::new(),
            external_gateway: Some(EXTERNAL_NETWORK.into()),
            id: None,
            enable_snat: None,
        })
        .collect();
    for n in 0..p.networks {
        routers[router_of(p, n)].interfaces.push(subnet_name(n));
    }

    let instances = l
        .vms
        .iter()
        .enumerate()
        .map(|(v, &(h, n))| InstanceSpec {
            id: None,
            name: vm_name(v),
            host: compute_name(h),
            network: network_name(n),
            ip: None,
            mac: None,
            ..InstanceSpec::default()
        })
        .collect();
    let floating_ips = l
        .fips
        .iter()
        .enumerate()
        .map(|(k, &v)| FloatingIpSpec { id: None, ip: if k == 0 { l.demo_fip } else { None }, instance: Some(vm_name(v)), network: None })
        .collect();
    let external_hosts =
        (0..p.external_hosts).map(|e| ExternalHostSpec { name: ext_name(e), network: EXTERNAL_NETWORK.into(), ip: None }).collect();

    TopologySpec {
        version: Some(1),
        name: Some(format!("gen-{}h-{}vm-{}net-{}r-seed{}", p.hosts, p.vms, p.networks, p.routers, p.seed)),
        hosts,
        networks,
        routers,
        instances,
        floating_ips,
        external_hosts,
        paths: demo_paths(p, l)
            .into_iter()
            .map(|(from, to, note)| PathSpec { from, to, expect: Some(Expected::Delivered), note: Some(note), proto: None, dport: None })
            .collect(),
        ports: Vec::new(),
        security_groups: Vec::new(),
        underlay: vxlan.then(|| GEN_UNDERLAY.to_string()),
    }
}

/// The demo paths of a layout: `(from, to, note)`, each one known to exist.
fn demo_paths(p: &GenParams, l: &Layout) -> Vec<(String, String, String)> {
    let vms = &l.vms;
    let router = |v: usize| router_of(p, vms[v].1);
    let mut out = Vec::new();
    let mut add = |from: String, to: String, note: String| out.push((from, to, note));

    if let Some(&(_, n)) = vms.first() {
        let gw = Ipv4Addr::from(u32::from(tenant_net(n)) + 1);
        add(vm_name(0), gw.to_string(), "VM to its gateway (ARP stays on the host)".into());
    }
    // Same network, same host: the first instance sharing (network, host) with an earlier one.
    let mut by_net_host: HashMap<(usize, usize), usize> = HashMap::new();
    if let Some((a, b)) = vms.iter().enumerate().find_map(|(j, &(h, n))| by_net_host.insert((n, h), j).map(|i| (i, j))) {
        add(vm_name(a), vm_name(b), "same network, same host".into());
    }
    // Same network, different hosts: against the first instance of each network.
    let mut first_on_net: Vec<Option<usize>> = vec![None; p.networks];
    if let Some((a, b)) = vms.iter().enumerate().find_map(|(j, &(h, n))| match first_on_net[n] {
        Some(i) if vms[i].0 != h => Some((i, j)),
        Some(_) => None,
        None => {
            first_on_net[n] = Some(j);
            None
        }
    }) {
        let wire = match p.tenant_type {
            TenantType::Vlan => format!("VLAN {} on the wire", tenant_vlan(vms[a].1)),
            TenantType::Vxlan => format!("VNI {} in the tunnel", tenant_vni(vms[a].1)),
        };
        add(vm_name(a), vm_name(b), format!("same network, different hosts ({wire})"));
    }
    // Different networks of one router, same host: against the first instance per (router, host).
    let mut first_on_router_host: HashMap<(usize, usize), usize> = HashMap::new();
    if let Some((a, b)) = vms.iter().enumerate().find_map(|(j, &(h, n))| {
        let i = *first_on_router_host.entry((router(j), h)).or_insert(j);
        (vms[i].1 != n).then_some((i, j))
    }) {
        add(vm_name(a), vm_name(b), "different networks, same host (local qrouter)".into());
    }
    // Different networks of one router, different hosts. Per router keep the first
    // instance `a`, the first differing from it in network only (`n`) and the first
    // differing in host only (`h`): a pair exists iff one instance differs from `a`
    // in both, or both `n` and `h` exist (then they differ from each other in both).
    let mut seen: Vec<(Option<usize>, Option<usize>, Option<usize>)> = vec![(None, None, None); p.routers];
    if let Some((a, b)) = vms.iter().enumerate().find_map(|(j, &(h, n))| {
        let s = &mut seen[router(j)];
        let Some(a) = s.0 else {
            s.0 = Some(j);
            return None;
        };
        let (ha, na) = vms[a];
        match (h != ha, n != na) {
            (true, true) => Some((a, j)),
            (false, true) => {
                s.1.get_or_insert(j);
                s.1.zip(s.2)
            }
            (true, false) => {
                s.2.get_or_insert(j);
                s.1.zip(s.2)
            }
            (false, false) => None,
        }
    }) {
        let (a, b) = (a.min(b), a.max(b));
        add(vm_name(a), vm_name(b), "different networks, different hosts (routed across hosts, DVR MAC on the wire)".into());
    }
    if !vms.is_empty() {
        add(vm_name(0), "169.254.169.254".into(), "metadata through the qdhcp namespace on the network node".into());
    }
    if p.external_hosts > 0 {
        let ext = ext_name(0);
        let mut fip = l.fips.iter().copied().peekable();
        // The first instance without a floating IP.
        let snat = (0..vms.len()).find(|&v| {
            while fip.next_if(|&f| f < v).is_some() {}
            fip.peek() != Some(&v)
        });
        if let Some(v) = snat {
            add(vm_name(v), ext.clone(), "SNAT through the network node".into());
        }
        if let (Some(&v), Some(ip)) = (l.fips.first(), l.demo_fip) {
            let host = compute_name(vms[v].0);
            add(vm_name(v), ext.clone(), format!("floating IP {ip}, out through {host}'s fip namespace"));
            add(ext, ip.to_string(), format!("floating IP in: proxy ARP on fg-, DNAT to {}", vm_name(v)));
        }
    }
    out
}

/// Serialize without `null`s and empty collections: every such field of the
/// spec has a serde default, so the file reads back the same, and is smaller.
fn prune(v: &mut serde_yaml_ng::Value) {
    use serde_yaml_ng::Value;
    match v {
        Value::Mapping(m) => {
            m.retain(|_, x| {
                prune(x);
                !matches!(x, Value::Null)
                    && !matches!(x, Value::Mapping(m) if m.is_empty())
                    && !matches!(x, Value::Sequence(s) if s.is_empty())
            });
        }
        Value::Sequence(s) => s.iter_mut().for_each(prune),
        _ => {}
    }
}

/// [`generate`] as topology YAML (version 1); its `paths:` section lists
/// demo paths that exist, for `dvr demo -t FILE`.
/// Same parameters → byte-identical text.
pub fn generate_yaml(p: &GenParams) -> String {
    let l = layout(p);
    let spec = spec_of(p, &l);
    let mut value = serde_yaml_ng::to_value(&spec).expect("a spec serializes");
    prune(&mut value);
    let body = serde_yaml_ng::to_string(&value).expect("a YAML value serializes");

    let mut out = format!(
        "# Generated by dvr_model::gen: compute hosts {}, instances {}, networks {}, routers {},\n\
         # floating IPs {}, external hosts {}, seed {}.\n",
        p.hosts, p.vms, p.networks, p.routers, p.floating_ips, p.external_hosts, p.seed
    );
    out += "\n";
    out += &body;
    out
}

/// A fresh VLAN network (`bench-net`, subnet `bench-sub`, 198.18.0.0/24,
/// the benchmarking range) that no router has yet: what the change
/// benchmarks (`dvr bench`, the plan crate's examples) attach to a router
/// and detach again.
pub fn spare_network() -> NetworkSpec {
    NetworkSpec {
        id: None,
        name: "bench-net".into(),
        kind: NetworkType::Vlan,
        physical_network: Some("physnet1".into()),
        segmentation_id: None,
        external: false,
        subnets: vec![SubnetSpec {
            name: "bench-sub".into(),
            cidr: "198.18.0.0/24".into(),
            enable_dhcp: Some(true),
            ..SubnetSpec::default()
        }],
    }
}
