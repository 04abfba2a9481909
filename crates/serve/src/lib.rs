//! # dvr-serve: `dvr server`, a Neutron v2.0-compatible API over a real store
//!
//! Tenants and tools (the `openstack` client, openstacksdk, `dvr apply`)
//! create networks, subnets, ports, routers and floating IPs through
//! Neutron's API; the server validates every change with the model crate's
//! own rules (the state after the change is built as a topology file), keeps
//! what the model allocated so nothing is ever renumbered, and records each
//! change in a gap-free change log agents follow.
//!
//! Modules: [`resources`] (Neutron objects as data), [`convert`] (objects →
//! topology file, shared with `dvr export`), [`logic`] (validation, error
//! mapping, write-back), [`mutate`] (per-collection requests), [`store`]
//! (SQLite/PostgreSQL, revisions, change log), [`api`] (routes).
#![forbid(unsafe_code)]

pub mod api;
pub mod body;
pub mod convert;
pub mod error;
pub mod logic;
pub mod mutate;
pub mod resources;
pub mod sg;
pub mod store;

pub use convert::resources_to_spec;
pub use resources::Resources;

use dvr_model::MacAddr;
use std::net::SocketAddr;
use std::sync::Arc;

/// How the API authenticates requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No authentication (the default, meant for loopback).
    None,
    /// A static token: `X-Auth-Token` must equal it.
    Token(String),
}

/// Server configuration (what `dvr server` flags set).
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// `sqlite:FILE` or `postgres://…`.
    pub db: String,
    /// Authentication.
    pub auth: Auth,
    /// Neutron's `dvr_base_mac` and its mask.
    pub dvr_base_mac: (MacAddr, MacAddr),
    /// Default of `distributed` for new routers (Neutron's `router_distributed`).
    pub distributed_default: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 9696)),
            db: "sqlite:dvr.db".into(),
            auth: Auth::None,
            dvr_base_mac: parse_base_mac(DEFAULT_DVR_BASE_MAC).expect("the default is valid"),
            distributed_default: true,
        }
    }
}

/// Neutron's default `dvr_base_mac`, with its mask.
pub const DEFAULT_DVR_BASE_MAC: &str = "fa:16:3f:00:00:00/ff:ff:ff:00:00:00";

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The listen address could not be bound.
    #[error("--listen {addr}: cannot listen: {source}; pick a free port or stop what uses it")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("serving HTTP failed: {0}")]
    Serve(std::io::Error),
    /// `--dvr-base-mac` does not parse.
    #[error("--dvr-base-mac `{0}`: expected BASE/MASK like fa:16:3f:00:00:00/ff:ff:ff:00:00:00")]
    BaseMac(String),
}

/// Parse `BASE/MASK` (Neutron writes them as two MACs).
pub fn parse_base_mac(s: &str) -> Result<(MacAddr, MacAddr), ServeError> {
    let (b, m) = s.split_once('/').unwrap_or((s, "ff:ff:ff:00:00:00"));
    match (b.parse::<MacAddr>(), m.parse::<MacAddr>()) {
        (Ok(b), Ok(m)) if !b.is_multicast() => Ok((b, m)),
        _ => Err(ServeError::BaseMac(s.to_string())),
    }
}

/// A server running inside this process (tests, benchmarks).
pub struct Running {
    /// The bound address (the real port when 0 was asked).
    pub addr: SocketAddr,
    /// The store, for tests that look underneath the API.
    pub store: Arc<store::Store>,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
    /// Set to `true` to stop: ends pending long-polls and the listener.
    stop: tokio::sync::watch::Sender<bool>,
}

impl Running {
    /// The base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop serving: pending change-log long-polls answer at once, the
    /// listener closes, and this returns when every open request is done.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Open the store, bind, and serve in a background task; returns once the
/// socket is listening.
pub async fn start(config: Config) -> Result<Running, ServeError> {
    let store = store::Store::open(&config.db).await?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let app = api::App {
        store: store.clone(),
        settings: Arc::new(mutate::Settings {
            distributed_default: config.distributed_default,
            dvr_base: config.dvr_base_mac.0,
            dvr_mask: config.dvr_base_mac.1,
        }),
        token: match &config.auth {
            Auth::None => None,
            Auth::Token(t) => Some(Arc::new(t.clone())),
        },
        shutdown: shutdown.clone(),
    };
    let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|source| ServeError::Bind { addr: config.listen, source })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind { addr: config.listen, source })?;
    let router = api::router(app);
    let mut rx = shutdown;
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = rx.wait_for(|stop| *stop).await;
            })
            .await
            .map_err(ServeError::Serve)
    });
    Ok(Running { addr, store, task, stop })
}

/// Run the server until Ctrl-C / SIGTERM (what `dvr server` does). The
/// signal handlers are installed before the address is announced, so a
/// supervisor that stops the server right after it started is obeyed.
pub async fn run(config: Config) -> Result<(), ServeError> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(ServeError::Serve)?;
    let ctrl_c = tokio::signal::ctrl_c();
    let running = start(config).await?;
    eprintln!("dvr server: Neutron API on {} (store at revision {})", running.url(), running.store.snapshot().revision);
    #[cfg(unix)]
    let term = term.recv();
    #[cfg(not(unix))]
    let term = std::future::pending::<Option<()>>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    running.stop().await;
    Ok(())
}
