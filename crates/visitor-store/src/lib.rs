//! Storage for visitors: the [`VisitorStore`] trait every backend implements, the
//! [`IdempotencyStore`] trait for the records of idempotent creates, the [`Operations`] trait
//! for what an operator watches (is it up, how full is its pool), the errors they may return,
//! and two backends — [`PgStore`] (PostgreSQL, via sqlx; the default `postgres` feature) and
//! [`MemoryStore`] — each implementing all three.
//!
//! The store applies the domain's rules ([`visitor_domain::VisitorPatch::apply_to`]) atomically
//! with the write, and keeps a [`Version`] per visitor that every change bumps; it knows nothing
//! of HTTP. Backend errors (such as `sqlx::Error`) are translated inside each adapter and never
//! cross this crate's boundary.
//!
//! A crate that implements the traits, or uses only the in-memory store, depends on this one
//! with `default-features = false` and compiles without sqlx.

mod changes;
mod memory;
#[cfg(feature = "postgres")]
mod pg_pool;
#[cfg(feature = "postgres")]
mod pg_webhooks;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
mod sqlstate;
mod tokens;
#[cfg(feature = "postgres")]
mod transfer;
mod webhooks;

#[cfg(feature = "conformance")]
pub mod conformance;

use std::error::Error as StdError;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use visitor_domain::{
    BodyFingerprint, NewVisitor, ValidationErrors, Visitor, VisitorFilter, VisitorId, VisitorPatch,
    VisitorUpsert,
};

pub use changes::{Change, ChangeCursor, ChangeLog, ChangePage, ChangePosition, ChangeStart};
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{PgStore, PgStoreOptions};
pub use tokens::{ActiveToken, Role, TokenDigest, TokenRecord, TokenStore};
#[cfg(feature = "postgres")]
pub use transfer::Restored;
pub use webhooks::{
    Attempt, AttemptResult, Delivery, DeliveryOutcome, Ended, NewWebhook, Webhook, WebhookEvent,
    WebhookStore, ATTEMPTS_KEPT,
};

/// A boxed cause, kept for the logs.
pub type Cause = Box<dyn StdError + Send + Sync + 'static>;

/// What a store operation can fail with. New kinds may be added: match with a wildcard arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No visitor has the given id.
    #[error("no visitor with that id")]
    NotFound,
    /// Another visitor already has the given `external_id`.
    #[error("external_id is already used by another visitor")]
    Conflict,
    /// The change breaks a rule of the domain; every offending key is named.
    #[error("the change breaks visitor rules: {0}")]
    Invalid(ValidationErrors),
    /// The visitor's version is none of the versions the caller expected; nothing changed.
    #[error("the visitor is not at an expected version")]
    PreconditionFailed,
    /// The storage cannot be reached now; the same call may succeed later.
    #[error("storage is unavailable")]
    Unavailable(#[source] Cause),
    /// Anything else: a bug or a state the store cannot explain.
    #[error("internal storage error")]
    Internal(#[source] Cause),
}

impl StoreError {
    /// An internal error carrying a message as its cause.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into().into())
    }
}

/// The version of a stored visitor: 1 when created, one more for every change. An update that
/// changes nothing keeps it. Every instance on one database sees the same version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(i64);

impl Version {
    /// The version of a new visitor.
    pub const FIRST: Self = Self(1);

    pub fn new(value: i64) -> Self {
        Self(value)
    }

    pub fn get(self) -> i64 {
        self.0
    }

    /// The version after a change.
    pub fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

/// A visitor as stored: the visitor and its version. Dereferences to the [`Visitor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVisitor {
    pub visitor: Visitor,
    pub version: Version,
}

impl Deref for StoredVisitor {
    type Target = Visitor;

    fn deref(&self) -> &Visitor {
        &self.visitor
    }
}

