//! `#[pg_test]`s for organizations and API keys: every status, rotation, the document and its
//! lookup rows staying equal, hand edits, bad input, and the table layout the direct reads use.

#[pgrx::pg_schema]
mod tests {
    use auth_core::{Credential, CredentialKind};
    use pgrx::datum::DatumWithOid;
    use pgrx::prelude::*;
    use pgrx::{PgSqlErrorCode, Spi};

    use crate::api_keys::col;
    use crate::tests::{error_of, sqlstate_of};

    fn create_org(org_id: &str) {
        Spi::run_with_args(
            "SELECT auth_pg.create_organization($1, 'Org ' || $1)",
            &[org_id.into()],
        )
        .expect("create_organization");
    }

    /// Creates a key and returns (key, key_id).
    fn create_key(org_id: &str, name: &str) -> (String, String) {
        let (key, key_id) = Spi::get_two_with_args::<String, String>(
            "SELECT key, key_id FROM auth_pg.create_api_key($1, $2, '{read}', NULL, '{\"env\": \"test\"}')",
            &[org_id.into(), name.into()],
        )
        .expect("create_api_key");
        (key.expect("key"), key_id.expect("id"))
    }

    fn status(key: Option<&str>) -> String {
        let args: [DatumWithOid; 1] = [key.into()];
        Spi::get_one_with_args::<String>("SELECT status FROM auth_pg.validate_api_key($1)", &args)
            .expect("validate_api_key")
            .expect("a status")
    }

