//! Opaque bearer tokens: issue, validate, revoke.

use std::time::{Duration, SystemTime};

use auth_core::{Credential, CredentialKind};
use postgres_types::FromSql;

use crate::cache::Forget;
use crate::client::Via;
use crate::packed::{Reader, Unpack};
use crate::{AuthClient, Error, Status};

/// The answer to a token check. Only a [`Status::Valid`] answer carries the token's id,
/// owner, scopes, expiry and metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenValidation {
    /// What the check found.
    pub status: Status,
    /// The token's id (for revocation events and audit records).
    pub token_id: Option<i64>,
    /// The user the token was issued to.
    pub user_id: Option<String>,
    /// The token's scopes, sorted.
    pub scopes: Vec<String>,
    /// When the token expires.
    pub expires_at: Option<SystemTime>,
    /// The metadata given at issue.
    pub metadata: Option<serde_json::Value>,
}

impl TokenValidation {
    /// Whether the token is valid.
    pub fn is_valid(&self) -> bool {
        self.status == Status::Valid
    }

    /// Whether a valid token carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.is_valid() && self.scopes.iter().any(|s| s == scope)
    }

    fn only(status: Status) -> Self {
        Self {
            status,
            token_id: None,
            user_id: None,
            scopes: Vec::new(),
            expires_at: None,
            metadata: None,
        }
    }
}

/// `auth_pg.token_validation`, decoded from its binary record form (batches) or its packed
/// form (single checks).
#[derive(FromSql)]
#[postgres(name = "token_validation")]
struct TokenValidationRecord {
    status: String,
    token_id: Option<i64>,
    user_id: Option<String>,
    scopes: Option<Vec<String>>,
    expires_at: Option<SystemTime>,
    metadata: Option<serde_json::Value>,
}

impl Unpack for TokenValidationRecord {
    fn unpack(reader: &mut Reader<'_>) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Self {
            status: reader.status()?,
            token_id: reader.int8()?,
            user_id: reader.text()?,
            scopes: reader.text_array()?,
            expires_at: reader.timestamptz()?,
            metadata: reader.json()?,
        })
    }
}

impl TryFrom<TokenValidationRecord> for TokenValidation {
    type Error = Error;

    fn try_from(record: TokenValidationRecord) -> Result<Self, Error> {
        Ok(Self {
            status: record.status.parse()?,
            token_id: record.token_id,
            user_id: record.user_id,
            scopes: record.scopes.unwrap_or_default(),
            expires_at: record.expires_at,
            metadata: record.metadata,
        })
    }
}

// A single check asks for the packed form (one bytea; see packed.rs): sending the composite
// would cost the server a lookup of each field's output function on every call.
const VALIDATE_TOKEN: &str = "SELECT auth_pg.validate_token_packed($1)";
const VALIDATE_TOKENS: &str = "SELECT (v.status, v.token_id, v.user_id, v.scopes, v.expires_at, \
     v.metadata)::auth_pg.token_validation \
     FROM auth_pg.validate_tokens($1) WITH ORDINALITY AS v ORDER BY v.ordinality";
const ISSUE_TOKEN: &str =
    "SELECT auth_pg.issue_token($1, pg_catalog.make_interval(secs => $2), $3, $4)";
const REVOKE_TOKEN: &str = "SELECT auth_pg.revoke_token($1)";
const REVOKE_USER_TOKENS: &str = "SELECT auth_pg.revoke_user_tokens($1)";

impl AuthClient {
    /// Issues a token for `user_id`, valid for `ttl`, and returns it: this is the only time it
    /// is ever shown. Needs the `auth_pg_admin` role.
    ///
    /// Fails with SQLSTATE 22023 for an empty user id or scope, or a lifetime that is zero or
    /// longer than `auth_pg.max_token_ttl`; 22004 for NULLs; 22001 for an over-long user id.
    pub async fn issue_token(
        &self,
        user_id: &str,
        ttl: Duration,
        scopes: &[&str],
        metadata: Option<&serde_json::Value>,
    ) -> Result<Credential, Error> {
        let row = self
            .query_one(
                ISSUE_TOKEN,
                &[&user_id, &ttl.as_secs_f64(), &scopes, &metadata],
            )
            .await?;
        let token: String = row.try_get(0)?;
        Credential::parse(CredentialKind::Token, &token)
            .map_err(|err| Error::decode(format!("issue_token returned no token: {err}")))
    }

    /// Checks a token. A string not shaped like a token (empty, wrong length, kind or
    /// alphabet) is answered `malformed` here without a round trip; the server checks the
    /// rest, the checksum included. Needs the `auth_pg_validator` role.
    pub async fn validate_token(&self, token: &str) -> Result<TokenValidation, Error> {
        self.check::<TokenValidationRecord, _>(
            CredentialKind::Token,
            VALIDATE_TOKEN,
            token,
            || TokenValidation::only(Status::Malformed),
            Via::CacheOrServer,
        )
        .await
    }

    /// Checks many tokens in one round trip: one answer per token, in order (at most 10 000).
    pub async fn validate_tokens(&self, tokens: &[&str]) -> Result<Vec<TokenValidation>, Error> {
        self.check_many::<TokenValidationRecord, _>(VALIDATE_TOKENS, tokens)
            .await
    }

    /// Revokes a token; true when this call revoked it (false when it was unknown, malformed
    /// or already revoked). Listeners of `auth_pg_invalidate` hear of it at commit.
    pub async fn revoke_token(&self, token: &str) -> Result<bool, Error> {
        let row = self.query_one(REVOKE_TOKEN, &[&token]).await?;
        self.forget_credential(CredentialKind::Token, token);
        Ok(row.try_get(0)?)
    }

    /// Revokes every token of `user_id` and returns how many were revoked.
    pub async fn revoke_user_tokens(&self, user_id: &str) -> Result<u64, Error> {
        let row = self.query_one(REVOKE_USER_TOKENS, &[&user_id]).await?;
        self.forget(&Forget::UserTokens(user_id));
        let revoked: i64 = row.try_get(0)?;
        u64::try_from(revoked)
            .map_err(|_| Error::decode("revoke_user_tokens returned a negative count"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_valid_answers_grant_scopes() {
        let mut answer = TokenValidation::only(Status::Revoked);
        answer.scopes = vec!["read".into()];
        assert!(!answer.has_scope("read"));
        answer.status = Status::Valid;
        assert!(answer.has_scope("read"));
        assert!(!answer.has_scope("write"));
    }
}
