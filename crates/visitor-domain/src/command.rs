//! The commands that create and change a visitor, parsed key by key from a JSON object so that
//! every offending key is reported, and the mutability rules that apply a change.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{ErrorCode, FieldError, ValidationErrors};
use crate::fields::{Created, Email, ExternalId, Name, Notes, Phone, VisitorId};
use crate::visitor::Visitor;

/// A key of a change that may be absent, `null`, or a value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Field<T> {
    /// The key was not sent.
    #[default]
    Absent,
    /// The key was sent as `null`.
    Null,
    /// The key was sent with a value.
    Value(T),
}

impl<T> Field<T> {
    /// True when the key was not sent.
    pub fn is_absent(&self) -> bool {
        matches!(self, Self::Absent)
    }

    /// The value as stored after the change: `Absent` keeps `current`, `Null` clears it.
    pub fn merged(&self, current: &Option<T>) -> Option<T>
    where
        T: Clone,
    {
        match self {
            Self::Absent => current.clone(),
            Self::Null => None,
            Self::Value(value) => Some(value.clone()),
        }
    }

    /// For a read-only key: true when the key was not sent, or was sent with the stored value.
    pub fn agrees_with(&self, stored: Option<&T>) -> bool
    where
        T: PartialEq,
    {
        match self {
            Self::Absent => true,
            Self::Null => stored.is_none(),
            Self::Value(value) => stored == Some(value),
        }
    }

    fn from_option(value: Option<T>) -> Self {
        value.map_or(Self::Null, Self::Value)
    }
}

/// The command that creates a visitor (the body of Create Visitor).
///
/// `None` means no value; `banned` defaults to `false` and `created` to the time of creation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct NewVisitor {
    /// The display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Name>,
    /// The e-mail address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    /// The phone number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<Phone>,
    /// Notes about the visitor, fixed once it exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<Notes>,
    /// The visitor's id in another system, unique and fixed once it exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<ExternalId>,
    /// Whether the visitor is banned (`false` unless sent).
    pub banned: bool,
    /// When the visitor was created; `None` means at the time of creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<Created>,
}

impl NewVisitor {
    /// Parses a create body. Every key is checked; the error holds every offending key.
    ///
    /// `id` is refused (the store assigns it), as is any key that is not a visitor's.
    pub fn from_json(body: &Map<String, Value>) -> Result<Self, ValidationErrors> {
        let mut new = Self::default();
        let mut errors = ValidationErrors::new();
        for (key, value) in body {
            let outcome = match key.as_str() {
                Name::KEY => nullable_text(key, value, Name::parse).map(|v| new.name = v),
                Email::KEY => nullable_text(key, value, Email::parse).map(|v| new.email = v),
                Phone::KEY => nullable_text(key, value, Phone::parse).map(|v| new.phone = v),
                Notes::KEY => nullable_text(key, value, Notes::parse).map(|v| new.notes = v),
                ExternalId::KEY => {
                    nullable_text(key, value, ExternalId::parse).map(|v| new.external_id = v)
                }
                BANNED_KEY => banned(value).map(|v| new.banned = v),
                Created::KEY => created(value).map(|v| new.created = Some(v)),
                VisitorId::KEY => Err(FieldError::new(
                    ErrorCode::ReadOnly,
                    "id is assigned by the server and cannot be given",
                )),
                _ => Err(unknown_key(key)),
            };
            if let Err(error) = outcome {
                errors.add(key.as_str(), error);
            }
        }
        errors.into_result(new)
    }

    /// The visitor this command creates once the store has assigned `id`; `created` defaults to
    /// `now`.
    pub fn into_visitor(self, id: VisitorId, now: Created) -> Visitor {
        Visitor {
            banned: self.banned,
            created: self.created.unwrap_or(now),
            email: self.email,
            external_id: self.external_id,
            id,
            name: self.name,
            notes: self.notes,
            phone: self.phone,
        }
    }
}

