//! Load runs: throughput, median and p99 latency of each check beside its baselines, measured
//! in the same run, in interleaved rounds so that drift affects every workload alike.
//!
//! ```text
//! cargo run --release -p auth_pg_benches --bin loadrun -- tokens   [--seconds 10] [--rounds 3] [--redis]
//! cargo run --release -p auth_pg_benches --bin loadrun -- api_keys [--seconds 10] [--rounds 3]
//! cargo run --release -p auth_pg_benches --bin loadrun -- sessions [--seconds 10] [--rounds 3]
//! cargo run --release -p auth_pg_benches --bin loadrun -- session_cleanup
//! cargo run --release -p auth_pg_benches --bin loadrun -- permissions [--seconds 10] [--rounds 3]
//! cargo run --release -p auth_pg_benches --bin loadrun -- jwt [--seconds 10] [--rounds 3]
//! cargo run --release -p auth_pg_benches --bin loadrun -- client_cache [--seconds 10] [--rounds 3]
//! ```
//!
//! Prints Markdown tables for BENCHMARKS.md. `AUTH_PG_BENCH_TOKENS` sets the number of stored
//! tokens (default 1 000 000), `AUTH_PG_BENCH_ORGS` the organizations of the API key run
//! (default 200 000, five keys each), `AUTH_PG_BENCH_SESSIONS` the sessions (default 1 000 000;
//! the cleanup run stores as many expired ones beside them). `--redis` adds a Redis GET of a cached answer, the cache
//! that the usual advice puts in front of the database (needs `redis-server`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_pg_benches::api_keys::{ApiKeyBench, workloads as api_key_workloads};
use auth_pg_benches::jwt::{JwtBench, workloads as jwt_workloads};
use auth_pg_benches::load::{Plan, Workload, machine, run_and_report};
use auth_pg_benches::permissions::{PermissionBench, workloads as permission_workloads};
use auth_pg_benches::sessions::{SessionBench, session_count, workloads as session_workloads};
use auth_pg_benches::stats::{Summary, median};
use auth_pg_benches::{Pick, TokenBench, token_count, token_workloads};

/// A throwaway redis-server on a Unix socket, holding one cached answer per token.
struct Redis {
    child: Child,
    dir: PathBuf,
}

