//! Sessions: an idle deadline that each touch slides, an absolute one that never moves.

use std::time::{Duration, SystemTime};

use auth_core::{Credential, CredentialKind};

use crate::cache::Forget;
use crate::client::Via;
use crate::packed::{Reader, Unpack};
use crate::{AuthClient, Error, Status};

/// The answer to a session check. Only a [`Status::Valid`] answer carries the session's user,
/// id, deadlines and metadata; a session past a deadline is [`Status::IdleExpired`] or
/// [`Status::AbsoluteExpired`].
#[derive(Clone, Debug, PartialEq)]
pub struct SessionValidation {
    /// What the check found.
    pub status: Status,
    /// The user the session belongs to.
    pub user_id: Option<String>,
    /// The session's id (not secret: for `revoke_session_by_id`, revocation events and lists).
    pub session_id: Option<String>,
    /// When the session ends unless it is touched first (after a touch: the new deadline).
    pub idle_expires_at: Option<SystemTime>,
    /// When the session ends however active it is.
    pub absolute_expires_at: Option<SystemTime>,
    /// The metadata given at creation.
    pub metadata: Option<serde_json::Value>,
}

impl SessionValidation {
    /// Whether the session is valid.
    pub fn is_valid(&self) -> bool {
        self.status == Status::Valid
    }

    fn only(status: Status) -> Self {
        Self {
            status,
            user_id: None,
            session_id: None,
            idle_expires_at: None,
            absolute_expires_at: None,
            metadata: None,
        }
    }
}

/// `auth_pg.session_validation`, decoded from its packed form.
struct SessionValidationRecord {
    status: String,
    user_id: Option<String>,
    session_id: Option<String>,
    idle_expires_at: Option<SystemTime>,
    absolute_expires_at: Option<SystemTime>,
    metadata: Option<serde_json::Value>,
}

impl Unpack for SessionValidationRecord {
    fn unpack(reader: &mut Reader<'_>) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Self {
            status: reader.status()?,
            user_id: reader.text()?,
            session_id: reader.text()?,
            idle_expires_at: reader.timestamptz()?,
            absolute_expires_at: reader.timestamptz()?,
            metadata: reader.json()?,
        })
    }
}

impl TryFrom<SessionValidationRecord> for SessionValidation {
    type Error = Error;

    fn try_from(record: SessionValidationRecord) -> Result<Self, Error> {
        Ok(Self {
            status: record.status.parse()?,
            user_id: record.user_id,
            session_id: record.session_id,
            idle_expires_at: record.idle_expires_at,
            absolute_expires_at: record.absolute_expires_at,
            metadata: record.metadata,
        })
    }
}

/// One session as `list_user_sessions` shows it: everything but the session token and its hash.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionInfo {
    /// The session's id.
    pub session_id: String,
    /// `Valid`, `IdleExpired`, `AbsoluteExpired` or `Revoked`.
    pub status: Status,
    /// When it was created.
    pub created_at: SystemTime,
    /// When it was last touched (touches closer together than `auth_pg.session_touch_interval`
    /// are not recorded).
    pub last_activity_at: SystemTime,
    /// When it ends unless touched first.
    pub idle_expires_at: SystemTime,
    /// When it ends however active it is.
    pub absolute_expires_at: SystemTime,
    /// When it was revoked.
    pub revoked_at: Option<SystemTime>,
    /// The metadata given at creation.
    pub metadata: Option<serde_json::Value>,
}

// As for tokens, the packed form (see packed.rs).
const VALIDATE_SESSION: &str = "SELECT auth_pg.validate_session_packed($1)";
const TOUCH_SESSION: &str = "SELECT auth_pg.touch_session_packed($1)";
const CREATE_SESSION: &str = "SELECT auth_pg.create_session($1, \
     pg_catalog.make_interval(secs => $2), pg_catalog.make_interval(secs => $3), $4)";
const REVOKE_SESSION: &str = "SELECT auth_pg.revoke_session($1)";
const REVOKE_SESSION_BY_ID: &str = "SELECT auth_pg.revoke_session_by_id($1)";
const REVOKE_USER_SESSIONS: &str = "SELECT auth_pg.revoke_user_sessions($1)";
const LIST_USER_SESSIONS: &str = "SELECT session_id, status, created_at, last_activity_at, \
     idle_expires_at, absolute_expires_at, revoked_at, metadata \
     FROM auth_pg.list_user_sessions($1)";
