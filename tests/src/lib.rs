//! The harness for auth_pg's end-to-end tests (and its benchmarks): throwaway clusters, a fresh
//! database per test, and clients that connect as non-superuser roles.
//!
//! Tests share one cluster per test binary ([`shared_cluster`]), stopped when the binary exits;
//! a test that restarts or reconfigures a server starts a [`Cluster`] of its own.

pub mod cluster;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use auth_client::{AuthClient, Config};
pub use cluster::{Cluster, ClusterOptions, roles};
use tokio_postgres::NoTls;

static SHARED: OnceLock<Cluster> = OnceLock::new();

extern "C" fn stop_shared_cluster() {
    if let Some(cluster) = SHARED.get() {
        cluster.stop("immediate");
        let _ = std::fs::remove_dir_all(cluster.socket_dir());
    }
}

/// The cluster shared by every test of this binary, started on first use and stopped when the
/// process exits.
pub fn shared_cluster() -> &'static Cluster {
    SHARED.get_or_init(|| {
        let cluster = Cluster::start(&ClusterOptions::default());
        // SAFETY: registers a plain extern "C" function; it runs once, at normal process exit,
        // after the test harness has finished (statics are never dropped otherwise).
        unsafe { libc::atexit(stop_shared_cluster) };
        cluster
    })
}

/// A database of its own for one test, on the shared cluster.
pub struct TestDb {
    cluster: &'static Cluster,
    name: String,
}

static DATABASES: AtomicUsize = AtomicUsize::new(0);

impl TestDb {
    /// A new database, with the extension installed, named after `test` for readable logs.
    pub fn new(test: &str) -> Self {
        let cluster = shared_cluster();
        let n = DATABASES.fetch_add(1, Ordering::SeqCst);
        let name: String = format!("t{n}_{test}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(60)
            .collect();
        cluster.create_database(&name);
        Self { cluster, name }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cluster it lives on.
    pub fn cluster(&self) -> &'static Cluster {
        self.cluster
    }

    /// A connection string for `role`.
    pub fn url(&self, role: &str) -> String {
        self.cluster.url(role, &self.name)
    }

    /// An [`AuthClient`] connecting as `role`.
    pub fn client(&self, role: &str) -> AuthClient {
        AuthClient::new(&Config::from_url(&self.url(role)).expect("valid settings"))
            .expect("a client")
    }

    /// An [`AuthClient`] connecting as `role` with a cache of `capacity` answers, once its
    /// listener listens (panics when it does not within ten seconds). Its connections'
    /// `application_name` is the database's name, so a test can find its listener (named
    /// `<database> listener`) in `pg_stat_activity`.
    pub async fn cached_client(&self, role: &str, capacity: usize) -> AuthClient {
        let mut config = Config::from_url(&self.url(role)).expect("valid settings");
        config.cache(capacity);
        config.postgres_config().application_name(&self.name);
        let client = AuthClient::new(&config).expect("a client");
        wait_for(&client, "the cache's listener listens", |stats| {
            stats.listening
        })
        .await;
        client
    }

    /// A plain tokio-postgres connection as `role`, its connection task spawned.
    pub async fn connect(&self, role: &str) -> tokio_postgres::Client {
        self.cluster().connect(role, &self.name).await
    }

    /// Runs SQL with psql as the superuser; see [`Cluster::psql`].
    pub fn psql(&self, sql: &str) -> String {
        self.cluster.psql(&self.name, sql)
    }
}

/// Polls `holds` every `every` until it is true; fails with `failure()` after `within`.
pub async fn eventually(
    within: std::time::Duration,
    every: std::time::Duration,
    mut holds: impl FnMut() -> bool,
    failure: impl Fn() -> String,
) {
    let deadline = tokio::time::Instant::now() + within;
    while !holds() {
        assert!(tokio::time::Instant::now() < deadline, "{}", failure());
        tokio::time::sleep(every).await;
    }
}

/// Waits until `client`'s cache statistics satisfy `condition` (what the test waits for is
/// `what`); panics after ten seconds. The cache learns of changes asynchronously, from
/// notifications: tests wait for that, never for a fixed time.
pub async fn wait_for(
    client: &AuthClient,
    what: &str,
    condition: impl Fn(&auth_client::CacheStats) -> bool,
) -> auth_client::CacheStats {
    let stats = || client.cache_stats().expect("a client with a cache");
    eventually(
        std::time::Duration::from_secs(10),
        std::time::Duration::from_millis(5),
        || condition(&stats()),
        || format!("waited 10 s for: {what} ({:?})", stats()),
    )
    .await;
    stats()
}

/// The `auth_pg_invalidate` notifications one connection hears, in order.
pub struct Invalidations {
    receiver: tokio::sync::mpsc::UnboundedReceiver<String>,
    _client: tokio_postgres::Client,
}

impl Invalidations {
    /// The next notification, parsed; panics when none comes within ten seconds.
    pub async fn next(&mut self) -> auth_core::Invalidation {
        let payload =
            tokio::time::timeout(std::time::Duration::from_secs(10), self.receiver.recv())
                .await
                .expect("a notification within 10 s")
                .expect("the connection is open");
        auth_core::Invalidation::from_payload(&payload).expect("a known payload")
    }
}

impl TestDb {
    /// Listens on `auth_pg_invalidate` as `role` (any role may listen).
    pub async fn listen(&self, role: &str) -> Invalidations {
        use futures_util::future::poll_fn;
        use tokio_postgres::AsyncMessage;

        let (client, mut connection) = tokio_postgres::connect(&self.url(role), NoTls)
            .await
            .expect("connect");
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(message)) = poll_fn(|cx| connection.poll_message(cx)).await {
                if let AsyncMessage::Notification(n) = message {
                    let _ = sender.send(n.payload().to_owned());
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {}", auth_core::invalidation::CHANNEL))
            .await
            .expect("listen");
        Invalidations {
            receiver,
            _client: client,
        }
    }
}
