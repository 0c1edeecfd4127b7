//! `#[pg_test]`s for sessions: every status and its boundaries, touching, the per-user limit,
//! cleanup, bad input, and the table layout the direct index reads rely on.
//!
//! Time is controlled through the data, not the clock: a test runs in one statement, so every
//! check in it is judged at the same instant, and moving a session's stored times relative to
//! that instant puts it anywhere in its life. The checks themselves are the real ones.

#[pgrx::pg_schema]
mod tests {
    use pgrx::datum::DatumWithOid;
    use pgrx::prelude::*;
    use pgrx::{PgSqlErrorCode, Spi};

    use crate::sessions::col;
    use crate::tests::sqlstate_of;

    fn create(user_id: &str) -> String {
        Spi::get_one_with_args::<String>(
            "SELECT auth_pg.create_session($1, '30 minutes', '12 hours', '{\"ip\": \"203.0.113.7\"}')",
            &[user_id.into()],
        )
        .expect("create_session")
        .expect("a session token")
    }

    fn status(function: &str, token: Option<&str>) -> String {
        let args: [DatumWithOid; 1] = [token.into()];
        Spi::get_one_with_args::<String>(&format!("SELECT (auth_pg.{function}($1)).status"), &args)
            .expect("check")
            .expect("a status")
    }

    /// The stored (last_activity_at, idle_expires_at), in seconds relative to the statement.
    fn stored(session_id: &str) -> (f64, f64) {
        Spi::get_two_with_args::<f64, f64>(
            "SELECT extract(epoch FROM last_activity_at - statement_timestamp())::float8, \
                    extract(epoch FROM idle_expires_at - statement_timestamp())::float8 \
             FROM auth_pg.sessions WHERE session_id = $1",
            &[session_id.into()],
        )
        .map(|(a, b)| (a.expect("set"), b.expect("set")))
        .expect("stored times")
    }

    fn session_id_of(token: &str) -> String {
        Spi::get_one_with_args::<String>(
            "SELECT (auth_pg.validate_session($1)).session_id",
            &[token.into()],
        )
        .expect("validate_session")
        .expect("a valid session")
    }

    /// Rewrites the session's stored times with `set` (an UPDATE's SET list, in terms of
    /// `statement_timestamp()`), moving it anywhere in its life.
    fn move_session(session_id: &str, set: &str) {
        Spi::run_with_args(
            &format!("UPDATE auth_pg.sessions SET {set} WHERE session_id = $1"),
            &[session_id.into()],
        )
        .expect("move the session in time");
    }

    fn hot_updates() -> i64 {
        Spi::get_one::<i64>(
            "SELECT pg_stat_get_xact_tuples_hot_updated('auth_pg.sessions'::regclass)",
        )
        .expect("stats")
        .expect("a count")
    }

    #[pg_test]
    fn a_session_is_valid_until_revoked() {
        let token = create("user-1");
        assert!(token.starts_with("apgs_"));
        let summary = Spi::get_one_with_args::<String>(
            "SELECT format('%s %s %s %s', v.user_id, \
                    extract(epoch FROM v.idle_expires_at - statement_timestamp()), \
                    extract(epoch FROM v.absolute_expires_at - statement_timestamp()), \
                    v.metadata->>'ip') \
             FROM auth_pg.validate_session($1) v WHERE v.status = 'valid'",
            &[token.as_str().into()],
        )
        .expect("validate_session");
        assert_eq!(
            summary.as_deref(),
            Some("user-1 1800.000000 43200.000000 203.0.113.7")
        );

        assert_eq!(
            Spi::get_one_with_args::<bool>(
                "SELECT auth_pg.revoke_session($1)",
                &[token.as_str().into()]
            ),
            Ok(Some(true))
        );
        assert_eq!(status("validate_session", Some(&token)), "revoked");
        assert_eq!(status("touch_session", Some(&token)), "revoked");
        assert_eq!(
            Spi::get_one_with_args::<bool>(
                "SELECT auth_pg.revoke_session($1)",
                &[token.as_str().into()]
            ),
            Ok(Some(false)),
            "a second revocation changes nothing"
        );
    }

