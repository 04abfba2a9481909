//! `dvr`: build, inspect and (later) trace and run Neutron-style distributed
//! virtual routers. This binary only parses arguments, loads the topology
//! and prints; all domain logic lives in the library crates.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use dvr_model::Topology;
use dvr_plan::{Profile, render};
use std::path::PathBuf;
use std::process::ExitCode;

mod agent;
mod bench;
mod draw_cmd;
mod ops;
mod progress;
mod remote;
mod server_cmd;
mod trace_cmd;

/// mimalloc: planning a large cloud allocates millions of small objects;
/// glibc's allocator spent more time in page faults and consolidation than
/// the planner spent planning.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ABOUT: &str = "Distributed virtual routing (OpenStack Neutron DVR on Open vSwitch), as data.

Every compute host runs its own copy of each tenant router; OpenFlow tables keep gateway
traffic on the local host; routed frames leave a host with that host's unique DVR MAC;
SNAT is centralised on the network node and floating IPs are served on the compute host.
`dvr` computes what Neutron would build on every host from one topology file.";

const AFTER: &str = "Examples:
  dvr plan                                 plan of the built-in seed lab, every host
  dvr plan --host compute1 --explain       one host, each flow with the reason it exists
  dvr plan --host compute1 --bridge br-vlan --format flows | ovs-ofctl -O OpenFlow13 add-flows br-vlan -
  dvr plan -t my-cloud.yaml --format json  the plan as data for scripts
  dvr validate -t my-cloud.yaml            check a topology file and show what was allocated
  dvr topology --format yaml               print the built-in seed lab to start your own file

Topology files: version 1, see docs/topology.md (`dvr topology --example` prints a commented
starting file). Without -t the built-in seed lab is used
(the lab of the DVR walkthrough: 1 network node, 2 compute nodes, 2 VLAN networks, 1 router).";

#[derive(Parser)]
#[command(name = "dvr", version, about = ABOUT, after_help = AFTER)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
pub(crate) struct TopologyArg {
    /// Topology file (YAML, version 1). Default: the built-in seed lab.
    #[arg(short = 't', long = "topology", value_name = "FILE", global = true)]
    pub(crate) topology: Option<PathBuf>,
    /// Apply a change to the deployment first, e.g. `remove-instance:vm1`,
    /// `remove-router-interface:router1:test2-v4`, `disassociate-floating-ip:10.100.0.7`,
    /// `remove-host:compute2`, `add-host:NAME[:LIKE]`, `add-instance:NAME:HOST:NETWORK` (repeatable, in order).
    /// `dvr plan` runs each through the incremental planner.
    #[arg(long = "change", value_name = "KIND:ARGS")]
    changes: Vec<dvr_model::change::Change>,
    #[command(flatten)]
    server: remote::ServerArg,
}

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
enum PlanFormat {
    /// Native text: ovs-ofctl flows, ip, iptables-save.
    Text,
    /// The plan as JSON.
    Json,
    /// Flow lines only (needs --host and --bridge), ready for `ovs-ofctl add-flows`.
    Flows,
}

/// The tenant networks `dvr gen` writes (the CLI's face of
/// `dvr_model::gen::TenantType`).
#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
enum GenTenantType {
    /// VLAN networks on physnet1.
    Vlan,
    /// VXLAN networks.
    Vxlan,
}

