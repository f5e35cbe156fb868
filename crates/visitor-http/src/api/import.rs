//! Import Visitors (contract §9.2): a body of NDJSON lines, each a create or a create-or-update,
//! applied in order, each on its own, in batches (one store call, so one round trip and one
//! commit, per [`BATCH`] lines; the next batch is parsed while the store applies one); the
//! answer streams one result line per input line as each batch is applied, then the summary.
//!
//! The whole body is read and checked (size, UTF-8) before anything is written, so a refused
//! body writes nothing. Lines that cannot be parsed or break a rule fail alone with the error
//! body they would have had on their own; they never reach the store.

use std::convert::Infallible;

use actix_web::http::header;
use actix_web::mime;
use actix_web::web::{Bytes, Data, Payload};
use actix_web::{HttpRequest, HttpResponse};
use futures::{stream, StreamExt};
use serde::Serialize;
use serde_json::{Map, Value};
use visitor_domain::{ExternalId, NewVisitor, VisitorUpsert};
use visitor_store::{ImportLine, ImportOutcome, StoreError, Upserted};

use crate::context::AppContext;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{declared_length, json_object, read_limited};

/// The largest import body, in bytes (16 MiB).
pub(crate) const IMPORT_LIMIT: usize = 16 * 1024 * 1024;

/// Lines per store call: large enough that a round trip and a commit are shared by many lines,
/// small enough that the first results stream soon and a batch holds a connection briefly.
const BATCH: usize = 2_000;

/// The media type of the request and the answer.
pub(crate) const NDJSON: &str = "application/x-ndjson";

/// Import Visitors.
#[utoipa::path(
    post,
    path = "/api/v2/chat/visitors/import",
    tag = "Visitors",
    operation_id = "importVisitors",
    summary = "Import Visitors",
    description = "Creates and updates many visitors in one request: the body is NDJSON (`application/x-ndjson`, UTF-8), one JSON object per line, at most 16 MiB; empty lines are skipped. A line with `external_id` is a Create or Update Visitor body (see VisitorCreateOrUpdate), a line without one a Create Visitor body (see VisitorCreate). Lines are applied in order, each on its own: a failed line changes nothing and the others go on (two lines with one new `external_id` create once, then update).\n\nThe answer (200, `application/x-ndjson`) streams one line per non-empty input line, in order (see ImportResultLine: `error` is the error body the line would have had on its own request), then one summary line (see ImportSummary). A body that is refused as a whole (413, 415, 400 for a body that is not UTF-8) writes nothing.\n\nIn Swagger UI's Try it out, the example appears as one quoted JSON string (Swagger UI quotes a string example of any media type whose name contains json): replace it with the lines themselves.",
    request_body(
        // Any value: the body is text, and every text is an NDJSON body (a line that is not a
        // visitor fails on its own), so no body is of a wrong type.
        content = serde_json::Value,
        content_type = "application/x-ndjson",
        description = "One visitor per line: a VisitorCreateOrUpdate object when it has `external_id`, else a VisitorCreate object",
        example = json!(crate::api::schemas::IMPORT_EXAMPLE),
    ),
    responses(
        (status = 200, description = "OK: one ImportResultLine per non-empty line of the request, in order, then one ImportSummary line",
            content_type = "application/x-ndjson", body = String,
            example = json!(crate::api::schemas::IMPORT_ANSWER_EXAMPLE)),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn import_visitors(
    req: HttpRequest,
    context: Data<AppContext>,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    if !is_ndjson(&req) {
        return Err(ApiError::UnsupportedMediaType(NDJSON));
    }
    if declared_length(&req).is_some_and(|n| n > IMPORT_LIMIT as u64) {
        return Err(ApiError::PayloadTooLarge(IMPORT_LIMIT));
    }
    let mut payload = payload.into_inner();
    let body = read_limited(&mut payload, IMPORT_LIMIT).await?;
    let text = String::from_utf8(body.to_vec())
        .map_err(|error| ApiError::BadRequest(format!("the body is not UTF-8: {error}")))?;
    let import = Import {
        context,
        source: Source {
            text,
            at: 0,
            number: 0,
        },
        ahead: None,
        counts: Counts::default(),
        broken: None,
        done: false,
    };
    let body = stream::unfold(import, |mut import| async move {
        let chunk = import.next_chunk().await?;
        Some((Ok::<_, Infallible>(chunk), import))
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, NDJSON))
        .streaming(body.boxed_local()))
}

