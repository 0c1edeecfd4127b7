//! `#[pg_test]`s for the packed answers: each `*_packed` function says exactly what its
//! row-returning sibling says, field for field, in the layout of `packed.rs`; the layout's field
//! types are those of the row types.

#[pgrx::pg_schema]
mod tests {
    use auth_core::packed::VERSION;
    use pgrx::datum::DatumWithOid;
    use pgrx::prelude::*;
    use pgrx::{Spi, spi};

    use crate::api_keys::ApiKeys;
    use crate::check::Checked;
    use crate::packed::Field;
    use crate::sessions::Sessions;
    use crate::tokens::Tokens;

    /// PostgreSQL's epoch in microseconds after the Unix epoch.
    const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

    /// The answer `row_function` gives for `credential`, written by hand in the packed layout
    /// from the row's values as SQL reads them.
    fn expected(row_function: &str, fields: &[Field], credential: Option<&str>) -> Vec<u8> {
        let kinds: Vec<Field> = std::iter::once(Field::Text)
            .chain(fields.iter().copied())
            .collect();
        let columns: Vec<String> = (0..kinds.len()).map(|i| format!("c{i}")).collect();
        let select: Vec<String> = kinds
            .iter()
            .zip(&columns)
            .map(|(kind, c)| match kind {
                Field::TimestampTz => {
                    format!("(extract(epoch FROM {c}) * 1000000)::bigint - {POSTGRES_EPOCH_MICROS}")
                }
                Field::Jsonb => format!("{c}::text"),
                _ => c.clone(),
            })
            .collect();
        let query = format!(
            "SELECT {} FROM auth_pg.{row_function}($1) AS a({})",
            select.join(", "),
            columns.join(", ")
        );
        let args: [DatumWithOid; 1] = [credential.into()];
        Spi::connect(|client| {
            let row = client.select(&query, Some(1), &args)?.first();
            let mut out = vec![VERSION];
            for (i, kind) in kinds.iter().enumerate() {
                write(&mut out, *kind, &row, i + 1)?;
            }
            Ok::<_, spi::SpiError>(out)
        })
        .expect("the row answer")
    }

    fn bytes(out: &mut Vec<u8>, value: &[u8]) {
        out.extend_from_slice(&u32::try_from(value.len()).expect("short").to_be_bytes());
        out.extend_from_slice(value);
    }

    fn write(
        out: &mut Vec<u8>,
        kind: Field,
        row: &spi::SpiTupleTable<'_>,
        column: usize,
    ) -> Result<(), spi::SpiError> {
        let tag = match kind {
            Field::Text => b't',
            Field::Int8 => b'i',
            Field::TimestampTz => b'T',
            Field::TextArray => b'a',
            Field::Jsonb => b'j',
        };
        match kind {
            Field::Text | Field::Jsonb => match row.get::<String>(column)? {
                Some(text) => {
                    out.push(tag);
                    bytes(out, text.as_bytes());
                }
                None => out.push(0),
            },
            Field::Int8 | Field::TimestampTz => match row.get::<i64>(column)? {
                Some(value) => {
                    out.push(tag);
                    out.extend_from_slice(&value.to_be_bytes());
                }
                None => out.push(0),
            },
            Field::TextArray => match row.get::<Vec<String>>(column)? {
                Some(items) => {
                    out.push(tag);
                    out.extend_from_slice(&u32::try_from(items.len()).expect("few").to_be_bytes());
                    for item in items {
                        bytes(out, item.as_bytes());
                    }
                }
                None => out.push(0),
            },
        }
        Ok(())
    }

    fn packed(function: &str, credential: Option<&str>) -> Vec<u8> {
        let args: [DatumWithOid; 1] = [credential.into()];
        Spi::get_one_with_args::<Vec<u8>>(&format!("SELECT auth_pg.{function}($1)"), &args)
            .expect("the packed answer")
            .expect("never NULL")
    }

    /// The packed answer of `row_function`'s sibling is the row answer; returns its status.
    fn assert_same(row_function: &str, fields: &[Field], credential: Option<&str>) -> String {
        let packed_function = format!("{row_function}_packed");
        let answer = packed(&packed_function, credential);
        assert_eq!(
            answer,
            expected(row_function, fields, credential),
            "{packed_function} differs from {row_function}"
        );
        status_of(&answer)
    }

    /// The status of a packed answer: its first field.
    fn status_of(answer: &[u8]) -> String {
        assert_eq!(&answer[..2], &[VERSION, b't'], "a status first");
        let len = u32::from_be_bytes(answer[2..6].try_into().expect("four bytes"));
        let len = usize::try_from(len).expect("short");
        String::from_utf8(answer[6..6 + len].to_vec()).expect("UTF-8")
    }

