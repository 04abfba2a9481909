//! The desired state of one host, as plain data: what `dvr plan` prints, what
//! the twin executes and what `realize` applies. No behaviour lives here.

pub use crate::neigh::Neighbours;
use crate::tables::BridgeKind;
use dvr_model::{AgentMode, MacAddr, Role};
use dvr_openflow::Flow;
use ipnet::Ipv4Net;
use serde::Serialize;
use std::borrow::Cow;
use std::net::Ipv4Addr;

/// Everything one host must have.
#[derive(Debug, Clone, Serialize)]
pub struct HostPlan {
    /// Host name.
    pub host: String,
    /// Role.
    pub role: Role,
    /// l3 agent mode (`None` on a controller).
    pub agent_mode: Option<AgentMode>,
    /// The host's DVR MAC.
    pub dvr_mac: Option<MacAddr>,
    /// Root-namespace sysctls (the walkthrough's compute-node settings).
    pub sysctls: Vec<Sysctl>,
    /// OVS bridges with their ports and flows.
    pub bridges: Vec<Bridge>,
    /// Network namespaces (qrouter, snat, fip, qdhcp).
    pub namespaces: Vec<Namespace>,
}

impl HostPlan {
    /// A bridge by name.
    pub fn bridge(&self, name: &str) -> Option<&Bridge> {
        self.bridges.iter().find(|b| b.name == name)
    }
    /// A namespace by name.
    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.namespaces.iter().find(|n| n.name == name)
    }
    /// Number of flows on all bridges.
    pub fn flow_count(&self) -> usize {
        self.bridges.iter().map(|b| b.flows.len()).sum()
    }
}

/// Where a planned route, rule, neighbour or NAT rule comes from: the source
/// location of the builder call that made it, recorded with
/// `#[track_caller]` (never typed by hand), and why it exists, naming the
/// agent step. Provenance is metadata: two items that differ only in their
/// origin are the same item (equality ignores it), so a plan compares equal
/// to the same state read back from a host.
///
/// Both texts are borrowed when they can be: a 1,000-host plan has hundreds
/// of thousands of origins, and formatting `file:line` and a constant
/// sentence for each was most of its planning time.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Origin {
    /// `file:line` of the builder call, or `dump: FILE` for imported items.
    pub at: Cow<'static, str>,
    /// Why the item exists.
    pub why: Text,
}

/// A text of the plan that is either a constant of the planner or built once
/// and shared (`Arc`) by every host that carries the same item: the permanent
/// ARP entry of one port is in the `qrouter-` namespace of every host with
/// the router, a million of them on 1,000 hosts.
#[derive(Debug, Clone)]
pub enum Text {
    /// A constant sentence.
    Static(&'static str),
    /// A sentence built at run time, shared between the items that need it.
    Shared(std::sync::Arc<str>),
}

impl Default for Text {
    fn default() -> Text {
        Text::Static("")
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Text::Static(s) => s,
            Text::Shared(s) => s,
        }
    }
}

impl From<&'static str> for Text {
    fn from(s: &'static str) -> Text {
        Text::Static(s)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text::Shared(s.into())
    }
}

impl From<std::sync::Arc<str>> for Text {
    fn from(s: std::sync::Arc<str>) -> Text {
        Text::Shared(s)
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

impl Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self)
    }
}

impl Origin {
    /// The caller's location and a reason.
    #[track_caller]
    pub fn here(why: impl Into<Text>) -> Origin {
        Origin { at: Cow::Borrowed(call_site(std::panic::Location::caller())), why: why.into() }
    }
    /// An item read from a dump file rather than planned.
    pub fn dump(file: impl std::fmt::Display) -> Origin {
        Origin { at: Cow::Owned(format!("dump: {file}")), why: Text::default() }
    }
    /// Whether no origin was recorded.
    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

/// `file:line` of a builder call site, formatted once per site and kept for
/// the life of the process. Call sites are a fixed set of source lines (a few
/// hundred), so the interned texts are bounded; every flow and origin of
/// every plan then borrows one instead of formatting and owning a copy.
pub fn call_site(at: &'static std::panic::Location<'static>) -> &'static str {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static SITES: OnceLock<Mutex<HashMap<(usize, u32), &'static str>>> = OnceLock::new();
    // The file name is a `'static` literal: its address (with the line)
    // identifies the site without hashing the text.
    let key = (at.file().as_ptr() as usize, at.line());
    let mut sites = SITES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    sites.entry(key).or_insert_with(|| Box::leak(format!("{}:{}", at.file(), at.line()).into_boxed_str()))
}

impl PartialEq for Origin {
    fn eq(&self, _: &Origin) -> bool {
        true
    }
}

impl Eq for Origin {}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.why.is_empty() { f.write_str(&self.at) } else { write!(f, "{} [{}]", &*self.why, self.at) }
    }
}

/// One `key=value` kernel setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sysctl {
    /// Key, e.g. `net.ipv4.ip_forward`.
    pub key: String,
    /// Value.
    pub value: String,
}

