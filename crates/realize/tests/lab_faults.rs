//! The seed lab under faults and concurrency, on real Open vSwitch: each test
//! breaks one thing a real deployment loses (a daemon killed with `kill -9`, a
//! router or SNAT namespace deleted, NAT rules flushed, flows deleted), checks
//! that `status` names exactly what drifted (host, kind, item) and is not
//! clean, then that one `up` repairs it: `status` clean again and the affected
//! path pings. The repair time is printed (`--nocapture`). Two more cover two
//! `up` at once on one prefix, and `down` while a ping runs in the lab.
//!
//! Needs root, openvswitch-switch, iproute2, iptables, iputils-ping, ethtool:
//! `cargo test -p dvr-realize --test lab_faults -- --ignored` (as root, and
//! under `flock /tmp/dvr-real-ovs.lock` when others share the machine).

use dvr_realize::lab::{LabStatus, TearDown};
use dvr_realize::ovs::Daemon;
use dvr_realize::{Lab, cmd};
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One lab at a time: the tests of this file share two cores with the rest.
static SERIAL: Mutex<()> = Mutex::new(());

struct Fixture {
    guard: TearDown,
    topo: dvr_model::Topology,
    plan: dvr_plan::Plan,
}

impl Fixture {
    /// The seed lab, up and clean, under a prefix unique to this test.
    fn up(tag: &str) -> Fixture {
        let topo = dvr_model::seed();
        let plan = dvr_plan::plan(&topo, dvr_plan::Profile::Walkthrough).unwrap();
        let guard = TearDown(Lab::new(&format!("dvrf{}{tag}", std::process::id() % 10000)));
        guard.0.down().unwrap();
        guard.0.up(&topo, &plan, &mut |_| {}).unwrap_or_else(|e| panic!("lab up: {e}"));
        let f = Fixture { guard, topo, plan };
        let st = f.status();
        assert!(st.clean(), "a fresh lab is clean: {:?}", st.drift);
        f
    }

    fn lab(&self) -> &Lab {
        &self.guard.0
    }

    fn status(&self) -> LabStatus {
        self.lab().status(&self.topo, &self.plan, &mut |_| {}).unwrap()
    }

    /// `status` is not clean and names `kind` drift on `host` whose item contains `needle`.
    fn assert_drift(&self, host: &str, kind: &str, needle: &str) -> LabStatus {
        let st = self.status();
        assert!(!st.clean(), "status must not be clean after the fault");
        assert!(
            st.of_host(host).any(|d| d.kind == kind && d.item.contains(needle)),
            "status must name {host} {kind} `{needle}`; it said:\n{}",
            st.drift.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n")
        );
        st
    }

    /// One `up` repairs everything: it succeeds, `status` is clean, and each
    /// (from, to) pings. Returns the repair time.
    fn repair(&self, fault: &str, paths: &[(&str, &str)]) -> Duration {
        let t0 = Instant::now();
        let report = self.lab().up(&self.topo, &self.plan, &mut |_| {}).unwrap_or_else(|e| panic!("{fault}: lab up: {e}"));
        let took = t0.elapsed();
        let st = self.status();
        assert!(st.clean(), "{fault}: one `lab up` must leave no drift: {:?}", st.drift);
        for (from, to) in paths {
            let r = self.lab().ping(from, to.parse::<Ipv4Addr>().unwrap(), 3).unwrap();
            assert!(r.received >= 1, "{fault}: {from} -> {to} after repair:\n{}", r.output);
        }
        let ops: usize = report.ops.iter().map(|(_, o)| o.len()).sum();
        eprintln!("{fault}: repaired by one `lab up` in {} ms ({ops} operations)", took.as_millis());
        took
    }

    /// The pid file's pid of a daemon of `host`.
    fn daemon_pid(&self, host: &str, d: Daemon) -> String {
        self.lab().ovs(host).pid(d.program()).unwrap().to_string()
    }

