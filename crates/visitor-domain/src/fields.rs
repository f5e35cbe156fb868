//! The constrained values of a visitor, one newtype each: a value that breaks a rule cannot exist.

use std::fmt;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize};
use validator::ValidateEmail;

use crate::error::{ErrorCode, FieldError};

/// Most characters (Unicode scalar values) in a name.
pub const NAME_MAX_CHARS: usize = 255;
/// Most characters in an e-mail address.
pub const EMAIL_MAX_CHARS: usize = 254;
/// Most characters in a phone number.
pub const PHONE_MAX_CHARS: usize = 32;
/// Most characters in the notes.
pub const NOTES_MAX_CHARS: usize = 10_000;
/// Most characters in an external id.
pub const EXTERNAL_ID_MAX_CHARS: usize = 255;
/// The characters a phone number may hold besides digits.
pub const PHONE_PUNCTUATION: &str = " +-().";

/// Checks the rules every stored string shares: length in Unicode scalar values and no NUL
/// character (no database can store it, and no client means it).
pub(crate) fn check_text(key: &str, value: &str, min: usize, max: usize) -> Result<(), FieldError> {
    let chars = value.chars().count();
    if chars < min {
        return Err(FieldError::new(
            ErrorCode::Blank,
            format!("{key} must not be empty"),
        ));
    }
    if chars > max {
        return Err(FieldError::new(
            ErrorCode::TooLong,
            format!("{key} must be at most {max} characters (it has {chars})"),
        ));
    }
    if value.contains('\0') {
        return Err(FieldError::new(
            ErrorCode::InvalidFormat,
            format!("{key} must not contain the NUL character"),
        ));
    }
    Ok(())
}

