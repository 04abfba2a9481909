//! Changes whose allocations a control plane already made. `dvr server`
//! hands out a booted port's UUID, address and MAC, and a floating IP keeps
//! its UUID and place when it moves to another instance; an agent that
//! follows the server edits its [`Live`] model with those values, so the
//! result is what a build of the server's topology gives, without the build.
//!
//! Both refuse (and change nothing) when security groups are configured: a
//! port's addresses are then in every host's firewall flows, and the caller
//! rebuilds, as [`Live::apply`] does.

use super::{Applied, Live, err};
use crate::change::{Change, ChangeError};
use crate::spec::InstanceSpec;
use crate::types::*;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// Allocations given instead of made (`None`: allocate as usual).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Pin {
    pub id: Option<uuid::Uuid>,
    pub ip: Option<Ipv4Addr>,
    pub mac: Option<MacAddr>,
}

impl Live {
    /// Boot instance `x` with the allocations it names (`id`, `ip`, `mac`,
    /// each allocated as by [`Change::AddInstance`] when absent). Refused
    /// when security groups are configured or `x` sets any of them.
    pub fn boot(&mut self, x: &InstanceSpec) -> Result<Applied, ChangeError> {
        let change = Change::AddInstance { name: x.name.clone(), host: x.host.clone(), network: x.network.clone() };
        let secured =
            x.project.is_some() || x.security_groups.is_some() || x.port_security_enabled.is_some() || !x.allowed_address_pairs.is_empty();
        if !self.topo.security.is_noop() || secured {
            return Err(err(
                &change,
                "security groups are configured: a port's addresses are in every host's firewall flows\n    fix: rebuild",
            ));
        }
        let applied = self.add_instance(&change, &x.name, &x.host, &x.network, Pin { id: x.id, ip: x.ip, mac: x.mac })?;
        self.spec.instances.push(x.clone());
        Ok(applied)
    }

    /// Associate the allocated, unassociated floating IP `ip` with
    /// `instance`, keeping its UUID and its place among the floating IPs (so
    /// the `ip rule` priorities on the instance's host are those a build
    /// gives). The instance's host is replanned whole: the priorities of the
    /// floating IPs after it on that host shift.
    pub fn reassociate(&mut self, ip: Ipv4Addr, instance: &str) -> Result<Applied, ChangeError> {
        let change = Change::AssociateFloatingIp { ip: Some(ip), instance: instance.to_string() };
        if !self.topo.security.is_noop() {
            return Err(err(&change, "security groups are configured\n    fix: rebuild"));
        }
        let Some(f) = self.topo.floating_ips.iter().position(|f| f.ip == ip && f.association.is_none()) else {
            return Err(err(&change, format!("no unassociated floating IP {ip}\n    fix: name an allocated floating IP no instance has")));
        };
        let old = self.topo.floating_ips.remove(f);
        self.pools[old.subnet.0].release(ip);
        match self.associate(&change, Some(ip), instance) {
            Ok(_) => {
                let mut new = self.topo.floating_ips.pop().expect("associate pushed it");
                new.id = old.id;
                let (x, _) = new.association.expect("associated");
                self.topo.floating_ips.insert(f, new);
                let h = self.topo.instance(x).host;
                self.renumber_fip_rules(h);
                match self.spec.floating_ips.iter_mut().find(|s| s.ip == Some(ip)) {
                    Some(s) => s.instance = Some(instance.to_string()),
                    None => self.spec = super::pinned_spec(&self.topo),
                }
                Ok(Applied { hosts: BTreeSet::from([self.topo.host(h).name.clone()]), ..Applied::default() })
            }
            Err(e) => {
                self.pools[old.subnet.0].reserve(ip);
                self.topo.floating_ips.insert(f, old);
                Err(e)
            }
        }
    }

    /// Reserve `ip` of subnet `s` for a port (a control plane allocated it).
    pub(super) fn reserve_ip(&mut self, change: &Change, s: SubnetIx, ip: Ipv4Addr) -> Result<Ipv4Addr, ChangeError> {
        let sub = self.topo.subnet(s);
        if !self.pools[s.0].is_host(ip) || ip == sub.gateway {
            return Err(err(change, format!("{ip} is not a free host address of {}\n    fix: use one inside it", sub.cidr)));
        }
        if !self.pools[s.0].reserve(ip) {
            return Err(err(change, format!("{ip} is already in use\n    fix: use a free address")));
        }
        Ok(ip)
    }
}
