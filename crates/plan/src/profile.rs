//! The one place where our default — the DVR walkthrough — and today's
//! Neutron differ (fact sheet §13). Builders ask the profile; nothing else
//! branches on the Neutron release.

use crate::tables::{self, TableDecl};
use dvr_openflow::Action;
use serde::Serialize;

/// Which Neutron behaviour to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// The walkthrough's Neutron (2018): anti-spoof 24 → 25 → 60, the
    /// gateway ARP drop in br-phys table 1, `resubmit` between tables.
    #[default]
    Walkthrough,
    /// Neutron master (2026): 25 → 30 → 58 → 59 → 60, the gateway ARP drop in
    /// the (inert) br-phys table 22 (quirk Q1), `goto_table`.
    Current,
}

impl Profile {
    /// All profiles, for `--help` and tests.
    pub const ALL: [Profile; 2] = [Profile::Walkthrough, Profile::Current];

    /// Name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Walkthrough => "walkthrough",
            Profile::Current => "current",
        }
    }

    /// The action that continues in table `t` (`resubmit(,t)` or `goto_table:t`).
    pub fn next(self, t: TableDecl) -> Action {
        match self {
            Profile::Walkthrough => Action::Resubmit(t.id),
            Profile::Current => Action::GotoTable(t.id),
        }
    }

    /// Where br-int table 0's miss, the VLAN translation and the DVR
    /// to-source-MAC rewrite continue: table 60 (walkthrough) or 58 (Q2).
    pub fn egress_start(self) -> TableDecl {
        match self {
            Profile::Walkthrough => tables::INT_TRANSIENT,
            Profile::Current => tables::INT_PACKET_RATE_LIMIT,
        }
    }

    /// Where table 25 sends frames that passed MAC anti-spoofing (quirk Q2).
    pub fn after_mac_spoof(self) -> TableDecl {
        match self {
            Profile::Walkthrough => tables::INT_TRANSIENT,
            Profile::Current => tables::INT_LOCAL_EGRESS,
        }
    }

    /// The br-phys table holding the "ARP for the gateway IP" drop (quirk Q1):
    /// table 1 in the walkthrough, table 22 (never reached) today.
    pub fn gateway_arp_drop_table(self) -> TableDecl {
        match self {
            Profile::Walkthrough => tables::PHYS_DVR_PROCESS,
            Profile::Current => tables::PHYS_FLOOD_TO_TUN,
        }
    }

    /// The br-tun table holding the "ARP for the gateway IP" drop: table 1
    /// (DVR_PROCESS) in the walkthrough's Neutron, table 22 (FLOOD_TO_TUN)
    /// today (`install_dvr_process_ipv4`). Unlike on br-phys (quirk Q1) both
    /// are effective on br-tun: an ARP broadcast reaches table 22 through the
    /// ARP responder, which has no entry for a gateway.
    pub fn tun_gateway_arp_drop_table(self) -> TableDecl {
        match self {
            Profile::Walkthrough => tables::TUN_DVR_PROCESS,
            Profile::Current => tables::TUN_FLOOD_TO_TUN,
        }
    }

    /// Whether the current release's pass-through tables (30, 31, 58, 59, 62) exist.
    pub fn has_passthrough_tables(self) -> bool {
        self == Profile::Current
    }

    /// Whether per-port ICMPv6 neighbour-advertisement anti-spoofing is
    /// planned (`install_icmpv6_na_spoofing_protection`): table 0
    /// `icmp6,icmp_type=136` → table 24, which admits only the port's own
    /// link-local target. Today's Neutron installs it for every instance
    /// port; the walkthrough's flow listings do not show it.
    pub fn has_icmpv6_na_protection(self) -> bool {
        self == Profile::Current
    }

    /// What follows the br-int VLAN translation (segment → local VLAN):
    /// `NORMAL` in the walkthrough, the egress tables today.
    pub fn after_vlan_translation(self) -> Action {
        match self {
            Profile::Walkthrough => Action::Normal,
            Profile::Current => self.next(self.egress_start()),
        }
    }
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown profile `{s}`; use `walkthrough` (default) or `current`"))
    }
}
