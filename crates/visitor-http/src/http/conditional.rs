//! Conditional requests: the strong `ETag` of a stored visitor (from its id and stored version,
//! so every instance gives the same tag), `If-Match` for Update and Delete, `If-None-Match` for
//! Show.

use actix_web::http::header::{self, HeaderMap};
use visitor_domain::VisitorId;
use visitor_store::{IfMatch, StoredVisitor, UpsertCondition, Version};

/// The strong entity tag of a stored visitor, quoted as it goes in the `ETag` header.
pub fn etag(stored: &StoredVisitor) -> String {
    let mut tag = String::with_capacity(44);
    tag.push('"');
    tag.push_str(itoa::Buffer::new().format(stored.id.get()));
    tag.push('.');
    tag.push_str(itoa::Buffer::new().format(stored.version.get()));
    tag.push('"');
    tag
}

/// What a conditional header says.
enum Listed {
    /// The header is not sent.
    Absent,
    /// `*`: any current representation.
    Any,
    /// These entity tags (the list may be spread over several header lines).
    Tags(Vec<String>),
}

fn listed_tags(headers: &HeaderMap, name: header::HeaderName) -> Listed {
    let mut values = headers.get_all(name).peekable();
    if values.peek().is_none() {
        return Listed::Absent;
    }
    let mut tags = Vec::new();
    for text in values.filter_map(|value| value.to_str().ok()) {
        for tag in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if tag == "*" {
                return Listed::Any;
            }
            tags.push(tag.to_owned());
        }
    }
    Listed::Tags(tags)
}

/// The version a strong tag names for the visitor `id`, if it is one of this service's tags
/// for that visitor.
fn version_of(tag: &str, id: VisitorId) -> Option<Version> {
    let inner = tag.strip_prefix('"')?.strip_suffix('"')?;
    let (tag_id, version) = inner.split_once('.')?;
    if tag_id != id.to_string() {
        return None;
    }
    let number: i64 = version.parse().ok()?;
    (number >= 1 && number.to_string() == version).then(|| Version::new(number))
}

/// The condition `If-Match` sets on a write to visitor `id`: any version when the header is
/// absent or `*`; else the versions its strong tags name (weak tags and tags of anything else
/// match nothing, as strong comparison says).
pub fn if_match(headers: &HeaderMap, id: VisitorId) -> IfMatch {
    match listed_tags(headers, header::IF_MATCH) {
        Listed::Absent | Listed::Any => IfMatch::Any,
        Listed::Tags(tags) => {
            IfMatch::OneOf(tags.iter().filter_map(|tag| version_of(tag, id)).collect())
        }
    }
}

/// The condition `If-Match` sets on a create-or-update, whose visitor is known only by its
/// `external_id`: each strong tag names the visitor and the version it accepts.
pub fn upsert_condition(headers: &HeaderMap) -> UpsertCondition {
    match listed_tags(headers, header::IF_MATCH) {
        Listed::Absent => UpsertCondition::None,
        Listed::Any => UpsertCondition::Exists,
        Listed::Tags(tags) => UpsertCondition::OneOf(
            tags.iter()
                .filter_map(|tag| {
                    let inner = tag.strip_prefix('"')?.strip_suffix('"')?;
                    let id = VisitorId::parse_str(inner.split_once('.')?.0).ok()?;
                    Some((id, version_of(tag, id)?))
                })
                .collect(),
        ),
    }
}

/// True when `If-None-Match` lists the current tag (weak comparison, as RFC 9110 asks for this
/// header) or `*`: the client's copy is current, and Show answers 304.
pub fn none_match_fails(headers: &HeaderMap, current: &str) -> bool {
    match listed_tags(headers, header::IF_NONE_MATCH) {
        Listed::Absent => false,
        Listed::Any => true,
        Listed::Tags(tags) => tags
            .iter()
            .any(|tag| tag.strip_prefix("W/").unwrap_or(tag) == current),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;
    use visitor_domain::{Created, NewVisitor};

    fn stored(id: i64, version: i64) -> StoredVisitor {
        StoredVisitor {
            visitor: NewVisitor::default()
                .into_visitor(VisitorId::new(id).unwrap(), Created::now()),
            version: Version::new(version),
        }
    }

    fn headers(name: header::HeaderName, values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_tag_is_strong_and_names_id_and_version() {
        assert_eq!(etag(&stored(12, 3)), "\"12.3\"");
    }

    #[test]
    fn if_match_takes_strong_tags_of_this_visitor_only() {
        let id = VisitorId::new(12).unwrap();
        assert_eq!(if_match(&HeaderMap::new(), id), IfMatch::Any);
        assert_eq!(
            if_match(&headers(header::IF_MATCH, &["*"]), id),
            IfMatch::Any
        );
        let listed = headers(
            header::IF_MATCH,
            &["\"12.3\", W/\"12.4\", \"13.5\"", "\"12.7\""],
        );
        assert_eq!(
            if_match(&listed, id),
            IfMatch::OneOf(vec![Version::new(3), Version::new(7)])
        );
        for junk in [
            "12.3",
            "\"12.03\"",
            "\"12.0\"",
            "\"12.x\"",
            "\"\"",
            "\"12.-1\"",
        ] {
            assert_eq!(
                if_match(&headers(header::IF_MATCH, &[junk]), id),
                IfMatch::OneOf(vec![]),
                "{junk}"
            );
        }
    }

    #[test]
    fn if_none_match_compares_weakly_and_takes_a_star() {
        let current = etag(&stored(12, 3));
        let fails =
            |values: &[&str]| none_match_fails(&headers(header::IF_NONE_MATCH, values), &current);
        assert!(!none_match_fails(&HeaderMap::new(), &current));
        assert!(fails(&["\"12.3\""]));
        assert!(fails(&["W/\"12.3\""]));
        assert!(fails(&["\"1.1\", \"12.3\""]));
        assert!(fails(&["*"]));
        assert!(!fails(&["\"12.2\""]));
        assert!(!fails(&[""]));
    }

    #[test]
    fn an_upsert_condition_pairs_each_tag_with_its_visitor() {
        assert_eq!(upsert_condition(&HeaderMap::new()), UpsertCondition::None);
        assert_eq!(
            upsert_condition(&headers(header::IF_MATCH, &["*"])),
            UpsertCondition::Exists
        );
        let listed = headers(
            header::IF_MATCH,
            &["\"12.3\", W/\"12.4\", \"x.5\", \"13.05\"", "\"7.1\""],
        );
        let pair = |id, version| (VisitorId::new(id).unwrap(), Version::new(version));
        assert_eq!(
            upsert_condition(&listed),
            UpsertCondition::OneOf(vec![pair(12, 3), pair(7, 1)])
        );
    }
}
