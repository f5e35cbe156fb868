//! The `Prefer` request header (RFC 7240): Update honours `return=minimal` (204 with the ETag,
//! no body); every other preference is ignored, as the RFC asks of preferences a server does not
//! apply, so no value is ever refused.

use actix_web::http::header::{HeaderMap, HeaderName};

/// The request header carrying preferences.
pub static PREFER: HeaderName = HeaderName::from_static("prefer");
/// The response header naming the preferences applied.
pub static PREFERENCE_APPLIED: HeaderName = HeaderName::from_static("preference-applied");

/// True when the request prefers a minimal answer (`return=minimal`, the value optionally
/// quoted, names and values compared ignoring ASCII case).
pub fn prefers_minimal(headers: &HeaderMap) -> bool {
    headers
        .get_all(&PREFER)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|preference| preference.split(';').next())
        .filter_map(|token| token.split_once('='))
        .any(|(name, value)| {
            name.trim().eq_ignore_ascii_case("return")
                && value
                    .trim()
                    .trim_matches('"')
                    .eq_ignore_ascii_case("minimal")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn minimal(values: &[&str]) -> bool {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(PREFER.clone(), HeaderValue::from_str(value).unwrap());
        }
        prefers_minimal(&headers)
    }

    #[test]
    fn return_minimal_is_found_among_other_preferences() {
        assert!(minimal(&["return=minimal"]));
        assert!(minimal(&["respond-async, RETURN = \"Minimal\"; x=1"]));
        assert!(minimal(&["wait=5", "return=minimal"]));
    }

    #[test]
    fn anything_else_is_ignored() {
        assert!(!minimal(&[]));
        assert!(!minimal(&["return=representation"]));
        assert!(!minimal(&["minimal"]));
        assert!(!minimal(&["x; return=minimal"]));
        assert!(!minimal(&["returns=minimal", ""]));
    }
}
