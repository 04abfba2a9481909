//! The pure converge core, without root: `diff_observed` on typed snapshots.
//! A host that matches its plan needs nothing; each kind of drift gives
//! exactly the operations that repair it; the recording backend shows the
//! dependency order.

use dvr_plan::{DeviceLink, HostPlan, Profile};
use dvr_realize::host::{self, Names, Observed, Op, Recording, RouteSpec};

fn names() -> Names {
    Names { prefix: "t".into() }
}

fn plan(host: &str) -> HostPlan {
    let p = dvr_plan::plan(&dvr_model::seed(), Profile::Walkthrough).expect("seed plans");
    p.hosts.into_iter().find(|h| h.host == host).expect("host in seed")
}

#[test]
fn converged_host_needs_nothing() {
    for h in ["compute1", "compute2", "network"] {
        let hp = plan(h);
        let ops = host::diff_observed(&names(), &hp, &host::converged(&names(), &hp));
        assert_eq!(ops, vec![], "{h}");
    }
}

#[test]
fn empty_host_is_built_from_scratch() {
    let hp = plan("compute1");
    let n = names();
    let ops = host::diff_observed(&n, &hp, &Observed::default());
    let count = |k: &str| ops.iter().filter(|o| o.kind() == k).count();
    assert_eq!(count("bridge"), hp.bridges.len());
    assert_eq!(count("flows"), hp.bridges.len());
    let netns_adds = ops.iter().filter(|o| matches!(o, Op::AddNetns { .. })).count();
    assert_eq!(netns_adds, hp.namespaces.len());
    assert!(!ops.iter().any(|o| matches!(o, Op::DelNetns { .. } | Op::DelBridge { .. } | Op::DelPort { .. })));
    // Every flow reload says the ports changed (fresh OpenFlow numbers).
    for o in &ops {
        if let Op::ReplaceFlows { why, .. } = o {
            assert!(why.ports_changed);
        }
    }
}

