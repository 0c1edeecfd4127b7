//! The audit trail: administrative acts appended to `auth_pg.audit_events`.
//!
//! SECURITY: callers pass ids and counts only; nothing here ever receives a credential or hash.

use pgrx::datum::DatumWithOid;
use pgrx::{Spi, pg_sys};

use crate::jsonb::Jsonb;

/// One administrative act.
pub(crate) struct AuditEvent<'a> {
    /// What happened, as `noun.verb`: `token.issue`, `token.revoke`, `user_tokens.revoke`.
    pub action: &'static str,
    pub user_id: Option<&'a str>,
    pub org_id: Option<&'a str>,
    pub subject_id: Option<String>,
    pub detail: serde_json::Value,
}

/// The name of a role, by OID; empty if it has been dropped.
fn role_name(oid: pg_sys::Oid) -> String {
    // SAFETY: GetUserNameFromId with noerr = true returns NULL or a palloc'd C string.
    unsafe {
        let name = pg_sys::GetUserNameFromId(oid, true);
        if name.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(name)
                .to_string_lossy()
                .into_owned()
        }
    }
}

/// Appends `event`, recording the acting role (the one a `SECURITY DEFINER` function was called
/// by, not its owner) and the session's login role.
pub(crate) fn record(event: AuditEvent<'_>) {
    // SAFETY: plain reads of the backend's current user ids.
    let (actor, session_role) = unsafe {
        (
            role_name(pg_sys::GetOuterUserId()),
            role_name(pg_sys::GetSessionUserId()),
        )
    };
    let args: [DatumWithOid; 7] = [
        event.action.into(),
        actor.into(),
        session_role.into(),
        event.user_id.into(),
        event.org_id.into(),
        event.subject_id.into(),
        Jsonb(event.detail).into(),
    ];
    Spi::run_with_args(
        "INSERT INTO auth_pg.audit_events \
             (action, actor, session_role, user_id, org_id, subject_id, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &args,
    )
    .expect("inserting an audit event");
}
