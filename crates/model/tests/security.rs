//! Security groups in the topology file: the driver switch, Neutron's
//! `default` group, the per-port keys and every validation rule.

use dvr_model::security::*;
use dvr_model::{InstanceIx, SEED_SECURE_YAML, SEED_YAML, load_str, parse_spec};

fn problems(yaml: &str) -> Vec<String> {
    match load_str("f.yaml", yaml) {
        Ok(_) => vec![],
        Err(e) => e.problems(),
    }
}

/// The seed lab with `extra` appended and `vm1`'s line replaced by `vm1`.
fn seed_with(vm1: &str, extra: &str) -> String {
    assert!(SEED_YAML.contains(VM1), "the seed lab still has vm1's line");
    let s = SEED_YAML.replace(VM1, vm1);
    format!("{s}\n{extra}")
}

const VM1: &str = "  - {name: vm1, host: compute1, network: test1, ip: 192.168.1.9}";

#[test]
fn no_groups_is_the_noop_driver() {
    let t = load_str("seed", SEED_YAML).unwrap();
    assert_eq!(t.security.driver, FirewallDriver::Noop);
    assert!(t.security.is_noop());
    assert!(t.security.port(InstanceIx(0)).is_none());
    // Topology JSON is unchanged: no `security` key.
    assert!(!serde_json::to_string(&t).unwrap().contains("\"security\""));
}

#[test]
fn seed_secure_groups_and_members() {
    let t = load_str("seed-secure", SEED_SECURE_YAML).unwrap();
    let s = &t.security;
    assert_eq!(s.driver, FirewallDriver::Openvswitch);
    let names: Vec<&str> = s.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["default", "ssh-icmp", "web"]);
    let default = s.find(DEFAULT_PROJECT, "default").unwrap();
    let ssh = s.find(DEFAULT_PROJECT, "ssh-icmp").unwrap();
    let web = s.find(DEFAULT_PROJECT, "web").unwrap();
    // Neutron's creation rules for `default` (IPv4): egress anywhere, ingress from members.
    let d = s.group(default);
    assert_eq!(d.rules.len(), 2);
    assert_eq!((d.rules[0].direction, d.rules[0].protocol, d.rules[0].remote), (Direction::Egress, RuleProtocol::Any, Remote::Any));
    assert_eq!((d.rules[1].direction, d.rules[1].remote), (Direction::Ingress, Remote::Group(default)));
    let r = &s.group(ssh).rules;
    assert_eq!(r[1].protocol, RuleProtocol::Icmp { filter: None });
    // 0.0.0.0/0 is "any", as Neutron's firewall treats it.
    assert_eq!(r[1].remote, Remote::Any);
    assert_eq!(r[2].protocol, RuleProtocol::Tcp { ports: Some(PortRange { min: 22, max: 22 }) });
    assert_eq!(s.group(web).rules[1].remote, Remote::Group(ssh));
    let by_name = |n: &str| t.instances.iter().position(|x| x.name == n).map(InstanceIx).unwrap();
    assert_eq!(s.port(by_name("vm1")).unwrap().groups, [default, ssh]);
    assert_eq!(s.port(by_name("vm2")).unwrap().groups, [default], "no list: the project's default");
    assert_eq!(s.members(ssh).collect::<Vec<_>>(), [by_name("vm1"), by_name("vm3")]);
    let vm2 = s.port(by_name("vm2")).unwrap();
    let mac = t.port(t.instance(by_name("vm2")).port).mac;
    assert_eq!(vm2.allowed_address_pairs, [AddressPair { ip: "192.168.1.100/32".parse().unwrap(), mac }]);
    assert!(serde_json::to_string(&t).unwrap().contains("\"security\""));
}

