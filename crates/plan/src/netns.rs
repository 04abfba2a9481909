//! The l3 and DHCP agents' namespaces: devices, addresses, routes, policy
//! rules, permanent ARP, netfilter and sysctls, as Neutron's
//! `DvrLocalRouter`, `DvrEdgeRouter`, `FipNamespace` and DHCP agent lay them out.

use crate::ctx::HostCtx;
use crate::model::*;
use dvr_model::*;
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// `FIP_RT_TBL`: the table of floating-IP default routes in qrouter.
pub const FIP_RT_TBL: u32 = 16;
/// The metadata address served by the DHCP namespace (`force_metadata`).
pub const METADATA_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// The l3 agent's iptables wrapper prefix (`basename(argv[0])[:16]`).
pub const WRAP: &str = "neutron-l3-agent";

fn net(ip: Ipv4Addr, prefix: u8) -> Ipv4Net {
    Ipv4Net::new(ip, prefix).expect("prefix ≤ 32")
}

/// `_get_snat_idx`: the routing table (and rule priority) of an IPv4 CIDR is
/// the integer value of its address part, host bits included.
pub fn snat_idx(ip: Ipv4Addr) -> u32 {
    u32::from(ip)
}

/// The kernel's connected route of an address; its origin is the caller.
#[track_caller]
fn connected(dev: &str, addr: Ipv4Net) -> Route {
    let origin = Origin::here(format!("connected route of {addr} on {dev} (the kernel adds it with the address)"));
    Route { table: TableRef::Main, dst: addr.trunc(), via: None, dev: dev.to_string(), src: Some(addr.addr()), origin }
}

#[track_caller]
fn default_via(table: TableRef, via: Ipv4Addr, dev: &str, why: &'static str) -> Route {
    Route { table, dst: Ipv4Net::default(), via: Some(via), dev: dev.to_string(), src: None, origin: Origin::here(why) }
}

fn ovs_dev(port: &Port, subnet: &Subnet) -> Device {
    Device {
        name: port.device_name(),
        mac: port.mac,
        addrs: vec![net(port.ip, subnet.cidr.prefix_len())],
        link: DeviceLink::Ovs { bridge: "br-int".into() },
    }
}

/// Deterministic MACs for the rfp/fpr veth ends (the kernel would pick random
/// ones; a stable plan needs stable ones). Locally administered, unicast.
pub fn veth_mac(host: &str, dev: &str) -> MacAddr {
    MacAddr::from_prefix([0x02, 0x6e, 0x72], alloc::hash24(&format!("{host}/{dev}")))
}

fn common_l3_sysctls() -> Vec<Sysctl> {
    vec![
        Sysctl::new("net.ipv4.ip_forward", 1),
        Sysctl::new("net.ipv4.conf.all.arp_ignore", 1),
        Sysctl::new("net.ipv4.conf.all.arp_announce", 2),
        Sysctl::new("net.netfilter.nf_conntrack_tcp_be_liberal", 1),
    ]
}

fn chain(name: &str, builtin: bool) -> Chain {
    Chain { name: name.to_string(), builtin, rules: Vec::new() }
}

fn wrapped(c: &str) -> String {
    format!("{WRAP}-{c}")
}

#[track_caller]
fn rule(matches: Vec<IptMatch>, target: IptTarget, why: &'static str) -> IptRule {
    IptRule { matches, target, comment: None, origin: Origin::here(why) }
}

fn jump(c: &str) -> IptTarget {
    IptTarget::Jump { chain: c.to_string() }
}

