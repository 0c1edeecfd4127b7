//! auth_pg: the hot paths of authentication, inside PostgreSQL.
//!
//! SQL is the public interface; this crate is the thin layer between it and the pure logic in
//! `auth_core`. Each module owns one capability (`tokens`, `api_keys`, `sessions`,
//! `permissions`, `jwt`) or one piece of plumbing (`gucs`, `error`, `fmgr`, `check`, `hash_key`,
//! `storage`, `usage`, `worker`, `notify`, `audit`).
//!
//! Functions that read or write the extension's tables through SQL are `SECURITY DEFINER` with
//! `search_path` pinned to `pg_catalog, pg_temp`; every name they use in SQL is
//! schema-qualified, operators included. The read-only checks read their index directly, by
//! OID, which checks no table privilege: they run as their caller, gated by `EXECUTE` alone.
//! Nothing a caller puts on its `search_path` or in `pg_temp` can change what either does.

use pgrx::prelude::*;

mod api_keys;
mod array;
mod audit;
mod check;
mod edits;
mod error;
mod fmgr;
mod gucs;
mod hash_key;
mod jsonb;
mod jwt;
mod notify;
mod packed;
mod permissions;
mod raw;
mod sessions;
mod storage;
mod tokens;
mod usage;
mod worker;
mod writing;

#[cfg(any(test, feature = "pg_test"))]
mod tests;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!(
    "../../sql/schema/bootstrap.sql",
    name = "bootstrap",
    bootstrap
);
extension_sql_file!("../../sql/schema/tokens.sql", name = "tokens_schema");
// api_keys.sql and sessions.sql use the trigger function tokens.sql creates.
extension_sql_file!(
    "../../sql/schema/api_keys.sql",
    name = "api_keys_schema",
    requires = ["tokens_schema"]
);
extension_sql_file!(
    "../../sql/schema/sessions.sql",
    name = "sessions_schema",
    requires = ["tokens_schema"]
);
extension_sql_file!(
    "../../sql/schema/permissions.sql",
    name = "permissions_schema"
);
extension_sql_file!("../../sql/schema/jwt.sql", name = "jwt_schema");
extension_sql_file!(
    "../../sql/schema/privileges.sql",
    name = "privileges",
    finalize
);

/// Called once when a backend loads the library.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    gucs::init();
    // SAFETY: a plain read of a flag PostgreSQL sets while it loads preloaded libraries.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        usage::init();
        worker::register();
    }
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    /// One-off setup before the test cluster starts.
    pub fn setup(_options: Vec<&str>) {}

    /// Settings for the test cluster.
    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'auth_pg'"]
    }
}
