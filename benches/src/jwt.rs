//! Set-up for the JWT benchmarks: keys of each algorithm in `auth_pg.jwt_keys`, tokens signed
//! beforehand (outside the measurement), and two baselines for HS256: the HMAC check an
//! application writes in plain SQL with pgcrypto as one statement, and the same check through
//! SQL functions shaped as pgjwt ships them.
//!
//! Workloads pick tokens at random from a pool. A pool much larger than the verified-token
//! cache (1 024 entries per backend) makes nearly every verification a signature check ("never
//! seen before"); a pool of 64 tokens makes nearly every one a cache hit ("repeated").

use std::sync::Arc;

use auth_client::AuthClient;
use auth_core::jwt::{Algorithm, SigningKey, sign, test_keys};
use auth_pg_e2e::{Cluster, roles};

use crate::load::Workload;
use crate::{DATABASE, bench_cluster, select_one, warmed_client};

/// The HMAC secret of the HS256 key (test material, 64 bytes).
const HMAC_SECRET: &str = "bench-only-secret-0123456789abcdef0123456789abcdef0123456789abcd";
// The other keys are auth_core's test keys (public in this repository, used only in tests).
const ED25519: &str = test_keys::ED25519_PRIVATE;
const RSA2048: &str = test_keys::RSA_PRIVATE;
const P256: &str = test_keys::P256_PRIVATE;

/// The plain-SQL check, pgjwt's way: recompute the HMAC of the signing input with pgcrypto,
/// base64url-encode it, compare, then decode the claims and check `exp`.
pub const PLAIN_HS256: &str = "SELECT t.s = pg_catalog.translate(pg_catalog.rtrim(pg_catalog.encode( \
         hmac(t.h || '.' || t.p, $2, 'sha256'), 'base64'), '='), '+/', '-_') \
       AND (pg_catalog.convert_from(pg_catalog.decode(pg_catalog.rpad( \
             pg_catalog.translate(t.p, '-_', '+/'), (pg_catalog.length(t.p) + 3) / 4 * 4, '='), \
             'base64'), 'UTF8')::jsonb ->> 'exp')::numeric \
           > EXTRACT(epoch FROM pg_catalog.now()) \
     FROM (SELECT pg_catalog.split_part($1, '.', 1) AS h, pg_catalog.split_part($1, '.', 2) AS p, \
                  pg_catalog.split_part($1, '.', 3) AS s) AS t";

/// The same check through SQL functions shaped as pgjwt ships them, for applications that
/// install it: base64url helpers, a signing function and `verify(token, secret, algorithm)`
/// returning header, payload and a validity flag, all `LANGUAGE sql`. Written for this
/// benchmark. The helpers' bodies have a `FROM` or `WITH`, so PostgreSQL cannot inline them
/// and runs each through the SQL-function executor, which plans its body again in every
/// statement that calls it: that, not the HMAC, is what such a check costs.
pub const PGJWT_SHAPED_FUNCTIONS: &str = r"
CREATE SCHEMA bench_pgjwt;
CREATE FUNCTION bench_pgjwt.url_decode(data text) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    WITH standard AS (SELECT pg_catalog.translate(data, '-_', '+/') AS b64),
         padded AS (SELECT b64 || pg_catalog.repeat('=', (4 - pg_catalog.length(b64) % 4) % 4) AS b64
                    FROM standard)
    SELECT pg_catalog.decode(b64, 'base64') FROM padded
