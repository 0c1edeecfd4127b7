//! JWT through auth_client and plain SQL: keys rotated and retired by one connection reaching
//! another's very next verification (even inside a REPEATABLE READ transaction), every
//! algorithm, refused misuse, and row-level security driven by `authenticate` as a
//! non-superuser, with the claims gone when the transaction ends.

use std::time::{SystemTime, UNIX_EPOCH};

use auth_client::reexports::tokio_postgres::error::SqlState;
use auth_client::{AuthClient, Config, JwtKeyRules, JwtKeyStatus, JwtStatus};
use auth_core::Invalidation;
use auth_pg_e2e::{TestDb, roles};
use serde_json::json;

use auth_core::jwt::test_keys::{
    ED25519_PRIVATE, ED25519_PUBLIC, HMAC_SECRET as SECRET, P256_PRIVATE, P256_PUBLIC,
    P384_PRIVATE, P384_PUBLIC, RSA_PRIVATE, RSA_PUBLIC,
};

fn now() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(since.as_secs()).expect("small")
}

/// A client with one connection, so that every call reaches the same server backend and its
/// caches.
fn one_backend(db: &TestDb, role: &str) -> AuthClient {
    let mut config = Config::from_url(&db.url(role)).expect("url");
    config.pool_size(1);
    AuthClient::new(&config).expect("client")
}

async fn status_in(client: &tokio_postgres::Client, token: &str) -> String {
    client
        .query_one("SELECT status FROM auth_pg.jwt_verify($1)", &[&token])
        .await
        .expect("jwt_verify")
        .get(0)
}

#[tokio::test]
async fn key_changes_reach_other_backends_at_their_next_verification() {
    let db = TestDb::new("jwt_rotation");
    let admin = db.client(roles::ADMIN);
    let app = one_backend(&db, roles::VALIDATOR);
    let mut events = db.listen(roles::NOBODY).await;
    // A second backend, inside a REPEATABLE READ transaction opened before every change: keys
    // are read with the newest snapshot, not the transaction's.
    let pinned = db.connect(roles::VALIDATOR).await;
    pinned
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1")
        .await
        .expect("begin");

    let claims = json!({"sub": "ada", "exp": now() + 3600});
    admin
        .add_jwt_key("k1", "HS256", SECRET, &JwtKeyRules::default())
        .await
        .expect("add");
    let first = admin.jwt_sign(&claims, "k1").await.expect("sign");
    let first = first.expose_secret();
    for _ in 0..3 {
        let answer = app.jwt_verify(first).await.expect("verify");
        assert_eq!(answer.status, JwtStatus::Valid);
        assert_eq!(answer.subject(), Some("ada"));
        assert_eq!(answer.kid.as_deref(), Some("k1"));
        assert_eq!(status_in(&pinned, first).await, "valid");
    }

    // Rotation: the new key verifies at once in both backends, which had loaded the keys
    // before it existed.
    admin
        .add_jwt_key("k2", "HS512", SECRET, &JwtKeyRules::default())
        .await
        .expect("add");
    let second = admin.jwt_sign(&claims, "k2").await.expect("sign");
    let second = second.expose_secret();
    assert_eq!(
        app.jwt_verify(second).await.expect("verify").status,
        JwtStatus::Valid
    );
    assert_eq!(status_in(&pinned, second).await, "valid");

    // Retirement: the next verification of a token each backend had cached refuses it.
    assert!(admin.retire_jwt_key("k1").await.expect("retire"));
    assert_eq!(
        app.jwt_verify(first).await.expect("verify").status,
        JwtStatus::UnknownKey
    );
    assert_eq!(status_in(&pinned, first).await, "unknown_key");
    assert!(!admin.retire_jwt_key("k1").await.expect("retire again"));

    // A change by hand, as the owner, reaches them too, and is announced as one.
    assert_eq!(status_in(&pinned, second).await, "valid");
    db.psql("UPDATE auth_pg.jwt_keys SET audience = 'api' WHERE kid = 'k2'");
    assert_eq!(
        app.jwt_verify(second).await.expect("verify").status,
        JwtStatus::WrongAudience
    );
    assert_eq!(status_in(&pinned, second).await, "wrong_audience");
    db.psql("TRUNCATE auth_pg.jwt_keys");
    assert_eq!(
        app.jwt_verify(second).await.expect("verify").status,
        JwtStatus::UnknownKey
    );
    assert_eq!(status_in(&pinned, second).await, "unknown_key");
    pinned.batch_execute("COMMIT").await.expect("commit");

    for expected in [
        Invalidation::JwtKeyChanged { kid: "k1".into() },
        Invalidation::JwtKeyChanged { kid: "k2".into() },
        Invalidation::JwtKeyChanged { kid: "k1".into() },
        Invalidation::JwtKeysChanged,
        Invalidation::JwtKeysChanged,
    ] {
        assert_eq!(events.next().await, expected);
    }
    let audited = db.psql(
        "SELECT string_agg(action || ':' || coalesce(subject_id, ''), ',' ORDER BY event_id) \
         FROM auth_pg.audit_events",
    );
    assert_eq!(
        audited.trim(),
        "jwt_key.add:k1,jwt_key.add:k2,jwt_key.retire:k1,jwt_keys.edit:,jwt_keys.edit:"
    );
}

