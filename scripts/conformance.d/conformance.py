"""Compare `dvr plan --profile current` with the flows Neutron's own OVS agent
code installs (see neutron_agent.py), host by host and bridge by bridge.

Usage: python conformance.py --dvr PATH/TO/dvr --work DIR [--json OUT]

Scenarios: the seed lab; a generated 10-host deployment (`dvr gen --hosts 10`);
four changes to the seed lab, each run through Neutron's agents (one more
rpc_loop iteration) and through our incremental planner (`dvr plan --change`);
and the seed lab with security groups (labs/seed-secure.yaml), where every
agent runs Neutron's `openvswitch` firewall driver (OVSFirewallDriver).

Flows are compared on table, priority, the set of match fields and the ordered
actions. Only notation is normalised: cookies are ignored, fields are keyed by
their OXM names, ports are named, `mod_vlan_vid`/`set_field:…->vlan_vid` are
one action, `strip_vlan` is `pop_vlan`, `NORMAL` is `output:NORMAL`.

Exit status: 0 when every bridge of every scenario matches (documented
deviations, DEVIATIONS below and docs/conformance.md, aside), 1 otherwise.
"""

import argparse
import collections
import json
import os
import subprocess
import sys
import time

T0 = time.monotonic()

import neutron_agent  # noqa: E402  (Neutron's import time counts too)

SCENARIOS = [
    # (name, topology args, changes)
    ("seed", [], []),
    ("gen10", ["-t", "{work}/gen10.yaml"], []),
    ("seed: remove VM port (vm1)", [], ["remove-instance:vm1"]),
    ("seed: remove router interface (router1, test2-v4)", [], ["remove-router-interface:router1:test2-v4"]),
    ("seed: disassociate floating IP 10.100.0.7", [], ["disassociate-floating-ip:10.100.0.7"]),
    ("seed: remove host compute2", [], ["remove-host:compute2"]),
    # Security groups: Neutron's OVSFirewallDriver (openvswitch firewall) on
    # every host, driven through SecurityGroupAgentRpc with the server's
    # security_group_info_for_devices answer.
    ("seed-secure", ["-t", "{labs}/seed-secure.yaml"], []),
    # More rule shapes (secure_more below): prefixes, ICMP type/code, port
    # ranges as masks, overlapping remote-group ranges merged, protocol
    # numbers, sctp, egress rules, a port without port security.
    ("seed-secure: more rules", ["-t", "{work}/secure-more.yaml"], []),
]


def secure_more(labs):
    """labs/seed-secure.yaml with group `mixed` on vm2 and port security off on vm4."""
    with open(os.path.join(labs, "seed-secure.yaml")) as f:
        y = f.read()
    vm4 = "  - {name: vm4, host: compute1, network: test2, ip: 192.168.2.10}"
    assert vm4 in y and "    allowed_address_pairs:" in y
    y = y.replace(vm4, vm4[:-1] + ", port_security_enabled: false, security_groups: []}")
    y = y.replace("    allowed_address_pairs:", "    security_groups: [default, mixed]\n    allowed_address_pairs:")
    y = y.replace(
        "\nfloating_ips:",
        """  - name: mixed
    rules:
      - {direction: egress, protocol: udp, port_range_min: 53, port_range_max: 53, remote_ip_prefix: 10.100.0.0/24}
      - {direction: egress, protocol: tcp, port_range_min: 1000, port_range_max: 2000}
      - {direction: egress, protocol: sctp, port_range_min: 5000, port_range_max: 5001}
      - {direction: ingress, protocol: icmp, port_range_min: 8, port_range_max: 0, remote_ip_prefix: 192.168.0.0/16}
      - {direction: ingress, protocol: icmp, port_range_min: 3}
      - {direction: ingress, protocol: 47}
      - {direction: ingress, protocol: tcp, port_range_min: 8000, port_range_max: 8100, remote_group: default}
      - {direction: ingress, protocol: tcp, port_range_min: 8080, port_range_max: 9000, remote_group: ssh-icmp}
      - {direction: ingress, protocol: tcp, port_range_min: 22, port_range_max: 22, remote_group: default}
      - {direction: ingress, protocol: icmp, port_range_min: 8, remote_group: default}
      - {direction: egress, protocol: udp, remote_group: web}

floating_ips:""",
    )
    return y

