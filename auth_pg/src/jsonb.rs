//! `jsonb` values built straight from `serde_json` values, in PostgreSQL's binary format, instead
//! of printing them as JSON text for `jsonb_in` to parse again.
//!
//! A verified token's claims are parsed once (by `auth_core::jwt`) and must also be handed out
//! as `jsonb`; going through text cost a serialization plus `jsonb_in` (a JSON parse, a sort of
//! every object's keys, a numeric parse per number), about a fifth of a whole HS256
//! verification. The format written here is the one `convertToJsonb` writes (see
//! `src/include/utils/jsonb.h` and `src/backend/utils/adt/jsonb_util.c`):
//!
//! - a container is its header word (`count | JB_FOBJECT` or `JB_FARRAY`, plus `JB_FSCALAR` for
//!   a lone scalar at the top), one `JEntry` word per child (an object's keys first, then its
//!   values, in the same order), then the children's data;
//! - an object's keys are sorted by length, then bytes, and are unique;
//! - a `JEntry` holds its child's type and the length of its data, except every 32nd, which
//!   holds the end offset of its data within the container instead;
//! - numerics and containers start at a multiple of 4 bytes from the start of the value
//!   (zero-padded), and their length includes that padding.
//!
//! Integers are written as `numeric_in` writes them (`integer_numeric`); other numbers go
//! through `numeric_in` with the text serde_json prints for them, so each is exactly the numeric
//! the text round trip made. Tests compare the bytes with `jsonb_in`'s over many documents, and
//! with `numeric_in`'s over many integers.
//!
//! The other way, [`Jsonb`] reads `jsonb` arguments and columns into `serde_json` values.

use std::ffi::CStr;

use pgrx::callconv::{Arg, ArgAbi, BoxRet, FcInfo};
use pgrx::datum::{Datum, UnboxDatum};
use pgrx::nullable::Nullable;
use pgrx::{FromDatum, IntoDatum, JsonB, direct_function_call, pg_sys};
use serde_json::{Map, Number, Value};

use crate::error::AuthPgError;

/// A `jsonb` argument or column as a `serde_json` value. It reads and writes what pgrx's
/// `JsonB` does (through `jsonb_out` and `jsonb_in`), except that a value serde_json cannot
/// hold, objects and arrays nested deeper than serde_json's 128 levels, is an ERROR with
/// SQLSTATE 22023 and a hint, where `JsonB` panics (XX000). Numbers keep their text (this crate
/// turns on serde_json's `arbitrary_precision`), so every digit of a `numeric` survives.
#[derive(Debug)]
pub(crate) struct Jsonb(pub Value);

pgrx::impl_sql_translatable!(Jsonb, "jsonb");

impl FromDatum for Jsonb {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _: pg_sys::Oid,
    ) -> Option<Self> {
        if is_null {
            return None;
        }
        // SAFETY: the datum is a jsonb value (the declared type of the argument or column
        // read); jsonb_out detoasts it and returns its text, valid UTF-8 in this database.
        let text = unsafe {
            direct_function_call::<&CStr>(pg_sys::jsonb_out, &[Some(datum)])
                .expect("jsonb_out returns text for a value")
        };
        let parsed = text
            .to_str()
            .map_err(|_| "it is not UTF-8")
            .and_then(|text| serde_json::from_str(text).map_err(|err| unreadable(&err)));
        match parsed {
            Ok(value) => Some(Self(value)),
            Err(reason) => AuthPgError::JsonUnreadable { reason }.raise("jsonb"),
        }
    }
}

impl IntoDatum for Jsonb {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        JsonB(self.0).into_datum()
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}