/// Defines a string newtype whose only constructor is `parse`, which applies `check_text` and
/// then `$extra` (a `fn(&str) -> Result<(), FieldError>`).
macro_rules! text_field {
    ($(#[$doc:meta])* $name:ident, $key:literal, $min:expr, $max:expr, $extra:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(Box<str>);

        /// Written as the string it holds, without a copy.
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl $name {
            /// The key this value is stored under.
            pub const KEY: &'static str = $key;

            /// Accepts the value if it keeps every rule of its key.
            pub fn parse(value: impl Into<String>) -> Result<Self, FieldError> {
                let value = value.into();
                check_text($key, &value, $min, $max)?;
                let extra: fn(&str) -> Result<(), FieldError> = $extra;
                extra(&value)?;
                // A boxed str: no spare capacity, 16 bytes inline (stores keep many of these).
                Ok(Self(value.into_boxed_str()))
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The text, given up as a `String`.
            pub fn into_inner(self) -> String {
                self.0.into_string()
            }
        }

        impl TryFrom<String> for $name {
            type Error = FieldError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0.into_string()
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

fn no_extra_rule(_: &str) -> Result<(), FieldError> {
    Ok(())
}

/// The characters `validator` allows in the part of an address before the `@`, besides ASCII
/// letters and digits.
const EMAIL_LOCAL_PUNCTUATION: &[u8] = b".!#$%&'*+/=?^_`{|}~-";

/// `validator`'s e-mail rule for the plain addresses nearly every client sends, without its
/// regular expressions (they cost more than the rest of a row's decoding): an ASCII local part
/// of 1 to 64 characters, `@`, and host-name labels of 1 to 63 letters, digits and inner hyphens.
/// It never accepts what `validator` refuses; what it does not accept (international domains,
/// address literals, mistakes) goes to `validator` itself.
fn plain_email(value: &str) -> bool {
    let Some((local, domain)) = value.rsplit_once('@') else {
        return false;
    };
    let local_ok = (1..=64).contains(&local.len())
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || EMAIL_LOCAL_PUNCTUATION.contains(&b));
    let label_ok = |label: &str| {
        let bytes = label.as_bytes();
        match (bytes.first(), bytes.last()) {
            (Some(first), Some(last)) => {
                bytes.len() <= 63
                    && first.is_ascii_alphanumeric()
                    && last.is_ascii_alphanumeric()
                    && bytes
                        .iter()
                        .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            }
            _ => false,
        }
    };
    local_ok && domain.len() <= 255 && domain.split('.').all(label_ok)
}

fn email_rule(value: &str) -> Result<(), FieldError> {
    if plain_email(value) || value.validate_email() {
        Ok(())
    } else {
        Err(FieldError::new(
            ErrorCode::InvalidFormat,
            "email is not a valid e-mail address",
        ))
    }
}

fn phone_rule(value: &str) -> Result<(), FieldError> {
    let allowed = |c: char| c.is_ascii_digit() || PHONE_PUNCTUATION.contains(c);
    if value.chars().all(allowed) && value.chars().any(|c| c.is_ascii_digit()) {
        Ok(())
    } else {
        Err(FieldError::new(
            ErrorCode::InvalidFormat,
            format!(
                "phone must hold at least one digit and only digits and the characters \"{PHONE_PUNCTUATION}\""
            ),
        ))
    }
}

text_field!(
    /// The name shown for the visitor: 1 to 255 characters.
    Name, "name", 1, NAME_MAX_CHARS, no_extra_rule
);
text_field!(
    /// A valid e-mail address of at most 254 characters.
    Email, "email", 1, EMAIL_MAX_CHARS, email_rule
);
text_field!(
    /// A phone number: 1 to 32 characters, digits and ` +-().`, at least one digit.
    Phone, "phone", 1, PHONE_MAX_CHARS, phone_rule
);
text_field!(
    /// Notes about the visitor: 0 to 10,000 characters (an empty string is kept).
    Notes, "notes", 0, NOTES_MAX_CHARS, no_extra_rule
);
text_field!(
    /// The visitor's id in another system: 1 to 255 characters, unique among visitors.
    ExternalId, "external_id", 1, EXTERNAL_ID_MAX_CHARS, no_extra_rule
);

/// A visitor's id: a positive 64-bit integer assigned by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct VisitorId(i64);

impl VisitorId {
    /// The key this value is stored under.
    pub const KEY: &'static str = "id";

    /// Accepts a positive value.
    pub fn new(value: i64) -> Result<Self, FieldError> {
        if value > 0 {
            Ok(Self(value))
        } else {
            Err(FieldError::new(
                ErrorCode::InvalidFormat,
                "id must be a positive integer",
            ))
        }
    }

    /// Parses a path segment: ASCII digits only, a positive value that fits 64 bits.
    pub fn parse_str(value: &str) -> Result<Self, FieldError> {
        let invalid = || {
            FieldError::new(
                ErrorCode::InvalidFormat,
                "visitor_id must be a positive 64-bit integer",
            )
        };
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        value
            .parse::<i64>()
            .ok()
            .and_then(|n| Self::new(n).ok())
            .ok_or_else(invalid)
    }

    /// The id as a number.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for VisitorId {
    type Error = FieldError;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<VisitorId> for i64 {
    fn from(value: VisitorId) -> Self {
        value.0
    }
}

impl fmt::Display for VisitorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// When the visitor was created: a UTC instant with at most microsecond precision, in the
/// years 0000 to 9999 so that it always prints as RFC 3339.
///
/// Parsed from RFC 3339 with any offset; printed in UTC with a `Z`, with fractional seconds only
/// when they are not zero (`2014-09-01T10:29:59Z`, `2014-09-01T10:29:59.250Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct Created(DateTime<Utc>);

/// Written as its wire form, formatted on the stack (no string in between).
impl Serialize for Created {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.wire_form().as_str())
    }
}

/// The wire form of a [`Created`], `YYYY-MM-DDTHH:MM:SS[.fff|.ffffff]Z`, held on the stack.
struct WireForm {
    bytes: [u8; 27],
    len: usize,
}

impl WireForm {
    fn as_str(&self) -> &str {
        // Only ASCII digits and punctuation are ever written.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

/// Writes `value` as `out.len()` decimal digits, zero-padded (the value always fits).
fn put_digits(out: &mut [u8], mut value: u32) {
    for digit in out.iter_mut().rev() {
        // `value % 10` is below 10, so the cast keeps it whole.
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

impl Created {
    /// The key this value is stored under.
    pub const KEY: &'static str = "created";

    /// The current time, in whole seconds (the default for a new visitor).
    pub fn now() -> Self {
        let now = Utc::now();
        Self(now.with_nanosecond(0).unwrap_or(now))
    }

    /// Parses an RFC 3339 date-time with any offset.
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        let parsed = DateTime::parse_from_rfc3339(value).map_err(|_| {
            FieldError::new(
                ErrorCode::InvalidFormat,
                "created must be an RFC 3339 date-time, e.g. 2014-09-01T10:29:59Z",
            )
        })?;
        Self::from_datetime(parsed.with_timezone(&Utc))
    }

    /// Accepts an instant in the years 0000 to 9999 (UTC), dropping precision below the
    /// microsecond. A leap second rolls over into the next minute.
    pub fn from_datetime(value: DateTime<Utc>) -> Result<Self, FieldError> {
        let nanos = value.nanosecond();
        let (carry, nanos) = if nanos >= 1_000_000_000 {
            (1, nanos - 1_000_000_000)
        } else {
            (0, nanos)
        };
        let micros_as_nanos = nanos / 1_000 * 1_000;
        let normalized = DateTime::from_timestamp(value.timestamp() + carry, micros_as_nanos)
            .filter(|dt| (0..=9999).contains(&dt.year()))
            .ok_or_else(|| {
                FieldError::new(
                    ErrorCode::InvalidFormat,
                    "created must fall in the years 0000 to 9999 (UTC)",
                )
            })?;
        Ok(Self(normalized))
    }

    /// The instant, in UTC.
    pub fn get(self) -> DateTime<Utc> {
        self.0
    }

    /// The wire form: UTC, `Z`, fractional seconds only when not zero.
    pub fn to_rfc3339(self) -> String {
        self.to_string()
    }
}

impl TryFrom<String> for Created {
    type Error = FieldError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Created> for String {
    fn from(value: Created) -> Self {
        value.to_rfc3339()
    }
}

/// The wire form, written field by field (a strftime pattern is parsed anew on every use):
/// fractional seconds in 3 or 6 digits, as few as the value needs, and none when zero.
impl fmt::Display for Created {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire_form().as_str())
    }
}

impl Created {
    fn wire_form(self) -> WireForm {
        let t = self.0;
        let mut bytes = *b"0000-00-00T00:00:00.000000Z";
        // `from_datetime` keeps the year in 0..=9999.
        put_digits(&mut bytes[0..4], t.year().unsigned_abs());
        put_digits(&mut bytes[5..7], t.month());
        put_digits(&mut bytes[8..10], t.day());
        put_digits(&mut bytes[11..13], t.hour());
        put_digits(&mut bytes[14..16], t.minute());
        put_digits(&mut bytes[17..19], t.second());
        // Whole microseconds below one second: `from_datetime` drops the rest and rolls a leap
        // second over.
        let micros = t.nanosecond() / 1_000;
        let len = match micros {
            0 => 19,
            _ if micros.is_multiple_of(1_000) => {
                put_digits(&mut bytes[20..23], micros / 1_000);
                23
            }
            _ => {
                put_digits(&mut bytes[20..26], micros);
                26
            }
        };
        bytes[len] = b'Z';
        WireForm {
            bytes,
            len: len + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code<T: fmt::Debug>(result: Result<T, FieldError>) -> ErrorCode {
        match result {
            Ok(value) => panic!("expected an error, got {value:?}"),
            Err(error) => error.code,
        }
    }

    #[test]
    fn name_length_is_counted_in_unicode_scalar_values() {
        assert!(Name::parse("é".repeat(NAME_MAX_CHARS)).is_ok());
        assert_eq!(
            code(Name::parse("é".repeat(NAME_MAX_CHARS + 1))),
            ErrorCode::TooLong
        );
        assert!(Name::parse("a").is_ok());
        assert_eq!(code(Name::parse("")), ErrorCode::Blank);
    }

    #[test]
    fn names_are_kept_exactly_as_sent() {
        let name = Name::parse("  Visitor 1 ").map(Name::into_inner);
        assert_eq!(name.ok().as_deref(), Some("  Visitor 1 "));
    }

    #[test]
    fn nul_is_refused_in_every_text_field() {
        assert_eq!(code(Name::parse("a\0b")), ErrorCode::InvalidFormat);
        assert_eq!(code(Notes::parse("\0")), ErrorCode::InvalidFormat);
        assert_eq!(code(ExternalId::parse("x\0")), ErrorCode::InvalidFormat);
    }

    /// The plain path agrees with `validator` on every ASCII string without an address literal,
    /// and never accepts what `validator` refuses.
    #[test]
    fn the_plain_email_path_agrees_with_validator() {
        use proptest::prelude::*;
        let alphabet = "[a-zA-Z0-9.@_+!~'-]{0,12}(@[a-zA-Z0-9.-]{0,70})?";
        let any = r"[a-zA-Z0-9.@\[\]:_+é-]{0,80}";
        proptest!(|(value in alphabet)| {
            prop_assert_eq!(plain_email(&value), value.validate_email(), "{}", value);
        });
        proptest!(|(value in any)| {
            prop_assert!(!plain_email(&value) || value.validate_email(), "{}", value);
        });
        let long_label = format!("a@{}.com", "b".repeat(63));
        let labels = ["b", "c", "d", "e"].map(|c| c.repeat(63)).join(".");
        let longest_domain = format!("a@{labels}");
        let longest_local = format!("{}@b.com", "a".repeat(64));
        for taken in [
            "visitor1@example.com",
            "a.b+c@sub-domain.example.co",
            &long_label,
            &longest_domain,
            &longest_local,
        ] {
            assert!(plain_email(taken) && taken.validate_email(), "{taken}");
        }
        let too_long_label = format!("a@{}.com", "b".repeat(64));
        let too_long_domain = format!("{longest_domain}.f");
        let too_long_local = format!("a{longest_local}");
        for refused in [
            "a@-b.com",
            "a@b-.com",
            "a@b..com",
            "a@",
            "@b.com",
            "a@b.",
            &too_long_label,
            &too_long_domain,
            &too_long_local,
        ] {
            assert!(
                !plain_email(refused) && !refused.validate_email(),
                "{refused}"
            );
        }
        for left_to_validator in ["a@[127.0.0.1]", "a@bücher.de"] {
            assert!(!plain_email(left_to_validator) && left_to_validator.validate_email());
        }
    }

    #[test]
    fn email_rules() {
        assert!(Email::parse("visitor1@example.com").is_ok());
        // Beyond the plain path: `validator` itself takes address literals and international
        // domain names.
        assert!(Email::parse("visitor@[127.0.0.1]").is_ok());
        assert!(Email::parse("visitor@bücher.de").is_ok());
        assert_eq!(
            code(Email::parse("[email protected]")),
            ErrorCode::InvalidFormat
        );
        assert_eq!(code(Email::parse("no-at-sign")), ErrorCode::InvalidFormat);
        assert_eq!(code(Email::parse("")), ErrorCode::Blank);
        // 254 characters in all: 64 in the local part, the rest in labels of at most 63.
        let domain = format!(
            "{}.{}.{}.com",
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(57)
        );
        let at_limit = format!("{}@{domain}", "a".repeat(64));
        assert_eq!(at_limit.chars().count(), EMAIL_MAX_CHARS);
        assert!(Email::parse(at_limit.clone()).is_ok());
        let over = format!("{}@{domain}x", "a".repeat(64));
        assert_eq!(code(Email::parse(over)), ErrorCode::TooLong);
    }

    #[test]
    fn phone_rules() {
        assert!(Phone::parse("+65 12345678").is_ok());
        assert!(Phone::parse("(555) 123-4567.8").is_ok());
        assert!(Phone::parse("1").is_ok());
        assert!(Phone::parse("1".repeat(PHONE_MAX_CHARS)).is_ok());
        assert_eq!(
            code(Phone::parse("1".repeat(PHONE_MAX_CHARS + 1))),
            ErrorCode::TooLong
        );
        assert_eq!(code(Phone::parse("+ ()-.")), ErrorCode::InvalidFormat);
        assert_eq!(code(Phone::parse("12a")), ErrorCode::InvalidFormat);
        assert_eq!(code(Phone::parse("١٢٣")), ErrorCode::InvalidFormat);
        assert_eq!(code(Phone::parse("")), ErrorCode::Blank);
    }

    #[test]
    fn notes_may_be_empty_and_hold_ten_thousand_characters() {
        assert_eq!(
            Notes::parse("").map(Notes::into_inner).ok().as_deref(),
            Some("")
        );
        assert!(Notes::parse("ü".repeat(NOTES_MAX_CHARS)).is_ok());
        assert_eq!(
            code(Notes::parse("ü".repeat(NOTES_MAX_CHARS + 1))),
            ErrorCode::TooLong
        );
    }

    #[test]
    fn external_id_rules() {
        assert!(ExternalId::parse("john_extid").is_ok());
        assert!(ExternalId::parse("x".repeat(EXTERNAL_ID_MAX_CHARS)).is_ok());
        assert_eq!(
            code(ExternalId::parse("x".repeat(EXTERNAL_ID_MAX_CHARS + 1))),
            ErrorCode::TooLong
        );
        assert_eq!(code(ExternalId::parse("")), ErrorCode::Blank);
    }

    #[test]
    fn visitor_ids_are_positive_64_bit_integers() {
        assert_eq!(VisitorId::parse_str("1").map(VisitorId::get).ok(), Some(1));
        assert_eq!(
            VisitorId::parse_str("9223372036854775807")
                .map(VisitorId::get)
                .ok(),
            Some(i64::MAX)
        );
        for bad in [
            "0",
            "-1",
            "+1",
            "",
            "1.0",
            "abc",
            "9223372036854775808",
            " 1",
        ] {
            assert!(VisitorId::parse_str(bad).is_err(), "{bad:?} accepted");
        }
        assert!(VisitorId::new(0).is_err());
    }

    #[test]
    fn created_is_written_in_utc_with_z() {
        let created = Created::parse("2014-09-01T12:29:59+02:00").map(Created::to_rfc3339);
        assert_eq!(created.ok().as_deref(), Some("2014-09-01T10:29:59Z"));
    }

    #[test]
    fn created_keeps_fractional_seconds_only_when_not_zero() {
        let cases = [
            ("2014-09-01T10:29:59.250Z", "2014-09-01T10:29:59.250Z"),
            ("2014-09-01T10:29:59.000Z", "2014-09-01T10:29:59Z"),
            ("2014-09-01T10:29:59.123456Z", "2014-09-01T10:29:59.123456Z"),
            (
                "2014-09-01T10:29:59.1234567Z",
                "2014-09-01T10:29:59.123456Z",
            ),
            ("2014-09-01T10:29:59.5-01:30", "2014-09-01T11:59:59.500Z"),
            ("0000-01-01T00:00:00.000001Z", "0000-01-01T00:00:00.000001Z"),
            ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"),
            ("0987-06-05T04:03:02.010Z", "0987-06-05T04:03:02.010Z"),
        ];
        for (input, expected) in cases {
            let written = Created::parse(input).map(Created::to_rfc3339);
            assert_eq!(written.ok().as_deref(), Some(expected), "input {input}");
        }
    }

    #[test]
    fn created_refuses_what_is_not_rfc_3339_or_leaves_four_digit_years() {
        for bad in [
            "2014-09-01",
            "2014-09-01 10:29:59",
            "2014-09-01T10:29:59",
            "yesterday",
            "2014-13-01T10:29:59Z",
            "9999-12-31T23:59:59-01:00",
        ] {
            assert_eq!(code(Created::parse(bad)), ErrorCode::InvalidFormat, "{bad}");
        }
        assert!(Created::parse("0000-01-01T00:00:00Z").is_ok());
    }

    #[test]
    fn a_leap_second_keeps_its_fraction_as_it_rolls_over() {
        let created = Created::parse("2016-12-31T23:59:60.25Z").map(Created::to_rfc3339);
        assert_eq!(created.as_deref(), Ok("2017-01-01T00:00:00.250Z"));
    }

    #[test]
    fn ids_and_dates_display_as_on_the_wire() {
        assert_eq!(VisitorId::new(42).unwrap().to_string(), "42");
        let created = Created::parse("2014-09-01T12:29:59.5+02:00").unwrap();
        assert_eq!(created.to_string(), "2014-09-01T10:29:59.500Z");
        assert_eq!(String::from(created), "2014-09-01T10:29:59.500Z");
        assert_eq!(Name::parse("Ann").unwrap().to_string(), "Ann");
    }

    /// The hand-written wire form is chrono's RFC 3339 form (`AutoSi`, `Z`) for every instant a
    /// `Created` can hold.
    #[test]
    fn created_is_written_as_chrono_writes_it() {
        use chrono::SecondsFormat;
        use proptest::prelude::*;
        // 0000-01-01T00:00:00Z to 9999-12-31T23:59:59Z, in seconds since the epoch.
        let seconds = -62_167_219_200_i64..=253_402_300_799;
        let micros = prop_oneof![
            Just(0_u32),
            (1_u32..1000).prop_map(|m| m * 1000),
            0_u32..1_000_000
        ];
        proptest!(|(secs in seconds, micros in micros)| {
            let instant = DateTime::from_timestamp(secs, micros * 1000).unwrap();
            let created = Created::from_datetime(instant).unwrap();
            prop_assert_eq!(
                created.to_string(),
                instant.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            );
        });
    }

    #[test]
    fn a_leap_second_rolls_over() {
        let created = Created::parse("2016-12-31T23:59:60Z").map(Created::to_rfc3339);
        assert_eq!(created.ok().as_deref(), Some("2017-01-01T00:00:00Z"));
    }

    #[test]
    fn now_is_in_whole_seconds() {
        assert_eq!(Created::now().get().nanosecond(), 0);
    }
}