#[test]
fn implicit_default_group_per_project() {
    let yaml = seed_with(
        "  - {name: vm1, host: compute1, network: test1, ip: 192.168.1.9, project: p2}",
        "security_groups:\n  - {name: web, rules: []}\n",
    );
    let t = load_str("f", &yaml).unwrap();
    let s = &t.security;
    let g: Vec<(&str, &str, bool)> = s.groups.iter().map(|g| (g.project.as_str(), g.name.as_str(), g.implicit)).collect();
    assert_eq!(g, [("default", "web", false), ("default", "default", true), ("p2", "default", true)]);
    assert!(s.group(s.find(DEFAULT_PROJECT, "web").unwrap()).rules.is_empty(), "`rules: []` means none");
    let p2 = s.find("p2", "default").unwrap();
    assert_eq!(s.port(InstanceIx(0)).unwrap().groups, [p2]);
    assert_eq!(s.group(p2).rules[1].remote, Remote::Group(p2));
    assert_ne!(s.group(p2).id, s.group(s.find(DEFAULT_PROJECT, "default").unwrap()).id);
    // A group without `rules:` gets Neutron's creation rule: egress anywhere.
    let t = load_str("f", &seed_with(VM1, "security_groups:\n  - {name: web}\n")).unwrap();
    let web = t.security.group(t.security.find(DEFAULT_PROJECT, "web").unwrap());
    assert_eq!(web.rules.iter().map(|r| r.direction).collect::<Vec<_>>(), [Direction::Egress]);
}

#[test]
fn port_security_disabled_has_no_groups() {
    let yaml = seed_with(
        "  - {name: vm1, host: compute1, network: test1, ip: 192.168.1.9, port_security_enabled: false}",
        "security_groups:\n  - {name: default}\n",
    );
    let t = load_str("f", &yaml).unwrap();
    let p = t.security.port(InstanceIx(0)).unwrap();
    assert!(!p.port_security_enabled);
    assert!(p.groups.is_empty());
}

#[test]
fn protocols_parse_by_name_and_number() {
    let yaml = seed_with(
        VM1,
        "security_groups:\n  - name: g\n    rules:\n      - {direction: ingress, protocol: 6, port_range_min: 8000, port_range_max: 8080}\n      - {direction: ingress, protocol: UDP}\n      - {direction: ingress, protocol: icmp, port_range_min: 8, port_range_max: 0}\n      - {direction: egress, protocol: gre}\n      - {direction: egress, protocol: 200}\n      - {direction: egress, protocol: any}\n",
    );
    let t = load_str("f", &yaml).unwrap();
    let g = t.security.group(t.security.find(DEFAULT_PROJECT, "g").unwrap());
    let p: Vec<RuleProtocol> = g.rules.iter().map(|r| r.protocol).collect();
    assert_eq!(
        p,
        [
            RuleProtocol::Tcp { ports: Some(PortRange { min: 8000, max: 8080 }) },
            RuleProtocol::Udp { ports: None },
            RuleProtocol::Icmp { filter: Some(IcmpFilter { icmp_type: 8, icmp_code: Some(0) }) },
            RuleProtocol::Other { number: 47 },
            RuleProtocol::Other { number: 200 },
            RuleProtocol::Any,
        ]
    );
    // Round trip through the spec: names print as names, numbers as numbers.
    let spec = parse_spec("f", &yaml).unwrap();
    let again = serde_yaml_ng::to_string(&spec).unwrap();
    assert!(again.contains("protocol: gre") && again.contains("protocol: 200") && again.contains("protocol: tcp"), "{again}");
    assert_eq!(parse_spec("f", &again).unwrap().security_groups, spec.security_groups);
}

