//! The PostgreSQL backend: sqlx with compile-time checked queries, migrations embedded in the
//! binary and run on first use, ids from an identity column, `external_id` unique by index,
//! a version column bumped by every change, keyset pages over indexes, and the idempotency
//! records in a table of their own.

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::Row;
use tokio::sync::OnceCell;
use visitor_domain::{
    BodyFingerprint, Created, Email, ExternalId, Field, FieldError, Name, NewVisitor, Notes, Phone,
    Visitor, VisitorId, VisitorPatch, VisitorUpsert,
};

use crate::pg_pool::{Lease, Pool, PoolOptions};
use crate::sqlstate::spends_connection;
use crate::{
    ActiveToken, Change, ChangeCursor, ChangeLog, ChangePage, ChangePosition, ChangeStart,
    IdempotencyKey, IdempotencyPolicy, IdempotencyStore, Idempotent, IfMatch, ImportLine,
    ImportOutcome, ListQuery, Operations, Order, PoolStatus, Role, StoreError, StoredVisitor,
    TokenDigest, TokenRecord, TokenStore, UpsertCondition, Upserted, Version, VisitorStore,
};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// A pooled connection idle this long is pinged before it is used again (HikariCP's
/// "alive bypass window" is the same idea and the same length).
const IDLE_BEFORE_PING: Duration = Duration::from_millis(500);

/// A pooled connection idle this long (10 minutes) is closed instead of used (sqlx's default).
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// How the Postgres store connects.
#[derive(Debug, Clone)]
pub struct PgStoreOptions {
    /// The most connections the pool opens.
    pub max_connections: u32,
    /// How long a call waits for a connection before it reports the storage unavailable.
    pub acquire_timeout: Duration,
    /// A pooled connection idle this long is pinged before it is used again, and replaced when
    /// the ping fails (500 ms; `Duration::MAX`: never).
    pub ping_idle_after: Duration,
    /// How long a statement may run before the server cancels it and the call reports the
    /// storage unavailable (5 s; zero: no bound). The connection is replaced.
    pub statement_timeout: Duration,
    /// How old a connection may grow before it is replaced (30 minutes).
    pub max_lifetime: Duration,
}

impl Default for PgStoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 20,
            acquire_timeout: Duration::from_secs(3),
            ping_idle_after: IDLE_BEFORE_PING,
            statement_timeout: Duration::from_secs(5),
            max_lifetime: Duration::from_secs(30 * 60),
        }
    }
}

/// Keeps visitors in PostgreSQL.
///
/// Connecting is lazy: the store can be built while the database is down, reports
/// [`StoreError::Unavailable`] until it comes up, and then recovers by itself. The schema
/// migrations run once, on the first call that reaches the database.
#[derive(Debug)]
pub struct PgStore {
    pool: Pool,
    migrated: OnceCell<()>,
}

/// A row as stored; turned into a [`Visitor`] through the domain's constructors.
struct VisitorRow {
    id: i64,
    name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    notes: Option<String>,
    external_id: Option<String>,
    banned: bool,
    created: DateTime<Utc>,
    version: i64,
}

impl VisitorRow {
    /// Decodes a row of [`COLUMNS`], by position and without comparing each column's type
    /// with the field's (the columns are the migrations' own; a value of another type still
    /// fails to decode, it is only not looked at first).
    fn decode(row: &sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        Self::decode_from(row, 0)
    }

    /// [`Self::decode`] of the columns from index `first` on.
    fn decode_from(row: &sqlx::postgres::PgRow, first: usize) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get_unchecked(first)?,
            name: row.try_get_unchecked(first + 1)?,
            email: row.try_get_unchecked(first + 2)?,
            phone: row.try_get_unchecked(first + 3)?,
            notes: row.try_get_unchecked(first + 4)?,
            external_id: row.try_get_unchecked(first + 5)?,
            banned: row.try_get_unchecked(first + 6)?,
            created: row.try_get_unchecked(first + 7)?,
            version: row.try_get_unchecked(first + 8)?,
        })
    }
}

/// The visitor whose [`COLUMNS`] start at index `first` of a row, if there is one (a left join
/// that found none leaves them all NULL).
pub(crate) fn visitor_at(
    row: &sqlx::postgres::PgRow,
    first: usize,
) -> Result<Option<StoredVisitor>, StoreError> {
    let id: Option<i64> = row.try_get_unchecked(first).map_err(translate)?;
    if id.is_none() {
        return Ok(None);
    }
    VisitorRow::decode_from(row, first)
        .map_err(translate)?
        .try_into()
        .map(Some)
}

impl TryFrom<VisitorRow> for StoredVisitor {
    type Error = StoreError;

    fn try_from(row: VisitorRow) -> Result<Self, Self::Error> {
        let id = row.id;
        let corrupt = |error: FieldError| {
            StoreError::internal(format!("stored visitor {id} breaks a rule: {error}"))
        };
        fn text<T>(
            value: Option<String>,
            parse: fn(String) -> Result<T, FieldError>,
        ) -> Result<Option<T>, FieldError> {
            value.map(parse).transpose()
        }
        let visitor = Visitor {
            banned: row.banned,
            created: Created::from_datetime(row.created).map_err(corrupt)?,
            email: text(row.email, Email::parse).map_err(corrupt)?,
            external_id: text(row.external_id, ExternalId::parse).map_err(corrupt)?,
            id: VisitorId::new(id).map_err(corrupt)?,
            name: text(row.name, Name::parse).map_err(corrupt)?,
            notes: text(row.notes, Notes::parse).map_err(corrupt)?,
            phone: text(row.phone, Phone::parse).map_err(corrupt)?,
        };
        Ok(StoredVisitor {
            visitor,
            version: Version::new(row.version),
        })
    }
}