#[tokio::test]
async fn every_algorithm_through_the_client() {
    let db = TestDb::new("jwt_algorithms");
    let admin = db.client(roles::ADMIN);
    let app = db.client(roles::VALIDATOR);
    let keys = [
        ("HS256", SECRET, SECRET),
        ("HS384", SECRET, SECRET),
        ("HS512", SECRET, SECRET),
        ("RS256", RSA_PRIVATE, RSA_PUBLIC),
        ("RS384", RSA_PRIVATE, RSA_PUBLIC),
        ("RS512", RSA_PRIVATE, RSA_PUBLIC),
        ("PS256", RSA_PRIVATE, RSA_PUBLIC),
        ("PS384", RSA_PRIVATE, RSA_PUBLIC),
        ("PS512", RSA_PRIVATE, RSA_PUBLIC),
        ("ES256", P256_PRIVATE, P256_PUBLIC),
        ("ES384", P384_PRIVATE, P384_PUBLIC),
        ("EdDSA", ED25519_PRIVATE, ED25519_PUBLIC),
    ];
    let rules = JwtKeyRules {
        issuer: Some("https://issuer.example".into()),
        audience: Some("api".into()),
        ..JwtKeyRules::default()
    };
    let claims = json!({
        "sub": "ada", "exp": now() + 600, "iss": "https://issuer.example", "aud": ["api"],
        "roles": ["editor"],
    });
    for (algorithm, private, public) in keys {
        let kid = format!("all-{algorithm}");
        admin
            .add_jwt_key(&kid, algorithm, private, &rules)
            .await
            .expect("add");
        let token = admin.jwt_sign(&claims, &kid).await.expect("sign");
        assert!(!format!("{token:?}").contains(token.expose_secret()));
        let answer = app.jwt_verify(token.expose_secret()).await.expect("verify");
        assert_eq!(answer.status, JwtStatus::Valid, "{algorithm}");
        assert_eq!(answer.claims.as_ref(), Some(&claims));
        assert!(!format!("{answer:?}").contains("editor"));
        let inline = app
            .jwt_verify_with_key(
                token.expose_secret(),
                public,
                algorithm,
                Some("https://issuer.example"),
                Some("web"),
            )
            .await
            .expect("verify inline");
        assert_eq!(inline.status, JwtStatus::WrongAudience, "{algorithm}");
    }
    let listed = admin.list_jwt_keys().await.expect("list");
    assert_eq!(listed.len(), 12);
    for key in &listed {
        assert_eq!(key.status, JwtKeyStatus::Active);
        assert!(key.can_sign);
        assert_eq!(key.public_jwk.is_some(), !key.algorithm.starts_with("HS"));
        assert_eq!(key.audience.as_deref(), Some("api"));
    }
    let shown = format!("{listed:?}");
    assert!(!shown.contains(SECRET) && !shown.contains("PRIVATE"));

    // The public JWKs the list shows, published as a JWKS and imported elsewhere, verify the
    // same tokens.
    let other = TestDb::new("jwt_algorithms_jwks");
    let other_admin = other.client(roles::ADMIN);
    let jwks =
        json!({"keys": listed.iter().filter_map(|k| k.public_jwk.clone()).collect::<Vec<_>>()});
    assert_eq!(
        other_admin
            .import_jwks(&jwks, Some("https://issuer.example"), None)
            .await
            .expect("import"),
        9
    );
    assert_eq!(
        other_admin
            .import_jwks(&jwks, Some("https://issuer.example"), None)
            .await
            .expect("import again"),
        0
    );
    let token = admin.jwt_sign(&claims, "all-EdDSA").await.expect("sign");
    let answer = other
        .client(roles::VALIDATOR)
        .jwt_verify(token.expose_secret())
        .await
        .expect("verify");
    assert_eq!(answer.status, JwtStatus::Valid);
}