/// The command that changes a visitor (the body of Update Visitor): a partial merge.
///
/// `name`, `email` and `phone` may be cleared with `null`; `banned` and `created` may be set.
/// The read-only keys `id`, `external_id` and `notes` may be sent back unchanged (a client may
/// return the object it read) but never with another value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VisitorPatch {
    /// The display name: absent keeps it, `null` clears it.
    pub name: Field<Name>,
    /// The e-mail address: absent keeps it, `null` clears it.
    pub email: Field<Email>,
    /// The phone number: absent keeps it, `null` clears it.
    pub phone: Field<Phone>,
    /// Whether the visitor is banned; `None` keeps it.
    pub banned: Option<bool>,
    /// When the visitor was created; `None` keeps it.
    pub created: Option<Created>,
    /// Read-only: must equal the stored id when sent.
    pub id: Field<i64>,
    /// Read-only: must equal the stored external id when sent.
    pub external_id: Field<ExternalId>,
    /// Read-only: must equal the stored notes when sent.
    pub notes: Field<Notes>,
}

impl VisitorPatch {
    /// Parses an update body. Every key is checked; the error holds every offending key.
    pub fn from_json(body: &Map<String, Value>) -> Result<Self, ValidationErrors> {
        let (patch, errors) = Self::from_json_partial(body);
        errors.into_result(patch)
    }

    /// Parses an update body into the patch of the keys that are valid, and the errors of the
    /// others, so that a caller can add the read-only checks of the valid keys
    /// ([`Self::check_read_only`]) and report every offending key at once.
    pub fn from_json_partial(body: &Map<String, Value>) -> (Self, ValidationErrors) {
        let mut patch = Self::default();
        let mut errors = ValidationErrors::new();
        for (key, value) in body {
            let outcome = match key.as_str() {
                Name::KEY => nullable_text(key, value, Name::parse)
                    .map(|v| patch.name = Field::from_option(v)),
                Email::KEY => nullable_text(key, value, Email::parse)
                    .map(|v| patch.email = Field::from_option(v)),
                Phone::KEY => nullable_text(key, value, Phone::parse)
                    .map(|v| patch.phone = Field::from_option(v)),
                Notes::KEY => nullable_text(key, value, Notes::parse)
                    .map(|v| patch.notes = Field::from_option(v)),
                ExternalId::KEY => nullable_text(key, value, ExternalId::parse)
                    .map(|v| patch.external_id = Field::from_option(v)),
                BANNED_KEY => banned(value).map(|v| patch.banned = Some(v)),
                Created::KEY => created(value).map(|v| patch.created = Some(v)),
                VisitorId::KEY => id_echo(value).map(|v| patch.id = Field::from_option(v)),
                _ => Err(unknown_key(key)),
            };
            if let Err(error) = outcome {
                errors.add(key.as_str(), error);
            }
        }
        (patch, errors)
    }

    /// True when applying the patch can change nothing.
    pub fn changes_nothing(&self) -> bool {
        self.name.is_absent()
            && self.email.is_absent()
            && self.phone.is_absent()
            && self.banned.is_none()
            && self.created.is_none()
    }

    /// True when the patch sends back any read-only key, so it must be compared with the stored
    /// visitor.
    pub fn echoes_read_only_keys(&self) -> bool {
        !(self.id.is_absent() && self.external_id.is_absent() && self.notes.is_absent())
    }

    /// Checks the read-only keys against the stored visitor: each one sent must equal the stored
    /// value. Returns every key that differs.
    pub fn check_read_only(&self, current: &Visitor) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if !self.id.agrees_with(Some(&current.id.get())) {
            errors.add(VisitorId::KEY, read_only(VisitorId::KEY));
        }
        if !self.external_id.agrees_with(current.external_id.as_ref()) {
            errors.add(ExternalId::KEY, read_only(ExternalId::KEY));
        }
        if !self.notes.agrees_with(current.notes.as_ref()) {
            errors.add(Notes::KEY, read_only(Notes::KEY));
        }
        errors.into_result(())
    }

    /// Applies the patch to the stored visitor: the visitor after the change, or every rule the
    /// change breaks. `current` is never modified; on error nothing changes.
    pub fn apply_to(&self, current: &Visitor) -> Result<Visitor, ValidationErrors> {
        self.check_read_only(current)?;
        Ok(Visitor {
            banned: self.banned.unwrap_or(current.banned),
            created: self.created.unwrap_or(current.created),
            email: self.email.merged(&current.email),
            external_id: current.external_id.clone(),
            id: current.id,
            name: self.name.merged(&current.name),
            notes: current.notes.clone(),
            phone: self.phone.merged(&current.phone),
        })
    }
}

