//! The client cache: answers served from memory, and forgotten as soon as the server announces a
//! change made by anyone, through any connection.

use std::time::{Duration, SystemTime};

use auth_client::{AuthClient, CacheStats, Credential, Status};
use auth_pg_e2e::{TestDb, roles, wait_for};

const HOUR: Duration = Duration::from_secs(3600);

/// Waits until the cache has heard `more` invalidations beyond `before`.
async fn heard(client: &AuthClient, before: &CacheStats, more: u64) -> CacheStats {
    let target = before.invalidations + more;
    wait_for(client, "the invalidation is heard", |stats| {
        stats.invalidations >= target
    })
    .await
}

fn stats(client: &AuthClient) -> CacheStats {
    client.cache_stats().expect("a cached client")
}

/// A token for `user`, valid for an hour, issued by `admin`.
async fn issue(admin: &AuthClient, user: &str) -> Credential {
    admin
        .issue_token(user, HOUR, &[], None)
        .await
        .expect("issue")
}

/// A session for `user` (idle timeout an hour, absolute two), opened by `admin`.
async fn open_session(admin: &AuthClient, user: &str) -> Credential {
    admin
        .create_session(user, HOUR, 2 * HOUR, None)
        .await
        .expect("create")
}

async fn token_status(client: &AuthClient, token: &Credential) -> Status {
    client
        .validate_token(token.expose_secret())
        .await
        .expect("validate")
        .status
}

async fn session_status(client: &AuthClient, session: &Credential) -> Status {
    client
        .validate_session(session.expose_secret())
        .await
        .expect("validate")
        .status
}

#[tokio::test]
async fn a_revocation_made_elsewhere_is_not_served_from_memory() {
    let db = TestDb::new("cache_token_revocation");
    let admin = db.client(roles::ADMIN);
    let app = db.cached_client(roles::VALIDATOR, 1000).await;
    assert!(db.client(roles::VALIDATOR).cache_stats().is_none());

    let token = admin
        .issue_token("user-1", HOUR, &["read"], None)
        .await
        .expect("issue");
    let other = issue(&admin, "user-2").await;
    let first = app
        .validate_token(token.expose_secret())
        .await
        .expect("validate");
    assert_eq!(first.status, Status::Valid);
    app.validate_token(other.expose_secret())
        .await
        .expect("validate");
    let before = stats(&app);
    assert_eq!((before.stored, before.hits), (2, 0), "{before:?}");
    // The second check of the same token is answered from memory, with the same answer.
    assert_eq!(
        app.validate_token(token.expose_secret())
            .await
            .expect("validate"),
        first
    );
    assert_eq!(stats(&app).hits, 1);
    // Nothing in the client's Debug output names the token or its owner.
    let shown = format!("{app:?}");
    assert!(
        !shown.contains(token.expose_secret()) && !shown.contains("user-1"),
        "{shown}"
    );

    // Revoked by another client: this one learns it from the notification alone.
    assert!(
        admin
            .revoke_token(token.expose_secret())
            .await
            .expect("revoke")
    );
    let after = heard(&app, &before, 1).await;
    assert_eq!(token_status(&app, &token).await, Status::Revoked);
    // The other token's entry was not touched by that revocation.
    app.validate_token(other.expose_secret())
        .await
        .expect("validate");
    assert_eq!(stats(&app).hits, after.hits + 1);

    // Every token of a user, revoked in plain SQL by the superuser.
    db.psql("SELECT auth_pg.revoke_user_tokens('user-2')");
    heard(&app, &after, 1).await;
    assert_eq!(token_status(&app, &other).await, Status::Revoked);
}

#[tokio::test]
async fn a_change_made_through_the_cached_client_is_seen_at_once() {
    let db = TestDb::new("cache_own_changes");
    let admin = db.cached_client(roles::ADMIN, 1000).await;
    let token = issue(&admin, "user-1").await;
    for _ in 0..2 {
        let answer = admin
            .validate_token(token.expose_secret())
            .await
            .expect("validate");
        assert_eq!(answer.status, Status::Valid);
    }
    // No waiting for the notification: the client forgets what it just changed.
    admin
        .revoke_token(token.expose_secret())
        .await
        .expect("revoke");
    assert_eq!(token_status(&admin, &token).await, Status::Revoked);

    let session = open_session(&admin, "user-1").await;
    let valid = admin
        .validate_session(session.expose_secret())
        .await
        .expect("validate");
    assert!(valid.is_valid());
    admin
        .revoke_session(session.expose_secret())
        .await
        .expect("revoke");
    assert_eq!(session_status(&admin, &session).await, Status::Revoked);

    admin.create_role("editor", None, None).await.expect("role");
    admin
        .grant_permission("editor", "documents:write", None)
        .await
        .expect("grant");
    assert!(
        !admin
            .has_permission("ada", "documents:write", None)
            .await
            .expect("check")
    );
    admin
        .assign_role("ada", "editor", None)
        .await
        .expect("assign");
    assert!(
        admin
            .has_permission("ada", "documents:write", None)
            .await
            .expect("check")
    );
}

