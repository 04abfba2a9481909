//! From the file's spec to a validated, fully allocated [`Topology`].
//!
//! Validation collects every problem instead of stopping at the first, so a
//! user fixes a file in one round. Allocation runs only on a valid spec and in
//! a fixed order (explicit values first, then DHCP, router, SNAT, gateway and
//! fip-agent ports, then instances and floating IPs), which is what makes the
//! result deterministic.

use crate::alloc::*;
use crate::error::{Problem, ProblemKind, TopologyError};
use crate::limits;
use crate::spec::*;
use crate::topology::*;
use crate::types::*;
use ipnet::Ipv4Net;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

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

/// Collects problems while walking the spec.
///
/// At most [`MAX_PROBLEMS`] are kept: a generated file with one mistake
/// repeated everywhere (or every subnet overlapping every other) must not turn
/// into millions of messages; the rest are counted in a closing line.
struct Checker {
    problems: Vec<Problem>,
    dropped: usize,
}

/// Problems reported in full; further ones are only counted.
pub const MAX_PROBLEMS: usize = 200;

impl Checker {
    fn bad(&mut self, object: impl Into<String>, field: &str, what: impl Into<String>, fix: impl Into<String>) {
        self.bad_k(ProblemKind::Other, object, field, what, fix);
    }

    /// Like [`Checker::bad`], for a problem of a kind that API front ends
    /// map to their own error types (e.g. an address already in use).
    fn bad_k(&mut self, kind: ProblemKind, object: impl Into<String>, field: &str, what: impl Into<String>, fix: impl Into<String>) {
        if self.problems.len() >= MAX_PROBLEMS {
            self.dropped += 1;
            return;
        }
        self.problems.push(Problem { kind, object: object.into(), field: field.to_string(), what: what.into(), fix: fix.into() });
    }

    /// The problems, with a closing one counting those not kept.
    fn finish(mut self) -> Vec<Problem> {
        if self.dropped > 0 {
            self.problems.push(Problem {
                kind: ProblemKind::Other,
                object: "topology".to_string(),
                field: String::new(),
                what: format!("{} more problem(s) not shown (only the first {MAX_PROBLEMS} are listed)", self.dropped),
                fix: "fix the problems above and validate again".to_string(),
            });
        }
        self.problems
    }
}

fn obj(kind: &str, i: usize, name: &str) -> String {
    format!("{kind}[{i}] ({name})")
}

/// Validate and allocate.
pub fn build(file: &str, spec: &TopologySpec) -> Result<Topology, TopologyError> {
    let mut c = Checker { problems: Vec::new(), dropped: 0 };
    let invalid = |problems| TopologyError::Invalid { file: file.to_string(), problems };
    limits::check_counts(spec).map_err(|e| TopologyError::limit(file, e))?;
    match spec.version {
        Some(1) => {}
        Some(v) => c.bad("topology", "version", format!("version {v} is not supported"), "set `version: 1`"),
        None => c.bad("topology", "version", "missing", "add `version: 1` at the top of the file"),
    }

    let hosts = check_hosts(&mut c, spec);
    let host_ix = first_index(spec.hosts.iter().map(|h| h.name.as_str()));
    let (networks, subnets) = check_networks(&mut c, spec, &hosts);
    let net_ix = first_index(spec.networks.iter().map(|n| n.name.as_str()));
    let sub_ix = first_index(subnets.iter().map(|s| s.name.as_str()));
    let network_node = spec.hosts.iter().position(|h| h.role == Role::Network).map(HostIx);
    let routers = check_routers(&mut c, spec, &networks, &subnets, &net_ix, &sub_ix, network_node);
    check_dhcp_host(&mut c, spec, network_node);
    let instances = check_instances(&mut c, spec, &hosts, &networks, &subnets, &host_ix, &net_ix);
    check_host_mappings(&mut c, spec, &hosts, &networks, &subnets, &routers, &instances, network_node);
    let fips = check_floating_ips(&mut c, spec, &networks, &subnets, &routers, &instances, &net_ix);
    let ext_hosts = check_external_hosts(&mut c, spec, &networks, &subnets, &net_ix);
    let ports = check_ports(&mut c, spec, &networks, &subnets, &net_ix, network_node);
    let (security, security_problems) = crate::security::check(spec);
    for p in security_problems {
        c.bad_k(p.kind, p.object, &p.field, p.what, p.fix);
    }
    if !c.problems.is_empty() {
        return Err(invalid(c.finish()));
    }

    let mut topo = Topology {
        name: spec.name.clone().unwrap_or_else(|| file.to_string()),
        hosts,
        networks,
        subnets,
        routers,
        instances: Vec::new(),
        floating_ips: Vec::new(),
        external_hosts: Vec::new(),
        paths: Vec::new(),
        ports: Vec::new(),
        unbound_ports: Vec::new(),
        security,
        index: Index::default(),
    };
    allocate(&mut c, &mut topo, spec, &instances, &fips, &ext_hosts, &ports, network_node);
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

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
}

/// For each subnet (by index), the distributed routers with an interface on
/// it, in router order: instance → router lookups without scanning every router.
fn distributed_routers_by_subnet(routers: &[Router], subnets: usize) -> Vec<Vec<usize>> {
    let mut by_subnet = vec![Vec::new(); subnets];
    for (r, router) in routers.iter().enumerate().filter(|(_, r)| r.distributed) {
        for s in &router.interfaces {
            if let Some(list) = by_subnet.get_mut(s.0) {
                list.push(r);
            }
        }
    }
    by_subnet
}

/// Name → index of its first holder, so a duplicate never hides the original.
fn first_index<'a>(names: impl Iterator<Item = &'a str>) -> HashMap<&'a str, usize> {
    let mut ix = HashMap::new();
    for (i, n) in names.enumerate() {
        ix.entry(n).or_insert(i);
    }
    ix
}

/// Names must be valid and unique within one namespace. `items` are
/// `(object, name)` pairs; `fix` says what shares the namespace.
fn check_unique<'a>(c: &mut Checker, items: impl Iterator<Item = (String, &'a str)>, fix: &str) {
    let mut seen: BTreeMap<&str, String> = BTreeMap::new();
    for (o, n) in items {
        if !valid_name(n) {
            c.bad(&o, "name", format!("`{n}` is not a valid name"), "use letters, digits, `-`, `_` or `.` only");
        }
        match seen.get(n) {
            Some(first) => c.bad_k(ProblemKind::DuplicateName, &o, "name", format!("duplicate name: {first} is also called `{n}`"), fix),
            None => {
                seen.insert(n, o);
            }
        }
    }
}

fn named<'a, T>(kind: &'a str, items: &'a [T], name: impl Fn(&T) -> &str + 'a) -> impl Iterator<Item = (String, &'a str)> + 'a {
    items.iter().enumerate().map(move |(i, x)| {
        let n = name(x);
        (obj(kind, i, n), n)
    })
}

/// `networks[i] (net).subnets[k] (sub)`: where a subnet sits in the file.
fn subnet_obj(spec: &TopologySpec, i: usize, k: usize) -> String {
    let n = &spec.networks[i];
    format!("networks[{i}] ({}).subnets[{k}] ({})", n.name, n.subnets[k].name)
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Controller => "controller",
        Role::Network => "network",
        Role::Compute => "compute",
    }
}

