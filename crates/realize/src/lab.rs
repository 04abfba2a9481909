//! An emulated multi-host deployment on one machine: a network namespace per
//! host with its own Open vSwitch (userspace datapath), the host's Neutron
//! namespaces beside it, a namespace per instance and external machine, and
//! one Linux bridge per physical network in a "fabric" namespace as the
//! physical switch. All addresses live only inside these namespaces.
//!
//! Everything is named with a prefix (default `dvr`) and its state lives in
//! `/run/dvr-lab/<prefix>`, so `lab down` finds and removes all of it.

use crate::cmd::{CmdError, run};
use crate::host::{self, Names, Op, RealizeError};
use crate::ip;
use crate::ovs::OvsInstance;
use dvr_model::{Segment, Topology};
use dvr_plan::Plan;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Instant;

/// A lab on this machine.
#[derive(Debug, Clone)]
pub struct Lab {
    /// Naming scheme.
    pub names: Names,
    /// State directory (OVS databases, sockets, logs, `lab.json`).
    pub state: PathBuf,
}

/// What `up` did.
#[derive(Debug, Clone, Default)]
pub struct UpReport {
    /// Operations applied, per host.
    pub ops: Vec<(String, Vec<Op>)>,
    /// Wall time in milliseconds.
    pub millis: u128,
    /// Namespaces of the lab after bring-up.
    pub namespaces: usize,
}

/// One ping's result.
#[derive(Debug, Clone, PartialEq)]
pub struct PingResult {
    /// Echo requests sent.
    pub sent: u32,
    /// Replies received.
    pub received: u32,
    /// Average round trip, ms.
    pub rtt_avg_ms: Option<f64>,
    /// ping's output.
    pub output: String,
}

