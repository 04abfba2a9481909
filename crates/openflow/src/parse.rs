//! Reads flows in `ovs-ofctl` text: what `dvr plan` prints, and what
//! `ovs-ofctl -O OpenFlow13 dump-flows --names` prints on a real host
//! (statistics are skipped, OpenFlow 1.3 spellings such as
//! `set_field:4292->vlan_vid` are mapped back to the same [`Action`]s).

use crate::flow::*;
use dvr_model::MacAddr;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Why a flow line could not be read; `column` counts from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {what} in `{text}`")]
pub struct ParseError {
    /// Line number (1-based) in the input.
    pub line: usize,
    /// The offending token.
    pub text: String,
    /// What is wrong.
    pub what: String,
}

/// Fields printed by `dump-flows` that carry statistics, not semantics.
const STAT_FIELDS: &[&str] = &["cookie", "duration", "n_packets", "n_bytes", "idle_age", "hard_age", "idle_timeout", "hard_timeout"];

/// Parse many lines; blank lines, `#` comments and `OFPST_FLOW`/`NXST_FLOW`
/// headers are skipped.
pub fn parse_flows(text: &str) -> Result<Vec<Flow>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with("OFPST_FLOW") || l.starts_with("NXST_FLOW") {
            continue;
        }
        out.push(parse_flow(l).map_err(|mut e| {
            e.line = i + 1;
            e
        })?);
    }
    Ok(out)
}

fn err(text: &str, what: impl Into<String>) -> ParseError {
    ParseError { line: 1, text: text.to_string(), what: what.into() }
}

/// Match fields real deployments use that the twin does not model
/// (registers, conntrack state, metadata). [`parse_flow_lenient`] accepts
/// them and reports them, so an import can say which flows it approximates.
pub fn is_unmodelled_field(k: &str) -> bool {
    k.strip_prefix("reg").or_else(|| k.strip_prefix("xreg")).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        || k.starts_with("ct_")
        || matches!(k, "metadata" | "pkt_mark" | "tun_id" | "recirc_id" | "dp_hash" | "conj_id" | "tcp_flags" | "actset_output")
}

/// Parse one flow line.
pub fn parse_flow(line: &str) -> Result<Flow, ParseError> {
    parse_flow_inner(line, None)
}

/// Parse one flow line of a real `dump-flows`, accepting the match fields the
/// twin does not model ([`is_unmodelled_field`]); they are returned beside
/// the flow (as `key=value`) instead of failing the line.
pub fn parse_flow_lenient(line: &str) -> Result<(Flow, Vec<String>), ParseError> {
    let mut ignored = Vec::new();
    let f = parse_flow_inner(line, Some(&mut ignored))?;
    Ok((f, ignored))
}

