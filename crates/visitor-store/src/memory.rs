//! The in-memory backend: visitors in shards, each a vector behind its own lock, an index of
//! external ids by hash, and the idempotency records in maps sharded by key. Nothing survives
//! the process.
//!
//! Ids are handed out from 1 upward by an atomic counter; visitor `n` lives in shard `n % SHARDS`
//! at slot `n / SHARDS`, so a lookup is a few array accesses. A shard grows by whole chunks of
//! slots, so growing never copies what is stored (no pause under its lock, however large). The external-id
//! index keeps a 64-bit hash per visitor rather than a second copy of the string; a hash
//! collision is resolved by comparing the stored visitors' ids.
//!
//! The idempotency records live in [`RECORD_SHARDS`] maps by the key's hash, so no one map grows
//! large enough for its rehash to pause creates, and a visitor created under a key keeps that key
//! in its slot, so erasing it finds its record without a scan.
//!
//! The change log ([`MemoryLog`]) is written while the visitor's shard is held, so a change and
//! its entry are one step: a feed reader that finds the entry and then reads the visitor sees
//! the change.
//!
//! Locks are taken in one order: an idempotency record shard, then an external-id index shard,
//! then a visitor shard, then the change log, then the webhooks.

use std::collections::hash_map::Entry;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use visitor_domain::{
    BodyFingerprint, Created, ExternalId, NewVisitor, VisitorId, VisitorPatch, VisitorUpsert,
};

use crate::changes::MemoryLog;
use crate::webhooks::MemoryWebhooks;
use crate::{
    Attempt, Change, ChangeLog, ChangePage, ChangeStart, Delivery, Ended, IdempotencyKey,
    IdempotencyPolicy, IdempotencyStore, Idempotent, IfMatch, ImportLine, ImportOutcome, ListQuery,
    NewWebhook, Operations, Order, StoreError, StoredVisitor, UpsertCondition, Upserted, Version,
    VisitorStore, Webhook, WebhookEvent, WebhookStore,
};

const SHARDS: usize = 16;
const RECORD_SHARDS: usize = 64;

/// Keeps visitors in memory. Ids run from 1 upward; `external_id` is unique.
///
/// `S` hashes external ids for the index (tests use a hasher that makes every id collide).
#[derive(Debug)]
pub struct MemoryStore<S = RandomState> {
    shards: [RwLock<Slots>; SHARDS],
    external_ids: [Mutex<ExternalIdIndex>; SHARDS],
    hasher: S,
    last_id: AtomicI64,
    records: [Mutex<HashMap<IdempotencyKey, Record>>; RECORD_SHARDS],
    changes: Mutex<MemoryLog>,
    webhooks: Mutex<MemoryWebhooks>,
}

/// The slots of a shard, in chunks of [`CHUNK`].
#[derive(Debug, Default)]
struct Slots {
    chunks: Vec<Box<[Option<Slot>]>>,
}

/// Slots per chunk.
const CHUNK: usize = 1024;

impl Slots {
    fn get(&self, n: usize) -> Option<&Slot> {
        self.chunks.get(n / CHUNK)?[n % CHUNK].as_ref()
    }

    fn get_mut(&mut self, n: usize) -> Option<&mut Option<Slot>> {
        Some(&mut self.chunks.get_mut(n / CHUNK)?[n % CHUNK])
    }

    /// The slot `n`, adding chunks up to it.
    fn slot(&mut self, n: usize) -> &mut Option<Slot> {
        while self.chunks.len() <= n / CHUNK {
            self.chunks.push((0..CHUNK).map(|_| None).collect());
        }
        &mut self.chunks[n / CHUNK][n % CHUNK]
    }

    fn count(&self) -> usize {
        self.chunks
            .iter()
            .flat_map(|chunk| chunk.iter())
            .filter(|slot| slot.is_some())
            .count()
    }
}

/// A stored visitor, and the idempotency key it was created under, if any: the one record that
/// may hold a copy of its data.
#[derive(Debug)]
struct Slot {
    stored: StoredVisitor,
    key: Option<Box<IdempotencyKey>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_hasher(RandomState::new())
    }
}

/// An idempotency record: the answer of the create made under its key, until it expires.
#[derive(Debug)]
struct Record {
    fingerprint: BodyFingerprint,
    expires_at: Instant,
    /// Boxed, so a record is small and a growing map moves little when it rehashes.
    answer: Box<StoredVisitor>,
}

