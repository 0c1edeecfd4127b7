//! Criterion benchmarks of token validation through auth_client, beside `SELECT 1` through the
//! same pool and the plain SQL a user would write (pgcrypto `digest` and a B-tree), with
//! 1 000 000 tokens stored (`AUTH_PG_BENCH_TOKENS` to change), one caller and eight.
//!
//! `cargo bench -p auth_pg_benches --bench tokens` (scripts/bench.sh installs what it needs).

use std::sync::Arc;

use auth_pg_benches::criterion_groups::{bench_workloads, runtime};
use auth_pg_benches::{TokenBench, token_count, token_workloads};
use criterion::{Criterion, criterion_group, criterion_main};

fn benches(c: &mut Criterion) {
    let runtime = runtime();
    let n = token_count();
    eprintln!("loading {n} tokens...");
    let bench = runtime.block_on(TokenBench::setup(n));
    let client = runtime.block_on(bench.client(8));
    let workloads = token_workloads(
        &client,
        Arc::new(bench.tokens.clone()),
        Arc::new(bench.hashes.clone()),
    );
    bench_workloads(c, &runtime, &format!("tokens_{n}"), &workloads, &[1, 8]);
    drop(bench);
}

criterion_group!(tokens, benches);
criterion_main!(tokens);
