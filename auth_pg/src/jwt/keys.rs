//! The backend's JWT keys and the tokens it verified, and how a change of the key table reaches
//! them.
//!
//! # Invalidation
//!
//! Each backend keeps the rows of `auth_pg.jwt_keys` in force (parsing a key the first time a
//! token names it) and an `auth_core::jwt::VerifiedCache`. Both are derived from the table and
//! emptied together whenever this backend processes a relcache invalidation of it:
//!
//! - every statement that changes the table fires `jwt_keys_invalidate`, which calls
//!   `CacheInvalidateRelcache` on it. PostgreSQL queues that message with the transaction: it
//!   reaches the writing backend at its next command boundary (when the change becomes visible
//!   to it), is undone locally if the transaction or subtransaction aborts (the writer then
//!   processes it again, so anything read from the aborted change is dropped), and at commit is
//!   sent to every other backend, after the transaction has become visible to new snapshots.
//!   Standbys replay it with the commit record.
//! - Each verification first calls `AcceptInvalidationMessages` (a read of one flag when
//!   nothing is pending), so a change committed before a verification starts is seen by it,
//!   however long the verifying transaction has been open; then it compares the count of the
//!   table's invalidations (`storage::invalidations`) with the count its caches were filled
//!   under, and empties them if they differ.
//! - Rows are (re)read with the newest snapshot (`storage::scan_latest`), not the transaction's:
//!   in a REPEATABLE READ transaction, a reload from the transaction snapshot could store the
//!   rows as they were before a change whose invalidation was just consumed, and keep them
//!   until the next change. The snapshot is taken after the table is locked, which processes
//!   pending invalidations, so what is read is at least as new as every invalidation counted;
//!   an invalidation that arrives later changes the count, and the next verification reloads.
//!
//! A repeated token therefore costs no table access at all, and a token naming an unknown kid
//! costs a hash map lookup.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use auth_core::jwt::{
    self, Algorithm, KeyEntry, ParsedKey, Policy, SigningKey, Status, TokenKey, Verification,
    VerifiedCache, VerifyingKey,
};
use auth_core::packed::POSTGRES_EPOCH_UNIX_SECONDS;
use pgrx::pg_sys::{self, Datum};
use serde_json::Value;

use crate::check::statement_time;
use crate::gucs;
use crate::jsonb;
use crate::storage::{self, Rel, Row};

/// Attribute numbers of `auth_pg.jwt_keys`, checked against the catalog by a test.
#[cfg_attr(not(any(test, feature = "pg_test")), allow(dead_code))]
pub(crate) mod col {
    pub(crate) const KID: usize = 1;
    pub(crate) const ALGORITHM: usize = 2;
    pub(crate) const KEY: usize = 3;
    pub(crate) const ISSUER: usize = 4;
    pub(crate) const AUDIENCE: usize = 5;
    pub(crate) const ACTIVE: usize = 6;
    pub(crate) const NOT_BEFORE: usize = 7;
    pub(crate) const NOT_AFTER: usize = 8;
    pub(crate) const CREATED_AT: usize = 9;
    pub(crate) const RETIRED_AT: usize = 10;
}

const MICROS: i64 = 1_000_000;

/// A `timestamptz` as Unix seconds, rounded down.
pub(crate) fn unix_seconds_floor(at: pg_sys::TimestampTz) -> i64 {
    at.div_euclid(MICROS)
        .saturating_add(POSTGRES_EPOCH_UNIX_SECONDS)
}

/// A `timestamptz` as Unix seconds, rounded up.
pub(crate) fn unix_seconds_ceil(at: pg_sys::TimestampTz) -> i64 {
    let seconds = at.div_euclid(MICROS) + i64::from(at.rem_euclid(MICROS) != 0);
    seconds.saturating_add(POSTGRES_EPOCH_UNIX_SECONDS)
}

/// The moment tokens are judged at: the statement's start, as for every check of auth_pg.
pub(crate) fn now() -> i64 {
    unix_seconds_floor(statement_time())
}

