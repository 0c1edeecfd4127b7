//! What a client has done, for dashboards and alerts: statements run and failed, the pool's
//! connections, and the cache's counters.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::{CacheStats, Error};

/// A snapshot of a client's counters ([`crate::AuthClient::metrics`]), shared by its clones.
/// The counts run from the client's creation; a rate is the difference of two snapshots.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Statements sent to the server (a call answered from the cache, or not shaped like a
    /// credential, sends none).
    pub statements: u64,
    /// Statements that did not complete: no connection could be had, or the server raised an
    /// error.
    pub failed_statements: u64,
    /// Of those, failures for which [`Error::is_connection`] holds (the server went away or
    /// could not be reached): a rising count is the signal to alert on.
    pub lost_connections: u64,
    /// Connections the pool holds now.
    pub connections: usize,
    /// Of those, connections idle now.
    pub idle_connections: usize,
    /// Calls waiting for a connection now.
    pub waiting: usize,
    /// The cache's counters, for a client with a cache.
    pub cache: Option<CacheStats>,
}

/// The counters behind [`Metrics`]. Relaxed atomics: each is a count on its own, read for
/// monitoring, not used to order anything.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    statements: AtomicU64,
    failed: AtomicU64,
    lost: AtomicU64,
}

impl Counters {
    /// Counts a statement and, when it failed, its failure.
    pub(crate) fn count<T>(&self, result: &Result<T, Error>) {
        self.statements.fetch_add(1, Ordering::Relaxed);
        if let Err(err) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            if err.is_connection() {
                self.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The counts, into a [`Metrics`] with the pool's and the cache's state.
    pub(crate) fn snapshot(
        &self,
        pool: deadpool_postgres::Status,
        cache: Option<CacheStats>,
    ) -> Metrics {
        Metrics {
            statements: self.statements.load(Ordering::Relaxed),
            failed_statements: self.failed.load(Ordering::Relaxed),
            lost_connections: self.lost.load(Ordering::Relaxed),
            connections: pool.size,
            idle_connections: pool.available,
            waiting: pool.waiting,
            cache,
        }
    }
}
