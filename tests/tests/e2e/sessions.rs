//! Sessions through auth_client and plain SQL: the life of a session, concurrent touches and
//! revocations of one session, the per-user limit under concurrent creation, read-only
//! transactions, and cleanup by the maintenance worker and by pg_cron.
//!
//! No test waits for a deadline to pass: sessions are moved in time by rewriting their stored
//! times as the superuser, and the checks judging them are the real ones.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use auth_client::reexports::tokio_postgres::error::SqlState;
use auth_client::{AuthClient, Config, Status};
use auth_core::Invalidation;
use auth_pg_e2e::{Cluster, ClusterOptions, TestDb, eventually, roles};

const IDLE: Duration = Duration::from_secs(30 * 60);
const ABSOLUTE: Duration = Duration::from_secs(12 * 3600);

fn pooled(db: &TestDb, role: &str, size: usize) -> AuthClient {
    let mut config = Config::from_url(&db.url(role)).expect("url");
    config.pool_size(size);
    AuthClient::new(&config).expect("client")
}

#[tokio::test]
async fn the_life_of_a_session() {
    let db = TestDb::new("session_life");
    let admin = db.client(roles::ADMIN);
    let app = db.client(roles::VALIDATOR);
    let mut events = db.listen(roles::NOBODY).await;

    let metadata = serde_json::json!({ "ip": "203.0.113.7", "user_agent": "curl/8" });
    let token = admin
        .create_session("user-1", IDLE, ABSOLUTE, Some(&metadata))
        .await
        .expect("create");
    let secret = token.expose_secret().to_owned();
    assert!(
        !format!("{token:?}").contains(&secret[8..]),
        "Debug hides it"
    );

    let answer = app.validate_session(&secret).await.expect("validate");
    assert_eq!(answer.status, Status::Valid);
    assert_eq!(answer.user_id.as_deref(), Some("user-1"));
    assert_eq!(answer.metadata, Some(metadata));
    let session_id = answer.session_id.clone().expect("an id");
    let idle = answer.idle_expires_at.expect("idle deadline");
    let absolute = answer.absolute_expires_at.expect("absolute deadline");
    let until = |at: SystemTime| at.duration_since(SystemTime::now()).expect("future");
    assert!(until(idle) <= IDLE && until(idle) > IDLE - Duration::from_secs(60));
    assert!(until(absolute) <= ABSOLUTE && until(absolute) > ABSOLUTE - Duration::from_secs(60));

    // The application may check and touch, not create or revoke.
    assert_eq!(
        app.touch_session(&secret).await.expect("touch").status,
        Status::Valid
    );
    let refused = app
        .create_session("user-1", IDLE, ABSOLUTE, None)
        .await
        .expect_err("the validator role may not create sessions");
    assert_eq!(refused.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));

    let listed = admin.list_user_sessions("user-1").await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].session_id, session_id);
    assert_eq!(listed[0].status, Status::Valid);
    assert!(!format!("{listed:?}").contains(&secret[5..]));

    assert!(
        admin
            .revoke_session_by_id(&session_id)
            .await
            .expect("revoke")
    );
    assert_eq!(
        events.next().await,
        Invalidation::SessionRevoked {
            session_id: session_id.clone(),
            user_id: "user-1".into()
        }
    );
    assert_eq!(
        app.validate_session(&secret)
            .await
            .expect("validate")
            .status,
        Status::Revoked
    );

    admin
        .create_session("user-1", IDLE, ABSOLUTE, None)
        .await
        .expect("create");
    assert_eq!(
        admin.revoke_user_sessions("user-1").await.expect("revoke"),
        1
    );
    assert_eq!(
        events.next().await,
        Invalidation::UserSessionsRevoked {
            user_id: "user-1".into()
        }
    );
    let audited = db.psql(
        "SELECT string_agg(action, ',' ORDER BY event_id) FROM auth_pg.audit_events \
         WHERE action LIKE '%session%'",
    );
    assert_eq!(audited, "session.revoke,user_sessions.revoke");
    let leaked = db.psql(&format!(
        "SELECT count(*) FROM auth_pg.audit_events WHERE detail::text LIKE '%{}%'",
        &secret[5..20]
    ));
    assert_eq!(leaked, "0");
}

