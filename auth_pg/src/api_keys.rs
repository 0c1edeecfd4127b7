//! Organizations and their API keys: create, validate (one or many), revoke, rotate, list, and
//! record last use.
//!
//! An organization's keys live in its `api_keys` document and, one row per key, in
//! `auth_pg.api_key_lookup`, which validation probes by hash (see api_keys.sql). Every function
//! here that changes keys locks the organization's row first, so concurrent changes to one
//! organization are serialised and none is lost; it then changes the lookup row and the
//! document's element in the same transaction, so a validation never sees one without the
//! other. The document is located by the key's `position`: changing one key rewrites the
//! document (PostgreSQL stores a `jsonb` value whole) but never parses it.

use std::cell::Cell;

use auth_core::input::{self, MAX_NAME_BYTES, MAX_ORG_ID_BYTES};
use auth_core::{CredentialKind, InputError, Invalidation};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::{Array, PgTrigger, Spi};

use crate::audit::{self, AuditEvent};
use crate::check::{self, Checked, Form, Status, statement_time};
use crate::error::{AuthPgError, OrRaise};
use crate::fmgr::function_info_v1;
use crate::jsonb::Jsonb;
use crate::packed::Field;
use crate::storage::{KeyLookup, Rel, Row};
use crate::tokens::{check_metadata, generate, later};
use crate::usage::USAGE;
use crate::{hash_key, notify, writing};

/// Attribute numbers of `auth_pg.api_key_lookup`, checked against the catalog by a test.
#[cfg_attr(not(any(test, feature = "pg_test")), allow(dead_code))]
pub(crate) mod col {
    pub(crate) const KEY_HASH: usize = 1;
    pub(crate) const ORG_ID: usize = 2;
    pub(crate) const KEY_ID: usize = 3;
    pub(crate) const PREFIX: usize = 4;
    pub(crate) const NAME: usize = 5;
    pub(crate) const SCOPES: usize = 6;
    pub(crate) const METADATA: usize = 7;
    pub(crate) const CREATED_AT: usize = 8;
    pub(crate) const EXPIRES_AT: usize = 9;
    pub(crate) const REVOKED_AT: usize = 10;
    pub(crate) const LAST_USED_AT: usize = 11;
    pub(crate) const POSITION: usize = 12;
}

/// API keys are checked by hash in `auth_pg.api_key_lookup`.
pub(crate) struct ApiKeys;

impl Checked<6> for ApiKeys {
    const KIND: CredentialKind = CredentialKind::ApiKey;
    const TABLE: Rel = Rel::ApiKeyLookup;
    const INDEX: Rel = Rel::ApiKeyLookupHashIndex;
    const HASH_COLUMN: usize = col::KEY_HASH;

    fn judge(row: &Row<'_>, now: pg_sys::TimestampTz) -> Status {
        check::judge_times(row, col::REVOKED_AT, col::EXPIRES_AT, now)
    }

    const PACKED: [Field; 6] = [
        Field::Text,
        Field::Text,
        Field::Text,
        Field::TextArray,
        Field::TimestampTz,
        Field::Jsonb,
    ];

    fn fields(row: &Row<'_>) -> [Option<pg_sys::Datum>; 6] {
        [
            row.datum(col::ORG_ID),
            row.datum(col::KEY_ID),
            row.datum(col::NAME),
            row.datum(col::SCOPES),
            row.datum(col::EXPIRES_AT),
            row.datum(col::METADATA),
        ]
    }

    fn on_valid(hash: &[u8; 32], now: pg_sys::TimestampTz) {
        USAGE.record(hash, now);
    }
}

function_info_v1!(pg_finfo_auth_pg_validate_api_key);

/// `auth_pg.validate_api_key(key text) RETURNS auth_pg.api_key_validation` (see api_keys.sql).
///
/// # Safety
///
/// Called by fmgr only, with the argument and result declared in api_keys.sql.
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_pg_validate_api_key(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: fmgr calls this as declared in api_keys.sql.
    unsafe { check::check_single::<ApiKeys, 6>(fcinfo, Form::Row) }
}

function_info_v1!(pg_finfo_auth_pg_validate_api_key_packed);

/// `auth_pg.validate_api_key_packed(key text) RETURNS bytea`: `validate_api_key`'s answer in
/// the packed form (see packed.rs).
///
/// # Safety
///
/// Called by fmgr only, with the argument and result declared in api_keys.sql.
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_pg_validate_api_key_packed(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: fmgr calls this as declared in api_keys.sql.
    unsafe { check::check_single::<ApiKeys, 6>(fcinfo, Form::Packed) }
}