fn check_hosts(c: &mut Checker, spec: &TopologySpec) -> Vec<Host> {
    check_unique(c, named("hosts", &spec.hosts, |h| &h.name), "give every host a unique name");
    let mut dvr_macs: BTreeMap<MacAddr, usize> = BTreeMap::new();
    let mut hosts = Vec::new();
    for (i, h) in spec.hosts.iter().enumerate() {
        let o = obj("hosts", i, &h.name);
        if h.role == Role::Controller && !h.bridge_mappings.is_empty() {
            c.bad(
                &o,
                "bridge_mappings",
                "a controller runs no dataplane, so bridge mappings would be ignored",
                "remove bridge_mappings or make the host a network/compute node",
            );
        }
        let mut bridges = BTreeSet::new();
        let mut mappings = Vec::new();
        for (k, (physnet, bridge)) in h.bridge_mappings.iter().enumerate() {
            if !valid_name(physnet) || !valid_name(bridge) || bridge.len() > 15 {
                c.bad(
                    &o,
                    "bridge_mappings",
                    format!("`{physnet}: {bridge}` is not a valid mapping"),
                    "map a physical network name to an OVS bridge name of at most 15 characters",
                );
            }
            if bridge == "br-int" || bridge == "br-tun" {
                c.bad(
                    &o,
                    "bridge_mappings",
                    format!("bridge `{bridge}` is reserved for the OVS agent"),
                    "use another bridge name, e.g. br-vlan or br-ex",
                );
            }
            if !bridges.insert(bridge.as_str()) {
                c.bad(
                    &o,
                    "bridge_mappings",
                    format!("bridge `{bridge}` is mapped to more than one physical network"),
                    "give each physical network its own bridge",
                );
            }
            let nic = h.nics.get(physnet).cloned().unwrap_or_else(|| format!("eth{}", k + 1));
            mappings.push(BridgeMapping { physnet: physnet.clone(), bridge: bridge.clone(), nic });
        }
        for (physnet, nic) in &h.nics {
            if !valid_name(nic) || nic.len() > 15 {
                c.bad(
                    &o,
                    "nics",
                    format!("`{physnet}: {nic}` does not name a valid network interface"),
                    "use a Linux interface name of at most 15 letters, digits, `-`, `_` or `.`, \
                     e.g. eth1",
                );
            }
            if !h.bridge_mappings.contains_key(physnet) {
                c.bad(
                    &o,
                    "nics",
                    format!("physical network `{physnet}` has a NIC but no bridge mapping"),
                    format!("add `{physnet}: <bridge>` to bridge_mappings or remove the NIC"),
                );
            }
        }
        let mut nics = BTreeSet::new();
        for m in &mappings {
            if !nics.insert(m.nic.as_str()) {
                c.bad(&o, "nics", format!("NIC `{}` is used for two physical networks", m.nic), "give each physical network its own NIC");
            }
        }
        let dvr_mac = match (&h.dvr_mac, h.role) {
            (Some(_), Role::Controller) => {
                c.bad(&o, "dvr_mac", "a controller has no DVR MAC (it runs no OVS agent)", "remove dvr_mac");
                None
            }
            (Some(s), _) => match s.parse::<MacAddr>() {
                Ok(m) if m.is_multicast() || m == MacAddr::ZERO => {
                    c.bad(&o, "dvr_mac", format!("{m} is not a unicast address"), "use a unicast MAC such as fa:16:3f:00:00:01");
                    None
                }
                Ok(m) => {
                    if let Some(first) = dvr_macs.insert(m, i) {
                        c.bad(
                            &o,
                            "dvr_mac",
                            format!("{m} is also the DVR MAC of {}", obj("hosts", first, &spec.hosts[first].name)),
                            "DVR MACs must be unique per host; remove it to have one allocated",
                        );
                    }
                    Some(m)
                }
                Err(e) => {
                    c.bad(&o, "dvr_mac", e.to_string(), "write it like fa:16:3f:00:00:01 or remove it to have one allocated");
                    None
                }
            },
            (None, _) => None,
        };
        hosts.push(Host {
            id: HostId(h.id.unwrap_or_else(|| derive_id("host", &h.name))),
            name: h.name.clone(),
            role: h.role,
            bridge_mappings: mappings,
            dvr_mac,
            local_vlans: Vec::new(),
            fip_links: Vec::new(),
        });
    }
    hosts
}

fn check_networks(c: &mut Checker, spec: &TopologySpec, hosts: &[Host]) -> (Vec<Network>, Vec<Subnet>) {
    check_unique(c, named("networks", &spec.networks, |n| &n.name), "give every network a unique name");
    let all_subnets = spec
        .networks
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.subnets.iter().enumerate().map(move |(k, s)| (subnet_obj(spec, i, k), s.name.as_str())));
    check_unique(c, all_subnets, "give every subnet a unique name, across all networks (routers name them in `interfaces`)");
    let mapped: BTreeSet<&str> = hosts.iter().flat_map(|h| h.bridge_mappings.iter().map(|m| m.physnet.as_str())).collect();
    let mut used_vlans: BTreeMap<(String, u16), usize> = BTreeMap::new();
    let mut vlan_cursor: BTreeMap<String, u16> = BTreeMap::new();
    let mut used_vnis: BTreeMap<u32, usize> = BTreeMap::new();
    let mut flat_physnets: BTreeMap<String, usize> = BTreeMap::new();
    // Explicit segmentation ids first, so allocation never takes one given later.
    for (i, n) in spec.networks.iter().enumerate() {
        match (n.kind, n.segmentation_id, &n.physical_network) {
            (NetworkType::Vlan, Some(v), Some(p)) => {
                // Out-of-range ids are reported below; they must not claim a
                // valid id by truncation (65732 as u16 == 196).
                if let Some(vlan) = u16::try_from(v).ok().and_then(VlanId::new) {
                    used_vlans.entry((p.clone(), vlan.get())).or_insert(i);
                }
            }
            (NetworkType::Vxlan, Some(v), _) => {
                if let Some(vni) = u32::try_from(v).ok().and_then(Vni::new) {
                    used_vnis.entry(vni.get()).or_insert(i);
                }
            }
            _ => {}
        }
    }
    let mut networks = Vec::new();
    let mut subnets = Vec::new();
    for (i, n) in spec.networks.iter().enumerate() {
        let o = obj("networks", i, &n.name);
        let physnet = n.physical_network.clone().unwrap_or_default();
        if n.kind != NetworkType::Vxlan {
            if n.physical_network.is_none() {
                c.bad(
                    &o,
                    "physical_network",
                    format!("a {:?} network needs a physical network", n.kind).to_lowercase(),
                    "add `physical_network: <name>` matching a host's bridge_mappings",
                );
            } else if !mapped.contains(physnet.as_str()) {
                c.bad(
                    &o,
                    "physical_network",
                    format!("physical network `{physnet}` is in no host's bridge_mappings"),
                    format!("add `{physnet}: <bridge>` to the bridge_mappings of the hosts that carry it"),
                );
            }
        } else if n.physical_network.is_some() {
            c.bad(&o, "physical_network", "a vxlan network is an overlay and has no physical network", "remove physical_network");
        }
        let segment = match n.kind {
            NetworkType::Vlan => {
                let vlan = match n.segmentation_id {
                    Some(v) => match u16::try_from(v).ok().and_then(VlanId::new) {
                        Some(vlan) => {
                            if let Some(&first) = used_vlans.get(&(physnet.clone(), vlan.get()))
                                && first != i
                            {
                                c.bad_k(
                                    ProblemKind::VlanInUse,
                                    &o,
                                    "segmentation_id",
                                    format!(
                                        "VLAN {vlan} on `{physnet}` is also used by {}",
                                        obj("networks", first, &spec.networks[first].name)
                                    ),
                                    "give each VLAN network on a physical network its own \
                                     VLAN id, or remove segmentation_id to have one allocated",
                                );
                            }
                            vlan
                        }
                        None => {
                            c.bad(&o, "segmentation_id", format!("{v} is not a VLAN id"), "use a VLAN id in 1..=4094");
                            VlanId::new(1).expect("1 is valid")
                        }
                    },
                    None => {
                        // Ids are only ever taken, so the search resumes where the last one ended:
                        // allocation stays linear in the number of networks.
                        let cursor = vlan_cursor.entry(physnet.clone()).or_insert(1u16);
                        while *cursor <= 4094 && used_vlans.contains_key(&(physnet.clone(), *cursor)) {
                            *cursor += 1;
                        }
                        let free = (*cursor <= 4094).then_some(*cursor);
                        match free {
                            Some(v) => {
                                used_vlans.insert((physnet.clone(), v), i);
                                VlanId::new(v).expect("in range")
                            }
                            None => {
                                c.bad(
                                    &o,
                                    "segmentation_id",
                                    format!("no free VLAN id left on `{physnet}`"),
                                    "use another physical network",
                                );
                                VlanId::new(1).expect("1 is valid")
                            }
                        }
                    }
                };
                Segment::Vlan { physnet: physnet.clone(), vlan }
            }
            NetworkType::Flat => {
                if n.segmentation_id.is_some() {
                    c.bad(
                        &o,
                        "segmentation_id",
                        "a flat network is untagged and has no segmentation id",
                        "remove segmentation_id or use `type: vlan`",
                    );
                }
                if n.physical_network.is_some()
                    && let Some(first) = flat_physnets.insert(physnet.clone(), i)
                {
                    c.bad(
                        &o,
                        "physical_network",
                        format!(
                            "physical network `{physnet}` already carries flat network {}",
                            obj("networks", first, &spec.networks[first].name)
                        ),
                        "a physical network holds one flat network; use a vlan network or \
                         another physical network",
                    );
                }
                Segment::Flat { physnet: physnet.clone() }
            }
            NetworkType::Vxlan => {
                let vni = match n.segmentation_id {
                    Some(v) => match u32::try_from(v).ok().and_then(Vni::new) {
                        Some(vni) => {
                            if let Some(&first) = used_vnis.get(&vni.get())
                                && first != i
                            {
                                c.bad(
                                    &o,
                                    "segmentation_id",
                                    format!("VNI {vni} is also used by {}", obj("networks", first, &spec.networks[first].name)),
                                    "give each vxlan network its own VNI",
                                );
                            }
                            vni
                        }
                        None => {
                            c.bad(&o, "segmentation_id", format!("{v} is not a VNI"), format!("use a VNI in 1..={}", Vni::MAX));
                            Vni::new(1).expect("1 is valid")
                        }
                    },
                    None => {
                        let v = (1..=Vni::MAX).find(|v| !used_vnis.contains_key(v)).unwrap_or(1);
                        used_vnis.insert(v, i);
                        Vni::new(v).expect("in range")
                    }
                };
                Segment::Vxlan { vni }
            }
        };
        let mut subnet_ixs = Vec::new();
        for (k, s) in n.subnets.iter().enumerate() {
            let so = format!("networks[{i}] ({}).subnets[{k}] ({})", n.name, s.name);
            let cidr = match s.cidr.parse::<Ipv4Net>() {
                Ok(cidr) if cidr.trunc() != cidr => {
                    c.bad_k(
                        ProblemKind::InvalidCidr,
                        &so,
                        "cidr",
                        format!("{cidr} has host bits set"),
                        format!("write the network address: {}", cidr.trunc()),
                    );
                    cidr.trunc()
                }
                Ok(cidr) if cidr.prefix_len() > 30 => {
                    c.bad_k(
                        ProblemKind::InvalidCidr,
                        &so,
                        "cidr",
                        format!("{cidr} has no room for a gateway and ports"),
                        "use a prefix of /30 or shorter",
                    );
                    cidr
                }
                Ok(cidr) => cidr,
                Err(_) => {
                    c.bad_k(
                        ProblemKind::InvalidCidr,
                        &so,
                        "cidr",
                        format!("`{}` is not an IPv4 CIDR", s.cidr),
                        "write it like 192.168.1.0/24 (IPv6 is not supported in version 1)",
                    );
                    continue;
                }
            };
            let gateway = match s.gateway_ip {
                Some(g) if !cidr.contains(&g) || g == cidr.network() || g == cidr.broadcast() => {
                    c.bad(
                        &so,
                        "gateway_ip",
                        format!("{g} is not a host address of {cidr}"),
                        format!("use an address inside {cidr}, e.g. {}", first_host(cidr)),
                    );
                    first_host(cidr)
                }
                Some(g) => g,
                None => first_host(cidr),
            };
            for other in subnet_ixs.iter().map(|&SubnetIx(j)| &subnets[j]) {
                let other: &Subnet = other;
                if overlaps(other.cidr, cidr) {
                    c.bad(
                        &so,
                        "cidr",
                        format!("{cidr} overlaps subnet `{}` ({}) of the same network", other.name, other.cidr),
                        "use disjoint CIDRs",
                    );
                    // One overlap per subnet is enough to fix it; reporting every
                    // pair would make n² problems of n subnets.
                    break;
                }
            }
            subnet_ixs.push(SubnetIx(subnets.len()));
            subnets.push(Subnet {
                id: SubnetId(s.id.unwrap_or_else(|| derive_id("subnet", &s.name))),
                name: s.name.clone(),
                network: NetworkIx(i),
                cidr,
                gateway,
                enable_dhcp: s.enable_dhcp.unwrap_or(true),
                external_gateway_mac: None,
                allocation_pools: check_pools(c, &so, cidr, gateway, &s.allocation_pools),
                host_routes: s.host_routes.clone(),
                dns_nameservers: s.dns_nameservers.clone(),
            });
        }
        if n.subnets.is_empty() && n.external {
            c.bad(&o, "subnets", "an external network needs a subnet for gateway and floating IPs", "add a subnet");
        }
        networks.push(Network {
            id: NetworkId(n.id.unwrap_or_else(|| derive_id("network", &n.name))),
            name: n.name.clone(),
            segment,
            external: n.external,
            subnets: subnet_ixs,
        });
    }
    (networks, subnets)
}

