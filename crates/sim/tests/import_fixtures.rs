//! The import parser on captured dumps (`fixtures/`, with the command that
//! produced each file in `fixtures/README.md` and the lab's `manifest.json`):
//! one host alone, both layouts, every kind of item checked against what the
//! host really had.

use dvr_plan::{NamespaceKind, PortKind, RuleSelector, TableRef};
use dvr_sim::import::{HostDump, Imported, import};
use std::path::PathBuf;

fn load(dir: &str) -> Imported {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(dir);
    let mut d = HostDump { host: "compute1".into(), ..Default::default() };
    for f in std::fs::read_dir(path).unwrap().flatten() {
        d.files.insert(f.file_name().to_string_lossy().into(), std::fs::read_to_string(f.path()).unwrap());
    }
    import(&[d]).unwrap()
}

#[test]
fn lab_dump_json_layout() {
    let imp = load("lab-compute1");
    let h = &imp.plan.hosts[0];
    assert_eq!(h.dvr_mac.unwrap().to_string(), "fa:16:3f:d6:34:e2");
    let counts: Vec<(&str, usize, usize)> = h.bridges.iter().map(|b| (b.name.as_str(), b.ports.len(), b.flows.len())).collect();
    assert_eq!(counts, [("br-int", 8, 40), ("br-ex", 2, 9), ("br-vlan", 2, 16)], "the plan of compute1 has 40/9/16 flows");
    // The lab sets no other_config: the bridge name stands for its physical network.
    assert_eq!(h.bridges[2].physnet.as_deref(), Some("br-vlan"));
    // Port numbers in the dump are mapped back to names.
    let int = &h.bridges[0];
    assert!(
        int.flows.iter().any(|f| f.to_string() == "table=0, priority=5,in_port=int-br-vlan,dl_dst=fa:16:3f:d6:34:e2 actions=resubmit(,4)")
    );
    assert!(int.flows.iter().all(|f| f.matches.in_port.as_deref().is_none_or(|p| p.parse::<u32>().is_err())));
    let vifs: Vec<&str> =
        int.ports.iter().filter_map(|p| if let PortKind::Vif { instance } = &p.kind { Some(instance.as_str()) } else { None }).collect();
    assert_eq!(vifs, ["vm1", "vm2", "vm4"]);
    let qr = h.namespaces.iter().find(|n| n.kind == NamespaceKind::Qrouter).unwrap();
    assert_eq!(qr.devices.len(), 3);
    assert!(
        qr.rules
            .iter()
            .any(|r| r.priority == 32768 && r.selector == RuleSelector::From("192.168.1.9/32".parse().unwrap()) && r.table == 16)
    );
    assert!(qr.routes.iter().any(|r| r.table == TableRef::Id(16) && r.via == Some("169.254.86.237".parse().unwrap())));
    assert_eq!(qr.neighbours.len(), 10);
    let nat = qr.table("nat").unwrap();
    assert!(
        nat.chain("neutron-l3-agent-PREROUTING")
            .unwrap()
            .rules
            .iter()
            .any(|r| r.target == dvr_plan::IptTarget::Dnat { to: "192.168.1.9".parse().unwrap() })
    );
    let fip = h.namespaces.iter().find(|n| n.kind == NamespaceKind::Fip).unwrap();
    assert!(fip.sysctls.iter().any(|s| s.key.ends_with(".proxy_arp") && s.key.contains("fg-") && s.value == "1"));
    assert!(imp.notes.is_empty(), "{:?}", imp.notes);
    let vm1 = &imp.endpoints[0];
    assert_eq!((vm1.name.as_str(), vm1.addr.to_string()), ("vm1", "192.168.1.9/24".to_string()));
}

#[test]
fn real_neutron_text_layout() {
    let imp = load("real-neutron-compute1");
    let h = &imp.plan.hosts[0];
    let counts: Vec<(&str, usize)> = h.bridges.iter().map(|b| (b.name.as_str(), b.flows.len())).collect();
    assert_eq!(counts, [("br-int", 51), ("br-ex", 9), ("br-vlan", 16)]);
    // Physical networks named as Neutron's agent recorded them on br-int ports (other_config).
    let physnets: Vec<Option<&str>> = h.bridges.iter().map(|b| b.physnet.as_deref()).collect();
    assert_eq!(physnets, [None, Some("extnet"), Some("physnet1")]);
    let qr = h.namespaces.iter().find(|n| n.kind == NamespaceKind::Qrouter).unwrap();
    // IPv6 routes (`default via fe80::…`) and local/broadcast routes are not IPv4 routes of ours.
    assert_eq!(qr.routes.len(), 6);
    assert!(qr.routes.iter().all(|r| r.dev != "lo"));
    assert!(qr.rules.iter().any(|r| r.priority == 38738 && r.table == 16));
    // `from 192.168.1.1/24` is kept as the kernel prints it (host bits and all),
    // which is what the plan writes too; it still matches the whole subnet.
    let from = qr.rules.iter().find(|r| r.selector == RuleSelector::From("192.168.1.1/24".parse().unwrap())).expect("per-subnet rule");
    assert!(matches!(&from.selector, RuleSelector::From(n) if n.contains(&"192.168.1.200".parse::<std::net::Ipv4Addr>().unwrap())));
    assert_eq!(qr.neighbours.len(), 10, "only permanent IPv4 entries");
    let fip = h.namespaces.iter().find(|n| n.kind == NamespaceKind::Fip).unwrap();
    assert!(fip.rules.iter().any(|r| matches!(&r.selector, RuleSelector::Iif(d) if d.starts_with("fpr-"))));
    // The capture has no per-device proxy_arp: assumed, and said so.
    assert!(imp.notes.iter().any(|n| n.contains("proxy_arp; assumed 1")), "{:?}", imp.notes);
    let names: Vec<&str> = imp.endpoints.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["vm1", "vm2", "vm4"]);
}

/// iptables rules the twin cannot execute are skipped and reported, not silently dropped.
#[test]
fn unmodelled_iptables_rules_are_reported() {
    let mut notes = vec![];
    let t = dvr_sim::import::parse_iptables(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:x - [0:0]\n-A PREROUTING -j x\n-A x -p udp -j DNAT --to-destination 1.2.3.4\n-A x -d 10.0.0.5/32 -j DNAT --to-destination 192.168.1.9:80\nCOMMIT\n",
        &mut notes,
        "h ns",
    );
    assert_eq!(t[0].chain("x").unwrap().rules.len(), 1);
    assert_eq!(notes.len(), 1);
    assert!(notes[0].contains("-p udp") && notes[0].contains("not modelled"), "{notes:?}");
}
