//! Tokens through auth_client, as an application uses them: non-superuser roles, bad input,
//! revocation notices, concurrency.

use std::time::Duration;

use auth_client::reexports::tokio_postgres::error::SqlState;
use auth_client::reexports::tokio_postgres::{AsyncMessage, NoTls};
use auth_client::{Credential, CredentialKind, ErrorKind, Status};
use auth_pg_e2e::{TestDb, roles};
use futures_util::future::poll_fn;

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn issue_validate_revoke_as_application_roles() {
    let db = TestDb::new("issue_validate_revoke");
    let admin = db.client(roles::ADMIN);
    let app = db.client(roles::VALIDATOR);

    let metadata = serde_json::json!({ "ip": "203.0.113.7" });
    let token = admin
        .issue_token("user-1", HOUR, &["write", "read", "write"], Some(&metadata))
        .await
        .expect("issue");
    let answer = app
        .validate_token(token.expose_secret())
        .await
        .expect("validate");
    assert_eq!(answer.status, Status::Valid);
    assert_eq!(answer.user_id.as_deref(), Some("user-1"));
    assert_eq!(answer.scopes, ["read", "write"]);
    assert_eq!(answer.metadata, Some(metadata));
    assert!(answer.token_id.is_some());
    let expires_in = answer
        .expires_at
        .expect("expiry")
        .duration_since(std::time::SystemTime::now())
        .expect("in the future");
    assert!(
        expires_in > Duration::from_secs(3500) && expires_in <= HOUR,
        "{expires_in:?}"
    );

    assert!(
        admin
            .revoke_token(token.expose_secret())
            .await
            .expect("revoke")
    );
    assert!(
        !admin
            .revoke_token(token.expose_secret())
            .await
            .expect("revoke again")
    );
    let answer = app
        .validate_token(token.expose_secret())
        .await
        .expect("validate");
    assert_eq!(answer.status, Status::Revoked);
    assert_eq!(answer.user_id, None);
}

#[tokio::test]
async fn every_status_and_batches_in_order() {
    let db = TestDb::new("statuses");
    let admin = db.client(roles::ADMIN);
    let app = db.client(roles::VALIDATOR);

    let valid = admin
        .issue_token("u", HOUR, &[], None)
        .await
        .expect("issue");
    let revoked = admin
        .issue_token("u", HOUR, &[], None)
        .await
        .expect("issue");
    let expired = admin
        .issue_token("u2", HOUR, &[], None)
        .await
        .expect("issue");
    admin
        .revoke_token(revoked.expose_secret())
        .await
        .expect("revoke");
    db.psql(
        "UPDATE auth_pg.tokens SET expires_at = now() - interval '1 minute' WHERE user_id = 'u2'",
    );
    let unknown = Credential::generate(CredentialKind::Token).expect("random");

    let batch = [
        valid.expose_secret(),
        revoked.expose_secret(),
        expired.expose_secret(),
        unknown.expose_secret(),
        "apgt_not-a-token",
        valid.expose_secret(),
    ];
    let statuses: Vec<Status> = app
        .validate_tokens(&batch)
        .await
        .expect("batch")
        .into_iter()
        .map(|a| a.status)
        .collect();
    use Status::*;
    assert_eq!(
        statuses,
        [Valid, Revoked, Expired, Unknown, Malformed, Valid]
    );
    for (token, status) in batch.iter().zip(statuses) {
        assert_eq!(
            app.validate_token(token).await.expect("validate").status,
            status
        );
    }
    assert!(
        app.validate_tokens(&[])
            .await
            .expect("empty batch")
            .is_empty()
    );
}

