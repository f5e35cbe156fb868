//! What List Visitors can filter on, and what each filter accepts: an exact `external_id`, an
//! `email` matched ignoring ASCII case, and `banned`.

use crate::error::{ErrorCode, FieldError, ValidationErrors};
use crate::fields::{check_text, ExternalId, EMAIL_MAX_CHARS};
use crate::visitor::Visitor;

/// The filters of a list of visitors; a visitor is listed when it matches every filter given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VisitorFilter {
    /// Exactly this external id.
    pub external_id: Option<ExternalId>,
    /// This e-mail address, ignoring ASCII case; kept folded to ASCII lower case.
    email: Option<String>,
    /// Banned or not.
    pub banned: Option<bool>,
}

impl VisitorFilter {
    /// The query keys that are filters.
    pub const KEYS: [&'static str; 3] = ["external_id", "email", "banned"];

    /// True for a key that names a filter.
    pub fn is_filter_key(key: &str) -> bool {
        Self::KEYS.contains(&key)
    }

    /// Parses the filters from `(key, value)` pairs, all of which must be filter keys. Every
    /// offending key is reported: a value that breaks its rule, or a key given twice.
    ///
    /// `external_id` follows the rule of a stored external id (1..=255 characters); `email` is
    /// any text of 1..=254 characters (an address that is not valid simply matches nothing);
    /// `banned` is `true` or `false`. No value may hold the NUL character.
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ValidationErrors> {
        let mut filter = Self::default();
        let mut errors = ValidationErrors::new();
        let mut seen: Vec<&str> = Vec::new();
        for (key, value) in pairs {
            if seen.contains(&key) {
                errors.add(
                    key,
                    FieldError::new(
                        ErrorCode::Duplicate,
                        format!("{key} is given more than once"),
                    ),
                );
                continue;
            }
            seen.push(key);
            let outcome = match key {
                "external_id" => ExternalId::parse(value).map(|v| filter.external_id = Some(v)),
                "email" => email_filter(value).map(|v| filter.email = Some(v)),
                "banned" => banned_filter(value).map(|v| filter.banned = Some(v)),
                other => Err(FieldError::new(
                    ErrorCode::UnknownField,
                    format!("{other} is not a filter; the filters are external_id, email, banned"),
                )),
            };
            if let Err(error) = outcome {
                errors.add(key, error);
            }
        }
        errors.into_result(filter)
    }

    /// A filter on one e-mail address, ignoring ASCII case.
    pub fn with_email(mut self, email: &str) -> Result<Self, FieldError> {
        self.email = Some(email_filter(email)?);
        Ok(self)
    }

    /// The e-mail address filtered on, folded to ASCII lower case.
    pub fn email_folded(&self) -> Option<&str> {
        self.email.as_deref()
    }

    /// True when no filter is set: every visitor matches.
    pub fn is_empty(&self) -> bool {
        self.external_id.is_none() && self.email.is_none() && self.banned.is_none()
    }

    /// True when the visitor matches every filter given.
    pub fn matches(&self, visitor: &Visitor) -> bool {
        let external_id = self
            .external_id
            .as_ref()
            .is_none_or(|wanted| visitor.external_id.as_ref() == Some(wanted));
        let email = self.email.as_deref().is_none_or(|wanted| {
            visitor
                .email
                .as_ref()
                .is_some_and(|email| email.as_str().eq_ignore_ascii_case(wanted))
        });
        let banned = self.banned.is_none_or(|wanted| visitor.banned == wanted);
        external_id && email && banned
    }

    /// A canonical text of the filters (the e-mail folded), equal for two filters exactly when
    /// they select the same visitors; cursors are bound to it.
    pub fn canonical(&self) -> String {
        let mut text = String::new();
        for (key, value) in [
            ("banned", self.banned.map(|b| b.to_string())),
            ("email", self.email.clone()),
            (
                "external_id",
                self.external_id.as_ref().map(|v| v.as_str().to_owned()),
            ),
        ] {
            if let Some(value) = value {
                // Length-prefixed, so no value can imitate another key.
                text.push_str(&format!("{key}:{}:{value};", value.len()));
            }
        }
        text
    }
}

fn email_filter(value: &str) -> Result<String, FieldError> {
    check_text("email", value, 1, EMAIL_MAX_CHARS)?;
    Ok(value.to_ascii_lowercase())
}

fn banned_filter(value: &str) -> Result<bool, FieldError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(FieldError::new(
            ErrorCode::InvalidFormat,
            "banned must be true or false",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::{Created, Email, VisitorId};

    fn visitor(email: Option<&str>, external_id: Option<&str>, banned: bool) -> Visitor {
        Visitor {
            banned,
            created: Created::now(),
            email: email.map(|e| Email::parse(e).unwrap()),
            external_id: external_id.map(|e| ExternalId::parse(e).unwrap()),
            id: VisitorId::new(1).unwrap(),
            name: None,
            notes: None,
            phone: None,
        }
    }

    #[test]
    fn an_empty_filter_matches_everyone() {
        let filter = VisitorFilter::parse([]).unwrap();
        assert!(filter.is_empty());
        assert!(filter.matches(&visitor(None, None, true)));
        assert_eq!(filter.canonical(), "");
    }

    #[test]
    fn email_ignores_ascii_case_only() {
        let filter = VisitorFilter::parse([("email", "Visitor1@EXAMPLE.com")]).unwrap();
        assert_eq!(filter.email_folded(), Some("visitor1@example.com"));
        assert!(filter.matches(&visitor(Some("VISITOR1@example.COM"), None, false)));
        assert!(!filter.matches(&visitor(Some("visitor2@example.com"), None, false)));
        assert!(!filter.matches(&visitor(None, None, false)));
        let accented = VisitorFilter::parse([("email", "É@Example.com")]).unwrap();
        assert_eq!(accented.email_folded(), Some("É@example.com"));
    }

    #[test]
    fn external_id_is_exact_and_banned_is_a_boolean() {
        let filter = VisitorFilter::parse([("external_id", "abc"), ("banned", "true")]).unwrap();
        assert!(filter.matches(&visitor(None, Some("abc"), true)));
        assert!(!filter.matches(&visitor(None, Some("ABC"), true)));
        assert!(!filter.matches(&visitor(None, Some("abc"), false)));
        assert!(!filter.matches(&visitor(None, None, true)));
        assert_eq!(filter.canonical(), "banned:4:true;external_id:3:abc;");
        assert!(!filter.is_empty());
    }

    #[test]
    fn every_bad_value_and_repeated_key_is_named() {
        let errors = VisitorFilter::parse([
            ("banned", "yes"),
            ("external_id", ""),
            ("email", "a\0b"),
            ("other", "x"),
        ])
        .unwrap_err();
        assert_eq!(
            errors.keys().collect::<Vec<_>>(),
            ["banned", "email", "external_id", "other"]
        );
        let errors = VisitorFilter::parse([("banned", "true"), ("banned", "false")]).unwrap_err();
        assert_eq!(errors.get("banned").unwrap()[0].code, ErrorCode::Duplicate);
        let long = "a".repeat(EMAIL_MAX_CHARS + 1);
        let errors = VisitorFilter::parse([("email", long.as_str())]).unwrap_err();
        assert_eq!(errors.get("email").unwrap()[0].code, ErrorCode::TooLong);
        assert_eq!(
            VisitorFilter::parse([("email", "")])
                .unwrap_err()
                .get("email")
                .unwrap()[0]
                .code,
            ErrorCode::Blank
        );
    }

    #[test]
    fn canonical_text_tells_filters_apart() {
        let a = VisitorFilter::parse([("email", "A@x.io")]).unwrap();
        let b = VisitorFilter::parse([("email", "a@X.IO")]).unwrap();
        let c = VisitorFilter::parse([("external_id", "a@x.io")]).unwrap();
        assert_eq!(a.canonical(), b.canonical());
        assert_ne!(a.canonical(), c.canonical());
        assert_eq!(VisitorFilter::default().with_email("A@x.io").unwrap(), a);
    }

    #[test]
    fn only_the_three_filters_are_filter_keys() {
        for key in VisitorFilter::KEYS {
            assert!(VisitorFilter::is_filter_key(key));
        }
        for key in ["page[size]", "sort", "name", "", "Email"] {
            assert!(!VisitorFilter::is_filter_key(key), "{key}");
        }
    }

    #[test]
    fn any_one_filter_makes_it_not_empty() {
        for pair in [
            ("external_id", "e"),
            ("email", "a@b.io"),
            ("banned", "false"),
        ] {
            let filter = VisitorFilter::parse([pair]).unwrap();
            assert!(!filter.is_empty(), "{pair:?}");
        }
        assert_eq!(
            VisitorFilter::parse([("banned", "false")]).unwrap().banned,
            Some(false)
        );
        assert_eq!(
            VisitorFilter::parse([("banned", "true")]).unwrap().banned,
            Some(true)
        );
    }

    #[test]
    fn an_email_filter_may_be_as_long_as_an_address() {
        let longest = "a".repeat(EMAIL_MAX_CHARS);
        assert!(VisitorFilter::parse([("email", longest.as_str())]).is_ok());
    }
}