impl Record {
    /// True from the instant the record expires on (as in the Postgres store's
    /// `expires_at <= now()`).
    fn expired(&self, now: Instant) -> bool {
        self.expires_at <= now
    }

    /// What a live record tells a request with `fingerprint`.
    fn verdict(&self, fingerprint: &BodyFingerprint) -> Idempotent {
        if self.fingerprint == *fingerprint {
            Idempotent::Replay(StoredVisitor::clone(&self.answer))
        } else {
            Idempotent::Mismatch
        }
    }
}

/// The visitors holding an external id, by the id's hash: one visitor per hash in `first`, and
/// in the rare case of a collision, the others in `more`.
#[derive(Debug, Default)]
struct ExternalIdIndex {
    first: HashMap<u64, VisitorId>,
    more: HashMap<u64, Vec<VisitorId>>,
}

impl ExternalIdIndex {
    fn candidates(&self, hash: u64) -> impl Iterator<Item = VisitorId> + '_ {
        let more = self.more.get(&hash).map(Vec::as_slice).unwrap_or_default();
        self.first
            .get(&hash)
            .copied()
            .into_iter()
            .chain(more.iter().copied())
    }

    fn insert(&mut self, hash: u64, id: VisitorId) {
        match self.first.entry(hash) {
            Entry::Occupied(_) => self.more.entry(hash).or_default().push(id),
            Entry::Vacant(slot) => {
                slot.insert(id);
            }
        }
    }

    fn remove(&mut self, hash: u64, id: VisitorId) {
        if self.first.get(&hash) == Some(&id) {
            match self.more.get_mut(&hash).and_then(Vec::pop) {
                Some(promoted) => {
                    self.first.insert(hash, promoted);
                }
                None => {
                    self.first.remove(&hash);
                }
            }
        } else if let Some(more) = self.more.get_mut(&hash) {
            more.retain(|other| *other != id);
        }
        if self.more.get(&hash).is_some_and(Vec::is_empty) {
            self.more.remove(&hash);
        }
    }
}

