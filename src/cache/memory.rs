//! The memory store (`store = "memory"`): a [`moka`] cache in this
//! process, weighed in bytes, `max_bytes` its capacity.
//!
//! An entry's age is kept on tokio's clock, and `get` takes an entry as
//! old as the ttl for a miss (and drops it): so the ttl holds exactly, on a
//! paused clock too. moka's own time to live, on its own clock, which no
//! test can move, is only what reclaims the memory of entries no one asks
//! for again.

use std::sync::Arc;
use std::time::Duration;

use moka::notification::RemovalCause;
use tokio::time::Instant;

use super::{Entry, Key};
use crate::config::CacheConfig;

/// An entry, and when it was stored.
#[derive(Clone)]
struct Stamped {
    entry: Arc<Entry>,
    stored: Instant,
}

/// A route's answers in memory.
pub(super) struct Memory {
    store: moka::sync::Cache<Key, Stamped>,
    ttl: Duration,
}

impl Memory {
    /// An empty store as `config` sets it; `evictions` counts the entries
    /// dropped (or not admitted) for room.
    pub(super) fn new(config: &CacheConfig, evictions: prometheus::IntCounter) -> Self {
        let listener = move |_key: Arc<Key>, _entry: Stamped, cause: RemovalCause| {
            if cause == RemovalCause::Size {
                evictions.inc();
            }
        };
        let store = moka::sync::Cache::builder()
            .max_capacity(config.max_bytes)
            .time_to_live(config.ttl)
            .weigher(|_key: &Key, s: &Stamped| s.entry.weight)
            .eviction_listener(listener)
            .build();
        Self {
            store,
            ttl: config.ttl,
        }
    }

    /// The entry of `key` and its age, unless it is as old as the ttl.
    pub(super) fn get(&self, key: &Key) -> Option<(Arc<Entry>, Duration)> {
        let found = self.store.get(key)?;
        let age = found.stored.elapsed();
        if age >= self.ttl {
            self.store.invalidate(key);
            return None;
        }
        Some((found.entry, age))
    }

    pub(super) fn insert(&self, key: Key, entry: Entry) {
        let stamped = Stamped {
            entry: Arc::new(entry),
            stored: Instant::now(),
        };
        self.store.insert(key, stamped);
    }

    /// What the entries weigh, once moka has applied what it holds back.
    pub(super) fn bytes(&self) -> u64 {
        self.store.run_pending_tasks();
        self.store.weighted_size()
    }

    /// Entries stored, once moka has applied what it holds back.
    pub(super) fn entry_count(&self) -> u64 {
        self.store.run_pending_tasks();
        self.store.entry_count()
    }
}
