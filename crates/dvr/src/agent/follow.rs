//! The agent's local model, following the server's topology revision by
//! revision: edited in place ([`Live`] and [`Replanner::apply`]) where the
//! change allows, rebuilt from the server's topology where it does not.
//!
//! The server sends its whole topology (with every allocation: port UUIDs,
//! addresses, MACs); the agent compares it with the previous one. When only
//! instances were booted or deleted, floating IPs moved and compute hosts
//! joined (a new agent registered) or left, it makes those edits in place
//! with the server's allocations ([`Live::boot`], [`Live::reassociate`],
//! [`Live::join`]), so the model is what a build would give, without the
//! build. Anything else (router interfaces, networks, a host changed or
//! leaving with instances, a re-bound instance, floating IPs created or
//! deleted, security groups) costs a full rebuild: [`Live::build`] and a
//! [`Replanner`] over every host. Each step says which ([`How`]) and what it
//! cost.

use anyhow::Result;
use dvr_model::change::Change;
use dvr_model::live::Live;
use dvr_model::spec::{HostSpec, InstanceSpec, PortSpec, TopologySpec};
use dvr_plan::Profile;
use dvr_plan::incremental::Replanner;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// The model and the plan, kept in step with the server.
pub struct Model {
    /// The server's topology this model was brought to.
    spec: TopologySpec,
    live: Live,
    replanner: Replanner,
}

/// One in-place edit, with the server's allocations.
#[derive(Debug, Clone)]
enum Edit {
    Join(Box<HostSpec>),
    Attach(String, String),
    Detach(String, String),
    Boot(Box<InstanceSpec>),
    Delete(String),
    Disassociate(Ipv4Addr),
    Associate(Ipv4Addr, String),
    Leave(String),
}

impl std::fmt::Display for Edit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Edit::Join(h) => write!(f, "join {}", h.name),
            Edit::Attach(r, sub) => write!(f, "attach {sub} to {r}"),
            Edit::Detach(r, sub) => write!(f, "detach {sub} from {r}"),
            Edit::Leave(h) => write!(f, "leave {h}"),
            Edit::Boot(x) => write!(f, "boot {}", x.name),
            Edit::Delete(n) => write!(f, "delete {n}"),
            Edit::Disassociate(ip) => write!(f, "disassociate {ip}"),
            Edit::Associate(ip, x) => write!(f, "associate {ip} with {x}"),
        }
    }
}

/// How the model followed one revision.
#[derive(Debug, Clone, PartialEq)]
pub enum How {
    /// The topology did not change (a status or heartbeat revision).
    Unchanged,
    /// Edited in place (what was done).
    InPlace(Vec<String>),
    /// Rebuilt from the server's topology (why).
    Rebuilt(String),
}

/// What following one revision did and cost.
pub struct Followed {
    pub how: How,
    /// Editing or building the model.
    pub model: Duration,
    /// Replanning (in place: the hosts the edits touched; rebuilt: every host).
    pub replan: Duration,
}

impl std::fmt::Display for Followed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (m, r) = (self.model.as_secs_f64() * 1e3, self.replan.as_secs_f64() * 1e3);
        match &self.how {
            How::Unchanged => write!(f, "model unchanged"),
            How::InPlace(e) => write!(f, "model in place {m:.1} ms [{}], replan {r:.1} ms", e.join(", ")),
            How::Rebuilt(why) => write!(f, "model rebuilt {m:.1} ms [{why}], replan every host {r:.1} ms"),
        }
    }
}

fn strip(s: &TopologySpec) -> serde_json::Value {
    let mut v = serde_json::to_value(s).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("instances");
        o.remove("floating_ips");
        o.remove("hosts");
        o.remove("routers");
        o.remove("ports");
    }
    v
}

fn same<T: serde::Serialize>(a: &T, b: &T) -> bool {
    serde_json::to_value(a).ok() == serde_json::to_value(b).ok()
}