    #[pg_test]
    fn statuses_follow_the_deadlines() {
        let token = create("user-2");
        let id = session_id_of(&token);
        let move_to = |set: &str| move_session(&id, set);
        move_to("idle_expires_at = statement_timestamp() + interval '1 second'");
        assert_eq!(status("validate_session", Some(&token)), "valid");
        move_to("idle_expires_at = statement_timestamp()");
        assert_eq!(status("validate_session", Some(&token)), "idle_expired");
        move_to(
            "absolute_expires_at = statement_timestamp(), idle_expires_at = statement_timestamp()",
        );
        assert_eq!(
            status("validate_session", Some(&token)),
            "absolute_expired",
            "the absolute deadline is reported first"
        );
        assert_eq!(status("touch_session", Some(&token)), "absolute_expired");

        let other = create("user-2");
        let answer_fields = Spi::get_one_with_args::<bool>(
            "SELECT v.user_id IS NULL AND v.session_id IS NULL AND v.metadata IS NULL \
             FROM auth_pg.validate_session($1) v",
            &[token.as_str().into()],
        );
        assert_eq!(
            answer_fields,
            Ok(Some(true)),
            "only valid answers carry details"
        );
        assert_eq!(status("validate_session", Some(&other)), "valid");
    }

    #[pg_test]
    fn touching_slides_the_idle_deadline_within_the_absolute_one() {
        let token = create("user-3");
        let id = session_id_of(&token);
        let move_to = |set: &str| move_session(&id, set);

        // One second before the idle deadline: valid, and the deadline moves to now + 30 min.
        move_to(
            "last_activity_at = statement_timestamp() - interval '29 minutes 59 seconds', \
             idle_expires_at = statement_timestamp() + interval '1 second'",
        );
        let hot_before = hot_updates();
        assert_eq!(status("touch_session", Some(&token)), "valid");
        assert_eq!(stored(&id), (0.0, 1800.0));
        assert_eq!(hot_updates(), hot_before + 1, "the touch was a HOT update");

        // One second after: idle_expired, and nothing is written.
        move_to(
            "last_activity_at = statement_timestamp() - interval '30 minutes 1 second', \
             idle_expires_at = statement_timestamp() - interval '1 second'",
        );
        assert_eq!(status("touch_session", Some(&token)), "idle_expired");
        assert_eq!(stored(&id), (-1801.0, -1.0));

        // A touch that would cross the absolute deadline stops at it.
        move_to(
            "last_activity_at = statement_timestamp() - interval '5 minutes', \
             idle_expires_at = statement_timestamp() + interval '1 minute', \
             absolute_expires_at = statement_timestamp() + interval '10 minutes'",
        );
        let idle_in = Spi::get_one_with_args::<f64>(
            "SELECT extract(epoch FROM idle_expires_at - statement_timestamp())::float8 \
             FROM auth_pg.touch_session($1)",
            &[token.as_str().into()],
        );
        assert_eq!(idle_in, Ok(Some(600.0)));
        assert_eq!(stored(&id), (0.0, 600.0));
    }

    #[pg_test]
    fn touching_writes_at_most_once_per_interval() {
        let token = create("user-4");
        let id = session_id_of(&token);
        Spi::run_with_args(
            "UPDATE auth_pg.sessions SET last_activity_at = statement_timestamp() - interval '59 seconds', \
                    idle_expires_at = statement_timestamp() + interval '29 minutes 1 second' \
             WHERE session_id = $1",
            &[id.as_str().into()],
        )
        .expect("move the session in time");
        // Within the default interval of 60 s: answered from the stored row, no write.
        let idle_in = Spi::get_one_with_args::<f64>(
            "SELECT extract(epoch FROM idle_expires_at - statement_timestamp())::float8 \
             FROM auth_pg.touch_session($1)",
            &[token.as_str().into()],
        );
        assert_eq!(idle_in, Ok(Some(1741.0)));
        assert_eq!(stored(&id), (-59.0, 1741.0));

        Spi::run("SET LOCAL auth_pg.session_touch_interval = '30s'").expect("SET");
        assert_eq!(status("touch_session", Some(&token)), "valid");
        assert_eq!(stored(&id), (0.0, 1800.0));
    }

