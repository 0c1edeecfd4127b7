//! Opaque bearer tokens: issue, validate (one or many), revoke.
//!
//! A token is shown once, by `issue_token`, and stored only as its hash. Validation is a
//! format check (no table access for a malformed string), then one probe of
//! `tokens_token_hash_idx`.

use auth_core::hash::HASH_LEN;
use auth_core::input::{self, IntervalParts, MAX_METADATA_BYTES, MAX_METADATA_DEPTH};
use auth_core::{Credential, CredentialKind, Invalidation};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::{Array, Spi};

use crate::audit::{self, AuditEvent};
use crate::check::{self, Checked, Form, Status, statement_time};
use crate::error::{AuthPgError, OrRaise};
use crate::fmgr::function_info_v1;
use crate::jsonb::Jsonb;
use crate::packed::Field;
use crate::storage::{Rel, Row};
use crate::writing::Guard;
use crate::{edits, gucs, hash_key, notify};

/// Attribute numbers of `auth_pg.tokens`, checked against the catalog by a test.
#[cfg_attr(not(any(test, feature = "pg_test")), allow(dead_code))]
pub(crate) mod col {
    pub(crate) const TOKEN_ID: usize = 1;
    pub(crate) const TOKEN_HASH: usize = 2;
    pub(crate) const USER_ID: usize = 3;
    pub(crate) const SCOPES: usize = 4;
    pub(crate) const METADATA: usize = 5;
    pub(crate) const CREATED_AT: usize = 6;
    pub(crate) const EXPIRES_AT: usize = 7;
    pub(crate) const REVOKED_AT: usize = 8;
}

/// Tokens are checked by hash in `auth_pg.tokens`.
pub(crate) struct Tokens;

impl Checked<5> for Tokens {
    const KIND: CredentialKind = CredentialKind::Token;
    const TABLE: Rel = Rel::Tokens;
    const INDEX: Rel = Rel::TokensHashIndex;
    const HASH_COLUMN: usize = col::TOKEN_HASH;

    fn judge(row: &Row<'_>, now: pg_sys::TimestampTz) -> Status {
        check::judge_times(row, col::REVOKED_AT, col::EXPIRES_AT, now)
    }

    const PACKED: [Field; 5] = [
        Field::Int8,
        Field::Text,
        Field::TextArray,
        Field::TimestampTz,
        Field::Jsonb,
    ];

    fn fields(row: &Row<'_>) -> [Option<pg_sys::Datum>; 5] {
        [
            row.datum(col::TOKEN_ID),
            row.datum(col::USER_ID),
            row.datum(col::SCOPES),
            row.datum(col::EXPIRES_AT),
            row.datum(col::METADATA),
        ]
    }
}

function_info_v1!(pg_finfo_auth_pg_validate_token);

/// `auth_pg.validate_token(token text) RETURNS auth_pg.token_validation` (see tokens.sql).
///
/// Checks a token: `valid`, `expired`, `revoked`, `unknown` or `malformed` (NULL included).
/// Only a `valid` answer carries the token's id, user, scopes, expiry and metadata.
///
/// # Safety
///
/// Called by fmgr only, with the argument and result declared in tokens.sql.
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_pg_validate_token(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: fmgr calls this as declared in tokens.sql.
    unsafe { check::check_single::<Tokens, 5>(fcinfo, Form::Row) }
}

function_info_v1!(pg_finfo_auth_pg_validate_token_packed);

/// `auth_pg.validate_token_packed(token text) RETURNS bytea`: `validate_token`'s answer in the
/// packed form (see packed.rs).
///
/// # Safety
///
/// Called by fmgr only, with the argument and result declared in tokens.sql.
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_pg_validate_token_packed(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: fmgr calls this as declared in tokens.sql.
    unsafe { check::check_single::<Tokens, 5>(fcinfo, Form::Packed) }
}

function_info_v1!(pg_finfo_auth_pg_validate_tokens);

/// `auth_pg.validate_tokens(tokens text[]) RETURNS SETOF auth_pg.token_validation`.
///
/// One row per element, in the array's order (`WITH ORDINALITY` numbers them). NULL elements
/// are `malformed`; a NULL array gives no rows.
///
/// # Safety
///
/// Called by fmgr only, with the argument and result declared in tokens.sql.
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_pg_validate_tokens(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: fmgr calls this as declared in tokens.sql.
    unsafe { check::check_batch::<Tokens, 5>(fcinfo, "validate_tokens", "tokens") }
}

