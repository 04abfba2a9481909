"""Drive Neutron's own Open vSwitch agent code for one host, without a switch.

Neutron 29.0.0's native bridge classes (``OVSIntegrationBridge``,
``OVSPhysicalBridge``) and the agents (``OVSNeutronAgent``,
``OVSDVRNeutronAgent``) run unchanged. Only their edges are replaced, the way
Neutron's own unit tests replace them:

* OpenFlow: ``_get_dp`` returns a fake datapath carrying os-ken's real
  ``ofproto_v1_3`` / ``ofproto_v1_3_parser``; ``_send_msg`` applies each
  ``OFPFlowMod`` (add, modify, delete, delete-strict, with cookie masks) to an
  in-memory flow table, and answers ``OFPFlowStatsRequest`` from it.
* OVSDB: an in-memory list of bridges and ports (names, ofports, external_ids,
  tags, other_config) behind the ``ovs_lib.OVSBridge`` methods the agent calls.
* RPC: the server's answers (device details, DVR MACs, subnet info, ports per
  host and subnet) are computed from our topology (``dvr topology --format
  json``), with Neutron's own helpers where the server uses them
  (``is_dvr_serviced``, device owner constants).

The agent object is created without ``__init__`` (which would connect to
RabbitMQ and OVSDB) and then driven through the same methods, in the same
order, as ``OVSNeutronAgent.__init__`` and the first ``rpc_loop`` iteration:
``setup_integration_br`` → ``setup_physical_bridges`` → ``dvr_agent.setup_dvr_flows``
→ ``install_ingress_direct_goto_flows`` → (loop) ``process_deleted_ports`` →
``update_stale_ofport_rules`` → ``process_network_ports`` → ``cleanup_stale_flows``.
Later iterations (changes) repeat the loop part with the server's new answers,
after a ``dvr_mac_address_update`` fan-out when the DVR MAC list changed.
"""

import collections
import contextlib
import types

from neutron_lib import constants as n_const
from neutron_lib.plugins.ml2 import ovs_constants as ovs_consts
from oslo_config import cfg

# Register the agent's options exactly as the agent's entry point does.
from neutron.plugins.ml2.drivers.openvswitch.agent.common import config  # noqa: F401
from neutron.conf.agent import common as agent_common_conf
from neutron.conf.agent import securitygroups_rpc as sg_conf
from neutron.conf import common as common_conf
from neutron.conf.db import l3_dvr_db as l3_dvr_conf

from neutron.agent import securitygroups_rpc as agent_sg_rpc
from neutron.agent.linux.openvswitch_firewall import firewall as ovs_firewall
from neutron.agent.common import ovs_lib
from neutron.common import utils as n_utils
from neutron.plugins.ml2.drivers.openvswitch.agent import ovs_dvr_neutron_agent
from neutron.plugins.ml2.drivers.openvswitch.agent import ovs_neutron_agent
from neutron.plugins.ml2.drivers.openvswitch.agent import vlanmanager
from neutron.plugins.ml2.drivers.openvswitch.agent.openflow.native import br_int
from neutron.plugins.ml2.drivers.openvswitch.agent.openflow.native import br_phys
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofpp

for _register in (
    lambda: common_conf.register_core_common_config_opts(),
    lambda: agent_common_conf.register_agent_state_opts_helper(cfg.CONF),
    lambda: sg_conf.register_securitygroups_opts(),
    # The server's option that get_ports_on_host_by_subnet reads.
    lambda: l3_dvr_conf.register_db_l3_dvr_opts(),
):
    try:
        _register()
    except Exception:  # already registered by an import above
        pass

# BaseOVS.__init__ asks ovsdbapp for an IDL connection; there is none.
ovs_lib.impl_idl.api_factory = lambda: types.SimpleNamespace()


class _NoConntrack:
    """The kernel's connection table (``OvsIpConntrackManager`` runs
    ``conntrack -D`` in worker threads): there is none, nothing to flush."""

    def delete_conntrack_state_by_remote_ips(self, *a, **k):
        pass


ovs_firewall.ip_conntrack.OvsIpConntrackManager = _NoConntrack

#: device_owner per owner kind of our topology JSON.
DEVICE_OWNER = {
    "compute": "compute:nova",
    "dhcp": n_const.DEVICE_OWNER_DHCP,
    "router_interface_distributed": n_const.DEVICE_OWNER_DVR_INTERFACE,
    "router_interface": n_const.DEVICE_OWNER_ROUTER_INTF,
    "centralized_snat": n_const.DEVICE_OWNER_ROUTER_SNAT,
    "router_gateway": n_const.DEVICE_OWNER_ROUTER_GW,
    "floating_ip_agent_gateway": n_const.DEVICE_OWNER_AGENT_GW,
}

#: Device name prefix per owner kind (os-vif iptables_hybrid for instances,
#: the l3 and DHCP agents' prefixes for the rest).
DEVICE_PREFIX = {
    "compute": "qvo",
    "dhcp": "tap",
    "router_interface_distributed": "qr-",
    "router_interface": "qr-",
    "centralized_snat": "sg-",
    "router_gateway": "qg-",
    "floating_ip_agent_gateway": "fg-",
}


def _addr(cidr):
    """An address as Neutron stores it: a /32 as the bare address."""
    return cidr[:-3] if cidr.endswith("/32") else cidr


def device_name(port):
    """Neutron's device name: prefix + the port id, LINUX_DEV_LEN (14) characters in all."""
    return (DEVICE_PREFIX[port["owner"]] + port["id"])[:n_const.LINUX_DEV_LEN]


