//! Special destinations as Linux treats them (issue 13, finding 7): before,
//! `vm1 → 255.255.255.255`, `224.0.0.1`, `127.0.0.1` and `0.0.0.0` were all
//! routed to the upstream gateway. Now the limited broadcast and the all-hosts
//! group stay on vm1's link (broadcast/multicast MAC, no gateway, no router
//! forwards them), and loopback and `0.0.0.0` are answered by vm1 itself.

use dvr_plan::Profile;
use dvr_sim::stack::{Dev, KernelDrop, Stack, StackStep};
use dvr_sim::step::{Fate, SpecialStep, Step};
use dvr_sim::{L4, Trace, TraceRequest, World, trace};
use std::net::Ipv4Addr;

fn run(to: &str) -> Trace {
    let topo = dvr_model::seed();
    let plan = dvr_plan::plan(&topo, Profile::Walkthrough).unwrap();
    let mut w = World::build(&topo, &plan);
    dvr_sim::warm_up(&mut w);
    let req =
        TraceRequest { from: "vm1".into(), to: to.parse().unwrap(), l4: L4::Icmp { reply: false, id: 7 }, spoof_ip: None, spoof_mac: None };
    trace(&mut w, &req).unwrap()
}

/// Where copies of the request ended as delivered.
fn delivered_at(t: &Trace) -> Vec<&str> {
    t.hops.iter().filter(|h| h.fate == Some(Fate::Delivered)).map(|h| h.where_.as_str()).collect()
}

/// A broadcast or multicast from vm1 stays in network test1: vm2 (same host)
/// and vm3 (other host) get it, nothing outside the cloud or on test2 does, no
/// namespace sends anything on, and nobody answers.
fn stays_on_the_link(t: &Trace, mac: &str) {
    assert!(t.verdict.is_delivered(), "{t:#?}");
    let sent = t.hops.iter().find(|h| h.where_ == "vm1" && matches!(h.step, Step::Transmit { .. })).expect("vm1 sends");
    assert_eq!(sent.packet.eth_dst.to_string(), mac, "{sent:#?}");
    let got = delivered_at(t);
    for on_link in ["vm2", "vm3"] {
        assert!(got.contains(&on_link), "{on_link} (network test1) must receive it: {got:?}");
    }
    for off_link in ["vm4", "vm5", "ext1"] {
        assert!(!got.contains(&off_link), "{off_link} is not on test1: {got:?}");
    }
    assert!(t.hops.iter().all(|h| h.host != "external"), "nothing may reach the upstream gateway or outside");
    let forwarded: Vec<String> = t
        .hops
        .iter()
        .filter(|h| h.where_ != "vm1" && matches!(h.step, Step::Transmit { .. }) && h.packet.proto == "icmp")
        .map(|h| h.detail())
        .collect();
    assert!(forwarded.is_empty(), "no router forwards it: {forwarded:?}");
    assert!(t.reply.is_none(), "Linux ignores echo to broadcast/multicast");
}

#[test]
fn limited_broadcast_stays_on_the_link() {
    stays_on_the_link(&run("255.255.255.255"), "ff:ff:ff:ff:ff:ff");
}

#[test]
fn all_hosts_multicast_stays_on_the_link() {
    stays_on_the_link(&run("224.0.0.1"), "01:00:5e:00:00:01");
}

/// A group nobody joined: sent on the link, received by no one, forwarded by no one.
#[test]
fn unjoined_multicast_group_is_not_routed() {
    let t = run("239.1.2.3");
    assert!(!t.verdict.is_delivered(), "{t:#?}");
    assert!(delivered_at(&t).is_empty());
    assert!(t.hops.iter().all(|h| h.host != "external"));
    let sent = t.hops.iter().find(|h| h.where_ == "vm1" && matches!(h.step, Step::Transmit { .. })).expect("vm1 sends");
    assert_eq!(sent.packet.eth_dst.to_string(), "01:00:5e:01:02:03");
}