impl Redis {
    async fn start(tokens: &[String]) -> (Self, Vec<redis::aio::MultiplexedConnection>) {
        let dir = std::env::temp_dir().join(format!("auth_pg-bench-redis-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let socket = dir.join("redis.sock");
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--save",
                "",
                "--appendonly",
                "no",
                "--unixsocket",
            ])
            .arg(&socket)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (install it, or run without --redis)");
        let redis = Self { child, dir };
        let client =
            redis::Client::open(format!("redis+unix://{}", socket.display())).expect("url");
        let mut connection = None;
        for _ in 0..100 {
            match client.get_multiplexed_async_connection().await {
                Ok(c) => {
                    connection = Some(c);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let mut connection = connection.expect("redis did not start");
        for chunk in tokens.chunks(10_000) {
            let mut pipe = redis::pipe();
            for token in chunk {
                let value = r#"{"user_id":"user-1","scopes":["read","write"],"expires_at":"2100-01-01T00:00:00Z"}"#;
                pipe.set(cache_key(token), value).ignore();
            }
            let () = pipe.query_async(&mut connection).await.expect("load redis");
        }
        let mut connections = Vec::new();
        for _ in 0..8 {
            connections.push(
                client
                    .get_multiplexed_async_connection()
                    .await
                    .expect("connect"),
            );
        }
        (redis, connections)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A cache keyed by the token's hash, as a careful application would key it.
fn cache_key(token: &str) -> String {
    auth_core::credential_hash(None, token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn tokens(plan: &Plan, redis: bool) {
    let n = token_count();
    eprintln!("loading {n} tokens...");
    let bench = TokenBench::setup(n).await;
    let client = bench.client(8).await;
    let tokens = Arc::new(bench.tokens.clone());
    let server_version = bench.cluster.psql("postgres", "SHOW server_version");
    let mut workloads = token_workloads(&client, tokens.clone(), Arc::new(bench.hashes.clone()));
    let _redis = if redis {
        let (redis, connections) = Redis::start(&tokens).await;
        let connections = Arc::new(connections);
        let tokens = tokens.clone();
        // Second, right after the floor: the cache the usual advice puts in front.
        workloads.insert(
            1,
            Workload::new("Redis GET of a cached answer", move |caller, random| {
                let mut connection = connections[caller % connections.len()].clone();
                let token = Pick::from(&tokens, random);
                async move {
                    let value: Option<String> = redis::cmd("GET")
                        .arg(cache_key(&token))
                        .query_async(&mut connection)
                        .await
                        .expect("GET");
                    assert!(value.is_some());
                }
            }),
        );
        Some(redis)
    } else {
        None
    };

    println!(
        "{n} tokens stored; {} rounds of {} s per workload, interleaved; medians of the rounds.",
        plan.rounds, plan.seconds
    );
    println!(
        "Machine: {}; PostgreSQL {server_version}; Unix socket; auth_client pool of 8.\n",
        machine()
    );
    run_and_report(&workloads, plan).await;
}

async fn api_keys(plan: &Plan) {
    let bench = ApiKeyBench::setup().await;
    let server_version = bench.cluster.psql("postgres", "SHOW server_version");
    let large = bench.client_large(8).await;
    let small = bench.client_small(8).await;
    let workloads = api_key_workloads(&bench, &large, &small);

    println!(
        "API keys: {} in {} organizations of five, plus one organization with one key and one \
         with 10 000, in one database; 10 000 organizations of one key in another. {} rounds of \
         {} s per workload, interleaved; medians of the rounds.",
        bench.spread_keys.len() + 1 + bench.big_org_keys.len(),
        bench.spread_keys.len() / 5,
        plan.rounds,
        plan.seconds
    );
    println!(
        "Machine: {}; PostgreSQL {server_version}; Unix socket; auth_client pool of 8.\n",
        machine()
    );
    run_and_report(&workloads, plan).await;

    // What a change costs in a small organization and in one holding 10 000 keys, without the
    // baseline's GIN index (which every document change would also have to update).
    bench.cluster.psql(
        auth_pg_benches::api_keys::LARGE,
        "DROP INDEX auth_pg.organizations_api_keys_path_ops",
    );
    println!("\n| change | organization | median | p90 |\n|---|---|---:|---:|");
    for (label, org) in [
        ("one key", bench.single_org.as_str()),
        ("10 000 keys", bench.big_org.as_str()),
    ] {
        let mut create = Vec::new();
        let mut revoke = Vec::new();
        for _ in 0..30 {
            let start = Instant::now();
            let key = bench
                .admin
                .create_api_key(org, "bench", &[], None, None)
                .await
                .expect("create");
            create.push(start.elapsed().as_secs_f64() * 1e3);
            let start = Instant::now();
            assert!(
                bench
                    .admin
                    .revoke_api_key(org, &key.key_id)
                    .await
                    .expect("revoke")
            );
            revoke.push(start.elapsed().as_secs_f64() * 1e3);
        }
        for (change, mut times) in [("create_api_key", create), ("revoke_api_key", revoke)] {
            times.sort_by(f64::total_cmp);
            let p90 = times[times.len() * 9 / 10];
            println!(
                "| `{change}` | {label} | {:.2} ms | {p90:.2} ms |",
                median(&mut times)
            );
        }
    }
}

async fn sessions(plan: &Plan) {
    let n = session_count();
    let bench = SessionBench::setup(n, 0).await;
    let client = bench.client(8).await;
    let server_version = bench.cluster.psql("postgres", "SHOW server_version");
    let workloads = session_workloads(&client, &bench);
    println!(
        "Sessions: {n} in force; {} rounds of {} s per workload, interleaved; medians of the \
         rounds. `auth_pg.session_touch_interval` 60 s (the default).",
        plan.rounds, plan.seconds
    );
    println!(
        "Machine: {}; PostgreSQL {server_version}; Unix socket; auth_client pool of 8.\n",
        machine()
    );
    run_and_report(&workloads, plan).await;
    let updates = bench.cluster.psql(
        auth_pg_benches::DATABASE,
        "SELECT string_agg(format('%s: %s updates, %s HOT', relname, n_tup_upd, n_tup_hot_upd), '; ' \
                           ORDER BY relname) \
         FROM pg_stat_user_tables WHERE relname = 'sessions'",
    );
    println!("\nUpdates during the run: {updates}.");
}

async fn permissions(plan: &Plan) {
    let bench = PermissionBench::setup().await;
    let client = bench.client(auth_pg_e2e::roles::VALIDATOR, 8).await;
    let server_version = bench.cluster.psql("postgres", "SHOW server_version");
    let rows = bench.cluster.psql(
        auth_pg_benches::DATABASE,
        "SELECT format('%s user_grants rows, %s permissions each on average', count(*), \
                       round(avg(cardinality(permissions)))) FROM auth_pg.user_grants",
    );
    println!(
        "Permissions: 100 000 users, 1 000 organizations, 500 roles (chains three parents deep), \
         2 000 permissions; {rows}. {} rounds of {} s per workload, interleaved; medians of the \
         rounds. Each call asks about a random (user, organization) pair the user holds a role \
         in.",
        plan.rounds, plan.seconds
    );
    println!(
        "Machine: {}; PostgreSQL {server_version}; Unix socket; auth_client pool of 8.\n",
        machine()
    );
    run_and_report(&permission_workloads(&client, &bench.questions), plan).await;
}

async fn jwt(plan: &Plan) {
    let bench = JwtBench::setup().await;
    let client = bench.client(8).await;
    let server_version = bench.cluster.psql("postgres", "SHOW server_version");
    println!(
        "JWT: one key per algorithm (HS256 64-byte secret, Ed25519, RSA 2048, P-256); tokens \
         signed beforehand, picked at random: 100 000 HS256 and EdDSA tokens (about 1 % of \
         verifications hit a backend's 1 024-entry cache), 10 000 RS256 (10 %), 20 000 ES256 \
         (5 %), and 64 EdDSA tokens for the repeated case. {} rounds of {} s per workload, interleaved; \
         medians of the rounds.",
        plan.rounds, plan.seconds
    );
    println!(
        "Machine: {}; PostgreSQL {server_version}; Unix socket; auth_client pool of 8.\n",
        machine()
    );
    run_and_report(&jwt_workloads(&client, &bench.pools), plan).await;
}

/// Deletes as many expired sessions as are in force while eight callers validate sessions in
/// force, and reports the time, the callers' latency before and during, and the table's size.
async fn session_cleanup() {
    let n = session_count();
    let bench = SessionBench::setup(n, n).await;
    let client = bench.client(8).await;
    let db = auth_pg_benches::DATABASE;
    let size = |bench: &SessionBench| {
        bench.cluster.psql(
            db,
            "SELECT pg_size_pretty(pg_table_size('auth_pg.sessions')) || ' table, ' || \
                    pg_size_pretty(pg_indexes_size('auth_pg.sessions')) || ' indexes'",
        )
    };
    let validate = session_workloads(&client, &bench)
        .into_iter()
        .find(|w| w.name() == "`validate_session`")
        .expect("the validate workload");
    let before_size = size(&bench);
    eprintln!("validating for 10 s before the cleanup...");
    let before = validate
        .run_while(8, 1, {
            let deadline = Instant::now() + Duration::from_secs(10);
            move || Instant::now() < deadline
        })
        .await;

    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let callers = {
        let (validate, done) = (validate.clone(), done.clone());
        tokio::spawn(async move {
            validate
                .run_while(8, 2, move || {
                    !done.load(std::sync::atomic::Ordering::Relaxed)
                })
                .await
        })
    };
    let admin = tokio_postgres::connect(
        &bench.cluster.url(auth_pg_e2e::roles::SUPERUSER, db),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect");
    tokio::spawn(admin.1);
    let admin = admin.0;
    eprintln!("cleaning up...");
    let start = Instant::now();
    let (mut deleted, mut batches) = (0i64, 0);
    loop {
        let batch: i64 = admin
            .query_one("SELECT auth_pg.cleanup_expired_sessions(10000)", &[])
            .await
            .expect("cleanup")
            .get(0);
        deleted += batch;
        batches += 1;
        if batch < 10_000 {
            break;
        }
    }
    let took = start.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let during = callers.await.expect("callers");
    let after_size = size(&bench);
    bench.cluster.psql(db, "VACUUM auth_pg.sessions");
    let vacuumed_size = size(&bench);

    let row = |label: &str, s: &Summary| println!("| {label} | {} |", rate_and_latencies(s));
    println!(
        "Session cleanup: {n} sessions in force and {n} expired (idle deadline two days ago), \
         interleaved on the table's pages. Machine: {}.\n",
        machine()
    );
    println!(
        "`cleanup_expired_sessions(10000)` called until it returned less: {deleted} deleted in \
         {batches} calls, {:.1} s ({:.0} rows/s).\n",
        took.as_secs_f64(),
        deleted as f64 / took.as_secs_f64()
    );
    println!("| 8 callers of `validate_session` | calls/s | p50 | p99 |\n|---|---:|---:|---:|");
    row("before the cleanup (10 s)", &before);
    row("during the cleanup", &during);
    println!(
        "\nTable size: {before_size} before; {after_size} after; {vacuumed_size} after a plain \
         VACUUM (space kept for new sessions, not returned to the file system)."
    );
}

/// Tokens most requests use, in the client cache runs.
const HOT_TOKENS: usize = 10_000;
/// The client cache's capacity in those runs.
const CACHE_CAPACITY: usize = 100_000;
/// Revocations per second while the churn run measures.
const CHURN_PER_SECOND: u64 = 200;

/// `validate_token` through auth_client's cache, beside `SELECT 1` and the uncached call, in
/// one run: requests spread over a hot set that fits in the cache (after the first round, every
/// check a hit), and over all stored tokens (mostly misses: what the cache costs when it cannot
/// help). Then the hot set again while another client revokes tokens outside it, which every
/// cache hears.
async fn client_cache(plan: &Plan) {
    let n = token_count();
    eprintln!("loading {n} tokens...");
    let bench = TokenBench::setup(n).await;
    let server_version = bench.cluster.psql("postgres", "SHOW server_version");
    let plain = bench.client(8).await;
    let hot_cache = bench.cached_client(8, CACHE_CAPACITY).await;
    let spread_cache = bench.cached_client(8, CACHE_CAPACITY).await;
    let all = Arc::new(bench.tokens.clone());
    let hot = Arc::new(bench.tokens[..HOT_TOKENS.min(n)].to_vec());
    let validate = |name: &str, client: &auth_client::AuthClient, tokens: &Arc<Vec<String>>| {
        let (client, tokens) = (client.clone(), tokens.clone());
        Workload::new(name, move |_, random| {
            let (client, token) = (client.clone(), Pick::from(&tokens, random));
            async move {
                let answer = client.validate_token(&token).await.expect("validate");
                assert!(answer.is_valid());
            }
        })
    };
    let workloads = vec![
        auth_pg_benches::select_one(&plain),
        validate("`validate_token`, no cache", &plain, &all),
        validate(
            &format!("`validate_token`, cache, {} hot tokens", hot.len()),
            &hot_cache,
            &hot,
        ),
        validate(
            &format!("`validate_token`, cache, all {n} tokens"),
            &spread_cache,
            &all,
        ),
    ];
    println!(
        "Client cache: {n} tokens stored; cache capacity {CACHE_CAPACITY}. {} rounds of {} s per \
         workload, interleaved; medians of the rounds.",
        plan.rounds, plan.seconds
    );
    println!(
        "Machine: {}; PostgreSQL {server_version}; Unix socket; auth_client pool of 8.\n",
        machine()
    );
    run_and_report(&workloads, plan).await;
    println!("\n| cache | hits | misses | hit rate |\n|---|---:|---:|---:|");
    for (label, client) in [("hot set", &hot_cache), ("all tokens", &spread_cache)] {
        let stats = client.cache_stats().expect("a cache");
        println!(
            "| {label} | {} | {} | {:.3} |",
            stats.hits,
            stats.misses,
            stats.hits as f64 / (stats.hits + stats.misses).max(1) as f64
        );
    }

    // Churn: revocations of tokens outside the hot set, each heard by the cache (which finds
    // the token's entries by its id), while 8 callers check hot tokens.
    let admin = bench.admin_client().await;
    let cold: Vec<String> = bench.tokens[HOT_TOKENS.min(n)..].to_vec();
    let hot_workload = &workloads[2];
    let quiet = hot_workload.run_while(8, 99, deadline(plan.seconds)).await;
    let before = hot_cache.cache_stats().expect("a cache");
    let go = deadline(plan.seconds);
    let revoker = tokio::spawn({
        let go = go.clone();
        async move {
            let mut revoked = 0_u64;
            let mut tick = tokio::time::interval(Duration::from_secs(1) / CHURN_PER_SECOND as u32);
            while go() && (revoked as usize) < cold.len() {
                tick.tick().await;
                assert!(
                    admin
                        .revoke_token(&cold[revoked as usize])
                        .await
                        .expect("revoke")
                );
                revoked += 1;
            }
            revoked
        }
    });
    let churned = hot_workload.run_while(8, 100, go).await;
    let revoked = revoker.await.expect("revoker");
    let after = hot_cache.cache_stats().expect("a cache");
    println!(
        "\n| 8 callers, cache, hot set | calls/s | p50 | p99 | invalidations heard | hit rate |\n\
         |---|---:|---:|---:|---:|---:|"
    );
    let hit_rate = |from: &auth_client::CacheStats, to: &auth_client::CacheStats| {
        let hits = to.hits - from.hits;
        hits as f64 / (hits + to.misses - from.misses).max(1) as f64
    };
    println!("| quiet | {} | | |", rate_and_latencies(&quiet));
    println!(
        "| {revoked} revocations ({CHURN_PER_SECOND}/s) | {} | {} | {:.3} |",
        rate_and_latencies(&churned),
        after.invalidations - before.invalidations,
        hit_rate(&before, &after)
    );
}

/// Calls per second, p50 and p99 of a run, as Markdown table cells.
fn rate_and_latencies(summary: &Summary) -> String {
    format!(
        "{:.0} | {:.1} µs | {:.1} µs",
        summary.per_second,
        summary.p50.as_secs_f64() * 1e6,
        summary.p99.as_secs_f64() * 1e6
    )
}

/// A condition that holds for `seconds` from now.
fn deadline(seconds: u64) -> impl Fn() -> bool + Clone + Send + 'static {
    let end = Instant::now() + Duration::from_secs(seconds);
    move || Instant::now() < end
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (plan, rest) = Plan::from_args();
    let redis = rest.iter().any(|a| a == "--redis");
    match rest
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(String::as_str)
    {
        Some("tokens") | None => tokens(&plan, redis).await,
        Some("api_keys") => api_keys(&plan).await,
        Some("sessions") => sessions(&plan).await,
        Some("session_cleanup") => session_cleanup().await,
        Some("permissions") => permissions(&plan).await,
        Some("jwt") => jwt(&plan).await,
        Some("client_cache") => client_cache(&plan).await,
        Some(other) => panic!(
            "unknown suite {other}: tokens, api_keys, sessions, session_cleanup, permissions, \
             jwt or client_cache"
        ),
    }
}