// A panic while a lock is held cannot leave a shard half-written (every write is a single
// assignment after all checks), so a poisoned lock is safe to keep using.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The shard and slot of an id.
fn place(id: VisitorId) -> (usize, usize) {
    let n = id.get() as u64;
    ((n % SHARDS as u64) as usize, (n / SHARDS as u64) as usize)
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S: BuildHasher> MemoryStore<S> {
    /// A store whose external-id index hashes with `hasher`.
    pub fn with_hasher(hasher: S) -> Self {
        Self {
            shards: std::array::from_fn(|_| RwLock::new(Slots::default())),
            external_ids: std::array::from_fn(|_| Mutex::new(ExternalIdIndex::default())),
            hasher,
            last_id: AtomicI64::new(0),
            records: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            changes: Mutex::new(MemoryLog::default()),
            webhooks: Mutex::new(MemoryWebhooks::default()),
        }
    }

    /// The number of visitors held.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| read(shard).count()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn with_slot<T>(&self, id: VisitorId, f: impl FnOnce(&Slot) -> T) -> Option<T> {
        let (shard, slot) = place(id);
        read(&self.shards[shard]).get(slot).map(f)
    }

    fn with_visitor<T>(&self, id: VisitorId, f: impl FnOnce(&StoredVisitor) -> T) -> Option<T> {
        self.with_slot(id, |slot| f(&slot.stored))
    }

    /// The record shard of a key.
    fn record_shard(
        &self,
        key: &IdempotencyKey,
    ) -> MutexGuard<'_, HashMap<IdempotencyKey, Record>> {
        lock(&self.records[(self.hasher.hash_one(key) % RECORD_SHARDS as u64) as usize])
    }

    /// Assigns the next id and stores the visitor under it, with the key it was created under.
    fn insert(
        &self,
        new: NewVisitor,
        now: Created,
        key: Option<&IdempotencyKey>,
    ) -> Result<StoredVisitor, StoreError> {
        let next = self.last_id.fetch_add(1, Ordering::Relaxed) + 1;
        let id =
            VisitorId::new(next).map_err(|_| StoreError::internal("visitor ids are exhausted"))?;
        let stored = StoredVisitor {
            visitor: new.into_visitor(id, now),
            version: Version::FIRST,
        };
        let (shard, slot) = place(id);
        let mut shard = write(&self.shards[shard]);
        *shard.slot(slot) = Some(Slot {
            stored: stored.clone(),
            key: key.map(|key| Box::new(key.clone())),
        });
        self.record(id, WebhookEvent::Created);
        Ok(stored)
    }

    fn external_id_taken(
        &self,
        index: &ExternalIdIndex,
        hash: u64,
        external_id: &ExternalId,
    ) -> bool {
        self.holder_of(index, hash, external_id).is_some()
    }

    /// The visitor holding `external_id`, if any.
    fn holder_of(
        &self,
        index: &ExternalIdIndex,
        hash: u64,
        external_id: &ExternalId,
    ) -> Option<VisitorId> {
        index.candidates(hash).find(|id| {
            self.with_visitor(*id, |v| v.external_id.as_ref() == Some(external_id))
                .unwrap_or(false)
        })
    }

    /// Creates the visitor with the upsert's `external_id`, or changes the one that holds it,
    /// under the index shard of its hash, so concurrent calls for one new id create it once.
    fn upsert_now(
        &self,
        upsert: VisitorUpsert,
        condition: &UpsertCondition,
    ) -> Result<Upserted, StoreError> {
        let hash = self.hasher.hash_one(upsert.external_id.as_str());
        let mut index = self.index_shard(hash);
        let Some(id) = self.holder_of(&index, hash, &upsert.external_id) else {
            if *condition != UpsertCondition::None {
                // RFC 9110 §13.1.1: If-Match never matches a visitor that does not exist.
                return Err(StoreError::PreconditionFailed);
            }
            let visitor = self.insert(upsert.new, Created::now(), None)?;
            index.insert(hash, visitor.id);
            return Ok(Upserted::Created(visitor));
        };
        let (shard, slot) = place(id);
        let mut shard = write(&self.shards[shard]);
        let stored = &mut shard
            .get_mut(slot)
            .and_then(Option::as_mut)
            .ok_or_else(|| StoreError::internal("the external-id index names a missing visitor"))?
            .stored;
        if !condition.accepts(stored) {
            return Err(StoreError::PreconditionFailed);
        }
        let next = upsert.patch.apply_to(stored).map_err(StoreError::Invalid)?;
        if next == stored.visitor {
            return Ok(Upserted::Unchanged(stored.clone()));
        }
        stored.visitor = next;
        stored.version = stored.version.next();
        self.record(id, WebhookEvent::Updated);
        Ok(Upserted::Updated(stored.clone()))
    }

    /// Records a change of the visitor `id` in the log, and its deliveries to the webhooks that
    /// take it; the caller holds its shard.
    fn record(&self, id: VisitorId, event: WebhookEvent) {
        let now = Utc::now();
        lock(&self.changes).record(id, event == WebhookEvent::Deleted, now);
        lock(&self.webhooks).record(id, event, now);
    }

    fn index_shard(&self, hash: u64) -> MutexGuard<'_, ExternalIdIndex> {
        lock(&self.external_ids[(hash % SHARDS as u64) as usize])
    }

    /// Creates a visitor; `key` is the idempotency key it is created under, whose record shard
    /// the caller holds.
    fn create_now(
        &self,
        new: NewVisitor,
        key: Option<&IdempotencyKey>,
    ) -> Result<StoredVisitor, StoreError> {
        let now = Created::now();
        let Some(external_id) = new.external_id.clone() else {
            return self.insert(new, now, key);
        };
        let hash = self.hasher.hash_one(external_id.as_str());
        // Holding the index shard of this hash makes check-and-insert atomic for the id.
        let mut index = self.index_shard(hash);
        if self.external_id_taken(&index, hash, &external_id) {
            return Err(StoreError::Conflict);
        }
        let visitor = self.insert(new, now, key)?;
        index.insert(hash, visitor.id);
        Ok(visitor)
    }

    /// The ids a keyset walk visits after `after`, in order, among those handed out so far.
    fn ids_beyond(&self, order: Order, after: Option<VisitorId>) -> Box<dyn Iterator<Item = i64>> {
        let last = self.last_id.load(Ordering::Acquire);
        match order {
            Order::Ascending => {
                let start = after.map_or(1, |id| id.get().saturating_add(1));
                Box::new(start..=last)
            }
            Order::Descending => {
                let start = after.map_or(last, |id| (id.get() - 1).min(last));
                Box::new((1..=start).rev())
            }
        }
    }
}

