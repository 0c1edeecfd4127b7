//! The pure logic of auth_pg, with no Postgres and no I/O beyond the operating system's random
//! number generator: credential formats and checksums, and credential hashing.
//!
//! The extension (`auth_pg`) and the client (`auth_client`) both build on this crate, so that a
//! malformed credential is recognised the same way on both sides of the wire, and so that this
//! logic is tested with plain `cargo test`.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod api_keys;
mod base62;
pub mod credential;
pub mod hash;
pub mod input;
pub mod invalidation;
pub mod jwt;
pub mod packed;
pub mod permissions;

pub use credential::{
    Credential, CredentialKind, FormatError, check_format, check_shape, random_id,
};
pub use hash::{HashKey, KeyFormatError, credential_hash};
pub use input::{InputError, IntervalParts};
pub use invalidation::Invalidation;