#: Deliberate deviations, documented in docs/conformance.md under their id.
#: Each is recognised by what the flow is, not by where it appears, so a new
#: difference of another kind can never hide behind one.
DEVIATIONS = [
    {
        "id": "D1",
        "side": "missing",
        "what": "stale table-4 flow left by Neutron after a router interface is removed",
        # Installed with the local VLAN, deleted with the segmentation VLAN
        # (delete_dvr_dst_mac_for_arp): the flow outlives its qr- port, whose
        # port number is no longer on the bridge, so it prints as a number.
        "test": lambda k: k[0] == 4 and k[1] == 5 and any(a.startswith("output:") and a[7:].isdigit() for a in k[3]),
    },
    {
        "id": "D2",
        "side": "missing",
        "what": "the openvswitch firewall's IPv6 and RARP flows (the deployment is IPv4 only)",
        # eth_type 0x86dd (IPv6, ICMPv6, DHCPv6) or 0x8035 (RARP), in the
        # firewall's tables or its table-0/60 hooks.
        "test": lambda k: dict(k[2]).get("eth_type") in ("34525", "32821") and (k[0] in FIREWALL_TABLES),
    },
]

#: The openvswitch firewall's tables (neutron_lib ovs_constants).
FIREWALL_TABLES = (71, 72, 73, 81, 82, 91, 92, 93, 94)


def deviation(side, k):
    return next((d["id"] for d in DEVIATIONS if d["side"] == side and d["test"](k)), None)


ETH_TYPE = {"arp": 0x0806, "ip": 0x0800, "icmp": 0x0800, "tcp": 0x0800, "udp": 0x0800, "icmp6": 0x86DD, "ipv6": 0x86DD}
IP_PROTO = {"icmp": 1, "tcp": 6, "udp": 17, "icmp6": 58}


def _ip(v):
    addr, prefix = v["addr"], v["prefix"]
    if prefix == 32:
        return addr
    mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    return f"{addr}/{'.'.join(str((mask >> s) & 255) for s in (24, 16, 8, 0))}"


def canon_ours(flow):
    """One planned flow in the notation of ``neutron_agent.canon_neutron``."""
    m = flow["match"]
    match = {}
    for k, v in m.items():
        if k == "proto" and isinstance(v, dict):  # ip,nw_proto=N
            match["eth_type"] = str(0x0800)
            match["ip_proto"] = str(next(iter(v.values())))
        elif k == "proto":
            match["eth_type"] = str(ETH_TYPE[v])
            if v in IP_PROTO:
                match["ip_proto"] = str(IP_PROTO[v])
        elif k == "regs":
            for i, r in enumerate(v):
                if r is not None:
                    match[f"reg{i}"] = str(r["value"]) if r["mask"] == 0xFFFFFFFF else f"{r['value']}/{r['mask']}"
        elif k == "ct_state":
            match[k] = neutron_agent.ct_state_from_bits(v["flags"], v["mask"])
        elif k == "ct_mark":
            match[k] = str(v["value"]) if v["mask"] == 0xFFFFFFFF else f"{v['value']}/{v['mask']}"
        elif k in ("ct_zone", "conj_id"):
            match[k] = str(v)
        elif k in ("tp_src", "tp_dst"):
            match[k] = neutron_agent.port_canon(v["value"], v["mask"])
        elif k == "icmp_code":
            match["icmpv4_code"] = str(v)
        elif k == "in_port":
            match["in_port"] = v
        elif k == "dl_vlan":
            match["vlan_vid"] = hex(0x1000 | v["tagged"]) if isinstance(v, dict) else hex(0)
        elif k in ("dl_src", "dl_dst"):
            match["eth_" + k[3:]] = v.lower()
        elif k in ("arp_spa", "arp_tpa"):
            match[k] = _ip(v)
        elif k == "arp_tha":
            match[k] = v.lower()
        elif k == "arp_op":
            match[k] = str(v)
        elif k in ("nw_src", "nw_dst"):
            match["ipv4_" + k[3:]] = _ip(v)
        elif k == "icmp_type":
            match["icmpv6_type" if m.get("proto") == "icmp6" else "icmpv4_type"] = str(v)
        elif k == "nd_target":
            match["ipv6_nd_target"] = v
        else:
            match[k] = f"unknown:{v}"
    actions, goto = [], []
    for a in flow["actions"]:
        kind, arg = a["action"], a.get("arg")
        if kind == "drop":
            continue
        if kind in ("load", "ct", "ct_clear", "conjunction"):
            actions.append(nx_action(a))
            continue
        if kind == "goto_table":
            goto.append(f"goto_table:{arg}")
        elif kind == "resubmit":
            actions.append(f"resubmit:{arg}")
        elif kind == "output":
            actions.append(f"output:{arg}")
        elif kind == "normal":
            actions.append("output:NORMAL")
        elif kind == "mod_vlan_vid":
            actions.append(f"set_vlan_vid:{arg}")
        elif kind == "strip_vlan":
            actions.append("pop_vlan")
        elif kind == "push_vlan":
            actions.append("push_vlan:0x8100")
        elif kind in ("mod_dl_src", "mod_dl_dst"):
            actions.append(f"set_field:eth_{kind[-3:]}={arg.lower()}")
        else:
            actions.append(f"unknown:{kind}")
    return {"table": flow["table"], "priority": flow["priority"], "match": neutron_agent.norm_match(match), "actions": actions + goto}


