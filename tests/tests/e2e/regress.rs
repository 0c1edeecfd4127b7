//! SQL-level tests run by PostgreSQL's own runners against the shared cluster:
//!
//! - pg_regress runs the golden files in `auth_pg/tests/pg_regress` (the same files
//!   `cargo pgrx regress` reads), showing the product as psql users see it;
//! - pg_isolation_regress runs the specs in `auth_pg/tests/isolation`, which pin down
//!   interleavings of concurrent sessions step by step.

use std::path::PathBuf;
use std::process::Command;

use auth_pg_e2e::shared_cluster;

const REGRESS: &[&str] = &[
    "setup",
    "tokens",
    "api_keys",
    "sessions",
    "permissions",
    "jwt",
    "privileges",
    "search_path",
];

const ISOLATION: &[&str] = &[
    "session_touch_revoke",
    "session_limit",
    "permission_changes",
];

/// Runs `runner` (a program of PostgreSQL's regression suite) on `tests` from `input` in a new
/// database made from `template`, and fails with the differences if any test's output differs
/// from its expected one.
fn run(runner: &str, input: &str, database: &str, template: &str, tests: &[&str]) {
    let cluster = shared_cluster();
    cluster.psql(
        "postgres",
        &format!("CREATE DATABASE {database} TEMPLATE {template}"),
    );

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let input = root.join(input);
    let output = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(runner);
    let _ = std::fs::remove_dir_all(&output);
    std::fs::create_dir_all(&output).expect("output directory");
    let pkglibdir = Command::new(auth_pg_e2e::cluster::pg_config())
        .arg("--pkglibdir")
        .output()
        .expect("pg_config");
    let pkglibdir = PathBuf::from(String::from_utf8(pkglibdir.stdout).expect("utf-8").trim());
    let program = match runner {
        "pg_regress" => pkglibdir.join("pgxs/src/test/regress/pg_regress"),
        _ => pkglibdir.join("pgxs/src/test/isolation").join(runner),
    };

    let status = Command::new(&program)
        .arg("--use-existing")
        .arg(format!("--host={}", cluster.socket_dir().display()))
        .arg(format!("--port={}", cluster.port()))
        .arg("--user=postgres")
        .arg(format!("--dbname={database}"))
        .arg(format!("--bindir={}", cluster.bindir().display()))
        .arg(format!("--inputdir={}", input.display()))
        .arg(format!("--outputdir={}", output.display()))
        .args(tests)
        .status()
        .unwrap_or_else(|err| panic!("run {}: {err}", program.display()));
    let diffs = std::fs::read_to_string(output.join("regression.diffs")).unwrap_or_default();
    assert!(
        status.success(),
        "{runner} failed (results in {}); differences:\n{diffs}",
        output.display()
    );
}

#[test]
fn golden_files_match() {
    // The first file installs the extension, as a user would.
    run(
        "pg_regress",
        "auth_pg/tests/pg_regress",
        "auth_pg_regress",
        "template0",
        REGRESS,
    );
}

#[test]
fn interleavings_of_sessions_match() {
    run(
        "pg_isolation_regress",
        "auth_pg/tests/isolation",
        "auth_pg_isolation",
        auth_pg_e2e::cluster::TEMPLATE_DB,
        ISOLATION,
    );
}
