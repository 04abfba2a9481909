//! Security groups: what the topology file says about them ([`SecurityGroupSpec`],
//! [`RuleSpec`], the per-instance keys in [`crate::spec::InstanceSpec`]) and
//! the validated result ([`Security`]).
//!
//! Neutron's rules are kept, because the plan must match what its
//! `openvswitch` firewall driver builds from the same API objects:
//! - a file that declares no group runs the `noop` driver (no firewall, the
//!   plan is what it was before security groups existed);
//! - once any group is declared, every host runs the `openvswitch` driver and
//!   every project that has an instance gets a `default` group (created with
//!   Neutron's rules when the file does not declare it), which instances
//!   without an explicit `security_groups` list are members of;
//! - a group whose `rules` key is absent gets the rules Neutron creates with
//!   a group (IPv4 part: egress anywhere; for `default` also ingress from
//!   members of the same group); `rules: []` means no rule at all.
//!
//! Only IPv4 is modelled: IPv6 rules are rejected with a message, the
//! IPv6 halves of Neutron's creation-time rules are left out.

use crate::alloc::derive_id;
use crate::error::{Problem, ProblemKind};
use crate::types::{InstanceIx, MacAddr};
use ipnet::Ipv4Net;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;

/// The project of objects that do not name one.
pub const DEFAULT_PROJECT: &str = "default";
/// The name of the group Neutron creates in every project.
pub const DEFAULT_GROUP: &str = "default";

// ---------------------------------------------------------------------------
// The file
// ---------------------------------------------------------------------------

/// One security group as the file writes it (`security_groups:` list).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroupSpec {
    /// Explicit UUID; derived from project and name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<uuid::Uuid>,
    /// Name, unique within its project (instances and rules refer to it).
    pub name: String,
    /// Owning project; [`DEFAULT_PROJECT`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Free text, as Neutron's `description`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The rules. Absent: the rules Neutron creates with a group; `[]`: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<RuleSpec>>,
}

/// One rule of a group, with Neutron's field names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Explicit UUID; derived from the group and the rule's position when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<uuid::Uuid>,
    /// Which traffic of the member port the rule admits.
    pub direction: Direction,
    /// Only `IPv4` is modelled; absent means `IPv4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ethertype: Option<Ethertype>,
    /// `tcp`, `udp`, `icmp`, `any`, another IANA name, or a number 0..=255; absent = any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<ProtocolSpec>,
    /// First destination port (tcp/udp/sctp…), or the ICMP type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_range_min: Option<u16>,
    /// Last destination port, or the ICMP code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_range_max: Option<u16>,
    /// Peer prefix (source for ingress, destination for egress), as text so
    /// that a bad one is reported on the rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_ip_prefix: Option<String>,
    /// Peer group by name (same project): the addresses of its member ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_group: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// One entry of an instance's `allowed_address_pairs`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AddressPairSpec {
    /// An IPv4 address or prefix the port may also send from (a VIP).
    pub ip_address: String,
    /// The MAC it may use with it; the port's own MAC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<MacAddr>,
}

/// Direction of a rule, seen from the member port (Neutron's `direction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Traffic arriving at the port.
    Ingress,
    /// Traffic the port sends.
    Egress,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        })
    }
}

/// Neutron's `ethertype`. IPv6 parses, so that it gets a clear message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum Ethertype {
    /// IPv4.
    IPv4,
    /// IPv6 (rejected by validation: not modelled).
    IPv6,
}

/// A rule's protocol as written: a known name or an IP protocol number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolSpec {
    /// `any`: every protocol (Neutron also accepts no protocol at all).
    Any,
    /// An IP protocol number (names are turned into numbers on parsing).
    Number(u8),
}