// SAFETY: as pgrx's own `ArgAbi` for `JsonB`: the argument is declared `jsonb` (see the
// `SqlTranslatable` above), so its datum is a jsonb value, which `FromDatum` reads.
unsafe impl<'fcx> ArgAbi<'fcx> for Jsonb {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        // SAFETY: see above; a NULL argument is the caller's to rule out (see the trait).
        unsafe { arg.unbox_arg_using_from_datum() }
            .unwrap_or_else(|| panic!("argument {index} must not be null"))
    }

    unsafe fn unbox_nullable_arg(arg: Arg<'_, 'fcx>) -> Nullable<Self> {
        // SAFETY: see above.
        unsafe { arg.unbox_arg_using_from_datum() }.into()
    }
}

// SAFETY: as pgrx's own `BoxRet` for `JsonB`: the datum returned is a jsonb value, the
// declared result type.
unsafe impl BoxRet for Jsonb {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> Datum<'fcx> {
        match self.into_datum() {
            // SAFETY: a jsonb datum made in the current memory context.
            Some(datum) => unsafe { fcinfo.return_raw_datum(datum) },
            None => fcinfo.return_null(),
        }
    }
}

// SAFETY: as pgrx's own `UnboxDatum` for `JsonB`: the datum is a non-null jsonb value.
unsafe impl UnboxDatum for Jsonb {
    type As<'src> = Jsonb;

    unsafe fn unbox<'src>(datum: Datum<'src>) -> Self::As<'src>
    where
        Self: 'src,
    {
        // SAFETY: see above.
        unsafe { Self::from_datum(datum.sans_lifetime(), false) }.expect("a non-null datum")
    }
}

/// Why serde_json refused the text of a `jsonb` value, which is always valid JSON: what is
/// left is its nesting limit.
fn unreadable(err: &serde_json::Error) -> &'static str {
    if err.to_string().starts_with("recursion limit exceeded") {
        "it nests deeper than 128 levels"
    } else {
        "it is not JSON that auth_pg reads"
    }
}

const JENTRY_OFFLENMASK: u32 = 0x0FFF_FFFF;
const JENTRY_TYPEMASK: u32 = 0x7000_0000;
const JENTRY_HAS_OFF: u32 = 0x8000_0000;
const JENTRY_ISSTRING: u32 = 0x0000_0000;
const JENTRY_ISNUMERIC: u32 = 0x1000_0000;
const JENTRY_ISBOOL_FALSE: u32 = 0x2000_0000;
const JENTRY_ISBOOL_TRUE: u32 = 0x3000_0000;
const JENTRY_ISNULL: u32 = 0x4000_0000;
const JENTRY_ISCONTAINER: u32 = 0x5000_0000;
const JB_OFFSET_STRIDE: usize = 32;
const JB_FSCALAR: u32 = 0x1000_0000;
const JB_FOBJECT: u32 = 0x2000_0000;
const JB_FARRAY: u32 = 0x4000_0000;
/// The varlena header's size: the value starts after it.
const VARHDRSZ: usize = 4;

/// Why a JSON value has no `jsonb` form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unrepresentable {
    /// A string holding U+0000, which JSON allows and `jsonb` refuses.
    NulCharacter,
    /// More data in one container than a `JEntry` can address (256 MB).
    TooLarge,
    /// A number beyond what `numeric` holds (`1e200000`), which `numeric_in` refuses.
    NumberOutOfRange,
}

/// `value` as a complete `jsonb` varlena (4-byte header included), as `jsonb_in` would make it
/// from `value`'s JSON text.
///
/// The recursion is as deep as `value`'s nesting, which serde_json's parser limits (128).
pub(crate) fn encode(value: &Value) -> Result<Vec<u8>, Unrepresentable> {
    // Claims are a few hundred bytes: one allocation in the common case.
    let mut buffer = Vec::with_capacity(512);
    buffer.resize(VARHDRSZ, 0);
    let mut encoder = Encoder { buffer };
    match value {
        Value::Object(map) => {
            encoder.object(map)?;
        }
        Value::Array(items) => {
            encoder.container(JB_FARRAY, items.iter().map(Child::Value), items.len())?;
        }
        scalar => {
            encoder.container(
                JB_FARRAY | JB_FSCALAR,
                std::iter::once(Child::Value(scalar)),
                1,
            )?;
        }
    }
    let size = u32::try_from(encoder.buffer.len())
        .ok()
        .filter(|size| *size <= 0x3FFF_FFFF)
        .ok_or(Unrepresentable::TooLarge)?;
    encoder.buffer[..VARHDRSZ].copy_from_slice(&varlena_header(size).to_ne_bytes());
    Ok(encoder.buffer)
}