class Server:
    """The Neutron server's RPC answers, computed from our topology JSON."""

    def __init__(self, topo):
        self.topo = topo
        self.hosts = topo["hosts"]

    def host_ix(self, name):
        return next(i for i, h in enumerate(self.hosts) if h["name"] == name)

    def subnet(self, ix):
        return self.topo["subnets"][ix]

    def network(self, ix):
        return self.topo["networks"][ix]

    def subnet_by_id(self, sid):
        return next(s for s in self.topo["subnets"] if s["id"] == sid)

    def port_by_id(self, pid):
        return next((p for p in self.topo["ports"] if p["id"] == pid), None)

    def fixed_ips(self, port):
        return [{"subnet_id": self.subnet(port["subnet"])["id"], "ip_address": port["ip"]}]

    def ports_on_host(self, host):
        """Ports an agent finds on its br-int: those bound to the host, and
        every distributed router interface of the routers the host carries."""
        h = self.host_ix(host)
        out = []
        for p in self.topo["ports"]:
            if p["owner"] == "router_interface_distributed":
                if h in self.topo["routers"][p["router"]]["hosts"]:
                    out.append(p)
            elif p["host"] == h:
                out.append(p)
        return out

    # --- DVR RPC (neutron/api/rpc/handlers/dvr_rpc.py → dvr_mac_db.py) ---
    def get_dvr_mac_address_by_host(self, context, host):
        return {"host": host, "mac_address": self.hosts[self.host_ix(host)]["dvr_mac"]}

    def get_dvr_mac_address_list(self, context):
        return [{"host": h["name"], "mac_address": h["dvr_mac"]} for h in self.hosts if h["dvr_mac"]]

    def get_subnet_for_dvr(self, context, subnet, fixed_ips=None):
        sid = fixed_ips[0]["subnet_id"] if fixed_ips else subnet
        s = self.subnet_by_id(sid)
        ip = fixed_ips[0]["ip_address"] if fixed_ips else s["gateway"]
        six = self.topo["subnets"].index(s)
        gw_ports = [p for p in self.topo["ports"] if p["subnet"] == six and p["ip"] == ip]
        if not gw_ports:
            return {}
        return {
            "id": s["id"],
            "cidr": s["cidr"],
            "gateway_ip": s["gateway"],
            "gateway_mac": gw_ports[0]["mac"],
            "ip_version": 4,
            "network_id": self.network(s["network"])["id"],
        }

    def get_ports_on_host_by_subnet(self, context, host, subnet):
        h = self.host_ix(host)
        six = self.topo["subnets"].index(self.subnet_by_id(subnet))
        owners = n_utils.get_other_dvr_serviced_device_owners(cfg.CONF.host_dvr_for_dhcp)
        out = []
        for p in self.topo["ports"]:
            owner = DEVICE_OWNER[p["owner"]]
            if p["host"] != h or p["subnet"] != six:
                continue
            if owner.startswith(n_const.DEVICE_OWNER_COMPUTE_PREFIX) or owner in owners:
                out.append(self.port_dict(p))
        return out

    def get_ports(self, context, filters=None):
        ids = (filters or {}).get("id", [])
        return [self.port_dict(p) for p in self.topo["ports"] if p["id"] in ids]

    def port_dict(self, p):
        return {
            "id": p["id"],
            "device_owner": DEVICE_OWNER[p["owner"]],
            "mac_address": p["mac"],
            "fixed_ips": self.fixed_ips(p),
            "allowed_address_pairs": self.address_pairs(p),
            "network_id": self.network(p["network"])["id"],
        }

    # --- security groups (the server's side of securitygroups_rpc) ---
    def firewall(self):
        """The firewall driver every agent runs: openvswitch once the
        topology has security groups, else noop (as in the captures)."""
        return (self.topo.get("security") or {}).get("driver", "noop")

    def port_security(self, p):
        """Our per-port security entry of an instance port, or None."""
        sec = self.topo.get("security")
        if not sec or p["owner"] != "compute":
            return None
        return next((x for x in sec["ports"] if x["instance"] == p["instance"]), None)

    def address_pairs(self, p):
        ps = self.port_security(p)
        if not ps:
            return []
        return [{"ip_address": _addr(a["ip"]), "mac_address": a["mac"]} for a in ps["allowed_address_pairs"]]

    def group_ids(self, p):
        ps = self.port_security(p)
        return [self.topo["security"]["groups"][g]["id"] for g in ps["groups"]] if ps else []

    def rule_dicts(self, group):
        """A group's rules as ``security_group_info_for_ports`` sends them:
        only the keys that are set, the peer prefix under source_/dest_ip_prefix."""
        out = []
        for r in group["rules"]:
            d = {"direction": r["direction"], "ethertype": "IPv4"}
            pr = r["protocol"]
            kind = pr["protocol"]
            if kind in ("tcp", "udp", "sctp"):
                d["protocol"] = kind
                if pr.get("ports"):
                    d["port_range_min"], d["port_range_max"] = pr["ports"]["min"], pr["ports"]["max"]
            elif kind == "icmp":
                d["protocol"] = "icmp"
                f = pr.get("filter")
                if f:
                    d["port_range_min"] = f["icmp_type"]
                    if f.get("icmp_code") is not None:
                        d["port_range_max"] = f["icmp_code"]
            elif kind == "other":
                d["protocol"] = str(pr["number"])
            remote = r["remote"]
            if remote["kind"] == "prefix":
                d["source_ip_prefix" if r["direction"] == "ingress" else "dest_ip_prefix"] = remote["value"]
            elif remote["kind"] == "group":
                d["remote_group_id"] = self.topo["security"]["groups"][remote["value"]]["id"]
            d["stateful"] = True
            out.append(d)
        return out

    def member_ips(self, group_ix):
        """``_select_ips_for_remote_group``: (fixed IP, None) and (pair IP, pair MAC) of every member port."""
        out = set()
        for ps in self.topo["security"]["ports"]:
            if group_ix in ps["groups"]:
                x = self.topo["instances"][ps["instance"]]
                out.add((self.topo["ports"][x["port"]]["ip"], None))
                for a in ps["allowed_address_pairs"]:
                    out.add((_addr(a["ip"]), a["mac"]))
        return sorted(out, key=str)

    def security_group_info_for_devices(self, context, device_ids, ofport_of=None):
        """The server's answer for the agent's new devices: trusted
        (``network:``) ports are left out, so the agent treats them as trusted."""
        sec = self.topo["security"]
        groups_by_id = {g["id"]: i for i, g in enumerate(sec["groups"])}
        devices, security_groups, remote = {}, {}, {}
        ports = [self.port_by_id(d) for d in device_ids]
        ports = [p for p in ports if p is not None and p["owner"] == "compute"]
        ports.sort(key=lambda p: (ofport_of or {}).get(device_name(p), 0))
        for p in ports:
            ps = self.port_security(p)
            devices[p["id"]] = {
                "device": p["id"],
                "id": p["id"],
                "mac_address": p["mac"],
                "fixed_ips": [p["ip"]],
                "allowed_address_pairs": self.address_pairs(p),
                "security_groups": self.group_ids(p),
                "port_security_enabled": bool(ps and ps["port_security_enabled"]),
                "device_owner": DEVICE_OWNER[p["owner"]],
                "network_id": self.network(p["network"])["id"],
                "security_group_source_groups": [],
            }
            for gid in self.group_ids(p):
                rules = self.rule_dicts(sec["groups"][groups_by_id[gid]])
                security_groups.setdefault(gid, rules)
                for r in rules:
                    if "remote_group_id" in r:
                        remote.setdefault(r["remote_group_id"], groups_by_id[r["remote_group_id"]])
                        if r["remote_group_id"] not in devices[p["id"]]["security_group_source_groups"]:
                            devices[p["id"]]["security_group_source_groups"].append(r["remote_group_id"])
        members = {gid: {"IPv4": self.member_ips(ix), "IPv6": []} for gid, ix in remote.items()}
        return {"devices": devices, "security_groups": security_groups, "sg_member_ips": members}

    # --- L2 plugin RPC (get_devices_details_list_and_failed_devices) ---
    def device_details(self, host, device):
        p = self.port_by_id(device)
        if p is None:
            return {"device": device}
        net = self.network(p["network"])
        seg = net["segment"]
        return {
            "device": device,
            "port_id": p["id"],
            "mac_address": p["mac"],
            "network_id": net["id"],
            "network_type": seg["type"],
            "physical_network": seg.get("physnet"),
            "segmentation_id": seg.get("vlan"),
            "admin_state_up": True,
            "fixed_ips": self.fixed_ips(p),
            "device_owner": DEVICE_OWNER[p["owner"]],
            "allowed_address_pairs": self.address_pairs(p),
            "port_security_enabled": self.port_security(p) is None or self.port_security(p)["port_security_enabled"],
            "security_groups": self.group_ids(p),
            "profile": {},
            "qos_policy_id": None,
            "network_qos_policy_id": None,
            "mtu": 1500,
        }


