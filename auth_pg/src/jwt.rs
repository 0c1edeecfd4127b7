//! JSON Web Tokens: keys by kid in `auth_pg.jwt_keys`, verification and signing (the logic is
//! `auth_core::jwt`), and the claims of a verified token for row-level security.
//!
//! - `jwt_verify(token)` finds the key by the header's kid among the keys in force, through a
//!   per-backend cache of keys and of verified tokens (see [`keys`] for how a key change
//!   reaches it); `jwt_verify(token, key, algorithm)` takes the key inline.
//! - `authenticate(token)` verifies and, when valid, makes the claims the transaction's (see
//!   [`claims`]): `auth_pg.claims()` and `auth_pg.uid()` return them, and `request.jwt.claims`
//!   is set for PostgREST-style policies.
//! - `add_jwt_key`, `import_jwks`, `retire_jwt_key`, `list_jwt_keys` and `jwt_sign` manage and
//!   use the keys; every change is announced on `auth_pg_invalidate` and audited.

mod claims;
mod keys;

use std::cell::Cell;
use std::ffi::CString;

use auth_core::input;
use auth_core::jwt::{self, Algorithm, KeyEntry, MAX_KID_BYTES, ParsedKey, Status};
use auth_core::{InputError, Invalidation};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiError};
use pgrx::{IntoDatum, Spi};

use crate::audit::{self, AuditEvent};
use crate::error::{AuthPgError, OrRaise};
use crate::fmgr::{self, CompositeResult, function_info_v1};
use crate::jsonb::Jsonb;
use crate::{edits, notify, writing};

use keys::Verified;
#[cfg(any(test, feature = "pg_test"))]
pub(crate) use keys::col;

/// The longest issuer or audience accepted.
const MAX_ISSUER_BYTES: usize = 1024;

// ---------------------------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------------------------

fn status_datum(status: Status) -> pg_sys::Datum {
    status.as_str().into_datum().expect("text is never NULL")
}

/// The `auth_pg.jwt_verification` row of `verified`.
fn answer(result: &CompositeResult, verified: &Verified) -> pg_sys::Datum {
    let claims = verified.claims.as_ref().map(keys::Claims::datum);
    let kid = verified.kid.as_deref().and_then(IntoDatum::into_datum);
    let values = [
        status_datum(verified.status),
        claims.unwrap_or(pg_sys::Datum::from(0)),
        kid.unwrap_or(pg_sys::Datum::from(0)),
    ];
    let nulls = [false, claims.is_none(), kid.is_none()];
    result.form(&values, &nulls)
}

function_info_v1!(pg_finfo_auth_pg_jwt_verify);

/// `auth_pg.jwt_verify(token text) RETURNS auth_pg.jwt_verification` (jwt.sql).
///
/// # Safety
///
/// Called by fmgr only, with the argument and result declared in jwt.sql.
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_pg_jwt_verify(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: fmgr calls this as declared in jwt.sql.
    let (token, result) = unsafe { (token_arg(fcinfo), CompositeResult::of(fcinfo)) };
    answer(&result, &keys::verify(token))
}

/// The token, the first argument: `None` for NULL and for one longer than
/// `auth_pg.jwt_max_token_bytes`, both `malformed`, read without detoasting a long one.
///
/// # Safety
///
/// `fcinfo` must be a live call whose first argument is of type `text`.
unsafe fn token_arg<'call>(fcinfo: pg_sys::FunctionCallInfo) -> Option<&'call [u8]> {
    // SAFETY: as documented.
    unsafe { fmgr::short_text_arg(fcinfo, 0, crate::gucs::jwt_policy().max_token_bytes) }
}

/// A text argument that must not be NULL, as UTF-8.
fn required_text<'a>(
    value: Option<&'a [u8]>,
    argument: &'static str,
    function: &'static str,
) -> &'a str {
    let value = value
        .ok_or(InputError::Null { argument })
        .or_raise(function);
    // The server's encoding is UTF-8 for auth_pg (as for pgrx); anything else is as invalid.
    std::str::from_utf8(value)
        .map_err(|_| InputError::BadCharacters { argument })
        .or_raise(function)
}

