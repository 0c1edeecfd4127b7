//! Test-only keys, generated with `openssl` for auth_pg's tests and benchmarks (the other crates
//! reach them through the `test-keys` feature). They are public in this repository: never use
//! them for anything real.

use super::algorithm::Algorithm;

macro_rules! key {
    ($name:literal) => {
        include_str!(concat!("../../tests/keys/", $name))
    };
}

/// The RSA 2048 public key, PEM.
pub const RSA_PUBLIC: &str = key!("rsa2048.public.pem");
/// The RSA 2048 private key, PEM.
pub const RSA_PRIVATE: &str = key!("rsa2048.private.pem");
/// The RSA 2048 public key in PKCS#1 form, PEM.
pub const RSA_PUBLIC_PKCS1: &str = key!("rsa2048.public.pkcs1.pem");
/// The RSA 2048 private key in PKCS#1 form, PEM.
pub const RSA_PRIVATE_PKCS1: &str = key!("rsa2048.private.pkcs1.pem");
/// The RSA 2048 public key (another key pair), PEM.
pub const RSA_OTHER_PUBLIC: &str = key!("rsa2048.other.public.pem");
/// An RSA 1024 public key (too short to be accepted), PEM.
pub const RSA1024_PUBLIC: &str = key!("rsa1024.public.pem");
/// The P-256 public key, PEM.
pub const P256_PUBLIC: &str = key!("p256.public.pem");
/// The P-256 private key, PEM.
pub const P256_PRIVATE: &str = key!("p256.private.pem");
/// The P-256 private key in SEC1 form, PEM.
pub const P256_PRIVATE_SEC1: &str = key!("p256.private.sec1.pem");
/// The P-384 public key, PEM.
pub const P384_PUBLIC: &str = key!("p384.public.pem");
/// The P-384 private key, PEM.
pub const P384_PRIVATE: &str = key!("p384.private.pem");
/// The P-521 public key, PEM.
pub const P521_PUBLIC: &str = key!("p521.public.pem");
/// The Ed25519 public key, PEM.
pub const ED25519_PUBLIC: &str = key!("ed25519.public.pem");
/// The Ed25519 private key, PEM.
pub const ED25519_PRIVATE: &str = key!("ed25519.private.pem");
/// The Ed25519 public key (another key pair), PEM.
pub const ED25519_OTHER_PUBLIC: &str = key!("ed25519.other.public.pem");

/// A shared secret long enough for HS512.
pub const HMAC_SECRET: &str =
    "test-only shared secret, long enough for HS512: 0123456789abcdef0123456789";

/// Every asymmetric algorithm with its public and private PEM.
pub fn asymmetric_keys() -> Vec<(Algorithm, &'static str, &'static str)> {
    Algorithm::ALL
        .into_iter()
        .filter(|a| !a.is_symmetric())
        .map(|algorithm| {
            let (public, private) = match algorithm {
                Algorithm::ES256 => (P256_PUBLIC, P256_PRIVATE),
                Algorithm::ES384 => (P384_PUBLIC, P384_PRIVATE),
                Algorithm::EdDSA => (ED25519_PUBLIC, ED25519_PRIVATE),
                _ => (RSA_PUBLIC, RSA_PRIVATE),
            };
            (algorithm, public, private)
        })
        .collect()
}

/// Every algorithm with a key text that can sign (a secret or a private PEM).
pub fn signing_texts() -> Vec<(Algorithm, &'static str)> {
    let mut texts: Vec<_> = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]
        .into_iter()
        .map(|algorithm| (algorithm, HMAC_SECRET))
        .collect();
    texts.extend(
        asymmetric_keys()
            .into_iter()
            .map(|(algorithm, _, private)| (algorithm, private)),
    );
    texts
}

/// Every algorithm with a key text that signs and one that only verifies (for HMAC, the same
/// secret twice).
pub fn every_algorithm() -> Vec<(Algorithm, &'static str, &'static str)> {
    let mut keys: Vec<_> = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]
        .into_iter()
        .map(|algorithm| (algorithm, HMAC_SECRET, HMAC_SECRET))
        .collect();
    keys.extend(
        asymmetric_keys()
            .into_iter()
            .map(|(algorithm, public, private)| (algorithm, private, public)),
    );
    keys
}