#[tokio::test]
async fn misuse_is_refused_with_clear_sqlstates() {
    let db = TestDb::new("jwt_misuse");
    let admin = db.client(roles::ADMIN);
    let app = db.client(roles::VALIDATOR);
    let nobody = db.client(roles::NOBODY);
    admin
        .add_jwt_key("public", "RS256", RSA_PUBLIC, &JwtKeyRules::default())
        .await
        .expect("add");

    let err = admin
        .add_jwt_key("confused", "HS256", RSA_PUBLIC, &JwtKeyRules::default())
        .await
        .expect_err("a PEM is never an HMAC secret");
    assert_eq!(err.code(), Some(&SqlState::INVALID_PARAMETER_VALUE));
    assert!(!err.to_string().contains("MII"), "{err}");
    let err = app
        .jwt_verify_with_key("a.b.c", RSA_PUBLIC, "HS256", None, None)
        .await
        .expect_err("a PEM is never an HMAC secret");
    assert_eq!(err.code(), Some(&SqlState::INVALID_PARAMETER_VALUE));
    let err = app
        .jwt_verify_with_key("a.b.c", SECRET, "none", None, None)
        .await
        .expect_err("none is never an algorithm");
    assert_eq!(err.code(), Some(&SqlState::INVALID_PARAMETER_VALUE));
    assert!(!err.to_string().contains(SECRET));
    let err = admin
        .add_jwt_key("public", "HS256", SECRET, &JwtKeyRules::default())
        .await
        .expect_err("a kid is never reused");
    assert_eq!(err.code(), Some(&SqlState::DUPLICATE_OBJECT));
    let err = admin
        .jwt_sign(&json!({"exp": now() + 60}), "public")
        .await
        .expect_err("a public key cannot sign");
    assert_eq!(
        err.code(),
        Some(&SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE)
    );
    let err = admin
        .jwt_sign(&json!({"exp": "999"}), "nobody")
        .await
        .expect_err("no such key");
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_OBJECT));

    // Who may do what: the validator verifies, only the admin manages and signs, and nobody
    // reads the key table.
    for answer in [
        app.add_jwt_key("k", "HS256", SECRET, &JwtKeyRules::default())
            .await
            .map(|_| ()),
        app.jwt_sign(&json!({}), "public").await.map(|_| ()),
        app.list_jwt_keys().await.map(|_| ()),
        nobody.jwt_verify("a.b.c").await.map(|_| ()),
    ] {
        let err = answer.expect_err("refused");
        assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    }
    let admin_sql = db.connect(roles::ADMIN).await;
    let err = admin_sql
        .query("SELECT key FROM auth_pg.jwt_keys", &[])
        .await
        .expect_err("key material is closed");
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));

    // Bad tokens are statuses.
    let megabyte = "a".repeat(1 << 20);
    for token in [
        "",
        "a.b",
        "a.b.c.d",
        "!!!.???.***",
        "eyJhbGciOiJub25lIn0.eyJleHAiOjF9.",
        megabyte.as_str(),
    ] {
        assert_eq!(
            app.jwt_verify(token).await.expect("verify").status,
            JwtStatus::Malformed
        );
    }
}

