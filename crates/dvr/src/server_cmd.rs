//! `dvr server`: the Neutron-compatible API (crate `dvr-serve`), from flags.

use anyhow::{Context, Result};
use clap::ValueEnum;
use std::net::SocketAddr;
use std::path::PathBuf;

/// How clients authenticate.
#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// No authentication (meant for loopback).
    None,
    /// A static token from --token-file, sent as X-Auth-Token.
    Token,
}

/// Flags of `dvr server`.
#[derive(clap::Args)]
pub struct ServerArgs {
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:9696")]
    listen: SocketAddr,
    /// Store: sqlite:FILE (created if missing) or postgres://user@host/db.
    #[arg(long, default_value = "sqlite:dvr.db")]
    db: String,
    /// Authentication: none, or token (X-Auth-Token must match --token-file).
    #[arg(long, value_enum, default_value = "none")]
    auth: AuthMode,
    /// File holding the token for --auth token (surrounding whitespace ignored).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Neutron's dvr_base_mac as BASE/MASK: DVR MACs of hosts are allocated under it.
    #[arg(long, default_value = dvr_serve::DEFAULT_DVR_BASE_MAC)]
    dvr_base_mac: String,
    /// New routers are legacy (centralised) unless they ask for distributed
    /// (Neutron's router_distributed = False).
    #[arg(long)]
    legacy_routers: bool,
}

/// Start the server and serve until Ctrl-C or SIGTERM.
pub fn run(a: ServerArgs) -> Result<()> {
    let auth = match a.auth {
        AuthMode::None => dvr_serve::Auth::None,
        AuthMode::Token => {
            let path = a.token_file.context("--auth token needs --token-file FILE holding the token")?;
            let token = std::fs::read_to_string(&path).with_context(|| format!("--token-file {}: cannot read it", path.display()))?;
            let token = token.trim().to_string();
            anyhow::ensure!(!token.is_empty(), "--token-file {}: the file is empty; write the token into it", path.display());
            dvr_serve::Auth::Token(token)
        }
    };
    let config = dvr_serve::Config {
        listen: a.listen,
        db: a.db,
        auth,
        dvr_base_mac: dvr_serve::parse_base_mac(&a.dvr_base_mac)?,
        distributed_default: !a.legacy_routers,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    rt.block_on(dvr_serve::run(config))?;
    Ok(())
}
