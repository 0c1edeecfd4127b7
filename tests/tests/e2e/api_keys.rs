//! API keys through auth_client: the life of a key, concurrent changes to one organization,
//! revocation notices, index use and last-use recording by the maintenance worker.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use auth_client::reexports::tokio_postgres::error::SqlState;
use auth_client::{AuthClient, Config, Credential, CredentialKind, Status};
use auth_core::Invalidation;
use auth_pg_e2e::{Cluster, ClusterOptions, TestDb, roles};

const HOUR: Duration = Duration::from_secs(3600);

/// Every organization's document and its lookup rows hold the same keys at the same positions.
fn assert_in_step(db: &TestDb) {
    let disagreements = db.psql(
        "SELECT count(*) FROM (
             SELECT o.org_id, e.value->>'id' AS id, (e.ordinality - 1)::int AS position,
                    decode(e.value->>'hash', 'hex') AS hash,
                    (e.value->>'revoked_at')::timestamptz AS revoked_at,
                    (e.value->>'expires_at')::timestamptz AS expires_at
             FROM auth_pg.organizations o, jsonb_array_elements(o.api_keys) WITH ORDINALITY e
         ) d FULL JOIN (
             SELECT org_id, key_id AS id, position, key_hash AS hash, revoked_at, expires_at
             FROM auth_pg.api_key_lookup
         ) l USING (org_id, id)
         WHERE d.position IS DISTINCT FROM l.position OR d.hash IS DISTINCT FROM l.hash
            OR d.revoked_at IS DISTINCT FROM l.revoked_at OR d.expires_at IS DISTINCT FROM l.expires_at",
    );
    assert_eq!(disagreements, "0", "documents and lookup rows disagree");
}

#[tokio::test]
async fn the_life_of_a_key() {
    let db = TestDb::new("api_key_life");
    let admin = db.client(roles::ADMIN);
    let app = db.client(roles::VALIDATOR);
    admin
        .create_organization("acme", "Acme")
        .await
        .expect("create org");
    let expires = SystemTime::now() + 7 * 24 * HOUR;
    let metadata = serde_json::json!({ "team": "platform" });
    let created = admin
        .create_api_key(
            "acme",
            "CI",
            &["deploy", "read"],
            Some(expires),
            Some(&metadata),
        )
        .await
        .expect("create key");
    assert!(!format!("{created:?}").contains(&created.key.expose_secret()[12..]));

    let answer = app
        .validate_api_key(created.key.expose_secret())
        .await
        .expect("validate");
    assert_eq!(answer.status, Status::Valid);
    assert_eq!(answer.org_id.as_deref(), Some("acme"));
    assert_eq!(answer.key_id.as_deref(), Some(created.key_id.as_str()));
    assert!(answer.has_scope("deploy") && !answer.has_scope("admin"));
    assert_eq!(answer.metadata, Some(metadata));

    let rotated = admin
        .rotate_api_key("acme", &created.key_id, HOUR)
        .await
        .expect("rotate");
    let old = app
        .validate_api_key(created.key.expose_secret())
        .await
        .expect("validate");
    assert_eq!(
        old.status,
        Status::Valid,
        "the old key lasts for the grace period"
    );
    let grace_left = old
        .expires_at
        .expect("expiry")
        .duration_since(SystemTime::now())
        .expect("future");
    assert!(grace_left <= HOUR && grace_left > HOUR - Duration::from_secs(60));
    assert!(
        app.validate_api_key(rotated.key.expose_secret())
            .await
            .expect("validate")
            .is_valid()
    );

    let listed = admin.list_api_keys("acme").await.expect("list");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].key_id, created.key_id);
    assert_eq!(listed[1].key_id, rotated.key_id);
    assert_eq!(listed[1].prefix, rotated.key.display_prefix());
    assert!(
        listed
            .iter()
            .all(|k| k.status == Status::Valid && k.name == "CI")
    );

    assert!(
        admin
            .revoke_api_key("acme", &rotated.key_id)
            .await
            .expect("revoke")
    );
    assert_eq!(
        app.validate_api_key(rotated.key.expose_secret())
            .await
            .expect("validate")
            .status,
        Status::Revoked
    );
    assert_in_step(&db);

    assert!(admin.delete_organization("acme").await.expect("delete"));
    for key in [&created.key, &rotated.key] {
        assert_eq!(
            app.validate_api_key(key.expose_secret())
                .await
                .expect("validate")
                .status,
            Status::Unknown
        );
    }
}