const CLEANUP_EXPIRED_SESSIONS: &str = "SELECT auth_pg.cleanup_expired_sessions($1)";

/// The session token `create_session` returned, checked to be one. The error never quotes it.
fn session_token(text: &str) -> Result<Credential, Error> {
    Credential::parse(CredentialKind::Session, text)
        .map_err(|err| Error::decode(format!("create_session returned no session token: {err}")))
}

impl AuthClient {
    /// Opens a session for `user_id` and returns its token: this is the only time it is ever
    /// shown. The session ends when it goes unused for `idle_timeout` (each
    /// [`touch_session`](Self::touch_session) slides that deadline) or when `absolute_timeout`
    /// has passed since now, whichever comes first. `metadata` (a JSON object, such as the
    /// client's address and user agent) is returned by every valid check. Needs the
    /// `auth_pg_admin` role.
    ///
    /// Fails with SQLSTATE 22023 for an empty user id, a timeout that is zero or longer than the
    /// server's maximum session lifetime, an idle timeout longer than the absolute one, or
    /// metadata that is not an object; 22001 for an over-long user id; 53400 (see [`Error::is_session_limit`]) when the user already has
    /// `auth_pg.max_sessions_per_user` sessions and `auth_pg.session_limit_action` is `refuse`.
    pub async fn create_session(
        &self,
        user_id: &str,
        idle_timeout: Duration,
        absolute_timeout: Duration,
        metadata: Option<&serde_json::Value>,
    ) -> Result<Credential, Error> {
        let row = self
            .query_one(
                CREATE_SESSION,
                &[
                    &user_id,
                    &idle_timeout.as_secs_f64(),
                    &absolute_timeout.as_secs_f64(),
                    &metadata,
                ],
            )
            .await?;
        let token: String = row.try_get(0)?;
        session_token(&token)
    }

    /// Checks a session token without writing anything (the idle deadline does not move). A
    /// string not shaped like a session token is answered `malformed` here without a round
    /// trip; the server checks the rest. Needs the `auth_pg_validator` role.
    pub async fn validate_session(&self, token: &str) -> Result<SessionValidation, Error> {
        self.check::<SessionValidationRecord, _>(
            CredentialKind::Session,
            VALIDATE_SESSION,
            token,
            || SessionValidation::only(Status::Malformed),
            Via::CacheOrServer,
        )
        .await
    }

    /// Checks a session token and, when it is valid, slides its idle deadline (never past the
    /// absolute one): the call to make on each request of the session. The server writes at
    /// most once per `auth_pg.session_touch_interval`. A string not shaped like a session token
    /// is answered `malformed` here without a round trip; the server checks the rest. Needs the
    /// `auth_pg_validator` role.
    ///
    /// With a cache, a touch is never answered from memory (it would not slide the deadline);
    /// its answer replaces the one the cache held for the session.
    pub async fn touch_session(&self, token: &str) -> Result<SessionValidation, Error> {
        self.check::<SessionValidationRecord, _>(
            CredentialKind::Session,
            TOUCH_SESSION,
            token,
            || SessionValidation::only(Status::Malformed),
            Via::Server,
        )
        .await
    }

    /// Revokes a session by its token; true when this call revoked it (false when it was
    /// unknown, malformed or already revoked). Listeners of `auth_pg_invalidate` hear of it at
    /// commit.
    pub async fn revoke_session(&self, token: &str) -> Result<bool, Error> {
        let revoked = self
            .query_one(REVOKE_SESSION, &[&token])
            .await?
            .try_get(0)?;
        self.forget_credential(CredentialKind::Session, token);
        Ok(revoked)
    }

    /// Revokes a session by its id (as [`SessionValidation::session_id`] and
    /// [`list_user_sessions`](Self::list_user_sessions) show it); true when this call revoked
    /// it. Listeners of `auth_pg_invalidate` hear of it at commit.
    pub async fn revoke_session_by_id(&self, session_id: &str) -> Result<bool, Error> {
        let revoked = self
            .query_one(REVOKE_SESSION_BY_ID, &[&session_id])
            .await?
            .try_get(0)?;
        self.forget(&Forget::Session(session_id));
        Ok(revoked)
    }