    /// Metadata that PostgreSQL stores compressed (over 2 kB, repetitive), with characters
    /// outside ASCII and JSON escapes.
    const METADATA: &str = "jsonb_build_object('ip', '203.0.113.7', 'agent', 'Mözilla \"quoted\" \\ ✓', \
         'history', (SELECT jsonb_agg(i % 7) FROM generate_series(1, 1500) i))";

    #[pg_test]
    fn packed_fields_have_the_row_types() {
        for (row_type, fields) in [
            ("token_validation", Tokens::PACKED.as_slice()),
            ("api_key_validation", ApiKeys::PACKED.as_slice()),
            ("session_validation", Sessions::PACKED.as_slice()),
        ] {
            let types = Spi::get_one_with_args::<Vec<pg_sys::Oid>>(
                "SELECT array_agg(atttypid ORDER BY attnum) FROM pg_attribute \
                 WHERE attrelid = ('auth_pg.' || $1)::regclass AND attnum > 0 AND NOT attisdropped",
                &[row_type.into()],
            )
            .expect("catalog")
            .expect("attributes");
            let mut packed = vec![pg_sys::TEXTOID];
            packed.extend(fields.iter().map(|field| field.type_oid()));
            assert_eq!(types, packed, "{row_type}");
        }
    }

    #[pg_test]
    fn packed_token_answers_are_the_row_answers() {
        let token = Spi::get_one::<String>(&format!(
            "SELECT auth_pg.issue_token('user-ü', '1 hour', '{{read,écrire,docs:*}}', {METADATA})"
        ))
        .expect("issue_token")
        .expect("a token");
        let compressed = Spi::get_one::<bool>(
            "SELECT pg_column_compression(metadata) IS NOT NULL FROM auth_pg.tokens \
             WHERE user_id = 'user-ü'",
        )
        .expect("compression");
        assert_eq!(
            compressed,
            Some(true),
            "the metadata should be stored compressed"
        );
        let bare = Spi::get_one::<String>("SELECT auth_pg.issue_token('user-2', '1 hour')")
            .expect("issue_token")
            .expect("a token");

        let old = Spi::get_one::<String>("SELECT auth_pg.issue_token('user-3', '1 hour')")
            .expect("issue_token")
            .expect("a token");
        Spi::run(
            "UPDATE auth_pg.tokens SET created_at = statement_timestamp() - interval '2 hours', \
                    expires_at = statement_timestamp() - interval '1 hour' \
             WHERE user_id = 'user-3'",
        )
        .expect("expire the token");

        for candidate in [&token, &bare] {
            assert_eq!(
                assert_same("validate_token", &Tokens::PACKED, Some(candidate)),
                "valid"
            );
        }
        Spi::run_with_args("SELECT auth_pg.revoke_token($1)", &[bare.as_str().into()])
            .expect("revoke");
        let unknown = auth_core::Credential::generate(auth_core::CredentialKind::Token)
            .expect("random")
            .into_secret();
        for (candidate, status) in [
            (Some(bare.as_str()), "revoked"),
            (Some(old.as_str()), "expired"),
            (Some(unknown.as_str()), "unknown"),
            (Some("x"), "malformed"),
            (None, "malformed"),
        ] {
            assert_eq!(
                assert_same("validate_token", &Tokens::PACKED, candidate),
                status
            );
        }
        // A valid answer really is written out, not only NULLs.
        assert!(packed("validate_token_packed", Some(&token)).len() > 2000);
    }

