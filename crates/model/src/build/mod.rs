//! From the file's spec to a validated, fully allocated [`Topology`].
//!
//! Validation collects every problem instead of stopping at the first, so a
//! user fixes a file in one round. Allocation runs only on a valid spec and in
//! a fixed order (explicit values first, then DHCP, router, SNAT, gateway and
//! fip-agent ports, then instances and floating IPs), which is what makes the
//! result deterministic.
//!
//! One module per object kind (`hosts`, `networks`, `routers`, `instances`,
//! `ports`, `floating_ips`, `external_hosts`) checks that kind against a
//! `Resolve` context — the objects resolved so far and the name → index maps
//! of the file — and `allocation` hands out what the file leaves open. Keeping each kind in its own place is what lets a change to
//! one object be checked and allocated without rebuilding the others.

mod allocation;
mod check;
mod external_hosts;
mod floating_ips;
mod hosts;
mod instances;
mod networks;
mod ports;
mod routers;
mod tunnels;

use crate::error::TopologyError;
use crate::limits;
use crate::spec::*;
use crate::topology::*;
use crate::types::*;
use check::{Checker, first_index, obj};
use std::collections::HashMap;

pub use check::MAX_PROBLEMS;

/// Recompute host `h`'s local VLANs and link-local pairs exactly as a full
/// build does (for [`crate::live`], after a change altered what the host
/// carries). Problems are returned instead of collected.
pub(crate) fn reallocate_host(topo: &mut Topology, h: HostIx) -> Vec<crate::error::Problem> {
    let mut c = Checker::default();
    hosts::allocate_host(&mut c, topo, h);
    c.finish()
}

/// Hand out host `h`'s local VLANs again (its routers, and so its link-local
/// pairs, unchanged), as [`reallocate_host`] would.
pub(crate) fn reallocate_vlans(topo: &mut Topology, h: HostIx) -> Vec<crate::error::Problem> {
    let mut c = Checker::default();
    hosts::allocate_vlans(&mut c, topo, h);
    c.finish()
}

/// Check one host as a build checks it (its name, bridge mappings, NICs, an
/// explicit DVR MAC), for [`crate::live`] adding a host a control plane
/// described. Uniqueness among the other hosts and the tunnel endpoint are
/// the caller's.
pub(crate) fn check_host_alone(h: &HostSpec) -> Result<Host, Vec<crate::error::Problem>> {
    let spec = TopologySpec { hosts: vec![h.clone()], ..TopologySpec::default() };
    let cx = Resolve {
        spec: &spec,
        hosts: Vec::new(),
        networks: Vec::new(),
        subnets: Vec::new(),
        routers: Vec::new(),
        host_ix: first_index(spec.hosts.iter().map(|h| h.name.as_str())),
        net_ix: HashMap::new(),
        sub_ix: HashMap::new(),
        network_node: None,
    };
    let mut c = Checker::default();
    let mut hosts = hosts::check_hosts(&mut c, &cx);
    let problems = c.finish();
    match hosts.pop() {
        Some(host) if problems.is_empty() => Ok(host),
        _ => Err(problems),
    }
}

pub use hosts::networks_on_host;
pub use tunnels::DEFAULT_UNDERLAY;

/// What validation has resolved so far, shared by every object kind's check:
/// the spec, the objects already checked, and name → index maps (the first
/// holder of a name, so a duplicate never hides the original). One context
/// instead of each check taking the maps it needs as arguments.
struct Resolve<'a> {
    spec: &'a TopologySpec,
    hosts: Vec<Host>,
    networks: Vec<Network>,
    subnets: Vec<Subnet>,
    routers: Vec<Router>,
    host_ix: HashMap<&'a str, usize>,
    net_ix: HashMap<&'a str, usize>,
    sub_ix: HashMap<&'a str, usize>,
    /// The host with `role: network` (SNAT, DHCP), if any.
    network_node: Option<HostIx>,
}

/// The checked entries of the spec's lists, by position in the file (`None`
/// for an entry with a problem), that allocation turns into objects.
struct Drafts {
    instances: Vec<Option<instances::InstanceDraft>>,
    fips: Vec<Option<floating_ips::FipDraft>>,
    ext_hosts: Vec<Option<external_hosts::ExternalDraft>>,
    ports: Vec<Option<ports::PortDraft>>,
}

/// Parse and validate topology YAML. `file` labels every message.
pub fn load_str(file: &str, yaml: &str) -> Result<Topology, TopologyError> {
    build(file, &parse_spec(file, yaml)?)
}