/// Each invalid input, and a piece of the message that must name the fault.
#[test]
fn validation_names_object_field_and_fix() {
    let group = |rule: &str| seed_with(VM1, &format!("security_groups:\n  - name: g\n    rules:\n      - {rule}\n"));
    let cases: Vec<(String, &str)> = vec![
        (
            group("{direction: ingress, protocol: tcp, port_range_min: 90, port_range_max: 80}"),
            "security_groups[0] (g).rules[0]: field `port_range_min`: the range 90-80 is empty",
        ),
        (group("{direction: ingress, port_range_min: 22, port_range_max: 22}"), "field `port_range_min`: a port range needs a protocol"),
        (group("{direction: ingress, protocol: tcp, port_range_min: 0}"), "port 0 is not a port"),
        (group("{direction: ingress, protocol: icmp, port_range_min: 300}"), "300 is not an ICMP type/code"),
        (group("{direction: ingress, protocol: icmp, port_range_max: 3}"), "an ICMP code needs an ICMP type"),
        (group("{direction: ingress, protocol: gre, port_range_min: 1}"), "protocol 47 has no ports"),
        (
            group("{direction: ingress, remote_ip_prefix: 10.0.0.0/8, remote_group: g}"),
            "field `remote_group`: a rule has either `remote_ip_prefix` or `remote_group`, not both",
        ),
        (group("{direction: ingress, remote_group: nope}"), "field `remote_group`: project `default` has no security group `nope`"),
        (
            group("{direction: ingress, remote_ip_prefix: 10.0.0.0/33}"),
            "field `remote_ip_prefix`: `10.0.0.0/33` is not an IPv4 address or prefix",
        ),
        (group("{direction: ingress, ethertype: IPv6}"), "field `ethertype`: IPv6 rules are not modelled"),
        (
            seed_with(
                VM1,
                "security_groups:\n  - name: g\n    rules:\n      - {direction: egress}\n      - {direction: egress, protocol: any}\n",
            ),
            "rules[1]: the same rule as rules[0]",
        ),
        (
            seed_with(VM1, "security_groups:\n  - {name: g}\n  - {name: g}\n"),
            "security_groups[1] (g): field `name`: project `default` already has a group `g`",
        ),
        (
            seed_with("  - {name: vm1, host: compute1, network: test1, security_groups: [nope]}", "security_groups:\n  - {name: g}\n"),
            "instances[0] (vm1): field `security_groups`: project `default` has no security group `nope`",
        ),
        (
            seed_with(
                "  - {name: vm1, host: compute1, network: test1, port_security_enabled: false, security_groups: [g]}",
                "security_groups:\n  - {name: g}\n",
            ),
            "field `security_groups`: a port with `port_security_enabled: false` cannot be in security groups",
        ),
        (
            seed_with(
                "  - {name: vm1, host: compute1, network: test1, port_security_enabled: false, allowed_address_pairs: [{ip_address: 10.0.0.1}]}",
                "security_groups:\n  - {name: g}\n",
            ),
            "field `allowed_address_pairs`: allowed address pairs need port security",
        ),
        (
            seed_with(
                "  - {name: vm1, host: compute1, network: test1, allowed_address_pairs: [{ip_address: nope}]}",
                "security_groups:\n  - {name: g}\n",
            ),
            "field `allowed_address_pairs[0].ip_address`: `nope` is not an IPv4 address or prefix",
        ),
        (
            seed_with("  - {name: vm1, host: compute1, network: test1, security_groups: [default]}", ""),
            "instances[0] (vm1): field `security_groups`: security settings need the openvswitch firewall driver",
        ),
    ];
    for (yaml, want) in cases {
        let got = problems(&yaml);
        assert!(got.iter().any(|p| p.contains(want) && p.contains("fix: ")), "want `{want}` in {got:#?}");
    }
    // Positive control: the same file with a valid rule loads.
    assert!(problems(&group("{direction: ingress, protocol: tcp, port_range_min: 80, port_range_max: 90}")).is_empty());
}

#[test]
fn unknown_protocol_is_a_syntax_error_with_the_choices() {
    let yaml = seed_with(VM1, "security_groups:\n  - name: g\n    rules:\n      - {direction: ingress, protocol: tcpp}\n");
    let e = load_str("f.yaml", &yaml).unwrap_err().to_string();
    assert!(e.contains("`tcpp` is not a protocol") && e.contains("tcp, udp, icmp"), "{e}");
}

#[test]
fn tcp_and_udp_paths_need_a_port_and_icmp_has_none() {
    let with_path = |p: &str| format!("{SEED_YAML}  - {p}\n");
    for (p, want) in [
        ("{from: vm1, to: vm2, proto: tcp}", "field `dport`: a tcp or udp path needs a destination port"),
        ("{from: vm1, to: vm2, proto: udp, dport: 0}", "field `dport`: port 0 is not a port"),
        ("{from: vm1, to: vm2, dport: 22}", "field `dport`: only tcp and udp paths have a destination port"),
    ] {
        let got = problems(&with_path(p));
        assert!(got.iter().any(|x| x.contains(want) && x.contains("fix: ")), "want `{want}` in {got:#?}");
    }
    let t = load_str("f", &with_path("{from: vm1, to: vm2, proto: tcp, dport: 22, expect: delivered}")).unwrap();
    let p = t.paths.last().unwrap();
    assert_eq!((p.proto, p.dport, p.label()), (Some(dvr_model::PathProto::Tcp), Some(22), "vm1 -> vm2 tcp/22".to_string()));
}
