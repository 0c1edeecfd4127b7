//! Sessions: an idle deadline that slides with activity, an absolute one that does not, a
//! per-user limit, revocation and cleanup.
//!
//! Checking a session (`validate_session`) writes nothing. Touching it (`touch_session`) is
//! the same read, and a write only when the stored activity time is older than
//! `auth_pg.session_touch_interval`: a busy session costs one write a minute, not one a
//! request. The write changes only columns no index covers, so it is a HOT update.

use auth_core::input;
use auth_core::{CredentialKind, Invalidation};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::SpiError;
use pgrx::{IntoDatum, Spi};

use crate::audit::{self, AuditEvent};
use crate::check::{self, Answer, Checked, Form, Status, statement_time};
use crate::error::{AuthPgError, OrRaise};
use crate::fmgr::function_info_v1;
use crate::gucs::{self, SessionLimitAction};
use crate::jsonb::Jsonb;
use crate::packed::Field;
use crate::storage::{self, KeyLookup, Rel, Row};
use crate::tokens::{check_landing, check_metadata, generate, interval_parts, later, write_one};
use crate::writing::Guard;
use crate::{edits, hash_key, notify};

/// Attribute numbers of `auth_pg.sessions`, checked against the catalog by a test.
#[cfg_attr(not(any(test, feature = "pg_test")), allow(dead_code))]
pub(crate) mod col {
    pub(crate) const SESSION_ID: usize = 1;
    pub(crate) const SESSION_HASH: usize = 2;
    pub(crate) const USER_ID: usize = 3;
    pub(crate) const METADATA: usize = 4;
    pub(crate) const IDLE_TIMEOUT: usize = 5;
    pub(crate) const CREATED_AT: usize = 6;
    pub(crate) const LAST_ACTIVITY_AT: usize = 7;
    pub(crate) const IDLE_EXPIRES_AT: usize = 8;
    pub(crate) const ABSOLUTE_EXPIRES_AT: usize = 9;
    pub(crate) const REVOKED_AT: usize = 10;
}

/// The longest session id accepted as an argument (ids auth_pg makes are 21 bytes).
const MAX_SESSION_ID_BYTES: usize = 128;

/// Sessions are checked by hash in `auth_pg.sessions`.
pub(crate) struct Sessions;

impl Checked<5> for Sessions {
    const KIND: CredentialKind = CredentialKind::Session;
    const TABLE: Rel = Rel::Sessions;
    const INDEX: Rel = Rel::SessionsHashIndex;
    const HASH_COLUMN: usize = col::SESSION_HASH;

    fn judge(row: &Row<'_>, now: pg_sys::TimestampTz) -> Status {
        let passed = |attno| row.timestamptz(attno).is_none_or(|at| at <= now);
        if !row.is_null(col::REVOKED_AT) {
            Status::Revoked
        } else if passed(col::ABSOLUTE_EXPIRES_AT) {
            Status::AbsoluteExpired
        } else if passed(col::IDLE_EXPIRES_AT) {
            Status::IdleExpired
        } else {
            Status::Valid
        }
    }

    const PACKED: [Field; 5] = [
        Field::Text,
        Field::Text,
        Field::TimestampTz,
        Field::TimestampTz,
        Field::Jsonb,
    ];

    fn fields(row: &Row<'_>) -> [Option<pg_sys::Datum>; 5] {
        [
            row.datum(col::USER_ID),
            row.datum(col::SESSION_ID),
            row.datum(col::IDLE_EXPIRES_AT),
            row.datum(col::ABSOLUTE_EXPIRES_AT),
            row.datum(col::METADATA),
        ]
    }
}

function_info_v1!(pg_finfo_auth_pg_validate_session);

/// `auth_pg.validate_session(token text) RETURNS auth_pg.session_validation` (sessions.sql).
///
/// # Safety
///
/// Called by fmgr only, with the argument and result declared in sessions.sql.
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_pg_validate_session(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: fmgr calls this as declared in sessions.sql.
    unsafe { check::check_single::<Sessions, 5>(fcinfo, Form::Row) }
}

function_info_v1!(pg_finfo_auth_pg_validate_session_packed);

