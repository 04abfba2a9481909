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

use super::{Applied, HostEvent, Live, err};
use crate::alloc::*;
use crate::change::{Change, ChangeError};
use crate::spec::{HostSpec, Role};
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
        Some(self.push_host(host, dvr_mac))
    }

    /// Put a checked, empty host at the end of the list (its DVR MAC reserved).
    fn push_host(&mut self, host: Host, dvr_mac: MacAddr) -> Applied {
        let at = HostIx(self.topo.hosts.len());
        let name = host.name.clone();
        self.topo.hosts.push(host);
        self.topo.index.host_ports.push(Vec::new());
        self.topo.index.host_routers.push(Vec::new());
        let event = HostEvent { name: name.clone(), at, dvr_mac, added: true };
        Applied { hosts: [name].into(), host: Some(event), ..Applied::default() }
    }

    /// Add compute host `h` as a control plane described it (`dvr server`
    /// registered its agent and gave it a DVR MAC), with its DVR MAC and
    /// tunnel endpoint when it names them (allocated as the build does when
    /// not): what a build of the control plane's topology gives, without the
    /// build. Refused, changing nothing, when the host is not a compute node,
    /// does not check as a build checks it, or clashes with another host;
    /// the caller then rebuilds, which reports why.
    pub fn join(&mut self, h: &HostSpec) -> Result<Applied, ChangeError> {
        let change = Change::AddHost { name: h.name.clone(), like: None };
        let refuse = |why: String| Err(err(&change, format!("{why}\n    fix: rebuild the model from the file")));
        let t = &self.topo;
        if !t.security.is_noop() || h.role != Role::Compute {
            return refuse("only a compute node joins in place, without security groups".into());
        }
        if t.host_ix(&h.name).is_some() || t.hosts.len() >= crate::limits::MAX_HOSTS {
            return refuse(format!("host `{}` is already there, or there are as many hosts as supported", h.name));
        }
        let mut host = match crate::build::check_host_alone(h) {
            Ok(host) => host,
            Err(problems) => return refuse(problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")),
        };
        // Tunnels in use stay in use; an endpoint of its own is checked as the build checks it.
        host.tunnel_ip = match (t.underlay, h.tunnel_ip) {
            (None, None) => None,
            (None, Some(_)) => return refuse("a tunnel endpoint in a deployment without tunnels".into()),
            (Some(u), Some(ip)) => {
                let host_address = u.contains(&ip) && ip != u.network() && ip != u.broadcast();
                if !host_address || t.hosts.iter().any(|x| x.tunnel_ip == Some(ip)) {
                    return refuse(format!("{ip} is not a free host address of the underlay {u}"));
                }
                Some(ip)
            }
            (Some(u), None) => match u.hosts().find(|a| !t.hosts.iter().any(|x| x.tunnel_ip == Some(*a))) {
                Some(ip) => Some(ip),
                None => return refuse(format!("the underlay {u} has no free address")),
            },
        };
        let dvr_mac = match host.dvr_mac {
            Some(m) if self.macs.reserve(m) => m,
            Some(m) => return refuse(format!("DVR MAC {m} is already in use")),
            None => match self.macs.allocate(DVR_MAC_PREFIX, &format!("dvr:{}", h.name)) {
                Some(m) => m,
                None => return refuse("no free DVR MAC".into()),
            },
        };
        host.dvr_mac = Some(dvr_mac);
        self.spec.hosts.push(h.clone());
        Ok(self.push_host(host, dvr_mac))
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
