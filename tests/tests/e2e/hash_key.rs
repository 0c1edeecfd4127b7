//! The hash key: it keys every stored hash, and no role but a superuser can read it, in any
//! backend, including one that has not loaded the library.

use std::time::Duration;

use auth_client::reexports::tokio_postgres::error::SqlState;
use auth_client::{AuthClient, Config, Status};
use auth_core::credential_hash;
use auth_pg_e2e::{Cluster, ClusterOptions, TestDb, roles};

const HOUR: Duration = Duration::from_secs(3600);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key as its file holds it (64 hexadecimal digits).
fn key_hex(cluster: &Cluster) -> String {
    std::fs::read_to_string(cluster.data_dir().join("auth_pg_hash.key"))
        .expect("key file")
        .trim()
        .to_owned()
}

/// Every way a non-superuser might read the key or its file fails or shows nothing of it. The
/// setting holds only the file's name: a backend that has loaded the library refuses to show
/// it to a non-superuser; one that has not shows the name, which opens nothing.
async fn assert_key_hidden_from(client: &tokio_postgres::Client, key_hex: &str) {
    for sql in [
        "SHOW auth_pg.hash_key_file",
        "SELECT current_setting('auth_pg.hash_key_file')",
    ] {
        match client.query_one(sql, &[]).await {
            Ok(row) => assert_eq!(row.get::<_, String>(0), "auth_pg_hash.key", "{sql}"),
            Err(err) => assert_eq!(
                err.code(),
                Some(&SqlState::INSUFFICIENT_PRIVILEGE),
                "{sql}: {err}"
            ),
        }
    }
    for sql in [
        "SELECT pg_read_file('auth_pg_hash.key')",
        "SELECT pg_read_binary_file('auth_pg_hash.key')",
        "SELECT * FROM pg_file_settings",
    ] {
        let err = client.query(sql, &[]).await.expect_err(sql);
        assert_eq!(
            err.code(),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {err}"
        );
        assert!(!err.to_string().contains(key_hex));
    }
    let err = client
        .query("SHOW auth_pg.hash_key", &[])
        .await
        .expect_err("no such setting");
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_OBJECT));
    let rows = client
        .query("SELECT name, setting FROM pg_settings WHERE name LIKE 'auth_pg.hash%' OR setting LIKE '%' || $1 || '%'", &[&&key_hex[..16]])
        .await
        .expect("pg_settings");
    assert!(
        rows.is_empty(),
        "{:?}",
        rows.iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn hashes_are_keyed_and_the_key_is_hidden() {
    let db = TestDb::new("hash_key");
    let cluster = db.cluster();
    let key = cluster.hash_key().expect("the shared cluster has a key");
    let admin = db.client(roles::ADMIN);
    let token = admin
        .issue_token("u", HOUR, &[], None)
        .await
        .expect("issue");

    let stored = db.psql("SELECT encode(token_hash, 'hex') FROM auth_pg.tokens");
    assert_eq!(
        stored,
        hex(&credential_hash(
            Some(&key),
            token.expose_secret().as_bytes()
        ))
    );
    assert_ne!(
        stored,
        hex(&credential_hash(None, token.expose_secret().as_bytes()))
    );

    let key_hex = key_hex(cluster);
    for role in [roles::NOBODY, roles::VALIDATOR, roles::ADMIN] {
        let client = db.connect(role).await;
        // Preloaded: even a backend that has called nothing refuses to show the setting.
        let err = client
            .query("SHOW auth_pg.hash_key_file", &[])
            .await
            .expect_err("superuser only");
        assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
        assert_key_hidden_from(&client, &key_hex).await;
    }
}

#[tokio::test]
async fn a_backend_that_has_not_loaded_the_library_shows_no_key() {
    // Without shared_preload_libraries, the setting is a placeholder until the first call:
    // it names a file, which only the server's user can read.
    let cluster = Cluster::start(&ClusterOptions {
        preload: false,
        ..ClusterOptions::default()
    });
    let key = cluster.hash_key().expect("key");
    let key_hex = key_hex(&cluster);
    cluster.create_database("app");
    let fresh = cluster.connect(roles::NOBODY, "app").await;
    let shown: String = fresh
        .query_one("SHOW auth_pg.hash_key_file", &[])
        .await
        .expect("placeholder")
        .get(0);
    assert_eq!(shown, "auth_pg_hash.key");
    let err = fresh
        .query("SELECT pg_read_file('auth_pg_hash.key')", &[])
        .await
        .expect_err("file");
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    let leaked = fresh
        .query(
            "SELECT name FROM pg_settings WHERE setting LIKE '%' || $1 || '%'",
            &[&&key_hex[..16]],
        )
        .await
        .expect("pg_settings");
    assert!(leaked.is_empty());

    // The first call loads the library, and keys with the file's key.
    let admin = AuthClient::new(&Config::from_url(&cluster.url(roles::ADMIN, "app")).expect("url"))
        .expect("client");
    let token = admin
        .issue_token("u", HOUR, &[], None)
        .await
        .expect("issue");
    let stored = cluster.psql(
        "app",
        "SELECT encode(token_hash, 'hex') FROM auth_pg.tokens",
    );
    assert_eq!(
        stored,
        hex(&credential_hash(
            Some(&key),
            token.expose_secret().as_bytes()
        ))
    );
    assert_key_hidden_from(&cluster.connect(roles::ADMIN, "app").await, &key_hex).await;
}

#[tokio::test]
async fn an_unusable_key_file_is_an_error_and_changing_the_key_retires_old_tokens() {
    let cluster = Cluster::start(&ClusterOptions::default());
    cluster.create_database("app");
    let client = |role: &str| {
        AuthClient::new(
            Config::from_url(&cluster.url(role, "app"))
                .expect("url")
                .pool_size(1),
        )
        .expect("client")
    };
    let old = client(roles::ADMIN)
        .issue_token("u", HOUR, &[], None)
        .await
        .expect("issue");
    let key_hex = key_hex(&cluster);

    // A key file others can read is refused (like ssl_key_file), not silently ignored.
    cluster.write_data_file("auth_pg_hash.key", &format!("{key_hex}\n"), 0o644);
    let err = client(roles::VALIDATOR)
        .validate_token(old.expose_secret())
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Some(&SqlState::CONFIG_FILE_ERROR), "{err}");
    assert!(err.to_string().contains("group or world access"), "{err}");
    assert!(!err.to_string().contains(&key_hex));
    assert!(err.hint().is_some_and(|h| h.contains("0600")));

    for (contents, reason) in [
        ("not hex at all", "hexadecimal"),
        ("abcd", "64"),
        ("", "empty"),
    ] {
        cluster.write_data_file("auth_pg_hash.key", contents, 0o600);
        let err = client(roles::VALIDATOR)
            .validate_token(old.expose_secret())
            .await
            .expect_err("refused");
        assert_eq!(err.code(), Some(&SqlState::CONFIG_FILE_ERROR), "{err}");
        assert!(err.to_string().contains(reason), "{err}");
    }

    // Back to the original key: the old token is valid again.
    cluster.write_data_file("auth_pg_hash.key", &format!("{key_hex}\n"), 0o600);
    let validator = client(roles::VALIDATOR);
    let status = |token: &auth_core::Credential| {
        let validator = &validator;
        let token = token.expose_secret().to_owned();
        async move {
            validator
                .validate_token(&token)
                .await
                .expect("validate")
                .status
        }
    };
    // The server reads its configuration again; backends take the signal in their own time.
    let reload = || async {
        cluster.psql("app", "SELECT pg_reload_conf()");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(status(&old).await, Status::Valid);

    // A new key (a new file, then a reload) reaches connections already open: tokens hashed
    // under the old key are unknown, new ones are valid.
    cluster.write_hash_key("auth_pg_hash_2.key");
    cluster.psql(
        "app",
        "ALTER SYSTEM SET auth_pg.hash_key_file = 'auth_pg_hash_2.key'",
    );
    reload().await;
    assert_eq!(status(&old).await, Status::Unknown);
    let new = client(roles::ADMIN)
        .issue_token("u", HOUR, &[], None)
        .await
        .expect("issue");
    assert_eq!(status(&new).await, Status::Valid);

    // The same file rewritten in place with another key, then a reload: connections already
    // open read it again.
    cluster.write_hash_key("auth_pg_hash_2.key");
    reload().await;
    assert_eq!(status(&new).await, Status::Unknown);
}
