//! Criterion benchmarks of sessions through auth_client, beside `SELECT 1` and the plain SQL a
//! user would write (a read, and a read plus `UPDATE ... SET last_activity = now()`), with
//! 1 000 000 sessions stored (`AUTH_PG_BENCH_SESSIONS` to change), one caller and eight.
//!
//! `cargo bench -p auth_pg_benches --bench sessions` (scripts/bench.sh installs what it needs).

use auth_pg_benches::criterion_groups::{bench_workloads, runtime};
use auth_pg_benches::sessions::{SessionBench, session_count, workloads};
use criterion::{Criterion, criterion_group, criterion_main};

fn benches(c: &mut Criterion) {
    let runtime = runtime();
    let n = session_count();
    let bench = runtime.block_on(SessionBench::setup(n, 0));
    let client = runtime.block_on(bench.client(8));
    let workloads = workloads(&client, &bench);
    bench_workloads(c, &runtime, &format!("sessions_{n}"), &workloads, &[1, 8]);
    drop(bench);
}

criterion_group!(sessions, benches);
criterion_main!(sessions);
