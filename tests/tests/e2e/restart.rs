//! A server that goes away under load, by an immediate shutdown and restart or by the crash of
//! one backend (after which the postmaster ends every other one, resets shared memory and
//! recovers): a caller's error, if it gets one, says the connection was lost; never a wrong
//! answer and never a hang; the same pool serves again once the server is back; nothing committed before
//! is lost; and a cached client forgets what it held, since a notification may have been lost
//! with its connection, and listens and caches again afterwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use auth_client::{AuthClient, Config, Credential, Error, Status};
use auth_pg_e2e::{Cluster, ClusterOptions, eventually, roles, wait_for};

const HOUR: Duration = Duration::from_secs(3600);
const CALLERS: usize = 8;
/// Longer than any check may take, even while the server restarts: a call still waiting then
/// is a hang.
const HANG: Duration = Duration::from_secs(30);

/// The pids of the backends serving this test's clients, or None while the server refuses
/// connections (restarting after a crash).
fn client_backends(cluster: &Cluster) -> Option<std::collections::BTreeSet<String>> {
    let pids = cluster
        .try_psql(
            "app",
            "SELECT pid FROM pg_catalog.pg_stat_activity \
             WHERE application_name = 'restart' AND backend_type = 'client backend'",
        )
        .ok()?;
    Some(pids.lines().map(str::to_owned).collect())
}

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

/// A credential the callers check, and what the server committed for it.
struct Case {
    api_key: bool,
    secret: Credential,
    expected: Status,
}

impl Case {
    async fn check(&self, app: &AuthClient) -> Result<Status, Error> {
        let secret = self.secret.expose_secret();
        if self.api_key {
            Ok(app.validate_api_key(secret).await?.status)
        } else {
            Ok(app.validate_token(secret).await?.status)
        }
    }
}

/// How the server goes away.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Outage {
    /// `pg_ctl stop -m immediate` (no checkpoint: the start runs crash recovery), then start.
    ImmediateShutdown,
    /// One backend killed with SIGKILL: the postmaster restarts everything by itself.
    BackendCrash,
}