/// `auth_pg.validate_session_packed(token text) RETURNS bytea`: `validate_session`'s answer in
/// the packed form (see packed.rs).
///
/// # Safety
///
/// Called by fmgr only, with the argument and result declared in sessions.sql.
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_pg_validate_session_packed(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: fmgr calls this as declared in sessions.sql.
    unsafe { check::check_single::<Sessions, 5>(fcinfo, Form::Packed) }
}

function_info_v1!(pg_finfo_auth_pg_touch_session);

/// `auth_pg.touch_session(token text) RETURNS auth_pg.session_validation` (sessions.sql).
///
/// The same check as `validate_session`; for a valid session whose last recorded activity is
/// older than `auth_pg.session_touch_interval`, it also records the statement's time as the
/// last activity and moves the idle deadline to that time plus the idle timeout, never past
/// the absolute deadline.
///
/// # Safety
///
/// Called by fmgr only, with the argument and result declared in sessions.sql.
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_pg_touch_session(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: fmgr calls this as declared in sessions.sql.
    unsafe { touch(fcinfo, Form::Row) }
}

function_info_v1!(pg_finfo_auth_pg_touch_session_packed);

/// `auth_pg.touch_session_packed(token text) RETURNS bytea`: `touch_session` answering in the
/// packed form (see packed.rs).
///
/// # Safety
///
/// Called by fmgr only, with the argument and result declared in sessions.sql.
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_pg_touch_session_packed(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: fmgr calls this as declared in sessions.sql.
    unsafe { touch(fcinfo, Form::Packed) }
}

/// The body of both touches.
///
/// # Safety
///
/// `fcinfo` must be a live call of a function declared with one `text` argument and, for
/// `Form::Row`, the result `auth_pg.session_validation`.
unsafe fn touch(fcinfo: pg_sys::FunctionCallInfo, form: Form) -> pg_sys::Datum {
    // SAFETY: both take a NUL-terminated command name and raise the standard ERROR (25006) in
    // a read-only transaction or on a standby, where validate_session is the call to make.
    unsafe {
        pg_sys::PreventCommandIfReadOnly(c"touch_session()".as_ptr());
        pg_sys::PreventCommandDuringRecovery(c"touch_session()".as_ptr());
    }
    // SAFETY: as documented.
    let (candidate, result) = unsafe {
        (
            check::candidate_arg(fcinfo),
            Answer::of::<Sessions, 5>(fcinfo, form),
        )
    };
    let now = statement_time();
    let stale_before = now.saturating_sub(gucs::session_touch_interval_micros());

    enum Touch {
        Answered(pg_sys::Datum),
        Write { session_id: String },
    }
    let mut lookup = KeyLookup::new(Rel::Sessions, Rel::SessionsHashIndex, col::SESSION_HASH);
    let touch = check::probe::<Sessions, 5, _>(&mut lookup, candidate, now, |status, row| {
        if let (Status::Valid, Some(row)) = (status, row) {
            let recorded = row.timestamptz(col::LAST_ACTIVITY_AT).unwrap_or(0);
            let idle_expires_at = row.timestamptz(col::IDLE_EXPIRES_AT).unwrap_or(i64::MAX);
            let absolute_expires_at = row.timestamptz(col::ABSOLUTE_EXPIRES_AT).unwrap_or(0);
            if recorded < stale_before
                || half_gone(recorded, idle_expires_at, absolute_expires_at, now)
            {
                return Touch::Write {
                    session_id: row.text(col::SESSION_ID).unwrap_or_default(),
                };
            }
        }
        let answer = check::answer::<Sessions, 5>(status, row);
        Touch::Answered(result.form(answer.values(), answer.nulls()))
    });
    drop(lookup);
    match touch {
        Touch::Answered(datum) => datum,
        Touch::Write { session_id } => record_activity(&session_id, now, stale_before, &result),
    }
}

/// A session's answer fields, read through SPI: `user_id, session_id, idle_expires_at,
/// absolute_expires_at, metadata` from column `first` on.
struct SessionRow {
    status: Status,
    user_id: String,
    session_id: String,
    idle_expires_at: TimestampWithTimeZone,
    absolute_expires_at: TimestampWithTimeZone,
    metadata: Option<Jsonb>,
}

