//! Set-up for the API key benchmarks: organizations in two databases, loaded in bulk through
//! the same path a restore takes (COPY into `auth_pg.organizations`; the trigger builds the
//! lookup rows), and the two ways applications look keys up without auth_pg.
//!
//! - `keys_1m`: `AUTH_PG_BENCH_ORGS` organizations (default 200 000) of five keys each, one
//!   organization with a single key and one with 10 000, and a `jsonb_path_ops` GIN index on
//!   the documents for the plain `@>` baseline.
//! - `keys_10k`: 10 000 organizations of one key each, for the fetch-all-and-scan baseline.

use std::sync::Arc;

use auth_client::{AuthClient, Config, CredentialKind};
use auth_core::HashKey;
use auth_pg_e2e::{Cluster, roles};
use bytes::Bytes;
use futures_util::SinkExt;

use crate::load::Workload;
use crate::{bench_cluster, warmed_client};

/// The database with a million keys.
pub const LARGE: &str = "keys_1m";
/// The database with ten thousand organizations.
pub const SMALL: &str = "keys_10k";

/// Keys stored for the benchmarks, in clear, by shape.
pub struct ApiKeyBench {
    /// The cluster (stopped when dropped).
    pub cluster: Cluster,
    /// An administrator client on `keys_1m`.
    pub admin: AuthClient,
    /// Keys of the organizations of five.
    pub spread_keys: Vec<String>,
    /// The organization with one key, and the key.
    pub single_org: String,
    /// The single key.
    pub single_key: String,
    /// The organization with 10 000 keys.
    pub big_org: String,
    /// Its keys.
    pub big_org_keys: Vec<String>,
    /// The keys of `keys_10k`.
    pub small_keys: Vec<String>,
    key: Option<HashKey>,
}

fn organizations() -> usize {
    std::env::var("AUTH_PG_BENCH_ORGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

fn new_keys(n: usize) -> Vec<String> {
    crate::credentials(CredentialKind::ApiKey, n)
}

/// One organization's document, as auth_pg writes it.
fn document(key: Option<&HashKey>, org: &str, keys: &[String]) -> String {
    let elements: Vec<serde_json::Value> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            serde_json::json!({
                "id": format!("key_{org}_{i}"),
                "hash": crate::hex(&auth_core::credential_hash(key, k.as_bytes())),
                "prefix": &k[..12],
                "name": format!("key {i}"),
                "scopes": ["read", "write"],
                "metadata": { "env": "prod" },
                "created_at": "2026-01-01T00:00:00+00:00",
                "expires_at": null,
                "revoked_at": null,
                "last_used_at": null,
            })
        })
        .collect();
    serde_json::Value::Array(elements).to_string()
}

async fn connect(cluster: &Cluster, db: &str) -> tokio_postgres::Client {
    cluster.connect(roles::SUPERUSER, db).await
}

/// COPYs organizations (id, documents) into `db`; the trigger builds their lookup rows.
async fn load(client: &tokio_postgres::Client, rows: impl Iterator<Item = (String, String)>) {
    let sink = client
        .copy_in::<_, Bytes>("COPY auth_pg.organizations (org_id, name, api_keys) FROM STDIN")
        .await
        .expect("COPY");
    futures_util::pin_mut!(sink);
    let mut buffer = String::new();
    for (org, doc) in rows {
        // Documents hold no tab, newline or backslash, so they need no COPY escaping.
        buffer.push_str(&format!("{org}\tOrganization {org}\t{doc}\n"));
        if buffer.len() > 1 << 20 {
            sink.send(Bytes::from(std::mem::take(&mut buffer)))
                .await
                .expect("COPY data");
        }
    }
    sink.send(Bytes::from(buffer)).await.expect("COPY data");
    sink.close().await.expect("COPY end");
}