/// True for `application/x-ndjson` with any parameters, as long as a `charset` (if any) names
/// UTF-8.
fn is_ndjson(req: &HttpRequest) -> bool {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(mime) = value.to_str().unwrap_or_default().parse::<mime::Mime>() else {
        return false;
    };
    mime.type_() == mime::APPLICATION
        && mime.subtype() == "x-ndjson"
        && mime
            .get_param(mime::CHARSET)
            .is_none_or(|charset| charset == mime::UTF_8)
}

/// A non-empty line of the request: its number (1-based, empty lines counted) and what it asks
/// for, or why it cannot be applied.
struct Parsed {
    number: usize,
    line: Result<ImportLine, ApiError>,
}

/// The request's lines, parsed a batch at a time.
struct Source {
    text: String,
    /// Where the next line starts.
    at: usize,
    /// The number of the last line read.
    number: usize,
}

impl Source {
    /// The next lines up to [`BATCH`] that can reach the store (the refused ones among them);
    /// empty at the end.
    fn next_batch(&mut self) -> Vec<Parsed> {
        let mut batch = Vec::new();
        let mut valid = 0;
        while valid < BATCH && self.at <= self.text.len() {
            let rest = &self.text[self.at..];
            let (line, next) = match rest.find('\n') {
                Some(end) => (&rest[..end], self.at + end + 1),
                None => (rest, self.text.len() + 1),
            };
            self.at = next;
            self.number += 1;
            if line.trim().is_empty() {
                continue;
            }
            let parsed = Parsed {
                number: self.number,
                line: parse_line(line, self.number),
            };
            valid += usize::from(parsed.line.is_ok());
            batch.push(parsed);
        }
        batch
    }
}

/// What a line asks for: a create-or-update when it has an `external_id`, else a create (a
/// line with `"external_id": null`, as a Show body without one has it, is a create).
fn parse_line(text: &str, number: usize) -> Result<ImportLine, ApiError> {
    let object: Map<String, Value> = json_object(text.as_bytes(), &format!("line {number}"))?;
    if object.contains_key(ExternalId::KEY) && !object[ExternalId::KEY].is_null() {
        Ok(ImportLine::Upsert(VisitorUpsert::from_json(&object)?))
    } else {
        Ok(ImportLine::Create(NewVisitor::from_json(&object)?))
    }
}

/// Lines by what they did.
#[derive(Debug, Default, Serialize)]
struct Counts {
    created: u64,
    updated: u64,
    unchanged: u64,
    failed: u64,
}

/// One line of the answer.
#[derive(Serialize)]
struct ResultLine<'a> {
    line: usize,
    status: &'static str,
    id: Option<i64>,
    error: Option<ErrorBody<'a>>,
}

/// The last line of the answer.
#[derive(Serialize)]
struct SummaryLine<'a> {
    summary: &'a Counts,
}

/// An import under way: the lines still to apply, and what the applied ones did.
struct Import {
    context: Data<AppContext>,
    source: Source,
    /// The batch parsed while the one before it was being applied.
    ahead: Option<Vec<Parsed>>,
    counts: Counts,
    /// Set when the store failed a batch: the error every later line is answered with, so a
    /// store that is down is not asked again for each batch.
    broken: Option<ApiError>,
    done: bool,
}

