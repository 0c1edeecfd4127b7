//! The maintenance worker: one background worker, started when auth_pg is preloaded, that runs
//! auth_pg's periodic work in one database (`auth_pg.maintenance_database`) every
//! `auth_pg.maintenance_interval`: today, flushing the API keys' last-use times.
//!
//! Everything it does is also a function, so databases other than the one it serves can run
//! the same work with pg_cron. An ERROR ends the worker; the postmaster starts it again after
//! ten seconds.

use std::time::Duration;

use pgrx::Spi;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::prelude::*;

use crate::gucs;

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

    loop {
        let interval = gucs::maintenance_interval();
        // An interval of zero pauses the work; look again at the setting every minute.
        let wait = if interval.is_zero() {
            Duration::from_secs(60)
        } else {
            interval
        };
        if !BackgroundWorker::wait_latch(Some(wait)) {
            break;
        }
        if BackgroundWorker::sighup_received() {
            // SAFETY: the documented way for a background worker to apply a reload.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        if gucs::maintenance_interval().is_zero() {
            continue;
        }
        BackgroundWorker::transaction(|| {
            let installed = Spi::get_one::<bool>(
                "SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'auth_pg')",
            )
            .ok()
            .flatten()
            .unwrap_or(false);
            if installed {
                let flushed =
                    Spi::get_one::<i64>("SELECT auth_pg.flush_api_key_usage()").unwrap_or(None);
                if let Some(flushed) = flushed.filter(|&n| n > 0) {
                    debug1!("auth_pg maintenance: recorded last use of {flushed} API keys");
                }
            }
        });
    }
    log!("auth_pg maintenance worker stopped");
}