/// The in-place edits that turn topology `old` into `new`, or why none can.
fn edits(old: &TopologySpec, new: &TopologySpec) -> Result<Vec<Edit>, String> {
    let (a, b) = (strip(old), strip(new));
    if a != b {
        let keys: BTreeSet<&String> = a.as_object().into_iter().chain(b.as_object()).flat_map(|o| o.keys()).collect();
        let changed: Vec<&str> = keys.into_iter().filter(|k| a.get(k.as_str()) != b.get(k.as_str())).map(|k| k.as_str()).collect();
        return Err(format!("{} changed", changed.join(", ")));
    }
    let (joined, left) = host_edits(old, new)?;
    let attached = router_edits(old, new)?;
    let unbound = |s: &TopologySpec| s.ports.iter().filter(|p| implicit_key(p).is_none()).cloned().collect::<Vec<_>>();
    if !same(&unbound(old), &unbound(new)) {
        return Err("ports changed".into());
    }
    let names: BTreeSet<&str> = new.instances.iter().map(|x| x.name.as_str()).collect();
    let kept: Vec<&InstanceSpec> = old.instances.iter().filter(|x| names.contains(x.name.as_str())).collect();
    let deleted: Vec<&InstanceSpec> = old.instances.iter().filter(|x| !names.contains(x.name.as_str())).collect();
    if new.instances.len() < kept.len() || !kept.iter().zip(&new.instances).all(|(a, b)| same(*a, b)) {
        return Err("an instance was re-bound, readdressed or reordered".into());
    }
    let booted = &new.instances[kept.len()..];
    let fips_same_place = old.floating_ips.len() == new.floating_ips.len()
        && old.floating_ips.iter().zip(&new.floating_ips).all(|(a, b)| (a.id, a.ip, &a.network) == (b.id, b.ip, &b.network));
    if !fips_same_place {
        return Err("floating IPs created or deleted".into());
    }
    if old.floating_ips.iter().any(|f| f.instance.as_ref().is_some_and(|i| deleted.iter().any(|x| &x.name == i))) {
        return Err("a deleted instance had a floating IP".into());
    }
    let moved: Vec<_> = old.floating_ips.iter().zip(&new.floating_ips).filter(|(a, b)| a.instance != b.instance).collect();
    let mut out: Vec<Edit> = joined.iter().map(|h| Edit::Join(Box::new(h.clone()))).collect();
    out.extend(attached);
    for (a, _) in &moved {
        if a.instance.is_some() {
            out.push(Edit::Disassociate(a.ip.ok_or("a floating IP without an address")?));
        }
    }
    out.extend(deleted.iter().map(|x| Edit::Delete(x.name.clone())));
    out.extend(booted.iter().map(|x| Edit::Boot(Box::new(x.clone()))));
    for (_, b) in &moved {
        if let Some(x) = &b.instance {
            out.push(Edit::Associate(b.ip.ok_or("a floating IP without an address")?, x.clone()));
        }
    }
    // Last: a host leaves once what the same revision deleted from it is gone.
    out.extend(left.map(Edit::Leave));
    Ok(out)
}

/// Subnets attached to (last in the router's list, as the server lists
/// them) or detached from routers that otherwise stayed as they were.
fn router_edits(old: &TopologySpec, new: &TopologySpec) -> Result<Vec<Edit>, String> {
    let changed = || Err("routers changed".to_string());
    if old.routers.len() != new.routers.len() {
        return changed();
    }
    let mut out = Vec::new();
    for (a, b) in old.routers.iter().zip(&new.routers) {
        if a.interfaces == b.interfaces {
            if !same(a, b) {
                return changed();
            }
            continue;
        }
        let mut rest = a.clone();
        rest.interfaces.clone_from(&b.interfaces);
        if !same(&rest, b) {
            return changed();
        }
        let (x, y) = (&a.interfaces, &b.interfaces);
        if y.len() == x.len() + 1 && y.starts_with(x) {
            out.push(Edit::Attach(b.name.clone(), y[x.len()].clone()));
        } else if let Some(k) = (x.len() == y.len() + 1).then(|| x.iter().zip(y).position(|(p, q)| p != q).unwrap_or(y.len()))
            && x[..k].iter().chain(&x[k + 1..]).eq(y.iter())
        {
            out.push(Edit::Detach(b.name.clone(), x[k].clone()));
        } else {
            return changed();
        }
    }
    Ok(out)
}

