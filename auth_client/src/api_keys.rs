//! Organizations and their API keys.

use std::fmt;
use std::time::{Duration, SystemTime};

use auth_core::{Credential, CredentialKind};
use postgres_types::FromSql;

use crate::cache::Forget;
use crate::client::Via;
use crate::packed::{Reader, Unpack};
use crate::{AuthClient, Error, Status};

/// The answer to an API key check. Only a [`Status::Valid`] answer carries the key's
/// organization, id, name, scopes, expiry and metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiKeyValidation {
    /// What the check found.
    pub status: Status,
    /// The organization the key belongs to.
    pub org_id: Option<String>,
    /// The key's id (for revocation events, audit records and `revoke_api_key`).
    pub key_id: Option<String>,
    /// The key's name.
    pub name: Option<String>,
    /// The key's scopes, sorted.
    pub scopes: Vec<String>,
    /// When the key expires (for a rotated key, when its grace period ends).
    pub expires_at: Option<SystemTime>,
    /// The metadata given at creation.
    pub metadata: Option<serde_json::Value>,
}

impl ApiKeyValidation {
    /// Whether the key is valid.
    pub fn is_valid(&self) -> bool {
        self.status == Status::Valid
    }

    /// Whether a valid key carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.is_valid() && self.scopes.iter().any(|s| s == scope)
    }
}

/// `auth_pg.api_key_validation`, decoded from its binary record form (batches) or its packed
/// form (single checks).
#[derive(FromSql)]
#[postgres(name = "api_key_validation")]
struct ApiKeyValidationRecord {
    status: String,
    org_id: Option<String>,
    key_id: Option<String>,
    name: Option<String>,
    scopes: Option<Vec<String>>,
    expires_at: Option<SystemTime>,
    metadata: Option<serde_json::Value>,
}

impl Unpack for ApiKeyValidationRecord {
    fn unpack(reader: &mut Reader<'_>) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Self {
            status: reader.status()?,
            org_id: reader.text()?,
            key_id: reader.text()?,
            name: reader.text()?,
            scopes: reader.text_array()?,
            expires_at: reader.timestamptz()?,
            metadata: reader.json()?,
        })
    }
}

impl TryFrom<ApiKeyValidationRecord> for ApiKeyValidation {
    type Error = Error;

    fn try_from(record: ApiKeyValidationRecord) -> Result<Self, Error> {
        Ok(Self {
            status: record.status.parse()?,
            org_id: record.org_id,
            key_id: record.key_id,
            name: record.name,
            scopes: record.scopes.unwrap_or_default(),
            expires_at: record.expires_at,
            metadata: record.metadata,
        })
    }
}

/// A key just created (or rotated in): shown this once.
#[derive(Clone, PartialEq, Eq)]
pub struct NewApiKey {
    /// The key itself; its `Debug` shows only its prefix.
    pub key: Credential,
    /// Its id.
    pub key_id: String,
}

impl fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApiKey")
            .field("key", &self.key)
            .field("key_id", &self.key_id)
            .finish()
    }
}

/// One key as `list_api_keys` shows it: everything but the key and its hash.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiKeyInfo {
    /// The key's id.
    pub key_id: String,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    /// Its name.
    pub name: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// Its metadata.
    pub metadata: Option<serde_json::Value>,
    /// When it was created.
    pub created_at: SystemTime,
    /// When it expires.
    pub expires_at: Option<SystemTime>,
    /// When it was revoked.
    pub revoked_at: Option<SystemTime>,
    /// When it was last used, as last flushed (at most a minute per key behind).
    pub last_used_at: Option<SystemTime>,
    /// `Valid`, `Expired` or `Revoked`.
    pub status: Status,
}

const VALIDATE_API_KEY: &str = "SELECT auth_pg.validate_api_key_packed($1)";
const VALIDATE_API_KEYS: &str = "SELECT (v.status, v.org_id, v.key_id, v.name, v.scopes, \
     v.expires_at, v.metadata)::auth_pg.api_key_validation \
     FROM auth_pg.validate_api_keys($1) WITH ORDINALITY AS v ORDER BY v.ordinality";
const CREATE_ORGANIZATION: &str = "SELECT auth_pg.create_organization($1, $2)";
const DELETE_ORGANIZATION: &str = "SELECT auth_pg.delete_organization($1)";
const CREATE_API_KEY: &str = "SELECT key, key_id FROM auth_pg.create_api_key($1, $2, $3, $4, $5)";
const REVOKE_API_KEY: &str = "SELECT auth_pg.revoke_api_key($1, $2)";
const ROTATE_API_KEY: &str = "SELECT key, key_id FROM auth_pg.rotate_api_key($1, $2, \
     pg_catalog.make_interval(secs => $3))";
const LIST_API_KEYS: &str = "SELECT key_id, prefix, name, scopes, metadata, created_at, \
     expires_at, revoked_at, last_used_at, status FROM auth_pg.list_api_keys($1)";
const FLUSH_API_KEY_USAGE: &str = "SELECT auth_pg.flush_api_key_usage()";

