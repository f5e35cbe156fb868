//! List Visitors over HTTP: the query parameters (`page[size]`, `page[after]`, `page[before]`,
//! `sort` and the domain's filters), the keyset page they ask the store for, and the answer with
//! its `meta` and `links`.

use actix_web::http::header;
use actix_web::web::Data;
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;
use visitor_domain::{ErrorCode, ValidationErrors, Visitor, VisitorFilter, VisitorId};
use visitor_store::{ListQuery, Order, StoredVisitor};

use crate::api::cursor::{self, Binding, CursorError};
use crate::api::query::{self, problem};
use crate::context::AppContext;
use crate::http::error::ApiError;

/// The page size when none is given.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The largest page size.
pub const MAX_PAGE_SIZE: usize = 1000;

const SIZE: &str = "page[size]";
const AFTER: &str = "page[after]";
const BEFORE: &str = "page[before]";
const SORT: &str = "sort";

/// Which way a page is fetched from its cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// The first page, or the page after a cursor.
    Forward,
    /// The page before a cursor.
    Backward,
}

/// A parsed List request.
#[derive(Debug, Clone)]
pub struct ListRequest {
    size: usize,
    descending: bool,
    filter: VisitorFilter,
    /// The filters as the client wrote them, for the links.
    filter_pairs: Vec<(String, String)>,
    direction: Direction,
    cursor: Option<VisitorId>,
}

impl ListRequest {
    /// Parses a query string; every offending parameter is named.
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let pairs = query::pairs(query)?;
        let mut errors = ValidationErrors::new();
        let mut seen: Vec<&str> = Vec::new();
        let mut filter_pairs = Vec::new();
        let (mut size, mut sort, mut after, mut before) = (None, None, None, None);
        for (key, value) in &pairs {
            if !VisitorFilter::is_filter_key(key) {
                if seen.contains(&key.as_str()) {
                    problem(
                        &mut errors,
                        key,
                        ErrorCode::Duplicate,
                        format!("{key} is given more than once"),
                    );
                    continue;
                }
                seen.push(key);
            }
            match key.as_str() {
                SIZE => size = Some(value.as_str()),
                SORT => sort = Some(value.as_str()),
                AFTER => after = Some(value.as_str()),
                BEFORE => before = Some(value.as_str()),
                _ if VisitorFilter::is_filter_key(key) => filter_pairs.push((key.clone(), value.clone())),
                _ => problem(
                    &mut errors,
                    key,
                    ErrorCode::UnknownField,
                    format!(
                        "{key} is not a parameter of List Visitors; they are page[size], page[after], page[before], sort, external_id, email, banned"
                    ),
                ),
            }
        }
        let filter = match VisitorFilter::parse(
            filter_pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ) {
            Ok(filter) => filter,
            Err(filter_errors) => {
                errors.merge(filter_errors);
                VisitorFilter::default()
            }
        };
        let size = match size.map(str::parse::<usize>) {
            None => DEFAULT_PAGE_SIZE,
            Some(Ok(size)) if (1..=MAX_PAGE_SIZE).contains(&size) => size,
            Some(_) => {
                problem(
                    &mut errors,
                    SIZE,
                    ErrorCode::OutOfRange,
                    format!("{SIZE} must be a whole number from 1 to {MAX_PAGE_SIZE}"),
                );
                DEFAULT_PAGE_SIZE
            }
        };
        let descending = match sort {
            None | Some("id") => false,
            Some("-id") => true,
            Some(_) => {
                problem(
                    &mut errors,
                    SORT,
                    ErrorCode::InvalidFormat,
                    "sort must be id or -id".into(),
                );
                false
            }
        };
        if after.is_some() && before.is_some() {
            for key in [AFTER, BEFORE] {
                problem(
                    &mut errors,
                    key,
                    ErrorCode::InvalidFormat,
                    format!("give {AFTER} or {BEFORE}, not both"),
                );
            }
        }
        let binding = Binding::new(descending, &filter);
        let (direction, key, given) = match (after, before) {
            (_, Some(cursor)) => (Direction::Backward, BEFORE, Some(cursor)),
            (cursor, None) => (Direction::Forward, AFTER, cursor),
        };
        let mut cursor = None;
        if let Some(given) = given.filter(|_| !(after.is_some() && before.is_some())) {
            match cursor::decode(given, binding) {
                Ok(id) => cursor = Some(id),
                Err(CursorError::Malformed) => problem(&mut errors, key, ErrorCode::InvalidFormat, format!("{key} is not a cursor given by List Visitors")),
                Err(CursorError::Mismatched) => problem(&mut errors, key, ErrorCode::InvalidFormat, format!("{key} was made for another sort or other filters; cursors are valid only with the sort and filters of the page that gave them")),
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::BadQuery(errors));
        }
        Ok(Self {
            size,
            descending,
            filter,
            filter_pairs,
            direction,
            cursor,
        })
    }

    /// What to ask the store for: one more visitor than the page holds, to learn whether more
    /// lie beyond.
    pub fn store_query(&self) -> ListQuery {
        let sorted = if self.descending {
            Order::Descending
        } else {
            Order::Ascending
        };
        let order = match (self.direction, sorted) {
            (Direction::Forward, order) => order,
            (Direction::Backward, Order::Ascending) => Order::Descending,
            (Direction::Backward, Order::Descending) => Order::Ascending,
        };
        ListQuery {
            filter: self.filter.clone(),
            order,
            after: self.cursor,
            limit: self.size + 1,
        }
    }

    fn binding(&self) -> Binding {
        Binding::new(self.descending, &self.filter)
    }

    /// The URL of the page on the given side of `id`, with the same filters, size and sort.
    fn link(&self, base: &str, side: &str, id: VisitorId) -> String {
        let mut pairs: Vec<(&str, String)> = self
            .filter_pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        pairs.push((SORT, if self.descending { "-id" } else { "id" }.to_owned()));
        pairs.push((SIZE, self.size.to_string()));
        pairs.push((side, cursor::encode(id, self.binding())));
        let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        format!("{base}?{query}")
    }

    /// The answer for the visitors the store returned for [`Self::store_query`]; `base` is the
    /// full URL of the collection as the client reached it.
    pub fn page(&self, mut found: Vec<StoredVisitor>, base: &str) -> ListPage {
        let has_more = found.len() > self.size;
        found.truncate(self.size);
        if self.direction == Direction::Backward {
            found.reverse();
        }
        let first = found.first().map(|stored| stored.id);
        let last = found.last().map(|stored| stored.id);
        let cursor_of = |id: Option<VisitorId>| id.map(|id| cursor::encode(id, self.binding()));
        // Going forward, a next page exists when more were found, and a previous one whenever
        // this page started after a cursor; going backward, the other way round. An empty page
        // reached from a cursor links back across that cursor.
        let (next_from, prev_from) = match self.direction {
            Direction::Forward => (
                has_more.then_some(last).flatten(),
                self.cursor.and(first.or(self.cursor)),
            ),
            Direction::Backward => (
                self.cursor.and(last.or(self.cursor)),
                has_more.then_some(first).flatten(),
            ),
        };
        ListPage {
            visitors: found.into_iter().map(|stored| stored.visitor).collect(),
            meta: Meta {
                has_more,
                after_cursor: cursor_of(last),
                before_cursor: cursor_of(first),
            },
            links: Links {
                next: next_from.map(|id| self.link(base, AFTER, id)),
                prev: prev_from.map(|id| self.link(base, BEFORE, id)),
            },
        }
    }
}

