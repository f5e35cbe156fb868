//! The change log (contract §10): every create, every update that changes something and every
//! erasure, recorded with the change itself, and read back in order by the change feed.
//!
//! The log holds one entry per visitor, its last change: when it happened, whether it was an
//! erasure, and its [`ChangePosition`]. A later change moves the entry to a later position, so
//! a reader that passed the old one meets the visitor again, and an erased visitor leaves only
//! its id and the time of its erasure. An entry carries no other data of the visitor: the feed
//! reads the visitor as it is when a page is read.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use visitor_domain::VisitorId;

use crate::{StoreError, StoredVisitor};

/// A place in the change log's order: the writing transaction's id (PostgreSQL's
/// `pg_current_xact_id()`; `0` in memory), then a sequence number drawn within it. Ordered by
/// both, in that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ChangePosition {
    pub transaction: u64,
    pub sequence: u64,
}

impl ChangePosition {
    /// Before every change.
    pub const START: Self = Self {
        transaction: 0,
        sequence: 0,
    };
}

/// Where a reader stands: a position, and how many purges of erasures had happened when it was
/// handed out ([`ChangeLog::purge_erasures`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ChangeCursor {
    pub position: ChangePosition,
    pub purges: u64,
}

/// Where a read of the log starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeStart {
    /// Every visitor whose last change happened at or after this time.
    Since(DateTime<Utc>),
    /// The changes after this cursor (a previous page's `next`).
    After(ChangeCursor),
}

/// One visitor's last change, as a page of the log gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub position: ChangePosition,
    pub visitor_id: VisitorId,
    /// When the change happened.
    pub changed_at: DateTime<Utc>,
    /// The visitor when the page was read; `None` when it has been erased.
    pub visitor: Option<StoredVisitor>,
}

/// A page of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangePage {
    /// The changes, in the log's order, and the position to read on from: after the last of
    /// them, or, when there are none, after every change already handed out.
    Changes {
        changes: Vec<Change>,
        next: ChangeCursor,
        /// True when changes already made wait beyond the page for an older transaction still
        /// in flight (any transaction of the PostgreSQL cluster): the page did not reach the
        /// newest change even when it is short.
        held_back: bool,
    },
    /// Erasures were purged since the cursor was handed out, at least one of them after its
    /// position ([`ChangeLog::purge_erasures`]): a reader would miss it, and must start again
    /// from the beginning.
    Expired,
}

/// The change log of a backend, written by its [`crate::VisitorStore`] in the same atomic step
/// as each change.
///
/// **Never skipping.** A page holds only changes whose place in the order is final: no change
/// made later, or still being made, can take a position at or before one already handed out.
/// A reader that reads on from each page's `next` therefore meets every visitor's last change.
#[async_trait]
pub trait ChangeLog: Send + Sync + std::fmt::Debug {
    /// At most `limit` changes from `start`, in order, each with the visitor as it is now.
    ///
    /// Errors: [`StoreError::Unavailable`]; [`StoreError::Internal`].
    async fn changes(&self, start: ChangeStart, limit: usize) -> Result<ChangePage, StoreError>;

    /// Removes the entries of erasures that happened before `before`; a cursor handed out
    /// before, whose position lies before the last of them, is [`ChangePage::Expired`] from
    /// then on. Returns how many.
    ///
    /// Errors: [`StoreError::Unavailable`]; [`StoreError::Internal`].
    async fn purge_erasures(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// The in-memory log: entries by sequence number, and each visitor's entry.
#[derive(Debug, Default)]
pub(crate) struct MemoryLog {
    entries: BTreeMap<u64, Entry>,
    latest: HashMap<VisitorId, u64>,
    last: u64,
    /// The position of the last purged erasure.
    purged_through: u64,
    /// Purges that removed something.
    purges: u64,
}

/// An entry of the in-memory log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub visitor_id: VisitorId,
    pub changed_at: DateTime<Utc>,
    pub erased: bool,
}

impl MemoryLog {
    /// Records the last change of a visitor, moving its entry to the end.
    pub fn record(&mut self, visitor_id: VisitorId, erased: bool, changed_at: DateTime<Utc>) {
        self.last += 1;
        if let Some(previous) = self.latest.insert(visitor_id, self.last) {
            self.entries.remove(&previous);
        }
        let entry = Entry {
            visitor_id,
            changed_at,
            erased,
        };
        self.entries.insert(self.last, entry);
    }

    /// At most `limit` entries from `start`, and the cursor after them; `None` when `start`
    /// has expired.
    pub fn read(
        &self,
        start: ChangeStart,
        limit: usize,
    ) -> Option<(Vec<(ChangePosition, Entry)>, ChangeCursor)> {
        let after = match start {
            ChangeStart::After(cursor)
                if cursor.purges != self.purges
                    && cursor.position.sequence < self.purged_through =>
            {
                return None
            }
            ChangeStart::After(cursor) => cursor.position.sequence,
            // The first entry at or after the time: entries are in time order.
            ChangeStart::Since(time) => self
                .entries
                .iter()
                .find(|(_, entry)| entry.changed_at >= time)
                .map_or(self.last, |(sequence, _)| sequence - 1),
        };
        let page: Vec<(ChangePosition, Entry)> = self
            .entries
            .range(after + 1..)
            .take(limit)
            .map(|(sequence, entry)| (position(*sequence), *entry))
            .collect();
        let next = page
            .last()
            .map_or(position(after), |(position, _)| *position);
        let next = ChangeCursor {
            position: next,
            purges: self.purges,
        };
        Some((page, next))
    }

