//! The packed form of a check's answer: one `bytea` in place of a composite row, which
//! PostgreSQL sends without looking up each field's output function. The extension writes it
//! (`auth_pg`'s `*_packed` functions) and the client reads it, from this one definition of the
//! layout (also in the README, "The packed form"):
//!
//! ```text
//! answer  = version:u8 (= VERSION), field*    one field per attribute of the row type, in order
//! field   = NULL                              0x00
//!         | TEXT len:u32 byte{len}            text, UTF-8
//!         | INT8 i64                          bigint
//!         | TIMESTAMPTZ i64                   timestamptz: microseconds since 2000-01-01 UTC
//!         | TEXT_ARRAY n:u32 (len:u32 byte{len})*n   text[], its elements in storage order
//!         | JSONB len:u32 byte{len}           jsonb, as JSON text
//! ```
//!
//! Integers are big-endian. An array element cannot be NULL in an answer (scopes are checked
//! when written); one that a hand edit made NULL is written with the length [`NULL_ELEMENT`].

/// The version byte every packed answer starts with.
pub const VERSION: u8 = 1;

/// The length written for a NULL array element.
pub const NULL_ELEMENT: u32 = u32::MAX;

/// PostgreSQL's epoch, 2000-01-01 00:00:00 UTC, in seconds after the Unix epoch: a
/// `TIMESTAMPTZ` field counts microseconds from it.
pub const POSTGRES_EPOCH_UNIX_SECONDS: i64 = 946_684_800;

/// The tag byte before each field.
pub mod tag {
    /// A NULL field (no bytes follow).
    pub const NULL: u8 = 0;
    /// A `text` field.
    pub const TEXT: u8 = b't';
    /// A `bigint` field.
    pub const INT8: u8 = b'i';
    /// A `timestamptz` field.
    pub const TIMESTAMPTZ: u8 = b'T';
    /// A `text[]` field.
    pub const TEXT_ARRAY: u8 = b'a';
    /// A `jsonb` field.
    pub const JSONB: u8 = b'j';
}
