//! Validation errors: what is wrong with one key, and every key that is wrong in one request.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// A stable, machine-readable code for one broken rule.
///
/// The codes are part of the public contract (they appear in the HTTP error envelope), so
/// variants are only ever added, never renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
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
    #[serde(rename = "error")]
    pub code: ErrorCode,
    pub description: String,
}

impl FieldError {
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
    pub fn new() -> Self {
        Self::default()
    }

    /// A set holding one error for one key.
    pub fn single(key: impl Into<String>, error: FieldError) -> Self {
        let mut errors = Self::new();
        errors.add(key, error);
        errors
    }

    pub fn add(&mut self, key: impl Into<String>, error: FieldError) {
        self.0.entry(key.into()).or_default().push(error);
    }

    /// Adds every error of `other`.
    pub fn merge(&mut self, other: Self) {
        for (key, errors) in other.0 {
            self.0.entry(key).or_default().extend(errors);
        }
    }

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