    /// `kill -9` a daemon and wait until it is gone.
    fn kill9(&self, host: &str, d: Daemon) {
        cmd::run("kill", &["-9", &self.daemon_pid(host, d)], &[], None).unwrap();
        let ovs = self.lab().ovs(host);
        let deadline = Instant::now() + Duration::from_secs(5);
        while ovs.daemon_alive(d) {
            assert!(Instant::now() < deadline, "{d} of {host} survived kill -9");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn svc_ns(&self, host: &str, kind: &str) -> String {
        let p = format!("{}.{kind}-", self.lab().names.host_ns(host));
        self.lab().namespaces().unwrap().into_iter().find(|n| n.starts_with(&p)).unwrap()
    }
}

fn db_inode(lab: &Lab, host: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(lab.state.join("hosts").join(host).join("conf.db")).unwrap().ino()
}

#[test]
#[ignore = "needs root and Open vSwitch"]
fn killed_vswitchd_is_named_and_restarted() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let f = Fixture::up("v");
    let db = db_inode(f.lab(), "compute1");
    f.kill9("compute1", Daemon::Vswitchd);
    let st = f.assert_drift("compute1", "daemon", "ovs-vswitchd is not running");
    assert!(st.of_host("network").next().is_none() && st.of_host("compute2").next().is_none(), "only compute1 drifted");
    assert!(
        st.daemons
            .iter()
            .any(|(h, ds)| h == "compute1" && ds.contains(&(Daemon::Vswitchd, false)) && ds.contains(&(Daemon::OvsdbServer, true)))
    );
    f.repair("kill -9 ovs-vswitchd", &[("vm1", "192.168.1.20"), ("vm1", "192.168.2.20")]);
    assert_eq!(db_inode(f.lab(), "compute1"), db, "the host's database is the same file: nothing was deleted");
}

#[test]
#[ignore = "needs root and Open vSwitch"]
fn killed_ovsdb_server_is_named_and_restarted() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let f = Fixture::up("d");
    let db = db_inode(f.lab(), "compute1");
    f.kill9("compute1", Daemon::OvsdbServer);
    let st = f.assert_drift("compute1", "daemon", "ovsdb-server is not running");
    assert!(st.of_host("network").next().is_none() && st.of_host("compute2").next().is_none(), "only compute1 drifted");
    f.repair("kill -9 ovsdb-server", &[("vm1", "192.168.2.20"), ("vm1", "192.168.1.20")]);
    assert_eq!(db_inode(f.lab(), "compute1"), db, "the host's database is the same file: nothing was deleted");
}

#[test]
#[ignore = "needs root and Open vSwitch"]
fn deleted_qrouter_namespace_is_named_and_recreated() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let f = Fixture::up("q");
    let ns = f.svc_ns("compute1", "qrouter");
    cmd::run("ip", &["netns", "del", &ns], &[], None).unwrap();
    assert_eq!(f.lab().ping("vm1", "192.168.2.20".parse().unwrap(), 1).unwrap().received, 0, "routing is broken");
    f.assert_drift("compute1", "namespace", &format!("ip netns add {ns}"));
    f.assert_drift("compute1", "port", "add-port br-int qr-");
    f.repair("deleted qrouter namespace", &[("vm1", "192.168.2.20"), ("vm1", "192.168.1.1")]);
}

#[test]
#[ignore = "needs root and Open vSwitch"]
fn deleted_snat_namespace_converges_in_one_up() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let f = Fixture::up("s");
    let ns = f.svc_ns("network", "snat");
    cmd::run("ip", &["netns", "del", &ns], &[], None).unwrap();
    assert_eq!(f.lab().ping("vm2", "10.100.0.14".parse().unwrap(), 1).unwrap().received, 0, "SNAT is broken");
    f.assert_drift("network", "namespace", &format!("ip netns add {ns}"));
    // The re-added sg-/qg- ports get new OpenFlow numbers: the flows must follow in the same run.
    f.assert_drift("network", "flows", "ports re-added");
    f.repair("deleted snat namespace", &[("vm2", "10.100.0.14"), ("vm2", "192.168.2.20")]);
}

