//! Incremental planning equals full planning: over random sequences of
//! changes (instances booted and deleted, floating IPs associated and
//! disassociated, router interfaces added and removed, hosts removed), the plan kept up to date by replanning only the hosts
//! whose inputs changed is identical to planning everything from scratch.
//! The same holds for changes made in place by `dvr_model::live::Live`
//! (hosts added too), where only the hosts the change names are replanned;
//! and every replanned host's typed delta, applied to its old plan's items,
//! gives exactly its new plan's items.

use dvr_model::change::Change;
use dvr_model::live::{Live, pinned_spec};
use dvr_model::spec::TopologySpec;
use dvr_plan::Profile;
use dvr_plan::delta::{HostDelta, Item, items};
use dvr_plan::incremental::Replanner;
use proptest::prelude::*;

/// The seed lab plus an idle compute node and a network no router joins yet.
fn base() -> TopologySpec {
    let yaml = dvr_model::SEED_YAML
        .replace(
            "\nnetworks:",
            "  - name: compute3\n    role: compute\n    bridge_mappings: {physnet1: br-vlan, extnet: br-ex}\n\nnetworks:",
        )
        .replace(
            "  - name: external\n",
            "  - name: test3\n    type: vlan\n    physical_network: physnet1\n    segmentation_id: 300\n    subnets:\n      - {name: test3-v4, cidr: 192.168.3.0/24}\n  - name: external\n",
        );
    dvr_model::parse_spec("base.yaml", &yaml).unwrap()
}

#[derive(Debug, Clone)]
enum Step {
    Add(usize, usize),
    Remove(usize),
    Fip(usize),
    Attach,
    Detach(usize),
    Unfip(usize),
    RemoveHost(usize),
    AddHost,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0usize..3, 0usize..3).prop_map(|(h, n)| Step::Add(h, n)),
        2 => (0usize..16).prop_map(Step::Remove),
        1 => (0usize..16).prop_map(Step::Fip),
        1 => Just(Step::Attach),
        1 => (0usize..3).prop_map(Step::Detach),
        1 => (0usize..16).prop_map(Step::Unfip),
        1 => (0usize..3).prop_map(Step::RemoveHost),
        1 => Just(Step::AddHost),
    ]
}

fn to_change(spec: &TopologySpec, s: &Step, serial: usize) -> Option<Change> {
    let hosts = ["compute1", "compute2", "compute3"];
    let nets = ["test1", "test2", "test3"];
    match s {
        Step::Add(h, n) => Some(Change::AddInstance { name: format!("new{serial}"), host: hosts[*h].into(), network: nets[*n].into() }),
        Step::Remove(i) => spec.instances.get(i % spec.instances.len().max(1)).map(|x| Change::RemoveInstance { name: x.name.clone() }),
        Step::Fip(i) => {
            spec.instances.get(i % spec.instances.len().max(1)).map(|x| Change::AssociateFloatingIp { ip: None, instance: x.name.clone() })
        }
        Step::Attach => Some(Change::AddRouterInterface { router: "router1".into(), subnet: "test3-v4".into() }),
        Step::Detach(i) => {
            let r = spec.routers.iter().find(|r| r.name == "router1")?;
            r.interfaces
                .get(i % r.interfaces.len().max(1))
                .map(|s| Change::RemoveRouterInterface { router: "router1".into(), subnet: s.clone() })
        }
        Step::Unfip(i) => {
            let fips: Vec<_> = spec.floating_ips.iter().filter(|f| f.instance.is_some()).filter_map(|f| f.ip).collect();
            fips.get(i % fips.len().max(1)).map(|&ip| Change::DisassociateFloatingIp { ip })
        }
        Step::RemoveHost(h) => Some(Change::RemoveHost { name: hosts[*h].into() }),
        Step::AddHost => Some(Change::AddHost { name: format!("compute{}", 10 + serial), like: None }),
    }
}

fn json(p: &dvr_plan::Plan) -> String {
    serde_json::to_string(p).unwrap()
}

/// An item as a comparable key: its JSON without provenance (`origin`),
/// which the plan model's equality ignores too.
fn key(i: &Item) -> String {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("origin");
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(i).unwrap();
    strip(&mut v);
    v.to_string()
}

/// Each host's plan items as sorted keys, by host name.
fn host_items(p: &dvr_plan::Plan) -> std::collections::BTreeMap<String, Vec<String>> {
    p.hosts
        .iter()
        .map(|h| {
            let mut k: Vec<String> = items(h).iter().map(key).collect();
            k.sort();
            (h.host.clone(), k)
        })
        .collect()
}

/// Apply a delta to a host's item keys (what an agent does): each deleted
/// item must be there; the result is sorted.
fn apply_delta(before: &[String], d: &HostDelta) -> Result<Vec<String>, String> {
    let mut v = before.to_vec();
    for i in &d.delete {
        let k = key(i);
        let at = v.iter().position(|x| *x == k).ok_or_else(|| format!("{}: deletes an item it does not have: {k}", d.host))?;
        v.remove(at);
    }
    v.extend(d.add.iter().map(key));
    v.sort();
    Ok(v)
}