    #[pg_test]
    fn packed_session_answers_are_the_row_answers() {
        let create = || {
            Spi::get_one::<String>(&format!(
                "SELECT auth_pg.create_session('user-packed', '30 minutes', '12 hours', {METADATA})"
            ))
            .expect("create_session")
            .expect("a session token")
        };
        let session_id = |token: &str| {
            Spi::get_one_with_args::<String>(
                "SELECT (auth_pg.validate_session($1)).session_id",
                &[token.into()],
            )
            .expect("validate_session")
            .expect("a valid session")
        };
        let move_session = |token: &str, set: &str| {
            Spi::run_with_args(
                &format!("UPDATE auth_pg.sessions SET {set} WHERE session_id = $1"),
                &[session_id(token).as_str().into()],
            )
            .expect("move the session in time");
        };
        let token = create();
        for function in ["validate_session", "touch_session"] {
            assert_eq!(
                assert_same(function, &Sessions::PACKED, Some(&token)),
                "valid"
            );
        }

        // A touch that writes answers with the row it wrote, as validate_session reads it.
        move_session(
            &token,
            "last_activity_at = statement_timestamp() - interval '10 minutes', \
             idle_expires_at = statement_timestamp() + interval '20 minutes'",
        );
        let touched = packed("touch_session_packed", Some(&token));
        assert_eq!(
            touched,
            expected("validate_session", &Sessions::PACKED, Some(&token))
        );
        let slid = Spi::get_one_with_args::<bool>(
            "SELECT idle_expires_at = statement_timestamp() + interval '30 minutes' \
             FROM auth_pg.validate_session($1)",
            &[token.as_str().into()],
        );
        assert_eq!(slid, Ok(Some(true)), "the touch wrote");

        let idle = create();
        move_session(&idle, "idle_expires_at = statement_timestamp()");
        let ended = create();
        move_session(
            &ended,
            "absolute_expires_at = statement_timestamp(), idle_expires_at = statement_timestamp()",
        );
        Spi::run_with_args(
            "SELECT auth_pg.revoke_session($1)",
            &[token.as_str().into()],
        )
        .expect("revoke");
        let unknown = auth_core::Credential::generate(auth_core::CredentialKind::Session)
            .expect("random")
            .into_secret();
        for (candidate, status) in [
            (Some(token.as_str()), "revoked"),
            (Some(idle.as_str()), "idle_expired"),
            (Some(ended.as_str()), "absolute_expired"),
            (Some(unknown.as_str()), "unknown"),
            (Some("apgs_"), "malformed"),
            (None, "malformed"),
        ] {
            for function in ["validate_session", "touch_session"] {
                assert_eq!(
                    assert_same(function, &Sessions::PACKED, candidate),
                    status,
                    "{function}"
                );
            }
        }
    }

    #[pg_test]
    fn packed_api_key_answers_are_the_row_answers() {
        Spi::run("SELECT auth_pg.create_organization('packed-org', 'Packed')").expect("org");
        let key = Spi::get_one::<String>(&format!(
            "SELECT key FROM auth_pg.create_api_key('packed-org', 'CI ✓', '{{read}}', \
             now() + interval '1 day', {METADATA})"
        ))
        .expect("create_api_key")
        .expect("a key");
        assert_eq!(
            assert_same("validate_api_key", &ApiKeys::PACKED, Some(&key)),
            "valid"
        );
        let create = |name: &str| {
            Spi::get_two_with_args::<String, String>(
                "SELECT key, key_id FROM auth_pg.create_api_key('packed-org', $1)",
                &[name.into()],
            )
            .map(|(key, id)| (key.expect("a key"), id.expect("an id")))
            .expect("create_api_key")
        };
        let (revoked, revoked_id) = create("revoked");
        Spi::run_with_args(
            "SELECT auth_pg.revoke_api_key('packed-org', $1)",
            &[revoked_id.as_str().into()],
        )
        .expect("revoke");
        let (rotated, rotated_id) = create("rotated");
        Spi::run_with_args(
            "SELECT auth_pg.rotate_api_key('packed-org', $1, '0 seconds')",
            &[rotated_id.as_str().into()],
        )
        .expect("rotate");
        let unknown = auth_core::Credential::generate(auth_core::CredentialKind::ApiKey)
            .expect("random")
            .into_secret();
        for (candidate, status) in [
            (Some(revoked.as_str()), "revoked"),
            (Some(rotated.as_str()), "expired"),
            (Some(unknown.as_str()), "unknown"),
            (Some("apgk_x"), "malformed"),
            (Some(""), "malformed"),
            (None, "malformed"),
        ] {
            assert_eq!(
                assert_same("validate_api_key", &ApiKeys::PACKED, candidate),
                status
            );
        }
    }

    /// The statuses are constants with one-byte headers that answers point to: PostgreSQL
    /// reads each as the text it names, equal to the same text built the usual way.
    #[pg_test]
    fn status_constants_are_the_texts_they_name() {
        use crate::check::Status;
        for status in Status::ALL {
            let datum = status.datum();
            // SAFETY: a status datum is a valid, non-NULL `text`.
            let read = unsafe { String::from_datum(datum, false) };
            assert_eq!(read.as_deref(), Some(status.as_str()));
            let same = Spi::get_one_with_args::<bool>(
                "SELECT $1 = $2::text AND pg_catalog.octet_length($1) = $3",
                &[
                    // SAFETY: as above.
                    unsafe { DatumWithOid::new(datum, pg_sys::TEXTOID) },
                    status.as_str().into(),
                    i32::try_from(status.as_str().len()).expect("short").into(),
                ],
            )
            .expect("compare");
            assert_eq!(same, Some(true), "{}", status.as_str());
        }
    }
}