/// A touch is never answered from memory, which would leave the idle deadline where it was:
/// every touch reaches the server and slides it, and the cache then holds the last touch's
/// answer.
#[tokio::test]
async fn every_touch_reaches_the_server() {
    let db = TestDb::new("cache_touch");
    // Every touch writes.
    db.psql(&format!(
        "ALTER DATABASE {} SET auth_pg.session_touch_interval = 0",
        db.name()
    ));
    let admin = db.client(roles::ADMIN);
    let app = db.cached_client(roles::VALIDATOR, 1000).await;
    let session = open_session(&admin, "user-1").await;
    let checked = app
        .validate_session(session.expose_secret())
        .await
        .expect("validate");
    assert!(checked.is_valid());
    let mut deadline = checked.idle_expires_at.expect("an idle deadline");

    let sent = app.metrics().statements;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let touched = app
            .touch_session(session.expose_secret())
            .await
            .expect("touch");
        assert!(touched.is_valid());
        let moved = touched.idle_expires_at.expect("an idle deadline");
        assert!(moved > deadline, "a touch slides the idle deadline");
        deadline = moved;
    }
    assert_eq!(app.metrics().statements, sent + 3, "one statement a touch");
    let moved_on_server = db.psql(&format!(
        "SELECT count(*) FROM auth_pg.sessions \
         WHERE user_id = 'user-1' \
           AND extract(epoch FROM idle_expires_at) * 1000000 = {}",
        deadline
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970")
            .as_micros()
    ));
    assert_eq!(
        moved_on_server.trim(),
        "1",
        "the server holds the last deadline"
    );

    // A check is then answered from memory, with the last touch's deadline.
    let hits = stats(&app).hits;
    let checked = app
        .validate_session(session.expose_secret())
        .await
        .expect("validate");
    assert_eq!(checked.idle_expires_at, Some(deadline));
    assert_eq!(stats(&app).hits, hits + 1);
    assert_eq!(app.metrics().statements, sent + 3);
}

/// Any role may NOTIFY on the channel. A flood of notifications, from a role with no grant,
/// is applied in bursts (each forgets everything, which is always safe), every one counted,
/// and a real revocation sent behind it is heard and applied.
#[tokio::test]
async fn a_flood_of_notifications_holds_no_revocation_back() {
    let db = TestDb::new("cache_flood");
    let admin = db.client(roles::ADMIN);
    let app = db.cached_client(roles::VALIDATOR, 1000).await;
    let token = issue(&admin, "user-1").await;
    let bystander = issue(&admin, "user-2").await;
    assert_eq!(token_status(&app, &token).await, Status::Valid);
    assert_eq!(token_status(&app, &bystander).await, Status::Valid);
    let before = stats(&app);

    // Ten thousand distinct notifications (PostgreSQL folds identical ones of a transaction
    // into one), naming tokens that do not exist.
    let nobody = db.connect(roles::NOBODY).await;
    nobody
        .batch_execute(
            "SELECT pg_catalog.pg_notify('auth_pg_invalidate', \
                 '{\"event\":\"token_revoked\",\"token_id\":' || i || ',\"user_id\":\"x\"}') \
             FROM pg_catalog.generate_series(1, 10000) AS i",
        )
        .await
        .expect("notify");
    admin
        .revoke_token(token.expose_secret())
        .await
        .expect("revoke");
    heard(&app, &before, 10_001).await;
    assert_eq!(token_status(&app, &token).await, Status::Revoked);
    assert_eq!(token_status(&app, &bystander).await, Status::Valid);
    assert!(stats(&app).listening);
}

