//! The `jsonb` encoder against PostgreSQL's own `jsonb_in`: the same bytes for every document.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;
    use serde_json::{Map, Number, Value, json};

    use crate::jsonb::{Unrepresentable, encode, numeric, numeric_holds, numeric_in, write_text};

    /// The varlena `jsonb_in` makes of `value`'s JSON text.
    fn jsonb_in(value: &Value) -> Vec<u8> {
        let text = std::ffi::CString::new(value.to_string()).expect("no NUL in the text");
        // SAFETY: jsonb_in takes one cstring and returns a palloc'd jsonb with a 4-byte header,
        // whose size the header gives; the bytes are copied at once.
        unsafe {
            let datum = pgrx::direct_function_call_as_datum(
                pg_sys::jsonb_in,
                &[Some(pg_sys::Datum::from(text.as_ptr()))],
            )
            .expect("jsonb_in never returns NULL");
            let varlena = datum.cast_mut_ptr::<pg_sys::varlena>();
            let size = pgrx::varlena::varsize_any(varlena);
            std::slice::from_raw_parts(varlena.cast::<u8>(), size).to_vec()
        }
    }

    /// `jsonb_out`'s text of a complete jsonb varlena (4-byte header included).
    fn jsonb_out(varlena: &[u8]) -> String {
        // SAFETY: a palloc'd copy of the varlena goes to jsonb_out, which returns a C string.
        unsafe {
            let copy = pg_sys::palloc(varlena.len()).cast::<u8>();
            std::ptr::copy_nonoverlapping(varlena.as_ptr(), copy, varlena.len());
            let datum = pgrx::direct_function_call_as_datum(
                pg_sys::jsonb_out,
                &[Some(pg_sys::Datum::from(copy))],
            )
            .expect("jsonb_out never returns NULL");
            std::ffi::CStr::from_ptr(datum.cast_mut_ptr())
                .to_str()
                .expect("UTF-8")
                .to_owned()
        }
    }

    fn assert_same_as_jsonb_in(value: &Value) {
        let encoded = encode(value).expect("representable");
        if encoded != jsonb_in(value) {
            let text = value.to_string();
            let start: String = text.chars().take(200).collect();
            panic!(
                "the encoding of {start}… ({} bytes of JSON) differs from jsonb_in's",
                text.len()
            );
        }
    }

    /// A small deterministic generator (xorshift), so that a failure can be replayed.
    struct Random(u64);

    impl Random {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn string(&mut self) -> String {
            const PIECES: &[&str] = &[
                "a", "b", "sub", "exp", "\"", "\\", "'", ";", " ", "\n", "é", "ß", "€", "😀", "/",
                "*",
            ];
            (0..self.below(12))
                .map(|_| PIECES[self.below(PIECES.len() as u64) as usize])
                .collect()
        }

        fn number(&mut self) -> Number {
            match self.below(6) {
                0 => Number::from(self.below(100)),
                1 => Number::from(self.next() as i64),
                2 => Number::from(self.next()),
                3 => Number::from(1_700_000_000 + self.below(100_000_000)),
                _ => loop {
                    let float = f64::from_bits(self.next());
                    if let Some(number) = Number::from_f64(float) {
                        break number;
                    }
                },
            }
        }

        /// A container's size: near the top, sizes around 32 and 64, which cross the JEntry
        /// offset stride; deeper, a few children, so that documents stay small.
        fn size(&mut self, depth: u32, near_top: &[usize]) -> usize {
            if depth <= 1 {
                near_top[self.below(near_top.len() as u64) as usize]
            } else {
                self.below(4) as usize
            }
        }

        fn value(&mut self, depth: u32) -> Value {
            let kind = if depth >= 5 {
                self.below(4)
            } else {
                self.below(7)
            };
            match kind {
                0 => Value::Null,
                1 => Value::Bool(self.below(2) == 0),
                2 => Value::String(self.string()),
                3 => Value::Number(self.number()),
                4 | 5 => {
                    let size = self.size(depth, &[0, 1, 3, 16, 31, 32, 33, 40, 70]);
                    let mut map = Map::new();
                    for _ in 0..size {
                        map.insert(self.string(), self.value(depth + 1));
                    }
                    Value::Object(map)
                }
                _ => {
                    let size = self.size(depth, &[0, 1, 2, 31, 32, 33, 65]);
                    Value::Array((0..size).map(|_| self.value(depth + 1)).collect())
                }
            }
        }
    }

    #[pg_test]
    fn claims_encode_as_jsonb_in_makes_them() {
        let documents = [
            json!({}),
            json!([]),
            json!({"sub": "user-123", "iat": 1_795_458_223, "exp": 1_795_544_623, "role": "member"}),
            json!({"aud": ["api", "admin"], "nbf": 0, "scope": null, "admin": true, "x": false}),
            json!({"b": 1, "a": 2, "aa": 3, "ab": {"z": [1, 2.5, -0.0, 1e300, 5e-324]}}),
            json!({"é": "ü", "e": "u", "😀": "quote \" backslash \\ newline \n tab \t"}),
            json!({"n": [u64::MAX, i64::MIN, 0.1, -1.5e-7, 123_456_789.123_456_79]}),
            json!("a lone string"),
            json!(42),
            json!(null),
            json!(true),
            json!([[[[{"deep": [{}]}]]]]),
        ];
        for document in &documents {
            assert_same_as_jsonb_in(document);
        }
        let mut random = Random(0x9E37_79B9_7F4A_7C15);
        for _ in 0..300 {
            let mut map = Map::new();
            for _ in 0..random.below(40) {
                map.insert(random.string(), random.value(1));
            }
            assert_same_as_jsonb_in(&Value::Object(map));
            assert_same_as_jsonb_in(&random.value(0));
        }
    }

    /// `jsonb_out`'s text of `value`, and the text [`write_text`] writes of the same varlena,
    /// read both where it lies and from a copy at an odd address; None when it declines.
    fn texts(value: &Value) -> (String, Option<String>) {
        let varlena = jsonb_in(value);
        let expected = jsonb_out(&varlena);
        let body = &varlena[4..];
        let mut out = b"before".to_vec();
        let written = write_text(body, &mut out)
            .then(|| String::from_utf8(out[b"before".len()..].to_vec()).expect("UTF-8"));
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(body);
        let mut again = Vec::new();
        assert_eq!(
            write_text(&shifted[1..], &mut again),
            written.is_some(),
            "the same answer at an odd address"
        );
        if written.is_none() {
            assert_eq!(out, b"before", "nothing appended when declining");
        } else {
            assert_eq!(Some(String::from_utf8(again).expect("UTF-8")), written);
        }
        (expected, written)
    }

    #[pg_test]
    fn jsonb_text_is_jsonb_outs() {
        let documents = [
            json!({}),
            json!([]),
            json!({"ip": "203.0.113.7", "user_agent": "Mozilla/5.0 (X11; Linux x86_64)", "device": "laptop"}),
            json!({"b": 1, "a": 2, "aa": 3, "ab": {"z": [1, 2.5, -0.0, 1e300, 5e-324]}}),
            json!({"é": "ü", "😀": "quote \" backslash \\ newline \n tab \t"}),
            json!({"control": "\u{1}\u{8}\u{c}\r\u{1f}\u{7f}", "": ""}),
            json!({"n": [u64::MAX, i64::MIN, 0.1, -1.5e-7, 123_456_789.123_456_79]}),
            json!("a lone string"),
            json!(42),
            json!(-0.5),
            json!(null),
            json!(true),
            json!([[[[{"deep": [{}, [], null, false]}]]]]),
        ];
        let mut random = Random(0x2545_F491_4F6C_DD1D);
        let generated = (0..300).flat_map(|_| {
            let mut map = Map::new();
            for _ in 0..random.below(40) {
                map.insert(random.string(), random.value(1));
            }
            [Value::Object(map), random.value(0)]
        });
        for document in documents.into_iter().chain(generated.collect::<Vec<_>>()) {
            let (expected, written) = texts(&document);
            assert_eq!(written.as_deref(), Some(expected.as_str()), "{expected}");
        }
        // Deeper than it follows: declined, for PostgreSQL to write.
        let mut deep = json!("bottom");
        for _ in 0..70 {
            deep = json!([deep]);
        }
        assert_eq!(texts(&deep).1, None);
    }

    #[pg_test]
    fn encoded_jsonb_reads_back_as_the_same_document() {
        let claims = json!({"sub": "ada", "exp": 1_795_544_623, "roles": ["admin", "member"],
                            "org": {"id": "acme", "plan": "pro"}});
        let text = jsonb_out(&encode(&claims).expect("representable"));
        let read_back: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(read_back, claims);
    }

    #[pg_test]
    fn integers_encode_as_numeric_in_makes_them() {
        let mut integers: Vec<Number> = [
            0,
            1,
            -1,
            9_999,
            10_000,
            -10_000,
            10_001,
            99_990_000,
            100_000_000,
            1_795_544_623,
            i64::MAX,
            i64::MIN,
            i64::MIN + 1,
        ]
        .into_iter()
        .map(Number::from)
        .collect();
        integers.extend([u64::MAX, 10_000_000_000_000_000_000].map(Number::from));
        let mut random = Random(0x2545_F491_4F6C_DD1D);
        for _ in 0..2_000 {
            let value = random.next();
            // Every magnitude, from one digit to twenty.
            let value = value >> random.below(64);
            integers.push(Number::from(value));
            integers.push(Number::from((value as i64).wrapping_neg()));
        }
        for integer in &integers {
            assert_eq!(
                numeric(integer),
                Ok(numeric_in(&integer.to_string())),
                "the numeric of {integer}"
            );
        }
    }

    /// `numeric_holds` agrees with `numeric_in` at the edges of `numeric`'s range, and a number
    /// beyond them is `NumberOutOfRange`, never an ERROR.
    #[pg_test]
    fn numbers_beyond_numeric_have_no_jsonb_form() {
        let zeros = |n: usize| "0".repeat(n);
        let nines = |n: usize| "9".repeat(n);
        let texts = [
            "1e1000".to_owned(),
            "1e1001".to_owned(),
            "1E+1000".to_owned(),
            "1e-1000".to_owned(),
            "-1e-1001".to_owned(),
            "-2.5e-1000".to_owned(),
            "1e0000000000000000000000001000".to_owned(),
            "1e0000000000000000000000001001".to_owned(),
            "1e99999999999999999999999".to_owned(),
            "1e200000".to_owned(),
            "1e131071".to_owned(),
            "1e131072".to_owned(),
            "1e-16383".to_owned(),
            "1e-16384".to_owned(),
            "0e-20000".to_owned(),
            "1e-2000000000".to_owned(),
            format!("0.{}1", zeros(16_382)),
            format!("0.{}1", zeros(16_383)),
            format!("1.{}e-1", zeros(16_382)),
            format!("1.{}e-1", zeros(16_383)),
            format!("{}.5", nines(131_072)),
            format!("{}.5", nines(131_073)),
            format!("{}e1000", nines(130_072)),
            format!("{}e1000", nines(130_073)),
        ];
        for text in &texts {
            let accepted =
                crate::tests::error_of(&format!("SELECT '{text}'::pg_catalog.numeric")).is_none();
            let shown: String = text.chars().take(40).collect();
            assert_eq!(
                numeric_holds(text),
                accepted,
                "{shown}... ({} bytes)",
                text.len()
            );
            let value: Value = serde_json::from_str(&format!("{{\"n\": {text}}}")).expect("JSON");
            if accepted {
                assert!(encode(&value).is_ok(), "{shown}");
            } else {
                assert_eq!(
                    encode(&value),
                    Err(Unrepresentable::NumberOutOfRange),
                    "{shown}"
                );
            }
        }
    }

    #[pg_test]
    fn strings_with_nul_have_no_jsonb_form() {
        assert_eq!(
            encode(&json!({"sub": "a\u{0}b"})),
            Err(Unrepresentable::NulCharacter)
        );
        assert_eq!(
            encode(&json!({"a\u{0}": 1})),
            Err(Unrepresentable::NulCharacter)
        );
        assert_eq!(
            encode(&json!([["\u{0}"]])),
            Err(Unrepresentable::NulCharacter)
        );
    }
}
