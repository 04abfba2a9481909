//! A small blocking client for the Neutron v2.0 API (and dvr's `/v2.0/dvr/…`
//! extension). Blocking is enough at the CLI edge: `dvr apply` sends bulk
//! requests one after the other, so an async runtime would buy nothing here.

use serde_json::Value;
use std::time::Duration;

/// What went wrong talking to the server, with enough context (method, path,
/// Neutron's error type and message) for the user to act on it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The server answered with a 4xx/5xx status.
    #[error("{method} {path}: {status} {kind}: {message}")]
    Status {
        /// HTTP method.
        method: &'static str,
        /// Path and query.
        path: String,
        /// HTTP status code.
        status: u16,
        /// `NeutronError.type` (or the reason phrase when the body is not Neutron's).
        kind: String,
        /// `NeutronError.message` (or the body).
        message: String,
    },
    /// No answer at all (connection refused, timeout, bad JSON).
    #[error("{method} {url}: {cause} (is `dvr server` running there? start it with `dvr server --listen 127.0.0.1:9696` or fix --server)")]
    Transport {
        /// HTTP method.
        method: &'static str,
        /// Full URL.
        url: String,
        /// The transport error (not a `source`: its text is already in the message).
        cause: ureq::Error,
    },
}

impl ApiError {
    /// HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            ApiError::Transport { .. } => None,
        }
    }
}

/// One server endpoint (`http://127.0.0.1:9696`), optionally with a static token.
pub struct Api {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Api {
    /// A client for `base` (with or without a trailing `/`). The timeout bounds
    /// each request: a wedged server must not hang `dvr apply` forever.
    pub fn new(base: &str, token: Option<String>) -> Api {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .timeout_connect(Some(Duration::from_secs(5)))
            .build()
            .into();
        Api { base: base.trim_end_matches('/').to_string(), token, agent }
    }

    /// The server URL as given.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Result<Value, ApiError> {
        let text = self.send_text("GET", path, None)?;
        Self::json("GET", path, &text)
    }

    /// `GET path` as any Neutron client sends it: listing security groups
    /// this way creates the project's `default` group (every other call of
    /// this client asks the server not to, see `with_token`).
    pub fn get_creating_default_group(&self, path: &str) -> Result<Value, ApiError> {
        let url = format!("{}{path}", self.base);
        let mut r = self.agent.get(&url).header("Accept", "application/json");
        if let Some(t) = &self.token {
            r = r.header("X-Auth-Token", t);
        }
        let mut resp = r.call().map_err(|cause| ApiError::Transport { method: "GET", url: url.clone(), cause })?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().map_err(|cause| ApiError::Transport { method: "GET", url: url.clone(), cause })?;
        if status >= 400 {
            return Err(ApiError::Status { method: "GET", path: path.to_string(), status, kind: "Error".into(), message: text });
        }
        Self::json("GET", path, &text)
    }

    /// `GET path`, the body as text (for typed parsing that keeps key order).
    pub fn get_text(&self, path: &str) -> Result<String, ApiError> {
        self.send_text("GET", path, None)
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        self.send("POST", path, Some(body))
    }

    /// `PUT path` with a JSON body.
    pub fn put(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        self.send("PUT", path, Some(body))
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> Result<(), ApiError> {
        self.send_text("DELETE", path, None).map(|_| ())
    }

    fn send(&self, method: &'static str, path: &str, body: Option<&Value>) -> Result<Value, ApiError> {
        let text = self.send_text(method, path, body)?;
        Self::json(method, path, &text)
    }

    fn json(method: &'static str, path: &str, text: &str) -> Result<Value, ApiError> {
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(text).map_err(|e| ApiError::Status {
            method,
            path: path.to_string(),
            status: 200,
            kind: "BadJson".into(),
            message: format!("the answer is not JSON ({e})"),
        })
    }

    fn send_text(&self, method: &'static str, path: &str, body: Option<&Value>) -> Result<String, ApiError> {
        let url = format!("{}{path}", self.base);
        let transport = |cause| ApiError::Transport { method, url: url.clone(), cause };
        let mut resp = match (method, body) {
            ("GET", _) => self.with_token(self.agent.get(&url)).call(),
            ("DELETE", _) => self.with_token(self.agent.delete(&url)).call(),
            ("POST", Some(b)) => self.with_token(self.agent.post(&url)).send_json(b),
            ("PUT", Some(b)) => self.with_token(self.agent.put(&url)).send_json(b),
            ("POST", None) => self.with_token(self.agent.post(&url)).send_empty(),
            _ => self.with_token(self.agent.put(&url)).send_empty(),
        }
        .map_err(transport)?;
        let status = resp.status().as_u16();
        // Lists of 20,000 ports are far beyond ureq's 10 MB default limit.
        let text = resp.body_mut().with_config().limit(u64::MAX).read_to_string().map_err(transport)?;
        if status >= 400 {
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let e = &v["NeutronError"];
            let kind = e["type"].as_str().map(String::from).unwrap_or_else(|| resp.status().canonical_reason().unwrap_or("").into());
            let message = e["message"].as_str().map(String::from).unwrap_or_else(|| text.trim().chars().take(300).collect());
            return Err(ApiError::Status { method, path: path.to_string(), status, kind, message });
        }
        Ok(text)
    }

    fn with_token<B>(&self, r: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        // dvr's own reads never create a project's `default` security group
        // (listing groups does, as in Neutron; see dvr_serve::api::NO_DEFAULT_GROUP):
        // exporting or following a deployment must not turn its firewall on.
        let r = r.header("Accept", "application/json").header(dvr_serve::api::NO_DEFAULT_GROUP, "1");
        match &self.token {
            Some(t) => r.header("X-Auth-Token", t),
            None => r,
        }
    }
}
