//! Settings (`auth_pg.*`), each with a typed accessor.
//!
//! Contexts are chosen by threat: what would let a caller weaken a check (a longer token
//! lifetime, a quieter audit trail, another hash key) is settable only by a superuser or in the
//! server's configuration.

use std::ffi::{CStr, CString};

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum, pg_sys};

/// What `create_session` does when a user already holds `auth_pg.max_sessions_per_user`
/// sessions in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PostgresGucEnum)]
pub(crate) enum SessionLimitAction {
    /// Revoke the user's least recently active sessions to make room.
    #[name = c"evict_oldest"]
    EvictOldest,
    /// Refuse the new session with an ERROR.
    #[name = c"refuse"]
    Refuse,
}

static HASH_KEY_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
// 366 days, so that '1 year' fits in a leap year too: lifetimes are judged where they land.
static MAX_TOKEN_TTL: GucSetting<i32> = GucSetting::<i32>::new(366 * 24 * 60 * 60);
static AUDIT_TOKEN_ISSUE: GucSetting<bool> = GucSetting::<bool>::new(false);
static MAINTENANCE_DATABASE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"postgres"));
static MAINTENANCE_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(60);
static MAX_SESSION_LIFETIME: GucSetting<i32> = GucSetting::<i32>::new(366 * 24 * 60 * 60);
static SESSION_TOUCH_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(60);
static MAX_SESSIONS_PER_USER: GucSetting<i32> = GucSetting::<i32>::new(0);
static SESSION_LIMIT_ACTION: GucSetting<SessionLimitAction> =
    GucSetting::<SessionLimitAction>::new(SessionLimitAction::EvictOldest);
static SESSION_RETENTION: GucSetting<i32> = GucSetting::<i32>::new(24 * 60 * 60);
static CLEANUP_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(300);
static JWT_LEEWAY: GucSetting<i32> =
    GucSetting::<i32>::new(auth_core::jwt::DEFAULT_LEEWAY_SECONDS as i32);
static JWT_MAX_TOKEN_BYTES: GucSetting<i32> =
    GucSetting::<i32>::new(auth_core::jwt::DEFAULT_MAX_TOKEN_BYTES as i32);
static JWT_REQUIRE_EXP: GucSetting<bool> = GucSetting::<bool>::new(true);
static JWT_CACHE_SIZE: GucSetting<i32> =
    GucSetting::<i32>::new(auth_core::jwt::DEFAULT_CACHE_CAPACITY as i32);

/// The largest value of `auth_pg.jwt_max_token_bytes`.
const MAX_JWT_MAX_TOKEN_BYTES: i32 = 1024 * 1024;

/// Defines every setting. Called from `_PG_init`.
pub(crate) fn init() {
    // SAFETY: the assign hook cannot fail or panic: it only raises a backend-local flag.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"auth_pg.hash_key_file",
            c"File holding the key for credential hashes (64 hexadecimal digits).",
            c"A path, absolute or relative to the data directory, of a file readable only by \
              the server's operating-system user. Empty means credential hashes are not keyed. \
              Every backend reads the file again after each configuration reload; a \
              credential hashed under one key is unknown under another.",
            &HASH_KEY_FILE,
            GucContext::Sighup,
            GucFlags::SUPERUSER_ONLY,
            None,
            Some(hash_key_file_assigned),
            None,
        );
    }
    GucRegistry::define_int_guc(
        c"auth_pg.max_token_ttl",
        c"Longest lifetime issue_token accepts.",
        c"issue_token refuses a ttl longer than this, by interval ordering (a month as 30 \
          days) and by the time from now to where it lands on the calendar.",
        &MAX_TOKEN_TTL,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_bool_guc(
        c"auth_pg.audit_token_issue",
        c"Whether issuing a token is written to auth_pg.audit_events.",
        c"Revocations are always audited; issuing is frequent, so it is audited only when asked.",
        &AUDIT_TOKEN_ISSUE,
        GucContext::Suset,
        GucFlags::default(),
    );

    define_session_settings();
    define_jwt_settings();

    // A postmaster-level setting can only be defined while the postmaster loads the library;
    // without preloading there is no maintenance worker to configure.
    // SAFETY: a plain read of a flag PostgreSQL sets while it loads preloaded libraries.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        define_maintenance_database();
    }
    GucRegistry::define_int_guc(
        c"auth_pg.maintenance_interval",
        c"How often the maintenance worker runs; 0 pauses it.",
        c"",
        &MAINTENANCE_INTERVAL,
        0,
        86_400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );

    // SAFETY: called from _PG_init, in the backend's main thread, with a static C string.
    // Reserving the prefix turns a mistyped `auth_pg.*` name into an error instead of a silent
    // placeholder, and removes placeholders left by the configuration files.
    unsafe { pg_sys::MarkGUCPrefixReserved(c"auth_pg".as_ptr()) };
}

