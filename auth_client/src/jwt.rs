//! JSON Web Tokens: verification with the keys kept by kid in the database, signing, and key
//! management.
//!
//! `auth_pg.authenticate`, which makes a token's claims the transaction's for row-level security,
//! has no call here: its claims last one transaction, and each call of this client is a
//! transaction of its own. Call it on a connection of [`AuthClient::pool`], in the transaction
//! that runs the queries the policies guard.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use postgres_types::FromSql;
use serde_json::Value;

use crate::{AuthClient, Error};

/// What a JWT verification found: the statuses of `auth_pg.jwt_verify`, the same type the
/// extension uses.
pub use auth_core::jwt::Status as JwtStatus;

/// The answer to a JWT verification. Only a [`JwtStatus::Valid`] answer carries claims.
///
/// `Debug` shows the status, the kid and the claims' names, never their values (they may hold
/// personal data) and never the token, which this type does not hold.
#[derive(Clone, PartialEq)]
pub struct JwtVerification {
    /// What the verification found.
    pub status: JwtStatus,
    /// The verified claims.
    pub claims: Option<Value>,
    /// The kid the token's header names, whenever the header could be read (for a token that
    /// is not valid, it is what the token claims, not authenticated).
    pub kid: Option<String>,
}

impl JwtVerification {
    /// Whether the token is valid.
    pub fn is_valid(&self) -> bool {
        self.status == JwtStatus::Valid
    }

    /// A valid token's `sub`.
    pub fn subject(&self) -> Option<&str> {
        self.claims.as_ref()?.get("sub")?.as_str()
    }
}

impl fmt::Debug for JwtVerification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Option<Vec<&str>> = self
            .claims
            .as_ref()
            .and_then(Value::as_object)
            .map(|claims| claims.keys().map(String::as_str).collect());
        f.debug_struct("JwtVerification")
            .field("status", &self.status)
            .field("kid", &self.kid)
            .field("claim_names", &names)
            .finish()
    }
}

/// `auth_pg.jwt_verification`, decoded from its binary record form.
#[derive(FromSql)]
#[postgres(name = "jwt_verification")]
struct JwtVerificationRecord {
    status: String,
    claims: Option<Value>,
    kid: Option<String>,
}

impl TryFrom<JwtVerificationRecord> for JwtVerification {
    type Error = Error;

    fn try_from(record: JwtVerificationRecord) -> Result<Self, Error> {
        Ok(Self {
            status: JwtStatus::parse(&record.status)
                .ok_or_else(|| Error::decode(format!("unknown JWT status {:?}", record.status)))?,
            claims: record.claims,
            kid: record.kid,
        })
    }
}

/// A token `jwt_sign` made. `Debug` hides it; [`Jwt::expose_secret`] gives it to its bearer.
#[derive(Clone, PartialEq, Eq)]
pub struct Jwt(String);

impl Jwt {
    /// The token, to hand to its bearer.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The token, consumed.
    pub fn into_secret(self) -> String {
        self.0
    }
}

impl fmt::Debug for Jwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Jwt(..)")
    }
}

/// What tokens signed with a new key must name, and when the key may be used. Every field is
/// optional; the default is a key with no rules, usable from now on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JwtKeyRules {
    /// A token's `iss` must equal it.
    pub issuer: Option<String>,
    /// A token's `aud` must contain it.
    pub audience: Option<String>,
    /// The key is as unknown before this.
    pub not_before: Option<SystemTime>,
    /// The key is as unknown from this on.
    pub not_after: Option<SystemTime>,
}

/// Where a key stands, as `list_jwt_keys` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JwtKeyStatus {
    /// It verifies (and signs, if it can).
    Active,
    /// `retire_jwt_key` retired it.
    Retired,
    /// Its `not_before` is in the future.
    NotYetValid,
    /// Its `not_after` is past.
    Expired,
}

impl FromStr for JwtKeyStatus {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "active" => Self::Active,
            "retired" => Self::Retired,
            "not_yet_valid" => Self::NotYetValid,
            "expired" => Self::Expired,
            other => return Err(Error::decode(format!("unknown JWT key status {other:?}"))),
        })
    }
}

