//! Bad topology files. Each case is the seed lab with one small edit (or a
//! minimal file) and must be rejected with a message that names the file, the
//! object and the field, says what is wrong and ends in a `fix:`.

use dvr_model::{Problem, SEED_YAML, TopologyError, load_file, load_str};

const FILE: &str = "test.yaml";

/// The seed lab with each `(from, to)` replaced once. Panics when `from` is
/// absent, so a change of the seed cannot silently turn a case into a no-op.
fn seed_with(edits: &[(&str, &str)]) -> String {
    let mut y = SEED_YAML.to_string();
    for (from, to) in edits {
        assert!(y.contains(from), "the seed lab no longer contains {from:?}");
        y = y.replacen(from, to, 1);
    }
    y
}

/// 1-based line of the first occurrence of `needle`.
fn line_of(yaml: &str, needle: &str) -> usize {
    yaml.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle:?} not in the file")) + 1
}

fn load_err(yaml: &str) -> TopologyError {
    match load_str(FILE, yaml) {
        Ok(_) => panic!("this topology was accepted but must be rejected:\n{yaml}"),
        Err(e) => e,
    }
}

/// Every problem of `e` has a non-empty fix, and the message names the file.
fn assert_well_formed(e: &TopologyError) {
    let full = e.to_string();
    assert!(full.starts_with(FILE), "message does not start with the file name:\n{full}");
    for p in e.problems() {
        let fix = p.split("fix:").nth(1).unwrap_or_else(|| panic!("problem without `fix:`:\n{p}"));
        assert!(!fix.trim().is_empty(), "empty fix:\n{p}");
    }
}

/// The problem of an `Invalid` error naming `object` and `field` and saying
/// every part of `what`; returns the error for further checks.
fn expect(yaml: &str, object: &str, field: &str, what: &[&str]) -> TopologyError {
    let e = load_err(yaml);
    assert_well_formed(&e);
    let full = e.to_string();
    assert!(matches!(e, TopologyError::Invalid { .. }), "expected a validation error, got:\n{full}");
    let field_text = format!("field `{field}`");
    let found = e.problems().into_iter().any(|p| {
        p.starts_with(&format!("{object}:")) && (field.is_empty() || p.contains(&field_text)) && what.iter().all(|w| p.contains(w))
    });
    assert!(found, "no problem on `{object}` {field_text} saying {what:?} in:\n{full}");
    e
}

/// Like [`expect`], and the problem is the only one (no cascade of follow-ups).
fn expect_only(yaml: &str, object: &str, field: &str, what: &[&str]) -> TopologyError {
    let e = expect(yaml, object, field, what);
    assert_eq!(e.problems().len(), 1, "expected one problem:\n{e}");
    e
}

/// A parse error at `line` naming `path` (e.g. `hosts[1].role`) and saying `what`.
fn expect_syntax(yaml: &str, line: usize, path: &str, what: &[&str]) -> TopologyError {
    let e = load_err(yaml);
    assert_well_formed(&e);
    let full = e.to_string();
    assert!(matches!(e, TopologyError::Syntax { .. }), "expected a syntax error, got:\n{full}");
    assert!(full.starts_with(&format!("{FILE}:{line}:")), "expected line {line}:\n{full}");
    assert!(full.contains(path), "expected {path:?} in:\n{full}");
    for w in what {
        assert!(full.contains(w), "expected {w:?} in:\n{full}");
    }
    assert!(!full.contains(&format!("at line {line} column")), "the location is repeated:\n{full}");
    e
}

// ---------------------------------------------------------------- the file

#[test]
fn the_seed_lab_is_valid() {
    load_str(FILE, SEED_YAML).unwrap();
}

#[test]
fn missing_version() {
    let y = seed_with(&[("version: 1\n", "")]);
    expect_only(&y, "topology", "version", &["missing", "version: 1"]);
}

#[test]
fn version_2() {
    let y = seed_with(&[("version: 1\n", "version: 2\n")]);
    expect_only(&y, "topology", "version", &["version 2 is not supported"]);
}

#[test]
fn version_not_a_number() {
    let y = seed_with(&[("version: 1\n", "version: one\n")]);
    let line = line_of(&y, "version: one");
    expect_syntax(&y, line, "version", &["invalid type", "expected u64"]);
}