/// Runs one statement on a pooled connection, then gives the connection back, or closes it when
/// the statement failed for the connection's own reasons. `?` reports a connection that could
/// not be had; the statement's outcome is the value.
macro_rules! on_connection {
    ($store:expr, |$connection:ident| $work:expr) => {{
        let mut lease = $store.lease().await?;
        let $connection = lease.get();
        let outcome = $work.await;
        lease.settle(&outcome);
        outcome
    }};
}
pub(crate) use on_connection;

/// The columns of a visitor, in every statement that returns one.
const COLUMNS: &str = "id, name, email, phone, notes, external_id, banned, created, version";

/// A visitor's values after a merge (Update's and create_or_update's): `$2`–`$9` are whether
/// name is sent and its value, the same for email and phone, then banned and created (`NULL`
/// when not sent).
const MERGED: &str = "CASE WHEN $2 THEN $3 ELSE name END,
                      CASE WHEN $4 THEN $5 ELSE email END,
                      CASE WHEN $6 THEN $7 ELSE phone END,
                      COALESCE($8, banned),
                      COALESCE($9, created)";

/// The merge's assignment, and its condition: it changes something.
static MERGE: LazyLock<(String, String)> = LazyLock::new(|| {
    (
        format!("(name, email, phone, banned, created) = ({MERGED})"),
        format!("({MERGED}) IS DISTINCT FROM (name, email, phone, banned, created)"),
    )
});

/// Update's statement. The merge, the version check and the read-only comparisons happen under
/// the row lock, so concurrent updates of different keys all persist and of two updates
/// expecting one version only the first succeeds. The version grows, and the visitor's change
/// moves to a new position in the change log, only when a value changes.
static UPDATE_IF: LazyLock<String> = LazyLock::new(|| {
    let (merge, changes) = &*MERGE;
    format!(
        "UPDATE visitors SET
             {merge},
             version = version + CASE WHEN {changes} THEN 1 ELSE 0 END,
             changed_at = CASE WHEN {changes} THEN now() ELSE changed_at END,
             change_transaction = CASE WHEN {changes} THEN pg_current_xact_id()
                                       ELSE change_transaction END,
             change_sequence = CASE WHEN {changes} THEN nextval('visitor_change_sequence')
                                    ELSE change_sequence END
         WHERE id = $1
           AND ($10 OR external_id IS NOT DISTINCT FROM $11)
           AND ($12 OR notes IS NOT DISTINCT FROM $13)
           AND ($14::bigint[] IS NULL OR version = ANY($14))
         RETURNING {COLUMNS}"
    )
});

/// create_or_update's statement for a visitor that exists and that the body changes.
static UPDATE_BY_EXTERNAL_ID: LazyLock<String> = LazyLock::new(|| {
    let (merge, changes) = &*MERGE;
    format!(
        "UPDATE visitors SET
             {merge},
             version = version + 1,
             changed_at = now(),
             change_transaction = pg_current_xact_id(),
             change_sequence = nextval('visitor_change_sequence')
         WHERE external_id = $1
           AND (NOT $10 OR notes IS NOT DISTINCT FROM $11)
           AND ($12::bigint[] IS NULL OR (id, version) IN (
                    SELECT * FROM unnest($12::bigint[], $13::bigint[])))
           AND {changes}
         RETURNING {COLUMNS}"
    )
});

impl PgStore {
    /// A store for the database at `url`. Fails only when the URL cannot be parsed; the
    /// database itself is reached on first use.
    pub fn connect_lazy(url: &str, options: &PgStoreOptions) -> Result<Self, StoreError> {
        let connect: PgConnectOptions = url
            .parse()
            .map_err(|error| StoreError::Internal(Box::new(error)))?;
        Ok(Self::with_options(connect, options))
    }

    /// A store connecting as `connect` does.
    pub fn with_options(connect: PgConnectOptions, options: &PgStoreOptions) -> Self {
        let pool = Pool::new(
            connect,
            PoolOptions {
                max_connections: options.max_connections,
                acquire_timeout: options.acquire_timeout,
                ping_idle_after: options.ping_idle_after,
                idle_timeout: IDLE_TIMEOUT,
                max_lifetime: options.max_lifetime,
                statement_timeout: options.statement_timeout,
            },
        );
        Self {
            pool,
            migrated: OnceCell::new(),
        }
    }

    /// A store for the database an sqlx pool connects to (as `#[sqlx::test]` gives one), with
    /// that pool's size and acquire timeout. The store opens connections of its own.
    pub fn from_pool(pool: &PgPool) -> Self {
        let options = PgStoreOptions {
            max_connections: pool.options().get_max_connections(),
            acquire_timeout: pool.options().get_acquire_timeout(),
            ..PgStoreOptions::default()
        };
        Self::with_options((*pool.connect_options()).clone(), &options)
    }

