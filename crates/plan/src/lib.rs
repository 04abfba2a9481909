//! # dvr-plan: the DVR control plane
//!
//! From a validated [`dvr_model::Topology`], decide for every host exactly
//! what Neutron's OVS agent, l3 agent and DHCP agent would build there:
//! bridges, ports, OpenFlow tables, namespaces with their devices, routes,
//! policy rules, permanent ARP, netfilter rules and sysctls.
//!
//! The crate is pure (no I/O) and deterministic: the same topology gives a
//! byte-identical plan. Layout: [`tables`] declares every pipeline stage once;
//! [`profile`] holds the only differences between the walkthrough's Neutron
//! and today's; [`flows`], [`firewall`], [`tunnel`] (br-tun, l2population), [`ovs`] and [`netns`] are the feature builders;
//! [`model`] is the result; [`render`] prints it in native formats.
#![forbid(unsafe_code)]

pub mod ctx;
pub mod delta;
pub mod firewall;
pub mod flows;
pub mod hostpatch;
pub mod ifacepatch;
pub mod incremental;
pub mod model;
pub mod neigh;
pub mod netns;
pub mod ovs;
pub mod profile;
pub mod qrpatch;
pub mod rebridge;
pub mod render;
pub mod tables;
pub mod tunnel;

pub use model::*;
pub use profile::Profile;

use dvr_model::{HostIx, Topology};
use serde::Serialize;

/// The plan of a whole deployment.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Topology label.
    pub topology: String,
    /// Profile used.
    pub profile: Profile,
    /// One plan per host, in the topology's host order.
    pub hosts: Vec<HostPlan>,
}

impl Plan {
    /// What DHCP pushes to instances of a network: the classless static
    /// routes (option 121) of its qdhcp namespace, e.g. the metadata route.
    pub fn dhcp_host_routes(&self, network: &str) -> Vec<(ipnet::Ipv4Net, std::net::Ipv4Addr)> {
        self.hosts
            .iter()
            .flat_map(|h| h.namespaces.iter())
            .filter(|n| n.kind == NamespaceKind::Qdhcp && n.serves == network)
            .flat_map(|n| n.dhcp.iter().flat_map(|d| d.host_routes.iter().copied()))
            .collect()
    }

    /// A host's plan by name.
    pub fn host(&self, name: &str) -> Option<&HostPlan> {
        self.hosts.iter().find(|h| h.host == name)
    }
}

/// Why a topology cannot be planned (features the model accepts but the
/// planner does not lay out). Every network type of version 1 is planned
/// today; the error stays so callers keep checking before they plan.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A network the planner cannot lay out.
    #[error("network `{network}` cannot be planned: {why}\n    fix: {fix}")]
    Unsupported {
        /// Network name.
        network: String,
        /// What is missing.
        why: String,
        /// What to do instead.
        fix: String,
    },
}

/// Whether the planner lays out every network of `topo` (what [`plan`] checks
/// first; callers that plan host by host check it themselves). VLAN, flat
/// and VXLAN networks all are.
pub fn check_supported(_topo: &Topology) -> Result<(), PlanError> {
    Ok(())
}

/// Plan every host.
pub fn plan(topo: &Topology, profile: Profile) -> Result<Plan, PlanError> {
    check_supported(topo)?;
    let ixs: Vec<HostIx> = topo.hosts_ix().map(|(i, _)| i).collect();
    let threads = if ixs.len() < PARALLEL_ABOVE_HOSTS { 1 } else { std::thread::available_parallelism().map_or(1, |n| n.get()).min(2) };
    let plan_part = |part: &[HostIx]| -> Vec<HostPlan> {
        let cache = ctx::FlowCache::for_fixed_topology();
        part.iter().map(|&i| plan_host_shared(topo, i, profile, &cache)).collect()
    };
    let hosts = if threads < 2 {
        plan_part(&ixs)
    } else {
        // Two halves on two threads, each with its own cache (so each shared
        // DVR-MAC flow exists twice, not once per host), joined in host order:
        // the plan is the same as a single loop's.
        let (a, b) = ixs.split_at(ixs.len() / 2);
        std::thread::scope(|sc| {
            let second = sc.spawn(|| plan_part(b));
            let mut hosts = plan_part(a);
            hosts.extend(second.join().expect("planning a host does not panic"));
            hosts
        })
    };
    Ok(Plan { topology: topo.name.clone(), profile, hosts })
}

/// From this many hosts on, [`plan`] plans on two threads: below it, a
/// thread costs more than it saves.
const PARALLEL_ABOVE_HOSTS: usize = 64;