fn first_host(cidr: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(cidr.network()) + 1)
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

#[allow(clippy::too_many_arguments)]
fn check_routers(
    c: &mut Checker,
    spec: &TopologySpec,
    networks: &[Network],
    subnets: &[Subnet],
    net_ix: &HashMap<&str, usize>,
    sub_ix: &HashMap<&str, usize>,
    network_node: Option<HostIx>,
) -> Vec<Router> {
    check_unique(c, named("routers", &spec.routers, |r| &r.name), "give every router a unique name");
    let mut owner_of_subnet: BTreeMap<usize, usize> = BTreeMap::new();
    let declared_subnets: std::collections::HashSet<&str> =
        spec.networks.iter().flat_map(|n| n.subnets.iter().map(|s| s.name.as_str())).collect();
    let mut routers = Vec::new();
    for (i, r) in spec.routers.iter().enumerate() {
        let o = obj("routers", i, &r.name);
        let distributed = r.distributed.unwrap_or(true);
        let mut interfaces: Vec<SubnetIx> = Vec::new();
        for name in &r.interfaces {
            let Some(&s) = sub_ix.get(name.as_str()) else {
                let declared = declared_subnets.contains(name.as_str());
                if declared {
                    // Its CIDR is invalid, which is reported on the subnet.
                    continue;
                }
                c.bad_k(
                    ProblemKind::DanglingReference,
                    &o,
                    "interfaces",
                    format!("no subnet is called `{name}`"),
                    "name a subnet defined under networks[].subnets",
                );
                continue;
            };
            let sub = &subnets[s];
            if networks[sub.network.0].external {
                c.bad(
                    &o,
                    "interfaces",
                    format!("`{name}` belongs to external network `{}`", networks[sub.network.0].name),
                    "attach external networks with external_gateway, not as an interface",
                );
                continue;
            }
            if owner_of_subnet.get(&s) == Some(&i) {
                c.bad(&o, "interfaces", format!("subnet `{name}` is listed twice"), "list each subnet once");
                continue;
            }
            if let Some(&other) = owner_of_subnet.get(&s) {
                c.bad_k(
                    ProblemKind::SubnetAlreadyRouted,
                    &o,
                    "interfaces",
                    format!(
                        "subnet `{name}` is already attached to {}; its gateway IP can belong \
                         to one router only",
                        obj("routers", other, &spec.routers[other].name)
                    ),
                    format!("remove `{name}` from the interfaces of one of the two routers"),
                );
            }
            for &SubnetIx(prev) in &interfaces {
                if overlaps(subnets[prev].cidr, sub.cidr) {
                    c.bad_k(
                        ProblemKind::OverlappingSubnets,
                        &o,
                        "interfaces",
                        format!("{} ({name}) overlaps {} ({}) on the same router", sub.cidr, subnets[prev].cidr, subnets[prev].name),
                        "a router cannot route between overlapping subnets; use disjoint CIDRs or two routers",
                    );
                    // One overlap per interface (not every pair: n² problems).
                    break;
                }
            }
            owner_of_subnet.insert(s, i);
            interfaces.push(SubnetIx(s));
        }
        let external_gateway = match &r.external_gateway {
            None => None,
            Some(name) => match net_ix.get(name.as_str()) {
                None => {
                    c.bad_k(
                        ProblemKind::DanglingReference,
                        &o,
                        "external_gateway",
                        format!("no network is called `{name}`"),
                        "name a network with `external: true`",
                    );
                    None
                }
                Some(&n) if !networks[n].external => {
                    c.bad(
                        &o,
                        "external_gateway",
                        format!("network `{name}` is not external"),
                        format!("set `external: true` on network `{name}` or pick an external network"),
                    );
                    None
                }
                Some(&n) => Some(NetworkIx(n)),
            },
        };
        if let Some(ext) = external_gateway {
            for &SubnetIx(s) in &interfaces {
                for &SubnetIx(e) in &networks[ext.0].subnets {
                    if overlaps(subnets[s].cidr, subnets[e].cidr) {
                        c.bad_k(
                            ProblemKind::OverlappingSubnets,
                            &o,
                            "external_gateway",
                            format!(
                                "external subnet `{}` ({}) overlaps interface subnet `{}` ({}) \
                                 of this router",
                                subnets[e].name, subnets[e].cidr, subnets[s].name, subnets[s].cidr
                            ),
                            "a router cannot route between overlapping subnets; use disjoint \
                             CIDRs for the external and the tenant subnets",
                        );
                        break;
                    }
                }
            }
        }
        if network_node.is_none() {
            let kind = if distributed {
                "a distributed router needs a network node for SNAT and DHCP"
            } else {
                "a legacy router runs on a network node"
            };
            c.bad(&o, "", format!("{kind}, but no host has `role: network`"), "add a host with `role: network` (l3 agent_mode dvr_snat)");
        }
        routers.push(Router {
            id: RouterId(r.id.unwrap_or_else(|| derive_id("router", &r.name))),
            name: r.name.clone(),
            distributed,
            interfaces,
            external_gateway,
            enable_snat: r.enable_snat.unwrap_or(true),
            snat_host: network_node,
            hosts: Vec::new(),
        });
    }
    routers
}

fn check_dhcp_host(c: &mut Checker, spec: &TopologySpec, network_node: Option<HostIx>) {
    if network_node.is_some() {
        return;
    }
    for (i, n) in spec.networks.iter().enumerate() {
        for (k, s) in n.subnets.iter().enumerate() {
            if n.external || !s.enable_dhcp.unwrap_or(true) {
                continue;
            }
            c.bad(
                subnet_obj(spec, i, k),
                "enable_dhcp",
                "DHCP is enabled but no host has `role: network` to run the DHCP agent",
                "add a network node or set `enable_dhcp: false`",
            );
        }
    }
}

