//! The access middleware: every `/api/v2/...` request needs an administrator's bearer token,
//! within the rate limits (§8.5), before any resource runs.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web::Data;
use actix_web::HttpMessage;

use crate::access::limits::Admission;
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
    let address = req
        .extensions()
        .get::<ClientAddress>()
        .map(|client| client.0);
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    // The token is looked up first (no side effect), so that one decision of the limits, one
    // round trip when they are shared, covers the request; an address over its failure limit
    // is still refused whatever its token.
    let identity = context.tokens.identify(authorization);
    let admission = limits
        .admit(
            address,
            identity.as_ref().ok().map(|identity| &identity.digest),
        )
        .await;
    let identity = match (identity, admission) {
        (_, Admission::AddressRefused(wait)) => {
            return Ok(req
                .error_response(ApiError::TooManyRequests(wait))
                .map_into_right_body());
        }
        (Err(refusal), _) => return Ok(req.error_response(refusal).map_into_right_body()),
        (Ok(_), Admission::TokenRefused(refusal)) => {
            let mut response = req.error_response(ApiError::TooManyRequests(refusal.retry_after));
            if let Some(allowance) = refusal.allowance {
                limits.write_headers(&allowance, response.headers_mut());
            }
            return Ok(response.map_into_right_body());
        }
        (Ok(identity), admission) => (identity, admission),
    };
    let (identity, admission) = identity;
    let allowance = match admission {
        Admission::Admitted(allowance) => allowance,
        _ => None,
    };
    let mut response = match identity.caller() {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.call(req).await?.map_into_left_body()
        }
        Err(refusal) => req.error_response(refusal).map_into_right_body(),
    };
    if let Some(allowance) = allowance {
        limits.write_headers(&allowance, response.headers_mut());
    }
    Ok(response)
}
