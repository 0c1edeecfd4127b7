//! The client: one pool, prepared statements, typed calls (each capability in its own module).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use auth_core::CredentialKind;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::types::{FromSql, ToSql};

use crate::cache::{Answer, Cache, CacheStats, Cached, Forget, Key};
use crate::listener::{self, AbortOnDrop};
use crate::metrics::{Counters, Metrics};
use crate::packed::{Packed, Unpack};
use crate::{Config, Error};

/// A handle to auth_pg through a pool of connections. Cheap to clone; clones share the pool
/// and the cache.
///
/// Every call takes a connection from the pool, runs one prepared statement (prepared once per
/// connection) and gives the connection back, unless the cache ([`Config::cache`]) can answer.
#[derive(Clone)]
pub struct AuthClient {
    pool: Pool,
    counters: Arc<Counters>,
    cache: Option<Arc<Cache>>,
    /// Stops the cache's listener when the last clone is dropped.
    _listener: Option<Arc<AbortOnDrop>>,
}

impl AuthClient {
    /// A client for `config`. No connection is opened until the first call.
    pub fn new(config: &Config) -> Result<Self, Error> {
        let mut pg = config.pg.clone();
        if let Some(timeout) = config.statement_timeout {
            let options = format!(
                "{} -c statement_timeout={}",
                pg.get_options().unwrap_or_default(),
                timeout_millis(timeout)
            );
            pg.options(options.trim());
        }
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .wait_timeout(config.wait_timeout)
            .create_timeout(config.pg.get_connect_timeout().copied())
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(Error::config)?;
        let (cache, listener) = if config.cache_capacity > 0 {
            let cache = Arc::new(Cache::new(config.cache_capacity, config.cache_max_age));
            let listener = listener::spawn(config.pg.clone(), Arc::clone(&cache))?;
            (Some(cache), Some(Arc::new(listener)))
        } else {
            (None, None)
        };
        Ok(Self {
            pool,
            counters: Arc::default(),
            cache,
            _listener: listener,
        })
    }

    /// What the cache has done, or `None` when the client has no cache.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.cache.as_deref().map(Cache::stats)
    }

    /// Statements run and failed, connections lost, the pool's connections and the cache's
    /// counters, since the client was made (shared by its clones).
    pub fn metrics(&self) -> Metrics {
        self.counters
            .snapshot(self.pool.status(), self.cache_stats())
    }

    /// Forgets, in this client's cache, the answer about `credential` after a change made
    /// through this client.
    pub(crate) fn forget_credential(&self, kind: CredentialKind, credential: &str) {
        if let Some(cache) = self.cache.as_deref() {
            cache.forget(&Forget::Entry(cache.credential_key(kind, credential)));
        }
    }

    /// Forgets, in this client's cache, what a change just made through it affects, without
    /// waiting for the server's notification (which forgets it in every other client).
    pub(crate) fn forget(&self, forget: &Forget<'_>) {
        if let Some(cache) = self.cache.as_deref() {
            cache.forget(forget);
        }
    }

    /// The underlying pool, for queries of your own on the same connections.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub(crate) async fn connection(&self) -> Result<Object, Error> {
        Ok(self.pool.get().await?)
    }

    /// Runs `sql` as a prepared statement and returns its only row.
    pub(crate) async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<tokio_postgres::Row, Error> {
        let mut rows = self.query(sql, params).await?;
        match (rows.pop(), rows.is_empty()) {
            (Some(row), true) => Ok(row),
            _ => Err(Error::decode("a statement answered other than one row")),
        }
    }

    /// Runs `sql` as a prepared statement and returns its rows.
    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, Error> {
        let result = async {
            let connection = self.connection().await?;
            let statement = connection.prepare_cached(sql).await?;
            Ok(connection.query(&statement, params).await?)
        }
        .await;
        self.counters.count(&result);
        result
    }

    /// Checks one credential with `sql` (one parameter, one packed answer): input not shaped
    /// like a credential of `kind` (`auth_core::check_shape`) is answered by `malformed` without
    /// a round trip, as the server would answer it, and the server checks the checksum and the
    /// rest (the client's part is what every call pays; a wrong checksum is rare). A valid
    /// answer in the cache is answered from memory when `via` allows it, and the server's
    /// answer is stored in the cache either way.
    pub(crate) async fn check<R, T>(
        &self,
        kind: CredentialKind,
        sql: &str,
        credential: &str,
        malformed: impl FnOnce() -> T,
        via: Via,
    ) -> Result<T, Error>
    where
        R: Unpack,
        T: TryFrom<R, Error = Error> + Cached,
    {
        if auth_core::check_shape(kind, credential.as_bytes()).is_err() {
            return Ok(malformed());
        }
        let key = |cache: &Cache| cache.credential_key(kind, credential);
        let fetch = || self.fetch_check::<R, T>(sql, credential);
        let read = match via {
            Via::CacheOrServer => Some(T::from_answer),
            Via::Server => None,
        };
        self.through_cache(key, fetch, read, T::to_answer).await
    }

    /// Answers from the cache what it holds under `key` (read by `read`; `None` for a call
    /// that must reach the server every time, such as a touch, which writes), else runs the
    /// call `fetch` makes and stores what `keep` makes of its answer. Without a cache, just runs
    /// the call. `fetch` makes the call's future only where it is run: a query's future is
    /// large, and every call pays for moving it.
    pub(crate) async fn through_cache<T, F>(
        &self,
        key: impl FnOnce(&Cache) -> Key,
        fetch: impl FnOnce() -> F,
        read: Option<impl FnOnce(&Answer) -> Option<T>>,
        keep: impl FnOnce(&T) -> Option<(Answer, Option<SystemTime>)>,
    ) -> Result<T, Error>
    where
        F: Future<Output = Result<T, Error>>,
    {
        let Some(cache) = self.cache.as_deref().filter(|cache| cache.serving()) else {
            return fetch().await;
        };
        let key = key(cache);
        if let Some(read) = read
            && let Some(answer) = cache.get(&key).and_then(|entry| read(&entry.answer))
        {
            // An answer from memory is ready at once: count it against the task's cooperative
            // budget, so that a caller looping on hits still lets other tasks (the cache's own
            // listener among them) run.
            tokio::task::consume_budget().await;
            return Ok(answer);
        }
        Self::fetch_and_store(cache, key, fetch, keep).await
    }

    async fn fetch_and_store<T, F>(
        cache: &Cache,
        key: Key,
        fetch: impl FnOnce() -> F,
        keep: impl FnOnce(&T) -> Option<(Answer, Option<SystemTime>)>,
    ) -> Result<T, Error>
    where
        F: Future<Output = Result<T, Error>>,
    {
        // The ticket is taken before the call is sent: an invalidation heard while it runs
        // makes the store refuse its answer.
        let ticket = cache.ticket();
        let answer = fetch().await?;
        if let (Some(ticket), Some((stored, expires_at))) = (ticket, keep(&answer)) {
            cache.store(ticket, key, stored, expires_at);
        }
        Ok(answer)
    }

    async fn fetch_check<R, T>(&self, sql: &str, credential: &str) -> Result<T, Error>
    where
        R: Unpack,
        T: TryFrom<R, Error = Error>,
    {
        let row = self.query_one(sql, &[&credential]).await?;
        row.try_get::<_, Packed<R>>(0)?.0.try_into()
    }

    /// Checks many credentials with `sql` (one array parameter, one composite column per row,
    /// in order) and makes sure every one was answered.
    pub(crate) async fn check_many<R, T>(
        &self,
        sql: &str,
        credentials: &[&str],
    ) -> Result<Vec<T>, Error>
    where
        R: for<'a> FromSql<'a>,
        T: TryFrom<R, Error = Error>,
    {
        let answers = self
            .query(sql, &[&credentials])
            .await?
            .into_iter()
            .map(|row| row.try_get::<_, R>(0)?.try_into())
            .collect::<Result<Vec<T>, Error>>()?;
        if answers.len() != credentials.len() {
            return Err(Error::decode(
                "a batch check answered a different number of credentials",
            ));
        }
        Ok(answers)
    }

    /// `SELECT 1` through the same pool and prepared-statement path as every call: the floor
    /// of a round trip, for health checks and for benchmarks' baselines.
    pub async fn ping(&self) -> Result<(), Error> {
        let row = self.query_one("SELECT 1", &[]).await?;
        match row.try_get::<_, i32>(0) {
            Ok(1) => Ok(()),
            _ => Err(Error::decode("SELECT 1 did not return 1")),
        }
    }
}