/// An implicit port (DHCP, router, SNAT, gateway, fip-agent) by what both
/// the server and the model pin of it: owner, network, id, address, MAC.
type ImplicitKey = (String, String, Option<uuid::Uuid>, Option<Ipv4Addr>, Option<dvr_model::MacAddr>);

fn implicit_key(p: &PortSpec) -> Option<ImplicitKey> {
    let o = p.device_owner.as_deref().filter(|o| dvr_model::live::IMPLICIT_OWNERS.contains(o))?;
    Some((o.to_string(), p.network.clone(), p.id, p.ip, p.mac))
}

/// The implicit ports of `ports`, sorted.
fn implicit_keys<'a>(ports: impl IntoIterator<Item = &'a PortSpec>) -> Vec<ImplicitKey> {
    let mut v: Vec<ImplicitKey> = ports.into_iter().filter_map(implicit_key).collect();
    v.sort();
    v
}

/// The hosts that joined (at the end of the list) and the one that left, or
/// why the host list changed otherwise.
fn host_edits<'a>(old: &TopologySpec, new: &'a TopologySpec) -> Result<(&'a [HostSpec], Option<String>), String> {
    let (o, n) = (&old.hosts, &new.hosts);
    if n.len() >= o.len() && o.iter().zip(n).all(|(a, b)| same(a, b)) {
        return Ok((&n[o.len()..], None));
    }
    // One host gone, the others as they were, in order.
    if n.len() + 1 == o.len()
        && let Some(k) = o.iter().zip(n).position(|(a, b)| !same(a, b)).or(Some(n.len()))
        && o[..k].iter().chain(&o[k + 1..]).zip(n).all(|(a, b)| same(a, b))
    {
        return Ok((&[], Some(o[k].name.clone())));
    }
    Err("hosts changed".into())
}

impl Model {
    /// The current topology.
    pub fn topology(&self) -> &dvr_model::Topology {
        self.live.topology()
    }

    /// The plan of host `ix` of [`Model::topology`].
    pub fn host_plan(&self, ix: dvr_model::HostIx) -> &dvr_plan::HostPlan {
        &self.replanner.plan().hosts[ix.0]
    }

    /// Build from the server's topology.
    fn build(label: &str, spec: TopologySpec, profile: Profile, why: String) -> Result<(Model, Followed)> {
        let t0 = Instant::now();
        let live = Live::build(label, &spec)?;
        let model = t0.elapsed();
        let t1 = Instant::now();
        let replanner = Replanner::new(live.topology(), profile);
        let replan = t1.elapsed();
        Ok((Model { spec, live, replanner }, Followed { how: How::Rebuilt(why), model, replan }))
    }

    /// The model allocated the implicit ports (router interfaces, SNAT and
    /// fip-agent ports) as the server did; `Err(why)` when not (then the
    /// model is rebuilt from the server's topology). Checked only when the
    /// server's implicit ports changed.
    fn same_implicit_ports(&self, server: &TopologySpec) -> Result<(), String> {
        let theirs = implicit_keys(&server.ports);
        if theirs == implicit_keys(&self.spec.ports) {
            return Ok(());
        }
        if implicit_keys(&self.live.implicit_ports()) != theirs {
            return Err("the server allocated implicit ports (qr-, sg-, fg-) otherwise than the model".into());
        }
        Ok(())
    }

