//! `#[pg_test]`s for reading a stored `text[]` in place (`array.rs`): for arrays of every shape
//! PostgreSQL builds, in both the form a function receives (four-byte header, aligned) and the
//! form a row holds (one-byte header, unaligned), the in-place reader gives exactly the elements
//! that PostgreSQL's `deconstruct_array` gives.

#[pgrx::pg_schema]
mod tests {
    use std::ffi::CString;
    use std::num::NonZeroUsize;

    use pgrx::pg_sys::{self, Datum};
    use pgrx::prelude::*;

    use crate::array::TextElements;
    use crate::fmgr;

    /// `literal` read by `array_in` as a `text[]`: a palloc'd array with a four-byte header.
    fn array(literal: &str) -> Datum {
        let literal = CString::new(literal).expect("no NUL");
        // SAFETY: array_in takes a C string, the element type and a typmod.
        unsafe {
            pg_sys::OidInputFunctionCall(
                pg_sys::Oid::from(pg_sys::F_ARRAY_IN),
                literal.as_ptr().cast_mut(),
                pg_sys::TEXTOID,
                -1,
            )
        }
    }

    /// `value` as a row stores it: formed into a heap tuple of one `text[]` attribute, which
    /// gives a short array a one-byte header at an unaligned offset.
    fn stored(value: Datum) -> Datum {
        // SAFETY: a one-attribute descriptor of type text[]; the tuple is formed from one
        // non-NULL value of that type and read back with the same descriptor.
        unsafe {
            let desc = pg_sys::CreateTemplateTupleDesc(1);
            pg_sys::TupleDescInitEntry(desc, 1, c"scopes".as_ptr(), pg_sys::TEXTARRAYOID, -1, 0);
            let mut values = [value];
            let mut nulls = [false];
            let tuple = pg_sys::heap_form_tuple(desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            pgrx::htup::heap_getattr_raw(tuple, NonZeroUsize::MIN, desc).expect("not NULL")
        }
    }

    /// The elements as PostgreSQL's own reader gives them, from a detoasted copy.
    fn reference(value: Datum) -> Vec<Option<Vec<u8>>> {
        // SAFETY: `value` is a text[] datum; the copy lives in the current memory context.
        unsafe {
            let array = pg_sys::pg_detoast_datum(value.cast_mut_ptr()).cast::<pg_sys::ArrayType>();
            fmgr::text_array_elements(array)
                .into_iter()
                .map(|e| e.map(<[u8]>::to_vec))
                .collect()
        }
    }

    /// The elements as the in-place reader gives them, or None when it declines.
    fn in_place(value: Datum) -> Option<Vec<Option<Vec<u8>>>> {
        // SAFETY: `value` is a plain text[] datum, alive for the call.
        let body = unsafe { fmgr::varlena_bytes(value.cast_mut_ptr()) };
        TextElements::parse(body).map(|e| e.map(|e| e.map(<[u8]>::to_vec)).collect())
    }

    fn has_short_header(value: Datum) -> bool {
        // SAFETY: reads the first byte of a varlena.
        unsafe { pgrx::varlena::varatt_is_1b(value.cast_mut_ptr()) }
    }

    #[pg_test]
    fn in_place_reads_give_what_postgres_gives() {
        let long = "x".repeat(300);
        let odd: Vec<String> = (1..=9).map(|n| "a".repeat(n)).collect();
        let many: Vec<String> = (0..200).map(|i| format!("scope:{i}")).collect();
        let literals = [
            "{}".to_string(),
            "{read,write}".to_string(),
            "{\"\"}".to_string(),
            "{NULL}".to_string(),
            "{a,NULL,b,NULL,NULL,c,d,e,f,NULL}".to_string(),
            "{{a,b,c},{d,NULL,f}}".to_string(),
            "[3:4]={x,y}".to_string(),
            "{écrire,docs:*,✓}".to_string(),
            format!("{{{}}}", odd.join(",")),
            format!("{{short,{long},NULL,{long}}}"),
            format!("{{{}}}", many.join(",")),
        ];
        let mut short_seen = false;
        for literal in &literals {
            let aligned = array(literal);
            let expected = reference(aligned);
            assert_eq!(
                in_place(aligned),
                Some(expected.clone()),
                "{literal}, as built"
            );
            let row = stored(aligned);
            short_seen |= has_short_header(row);
            assert_eq!(
                in_place(row),
                Some(expected.clone()),
                "{literal}, as stored"
            );
            // SAFETY: both are text[] datums alive for the call.
            let through_fmgr: Vec<Option<Vec<u8>>> = unsafe { fmgr::text_array_datum(row) }
                .map(|e| e.map(<[u8]>::to_vec))
                .collect();
            assert_eq!(
                through_fmgr, expected,
                "{literal}, through text_array_datum"
            );
        }
        assert!(
            short_seen,
            "some stored arrays should have a one-byte header"
        );
    }

    #[pg_test]
    fn in_place_reads_decline_what_they_cannot_check() {
        let value = array("{read,write}");
        // SAFETY: a plain text[] datum, alive for the call.
        let body = unsafe { fmgr::varlena_bytes(value.cast_mut_ptr()) };
        // A cut body is declined, or (cut in the padding after the last element) read as the
        // whole; never read past its end. Cuts inside an element are declined.
        let whole: Vec<_> = TextElements::parse(body).expect("the whole").collect();
        assert_eq!(whole, [Some(&b"read"[..]), Some(&b"write"[..])]);
        for len in 0..body.len() {
            if let Some(elements) = TextElements::parse(&body[..len]) {
                assert_eq!(
                    elements.collect::<Vec<_>>(),
                    whole,
                    "a body cut to {len} bytes"
                );
            }
        }
        // 20 bytes of header and dimensions, `read` with its header (8), `write` with its (9).
        assert!(TextElements::parse(&body[..36]).is_none());
        // Dimensions beyond PostgreSQL's limit, and a negative one.
        let mut wrong = body.to_vec();
        wrong[..4].copy_from_slice(&7i32.to_ne_bytes());
        assert!(TextElements::parse(&wrong).is_none());
        let mut negative = body.to_vec();
        negative[12..16].copy_from_slice(&(-1i32).to_ne_bytes());
        assert!(TextElements::parse(&negative).is_none());
        // An element whose header claims more bytes than there are.
        let mut long = body.to_vec();
        long[20..24].copy_from_slice(&(1000u32 << 2).to_le_bytes());
        assert!(TextElements::parse(&long).is_none());
    }
}