async fn finish(client: &tokio_postgres::Client) {
    for statement in [
        "CREATE INDEX organizations_api_keys_path_ops ON auth_pg.organizations USING gin (api_keys jsonb_path_ops)",
        "GRANT SELECT ON auth_pg.organizations TO app_validator",
        "VACUUM ANALYZE auth_pg.organizations",
        "VACUUM ANALYZE auth_pg.api_key_lookup",
        // The baseline at its best: with 200k documents the planner expects ~2 000 matches for
        // `@>` and starts a parallel worker for every lookup (about 7 ms each); a user tuning
        // that query would turn that off. auth_pg's checks plan nothing and are unaffected.
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET max_parallel_workers_per_gather = 0', \
         current_database()); END $$",
        "CREATE EXTENSION pg_prewarm",
        "SELECT pg_prewarm(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname IN ('auth_pg', 'pg_toast') AND c.relkind IN ('r', 'i', 't')",
    ] {
        client.batch_execute(statement).await.expect(statement);
    }
}

impl ApiKeyBench {
    /// Starts a cluster and loads both databases.
    pub async fn setup() -> Self {
        let cluster = bench_cluster();
        let key = cluster.hash_key();
        let orgs = organizations();

        cluster.create_database(LARGE);
        let large = connect(&cluster, LARGE).await;
        let spread_keys = new_keys(orgs * 5);
        let single_key = new_keys(1);
        let big_org_keys = new_keys(10_000);
        eprintln!(
            "loading {} keys in {} organizations...",
            spread_keys.len(),
            orgs
        );
        let started = std::time::Instant::now();
        load(
            &large,
            spread_keys.chunks(5).enumerate().map(|(i, keys)| {
                (
                    format!("org{i}"),
                    document(key.as_ref(), &format!("org{i}"), keys),
                )
            }),
        )
        .await;
        load(
            &large,
            [
                (
                    "single".to_owned(),
                    document(key.as_ref(), "single", &single_key),
                ),
                (
                    "big".to_owned(),
                    document(key.as_ref(), "big", &big_org_keys),
                ),
            ]
            .into_iter(),
        )
        .await;
        eprintln!(
            "loaded in {:.0} s (through the sync trigger)",
            started.elapsed().as_secs_f64()
        );
        finish(&large).await;

        cluster.create_database(SMALL);
        let small = connect(&cluster, SMALL).await;
        let small_keys = new_keys(10_000);
        load(
            &small,
            small_keys.iter().enumerate().map(|(i, k)| {
                let org = format!("org{i}");
                let doc = document(key.as_ref(), &org, std::slice::from_ref(k));
                (org, doc)
            }),
        )
        .await;
        finish(&small).await;

        let admin = AuthClient::new(
            Config::from_url(&cluster.url(roles::ADMIN, LARGE))
                .expect("url")
                .pool_size(1),
        )
        .expect("client");
        Self {
            cluster,
            admin,
            spread_keys,
            single_org: "single".into(),
            single_key: single_key.into_iter().next().expect("one key"),
            big_org: "big".into(),
            big_org_keys,
            small_keys,
            key,
        }
    }

    async fn client(&self, db: &str, pool_size: usize, probe: &str) -> AuthClient {
        let probe = probe.to_owned();
        warmed_client(
            &self.cluster,
            roles::VALIDATOR,
            db,
            pool_size,
            20,
            move |client| {
                let probe = probe.clone();
                async move {
                    let answer = client.validate_api_key(&probe).await.expect("validate");
                    assert!(answer.is_valid());
                }
            },
        )
        .await
    }

    /// A validator client on `keys_1m`, connections opened and statements prepared.
    pub async fn client_large(&self, pool_size: usize) -> AuthClient {
        self.client(LARGE, pool_size, &self.single_key).await
    }

    /// A validator client on `keys_10k`.
    pub async fn client_small(&self, pool_size: usize) -> AuthClient {
        self.client(SMALL, pool_size, &self.small_keys[0]).await
    }

    /// The hex hashes stored for `keys`, as the baselines look them up.
    pub fn hex_hashes(&self, keys: &[String]) -> Vec<String> {
        keys.iter()
            .map(|k| crate::hex(&auth_core::credential_hash(self.key.as_ref(), k.as_bytes())))
            .collect()
    }
}