/// Every host whose items changed has a delta that turns the old items into
/// the new ones; no other host has one.
fn check_deltas(
    before: &std::collections::BTreeMap<String, Vec<String>>,
    after: &std::collections::BTreeMap<String, Vec<String>>,
    deltas: &[HostDelta],
) -> Result<(), String> {
    for (h, new) in after {
        let old = before.get(h).cloned().unwrap_or_default();
        match deltas.iter().find(|d| &d.host == h) {
            Some(d) if &apply_delta(&old, d)? != new => return Err(format!("{h}: old plan + delta != new plan")),
            None if &old != new => return Err(format!("{h}: its plan changed but it has no delta")),
            _ => {}
        }
    }
    Ok(())
}

/// Each host's plan as JSON, by host name.
fn per_host(p: &dvr_plan::Plan) -> std::collections::BTreeMap<String, String> {
    p.hosts.iter().map(|h| (h.host.clone(), serde_json::to_string(h).unwrap())).collect()
}

proptest! {
    // A case whose every change is rejected tests nothing: it is discarded
    // (prop_assume), and the run fails if more than this many are.
    #![proptest_config(ProptestConfig { cases: 40, max_global_rejects: 40, ..ProptestConfig::default() })]

    #[test]
    fn incremental_equals_full(steps in proptest::collection::vec(step(), 1..8), profile in prop_oneof![Just(Profile::Walkthrough), Just(Profile::Current)]) {
        let mut spec = base();
        let topo = dvr_model::build::build("base.yaml", &spec).unwrap();
        let mut r = Replanner::new(&topo, profile);
        let mut before = per_host(&dvr_plan::plan(&topo, profile).unwrap());
        let mut before_items = host_items(&dvr_plan::plan(&topo, profile).unwrap());
        let mut applied = 0;
        for (serial, s) in steps.iter().enumerate() {
            let Some(change) = to_change(&spec, s, serial) else { continue };
            let mut next = spec.clone();
            if change.apply(&mut next).is_err() {
                continue;
            }
            // Changes the model rejects (e.g. a floating IP for an instance no router serves) are skipped.
            let Ok(topo) = dvr_model::build::build("base.yaml", &next) else { continue };
            spec = next;
            let u = r.update(&topo);
            let full = dvr_plan::plan(&topo, profile).unwrap();
            prop_assert_eq!(json(r.plan()), json(&full), "after {:?}", change);
            // Which hosts really changed, from two full plans (not from the
            // replanner's own report): each was replanned, and the report says so.
            let after = per_host(&full);
            let changed: Vec<&String> = after.iter().filter(|(h, j)| before.get(*h) != Some(*j)).map(|(h, _)| h).collect();
            for h in &changed {
                prop_assert!(u.replanned.contains(h), "{} changed but was not replanned after {:?}", h, change);
            }
            let mut reported: Vec<&String> = u.changed.iter().collect();
            reported.sort();
            prop_assert_eq!(reported, changed, "the replanner's changed hosts after {:?}", change);
            let removed: Vec<&String> = before.keys().filter(|h| !after.contains_key(*h)).collect();
            prop_assert_eq!(u.removed.iter().collect::<Vec<_>>(), removed, "removed hosts after {:?}", change);
            let now = host_items(&full);
            if let Err(e) = check_deltas(&before_items, &now, &u.deltas) {
                prop_assert!(false, "after {:?}: {}", change, e);
            }
            before_items = now;
            before = after;
            applied += 1;
        }
        prop_assume!(applied > 0, "every change of this case was rejected");
    }
}