/// The command that creates a visitor or changes the one with its `external_id` (the body of
/// Zendesk's `create_or_update`): the same body read both ways.
///
/// As a create it keeps every rule of [`NewVisitor`] (`id` is refused); as a change it is the
/// [`VisitorPatch`] of the keys sent, so `notes` must equal the stored value and a key left out
/// keeps its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitorUpsert {
    /// The key the visitor is found by: matched exactly.
    pub external_id: ExternalId,
    /// The visitor to create when none has `external_id`.
    pub new: NewVisitor,
    /// The change to apply when one has it.
    pub patch: VisitorPatch,
}

impl VisitorUpsert {
    /// Parses a create-or-update body: a create body ([`NewVisitor::from_json`]) whose
    /// `external_id` is required. The error holds every offending key.
    pub fn from_json(body: &Map<String, Value>) -> Result<Self, ValidationErrors> {
        let new = NewVisitor::from_json(body);
        let mut errors = match &new {
            Ok(_) => ValidationErrors::new(),
            Err(errors) => errors.clone(),
        };
        let external_id = new.as_ref().ok().and_then(|new| new.external_id.clone());
        let missing = match body.get(ExternalId::KEY) {
            None | Some(Value::Null) => true,
            Some(_) => false,
        };
        if missing {
            errors.add(
                ExternalId::KEY,
                FieldError::new(
                    ErrorCode::Required,
                    "external_id is required: it says which visitor to create or update",
                ),
            );
        }
        match (new, external_id) {
            // A valid create body with an external_id: no error was found.
            (Ok(new), Some(external_id)) => {
                // Every key passed the create's rules, so the patch's own parse cannot fail.
                let (patch, _) = VisitorPatch::from_json_partial(body);
                Ok(Self {
                    external_id,
                    new,
                    patch,
                })
            }
            _ => Err(errors),
        }
    }
}

const BANNED_KEY: &str = "banned";

fn unknown_key(key: &str) -> FieldError {
    FieldError::new(
        ErrorCode::UnknownField,
        format!("{key} is not a visitor key; the keys are banned, created, email, external_id, id, name, notes, phone"),
    )
}

fn read_only(key: &str) -> FieldError {
    FieldError::new(
        ErrorCode::ReadOnly,
        format!("{key} is read-only: it can be sent back unchanged but not changed"),
    )
}

fn nullable_text<T>(
    key: &str,
    value: &Value,
    parse: fn(String) -> Result<T, FieldError>,
) -> Result<Option<T>, FieldError>
where
    T: Sized,
{
    match value {
        Value::Null => Ok(None),
        Value::String(text) => parse(text.clone()).map(Some),
        _ => Err(FieldError::new(
            ErrorCode::InvalidType,
            format!("{key} must be a string or null"),
        )),
    }
}

fn banned(value: &Value) -> Result<bool, FieldError> {
    value.as_bool().ok_or_else(|| {
        FieldError::new(
            ErrorCode::InvalidType,
            "banned must be true or false (null is not allowed)",
        )
    })
}

fn created(value: &Value) -> Result<Created, FieldError> {
    match value {
        Value::String(text) => Created::parse(text),
        _ => Err(FieldError::new(
            ErrorCode::InvalidType,
            "created must be an RFC 3339 date-time string (null is not allowed)",
        )),
    }
}

