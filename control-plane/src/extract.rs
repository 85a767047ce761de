//! HTTP extractors shared by every service module, whose rejections use the one error shape:
//! JSON bodies, paths and queries, and the client's address.

use std::net::IpAddr;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::App;
use crate::error::{Error, FieldError};

/// A JSON request body, read within the configured size limit and decoded with the path of
/// the offending field on error: malformed JSON is 400, a missing or mistyped field is 422
/// naming the field, an oversized body is 413, another content type is 415.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<App> for ApiJson<T> {
    type Rejection = Error;

    async fn from_request(request: Request, app: &App) -> Result<Self, Error> {
        let limit = app.config.limits.max_body_bytes;
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json"
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(Error::UnsupportedMediaType);
        }
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<usize>().ok());
        if declared.is_some_and(|length| length > limit) {
            return Err(Error::PayloadTooLarge { limit });
        }
        let bytes = axum::body::to_bytes(request.into_body(), limit)
            .await
            .map_err(|_| Error::PayloadTooLarge { limit })?;
        decode_json(&bytes).map(Self)
    }
}

/// Decodes `bytes` as `T`, classifying errors as [`ApiJson`] describes.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize::<_, T>(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if !inner.is_data() {
            return Error::BadRequest {
                code: "malformed_json",
                message: format!("The request body is not valid JSON: {inner}."),
            };
        }
        let text = strip_position(&inner.to_string());
        let parent = if path == "." { String::new() } else { path };
        let (field, code) = if let Some(name) = between_backticks(&text, "missing field ") {
            (join_path(&parent, &name), "required")
        } else if let Some(name) = between_backticks(&text, "unknown field ") {
            // The path already ends at the unknown field.
            let field = if parent.ends_with(&name) {
                parent
            } else {
                join_path(&parent, &name)
            };
            (field, "unknown_field")
        } else if text.starts_with("invalid type") {
            (parent, "wrong_type")
        } else {
            (parent, "invalid")
        };
        Error::Validation(vec![FieldError::new(field, code, text)])
    })?;
    deserializer.end().map_err(|error| Error::BadRequest {
        code: "malformed_json",
        message: format!("The request body is not valid JSON: {error}."),
    })?;
    Ok(value)
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

fn between_backticks(text: &str, prefix: &str) -> Option<String> {
    let rest = text.strip_prefix(prefix)?.strip_prefix('`')?;
    Some(rest.split('`').next()?.to_owned())
}

fn join_path(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}

/// Path parameters, with rejections in the one error shape.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|rejection: PathRejection| Error::BadRequest {
                code: "invalid_path",
                message: rejection.body_text(),
            })
    }
}

/// Query parameters, with rejections in the one error shape.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|rejection: QueryRejection| {
                Error::invalid("query", "invalid", rejection.body_text())
            })
    }
}

/// The client's address: the TCP peer, or, when the peer is a configured trusted proxy, the
/// nearest untrusted address of `Forwarded`/`X-Forwarded-For` (see `telemetry::client_addr`).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<App> for ClientAddr {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Error> {
        Ok(Self(telemetry::request_client_addr(
            parts,
            &app.config.trusted_proxies,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        card: Card,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Card {
        number: String,
    }

    fn field_error(json: &str) -> FieldError {
        match decode_json::<Body>(json.as_bytes()) {
            Err(Error::Validation(mut fields)) => fields.remove(0),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn classifies_json_errors() {
        assert!(matches!(
            decode_json::<Body>(b"{\"name\": "),
            Err(Error::BadRequest { .. })
        ));
        assert!(matches!(
            decode_json::<Body>(b"not json"),
            Err(Error::BadRequest { .. })
        ));
        assert!(matches!(
            decode_json::<Body>(b"{\"name\":\"a\",\"card\":{\"number\":\"1\"}} trailing"),
            Err(Error::BadRequest { .. })
        ));

        let missing = field_error(r#"{"card": {"number": "1"}}"#);
        assert_eq!((missing.field.as_str(), missing.code), ("name", "required"));
        let nested = field_error(r#"{"name": "x", "card": {}}"#);
        assert_eq!(
            (nested.field.as_str(), nested.code),
            ("card.number", "required")
        );
        let typed = field_error(r#"{"name": 5, "card": {"number": "1"}}"#);
        assert_eq!((typed.field.as_str(), typed.code), ("name", "wrong_type"));
        let unknown = field_error(r#"{"name": "x", "card": {"number": "1"}, "admin": true}"#);
        assert_eq!(
            (unknown.field.as_str(), unknown.code),
            ("admin", "unknown_field")
        );
    }
}