#[tokio::test]
async fn api_key_session_and_permission_answers_follow_the_server() {
    let db = TestDb::new("cache_every_kind");
    let admin = db.client(roles::ADMIN);

    admin
        .create_organization("acme", "Acme")
        .await
        .expect("org");
    let key = admin
        .create_api_key("acme", "ci", &[], None, None)
        .await
        .expect("key");
    let session = open_session(&admin, "ada").await;
    admin.create_role("viewer", None, None).await.expect("role");
    admin
        .grant_permission("viewer", "documents:read", None)
        .await
        .expect("grant");
    admin
        .create_role("admin", Some("acme"), None)
        .await
        .expect("role");
    // Made after the setup, so that it hears only the changes below.
    let app = db.cached_client(roles::VALIDATOR, 1000).await;

    // Twice each: the second answers come from memory.
    for _ in 0..2 {
        assert!(
            app.validate_api_key(key.key.expose_secret())
                .await
                .expect("validate")
                .is_valid()
        );
        assert!(
            app.validate_session(session.expose_secret())
                .await
                .expect("validate")
                .is_valid()
        );
        assert!(
            !app.has_permission("ada", "documents:read", Some("acme"))
                .await
                .expect("check")
        );
        assert!(
            app.user_permissions("ada", Some("acme"))
                .await
                .expect("list")
                .is_empty()
        );
    }
    let before = stats(&app);
    assert_eq!(before.hits, 4, "{before:?}");

    // Four changes by another client, each announced; then every answer is the server's.
    admin
        .revoke_api_key("acme", &key.key_id)
        .await
        .expect("revoke");
    let valid_session = app
        .validate_session(session.expose_secret())
        .await
        .expect("validate");
    admin
        .revoke_session_by_id(valid_session.session_id.as_deref().expect("an id"))
        .await
        .expect("revoke");
    admin
        .assign_role("ada", "viewer", Some("acme"))
        .await
        .expect("assign");
    admin
        .grant_permission("admin", "billing:*", Some("acme"))
        .await
        .expect("grant");
    admin
        .assign_role("ada", "admin", Some("acme"))
        .await
        .expect("assign");
    heard(&app, &before, 5).await;

    assert_eq!(
        app.validate_api_key(key.key.expose_secret())
            .await
            .expect("validate")
            .status,
        Status::Revoked
    );
    assert_eq!(session_status(&app, &session).await, Status::Revoked);
    assert!(
        app.has_permission("ada", "documents:read", Some("acme"))
            .await
            .expect("check")
    );
    assert_eq!(
        app.user_permissions("ada", Some("acme"))
            .await
            .expect("list"),
        ["billing:*", "documents:read"]
    );
}

#[tokio::test]
async fn nothing_is_served_while_the_listener_is_down() {
    let db = TestDb::new("cache_listener_lost");
    let admin = db.client(roles::ADMIN);
    let app = db.cached_client(roles::VALIDATOR, 1000).await;
    let token = issue(&admin, "user-1").await;
    app.validate_token(token.expose_secret())
        .await
        .expect("validate");
    let before = stats(&app);
    assert_eq!((before.entries, before.connects), (1, 1), "{before:?}");

    // The listener's connection is cut and cannot come back (new connections to the database
    // are refused; the pool's open one still works). The cache stops serving as soon as the
    // client notices, and a revocation made meanwhile, whose notification nobody hears, is read
    // from the server.
    db.psql(&format!(
        "REVOKE CONNECT ON DATABASE {} FROM PUBLIC",
        db.name()
    ));
    let killed = db.psql(&format!(
        "SELECT count(pg_catalog.pg_terminate_backend(pid)) FROM pg_catalog.pg_stat_activity \
         WHERE application_name = '{} listener'",
        db.name()
    ));
    assert_eq!(killed.trim(), "1");
    wait_for(&app, "the listener's loss is noticed", |stats| {
        !stats.listening
    })
    .await;
    db.psql("SELECT auth_pg.revoke_user_tokens('user-1')");
    assert_eq!(token_status(&app, &token).await, Status::Revoked);
    let deaf = stats(&app);
    assert_eq!((deaf.entries, deaf.hits), (0, 0), "{deaf:?}");

    // It listens again once it may connect, and caches again from then on.
    db.psql(&format!(
        "GRANT CONNECT ON DATABASE {} TO PUBLIC",
        db.name()
    ));
    wait_for(&app, "the listener reconnects", |stats| {
        stats.connects == 2 && stats.listening
    })
    .await;
    let fresh = issue(&admin, "user-1").await;
    for _ in 0..2 {
        app.validate_token(fresh.expose_secret())
            .await
            .expect("validate");
    }
    assert_eq!(stats(&app).hits, 1);
}

