//! An emulated multi-host deployment on one machine: a network namespace per
//! host with its own Open vSwitch (userspace datapath), the host's Neutron
//! namespaces beside it, a namespace per instance and external machine, and
//! one Linux bridge per physical network in a "fabric" namespace as the
//! physical switch. All addresses live only inside these namespaces.
//!
//! Everything is named with a prefix (default `dvr`) and its state lives in
//! `/run/dvr-lab/<prefix>`, so `lab down` finds and removes all of it.
//!
//! `up`, `down` and `status` hold an exclusive lock on `/run/dvr-lab/<prefix>.lock`
//! while they run: two commands on one prefix take turns instead of creating
//! and deleting the same namespaces and daemons under each other.

use crate::cmd::{CmdError, run};
use crate::host::{self, Names, Op, RealizeError};
use crate::ip;
use crate::ovs::{Daemon, OvsInstance};
use dvr_model::{Segment, Topology};
use dvr_plan::Plan;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long a lab command waits for another one on the same prefix.
pub const LOCK_WAIT: Duration = Duration::from_secs(180);

/// Alias prefix of the host-side device of an instance VIF plugged by
/// [`Lab::plug_instance`]; the instance name follows.
pub const VIF_MARK: &str = "dvr-vif:";

/// An instance VIF found on a host by its marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluggedVif {
    /// The instance (its namespace is `ep_ns(instance)`).
    pub instance: String,
    /// The host-side device (`qvo…`, named after the port's UUID).
    pub device: String,
}

/// Alias prefix of the fabric-side device of an outside endpoint (external
/// host, upstream gateway) created by [`Lab::outside`]; its name follows.
pub const OUTSIDE_MARK: &str = "dvr-outside:";

/// The outside endpoints of `topo`: (name, MAC, address/prefix, default
/// gateway, network), external hosts first, then each external subnet's
/// upstream gateway `gw-SUBNET`.
fn outside_of(topo: &Topology) -> Vec<(String, dvr_model::MacAddr, String, Option<Ipv4Addr>, dvr_model::NetworkIx)> {
    let mut outside: Vec<_> = topo
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
    outside
}

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
    /// Daemons found dead and started again (host, daemon); empty on a first bring-up.
    pub restarted: Vec<(String, Daemon)>,
}

/// One way the lab differs from its plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// Host it concerns (`fabric` for the physical switches and outside machines).
    pub host: String,
    /// What kind of state: `daemon`, `namespace`, `device`, `address`, `route`,
    /// `rule`, `neighbour`, `sysctl`, `nat`, `bridge`, `port`, `flows`,
    /// `underlay` (a VXLAN host's tunnel endpoint) or `unreadable` (the
    /// state could not be read, so it is unknown).
    pub kind: &'static str,
    /// Which item, and what `lab up` would do about it.
    pub item: String,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.host, self.kind, self.item)
    }
}

/// The health of a lab: its daemons and every difference from the plan.
#[derive(Debug, Clone, Default)]
pub struct LabStatus {
    /// The lab's namespaces present.
    pub namespaces: usize,
    /// Per planned host with a dataplane: (host, daemons with whether each runs).
    pub daemons: Vec<(String, Vec<(Daemon, bool)>)>,
    /// Everything that differs from the plan (dead daemons included).
    pub drift: Vec<Drift>,
}

impl LabStatus {
    /// Whether every daemon runs and nothing drifted.
    pub fn clean(&self) -> bool {
        self.drift.is_empty()
    }

    /// The drift of one host.
    pub fn of_host<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a Drift> + 'a {
        self.drift.iter().filter(move |d| d.host == host)
    }
}

/// The exclusive hold of one command on a lab prefix; released on drop.
#[derive(Debug)]
pub struct LabLock {
    file: Flock<std::fs::File>,
    path: PathBuf,
}

