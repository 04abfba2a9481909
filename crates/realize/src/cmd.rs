//! Running external commands with errors that say which command failed and
//! what it printed, because "exit status 1" alone helps nobody.

use std::io::Write;
use std::process::{Command, Stdio};

/// A command that could not run or exited non-zero.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// The program could not be started (not installed?).
    #[error("cannot run `{cmd}`: {source} (is it installed? `.ci/run` installs openvswitch-switch, iproute2 and iptables)")]
    Spawn {
        /// The command line.
        cmd: String,
        /// OS error.
        source: std::io::Error,
    },
    /// The program exited with a failure status.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        cmd: String,
        /// Exit status.
        status: String,
        /// What it printed on stderr (and stdout when stderr was empty).
        stderr: String,
    },
}

/// Run `program args…` with extra environment and optional stdin; return stdout.
pub fn run(program: &str, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Result<String, CmdError> {
    let line = format!("{program} {}", args.join(" "));
    let mut c = Command::new(program);
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    c.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().map_err(|source| CmdError::Spawn { cmd: line.clone(), source })?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped");
        pipe.write_all(input.as_bytes()).map_err(|source| CmdError::Spawn { cmd: line.clone(), source })?;
    }
    let out = child.wait_with_output().map_err(|source| CmdError::Spawn { cmd: line.clone(), source })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(CmdError::Failed {
            cmd: line,
            status: out.status.to_string(),
            stderr: if stderr.is_empty() { stdout } else { stderr },
        });
    }
    Ok(stdout)
}

/// Whether a program is on PATH (used by tests to tell "not installed" apart).
pub fn available(program: &str) -> bool {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file())).unwrap_or(false)
}

/// Whether this process can drive real OVS and namespaces: every program in
/// `programs` is installed and we are root. `Err` says what is missing.
pub fn prerequisites(programs: &[&str]) -> Result<(), String> {
    for p in programs {
        if !available(p) {
            return Err(format!("`{p}` is not installed"));
        }
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")) {
        return Err("not running as root".into());
    }
    Ok(())
}
