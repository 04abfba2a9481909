//! `dvr collect`: dump one host into a directory, read-only, so that
//! `dvr import` can rebuild the twin from it elsewhere. Every file written
//! is listed in `manifest.json` with the exact command that produced it.
//!
//! Only commands that read are run: `ovs-vsctl list`, `ovs-ofctl dump-flows`,
//! `ip -j … show`, `iptables-save`, `sysctl` (reading). The layout is the one
//! `dvr_sim::import` reads: `ovs-{bridge,port,interface}.json`,
//! `flows-<bridge>.txt`, `netns-<ns>.{addr,route,rule,neigh}.json`,
//! `netns-<ns>.sysctl.txt`, `iptables-<ns>.txt`, `sysctl.txt`.

use crate::cmd::{CmdError, available, run};
use std::path::{Path, PathBuf};

/// Where the host's pieces are and how to reach them.
#[derive(Debug, Clone)]
pub struct Source {
    /// Host name recorded in the manifest.
    pub host: String,
    /// Environment for the OVS tools (`OVS_RUNDIR` … of a lab instance).
    pub ovs_env: Vec<(String, String)>,
    /// Arguments placed before every `ovs-vsctl` command (`--db=unix:…`).
    pub vsctl_args: Vec<String>,
    /// The host's root namespace (`None`: this process's namespace).
    pub root_ns: Option<String>,
    /// Namespace name prefix to strip for the dump (a lab's `P-host-H.`).
    pub ns_prefix: String,
}

impl Source {
    /// The machine this process runs on, as a Neutron host.
    pub fn local(host: &str) -> Source {
        Source { host: host.into(), ovs_env: vec![], vsctl_args: vec!["--timeout=10".into()], root_ns: None, ns_prefix: String::new() }
    }
}

/// One file of a dump.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    /// File name in the dump directory.
    pub file: String,
    /// The command that produced it, as it can be re-run.
    pub command: String,
}

/// What a collect wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Manifest {
    /// Host name.
    pub host: String,
    /// Files with their commands.
    pub files: Vec<Entry>,
    /// Commands that failed (the dump is partial; each with its error).
    pub errors: Vec<String>,
}

/// Why a collect failed.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// A command failed.
    #[error(transparent)]
    Cmd(#[from] CmdError),
    /// Open vSwitch could not be read: nothing to collect.
    #[error(
        "host `{host}`: cannot read Open vSwitch: {cause}\n    fix: run `dvr collect` as root on a host where ovs-vswitchd runs (for a `dvr lab`, use `dvr lab collect`)"
    )]
    Ovs {
        /// Host.
        host: String,
        /// The failed command (shown in the message, not chained).
        cause: CmdError,
    },
    /// The output directory could not be written.
    #[error("cannot write {path}: {source}\n    fix: pass a writable --out directory")]
    Write {
        /// Path.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
}

struct Run<'a> {
    src: &'a Source,
    out: PathBuf,
    manifest: Manifest,
}

fn shell_line(env: &[(String, String)], program: &str, args: &[String]) -> String {
    let mut parts: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.push(program.to_string());
    parts.extend(args.iter().map(|a| if a.contains([' ', '(', '|', '$', '\\']) { format!("'{a}'") } else { a.clone() }));
    parts.join(" ")
}

impl Run<'_> {
    fn exec(&self, program: &str, args: &[String], env: &[(String, String)]) -> Result<(String, String), CmdError> {
        let e: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        Ok((shell_line(env, program, args), run(program, &a, &e, None)?))
    }

    /// In a namespace (or the root one when `ns` is None).
    fn in_ns(&self, ns: Option<&str>, program: &str, args: &[&str]) -> Result<(String, String), CmdError> {
        match ns {
            Some(ns) => {
                let mut all: Vec<String> = vec!["netns".into(), "exec".into(), ns.into(), program.into()];
                all.extend(args.iter().map(|s| s.to_string()));
                self.exec("ip", &all, &[])
            }
            None => self.exec(program, &args.iter().map(|s| s.to_string()).collect::<Vec<_>>(), &[]),
        }
    }

    fn write(&mut self, file: &str, command: String, text: &str) -> Result<(), CollectError> {
        let path = self.out.join(file);
        std::fs::write(&path, text).map_err(|source| CollectError::Write { path: path.display().to_string(), source })?;
        self.manifest.files.push(Entry { file: file.into(), command });
        Ok(())
    }

    fn vsctl(&self, args: &[&str]) -> Result<(String, String), CmdError> {
        let mut all = self.src.vsctl_args.clone();
        all.extend(args.iter().map(|s| s.to_string()));
        self.exec("ovs-vsctl", &all, &self.src.ovs_env)
    }
}

/// The sysctls the twin reads, as one `sysctl` pattern.
const SYSCTL_PATTERN: &str = r"^net\.ipv4\.(ip_forward|conf\.[^.]+\.(proxy_arp|arp_ignore|rp_filter))$";

/// Neutron namespaces the import understands.
fn neutron_ns(name: &str) -> bool {
    ["qrouter-", "snat-", "fip-", "qdhcp-"].iter().any(|p| name.starts_with(p))
}

