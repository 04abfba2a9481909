//! Every OpenFlow table of the pipeline, declared once: number, name and
//! purpose per bridge kind. Builders, renderers, the twin and
//! `docs/pipeline.md` all refer to these constants; a table number written
//! anywhere else is a bug.

use dvr_openflow::TableId;
use serde::Serialize;

/// The kinds of bridge the OVS agent programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BridgeKind {
    /// The integration bridge, `br-int`.
    Int,
    /// A physical bridge from `bridge_mappings` (`br-vlan`, `br-ex`).
    Phys,
}

/// One declared table.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TableDecl {
    /// Bridge kind it belongs to.
    pub bridge: BridgeKind,
    /// OpenFlow table number.
    pub id: TableId,
    /// Neutron's constant name (`neutron_lib/plugins/ml2/ovs_constants.py`).
    pub name: &'static str,
    /// One line on what the table is for.
    pub purpose: &'static str,
}

macro_rules! tables {
    ($($konst:ident = ($bridge:ident, $id:expr, $name:expr, $purpose:expr);)*) => {
        $(
            #[doc = concat!("`", $name, "` (", stringify!($bridge), " table ", stringify!($id), "): ", $purpose)]
            pub const $konst: TableDecl = TableDecl { bridge: BridgeKind::$bridge, id: TableId($id), name: $name, purpose: $purpose };
        )*
        /// All declared tables, in bridge then number order.
        pub const ALL: &[TableDecl] = &[$($konst),*];
    };
}

tables! {
    INT_LOCAL_SWITCHING = (Int, 0, "LOCAL_SWITCHING", "classifies frames by ingress port; translates physical VLANs to local ones; sends frames from remote DVR MACs to the DVR tables");
    INT_DVR_TO_SRC_MAC = (Int, 1, "DVR_TO_SRC_MAC", "tunnel networks: routed frames from remote DVR hosts get the gateway MAC as source");
    INT_DVR_TO_SRC_MAC_PHYSICAL = (Int, 2, "DVR_TO_SRC_MAC_PHYSICAL", "vlan/flat networks: routed frames from remote DVR hosts get the gateway MAC as source");
    INT_ARP_DVR_MAC_TO_DST_MAC = (Int, 3, "ARP_DVR_MAC_TO_DST_MAC", "tunnel networks: frames to this host's DVR MAC are handed to the router port");
    INT_ARP_DVR_MAC_TO_DST_MAC_PHYSICAL = (Int, 4, "ARP_DVR_MAC_TO_DST_MAC_PHYSICAL", "vlan/flat networks: frames to this host's DVR MAC are handed to the router port");
    INT_CANARY = (Int, 23, "CANARY_TABLE", "a single drop flow; an empty table tells the agent that OVS restarted");
    INT_ARP_SPOOF = (Int, 24, "ARP_SPOOF_TABLE", "ARP anti-spoofing: an instance may only claim its own IP");
    INT_MAC_SPOOF = (Int, 25, "MAC_SPOOF_TABLE", "source-MAC anti-spoofing: an instance may only send from its own MAC");
    INT_LOCAL_EGRESS = (Int, 30, "LOCAL_EGRESS_TABLE", "local-IP feature (current profile only); passes to table 58");
    INT_LOCAL_IP = (Int, 31, "LOCAL_IP_TABLE", "local-IP feature (current profile only); passes to table 58");
    INT_PACKET_RATE_LIMIT = (Int, 58, "PACKET_RATE_LIMIT", "QoS packet-rate meters (current profile only); passes to table 59");
    INT_BANDWIDTH_RATE_LIMIT = (Int, 59, "BANDWIDTH_RATE_LIMIT", "QoS bandwidth meters (current profile only); passes to table 60");
    INT_TRANSIENT = (Int, 60, "TRANSIENT_TABLE", "NORMAL switching; DVR direct output to local ports of routed frames");
    INT_BASE_EGRESS = (Int, 71, "BASE_EGRESS_TABLE", "openvswitch firewall: egress anti-spoofing by (MAC, IP) pair incl. allowed address pairs, DHCP, then conntrack in the port's zone");
    INT_RULES_EGRESS = (Int, 72, "RULES_EGRESS_TABLE", "openvswitch firewall: egress security-group rules and conntrack states (established, related, invalid)");
    INT_ACCEPT_OR_INGRESS = (Int, 73, "ACCEPT_OR_INGRESS_TABLE", "openvswitch firewall: accepted egress to a local filtered port becomes its ingress; new connections are committed");
    INT_BASE_INGRESS = (Int, 81, "BASE_INGRESS_TABLE", "openvswitch firewall: ARP and DHCP to the port pass; IPv4 is tracked in the port's zone");
    INT_RULES_INGRESS = (Int, 82, "RULES_INGRESS_TABLE", "openvswitch firewall: ingress security-group rules (conjunctions for remote groups) and conntrack states");
    INT_ACCEPTED_EGRESS_TRAFFIC = (Int, 91, "ACCEPTED_EGRESS_TRAFFIC_TABLE", "openvswitch firewall: accepted new egress connections, then normal switching (hook for logging)");
    INT_ACCEPTED_INGRESS_TRAFFIC = (Int, 92, "ACCEPTED_INGRESS_TRAFFIC_TABLE", "openvswitch firewall: copy of accepted new ingress connections, dropped (hook for logging)");
    INT_DROPPED_TRAFFIC = (Int, 93, "DROPPED_TRAFFIC_TABLE", "openvswitch firewall: every packet the firewall denies ends here and is dropped");
    INT_ACCEPTED_EGRESS_TRAFFIC_NORMAL = (Int, 94, "ACCEPTED_EGRESS_TRAFFIC_NORMAL_TABLE", "openvswitch firewall: accepted egress traffic is switched with NORMAL");
    INT_TRANSIENT_EGRESS = (Int, 62, "TRANSIENT_EGRESS_TABLE", "egress NORMAL for explicitly_egress_direct (current profile only)");
    PHYS_LOCAL_SWITCHING = (Phys, 0, "LOCAL_SWITCHING", "classifies frames: from br-int to DVR processing, from the wire to the DVR-MAC check");
    PHYS_DVR_PROCESS = (Phys, 1, "DVR_PROCESS_PHYSICAL", "keeps gateway traffic on the host and rewrites routed frames' source MAC to the host's DVR MAC");
    PHYS_LOCAL_VLAN_TRANSLATION = (Phys, 2, "LOCAL_VLAN_TRANSLATION", "translates local VLANs to the network's segment on the wire");
    PHYS_DVR_NOT_LEARN = (Phys, 3, "DVR_NOT_LEARN_PHYSICAL", "frames from a remote DVR MAC go straight to br-int without MAC learning");
    PHYS_FLOOD_TO_TUN = (Phys, 22, "FLOOD_TO_TUN", "current profile only: where today's Neutron puts the gateway ARP drop on br-phys (inert, quirk Q1)");
}

/// The declaration of a table of a bridge kind, if declared.
pub fn lookup(bridge: BridgeKind, id: TableId) -> Option<&'static TableDecl> {
    ALL.iter().find(|t| t.bridge == bridge && t.id == id)
}