    /// Closes the store's connections; every call after this reports the storage unavailable.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A pooled connection for one piece of work.
    pub(crate) async fn lease(&self) -> Result<Lease<'_>, StoreError> {
        self.pool.acquire().await.map_err(translate)
    }

    /// A pooled connection without the statement timeout, for work that may run longer than
    /// any request (a migration, a COPY): drop the lease when done, so that the connection is
    /// closed and never goes back to the pool without its bound.
    pub(crate) async fn unbounded_connection(&self) -> Result<Lease<'_>, StoreError> {
        let mut connection = self.lease().await?;
        sqlx::query("SET statement_timeout = 0")
            .execute(connection.get())
            .await
            .map_err(translate)?;
        Ok(connection)
    }

    /// Runs the embedded migrations now, once per store.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.migrated
            .get_or_try_init(|| async {
                // A migration may take longer than any request.
                let mut connection = self.unbounded_connection().await?;
                // `run_direct` is `run` on a connection already at hand (sqlx's own name for
                // it; `run` over `&mut PgConnection` cannot be proven `Send` here).
                let outcome = MIGRATOR.run_direct(connection.get()).await;
                drop(connection);
                outcome.map_err(|error| match error {
                    MigrateError::Execute(error) => translate(error),
                    other => StoreError::Internal(Box::new(other)),
                })
            })
            .await
            .map(|_| ())
    }

    async fn fetch(&self, id: VisitorId) -> Result<StoredVisitor, StoreError> {
        on_connection!(self, |connection| sqlx::query_as!(
            VisitorRow,
            "SELECT id, name, email, phone, notes, external_id, banned, created, version
             FROM visitors WHERE id = $1",
            id.get()
        )
        .fetch_optional(connection))
        .map_err(translate)?
        .ok_or(StoreError::NotFound)?
        .try_into()
    }

    /// Explains why a conditional update matched no row: the visitor is missing, its version
    /// is not an expected one, or a read-only key differs.
    async fn refusal(
        &self,
        id: VisitorId,
        patch: &VisitorPatch,
        condition: &IfMatch,
    ) -> StoreError {
        match self.fetch(id).await {
            Ok(stored) if !condition.accepts(stored.version) => StoreError::PreconditionFailed,
            Ok(stored) => match patch.check_read_only(&stored) {
                Err(errors) => StoreError::Invalid(errors),
                // The row changed after the update looked at it: the update came first, against
                // a version it no longer has.
                Ok(()) => StoreError::PreconditionFailed,
            },
            Err(error) => error,
        }
    }

    /// Inserts a visitor.
    async fn insert(&self, new: &NewVisitor) -> Result<StoredVisitor, StoreError> {
        let created = new.created.unwrap_or_else(Created::now);
        on_connection!(self, |connection| sqlx::query_as!(
            VisitorRow,
            "INSERT INTO visitors (name, email, phone, notes, external_id, banned, created)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             RETURNING id, name, email, phone, notes, external_id, banned, created, version",
            new.name.as_ref().map(Name::as_str),
            new.email.as_ref().map(Email::as_str),
            new.phone.as_ref().map(Phone::as_str),
            new.notes.as_ref().map(Notes::as_str),
            new.external_id.as_ref().map(ExternalId::as_str),
            new.banned,
            created.get(),
        )
        .fetch_one(connection))
        .map_err(translate)?
        .try_into()
    }
}

/// `(sent, value)` for a key that may be cleared: `sent` false leaves the column alone.
fn column_change<T: AsRef<str>>(field: &Field<T>) -> (bool, Option<&str>) {
    match field {
        Field::Absent => (false, None),
        Field::Null => (true, None),
        Field::Value(value) => (true, Some(value.as_ref())),
    }
}

/// `(absent, value)` for a read-only key sent back: `absent` true skips the comparison.
fn expected_value<T: AsRef<str>>(field: &Field<T>) -> (bool, Option<&str>) {
    let (sent, value) = column_change(field);
    (!sent, value)
}

#[async_trait]
impl VisitorStore for PgStore {
    #[tracing::instrument(level = "debug", name = "store.create", skip_all)]
    async fn create(&self, new: NewVisitor) -> Result<StoredVisitor, StoreError> {
        self.migrate().await?;
        self.insert(&new).await
    }

    #[tracing::instrument(level = "debug", name = "store.get", skip(self))]
    async fn get(&self, id: VisitorId) -> Result<StoredVisitor, StoreError> {
        self.migrate().await?;
        self.fetch(id).await
    }

