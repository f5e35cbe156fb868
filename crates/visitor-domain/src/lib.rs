//! The Visitor of the Zendesk Chat Visitors API and its rules, with no I/O; the crate README follows.
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod command;
mod error;
mod fields;
mod filter;
mod fingerprint;
mod visitor;

pub use command::{Field, NewVisitor, VisitorPatch, VisitorUpsert};
pub use error::{ErrorCode, FieldError, ValidationErrors};
pub use fields::{
    Created, Email, ExternalId, Name, Notes, Phone, VisitorId, EMAIL_MAX_CHARS,
    EXTERNAL_ID_MAX_CHARS, NAME_MAX_CHARS, NOTES_MAX_CHARS, PHONE_MAX_CHARS, PHONE_PUNCTUATION,
};
pub use filter::VisitorFilter;
pub use fingerprint::BodyFingerprint;
pub use visitor::{Visitor, VISITOR_KEYS};