/// A child of a container: an object's key, or a value.
enum Child<'a> {
    Key(&'a str),
    Value(&'a Value),
}

struct Encoder {
    buffer: Vec<u8>,
}

impl Encoder {
    /// Pads the buffer with zeros to a multiple of 4 bytes; returns the padding's length.
    fn pad(&mut self) -> u32 {
        let padding = (4 - self.buffer.len() % 4) % 4;
        self.buffer.resize(self.buffer.len() + padding, 0);
        padding as u32
    }

    fn object(&mut self, map: &Map<String, Value>) -> Result<u32, Unrepresentable> {
        // Keys of a map are unique; jsonb orders them by length, then bytes.
        let mut pairs: Vec<(&String, &Value)> = map.iter().collect();
        pairs.sort_unstable_by(|(a, _), (b, _)| {
            a.len()
                .cmp(&b.len())
                .then_with(|| a.as_bytes().cmp(b.as_bytes()))
        });
        let children = pairs
            .iter()
            .map(|(key, _)| Child::Key(key))
            .chain(pairs.iter().map(|(_, value)| Child::Value(value)));
        self.container(JB_FOBJECT | pairs.len() as u32, children, pairs.len() * 2)
    }

    /// Writes a container of `count` children; returns its `JEntry`. `header` holds the flags,
    /// and for an object the number of pairs already; an array's count is added here.
    fn container<'a>(
        &mut self,
        header: u32,
        children: impl Iterator<Item = Child<'a>>,
        count: usize,
    ) -> Result<u32, Unrepresentable> {
        let count_field = u32::try_from(count)
            .ok()
            .filter(|count| *count <= JENTRY_OFFLENMASK)
            .ok_or(Unrepresentable::TooLarge)?;
        let header = if header & JB_FOBJECT != 0 {
            header
        } else {
            header | count_field
        };
        let start = self.buffer.len();
        self.pad();
        self.buffer.extend_from_slice(&header.to_ne_bytes());
        let entries = self.buffer.len();
        self.buffer.resize(entries + 4 * count, 0);
        let mut total: u32 = 0;
        for (index, child) in children.enumerate() {
            let entry = match child {
                Child::Key(key) => self.string(key)?,
                Child::Value(value) => self.value(value)?,
            };
            total = total
                .checked_add(entry & JENTRY_OFFLENMASK)
                .filter(|total| *total <= JENTRY_OFFLENMASK)
                .ok_or(Unrepresentable::TooLarge)?;
            let entry = if index % JB_OFFSET_STRIDE == 0 {
                (entry & JENTRY_TYPEMASK) | total | JENTRY_HAS_OFF
            } else {
                entry
            };
            let at = entries + 4 * index;
            self.buffer[at..at + 4].copy_from_slice(&entry.to_ne_bytes());
        }
        let length = u32::try_from(self.buffer.len() - start)
            .ok()
            .filter(|length| *length <= JENTRY_OFFLENMASK)
            .ok_or(Unrepresentable::TooLarge)?;
        Ok(JENTRY_ISCONTAINER | length)
    }

    fn value(&mut self, value: &Value) -> Result<u32, Unrepresentable> {
        match value {
            Value::Null => Ok(JENTRY_ISNULL),
            Value::Bool(false) => Ok(JENTRY_ISBOOL_FALSE),
            Value::Bool(true) => Ok(JENTRY_ISBOOL_TRUE),
            Value::String(text) => self.string(text),
            Value::Number(number) => self.number(number),
            Value::Array(items) => {
                self.container(JB_FARRAY, items.iter().map(Child::Value), items.len())
            }
            Value::Object(map) => self.object(map),
        }
    }

    fn string(&mut self, text: &str) -> Result<u32, Unrepresentable> {
        if text.contains('\0') {
            return Err(Unrepresentable::NulCharacter);
        }
        let length = u32::try_from(text.len())
            .ok()
            .filter(|length| *length <= JENTRY_OFFLENMASK)
            .ok_or(Unrepresentable::TooLarge)?;
        self.buffer.extend_from_slice(text.as_bytes());
        Ok(JENTRY_ISSTRING | length)
    }

    fn number(&mut self, number: &Number) -> Result<u32, Unrepresentable> {
        let numeric = numeric(number)?;
        let padding = self.pad();
        self.buffer.extend_from_slice(&numeric);
        let length = u32::try_from(numeric.len())
            .ok()
            .and_then(|length| length.checked_add(padding))
            .filter(|length| *length <= JENTRY_OFFLENMASK)
            .ok_or(Unrepresentable::TooLarge)?;
        Ok(JENTRY_ISNUMERIC | length)
    }
}