#[test]
fn booting_an_instance_replans_only_the_hosts_it_touches() {
    let mut spec = base();
    let topo = dvr_model::build::build("base.yaml", &spec).unwrap();
    let mut r = Replanner::new(&topo, Profile::Walkthrough);
    // A VM on test3 (no router): only its own host changes.
    Change::AddInstance { name: "lonely".into(), host: "compute3".into(), network: "test3".into() }.apply(&mut spec).unwrap();
    let u = r.update(&dvr_model::build::build("b", &spec).unwrap());
    assert_eq!(u.replanned, ["compute3"]);
    // A VM on test1 (router1) on compute2: its host and every host with a copy of router1 (permanent ARP).
    Change::AddInstance { name: "vm9".into(), host: "compute2".into(), network: "test1".into() }.apply(&mut spec).unwrap();
    let u = r.update(&dvr_model::build::build("b", &spec).unwrap());
    assert_eq!(u.replanned, ["network", "compute1", "compute2"]);
    assert_eq!(u.changed, ["network", "compute1", "compute2"]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, max_global_rejects: 40, ..ProptestConfig::default() })]

    /// Changes made in place (`Live`), replanning only the hosts they name.
    #[test]
    fn in_place_incremental_equals_full(steps in proptest::collection::vec(step(), 1..10), profile in prop_oneof![Just(Profile::Walkthrough), Just(Profile::Current)]) {
        let mut live = Live::new(dvr_model::build::build("base.yaml", &base()).unwrap());
        let mut r = Replanner::new(live.topology(), profile);
        let first = dvr_plan::plan(live.topology(), profile).unwrap();
        let (mut before, mut before_items) = (per_host(&first), host_items(&first));
        let (mut applied, mut in_place) = (0, 0);
        for (serial, s) in steps.iter().enumerate() {
            let spec = pinned_spec(live.topology());
            let Some(change) = to_change(&spec, s, serial) else { continue };
            // Changes the model refuses leave everything as it was.
            let Ok(a) = live.apply(&change) else { continue };
            let u = r.apply(live.topology(), &a);
            let full = dvr_plan::plan(live.topology(), profile).unwrap();
            let after = per_host(&full);
            let kept = per_host(r.plan());
            let stale: Vec<&String> = after.keys().filter(|h| kept.get(*h) != after.get(*h)).collect();
            prop_assert!(stale.is_empty(), "after {:?} ({:?}) these hosts' kept plans differ from a full plan: {:?}", change, a, stale);
            prop_assert_eq!(json(r.plan()), json(&full), "after {:?}", change);
            for (h, j) in &after {
                if before.get(h) != Some(j) {
                    prop_assert!(
                        u.replanned.contains(h) || u.patched.contains(h),
                        "{} changed but was not replanned after {:?} ({:?})",
                        h,
                        change,
                        a
                    );
                }
            }
            let now = host_items(&full);
            if let Err(e) = check_deltas(&before_items, &now, &u.deltas) {
                prop_assert!(false, "after {:?}: {}", change, e);
            }
            (before, before_items) = (after, now);
            applied += 1;
            in_place += usize::from(!a.rebuilt);
        }
        prop_assume!(applied > 0 && in_place > 0, "no change of this case was applied in place");
    }
}

/// Positive control for the delta check: a delta missing one added flow, or
/// with no deletions, does not turn the old plan into the new one.
#[test]
fn a_wrong_delta_is_caught() {
    let mut live = Live::new(dvr_model::build::build("base.yaml", &base()).unwrap());
    let mut r = Replanner::new(live.topology(), Profile::Walkthrough);
    let before = host_items(r.plan());
    let a = live.apply(&Change::AddInstance { name: "vm9".into(), host: "compute3".into(), network: "test1".into() }).unwrap();
    let u = r.apply(live.topology(), &a);
    let after = host_items(r.plan());
    check_deltas(&before, &after, &u.deltas).unwrap();
    let d = u.deltas.iter().find(|d| d.host == "compute3").expect("compute3 changed");
    assert!(d.flows().0 > 0, "booting a VM adds flows on its host");
    let mut short = u.deltas.clone();
    let at = short.iter().position(|d| d.host == "compute3").unwrap();
    let f = short[at].add.iter().position(|i| i.is_flow()).unwrap();
    short[at].add.remove(f);
    assert!(check_deltas(&before, &after, &short).is_err());
    let mut none = u.deltas.clone();
    none.retain(|d| d.host != "compute3");
    assert!(check_deltas(&before, &after, &none).is_err());
}

#[test]
fn an_in_place_change_replans_only_the_hosts_it_touches() {
    let mut live = Live::new(dvr_model::build::build("base.yaml", &base()).unwrap());
    let mut r = Replanner::new(live.topology(), Profile::Walkthrough);
    let a = live.apply(&Change::AddInstance { name: "lonely".into(), host: "compute3".into(), network: "test3".into() }).unwrap();
    let u = r.apply(live.topology(), &a);
    // A VM on test3 (no router): only its own host.
    assert_eq!(u.replanned, ["compute3"]);
    assert!(u.patched.is_empty());
    assert_eq!(u.changed, ["compute3"]);
    assert_eq!(u.deltas.len(), 1);
    // A VM on test1 (router1) on compute2, which has test1 already: its
    // host's br-int; on every copy of router1 the qrouter namespace gains
    // its permanent ARP entry.
    let a = live.apply(&Change::AddInstance { name: "vm9".into(), host: "compute2".into(), network: "test1".into() }).unwrap();
    let u = r.apply(live.topology(), &a);
    assert!(u.replanned.is_empty());
    assert_eq!(u.patched, ["compute2", "network", "compute1"]);
    let d = u.deltas.iter().find(|d| d.host == "compute2").unwrap();
    assert!(d.flows().0 > 0 && d.add.iter().any(|i| matches!(i, Item::BridgePort { .. })), "{d:?}");
    for h in ["network", "compute1"] {
        let d = u.deltas.iter().find(|d| d.host == h).unwrap();
        assert!(d.delete.is_empty() && d.add.len() == 1, "{h}: {d:?}");
        assert!(matches!(&d.add[0], Item::Neighbour { neighbour, .. } if neighbour.ip == live.topology().endpoint_ip("vm9").unwrap()));
    }
}
