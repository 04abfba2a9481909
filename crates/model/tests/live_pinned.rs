//! Changes a control plane already allocated ([`Live::boot`] with the
//! server's port UUID, address and MAC; [`Live::reassociate`] of an allocated
//! floating IP): the model after them is what a build of the server's
//! topology gives.

use dvr_model::build::build;
use dvr_model::change::Change;
use dvr_model::live::{Live, pinned_spec};
use dvr_model::parse_spec;
use dvr_model::spec::{InstanceSpec, TopologySpec};

fn seed() -> TopologySpec {
    let mut spec = parse_spec("seed", dvr_model::SEED_YAML).unwrap();
    spec.paths.clear();
    pinned_spec(&build("seed", &spec).unwrap())
}

/// Everything the topology holds, comparable.
fn all(t: &dvr_model::Topology) -> serde_json::Value {
    serde_json::to_value(pinned_spec(t)).unwrap()
}

fn vm6(ip: &str) -> InstanceSpec {
    InstanceSpec {
        id: Some(uuid::Uuid::from_u128(0xfeed)),
        name: "vm6".into(),
        host: "compute2".into(),
        network: "test1".into(),
        ip: Some(ip.parse().unwrap()),
        mac: Some("fa:16:3e:aa:bb:cc".parse().unwrap()),
        ..InstanceSpec::default()
    }
}

#[test]
fn a_pinned_boot_keeps_the_servers_allocations_and_equals_a_build() {
    let spec = seed();
    let mut live = Live::build("seed", &spec).unwrap();
    live.boot(&vm6("192.168.1.77")).unwrap();
    let mut after = spec.clone();
    after.instances.push(vm6("192.168.1.77"));
    assert_eq!(all(live.topology()), all(&build("seed", &after).unwrap()));
    let x = live.topology().instances.iter().find(|x| x.name == "vm6").unwrap();
    let p = live.topology().port(x.port);
    assert_eq!(
        (p.id.0, p.ip.to_string(), p.mac.to_string()),
        (uuid::Uuid::from_u128(0xfeed), "192.168.1.77".into(), "fa:16:3e:aa:bb:cc".into())
    );
    // Control: without pins, the address allocated is another one.
    let mut plain = Live::build("seed", &spec).unwrap();
    plain.apply(&Change::AddInstance { name: "vm6".into(), host: "compute2".into(), network: "test1".into() }).unwrap();
    assert_ne!(all(plain.topology()), all(live.topology()));
}

#[test]
fn a_pinned_address_in_use_is_refused_and_nothing_changes() {
    let spec = seed();
    let mut live = Live::build("seed", &spec).unwrap();
    let before = all(live.topology());
    let taken = spec.instances[0].ip.unwrap().to_string();
    let e = live.boot(&vm6(&taken)).unwrap_err();
    assert!(e.what.contains("already in use"), "{}", e.what);
    assert_eq!(all(live.topology()), before);
}

#[test]
fn a_floating_ip_moved_keeps_its_id_and_place_and_equals_a_build() {
    let spec = seed();
    let mut live = Live::build("seed", &spec).unwrap();
    let at = spec.floating_ips.iter().position(|f| f.instance.is_some()).unwrap();
    let ip = spec.floating_ips[at].ip.unwrap();
    let from = spec.floating_ips[at].instance.clone().unwrap();
    let to = spec.instances.iter().find(|x| x.name != from && x.network == spec.instances.iter().find(|y| y.name == from).unwrap().network);
    let to = to.map(|x| x.name.clone()).unwrap_or_else(|| from.clone());
    live.apply(&Change::DisassociateFloatingIp { ip }).unwrap();
    live.reassociate(ip, &to).unwrap();
    let mut after = spec.clone();
    after.floating_ips[at].instance = Some(to.clone());
    assert_eq!(all(live.topology()), all(&build("seed", &after).unwrap()), "moved {ip} from {from} to {to}");
    assert_eq!(live.topology().floating_ips[at].ip, ip);
    assert_eq!(Some(live.topology().floating_ips[at].id.0), spec.floating_ips[at].id);
    // An address that is associated is not free to reassociate.
    assert!(live.reassociate(ip, &from).is_err());
}

#[test]
fn with_security_groups_a_pinned_boot_is_refused() {
    let text = include_str!("../../../labs/seed-secure.yaml");
    let spec = parse_spec("seed-secure", text).unwrap();
    let mut live = Live::build("seed-secure", &spec).unwrap();
    assert!(!live.topology().security.is_noop(), "control: seed-secure has security groups");
    let e = live.boot(&vm6("192.168.1.77")).unwrap_err();
    assert!(e.what.contains("security groups"), "{}", e.what);
}