#[test]
fn unknown_key_in_a_host_is_a_typo_with_line_and_suggestion() {
    let y = seed_with(&[("  - name: compute1\n    role: compute\n", "  - name: compute1\n    role: compute\n    brige_mappings: {}\n")]);
    let line = line_of(&y, "brige_mappings");
    let e = expect_syntax(&y, line, "hosts[2]", &["unknown field `brige_mappings`", "did you mean `bridge_mappings`"]);
    assert!(e.to_string().contains("fix:"));
}

#[test]
fn unknown_top_level_key() {
    let y = seed_with(&[("routers:\n", "router:\n")]);
    let line = line_of(&y, "router:");
    expect_syntax(&y, line, "unknown field `router`", &["did you mean `routers`"]);
}

#[test]
fn unknown_key_without_a_near_name_gets_no_suggestion() {
    let y = seed_with(&[("name: seed-lab\n", "name: seed-lab\nowner: me\n")]);
    let line = line_of(&y, "owner: me");
    let e = expect_syntax(&y, line, "unknown field `owner`", &["remove or rename the key"]);
    assert!(!e.to_string().contains("did you mean"), "{e}");
}

#[test]
fn yaml_syntax_error() {
    let y = seed_with(&[("interfaces: [test1-v4, test2-v4]", "interfaces: [test1-v4, test2-v4")]);
    // The parser notices at the next line, where the flow sequence should have ended.
    let line = line_of(&y, "interfaces: [test1-v4, test2-v4") + 1;
    expect_syntax(&y, line, "flow sequence", &["check indentation"]);
}

#[test]
fn tab_indentation() {
    let y = seed_with(&[("    role: network\n", "\trole: network\n")]);
    let line = line_of(&y, "\trole");
    expect_syntax(&y, line, "tab", &["fix:"]);
}

#[test]
fn missing_required_key() {
    let y = seed_with(&[("  - name: compute2\n    role: compute\n", "  - name: compute2\n")]);
    let line = line_of(&y, "name: compute2");
    expect_syntax(&y, line, "hosts[3]", &["missing field `role`", "add the required key `role`"]);
}

#[test]
fn a_list_instead_of_a_mapping() {
    expect_syntax("- a\n- b\n", 1, "invalid type", &["expected struct"]);
}

#[test]
fn duplicate_key() {
    // The parser locates a duplicate key at the start of its mapping.
    let y = seed_with(&[("name: seed-lab\n", "name: seed-lab\nname: again\n")]);
    let line = line_of(&y, "version: 1");
    expect_syntax(&y, line, "duplicate field `name`", &["write each key once"]);
    let y = seed_with(&[("    role: network\n", "    role: network\n    role: compute\n")]);
    let line = line_of(&y, "- name: network");
    expect_syntax(&y, line, "hosts[1]", &["duplicate field `role`"]);
}

// ---------------------------------------------------------------- hosts

#[test]
fn bad_role_value() {
    let y = seed_with(&[("  - name: compute2\n    role: compute", "  - name: compute2\n    role: compte")]);
    let line = line_of(&y, "role: compte");
    expect_syntax(&y, line, "hosts[3].role", &["unknown variant `compte`", "`controller`, `network`, `compute`", "did you mean `compute`"]);
}

#[test]
fn duplicate_host_name() {
    let y = seed_with(&[("\nnetworks:\n", "  - name: compute1\n    role: compute\n\nnetworks:\n")]);
    expect_only(&y, "hosts[4] (compute1)", "name", &["duplicate name", "hosts[2] (compute1) is also called `compute1`"]);
}

#[test]
fn renaming_a_host_leaves_its_instances_dangling() {
    let y = seed_with(&[("  - name: compute2\n", "  - name: compute1\n")]);
    expect(&y, "hosts[3] (compute1)", "name", &["duplicate name"]);
    expect(&y, "instances[2] (vm3)", "host", &["no host is called `compute2`"]);
}

#[test]
fn invalid_host_name() {
    let y = seed_with(&[("  - name: compute2\n", "  - name: compute 2\n")]);
    expect(&y, "hosts[3] (compute 2)", "name", &["not a valid name"]);
}

#[test]
fn invalid_dvr_mac() {
    let y = seed_with(&[("    role: network\n", "    role: network\n    dvr_mac: fa:16:3f:00:00:zz\n")]);
    expect_only(&y, "hosts[1] (network)", "dvr_mac", &["`fa:16:3f:00:00:zz` is not a MAC address"]);
}