/// Parse topology YAML into its spec without validating it (for tools that
/// edit a deployment, e.g. [`crate::change::Change`]).
///
/// The loader's bounds ([`crate::limits`]) are checked first: size, then
/// nesting depth by a linear scan (before the parser, whose cost grows with the
/// square of the depth), then, only for a file that uses aliases, their expansion.
pub fn parse_spec(file: &str, yaml: &str) -> Result<TopologySpec, TopologyError> {
    let limit = |e| TopologyError::limit(file, e);
    limits::check_size(yaml.len() as u64).map_err(limit)?;
    let scanned = limits::scan(yaml).map_err(limit)?;
    if scanned.has_aliases {
        limits::check_expansion(yaml).map_err(limit)?;
    }
    serde_yaml_ng::from_str(yaml).map_err(|e| {
        let message = e.to_string();
        if message.contains("recursion limit exceeded") {
            let mut too_deep = limits::LimitExceeded {
                limit: "nesting depth",
                location: String::new(),
                what: format!("mappings and sequences nest deeper than the parser allows ({message})"),
                fix: "a topology file nests about six levels; flatten the structure".to_string(),
            };
            if let Some(l) = e.location() {
                too_deep.location = format!("{}:{}:", l.line(), l.column());
            }
            limit(too_deep)
        } else if message.contains("repetition limit exceeded") {
            limit(limits::expansion_error())
        } else {
            syntax_error(file, &e)
        }
    })
}

/// A parser error as a [`TopologyError::Syntax`]: the location once (the parser
/// repeats it inside its message), and advice that fits the message.
fn syntax_error(file: &str, e: &serde_yaml_ng::Error) -> TopologyError {
    let mut message = e.to_string();
    let location = match e.location() {
        Some(l) => {
            let repeated = format!(" at line {} column {}", l.line(), l.column());
            message = message.replacen(&repeated, "", 1);
            format!("{}:{}:", l.line(), l.column())
        }
        None => String::new(),
    };
    // Backquoted words of the message: the offending one first, then what was expected.
    let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    let suggestion = |kind: &str| match quoted.split_first() {
        Some((bad, expected)) => match closest(bad, expected) {
            Some(near) => format!("did you mean `{near}`? Otherwise {kind}"),
            None => kind.to_string(),
        },
        None => kind.to_string(),
    };
    let fix = if message.contains("unknown field") {
        suggestion("remove or rename the key; docs/topology.md lists the keys of version 1")
    } else if message.contains("unknown variant") {
        suggestion("use one of the values the message lists")
    } else if message.contains("missing field") {
        let key = quoted.first().copied().unwrap_or("?");
        format!("add the required key `{key}` (docs/topology.md shows every key of version 1)")
    } else if message.contains("duplicate field") || message.contains("duplicate entry") {
        "write each key once per object; delete or rename the repeated one".to_string()
    } else if message.contains("is not a MAC address") {
        "write the instance's `mac` as six hex octets like fa:16:3e:00:01:09, or remove it to \
         have one allocated"
            .to_string()
    } else if message.contains("invalid IPv4 address") {
        "write the address as four decimal octets like 192.168.1.9 (version 1 is IPv4 only)".to_string()
    } else if message.contains("invalid type") || message.contains("invalid value") {
        "give the value the type the message expects; docs/topology.md has an example of every key (`dvr topology --example` prints one)"
            .to_string()
    } else {
        "make the file valid YAML following docs/topology.md (version 1): check indentation, \
         colons and brackets at the place named"
            .to_string()
    };
    TopologyError::Syntax { file: file.to_string(), location, message, fix }
}

/// The candidate nearest to a misspelt word, when it is near enough to be a typo.
fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let (distance, best) = candidates.iter().map(|c| (edit_distance(word, c), *c)).min()?;
    (distance > 0 && distance <= 2.max(word.len() / 3)).then_some(best)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Read, parse and validate a topology file.
pub fn load_file(path: &std::path::Path) -> Result<Topology, TopologyError> {
    let file = path.display().to_string();
    // Read at most one byte past the size bound, so a huge file (or a pipe
    // that never ends) is refused without being read whole.
    let io = |source| TopologyError::Io { file: file.clone(), source };
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(std::fs::File::open(path).map_err(io)?, limits::MAX_FILE_BYTES + 1), &mut bytes)
        .map_err(io)?;
    limits::check_size(bytes.len() as u64).map_err(|e| TopologyError::limit(&file, e))?;
    let yaml = String::from_utf8(bytes)
        .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("the file is not UTF-8 text ({e})"))))?;
    load_str(&file, &yaml)
}