/// The classless static routes DHCP pushes to instances of `network`, as
/// [`Plan::dhcp_host_routes`] finds them in the planned `qdhcp-` namespaces,
/// but read from the topology alone: a lazy twin needs them for every
/// instance before it has planned the hosts running the DHCP ports.
pub fn dhcp_host_routes(topo: &Topology, network: dvr_model::NetworkIx) -> Vec<(ipnet::Ipv4Net, std::net::Ipv4Addr)> {
    // The network's own ports (by subnet), not every host's: called once per
    // network, a scan of every host made a 10,000-host twin quadratic.
    let mut dhcp: Vec<(dvr_model::HostIx, dvr_model::PortIx)> = topo
        .network(network)
        .subnets
        .iter()
        .flat_map(|s| topo.index.subnet_ports[s.0].iter().copied())
        .filter_map(|p| {
            let port = topo.port(p);
            let h = port.host.filter(|h| port.owner == dvr_model::PortOwner::Dhcp && topo.host(*h).has_dataplane())?;
            Some((h, p))
        })
        .collect();
    // In host order, then port order: as a walk over the hosts lists them.
    dhcp.sort();
    dhcp.into_iter().map(|(_, p)| (ipnet::Ipv4Net::new(netns::METADATA_IP, 32).expect("/32"), topo.port(p).ip)).collect()
}

/// The whole [`Plan`] as it serializes, but planned one host at a time while
/// it is written: memory holds one host's plan (and the shared flow cache),
/// not the deployment's, so `dvr plan --format json` of 1,000 hosts streams
/// instead of building gigabytes. Create it after [`check_supported`].
pub struct StreamedPlan<'a> {
    /// The deployment.
    pub topo: &'a Topology,
    /// The profile to plan with.
    pub profile: Profile,
}

impl Serialize for StreamedPlan<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct Hosts<'a>(&'a StreamedPlan<'a>);
        impl Serialize for Hosts<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq;
                let mut seq = s.serialize_seq(Some(self.0.topo.hosts.len()))?;
                let hosts: Vec<HostIx> = self.0.topo.hosts_ix().map(|(ix, _)| ix).collect();
                for_each_host(self.0.topo, &hosts, self.0.profile, |hp| seq.serialize_element(&hp))?;
                seq.end()
            }
        }
        let mut st = s.serialize_struct("Plan", 3)?;
        st.serialize_field("topology", &self.topo.name)?;
        st.serialize_field("profile", &self.profile)?;
        st.serialize_field("hosts", &Hosts(self))?;
        st.end()
    }
}

/// Plan `hosts` in order and hand each plan to `each`, planning the next
/// host on a second thread while `each` writes the current one: `dvr plan`
/// spends as long writing (serializing gigabytes of JSON) as planning, and
/// the two overlap on two cores. At most two plans wait in the hand-over, so
/// memory stays a few hosts' plans. The order, and so the output, is the one
/// of a plain loop. Stops planning at the first error of `each`.
pub fn for_each_host<E>(
    topo: &Topology,
    hosts: &[HostIx],
    profile: Profile,
    mut each: impl FnMut(HostPlan) -> Result<(), E>,
) -> Result<(), E> {
    if hosts.len() < 2 {
        let cache = ctx::FlowCache::for_fixed_topology();
        return hosts.iter().try_for_each(|&ix| each(plan_host_shared(topo, ix, profile, &cache)));
    }
    std::thread::scope(|sc| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<HostPlan>(2);
        sc.spawn(move || {
            let cache = ctx::FlowCache::for_fixed_topology();
            for &ix in hosts {
                // A closed channel means `each` failed: stop planning.
                if tx.send(plan_host_shared(topo, ix, profile, &cache)).is_err() {
                    break;
                }
            }
        });
        // `rx` is dropped on an early return, which ends the planner.
        rx.into_iter().try_for_each(&mut each)
    })
}

/// Plan one host.
pub fn plan_host(topo: &Topology, ix: HostIx, profile: Profile) -> HostPlan {
    plan_host_shared(topo, ix, profile, &ctx::FlowCache::for_fixed_topology())
}

/// Plan one host, sharing flows identical across hosts through `cache`.
pub fn plan_host_shared(topo: &Topology, ix: HostIx, profile: Profile, cache: &ctx::FlowCache) -> HostPlan {
    let h = topo.host(ix);
    if !h.has_dataplane() {
        return HostPlan {
            host: h.name.clone(),
            role: h.role,
            agent_mode: None,
            dvr_mac: None,
            sysctls: vec![],
            bridges: vec![],
            namespaces: vec![],
        };
    }
    let cx = ctx::HostCtx::new(topo, ix, profile, cache);
    HostPlan {
        host: h.name.clone(),
        role: h.role,
        agent_mode: h.agent_mode(),
        dvr_mac: h.dvr_mac,
        // The walkthrough's host settings (section 0): routing on, reverse-path filter off.
        sysctls: vec![
            Sysctl::new("net.ipv4.ip_forward", 1),
            Sysctl::new("net.ipv4.conf.all.rp_filter", 0),
            Sysctl::new("net.ipv4.conf.default.rp_filter", 0),
        ],
        bridges: ovs::bridges(&cx),
        namespaces: netns::namespaces(&cx),
    }
}
