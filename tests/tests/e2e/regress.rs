//! SQL-level regression tests: pg_regress runs the golden files in
//! `auth_pg/tests/pg_regress` (the same files `cargo pgrx regress` reads) against the shared
//! cluster, showing the product as psql users see it.

use std::path::PathBuf;
use std::process::Command;

use auth_pg_e2e::shared_cluster;

const TESTS: &[&str] = &[
    "setup",
    "tokens",
    "api_keys",
    "sessions",
    "privileges",
    "search_path",
];

#[test]
fn golden_files_match() {
    let cluster = shared_cluster();
    let database = "auth_pg_regress";
    cluster.psql("postgres", &format!("CREATE DATABASE {database}"));

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let input = root.join("auth_pg/tests/pg_regress");
    let output = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pg_regress");
    let _ = std::fs::remove_dir_all(&output);
    std::fs::create_dir_all(&output).expect("output directory");
    let pkglibdir = Command::new(auth_pg_e2e::cluster::pg_config())
        .arg("--pkglibdir")
        .output()
        .expect("pg_config");
    let pkglibdir = String::from_utf8(pkglibdir.stdout).expect("utf-8");
    let pg_regress = PathBuf::from(pkglibdir.trim()).join("pgxs/src/test/regress/pg_regress");

    let status = Command::new(&pg_regress)
        .arg("--use-existing")
        .arg(format!("--host={}", cluster.socket_dir().display()))
        .arg(format!("--port={}", cluster.port()))
        .arg("--user=postgres")
        .arg(format!("--dbname={database}"))
        .arg(format!("--bindir={}", cluster.bindir().display()))
        .arg(format!("--inputdir={}", input.display()))
        .arg(format!("--outputdir={}", output.display()))
        .args(TESTS)
        .status()
        .expect("run pg_regress");
    let diffs = std::fs::read_to_string(output.join("regression.diffs")).unwrap_or_default();
    assert!(
        status.success(),
        "pg_regress failed (results in {}); differences:\n{diffs}",
        output.display()
    );
}