/// The `numeric` varlena `numeric_in` makes of `number`'s JSON text, or `NumberOutOfRange`
/// where `numeric_in` would raise an ERROR instead.
pub(crate) fn numeric(number: &Number) -> Result<Vec<u8>, Unrepresentable> {
    if let Some(value) = number.as_u64() {
        return Ok(integer_numeric(false, value));
    }
    if let Some(value) = number.as_i64() {
        return Ok(integer_numeric(value < 0, value.unsigned_abs()));
    }
    // Any other number: its JSON text, every digit kept (serde_json's arbitrary precision),
    // which `numeric_in` reads when it is within `numeric`'s range.
    let text = number.to_string();
    if !numeric_holds(&text) {
        return Err(Unrepresentable::NumberOutOfRange);
    }
    Ok(numeric_in(&text))
}

/// Whether `numeric_in` accepts `text`, a JSON number: it refuses one whose value has more
/// than 16 383 digits after the point (`NUMERIC_DSCALE_MAX`) or a weight beyond
/// `NUMERIC_WEIGHT_MAX` base-10000 digits, counted as `numeric_in` counts them (every digit
/// written, the exponent added), and an exponent beyond `INT_MAX / 2` before it counts.
pub(crate) fn numeric_holds(text: &str) -> bool {
    const MAX_EXPONENT: i64 = i32::MAX as i64 / 2;
    const MAX_DSCALE: i64 = 0x3FFF;
    // A weight of 0x7FFF base-10000 digits: decimal weights up to 4 * 0x7FFF + 3.
    const MAX_DECIMAL_WEIGHT: i64 = 4 * 0x7FFF + 3;
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], &unsigned[at + 1..]),
        None => (unsigned, "0"),
    };
    // JSON allows leading zeros in an exponent (`1e0001`), and so does `numeric_in`.
    let exponent_digits = exponent
        .trim_start_matches(['+', '-'])
        .trim_start_matches('0');
    // Far out of range (and parsing it could overflow).
    if exponent_digits.len() > 18 {
        return false;
    }
    let magnitude = if exponent_digits.is_empty() {
        0
    } else {
        let Ok(magnitude) = exponent_digits.parse::<i64>() else {
            return false;
        };
        magnitude
    };
    if magnitude >= MAX_EXPONENT {
        return false;
    }
    let exponent = if exponent.starts_with('-') {
        -magnitude
    } else {
        magnitude
    };
    let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let (Ok(integer_digits), Ok(fraction_digits)) =
        (i64::try_from(integer.len()), i64::try_from(fraction.len()))
    else {
        return false;
    };
    let dscale = (fraction_digits - exponent).max(0);
    let dweight = integer_digits - 1 + exponent;
    dscale <= MAX_DSCALE && dweight <= MAX_DECIMAL_WEIGHT
}

