//! Errors as Neutron answers them: `{"NeutronError": {"type", "message",
//! "detail"}}` with Neutron's status codes and type names, because clients
//! (the `openstack` CLI, openstacksdk) branch on them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// One API error: HTTP status, Neutron's error type and a message that names
/// the object and field at fault and how to fix it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind} ({status}): {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Neutron's exception name (`NetworkNotFound`, `IpAddressAlreadyAllocated`…).
    pub kind: &'static str,
    /// Human-readable message: Neutron's own wording where a client may
    /// match on it (e.g. "IP address … already allocated in subnet …").
    pub message: String,
    /// `NeutronError.detail`: what Neutron leaves empty; here the object and
    /// field at fault and how to fix it, when `message` is Neutron's terse one.
    pub detail: String,
}

impl ApiError {
    /// Any error.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, kind, message: message.into(), detail: String::new() }
    }
    /// The same error with `detail` set (the explanation behind Neutron's wording).
    pub fn with_detail(mut self, detail: impl Into<String>) -> ApiError {
        self.detail = detail.into();
        self
    }
    /// 400 `BadRequest`.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }
    /// 404 `<Resource>NotFound` with Neutron's message.
    pub fn not_found(kind: &'static str, what: &str, id: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, kind, format!("{what} {id} could not be found."))
    }
    /// 409 of some type.
    pub fn conflict(kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, kind, message)
    }
    /// 500 for store failures; the message says what failed.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"NeutronError": {"type": self.kind, "message": self.message, "detail": self.detail}});
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> ApiError {
        ApiError::internal(format!("the store failed: {e}; check the database given with --db"))
    }
}