#[test]
fn one_missing_flow_is_one_reload_naming_it() {
    let (n, hp) = (names(), plan("compute1"));
    let mut o = host::converged(&n, &hp);
    let br = o.bridges.get_mut("br-int").expect("br-int");
    let gone = br.flows.iter().next().cloned().expect("flows");
    br.flows.remove(&gone);
    let ops = host::diff_observed(&n, &hp, &o);
    assert_eq!(ops.len(), 1, "{ops:#?}");
    match &ops[0] {
        Op::ReplaceFlows { bridge, why, .. } => {
            assert_eq!(bridge, "br-int");
            assert_eq!(why.missing, vec![gone]);
            assert!(why.unexpected.is_empty() && !why.ports_changed);
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn stale_items_are_removed() {
    let (n, hp) = (names(), plan("compute1"));
    let mut o = host::converged(&n, &hp);
    let stale_ns = n.svc_ns("compute1", "qrouter-gone");
    o.namespaces.insert(stale_ns.clone());
    o.bridges.insert("br-old".into(), Default::default());
    o.bridges.get_mut("br-int").expect("br-int").ports.insert("tapgone".into());
    let (ns_name, ns) = o.ns.iter_mut().find(|(k, _)| k.contains(".qrouter-")).expect("a qrouter on compute1");
    let ns_name = ns_name.clone();
    let extra = RouteSpec { dst: "10.9.9.0/24".into(), via: None, dev: "lo".into(), table: Some(77) };
    ns.routes.insert(extra.clone());
    let mut ops = host::diff_observed(&n, &hp, &o);
    ops.sort();
    let mut want = vec![
        Op::DelNetns { ns: stale_ns },
        Op::RouteDel { ns: ns_name, route: extra },
        Op::DelPort { bridge: "br-int".into(), port: "tapgone".into() },
        Op::DelBridge { bridge: "br-old".into() },
    ];
    want.sort();
    // The port removal reloads br-int's flows (port numbers): that is the one extra op.
    let reload: Vec<&Op> = ops.iter().filter(|o| matches!(o, Op::ReplaceFlows { .. })).collect();
    assert_eq!(reload.len(), 1);
    let rest: Vec<Op> = ops.iter().filter(|o| !matches!(o, Op::ReplaceFlows { .. })).cloned().collect();
    assert_eq!(rest, want);
}

#[test]
fn recreated_ovs_device_readds_its_port_and_reloads_flows_in_order() {
    let (n, hp) = (names(), plan("compute1"));
    let mut o = host::converged(&n, &hp);
    let (ns, dev) = hp
        .namespaces
        .iter()
        .find_map(|ns| ns.devices.iter().find(|d| matches!(d.link, DeviceLink::Ovs { .. })).map(|d| (ns, d)))
        .expect("an OVS-attached namespace device");
    let lab_ns = n.svc_ns("compute1", &ns.name);
    o.ns.get_mut(&lab_ns).expect("observed").links.remove(&dev.name);
    let ops = host::diff_observed(&n, &hp, &o);
    let mut rec = Recording::default();
    host::apply_with(&ops, &mut rec).expect("recording never fails");
    let pos = |f: &dyn Fn(&Op) -> bool| rec.applied.iter().position(f).expect("op present");
    let veth = pos(&|o| matches!(o, Op::AddVeth { .. }));
    let del = pos(&|o| matches!(o, Op::DelPort { port, .. } if *port == dev.name));
    let add = pos(&|o| matches!(o, Op::AddPort { port, .. } if *port == dev.name));
    let flows = pos(&|o| matches!(o, Op::ReplaceFlows { why, .. } if why.ports_changed));
    assert!(veth < del && del < add && add < flows, "{:#?}", rec.applied);
}

#[test]
fn drifted_sysctl_and_nat_are_rewritten() {
    let (n, hp) = (names(), plan("network"));
    let mut o = host::converged(&n, &hp);
    let (ns_name, ns) = o.ns.iter_mut().find(|(_, v)| v.iptables.is_some()).expect("a namespace with NAT");
    let ns_name = ns_name.clone();
    ns.iptables = Some("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n".into());
    let key = ns.sysctls.keys().next().cloned().expect("a sysctl");
    ns.sysctls.insert(key.clone(), Some("bogus".into()));
    let ops = host::diff_observed(&n, &hp, &o);
    assert_eq!(ops.len(), 2, "{ops:#?}");
    assert!(ops.iter().any(|o| matches!(o, Op::Sysctl { ns, key: k, .. } if *ns == ns_name && *k == key)));
    assert!(ops.iter().any(|o| matches!(o, Op::IptRestore { ns, why, .. } if *ns == ns_name && !why.missing.is_empty())));
}

#[test]
fn route_and_rule_keys_round_trip() {
    for a in [vec!["default", "via", "169.254.106.115", "dev", "rfp-1", "table", "16"], vec!["10.0.0.0/24", "dev", "qr-1"]] {
        let a: Vec<String> = a.into_iter().map(String::from).collect();
        assert_eq!(RouteSpec::from_args(&a).expect("parses").args(), a);
    }
    let r: Vec<String> = ["priority", "32768", "from", "192.168.1.0/24", "table", "16"].map(String::from).to_vec();
    assert_eq!(host::RuleSpec::from_args(&r).expect("parses").args(), r);
    assert!(RouteSpec::from_args(&["x".into(), "proto".into(), "static".into()]).is_none());
}

/// VXLAN: an empty host gets br-tun's tunnel ports as `type=vxlan` with
/// Neutron's options; the lab's `br-underlay` (host infrastructure) is never
/// deleted; learned br-tun flows (hard_timeout) are left out of a dump.
#[test]
fn vxlan_ports_are_added_with_their_options_and_br_underlay_is_kept() {
    let topo = dvr_model::load_str("seed-vxlan.yaml", dvr_model::SEED_VXLAN_YAML).unwrap();
    let p = dvr_plan::plan(&topo, Profile::Walkthrough).unwrap();
    let hp = p.hosts.into_iter().find(|h| h.host == "compute1").unwrap();
    let mut o = host::converged(&names(), &hp);
    assert_eq!(host::diff_observed(&names(), &hp, &o), vec![]);
    o.bridges.insert(dvr_realize::underlay::BRIDGE.into(), Default::default());
    assert_eq!(host::diff_observed(&names(), &hp, &o), vec![], "br-underlay is not deleted");
    o.bridges.insert("br-stale".into(), Default::default());
    assert!(host::diff_observed(&names(), &hp, &o).iter().any(|op| matches!(op, Op::DelBridge { bridge } if bridge == "br-stale")));
    o.bridges.remove("br-tun");
    let ops = host::diff_observed(&names(), &hp, &o);
    let vx: Vec<&Op> = ops.iter().filter(|op| matches!(op, Op::AddPort { port, .. } if port.starts_with("vxlan-"))).collect();
    assert_eq!(vx.len(), 2, "compute1 tunnels to the network node and compute2: {ops:?}");
    for op in vx {
        let Op::AddPort { settings, .. } = op else { unreachable!() };
        assert_eq!(settings[0], "type=vxlan");
        assert!(settings.contains(&"options:key=flow".to_string()) && settings.contains(&"options:dst_port=4789".to_string()));
        assert!(settings.contains(&"options:local_ip=172.16.0.2".to_string()), "{settings:?}");
    }
    let dump = " cookie=0x0, duration=1s, table=20, n_packets=0, n_bytes=0, priority=0 actions=resubmit(,22)\n cookie=0x0, duration=1s, table=20, n_packets=1, n_bytes=98, hard_timeout=300, idle_age=0, priority=1,vlan_tci=0x0001/0x0fff,dl_dst=fa:16:3e:aa:94:29 actions=load:0->NXM_OF_VLAN_TCI[],output:3\n table=10, priority=1 actions=learn(table=20,hard_timeout=300,priority=1,NXM_OF_VLAN_TCI[0..11]),output:1\n";
    let kept = host::without_learned(dump);
    assert_eq!(kept.lines().count(), 2, "{kept}");
    assert!(!kept.contains("vlan_tci=0x0001/0x0fff") && kept.contains("learn(table=20,hard_timeout=300"));
}