/// The l3 agent's nat table skeleton (`IptablesManager`): built-ins jump to
/// wrapped chains, `neutron-postrouting-bottom` → `snat`. The `snat` →
/// `float-snat` jump is not part of it: [`float_snat_jump`] adds it where
/// Neutron does.
pub fn nat_skeleton() -> IptTable {
    let mut t =
        IptTable { name: "nat".into(), chains: ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"].iter().map(|c| chain(c, true)).collect() };
    for c in ["OUTPUT", "POSTROUTING", "PREROUTING", "float-snat", "snat"] {
        t.chains.push(chain(&wrapped(c), false));
    }
    t.chains.push(chain("neutron-postrouting-bottom", false));
    let add = |t: &mut IptTable, c: &str, r: IptRule| t.chains.iter_mut().find(|x| x.name == c).expect("chain exists").rules.push(r);
    const SKELETON: &str = "IptablesManager: built-in chain into the agent's wrapped chain";
    add(&mut t, "PREROUTING", rule(vec![], jump(&wrapped("PREROUTING")), SKELETON));
    add(&mut t, "OUTPUT", rule(vec![], jump(&wrapped("OUTPUT")), SKELETON));
    add(&mut t, "POSTROUTING", rule(vec![], jump(&wrapped("POSTROUTING")), SKELETON));
    add(
        &mut t,
        "POSTROUTING",
        rule(vec![], jump("neutron-postrouting-bottom"), "IptablesManager: SNAT runs last, after every wrapped chain"),
    );
    let mut bottom = rule(vec![], jump(&wrapped("snat")), "IptablesManager: the bottom chain hands over to the l3 agent's snat chain");
    bottom.comment = Some("Perform source NAT on outgoing traffic.".into());
    add(&mut t, "neutron-postrouting-bottom", bottom);
    t
}

/// `-A neutron-l3-agent-snat -j neutron-l3-agent-float-snat`: floating-IP SNAT
/// before the router's SNAT. `RouterInfo._handle_router_snat_rules` adds it
/// in every namespace it manages (snat-, legacy qrouter-, and the fip
/// namespace's own manager); `DvrLocalRouter` overrides that and returns
/// early, without the jump, when the router has no floating IP on this host.
#[track_caller]
pub fn float_snat_jump(nat: &mut IptTable, why: &'static str) {
    push(nat, &wrapped("snat"), rule(vec![], jump(&wrapped("float-snat")), why));
}

/// The part of the l3 agent's mangle table that nat depends on:
/// `PREROUTING` → `neutron-l3-agent-PREROUTING` → `neutron-l3-agent-mark`,
/// where [`add_gateway`] marks traffic coming in from `qg-` with 0x2/0xffff
/// (`_add_snat_rules`), the mark the hairpin SNAT rule tests. The address-scope
/// and CONNMARK rules of the same table are not modelled (docs/conformance.md).
pub fn mangle_skeleton() -> IptTable {
    // Every built-in chain, as `iptables-save` lists them (the agent compares
    // its restore with the save, line by line).
    let mut t = IptTable {
        name: "mangle".into(),
        chains: ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"].iter().map(|c| chain(c, true)).collect(),
    };
    for c in ["PREROUTING", "mark"] {
        t.chains.push(chain(&wrapped(c), false));
    }
    push(
        &mut t,
        "PREROUTING",
        rule(vec![], jump(&wrapped("PREROUTING")), "IptablesManager: built-in chain into the agent's wrapped chain"),
    );
    push(&mut t, &wrapped("PREROUTING"), rule(vec![], jump(&wrapped("mark")), "l3 agent: the mark chain runs first in PREROUTING"));
    t
}

fn push(t: &mut IptTable, c: &str, r: IptRule) {
    t.chains.iter_mut().find(|x| x.name == c).expect("chain exists").rules.push(r);
}

/// Permanent ARP for every non-router port of a subnet and the sg- ports
/// (`_set_subnet_arp_info`): without them, replies to the shared gateway MAC
/// would be answered by the wrong host's router copy.
pub fn subnet_arp(cx: &HostCtx, s: SubnetIx, dev: &str) -> std::sync::Arc<[Neighbour]> {
    // The list is the same on every copy of the router: built once per plan,
    // and checked against the subnet's ports each time it is handed out again.
    let held = |b: &[Neighbour]| arp_holds(b, arp_ports(cx.topo, s));
    let neighbour = |p: &Port| Neighbour {
        ip: p.ip,
        mac: p.mac,
        dev: dev.to_string(),
        origin: Origin::here(cx.cache.arp_why(p.ip, || {
            let why = "so the router never asks the wire (replies would reach another host's copy)";
            format!("_set_subnet_arp_info: permanent ARP for {} {why}", p.ip)
        })),
    };
    cx.cache.arp_block(s, dev, held, || arp_ports(cx.topo, s).map(neighbour).collect())
}

/// An l3-agent namespace as `Namespace.create` leaves it: the agent's nat
/// skeleton and sysctls, nothing else yet.
fn l3_namespace(name: String, kind: NamespaceKind, serves: &str) -> Namespace {
    Namespace {
        name,
        kind,
        serves: serves.to_string(),
        devices: vec![],
        routes: vec![],
        rules: vec![],
        neighbours: Neighbours::new(),
        iptables: vec![NAT_SKELETON.clone(), MANGLE_SKELETON.clone()],
        sysctls: common_l3_sysctls(),
        dhcp: None,
    }
}

/// What interface `s` of distributed router `r` puts in its `qrouter-`
/// namespace: the qr- device, its connected route, the permanent ARP of the
/// subnet's ports and, with an sg- port, the SNAT redirect (rule, table,
/// sysctl). [`qrouter_dvr`] adds these per interface before the fip link.
pub(crate) fn dvr_interface(cx: &HostCtx, r: RouterIx, s: SubnetIx, ns: &mut Namespace) {
    let t = cx.topo;
    let port = t.port(t.router_interface(r, s).expect("interface port"));
    let sub = t.subnet(s);
    let dev = ovs_dev(port, sub);
    ns.routes.push(connected(&dev.name, dev.addrs[0]));
    ns.neighbours.push_shared(subnet_arp(cx, s, &dev.name));
    // SNAT redirect: the subnet's default route leads to its sg- port on the SNAT host.
    if let Some(sg) = t.snat_port(r, s) {
        let idx = snat_idx(sub.gateway);
        ns.rules.push(Rule {
            priority: idx,
            // The agent adds `from <gateway ip>/<prefix>` and the kernel keeps
            // (and prints) the host bits; the match is the subnet either way.
            selector: RuleSelector::From(net(sub.gateway, sub.cidr.prefix_len())),
            table: idx,
            origin: Origin::here(format!("DvrLocalRouter SNAT redirect: traffic from {} looks up its own table", sub.cidr)),
        });
        ns.routes.push(default_via(
            TableRef::Id(idx),
            t.port(sg).ip,
            &dev.name,
            "DvrLocalRouter SNAT redirect: leave through the subnet's sg- port on the SNAT host",
        ));
        ns.sysctls.push(Sysctl::new(format!("net.ipv4.conf.{}.send_redirects", dev.name), 0));
    }
    ns.devices.push(dev);
}

/// `qrouter-<id>` of a distributed router on this host (`DvrLocalRouter`).
pub fn qrouter_dvr(cx: &HostCtx, r: RouterIx) -> Namespace {
    let t = cx.topo;
    let router = t.router(r);
    let mut ns = l3_namespace(names::qrouter_ns(&router.id), NamespaceKind::Qrouter, &router.name);
    for &s in &router.interfaces {
        dvr_interface(cx, r, s, &mut ns);
    }
    if router.external_gateway.is_some() {
        ns.sysctls.push(Sysctl::new("net.ipv4.conf.all.send_redirects", 0));
    }
    if let Some(link) = cx.host.fip_link(r) {
        let rfp = names::rfp_dev(&router.id);
        let fpr = names::fpr_dev(&router.id);
        let ext = t.network(router.external_gateway.expect("fip links exist for routers with a gateway"));
        let rfp_addr = net(link.rfp_ip(), 31);
        ns.devices.push(Device {
            name: rfp.clone(),
            mac: veth_mac(&cx.host.name, &rfp),
            addrs: vec![rfp_addr],
            link: DeviceLink::Veth { peer: fpr.clone(), peer_namespace: names::fip_ns(&ext.id) },
        });
        ns.routes.push(connected(&rfp, rfp_addr));
        ns.routes.push(default_via(
            TableRef::Id(FIP_RT_TBL),
            link.fpr_ip(),
            &rfp,
            "DvrLocalRouter floating IPs: table 16 leads to the fip namespace over rfp-",
        ));
        ns.neighbours.push(Neighbour {
            ip: link.fpr_ip(),
            mac: veth_mac(&cx.host.name, &fpr),
            dev: rfp.clone(),
            origin: Origin::here("FipNamespace: permanent ARP for the fpr- end of the rfp/fpr link"),
        });
        let fips: Vec<&FloatingIp> =
            t.floating_ips.iter().filter(|f| matches!(f.association, Some((x, fr)) if fr == r && t.instance(x).host == cx.ix)).collect();
        let nat = &mut ns.iptables[0];
        for f in &fips {
            let (x, _) = f.association.expect("filtered");
            let fixed = t.port(t.instance(x).port).ip;
            ns.rules.push(Rule {
                priority: f.rule_priority.expect("associated FIPs have a priority"),
                selector: RuleSelector::From(net(fixed, 32)),
                table: FIP_RT_TBL,
                origin: Origin::here(format!("DvrLocalRouter floating IP {}: {fixed} leaves through the fip namespace", f.ip)),
            });
            push(
                nat,
                &wrapped("PREROUTING"),
                rule(
                    vec![IptMatch::Dst { net: net(f.ip, 32) }, IptMatch::InIface { dev: rfp.clone(), not: false }],
                    IptTarget::Dnat { to: fixed },
                    "floating_forward_rules: DNAT of the floating IP arriving from the fip namespace",
                ),
            );
            push(
                nat,
                &wrapped("float-snat"),
                rule(
                    vec![IptMatch::Src { net: net(fixed, 32) }],
                    IptTarget::Snat { to: f.ip, random_fully: true },
                    "floating_forward_rules: SNAT of the instance to its floating IP",
                ),
            );
        }
        if !fips.is_empty() {
            float_snat_jump(nat, "DvrLocalRouter._handle_router_snat_rules: the router has floating IPs on this host");
            push(
                nat,
                &wrapped("POSTROUTING"),
                rule(
                    vec![IptMatch::OutIface { dev: rfp.clone(), not: true }, IptMatch::CtStateDnat { not: true }],
                    IptTarget::Accept,
                    "_add_snat_rules: no NAT for traffic that does not leave through rfp-",
                ),
            );
        }
    }
    ns.rules.sort_by_key(|r| r.priority);
    ns
}

/// `snat-<id>` on the SNAT host (`DvrEdgeRouter`): sg- per subnet, qg-, SNAT.
pub fn snat(cx: &HostCtx, r: RouterIx) -> Namespace {
    let t = cx.topo;
    let router = t.router(r);
    let mut ns = l3_namespace(names::snat_ns(&router.id), NamespaceKind::Snat, &router.name);
    ns.sysctls.push(Sysctl::new("net.ipv4.ip_nonlocal_bind", 1));
    ns.sysctls.push(Sysctl::new("net.netfilter.nf_conntrack_tcp_loose", 0));
    for &s in &router.interfaces {
        let Some(sg) = t.snat_port(r, s) else {
            continue;
        };
        let dev = ovs_dev(t.port(sg), t.subnet(s));
        ns.routes.push(connected(&dev.name, dev.addrs[0]));
        ns.devices.push(dev);
    }
    add_gateway(cx, r, &mut ns);
    ns
}

/// qg- device, default route and SNAT rules (`_add_snat_rules`).
fn add_gateway(cx: &HostCtx, r: RouterIx, ns: &mut Namespace) {
    let t = cx.topo;
    let Some(gp) = t.gateway_port(r) else { return };
    let port = t.port(gp);
    let sub = t.subnet(port.subnet);
    let dev = ovs_dev(port, sub);
    let qg = dev.name.clone();
    ns.routes.push(connected(&qg, dev.addrs[0]));
    ns.routes.push(default_via(TableRef::Main, sub.gateway, &qg, "external gateway: default route via the upstream router"));
    ns.devices.push(dev);
    let nat = &mut ns.iptables[0];
    float_snat_jump(nat, "_handle_router_snat_rules: floating-IP SNAT before the router's SNAT");
    push(
        nat,
        &wrapped("POSTROUTING"),
        rule(
            vec![IptMatch::OutIface { dev: qg.clone(), not: true }, IptMatch::CtStateDnat { not: true }],
            IptTarget::Accept,
            "_add_snat_rules: no NAT for traffic that does not leave through qg-",
        ),
    );
    push(
        nat,
        &wrapped("snat"),
        rule(
            vec![IptMatch::OutIface { dev: qg.clone(), not: false }],
            IptTarget::Snat { to: port.ip, random_fully: true },
            "_add_snat_rules: SNAT to the gateway IP for traffic leaving through qg-",
        ),
    );
    push(
        nat,
        &wrapped("snat"),
        rule(
            vec![IptMatch::Mark { value: 0x2, mask: 0xffff, not: true }, IptMatch::CtStateDnat { not: false }],
            IptTarget::Snat { to: port.ip, random_fully: true },
            "_add_snat_rules: SNAT hairpinned DNAT traffic that did not come in from outside",
        ),
    );
    if let Some(mangle) = ns.iptables.iter_mut().find(|t| t.name == "mangle") {
        push(
            mangle,
            &wrapped("mark"),
            rule(
                vec![IptMatch::InIface { dev: qg, not: false }],
                IptTarget::Mark { value: 0x2, mask: 0xffff },
                "_add_snat_rules: mark traffic that came in from outside (qg-), so the hairpin SNAT skips it",
            ),
        );
    }
}

/// `qrouter-<id>` of a legacy (centralised) router on its host: qr-, qg-,
/// SNAT and floating IPs all in one namespace.
pub fn qrouter_legacy(cx: &HostCtx, r: RouterIx) -> Namespace {
    let t = cx.topo;
    let router = t.router(r);
    let mut ns = l3_namespace(names::qrouter_ns(&router.id), NamespaceKind::Qrouter, &router.name);
    for &s in &router.interfaces {
        let dev = ovs_dev(t.port(t.router_interface(r, s).expect("interface port")), t.subnet(s));
        ns.routes.push(connected(&dev.name, dev.addrs[0]));
        ns.devices.push(dev);
    }
    add_gateway(cx, r, &mut ns);
    let qg_index = ns.devices.len().checked_sub(1);
    for f in t.floating_ips.iter().filter(|f| matches!(f.association, Some((_, fr)) if fr == r)) {
        let (x, _) = f.association.expect("filtered");
        let fixed = t.port(t.instance(x).port).ip;
        if let Some(i) = qg_index {
            ns.devices[i].addrs.push(net(f.ip, 32));
        }
        let nat = &mut ns.iptables[0];
        const FWD: &str = "floating_forward_rules (legacy router): floating IP to instance and back";
        push(nat, &wrapped("PREROUTING"), rule(vec![IptMatch::Dst { net: net(f.ip, 32) }], IptTarget::Dnat { to: fixed }, FWD));
        push(nat, &wrapped("OUTPUT"), rule(vec![IptMatch::Dst { net: net(f.ip, 32) }], IptTarget::Dnat { to: fixed }, FWD));
        push(
            nat,
            &wrapped("float-snat"),
            rule(vec![IptMatch::Src { net: net(fixed, 32) }], IptTarget::Snat { to: f.ip, random_fully: true }, FWD),
        );
    }
    ns
}

/// `fip-<external network id>` on this host (`FipNamespace`): fg- with proxy
/// ARP, one fpr- per router, per-router default via the upstream gateway,
/// and a /32 route per floating IP bound here.
pub fn fip(cx: &HostCtx, ext: NetworkIx) -> Option<Namespace> {
    let t = cx.topo;
    let fg_port = t.port(t.fip_agent_port(cx.ix, ext)?);
    let sub = t.subnet(fg_port.subnet);
    let fg = ovs_dev(fg_port, sub);
    let fg_name = fg.name.clone();
    let mut ns = Namespace {
        name: names::fip_ns(&t.network(ext).id),
        kind: NamespaceKind::Fip,
        serves: t.network(ext).name.clone(),
        devices: vec![],
        routes: vec![connected(&fg_name, fg.addrs[0])],
        rules: vec![],
        neighbours: Neighbours::new(),
        iptables: vec![IptTable {
            name: "raw".into(),
            chains: vec![
                Chain {
                    name: "PREROUTING".into(),
                    builtin: true,
                    rules: vec![rule(vec![], IptTarget::NoTrack, "FipNamespace: no conntrack in the fip namespace (stateless forwarding)")],
                },
                chain("OUTPUT", true),
            ],
        }],
        sysctls: common_l3_sysctls(),
        dhcp: None,
    };
    // The fip namespace has its own IptablesManager: the same skeletons, and
    // the float-snat jump its `_handle_router_snat_rules` adds.
    let mut nat = nat_skeleton();
    float_snat_jump(&mut nat, "FipNamespace's IptablesManager: floating-IP SNAT chain hooked in as in any router namespace");
    ns.iptables.push(nat);
    ns.iptables.push(mangle_skeleton());
    ns.sysctls.push(Sysctl::new("net.ipv4.ip_nonlocal_bind", 1));
    ns.sysctls.push(Sysctl::new(format!("net.ipv4.conf.{fg_name}.proxy_arp"), 1));
    ns.sysctls.push(Sysctl::new(format!("net.ipv4.neigh.{fg_name}.proxy_delay"), 1));
    ns.devices.push(fg);
    for link in &cx.host.fip_links {
        let router = t.router(link.router);
        if router.external_gateway != Some(ext) {
            continue;
        }
        let fpr = names::fpr_dev(&router.id);
        let rfp = names::rfp_dev(&router.id);
        let addr = net(link.fpr_ip(), 31);
        ns.devices.push(Device {
            name: fpr.clone(),
            mac: veth_mac(&cx.host.name, &fpr),
            addrs: vec![addr],
            link: DeviceLink::Veth { peer: rfp.clone(), peer_namespace: names::qrouter_ns(&router.id) },
        });
        ns.routes.push(connected(&fpr, addr));
        let idx = snat_idx(link.fpr_ip());
        ns.rules.push(Rule {
            priority: idx,
            selector: RuleSelector::Iif(fpr.clone()),
            table: idx,
            origin: Origin::here(format!("FipNamespace: traffic from router {} uses its own table", router.name)),
        });
        ns.routes.push(default_via(
            TableRef::Id(idx),
            sub.gateway,
            &fg_name,
            "FipNamespace: the router's traffic leaves via the upstream gateway",
        ));
        ns.neighbours.push(Neighbour {
            ip: link.rfp_ip(),
            mac: veth_mac(&cx.host.name, &rfp),
            dev: fpr.clone(),
            origin: Origin::here("FipNamespace: permanent ARP for the rfp- end of the rfp/fpr link"),
        });
        for f in
            t.floating_ips.iter().filter(|f| matches!(f.association, Some((x, fr)) if fr == link.router && t.instance(x).host == cx.ix))
        {
            ns.routes.push(Route {
                table: TableRef::Main,
                dst: net(f.ip, 32),
                via: Some(link.rfp_ip()),
                dev: fpr.clone(),
                src: None,
                origin: Origin::here(format!(
                    "FipNamespace: floating IP {} is bound here: route it to the router (and proxy-ARP it on fg-)",
                    f.ip
                )),
            });
        }
    }
    ns.rules.sort_by_key(|r| r.priority);
    Some(ns)
}

/// The DHCP agent's nat table (its own `IptablesManager`, wrapper
/// `neutron-dhcp-age`): PREROUTING into the empty wrapped chain. Nothing is
/// translated in a qdhcp namespace; the skeleton is what `iptables-save` shows.
fn dhcp_nat_skeleton() -> IptTable {
    const DHCP_WRAP: &str = "neutron-dhcp-age-PREROUTING";
    let mut t =
        IptTable { name: "nat".into(), chains: ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"].iter().map(|c| chain(c, true)).collect() };
    t.chains.push(chain(DHCP_WRAP, false));
    push(
        &mut t,
        "PREROUTING",
        rule(vec![], jump(DHCP_WRAP), "IptablesManager (DHCP agent): built-in chain into the agent's wrapped chain"),
    );
    t
}

/// `qdhcp-<network id>` on the network node: the DHCP port, the metadata
/// address (`force_metadata`), and what DHCP pushes to instances.
pub fn qdhcp(cx: &HostCtx, port: &Port) -> Namespace {
    let t = cx.topo;
    let network = t.network(port.network);
    let sub = t.subnet(port.subnet);
    let mut dev = ovs_dev(port, sub);
    dev.addrs.push(net(METADATA_IP, 32));
    let name = dev.name.clone();
    let has_router = t.routers_on_subnet(port.subnet).next().is_some();
    let mut routes = vec![connected(&name, dev.addrs[0])];
    if has_router {
        routes.push(default_via(TableRef::Main, sub.gateway, &name, "DHCP agent: default route via the subnet's router"));
    }
    Namespace {
        name: names::qdhcp_ns(&network.id),
        kind: NamespaceKind::Qdhcp,
        serves: network.name.clone(),
        devices: vec![dev],
        routes,
        rules: vec![],
        neighbours: Neighbours::new(),
        iptables: vec![dhcp_nat_skeleton()],
        sysctls: vec![],
        dhcp: Some(DhcpService {
            subnet: sub.cidr,
            router: sub.gateway,
            host_routes: vec![(net(METADATA_IP, 32), port.ip)],
            metadata: true,
        }),
    }
}

/// All namespaces of a host, in a stable order: qrouter, snat, fip, qdhcp.
pub fn namespaces(cx: &HostCtx) -> Vec<Namespace> {
    let t = cx.topo;
    let mut out = Vec::new();
    let routers = cx.routers();
    for &r in &routers {
        out.push(if t.router(r).distributed { qrouter_dvr(cx, r) } else { qrouter_legacy(cx, r) });
    }
    for &r in &routers {
        if t.router(r).distributed && cx.is_snat_host(r) && t.router(r).external_gateway.is_some() {
            out.push(snat(cx, r));
        }
    }
    for (n, network) in t.networks.iter().enumerate() {
        if network.external
            && let Some(ns) = fip(cx, NetworkIx(n))
        {
            out.push(ns);
        }
    }
    for p in cx.bound_ports().filter(|p| p.owner == PortOwner::Dhcp) {
        out.push(qdhcp(cx, p));
    }
    out
}

/// The l3 agent's skeletons, built once: every router namespace of every
/// host starts from them, and cloning is cheaper than formatting their chain
/// names again (a fifth of a 1,000-host plan's time went there).
static NAT_SKELETON: std::sync::LazyLock<IptTable> = std::sync::LazyLock::new(nat_skeleton);
/// See [`NAT_SKELETON`].
static MANGLE_SKELETON: std::sync::LazyLock<IptTable> = std::sync::LazyLock::new(mangle_skeleton);

/// The ports that get a permanent ARP entry in a router interface's
/// namespace: all of the subnet's but the routers' own (`_set_subnet_arp_info`).
fn arp_ports(t: &Topology, s: SubnetIx) -> impl Iterator<Item = &Port> + '_ {
    t.subnet_ports(s).filter(|p| !matches!(p.owner, PortOwner::RouterInterfaceDistributed { .. } | PortOwner::RouterInterface { .. }))
}

/// Whether `held` is the ARP list [`subnet_arp`] builds for `ports`: the
/// same addresses and MACs in the same order (the reason and device follow
/// from the address and the cache key).
fn arp_holds<'a>(held: &[Neighbour], ports: impl Iterator<Item = &'a Port>) -> bool {
    let mut it = held.iter();
    ports.into_iter().all(|p| it.next().is_some_and(|n| n.ip == p.ip && n.mac == p.mac)) && it.next().is_none()
}
