//! Hosts added and removed in place.
//!
//! A compute node that joins carries nothing yet: no ports, no router
//! copies, no local VLANs. What the rest of the cloud sees of it is its DVR
//! MAC (every other host's bridges let routed frames from it through) and,
//! with tunnels, its endpoint. So adding one is a new [`Host`] at the end of
//! the list, with the DVR MAC and tunnel endpoint the build of the pinned
//! file would hand it (the MAC hashed from its name among those in use, the
//! first free underlay address); removing an empty compute node takes both
//! away again and renumbers the hosts after it. What is not that simple —
//! a host that still carries instances, ports or a router's SNAT, or one
//! copied from a network node — is rebuilt from the pinned file, and
//! [`Applied::rebuilt`] says so.

use super::{Applied, HostEvent, Live};
use crate::alloc::*;
use crate::change::{Change, ChangeError};
use crate::spec::Role;
use crate::topology::*;
use crate::types::*;

impl Live {
    /// Add or remove a host in place; `Ok(None)` when the change has to be
    /// rebuilt instead (which also reports what is wrong with it).
    pub(super) fn host_change(&mut self, change: &Change) -> Result<Option<Applied>, ChangeError> {
        Ok(match change {
            Change::AddHost { name, like } => self.add_host(name, like.as_deref()),
            Change::RemoveHost { name } => self.remove_host(name),
            _ => None,
        })
    }

    fn add_host(&mut self, name: &str, like: Option<&str>) -> Option<Applied> {
        let t = &self.topo;
        let valid = !name.is_empty() && name.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch));
        if !valid || t.host_ix(name).is_some() || t.hosts.len() >= crate::limits::MAX_HOSTS {
            return None;
        }
        let model = match like {
            Some(l) => t.host_ix(l)?,
            None => t.hosts.iter().position(|h| h.role == Role::Compute).map(HostIx)?,
        };
        let model = t.host(model);
        if model.role != Role::Compute {
            return None;
        }
        // The first free host address of the underlay, as the build hands
        // out endpoints to hosts without one (every other one is pinned).
        let tunnel_ip = match t.underlay {
            Some(u) => Some(u.hosts().find(|a| !t.hosts.iter().any(|h| h.tunnel_ip == Some(*a)))?),
            None => None,
        };
        let dvr_mac = self.macs.allocate(DVR_MAC_PREFIX, &format!("dvr:{name}"))?;
        let host = Host {
            id: HostId(derive_id("host", name)),
            name: name.to_string(),
            role: model.role,
            bridge_mappings: model.bridge_mappings.clone(),
            dvr_mac: Some(dvr_mac),
            local_vlans: Vec::new(),
            fip_links: Vec::new(),
            tunnel_ip,
        };
        let at = HostIx(self.topo.hosts.len());
        self.topo.hosts.push(host);
        self.topo.index.host_ports.push(Vec::new());
        self.topo.index.host_routers.push(Vec::new());
        let event = HostEvent { name: name.to_string(), at, dvr_mac, added: true };
        Some(Applied { hosts: [name.to_string()].into(), host: Some(event), ..Applied::default() })
    }

    fn remove_host(&mut self, name: &str) -> Option<Applied> {
        let t = &self.topo;
        let k = t.host_ix(name)?;
        let host = t.host(k);
        let busy = t.host_ports(k).next().is_some()
            || t.index.host_routers.get(k.0).is_some_and(|r| !r.is_empty())
            || t.routers.iter().any(|r| r.snat_host == Some(k))
            || t.instances.iter().any(|x| x.host == k);
        if host.role != Role::Compute || busy {
            return None;
        }
        let dvr_mac = host.dvr_mac?;
        self.macs.release(dvr_mac);
        let t = &mut self.topo;
        t.hosts.remove(k.0);
        let shift = |h: &mut HostIx| {
            if h.0 > k.0 {
                h.0 -= 1;
            }
        };
        for p in &mut t.ports {
            p.host.iter_mut().for_each(shift);
        }
        for x in &mut t.instances {
            shift(&mut x.host);
        }
        for r in &mut t.routers {
            r.hosts.iter_mut().for_each(shift);
            r.snat_host.iter_mut().for_each(shift);
        }
        t.index.host_ports.remove(k.0);
        t.index.host_routers.remove(k.0);
        t.index.fip_agent_port = std::mem::take(&mut t.index.fip_agent_port)
            .into_iter()
            .map(|((mut h, n), p)| {
                shift(&mut h);
                ((h, n), p)
            })
            .collect();
        let event = HostEvent { name: name.to_string(), at: k, dvr_mac, added: false };
        Some(Applied { host: Some(event), ..Applied::default() })
    }
}
