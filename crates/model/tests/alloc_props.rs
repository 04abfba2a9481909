//! Property tests of allocation over generated deployments: deterministic,
//! no collisions across hosts, and exhaustion is an error, never a silent reuse.

use dvr_model::load_str;
use proptest::prelude::*;
use std::collections::BTreeSet;

/// A deployment with `computes` compute nodes, `nets` VLAN networks on one
/// router and instances placed by `placement` (host index, network index).
fn yaml(computes: usize, nets: usize, prefix: u8, placement: &[(usize, usize)]) -> String {
    let mut y = String::from("version: 1\nhosts:\n  - {name: net0, role: network, bridge_mappings: {physnet1: br-vlan, extnet: br-ex}}\n");
    for c in 0..computes {
        y += &format!("  - {{name: cmp{c}, role: compute, bridge_mappings: {{physnet1: br-vlan, extnet: br-ex}}}}\n");
    }
    y += "networks:\n  - {name: ext, type: flat, physical_network: extnet, external: true, subnets: [{name: ext-v4, cidr: 10.0.0.0/16, enable_dhcp: false}]}\n";
    for n in 0..nets {
        y += &format!(
            "  - {{name: n{n}, type: vlan, physical_network: physnet1, subnets: [{{name: s{n}, cidr: 172.16.{n}.0/{prefix}}}]}}\n"
        );
    }
    let ifaces: Vec<String> = (0..nets).map(|n| format!("s{n}")).collect();
    y += &format!("routers:\n  - {{name: r1, interfaces: [{}], external_gateway: ext}}\n", ifaces.join(", "));
    y += "instances:\n";
    for (i, (h, n)) in placement.iter().enumerate() {
        y += &format!("  - {{name: vm{i}, host: cmp{}, network: n{}}}\n", h % computes, n % nets);
    }
    y
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn allocation_is_deterministic_and_collision_free(
        computes in 1usize..6, nets in 1usize..5,
        placement in proptest::collection::vec((0usize..6, 0usize..5), 0..40),
    ) {
        let y = yaml(computes, nets, 24, &placement);
        let a = load_str("gen.yaml", &y).unwrap();
        let b = load_str("gen.yaml", &y).unwrap();
        prop_assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());

        let dvr: Vec<_> = a.hosts.iter().filter_map(|h| h.dvr_mac).collect();
        prop_assert_eq!(dvr.iter().collect::<BTreeSet<_>>().len(), dvr.len(), "DVR MACs unique across hosts");
        let macs: BTreeSet<_> = a.ports.iter().map(|p| p.mac).collect();
        prop_assert_eq!(macs.len(), a.ports.len(), "port MACs unique");
        prop_assert!(macs.iter().all(|m| !dvr.contains(m)));
        let ips: BTreeSet<_> = a.ports.iter().filter(|p| p.host.is_some() || !matches!(p.owner, dvr_model::PortOwner::RouterInterfaceDistributed{..})).map(|p| p.ip).collect();
        let bound = a.ports.iter().filter(|p| p.host.is_some() || !matches!(p.owner, dvr_model::PortOwner::RouterInterfaceDistributed{..})).count();
        prop_assert_eq!(ips.len(), bound, "fixed IPs unique");
        for p in &a.ports {
            prop_assert!(a.subnet(p.subnet).cidr.contains(&p.ip));
        }
        for h in &a.hosts {
            let v: BTreeSet<_> = h.local_vlans.iter().map(|(_, v)| *v).collect();
            prop_assert_eq!(v.len(), h.local_vlans.len(), "local VLANs unique per host");
            let ll: BTreeSet<_> = h.fip_links.iter().map(|l| l.pair).collect();
            prop_assert_eq!(ll.len(), h.fip_links.len());
        }
    }

    #[test]
    fn exhausted_subnet_is_an_error(extra in 1usize..4) {
        // A /29 holds 6 hosts: gateway, DHCP, sg- … the rest for instances.
        let free = 6 - 3;
        let placement: Vec<(usize, usize)> = (0..free + extra).map(|i| (i, 0)).collect();
        let e = load_str("small.yaml", &yaml(1, 1, 29, &placement)).unwrap_err().to_string();
        prop_assert!(e.contains("no free address left in 172.16.0.0/29"), "{}", e);
        prop_assert!(e.contains("fix:"));
        let ok: Vec<(usize, usize)> = (0..free).map(|i| (i, 0)).collect();
        prop_assert!(load_str("fits.yaml", &yaml(1, 1, 29, &ok)).is_ok());
    }
}

/// `from_label` seeds are 64-bit FNV-1a of the label: the values the former
/// hand-written loop gave (computed independently), so every labelled
/// stream, e.g. the differential tests' packets, is unchanged.
#[test]
fn label_seeds_are_fnv1a_64() {
    use dvr_model::alloc::SplitMix64;
    for (label, seed) in [("", 0xcbf2_9ce4_8422_2325u64), ("a", 0xaf63_dc4c_8601_ec8c), ("differential", 0x2d4d_7083_6ca0_3f94)] {
        assert_eq!(SplitMix64::from_label(label).next_u64(), SplitMix64::new(seed).next_u64(), "{label:?}");
    }
}