/// Every host that gets a port on a vlan/flat network must map its physical
/// network, or the port would be planned without a way to the wire. The
/// instances' own networks are checked with the instances; this covers what
/// the file does not place explicitly: DHCP, router (qr-, sg-, qg-) ports on
/// the network node, and the copies of distributed routers (qr-, fg-) that
/// Neutron's DVR scheduler puts on every compute host with a port behind them.
#[allow(clippy::too_many_arguments)]
fn check_host_mappings(
    c: &mut Checker,
    spec: &TopologySpec,
    hosts: &[Host],
    networks: &[Network],
    subnets: &[Subnet],
    routers: &[Router],
    instances: &[Option<InstanceDraft>],
    network_node: Option<HostIx>,
) {
    // (host, physnet) -> why the host needs it; the first reason is reported.
    let mut need: BTreeMap<(usize, String), String> = BTreeMap::new();
    let mut require = |h: usize, n: NetworkIx, why: String| {
        if let Some(p) = networks[n.0].segment.physnet()
            && !p.is_empty()
        {
            need.entry((h, p.to_string())).or_insert(why);
        }
    };
    if let Some(HostIx(nn)) = network_node {
        for (n, net) in networks.iter().enumerate() {
            if !net.external && net.subnets.iter().any(|s| subnets[s.0].enable_dhcp) {
                require(nn, NetworkIx(n), format!("the DHCP port of network `{}`", net.name));
            }
        }
        for r in routers {
            for s in &r.interfaces {
                let sub = &subnets[s.0];
                require(nn, sub.network, format!("router `{}`, whose interface on subnet `{}` it hosts", r.name, sub.name));
            }
            if let Some(e) = r.external_gateway {
                require(nn, e, format!("the gateway (qg-) port of router `{}` on external network `{}`", r.name, networks[e.0].name));
            }
        }
    }
    let by_subnet = distributed_routers_by_subnet(routers, subnets.len());
    for (i, d) in instances.iter().enumerate() {
        let Some(d) = d else { continue };
        let x = &spec.instances[i].name;
        for r in by_subnet[d.subnet.0].iter().map(|&r| &routers[r]) {
            for s in &r.interfaces {
                let sub = &subnets[s.0];
                if sub.network != d.network {
                    require(
                        d.host.0,
                        sub.network,
                        format!(
                            "its copy of distributed router `{}` (instance `{x}` is behind it), \
                             which has an interface on subnet `{}`",
                            r.name, sub.name
                        ),
                    );
                }
            }
            if let Some(e) = r.external_gateway {
                require(
                    d.host.0,
                    e,
                    format!(
                        "the floating IP (fg-) port of its copy of distributed router `{}` \
                         (instance `{x}` is behind it) on external network `{}`",
                        r.name, networks[e.0].name
                    ),
                );
            }
        }
    }
    for ((h, p), why) in need {
        if hosts[h].mapping(&p).is_some() {
            continue;
        }
        // A physical network mapped nowhere is reported once, on its network.
        let Some(example) = hosts.iter().find_map(|o| o.mapping(&p)) else {
            continue;
        };
        c.bad(
            obj("hosts", h, &hosts[h].name),
            "bridge_mappings",
            format!("physical network `{p}` is not mapped, but this host needs it for {why}"),
            format!("add `{p}: <bridge>` to the bridge_mappings of `{}` (other hosts use `{p}: {}`)", hosts[h].name, example.bridge),
        );
    }
}

/// An instance after validation, before allocation.
struct InstanceDraft {
    host: HostIx,
    network: NetworkIx,
    subnet: SubnetIx,
    ip: Option<Ipv4Addr>,
    mac: Option<MacAddr>,
}

#[allow(clippy::too_many_arguments)]
fn check_instances(
    c: &mut Checker,
    spec: &TopologySpec,
    hosts: &[Host],
    networks: &[Network],
    subnets: &[Subnet],
    host_ix: &HashMap<&str, usize>,
    net_ix: &HashMap<&str, usize>,
) -> Vec<Option<InstanceDraft>> {
    let names = named("instances", &spec.instances, |x| &x.name).chain(named("external_hosts", &spec.external_hosts, |x| &x.name));
    check_unique(
        c,
        names,
        "instances and external hosts share one namespace (they are the endpoints of \
         `dvr trace --from NAME`); rename one of them",
    );
    let mut macs: BTreeMap<MacAddr, usize> = BTreeMap::new();
    let mut dvr_macs: BTreeMap<MacAddr, usize> = BTreeMap::new();
    for (j, h) in hosts.iter().enumerate() {
        if let Some(m) = h.dvr_mac {
            dvr_macs.entry(m).or_insert(j);
        }
    }
    let mut out = Vec::new();
    for (i, x) in spec.instances.iter().enumerate() {
        let o = obj("instances", i, &x.name);
        let host = match host_ix.get(x.host.as_str()) {
            None => {
                c.bad_k(
                    ProblemKind::DanglingReference,
                    &o,
                    "host",
                    format!("no host is called `{}`", x.host),
                    "name a host from the hosts list",
                );
                None
            }
            Some(&h) if hosts[h].role != Role::Compute => {
                c.bad(
                    &o,
                    "host",
                    format!("host `{}` has role {}; instances run on compute hosts", x.host, role_name(hosts[h].role)),
                    "place the instance on a host with `role: compute`",
                );
                None
            }
            Some(&h) => Some(h),
        };
        let network = match net_ix.get(x.network.as_str()) {
            None => {
                c.bad_k(
                    ProblemKind::DanglingReference,
                    &o,
                    "network",
                    format!("no network is called `{}`", x.network),
                    "name a network from the networks list",
                );
                None
            }
            Some(&n) if networks[n].external => {
                c.bad(
                    &o,
                    "network",
                    format!("`{}` is an external network", x.network),
                    "attach instances to tenant networks; reach them from outside with a floating IP",
                );
                None
            }
            Some(&n) if networks[n].subnets.is_empty() => {
                // Subnets with an invalid CIDR are reported on the subnet.
                if spec.networks[n].subnets.is_empty() {
                    c.bad(&o, "network", format!("network `{}` has no subnet", x.network), "add a subnet to the network");
                }
                None
            }
            Some(&n) => Some(n),
        };
        if let (Some(h), Some(n)) = (host, network)
            && let Some(p) = networks[n].segment.physnet()
            // A missing physical network is reported on the network.
            && !p.is_empty()
            && hosts[h].mapping(p).is_none()
        {
            c.bad(
                &o,
                "host",
                format!("host `{}` has no bridge mapping for physical network `{p}` of network `{}`", x.host, x.network),
                format!("add `{p}: <bridge>` to the bridge_mappings of `{}`", x.host),
            );
        }
        let mut subnet = None;
        if let Some(n) = network {
            subnet = match x.ip {
                None => Some(networks[n].subnets[0]),
                Some(ip) => {
                    let found = networks[n].subnets.iter().copied().find(|s| subnets[s.0].cidr.contains(&ip));
                    match found {
                        None => {
                            let cidrs: Vec<String> = networks[n].subnets.iter().map(|s| subnets[s.0].cidr.to_string()).collect();
                            c.bad_k(
                                ProblemKind::AddressOutsideSubnet,
                                &o,
                                "ip",
                                format!("{ip} is outside the subnets of network `{}` ({})", x.network, cidrs.join(", ")),
                                "use an address inside the network's subnet or remove `ip` to have one allocated",
                            );
                            None
                        }
                        Some(s) => {
                            let sub = &subnets[s.0];
                            if ip == sub.cidr.network() || ip == sub.cidr.broadcast() {
                                c.bad(&o, "ip", format!("{ip} is the network or broadcast address of {}", sub.cidr), "use a host address");
                            } else if ip == sub.gateway {
                                c.bad(
                                    &o,
                                    "ip",
                                    format!("{ip} is the gateway of subnet `{}`", sub.name),
                                    "use another address; the gateway belongs to the router",
                                );
                            }
                            Some(s)
                        }
                    }
                }
            };
        }
        if let Some(m) = x.mac {
            if m.is_multicast() || m == MacAddr::ZERO {
                c.bad(&o, "mac", format!("{m} is not a unicast address"), "use a unicast MAC such as fa:16:3e:00:01:09");
            } else if m.has_prefix(DVR_MAC_PREFIX) {
                c.bad(&o, "mac", format!("{m} is in the DVR base MAC range fa:16:3f"), "use a port MAC (fa:16:3e:…) or remove `mac`");
            } else if let Some(first) = macs.insert(m, i) {
                c.bad_k(
                    ProblemKind::MacInUse,
                    &o,
                    "mac",
                    format!("{m} is also the MAC of {}", obj("instances", first, &spec.instances[first].name)),
                    "MACs must be unique; remove `mac` to have one allocated",
                );
            } else if let Some(&j) = dvr_macs.get(&m) {
                c.bad_k(
                    ProblemKind::MacInUse,
                    &o,
                    "mac",
                    format!("{m} is the DVR MAC of {}", obj("hosts", j, &hosts[j].name)),
                    "use another MAC or remove `mac` to have one allocated",
                );
            }
        }
        out.push(match (host, network, subnet) {
            (Some(h), Some(n), Some(s)) => Some(InstanceDraft { host: HostIx(h), network: NetworkIx(n), subnet: s, ip: x.ip, mac: x.mac }),
            _ => None,
        });
    }
    out
}