/// A row of `auth_pg.jwt_keys` in force, as read; its key is parsed when first needed.
struct StoredKey {
    /// `None` for an algorithm the table's CHECK constraint would have refused.
    algorithm: Option<Algorithm>,
    /// SECURITY: key material; never formatted.
    text: String,
    issuer: Option<String>,
    audience: Option<String>,
    not_before: Option<i64>,
    not_after: Option<i64>,
    parsed: OnceCell<Option<UsableKey>>,
}

/// A parsed key with its rules.
pub(crate) struct UsableKey {
    pub(crate) entry: KeyEntry,
    pub(crate) signing: Option<SigningKey>,
}

impl StoredKey {
    fn read(row: &Row<'_>) -> Option<(String, Self)> {
        let kid = row.text(col::KID)?;
        let stored = Self {
            algorithm: row
                .text(col::ALGORITHM)
                .and_then(|name| Algorithm::parse(&name).ok()),
            text: row.text(col::KEY)?,
            issuer: row.text(col::ISSUER),
            audience: row.text(col::AUDIENCE),
            // Times are compared in whole seconds; both bounds round inwards, so a key is
            // never used outside its window: from 10.5 s means from 11 s, until 10.5 s means
            // until 10 s.
            not_before: row.timestamptz(col::NOT_BEFORE).map(unix_seconds_ceil),
            not_after: row.timestamptz(col::NOT_AFTER).map(unix_seconds_floor),
            parsed: OnceCell::new(),
        };
        Some((kid, stored))
    }

    /// The key, parsed once. A key that does not parse (stored with the check trigger
    /// disabled, or under an older version's rules) is as unknown.
    fn usable(&self, kid: &str) -> Option<&UsableKey> {
        self.parsed
            .get_or_init(|| {
                let (verifying, signing) = ParsedKey::parse(self.algorithm?, &self.text)
                    .ok()?
                    .into_parts();
                let mut entry = KeyEntry::new(Some(kid.to_owned()), verifying);
                entry.issuer.clone_from(&self.issuer);
                entry.audience.clone_from(&self.audience);
                entry.not_before = self.not_before;
                entry.not_after = self.not_after;
                Some(UsableKey { entry, signing })
            })
            .as_ref()
    }
}

/// Reads the keys in force (`active`) with the newest snapshot.
fn load() -> HashMap<String, StoredKey> {
    let mut keys = HashMap::new();
    storage::scan_latest(Rel::JwtKeys, |row| {
        if row.boolean(col::ACTIVE) == Some(true)
            && let Some((kid, stored)) = StoredKey::read(row)
        {
            keys.insert(kid, stored);
        }
    });
    keys
}

/// Claims of a valid token, with their `jsonb` form, made once per token and shared.
#[derive(Clone)]
pub(crate) struct Claims {
    pub(crate) value: Arc<Value>,
    /// The `jsonb` varlena, header included.
    pub(crate) jsonb: Rc<[u8]>,
}

impl Claims {
    /// The `sub` claim (a string whenever present: verification refuses another type).
    pub(crate) fn subject(&self) -> Option<&str> {
        self.value.get("sub").and_then(Value::as_str)
    }

    /// A `jsonb` datum of the claims, in the current memory context.
    pub(crate) fn datum(&self) -> Datum {
        bytes_datum(&self.jsonb)
    }
}

/// A copy of a varlena's bytes in the current memory context.
fn bytes_datum(bytes: &[u8]) -> Datum {
    // SAFETY: palloc returns a block of the requested size in the current memory context (or
    // raises), and the bytes are a complete varlena with a 4-byte header.
    unsafe {
        let copy = pg_sys::palloc(bytes.len()).cast::<u8>();
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), copy, bytes.len());
        Datum::from(copy)
    }
}

/// `claims` as a `jsonb` varlena; `None` when `jsonb` cannot hold them (a string with
/// `\u0000`, which JSON allows and `jsonb` refuses).
fn to_jsonb(claims: &Value) -> Option<Rc<[u8]>> {
    jsonb::encode(claims).ok().map(Rc::from)
}