    #[tracing::instrument(level = "debug", name = "store.update", skip(self, patch))]
    async fn update_if(
        &self,
        id: VisitorId,
        patch: VisitorPatch,
        condition: &IfMatch,
    ) -> Result<StoredVisitor, StoreError> {
        self.migrate().await?;
        if patch.changes_nothing() || !patch.id.agrees_with(Some(&id.get())) {
            let stored = self.fetch(id).await?;
            if !condition.accepts(stored.version) {
                return Err(StoreError::PreconditionFailed);
            }
            patch.apply_to(&stored).map_err(StoreError::Invalid)?;
            return Ok(stored);
        }
        let (set_name, name) = column_change(&patch.name);
        let (set_email, email) = column_change(&patch.email);
        let (set_phone, phone) = column_change(&patch.phone);
        let (any_external_id, external_id) = expected_value(&patch.external_id);
        let (any_notes, notes) = expected_value(&patch.notes);
        let versions = condition.versions();
        let statement = sqlx::query(&UPDATE_IF)
            .bind(id.get())
            .bind(set_name)
            .bind(name)
            .bind(set_email)
            .bind(email)
            .bind(set_phone)
            .bind(phone)
            .bind(patch.banned)
            .bind(patch.created.map(Created::get))
            .bind(any_external_id)
            .bind(external_id)
            .bind(any_notes)
            .bind(notes)
            .bind(versions.as_deref());
        let row = on_connection!(self, |connection| statement.fetch_optional(connection))
            .map_err(translate)?
            .map(|row| VisitorRow::decode(&row))
            .transpose()
            .map_err(translate)?;
        match row {
            Some(row) => row.try_into(),
            None => Err(self.refusal(id, &patch, condition).await),
        }
    }

    #[tracing::instrument(level = "debug", name = "store.delete", skip(self))]
    async fn delete(&self, id: VisitorId, condition: &IfMatch) -> Result<(), StoreError> {
        self.migrate().await?;
        // The idempotency records holding the visitor go with it (ON DELETE CASCADE).
        let versions = condition.versions();
        let deleted = on_connection!(self, |connection| sqlx::query!(
            "DELETE FROM visitors WHERE id = $1 AND ($2::bigint[] IS NULL OR version = ANY($2))",
            id.get(),
            versions.as_deref(),
        )
        .execute(connection))
        .map_err(translate)?;
        if deleted.rows_affected() == 1 {
            return Ok(());
        }
        match self.fetch(id).await {
            Ok(_) => Err(StoreError::PreconditionFailed),
            Err(error) => Err(error),
        }
    }

    /// One `UPDATE` when the visitor exists and the body changes it; else one call of
    /// `create_or_update_visitor` (migration 20261208000001) after it.
    #[tracing::instrument(level = "debug", name = "store.create_or_update", skip_all)]
    async fn create_or_update(
        &self,
        upsert: VisitorUpsert,
        condition: &UpsertCondition,
    ) -> Result<Upserted, StoreError> {
        self.migrate().await?;
        let line = LineColumns::of_upsert(&upsert);
        let (ids, versions): (Option<Vec<i64>>, Option<Vec<i64>>) = match condition {
            UpsertCondition::None | UpsertCondition::Exists => (None, None),
            UpsertCondition::OneOf(tags) => {
                let (ids, versions) = tags.iter().map(|(id, v)| (id.get(), v.get())).unzip();
                (Some(ids), Some(versions))
            }
        };
        // The usual case of a sync — the visitor exists and the body changes something — is one
        // UPDATE by external_id, as Update's own statement is; every other case (a new
        // visitor, nothing to change, a refusal to explain) goes through the function.
        let changed = sqlx::query(&UPDATE_BY_EXTERNAL_ID)
            .bind(line.external_id)
            .bind(line.set_name)
            .bind(line.name)
            .bind(line.set_email)
            .bind(line.email)
            .bind(line.set_phone)
            .bind(line.phone)
            .bind(line.banned)
            .bind(line.created)
            .bind(line.notes_sent)
            .bind(line.notes)
            .bind(ids.as_deref())
            .bind(versions.as_deref());
        let row = on_connection!(self, |connection| changed.fetch_optional(connection))
            .map_err(translate)?;
        if let Some(row) = row {
            return Ok(Upserted::Updated(
                VisitorRow::decode(&row).map_err(translate)?.try_into()?,
            ));
        }
        let statement = sqlx::query(
            "SELECT outcome, id, name, email, phone, notes, external_id, banned, created, version
             FROM create_or_update_visitor($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
                                           $13, $14, $15)",
        )
        .bind(line.external_id)
        .bind(*condition != UpsertCondition::None)
        .bind(ids.as_deref())
        .bind(versions.as_deref())
        .bind(line.set_name)
        .bind(line.name)
        .bind(line.set_email)
        .bind(line.email)
        .bind(line.set_phone)
        .bind(line.phone)
        .bind(line.notes_sent)
        .bind(line.notes)
        .bind(line.banned)
        .bind(line.created)
        .bind(Created::now().get());
        let row = on_connection!(self, |connection| statement.fetch_one(connection))
            .map_err(translate)?;
        outcome(&row, Some(&upsert.patch))
    }