/// The answer of List Visitors.
#[derive(Debug, Serialize)]
pub struct ListPage {
    pub visitors: Vec<Visitor>,
    pub meta: Meta,
    pub links: Links,
}

/// Where the page lies in the walk.
#[derive(Debug, Serialize)]
pub struct Meta {
    pub has_more: bool,
    pub after_cursor: Option<String>,
    pub before_cursor: Option<String>,
}

/// The full URLs of the neighbouring pages.
#[derive(Debug, Serialize)]
pub struct Links {
    pub next: Option<String>,
    pub prev: Option<String>,
}

/// List Visitors.
#[utoipa::path(
    get,
    path = "/api/v2/chat/visitors",
    tag = "Visitors",
    operation_id = "listVisitors",
    summary = "List Visitors",
    description = "Lists visitors in pages, with cursor pagination: find a visitor by `external_id` or `email`, filter by `banned`, or walk every visitor. A walk from the first page to the last returns every visitor that existed during the whole walk exactly once.\n\n**Cursors.** Follow `links.next` / `links.prev`, or pass a page's `meta.after_cursor` as the query parameter `page[after]` (the page after it) or its `meta.before_cursor` as `page[before]` (the page before it); at most one of the two. A cursor is opaque (50 hex digits) and valid only with the sort and filters of the page that gave it: any other value is 400 BadRequest naming the parameter. Only a cursor this service handed out is valid, which no schema can say: a value of the right shape made up by the client is a 400 too.",
    params(
        ("page[size]" = Option<i64>, Query, description = "Visitors per page", minimum = 1, maximum = 1000),
        ("page[after]" = Option<String>, Query, description = "The page after this cursor: a page's `meta.after_cursor`, as given (with the same `sort` and filters). Not with `page[before]`. A cursor this service did not hand out is 400 BadRequest", min_length = 50, max_length = 50, pattern = r"^[0-9a-f]{50}$"),
        ("page[before]" = Option<String>, Query, description = "The page before this cursor: a page's `meta.before_cursor`, as given (with the same `sort` and filters). Not with `page[after]`. A cursor this service did not hand out is 400 BadRequest", min_length = 50, max_length = 50, pattern = r"^[0-9a-f]{50}$"),
        ("sort" = Option<String>, Query, description = "`id` (ascending, the default) or `-id` (descending)", pattern = r"^-?id$"),
        ("external_id" = Option<String>, Query, description = "Only the visitor with exactly this external ID", min_length = 1, max_length = 255, pattern = r"^[^\u0000]*$"),
        ("email" = Option<String>, Query, description = "Only visitors with this e-mail address, ignoring ASCII case", min_length = 1, max_length = 254, pattern = r"^[^\u0000]*$"),
        ("banned" = Option<bool>, Query, description = "Only banned (`true`) or only not banned (`false`) visitors"),
    ),
    responses(
        (status = 200, description = "OK: one page of visitors", body = crate::api::schemas::VisitorList),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn list_visitors(
    req: HttpRequest,
    context: Data<AppContext>,
) -> Result<HttpResponse, ApiError> {
    let request = ListRequest::parse(req.query_string())?;
    let found = context.store.list(&request.store_query()).await?;
    let base = context.origin.url(&req, req.path());
    let page = request.page(found, &base);
    // Sized for the page at once (a visitor is about 250 bytes of JSON), not grown by doubling.
    let mut body = Vec::with_capacity(512 + 256 * page.visitors.len());
    serde_json::to_writer(&mut body, &page)
        .map_err(|error| ApiError::internal(format!("a page could not be written: {error}")))?;
    Ok(HttpResponse::Ok()
        .content_type(header::ContentType::json())
        .body(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details(query: &str) -> Vec<String> {
        match ListRequest::parse(query) {
            Err(ApiError::BadQuery(errors)) => errors.keys().map(str::to_owned).collect(),
            other => panic!("expected a bad query for {query}, got {other:?}"),
        }
    }

    #[test]
    fn defaults_and_limits() {
        let request = ListRequest::parse("").unwrap();
        assert_eq!(request.store_query().limit, DEFAULT_PAGE_SIZE + 1);
        assert_eq!(request.store_query().order, Order::Ascending);
        let request = ListRequest::parse("page%5Bsize%5D=1000&sort=-id").unwrap();
        assert_eq!(request.store_query().limit, 1001);
        assert_eq!(request.store_query().order, Order::Descending);
        for size in ["0", "1001", "-1", "x", "", "1.5"] {
            assert_eq!(details(&format!("page[size]={size}")), ["page[size]"]);
        }
    }

    #[test]
    fn every_bad_parameter_is_named() {
        assert_eq!(details("sort=name"), ["sort"]);
        assert_eq!(details("banned=1"), ["banned"]);
        assert_eq!(details("limit=5&banned=maybe"), ["banned", "limit"]);
        assert_eq!(details("page[after]=abc"), ["page[after]"]);
        assert_eq!(details("sort=id&sort=-id"), ["sort"]);
        assert_eq!(details("email=a@b.io&email=c@d.io"), ["email"]);
        let cursor = cursor::encode(
            VisitorId::new(3).unwrap(),
            Binding::new(false, &VisitorFilter::default()),
        );
        assert_eq!(
            details(&format!("page[after]={cursor}&page[before]={cursor}")),
            ["page[after]", "page[before]"]
        );
        assert_eq!(
            details(&format!("page[before]={cursor}&sort=-id")),
            ["page[before]"]
        );
        assert_eq!(
            details(&format!("page[after]={cursor}&banned=true")),
            ["page[after]"]
        );
        assert!(ListRequest::parse(&format!("page[before]={cursor}")).is_ok());
    }

    #[test]
    fn a_backward_page_reverses_the_store_order() {
        let cursor = cursor::encode(
            VisitorId::new(3).unwrap(),
            Binding::new(true, &VisitorFilter::default()),
        );
        let request = ListRequest::parse(&format!("sort=-id&page[before]={cursor}")).unwrap();
        let query = request.store_query();
        assert_eq!(
            (query.order, query.after),
            (Order::Ascending, VisitorId::new(3).ok())
        );
    }
}