#[async_trait]
impl<S: BuildHasher + Send + Sync + std::fmt::Debug> ChangeLog for MemoryStore<S> {
    async fn changes(&self, start: ChangeStart, limit: usize) -> Result<ChangePage, StoreError> {
        let Some((entries, next)) = lock(&self.changes).read(start, limit) else {
            return Ok(ChangePage::Expired);
        };
        // Each visitor read after its entry: as it is now, or gone.
        let changes = entries
            .into_iter()
            .map(|(position, entry)| Change {
                position,
                visitor_id: entry.visitor_id,
                changed_at: entry.changed_at,
                visitor: self.with_visitor(entry.visitor_id, StoredVisitor::clone),
            })
            .collect();
        Ok(ChangePage::Changes {
            changes,
            next,
            held_back: false,
        })
    }

    async fn purge_erasures(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(lock(&self.changes).purge_erasures(before))
    }
}

/// Deliveries from the process: lost at exit, like the visitors.
#[async_trait]
impl<S: BuildHasher + Send + Sync + std::fmt::Debug> WebhookStore for MemoryStore<S> {
    async fn create_webhook(&self, new: NewWebhook) -> Result<Webhook, StoreError> {
        Ok(lock(&self.webhooks).create(new))
    }

    async fn webhooks(&self) -> Result<Vec<Webhook>, StoreError> {
        Ok(lock(&self.webhooks).all())
    }

    async fn webhook(&self, id: i64) -> Result<Webhook, StoreError> {
        lock(&self.webhooks).get(id).ok_or(StoreError::NotFound)
    }