#[test]
fn multicast_dvr_mac() {
    let y = seed_with(&[("    role: network\n", "    role: network\n    dvr_mac: 01:00:5e:00:00:01\n")]);
    expect_only(&y, "hosts[1] (network)", "dvr_mac", &["not a unicast address"]);
}

#[test]
fn duplicate_dvr_mac() {
    let y = seed_with(&[
        ("    role: network\n", "    role: network\n    dvr_mac: fa:16:3f:00:00:01\n"),
        ("  - name: compute1\n    role: compute\n", "  - name: compute1\n    role: compute\n    dvr_mac: FA:16:3F:00:00:01\n"),
    ]);
    expect_only(&y, "hosts[2] (compute1)", "dvr_mac", &["fa:16:3f:00:00:01 is also the DVR MAC of hosts[1]"]);
}

#[test]
fn dvr_mac_on_a_controller() {
    let y = seed_with(&[("    role: controller\n", "    role: controller\n    dvr_mac: fa:16:3f:00:00:09\n")]);
    expect_only(&y, "hosts[0] (controller)", "dvr_mac", &["a controller has no DVR MAC"]);
}

#[test]
fn bridge_mappings_on_a_controller() {
    let y = seed_with(&[("    role: controller\n", "    role: controller\n    bridge_mappings: {physnet1: br-vlan}\n")]);
    expect_only(&y, "hosts[0] (controller)", "bridge_mappings", &["runs no dataplane"]);
}

#[test]
fn nics_key_without_bridge_mapping() {
    let y = seed_with(&[("    role: network\n", "    role: network\n    nics: {physnet9: eth9}\n")]);
    expect_only(&y, "hosts[1] (network)", "nics", &["physical network `physnet9` has a NIC but no bridge mapping", "physnet9: <bridge>"]);
}

#[test]
fn nic_name_too_long() {
    let y = seed_with(&[("    role: network\n", "    role: network\n    nics: {physnet1: enp0s31f6-uplink0}\n")]);
    expect_only(&y, "hosts[1] (network)", "nics", &["`physnet1: enp0s31f6-uplink0` does not name a valid network interface", "15"]);
}

#[test]
fn one_nic_for_two_physical_networks() {
    let y = seed_with(&[("    role: network\n", "    role: network\n    nics: {extnet: eth1}\n")]);
    expect_only(&y, "hosts[1] (network)", "nics", &["NIC `eth1` is used for two physical networks"]);
}

#[test]
fn reserved_bridge_name() {
    let y = seed_with(&[(
        "    role: network\n    bridge_mappings: {physnet1: br-vlan, extnet: br-ex}",
        "    role: network\n    bridge_mappings: {physnet1: br-int, extnet: br-ex}",
    )]);
    expect_only(&y, "hosts[1] (network)", "bridge_mappings", &["`br-int` is reserved"]);
}

// ---------------------------------------------------------------- networks

#[test]
fn vlan_network_without_physical_network() {
    let y = seed_with(&[("    physical_network: physnet1\n    segmentation_id: 148\n", "    segmentation_id: 148\n")]);
    expect_only(&y, "networks[1] (test2)", "physical_network", &["a vlan network needs a physical network"]);
}

#[test]
fn physical_network_mapped_by_no_host() {
    let y = seed_with(&[(
        "    physical_network: physnet1\n    segmentation_id: 148\n",
        "    physical_network: physnet2\n    segmentation_id: 148\n",
    )]);
    let e = expect(
        &y,
        "networks[1] (test2)",
        "physical_network",
        &["physical network `physnet2` is in no host's bridge_mappings", "physnet2: <bridge>"],
    );
    // The instances on test2 then have no mapping on their hosts either; that is
    // the same mistake seen from the instances, and must name them.
    assert!(e.to_string().contains("instances[3] (vm4)"), "{e}");
}

#[test]
fn vlan_id_5000() {
    let y = seed_with(&[("segmentation_id: 148", "segmentation_id: 5000")]);
    expect_only(&y, "networks[1] (test2)", "segmentation_id", &["5000 is not a VLAN id", "1..=4094"]);
}

#[test]
fn vlan_id_0() {
    let y = seed_with(&[("segmentation_id: 148", "segmentation_id: 0")]);
    expect_only(&y, "networks[1] (test2)", "segmentation_id", &["0 is not a VLAN id"]);
}