    /// The document's keys and the lookup rows agree: same ids, positions, hashes, times.
    fn assert_in_step(org_id: &str) {
        let disagreements = Spi::get_one_with_args::<i64>(
            "SELECT count(*) FROM (
                 SELECT e.value->>'id' AS id, (e.ordinality - 1)::int AS position,
                        e.value->>'hash' AS hash, (e.value->>'revoked_at')::timestamptz AS revoked_at,
                        (e.value->>'expires_at')::timestamptz AS expires_at
                 FROM auth_pg.organizations o, jsonb_array_elements(o.api_keys) WITH ORDINALITY e
                 WHERE o.org_id = $1
             ) d FULL JOIN (
                 SELECT key_id AS id, position, encode(key_hash, 'hex') AS hash, revoked_at, expires_at
                 FROM auth_pg.api_key_lookup WHERE org_id = $1
             ) l USING (id)
             WHERE d.position IS DISTINCT FROM l.position OR d.hash IS DISTINCT FROM l.hash
                OR d.revoked_at IS DISTINCT FROM l.revoked_at OR d.expires_at IS DISTINCT FROM l.expires_at",
            &[org_id.into()],
        )
        .expect("compare");
        assert_eq!(
            disagreements,
            Some(0),
            "document and lookup rows of {org_id} disagree"
        );
    }

    #[pg_test]
    fn a_key_is_valid_until_revoked() {
        create_org("acme");
        let (key, key_id) = create_key("acme", "CI");
        assert!(key.starts_with("apgk_"));
        let row = Spi::get_three_with_args::<String, String, String>(
            "SELECT status, org_id, key_id FROM auth_pg.validate_api_key($1)",
            &[key.as_str().into()],
        )
        .expect("validate");
        assert_eq!(
            row,
            (
                Some("valid".into()),
                Some("acme".into()),
                Some(key_id.clone())
            )
        );
        assert_in_step("acme");

        let revoke = "SELECT auth_pg.revoke_api_key('acme', $1)";
        let args: [DatumWithOid; 1] = [key_id.as_str().into()];
        assert_eq!(
            Spi::get_one_with_args::<bool>(revoke, &args).expect("revoke"),
            Some(true)
        );
        assert_eq!(
            Spi::get_one_with_args::<bool>(revoke, &args).expect("revoke"),
            Some(false)
        );
        assert_eq!(status(Some(&key)), "revoked");
        assert_in_step("acme");
        assert_eq!(
            Spi::get_one::<bool>("SELECT auth_pg.revoke_api_key('nobody', 'key_x')")
                .expect("revoke"),
            Some(false)
        );
    }

    #[pg_test]
    fn rotation_keeps_the_old_key_for_its_grace_period_only() {
        create_org("acme");
        let (old_key, old_id) = create_key("acme", "CI");
        let (new_key, new_id) = Spi::get_two_with_args::<String, String>(
            "SELECT key, key_id FROM auth_pg.rotate_api_key('acme', $1, '1 hour')",
            &[old_id.as_str().into()],
        )
        .expect("rotate");
        let (new_key, new_id) = (new_key.expect("key"), new_id.expect("id"));
        assert_ne!(new_id, old_id);
        assert_eq!(status(Some(&old_key)), "valid");
        assert_eq!(status(Some(&new_key)), "valid");
        // The new key inherits name, scopes and metadata.
        let inherited = Spi::get_one_with_args::<String>(
            "SELECT name || ' ' || scopes::text || ' ' || metadata::text FROM auth_pg.validate_api_key($1)",
            &[new_key.as_str().into()],
        )
        .expect("validate");
        assert_eq!(inherited.as_deref(), Some("CI {read} {\"env\": \"test\"}"));
        assert_in_step("acme");
        // The old key names its replacement, and is rotated once: a second rotation (a retry,
        // say) would give the replacement the first one's grace end as its expiry.
        let replaced_by = Spi::get_one_with_args::<String>(
            "SELECT e->>'replaced_by' FROM auth_pg.organizations, jsonb_array_elements(api_keys) e \
             WHERE org_id = 'acme' AND e->>'id' = $1",
            &[old_id.as_str().into()],
        )
        .expect("read");
        assert_eq!(replaced_by.as_deref(), Some(new_id.as_str()));
        let again = error_of(&format!(
            "SELECT auth_pg.rotate_api_key('acme', '{old_id}', '1 hour')"
        ))
        .expect("refused");
        assert_eq!(again.code, ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE);
        assert!(
            again.message.contains("rotated already"),
            "{}",
            again.message
        );
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM auth_pg.api_key_lookup").expect("count"),
            Some(2),
            "no key was added"
        );

        // A zero grace ends the new key's predecessor now.
        Spi::run_with_args(
            "SELECT auth_pg.rotate_api_key('acme', $1, '0 seconds')",
            &[new_id.as_str().into()],
        )
        .expect("rotate");
        assert_eq!(status(Some(&new_key)), "expired");
        assert_eq!(status(Some(&old_key)), "valid");
        assert_in_step("acme");

        use PgSqlErrorCode::*;
        Spi::run_with_args(
            "SELECT auth_pg.revoke_api_key('acme', $1)",
            &[old_id.as_str().into()],
        )
        .expect("revoke");
        let rotate_revoked = format!("SELECT auth_pg.rotate_api_key('acme', '{old_id}', '1 hour')");
        assert_eq!(
            sqlstate_of(&rotate_revoked),
            Some(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE)
        );
        let rotate_expired = format!("SELECT auth_pg.rotate_api_key('acme', '{new_id}', '1 hour')");
        assert_eq!(
            sqlstate_of(&rotate_expired),
            Some(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE)
        );
        let negative = format!("SELECT auth_pg.rotate_api_key('acme', '{new_id}', '-1 hour')");
        assert_eq!(
            sqlstate_of(&negative),
            Some(ERRCODE_INVALID_PARAMETER_VALUE)
        );
        assert_eq!(
            sqlstate_of("SELECT auth_pg.rotate_api_key('acme', 'key_nope', '1 hour')"),
            Some(ERRCODE_NO_DATA_FOUND)
        );
        // A grace period past the last representable time: an ERROR that names the argument,
        // and the key is left as it was.
        let endless =
            format!("SELECT auth_pg.rotate_api_key('acme', '{new_id}', '178000000 years')");
        let error = error_of(&endless).expect("an endless grace period is refused");
        assert_eq!(error.code, ERRCODE_DATETIME_FIELD_OVERFLOW);
        assert_eq!(error.message, "grace reaches past the range of timestamps");
        assert!(error.hint.is_some());
        assert_in_step("acme");
    }

    /// Setting a key's fields in its document: the organization's updated_at is the change's
    /// time, never the value written (a grace end in the future); a replaced_by written as
    /// null by an application does not count as a rotation; and a key whose position lies past
    /// the end of a document shortened behind the trigger's back is an out-of-step error that
    /// leaves the document as it was. (Triggers are skipped with session_replication_role, not
    /// disabled with ALTER TABLE, whose table lock would deadlock with the tests that run
    /// beside this one.)
    #[pg_test]
    fn document_fields_are_set_safely() {
        use PgSqlErrorCode::*;
        create_org("docfields");
        let (_, first_id) = create_key("docfields", "one");
        let (_, second_id) = create_key("docfields", "two");
        Spi::run_with_args(
            "SELECT auth_pg.rotate_api_key('docfields', $1, '30 days')",
            &[first_id.as_str().into()],
        )
        .expect("rotate");
        let updated_now = Spi::get_one::<bool>(
            "SELECT updated_at = statement_timestamp() FROM auth_pg.organizations \
             WHERE org_id = 'docfields'",
        );
        assert_eq!(updated_now, Ok(Some(true)));

        Spi::run(
            "UPDATE auth_pg.organizations \
             SET api_keys = jsonb_set(api_keys, '{1,replaced_by}', 'null') WHERE org_id = 'docfields'",
        )
        .expect("hand edit");
        Spi::run_with_args(
            "SELECT auth_pg.rotate_api_key('docfields', $1, '1 hour')",
            &[second_id.as_str().into()],
        )
        .expect("a null replaced_by is no rotation");
        assert_in_step("docfields");

        let last_id = Spi::get_one::<String>(
            "SELECT api_keys->-1->>'id' FROM auth_pg.organizations WHERE org_id = 'docfields'",
        )
        .expect("read")
        .expect("an id");
        let shortened = error_of(&format!(
            "SET LOCAL session_replication_role = replica; \
             UPDATE auth_pg.organizations SET api_keys = api_keys - (-1) WHERE org_id = 'docfields'; \
             SELECT auth_pg.revoke_api_key('docfields', '{last_id}')"
        ))
        .expect("refused");
        assert_eq!(shortened.code, ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE);
        assert!(shortened.hint.is_some());
        assert_in_step("docfields");
    }

    #[pg_test]
    fn strings_that_are_not_api_keys_are_malformed() {
        create_org("acme");
        let (key, _) = create_key("acme", "CI");
        let token = Credential::generate(CredentialKind::Token).expect("random");
        let huge = "k".repeat(1 << 20);
        for candidate in [
            None,
            Some(""),
            Some(huge.as_str()),
            Some("'; DELETE FROM auth_pg.organizations; --"),
            Some(token.expose_secret()),
            Some(&key[..key.len() - 1]),
        ] {
            assert_eq!(status(candidate), "malformed");
        }
        let stranger = Credential::generate(CredentialKind::ApiKey).expect("random");
        assert_eq!(status(Some(stranger.expose_secret())), "unknown");
        assert_eq!(status(Some(&key)), "valid");
    }

    #[pg_test]
    fn lists_show_everything_but_secrets() {
        create_org("acme");
        let (key, key_id) = create_key("acme", "CI");
        let listed = Spi::get_one_with_args::<String>(
            "SELECT string_agg(l::text, ' ') FROM auth_pg.list_api_keys('acme') l",
            &[],
        )
        .expect("list")
        .expect("a row");
        assert!(listed.contains(&key_id));
        assert!(listed.contains(&key[..12]), "the display prefix is listed");
        assert!(!listed.contains(&key[12..]), "{listed}");
        let hash =
            Spi::get_one::<String>("SELECT encode(key_hash, 'hex') FROM auth_pg.api_key_lookup")
                .expect("hash")
                .expect("a hash");
        assert!(!listed.contains(&hash));
        assert_eq!(
            sqlstate_of("SELECT * FROM auth_pg.list_api_keys('nobody')"),
            Some(PgSqlErrorCode::ERRCODE_NO_DATA_FOUND)
        );
    }

    #[pg_test]
    fn hand_edits_are_checked_and_followed() {
        create_org("acme");
        let (first, _) = create_key("acme", "one");
        let (second, _) = create_key("acme", "two");
        // Removing the first element by hand: the second key moves to position 0, and only it
        // remains valid.
        Spi::run("UPDATE auth_pg.organizations SET api_keys = api_keys - 0 WHERE org_id = 'acme'")
            .expect("edit");
        assert_eq!(status(Some(&first)), "unknown");
        assert_eq!(status(Some(&second)), "valid");
        assert_in_step("acme");

        use PgSqlErrorCode::*;
        let cases = [
            (
                "UPDATE auth_pg.organizations SET api_keys = '{}'",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "UPDATE auth_pg.organizations SET api_keys = '[42]'",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "UPDATE auth_pg.organizations SET api_keys = '[{\"id\": \"k\"}]'",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "UPDATE auth_pg.organizations SET api_keys = api_keys || api_keys",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "UPDATE auth_pg.organizations SET api_keys = jsonb_set(api_keys, '{0,created_at}', '\"not a time\"')",
                ERRCODE_INVALID_DATETIME_FORMAT,
            ),
            // Deeper than auth_pg reads JSON (a panic, XX000, before auth_pg read jsonb itself).
            (
                "UPDATE auth_pg.organizations \
                 SET api_keys = (repeat('[', 200) || repeat(']', 200))::jsonb",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
        ];
        for (sql, expected) in cases {
            assert_eq!(sqlstate_of(sql), Some(expected), "{sql}");
        }
        // The errors name what is wrong, never the document's contents.
        let hash = Spi::get_one::<String>(
            "SELECT api_keys->0->>'hash' FROM auth_pg.organizations WHERE org_id = 'acme'",
        )
        .expect("read")
        .expect("a hash");
        for (edit, expected) in [
            ("api_keys = api_keys->0", ERRCODE_INVALID_PARAMETER_VALUE),
            ("org_id = ''", ERRCODE_CHECK_VIOLATION),
            ("name = NULL", ERRCODE_NOT_NULL_VIOLATION),
            ("api_keys = NULL", ERRCODE_NOT_NULL_VIOLATION),
        ] {
            let error =
                error_of(&format!("UPDATE auth_pg.organizations SET {edit}")).expect("refused");
            assert_eq!(error.code, expected, "{edit}");
            assert!(error.hint.is_some(), "{edit}");
            let shown = format!("{} {}", error.message, error.detail.unwrap_or_default());
            assert!(!shown.contains(&hash[..8]), "{edit}: {shown}");
        }
        // A key copied into another organization's document is refused: a key is found by
        // its hash alone, so it belongs to one organization.
        create_org("globex");
        let error = error_of(
            "UPDATE auth_pg.organizations \
             SET api_keys = (SELECT api_keys FROM auth_pg.organizations WHERE org_id = 'acme') \
             WHERE org_id = 'globex'",
        )
        .expect("refused");
        assert_eq!(error.code, ERRCODE_UNIQUE_VIOLATION);
        assert!(error.hint.is_some());
        assert!(!error.message.contains(&hash[..8]), "{}", error.message);
        // Nothing stored was lost.
        assert_eq!(status(Some(&second)), "valid");
        assert_in_step("acme");
        assert_in_step("globex");

        // Deleting the organization by hand removes its keys.
        Spi::run("DELETE FROM auth_pg.organizations WHERE org_id = 'acme'").expect("delete");
        assert_eq!(status(Some(&second)), "unknown");
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM auth_pg.api_key_lookup").expect("count"),
            Some(0)
        );
    }

    /// Metadata nests at most 64 levels, so that the document holding it stays readable: an
    /// organization can always be rewritten, by a later change, by hand or by a restore.
    #[pg_test]
    fn deep_metadata_is_refused_so_documents_stay_rewritable() {
        create_org("acme");
        let deep = |levels: usize| format!("{}1{}", "{\"a\": ".repeat(levels), "}".repeat(levels));
        let error = error_of(&format!(
            "SELECT auth_pg.create_api_key('acme', 'deep', '{{}}', NULL, '{}')",
            deep(126)
        ))
        .expect("refused");
        assert_eq!(error.code, PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED);
        assert!(error.message.contains("metadata"), "{}", error.message);
        assert!(error.hint.is_some());
        Spi::run(&format!(
            "SELECT auth_pg.create_api_key('acme', 'deepest', '{{}}', NULL, '{}')",
            deep(64)
        ))
        .expect("64 levels are taken");
        Spi::run("UPDATE auth_pg.organizations SET api_keys = api_keys WHERE org_id = 'acme'")
            .expect("the document can be rewritten");
        assert_in_step("acme");
        for function in [
            "auth_pg.issue_token('u', '1 hour', '{}'",
            "auth_pg.create_session('u', '1 hour', '2 hours'",
        ] {
            let sql = format!("SELECT {function}, '{}')", deep(65));
            assert_eq!(
                sqlstate_of(&sql),
                Some(PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED),
                "{function}"
            );
        }
    }

    #[pg_test]
    fn api_key_misuse_raises_specific_sqlstates() {
        use PgSqlErrorCode::*;
        create_org("acme");
        let cases: [(&str, PgSqlErrorCode); 10] = [
            (
                "SELECT auth_pg.create_organization('acme', 'again')",
                ERRCODE_UNIQUE_VIOLATION,
            ),
            (
                "SELECT auth_pg.create_organization(NULL, 'x')",
                ERRCODE_NULL_VALUE_NOT_ALLOWED,
            ),
            (
                "SELECT auth_pg.create_organization('', 'x')",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.create_organization('x', '')",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.create_api_key('nobody', 'CI')",
                ERRCODE_NO_DATA_FOUND,
            ),
            (
                "SELECT auth_pg.create_api_key('acme', NULL)",
                ERRCODE_NULL_VALUE_NOT_ALLOWED,
            ),
            (
                "SELECT auth_pg.create_api_key('acme', 'CI', '{}', now() - interval '1 day')",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.create_api_key('acme', 'CI', '{\"a b\"}')",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.create_api_key('acme', 'CI', '{}', NULL, '[]')",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.rotate_api_key('acme', 'key_x', NULL)",
                ERRCODE_NULL_VALUE_NOT_ALLOWED,
            ),
        ];
        for (sql, expected) in cases {
            assert_eq!(sqlstate_of(sql), Some(expected), "{sql}");
        }
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM auth_pg.api_key_lookup").expect("count"),
            Some(0)
        );
    }

    #[pg_test]
    fn last_use_is_flushed_at_most_once_a_minute() {
        create_org("acme");
        let (key, _) = create_key("acme", "CI");
        assert_eq!(status(Some(&key)), "valid");
        assert_eq!(status(Some(&key)), "valid");
        // A flush that cannot run (in a read-only transaction), that fails (here a trigger
        // raises) or that is rolled back after it ran loses nothing: the next one writes the
        // use.
        let refused =
            error_of("SET LOCAL transaction_read_only = on; SELECT auth_pg.flush_api_key_usage()")
                .expect("refused");
        assert_eq!(
            refused.code,
            PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION
        );
        let failed = error_of(
            "CREATE FUNCTION public.flush_fails() RETURNS trigger LANGUAGE plpgsql \
                 AS $$BEGIN RAISE EXCEPTION 'flush fails'; END$$; \
             CREATE TRIGGER flush_fails BEFORE UPDATE ON auth_pg.api_key_lookup \
                 FOR EACH ROW EXECUTE FUNCTION public.flush_fails(); \
             SELECT auth_pg.flush_api_key_usage()",
        )
        .expect("failed");
        assert_eq!(failed.message, "flush fails");
        let rolled_back =
            error_of("SELECT auth_pg.flush_api_key_usage(); SELECT 1 / 0").expect("rolled back");
        assert_eq!(rolled_back.code, PgSqlErrorCode::ERRCODE_DIVISION_BY_ZERO);
        let flushed = Spi::get_one::<i64>("SELECT auth_pg.flush_api_key_usage()").expect("flush");
        assert_eq!(flushed, Some(1), "two uses within a minute are one write");
        assert_eq!(status(Some(&key)), "valid");
        let flushed = Spi::get_one::<i64>("SELECT auth_pg.flush_api_key_usage()").expect("flush");
        assert_eq!(
            flushed,
            Some(0),
            "a use within the minute after the last is not written"
        );
        let recorded = Spi::get_one::<bool>(
            "SELECT l.last_used_at IS NOT NULL
                    AND (o.api_keys->0->>'last_used_at')::timestamptz = l.last_used_at
             FROM auth_pg.api_key_lookup l JOIN auth_pg.organizations o USING (org_id)",
        )
        .expect("recorded");
        assert_eq!(recorded, Some(true));
        assert_in_step("acme");
    }

    #[pg_test]
    fn api_key_columns_match_the_catalog() {
        let expected = [
            (col::KEY_HASH, "key_hash"),
            (col::ORG_ID, "org_id"),
            (col::KEY_ID, "key_id"),
            (col::PREFIX, "prefix"),
            (col::NAME, "name"),
            (col::SCOPES, "scopes"),
            (col::METADATA, "metadata"),
            (col::CREATED_AT, "created_at"),
            (col::EXPIRES_AT, "expires_at"),
            (col::REVOKED_AT, "revoked_at"),
            (col::LAST_USED_AT, "last_used_at"),
            (col::POSITION, "position"),
        ];
        crate::tests::assert_columns("api_key_lookup", &expected);
    }
}
