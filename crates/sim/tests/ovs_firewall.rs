//! Neutron's `openvswitch` firewall, hand-written in its own shape (tables
//! 71/72/73 egress, 81/82 ingress, 93 drop, per-network conntrack zone in
//! reg6, port in reg5), run through the twin's OpenFlow engine: the
//! stateful behaviour the plan's firewall flows rely on, each case with its
//! negative twin.

use dvr_model::MacAddr;
use dvr_openflow::{Flow, parse_flows};
use dvr_sim::ofp::{OfBridge, OfPort, OfStep};
use dvr_sim::packet::{Frame, L4, Payload};
use std::net::Ipv4Addr;

const MAC_A: &str = "fa:16:3e:00:00:0a";
const MAC_B: &str = "fa:16:3e:00:00:0b";
const MAC_C: &str = "fa:16:3e:00:00:0c";

/// Three ports on one network (zone 1): a (10.0.0.1), b (10.0.0.2), c
/// (10.0.0.3). As in Neutron, a rule's flows exist for `+new-est` (which
/// commits) and `+est-rel-rpl`; replies (`+est+rpl`) pass without a rule;
/// an established packet no rule allows marks its connection `ct_mark=1`
/// (revoked) and is dropped, as is every later packet of it.
/// Egress: everything (`default` group). Ingress on b: tcp 22 from
/// anywhere (`ssh` rule), tcp 80 only from 10.0.0.1 (conjunction 7, like a
/// rule with a remote prefix and a port), icmp from anywhere. Ingress on a
/// and c: nothing.
fn flows(with_ssh: bool) -> Vec<Flow> {
    let mut text = format!(
        "table=0, priority=100,in_port=a actions=set_field:0x1->reg5,set_field:0x1->reg6,resubmit(,71)
table=0, priority=100,in_port=b actions=set_field:0x2->reg5,set_field:0x1->reg6,resubmit(,71)
table=0, priority=100,in_port=c actions=set_field:0x3->reg5,set_field:0x1->reg6,resubmit(,71)
table=71, priority=65,ip,reg5=0x1,in_port=a,dl_src={MAC_A},nw_src=10.0.0.1 actions=ct(table=72,zone=NXM_NX_REG6[0..15])
table=71, priority=65,ip,reg5=0x2,in_port=b,dl_src={MAC_B},nw_src=10.0.0.2 actions=ct(table=72,zone=NXM_NX_REG6[0..15])
table=71, priority=65,ip,reg5=0x3,in_port=c,dl_src={MAC_C},nw_src=10.0.0.3 actions=ct(table=72,zone=NXM_NX_REG6[0..15])
table=71, priority=10,reg5=0x1 actions=resubmit(,93)
table=71, priority=10,reg5=0x2 actions=resubmit(,93)
table=71, priority=10,reg5=0x3 actions=resubmit(,93)
table=72, priority=74,ct_state=+est-rel+rpl,ct_mark=0 actions=resubmit(,73)
table=72, priority=74,ct_state=+est-rel-rpl,ct_mark=0 actions=resubmit(,73)
table=72, priority=73,ct_state=+new-est,ip actions=resubmit(,73)
table=72, priority=50,ct_mark=0x1 actions=resubmit(,93)
table=72, priority=40,ct_state=-est actions=resubmit(,93)
table=73, priority=100,reg6=0x1,dl_dst={MAC_A} actions=set_field:0x1->reg5,resubmit(,81)
table=73, priority=100,reg6=0x1,dl_dst={MAC_B} actions=set_field:0x2->reg5,resubmit(,81)
table=73, priority=100,reg6=0x1,dl_dst={MAC_C} actions=set_field:0x3->reg5,resubmit(,81)
table=81, priority=90,ct_state=-trk,ip actions=ct(table=82,zone=NXM_NX_REG6[0..15])
table=81, priority=80,ct_state=+trk actions=resubmit(,82)
table=82, priority=77,ct_state=+new-est,icmp,reg5=0x2 actions=ct(commit,zone=NXM_NX_REG6[0..15]),resubmit(,94)
table=82, priority=77,ct_state=+est-rel-rpl,icmp,reg5=0x2 actions=resubmit(,94)
table=82, priority=73,ct_state=+new-est,ip,reg6=0x1,nw_src=10.0.0.1 actions=conjunction(7,1/2)
table=82, priority=73,ct_state=+new-est,tcp,reg5=0x2,tp_dst=80 actions=conjunction(7,2/2)
table=82, priority=73,conj_id=7,ct_state=+new-est,ip,reg5=0x2 actions=ct(commit,zone=NXM_NX_REG6[0..15]),resubmit(,94)
table=82, priority=73,ct_state=+est-rel-rpl,ip,reg6=0x1,nw_src=10.0.0.1 actions=conjunction(8,1/2)
table=82, priority=73,ct_state=+est-rel-rpl,tcp,reg5=0x2,tp_dst=80 actions=conjunction(8,2/2)
table=82, priority=73,conj_id=8,ct_state=+est-rel-rpl,ip,reg5=0x2 actions=resubmit(,94)
table=82, priority=50,ct_mark=0x1 actions=resubmit(,93)
table=82, priority=50,ct_state=+est-rel+rpl,ct_mark=0 actions=resubmit(,94)
table=82, priority=40,ct_state=+est,ip actions=ct(commit,zone=NXM_NX_REG6[0..15],exec(set_field:0x1->ct_mark)),resubmit(,93)
table=82, priority=40,ct_state=-est actions=resubmit(,93)
table=93, priority=0 actions=drop
table=94, priority=10,reg5=0x1 actions=output:a
table=94, priority=10,reg5=0x2 actions=output:b
table=94, priority=10,reg5=0x3 actions=output:c
"
    );
    if with_ssh {
        text.push_str(
            "table=82, priority=77,ct_state=+new-est,tcp,reg5=0x2,tp_dst=22 actions=ct(commit,zone=NXM_NX_REG6[0..15]),resubmit(,94)\n\
             table=82, priority=77,ct_state=+est-rel-rpl,tcp,reg5=0x2,tp_dst=22 actions=resubmit(,94)\n",
        );
    }
    parse_flows(&text).unwrap()
}