/// Checks optional JSON metadata: an object, at most `MAX_METADATA_BYTES` when serialized and
/// `MAX_METADATA_DEPTH` levels deep.
pub(crate) fn check_metadata(metadata: Option<Jsonb>, function: &'static str) -> Option<Jsonb> {
    let metadata = metadata?;
    if !metadata.0.is_object() {
        AuthPgError::from(auth_core::InputError::NotAnObject {
            argument: "metadata",
        })
        .raise(function);
    }
    if nesting(&metadata.0) > MAX_METADATA_DEPTH {
        AuthPgError::JsonTooDeep {
            argument: "metadata",
            limit: MAX_METADATA_DEPTH,
        }
        .raise(function);
    }
    let size = serde_json::to_vec(&metadata.0).map_or(usize::MAX, |bytes| bytes.len());
    if size > MAX_METADATA_BYTES {
        AuthPgError::JsonTooLarge {
            argument: "metadata",
            limit: MAX_METADATA_BYTES,
        }
        .raise(function);
    }
    Some(metadata)
}

/// How deeply `value` nests objects and arrays: 0 for a scalar. The recursion is bounded by
/// the 128 levels `Jsonb` reads.
fn nesting(value: &serde_json::Value) -> usize {
    let deepest = |children: &mut dyn Iterator<Item = &serde_json::Value>| {
        1 + children.map(nesting).max().unwrap_or(0)
    };
    match value {
        serde_json::Value::Array(items) => deepest(&mut items.iter()),
        serde_json::Value::Object(members) => deepest(&mut members.values()),
        _ => 0,
    }
}

/// An interval's parts, for the checks of `auth_core::input`. The interval itself is what gets
/// added to times: its parts may have mixed signs ('1 month -1 day'), which pgrx's
/// `Interval::new` refuses.
pub(crate) fn interval_parts(interval: &Interval) -> IntervalParts {
    IntervalParts {
        months: interval.months(),
        days: interval.days(),
        micros: interval.micros(),
    }
}

/// `at` moved by `interval`. An interval that could carry it past the range of timestamps is
/// refused with an ERROR that names `argument`, rather than left to PostgreSQL's arithmetic to
/// refuse with one that names nothing.
pub(crate) fn later(
    at: TimestampWithTimeZone,
    interval: Interval,
    argument: &'static str,
    function: &'static str,
) -> TimestampWithTimeZone {
    input::check_reach(argument, at.into_inner(), interval_parts(&interval)).or_raise(function);
    at + interval
}

/// Judges a lifetime by where it lands: `deadline` (`now` moved by the interval `argument`)
/// must be later than `now` and at most `max_seconds` after it. The interval was checked
/// before by PostgreSQL's interval ordering (a month as 30 days, a day as 24 hours); calendar
/// arithmetic in the caller's time zone can still land it elsewhere ('1 month' from 1 January
/// is 31 days; '1 month -30 days' in February is in the past; a day across a clock change is
/// 23 or 25 hours).
pub(crate) fn check_landing(
    now: TimestampWithTimeZone,
    deadline: TimestampWithTimeZone,
    argument: &'static str,
    setting: &'static str,
    max_seconds: i64,
    function: &'static str,
) {
    // Two valid timestamps are less than i64::MAX microseconds apart.
    let span = deadline.into_inner().saturating_sub(now.into_inner());
    let landed = IntervalParts {
        months: 0,
        days: 0,
        micros: span,
    };
    input::check_lifetime(argument, Some(landed), setting, max_seconds).or_raise(function);
}