    /// Removes the erasures that happened before `before`.
    pub fn purge_erasures(&mut self, before: DateTime<Utc>) -> u64 {
        let purged: Vec<(u64, VisitorId)> = self
            .entries
            .iter()
            .filter(|(_, entry)| entry.erased && entry.changed_at < before)
            .map(|(sequence, entry)| (*sequence, entry.visitor_id))
            .collect();
        for (sequence, visitor_id) in &purged {
            self.entries.remove(sequence);
            self.latest.remove(visitor_id);
            self.purged_through = self.purged_through.max(*sequence);
        }
        if !purged.is_empty() {
            self.purges += 1;
        }
        purged.len() as u64
    }
}

fn position(sequence: u64) -> ChangePosition {
    ChangePosition {
        transaction: 0,
        sequence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: i64) -> VisitorId {
        VisitorId::new(n).unwrap()
    }

    /// A cursor at `sequence` handed out after `purges` purges.
    fn at(sequence: u64, purges: u64) -> ChangeStart {
        ChangeStart::After(ChangeCursor {
            position: position(sequence),
            purges,
        })
    }

    fn ids(log: &MemoryLog, start: ChangeStart, limit: usize) -> (Vec<i64>, u64) {
        let (page, next) = log.read(start, limit).expect("not expired");
        let ids = page
            .iter()
            .map(|(_, entry)| entry.visitor_id.get())
            .collect();
        (ids, next.position.sequence)
    }

    #[test]
    fn a_later_change_moves_the_visitors_entry_to_the_end() {
        let mut log = MemoryLog::default();
        for n in 1..=3 {
            log.record(id(n), false, Utc::now());
        }
        log.record(id(1), false, Utc::now());
        assert_eq!(ids(&log, at(0, 0), 10), (vec![2, 3, 1], 4));
        assert_eq!(ids(&log, at(0, 0), 2), (vec![2, 3], 3));
        assert_eq!(ids(&log, at(3, 0), 10), (vec![1], 4));
        // Nothing after the end: read on from the same place.
        assert_eq!(ids(&log, at(4, 0), 10), (vec![], 4));
    }

    #[test]
    fn since_a_time_starts_at_the_first_change_at_or_after_it() {
        let mut log = MemoryLog::default();
        log.record(id(1), false, Utc::now());
        let between = Utc::now();
        log.record(id(2), false, Utc::now());
        log.record(id(3), true, Utc::now());
        let (page, _) = log.read(ChangeStart::Since(between), 10).unwrap();
        let got: Vec<(i64, bool)> = page
            .iter()
            .map(|(_, entry)| (entry.visitor_id.get(), entry.erased))
            .collect();
        assert_eq!(got, [(2, false), (3, true)]);
        let future = Utc::now() + chrono::Duration::seconds(1);
        assert_eq!(ids(&log, ChangeStart::Since(future), 10), (vec![], 3));
        let past = between - chrono::Duration::seconds(60);
        assert_eq!(ids(&log, ChangeStart::Since(past), 10), (vec![1, 2, 3], 3));
    }

    #[test]
    fn purging_erasures_expires_the_cursors_behind_them_handed_out_before() {
        let mut log = MemoryLog::default();
        log.record(id(1), false, Utc::now());
        log.record(id(2), true, Utc::now());
        log.record(id(3), false, Utc::now());
        log.record(id(4), true, Utc::now());
        log.record(id(5), false, Utc::now());
        let cutoff = Utc::now() + chrono::Duration::seconds(1);
        assert_eq!(log.purge_erasures(cutoff), 2);
        assert_eq!(log.purge_erasures(cutoff), 0);
        for expired in 0..4 {
            assert!(log.read(at(expired, 0), 10).is_none(), "{expired}");
        }
        assert_eq!(ids(&log, at(4, 0), 10), (vec![5], 5));
        // Handed out after the purge: a walk from the start goes on through the rest.
        let since = ChangeStart::Since(DateTime::UNIX_EPOCH);
        let (first, cursor) = log.read(since, 1).unwrap();
        assert_eq!(first[0].1.visitor_id, id(1));
        assert_eq!(cursor.purges, 1);
        assert_eq!(ids(&log, ChangeStart::After(cursor), 10), (vec![3, 5], 5));
        // An erased visitor's id is recorded again only by a restore; its entry is new.
        log.record(id(2), false, Utc::now());
        assert_eq!(ids(&log, at(5, 1), 10), (vec![2], 6));
    }

    #[test]
    fn an_erasure_at_the_cutoff_itself_stays() {
        let mut log = MemoryLog::default();
        let at = Utc::now();
        log.record(id(1), true, at);
        assert_eq!(
            log.purge_erasures(at),
            0,
            "only erasures before the cutoff go"
        );
        assert_eq!(
            log.purge_erasures(at + chrono::Duration::microseconds(1)),
            1
        );
    }

    #[test]
    fn an_erasure_newer_than_the_cutoff_stays() {
        let mut log = MemoryLog::default();
        let cutoff = Utc::now();
        log.record(id(1), true, Utc::now());
        assert_eq!(log.purge_erasures(cutoff), 0);
        assert_eq!(ids(&log, at(0, 0), 10), (vec![1], 1));
    }
}