/// Claims (kept alive, so that no other value can take their address) and their `jsonb` form.
type JsonbForm = (Arc<Value>, Option<Rc<[u8]>>);

/// The `jsonb` form of cached claims, by the address of their (shared) value.
#[derive(Default)]
struct JsonbForms {
    forms: HashMap<*const Value, JsonbForm>,
}

impl JsonbForms {
    fn get(&mut self, claims: &Arc<Value>, limit: usize) -> Option<Rc<[u8]>> {
        // The map holds a clone of each Arc, so no other value can reuse an address in it.
        let address = Arc::as_ptr(claims);
        if let Some((_, form)) = self.forms.get(&address) {
            return form.clone();
        }
        if self.forms.len() >= limit {
            self.forms.clear();
        }
        let form = to_jsonb(claims);
        self.forms
            .insert(address, (Arc::clone(claims), form.clone()));
        form
    }
}

/// What one verification found, owned.
pub(crate) struct Verified {
    pub(crate) status: Status,
    /// The header's kid, when the header could be read.
    pub(crate) kid: Option<String>,
    /// Only when valid.
    pub(crate) claims: Option<Claims>,
}

impl Verified {
    pub(crate) fn malformed() -> Self {
        Self {
            status: Status::Malformed,
            kid: None,
            claims: None,
        }
    }

    /// The answer for `verification`, with the claims of a valid token in `jsonb` form as
    /// `jsonb` gives it; claims that `jsonb` cannot hold make the token malformed.
    fn of(verification: Verification, jsonb: impl FnOnce(&Arc<Value>) -> Option<Rc<[u8]>>) -> Self {
        let Verification {
            status,
            kid,
            claims,
            ..
        } = verification;
        let claims = match (status, claims) {
            (Status::Valid, Some(value)) => match jsonb(&value) {
                Some(jsonb) => Some(Claims { value, jsonb }),
                None => {
                    return Self {
                        status: Status::Malformed,
                        kid,
                        claims: None,
                    };
                }
            },
            _ => None,
        };
        Self {
            status,
            kid,
            claims,
        }
    }
}

/// Everything a backend keeps.
struct State {
    /// `storage::invalidations(Rel::JwtKeys)` when the caches were last emptied.
    generation: Option<u64>,
    /// The keys in force by kid; `None` until a token needs one.
    keys: Option<HashMap<String, StoredKey>>,
    verified: VerifiedCache,
    jsonb: JsonbForms,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State {
        generation: None,
        keys: None,
        verified: VerifiedCache::new(0),
        jsonb: JsonbForms::default(),
    });
}

impl State {
    /// Takes in pending invalidations and empties the caches if the key table changed.
    fn refresh(&mut self) {
        // SAFETY: processes pending invalidation messages, as every lock acquisition does; it
        // runs callbacks (storage's counts the key table's invalidations) and nothing else here.
        unsafe { pg_sys::AcceptInvalidationMessages() };
        let generation = storage::invalidations(Rel::JwtKeys);
        if self.generation != Some(generation) {
            self.keys = None;
            self.verified.clear();
            self.jsonb.forms.clear();
            self.generation = Some(generation);
        }
        let capacity = gucs::jwt_cache_size();
        if self.verified.capacity() != capacity {
            self.verified = VerifiedCache::new(capacity);
            self.jsonb.forms.clear();
        }
    }

    /// Turns a verification into an owned answer, with the claims' `jsonb` form.
    fn answer(&mut self, verification: Verification) -> Verified {
        let limit = self
            .verified
            .capacity()
            .saturating_mul(2)
            .saturating_add(16);
        Verified::of(verification, |claims| self.jsonb.get(claims, limit))
    }
}

/// The key in force named `kid`, loading the keys first if needed.
fn lookup<'k>(
    keys: &'k mut Option<HashMap<String, StoredKey>>,
    kid: Option<&str>,
) -> Option<&'k UsableKey> {
    let kid = kid?;
    keys.get_or_insert_with(load).get(kid)?.usable(kid)
}

