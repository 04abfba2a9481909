"""Fidelity of the harness: Neutron's agent on the fake datapath (neutron_agent.py)
against a real Neutron 29.0.0 deployment of the same lab.

The real-Neutron harness of the shared reference ran the seed lab on real Open
vSwitch with real agents, RabbitMQ and a real server, and dumped every bridge
(`ovs-ofctl -O OpenFlow13 dump-flows`, `ovs-vsctl list interface`, the REST
API's port list). The real server chose its own port ids and, for DHCP, SNAT,
gateway and FIP-gateway ports, its own MACs; everything else (DVR MACs,
instance and router-interface MACs, IPs of instances and gateways) is the
seed lab's. So the capture is mapped onto our topology by port role:
a captured port is the port of ours with the same device owner on the same
subnet (instances and router interfaces: the same MAC), and its ofport, name
and MAC are rewritten to ours. Nothing else is normalised.
"""

import ipaddress
import json
import os
import re

import neutron_agent

OWNER = {v: k for k, v in neutron_agent.DEVICE_OWNER.items()}


def interfaces(path):
    """`ovs-vsctl list interface` blocks: name, ofport, external_ids."""
    out, cur = [], {}
    for line in open(path):
        if not line.strip():
            if cur:
                out.append(cur)
            cur = {}
            continue
        k, _, v = line.partition(":")
        cur[k.strip()] = v.strip()
    if cur:
        out.append(cur)
    for i in out:
        ids = dict(re.findall(r'([\w-]+)="?([^",}]*)"?', i.get("external_ids", "")))
        i["ids"] = ids
    return out


def port_map(topo, host, ifaces, api_ports):
    """Captured (name → our name, MAC → our MAC) for one host."""
    hix = next(i for i, h in enumerate(topo["hosts"]) if h["name"] == host)
    subnets = [ipaddress.ip_network(s["cidr"]) for s in topo["subnets"]]
    by_id = {p["ID"]: p for p in api_ports}
    names, macs = {}, {}
    for i in ifaces:
        pid = i["ids"].get("iface-id")
        if not pid:
            names[i["name"]] = i["name"]  # patch ports and NICs keep their names
            continue
        api = by_id[pid]
        owner = OWNER.get(api["Device Owner"])
        ip = ipaddress.ip_address(api["Fixed IP Addresses"][0]["ip_address"])
        six = next(k for k, n in enumerate(subnets) if ip in n)
        cands = [
            p
            for p in topo["ports"]
            if p["owner"] == owner and p["subnet"] == six and p["host"] in (hix, None)
        ]
        if owner in ("compute", "router_interface_distributed"):
            cands = [p for p in cands if p["mac"] == api["MAC Address"]]
        if len(cands) != 1:
            raise SystemExit(f"capture: cannot map port {i['name']} ({owner}, {ip}) of {host}: {len(cands)} candidates")
        names[i["name"]] = neutron_agent.device_name(cands[0])
        macs[api["MAC Address"]] = cands[0]["mac"]
    return names, macs


def canon_text(line, ofport_names, macs):
    """One `dump-flows --no-stats` line in the notation of canon_neutron."""
    def mac(text):
        return re.sub(r"\b([0-9a-f]{2}(?::[0-9a-f]{2}){5})\b", lambda x: macs.get(x.group(1), x.group(1)), text)

    head, _, acts = line.strip().partition(" actions=")
    head, acts = mac(head), mac(acts)
    flow = {"table": 0, "priority": 32768, "match": {}, "actions": []}
    for tok in head.split(","):
        tok = tok.strip()
        if not tok:
            continue
        k, eq, v = tok.partition("=")
        mt = flow["match"]
        if k == "table":
            flow["table"] = int(v)
        elif k == "priority":
            flow["priority"] = int(v)
        elif k == "arp" and not eq:
            mt["eth_type"] = "2054"
        elif k == "icmp6" and not eq:
            mt["eth_type"], mt["ip_proto"] = "34525", "58"
        elif k == "in_port":
            mt["in_port"] = ofport_names.get(int(v), v)
        elif k == "dl_vlan":
            mt["vlan_vid"] = hex(0x1000 | int(v))
        elif k == "vlan_tci" and v == "0x0000/0x1fff":
            mt["vlan_vid"] = hex(0)
        elif k in ("dl_src", "dl_dst"):
            mt["eth_" + k[3:]] = v
        elif k in ("arp_op", "arp_spa", "arp_tpa", "arp_tha"):
            mt[k] = v
        elif k == "icmp_type":
            mt["icmpv6_type"] = v
        elif k == "nd_target":
            mt["ipv6_nd_target"] = v
        else:
            mt[k] = f"unknown:{v}"
    goto = []
    for a in acts.split(","):
        if a in ("drop", ""):
            continue
        if a.startswith("goto_table:"):
            goto.append(a)
        elif a == "NORMAL":
            flow["actions"].append("output:NORMAL")
        elif a.startswith("output:"):
            flow["actions"].append("output:" + ofport_names.get(int(a[7:]), a[7:]))
        elif a.startswith("set_field:") and a.endswith("->vlan_vid"):
            flow["actions"].append(f"set_vlan_vid:{int(a[10:-10]) & 0xFFF}")
        elif a.startswith("set_field:"):
            v, _, f = a[10:].partition("->")
            flow["actions"].append(f"set_field:{f}={v}")
        else:
            flow["actions"].append(a)
    flow["actions"] += goto
    return flow


def load(capture_dir, topo):
    """Captured flows per host and bridge, mapped onto our topology."""
    api_ports = json.load(open(os.path.join(capture_dir, "api", "ports.json")))
    out = {}
    for h in topo["hosts"]:
        d = os.path.join(capture_dir, h["name"])
        if not h["dvr_mac"] or not os.path.isdir(d):
            continue
        ifaces = interfaces(os.path.join(d, "ovs-interfaces.txt"))
        names, macs = port_map(topo, h["name"], ifaces, api_ports)
        out[h["name"]] = {}
        for m in h["bridge_mappings"] + [{"bridge": "br-int"}]:
            br = m["bridge"]
            bridge_ports = open(os.path.join(d, "ovs-vsctl-show.txt")).read()
            # ofports are per bridge: take the interfaces of this bridge only.
            ofn = {}
            for i in ifaces:
                if _on_bridge(bridge_ports, br, i["name"]):
                    ofn[int(i["ofport"])] = names[i["name"]]
            lines = [x for x in open(os.path.join(d, f"flows-{br}.nostats.txt")) if "actions=" in x]
            out[h["name"]][br] = [canon_text(x, ofn, macs) for x in lines]
    return out


def _on_bridge(show, bridge, port):
    """Whether `ovs-vsctl show` lists `port` under `bridge`."""
    cur = None
    for line in show.splitlines():
        s = line.strip()
        if s.startswith("Bridge "):
            cur = s.split()[1].strip('"')
        elif s.startswith("Port ") and s.split()[1].strip('"') == port:
            return cur == bridge
    return False