function_info_v1!(pg_finfo_auth_pg_validate_api_keys);

/// `auth_pg.validate_api_keys(keys text[]) RETURNS SETOF auth_pg.api_key_validation`.
///
/// # Safety
///
/// Called by fmgr only, with the argument and result declared in api_keys.sql.
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_pg_validate_api_keys(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: fmgr calls this as declared in api_keys.sql.
    unsafe { check::check_batch::<ApiKeys, 6>(fcinfo, "validate_api_keys", "keys") }
}

thread_local! {
    /// Set while a function of this module writes an organization's document itself (having
    /// already written the lookup rows), so that the sync trigger does not rebuild them.
    static WRITING: Cell<u32> = const { Cell::new(0) };
}

fn check_org_id(org_id: Option<&str>) -> Result<&str, InputError> {
    input::check_identifier("org_id", org_id, MAX_ORG_ID_BYTES)
}

/// Locks `org_id`'s row for the rest of the transaction (without reading its document), or
/// raises when there is no such organization.
fn lock_organization(client: &mut SpiClient<'_>, org_id: &str, function: &'static str) {
    let args: [DatumWithOid; 1] = [org_id.into()];
    let found = client
        .update(
            "SELECT 1 FROM auth_pg.organizations WHERE org_id OPERATOR(pg_catalog.=) $1 FOR UPDATE",
            Some(1),
            &args,
        )
        .map(|table| !table.is_empty())
        .unwrap_or(false);
    if !found {
        AuthPgError::UnknownOrganization.raise(function);
    }
}

/// Runs a data-modifying statement within `client` and returns how many rows it touched.
fn run(client: &mut SpiClient<'_>, sql: &str, args: &[DatumWithOid<'_>]) -> usize {
    client
        .update(sql, None, args)
        .map(|table| table.len())
        .expect("SPI reports errors as ERRORs")
}

/// Creates an organization with no keys.
#[pg_extern(volatile, parallel_unsafe, security_definer, requires = ["api_keys_schema"])]
#[search_path(pg_catalog, pg_temp)]
fn create_organization(org_id: Option<&str>, name: Option<&str>) {
    const FUNCTION: &str = "create_organization";
    let org_id = check_org_id(org_id).or_raise(FUNCTION);
    let name = input::check_identifier("name", name, MAX_NAME_BYTES).or_raise(FUNCTION);
    let args: [DatumWithOid; 2] = [org_id.into(), name.into()];
    let _writing = writing::Guard::new(&WRITING);
    let inserted = Spi::connect_mut(|client| {
        run(
            client,
            "INSERT INTO auth_pg.organizations (org_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &args,
        )
    });
    if inserted == 0 {
        AuthPgError::OrganizationExists.raise(FUNCTION);
    }
    audit::record(AuditEvent {
        action: "organization.create",
        user_id: None,
        org_id: Some(org_id),
        subject_id: None,
        detail: serde_json::json!({}),
    });
}

/// Deletes an organization and every one of its keys. Returns false when there was none.
#[pg_extern(volatile, parallel_unsafe, security_definer, requires = ["api_keys_schema"])]
#[search_path(pg_catalog, pg_temp)]
fn delete_organization(org_id: Option<&str>) -> bool {
    const FUNCTION: &str = "delete_organization";
    let org_id = check_org_id(org_id).or_raise(FUNCTION);
    let args: [DatumWithOid; 1] = [org_id.into()];
    let _writing = writing::Guard::new(&WRITING);
    let deleted = Spi::connect_mut(|client| {
        run(
            client,
            "DELETE FROM auth_pg.organizations WHERE org_id OPERATOR(pg_catalog.=) $1",
            &args,
        )
    });
    if deleted == 0 {
        return false;
    }
    notify::send(&Invalidation::OrganizationKeysChanged {
        org_id: org_id.to_owned(),
    });
    audit::record(AuditEvent {
        action: "organization.delete",
        user_id: None,
        org_id: Some(org_id),
        subject_id: None,
        detail: serde_json::json!({}),
    });
    true
}

/// A key being added to an organization.
struct NewKey<'a> {
    org_id: &'a str,
    name: &'a str,
    scopes: Vec<String>,
    expires_at: Option<TimestampWithTimeZone>,
    metadata: Option<serde_json::Value>,
}