#[test]
fn negative_vlan_id() {
    let y = seed_with(&[("segmentation_id: 148", "segmentation_id: -1")]);
    let line = line_of(&y, "segmentation_id: -1");
    expect_syntax(&y, line, "networks[1].segmentation_id", &["invalid type"]);
}

#[test]
fn duplicate_vlan_on_a_physnet() {
    let y = seed_with(&[("segmentation_id: 148", "segmentation_id: 196")]);
    expect_only(&y, "networks[1] (test2)", "segmentation_id", &["VLAN 196 on `physnet1` is also used by networks[0]"]);
}

#[test]
fn out_of_range_vlan_does_not_clash_by_truncation() {
    // 65732 = 65536 + 196: it must be reported as invalid, and must not make
    // the valid VLAN 196 of the other network look like a duplicate.
    let y = seed_with(&[("segmentation_id: 196", "segmentation_id: 65732"), ("segmentation_id: 148", "segmentation_id: 196")]);
    expect_only(&y, "networks[0] (test1)", "segmentation_id", &["65732 is not a VLAN id"]);
}

#[test]
fn flat_network_with_segmentation_id() {
    let y = seed_with(&[(
        "    type: flat\n    physical_network: extnet\n",
        "    type: flat\n    physical_network: extnet\n    segmentation_id: 7\n",
    )]);
    expect_only(&y, "networks[2] (external)", "segmentation_id", &["a flat network is untagged"]);
}

#[test]
fn cidr_with_host_bits_set() {
    let y = seed_with(&[("cidr: 192.168.2.0/24", "cidr: 192.168.2.5/24")]);
    expect_only(&y, "networks[1] (test2).subnets[0] (test2-v4)", "cidr", &["192.168.2.5/24 has host bits set", "192.168.2.0/24"]);
}

#[test]
fn cidr_not_ipv4_is_reported_once() {
    let y = seed_with(&[("cidr: 192.168.2.0/24", "cidr: fd00::/64")]);
    // Routers and instances that use the broken subnet must not add
    // "no such subnet" follow-ups.
    expect_only(&y, "networks[1] (test2).subnets[0] (test2-v4)", "cidr", &["`fd00::/64` is not an IPv4 CIDR"]);
}

#[test]
fn subnet_too_small() {
    let y = seed_with(&[
        ("cidr: 192.168.2.0/24, gateway_ip: 192.168.2.1", "cidr: 192.168.2.0/31"),
        ("network: test2, ip: 192.168.2.10}", "network: test2}"),
        ("network: test2, ip: 192.168.2.20}", "network: test2}"),
    ]);
    expect(&y, "networks[1] (test2).subnets[0] (test2-v4)", "cidr", &["has no room for a gateway and ports"]);
}

#[test]
fn gateway_outside_subnet() {
    let y = seed_with(&[("gateway_ip: 192.168.2.1", "gateway_ip: 192.168.3.1")]);
    expect_only(&y, "networks[1] (test2).subnets[0] (test2-v4)", "gateway_ip", &["192.168.3.1 is not a host address of 192.168.2.0/24"]);
}

#[test]
fn duplicate_subnet_name_names_both_places() {
    let y = seed_with(&[("{name: test2-v4,", "{name: test1-v4,")]);
    expect(
        &y,
        "networks[1] (test2).subnets[0] (test1-v4)",
        "name",
        &["networks[0] (test1).subnets[0] (test1-v4) is also called `test1-v4`"],
    );
}

#[test]
fn external_network_without_subnet() {
    let y = seed_with(&[
        ("    external: true\n    subnets:\n", "    external: true\n    subnets: []\n"),
        ("      - {name: external-v4, cidr: 10.100.0.0/24, gateway_ip: 10.100.0.1, enable_dhcp: false}\n", ""),
    ]);
    expect(&y, "networks[2] (external)", "subnets", &["an external network needs a subnet"]);
}

// ---------------------------------------------------------------- routers

#[test]
fn overlapping_cidrs_on_one_router() {
    let y = seed_with(&[("cidr: 192.168.2.0/24, gateway_ip: 192.168.2.1", "cidr: 192.168.0.0/16, gateway_ip: 192.168.2.1")]);
    expect(&y, "routers[0] (router1)", "interfaces", &["192.168.0.0/16 (test2-v4) overlaps 192.168.1.0/24 (test1-v4) on the same router"]);
}

