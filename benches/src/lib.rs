//! Set-up shared by auth_pg's benchmarks (the criterion benches and the `loadrun` binary): a
//! throwaway cluster tuned as in the published measurements, data loaded in bulk, and the
//! baselines measured beside auth_pg in the same run.
//!
//! Every figure is only meaningful beside its baselines from the same run on the same machine:
//! `SELECT 1` through the same pool (the floor of any round trip) and the plain SQL a user would
//! write instead.

use std::sync::Arc;
use std::time::Duration;

use auth_client::{AuthClient, Config, Credential, CredentialKind};
use auth_pg_e2e::{Cluster, ClusterOptions, roles};
use bytes::Bytes;
use futures_util::SinkExt;

use crate::load::Workload;

pub mod api_keys;
pub mod criterion_groups;
pub mod jwt;
pub mod load;
pub mod permissions;
pub mod sessions;
pub mod stats;

/// The database the benchmarks run in.
pub const DATABASE: &str = "bench";

/// How many tokens to store: `AUTH_PG_BENCH_TOKENS`, or 1 000 000.
pub fn token_count() -> usize {
    std::env::var("AUTH_PG_BENCH_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// The plain-SQL way to check a token that auth_pg replaces: a SHA-256 digest from pgcrypto
/// and a B-tree primary key, with the same columns and the same validity rule.
pub const PLAIN_SQL_CHECK: &str = "SELECT user_id, scopes, expires_at, \
     (revoked_at IS NULL AND expires_at > now()) AS valid \
     FROM bench_plain.tokens WHERE token_hash = digest($1, 'sha256')";

/// The least a check written in plain SQL can cost: the token's row found through auth_pg's
/// own hash index by its stored hash, with no format check, no hashing and no function call.
/// Not a way to check a token (a caller never has the hash key): a floor for SQL, measured
/// beside auth_pg's check, which does all of that and the read in one call.
pub const ROW_BY_HASH: &str = "SELECT user_id, scopes, expires_at, revoked_at, metadata \
     FROM auth_pg.tokens WHERE token_hash = $1";

/// A cluster holding `n` tokens twice: in auth_pg, and in the plain-SQL baseline table.
pub struct TokenBench {
    /// The cluster (stopped and removed when this is dropped).
    pub cluster: Cluster,
    /// The stored tokens, in clear, to pick requests from.
    pub tokens: Vec<String>,
    /// The stored hash of each token, in the same order (for [`ROW_BY_HASH`]).
    pub hashes: Vec<Vec<u8>>,
}

/// Cluster settings for benchmarks: everything fits in memory, as a production auth database
/// does, and commits are durable, as on a production server (the test clusters' asynchronous,
/// unsynced commits would make every write look cheaper than it is).
pub fn bench_cluster() -> Cluster {
    Cluster::start(&ClusterOptions {
        settings: vec![
            "shared_buffers = 1GB".into(),
            "max_connections = 100".into(),
            "fsync = on".into(),
            "synchronous_commit = on".into(),
            "full_page_writes = on".into(),
        ],
        ..ClusterOptions::default()
    })
}

impl TokenBench {
    /// Starts a cluster and stores `n` random tokens, each valid for 30 days, for 100 000
    /// distinct users.
    pub async fn setup(n: usize) -> Self {
        let cluster = bench_cluster();
        cluster.create_database(DATABASE);
        let key = cluster.hash_key();
        let tokens = credentials(CredentialKind::Token, n);

        let db = cluster.connect(roles::SUPERUSER, DATABASE).await;
        db.batch_execute(
            "CREATE EXTENSION pgcrypto; CREATE EXTENSION pg_prewarm;
             CREATE SCHEMA bench_plain;
             CREATE TABLE bench_plain.tokens (
                 token_hash bytea PRIMARY KEY, user_id text NOT NULL, scopes text[] NOT NULL,
                 expires_at timestamptz NOT NULL, revoked_at timestamptz);
             CREATE UNLOGGED TABLE bench_plain.raw (token text);
             GRANT USAGE ON SCHEMA bench_plain TO app_validator;
             GRANT SELECT ON bench_plain.tokens TO app_validator;
             GRANT SELECT ON auth_pg.tokens TO app_validator;",
        )
        .await
        .expect("baseline schema");

        // auth_pg's table, loaded in bulk with hashes computed here with the cluster's key.
        let mut rows = String::with_capacity(n * 120);
        let mut hashes = Vec::with_capacity(n);
        for (i, token) in tokens.iter().enumerate() {
            let hash = auth_core::credential_hash(key.as_ref(), token.as_bytes());
            hashes.push(hash.to_vec());
            rows.push_str("\\\\x");
            rows.push_str(&hex(&hash));
            rows.push_str(&format!(
                "\tuser-{}\t{{read,write}}\t2100-01-01 00:00:00+00\n",
                i % 100_000
            ));
        }
        copy_in(
            &db,
            "COPY auth_pg.tokens (token_hash, user_id, scopes, expires_at) FROM STDIN",
            rows,
        )
        .await;

        let raw: String = tokens.iter().map(|t| format!("{t}\n")).collect();
        copy_in(&db, "COPY bench_plain.raw (token) FROM STDIN", raw).await;
        for statement in [
            "INSERT INTO bench_plain.tokens (token_hash, user_id, scopes, expires_at)
                 SELECT digest(token, 'sha256'), 'user-' || (row_number() OVER () % 100000),
                        '{read,write}', now() + interval '30 days'
                 FROM bench_plain.raw",
            "DROP TABLE bench_plain.raw",
            "VACUUM ANALYZE auth_pg.tokens",
            "VACUUM ANALYZE bench_plain.tokens",
            "SELECT pg_prewarm('auth_pg.tokens'), pg_prewarm('auth_pg.tokens_token_hash_idx'),
                    pg_prewarm('bench_plain.tokens'), pg_prewarm('bench_plain.tokens_pkey')",
        ] {
            db.batch_execute(statement)
                .await
                .expect("load the baseline");
        }
        Self {
            cluster,
            tokens,
            hashes,
        }
    }

    /// A client connecting as a role that may only check (`auth_pg_validator`), with a pool of
    /// `pool_size` connections, every connection opened and every statement prepared.
    pub async fn client(&self, pool_size: usize) -> AuthClient {
        self.cached_client(pool_size, 0).await
    }

    /// A client as a role that may issue and revoke (`auth_pg_admin`), with two connections.
    pub async fn admin_client(&self) -> AuthClient {
        let config = bench_config(&self.cluster, roles::ADMIN, DATABASE, 2);
        AuthClient::new(&config).expect("client")
    }

    /// As [`client`](Self::client), with a client cache of `capacity` answers (0: none) whose
    /// listener is listening before the warm-up.
    pub async fn cached_client(&self, pool_size: usize, capacity: usize) -> AuthClient {
        // A different token each time, so that a cached client prepares its statements too.
        let warm_tokens: Arc<Vec<String>> =
            Arc::new(self.tokens.iter().take(1000).cloned().collect());
        let warm_hashes: Arc<Vec<Vec<u8>>> =
            Arc::new(self.hashes.iter().take(1000).cloned().collect());
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut config = bench_config(&self.cluster, roles::VALIDATOR, DATABASE, pool_size);
        config.cache(capacity);
        warmed_client_with(&config, pool_size, 50, move |client| {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let token = warm_tokens[i % warm_tokens.len()].clone();
            let hash = warm_hashes[i % warm_hashes.len()].clone();
            async move {
                client.validate_token(&token).await.expect("validate");
                plain_sql_check(&client, &token).await.expect("plain");
                row_by_hash(&client, ROW_BY_HASH, &hash)
                    .await
                    .expect("row by hash");
            }
        })
        .await
    }
}

/// A client as `role` on `db` with a pool of `pool_size` connections, every connection opened
/// and every statement prepared before anything is measured: `pool_size` tasks at once (so that
/// each holds a connection of its own) each ping and run `warm_up` `rounds` times.
pub(crate) async fn warmed_client<F, Fut>(
    cluster: &Cluster,
    role: &str,
    db: &str,
    pool_size: usize,
    rounds: usize,
    warm_up: F,
) -> AuthClient
where
    F: Fn(AuthClient) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let config = bench_config(cluster, role, db, pool_size);
    warmed_client_with(&config, pool_size, rounds, warm_up).await
}

/// The settings of a benchmark's client: `pool_size` connections as `role` on `db`, and time
/// enough to wait for one.
fn bench_config(cluster: &Cluster, role: &str, db: &str, pool_size: usize) -> Config {
    let mut config = Config::from_url(&cluster.url(role, db)).expect("url");
    config
        .pool_size(pool_size)
        .wait_timeout(Some(Duration::from_secs(30)));
    config
}

/// [`warmed_client`] with settings of the caller's (a pool of `pool_size`); a client with a
/// cache is warmed once its listener listens.
async fn warmed_client_with<F, Fut>(
    config: &Config,
    pool_size: usize,
    rounds: usize,
    warm_up: F,
) -> AuthClient
where
    F: Fn(AuthClient) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let client = AuthClient::new(config).expect("client");
    if client.cache_stats().is_some() {
        auth_pg_e2e::wait_for(&client, "the cache listens", |stats| stats.listening).await;
    }
    let tasks: Vec<_> = (0..pool_size)
        .map(|_| {
            let (client, warm_up) = (client.clone(), warm_up.clone());
            tokio::spawn(async move {
                for _ in 0..rounds {
                    client.ping().await.expect("ping");
                    warm_up(client.clone()).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("warm-up");
    }
    client
}

pub(crate) async fn copy_in(db: &tokio_postgres::Client, statement: &str, data: String) {
    let sink = db.copy_in::<_, Bytes>(statement).await.expect("COPY");
    futures_util::pin_mut!(sink);
    sink.send(Bytes::from(data)).await.expect("COPY data");
    sink.close().await.expect("COPY end");
}

/// A plain-SQL floor (`sql`, [`ROW_BY_HASH`] or its sessions' twin, one `bytea` parameter):
/// returns whether the row was found.
pub async fn row_by_hash(
    client: &AuthClient,
    sql: &str,
    hash: &[u8],
) -> Result<bool, auth_client::Error> {
    let connection = client.pool().get().await?;
    let statement = connection.prepare_cached(sql).await?;
    Ok(connection.query_opt(&statement, &[&hash]).await?.is_some())
}

/// The workload of a plain-SQL floor: `sql` ([`row_by_hash`]) on a random one of the stored
/// `hashes`.
pub fn floor_workload(
    client: &AuthClient,
    sql: &'static str,
    hashes: Arc<Vec<Vec<u8>>>,
) -> Workload {
    let client = client.clone();
    Workload::new(
        "plain SQL floor: the row by its stored hash",
        move |_, random| {
            let (client, hashes) = (client.clone(), hashes.clone());
            async move {
                let hash = &hashes[random % hashes.len()];
                assert!(row_by_hash(&client, sql, hash).await.expect("row by hash"));
            }
        },
    )
}

/// The plain-SQL baseline: returns whether the token is valid.
pub async fn plain_sql_check(client: &AuthClient, token: &str) -> Result<bool, auth_client::Error> {
    let connection = client.pool().get().await?;
    let statement = connection.prepare_cached(PLAIN_SQL_CHECK).await?;
    let row = connection.query_opt(&statement, &[&token]).await?;
    Ok(row.is_some_and(|r| r.get::<_, bool>(3)))
}

/// `auth_pg.token_validation` in its binary record form, as auth_client read it before it
/// asked for the packed form.
#[derive(postgres_types::FromSql)]
#[postgres(name = "token_validation")]
#[allow(dead_code)] // Decoded as a client would; only the status is looked at.
struct TokenValidationRow {
    status: String,
    token_id: Option<i64>,
    user_id: Option<String>,
    scopes: Option<Vec<String>>,
    expires_at: Option<std::time::SystemTime>,
    metadata: Option<serde_json::Value>,
}

/// `validate_token` answering in its composite row (`SELECT auth_pg.validate_token($1)`),
/// through `client`'s pool: the row form beside the packed one auth_client uses. True for
/// `valid`.
pub async fn composite_check(client: &AuthClient, token: &str) -> Result<bool, auth_client::Error> {
    let connection = client.pool().get().await?;
    let statement = connection
        .prepare_cached("SELECT auth_pg.validate_token($1)")
        .await?;
    let row = connection.query_one(&statement, &[&token]).await?;
    Ok(row.try_get::<_, TokenValidationRow>(0)?.status == "valid")
}

/// `SELECT 1` through `client`'s pool: the floor of any round trip, the baseline of every
/// table.
pub fn select_one(client: &AuthClient) -> Workload {
    let client = client.clone();
    Workload::new("SELECT 1", move |_, _| {
        let client = client.clone();
        async move { client.ping().await.expect("ping") }
    })
}

/// The token workloads: `SELECT 1`, the row by its stored hash ([`ROW_BY_HASH`]), the plain
/// SQL, `validate_token` answering as a composite and as auth_client calls it (packed), each on
/// a random stored token (`hashes` are the tokens' stored hashes, in the same order).
pub fn token_workloads(
    client: &AuthClient,
    tokens: Arc<Vec<String>>,
    hashes: Arc<Vec<Vec<u8>>>,
) -> Vec<Workload> {
    vec![
        select_one(client),
        floor_workload(client, ROW_BY_HASH, hashes),
        Workload::new("plain SQL: pgcrypto `digest` + B-tree", {
            let (client, tokens) = (client.clone(), tokens.clone());
            move |_, random| {
                let (client, token) = (client.clone(), Pick::from(&tokens, random));
                async move { assert!(plain_sql_check(&client, &token).await.expect("plain")) }
            }
        }),
        Workload::new("`validate_token` as a composite row", {
            let (client, tokens) = (client.clone(), tokens.clone());
            move |_, random| {
                let (client, token) = (client.clone(), Pick::from(&tokens, random));
                async move { assert!(composite_check(&client, &token).await.expect("composite")) }
            }
        }),
        Workload::new("`auth_pg.validate_token`", {
            let client = client.clone();
            move |_, random| {
                let (client, token) = (client.clone(), Pick::from(&tokens, random));
                async move {
                    let validation = client.validate_token(&token).await.expect("validate");
                    assert!(validation.is_valid());
                }
            }
        }),
    ]
}

/// One element of a shared pool of request inputs (tokens, keys, hashes), picked without
/// copying it: a workload's call borrows it from the pool, as an application's handler borrows
/// the credential of the request it serves, so that the harness allocates nothing per call.
#[derive(Clone, Debug)]
pub struct Pick {
    pool: Arc<Vec<String>>,
    index: usize,
}

impl Pick {
    /// The element of `pool` that the random number `random` selects.
    pub fn from(pool: &Arc<Vec<String>>, random: usize) -> Self {
        Self {
            pool: pool.clone(),
            index: random % pool.len(),
        }
    }
}

impl std::ops::Deref for Pick {
    type Target = str;

    fn deref(&self) -> &str {
        &self.pool[self.index]
    }
}

/// `n` new random credentials of `kind`, in clear.
pub fn credentials(kind: CredentialKind, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| Credential::generate(kind).expect("random").into_secret())
        .collect()
}

/// Lower-case hexadecimal, as auth_pg writes hashes into documents.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A small, fast, deterministic generator for picking requests (xorshift64*).
#[derive(Clone, Debug)]
pub struct Picker(u64);

impl Picker {
    /// A generator seeded with `seed` (any value).
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// An index below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        usize::try_from(r % n as u64).unwrap_or(0)
    }
}