/// Adds a key to a locked organization: its lookup row and its document element. Returns the
/// key and its id.
fn add_key(
    client: &mut SpiClient<'_>,
    key: NewKey<'_>,
    function: &'static str,
) -> (String, String) {
    let credential = generate(CredentialKind::ApiKey, function);
    let key_id = auth_core::random_id("key_")
        .map_err(|_| AuthPgError::Randomness)
        .or_raise(function);
    let hash = hash_key::hash_credential(credential.expose_secret().as_bytes());
    let now = TimestampWithTimeZone::try_from(statement_time()).expect("a valid timestamp");
    let args: [DatumWithOid; 9] = [
        hash.as_slice().into(),
        key.org_id.into(),
        key_id.as_str().into(),
        credential.display_prefix().into(),
        key.name.into(),
        key.scopes.clone().into(),
        key.metadata.clone().map(Jsonb).into(),
        now.into(),
        key.expires_at.into(),
    ];
    // Append the element, and learn its position from the new document (whose length is known
    // without reading it again).
    let position: Option<i32> = client
        .update(
            "UPDATE auth_pg.organizations SET \
                 api_keys = api_keys OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_array(\
                     pg_catalog.jsonb_build_object(\
                         'id', $3, 'hash', pg_catalog.encode($1, 'hex'), 'prefix', $4, 'name', $5, \
                         'scopes', pg_catalog.to_jsonb($6), 'metadata', $7, \
                         'created_at', pg_catalog.to_jsonb($8), 'expires_at', pg_catalog.to_jsonb($9), \
                         'revoked_at', NULL, 'last_used_at', NULL)), \
                 updated_at = $8 \
             WHERE org_id OPERATOR(pg_catalog.=) $2 \
             RETURNING pg_catalog.jsonb_array_length(api_keys) OPERATOR(pg_catalog.-) 1",
            Some(1),
            &args,
        )
        .ok()
        .and_then(|table| table.first().get_one::<i32>().ok().flatten());
    let Some(position) = position else {
        AuthPgError::UnknownOrganization.raise(function);
    };
    let args: [DatumWithOid; 10] = [
        hash.as_slice().into(),
        key.org_id.into(),
        key_id.as_str().into(),
        credential.display_prefix().into(),
        key.name.into(),
        key.scopes.into(),
        key.metadata.map(Jsonb).into(),
        now.into(),
        key.expires_at.into(),
        position.into(),
    ];
    run(
        client,
        "INSERT INTO auth_pg.api_key_lookup \
             (key_hash, org_id, key_id, prefix, name, scopes, metadata, created_at, expires_at, position) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &args,
    );
    (credential.into_secret(), key_id)
}