    async fn delete_webhook(&self, id: i64) -> Result<(), StoreError> {
        if lock(&self.webhooks).delete(id) {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    async fn claim_deliveries(
        &self,
        limit: usize,
        lease: std::time::Duration,
    ) -> Result<Vec<Delivery>, StoreError> {
        // The webhooks' lock is let go before a shard's is taken (the locks' order): a visitor
        // read after its claim is as new as or newer than at the claim.
        let mut claimed = lock(&self.webhooks).claim(limit, lease, Utc::now());
        for delivery in &mut claimed {
            if delivery.event != WebhookEvent::Deleted {
                delivery.visitor =
                    self.with_visitor(delivery.visitor_id, |stored| stored.visitor.clone());
            }
        }
        Ok(claimed)
    }

    async fn finish_deliveries(&self, ended: Vec<Ended>) -> Result<(), StoreError> {
        let mut webhooks = lock(&self.webhooks);
        let now = Utc::now();
        for Ended {
            delivery,
            outcome,
            result,
        } in ended
        {
            webhooks.finish(&delivery, outcome, result, now);
        }
        Ok(())
    }

    async fn attempts(&self, webhook_id: i64) -> Result<Vec<Attempt>, StoreError> {
        lock(&self.webhooks)
            .attempts(webhook_id)
            .ok_or(StoreError::NotFound)
    }

    async fn pending_deliveries(&self) -> Result<u64, StoreError> {
        Ok(lock(&self.webhooks).pending())
    }
}

#[async_trait]
impl<S: BuildHasher + Send + Sync + std::fmt::Debug> VisitorStore for MemoryStore<S> {
    async fn create(&self, new: NewVisitor) -> Result<StoredVisitor, StoreError> {
        self.create_now(new, None)
    }

    async fn get(&self, id: VisitorId) -> Result<StoredVisitor, StoreError> {
        self.with_visitor(id, StoredVisitor::clone)
            .ok_or(StoreError::NotFound)
    }

    async fn update_if(
        &self,
        id: VisitorId,
        patch: VisitorPatch,
        condition: &IfMatch,
    ) -> Result<StoredVisitor, StoreError> {
        let (shard, slot) = place(id);
        let mut shard = write(&self.shards[shard]);
        let stored = &mut shard
            .get_mut(slot)
            .and_then(Option::as_mut)
            .ok_or(StoreError::NotFound)?
            .stored;
        if !condition.accepts(stored.version) {
            return Err(StoreError::PreconditionFailed);
        }
        let next = patch.apply_to(stored).map_err(StoreError::Invalid)?;
        if next != stored.visitor {
            stored.visitor = next;
            stored.version = stored.version.next();
            self.record(id, WebhookEvent::Updated);
        }
        Ok(stored.clone())
    }

    async fn delete(&self, id: VisitorId, condition: &IfMatch) -> Result<(), StoreError> {
        // Neither changes while the visitor lives.
        let (external_id, key) = self
            .with_slot(id, |slot| {
                (slot.stored.external_id.clone(), slot.key.clone())
            })
            .ok_or(StoreError::NotFound)?;
        let hash = external_id
            .as_ref()
            .map(|external_id| self.hasher.hash_one(external_id.as_str()));
        let mut records = key.as_deref().map(|key| self.record_shard(key));
        let mut index = hash.map(|hash| self.index_shard(hash));
        let (shard, slot) = place(id);
        let mut shard = write(&self.shards[shard]);
        let slot = shard
            .get_mut(slot)
            .filter(|slot| slot.is_some())
            .ok_or(StoreError::NotFound)?;
        if !slot
            .as_ref()
            .is_some_and(|slot| condition.accepts(slot.stored.version))
        {
            return Err(StoreError::PreconditionFailed);
        }
        *slot = None;
        self.record(id, WebhookEvent::Deleted);
        if let (Some(index), Some(hash)) = (index.as_mut(), hash) {
            index.remove(hash, id);
        }
        // The record under its key holds its data unless a later create has taken the key over.
        if let (Some(records), Some(key)) = (records.as_mut(), key.as_deref()) {
            if records
                .get(key)
                .is_some_and(|record| record.answer.id == id)
            {
                records.remove(key);
            }
        }
        Ok(())
    }

    async fn create_or_update(
        &self,
        upsert: VisitorUpsert,
        condition: &UpsertCondition,
    ) -> Result<Upserted, StoreError> {
        self.upsert_now(upsert, condition)
    }

    async fn import(&self, lines: Vec<ImportLine>) -> Result<Vec<ImportOutcome>, StoreError> {
        Ok(lines
            .into_iter()
            .map(|line| match line {
                ImportLine::Create(new) => self.create_now(new, None).map(Upserted::Created),
                ImportLine::Upsert(upsert) => self.upsert_now(upsert, &UpsertCondition::None),
            })
            .collect())
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<StoredVisitor>, StoreError> {
        let matches = |stored: &StoredVisitor| query.filter.matches(stored);
        let mut page = Vec::new();
        if let Some(external_id) = &query.filter.external_id {
            let hash = self.hasher.hash_one(external_id.as_str());
            let index = self.index_shard(hash);
            let beyond = |id: VisitorId| match (query.order, query.after) {
                (_, None) => true,
                (Order::Ascending, Some(after)) => id > after,
                (Order::Descending, Some(after)) => id < after,
            };
            for id in index.candidates(hash).filter(|id| beyond(*id)) {
                if let Some(stored) = self.with_visitor(id, StoredVisitor::clone) {
                    if matches(&stored) {
                        page.push(stored);
                    }
                }
            }
            page.truncate(query.limit);
            return Ok(page);
        }
        for id in self.ids_beyond(query.order, query.after) {
            if page.len() >= query.limit {
                break;
            }
            let Ok(id) = VisitorId::new(id) else { continue };
            if let Some(Some(stored)) =
                self.with_visitor(id, |stored| matches(stored).then(|| stored.clone()))
            {
                page.push(stored);
            }
        }
        Ok(page)
    }
}

#[async_trait]
impl<S: BuildHasher + Send + Sync + std::fmt::Debug> Operations for MemoryStore<S> {
    /// Always up: the visitors live in this process.
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
impl<S: BuildHasher + Send + Sync + std::fmt::Debug> IdempotencyStore for MemoryStore<S> {
    /// In one hold of the key's record shard: no other request ever sees the key without its
    /// answer.
    async fn create_idempotent(
        &self,
        key: &IdempotencyKey,
        fingerprint: &BodyFingerprint,
        policy: &IdempotencyPolicy,
        new: NewVisitor,
    ) -> Result<Idempotent, StoreError> {
        let now = Instant::now();
        let mut records = self.record_shard(key);
        if let Some(record) = records.get(key).filter(|r| !r.expired(now)) {
            return Ok(record.verdict(fingerprint));
        }
        let stored = self.create_now(new, Some(key))?;
        let record = Record {
            fingerprint: *fingerprint,
            expires_at: now + policy.ttl,
            answer: Box::new(stored.clone()),
        };
        records.insert(key.clone(), record);
        Ok(Idempotent::Created(stored))
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        let now = Instant::now();
        let mut purged = 0;
        for shard in &self.records {
            let mut records = lock(shard);
            let before = records.len();
            records.retain(|_, record| !record.expired(now));
            purged += (before - records.len()) as u64;
        }
        Ok(purged)
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasherDefault, Hasher};
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_memory_store_has_no_pool_to_report() {
        assert_eq!(MemoryStore::new().pool_status(), None);
    }

    /// A shard grows by exactly the chunks a slot needs, and finds the slot again in its chunk.
    #[test]
    fn slots_grow_by_the_chunks_a_slot_needs() {
        let mut slots = Slots::default();
        assert!(slots.get(0).is_none() && slots.get_mut(0).is_none());
        for (n, chunks) in [
            (1, 1),
            (CHUNK - 1, 1),
            (CHUNK, 2),
            (CHUNK + 1, 2),
            (5 * CHUNK + 3, 6),
        ] {
            assert!(slots.slot(n).is_none(), "slot {n}");
            assert_eq!(slots.chunks.len(), chunks, "chunks after slot {n}");
            assert!(
                slots.get_mut(n).is_some_and(|slot| slot.is_none()),
                "slot {n}"
            );
        }
        assert!(slots.get_mut(6 * CHUNK).is_none());
        assert_eq!(slots.count(), 0);
    }

    /// Every external id hashes to 0: every create goes through the collision path.
    #[derive(Debug, Default)]
    struct Colliding;

    impl Hasher for Colliding {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, _: &[u8]) {}
    }

    fn new_with(external_id: &str) -> NewVisitor {
        NewVisitor {
            external_id: Some(ExternalId::parse(external_id).unwrap()),
            ..NewVisitor::default()
        }
    }

    #[tokio::test]
    async fn colliding_hashes_still_tell_external_ids_apart() {
        let store = MemoryStore::with_hasher(BuildHasherDefault::<Colliding>::default());
        let a = store.create(new_with("a")).await.unwrap();
        let b = store.create(new_with("b")).await.unwrap();
        let c = store.create(new_with("c")).await.unwrap();
        for taken in ["a", "b", "c"] {
            assert!(matches!(
                store.create(new_with(taken)).await,
                Err(StoreError::Conflict)
            ));
        }
        assert_eq!(store.get(b.id).await.unwrap(), b);
        assert_eq!((a.id.get(), b.id.get(), c.id.get()), (1, 2, 3));
        assert_eq!(store.len(), 3);
    }

    #[tokio::test]
    async fn erasing_under_colliding_hashes_frees_only_its_own_external_id() {
        let store = MemoryStore::with_hasher(BuildHasherDefault::<Colliding>::default());
        let a = store.create(new_with("a")).await.unwrap();
        let b = store.create(new_with("b")).await.unwrap();
        let c = store.create(new_with("c")).await.unwrap();
        store.delete(a.id, &IfMatch::Any).await.unwrap();
        store.delete(c.id, &IfMatch::Any).await.unwrap();
        assert!(matches!(
            store.create(new_with("b")).await,
            Err(StoreError::Conflict)
        ));
        let a2 = store.create(new_with("a")).await.unwrap();
        assert!(a2.id > c.id);
        store.delete(b.id, &IfMatch::Any).await.unwrap();
        store.create(new_with("b")).await.unwrap();
        store.create(new_with("c")).await.unwrap();
        assert_eq!(store.len(), 3);
    }

    /// The index entries of every shard: (first entries, colliding entries).
    fn index_entries<S>(store: &MemoryStore<S>) -> (usize, usize) {
        store
            .external_ids
            .iter()
            .fold((0, 0), |(first, more), shard| {
                let index = lock(shard);
                (
                    first + index.first.len(),
                    more + index.more.values().map(Vec::len).sum::<usize>(),
                )
            })
    }

    #[tokio::test]
    async fn erasing_removes_the_index_entry_and_nothing_else() {
        let store = MemoryStore::with_hasher(BuildHasherDefault::<Colliding>::default());
        let ids: Vec<VisitorId> = create_each(&store, &["a", "b", "c", "d"]).await;
        assert_eq!(index_entries(&store), (1, 3));
        // A colliding entry, then the first one (another takes its place), then the rest.
        store.delete(ids[2], &IfMatch::Any).await.unwrap();
        assert_eq!(index_entries(&store), (1, 2));
        store.delete(ids[0], &IfMatch::Any).await.unwrap();
        assert_eq!(index_entries(&store), (1, 1));
        for taken in ["b", "d"] {
            assert!(matches!(
                store.create(new_with(taken)).await,
                Err(StoreError::Conflict)
            ));
        }
        store.delete(ids[1], &IfMatch::Any).await.unwrap();
        store.delete(ids[3], &IfMatch::Any).await.unwrap();
        assert_eq!(index_entries(&store), (0, 0));
        let store = MemoryStore::new();
        let id = store.create(new_with("x")).await.unwrap().id;
        store.create(NewVisitor::default()).await.unwrap();
        assert_eq!(index_entries(&store), (1, 0));
        store.delete(id, &IfMatch::Any).await.unwrap();
        assert_eq!(index_entries(&store), (0, 0));
    }

    async fn create_each<S: BuildHasher + Send + Sync + std::fmt::Debug>(
        store: &MemoryStore<S>,
        external_ids: &[&str],
    ) -> Vec<VisitorId> {
        let mut ids = Vec::new();
        for external_id in external_ids {
            ids.push(store.create(new_with(external_id)).await.unwrap().id);
        }
        ids
    }

    #[test]
    fn a_record_lives_until_the_instant_it_expires() {
        let start = Instant::now();
        let ttl = Duration::from_secs(10);
        let record = Record {
            fingerprint: BodyFingerprint::from_bytes([0; 32]),
            expires_at: start + ttl,
            answer: Box::new(StoredVisitor {
                visitor: NewVisitor::default()
                    .into_visitor(VisitorId::new(1).unwrap(), Created::now()),
                version: Version::FIRST,
            }),
        };
        let at = |secs: u64| start + Duration::from_secs(secs);
        assert!(!record.expired(at(9)));
        assert!(record.expired(at(10)), "expired at exactly its expiry");
        assert!(matches!(
            record.verdict(&BodyFingerprint::from_bytes([0; 32])),
            Idempotent::Replay(_)
        ));
        assert_eq!(
            record.verdict(&BodyFingerprint::from_bytes([1; 32])),
            Idempotent::Mismatch
        );
    }

    #[tokio::test]
    async fn empty_until_the_first_visitor_and_again_after_the_last_is_erased() {
        let store = MemoryStore::new();
        assert!(store.is_empty());
        let created = store.create(NewVisitor::default()).await.unwrap();
        assert!(!store.is_empty());
        store.delete(created.id, &IfMatch::Any).await.unwrap();
        assert!(store.is_empty());
        store.ping().await.unwrap();
    }

    #[tokio::test]
    async fn visitors_beyond_the_first_chunk_of_a_shard_are_kept() {
        let store = MemoryStore::new();
        let count = SHARDS * CHUNK + SHARDS * 2;
        for _ in 0..count {
            store.create(NewVisitor::default()).await.unwrap();
        }
        assert_eq!(store.len(), count);
        let boundary = (SHARDS * CHUNK) as i64;
        for id in [1, boundary - 1, boundary, boundary + 1, count as i64] {
            let id = VisitorId::new(id).unwrap();
            assert_eq!(store.get(id).await.unwrap().id, id);
        }
        let erased = VisitorId::new(boundary + 1).unwrap();
        store.delete(erased, &IfMatch::Any).await.unwrap();
        assert!(matches!(store.get(erased).await, Err(StoreError::NotFound)));
        assert_eq!(store.len(), count - 1);
    }

    #[tokio::test]
    async fn ids_spread_over_every_shard() {
        let store = MemoryStore::new();
        for _ in 0..(SHARDS * 3) {
            store.create(NewVisitor::default()).await.unwrap();
        }
        for id in 1..=(SHARDS * 3) as i64 {
            let id = VisitorId::new(id).unwrap();
            assert_eq!(store.get(id).await.unwrap().id, id);
        }
        assert!(store
            .get(VisitorId::new(SHARDS as i64 * 3 + 1).unwrap())
            .await
            .is_err());
    }
}
