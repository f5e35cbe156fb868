//! Request extractors that fail only with [`ApiError`]: a JSON object body (415, 413, 400; a key
//! named twice in any object is a 400, so no reader of the request can take another value than
//! the service does) and the `visitor_id` path segment (400).

use std::future::{ready, Future, Ready};
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::mime;
use actix_web::web::BytesMut;
use actix_web::{FromRequest, HttpRequest};
use futures::StreamExt;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Number, Value};
use visitor_domain::VisitorId;

use crate::http::error::{ApiError, JSON};

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

impl FromRequest for JsonObject {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = is_json(req);
        let too_large = declared_length(req).is_some_and(|n| n > BODY_LIMIT as u64);
        let mut payload = payload.take();
        Box::pin(async move {
            if !json {
                return Err(ApiError::UnsupportedMediaType(JSON));
            }
            if too_large {
                return Err(ApiError::PayloadTooLarge(BODY_LIMIT));
            }
            let body = read_limited(&mut payload, BODY_LIMIT).await?;
            json_object(&body, "the body").map(Self)
        })
    }
}

/// The whole body, refused with 413 as soon as it is known to exceed `limit` bytes (the
/// caller refuses a declared `Content-Length` over it before reading).
pub async fn read_limited(payload: &mut Payload, limit: usize) -> Result<BytesMut, ApiError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|error| {
            ApiError::BadRequest(format!("the body could not be read: {error}"))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The `Content-Length` the request declares, if any.
pub fn declared_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Parses `text` (`what` names it in the errors: "the body", "line 3") as a JSON object in which
/// no object names a key twice; anything else is a 400.
pub fn json_object(text: &[u8], what: &str) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<UniqueKeys>(text).map(|parsed| parsed.0) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::BadRequest(format!(
            "{what} must be a JSON object"
        ))),
        Err(error) => Err(ApiError::BadRequest(format!(
            "{what} is not valid JSON: {error}"
        ))),
    }
}

/// A JSON value in which no object names a key twice: `{"name": "a", "name": "b"}` is an error
/// rather than the last value silently winning.
struct UniqueKeys(Value);

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(UniqueKeysVisitor)
            .map(UniqueKeys)
    }
}

struct UniqueKeysVisitor;

impl<'de> Visitor<'de> for UniqueKeysVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(UniqueKeys(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let UniqueKeys(value) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "the key {key:?} is given more than once"
                )));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Value, serde_json::Error> {
        serde_json::from_str::<UniqueKeys>(text).map(|parsed| parsed.0)
    }

    #[test]
    fn a_key_named_twice_anywhere_is_refused() {
        for text in [
            r#"{"name": "a", "name": "b"}"#,
            r#"{"name": "a", "name": "a"}"#,
            r#"{"x": {"k": 1, "k": 2}}"#,
            r#"{"x": [{"k": 1, "k": 2}]}"#,
            r#"{"name": "a", "n\u0061me": "b"}"#,
        ] {
            let error = parse(text).unwrap_err();
            assert!(
                error.to_string().contains("more than once"),
                "{text}: {error}"
            );
        }
    }

    #[test]
    fn any_other_json_reads_as_serde_json_reads_it() {
        for text in [
            r#"{"name": "a", "email": null, "banned": true, "n": -1, "u": 18446744073709551615, "f": 1.5}"#,
            r#"{"nested": {"a": [1, {"b": "c"}], "d": {}}, "e": []}"#,
            r#"[1, "two", null]"#,
            r#""text""#,
            "{}",
        ] {
            assert_eq!(
                parse(text).unwrap(),
                serde_json::from_str::<Value>(text).unwrap(),
                "{text}"
            );
        }
        assert!(parse("{").is_err());
        assert!(parse(r#"{"a":1}x"#).is_err());
    }
}
