//! Validation errors: what is wrong with one key, and every key that is wrong in one request.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// A stable, machine-readable code for one broken rule.
///
/// The codes are part of the public contract (they appear in the HTTP error envelope), so
/// variants are only ever added, never renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub enum ErrorCode {
    /// A string that must hold at least one character is empty.
    Blank,
    /// A string is longer than its limit.
    TooLong,
    /// A string does not have the required shape (e-mail, phone number, date-time).
    InvalidFormat,
    /// The JSON value has the wrong type for the key (including `null` where it is not allowed).
    InvalidType,
    /// The key is read-only: it cannot be set by a client, or cannot change once set.
    ReadOnly,
    /// The key is not one of the visitor's keys.
    UnknownField,
    /// The key is given more than once (e.g. a list filter repeated in the query).
    Duplicate,
    /// A number outside its allowed range (e.g. a page size).
    OutOfRange,
    /// A key that must be given is missing or `null` (e.g. `external_id` of create-or-update).
    Required,
    /// A cursor older than what is kept (e.g. a change feed cursor behind purged erasures).
    Expired,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Blank => "Blank",
            Self::TooLong => "TooLong",
            Self::InvalidFormat => "InvalidFormat",
            Self::InvalidType => "InvalidType",
            Self::ReadOnly => "ReadOnly",
            Self::UnknownField => "UnknownField",
            Self::Duplicate => "Duplicate",
            Self::OutOfRange => "OutOfRange",
            Self::Required => "Required",
            Self::Expired => "Expired",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One broken rule of one key: a stable code and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The broken rule, written as `error` on the wire.
    #[serde(rename = "error")]
    pub code: ErrorCode,
    /// A sentence for people.
    pub description: String,
}

impl FieldError {
    /// An error with its code and description.
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.description)
    }
}

impl std::error::Error for FieldError {}

/// Every broken rule of a request, by key. Never empty when returned as an error.
///
/// Serialises as `{"key": [{"error": "Code", "description": "..."}]}`, keys in sorted order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ValidationErrors(BTreeMap<String, Vec<FieldError>>);

impl ValidationErrors {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// A set holding one error for one key.
    pub fn single(key: impl Into<String>, error: FieldError) -> Self {
        let mut errors = Self::new();
        errors.add(key, error);
        errors
    }

    /// Adds one error to a key.
    pub fn add(&mut self, key: impl Into<String>, error: FieldError) {
        self.0.entry(key.into()).or_default().push(error);
    }

    /// Adds every error of `other`.
    pub fn merge(&mut self, other: Self) {
        for (key, errors) in other.0 {
            self.0.entry(key).or_default().extend(errors);
        }
    }

    /// True when no error was collected.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The errors of one key, if it has any.
    pub fn get(&self, key: &str) -> Option<&[FieldError]> {
        self.0.get(key).map(Vec::as_slice)
    }

    /// The offending keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Every offending key with its errors, keys sorted.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[FieldError])> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// `Ok(value)` when nothing was collected, else every collected error.
    pub fn into_result<T>(self, value: T) -> Result<T, Self> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (key, errors) in &self.0 {
            for error in errors {
                if !first {
                    f.write_str("; ")?;
                }
                first = false;
                write!(f, "{key}: {error}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [(ErrorCode, &str); 10] = [
        (ErrorCode::Blank, "Blank"),
        (ErrorCode::TooLong, "TooLong"),
        (ErrorCode::InvalidFormat, "InvalidFormat"),
        (ErrorCode::InvalidType, "InvalidType"),
        (ErrorCode::ReadOnly, "ReadOnly"),
        (ErrorCode::UnknownField, "UnknownField"),
        (ErrorCode::Duplicate, "Duplicate"),
        (ErrorCode::OutOfRange, "OutOfRange"),
        (ErrorCode::Required, "Required"),
        (ErrorCode::Expired, "Expired"),
    ];

    #[test]
    fn every_code_has_its_wire_name() {
        for (code, wire) in ALL {
            assert_eq!(code.as_str(), wire);
            assert_eq!(code.to_string(), wire);
            assert_eq!(serde_json::to_value(code).unwrap(), wire);
        }
    }

    fn error(code: ErrorCode, text: &str) -> FieldError {
        FieldError::new(code, text)
    }

    #[test]
    fn a_field_error_shows_its_code_and_sentence() {
        let shown = error(ErrorCode::TooLong, "name is too long").to_string();
        assert_eq!(shown, "TooLong: name is too long");
    }

    #[test]
    fn errors_collect_per_key_in_key_order() {
        let mut errors = ValidationErrors::single("name", error(ErrorCode::Blank, "empty"));
        assert!(!errors.is_empty());
        assert_eq!(errors.keys().collect::<Vec<_>>(), ["name"]);
        let mut other = ValidationErrors::new();
        assert!(other.is_empty());
        other.add("email", error(ErrorCode::InvalidFormat, "bad"));
        other.add("name", error(ErrorCode::TooLong, "long"));
        errors.merge(other);
        assert_eq!(errors.keys().collect::<Vec<_>>(), ["email", "name"]);
        let name: Vec<ErrorCode> = errors.get("name").unwrap().iter().map(|e| e.code).collect();
        assert_eq!(name, [ErrorCode::Blank, ErrorCode::TooLong]);
        let pairs: Vec<(&str, usize)> = errors.iter().map(|(k, v)| (k, v.len())).collect();
        assert_eq!(pairs, [("email", 1), ("name", 2)]);
        assert_eq!(
            errors.to_string(),
            "email: InvalidFormat: bad; name: Blank: empty; name: TooLong: long"
        );
        assert_eq!(
            serde_json::to_value(&errors).unwrap()["name"][1],
            serde_json::json!({"error": "TooLong", "description": "long"})
        );
        assert!(errors.clone().into_result(()).is_err());
        assert_eq!(ValidationErrors::new().into_result(7), Ok(7));
        assert_eq!(ValidationErrors::new().to_string(), "");
    }
}