fn parse_flow_inner(line: &str, mut ignored: Option<&mut Vec<String>>) -> Result<Flow, ParseError> {
    let (head, actions) = match line.find("actions=") {
        Some(i) => (&line[..i], &line[i + "actions=".len()..]),
        None => return Err(err(line, "missing `actions=`")),
    };
    let mut flow = Flow::new(0, 32768, Match::default(), Vec::new());
    for tok in head.split([',', ' ']).map(str::trim).filter(|t| !t.is_empty()) {
        let (k, v) = match tok.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (tok, None),
        };
        let m = &mut flow.matches;
        match (k, v) {
            (_, _) if STAT_FIELDS.contains(&k) => {}
            (_, _) if ignored.is_some() && is_unmodelled_field(k) => {
                if let Some(v) = ignored.as_deref_mut() {
                    v.push(tok.to_string());
                }
            }
            ("reset_counts" | "send_flow_rem" | "check_overlap", None) => {}
            ("arp", None) => m.proto = Some(Proto::Arp),
            ("ip", None) => m.proto = Some(Proto::Ip),
            ("icmp", None) => m.proto = Some(Proto::Icmp),
            ("tcp", None) => m.proto = Some(Proto::Tcp),
            ("udp", None) => m.proto = Some(Proto::Udp),
            ("icmp6", None) => m.proto = Some(Proto::Icmp6),
            ("icmp_type" | "icmpv6_type" | "icmpv4_type", Some(v)) => m.icmp_type = Some(num(tok, v)?),
            ("nd_target" | "ipv6_nd_target", Some(v)) => {
                m.nd_target = Some(v.parse::<Ipv6Addr>().map_err(|_| err(tok, "not an IPv6 address"))?)
            }
            ("table", Some(v)) => flow.table = TableId(num(tok, v)?),
            ("priority", Some(v)) => flow.priority = num(tok, v)?,
            ("in_port", Some(v)) => m.in_port = Some(port_name(tok, v)?),
            ("dl_vlan", Some(v)) => {
                let n: u32 = num(tok, v)?;
                m.dl_vlan = Some(if n == 0xffff { VlanMatch::Untagged } else { VlanMatch::Tagged(n as u16) });
            }
            ("vlan_tci", Some(v)) if v == "0x0000/0x1fff" || v == "0/0x1fff" => m.dl_vlan = Some(VlanMatch::Untagged),
            ("dl_src" | "eth_src", Some(v)) => m.dl_src = Some(mac(tok, v)?),
            ("dl_dst" | "eth_dst", Some(v)) => m.dl_dst = Some(mac(tok, v)?),
            ("arp_op", Some(v)) => m.arp_op = Some(num(tok, v)?),
            ("arp_spa", Some(v)) => m.arp_spa = Some(ipm(tok, v)?),
            ("arp_tpa", Some(v)) => m.arp_tpa = Some(ipm(tok, v)?),
            ("arp_tha", Some(v)) => m.arp_tha = Some(mac(tok, v)?),
            ("nw_src" | "ip_src", Some(v)) => m.nw_src = Some(ipm(tok, v)?),
            ("nw_dst" | "ip_dst", Some(v)) => m.nw_dst = Some(ipm(tok, v)?),
            ("dl_type", Some(v)) => {
                let t: u32 = num(tok, v)?;
                m.proto = Some(match t {
                    0x0806 => Proto::Arp,
                    0x0800 => Proto::Ip,
                    _ => return Err(err(tok, "unsupported dl_type")),
                });
            }
            ("nw_proto", Some(v)) => {
                let p: u8 = num(tok, v)?;
                m.proto = Some(match p {
                    1 => Proto::Icmp,
                    6 => Proto::Tcp,
                    17 => Proto::Udp,
                    _ => return Err(err(tok, "unsupported nw_proto")),
                });
            }
            _ => return Err(err(tok, "unknown match field")),
        }
    }
    flow.actions = parse_actions(actions.trim())?;
    Ok(flow)
}

/// Split on commas that are not inside parentheses.
fn split_actions(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, ch) in s.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter().map(str::trim).filter(|a| !a.is_empty()).collect()
}