fn new_key(row: &tokio_postgres::Row, function: &str) -> Result<NewApiKey, Error> {
    let key: String = row.try_get(0)?;
    let key = Credential::parse(CredentialKind::ApiKey, &key)
        .map_err(|err| Error::decode(format!("{function} returned no key: {err}")))?;
    Ok(NewApiKey {
        key,
        key_id: row.try_get(1)?,
    })
}

impl AuthClient {
    /// Creates an organization with no keys (needs `auth_pg_admin`). Fails with 23505 when the
    /// id is taken, 22023/22004/22001 for an empty, NULL or over-long id or name.
    pub async fn create_organization(&self, org_id: &str, name: &str) -> Result<(), Error> {
        self.query_one(CREATE_ORGANIZATION, &[&org_id, &name])
            .await?;
        Ok(())
    }

    /// Deletes an organization and all its keys; false when there was none.
    pub async fn delete_organization(&self, org_id: &str) -> Result<bool, Error> {
        let deleted = self
            .query_one(DELETE_ORGANIZATION, &[&org_id])
            .await?
            .try_get(0)?;
        self.forget(&Forget::OrganizationKeys(org_id));
        Ok(deleted)
    }

    /// Creates an API key (needs `auth_pg_admin`) and returns it, shown this once, with its id.
    /// Fails with P0002 for an unknown organization, 22023 for an `expires_at` in the past.
    pub async fn create_api_key(
        &self,
        org_id: &str,
        name: &str,
        scopes: &[&str],
        expires_at: Option<SystemTime>,
        metadata: Option<&serde_json::Value>,
    ) -> Result<NewApiKey, Error> {
        let row = self
            .query_one(
                CREATE_API_KEY,
                &[&org_id, &name, &scopes, &expires_at, &metadata],
            )
            .await?;
        new_key(&row, "create_api_key")
    }

    /// Checks an API key (needs `auth_pg_validator`). A string not shaped like an API key is
    /// answered `malformed` here without a round trip; the server checks the rest.
    pub async fn validate_api_key(&self, key: &str) -> Result<ApiKeyValidation, Error> {
        self.check::<ApiKeyValidationRecord, _>(
            CredentialKind::ApiKey,
            VALIDATE_API_KEY,
            key,
            || ApiKeyValidation {
                status: Status::Malformed,
                org_id: None,
                key_id: None,
                name: None,
                scopes: Vec::new(),
                expires_at: None,
                metadata: None,
            },
            Via::CacheOrServer,
        )
        .await
    }

    /// Checks many API keys in one round trip: one answer per key, in order (at most 10 000).
    pub async fn validate_api_keys(&self, keys: &[&str]) -> Result<Vec<ApiKeyValidation>, Error> {
        self.check_many::<ApiKeyValidationRecord, _>(VALIDATE_API_KEYS, keys)
            .await
    }

    /// Revokes an API key at once; true when this call revoked it (false when it was already
    /// revoked, or the organization or key is unknown).
    pub async fn revoke_api_key(&self, org_id: &str, key_id: &str) -> Result<bool, Error> {
        let revoked = self
            .query_one(REVOKE_API_KEY, &[&org_id, &key_id])
            .await?
            .try_get(0)?;
        self.forget(&Forget::ApiKey(key_id));
        Ok(revoked)
    }

    /// Replaces an API key: returns the new key; the old one stays valid for `grace`.
    pub async fn rotate_api_key(
        &self,
        org_id: &str,
        key_id: &str,
        grace: Duration,
    ) -> Result<NewApiKey, Error> {
        let row = self
            .query_one(ROTATE_API_KEY, &[&org_id, &key_id, &grace.as_secs_f64()])
            .await?;
        // The old key now expires at the end of its grace period.
        self.forget(&Forget::ApiKey(key_id));
        new_key(&row, "rotate_api_key")
    }

    /// Lists an organization's keys, oldest first, without secrets.
    pub async fn list_api_keys(&self, org_id: &str) -> Result<Vec<ApiKeyInfo>, Error> {
        self.query(LIST_API_KEYS, &[&org_id])
            .await?
            .iter()
            .map(|row| {
                Ok(ApiKeyInfo {
                    key_id: row.try_get(0)?,
                    prefix: row.try_get(1)?,
                    name: row.try_get(2)?,
                    scopes: row.try_get(3)?,
                    metadata: row.try_get(4)?,
                    created_at: row.try_get(5)?,
                    expires_at: row.try_get(6)?,
                    revoked_at: row.try_get(7)?,
                    last_used_at: row.try_get(8)?,
                    status: row.try_get::<_, String>(9)?.parse()?,
                })
            })
            .collect()
    }

    /// Writes the last-use times noted since the last flush; returns how many keys it updated.
    /// The maintenance worker does this every `auth_pg.maintenance_interval`.
    pub async fn flush_api_key_usage(&self) -> Result<u64, Error> {
        let flushed: i64 = self.query_one(FLUSH_API_KEY_USAGE, &[]).await?.try_get(0)?;
        u64::try_from(flushed).map_err(|_| Error::decode("a negative count"))
    }
}
