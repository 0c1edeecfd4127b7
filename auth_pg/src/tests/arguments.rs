//! `#[pg_test]`s for arguments that come from a column, stored out of line or compressed: a
//! check reads only as much of one as a credential or a JWT can be.

#[pgrx::pg_schema]
mod tests {
    use pgrx::Spi;
    use pgrx::prelude::*;

    use crate::tests::error_in;

    const CHECKS: [&str; 6] = [
        "(SELECT status FROM auth_pg.validate_token($1))",
        "(SELECT status FROM auth_pg.validate_api_key($1))",
        "(SELECT status FROM auth_pg.validate_session($1))",
        "(SELECT status FROM auth_pg.touch_session($1))",
        "(SELECT status FROM auth_pg.jwt_verify($1))",
        "auth_pg.authenticate($1)",
    ];

    /// The status each single check gives the value in row `id` of `pg_temp.arguments`.
    fn statuses(id: i32) -> Vec<(String, Option<String>)> {
        CHECKS
            .into_iter()
            .map(|call| {
                let call = call.replace("$1", "a.value");
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

    /// A compressed text whose header says it holds 100 MB, followed by bytes that are no
    /// compressed data at all: decompressing it raises an ERROR, so a check that answers
    /// `malformed` has judged it by its header, without decompressing anything. The checks are
    /// called through fmgr, as a query passes them a column's value: a query parameter would
    /// become a constant, which PostgreSQL decompresses while planning.
    #[pg_test]
    fn a_long_compressed_argument_is_judged_by_its_header() {
        const LEN: u32 = 64;
        const RAW_SIZE: u32 = 100_000_000;
        const {
            assert!(
                cfg!(target_endian = "little"),
                "the header below is little-endian"
            )
        };
        let mut bytes = [0xff_u8; LEN as usize];
        // A 4-byte header marked compressed (SET_VARSIZE_COMPRESSED), then the raw size with
        // the method bits (pglz) clear.
        bytes[..4].copy_from_slice(&((LEN << 2) | 0x02).to_le_bytes());
        bytes[4..8].copy_from_slice(&RAW_SIZE.to_le_bytes());
        // SAFETY: a palloc'd copy lives until the end of the test's transaction.
        let datum = unsafe {
            let copy = pg_sys::palloc(bytes.len()).cast::<u8>();
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), copy, bytes.len());
            pg_sys::Datum::from(copy)
        };
        assert_eq!(
            // SAFETY: reads the varlena's header.
            unsafe { pg_sys::toast_raw_datum_size(datum) },
            RAW_SIZE as usize + pg_sys::VARHDRSZ
        );
        // The control: reading it whole fails.
        let error = error_in(|| {
            // SAFETY: detoasting a compressed varlena; the corrupt data raises an ERROR.
            unsafe { pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr()) };
        })
        .expect("decompressing the bytes fails");
        assert!(error.message.contains("corrupt"), "{error:?}");

        let call = |function: &str| {
            let oid = Spi::get_one_with_args::<pg_sys::Oid>(
                "SELECT $1::regprocedure::oid",
                &[function.into()],
            )
            .expect("catalog")
            .expect("the function");
            // SAFETY: each function takes one text argument and never returns NULL.
            unsafe { pg_sys::OidFunctionCall1Coll(oid, pg_sys::DEFAULT_COLLATION_OID, datum) }
        };
        for function in [
            "auth_pg.validate_token(text)",
            "auth_pg.validate_api_key(text)",
            "auth_pg.validate_session(text)",
            "auth_pg.touch_session(text)",
            "auth_pg.jwt_verify(text)",
        ] {
            let answer = call(function);
            // SAFETY: the checks return their composite answer types.
            let answer = unsafe { PgHeapTuple::from_composite_datum(answer) };
            let status = answer.get_by_name::<String>("status").expect("status");
            assert_eq!(status.as_deref(), Some("malformed"), "{function}");
        }
        // SAFETY: authenticate returns text.
        let status = unsafe { String::from_datum(call("auth_pg.authenticate(text)"), false) };
        assert_eq!(status.as_deref(), Some("malformed"));
    }
}
