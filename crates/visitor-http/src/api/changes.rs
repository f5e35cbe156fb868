//! The change feed over HTTP (contract §10.1): `GET /api/v2/chat/incremental/visitors`, Zendesk's
//! cursor-based incremental export. The query (`start_time` or `cursor`, `per_page`), the page
//! asked of the store's change log, and the answer with its `after_cursor` and `after_url`.
//!
//! A feed cursor is a [`cursor::seal`]ed position in the log (its transaction, its sequence
//! number, and the purges it had seen): 33 bytes as 66 hex digits.

use actix_web::http::header;
use actix_web::web::Data;
use actix_web::{HttpRequest, HttpResponse};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use visitor_domain::{ErrorCode, ValidationErrors, Visitor};
use visitor_store::{ChangeCursor, ChangePage, ChangePosition, ChangeStart};

use crate::api::cursor::{self, first_eight};
use crate::api::query::{self, problem};
use crate::context::AppContext;
use crate::http::error::ApiError;

/// The page size when none is given, and the largest.
pub const MAX_PER_PAGE: usize = 1000;

const START_TIME: &str = "start_time";
const CURSOR: &str = "cursor";
const PER_PAGE: &str = "per_page";

/// 9999-12-31T23:59:59Z: a later `start_time` is read as this one.
const LAST_SECOND: i64 = 253_402_300_799;

/// The format byte of a feed cursor (List's is 1).
const FORMAT: u8 = 2;
/// The content of a feed cursor: three big-endian u64.
const CONTENT: usize = 24;

/// The cursor of a place in the log.
pub fn encode(at: ChangeCursor) -> String {
    let mut content = Vec::with_capacity(CONTENT);
    content.extend_from_slice(&at.position.transaction.to_be_bytes());
    content.extend_from_slice(&at.position.sequence.to_be_bytes());
    content.extend_from_slice(&at.purges.to_be_bytes());
    cursor::seal(FORMAT, &content)
}

/// The place a cursor holds, when it is one this feed handed out, intact.
pub fn decode(given: &str) -> Option<ChangeCursor> {
    let content = cursor::unseal(given, FORMAT, CONTENT)?;
    let number = |at: usize| u64::from_be_bytes(first_eight(&content[at..]));
    Some(ChangeCursor {
        position: ChangePosition {
            transaction: number(0),
            sequence: number(8),
        },
        purges: number(16),
    })
}

/// A parsed feed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedRequest {
    start: ChangeStart,
    per_page: usize,
}

impl FeedRequest {
    /// Parses a query string; every offending parameter is named.
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let pairs = query::pairs(query)?;
        let mut errors = ValidationErrors::new();
        let mut seen: Vec<&str> = Vec::new();
        let (mut start_time, mut given_cursor, mut per_page) = (None, None, None);
        for (key, value) in &pairs {
            if seen.contains(&key.as_str()) {
                let text = format!("{key} is given more than once");
                problem(&mut errors, key, ErrorCode::Duplicate, text);
                continue;
            }
            seen.push(key);
            match key.as_str() {
                START_TIME => start_time = Some(value.as_str()),
                CURSOR => given_cursor = Some(value.as_str()),
                PER_PAGE => per_page = Some(value.as_str()),
                _ => problem(
                    &mut errors,
                    key,
                    ErrorCode::UnknownField,
                    format!("{key} is not a parameter of the change feed; they are start_time, cursor, per_page"),
                ),
            }
        }
        let per_page = match per_page.map(str::parse::<usize>) {
            None => MAX_PER_PAGE,
            Some(Ok(n)) if (1..=MAX_PER_PAGE).contains(&n) => n,
            Some(_) => {
                let text = format!("{PER_PAGE} must be a whole number from 1 to {MAX_PER_PAGE}");
                problem(&mut errors, PER_PAGE, ErrorCode::OutOfRange, text);
                MAX_PER_PAGE
            }
        };
        let mut start = None;
        match (start_time, given_cursor) {
            (Some(_), Some(_)) => {
                for key in [START_TIME, CURSOR] {
                    let text = format!("give {START_TIME} or {CURSOR}, not both");
                    problem(&mut errors, key, ErrorCode::InvalidFormat, text);
                }
            }
            (None, None) => problem(
                &mut errors,
                START_TIME,
                ErrorCode::Required,
                format!("give {START_TIME} (Unix seconds; 0 for the beginning) on the first call, then the {CURSOR} of the previous page"),
            ),
            // Times after 9999 are all "the future": the same empty start.
            (Some(time), None) => match time.parse::<i64>().ok().filter(|t| *t >= 0) {
                Some(seconds) => {
                    let time = DateTime::from_timestamp(seconds.min(LAST_SECOND), 0);
                    start = time.map(ChangeStart::Since);
                }
                None => problem(&mut errors, START_TIME, ErrorCode::InvalidFormat, format!("{START_TIME} must be a whole number of seconds since 1970-01-01T00:00:00Z, 0 or more")),
            },
            (None, Some(given)) => match decode(given) {
                Some(at) => start = Some(ChangeStart::After(at)),
                None => problem(&mut errors, CURSOR, ErrorCode::InvalidFormat, format!("{CURSOR} is not a cursor given by the change feed")),
            },
        }
        match start {
            Some(start) if errors.is_empty() => Ok(Self { start, per_page }),
            _ => Err(ApiError::BadQuery(errors)),
        }
    }
}

