//! The maintenance worker: one background worker, started when auth_pg is preloaded, that runs
//! auth_pg's periodic work in one database (`auth_pg.maintenance_database`): flushing the API
//! keys' last-use times every `auth_pg.maintenance_interval`, and deleting expired sessions
//! every `auth_pg.cleanup_interval`.
//!
//! Everything it does is also a function, so databases other than the one it serves can run
//! the same work with pg_cron. An ERROR ends the worker; the postmaster starts it again after
//! ten seconds.

use std::time::{Duration, Instant};

use pgrx::Spi;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::prelude::*;

use crate::gucs;

/// Rows deleted per cleanup transaction: small enough that each commits quickly.
const CLEANUP_BATCH: i32 = 10_000;

/// Registers the worker; called from `_PG_init` while preloading.
pub(crate) fn register() {
    BackgroundWorkerBuilder::new("auth_pg maintenance")
        .set_type("auth_pg maintenance")
        .set_library("auth_pg")
        .set_function("auth_pg_maintenance_main")
        .enable_spi_access()
        .set_restart_time(Some(Duration::from_secs(10)))
        .load();
}

/// One periodic job: when it last ran and how often it should.
struct Job {
    last: Instant,
    every: fn() -> Duration,
}

impl Job {
    /// How long until it is due; `None` when its interval is zero (turned off).
    fn due_in(&self, now: Instant) -> Option<Duration> {
        let every = (self.every)();
        (!every.is_zero()).then(|| (self.last + every).saturating_duration_since(now))
    }
}

/// The worker's entry point.
///
/// # Safety
///
/// Called by the postmaster only, in a new background worker process.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn auth_pg_maintenance_main(_argument: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = gucs::maintenance_database();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    log!("auth_pg maintenance worker started in database {database:?}");

    let start = Instant::now();
    let mut flush = Job {
        last: start,
        every: gucs::maintenance_interval,
    };
    let mut cleanup = Job {
        last: start,
        every: gucs::cleanup_interval,
    };
    loop {
        let now = Instant::now();
        // With both jobs off, look at the settings again every minute.
        let wait = [flush.due_in(now), cleanup.due_in(now)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(Duration::from_secs(60));
        if !wait.is_zero() && !BackgroundWorker::wait_latch(Some(wait)) {
            break;
        }
        if stop_requested() {
            break;
        }
        if BackgroundWorker::sighup_received() {
            // SAFETY: the documented way for a background worker to apply a reload.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        let now = Instant::now();
        if flush.due_in(now).is_some_and(|d| d.is_zero()) {
            flush.last = now;
            flush_api_key_usage();
        }
        if cleanup.due_in(now).is_some_and(|d| d.is_zero()) {
            cleanup.last = now;
            cleanup_sessions();
        }
    }
    log!("auth_pg maintenance worker stopped");
}

/// Whether the worker was asked to stop (SIGTERM). Unlike pgrx's `sigterm_received`, this
/// reads the flag PostgreSQL's own loops read and leaves it set, so a request seen inside a job
/// still stops the main loop.
fn stop_requested() -> bool {
    // SAFETY: a sig_atomic_t that pgrx's SIGTERM handler sets and nothing in this process
    // clears; a volatile read of it is what the C code does.
    unsafe { (&raw const pg_sys::ShutdownRequestPending).read_volatile() != 0 }
}

fn extension_installed() -> bool {
    Spi::get_one::<bool>(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'auth_pg')",
    )
    .ok()
    .flatten()
    .unwrap_or(false)
}

fn flush_api_key_usage() {
    BackgroundWorker::transaction(|| {
        if !extension_installed() {
            return;
        }
        let flushed = Spi::get_one::<i64>("SELECT auth_pg.flush_api_key_usage()").unwrap_or(None);
        if let Some(flushed) = flushed.filter(|&n| n > 0) {
            debug1!("auth_pg maintenance: recorded last use of {flushed} API keys");
        }
    });
}

/// Deletes expired sessions, one transaction per batch, until a batch comes back short or the
/// worker is asked to stop.
fn cleanup_sessions() {
    let mut total = 0;
    loop {
        let deleted = BackgroundWorker::transaction(|| {
            if !extension_installed() {
                return 0;
            }
            Spi::get_one_with_args::<i64>(
                "SELECT auth_pg.cleanup_expired_sessions($1)",
                &[CLEANUP_BATCH.into()],
            )
            .ok()
            .flatten()
            .unwrap_or(0)
        });
        total += deleted;
        if deleted < i64::from(CLEANUP_BATCH) || stop_requested() {
            break;
        }
        pgrx::check_for_interrupts!();
    }
    if total > 0 {
        debug1!("auth_pg maintenance: deleted {total} expired sessions");
    }
}
