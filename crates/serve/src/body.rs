//! Request bodies: Neutron's envelope (`{"network": {…}}`, bulk
//! `{"networks": […]}`), its attribute checks and its messages, e.g.
//! "Unrecognized attribute(s) 'foo'" and "Invalid input for cidr. Reason: …".

use crate::error::ApiError;
use axum::http::StatusCode;
use serde_json::{Map, Value};
use uuid::Uuid;

/// One object's attributes from a request body.
pub type Attrs = Map<String, Value>;

/// Parse JSON; malformed bodies answer 400 `HTTPBadRequest` as Neutron does.
pub fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "HTTPBadRequest", "Resource body required"));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "HTTPBadRequest", "Body contains invalid data").with_detail(format!("malformed JSON: {e}"))
    })
}

/// The objects of a POST body: one (`{"port": {…}}`) or bulk (`{"ports": […]}`).
pub fn objects(body: &Value, singular: &str, plural: &str) -> Result<(Vec<Attrs>, bool), ApiError> {
    let top = body.as_object().ok_or_else(|| ApiError::bad_request("Body contains invalid data: expected a JSON object"))?;
    if let Some(v) = top.get(plural) {
        let list = v.as_array().ok_or_else(|| ApiError::bad_request(format!("Invalid input: `{plural}` must be a list of objects")))?;
        let mut out = Vec::new();
        for item in list {
            out.push(
                item.as_object()
                    .cloned()
                    .ok_or_else(|| ApiError::bad_request(format!("Invalid input: every entry of `{plural}` must be an object")))?,
            );
        }
        return Ok((out, true));
    }
    match top.get(singular) {
        Some(Value::Object(m)) => Ok((vec![m.clone()], false)),
        Some(_) => Err(ApiError::bad_request(format!("Invalid input: `{singular}` must be an object"))),
        None => Err(ApiError::bad_request(format!("Unable to find '{singular}' in request body"))),
    }
}

/// The single object of a PUT body.
pub fn object(body: &Value, singular: &str) -> Result<Attrs, ApiError> {
    match body.as_object().and_then(|m| m.get(singular)) {
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(ApiError::bad_request(format!("Invalid input: `{singular}` must be an object"))),
        None => Err(ApiError::bad_request(format!("Unable to find '{singular}' in request body"))),
    }
}

/// Reject attributes outside `allowed` (Neutron: "Unrecognized attribute(s)"),
/// and those known but not writable in this method.
pub fn check_keys(a: &Attrs, allowed: &[&str], known_readonly: &[&str], method: &str) -> Result<(), ApiError> {
    let mut unknown: Vec<&str> = Vec::new();
    for k in a.keys() {
        if allowed.contains(&k.as_str()) {
            continue;
        }
        if known_readonly.contains(&k.as_str()) || k == "id" {
            // Neutron's own wording and type (webob's HTTPBadRequest).
            let message = if method == "PUT" {
                format!("Cannot update read-only attribute {k}")
            } else {
                format!("Attribute '{k}' not allowed in {method}")
            };
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "HTTPBadRequest", message));
        }
        unknown.push(k);
    }
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::BAD_REQUEST, "HTTPBadRequest", format!("Unrecognized attribute(s) '{}'", unknown.join(", "))))
    }
}

fn invalid(attr: &str, reason: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("Invalid input for {attr}. Reason: {reason}."))
}

/// A string attribute (null counts as absent).
pub fn string(a: &Attrs, k: &str) -> Result<Option<String>, ApiError> {
    match a.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            if s.len() > 255 {
                return Err(invalid(k, format!("'{}…' exceeds maximum length of 255", &s[..16])));
            }
            Ok(Some(s.clone()))
        }
        Some(v) => Err(invalid(k, format!("'{v}' is not a valid string"))),
    }
}

/// A boolean attribute; accepts Neutron's string forms ("true", "False").
pub fn boolean(a: &Attrs, k: &str) -> Result<Option<bool>, ApiError> {
    match a.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        // Neutron's converter raises InvalidInput, naming the value only; the
        // attribute goes in `detail`.
        Some(v) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidInput",
            format!(
                "Invalid input for operation: {} cannot be converted to boolean.",
                match v {
                    Value::String(s) => format!("'{s}'"),
                    v => v.to_string(),
                }
            ),
        )
        .with_detail(format!("attribute `{k}`: use true or false"))),
    }
}

/// An integer attribute (numbers or numeric strings).
pub fn integer(a: &Attrs, k: &str) -> Result<Option<u64>, ApiError> {
    match a.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| invalid(k, format!("'{n}' is not a non-negative integer"))),
        Some(Value::String(s)) => s.parse().map(Some).map_err(|_| invalid(k, format!("'{s}' is not an integer"))),
        Some(v) => Err(invalid(k, format!("'{v}' is not an integer"))),
    }
}

/// A UUID attribute.
pub fn uuid(a: &Attrs, k: &str) -> Result<Option<Uuid>, ApiError> {
    match string(a, k)? {
        None => Ok(None),
        Some(s) => Uuid::parse_str(&s).map(Some).map_err(|_| invalid(k, format!("'{s}' is not a valid UUID"))),
    }
}

/// A required UUID attribute.
pub fn required_uuid(a: &Attrs, k: &str, what: &str) -> Result<Uuid, ApiError> {
    uuid(a, k)?
        .ok_or_else(|| ApiError::bad_request(format!("Failed to parse request. Required attribute '{k}' not specified (the {what})")))
}

/// An IPv4 address attribute.
pub fn ipv4(a: &Attrs, k: &str) -> Result<Option<std::net::Ipv4Addr>, ApiError> {
    match string(a, k)? {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| invalid(k, format!("'{s}' is not a valid IPv4 address"))),
    }
}

/// Invalid-input error for callers that check values themselves.
pub fn bad_value(k: &str, reason: impl std::fmt::Display) -> ApiError {
    invalid(k, reason)
}