    /// Lines in one call of `import_visitors` (migration 20261208000001): one round trip and
    /// one commit for the lot.
    #[tracing::instrument(level = "debug", name = "store.import", skip_all)]
    async fn import(&self, lines: Vec<ImportLine>) -> Result<Vec<ImportOutcome>, StoreError> {
        self.migrate().await?;
        let columns: Vec<LineColumns> = lines.iter().map(LineColumns::of_line).collect();
        fn column<'a>(
            columns: &[LineColumns<'a>],
            f: fn(&LineColumns<'a>) -> Option<&'a str>,
        ) -> Vec<Option<&'a str>> {
            columns.iter().map(f).collect()
        }
        let flag = |f: fn(&LineColumns) -> bool| -> Vec<bool> { columns.iter().map(f).collect() };
        let now = Created::now().get();
        let call = |one_by_one: bool| {
            sqlx::query(
                "SELECT outcome, id, name, email, phone, notes, external_id, banned, created,
                        version
                 FROM import_visitors($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                 ORDER BY line",
            )
            .bind(one_by_one)
            .bind(column(&columns, |c| c.external_id))
            .bind(flag(|c| c.set_name))
            .bind(column(&columns, |c| c.name))
            .bind(flag(|c| c.set_email))
            .bind(column(&columns, |c| c.email))
            .bind(flag(|c| c.set_phone))
            .bind(column(&columns, |c| c.phone))
            .bind(flag(|c| c.notes_sent))
            .bind(column(&columns, |c| c.notes))
            .bind(columns.iter().map(|c| c.banned).collect::<Vec<_>>())
            .bind(columns.iter().map(|c| c.created).collect::<Vec<_>>())
            .bind(now)
        };
        let first = call(false);
        let rows = match on_connection!(self, |connection| first.fetch_all(connection)) {
            // A concurrent call took one of the batch's new external_ids first (or the insert
            // was a deadlock's victim): nothing of the call stands, and the lines go one by
            // one, which meets that race line by line.
            Err(error) if met_a_concurrent_insert(&error) => {
                let again = call(true);
                on_connection!(self, |connection| again.fetch_all(connection))
            }
            other => other,
        }
        .map_err(translate)?;
        if rows.len() != lines.len() {
            return Err(StoreError::internal(format!(
                "an import of {} lines answered {} outcomes",
                lines.len(),
                rows.len()
            )));
        }
        Ok(lines
            .iter()
            .zip(&rows)
            .map(|(line, row)| {
                let patch = match line {
                    ImportLine::Create(_) => None,
                    ImportLine::Upsert(upsert) => Some(&upsert.patch),
                };
                outcome(row, patch)
            })
            .collect())
    }

    #[tracing::instrument(level = "debug", name = "store.list", skip(self))]
    async fn list(&self, query: &ListQuery) -> Result<Vec<StoredVisitor>, StoreError> {
        self.migrate().await?;
        // Only the conditions in use are written, so each combination gets a plan that walks
        // an index from the cursor (a generic `$n IS NULL OR ...` plan could not).
        let (beyond, direction) = match query.order {
            Order::Ascending => (">", "ASC"),
            Order::Descending => ("<", "DESC"),
        };
        let mut conditions: Vec<String> = Vec::new();
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        if query.after.is_some() {
            conditions.push(format!("id {beyond} ${}", next()));
        }
        if query.filter.external_id.is_some() {
            conditions.push(format!("external_id = ${}", next()));
        }
        if query.filter.email_folded().is_some() {
            conditions.push(format!("{EMAIL_FOLDED} = ${}", next()));
        }
        if query.filter.banned.is_some() {
            conditions.push(format!("banned = ${}", next()));
        }
        let limit = next();
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM visitors {filter} ORDER BY id {direction} LIMIT ${limit}"
        );
        let mut statement = sqlx::query(&sql);
        if let Some(after) = query.after {
            statement = statement.bind(after.get());
        }
        if let Some(external_id) = &query.filter.external_id {
            statement = statement.bind(external_id.as_str());
        }
        if let Some(email) = query.filter.email_folded() {
            statement = statement.bind(email);
        }
        if let Some(banned) = query.filter.banned {
            statement = statement.bind(banned);
        }
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let statement = statement.bind(limit);
        let rows = on_connection!(self, |connection| statement.fetch_all(connection))
            .map_err(translate)?;
        rows.iter()
            .map(|row| VisitorRow::decode(row).map_err(translate)?.try_into())
            .collect()
    }
}

#[async_trait]
impl Operations for PgStore {
    #[tracing::instrument(level = "debug", name = "store.ping", skip(self))]
    async fn ping(&self) -> Result<(), StoreError> {
        self.migrate().await?;
        on_connection!(self, |connection| sqlx::query_scalar!(
            "SELECT 1 AS \"one!\""
        )
        .fetch_one(connection))
        .map_err(translate)?;
        Ok(())
    }

    fn pool_status(&self) -> Option<PoolStatus> {
        let status = self.pool.status();
        Some(PoolStatus {
            used: status.open - status.idle,
            idle: status.idle,
            max: status.max,
        })
    }
}

/// True when a statement failed because a concurrent transaction wrote the same unique key
/// first (unique_violation) or was deadlocked with it (deadlock_detected).
fn met_a_concurrent_insert(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db)
        if db.code().is_some_and(|code| code == "23505" || code == "40P01"))
}

/// The parameters of one create, or one create-or-update, as `create_or_update_visitor` and
/// `import_visitors` take them: each key that may be cleared with whether it was sent.
struct LineColumns<'a> {
    external_id: Option<&'a str>,
    set_name: bool,
    name: Option<&'a str>,
    set_email: bool,
    email: Option<&'a str>,
    set_phone: bool,
    phone: Option<&'a str>,
    notes_sent: bool,
    notes: Option<&'a str>,
    banned: Option<bool>,
    created: Option<DateTime<Utc>>,
}