/// Dump one host into `out` (created if missing). Never changes the host.
pub fn collect(src: &Source, out: &Path) -> Result<Manifest, CollectError> {
    std::fs::create_dir_all(out).map_err(|source| CollectError::Write { path: out.display().to_string(), source })?;
    let mut r = Run { src, out: out.to_path_buf(), manifest: Manifest { host: src.host.clone(), files: vec![], errors: vec![] } };
    // Open vSwitch.
    for table in ["bridge", "port", "interface"] {
        let (cmd, text) =
            r.vsctl(&["--format=json", "list", table]).map_err(|cause| CollectError::Ovs { host: src.host.clone(), cause })?;
        r.write(&format!("ovs-{table}.json"), cmd, &text)?;
    }
    let (_, brs) = r.vsctl(&["list-br"])?;
    for br in brs.lines().map(str::trim).filter(|b| !b.is_empty()) {
        let args: Vec<String> = ["-O", "OpenFlow13", "dump-flows", br].iter().map(|s| s.to_string()).collect();
        let (cmd, text) = r.exec("ovs-ofctl", &args, &src.ovs_env)?;
        r.write(&format!("flows-{br}.txt"), cmd, &text)?;
    }
    // The root namespace's sysctls.
    match r.in_ns(src.root_ns.as_deref(), "sysctl", &["-a", "-r", SYSCTL_PATTERN]) {
        Ok((cmd, text)) => r.write("sysctl.txt", cmd, &text)?,
        Err(e) => r.manifest.errors.push(e.to_string()),
    }
    // Neutron namespaces.
    let mut names: Vec<String> = crate::ip::netns_list()?
        .into_iter()
        .filter(|n| n.strip_prefix(&src.ns_prefix).is_some_and(|x| !x.is_empty() && neutron_ns(x)))
        .collect();
    names.sort();
    let legacy = available("iptables-legacy-save");
    for ns in names {
        let short = ns.strip_prefix(&src.ns_prefix).unwrap_or(&ns).to_string();
        for (what, args) in [
            ("addr", vec!["-j", "addr", "show"]),
            ("route", vec!["-j", "route", "show", "table", "all"]),
            ("rule", vec!["-j", "rule", "show"]),
            ("neigh", vec!["-j", "neigh", "show"]),
        ] {
            let mut all: Vec<String> = vec!["-n".into(), ns.clone()];
            all.extend(args.iter().map(|s| s.to_string()));
            match r.exec("ip", &all, &[]) {
                Ok((cmd, text)) => r.write(&format!("netns-{short}.{what}.json"), cmd, &text)?,
                Err(e) => r.manifest.errors.push(e.to_string()),
            }
        }
        match r.in_ns(Some(&ns), "sysctl", &["-a", "-r", SYSCTL_PATTERN]) {
            Ok((cmd, text)) => r.write(&format!("netns-{short}.sysctl.txt"), cmd, &text)?,
            Err(e) => r.manifest.errors.push(e.to_string()),
        }
        // iptables-save shows the nf_tables backend; an agent (or the lab) using the
        // legacy backend is only seen by iptables-legacy-save: take the one with rules.
        let mut got = r.in_ns(Some(&ns), "iptables-save", &[]);
        if legacy
            && !got.as_ref().is_ok_and(|(_, t)| t.contains("\n-A "))
            && let Ok(l) = r.in_ns(Some(&ns), "iptables-legacy-save", &[])
            && l.1.contains("\n-A ")
        {
            got = Ok(l);
        }
        match got {
            Ok((cmd, text)) => r.write(&format!("iptables-{short}.txt"), cmd, &text)?,
            Err(e) => r.manifest.errors.push(e.to_string()),
        }
    }
    let m = serde_json::to_string_pretty(&r.manifest).expect("serialisable");
    let path = out.join("manifest.json");
    std::fs::write(&path, m).map_err(|source| CollectError::Write { path: path.display().to_string(), source })?;
    Ok(r.manifest)
}

/// The emulated hosts of a `dvr lab`, as collect sources: each host's OVS
/// instance (its run directory) and its namespaces `P-host-H.…`.
pub fn lab_sources(lab: &crate::Lab) -> Vec<Source> {
    let mut hosts: Vec<String> = std::fs::read_dir(lab.state.join("hosts"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect())
        .unwrap_or_default();
    hosts.sort();
    hosts
        .into_iter()
        .map(|h| {
            let ovs = lab.ovs(&h);
            let d = ovs.dir.display().to_string();
            Source {
                host: h.clone(),
                ovs_env: ["OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR"].iter().map(|k| (k.to_string(), d.clone())).collect(),
                vsctl_args: vec!["--timeout=10".into(), format!("--db=unix:{d}/db.sock")],
                root_ns: Some(lab.names.host_ns(&h)),
                ns_prefix: format!("{}.", lab.names.host_ns(&h)),
            }
        })
        .collect()
}

/// Collect every host of a lab into `out/<host>/`.
pub fn collect_lab(lab: &crate::Lab, out: &Path) -> Result<Vec<Manifest>, CollectError> {
    lab_sources(lab).iter().map(|s| collect(s, &out.join(&s.host))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_commands_are_rerunnable_shell_lines() {
        let env = vec![("OVS_RUNDIR".to_string(), "/run/x".to_string())];
        let args: Vec<String> = ["-a", "-r", SYSCTL_PATTERN].iter().map(|s| s.to_string()).collect();
        let line = shell_line(&env, "sysctl", &args);
        assert_eq!(line, format!("OVS_RUNDIR=/run/x sysctl -a -r '{SYSCTL_PATTERN}'"));
        assert!(neutron_ns("qrouter-1") && neutron_ns("fip-x") && !neutron_ns("vm-vm1") && !neutron_ns("dvr-host-compute1"));
    }
}
