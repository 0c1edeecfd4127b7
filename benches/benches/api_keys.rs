//! Criterion benchmarks of API key validation through auth_client, in the shapes the load run
//! measures (1M keys across 200k organizations; one organization holding 10k keys; 10k
//! organizations), beside `SELECT 1`, the plain `@>` query on a `jsonb_path_ops` GIN index and
//! fetch-all-and-scan, one caller and eight. `AUTH_PG_BENCH_ORGS` sets the organizations of five
//! keys (default 200 000).
//!
//! `cargo bench -p auth_pg_benches --bench api_keys` (scripts/bench.sh installs what it needs).

use auth_pg_benches::api_keys::{ApiKeyBench, workloads};
use auth_pg_benches::criterion_groups::{bench_workloads, runtime};
use criterion::{Criterion, criterion_group, criterion_main};

fn benches(c: &mut Criterion) {
    let runtime = runtime();
    let bench = runtime.block_on(ApiKeyBench::setup());
    let large = runtime.block_on(bench.client_large(8));
    let small = runtime.block_on(bench.client_small(8));
    let workloads = workloads(&bench, &large, &small);
    bench_workloads(c, &runtime, "api_keys", &workloads, &[1, 8]);
    drop(bench);
}

criterion_group!(api_keys, benches);
criterion_main!(api_keys);