/// The plain-SQL lookup applications write: `@>` on the documents (with a `jsonb_path_ops`
/// GIN index), then the matching element. Returns whether a valid key was found.
pub async fn plain_jsonb_lookup(
    client: &AuthClient,
    hash: &str,
) -> Result<bool, auth_client::Error> {
    let connection = client.pool().get().await?;
    let statement = connection
        .prepare_cached(
            "SELECT o.org_id, e.value FROM auth_pg.organizations o, jsonb_array_elements(o.api_keys) e \
             WHERE o.api_keys @> jsonb_build_array(jsonb_build_object('hash', $1::text)) \
               AND e.value->>'hash' = $1 AND e.value->>'revoked_at' IS NULL",
        )
        .await?;
    Ok(connection.query_opt(&statement, &[&hash]).await?.is_some())
}

/// What applications do without an index: fetch every organization's keys and scan them.
pub async fn fetch_all_and_scan(
    client: &AuthClient,
    hash: &str,
) -> Result<bool, auth_client::Error> {
    let connection = client.pool().get().await?;
    let statement = connection
        .prepare_cached("SELECT org_id, api_keys FROM auth_pg.organizations")
        .await?;
    let rows = connection.query(&statement, &[]).await?;
    Ok(rows.iter().any(|row| {
        let keys: serde_json::Value = row.get(1);
        keys.as_array().is_some_and(|keys| {
            keys.iter().any(|k| {
                k.get("hash").and_then(serde_json::Value::as_str) == Some(hash)
                    && k.get("revoked_at").is_none_or(serde_json::Value::is_null)
            })
        })
    }))
}

/// The API key workloads, `SELECT 1` first: `validate_api_key` in each shape, the plain `@>`
/// query in the spread and the concentrated shape, and fetch-all-and-scan over 10 000
/// organizations. `large` and `small` are validator clients on the two databases.
pub fn workloads(bench: &ApiKeyBench, large: &AuthClient, small: &AuthClient) -> Vec<Workload> {
    let shapes = [
        (
            "1M keys in 200k organizations",
            large,
            Arc::new(bench.spread_keys.clone()),
        ),
        (
            "an organization's only key",
            large,
            Arc::new(vec![bench.single_key.clone()]),
        ),
        (
            "10k keys in one organization",
            large,
            Arc::new(bench.big_org_keys.clone()),
        ),
        (
            "10k keys in 10k organizations",
            small,
            Arc::new(bench.small_keys.clone()),
        ),
    ];
    let mut workloads = vec![crate::select_one(large)];
    for (label, client, keys) in &shapes {
        let (client, keys) = ((*client).clone(), keys.clone());
        workloads.push(Workload::new(
            format!("`validate_api_key`, {label}"),
            move |_, random| {
                let (client, key) = (client.clone(), crate::Pick::from(&keys, random));
                async move {
                    let validation = client.validate_api_key(&key).await.expect("validate");
                    assert!(validation.is_valid());
                }
            },
        ));
    }
    for (label, client, keys) in [shapes[0].clone(), shapes[2].clone()] {
        let client = client.clone();
        let hashes = Arc::new(bench.hex_hashes(&keys));
        workloads.push(Workload::new(
            format!("plain `@>` + `jsonb_path_ops` GIN, {label}"),
            move |_, random| {
                let (client, hash) = (client.clone(), crate::Pick::from(&hashes, random));
                async move { assert!(plain_jsonb_lookup(&client, &hash).await.expect("plain")) }
            },
        ));
    }
    let (client, hashes) = (small.clone(), Arc::new(bench.hex_hashes(&bench.small_keys)));
    workloads.push(Workload::new(
        "fetch all 10k organizations and scan",
        move |_, random| {
            let (client, hash) = (client.clone(), crate::Pick::from(&hashes, random));
            async move { assert!(fetch_all_and_scan(&client, &hash).await.expect("scan")) }
        },
    ));
    workloads
}
