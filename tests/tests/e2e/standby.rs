//! Checks on a hot standby: every check (permissions and JWTs included) answers there from
//! replicated data, writes nothing, and sees a revocation or a retired key once it is replayed;
//! a touch, which must write, says why it cannot.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auth_client::reexports::tokio_postgres::error::SqlState;
use auth_client::{AuthClient, Config, JwtKeyRules, JwtStatus, Status};
use auth_pg_e2e::{Cluster, ClusterOptions, roles};
use serde_json::json;

/// A client of one connection, so that every check runs in the same backend (and a replayed
/// key change must reach that backend's cache of decoding keys).
fn client(cluster: &Cluster, role: &str) -> AuthClient {
    let mut config = Config::from_url(&cluster.url(role, "app")).expect("url");
    config.pool_size(1);
    AuthClient::new(&config).expect("client")
}

#[tokio::test]
async fn checks_answer_on_a_hot_standby() {
    let primary = Cluster::start(&ClusterOptions::default());
    primary.create_database("app");
    let admin = client(&primary, roles::ADMIN);
    let hour = Duration::from_secs(3600);
    let token = admin
        .issue_token("user-1", hour, &["read"], None)
        .await
        .expect("issue");
    admin
        .create_organization("acme", "Acme")
        .await
        .expect("create org");
    let key = admin
        .create_api_key("acme", "CI", &[], None, None)
        .await
        .expect("create key");
    let session = admin
        .create_session("user-1", hour, 2 * hour, None)
        .await
        .expect("create session");

    admin
        .create_role("reader", None, None)
        .await
        .expect("create role");
    admin
        .grant_permission("reader", "reports:*", None)
        .await
        .expect("grant");
    admin
        .assign_role("user-1", "reader", Some("acme"))
        .await
        .expect("assign");
    admin
        .add_jwt_key(
            "k1",
            "HS256",
            "a standby test secret of at least 32 bytes",
            &JwtKeyRules::default(),
        )
        .await
        .expect("add key");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let jwt = admin
        .jwt_sign(&json!({"sub": "user-1", "exp": now + 3600}), "k1")
        .await
        .expect("sign");

    let standby = Cluster::standby_of(&primary);
    standby.catch_up_with(&primary);
    assert_eq!(standby.psql("app", "SELECT pg_is_in_recovery()"), "t");
    let replica = client(&standby, roles::VALIDATOR);
    let check = || async {
        (
            replica
                .has_permission("user-1", "reports:export", Some("acme"))
                .await
                .expect("has_permission"),
            replica
                .validate_token(token.expose_secret())
                .await
                .expect("validate_token")
                .status,
            replica
                .validate_api_key(key.key.expose_secret())
                .await
                .expect("validate_api_key")
                .status,
            replica
                .validate_session(session.expose_secret())
                .await
                .expect("validate_session")
                .status,
            replica
                .jwt_verify(jwt.expose_secret())
                .await
                .expect("jwt_verify")
                .status,
        )
    };
    // Twice: the second answers come from the backend's caches (keys, verified tokens).
    for _ in 0..2 {
        assert_eq!(
            check().await,
            (
                true,
                Status::Valid,
                Status::Valid,
                Status::Valid,
                JwtStatus::Valid
            )
        );
    }
    let err = replica
        .touch_session(session.expose_secret())
        .await
        .expect_err("a touch writes");
    assert_eq!(err.code(), Some(&SqlState::READ_ONLY_SQL_TRANSACTION));

    // Revocations on the primary reach the standby's answers once replayed.
    admin
        .revoke_token(token.expose_secret())
        .await
        .expect("revoke");
    admin
        .revoke_api_key("acme", &key.key_id)
        .await
        .expect("revoke");
    admin
        .revoke_session(session.expose_secret())
        .await
        .expect("revoke");
    admin
        .unassign_role("user-1", "reader", Some("acme"))
        .await
        .expect("unassign");
    assert!(admin.retire_jwt_key("k1").await.expect("retire"));
    standby.catch_up_with(&primary);
    assert_eq!(
        check().await,
        (
            false,
            Status::Revoked,
            Status::Revoked,
            Status::Revoked,
            JwtStatus::UnknownKey
        )
    );
}
