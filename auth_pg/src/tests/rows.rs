//! `#[pg_test]`s for rows written by hand into the tables that hold credential hashes or JWT
//! key material: every NOT NULL column and every CHECK constraint refuses a bad row with an
//! error that does not print the row (PostgreSQL's own errors would, in DETAIL and the log).

#[pgrx::pg_schema]
mod tests {
    use std::collections::BTreeSet;

    use pgrx::prelude::*;
    use pgrx::{PgSqlErrorCode, Spi};

    use crate::tests::{RaisedError, error_of};

    const SECRET: &str = "rows-test-hmac-secret-that-must-never-be-printed";

    /// One row of each guarded table, written through auth_pg's functions: the table, a WHERE
    /// clause that picks that row alone (pg_tests run side by side), and what its error must
    /// never show.
    fn fixtures() -> Vec<(&'static str, String, String)> {
        Spi::run(&format!(
            "SELECT auth_pg.issue_token('rows-user', '1 hour');
             SELECT auth_pg.create_session('rows-user', '1 hour', '2 hours');
             SELECT auth_pg.create_organization('rows-org', 'Rows');
             SELECT auth_pg.create_api_key('rows-org', 'rows key');
             SELECT auth_pg.add_jwt_key('rows-kid', 'HS256', '{SECRET}');"
        ))
        .expect("fixtures");
        let hex = |sql: &str| {
            // The first bytes of the hash, as PostgreSQL would print them (\x...).
            Spi::get_one::<String>(sql)
                .expect("read")
                .map(|hex| hex[..16].to_owned())
                .expect("a hash")
        };
        vec![
            (
                "tokens",
                "user_id = 'rows-user'".to_owned(),
                hex(
                    "SELECT encode(token_hash, 'hex') FROM auth_pg.tokens WHERE user_id = 'rows-user'",
                ),
            ),
            (
                "sessions",
                "user_id = 'rows-user'".to_owned(),
                hex(
                    "SELECT encode(session_hash, 'hex') FROM auth_pg.sessions WHERE user_id = 'rows-user'",
                ),
            ),
            (
                "api_key_lookup",
                "org_id = 'rows-org'".to_owned(),
                hex(
                    "SELECT encode(key_hash, 'hex') FROM auth_pg.api_key_lookup WHERE org_id = 'rows-org'",
                ),
            ),
            (
                "organizations",
                "org_id = 'rows-org'".to_owned(),
                hex(
                    "SELECT api_keys->0->>'hash' FROM auth_pg.organizations WHERE org_id = 'rows-org'",
                ),
            ),
            ("jwt_keys", "kid = 'rows-kid'".to_owned(), SECRET.to_owned()),
        ]
    }

    /// Asserts that `error` shows neither the row nor `secret`.
    fn assert_row_not_shown(error: &RaisedError, secret: &str, what: &str) {
        assert_eq!(error.detail, None, "{what}: {error:?}");
        assert!(error.hint.is_some(), "{what}: {error:?}");
        assert!(!error.message.contains(secret), "{what}: {error:?}");
    }

    #[pg_test]
    fn a_null_in_any_not_null_column_is_refused_without_the_row() {
        for (table, row, secret) in fixtures() {
            let columns = Spi::connect(|client| {
                client
                    .select(
                        "SELECT attname::text FROM pg_attribute \
                         WHERE attrelid = ('auth_pg.' || $1)::regclass AND attnum > 0 \
                           AND attnotnull AND NOT attisdropped AND attidentity = '' \
                         ORDER BY attnum",
                        None,
                        &[table.into()],
                    )?
                    .map(|column| column.get::<String>(1).map(Option::unwrap_or_default))
                    .collect::<Result<Vec<_>, _>>()
            })
            .expect("catalog");
            assert!(columns.len() >= 4, "{table}: {columns:?}");
            for column in columns {
                let what = format!("{table}.{column}");
                let error = error_of(&format!(
                    "UPDATE auth_pg.{table} SET {column} = NULL WHERE {row}"
                ))
                .unwrap_or_else(|| panic!("{what}: NULL accepted"));
                assert_eq!(
                    error.code,
                    PgSqlErrorCode::ERRCODE_NOT_NULL_VIOLATION,
                    "{what}: {error:?}"
                );
                assert!(error.message.contains(&column), "{what}: {error:?}");
                assert_row_not_shown(&error, &secret, &what);
            }
        }
    }