/// An optional issuer or audience argument, checked as `add_jwt_key` checks them.
fn optional_text<'a>(
    value: Option<&'a [u8]>,
    argument: &'static str,
    function: &'static str,
) -> Option<&'a str> {
    let value = value.map(|bytes| {
        std::str::from_utf8(bytes)
            .map_err(|_| InputError::BadCharacters { argument })
            .or_raise(function)
    });
    check_issuer(argument, value, function)
}

fn check_issuer<'a>(
    argument: &'static str,
    value: Option<&'a str>,
    function: &'static str,
) -> Option<&'a str> {
    value.map(|value| {
        input::check_identifier(argument, Some(value), MAX_ISSUER_BYTES).or_raise(function)
    })
}

function_info_v1!(pg_finfo_auth_pg_jwt_verify_with_key);

/// `auth_pg.jwt_verify(token text, key text, algorithm text, issuer text, audience text)
/// RETURNS auth_pg.jwt_verification` (jwt.sql).
///
/// A NULL or unusable key or algorithm is a mistake in the caller's code and raises (22004,
/// 22023); a token that is not valid is a status.
///
/// # Safety
///
/// Called by fmgr only, with the arguments and result declared in jwt.sql.
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_pg_jwt_verify_with_key(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    const FUNCTION: &str = "jwt_verify";
    // SAFETY: fmgr calls this with five text arguments, as declared.
    let (token, key, algorithm, issuer, audience, result) = unsafe {
        (
            token_arg(fcinfo),
            fmgr::text_arg(fcinfo, 1),
            fmgr::text_arg(fcinfo, 2),
            fmgr::text_arg(fcinfo, 3),
            fmgr::text_arg(fcinfo, 4),
            CompositeResult::of(fcinfo),
        )
    };
    let algorithm =
        Algorithm::parse(required_text(algorithm, "algorithm", FUNCTION)).or_raise(FUNCTION);
    let key = keys::inline_key(algorithm, required_text(key, "key", FUNCTION)).or_raise(FUNCTION);
    let mut entry = KeyEntry::new(None, key);
    entry.issuer = optional_text(issuer, "issuer", FUNCTION).map(str::to_owned);
    entry.audience = optional_text(audience, "audience", FUNCTION).map(str::to_owned);
    answer(&result, &keys::verify_with_key(token, &entry))
}

// ---------------------------------------------------------------------------------------------
// The transaction's claims
// ---------------------------------------------------------------------------------------------

/// Sets `request.jwt.claims` for the rest of the transaction, as `set_config(name, value, true)`
/// does: PostgREST-style policies read it. An empty string means no claims.
fn set_request_claims(value: &str) {
    let value = CString::new(value).expect("JSON text has no NUL byte");
    // SAFETY: both strings are NUL-terminated and outlive the call, which copies them; a
    // custom setting under `request.` is a placeholder any role may set, so this cannot fail
    // for lack of privilege (and raises, as set_config would, if it did).
    unsafe {
        pg_sys::set_config_option(
            c"request.jwt.claims".as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_LOCAL,
            true,
            0,
            false,
        );
    }
}

function_info_v1!(pg_finfo_auth_pg_authenticate);

/// `auth_pg.authenticate(token text) RETURNS text` (jwt.sql): verifies as `jwt_verify(token)`
/// and returns the status. When valid, the claims become the transaction's (`claims()`,
/// `uid()`) and `request.jwt.claims` is set to them; otherwise the transaction has no claims
/// and `request.jwt.claims` is empty.
///
/// # Safety
///
/// Called by fmgr only, with the argument and result declared in jwt.sql.
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_pg_authenticate(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: fmgr calls this with one text argument, as declared.
    let token = unsafe { token_arg(fcinfo) };
    let verified = keys::verify(token);
    let request_claims = verified
        .claims
        .as_ref()
        .map(|claims| claims.value.to_string())
        .unwrap_or_default();
    claims::set(verified.claims);
    set_request_claims(&request_claims);
    status_datum(verified.status)
}

/// Returns NULL from a version-1 function.
///
/// # Safety
///
/// `fcinfo` must be a live call.
unsafe fn null(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: as documented.
    unsafe { (*fcinfo).isnull = true };
    pg_sys::Datum::from(0)
}

function_info_v1!(pg_finfo_auth_pg_claims);