fn check_scopes(scopes: Option<Array<'_, &str>>, function: &'static str) -> Vec<String> {
    input::normalize_scopes(scopes.iter().flat_map(|array| array.iter()))
        .or_raise(function)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// Creates an API key for an organization and returns it (shown this once) with its id.
#[pg_extern(volatile, parallel_unsafe, security_definer, requires = ["api_keys_schema"])]
#[search_path(pg_catalog, pg_temp)]
fn create_api_key(
    org_id: Option<&str>,
    name: Option<&str>,
    scopes: default!(Option<Array<'_, &str>>, "'{}'"),
    expires_at: default!(Option<TimestampWithTimeZone>, "NULL"),
    metadata: default!(Option<Jsonb>, "NULL"),
) -> TableIterator<'static, (name!(key, String), name!(key_id, String))> {
    const FUNCTION: &str = "create_api_key";
    let org_id = check_org_id(org_id).or_raise(FUNCTION);
    let name = input::check_identifier("name", name, MAX_NAME_BYTES).or_raise(FUNCTION);
    let scopes = check_scopes(scopes, FUNCTION);
    let metadata = check_metadata(metadata, FUNCTION);
    if expires_at.is_some_and(|e| e.into_inner() <= statement_time()) {
        AuthPgError::from(InputError::NotInFuture {
            argument: "expires_at",
        })
        .raise(FUNCTION);
    }
    let _writing = writing::Guard::new(&WRITING);
    let (key, key_id) = Spi::connect_mut(|client| {
        lock_organization(client, org_id, FUNCTION);
        add_key(
            client,
            NewKey {
                org_id,
                name,
                scopes,
                expires_at,
                metadata: metadata.map(|m| m.0),
            },
            FUNCTION,
        )
    });
    audit::record(AuditEvent {
        action: "api_key.create",
        user_id: None,
        org_id: Some(org_id),
        subject_id: Some(key_id.clone()),
        detail: serde_json::json!({ "name": name }),
    });
    TableIterator::once((key, key_id))
}

/// Revokes an API key at once. Returns true when this call revoked it; false when the key was
/// already revoked, or there is no such key or organization.
#[pg_extern(volatile, parallel_unsafe, security_definer, requires = ["api_keys_schema"])]
#[search_path(pg_catalog, pg_temp)]
fn revoke_api_key(org_id: Option<&str>, key_id: Option<&str>) -> bool {
    const FUNCTION: &str = "revoke_api_key";
    let org_id = check_org_id(org_id).or_raise(FUNCTION);
    let key_id = input::check_identifier("key_id", key_id, MAX_NAME_BYTES).or_raise(FUNCTION);
    let now = TimestampWithTimeZone::try_from(statement_time()).expect("a valid timestamp");
    let _writing = writing::Guard::new(&WRITING);
    let revoked = Spi::connect_mut(|client| {
        let exists: [DatumWithOid; 1] = [org_id.into()];
        let found = client
            .update(
                "SELECT 1 FROM auth_pg.organizations WHERE org_id OPERATOR(pg_catalog.=) $1 FOR UPDATE",
                Some(1),
                &exists,
            )
            .map(|t| !t.is_empty())
            .unwrap_or(false);
        if !found {
            return false;
        }
        let args: [DatumWithOid; 3] = [org_id.into(), key_id.into(), now.into()];
        let position: Option<i32> = client
            .update(
                "UPDATE auth_pg.api_key_lookup SET revoked_at = $3 \
                 WHERE org_id OPERATOR(pg_catalog.=) $1 AND key_id OPERATOR(pg_catalog.=) $2 \
                   AND revoked_at IS NULL \
                 RETURNING position",
                None,
                &args,
            )
            .ok()
            .and_then(|table| {
                if table.is_empty() {
                    None
                } else {
                    table.first().get_one::<i32>().ok().flatten()
                }
            });
        let Some(position) = position else {
            return false;
        };
        set_document_field(
            client,
            org_id,
            key_id,
            position,
            "revoked_at",
            now,
            None,
            FUNCTION,
        );
        true
    });
    if revoked {
        notify::send(&Invalidation::ApiKeyRevoked {
            org_id: org_id.to_owned(),
            key_id: key_id.to_owned(),
        });
        audit::record(AuditEvent {
            action: "api_key.revoke",
            user_id: None,
            org_id: Some(org_id),
            subject_id: Some(key_id.to_owned()),
            detail: serde_json::json!({}),
        });
    }
    revoked
}

/// Sets `field` of the key at `position` in `org_id`'s document to `value` (and, when given,
/// `replaced_by` to the id of the key that replaced it), in one rewrite of the document,
/// checking that the element there is the key `key_id`.
#[allow(clippy::too_many_arguments)] // one field, its value, and where: all needed
fn set_document_field(
    client: &mut SpiClient<'_>,
    org_id: &str,
    key_id: &str,
    position: i32,
    field: &str,
    value: TimestampWithTimeZone,
    replaced_by: Option<&str>,
    function: &'static str,
) {
    let path = vec![position.to_string()];
    let args: [DatumWithOid; 6] = [
        org_id.into(),
        position.into(),
        path.into(),
        value.into(),
        field.into(),
        replaced_by.into(),
    ];
    // Check on the new document (already in memory) that the element changed is the key's; a
    // position past the end (a document shortened by hand behind the trigger's back) leaves
    // the document as it was and fails that check.
    let changed: Option<String> = client
        .update(
            "UPDATE auth_pg.organizations SET \
                 api_keys = COALESCE(pg_catalog.jsonb_set(api_keys, $3, \
                     ((api_keys OPERATOR(pg_catalog.->) $2) \
                      OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object($5, $4)) \
                     OPERATOR(pg_catalog.||) CASE WHEN $6 IS NULL THEN '{}'::pg_catalog.jsonb \
                         ELSE pg_catalog.jsonb_build_object('replaced_by', $6) END), \
                     api_keys), \
                 updated_at = pg_catalog.statement_timestamp() \
             WHERE org_id OPERATOR(pg_catalog.=) $1 \
             RETURNING (api_keys OPERATOR(pg_catalog.->) $2) OPERATOR(pg_catalog.->>) 'id'",
            Some(1),
            &args,
        )
        .ok()
        .and_then(|table| table.first().get_one::<String>().ok().flatten());
    if changed.as_deref() != Some(key_id) {
        AuthPgError::DocumentOutOfStep.raise(function);
    }
}

/// Replaces an API key: returns a new key (with the old key's name, scopes, metadata and
/// expiry) and its id; the old key stays valid until `grace` has passed, then reads as expired.
#[pg_extern(volatile, parallel_unsafe, security_definer, requires = ["api_keys_schema"])]
#[search_path(pg_catalog, pg_temp)]
fn rotate_api_key(
    org_id: Option<&str>,
    key_id: Option<&str>,
    grace: Option<Interval>,
) -> TableIterator<'static, (name!(key, String), name!(key_id, String))> {
    const FUNCTION: &str = "rotate_api_key";
    let org_id = check_org_id(org_id).or_raise(FUNCTION);
    let key_id = input::check_identifier("key_id", key_id, MAX_NAME_BYTES).or_raise(FUNCTION);
    let grace = grace
        .ok_or(InputError::Null { argument: "grace" })
        .or_raise(FUNCTION);
    let now = TimestampWithTimeZone::try_from(statement_time()).expect("a valid timestamp");
    let grace_ends = later(now, grace, "grace", FUNCTION);
    if grace_ends.into_inner() < now.into_inner() {
        AuthPgError::from(InputError::Negative { argument: "grace" }).raise(FUNCTION);
    }
    let _writing = writing::Guard::new(&WRITING);
    let (key, new_key_id) = Spi::connect_mut(|client| {
        lock_organization(client, org_id, FUNCTION);
        let args: [DatumWithOid; 2] = [org_id.into(), key_id.into()];
        type OldKey = (
            Option<String>,
            Option<Vec<String>>,
            Option<Jsonb>,
            Option<TimestampWithTimeZone>,
            Option<TimestampWithTimeZone>,
            Option<i32>,
            Option<bool>,
        );
        let old: Option<OldKey> = client
            .select(
                // replaced_by lives in the document only: a key is rotated once, because its
                // replacement inherits its expiry, which a first rotation has already cut to
                // the end of its grace period.
                "SELECT l.name, l.scopes, l.metadata, l.expires_at, l.revoked_at, l.position, \
                        ((o.api_keys OPERATOR(pg_catalog.->) l.position) \
                            OPERATOR(pg_catalog.->>) 'replaced_by') IS NOT NULL \
                 FROM auth_pg.api_key_lookup l \
                 JOIN auth_pg.organizations o ON o.org_id OPERATOR(pg_catalog.=) l.org_id \
                 WHERE l.org_id OPERATOR(pg_catalog.=) $1 AND l.key_id OPERATOR(pg_catalog.=) $2",
                Some(1),
                &args,
            )
            .ok()
            .and_then(|table| {
                if table.is_empty() {
                    return None;
                }
                let row = table.first();
                Some((
                    row.get::<String>(1).ok().flatten(),
                    row.get::<Vec<String>>(2).ok().flatten(),
                    row.get::<Jsonb>(3).ok().flatten(),
                    row.get::<TimestampWithTimeZone>(4).ok().flatten(),
                    row.get::<TimestampWithTimeZone>(5).ok().flatten(),
                    row.get::<i32>(6).ok().flatten(),
                    row.get::<bool>(7).ok().flatten(),
                ))
            });
        let Some((Some(name), scopes, metadata, expires_at, revoked_at, Some(position), replaced)) =
            old
        else {
            AuthPgError::UnknownApiKey.raise(FUNCTION);
        };
        if revoked_at.is_some() {
            AuthPgError::ApiKeyNotRotatable {
                reason: "it is revoked",
            }
            .raise(FUNCTION);
        }
        if expires_at.is_some_and(|e| e.into_inner() <= now.into_inner()) {
            AuthPgError::ApiKeyNotRotatable {
                reason: "it has expired",
            }
            .raise(FUNCTION);
        }
        if replaced == Some(true) {
            AuthPgError::ApiKeyNotRotatable {
                reason: "it was rotated already",
            }
            .raise(FUNCTION);
        }
        // The old key now ends at the end of the grace period, or earlier if it already did.
        let old_ends = match expires_at {
            Some(e) if e.into_inner() < grace_ends.into_inner() => e,
            _ => grace_ends,
        };
        let replacement = add_key(
            client,
            NewKey {
                org_id,
                name: &name,
                scopes: scopes.unwrap_or_default(),
                expires_at,
                metadata: metadata.map(|m| m.0),
            },
            FUNCTION,
        );
        let update: [DatumWithOid; 3] = [org_id.into(), key_id.into(), old_ends.into()];
        run(
            client,
            "UPDATE auth_pg.api_key_lookup SET expires_at = $3 \
             WHERE org_id OPERATOR(pg_catalog.=) $1 AND key_id OPERATOR(pg_catalog.=) $2",
            &update,
        );
        set_document_field(
            client,
            org_id,
            key_id,
            position,
            "expires_at",
            old_ends,
            Some(&replacement.1),
            FUNCTION,
        );
        replacement
    });
    notify::send(&Invalidation::ApiKeyRotated {
        org_id: org_id.to_owned(),
        key_id: key_id.to_owned(),
        new_key_id: new_key_id.clone(),
    });
    audit::record(AuditEvent {
        action: "api_key.rotate",
        user_id: None,
        org_id: Some(org_id),
        subject_id: Some(key_id.to_owned()),
        detail: serde_json::json!({ "new_key_id": new_key_id, "grace_ends_at": grace_ends }),
    });
    TableIterator::once((key, new_key_id))
}

