//! The deployment laid out as typed shapes, links and network lines, and a
//! traced path as overlays on it. Renderers ([`crate::svg`]) only draw what
//! is here; nothing reads trace text.

use dvr_model::{MacAddr, Topology};
use dvr_plan::{DeviceLink, NamespaceKind, Plan, PortKind};
use dvr_sim::{Change, Fate, Hop, HopKind, Step, Trace};
use std::collections::HashMap;

const PAD: f64 = 14.0;
const GAP: f64 = 16.0;
const LINE: f64 = 14.0;
const NS_W: f64 = 230.0;
const VM_W: f64 = 130.0;
const PER_ROW: usize = 5;
const BR_H: f64 = 42.0;

/// A rectangle (top-left corner, size).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    /// Left.
    pub x: f64,
    /// Top.
    pub y: f64,
    /// Width.
    pub w: f64,
    /// Height.
    pub h: f64,
}

impl Rect {
    /// Centre.
    pub fn center(&self) -> (f64, f64) {
        (self.x + self.w / 2.0, self.y + self.h / 2.0)
    }
}

/// What a box is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShapeKind {
    /// A host (contains the others).
    Host,
    /// An OVS bridge.
    Bridge,
    /// A Neutron namespace.
    Namespace(NamespaceKind),
    /// A Nova instance.
    Instance,
    /// A host's NIC on a physical network.
    Nic,
    /// A machine outside the cloud (external host, upstream gateway).
    Outside,
}

impl ShapeKind {
    /// The CSS class of the shape (`host`, `bridge`, `namespace qrouter` …).
    pub fn class(&self) -> &'static str {
        match self {
            ShapeKind::Host => "host",
            ShapeKind::Bridge => "bridge",
            ShapeKind::Namespace(NamespaceKind::Qrouter) => "namespace qrouter",
            ShapeKind::Namespace(NamespaceKind::Snat) => "namespace snat",
            ShapeKind::Namespace(NamespaceKind::Fip) => "namespace fip",
            ShapeKind::Namespace(NamespaceKind::Qdhcp) => "namespace qdhcp",
            ShapeKind::Instance => "instance",
            ShapeKind::Nic => "nic",
            ShapeKind::Outside => "outside",
        }
    }
}

/// One box with its title and text lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// What it is.
    pub kind: ShapeKind,
    /// Host it belongs to (`external` outside the cloud).
    pub host: String,
    /// Its name (bridge, namespace, instance, NIC, host).
    pub name: String,
    /// Where.
    pub rect: Rect,
    /// Bold first line.
    pub title: String,
    /// Further lines (devices and addresses, VLANs, MACs).
    pub lines: Vec<String>,
}

/// What a link joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// A device or VIF plugged into a bridge port.
    Port,
    /// A patch port pair between two bridges.
    Patch,
    /// A veth pair between two namespaces (`rfp-` ↔ `fpr-`).
    Veth,
    /// A NIC or outside machine on a physical network.
    Uplink,
}

impl LinkKind {
    /// CSS class.
    pub fn class(&self) -> &'static str {
        match self {
            LinkKind::Port => "link port",
            LinkKind::Patch => "link patch",
            LinkKind::Veth => "link veth",
            LinkKind::Uplink => "link uplink",
        }
    }
}

/// A straight line between two parts, with an optional label.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// Kind.
    pub kind: LinkKind,
    /// Start.
    pub from: (f64, f64),
    /// End.
    pub to: (f64, f64),
    /// Label (port name, VLAN tag).
    pub label: Option<String>,
}

/// A physical network drawn as a horizontal line.
#[derive(Debug, Clone, PartialEq)]
pub struct NetLine {
    /// Physical network name.
    pub name: String,
    /// Height of the line.
    pub y: f64,
    /// Left end.
    pub x0: f64,
    /// Right end.
    pub x1: f64,
    /// The Neutron networks it carries, with their segments.
    pub label: String,
}

/// Which direction of a trace an overlay shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The packet.
    Request,
    /// Its reply.
    Reply,
}

impl Direction {
    /// CSS class.
    pub fn class(&self) -> &'static str {
        match self {
            Direction::Request => "request",
            Direction::Reply => "reply",
        }
    }
}

/// One numbered stop of a traced path.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    /// Its number along the path (from 1).
    pub n: usize,
    /// Where it is drawn.
    pub at: (f64, f64),
    /// `host where`.
    pub place: String,
    /// What happened there that matters (rewrites, NAT, routing decisions).
    pub notes: Vec<String>,
    /// The drop sentence, when the packet died here.
    pub dropped: Option<String>,
    /// Whether the packet was delivered here.
    pub delivered: bool,
}