/// `auth_pg.claims() RETURNS jsonb` (jwt.sql): the claims `authenticate` verified in this
/// transaction, or NULL.
///
/// # Safety
///
/// Called by fmgr only, as declared in jwt.sql.
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_pg_claims(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    match claims::with_current(|claims| claims.map(keys::Claims::datum)) {
        Some(datum) => datum,
        // SAFETY: fmgr's call.
        None => unsafe { null(fcinfo) },
    }
}

function_info_v1!(pg_finfo_auth_pg_uid);

/// `auth_pg.uid() RETURNS text` (jwt.sql): the `sub` of the claims `authenticate` verified in
/// this transaction, or NULL.
///
/// # Safety
///
/// Called by fmgr only, as declared in jwt.sql.
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_pg_uid(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    match claims::with_current(|claims| {
        claims
            .and_then(keys::Claims::subject)
            .and_then(IntoDatum::into_datum)
    }) {
        Some(datum) => datum,
        // SAFETY: fmgr's call.
        None => unsafe { null(fcinfo) },
    }
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

thread_local! {
    /// Set while a function of this module writes the key table itself (having checked,
    /// announced and audited the change), so that the triggers do not do it again.
    static WRITING: Cell<u32> = const { Cell::new(0) };
}

fn check_kid<'a>(kid: Option<&'a str>, function: &'static str) -> &'a str {
    input::check_identifier("kid", kid, MAX_KID_BYTES).or_raise(function)
}

fn check_algorithm(algorithm: Option<&str>, function: &'static str) -> Algorithm {
    let algorithm = algorithm
        .ok_or(InputError::Null {
            argument: "algorithm",
        })
        .or_raise(function);
    Algorithm::parse(algorithm).or_raise(function)
}

/// Checks a key's window: `not_after` later than `not_before` when both are given.
fn check_window(
    not_before: Option<TimestampWithTimeZone>,
    not_after: Option<TimestampWithTimeZone>,
    function: &'static str,
) {
    if let (Some(start), Some(end)) = (not_before, not_after)
        && end.into_inner() <= start.into_inner()
    {
        AuthPgError::JwtKeyWindow.raise(function);
    }
}

fn run(client: &mut SpiClient<'_>, sql: &str, args: &[DatumWithOid<'_>]) -> usize {
    client
        .update(sql, None, args)
        .map(|table| table.len())
        .expect("SPI reports errors as ERRORs")
}

/// Adds a key that verifies tokens whose header names `kid` (and, for an HMAC secret or a
/// private key PEM, signs with `jwt_sign`). `key` is an HMAC secret (its bytes as given, at least
/// the hash's size), a PEM (public key, or PKCS#8 or PKCS#1 private key) or a public JWK; it must
/// fit `algorithm`. When `issuer` or `audience` is set, tokens must name it in `iss` or `aud`.
/// The key is used from `not_before` and until `not_after` when they are set.
#[pg_extern(volatile, parallel_unsafe, security_definer, requires = ["jwt_schema"])]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::too_many_arguments)] // SQL parameters, most with defaults
fn add_jwt_key(
    kid: Option<&str>,
    algorithm: Option<&str>,
    key: Option<&str>,
    issuer: default!(Option<&str>, "NULL"),
    audience: default!(Option<&str>, "NULL"),
    not_before: default!(Option<TimestampWithTimeZone>, "NULL"),
    not_after: default!(Option<TimestampWithTimeZone>, "NULL"),
) {
    const FUNCTION: &str = "add_jwt_key";
    let kid = check_kid(kid, FUNCTION);
    let algorithm = check_algorithm(algorithm, FUNCTION);
    let key = key
        .ok_or(InputError::Null { argument: "key" })
        .or_raise(FUNCTION);
    let parsed = ParsedKey::parse(algorithm, key).or_raise(FUNCTION);
    let issuer = check_issuer("issuer", issuer, FUNCTION);
    let audience = check_issuer("audience", audience, FUNCTION);
    check_window(not_before, not_after, FUNCTION);

    let _writing = writing::Guard::new(&WRITING);
    let args: [DatumWithOid; 7] = [
        kid.into(),
        algorithm.as_str().into(),
        key.into(),
        issuer.into(),
        audience.into(),
        not_before.into(),
        not_after.into(),
    ];
    let added = Spi::connect_mut(|client| {
        Ok::<_, SpiError>(run(
            client,
            "INSERT INTO auth_pg.jwt_keys \
                 (kid, algorithm, key, issuer, audience, not_before, not_after) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (kid) DO NOTHING RETURNING 1",
            &args,
        ))
    })
    .expect("SPI reports errors as ERRORs");
    if added == 0 {
        AuthPgError::JwtKeyExists.raise(FUNCTION);
    }
    notify::send(&Invalidation::JwtKeyChanged {
        kid: kid.to_owned(),
    });
    audit::record(AuditEvent {
        action: "jwt_key.add",
        user_id: None,
        org_id: None,
        subject_id: Some(kid.to_owned()),
        detail: serde_json::json!({
            "algorithm": algorithm.as_str(),
            "can_sign": parsed.can_sign(),
            "issuer": issuer,
            "audience": audience,
            "not_before": not_before,
            "not_after": not_after,
        }),
    });
}