#[tokio::test]
async fn hostile_input_gets_an_answer_and_changes_nothing() {
    let db = TestDb::new("hostile_input");
    let admin = db.client(roles::ADMIN);
    let app = db.client(roles::VALIDATOR);
    let token = admin
        .issue_token("u", HOUR, &[], None)
        .await
        .expect("issue");

    let huge = "a".repeat(1 << 20);
    let nul_free_binary = "\u{1}\u{7f}é漢🙂";
    let other_kind = format!("apgk_{}", &token.expose_secret()[5..]);
    for candidate in [
        "",
        huge.as_str(),
        "'; DELETE FROM auth_pg.tokens; --",
        nul_free_binary,
        &other_kind,
    ] {
        // The client answers locally; the server must agree, so ask it directly too.
        assert_eq!(
            app.validate_token(candidate)
                .await
                .expect("validate")
                .status,
            Status::Malformed
        );
        let server: String = db
            .connect(roles::VALIDATOR)
            .await
            .query_one(
                "SELECT status FROM auth_pg.validate_token($1)",
                &[&candidate],
            )
            .await
            .expect("server")
            .get(0);
        assert_eq!(server, "malformed");
        assert!(!admin.revoke_token(candidate).await.expect("revoke"));
    }
    assert_eq!(
        app.validate_token(token.expose_secret())
            .await
            .expect("validate")
            .status,
        Status::Valid
    );
}

#[tokio::test]
async fn misuse_is_an_error_with_a_sqlstate_and_no_secret() {
    let db = TestDb::new("misuse");
    let admin = db.client(roles::ADMIN);
    let cases: [(&str, Duration, &[&str], SqlState); 5] = [
        ("", HOUR, &[], SqlState::INVALID_PARAMETER_VALUE),
        ("u", Duration::ZERO, &[], SqlState::INVALID_PARAMETER_VALUE),
        (
            "u",
            Duration::from_secs(400 * 24 * 3600),
            &[],
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        ("u", HOUR, &[""], SqlState::INVALID_PARAMETER_VALUE),
        ("u", HOUR, &["has space"], SqlState::INVALID_PARAMETER_VALUE),
    ];
    for (user, ttl, scopes, code) in cases {
        let err = admin
            .issue_token(user, ttl, scopes, None)
            .await
            .expect_err("refused");
        assert_eq!(err.kind(), ErrorKind::Db);
        assert_eq!(err.code(), Some(&code), "{err}");
        assert!(err.is_invalid_argument());
        assert!(err.hint().is_some(), "{err}");
    }
    let long_user = "u".repeat(513);
    let err = admin
        .issue_token(&long_user, HOUR, &[], None)
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Some(&SqlState::STRING_DATA_RIGHT_TRUNCATION));
    let err = admin
        .issue_token("u", HOUR, &[], Some(&serde_json::json!([1, 2])))
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Some(&SqlState::INVALID_PARAMETER_VALUE));
    // Metadata larger than 64 KiB, and metadata nested deeper than auth_pg reads JSON.
    let large = serde_json::json!({ "notes": "n".repeat(65 * 1024) });
    let err = admin
        .issue_token("u", HOUR, &[], Some(&large))
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Some(&SqlState::PROGRAM_LIMIT_EXCEEDED), "{err}");
    let deep = (0..200).fold(
        serde_json::json!("leaf"),
        |inner, _| serde_json::json!({ "a": inner }),
    );
    let err = admin
        .issue_token("u", HOUR, &[], Some(&deep))
        .await
        .expect_err("refused");
    assert_eq!(
        err.code(),
        Some(&SqlState::INVALID_PARAMETER_VALUE),
        "{err}"
    );
    assert!(err.to_string().contains("128 levels"), "{err}");
    assert!(err.hint().is_some(), "{err}");
    assert_eq!(db.psql("SELECT count(*) FROM auth_pg.tokens"), "0");
}

