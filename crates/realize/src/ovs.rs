//! One Open vSwitch instance (ovsdb-server + ovs-vswitchd) in its own network
//! namespace and run directory, userspace datapath (`datapath_type=netdev`),
//! as `ovs-lab-notes.md` found to work without a kernel module or systemd:
//! one instance per namespace, `--disable-system`, `-O OpenFlow13` always,
//! `--timeout` on every `ovs-vsctl`.
//!
//! ovs-vswitchd learns the routes of its namespace from the kernel (no
//! `--disable-system-route`): VXLAN tunnel ports with `options:local_ip`
//! route through the userspace datapath only when `ovs/route` holds the
//! kernel's *local* route for that address, which `ovs/route/add` cannot
//! create (docs/lab.md, "VXLAN underlay").

use crate::cmd::{CmdError, run};
use dvr_plan::{Bridge, PortKind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A running OVS instance; stopped and cleaned up on drop.
#[derive(Debug)]
pub struct OvsInstance {
    /// Network namespace the daemons run in.
    pub netns: String,
    /// Run directory (database, sockets, pid files, logs).
    pub dir: PathBuf,
    /// Whether drop also deletes the namespace (we created it).
    owns_netns: bool,
    /// Leave the daemons running on drop (a lab outlives the command that built it).
    keep: bool,
}

/// The two daemons of an instance, told apart because either can die alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Daemon {
    /// The configuration database.
    OvsdbServer,
    /// The switch itself (datapath, OpenFlow tables).
    Vswitchd,
}

impl Daemon {
    /// Both, in start order.
    pub const ALL: [Daemon; 2] = [Daemon::OvsdbServer, Daemon::Vswitchd];

    /// The program name (and pid file stem).
    pub fn program(self) -> &'static str {
        match self {
            Daemon::OvsdbServer => "ovsdb-server",
            Daemon::Vswitchd => "ovs-vswitchd",
        }
    }
}

impl std::fmt::Display for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.program())
    }
}

const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

impl OvsInstance {
    /// Start OVS in namespace `netns` (created if missing) with state in `dir`.
    ///
    /// On failure it removes only what this call created (the namespace, the
    /// directory and the daemons in it) and leaves anything that was already
    /// there untouched: an error path must never destroy state it did not make.
    pub fn start(netns: &str, dir: &Path) -> Result<OvsInstance, CmdError> {
        let existing = run("ip", &["netns", "list"], &[], None)?;
        let owns_netns = !existing.lines().any(|l| l.split_whitespace().next() == Some(netns));
        if owns_netns {
            run("ip", &["netns", "add", netns], &[], None)?;
            run("ip", &["-n", netns, "link", "set", "lo", "up"], &[], None)?;
        }
        let created_dir = !dir.exists();
        let mut me = OvsInstance { netns: netns.to_string(), dir: dir.to_path_buf(), owns_netns, keep: true };
        match me.ensure_running() {
            Ok(_) => {
                me.keep = false;
                Ok(me)
            }
            Err(e) => {
                if created_dir {
                    // Every daemon with a pid file in a directory we created is ours.
                    me.stop();
                    let _ = std::fs::remove_dir_all(&me.dir);
                }
                if owns_netns {
                    let _ = run("ip", &["netns", "del", netns], &[], None);
                }
                Err(e)
            }
        }
    }