/// One item of a page: a visitor's last change.
#[derive(Debug, Serialize)]
struct Item {
    id: i64,
    deleted: bool,
    visitor: Option<Visitor>,
    changed_at: String,
}

/// A page of the feed.
#[derive(Debug, Serialize)]
struct Page {
    changes: Vec<Item>,
    after_cursor: String,
    after_url: String,
    end_of_stream: bool,
}

fn expired() -> ApiError {
    let mut errors = ValidationErrors::new();
    problem(
        &mut errors,
        CURSOR,
        ErrorCode::Expired,
        format!("erasures this {CURSOR} had not reached have been purged since (after --change-retention); start again with {START_TIME}=0"),
    );
    ApiError::BadQuery(errors)
}

/// List Visitor Changes.
#[utoipa::path(
    get,
    path = "/api/v2/chat/incremental/visitors",
    tag = "Visitors",
    operation_id = "listVisitorChanges",
    summary = "List Visitor Changes (incremental export)",
    description = "Zendesk's cursor-based incremental export of visitors: every visitor created, changed or erased, in the order the changes became visible. Start with `start_time` (Unix seconds, `0` for everything), then pass each page's `after_cursor` as `cursor` (or follow `after_url`). Each item is a visitor's last change in the page's range, with the visitor as it is when the page is read, or `deleted: true` and `visitor: null` when it has been erased. A visitor may come again in a later page when it changed again. Applying the items in order to a copy (store the visitor, or drop the id) keeps the copy equal to the service: no change is ever skipped, even one whose transaction committed after a later change was read. When `end_of_stream` is true, keep `after_cursor` and ask again later.\n\nA cursor behind erasures purged since it was handed out (`--change-retention`) is answered 400 with `details.cursor[0].error = \"Expired\"`: start again from `start_time=0`.",
    params(
        ("start_time" = Option<i64>, Query, description = "First call: the visitors whose last change happened at or after this time (Unix seconds; 0 for every visitor). Not with `cursor`", minimum = 0),
        ("cursor" = Option<String>, Query, description = "Every later call: the previous page's `after_cursor`, as given. Not with `start_time`", min_length = 66, max_length = 66, pattern = r"^[0-9a-f]{66}$"),
        ("per_page" = Option<i64>, Query, description = "Items per page (default 1000)", minimum = 1, maximum = 1000),
    ),
    responses(
        (status = 200, description = "OK: one page of changes", body = crate::api::schemas::VisitorChanges),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn list_visitor_changes(
    req: HttpRequest,
    context: Data<AppContext>,
) -> Result<HttpResponse, ApiError> {
    let request = FeedRequest::parse(req.query_string())?;
    let page = context
        .store
        .changes(request.start, request.per_page)
        .await?;
    let ChangePage::Changes {
        changes,
        next,
        held_back,
    } = page
    else {
        return Err(expired());
    };
    let end_of_stream = changes.len() < request.per_page && !held_back;
    let after_cursor = encode(next);
    let after_url = format!(
        "{}?{CURSOR}={after_cursor}&{PER_PAGE}={}",
        context.origin.url(&req, req.path()),
        request.per_page
    );
    let page = Page {
        changes: changes
            .into_iter()
            .map(|change| Item {
                id: change.visitor_id.get(),
                deleted: change.visitor.is_none(),
                visitor: change.visitor.map(|stored| stored.visitor),
                changed_at: written(change.changed_at),
            })
            .collect(),
        after_cursor,
        after_url,
        end_of_stream,
    };
    let mut body = Vec::with_capacity(512 + 300 * page.changes.len());
    serde_json::to_writer(&mut body, &page)
        .map_err(|error| ApiError::internal(format!("a page could not be written: {error}")))?;
    Ok(HttpResponse::Ok()
        .content_type(header::ContentType::json())
        .body(body))
}

/// A time as the feed writes it: RFC 3339 in UTC, with `Z`, fractional seconds only when any.
fn written(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details(query: &str) -> Vec<(String, String)> {
        match FeedRequest::parse(query) {
            Err(ApiError::BadQuery(errors)) => errors
                .iter()
                .flat_map(|(key, problems)| {
                    problems
                        .iter()
                        .map(move |problem| (key.to_owned(), problem.code.as_str().to_owned()))
                })
                .collect(),
            other => panic!("expected a bad query for {query}, got {other:?}"),
        }
    }

    fn pair(key: &str, code: &str) -> (String, String) {
        (key.to_owned(), code.to_owned())
    }

    #[test]
    fn a_cursor_round_trips_and_any_edit_is_refused() {
        let at = ChangeCursor {
            position: ChangePosition {
                transaction: 4_294_967_296 + 77,
                sequence: 123_456_789,
            },
            purges: 3,
        };
        let given = encode(at);
        assert_eq!(given.len(), 66);
        assert_eq!(decode(&given), Some(at));
        for position in 0..given.len() {
            let mut edited: Vec<char> = given.chars().collect();
            edited[position] = if edited[position] == '0' { '1' } else { '0' };
            let edited: String = edited.into_iter().collect();
            assert_eq!(decode(&edited), None, "{position}");
        }
        // A List cursor is not a feed cursor.
        let list = cursor::seal(1, &[0; CONTENT]);
        assert_eq!(decode(&list), None);
    }

    #[test]
    fn the_first_call_gives_a_time_and_the_later_ones_a_cursor() {
        let request = FeedRequest::parse("start_time=0").unwrap();
        assert_eq!(request.start, ChangeStart::Since(DateTime::UNIX_EPOCH));
        assert_eq!(request.per_page, MAX_PER_PAGE);
        let request = FeedRequest::parse("start_time=1700000000&per_page=1").unwrap();
        let time = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(
            (request.start, request.per_page),
            (ChangeStart::Since(time), 1)
        );
        let at = ChangeCursor::default();
        let request = FeedRequest::parse(&format!("cursor={}&per_page=1000", encode(at))).unwrap();
        assert_eq!(request.start, ChangeStart::After(at));
    }

    #[test]
    fn every_bad_parameter_is_named() {
        assert_eq!(details(""), [pair("start_time", "Required")]);
        assert_eq!(details("per_page=5"), [pair("start_time", "Required")]);
        let cursor = encode(ChangeCursor::default());
        assert_eq!(
            details(&format!("start_time=0&cursor={cursor}")),
            [
                pair("cursor", "InvalidFormat"),
                pair("start_time", "InvalidFormat")
            ]
        );
        for bad in ["-1", "1.5", "x", "", "99999999999999999999"] {
            assert_eq!(
                details(&format!("start_time={bad}")),
                [pair("start_time", "InvalidFormat")],
                "{bad}"
            );
        }
        let far = FeedRequest::parse("start_time=9223372036854775807").unwrap();
        let last = DateTime::from_timestamp(LAST_SECOND, 0).unwrap();
        assert_eq!(far.start, ChangeStart::Since(last));
        for bad in ["0", "1001", "-1", "x"] {
            assert_eq!(
                details(&format!("start_time=0&per_page={bad}")),
                [pair("per_page", "OutOfRange")],
                "{bad}"
            );
        }
        assert_eq!(details("cursor=abc"), [pair("cursor", "InvalidFormat")]);
        assert_eq!(
            details("start_time=0&start_time=1"),
            [pair("start_time", "Duplicate")]
        );
        assert_eq!(
            details("start_time=0&since=1"),
            [pair("since", "UnknownField")]
        );
    }

    #[test]
    fn times_are_written_in_utc_with_fractions_only_when_any() {
        let time = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(written(time), "2023-11-14T22:13:20Z");
        let time = DateTime::from_timestamp(1_700_000_000, 250_000_000).unwrap();
        assert_eq!(written(time), "2023-11-14T22:13:20.250Z");
    }
}