#[tokio::test]
async fn roles_are_enforced() {
    let db = TestDb::new("roles");
    let admin = db.client(roles::ADMIN);
    let app = db.client(roles::VALIDATOR);
    let nobody = db.client(roles::NOBODY);
    let token = admin
        .issue_token("u", HOUR, &[], None)
        .await
        .expect("issue");

    let err = app
        .issue_token("u", HOUR, &[], None)
        .await
        .expect_err("validator cannot issue");
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    let err = app
        .revoke_token(token.expose_secret())
        .await
        .expect_err("validator cannot revoke");
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    let err = nobody
        .validate_token(token.expose_secret())
        .await
        .expect_err("nobody cannot check");
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    for role in [roles::VALIDATOR, roles::NOBODY] {
        let client = db.connect(role).await;
        for table in ["auth_pg.tokens", "auth_pg.audit_events"] {
            let err = client
                .query(&format!("SELECT * FROM {table}"), &[])
                .await
                .expect_err("tables are closed");
            assert_eq!(
                err.code(),
                Some(&SqlState::INSUFFICIENT_PRIVILEGE),
                "{role} {table}"
            );
        }
    }
    let err = db
        .connect(roles::ADMIN)
        .await
        .query("SELECT token_hash FROM auth_pg.tokens", &[])
        .await
        .expect_err("admins use functions, not tables");
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    assert!(
        app.validate_token(token.expose_secret())
            .await
            .expect("still valid")
            .is_valid()
    );
}

/// Waits for the next notification on `auth_pg_invalidate` seen by `receiver`.
async fn next_payload(receiver: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(10), receiver.recv())
        .await
        .expect("a notification within 10 s")
        .expect("listener alive")
}

#[tokio::test]
async fn revocations_are_announced_with_ids_only() {
    let db = TestDb::new("notify");
    let admin = db.client(roles::ADMIN);
    // Any role may listen, even one with no auth_pg grant.
    let (listener, mut connection) = tokio_postgres_connect(&db.url(roles::NOBODY)).await;
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) = poll_fn(|cx| connection.poll_message(cx)).await {
            if let AsyncMessage::Notification(n) = message {
                let _ = sender.send(n.payload().to_owned());
            }
        }
    });
    listener
        .batch_execute("LISTEN auth_pg_invalidate")
        .await
        .expect("listen");

    let token = admin
        .issue_token("user \"quoted\"", HOUR, &[], None)
        .await
        .expect("issue");
    let id = db
        .client(roles::VALIDATOR)
        .validate_token(token.expose_secret())
        .await
        .expect("validate")
        .token_id;
    assert!(
        admin
            .revoke_token(token.expose_secret())
            .await
            .expect("revoke")
    );
    let payload = next_payload(&mut receiver).await;
    assert_eq!(
        auth_core::Invalidation::from_payload(&payload),
        Some(auth_core::Invalidation::TokenRevoked {
            token_id: id.expect("id"),
            user_id: "user \"quoted\"".into()
        })
    );
    assert!(!payload.contains(&token.expose_secret()[5..]));

    admin
        .issue_token("user-9", HOUR, &[], None)
        .await
        .expect("issue");
    assert_eq!(admin.revoke_user_tokens("user-9").await.expect("revoke"), 1);
    let payload = next_payload(&mut receiver).await;
    assert_eq!(
        auth_core::Invalidation::from_payload(&payload),
        Some(auth_core::Invalidation::UserTokensRevoked {
            user_id: "user-9".into()
        })
    );

    // Nothing is announced for a revocation that is rolled back.
    let token = admin
        .issue_token("user-10", HOUR, &[], None)
        .await
        .expect("issue");
    let mut client = db.connect(roles::ADMIN).await;
    let tx = client.transaction().await.expect("begin");
    tx.query("SELECT auth_pg.revoke_token($1)", &[&token.expose_secret()])
        .await
        .expect("revoke");
    tx.rollback().await.expect("rollback");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), receiver.recv())
            .await
            .is_err()
    );
    assert!(
        db.client(roles::VALIDATOR)
            .validate_token(token.expose_secret())
            .await
            .expect("validate")
            .is_valid()
    );
}