/// The `numeric` varlena `numeric_in` makes of `text`, a number's decimal text.
pub(crate) fn numeric_in(text: &str) -> Vec<u8> {
    let text = std::ffi::CString::new(text).expect("a number has no NUL byte");
    // SAFETY: numeric_in takes a cstring, a type OID (unused) and a typmod (-1: none); it returns
    // a palloc'd numeric with a 4-byte header (never compressed or short), whose size that
    // header gives; the bytes are copied before the memory context goes away.
    unsafe {
        let datum = pgrx::direct_function_call_as_datum(
            pg_sys::numeric_in,
            &[
                Some(pg_sys::Datum::from(text.as_ptr())),
                Some(pg_sys::Datum::from(pg_sys::InvalidOid)),
                Some(pg_sys::Datum::from(-1_i32)),
            ],
        )
        .expect("numeric_in never returns NULL");
        let varlena = datum.cast_mut_ptr::<pg_sys::varlena>();
        let size = pgrx::varlena::varsize_any(varlena);
        std::slice::from_raw_parts(varlena.cast::<u8>(), size).to_vec()
    }
}

/// Base of a numeric's digits.
const NBASE: u64 = 10_000;
const NUMERIC_SHORT: u16 = 0x8000;
const NUMERIC_SHORT_SIGN_MASK: u16 = 0x2000;

/// The `numeric` `numeric_in` makes of an integer's decimal text (`make_result` in
/// `src/backend/utils/adt/numeric.c`): the short form, a 4-byte varlena header, a 16-bit header
/// (short flag, sign, display scale 0, weight), then the base-10 000 digits, most significant
/// first, with trailing zero digits dropped (the weight keeps the magnitude). An integer of 64
/// bits has at most 5 digits (weight at most 4), so the short form always applies; zero has no
/// digits and a positive sign.
fn integer_numeric(negative: bool, magnitude: u64) -> Vec<u8> {
    let mut digits = [0_u16; 5];
    let mut count = 0;
    let mut rest = magnitude;
    while rest > 0 {
        digits[count] = (rest % NBASE) as u16;
        rest /= NBASE;
        count += 1;
    }
    // digits[..count] is least significant first; the weight is that of the most significant.
    let weight = count.saturating_sub(1) as u16;
    let trailing_zeros = digits[..count]
        .iter()
        .take_while(|digit| **digit == 0)
        .count();
    let kept = &digits[trailing_zeros..count];
    let sign = if negative && magnitude != 0 {
        NUMERIC_SHORT_SIGN_MASK
    } else {
        0
    };
    let header = NUMERIC_SHORT | sign | weight;
    let size = VARHDRSZ + 2 + 2 * kept.len();
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(&varlena_header(size as u32).to_ne_bytes());
    bytes.extend_from_slice(&header.to_ne_bytes());
    for digit in kept.iter().rev() {
        bytes.extend_from_slice(&digit.to_ne_bytes());
    }
    bytes
}

/// A 4-byte varlena header for a value of `size` bytes, header included (`SET_VARSIZE_4B`):
/// shifted on little-endian machines, as is on big-endian ones.
fn varlena_header(size: u32) -> u32 {
    if cfg!(target_endian = "little") {
        size << 2
    } else {
        size
    }
}

/// How deep [`write_text`] follows nested containers before it leaves a value to
/// `JsonbToCString`.
const TEXT_MAX_DEPTH: usize = 64;