/// One direction of a traced path over the scene.
#[derive(Debug, Clone, PartialEq)]
pub struct Overlay {
    /// Request or reply.
    pub direction: Direction,
    /// `from -> to` and the verdict, for the legend.
    pub title: String,
    /// The polyline.
    pub points: Vec<(f64, f64)>,
    /// Numbered stops.
    pub marks: Vec<Mark>,
}

/// The laid-out deployment.
#[derive(Debug, Clone, Default)]
pub struct Scene {
    /// Canvas width.
    pub width: f64,
    /// Canvas height (without the legend).
    pub height: f64,
    /// Boxes (hosts first, so they are drawn beneath their parts).
    pub shapes: Vec<Shape>,
    /// Lines between parts.
    pub links: Vec<Link>,
    /// Physical networks.
    pub networks: Vec<NetLine>,
    /// Traced paths.
    pub overlays: Vec<Overlay>,
    /// Hosts left out by the filter, for the caption.
    pub hidden_hosts: usize,
    anchors: HashMap<(String, String), (f64, f64)>,
    uplink_x: HashMap<(String, String), f64>,
    net_y: HashMap<String, f64>,
    macs: HashMap<MacAddr, String>,
}

/// Which hosts to draw.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only these hosts (all dataplane hosts when `None`).
    pub hosts: Option<Vec<String>>,
}

impl Filter {
    /// The hosts a trace (request and reply) crosses.
    pub fn crossed_by(t: &Trace) -> Filter {
        let mut hosts: Vec<String> = Vec::new();
        for tr in std::iter::once(t).chain(t.reply.as_deref()) {
            for h in path_hops(tr) {
                if h.kind != HopKind::Wire && h.host != "external" && !hosts.iter().any(|x| *x == h.host) {
                    hosts.push(h.host.to_string());
                }
            }
        }
        Filter { hosts: Some(hosts) }
    }
    fn keeps(&self, host: &str) -> bool {
        self.hosts.as_ref().is_none_or(|hs| hs.iter().any(|h| h == host))
    }
}

fn short(ns: &str) -> String {
    match ns.split_once('-') {
        Some((kind, id)) if id.len() > 8 => format!("{kind}-{}", &id[..8]),
        _ => ns.to_string(),
    }
}

struct Item {
    kind: ShapeKind,
    name: String,
    title: String,
    lines: Vec<String>,
    w: f64,
}

impl Item {
    fn h(&self) -> f64 {
        24.0 + LINE * self.lines.len() as f64
    }
}

