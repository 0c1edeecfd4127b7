//! `#[pg_test]` tests: each runs inside a transaction of a throwaway cluster, as superuser.
//! Privilege checks run as non-superusers in the SQL regression tests and the end-to-end tests.

use pgrx::prelude::*;
use pgrx::{PgSqlErrorCode, Spi};

mod api_keys;
mod arguments;
mod arrays;
mod jsonb;
mod jwt;
mod packed;
mod permissions;
mod rows;
mod sessions;
mod tokens;

/// The SQLSTATE `sql` raises, or None when it succeeds. Runs `sql` in a subtransaction, as a
/// PL/pgSQL exception block does, so that a failure leaves the test's transaction usable.
pub(crate) fn sqlstate_of(sql: &str) -> Option<PgSqlErrorCode> {
    error_of(sql).map(|error| error.code)
}

/// What an ERROR said.
#[derive(Debug)]
pub(crate) struct RaisedError {
    pub(crate) code: PgSqlErrorCode,
    pub(crate) message: String,
    pub(crate) detail: Option<String>,
    pub(crate) hint: Option<String>,
}

/// The ERROR `sql` raises, or None when it succeeds; see [`sqlstate_of`].
pub(crate) fn error_of(sql: &str) -> Option<RaisedError> {
    error_in(|| Spi::run(sql).expect("SPI"))
}

/// The ERROR `work` raises, or None when it returns; run as [`sqlstate_of`] runs SQL.
pub(crate) fn error_in(work: impl FnOnce() + std::panic::UnwindSafe) -> Option<RaisedError> {
    // SAFETY: the standard pattern for catching an error in C: a subtransaction begun here is
    // either released or rolled back below, and the memory context and resource owner saved
    // before it are restored after either.
    unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        let restore = move || {
            pg_sys::MemoryContextSwitchTo(context);
            pg_sys::CurrentResourceOwner = owner;
        };
        PgTryBuilder::new(|| {
            work();
            pg_sys::ReleaseCurrentSubTransaction();
            restore();
            None
        })
        .catch_others(|caught| {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
            restore();
            match caught {
                pg_sys::panic::CaughtError::PostgresError(report)
                | pg_sys::panic::CaughtError::ErrorReport(report) => Some(RaisedError {
                    code: report.sql_error_code(),
                    message: report.message().to_owned(),
                    detail: report.detail().map(str::to_owned),
                    hint: report.hint().map(str::to_owned),
                }),
                pg_sys::panic::CaughtError::RustPanic { .. } => Some(RaisedError {
                    code: PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                    message: "a Rust panic".to_owned(),
                    detail: None,
                    hint: None,
                }),
            }
        })
        .execute()
    }
}

/// Asserts that the attribute numbers the direct reads use name the expected columns of
/// `auth_pg.{table}`.
pub(crate) fn assert_columns(table: &str, expected: &[(usize, &str)]) {
    for &(attnum, name) in expected {
        let found = Spi::get_one_with_args::<String>(
            "SELECT attname::text FROM pg_attribute \
             WHERE attrelid = ('auth_pg.' || $1)::regclass AND attnum = $2 AND NOT attisdropped",
            &[table.into(), i16::try_from(attnum).expect("small").into()],
        )
        .expect("catalog");
        assert_eq!(
            found.as_deref(),
            Some(name),
            "auth_pg.{table} column {attnum}"
        );
    }
}
