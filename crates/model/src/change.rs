//! Changes to a deployment, as an operator makes them: boot or delete an
//! instance, associate or disassociate a floating IP, attach or detach a
//! subnet to a router, add or remove a host. [`Change::apply`] edits the
//! topology spec, so a fresh load of the file gives the result;
//! [`crate::live::Live::apply`] edits a validated topology in place to the
//! same result.

use crate::spec::{FloatingIpSpec, InstanceSpec, TopologySpec};
use serde::Serialize;
use std::net::Ipv4Addr;

/// One change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// Boot an instance (address and MAC allocated).
    AddInstance {
        /// Name.
        name: String,
        /// Compute host.
        host: String,
        /// Network.
        network: String,
    },
    /// Delete an instance (and any floating IP association it had).
    RemoveInstance {
        /// Name.
        name: String,
    },
    /// Associate a new floating IP (address allocated when `ip` is none).
    AssociateFloatingIp {
        /// Address.
        ip: Option<Ipv4Addr>,
        /// Instance.
        instance: String,
    },
    /// Attach a subnet to a router.
    AddRouterInterface {
        /// Router.
        router: String,
        /// Subnet.
        subnet: String,
    },
    /// Detach a subnet from a router (`openstack router remove subnet`).
    RemoveRouterInterface {
        /// Router.
        router: String,
        /// Subnet.
        subnet: String,
    },
    /// Disassociate a floating IP from its instance; the address stays
    /// allocated on its external network (`openstack floating ip unset --port`).
    DisassociateFloatingIp {
        /// Address.
        ip: Ipv4Addr,
    },
    /// Take a host out of the deployment, with the instances on it (and their
    /// floating IPs): its agents and DVR MAC are gone.
    RemoveHost {
        /// Host name.
        name: String,
    },
    /// Add a host (a DVR MAC is allocated): a new compute node joining.
    AddHost {
        /// Host name.
        name: String,
        /// The host whose role, bridge mappings and NICs it copies (default:
        /// the first compute host), as a new node is installed like its peers.
        like: Option<String>,
    },
}

impl Change {
    /// Short name of the change kind (for reports).
    pub fn kind(&self) -> &'static str {
        match self {
            Change::AddInstance { .. } => "add instance",
            Change::RemoveInstance { .. } => "remove instance",
            Change::AssociateFloatingIp { .. } => "associate floating IP",
            Change::AddRouterInterface { .. } => "add router interface",
            Change::RemoveRouterInterface { .. } => "remove router interface",
            Change::DisassociateFloatingIp { .. } => "disassociate floating IP",
            Change::RemoveHost { .. } => "remove host",
            Change::AddHost { .. } => "add host",
        }
    }

    /// Apply to a spec. Errors name what was not found; validation of the
    /// result happens when the model is rebuilt.
    pub fn apply(&self, spec: &mut TopologySpec) -> Result<(), String> {
        match self {
            Change::AddInstance { name, host, network } => {
                spec.instances.push(InstanceSpec {
                    id: None,
                    name: name.clone(),
                    host: host.clone(),
                    network: network.clone(),
                    ip: None,
                    mac: None,
                    ..InstanceSpec::default()
                });
            }
            Change::RemoveInstance { name } => {
                let before = spec.instances.len();
                spec.instances.retain(|x| &x.name != name);
                if spec.instances.len() == before {
                    let names: Vec<&str> = spec.instances.iter().map(|x| x.name.as_str()).collect();
                    return Err(format!("no instance `{name}` to remove\n    fix: name one of: {}", names.join(", ")));
                }
                spec.floating_ips.retain(|f| f.instance.as_deref() != Some(name.as_str()));
                // A demo path from or to a removed instance no longer exists.
                spec.paths.retain(|p| &p.from != name && &p.to != name);
            }
            Change::AssociateFloatingIp { ip, instance } => {
                spec.floating_ips.push(FloatingIpSpec { id: None, ip: *ip, instance: Some(instance.clone()), network: None });
            }
            Change::AddRouterInterface { router, subnet } => {
                let r = spec.routers.iter_mut().find(|r| &r.name == router).ok_or_else(|| format!("no router `{router}`"))?;
                r.interfaces.push(subnet.clone());
            }
            Change::RemoveRouterInterface { router, subnet } => {
                let routers: Vec<String> = spec.routers.iter().map(|r| r.name.clone()).collect();
                let r = spec
                    .routers
                    .iter_mut()
                    .find(|r| &r.name == router)
                    .ok_or_else(|| format!("no router `{router}`\n    fix: name one of: {}", routers.join(", ")))?;
                let had = r.interfaces.join(", ");
                let before = r.interfaces.len();
                r.interfaces.retain(|s| s != subnet);
                if r.interfaces.len() == before {
                    return Err(format!(
                        "router `{router}` has no interface on subnet `{subnet}`\n    fix: name one of its subnets: {had}"
                    ));
                }
            }
            Change::DisassociateFloatingIp { ip } => {
                let net = spec
                    .networks
                    .iter()
                    .find(|n| n.external && n.subnets.iter().any(|s| s.cidr.parse::<ipnet::Ipv4Net>().is_ok_and(|c| c.contains(ip))))
                    .map(|n| n.name.clone());
                let f =
                    spec.floating_ips.iter_mut().find(|f| f.ip == Some(*ip) && f.instance.is_some()).ok_or_else(|| {
                        format!("no floating IP {ip} associated with an instance\n    fix: name an associated floating IP given with `ip:` in the file")
                    })?;
                f.instance = None;
                f.network = f.network.take().or(net);
            }
            Change::RemoveHost { name } => {
                let before = spec.hosts.len();
                spec.hosts.retain(|h| &h.name != name);
                if spec.hosts.len() == before {
                    let names: Vec<&str> = spec.hosts.iter().map(|h| h.name.as_str()).collect();
                    return Err(format!("no host `{name}` to remove\n    fix: name one of: {}", names.join(", ")));
                }
                let gone: Vec<String> = spec.instances.iter().filter(|x| &x.host == name).map(|x| x.name.clone()).collect();
                spec.instances.retain(|x| &x.host != name);
                spec.floating_ips.retain(|f| f.instance.as_ref().is_none_or(|x| !gone.contains(x)));
                spec.paths.retain(|p| !gone.contains(&p.from) && !gone.contains(&p.to));
            }
            Change::AddHost { name, like } => {
                let model = match like {
                    Some(l) => spec.hosts.iter().find(|h| &h.name == l),
                    None => spec.hosts.iter().find(|h| h.role == crate::spec::Role::Compute),
                };
                let Some(model) = model else {
                    let names: Vec<&str> = spec.hosts.iter().map(|h| h.name.as_str()).collect();
                    return Err(format!(
                        "no host `{}` to copy the new host's role and bridge mappings from\n    fix: name one of: {}",
                        like.as_deref().unwrap_or("with role compute"),
                        names.join(", ")
                    ));
                };
                // Its own identity: id, DVR MAC and tunnel endpoint are allocated.
                let host = crate::spec::HostSpec { id: None, name: name.clone(), dvr_mac: None, tunnel_ip: None, ..model.clone() };
                spec.hosts.push(host);
            }
        }
        Ok(())
    }
}