#[tokio::test]
async fn checks_work_in_read_only_transactions_and_touches_say_why_not() {
    let db = TestDb::new("session_read_only");
    let admin = db.client(roles::ADMIN);
    let token = admin
        .create_session("user-1", IDLE, ABSOLUTE, None)
        .await
        .expect("create");
    let reader = db.connect(roles::VALIDATOR).await;
    reader
        .batch_execute("BEGIN READ ONLY")
        .await
        .expect("begin");
    let status: String = reader
        .query_one(
            "SELECT (auth_pg.validate_session($1)).status",
            &[&token.expose_secret()],
        )
        .await
        .expect("validate")
        .get(0);
    assert_eq!(status, "valid");
    let err = reader
        .query_one(
            "SELECT (auth_pg.touch_session($1)).status",
            &[&token.expose_secret()],
        )
        .await
        .expect_err("touch writes");
    assert_eq!(err.code(), Some(&SqlState::READ_ONLY_SQL_TRANSACTION));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_touches_and_a_revocation_of_one_session() {
    let db = TestDb::new("session_touch_race");
    // Every touch writes, so that the touches contend for the row.
    db.psql(&format!(
        "ALTER DATABASE {} SET auth_pg.session_touch_interval = 0",
        db.name()
    ));
    let admin = db.client(roles::ADMIN);
    let app = pooled(&db, roles::VALIDATOR, 8);
    let token = admin
        .create_session("user-1", IDLE, ABSOLUTE, None)
        .await
        .expect("create")
        .expose_secret()
        .to_owned();

    let revoked = Arc::new(AtomicBool::new(false));
    let mut touchers = Vec::new();
    for _ in 0..8 {
        let (app, token, revoked) = (app.clone(), token.clone(), revoked.clone());
        touchers.push(tokio::spawn(async move {
            let (mut valid, mut after_revocation) = (0, 0);
            loop {
                let known_revoked = revoked.load(Ordering::SeqCst);
                let answer = app.touch_session(&token).await.expect("touch");
                match answer.status {
                    Status::Valid => {
                        assert!(!known_revoked, "valid after the revocation committed");
                        valid += 1;
                    }
                    Status::Revoked => after_revocation += 1,
                    other => panic!("unexpected {other}"),
                }
                if after_revocation >= 20 {
                    return valid;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(admin.revoke_session(&token).await.expect("revoke"));
    revoked.store(true, Ordering::SeqCst);
    let last_activity = || db.psql("SELECT last_activity_at FROM auth_pg.sessions");
    let at_revocation = last_activity();
    let mut valid = 0;
    for toucher in touchers {
        valid += toucher.await.expect("toucher");
    }
    assert!(valid > 0, "the touches ran before the revocation");
    assert_eq!(
        last_activity(),
        at_revocation,
        "no touch wrote after the revocation committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_holds_under_concurrent_creation() {
    let db = TestDb::new("session_limit_race");
    db.psql(&format!(
        "ALTER DATABASE {0} SET auth_pg.max_sessions_per_user = 3; \
         ALTER DATABASE {0} SET auth_pg.session_limit_action = 'refuse'",
        db.name()
    ));
    let admin = pooled(&db, roles::ADMIN, 8);
    let create_many = |n: usize| {
        let admin = admin.clone();
        async move {
            let tasks: Vec<_> = (0..n)
                .map(|_| {
                    let admin = admin.clone();
                    tokio::spawn(async move {
                        admin.create_session("user-1", IDLE, ABSOLUTE, None).await
                    })
                })
                .collect();
            let mut results = Vec::new();
            for task in tasks {
                results.push(task.await.expect("task"));
            }
            results
        }
    };
    let in_force = || {
        db.psql(
            "SELECT count(*) FROM auth_pg.sessions WHERE user_id = 'user-1' AND revoked_at IS NULL",
        )
    };

    let results = create_many(16).await;
    let created = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(created, 3);
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(
            refused.code(),
            Some(&SqlState::CONFIGURATION_LIMIT_EXCEEDED),
            "{refused}"
        );
    }
    assert_eq!(in_force(), "3");

    db.psql(&format!(
        "ALTER DATABASE {} SET auth_pg.session_limit_action = 'evict_oldest'",
        db.name()
    ));
    // New connections pick up the database's new setting.
    let admin = pooled(&db, roles::ADMIN, 8);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let admin = admin.clone();
            tokio::spawn(async move { admin.create_session("user-1", IDLE, ABSOLUTE, None).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("evicting makes room");
    }
    assert_eq!(in_force(), "3");
    assert_eq!(
        db.psql("SELECT count(*) FROM auth_pg.audit_events WHERE action = 'session.evict'"),
        "16"
    );
}

/// Moves `n` of the cluster's sessions in `db` two hours into the past, expired.
const EXPIRE_SOME: &str = "UPDATE auth_pg.sessions \
     SET idle_expires_at = now() - interval '2 hours', last_activity_at = now() - interval '3 hours' \
     WHERE session_id IN (SELECT session_id FROM auth_pg.sessions ORDER BY session_id LIMIT 30)";

async fn create_sessions(url: &str, n: usize) {
    let admin = AuthClient::new(&Config::from_url(url).expect("url")).expect("client");
    for i in 0..n {
        admin
            .create_session(&format!("user-{i}"), IDLE, ABSOLUTE, None)
            .await
            .expect("create");
    }
}

async fn wait_for_count(cluster: &Cluster, db: &str, expected: &str, within: Duration) {
    let count = || cluster.psql(db, "SELECT count(*) FROM auth_pg.sessions");
    eventually(
        within,
        Duration::from_millis(200),
        || count() == expected,
        || {
            format!(
                "{} sessions left after {within:?}, expected {expected}",
                count()
            )
        },
    )
    .await;
}

#[tokio::test]
async fn the_maintenance_worker_deletes_expired_sessions() {
    let cluster = Cluster::start(&ClusterOptions {
        settings: vec![
            "auth_pg.maintenance_database = 'app'".into(),
            "auth_pg.cleanup_interval = 1".into(),
            "auth_pg.session_retention = '1h'".into(),
        ],
        ..ClusterOptions::default()
    });
    cluster.create_database("app");
    create_sessions(&cluster.url(roles::ADMIN, "app"), 50).await;
    cluster.psql("app", EXPIRE_SOME);
    wait_for_count(&cluster, "app", "20", Duration::from_secs(30)).await;
}

/// A stop request that reaches the worker while it deletes a backlog, batch after batch, ends
/// it: a fast shutdown of the server waits for its background workers.
#[tokio::test]
async fn the_maintenance_worker_stops_when_asked_in_the_middle_of_a_cleanup() {
    let cluster = Cluster::start(&ClusterOptions {
        settings: vec![
            "auth_pg.maintenance_database = 'app'".into(),
            "auth_pg.cleanup_interval = 1".into(),
            "auth_pg.session_retention = 0".into(),
        ],
        ..ClusterOptions::default()
    });
    cluster.create_database("app");
    const BACKLOG: i64 = 400_000;
    cluster.psql(
        "app",
        &format!(
            "INSERT INTO auth_pg.sessions (session_id, session_hash, user_id, idle_timeout, \
                 created_at, last_activity_at, idle_expires_at, absolute_expires_at) \
             SELECT 'ses_' || i, sha256(i::text::bytea), 'u' || i % 1000, '1 hour', \
                    now() - interval '3 days', now() - interval '3 days', \
                    now() - interval '2 days', now() - interval '2 days' \
             FROM generate_series(1, {BACKLOG}) i"
        ),
    );
    // Wait until the worker has deleted some of the backlog (one batch of 10 000 per
    // transaction), so that it is between or inside its batches, with many to go.
    let count = || -> i64 {
        cluster
            .psql("app", "SELECT count(*) FROM auth_pg.sessions")
            .parse()
            .expect("a count")
    };
    let mut left = BACKLOG;
    eventually(
        Duration::from_secs(60),
        Duration::from_millis(20),
        || {
            left = count();
            left < BACKLOG
        },
        || "the worker never started".into(),
    )
    .await;
    assert!(
        left > 100_000,
        "the worker went too fast to be stopped midway: {left}"
    );
    let pid = cluster.psql(
        "app",
        "SELECT pid FROM pg_catalog.pg_stat_activity \
         WHERE backend_type = 'auth_pg maintenance'",
    );
    assert!(!pid.is_empty(), "the worker runs");
    cluster.psql(
        "app",
        &format!("SELECT pg_catalog.pg_terminate_backend({pid})"),
    );
    eventually(
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            cluster.psql(
                "app",
                &format!("SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE pid = {pid}"),
            ) == "0"
        },
        || {
            format!(
                "the worker ignored the stop request; {} sessions left",
                count()
            )
        },
    )
    .await;
    // It stopped in the middle of the backlog, not after finishing it.
    assert!(
        count() > 0,
        "the worker deleted the whole backlog before stopping"
    );
}

#[tokio::test]
async fn pg_cron_can_schedule_the_cleanup() {
    // pg_cron 1.4 (Debian 12's) schedules by the minute: this test waits up to one.
    let cluster = Cluster::start(&ClusterOptions {
        preload: false,
        settings: vec![
            "shared_preload_libraries = 'pg_cron'".into(),
            "cron.database_name = 'app'".into(),
            // The test cluster listens on a Unix socket only: run jobs in background workers
            // rather than over a connection to localhost.
            "cron.use_background_workers = on".into(),
            "auth_pg.session_retention = '1h'".into(),
        ],
        ..ClusterOptions::default()
    });
    cluster.create_database("app");
    create_sessions(&cluster.url(roles::ADMIN, "app"), 50).await;
    cluster.psql("app", EXPIRE_SOME);
    cluster.psql(
        "app",
        "CREATE EXTENSION pg_cron; \
         SELECT cron.schedule('auth_pg sessions', '* * * * *', \
                              'SELECT auth_pg.cleanup_expired_sessions()')",
    );
    // The library is not preloaded, so no maintenance worker runs: pg_cron does the work.
    wait_for_count(&cluster, "app", "20", Duration::from_secs(90)).await;
    let runs = cluster.psql(
        "app",
        "SELECT status FROM cron.job_run_details ORDER BY runid LIMIT 1",
    );
    assert_eq!(runs, "succeeded");
}
