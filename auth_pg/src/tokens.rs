//! Opaque bearer tokens: issue, validate (one or many), revoke.
//!
//! A token is shown once, by `issue_token`, and stored only as its hash. Validation is a
//! format check (no table access for a malformed string), then one probe of
//! `tokens_token_hash_key`.

use auth_core::hash::HASH_LEN;
use auth_core::input::{self, IntervalParts, MAX_BATCH, MAX_METADATA_BYTES};
use auth_core::{Credential, CredentialKind, Invalidation};
use pgrx::datum::DatumWithOid;
use pgrx::heap_tuple::PgHeapTuple;
use pgrx::prelude::*;
use pgrx::{AllocatedByRust, Array, JsonB, PgTupleDesc, Spi};

use crate::audit::{self, AuditEvent};
use crate::error::{AuthPgError, OrRaise};
use crate::storage::{Rel, Row, UniqueLookup};
use crate::{gucs, hash_key, notify};

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

/// What a validation found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenStatus {
    Valid,
    Expired,
    Revoked,
    Unknown,
    Malformed,
}

impl TokenStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Unknown => "unknown",
            Self::Malformed => "malformed",
        }
    }
}

/// The moment expiry is judged at: the statement's start, so that every check in one
/// statement agrees, as a STABLE function must.
pub(crate) fn statement_time() -> pg_sys::TimestampTz {
    // SAFETY: reads a backend-local timestamp.
    unsafe { pg_sys::GetCurrentStatementStartTimestamp() }
}

/// The tuple descriptor of the function's declared composite result.
pub(crate) fn result_tupdesc(fcinfo: pg_sys::FunctionCallInfo) -> PgTupleDesc<'static> {
    let mut tupdesc: pg_sys::TupleDesc = std::ptr::null_mut();
    // SAFETY: fcinfo is the live call's; get_call_result_type fills `tupdesc` with a palloc'd
    // copy for a composite result type.
    let class = unsafe { pg_sys::get_call_result_type(fcinfo, std::ptr::null_mut(), &mut tupdesc) };
    assert!(
        class == pg_sys::TypeFuncClass::TYPEFUNC_COMPOSITE && !tupdesc.is_null(),
        "function must return a composite type"
    );
    // SAFETY: the descriptor is a copy we own for the rest of the call.
    unsafe { PgTupleDesc::from_pg_is_copy(tupdesc) }
}

/// A `token_validation` with only `status` set.
fn status_only(
    tupdesc: &PgTupleDesc<'static>,
    status: TokenStatus,
) -> PgHeapTuple<'static, AllocatedByRust> {
    let datums = [status.as_str().into_datum(), None, None, None, None, None];
    form(tupdesc, datums)
}

fn form(
    tupdesc: &PgTupleDesc<'static>,
    datums: [Option<pg_sys::Datum>; 6],
) -> PgHeapTuple<'static, AllocatedByRust> {
    // SAFETY: the descriptor is `auth_pg.token_validation`'s and each datum has the type of
    // its field; `heap_form_tuple` copies by-reference values, so the tuple outlives the row.
    unsafe { PgHeapTuple::from_datums(PgTupleDesc::from_pg_copy(tupdesc.as_ptr()), datums) }
        .expect("token_validation has six fields")
}

/// The answer for a row found by its hash.
fn judge(row: &Row<'_>, now: pg_sys::TimestampTz) -> TokenStatus {
    if !row.is_null(col::REVOKED_AT) {
        TokenStatus::Revoked
    } else if row
        .timestamptz(col::EXPIRES_AT)
        .is_none_or(|expires| expires <= now)
    {
        TokenStatus::Expired
    } else {
        TokenStatus::Valid
    }
}

/// Validates one candidate with an open lookup.
fn validate_with(
    lookup: &mut UniqueLookup,
    tupdesc: &PgTupleDesc<'static>,
    candidate: Option<&str>,
    now: pg_sys::TimestampTz,
) -> PgHeapTuple<'static, AllocatedByRust> {
    let Some(candidate) = candidate else {
        return status_only(tupdesc, TokenStatus::Malformed);
    };
    if auth_core::check_format(CredentialKind::Token, candidate).is_err() {
        return status_only(tupdesc, TokenStatus::Malformed);
    }
    let hash = hash_key::hash_credential(candidate);
    lookup
        .find(&hash, |row| match judge(row, now) {
            TokenStatus::Valid => form(
                tupdesc,
                [
                    TokenStatus::Valid.as_str().into_datum(),
                    row.datum(col::TOKEN_ID),
                    row.datum(col::USER_ID),
                    row.datum(col::SCOPES),
                    row.datum(col::EXPIRES_AT),
                    row.datum(col::METADATA),
                ],
            ),
            status => status_only(tupdesc, status),
        })
        .unwrap_or_else(|| status_only(tupdesc, TokenStatus::Unknown))
}

