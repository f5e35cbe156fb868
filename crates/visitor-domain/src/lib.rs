//! The Visitor of the Zendesk Chat Visitors API: the entity, the commands that create and change
//! it, and every validation and mutability rule. Pure: no I/O, no web or database types, so any
//! service can reuse it and enforce the same rules.
//!
//! ```
//! use serde_json::json;
//! use visitor_domain::{Created, NewVisitor, VisitorId, VisitorPatch};
//!
//! let body = json!({"name": "Visitor 1", "email": "visitor1@example.com"});
//! let new = NewVisitor::from_json(body.as_object().unwrap()).unwrap();
//! let visitor = new.into_visitor(VisitorId::new(1).unwrap(), Created::now());
//!
//! let change = json!({"name": "John", "notes": "changed"});
//! let errors = VisitorPatch::from_json(change.as_object().unwrap())
//!     .unwrap()
//!     .apply_to(&visitor)
//!     .unwrap_err();
//! assert_eq!(errors.keys().collect::<Vec<_>>(), ["notes"]);
//! ```

mod command;
mod error;
mod fields;
mod filter;
mod fingerprint;
mod visitor;

pub use command::{Field, NewVisitor, VisitorPatch};
pub use error::{ErrorCode, FieldError, ValidationErrors};
pub use fields::{
    Created, Email, ExternalId, Name, Notes, Phone, VisitorId, EMAIL_MAX_CHARS,
    EXTERNAL_ID_MAX_CHARS, NAME_MAX_CHARS, NOTES_MAX_CHARS, PHONE_MAX_CHARS, PHONE_PUNCTUATION,
};
pub use filter::VisitorFilter;
pub use fingerprint::BodyFingerprint;
pub use visitor::{Visitor, VISITOR_KEYS};