class PluginRpc:
    """``OVSPluginApi`` and ``DVRServerRpcApi`` in one, answered by a ``Server``
    that the harness swaps when the deployment changes."""

    def __init__(self, host, server, order=sorted):
        self.host = host
        self.server = server
        self.order = order
        self.remote_resource_cache = types.SimpleNamespace(record_resource_remove=lambda *a, **k: None)
        #: br-int port name -> OpenFlow number our plan requests (ofport_request).
        self.ofport_of = {}

    def __getattr__(self, name):
        return getattr(self.server, name)

    def get_devices_details_list_and_failed_devices(self, context, devices, agent_id, host=None, agent_restarted=False):
        devices = list(self.order(sorted(devices)))
        return {"devices": [self.server.device_details(self.host, d) for d in devices], "failed_devices": []}

    def update_device_list(self, context, devices_up, devices_down, agent_id, host, refresh_tunnels=False):
        return {
            "devices_up": list(devices_up),
            "failed_devices_up": [],
            "devices_down": [{"device": d, "exists": False} for d in devices_down],
            "failed_devices_down": [],
        }

    def update_device_down(self, *a, **k):
        return {}

    def security_group_info_for_devices(self, context, device_ids):
        return self.server.security_group_info_for_devices(context, device_ids, self.ofport_of)


class Ovsdb:
    """The OVSDB rows the agent reads and writes: bridges with their ports."""

    def __init__(self):
        self.bridges = {}
        self.next_dpid = 1

    def add_bridge(self, name):
        self.bridges.setdefault(name, {"ports": {}, "next_ofport": 1, "dpid": self.next_dpid})
        self.next_dpid += 1

    def add_port(self, bridge, name, external_ids=None, tag=None, ofport_request=None):
        b = self.bridges[bridge]
        if name not in b["ports"]:
            taken = {r["ofport"] for r in b["ports"].values()}
            while ofport_request is None and b["next_ofport"] in taken:
                b["next_ofport"] += 1
            b["ports"][name] = {
                "name": name,
                "ofport": ofport_request or b["next_ofport"],
                "external_ids": dict(external_ids or {}),
                "tag": tag,
                "other_config": {},
            }
            if ofport_request is None:
                b["next_ofport"] += 1
        return b["ports"][name]["ofport"]

    def del_port(self, bridge, name):
        self.bridges[bridge]["ports"].pop(name, None)