/// Lay out the deployment: one column per dataplane host the filter keeps,
/// then the physical networks and the machines outside the cloud.
pub fn build_scene(topo: &Topology, plan: &Plan, filter: &Filter) -> Scene {
    let mut sc = Scene::default();
    for h in &topo.hosts {
        if let Some(m) = h.dvr_mac {
            sc.macs.insert(m, format!("DVR MAC of {}", h.name));
        }
    }
    for p in &topo.ports {
        if matches!(p.owner, dvr_model::PortOwner::RouterInterfaceDistributed { .. }) {
            sc.macs.insert(p.mac, format!("gateway MAC {}", p.ip));
        }
    }
    let hosts: Vec<&dvr_plan::HostPlan> = plan.hosts.iter().filter(|h| !h.bridges.is_empty()).collect();
    sc.hidden_hosts = hosts.iter().filter(|h| !filter.keeps(&h.host)).count();
    let mut x = GAP;
    let top = GAP;
    let mut nics: Vec<(String, String, f64, f64)> = Vec::new(); // host, physnet, x, bottom y
    let mut host_bottom: f64 = 0.0;
    // host, item, bridge, label, device index (spreads a namespace's links apart)
    let mut pending_links: Vec<(String, String, String, Option<String>, usize)> = Vec::new();
    for hp in hosts.iter().filter(|h| filter.keeps(&h.host)) {
        let start = sc.shapes.len();
        sc.shapes.push(Shape {
            kind: ShapeKind::Host,
            host: hp.host.clone(),
            name: hp.host.clone(),
            rect: Rect { x, y: top, w: 0.0, h: 0.0 },
            title: format!("{} ({})", hp.host, format!("{:?}", hp.role).to_lowercase()),
            lines: hp.dvr_mac.map(|m| vec![format!("DVR MAC {m}")]).unwrap_or_default(),
        });
        let mut items: Vec<Item> = Vec::new();
        for ns in &hp.namespaces {
            let lines = ns
                .devices
                .iter()
                .map(|d| {
                    let a: Vec<String> = d.addrs.iter().map(|a| a.to_string()).collect();
                    format!("{} {}", d.name, a.join(" "))
                })
                .collect();
            items.push(Item {
                kind: ShapeKind::Namespace(ns.kind),
                name: ns.name.clone(),
                title: format!("{} ({})", short(&ns.name), ns.serves),
                lines,
                w: NS_W,
            });
            for (k, d) in ns.devices.iter().enumerate() {
                if let DeviceLink::Ovs { bridge } = &d.link {
                    let tag = hp.bridge(bridge).and_then(|b| b.ports.iter().find(|p| p.name == d.name)).and_then(|p| p.tag);
                    pending_links.push((hp.host.clone(), ns.name.clone(), bridge.clone(), tag.map(|t| format!("tag {t}")), k));
                }
            }
        }
        for br in &hp.bridges {
            for p in &br.ports {
                if let PortKind::Vif { instance } = &p.kind {
                    let ip = topo.instances.iter().find(|x| &x.name == instance).map(|x| topo.port(x.port).ip.to_string());
                    items.push(Item {
                        kind: ShapeKind::Instance,
                        name: instance.clone(),
                        title: instance.clone(),
                        lines: ip.into_iter().chain(p.mac.map(|m| m.to_string())).collect(),
                        w: VM_W,
                    });
                    pending_links.push((hp.host.clone(), instance.clone(), br.name.clone(), p.tag.map(|t| format!("tag {t}")), 0));
                }
            }
        }
        // Rows of items above br-int.
        let mut y = top + 30.0 + LINE * sc.shapes[start].lines.len() as f64;
        let mut inner_w: f64 = 280.0;
        for row in items.chunks(PER_ROW) {
            let mut ix = x + PAD;
            let rh = row.iter().map(Item::h).fold(0.0, f64::max);
            for it in row {
                let rect = Rect { x: ix, y, w: it.w, h: it.h() };
                sc.anchors.insert((hp.host.clone(), it.name.clone()), rect.center());
                sc.shapes.push(Shape {
                    kind: it.kind,
                    host: hp.host.clone(),
                    name: it.name.clone(),
                    rect,
                    title: it.title.clone(),
                    lines: it.lines.clone(),
                });
                ix += it.w + GAP;
            }
            inner_w = inner_w.max(ix - GAP - x - PAD);
            y += rh + 46.0;
        }
        // Bridges: the integration bridge across, physical bridges below it.
        let providers: Vec<&dvr_plan::Bridge> = hp.bridges.iter().filter(|b| b.physnet.is_some()).collect();
        inner_w = inner_w.max(providers.len() as f64 * (170.0 + GAP) - GAP);
        let mut bridge_rect: HashMap<String, Rect> = HashMap::new();
        for br in hp.bridges.iter().filter(|b| b.physnet.is_none()) {
            let vlans: Vec<String> = topo
                .hosts
                .iter()
                .find(|h| h.name == hp.host)
                .map(|h| h.local_vlans.iter().map(|(n, v)| format!("{}={v}", topo.network(*n).name)).collect())
                .unwrap_or_default();
            let rect = Rect { x: x + PAD, y, w: inner_w, h: BR_H };
            bridge_rect.insert(br.name.clone(), rect);
            sc.anchors.insert((hp.host.clone(), br.name.clone()), rect.center());
            sc.shapes.push(Shape {
                kind: ShapeKind::Bridge,
                host: hp.host.clone(),
                name: br.name.clone(),
                rect,
                title: br.name.clone(),
                lines: vec![format!("local VLANs {}", vlans.join(", "))],
            });
            y += BR_H + 50.0;
        }
        let mut bx = x + PAD;
        for br in &providers {
            let rect = Rect { x: bx, y, w: 170.0, h: BR_H };
            bridge_rect.insert(br.name.clone(), rect);
            sc.anchors.insert((hp.host.clone(), br.name.clone()), rect.center());
            let physnet = br.physnet.clone().unwrap_or_default();
            sc.shapes.push(Shape {
                kind: ShapeKind::Bridge,
                host: hp.host.clone(),
                name: br.name.clone(),
                rect,
                title: br.name.clone(),
                lines: vec![physnet.clone()],
            });
            if let Some(nic) = br.ports.iter().find(|p| p.kind == PortKind::Nic) {
                let nr = Rect { x: bx + 45.0, y: y + BR_H + 24.0, w: 80.0, h: 24.0 };
                sc.shapes.push(Shape {
                    kind: ShapeKind::Nic,
                    host: hp.host.clone(),
                    name: nic.name.clone(),
                    rect: nr,
                    title: nic.name.clone(),
                    lines: vec![],
                });
                sc.links.push(Link { kind: LinkKind::Port, from: (nr.center().0, y + BR_H), to: (nr.center().0, nr.y), label: None });
                nics.push((hp.host.clone(), physnet, nr.center().0, nr.y + nr.h));
            }
            bx += 170.0 + GAP;
        }
        let bottom = y + BR_H + 24.0 + 24.0 + PAD;
        // Patch ports.
        for br in &hp.bridges {
            for p in &br.ports {
                if let PortKind::Patch { peer } = &p.kind
                    && let Some(other) = hp.bridges.iter().find(|b| b.ports.iter().any(|q| &q.name == peer))
                    && br.physnet.is_none()
                    && let (Some(a), Some(b)) = (bridge_rect.get(&br.name), bridge_rect.get(&other.name))
                {
                    let xb = b.center().0;
                    sc.links.push(Link { kind: LinkKind::Patch, from: (xb, a.y + a.h), to: (xb, b.y), label: Some(p.name.clone()) });
                }
            }
        }
        // Devices and VIFs on their bridges, veths between namespaces.
        for (host, item, bridge, label, k) in pending_links.drain(..) {
            let shape = sc.shapes.iter().find(|s| s.host == host && s.name == item).map(|s| s.rect);
            if let (Some(s), Some(r)) = (shape, bridge_rect.get(&bridge)) {
                let x = if s.w > VM_W { s.x + 20.0 + 70.0 * k as f64 } else { s.center().0 };
                let (y0, y1) = if r.y > s.y { (s.y + s.h, r.y) } else { (s.y, r.y + r.h) };
                sc.links.push(Link { kind: LinkKind::Port, from: (x, y0), to: (x, y1), label });
            }
        }
        for ns in &hp.namespaces {
            for d in &ns.devices {
                if let DeviceLink::Veth { peer, peer_namespace } = &d.link
                    && ns.name < *peer_namespace
                    && let (Some(&a), Some(&b)) =
                        (sc.anchors.get(&(hp.host.clone(), ns.name.clone())), sc.anchors.get(&(hp.host.clone(), peer_namespace.clone())))
                {
                    // Side to side when the two boxes share a row (they usually do).
                    let rect = |n: &str| sc.shapes.iter().find(|s| s.host == hp.host && s.name == n).map(|s| s.rect);
                    let (from, to) = match (rect(&ns.name), rect(peer_namespace)) {
                        (Some(ra), Some(rb)) if (ra.y - rb.y).abs() < 1.0 => {
                            let (l, r) = if ra.x < rb.x { (ra, rb) } else { (rb, ra) };
                            ((l.x + l.w, l.y + l.h - 8.0), (r.x, r.y + r.h - 8.0))
                        }
                        _ => (a, b),
                    };
                    sc.links.push(Link { kind: LinkKind::Veth, from, to, label: Some(format!("{} ↔ {peer}", d.name)) });
                }
            }
        }
        let w = inner_w + 2.0 * PAD;
        sc.shapes[start].rect.w = w;
        sc.shapes[start].rect.h = bottom - top;
        host_bottom = host_bottom.max(bottom);
        x += w + GAP;
    }
    // Physical networks: one line each, below every host.
    let mut physnets: Vec<String> = Vec::new();
    for (_, p, _, _) in &nics {
        if !physnets.contains(p) {
            physnets.push(p.clone());
        }
    }
    for n in &topo.networks {
        if let Some(p) = n.segment.physnet()
            && !physnets.iter().any(|x| x == p)
        {
            physnets.push(p.to_string());
        }
    }
    let width = x.max(400.0);
    let mut y = host_bottom + 40.0;
    for p in &physnets {
        let carried: Vec<String> = topo
            .networks
            .iter()
            .filter(|n| n.segment.physnet() == Some(p.as_str()))
            .map(|n| match &n.segment {
                dvr_model::Segment::Vlan { vlan, .. } => format!("{} VLAN {}", n.name, vlan.get()),
                _ => format!("{} flat", n.name),
            })
            .collect();
        sc.networks.push(NetLine { name: p.clone(), y, x0: GAP, x1: width - GAP, label: format!("{p}: {}", carried.join(", ")) });
        sc.net_y.insert(p.clone(), y);
        for (host, _, nx, ny) in nics.iter().filter(|(_, q, _, _)| q == p) {
            sc.links.push(Link { kind: LinkKind::Uplink, from: (*nx, *ny), to: (*nx, y), label: None });
            sc.uplink_x.insert((host.clone(), p.clone()), *nx);
        }
        y += 36.0;
    }
    // Machines outside the cloud, under their network.
    let mut ox = GAP + 10.0;
    let oy = y + 10.0;
    let mut outside: Vec<(String, String, Vec<String>)> = Vec::new();
    for e in &topo.external_hosts {
        if let Some(p) = topo.network(e.network).segment.physnet() {
            outside.push((e.name.clone(), p.to_string(), vec![e.ip.to_string()]));
        }
    }
    for s in topo.subnets.iter().filter(|s| s.external_gateway_mac.is_some()) {
        if let Some(p) = topo.network(s.network).segment.physnet() {
            outside.push((format!("gateway-{}", s.name), p.to_string(), vec![s.gateway.to_string()]));
        }
    }
    let mut bottom = y;
    for (name, p, lines) in outside {
        let rect = Rect { x: ox, y: oy, w: 150.0, h: 24.0 + LINE * lines.len() as f64 };
        let cx = rect.center().0;
        if let Some(&ny) = sc.net_y.get(&p) {
            sc.links.push(Link { kind: LinkKind::Uplink, from: (cx, oy), to: (cx, ny), label: None });
        }
        sc.anchors.insert(("external".into(), name.clone()), rect.center());
        sc.uplink_x.insert(("external".into(), format!("{name}@{p}")), cx);
        sc.shapes.push(Shape { kind: ShapeKind::Outside, host: "external".into(), name: name.clone(), rect, title: name, lines });
        ox += 150.0 + GAP;
        bottom = bottom.max(oy + rect.h);
    }
    sc.width = width.max(ox);
    sc.height = bottom + GAP;
    sc
}