    /// Try the edits in place; `Err(why)` when one is refused (the model is
    /// then half-edited and must be rebuilt).
    fn edit(&mut self, edits: &[Edit]) -> Result<(Duration, Duration), String> {
        let (mut model, mut replan) = (Duration::ZERO, Duration::ZERO);
        for e in edits {
            let t0 = Instant::now();
            let applied = match e {
                Edit::Join(h) => self.live.join(h),
                Edit::Attach(router, subnet) => {
                    self.live.apply(&Change::AddRouterInterface { router: router.clone(), subnet: subnet.clone() })
                }
                Edit::Detach(router, subnet) => {
                    self.live.apply(&Change::RemoveRouterInterface { router: router.clone(), subnet: subnet.clone() })
                }
                Edit::Leave(name) => self.live.apply(&Change::RemoveHost { name: name.clone() }),
                Edit::Boot(x) => self.live.boot(x),
                Edit::Delete(name) => self.live.apply(&Change::RemoveInstance { name: name.clone() }),
                Edit::Disassociate(ip) => self.live.apply(&Change::DisassociateFloatingIp { ip: *ip }),
                Edit::Associate(ip, x) => self.live.reassociate(*ip, x),
            }
            .map_err(|err| format!("{e}: {}", err.what.lines().next().unwrap_or_default()))?;
            model += t0.elapsed();
            if applied.rebuilt {
                return Err(format!("{e}: the model rebuilds it"));
            }
            let t1 = Instant::now();
            self.replanner.apply(self.live.topology(), &applied);
            replan += t1.elapsed();
        }
        Ok((model, replan))
    }
}

/// Bring `model` to the server's topology `spec` (`label` names it in errors).
pub fn follow(model: &mut Option<Model>, label: &str, spec: TopologySpec, profile: Profile) -> Result<Followed> {
    let why = match model.as_mut() {
        None => "first revision".to_string(),
        Some(m) => match edits(&m.spec, &spec) {
            Ok(e) if e.is_empty() => {
                m.spec = spec;
                return Ok(Followed { how: How::Unchanged, model: Duration::ZERO, replan: Duration::ZERO });
            }
            Ok(e) => match m.edit(&e).and_then(|t| m.same_implicit_ports(&spec).map(|()| t)) {
                Ok((model_t, replan)) => {
                    m.spec = spec;
                    let how = How::InPlace(e.iter().map(Edit::to_string).collect());
                    return Ok(Followed { how, model: model_t, replan });
                }
                Err(why) => why,
            },
            Err(why) => why,
        },
    };
    let (m, f) = Model::build(label, spec, profile, why)?;
    *model = Some(m);
    Ok(f)
}