$$;
CREATE FUNCTION bench_pgjwt.url_encode(data bytea) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT pg_catalog.translate(pg_catalog.encode(data, 'base64'), E'+/=\n', '-_')
$$;
CREATE FUNCTION bench_pgjwt.algorithm_sign(signables text, secret text, algorithm text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    WITH digest AS (
        SELECT CASE algorithm WHEN 'HS256' THEN 'sha256' WHEN 'HS384' THEN 'sha384'
                              WHEN 'HS512' THEN 'sha512' END AS name)
    SELECT bench_pgjwt.url_encode(public.hmac(signables, secret, digest.name)) FROM digest
$$;
CREATE FUNCTION bench_pgjwt.verify(token text, secret text, algorithm text DEFAULT 'HS256')
RETURNS TABLE (header json, payload json, valid boolean) LANGUAGE sql IMMUTABLE AS $$
    SELECT pg_catalog.convert_from(bench_pgjwt.url_decode(part[1]), 'UTF8')::json,
           pg_catalog.convert_from(bench_pgjwt.url_decode(part[2]), 'UTF8')::json,
           part[3] = bench_pgjwt.algorithm_sign(part[1] || '.' || part[2], secret, algorithm)
    FROM pg_catalog.regexp_split_to_array(token, '\.') AS part
$$;
GRANT USAGE ON SCHEMA bench_pgjwt TO PUBLIC;
";

/// The check an application using the functions above makes: a valid signature and an
/// `exp` in the future.
pub const PGJWT_SHAPED_HS256: &str = "SELECT v.valid \
     AND (v.payload ->> 'exp')::numeric > EXTRACT(epoch FROM pg_catalog.now()) \
     FROM bench_pgjwt.verify($1, $2) AS v";

/// `jwt_verify`'s status, the one field a request needs first.
pub const VERIFY: &str = "SELECT (auth_pg.jwt_verify($1)).status";

/// One key and the tokens signed with it.
pub struct Signed {
    /// The workload's name.
    pub name: &'static str,
    /// The tokens.
    pub tokens: Arc<Vec<String>>,
}

/// A cluster with one key of each measured algorithm.
pub struct JwtBench {
    /// The cluster (stopped and removed when this is dropped).
    pub cluster: Cluster,
    /// Token pools, one per workload.
    pub pools: Vec<Signed>,
}

/// `n` tokens for distinct subjects, signed by `key` as `kid`, valid for a day; signed on two
/// threads (RSA signing in pure Rust takes about a millisecond a token).
fn tokens(algorithm: Algorithm, key: &str, kid: &str, n: usize) -> Vec<String> {
    let key = SigningKey::parse(algorithm, key).expect("test key");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let sign_range = |range: std::ops::Range<usize>| -> Vec<String> {
        range
            .map(|i| {
                let claims = serde_json::json!({
                    "sub": format!("user-{i}"),
                    "iat": now,
                    "exp": now + 86_400,
                    "role": "authenticated",
                });
                sign(&claims, &key, Some(kid)).expect("sign")
            })
            .collect()
    };
    std::thread::scope(|scope| {
        let half = n / 2;
        let first = scope.spawn(move || sign_range(0..half));
        let mut second = sign_range(half..n);
        let mut all = first.join().expect("signing thread");
        all.append(&mut second);
        all
    })
}

impl JwtBench {
    /// Starts a cluster, adds the keys and signs the token pools.
    pub async fn setup() -> Self {
        let cluster = bench_cluster();
        cluster.create_database(DATABASE);
        let db = cluster.connect(roles::SUPERUSER, DATABASE).await;
        db.batch_execute("CREATE EXTENSION pgcrypto")
            .await
            .expect("pgcrypto");
        db.batch_execute(PGJWT_SHAPED_FUNCTIONS)
            .await
            .expect("pgjwt-shaped functions");
        for (kid, algorithm, key) in [
            ("hs", "HS256", HMAC_SECRET),
            ("ed", "EdDSA", ED25519),
            ("rs", "RS256", RSA2048),
            ("es", "ES256", P256),
        ] {
            db.execute(
                "SELECT auth_pg.add_jwt_key($1, $2, $3)",
                &[&kid, &algorithm, &key],
            )
            .await
            .expect("add_jwt_key");
        }
        eprintln!("signing token pools...");
        let pools = vec![
            Signed {
                name: "`jwt_verify` HS256, never seen before",
                tokens: Arc::new(tokens(Algorithm::HS256, HMAC_SECRET, "hs", 100_000)),
            },
            Signed {
                name: "`jwt_verify` EdDSA, never seen before",
                tokens: Arc::new(tokens(Algorithm::EdDSA, ED25519, "ed", 100_000)),
            },
            Signed {
                name: "`jwt_verify` EdDSA, repeated (64 tokens)",
                tokens: Arc::new(tokens(Algorithm::EdDSA, ED25519, "ed", 64)),
            },
            Signed {
                name: "`jwt_verify` RS256, never seen before",
                tokens: Arc::new(tokens(Algorithm::RS256, RSA2048, "rs", 10_000)),
            },
            Signed {
                name: "`jwt_verify` ES256, never seen before",
                tokens: Arc::new(tokens(Algorithm::ES256, P256, "es", 20_000)),
            },
        ];
        Self { cluster, pools }
    }

    /// A validator client with `pool_size` connections, all opened and statements prepared.
    pub async fn client(&self, pool_size: usize) -> AuthClient {
        let firsts: Arc<Vec<String>> =
            Arc::new(self.pools.iter().map(|p| p.tokens[0].clone()).collect());
        warmed_client(
            &self.cluster,
            roles::VALIDATOR,
            DATABASE,
            pool_size,
            5,
            move |client| {
                let firsts = Arc::clone(&firsts);
                async move {
                    for query in [PLAIN_HS256, PGJWT_SHAPED_HS256] {
                        assert!(plain(&client, query, &firsts[0]).await);
                    }
                    for token in firsts.iter() {
                        assert_eq!(verify(&client, token).await, "valid");
                    }
                }
            },
        )
        .await
    }
}

async fn verify(client: &AuthClient, token: &str) -> String {
    let connection = client.pool().get().await.expect("connection");
    let statement = connection.prepare_cached(VERIFY).await.expect("prepare");
    connection
        .query_one(&statement, &[&token])
        .await
        .expect("jwt_verify")
        .get(0)
}

async fn plain(client: &AuthClient, query: &str, token: &str) -> bool {
    let connection = client.pool().get().await.expect("connection");
    let statement = connection.prepare_cached(query).await.expect("prepare");
    connection
        .query_one(&statement, &[&token, &HMAC_SECRET])
        .await
        .expect("plain HS256")
        .get(0)
}

/// The JWT workloads, `SELECT 1` first, then the plain-SQL HS256 check, then `jwt_verify` on
/// each pool.
pub fn workloads(client: &AuthClient, pools: &[Signed]) -> Vec<Workload> {
    let mut workloads = vec![select_one(client)];
    for (name, query) in [
        (
            "plain SQL HS256 (pgcrypto `hmac`, pgjwt's way)",
            PLAIN_HS256,
        ),
        (
            "plain SQL HS256 through pgjwt-shaped SQL functions",
            PGJWT_SHAPED_HS256,
        ),
    ] {
        let (client, tokens) = (client.clone(), pools[0].tokens.clone());
        workloads.push(Workload::new(name, move |_, random| {
            let (client, token) = (client.clone(), crate::Pick::from(&tokens, random));
            async move { assert!(plain(&client, query, &token).await) }
        }));
    }
    for pool in pools {
        let (client, tokens) = (client.clone(), pool.tokens.clone());
        workloads.push(Workload::new(pool.name, move |_, random| {
            let (client, token) = (client.clone(), crate::Pick::from(&tokens, random));
            async move { assert_eq!(verify(&client, &token).await, "valid") }
        }));
    }
    workloads
}