/// How a floating IP is called in messages: its address, else its instance.
fn fip_label(f: &FloatingIpSpec) -> String {
    f.ip.map(|ip| ip.to_string()).or_else(|| f.instance.clone()).unwrap_or_default()
}

/// A floating IP after validation, before allocation.
struct FipDraft {
    ip: Option<Ipv4Addr>,
    network: NetworkIx,
    association: Option<(InstanceIx, RouterIx)>,
}

#[allow(clippy::too_many_arguments)]
fn check_floating_ips(
    c: &mut Checker,
    spec: &TopologySpec,
    networks: &[Network],
    subnets: &[Subnet],
    routers: &[Router],
    instances: &[Option<InstanceDraft>],
    net_ix: &HashMap<&str, usize>,
) -> Vec<Option<FipDraft>> {
    let mut by_instance: BTreeMap<usize, usize> = BTreeMap::new();
    let instance_ix = first_index(spec.instances.iter().map(|x| x.name.as_str()));
    let externals: Vec<usize> = (0..networks.len()).filter(|&n| networks[n].external).collect();
    let mut out = Vec::new();
    for (i, f) in spec.floating_ips.iter().enumerate() {
        let o = obj("floating_ips", i, &fip_label(f));
        let mut network = None;
        if let Some(name) = &f.network {
            match net_ix.get(name.as_str()) {
                Some(&n) if networks[n].external => network = Some(n),
                Some(_) => c.bad(
                    &o,
                    "network",
                    format!("`{name}` is not an external network"),
                    "floating IPs come from a network with `external: true`",
                ),
                None => c.bad_k(
                    ProblemKind::DanglingReference,
                    &o,
                    "network",
                    format!("no network is called `{name}`"),
                    "name an external network",
                ),
            }
        }
        let mut association = None;
        let mut ok = true;
        if let Some(name) = &f.instance {
            match instance_ix.get(name.as_str()).copied() {
                None => {
                    c.bad_k(
                        ProblemKind::DanglingReference,
                        &o,
                        "instance",
                        format!("no instance is called `{name}`"),
                        "name an instance from the instances list",
                    );
                    ok = false;
                }
                Some(x) => {
                    if let Some(first) = by_instance.insert(x, i) {
                        c.bad(
                            &o,
                            "instance",
                            format!("instance `{name}` already has {}", obj("floating_ips", first, &fip_label(&spec.floating_ips[first]))),
                            "associate one floating IP per instance",
                        );
                    }
                    if let Some(d) = &instances[x] {
                        let ext_subnets = |r: usize| -> Vec<&Subnet> {
                            routers[r]
                                .external_gateway
                                .map(|e| networks[e.0].subnets.iter().map(|s| &subnets[s.0]))
                                .into_iter()
                                .flatten()
                                .collect()
                        };
                        // Routers that take this instance's subnet to an external
                        // network (the one named by `network`, if given)...
                        let connected: Vec<usize> = (0..routers.len())
                            .filter(|&r| {
                                routers[r].interfaces.contains(&d.subnet)
                                    && routers[r].external_gateway.is_some_and(|e| network.is_none_or(|n| e == NetworkIx(n)))
                            })
                            .collect();
                        // ...and of those, the ones whose external subnets hold `ip`.
                        let serving: Vec<usize> = connected
                            .iter()
                            .copied()
                            .filter(|&r| f.ip.is_none_or(|ip| ext_subnets(r).iter().any(|s| s.cidr.contains(&ip))))
                            .collect();
                        let sub = &subnets[d.subnet.0];
                        match (connected.first(), serving.first()) {
                            (None, _) => {
                                let onto = network
                                    .map(|n| format!("external network `{}`", networks[n].name))
                                    .unwrap_or_else(|| "an external network".to_string());
                                c.bad_k(
                                    ProblemKind::NoRouterToExternal,
                                    &o,
                                    "instance",
                                    format!(
                                        "no router connects subnet `{}` of instance `{name}` to \
                                         {onto}, so the floating IP could not reach it",
                                        sub.name
                                    ),
                                    format!(
                                        "add `{}` to the interfaces of a router whose \
                                         external_gateway is set{}",
                                        sub.name,
                                        network.map(|n| format!(" to `{}`", networks[n].name)).unwrap_or_default()
                                    ),
                                );
                                ok = false;
                            }
                            (Some(&r), None) => {
                                let cidrs: Vec<String> = ext_subnets(r).iter().map(|s| s.cidr.to_string()).collect();
                                let ext = routers[r].external_gateway.expect("connected");
                                c.bad_k(
                                    ProblemKind::AddressOutsideSubnet,
                                    &o,
                                    "ip",
                                    format!(
                                        "{} is outside the subnets of external network `{}` \
                                         ({}), where router `{}` takes instance `{name}`",
                                        f.ip.expect("serving is filtered by ip only"),
                                        networks[ext.0].name,
                                        cidrs.join(", "),
                                        routers[r].name
                                    ),
                                    format!(
                                        "use an address inside {} or remove `ip` to have one \
                                         allocated",
                                        cidrs.join(", ")
                                    ),
                                );
                                ok = false;
                            }
                            (_, Some(&r)) => {
                                network = routers[r].external_gateway.map(|n| n.0);
                                association = Some((InstanceIx(x), RouterIx(r)));
                            }
                        }
                    } else {
                        ok = false;
                    }
                }
            }
        }
        if network.is_none()
            && let Some(ip) = f.ip
        {
            network = externals.iter().copied().find(|&n| networks[n].subnets.iter().any(|s| subnets[s.0].cidr.contains(&ip)));
        }
        if network.is_none() && externals.len() == 1 && f.ip.is_none() {
            network = Some(externals[0]);
        }
        let Some(n) = network else {
            if ok {
                let cidrs: Vec<String> =
                    externals.iter().flat_map(|&n| networks[n].subnets.iter()).map(|s| subnets[s.0].cidr.to_string()).collect();
                match f.ip {
                    Some(ip) if !externals.is_empty() => c.bad(
                        &o,
                        "ip",
                        format!("{ip} is outside every external subnet ({})", cidrs.join(", ")),
                        "use an address of an external subnet or remove `ip` to have one allocated",
                    ),
                    _ if externals.is_empty() => c.bad(
                        &o,
                        "",
                        "there is no external network to take the floating IP from",
                        "add a network with `external: true` and a subnet",
                    ),
                    _ => c.bad(
                        &o,
                        "network",
                        "cannot tell which external network this floating IP belongs to",
                        "give an `ip` inside an external subnet, an associated `instance`, \
                         or `network`",
                    ),
                }
            }
            out.push(None);
            continue;
        };
        if let Some(ip) = f.ip {
            let inside = networks[n].subnets.iter().map(|s| &subnets[s.0]).find(|s| s.cidr.contains(&ip));
            match inside {
                None => c.bad_k(
                    ProblemKind::AddressOutsideSubnet,
                    &o,
                    "ip",
                    format!("{ip} is outside the subnets of external network `{}`", networks[n].name),
                    "use an address of the external subnet or remove `ip` to have one allocated",
                ),
                Some(s) if ip == s.gateway || ip == s.cidr.network() || ip == s.cidr.broadcast() => {
                    c.bad(&o, "ip", format!("{ip} is the gateway, network or broadcast address of {}", s.cidr), "use a free host address")
                }
                Some(_) => {}
            }
        }
        out.push(ok.then_some(FipDraft { ip: f.ip, network: NetworkIx(n), association }));
    }
    out
}

fn check_external_hosts(
    c: &mut Checker,
    spec: &TopologySpec,
    networks: &[Network],
    subnets: &[Subnet],
    net_ix: &HashMap<&str, usize>,
) -> Vec<Option<(NetworkIx, Option<Ipv4Addr>)>> {
    let mut out = Vec::new();
    for (i, e) in spec.external_hosts.iter().enumerate() {
        let o = obj("external_hosts", i, &e.name);
        let n = match net_ix.get(e.network.as_str()) {
            None => {
                c.bad_k(
                    ProblemKind::DanglingReference,
                    &o,
                    "network",
                    format!("no network is called `{}`", e.network),
                    "name an external network",
                );
                out.push(None);
                continue;
            }
            Some(&n) if !networks[n].external => {
                c.bad(
                    &o,
                    "network",
                    format!("`{}` is not an external network", e.network),
                    format!("set `external: true` on `{}` or use an external network", e.network),
                );
                out.push(None);
                continue;
            }
            Some(&n) => n,
        };
        if let Some(ip) = e.ip {
            match networks[n].subnets.iter().map(|s| &subnets[s.0]).find(|s| s.cidr.contains(&ip)) {
                None => {
                    let cidrs: Vec<String> = networks[n].subnets.iter().map(|s| subnets[s.0].cidr.to_string()).collect();
                    c.bad_k(
                        ProblemKind::AddressOutsideSubnet,
                        &o,
                        "ip",
                        format!("{ip} is outside the subnets of external network `{}` ({})", e.network, cidrs.join(", ")),
                        format!("use an address inside {} or remove `ip` to have one allocated", cidrs.join(", ")),
                    )
                }
                Some(s) if ip == s.gateway || ip == s.cidr.network() || ip == s.cidr.broadcast() => {
                    c.bad(&o, "ip", format!("{ip} is the gateway, network or broadcast address of {}", s.cidr), "use a free host address")
                }
                Some(_) => {}
            }
        }
        out.push(Some((NetworkIx(n), e.ip)));
    }
    out
}