    /// A session whose idle timeout is shorter than two touch intervals still slides: a touch
    /// writes once half of its idle window has passed, unless its idle deadline already sits
    /// at the absolute one, where a write would move nothing.
    #[pg_test]
    fn a_short_idle_timeout_slides_within_the_touch_interval() {
        let token = Spi::get_one::<String>(
            "SELECT auth_pg.create_session('user-short', '30 seconds', '1 hour')",
        )
        .expect("create_session")
        .expect("a token");
        let id = session_id_of(&token);
        // A third of the window gone: no write.
        move_session(
            &id,
            "last_activity_at = statement_timestamp() - interval '10 seconds', \
             idle_expires_at = statement_timestamp() + interval '20 seconds'",
        );
        assert_eq!(status("touch_session", Some(&token)), "valid");
        assert_eq!(stored(&id), (-10.0, 20.0));
        // Two thirds gone, well within the 60 s interval: written.
        move_session(
            &id,
            "last_activity_at = statement_timestamp() - interval '20 seconds', \
             idle_expires_at = statement_timestamp() + interval '10 seconds'",
        );
        assert_eq!(status("touch_session", Some(&token)), "valid");
        assert_eq!(stored(&id), (0.0, 30.0));
        // Capped at the absolute deadline: nothing to move, no write.
        move_session(
            &id,
            "last_activity_at = statement_timestamp() - interval '20 seconds', \
             idle_expires_at = statement_timestamp() + interval '10 seconds', \
             absolute_expires_at = statement_timestamp() + interval '10 seconds'",
        );
        assert_eq!(status("touch_session", Some(&token)), "valid");
        assert_eq!(stored(&id), (-20.0, 10.0));
    }

    /// A touch never moves the idle deadline earlier, whatever the idle timeout adds up to on
    /// the calendar; a session it answers valid for stays valid.
    #[pg_test]
    fn a_touch_never_moves_the_idle_deadline_earlier() {
        let token = create("user-calendar");
        let id = session_id_of(&token);
        // An idle timeout that lands before the last activity on this date (as '1 month
        // -29 days' does in February, or a day across a clock change in the other direction).
        move_session(
            &id,
            "idle_timeout = interval '-1 hour', \
             last_activity_at = statement_timestamp() - interval '2 minutes', \
             idle_expires_at = statement_timestamp() + interval '10 minutes'",
        );
        let answer = Spi::get_two_with_args::<String, f64>(
            "SELECT status, extract(epoch FROM idle_expires_at - statement_timestamp())::float8 \
             FROM auth_pg.touch_session($1)",
            &[token.as_str().into()],
        )
        .expect("touch");
        assert_eq!(answer, (Some("valid".into()), Some(600.0)));
        assert_eq!(stored(&id), (0.0, 600.0));
    }

    #[pg_test]
    fn the_limit_refuses_or_evicts_the_least_recently_active() {
        Spi::run("SET LOCAL auth_pg.max_sessions_per_user = 2").expect("SET");
        Spi::run("SET LOCAL auth_pg.session_limit_action = 'refuse'").expect("SET");
        let first = create("user-5");
        let second = create("user-5");
        assert_eq!(
            sqlstate_of("SELECT auth_pg.create_session('user-5', '1 hour', '2 hours')"),
            Some(PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED)
        );
        // Another user is not affected; a revoked or expired session does not count.
        create("user-6");
        Spi::run_with_args(
            "SELECT auth_pg.revoke_session($1)",
            &[second.as_str().into()],
        )
        .expect("revoke");
        let third = create("user-5");

        // Make `first` the least recently active, then evict.
        Spi::run_with_args(
            "UPDATE auth_pg.sessions SET last_activity_at = statement_timestamp() - interval '10 minutes' \
             WHERE session_id = $1",
            &[session_id_of(&first).as_str().into()],
        )
        .expect("age the first session");
        Spi::run("SET LOCAL auth_pg.session_limit_action = 'evict_oldest'").expect("SET");
        let fourth = create("user-5");
        assert_eq!(status("validate_session", Some(&first)), "revoked");
        assert_eq!(status("validate_session", Some(&third)), "valid");
        assert_eq!(status("validate_session", Some(&fourth)), "valid");
        assert_eq!(
            Spi::get_one::<i64>(
                "SELECT count(*) FROM auth_pg.audit_events WHERE action = 'session.evict'"
            ),
            Ok(Some(1))
        );
    }