#[test]
fn router_interface_naming_an_unknown_subnet() {
    let y = seed_with(&[("interfaces: [test1-v4, test2-v4]", "interfaces: [test1-v4, test3-v4]")]);
    expect(&y, "routers[0] (router1)", "interfaces", &["no subnet is called `test3-v4`"]);
}

#[test]
fn router_interface_on_the_external_network() {
    let y = seed_with(&[("interfaces: [test1-v4, test2-v4]", "interfaces: [test1-v4, test2-v4, external-v4]")]);
    expect_only(&y, "routers[0] (router1)", "interfaces", &["`external-v4` belongs to external network `external`", "external_gateway"]);
}

#[test]
fn subnet_listed_twice_on_a_router() {
    let y = seed_with(&[("interfaces: [test1-v4, test2-v4]", "interfaces: [test1-v4, test2-v4, test1-v4]")]);
    expect_only(&y, "routers[0] (router1)", "interfaces", &["listed twice"]);
}

#[test]
fn subnet_on_two_routers() {
    let y = seed_with(&[(
        "    external_gateway: external\n",
        "    external_gateway: external\n  - name: router2\n    interfaces: [test2-v4]\n",
    )]);
    expect_only(&y, "routers[1] (router2)", "interfaces", &["subnet `test2-v4` is already attached to routers[0]"]);
}

#[test]
fn external_gateway_not_external() {
    let y = seed_with(&[("external_gateway: external", "external_gateway: test2")]);
    expect(&y, "routers[0] (router1)", "external_gateway", &["network `test2` is not external", "external: true"]);
}

#[test]
fn external_gateway_unknown_network() {
    let y = seed_with(&[("external_gateway: external", "external_gateway: internet")]);
    expect(&y, "routers[0] (router1)", "external_gateway", &["no network is called `internet`"]);
}

#[test]
fn external_subnet_overlapping_a_router_interface() {
    let y = seed_with(&[
        ("cidr: 10.100.0.0/24, gateway_ip: 10.100.0.1", "cidr: 192.168.0.0/16, gateway_ip: 192.168.100.1"),
        ("{ip: 10.100.0.7,", "{ip: 192.168.100.7,"),
        ("ip: 10.100.0.14}", "ip: 192.168.100.14}"),
    ]);
    expect(
        &y,
        "routers[0] (router1)",
        "external_gateway",
        &["external subnet `external-v4` (192.168.0.0/16) overlaps interface subnet `test1-v4`"],
    );
}

#[test]
fn distributed_router_without_a_network_node() {
    let y = seed_with(&[("    role: network\n", "    role: compute\n")]);
    let e = expect(&y, "routers[0] (router1)", "", &["a distributed router needs a network node", "no host has `role: network`"]);
    // DHCP needs the network node as well, and says so per subnet.
    expect(&y, "networks[0] (test1).subnets[0] (test1-v4)", "enable_dhcp", &["no host has `role: network`"]);
    assert!(e.to_string().contains("fix: add a host with `role: network`"), "{e}");
}

// ---------------------------------------------------------------- host mappings

#[test]
fn network_node_missing_a_tenant_physnet() {
    let y = seed_with(&[(
        "  - name: network\n    role: network\n    bridge_mappings: {physnet1: br-vlan, extnet: br-ex}",
        "  - name: network\n    role: network\n    bridge_mappings: {extnet: br-ex}",
    )]);
    expect_only(
        &y,
        "hosts[1] (network)",
        "bridge_mappings",
        &["physical network `physnet1` is not mapped", "the DHCP port of network `test1`", "physnet1: br-vlan"],
    );
}

#[test]
fn network_node_missing_the_external_physnet() {
    let y = seed_with(&[(
        "  - name: network\n    role: network\n    bridge_mappings: {physnet1: br-vlan, extnet: br-ex}",
        "  - name: network\n    role: network\n    bridge_mappings: {physnet1: br-vlan}",
    )]);
    expect_only(&y, "hosts[1] (network)", "bridge_mappings", &["`extnet` is not mapped", "gateway (qg-) port of router `router1`"]);
}

#[test]
fn compute_host_missing_the_external_physnet_for_its_fip_port() {
    let y = seed_with(&[(
        "  - name: compute2\n    role: compute\n    bridge_mappings: {physnet1: br-vlan, extnet: br-ex}",
        "  - name: compute2\n    role: compute\n    bridge_mappings: {physnet1: br-vlan}",
    )]);
    expect_only(&y, "hosts[3] (compute2)", "bridge_mappings", &["`extnet` is not mapped", "fg-", "router `router1`", "instance `vm3`"]);
}