/// Appends the JSON text of the `jsonb` value whose bytes after its varlena header are `body`,
/// exactly as `jsonb_out` writes it (`", "` between items, `": "` after keys, keys in stored
/// order, strings escaped as `escape_json` escapes them, numbers by `numeric_out`). Returns
/// false, having appended nothing, for a value it does not read (nesting deeper than
/// [`TEXT_MAX_DEPTH`], or a layout whose bounds do not hold): the caller then asks PostgreSQL.
///
/// A check's answer carries the row's metadata as text; `JsonbToCString` builds it through an
/// iterator that pallocs a frame per container and a `StringInfo` that grows by doubling:
/// reading the layout directly saves about 3 000 instructions a session check whose metadata
/// holds an IP, a user agent and a device (`scripts/callgrind.sh`).
pub(crate) fn write_text(body: &[u8], out: &mut Vec<u8>) -> bool {
    let start = out.len();
    let written = Container::at(body).and_then(|root| {
        if root.header & JB_FSCALAR == 0 {
            return root.write(out, 0);
        }
        // A lone scalar at the top: an array of one element, written as the element.
        if root.count != 1 || root.header & JB_FARRAY == 0 {
            return None;
        }
        root.children(0).next()??.write(out, 0)
    });
    if written.is_none() {
        out.truncate(start);
    }
    written.is_some()
}

/// A `JsonbContainer`: its header word, its `JEntry` words, then its children's data.
#[derive(Clone, Copy)]
struct Container<'a> {
    bytes: &'a [u8],
    header: u32,
    /// Elements of an array, pairs of an object.
    count: usize,
    /// `JEntry` words: `count` for an array, twice that for an object (keys, then values).
    entries: usize,
}

/// One child of a container: its `JEntry` type and its data.
struct Node<'a> {
    kind: u32,
    data: &'a [u8],
    /// The data's offset from the start of the container's data area, for the alignment of
    /// numerics and containers.
    offset: usize,
}

/// Iterates children of a container in order, from a given index.
struct Nodes<'a> {
    container: Container<'a>,
    index: usize,
    end: usize,
    offset: usize,
}

fn word(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

impl<'a> Container<'a> {
    fn at(bytes: &'a [u8]) -> Option<Self> {
        let header = word(bytes, 0)?;
        let count = usize::try_from(header & 0x0FFF_FFFF).ok()?;
        let entries = if header & JB_FOBJECT != 0 {
            count.checked_mul(2)?
        } else if header & JB_FARRAY != 0 {
            count
        } else {
            return None;
        };
        // Every entry word must be there before any is read.
        bytes.get(..entries.checked_mul(4)?.checked_add(4)?)?;
        Some(Self {
            bytes,
            header,
            count,
            entries,
        })
    }

    fn entry(&self, index: usize) -> u32 {
        word(self.bytes, 4 + 4 * index).expect("entries are checked in `at`")
    }

    /// Where child `index`'s data starts in the data area (`getJsonbOffset`).
    fn offset_of(&self, index: usize) -> Option<usize> {
        let mut offset: usize = 0;
        for i in (0..index).rev() {
            let entry = self.entry(i);
            offset = offset.checked_add((entry & JENTRY_OFFLENMASK) as usize)?;
            if entry & JENTRY_HAS_OFF != 0 {
                break;
            }
        }
        Some(offset)
    }

    /// Children `from..` up to the end of the array, or of the keys when `from` is a key of an
    /// object, or of the values when it is a value.
    fn children(&self, from: usize) -> Nodes<'a> {
        let end = if self.header & JB_FOBJECT != 0 && from < self.count {
            self.count
        } else {
            self.entries
        };
        Nodes {
            container: *self,
            index: from,
            end,
            offset: self.offset_of(from).unwrap_or(usize::MAX),
        }
    }

    fn write(&self, out: &mut Vec<u8>, depth: usize) -> Option<()> {
        if depth >= TEXT_MAX_DEPTH {
            return None;
        }
        if self.header & JB_FOBJECT != 0 {
            out.push(b'{');
            let values = self.children(self.count);
            for (i, (key, value)) in self.children(0).zip(values).enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                let key = key?;
                if key.kind != JENTRY_ISSTRING {
                    return None;
                }
                escape_json(out, key.data)?;
                out.extend_from_slice(b": ");
                value?.write(out, depth + 1)?;
            }
            out.push(b'}');
        } else {
            out.push(b'[');
            for (i, element) in self.children(0).enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                element?.write(out, depth + 1)?;
            }
            out.push(b']');
        }
        Some(())
    }
}

