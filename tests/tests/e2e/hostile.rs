//! Every function of the extension, called with hostile arguments, one argument at a time:
//! whatever the function, the answer is a result or an ERROR with a specific SQLSTATE, never
//! XX000, never a crash, never a hang, and never a message that echoes a huge argument or a
//! credential. The functions are read from the catalog, so a new one is swept without being
//! listed here. A bad row loaded with COPY is refused without its line being quoted. And a
//! database whose encoding auth_pg cannot read is refused at the start.

use std::fmt::Write as _;
use std::time::Duration;

use auth_client::reexports::tokio_postgres::error::SqlState;
use auth_pg_e2e::{TestDb, roles, shared_cluster};

/// Hostile values (SQL literals) for an argument of `ty`, and a harmless one (the first).
fn values(ty: &str, credential: &str) -> Vec<String> {
    let huge = format!("'{}'", "a".repeat(1 << 20));
    let mut values = match ty {
        "text" => vec![
            "'x'".to_owned(),
            "''".to_owned(),
            huge,
            "$q$'; DROP TABLE auth_pg.tokens; --\"$q$".to_owned(),
            "'*'".to_owned(),
            "'::**:*'".to_owned(),
            format!("'{credential}'"),
            format!("'{}'", credential.replacen("apgt_", "apgk_", 1)),
            "E'\\u00e9\\u0001'".to_owned(),
        ],
        "text[]" => vec![
            "'{}'".to_owned(),
            "'{NULL}'".to_owned(),
            "'{\"\"}'".to_owned(),
            "pg_catalog.array_fill('x'::text, ARRAY[100000])".to_owned(),
            format!("ARRAY['{credential}', NULL, '']"),
        ],
        "interval" => vec![
            "'1 hour'".to_owned(),
            "'0'".to_owned(),
            "'-1 day'".to_owned(),
            "'1 month -40 days'".to_owned(),
            "'178000000 years'".to_owned(),
        ],
        "timestamp with time zone" => vec![
            "pg_catalog.now() + '1 hour'".to_owned(),
            "'-infinity'".to_owned(),
            "'infinity'".to_owned(),
            "'4713-01-01 BC'".to_owned(),
        ],
        "jsonb" => vec![
            "'{}'".to_owned(),
            "'null'".to_owned(),
            "'[]'".to_owned(),
            "'\"x\"'".to_owned(),
            format!("'{}{}'", "[".repeat(5000), "]".repeat(5000)),
            "'{\"n\": 1e400}'".to_owned(),
            "pg_catalog.jsonb_build_object('k', pg_catalog.repeat('v', 1048576))".to_owned(),
        ],
        "boolean" => vec!["true".to_owned(), "false".to_owned()],
        "integer" | "bigint" => vec![
            "10".to_owned(),
            "0".to_owned(),
            "-1".to_owned(),
            "2147483647".to_owned(),
        ],
        _ => vec![],
    };
    values.push("NULL".to_owned());
    values
}

/// Whether an error message may be shown to whoever made the call: short, and without the
/// credential.
fn discreet(message: &str, credential: &str) -> bool {
    message.len() < 2_000 && !message.contains(credential) && !message.contains(&credential[5..])
}

