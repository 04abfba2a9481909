//! The client side of `dvr server`: `dvr apply`, `dvr export`, and `--server`
//! on the file-based commands (the live state is read through the Neutron API
//! and turned into a topology file, so every command works on it unchanged).

pub mod apply;
pub mod bench;
pub mod client;
pub mod security;
pub mod state;

use anyhow::{Context, Result};
use client::Api;
use dvr_model::Topology;
use std::path::Path;

/// Where the live state is: the server URL and an optional static token.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ServerArg {
    /// A running `dvr server` (Neutron API) to work on instead of a file, e.g. http://127.0.0.1:9696.
    #[arg(long, value_name = "URL", global = true)]
    pub server: Option<String>,
    /// Static token sent as `X-Auth-Token` (servers started with `--auth token`).
    #[arg(long, value_name = "TOKEN", global = true)]
    pub token: Option<String>,
}

impl ServerArg {
    /// The API client, when `--server` was given.
    pub fn api(&self) -> Option<Api> {
        self.server.as_deref().map(|s| Api::new(s, self.token.clone()))
    }
}

/// The live deployment as a topology file (YAML v1); `name` overrides the
/// deployment name the server keeps.
pub fn export_yaml(api: &Api, name: Option<&str>) -> Result<String> {
    let spec = state::fetch_spec(api, name)?;
    Ok(serde_yaml_ng::to_string(&spec)?)
}

/// The live deployment, validated by the model as a file would be.
pub fn load(api: &Api) -> Result<Topology> {
    let label = format!("server {}", api.base());
    let spec = state::fetch_spec(api, None)?;
    dvr_model::build::build(&label, &spec).with_context(|| format!("the state on {} is not a valid deployment", api.base()))
}

/// `dvr apply -f FILE --server URL`: prints progress on stderr and the summary
/// (text or JSON) on stdout.
pub fn run_apply(file: &Path, api: &Api, json: bool) -> Result<()> {
    let yaml = std::fs::read_to_string(file).with_context(|| format!("cannot read topology file {}", file.display()))?;
    let label = file.display().to_string();
    let spec = dvr_model::parse_spec(&label, &yaml)?;
    let topo = dvr_model::build::build(&label, &spec)?;
    let t0 = std::time::Instant::now();
    let progress = |m: &str| eprintln!("apply [{:>6.1}s] {m}", t0.elapsed().as_secs_f64());
    let sum = apply::apply(api, &spec, &topo, &progress).with_context(|| format!("applying {label} to {}", api.base()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&sum)?);
    } else {
        print!("{}", sum.render());
    }
    Ok(())
}
