//! The in-memory backend: a map behind a read-write lock. Nothing survives the process.

use std::collections::{HashMap, HashSet};
use std::sync::{PoisonError, RwLock};

use async_trait::async_trait;
use visitor_domain::{Created, ExternalId, NewVisitor, Visitor, VisitorId, VisitorPatch};

use crate::{StoreError, VisitorStore};

/// Keeps visitors in memory. Ids run from 1 upward; `external_id` is unique.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    visitors: HashMap<VisitorId, Visitor>,
    external_ids: HashSet<ExternalId>,
    last_id: i64,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of visitors held.
    pub fn len(&self) -> usize {
        self.read().visitors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    // A panic while the lock is held cannot leave the map half-written (every write is a single
    // insert after all checks), so a poisoned lock is safe to keep using.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl VisitorStore for MemoryStore {
    async fn create(&self, new: NewVisitor) -> Result<Visitor, StoreError> {
        let now = Created::now();
        let mut inner = self.write();
        if let Some(external_id) = &new.external_id {
            if inner.external_ids.contains(external_id) {
                return Err(StoreError::Conflict);
            }
        }
        let next = inner
            .last_id
            .checked_add(1)
            .and_then(|n| VisitorId::new(n).ok())
            .ok_or_else(|| StoreError::internal("visitor ids are exhausted"))?;
        let visitor = new.into_visitor(next, now);
        if let Some(external_id) = &visitor.external_id {
            inner.external_ids.insert(external_id.clone());
        }
        inner.last_id = next.get();
        inner.visitors.insert(next, visitor.clone());
        Ok(visitor)
    }

    async fn get(&self, id: VisitorId) -> Result<Visitor, StoreError> {
        self.read()
            .visitors
            .get(&id)
            .cloned()
            .ok_or(StoreError::NotFound)
    }

    async fn update(&self, id: VisitorId, patch: VisitorPatch) -> Result<Visitor, StoreError> {
        let mut inner = self.write();
        let stored = inner.visitors.get_mut(&id).ok_or(StoreError::NotFound)?;
        let next = patch.apply_to(stored).map_err(StoreError::Invalid)?;
        *stored = next.clone();
        Ok(next)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