/// Text for people or JSON for scripts (bench, lab status, validate).
#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
enum BenchFormat {
    /// Readable text.
    Text,
    /// The same as JSON.
    Json,
}

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
enum TopoFormat {
    /// Summary of hosts, networks, ports and what was allocated.
    Text,
    /// The validated, fully allocated topology as JSON.
    Json,
    /// The topology file itself (the seed lab's YAML when no -t is given).
    Yaml,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve a Neutron v2.0-compatible API (networks, subnets, ports, routers,
    /// floating IPs, agents) plus the dvr extension, over SQLite or PostgreSQL.
    Server(server_cmd::ServerArgs),
    /// Run one host's agent: register with the server, follow its change log,
    /// and keep this host's bridges, flows and namespaces converged.
    Agent(agent::AgentArgs),
    /// Show each host's desired state: bridges, ports, OpenFlow flows, namespaces.
    ///
    /// Flows are printed in `ovs-ofctl dump-flows` syntax and load unchanged with
    /// `ovs-ofctl -O OpenFlow13 add-flows`; namespaces as `ip -br addr`, `ip route`,
    /// `ip rule`, `ip neigh` and an `iptables-save` nat table.
    Plan {
        #[command(flatten)]
        topo: TopologyArg,
        /// Only this host.
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// Only this bridge (with --host).
        #[arg(long, value_name = "BRIDGE")]
        bridge: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: PlanFormat,
        /// After each flow, say which builder emitted it and why it exists.
        #[arg(long)]
        explain: bool,
        /// Neutron behaviour: `walkthrough` (the 2018 walkthrough, default) or
        /// `current` (Neutron master: tables 30/58/59, gateway ARP drop in table 22).
        #[arg(long, default_value = "walkthrough", value_name = "PROFILE")]
        profile: Profile,
    },
    /// Follow a packet and its reply hop by hop through the twin: every OpenFlow
    /// table and flow, NORMAL decision, wire, ARP exchange, ip rule, route and NAT rewrite.
    ///
    /// The twin executes the plan as Open vSwitch and the Linux kernel would.
    /// Exit status 0 whenever the trace ran, whatever the verdict, unless --expect says otherwise.
    Trace(trace_cmd::TraceArgs),
    /// Dump this host, read-only, into a directory for `dvr import`: OVS bridges, ports and
    /// interfaces (JSON), flows per bridge, and per Neutron namespace addresses, routes of all
    /// tables, rules, neighbours (`ip -j`), `iptables-save` and the relevant sysctls.
    /// `manifest.json` lists the exact command behind every file.
    Collect {
        /// Output directory (created).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Host name to record (default: this machine's hostname).
        #[arg(long, value_name = "NAME")]
        host: Option<String>,
    },
    /// Check the deployment's invariants, each with a verdict; every violation names the
    /// missing or offending item, its provenance and a counterexample trace.
    ///
    /// Invariants: dvr-macs-unique, no-gateway-mac-on-wire, gateway-arp-contained,
    /// reachability (routed pairs reach, unrouted pairs are isolated; instances reach the
    /// outside through SNAT or their floating IP; floating IPs answer from outside),
    /// fip-proxy-arp-single-host, one-fg-per-host-and-external-network, pools-not-exhausted,
    /// anti-spoofing-every-vm-port. Exit status 0: all hold; 1: a violation.
    Verify {
        #[command(flatten)]
        topo: TopologyArg,
        /// Verify hosts imported from these dump directories instead of a topology's plan.
        #[arg(long, value_name = "DIR", num_args = 1..)]
        dumps: Vec<PathBuf>,
        /// With --dumps: outside machines to check SNAT and floating IPs from (an address on an
        /// external subnet; repeatable). Default: the highest free address of the external subnet.
        #[arg(long, value_name = "IPV4")]
        outside: Vec<std::net::Ipv4Addr>,
        /// Neutron behaviour profile of the plan (see `dvr plan --help`).
        #[arg(long, default_value = "walkthrough", value_name = "PROFILE")]
        profile: Profile,
        /// Print the reachability matrix.
        #[arg(long)]
        matrix: bool,
        /// Trace at most this many instance pairs, evenly sampled (0: all).
        #[arg(long, default_value_t = 2000)]
        max_pairs: usize,
        /// Protocol of the matrix's packets; under security groups, e.g.
        /// `--proto tcp --dport 22` asks who may ssh to whom.
        #[arg(long, value_enum, default_value = "icmp")]
        proto: trace_cmd::Proto,
        /// Destination port (tcp/udp).
        #[arg(long, default_value_t = 80)]
        dport: u16,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: BenchFormat,
    },
    /// Build the twin from dumps alone (no topology file) and show what was found:
    /// hosts, bridges, flows, namespaces, NAT, instances, and what had to be assumed.
    Import {
        /// Dump directories: one host each, or one sub-directory per host.
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<PathBuf>,
        /// Output format (json: the imported plans and instances).
        #[arg(long, value_enum, default_value = "text")]
        format: BenchFormat,
    },
    /// Trace every path of the topology file's `paths:` section (the seed lab lists
    /// the nine paths of the walkthrough) and print a summary table.
    Demo(trace_cmd::DemoArgs),
    /// Draw the deployment as SVG (or Graphviz DOT): hosts with their bridges, namespaces
    /// and instances, physical networks across; `--trace A B` overlays a traced path.
    Draw(draw_cmd::DrawArgs),
    /// Emulate the whole deployment on this machine with real Open vSwitch and
    /// Linux namespaces, and ping through it (root; see README for the install step).
    Lab {
        #[command(subcommand)]
        cmd: LabCmd,
    },
    /// Measure planning and tracing: full plan time and peak memory for generated
    /// deployments of 10/100/1,000 hosts, incremental replans, traces per second,
    /// all-pairs reachability, and our OpenFlow engine against `ofproto/trace`.
    Bench {
        /// Compute-host counts to plan (20 VMs per host).
        #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
        sizes: Vec<usize>,
        /// Smaller and shorter: sizes 10,100, 0.3 s per trace figure, all-pairs of 200 VMs.
        #[arg(long)]
        quick: bool,
        /// Skip the comparison with Open vSwitch (it needs root and openvswitch-switch).
        #[arg(long)]
        no_ovs: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: BenchFormat,
        /// Internal: plan one size and print its figures as JSON (run in a child process).
        #[arg(long, hide = true)]
        child_plan: Option<usize>,
        /// Internal: run `dvr ARGS…` as a child, print its time and peak memory as JSON.
        #[arg(long, hide = true, num_args = 1.., allow_hyphen_values = true)]
        child_measure: Option<Vec<String>>,
        /// Only the changes made in place, on `dvr gen --hosts N --seed 7` (N: the largest size).
        #[arg(long)]
        changes_only: bool,
    },
    /// Generate a deterministic topology file for scale tests. By default the
    /// proportions of a large cloud (20 VMs per host, one network per two hosts,
    /// one router per four hosts, one floating IP per 20 VMs); each flag overrides one.
    Gen {
        /// Compute hosts.
        #[arg(long, default_value_t = 10)]
        hosts: usize,
        /// Instances per compute host (default 20).
        #[arg(long, value_name = "N")]
        vms_per_host: Option<usize>,
        /// VLAN tenant networks, one /24 each (default hosts / 2, at least 2).
        #[arg(long, value_name = "N")]
        networks: Option<usize>,
        /// Distributed routers; networks are split between them (default hosts / 4, at least 1).
        #[arg(long, value_name = "N")]
        routers: Option<usize>,
        /// Floating IPs, each on a distinct instance (default one per 20 instances).
        #[arg(long, value_name = "N")]
        fips: Option<usize>,
        /// Machines on the external network (default 2).
        #[arg(long, value_name = "N")]
        external_hosts: Option<usize>,
        /// Seed of the placement generator.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Tenant networks as VLANs on physnet1 (the walkthrough's), or as
        /// VXLAN tunnels between the hosts (br-tun, l2population; tunnel
        /// endpoints allocated from 172.16.0.0/16).
        #[arg(long, value_enum, default_value = "vlan")]
        tenant_type: GenTenantType,
    },
    /// Check a topology file; print what was allocated, or every problem found.
    Validate {
        #[command(flatten)]
        topo: TopologyArg,
        /// Output format: text, or JSON (`{"valid": …, "problems": […]}`) for scripts.
        #[arg(long, value_enum, default_value = "text")]
        format: BenchFormat,
    },
    /// Push a topology file to a running `dvr server` (Neutron API): creates only
    /// what is missing, so applying the same file twice reports 0 changes.
    Apply {
        /// Topology file (YAML, version 1).
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        server: remote::ServerArg,
        /// Output format of the summary.
        #[arg(long, value_enum, default_value = "text")]
        format: BenchFormat,
    },
    /// Measure the API server (printed, not asserted): time to apply a generated
    /// deployment, port creations/s with 1 and 16 clients, port-list latency with
    /// 20,000 ports stored. Each --db starts its own `dvr server` (fresh store
    /// expected); or measure a running one with --server.
    BenchServer {
        /// Store of a server to start, e.g. sqlite:/tmp/b.db or postgres://…; repeatable.
        #[arg(long, value_name = "URL")]
        db: Vec<String>,
        #[command(flatten)]
        server: remote::ServerArg,
        /// Compute hosts of the generated deployment to apply (0 = skip).
        #[arg(long, default_value_t = 1000)]
        hosts: usize,
        /// Ports stored for the list-latency figure (0 = skip).
        #[arg(long, default_value_t = 20000)]
        list_ports: usize,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: BenchFormat,
    },
    /// Write the deployment held by a running `dvr server` as a topology file (YAML v1).
    Export {
        #[command(flatten)]
        server: remote::ServerArg,
        /// The `name:` written into the file (shown in plans); default: the name the server keeps.
        #[arg(long)]
        name: Option<String>,
    },
    /// Print the validated topology with all allocations (IDs, MACs, IPs, VLANs).
    Topology {
        #[command(flatten)]
        topo: TopologyArg,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: TopoFormat,
        /// Print a commented starting file (every kind of object, demo paths) and exit.
        #[arg(long)]
        example: bool,
    },
}

#[derive(clap::Args, Clone)]
struct PrefixArg {
    /// Name prefix of the lab's namespaces and state (/run/dvr-lab/PREFIX); several labs can coexist.
    #[arg(long, default_value = "dvr", global = true)]
    prefix: String,
}

#[derive(Subcommand)]
enum LabCmd {
    /// Build (or converge) the lab: one namespace + OVS per host, the Neutron
    /// namespaces, instances, external hosts and a Linux bridge per physical network.
    Up {
        #[command(flatten)]
        topo: TopologyArg,
        #[command(flatten)]
        prefix: PrefixArg,
        /// Neutron behaviour profile (see `dvr plan --help`).
        #[arg(long, default_value = "walkthrough", value_name = "PROFILE")]
        profile: Profile,
        /// Print every operation applied.
        #[arg(long)]
        verbose: bool,
        /// Measure: bring-up time, then ping RTT over each path of the topology file.
        #[arg(long)]
        timings: bool,
        /// A live lab: start `dvr server` (SQLite in the lab's state directory) unless
        /// one answers on --listen, declare the lab's machines on it (the hosts of
        /// --machines), build those machines and the physical networks, start one
        /// `dvr agent` per host and the outside world's follower (`dvr lab outside`).
        /// It starts empty: build and change it with `dvr apply` or `openstack`.
        /// With -t FILE, the whole file is applied first (a shortcut).
        #[arg(long)]
        live: bool,
        /// The live lab's machines: the `hosts` of this topology file (nothing
        /// else of it). Default: the seed lab's (network, compute1, compute2, controller).
        #[arg(long, value_name = "FILE", requires = "live")]
        machines: Option<PathBuf>,
        /// Where the live lab's server listens.
        #[arg(long, default_value = "127.0.0.1:9696", value_name = "ADDR")]
        listen: String,
    },
    /// Dump every emulated host of the lab (read-only) into OUT/<host>/, as `dvr collect` does
    /// on a real host.
    Collect {
        #[command(flatten)]
        prefix: PrefixArg,
        /// Output directory (one sub-directory per host).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Remove everything the lab created: OVS daemons, namespaces, links, state files.
    Down {
        #[command(flatten)]
        prefix: PrefixArg,
    },
    /// Show the lab's daemons and every difference from the plan (host, kind, item);
    /// exits non-zero when a daemon is dead or anything drifted.
    Status {
        #[command(flatten)]
        prefix: PrefixArg,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: BenchFormat,
        /// A live lab: compare with the server's state instead of the file the lab
        /// was built from, and show each host's agent (alive, revision, last convergence).
        #[command(flatten)]
        server: remote::ServerArg,
    },
    /// The lab's outside world follows a server: a namespace per external host
    /// (the server's `external-hosts`) and per external subnet's upstream gateway
    /// appears and goes with them. Neither Neutron nor its agents create these
    /// (they are the world beyond the external network), so a live lab runs this
    /// beside its agents (`lab up --live` starts it with --follow).
    Outside {
        #[command(flatten)]
        prefix: PrefixArg,
        #[command(flatten)]
        server: remote::ServerArg,
        /// Keep following the server's change log (until killed).
        #[arg(long)]
        follow: bool,
    },
    /// The live lab's management network: 127.0.0.1:PORT inside each host's
    /// namespace leads to the machine's 127.0.0.1:PORT (the server), so each
    /// agent runs inside its host and the server binds loopback only
    /// (`lab up --live` starts it; runs until killed).
    Mgmt {
        #[command(flatten)]
        prefix: PrefixArg,
        /// The server's address in the machine's namespace (the port is also
        /// the one each host namespace listens on).
        #[arg(long, value_name = "ADDR:PORT")]
        server_addr: std::net::SocketAddr,
        /// A host to connect (repeatable).
        #[arg(long = "host", value_name = "NAME", required = true)]
        hosts: Vec<String>,
    },
    /// Run a command inside an endpoint's or host's namespace, e.g. `dvr lab exec vm1 -- ip route`.
    Exec {
        #[command(flatten)]
        prefix: PrefixArg,
        /// Instance, external host or host name.
        name: String,
        /// The command.
        #[arg(trailing_var_arg = true, required = true)]
        cmd: Vec<String>,
    },
    /// A real ping from an instance or external host to an address or endpoint name.
    Ping {
        #[command(flatten)]
        prefix: PrefixArg,
        /// Sender (instance or external host).
        from: String,
        /// Destination address or endpoint name.
        to: String,
        /// Echo requests to send.
        #[arg(long, default_value_t = 3)]
        count: u32,
    },
}

/// The hosts section of a topology file (or of the seed lab) as a file of
/// its own: a live lab's machines, without anything of a tenant.
fn machines_only(file: Option<&std::path::Path>) -> Result<String> {
    let (label, yaml) = match file {
        Some(p) => {
            (p.display().to_string(), std::fs::read_to_string(p).with_context(|| format!("--machines {}: cannot read it", p.display()))?)
        }
        None => ("<built-in seed lab>".to_string(), dvr_model::SEED_YAML.to_string()),
    };
    let spec = dvr_model::parse_spec(&label, &yaml)?;
    anyhow::ensure!(!spec.hosts.is_empty(), "--machines {label}: the file declares no hosts; a live lab needs its machines under `hosts:`");
    let only = dvr_model::spec::TopologySpec {
        version: spec.version,
        name: None,
        hosts: spec.hosts,
        networks: vec![],
        routers: vec![],
        instances: vec![],
        floating_ips: vec![],
        external_hosts: vec![],
        paths: vec![],
        ports: vec![],
        security_groups: vec![],
        underlay: spec.underlay,
    };
    Ok(serde_yaml_ng::to_string(&only)?)
}

/// `dvr lab up --live`: server, the machines (or with -t the whole layout)
/// through the API, the lab from the server, agents, the outside follower.
fn live_lab_up(
    lab: &dvr_realize::Lab,
    topo: &TopologyArg,
    machines: Option<&std::path::Path>,
    profile: Profile,
    listen: &str,
) -> Result<()> {
    use std::process::{Command, Stdio};
    let url = format!("http://{listen}");
    let api = remote::client::Api::new(&url, None);
    std::fs::create_dir_all(&lab.state).with_context(|| format!("cannot create {}", lab.state.display()))?;
    let exe = std::env::current_exe()?;
    let spawn_logged = |args: &[String], log: &str| -> Result<u32> {
        let f = std::fs::File::create(lab.state.join(log))?;
        let child = Command::new("setsid").args(args).stdin(Stdio::null()).stdout(f.try_clone()?).stderr(f).spawn()?;
        Ok(child.id())
    };
    if api.get("/").is_err() {
        let db = format!("sqlite:{}", lab.state.join("live.db").display());
        let pid =
            spawn_logged(&[exe.display().to_string(), "server".into(), "--listen".into(), listen.into(), "--db".into(), db], "server.log")?;
        std::fs::write(lab.state.join("server.pid"), pid.to_string())?;
        let t0 = std::time::Instant::now();
        while api.get("/").is_err() {
            if t0.elapsed() > std::time::Duration::from_secs(10) {
                bail!("the live lab's dvr server did not answer on {url} within 10 s; see {}", lab.state.join("server.log").display());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        eprintln!("lab up: dvr server on {url} (pid {pid}, store {})", lab.state.join("live.db").display());
    }
    let file = match &topo.topology {
        Some(p) => p.clone(),
        None => {
            let p = lab.state.join("machines.yaml");
            std::fs::write(&p, machines_only(machines)?)?;
            p
        }
    };
    remote::run_apply(&file, &api, false)?;
    let t = remote::load(&api)?;
    let plan = dvr_plan::plan(&t, profile)?;
    let meta = dvr_realize::LabMeta { topology: None, profile, server: Some(url.clone()) };
    let report = lab.up_recording(&t, &plan, Some(&meta), &mut |m| eprintln!("lab up: {m}"))?;
    // The management network, so each agent runs inside its host namespace
    // (the server binds the machine's loopback only).
    let server_addr = listen.parse::<std::net::SocketAddr>().with_context(|| format!("--listen {listen}: expected ADDR:PORT"))?;
    let port = server_addr.port();
    let dataplane: Vec<&dvr_model::Host> = t.hosts.iter().filter(|h| h.has_dataplane()).collect();
    let pidfile = lab.state.join("mgmt.pid");
    let running = std::fs::read_to_string(&pidfile).ok().is_some_and(|p| std::path::Path::new(&format!("/proc/{}", p.trim())).exists());
    if !running {
        let mut args: Vec<String> = vec![
            exe.display().to_string(),
            "lab".into(),
            "mgmt".into(),
            "--prefix".into(),
            lab.names.prefix.clone(),
            "--server-addr".into(),
            server_addr.to_string(),
        ];
        for h in &dataplane {
            args.extend(["--host".into(), h.name.clone()]);
        }
        let pid = spawn_logged(&args, "mgmt.log")?;
        std::fs::write(&pidfile, pid.to_string())?;
        eprintln!("lab up: management network (pid {pid}): 127.0.0.1:{port} in every host namespace leads to the server");
    }
    // Written after `up` (which rewrites the state's lab.json only).
    for h in dataplane {
        let pidfile = lab.state.join(format!("agent-{}.pid", h.name));
        let running = std::fs::read_to_string(&pidfile).ok().is_some_and(|p| std::path::Path::new(&format!("/proc/{}", p.trim())).exists());
        if running {
            continue;
        }
        // Inside its host's namespace, as an agent runs on its machine; the
        // server through the management network (`lab mgmt`).
        let args: Vec<String> = vec![
            exe.display().to_string(),
            "agent".into(),
            "--netns".into(),
            lab.names.host_ns(&h.name),
            "--host".into(),
            h.name.clone(),
            "--server".into(),
            format!("http://127.0.0.1:{port}"),
            "--prefix".into(),
            lab.names.prefix.clone(),
            "--profile".into(),
            profile.name().into(),
            // The lab shows its work: each change followed in place is
            // checked against a rebuild (after converging).
            "--verify-in-place".into(),
        ];
        let pid = spawn_logged(&args, &format!("agent-{}.log", h.name))?;
        std::fs::write(&pidfile, pid.to_string())?;
        eprintln!("lab up: agent of {} (pid {pid}, log {})", h.name, lab.state.join(format!("agent-{}.log", h.name)).display());
    }
    let pidfile = lab.state.join("outside.pid");
    let running = std::fs::read_to_string(&pidfile).ok().is_some_and(|p| std::path::Path::new(&format!("/proc/{}", p.trim())).exists());
    if !running {
        let args: Vec<String> = vec![
            exe.display().to_string(),
            "lab".into(),
            "outside".into(),
            "--follow".into(),
            "--prefix".into(),
            lab.names.prefix.clone(),
            "--server".into(),
            url.clone(),
        ];
        let pid = spawn_logged(&args, "outside.log")?;
        std::fs::write(&pidfile, pid.to_string())?;
        eprintln!("lab up: outside world follower (pid {pid}, log {})", lab.state.join("outside.log").display());
    }
    println!(
        "live lab `{}` up: server {url}, {} namespaces, {} agents, {} ms",
        lab.names.prefix,
        report.namespaces,
        t.hosts.iter().filter(|h| h.has_dataplane()).count(),
        report.millis
    );
    Ok(())
}

/// `dvr lab outside`: bring the outside world to the server's state, once
/// or after every change (long-poll of the change log, retried while the
/// server is away).
fn lab_outside(lab: &dvr_realize::Lab, api: &remote::client::Api, follow: bool) -> Result<()> {
    let mut since = -1i64;
    loop {
        let rev = api.get("/v2.0/dvr/deployment").ok().and_then(|v| v["deployment"]["revision"].as_i64());
        let done = match rev {
            Some(r) if r == since => Ok(()),
            Some(r) => remote::load(api).and_then(|t| Ok(lab.outside(&t)?)).map(|(created, removed)| {
                for n in &created {
                    eprintln!("lab outside: revision {r}: created {n}");
                }
                for n in &removed {
                    eprintln!("lab outside: revision {r}: removed {n}");
                }
                since = r;
            }),
            None => Err(anyhow::anyhow!("{}: no answer from the server (GET /v2.0/dvr/deployment)", api.base())),
        };
        match done {
            Err(e) if !follow => return Err(e),
            Err(e) => {
                eprintln!("lab outside: {e:#}; retrying in 1 s");
                std::thread::sleep(std::time::Duration::from_secs(1));
                continue;
            }
            Ok(()) if !follow => return Ok(()),
            Ok(()) => {}
        }
        match api.get(&format!("/v2.0/dvr/changes?since={}&timeout=30&limit=1", since.max(0))) {
            Ok(_) => {}
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(300)),
        }
    }
}

/// The deployment and profile a running lab was built from (a live lab's
/// comes from its server).
fn lab_meta(lab: &dvr_realize::Lab) -> Result<(Topology, Profile)> {
    let meta = lab.meta()?;
    let topo = match &meta.server {
        Some(url) => remote::load(&remote::client::Api::new(url, None))?,
        None => meta.topology()?,
    };
    Ok((topo, meta.profile))
}

fn run_lab(cmd: LabCmd) -> Result<()> {
    match cmd {
        LabCmd::Up { topo, prefix, profile, verbose, timings, live, machines, listen } => {
            let lab = dvr_realize::Lab::new(&prefix.prefix);
            if live {
                return live_lab_up(&lab, &topo, machines.as_deref(), profile, &listen);
            }
            let t = load(&topo)?;
            let plan = dvr_plan::plan(&t, profile)?;
            let meta = dvr_realize::LabMeta {
                topology: topo.topology.as_ref().map(|p| std::fs::canonicalize(p).unwrap_or(p.clone())),
                profile,
                server: None,
            };
            let mut shown = progress::LabUp::new();
            let report = lab.up_recording(&t, &plan, Some(&meta), &mut |p| shown.on(p));
            shown.finish();
            let report = report?;
            let total: usize = report.ops.iter().map(|(_, o)| o.len()).sum();
            for (h, ops) in &report.ops {
                println!("{h}: {} operations", ops.len());
                if verbose {
                    for o in ops {
                        println!("  {o}");
                    }
                }
            }
            for (h, d) in &report.restarted {
                println!("{h}: restarted {d}");
            }
            println!("lab `{}` up: {} namespaces, {total} operations applied, {} ms", prefix.prefix, report.namespaces, report.millis);
            if timings {
                for p in trace_cmd::paths_of(&topo, &t)? {
                    let Some(to) = t.resolve_address(&p.to) else { continue };
                    let r = lab.ping(&p.from, to, 5)?;
                    println!(
                        "ping {:<24} {}/{} replies, rtt avg {}",
                        format!("{} -> {}", p.from, p.to),
                        r.received,
                        r.sent,
                        r.rtt_avg_ms.map(|v| format!("{v:.3} ms")).unwrap_or("-".into())
                    );
                }
            }
        }
        LabCmd::Collect { prefix, out } => {
            let lab = dvr_realize::Lab::new(&prefix.prefix);
            if lab.namespaces()?.is_empty() {
                bail!("lab `{}` is not up; run `dvr lab up` first (or pass its --prefix)", prefix.prefix);
            }
            for m in dvr_realize::collect::collect_lab(&lab, &out)? {
                println!("{}: {} files{}", m.host, m.files.len(), ops::errors_note(&m.errors));
            }
            println!("wrote {}; next: dvr import {}", out.display(), out.display());
        }
        LabCmd::Down { prefix } => {
            let lab = dvr_realize::Lab::new(&prefix.prefix);
            let t0 = std::time::Instant::now();
            let removed = lab.down_with(&mut |m| eprintln!("lab down: {m}"))?;
            let left = lab.leftovers();
            println!("lab `{}` down: removed {} items in {} ms", prefix.prefix, removed.len(), t0.elapsed().as_millis());
            if !left.is_empty() {
                bail!("still present after tear-down: {}", left.join(", "));
            }
        }
        LabCmd::Status { prefix, format, server } => {
            let lab = dvr_realize::Lab::new(&prefix.prefix);
            let ns = lab.namespaces()?;
            if ns.is_empty() && !lab.state.exists() {
                match format {
                    BenchFormat::Json => println!("{}", serde_json::json!({"prefix": prefix.prefix, "up": false})),
                    BenchFormat::Text => println!("lab `{}` is not up", prefix.prefix),
                }
                return Ok(());
            }
            let (mut t, profile) = lab_meta(&lab)?;
            let mut agents: Vec<serde_json::Value> = Vec::new();
            // A live lab (`lab up --live`) recorded its server.
            let recorded = std::fs::read_to_string(lab.state.join("lab.json"))
                .ok()
                .and_then(|m| serde_json::from_str::<serde_json::Value>(&m).ok())
                .and_then(|v| v["server"].as_str().map(|u| remote::client::Api::new(u, None)));
            if let Some(api) = server.api().or(recorded) {
                t = remote::load(&api)?;
                let rev = api.get("/v2.0/dvr/deployment")?["deployment"]["revision"].as_i64().unwrap_or_default();
                for a in api.get("/v2.0/agents")?["agents"].as_array().into_iter().flatten() {
                    if a["agent_type"] != "Open vSwitch agent" {
                        continue;
                    }
                    let c = &a["configurations"];
                    agents.push(serde_json::json!({
                        "host": a["host"], "alive": a["alive"], "revision": c["revision"], "server_revision": rev,
                        "last_convergence": c["last_convergence"], "last_operations": c["last_operations"],
                    }));
                }
            }
            let plan = dvr_plan::plan(&t, profile)?;
            let st = lab.status(&t, &plan, &mut |m| eprintln!("lab status: {m}"))?;
            if format == BenchFormat::Json {
                let hosts: Vec<serde_json::Value> = st
                    .daemons
                    .iter()
                    .map(|(h, ds)| {
                        serde_json::json!({
                            "host": h,
                            "ovs_running": ds.iter().all(|(_, up)| *up),
                            "daemons": ds.iter().map(|(d, up)| (d.to_string(), serde_json::Value::Bool(*up))).collect::<serde_json::Map<_, _>>(),
                            "matches_plan": st.of_host(h).next().is_none(),
                        })
                    })
                    .collect();
                let drift: Vec<serde_json::Value> =
                    st.drift.iter().map(|d| serde_json::json!({"host": d.host, "kind": d.kind, "item": d.item})).collect();
                let v = serde_json::json!({"prefix": prefix.prefix, "up": true, "clean": st.clean(), "namespaces": ns, "hosts": hosts, "drift": drift, "agents": agents});
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("lab `{}`: {} namespaces", prefix.prefix, st.namespaces);
                for (h, ds) in &st.daemons {
                    let d: Vec<String> = ds.iter().map(|(d, up)| format!("{d} {}", if *up { "running" } else { "NOT RUNNING" })).collect();
                    let n = st.of_host(h).count();
                    let state = if n == 0 { "matches its plan".to_string() } else { format!("DRIFT: {n} items") };
                    println!("  {h:<12} {:<44} {state}", d.join(", "));
                }
                for a in &agents {
                    println!(
                        "  agent {:<10} {} revision {} of {}, last convergence {} ({} operations)",
                        a["host"].as_str().unwrap_or("?"),
                        if a["alive"] == true { "alive" } else { "DEAD" },
                        a["revision"],
                        a["server_revision"],
                        a["last_convergence"].as_str().unwrap_or("never"),
                        a["last_operations"]
                    );
                }
                for d in &st.drift {
                    println!("    {:<10} {:<10} {}", d.host, d.kind, d.item);
                }
            }
            if !st.clean() {
                let hosts: std::collections::BTreeSet<&str> = st.drift.iter().map(|d| d.host.as_str()).collect();
                bail!(
                    "lab `{}` differs from its plan: {} items on {}; `dvr lab up --prefix {}` repairs it",
                    prefix.prefix,
                    st.drift.len(),
                    hosts.into_iter().collect::<Vec<_>>().join(", "),
                    prefix.prefix
                );
            }
        }
        LabCmd::Outside { prefix, server, follow } => {
            let lab = dvr_realize::Lab::new(&prefix.prefix);
            let api = server.api().context("dvr lab outside needs --server URL (the live lab's server)")?;
            lab_outside(&lab, &api, follow)?;
        }
        LabCmd::Mgmt { prefix, server_addr, hosts } => {
            let lab = dvr_realize::Lab::new(&prefix.prefix);
            let ns: Vec<String> = hosts.iter().map(|h| lab.names.host_ns(h)).collect();
            let port = server_addr.port();
            eprintln!("lab mgmt: 127.0.0.1:{port} of {} leads to the server at {server_addr}", ns.join(", "));
            match dvr_realize::relay::relay(&ns, port, server_addr) {
                Ok(never) => match never {},
                Err(e) => bail!("lab mgmt: {e}; is the lab up (dvr lab up --live)?"),
            }
        }
        LabCmd::Exec { prefix, name, cmd } => {
            let lab = dvr_realize::Lab::new(&prefix.prefix);
            let ns = lab.resolve_ns(&name)?;
            let status = std::process::Command::new("ip").args(["netns", "exec", &ns]).args(&cmd).status()?;
            if !status.success() {
                bail!("`{}` in {ns} exited with {status}", cmd.join(" "));
            }
        }
        LabCmd::Ping { prefix, from, to, count } => {
            let lab = dvr_realize::Lab::new(&prefix.prefix);
            let (t, _) = lab_meta(&lab)?;
            let ip = t.resolve_address(&to).with_context(|| {
                format!("`{to}` is neither an IPv4 address nor an instance/external host; endpoints are: {}", t.endpoint_names().join(", "))
            })?;
            let r = lab.ping(&from, ip, count)?;
            print!("{}", r.output);
            if r.received == 0 {
                bail!("no reply from {to} ({ip})");
            }
        }
    }
    Ok(())
}

pub(crate) fn load(arg: &TopologyArg) -> Result<Topology> {
    if let Some(api) = arg.server.api() {
        return remote::load(&api);
    }
    if !arg.changes.is_empty() {
        return Ok(load_changed(arg)?.pop().expect("the original topology is always there"));
    }
    match &arg.topology {
        None => Ok(dvr_model::seed()),
        Some(p) => Ok(dvr_model::load_file(p)?),
    }
}

/// The topology, then the topology after each `--change` in turn.
fn load_changed(arg: &TopologyArg) -> Result<Vec<Topology>> {
    let (file, yaml) = match &arg.topology {
        None => ("<built-in seed lab>".to_string(), dvr_model::SEED_YAML.to_string()),
        Some(p) => (p.display().to_string(), std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?),
    };
    let mut spec = dvr_model::parse_spec(&file, &yaml)?;
    let mut out = vec![dvr_model::build(&file, &spec)?];
    for c in &arg.changes {
        c.apply(&mut spec).map_err(|what| dvr_model::change::ChangeError { kind: c.kind(), what })?;
        out.push(dvr_model::build(&file, &spec).with_context(|| format!("the deployment after --change {}", c.kind()))?);
    }
    Ok(out)
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Plan { topo, host, bridge, format, explain, profile } => {
            // Planned host by host and written as it goes: one host's plan in
            // memory at a time, never the whole deployment's (nor its text).
            // With --change, the changes run through the incremental planner
            // (its result is what is printed) after a full plan of the original.
            let (t, changed) = if topo.changes.is_empty() {
                (load(&topo)?, None)
            } else {
                let mut ts = load_changed(&topo)?;
                dvr_plan::plan(&ts[0], profile)?; // the same checks as a full plan
                let mut r = dvr_plan::incremental::Replanner::new(&ts[0], profile);
                for t in &ts[1..] {
                    r.update(t);
                }
                (ts.pop().expect("the original topology is always there"), Some(r.plan().clone()))
            };
            dvr_plan::check_supported(&t)?;
            let hosts: Vec<dvr_model::HostIx> = match &host {
                None => t.hosts_ix().map(|(i, _)| i).collect(),
                Some(h) => vec![t.host_ix(h).with_context(|| {
                    let names: Vec<&str> = t.hosts.iter().map(|h| h.name.as_str()).collect();
                    format!("no host `{h}` in {}; hosts are: {}", t.name, names.join(", "))
                })?],
            };
            let pick_bridge = |hp: &dvr_plan::HostPlan, b: &str| -> Result<dvr_plan::Bridge> {
                hp.bridge(b).cloned().with_context(|| {
                    let names: Vec<&str> = hp.bridges.iter().map(|b| b.name.as_str()).collect();
                    format!("host `{}` has no bridge `{b}`; its bridges are: {}", hp.host, names.join(", "))
                })
            };
            let cache = dvr_plan::ctx::FlowCache::for_fixed_topology();
            let plan_one = |ix: dvr_model::HostIx| match &changed {
                Some(p) => p.hosts[ix.0].clone(),
                None => dvr_plan::plan_host_shared(&t, ix, profile, &cache),
            };
            let stdout = std::io::stdout();
            // A large buffer: the JSON of 1,000 hosts is gigabytes, written in
            // small pieces; 1 MiB makes it a few thousand writes, not hundreds of thousands.
            let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
            use std::io::Write;
            match format {
                PlanFormat::Json => {
                    match (&host, &bridge) {
                        (Some(_), Some(b)) => serde_json::to_writer_pretty(&mut out, &pick_bridge(&plan_one(hosts[0]), b)?)?,
                        (Some(_), None) => serde_json::to_writer_pretty(&mut out, &plan_one(hosts[0]))?,
                        (None, _) => match &changed {
                            Some(p) => serde_json::to_writer_pretty(&mut out, p)?,
                            None => serde_json::to_writer_pretty(&mut out, &dvr_plan::StreamedPlan { topo: &t, profile })?,
                        },
                    };
                    writeln!(out)?;
                }
                PlanFormat::Flows => {
                    let (Some(_), Some(b)) = (&host, &bridge) else {
                        bail!("--format flows prints one bridge: give --host HOST and --bridge BRIDGE");
                    };
                    write!(out, "{}", render::flows_text(&pick_bridge(&plan_one(hosts[0]), b)?))?;
                }
                PlanFormat::Text => {
                    let opts = render::TextOptions { explain };
                    let mut write_host = |hp: dvr_plan::HostPlan| -> Result<()> {
                        match &bridge {
                            Some(b) => write!(out, "{}", render::bridge_text(&pick_bridge(&hp, b)?, opts))?,
                            None => writeln!(out, "{}", render::host_text(&hp, opts))?,
                        }
                        Ok(())
                    };
                    match &changed {
                        Some(_) => hosts.iter().try_for_each(|&ix| write_host(plan_one(ix)))?,
                        None => dvr_plan::for_each_host(&t, &hosts, profile, write_host)?,
                    }
                }
            }
            out.flush()?;
        }
        Cmd::Trace(a) => trace_cmd::run_trace(a)?,
        Cmd::Demo(a) => trace_cmd::run_demo(a)?,
        Cmd::Draw(a) => draw_cmd::run(a)?,
        Cmd::Collect { out, host } => {
            let host = match host {
                Some(h) => h,
                None => {
                    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "host".into())
                }
            };
            let m = dvr_realize::collect::collect(&dvr_realize::collect::Source::local(&host), &out)?;
            println!("{}: {} files{} in {}", m.host, m.files.len(), ops::errors_note(&m.errors), out.display());
        }
        Cmd::Verify { topo, dumps, outside, profile, matrix, max_pairs, proto, dport, format } => {
            let (plan, endpoints, notes) = if dumps.is_empty() {
                let t = load(&topo)?;
                let plan = dvr_plan::plan(&t, profile)?;
                let eps = dvr_sim::World::endpoints_of(&t, &plan);
                (plan, eps, vec![])
            } else {
                let mut imp = ops::import_dirs(&dumps)?;
                if outside.is_empty() {
                    imp.add_default_outside();
                }
                for ip in outside {
                    imp.add_outside(ip)?;
                }
                (imp.plan, imp.endpoints, imp.notes)
            };
            let l4 = match proto {
                trace_cmd::Proto::Icmp => None,
                trace_cmd::Proto::Tcp => Some(dvr_sim::L4::Tcp { sport: 40000, dport }),
                trace_cmd::Proto::Udp => Some(dvr_sim::L4::Udp { sport: 40000, dport }),
            };
            let r = dvr_sim::verify::verify(&plan, &endpoints, &dvr_sim::verify::Options { max_pairs, l4 });
            match format {
                BenchFormat::Json => {
                    let mut v = serde_json::to_value(&r)?;
                    v["ok"] = serde_json::json!(r.ok());
                    v["import_notes"] = serde_json::json!(notes);
                    println!("{}", serde_json::to_string_pretty(&v)?);
                }
                BenchFormat::Text => print!("{}", dvr_sim::verify::text(&r, matrix)),
            }
            if !r.ok() {
                return Err(ops::Violated.into());
            }
        }
        Cmd::Import { dirs, format } => {
            let imp = ops::import_dirs(&dirs)?;
            match format {
                BenchFormat::Text => print!("{}", ops::summary(&imp)),
                BenchFormat::Json => {
                    let eps: Vec<serde_json::Value> = imp
                        .endpoints
                        .iter()
                        .map(|e| serde_json::json!({"name": e.name, "host": e.host, "mac": e.mac, "addr": e.addr, "gateway": e.gateway}))
                        .collect();
                    let v = serde_json::json!({"plan": imp.plan, "instances": eps, "notes": imp.notes});
                    println!("{}", serde_json::to_string_pretty(&v)?);
                }
            }
        }
        Cmd::Lab { cmd } => run_lab(cmd)?,
        Cmd::Apply { file, server, format } => {
            let api = server.api().context("dvr apply needs --server URL (e.g. http://127.0.0.1:9696)")?;
            remote::run_apply(&file, &api, format == BenchFormat::Json)?;
        }
        Cmd::BenchServer { db, server, hosts, list_ports, format } => {
            let mut all = Vec::new();
            for d in &db {
                let s = remote::bench::Spawned::start(d)?;
                all.push(remote::bench::figures(d, &s.url, None, hosts, list_ports)?);
            }
            if let Some(url) = &server.server {
                all.push(remote::bench::figures(url, url, server.token.as_deref(), hosts, list_ports)?);
            }
            anyhow::ensure!(!all.is_empty(), "give --db STORE (repeatable) or --server URL");
            match format {
                BenchFormat::Json => println!("{}", serde_json::to_string_pretty(&all)?),
                BenchFormat::Text => print!("{}", remote::bench::render(&all)),
            }
        }
        Cmd::Export { server, name } => {
            let api = server.api().context("dvr export needs --server URL (e.g. http://127.0.0.1:9696)")?;
            print!("{}", remote::export_yaml(&api, name.as_deref())?);
        }
        Cmd::Server(args) => server_cmd::run(args)?,
        Cmd::Agent(args) => agent::run(args)?,
        Cmd::Gen { hosts, vms_per_host, networks, routers, fips, external_hosts, seed, tenant_type } => {
            let d = dvr_model::r#gen::GenParams::scale(hosts).with_seed(seed);
            let vms = vms_per_host.map_or(d.vms, |v| v.saturating_mul(hosts));
            let p = dvr_model::r#gen::GenParams {
                vms,
                networks: networks.unwrap_or(d.networks),
                routers: routers.unwrap_or(d.routers),
                floating_ips: fips.unwrap_or(if vms_per_host.is_some() { vms / 20 } else { d.floating_ips }),
                external_hosts: external_hosts.unwrap_or(d.external_hosts),
                tenant_type: match tenant_type {
                    GenTenantType::Vlan => dvr_model::r#gen::TenantType::Vlan,
                    GenTenantType::Vxlan => dvr_model::r#gen::TenantType::Vxlan,
                },
                ..d
            };
            if let Err(e) = p.check() {
                anyhow::bail!(
                    "dvr gen --hosts {hosts}: {e}\n    fix: change --hosts, --vms-per-host, --networks, --routers or --fips (now {} instances, {} networks, {} routers, {} floating IPs)",
                    p.vms,
                    p.networks,
                    p.routers,
                    p.floating_ips
                );
            }
            print!("{}", dvr_model::r#gen::generate_yaml(&p));
        }
        Cmd::Bench { sizes, quick, no_ovs, format, child_plan, child_measure, changes_only } => {
            if changes_only {
                let largest = sizes.iter().copied().max().unwrap_or(1000);
                let r = bench::Report { machine: machine(), live_changes: bench::live_change_figures(largest, 7)?, ..Default::default() };
                match format {
                    BenchFormat::Json => println!("{}", serde_json::to_string_pretty(&r.live_changes)?),
                    BenchFormat::Text => print!("{}", bench::render_changes_only(&r)),
                }
                return Ok(());
            }
            if let Some(n) = child_plan {
                println!("{}", serde_json::to_string(&bench::plan_figures(n)?)?);
                return Ok(());
            }
            if let Some(args) = child_measure {
                println!("{}", serde_json::to_string(&bench::measure_child(&args)?)?);
                return Ok(());
            }
            run_bench(if quick { vec![10, 100] } else { sizes }, quick, no_ovs, format)?;
        }
        Cmd::Validate { topo, format: BenchFormat::Json } => {
            let v = match load(&topo) {
                Ok(t) => serde_json::json!({"valid": true, "name": t.name, "hosts": t.hosts.len(), "networks": t.networks.len(),
                    "routers": t.routers.len(), "instances": t.instances.len(), "ports": t.ports.len()}),
                Err(e) => {
                    let problems =
                        e.downcast_ref::<dvr_model::TopologyError>().map(|te| te.problems()).unwrap_or_else(|| vec![format!("{e:#}")]);
                    println!("{}", serde_json::to_string_pretty(&serde_json::json!({"valid": false, "problems": problems}))?);
                    return Err(e);
                }
            };
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Cmd::Validate { topo, format: BenchFormat::Text } => {
            let t = load(&topo)?;
            println!("{}: valid", t.name);
            print!("{}", t.summary());
        }
        Cmd::Topology { example: true, .. } => print!("{}", dvr_model::EXAMPLE_YAML),
        Cmd::Topology { topo, format, .. } => match format {
            TopoFormat::Json => println!("{}", serde_json::to_string_pretty(&load(&topo)?)?),
            TopoFormat::Text => print!("{}", load(&topo)?.summary()),
            TopoFormat::Yaml => match &topo.topology {
                None if topo.server.server.is_some() => {
                    print!("{}", remote::export_yaml(&topo.server.api().context("--server")?, None)?)
                }
                None => print!("{}", dvr_model::SEED_YAML),
                Some(p) => {
                    load(&topo)?;
                    print!("{}", std::fs::read_to_string(p)?);
                }
            },
        },
    }
    Ok(())
}

fn run_bench(sizes: Vec<usize>, quick: bool, no_ovs: bool, format: BenchFormat) -> Result<()> {
    let mut r = bench::Report { machine: machine(), ..Default::default() };
    let exe = std::env::current_exe()?;
    let largest = sizes.iter().copied().max().unwrap_or(10);
    let command_stages = 1 + usize::from(sizes.contains(&1000) && largest != 1000);
    let stages = progress::Stages::new(sizes.len() + 5 + command_stages + usize::from(!quick) + usize::from(!no_ovs));
    for &n in &sizes {
        stages.stage(&format!("planning {n} hosts ({} VMs) in a child process", n * 20));
        let out = std::process::Command::new(&exe).args(["bench", "--child-plan", &n.to_string()]).output()?;
        anyhow::ensure!(out.status.success(), "plan of {n} hosts failed: {}", String::from_utf8_lossy(&out.stderr));
        r.plan.push(serde_json::from_slice(&out.stdout)?);
    }
    // Replanning holds every host's plan: at most the 1,000-host size.
    let replanned = largest.min(bench::STREAM_ABOVE_HOSTS);
    stages.stage(&format!("incremental changes on {replanned} hosts"));
    r.incremental = bench::incremental_figures(replanned)?;
    stages.stage(&format!("changes in place on {replanned} hosts (seed 7)"));
    r.live_changes = bench::live_change_figures(replanned, 7)?;
    let budget = std::time::Duration::from_millis(if quick { 300 } else { 2000 });
    stages.stage("traces on the seed lab");
    let seed = dvr_model::seed();
    use bench::TraceMode::{Reach, Text, Trace};
    for (mode, cold) in [(Trace, false), (Text, false), (Reach, false), (Trace, true), (Text, true), (Reach, true)] {
        r.traces.push(bench::trace_figures("seed lab", &seed, mode, cold, budget)?);
    }
    stages.stage(&format!("traces on {largest} hosts"));
    let big_yaml = dvr_model::r#gen::generate_yaml(&dvr_model::r#gen::GenParams::scale(largest));
    let big = dvr_model::load_str("generated", &big_yaml)?;
    let label = format!("{largest} hosts ({} VMs)", big.instances.len());
    for (mode, cold) in [(Trace, false), (Reach, false)] {
        r.traces.push(bench::trace_figures(&label, &big, mode, cold, budget)?);
    }
    // The commands at 1,000 hosts (the reference size) when asked
    // for, and at the largest size.
    let mut command_sizes: Vec<usize> = sizes.iter().copied().filter(|&n| n == 1000).collect();
    if !command_sizes.contains(&largest) {
        command_sizes.push(largest);
    }
    let dir = std::env::temp_dir().join(format!("dvr-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for n in command_sizes {
        stages.stage(&format!("single commands on {n} hosts"));
        let (yaml, paths) = if n == largest {
            (big_yaml.clone(), big.paths.clone())
        } else {
            let y = dvr_model::r#gen::generate_yaml(&dvr_model::r#gen::GenParams::scale(n));
            let paths = dvr_model::parse_spec("generated", &y)?.paths;
            (y, paths)
        };
        let file = dir.join(format!("gen-{n}.yaml"));
        std::fs::write(&file, &yaml)?;
        drop(yaml);
        let file_arg = file.display().to_string();
        for (label, args) in bench::commands(&file_arg, &paths, n) {
            let mut f = bench::command_figures(&label, &args)?;
            f.hosts = n;
            r.commands.push(f);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    drop(big);
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    for pair_hosts in if quick { vec![10] } else { vec![50, 500] } {
        stages.stage(&format!("all pairs of {} VMs", pair_hosts * 20));
        r.all_pairs.push(bench::all_pairs(pair_hosts, threads)?);
    }
    if no_ovs {
        r.ovs_skipped = Some("--no-ovs".into());
    } else {
        stages.stage("ofproto/trace vs our engine");
        match bench::ovs_figures(if quick { 300 } else { 2000 }) {
            Ok(v) => r.ovs = Some(v),
            Err(e) => r.ovs_skipped = Some(format!("{e:#}")),
        }
    }
    stages.finish();
    r.targets = bench::targets(&r);
    match format {
        BenchFormat::Json => println!("{}", serde_json::to_string_pretty(&r)?),
        BenchFormat::Text => print!("{}", bench::render(&r)),
    }
    Ok(())
}

/// CPU model and core count, for reports.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpu}, {} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<ops::Violated>().is_some() => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            let bad_input = e.downcast_ref::<dvr_model::TopologyError>().is_some()
                || e.downcast_ref::<dvr_plan::PlanError>().is_some()
                || e.downcast_ref::<dvr_sim::TraceError>().is_some()
                || e.downcast_ref::<dvr_sim::import::ImportError>().is_some()
                || e.downcast_ref::<dvr_model::change::ChangeError>().is_some();
            ExitCode::from(if bad_input { 2 } else { 1 })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::machines_only;

    #[test]
    fn a_live_labs_machines_are_the_hosts_and_nothing_of_a_tenant() {
        let yaml = machines_only(None).expect("the seed's hosts");
        let spec = dvr_model::parse_spec("machines", &yaml).expect("a valid topology file");
        let names: Vec<&str> = spec.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["controller", "network", "compute1", "compute2"]);
        assert!(spec.hosts.iter().any(|h| h.bridge_mappings.get("extnet").map(String::as_str) == Some("br-ex")));
        assert!(spec.networks.is_empty() && spec.routers.is_empty() && spec.instances.is_empty());
        assert!(spec.floating_ips.is_empty() && spec.external_hosts.is_empty() && spec.name.is_none());
        // It builds: a deployment of machines only is a valid (empty) one.
        let topo = dvr_model::build::build("machines", &spec).expect("builds");
        assert!(topo.instances.is_empty() && topo.external_hosts.is_empty());
        // The seed's own DVR MACs: the same hosts in the same order.
        let seed = dvr_model::seed();
        let macs = |t: &dvr_model::Topology| t.hosts.iter().map(|h| h.dvr_mac).collect::<Vec<_>>();
        assert_eq!(macs(&topo), macs(&seed));
        // A file without hosts cannot be a lab's machines.
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("nohosts.yaml");
        std::fs::write(&f, "version: 1\n").expect("write");
        assert!(machines_only(Some(&f)).unwrap_err().to_string().contains("declares no hosts"));
    }
}
