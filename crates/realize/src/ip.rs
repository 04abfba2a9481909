//! Reading and changing network namespaces with iproute2. State is read as
//! JSON (`ip -j`), never by scraping text; changes are single, idempotent
//! commands (`replace` where the kernel offers it).

use crate::cmd::{CmdError, run};
use serde_json::Value;

/// `ip -n NS -j ARGS…` parsed; an empty answer is an empty list.
pub fn ip_json(ns: &str, args: &[&str]) -> Result<Value, CmdError> {
    let mut all = vec!["-n", ns, "-j"];
    all.extend_from_slice(args);
    let out = run("ip", &all, &[], None)?;
    if out.trim().is_empty() {
        return Ok(Value::Array(vec![]));
    }
    serde_json::from_str(&out).map_err(|e| CmdError::Failed {
        cmd: format!("ip {}", all.join(" ")),
        status: "bad JSON".into(),
        stderr: e.to_string(),
    })
}

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

/// Names of all network namespaces.
pub fn netns_list() -> Result<Vec<String>, CmdError> {
    let out = run("ip", &["-j", "netns", "list"], &[], None)?;
    if out.trim().is_empty() {
        return Ok(vec![]);
    }
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Array(vec![]));
    Ok(v.as_array().into_iter().flatten().filter_map(|n| n["name"].as_str().map(String::from)).collect())
}

/// Create a namespace with loopback up and IPv6 off (no NS/MLD noise).
pub fn netns_add(ns: &str) -> Result<(), CmdError> {
    ip(&["netns", "add", ns])?;
    ip_ns(ns, &["link", "set", "lo", "up"])?;
    sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")?;
    sysctl(ns, "net.ipv6.conf.default.disable_ipv6", "1")
}

/// Read a sysctl inside a namespace.
pub fn sysctl_get(ns: &str, key: &str) -> Option<String> {
    exec(ns, "sysctl", &["-n", key], None).ok().map(|s| s.trim().to_string())
}

/// Write a sysctl inside a namespace.
pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<(), CmdError> {
    exec(ns, "sysctl", &["-q", "-w", &format!("{key}={value}")], None).map(|_| ())
}

/// Link names in a namespace.
pub fn links(ns: &str) -> Result<Vec<Value>, CmdError> {
    Ok(ip_json(ns, &["link", "show"])?.as_array().cloned().unwrap_or_default())
}

/// Turn off TX checksum offload: the userspace datapath passes TCP/UDP only then.
pub fn tx_off(ns: &str, dev: &str) -> Result<(), CmdError> {
    exec(ns, "ethtool", &["-K", dev, "tx", "off"], None).map(|_| ())
}