    /// Revokes every session of `user_id` ("sign out everywhere") and returns how many were
    /// revoked.
    pub async fn revoke_user_sessions(&self, user_id: &str) -> Result<u64, Error> {
        let revoked: i64 = self
            .query_one(REVOKE_USER_SESSIONS, &[&user_id])
            .await?
            .try_get(0)?;
        self.forget(&Forget::UserSessions(user_id));
        u64::try_from(revoked)
            .map_err(|_| Error::decode("revoke_user_sessions returned a negative count"))
    }

    /// Lists a user's sessions, live and ended (until cleaned up), without secrets.
    pub async fn list_user_sessions(&self, user_id: &str) -> Result<Vec<SessionInfo>, Error> {
        self.query(LIST_USER_SESSIONS, &[&user_id])
            .await?
            .iter()
            .map(|row| {
                Ok(SessionInfo {
                    session_id: row.try_get(0)?,
                    status: row.try_get::<_, String>(1)?.parse()?,
                    created_at: row.try_get(2)?,
                    last_activity_at: row.try_get(3)?,
                    idle_expires_at: row.try_get(4)?,
                    absolute_expires_at: row.try_get(5)?,
                    revoked_at: row.try_get(6)?,
                    metadata: row.try_get(7)?,
                })
            })
            .collect()
    }

    /// Deletes sessions that have ended (past a deadline, or revoked), at most `max_rows` of
    /// them, and returns how many it deleted; call it again while it returns `max_rows`.
    pub async fn cleanup_expired_sessions(&self, max_rows: i32) -> Result<i64, Error> {
        Ok(self
            .query_one(CLEANUP_EXPIRED_SESSIONS, &[&max_rows])
            .await?
            .try_get(0)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: &str) -> SessionValidationRecord {
        SessionValidationRecord {
            status: status.into(),
            user_id: Some("user-42".into()),
            session_id: Some("ses_1".into()),
            idle_expires_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1800)),
            absolute_expires_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(43_200)),
            metadata: Some(serde_json::json!({ "ip": "192.0.2.1" })),
        }
    }

    #[test]
    fn records_decode_every_session_status() {
        for status in [
            Status::Valid,
            Status::IdleExpired,
            Status::AbsoluteExpired,
            Status::Revoked,
            Status::Unknown,
            Status::Malformed,
        ] {
            let answer = SessionValidation::try_from(record(status.as_str())).expect("decodes");
            assert_eq!(answer.status, status);
            assert_eq!(answer.is_valid(), status == Status::Valid);
        }
        let answer = SessionValidation::try_from(record("valid")).expect("decodes");
        assert_eq!(answer.user_id.as_deref(), Some("user-42"));
        assert_eq!(answer.session_id.as_deref(), Some("ses_1"));
        assert_eq!(
            answer.absolute_expires_at,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(43_200))
        );
        assert_eq!(
            answer.metadata,
            Some(serde_json::json!({ "ip": "192.0.2.1" }))
        );
    }

    #[test]
    fn an_unknown_status_is_a_decode_error() {
        let err = SessionValidation::try_from(record("expired_somehow")).expect_err("unknown");
        assert_eq!(err.kind(), crate::ErrorKind::Decode);
        assert!(!err.is_session_limit());
    }

    #[test]
    fn malformed_answers_carry_nothing() {
        let answer = SessionValidation::only(Status::Malformed);
        assert!(!answer.is_valid());
        assert_eq!(answer.user_id, None);
        assert_eq!(answer.session_id, None);
        assert_eq!(answer.idle_expires_at, None);
        assert_eq!(answer.absolute_expires_at, None);
        assert_eq!(answer.metadata, None);
    }

    #[test]
    fn created_tokens_must_be_session_tokens_and_are_never_quoted() {
        let session = Credential::from_secret_bytes(CredentialKind::Session, &[7; 32]);
        let parsed = session_token(session.expose_secret()).expect("a session token");
        assert_eq!(parsed.kind(), CredentialKind::Session);
        assert!(!format!("{parsed:?}").contains(&session.expose_secret()[5..]));

        let token = Credential::from_secret_bytes(CredentialKind::Token, &[7; 32]);
        let err = session_token(token.expose_secret()).expect_err("wrong kind");
        assert_eq!(err.kind(), crate::ErrorKind::Decode);
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(!shown.contains(&token.expose_secret()[5..]), "{shown}");
        }
    }
}