class FlowTable:
    """One bridge's flow table with OpenFlow 1.3 flow-mod semantics."""

    def __init__(self):
        self.flows = []  # dicts: table_id, priority, cookie, match, instructions

    @staticmethod
    def fields(match):
        return {k: v for k, v in match.items()}

    @staticmethod
    def _covers(pattern, fields):
        """Non-strict delete: every field of ``pattern`` is in ``fields`` with a
        value inside the pattern's (optionally masked) value."""
        for k, v in pattern.items():
            if k not in fields:
                return False
            fv = fields[k]
            if isinstance(v, tuple):
                val, mask = v
                fval = fv[0] if isinstance(fv, tuple) else fv
                if isinstance(val, int):
                    if (fval & mask) != (val & mask):
                        return False
                    continue
            if fv != v:
                return False
        return True

    def apply(self, msg):
        cmd = msg.command
        fields = self.fields(msg.match)
        if cmd in (ofp.OFPFC_ADD, ofp.OFPFC_MODIFY, ofp.OFPFC_MODIFY_STRICT):
            for f in self.flows:
                if f["table_id"] == msg.table_id and f["priority"] == msg.priority and f["fields"] == fields:
                    f.update(cookie=msg.cookie, instructions=msg.instructions)
                    return
            self.flows.append(
                {
                    "table_id": msg.table_id,
                    "priority": msg.priority,
                    "cookie": msg.cookie,
                    "fields": fields,
                    "match": msg.match,
                    "instructions": msg.instructions,
                }
            )
            return
        if cmd not in (ofp.OFPFC_DELETE, ofp.OFPFC_DELETE_STRICT):
            raise RuntimeError(f"unsupported flow-mod command {cmd}")
        strict = cmd == ofp.OFPFC_DELETE_STRICT

        def hit(f):
            if msg.table_id != ofp.OFPTT_ALL and f["table_id"] != msg.table_id:
                return False
            if (f["cookie"] & msg.cookie_mask) != (msg.cookie & msg.cookie_mask):
                return False
            if strict:
                return f["priority"] == msg.priority and f["fields"] == fields
            return self._covers(fields, f["fields"])

        self.flows = [f for f in self.flows if not hit(f)]


class FakeDatapath:
    """What ``_get_dp`` hands the bridge: os-ken's real OpenFlow 1.3 modules."""

    def __init__(self, dpid):
        self.id = dpid
        self.ofproto = ofp
        self.ofproto_parser = ofpp


class _Txn:
    def __init__(self, db, bridge):
        self.db, self.bridge = db, bridge

    def add(self, cmd):
        cmd()


class _OvsdbApi:
    """The few ``ovsdbapp`` commands the agent issues inside transactions."""

    def __init__(self, db, bridge):
        self.db, self.bridge = db, bridge

    @contextlib.contextmanager
    def transaction(self, *a, **k):
        yield _Txn(self.db, self.bridge)

    def _row(self, table, record):
        for b in self.db.bridges.values():
            if record in b["ports"]:
                return b["ports"][record]
        return None

    def db_set(self, table, record, *col_values):
        def run():
            row = self._row(table, record)
            if row is not None:
                for col, val in col_values:
                    row[col] = val

        return run

    def db_clear(self, table, record, column):
        def run():
            row = self._row(table, record)
            if row is not None and column in row:
                row[column] = None

        return run