def _field(f):
    field = f["field"]
    return f"reg{field['reg']}" if isinstance(field, dict) else field


def nx_action(a):
    """Our register, conntrack and conjunction actions in ``neutron_agent.text_action``'s notation."""
    kind, arg = a["action"], a.get("arg")
    if kind == "ct_clear":
        return "ct_clear"
    if kind == "conjunction":
        return f"conjunction({arg['id']},{arg['clause']}/{arg['n_clauses']})"
    if kind == "load":
        dst = arg["dst"]
        whole = dst["ofs"] == 0 and dst["n_bits"] == (16 if _field(dst) in ("ct_zone", "in_port") else 32)
        return f"set_field:{_field(dst)}={arg['value']}" if whole else f"unknown:load:{arg}"
    zone = arg.get("zone")
    if zone is None:
        z = None
    elif "imm" in zone:
        z = str(zone["imm"])
    else:
        sub = zone["field"]
        z = f"NXM_NX_REG{sub['field']['reg']}[{sub['ofs']}..{sub['ofs'] + sub['n_bits'] - 1}]"
    return neutron_agent.ct_canon(
        commit=arg.get("commit", False),
        table=arg.get("table"),
        zone=z,
        nat=arg.get("nat", False),
        exec_actions=[nx_action(x) for x in arg.get("exec", [])],
    )


def ofports(plan):
    """br-int port name → OpenFlow number, per host, as our plan requests them."""
    return {
        hp["host"]: {p["name"]: p["ofport"] for br in hp["bridges"] for p in br["ports"] if p.get("ofport")} for hp in plan["hosts"]
    }


def key(f):
    return (f["table"], f["priority"], tuple(sorted(f["match"].items())), tuple(f["actions"]))


def show(k):
    table, prio, match, actions = k
    m = ",".join(f"{a}={b}" for a, b in match)
    return f"table={table}, priority={prio}{',' + m if m else ''} actions={','.join(actions) or 'drop'}"


def canon_all(run):
    return {h: {b: sorted(map(key, fl)) for b, fl in brs.items()} for h, brs in run.items()}


def compare(ours, theirs):
    a, b = collections.Counter(map(key, ours)), collections.Counter(map(key, theirs))
    matched = sum((a & b).values())
    return matched, sorted((b - a).elements()), sorted((a - b).elements())


def fidelity(args):
    """The harness's Neutron flows for the seed lab against a real capture."""
    import capture

    topo = json.loads(dvr(args.dvr, "topology", "--format", "json"))
    real = capture.load(args.capture, topo)
    fake = neutron_agent.run(topo)
    ok, rows = True, 0
    print(f"{'host':<12} {'bridge':<9} {'matched':>7} {'only real':>9} {'only harness':>12}")
    for host, bridges in real.items():
        for br, flows in bridges.items():
            matched, only_real, only_fake = compare(fake[host][br], flows)
            ok &= not only_real and not only_fake
            rows += 1
            print(f"{host:<12} {br:<9} {matched:>7} {len(only_real):>9} {len(only_fake):>12}")
            for k in only_real:
                print(f"    only in the real capture: {show(k)}")
            for k in only_fake:
                print(f"    only in the harness:      {show(k)}")
    verdict = "the harness reproduces the real capture" if ok and rows else "DIFFERENCES FOUND"
    print(f"capture: {verdict}; {rows} bridges compared in {time.monotonic() - T0:.1f}s")
    return 0 if ok and rows else 1