/// Everything allocation needs, so the steps stay small.
struct Alloc {
    pools: Vec<IpPool>,
    macs: MacAllocator,
    /// Allocation key (`dhcp:net`, `qr:router:subnet`, `vm:name`…) → what is
    /// already fixed for that port (pinned implicit ports, explicit ids).
    pins: HashMap<String, Pin>,
}

/// What is already decided about one port before allocation.
#[derive(Debug, Clone, Copy, Default)]
struct Pin {
    id: Option<uuid::Uuid>,
    ip: Option<Ipv4Addr>,
    mac: Option<MacAddr>,
}

/// A checked entry of the spec's `ports:` list.
struct PortDraft {
    network: NetworkIx,
    subnet: SubnetIx,
    ip: Option<Ipv4Addr>,
    mac: Option<MacAddr>,
    id: Option<uuid::Uuid>,
    /// `Some(key)` for a live pin of an implicit port; `None` for an unbound port.
    pin_key: Option<String>,
    /// Whether the pinned implicit port will exist (its router, interface,
    /// gateway or host is still there); a dead pin reserves nothing.
    live: bool,
}

/// The allocation key of the implicit port a `ports:` entry pins, and whether
/// that port still exists in this spec.
fn pin_key(spec: &TopologySpec, p: &PortSpec, owner: &str, subnet_name: &str, network_node: Option<HostIx>) -> Option<(String, bool)> {
    let router = p.router.as_deref().unwrap_or("");
    let r = spec.routers.iter().find(|r| r.name == router);
    let has_if = r.is_some_and(|r| r.interfaces.iter().any(|s| s == subnet_name));
    let net = spec.networks.iter().find(|n| n.name == p.network);
    Some(match owner {
        "network:dhcp" => (
            format!("dhcp:{}", p.network),
            network_node.is_some() && net.is_some_and(|n| !n.external && n.subnets.iter().any(|s| s.enable_dhcp.unwrap_or(true))),
        ),
        "network:router_interface_distributed" | "network:router_interface" => (format!("qr:{router}:{subnet_name}"), has_if),
        "network:router_centralized_snat" => (
            format!("sg:{router}:{subnet_name}"),
            has_if && r.is_some_and(|r| r.external_gateway.is_some() && r.distributed.unwrap_or(true)),
        ),
        "network:router_gateway" => (format!("qg:{router}"), r.is_some_and(|r| r.external_gateway.as_deref() == Some(p.network.as_str()))),
        "network:floatingip_agent_gateway" => {
            let host = p.host.as_deref().unwrap_or("");
            (
                format!("fg:{}:{host}", p.network),
                net.is_some_and(|n| n.external) && spec.hosts.iter().any(|h| h.name == host && h.role != Role::Controller),
            )
        }
        _ => return None,
    })
}

fn check_ports(
    c: &mut Checker,
    spec: &TopologySpec,
    networks: &[Network],
    subnets: &[Subnet],
    net_ix: &HashMap<&str, usize>,
    network_node: Option<HostIx>,
) -> Vec<Option<PortDraft>> {
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for (i, p) in spec.ports.iter().enumerate() {
        let label = p.name.clone().or_else(|| p.id.map(|u| u.to_string())).unwrap_or_default();
        let o = obj("ports", i, &label);
        let Some(&n) = net_ix.get(p.network.as_str()) else {
            c.bad_k(
                ProblemKind::DanglingReference,
                &o,
                "network",
                format!("no network is called `{}`", p.network),
                "name a network from the networks list",
            );
            out.push(None);
            continue;
        };
        if networks[n].subnets.is_empty() {
            c.bad(&o, "network", format!("network `{}` has no subnet", p.network), "add a subnet to the network");
            out.push(None);
            continue;
        }
        let subnet = match p.ip {
            None => networks[n].subnets[0],
            Some(ip) => match networks[n].subnets.iter().copied().find(|s| subnets[s.0].cidr.contains(&ip)) {
                Some(s) => {
                    let sub = &subnets[s.0];
                    if ip == sub.cidr.network() || ip == sub.cidr.broadcast() {
                        c.bad_k(
                            ProblemKind::AddressOutsideSubnet,
                            &o,
                            "ip",
                            format!("{ip} is the network or broadcast address of {}", sub.cidr),
                            "use a host address",
                        );
                    }
                    s
                }
                None => {
                    let cidrs: Vec<String> = networks[n].subnets.iter().map(|s| subnets[s.0].cidr.to_string()).collect();
                    c.bad_k(
                        ProblemKind::AddressOutsideSubnet,
                        &o,
                        "ip",
                        format!("{ip} is outside the subnets of network `{}` ({})", p.network, cidrs.join(", ")),
                        "use an address inside the network's subnet or remove `ip` to have one allocated",
                    );
                    out.push(None);
                    continue;
                }
            },
        };
        if let Some(m) = p.mac {
            if m.is_multicast() || m == MacAddr::ZERO {
                c.bad(&o, "mac", format!("{m} is not a unicast address"), "use a unicast MAC such as fa:16:3e:00:01:09");
            } else if m.has_prefix(DVR_MAC_PREFIX) {
                c.bad(&o, "mac", format!("{m} is in the DVR base MAC range fa:16:3f"), "use a port MAC (fa:16:3e:…) or remove `mac`");
            }
        }
        let owner = p.device_owner.as_deref().unwrap_or("");
        let (pin_key, live) = match pin_key(spec, p, owner, &subnets[subnet.0].name, network_node) {
            Some((k, live)) => (Some(k), live),
            None => {
                match &p.name {
                    Some(name) if p.id.is_none() => {
                        if let Some(first) = names.insert(name, i) {
                            c.bad_k(
                                ProblemKind::DuplicateName,
                                &o,
                                "name",
                                format!("{} is also called `{name}`", obj("ports", first, name)),
                                "give every port without an id its own name, or give it an `id`",
                            );
                        }
                    }
                    None if p.id.is_none() => {
                        c.bad(&o, "", "an unbound port needs a `name` or an `id`", "add `name:` (its id is derived from it) or `id:`")
                    }
                    _ => {}
                }
                (None, true)
            }
        };
        out.push(Some(PortDraft { network: NetworkIx(n), subnet, ip: p.ip, mac: p.mac, id: p.id, pin_key, live }));
    }
    out
}

/// Allocation pools must be inside the subnet's host range, ordered, disjoint
/// and must not contain the gateway (Neutron's rules).
fn check_pools(c: &mut Checker, so: &str, cidr: Ipv4Net, gateway: Ipv4Addr, pools: &[AllocationPool]) -> Vec<AllocationPool> {
    let first = u32::from(cidr.network()) + 1;
    let last = u32::from(cidr.broadcast()).saturating_sub(1);
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for p in pools {
        let (s, e) = (u32::from(p.start), u32::from(p.end));
        if s > e || s < first || e > last {
            c.bad_k(
                ProblemKind::AddressOutsideSubnet,
                so,
                "allocation_pools",
                format!("pool {}-{} is not an ordered range of host addresses of {cidr}", p.start, p.end),
                format!("use start <= end between {} and {}", Ipv4Addr::from(first), Ipv4Addr::from(last)),
            );
            continue;
        }
        if (s..=e).contains(&u32::from(gateway)) {
            c.bad(
                so,
                "allocation_pools",
                format!("pool {}-{} contains the gateway {gateway}", p.start, p.end),
                "leave the gateway address out of every allocation pool",
            );
        }
        if ranges.iter().any(|&(a, b)| s <= b && a <= e) {
            c.bad(so, "allocation_pools", format!("pool {}-{} overlaps another pool", p.start, p.end), "use disjoint pools");
        }
        ranges.push((s, e));
    }
    pools.to_vec()
}

