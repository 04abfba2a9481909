//! Namespace lifecycle and the few settings netlink does not cover: creating
//! and deleting namespaces (`ip netns`, which bind-mounts them under
//! `/run/netns`), sysctls, checksum offload, running a program inside one.
//! Devices, addresses, routes, rules and neighbours go through [`crate::netlink`].

use crate::cmd::{CmdError, run};

/// `ip -n NS ARGS…`.
pub fn ip_ns(ns: &str, args: &[&str]) -> Result<(), CmdError> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    run("ip", &all, &[], None).map(|_| ())
}

/// `ip ARGS…` in the current namespace.
pub fn ip(args: &[&str]) -> Result<(), CmdError> {
    run("ip", args, &[], None).map(|_| ())
}

/// Run a program inside a namespace.
pub fn exec(ns: &str, program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, CmdError> {
    let mut all = vec!["netns", "exec", ns, program];
    all.extend_from_slice(args);
    run("ip", &all, &[], stdin)
}

/// Names of all network namespaces (the bind mounts under `/run/netns`).
pub fn netns_list() -> Result<Vec<String>, CmdError> {
    let mut out: Vec<String> = match std::fs::read_dir("/run/netns") {
        Ok(d) => d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(source) => return Err(CmdError::Spawn { cmd: "read /run/netns".into(), source }),
    };
    out.sort();
    Ok(out)
}

/// Create a namespace with loopback up and IPv6 off (no NS/MLD noise).
pub fn netns_add(ns: &str) -> Result<(), CmdError> {
    ip(&["netns", "add", ns])?;
    ip_ns(ns, &["link", "set", "lo", "up"])?;
    sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")?;
    sysctl(ns, "net.ipv6.conf.default.disable_ipv6", "1")
}

/// Read a sysctl inside a namespace: `None` when the key does not exist
/// (its device or module is not there yet), an error when it cannot be read.
pub fn sysctl_get(ns: &str, key: &str) -> Result<Option<String>, CmdError> {
    match exec(ns, "sysctl", &["-n", key], None) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(CmdError::Failed { stderr, .. }) if stderr.contains("No such file or directory") && stderr.contains("/proc/sys/") => Ok(None),
        Err(e) => Err(e),
    }
}

/// Write a sysctl inside a namespace.
pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<(), CmdError> {
    exec(ns, "sysctl", &["-q", "-w", &format!("{key}={value}")], None).map(|_| ())
}

/// Device names in a namespace (over netlink).
pub fn link_names(ns: &str) -> Result<Vec<String>, CmdError> {
    Ok(crate::netlink::links(ns)?.into_keys().collect())
}

/// Turn off TX checksum offload: the userspace datapath passes TCP/UDP only then.
pub fn tx_off(ns: &str, dev: &str) -> Result<(), CmdError> {
    exec(ns, "ethtool", &["-K", dev, "tx", "off"], None).map(|_| ())
}