/// Where a check may be answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Via {
    /// From the cache when it holds a valid answer, else from the server.
    CacheOrServer,
    /// Always from the server: the call writes (a touch), so memory cannot answer it.
    Server,
}

/// A statement timeout as PostgreSQL's setting takes it: whole milliseconds, rounded up, and at
/// least one (`0` would mean no timeout at all).
fn timeout_millis(timeout: Duration) -> u128 {
    timeout.as_micros().div_ceil(1000).max(1)
}

impl std::fmt::Debug for AuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthClient")
            .field("pool", &self.pool.status())
            .field("counters", &self.counters)
            .field("cache", &self.cache)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn a_timeout_under_a_millisecond_is_never_no_timeout() {
        for (timeout, millis) in [
            (Duration::ZERO, 1),
            (Duration::from_micros(500), 1),
            (Duration::from_micros(1_001), 2),
            (Duration::from_millis(250), 250),
            (Duration::from_secs(2), 2_000),
        ] {
            assert_eq!(timeout_millis(timeout), millis, "{timeout:?}");
        }
    }

    #[test]
    fn a_cache_needs_a_tokio_runtime_and_says_so() {
        let mut config = Config::from_url("host=/nonexistent dbname=app").expect("valid");
        assert!(
            AuthClient::new(&config).is_ok(),
            "no cache, no runtime needed"
        );
        config.cache(100);
        let err = AuthClient::new(&config).expect_err("no runtime to listen on");
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains("Tokio runtime"), "{err}");
    }

    #[tokio::test]
    async fn a_client_whose_listener_cannot_connect_works_without_its_cache() {
        let mut config = Config::from_url("host=/nonexistent dbname=app").expect("valid");
        config.cache(100);
        let client = AuthClient::new(&config).expect("a client");
        let stats = client.cache_stats().expect("a cache");
        assert!(!stats.listening);
        assert_eq!(stats.entries, 0);
        assert!(!format!("{client:?}").is_empty());
    }

    #[tokio::test]
    async fn metrics_count_statements_failures_and_lost_connections() {
        let config = Config::from_url("host=/nonexistent dbname=app").expect("valid");
        let client = AuthClient::new(&config).expect("a client");
        let clone = client.clone();
        assert_eq!(client.metrics().statements, 0);
        let err = client.ping().await.expect_err("no server");
        assert!(err.is_connection(), "{err}");
        // A malformed credential is answered without a statement.
        let answer = clone
            .validate_token("not a token")
            .await
            .expect("an answer");
        assert_eq!(answer.status, crate::Status::Malformed);
        let metrics = clone.metrics();
        assert_eq!(
            (
                metrics.statements,
                metrics.failed_statements,
                metrics.lost_connections
            ),
            (1, 1, 1),
            "{metrics:?}"
        );
        assert_eq!((metrics.connections, metrics.waiting), (0, 0));
        assert!(metrics.cache.is_none());
    }
}