/// Imports the signature keys of a JWKS document (`{"keys": [...]}`, as identity providers
/// publish at their `jwks_uri`), each under its kid, with `issuer` and `audience` as in
/// `add_jwt_key`. Keys whose kid is stored already with the same key are skipped, so importing
/// the same document again adds nothing; a kid stored with another key refuses the whole
/// document. Encryption keys (`"use": "enc"`) are skipped. Returns how many keys were added.
#[pg_extern(volatile, parallel_unsafe, security_definer, requires = ["jwt_schema"])]
#[search_path(pg_catalog, pg_temp)]
fn import_jwks(
    jwks: Option<Jsonb>,
    issuer: default!(Option<&str>, "NULL"),
    audience: default!(Option<&str>, "NULL"),
) -> i32 {
    const FUNCTION: &str = "import_jwks";
    let jwks = jwks
        .ok_or(InputError::Null { argument: "jwks" })
        .or_raise(FUNCTION);
    let document = serde_json::to_string(&jwks.0).unwrap_or_default();
    let imported = jwt::import_jwks(&document).or_raise(FUNCTION);
    let issuer = check_issuer("issuer", issuer, FUNCTION);
    let audience = check_issuer("audience", audience, FUNCTION);

    let _writing = writing::Guard::new(&WRITING);
    let added: Vec<String> = Spi::connect_mut(|client| {
        let mut added = Vec::new();
        for (index, key) in imported.iter().enumerate() {
            let args: [DatumWithOid; 5] = [
                key.kid.as_str().into(),
                key.key.algorithm().as_str().into(),
                key.key_text.as_str().into(),
                issuer.into(),
                audience.into(),
            ];
            let inserted = run(
                client,
                "INSERT INTO auth_pg.jwt_keys (kid, algorithm, key, issuer, audience) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (kid) DO NOTHING RETURNING 1",
                &args,
            );
            if inserted > 0 {
                added.push(key.kid.clone());
                continue;
            }
            let same = client
                .select(
                    "SELECT 1 FROM auth_pg.jwt_keys \
                     WHERE kid OPERATOR(pg_catalog.=) $1 \
                       AND algorithm OPERATOR(pg_catalog.=) $2 \
                       AND key OPERATOR(pg_catalog.=) $3",
                    Some(1),
                    &args[..3],
                )?
                .len();
            if same == 0 {
                // SECURITY: named by index, never by content.
                AuthPgError::JwksKidConflict { index }.raise(FUNCTION);
            }
        }
        Ok::<_, SpiError>(added)
    })
    .expect("SPI reports errors as ERRORs");
    for kid in &added {
        notify::send(&Invalidation::JwtKeyChanged { kid: kid.clone() });
    }
    audit::record(AuditEvent {
        action: "jwt_key.import",
        user_id: None,
        org_id: None,
        subject_id: None,
        detail: serde_json::json!({
            "added": added,
            "skipped": imported.len() - added.len(),
            "issuer": issuer,
            "audience": audience,
        }),
    });
    i32::try_from(added.len()).unwrap_or(i32::MAX)
}