impl<'a> LineColumns<'a> {
    fn of_upsert(upsert: &'a VisitorUpsert) -> Self {
        let patch = &upsert.patch;
        let (set_name, name) = column_change(&patch.name);
        let (set_email, email) = column_change(&patch.email);
        let (set_phone, phone) = column_change(&patch.phone);
        let (notes_sent, notes) = column_change(&patch.notes);
        Self {
            external_id: Some(upsert.external_id.as_str()),
            set_name,
            name,
            set_email,
            email,
            set_phone,
            phone,
            notes_sent,
            notes,
            banned: patch.banned,
            created: patch.created.map(Created::get),
        }
    }

    fn of_create(new: &'a NewVisitor) -> Self {
        Self {
            external_id: None,
            set_name: true,
            name: new.name.as_ref().map(Name::as_str),
            set_email: true,
            email: new.email.as_ref().map(Email::as_str),
            set_phone: true,
            phone: new.phone.as_ref().map(Phone::as_str),
            notes_sent: true,
            notes: new.notes.as_ref().map(Notes::as_str),
            banned: Some(new.banned),
            created: new.created.map(Created::get),
        }
    }

    fn of_line(line: &'a ImportLine) -> Self {
        match line {
            ImportLine::Create(new) => Self::of_create(new),
            ImportLine::Upsert(upsert) => Self::of_upsert(upsert),
        }
    }
}

/// What a row of `create_or_update_visitor` or `import_visitors` (its `outcome` column, then
/// the visitor's) says; `patch` explains a `read_only` refusal (`None`: the line was a create).
fn outcome(row: &sqlx::postgres::PgRow, patch: Option<&VisitorPatch>) -> ImportOutcome {
    let outcome: String = row.try_get_unchecked(0).map_err(translate)?;
    let stored = || -> Result<StoredVisitor, StoreError> {
        VisitorRow::decode_from(row, 1)
            .map_err(translate)?
            .try_into()
    };
    match outcome.as_str() {
        "created" => Ok(Upserted::Created(stored()?)),
        "updated" => Ok(Upserted::Updated(stored()?)),
        "unchanged" => Ok(Upserted::Unchanged(stored()?)),
        "precondition_failed" => Err(StoreError::PreconditionFailed),
        "read_only" => {
            let stored = stored()?;
            match patch.map(|patch| patch.check_read_only(&stored)) {
                Some(Err(errors)) => Err(StoreError::Invalid(errors)),
                _ => Err(StoreError::internal(format!(
                    "visitor {} refused a change its read-only keys allow",
                    stored.id
                ))),
            }
        }
        other => Err(StoreError::internal(format!(
            "create_or_update_visitor answered an unknown outcome {other:?}"
        ))),
    }
}

/// `email` folded to ASCII lower case, exactly as the index `visitors_email_ascii_ci_id` has it.
const EMAIL_FOLDED: &str =
    "translate(email, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')";

/// What `create_visitor_idempotent` returns.
struct IdempotentRow {
    claimed: bool,
    fingerprint: Vec<u8>,
    answer: Option<String>,
    version: Option<i64>,
}

/// The SQLSTATE `create_visitor_idempotent` raises when a concurrent call recorded the key first.
const KEY_IN_USE: &str = "VK001";

/// A recorded answer as the store returns it.
fn recorded_answer(answer: &str, version: i64) -> Result<StoredVisitor, StoreError> {
    let visitor: Visitor = serde_json::from_str(answer).map_err(|error| {
        StoreError::internal(format!("a recorded answer cannot be read: {error}"))
    })?;
    Ok(StoredVisitor {
        visitor,
        version: Version::new(version),
    })
}

/// What a live record tells a request with `fingerprint`.
fn verdict(
    record_fingerprint: &[u8],
    answer: Option<String>,
    version: Option<i64>,
    fingerprint: &BodyFingerprint,
) -> Result<Idempotent, StoreError> {
    let (Some(answer), Some(version)) = (answer, version) else {
        return Err(StoreError::internal(
            "an idempotency record came back without its answer",
        ));
    };
    if record_fingerprint != fingerprint.as_bytes().as_slice() {
        return Ok(Idempotent::Mismatch);
    }
    Ok(Idempotent::Replay(recorded_answer(&answer, version)?))
}

/// `xid8` and `bigint` as the feed's positions carry them: both fit in 63 bits (a transaction
/// id is its epoch above 32 bits of id, and the epoch is tiny).
fn as_column(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::internal("a change position out of range"))
}

fn from_column(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::internal("a negative change position"))
}