impl SessionRow {
    fn read(
        status: Status,
        row: &spi::SpiHeapTupleData<'_>,
        first: usize,
    ) -> Result<Self, SpiError> {
        Ok(Self {
            status,
            user_id: row.get(first)?.unwrap_or_default(),
            session_id: row.get(first + 1)?.unwrap_or_default(),
            idle_expires_at: row.get(first + 2)?.expect("NOT NULL column"),
            absolute_expires_at: row.get(first + 3)?.expect("NOT NULL column"),
            metadata: row.get(first + 4)?,
        })
    }

    fn form(self, result: &Answer) -> pg_sys::Datum {
        if self.status != Status::Valid {
            return status_only(self.status, result);
        }
        let datums = [
            self.status.as_str().into_datum(),
            self.user_id.into_datum(),
            self.session_id.into_datum(),
            self.idle_expires_at.into_datum(),
            self.absolute_expires_at.into_datum(),
            self.metadata.and_then(IntoDatum::into_datum),
        ];
        let values: Vec<_> = datums
            .iter()
            .map(|d| d.unwrap_or(pg_sys::Datum::from(0)))
            .collect();
        let nulls: Vec<_> = datums.iter().map(Option::is_none).collect();
        result.form(&values, &nulls)
    }
}

fn status_only(status: Status, result: &Answer) -> pg_sys::Datum {
    let answer = check::answer::<Sessions, 5>(status, None);
    result.form(answer.values(), answer.nulls())
}

/// The statements `touch_session` writes and re-reads with, prepared once per backend and kept
/// (`SPI_keepplan`): a write happens about once a minute per session, but a busy server makes
/// many, and parsing and planning them each time would cost more than running them.
struct TouchPlans {
    record: spi::OwnedPreparedStatement,
    reread: spi::OwnedPreparedStatement,
}

thread_local! {
    static TOUCH_PLANS: std::cell::OnceCell<TouchPlans> = const { std::cell::OnceCell::new() };
}

// $1 session_id, $2 the statement's time, $3 the activity time older than which a touch writes
// (see `half_gone` for the other reason to write).
// Only the two unindexed columns change: a HOT update. The conditions are checked again on the
// row's latest version if another transaction changed it meanwhile. The idle deadline never
// moves earlier: calendar arithmetic in the caller's time zone (a day across a clock change,
// an interval of mixed signs in a short month) can land the new one before the old one.
const RECORD_ACTIVITY: &str = "UPDATE auth_pg.sessions \
     SET last_activity_at = $2, \
         idle_expires_at = GREATEST(idle_expires_at, \
             LEAST($2 OPERATOR(pg_catalog.+) idle_timeout, absolute_expires_at)) \
     WHERE session_id OPERATOR(pg_catalog.=) $1 AND revoked_at IS NULL \
       AND (last_activity_at OPERATOR(pg_catalog.<) $3 \
            OR (idle_expires_at OPERATOR(pg_catalog.<) absolute_expires_at \
                AND (idle_expires_at OPERATOR(pg_catalog.-) $2) \
                    OPERATOR(pg_catalog.<) ($2 OPERATOR(pg_catalog.-) last_activity_at))) \
       AND idle_expires_at OPERATOR(pg_catalog.>) $2 \
       AND absolute_expires_at OPERATOR(pg_catalog.>) $2 \
     RETURNING user_id, session_id, idle_expires_at, absolute_expires_at, metadata";

// The latest committed state of a session that was not written (it takes the same arguments;
// $3 is not used).
const REREAD: &str = "SELECT CASE WHEN revoked_at IS NOT NULL THEN 'revoked' \
                  WHEN absolute_expires_at OPERATOR(pg_catalog.<=) $2 THEN 'absolute_expired' \
                  WHEN idle_expires_at OPERATOR(pg_catalog.<=) $2 THEN 'idle_expired' \
                  ELSE 'valid' END, \
             user_id, session_id, idle_expires_at, absolute_expires_at, metadata \
      FROM auth_pg.sessions \
      WHERE session_id OPERATOR(pg_catalog.=) $1";

