//! The Visitor entity and its wire form: exactly eight keys, `null` where a value is absent.

use serde::{Deserialize, Serialize};

use crate::fields::{Created, Email, ExternalId, Name, Notes, Phone, VisitorId};

/// A stored visitor. Every field holds a value that keeps its rules, so a `Visitor` is always
/// valid; changes go through [`crate::VisitorPatch`].
///
/// Serialises to exactly the eight keys of the API, in the seed's order, with `null` for an absent
/// value and `created` as RFC 3339 in UTC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Visitor {
    /// Whether the visitor is currently banned or not.
    pub banned: bool,
    /// The create date for the visitor.
    pub created: Created,
    /// The email ID of the visitor.
    pub email: Option<Email>,
    /// The external ID of the visitor.
    pub external_id: Option<ExternalId>,
    /// The ID of the visitor.
    pub id: VisitorId,
    /// The name to be displayed for the visitor.
    pub name: Option<Name>,
    /// Any additional notes about the visitor.
    pub notes: Option<Notes>,
    /// The phone number of the visitor (if available).
    pub phone: Option<Phone>,
}

/// The eight keys of a visitor, as they appear on the wire.
pub const VISITOR_KEYS: [&str; 8] = [
    "banned",
    "created",
    "email",
    "external_id",
    "id",
    "name",
    "notes",
    "phone",
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seed_visitor() -> Visitor {
        let parsed: Result<Visitor, _> = serde_json::from_value(json!({
            "banned": false,
            "created": "2014-09-01T10:29:59Z",
            "email": "visitor1@example.com",
            "external_id": "john_extid",
            "id": 1,
            "name": "Visitor 1",
            "notes": "This visitor is really cool.",
            "phone": "+65 12345678"
        }));
        parsed.unwrap()
    }

    #[test]
    fn serialises_to_exactly_the_eight_keys_in_the_seed_form() {
        let value = serde_json::to_value(seed_visitor()).unwrap();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, VISITOR_KEYS);
        assert_eq!(value["created"], "2014-09-01T10:29:59Z");
        assert_eq!(value["id"], 1);
        assert_eq!(value["banned"], false);
    }

    #[test]
    fn absent_values_are_null_not_missing() {
        let mut visitor = seed_visitor();
        visitor.email = None;
        visitor.external_id = None;
        visitor.name = None;
        visitor.notes = None;
        visitor.phone = None;
        let value = serde_json::to_value(visitor).unwrap();
        assert_eq!(value.as_object().unwrap().len(), 8);
        for key in ["email", "external_id", "name", "notes", "phone"] {
            assert!(value[key].is_null(), "{key}");
        }
    }

    #[test]
    fn deserialising_applies_every_rule() {
        let mut value = serde_json::to_value(seed_visitor()).unwrap();
        value["email"] = json!("[email protected]");
        assert!(serde_json::from_value::<Visitor>(value).is_err());
    }
}