class FakeBridgeMixin:
    """OVSDB and OpenFlow edges of ``OVSAgentBridge``; the rest is Neutron's."""

    def attach(self, db):
        self._db = db
        db.add_bridge(self.br_name)
        self._table = FlowTable()
        self._text = []  # flows added as ovs-ofctl keyword arguments
        self._dp = FakeDatapath(db.bridges[self.br_name]["dpid"])
        self.ovsdb = _OvsdbApi(db, self.br_name)
        return self

    # --- OpenFlow ---
    def _get_dp(self):
        return self._dp, ofp, ofpp

    #: ``Open_vSwitch other_config:hw-offload`` is unset (a software switch).
    is_hw_offload_enabled = False

    # --- ovs-ofctl flows (``OVSBridge.add_flow``/``delete_flows``, which the
    # openvswitch firewall uses through ``DeferredOVSBridge``) ---
    def add_protocols(self, *protocols):
        pass

    def do_action_flows(self, action, kwargs_list, use_bundle=False, flow_group_id=None):
        for kw in kwargs_list:
            kw = {k: v for k, v in kw.items() if k not in ("cookie", "strict")}
            if action == "add":
                kw.setdefault("priority", 1)
                key = _text_key(kw)
                self._text = [f for f in self._text if _text_key(f) != key] + [kw]
            elif action == "mod":
                for f in self._text:
                    if _text_key(f) == _text_key(kw):
                        f["actions"] = kw["actions"]
            elif action == "del":
                self._text = [f for f in self._text if not _text_covers(kw, f)]
            else:
                raise RuntimeError(f"unsupported ovs-ofctl action {action}")

    def _send_msg(self, msg, reply_cls=None, reply_multi=False, active_bundle=None):
        if isinstance(msg, ofpp.OFPFlowMod):
            self._table.apply(msg)
            return None
        if isinstance(msg, ofpp.OFPFlowStatsRequest):
            body = [
                ofpp.OFPFlowStats(
                    table_id=f["table_id"],
                    priority=f["priority"],
                    cookie=f["cookie"],
                    match=f["match"],
                    instructions=f["instructions"],
                )
                for f in self._table.flows
                if msg.table_id in (ofp.OFPTT_ALL, f["table_id"])
            ]
            return [types.SimpleNamespace(body=body)]
        raise RuntimeError(f"unexpected OpenFlow message {type(msg).__name__}")

    # --- OVSDB ---
    def _ports(self):
        return self._db.bridges[self.br_name]["ports"]

    def create(self, *a, **k):
        self._db.add_bridge(self.br_name)

    def set_secure_mode(self):
        pass

    def setup_controllers(self, conf):
        pass

    def set_igmp_snooping_state(self, state):
        pass

    def set_igmp_snooping_flood(self, port_name, state=True):
        pass

    def get_datapath_id(self):
        return format(self._db.bridges[self.br_name]["dpid"], "016x")

    def set_datapath_id(self, datapath_id):
        self._db.bridges[self.br_name]["dpid"] = int(datapath_id, 16)

    def port_exists(self, port_name):
        return port_name in self._ports()

    def get_port_ofport(self, port_name):
        return self._ports()[port_name]["ofport"]

    def add_patch_port(self, local_name, remote_name):
        return self._db.add_port(self.br_name, local_name)

    def get_port_name_list(self):
        return list(self._ports())

    def set_db_attribute(self, table_name, record, column, value, check_error=False, log_errors=True):
        row = self._ports().get(record)
        if row is not None:
            row[column] = value

    def clear_db_attribute(self, table_name, record, column):
        row = self._ports().get(record)
        if row is not None:
            row[column] = {} if column == "other_config" else None

    def db_get_val(self, table, record, column, check_error=False, log_errors=True):
        if table == "Bridge":
            return {}
        row = self._ports().get(record)
        if row is None:
            return None
        return row.get(column)

    def get_ports_attributes(self, table, columns=None, ports=None, check_error=True, log_errors=True, if_exists=False):
        rows = [r for r in self._ports().values() if ports is None or r["name"] in ports]
        out = []
        for r in rows:
            row = dict(r)
            row["external_ids"] = dict(r["external_ids"])
            row["other_config"] = dict(r["other_config"] or {})
            out.append({c: row.get(c) for c in columns} if columns else row)
        return out

    def get_vif_port_by_id(self, port_id):
        for r in self._ports().values():
            if r["external_ids"].get("iface-id") == port_id:
                return ovs_lib.VifPort(r["name"], r["ofport"], port_id, r["external_ids"].get("attached-mac"), self)
        return None

    def get_vif_ports(self, ofport_filter=None):
        return [
            ovs_lib.VifPort(r["name"], r["ofport"], r["external_ids"]["iface-id"], r["external_ids"].get("attached-mac"), self)
            for r in self._ports().values()
            if r["external_ids"].get("iface-id") and r["ofport"] not in (ofport_filter or ())
        ]

    def delete_port(self, port_name):
        self._db.del_port(self.br_name, port_name)

    # --- reading the result ---
    def ofport_names(self):
        return {r["ofport"]: r["name"] for r in self._ports().values()}


class IntBridge(FakeBridgeMixin, br_int.OVSIntegrationBridge):
    """Neutron's native br-int with the edges above."""


class PhysBridge(FakeBridgeMixin, br_phys.OVSPhysicalBridge):
    """Neutron's native physical bridge with the edges above."""


class _NoopSgAgent:
    """``SecurityGroupAgentRpc`` with the noop firewall (``firewall_driver =
    noop``, as in the reference captures): no filters, no ARP protection of
    its own, so the agent installs anti-spoofing itself."""

    noopfirewall_or_firewall_disabled = True
    firewall = types.SimpleNamespace(provides_arp_spoofing_protection=False)

    def setup_port_filters(self, *a, **k):
        pass

    def remove_devices_filter(self, *a, **k):
        pass

    def firewall_refresh_needed(self):
        return False


class _NoExtensions:
    def names(self):
        return []

    def handle_port(self, *a, **k):
        pass

    def delete_port(self, *a, **k):
        pass