/// Whether more than half of a session's idle window has passed since its activity was last
/// recorded, while a write would still move its idle deadline. A touch then writes even within
/// `auth_pg.session_touch_interval`, so a session whose idle timeout is shorter than two such
/// intervals still slides. `RECORD_ACTIVITY` states the same rule in SQL.
fn half_gone(
    recorded: pg_sys::TimestampTz,
    idle_expires_at: pg_sys::TimestampTz,
    absolute_expires_at: pg_sys::TimestampTz,
    now: pg_sys::TimestampTz,
) -> bool {
    idle_expires_at < absolute_expires_at
        && idle_expires_at.saturating_sub(now) < now.saturating_sub(recorded)
}

/// Records activity at `now` for a session found valid and stale, and forms the answer from
/// the row as written. When the row changed meanwhile (another touch wrote first, or it was
/// revoked or deleted), answers from its latest committed state instead.
fn record_activity(
    session_id: &str,
    now: pg_sys::TimestampTz,
    stale_before: pg_sys::TimestampTz,
    result: &Answer,
) -> pg_sys::Datum {
    let now = TimestampWithTimeZone::try_from(now).expect("the statement's start time is valid");
    let stale_before =
        TimestampWithTimeZone::try_from(stale_before).expect("a time before now is valid");
    let args: [DatumWithOid; 3] = [session_id.into(), now.into(), stale_before.into()];
    let _writing = Guard::new(&edits::WRITING);
    let answer = Spi::connect_mut(|client| {
        TOUCH_PLANS.with(|plans| {
            let plans = match plans.get() {
                Some(plans) => plans,
                None => {
                    let types = [
                        PgOid::BuiltIn(PgBuiltInOids::TEXTOID),
                        PgOid::BuiltIn(PgBuiltInOids::TIMESTAMPTZOID),
                        PgOid::BuiltIn(PgBuiltInOids::TIMESTAMPTZOID),
                    ];
                    let prepared = TouchPlans {
                        record: client.prepare_mut(RECORD_ACTIVITY, &types)?.keep(),
                        reread: client.prepare_mut(REREAD, &types)?.keep(),
                    };
                    plans.get_or_init(|| prepared)
                }
            };
            let written = client.update(&plans.record, Some(1), &args)?;
            if let Some(row) = written.into_iter().next() {
                return SessionRow::read(Status::Valid, &row, 1).map(Some);
            }
            // Not written: read the latest committed state (a new snapshot: this is not a
            // read-only SPI call).
            let latest = client.update(&plans.reread, Some(1), &args)?;
            let Some(row) = latest.into_iter().next() else {
                return Ok(None);
            };
            let status = match row.get::<String>(1)?.as_deref() {
                Some("valid") => Status::Valid,
                Some("revoked") => Status::Revoked,
                Some("absolute_expired") => Status::AbsoluteExpired,
                _ => Status::IdleExpired,
            };
            SessionRow::read(status, &row, 2).map(Some)
        })
    })
    .expect("SPI reports errors as ERRORs");
    match answer {
        Some(row) => row.form(result),
        None => status_only(Status::Unknown, result),
    }
}