fn id_echo(value: &Value) -> Result<Option<i64>, FieldError> {
    match value {
        Value::Null => Ok(None),
        Value::Number(number) => number
            .as_i64()
            .map(Some)
            .ok_or_else(|| FieldError::new(ErrorCode::InvalidType, "id must be a 64-bit integer")),
        _ => Err(FieldError::new(
            ErrorCode::InvalidType,
            "id must be a 64-bit integer",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn create(value: Value) -> Result<NewVisitor, ValidationErrors> {
        NewVisitor::from_json(&object(value))
    }

    fn patch(value: Value) -> Result<VisitorPatch, ValidationErrors> {
        VisitorPatch::from_json(&object(value))
    }

    fn codes(errors: &ValidationErrors, key: &str) -> Vec<ErrorCode> {
        errors
            .get(key)
            .unwrap_or_default()
            .iter()
            .map(|e| e.code)
            .collect()
    }

    fn stored() -> Visitor {
        create(json!({
            "name": "Visitor 1",
            "email": "visitor1@example.com",
            "phone": "+65 12345678",
            "notes": "This visitor is really cool.",
            "external_id": "john_extid",
            "created": "2014-09-01T10:29:59Z"
        }))
        .unwrap()
        .into_visitor(VisitorId::new(7).unwrap(), Created::now())
    }

    #[test]
    fn empty_create_gives_defaults() {
        let new = create(json!({})).unwrap();
        assert_eq!(new, NewVisitor::default());
        let now = Created::parse("2020-01-01T00:00:00Z").unwrap();
        let visitor = new.into_visitor(VisitorId::new(1).unwrap(), now);
        assert!(!visitor.banned);
        assert_eq!(visitor.created, now);
    }

    #[test]
    fn create_reports_every_offending_key() {
        let errors = create(json!({
            "id": 3,
            "name": "",
            "email": "[email protected]",
            "phone": "call me",
            "banned": "yes",
            "created": null,
            "colour": "blue",
            "notes": 5
        }))
        .unwrap_err();
        assert_eq!(codes(&errors, "id"), [ErrorCode::ReadOnly]);
        assert_eq!(codes(&errors, "name"), [ErrorCode::Blank]);
        assert_eq!(codes(&errors, "email"), [ErrorCode::InvalidFormat]);
        assert_eq!(codes(&errors, "phone"), [ErrorCode::InvalidFormat]);
        assert_eq!(codes(&errors, "banned"), [ErrorCode::InvalidType]);
        assert_eq!(codes(&errors, "created"), [ErrorCode::InvalidType]);
        assert_eq!(codes(&errors, "colour"), [ErrorCode::UnknownField]);
        assert_eq!(codes(&errors, "notes"), [ErrorCode::InvalidType]);
        assert_eq!(errors.keys().count(), 8);
    }

    #[test]
    fn null_means_no_value_for_text_keys_and_is_refused_for_banned() {
        let new = create(
            json!({"name": null, "email": null, "phone": null, "notes": null, "external_id": null}),
        )
        .unwrap();
        assert_eq!(new, NewVisitor::default());
        let errors = create(json!({"banned": null})).unwrap_err();
        assert_eq!(codes(&errors, "banned"), [ErrorCode::InvalidType]);
    }

    #[test]
    fn keys_are_case_sensitive() {
        let errors = create(json!({"Name": "x"})).unwrap_err();
        assert_eq!(codes(&errors, "Name"), [ErrorCode::UnknownField]);
    }

    #[test]
    fn update_merges_and_clears() {
        let current = stored();
        let next = patch(json!({"name": "John", "phone": null, "banned": true}))
            .unwrap()
            .apply_to(&current)
            .unwrap();
        assert_eq!(next.name.as_ref().map(Name::as_str), Some("John"));
        assert_eq!(next.phone, None);
        assert!(next.banned);
        assert_eq!(next.email, current.email);
        assert_eq!(next.created, current.created);
        assert_eq!(next.notes, current.notes);
    }

    #[test]
    fn empty_update_changes_nothing() {
        let current = stored();
        let empty = patch(json!({})).unwrap();
        assert!(empty.changes_nothing());
        assert_eq!(empty.apply_to(&current).unwrap(), current);
    }

    #[test]
    fn the_object_read_can_be_sent_back() {
        let current = stored();
        let echoed = object(serde_json::to_value(&current).unwrap());
        let next = VisitorPatch::from_json(&echoed)
            .unwrap()
            .apply_to(&current)
            .unwrap();
        assert_eq!(next, current);
    }

    #[test]
    fn read_only_keys_cannot_change() {
        let current = stored();
        let errors =
            patch(json!({"id": 8, "external_id": "other", "notes": "other", "name": "ok"}))
                .unwrap()
                .apply_to(&current)
                .unwrap_err();
        assert_eq!(
            errors.keys().collect::<Vec<_>>(),
            ["external_id", "id", "notes"]
        );
        for key in ["external_id", "id", "notes"] {
            assert_eq!(codes(&errors, key), [ErrorCode::ReadOnly]);
        }
        let errors = patch(json!({"notes": null}))
            .unwrap()
            .apply_to(&current)
            .unwrap_err();
        assert_eq!(codes(&errors, "notes"), [ErrorCode::ReadOnly]);
    }

    #[test]
    fn read_only_keys_that_are_null_accept_null_only() {
        let mut current = stored();
        current.external_id = None;
        current.notes = None;
        assert!(patch(json!({"external_id": null, "notes": null}))
            .unwrap()
            .apply_to(&current)
            .is_ok());
        let errors = patch(json!({"external_id": "new"}))
            .unwrap()
            .apply_to(&current)
            .unwrap_err();
        assert_eq!(codes(&errors, "external_id"), [ErrorCode::ReadOnly]);
    }

    #[test]
    fn update_refuses_null_banned_and_created_and_unknown_keys() {
        let errors = patch(json!({"banned": null, "created": null, "extra": 1})).unwrap_err();
        assert_eq!(codes(&errors, "banned"), [ErrorCode::InvalidType]);
        assert_eq!(codes(&errors, "created"), [ErrorCode::InvalidType]);
        assert_eq!(codes(&errors, "extra"), [ErrorCode::UnknownField]);
        let errors = patch(json!({"id": "7"})).unwrap_err();
        assert_eq!(codes(&errors, "id"), [ErrorCode::InvalidType]);
    }

    #[test]
    fn errors_serialise_as_the_details_object() {
        let errors = create(json!({"email": "nope"})).unwrap_err();
        assert_eq!(
            serde_json::to_value(errors).unwrap(),
            json!({"email": [{"error": "InvalidFormat", "description": "email is not a valid e-mail address"}]})
        );
    }

    fn text(max: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::char::any(), 1..=max.min(40))
            .prop_map(|chars| chars.into_iter().filter(|c| *c != '\0').collect::<String>())
            .prop_filter("non-empty", |s| !s.is_empty())
    }

    prop_compose! {
        fn valid_new_visitor()(
            name in proptest::option::of(text(255)),
            email in proptest::option::of("[a-z0-9]{1,20}@[a-z]{1,20}\\.(com|org|io)"),
            phone in proptest::option::of("\\+?[0-9][0-9 ()\\-.]{0,30}"),
            notes in proptest::option::of(proptest::string::string_regex("[^\\x00]{0,60}").unwrap()),
            external_id in proptest::option::of(text(255)),
            banned in any::<bool>(),
            created in proptest::option::of((0i64..253_402_300_799, 0u32..1_000_000)),
        ) -> NewVisitor {
            NewVisitor {
                name: name.map(|v| Name::parse(v).unwrap()),
                email: email.map(|v| Email::parse(v).unwrap()),
                phone: phone.map(|v| Phone::parse(v).unwrap()),
                notes: notes.map(|v| Notes::parse(v).unwrap()),
                external_id: external_id.map(|v| ExternalId::parse(v).unwrap()),
                banned,
                created: created.map(|(secs, micros)| {
                    let dt = chrono::DateTime::from_timestamp(secs, micros * 1_000).unwrap();
                    Created::from_datetime(dt).unwrap()
                }),
            }
        }
    }

    fn any_patch_body() -> impl Strategy<Value = Map<String, Value>> {
        let value = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[a-zA-Z0-9 @.+]{0,12}".prop_map(Value::String),
            Just(json!("visitor1@example.com")),
            Just(json!("2014-09-01T10:29:59Z")),
            Just(json!("john_extid")),
        ];
        let key = prop_oneof![
            Just("name"),
            Just("email"),
            Just("phone"),
            Just("notes"),
            Just("external_id"),
            Just("banned"),
            Just("created"),
            Just("id"),
            Just("other"),
        ];
        proptest::collection::btree_map(key, value, 0..6)
            .prop_map(|map| map.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    proptest! {
        #[test]
        fn any_valid_create_round_trips_through_json(new in valid_new_visitor()) {
            let body = object(serde_json::to_value(&new).unwrap());
            let text = serde_json::to_string(&body).unwrap();
            let reparsed: Map<String, Value> = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(NewVisitor::from_json(&reparsed).unwrap(), new.clone());
            let visitor = new.into_visitor(VisitorId::new(1).unwrap(), Created::now());
            let back: Visitor = serde_json::from_str(&serde_json::to_string(&visitor).unwrap()).unwrap();
            prop_assert_eq!(back, visitor);
        }

        #[test]
        fn a_patch_never_changes_id_external_id_or_notes(body in any_patch_body()) {
            let current = stored();
            if let Ok(patch) = VisitorPatch::from_json(&body) {
                match patch.apply_to(&current) {
                    Ok(next) => {
                        prop_assert_eq!(next.id, current.id);
                        prop_assert_eq!(&next.external_id, &current.external_id);
                        prop_assert_eq!(&next.notes, &current.notes);
                    }
                    Err(errors) => prop_assert!(!errors.is_empty()),
                }
            }
        }

        #[test]
        fn a_patch_that_breaks_a_rule_names_every_offending_key(body in any_patch_body()) {
            let current = stored();
            let outcome = VisitorPatch::from_json(&body).and_then(|p| p.apply_to(&current));
            if let Err(errors) = outcome {
                for key in errors.keys() {
                    prop_assert!(body.contains_key(key), "{key} was not sent");
                }
            }
        }
    }

    #[test]
    fn field_says_when_it_was_not_sent() {
        assert!(Field::<Name>::Absent.is_absent());
        assert!(!Field::<Name>::Null.is_absent());
        assert!(!Field::Value(Name::parse("A").unwrap()).is_absent());
    }

    #[test]
    fn a_patch_changes_nothing_only_without_mutable_keys() {
        let patch = |body: Value| VisitorPatch::from_json(&object(body)).unwrap();
        assert!(patch(json!({})).changes_nothing());
        assert!(patch(json!({"id": 1, "notes": "n", "external_id": "e"})).changes_nothing());
        for body in [
            json!({"name": "A"}),
            json!({"email": null}),
            json!({"phone": "1"}),
            json!({"banned": false}),
            json!({"created": "2014-09-01T10:29:59Z"}),
        ] {
            assert!(!patch(body.clone()).changes_nothing(), "{body}");
        }
    }

    #[test]
    fn a_patch_echoes_read_only_keys_when_any_is_sent() {
        let patch = |body: Value| VisitorPatch::from_json(&object(body)).unwrap();
        assert!(!patch(json!({})).echoes_read_only_keys());
        assert!(!patch(json!({"name": "A", "banned": true})).echoes_read_only_keys());
        for body in [
            json!({"id": 1}),
            json!({"id": null}),
            json!({"notes": null}),
            json!({"external_id": "e"}),
        ] {
            assert!(patch(body.clone()).echoes_read_only_keys(), "{body}");
        }
    }

    #[test]
    fn a_null_id_is_an_echo_that_never_agrees() {
        let patch = VisitorPatch::from_json(&object(json!({"id": null}))).unwrap();
        assert_eq!(patch.id, Field::Null);
        let visitor =
            NewVisitor::default().into_visitor(VisitorId::new(3).unwrap(), Created::now());
        let errors = patch.apply_to(&visitor).unwrap_err();
        assert_eq!(errors.get("id").unwrap()[0].code, ErrorCode::ReadOnly);
        let echoed = VisitorPatch::from_json(&object(json!({"id": 3}))).unwrap();
        assert_eq!(echoed.apply_to(&visitor), Ok(visitor));
    }

    fn upsert(value: Value) -> Result<VisitorUpsert, ValidationErrors> {
        VisitorUpsert::from_json(&object(value))
    }

    #[test]
    fn an_upsert_needs_its_external_id() {
        for body in [json!({}), json!({"external_id": null, "name": "A"})] {
            let errors = upsert(body.clone()).unwrap_err();
            assert_eq!(
                codes(&errors, "external_id"),
                [ErrorCode::Required],
                "{body}"
            );
        }
        let errors = upsert(json!({"id": 1, "email": "nope"})).unwrap_err();
        assert_eq!(codes(&errors, "id"), [ErrorCode::ReadOnly]);
        assert_eq!(codes(&errors, "email"), [ErrorCode::InvalidFormat]);
        assert_eq!(codes(&errors, "external_id"), [ErrorCode::Required]);
        let errors = upsert(json!({"external_id": 7})).unwrap_err();
        assert_eq!(codes(&errors, "external_id"), [ErrorCode::InvalidType]);
    }

    #[test]
    fn an_upsert_reads_its_body_as_a_create_and_as_a_patch() {
        let parsed = upsert(json!({"external_id": "crm-1", "name": "A", "phone": null})).unwrap();
        assert_eq!(parsed.external_id.as_str(), "crm-1");
        assert_eq!(parsed.new.name.as_ref().map(Name::as_str), Some("A"));
        assert!(!parsed.new.banned);
        assert_eq!(parsed.patch.phone, Field::Null);
        assert!(parsed.patch.email.is_absent());
        assert_eq!(parsed.patch.banned, None);
        assert_eq!(
            parsed.patch.external_id,
            Field::Value(parsed.external_id.clone())
        );
    }
}