    #[pg_test]
    fn revocation_by_id_and_by_user() {
        let a = create("user-7");
        let b = create("user-7");
        let c = create("user-8");
        let id = session_id_of(&a);
        assert_eq!(
            Spi::get_one_with_args::<bool>(
                "SELECT auth_pg.revoke_session_by_id($1)",
                &[id.as_str().into()]
            ),
            Ok(Some(true))
        );
        assert_eq!(
            Spi::get_one_with_args::<bool>(
                "SELECT auth_pg.revoke_session_by_id($1)",
                &[id.as_str().into()]
            ),
            Ok(Some(false))
        );
        assert_eq!(
            Spi::get_one::<bool>("SELECT auth_pg.revoke_session_by_id('ses_unknown')"),
            Ok(Some(false))
        );
        assert_eq!(
            Spi::get_one::<i64>("SELECT auth_pg.revoke_user_sessions('user-7')"),
            Ok(Some(1)),
            "only the one still in force"
        );
        assert_eq!(status("validate_session", Some(&b)), "revoked");
        assert_eq!(status("validate_session", Some(&c)), "valid");

        let listed = Spi::get_one::<String>(
            "SELECT string_agg(status, ',' ORDER BY status) FROM auth_pg.list_user_sessions('user-7')",
        );
        assert_eq!(listed, Ok(Some("revoked,revoked".into())));
        let columns = Spi::get_one::<String>(
            "SELECT string_agg(name, ',') FROM (SELECT unnest(proargnames) AS name FROM pg_proc \
             WHERE proname = 'list_user_sessions') n",
        );
        let columns = columns.expect("catalog").expect("names");
        assert!(
            !columns.contains("hash") && !columns.contains("token"),
            "{columns}"
        );
    }

    #[pg_test]
    fn cleanup_deletes_only_what_retention_lets_go() {
        Spi::run("SET LOCAL auth_pg.session_retention = '1h'").expect("SET");
        let live = create("user-9");
        let recent = create("user-9");
        let mut old = Vec::new();
        for _ in 0..5 {
            old.push(create("user-9"));
        }
        let ids = |tokens: &[String]| -> Vec<String> {
            tokens.iter().map(|t| session_id_of(t)).collect()
        };
        let old_ids = ids(&old);
        // Expired two hours ago: one past its absolute deadline, two idle, two revoked.
        for (i, id) in old_ids.iter().enumerate() {
            let set = match i {
                0 => {
                    "absolute_expires_at = statement_timestamp() - interval '2 hours', \
                      idle_expires_at = statement_timestamp() - interval '2 hours'"
                }
                1 | 2 => "idle_expires_at = statement_timestamp() - interval '2 hours'",
                _ => "revoked_at = statement_timestamp() - interval '2 hours'",
            };
            move_session(id, set);
        }
        // Expired ten minutes ago: kept for the retention period.
        move_session(
            &session_id_of(&recent),
            "idle_expires_at = statement_timestamp() - interval '10 minutes'",
        );

        assert_eq!(
            Spi::get_one::<i64>("SELECT auth_pg.cleanup_expired_sessions(2)"),
            Ok(Some(2)),
            "at most max_rows"
        );
        assert_eq!(
            Spi::get_one::<i64>("SELECT auth_pg.cleanup_expired_sessions()"),
            Ok(Some(3))
        );
        assert_eq!(
            Spi::get_one::<i64>("SELECT auth_pg.cleanup_expired_sessions()"),
            Ok(Some(0))
        );
        for token in &old {
            assert_eq!(status("validate_session", Some(token)), "unknown");
        }
        assert_eq!(status("validate_session", Some(&recent)), "idle_expired");
        assert_eq!(status("validate_session", Some(&live)), "valid");
    }