/// Starts a session for `user_id` and returns its token, shown this once: only its hash is
/// stored. The session ends after `idle_timeout` without a touch, and after `absolute_timeout`
/// whatever happens. `metadata` holds what the caller knows (address, user agent, device).
#[pg_extern(volatile, parallel_unsafe, security_definer, requires = ["sessions_schema"])]
#[search_path(pg_catalog, pg_temp)]
fn create_session(
    user_id: Option<&str>,
    idle_timeout: Option<Interval>,
    absolute_timeout: Option<Interval>,
    metadata: default!(Option<Jsonb>, "NULL"),
) -> String {
    const FUNCTION: &str = "create_session";
    let user_id = input::check_user_id(user_id).or_raise(FUNCTION);
    input::check_session_timeouts(
        idle_timeout.as_ref().map(interval_parts),
        absolute_timeout.as_ref().map(interval_parts),
        "auth_pg.max_session_lifetime",
        gucs::max_session_lifetime_seconds(),
    )
    .or_raise(FUNCTION);
    let metadata = check_metadata(metadata, FUNCTION);

    let now = TimestampWithTimeZone::try_from(statement_time())
        .expect("the statement's start time is a valid timestamp");
    let idle = idle_timeout.expect("check_session_timeouts refuses NULL");
    let absolute = absolute_timeout.expect("check_session_timeouts refuses NULL");
    let absolute_expires_at = later(now, absolute, "absolute_timeout", FUNCTION);
    let idle_expires_at = later(now, idle, "idle_timeout", FUNCTION);
    let idle_expires_at = if idle_expires_at.into_inner() > absolute_expires_at.into_inner() {
        absolute_expires_at
    } else {
        idle_expires_at
    };
    let (setting, max_seconds) = (
        "auth_pg.max_session_lifetime",
        gucs::max_session_lifetime_seconds(),
    );
    for (argument, deadline) in [
        ("idle_timeout", idle_expires_at),
        ("absolute_timeout", absolute_expires_at),
    ] {
        check_landing(now, deadline, argument, setting, max_seconds, FUNCTION);
    }

    let limit = gucs::max_sessions_per_user();
    if limit > 0 {
        make_room(user_id, limit, now, FUNCTION);
    }

    let token = generate(CredentialKind::Session, FUNCTION);
    let hash = hash_key::hash_credential(token.expose_secret().as_bytes());
    let session_id = auth_core::random_id("ses_")
        .map_err(|_| AuthPgError::Randomness)
        .or_raise(FUNCTION);
    let args: [DatumWithOid; 8] = [
        session_id.as_str().into(),
        hash.as_slice().into(),
        user_id.into(),
        metadata.into(),
        idle.into(),
        now.into(),
        idle_expires_at.into(),
        absolute_expires_at.into(),
    ];
    Spi::run_with_args(
        "INSERT INTO auth_pg.sessions (session_id, session_hash, user_id, metadata, idle_timeout, \
             created_at, last_activity_at, idle_expires_at, absolute_expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8)",
        &args,
    )
    .expect("SPI reports errors as ERRORs");
    token.into_secret()
}

/// Makes room for one more session of `user_id` under `limit`: refuses, or revokes the least
/// recently active sessions in force, as `auth_pg.session_limit_action` says.
///
/// Creations for one user are serialized by a transaction-level advisory lock keyed by the
/// sessions table and the user, so concurrent creations see each other's sessions and never
/// exceed the limit together.
fn make_room(user_id: &str, limit: i64, now: TimestampWithTimeZone, function: &'static str) {
    let table = i32::from_ne_bytes(storage::relation_oid(Rel::Sessions).to_u32().to_ne_bytes());
    let lock_args: [DatumWithOid; 2] = [table.into(), user_id.into()];
    Spi::run_with_args(
        "SELECT pg_catalog.pg_advisory_xact_lock($1, pg_catalog.hashtext($2))",
        &lock_args,
    )
    .expect("SPI reports errors as ERRORs");

    // SAFETY: reads a backend-local setting (IsolationUsesXactSnapshot in C).
    let snapshot_per_transaction =
        unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32;
    let in_force = if snapshot_per_transaction {
        in_force_now(user_id, now)
    } else {
        // READ COMMITTED: a statement after the lock sees every creation that held it before.
        let args: [DatumWithOid; 2] = [user_id.into(), now.into()];
        write_one(COUNT_IN_FORCE.to_str().expect("the query is ASCII"), &args).unwrap_or(0)
    };
    if in_force < limit {
        return;
    }
    if gucs::session_limit_action() == SessionLimitAction::Refuse {
        AuthPgError::SessionLimit { limit }.raise(function);
    }
    let excess = in_force - limit + 1;
    let args: [DatumWithOid; 3] = [user_id.into(), now.into(), excess.into()];
    let _writing = Guard::new(&edits::WRITING);
    let evicted: Vec<String> = Spi::connect_mut(|client| {
        client
            .update(
                "UPDATE auth_pg.sessions SET revoked_at = $2 \
                 WHERE revoked_at IS NULL AND session_id OPERATOR(pg_catalog.=) ANY (ARRAY( \
                     SELECT session_id FROM auth_pg.sessions \
                     WHERE user_id OPERATOR(pg_catalog.=) $1 AND revoked_at IS NULL \
                       AND idle_expires_at OPERATOR(pg_catalog.>) $2 \
                       AND absolute_expires_at OPERATOR(pg_catalog.>) $2 \
                     ORDER BY last_activity_at, created_at LIMIT $3)) \
                 RETURNING session_id",
                None,
                &args,
            )?
            .map(|row| row.get::<String>(1).map(Option::unwrap_or_default))
            .collect::<Result<Vec<_>, SpiError>>()
    })
    .expect("SPI reports errors as ERRORs");
    // Under REPEATABLE READ the sessions to evict are chosen among those this transaction's
    // snapshot sees; sessions created since are invisible to it and cannot be evicted by it.
    if snapshot_per_transaction && i64::try_from(evicted.len()).unwrap_or(i64::MAX) < excess {
        AuthPgError::SessionsChangedConcurrently.raise(function);
    }
    for session_id in evicted {
        revoked(&session_id, user_id, "session.evict");
    }
}

