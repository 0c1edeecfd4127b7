//! `#[pg_test]`s for tokens: every status, batches, bad input, the audit trail, and the table
//! layout the direct index reads rely on.

#[pgrx::pg_schema]
mod tests {
    use auth_core::{Credential, CredentialKind};
    use pgrx::IntoDatum;
    use pgrx::datum::DatumWithOid;
    use pgrx::prelude::*;
    use pgrx::{PgSqlErrorCode, Spi};

    use crate::tests::sqlstate_of;
    use crate::tokens::col;

    fn issue(user_id: &str, ttl: &str) -> String {
        Spi::get_one_with_args::<String>(
            "SELECT auth_pg.issue_token($1, $2::interval, '{read,write}', '{\"ip\": \"203.0.113.7\"}')",
            &[user_id.into(), ttl.into()],
        )
        .expect("issue_token")
        .expect("a token")
    }

    fn status(token: Option<&str>) -> String {
        let args: [DatumWithOid; 1] = [token.into()];
        Spi::get_one_with_args::<String>("SELECT status FROM auth_pg.validate_token($1)", &args)
            .expect("validate_token")
            .expect("a status")
    }

    #[pg_test]
    fn a_token_is_valid_until_revoked() {
        let token = issue("user-1", "1 hour");
        assert!(token.starts_with("apgt_"));
        let (answer, user_id, scopes): (Option<String>, Option<String>, Option<Vec<String>>) =
            Spi::get_three_with_args(
                "SELECT status, user_id, scopes FROM auth_pg.validate_token($1)",
                &[token.as_str().into()],
            )
            .expect("validate_token");
        assert_eq!(answer.as_deref(), Some("valid"));
        assert_eq!(user_id.as_deref(), Some("user-1"));
        assert_eq!(scopes, Some(vec!["read".to_string(), "write".to_string()]));

        let revoke = "SELECT auth_pg.revoke_token($1)";
        let args: [DatumWithOid; 1] = [token.as_str().into()];
        assert_eq!(
            Spi::get_one_with_args::<bool>(revoke, &args).expect("revoke"),
            Some(true)
        );
        assert_eq!(
            Spi::get_one_with_args::<bool>(revoke, &args).expect("revoke"),
            Some(false)
        );
        assert_eq!(status(Some(&token)), "revoked");
    }

    #[pg_test]
    fn only_valid_answers_carry_the_token_details() {
        let token = issue("user-2", "1 hour");
        Spi::run_with_args(
            "UPDATE auth_pg.tokens SET expires_at = now() - interval '1 second' WHERE user_id = $1",
            &["user-2".into()],
        )
        .expect("expire");
        let row: (Option<String>, Option<String>, Option<i64>) = Spi::get_three_with_args(
            "SELECT status, user_id, token_id FROM auth_pg.validate_token($1)",
            &[token.as_str().into()],
        )
        .expect("validate_token");
        assert_eq!(row, (Some("expired".into()), None, None));
    }

    #[pg_test]
    fn expiry_is_judged_at_the_statement_start() {
        let token = issue("user-3", "1 hour");
        Spi::run_with_args(
            "UPDATE auth_pg.tokens SET expires_at = statement_timestamp() + interval '1 hour' WHERE user_id = $1",
            &["user-3".into()],
        )
        .expect("move expiry");
        assert_eq!(status(Some(&token)), "valid");
        Spi::run_with_args(
            "UPDATE auth_pg.tokens SET expires_at = statement_timestamp() WHERE user_id = $1",
            &["user-3".into()],
        )
        .expect("move expiry");
        // Every SPI query here runs within one client statement, so statement_timestamp() is
        // the moment validate_token judges at: a token expiring exactly then is expired.
        assert_eq!(status(Some(&token)), "expired");
    }

