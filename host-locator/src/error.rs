//! The locator's errors and their one mapping to HTTP, in the error shape every Cadenza
//! daemon uses: `{"error": {status, code, message, fields}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A problem with one field of a request.
#[derive(Debug, Clone, Serialize)]
pub struct FieldError {
    /// The field (`lat`, `prefixes[2]`).
    pub field: String,
    /// Stable code.
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
}

/// Everything the locator's API can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or a field is invalid (400, with the fields).
    #[error("{message}")]
    BadRequest {
        /// Stable code.
        code: &'static str,
        /// Explanation.
        message: String,
        /// The offending fields.
        fields: Vec<FieldError>,
    },
    /// Missing or wrong node token (401).
    #[error("unauthorized")]
    Unauthorized,
    /// No such node (404).
    #[error("no such node")]
    NodeNotFound,
    /// No route (404).
    #[error("no such endpoint")]
    RouteNotFound,
    /// No node can serve the request (503).
    #[error("no node can serve this request")]
    NoNode,
    /// The body is larger than allowed (413).
    #[error("request body too large")]
    PayloadTooLarge,
}

impl Error {
    /// A 400 naming one field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = message.into();
        Self::BadRequest {
            code: "invalid_request",
            message: format!("{field}: {message}"),
            fields: vec![FieldError {
                field,
                code: "invalid",
                message,
            }],
        }
    }
}

#[derive(Serialize)]
struct Body {
    error: Detail,
}

#[derive(Serialize)]
struct Detail {
    status: u16,
    code: &'static str,
    message: String,
    fields: Vec<FieldError>,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code, message, fields) = match self {
            Self::BadRequest {
                code,
                message,
                fields,
            } => (StatusCode::BAD_REQUEST, code, message, fields),
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Send the node token as `Authorization: Bearer <token>`.".to_owned(),
                Vec::new(),
            ),
            Self::NodeNotFound => (
                StatusCode::NOT_FOUND,
                "node_not_found",
                "No such node; register it first.".to_owned(),
                Vec::new(),
            ),
            Self::RouteNotFound => (
                StatusCode::NOT_FOUND,
                "route_not_found",
                "No such endpoint.".to_owned(),
                Vec::new(),
            ),
            Self::NoNode => (
                StatusCode::SERVICE_UNAVAILABLE,
                "no_node",
                "No healthy node can serve this request right now; retry shortly.".to_owned(),
                Vec::new(),
            ),
            Self::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "The request body is too large.".to_owned(),
                Vec::new(),
            ),
        };
        let body = Body {
            error: Detail {
                status: status.as_u16(),
                code,
                message,
                fields,
            },
        };
        (status, Json(body)).into_response()
    }
}