/// Loopback and `0.0.0.0` (which Linux turns into 127.0.0.1) never leave vm1,
/// and vm1 answers itself.
#[test]
fn loopback_and_this_host_are_answered_by_the_sender() {
    for to in ["127.0.0.1", "127.3.2.1", "0.0.0.0"] {
        let t = run(to);
        assert_eq!(t.verdict.delivered_to(), Some("vm1"), "{to}: {t:#?}");
        assert!(t.hops.iter().all(|h| h.where_ == "vm1"), "{to} must not leave vm1: {:#?}", t.hops);
        let reply = t.reply.as_ref().unwrap_or_else(|| panic!("{to}: vm1 answers its own echo"));
        assert_eq!(reply.verdict.delivered_to(), Some("vm1"));
        // The echo reply comes from the loopback address that was pinged
        // (127.0.0.1 for 0.0.0.0, as `ping 0.0.0.0` shows on Linux).
        let from = reply.hops.first().expect("reply hops").packet.ip_src.to_string();
        let want = if to == "0.0.0.0" { "127.0.0.1" } else { to };
        assert_eq!(from, want, "{to}: {:#?}", reply.hops);
    }
    let t = run("0.0.0.0");
    let this_host =
        |h: &&dvr_sim::Hop| matches!(h.step, Step::Special { action: SpecialStep::LocalDelivery { to }, .. } if to == Ipv4Addr::LOCALHOST);
    assert!(t.hops.iter().any(|h| this_host(&h)), "{:#?}", t.hops);
    assert!(t.hops.iter().any(|h| h.detail().contains("0.0.0.0 means this host")), "{:#?}", t.hops);
}

/// Positive control for the helpers above: an ordinary routed destination does
/// leave vm1 and reach the upstream gateway, so `stays_on_the_link` can fail.
#[test]
fn control_an_outside_address_is_routed() {
    let t = run("10.100.0.1");
    assert!(t.hops.iter().any(|h| h.host == "external"), "the control must reach the outside");
    assert!(t.hops.iter().any(|h| h.where_ != "vm1"));
}

fn router() -> Stack {
    let dev = |name: &str, mac: [u8; 6], addr: &str| Dev {
        name: name.into(),
        mac: dvr_model::MacAddr(mac),
        addrs: vec![addr.parse().unwrap()],
        proxy_arp: false,
    };
    let mut s = Stack::new(vec![dev("in0", [2, 0, 0, 0, 0, 1], "10.0.0.1/24"), dev("out0", [2, 0, 0, 0, 0, 2], "10.1.0.1/24")]);
    s.forward = true;
    s.routes.push(std::sync::Arc::new(dvr_plan::Route {
        table: dvr_plan::TableRef::Main,
        dst: "0.0.0.0/0".parse().unwrap(),
        via: Some("10.1.0.254".parse().unwrap()),
        dev: "out0".into(),
        src: None,
        origin: dvr_plan::Origin::here("test router default route"),
    }));
    s
}

fn frame_to(dst: Ipv4Addr, mac: dvr_model::MacAddr) -> dvr_sim::packet::Frame {
    dvr_sim::packet::Frame {
        src: dvr_model::MacAddr([2, 0, 0, 0, 0, 9]),
        dst: mac,
        vlan: None,
        payload: dvr_sim::packet::Payload::Ip { src: "10.0.0.9".parse().unwrap(), dst, l4: L4::Icmp { reply: false, id: 1 } },
    }
}

/// A forwarding namespace with a default route: broadcast is taken, not
/// forwarded; martian destinations from the wire are dropped; a unicast
/// destination (positive control) is forwarded.
#[test]
fn a_router_never_forwards_broadcast_and_drops_martians() {
    let own = dvr_model::MacAddr([2, 0, 0, 0, 0, 1]);
    let r = router().receive(0, frame_to(Ipv4Addr::BROADCAST, dvr_model::MacAddr::BROADCAST));
    assert!(r.delivered.is_some() && r.out.is_empty() && r.answer.is_none(), "{r:#?}");
    for martian in [Ipv4Addr::LOCALHOST, Ipv4Addr::UNSPECIFIED] {
        let r = router().receive(0, frame_to(martian, own));
        assert!(
            r.steps.iter().any(|s| matches!(s, StackStep::Drop(KernelDrop::Martian { dst, dev: 0 }) if *dst == martian)),
            "{martian}: {r:#?}"
        );
        assert!(r.out.is_empty() && r.delivered.is_none());
    }
    let r = router().receive(0, frame_to("8.8.8.8".parse().unwrap(), own));
    assert!(!r.out.is_empty(), "control: a unicast packet is forwarded (an ARP for the gateway goes out): {r:#?}");
}