impl Sysctl {
    /// Constructor.
    pub fn new(key: impl Into<String>, value: impl ToString) -> Sysctl {
        Sysctl { key: key.into(), value: value.to_string() }
    }
}

/// One OVS bridge.
#[derive(Debug, Clone, Serialize)]
pub struct Bridge {
    /// Name (`br-int`, `br-vlan`, `br-ex`).
    pub name: String,
    /// Integration or physical.
    pub kind: BridgeKind,
    /// Physical network served (physical bridges).
    pub physnet: Option<String>,
    /// Ports in a stable order.
    pub ports: Vec<BridgePort>,
    /// Flows sorted by table, then descending priority. Shared (`Arc`) because
    /// the per-DVR-MAC flows are identical on every host: a 1,000-host plan
    /// holds each of them once, not a thousand times.
    pub flows: Vec<std::sync::Arc<Flow>>,
}

/// What sits behind a bridge port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PortKind {
    /// Patch port to another bridge of the host.
    Patch {
        /// Peer port name.
        peer: String,
    },
    /// The wire-facing NIC of a physical network.
    Nic,
    /// An instance's VIF (`qvo…`, the OVS end of the hybrid plug).
    Vif {
        /// Instance name.
        instance: String,
    },
    /// A Neutron service port whose device lives in a namespace
    /// (`qr-`, `sg-`, `qg-`, `fg-`, DHCP `tap`).
    Service {
        /// Namespace holding the device.
        namespace: String,
    },
    /// A VXLAN tunnel port of br-tun to one remote VTEP (`setup_tunnel_port`):
    /// OVSDB `type=vxlan`, `options:local_ip`, `options:remote_ip`,
    /// `options:key=flow` (the VNI comes from the flows' `tun_id`),
    /// `options:dst_port=4789`.
    Vxlan {
        /// This host's tunnel endpoint (`local_ip`).
        local_ip: Ipv4Addr,
        /// The remote host's endpoint.
        remote_ip: Ipv4Addr,
        /// UDP destination port (4789, the IANA VXLAN port).
        dst_port: u16,
    },
}

/// One port of a bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BridgePort {
    /// Port (and interface) name.
    pub name: String,
    /// Kind.
    #[serde(flatten)]
    pub kind: PortKind,
    /// Access VLAN (`tag`), the local VLAN of the port's network.
    pub tag: Option<u16>,
    /// Neutron port id (`external_ids:iface-id`).
    pub iface_id: Option<String>,
    /// MAC behind the port (`external_ids:attached-mac`).
    pub mac: Option<MacAddr>,
    /// OpenFlow port number (`ofport_request`), planned only with the
    /// `openvswitch` firewall, whose flows carry it in `reg5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ofport: Option<u32>,
}

/// What a namespace is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NamespaceKind {
    /// A copy of a distributed (or legacy) router.
    Qrouter,
    /// Centralised SNAT of a distributed router.
    Snat,
    /// Floating-IP namespace of an external network.
    Fip,
    /// DHCP (and metadata) of a network.
    Qdhcp,
}

/// One network namespace.
#[derive(Debug, Clone, Serialize)]
pub struct Namespace {
    /// Name (`qrouter-<id>` …).
    pub name: String,
    /// Kind.
    pub kind: NamespaceKind,
    /// Router or network name it serves (for people).
    pub serves: String,
    /// Devices with addresses.
    pub devices: Vec<Device>,
    /// Routes of all tables.
    pub routes: Vec<Route>,
    /// Policy rules, beyond the kernel's three defaults (which are implied).
    pub rules: Vec<Rule>,
    /// Static neighbour entries.
    pub neighbours: Neighbours,
    /// Netfilter tables (`nat`, `raw`).
    pub iptables: Vec<IptTable>,
    /// Namespace sysctls.
    pub sysctls: Vec<Sysctl>,
    /// DHCP service (qdhcp only).
    pub dhcp: Option<DhcpService>,
}

impl Namespace {
    /// A device by name.
    pub fn device(&self, name: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.name == name)
    }
    /// The netfilter table of that name.
    pub fn table(&self, name: &str) -> Option<&IptTable> {
        self.iptables.iter().find(|t| t.name == name)
    }
}

/// How a device reaches the rest of the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DeviceLink {
    /// Plugged into an OVS bridge (as a veth whose other end is the bridge port).
    Ovs {
        /// Bridge.
        bridge: String,
    },
    /// A veth whose peer is in another namespace (`rfp-` ↔ `fpr-`).
    Veth {
        /// Peer device.
        peer: String,
        /// Peer namespace.
        peer_namespace: String,
    },
}

/// One device in a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    /// Name.
    pub name: String,
    /// MAC address.
    pub mac: MacAddr,
    /// Addresses with prefix length (`192.168.1.1/24`).
    pub addrs: Vec<Ipv4Net>,
    /// Link.
    pub link: DeviceLink,
}

/// A routing table reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TableRef {
    /// `main` (254).
    Main,
    /// A numbered table.
    Id(u32),
}

impl std::fmt::Display for TableRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TableRef::Main => f.write_str("main"),
            TableRef::Id(n) => write!(f, "{n}"),
        }
    }
}

