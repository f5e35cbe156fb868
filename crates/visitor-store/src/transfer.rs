//! Export and restore (contract §9.3) over PostgreSQL's COPY protocol, streaming both ways: the
//! memory used does not grow with the number of visitors.
//!
//! - [`PgStore::export`] runs one `COPY (SELECT … ORDER BY id) TO STDOUT` (one statement, so one
//!   snapshot) and writes each row as Show writes the visitor (the domain's serialisation).
//! - [`PgStore::restore`] takes a batch of visitors with their line numbers: `COPY … FROM STDIN`
//!   into a temporary table, then in the same transaction moves the id sequence past the batch's
//!   highest id, inserts every visitor whose id and `external_id` are free (`ON CONFLICT DO
//!   NOTHING`), and compares each line with what is stored, so a line is created, skipped (the
//!   same visitor is there already: a re-run resumes) or failed (with why). One commit per
//!   batch: a batch is applied whole or not at all.
//!
//! Both run on a connection of their own without the statement timeout (a COPY lasts as long as
//! its reader or writer takes), closed afterwards so it never returns to the pool.

use std::collections::HashSet;
use std::io::Write;

use chrono::DateTime;
use futures::StreamExt;
use sqlx::Row;
use visitor_domain::{Created, Email, ExternalId, Name, Notes, Phone, Visitor, VisitorId};

use crate::postgres::translate;
use crate::{PgStore, StoreError};

/// What restoring one line did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restored {
    /// The visitor was stored with its id.
    Created,
    /// The same visitor (every key equal) was stored already.
    Skipped,
    /// Nothing was stored for the line; the reason, for people.
    Failed(String),
}

/// The columns of an export, in order: `created` in microseconds since the epoch, so that it
/// is read back exactly whatever the session's time zone and date style.
const EXPORT: &str = "COPY (SELECT id, name, email, phone, notes, external_id, banned,
                             (extract(epoch FROM created) * 1000000)::bigint
                      FROM visitors ORDER BY id) TO STDOUT";

/// The table a restore batch is copied into; one per connection, emptied at each commit.
const STAGING: &str = "CREATE TEMPORARY TABLE IF NOT EXISTS restore_batch (
    line bigint NOT NULL, id bigint NOT NULL, name text, email text, phone text, notes text,
    external_id text, banned boolean NOT NULL, created timestamptz NOT NULL
) ON COMMIT DELETE ROWS";

/// Moves the id sequence past the batch's highest id (never back), so no later create is
/// given an id the restore uses.
const ADVANCE_IDS: &str = "SELECT setval(pg_get_serial_sequence('visitors', 'id'),
    GREATEST((SELECT max(id) FROM restore_batch),
             pg_sequence_last_value(pg_get_serial_sequence('visitors', 'id')::regclass), 1))";

/// Inserts each id once (its first line), unless its id or `external_id` is taken.
const INSERT: &str = "INSERT INTO visitors
        (id, name, email, phone, notes, external_id, banned, created)
    OVERRIDING SYSTEM VALUE
    SELECT DISTINCT ON (id) id, name, email, phone, notes, external_id, banned, created
    FROM restore_batch ORDER BY id, line
    ON CONFLICT DO NOTHING
    RETURNING id";

/// Each line against what is stored now: is its id there, with the same content, and who else
/// holds its `external_id`.
const COMPARE: &str = "SELECT b.line, b.id, v.id IS NOT NULL,
        v.id IS NOT NULL AND (v.name, v.email, v.phone, v.notes, v.external_id, v.banned,
                              v.created)
            IS NOT DISTINCT FROM (b.name, b.email, b.phone, b.notes, b.external_id, b.banned,
                                  b.created),
        (SELECT o.id FROM visitors AS o WHERE o.external_id = b.external_id AND o.id <> b.id)
    FROM restore_batch AS b LEFT JOIN visitors AS v ON v.id = b.id
    ORDER BY b.line";

