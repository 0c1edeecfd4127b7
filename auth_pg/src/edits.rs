//! Changes made by hand to auth_pg's tables (by their owner, not through auth_pg's functions):
//! announced, so that no cache keeps serving what the edit changed, and audited. The statement
//! trigger of the tokens and sessions tables lives here; [`announce`] is shared with the one of
//! `auth_pg.jwt_keys`.
//!
//! auth_pg's own functions announce each change precisely (`token_revoked`, ...) and raise
//! [`WRITING`] while they write, so the statement trigger stays quiet for them; a change by hand
//! cannot be described row by row without reading every row it touched, so it is announced as
//! `tokens_changed` or `sessions_changed`: forget every answer of that kind.

use std::cell::Cell;
use std::ffi::CStr;

use auth_core::Invalidation;
use pgrx::datum::TryFromDatumError;
use pgrx::prelude::*;

use crate::audit::{self, AuditEvent};
use crate::error::AuthPgError;
use crate::fmgr::function_info_v1;
use crate::notify;
use crate::storage::{self, Rel};

thread_local! {
    /// Raised while a function of auth_pg writes `auth_pg.tokens` or `auth_pg.sessions`,
    /// having announced and audited the change itself.
    pub(crate) static WRITING: Cell<u32> = const { Cell::new(0) };
}

function_info_v1!(pg_finfo_auth_pg_credentials_edited);

/// The statement trigger on `auth_pg.tokens` and `auth_pg.sessions` (tokens.sql, sessions.sql),
/// and the TRUNCATE trigger on `auth_pg.organizations` and `auth_pg.api_key_lookup`
/// (api_keys.sql).
///
/// # Safety
///
/// Called by the trigger manager only.
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_pg_credentials_edited(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    if WRITING.get() != 0 {
        return pg_sys::Datum::from(0);
    }
    // SAFETY: the trigger manager passes a TriggerData in fcinfo->context.
    let trigger = unsafe {
        PgTrigger::from_fcinfo(fcinfo.as_ref().expect("fcinfo")).expect("called as a trigger")
    };
    let relation = trigger.relid().expect("a trigger has a relation");
    if relation == storage::relation_oid(Rel::Sessions) {
        announce(&trigger, &Invalidation::SessionsChanged, "sessions.edit");
    } else if relation == storage::relation_oid(Rel::Tokens) {
        announce(&trigger, &Invalidation::TokensChanged, "tokens.edit");
    } else {
        // A TRUNCATE of auth_pg.organizations or auth_pg.api_key_lookup (api_keys.sql); row
        // changes there are announced per organization by the row trigger.
        announce(&trigger, &Invalidation::ApiKeysChanged, "api_keys.edit");
    }
    pg_sys::Datum::from(0)
}

/// Announces a change made by hand that `trigger` (a statement trigger) saw, as `invalidation`,
/// and audits it as `action`, with the kind of statement.
pub(crate) fn announce(trigger: &PgTrigger<'_>, invalidation: &Invalidation, action: &'static str) {
    let event = trigger.event();
    let operation = if event.fired_by_insert() {
        "insert"
    } else if event.fired_by_update() {
        "update"
    } else if event.fired_by_delete() {
        "delete"
    } else {
        "truncate"
    };
    notify::send(invalidation);
    audit::record(AuditEvent {
        action,
        user_id: None,
        org_id: None,
        subject_id: None,
        detail: serde_json::json!({ "operation": operation }),
    });
}

// ---------------------------------------------------------------------------------------------
// Rows written by hand: checked before PostgreSQL's constraints
// ---------------------------------------------------------------------------------------------

/// A CHECK constraint of a table whose rows hold hashes or key material, tested again by
/// [`check_new_row`] so that a violation is reported without the row.
struct RowRule {
    /// The constraint's name in the table's SQL.
    constraint: &'static str,
    test: RowTest,
    /// What the constraint asks, for the error's hint.
    rule: &'static str,
}