/// One route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    /// Table.
    pub table: TableRef,
    /// Destination (`0.0.0.0/0` = default).
    pub dst: Ipv4Net,
    /// Next hop; `None` for an on-link (connected) route.
    pub via: Option<Ipv4Addr>,
    /// Output device.
    pub dev: String,
    /// Preferred source (connected routes).
    pub src: Option<Ipv4Addr>,
    /// Which builder made it and why.
    #[serde(skip_serializing_if = "Origin::is_empty")]
    pub origin: Origin,
}

/// A policy rule selector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleSelector {
    /// `from PREFIX`.
    From(Ipv4Net),
    /// `from all iif DEV`.
    Iif(String),
}

/// One `ip rule`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// Priority (lower first).
    pub priority: u32,
    /// Selector.
    pub selector: RuleSelector,
    /// Table looked up.
    pub table: u32,
    /// Which builder made it and why.
    #[serde(skip_serializing_if = "Origin::is_empty")]
    pub origin: Origin,
}

/// One permanent neighbour entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Neighbour {
    /// Address.
    pub ip: Ipv4Addr,
    /// Link-layer address.
    pub mac: MacAddr,
    /// Device.
    pub dev: String,
    /// Which builder made it and why.
    #[serde(skip_serializing_if = "Origin::is_empty")]
    pub origin: Origin,
}

/// One netfilter table (`nat`, `raw`) in iptables-save layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IptTable {
    /// Table name.
    pub name: String,
    /// Chains: built-ins first, then user chains in creation order.
    pub chains: Vec<Chain>,
}

impl IptTable {
    /// A chain by name.
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }
}

/// One chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Chain {
    /// Name.
    pub name: String,
    /// Built-in chains have policy ACCEPT; user chains none.
    pub builtin: bool,
    /// Rules in order.
    pub rules: Vec<IptRule>,
}

/// A match of an iptables rule (the subset Neutron's L3 agent writes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "m", rename_all = "snake_case")]
pub enum IptMatch {
    /// `-s PREFIX`.
    Src {
        /// Prefix.
        net: Ipv4Net,
    },
    /// `-d PREFIX`.
    Dst {
        /// Prefix.
        net: Ipv4Net,
    },
    /// `[!] -i DEV` (`+` suffix = prefix match).
    InIface {
        /// Device.
        dev: String,
        /// Negated.
        not: bool,
    },
    /// `[!] -o DEV`.
    OutIface {
        /// Device.
        dev: String,
        /// Negated.
        not: bool,
    },
    /// `-p tcp -m tcp --dport N`.
    TcpDport {
        /// Port.
        port: u16,
    },
    /// `-m conntrack [!] --ctstate DNAT`.
    CtStateDnat {
        /// Negated.
        not: bool,
    },
    /// `-m mark [!] --mark V/M`.
    Mark {
        /// Value.
        value: u32,
        /// Mask.
        mask: u32,
        /// Negated.
        not: bool,
    },
}

/// What a rule does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum IptTarget {
    /// `-j CHAIN`.
    Jump {
        /// Chain.
        chain: String,
    },
    /// `-j ACCEPT`: stop NAT processing for this connection.
    Accept,
    /// `-j SNAT --to-source IP [--random-fully]`.
    Snat {
        /// New source.
        to: Ipv4Addr,
        /// `--random-fully`: source ports chosen at random. Neutron adds it to
        /// every SNAT rule when iptables ≥ 1.6.2 and `use_random_fully` is on
        /// (the default). It changes which ports the kernel picks, not which
        /// packets are translated, so the twin records it but does not model it.
        random_fully: bool,
    },
    /// `-j DNAT --to-destination IP`.
    Dnat {
        /// New destination.
        to: Ipv4Addr,
    },
    /// `-j REDIRECT --to-ports N`.
    Redirect {
        /// Local port.
        port: u16,
    },
    /// `-j CT --notrack` (raw table).
    NoTrack,
    /// `-j MARK --set-xmark VALUE/MASK` (mangle table): sets the packet mark
    /// that nat rules test (`mark = (mark & !mask) ^ value`).
    Mark {
        /// Bits to set.
        value: u32,
        /// Bits cleared first.
        mask: u32,
    },
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IptRule {
    /// Matches (all must hold).
    pub matches: Vec<IptMatch>,
    /// Target.
    pub target: IptTarget,
    /// `-m comment --comment` text.
    pub comment: Option<String>,
    /// Which builder made it and why.
    #[serde(skip_serializing_if = "Origin::is_empty")]
    pub origin: Origin,
}

/// The DHCP service of a qdhcp namespace, with what it pushes to instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DhcpService {
    /// Subnet served.
    pub subnet: Ipv4Net,
    /// Router option (the subnet gateway).
    pub router: Ipv4Addr,
    /// Classless static routes (option 121), e.g. the metadata host route.
    pub host_routes: Vec<(Ipv4Net, Ipv4Addr)>,
    /// Metadata served here (`force_metadata = True`).
    pub metadata: bool,
}