fn define_session_settings() {
    GucRegistry::define_int_guc(
        c"auth_pg.max_session_lifetime",
        c"Longest absolute_timeout create_session accepts.",
        c"create_session refuses an idle or absolute timeout longer than this, by interval \
          ordering and by the time from now to where it lands on the calendar.",
        &MAX_SESSION_LIFETIME,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"auth_pg.session_touch_interval",
        c"How old a session's last activity must be before touch_session records a new one.",
        c"touch_session writes at most once per this interval per session; between writes \
          the idle deadline it reports is the stored one, at most this much earlier than a \
          write on every request would make it. 0 writes on every touch.",
        &SESSION_TOUCH_INTERVAL,
        0,
        86_400,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"auth_pg.max_sessions_per_user",
        c"Most sessions in force one user may hold; 0 means no limit.",
        c"What happens to a session beyond the limit is auth_pg.session_limit_action.",
        &MAX_SESSIONS_PER_USER,
        0,
        1_000_000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"auth_pg.session_limit_action",
        c"What create_session does when the user is at auth_pg.max_sessions_per_user.",
        c"evict_oldest revokes the user's least recently active sessions to make room; refuse \
          raises an ERROR (SQLSTATE 53400).",
        &SESSION_LIMIT_ACTION,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"auth_pg.session_retention",
        c"How long expired and revoked sessions are kept before cleanup deletes them.",
        c"Until then they are listed by list_user_sessions and checks name their status; \
          afterwards they are unknown.",
        &SESSION_RETENTION,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"auth_pg.cleanup_interval",
        c"How often the maintenance worker deletes expired sessions; 0 turns it off.",
        c"The worker calls auth_pg.cleanup_expired_sessions in batches until none is left. \
          Without the worker, schedule that function with pg_cron.",
        &CLEANUP_INTERVAL,
        0,
        86_400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
}

/// The JWT settings are superuser-only: a caller that could widen the leeway, lift the size
/// limit or do without `exp` would accept tokens the operator refuses, and the cache size bounds
/// each backend's memory.
fn define_jwt_settings() {
    GucRegistry::define_int_guc(
        c"auth_pg.jwt_leeway",
        c"Clock skew allowed on a JWT's exp, nbf and iat.",
        c"A token is valid until exp plus this, and from nbf (or iat) minus this.",
        &JWT_LEEWAY,
        0,
        3600,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"auth_pg.jwt_max_token_bytes",
        c"Longest JWT verified; a longer one is malformed before it is read.",
        c"",
        &JWT_MAX_TOKEN_BYTES,
        256,
        MAX_JWT_MAX_TOKEN_BYTES,
        GucContext::Suset,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_bool_guc(
        c"auth_pg.jwt_require_exp",
        c"Whether a JWT without exp is malformed.",
        c"A token without exp never expires; turn this off only for issuers that cannot set it.",
        &JWT_REQUIRE_EXP,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"auth_pg.jwt_cache_size",
        c"Most verified JWTs each backend remembers; 0 turns the cache off.",
        c"A token presented again skips its signature check while its time rules still hold. \
          Each entry holds the token's claims; the cache is emptied on any change of the keys.",
        &JWT_CACHE_SIZE,
        0,
        1_000_000,
        GucContext::Suset,
        GucFlags::default(),
    );
}

fn define_maintenance_database() {
    GucRegistry::define_string_guc(
        c"auth_pg.maintenance_database",
        c"Database the maintenance worker connects to.",
        c"The worker runs auth_pg's periodic work (flushing API keys' last use) there; other \
          databases can schedule the same functions with pg_cron.",
        &MAINTENANCE_DATABASE,
        GucContext::Postmaster,
        GucFlags::default(),
    );
}

/// The assign hook of `auth_pg.hash_key_file`. PostgreSQL calls it for every configuration
/// reload that sets the value, changed or not, so the key file is read again after each reload:
/// a file rewritten in place takes effect on `pg_reload_conf()` like a new one.
///
/// # Safety
///
/// Called by the GUC machinery only.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn hash_key_file_assigned(
    _value: *const std::ffi::c_char,
    _extra: *mut std::ffi::c_void,
) {
    crate::hash_key::forget_loaded_key();
}

/// The raw value of `auth_pg.hash_key_file`, borrowed from the GUC machinery: `None` when unset
/// or empty. Borrowing avoids an allocation per credential hash.
pub(crate) fn with_hash_key_file<R>(f: impl FnOnce(Option<&CStr>) -> R) -> R {
    let raw = HASH_KEY_FILE.as_ptr();
    // SAFETY: `raw` points at the GUC's value slot, which holds either NULL or a NUL-terminated
    // string owned by the GUC machinery. The string lives until the setting changes, which can
    // only happen when the backend processes a configuration reload, never during `f`.
    let value = unsafe {
        let value = *raw;
        if value.is_null() {
            None
        } else {
            Some(CStr::from_ptr(value))
        }
    };
    f(value.filter(|path| !path.is_empty()))
}

/// `auth_pg.max_token_ttl`, in seconds.
pub(crate) fn max_token_ttl_seconds() -> i64 {
    i64::from(MAX_TOKEN_TTL.get())
}

/// `auth_pg.maintenance_database`.
pub(crate) fn maintenance_database() -> String {
    MAINTENANCE_DATABASE
        .get()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "postgres".to_owned())
}