/// What a [`RowRule`] asks of one or two columns. As in SQL, a NULL passes (NOT NULL is
/// checked on its own).
enum RowTest {
    /// A bytea column holds 32 bytes, a BLAKE3 hash.
    Blake3(&'static str),
    /// A text column is not the empty string.
    NotEmpty(&'static str),
    /// The first timestamptz column is no later than the second.
    NotAfter(&'static str, &'static str),
}

impl RowTest {
    /// Whether the rule holds for `row`; an error when the row lacks the rule's columns (the
    /// trigger attached to a table it was not written for).
    fn holds(&self, row: &PgHeapTuple<'_, AllocatedByPostgres>) -> Result<bool, TryFromDatumError> {
        Ok(match *self {
            Self::Blake3(column) => row
                .get_by_name::<&[u8]>(column)?
                .is_none_or(|hash| hash.len() == 32),
            Self::NotEmpty(column) => row
                .get_by_name::<&str>(column)?
                .is_none_or(|text| !text.is_empty()),
            Self::NotAfter(earlier, later) => {
                let time = |column| {
                    row.get_by_name::<TimestampWithTimeZone>(column)
                        .map(|time| time.map(TimestampWithTimeZone::into_inner))
                };
                match (time(earlier)?, time(later)?) {
                    (Some(earlier), Some(later)) => earlier <= later,
                    _ => true,
                }
            }
        })
    }
}

/// The CHECK constraints of each table [`check_new_row`] guards (tokens.sql, sessions.sql,
/// api_keys.sql), as written there. `auth_pg.jwt_keys`' are checked by its own trigger, with
/// the errors `add_jwt_key` gives.
fn row_rules(table: &str) -> &'static [RowRule] {
    const HASH: &str = "The hash is the 32-byte BLAKE3 hash of the credential";
    const USER_ID: &str = "user_id is your application's id for the user, never empty";
    match table {
        "tokens" => &[
            RowRule {
                constraint: "tokens_hash_is_blake3",
                test: RowTest::Blake3("token_hash"),
                rule: HASH,
            },
            RowRule {
                constraint: "tokens_user_id_not_empty",
                test: RowTest::NotEmpty("user_id"),
                rule: USER_ID,
            },
        ],
        "sessions" => &[
            RowRule {
                constraint: "sessions_hash_is_blake3",
                test: RowTest::Blake3("session_hash"),
                rule: HASH,
            },
            RowRule {
                constraint: "sessions_user_id_not_empty",
                test: RowTest::NotEmpty("user_id"),
                rule: USER_ID,
            },
            RowRule {
                constraint: "sessions_idle_within_absolute",
                test: RowTest::NotAfter("idle_expires_at", "absolute_expires_at"),
                rule: "idle_expires_at is never later than absolute_expires_at",
            },
        ],
        "api_key_lookup" => &[RowRule {
            constraint: "api_key_lookup_hash_is_blake3",
            test: RowTest::Blake3("key_hash"),
            rule: HASH,
        }],
        "organizations" => &[RowRule {
            constraint: "organizations_org_id_not_empty",
            test: RowTest::NotEmpty("org_id"),
            rule: "org_id is your application's id for the organization, never empty",
        }],
        _ => &[],
    }
}

/// Refuses the row `trigger` (a BEFORE row trigger on INSERT or UPDATE) is about to write if
/// it has NULL in a NOT NULL column or breaks a CHECK constraint of its table. PostgreSQL would
/// refuse it too, a moment later, but with the whole row in the error's DETAIL (and so in the
/// server log): hashes of credentials, or a JWT key's secret.
/// Answers the row, to be returned to the trigger manager.
pub(crate) fn check_new_row<'a>(
    trigger: &'a PgTrigger<'a>,
) -> PgHeapTuple<'a, AllocatedByPostgres> {
    let Some(row) = trigger.new() else {
        AuthPgError::TriggerMisused.raise("auth_pg row check");
    };
    without_error_context(|| check_row_rules(trigger, &row));
    row
}

/// Runs `check` with no error context callbacks, so that an error it raises carries no CONTEXT
/// line: during a COPY (a restore, a bulk load), PostgreSQL's callback would quote the input
/// line, hashes or a JWT secret included. The callbacks are back when `check` returns; when it
/// raises, PostgreSQL's error recovery puts them back (deliberately no drop guard: it would
/// restore them before the error is reported).
pub(crate) fn without_error_context<R>(check: impl FnOnce() -> R) -> R {
    // SAFETY: error_context_stack is the backend's own list head; clearing it for a moment only
    // keeps callbacks from running, and it is restored below or by error recovery.
    let saved = unsafe {
        let saved = pg_sys::error_context_stack;
        pg_sys::error_context_stack = std::ptr::null_mut();
        saved
    };
    let result = check();
    // SAFETY: as above.
    unsafe { pg_sys::error_context_stack = saved };
    result
}

fn check_row_rules(trigger: &PgTrigger<'_>, row: &PgHeapTuple<'_, AllocatedByPostgres>) {
    const FUNCTION: &str = "auth_pg row check";
    let data = trigger.trigger_data();
    let tuple = if trigger.event().fired_by_update() {
        data.tg_newtuple
    } else {
        data.tg_trigtuple
    };
    // SAFETY: the trigger manager's relation is open and its tuple matches its descriptor.
    let (table, null_column) = unsafe {
        let relation = data.tg_relation;
        let desc = (*relation).rd_att;
        let table = CStr::from_ptr((*(*relation).rd_rel).relname.data.as_ptr());
        let null_column = row
            .attributes()
            .find(|&(number, attribute)| {
                attribute.attnotnull
                    && !attribute.attisdropped
                    && pg_sys::heap_attisnull(tuple, number.get() as i32, desc)
            })
            .map(|(_, attribute)| CStr::from_ptr(attribute.attname.data.as_ptr()));
        (table.to_string_lossy(), null_column)
    };
    if let Some(column) = null_column {
        AuthPgError::RowNull {
            table: table.into_owned(),
            column: column.to_string_lossy().into_owned(),
        }
        .raise(FUNCTION);
    }
    let broken = row_rules(&table).iter().find(|rule| {
        !rule
            .test
            .holds(row)
            .unwrap_or_else(|_| AuthPgError::TriggerMisused.raise(FUNCTION))
    });
    if let Some(broken) = broken {
        AuthPgError::RowCheck {
            table: table.into_owned(),
            constraint: broken.constraint,
            rule: broken.rule,
        }
        .raise(FUNCTION);
    }
}

function_info_v1!(pg_finfo_auth_pg_check_row);

/// The BEFORE row trigger on `auth_pg.tokens`, `auth_pg.sessions`, `auth_pg.organizations` and
/// `auth_pg.api_key_lookup`: see [`check_new_row`].
///
/// # Safety
///
/// Called by the trigger manager only.
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_pg_check_row(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: the trigger manager passes a TriggerData in fcinfo->context.
    let trigger = unsafe { PgTrigger::from_fcinfo(fcinfo.as_ref().expect("fcinfo")) }
        .expect("called as a trigger");
    check_new_row(&trigger)
        .into_trigger_datum()
        .expect("a trigger tuple is never NULL")
}