#[tokio::test]
async fn an_answer_is_not_served_past_the_credentials_expiry() {
    let db = TestDb::new("cache_expiry");
    let admin = db.client(roles::ADMIN);
    let app = db.cached_client(roles::VALIDATOR, 1000).await;
    let token = admin
        .issue_token("user-1", Duration::from_secs(1), &[], None)
        .await
        .expect("issue");
    let answer = app
        .validate_token(token.expose_secret())
        .await
        .expect("validate");
    assert_eq!(answer.status, Status::Valid);
    // Wait (about a second) until the server's clock has passed the expiry.
    let expires_at = answer.expires_at.expect("an expiry");
    db.psql(&format!(
        "DO $$ BEGIN WHILE pg_catalog.clock_timestamp() <= to_timestamp({}) LOOP \
         PERFORM pg_catalog.pg_sleep(0.01); END LOOP; END $$",
        expires_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64()
    ));
    assert_eq!(token_status(&app, &token).await, Status::Expired);
}

#[tokio::test]
async fn edits_by_hand_are_announced_and_auth_pgs_own_writes_are_not_twice() {
    let db = TestDb::new("cache_hand_edits");
    // Every touch writes.
    db.psql(&format!(
        "ALTER DATABASE {} SET auth_pg.session_touch_interval = 0",
        db.name()
    ));
    let admin = db.client(roles::ADMIN);
    let app = db.cached_client(roles::VALIDATOR, 1000).await;
    let mut events = db.listen(roles::NOBODY).await;

    let token = issue(&admin, "user-1").await;
    let session = open_session(&admin, "user-1").await;
    let other = issue(&admin, "user-2").await;
    let other_session = open_session(&admin, "user-2").await;
    // auth_pg's own writes: a touch, a cleanup, revocations. Only the revocations are
    // announced, once each, with their ids.
    assert!(
        app.touch_session(session.expose_secret())
            .await
            .expect("touch")
            .is_valid()
    );
    admin.cleanup_expired_sessions(100).await.expect("cleanup");
    admin
        .revoke_token(other.expose_secret())
        .await
        .expect("revoke");
    assert!(matches!(
        events.next().await,
        auth_core::Invalidation::TokenRevoked { .. }
    ));
    admin
        .revoke_session(other_session.expose_secret())
        .await
        .expect("revoke");
    assert!(matches!(
        events.next().await,
        auth_core::Invalidation::SessionRevoked { .. }
    ));

    // By hand, as the tables' owner: announced as "forget every token" (or session).
    assert!(
        app.validate_token(token.expose_secret())
            .await
            .expect("validate")
            .is_valid()
    );
    let before = stats(&app);
    db.psql("UPDATE auth_pg.tokens SET revoked_at = pg_catalog.now() WHERE user_id = 'user-1'");
    assert_eq!(events.next().await, auth_core::Invalidation::TokensChanged);
    heard(&app, &before, 1).await;
    assert_eq!(token_status(&app, &token).await, Status::Revoked);
    db.psql("DELETE FROM auth_pg.sessions WHERE user_id = 'user-1'");
    assert_eq!(
        events.next().await,
        auth_core::Invalidation::SessionsChanged
    );
    assert_eq!(
        db.psql(
            "SELECT string_agg(action || ':' || (detail->>'operation'), ',' ORDER BY event_id) \
             FROM auth_pg.audit_events WHERE action LIKE '%.edit'"
        )
        .trim(),
        "tokens.edit:update,sessions.edit:delete"
    );
}

#[tokio::test]
async fn a_cache_whose_runtime_is_gone_serves_nothing() {
    let db = TestDb::new("cache_runtime_gone");
    let admin = db.client(roles::ADMIN);
    let token = issue(&admin, "user-1").await;
    // A client made, and its cache filled, on a runtime of its own, which then shuts down
    // (taking the cache's listener with it) while the client lives on.
    let (url, secret) = (db.url(roles::VALIDATOR), token.expose_secret().to_owned());
    let app = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        runtime.block_on(async {
            let mut config = auth_client::Config::from_url(&url).expect("valid settings");
            config.cache(100);
            let app = AuthClient::new(&config).expect("a client");
            wait_for(&app, "the cache's listener listens", |stats| {
                stats.listening
            })
            .await;
            app.validate_token(&secret).await.expect("validate");
            assert_eq!(app.cache_stats().expect("a cache").entries, 1);
            app
        })
    })
    .join()
    .expect("the other runtime's thread");
    let stats = stats(&app);
    assert!(!stats.listening && stats.entries == 0, "{stats:?}");
    // Revoked now, with nobody listening for this client: the answer comes from the server.
    admin
        .revoke_token(token.expose_secret())
        .await
        .expect("revoke");
    assert_eq!(token_status(&app, &token).await, Status::Revoked);
}