/// One caller: checks the cases in turn until `stop`, asserting every answer against what was
/// committed and every error to be a lost connection.
async fn caller(
    app: AuthClient,
    cases: Arc<Vec<Case>>,
    first: usize,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) {
    for i in (first..).step_by(CALLERS).map(|i| i % cases.len()) {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let case = &cases[i];
        match tokio::time::timeout(HANG, case.check(&app)).await {
            Err(_) => panic!("a check was still waiting after {HANG:?}"),
            Ok(Ok(status)) => {
                assert_eq!(status, case.expected, "case {i}");
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
    let answers = || tally.answers.load(Ordering::Relaxed);
    eventually(
        HANG,
        Duration::from_millis(10),
        || answers() >= from + count,
        || {
            format!(
                "waited {HANG:?} for {what}: {} answers, {} lost",
                answers(),
                tally.lost.load(Ordering::Relaxed)
            )
        },
    )
    .await;
    answers()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immediate_shutdown_under_load_loses_nothing_and_the_clients_recover() {
    outage_under_load(Outage::ImmediateShutdown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_crash_under_load_loses_nothing_and_the_clients_recover() {
    outage_under_load(Outage::BackendCrash).await;
}

async fn outage_under_load(outage: Outage) {
    // Test clusters commit asynchronously, which an immediate shutdown or a crash is allowed
    // to undo; this one waits for every commit to reach the WAL, as a production server does.
    let cluster = Cluster::start(&ClusterOptions {
        settings: vec!["synchronous_commit = on".into()],
        ..ClusterOptions::default()
    });
    cluster.create_database("app");
    let admin = client(&cluster, roles::ADMIN, 0);
    admin
        .create_organization("acme", "Acme")
        .await
        .expect("create org");
    // Tokens and API keys (whose checks note their use in shared memory, which a crash
    // resets), one in four revoked.
    let mut cases = Vec::new();
    for i in 0..48 {
        let api_key = i % 3 == 2;
        let secret = if api_key {
            admin
                .create_api_key("acme", &format!("key-{i}"), &[], None, None)
                .await
                .expect("create key")
                .key
        } else {
            admin
                .issue_token(&format!("user-{i}"), HOUR, &[], None)
                .await
                .expect("issue")
        };
        let expected = if i % 4 == 3 {
            let revoked = if api_key {
                let found = admin
                    .validate_api_key(secret.expose_secret())
                    .await
                    .expect("validate");
                let key_id = found.key_id.expect("a valid key's id");
                admin.revoke_api_key("acme", &key_id).await
            } else {
                admin.revoke_token(secret.expose_secret()).await
            };
            assert!(revoked.expect("revoke"));
            Status::Revoked
        } else {
            Status::Valid
        };
        cases.push(Case {
            api_key,
            secret,
            expected,
        });
    }
    let cases = Arc::new(cases);

    let cached = client(&cluster, roles::VALIDATOR, 100);
    wait_for(&cached, "the cache's listener listens", |s| s.listening).await;
    let cached_token = &cases[0].secret;
    let cached_status = async || {
        cached
            .validate_token(cached_token.expose_secret())
            .await
            .expect("validate")
            .status
    };
    for _ in 0..2 {
        assert_eq!(cached_status().await, Status::Valid);
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
                cases.clone(),
                first,
                tally.clone(),
                stop.clone(),
            ))
        })
        .collect();
    answers_beyond(&tally, 0, 200, "the load to start").await;
    let serving_before = client_backends(&cluster).expect("the server accepts connections");
    assert!(!serving_before.is_empty());

    match outage {
        Outage::ImmediateShutdown => {
            cluster.stop("immediate");
            cluster.start_server();
        }
        Outage::BackendCrash => {
            let pid: i32 = serving_before
                .first()
                .and_then(|pid| pid.parse().ok())
                .expect("a backend's pid");
            // SAFETY: kill has no memory effects; the pid is a backend of this test's cluster.
            assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill {pid}");
        }
    }
    // The outage reaches the callers' pool: every backend that served them before goes, and
    // new ones serve them. (After a crash, the other backends serve on for a moment until the
    // postmaster notices and restarts them all; the server then refuses connections until its
    // recovery ends.)
    eventually(
        HANG,
        Duration::from_millis(50),
        || {
            client_backends(&cluster)
                .is_some_and(|now| !now.is_empty() && now.is_disjoint(&serving_before))
        },
        || format!("waited {HANG:?} for new backends to replace {serving_before:?}"),
    )
    .await;
    let answered = tally.answers.load(Ordering::Relaxed);
    answers_beyond(&tally, answered, 400, "answers after the outage").await;
    stop.store(true, Ordering::Relaxed);
    for task in callers {
        task.await.expect("a caller panicked");
    }
    let (answers, lost) = (
        tally.answers.load(Ordering::Relaxed),
        tally.lost.load(Ordering::Relaxed),
    );
    // Whether a caller saw an error depends on whether it had a statement in flight, or asked
    // for a connection, while the server was away: a pooled connection found closed is
    // replaced without one, and on a busy machine every caller may have been between calls.
    // That the outage reached them is shown by the backends serving them (above).
    // The client's metrics saw what its callers saw: one statement a check.
    let metrics = app.metrics();
    assert_eq!(
        (
            metrics.statements,
            metrics.failed_statements,
            metrics.lost_connections
        ),
        (answers + lost, lost, lost),
        "{metrics:?}"
    );

    // Every credential answers as it was committed before the outage (the callers checked
    // each answer too).
    for case in cases.iter() {
        assert_eq!(case.check(&app).await.expect("check"), case.expected);
    }

    // The cached client dropped its answers when its listener's connection went, listens again
    // on a new one, and then caches and hears revocations as before.
    let back = wait_for(&cached, "the listener reconnects", |s| {
        s.listening && s.connects >= 2
    })
    .await;
    assert_eq!(back.entries, 0, "{back:?}");
    for _ in 0..2 {
        assert_eq!(cached_status().await, Status::Valid);
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
    assert_eq!(cached_status().await, Status::Revoked);

    // No process died but the one the test killed.
    let log = cluster.server_log();
    let killed: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("terminated by signal"))
        .collect();
    let expected_kills = usize::from(outage == Outage::BackendCrash);
    assert_eq!(killed.len(), expected_kills, "{log}");
    assert!(killed.iter().all(|line| line.contains("signal 9")), "{log}");
    assert!(!log.contains("PANIC"), "{log}");
}
