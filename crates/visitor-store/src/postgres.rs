//! The PostgreSQL backend: sqlx with compile-time checked queries, migrations embedded in the
//! binary and run on first use, ids from an identity column, `external_id` unique by index.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::Connection;
use tokio::sync::OnceCell;
use visitor_domain::{
    Created, Email, ExternalId, Field, FieldError, Name, NewVisitor, Notes, Phone, Visitor,
    VisitorId, VisitorPatch,
};

use crate::{StoreError, VisitorStore};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// A pooled connection idle this long is pinged before it is used again (HikariCP's
/// "alive bypass window" is the same idea and the same length).
const IDLE_BEFORE_PING: Duration = Duration::from_millis(500);

/// How the Postgres store connects.
#[derive(Debug, Clone)]
pub struct PgStoreOptions {
    /// The most connections the pool opens.
    pub max_connections: u32,
    /// How long a call waits for a connection before it reports the storage unavailable.
    pub acquire_timeout: Duration,
}

impl Default for PgStoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 20,
            acquire_timeout: Duration::from_secs(3),
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
    pool: PgPool,
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
}

impl TryFrom<VisitorRow> for Visitor {
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
        Ok(Visitor {
            banned: row.banned,
            created: Created::from_datetime(row.created).map_err(corrupt)?,
            email: text(row.email, Email::parse).map_err(corrupt)?,
            external_id: text(row.external_id, ExternalId::parse).map_err(corrupt)?,
            id: VisitorId::new(id).map_err(corrupt)?,
            name: text(row.name, Name::parse).map_err(corrupt)?,
            notes: text(row.notes, Notes::parse).map_err(corrupt)?,
            phone: text(row.phone, Phone::parse).map_err(corrupt)?,
        })
    }
}

impl PgStore {
    /// A store for the database at `url`. Fails only when the URL cannot be parsed; the
    /// database itself is reached on first use.
    pub fn connect_lazy(url: &str, options: &PgStoreOptions) -> Result<Self, StoreError> {
        let connect: PgConnectOptions = url
            .parse()
            .map_err(|error| StoreError::Internal(Box::new(error)))?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            // No ping before each use (it would double the round trips); only a connection that
            // sat idle for a while is pinged, so one left over from before a database restart is
            // replaced instead of failing a request. Busy connections are never idle that long.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= IDLE_BEFORE_PING {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(connect);
        Ok(Self::from_pool(pool))
    }