/// Reads the log as migration `20261209000001` explains: only the entries of transactions older
/// than every one still in flight, in (transaction, sequence) order, in the statement that
/// also reads the horizon and whether the start has expired (one snapshot).
#[async_trait]
impl ChangeLog for PgStore {
    #[tracing::instrument(level = "debug", name = "store.changes", skip(self))]
    async fn changes(&self, start: ChangeStart, limit: usize) -> Result<ChangePage, StoreError> {
        self.migrate().await?;
        let (after, since) = match start {
            ChangeStart::After(cursor) => (cursor, DateTime::UNIX_EPOCH),
            ChangeStart::Since(time) => (ChangeCursor::default(), time.max(DateTime::UNIX_EPOCH)),
        };
        let statement = sqlx::query(
            "WITH horizon AS (
                 SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin,
                        $5 <> p.purges AND ($1::text::xid8, $2::bigint)
                            < (p.transaction, p.sequence) AS expired,
                        p.purges
                 FROM visitor_change_purges AS p
             ), held AS (
                 SELECT EXISTS (SELECT 1 FROM visitor_changes
                                WHERE transaction >= (SELECT xmin FROM horizon)) AS held_back
             ), page AS (
                 SELECT c.transaction, c.sequence, c.visitor_id, c.changed_at,
                        v.id, v.name, v.email, v.phone, v.notes, v.external_id, v.banned,
                        v.created, v.version
                 FROM visitor_changes AS c LEFT JOIN visitors AS v ON v.id = c.visitor_id
                 WHERE (c.transaction, c.sequence) > ($1::text::xid8, $2::bigint)
                   AND c.transaction < (SELECT xmin FROM horizon)
                   AND c.changed_at >= $3
                 ORDER BY c.transaction, c.sequence
                 LIMIT $4
             )
             SELECT h.xmin::text::bigint, h.expired, (SELECT held_back FROM held), h.purges,
                    page.transaction::text::bigint,
                    page.sequence, page.visitor_id, page.changed_at, page.id, page.name,
                    page.email, page.phone, page.notes, page.external_id, page.banned,
                    page.created, page.version
             FROM horizon AS h LEFT JOIN page ON true
             ORDER BY page.transaction, page.sequence",
        )
        .bind(as_column(after.position.transaction)?)
        .bind(as_column(after.position.sequence)?)
        .bind(since)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(as_column(after.purges)?);
        let rows = on_connection!(self, |connection| statement.fetch_all(connection))
            .map_err(translate)?;
        let Some(first) = rows.first() else {
            return Err(StoreError::internal("the change log has no purge row"));
        };
        // Only a cursor expires: a start from a time begins after every purge.
        let expired: bool = first.try_get_unchecked(1).map_err(translate)?;
        if expired && matches!(start, ChangeStart::After(_)) {
            return Ok(ChangePage::Expired);
        }
        let horizon = from_column(first.try_get_unchecked::<i64, _>(0).map_err(translate)?)?;
        let held_back: bool = first.try_get_unchecked(2).map_err(translate)?;
        let purges = from_column(first.try_get_unchecked(3).map_err(translate)?)?;
        let mut changes = Vec::with_capacity(rows.len());
        for row in &rows {
            let Some(transaction) = row
                .try_get_unchecked::<Option<i64>, _>(4)
                .map_err(translate)?
            else {
                continue;
            };
            let visitor_id: i64 = row.try_get_unchecked(6).map_err(translate)?;
            let exists: Option<i64> = row.try_get_unchecked(8).map_err(translate)?;
            let visitor = match exists {
                Some(_) => Some(
                    VisitorRow::decode_from(row, 8)
                        .map_err(translate)?
                        .try_into()?,
                ),
                None => None,
            };
            changes.push(Change {
                position: ChangePosition {
                    transaction: from_column(transaction)?,
                    sequence: from_column(row.try_get_unchecked(5).map_err(translate)?)?,
                },
                visitor_id: VisitorId::new(visitor_id).map_err(|_| {
                    StoreError::internal(format!("the change log names visitor {visitor_id}"))
                })?,
                changed_at: row.try_get_unchecked(7).map_err(translate)?,
                visitor,
            });
        }
        // With no change found, every entry to come belongs to a transaction at or above the
        // horizon: read on from just before it.
        let position = changes.last().map_or_else(
            || {
                after.position.max(ChangePosition {
                    transaction: horizon.saturating_sub(1),
                    sequence: i64::MAX as u64,
                })
            },
            |change| change.position,
        );
        let next = ChangeCursor { position, purges };
        Ok(ChangePage::Changes {
            changes,
            next,
            held_back,
        })
    }

    #[tracing::instrument(level = "debug", name = "store.purge_erasures", skip(self))]
    async fn purge_erasures(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.migrate().await?;
        let statement = sqlx::query(
            "WITH purged AS (
                 DELETE FROM visitor_erasures WHERE changed_at < $1
                 RETURNING transaction, sequence
             ), moved AS (
                 UPDATE visitor_change_purges AS p
                 SET (transaction, sequence) = (
                         SELECT CASE WHEN later THEN l.transaction ELSE p.transaction END,
                                CASE WHEN later THEN l.sequence ELSE p.sequence END
                         FROM (SELECT (l.transaction, l.sequence)
                                      > (p.transaction, p.sequence) AS later) AS c),
                     purges = p.purges + 1
                 FROM (SELECT transaction, sequence FROM purged
                       ORDER BY transaction DESC, sequence DESC LIMIT 1) AS l
             )
             SELECT count(*) FROM purged",
        )
        .bind(before);
        let purged: i64 = on_connection!(self, |connection| statement.fetch_one(connection))
            .map_err(translate)?
            .try_get_unchecked(0)
            .map_err(translate)?;
        from_column(purged)
    }
}

