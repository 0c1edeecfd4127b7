//! A server that goes away under load: callers get errors that say the connection was lost,
//! never a wrong answer and never a hang; the same pool serves again once the server is back;
//! nothing committed before an immediate shutdown (a crash, as far as the data is concerned) is
//! lost; and a cached client forgets what it held, since a notification may have been lost
//! with its connection, and listens and caches again afterwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use auth_client::{AuthClient, Config, Credential, Status};
use auth_pg_e2e::{Cluster, ClusterOptions, roles, wait_for};

const HOUR: Duration = Duration::from_secs(3600);
const CALLERS: usize = 8;
/// Longer than any check may take, even while the server restarts: a call still waiting then
/// is a hang.
const HANG: Duration = Duration::from_secs(30);

fn client(cluster: &Cluster, role: &str, cache: usize) -> AuthClient {
    let mut config = Config::from_url(&cluster.url(role, "app")).expect("url");
    config.cache(cache);
    config.postgres_config().application_name("restart");
    AuthClient::new(&config).expect("client")
}

/// What the callers saw.
#[derive(Default)]
struct Tally {
    answers: AtomicU64,
    lost: AtomicU64,
}

/// One caller: checks the tokens in turn until `stop`, asserting every answer against what was
/// committed and every error to be a lost connection.
async fn caller(
    app: AuthClient,
    tokens: Arc<Vec<(Credential, Status)>>,
    first: usize,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) {
    for i in (first..).step_by(CALLERS).map(|i| i % tokens.len()) {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let (token, expected) = &tokens[i];
        match tokio::time::timeout(HANG, app.validate_token(token.expose_secret())).await {
            Err(_) => panic!("a check was still waiting after {HANG:?}"),
            Ok(Ok(answer)) => {
                assert_eq!(answer.status, *expected, "token {i}");
                tally.answers.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(err)) => {
                assert!(err.is_connection(), "not a lost connection: {err}");
                tally.lost.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

/// Waits until the callers have had `count` more answers than `from`; panics after `HANG`.
async fn answers_beyond(tally: &Tally, from: u64, count: u64, what: &str) -> u64 {
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let answers = tally.answers.load(Ordering::Relaxed);
        if answers >= from + count {
            return answers;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {HANG:?} for {what}: {answers} answers, {} lost",
            tally.lost.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immediate_shutdown_under_load_loses_nothing_and_the_clients_recover() {
    // Test clusters commit asynchronously, which an immediate shutdown is allowed to undo; this
    // one waits for every commit to reach the WAL, as a production server does.
    let cluster = Cluster::start(&ClusterOptions {
        settings: vec!["synchronous_commit = on".into()],
        ..ClusterOptions::default()
    });
    cluster.create_database("app");
    let admin = client(&cluster, roles::ADMIN, 0);
    let mut tokens = Vec::new();
    for i in 0..40 {
        let token = admin
            .issue_token(&format!("user-{i}"), HOUR, &[], None)
            .await
            .expect("issue");
        let status = if i % 4 == 3 {
            assert!(
                admin
                    .revoke_token(token.expose_secret())
                    .await
                    .expect("revoke")
            );
            Status::Revoked
        } else {
            Status::Valid
        };
        tokens.push((token, status));
    }
    let tokens = Arc::new(tokens);

    let cached = client(&cluster, roles::VALIDATOR, 100);
    wait_for(&cached, "the cache's listener listens", |s| s.listening).await;
    let (cached_token, _) = &tokens[0];
    for _ in 0..2 {
        let answer = cached
            .validate_token(cached_token.expose_secret())
            .await
            .expect("validate");
        assert_eq!(answer.status, Status::Valid);
    }
    let before = cached.cache_stats().expect("cached");
    assert_eq!((before.entries, before.hits), (1, 1), "{before:?}");

    let app = client(&cluster, roles::VALIDATOR, 0);
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..CALLERS)
        .map(|first| {
            tokio::spawn(caller(
                app.clone(),
                tokens.clone(),
                first,
                tally.clone(),
                stop.clone(),
            ))
        })
        .collect();
    let answered = answers_beyond(&tally, 0, 200, "the load to start").await;

    // The server stops without a checkpoint, as after a crash, and starts again (crash
    // recovery replays the WAL) while the callers keep calling.
    cluster.stop("immediate");
    cluster.start_server();
    answers_beyond(&tally, answered, 400, "answers after the restart").await;
    stop.store(true, Ordering::Relaxed);
    for task in callers {
        task.await.expect("a caller panicked");
    }
    assert!(
        tally.lost.load(Ordering::Relaxed) > 0,
        "the callers never noticed the server going away"
    );

    // Every token answers as it was committed before the crash (the callers checked each
    // answer too).
    for (token, expected) in tokens.iter() {
        let answer = app
            .validate_token(token.expose_secret())
            .await
            .expect("validate");
        assert_eq!(answer.status, *expected);
    }

    // The cached client dropped its answers when its listener's connection went, listens again
    // on a new one, and then caches and hears revocations as before.
    let back = wait_for(&cached, "the listener reconnects", |s| {
        s.listening && s.connects >= 2
    })
    .await;
    assert_eq!(back.entries, 0, "{back:?}");
    for _ in 0..2 {
        let answer = cached
            .validate_token(cached_token.expose_secret())
            .await
            .expect("validate");
        assert_eq!(answer.status, Status::Valid);
    }
    let warm = cached.cache_stats().expect("cached");
    assert_eq!(warm.hits, back.hits + 1, "{warm:?}");
    assert!(
        admin
            .revoke_token(cached_token.expose_secret())
            .await
            .expect("revoke")
    );
    wait_for(&cached, "the revocation is heard", |s| {
        s.invalidations > warm.invalidations
    })
    .await;
    let answer = cached
        .validate_token(cached_token.expose_secret())
        .await
        .expect("validate");
    assert_eq!(answer.status, Status::Revoked);

    let log = cluster.server_log();
    assert!(!log.contains("terminated by signal"), "{log}");
    assert!(!log.contains("PANIC"), "{log}");
}
