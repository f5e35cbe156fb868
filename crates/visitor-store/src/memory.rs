//! The in-memory backend: visitors in shards, each a vector behind its own lock, and an index of
//! external ids by hash. Nothing survives the process.
//!
//! Ids are handed out from 1 upward by an atomic counter; visitor `n` lives in shard `n % SHARDS`
//! at slot `n / SHARDS`, so a lookup is two array accesses and growing one shard copies only a
//! sixteenth of the store (no pause while a large map rehashes under its lock). The external-id
//! index keeps a 64-bit hash per visitor rather than a second copy of the string; a hash
//! collision is resolved by comparing the stored visitors' ids.

use std::collections::hash_map::Entry;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use visitor_domain::{Created, ExternalId, NewVisitor, Visitor, VisitorId, VisitorPatch};

use crate::{StoreError, VisitorStore};

const SHARDS: usize = 16;

/// Keeps visitors in memory. Ids run from 1 upward; `external_id` is unique.
///
/// `S` hashes external ids for the index (tests use a hasher that makes every id collide).
#[derive(Debug)]
pub struct MemoryStore<S = RandomState> {
    shards: [RwLock<Vec<Option<Visitor>>>; SHARDS],
    external_ids: [Mutex<ExternalIdIndex>; SHARDS],
    hasher: S,
    last_id: AtomicI64,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_hasher(RandomState::new())
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
            shards: std::array::from_fn(|_| RwLock::new(Vec::new())),
            external_ids: std::array::from_fn(|_| Mutex::new(ExternalIdIndex::default())),
            hasher,
            last_id: AtomicI64::new(0),
        }
    }

    /// The number of visitors held.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| read(shard).iter().filter(|slot| slot.is_some()).count())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn with_visitor<T>(&self, id: VisitorId, f: impl FnOnce(&Visitor) -> T) -> Option<T> {
        let (shard, slot) = place(id);
        read(&self.shards[shard])
            .get(slot)
            .and_then(Option::as_ref)
            .map(f)
    }

    /// Assigns the next id and stores the visitor under it.
    fn insert(&self, new: NewVisitor, now: Created) -> Result<Visitor, StoreError> {
        let next = self.last_id.fetch_add(1, Ordering::Relaxed) + 1;
        let id =
            VisitorId::new(next).map_err(|_| StoreError::internal("visitor ids are exhausted"))?;
        let visitor = new.into_visitor(id, now);
        let (shard, slot) = place(id);
        let mut shard = write(&self.shards[shard]);
        if shard.len() <= slot {
            shard.resize_with(slot + 1, || None);
        }
        shard[slot] = Some(visitor.clone());
        Ok(visitor)
    }

    fn external_id_taken(
        &self,
        index: &ExternalIdIndex,
        hash: u64,
        external_id: &ExternalId,
    ) -> bool {
        index.candidates(hash).any(|id| {
            self.with_visitor(id, |v| v.external_id.as_ref() == Some(external_id))
                .unwrap_or(false)
        })
    }
}

#[async_trait]
impl<S: BuildHasher + Send + Sync + std::fmt::Debug> VisitorStore for MemoryStore<S> {
    async fn create(&self, new: NewVisitor) -> Result<Visitor, StoreError> {
        let now = Created::now();
        let Some(external_id) = new.external_id.clone() else {
            return self.insert(new, now);
        };
        let hash = self.hasher.hash_one(external_id.as_str());
        // Holding the index shard of this hash makes check-and-insert atomic for the id.
        let mut index = lock(&self.external_ids[(hash % SHARDS as u64) as usize]);
        if self.external_id_taken(&index, hash, &external_id) {
            return Err(StoreError::Conflict);
        }
        let visitor = self.insert(new, now)?;
        index.insert(hash, visitor.id);
        Ok(visitor)
    }

    async fn get(&self, id: VisitorId) -> Result<Visitor, StoreError> {
        self.with_visitor(id, Visitor::clone)
            .ok_or(StoreError::NotFound)
    }

    async fn update(&self, id: VisitorId, patch: VisitorPatch) -> Result<Visitor, StoreError> {
        let (shard, slot) = place(id);
        let mut shard = write(&self.shards[shard]);
        let stored = shard
            .get_mut(slot)
            .and_then(Option::as_mut)
            .ok_or(StoreError::NotFound)?;
        let next = patch.apply_to(stored).map_err(StoreError::Invalid)?;
        *stored = next.clone();
        Ok(next)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasherDefault, Hasher};

    use super::*;

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
