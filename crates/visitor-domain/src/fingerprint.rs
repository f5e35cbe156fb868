//! When two create bodies are the same: the same JSON value, whatever the spacing or the order of
//! keys. A [`BodyFingerprint`] is a digest of the body's canonical form, so a store can keep and
//! compare it instead of the body.

use std::fmt::Write as _;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The SHA-256 digest of a JSON body's canonical form: object keys sorted (recursively), no
/// insignificant white space, strings and numbers written as `serde_json` writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BodyFingerprint([u8; 32]);

impl BodyFingerprint {
    /// The fingerprint of a body (a JSON object).
    pub fn of(body: &Map<String, Value>) -> Self {
        let mut canonical = String::new();
        write_object(body, &mut canonical);
        Self(Sha256::digest(canonical.as_bytes()).into())
    }

    /// A fingerprint read back from storage.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes of the digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

fn write_object(map: &Map<String, Value>, out: &mut String) {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push('{');
    for (n, (key, value)) in entries.into_iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        write_value(&Value::String(key.clone()), out);
        out.push(':');
        write_value(value, out);
    }
    out.push('}');
}

fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => write_object(map, out),
        Value::Array(items) => {
            out.push('[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        // Scalars print the same way whatever their spelling was in the request.
        scalar => {
            let _ = write!(out, "{scalar}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint(text: &str) -> BodyFingerprint {
        let value: Value = serde_json::from_str(text).unwrap();
        BodyFingerprint::of(value.as_object().unwrap())
    }

    #[test]
    fn spacing_and_key_order_do_not_matter() {
        let a = fingerprint(r#"{"name":"A","nested":{"x":1,"y":[1,2]},"email":"a@b.io"}"#);
        let b = fingerprint(
            "{ \"email\" : \"a@b.io\",\n \"nested\": {\"y\": [1, 2], \"x\": 1}, \"name\": \"\\u0041\" }",
        );
        assert_eq!(a, b);
    }

    #[test]
    fn any_difference_in_value_matters() {
        let base = fingerprint(r#"{"name":"A","banned":false}"#);
        for other in [
            r#"{"name":"a","banned":false}"#,
            r#"{"name":"A"}"#,
            r#"{"name":"A","banned":false,"x":null}"#,
            r#"{"name":"A","banned":true}"#,
            r#"{"name":["A"],"banned":false}"#,
            r#"{"name":"A","banned":0}"#,
        ] {
            assert_ne!(base, fingerprint(other), "{other}");
        }
        assert_ne!(fingerprint(r#"{"a":[1,2]}"#), fingerprint(r#"{"a":[2,1]}"#));
        assert_ne!(fingerprint(r#"{"a":1}"#), fingerprint(r#"{"a":1.5}"#));
    }

    #[test]
    fn keys_cannot_imitate_structure() {
        assert_ne!(
            fingerprint(r#"{"a":"b","c":"d"}"#),
            fingerprint(r#"{"a":"b\",\"c\":\"d"}"#)
        );
        let round = BodyFingerprint::from_bytes(*fingerprint("{}").as_bytes());
        assert_eq!(round, fingerprint("{}"));
    }

    /// The canonical form is part of the stored records: every instance (and every version in a
    /// rolling upgrade) must compute the same digest for the same body.
    #[test]
    fn the_canonical_form_is_pinned() {
        let body =
            r#"{"b": [1, 2, {"y": true, "x": null}], "a": {"d": "\u00e9", "c": -1.5}, "e": []}"#;
        let canonical = r#"{"a":{"c":-1.5,"d":"é"},"b":[1,2,{"x":null,"y":true}],"e":[]}"#;
        let expected: [u8; 32] = Sha256::digest(canonical.as_bytes()).into();
        assert_eq!(fingerprint(body).as_bytes(), &expected);
        assert_ne!(fingerprint(r#"{"a":[1,2]}"#), fingerprint(r#"{"a":[12]}"#));
    }
}