async fn tokio_postgres_connect(
    url: &str,
) -> (
    tokio_postgres::Client,
    tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
) {
    tokio_postgres::connect(url, NoTls).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checks_and_revocations_agree() {
    let db = TestDb::new("concurrency");
    let admin = db.client(roles::ADMIN);
    let app = db.client(roles::VALIDATOR);
    let mut tokens = Vec::new();
    for i in 0..40 {
        tokens.push(
            admin
                .issue_token(&format!("user-{}", i % 4), HOUR, &[], None)
                .await
                .expect("issue"),
        );
    }
    let tokens = std::sync::Arc::new(tokens);

    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (app, admin, tokens) = (app.clone(), admin.clone(), tokens.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..50 {
                let token = &tokens[(worker * 7 + round) % tokens.len()];
                let status = app
                    .validate_token(token.expose_secret())
                    .await
                    .expect("validate")
                    .status;
                assert!(
                    matches!(status, Status::Valid | Status::Revoked),
                    "{status}"
                );
                if round % 10 == worker {
                    admin
                        .revoke_token(token.expose_secret())
                        .await
                        .expect("revoke");
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("worker");
    }
    admin
        .revoke_user_tokens("user-0")
        .await
        .expect("revoke user");
    // Every token revoked by anyone reads as revoked; the rest are valid.
    let revoked_ids = db.psql("SELECT string_agg(token_id::text, ',' ORDER BY token_id) FROM auth_pg.tokens WHERE revoked_at IS NOT NULL");
    let secrets: Vec<&str> = tokens.iter().map(|t| t.expose_secret()).collect();
    for answer in app.validate_tokens(&secrets).await.expect("batch") {
        assert!(matches!(answer.status, Status::Valid | Status::Revoked));
    }
    let still_valid = app
        .validate_tokens(&secrets)
        .await
        .expect("batch")
        .iter()
        .filter(|a| a.is_valid())
        .count();
    let revoked = revoked_ids.split(',').filter(|s| !s.is_empty()).count();
    assert_eq!(still_valid + revoked, tokens.len());
    assert!(revoked >= 10, "user-0 alone had 10 tokens");
}

#[test]
fn credentials_never_show_in_debug_output() {
    let credential = Credential::generate(CredentialKind::Token).expect("random");
    let shown = format!("{credential:?} {credential}");
    assert!(!shown.contains(&credential.expose_secret()[5..]), "{shown}");
}

/// What tokio-postgres reports becomes an `auth_client::Error` of the kind that says what to
/// do: an answer that does not decode is `Decode` and not worth a retry, a lost connection is,
/// and what the server raised keeps its SQLSTATE.
#[tokio::test]
async fn errors_are_classified_by_what_a_caller_can_do() {
    let db = TestDb::new("error_kinds");
    let (client, connection) = tokio_postgres::connect(&db.url(roles::ADMIN), NoTls)
        .await
        .expect("connect");
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });

    let row = client
        .query_one("SELECT 'not a number'::text", &[])
        .await
        .expect("query");
    let undecodable = auth_client::Error::from(row.try_get::<_, i32>(0).expect_err("a text"));
    assert_eq!(undecodable.kind(), ErrorKind::Decode);
    assert!(!undecodable.is_connection());

    let raised = auth_client::Error::from(
        client
            .query_one("SELECT 1 / 0", &[])
            .await
            .expect_err("division by zero"),
    );
    assert_eq!(raised.kind(), ErrorKind::Db);
    assert_eq!(raised.code(), Some(&SqlState::DIVISION_BY_ZERO));
    assert!(!raised.is_connection());

    driver.abort();
    let _ = driver.await;
    let lost = auth_client::Error::from(
        client
            .query_one("SELECT 1", &[])
            .await
            .expect_err("no connection"),
    );
    assert_eq!(lost.kind(), ErrorKind::Db);
    assert!(lost.is_connection(), "{lost}");
}