// $1 user_id, $2 the statement's time.
const COUNT_IN_FORCE: &std::ffi::CStr = c"SELECT pg_catalog.count(*) FROM auth_pg.sessions \
     WHERE user_id OPERATOR(pg_catalog.=) $1 AND revoked_at IS NULL \
       AND idle_expires_at OPERATOR(pg_catalog.>) $2 \
       AND absolute_expires_at OPERATOR(pg_catalog.>) $2";

/// The user's sessions in force at `now`, as committed at this moment. Under REPEATABLE READ
/// and SERIALIZABLE an ordinary query reads the transaction's snapshot, which misses sessions
/// that transactions committed after it was taken, even those that held the lock this one
/// waited for; this count reads the latest snapshot instead, as PostgreSQL's foreign-key
/// checks do at those levels.
fn in_force_now(user_id: &str, now: TimestampWithTimeZone) -> i64 {
    Spi::connect(|_| {
        // SAFETY: inside an SPI connection: the plan and result belong to it and are freed when
        // it closes; the argument datums live in the current memory context for the call;
        // SPI_execute_snapshot registers its own copy of the latest snapshot. count(*) is one
        // row of one int8 column, passed by value.
        unsafe {
            let mut types = [pg_sys::TEXTOID, pg_sys::TIMESTAMPTZOID];
            let plan = pg_sys::SPI_prepare(COUNT_IN_FORCE.as_ptr(), 2, types.as_mut_ptr());
            assert!(!plan.is_null(), "SPI_prepare reports errors as ERRORs");
            let mut values = [
                user_id.into_datum().expect("text is not NULL"),
                now.into_datum().expect("a timestamp is not NULL"),
            ];
            let nulls = [b' ' as std::ffi::c_char; 2];
            let status = pg_sys::SPI_execute_snapshot(
                plan,
                values.as_mut_ptr(),
                nulls.as_ptr(),
                pg_sys::GetLatestSnapshot(),
                std::ptr::null_mut(),
                true,
                false,
                1,
            );
            assert_eq!(status, pg_sys::SPI_OK_SELECT as i32, "a SELECT");
            let table = pg_sys::SPI_tuptable;
            let mut is_null = false;
            let count = pg_sys::SPI_getbinval(*(*table).vals, (*table).tupdesc, 1, &mut is_null);
            i64::from_datum(count, is_null).unwrap_or(0)
        }
    })
}

/// Tells caches and the audit trail that a session was revoked.
fn revoked(session_id: &str, user_id: &str, action: &'static str) {
    notify::send(&Invalidation::SessionRevoked {
        session_id: session_id.to_owned(),
        user_id: user_id.to_owned(),
    });
    audit::record(AuditEvent {
        action,
        user_id: Some(user_id),
        org_id: None,
        subject_id: Some(session_id.to_owned()),
        detail: serde_json::json!({}),
    });
}

