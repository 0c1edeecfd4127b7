//! Importing a JWKS document (RFC 7517 section 5): `{"keys": [JWK, ...]}`.

use std::collections::HashMap;
use std::fmt;

use serde_json::{Map, Value};

use super::algorithm::{Algorithm, AlgorithmError, KeyKind};
use super::keys::{KeyError, VerifyingKey, jwk_kind};
use super::verify::MAX_KID_BYTES;

/// The largest JWKS document accepted, in bytes.
pub const MAX_JWKS_BYTES: usize = 512 * 1024;
/// The most keys in one JWKS document.
pub const MAX_JWKS_KEYS: usize = 256;

/// The members of a JWK that are kept in [`ImportedKey::key_text`]. Certificates (`x5c`) and
/// the like are dropped; `d` is kept only so that a private JWK is refused, not stripped.
const KEPT_MEMBERS: [&str; 11] = [
    "kty", "kid", "use", "alg", "crv", "x", "y", "n", "e", "k", "d",
];

/// One signature key of a JWKS document.
///
/// `Debug` shows the kid and algorithm only: the key text of an `oct` key is a secret.
#[derive(Clone)]
pub struct ImportedKey {
    /// The key's `kid`.
    pub kid: String,
    /// The key's algorithm: its `alg`, or the only one its curve allows.
    pub algorithm: Algorithm,
    /// The JWK reduced to the members that make the key (`kty`, `kid`, `use`, `alg`, and
    /// `crv`/`x`/`y`, `n`/`e` or `k`), as compact JSON: what a key table stores. Reading it
    /// with [`VerifyingKey::parse`] gives [`Self::key`] again.
    pub key_text: String,
    /// The key.
    pub key: VerifyingKey,
}

impl fmt::Debug for ImportedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SECURITY: `key_text` of an `oct` key is the shared secret.
        f.debug_struct("ImportedKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Why a JWKS document was refused. A key is named by its index in `keys`, never by its
/// content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// The document is empty.
    #[error("the JWKS document must not be empty")]
    Empty,
    /// The document is longer than [`MAX_JWKS_BYTES`].
    #[error("the JWKS document is longer than {limit} bytes")]
    TooLong {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The document is not JSON.
    #[error("the JWKS document is not valid JSON")]
    NotJson,
    /// The document is not an object with a `keys` array.
    #[error("the JWKS document must be a JSON object with a \"keys\" array")]
    NotAKeySet,
    /// More keys than [`MAX_JWKS_KEYS`].
    #[error("the JWKS document has more than {limit} keys")]
    TooManyKeys {
        /// The limit.
        limit: usize,
    },
    /// No key is a signature key (all are `"use": "enc"`, or there are none).
    #[error("the JWKS document has no signature key")]
    NoSignatureKeys,
    /// An element of `keys` is not a JSON object.
    #[error("keys[{index}] is not a JSON object")]
    NotAnObject {
        /// The element's index.
        index: usize,
    },
    /// A key has no `kid`.
    #[error("keys[{index}] has no \"kid\"")]
    MissingKid {
        /// The key's index.
        index: usize,
    },
    /// A key's `kid` is not a string of 1 to [`MAX_KID_BYTES`] bytes without control
    /// characters.
    #[error(
        "keys[{index}] has a \"kid\" that is not a string of 1 to {MAX_KID_BYTES} bytes \
         without control characters"
    )]
    BadKid {
        /// The key's index.
        index: usize,
    },
    /// Two keys have the same `kid`.
    #[error("keys[{index}] has the same \"kid\" as keys[{first}]")]
    DuplicateKid {
        /// The second key's index.
        index: usize,
        /// The first key's index.
        first: usize,
    },
    /// A key has no `alg`, and its type allows more than one algorithm (RSA, oct).
    #[error("keys[{index}] has no \"alg\", and its key type allows more than one")]
    MissingAlgorithm {
        /// The key's index.
        index: usize,
    },
    /// A key's `alg` is not an accepted algorithm.
    #[error("keys[{index}]: {source}")]
    Algorithm {
        /// The key's index.
        index: usize,
        /// Why.
        source: AlgorithmError,
    },
    /// A key is refused.
    #[error("keys[{index}]: {source}")]
    Key {
        /// The key's index.
        index: usize,
        /// Why.
        source: KeyError,
    },
}