/// Parse the action list after `actions=`.
pub fn parse_actions(s: &str) -> Result<Vec<Action>, ParseError> {
    let mut out = Vec::new();
    for a in split_actions(s) {
        let act = if a.eq_ignore_ascii_case("drop") {
            Action::Drop
        } else if a == "NORMAL" || a == "output:NORMAL" {
            Action::Normal
        } else if a == "strip_vlan" || a == "pop_vlan" {
            Action::StripVlan
        } else if let Some(v) = a.strip_prefix("push_vlan:") {
            if v != "0x8100" {
                return Err(err(a, "only push_vlan:0x8100 is supported"));
            }
            Action::PushVlan
        } else if let Some(t) = a.strip_prefix("resubmit(,").and_then(|t| t.strip_suffix(')')) {
            Action::Resubmit(TableId(num(a, t)?))
        } else if let Some(t) = a.strip_prefix("goto_table:") {
            Action::GotoTable(TableId(num(a, t)?))
        } else if let Some(v) = a.strip_prefix("mod_vlan_vid:") {
            Action::ModVlanVid(num(a, v)?)
        } else if let Some(m) = a.strip_prefix("mod_dl_src:") {
            Action::ModDlSrc(mac(a, m)?)
        } else if let Some(m) = a.strip_prefix("mod_dl_dst:") {
            Action::ModDlDst(mac(a, m)?)
        } else if let Some(rest) = a.strip_prefix("set_field:") {
            let (v, field) = rest.split_once("->").ok_or_else(|| err(a, "set_field without `->`"))?;
            match field {
                "vlan_vid" => {
                    let raw: u32 = num(a, v)?;
                    Action::ModVlanVid((raw & 0x0fff) as u16)
                }
                "eth_src" => Action::ModDlSrc(mac(a, v)?),
                "eth_dst" => Action::ModDlDst(mac(a, v)?),
                _ => return Err(err(a, "unsupported set_field target")),
            }
        } else if let Some(p) = a.strip_prefix("output:") {
            Action::Output(port_name(a, p)?)
        } else {
            return Err(err(a, "unknown action"));
        };
        out.push(act);
    }
    // ovs-ofctl reads an empty action list as `drop`, and `drop` only alone:
    // one spelling each, so a parsed flow prints back as the same flow.
    if out.is_empty() {
        return Ok(vec![Action::Drop]);
    }
    if out.len() > 1 && out.contains(&Action::Drop) {
        return Err(err(s, "`drop` must be the only action (ovs-ofctl refuses it among others)"));
    }
    Ok(out)
}

/// A port name or number as `in_port=`/`output:` give it (quotes removed).
/// Only names the printer writes back unchanged are accepted: Neutron's device
/// names and port numbers are letters, digits, `-`, `_` and `.`; whitespace,
/// control characters, quotes, commas, parentheses, `=` and `:` would change
/// meaning when printed unquoted.
fn port_name(tok: &str, v: &str) -> Result<String, ParseError> {
    let name = unquote(v);
    let printable = |c: char| c.is_ascii_graphic() && !",\"()=:\\[]{}".contains(c);
    if name.is_empty() || !name.chars().all(printable) {
        return Err(err(tok, "a port name must be letters, digits, `-`, `_` or `.`"));
    }
    Ok(name)
}

fn unquote(s: &str) -> String {
    s.trim_matches('"').to_string()
}

fn num<T: TryFrom<u64>>(tok: &str, v: &str) -> Result<T, ParseError> {
    let n = match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => v.parse::<u64>(),
    }
    .map_err(|_| err(tok, "not a number"))?;
    T::try_from(n).map_err(|_| err(tok, "number out of range"))
}

fn mac(tok: &str, v: &str) -> Result<MacAddr, ParseError> {
    v.parse().map_err(|e: dvr_model::types::MacParseError| err(tok, e.to_string()))
}