/// One key as `list_jwt_keys` shows it: everything but the key material.
#[derive(Clone, Debug, PartialEq)]
pub struct JwtKeyInfo {
    /// The key's id.
    pub kid: String,
    /// Its algorithm (`HS256`, `RS256`, `EdDSA`...).
    pub algorithm: String,
    /// Where it stands.
    pub status: JwtKeyStatus,
    /// Whether `jwt_sign` can use it (an HMAC secret or a private key).
    pub can_sign: bool,
    /// For a public key, its JWK, as a JWKS document publishes it; `None` for an HMAC secret.
    pub public_jwk: Option<Value>,
    /// The issuer tokens must name.
    pub issuer: Option<String>,
    /// The audience tokens must name.
    pub audience: Option<String>,
    /// When it starts to be used.
    pub not_before: Option<SystemTime>,
    /// When it stops being used.
    pub not_after: Option<SystemTime>,
    /// When it was added.
    pub created_at: SystemTime,
    /// When it was retired.
    pub retired_at: Option<SystemTime>,
}

// The composite is returned as one value rather than expanded with `SELECT * FROM`, which would
// add a function scan to every verification.
const JWT_VERIFY: &str = "SELECT auth_pg.jwt_verify($1)";
const JWT_VERIFY_WITH_KEY: &str = "SELECT auth_pg.jwt_verify($1, $2, $3, $4, $5)";
const JWT_SIGN: &str = "SELECT auth_pg.jwt_sign($1, $2)";
const ADD_JWT_KEY: &str = "SELECT auth_pg.add_jwt_key($1, $2, $3, $4, $5, $6, $7)";
const IMPORT_JWKS: &str = "SELECT auth_pg.import_jwks($1, $2, $3)";
const RETIRE_JWT_KEY: &str = "SELECT auth_pg.retire_jwt_key($1)";
const LIST_JWT_KEYS: &str = "SELECT kid, algorithm, status, can_sign, public_jwk, issuer, \
     audience, not_before, not_after, created_at, retired_at FROM auth_pg.list_jwt_keys()";

impl AuthClient {
    /// Verifies a JWT with the key its header's kid names. A token that is not valid is a
    /// status, not an error. A token verified before by the same server backend costs no
    /// second signature check; a key change reaches every backend before its next
    /// verification. Needs the `auth_pg_validator` role.
    pub async fn jwt_verify(&self, token: &str) -> Result<JwtVerification, Error> {
        let row = self.query_one(JWT_VERIFY, &[&token]).await?;
        row.try_get::<_, JwtVerificationRecord>(0)?.try_into()
    }

    /// Verifies a JWT with a key given here (an HMAC secret, a PEM or a JWK) for `algorithm`,
    /// whatever kid the token names; `issuer` and `audience`, when given, must be the token's.
    ///
    /// Fails with SQLSTATE 22023 for an algorithm that is not one of HS256 to EdDSA (`none`
    /// never is) or a key that does not fit it (a PEM as an HMAC secret, say); the message never
    /// quotes the key.
    pub async fn jwt_verify_with_key(
        &self,
        token: &str,
        key: &str,
        algorithm: &str,
        issuer: Option<&str>,
        audience: Option<&str>,
    ) -> Result<JwtVerification, Error> {
        let row = self
            .query_one(
                JWT_VERIFY_WITH_KEY,
                &[&token, &key, &algorithm, &issuer, &audience],
            )
            .await?;
        row.try_get::<_, JwtVerificationRecord>(0)?.try_into()
    }

    /// Signs `claims` (a JSON object) with the key `kid`, which must be an HMAC secret or a
    /// private key in force. The claims are signed as given: add `exp`. Needs the
    /// `auth_pg_admin` role.
    ///
    /// Fails with SQLSTATE 42704 for a kid no key in force has, 55000 for a public key,
    /// 22023 for claims verification would refuse (`"exp": "999"`).
    pub async fn jwt_sign(&self, claims: &Value, kid: &str) -> Result<Jwt, Error> {
        let row = self.query_one(JWT_SIGN, &[claims, &kid]).await?;
        Ok(Jwt(row.try_get(0)?))
    }

