//! The one error type of the API and its JSON envelope: status and `error` code come from one
//! table ([`ApiError::status_and_code`]); 5xx bodies say nothing internal.

use std::fmt;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use visitor_domain::ValidationErrors;
use visitor_store::{Cause, StoreError};

/// Seconds a client should wait before retrying when storage is unavailable.
pub const RETRY_AFTER_SECONDS: u32 = 5;
/// Seconds a client should wait before retrying a request whose idempotency key is in use.
pub const KEY_IN_USE_RETRY_AFTER_SECONDS: u32 = 1;

/// Everything a request can fail with, as the client sees it.
#[derive(Debug)]
pub enum ApiError {
    /// The body is not JSON or not an object, or the path id or a header is malformed.
    BadRequest(String),
    /// List's query parameters are wrong; every offending parameter is named.
    BadQuery(ValidationErrors),
    /// No credentials, another scheme, or an unknown token.
    Unauthorized,
    /// A known token whose role may not do this.
    Forbidden,
    /// No visitor with that id.
    RecordNotFound,
    /// No webhook with that id.
    WebhookNotFound,
    /// No such route.
    NotFound,
    /// A known path with another method; holds the allowed methods.
    MethodNotAllowed(&'static str),
    /// `external_id` is already used by another visitor.
    Conflict,
    /// The idempotency key is held by a request that is still running.
    IdempotencyKeyInUse,
    /// The idempotency key was used with another body.
    IdempotencyKeyMismatch,
    /// `If-Match` names no current version of the visitor.
    PreconditionFailed,
    /// The body is over the limit; holds the limit, in bytes.
    PayloadTooLarge(usize),
    /// A body that is not declared as the media type the operation takes; holds that type.
    UnsupportedMediaType(&'static str),
    /// The body breaks visitor rules; every offending key is named.
    RecordInvalid(ValidationErrors),
    /// Over a rate limit (§8.5); holds the whole seconds to wait.
    TooManyRequests(u64),
    /// This instance is draining before it stops (`/readyz` only).
    Draining,
    /// Storage cannot be reached now.
    ServiceUnavailable(Cause),
    /// A bug. The cause goes to the log, never to the client.
    Internal(Cause),
}

/// The media type of every body but an import's.
pub const JSON: &str = "application/json";

/// The JSON body of every error response.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub error: &'static str,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<&'a ValidationErrors>,
}

impl ApiError {
    pub fn internal(cause: impl Into<Cause>) -> Self {
        Self::Internal(cause.into())
    }