/// The hops that carried the traced packet: the delivery path, or for a
/// drop the lineage of the copy that died (the traced packet's if it got
/// that far, else the ARP that failed).
pub fn path_hops(t: &Trace) -> Vec<&Hop> {
    let delivered = dvr_sim::delivery_path(t);
    if !delivered.is_empty() {
        return delivered;
    }
    let end = t
        .hops
        .iter()
        .rposition(|h| h.fate == Some(Fate::Dropped) && h.packet.proto != "arp")
        .or_else(|| t.hops.iter().rposition(|h| h.fate == Some(Fate::Dropped)))
        .unwrap_or(t.hops.len().saturating_sub(1));
    let Some(last) = t.hops.get(end) else { return vec![] };
    t.hops[..=end].iter().filter(|h| h.copy.is_ancestor_of(&last.copy)).collect()
}

impl Scene {
    /// The horizontal extent of a bridge box.
    fn bridge_span(&self, host: &str, name: &str) -> Option<(f64, f64)> {
        self.shapes
            .iter()
            .find(|s| s.kind == ShapeKind::Bridge && s.host == host && s.name == name)
            .map(|s| (s.rect.x, s.rect.x + s.rect.w))
    }

    /// A change as people name it: DVR and gateway MACs by owner.
    fn change_note(&self, c: &Change) -> String {
        match c {
            Change::SrcMac { to, .. } if self.macs.contains_key(to) => format!("src MAC → {}", self.macs[to]),
            Change::DstMac { to, .. } if self.macs.contains_key(to) => format!("dst MAC → {}", self.macs[to]),
            other => other.to_string(),
        }
    }