/// Neutron's `IP_PROTOCOL_MAP` (neutron-lib), in the order its API errors
/// list the names; the flag marks the names only IPv6 rules mean (a
/// topology file, IPv4 only, does not take them; the API accepts them all).
pub const NEUTRON_PROTOCOLS: [(&str, u8, bool); 24] = [
    ("ah", 51, false),
    ("dccp", 33, false),
    ("egp", 8, false),
    ("esp", 50, false),
    ("gre", 47, false),
    ("hopopt", 0, true),
    ("icmp", 1, false),
    ("igmp", 2, false),
    ("ipip", 4, false),
    ("ipv6-encap", 41, true),
    ("ipv6-frag", 44, true),
    ("ipv6-icmp", 58, true),
    ("icmpv6", 58, true),
    ("ipv6-nonxt", 59, true),
    ("ipv6-opts", 60, true),
    ("ipv6-route", 43, true),
    ("ospf", 89, false),
    ("pgm", 113, false),
    ("rsvp", 46, false),
    ("sctp", 132, false),
    ("tcp", 6, false),
    ("udp", 17, false),
    ("udplite", 136, false),
    ("vrrp", 112, false),
];

/// The IPv4 protocol names (and numbers) a topology file accepts: Neutron's
/// map without the IPv6-only names.
pub fn protocol_names() -> impl Iterator<Item = (&'static str, u8)> {
    NEUTRON_PROTOCOLS.iter().filter(|(_, _, v6)| !v6).map(|&(name, n, _)| (name, n))
}

impl std::str::FromStr for ProtocolSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let l = s.to_ascii_lowercase();
        if l == "any" {
            return Ok(ProtocolSpec::Any);
        }
        if let Ok(n) = l.parse::<u8>() {
            return Ok(ProtocolSpec::Number(n));
        }
        if let Some((_, n)) = protocol_names().find(|(name, _)| *name == l) {
            return Ok(ProtocolSpec::Number(n));
        }
        Err(format!(
            "`{s}` is not a protocol; use tcp, udp, icmp, any, a number 0..=255 or one of: {}",
            protocol_names().map(|(n, _)| n).collect::<Vec<_>>().join(", ")
        ))
    }
}

impl fmt::Display for ProtocolSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolSpec::Any => f.write_str("any"),
            ProtocolSpec::Number(n) => match protocol_names().find(|(_, k)| k == n) {
                Some((name, _)) => f.write_str(name),
                None => write!(f, "{n}"),
            },
        }
    }
}

impl Serialize for ProtocolSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ProtocolSpec::Number(n) if !protocol_names().any(|(_, k)| k == *n) => s.serialize_u8(*n),
            _ => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for ProtocolSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => u8::try_from(n)
                .map(ProtocolSpec::Number)
                .map_err(|_| serde::de::Error::custom(format!("protocol number {n} is not in 0..=255"))),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

// ---------------------------------------------------------------------------
// The validated model
// ---------------------------------------------------------------------------

/// Which firewall driver every host's OVS agent runs (`[securitygroup] firewall_driver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FirewallDriver {
    /// No filtering: the file declares no security group.
    #[default]
    Noop,
    /// Neutron's stateful OVS firewall (conntrack, tables 71–94).
    Openvswitch,
}

impl FirewallDriver {
    /// Neutron's `[securitygroup] firewall_driver` value.
    pub fn name(self) -> &'static str {
        match self {
            FirewallDriver::Noop => "noop",
            FirewallDriver::Openvswitch => "openvswitch",
        }
    }
}

/// Neutron security group UUID.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Debug)]
#[serde(transparent)]
pub struct SecurityGroupId(pub uuid::Uuid);

/// Neutron security group rule UUID.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Debug)]
#[serde(transparent)]
pub struct SecurityGroupRuleId(pub uuid::Uuid);

impl fmt::Display for SecurityGroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Display for SecurityGroupRuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

/// Index into [`Security::groups`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize)]
#[serde(transparent)]
pub struct SecurityGroupIx(pub usize);

/// An inclusive range of destination ports, `1 <= min <= max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct PortRange {
    /// First port.
    pub min: u16,
    /// Last port.
    pub max: u16,
}

/// ICMP type and optional code of an ICMP rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct IcmpFilter {
    /// ICMP type.
    pub icmp_type: u8,
    /// ICMP code; any when absent.
    pub icmp_code: Option<u8>,
}