#[test]
fn instance_host_missing_its_network_physnet() {
    let y = seed_with(&[(
        "  - name: compute2\n    role: compute\n    bridge_mappings: {physnet1: br-vlan, extnet: br-ex}",
        "  - name: compute2\n    role: compute\n    bridge_mappings: {extnet: br-ex}",
    )]);
    expect(&y, "instances[2] (vm3)", "host", &["host `compute2` has no bridge mapping for physical network `physnet1`"]);
}

// ---------------------------------------------------------------- instances

#[test]
fn instance_on_an_unknown_host() {
    let y = seed_with(&[("{name: vm3, host: compute2", "{name: vm3, host: compute3")]);
    expect_only(&y, "instances[2] (vm3)", "host", &["no host is called `compute3`"]);
}

#[test]
fn instance_on_a_controller() {
    let y = seed_with(&[("{name: vm3, host: compute2", "{name: vm3, host: controller")]);
    expect_only(&y, "instances[2] (vm3)", "host", &["host `controller` has role controller", "role: compute"]);
}

#[test]
fn instance_on_the_network_node() {
    let y = seed_with(&[("{name: vm3, host: compute2", "{name: vm3, host: network")]);
    expect_only(&y, "instances[2] (vm3)", "host", &["has role network"]);
}

#[test]
fn instance_on_an_unknown_network() {
    let y = seed_with(&[("{name: vm3, host: compute2, network: test1", "{name: vm3, host: compute2, network: test9")]);
    expect_only(&y, "instances[2] (vm3)", "network", &["no network is called `test9`"]);
}

#[test]
fn instance_on_the_external_network() {
    let y =
        seed_with(&[("{name: vm3, host: compute2, network: test1, ip: 192.168.1.20}", "{name: vm3, host: compute2, network: external}")]);
    expect_only(&y, "instances[2] (vm3)", "network", &["`external` is an external network", "floating IP"]);
}

#[test]
fn instance_ip_outside_subnet() {
    let y = seed_with(&[("ip: 192.168.1.20}", "ip: 192.168.2.20}")]);
    expect_only(&y, "instances[2] (vm3)", "ip", &["192.168.2.20 is outside the subnets of network `test1` (192.168.1.0/24)"]);
}

#[test]
fn instance_ip_equal_to_the_gateway() {
    let y = seed_with(&[("ip: 192.168.1.20}", "ip: 192.168.1.1}")]);
    expect_only(&y, "instances[2] (vm3)", "ip", &["192.168.1.1 is the gateway of subnet `test1-v4`"]);
}

#[test]
fn instance_ip_equal_to_the_broadcast() {
    let y = seed_with(&[("ip: 192.168.1.20}", "ip: 192.168.1.255}")]);
    expect_only(&y, "instances[2] (vm3)", "ip", &["network or broadcast address"]);
}

#[test]
fn duplicate_instance_ips() {
    let y = seed_with(&[("ip: 192.168.1.20}", "ip: 192.168.1.9}")]);
    expect_only(&y, "instances[2] (vm3)", "ip", &["192.168.1.9 is already used by instances[0] (vm1)"]);
}

#[test]
fn duplicate_instance_names() {
    let y = seed_with(&[("{name: vm3,", "{name: vm2,")]);
    expect_only(&y, "instances[2] (vm2)", "name", &["instances[1] (vm2) is also called `vm2`"]);
}

#[test]
fn duplicate_macs() {
    let y = seed_with(&[
        ("ip: 192.168.1.9}", "ip: 192.168.1.9, mac: fa:16:3e:00:01:09}"),
        ("ip: 192.168.2.20}", "ip: 192.168.2.20, mac: fa:16:3e:00:01:09}"),
    ]);
    expect_only(&y, "instances[4] (vm5)", "mac", &["fa:16:3e:00:01:09 is also the MAC of instances[0] (vm1)"]);
}

#[test]
fn instance_mac_equal_to_a_dvr_mac() {
    let y = seed_with(&[
        ("    role: network\n", "    role: network\n    dvr_mac: fa:16:3e:aa:00:01\n"),
        ("ip: 192.168.1.9}", "ip: 192.168.1.9, mac: fa:16:3e:aa:00:01}"),
    ]);
    expect_only(&y, "instances[0] (vm1)", "mac", &["fa:16:3e:aa:00:01 is the DVR MAC of hosts[1] (network)"]);
}