/// Why a lab command failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A command failed.
    #[error(transparent)]
    Cmd(#[from] CmdError),
    /// Converging a host failed.
    #[error(transparent)]
    Realize(#[from] RealizeError),
    /// Something unsupported or unknown was asked for.
    #[error("{0}")]
    Usage(String),
}

fn short(name: &str, max: usize) -> String {
    name.chars().take(max).collect()
}

impl Lab {
    /// The lab of a prefix.
    pub fn new(prefix: &str) -> Lab {
        Lab { names: Names { prefix: prefix.to_string() }, state: PathBuf::from(format!("/run/dvr-lab/{prefix}")) }
    }

    fn ovs_dir(&self, host: &str) -> PathBuf {
        self.state.join("hosts").join(host)
    }

    /// The running OVS instance of an emulated host.
    pub fn ovs(&self, host: &str) -> OvsInstance {
        OvsInstance::attach(&self.names.host_ns(host), &self.ovs_dir(host))
    }

    fn wire_bridge(physnet: &str) -> String {
        short(&format!("sw-{physnet}"), 15)
    }

    /// Bring up (or converge) the whole lab.
    pub fn up(&self, topo: &Topology, plan: &Plan, progress: &mut dyn FnMut(&str)) -> Result<UpReport, LabError> {
        let t0 = Instant::now();
        std::fs::create_dir_all(&self.state)
            .map_err(|source| CmdError::Spawn { cmd: format!("mkdir {}", self.state.display()), source })?;
        let existing: std::collections::BTreeSet<String> = ip::netns_list()?.into_iter().collect();
        let ensure_ns = |ns: &str| -> Result<(), CmdError> {
            if !existing.contains(ns) {
                ip::netns_add(ns)?;
            }
            Ok(())
        };
        // The physical switches.
        let fabric = self.names.fabric_ns();
        ensure_ns(&fabric)?;
        let fabric_links: Vec<String> = ip::link_names(&fabric)?;
        let mut physnets: Vec<String> = topo.hosts.iter().flat_map(|h| h.bridge_mappings.iter().map(|m| m.physnet.clone())).collect();
        physnets.sort();
        physnets.dedup();
        for p in &physnets {
            let br = Self::wire_bridge(p);
            if !fabric_links.contains(&br) {
                ip::ip_ns(&fabric, &["link", "add", &br, "type", "bridge", "stp_state", "0", "forward_delay", "0"])?;
                ip::ip_ns(&fabric, &["link", "set", &br, "up"])?;
            }
        }
        let plug = |ns: &str, dev: &str, fabric_port: &str, physnet: &str| -> Result<(), CmdError> {
            let have: Vec<String> = ip::link_names(ns)?;
            if have.iter().any(|l| l == dev) {
                return Ok(());
            }
            ip::ip(&["link", "add", dev, "netns", ns, "type", "veth", "peer", "name", fabric_port, "netns", &fabric])?;
            ip::tx_off(ns, dev)?;
            ip::tx_off(&fabric, fabric_port)?;
            ip::ip_ns(&fabric, &["link", "set", fabric_port, "master", &Self::wire_bridge(physnet), "up"])?;
            ip::ip_ns(ns, &["link", "set", dev, "up"])
        };
        // Hosts: namespace, OVS, NICs on the fabric.
        for (hi, h) in topo.hosts.iter().enumerate().filter(|(_, h)| h.has_dataplane()) {
            progress(&format!("host {}: namespace and Open vSwitch", h.name));
            let hns = self.names.host_ns(&h.name);
            ensure_ns(&hns)?;
            let ovs = self.ovs(&h.name);
            if !ovs.alive() {
                OvsInstance::start(&hns, &self.ovs_dir(&h.name))?.keep();
            }
            for m in &h.bridge_mappings {
                let port = format!("h{hi}-{}", short(&m.nic, 10));
                plug(&hns, &m.nic, &port, &m.physnet)?;
            }
        }
        // Instances: a namespace each, plugged into their host's br-int port.
        for x in &topo.instances {
            let port = topo.port(x.port);
            let sub = topo.subnet(port.subnet);
            let ns = self.names.ep_ns(&x.name);
            let hns = self.names.host_ns(&topo.host(x.host).name);
            ensure_ns(&ns)?;
            let have: Vec<String> = ip::link_names(&ns)?;
            if !have.iter().any(|l| l == "eth0") {
                let dev = port.device_name();
                ip::ip(&["link", "add", &dev, "netns", &hns, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
                ip::tx_off(&hns, &dev)?;
                ip::tx_off(&ns, "eth0")?;
                ip::ip_ns(&hns, &["link", "set", &dev, "up"])?;
                ip::ip_ns(&ns, &["link", "set", "eth0", "address", &port.mac.to_string()])?;
                ip::ip_ns(&ns, &["addr", "add", &format!("{}/{}", port.ip, sub.cidr.prefix_len()), "dev", "eth0"])?;
                ip::ip_ns(&ns, &["link", "set", "eth0", "up"])?;
                ip::ip_ns(&ns, &["route", "replace", "default", "via", &sub.gateway.to_string(), "dev", "eth0"])?;
                for (dst, via) in plan.dhcp_host_routes(&topo.network(x.network).name) {
                    ip::ip_ns(&ns, &["route", "replace", &dst.to_string(), "via", &via.to_string(), "dev", "eth0"])?;
                }
            }
        }
        // External hosts and the upstream gateway of each external subnet.
        let mut outside: Vec<(String, dvr_model::MacAddr, String, Option<Ipv4Addr>, dvr_model::NetworkIx)> = topo
            .external_hosts
            .iter()
            .map(|e| {
                let sub = topo.subnet(e.subnet);
                (e.name.clone(), e.mac, format!("{}/{}", e.ip, sub.cidr.prefix_len()), Some(sub.gateway), e.network)
            })
            .collect();
        for s in topo.subnets.iter().filter(|s| s.external_gateway_mac.is_some()) {
            outside.push((
                format!("gw-{}", s.name),
                s.external_gateway_mac.expect("filtered"),
                format!("{}/{}", s.gateway, s.cidr.prefix_len()),
                None,
                s.network,
            ));
        }
        for (i, (name, mac, addr, gw, net)) in outside.iter().enumerate() {
            let Segment::Flat { physnet } = &topo.network(*net).segment else {
                return Err(LabError::Usage(format!(
                    "external network `{}` is not flat: the lab wires only flat external networks",
                    topo.network(*net).name
                )));
            };
            let ns = self.names.ep_ns(name);
            ensure_ns(&ns)?;
            let have: Vec<String> = ip::link_names(&ns)?;
            if !have.iter().any(|l| l == "eth0") {
                plug(&ns, "eth0", &format!("x{i}-{}", short(name, 10)), physnet)?;
                ip::ip_ns(&ns, &["link", "set", "eth0", "address", &mac.to_string()])?;
                ip::ip_ns(&ns, &["addr", "add", addr, "dev", "eth0"])?;
                if let Some(g) = gw {
                    ip::ip_ns(&ns, &["route", "replace", "default", "via", &g.to_string(), "dev", "eth0"])?;
                }
            }
        }
        // Converge every host to its plan.
        let mut report = UpReport::default();
        for hp in plan.hosts.iter().filter(|h| !h.bridges.is_empty()) {
            progress(&format!("host {}: converging to its plan", hp.host));
            let ovs = self.ovs(&hp.host);
            let ops = host::diff(&self.names, hp, &ovs)?;
            host::apply(&ops, &ovs)?;
            report.ops.push((hp.host.clone(), ops));
        }
        report.namespaces = self.namespaces()?.len();
        report.millis = t0.elapsed().as_millis();
        Ok(report)
    }

    /// The operations a converge would apply now (empty when the lab matches the plan).
    pub fn pending(&self, plan: &Plan) -> Result<Vec<(String, Vec<Op>)>, LabError> {
        let mut out = Vec::new();
        for hp in plan.hosts.iter().filter(|h| !h.bridges.is_empty()) {
            out.push((hp.host.clone(), host::diff(&self.names, hp, &self.ovs(&hp.host))?));
        }
        Ok(out)
    }

    /// Tear everything down: OVS daemons, namespaces, state. Returns what was removed.
    pub fn down(&self) -> Result<Vec<String>, LabError> {
        let mut removed = Vec::new();
        if let Ok(hosts) = std::fs::read_dir(self.state.join("hosts")) {
            for h in hosts.flatten() {
                let name = h.file_name().to_string_lossy().to_string();
                self.ovs(&name).stop();
                removed.push(format!("ovs of {name}"));
            }
        }
        for ns in self.namespaces()? {
            run("ip", &["netns", "del", &ns], &[], None)?;
            removed.push(ns);
        }
        if self.state.exists() {
            std::fs::remove_dir_all(&self.state)
                .map_err(|source| CmdError::Spawn { cmd: format!("rm -rf {}", self.state.display()), source })?;
            removed.push(self.state.display().to_string());
        }
        Ok(removed)
    }

    /// The lab's namespaces currently present.
    pub fn namespaces(&self) -> Result<Vec<String>, LabError> {
        let p = format!("{}-", self.names.prefix);
        Ok(ip::netns_list()?.into_iter().filter(|n| n.starts_with(&p)).collect())
    }

    /// Anything of this lab still on the machine: namespaces, processes, files.
    pub fn leftovers(&self) -> Vec<String> {
        let mut out = self.namespaces().unwrap_or_default();
        let dir = self.state.display().to_string();
        if let Ok(procs) = std::fs::read_dir("/proc") {
            for p in procs.flatten() {
                let Ok(cmdline) = std::fs::read(p.path().join("cmdline")) else { continue };
                let stat = std::fs::read_to_string(p.path().join("stat")).unwrap_or_default();
                let zombie = stat.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z'));
                if !zombie && String::from_utf8_lossy(&cmdline).contains(&format!("{dir}/")) {
                    out.push(format!("process {}", p.file_name().to_string_lossy()));
                }
            }
        }
        if self.state.exists() {
            out.push(dir);
        }
        out
    }

    /// The namespace of an endpoint or host name (`vm1`, `ext1`, `compute1`).
    pub fn resolve_ns(&self, name: &str) -> Result<String, LabError> {
        let present = self.namespaces()?;
        for cand in [self.names.ep_ns(name), self.names.host_ns(name), format!("{}-host-{name}", self.names.prefix)] {
            if present.contains(&cand) {
                return Ok(cand);
            }
        }
        if let Some(ns) = present.iter().find(|n| n.ends_with(&format!(".{name}"))) {
            return Ok(ns.clone());
        }
        Err(LabError::Usage(format!(
            "no lab namespace for `{name}` (is the lab up? `dvr lab status`); names are instances, external hosts and hosts"
        )))
    }

    /// A real ping from an endpoint's namespace.
    pub fn ping(&self, from: &str, to: Ipv4Addr, count: u32) -> Result<PingResult, LabError> {
        let ns = self.resolve_ns(from)?;
        let out = match ip::exec(&ns, "ping", &["-n", "-c", &count.to_string(), "-i", "0.2", "-W", "2", &to.to_string()], None) {
            Ok(o) => o,
            Err(CmdError::Failed { stderr, .. }) => stderr,
            Err(e) => return Err(e.into()),
        };
        Ok(parse_ping(&out))
    }
}

/// Read `ping`'s summary lines.
pub fn parse_ping(out: &str) -> PingResult {
    let mut r = PingResult { sent: 0, received: 0, rtt_avg_ms: None, output: out.to_string() };
    for l in out.lines() {
        if l.contains("packets transmitted") {
            let nums: Vec<u32> = l.split(|c: char| !c.is_ascii_digit()).filter_map(|x| x.parse().ok()).collect();
            if nums.len() >= 2 {
                r.sent = nums[0];
                r.received = nums[1];
            }
        }
        if let Some(v) = l.split(" = ").nth(1).filter(|_| l.starts_with("rtt")) {
            r.rtt_avg_ms = v.split('/').nth(1).and_then(|x| x.parse().ok());
        }
    }
    r
}

/// A lab that is torn down when this value is dropped, also when a test
/// fails or panics, so a failed run leaves no namespaces or daemons behind.
pub struct TearDown(pub Lab);

impl Drop for TearDown {
    fn drop(&mut self) {
        let _ = self.0.down();
    }
}