    /// The status and stable `error` code of each variant: the one table of the envelope.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(_) | Self::BadQuery(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            Self::Forbidden => (StatusCode::FORBIDDEN, "Forbidden"),
            Self::RecordNotFound | Self::WebhookNotFound => {
                (StatusCode::NOT_FOUND, "RecordNotFound")
            }
            Self::NotFound => (StatusCode::NOT_FOUND, "NotFound"),
            Self::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
            Self::Conflict => (StatusCode::CONFLICT, "Conflict"),
            Self::IdempotencyKeyInUse => (StatusCode::CONFLICT, "IdempotencyKeyInUse"),
            Self::IdempotencyKeyMismatch => {
                (StatusCode::UNPROCESSABLE_ENTITY, "IdempotencyKeyMismatch")
            }
            Self::PreconditionFailed => (StatusCode::PRECONDITION_FAILED, "PreconditionFailed"),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge"),
            Self::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType")
            }
            Self::RecordInvalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "RecordInvalid"),
            Self::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests"),
            Self::Draining | Self::ServiceUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable")
            }
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        }
    }

    /// The sentence for people in the envelope.
    pub fn description(&self) -> String {
        match self {
            Self::BadRequest(reason) => reason.clone(),
            Self::BadQuery(_) => "Invalid query parameters".into(),
            Self::Unauthorized => {
                "a valid bearer token is required (Authorization: Bearer <token>)".into()
            }
            Self::Forbidden => "this operation is allowed for administrators only".into(),
            Self::RecordNotFound => "no visitor has that id".into(),
            Self::WebhookNotFound => "no webhook has that id".into(),
            Self::NotFound => "no such route".into(),
            Self::MethodNotAllowed(allow) => format!("method not allowed here; allowed: {allow}"),
            Self::Conflict => "external_id is already used by another visitor".into(),
            Self::IdempotencyKeyInUse => {
                "a request with this Idempotency-Key is still running; retry after the number of seconds in Retry-After".into()
            }
            Self::IdempotencyKeyMismatch => {
                "this Idempotency-Key was used with another request body".into()
            }
            Self::PreconditionFailed => {
                "If-Match names no current version of the visitor, so nothing changed; fetch it again".into()
            }
            Self::PayloadTooLarge(limit) => format!("the body is over the limit of {limit} bytes"),
            Self::UnsupportedMediaType(JSON) => {
                "the body must be JSON (Content-Type: application/json)".into()
            }
            Self::UnsupportedMediaType(other) => {
                format!("the body must be {other} (Content-Type: {other})")
            }
            Self::RecordInvalid(_) => "Record validation errors".into(),
            Self::TooManyRequests(_) => {
                "too many requests; retry after the number of seconds in Retry-After".into()
            }
            Self::Draining => {
                "this instance is stopping; send requests to another instance".into()
            }
            Self::ServiceUnavailable(_) => {
                "storage is unavailable; retry after the number of seconds in Retry-After".into()
            }
            Self::Internal(_) => "an internal error occurred; the log has the details".into(),
        }
    }

    /// The envelope sent for this error.
    pub fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            error: self.status_and_code().1,
            description: self.description(),
            details: match self {
                Self::RecordInvalid(errors) | Self::BadQuery(errors) => Some(errors),
                _ => None,
            },
        }
    }

    /// The cause kept for the log, for the 5xx variants.
    pub fn cause(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::ServiceUnavailable(cause) | Self::Internal(cause) => Some(cause.as_ref()),
            _ => None,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (status, code) = self.status_and_code();
        write!(f, "{} {code}: {}", status.as_u16(), self.description())
    }
}

impl std::error::Error for ApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause()
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status_and_code().0
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        match self {
            Self::Unauthorized => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            Self::MethodNotAllowed(allow) if !allow.is_empty() => {
                response.insert_header((header::ALLOW, HeaderValue::from_static(allow)));
            }
            Self::ServiceUnavailable(_) => {
                response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECONDS));
            }
            Self::IdempotencyKeyInUse => {
                response.insert_header((header::RETRY_AFTER, KEY_IN_USE_RETRY_AFTER_SECONDS));
            }
            Self::TooManyRequests(wait) => {
                response.insert_header((header::RETRY_AFTER, *wait));
            }
            _ => {}
        }
        response.json(self.body())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::RecordNotFound,
            StoreError::Conflict => Self::Conflict,
            StoreError::Invalid(errors) => Self::RecordInvalid(errors),
            StoreError::PreconditionFailed => Self::PreconditionFailed,
            StoreError::Unavailable(cause) => Self::ServiceUnavailable(cause),
            StoreError::Internal(cause) => Self::Internal(cause),
            other => Self::Internal(other.into()),
        }
    }
}

impl From<ValidationErrors> for ApiError {
    fn from(errors: ValidationErrors) -> Self {
        Self::RecordInvalid(errors)
    }
}

