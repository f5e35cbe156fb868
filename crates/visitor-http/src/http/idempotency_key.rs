//! The `Idempotency-Key` request header of Create Visitor: 1..=255 visible ASCII characters,
//! the draft's quoted form (`"abc"`) being the same key as `abc`.

use actix_web::http::header::{HeaderMap, HeaderName};

use crate::http::error::ApiError;

/// The request header that makes a create idempotent.
pub static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// The response header set on a replayed answer.
pub static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The most characters in a key.
pub const KEY_MAX_CHARS: usize = 255;

/// The key a request sent, if any.
pub fn key_of(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(&IDEMPOTENCY_KEY);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::BadRequest(format!(
            "Idempotency-Key must be 1 to {KEY_MAX_CHARS} visible ASCII characters (! to ~), optionally in double quotes, and given once"
        ))
    };
    if values.next().is_some() {
        return Err(invalid());
    }
    let text = value.to_str().map_err(|_| invalid())?;
    let key = text
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or(text);
    let visible = key.bytes().all(|b| (b'!'..=b'~').contains(&b));
    if key.is_empty() || key.len() > KEY_MAX_CHARS || !visible {
        return Err(invalid());
    }
    Ok(Some(key.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn key(values: &[&[u8]]) -> Result<Option<String>, ApiError> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                IDEMPOTENCY_KEY.clone(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        key_of(&headers)
    }

    #[test]
    fn keys_are_visible_ascii_and_quotes_are_the_same_key() {
        assert_eq!(key(&[]).unwrap(), None);
        assert_eq!(key(&[b"abc"]).unwrap().as_deref(), Some("abc"));
        assert_eq!(key(&[b"\"abc\""]).unwrap().as_deref(), Some("abc"));
        assert_eq!(key(&[b"\"abc"]).unwrap().as_deref(), Some("\"abc"));
        let longest = "~".repeat(KEY_MAX_CHARS);
        assert_eq!(key(&[longest.as_bytes()]).unwrap(), Some(longest.clone()));
        assert_eq!(
            key(&[format!("\"{longest}\"").as_bytes()]).unwrap(),
            Some(longest.clone())
        );
    }

    #[test]
    fn anything_else_is_a_bad_request() {
        let too_long = "a".repeat(KEY_MAX_CHARS + 1);
        for bad in [
            &b""[..],
            b"\"\"",
            b"a b",
            b"tab\there",
            "é".as_bytes(),
            too_long.as_bytes(),
        ] {
            assert!(
                matches!(key(&[bad]), Err(ApiError::BadRequest(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(key(&[b"a", b"b"]), Err(ApiError::BadRequest(_))));
    }
}