    /// Adds a key under `kid`: an HMAC secret (at least 32, 48 or 64 bytes for HS256, HS384,
    /// HS512), a PEM (a public key verifies; a private key also signs) or a public JWK, for
    /// `algorithm`. Announced on `auth_pg_invalidate` and audited. Needs `auth_pg_admin`.
    ///
    /// Fails with SQLSTATE 42710 when the kid is taken (even by a retired key), 22023 when the
    /// key does not fit the algorithm.
    pub async fn add_jwt_key(
        &self,
        kid: &str,
        algorithm: &str,
        key: &str,
        rules: &JwtKeyRules,
    ) -> Result<(), Error> {
        self.query_one(
            ADD_JWT_KEY,
            &[
                &kid,
                &algorithm,
                &key,
                &rules.issuer,
                &rules.audience,
                &rules.not_before,
                &rules.not_after,
            ],
        )
        .await?;
        Ok(())
    }

    /// Imports the signature keys of a JWKS document (`{"keys": [...]}`, as an identity
    /// provider publishes it), with an issuer and audience for all of them. Keys already stored
    /// with the same kid and key are skipped; returns how many were added.
    ///
    /// Fails with SQLSTATE 42710 when a kid is stored with another key, 22023 for a document or
    /// key that cannot be used (named by its index).
    pub async fn import_jwks(
        &self,
        jwks: &Value,
        issuer: Option<&str>,
        audience: Option<&str>,
    ) -> Result<u32, Error> {
        let row = self
            .query_one(IMPORT_JWKS, &[jwks, &issuer, &audience])
            .await?;
        let added: i32 = row.try_get(0)?;
        u32::try_from(added).map_err(|_| Error::decode("import_jwks returned a negative count"))
    }

    /// Retires a key: every backend stops verifying and signing with it before its next
    /// verification. True when this call retired it.
    pub async fn retire_jwt_key(&self, kid: &str) -> Result<bool, Error> {
        Ok(self.query_one(RETIRE_JWT_KEY, &[&kid]).await?.try_get(0)?)
    }

    /// Every key, oldest first, without its key material.
    pub async fn list_jwt_keys(&self) -> Result<Vec<JwtKeyInfo>, Error> {
        self.query(LIST_JWT_KEYS, &[])
            .await?
            .into_iter()
            .map(|row| {
                Ok(JwtKeyInfo {
                    kid: row.try_get(0)?,
                    algorithm: row.try_get(1)?,
                    status: row.try_get::<_, String>(2)?.parse()?,
                    can_sign: row.try_get(3)?,
                    public_jwk: row.try_get(4)?,
                    issuer: row.try_get(5)?,
                    audience: row.try_get(6)?,
                    not_before: row.try_get(7)?,
                    not_after: row.try_get(8)?,
                    created_at: row.try_get(9)?,
                    retired_at: row.try_get(10)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for status in [
            JwtStatus::Valid,
            JwtStatus::Expired,
            JwtStatus::NotYetValid,
            JwtStatus::BadSignature,
            JwtStatus::UnknownKey,
            JwtStatus::WrongIssuer,
            JwtStatus::WrongAudience,
            JwtStatus::Malformed,
        ] {
            assert_eq!(JwtStatus::parse(status.as_str()), Some(status));
            assert_eq!(status.to_string(), status.as_str());
        }
        assert_eq!(JwtStatus::parse("unknown"), None);
        assert!("bogus".parse::<JwtKeyStatus>().is_err());
    }

    #[test]
    fn debug_shows_no_token_and_no_claim_values() {
        let token = Jwt("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZGEifQ.c2lnbmF0dXJl".to_owned());
        assert_eq!(format!("{token:?}"), "Jwt(..)");
        let verification = JwtVerification {
            status: JwtStatus::Valid,
            claims: Some(serde_json::json!({"sub": "ada@example.com", "exp": 1})),
            kid: Some("k1".to_owned()),
        };
        let debug = format!("{verification:?}");
        assert!(!debug.contains("ada@example.com"), "{debug}");
        assert!(debug.contains("sub") && debug.contains("k1"), "{debug}");
        assert_eq!(verification.subject(), Some("ada@example.com"));
        assert!(verification.is_valid());
    }
}