impl Import {
    /// The answer lines of the next batch (the summary after the last); `None` at the end.
    /// The next batch is parsed while the store applies this one.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let batch = match self.ahead.take() {
            Some(batch) => batch,
            None => self.source.next_batch(),
        };
        let mut out = Vec::new();
        if batch.is_empty() {
            self.done = true;
            write_line(
                &mut out,
                &SummaryLine {
                    summary: &self.counts,
                },
            );
            return Some(Bytes::from(out));
        }
        let mut numbers = Vec::new();
        let mut to_store = Vec::new();
        let mut refused: Vec<(usize, ApiError)> = Vec::new();
        for parsed in batch {
            match parsed.line {
                Ok(line) => {
                    numbers.push(parsed.number);
                    to_store.push(line);
                }
                Err(error) => refused.push((parsed.number, error)),
            }
        }
        let count = to_store.len();
        let store =
            (!to_store.is_empty() && self.broken.is_none()).then(|| self.context.store.clone());
        let call = async move {
            match store {
                Some(store) => Some(store.import(to_store).await),
                None => None,
            }
        };
        let source = &mut self.source;
        let (applied, ahead) = futures::future::join(call, async { source.next_batch() }).await;
        self.ahead = Some(ahead);
        let outcomes = self.outcomes(applied, count);
        // Both lists are in line order: merge them.
        let mut refused = refused.into_iter().peekable();
        let mut applied = numbers.into_iter().zip(outcomes).peekable();
        loop {
            let take_refused = match (refused.peek(), applied.peek()) {
                (Some((a, _)), Some((b, _))) => a < b,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if take_refused {
                let Some((number, error)) = refused.next() else {
                    break;
                };
                self.counts.failed += 1;
                write_failed(&mut out, number, &error);
            } else {
                let Some((number, outcome)) = applied.next() else {
                    break;
                };
                self.write_outcome(&mut out, number, outcome);
            }
        }
        Some(Bytes::from(out))
    }

    /// The outcome of each of `count` lines: the store's, or the error of a failed batch (this
    /// one, or an earlier one when the store was not asked) for each.
    fn outcomes(
        &mut self,
        applied: Option<Result<Vec<ImportOutcome>, StoreError>>,
        count: usize,
    ) -> Vec<Result<Upserted, ApiError>> {
        match applied {
            Some(Ok(outcomes)) => {
                return outcomes
                    .into_iter()
                    .map(|outcome| outcome.map_err(ApiError::from))
                    .collect();
            }
            Some(Err(error)) => {
                tracing::error!(
                    error = %crate::http::error::cause_chain(&error),
                    "an import batch failed; its lines and every later line are answered failed"
                );
                self.broken = Some(ApiError::from(error));
            }
            None => {}
        }
        (0..count).map(|_| Err(self.failure())).collect()
    }

    /// The error a line of a failed batch is answered with.
    fn failure(&self) -> ApiError {
        match &self.broken {
            Some(ApiError::ServiceUnavailable(_)) => {
                ApiError::ServiceUnavailable("the store failed an earlier batch".into())
            }
            _ => ApiError::internal("the store failed an earlier batch"),
        }
    }

    fn write_outcome(
        &mut self,
        out: &mut Vec<u8>,
        number: usize,
        outcome: Result<Upserted, ApiError>,
    ) {
        let (status, stored) = match &outcome {
            Ok(Upserted::Created(stored)) => ("created", stored),
            Ok(Upserted::Updated(stored)) => ("updated", stored),
            Ok(Upserted::Unchanged(stored)) => ("unchanged", stored),
            Err(error) => {
                self.counts.failed += 1;
                write_failed(out, number, error);
                return;
            }
        };
        match status {
            "created" => self.counts.created += 1,
            "updated" => self.counts.updated += 1,
            _ => self.counts.unchanged += 1,
        }
        write_line(
            out,
            &ResultLine {
                line: number,
                status,
                id: Some(stored.id.get()),
                error: None,
            },
        );
    }
}

fn write_failed(out: &mut Vec<u8>, number: usize, error: &ApiError) {
    write_line(
        out,
        &ResultLine {
            line: number,
            status: "failed",
            id: None,
            error: Some(error.body()),
        },
    );
}

fn write_line(out: &mut Vec<u8>, line: &impl Serialize) {
    // Serialising these plain structs cannot fail.
    if serde_json::to_writer(&mut *out, line).is_ok() {
        out.push(b'\n');
    }
}
