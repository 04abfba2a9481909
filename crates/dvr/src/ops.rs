//! Operations on real deployments at the CLI edge: reading dump directories
//! (`dvr collect` output or the real-Neutron captures) for `dvr import`,
//! `dvr trace --dumps` and `dvr verify --dumps`.

use anyhow::{Context, Result, bail};
use dvr_sim::import::{HostDump, Imported, import};
use std::path::{Path, PathBuf};

/// Whether a directory holds one host's dump (its OVS tables are there).
fn is_host_dump(dir: &Path) -> bool {
    ["ovs-interface.json", "ovs-interfaces.txt"].iter().any(|f| dir.join(f).is_file())
}

fn read_host(dir: &Path) -> Result<HostDump> {
    let mut d = HostDump::default();
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot read dump directory {}", dir.display()))?.flatten() {
        if e.path().is_file() {
            let name = e.file_name().to_string_lossy().to_string();
            let text = std::fs::read_to_string(e.path()).with_context(|| format!("cannot read {}", e.path().display()))?;
            d.files.insert(name, text);
        }
    }
    let from_manifest = d
        .files
        .get("manifest.json")
        .and_then(|m| serde_json::from_str::<serde_json::Value>(m).ok())
        .and_then(|v| v["host"].as_str().map(String::from));
    d.host = from_manifest.unwrap_or_else(|| dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default());
    Ok(d)
}

/// Every host dump under the given directories: a directory is one host's
/// dump, or holds one sub-directory per host (what `dvr lab collect` writes
/// and how the real-Neutron captures are laid out).
pub fn load_dumps(dirs: &[PathBuf]) -> Result<Vec<HostDump>> {
    let mut out = vec![];
    for dir in dirs {
        if is_host_dump(dir) {
            out.push(read_host(dir)?);
            continue;
        }
        let mut subs: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read dump directory {}", dir.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir() && is_host_dump(p))
            .collect();
        subs.sort();
        if subs.is_empty() {
            bail!(
                "{} holds no host dump (no ovs-interface.json or ovs-interfaces.txt in it or in a sub-directory)\n    fix: pass what `dvr collect --out DIR` or `dvr lab collect --out DIR` wrote",
                dir.display()
            );
        }
        for s in subs {
            out.push(read_host(&s)?);
        }
    }
    let mut names: Vec<&str> = out.iter().map(|d| d.host.as_str()).collect();
    names.sort();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        bail!("host `{}` is dumped twice in the given directories\n    fix: pass each host's dump once", w[0]);
    }
    Ok(out)
}

/// Load and import.
pub fn import_dirs(dirs: &[PathBuf]) -> Result<Imported> {
    Ok(import(&load_dumps(dirs)?)?)
}

/// What `dvr import` prints: hosts, bridges, namespaces, instances, notes.
pub fn summary(imp: &Imported) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    for hp in &imp.plan.hosts {
        let mac = hp.dvr_mac.map(|m| format!(", DVR MAC {m}")).unwrap_or_default();
        let _ = writeln!(o, "host {} ({:?}{mac})", hp.host, hp.role);
        for b in &hp.bridges {
            let _ = writeln!(o, "  bridge {:<8} {} ports, {} flows", b.name, b.ports.len(), b.flows.len());
        }
        for n in &hp.namespaces {
            let nat: usize = n.iptables.iter().flat_map(|t| t.chains.iter()).map(|c| c.rules.len()).sum();
            let _ = writeln!(
                o,
                "  netns  {} ({} devices, {} routes, {} rules, {} neighbours, {nat} NAT rules)",
                n.name,
                n.devices.len(),
                n.routes.len(),
                n.rules.len(),
                n.neighbours.len()
            );
        }
    }
    let _ = writeln!(o, "instances:");
    for e in &imp.endpoints {
        let gw = e.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
        let _ = writeln!(o, "  {:<8} {:<18} {} on {}{gw}", e.name, e.addr.to_string(), e.mac, e.host);
    }
    if !imp.notes.is_empty() {
        let _ = writeln!(o, "notes ({}):", imp.notes.len());
        for n in &imp.notes {
            let _ = writeln!(o, "  - {n}");
        }
    }
    o
}

/// `, N commands failed (see manifest.json)` when a collect was partial.
pub fn errors_note(errors: &[String]) -> String {
    if errors.is_empty() { String::new() } else { format!(", {} commands failed (see manifest.json: errors)", errors.len()) }
}

/// `dvr verify` found a violation (exit status 1, the report is already printed).
#[derive(Debug)]
pub struct Violated;

impl std::fmt::Display for Violated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an invariant is violated")
    }
}

impl std::error::Error for Violated {}