/// Checks a token: `valid`, `expired`, `revoked`, `unknown` or `malformed` (NULL included).
/// Only a `valid` answer carries the token's id, user, scopes, expiry and metadata.
#[pg_extern(stable, parallel_safe, security_definer, requires = ["tokens_schema"])]
#[search_path(pg_catalog, pg_temp)]
fn validate_token(
    token: Option<&str>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> pgrx::composite_type!('static, "auth_pg.token_validation") {
    let tupdesc = result_tupdesc(fcinfo);
    let mut lookup = UniqueLookup::open(Rel::Tokens, Rel::TokensHashKey);
    validate_with(&mut lookup, &tupdesc, token, statement_time())
}

/// Checks many tokens in one call: one row per element, in the array's order (use
/// `WITH ORDINALITY` to number them). NULL elements are `malformed`; a NULL array gives no rows.
#[pg_extern(stable, parallel_safe, security_definer, requires = ["tokens_schema"])]
#[search_path(pg_catalog, pg_temp)]
fn validate_tokens(
    tokens: Option<Array<'_, &str>>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> SetOfIterator<'static, pgrx::composite_type!('static, "auth_pg.token_validation")> {
    const FUNCTION: &str = "validate_tokens";
    let Some(tokens) = tokens else {
        return SetOfIterator::new(Vec::new());
    };
    if tokens.len() > MAX_BATCH {
        AuthPgError::BatchTooLarge {
            argument: "tokens",
            given: tokens.len(),
            limit: MAX_BATCH,
        }
        .raise(FUNCTION);
    }
    let tupdesc = result_tupdesc(fcinfo);
    let now = statement_time();
    let mut lookup = UniqueLookup::open(Rel::Tokens, Rel::TokensHashKey);
    let mut rows = Vec::with_capacity(tokens.len());
    for token in tokens.iter() {
        pgrx::check_for_interrupts!();
        rows.push(validate_with(&mut lookup, &tupdesc, token, now));
    }
    SetOfIterator::new(rows)
}

/// Checks optional JSON metadata: an object, at most `MAX_METADATA_BYTES` when serialized.
pub(crate) fn check_metadata(metadata: Option<JsonB>, function: &'static str) -> Option<JsonB> {
    let metadata = metadata?;
    if !metadata.0.is_object() {
        AuthPgError::from(auth_core::InputError::NotAnObject {
            argument: "metadata",
        })
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
    metadata: default!(Option<JsonB>, "NULL"),
) -> String {
    const FUNCTION: &str = "issue_token";
    let user_id = input::check_user_id(user_id).or_raise(FUNCTION);
    let ttl = input::check_lifetime(
        "ttl",
        ttl.map(|ttl| IntervalParts {
            months: ttl.months(),
            days: ttl.days(),
            micros: ttl.micros(),
        }),
        "auth_pg.max_token_ttl",
        gucs::max_token_ttl_seconds(),
    )
    .or_raise(FUNCTION);
    let scopes =
        input::normalize_scopes(scopes.iter().flat_map(|array| array.iter())).or_raise(FUNCTION);
    let metadata = check_metadata(metadata, FUNCTION);

    let now = TimestampWithTimeZone::try_from(statement_time())
        .expect("the statement's start time is a valid timestamp");
    let interval = Interval::new(ttl.months, ttl.days, ttl.micros).expect("checked interval");
    let expires_at = now + interval;
    if expires_at.into_inner() <= now.into_inner() {
        // Calendar arithmetic can undo a positive-looking interval ('1 month -30 days' in
        // February): judge by where it lands.
        AuthPgError::from(auth_core::InputError::NotPositive { argument: "ttl" }).raise(FUNCTION);
    }

    let token = generate(CredentialKind::Token, FUNCTION);
    let hash: [u8; HASH_LEN] = hash_key::hash_credential(token.expose_secret());
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
            detail: serde_json::json!({ "expires_at": expires_at.to_string() }),
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
    if auth_core::check_format(CredentialKind::Token, token).is_err() {
        return false;
    }
    let hash = hash_key::hash_credential(token);
    let args: [DatumWithOid; 1] = [hash.as_slice().into()];
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