fn ipm(tok: &str, v: &str) -> Result<Ipv4Match, ParseError> {
    let (a, p) = match v.split_once('/') {
        Some((a, p)) => (a, p),
        None => (v, "32"),
    };
    let addr: Ipv4Addr = a.parse().map_err(|_| err(tok, "not an IPv4 address"))?;
    let prefix: u8 = if p.contains('.') {
        let mask: Ipv4Addr = p.parse().map_err(|_| err(tok, "bad mask"))?;
        u32::from(mask).count_ones() as u8
    } else {
        p.parse().map_err(|_| err(tok, "bad prefix"))?
    };
    if prefix > 32 {
        return Err(err(tok, "prefix longer than 32"));
    }
    Ok(Ipv4Match { addr, prefix })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_mac() -> impl Strategy<Value = MacAddr> {
        proptest::array::uniform6(any::<u8>()).prop_map(MacAddr)
    }
    fn arb_ip() -> impl Strategy<Value = Ipv4Match> {
        (any::<u32>(), 0u8..=32).prop_map(|(a, p)| {
            let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            Ipv4Match { addr: Ipv4Addr::from(a & mask), prefix: p }
        })
    }
    fn arb_match() -> impl Strategy<Value = Match> {
        (
            proptest::option::of(prop_oneof![
                Just(Proto::Arp),
                Just(Proto::Ip),
                Just(Proto::Icmp),
                Just(Proto::Tcp),
                Just(Proto::Udp),
                Just(Proto::Icmp6)
            ]),
            proptest::option::of("[a-z][a-z0-9-]{0,13}"),
            proptest::option::of(prop_oneof![Just(VlanMatch::Untagged), (1u16..4095).prop_map(VlanMatch::Tagged)]),
            proptest::option::of(arb_mac()),
            proptest::option::of(arb_mac()),
            proptest::option::of(1u16..3),
            proptest::option::of(arb_ip()),
            proptest::option::of(arb_ip()),
            proptest::option::of(arb_mac()),
            proptest::option::of(arb_ip()),
            (proptest::option::of(any::<u8>()), proptest::option::of(any::<u128>().prop_map(std::net::Ipv6Addr::from))),
        )
            .prop_map(
                |(proto, in_port, dl_vlan, dl_src, dl_dst, arp_op, arp_spa, arp_tpa, arp_tha, nw_dst, (icmp_type, nd_target))| Match {
                    proto,
                    in_port,
                    dl_vlan,
                    dl_src,
                    dl_dst,
                    arp_op,
                    arp_spa,
                    arp_tpa,
                    arp_tha,
                    nw_src: None,
                    nw_dst,
                    icmp_type,
                    nd_target,
                },
            )
    }
    fn arb_action() -> impl Strategy<Value = Action> {
        prop_oneof![
            "[a-z][a-z0-9-]{0,13}".prop_map(Action::Output),
            Just(Action::Normal),
            (0u8..=253).prop_map(|t| Action::Resubmit(TableId(t))),
            (0u8..=253).prop_map(|t| Action::GotoTable(TableId(t))),
            (1u16..4095).prop_map(Action::ModVlanVid),
            Just(Action::StripVlan),
            Just(Action::PushVlan),
            arb_mac().prop_map(Action::ModDlSrc),
            arb_mac().prop_map(Action::ModDlDst),
        ]
    }

    proptest! {
        #[test]
        fn print_then_parse_is_identity(table in 0u8..=253, priority in any::<u16>(), m in arb_match(),
                                        actions in proptest::collection::vec(arb_action(), 0..5)) {
            let actions = if actions.is_empty() { vec![Action::Drop] } else { actions };
            let f = Flow::new(table, priority, m, actions);
            let back = parse_flow(&f.to_string()).unwrap();
            prop_assert_eq!(back, f);
        }

        #[test]
        fn parser_never_panics(s in "\\PC{0,80}") {
            let _ = parse_flow(&s);
        }
    }

    #[test]
    fn reads_ovs_openflow13_dump() {
        let dump = "OFPST_FLOW reply (OF1.3) (xid=0x2):\n cookie=0x0, duration=3.1s, table=2, n_packets=0, n_bytes=0, reset_counts priority=4,in_port=\"phy-br-vlan\",dl_vlan=1 actions=set_field:4292->vlan_vid,NORMAL\n cookie=0x0, duration=3.1s, table=1, n_packets=0, n_bytes=0, priority=1,dl_vlan=1,dl_src=fa:16:3e:00:00:01 actions=set_field:fa:16:3f:00:00:01->eth_src,goto_table:2\n";
        let flows = parse_flows(dump).unwrap();
        assert_eq!(flows.len(), 2);
        assert_eq!(flows[0].actions, vec![Action::ModVlanVid(196), Action::Normal]);
        assert_eq!(flows[0].matches.in_port.as_deref(), Some("phy-br-vlan"));
        assert_eq!(flows[1].actions[1], Action::GotoTable(TableId(2)));
    }

    /// Captured on compute1 of the real Neutron 29.0.0 seed lab:
    /// `ovs-ofctl -O OpenFlow13 dump-flows br-int` (two lines of it, verbatim).
    #[test]
    fn reads_neutron_icmpv6_na_spoofing_flows() {
        let dump = " cookie=0xa3d810c9fc08e916, duration=280.072s, table=0, n_packets=0, n_bytes=0, priority=10,icmp6,in_port=3,icmp_type=136 actions=goto_table:24\n cookie=0xa3d810c9fc08e916, duration=280.080s, table=24, n_packets=0, n_bytes=0, priority=2,icmp6,in_port=3,icmp_type=136,nd_target=fe80::f816:3eff:fec9:17ac actions=goto_table:58\n";
        let flows = parse_flows(dump).unwrap();
        assert_eq!(flows[0].matches.proto, Some(Proto::Icmp6));
        assert_eq!(flows[0].matches.icmp_type, Some(136));
        assert_eq!(flows[0].matches.nd_target, None);
        assert_eq!(flows[1].matches.nd_target, Some("fe80::f816:3eff:fec9:17ac".parse().unwrap()));
        assert_eq!(
            flows[1].to_string(),
            "table=24, priority=2,icmp6,in_port=3,icmp_type=136,nd_target=fe80::f816:3eff:fec9:17ac actions=goto_table:58"
        );
        assert!(parse_flow("priority=1,icmp6,nd_target=fe80::zz actions=drop").unwrap_err().what.contains("IPv6"));
    }

    /// `reg`/`ct` fields are accepted (and reported) by the lenient parser
    /// only; the strict one keeps rejecting them.
    #[test]
    fn lenient_parser_reports_unmodelled_fields() {
        let line = " cookie=0x1, duration=1.0s, table=0, n_packets=3, n_bytes=9, idle_age=4, priority=5,ct_state=+trk,reg5=0x3,in_port=2 actions=NORMAL";
        let (f, ignored) = parse_flow_lenient(line).unwrap();
        assert_eq!(ignored, vec!["ct_state=+trk".to_string(), "reg5=0x3".to_string()]);
        assert_eq!(f.matches.in_port.as_deref(), Some("2"));
        assert!(parse_flow(line).unwrap_err().what.contains("unknown match field"));
        assert!(!is_unmodelled_field("register"));
    }

    /// Found by fuzzing (fuzz target `flows`): `actions=` parsed as no actions,
    /// which prints as `actions=drop`, which parsed as `[Drop]`: two flows for one
    /// text. An empty list is `drop`, as ovs-ofctl reads it.
    #[test]
    fn empty_actions_are_drop_and_drop_stands_alone() {
        let f = parse_flow("table=0, n_bytes=826, priority=4,in_port=2,dl_vlan=2 actions=").unwrap();
        assert_eq!(f.actions, vec![Action::Drop]);
        assert_eq!(parse_flow(&f.to_string()).unwrap(), f);
        let e = parse_flow("priority=1 actions=drop,NORMAL").unwrap_err();
        assert!(e.what.contains("`drop` must be the only action"), "{e}");
        assert_eq!(parse_flow("priority=1 actions=drop").unwrap().actions, vec![Action::Drop]);
    }

    /// Found by fuzzing (fuzz target `flows`): `in_port="q\0\x0b…"` was read with
    /// the control characters, printed unquoted and read back as `q\0`.
    #[test]
    fn port_names_with_control_characters_are_refused() {
        for bad in ["in_port=\"q\u{0}\u{b}\u{b}\" actions=drop", "in_port=\"a\tb\" actions=drop", "priority=1 actions=output:\"x(y\""] {
            let e = parse_flow(bad).unwrap_err();
            assert!(e.what.contains("port name"), "{bad:?}: {e}");
        }
        let ok = parse_flow("in_port=\"qvo1f29bdf9-33\" actions=output:patch-int").unwrap();
        assert_eq!(ok.matches.in_port.as_deref(), Some("qvo1f29bdf9-33"));
        assert_eq!(parse_flow(&ok.to_string()).unwrap(), ok);
    }

    #[test]
    fn reports_line_of_bad_flow() {
        let e = parse_flows("table=0, priority=1 actions=NORMAL\n\ntable=0, bogus=1 actions=drop").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.what.contains("unknown match field"));
    }
}
