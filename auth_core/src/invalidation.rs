//! The payloads of `NOTIFY auth_pg_invalidate`: what a cache must forget.
//!
//! Any role may `LISTEN`, so a payload names ids only, never a credential or a hash. The
//! extension writes these and the client reads them, from this one definition.

use serde::{Deserialize, Serialize};

/// The channel every invalidation is sent on.
pub const CHANNEL: &str = "auth_pg_invalidate";

/// One invalidation, serialized as a JSON object tagged by `event`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Invalidation {
    /// One token was revoked.
    TokenRevoked {
        /// The token's id.
        token_id: i64,
        /// Its owner.
        user_id: String,
    },
    /// Every token of a user was revoked.
    UserTokensRevoked {
        /// The user.
        user_id: String,
    },
    /// An API key was revoked.
    ApiKeyRevoked {
        /// Its organization.
        org_id: String,
        /// The key's id.
        key_id: String,
    },
    /// An API key was rotated: it now expires at the end of its grace period.
    ApiKeyRotated {
        /// Its organization.
        org_id: String,
        /// The old key's id.
        key_id: String,
        /// The id of the key that replaces it.
        new_key_id: String,
    },
    /// A session was revoked (by token, by id, or evicted by the per-user limit).
    SessionRevoked {
        /// The session's id.
        session_id: String,
        /// Its user.
        user_id: String,
    },
    /// Every session of a user was revoked.
    UserSessionsRevoked {
        /// The user.
        user_id: String,
    },
    /// The token table was changed by hand (`UPDATE`, `DELETE` or `TRUNCATE` by its owner, not
    /// through auth_pg's functions): forget every token.
    TokensChanged,
    /// The session table was changed by hand: forget every session.
    SessionsChanged,
    /// A role was assigned to or unassigned from a user. `org_id` is `None` for a global
    /// assignment, which changes the user's permissions in every organization.
    UserRolesChanged {
        /// The user.
        user_id: String,
        /// The organization, or `None` for everywhere.
        org_id: Option<String>,
    },
    /// A role's permissions or parents changed, or it was deleted: the permissions of every
    /// user who holds it, or a role that inherits from it, may have changed.
    RoleChanged {
        /// The role's name.
        role: String,
        /// The role's organization, or `None` for a global role.
        org_id: Option<String>,
    },
    /// Every user's permissions were recomputed (after a bulk load): forget them all.
    PermissionsRebuilt,
    /// An organization's keys changed in a way no finer event describes (its document was
    /// edited by hand, or the organization was deleted): forget all its keys.
    OrganizationKeysChanged {
        /// The organization.
        org_id: String,
    },
    /// Every organization's keys changed (`auth_pg.organizations` or `auth_pg.api_key_lookup`
    /// was truncated by hand): forget every API key.
    ApiKeysChanged,
    /// A JWT verification key was added (by `add_jwt_key` or `import_jwks`) or retired: forget
    /// every verification that named this `kid`.
    JwtKeyChanged {
        /// The key's id.
        kid: String,
    },
    /// The JWT key table was changed in a way no finer event describes (edited by hand,
    /// truncated): forget every JWT verification.
    JwtKeysChanged,
}

impl Invalidation {
    /// The JSON payload for `pg_notify`.
    pub fn to_payload(&self) -> String {
        serde_json::to_string(self).expect("an invalidation always serializes")
    }

    /// Parses a payload; `None` for one this version does not know, which a cache should treat
    /// as "forget everything".
    pub fn from_payload(payload: &str) -> Option<Self> {
        serde_json::from_str(payload).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_are_stable() {
        let cases = [
            (
                Invalidation::TokenRevoked {
                    token_id: 7,
                    user_id: "u\"1".into(),
                },
                r#"{"event":"token_revoked","token_id":7,"user_id":"u\"1"}"#,
            ),
            (
                Invalidation::UserTokensRevoked {
                    user_id: "auth0|x".into(),
                },
                r#"{"event":"user_tokens_revoked","user_id":"auth0|x"}"#,
            ),
            (
                Invalidation::SessionRevoked {
                    session_id: "ses_1".into(),
                    user_id: "u1".into(),
                },
                r#"{"event":"session_revoked","session_id":"ses_1","user_id":"u1"}"#,
            ),
            (
                Invalidation::UserSessionsRevoked {
                    user_id: "u1".into(),
                },
                r#"{"event":"user_sessions_revoked","user_id":"u1"}"#,
            ),
            (
                Invalidation::UserRolesChanged {
                    user_id: "u1".into(),
                    org_id: Some("acme".into()),
                },
                r#"{"event":"user_roles_changed","user_id":"u1","org_id":"acme"}"#,
            ),
            (
                Invalidation::PermissionsRebuilt,
                r#"{"event":"permissions_rebuilt"}"#,
            ),
            (Invalidation::TokensChanged, r#"{"event":"tokens_changed"}"#),
            (
                Invalidation::ApiKeysChanged,
                r#"{"event":"api_keys_changed"}"#,
            ),
            (
                Invalidation::SessionsChanged,
                r#"{"event":"sessions_changed"}"#,
            ),
            (
                Invalidation::RoleChanged {
                    role: "editor".into(),
                    org_id: None,
                },
                r#"{"event":"role_changed","role":"editor","org_id":null}"#,
            ),
            (
                Invalidation::JwtKeyChanged {
                    kid: "2024-06 \"a\"".into(),
                },
                r#"{"event":"jwt_key_changed","kid":"2024-06 \"a\""}"#,
            ),
            (
                Invalidation::JwtKeysChanged,
                r#"{"event":"jwt_keys_changed"}"#,
            ),
        ];
        for (invalidation, payload) in cases {
            assert_eq!(invalidation.to_payload(), payload);
            assert_eq!(Invalidation::from_payload(payload), Some(invalidation));
        }
    }

    #[test]
    fn unknown_payloads_are_none() {
        assert_eq!(
            Invalidation::from_payload("{\"event\":\"from_the_future\"}"),
            None
        );
        assert_eq!(Invalidation::from_payload("not json"), None);
    }
}