/// Lists an organization's keys, oldest first: everything but the keys and their hashes.
/// Raises for an unknown organization.
#[pg_extern(stable, parallel_safe, security_definer, requires = ["api_keys_schema"])]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::type_complexity)] // the SQL columns, spelled out for pgrx's SQL generator
fn list_api_keys(
    org_id: Option<&str>,
) -> TableIterator<
    'static,
    (
        name!(key_id, String),
        name!(prefix, String),
        name!(name, String),
        name!(scopes, Vec<String>),
        name!(metadata, Option<Jsonb>),
        name!(created_at, TimestampWithTimeZone),
        name!(expires_at, Option<TimestampWithTimeZone>),
        name!(revoked_at, Option<TimestampWithTimeZone>),
        name!(last_used_at, Option<TimestampWithTimeZone>),
        name!(status, String),
    ),
> {
    const FUNCTION: &str = "list_api_keys";
    let org_id = check_org_id(org_id).or_raise(FUNCTION);
    let args: [DatumWithOid; 1] = [org_id.into()];
    let rows = Spi::connect(|client| {
        let exists = client
            .select(
                "SELECT 1 FROM auth_pg.organizations WHERE org_id OPERATOR(pg_catalog.=) $1",
                Some(1),
                &args,
            )?
            .len();
        if exists == 0 {
            AuthPgError::UnknownOrganization.raise(FUNCTION);
        }
        client
            .select(
                "SELECT key_id, prefix, name, scopes, metadata, created_at, expires_at, revoked_at, \
                        last_used_at, \
                        CASE WHEN revoked_at IS NOT NULL THEN 'revoked' \
                             WHEN expires_at OPERATOR(pg_catalog.<=) pg_catalog.statement_timestamp() \
                                 THEN 'expired' \
                             ELSE 'valid' END \
                 FROM auth_pg.api_key_lookup WHERE org_id OPERATOR(pg_catalog.=) $1 \
                 ORDER BY position",
                None,
                &args,
            )?
            .map(|row| {
                Ok((
                    row.get::<String>(1)?.unwrap_or_default(),
                    row.get::<String>(2)?.unwrap_or_default(),
                    row.get::<String>(3)?.unwrap_or_default(),
                    row.get::<Vec<String>>(4)?.unwrap_or_default(),
                    row.get::<Jsonb>(5)?,
                    row.get::<TimestampWithTimeZone>(6)?
                        .expect("created_at is NOT NULL"),
                    row.get::<TimestampWithTimeZone>(7)?,
                    row.get::<TimestampWithTimeZone>(8)?,
                    row.get::<TimestampWithTimeZone>(9)?,
                    row.get::<String>(10)?.unwrap_or_default(),
                ))
            })
            .collect::<Result<Vec<_>, spi::SpiError>>()
    })
    .expect("SPI reports errors as ERRORs");
    TableIterator::new(rows)
}