#[tokio::test]
async fn every_function_answers_hostile_arguments_with_a_result_or_a_specific_error() {
    let db = TestDb::new("hostile");
    let client = db.connect(roles::ADMIN).await;
    client
        .batch_execute("SET statement_timeout = '20s'")
        .await
        .expect("set timeout");
    let credential: String = client
        .query_one("SELECT auth_pg.issue_token('someone', '1 hour')", &[])
        .await
        .expect("issue")
        .get(0);
    // The harmless value 'x' names things that exist (an organization, a global role, a JWT
    // key), so that a hostile value in another argument reaches past the lookups.
    client
        .batch_execute(
            "SELECT auth_pg.create_organization('x', 'X'); \
             SELECT auth_pg.create_role('x'); \
             SELECT auth_pg.add_jwt_key('x', 'HS256', pg_catalog.repeat('s', 64));",
        )
        .await
        .expect("set up");

    // Functions a client calls: not trigger functions, not those taking `internal`.
    let functions = client
        .query(
            "SELECT p.proname::text, \
                    ARRAY(SELECT pg_catalog.format_type(t, NULL) \
                          FROM pg_catalog.unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, n) \
                          ORDER BY n) \
             FROM pg_catalog.pg_proc p \
             WHERE p.pronamespace = 'auth_pg'::regnamespace AND p.prokind = 'f' \
               AND p.prorettype <> 'trigger'::regtype \
               AND NOT 'internal'::regtype = ANY (p.proargtypes::oid[]) \
               AND pg_catalog.has_function_privilege(p.oid, 'EXECUTE') \
             ORDER BY 1, 2",
            &[],
        )
        .await
        .expect("functions");
    assert!(functions.len() >= 40, "{} functions", functions.len());

    let mut calls = 0;
    let mut failures = String::new();
    for function in &functions {
        let name: String = function.get(0);
        let types: Vec<String> = function.get(1);
        let arguments: Vec<Vec<String>> = types.iter().map(|ty| values(ty, &credential)).collect();
        assert!(
            arguments.iter().all(|values| values.len() > 1),
            "auth_pg.{name}({}): no hostile values for one of these types",
            types.join(", ")
        );
        // Each argument takes each of its values while the others keep their harmless one.
        for (position, values) in arguments.iter().enumerate() {
            for value in &values[1..] {
                let call = arguments
                    .iter()
                    .zip(&types)
                    .enumerate()
                    .map(|(i, (values, ty))| {
                        let value = if i == position { value } else { &values[0] };
                        format!("({value})::{ty}")
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = format!("SELECT * FROM auth_pg.{name}({call})");
                client.batch_execute("BEGIN").await.expect("begin");
                let outcome = client.simple_query(&sql).await;
                calls += 1;
                // What a failure shows of the call: its start, without the credential (whole,
                // or under another kind's prefix).
                let shown: String = sql
                    .replace(&credential[5..], "<credential>")
                    .chars()
                    .take(200)
                    .collect();
                match outcome {
                    Ok(_) => {}
                    Err(err) if err.is_closed() => {
                        panic!("the connection died on {shown}: {err}")
                    }
                    Err(err) => {
                        let db_error = err.as_db_error().expect("a server error");
                        let code = db_error.code();
                        if *code == SqlState::INTERNAL_ERROR
                            || *code == SqlState::QUERY_CANCELED
                            || !discreet(db_error.message(), &credential)
                            || !db_error
                                .detail()
                                .is_none_or(|detail| discreet(detail, &credential))
                        {
                            let _ = writeln!(
                                failures,
                                "{shown}\n  -> {} {}",
                                code.code(),
                                db_error.message().chars().take(300).collect::<String>()
                            );
                        }
                    }
                }
                client.batch_execute("ROLLBACK").await.expect("rollback");
            }
        }
    }
    assert!(failures.is_empty(), "after {calls} calls:\n{failures}");
    // The sweep ran through every function (a catalog query that found none would pass).
    assert!(calls > 300, "{calls} calls");
    // The server is still up and answering.
    tokio::time::timeout(Duration::from_secs(5), client.simple_query("SELECT 1"))
        .await
        .expect("an answer")
        .expect("SELECT 1");
}

/// Text crosses into auth_pg's Rust code as UTF-8: a database in another encoding is refused
/// when the extension is created, rather than failing on the first non-ASCII argument.
#[tokio::test]
async fn a_database_in_another_encoding_is_refused() {
    let cluster = shared_cluster();
    cluster.psql(
        "postgres",
        "CREATE DATABASE sql_ascii ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' \
         TEMPLATE template0",
    );
    let client = cluster.connect(roles::SUPERUSER, "sql_ascii").await;
    let err = client
        .batch_execute("CREATE EXTENSION auth_pg")
        .await
        .expect_err("refused");
    let db_error = err.as_db_error().expect("a server error");
    assert_eq!(db_error.code(), &SqlState::FEATURE_NOT_SUPPORTED, "{err}");
    assert!(db_error.message().contains("UTF8"), "{err}");
    assert!(db_error.hint().is_some(), "{err}");
    let schemas: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_namespace WHERE nspname = 'auth_pg'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(schemas, 0, "nothing of the extension is left");
}

/// CREATE EXTENSION would reuse a schema named auth_pg made beforehand. One that another role
/// owns or may create objects in, or that already holds objects, is refused: its owner could
/// otherwise swap in look-alike tables that the extension's SECURITY DEFINER functions write
/// into. A superuser's empty schema is used.
#[tokio::test]
async fn a_schema_made_beforehand_by_another_role_is_refused() {
    let cluster = shared_cluster();
    cluster.psql("postgres", "CREATE ROLE schema_squatter LOGIN");
    let cases = [
        ("squatted_owned", "owned", SqlState::INSUFFICIENT_PRIVILEGE),
        (
            "squatted_granted",
            "granted",
            SqlState::INSUFFICIENT_PRIVILEGE,
        ),
        (
            "squatted_filled",
            "filled",
            SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
        ),
    ];
    for (db, how, expected) in cases {
        cluster.psql("postgres", &format!("CREATE DATABASE {db}"));
        let setup = match how {
            "owned" => "CREATE SCHEMA auth_pg AUTHORIZATION schema_squatter",
            "granted" => "CREATE SCHEMA auth_pg; GRANT CREATE ON SCHEMA auth_pg TO schema_squatter",
            _ => "CREATE SCHEMA auth_pg; CREATE TABLE auth_pg.tokens (token_hash bytea)",
        };
        cluster.psql(db, setup);
        let client = cluster.connect(roles::SUPERUSER, db).await;
        let err = client
            .batch_execute("CREATE EXTENSION auth_pg")
            .await
            .expect_err("refused");
        let db_error = err.as_db_error().expect("a server error");
        assert_eq!(db_error.code(), &expected, "{how}: {err}");
        assert!(
            db_error.message().contains("schema auth_pg"),
            "{how}: {err}"
        );
        assert!(db_error.hint().is_some(), "{how}: {err}");
        let functions: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_catalog.pg_proc \
                 WHERE pronamespace = 'auth_pg'::regnamespace",
                &[],
            )
            .await
            .expect("count")
            .get(0);
        assert_eq!(functions, 0, "{how}: nothing of the extension was created");
    }

    cluster.psql("postgres", "CREATE DATABASE claimed_by_superuser");
    cluster.psql("claimed_by_superuser", "CREATE SCHEMA auth_pg");
    cluster.psql("claimed_by_superuser", "CREATE EXTENSION auth_pg");
    assert_eq!(
        cluster.psql(
            "claimed_by_superuser",
            "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'auth_pg'"
        ),
        env!("CARGO_PKG_VERSION"),
        "a superuser's empty schema is used"
    );
}

/// JSON numbers keep every digit `jsonb` holds, through every function that stores or signs
/// JSON, and through the rewrite of an organization's document by a later change.
#[test]
fn json_numbers_keep_every_digit() {
    let db = TestDb::new("json_digits");
    let m = "'{\"n\": 123456789012345678901234567890, \"d\": 0.1000000000000000055511151231257827, \
             \"e\": 1e400}'::jsonb";
    db.psql("SELECT auth_pg.create_organization('o', 'O')");
    // Stored in one statement, read in the next (a statement does not see its own writes).
    let token = db.psql(&format!(
        "SELECT auth_pg.issue_token('u', '1 hour', '{{}}', {m})"
    ));
    let session = db.psql(&format!(
        "SELECT auth_pg.create_session('u', '1 hour', '2 hours', {m})"
    ));
    let key = db.psql(&format!(
        "SELECT key FROM auth_pg.create_api_key('o', 'k1', '{{}}', NULL, {m})"
    ));
    let kept = db.psql(&format!(
        "SELECT (SELECT metadata FROM auth_pg.validate_token('{token}')) = {m}, \
                (SELECT metadata FROM auth_pg.validate_session('{session}')) = {m}, \
                (SELECT metadata FROM auth_pg.validate_api_key('{key}')) = {m}"
    ));
    assert_eq!(kept, "t|t|t");
    // A later key rewrites the organization's document; the first key's metadata stays whole.
    db.psql("SELECT auth_pg.create_api_key('o', 'k2')");
    let listed = db.psql(&format!(
        "SELECT metadata = {m} FROM auth_pg.list_api_keys('o') WHERE name = 'k1'"
    ));
    assert_eq!(listed, "t");
    db.psql("SELECT auth_pg.add_jwt_key('k', 'HS256', pg_catalog.repeat('s', 64))");
    let claim = db.psql(
        "SELECT (auth_pg.jwt_verify(auth_pg.jwt_sign( \
             '{\"n\": 123456789012345678901234567890, \"exp\": 4102444800}', 'k'))).claims->'n'",
    );
    assert_eq!(claim, "123456789012345678901234567890");
}

/// A bulk load (a restore, `\copy`) of a bad row into a table of hashes or keys is refused
/// without the row or its input line in the error (PostgreSQL quotes the line being loaded in
/// a CONTEXT line, and the row in DETAIL) or in the server log.
#[tokio::test]
async fn a_bad_row_in_a_copy_is_refused_without_quoting_it() {
    let db = TestDb::new("copy_quoting");
    let client = db.connect(roles::SUPERUSER).await;
    let secret = "copy-secret-that-no-error-may-quote-0123456789";
    let hash = "c0ffee".repeat(10) + "abcd";
    let cases = [
        // NULL in a NOT NULL column, caught by the row check.
        (
            "auth_pg.jwt_keys (kid, algorithm, key, created_at)",
            format!("k1\tHS256\t{secret}\t\\N\n"),
            secret.to_owned(),
            SqlState::NOT_NULL_VIOLATION,
        ),
        // A key refused by the key check.
        (
            "auth_pg.jwt_keys (kid, algorithm, key)",
            format!("k2\tHS256\t{secret} but -----BEGIN PUBLIC KEY-----\n"),
            secret.to_owned(),
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        // A CHECK constraint, caught by the row check.
        (
            "auth_pg.tokens (token_hash, user_id, expires_at)",
            format!("\\\\x{hash}\t\t2030-01-01\n"),
            hash.clone(),
            SqlState::CHECK_VIOLATION,
        ),
    ];
    for (n, (target, line, quoted, code)) in cases.into_iter().enumerate() {
        let file = format!("{}_{n}.tsv", db.name());
        db.cluster().write_data_file(&file, &line, 0o600);
        let err = client
            .batch_execute(&format!("COPY {target} FROM '{file}'"))
            .await
            .expect_err("refused");
        let _ = std::fs::remove_file(db.cluster().data_dir().join(&file));
        let db_error = err.as_db_error().expect("a server error");
        assert_eq!(db_error.code(), &code, "{target}: {db_error:?}");
        let shown = format!("{db_error:?}");
        assert!(!shown.contains(&quoted), "{target}: {shown}");
        assert!(db_error.hint().is_some(), "{target}: {shown}");
    }
    let log = db.cluster().server_log();
    assert!(
        log.contains("COPY auth_pg.tokens"),
        "the refusals were logged"
    );
    assert!(!log.contains(secret), "the server log quotes the secret");
    assert!(!log.contains(&hash), "the server log quotes the hash");
}