impl PgStore {
    /// Writes every visitor to `out`, one JSON object per line exactly as Show answers it, in
    /// id order, from one snapshot; calls `progress` with the number written so far now and
    /// then. Returns how many were written.
    ///
    /// Errors: [`StoreError::Unavailable`]; [`StoreError::Internal`] (a stored row that breaks
    /// a rule, or `out` failing to take the bytes).
    pub async fn export(
        &self,
        out: &mut (dyn Write + Send),
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<u64, StoreError> {
        self.migrate().await?;
        let mut lease = self.unbounded_connection().await?;
        let mut rows = lease.get().copy_out_raw(EXPORT).await.map_err(translate)?;
        let mut pending: Vec<u8> = Vec::new();
        let mut written = 0u64;
        let mut line = Vec::with_capacity(512);
        while let Some(chunk) = rows.next().await {
            let chunk = chunk.map_err(translate)?;
            pending.extend_from_slice(&chunk);
            // The rows complete so far: up to the last newline (a row may span two chunks).
            let Some(last) = pending.iter().rposition(|&b| b == b'\n') else {
                continue;
            };
            for row in pending[..=last].split_inclusive(|&b| b == b'\n') {
                let visitor = exported_visitor(&row[..row.len() - 1])?;
                line.clear();
                serde_json::to_writer(&mut line, &visitor)
                    .map_err(|error| StoreError::Internal(Box::new(error)))?;
                line.push(b'\n');
                out.write_all(&line)
                    .map_err(|error| StoreError::Internal(Box::new(error)))?;
                written += 1;
                if written.is_multiple_of(10_000) {
                    progress(written);
                }
            }
            pending.drain(..=last);
        }
        if !pending.is_empty() {
            return Err(StoreError::internal("the export ended inside a row"));
        }
        out.flush()
            .map_err(|error| StoreError::Internal(Box::new(error)))?;
        progress(written);
        Ok(written)
    }

    /// Restores a batch of visitors, keeping every key (see the module documentation); `lines`
    /// pairs each with its line number. Returns what each line did, in the order given.
    ///
    /// Errors (nothing of the batch is stored): [`StoreError::Unavailable`];
    /// [`StoreError::Internal`].
    pub async fn restore(
        &self,
        lines: &[(u64, Visitor)],
    ) -> Result<Vec<(u64, Restored)>, StoreError> {
        self.migrate().await?;
        if lines.is_empty() {
            return Ok(Vec::new());
        }
        let mut lease = self.unbounded_connection().await?;
        let connection = lease.get();
        let mut copy = Vec::with_capacity(lines.len() * 200);
        for (number, visitor) in lines {
            copy_row(&mut copy, *number, visitor);
        }
        let outcome = async {
            sqlx::query("BEGIN").execute(&mut *connection).await?;
            sqlx::query(STAGING).execute(&mut *connection).await?;
            let mut sink = connection
                .copy_in_raw("COPY restore_batch FROM STDIN")
                .await?;
            sink.send(copy).await?;
            sink.finish().await?;
            sqlx::query(ADVANCE_IDS).execute(&mut *connection).await?;
            let inserted: HashSet<i64> = sqlx::query_scalar::<_, i64>(INSERT)
                .fetch_all(&mut *connection)
                .await?
                .into_iter()
                .collect();
            // Every line inserted (the usual case of a first run): nothing to compare.
            let compared = if inserted.len() == lines.len() {
                Vec::new()
            } else {
                sqlx::query(COMPARE).fetch_all(&mut *connection).await?
            };
            sqlx::query("COMMIT").execute(&mut *connection).await?;
            Ok::<_, sqlx::Error>((inserted, compared))
        }
        .await;
        // On any error the connection is dropped (closed), and the transaction with it.
        let (mut inserted, compared) = outcome.map_err(translate)?;
        if compared.is_empty() {
            drop(lease);
            return Ok(lines
                .iter()
                .map(|(number, _)| (*number, Restored::Created))
                .collect());
        }
        let by_line: std::collections::HashMap<u64, &Visitor> = lines
            .iter()
            .map(|(number, visitor)| (*number, visitor))
            .collect();
        let mut results = Vec::with_capacity(lines.len());
        for row in compared {
            let number = u64::try_from(row.try_get::<i64, _>(0).map_err(translate)?)
                .map_err(|_| StoreError::internal("a negative line number"))?;
            let id: i64 = row.try_get(1).map_err(translate)?;
            let id_exists: bool = row.try_get(2).map_err(translate)?;
            let identical: bool = row.try_get(3).map_err(translate)?;
            let holder: Option<i64> = row.try_get(4).map_err(translate)?;
            // The first line of an id that was inserted created it (lines come in order).
            let outcome = if inserted.remove(&id) {
                Restored::Created
            } else if identical {
                Restored::Skipped
            } else if id_exists {
                Restored::Failed(format!("visitor {id} exists with other content"))
            } else if let Some(holder) = holder {
                let external_id = by_line
                    .get(&number)
                    .and_then(|visitor| visitor.external_id.as_ref())
                    .map(|external_id| external_id.as_str().to_owned())
                    .unwrap_or_default();
                Restored::Failed(format!(
                    "external_id {external_id:?} belongs to visitor {holder}"
                ))
            } else {
                Restored::Failed(format!("visitor {id} could not be stored"))
            };
            results.push((number, outcome));
        }
        drop(lease);
        Ok(results)
    }
}

/// Reads a row of [`EXPORT`] (COPY's text format) into a visitor, applying every rule.
fn exported_visitor(row: &[u8]) -> Result<Visitor, StoreError> {
    let row = std::str::from_utf8(row)
        .map_err(|error| StoreError::internal(format!("an exported row is not UTF-8: {error}")))?;
    let fields: Vec<Option<String>> = row.split('\t').map(unescape).collect();
    let [id, name, email, phone, notes, external_id, banned, micros] = fields.as_slice() else {
        return Err(StoreError::internal(format!(
            "an exported row has {} columns, not 8",
            fields.len()
        )));
    };
    let corrupt = |what: &str| StoreError::internal(format!("an exported row has {what}"));
    let id: i64 = id
        .as_deref()
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| corrupt("no id"))?;
    let broken = |error: visitor_domain::FieldError| {
        StoreError::internal(format!("stored visitor {id} breaks a rule: {error}"))
    };
    fn text<T>(
        value: &Option<String>,
        parse: fn(String) -> Result<T, visitor_domain::FieldError>,
    ) -> Result<Option<T>, visitor_domain::FieldError> {
        value.clone().map(parse).transpose()
    }
    let micros: i64 = micros
        .as_deref()
        .and_then(|micros| micros.parse().ok())
        .ok_or_else(|| corrupt("no created"))?;
    let created =
        DateTime::from_timestamp_micros(micros).ok_or_else(|| corrupt("a bad created"))?;
    Ok(Visitor {
        banned: banned.as_deref() == Some("t"),
        created: Created::from_datetime(created).map_err(broken)?,
        email: text(email, Email::parse).map_err(broken)?,
        external_id: text(external_id, ExternalId::parse).map_err(broken)?,
        id: VisitorId::new(id).map_err(broken)?,
        name: text(name, Name::parse).map_err(broken)?,
        notes: text(notes, Notes::parse).map_err(broken)?,
        phone: text(phone, Phone::parse).map_err(broken)?,
    })
}