#[test]
fn instance_mac_in_the_dvr_range() {
    let y = seed_with(&[("ip: 192.168.1.9}", "ip: 192.168.1.9, mac: fa:16:3f:00:00:42}")]);
    expect_only(&y, "instances[0] (vm1)", "mac", &["DVR base MAC range"]);
}

#[test]
fn instance_mac_not_a_mac() {
    let y = seed_with(&[("ip: 192.168.1.9}", "ip: 192.168.1.9, mac: fa:16:3e:00:01}")]);
    let line = line_of(&y, "mac: fa:16:3e:00:01}");
    expect_syntax(&y, line, "instances[0]", &["`fa:16:3e:00:01` is not a MAC address", "`mac`", "fa:16:3e:00:01:09"]);
}

#[test]
fn instance_ip_not_an_address() {
    let y = seed_with(&[("ip: 192.168.1.9}", "ip: 192.168.1.300}")]);
    let line = line_of(&y, "192.168.1.300");
    expect_syntax(&y, line, "instances[0].ip", &["invalid IPv4 address", "four decimal octets"]);
}

#[test]
fn exhausted_ip_pool() {
    // A /29 has 6 host addresses: the gateway, the DHCP port and the router's
    // SNAT port take 3, so 5 instances do not fit.
    let y = seed_with(&[
        ("cidr: 192.168.2.0/24, gateway_ip: 192.168.2.1", "cidr: 192.168.2.0/29, gateway_ip: 192.168.2.1"),
        ("network: test2, ip: 192.168.2.10}", "network: test2}"),
        ("network: test2, ip: 192.168.2.20}", "network: test2}"),
        (
            "  - {name: vm1,",
            "  - {name: a1, host: compute1, network: test2}\n  \
             - {name: a2, host: compute1, network: test2}\n  \
             - {name: a3, host: compute2, network: test2}\n  - {name: vm1,",
        ),
    ]);
    let e = expect(
        &y,
        "networks[1] (test2).subnets[0] (test2-v4)",
        "cidr",
        &["no free address left in 192.168.2.0/29 (6 host addresses) for instance `vm4`", "larger subnet"],
    );
    assert!(e.to_string().contains("instance `vm5`"), "{e}");
}

#[test]
fn duplicate_endpoint_names_across_instances_and_external_hosts() {
    let y = seed_with(&[("{name: ext1,", "{name: vm2,")]);
    expect_only(&y, "external_hosts[0] (vm2)", "name", &["instances[1] (vm2) is also called `vm2`", "share one namespace"]);
}

// ---------------------------------------------------------------- floating IPs

#[test]
fn floating_ip_outside_the_external_subnet() {
    let y = seed_with(&[("{ip: 10.100.0.7,", "{ip: 10.200.0.7,")]);
    expect_only(
        &y,
        "floating_ips[0] (10.200.0.7)",
        "ip",
        &["10.200.0.7 is outside the subnets of external network `external` (10.100.0.0/24)"],
    );
}

#[test]
fn unassociated_floating_ip_outside_every_external_subnet() {
    let y = seed_with(&[("{ip: 10.100.0.7, instance: vm1}", "{ip: 172.16.0.7}")]);
    expect_only(&y, "floating_ips[0] (172.16.0.7)", "ip", &["172.16.0.7 is outside every external subnet (10.100.0.0/24)"]);
}

#[test]
fn floating_ip_equal_to_the_external_gateway() {
    let y = seed_with(&[("{ip: 10.100.0.7,", "{ip: 10.100.0.1,")]);
    expect_only(&y, "floating_ips[0] (10.100.0.1)", "ip", &["10.100.0.1 is the gateway, network or broadcast address of 10.100.0.0/24"]);
}

#[test]
fn floating_ip_for_an_instance_without_a_router_gateway() {
    let y = seed_with(&[("    external_gateway: external\n", "")]);
    expect_only(
        &y,
        "floating_ips[0] (10.100.0.7)",
        "instance",
        &["no router connects subnet `test1-v4` of instance `vm1` to an external network"],
    );
}

#[test]
fn floating_ip_for_an_instance_on_an_unrouted_subnet() {
    let y = seed_with(&[("interfaces: [test1-v4, test2-v4]", "interfaces: [test2-v4]")]);
    expect_only(
        &y,
        "floating_ips[0] (10.100.0.7)",
        "instance",
        &["no router connects subnet `test1-v4`", "add `test1-v4` to the interfaces"],
    );
}