/// What a rule matches above IP: typed, so the planner cannot mistake an
/// ICMP type for a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "protocol", rename_all = "lowercase")]
pub enum RuleProtocol {
    /// Every IP protocol.
    Any,
    /// TCP, optionally to a port range.
    Tcp {
        /// Destination ports; all when absent.
        ports: Option<PortRange>,
    },
    /// UDP, optionally to a port range.
    Udp {
        /// Destination ports; all when absent.
        ports: Option<PortRange>,
    },
    /// SCTP, optionally to a port range.
    Sctp {
        /// Destination ports; all when absent.
        ports: Option<PortRange>,
    },
    /// ICMP, optionally one type (and code).
    Icmp {
        /// Type and code; all when absent.
        filter: Option<IcmpFilter>,
    },
    /// Another IP protocol, by number.
    Other {
        /// IP protocol number.
        number: u8,
    },
}

impl RuleProtocol {
    /// The IP protocol number; `None` for any.
    pub fn number(&self) -> Option<u8> {
        match self {
            RuleProtocol::Any => None,
            RuleProtocol::Tcp { .. } => Some(6),
            RuleProtocol::Udp { .. } => Some(17),
            RuleProtocol::Sctp { .. } => Some(132),
            RuleProtocol::Icmp { .. } => Some(1),
            RuleProtocol::Other { number } => Some(*number),
        }
    }

    /// The destination port range of tcp/udp/sctp rules that have one.
    pub fn ports(&self) -> Option<PortRange> {
        match self {
            RuleProtocol::Tcp { ports } | RuleProtocol::Udp { ports } | RuleProtocol::Sctp { ports } => *ports,
            _ => None,
        }
    }
}

impl fmt::Display for RuleProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let range = |f: &mut fmt::Formatter<'_>, name: &str, p: &Option<PortRange>| match p {
            None => f.write_str(name),
            Some(r) if r.min == r.max => write!(f, "{name} {}", r.min),
            Some(r) => write!(f, "{name} {}-{}", r.min, r.max),
        };
        match self {
            RuleProtocol::Any => f.write_str("any"),
            RuleProtocol::Tcp { ports } => range(f, "tcp", ports),
            RuleProtocol::Udp { ports } => range(f, "udp", ports),
            RuleProtocol::Sctp { ports } => range(f, "sctp", ports),
            RuleProtocol::Icmp { filter: None } => f.write_str("icmp"),
            RuleProtocol::Icmp { filter: Some(IcmpFilter { icmp_type, icmp_code: None }) } => write!(f, "icmp type {icmp_type}"),
            RuleProtocol::Icmp { filter: Some(IcmpFilter { icmp_type, icmp_code: Some(c) }) } => {
                write!(f, "icmp type {icmp_type} code {c}")
            }
            RuleProtocol::Other { number } => write!(f, "ip proto {number}"),
        }
    }
}

/// The peer a rule admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Remote {
    /// Any address.
    Any,
    /// Addresses in a prefix (host bits cleared, as Neutron's `normalized_cidr`).
    Prefix(Ipv4Net),
    /// Addresses of the member ports of a group (conjunctive flows in the plan).
    Group(SecurityGroupIx),
}

/// One validated rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecurityGroupRule {
    /// Rule UUID.
    pub id: SecurityGroupRuleId,
    /// Direction.
    pub direction: Direction,
    /// Protocol and ports / ICMP type.
    pub protocol: RuleProtocol,
    /// Peer.
    pub remote: Remote,
    /// Description, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// One validated group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecurityGroup {
    /// Group UUID.
    pub id: SecurityGroupId,
    /// Name (unique in its project).
    pub name: String,
    /// Project.
    pub project: String,
    /// Description.
    pub description: String,
    /// Rules in file (or creation) order.
    pub rules: Vec<SecurityGroupRule>,
    /// Whether the group was created implicitly (a project's `default` the file does not declare).
    pub implicit: bool,
}