/// Whether host `host`'s plan in `model` is what a rebuild from the
/// server's topology gives; `Err` names the difference.
pub fn verify(model: &Model, label: &str, host: &str, profile: Profile) -> Result<(), String> {
    let topo = dvr_model::build::build(label, &model.spec).map_err(|e| format!("the server's topology does not build: {e}"))?;
    let (Some(a), Some(b)) = (topo.host_ix(host), model.topology().host_ix(host)) else {
        return Err(format!("host {host} is missing from one of them"));
    };
    let fresh = dvr_plan::plan_host(&topo, a, profile);
    let held = model.host_plan(b);
    if same(&fresh, held) {
        return Ok(());
    }
    let (fv, hv) = (serde_json::to_value(&fresh).unwrap_or_default(), serde_json::to_value(held).unwrap_or_default());
    let keys: Vec<String> =
        fv.as_object().into_iter().flat_map(|o| o.keys()).filter(|k| fv.get(k.as_str()) != hv.get(k.as_str())).cloned().collect();
    Err(format!("host plan differs in {}", keys.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> TopologySpec {
        dvr_model::parse_spec("seed", dvr_model::SEED_YAML).expect("the seed parses")
    }

    /// The seed with every allocation explicit, as the server sends it.
    fn pinned(spec: &TopologySpec) -> TopologySpec {
        dvr_model::live::pinned_spec(&dvr_model::build::build("seed", spec).expect("builds"))
    }

    fn plans_equal(model: &Model, spec: &TopologySpec) {
        for h in ["network", "compute1", "compute2"] {
            let m = Model::build("seed", spec.clone(), Profile::Walkthrough, String::new()).expect("builds").0;
            let ix = m.topology().host_ix(h).expect("host");
            let mine = model.host_plan(model.topology().host_ix(h).expect("host"));
            assert!(same(mine, m.host_plan(ix)), "host {h}: in place differs from a rebuild");
            verify(model, "seed", h, Profile::Walkthrough).expect("verify agrees");
        }
    }

    #[test]
    fn a_boot_and_a_floating_ip_move_follow_in_place_and_equal_a_rebuild() {
        let before = pinned(&seed());
        let mut model = None;
        let f = follow(&mut model, "seed", before.clone(), Profile::Walkthrough).expect("first");
        assert!(matches!(f.how, How::Rebuilt(_)));
        // As the server would: a new port with its own UUID, address and MAC.
        let mut after = before.clone();
        let mut vm6 = after.instances.iter().find(|x| x.host == "compute2").expect("seed has one").clone();
        vm6.name = "vm6".into();
        vm6.id = Some(uuid::Uuid::from_u128(0x1234));
        vm6.ip = Some("192.168.1.77".parse().expect("ip"));
        vm6.mac = Some("fa:16:3e:12:34:56".parse().expect("mac"));
        after.instances.push(vm6);
        let f = follow(&mut model, "seed", after.clone(), Profile::Walkthrough).expect("boot");
        assert_eq!(f.how, How::InPlace(vec!["boot vm6".into()]));
        plans_equal(model.as_ref().expect("built"), &after);
        // Move the first associated floating IP to vm6.
        let fip = after.floating_ips.iter_mut().find(|f| f.instance.is_some()).expect("seed has one");
        let from = fip.instance.replace("vm6".into()).expect("associated");
        let ip = fip.ip.expect("pinned");
        let f = follow(&mut model, "seed", after.clone(), Profile::Walkthrough).expect("move");
        assert_eq!(f.how, How::InPlace(vec![format!("disassociate {ip}"), format!("associate {ip} with vm6")]), "from {from}");
        plans_equal(model.as_ref().expect("built"), &after);
        // Delete vm6 (its floating IP moved back first, as a separate revision).
        after.floating_ips.iter_mut().find(|f| f.ip == Some(ip)).expect("kept").instance = Some(from);
        follow(&mut model, "seed", after.clone(), Profile::Walkthrough).expect("move back");
        after.instances.retain(|x| x.name != "vm6");
        let f = follow(&mut model, "seed", after.clone(), Profile::Walkthrough).expect("delete");
        assert_eq!(f.how, How::InPlace(vec!["delete vm6".into()]));
        plans_equal(model.as_ref().expect("built"), &after);
        // Nothing changed: nothing done.
        let f = follow(&mut model, "seed", after.clone(), Profile::Walkthrough).expect("same");
        assert_eq!(f.how, How::Unchanged);
    }

    #[test]
    fn a_compute_host_joins_and_leaves_in_place_and_equals_a_rebuild() {
        let before = pinned(&seed());
        let mut model = None;
        follow(&mut model, "seed", before.clone(), Profile::Walkthrough).expect("first");
        // As the server registers a new agent: its own id and DVR MAC.
        let mut after = before.clone();
        let mut joiner = after.hosts.iter().find(|h| h.name == "compute2").expect("seed has it").clone();
        joiner.name = "compute3".into();
        joiner.id = Some(uuid::Uuid::from_u128(0x3333));
        joiner.dvr_mac = Some("fa:16:3f:33:33:33".into());
        after.hosts.push(joiner);
        let f = follow(&mut model, "seed", after.clone(), Profile::Walkthrough).expect("join");
        assert_eq!(f.how, How::InPlace(vec!["join compute3".into()]));
        plans_equal(model.as_ref().expect("built"), &after);
        let m = model.as_ref().expect("built");
        verify(m, "seed", "compute3", Profile::Walkthrough).expect("the joiner's plan is a rebuild's");
        // It leaves again.
        let f = follow(&mut model, "seed", before.clone(), Profile::Walkthrough).expect("leave");
        assert_eq!(f.how, How::InPlace(vec!["leave compute3".into()]));
        plans_equal(model.as_ref().expect("built"), &before);
        // A host whose mappings changed is not a join or a leave.
        let mut changed = before.clone();
        changed.hosts[2].bridge_mappings.insert("physnet9".into(), "br-nine".into());
        let f = follow(&mut model, "seed", changed.clone(), Profile::Walkthrough).expect("changed");
        assert!(matches!(&f.how, How::Rebuilt(why) if why.contains("hosts changed")), "{:?}", f.how);
    }

    /// The server after a change: the change applied to its pinned
    /// topology, the implicit ports of a detached interface deleted, the
    /// rest allocated and pinned (as the server writes allocations back).
    fn server_after(spec: &TopologySpec, change: &Change) -> TopologySpec {
        let mut next = spec.clone();
        change.apply(&mut next).expect("applies");
        if let Change::RemoveRouterInterface { router, subnet } = change {
            let net = next.networks.iter().find(|n| n.subnets.iter().any(|s| &s.name == subnet)).expect("its network").name.clone();
            next.ports.retain(|p| !(p.router.as_ref() == Some(router) && p.network == net && implicit_key(p).is_some()));
        }
        pinned(&next)
    }

    #[test]
    fn a_router_interface_follows_in_place_and_equals_a_rebuild() {
        let before = pinned(&seed());
        let mut model = None;
        follow(&mut model, "seed", before.clone(), Profile::Walkthrough).expect("first");
        let r = before.routers.iter().find(|r| r.interfaces.len() > 1).expect("a router with two interfaces");
        let (router, subnet) = (r.name.clone(), r.interfaces.last().expect("two").clone());
        let detached = server_after(&before, &Change::RemoveRouterInterface { router: router.clone(), subnet: subnet.clone() });
        let f = follow(&mut model, "seed", detached.clone(), Profile::Walkthrough).expect("detach");
        assert_eq!(f.how, How::InPlace(vec![format!("detach {subnet} from {router}")]));
        plans_equal(model.as_ref().expect("built"), &detached);
        let attached = server_after(&detached, &Change::AddRouterInterface { router: router.clone(), subnet: subnet.clone() });
        let f = follow(&mut model, "seed", attached.clone(), Profile::Walkthrough).expect("attach");
        assert_eq!(f.how, How::InPlace(vec![format!("attach {subnet} to {router}")]));
        plans_equal(model.as_ref().expect("built"), &attached);
        // Positive control: a server that gave the new qr- port another MAC
        // is not followed in place.
        follow(&mut model, "seed", detached.clone(), Profile::Walkthrough).expect("detach again");
        let mut other = attached.clone();
        let qr = other
            .ports
            .iter_mut()
            .find(|p| {
                p.router.as_ref() == Some(&router)
                    && p.device_owner.as_deref() == Some("network:router_interface_distributed")
                    && p.ip.is_some_and(|ip| {
                        attached.networks.iter().flat_map(|n| &n.subnets).any(|s| s.name == subnet && s.gateway_ip == Some(ip))
                    })
            })
            .expect("the new qr- port");
        qr.mac = Some("fa:16:3e:ee:ee:ee".parse().expect("mac"));
        let f = follow(&mut model, "seed", other.clone(), Profile::Walkthrough).expect("attach otherwise");
        assert!(matches!(&f.how, How::Rebuilt(why) if why.contains("implicit ports")), "{:?}", f.how);
        plans_equal(model.as_ref().expect("built"), &other);
    }

    #[test]
    fn a_rebound_instance_costs_a_rebuild() {
        let before = pinned(&seed());
        let mut model = None;
        follow(&mut model, "seed", before.clone(), Profile::Walkthrough).expect("first");
        let after = before.clone();
        let mut moved = after.clone();
        let x = moved.instances.iter_mut().find(|x| x.host == "compute1").expect("one on compute1");
        x.host = "compute2".into();
        let f = follow(&mut model, "seed", moved.clone(), Profile::Walkthrough).expect("re-bind");
        assert!(matches!(&f.how, How::Rebuilt(why) if why.contains("re-bound")), "{:?}", f.how);
        plans_equal(model.as_ref().expect("built"), &moved);
        // Positive control for `verify`: a model held back one revision differs.
        let stale = Model::build("seed", before, Profile::Walkthrough, String::new()).expect("builds").0;
        let stale = Model { spec: moved, ..stale };
        assert!(verify(&stale, "seed", "compute2", Profile::Walkthrough).is_err());
    }
}