/// Which versions a conditional write accepts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum IfMatch {
    /// Any version (no condition, or `*`): the visitor only has to exist.
    #[default]
    Any,
    /// One of these versions; an empty list matches nothing.
    OneOf(Vec<Version>),
}

impl IfMatch {
    /// True when `version` satisfies the condition.
    pub fn accepts(&self, version: Version) -> bool {
        match self {
            Self::Any => true,
            Self::OneOf(versions) => versions.contains(&version),
        }
    }

    #[cfg(feature = "postgres")]
    fn versions(&self) -> Option<Vec<i64>> {
        match self {
            Self::Any => None,
            Self::OneOf(versions) => Some(versions.iter().map(|v| v.get()).collect()),
        }
    }
}

/// The `If-Match` of a create-or-update. The visitor is found by its `external_id`, so a tag
/// names the visitor as well as the version it accepts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum UpsertCondition {
    /// No condition: create the visitor when none has the `external_id`.
    #[default]
    None,
    /// `*`: any visitor that has the `external_id`; none is created.
    Exists,
    /// Only the visitor with one of these ids at that version; none is created (an empty list
    /// matches nothing).
    OneOf(Vec<(VisitorId, Version)>),
}

impl UpsertCondition {
    /// True when `stored` satisfies the condition; `None` accepts every visitor.
    pub fn accepts(&self, stored: &StoredVisitor) -> bool {
        match self {
            Self::None | Self::Exists => true,
            Self::OneOf(tags) => tags.contains(&(stored.id, stored.version)),
        }
    }
}

/// The order of a list, by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Ascending,
    Descending,
}

/// One page of a keyset walk: the visitors matching `filter`, in `order`, whose id lies strictly
/// beyond `after` (in that order), at most `limit` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub filter: VisitorFilter,
    pub order: Order,
    pub after: Option<VisitorId>,
    pub limit: usize,
}

/// Where visitors are kept. Every implementation is safe to share between threads
/// (`Arc<dyn VisitorStore>`) and behaves the same way, as the conformance suite checks.
#[async_trait]
pub trait VisitorStore: Send + Sync + std::fmt::Debug {
    /// Stores a new visitor and returns it with its id (never reused), `created` (defaulting
    /// to now, in whole seconds) and [`Version::FIRST`].
    ///
    /// Errors: [`StoreError::Conflict`] when `external_id` is already used (nothing is stored);
    /// [`StoreError::Unavailable`] when the storage cannot be reached;
    /// [`StoreError::Internal`] otherwise.
    async fn create(&self, new: NewVisitor) -> Result<StoredVisitor, StoreError>;

    /// The visitor with this id.
    ///
    /// Errors: [`StoreError::NotFound`] when there is none; [`StoreError::Unavailable`];
    /// [`StoreError::Internal`].
    async fn get(&self, id: VisitorId) -> Result<StoredVisitor, StoreError>;

    /// Applies `patch` to the visitor with this id when its version satisfies `condition`,
    /// atomically: concurrent updates of different keys all persist, and of two concurrent
    /// updates expecting the same version exactly one succeeds. Returns the whole visitor after
    /// the change; the version grows by one when anything changed.
    ///
    /// Errors, checked in this order: [`StoreError::NotFound`] when there is no such visitor;
    /// [`StoreError::PreconditionFailed`] when its version does not satisfy `condition`;
    /// [`StoreError::Invalid`] when the patch breaks a mutability rule against the stored
    /// visitor. Nothing is changed on any error. [`StoreError::Unavailable`];
    /// [`StoreError::Internal`].
    async fn update_if(
        &self,
        id: VisitorId,
        patch: VisitorPatch,
        condition: &IfMatch,
    ) -> Result<StoredVisitor, StoreError>;

    /// [`Self::update_if`] with no condition.
    async fn update(
        &self,
        id: VisitorId,
        patch: VisitorPatch,
    ) -> Result<StoredVisitor, StoreError> {
        self.update_if(id, patch, &IfMatch::Any).await
    }