#[async_trait]
impl IdempotencyStore for PgStore {
    /// One call of `create_visitor_idempotent` (migrations 4 and 5): one round trip, one commit.
    #[tracing::instrument(level = "debug", name = "store.create_idempotent", skip_all)]
    async fn create_idempotent(
        &self,
        key: &IdempotencyKey,
        fingerprint: &BodyFingerprint,
        policy: &IdempotencyPolicy,
        new: NewVisitor,
    ) -> Result<Idempotent, StoreError> {
        self.migrate().await?;
        let created = new.created.unwrap_or_else(Created::now);
        let row = on_connection!(self, |connection| sqlx::query_as!(
            IdempotentRow,
            r#"SELECT claimed AS "claimed!", recorded_fingerprint AS "fingerprint!",
                      recorded_answer AS answer, recorded_version AS version
               FROM create_visitor_idempotent($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"#,
            key.owner,
            key.key,
            fingerprint.as_bytes().as_slice(),
            policy.ttl.as_secs_f64(),
            new.name.as_ref().map(Name::as_str),
            new.email.as_ref().map(Email::as_str),
            new.phone.as_ref().map(Phone::as_str),
            new.notes.as_ref().map(Notes::as_str),
            new.external_id.as_ref().map(ExternalId::as_str),
            new.banned,
            created.get(),
        )
        .fetch_one(connection));
        let row = match row {
            Ok(row) => row,
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some(KEY_IN_USE) => {
                return Ok(Idempotent::InUse)
            }
            Err(error) => return Err(translate(error)),
        };
        if row.claimed {
            let (Some(answer), Some(version)) = (row.answer, row.version) else {
                return Err(StoreError::internal(
                    "a new record came back without its answer",
                ));
            };
            return Ok(Idempotent::Created(recorded_answer(&answer, version)?));
        }
        verdict(&row.fingerprint, row.answer, row.version, fingerprint)
    }

    #[tracing::instrument(level = "debug", name = "store.purge_expired", skip_all)]
    async fn purge_expired(&self) -> Result<u64, StoreError> {
        self.migrate().await?;
        let purged = on_connection!(self, |connection| sqlx::query!(
            "DELETE FROM idempotency_keys WHERE expires_at <= now()"
        )
        .execute(connection))
        .map_err(translate)?;
        Ok(purged.rows_affected())
    }
}

/// A token as read back.
struct TokenRow {
    id: i64,
    name: Option<String>,
    role: String,
    created: DateTime<Utc>,
    revoked: Option<DateTime<Utc>>,
}

impl TryFrom<TokenRow> for TokenRecord {
    type Error = StoreError;

    fn try_from(row: TokenRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.id,
            name: row.name,
            role: role_of(&row.role)?,
            created: row.created,
            revoked: row.revoked,
        })
    }
}

fn role_of(stored: &str) -> Result<Role, StoreError> {
    stored.parse().map_err(StoreError::internal)
}

#[async_trait]
impl TokenStore for PgStore {
    #[tracing::instrument(level = "debug", name = "store.create_token", skip_all)]
    async fn create_token(
        &self,
        role: Role,
        name: Option<&str>,
        digest: &TokenDigest,
    ) -> Result<TokenRecord, StoreError> {
        self.migrate().await?;
        on_connection!(self, |connection| sqlx::query_as!(
            TokenRow,
            "INSERT INTO api_tokens (name, role, digest) VALUES ($1, $2, $3)
             RETURNING id, name, role, created, revoked",
            name,
            role.as_str(),
            &digest[..],
        )
        .fetch_one(connection))
        .map_err(translate)?
        .try_into()
    }

    #[tracing::instrument(level = "debug", name = "store.list_tokens", skip_all)]
    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.migrate().await?;
        on_connection!(self, |connection| sqlx::query_as!(
            TokenRow,
            "SELECT id, name, role, created, revoked FROM api_tokens ORDER BY id"
        )
        .fetch_all(connection))
        .map_err(translate)?
        .into_iter()
        .map(TryInto::try_into)
        .collect()
    }

    #[tracing::instrument(level = "debug", name = "store.revoke_token", skip(self))]
    async fn revoke_token(&self, id: i64) -> Result<TokenRecord, StoreError> {
        self.migrate().await?;
        on_connection!(self, |connection| sqlx::query_as!(
            TokenRow,
            "UPDATE api_tokens SET revoked = coalesce(revoked, now()) WHERE id = $1
             RETURNING id, name, role, created, revoked",
            id,
        )
        .fetch_optional(connection))
        .map_err(translate)?
        .ok_or(StoreError::NotFound)?
        .try_into()
    }

    async fn active_tokens(&self) -> Result<Vec<ActiveToken>, StoreError> {
        self.migrate().await?;
        let rows = on_connection!(self, |connection| sqlx::query!(
            "SELECT role, digest FROM api_tokens WHERE revoked IS NULL"
        )
        .fetch_all(connection))
        .map_err(translate)?;
        rows.into_iter()
            .map(|row| {
                let digest = TokenDigest::try_from(row.digest.as_slice())
                    .map_err(|_| StoreError::internal("a stored token digest is not 32 bytes"))?;
                Ok(ActiveToken {
                    role: role_of(&row.role)?,
                    digest,
                })
            })
            .collect()
    }
}

/// Translates a sqlx error into the store's terms; `sqlx::Error` never leaves this module.
pub(crate) fn translate(error: sqlx::Error) -> StoreError {
    use sqlx::Error;
    match &error {
        Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        Error::Database(db) if db.code().is_some_and(|code| spends_connection(&code)) => {
            StoreError::Unavailable(Box::new(error))
        }
        Error::Io(_) | Error::Tls(_) | Error::PoolTimedOut | Error::PoolClosed => {
            StoreError::Unavailable(Box::new(error))
        }
        _ => StoreError::Internal(Box::new(error)),
    }
}