    #[pg_test]
    fn strings_that_are_not_tokens_are_malformed() {
        let token = issue("user-4", "1 hour");
        let mut typo = token.clone().into_bytes();
        typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).expect("ascii");
        let api_key = Credential::generate(CredentialKind::ApiKey).expect("random");
        let huge = "x".repeat(1 << 20);
        for candidate in [
            None,
            Some(""),
            Some(huge.as_str()),
            Some("'; DROP TABLE auth_pg.tokens; --"),
            Some(typo.as_str()),
            Some(&token[..token.len() - 1]),
            Some(api_key.expose_secret()),
        ] {
            assert_eq!(
                status(candidate),
                "malformed",
                "{:?}",
                candidate.map(str::len)
            );
        }
        // A well-formed token that was never issued.
        let stranger = Credential::generate(CredentialKind::Token).expect("random");
        assert_eq!(status(Some(stranger.expose_secret())), "unknown");
        // Nothing was lost.
        assert_eq!(status(Some(&token)), "valid");
    }

    #[pg_test]
    fn batches_answer_in_order() {
        let first = issue("user-5", "1 hour");
        let second = issue("user-6", "1 hour");
        Spi::run_with_args("SELECT auth_pg.revoke_token($1)", &[second.as_str().into()])
            .expect("revoke");
        let answers: Vec<(i64, String)> = Spi::connect(|client| {
            client
                .select(
                    "SELECT ordinality, status FROM auth_pg.validate_tokens(ARRAY[$1, NULL, 'junk', $2, $1]) \
                     WITH ORDINALITY ORDER BY ordinality",
                    None,
                    &[first.as_str().into(), second.as_str().into()],
                )?
                .map(|row| Ok((row.get::<i64>(1)?.unwrap_or(0), row.get::<String>(2)?.unwrap_or_default())))
                .collect::<Result<Vec<_>, spi::SpiError>>()
        })
        .expect("validate_tokens");
        let statuses: Vec<&str> = answers.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(
            statuses,
            ["valid", "malformed", "malformed", "revoked", "valid"]
        );
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM auth_pg.validate_tokens(NULL)")
                .expect("count"),
            Some(0)
        );
    }

    #[pg_test]
    fn token_misuse_raises_specific_sqlstates() {
        use PgSqlErrorCode::*;
        let long_user = format!(
            "SELECT auth_pg.issue_token('{}', '1 hour')",
            "u".repeat(513)
        );
        let cases: [(&str, PgSqlErrorCode); 12] = [
            (
                "SELECT auth_pg.issue_token(NULL, '1 hour')",
                ERRCODE_NULL_VALUE_NOT_ALLOWED,
            ),
            (
                "SELECT auth_pg.issue_token('', '1 hour')",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (long_user.as_str(), ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
            (
                "SELECT auth_pg.issue_token(E'a\\nb', '1 hour')",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.issue_token('u', NULL)",
                ERRCODE_NULL_VALUE_NOT_ALLOWED,
            ),
            (
                "SELECT auth_pg.issue_token('u', '0 seconds')",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.issue_token('u', '-1 hour')",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.issue_token('u', '1000 years')",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.issue_token('u', '1 hour', '{\"\"}')",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.issue_token('u', '1 hour', '{a,NULL}')",
                ERRCODE_NULL_VALUE_NOT_ALLOWED,
            ),
            (
                "SELECT auth_pg.issue_token('u', '1 hour', '{}', '[1]')",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.validate_tokens(array_fill('x'::text, ARRAY[10001]))",
                ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            ),
        ];
        for (sql, expected) in cases {
            assert_eq!(sqlstate_of(sql), Some(expected), "{sql}");
        }
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM auth_pg.tokens").expect("count"),
            Some(0),
            "no failed call stored anything"
        );
    }

    /// A lifetime's limit holds where the lifetime lands on the calendar, not only by
    /// PostgreSQL's interval ordering, which counts a month as 30 days: '1 year' is 360 days
    /// there, but lands 365 or 366 days later.
    #[pg_test]
    fn lifetime_limits_hold_on_the_calendar() {
        Spi::run("SET LOCAL auth_pg.max_token_ttl = '360d'").expect("SET");
        Spi::run("SET LOCAL auth_pg.max_session_lifetime = '360d'").expect("SET");
        for sql in [
            "SELECT auth_pg.issue_token('u', '1 year')",
            "SELECT auth_pg.create_session('u', '1 hour', '1 year')",
        ] {
            let error = crate::tests::error_of(sql).expect("refused");
            assert_eq!(
                error.code,
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                "{sql}"
            );
            assert!(error.message.contains("360"), "{sql}: {}", error.message);
        }
        Spi::run("SELECT auth_pg.issue_token('u', '359 days')").expect("within the limit");
    }

    /// The batch limit counts the elements of an array of any shape, from its header, before
    /// anything is unpacked; an array at the limit is checked whole.
    #[pg_test]
    fn the_batch_limit_counts_every_element() {
        let error = crate::tests::error_of(
            "SELECT auth_pg.validate_tokens(array_fill('x'::text, ARRAY[101, 100]))",
        )
        .expect("refused");
        assert_eq!(error.code, PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED);
        assert!(
            error.message.contains("10100 elements"),
            "{}",
            error.message
        );
        assert!(error.hint.is_some());
        let checked = Spi::get_one::<i64>(
            "SELECT count(*) FILTER (WHERE status = 'malformed') \
             FROM auth_pg.validate_tokens(array_fill('x'::text, ARRAY[100, 100]))",
        );
        assert_eq!(checked, Ok(Some(10_000)));
    }

    #[pg_test]
    fn revocations_are_audited_without_secrets() {
        let token = issue("user-7", "1 hour");
        issue("user-7", "1 hour");
        Spi::run_with_args("SELECT auth_pg.revoke_token($1)", &[token.as_str().into()])
            .expect("revoke");
        let revoked =
            Spi::get_one::<i64>("SELECT auth_pg.revoke_user_tokens('user-7')").expect("revoke");
        assert_eq!(revoked, Some(1));
        let actions = Spi::get_one::<String>(
            "SELECT string_agg(action || ':' || coalesce(user_id, '') || ':' || detail::text, ' ' ORDER BY event_id) \
             FROM auth_pg.audit_events",
        )
        .expect("audit");
        assert_eq!(
            actions.as_deref(),
            Some("token.revoke:user-7:{} user_tokens.revoke:user-7:{\"revoked\": 1}")
        );
        let leaked = Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT FROM auth_pg.audit_events e WHERE e::text LIKE '%' || $1 || '%')",
            &[token[5..].into()],
        )
        .expect("search");
        assert_eq!(leaked, Some(false));
        assert_eq!(
            sqlstate_of("DELETE FROM auth_pg.audit_events"),
            Some(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE)
        );
    }

    #[pg_test]
    fn only_the_hash_is_stored() {
        let token = issue("user-8", "1 hour");
        let found = Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT FROM auth_pg.tokens t WHERE t::text LIKE '%' || $1 || '%')",
            &[token[5..].into()],
        )
        .expect("search");
        assert_eq!(found, Some(false));
        // Unkeyed here (no auth_pg.hash_key_file in the test cluster): the stored hash is BLAKE3.
        let hash = Spi::get_one::<Vec<u8>>("SELECT token_hash FROM auth_pg.tokens").expect("hash");
        assert_eq!(
            hash,
            Some(auth_core::credential_hash(None, token.as_bytes()).to_vec())
        );
    }

    #[pg_test]
    fn token_columns_match_the_catalog() {
        let expected = [
            (col::TOKEN_ID, "token_id"),
            (col::TOKEN_HASH, "token_hash"),
            (col::USER_ID, "user_id"),
            (col::SCOPES, "scopes"),
            (col::METADATA, "metadata"),
            (col::CREATED_AT, "created_at"),
            (col::EXPIRES_AT, "expires_at"),
            (col::REVOKED_AT, "revoked_at"),
        ];
        crate::tests::assert_columns("tokens", &expected);
    }

    /// A hash index keeps 32-bit codes: two tokens whose hashes share a code must not be taken
    /// for each other. Finds such a pair by the birthday bound (about 80 000 tokens), stores
    /// one, and checks the other.
    #[pg_test]
    fn a_hash_code_collision_is_not_a_match() {
        use std::collections::HashMap;

        let code = |hash: &[u8]| -> i32 {
            // SAFETY: hashvarlena takes one non-NULL bytea argument and returns an int4.
            unsafe {
                pgrx::direct_function_call::<i32>(pg_sys::hashvarlena, &[hash.into_datum()])
                    .expect("a hash code")
            }
        };
        let mut seen: HashMap<i32, String> = HashMap::new();
        let (stored, other) = loop {
            let token = Credential::generate(CredentialKind::Token)
                .expect("random")
                .into_secret();
            let hash = auth_core::credential_hash(None, token.as_bytes());
            if let Some(first) = seen.insert(code(&hash), token.clone()) {
                break (first, token);
            }
        };
        let stored_hash = auth_core::credential_hash(None, stored.as_bytes()).to_vec();
        Spi::run_with_args(
            "INSERT INTO auth_pg.tokens (token_hash, user_id, expires_at) \
             VALUES ($1, 'victim', now() + interval '1 hour')",
            &[stored_hash.into()],
        )
        .expect("store one token");
        assert_eq!(status(Some(&stored)), "valid");
        assert_eq!(
            status(Some(&other)),
            "unknown",
            "a colliding code is not a match"
        );
        let batch = Spi::get_one_with_args::<String>(
            "SELECT string_agg(status, ',') FROM auth_pg.validate_tokens(ARRAY[$1, $2])",
            &[other.as_str().into(), stored.as_str().into()],
        );
        assert_eq!(batch, Ok(Some("unknown,valid".into())));
    }
}
