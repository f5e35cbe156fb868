//! The outermost middleware: gives every request an id and a span, one access log line and its
//! metrics, a JSON body for any error that reached it without one, and `Connection: close`
//! while the instance drains.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::ConnectionType;
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::web::Data;
use actix_web::{HttpMessage, ResponseError};
use tracing::Instrument;

use crate::context::AppContext;
use crate::http::error::{cause_chain, ApiError, JSON};
use crate::http::extract::BODY_LIMIT;
use crate::http::forwarded::ClientAddress;
use crate::http::route::RouteTemplate;
use crate::observability::metrics::UNMATCHED_ROUTE;

/// The header that carries the request id.
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A new request id: a random per-process prefix and a counter, so no id repeats within a
/// process and ids of different processes differ, without a system call per request.
fn new_request_id() -> String {
    static PREFIX: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| format!("{:016x}-", uuid::Uuid::new_v4().as_u64_pair().0));
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut id = String::with_capacity(prefix.len() + 12);
    id.push_str(prefix);
    // The counter's low 48 bits as 12 hex digits: unique for 2^48 requests.
    for shift in (0..12).rev() {
        let digit = (n >> (shift * 4)) & 0xf;
        id.push(char::from(b"0123456789abcdef"[digit as usize]));
    }
    id
}

/// An incoming id is kept when it is 1 to 128 characters of `A-Z a-z 0-9 - _ . : /`.
fn sane_request_id(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let ok = (1..=128).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b));
    ok.then(|| text.to_owned())
}

/// Middleware (outermost): assigns the request id, runs the request in a span that carries it,
/// turns any error without a JSON body into the envelope, sets `X-Request-Id`, records the
/// request's metrics, asks the client to close its connection while the instance drains, and
/// logs one line.
pub(crate) async fn request_context(
    context: Data<AppContext>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(sane_request_id)
        .unwrap_or_else(new_request_id);
    let method = req.method().clone();
    let client = req.peer_addr().map(|peer| {
        context
            .origin
            .proxies()
            .client_address(peer.ip(), req.headers())
    });
    if let Some(client) = client {
        req.extensions_mut().insert(ClientAddress(client));
    }
    let client_address = client.map(|client| client.to_string()).unwrap_or_default();
    let metrics = context.metrics.as_ref();
    let in_flight = metrics.map(|metrics| metrics.start());
    // At debug level: an enabled span is entered and left on every poll of the request (dozens
    // for a page of List), and the JSON log does not print spans; the access line below carries
    // the id. `RUST_LOG=debug` puts it on every event inside the request.
    let span = tracing::debug_span!("request", request_id = %request_id);

    // Inner layers answer errors as responses; an `Err` here would be a bug in one of them.
    let response = next.call(req).instrument(span.clone()).await?;
    let mut response = envelope_bare_errors(response.map_into_boxed_body());

    if context.readiness.is_draining() {
        // Keep-alive connections end with this answer, so clients reconnect through the load
        // balancer to an instance that is not stopping.
        response
            .response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }

    let status = response.status().as_u16();
    // The matched resource's template; else (Swagger UI, no route) actix's own matching.
    let pattern = match response.request().app_data::<RouteTemplate>() {
        Some(template) => Some(Cow::Borrowed(template.0)),
        None => response.request().match_pattern().map(Cow::Owned),
    };
    let elapsed = started.elapsed();
    if let Some(metrics) = metrics {
        let error = response
            .response()
            .error()
            .and_then(|error| error.as_error::<ApiError>());
        metrics.record(&method, pattern.clone(), status, elapsed, error);
    }
    drop(in_flight);
    let route = pattern.as_deref().unwrap_or(UNMATCHED_ROUTE);
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    let _entered = span.enter();
    if status >= 500 {
        let cause = response
            .response()
            .error()
            .map(|error| match error.as_error::<ApiError>() {
                Some(api_error) => cause_chain(api_error),
                None => error.to_string(),
            })
            .unwrap_or_default();
        tracing::error!(
            method = method.as_str(),
            route,
            status,
            latency_ms,
            request_id = request_id.as_str(),
            client_address = client_address.as_str(),
            %cause,
            "request failed"
        );
    } else {
        tracing::info!(
            method = method.as_str(),
            route,
            status,
            latency_ms,
            request_id = request_id.as_str(),
            client_address = client_address.as_str(),
            "request"
        );
    }
    drop(_entered);
    // Last, so the id moves into the header instead of being copied.
    if let Ok(value) = HeaderValue::try_from(request_id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    Ok(response)
}

/// Gives an error response that some other layer wrote (plain text, or no body) the JSON
/// envelope, so clients only ever see JSON errors.
fn envelope_bare_errors(response: ServiceResponse<BoxBody>) -> ServiceResponse<BoxBody> {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let error = error_for_status(status);
    let (request, old) = response.into_parts();
    let mut replacement = error.error_response();
    for (name, value) in old.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            replacement
                .headers_mut()
                .insert(name.clone(), value.clone());
        }
    }
    ServiceResponse::new(request, replacement)
}

/// The error a status stands for, when a layer other than ours answered it without a body.
fn error_for_status(status: StatusCode) -> ApiError {
    match status.as_u16() {
        401 => ApiError::Unauthorized,
        403 => ApiError::Forbidden,
        404 => ApiError::NotFound,
        405 => ApiError::MethodNotAllowed(""),
        409 => ApiError::Conflict,
        412 => ApiError::PreconditionFailed,
        413 => ApiError::PayloadTooLarge(BODY_LIMIT),
        415 => ApiError::UnsupportedMediaType(JSON),
        429 => ApiError::TooManyRequests(1),
        503 => ApiError::ServiceUnavailable("unavailable".into()),
        400..=499 => ApiError::BadRequest(
            status
                .canonical_reason()
                .unwrap_or("the request is malformed")
                .to_lowercase(),
        ),
        _ => ApiError::internal(format!("a response with status {status} and no JSON body")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_request_ids_are_distinct_and_sane() {
        let first = new_request_id();
        let second = new_request_id();
        assert_ne!(first, second);
        assert_eq!(&first[..17], &second[..17], "one prefix per process");
        assert!(sane_request_id(&HeaderValue::from_str(&first).unwrap()).is_some());
    }

    #[test]
    fn only_sane_request_ids_are_kept() {
        let keep = |s: &str| sane_request_id(&HeaderValue::from_str(s).unwrap());
        assert_eq!(keep("abc-123_x.y:z/1").as_deref(), Some("abc-123_x.y:z/1"));
        assert_eq!(keep(""), None);
        assert_eq!(keep("has space"), None);
        assert_eq!(keep("<script>"), None);
        assert_eq!(keep(&"a".repeat(129)), None);
        assert!(keep(&"a".repeat(128)).is_some());
    }
}
