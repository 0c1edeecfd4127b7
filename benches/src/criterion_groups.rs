//! Criterion groups over [`Workload`]s, so that the criterion benches measure exactly what the
//! load run measures: one group per concurrency, one benchmark per workload.
//!
//! With several callers, criterion's time per iteration is the inverse of the throughput of
//! all callers together, so the groups read alike: lower is better, and the ratio of two
//! workloads' times is the inverse of the ratio of their throughputs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use tokio::runtime::Runtime;

use crate::Picker;
use crate::load::Workload;

/// A runtime like the load run's: two worker threads, as many as the machine has cores.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Benchmarks every workload of `workloads` with each number of `callers`, in groups named
/// `{prefix}/{n}_caller(s)`. Workloads slower than a millisecond a call get flat sampling so
/// that a run stays within minutes.
pub fn bench_workloads(
    c: &mut Criterion,
    runtime: &Runtime,
    prefix: &str,
    workloads: &[Workload],
    callers: &[usize],
) {
    for &n in callers {
        let suffix = if n == 1 { "caller" } else { "callers" };
        let mut group = c.benchmark_group(format!("{prefix}/{n}_{suffix}"));
        group
            .measurement_time(Duration::from_secs(6))
            .warm_up_time(Duration::from_secs(1))
            .sample_size(30)
            .sampling_mode(SamplingMode::Flat);
        for workload in workloads {
            group.bench_function(workload.name(), |b| {
                b.to_async(runtime)
                    .iter_custom(|iters| run_callers(workload.clone(), n, iters))
            });
        }
        group.finish();
    }
}

/// Seeds for the callers' pickers, never the same twice in a process: with flat sampling every
/// sample has the same number of iterations, so a seed made from it would replay the same
/// requests in every sample (and a cache, or a touch that writes once a minute, would see
/// only repeats after the first).
static RUNS: AtomicU64 = AtomicU64::new(0);

/// Runs `iters` calls of `workload` spread over `callers` concurrent callers and returns the
/// wall time scaled to exactly `iters` calls.
async fn run_callers(workload: Workload, callers: usize, iters: u64) -> Duration {
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let per_caller = iters.div_ceil(callers as u64);
    let start = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|caller| {
            let workload = workload.clone();
            tokio::spawn(async move {
                let mut picker = Picker::new(run * 1_000 + caller as u64);
                for _ in 0..per_caller {
                    workload.call(caller, picker.below(usize::MAX)).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("caller");
    }
    start
        .elapsed()
        .mul_f64(iters as f64 / (per_caller * callers as u64) as f64)
}