#[tokio::test]
async fn row_level_security_follows_the_authenticated_token_only() {
    let db = TestDb::new("jwt_rls");
    let admin = db.client(roles::ADMIN);
    db.psql(&format!(
        "CREATE TABLE documents (owner text NOT NULL, body text NOT NULL);
         INSERT INTO documents VALUES ('ada', 'ada''s plan'), ('bob', 'bob''s diary');
         ALTER TABLE documents ENABLE ROW LEVEL SECURITY;
         CREATE POLICY own_documents ON documents USING (owner = auth_pg.uid());
         -- The PostgREST way, for comparison: a setting anyone can write.
         CREATE TABLE notes (owner text NOT NULL, body text NOT NULL);
         INSERT INTO notes VALUES ('ada', 'ada''s note'), ('bob', 'bob''s note');
         ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
         CREATE POLICY own_notes ON notes
             USING (owner = nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub');
         GRANT SELECT ON documents, notes TO {};",
        roles::VALIDATOR
    ));
    admin
        .add_jwt_key("rls", "EdDSA", ED25519_PRIVATE, &JwtKeyRules::default())
        .await
        .expect("add");
    let ada = admin
        .jwt_sign(&json!({"sub": "ada", "exp": now() + 600}), "rls")
        .await
        .expect("sign");

    // The application's connection: not the table's owner, not a superuser.
    let app = db.connect(roles::VALIDATOR).await;
    let rows = |sql: &'static str| {
        let app = &app;
        async move {
            app.query(sql, &[])
                .await
                .expect("query")
                .iter()
                .map(|row| row.get::<_, String>(0))
                .collect::<Vec<String>>()
        }
    };
    assert!(rows("SELECT body FROM documents").await.is_empty());

    app.batch_execute("BEGIN").await.expect("begin");
    let status: String = app
        .query_one("SELECT auth_pg.authenticate($1)", &[&ada.expose_secret()])
        .await
        .expect("authenticate")
        .get(0);
    assert_eq!(status, "valid");
    assert_eq!(rows("SELECT body FROM documents").await, ["ada's plan"]);
    assert_eq!(rows("SELECT body FROM notes").await, ["ada's note"]);
    assert_eq!(rows("SELECT auth_pg.uid()").await, ["ada"]);
    // Writing the setting by hand: the setting-based policy believes it, auth_pg.uid() does not.
    app.batch_execute("SELECT set_config('request.jwt.claims', '{\"sub\": \"bob\"}', true)")
        .await
        .expect("set_config");
    assert_eq!(rows("SELECT body FROM notes").await, ["bob's note"]);
    assert_eq!(rows("SELECT body FROM documents").await, ["ada's plan"]);
    app.batch_execute("COMMIT").await.expect("commit");

    // The next transaction on the same connection (the next user of a pooled connection)
    // sees nothing.
    assert!(rows("SELECT body FROM documents").await.is_empty());
    assert!(rows("SELECT body FROM notes").await.is_empty());
    let uid: Option<String> = app
        .query_one("SELECT auth_pg.uid()", &[])
        .await
        .expect("uid")
        .get(0);
    assert_eq!(uid, None);

    // A token that is not valid authenticates no one, even after a valid one.
    app.batch_execute("BEGIN").await.expect("begin");
    app.query_one("SELECT auth_pg.authenticate($1)", &[&ada.expose_secret()])
        .await
        .expect("authenticate");
    let status: String = app
        .query_one("SELECT auth_pg.authenticate($1)", &[&"forged.token.here"])
        .await
        .expect("authenticate")
        .get(0);
    assert_eq!(status, "malformed");
    assert!(rows("SELECT body FROM documents").await.is_empty());
    app.batch_execute("ROLLBACK").await.expect("rollback");
}

/// A key stored before a rule refused its kind (here the base64 of a public key's DER as an
/// HMAC secret, which add_jwt_key now refuses) can still be described, given an end and retired
/// by hand, also with session_replication_role = replica: none of these changes its kid,
/// algorithm or key. Changing those checks it again.
#[tokio::test]
async fn a_key_stored_under_older_rules_can_still_be_retired() {
    let db = TestDb::new("jwt_older_rules");
    let der: String = RSA_PUBLIC
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    // Stored as an older version would have stored it: without today's key check.
    db.psql(&format!(
        "ALTER TABLE auth_pg.jwt_keys DISABLE TRIGGER jwt_keys_check;
         INSERT INTO auth_pg.jwt_keys (kid, algorithm, key) VALUES ('old', 'HS256', '{der}');
         ALTER TABLE auth_pg.jwt_keys ENABLE ALWAYS TRIGGER jwt_keys_check;"
    ));
    let owner = db.connect(roles::SUPERUSER).await;
    let err = owner
        .batch_execute("UPDATE auth_pg.jwt_keys SET algorithm = 'HS384' WHERE kid = 'old'")
        .await
        .expect_err("the key is checked again when its columns change");
    assert_eq!(
        err.as_db_error().map(|e| e.code()),
        Some(&SqlState::INVALID_PARAMETER_VALUE),
        "{err}"
    );
    owner
        .batch_execute(
            "UPDATE auth_pg.jwt_keys SET issuer = 'https://old.example', \
                 not_after = now() + interval '1 hour' \
             WHERE kid = 'old'",
        )
        .await
        .expect("described and given an end by hand");
    owner
        .batch_execute(
            "SET session_replication_role = replica; \
             UPDATE auth_pg.jwt_keys SET active = false, retired_at = now() WHERE kid = 'old'; \
             SET session_replication_role = origin;",
        )
        .await
        .expect("retired by hand");
    let active: bool = owner
        .query_one("SELECT active FROM auth_pg.jwt_keys WHERE kid = 'old'", &[])
        .await
        .expect("read")
        .get(0);
    assert!(!active);
}
