//! Request extractors that fail only with [`ApiError`]: a JSON object body (415, 413, 400) and
//! the `visitor_id` path segment (400).

use std::future::{ready, Future, Ready};
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::mime;
use actix_web::web::BytesMut;
use actix_web::{FromRequest, HttpRequest};
use futures::StreamExt;
use serde_json::{Map, Value};
use visitor_domain::VisitorId;

use crate::error::ApiError;

/// The largest body accepted, in bytes (64 KiB).
pub const BODY_LIMIT: usize = 64 * 1024;

/// A request body that is a JSON object.
#[derive(Debug)]
pub struct JsonObject(pub Map<String, Value>);

/// True for `application/json` and `application/*+json`, with any parameters, as long as a
/// `charset` parameter (if any) names UTF-8.
fn is_json(req: &HttpRequest) -> bool {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(mime) = value.to_str().unwrap_or_default().parse::<mime::Mime>() else {
        return false;
    };
    let json = mime.type_() == mime::APPLICATION
        && (mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON));
    let utf8 = mime
        .get_param(mime::CHARSET)
        .is_none_or(|charset| charset == mime::UTF_8);
    json && utf8
}

fn declared_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

impl FromRequest for JsonObject {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = is_json(req);
        let too_large = declared_length(req).is_some_and(|n| n > BODY_LIMIT as u64);
        let mut payload = payload.take();
        Box::pin(async move {
            if !json {
                return Err(ApiError::UnsupportedMediaType);
            }
            if too_large {
                return Err(ApiError::PayloadTooLarge);
            }
            let mut body = BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|error| {
                    ApiError::BadRequest(format!("the body could not be read: {error}"))
                })?;
                if body.len() + chunk.len() > BODY_LIMIT {
                    return Err(ApiError::PayloadTooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Object(map)) => Ok(Self(map)),
                Ok(_) => Err(ApiError::BadRequest(
                    "the body must be a JSON object".into(),
                )),
                Err(error) => Err(ApiError::BadRequest(format!(
                    "the body is not valid JSON: {error}"
                ))),
            }
        })
    }
}

/// The `visitor_id` path segment, parsed as a positive 64-bit integer.
#[derive(Debug, Clone, Copy)]
pub struct VisitorPath(pub VisitorId);

impl FromRequest for VisitorPath {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let segment = req.match_info().get("visitor_id").unwrap_or_default();
        ready(
            VisitorId::parse_str(segment)
                .map(Self)
                .map_err(|error| ApiError::BadRequest(error.description)),
        )
    }
}
