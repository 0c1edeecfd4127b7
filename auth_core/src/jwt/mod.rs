//! JSON Web Tokens (RFC 7519): keys, verification, signing, JWKS import and a cache of
//! verified tokens, with no Postgres.
//!
//! The extension wraps this module: a key table row becomes a [`KeyEntry`], `jwt_verify` is
//! [`parse_header`] (to find the key by `kid`) then [`verify`] or [`verify_with_key`], and a
//! per-backend [`VerifiedCache`] skips the signature for a token seen before.
//!
//! # Decisions
//!
//! - **Cryptography** is `jsonwebtoken` 11 with its `aws_lc_rs` backend (aws-lc). jsonwebtoken
//!   reads key texts (PEM, JWK), writes public JWKs and signs. Signatures are verified with the
//!   key prepared once when it is read ([`VerifyingKey`]): an HMAC key, an RSA or EC key parsed
//!   and checked by aws-lc (the library jsonwebtoken's backend calls), an Ed25519 point
//!   decompressed by `ed25519-dalek`; `jsonwebtoken::crypto::verify` would redo that on every
//!   call. aws-lc rather than the pure-Rust `rust_crypto` backend because it verifies RS256
//!   about 10x and ES256 about 6x faster (BENCHMARKS.md); the C toolchain it builds with is
//!   needed by pgrx anyway. This module splits the token and reads the header and the claims
//!   itself; no `Validation` of jsonwebtoken runs, so none of its claim checks (which ignore a
//!   claim of the wrong type) can stand in for the strict ones here.
//! - **The key decides the algorithm.** A token whose header names another algorithm than its
//!   key's is `bad_signature`, before any cryptography: no algorithm confusion (an RSA public
//!   key used as an HMAC secret, RS256 against PS256). `none` is never an algorithm.
//! - **Key text.** A key is one text: a shared secret (HS*), a PEM or a JWK. A private key PEM
//!   both signs and verifies: jsonwebtoken cannot read a private PEM as a verifying key, but it
//!   can write the public part of a private key as a JWK, which it reads back, so a key table
//!   needs one column, and [`ParsedKey::can_sign`] tells whether a row can sign. Public PEMs
//!   and public JWKs only verify. Private keys are PKCS#8 (`PRIVATE KEY`), or PKCS#1
//!   (`RSA PRIVATE KEY`) for RSA; SEC1 (`EC PRIVATE KEY`) is refused with the `openssl` command
//!   that converts it. A private key is signed with and verified once when it is read.
//! - **HMAC secrets** are the text's bytes, at least the hash's size (32, 48, 64 bytes for
//!   HS256, HS384, HS512), as RFC 7518 section 3.2 requires. A PEM or an asymmetric JWK is never
//!   a secret; an `oct` JWK is one.
//! - **RSA keys** have 2048 to 4096 bits: RFC 7518's minimum, and the largest size in common
//!   use (a verification's cost grows with the modulus).
//! - **Claims** are checked with strict types after the signature: `exp`, `nbf` and `iat` must
//!   be numbers, `iss` and `sub` strings, `aud` a string or an array of strings; a claim of the
//!   wrong type is `malformed`, never ignored. `exp` is required unless the [`Policy`] says
//!   otherwise. A token is valid while `now <= exp + leeway`, and from `nbf - leeway` and
//!   `iat - leeway`. `iss` and `aud` are checked when the key names an issuer or audience; a
//!   key that names none accepts any (RFC 7519 section 4.1.3 would refuse a token with an `aud`
//!   the verifier does not claim, which would make every inline key without an audience refuse
//!   most real tokens: name an audience on keys shared between services).
//! - **The header** is read only for `alg` and `kid`; `jku`, `jwk`, `x5u` and `x5c` are
//!   ignored (the key always comes from the caller), and `crit` is refused, as no extension is
//!   understood.
//! - **Limits** come before the work they bound: the token's size is checked before anything
//!   reads it, JSON is at most [`MAX_JSON_DEPTH`] levels deep (and `serde_json` stops at 128
//!   levels while parsing, so no input overflows the stack), key texts, JWKS documents and
//!   `kid`s have maximum sizes.
//! - **Errors never quote secrets**: key errors say what is wrong with a key, never any part of
//!   it; JWKS errors name a key by its index; `Debug` of every key type shows its algorithm (and
//!   `kid`) only.
//! - **The cache** holds only valid verifications, keyed by the BLAKE3 hash of the token, and
//!   re-checks the time rules at every hit; it evicts with CLOCK (see [`VerifiedCache`]).

mod algorithm;
mod cache;
mod jwks;
mod keys;
mod sign;
#[cfg(any(test, feature = "test-keys"))]
pub mod test_keys;
mod verify;

pub use algorithm::{Algorithm, AlgorithmError, KeyKind};
pub use cache::{DEFAULT_CACHE_CAPACITY, TokenKey, VerifiedCache};
pub use jwks::{ImportedKey, JwksError, MAX_JWKS_BYTES, MAX_JWKS_KEYS, import_jwks};
pub use keys::{
    KeyEntry, KeyError, KeyForm, MAX_KEY_TEXT_BYTES, MAX_RSA_BITS, MIN_RSA_BITS, ParsedKey,
    SigningKey, VerifyingKey,
};
pub use sign::{SignError, sign};
pub use verify::{
    DEFAULT_LEEWAY_SECONDS, DEFAULT_MAX_TOKEN_BYTES, MAX_JSON_DEPTH, MAX_KID_BYTES, Policy, Status,
    TokenHeader, Verification, parse_header, verify, verify_with_key,
};