#[test]
#[ignore = "needs root and Open vSwitch"]
fn flushed_nat_is_named_and_restored() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let f = Fixture::up("n");
    let ns = f.svc_ns("compute1", "qrouter");
    cmd::run("ip", &["netns", "exec", &ns, "iptables-legacy", "-t", "nat", "-F"], &[], None).unwrap();
    assert_eq!(f.lab().ping("ext1", "10.100.0.7".parse().unwrap(), 1).unwrap().received, 0, "the floating IP is broken");
    let st = f.assert_drift("compute1", "nat", &ns);
    assert_eq!(st.drift.len(), 1, "only the NAT table drifted: {:?}", st.drift);
    let item = &st.drift[0].item;
    assert!(
        item.contains("planned rules/chains missing, 0 unexpected") && item.contains("e.g. missing `*nat -A "),
        "names the rules: {item}"
    );
    f.repair("flushed NAT", &[("ext1", "10.100.0.7"), ("vm1", "10.100.0.14")]);
}

#[test]
#[ignore = "needs root and Open vSwitch"]
fn deleted_flows_are_named_and_reloaded() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let f = Fixture::up("f");
    f.lab().ovs("compute1").ofctl(&["del-flows", "br-int"], None).unwrap();
    assert_eq!(f.lab().ping("vm1", "192.168.1.20".parse().unwrap(), 1).unwrap().received, 0, "br-int forwards nothing");
    let want = f.plan.hosts.iter().find(|h| h.host == "compute1").unwrap().bridges.iter().find(|b| b.name == "br-int").unwrap().flows.len();
    let st = f.assert_drift("compute1", "flows", &format!("{want} planned flows missing, 0 unexpected"));
    assert_eq!(st.drift.len(), 1, "only br-int's flows drifted: {:?}", st.drift);
    f.repair("deleted flows", &[("vm1", "192.168.1.20"), ("vm1", "192.168.2.20")]);
}

#[test]
#[ignore = "needs root and Open vSwitch"]
fn two_concurrent_ups_take_turns() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let topo = dvr_model::seed();
    let plan = dvr_plan::plan(&topo, dvr_plan::Profile::Walkthrough).unwrap();
    let guard = TearDown(Lab::new(&format!("dvrf{}c", std::process::id() % 10000)));
    let lab = &guard.0;
    lab.down().unwrap();
    let t0 = Instant::now();
    let (a, b) = std::thread::scope(|s| {
        let first = s.spawn(|| {
            let mut said = Vec::new();
            let r = lab.up(&topo, &plan, &mut |m| said.push(m.to_string()));
            (r.map(|r| r.ops.iter().map(|(_, o)| o.len()).sum::<usize>()), said)
        });
        std::thread::sleep(Duration::from_millis(200));
        let second = s.spawn(|| {
            let mut said = Vec::new();
            let r = lab.up(&topo, &plan, &mut |m| said.push(m.to_string()));
            (r.map(|r| r.ops.iter().map(|(_, o)| o.len()).sum::<usize>()), said)
        });
        (first.join().unwrap(), second.join().unwrap())
    });
    let (ops_a, ops_b) = (a.0.unwrap_or_else(|e| panic!("first up: {e}")), b.0.unwrap_or_else(|e| panic!("second up: {e}")));
    assert!(ops_a > 100, "the first up built the lab ({ops_a} operations)");
    assert_eq!(ops_b, 0, "the second up waited and then found nothing to do");
    assert!(b.1.first().is_some_and(|m| m.contains("waiting for it to finish")), "the second said it waits: {:?}", b.1);
    let st = lab.status(&topo, &plan, &mut |_| {}).unwrap();
    assert!(st.clean(), "{:?}", st.drift);
    assert_eq!(st.namespaces, 20, "exactly the seed lab's namespaces");
    assert!(lab.ping("vm1", "192.168.2.20".parse().unwrap(), 2).unwrap().received >= 1);
    eprintln!("two concurrent `lab up`: both succeeded, the second waited; {} ms in all", t0.elapsed().as_millis());
}

