//! The error of a call that failed.
//!
//! A credential that is not valid is not an error: it is a status in the call's answer. An
//! [`Error`] means the call itself failed: the settings are wrong, no connection could be had,
//! the server refused the arguments, or the answer could not be read.

use std::fmt;

use tokio_postgres::error::SqlState;

/// What kind of failure an [`Error`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The settings are invalid.
    Config,
    /// No connection was available in time, or one could not be opened.
    Pool,
    /// The server raised an error (see [`Error::code`]), or the connection was lost (see
    /// [`Error::is_connection`]).
    Db,
    /// The server's answer was not what this version of the client expects.
    Decode,
}

/// A failed call. `Display` shows the server's message and SQLSTATE, never a credential.
pub struct Error {
    kind: ErrorKind,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl Error {
    pub(crate) fn config(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            kind: ErrorKind::Config,
            source: source.into(),
        }
    }

    pub(crate) fn decode(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Decode,
            source: message.into().into(),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The SQLSTATE the server raised, for [`ErrorKind::Db`] errors: for instance
    /// `SqlState::INVALID_PARAMETER_VALUE` (22023) for a zero lifetime, or
    /// `SqlState::INSUFFICIENT_PRIVILEGE` (42501) for a role without the right grant.
    pub fn code(&self) -> Option<&SqlState> {
        self.source
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(tokio_postgres::Error::code)
    }

    /// The server's hint, when it gave one.
    pub fn hint(&self) -> Option<&str> {
        self.source
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(tokio_postgres::Error::as_db_error)
            .and_then(|db| db.hint())
    }

    /// Whether the server refused an argument (SQLSTATE class 22, data exception).
    pub fn is_invalid_argument(&self) -> bool {
        self.code()
            .is_some_and(|code| code.code().starts_with("22"))
    }

    /// Whether the server refused to open a session because its user already has
    /// `auth_pg.max_sessions_per_user` sessions and `auth_pg.session_limit_action` is `refuse`
    /// (SQLSTATE 53400, configuration_limit_exceeded).
    pub fn is_session_limit(&self) -> bool {
        self.code() == Some(&SqlState::CONFIGURATION_LIMIT_EXCEEDED)
    }

    /// Whether the connection was lost or could not be had; retrying may succeed. Besides a
    /// closed connection and a failed read or write on its socket, that is what the server says
    /// when it ends or refuses a connection: class 08 (connection exception), 53300 (too many
    /// connections), 57P01 and 57P02 (shut down by an administrator or after another process's
    /// crash), 57P03 (starting up, or in recovery after a crash) and 57P05 (idle session
    /// timeout).
    pub fn is_connection(&self) -> bool {
        match self.kind {
            ErrorKind::Pool => true,
            ErrorKind::Db => self
                .source
                .downcast_ref::<tokio_postgres::Error>()
                .is_some_and(|err| match err.code() {
                    Some(code) => ends_connection(code),
                    None => is_lost_connection(err),
                }),
            _ => false,
        }
    }
}

/// Whether an error the server did not raise is the connection's: closed, or its socket
/// failed (a refused or reset connection, a timeout while connecting).
fn is_lost_connection(err: &tokio_postgres::Error) -> bool {
    err.is_closed()
        || std::error::Error::source(err).is_some_and(|source| source.is::<std::io::Error>())
}

/// Whether a server error with `code` means the connection ended or could not be opened.
fn ends_connection(code: &SqlState) -> bool {
    code.code().starts_with("08")
        || [
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::IDLE_SESSION_TIMEOUT,
        ]
        .contains(code)
}

impl From<tokio_postgres::Error> for Error {
    /// What the server raised, or a lost connection, is `Db`; anything else tokio-postgres
    /// reports (a column of an unexpected type, a value that does not decode, a protocol
    /// message out of place) means the answer was not what this client expects: `Decode`.
    fn from(err: tokio_postgres::Error) -> Self {
        let kind = if err.as_db_error().is_some() || is_lost_connection(&err) {
            ErrorKind::Db
        } else {
            ErrorKind::Decode
        };
        Self {
            kind,
            source: Box::new(err),
        }
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        match err {
            deadpool_postgres::PoolError::Backend(err) => err.into(),
            other => Self {
                kind: ErrorKind::Pool,
                source: Box::new(other),
            },
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ErrorKind::Config => "invalid auth_client settings",
            ErrorKind::Pool => "no database connection",
            ErrorKind::Db => "the database refused the call",
            ErrorKind::Decode => "unexpected answer from auth_pg",
        };
        if let Some(db) = self
            .source
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(tokio_postgres::Error::as_db_error)
        {
            write!(
                f,
                "{what}: {} (SQLSTATE {})",
                db.message(),
                db.code().code()
            )
        } else {
            write!(f, "{what}: {}", self.source)
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("source", &self.source)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_server_says_when_it_ends_a_connection_is_a_lost_connection() {
        for code in [
            "08000", "08006", "53300", "57P01", "57P02", "57P03", "57P05",
        ] {
            assert!(ends_connection(&SqlState::from_code(code)), "{code}");
        }
        // A refused argument, a missing privilege, a dropped database or a cancelled statement
        // would fail again the same way.
        for code in ["22023", "42501", "57P04", "57014", "40001"] {
            assert!(!ends_connection(&SqlState::from_code(code)), "{code}");
        }
    }
}
