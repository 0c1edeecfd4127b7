//! Load runs: throughput, median and p99 latency of each check beside its baselines, measured
//! in the same run, in interleaved rounds so that drift affects every workload alike.
//!
//! ```text
//! cargo run --release -p auth_pg_benches --bin loadrun -- [--seconds 10] [--rounds 3] [--redis]
//! ```
//!
//! Prints a Markdown table for BENCHMARKS.md. `AUTH_PG_BENCH_TOKENS` sets the number of stored
//! tokens (default 1 000 000). `--redis` adds a Redis GET of a cached answer, the cache that the
//! usual advice puts in front of the database (needs `redis-server`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_client::AuthClient;
use auth_pg_benches::stats::{Summary, median};
use auth_pg_benches::{Picker, TokenBench, plain_sql_check, token_count};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Workload {
    SelectOne,
    RedisGet,
    PlainSql,
    ValidateToken,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Self::SelectOne => "`SELECT 1` (same pool)",
            Self::RedisGet => "Redis GET of a cached answer",
            Self::PlainSql => "plain SQL: pgcrypto `digest` + B-tree",
            Self::ValidateToken => "`auth_pg.validate_token`",
        }
    }
}

struct Options {
    only: Option<String>,
    seconds: u64,
    rounds: usize,
    redis: bool,
    callers: Vec<usize>,
}

fn options() -> Options {
    let mut options = Options {
        only: None,
        seconds: 10,
        rounds: 3,
        redis: false,
        callers: vec![1, 8],
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().expect("a value after the flag");
        match arg.as_str() {
            "--seconds" => options.seconds = value().parse().expect("seconds"),
            "--rounds" => options.rounds = value().parse().expect("rounds"),
            "--callers" => {
                options.callers = value()
                    .split(',')
                    .map(|c| c.parse().expect("callers"))
                    .collect()
            }
            "--redis" => options.redis = true,
            // For profiling: run one workload only (select_1, plain_sql, validate_token).
            "--only" => options.only = Some(value()),
            other => panic!("unknown argument {other}"),
        }
    }
    options
}

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

async fn call(
    workload: Workload,
    client: &AuthClient,
    redis: Option<&mut redis::aio::MultiplexedConnection>,
    token: &str,
) {
    match workload {
        Workload::SelectOne => client.ping().await.expect("ping"),
        Workload::PlainSql => assert!(plain_sql_check(client, token).await.expect("plain")),
        Workload::ValidateToken => {
            assert!(
                client
                    .validate_token(token)
                    .await
                    .expect("validate")
                    .is_valid()
            )
        }
        Workload::RedisGet => {
            let connection = redis.expect("a redis connection");
            let value: Option<String> = redis::cmd("GET")
                .arg(cache_key(token))
                .query_async(connection)
                .await
                .expect("GET");
            assert!(value.is_some());
        }
    }
}

async fn run(
    workload: Workload,
    callers: usize,
    seconds: u64,
    client: &AuthClient,
    redis: &[redis::aio::MultiplexedConnection],
    tokens: &Arc<Vec<String>>,
    seed: u64,
) -> Summary {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..callers)
        .map(|caller| {
            let client = client.clone();
            let tokens = tokens.clone();
            let mut redis = redis.get(caller).cloned();
            tokio::spawn(async move {
                let mut picker = Picker::new(seed * 1000 + caller as u64);
                let mut latencies = Vec::with_capacity(200_000);
                while Instant::now() < deadline {
                    let token = &tokens[picker.below(tokens.len())];
                    let begin = Instant::now();
                    call(workload, &client, redis.as_mut(), token).await;
                    latencies.push(begin.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("caller"));
    }
    Summary::of(latencies, start.elapsed())
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores ({model})")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let options = options();
    let n = token_count();
    eprintln!("loading {n} tokens...");
    let bench = TokenBench::setup(n).await;
    let client = bench.client(8).await;
    let tokens = Arc::new(bench.tokens.clone());
    let (_redis, redis_connections) = if options.redis {
        let (redis, connections) = Redis::start(&tokens).await;
        (Some(redis), connections)
    } else {
        (None, Vec::new())
    };
    let server_version = bench.cluster.psql("postgres", "SHOW server_version");

    let mut workloads = vec![
        Workload::SelectOne,
        Workload::PlainSql,
        Workload::ValidateToken,
    ];
    if options.redis {
        workloads.insert(1, Workload::RedisGet);
    }
    if let Some(only) = &options.only {
        let keep = match only.as_str() {
            "select_1" => Workload::SelectOne,
            "plain_sql" => Workload::PlainSql,
            "validate_token" => Workload::ValidateToken,
            other => panic!("unknown workload {other}"),
        };
        workloads.retain(|&w| w == keep || w == Workload::SelectOne);
    }
    let mut results: BTreeMap<(usize, Workload), Vec<Summary>> = BTreeMap::new();
    for round in 0..options.rounds {
        for &callers in &options.callers {
            for &workload in &workloads {
                let summary = run(
                    workload,
                    callers,
                    options.seconds,
                    &client,
                    &redis_connections,
                    &tokens,
                    round as u64,
                )
                .await;
                eprintln!(
                    "round {round}: {:<40} {callers} callers: {:>9.0}/s p50 {:>6.1} µs p99 {:>6.1} µs",
                    workload.name(),
                    summary.per_second,
                    summary.p50.as_secs_f64() * 1e6,
                    summary.p99.as_secs_f64() * 1e6
                );
                results
                    .entry((callers, workload))
                    .or_default()
                    .push(summary);
            }
        }
    }

    println!(
        "{n} tokens stored; {} rounds of {} s per workload, interleaved; medians of the rounds.",
        options.rounds, options.seconds
    );
    println!(
        "Machine: {}; PostgreSQL {server_version}; Unix socket; auth_client pool of 8.\n",
        machine()
    );
    println!("| check | callers | calls/s | × `SELECT 1` | p50 | p99 |");
    println!("|---|---:|---:|---:|---:|---:|");
    for &callers in &options.callers {
        let rate = |w: Workload| {
            let mut rates: Vec<f64> = results[&(callers, w)]
                .iter()
                .map(|s| s.per_second)
                .collect();
            median(&mut rates)
        };
        let floor = rate(Workload::SelectOne);
        for &workload in &workloads {
            let summaries = &results[&(callers, workload)];
            let mut p50: Vec<f64> = summaries
                .iter()
                .map(|s| s.p50.as_secs_f64() * 1e6)
                .collect();
            let mut p99: Vec<f64> = summaries
                .iter()
                .map(|s| s.p99.as_secs_f64() * 1e6)
                .collect();
            println!(
                "| {} | {callers} | {:.0} | {:.2} | {:.0} µs | {:.0} µs |",
                workload.name(),
                rate(workload),
                rate(workload) / floor,
                median(&mut p50),
                median(&mut p99)
            );
        }
    }
}
