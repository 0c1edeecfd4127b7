//! Set-up for the session benchmarks: sessions loaded in bulk into auth_pg's table and into
//! the table an application would keep without it, and the SQL it would run per request.
//!
//! The plain baseline is what applications write: a SHA-256 of the token (pgcrypto) as a
//! B-tree primary key, a read that judges the deadlines, and an
//! `UPDATE ... SET last_activity = now()` on every request.

use std::sync::Arc;

use auth_client::{AuthClient, CredentialKind};
use auth_pg_e2e::{Cluster, roles};

use crate::load::Workload;
use crate::{DATABASE, bench_cluster, copy_in, select_one, warmed_client};

/// How many sessions to store: `AUTH_PG_BENCH_SESSIONS`, or 1 000 000.
pub fn session_count() -> usize {
    std::env::var("AUTH_PG_BENCH_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// How many sessions the "busy" workload draws from: active users, each making many requests a
/// minute. Measurement windows are more than a minute apart, so each busy session is written
/// once per window: with a thousand of them and tens of thousands of touches per window, about
/// one touch in a hundred writes, as on a server whose active sessions make a request every
/// second or so.
pub const BUSY_SESSIONS: usize = 1_000;

/// The plain read: the session by the SHA-256 of its token, judged in SQL.
pub const PLAIN_READ: &str = "SELECT user_id, metadata, last_activity + idle_timeout, absolute_expires_at FROM bench_plain.sessions \
     WHERE token_hash = digest($1, 'sha256') AND revoked_at IS NULL \
       AND last_activity + idle_timeout > now() AND absolute_expires_at > now()";

/// The least a check written in plain SQL can cost: the session's row found through auth_pg's
/// own hash index by its stored hash, with no format check, no hashing and no function call.
/// Not a way to check a session (a caller never has the hash key): a floor for SQL,
/// measured beside auth_pg's check, which does all of that and the read in one call.
pub const ROW_BY_HASH: &str = "SELECT user_id, session_id, idle_expires_at, absolute_expires_at, \
     metadata, revoked_at FROM auth_pg.sessions WHERE session_hash = $1";

/// The plain touch, run after the read on every request.
pub const PLAIN_TOUCH: &str =
    "UPDATE bench_plain.sessions SET last_activity = now() WHERE token_hash = digest($1, 'sha256')";

/// A cluster holding sessions twice: in auth_pg, and in the plain baseline table.
pub struct SessionBench {
    /// The cluster (stopped and removed when this is dropped).
    pub cluster: Cluster,
    /// The tokens of the sessions in force, in clear.
    pub live: Vec<String>,
    /// The stored hash of each session in force, in the same order (for [`ROW_BY_HASH`]).
    pub live_hashes: Vec<Vec<u8>>,
}

fn tokens(n: usize) -> Vec<String> {
    crate::credentials(CredentialKind::Session, n)
}

impl SessionBench {
    /// Starts a cluster and stores `live` sessions in force (idle timeout 30 minutes, absolute
    /// 12 hours, last active 61 s before the load, so that the first touch of each writes) and `expired` sessions whose idle deadline passed
    /// two days ago, beyond the default retention, for cleanup to delete. The baseline table
    /// holds the live sessions only.
    pub async fn setup(live: usize, expired: usize) -> Self {
        let cluster = bench_cluster();
        cluster.create_database(DATABASE);
        let key = cluster.hash_key();
        let db = cluster.connect(roles::SUPERUSER, DATABASE).await;
        db.batch_execute(
            "CREATE EXTENSION pgcrypto; CREATE EXTENSION pg_prewarm;
             CREATE SCHEMA bench_plain;
             CREATE TABLE bench_plain.sessions (
                 token_hash bytea PRIMARY KEY, user_id text NOT NULL, metadata jsonb,
                 idle_timeout interval NOT NULL, last_activity timestamptz NOT NULL,
                 absolute_expires_at timestamptz NOT NULL, revoked_at timestamptz);
             CREATE UNLOGGED TABLE bench_plain.raw (token text);
             GRANT USAGE ON SCHEMA bench_plain TO app_validator;
             GRANT SELECT, UPDATE ON bench_plain.sessions TO app_validator;
             GRANT SELECT ON auth_pg.sessions TO app_validator;",
        )
        .await
        .expect("baseline schema");

        let live_tokens = tokens(live);
        let expired_tokens = tokens(expired);
        let live_hashes: Vec<Vec<u8>> = live_tokens
            .iter()
            .map(|t| auth_core::credential_hash(key.as_ref(), t.as_bytes()).to_vec())
            .collect();
        eprintln!("loading {live} live and {expired} expired sessions...");
        // Interleaved, as sessions of different ages are on a real table's pages.
        let mut rows = String::with_capacity((live + expired) * 200);
        let mut push = |i: usize, token: &str, idle_expires: &str, absolute_expires: &str| {
            rows.push_str(&format!(
                "ses_{i:017}\t\\\\x{}\tuser-{}\t{{\"ip\": \"203.0.113.7\"}}\t00:30:00\t{}\n",
                crate::hex(&auth_core::credential_hash(key.as_ref(), token.as_bytes())),
                i % 100_000,
                format_args!("{idle_expires}\t{absolute_expires}"),
            ));
        };
        let (mut l, mut e) = (live_tokens.iter(), expired_tokens.iter());
        let mut i = 0;
        loop {
            let (a, b) = (l.next(), e.next());
            if a.is_none() && b.is_none() {
                break;
            }
            if let Some(token) = a {
                push(i, token, "idle", "absolute");
                i += 1;
            }
            if let Some(token) = b {
                push(i, token, "gone", "gone_absolute");
                i += 1;
            }
        }
        // Times are filled in by SQL relative to the load: COPY into a staging table first.
        db.batch_execute(
            "CREATE UNLOGGED TABLE bench_plain.staging (session_id text, session_hash bytea, \
                 user_id text, metadata jsonb, idle_timeout interval, idle text, absolute text)",
        )
        .await
        .expect("staging");
        copy_in(&db, "COPY bench_plain.staging FROM STDIN", rows).await;
        let raw: String = live_tokens.iter().map(|t| format!("{t}\n")).collect();
        copy_in(&db, "COPY bench_plain.raw (token) FROM STDIN", raw).await;
        for statement in [
            "INSERT INTO auth_pg.sessions (session_id, session_hash, user_id, metadata, idle_timeout, \
                 created_at, last_activity_at, idle_expires_at, absolute_expires_at) \
             SELECT session_id, session_hash, user_id, metadata, idle_timeout, \
                    CASE idle WHEN 'idle' THEN now() - interval '61 seconds' \
                              ELSE now() - interval '3 days' END, \
                    CASE idle WHEN 'idle' THEN now() - interval '61 seconds' \
                              ELSE now() - interval '3 days' END, \
                    CASE idle WHEN 'idle' THEN now() - interval '61 seconds' + idle_timeout \
                              ELSE now() - interval '2 days' END, \
                    CASE absolute WHEN 'absolute' THEN now() + interval '12 hours' \
                                  ELSE now() + interval '9 hours' END \
             FROM bench_plain.staging",
            "DROP TABLE bench_plain.staging",
            "INSERT INTO bench_plain.sessions (token_hash, user_id, metadata, idle_timeout, \
                 last_activity, absolute_expires_at) \
             SELECT digest(token, 'sha256'), 'user-' || (row_number() OVER () % 100000), \
                    '{\"ip\": \"203.0.113.7\"}', interval '30 minutes', now(), \
                    now() + interval '12 hours' \
             FROM bench_plain.raw",
            "DROP TABLE bench_plain.raw",
            "VACUUM ANALYZE auth_pg.sessions",
            "VACUUM ANALYZE bench_plain.sessions",
            "SELECT pg_prewarm(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname IN ('auth_pg', 'bench_plain') AND c.relkind IN ('r', 'i')",
        ] {
            db.batch_execute(statement).await.expect(statement);
        }
        Self {
            cluster,
            live: live_tokens,
            live_hashes,
        }
    }

    /// A validator client with `pool_size` connections, all opened and statements prepared.
    pub async fn client(&self, pool_size: usize) -> AuthClient {
        let token = self.live[0].clone();
        let hash = self.live_hashes[0].clone();
        warmed_client(
            &self.cluster,
            roles::VALIDATOR,
            DATABASE,
            pool_size,
            20,
            move |client| {
                let (token, hash) = (token.clone(), hash.clone());
                async move {
                    assert!(
                        crate::row_by_hash(&client, ROW_BY_HASH, &hash)
                            .await
                            .expect("row by hash")
                    );
                    let validation = client.validate_session(&token).await.expect("validate");
                    assert!(validation.is_valid());
                    let touch = client.touch_session(&token).await.expect("touch");
                    assert!(touch.is_valid());
                    assert!(plain_read(&client, &token, false).await.expect("plain"));
                }
            },
        )
        .await
    }
}

/// The plain-SQL request: the read, then (with `touch`) the UPDATE. Returns whether the
/// session is valid.
pub async fn plain_read(
    client: &AuthClient,
    token: &str,
    touch: bool,
) -> Result<bool, auth_client::Error> {
    let connection = client.pool().get().await?;
    let read = connection.prepare_cached(PLAIN_READ).await?;
    let valid = connection.query_opt(&read, &[&token]).await?.is_some();
    if valid && touch {
        let update = connection.prepare_cached(PLAIN_TOUCH).await?;
        connection.execute(&update, &[&token]).await?;
    }
    Ok(valid)
}

/// The session workloads, `SELECT 1` first: the row by its stored hash ([`ROW_BY_HASH`]), the
/// plain read, the plain read and touch,
/// `validate_session`, and `touch_session` on busy sessions (the first [`BUSY_SESSIONS`],
/// so each is touched many times a minute and written once a minute) and on all sessions
/// (each touched rarely, so nearly every touch writes).
pub fn workloads(client: &AuthClient, bench: &SessionBench) -> Vec<Workload> {
    let live = &bench.live;
    let all = Arc::new(live.to_vec());
    let busy = Arc::new(live[..BUSY_SESSIONS.min(live.len())].to_vec());
    let mut workloads = vec![select_one(client)];
    workloads.push(crate::floor_workload(
        client,
        ROW_BY_HASH,
        Arc::new(bench.live_hashes.clone()),
    ));
    for (name, touch) in [
        ("plain SQL: read", false),
        ("plain SQL: read + `UPDATE ... last_activity = now()`", true),
    ] {
        let (client, tokens) = (client.clone(), all.clone());
        workloads.push(Workload::new(name, move |_, random| {
            let (client, token) = (client.clone(), crate::Pick::from(&tokens, random));
            async move { assert!(plain_read(&client, &token, touch).await.expect("plain")) }
        }));
    }
    {
        let (client, tokens) = (client.clone(), all.clone());
        workloads.push(Workload::new("`validate_session`", move |_, random| {
            let (client, token) = (client.clone(), crate::Pick::from(&tokens, random));
            async move {
                let answer = client.validate_session(&token).await.expect("validate");
                assert!(answer.is_valid(), "{}", answer.status);
            }
        }));
    }
    for (name, tokens) in [
        ("`touch_session`, 1k busy sessions", busy),
        (
            "`touch_session`, 1M sessions (writes nearly every time)",
            all,
        ),
    ] {
        let client = client.clone();
        workloads.push(Workload::new(name, move |_, random| {
            let (client, token) = (client.clone(), crate::Pick::from(&tokens, random));
            async move {
                let answer = client.touch_session(&token).await.expect("touch");
                assert!(answer.is_valid(), "{}", answer.status);
            }
        }));
    }
    workloads
}