    /// Overlay a trace (its request and, when sent, its reply) on the scene.
    pub fn overlay(&mut self, t: &Trace, from: &str, to: &str) {
        let mut dirs = vec![(Direction::Request, t)];
        if let Some(r) = t.reply.as_deref() {
            dirs.push((Direction::Reply, r));
        }
        for (dir, tr) in dirs {
            let offset = if dir == Direction::Reply { 7.0 } else { 0.0 };
            let hops = path_hops(tr);
            // Consecutive hops at one place make one stop.
            let mut stops: Vec<Vec<&Hop>> = Vec::new();
            for h in hops {
                match stops.last_mut() {
                    Some(s) if s[0].host == h.host && s[0].where_ == h.where_ && h.kind != HopKind::Wire => s.push(h),
                    _ => stops.push(vec![h]),
                }
            }
            let mut points = Vec::new();
            let mut marks = Vec::new();
            for (i, stop) in stops.iter().enumerate() {
                let h0 = stop[0];
                let at = if let Step::Tunnel { encap, .. } = &h0.step {
                    // The underlay is not drawn: mark the crossing halfway
                    // between the two br-tun bridges the path joins.
                    let next = stops.get(i + 1).and_then(|s| self.anchors.get(&(s[0].host.to_string(), s[0].where_.to_string())));
                    let (Some(&(px, py)), Some(&(nx, ny))) = (points.last(), next) else { continue };
                    let at = ((px + nx + offset) / 2.0, (py + ny + offset) / 2.0);
                    let note = format!("VXLAN VNI {} {} → {}", encap.vni, encap.src, encap.dst);
                    let dropped = stop.iter().find(|h| h.fate == Some(Fate::Dropped)).map(|h| h.step.to_string());
                    marks.push(Mark { n: marks.len() + 1, at, place: "underlay".into(), notes: vec![note], dropped, delivered: false });
                    continue;
                } else if let Step::Wire { network, .. } = &h0.step {
                    let Some(&y) = self.net_y.get(network.as_str()) else { continue };
                    let side = |s: Option<&Vec<&Hop>>| -> Option<f64> {
                        let s = s?;
                        let key = if s[0].host == "external" {
                            ("external".to_string(), format!("{}@{network}", s[0].where_))
                        } else {
                            (s[0].host.to_string(), network.to_string())
                        };
                        self.uplink_x.get(&key).copied()
                    };
                    let a = side(i.checked_sub(1).and_then(|j| stops.get(j)));
                    let b = side(stops.get(i + 1));
                    for x in [a, b].into_iter().flatten() {
                        points.push((x + offset, y + offset));
                    }
                    match (a, b) {
                        (Some(a), Some(b)) => ((a + b) / 2.0 + offset, y + offset),
                        (Some(x), None) | (None, Some(x)) => (x + offset, y + offset),
                        (None, None) => continue,
                    }
                } else {
                    let Some(&(cx, y)) = self.anchors.get(&(h0.host.to_string(), h0.where_.to_string())) else { continue };
                    // On a wide bridge, enter straight below or above where the path comes from.
                    let x = match (h0.kind, points.last(), self.bridge_span(&h0.host, &h0.where_)) {
                        (HopKind::Openflow, Some(&(px, _)), Some((x0, x1))) => (px - offset).clamp(x0 + 12.0, x1 - 12.0),
                        _ => cx,
                    };
                    points.push((x + offset, y + offset));
                    (x + offset, y + offset)
                };
                let mut notes: Vec<String> = Vec::new();
                let mut dropped = None;
                let mut delivered = false;
                for h in stop {
                    match &h.step {
                        Step::Nat { hook, rewrite: Some(w), .. } => notes.push(format!("{} {w}", hook.chain())),
                        Step::Conntrack { hook, rewrite } => notes.push(format!("{} conntrack: {rewrite}", hook.chain())),
                        Step::Wire { vlan, .. } => notes.push(vlan.map_or("untagged".into(), |v| format!("VLAN {v} on the wire"))),
                        Step::ProxyArp { dev, .. } => notes.push(format!("proxy ARP on {dev}")),
                        Step::Table { .. } | Step::Normal { .. } | Step::Patch { .. } => {
                            notes.extend(h.changed.iter().map(|c| self.change_note(c)));
                        }
                        _ => {}
                    }
                    match h.fate {
                        Some(Fate::Dropped) => dropped = Some(tr.verdict.drop_reason().unwrap_or_else(|| h.step.to_string())),
                        Some(Fate::Delivered) => delivered = true,
                        _ => {}
                    }
                }
                notes.dedup();
                let place =
                    if h0.kind == HopKind::Wire { format!("wire {}", h0.where_) } else { format!("{} {}", h0.host, short(&h0.where_)) };
                marks.push(Mark { n: marks.len() + 1, at, place, notes, dropped, delivered });
            }
            let what = if dir == Direction::Request { format!("{from} → {to}") } else { format!("reply {to} → {from}") };
            self.overlays.push(Overlay { direction: dir, title: format!("{what}: {}", tr.verdict), points, marks });
        }
    }
}
