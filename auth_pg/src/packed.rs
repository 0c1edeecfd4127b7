//! The packed form of a check's answer: one `bytea` instead of a composite.
//!
//! Sending a composite costs PostgreSQL a lookup of every field's binary output function on
//! every query (`record_send` caches them only for the life of one portal), and an array or
//! `jsonb` field looks up its element's output function again inside its own send function.
//! For a check that is a tenth of the server's work per call. The `*_packed` functions return
//! the same answer as the row-returning ones, written by this module in a fixed layout that
//! needs no lookup; `auth_client` reads it. The layout is [`auth_core::packed`]'s.

use auth_core::packed::{NULL_ELEMENT, VERSION, tag};
use pgrx::IntoDatum;
use pgrx::pg_sys::{self, Datum};

use crate::fmgr;

/// How one attribute of an answer is written; the list for an answer type is checked against
/// the type's attributes in the catalog by a test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Field {
    Text,
    Int8,
    TimestampTz,
    TextArray,
    Jsonb,
}

impl Field {
    /// The type the attribute has in the row type.
    #[cfg_attr(not(any(test, feature = "pg_test")), allow(dead_code))]
    pub(crate) fn type_oid(self) -> pg_sys::Oid {
        match self {
            Self::Text => pg_sys::TEXTOID,
            Self::Int8 => pg_sys::INT8OID,
            Self::TimestampTz => pg_sys::TIMESTAMPTZOID,
            Self::TextArray => pg_sys::TEXTARRAYOID,
            Self::Jsonb => pg_sys::JSONBOID,
        }
    }

    fn tag(self) -> u8 {
        match self {
            Self::Text => tag::TEXT,
            Self::Int8 => tag::INT8,
            Self::TimestampTz => tag::TIMESTAMPTZ,
            Self::TextArray => tag::TEXT_ARRAY,
            Self::Jsonb => tag::JSONB,
        }
    }
}

/// Packs an answer: `values[0]` is the status (text), `values[i + 1]` is written as
/// `fields[i]`. By-reference values may point into a shared buffer: they are copied.
pub(crate) fn pack(fields: &[Field], values: &[Datum], nulls: &[bool]) -> Datum {
    assert!(
        values.len() == fields.len() + 1 && nulls.len() == values.len(),
        "answer arity"
    );
    let mut out = Vec::with_capacity(256);
    out.push(VERSION);
    let kinds = std::iter::once(Field::Text).chain(fields.iter().copied());
    for ((field, &value), &null) in kinds.zip(values).zip(nulls) {
        if null {
            out.push(tag::NULL);
        } else {
            out.push(field.tag());
            // SAFETY: the value is non-NULL and of the attribute's type, which `fields` states
            // (checked against the catalog by a test).
            unsafe { write_value(&mut out, field, value) };
        }
    }
    out.as_slice()
        .into_datum()
        .expect("a byte slice is never NULL")
}

/// Writes `value` as `field`.
///
/// # Safety
///
/// `value` must be a non-NULL datum of `field`'s type.
unsafe fn write_value(out: &mut Vec<u8>, field: Field, value: Datum) {
    // SAFETY: as documented; detoasting copies compressed or external values into the current
    // memory context, which outlives this call.
    unsafe {
        match field {
            Field::Text => write_bytes(out, fmgr::varlena_bytes(value.cast_mut_ptr())),
            Field::Int8 | Field::TimestampTz => {
                // A by-value 64-bit datum; its bits are the integer's.
                out.extend_from_slice(&(value.value() as u64).to_be_bytes());
            }
            Field::TextArray => {
                let elements = fmgr::text_array_datum(value);
                write_len(out, elements.len());
                for element in elements {
                    match element {
                        Some(bytes) => write_bytes(out, bytes),
                        None => out.extend_from_slice(&NULL_ELEMENT.to_be_bytes()),
                    }
                }
            }
            Field::Jsonb => {
                // The text's length goes first: write a placeholder, then the length once known.
                let at = out.len();
                write_len(out, 0);
                if crate::jsonb::write_text(fmgr::varlena_bytes(value.cast_mut_ptr()), out) {
                    let len = len_bytes(out.len() - at - 4);
                    out[at..at + 4].copy_from_slice(&len);
                    return;
                }
                out.truncate(at);
                let jsonb = pg_sys::pg_detoast_datum(value.cast_mut_ptr()).cast::<pg_sys::Jsonb>();
                let size = pgrx::varlena::varsize_any(jsonb.cast());
                let text = pg_sys::JsonbToCString(
                    std::ptr::null_mut(),
                    &raw mut (*jsonb).root,
                    i32::try_from(size).unwrap_or(i32::MAX),
                );
                write_bytes(out, std::ffi::CStr::from_ptr(text).to_bytes());
                pg_sys::pfree(text.cast());
            }
        }
    }
}

fn write_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&len_bytes(len));
}

/// A length as the layout writes it.
fn len_bytes(len: usize) -> [u8; 4] {
    // A value of a row is under 1 GB, so its length fits.
    u32::try_from(len)
        .expect("a value's length fits in 32 bits")
        .to_be_bytes()
}

fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_len(out, bytes.len());
    out.extend_from_slice(bytes);
}