class Host:
    """One host's OVS agent, driven through its own methods."""

    def __init__(self, name, server, order=sorted, ofports=None):
        self.name = name
        self.server = server
        self.db = Ovsdb()
        cfg.CONF.set_override("host", name)
        cfg.CONF.set_override("enable_distributed_routing", True, "AGENT")
        cfg.CONF.set_override("firewall_driver", server.firewall(), "SECURITYGROUP")
        # LocalVlanManager is a process-wide singleton: one host at a time.
        if hasattr(vlanmanager.LocalVlanManager, "_instance"):
            del vlanmanager.LocalVlanManager._instance
        host = server.hosts[server.host_ix(name)]
        mappings = {m["physnet"]: m["bridge"] for m in host["bridge_mappings"]}
        for m in host["bridge_mappings"]:
            self.db.add_bridge(m["bridge"])
            self.db.add_port(m["bridge"], m["nic"])
        self.plugin_rpc = PluginRpc(name, server, order)
        self.plugin_rpc.ofport_of = dict(ofports or {})

        a = ovs_neutron_agent.OVSNeutronAgent.__new__(ovs_neutron_agent.OVSNeutronAgent)
        self.agent = a
        a.conf = cfg.CONF
        a.ovs = types.SimpleNamespace(get_bridges=lambda: list(self.db.bridges), capabilities={})
        a.ext_manager = _NoExtensions()
        a.enable_openflow_dhcp = a.enable_local_ips = a.enable_openflow_metadata = a.enable_dns_forwarder = False
        a.fullsync = False
        db = self.db
        a.br_int_cls = lambda n: IntBridge(n, os_ken_app=None).attach(db)
        a.br_phys_cls = lambda n: PhysBridge(n, os_ken_app=None).attach(db)
        a.available_local_vlans = set(range(n_const.MIN_VLAN_TAG, n_const.MAX_VLAN_TAG + 1))
        a.tunnel_types = []
        a.enable_tunneling = False
        a.l2_pop = False
        a.enable_distributed_routing = True
        a.arp_responder_enabled = False
        a.host = name
        a.agent_id = "ovs-agent-%s" % name
        a.int_br = a.br_int_cls(cfg.CONF.OVS.integration_bridge)
        a.setup_integration_br()
        a.updated_ports, a.deleted_ports = set(), set()
        a.deactivated_bindings, a.activated_bindings = set(), set()
        a.updated_smartnic_ports, a.current_smartnic_ports_map = [], {}
        a.network_ports = collections.defaultdict(lambda: collections.defaultdict(set))
        a.vifname_to_ofport_map = {}
        a.added_bridges = []
        a.bridge_mappings = mappings
        a.phys_brs, a.int_ofports, a.phys_ofports = {}, {}, {}
        # setup_physical_bridges looks bridges up through BaseOVS().
        ovs_neutron_agent.ovs_lib.BaseOVS.get_bridges = lambda _self: list(db.bridges)
        a.setup_physical_bridges(a.bridge_mappings)
        a.vlan_manager = vlanmanager.LocalVlanManager()
        a._reset_tunnel_ofports()
        a.tun_br = None
        a.patch_int_ofport = a.patch_tun_ofport = ovs_consts.OFPORT_INVALID  # no br-tun
        a.context = None
        a.plugin_rpc = self.plugin_rpc
        a.dvr_plugin_rpc = self.plugin_rpc
        a.dvr_agent = ovs_dvr_neutron_agent.OVSDVRNeutronAgent(
            a.context,
            a.dvr_plugin_rpc,
            a.int_br,
            a.tun_br,
            a.bridge_mappings,
            a.phys_brs,
            a.int_ofports,
            a.phys_ofports,
            a.patch_int_ofport,
            a.patch_tun_ofport,
            a.host,
            a.enable_tunneling,
            a.enable_distributed_routing,
        )
        a.dvr_agent.setup_dvr_flows()
        a.ancillary_brs = []
        if server.firewall() == "openvswitch":
            # As OVSNeutronAgent.__init__ does, before the instances' ports
            # appear on br-int (so the iptables clean-up helper loads nothing).
            a.sg_agent = agent_sg_rpc.SecurityGroupAgentRpc(
                a.context, self.plugin_rpc, defer_refresh_firewall=True, integration_bridge=a.int_br
            )
            a.sg_agent.init_ovs_dvr_firewall(a.dvr_agent)
        else:
            a.sg_agent = _NoopSgAgent()
        self._plug(self.server)
        # _restore_local_vlan_map: the local VLAN of every network comes from
        # the tags already on br-int ports (the agent's own restart path), so
        # both sides use the same numbers; VLAN numbers are host-local notation.
        a._restore_local_vlan_map()
        a.prevent_arp_spoofing = not a.sg_agent.firewall.provides_arp_spoofing_protection
        a.ovs_status = None
        a.iter_num = 0
        a.ovs_restarted = False
        a.install_ingress_direct_goto_flows()
        self.ports = set()
        self.loop()

    def _plug(self, server):
        """What Nova, the l3 agent and the DHCP agent do to br-int: plug the
        host's ports (with iface-id / attached-mac and the local VLAN tag that
        a previous agent run left), unplug the ones that went away."""
        host = server.hosts[server.host_ix(self.name)]
        lvids = {net: vlan for net, vlan in host["local_vlans"]}
        want = {device_name(p): p for p in server.ports_on_host(self.name)}
        brname = self.agent.int_br.br_name
        ports = self.db.bridges[brname]["ports"]
        for name in [n for n, r in ports.items() if r["external_ids"].get("iface-id") and n not in want]:
            self.db.del_port(brname, name)
        for name, p in want.items():
            if name in ports:
                continue
            net = server.network(p["network"])
            self.db.add_port(
                brname,
                name,
                {"iface-id": p["id"], "attached-mac": p["mac"], "iface-status": "active"},
                tag=lvids[p["network"]],
                ofport_request=self.plugin_rpc.ofport_of.get(name),
            )
            # As port_bound() wrote it on the previous run (OVSDB values are strings).
            oc = {
                "net_uuid": net["id"],
                "network_type": net["segment"]["type"],
                "physical_network": str(net["segment"].get("physnet")),
                "tag": str(lvids[p["network"]]),
            }
            if net["segment"].get("vlan") is not None:
                oc["segmentation_id"] = str(net["segment"]["vlan"])
            ports[name]["other_config"] = oc

    def loop(self):
        """One ``rpc_loop`` iteration after the OVSDB monitor reported changes."""
        a = self.agent
        current = {p.vif_id for p in a.int_br.get_vif_ports()}
        port_info = {
            "current": current,
            "added": current - self.ports,
            "removed": self.ports - current,
        }
        a.process_deleted_ports(port_info)
        a.update_stale_ofport_rules()
        a.process_network_ports(port_info, False)
        if a.iter_num == 0:
            a.cleanup_stale_flows()
        self.ports = current
        a.iter_num += 1

    def change(self, server):
        """The deployment changed: the server's answers change, the DVR MAC
        list is fanned out, deleted ports get ``port_delete``, the host's
        br-int is re-plugged, and the agent runs one loop iteration."""
        old = self.server
        self.server = server
        self.plugin_rpc.server = server
        self.agent.dvr_agent.dvr_mac_address_update(server.get_dvr_mac_address_list(None))
        new_ids = {p["id"] for p in server.topo["ports"]}
        for p in old.ports_on_host(self.name):
            if p["id"] not in new_ids:
                self.agent.port_delete(None, port_id=p["id"])
        self._plug(server)
        self.loop()

    def dump(self):
        """Every bridge's flows, in canonical notation (see ``canon``)."""
        a = self.agent
        out = {}
        for br in [a.int_br] + [a.phys_brs[p] for p in a.bridge_mappings]:
            names = br.ofport_names()
            out[br.br_name] = [canon_neutron(f, names) for f in br._table.flows] + [canon_text(f, names) for f in br._text]
        return out