impl<'a> Iterator for Nodes<'a> {
    /// `None` inside when a bound does not hold.
    type Item = Option<Node<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.index >= self.end {
            return None;
        }
        let entry = self.container.entry(self.index);
        self.index += 1;
        let start = self.offset;
        let field = (entry & JENTRY_OFFLENMASK) as usize;
        let end = if entry & JENTRY_HAS_OFF != 0 {
            field
        } else {
            start.saturating_add(field)
        };
        self.offset = end;
        let base = 4 + 4 * self.container.entries;
        let data = base
            .checked_add(start)
            .zip(base.checked_add(end))
            .filter(|(from, to)| from <= to)
            .and_then(|(from, to)| self.container.bytes.get(from..to));
        Some(data.map(|data| Node {
            kind: entry & JENTRY_TYPEMASK,
            data,
            offset: start,
        }))
    }
}

impl Node<'_> {
    /// The data after the padding that aligns a numeric or container to 4 bytes.
    fn aligned(&self) -> Option<&[u8]> {
        self.data
            .get(self.offset.next_multiple_of(4) - self.offset..)
    }

    fn write(&self, out: &mut Vec<u8>, depth: usize) -> Option<()> {
        match self.kind {
            JENTRY_ISSTRING => escape_json(out, self.data)?,
            JENTRY_ISBOOL_TRUE => out.extend_from_slice(b"true"),
            JENTRY_ISBOOL_FALSE => out.extend_from_slice(b"false"),
            JENTRY_ISNULL => out.extend_from_slice(b"null"),
            JENTRY_ISNUMERIC => write_numeric(out, self.aligned()?)?,
            JENTRY_ISCONTAINER => Container::at(self.aligned()?)?.write(out, depth)?,
            _ => return None,
        }
        Some(())
    }
}

/// `numeric_out`'s text of the numeric varlena at the start of `data`.
fn write_numeric(out: &mut Vec<u8>, data: &[u8]) -> Option<()> {
    let first = *data.first()?;
    let size = if first & 0x01 == 0x01 {
        // A one-byte header (0x01 alone would be an out-of-line pointer, never in a jsonb).
        (first != 0x01).then_some(usize::from(first >> 1))?
    } else {
        let header = word(data, 0)?;
        (header & 0x03 == 0).then_some((header >> 2) as usize)?
    };
    let numeric = data.get(..size)?;
    // SAFETY: numeric_out reads the value's fields in place: it gets an aligned palloc'd copy of
    // a complete numeric varlena (checked header and size), as PostgreSQL gives it a detoasted
    // one, and returns its text as a palloc'd C string. Both are freed here; on an ERROR, with
    // the memory context.
    unsafe {
        let copy = pg_sys::palloc(numeric.len()).cast::<u8>();
        std::ptr::copy_nonoverlapping(numeric.as_ptr(), copy, numeric.len());
        let text = direct_function_call::<&CStr>(pg_sys::numeric_out, &[Some(copy.into())])
            .expect("numeric_out returns text for a value");
        out.extend_from_slice(text.to_bytes());
        pg_sys::pfree(text.as_ptr().cast_mut().cast());
        pg_sys::pfree(copy.cast());
    }
    Some(())
}

/// A JSON string as PostgreSQL's `escape_json` writes it. `None` for a NUL byte, which no
/// `jsonb` string holds (`escape_json` would stop there).
fn escape_json(out: &mut Vec<u8>, text: &[u8]) -> Option<()> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut plain = 0;
    for (i, &byte) in text.iter().enumerate() {
        let escaped: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0C => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0 => return None,
            byte if byte < b' ' => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0x0F)],
            ],
            _ => continue,
        };
        out.extend_from_slice(&text[plain..i]);
        out.extend_from_slice(escaped);
        plain = i + 1;
    }
    out.extend_from_slice(&text[plain..]);
    out.push(b'"');
    Some(())
}