/// Retires a key: from now on it verifies and signs nothing, in every backend, and its kid is
/// never given to another key. Returns true when this call retired it; false when it was
/// already retired or there is no such kid.
#[pg_extern(volatile, parallel_unsafe, security_definer, requires = ["jwt_schema"])]
#[search_path(pg_catalog, pg_temp)]
fn retire_jwt_key(kid: Option<&str>) -> bool {
    const FUNCTION: &str = "retire_jwt_key";
    let kid = check_kid(kid, FUNCTION);
    let _writing = writing::Guard::new(&WRITING);
    let args: [DatumWithOid; 1] = [kid.into()];
    let retired = Spi::connect_mut(|client| {
        Ok::<_, SpiError>(run(
            client,
            "UPDATE auth_pg.jwt_keys \
             SET active = false, retired_at = pg_catalog.statement_timestamp() \
             WHERE kid OPERATOR(pg_catalog.=) $1 AND active RETURNING 1",
            &args,
        ))
    })
    .expect("SPI reports errors as ERRORs");
    if retired == 0 {
        return false;
    }
    notify::send(&Invalidation::JwtKeyChanged {
        kid: kid.to_owned(),
    });
    audit::record(AuditEvent {
        action: "jwt_key.retire",
        user_id: None,
        org_id: None,
        subject_id: Some(kid.to_owned()),
        detail: serde_json::json!({}),
    });
    true
}

/// Lists the keys, oldest first, with everything but the key material: for a public key, its
/// JWK (what a JWKS document publishes); for an HMAC secret, nothing. `status` is `active`,
/// `retired`, `not_yet_valid` or `expired` (outside its window).
#[pg_extern(stable, parallel_safe, security_definer, requires = ["jwt_schema"])]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::type_complexity)] // the SQL columns, spelled out for pgrx's SQL generator
fn list_jwt_keys() -> TableIterator<
    'static,
    (
        name!(kid, String),
        name!(algorithm, String),
        name!(status, String),
        name!(can_sign, bool),
        name!(public_jwk, Option<Jsonb>),
        name!(issuer, Option<String>),
        name!(audience, Option<String>),
        name!(not_before, Option<TimestampWithTimeZone>),
        name!(not_after, Option<TimestampWithTimeZone>),
        name!(created_at, TimestampWithTimeZone),
        name!(retired_at, Option<TimestampWithTimeZone>),
    ),
> {
    let rows = Spi::connect(|client| {
        client
            .select(
                "SELECT kid, algorithm, key, \
                        CASE WHEN NOT active THEN 'retired' \
                             WHEN not_before OPERATOR(pg_catalog.>) \
                                  pg_catalog.statement_timestamp() THEN 'not_yet_valid' \
                             WHEN not_after OPERATOR(pg_catalog.<=) \
                                  pg_catalog.statement_timestamp() THEN 'expired' \
                             ELSE 'active' END, \
                        issuer, audience, not_before, not_after, created_at, retired_at \
                 FROM auth_pg.jwt_keys ORDER BY created_at, kid",
                None,
                &[],
            )?
            .map(|row| {
                let kid = row.get::<String>(1)?.unwrap_or_default();
                let algorithm = row.get::<String>(2)?.unwrap_or_default();
                // SECURITY: the key text is parsed here and dropped; only its public part, if
                // any, leaves this function.
                let parsed = row.get::<String>(3)?.and_then(|text| {
                    ParsedKey::parse(Algorithm::parse(&algorithm).ok()?, &text).ok()
                });
                let can_sign = parsed.as_ref().is_some_and(ParsedKey::can_sign);
                let public_jwk = parsed
                    .as_ref()
                    .and_then(|key| key.verifying_key().public_jwk(Some(&kid)))
                    .map(Jsonb);
                Ok((
                    kid,
                    algorithm,
                    row.get::<String>(4)?.unwrap_or_default(),
                    can_sign,
                    public_jwk,
                    row.get::<String>(5)?,
                    row.get::<String>(6)?,
                    row.get::<TimestampWithTimeZone>(7)?,
                    row.get::<TimestampWithTimeZone>(8)?,
                    row.get::<TimestampWithTimeZone>(9)?
                        .expect("created_at is NOT NULL"),
                    row.get::<TimestampWithTimeZone>(10)?,
                ))
            })
            .collect::<Result<Vec<_>, SpiError>>()
    })
    .expect("SPI reports errors as ERRORs");
    TableIterator::new(rows)
}