/// A field of COPY's text format: `\N` is null; backslash escapes are undone.
fn unescape(field: &str) -> Option<String> {
    if field == "\\N" {
        return None;
    }
    if !field.contains('\\') {
        return Some(field.to_owned());
    }
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('v') => out.push('\u{b}'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    Some(out)
}

/// Appends a row of `restore_batch` in COPY's text format.
fn copy_row(out: &mut Vec<u8>, number: u64, visitor: &Visitor) {
    let mut field = |value: Option<&str>, last: bool| {
        match value {
            None => out.extend_from_slice(b"\\N"),
            Some(value) => {
                for byte in value.bytes() {
                    match byte {
                        b'\\' => out.extend_from_slice(b"\\\\"),
                        b'\n' => out.extend_from_slice(b"\\n"),
                        b'\r' => out.extend_from_slice(b"\\r"),
                        b'\t' => out.extend_from_slice(b"\\t"),
                        other => out.push(other),
                    }
                }
            }
        }
        out.push(if last { b'\n' } else { b'\t' });
    };
    field(Some(&number.to_string()), false);
    field(Some(&visitor.id.get().to_string()), false);
    field(visitor.name.as_ref().map(Name::as_str), false);
    field(visitor.email.as_ref().map(Email::as_str), false);
    field(visitor.phone.as_ref().map(Phone::as_str), false);
    field(visitor.notes.as_ref().map(Notes::as_str), false);
    field(visitor.external_id.as_ref().map(ExternalId::as_str), false);
    field(Some(if visitor.banned { "t" } else { "f" }), false);
    let created = visitor
        .created
        .get()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    field(Some(&created), true);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes_round_trip() {
        for text in [
            "plain",
            "tab\there",
            "line\nbreak",
            "back\\slash",
            "cr\r",
            "\\N",
        ] {
            let mut out = Vec::new();
            let visitor = Visitor {
                banned: true,
                created: Created::now(),
                email: None,
                external_id: None,
                id: VisitorId::new(3).unwrap(),
                name: Some(Name::parse(text).unwrap()),
                notes: None,
                phone: None,
            };
            copy_row(&mut out, 1, &visitor);
            let row = std::str::from_utf8(&out).unwrap().trim_end_matches('\n');
            let fields: Vec<Option<String>> = row.split('\t').map(unescape).collect();
            assert_eq!(fields.len(), 9, "{row}");
            assert_eq!(fields[2].as_deref(), Some(text));
            assert_eq!(fields[3], None);
        }
    }
}