/// `auth_pg.maintenance_interval`.
pub(crate) fn maintenance_interval() -> std::time::Duration {
    std::time::Duration::from_secs(u64::try_from(MAINTENANCE_INTERVAL.get()).unwrap_or(0))
}

/// `auth_pg.max_session_lifetime`, in seconds.
pub(crate) fn max_session_lifetime_seconds() -> i64 {
    i64::from(MAX_SESSION_LIFETIME.get())
}

/// `auth_pg.session_touch_interval`, in microseconds.
pub(crate) fn session_touch_interval_micros() -> i64 {
    i64::from(SESSION_TOUCH_INTERVAL.get()) * 1_000_000
}

/// `auth_pg.max_sessions_per_user`; 0 means no limit.
pub(crate) fn max_sessions_per_user() -> i64 {
    i64::from(MAX_SESSIONS_PER_USER.get())
}

/// `auth_pg.session_limit_action`.
pub(crate) fn session_limit_action() -> SessionLimitAction {
    SESSION_LIMIT_ACTION.get()
}

/// `auth_pg.session_retention`, in microseconds.
pub(crate) fn session_retention_micros() -> i64 {
    i64::from(SESSION_RETENTION.get()) * 1_000_000
}

/// `auth_pg.cleanup_interval`.
pub(crate) fn cleanup_interval() -> std::time::Duration {
    std::time::Duration::from_secs(u64::try_from(CLEANUP_INTERVAL.get()).unwrap_or(0))
}

/// `auth_pg.audit_token_issue`.
pub(crate) fn audit_token_issue() -> bool {
    AUDIT_TOKEN_ISSUE.get()
}

/// The JWT verification policy of the moment (`auth_pg.jwt_leeway`,
/// `auth_pg.jwt_max_token_bytes`, `auth_pg.jwt_require_exp`).
pub(crate) fn jwt_policy() -> auth_core::jwt::Policy {
    auth_core::jwt::Policy {
        max_token_bytes: usize::try_from(JWT_MAX_TOKEN_BYTES.get()).unwrap_or(0),
        leeway_seconds: u32::try_from(JWT_LEEWAY.get()).unwrap_or(0),
        require_exp: JWT_REQUIRE_EXP.get(),
    }
}

/// `auth_pg.jwt_cache_size`, in entries.
pub(crate) fn jwt_cache_size() -> usize {
    usize::try_from(JWT_CACHE_SIZE.get()).unwrap_or(0)
}