/// An allowed address pair: the port may also send from `ip` with `mac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct AddressPair {
    /// Address or prefix.
    pub ip: Ipv4Net,
    /// MAC (the port's own when the file gives none).
    pub mac: MacAddr,
}

/// Security settings of one instance port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortSecurity {
    /// The instance.
    pub instance: InstanceIx,
    /// Project of the port.
    pub project: String,
    /// Neutron's `port_security_enabled`.
    pub port_security_enabled: bool,
    /// Member of these groups (empty when port security is off).
    pub groups: Vec<SecurityGroupIx>,
    /// Extra (IP, MAC) pairs the port may send from.
    pub allowed_address_pairs: Vec<AddressPair>,
}

/// Everything about security groups in a deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Security {
    /// Which firewall every host runs.
    pub driver: FirewallDriver,
    /// Declared groups in file order, then the implicit `default` groups.
    pub groups: Vec<SecurityGroup>,
    /// One entry per instance, in instance order (empty with the noop driver).
    pub ports: Vec<PortSecurity>,
}

impl Security {
    /// Whether nothing is configured (noop driver): topology JSON leaves it out.
    pub fn is_noop(&self) -> bool {
        self.driver == FirewallDriver::Noop && self.groups.is_empty() && self.ports.is_empty()
    }

    /// A group by index.
    pub fn group(&self, ix: SecurityGroupIx) -> &SecurityGroup {
        &self.groups[ix.0]
    }

    /// The security settings of an instance's port (`None` with the noop driver).
    pub fn port(&self, instance: InstanceIx) -> Option<&PortSecurity> {
        self.ports.get(instance.0).filter(|p| p.instance == instance)
    }

    /// Instances that are members of a group, in instance order.
    pub fn members(&self, group: SecurityGroupIx) -> impl Iterator<Item = InstanceIx> + '_ {
        self.ports.iter().filter(move |p| p.groups.contains(&group)).map(|p| p.instance)
    }

    /// A group by project and name.
    pub fn find(&self, project: &str, name: &str) -> Option<SecurityGroupIx> {
        self.groups.iter().position(|g| g.project == project && g.name == name).map(SecurityGroupIx)
    }
}

/// A rule in one line, as traces and summaries show it:
/// `ingress IPv4 tcp 22 from 0.0.0.0/0`, `ingress IPv4 any from group default`.
pub fn rule_text(topo: &crate::Topology, r: &SecurityGroupRule) -> String {
    let peer = match r.remote {
        Remote::Any => "0.0.0.0/0".to_string(),
        Remote::Prefix(n) => n.to_string(),
        Remote::Group(g) => format!("group {}", topo.security.group(g).name),
    };
    let dir = match r.direction {
        Direction::Ingress => "from",
        Direction::Egress => "to",
    };
    format!("{} IPv4 {} {dir} {peer}", r.direction, r.protocol)
}

/// The rules Neutron creates with a group (IPv4 half, creation order): egress
/// anywhere; for the `default` group, then ingress from its own members.
pub fn creation_rules(is_default: bool, group: SecurityGroupIx) -> Vec<(Direction, RuleProtocol, Remote)> {
    let mut v = vec![(Direction::Egress, RuleProtocol::Any, Remote::Any)];
    if is_default {
        v.push((Direction::Ingress, RuleProtocol::Any, Remote::Group(group)));
    }
    v
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

/// Problems found while validating the security part of a file.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn bad(&mut self, object: &str, field: &str, what: impl Into<String>, fix: impl Into<String>) {
        self.bad_k(ProblemKind::Other, object, field, what, fix);
    }
    fn bad_k(&mut self, kind: ProblemKind, object: &str, field: &str, what: impl Into<String>, fix: impl Into<String>) {
        self.0.push(Problem { kind, object: object.to_string(), field: field.to_string(), what: what.into(), fix: fix.into() });
    }
}

fn group_obj(i: usize, name: &str) -> String {
    format!("security_groups[{i}] ({name})")
}