/// Signs `claims` with the key `kid` (an HMAC secret or a private key, in force) and returns the
/// token, whose header names `alg`, `kid` and `typ`. The claims are signed as given: add `exp`
/// (and `iss` or `aud` when the key expects them). Claims that verification would refuse (a
/// string `exp`, an `aud` that is not strings) are refused here, and so is a token longer than
/// `auth_pg.jwt_max_token_bytes`.
#[pg_extern(volatile, parallel_unsafe, security_definer, requires = ["jwt_schema"])]
#[search_path(pg_catalog, pg_temp)]
fn jwt_sign(claims: Option<Jsonb>, kid: Option<&str>) -> String {
    const FUNCTION: &str = "jwt_sign";
    let claims = claims
        .ok_or(InputError::Null { argument: "claims" })
        .or_raise(FUNCTION);
    let kid = check_kid(kid, FUNCTION);
    let token = keys::with_signing_key(kid, |key| jwt::sign(&claims.0, key, Some(kid)))
        .or_raise(FUNCTION)
        .or_raise(FUNCTION);
    // A token no verification would read is a mistake better caught here.
    let limit = crate::gucs::jwt_policy().max_token_bytes;
    if token.len() > limit {
        AuthPgError::JwtTooLong { limit }.raise(FUNCTION);
    }
    token
}

// ---------------------------------------------------------------------------------------------
// Triggers
// ---------------------------------------------------------------------------------------------

function_info_v1!(pg_finfo_auth_pg_check_jwt_key);

/// The row trigger on `auth_pg.jwt_keys` (jwt.sql): refuses a row with NULL in a NOT NULL
/// column without printing it (see [`edits::check_new_row`]), and a row written by hand whose
/// key does not parse for its algorithm, or whose window is empty, as `add_jwt_key` would. An
/// UPDATE that leaves `kid`, `algorithm` and `key` as they were (retiring the key, naming an
/// issuer, ending its window) does not parse the key again, so that a key stored under older
/// rules can still be retired by hand.
///
/// # Safety
///
/// Called by the trigger manager only.
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_pg_check_jwt_key(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    const FUNCTION: &str = "auth_pg.jwt_keys trigger";
    // SAFETY: the trigger manager passes a TriggerData in fcinfo->context.
    let trigger = unsafe { PgTrigger::from_fcinfo(fcinfo.as_ref().expect("fcinfo")) }
        .expect("called as a trigger");
    let row = edits::check_new_row(&trigger);
    if WRITING.get() == 0 {
        let text = |row: &PgHeapTuple<'_, _>, name: &str| {
            row.get_by_name::<&str>(name)
                .ok()
                .flatten()
                .map(str::to_owned)
        };
        let key_changed = trigger.old().is_none_or(|old| {
            ["kid", "algorithm", "key"]
                .into_iter()
                .any(|name| text(&old, name) != text(&row, name))
        });
        let time = |name| {
            row.get_by_name::<TimestampWithTimeZone>(name)
                .ok()
                .flatten()
        };
        // The errors name what is wrong; no CONTEXT line quotes a COPY's input line.
        edits::without_error_context(|| {
            if key_changed {
                check_kid(text(&row, "kid").as_deref(), FUNCTION);
                let algorithm = check_algorithm(text(&row, "algorithm").as_deref(), FUNCTION);
                // NOT NULL, which check_new_row has checked.
                let key = text(&row, "key").unwrap_or_default();
                ParsedKey::parse(algorithm, &key).or_raise(FUNCTION);
            }
            check_window(time("not_before"), time("not_after"), FUNCTION);
        });
    }
    row.into_trigger_datum()
        .expect("a trigger tuple is never NULL")
}

function_info_v1!(pg_finfo_auth_pg_jwt_keys_changed);

/// The statement trigger on `auth_pg.jwt_keys` (jwt.sql): queues a relcache invalidation of the
/// table, which empties every backend's key cache once the change commits (see [`keys`]). A
/// change made by hand is also announced (`jwt_keys_changed`: forget every key) and audited.
///
/// # Safety
///
/// Called by the trigger manager only.
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_pg_jwt_keys_changed(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: the trigger manager passes a TriggerData in fcinfo->context, whose relation is
    // open; CacheInvalidateRelcache only queues a message for the end of the command.
    unsafe {
        let trigger =
            PgTrigger::from_fcinfo(fcinfo.as_ref().expect("fcinfo")).expect("called as a trigger");
        pg_sys::CacheInvalidateRelcache(trigger.trigger_data().tg_relation);
        if WRITING.get() == 0 {
            edits::announce(&trigger, &Invalidation::JwtKeysChanged, "jwt_keys.edit");
        }
    }
    pg_sys::Datum::from(0)
}
