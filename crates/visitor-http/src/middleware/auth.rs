//! The access middleware: every `/api/v2/...` request needs an administrator's bearer token,
//! within the rate limits (§8.5), before any resource runs.

use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web::Data;
use actix_web::HttpMessage;

use crate::context::AppContext;
use crate::http::error::ApiError;
use crate::http::forwarded::ClientAddress;

/// True for the paths of the API proper, which need a token.
fn is_api_path(path: &str) -> bool {
    path == "/api/v2" || path.starts_with("/api/v2/")
}

/// Middleware: every `/api/v2/...` request needs an administrator's bearer token, within the
/// rate limits (§8.5). Refusals are answered here, as responses, without calling the routes:
/// an address over its failed-authentication limit gets 429 before its token is looked at;
/// a known token over its limit gets 429; an agent gets 403. Every answer to a known token
/// carries its allowance. A request that passes carries its [`Caller`] in its extensions.
pub(crate) async fn require_administrator(
    context: Data<AppContext>,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if !is_api_path(req.path()) {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let limits = &context.limits;
    let failures = limits.auth_failures.as_ref().zip(
        req.extensions()
            .get::<ClientAddress>()
            .map(|client| client.0),
    );
    if let Some((failures, address)) = failures {
        if let Some(wait) = failures.refused(address, Instant::now()) {
            return Ok(req
                .error_response(ApiError::TooManyRequests(wait))
                .map_into_right_body());
        }
    }
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let identity = match context.tokens.identify(authorization) {
        Ok(identity) => identity,
        Err(refusal) => {
            let over =
                failures.and_then(|(failures, address)| failures.record(address, Instant::now()));
            let refusal = over.map_or(refusal, ApiError::TooManyRequests);
            return Ok(req.error_response(refusal).map_into_right_body());
        }
    };
    let per_token = limits.per_token.as_ref();
    let allowance = match per_token.map(|limiter| (limiter, limiter.check(&identity.digest))) {
        None => None,
        Some((limiter, Ok(allowance))) => Some((limiter, allowance)),
        Some((limiter, Err(refusal))) => {
            let mut response = req.error_response(ApiError::TooManyRequests(refusal.retry_after));
            if let Some(allowance) = refusal.allowance {
                limiter.write_headers(&allowance, response.headers_mut());
            }
            return Ok(response.map_into_right_body());
        }
    };
    let mut response = match identity.caller() {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.call(req).await?.map_into_left_body()
        }
        Err(refusal) => req.error_response(refusal).map_into_right_body(),
    };
    if let Some((limiter, allowance)) = allowance {
        limiter.write_headers(&allowance, response.headers_mut());
    }
    Ok(response)
}
