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

use auth_core::Invalidation;
use pgrx::prelude::*;

use crate::audit::{self, AuditEvent};
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