impl Alloc {
    fn take_ip(&mut self, c: &mut Checker, topo: &Topology, s: SubnetIx, who: &str) -> Ipv4Addr {
        self.pools[s.0].allocate().unwrap_or_else(|| {
            let sub = &topo.subnets[s.0];
            let n = sub.network.0;
            let k = topo.networks[n].subnets.iter().position(|&x| x == s).unwrap_or(0);
            let prefix = sub.cidr.prefix_len();
            let size = (1u64 << (32 - u32::from(prefix))).saturating_sub(2);
            c.bad_k(
                ProblemKind::PoolExhausted,
                format!("networks[{n}] ({}).subnets[{k}] ({})", topo.networks[n].name, sub.name),
                "cidr",
                format!("no free address left in {} ({size} host addresses) for {who}", sub.cidr),
                format!(
                    "use a larger subnet (e.g. a /{} instead of /{prefix}) or fewer ports; the \
                     gateway, the DHCP port, router ports (sg-, qg-, fg-) and floating IPs take \
                     addresses too",
                    prefix.saturating_sub(1)
                ),
            );
            Ipv4Addr::UNSPECIFIED
        })
    }

    /// The address a pinned implicit port already has.
    fn pinned_ip(&self, key: &str) -> Option<Ipv4Addr> {
        self.pins.get(key).and_then(|p| p.ip)
    }