#[tokio::test]
async fn bad_input_gets_clear_answers() {
    let db = TestDb::new("api_key_bad_input");
    let admin = db.client(roles::ADMIN);
    let app = db.client(roles::VALIDATOR);
    admin
        .create_organization("acme", "Acme")
        .await
        .expect("create org");
    let key = admin
        .create_api_key("acme", "CI", &[], None, None)
        .await
        .expect("create");

    let err = admin
        .create_organization("acme", "Again")
        .await
        .expect_err("taken");
    assert_eq!(err.code(), Some(&SqlState::UNIQUE_VIOLATION));
    let err = admin
        .create_api_key("nobody", "CI", &[], None, None)
        .await
        .expect_err("no org");
    assert_eq!(err.code(), Some(&SqlState::NO_DATA_FOUND));
    let past = SystemTime::now() - HOUR;
    let err = admin
        .create_api_key("acme", "CI", &[], Some(past), None)
        .await
        .expect_err("past");
    assert_eq!(err.code(), Some(&SqlState::INVALID_PARAMETER_VALUE));
    let err = admin
        .rotate_api_key("acme", "key_missing", HOUR)
        .await
        .expect_err("no key");
    assert_eq!(err.code(), Some(&SqlState::NO_DATA_FOUND));
    let huge_org = "o".repeat(513);
    let err = admin
        .create_organization(&huge_org, "Huge")
        .await
        .expect_err("too long");
    assert_eq!(err.code(), Some(&SqlState::STRING_DATA_RIGHT_TRUNCATION));
    assert!(
        !admin
            .revoke_api_key("nobody", &key.key_id)
            .await
            .expect("revoke")
    );

    let token = Credential::generate(CredentialKind::Token).expect("random");
    let huge = "k".repeat(1 << 20);
    for candidate in [
        "",
        &huge,
        "'; DROP TABLE auth_pg.organizations; --",
        token.expose_secret(),
    ] {
        assert_eq!(
            app.validate_api_key(candidate)
                .await
                .expect("validate")
                .status,
            Status::Malformed
        );
    }
    let err = app
        .create_api_key("acme", "CI", &[], None, None)
        .await
        .expect_err("validator");
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    assert!(
        app.validate_api_key(key.key.expose_secret())
            .await
            .expect("validate")
            .is_valid()
    );
    assert_in_step(&db);
}

