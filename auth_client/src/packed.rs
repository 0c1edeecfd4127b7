//! Reading the packed form of a check's answer (`auth_pg.validate_token_packed` and its
//! siblings): one `bytea` in place of the composite row, which the server sends without looking
//! up each field's output function. The layout is [`auth_core::packed`]'s.
//!
//! Every field is read with the type the caller expects, so an answer of another shape (a
//! server of another version) is an error, never a misread value. Errors describe the shape
//! only, never a value.

use std::error::Error as StdError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auth_core::packed::{NULL_ELEMENT, POSTGRES_EPOCH_UNIX_SECONDS, VERSION, tag};
use postgres_types::{FromSql, Type};

type BoxError = Box<dyn StdError + Sync + Send>;

/// PostgreSQL's epoch, 2000-01-01 00:00:00 UTC, in seconds after the Unix epoch.
const POSTGRES_EPOCH_SECS: u64 = POSTGRES_EPOCH_UNIX_SECONDS.unsigned_abs();

/// A record read from a packed answer.
pub(crate) trait Unpack: Sized {
    /// Reads the record's fields, in the order of its row type, from `reader`.
    fn unpack(reader: &mut Reader<'_>) -> Result<Self, BoxError>;
}

/// A `bytea` column holding a packed `R`.
pub(crate) struct Packed<R>(pub(crate) R);

impl<'a, R: Unpack> FromSql<'a> for Packed<R> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let mut reader = Reader::new(raw)?;
        let record = R::unpack(&mut reader)?;
        reader.finish()?;
        Ok(Self(record))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::BYTEA
    }
}

/// A cursor over one packed answer.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

fn malformed(what: &str) -> BoxError {
    format!("malformed packed answer: {what}").into()
}

impl<'a> Reader<'a> {
    fn new(raw: &'a [u8]) -> Result<Self, BoxError> {
        match raw.split_first() {
            Some((&VERSION, rest)) => Ok(Self { rest }),
            Some((version, _)) => Err(format!(
                "packed answer of layout version {version}; this client reads version {VERSION}"
            )
            .into()),
            None => Err(malformed("empty")),
        }
    }

