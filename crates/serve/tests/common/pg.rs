//! A throw-away PostgreSQL 15 cluster under a temp dir (initdb + pg_ctl),
//! owned by `nobody` when we are root (initdb refuses root), on a free
//! loopback port; stopped and removed on drop.

use std::path::PathBuf;
use std::process::Command;

pub struct Pg {
    pub url: String,
    dir: tempfile::TempDir,
    as_nobody: bool,
}

const BIN: &str = "/usr/lib/postgresql/15/bin";

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

fn run(as_nobody: bool, args: &[&str]) -> std::process::Output {
    let mut c = if as_nobody {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--"]);
        c.args(args);
        c
    } else {
        let mut c = Command::new(args[0]);
        c.args(&args[1..]);
        c
    };
    c.output().unwrap_or_else(|e| panic!("cannot run {args:?}: {e} (PostgreSQL 15 server binaries are expected under {BIN})"))
}

impl Pg {
    pub fn start() -> Pg {
        assert!(PathBuf::from(BIN).join("initdb").exists(), "PostgreSQL 15 is not installed under {BIN}: apt-get install postgresql-15");
        let dir = tempfile::tempdir().unwrap();
        let as_nobody = is_root();
        if as_nobody {
            Command::new("chown").args(["-R", "nobody", dir.path().to_str().unwrap()]).status().unwrap();
            Command::new("chmod").args(["755", dir.path().to_str().unwrap()]).status().unwrap();
        }
        let data = dir.path().join("data");
        let out = run(
            as_nobody,
            &[&format!("{BIN}/initdb"), "-D", data.to_str().unwrap(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
        );
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let opts = format!("-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c max_connections=200", dir.path().display());
        let log = dir.path().join("pg.log");
        let out = run(
            as_nobody,
            &[&format!("{BIN}/pg_ctl"), "-D", data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-o", &opts, "-w", "-t", "30", "start"],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {} {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Pg { url: format!("postgres://postgres@127.0.0.1:{port}/postgres"), dir, as_nobody }
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = run(self.as_nobody, &[&format!("{BIN}/pg_ctl"), "-D", data.to_str().unwrap(), "-m", "immediate", "-w", "stop"]);
    }
}