#[test]
fn floating_ip_for_an_unknown_instance() {
    let y = seed_with(&[("instance: vm1}", "instance: vm9}")]);
    expect_only(&y, "floating_ips[0] (10.100.0.7)", "instance", &["no instance is called `vm9`"]);
}

#[test]
fn two_floating_ips_for_one_instance() {
    let y = seed_with(&[(
        "  - {ip: 10.100.0.7, instance: vm1}\n",
        "  - {ip: 10.100.0.7, instance: vm1}\n  - {ip: 10.100.0.8, instance: vm1}\n",
    )]);
    expect_only(&y, "floating_ips[1] (10.100.0.8)", "instance", &["instance `vm1` already has floating_ips[0]"]);
}

#[test]
fn floating_ip_equal_to_an_external_host_ip() {
    let y = seed_with(&[("ip: 10.100.0.14}", "ip: 10.100.0.7}")]);
    expect_only(&y, "external_hosts[0] (ext1)", "ip", &["10.100.0.7 is already used by floating_ips[0] (10.100.0.7)"]);
}

// ---------------------------------------------------------------- external hosts

#[test]
fn external_host_on_a_non_external_network() {
    let y = seed_with(&[("{name: ext1, network: external, ip: 10.100.0.14}", "{name: ext1, network: test2, ip: 192.168.2.99}")]);
    expect_only(&y, "external_hosts[0] (ext1)", "network", &["`test2` is not an external network", "external: true"]);
}

#[test]
fn external_host_ip_outside_the_external_subnet() {
    let y = seed_with(&[("ip: 10.100.0.14}", "ip: 10.200.0.14}")]);
    expect_only(
        &y,
        "external_hosts[0] (ext1)",
        "ip",
        &["10.200.0.14 is outside the subnets of external network `external` (10.100.0.0/24)"],
    );
}

// ---------------------------------------------------------------- all at once

#[test]
fn multiple_problems_are_reported_at_once() {
    let y = seed_with(&[
        ("segmentation_id: 148", "segmentation_id: 5000"),
        ("{name: vm3, host: compute2", "{name: vm3, host: compute3"),
        ("external_gateway: external", "external_gateway: test2"),
        ("{name: ext1,", "{name: vm2,"),
    ]);
    let e = expect(&y, "networks[1] (test2)", "segmentation_id", &["5000"]);
    expect(&y, "instances[2] (vm3)", "host", &["compute3"]);
    expect(&y, "routers[0] (router1)", "external_gateway", &["not external"]);
    expect(&y, "external_hosts[0] (vm2)", "name", &["duplicate"]);
    let n = e.problems().len();
    assert!(n >= 4, "expected at least 4 problems, got {n}:\n{e}");
    assert!(e.to_string().starts_with(&format!("{FILE}: {n} problem(s) in the topology:")), "{e}");
    assert_eq!(e.to_string().matches("fix:").count(), n, "{e}");
}

// ---------------------------------------------------------------- the error type

#[test]
fn every_error_variant_says_how_to_fix_it() {
    let io = load_file(std::path::Path::new("/nonexistent/dir/topology.yaml")).unwrap_err();
    assert!(matches!(io, TopologyError::Io { .. }));
    let syntax = load_err("version: 1\nhosts: [\n");
    assert!(matches!(syntax, TopologyError::Syntax { .. }));
    let invalid = load_err(&seed_with(&[("version: 1\n", "version: 2\n")]));
    assert!(matches!(invalid, TopologyError::Invalid { .. }));
    for e in [&io, &syntax, &invalid] {
        let text = e.to_string();
        assert!(text.contains("fix:"), "no fix in:\n{text}");
        for p in e.problems() {
            assert!(p.contains("fix:"), "no fix in problem:\n{p}");
        }
    }
    assert!(io.to_string().starts_with("/nonexistent/dir/topology.yaml: "));
    let p = Problem {
        kind: Default::default(),
        object: "hosts[0] (a)".into(),
        field: String::new(),
        what: "broken".into(),
        fix: "mend it".into(),
    };
    assert_eq!(p.to_string(), "hosts[0] (a): broken\n    fix: mend it");
    let p = Problem { field: "role".into(), ..p };
    assert_eq!(p.to_string(), "hosts[0] (a): field `role`: broken\n    fix: mend it");
}
