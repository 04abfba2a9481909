//! One Open vSwitch instance (ovsdb-server + ovs-vswitchd) in its own network
//! namespace and run directory, userspace datapath (`datapath_type=netdev`),
//! as `ovs-lab-notes.md` found to work without a kernel module or systemd:
//! one instance per namespace, `--disable-system`, `-O OpenFlow13` always,
//! `--timeout` on every `ovs-vsctl`.

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

const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

impl OvsInstance {
    /// Start OVS in namespace `netns` (created if missing) with state in `dir`.
    pub fn start(netns: &str, dir: &Path) -> Result<OvsInstance, CmdError> {
        let existing = run("ip", &["netns", "list"], &[], None)?;
        let owns_netns = !existing.lines().any(|l| l.split_whitespace().next() == Some(netns));
        if owns_netns {
            run("ip", &["netns", "add", netns], &[], None)?;
            run("ip", &["-n", netns, "link", "set", "lo", "up"], &[], None)?;
        }
        std::fs::create_dir_all(dir).map_err(|source| CmdError::Spawn { cmd: format!("mkdir {}", dir.display()), source })?;
        let me = OvsInstance { netns: netns.to_string(), dir: dir.to_path_buf(), owns_netns, keep: false };
        let d = me.dir.display().to_string();
        let db = format!("{d}/conf.db");
        if !Path::new(&db).exists() {
            run("ovsdb-tool", &["create", &db, SCHEMA], &[], None)?;
        }
        me.run_env(
            "ip",
            &[
                "netns",
                "exec",
                netns,
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
        me.vsctl_nowait(&["init"])?;
        me.run_env(
            "ip",
            &[
                "netns",
                "exec",
                netns,
                "ovs-vswitchd",
                &format!("unix:{d}/db.sock"),
                &format!("--pidfile={d}/ovs-vswitchd.pid"),
                &format!("--unixctl={d}/ovs-vswitchd.ctl"),
                &format!("--log-file={d}/ovs-vswitchd.log"),
                "--detach",
                "--disable-system",
                "--disable-system-route",
                "-vconsole:off",
            ],
            None,
        )?;
        me.appctl(&["version"])?;
        Ok(me)
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

    /// Whether the vswitchd of this instance answers.
    pub fn alive(&self) -> bool {
        self.appctl(&["version"]).is_ok()
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

    fn pid(&self, daemon: &str) -> Option<i32> {
        std::fs::read_to_string(self.dir.join(format!("{daemon}.pid"))).ok()?.trim().parse().ok()
    }

    /// Stop the daemons (vswitchd first) and wait until they are gone.
    pub fn stop(&self) {
        let _ = self.appctl(&["exit"]);
        for daemon in ["ovs-vswitchd", "ovsdb-server"] {
            if let Some(pid) = self.pid(daemon) {
                let _ = run("kill", &[&pid.to_string()], &[], None);
                let deadline = Instant::now() + Duration::from_secs(3);
                // A killed daemon stays a zombie until PID 1 reaps it: wait for state Z or gone.
                while Instant::now() < deadline {
                    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                        Ok(s) if !s.contains(") Z ") => std::thread::sleep(Duration::from_millis(10)),
                        _ => break,
                    }
                }
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
