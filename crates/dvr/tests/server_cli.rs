//! `dvr server` from the command line: it prints where it listens, serves the
//! API with token auth, refuses bad flags with a message naming the flag, and
//! stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

fn get(addr: &str, path: &str, token: Option<&str>) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = token.map(|t| format!("X-Auth-Token: {t}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn server_serves_with_token_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken\n").unwrap();
    let db = format!("sqlite:{}", dir.path().join("x.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_dvr"))
        .args(["server", "--listen", "127.0.0.1:0", "--db", &db, "--auth", "token", "--token-file"])
        .arg(&token)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.as_mut().unwrap()).read_line(&mut line).unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in `{line}`"))
        .to_string();
    let denied = get(&addr, "/v2.0/networks", None);
    assert!(denied.starts_with("HTTP/1.1 401"), "{denied}");
    let ok = get(&addr, "/v2.0/networks", Some("t0ken"));
    assert!(ok.starts_with("HTTP/1.1 200") && ok.contains("\"networks\":[]"), "{ok}");
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert!(status.success(), "exit after SIGTERM: {status}");
    assert!(dir.path().join("x.db").exists(), "the SQLite file was created");
}

#[test]
fn bad_flags_name_the_flag() {
    for (args, needle) in [
        (vec!["server", "--auth", "token"], "--token-file"),
        (vec!["server", "--db", "mysql://x", "--listen", "127.0.0.1:0"], "--db `mysql://x`"),
        (vec!["server", "--dvr-base-mac", "nonsense", "--listen", "127.0.0.1:0"], "--dvr-base-mac"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_dvr")).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: `{err}` lacks `{needle}`");
    }
}