/// Validate and allocate.
pub fn build(file: &str, spec: &TopologySpec) -> Result<Topology, TopologyError> {
    let mut c = Checker::default();
    let invalid = |problems| TopologyError::Invalid { file: file.to_string(), problems };
    limits::check_counts(spec).map_err(|e| TopologyError::limit(file, e))?;
    match spec.version {
        Some(1) => {}
        Some(v) => c.bad("topology", "version", format!("version {v} is not supported"), "set `version: 1`"),
        None => c.bad("topology", "version", "missing", "add `version: 1` at the top of the file"),
    }

    let mut cx = Resolve {
        spec,
        hosts: Vec::new(),
        networks: Vec::new(),
        subnets: Vec::new(),
        routers: Vec::new(),
        host_ix: first_index(spec.hosts.iter().map(|h| h.name.as_str())),
        net_ix: first_index(spec.networks.iter().map(|n| n.name.as_str())),
        sub_ix: HashMap::new(),
        network_node: spec.hosts.iter().position(|h| h.role == Role::Network).map(HostIx),
    };
    cx.hosts = hosts::check_hosts(&mut c, &cx);
    (cx.networks, cx.subnets, cx.sub_ix) = networks::check_networks(&mut c, &cx);
    cx.routers = routers::check_routers(&mut c, &cx);
    let underlay = tunnels::check_tunnels(&mut c, &mut cx);
    networks::check_dhcp_host(&mut c, &cx);
    let instances = instances::check_instances(&mut c, &cx);
    hosts::check_host_mappings(&mut c, &cx, &instances);
    let fips = floating_ips::check_floating_ips(&mut c, &cx, &instances);
    let ext_hosts = external_hosts::check_external_hosts(&mut c, &cx);
    let ports = ports::check_ports(&mut c, &cx);
    let (security, security_problems) = crate::security::check(spec);
    for p in security_problems {
        c.bad_k(p.kind, p.object, &p.field, p.what, p.fix);
    }
    if !c.problems.is_empty() {
        return Err(invalid(c.finish()));
    }
    let drafts = Drafts { instances, fips, ext_hosts, ports };

    let network_node = cx.network_node;
    let mut topo = Topology {
        name: spec.name.clone().unwrap_or_else(|| file.to_string()),
        hosts: cx.hosts,
        networks: cx.networks,
        subnets: cx.subnets,
        routers: cx.routers,
        instances: Vec::new(),
        floating_ips: Vec::new(),
        external_hosts: Vec::new(),
        paths: Vec::new(),
        ports: Vec::new(),
        unbound_ports: Vec::new(),
        security,
        underlay,
        index: Index::default(),
    };
    allocation::allocate(&mut c, &mut topo, spec, &drafts, network_node);
    check_paths(&mut c, spec, &topo);
    let macs: Vec<MacAddr> = topo.instances.iter().map(|x| topo.ports[x.port.0].mac).collect();
    crate::security::fill_pair_macs(&mut topo.security, |i| macs[i.0]);
    if !c.problems.is_empty() {
        return Err(invalid(c.finish()));
    }
    topo.paths = spec.paths.clone();
    Ok(topo)
}

/// `paths:` names endpoints that exist and destinations that resolve.
fn check_paths(c: &mut Checker, spec: &TopologySpec, topo: &Topology) {
    for (i, p) in spec.paths.iter().enumerate() {
        let o = obj("paths", i, &format!("{} -> {}", p.from, p.to));
        let endpoints = topo.endpoint_names().join(", ");
        if topo.endpoint_ip(&p.from).is_none() {
            c.bad(&o, "from", format!("no instance or external host is called `{}`", p.from), format!("name one of: {endpoints}"));
        }
        match (p.proto, p.dport) {
            (Some(crate::spec::PathProto::Tcp | crate::spec::PathProto::Udp), None) => {
                c.bad(&o, "dport", "a tcp or udp path needs a destination port", "add `dport: 22` (any port 1..=65535)")
            }
            (Some(crate::spec::PathProto::Tcp | crate::spec::PathProto::Udp), Some(0)) => {
                c.bad(&o, "dport", "port 0 is not a port", "use a port in 1..=65535")
            }
            (None | Some(crate::spec::PathProto::Icmp), Some(_)) => {
                c.bad(&o, "dport", "only tcp and udp paths have a destination port", "add `proto: tcp` (or udp), or remove `dport`")
            }
            _ => {}
        }
        if topo.resolve_address(&p.to).is_none() {
            c.bad(
                &o,
                "to",
                format!("`{}` is neither an IPv4 address nor an instance or external host", p.to),
                format!("give an IPv4 address or one of: {endpoints}"),
            );
        }
    }
}