/// Reads a JWKS document: every key must have a `kid` (unique in the document) and an `alg`,
/// except where the key type allows only one algorithm (EC P-256: ES256, EC P-384: ES384, OKP
/// Ed25519: EdDSA). Keys marked `"use": "enc"` are encryption keys, not signature keys, and are
/// skipped (identity providers publish both in one document). Any other refused key refuses the
/// whole document, named by its index.
pub fn import_jwks(document: &str) -> Result<Vec<ImportedKey>, JwksError> {
    if document.trim().is_empty() {
        return Err(JwksError::Empty);
    }
    if document.len() > MAX_JWKS_BYTES {
        return Err(JwksError::TooLong {
            limit: MAX_JWKS_BYTES,
        });
    }
    let document: Value = serde_json::from_str(document).map_err(|_| JwksError::NotJson)?;
    let keys = document
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(JwksError::NotAKeySet)?;
    if keys.len() > MAX_JWKS_KEYS {
        return Err(JwksError::TooManyKeys {
            limit: MAX_JWKS_KEYS,
        });
    }
    let mut imported = Vec::with_capacity(keys.len());
    let mut first_index: HashMap<&str, usize> = HashMap::new();
    for (index, element) in keys.iter().enumerate() {
        let Value::Object(jwk) = element else {
            return Err(JwksError::NotAnObject { index });
        };
        if jwk.get("use").is_some_and(|usage| usage == "enc") {
            continue;
        }
        let kid = match jwk.get("kid") {
            None => return Err(JwksError::MissingKid { index }),
            Some(Value::String(kid))
                if !kid.is_empty()
                    && kid.len() <= MAX_KID_BYTES
                    && !kid.chars().any(char::is_control) =>
            {
                kid.as_str()
            }
            Some(_) => return Err(JwksError::BadKid { index }),
        };
        if let Some(&first) = first_index.get(kid) {
            return Err(JwksError::DuplicateKid { index, first });
        }
        first_index.insert(kid, index);
        let algorithm = match jwk.get("alg") {
            Some(Value::String(alg)) => {
                Algorithm::parse(alg).map_err(|source| JwksError::Algorithm { index, source })?
            }
            Some(_) => {
                return Err(JwksError::Algorithm {
                    index,
                    source: AlgorithmError::Unknown,
                });
            }
            None => only_algorithm(jwk).ok_or(JwksError::MissingAlgorithm { index })?,
        };
        let kept: Map<String, Value> = KEPT_MEMBERS
            .iter()
            .filter_map(|member| Some(((*member).to_owned(), jwk.get(*member)?.clone())))
            .collect();
        let key_text = Value::Object(kept).to_string();
        let key = VerifyingKey::parse(algorithm, &key_text)
            .map_err(|source| JwksError::Key { index, source })?;
        imported.push(ImportedKey {
            kid: kid.to_owned(),
            algorithm,
            key_text,
            key,
        });
    }
    if imported.is_empty() {
        return Err(JwksError::NoSignatureKeys);
    }
    Ok(imported)
}