    /// Erases the visitor with this id for good when its version satisfies `condition`: its
    /// row, and every idempotency record holding its data. Its id is never reused and its
    /// `external_id` is free again.
    ///
    /// Errors: [`StoreError::NotFound`] when there is no such visitor (or it was erased already);
    /// [`StoreError::PreconditionFailed`] when its version does not satisfy `condition` (nothing
    /// is erased); [`StoreError::Unavailable`]; [`StoreError::Internal`].
    async fn delete(&self, id: VisitorId, condition: &IfMatch) -> Result<(), StoreError>;

    /// Creates the visitor with `upsert.external_id` (as [`Self::create`]) or applies
    /// `upsert.patch` to the one that has it (as [`Self::update_if`]), in one atomic step: of
    /// many concurrent calls with one new `external_id` exactly one creates and the others
    /// update what it created; none fails for the race. With a `condition` other than
    /// [`UpsertCondition::None`], no visitor is created.
    ///
    /// Errors: [`StoreError::PreconditionFailed`] when a condition is given and no visitor has
    /// the `external_id` or it does not satisfy it; [`StoreError::Invalid`] when the
    /// patch breaks a mutability rule against the stored visitor (e.g. other `notes`); nothing
    /// is changed on any error. [`StoreError::Unavailable`]; [`StoreError::Internal`].
    async fn create_or_update(
        &self,
        upsert: VisitorUpsert,
        condition: &UpsertCondition,
    ) -> Result<Upserted, StoreError>;

    /// Applies import lines in order, each on its own ([`ImportLine`]): the outcome of each, in
    /// order, a failed line having changed nothing. Cheaper than one call per line: a backend
    /// applies the lot in few round trips.
    ///
    /// Errors (of the whole call; nothing of it is applied): [`StoreError::Unavailable`];
    /// [`StoreError::Internal`].
    async fn import(&self, lines: Vec<ImportLine>) -> Result<Vec<ImportOutcome>, StoreError>;

    /// One page of a keyset walk (see [`ListQuery`]). The cost does not grow with how deep the
    /// page is, and a walk page by page returns every visitor that exists throughout it exactly
    /// once, whatever is created, changed or erased meanwhile.
    ///
    /// Errors: [`StoreError::Unavailable`]; [`StoreError::Internal`].
    async fn list(&self, query: &ListQuery) -> Result<Vec<StoredVisitor>, StoreError>;
}

/// What a create-or-update did, with the visitor after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upserted {
    /// No visitor had the `external_id`: this one was created.
    Created(StoredVisitor),
    /// The visitor with the `external_id` was changed.
    Updated(StoredVisitor),
    /// The visitor with the `external_id` already had every value sent: nothing changed.
    Unchanged(StoredVisitor),
}

impl Upserted {
    /// The visitor after the call.
    pub fn visitor(&self) -> &StoredVisitor {
        match self {
            Self::Created(stored) | Self::Updated(stored) | Self::Unchanged(stored) => stored,
        }
    }

    /// The visitor after the call.
    pub fn into_visitor(self) -> StoredVisitor {
        match self {
            Self::Created(stored) | Self::Updated(stored) | Self::Unchanged(stored) => stored,
        }
    }
}

/// One line of a bulk import (contract §9.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportLine {
    /// A line without `external_id`: a create.
    Create(NewVisitor),
    /// A line with one: a create-or-update.
    Upsert(VisitorUpsert),
}

/// What one import line did: [`Upserted`] (a create line is always `Created`), or why it
/// failed ([`StoreError::Invalid`] for a change a rule refuses).
pub type ImportOutcome = Result<Upserted, StoreError>;

/// What an operator watches of a backend: whether it answers, and how full its pool is. Apart
/// from the visitors themselves, so that the domain's port carries only the domain's operations.
#[async_trait]
pub trait Operations: Send + Sync + std::fmt::Debug {
    /// Succeeds when the storage answers and is ready for the operations of the other traits.
    ///
    /// Errors: [`StoreError::Unavailable`] when it cannot be reached; [`StoreError::Internal`].
    async fn ping(&self) -> Result<(), StoreError>;