/// Writes an error and its whole cause chain on one line, for the log.
pub fn cause_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;
    use visitor_domain::{ErrorCode, FieldError};

    async fn body(
        error: ApiError,
    ) -> (
        StatusCode,
        actix_web::http::header::HeaderMap,
        serde_json::Value,
    ) {
        let response = error.error_response();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = to_bytes(response.into_body()).await.unwrap();
        (status, headers, serde_json::from_slice(&bytes).unwrap())
    }

    #[actix_web::test]
    async fn every_variant_maps_to_its_status_and_code() {
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (ApiError::BadRequest("x".into()), 400, "BadRequest"),
            (ApiError::Unauthorized, 401, "Unauthorized"),
            (ApiError::Forbidden, 403, "Forbidden"),
            (ApiError::RecordNotFound, 404, "RecordNotFound"),
            (ApiError::NotFound, 404, "NotFound"),
            (
                ApiError::MethodNotAllowed("GET, PUT"),
                405,
                "MethodNotAllowed",
            ),
            (ApiError::Conflict, 409, "Conflict"),
            (ApiError::IdempotencyKeyInUse, 409, "IdempotencyKeyInUse"),
            (
                ApiError::IdempotencyKeyMismatch,
                422,
                "IdempotencyKeyMismatch",
            ),
            (ApiError::PreconditionFailed, 412, "PreconditionFailed"),
            (ApiError::PayloadTooLarge(65536), 413, "PayloadTooLarge"),
            (
                ApiError::UnsupportedMediaType(JSON),
                415,
                "UnsupportedMediaType",
            ),
            (
                ApiError::RecordInvalid(ValidationErrors::new()),
                422,
                "RecordInvalid",
            ),
            (
                ApiError::ServiceUnavailable("db".into()),
                503,
                "ServiceUnavailable",
            ),
            (ApiError::internal("boom"), 500, "InternalError"),
        ];
        for (error, status, code) in cases {
            let (got_status, _, value) = body(error).await;
            assert_eq!(got_status.as_u16(), status);
            assert_eq!(value["error"], code);
            assert!(value["description"].as_str().is_some_and(|d| !d.is_empty()));
            assert_eq!(
                value.get("details").is_some(),
                code == "RecordInvalid",
                "{code}"
            );
        }
    }

    #[actix_web::test]
    async fn store_errors_map_to_the_contract() {
        let (status, headers, _) = body(StoreError::Unavailable("refused".into()).into()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "5");
        assert_eq!(
            ApiError::from(StoreError::NotFound).status_and_code().1,
            "RecordNotFound"
        );
        assert_eq!(
            ApiError::from(StoreError::Conflict).status_and_code().0,
            StatusCode::CONFLICT
        );
        let internal = ApiError::from(StoreError::internal("disk on fire"));
        assert_eq!(
            internal.status_and_code().0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[actix_web::test]
    async fn five_hundreds_say_nothing_internal() {
        let (_, _, value) = body(ApiError::internal("password=hunter2 at db.internal")).await;
        let text = value.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("db.internal"),
            "{text}"
        );
    }

    #[actix_web::test]
    async fn unauthorized_and_method_not_allowed_carry_their_headers() {
        let (_, headers, _) = body(ApiError::Unauthorized).await;
        assert_eq!(headers.get(header::WWW_AUTHENTICATE).unwrap(), "Bearer");
        let (_, headers, _) = body(ApiError::MethodNotAllowed("GET, PUT")).await;
        assert_eq!(headers.get(header::ALLOW).unwrap(), "GET, PUT");
    }

    #[actix_web::test]
    async fn record_invalid_carries_details() {
        let errors = ValidationErrors::single(
            "email",
            FieldError::new(
                ErrorCode::InvalidFormat,
                "email is not a valid e-mail address",
            ),
        );
        let (_, _, value) = body(ApiError::RecordInvalid(errors)).await;
        assert_eq!(value["description"], "Record validation errors");
        assert_eq!(value["details"]["email"][0]["error"], "InvalidFormat");
    }

    #[actix_web::test]
    async fn a_bad_query_is_a_bad_request_with_details() {
        let errors = ValidationErrors::single(
            "page[size]",
            FieldError::new(ErrorCode::OutOfRange, "page[size] must be from 1 to 1000"),
        );
        let (status, _, value) = body(ApiError::BadQuery(errors)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(value["error"], "BadRequest");
        assert_eq!(value["details"]["page[size]"][0]["error"], "OutOfRange");
        let (_, headers, _) = body(ApiError::IdempotencyKeyInUse).await;
        assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "1");
        assert_eq!(
            ApiError::from(StoreError::PreconditionFailed).status_and_code(),
            (StatusCode::PRECONDITION_FAILED, "PreconditionFailed")
        );
    }

    #[test]
    fn the_cause_chain_is_written_whole() {
        let error = ApiError::from(StoreError::Internal("connection reset".into()));
        assert!(cause_chain(&error).ends_with(": connection reset"));
    }
}