    #[pg_test]
    fn a_row_breaking_any_check_constraint_is_refused_without_the_row() {
        use PgSqlErrorCode::*;
        let fixtures = fixtures();
        // One edit breaking each CHECK constraint, and the SQLSTATE it gets: the constraint's
        // for the credential tables; add_jwt_key's errors for the key table, whose trigger
        // checks a key written by hand as add_jwt_key checks its arguments.
        let cases = [
            (
                "tokens",
                "tokens_hash_is_blake3",
                "token_hash = '\\x00'",
                ERRCODE_CHECK_VIOLATION,
            ),
            (
                "tokens",
                "tokens_user_id_not_empty",
                "user_id = ''",
                ERRCODE_CHECK_VIOLATION,
            ),
            (
                "sessions",
                "sessions_hash_is_blake3",
                "session_hash = ''",
                ERRCODE_CHECK_VIOLATION,
            ),
            (
                "sessions",
                "sessions_user_id_not_empty",
                "user_id = ''",
                ERRCODE_CHECK_VIOLATION,
            ),
            (
                "sessions",
                "sessions_idle_within_absolute",
                "idle_expires_at = absolute_expires_at + interval '1 second'",
                ERRCODE_CHECK_VIOLATION,
            ),
            (
                "api_key_lookup",
                "api_key_lookup_hash_is_blake3",
                "key_hash = key_hash || key_hash",
                ERRCODE_CHECK_VIOLATION,
            ),
            (
                "organizations",
                "organizations_org_id_not_empty",
                "org_id = ''",
                ERRCODE_CHECK_VIOLATION,
            ),
            (
                "jwt_keys",
                "jwt_keys_kid_length",
                "kid = ''",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "jwt_keys",
                "jwt_keys_kid_length",
                "kid = repeat('k', 257)",
                ERRCODE_STRING_DATA_RIGHT_TRUNCATION,
            ),
            (
                "jwt_keys",
                "jwt_keys_algorithm_known",
                "algorithm = 'HS999'",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "jwt_keys",
                "jwt_keys_window",
                "not_before = now(), not_after = now() - interval '1 hour'",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
        ];
        // Every CHECK constraint of these tables has its case: a constraint added without one
        // fails here.
        let constraints: BTreeSet<String> = Spi::connect(|client| {
            client
                .select(
                    "SELECT conname::text FROM pg_constraint \
                     WHERE contype = 'c' AND conrelid = ANY (ARRAY['auth_pg.tokens', \
                       'auth_pg.sessions', 'auth_pg.api_key_lookup', 'auth_pg.organizations', \
                       'auth_pg.jwt_keys']::regclass[])",
                    None,
                    &[],
                )?
                .map(|name| name.get::<String>(1).map(Option::unwrap_or_default))
                .collect::<Result<BTreeSet<_>, _>>()
        })
        .expect("catalog");
        let covered: BTreeSet<String> = cases.iter().map(|case| case.1.to_owned()).collect();
        assert_eq!(constraints, covered);

        for (table, constraint, edit, expected) in cases {
            let (_, row, secret) = fixtures
                .iter()
                .find(|fixture| fixture.0 == table)
                .expect("a fixture of each table");
            let error = error_of(&format!("UPDATE auth_pg.{table} SET {edit} WHERE {row}"))
                .unwrap_or_else(|| panic!("{edit}: accepted"));
            assert_eq!(error.code, expected, "{edit}: {error:?}");
            if expected == ERRCODE_CHECK_VIOLATION {
                assert!(error.message.contains(constraint), "{edit}: {error:?}");
            }
            assert_row_not_shown(&error, secret, edit);
        }
    }

    #[pg_test]
    fn every_row_check_fires_always() {
        // ENABLE ALWAYS: under session_replication_role = replica (logical replication's
        // apply) too.
        let triggers = Spi::connect(|client| {
            client
                .select(
                    "SELECT tgrelid::regclass::text || '.' || tgname::text || ' ' || tgenabled::text \
                     FROM pg_trigger \
                     WHERE tgfoid IN ('auth_pg.check_row'::regproc, 'auth_pg.check_jwt_key'::regproc) \
                     ORDER BY 1",
                    None,
                    &[],
                )?
                .map(|row| row.get::<String>(1).map(Option::unwrap_or_default))
                .collect::<Result<Vec<_>, _>>()
        })
        .expect("catalog");
        assert_eq!(
            triggers,
            [
                "auth_pg.api_key_lookup.api_key_lookup_check_row A",
                "auth_pg.jwt_keys.jwt_keys_check A",
                "auth_pg.organizations.organizations_check_row A",
                "auth_pg.sessions.sessions_check_row A",
                "auth_pg.tokens.tokens_check_row A",
            ]
        );
    }

    #[pg_test]
    fn an_inserted_row_and_a_replica_apply_are_checked_too() {
        let fixtures = fixtures();
        let secret = &fixtures[0].2;
        // An INSERT (the trigger reads the row from another place than for an UPDATE).
        let error = error_of(
            "INSERT INTO auth_pg.tokens (token_hash, user_id, expires_at) \
             SELECT token_hash, 'rows-user', NULL FROM auth_pg.tokens WHERE user_id = 'rows-user'",
        )
        .expect("refused");
        assert_eq!(error.code, PgSqlErrorCode::ERRCODE_NOT_NULL_VIOLATION);
        assert_row_not_shown(&error, secret, "insert");
        // Logical replication applies changes with session_replication_role = replica, which
        // silences ordinary triggers; the row checks fire ALWAYS.
        Spi::run("SET LOCAL session_replication_role = replica").expect("replica");
        let error = error_of("UPDATE auth_pg.tokens SET user_id = '' WHERE user_id = 'rows-user'")
            .expect("refused");
        Spi::run("SET LOCAL session_replication_role = origin").expect("origin");
        assert_eq!(error.code, PgSqlErrorCode::ERRCODE_CHECK_VIOLATION);
        assert_row_not_shown(&error, secret, "replica");
    }
}