    /// The connections of the backend's pool now, for metrics; `None` for a backend without
    /// one (the in-memory store).
    fn pool_status(&self) -> Option<PoolStatus> {
        None
    }
}

/// A snapshot of a connection pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStatus {
    /// Open connections lent to a request now.
    pub used: u32,
    /// Open connections waiting in the pool.
    pub idle: u32,
    /// The most connections the pool opens.
    pub max: u32,
}

/// A store shared by every worker of a service.
pub type SharedStore = Arc<dyn VisitorStore>;

/// An idempotency key as stored: the key a client sent, within the space of its owner (the
/// caller that sent it, e.g. a digest of its token), so two callers never share a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    pub owner: String,
    pub key: String,
}

/// How long records live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdempotencyPolicy {
    /// How long the answer of a successful create is kept for replays.
    pub ttl: Duration,
}

impl IdempotencyPolicy {
    /// Records kept for `ttl`.
    pub fn with_ttl(ttl: Duration) -> Self {
        Self { ttl }
    }
}

impl Default for IdempotencyPolicy {
    /// 24 hours, as the contract's default.
    fn default() -> Self {
        Self::with_ttl(Duration::from_secs(24 * 60 * 60))
    }
}

/// What an idempotent create did. New outcomes may be added: match with a wildcard arm.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Idempotent {
    /// No live record held the key: the visitor was created and recorded as its answer.
    Created(StoredVisitor),
    /// A request with the same body succeeded: its answer, the visitor as it was created.
    Replay(StoredVisitor),
    /// A request with another body holds the key.
    Mismatch,
    /// A concurrent request with this key is being recorded right now; nothing was created.
    InUse,
}

/// Records of idempotent creates. Implemented by every backend next to its [`VisitorStore`],
/// over the same storage, so a create and its record are written atomically.
#[async_trait]
pub trait IdempotencyStore: Send + Sync + std::fmt::Debug {
    /// Creates the visitor under `key` and records it as the key's answer for `policy.ttl`, in
    /// one atomic step (no other request ever sees the key held without its answer); or reports
    /// the live record that holds the key: [`Idempotent::Replay`] when its body had the same
    /// `fingerprint`, [`Idempotent::Mismatch`] when another. An expired record counts as none
    /// and is taken over. Of many concurrent calls with one free key exactly one creates; the
    /// others get the record ([`Idempotent::Replay`] / [`Idempotent::Mismatch`]) or, when it was
    /// being written at the very moment they looked, [`Idempotent::InUse`].
    ///
    /// Errors: those of [`VisitorStore::create`] (e.g. [`StoreError::Conflict`]); on any error
    /// nothing is stored and the key stays free.
    async fn create_idempotent(
        &self,
        key: &IdempotencyKey,
        fingerprint: &BodyFingerprint,
        policy: &IdempotencyPolicy,
        new: NewVisitor,
    ) -> Result<Idempotent, StoreError>;

    /// Removes every expired record; returns how many.
    ///
    /// Errors: [`StoreError::Unavailable`]; [`StoreError::Internal`].
    async fn purge_expired(&self) -> Result<u64, StoreError>;
}

/// Idempotency records shared by every worker of a service.
pub type SharedIdempotencyStore = Arc<dyn IdempotencyStore>;

/// A backend: visitors, the idempotency records of their creates, the log of their changes, the
/// webhooks and their deliveries, and its operations, over one storage.
pub trait Storage: VisitorStore + IdempotencyStore + ChangeLog + WebhookStore + Operations {}

impl<T: VisitorStore + IdempotencyStore + ChangeLog + WebhookStore + Operations + ?Sized> Storage
    for T
{
}

/// A backend shared by every worker of a service.
pub type SharedStorage = Arc<dyn Storage>;