/// The token as text, if it is short enough to read and UTF-8.
fn token_text<'t>(token: Option<&'t [u8]>, policy: &Policy) -> Option<&'t str> {
    token
        .filter(|t| t.len() <= policy.max_token_bytes)
        .and_then(|t| std::str::from_utf8(t).ok())
}

/// Verifies `token` with the key its header's kid names (see `auth_core::jwt::verify`), through
/// the cache of verified tokens.
pub(crate) fn verify(token: Option<&[u8]>) -> Verified {
    let policy = gucs::jwt_policy();
    let Some(token) = token_text(token, &policy) else {
        return Verified::malformed();
    };
    let now = now();
    STATE.with_borrow_mut(|state| {
        state.refresh();
        // The token is hashed once, for the lookup and the insertion; not at all when the
        // cache is off.
        let key = (state.verified.capacity() > 0).then(|| TokenKey::of(token));
        if let Some(key) = &key
            && let Some(hit) = state.verified.get(key, &policy, now)
        {
            return state.answer(hit);
        }
        let verification = {
            let State { keys, .. } = &mut *state;
            jwt::verify(
                token,
                |kid| lookup(keys, kid).map(|key| &key.entry),
                &policy,
                now,
            )
        };
        if let Some(key) = &key {
            state.verified.insert(key, &verification);
        }
        state.answer(verification)
    })
}

/// Calls `sign` with the signing key in force named `kid`; `Err` when there is none (no such
/// kid, retired, outside its window) or the key only verifies.
pub(crate) fn with_signing_key<R>(
    kid: &str,
    sign: impl FnOnce(&SigningKey) -> R,
) -> Result<R, crate::error::AuthPgError> {
    let now = now();
    STATE.with_borrow_mut(|state| {
        state.refresh();
        let key = lookup(&mut state.keys, Some(kid))
            .filter(|key| key.entry.usable_at(now))
            .ok_or(crate::error::AuthPgError::UnknownJwtKey)?;
        let signing = key.signing.as_ref().ok_or(jwt::KeyError::CannotSign {
            algorithm: key.entry.algorithm(),
        })?;
        Ok(sign(signing))
    })
}

/// Keys given inline to `jwt_verify(token, key, algorithm)`, parsed once, by the hash of their
/// algorithm and text: a few services verify with a few keys, and parsing an RSA key costs
/// more than verifying with it.
const INLINE_KEYS: usize = 16;

thread_local! {
    static INLINE: RefCell<HashMap<[u8; 32], VerifyingKey>> = RefCell::new(HashMap::new());
}

/// The verifying key for `algorithm` in `text`, parsed once per backend.
pub(crate) fn inline_key(algorithm: Algorithm, text: &str) -> Result<VerifyingKey, jwt::KeyError> {
    let mut hasher = blake3::Hasher::new();
    hasher.update(algorithm.as_str().as_bytes());
    hasher.update(&[0]);
    hasher.update(text.as_bytes());
    let digest = *hasher.finalize().as_bytes();
    if let Some(key) = INLINE.with_borrow(|keys| keys.get(&digest).cloned()) {
        return Ok(key);
    }
    let key = VerifyingKey::parse(algorithm, text)?;
    INLINE.with_borrow_mut(|keys| {
        if keys.len() >= INLINE_KEYS {
            keys.clear();
        }
        keys.insert(digest, key.clone());
    });
    Ok(key)
}

/// Verifies `token` with one key given by the caller (no kid needed, no cache of tokens: a
/// verification cached under one inline key must not answer for another).
pub(crate) fn verify_with_key(token: Option<&[u8]>, entry: &KeyEntry) -> Verified {
    let policy = gucs::jwt_policy();
    let Some(token) = token_text(token, &policy) else {
        return Verified::malformed();
    };
    Verified::of(
        jwt::verify_with_key(token, entry, &policy, now()),
        |claims| to_jsonb(claims),
    )
}