/// Revokes sessions matching `condition` (on `$1`) that are not revoked yet; returns the ids
/// and users of those this call revoked.
fn revoke_where(condition: &str, arg: DatumWithOid<'_>) -> Vec<(String, String)> {
    let args = [arg];
    let _writing = Guard::new(&edits::WRITING);
    Spi::connect_mut(|client| {
        client
            .update(
                &format!(
                    "UPDATE auth_pg.sessions SET revoked_at = pg_catalog.statement_timestamp() \
                     WHERE {condition} AND revoked_at IS NULL RETURNING session_id, user_id"
                ),
                None,
                &args,
            )?
            .map(|row| {
                Ok((
                    row.get::<String>(1)?.unwrap_or_default(),
                    row.get::<String>(2)?.unwrap_or_default(),
                ))
            })
            .collect::<Result<Vec<_>, SpiError>>()
    })
    .expect("SPI reports errors as ERRORs")
}

/// Revokes the session of `token`. Returns true when this call revoked it; false when it was
/// already revoked, is unknown, malformed or NULL.
#[pg_extern(volatile, parallel_unsafe, security_definer, requires = ["sessions_schema"])]
#[search_path(pg_catalog, pg_temp)]
fn revoke_session(token: Option<&str>) -> bool {
    let Some(token) = token else { return false };
    if auth_core::check_format(CredentialKind::Session, token.as_bytes()).is_err() {
        return false;
    }
    let hash = hash_key::hash_credential(token.as_bytes());
    let done = revoke_where(
        "session_hash OPERATOR(pg_catalog.=) $1",
        hash.as_slice().into(),
    );
    for (session_id, user_id) in &done {
        revoked(session_id, user_id, "session.revoke");
    }
    !done.is_empty()
}

/// Revokes a session by its id (as `validate_session` and `list_user_sessions` show it).
/// Returns true when this call revoked it; false when it was already revoked or is unknown.
#[pg_extern(volatile, parallel_unsafe, security_definer, requires = ["sessions_schema"])]
#[search_path(pg_catalog, pg_temp)]
fn revoke_session_by_id(session_id: Option<&str>) -> bool {
    const FUNCTION: &str = "revoke_session_by_id";
    let session_id =
        input::check_identifier("session_id", session_id, MAX_SESSION_ID_BYTES).or_raise(FUNCTION);
    let done = revoke_where("session_id OPERATOR(pg_catalog.=) $1", session_id.into());
    for (session_id, user_id) in &done {
        revoked(session_id, user_id, "session.revoke");
    }
    !done.is_empty()
}

/// Revokes every session of `user_id` not yet revoked, and returns how many it revoked.
#[pg_extern(volatile, parallel_unsafe, security_definer, requires = ["sessions_schema"])]
#[search_path(pg_catalog, pg_temp)]
fn revoke_user_sessions(user_id: Option<&str>) -> i64 {
    const FUNCTION: &str = "revoke_user_sessions";
    let user_id = input::check_user_id(user_id).or_raise(FUNCTION);
    let done = revoke_where("user_id OPERATOR(pg_catalog.=) $1", user_id.into());
    let count = i64::try_from(done.len()).unwrap_or(i64::MAX);
    if count > 0 {
        notify::send(&Invalidation::UserSessionsRevoked {
            user_id: user_id.to_owned(),
        });
    }
    audit::record(AuditEvent {
        action: "user_sessions.revoke",
        user_id: Some(user_id),
        org_id: None,
        subject_id: None,
        detail: serde_json::json!({ "revoked": count }),
    });
    count
}

/// Lists a user's sessions that cleanup has not deleted yet, most recently active first, with
/// their status: everything but the session tokens and their hashes.
#[pg_extern(stable, parallel_safe, security_definer, requires = ["sessions_schema"])]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::type_complexity)] // the SQL columns, spelled out for pgrx's SQL generator
fn list_user_sessions(
    user_id: Option<&str>,
) -> TableIterator<
    'static,
    (
        name!(session_id, String),
        name!(status, String),
        name!(created_at, TimestampWithTimeZone),
        name!(last_activity_at, TimestampWithTimeZone),
        name!(idle_expires_at, TimestampWithTimeZone),
        name!(absolute_expires_at, TimestampWithTimeZone),
        name!(revoked_at, Option<TimestampWithTimeZone>),
        name!(metadata, Option<Jsonb>),
    ),