impl LabLock {
    /// Release the lock and remove its file (after `down`, nothing of the lab
    /// stays). Waiters re-check the file after locking, so removal is safe.
    fn release_and_remove(self) {
        let _ = std::fs::remove_file(&self.path);
        drop(self.file);
    }
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
    /// Another command held the lab's lock for too long.
    #[error(
        "lab `{prefix}` is busy: another `dvr lab` command (pid {holder}) has held {path} for {waited_s} s; wait for it to finish, or end pid {holder} if it hangs"
    )]
    Busy {
        /// Lab prefix.
        prefix: String,
        /// Pid recorded by the holder (`?` when unknown).
        holder: String,
        /// The lock file.
        path: String,
        /// Seconds waited.
        waited_s: u64,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock lab state {path}: {source} (is /run writable? run as root)")]
    Lock {
        /// The lock file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// After applying every operation, the lab still differs from the plan.
    #[error("lab up did not converge: {} still differs after applying ({}); this is a bug in the converge, please report it", .0.len(), .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("; "))]
    NotConverged(Vec<Drift>),
    /// A command needs a lab that is up, and this one is not.
    #[error("lab `{prefix}` is not up (no {path}); run `dvr lab up --prefix {prefix}`")]
    NotUp {
        /// Lab prefix.
        prefix: String,
        /// The state file looked for.
        path: String,
    },
    /// The state file exists but cannot be used.
    #[error("{path}: {why}; run `dvr lab up` again to rewrite it")]
    BadState {
        /// The state file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// The topology the lab was built from no longer loads.
    #[error(transparent)]
    Topology(#[from] dvr_model::TopologyError),
    /// Processes kept running in the lab's namespaces after tear-down.
    #[error("tear-down left processes running in the lab's deleted namespaces: {}; end them with `kill -9 PID`", .0.join(", "))]
    Survivors(Vec<String>),
}

/// Processes whose network namespace is one of `inodes` (namespace inode → name),
/// as (pid, program, namespace). Zombies hold no namespace and are not listed.
fn processes_in(inodes: &BTreeMap<u64, String>) -> Vec<(i32, String, String)> {
    let mut out = Vec::new();
    if inodes.is_empty() {
        return out;
    }
    let Ok(procs) = std::fs::read_dir("/proc") else { return out };
    for p in procs.flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(meta) = std::fs::metadata(p.path().join("ns/net")) else { continue };
        if let Some(ns) = inodes.get(&meta.ino()) {
            let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default().trim().to_string();
            out.push((pid, comm, ns.clone()));
        }
    }
    out
}

/// Namespace inode → name, for named namespaces.
fn netns_inodes(names: &[String]) -> BTreeMap<u64, String> {
    names.iter().filter_map(|n| std::fs::metadata(format!("/run/netns/{n}")).ok().map(|m| (m.ino(), n.clone()))).collect()
}

/// What `lab up` records in the state directory (`lab.json`), so later lab
/// commands (`status`, `ping`) know which deployment and profile the lab is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabMeta {
    /// The topology file (absolute), or `None` for the built-in seed lab.
    pub topology: Option<PathBuf>,
    /// The Neutron behaviour profile.
    pub profile: dvr_plan::Profile,
    /// A live lab (`lab up --live`): the `dvr server` its layout comes from.
    pub server: Option<String>,
}

impl LabMeta {
    fn to_json(&self) -> String {
        let v = serde_json::json!({
            "topology": self.topology.as_ref().map(|p| p.display().to_string()),
            "profile": self.profile.name(),
            "server": self.server,
        });
        serde_json::to_string_pretty(&v).expect("a JSON value serialises")
    }

    fn from_json(path: &str, text: &str) -> Result<LabMeta, LabError> {
        let bad = |why: String| LabError::BadState { path: path.to_string(), why };
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let profile = v["profile"].as_str().unwrap_or("walkthrough").parse().map_err(bad)?;
        Ok(LabMeta { topology: v["topology"].as_str().map(PathBuf::from), profile, server: v["server"].as_str().map(str::to_string) })
    }

    /// The deployment: the recorded file, loaded again, or the seed lab.
    pub fn topology(&self) -> Result<Topology, LabError> {
        Ok(match &self.topology {
            Some(p) => dvr_model::load_file(p)?,
            None => dvr_model::seed(),
        })
    }
}

/// How far `lab up` got, for progress displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress<'a> {
    /// A host is being set up (namespace and OVS) or converged to its plan.
    Host {
        /// Host name.
        host: &'a str,
        /// What is being done.
        stage: HostStage,
        /// Hosts done so far in this stage.
        done: usize,
        /// Hosts in this stage.
        total: usize,
    },
    /// Anything else worth saying (waiting for the lock, a restarted daemon).
    Note(&'a str),
}

/// The per-host stages of `lab up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostStage {
    /// Namespace, Open vSwitch daemons, NICs on the fabric.
    Setup,
    /// Diff against the plan and apply.
    Converge,
}