fn bridge(with_ssh: bool) -> OfBridge {
    let ports = ["a", "b", "c"].iter().map(|n| OfPort { name: (*n).into(), tag: None }).collect();
    OfBridge::new("br-int", ports, &flows(with_ssh))
}

fn host(n: u8) -> (MacAddr, Ipv4Addr) {
    let mac = [MAC_A, MAC_B, MAC_C][n as usize - 1].parse().unwrap();
    (mac, Ipv4Addr::new(10, 0, 0, n))
}

fn pkt(from: u8, to: u8, l4: L4) -> Frame {
    let ((smac, sip), (dmac, dip)) = (host(from), host(to));
    Frame { src: smac, dst: dmac, vlan: None, payload: Payload::Ip { src: sip, dst: dip, l4 } }
}

fn tcp(from: u8, to: u8, sport: u16, dport: u16) -> Frame {
    pkt(from, to, L4::Tcp { sport, dport })
}

/// Send a frame in on port `from - 1`; the ports it came out of and the last
/// table a flow matched in.
fn send(br: &mut OfBridge, from: u8, f: Frame) -> (Vec<String>, u8) {
    let r = br.process(from as usize - 1, f);
    let outs = r.outputs.iter().map(|(p, _)| br.ports[*p].name.to_string()).collect();
    let last = r.steps.iter().rev().find_map(|s| if let OfStep::Matched { table, .. } = s { Some(*table) } else { None }).unwrap();
    (outs, last)
}

