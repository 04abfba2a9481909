//! Changes to a deployment, as an operator makes them: boot or delete an
//! instance, associate a floating IP, attach a subnet to a router. A change
//! edits the topology spec; the model is then rebuilt from it, so what a
//! change produces is by construction what a fresh load of the same file
//! produces.

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
}

impl Change {
    /// Short name of the change kind (for reports).
    pub fn kind(&self) -> &'static str {
        match self {
            Change::AddInstance { .. } => "add instance",
            Change::RemoveInstance { .. } => "remove instance",
            Change::AssociateFloatingIp { .. } => "associate floating IP",
            Change::AddRouterInterface { .. } => "add router interface",
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
                });
            }
            Change::RemoveInstance { name } => {
                let before = spec.instances.len();
                spec.instances.retain(|x| &x.name != name);
                if spec.instances.len() == before {
                    return Err(format!("no instance `{name}` to remove"));
                }
                spec.floating_ips.retain(|f| f.instance.as_deref() != Some(name.as_str()));
            }
            Change::AssociateFloatingIp { ip, instance } => {
                spec.floating_ips.push(FloatingIpSpec { id: None, ip: *ip, instance: Some(instance.clone()), network: None });
            }
            Change::AddRouterInterface { router, subnet } => {
                let r = spec.routers.iter_mut().find(|r| &r.name == router).ok_or_else(|| format!("no router `{router}`"))?;
                r.interfaces.push(subnet.clone());
            }
        }
        Ok(())
    }
}
