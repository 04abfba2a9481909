#!/usr/bin/env python3
"""openstacksdk against `dvr server`: create, list with filters, update with
If-Match (if_revision=) and delete every resource type the server offers.

Usage: sdk_check.py URL     (run with the python of scripts/venv)
Prints one line per check and exits non-zero on the first failure.
"""
import sys

import openstack
from openstack import exceptions


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


def expect_status(status, what, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except exceptions.HttpException as e:
        check(e.status_code == status, f"{what} -> {status} (got {e.status_code}: {e})")
        return e
    check(False, f"{what} -> {status} (it succeeded)")


def main():
    url = sys.argv[1]
    conn = openstack.connection.Connection(
        auth_type="none",
        auth={"endpoint": url},
        network_endpoint_override=url,
    )
    net = conn.network

    # Networks
    n1 = net.create_network(name="sdk-net1", provider_network_type="vlan",
                            provider_physical_network="physnet1", provider_segmentation_id=301)
    n2 = net.create_network(name="sdk-net2", provider_network_type="vlan",
                            provider_physical_network="physnet1", provider_segmentation_id=302)
    ext = net.create_network(name="sdk-ext", provider_network_type="flat",
                             provider_physical_network="extnet", is_router_external=True)
    check(n1.id and n1.provider_segmentation_id == 301, "create network with a VLAN segment")
    found = list(net.networks(name="sdk-net1"))
    check([n.id for n in found] == [n1.id], "list networks filtered by name")
    found = list(net.networks(is_router_external=True))
    check([n.id for n in found] == [ext.id], "list networks filtered by router:external")
    rev = net.get_network(n1.id).revision_number
    n1 = net.update_network(n1, description="first", if_revision=rev)
    check(n1.description == "first" and n1.revision_number > rev, "update network with If-Match of the current revision")
    # Stale updates go through a fresh object: the SDK sends If-Match only when the
    # header's value changed on the object, and keeps a failed one for later calls.
    expect_status(412, "update network with a stale If-Match", net.update_network, net.get_network(n1.id), description="stale", if_revision=rev)
    check(net.get_network(n1.id).description == "first", "a 412 update changed nothing")

    # Subnets
    s1 = net.create_subnet(name="sdk-sub1", network_id=n1.id, ip_version=4, cidr="10.201.0.0/24", gateway_ip="10.201.0.1")
    s2 = net.create_subnet(name="sdk-sub2", network_id=n2.id, ip_version=4, cidr="10.202.0.0/24")
    se = net.create_subnet(name="sdk-ext-sub", network_id=ext.id, ip_version=4, cidr="10.203.0.0/24", is_dhcp_enabled=False)
    check(s1.cidr == "10.201.0.0/24" and s2.gateway_ip == "10.202.0.1", "create subnets (gateway given and defaulted)")
    found = list(net.subnets(network_id=n2.id))
    check([s.id for s in found] == [s2.id], "list subnets filtered by network_id")
    s1 = net.update_subnet(s1, name="sdk-sub1b", if_revision=s1.revision_number)
    check(s1.name == "sdk-sub1b", "update subnet with If-Match")
    expect_status(412, "update subnet with a stale If-Match", net.update_subnet, net.get_subnet(s1.id), name="x", if_revision=0)

    # Routers: gateway, interfaces
    r = net.create_router(name="sdk-router", is_distributed=True, external_gateway_info={"network_id": ext.id})
    check(r.is_distributed and r.external_gateway_info["network_id"] == ext.id, "create distributed router with a gateway")
    net.add_interface_to_router(r, subnet_id=s1.id)
    net.add_interface_to_router(r, subnet_id=s2.id)
    ifaces = list(net.ports(device_id=r.id, device_owner="network:router_interface_distributed"))
    check(len(ifaces) == 2, "router interfaces listed by device_id and device_owner")
    r = net.update_router(r, description="edge", if_revision=net.get_router(r.id).revision_number)
    check(r.description == "edge", "update router with If-Match")
    expect_status(412, "update router with a stale If-Match", net.update_router, net.get_router(r.id), description="x", if_revision=0)
    found = list(net.routers(name="sdk-router"))
    check([x.id for x in found] == [r.id], "list routers filtered by name")

    # Ports
    p = net.create_port(name="sdk-vm1", network_id=n1.id, device_owner="compute:nova",
                        binding_host_id="compute1", fixed_ips=[{"subnet_id": s1.id, "ip_address": "10.201.0.50"}])
    check(p.fixed_ips[0]["ip_address"] == "10.201.0.50" and p.mac_address.startswith("fa:16:3e"), "create port (IP given, MAC allocated)")
    q = net.create_port(name="sdk-vm2", network_id=n1.id, device_owner="compute:nova", binding_host_id="compute2")
    check(q.fixed_ips and q.fixed_ips[0]["subnet_id"] == s1.id, "create port (IP allocated)")
    found = list(net.ports(network_id=n1.id, device_owner="compute:nova"))
    check(sorted(x.id for x in found) == sorted([p.id, q.id]), "list ports filtered by network_id and device_owner")
    # (compute2 also gets the router's fip-agent gateway port once q is bound there.)
    found = list(net.ports(binding_host_id="compute2", device_owner="compute:nova"))
    check([x.id for x in found] == [q.id], f"list ports filtered by binding:host_id and device_owner ({[x.name for x in found]})")
    fg = list(net.ports(binding_host_id="compute2", device_owner="network:floatingip_agent_gateway"))
    check(len(fg) == 1 and fg[0].network_id == ext.id, "the fip-agent gateway port of compute2 exists on the external network")
    p = net.update_port(p, binding_host_id="compute2", if_revision=p.revision_number)
    check(p.binding_host_id == "compute2", "update port with If-Match (migrate)")
    expect_status(412, "update port with a stale If-Match", net.update_port, net.get_port(p.id), name="x", if_revision=0)
    expect_status(409, "port with an IP already in use", net.create_port, network_id=n1.id,
                  fixed_ips=[{"subnet_id": s1.id, "ip_address": "10.201.0.50"}])

    # Floating IPs
    f = net.create_ip(floating_network_id=ext.id)
    check(f.floating_ip_address and f.port_id is None, "create floating IP (unassociated)")
    f = net.update_ip(f, port_id=p.id, if_revision=f.revision_number)
    check(f.port_id == p.id and f.fixed_ip_address == "10.201.0.50", "associate floating IP with If-Match")
    found = list(net.ips(port_id=p.id))
    check([x.id for x in found] == [f.id], "list floating IPs filtered by port_id")
    expect_status(412, "update floating IP with a stale If-Match", net.update_ip, net.get_ip(f.id), port_id=None, if_revision=0)
    f = net.update_ip(f, port_id=None)
    check(f.port_id is None, "disassociate floating IP")

    # Paging and sorting
    page = list(net.networks(limit=1, sort_key="name", sort_dir="asc", paginated=True))
    check([x.name for x in page] == ["sdk-ext", "sdk-net1", "sdk-net2"], "list networks sorted by name, one per page")

    # Agents: rows agents create when they register; listing works (maybe empty).
    agents = list(net.agents())
    check(all(a.agent_type for a in agents), f"list agents ({len(agents)})")

    # Deletes, in dependency order; each object is gone afterwards.
    expect_status(409, "delete a network with ports", net.delete_network, n1.id)
    net.delete_ip(f)
    check(net.find_ip(f.id) is None, "delete floating IP")
    net.delete_port(p)
    net.delete_port(q)
    check(not list(net.ports(device_owner="compute:nova")), "delete ports")
    net.remove_interface_from_router(r, subnet_id=s1.id)
    net.remove_interface_from_router(r, subnet_id=s2.id)
    net.update_router(r, external_gateway_info={})
    net.delete_router(r)
    check(net.find_router(r.id) is None, "delete router")
    for s in (s1, s2, se):
        net.delete_subnet(s)
    check(not list(net.subnets()), "delete subnets")
    for n in (n1, n2, ext):
        net.delete_network(n)
    check(not list(net.networks()), "delete networks")
    expect_status(404, "show a deleted network", net.get_network, n1.id)
    print("sdk_check: all good")


if __name__ == "__main__":
    main()