impl std::fmt::Display for Progress<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Progress::Host { host, stage: HostStage::Setup, .. } => write!(f, "host {host}: namespace and Open vSwitch"),
            Progress::Host { host, stage: HostStage::Converge, .. } => write!(f, "host {host}: converging to its plan"),
            Progress::Note(n) => f.write_str(n),
        }
    }
}

fn short(name: &str, max: usize) -> String {
    name.chars().take(max).collect()
}

impl Lab {
    /// The lab of a prefix.
    pub fn new(prefix: &str) -> Lab {
        Lab { names: Names { prefix: prefix.to_string() }, state: PathBuf::from(format!("/run/dvr-lab/{prefix}")) }
    }

    /// What the last `lab up` recorded ([`LabMeta`]); [`LabError::NotUp`] when there is none.
    pub fn meta(&self) -> Result<LabMeta, LabError> {
        let path = self.state.join("lab.json");
        let shown = path.display().to_string();
        let text =
            std::fs::read_to_string(&path).map_err(|_| LabError::NotUp { prefix: self.names.prefix.clone(), path: shown.clone() })?;
        LabMeta::from_json(&shown, &text)
    }

    fn ovs_dir(&self, host: &str) -> PathBuf {
        self.state.join("hosts").join(host)
    }

    /// The running OVS instance of an emulated host.
    pub fn ovs(&self, host: &str) -> OvsInstance {
        OvsInstance::attach(&self.names.host_ns(host), &self.ovs_dir(host))
    }

    fn lock_path(&self) -> PathBuf {
        self.state.parent().map(|p| p.join(format!("{}.lock", self.names.prefix))).unwrap_or_else(|| PathBuf::from("dvr-lab.lock"))
    }