/// What the concurrent writers did to each key, to check against the end state.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fate {
    Kept,
    Revoked,
    Rotated,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_changes_to_one_organization_lose_nothing() {
    let db = TestDb::new("api_key_concurrency");
    let mut config = Config::from_url(&db.url(roles::ADMIN)).expect("url");
    config.pool_size(8);
    let admin = AuthClient::new(&config).expect("client");
    let app = db.client(roles::VALIDATOR);
    admin
        .create_organization("acme", "Acme")
        .await
        .expect("create org");

    // A reader checks every key created so far, all the time: a committed key is never unknown.
    let known: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (app, known, stop) = (app.clone(), known.clone(), stop.clone());
        tokio::spawn(async move {
            let mut checks = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let keys = known.lock().expect("lock").clone();
                let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
                for answer in app.validate_api_keys(&refs).await.expect("validate") {
                    assert_ne!(
                        answer.status,
                        Status::Unknown,
                        "a half-written key was seen"
                    );
                    checks += 1;
                }
                tokio::task::yield_now().await;
            }
            checks
        })
    };

    let mut writers = Vec::new();
    for writer in 0..8 {
        let (admin, known) = (admin.clone(), known.clone());
        writers.push(tokio::spawn(async move {
            let mut fates = Vec::new();
            for round in 0..6 {
                let created = admin
                    .create_api_key(
                        "acme",
                        &format!("w{writer}-r{round}"),
                        &["read"],
                        None,
                        None,
                    )
                    .await
                    .expect("create");
                known
                    .lock()
                    .expect("lock")
                    .push(created.key.expose_secret().to_owned());
                match (writer + round) % 3 {
                    0 => {
                        assert!(
                            admin
                                .revoke_api_key("acme", &created.key_id)
                                .await
                                .expect("revoke")
                        );
                        fates.push((created, Fate::Revoked));
                    }
                    1 => {
                        let new = admin
                            .rotate_api_key("acme", &created.key_id, Duration::ZERO)
                            .await
                            .expect("rotate");
                        known
                            .lock()
                            .expect("lock")
                            .push(new.key.expose_secret().to_owned());
                        fates.push((created, Fate::Rotated));
                        fates.push((new, Fate::Kept));
                    }
                    _ => fates.push((created, Fate::Kept)),
                }
            }
            fates
        }));
    }
    let mut fates = Vec::new();
    for writer in writers {
        fates.extend(writer.await.expect("writer"));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.await.expect("reader") > 0);

    let listed: BTreeMap<String, Status> = admin
        .list_api_keys("acme")
        .await
        .expect("list")
        .into_iter()
        .map(|k| (k.key_id, k.status))
        .collect();
    assert_eq!(
        listed.len(),
        fates.len(),
        "every key created is there, once"
    );
    for (key, fate) in &fates {
        let expected = match fate {
            Fate::Kept => Status::Valid,
            Fate::Revoked => Status::Revoked,
            Fate::Rotated => Status::Expired,
        };
        assert_eq!(listed[&key.key_id], expected, "{fate:?}");
        let answer = app
            .validate_api_key(key.key.expose_secret())
            .await
            .expect("validate");
        assert_eq!(answer.status, expected, "{fate:?}");
    }
    assert_in_step(&db);
}

#[tokio::test]
async fn changes_are_announced_with_ids_only() {
    let db = TestDb::new("api_key_notify");
    let admin = db.client(roles::ADMIN);
    let mut events = db.listen(roles::NOBODY).await;

    admin
        .create_organization("acme", "Acme")
        .await
        .expect("create org");
    let key = admin
        .create_api_key("acme", "CI", &[], None, None)
        .await
        .expect("create");
    let rotated = admin
        .rotate_api_key("acme", &key.key_id, HOUR)
        .await
        .expect("rotate");
    assert_eq!(
        events.next().await,
        Invalidation::ApiKeyRotated {
            org_id: "acme".into(),
            key_id: key.key_id.clone(),
            new_key_id: rotated.key_id.clone()
        }
    );
    admin
        .revoke_api_key("acme", &rotated.key_id)
        .await
        .expect("revoke");
    assert_eq!(
        events.next().await,
        Invalidation::ApiKeyRevoked {
            org_id: "acme".into(),
            key_id: rotated.key_id.clone()
        }
    );
    db.psql("UPDATE auth_pg.organizations SET api_keys = '[]' WHERE org_id = 'acme'");
    assert_eq!(
        events.next().await,
        Invalidation::OrganizationKeysChanged {
            org_id: "acme".into()
        }
    );
    admin.delete_organization("acme").await.expect("delete");
    assert_eq!(
        events.next().await,
        Invalidation::OrganizationKeysChanged {
            org_id: "acme".into()
        }
    );
    // Renamed by hand: caches hold its keys under the old id, so both ids are announced.
    admin
        .create_organization("globex", "Globex")
        .await
        .expect("create org");
    db.psql("UPDATE auth_pg.organizations SET org_id = 'globex-2' WHERE org_id = 'globex'");
    for org_id in ["globex-2", "globex"] {
        assert_eq!(
            events.next().await,
            Invalidation::OrganizationKeysChanged {
                org_id: org_id.into()
            }
        );
    }
    // Truncated by hand: no row trigger fires, so every key is forgotten.
    db.psql("TRUNCATE auth_pg.organizations CASCADE");
    assert_eq!(events.next().await, Invalidation::ApiKeysChanged);
}

