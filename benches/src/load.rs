//! Load runs: each workload runs for a fixed time at each concurrency, workloads interleaved
//! over several rounds so that drift on a shared machine affects them alike; the medians of the
//! rounds are reported beside the first workload (the baseline, `SELECT 1`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Picker;
use crate::stats::{Summary, median};

type Call = dyn Fn(usize, usize) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync;

/// One thing to measure: a name for the table and a call. The call gets the caller's index and
/// a random number, and must panic if the answer is wrong.
#[derive(Clone)]
pub struct Workload {
    name: String,
    call: Arc<Call>,
}

impl Workload {
    /// A workload named `name` running `call(caller, random)`.
    pub fn new<F, Fut>(name: impl Into<String>, call: F) -> Self
    where
        F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self {
            name: name.into(),
            call: Arc::new(move |caller, random| Box::pin(call(caller, random))),
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// One call, as caller `caller` with the random number `random`.
    pub fn call(&self, caller: usize, random: usize) -> impl Future<Output = ()> + Send + 'static {
        (self.call)(caller, random)
    }

    async fn run(&self, callers: usize, duration: Duration, seed: u64) -> Summary {
        let deadline = Instant::now() + duration;
        self.run_while(callers, seed, move || Instant::now() < deadline)
            .await
    }

    /// Runs `callers` concurrent callers while `go()` holds and summarizes their calls.
    pub async fn run_while(
        &self,
        callers: usize,
        seed: u64,
        go: impl Fn() -> bool + Clone + Send + 'static,
    ) -> Summary {
        let start = Instant::now();
        let tasks: Vec<_> = (0..callers)
            .map(|caller| {
                let (call, go) = (self.call.clone(), go.clone());
                tokio::spawn(async move {
                    let mut picker = Picker::new(seed * 1000 + caller as u64);
                    let mut latencies = Vec::with_capacity(100_000);
                    while go() {
                        let random = picker.below(usize::MAX);
                        let begin = Instant::now();
                        call(caller, random).await;
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
}

/// How long and how wide to run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Seconds per workload per round.
    pub seconds: u64,
    /// Rounds.
    pub rounds: usize,
    /// Concurrencies to measure.
    pub callers: Vec<usize>,
}

impl Plan {
    /// Reads `--seconds N`, `--rounds N`, `--callers 1,8` from the command line; any other
    /// argument is returned for the caller to interpret.
    pub fn from_args() -> (Self, Vec<String>) {
        let mut plan = Self {
            seconds: 10,
            rounds: 3,
            callers: vec![1, 8],
        };
        let mut rest = Vec::new();
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().expect("a value after the flag");
            match arg.as_str() {
                "--seconds" => plan.seconds = value().parse().expect("seconds"),
                "--rounds" => plan.rounds = value().parse().expect("rounds"),
                "--callers" => {
                    plan.callers = value()
                        .split(',')
                        .map(|c| c.parse().expect("callers"))
                        .collect()
                }
                _ => rest.push(arg),
            }
        }
        (plan, rest)
    }
}

/// Runs every workload of `workloads` at every concurrency of `plan`, interleaved, and prints
/// a Markdown table: calls per second, ratio to the first workload, p50 and p99.
pub async fn run_and_report(workloads: &[Workload], plan: &Plan) {
    let mut results: Vec<Vec<Vec<Summary>>> =
        vec![vec![Vec::new(); workloads.len()]; plan.callers.len()];
    for round in 0..plan.rounds {
        for (c, &callers) in plan.callers.iter().enumerate() {
            for (w, workload) in workloads.iter().enumerate() {
                let summary = workload
                    .run(callers, Duration::from_secs(plan.seconds), round as u64)
                    .await;
                eprintln!(
                    "round {round}: {:<52} {callers} callers: {:>9.0}/s p50 {:>8.1} µs p99 {:>8.1} µs",
                    workload.name(),
                    summary.per_second,
                    summary.p50.as_secs_f64() * 1e6,
                    summary.p99.as_secs_f64() * 1e6
                );
                results[c][w].push(summary);
            }
        }
    }
    println!(
        "| check | callers | calls/s | × `{}` | p50 | p99 |",
        workloads[0].name()
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (c, &callers) in plan.callers.iter().enumerate() {
        let rate = |w: usize| {
            let mut rates: Vec<f64> = results[c][w].iter().map(|s| s.per_second).collect();
            median(&mut rates)
        };
        let floor = rate(0);
        for (w, workload) in workloads.iter().enumerate() {
            let micros = |f: fn(&Summary) -> Duration| {
                let mut v: Vec<f64> = results[c][w]
                    .iter()
                    .map(|s| f(s).as_secs_f64() * 1e6)
                    .collect();
                median(&mut v)
            };
            println!(
                "| {} | {callers} | {:.0} | {:.3} | {} | {} |",
                workload.name(),
                rate(w),
                rate(w) / floor,
                format_micros(micros(|s| s.p50)),
                format_micros(micros(|s| s.p99)),
            );
        }
    }
}

fn format_micros(micros: f64) -> String {
    if micros >= 10_000.0 {
        format!("{:.1} ms", micros / 1000.0)
    } else {
        format!("{micros:.0} µs")
    }
}

/// A line describing the machine, for the report.
pub fn machine() -> String {
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