    /// Take the lab's exclusive lock, waiting (and saying so through
    /// `progress`) while another command holds it, at most [`LOCK_WAIT`].
    pub fn lock(&self, progress: &mut dyn FnMut(&str)) -> Result<LabLock, LabError> {
        let path = self.lock_path();
        let lock_err = |source: std::io::Error| LabError::Lock { path: path.display().to_string(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(lock_err)?;
        }
        let t0 = Instant::now();
        let mut told = false;
        loop {
            let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(lock_err)?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(mut locked) => {
                    // The holder before us may have removed the file (`down`): a lock
                    // on an unlinked file protects nothing, so lock the new one.
                    let mine = locked.metadata().map_err(lock_err)?.ino();
                    if std::fs::metadata(&path).ok().map(|m| m.ino()) != Some(mine) {
                        continue;
                    }
                    locked.set_len(0).map_err(lock_err)?;
                    write!(&mut *locked, "{}", std::process::id()).map_err(lock_err)?;
                    return Ok(LabLock { file: locked, path });
                }
                Err((_, Errno::EWOULDBLOCK)) => {
                    let holder = std::fs::read_to_string(&path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
                    let holder = holder.unwrap_or_else(|| "?".into());
                    if !told {
                        progress(&format!(
                            "another `dvr lab` command (pid {holder}) is working on lab `{}`; waiting for it to finish",
                            self.names.prefix
                        ));
                        told = true;
                    }
                    if t0.elapsed() > LOCK_WAIT {
                        return Err(LabError::Busy {
                            prefix: self.names.prefix.clone(),
                            holder,
                            path: path.display().to_string(),
                            waited_s: t0.elapsed().as_secs(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err((_, e)) => return Err(lock_err(e.into())),
            }
        }
    }

    fn wire_bridge(physnet: &str) -> String {
        short(&format!("sw-{physnet}"), 15)
    }

    /// Bring up (or converge) the whole lab.
    ///
    /// Converges in one run: after it returns `Ok`, [`Lab::status`] finds no
    /// drift (it checks that itself and fails otherwise). Dead OVS daemons are
    /// started again with their databases; nothing is deleted on an error path.
    pub fn up(&self, topo: &Topology, plan: &Plan, progress: &mut dyn FnMut(Progress)) -> Result<UpReport, LabError> {
        self.up_recording(topo, plan, None, progress)
    }

    /// [`Lab::up`], then write `meta` (what later commands need to know about
    /// the deployment) to `lab.json` while still holding the lock, so a `down`
    /// waiting for this `up` cannot interleave with the write.
    pub fn up_recording(
        &self,
        topo: &Topology,
        plan: &Plan,
        meta: Option<&LabMeta>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<UpReport, LabError> {
        let _lock = self.lock(&mut |m| progress(Progress::Note(m)))?;
        let t0 = Instant::now();
        let mut report = UpReport::default();
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
        let plug = |ns: &str, dev: &str, fabric_port: &str, physnet: &str| self.wire(ns, dev, fabric_port, physnet);
        // Hosts: namespace, OVS, NICs on the fabric.
        let dataplane = topo.hosts.iter().filter(|h| h.has_dataplane()).count();
        for (done, (hi, h)) in topo.hosts.iter().enumerate().filter(|(_, h)| h.has_dataplane()).enumerate() {
            progress(Progress::Host { host: &h.name, stage: HostStage::Setup, done, total: dataplane });
            let hns = self.names.host_ns(&h.name);
            ensure_ns(&hns)?;
            let ovs = self.ovs(&h.name);
            if !existing.contains(&hns) {
                // Daemons still running in a deleted host namespace keep it (and the
                // devices in it) alive but unreachable: stop them, so the namespace
                // and everything plugged into it go, and start them again in the new one.
                ovs.stop();
            }
            let existed = self.ovs_dir(&h.name).join("conf.db").exists();
            for d in ovs.ensure_running()? {
                if existed {
                    progress(Progress::Note(&format!("host {}: {d} was not running; started it again", h.name)));
                    report.restarted.push((h.name.clone(), d));
                }
            }
            for m in &h.bridge_mappings {
                let port = format!("h{hi}-{}", short(&m.nic, 10));
                plug(&hns, &m.nic, &port, &m.physnet)?;
            }
            // The VXLAN underlay: this host's tunnel endpoint where ovs-vswitchd routes tunnels.
            if let (Some(tip), Some(net)) = (h.tunnel_ip, topo.underlay) {
                crate::underlay::ensure_switch(&fabric)?;
                crate::underlay::ensure_host(&fabric, &hns, hi, &ovs, tip, net)?;
            }
        }
        // Instances: a namespace each, plugged into their host's br-int port.
        for x in &topo.instances {
            let routes = plan.dhcp_host_routes(&topo.network(x.network).name);
            self.plug_instance(topo, x, &routes)?;
        }
        // External hosts and the upstream gateway of each external subnet.
        self.outside_in(topo, &existing)?;
        // Converge every host to its plan.
        let planned = plan.hosts.iter().filter(|h| !h.bridges.is_empty()).count();
        for (done, hp) in plan.hosts.iter().filter(|h| !h.bridges.is_empty()).enumerate() {
            progress(Progress::Host { host: &hp.host, stage: HostStage::Converge, done, total: planned });
            let ovs = self.ovs(&hp.host);
            let ops = host::diff(&self.names, hp, &ovs)?;
            host::apply(&ops, &ovs)?;
            report.ops.push((hp.host.clone(), ops));
        }
        // One run must converge: check it the way `status` does.
        progress(Progress::Note("checking that the lab matches its plan"));
        let left = self.survey(topo, plan)?.drift;
        if !left.is_empty() {
            return Err(LabError::NotConverged(left));
        }
        report.namespaces = self.namespaces()?.len();
        if let Some(meta) = meta {
            let path = self.state.join("lab.json");
            std::fs::write(&path, meta.to_json()).map_err(|source| CmdError::Spawn { cmd: format!("write {}", path.display()), source })?;
        }
        report.millis = t0.elapsed().as_millis();
        Ok(report)
    }

    /// Plug device `dev` of namespace `ns` into physical network `physnet`
    /// (a veth whose other end, `fabric_port`, joins the physnet's bridge in
    /// the fabric namespace). Nothing when `dev` exists.
    fn wire(&self, ns: &str, dev: &str, fabric_port: &str, physnet: &str) -> Result<(), CmdError> {
        let fabric = self.names.fabric_ns();
        let have: Vec<String> = ip::link_names(ns)?;
        if have.iter().any(|l| l == dev) {
            return Ok(());
        }
        ip::ip(&["link", "add", dev, "netns", ns, "type", "veth", "peer", "name", fabric_port, "netns", &fabric])?;
        ip::tx_off(ns, dev)?;
        ip::tx_off(&fabric, fabric_port)?;
        ip::ip_ns(&fabric, &["link", "set", fabric_port, "master", &Self::wire_bridge(physnet), "up"])?;
        ip::ip_ns(ns, &["link", "set", dev, "up"])
    }

    /// The outside world of the lab (not Neutron's: what is beyond the
    /// external networks): one namespace per external host and per external
    /// subnet's upstream gateway (`gw-SUBNET`), wired to its flat physical
    /// network. Creates what `topo` has and the lab lacks, removes the ones
    /// it created earlier that `topo` no longer has (marked by the alias
    /// `dvr-outside:NAME` of their fabric-side device; nothing else is
    /// touched). A live lab runs this on every change (`dvr lab outside`).
    /// Returns (created, removed).
    pub fn outside(&self, topo: &Topology) -> Result<(Vec<String>, Vec<String>), LabError> {
        let existing: std::collections::BTreeSet<String> = ip::netns_list()?.into_iter().collect();
        let fabric = self.names.fabric_ns();
        if !existing.contains(&fabric) {
            return Err(LabError::Usage(format!("lab `{}` is not up (no {fabric}); run `dvr lab up` first", self.names.prefix)));
        }
        let created = self.outside_in(topo, &existing)?;
        let wanted: std::collections::BTreeSet<String> = outside_of(topo).into_iter().map(|o| o.0).collect();
        let mut removed = Vec::new();
        for (_, l) in crate::netlink::links(&fabric)? {
            let Some(name) = l.alias.as_deref().and_then(|a| a.strip_prefix(OUTSIDE_MARK)) else { continue };
            if !wanted.contains(name) {
                let ns = self.names.ep_ns(name);
                if ip::netns_list()?.contains(&ns) {
                    run("ip", &["netns", "del", &ns], &[], None)?;
                }
                removed.push(name.to_string());
            }
        }
        Ok((created, removed))
    }

    fn outside_in(&self, topo: &Topology, existing: &std::collections::BTreeSet<String>) -> Result<Vec<String>, LabError> {
        let mut created = Vec::new();
        for (i, (name, mac, addr, gw, net)) in outside_of(topo).iter().enumerate() {
            let Segment::Flat { physnet } = &topo.network(*net).segment else {
                return Err(LabError::Usage(format!(
                    "external network `{}` is not flat: the lab wires only flat external networks",
                    topo.network(*net).name
                )));
            };
            let ns = self.names.ep_ns(name);
            if !existing.contains(&ns) {
                ip::netns_add(&ns)?;
            }
            let have: Vec<String> = ip::link_names(&ns)?;
            if !have.iter().any(|l| l == "eth0") {
                let fabric = self.names.fabric_ns();
                let taken = ip::link_names(&fabric)?;
                // The index is the usual name; when endpoints came and went, a
                // live one may hold it: the next free index then.
                let fabric_port = (i..)
                    .map(|j| format!("x{j}-{}", short(name, 10)))
                    .find(|p| !taken.contains(p))
                    .expect("an unbounded range has a free name");
                self.wire(&ns, "eth0", &fabric_port, physnet)?;
                ip::ip_ns(&fabric, &["link", "set", "dev", &fabric_port, "alias", &format!("{OUTSIDE_MARK}{name}")])?;
                ip::ip_ns(&ns, &["link", "set", "eth0", "address", &mac.to_string()])?;
                ip::ip_ns(&ns, &["addr", "add", addr, "dev", "eth0"])?;
                if let Some(g) = gw {
                    ip::ip_ns(&ns, &["route", "replace", "default", "via", &g.to_string(), "dev", "eth0"])?;
                }
                created.push(name.clone());
            }
        }
        Ok(created)
    }

    /// Plug instance `x` as Nova's VIF plugging does: its own namespace with
    /// `eth0` (the port's MAC and address, default route via the subnet's
    /// gateway, the DHCP-pushed `host_routes`), the other end of the veth in
    /// its host's namespace under the port's device name, where the host's
    /// plan attaches it to br-int. Returns whether anything was created.
    pub fn plug_instance(
        &self,
        topo: &Topology,
        x: &dvr_model::Instance,
        host_routes: &[(ipnet::Ipv4Net, Ipv4Addr)],
    ) -> Result<bool, LabError> {
        let port = topo.port(x.port);
        let sub = topo.subnet(port.subnet);
        let ns = self.names.ep_ns(&x.name);
        let hns = self.names.host_ns(&topo.host(x.host).name);
        if !ip::netns_list()?.contains(&ns) {
            ip::netns_add(&ns)?;
        }
        let have: Vec<String> = ip::link_names(&ns)?;
        if have.iter().any(|l| l == "eth0") {
            return Ok(false);
        }
        let dev = port.device_name();
        ip::ip(&["link", "add", &dev, "netns", &hns, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
        // The marker: this host plugged this instance (see `plugged_vifs`).
        ip::ip_ns(&hns, &["link", "set", "dev", &dev, "alias", &format!("{VIF_MARK}{}", x.name)])?;
        ip::tx_off(&hns, &dev)?;
        ip::tx_off(&ns, "eth0")?;
        ip::ip_ns(&hns, &["link", "set", &dev, "up"])?;
        ip::ip_ns(&ns, &["link", "set", "eth0", "address", &port.mac.to_string()])?;
        ip::ip_ns(&ns, &["addr", "add", &format!("{}/{}", port.ip, sub.cidr.prefix_len()), "dev", "eth0"])?;
        ip::ip_ns(&ns, &["link", "set", "eth0", "up"])?;
        ip::ip_ns(&ns, &["route", "replace", "default", "via", &sub.gateway.to_string(), "dev", "eth0"])?;
        for (dst, via) in host_routes {
            ip::ip_ns(&ns, &["route", "replace", &dst.to_string(), "via", &via.to_string(), "dev", "eth0"])?;
        }
        Ok(true)
    }

    /// The instance VIFs plugged on `host`: its namespace's devices marked
    /// by [`Lab::plug_instance`] (alias `dvr-vif:INSTANCE`). An agent acts on
    /// these only, never on a namespace it did not plug (another host's
    /// instance, an external host, anything foreign); one netlink dump of the
    /// host namespace, nothing remembered by the agent.
    pub fn plugged_vifs(&self, host: &str) -> Result<Vec<PluggedVif>, LabError> {
        let links = crate::netlink::links(&self.names.host_ns(host))?;
        Ok(links
            .into_iter()
            .filter_map(|(device, l)| {
                let instance = l.alias?.strip_prefix(VIF_MARK)?.to_string();
                Some(PluggedVif { instance, device })
            })
            .collect())
    }

    /// Whether instance `name`'s namespace exists with its `eth0` (plugged,
    /// by whichever host): a namespace without `eth0` is an unfinished plug.
    pub fn instance_plugged_anywhere(&self, name: &str) -> Result<bool, LabError> {
        let ns = self.names.ep_ns(name);
        if !ip::netns_list()?.contains(&ns) {
            return Ok(false);
        }
        Ok(ip::link_names(&ns)?.iter().any(|l| l == "eth0"))
    }

    /// Unplug an instance: delete its namespace (and with it both veth ends).
    /// Returns whether it existed.
    pub fn unplug_instance(&self, name: &str) -> Result<bool, LabError> {
        let ns = self.names.ep_ns(name);
        if !ip::netns_list()?.contains(&ns) {
            return Ok(false);
        }
        crate::cmd::run("ip", &["netns", "del", &ns], &[], None)?;
        Ok(true)
    }

    /// The operations a converge would apply now (empty when the lab matches the plan).
    pub fn pending(&self, plan: &Plan) -> Result<Vec<(String, Vec<Op>)>, LabError> {
        let mut out = Vec::new();
        for hp in plan.hosts.iter().filter(|h| !h.bridges.is_empty()) {
            out.push((hp.host.clone(), host::diff(&self.names, hp, &self.ovs(&hp.host))?));
        }
        Ok(out)
    }

    /// The namespaces `up` creates outside the hosts' plans: the fabric, each
    /// host's own, one per instance, external host and upstream gateway,
    /// with the host each belongs to.
    fn base_namespaces(&self, topo: &Topology) -> Vec<(String, String)> {
        let mut out = vec![(self.names.fabric_ns(), "fabric".to_string())];
        for h in topo.hosts.iter().filter(|h| h.has_dataplane()) {
            out.push((self.names.host_ns(&h.name), h.name.clone()));
        }
        for x in &topo.instances {
            out.push((self.names.ep_ns(&x.name), topo.host(x.host).name.clone()));
        }
        for e in &topo.external_hosts {
            out.push((self.names.ep_ns(&e.name), "fabric".into()));
        }
        for s in topo.subnets.iter().filter(|s| s.external_gateway_mac.is_some()) {
            out.push((self.names.ep_ns(&format!("gw-{}", s.name)), "fabric".into()));
        }
        out
    }

    /// The daemons and everything that differs from the plan, from one look
    /// at the machine, without the lock (callers hold it).
    fn survey(&self, topo: &Topology, plan: &Plan) -> Result<LabStatus, LabError> {
        let mut out = Vec::new();
        let mut daemons = Vec::new();
        let present: std::collections::BTreeSet<String> = self.namespaces()?.into_iter().collect();
        for (ns, host) in self.base_namespaces(topo) {
            if !present.contains(&ns) {
                out.push(Drift { host, kind: "namespace", item: format!("{ns} is missing (`lab up` creates it)") });
            }
        }
        for hp in plan.hosts.iter().filter(|h| !h.bridges.is_empty()) {
            let ovs = self.ovs(&hp.host);
            let mut db_down = false;
            let alive: Vec<(Daemon, bool)> = Daemon::ALL.iter().map(|d| (*d, ovs.daemon_alive(*d))).collect();
            daemons.push((hp.host.clone(), alive.clone()));
            for (d, up) in alive {
                if !up {
                    db_down |= d == Daemon::OvsdbServer;
                    let pid = ovs.pid(d.program()).map(|p| format!("pid {p} gone")).unwrap_or_else(|| "no pid file".into());
                    out.push(Drift {
                        host: hp.host.clone(),
                        kind: "daemon",
                        item: format!("{d} is not running ({pid}; `lab up` starts it again)"),
                    });
                }
            }
            if db_down {
                out.push(Drift {
                    host: hp.host.clone(),
                    kind: "unreadable",
                    item: "bridges, ports and flows: no ovsdb-server to ask".into(),
                });
                continue;
            }
            match host::diff(&self.names, hp, &ovs) {
                Ok(ops) => out.extend(ops.iter().map(|o| Drift { host: hp.host.clone(), kind: o.kind(), item: o.to_string() })),
                Err(e) => out.push(Drift { host: hp.host.clone(), kind: "unreadable", item: e.to_string() }),
            }
            // The VXLAN underlay (host infrastructure, outside the plan).
            let tunnel = topo.host_ix(&hp.host).and_then(|h| topo.host(h).tunnel_ip).zip(topo.underlay);
            if let Some((tip, net)) = tunnel {
                match crate::underlay::check_host(&self.names.host_ns(&hp.host), &ovs, tip, net) {
                    Ok(missing) => out.extend(missing.into_iter().map(|m| Drift {
                        host: hp.host.clone(),
                        kind: "underlay",
                        item: format!("{m} (`lab up` puts it back)"),
                    })),
                    Err(e) => out.push(Drift { host: hp.host.clone(), kind: "unreadable", item: format!("underlay: {e}") }),
                }
            }
        }
        Ok(LabStatus { namespaces: present.len(), daemons, drift: out })
    }

    /// The lab's health: each host's daemons and every difference from the
    /// plan, named by host, kind and item. Waits for a running `up`/`down`.
    pub fn status(&self, topo: &Topology, plan: &Plan, progress: &mut dyn FnMut(&str)) -> Result<LabStatus, LabError> {
        let _lock = self.lock(progress)?;
        self.survey(topo, plan)
    }

    /// Tear everything down: OVS daemons, every process still running in the
    /// lab's namespaces, the namespaces, state. Returns what was removed.
    pub fn down(&self) -> Result<Vec<String>, LabError> {
        self.down_with(&mut |_| {})
    }

    /// [`Lab::down`], telling `progress` when it waits for another command.
    pub fn down_with(&self, progress: &mut dyn FnMut(&str)) -> Result<Vec<String>, LabError> {
        let lock = self.lock(progress)?;
        let mut removed = Vec::new();
        // A live lab's agents and `dvr server` (`lab up --live`) run outside the
        // lab's namespaces: the agents first, so none rebuilds what goes now.
        let mut pidfiles: Vec<(String, PathBuf)> = std::fs::read_dir(&self.state)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                let what = name.strip_suffix(".pid")?.to_string();
                (what.starts_with("agent-") || what == "outside" || what == "mgmt").then(|| (format!("dvr {what}"), e.path()))
            })
            .collect();
        pidfiles.push(("dvr server".into(), self.state.join("server.pid")));
        for (what, f) in pidfiles {
            // Only a live `dvr` process: a stale pid file may name a reused pid.
            if let Some(pid) = std::fs::read_to_string(&f).ok().and_then(|s| s.trim().parse::<i32>().ok())
                && std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "dvr")
                && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).is_ok()
            {
                removed.push(format!("{what} (pid {pid})"));
            }
        }
        if let Ok(hosts) = std::fs::read_dir(self.state.join("hosts")) {
            for h in hosts.flatten() {
                let name = h.file_name().to_string_lossy().to_string();
                self.ovs(&name).stop();
                removed.push(format!("ovs of {name}"));
            }
        }
        let namespaces = self.namespaces()?;
        // A process inside a namespace keeps it alive after `ip netns del`,
        // unnamed and unfindable: end them all first (pings, captures, shells).
        let inodes = netns_inodes(&namespaces);
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let procs = processes_in(&inodes);
            if procs.is_empty() || Instant::now() > deadline {
                break;
            }
            for (pid, comm, ns) in procs {
                if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).is_ok() {
                    let what = format!("process {pid} ({comm}) in {ns}");
                    if !removed.contains(&what) {
                        removed.push(what);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for ns in namespaces {
            run("ip", &["netns", "del", &ns], &[], None)?;
            removed.push(ns);
        }
        if self.state.exists() {
            std::fs::remove_dir_all(&self.state)
                .map_err(|source| CmdError::Spawn { cmd: format!("rm -rf {}", self.state.display()), source })?;
            removed.push(self.state.display().to_string());
        }
        let survivors: Vec<String> =
            processes_in(&inodes).into_iter().map(|(pid, comm, ns)| format!("process {pid} ({comm}) in deleted {ns}")).collect();
        if !survivors.is_empty() {
            return Err(LabError::Survivors(survivors));
        }
        lock.release_and_remove();
        Ok(removed)
    }

    /// The lab's namespaces currently present.
    pub fn namespaces(&self) -> Result<Vec<String>, LabError> {
        let p = format!("{}-", self.names.prefix);
        Ok(ip::netns_list()?.into_iter().filter(|n| n.starts_with(&p)).collect())
    }

    /// Anything of this lab still on the machine: namespaces, processes, files.
    pub fn leftovers(&self) -> Vec<String> {
        let namespaces = self.namespaces().unwrap_or_default();
        let mut out = namespaces.clone();
        for (pid, comm, ns) in processes_in(&netns_inodes(&namespaces)) {
            out.push(format!("process {pid} ({comm}) in {ns}"));
        }
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
        if self.lock_path().exists() {
            out.push(self.lock_path().display().to_string());
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