#[tokio::test]
async fn validation_probes_the_hash_index_and_never_scans() {
    let db = TestDb::new("api_key_index_use");
    let admin = db.client(roles::ADMIN);
    let app = db.client(roles::VALIDATOR);
    admin
        .create_organization("acme", "Acme")
        .await
        .expect("create org");
    let key = admin
        .create_api_key("acme", "CI", &[], None, None)
        .await
        .expect("create");
    let stats = "SELECT s.idx_scan, t.seq_scan FROM pg_stat_user_indexes s \
                 JOIN pg_stat_user_tables t USING (relid) \
                 WHERE s.indexrelname = 'api_key_lookup_key_hash_idx'";
    // Statistics reach the shared counters when a backend flushes them; ask for it.
    let read_stats = |db: &TestDb| db.psql(&format!("SELECT pg_stat_force_next_flush(); {stats}"));
    let before = read_stats(&db);
    for _ in 0..10 {
        assert!(
            app.validate_api_key(key.key.expose_secret())
                .await
                .expect("validate")
                .is_valid()
        );
    }
    let validator = db.connect(roles::VALIDATOR).await;
    validator
        .batch_execute("SELECT pg_stat_force_next_flush()")
        .await
        .expect("flush");
    drop(app);
    drop(validator);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = read_stats(&db);
    let parse = |s: &str| -> (i64, i64) {
        let mut fields = s
            .lines()
            .last()
            .expect("a row")
            .split('|')
            .map(|f| f.parse().expect("a number"));
        (
            fields.next().expect("idx_scan"),
            fields.next().expect("seq_scan"),
        )
    };
    let ((idx_before, seq_before), (idx_after, seq_after)) = (parse(&before), parse(&after));
    assert!(
        idx_after >= idx_before + 10,
        "index scans: {idx_before} -> {idx_after}"
    );
    assert_eq!(
        seq_after, seq_before,
        "no sequential scan of api_key_lookup"
    );
}

#[tokio::test]
async fn the_maintenance_worker_records_last_use() {
    let cluster = Cluster::start(&ClusterOptions {
        settings: vec![
            "auth_pg.maintenance_interval = 1".into(),
            "auth_pg.maintenance_database = 'app'".into(),
        ],
        ..ClusterOptions::default()
    });
    cluster.create_database("app");
    let client = |role| {
        AuthClient::new(&Config::from_url(&cluster.url(role, "app")).expect("url")).expect("client")
    };
    let (admin, app) = (client(roles::ADMIN), client(roles::VALIDATOR));
    admin
        .create_organization("acme", "Acme")
        .await
        .expect("create org");
    let used = admin
        .create_api_key("acme", "used", &[], None, None)
        .await
        .expect("create");
    let idle = admin
        .create_api_key("acme", "idle", &[], None, None)
        .await
        .expect("create");

    // A check in a read-only transaction records nothing.
    let reader = cluster.connect(roles::VALIDATOR, "app").await;
    reader
        .batch_execute(&format!(
            "BEGIN READ ONLY; SELECT auth_pg.validate_api_key('{}'); COMMIT;",
            idle.key.expose_secret()
        ))
        .await
        .expect("read-only check");
    assert!(
        app.validate_api_key(used.key.expose_secret())
            .await
            .expect("validate")
            .is_valid()
    );

    // The worker may have started before the database existed; it then exits and the
    // postmaster starts it again after ten seconds.
    let mut last_used = None;
    for _ in 0..300 {
        let keys = admin.list_api_keys("acme").await.expect("list");
        if let Some(when) = keys
            .iter()
            .find(|k| k.key_id == used.key_id)
            .and_then(|k| k.last_used_at)
        {
            assert!(
                keys.iter()
                    .find(|k| k.key_id == idle.key_id)
                    .expect("idle")
                    .last_used_at
                    .is_none()
            );
            last_used = Some(when);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last_used = last_used.expect("the worker recorded the use within 30 s");
    assert!(SystemTime::now().duration_since(last_used).expect("past") < Duration::from_secs(60));
    let in_document = cluster.psql(
        "app",
        "SELECT count(*) FROM auth_pg.organizations, jsonb_array_elements(api_keys) e \
         WHERE e->>'last_used_at' IS NOT NULL",
    );
    assert_eq!(in_document, "1");
}