    fn take_mac(&mut self, c: &mut Checker, prefix: [u8; 3], key: &str, who: &str) -> MacAddr {
        self.macs.allocate(prefix, key).unwrap_or_else(|| {
            c.bad(who.to_string(), "mac", "no free MAC address left", "remove explicit MACs");
            MacAddr::ZERO
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn allocate(
    c: &mut Checker,
    topo: &mut Topology,
    spec: &TopologySpec,
    instances: &[Option<InstanceDraft>],
    fips: &[Option<FipDraft>],
    ext_hosts: &[Option<(NetworkIx, Option<Ipv4Addr>)>],
    ports: &[Option<PortDraft>],
    network_node: Option<HostIx>,
) {
    let mut a = Alloc {
        pools: topo.subnets.iter().map(|s| IpPool::with_pools(s.cidr, &s.allocation_pools)).collect(),
        macs: MacAllocator::default(),
        pins: HashMap::new(),
    };
    for p in ports.iter().flatten() {
        if let (Some(key), true) = (&p.pin_key, p.live) {
            a.pins.insert(key.clone(), Pin { id: p.id, ip: p.ip, mac: p.mac });
        }
    }
    for x in spec.instances.iter().filter(|x| x.id.is_some()) {
        a.pins.insert(format!("vm:{}", x.name), Pin { id: x.id, ..Pin::default() });
    }
    // 1. Explicit addresses and MACs are reserved first; a clash is an error naming both.
    let mut owner: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    let mut claim = |c: &mut Checker, a: &mut Alloc, s: SubnetIx, ip: Ipv4Addr, who: String, field: &str| {
        if !a.pools[s.0].reserve(ip) {
            let first = owner.get(&ip).cloned().unwrap_or_default();
            c.bad_k(
                ProblemKind::IpInUse,
                &who,
                field,
                format!("{ip} is already used by {first}"),
                "give every port its own address or remove `ip` to have one allocated",
            );
        } else {
            owner.insert(ip, who);
        }
    };
    for (i, s) in topo.subnets.iter().enumerate() {
        claim(c, &mut a, SubnetIx(i), s.gateway, format!("the gateway of subnet `{}`", s.name), "gateway_ip");
    }
    // Pinned implicit ports keep what they have: claimed before anything new.
    for (i, p) in ports.iter().enumerate() {
        if let Some(PortDraft { pin_key: Some(_), live: true, ip: Some(ip), subnet, .. }) = p
            && *ip != topo.subnets[subnet.0].gateway
        {
            let label = spec.ports[i].name.clone().or_else(|| spec.ports[i].id.map(|u| u.to_string())).unwrap_or_default();
            claim(c, &mut a, *subnet, *ip, obj("ports", i, &label), "ip");
        }
    }
    for (i, d) in instances.iter().enumerate() {
        if let Some(InstanceDraft { subnet, ip: Some(ip), .. }) = d {
            claim(c, &mut a, *subnet, *ip, obj("instances", i, &spec.instances[i].name), "ip");
        }
        if let Some(InstanceDraft { mac: Some(m), .. }) = d {
            a.macs.reserve(*m);
        }
    }
    let mut gateway_holders: BTreeSet<SubnetIx> = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let Some(p) = p else { continue };
        let label = spec.ports[i].name.clone().or_else(|| spec.ports[i].id.map(|u| u.to_string())).unwrap_or_default();
        match (&p.pin_key, p.ip) {
            // An unbound port on the gateway address is a router interface in
            // the making (Neutron's add_router_interface by port): allowed
            // once per subnet, while no router holds that gateway.
            (None, Some(ip)) if ip == topo.subnets[p.subnet.0].gateway => {
                let routed = topo.routers.iter().any(|r| r.interfaces.contains(&p.subnet));
                if routed || !gateway_holders.insert(p.subnet) {
                    c.bad_k(
                        ProblemKind::IpInUse,
                        obj("ports", i, &label),
                        "ip",
                        format!(
                            "{ip} is the gateway of subnet `{}` and already taken by a router interface or another port",
                            topo.subnets[p.subnet.0].name
                        ),
                        "use another address or remove `ip` to have one allocated",
                    );
                }
            }
            (None, Some(ip)) => claim(c, &mut a, p.subnet, ip, obj("ports", i, &label), "ip"),
            _ => {}
        }
        if let (true, Some(m)) = (p.live, p.mac)
            && !a.macs.reserve(m)
        {
            c.bad_k(
                ProblemKind::MacInUse,
                obj("ports", i, &label),
                "mac",
                format!("{m} is already the MAC of another port"),
                "MACs must be unique; remove `mac` to have one allocated",
            );
        }
    }
    let subnet_of = |topo: &Topology, n: NetworkIx, ip: Ipv4Addr| {
        topo.networks[n.0].subnets.iter().copied().find(|s| topo.subnets[s.0].cidr.contains(&ip))
    };
    for (i, f) in fips.iter().enumerate() {
        if let Some(FipDraft { ip: Some(ip), network, .. }) = f
            && let Some(s) = subnet_of(topo, *network, *ip)
        {
            claim(c, &mut a, s, *ip, obj("floating_ips", i, &ip.to_string()), "ip");
        }
    }
    for (i, e) in ext_hosts.iter().enumerate() {
        if let Some((n, Some(ip))) = e
            && let Some(s) = subnet_of(topo, *n, *ip)
        {
            claim(c, &mut a, s, *ip, obj("external_hosts", i, &spec.external_hosts[i].name), "ip");
        }
    }
    for h in &topo.hosts {
        if let Some(m) = h.dvr_mac {
            a.macs.reserve(m);
        }
    }
    // 2. DVR MACs of the dataplane hosts.
    for (i, h) in topo.hosts.iter_mut().enumerate().filter(|(_, h)| h.role != Role::Controller && h.dvr_mac.is_none()) {
        h.dvr_mac = Some(a.take_mac(c, DVR_MAC_PREFIX, &format!("dvr:{}", h.name), &obj("hosts", i, &h.name)));
    }
    // 3. DHCP ports, one per network with a DHCP subnet, on the network node.
    if let Some(nn) = network_node {
        for n in 0..topo.networks.len() {
            let Some(s) = topo.networks[n].subnets.iter().copied().find(|s| topo.subnets[s.0].enable_dhcp) else {
                continue;
            };
            if topo.networks[n].external {
                continue;
            }
            let key = format!("dhcp:{}", topo.networks[n].name);
            let ip = a.pinned_ip(&key).unwrap_or_else(|| a.take_ip(c, topo, s, "the DHCP port"));
            push_port(c, &mut a, topo, &key, PortOwner::Dhcp, s, ip, Some(nn));
        }
    }
    // 4. Router ports: qr- on the gateway IP, sg- and qg- on fresh addresses.
    for r in 0..topo.routers.len() {
        let router = topo.routers[r].clone();
        for &s in &router.interfaces {
            let key = format!("qr:{}:{}", router.name, topo.subnets[s.0].name);
            let owner = if router.distributed {
                PortOwner::RouterInterfaceDistributed { router: RouterIx(r) }
            } else {
                PortOwner::RouterInterface { router: RouterIx(r) }
            };
            let host = if router.distributed { None } else { router.snat_host };
            let gw = topo.subnets[s.0].gateway;
            push_port(c, &mut a, topo, &key, owner, s, gw, host);
        }
        let Some(ext) = router.external_gateway else {
            continue;
        };
        if router.distributed {
            for &s in &router.interfaces {
                let key = format!("sg:{}:{}", router.name, topo.subnets[s.0].name);
                let ip = a.pinned_ip(&key).unwrap_or_else(|| a.take_ip(c, topo, s, "the router's SNAT (sg-) port"));
                push_port(c, &mut a, topo, &key, PortOwner::CentralizedSnat { router: RouterIx(r) }, s, ip, router.snat_host);
            }
        }
        let es = topo.networks[ext.0].subnets[0];
        let ip = a.pinned_ip(&format!("qg:{}", router.name)).unwrap_or_else(|| a.take_ip(c, topo, es, "the router gateway (qg-) port"));
        push_port(
            c,
            &mut a,
            topo,
            &format!("qg:{}", router.name),
            PortOwner::RouterGateway { router: RouterIx(r) },
            es,
            ip,
            router.snat_host,
        );
    }
    // 5. Instance ports.
    for (i, d) in instances.iter().enumerate() {
        let Some(d) = d else { continue };
        let name = &spec.instances[i].name;
        let ip = d.ip.unwrap_or_else(|| a.take_ip(c, topo, d.subnet, &format!("instance `{name}`")));
        let port = PortIx(topo.ports.len());
        let key = format!("vm:{name}");
        match d.mac {
            Some(mac) => topo.ports.push(Port {
                id: PortId(a.pins.get(&key).and_then(|p| p.id).unwrap_or_else(|| derive_id("port", &key))),
                owner: PortOwner::Compute { instance: InstanceIx(i) },
                network: d.network,
                subnet: d.subnet,
                ip,
                mac,
                host: Some(d.host),
            }),
            None => push_port(c, &mut a, topo, &key, PortOwner::Compute { instance: InstanceIx(i) }, d.subnet, ip, Some(d.host)),
        }
        topo.instances.push(Instance { name: name.clone(), host: d.host, network: d.network, port });
    }
    // 5b. Unbound ports: an address and a MAC, nothing planned.
    for (i, p) in ports.iter().enumerate() {
        let Some(p) = p else { continue };
        if p.pin_key.is_some() {
            continue;
        }
        let ps = &spec.ports[i];
        let name = ps.name.clone().unwrap_or_default();
        let id = PortId(p.id.unwrap_or_else(|| derive_id("port", &format!("port:{name}"))));
        let ip = p.ip.unwrap_or_else(|| a.take_ip(c, topo, p.subnet, &format!("port `{name}`")));
        let mac = p.mac.unwrap_or_else(|| a.take_mac(c, PORT_MAC_PREFIX, &id.hyphenated(), &obj("ports", i, &name)));
        topo.unbound_ports.push(UnboundPort {
            id,
            name,
            device_owner: ps.device_owner.clone().unwrap_or_default(),
            network: p.network,
            subnet: p.subnet,
            ip,
            mac,
        });
    }
    // 6. Which hosts carry each router: the SNAT host plus every host with a
    //    DVR-serviced port on one of its subnets (Neutron's DVR scheduler).
    //    One pass over the ports through a subnet → routers index (not a pass
    //    per router: routers × ports is quadratic in the deployment's size).
    let mut router_hosts: Vec<BTreeSet<HostIx>> = topo.routers.iter().map(|r| r.snat_host.into_iter().collect()).collect();
    let by_subnet = distributed_routers_by_subnet(&topo.routers, topo.subnets.len());
    for p in topo.ports.iter().filter(|p| p.owner.is_dvr_serviced()) {
        for &r in &by_subnet[p.subnet.0] {
            router_hosts[r].extend(p.host);
        }
    }
    for (router, hosts) in topo.routers.iter_mut().zip(router_hosts) {
        router.hosts = hosts.into_iter().collect();
    }
    // 7. fip-agent gateway (fg-) ports: one per (external network, host with a
    //    copy of a router whose gateway is on that network).
    for n in 0..topo.networks.len() {
        if !topo.networks[n].external {
            continue;
        }
        let hosts: BTreeSet<HostIx> = topo
            .routers
            .iter()
            .filter(|r| r.distributed && r.external_gateway == Some(NetworkIx(n)))
            .flat_map(|r| r.hosts.iter().copied())
            .collect();
        for h in hosts {
            let key = format!("fg:{}:{}", topo.networks[n].name, topo.hosts[h.0].name);
            let s = topo.networks[n].subnets[0];
            let ip = a
                .pinned_ip(&key)
                .unwrap_or_else(|| a.take_ip(c, topo, s, &format!("the fip-agent gateway (fg-) port of host `{}`", topo.hosts[h.0].name)));
            push_port(c, &mut a, topo, &key, PortOwner::FloatingIpAgentGateway, s, ip, Some(h));
        }
    }
    // 8. Floating IPs and their per-host rule priorities.
    let mut next_prio: BTreeMap<HostIx, u32> = BTreeMap::new();
    for (i, f) in fips.iter().enumerate() {
        let Some(f) = f else { continue };
        let s = f.ip.and_then(|ip| subnet_of(topo, f.network, ip)).unwrap_or(topo.networks[f.network.0].subnets[0]);
        let ip = f.ip.unwrap_or_else(|| a.take_ip(c, topo, s, &format!("floating_ips[{i}]")));
        let rule_priority = f.association.map(|(x, _)| {
            let p = next_prio.entry(topo.instances[x.0].host).or_insert(32768);
            *p += 1;
            *p - 1
        });
        topo.floating_ips.push(FloatingIp {
            id: FloatingIpId(spec.floating_ips[i].id.unwrap_or_else(|| derive_id("floatingip", &ip.to_string()))),
            ip,
            network: f.network,
            subnet: s,
            association: f.association,
            rule_priority,
        });
    }
    // 9. External hosts and the upstream gateway of each external subnet.
    for (i, e) in ext_hosts.iter().enumerate() {
        let Some((n, ip)) = e else { continue };
        let name = &spec.external_hosts[i].name;
        let s = ip.and_then(|ip| subnet_of(topo, *n, ip)).unwrap_or(topo.networks[n.0].subnets[0]);
        let ip = ip.unwrap_or_else(|| a.take_ip(c, topo, s, &format!("external host `{name}`")));
        let mac = a.take_mac(c, EXTERNAL_MAC_PREFIX, &format!("ext:{name}"), &obj("external_hosts", i, name));
        topo.external_hosts.push(ExternalHost { name: name.clone(), network: *n, subnet: s, ip, mac });
    }
    for s in 0..topo.subnets.len() {
        if topo.networks[topo.subnets[s].network.0].external {
            let key = format!("extgw:{}", topo.subnets[s].name);
            topo.subnets[s].external_gateway_mac = Some(a.take_mac(c, EXTERNAL_MAC_PREFIX, &key, &key));
        }
    }
    // 10. Per-host local VLANs and rfp/fpr link-local pairs.
    topo.reindex();
    for h in 0..topo.hosts.len() {
        allocate_host(c, topo, HostIx(h));
    }
}

#[allow(clippy::too_many_arguments)]
fn push_port(
    c: &mut Checker,
    a: &mut Alloc,
    topo: &mut Topology,
    key: &str,
    owner: PortOwner,
    subnet: SubnetIx,
    ip: Ipv4Addr,
    host: Option<HostIx>,
) {
    let pin = a.pins.get(key).copied().unwrap_or_default();
    let id = PortId(pin.id.unwrap_or_else(|| derive_id("port", key)));
    let mac = pin.mac.unwrap_or_else(|| a.take_mac(c, PORT_MAC_PREFIX, &id.hyphenated(), key));
    let network = topo.subnets[subnet.0].network;
    topo.ports.push(Port { id, owner, network, subnet, ip, mac, host });
}

/// Networks present on a host (those of its bound ports and of the routers it
/// carries), in network order: the order local VLANs are handed out in.
pub fn networks_on_host(topo: &Topology, h: HostIx) -> Vec<NetworkIx> {
    let mut nets: Vec<NetworkIx> = topo.host_ports(h).map(|p| p.network).collect();
    for r in topo.index.host_routers.get(h.0).into_iter().flatten() {
        nets.extend(topo.routers[r.0].interfaces.iter().map(|s| topo.subnets[s.0].network));
    }
    nets.sort();
    nets.dedup();
    nets
}

fn allocate_host(c: &mut Checker, topo: &mut Topology, h: HostIx) {
    if !topo.hosts[h.0].has_dataplane() {
        return;
    }
    let mut vlans = LocalVlanAllocator::default();
    let mut local = Vec::new();
    for n in networks_on_host(topo, h) {
        match vlans.allocate() {
            Some(v) => local.push((n, v)),
            None => {
                c.bad(
                    obj("hosts", h.0, &topo.hosts[h.0].name),
                    "",
                    "more than 4094 networks on one host: no free local VLAN",
                    "spread the instances over more hosts",
                );
                break;
            }
        }
    }
    let mut ll = LinkLocalAllocator::default();
    let mut links = Vec::new();
    for &RouterIx(r) in topo.index.host_routers.get(h.0).into_iter().flatten() {
        let router = &topo.routers[r];
        if router.distributed && router.external_gateway.is_some() {
            match ll.allocate(&router.id.hyphenated()) {
                Some(pair) => links.push(FipLink { router: RouterIx(r), pair }),
                None => c.bad(
                    obj("hosts", h.0, &topo.hosts[h.0].name),
                    "",
                    "more than 8192 routers with a gateway on one host: no free link-local pair",
                    "spread the routers over more hosts",
                ),
            }
        }
    }
    topo.hosts[h.0].local_vlans = local;
    topo.hosts[h.0].fip_links = links;
}