#[test]
#[ignore = "needs root and Open vSwitch"]
fn down_during_ping_leaves_nothing() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let f = Fixture::up("p");
    let ns = f.lab().names.ep_ns("vm1");
    let mut ping = std::process::Command::new("ip")
        .args(["netns", "exec", &ns, "ping", "-n", "-c", "100", "-i", "0.2", "192.168.2.20"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert!(ping.try_wait().unwrap().is_none(), "ping runs");
    let left = f.lab().leftovers();
    assert!(left.iter().any(|l| l.contains("(ping) in") && l.contains(&ns)), "the leftover check sees the ping: {left:?}");
    let t0 = Instant::now();
    let removed = f.lab().down().unwrap();
    let took = t0.elapsed();
    assert!(removed.iter().any(|r| r.contains(&format!("process {} (ping) in {ns}", ping.id()))), "down ended the ping: {removed:?}");
    let status = ping.wait().unwrap();
    assert!(!status.success(), "ping was ended, not finished: {status:?}");
    let left = f.lab().leftovers();
    assert!(left.is_empty(), "left behind: {left:?}");
    eprintln!("lab down during ping: {} ms, ping ended ({status})", took.as_millis());
}

#[test]
#[ignore = "needs root and Open vSwitch"]
fn a_failed_read_of_host_state_is_an_error_not_absent() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let f = Fixture::up("r");
    let host_ns = f.lab().names.host_ns("compute1");
    // Positive controls: a key that exists reads as a value, one that does not as absent.
    assert!(dvr_realize::ip::sysctl_get(&host_ns, "net.ipv4.ip_forward").unwrap().is_some());
    assert_eq!(dvr_realize::ip::sysctl_get(&host_ns, "net.ipv4.conf.no-such-dev.forwarding").unwrap(), None);
    // A namespace that vanished between listing and reading: every reader fails
    // (before, sysctl and the netlink readers said "absent", and up recreated things).
    let gone = f.svc_ns("compute1", "fip");
    cmd::run("ip", &["netns", "del", &gone], &[], None).unwrap();
    assert!(dvr_realize::ip::sysctl_get(&gone, "net.ipv4.ip_forward").is_err());
    assert!(dvr_realize::netlink::links(&gone).is_err());
    assert!(dvr_realize::netlink::routes(&gone).is_err());
    assert!(dvr_realize::netlink::rules(&gone).is_err());
    assert!(dvr_realize::netlink::neighbours(&gone).is_err());
    // With its OVS database gone, a host's bridges are unreadable, not "none".
    f.kill9("compute1", Daemon::OvsdbServer);
    let st = f.status();
    assert!(st.of_host("compute1").any(|d| d.kind == "unreadable"), "{:?}", st.drift);
    assert!(!st.of_host("compute1").any(|d| d.kind == "bridge"), "no bridge is reported missing: {:?}", st.drift);
    f.repair("unreadable host state", &[("vm1", "192.168.2.20")]);
}

#[test]
#[ignore = "needs root and Open vSwitch"]
fn deleted_host_namespace_is_named_and_rebuilt() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let f = Fixture::up("h");
    let hns = f.lab().names.host_ns("compute2");
    cmd::run("ip", &["netns", "del", &hns], &[], None).unwrap();
    f.assert_drift("compute2", "namespace", &format!("{hns} is missing"));
    f.repair("deleted host namespace", &[("vm1", "192.168.2.20"), ("vm1", "192.168.1.20"), ("vm5", "10.100.0.14")]);
}