/// Moves the last-use times noted in shared memory (for this database) into the lookup rows
/// and the documents, one document rewrite per organization. Returns how many keys it updated.
#[pg_extern(volatile, parallel_unsafe, security_definer, requires = ["api_keys_schema"])]
#[search_path(pg_catalog, pg_temp)]
fn flush_api_key_usage() -> i64 {
    // SAFETY: both take a NUL-terminated command name and raise the standard ERROR (25006)
    // before anything is taken from shared memory.
    unsafe {
        pg_sys::PreventCommandIfReadOnly(c"flush_api_key_usage()".as_ptr());
        pg_sys::PreventCommandDuringRecovery(c"flush_api_key_usage()".as_ptr());
    }
    // A flush that fails (a lock or statement timeout, a cancel), or that the caller rolls back,
    // puts back what it took.
    let taken = USAGE.take_until_commit();
    if taken.is_empty() {
        return 0;
    }
    write_usage(&taken)
}

/// Writes noted uses into the lookup rows and the documents; see `flush_api_key_usage`.
fn write_usage(taken: &[([u8; 32], pg_sys::TimestampTz)]) -> i64 {
    let hashes: Vec<Vec<u8>> = taken.iter().map(|(h, _)| h.to_vec()).collect();
    let stamps: Vec<TimestampWithTimeZone> = taken
        .iter()
        .filter_map(|&(_, t)| TimestampWithTimeZone::try_from(t).ok())
        .collect();
    let args: [DatumWithOid; 2] = [hashes.into(), stamps.into()];
    let _writing = writing::Guard::new(&WRITING);
    Spi::connect_mut(|client| {
        // Lock the organizations concerned in a fixed order (no deadlock with each other), then
        // update the rows and, in one pass per organization, the documents.
        let updated = client
            .update(
                "WITH used AS ( \
                     SELECT u.h, pg_catalog.max(u.t) AS t \
                     FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.bytea[]), \
                                    pg_catalog.unnest($2::pg_catalog.timestamptz[])) AS u(h, t) \
                     GROUP BY u.h), \
                 locked AS ( \
                     SELECT o.org_id FROM auth_pg.organizations o \
                     WHERE o.org_id IN (SELECT l.org_id FROM auth_pg.api_key_lookup l \
                                        JOIN used ON l.key_hash OPERATOR(pg_catalog.=) used.h) \
                     ORDER BY o.org_id FOR UPDATE), \
                 rows AS ( \
                     UPDATE auth_pg.api_key_lookup l \
                     SET last_used_at = greatest(l.last_used_at, used.t) \
                     FROM used WHERE l.key_hash OPERATOR(pg_catalog.=) used.h \
                       AND l.org_id IN (SELECT org_id FROM locked) \
                     RETURNING l.org_id, l.position, l.last_used_at) \
                 UPDATE auth_pg.organizations o SET api_keys = ( \
                     SELECT pg_catalog.jsonb_agg( \
                         CASE WHEN r.position IS NULL THEN e.value \
                              ELSE pg_catalog.jsonb_set(e.value, '{last_used_at}', \
                                                        pg_catalog.to_jsonb(r.last_used_at)) END \
                         ORDER BY e.ordinality) \
                     FROM pg_catalog.jsonb_array_elements(o.api_keys) WITH ORDINALITY AS e \
                     LEFT JOIN rows r ON r.org_id OPERATOR(pg_catalog.=) o.org_id \
                                     AND r.position OPERATOR(pg_catalog.=) \
                                         (e.ordinality OPERATOR(pg_catalog.-) 1)) \
                 WHERE o.org_id IN (SELECT org_id FROM rows) \
                 RETURNING (SELECT pg_catalog.count(*) FROM rows WHERE rows.org_id OPERATOR(pg_catalog.=) o.org_id)",
                None,
                &args,
            )
            .expect("SPI reports errors as ERRORs");
        updated
            .map(|row| row.get::<i64>(1).ok().flatten().unwrap_or(0))
            .sum::<i64>()
    })
}

