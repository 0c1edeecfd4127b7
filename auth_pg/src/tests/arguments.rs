//! `#[pg_test]`s for arguments that come from a column, stored out of line or compressed: a
//! check reads only as much of one as a credential or a JWT can be.

#[pgrx::pg_schema]
mod tests {
    use pgrx::Spi;
    use pgrx::prelude::*;

    /// The status each single check gives the value in row `id` of `pg_temp.arguments`.
    fn statuses(id: i32) -> Vec<(String, Option<String>)> {
        [
            "(SELECT status FROM auth_pg.validate_token(a.value))",
            "(SELECT status FROM auth_pg.validate_api_key(a.value))",
            "(SELECT status FROM auth_pg.validate_session(a.value))",
            "(SELECT status FROM auth_pg.touch_session(a.value))",
            "(SELECT status FROM auth_pg.jwt_verify(a.value))",
            "auth_pg.authenticate(a.value)",
        ]
        .into_iter()
        .map(|call| {
            let status = Spi::get_one_with_args::<String>(
                &format!("SELECT {call} FROM pg_temp.arguments a WHERE a.id = $1"),
                &[id.into()],
            )
            .expect("a check");
            (call.to_owned(), status)
        })
        .collect()
    }

    #[pg_test]
    fn a_long_stored_argument_is_malformed_and_a_stored_jwt_is_read() {
        Spi::run(
            "CREATE TEMP TABLE arguments (id int, value text);
             SELECT auth_pg.add_jwt_key('stored-kid', 'HS256', repeat('s', 48));
             -- 1: compressed (16 MB of one letter); 2: out of line, not compressed (20 kB of
             -- hex, past auth_pg.jwt_max_token_bytes); 3: a JWT of 9 kB out of line.
             INSERT INTO arguments VALUES (1, repeat('apgt_', 3355443));
             ALTER TABLE arguments ALTER COLUMN value SET STORAGE EXTERNAL;
             INSERT INTO arguments
                 SELECT 2, string_agg(md5(g::text), '') FROM generate_series(1, 640) g;
             INSERT INTO arguments SELECT 3, auth_pg.jwt_sign(
                 jsonb_build_object('sub', 'u', 'exp', extract(epoch FROM now())::bigint + 600,
                                    'pad', repeat('p', 9000)),
                 'stored-kid');",
        )
        .expect("arguments");
        // Each is stored as meant: smaller than its text (compressed), or out of line.
        let stored = Spi::get_one::<bool>(
            "SELECT bool_and(CASE id WHEN 1 THEN pg_column_size(value) < octet_length(value) / 10
                                    ELSE pg_column_size(value) >= octet_length(value) END)
             FROM pg_temp.arguments",
        )
        .expect("sizes");
        assert_eq!(stored, Some(true));
        for id in [1, 2] {
            for (call, status) in statuses(id) {
                assert_eq!(status.as_deref(), Some("malformed"), "{id}: {call}");
            }
        }
        let jwt = statuses(3);
        assert_eq!(jwt[4].1.as_deref(), Some("valid"), "{:?}", jwt[4]);
        assert_eq!(jwt[5].1.as_deref(), Some("valid"), "{:?}", jwt[5]);
    }
}