> {
    const FUNCTION: &str = "list_user_sessions";
    let user_id = input::check_user_id(user_id).or_raise(FUNCTION);
    let args: [DatumWithOid; 1] = [user_id.into()];
    let rows = Spi::connect(|client| {
        client
            .select(
                "SELECT session_id, \
                        CASE WHEN revoked_at IS NOT NULL THEN 'revoked' \
                             WHEN absolute_expires_at OPERATOR(pg_catalog.<=) pg_catalog.statement_timestamp() \
                                 THEN 'absolute_expired' \
                             WHEN idle_expires_at OPERATOR(pg_catalog.<=) pg_catalog.statement_timestamp() \
                                 THEN 'idle_expired' \
                             ELSE 'valid' END, \
                        created_at, last_activity_at, idle_expires_at, absolute_expires_at, \
                        revoked_at, metadata \
                 FROM auth_pg.sessions WHERE user_id OPERATOR(pg_catalog.=) $1 \
                 ORDER BY last_activity_at DESC, session_id",
                None,
                &args,
            )?
            .map(|row| {
                let time = |n| -> Result<TimestampWithTimeZone, SpiError> {
                    Ok(row.get::<TimestampWithTimeZone>(n)?.expect("NOT NULL column"))
                };
                Ok((
                    row.get::<String>(1)?.unwrap_or_default(),
                    row.get::<String>(2)?.unwrap_or_default(),
                    time(3)?,
                    time(4)?,
                    time(5)?,
                    time(6)?,
                    row.get::<TimestampWithTimeZone>(7)?,
                    row.get::<Jsonb>(8)?,
                ))
            })
            .collect::<Result<Vec<_>, SpiError>>()
    })
    .expect("SPI reports errors as ERRORs");
    TableIterator::new(rows)
}

/// The most rows one cleanup call deletes.
const MAX_CLEANUP_ROWS: i32 = 1_000_000;

/// Deletes at most `max_rows` sessions that expired or were revoked longer ago than
/// `auth_pg.session_retention`, and returns how many it deleted. Rows locked by another
/// transaction are skipped (`SKIP LOCKED`), so cleanup never waits for, nor blocks, a touch or
/// a revocation; checks read without locks and are never blocked. Call it again while it
/// returns `max_rows`.
#[pg_extern(volatile, parallel_unsafe, security_definer, requires = ["sessions_schema"])]
#[search_path(pg_catalog, pg_temp)]
fn cleanup_expired_sessions(max_rows: default!(Option<i32>, 10000)) -> i64 {
    const FUNCTION: &str = "cleanup_expired_sessions";
    let max_rows = max_rows
        .ok_or(auth_core::InputError::Null {
            argument: "max_rows",
        })
        .or_raise(FUNCTION);
    if max_rows <= 0 {
        AuthPgError::NotPositiveCount {
            argument: "max_rows",
        }
        .raise(FUNCTION);
    }
    let max_rows = i64::from(max_rows.min(MAX_CLEANUP_ROWS));
    let cutoff = statement_time().saturating_sub(gucs::session_retention_micros());
    let cutoff = TimestampWithTimeZone::try_from(cutoff).expect("a time before now is valid");

    // Past the absolute deadline and revoked: found through their indexes. Past the idle
    // deadline: found by a scan that stops at the first `max_rows` (see sessions.sql).
    let mut deleted = 0;
    let _writing = Guard::new(&edits::WRITING);
    for condition in [
        "absolute_expires_at OPERATOR(pg_catalog.<) $1",
        "revoked_at OPERATOR(pg_catalog.<) $1",
        "idle_expires_at OPERATOR(pg_catalog.<) $1",
    ] {
        if deleted >= max_rows {
            break;
        }
        let args: [DatumWithOid; 2] = [cutoff.into(), (max_rows - deleted).into()];
        deleted += write_one::<i64>(
            &format!(
                "WITH doomed AS ( \
                     SELECT ctid FROM auth_pg.sessions WHERE {condition} \
                     LIMIT $2 FOR UPDATE SKIP LOCKED), \
                 deleted AS ( \
                     DELETE FROM auth_pg.sessions \
                     WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT ctid FROM doomed)) \
                     RETURNING 1) \
                 SELECT pg_catalog.count(*) FROM deleted"
            ),
            &args,
        )
        .unwrap_or(0);
    }
    deleted
}