    fn finish(self) -> Result<(), BoxError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(malformed("more fields than expected"))
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], BoxError> {
        if self.rest.len() < n {
            return Err(malformed("cut short"));
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], BoxError> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn u32(&mut self) -> Result<u32, BoxError> {
        self.array().map(u32::from_be_bytes)
    }

    fn i64(&mut self) -> Result<i64, BoxError> {
        self.array().map(i64::from_be_bytes)
    }

    fn bytes(&mut self) -> Result<&'a [u8], BoxError> {
        let len = self.u32()?;
        self.take(usize::try_from(len).map_err(|_| malformed("a length out of range"))?)
    }

    fn string(&mut self) -> Result<String, BoxError> {
        let bytes = self.bytes()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| malformed("text that is not UTF-8"))
    }

    /// The next field's tag, checked to be `tag`; `false` for NULL.
    fn present(&mut self, tag: u8, what: &str) -> Result<bool, BoxError> {
        match self.take(1)?[0] {
            tag::NULL => Ok(false),
            found if found == tag => Ok(true),
            _ => Err(malformed(&format!(
                "a field of another type where {what} was expected"
            ))),
        }
    }

    /// A text field.
    pub(crate) fn text(&mut self) -> Result<Option<String>, BoxError> {
        if self.present(tag::TEXT, "text")? {
            self.string().map(Some)
        } else {
            Ok(None)
        }
    }

    /// A bigint field.
    pub(crate) fn int8(&mut self) -> Result<Option<i64>, BoxError> {
        if self.present(tag::INT8, "bigint")? {
            self.i64().map(Some)
        } else {
            Ok(None)
        }
    }

    /// A timestamptz field, as PostgreSQL's binary form reads (microseconds since 2000).
    pub(crate) fn timestamptz(&mut self) -> Result<Option<SystemTime>, BoxError> {
        if !self.present(tag::TIMESTAMPTZ, "timestamptz")? {
            return Ok(None);
        }
        let micros = self.i64()?;
        let epoch = UNIX_EPOCH + Duration::from_secs(POSTGRES_EPOCH_SECS);
        let offset = Duration::from_micros(micros.unsigned_abs());
        let time = if micros < 0 {
            epoch.checked_sub(offset)
        } else {
            epoch.checked_add(offset)
        };
        time.map(Some)
            .ok_or_else(|| malformed("a time this platform cannot represent"))
    }

    /// A text[] field (NULL elements are refused).
    pub(crate) fn text_array(&mut self) -> Result<Option<Vec<String>>, BoxError> {
        if !self.present(tag::TEXT_ARRAY, "text[]")? {
            return Ok(None);
        }
        let count = self.u32()?;
        // Each element takes at least its four length bytes: a count beyond that is a lie,
        // refused before anything is allocated for it.
        let count = usize::try_from(count).map_err(|_| malformed("a count out of range"))?;
        if count > self.rest.len() / 4 {
            return Err(malformed("cut short"));
        }
        let mut elements = Vec::with_capacity(count);
        for _ in 0..count {
            if self.rest.starts_with(&NULL_ELEMENT.to_be_bytes()) {
                return Err(malformed("a NULL array element"));
            }
            elements.push(self.string()?);
        }
        Ok(Some(elements))
    }

    /// A jsonb field, sent as JSON text.
    pub(crate) fn json(&mut self) -> Result<Option<serde_json::Value>, BoxError> {
        if !self.present(tag::JSONB, "jsonb")? {
            return Ok(None);
        }
        let text = self.bytes()?;
        serde_json::from_slice(text)
            .map(Some)
            .map_err(|_| malformed("jsonb that is not JSON"))
    }

    /// The status: a text field that is never NULL.
    pub(crate) fn status(&mut self) -> Result<String, BoxError> {
        self.text()?.ok_or_else(|| malformed("no status"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What auth_pg writes, built by hand from the layout.
    #[derive(Default)]
    struct Writer(Vec<u8>);

    impl Writer {
        fn new() -> Self {
            Self(vec![VERSION])
        }
        fn len(&mut self, len: usize) {
            self.0
                .extend_from_slice(&u32::try_from(len).expect("short").to_be_bytes());
        }
        fn bytes(mut self, tag: u8, bytes: &[u8]) -> Self {
            self.0.push(tag);
            self.len(bytes.len());
            self.0.extend_from_slice(bytes);
            self
        }
        fn null(mut self) -> Self {
            self.0.push(tag::NULL);
            self
        }
        fn text(self, s: &str) -> Self {
            self.bytes(tag::TEXT, s.as_bytes())
        }
        fn int(mut self, tag: u8, v: i64) -> Self {
            self.0.push(tag);
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn array(mut self, items: &[&str]) -> Self {
            self.0.push(tag::TEXT_ARRAY);
            self.len(items.len());
            for item in items {
                self.len(item.len());
                self.0.extend_from_slice(item.as_bytes());
            }
            self
        }
        fn json(self, s: &str) -> Self {
            self.bytes(tag::JSONB, s.as_bytes())
        }
    }

    #[derive(Debug, PartialEq)]
    struct Sample {
        status: String,
        id: Option<i64>,
        scopes: Option<Vec<String>>,
        at: Option<SystemTime>,
        metadata: Option<serde_json::Value>,
    }

    impl Unpack for Sample {
        fn unpack(reader: &mut Reader<'_>) -> Result<Self, BoxError> {
            Ok(Self {
                status: reader.status()?,
                id: reader.int8()?,
                scopes: reader.text_array()?,
                at: reader.timestamptz()?,
                metadata: reader.json()?,
            })
        }
    }

    fn read(bytes: &[u8]) -> Result<Sample, String> {
        Packed::<Sample>::from_sql(&Type::BYTEA, bytes)
            .map(|packed| packed.0)
            .map_err(|err| err.to_string())
    }

    #[test]
    fn reads_every_field_type() {
        let bytes = Writer::new()
            .text("valid")
            .int(tag::INT8, -42)
            .array(&["read", "wrïte", ""])
            .int(tag::TIMESTAMPTZ, 1_000_000)
            .json(r#"{"ip":"10.0.0.1"}"#)
            .0;
        let sample = read(&bytes).expect("a packed answer");
        assert_eq!(sample.status, "valid");
        assert_eq!(sample.id, Some(-42));
        assert_eq!(
            sample.scopes,
            Some(vec!["read".into(), "wrïte".into(), String::new()])
        );
        assert_eq!(
            sample.at,
            Some(UNIX_EPOCH + Duration::from_secs(POSTGRES_EPOCH_SECS + 1))
        );
        assert_eq!(sample.metadata, Some(serde_json::json!({"ip": "10.0.0.1"})));
    }

    #[test]
    fn reads_nulls_and_times_before_2000() {
        let bytes = Writer::new()
            .text("unknown")
            .null()
            .null()
            .int(tag::TIMESTAMPTZ, -1_000_000)
            .null()
            .0;
        let sample = read(&bytes).expect("a packed answer");
        assert_eq!(sample.status, "unknown");
        assert_eq!(
            (sample.id, sample.scopes, sample.metadata),
            (None, None, None)
        );
        assert_eq!(
            sample.at,
            Some(UNIX_EPOCH + Duration::from_secs(POSTGRES_EPOCH_SECS - 1))
        );
    }

    #[test]
    fn refuses_answers_of_another_shape() {
        let good = Writer::new().text("valid").null().null().null().null().0;
        assert!(read(&good).is_ok());
        // Every proper prefix is cut short.
        for end in 0..good.len() {
            assert!(read(&good[..end]).is_err(), "prefix of {end} bytes");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(
            read(&longer).expect_err("trailing field"),
            "malformed packed answer: more fields than expected"
        );
        let mut version = good.clone();
        version[0] = 2;
        assert!(
            read(&version)
                .expect_err("unknown version")
                .contains("layout version 2")
        );
        // A bigint where the scopes were expected.
        let swapped = Writer::new()
            .text("valid")
            .null()
            .int(tag::INT8, 1)
            .null()
            .null()
            .0;
        assert!(
            read(&swapped)
                .expect_err("wrong type")
                .contains("where text[] was expected")
        );
        assert!(read(&Writer::new().null().null().null().null().null().0).is_err());
    }

    #[test]
    fn refuses_bad_values_without_quoting_them() {
        // The messages are fixed strings: they describe the shape, never the value.
        let value = "apgk_not_really_a_secret";
        let mut bad_utf8 = Writer::new().text(value).null().null().null().null().0;
        bad_utf8[6] = 0xFF;
        assert_eq!(
            read(&bad_utf8).expect_err("not UTF-8"),
            "malformed packed answer: text that is not UTF-8"
        );

        let bad_json = Writer::new()
            .text("valid")
            .null()
            .null()
            .null()
            .json(value)
            .0;
        assert_eq!(
            read(&bad_json).expect_err("not JSON"),
            "malformed packed answer: jsonb that is not JSON"
        );

        let mut null_element = Writer::new()
            .text("valid")
            .null()
            .array(&["x"])
            .null()
            .null()
            .0;
        let at = null_element.len() - 2 - 1 - 4;
        null_element[at..at + 4].copy_from_slice(&[0xFF; 4]);
        assert_eq!(
            read(&null_element).expect_err("NULL element"),
            "malformed packed answer: a NULL array element"
        );

        // A count of elements the bytes cannot hold is refused before allocating for it.
        let mut huge = Writer::new().text("valid").null().0;
        huge.push(tag::TEXT_ARRAY);
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            read(&huge).expect_err("huge count"),
            "malformed packed answer: cut short"
        );
    }
}
