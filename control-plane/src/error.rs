//! The control plane's error type and the one place where errors become HTTP responses:
//! every error body is `{"error": {status, code, message, fields}}`, with a stable
//! machine-readable `code`. Internal details go to the log, never to the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

/// One problem with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// The field's path in the request body (`email`, `card.number`); empty for the body itself.
    pub field: String,
    /// Stable code: `required`, `invalid`, `too_long`, `wrong_type`, `unknown_field`, …
    pub code: &'static str,
    /// What is wrong, for a person.
    pub message: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The HTTP status, repeated for clients that only see the body.
    pub status: u16,
    /// Stable machine-readable code, e.g. `email_taken`.
    pub code: String,
    /// What went wrong and, where it helps, what to do about it.
    pub message: String,
    /// Per-field problems (validation errors); empty otherwise.
    pub fields: Vec<FieldError>,
}

/// Everything a control-plane operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body is not valid JSON, or not the content type the endpoint takes (400).
    #[error("{message}")]
    BadRequest {
        /// Stable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// The body parsed but one or more fields are missing, of the wrong type or invalid (422).
    #[error("request has {} invalid field(s)", .0.len())]
    Validation(Vec<FieldError>),
    /// No credentials, or credentials that are not (or no longer) valid (401).
    #[error("{message}")]
    Unauthenticated {
        /// Stable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// The caller is known but may not do this (403).
    #[error("{message}")]
    Forbidden {
        /// Stable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// The thing does not exist, or the caller may not know that it does (404).
    #[error("{message}")]
    NotFound {
        /// Stable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// The request conflicts with the current state (409): a duplicate, a limit reached.
    #[error("{message}")]
    Conflict {
        /// Stable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// The payment provider refused the card (402).
    #[error("{message}")]
    PaymentRequired {
        /// Stable code: `card_declined`, `insufficient_funds`.
        code: &'static str,
        /// For the card holder.
        message: String,
    },
    /// A protocol precondition failed, e.g. an unsupported tus version (412).
    #[error("{message}")]
    PreconditionFailed {
        /// Stable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// A service this request needs (the host locator, a node) is not there (503).
    #[error("{message}")]
    Unavailable {
        /// Stable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// The thing exists but may not be served, e.g. a track taken down (451).
    #[error("{message}")]
    Blocked {
        /// Stable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// A tus chunk's checksum did not match; the chunk was dropped (460, tus's status).
    #[error("checksum mismatch")]
    ChecksumMismatch,
    /// The request body is larger than the configured limit (413).
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body is not JSON (415).
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    /// The route exists but not with this method (405).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Too many attempts; try again after the given number of seconds (429).
    #[error("too many attempts; retry after {retry_after_secs} s")]
    RateLimited {
        /// Seconds until the next attempt may succeed.
        retry_after_secs: u64,
    },
    /// A storage backend failed; the request changed nothing it reported.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Any other failure inside the service.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Shorthand for control-plane results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A 404 with a code and message.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::NotFound {
            code,
            message: message.into(),
        }
    }

    /// A 409 with a code and message.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }

    /// A 403 with a code and message.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::Forbidden {
            code,
            message: message.into(),
        }
    }

    /// A 401 with a code and message.
    pub fn unauthenticated(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unauthenticated {
            code,
            message: message.into(),
        }
    }

    /// A 422 for one field.
    pub fn invalid(
        field: impl Into<String>,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self::Validation(vec![FieldError::new(field, code, message)])
    }

    /// The status, code and client-facing message.
    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            Self::BadRequest { code, message } => (StatusCode::BAD_REQUEST, code, message.clone()),
            Self::Validation(fields) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                match fields.as_slice() {
                    [one] if one.field.is_empty() => one.message.clone(),
                    [one] => format!("{}: {}", one.field, one.message),
                    _ => "Several fields are invalid; see `fields`.".to_owned(),
                },
            ),
            Self::Unauthenticated { code, message } => {
                (StatusCode::UNAUTHORIZED, code, message.clone())
            }
            Self::Forbidden { code, message } => (StatusCode::FORBIDDEN, code, message.clone()),
            Self::NotFound { code, message } => (StatusCode::NOT_FOUND, code, message.clone()),
            Self::Conflict { code, message } => (StatusCode::CONFLICT, code, message.clone()),
            Self::PreconditionFailed { code, message } => {
                (StatusCode::PRECONDITION_FAILED, code, message.clone())
            }
            Self::Unavailable { code, message } => {
                (StatusCode::SERVICE_UNAVAILABLE, code, message.clone())
            }
            Self::Blocked { code, message } => (
                StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
                code,
                message.clone(),
            ),
            Self::ChecksumMismatch => (
                StatusCode::from_u16(460).expect("460 is a valid status"),
                "checksum_mismatch",
                "The chunk's checksum does not match its bytes; it was dropped. Send it again."
                    .to_owned(),
            ),
            Self::PaymentRequired { code, message } => {
                (StatusCode::PAYMENT_REQUIRED, code, message.clone())
            }
            Self::PayloadTooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("The request body is larger than the limit of {limit} bytes."),
            ),
            Self::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Send the body as JSON with `Content-Type: application/json`.".to_owned(),
            ),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "This endpoint does not take that method; see GET /api/v1/openapi.json.".to_owned(),
            ),
            Self::RateLimited { retry_after_secs } => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                format!("Too many attempts. Try again in {retry_after_secs} seconds."),
            ),
            Self::Store(StoreError::Unavailable(_)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "backend_unavailable",
                "A storage backend is unavailable; the request changed nothing. Retry shortly."
                    .to_owned(),
            ),
            Self::Store(_) | Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Something went wrong on our side; the error has been logged.".to_owned(),
            ),
        }
    }
}

impl Error {
    /// The status and body this error is answered with (stored for idempotent replays).
    pub fn to_body(&self) -> (StatusCode, ErrorBody) {
        let (status, code, message) = self.parts();
        let fields = match self {
            Self::Validation(fields) => fields.clone(),
            _ => Vec::new(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                status: status.as_u16(),
                code: code.to_owned(),
                message,
                fields,
            },
        };
        (status, body)
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, body) = self.to_body();
        if status.is_server_error() {
            tracing::error!(message = "Request failed.", error = %self, debug = ?self);
        }
        let mut response = (status, Json(body)).into_response();
        if let Self::RateLimited { retry_after_secs } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_details_stay_out_of_the_message() {
        let error = Error::Internal(anyhow::anyhow!("password=hunter2 in a stack trace"));
        let (status, code, message) = error.parts();
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(code, "internal_error");
        assert!(!message.contains("hunter2"));
    }

    #[test]
    fn rate_limit_sets_retry_after() {
        let response = Error::RateLimited {
            retry_after_secs: 42,
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "42");
    }
}