/// IP protocols whose rules may carry a destination port range (Neutron's
/// `SG_PORT_PROTO_NAMES`: tcp, udp, dccp, sctp, udplite).
pub const PORT_PROTOCOLS: [u8; 5] = [6, 17, 33, 132, 136];

/// Validate `security_groups:` and the instances' security keys. Returns the
/// model part and the problems (empty when valid). Instance `i` of the result
/// is `spec.instances[i]`, which is what the builder makes `InstanceIx(i)`.
pub fn check(spec: &crate::spec::TopologySpec) -> (Security, Vec<Problem>) {
    let mut p = Problems::default();
    let enabled = !spec.security_groups.is_empty();
    if !enabled {
        for (i, x) in spec.instances.iter().enumerate() {
            let o = format!("instances[{i}] ({})", x.name);
            let keys = [
                ("security_groups", x.security_groups.is_some()),
                ("port_security_enabled", x.port_security_enabled.is_some()),
                ("allowed_address_pairs", !x.allowed_address_pairs.is_empty()),
            ];
            for (key, set) in keys {
                if set {
                    p.bad(
                        &o,
                        key,
                        "security settings need the openvswitch firewall driver, which runs only when the file declares a security group",
                        format!("declare the groups under `security_groups:` (at least `- name: {DEFAULT_GROUP}`), or remove `{key}`"),
                    );
                }
            }
        }
        return (Security::default(), p.0);
    }

    // Groups: names, projects, ids.
    let mut groups: Vec<SecurityGroup> = Vec::new();
    let mut by_name: HashMap<(String, String), usize> = HashMap::new();
    let mut ids: HashMap<uuid::Uuid, usize> = HashMap::new();
    for (i, g) in spec.security_groups.iter().enumerate() {
        let o = group_obj(i, &g.name);
        let project = g.project.clone().unwrap_or_else(|| DEFAULT_PROJECT.to_string());
        if g.name.is_empty() {
            p.bad(&o, "name", "is empty", "give the group a name; instances and rules refer to groups by name");
        }
        if project.is_empty() {
            p.bad(&o, "project", "is empty", format!("name a project or remove `project` (default: {DEFAULT_PROJECT})"));
        }
        if let Some(&first) = by_name.get(&(project.clone(), g.name.clone())) {
            p.bad_k(
                ProblemKind::DuplicateName,
                &o,
                "name",
                format!("project `{project}` already has a group `{}` ({})", g.name, group_obj(first, &spec.security_groups[first].name)),
                "group names must be unique within a project (instances and rules refer to them by name); rename one",
            );
        } else {
            by_name.insert((project.clone(), g.name.clone()), i);
        }
        let id = g.id.unwrap_or_else(|| derive_id("security_group", &format!("{project}/{}", g.name)));
        if let Some(&first) = ids.get(&id) {
            p.bad(
                &o,
                "id",
                format!("{id} is also the id of {}", group_obj(first, &spec.security_groups[first].name)),
                "ids must be unique; remove `id` to have one derived",
            );
        } else {
            ids.insert(id, i);
        }
        groups.push(SecurityGroup {
            id: SecurityGroupId(id),
            name: g.name.clone(),
            project,
            description: g.description.clone().unwrap_or_default(),
            rules: Vec::new(),
            implicit: false,
        });
    }

    // Every project with an instance or a group gets its `default` group.
    let mut projects: Vec<String> = groups.iter().map(|g| g.project.clone()).collect();
    projects.extend(spec.instances.iter().map(|x| x.project.clone().unwrap_or_else(|| DEFAULT_PROJECT.to_string())));
    let mut seen = std::collections::HashSet::new();
    for project in projects {
        if !seen.insert(project.clone()) || by_name.contains_key(&(project.clone(), DEFAULT_GROUP.to_string())) {
            continue;
        }
        let ix = groups.len();
        by_name.insert((project.clone(), DEFAULT_GROUP.to_string()), ix);
        groups.push(SecurityGroup {
            id: SecurityGroupId(derive_id("security_group", &format!("{project}/{DEFAULT_GROUP}"))),
            name: DEFAULT_GROUP.to_string(),
            description: "Default security group".to_string(),
            project,
            rules: Vec::new(),
            implicit: true,
        });
    }
    let lookup = |project: &str, name: &str| by_name.get(&(project.to_string(), name.to_string())).copied().map(SecurityGroupIx);

    // Rules.
    let mut rule_ids: HashMap<uuid::Uuid, String> = HashMap::new();
    for (gi, group) in groups.iter_mut().enumerate() {
        let ix = SecurityGroupIx(gi);
        let rules_spec = if group.implicit { None } else { spec.security_groups[gi].rules.as_ref() };
        let mut rules = Vec::new();
        match rules_spec {
            None => {
                for (k, (direction, protocol, remote)) in creation_rules(group.name == DEFAULT_GROUP, ix).into_iter().enumerate() {
                    let id = derive_id("security_group_rule", &format!("{}/{k}", group.id));
                    rules.push(SecurityGroupRule { id: SecurityGroupRuleId(id), direction, protocol, remote, description: None });
                }
            }
            Some(list) => {
                for (k, r) in list.iter().enumerate() {
                    let o = format!("{}.rules[{k}]", group_obj(gi, &group.name));
                    let Some(rule) = check_rule(&mut p, &o, r, &group.project, &lookup) else { continue };
                    let id = r.id.unwrap_or_else(|| derive_id("security_group_rule", &format!("{}/{k}", group.id)));
                    if let Some(prev) = rule_ids.get(&id) {
                        p.bad(&o, "id", format!("{id} is also the id of {prev}"), "ids must be unique; remove `id` to have one derived");
                    } else {
                        rule_ids.insert(id, o.clone());
                    }
                    if let Some(same) = rules.iter().position(|x: &SecurityGroupRule| {
                        (x.direction, x.protocol, x.remote) == (rule.direction, rule.protocol, rule.remote)
                    }) {
                        p.bad_k(
                            ProblemKind::DuplicateName,
                            &o,
                            "",
                            format!("the same rule as rules[{same}] of this group (Neutron refuses it: SecurityGroupRuleExists)"),
                            "remove one of the two rules",
                        );
                        continue;
                    }
                    rules.push(SecurityGroupRule { id: SecurityGroupRuleId(id), description: r.description.clone(), ..rule });
                }
            }
        }
        group.rules = rules;
    }

    // Instance ports.
    let mut ports = Vec::new();
    for (i, x) in spec.instances.iter().enumerate() {
        let o = format!("instances[{i}] ({})", x.name);
        let project = x.project.clone().unwrap_or_else(|| DEFAULT_PROJECT.to_string());
        let enabled = x.port_security_enabled.unwrap_or(true);
        let mut member = Vec::new();
        match &x.security_groups {
            None if enabled => member.extend(lookup(&project, DEFAULT_GROUP)),
            None => {}
            Some(list) => {
                if !enabled && !list.is_empty() {
                    p.bad(
                        &o,
                        "security_groups",
                        "a port with `port_security_enabled: false` cannot be in security groups (Neutron: PortSecurityAndIPRequiredForSecurityGroups)",
                        "set `security_groups: []` or remove `port_security_enabled: false`",
                    );
                }
                for name in list {
                    match lookup(&project, name) {
                        Some(g) if member.contains(&g) => {
                            p.bad(&o, "security_groups", format!("group `{name}` is listed twice"), "list each group once")
                        }
                        Some(g) => member.push(g),
                        None => p.bad_k(
                            ProblemKind::DanglingReference,
                            &o,
                            "security_groups",
                            format!("project `{project}` has no security group `{name}`"),
                            format!(
                                "declare it under `security_groups:` with `project: {project}` or name one of: {}",
                                names_in(&groups, &project)
                            ),
                        ),
                    }
                }
            }
        }
        if !enabled {
            member.clear();
        }
        let mut pairs = Vec::new();
        for (k, ap) in x.allowed_address_pairs.iter().enumerate() {
            let field = format!("allowed_address_pairs[{k}].ip_address");
            if !enabled {
                p.bad(
                    &o,
                    "allowed_address_pairs",
                    "allowed address pairs need port security (Neutron: AddressPairAndPortSecurityRequired)",
                    "remove `port_security_enabled: false` or the address pairs",
                );
                break;
            }
            let net = match parse_prefix(&ap.ip_address) {
                Ok(n) => n,
                Err(e) => {
                    p.bad(&o, &field, e, "write an IPv4 address (10.0.0.5) or prefix (10.0.0.0/24)");
                    continue;
                }
            };
            if let Some(m) = ap.mac_address
                && (m.is_multicast() || m == MacAddr::ZERO)
            {
                p.bad(
                    &o,
                    &format!("allowed_address_pairs[{k}].mac_address"),
                    format!("{m} is not a unicast address"),
                    "use a unicast MAC or remove `mac_address` to use the port's own",
                );
            }
            // The port MAC is filled in by the builder once it is allocated.
            pairs.push(AddressPair { ip: net, mac: ap.mac_address.unwrap_or(MacAddr::ZERO) });
        }
        ports.push(PortSecurity {
            instance: InstanceIx(i),
            project,
            port_security_enabled: enabled,
            groups: member,
            allowed_address_pairs: pairs,
        });
    }
    (Security { driver: FirewallDriver::Openvswitch, groups, ports }, p.0)
}