/// The algorithm of a JWK without `alg`, when its type allows only one.
fn only_algorithm(jwk: &Map<String, Value>) -> Option<Algorithm> {
    let kty = jwk.get("kty").and_then(Value::as_str)?;
    match jwk_kind(kty, jwk.get("crv").and_then(Value::as_str)) {
        KeyKind::EcP256 => Some(Algorithm::ES256),
        KeyKind::EcP384 => Some(Algorithm::ES384),
        KeyKind::Ed25519 => Some(Algorithm::EdDSA),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    use super::super::test_keys::*;
    use super::super::{KeyEntry, Policy, SigningKey, Status, sign, verify};
    use super::*;

    fn public_jwk(algorithm: Algorithm, pem: &str, kid: &str) -> Value {
        VerifyingKey::parse(algorithm, pem)
            .expect("PEM")
            .public_jwk(Some(kid))
            .expect("asymmetric")
    }

    fn oct(kid: &str) -> Value {
        json!({"kty": "oct", "kid": kid, "alg": "HS512", "k": URL_SAFE_NO_PAD.encode(HMAC_SECRET)})
    }

    fn import_error(document: &str) -> Result<(), JwksError> {
        import_jwks(document).map(drop)
    }

    fn document(keys: Vec<Value>) -> String {
        json!({ "keys": keys }).to_string()
    }

    #[test]
    fn rsa_ec_okp_and_oct_keys_are_imported_and_verify() {
        let mut keys: Vec<Value> = asymmetric_keys()
            .into_iter()
            .map(|(algorithm, public, _)| public_jwk(algorithm, public, algorithm.as_str()))
            .collect();
        keys.push(oct("HS512"));
        // An RSA key as an identity provider publishes it, with a certificate chain.
        let mut with_x5c = public_jwk(Algorithm::RS256, RSA_PUBLIC, "with-chain");
        with_x5c["x5c"] = json!(["MIIB..."]);
        with_x5c["x5t"] = json!("abc");
        keys.push(with_x5c);
        let imported = import_jwks(&document(keys)).expect("valid JWKS");
        assert_eq!(imported.len(), 11);
        let table: Vec<KeyEntry> = imported
            .iter()
            .map(|key| KeyEntry::new(Some(key.kid.clone()), key.key.clone()))
            .collect();
        for (algorithm, text) in signing_texts() {
            let kid = algorithm.as_str();
            let imported_key = imported.iter().find(|k| k.kid == kid);
            let Some(imported_key) = imported_key else {
                continue;
            };
            assert_eq!(imported_key.algorithm, algorithm);
            // The stored text reads back as the same key.
            let again = VerifyingKey::parse(algorithm, &imported_key.key_text).expect("key text");
            assert_eq!(again.public_jwk(None), imported_key.key.public_jwk(None));
            let token = sign(
                &json!({"exp": 1_900_000_000}),
                &SigningKey::parse(algorithm, text).expect("signing"),
                Some(kid),
            )
            .expect("sign");
            let verification = verify(
                &token,
                |kid| table.iter().find(|e| e.kid.as_deref() == kid),
                &Policy::default(),
                1_800_000_000,
            );
            assert_eq!(verification.status, Status::Valid, "{algorithm}");
        }
        let stripped = imported
            .iter()
            .find(|k| k.kid == "with-chain")
            .expect("imported");
        assert!(!stripped.key_text.contains("x5c"));
        assert!(!stripped.key_text.contains("MIIB"));
        assert!(!stripped.key_text.contains("x5t"));
    }

    #[test]
    fn alg_is_derived_only_where_unambiguous() {
        let mut keys = Vec::new();
        for (algorithm, pem) in [
            (Algorithm::ES256, P256_PUBLIC),
            (Algorithm::ES384, P384_PUBLIC),
            (Algorithm::EdDSA, ED25519_PUBLIC),
        ] {
            let mut jwk = public_jwk(algorithm, pem, algorithm.as_str());
            jwk.as_object_mut().expect("object").remove("alg");
            keys.push(jwk);
        }
        let imported = import_jwks(&document(keys.clone())).expect("derivable");
        let algorithms: Vec<_> = imported.iter().map(|k| k.algorithm).collect();
        assert_eq!(
            algorithms,
            [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA]
        );
        let mut rsa = public_jwk(Algorithm::RS256, RSA_PUBLIC, "rsa");
        rsa.as_object_mut().expect("object").remove("alg");
        keys.push(rsa);
        assert_eq!(
            import_error(&document(keys)),
            Err(JwksError::MissingAlgorithm { index: 3 })
        );
        let mut oct = oct("oct");
        oct.as_object_mut().expect("object").remove("alg");
        assert_eq!(
            import_error(&document(vec![oct])),
            Err(JwksError::MissingAlgorithm { index: 0 })
        );
    }

    #[test]
    fn encryption_keys_are_skipped() {
        let mut enc = public_jwk(Algorithm::RS256, RSA_OTHER_PUBLIC, "enc");
        enc["use"] = json!("enc");
        enc["alg"] = json!("RSA-OAEP");
        let sig = public_jwk(Algorithm::RS256, RSA_PUBLIC, "sig");
        let imported = import_jwks(&document(vec![enc.clone(), sig])).expect("valid");
        assert_eq!(imported.len(), 1);
        assert_eq!(imported[0].kid, "sig");
        assert_eq!(
            import_error(&document(vec![enc])),
            Err(JwksError::NoSignatureKeys)
        );
        assert_eq!(
            import_error(&document(vec![])),
            Err(JwksError::NoSignatureKeys)
        );
    }

    #[test]
    fn bad_keys_are_named_by_index() {
        let good = public_jwk(Algorithm::ES256, P256_PUBLIC, "good");
        let with = |member: &str, value: Value| {
            let mut jwk = public_jwk(Algorithm::RS256, RSA_PUBLIC, "bad");
            jwk[member] = value;
            jwk
        };
        let without = |member: &str| {
            let mut jwk = public_jwk(Algorithm::RS256, RSA_PUBLIC, "bad");
            jwk.as_object_mut().expect("object").remove(member);
            jwk
        };
        let cases = [
            (json!("a string"), JwksError::NotAnObject { index: 1 }),
            (without("kid"), JwksError::MissingKid { index: 1 }),
            (with("kid", json!(5)), JwksError::BadKid { index: 1 }),
            (with("kid", json!("")), JwksError::BadKid { index: 1 }),
            (
                with("kid", json!("a\u{0}b")),
                JwksError::BadKid { index: 1 },
            ),
            (
                with("kid", json!("good")),
                JwksError::DuplicateKid { index: 1, first: 0 },
            ),
            (
                with("alg", json!("none")),
                JwksError::Algorithm {
                    index: 1,
                    source: AlgorithmError::None,
                },
            ),
            (
                with("alg", json!("RSA-OAEP")),
                JwksError::Algorithm {
                    index: 1,
                    source: AlgorithmError::Unknown,
                },
            ),
            (
                with("alg", json!(256)),
                JwksError::Algorithm {
                    index: 1,
                    source: AlgorithmError::Unknown,
                },
            ),
            (
                with("alg", json!("ES256")),
                JwksError::Key {
                    index: 1,
                    source: KeyError::WrongKeyType {
                        algorithm: Algorithm::ES256,
                        found: KeyKind::Rsa,
                    },
                },
            ),
            (
                with("d", json!("AQAB")),
                JwksError::Key {
                    index: 1,
                    source: KeyError::PrivateJwk,
                },
            ),
            (
                with("use", json!("other")),
                JwksError::Key {
                    index: 1,
                    source: KeyError::JwkNotForSignatures,
                },
            ),
            (
                {
                    // Written by jsonwebtoken: this module refuses to read it.
                    let key = jsonwebtoken::DecodingKey::from_rsa_pem(RSA1024_PUBLIC.as_bytes())
                        .expect("PEM");
                    let mut jwk = jsonwebtoken::jwk::Jwk::from_decoding_key(
                        &key,
                        Some(jsonwebtoken::Algorithm::RS256),
                    )
                    .expect("JWK");
                    jwk.common.key_id = Some("small".to_owned());
                    serde_json::to_value(jwk).expect("JSON")
                },
                JwksError::Key {
                    index: 1,
                    source: KeyError::RsaKeySize { bits: 1024 },
                },
            ),
        ];
        for (bad, expected) in cases {
            let text = document(vec![good.clone(), bad.clone()]);
            let err = import_jwks(&text).expect_err("refused");
            assert_eq!(err, expected, "{bad}");
            // Never by content: no base64 value of the document is in the message.
            let message = err.to_string();
            for member in ["n", "x", "y", "k", "d"] {
                if let Some(value) = bad.get(member).and_then(Value::as_str) {
                    assert!(!message.contains(value));
                }
            }
        }
    }

    #[test]
    fn bad_documents_are_refused() {
        assert_eq!(import_error(""), Err(JwksError::Empty));
        assert_eq!(import_error("  "), Err(JwksError::Empty));
        assert_eq!(import_error("{"), Err(JwksError::NotJson));
        assert_eq!(import_error("[]"), Err(JwksError::NotAKeySet));
        assert_eq!(import_error(r#"{"keys": {}}"#), Err(JwksError::NotAKeySet));
        assert_eq!(
            import_error(&format!("{{\"keys\": [{}]}}", " ".repeat(MAX_JWKS_BYTES))),
            Err(JwksError::TooLong {
                limit: MAX_JWKS_BYTES
            })
        );
        let many = document(vec![json!({}); MAX_JWKS_KEYS + 1]);
        assert_eq!(
            import_error(&many),
            Err(JwksError::TooManyKeys {
                limit: MAX_JWKS_KEYS
            })
        );
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(import_error(&deep), Err(JwksError::NotJson));
    }

    #[test]
    fn debug_hides_the_key_text() {
        let imported = import_jwks(&document(vec![oct("secret-key")])).expect("valid");
        let debug = format!("{:?}", imported[0]);
        assert_eq!(
            debug,
            "ImportedKey { kid: \"secret-key\", algorithm: HS512, .. }"
        );
        assert!(imported[0].key_text.contains("\"k\""));
    }
}