def dvr(exe, *args):
    r = subprocess.run([exe, *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"conformance: `dvr {' '.join(args)}` failed:\n{r.stderr}")
    return r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dvr", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--json")
    ap.add_argument("--only", help="run only the scenario of this name")
    ap.add_argument(
        "--capture",
        metavar="DIR",
        help="instead: compare Neutron's agent on the fake datapath (seed lab) with a real Neutron capture of it "
        "(shared reference real-neutron/seed-fip): the harness's own fidelity",
    )
    ap.add_argument(
        "--control",
        action="store_true",
        help="positive control: drop the first planned flow of every bridge; each must be reported missing",
    )
    ap.add_argument(
        "--control-firewall",
        action="store_true",
        help="positive control for the firewall: drop the first planned flow of every firewall table (71-94) of each "
        "bridge; each must be reported missing",
    )
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    if args.capture:
        return fidelity(args)
    with open(os.path.join(args.work, "gen10.yaml"), "w") as f:
        f.write(dvr(args.dvr, "gen", "--hosts", "10"))
    with open(os.path.join(args.work, "secure-more.yaml"), "w") as f:
        f.write(secure_more(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "labs")))

    report, all_ok = [], True
    print(f"{'scenario':<52} {'host':<12} {'bridge':<9} {'matched':>7} {'missing':>7} {'extra':>5} {'deviations':>10}")
    for name, targs, changes in SCENARIOS:
        if args.only and name != args.only:
            continue
        labs = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "labs")
        targs = [a.format(work=args.work, labs=labs) for a in targs]
        chg = [x for c in changes for x in ("--change", c)]
        before = json.loads(dvr(args.dvr, "topology", "--format", "json", *targs))
        after = json.loads(dvr(args.dvr, "topology", "--format", "json", *targs, *chg)) if changes else None
        plan = json.loads(dvr(args.dvr, "plan", "--profile", "current", "--format", "json", *targs, *chg))
        numbers = ofports(plan)
        theirs = neutron_agent.run(before, after, ofports=numbers)
        # The agent gets a host's devices as an unordered set; its result must
        # not depend on the order (e.g. an instance port bound before or after
        # its subnet's router interface).
        backwards = neutron_agent.run(before, after, order=lambda d: list(reversed(d)), ofports=numbers)
        if canon_all(backwards) != canon_all(theirs):
            print(f"{name}: Neutron's flows depend on the order of its devices (sorted vs reversed)")
            all_ok = False
        for hp in plan["hosts"]:
            if not hp["bridges"]:
                continue
            for br in hp["bridges"]:
                n = theirs.get(hp["host"], {}).get(br["name"])
                if n is None:
                    print(f"{name:<52} {hp['host']:<12} {br['name']:<9} no such bridge in Neutron's run")
                    all_ok = False
                    continue
                ours = [canon_ours(f) for f in br["flows"]]
                if args.control:
                    ours = sorted(ours, key=key)[1:]
                if args.control_firewall:
                    firsts = {t: min((key(f) for f in ours if f["table"] == t), default=None) for t in FIREWALL_TABLES}
                    ours = [f for f in ours if key(f) not in firsts.values()]
                matched, missing, extra = compare(ours, n)
                devs = [(side, k, deviation(side, k)) for side, ks in (("missing", missing), ("extra", extra)) for k in ks]
                missing = [k for side, k, d in devs if side == "missing" and d is None]
                extra = [k for side, k, d in devs if side == "extra" and d is None]
                devs = [(side, k, d) for side, k, d in devs if d is not None]
                all_ok &= not missing and not extra
                print(
                    f"{name:<52} {hp['host']:<12} {br['name']:<9} {matched:>7} {len(missing):>7} {len(extra):>5} "
                    f"{','.join(sorted({d for _, _, d in devs})) or '-':>10}"
                )
                for k in missing:
                    print(f"    missing (Neutron has, we do not): {show(k)}")
                for k in extra:
                    print(f"    extra   (we have, Neutron does not): {show(k)}")
                for side, k, d in devs:
                    print(f"    {d} (documented deviation, {side}): {show(k)}")
                report.append(
                    {
                        "scenario": name,
                        "host": hp["host"],
                        "bridge": br["name"],
                        "matched": matched,
                        "missing": [show(k) for k in missing],
                        "extra": [show(k) for k in extra],
                        "deviations": [{"id": d, "side": side, "flow": show(k)} for side, k, d in devs],
                    }
                )
        for host in theirs:
            if not any(hp["host"] == host for hp in plan["hosts"]):
                print(f"{name:<52} {host:<12} Neutron ran an agent here, our plan has no such host")
                all_ok = False
    verdict = "every bridge matches (documented deviations aside)" if all_ok else "DIFFERENCES FOUND"
    print(f"conformance: {verdict}; {len(report)} bridges compared in {time.monotonic() - T0:.1f}s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