/// A change that does not fit the deployment (names something that is not
/// there); the message says what to name instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--change {kind}: {what}")]
pub struct ChangeError {
    /// The change kind ([`Change::kind`]).
    pub kind: &'static str,
    /// What is wrong, with the fix.
    pub what: String,
}

/// Why a change written on the command line could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot read change `{text}`: {what}\n    fix: use one of add-instance:NAME:HOST:NETWORK, remove-instance:NAME, \
associate-floating-ip:INSTANCE[:IP], disassociate-floating-ip:IP, add-router-interface:ROUTER:SUBNET, \
remove-router-interface:ROUTER:SUBNET, remove-host:HOST, add-host:NAME[:LIKE]"
)]
pub struct ChangeParseError {
    /// The text as given.
    pub text: String,
    /// What is wrong with it.
    pub what: String,
}

/// `KIND:ARG[:ARG…]`, the form `dvr plan --change` takes, so a change can be
/// tried on the command line without editing the topology file.
impl std::str::FromStr for Change {
    type Err = ChangeParseError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |what: &str| ChangeParseError { text: text.to_string(), what: what.to_string() };
        let parts: Vec<&str> = text.split(':').collect();
        let s = |i: usize| parts[i].to_string();
        let ip = |v: &str| v.parse::<Ipv4Addr>().map_err(|_| bad(&format!("`{v}` is not an IPv4 address")));
        Ok(match (parts[0], parts.len()) {
            ("add-instance", 4) => Change::AddInstance { name: s(1), host: s(2), network: s(3) },
            ("remove-instance", 2) => Change::RemoveInstance { name: s(1) },
            ("associate-floating-ip", 2) => Change::AssociateFloatingIp { ip: None, instance: s(1) },
            ("associate-floating-ip", 3) => Change::AssociateFloatingIp { ip: Some(ip(parts[2])?), instance: s(1) },
            ("disassociate-floating-ip", 2) => Change::DisassociateFloatingIp { ip: ip(parts[1])? },
            ("add-router-interface", 3) => Change::AddRouterInterface { router: s(1), subnet: s(2) },
            ("remove-router-interface", 3) => Change::RemoveRouterInterface { router: s(1), subnet: s(2) },
            ("remove-host", 2) => Change::RemoveHost { name: s(1) },
            ("add-host", 2) => Change::AddHost { name: s(1), like: None },
            ("add-host", 3) => Change::AddHost { name: s(1), like: Some(s(2)) },
            (
                "add-instance"
                | "remove-instance"
                | "associate-floating-ip"
                | "disassociate-floating-ip"
                | "add-router-interface"
                | "remove-router-interface"
                | "remove-host"
                | "add-host",
                _,
            ) => return Err(bad("wrong number of `:`-separated arguments")),
            _ => return Err(bad("unknown change kind")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind_and_rejects_bad_text() {
        let ok: Change = "remove-router-interface:router1:test2-v4".parse().unwrap();
        assert_eq!(ok, Change::RemoveRouterInterface { router: "router1".into(), subnet: "test2-v4".into() });
        let ok: Change = "disassociate-floating-ip:10.100.0.7".parse().unwrap();
        assert_eq!(ok, Change::DisassociateFloatingIp { ip: Ipv4Addr::new(10, 100, 0, 7) });
        assert_eq!("remove-host:compute2".parse::<Change>().unwrap(), Change::RemoveHost { name: "compute2".into() });
        let e = "remove-host".parse::<Change>().unwrap_err();
        assert!(e.to_string().contains("wrong number"), "{e}");
        let e = "disassociate-floating-ip:10.1".parse::<Change>().unwrap_err();
        assert!(e.to_string().contains("not an IPv4 address"), "{e}");
        let e = "reboot:x".parse::<Change>().unwrap_err();
        assert!(e.to_string().contains("unknown change kind") && e.to_string().contains("fix:"), "{e}");
    }
}
