//! Errors raised to SQL callers, each with its own SQLSTATE, a message and a hint.
//!
//! "Not valid" is never an error: checks return a status. These are for misuse (bad
//! arguments) and for a server that cannot do its job (an unreadable hash key file).
//!
//! SECURITY: no variant carries a credential, a hash or key material; messages name the
//! argument that is wrong, never its value.

use auth_core::InputError;
use auth_core::jwt::{AlgorithmError, JwksError, KeyError, SignError};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// Where a role was looked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RoleScope {
    /// Among global roles only.
    Global,
    /// Among the roles of one organization only.
    Organization,
    /// Among the roles of one organization, then the global ones.
    OrganizationOrGlobal,
}

/// Everything auth_pg raises.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuthPgError {
    /// An argument breaks a rule of `auth_core::input`.
    #[error(transparent)]
    Input(#[from] InputError),
    /// A JSON argument is larger than its limit.
    #[error("{argument} is larger than {limit} bytes")]
    JsonTooLarge {
        argument: &'static str,
        limit: usize,
    },
    /// A JSON argument nests objects and arrays deeper than its limit.
    #[error("{argument} nests objects and arrays more than {limit} levels deep")]
    JsonTooDeep {
        argument: &'static str,
        limit: usize,
    },
    /// A `jsonb` value holds what auth_pg's JSON reader cannot represent.
    #[error("auth_pg cannot read this JSON value: {reason}")]
    JsonUnreadable { reason: &'static str },
    /// A batch holds more items than one call takes.
    #[error("{argument} has {given} elements; one call takes at most {limit}")]
    BatchTooLarge {
        argument: &'static str,
        given: usize,
        limit: usize,
    },
    /// The hash key file is set but cannot be used.
    #[error("auth_pg could not load its hash key: {reason}")]
    HashKey { reason: String },
    /// The operating system could not provide random bytes.
    #[error("the operating system could not provide random bytes")]
    Randomness,
    /// An organization's document cannot be used.
    #[error(transparent)]
    Document(#[from] auth_core::api_keys::DocumentError),
    /// No organization has the given id.
    #[error("there is no organization with this org_id")]
    UnknownOrganization,
    /// An organization with the given id exists already.
    #[error("an organization with this org_id exists already")]
    OrganizationExists,
    /// The organization has no key with the given id.
    #[error("the organization has no API key with this key_id")]
    UnknownApiKey,
    /// The key cannot be rotated.
    #[error("the API key cannot be rotated: {reason}")]
    ApiKeyNotRotatable { reason: &'static str },
    /// An organization's document and its lookup rows disagree (only a direct edit of
    /// auth_pg.api_key_lookup can cause this).
    #[error("the organization's api_keys document and its lookup rows disagree")]
    DocumentOutOfStep,
    /// A document written by hand holds a key whose hash another organization's document
    /// holds too (a copied element).
    #[error("the api_keys document holds a key that belongs to another organization")]
    KeyOfAnotherOrganization,
    /// Rows loaded into the permission tables by hand break a rule the functions keep.
    #[error("the permission tables hold {rule}")]
    LoadedRowsBreakRule { rule: &'static str },
    /// A count argument is zero or negative.
    #[error("{argument} must be greater than zero")]
    NotPositiveCount { argument: &'static str },
    /// The user holds as many sessions as `auth_pg.max_sessions_per_user` allows, and
    /// `auth_pg.session_limit_action` is `refuse`.
    #[error("the user is at auth_pg.max_sessions_per_user ({limit} sessions in force)")]
    SessionLimit { limit: i64 },
    /// Under REPEATABLE READ or SERIALIZABLE, sessions of the user changed after the
    /// transaction's snapshot, so the limit cannot be kept by this transaction.
    #[error("could not serialize access due to a concurrent change of the user's sessions")]
    SessionsChangedConcurrently,
    /// No role has the given name (in the organization, or among global roles).
    #[error("{argument} names no {}", match .scope {
        RoleScope::Global => "global role",
        RoleScope::Organization => "role of the organization",
        RoleScope::OrganizationOrGlobal => "role of the organization nor any global role",
    })]
    UnknownRole {
        argument: &'static str,
        scope: RoleScope,
    },
    /// A role of that name exists already, in the same scope or the other one.
    #[error("{}", if *.same_scope { "a role with this name exists already" } else { "a global role and an organization's role cannot share a name" })]
    RoleExists { same_scope: bool },
    /// The parent already inherits from the role.
    #[error("a role cannot be its own ancestor: the parent already inherits from the role")]
    RoleCycle,
    /// The extension's own objects are missing or altered.
    #[error("auth_pg's relation {name} is missing")]
    MissingRelation { name: String },
    /// A JWT algorithm argument is not one auth_pg accepts.
    #[error(transparent)]
    JwtAlgorithm(#[from] AlgorithmError),
    /// A JWT key cannot be used with its algorithm. SECURITY: `KeyError` never quotes the key.
    #[error(transparent)]
    JwtKey(#[from] KeyError),
    /// A JWKS document was refused; its keys are named by index, never by content.
    #[error(transparent)]
    Jwks(#[from] JwksError),
    /// Claims could not be signed.
    #[error(transparent)]
    JwtSign(#[from] SignError),
    /// No key in force has the kid (none has it, or it is retired or outside its window).
    #[error("no JWT key in force has this kid")]
    UnknownJwtKey,
    /// A key with the kid exists, retired or not.
    #[error("a JWT key with this kid exists already")]
    JwtKeyExists,
    /// A JWKS key has the kid of a stored key, with other key material or another algorithm.
    #[error("keys[{index}] has the kid of a stored JWT key with another key or algorithm")]
    JwksKidConflict { index: usize },
    /// A key's window is empty.
    #[error("not_after must be later than not_before")]
    JwtKeyWindow,
    /// The signed token would be longer than any verification accepts.
    #[error("the signed token would be longer than auth_pg.jwt_max_token_bytes ({limit} bytes)")]
    JwtTooLong { limit: usize },
    /// auth_pg's row check trigger fired on a table, or an event, it was not written for.
    #[error(
        "auth_pg.check_row() and auth_pg.check_jwt_key() check rows written into auth_pg's own tables only"
    )]
    TriggerMisused,
    /// A row written by hand has NULL in a NOT NULL column (PostgreSQL's own message, without
    /// the row PostgreSQL would print after it).
    #[error(
        "null value in column \"{column}\" of relation \"{table}\" violates not-null constraint"
    )]
    RowNull { table: String, column: String },
    /// A row written by hand breaks a CHECK constraint (PostgreSQL's own message, without the
    /// row); `rule` says what the constraint asks in words.
    #[error("new row for relation \"{table}\" violates check constraint \"{constraint}\"")]
    RowCheck {
        table: String,
        constraint: &'static str,
        rule: &'static str,
    },
}

/// Why a refused row is not printed, as PostgreSQL would print it.
const ROW_NOT_SHOWN: &str = "The row is not shown: it holds hashes or key material.";

impl AuthPgError {
    fn sqlstate(&self) -> PgSqlErrorCode {
        use PgSqlErrorCode::*;
        match self {
            Self::Input(InputError::Null { .. } | InputError::NullElement { .. }) => {
                ERRCODE_NULL_VALUE_NOT_ALLOWED
            }
            Self::Input(InputError::TooLong { .. }) => ERRCODE_STRING_DATA_RIGHT_TRUNCATION,
            Self::Input(InputError::TooMany { .. }) => ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            Self::Input(InputError::OutOfRange { .. }) => ERRCODE_DATETIME_FIELD_OVERFLOW,
            Self::Input(_) | Self::NotPositiveCount { .. } => ERRCODE_INVALID_PARAMETER_VALUE,
            Self::SessionLimit { .. } => ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
            Self::SessionsChangedConcurrently => ERRCODE_T_R_SERIALIZATION_FAILURE,
            Self::JsonTooLarge { .. } | Self::JsonTooDeep { .. } => ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            Self::JsonUnreadable { .. } => ERRCODE_INVALID_PARAMETER_VALUE,
            Self::BatchTooLarge { .. } => ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            Self::HashKey { .. } => ERRCODE_CONFIG_FILE_ERROR,
            Self::Randomness => ERRCODE_SYSTEM_ERROR,
            Self::MissingRelation { .. } => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            Self::Document(_) => ERRCODE_INVALID_PARAMETER_VALUE,
            Self::UnknownOrganization | Self::UnknownApiKey => ERRCODE_NO_DATA_FOUND,
            Self::OrganizationExists | Self::KeyOfAnotherOrganization => ERRCODE_UNIQUE_VIOLATION,
            Self::UnknownRole { .. } => ERRCODE_UNDEFINED_OBJECT,
            Self::RoleExists { .. } => ERRCODE_DUPLICATE_OBJECT,
            Self::RoleCycle => ERRCODE_INVALID_GRANT_OPERATION,
            Self::LoadedRowsBreakRule { .. } => ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION,
            Self::ApiKeyNotRotatable { .. } | Self::DocumentOutOfStep => {
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
            }
            Self::JwtKey(KeyError::TooLong { .. }) => ERRCODE_STRING_DATA_RIGHT_TRUNCATION,
            Self::JwtKey(KeyError::CannotSign { .. }) => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            Self::Jwks(JwksError::TooLong { .. } | JwksError::TooManyKeys { .. }) => {
                ERRCODE_PROGRAM_LIMIT_EXCEEDED
            }
            Self::JwtSign(SignError::Failed) => ERRCODE_EXTERNAL_ROUTINE_EXCEPTION,
            Self::JwtAlgorithm(_)
            | Self::JwtKey(_)
            | Self::Jwks(_)
            | Self::JwtSign(_)
            | Self::JwtKeyWindow => ERRCODE_INVALID_PARAMETER_VALUE,
            Self::UnknownJwtKey => ERRCODE_UNDEFINED_OBJECT,
            Self::JwtKeyExists | Self::JwksKidConflict { .. } => ERRCODE_DUPLICATE_OBJECT,
            Self::JwtTooLong { .. } => ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            Self::TriggerMisused => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            Self::RowNull { .. } => ERRCODE_NOT_NULL_VIOLATION,
            Self::RowCheck { .. } => ERRCODE_CHECK_VIOLATION,
        }
    }

    fn hint(&self) -> Option<String> {
        let hint = match self {
            Self::Input(InputError::Null { argument }) => format!("Pass a value for {argument}."),
            Self::Input(InputError::NullElement { .. }) => "Remove the NULL elements.".into(),
            Self::Input(InputError::Empty { argument }) => {
                format!("Pass a non-empty value for {argument}.")
            }
            Self::Input(InputError::TooLong { .. }) => "Pass a shorter value.".into(),
            Self::Input(InputError::TooMany { limit, .. }) => {
                format!("Pass at most {limit} elements.")
            }
            Self::Input(InputError::BadCharacters { .. }) => {
                "Remove white space and control characters.".into()
            }
            Self::Input(InputError::NotPositive { .. }) => {
                "Pass an interval greater than zero, such as '1 hour'.".into()
            }
            Self::Input(InputError::OutOfRange { .. }) => {
                "Pass an interval of years, not of hundreds of thousands of years.".into()
            }
            Self::Input(InputError::TooLongInterval { setting, .. }) => {
                format!("Pass a shorter interval; the maximum is the setting {setting}.")
            }
            Self::Input(InputError::BadPermission { .. }) => "Name permissions like \
                documents:read; grant a family with documents:* and everything with *."
                .into(),
            Self::Input(InputError::NotAnObject { .. }) => {
                "Pass a JSON object, such as '{\"ip\": \"203.0.113.7\"}', or NULL.".into()
            }
            Self::Input(InputError::IdleLongerThanAbsolute) => {
                "Pass an idle_timeout no longer than absolute_timeout, such as '30 minutes' and \
                 '12 hours'."
                    .into()
            }
            Self::KeyOfAnotherOrganization => "An API key belongs to one organization: remove \
                the copied element, and create the organization its own keys with create_api_key."
                .into(),
            Self::LoadedRowsBreakRule { .. } => "Correct the rows loaded into auth_pg.roles, \
                role_parents, role_permissions and role_assignments, then call \
                rebuild_permissions() again; checks answer from the state before the load until \
                then."
                .into(),
            Self::NotPositiveCount { .. } => "Pass a positive number, such as 10000.".into(),
            Self::SessionsChangedConcurrently => "Retry the transaction.".into(),
            Self::SessionLimit { .. } => "Revoke one of the user's sessions first \
                (auth_pg.list_user_sessions shows them), or set auth_pg.session_limit_action to \
                evict_oldest."
                .into(),
            Self::JsonTooLarge { .. } => "Keep metadata small: ids and short strings.".into(),
            Self::JsonTooDeep { .. } => "Keep metadata flat: an object of ids and short strings, \
                with few levels of nesting."
                .into(),
            Self::JsonUnreadable { .. } => "Nest objects and arrays less deeply: auth_pg reads \
                at most 128 levels, and takes metadata of at most 64."
                .into(),
            Self::BatchTooLarge { .. } => "Split the batch into several calls.".into(),
            Self::HashKey { .. } => "Check the file named by auth_pg.hash_key_file: it must \
                exist, be readable only by the server's operating-system user (mode 0600), and \
                hold 64 hexadecimal digits."
                .into(),
            Self::Randomness => return None,
            Self::Input(InputError::Negative { .. }) => {
                "Pass zero or a positive interval, such as '1 day'.".into()
            }
            Self::Input(InputError::NotInFuture { .. }) => {
                "Pass a time after now, or NULL for no expiry.".into()
            }
            Self::Document(_) => "Each element of api_keys is an object with id, hash (64 \
                hexadecimal digits), name and created_at, and optionally prefix, scopes (an array \
                of strings), metadata (an object), expires_at, revoked_at, last_used_at and \
                replaced_by; ids and hashes are unique. Keys are best changed with auth_pg's \
                functions."
                .into(),
            Self::UnknownOrganization => {
                "Create it with auth_pg.create_organization(org_id, name).".into()
            }
            Self::OrganizationExists => "Choose another org_id.".into(),
            Self::UnknownApiKey => {
                "List the organization's keys with auth_pg.list_api_keys(org_id).".into()
            }
            Self::ApiKeyNotRotatable { .. } => "Rotate a key in force that was not rotated \
                before (a rotated key names the key that replaced it in replaced_by, in the \
                organization's api_keys document), or create a new key with \
                auth_pg.create_api_key."
                .into(),
            Self::DocumentOutOfStep => "Rebuild the organization's rows from its document: UPDATE \
                auth_pg.organizations SET api_keys = api_keys WHERE org_id = ...;"
                .into(),
            Self::UnknownRole { .. } => "Create it with auth_pg.create_role(name, org_id); list \
                roles with SELECT name, org_id FROM auth_pg.roles. An organization's roles can be \
                used only in that organization, and a global role's parents are global."
                .into(),
            Self::RoleExists { .. } => "Choose another name.".into(),
            Self::RoleCycle => "Remove the path from the parent up to the role first \
                (auth_pg.remove_role_parent), or choose another parent."
                .into(),
            Self::MissingRelation { .. } => {
                "Reinstall the extension: DROP EXTENSION auth_pg; CREATE EXTENSION auth_pg;".into()
            }
            Self::JwtAlgorithm(AlgorithmError::None) => {
                "Name the algorithm the key signs with, such as HS256, RS256, ES256 or EdDSA."
                    .into()
            }
            Self::JwtAlgorithm(AlgorithmError::Unknown) => "Names are case-sensitive: HS256, not \
                hs256. The key decides the algorithm, never the token."
                .into(),
            Self::JwtKey(err) => return jwt_key_hint(err),
            Self::Jwks(_) => "Pass a JWKS document, {\"keys\": [...]}, in which every signature \
                key is a public JWK (or an oct secret) with a kid and an alg; EC and OKP keys may \
                leave alg out."
                .into(),
            Self::JwtSign(SignError::Failed) => return None,
            Self::JwtSign(_) => "Pass claims as a JSON object: exp, nbf and iat as numbers of \
                seconds since 1970, iss and sub as strings, aud as a string or an array of \
                strings."
                .into(),
            Self::UnknownJwtKey => {
                "List keys with auth_pg.list_jwt_keys(); retired keys, and keys \
                outside their not_before and not_after, do not sign."
                    .into()
            }
            Self::JwtKeyExists | Self::JwksKidConflict { .. } => "Choose another kid: a kid is \
                never given to another key, even after retire_jwt_key, so that a token always \
                names the key it was signed with."
                .into(),
            Self::JwtKeyWindow => "Pass NULL for a bound you do not want.".into(),
            Self::JwtTooLong { .. } => {
                "Sign fewer or shorter claims: ids rather than documents.".into()
            }
            Self::TriggerMisused => "Drop the trigger: auth_pg attaches these functions to \
                its tables itself, as BEFORE INSERT OR UPDATE row triggers."
                .into(),
            Self::RowNull { .. } => format!(
                "auth_pg's functions write complete rows; prefer them to editing the table by \
                 hand. {ROW_NOT_SHOWN}"
            ),
            Self::RowCheck { rule, .. } => format!("{rule}. {ROW_NOT_SHOWN}"),
        };
        Some(hint)
    }

    /// Raises this error as an SQL ERROR. Never returns.
    pub(crate) fn raise(self, function: &'static str) -> ! {
        let mut report = ErrorReport::new(self.sqlstate(), self.to_string(), function);
        if let Some(hint) = self.hint() {
            report = report.set_hint(hint);
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("ERROR does not return")
    }
}

/// What to do about a key that cannot be used.
fn jwt_key_hint(err: &KeyError) -> Option<String> {
    let hint = match err {
        KeyError::Empty | KeyError::SecretForAsymmetric { .. } => {
            "Pass an HMAC secret for HS256, HS384 and HS512, or a PEM or a JWK for the others."
        }
        KeyError::TooLong { .. } => {
            "Keys are at most 16 KiB: a 4096-bit RSA private key is 3.3 KiB."
        }
        KeyError::PemAsHmacSecret { .. } => {
            "Use RS256, PS256, ES256 or EdDSA with the key as a PEM, or pass a random secret \
             for HS256."
        }
        KeyError::SecretTooShort { .. } => {
            "Generate a random secret, for instance with `openssl rand -base64 48`."
        }
        KeyError::WrongKeyType { .. } | KeyError::JwkAlgorithmMismatch { .. } => {
            "Name the key's algorithm: RS* or PS* for RSA keys, ES256 for P-256, ES384 for \
             P-384, EdDSA for Ed25519, HS* for secrets."
        }
        KeyError::JwkNotForSignatures => "Pass a signature key (\"use\": \"sig\").",
        KeyError::PrivateJwk => "Pass the public JWK to verify, or a PKCS#8 PEM to sign.",
        KeyError::BadJwk { .. } | KeyError::BadPem => {
            "Pass one PEM block (PUBLIC KEY, PRIVATE KEY, RSA PUBLIC KEY or RSA PRIVATE KEY) or \
             a JWK, copied whole."
        }
        KeyError::UnsupportedPem { .. } => "Convert the key as the message says.",
        KeyError::RsaKeySize { .. } => "Use an RSA key of 2048 to 4096 bits.",
        KeyError::InvalidKey { .. } => "Check that the key was copied whole.",
        KeyError::CannotSign { .. } => {
            "Sign with a key added as an HMAC secret or a private key PEM; public keys, and keys \
             imported from a JWKS, only verify."
        }
    };
    Some(hint.into())
}

/// Unwraps `result`, raising its error as an SQL ERROR from `function`.
pub(crate) trait OrRaise<T> {
    fn or_raise(self, function: &'static str) -> T;
}

impl<T, E: Into<AuthPgError>> OrRaise<T> for Result<T, E> {
    fn or_raise(self, function: &'static str) -> T {
        match self {
            Ok(value) => value,
            Err(err) => err.into().raise(function),
        }
    }
}