fn names_in(groups: &[SecurityGroup], project: &str) -> String {
    let v: Vec<&str> = groups.iter().filter(|g| g.project == project).map(|g| g.name.as_str()).collect();
    v.join(", ")
}

/// An IPv4 address (as a /32) or prefix, host bits cleared.
fn parse_prefix(s: &str) -> Result<Ipv4Net, String> {
    if let Ok(ip) = s.parse::<Ipv4Addr>() {
        return Ok(Ipv4Net::from(ip));
    }
    match s.parse::<Ipv4Net>() {
        Ok(n) => Ok(n.trunc()),
        Err(_) if s.contains(':') => Err(format!("`{s}` is IPv6; only IPv4 is modelled")),
        Err(_) => Err(format!("`{s}` is not an IPv4 address or prefix")),
    }
}

/// Validate one rule; `None` (with problems recorded) when it is unusable.
fn check_rule(
    p: &mut Problems,
    o: &str,
    r: &RuleSpec,
    project: &str,
    lookup: &dyn Fn(&str, &str) -> Option<SecurityGroupIx>,
) -> Option<SecurityGroupRule> {
    let before = p.0.len();
    if r.ethertype == Some(Ethertype::IPv6) {
        p.bad(o, "ethertype", "IPv6 rules are not modelled (the deployment is IPv4 only)", "use `ethertype: IPv4` or remove the rule");
    }
    let remote = match (&r.remote_ip_prefix, &r.remote_group) {
        (Some(_), Some(_)) => {
            p.bad(
                o,
                "remote_group",
                "a rule has either `remote_ip_prefix` or `remote_group`, not both (Neutron: SecurityGroupRemoteGroupAndRemoteIpPrefix)",
                "keep one of the two keys; write two rules to admit both",
            );
            Remote::Any
        }
        (Some(prefix), None) => match parse_prefix(prefix) {
            Ok(n) if n.prefix_len() == 0 => Remote::Any,
            Ok(n) => Remote::Prefix(n),
            Err(e) => {
                p.bad(o, "remote_ip_prefix", e, "write an IPv4 prefix such as 0.0.0.0/0 or 203.0.113.0/24");
                Remote::Any
            }
        },
        (None, Some(name)) => match lookup(project, name) {
            Some(g) => Remote::Group(g),
            None => {
                p.bad_k(
                    ProblemKind::DanglingReference,
                    o,
                    "remote_group",
                    format!("project `{project}` has no security group `{name}`"),
                    "name a group of the same project (declared under `security_groups:`, or `default`)",
                );
                Remote::Any
            }
        },
        (None, None) => Remote::Any,
    };
    let number = match r.protocol {
        None | Some(ProtocolSpec::Any) => None,
        Some(ProtocolSpec::Number(0)) => None,
        Some(ProtocolSpec::Number(n)) => Some(n),
    };
    let (min, max) = (r.port_range_min, r.port_range_max);
    let protocol = match number {
        None => {
            if min.is_some() || max.is_some() {
                p.bad(
                    o,
                    "port_range_min",
                    "a port range needs a protocol (Neutron: SecurityGroupProtocolRequiredWithPorts)",
                    "add `protocol: tcp` (or udp, sctp…) or remove the port range",
                );
            }
            RuleProtocol::Any
        }
        Some(1) => {
            let filter = match (min, max) {
                (None, None) => None,
                (None, Some(_)) => {
                    p.bad(
                        o,
                        "port_range_max",
                        "an ICMP code needs an ICMP type (port_range_min)",
                        "set `port_range_min` to the ICMP type, or remove `port_range_max`",
                    );
                    None
                }
                (Some(t), c) => {
                    let mut byte = |field: &str, v: u16| {
                        u8::try_from(v).ok().or_else(|| {
                            p.bad(o, field, format!("{v} is not an ICMP type/code (0..=255)"), "use a value in 0..=255");
                            None
                        })
                    };
                    let t = byte("port_range_min", t);
                    let c = c.and_then(|c| byte("port_range_max", c));
                    t.map(|icmp_type| IcmpFilter { icmp_type, icmp_code: c })
                }
            };
            RuleProtocol::Icmp { filter }
        }
        Some(n) if PORT_PROTOCOLS.contains(&n) => {
            let ports = match (min, max) {
                (None, None) => None,
                (Some(a), b) => {
                    let b = b.unwrap_or(a);
                    if a == 0 {
                        p.bad(o, "port_range_min", "port 0 is not a port", "use ports in 1..=65535");
                    }
                    if a > b {
                        p.bad(
                            o,
                            "port_range_min",
                            format!("the range {a}-{b} is empty (port_range_min > port_range_max)"),
                            "swap the two values",
                        );
                    }
                    Some(PortRange { min: a, max: b })
                }
                (None, Some(_)) => {
                    p.bad(o, "port_range_max", "a range needs its first port too", "set `port_range_min`");
                    None
                }
            };
            match n {
                6 => RuleProtocol::Tcp { ports },
                17 => RuleProtocol::Udp { ports },
                132 => RuleProtocol::Sctp { ports },
                _ if ports.is_some() => {
                    p.bad(
                        o,
                        "port_range_min",
                        format!("port ranges of protocol {n} are not modelled"),
                        "use tcp, udp or sctp for port ranges, or remove the range",
                    );
                    RuleProtocol::Other { number: n }
                }
                _ => RuleProtocol::Other { number: n },
            }
        }
        Some(n) => {
            if min.is_some() || max.is_some() {
                p.bad(
                    o,
                    "port_range_min",
                    format!("protocol {n} has no ports (Neutron: SecurityGroupInvalidProtocolForPort)"),
                    "remove the port range, or use tcp, udp or sctp",
                );
            }
            RuleProtocol::Other { number: n }
        }
    };
    (p.0.len() == before).then_some(SecurityGroupRule {
        id: SecurityGroupRuleId(uuid::Uuid::nil()),
        direction: r.direction,
        protocol,
        remote,
        description: None,
    })
}

/// Fill in the MACs of address pairs that did not give one: the builder calls
/// it once instance ports have their MACs.
pub fn fill_pair_macs(security: &mut Security, port_mac: impl Fn(InstanceIx) -> MacAddr) {
    for ps in &mut security.ports {
        let mac = port_mac(ps.instance);
        for pair in &mut ps.allowed_address_pairs {
            if pair.mac == MacAddr::ZERO {
                pair.mac = mac;
            }
        }
    }
}
