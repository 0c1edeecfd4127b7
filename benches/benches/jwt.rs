//! Criterion benchmarks of `jwt_verify` through auth_client, beside `SELECT 1` and the HMAC
//! check written in plain SQL with pgcrypto (pgjwt's approach): HS256, EdDSA for tokens never
//! seen before and for a repeated token (the verified-token cache), RS256 and ES256; one
//! caller and eight.
//!
//! `cargo bench -p auth_pg_benches --bench jwt` (scripts/bench.sh installs what it needs).

use auth_pg_benches::criterion_groups::{bench_workloads, runtime};
use auth_pg_benches::jwt::{JwtBench, workloads};
use criterion::{Criterion, criterion_group, criterion_main};

fn benches(c: &mut Criterion) {
    let runtime = runtime();
    let bench = runtime.block_on(JwtBench::setup());
    let client = runtime.block_on(bench.client(8));
    let workloads = workloads(&client, &bench.pools);
    bench_workloads(c, &runtime, "jwt", &workloads, &[1, 8]);
    drop(bench);
}

criterion_group!(jwt, benches);
criterion_main!(jwt);