def _port_name(port, names):
    special = {
        ofp.OFPP_NORMAL: "NORMAL",
        ofp.OFPP_IN_PORT: "IN_PORT",
        ofp.OFPP_LOCAL: "LOCAL",
        ofp.OFPP_CONTROLLER: "CONTROLLER",
        ofp.OFPP_FLOOD: "FLOOD",
        ofp.OFPP_ALL: "ALL",
    }
    return special.get(port) or names.get(port, str(port))


def _value(k, v):
    if isinstance(v, tuple):
        return f"{_value(k, v[0])}/{_value(k, v[1])}"
    if k in ("eth_src", "eth_dst", "arp_sha", "arp_tha"):
        return str(v).lower()
    if k == "vlan_vid":
        return hex(v)
    return str(v)


def canon_neutron(f, names):
    """One installed flow in the notation both sides are compared in:
    OXM field names with string values, ``in_port`` and ``output`` as port
    names, actions as ``kind:arg`` strings with apply-actions before goto."""
    match = {}
    for k, v in f["fields"].items():
        match[k] = names.get(v, str(v)) if k == "in_port" else _value(k, v)
    actions, goto = [], []
    for ins in f["instructions"]:
        if isinstance(ins, ofpp.OFPInstructionGotoTable):
            goto.append(f"goto_table:{ins.table_id}")
        elif isinstance(ins, ofpp.OFPInstructionActions) and ins.type == ofp.OFPIT_APPLY_ACTIONS:
            for act in ins.actions:
                if isinstance(act, ofpp.OFPActionOutput):
                    actions.append(f"output:{_port_name(act.port, names)}")
                elif isinstance(act, ofpp.OFPActionSetField):
                    k, v = act.key, act.value
                    if k == "vlan_vid":
                        actions.append(f"set_vlan_vid:{v & 0xFFF}")
                    else:
                        actions.append(f"set_field:{k}={_value(k, v)}")
                elif isinstance(act, ofpp.OFPActionPopVlan):
                    actions.append("pop_vlan")
                elif isinstance(act, ofpp.OFPActionPushVlan):
                    actions.append(f"push_vlan:{hex(act.ethertype)}")
                elif isinstance(act, ofpp.NXActionResubmitTable):
                    actions.append(f"resubmit:{act.table_id}")
                else:
                    actions.append(f"unknown:{type(act).__name__}")
        else:
            actions.append(f"unknown-instruction:{type(ins).__name__}")
    return {"table": f["table_id"], "priority": f["priority"], "match": norm_match(match), "actions": actions + goto}


def run(topo, change_topo=None, order=sorted, ofports=None):
    """Flows per host and bridge that Neutron's agent installs for ``topo``;
    with ``change_topo``, after each surviving host's agent has processed the
    change from ``topo`` to ``change_topo``. ``order`` is the order in which
    the agent gets its devices (sorted by port id, or e.g. ``reversed``)."""
    server = Server(topo)
    after = Server(change_topo) if change_topo else None
    out = {}
    for h in topo["hosts"]:
        if not h["dvr_mac"]:
            continue  # controller: no OVS agent
        if after and not any(x["name"] == h["name"] for x in after.hosts):
            continue  # the removed host: its agent is gone
        agent = Host(h["name"], server, order, (ofports or {}).get(h["name"]))
        if after:
            agent.change(after)
        out[h["name"]] = agent.dump()
    return out


# --- ovs-ofctl (text) flows: the openvswitch firewall's notation ---

CT_BITS = [("new", 0x01), ("est", 0x02), ("rel", 0x04), ("rpl", 0x08), ("inv", 0x10), ("trk", 0x20), ("snat", 0x40), ("dnat", 0x80)]


def ct_state_canon(tokens):
    """``ct_state`` as sorted ``+name``/``-name`` tokens, whatever the spelling."""
    return ",".join(f"{sign}{name}" for name, sign in sorted(tokens.items()))


def ct_state_from_text(text):
    import re

    return ct_state_canon({name: sign for sign, name in re.findall(r"([+-])([a-z]+)", str(text))})


def ct_state_from_bits(flags, mask):
    return ct_state_canon({name: "+" if flags & bit else "-" for name, bit in CT_BITS if mask & bit})