    /// A store over an existing pool (the migrations still run on first use).
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            pool,
            migrated: OnceCell::new(),
        }
    }

    /// Runs the embedded migrations now, once per store.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.migrated
            .get_or_try_init(|| async {
                MIGRATOR.run(&self.pool).await.map_err(|error| match error {
                    MigrateError::Execute(error) => translate(error),
                    other => StoreError::Internal(Box::new(other)),
                })
            })
            .await
            .map(|_| ())
    }

    async fn fetch(&self, id: VisitorId) -> Result<Visitor, StoreError> {
        sqlx::query_as!(
            VisitorRow,
            "SELECT id, name, email, phone, notes, external_id, banned, created
             FROM visitors WHERE id = $1",
            id.get()
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(translate)?
        .ok_or(StoreError::NotFound)?
        .try_into()
    }

    /// Explains why a patch matched no row: the visitor is missing, or a read-only key differs.
    async fn refusal(&self, id: VisitorId, patch: &VisitorPatch) -> StoreError {
        match self.fetch(id).await {
            Ok(stored) => match patch.check_read_only(&stored) {
                Err(errors) => StoreError::Invalid(errors),
                // The row appeared after the update looked for it: the update came first.
                Ok(()) => StoreError::NotFound,
            },
            Err(error) => error,
        }
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
    #[tracing::instrument(name = "store.create", skip_all)]
    async fn create(&self, new: NewVisitor) -> Result<Visitor, StoreError> {
        self.migrate().await?;
        let created = new.created.unwrap_or_else(Created::now);
        sqlx::query_as!(
            VisitorRow,
            "INSERT INTO visitors (name, email, phone, notes, external_id, banned, created)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             RETURNING id, name, email, phone, notes, external_id, banned, created",
            new.name.as_ref().map(Name::as_str),
            new.email.as_ref().map(Email::as_str),
            new.phone.as_ref().map(Phone::as_str),
            new.notes.as_ref().map(Notes::as_str),
            new.external_id.as_ref().map(ExternalId::as_str),
            new.banned,
            created.get(),
        )
        .fetch_one(&self.pool)
        .await
        .map_err(translate)?
        .try_into()
    }

    #[tracing::instrument(name = "store.get", skip(self))]
    async fn get(&self, id: VisitorId) -> Result<Visitor, StoreError> {
        self.migrate().await?;
        self.fetch(id).await
    }

    #[tracing::instrument(name = "store.update", skip(self, patch))]
    async fn update(&self, id: VisitorId, patch: VisitorPatch) -> Result<Visitor, StoreError> {
        self.migrate().await?;
        if patch.changes_nothing() || !patch.id.agrees_with(Some(&id.get())) {
            let stored = self.fetch(id).await?;
            return patch.apply_to(&stored).map_err(StoreError::Invalid);
        }
        // One statement: the merge and the read-only comparisons happen under the row lock,
        // so concurrent updates of different keys all persist.
        let (set_name, name) = column_change(&patch.name);
        let (set_email, email) = column_change(&patch.email);
        let (set_phone, phone) = column_change(&patch.phone);
        let (any_external_id, external_id) = expected_value(&patch.external_id);
        let (any_notes, notes) = expected_value(&patch.notes);
        let row = sqlx::query_as!(
            VisitorRow,
            "UPDATE visitors SET
                 name = CASE WHEN $2 THEN $3 ELSE name END,
                 email = CASE WHEN $4 THEN $5 ELSE email END,
                 phone = CASE WHEN $6 THEN $7 ELSE phone END,
                 banned = COALESCE($8, banned),
                 created = COALESCE($9, created)
             WHERE id = $1
               AND ($10 OR external_id IS NOT DISTINCT FROM $11)
               AND ($12 OR notes IS NOT DISTINCT FROM $13)
             RETURNING id, name, email, phone, notes, external_id, banned, created",
            id.get(),
            set_name,
            name,
            set_email,
            email,
            set_phone,
            phone,
            patch.banned,
            patch.created.map(Created::get),
            any_external_id,
            external_id,
            any_notes,
            notes,
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(translate)?;
        match row {
            Some(row) => row.try_into(),
            None => Err(self.refusal(id, &patch).await),
        }
    }

    #[tracing::instrument(name = "store.ping", skip(self))]
    async fn ping(&self) -> Result<(), StoreError> {
        self.migrate().await?;
        sqlx::query_scalar!("SELECT 1 AS \"one!\"")
            .fetch_one(&self.pool)
            .await
            .map_err(translate)?;
        Ok(())
    }
}

/// Translates a sqlx error into the store's terms; `sqlx::Error` never leaves this module.
fn translate(error: sqlx::Error) -> StoreError {
    use sqlx::Error;
    match &error {
        Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        Error::Database(db) if db.code().is_some_and(|code| unreachable_state(&code)) => {
            StoreError::Unavailable(Box::new(error))
        }
        Error::Io(_) | Error::Tls(_) | Error::PoolTimedOut | Error::PoolClosed => {
            StoreError::Unavailable(Box::new(error))
        }
        Error::RowNotFound => StoreError::NotFound,
        _ => StoreError::Internal(Box::new(error)),
    }
}

/// SQLSTATEs that mean the server cannot serve now (connection exceptions, shutdown, too many
/// connections, read-only standby) rather than that the request is wrong.
fn unreachable_state(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("57P") || code == "53300" || code == "25006"
}
