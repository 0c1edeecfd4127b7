//! Criterion benchmarks of token validation through auth_client, beside `SELECT 1` through the
//! same pool and the plain SQL a user would write (pgcrypto `digest` and a B-tree), with
//! 1 000 000 tokens stored (`AUTH_PG_BENCH_TOKENS` to change), one caller and eight.
//!
//! `cargo bench -p auth_pg_benches --bench tokens` (scripts/bench.sh installs what it needs).

use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_client::AuthClient;
use auth_pg_benches::{Picker, TokenBench, plain_sql_check, token_count};
use criterion::{Criterion, criterion_group, criterion_main};

const CALLERS: usize = 8;

#[derive(Clone, Copy)]
enum Workload {
    SelectOne,
    PlainSql,
    ValidateToken,
}

impl Workload {
    const ALL: [Workload; 3] = [Self::SelectOne, Self::PlainSql, Self::ValidateToken];

    fn name(self) -> &'static str {
        match self {
            Self::SelectOne => "select_1",
            Self::PlainSql => "plain_sql",
            Self::ValidateToken => "validate_token",
        }
    }

    async fn call(self, client: &AuthClient, token: &str) {
        match self {
            Self::SelectOne => client.ping().await.expect("ping"),
            Self::PlainSql => assert!(plain_sql_check(client, token).await.expect("plain")),
            Self::ValidateToken => {
                assert!(
                    client
                        .validate_token(token)
                        .await
                        .expect("validate")
                        .is_valid()
                )
            }
        }
    }
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let n = token_count();
    eprintln!("loading {n} tokens...");
    let bench = runtime.block_on(TokenBench::setup(n));
    let client = runtime.block_on(bench.client(CALLERS));
    let tokens = Arc::new(bench.tokens.clone());

    let mut group = c.benchmark_group(format!("tokens_{n}/1_caller"));
    group
        .measurement_time(Duration::from_secs(8))
        .sample_size(50);
    for workload in Workload::ALL {
        let mut picker = Picker::new(1);
        group.bench_function(workload.name(), |b| {
            b.to_async(&runtime).iter(|| {
                let token = &tokens[picker.below(tokens.len())];
                workload.call(&client, token)
            })
        });
    }
    group.finish();

    // Eight callers at once: criterion's time per iteration is then the inverse of the
    // throughput (all callers together).
    let mut group = c.benchmark_group(format!("tokens_{n}/{CALLERS}_callers"));
    group
        .measurement_time(Duration::from_secs(8))
        .sample_size(30);
    for workload in Workload::ALL {
        group.bench_function(workload.name(), |b| {
            b.to_async(&runtime).iter_custom(|iters| {
                let (client, tokens) = (client.clone(), tokens.clone());
                async move {
                    let per_caller = iters.div_ceil(CALLERS as u64);
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..CALLERS)
                        .map(|caller| {
                            let (client, tokens) = (client.clone(), tokens.clone());
                            tokio::spawn(async move {
                                let mut picker = Picker::new(caller as u64 + iters);
                                for _ in 0..per_caller {
                                    let token = &tokens[picker.below(tokens.len())];
                                    workload.call(&client, token).await;
                                }
                            })
                        })
                        .collect();
                    for task in tasks {
                        task.await.expect("caller");
                    }
                    start
                        .elapsed()
                        .mul_f64(iters as f64 / (per_caller * CALLERS as u64) as f64)
                }
            })
        });
    }
    group.finish();
    drop(bench);
}

criterion_group!(tokens, benches);
criterion_main!(tokens);