    #[pg_test]
    fn session_misuse_raises_specific_sqlstates() {
        use PgSqlErrorCode::*;
        let huge_user = format!(
            "SELECT auth_pg.create_session('{}', '1 hour', '2 hours')",
            "u".repeat(513)
        );
        let cases: [(&str, PgSqlErrorCode); 12] = [
            (
                "SELECT auth_pg.create_session(NULL, '1 hour', '2 hours')",
                ERRCODE_NULL_VALUE_NOT_ALLOWED,
            ),
            (
                "SELECT auth_pg.create_session('', '1 hour', '2 hours')",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (huge_user.as_str(), ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
            (
                "SELECT auth_pg.create_session('u', NULL, '2 hours')",
                ERRCODE_NULL_VALUE_NOT_ALLOWED,
            ),
            (
                "SELECT auth_pg.create_session('u', '0 seconds', '2 hours')",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.create_session('u', '1 hour', '-2 hours')",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.create_session('u', '3 hours', '2 hours')",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.create_session('u', '1 hour', '1000 years')",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.create_session('u', '1 hour', '2 hours', '\"a string\"')",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.revoke_session_by_id(NULL)",
                ERRCODE_NULL_VALUE_NOT_ALLOWED,
            ),
            (
                "SELECT auth_pg.cleanup_expired_sessions(0)",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.cleanup_expired_sessions(NULL)",
                ERRCODE_NULL_VALUE_NOT_ALLOWED,
            ),
        ];
        for (sql, expected) in cases {
            assert_eq!(sqlstate_of(sql), Some(expected), "{sql}");
        }
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM auth_pg.sessions"),
            Ok(Some(0)),
            "no failed call stored anything"
        );
        // Strings that are not session tokens are malformed, never an error.
        let token = create("u");
        let api_key_shaped = token.replacen("apgs_", "apgk_", 1);
        for candidate in [
            None,
            Some(""),
            Some("'; DROP TABLE auth_pg.sessions; --"),
            Some(api_key_shaped.as_str()),
        ] {
            assert_eq!(status("validate_session", candidate), "malformed");
            assert_eq!(status("touch_session", candidate), "malformed");
        }
        let huge = "apgs_".to_owned() + &"a".repeat(1 << 20);
        assert_eq!(status("validate_session", Some(&huge)), "malformed");
        assert_eq!(
            Spi::get_one_with_args::<bool>(
                "SELECT auth_pg.revoke_session($1)",
                &[huge.as_str().into()]
            ),
            Ok(Some(false))
        );
    }

    /// Intervals whose parts have mixed signs are ordinary PostgreSQL intervals: judged by their
    /// length, never an internal error.
    #[pg_test]
    fn mixed_sign_intervals_are_judged_by_length() {
        let created = Spi::get_one::<bool>(
            "SELECT auth_pg.create_session('u', '1 month -1 day', '2 months -1 day') IS NOT NULL",
        );
        assert_eq!(created, Ok(Some(true)));
        let issued =
            Spi::get_one::<bool>("SELECT auth_pg.issue_token('u', '1 month -1 day') IS NOT NULL");
        assert_eq!(issued, Ok(Some(true)));
        assert_eq!(
            sqlstate_of("SELECT auth_pg.create_session('u', '-1 month 31 days', '1 hour')"),
            Some(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE)
        );
    }

    #[pg_test]
    fn session_columns_match_the_catalog() {
        let expected = [
            (col::SESSION_ID, "session_id"),
            (col::SESSION_HASH, "session_hash"),
            (col::USER_ID, "user_id"),
            (col::METADATA, "metadata"),
            (col::IDLE_TIMEOUT, "idle_timeout"),
            (col::CREATED_AT, "created_at"),
            (col::LAST_ACTIVITY_AT, "last_activity_at"),
            (col::IDLE_EXPIRES_AT, "idle_expires_at"),
            (col::ABSOLUTE_EXPIRES_AT, "absolute_expires_at"),
            (col::REVOKED_AT, "revoked_at"),
        ];
        crate::tests::assert_columns("sessions", &expected);
    }
}