/// Runs a data-modifying statement and returns the first column of its first row, if any.
pub(crate) fn write_one<T: FromDatum + IntoDatum>(
    query: &str,
    args: &[DatumWithOid<'_>],
) -> Option<T> {
    Spi::connect_mut(|client| {
        let table = client.update(query, Some(1), args)?;
        if table.is_empty() {
            Ok(None)
        } else {
            table.first().get_one::<T>()
        }
    })
    .expect("SPI reports errors as ERRORs; only a misuse of SPI gets here")
}

/// Generates a credential of `kind` from the operating system's random number generator.
pub(crate) fn generate(kind: CredentialKind, function: &'static str) -> Credential {
    Credential::generate(kind)
        .map_err(|_| AuthPgError::Randomness)
        .or_raise(function)
}

/// Issues a token for `user_id`, valid for `ttl` (at most `auth_pg.max_token_ttl`), and returns
/// it. The token is shown this once: only its hash is stored.
#[pg_extern(volatile, parallel_unsafe, security_definer, requires = ["tokens_schema"])]
#[search_path(pg_catalog, pg_temp)]
fn issue_token(
    user_id: Option<&str>,
    ttl: Option<Interval>,
    scopes: default!(Option<Array<'_, &str>>, "'{}'"),
    metadata: default!(Option<Jsonb>, "NULL"),
) -> String {
    const FUNCTION: &str = "issue_token";
    let user_id = input::check_user_id(user_id).or_raise(FUNCTION);
    input::check_lifetime(
        "ttl",
        ttl.as_ref().map(interval_parts),
        "auth_pg.max_token_ttl",
        gucs::max_token_ttl_seconds(),
    )
    .or_raise(FUNCTION);
    let ttl = ttl.expect("check_lifetime refuses NULL");
    let scopes =
        input::normalize_scopes(scopes.iter().flat_map(|array| array.iter())).or_raise(FUNCTION);
    let metadata = check_metadata(metadata, FUNCTION);

    let now = TimestampWithTimeZone::try_from(statement_time())
        .expect("the statement's start time is a valid timestamp");
    let expires_at = later(now, ttl, "ttl", FUNCTION);
    check_landing(
        now,
        expires_at,
        "ttl",
        "auth_pg.max_token_ttl",
        gucs::max_token_ttl_seconds(),
        FUNCTION,
    );

    let token = generate(CredentialKind::Token, FUNCTION);
    let hash: [u8; HASH_LEN] = hash_key::hash_credential(token.expose_secret().as_bytes());
    let args: [DatumWithOid; 6] = [
        hash.as_slice().into(),
        user_id.into(),
        scopes.into(),
        metadata.into(),
        now.into(),
        expires_at.into(),
    ];
    let token_id: i64 = write_one(
        "INSERT INTO auth_pg.tokens (token_hash, user_id, scopes, metadata, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING token_id",
        &args,
    )
    .expect("INSERT ... RETURNING returns the new id");

    if gucs::audit_token_issue() {
        audit::record(AuditEvent {
            action: "token.issue",
            user_id: Some(user_id),
            org_id: None,
            subject_id: Some(token_id.to_string()),
            detail: serde_json::json!({ "expires_at": expires_at }),
        });
    }
    token.into_secret()
}

/// Revokes one token. Returns true when this call revoked it; false when it was already
/// revoked, is unknown, malformed or NULL.
#[pg_extern(volatile, parallel_unsafe, security_definer, requires = ["tokens_schema"])]
#[search_path(pg_catalog, pg_temp)]
fn revoke_token(token: Option<&str>) -> bool {
    let Some(token) = token else { return false };
    if auth_core::check_format(CredentialKind::Token, token.as_bytes()).is_err() {
        return false;
    }
    let hash = hash_key::hash_credential(token.as_bytes());
    let args: [DatumWithOid; 1] = [hash.as_slice().into()];
    let _writing = Guard::new(&edits::WRITING);
    let revoked: Option<(Option<i64>, Option<String>)> = Spi::connect_mut(|client| {
        let table = client.update(
            "UPDATE auth_pg.tokens SET revoked_at = pg_catalog.statement_timestamp() \
             WHERE token_hash OPERATOR(pg_catalog.=) $1 AND revoked_at IS NULL \
             RETURNING token_id, user_id",
            None,
            &args,
        )?;
        if table.is_empty() {
            Ok::<_, spi::SpiError>(None)
        } else {
            table.first().get_two::<i64, String>().map(Some)
        }
    })
    .expect("UPDATE ... RETURNING");
    let Some((Some(token_id), Some(user_id))) = revoked else {
        return false;
    };
    notify::send(&Invalidation::TokenRevoked {
        token_id,
        user_id: user_id.clone(),
    });
    audit::record(AuditEvent {
        action: "token.revoke",
        user_id: Some(&user_id),
        org_id: None,
        subject_id: Some(token_id.to_string()),
        detail: serde_json::json!({}),
    });
    true
}

/// Revokes every token of `user_id` not yet revoked, and returns how many it revoked.
#[pg_extern(volatile, parallel_unsafe, security_definer, requires = ["tokens_schema"])]
#[search_path(pg_catalog, pg_temp)]
fn revoke_user_tokens(user_id: Option<&str>) -> i64 {
    const FUNCTION: &str = "revoke_user_tokens";
    let user_id = input::check_user_id(user_id).or_raise(FUNCTION);
    let args: [DatumWithOid; 1] = [user_id.into()];
    let _writing = Guard::new(&edits::WRITING);
    let revoked: i64 = write_one(
        "WITH revoked AS ( \
             UPDATE auth_pg.tokens SET revoked_at = pg_catalog.statement_timestamp() \
             WHERE user_id OPERATOR(pg_catalog.=) $1 AND revoked_at IS NULL \
             RETURNING 1) \
         SELECT pg_catalog.count(*) FROM revoked",
        &args,
    )
    .unwrap_or(0);
    if revoked > 0 {
        notify::send(&Invalidation::UserTokensRevoked {
            user_id: user_id.to_owned(),
        });
    }
    audit::record(AuditEvent {
        action: "user_tokens.revoke",
        user_id: Some(user_id),
        org_id: None,
        subject_id: None,
        detail: serde_json::json!({ "revoked": revoked }),
    });
    revoked
}