/// Whether a row of `api_key_lookup` of an organization other than `org_id` holds one of
/// `hashes`, as a statement starting now would see it (this transaction's rows included).
///
/// Probed through the hash index directly rather than with a join the planner chooses: while a
/// bulk load (COPY, a restore) fills the table there are no statistics to plan by, and the join
/// it chose scanned the whole table for every organization loaded, so that loading 200 000
/// organizations did not finish in 20 minutes (it takes 100 s now).
fn hashes_of_another_organization(org_id: &str, hashes: &[Vec<u8>]) -> bool {
    // SAFETY: the same snapshot a statement run through SPI now would take (the transaction's
    // snapshot in REPEATABLE READ, a new one in READ COMMITTED) with this command's rows
    // visible; pushed and popped around the probes, which end before it is popped.
    unsafe {
        pg_sys::CommandCounterIncrement();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        pg_sys::UpdateActiveSnapshotCommandId();
    }
    let mut lookup = KeyLookup::new(Rel::ApiKeyLookup, Rel::ApiKeyLookupHashIndex, col::KEY_HASH);
    let shared = hashes.iter().any(|hash| {
        let other = |row: &Row<'_>| row.text(col::ORG_ID).as_deref() != Some(org_id);
        lookup.find_where(hash, other, |_| ()).is_some()
    });
    drop(lookup);
    // SAFETY: pushed above; an ERROR in between pops it with the transaction's abort.
    unsafe { pg_sys::PopActiveSnapshot() };
    shared
}

