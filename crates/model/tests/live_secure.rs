//! With security groups Live rebuilds every change, from its file with the
//! allocations pinned: the groups and the ports' settings survive.

use dvr_model::change::Change;
use dvr_model::live::Live;

#[test]
fn security_groups_survive_changes() {
    let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../labs/seed-secure.yaml")).unwrap();
    let spec = dvr_model::parse_spec("seed-secure", &yaml).unwrap();
    let mut live = Live::build("seed-secure", &spec).unwrap();
    assert!(!live.topology().security.is_noop());
    let back = dvr_model::build::build("s", &live.pinned_spec()).unwrap();
    assert_eq!(serde_json::to_string(&back).unwrap(), serde_json::to_string(live.topology()).unwrap());
    let host = live.topology().instances[0].host;
    let host = live.topology().hosts[host.0].name.clone();
    let net = live.topology().networks[live.topology().instances[0].network.0].name.clone();
    let a = live.apply(&Change::AddInstance { name: "new1".into(), host, network: net }).unwrap();
    assert!(a.rebuilt);
    let t = live.topology();
    assert!(t.security.port(dvr_model::InstanceIx(t.instances.len() - 1)).is_some(), "the new instance has its port security");
    assert_eq!(t.security.groups.len(), back.security.groups.len());
    live.apply(&Change::RemoveInstance { name: "new1".into() }).unwrap();
    assert_eq!(serde_json::to_string(&back.security).unwrap(), serde_json::to_string(&live.topology().security).unwrap());
}