def norm_ip(v):
    """An IPv4 address or prefix in one spelling: bare address for a /32, else ``addr/len``."""
    import ipaddress

    net = ipaddress.ip_network(str(v), strict=False)
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else f"{net.network_address}/{net.prefixlen}"


def norm_match(match):
    for k in ("ipv4_src", "ipv4_dst", "arp_spa", "arp_tpa"):
        if k in match and not match[k].startswith("unknown"):
            match[k] = norm_ip(match[k])
    return match


def port_canon(value, mask=0xFFFF):
    return str(value) if mask == 0xFFFF else f"{value}/{mask}"


def _int(v):
    return int(str(v), 0)


def split_top(text):
    """Split an action list on the commas outside parentheses."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    if cur:
        out.append(cur)
    return [a.strip() for a in out if a.strip()]


def ct_canon(commit=False, table=None, zone=None, nat=False, exec_actions=()):
    parts = (["commit"] if commit else []) + ([f"table={table}"] if table is not None else [])
    parts += ([f"zone={zone}"] if zone is not None else []) + (["nat"] if nat else [])
    if exec_actions:
        parts.append(f"exec({','.join(exec_actions)})")
    return f"ct({','.join(parts)})"


def text_action(a, names):
    """One ovs-ofctl action in canonical notation (None for ``drop``)."""
    low = a.lower()
    if low == "drop":
        return None
    if low == "normal":
        return "output:NORMAL"
    if low == "strip_vlan":
        return "pop_vlan"
    if low == "ct_clear":
        return "ct_clear"
    if low.startswith("resubmit(,"):
        return f"resubmit:{int(a[len('resubmit(,'):-1])}"
    if low.startswith("output:"):
        port = a[7:]
        return f"output:{names.get(int(port), port) if port.isdigit() else port}"
    if low.startswith("mod_vlan_vid:"):
        return f"set_vlan_vid:{int(a[13:])}"
    if low.startswith("set_field:"):
        value, field = a[10:].split("->")
        return f"set_field:{field}={_int(value)}"
    if low.startswith("conjunction("):
        return a.replace(" ", "")
    if low.startswith("ct("):
        kw = {"exec_actions": []}
        for part in split_top(a[3:-1]):
            if part == "commit":
                kw["commit"] = True
            elif part == "nat":
                kw["nat"] = True
            elif part.startswith("table="):
                kw["table"] = int(part[6:])
            elif part.startswith("zone="):
                kw["zone"] = part[5:]
            elif part.startswith("exec("):
                kw["exec_actions"] = [text_action(x, names) for x in split_top(part[5:-1])]
        return ct_canon(**kw)
    return f"unknown:{a}"


def canon_text(kw, names):
    """A flow the firewall added as ovs-ofctl keywords, in the notation of ``canon_neutron``."""
    match = {}
    eth = kw.get("dl_type")
    eth = str(_int(eth)) if eth is not None else None
    for k, v in kw.items():
        if k in ("table", "priority", "actions"):
            continue
        if k == "in_port":
            match["in_port"] = names.get(_int(v), str(v))
        elif k == "dl_type":
            match["eth_type"] = eth
        elif k == "nw_proto":
            match["ip_proto"] = str(_int(v))
        elif k in ("dl_src", "dl_dst"):
            match["eth_" + k[3:]] = str(v).lower()
        elif k == "dl_vlan":
            match["vlan_vid"] = hex(0x1000 | _int(v))
        elif k == "vlan_tci" and str(v).lower() == "0x0000/0x1fff":
            match["vlan_vid"] = hex(0)
        elif k in ("nw_src", "nw_dst"):
            match["ipv4_" + k[3:]] = str(v)
        elif k == "arp_spa":
            match[k] = str(v)
        elif k.startswith("reg") and k[3:].isdigit():
            match[k] = str(_int(v))
        elif k == "ct_state":
            match[k] = ct_state_from_text(v)
        elif k in ("ct_mark", "ct_zone", "conj_id"):
            match[k] = str(_int(v))
        elif k.endswith("_src") and k[:-4] in ("tp", "tcp", "udp", "sctp") or k.endswith("_dst") and k[:-4] in ("tp", "tcp", "udp", "sctp"):
            text = str(v)
            value, mask = (text.split("/") + ["0xffff"])[:2]
            match["tp_" + k[-3:]] = port_canon(_int(value), _int(mask))
        elif k in ("icmp_type", "icmp_code"):
            match[("icmpv4_" if eth == "2048" else "icmpv6_") + k[5:]] = str(v)
        elif k == "nd_target":
            match["ipv6_nd_target"] = str(v)
        else:
            match[k] = str(v)
    actions = [x for x in (text_action(a, names) for a in split_top(str(kw.get("actions", "drop")))) if x is not None]
    return {"table": int(kw.get("table", 0)), "priority": int(kw["priority"]), "match": norm_match(match), "actions": actions}


def _text_key(kw):
    return (int(kw.get("table", 0)), int(kw.get("priority", 1)), tuple(sorted((k, str(v)) for k, v in kw.items() if k not in ("table", "priority", "actions"))))


def _text_covers(pattern, flow):
    """Non-strict ``del-flows``: every field of the pattern is in the flow with that value."""
    for k, v in pattern.items():
        if k == "actions":
            continue
        if k == "table":
            if int(flow.get("table", 0)) != int(v):
                return False
            continue
        if k not in flow or str(flow[k]) != str(v):
            return False
    return True
