//! Errors raised to SQL callers, each with its own SQLSTATE, a message and a hint.
//!
//! "Not valid" is never an error: checks return a status. These are for misuse (bad
//! arguments) and for a server that cannot do its job (an unreadable hash key file).
//!
//! SECURITY: no variant carries a credential, a hash or key material; messages name the
//! argument that is wrong, never its value.

use auth_core::InputError;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

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
    /// The extension's own objects are missing or altered.
    #[error("auth_pg's relation {name} is missing")]
    MissingRelation { name: String },
}

impl AuthPgError {
    fn sqlstate(&self) -> PgSqlErrorCode {
        use PgSqlErrorCode::*;
        match self {
            Self::Input(InputError::Null { .. } | InputError::NullElement { .. }) => {
                ERRCODE_NULL_VALUE_NOT_ALLOWED
            }
            Self::Input(InputError::TooLong { .. }) => ERRCODE_STRING_DATA_RIGHT_TRUNCATION,
            Self::Input(InputError::TooMany { .. }) => ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            Self::Input(_) => ERRCODE_INVALID_PARAMETER_VALUE,
            Self::JsonTooLarge { .. } => ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            Self::BatchTooLarge { .. } => ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            Self::HashKey { .. } => ERRCODE_CONFIG_FILE_ERROR,
            Self::Randomness => ERRCODE_SYSTEM_ERROR,
            Self::MissingRelation { .. } => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
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
            Self::Input(InputError::TooLongInterval { setting, .. }) => {
                format!("Pass a shorter interval; the maximum is the setting {setting}.")
            }
            Self::Input(InputError::NotAnObject { .. }) => {
                "Pass a JSON object, such as '{\"ip\": \"203.0.113.7\"}', or NULL.".into()
            }
            Self::JsonTooLarge { .. } => "Keep metadata small: ids and short strings.".into(),
            Self::BatchTooLarge { .. } => "Split the batch into several calls.".into(),
            Self::HashKey { .. } => "Check the file named by auth_pg.hash_key_file: it must \
                exist, be readable only by the server's operating-system user (mode 0600), and \
                hold 64 hexadecimal digits."
                .into(),
            Self::Randomness => return None,
            Self::MissingRelation { .. } => {
                "Reinstall the extension: DROP EXTENSION auth_pg; CREATE EXTENSION auth_pg;".into()
            }
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