#[test]
fn allowed_port_passes_and_its_reply_passes_and_unsolicited_reverse_is_dropped() {
    let mut br = bridge(true);
    assert_eq!(send(&mut br, 1, tcp(1, 2, 40000, 22)), (vec!["b".to_string()], 94), "a → b tcp 22: allowed by the ssh rule");
    assert_eq!(send(&mut br, 2, tcp(2, 1, 22, 40000)), (vec!["a".to_string()], 94), "the reply passes as established");
    assert_eq!(send(&mut br, 1, tcp(1, 2, 40000, 22)), (vec!["b".to_string()], 94), "the next segment is established");
    // Unsolicited: b opens a connection to a (a has no ingress rule).
    assert_eq!(send(&mut br, 2, tcp(2, 1, 40001, 22)), (vec![], 93), "b → a is new: no rule of a's groups allows it");
    // Not allowed port on b.
    assert_eq!(send(&mut br, 1, tcp(1, 2, 40002, 443)), (vec![], 93), "a → b tcp 443: no rule");
}

#[test]
fn negative_twin_without_the_ssh_rule_drops_and_names_table_82_then_93() {
    let mut br = bridge(false);
    let r = br.process(0, tcp(1, 2, 40000, 22));
    assert!(r.outputs.is_empty());
    let tables: Vec<u8> = r.steps.iter().filter_map(|s| if let OfStep::Matched { table, .. } = s { Some(*table) } else { None }).collect();
    assert_eq!(tables, vec![0, 71, 72, 73, 81, 82, 93], "egress, then ingress rules (82) send it to the drop table");
    // The reply direction of nothing committed is new, and dropped.
    assert_eq!(send(&mut br, 2, tcp(2, 1, 22, 40000)).0, Vec::<String>::new());
}

#[test]
fn conjunction_allows_only_the_remote_prefix() {
    let mut br = bridge(true);
    assert_eq!(send(&mut br, 1, tcp(1, 2, 40000, 80)).0, vec!["b".to_string()], "10.0.0.1 → b:80 completes conjunction 7");
    assert_eq!(send(&mut br, 3, tcp(3, 2, 40000, 80)).0, Vec::<String>::new(), "10.0.0.3 → b:80: one clause only");
    let r = br.process(0, tcp(1, 2, 40003, 80));
    assert!(r.steps.iter().any(|s| matches!(s, OfStep::Conjunction { id: 7, clauses } if clauses.len() == 2)), "{:?}", r.steps);
}

#[test]
fn icmp_echo_and_reply_and_unsolicited_request_back() {
    let mut br = bridge(true);
    let req = |from, to| pkt(from, to, L4::Icmp { reply: false, id: 9 });
    let rep = |from, to| pkt(from, to, L4::Icmp { reply: true, id: 9 });
    assert_eq!(send(&mut br, 3, req(3, 2)).0, vec!["b".to_string()]);
    assert_eq!(send(&mut br, 2, rep(2, 3)).0, vec!["c".to_string()], "echo reply is established");
    assert_eq!(send(&mut br, 2, req(2, 3)).0, Vec::<String>::new(), "a request back is new: c allows no ingress");
}

#[test]
fn connections_expire_with_the_clock_and_a_revoking_mark_drops() {
    let mut br = bridge(true);
    send(&mut br, 1, tcp(1, 2, 40000, 22));
    // Neither side replied: 30 s later the connection is gone, and the
    // reply is new again (dropped).
    br.ct.now += 31;
    assert_eq!(send(&mut br, 2, tcp(2, 1, 22, 40000)).0, Vec::<String>::new());
    // Positive control at the same age: re-established, the reply passes.
    send(&mut br, 1, tcp(1, 2, 40000, 22));
    assert_eq!(send(&mut br, 2, tcp(2, 1, 22, 40000)).0, vec!["a".to_string()]);
    // Neutron revokes a connection when its rule goes away: the next packet
    // meets `ct_state=+est` with no rule in 82, gets ct_mark=1, and every
    // later packet of it is dropped in 72/82.
    let mut without = bridge(false);
    without.ct = br.ct.clone();
    assert_eq!(send(&mut without, 1, tcp(1, 2, 40000, 22)).0, Vec::<String>::new(), "est, but no rule: marked and dropped");
    assert!(without.ct.entries().any(|(z, e)| z == 1 && e.mark == 1));
    assert_eq!(send(&mut without, 2, tcp(2, 1, 22, 40000)), (vec![], 93), "the marked connection's reply is dropped");
}