    /// Start whichever of the two daemons is not running (both for a new
    /// instance), keeping the database and everything else in place: a killed
    /// `ovs-vswitchd` or `ovsdb-server` comes back with the bridges and ports it
    /// had (flows are not persistent in OVS; the converge that follows reloads
    /// them). Returns the daemons started.
    pub fn ensure_running(&self) -> Result<Vec<Daemon>, CmdError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| CmdError::Spawn { cmd: format!("mkdir {}", self.dir.display()), source })?;
        let d = self.dir.display().to_string();
        let db = format!("{d}/conf.db");
        let fresh = !Path::new(&db).exists();
        if fresh {
            run("ovsdb-tool", &["create", &db, SCHEMA], &[], None)?;
        }
        let mut started = Vec::new();
        if !self.daemon_alive(Daemon::OvsdbServer) {
            self.run_env(
                "ip",
                &[
                    "netns",
                    "exec",
                    &self.netns,
                    "ovsdb-server",
                    &db,
                    &format!("--remote=punix:{d}/db.sock"),
                    &format!("--pidfile={d}/ovsdb-server.pid"),
                    &format!("--unixctl={d}/ovsdb-server.ctl"),
                    &format!("--log-file={d}/ovsdb-server.log"),
                    "--detach",
                ],
                None,
            )?;
            started.push(Daemon::OvsdbServer);
        }
        if fresh {
            self.vsctl_nowait(&["init"])?;
        }
        if !self.daemon_alive(Daemon::Vswitchd) {
            self.run_env(
                "ip",
                &[
                    "netns",
                    "exec",
                    &self.netns,
                    "ovs-vswitchd",
                    &format!("unix:{d}/db.sock"),
                    &format!("--pidfile={d}/ovs-vswitchd.pid"),
                    &format!("--unixctl={d}/ovs-vswitchd.ctl"),
                    &format!("--log-file={d}/ovs-vswitchd.log"),
                    "--detach",
                    "--disable-system",
                    "-vconsole:off",
                ],
                None,
            )?;
            started.push(Daemon::Vswitchd);
        }
        self.appctl(&["version"])?;
        Ok(started)
    }

    /// Whether a daemon of this instance runs: its pid file names a live
    /// (not zombie) process of that program. Cheaper than a round trip and,
    /// unlike one, it tells the two daemons apart.
    pub fn daemon_alive(&self, daemon: Daemon) -> bool {
        let Some(pid) = self.pid(daemon.program()) else { return false };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
        // "pid (comm) S …": comm is at most 15 characters.
        let comm = stat.split_once(" (").and_then(|(_, r)| r.rsplit_once(") ")).map(|(c, _)| c);
        let state = stat.rsplit_once(") ").map(|(_, r)| r.trim_start());
        let expected: String = daemon.program().chars().take(15).collect();
        comm == Some(expected.as_str()) && !state.is_some_and(|s| s.starts_with('Z') || s.starts_with('X'))
    }

    /// Reconnect to an instance a previous command started (left running).
    pub fn attach(netns: &str, dir: &Path) -> OvsInstance {
        OvsInstance { netns: netns.to_string(), dir: dir.to_path_buf(), owns_netns: false, keep: true }
    }

    /// Leave the daemons, namespace and directory in place on drop.
    pub fn keep(mut self) -> OvsInstance {
        self.keep = true;
        self
    }

    /// Whether both daemons run and vswitchd answers.
    pub fn alive(&self) -> bool {
        self.daemon_alive(Daemon::OvsdbServer) && self.daemon_alive(Daemon::Vswitchd) && self.appctl(&["version"]).is_ok()
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        let d = self.dir.display().to_string();
        vec![("OVS_RUNDIR", d.clone()), ("OVS_DBDIR", d.clone()), ("OVS_LOGDIR", d)]
    }

    fn run_env(&self, program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, CmdError> {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run(program, args, &env, stdin)
    }

    fn vsctl_nowait(&self, args: &[&str]) -> Result<String, CmdError> {
        let db = format!("--db=unix:{}/db.sock", self.dir.display());
        let mut all = vec!["--timeout=10", db.as_str(), "--no-wait"];
        all.extend_from_slice(args);
        self.run_env("ovs-vsctl", &all, None)
    }

    /// `ovs-vsctl` against this instance (waits for vswitchd, 10 s timeout).
    pub fn vsctl(&self, args: &[&str]) -> Result<String, CmdError> {
        let db = format!("--db=unix:{}/db.sock", self.dir.display());
        let mut all = vec!["--timeout=10", db.as_str()];
        all.extend_from_slice(args);
        self.run_env("ovs-vsctl", &all, None)
    }

    /// `ovs-ofctl -O OpenFlow13 …` against this instance; `stdin` feeds `-` files.
    pub fn ofctl(&self, args: &[&str], stdin: Option<&str>) -> Result<String, CmdError> {
        let mut all = vec!["-O", "OpenFlow13"];
        all.extend_from_slice(args);
        self.run_env("ovs-ofctl", &all, stdin)
    }

    /// `ovs-appctl -t <vswitchd ctl> …`.
    pub fn appctl(&self, args: &[&str]) -> Result<String, CmdError> {
        let ctl = format!("{}/ovs-vswitchd.ctl", self.dir.display());
        let mut all = vec!["-t", ctl.as_str()];
        all.extend_from_slice(args);
        self.run_env("ovs-appctl", &all, None)
    }

    /// Create a planned bridge with all its ports (patch ports with their
    /// peers; every other port as an internal port of the same name, enough
    /// for flows that name ports) in one transaction, and check OVS took it.
    pub fn add_bridge(&self, b: &Bridge) -> Result<(), CmdError> {
        let mut args: Vec<String> = vec![
            "--".into(),
            "add-br".into(),
            b.name.clone(),
            "--".into(),
            "set".into(),
            "bridge".into(),
            b.name.clone(),
            "datapath_type=netdev".into(),
            "fail_mode=secure".into(),
            "protocols=OpenFlow10,OpenFlow13".into(),
        ];
        for p in &b.ports {
            args.extend(["--".into(), "add-port".into(), b.name.clone(), p.name.clone()]);
            match &p.kind {
                PortKind::Patch { peer } => {
                    args.extend([
                        "--".into(),
                        "set".into(),
                        "interface".into(),
                        p.name.clone(),
                        "type=patch".into(),
                        format!("options:peer={peer}"),
                    ]);
                }
                PortKind::Vxlan { local_ip, remote_ip, dst_port } => {
                    args.extend([
                        "--".into(),
                        "set".into(),
                        "interface".into(),
                        p.name.clone(),
                        "type=vxlan".into(),
                        format!("options:local_ip={local_ip}"),
                        format!("options:remote_ip={remote_ip}"),
                        "options:key=flow".into(),
                        format!("options:dst_port={dst_port}"),
                    ]);
                }
                _ => args.extend(["--".into(), "set".into(), "interface".into(), p.name.clone(), "type=internal".into()]),
            }
            if let Some(tag) = p.tag {
                args.extend(["--".into(), "set".into(), "port".into(), p.name.clone(), format!("tag={tag}")]);
            }
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.vsctl(&refs)?;
        let err = self.vsctl(&["get", "interface", &b.name, "error"])?;
        if !err.trim().is_empty() && err.trim() != "[]" {
            return Err(CmdError::Failed { cmd: format!("add-br {}", b.name), status: "bridge error".into(), stderr: err });
        }
        Ok(())
    }

    /// Delete a bridge if it exists.
    pub fn del_bridge(&self, name: &str) -> Result<(), CmdError> {
        self.vsctl(&["--if-exists", "del-br", name]).map(|_| ())
    }

    /// The pid a daemon's pid file names (it may be stale).
    pub fn pid(&self, daemon: &str) -> Option<i32> {
        std::fs::read_to_string(self.dir.join(format!("{daemon}.pid"))).ok()?.trim().parse().ok()
    }

    /// Stop the daemons (vswitchd first) and wait until they are gone.
    pub fn stop(&self) {
        if self.daemon_alive(Daemon::Vswitchd) {
            let _ = self.appctl(&["exit"]);
        }
        for daemon in [Daemon::Vswitchd, Daemon::OvsdbServer] {
            // A stale pid file may name a pid reused by an unrelated process: kill only our daemon.
            if !self.daemon_alive(daemon) {
                continue;
            }
            let Some(pid) = self.pid(daemon.program()) else { continue };
            let _ = run("kill", &[&pid.to_string()], &[], None);
            let deadline = Instant::now() + Duration::from_secs(3);
            // A killed daemon stays a zombie until PID 1 reaps it: wait for state Z or gone.
            while Instant::now() < deadline && self.daemon_alive(daemon) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

impl Drop for OvsInstance {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        self.stop();
        if self.owns_netns {
            let _ = run("ip", &["netns", "del", &self.netns], &[], None);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