function_info_v1!(pg_finfo_auth_pg_sync_api_key_lookup);

/// The trigger on `auth_pg.organizations` (see api_keys.sql): when a document is written by
/// anything but this module (a hand edit, a restore), checks it and rebuilds the
/// organization's lookup rows from it; announces and audits the change.
///
/// # Safety
///
/// Called by the trigger manager only.
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_pg_sync_api_key_lookup(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: the trigger manager passes a TriggerData in fcinfo->context.
    let trigger = unsafe { PgTrigger::from_fcinfo(fcinfo.as_ref().expect("fcinfo")) }
        .expect("called as a trigger");
    if WRITING.get() > 0 {
        return pg_sys::Datum::from(0);
    }
    let event = trigger.event();
    // An organization renamed by hand: its lookup rows follow (ON UPDATE CASCADE), and caches
    // must forget the keys they hold under the old id too.
    let renamed_from = if event.fired_by_update() {
        let old_id = trigger
            .old()
            .and_then(|old| old.get_by_name::<String>("org_id").ok().flatten());
        let new_id = trigger
            .new()
            .and_then(|new| new.get_by_name::<String>("org_id").ok().flatten());
        old_id.filter(|old_id| Some(old_id) != new_id.as_ref())
    } else {
        None
    };
    let (row, action) = if event.fired_by_delete() {
        (trigger.old(), "organization.delete")
    } else {
        (trigger.new(), "api_keys.edit")
    };
    let Some(row) = row else {
        return pg_sys::Datum::from(0);
    };
    let org_id: String = row
        .get_by_name("org_id")
        .ok()
        .flatten()
        .expect("org_id is NOT NULL");
    if !event.fired_by_delete() {
        let document: Jsonb = row
            .get_by_name("api_keys")
            .ok()
            .flatten()
            .expect("api_keys is NOT NULL");
        auth_core::api_keys::check_document(&document.0).or_raise("auth_pg.organizations trigger");
        let args: [DatumWithOid; 2] = [org_id.as_str().into(), document.into()];
        let hashes = Spi::connect_mut(|client| {
            run(
                client,
                "DELETE FROM auth_pg.api_key_lookup WHERE org_id OPERATOR(pg_catalog.=) $1",
                &args[..1],
            );
            let inserted = client.update(
                "INSERT INTO auth_pg.api_key_lookup \
                     (key_hash, org_id, key_id, prefix, name, scopes, metadata, created_at, \
                      expires_at, revoked_at, last_used_at, position) \
                 SELECT pg_catalog.decode(k.hash, 'hex'), $1, k.id, coalesce(k.prefix, ''), \
                        k.name, coalesce(k.scopes, '{}'), k.metadata, k.created_at, \
                        k.expires_at, k.revoked_at, k.last_used_at, \
                        (e.ordinality OPERATOR(pg_catalog.-) 1)::pg_catalog.int4 \
                 FROM pg_catalog.jsonb_array_elements($2) WITH ORDINALITY AS e, \
                      pg_catalog.jsonb_to_record(e.value) AS k(id text, hash text, prefix text, \
                          name text, scopes text[], metadata jsonb, created_at timestamptz, \
                          expires_at timestamptz, revoked_at timestamptz, last_used_at timestamptz) \
                 RETURNING key_hash",
                None,
                &args,
            )?;
            inserted
                .map(|row| row.get::<Vec<u8>>(1).map(Option::unwrap_or_default))
                .collect::<Result<Vec<_>, _>>()
        })
        .expect("SPI reports errors as ERRORs");
        // A key is found by its hash alone, so it may belong to one organization only. (Keys
        // auth_pg makes are random; only a copied element can break this.)
        if hashes_of_another_organization(&org_id, &hashes) {
            AuthPgError::KeyOfAnotherOrganization.raise("auth_pg.organizations trigger");
        }
    }
    notify::send(&Invalidation::OrganizationKeysChanged {
        org_id: org_id.clone(),
    });
    if let Some(old_id) = &renamed_from {
        notify::send(&Invalidation::OrganizationKeysChanged {
            org_id: old_id.clone(),
        });
    }
    let detail = match &renamed_from {
        Some(old_id) => serde_json::json!({ "by_hand": true, "renamed_from": old_id }),
        None => serde_json::json!({ "by_hand": true }),
    };
    audit::record(AuditEvent {
        action,
        user_id: None,
        org_id: Some(&org_id),
        subject_id: None,
        detail,
    });
    pg_sys::Datum::from(0)
}
