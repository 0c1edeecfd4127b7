//! Keys: reading a key text (a shared secret, a PEM, a JWK) for one algorithm, and refusing
//! every key that does not fit that algorithm.

use std::fmt;

use aws_lc_rs::hmac;
use aws_lc_rs::signature::{self as lc, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde_json::Value;

use super::algorithm::{Algorithm, KeyKind};

/// The longest key text accepted, in bytes. A 4096-bit RSA private key PEM is about 3.3 KiB.
pub const MAX_KEY_TEXT_BYTES: usize = 16 * 1024;
/// The smallest RSA modulus accepted, in bits (RFC 7518 section 3.3: "a key of size 2048 bits
/// or larger MUST be used").
pub const MIN_RSA_BITS: usize = 2048;
/// The largest RSA modulus accepted, in bits: the largest size in common use. A verification's
/// cost grows with the modulus, and a key table should not let one key make every check of its
/// tokens several times slower.
pub const MAX_RSA_BITS: usize = 4096;

/// What a key text was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyForm {
    /// A shared secret: the text's bytes, as they are (white space included).
    Secret,
    /// A public key PEM (`PUBLIC KEY`, or `RSA PUBLIC KEY` for PKCS#1).
    PublicPem,
    /// A private key PEM (`PRIVATE KEY` for PKCS#8, or `RSA PRIVATE KEY` for PKCS#1).
    PrivatePem,
    /// A JSON Web Key: a public key (`RSA`, `EC`, `OKP`) or a shared secret (`oct`).
    Jwk,
}

/// Why a key text is not a key for the algorithm.
///
/// SECURITY: no variant carries any part of the key text, so that an error message, a log line
/// or a client never sees key material.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The text is empty or only white space.
    #[error("the key must not be empty")]
    Empty,
    /// The text is longer than [`MAX_KEY_TEXT_BYTES`].
    #[error("the key is longer than {limit} bytes")]
    TooLong {
        /// The limit, in bytes.
        limit: usize,
    },
    /// A key (a PEM, the base64 of a DER key, an OpenSSH public key line) was given for an
    /// HMAC algorithm. A public key used as an HMAC secret would let anyone who has the public
    /// key sign tokens.
    #[error(
        "{algorithm} needs a shared secret, not a key (PEM, base64 DER or OpenSSH): a public key \
         used as an HMAC secret would let anyone who has it sign tokens"
    )]
    PemAsHmacSecret {
        /// The algorithm asked for.
        algorithm: Algorithm,
    },
    /// A shared secret (neither a PEM nor a JWK) was given for an asymmetric algorithm.
    #[error("{algorithm} needs a PEM key or a JWK, not a shared secret")]
    SecretForAsymmetric {
        /// The algorithm asked for.
        algorithm: Algorithm,
    },
    /// A shared secret is shorter than the algorithm's hash output (RFC 7518 section 3.2).
    #[error(
        "an {algorithm} secret must be at least {min_bytes} bytes, the size of its hash \
         (RFC 7518 section 3.2)"
    )]
    SecretTooShort {
        /// The algorithm asked for.
        algorithm: Algorithm,
        /// The shortest secret accepted, in bytes.
        min_bytes: usize,
    },
    /// The key is of another type than the algorithm needs (an EC key for RS256, an RSA JWK
    /// for HS256...).
    #[error("{algorithm} needs {}, not {found}", .algorithm.key_kind())]
    WrongKeyType {
        /// The algorithm asked for.
        algorithm: Algorithm,
        /// What the key is.
        found: KeyKind,
    },
    /// The JWK names another algorithm in its `alg` member.
    #[error("the JWK's \"alg\" is not {algorithm}")]
    JwkAlgorithmMismatch {
        /// The algorithm asked for.
        algorithm: Algorithm,
    },
    /// The JWK's `use` is not `sig`: it is meant for encryption.
    #[error("the JWK's \"use\" is not \"sig\": it is not a signature key")]
    JwkNotForSignatures,
    /// The JWK holds a private key (`d`). Only public JWKs are accepted; a private key is given
    /// as a PEM.
    #[error("the JWK holds a private key; give its public part, or the private key as a PEM")]
    PrivateJwk,
    /// The JSON is not a usable JWK.
    #[error("the JWK is not valid: {problem}")]
    BadJwk {
        /// What is wrong, in words that never quote the JWK.
        problem: &'static str,
    },
    /// The text starts like a PEM but is not one, or its label is not a key's.
    #[error("the PEM text is not a valid key")]
    BadPem,
    /// A PEM of a kind that is not supported.
    #[error("{what} is not supported: {hint}")]
    UnsupportedPem {
        /// The kind of PEM.
        what: &'static str,
        /// How to convert it.
        hint: &'static str,
    },
    /// An RSA key outside [`MIN_RSA_BITS`]..=[`MAX_RSA_BITS`].
    #[error("an RSA key must have {MIN_RSA_BITS} to {MAX_RSA_BITS} bits; this one has {bits}")]
    RsaKeySize {
        /// The modulus's size, in bits.
        bits: usize,
    },
    /// The key has the right type but is not a valid key (a point not on its curve, a private
    /// key that does not sign...).
    #[error("the key is not a valid {algorithm} key")]
    InvalidKey {
        /// The algorithm asked for.
        algorithm: Algorithm,
    },
    /// Signing was asked of a key that can only verify (a public key).
    #[error(
        "the {algorithm} key is a public key and cannot sign; signing needs the private key \
         PEM or the shared secret"
    )]
    CannotSign {
        /// The key's algorithm.
        algorithm: Algorithm,
    },
}

/// A key that verifies signatures of one algorithm.
///
/// `Debug` shows the algorithm only, never the key.
#[derive(Clone)]
pub struct VerifyingKey {
    algorithm: Algorithm,
    /// The key as jsonwebtoken reads and writes it (public JWK export).
    key: DecodingKey,
    /// The key made ready to verify, once.
    prepared: Prepared,
}

/// A verifying key in the form that checks a signature with no work left to do on the key.
/// jsonwebtoken's `crypto::verify` redoes that work on every call: it derives an HMAC key's
/// padded blocks, parses an RSA or EC key into aws-lc's structures, and decompresses an Ed25519
/// point (a third of an Ed25519 verification).
#[derive(Clone)]
enum Prepared {
    /// HS256, HS384, HS512 (boxed: the key holds aws-lc's whole HMAC context, 1.2 KiB).
    Hmac(Box<hmac::Key>),
    /// RS*, PS*, ES256, ES384: parsed (and checked) by aws-lc, the backend jsonwebtoken uses.
    Public(ParsedPublicKey),
    /// EdDSA: the point, decompressed.
    Ed25519(ed25519_dalek::VerifyingKey),
}

/// A key that signs tokens with one algorithm: a shared secret or a private key.
///
/// `Debug` shows the algorithm only, never the key.
#[derive(Clone)]
pub struct SigningKey {
    algorithm: Algorithm,
    key: EncodingKey,
}

/// A key text read for one algorithm: always a [`VerifyingKey`], and a [`SigningKey`] too when
/// the text is a shared secret or a private key.
///
/// `Debug` shows the algorithm, the form and whether it can sign, never the key.
#[derive(Clone)]
pub struct ParsedKey {
    verifying: VerifyingKey,
    signing: Option<SigningKey>,
    form: KeyForm,
}

/// A key as a key table row holds it: the key, its `kid`, the issuer and audience that tokens
/// signed with it must name, and the window in which it may be used.
#[derive(Clone, Debug)]
pub struct KeyEntry {
    /// The key's id, matched against a token header's `kid`. `None` for an inline key, which
    /// is used whatever `kid` a token names.
    pub kid: Option<String>,
    /// The key.
    pub key: VerifyingKey,
    /// When set, a token's `iss` must be a string equal to it.
    pub issuer: Option<String>,
    /// When set, a token's `aud` (a string, or an array of strings) must contain it.
    pub audience: Option<String>,
    /// The first second (Unix time) at which the key may be used; before it the key is as
    /// unknown.
    pub not_before: Option<i64>,
    /// The second (Unix time) from which the key may no longer be used: it is usable while
    /// `now < not_after`, like every `expires_at` of auth_pg.
    pub not_after: Option<i64>,
}

impl KeyEntry {
    /// An entry with no issuer, audience or window.
    pub fn new(kid: Option<String>, key: VerifyingKey) -> Self {
        Self {
            kid,
            key,
            issuer: None,
            audience: None,
            not_before: None,
            not_after: None,
        }
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.key.algorithm
    }

    /// Whether the key may be used at `now` (Unix seconds): `not_before <= now < not_after`.
    pub fn usable_at(&self, now: i64) -> bool {
        self.not_before.is_none_or(|start| start <= now)
            && self.not_after.is_none_or(|end| now < end)
    }
}

impl VerifyingKey {
    /// Reads a key text for `algorithm`: a shared secret or an `oct` JWK for HS*, or for the
    /// others a public key PEM, a private key PEM (its public part is used) or a public JWK.
    pub fn parse(algorithm: Algorithm, text: &str) -> Result<Self, KeyError> {
        ParsedKey::parse(algorithm, text).map(|parsed| parsed.verifying)
    }

    /// The algorithm the key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The public key as a JWK (with `kid` when given, `use` `sig` and `alg`), to publish in a
    /// JWKS document. `None` for a shared secret, which must never be published.
    pub fn public_jwk(&self, kid: Option<&str>) -> Option<Value> {
        if self.algorithm.is_symmetric() {
            return None;
        }
        let mut jwk = Jwk::from_decoding_key(&self.key, Some(self.algorithm.into())).ok()?;
        jwk.common.key_id = kid.map(str::to_owned);
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        serde_json::to_value(&jwk).ok()
    }

    /// Whether `signature` (base64url) is `message`'s signature by this key. HMAC tags are
    /// compared in constant time.
    pub(super) fn verifies(&self, signature: &str, message: &[u8]) -> bool {
        let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
            return false;
        };
        match &self.prepared {
            Prepared::Hmac(key) => hmac::verify(key, message, &signature).is_ok(),
            Prepared::Public(key) => key.verify_sig(message, &signature).is_ok(),
            Prepared::Ed25519(point) => {
                use ed25519_dalek::Verifier as _;
                ed25519_dalek::Signature::from_slice(&signature)
                    .is_ok_and(|signature| point.verify(message, &signature).is_ok())
            }
        }
    }
}

impl SigningKey {
    /// Reads a key text that can sign for `algorithm`: a shared secret or an `oct` JWK for HS*,
    /// a private key PEM for the others (PKCS#8 `PRIVATE KEY`, or PKCS#1 `RSA PRIVATE KEY`).
    pub fn parse(algorithm: Algorithm, text: &str) -> Result<Self, KeyError> {
        ParsedKey::parse(algorithm, text)?
            .signing
            .ok_or(KeyError::CannotSign { algorithm })
    }

    /// The algorithm the key signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub(super) fn encoding_key(&self) -> &EncodingKey {
        &self.key
    }
}

impl ParsedKey {
    /// Reads a key text for `algorithm`.
    ///
    /// The text is read as a JWK when it starts with `{` (after white space), as a PEM when it
    /// starts with `-----BEGIN`, and otherwise as a shared secret: its bytes exactly as given,
    /// white space included, at least as long as the hash (32, 48 or 64 bytes). A shared secret
    /// that contains `-----BEGIN` anywhere, is the base64 of a DER key (a PEM without its armor
    /// lines) or an OpenSSH public key line is refused, so that a public key is never an HMAC
    /// secret.
    ///
    /// Refused: a PEM or a non-`oct` JWK for HS*, a shared secret or an `oct` JWK for the
    /// others, a key of another type or curve than the algorithm's, a JWK whose `alg` is another
    /// algorithm or whose `use` is not `sig`, a private JWK, an RSA key outside 2048 to 4096
    /// bits, SEC1 (`EC PRIVATE KEY`), encrypted keys and certificates, and text longer than
    /// [`MAX_KEY_TEXT_BYTES`].
    pub fn parse(algorithm: Algorithm, text: &str) -> Result<Self, KeyError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(KeyError::Empty);
        }
        if text.len() > MAX_KEY_TEXT_BYTES {
            return Err(KeyError::TooLong {
                limit: MAX_KEY_TEXT_BYTES,
            });
        }
        if trimmed.starts_with('{') {
            return parse_jwk(algorithm, trimmed);
        }
        let mentions_pem = text.contains("-----BEGIN");
        if algorithm.is_symmetric() {
            if mentions_pem || is_encoded_key(trimmed) {
                return Err(KeyError::PemAsHmacSecret { algorithm });
            }
            return parse_secret(algorithm, text.as_bytes(), KeyForm::Secret);
        }
        if !trimmed.starts_with("-----BEGIN") {
            return Err(if mentions_pem {
                KeyError::BadPem
            } else {
                KeyError::SecretForAsymmetric { algorithm }
            });
        }
        parse_pem(algorithm, trimmed)
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.verifying.algorithm
    }

    /// What the text was.
    pub fn form(&self) -> KeyForm {
        self.form
    }

    /// The key that verifies.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying
    }

    /// The key that signs, when the text was a shared secret or a private key.
    pub fn signing_key(&self) -> Option<&SigningKey> {
        self.signing.as_ref()
    }

    /// Whether the key can sign.
    pub fn can_sign(&self) -> bool {
        self.signing.is_some()
    }

    /// The verifying key and the signing key, if any.
    pub fn into_parts(self) -> (VerifyingKey, Option<SigningKey>) {
        (self.verifying, self.signing)
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SECURITY: the key is never formatted; an HMAC verifying key is the secret itself.
        f.debug_struct("VerifyingKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SECURITY: the key is never formatted.
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ParsedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedKey")
            .field("algorithm", &self.verifying.algorithm)
            .field("form", &self.form)
            .field("can_sign", &self.can_sign())
            .finish()
    }
}

fn parse_secret(algorithm: Algorithm, secret: &[u8], form: KeyForm) -> Result<ParsedKey, KeyError> {
    let Some(min_bytes) = algorithm.min_secret_bytes() else {
        return Err(KeyError::SecretForAsymmetric { algorithm });
    };
    if secret.len() < min_bytes {
        return Err(KeyError::SecretTooShort {
            algorithm,
            min_bytes,
        });
    }
    Ok(ParsedKey {
        verifying: prepared(algorithm, DecodingKey::from_secret(secret))?,
        signing: Some(SigningKey {
            algorithm,
            key: EncodingKey::from_secret(secret),
        }),
        form,
    })
}

/// The label of a PEM block (`PUBLIC KEY` in `-----BEGIN PUBLIC KEY-----`), when the text holds
/// exactly one block.
fn pem_label(text: &str) -> Option<&str> {
    if text.matches("-----BEGIN").count() != 1 {
        return None;
    }
    let (label, _) = text.strip_prefix("-----BEGIN ")?.split_once("-----")?;
    Some(label)
}

fn parse_pem(algorithm: Algorithm, text: &str) -> Result<ParsedKey, KeyError> {
    let label = pem_label(text).ok_or(KeyError::BadPem)?;
    let rsa_only = |private| {
        if algorithm.key_kind() == KeyKind::Rsa {
            Ok(private)
        } else {
            Err(KeyError::WrongKeyType {
                algorithm,
                found: KeyKind::Rsa,
            })
        }
    };
    let private = match label {
        "PUBLIC KEY" => false,
        "PRIVATE KEY" => true,
        "RSA PUBLIC KEY" => rsa_only(false)?,
        "RSA PRIVATE KEY" => rsa_only(true)?,
        "EC PRIVATE KEY" => {
            return Err(KeyError::UnsupportedPem {
                what: "an EC PRIVATE KEY (SEC1) PEM",
                hint: "convert it to PKCS#8 with `openssl pkcs8 -topk8 -nocrypt`",
            });
        }
        "ENCRYPTED PRIVATE KEY" => {
            return Err(KeyError::UnsupportedPem {
                what: "an encrypted private key",
                hint: "decrypt it with `openssl pkcs8 -topk8 -nocrypt`",
            });
        }
        "CERTIFICATE" => {
            return Err(KeyError::UnsupportedPem {
                what: "a certificate",
                hint: "give its public key, from `openssl x509 -pubkey -noout`",
            });
        }
        _ => return Err(KeyError::BadPem),
    };
    if private {
        parse_private_pem(algorithm, text.as_bytes())
    } else {
        parse_public_pem(algorithm, text.as_bytes())
    }
}

/// Whether `text` is a key in an encoding other than PEM or JWK: an OpenSSH public key
/// (`ssh-ed25519 AAAA... comment`, also after `authorized_keys` options, or in RFC 4716's
/// `---- BEGIN SSH2 PUBLIC KEY ----` form), or the base64 (or base64url) of a DER key, which is
/// what a PEM holds between its armor lines (SubjectPublicKeyInfo, PKCS#8, PKCS#1: a SEQUENCE
/// whose length is exactly the rest and whose first element is a SEQUENCE or an INTEGER). A
/// random base64 secret passes for DER less than once in ten million.
fn is_encoded_key(text: &str) -> bool {
    use base64::alphabet::{STANDARD, URL_SAFE};
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const CONFIG: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const ENGINES: [GeneralPurpose; 2] = [
        GeneralPurpose::new(&STANDARD, CONFIG),
        GeneralPurpose::new(&URL_SAFE, CONFIG),
    ];
    if text.contains("---- BEGIN SSH2 PUBLIC KEY ----") {
        return true;
    }
    let words: Vec<&str> = text.split_ascii_whitespace().collect();
    let openssh = words.windows(2).any(|pair| {
        ["ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-"]
            .iter()
            .any(|prefix| pair[0].starts_with(prefix))
            // The base64 of the key's length-prefixed type name.
            && pair[1].starts_with("AAAA")
    });
    let joined = words.concat();
    openssh
        || ENGINES
            .iter()
            .any(|engine| engine.decode(&joined).is_ok_and(|der| is_der_key(&der)))
}

/// See [`is_encoded_key`].
fn is_der_key(der: &[u8]) -> bool {
    /// A DER element: its tag, its contents and what follows it.
    fn element(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = bytes.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (length, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let octets = usize::from(first & 0x7f);
            if octets == 0 || octets > 3 || rest.len() < octets {
                return None;
            }
            let (length, rest) = rest.split_at(octets);
            let length = length
                .iter()
                .fold(0, |length, &octet| length << 8 | usize::from(octet));
            (length, rest)
        };
        (rest.len() >= length).then(|| (tag, &rest[..length], &rest[length..]))
    }
    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    match element(der) {
        Some((SEQUENCE, contents, [])) => {
            matches!(element(contents), Some((SEQUENCE | INTEGER, _, _)))
        }
        _ => false,
    }
}

fn parse_public_pem(algorithm: Algorithm, pem: &[u8]) -> Result<ParsedKey, KeyError> {
    let decoded = match algorithm.key_kind() {
        KeyKind::Rsa => DecodingKey::from_rsa_pem(pem),
        KeyKind::EcP256 | KeyKind::EcP384 => DecodingKey::from_ec_pem(pem),
        KeyKind::Ed25519 => DecodingKey::from_ed_pem(pem),
        _ => return Err(KeyError::PemAsHmacSecret { algorithm }),
    };
    let key =
        decoded.map_err(|_| mismatch_or(algorithm, identify_public_pem(pem), KeyError::BadPem))?;
    Ok(ParsedKey {
        verifying: checked_verifying_key(algorithm, key)?,
        signing: None,
        form: KeyForm::PublicPem,
    })
}

fn parse_private_pem(algorithm: Algorithm, pem: &[u8]) -> Result<ParsedKey, KeyError> {
    let encoded = match algorithm.key_kind() {
        KeyKind::Rsa => EncodingKey::from_rsa_pem(pem),
        KeyKind::EcP256 | KeyKind::EcP384 => EncodingKey::from_ec_pem(pem),
        KeyKind::Ed25519 => EncodingKey::from_ed_pem(pem),
        _ => return Err(KeyError::PemAsHmacSecret { algorithm }),
    };
    let invalid = KeyError::InvalidKey { algorithm };
    let key =
        encoded.map_err(|_| mismatch_or(algorithm, identify_private_pem(pem), KeyError::BadPem))?;
    // jsonwebtoken cannot make a DecodingKey from a private PEM, but it can write the public
    // part of a private key as a JWK, which it can read back.
    let public = Jwk::from_encoding_key(&key, algorithm.into())
        .map_err(|_| mismatch_or(algorithm, identify_private_pem(pem), invalid))?;
    let decoding = DecodingKey::from_jwk(&public).map_err(|_| invalid)?;
    let verifying = checked_verifying_key(algorithm, decoding)?;
    let signing = SigningKey { algorithm, key };
    self_test(&signing, &verifying)?;
    Ok(ParsedKey {
        verifying,
        signing: Some(signing),
        form: KeyForm::PrivatePem,
    })
}

/// Signs a fixed message and verifies it, so that a private key whose derived public key would
/// not verify its own signatures is refused when it is read, not at its first use.
fn self_test(signing: &SigningKey, verifying: &VerifyingKey) -> Result<(), KeyError> {
    const MESSAGE: &[u8] = b"auth_pg signing key self-test";
    let algorithm = signing.algorithm;
    let invalid = KeyError::InvalidKey { algorithm };
    let signature =
        jsonwebtoken::crypto::sign(MESSAGE, &signing.key, algorithm.into()).map_err(|_| invalid)?;
    if verifying.verifies(&signature, MESSAGE) {
        Ok(())
    } else {
        Err(invalid)
    }
}

/// `WrongKeyType` when the key was recognised as another kind than the algorithm's, else
/// `otherwise`.
fn mismatch_or(algorithm: Algorithm, found: Option<KeyKind>, otherwise: KeyError) -> KeyError {
    match found {
        Some(found) if found != algorithm.key_kind() => KeyError::WrongKeyType { algorithm, found },
        _ => otherwise,
    }
}

fn identify_public_pem(pem: &[u8]) -> Option<KeyKind> {
    if DecodingKey::from_rsa_pem(pem).is_ok() {
        return Some(KeyKind::Rsa);
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        return Some(
            key.try_get_as_bytes()
                .map_or(KeyKind::Unknown, ec_point_kind),
        );
    }
    if DecodingKey::from_ed_pem(pem).is_ok() {
        return Some(KeyKind::Ed25519);
    }
    None
}

fn identify_private_pem(pem: &[u8]) -> Option<KeyKind> {
    let derives = |key: &EncodingKey, algorithm: Algorithm| {
        Jwk::from_encoding_key(key, algorithm.into()).is_ok()
    };
    if let Ok(key) = EncodingKey::from_rsa_pem(pem) {
        return derives(&key, Algorithm::RS256).then_some(KeyKind::Rsa);
    }
    if let Ok(key) = EncodingKey::from_ec_pem(pem) {
        return Some(if derives(&key, Algorithm::ES256) {
            KeyKind::EcP256
        } else if derives(&key, Algorithm::ES384) {
            KeyKind::EcP384
        } else {
            KeyKind::EcOtherCurve
        });
    }
    if let Ok(key) = EncodingKey::from_ed_pem(pem) {
        return derives(&key, Algorithm::EdDSA).then_some(KeyKind::Ed25519);
    }
    None
}

/// The curve of a SEC1 point, by its length (uncompressed or compressed).
fn ec_point_kind(point: &[u8]) -> KeyKind {
    match point.len() {
        33 | 65 => KeyKind::EcP256,
        49 | 97 => KeyKind::EcP384,
        _ => KeyKind::EcOtherCurve,
    }
}

fn parse_jwk(algorithm: Algorithm, text: &str) -> Result<ParsedKey, KeyError> {
    let bad = |problem| KeyError::BadJwk { problem };
    let value: Value = serde_json::from_str(text).map_err(|_| bad("it is not valid JSON"))?;
    let object = value
        .as_object()
        .ok_or_else(|| bad("it is not a JSON object"))?;
    let kty = object
        .get("kty")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("\"kty\" is missing or not a string"))?;
    if object.get("use").is_some_and(|usage| usage != "sig") {
        return Err(KeyError::JwkNotForSignatures);
    }
    if object
        .get("alg")
        .is_some_and(|alg| alg != algorithm.as_str())
    {
        return Err(KeyError::JwkAlgorithmMismatch { algorithm });
    }
    let found = jwk_kind(kty, object.get("crv").and_then(Value::as_str));
    if found != algorithm.key_kind() {
        return Err(KeyError::WrongKeyType { algorithm, found });
    }
    if kty == "oct" {
        let encoded = object
            .get("k")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("\"k\" is missing or not a string"))?;
        let secret = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| bad("\"k\" is not base64url"))?;
        return parse_secret(algorithm, &secret, KeyForm::Jwk);
    }
    if object.contains_key("d") {
        return Err(KeyError::PrivateJwk);
    }
    let jwk: Jwk = serde_json::from_value(value.clone())
        .map_err(|_| bad("its members do not fit its \"kty\""))?;
    if matches!(jwk.algorithm, AlgorithmParameters::Other(_)) {
        return Err(bad("a member its \"kty\" needs is missing"));
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| bad("a member is not base64url"))?;
    Ok(ParsedKey {
        verifying: checked_verifying_key(algorithm, key)?,
        signing: None,
        form: KeyForm::Jwk,
    })
}

/// What a JWK is, by its `kty` and `crv`.
pub(super) fn jwk_kind(kty: &str, crv: Option<&str>) -> KeyKind {
    match (kty, crv) {
        ("oct", _) => KeyKind::Secret,
        ("RSA", _) => KeyKind::Rsa,
        ("EC", Some("P-256")) => KeyKind::EcP256,
        ("EC", Some("P-384")) => KeyKind::EcP384,
        ("EC", _) => KeyKind::EcOtherCurve,
        ("OKP", Some("Ed25519")) => KeyKind::Ed25519,
        ("OKP", _) => KeyKind::OtherOctetKeyPair,
        _ => KeyKind::Unknown,
    }
}

/// Checks a decoded public key against its algorithm, so that a key that could never verify
/// is refused now: an RSA modulus of 2048 to 4096 bits and a sane exponent, an EC point of the
/// algorithm's curve and on it, an Ed25519 key of 32 bytes that is a valid point not of small
/// order.
fn checked_verifying_key(algorithm: Algorithm, key: DecodingKey) -> Result<VerifyingKey, KeyError> {
    let invalid = KeyError::InvalidKey { algorithm };
    let key = match algorithm.key_kind() {
        KeyKind::Rsa => {
            let (modulus, exponent) = rsa_components(algorithm, &key)?;
            check_rsa_components(algorithm, &modulus, &exponent)?;
            DecodingKey::from_rsa_raw_components(&modulus, &exponent)
        }
        expected @ (KeyKind::EcP256 | KeyKind::EcP384) => {
            let point = key.try_get_as_bytes().map_err(|_| invalid)?;
            let found = ec_point_kind(point);
            if found != expected {
                return Err(KeyError::WrongKeyType { algorithm, found });
            }
            // Only uncompressed points: the public JWK of a compressed one cannot be written.
            if point.first() != Some(&0x04) {
                return Err(invalid);
            }
            key
        }
        // Checked when prepared: 32 bytes that are a point.
        KeyKind::Ed25519 => key,
        _ => {
            let min_bytes = algorithm.min_secret_bytes().unwrap_or(usize::MAX);
            if key.try_get_as_bytes().map_err(|_| invalid)?.len() < min_bytes {
                return Err(KeyError::SecretTooShort {
                    algorithm,
                    min_bytes,
                });
            }
            key
        }
    };
    prepared(algorithm, key)
}

/// The key made ready to verify (see [`Prepared`]). Preparing checks it: an EC point must be on
/// the algorithm's curve, an Ed25519 key a valid point of 32 bytes and not of small order
/// (see below), RSA components a key aws-lc
/// accepts; anything else is `InvalidKey`, now rather than at every verification.
fn prepared(algorithm: Algorithm, key: DecodingKey) -> Result<VerifyingKey, KeyError> {
    let invalid = KeyError::InvalidKey { algorithm };
    let bytes = || key.try_get_as_bytes().map_err(|_| invalid);
    let hmac_key = |digest| Ok(Prepared::Hmac(Box::new(hmac::Key::new(digest, bytes()?))));
    let public_key = |verification| {
        ParsedPublicKey::new(verification, bytes()?)
            .map(Prepared::Public)
            .map_err(|_| invalid)
    };
    let rsa_key = |verification| {
        let (n, e) = rsa_components(algorithm, &key)?;
        RsaPublicKeyComponents { n, e }
            .to_parsed_public_key(verification)
            .map(Prepared::Public)
            .map_err(|_| invalid)
    };
    let prepared = match algorithm {
        Algorithm::HS256 => hmac_key(hmac::HMAC_SHA256)?,
        Algorithm::HS384 => hmac_key(hmac::HMAC_SHA384)?,
        Algorithm::HS512 => hmac_key(hmac::HMAC_SHA512)?,
        Algorithm::RS256 => rsa_key(&lc::RSA_PKCS1_2048_8192_SHA256)?,
        Algorithm::RS384 => rsa_key(&lc::RSA_PKCS1_2048_8192_SHA384)?,
        Algorithm::RS512 => rsa_key(&lc::RSA_PKCS1_2048_8192_SHA512)?,
        Algorithm::PS256 => rsa_key(&lc::RSA_PSS_2048_8192_SHA256)?,
        Algorithm::PS384 => rsa_key(&lc::RSA_PSS_2048_8192_SHA384)?,
        Algorithm::PS512 => rsa_key(&lc::RSA_PSS_2048_8192_SHA512)?,
        Algorithm::ES256 => public_key(&lc::ECDSA_P256_SHA256_FIXED)?,
        Algorithm::ES384 => public_key(&lc::ECDSA_P384_SHA384_FIXED)?,
        Algorithm::EdDSA => {
            let point: &[u8; 32] = bytes()?.try_into().map_err(|_| invalid)?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(point).map_err(|_| invalid)?;
            // A point of small order (the identity, among eight) is a valid encoding, but with
            // it the signature R = identity, S = 0 verifies every message: such a key would
            // accept forged tokens, so it is refused. With any other point, the RFC 8032 check
            // that `verifies` makes needs the private key to pass.
            if key.is_weak() {
                return Err(invalid);
            }
            Prepared::Ed25519(key)
        }
    };
    Ok(VerifyingKey {
        algorithm,
        key,
        prepared,
    })
}

/// An RSA key's modulus and public exponent, big-endian, as its public JWK carries them
/// (jsonwebtoken gives no other way to read them from a `DecodingKey`).
fn rsa_components(algorithm: Algorithm, key: &DecodingKey) -> Result<(Vec<u8>, Vec<u8>), KeyError> {
    let invalid = KeyError::InvalidKey { algorithm };
    let jwk = Jwk::from_decoding_key(key, None).map_err(|_| invalid)?;
    let AlgorithmParameters::RSA(params) = &jwk.algorithm else {
        return Err(invalid);
    };
    let modulus = URL_SAFE_NO_PAD.decode(&params.n).map_err(|_| invalid)?;
    let exponent = URL_SAFE_NO_PAD.decode(&params.e).map_err(|_| invalid)?;
    Ok((modulus, exponent))
}

fn check_rsa_components(
    algorithm: Algorithm,
    modulus: &[u8],
    exponent: &[u8],
) -> Result<(), KeyError> {
    let invalid = KeyError::InvalidKey { algorithm };
    let modulus = strip_leading_zeros(modulus);
    let (Some(&first), Some(&last)) = (modulus.first(), modulus.last()) else {
        return Err(invalid);
    };
    let bits = modulus.len() * 8 - first.leading_zeros() as usize;
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(KeyError::RsaKeySize { bits });
    }
    if last & 1 == 0 {
        return Err(invalid);
    }
    // aws-lc accepts odd exponents from 3 to 2^33 - 1.
    let exponent = strip_leading_zeros(exponent);
    if exponent.len() > 5 {
        return Err(invalid);
    }
    let value = exponent
        .iter()
        .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte));
    if value < 3 || value % 2 == 0 || value >= 1 << 33 {
        return Err(invalid);
    }
    Ok(())
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

#[cfg(test)]
mod tests {
    use super::super::test_keys::*;
    use super::*;

    fn parse_err(algorithm: Algorithm, text: &str) -> KeyError {
        ParsedKey::parse(algorithm, text).expect_err("the key must be refused")
    }

    /// Every error message, checked not to contain any line of the key text.
    fn assert_not_quoted(err: &KeyError, text: &str) {
        let message = err.to_string();
        for line in text.lines().map(str::trim).filter(|l| l.len() >= 8) {
            assert!(
                !message.contains(line),
                "{message:?} quotes the key text {line:?}"
            );
        }
        let debug = format!("{err:?}");
        for line in text.lines().map(str::trim).filter(|l| l.len() >= 8) {
            assert!(!debug.contains(line));
        }
    }

    #[test]
    fn every_asymmetric_algorithm_reads_public_and_private_pems() {
        for (algorithm, public, private) in asymmetric_keys() {
            let parsed = ParsedKey::parse(algorithm, public).expect("public PEM");
            assert_eq!(parsed.form(), KeyForm::PublicPem);
            assert_eq!(parsed.algorithm(), algorithm);
            assert!(!parsed.can_sign());
            assert_eq!(
                SigningKey::parse(algorithm, public).expect_err("public"),
                KeyError::CannotSign { algorithm }
            );
            let parsed = ParsedKey::parse(algorithm, private).expect("private PEM");
            assert_eq!(parsed.form(), KeyForm::PrivatePem);
            assert!(parsed.can_sign());
            assert_eq!(
                parsed.signing_key().map(SigningKey::algorithm),
                Some(algorithm)
            );
            // The public key derived from the private one is the public PEM's.
            let from_public = VerifyingKey::parse(algorithm, public).expect("public PEM");
            assert_eq!(
                parsed.verifying_key().public_jwk(None),
                from_public.public_jwk(None)
            );
        }
    }

    #[test]
    fn pkcs1_rsa_pems_are_read() {
        let public = ParsedKey::parse(Algorithm::RS256, RSA_PUBLIC_PKCS1).expect("PKCS#1 public");
        let private =
            ParsedKey::parse(Algorithm::PS512, RSA_PRIVATE_PKCS1).expect("PKCS#1 private");
        assert!(private.can_sign());
        assert_eq!(
            public.verifying_key().public_jwk(None),
            VerifyingKey::parse(Algorithm::RS256, RSA_PUBLIC)
                .expect("SPKI public")
                .public_jwk(None)
        );
        // Surrounding white space is fine.
        assert!(ParsedKey::parse(Algorithm::RS256, &format!("\n  {RSA_PUBLIC}\n\n")).is_ok());
    }

    #[test]
    fn hmac_secrets_have_the_hash_size_at_least() {
        for algorithm in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let min = algorithm.min_secret_bytes().expect("HMAC");
            let parsed = ParsedKey::parse(algorithm, &"s".repeat(min)).expect("long enough");
            assert_eq!(parsed.form(), KeyForm::Secret);
            assert!(parsed.can_sign());
            let short = "s".repeat(min - 1);
            let err = parse_err(algorithm, &short);
            assert_eq!(
                err,
                KeyError::SecretTooShort {
                    algorithm,
                    min_bytes: min
                }
            );
            assert_not_quoted(&err, &short);
        }
        // White space counts: the secret is the text's bytes as given.
        assert!(ParsedKey::parse(Algorithm::HS256, &format!("{} ", "s".repeat(31))).is_ok());
    }

    /// Public and private keys of each type, as PEMs.
    const PEMS: [&str; 5] = [
        RSA_PUBLIC,
        RSA_PRIVATE,
        P256_PUBLIC,
        ED25519_PUBLIC,
        RSA_PUBLIC_PKCS1,
    ];

    #[test]
    fn a_pem_is_never_an_hmac_secret() {
        for pem in PEMS {
            for algorithm in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
                let err = parse_err(algorithm, pem);
                assert_eq!(err, KeyError::PemAsHmacSecret { algorithm });
                assert_not_quoted(&err, pem);
            }
        }
        // Even with something before it.
        let hidden = format!("{}{RSA_PUBLIC}", "x".repeat(64));
        assert_eq!(
            parse_err(Algorithm::HS256, &hidden),
            KeyError::PemAsHmacSecret {
                algorithm: Algorithm::HS256
            }
        );
    }

    #[test]
    fn a_key_in_another_encoding_is_never_an_hmac_secret() {
        use base64::engine::general_purpose::STANDARD;
        let hs = Algorithm::HS256;
        // A PEM's body without its armor lines: the base64 of a DER key, on one line or many.
        for pem in PEMS {
            let lines: Vec<&str> = pem
                .lines()
                .filter(|line| !line.starts_with("-----"))
                .collect();
            for body in [lines.join("\n"), lines.concat()] {
                let err = parse_err(hs, &body);
                assert_eq!(err, KeyError::PemAsHmacSecret { algorithm: hs }, "{body}");
                assert_not_quoted(&err, &body);
            }
        }
        // An OpenSSH public key line: type name and key, each with a 4-byte length.
        let mut blob = Vec::new();
        for part in [&b"ssh-ed25519"[..], &[7; 32]] {
            blob.extend_from_slice(&u32::try_from(part.len()).expect("short").to_be_bytes());
            blob.extend_from_slice(part);
        }
        let body = STANDARD.encode(&blob);
        for line in [
            format!("ssh-ed25519 {body} someone@example.com"),
            format!("no-pty,from=\"10.0.0.1\" ssh-ed25519 {body}"),
            format!(
                "---- BEGIN SSH2 PUBLIC KEY ----\nComment: \"someone\"\n{body}\n\
                 ---- END SSH2 PUBLIC KEY ----"
            ),
        ] {
            assert_eq!(
                parse_err(hs, &line),
                KeyError::PemAsHmacSecret { algorithm: hs },
                "{line}"
            );
        }
        // base64url, as a JWK's members are written.
        let spki: String = RSA_PUBLIC
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let der = STANDARD.decode(&spki).expect("base64");
        let url_safe = URL_SAFE_NO_PAD.encode(&der);
        assert!(
            url_safe.contains(['-', '_']),
            "not read as standard base64 too"
        );
        assert_eq!(
            parse_err(hs, &url_safe),
            KeyError::PemAsHmacSecret { algorithm: hs }
        );
        // Random secrets, as `openssl rand -base64 48` makes them, and text secrets pass.
        for seed in 0_u32..2000 {
            let bytes = blake3::hash(&seed.to_le_bytes());
            let secret =
                STANDARD.encode([bytes.as_bytes().as_slice(), &bytes.as_bytes()[..16]].concat());
            assert!(
                ParsedKey::parse(Algorithm::HS256, &secret).is_ok(),
                "{secret}"
            );
        }
        assert!(ParsedKey::parse(hs, "ssh-keys are not the secret of this long sentence").is_ok());
    }

    #[test]
    fn a_secret_is_never_an_asymmetric_key() {
        let secret = "a shared secret that is long enough for any algorithm at all, really";
        for algorithm in Algorithm::ALL.into_iter().filter(|a| !a.is_symmetric()) {
            let err = parse_err(algorithm, secret);
            assert_eq!(err, KeyError::SecretForAsymmetric { algorithm });
            assert_not_quoted(&err, secret);
        }
    }

    #[test]
    fn keys_of_another_type_are_refused() {
        let cases = [
            (Algorithm::RS256, P256_PUBLIC, KeyKind::EcP256),
            (Algorithm::PS256, ED25519_PUBLIC, KeyKind::Ed25519),
            (Algorithm::ES256, RSA_PUBLIC, KeyKind::Rsa),
            (Algorithm::ES256, P384_PUBLIC, KeyKind::EcP384),
            (Algorithm::ES384, P256_PUBLIC, KeyKind::EcP256),
            (Algorithm::ES256, P521_PUBLIC, KeyKind::EcOtherCurve),
            (Algorithm::EdDSA, P256_PUBLIC, KeyKind::EcP256),
            (Algorithm::EdDSA, RSA_PUBLIC, KeyKind::Rsa),
            (Algorithm::RS256, P256_PRIVATE, KeyKind::EcP256),
            (Algorithm::ES256, P384_PRIVATE, KeyKind::EcP384),
            (Algorithm::ES384, P256_PRIVATE, KeyKind::EcP256),
            (Algorithm::EdDSA, RSA_PRIVATE, KeyKind::Rsa),
            (Algorithm::ES256, ED25519_PRIVATE, KeyKind::Ed25519),
            (Algorithm::ES256, RSA_PUBLIC_PKCS1, KeyKind::Rsa),
            (Algorithm::EdDSA, RSA_PRIVATE_PKCS1, KeyKind::Rsa),
        ];
        for (algorithm, pem, found) in cases {
            let err = parse_err(algorithm, pem);
            assert_eq!(
                err,
                KeyError::WrongKeyType { algorithm, found },
                "{algorithm} with {found}"
            );
            assert_not_quoted(&err, pem);
        }
    }

    #[test]
    fn unsupported_and_broken_pems_are_refused() {
        assert!(matches!(
            parse_err(Algorithm::ES256, P256_PRIVATE_SEC1),
            KeyError::UnsupportedPem { .. }
        ));
        let certificate = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            parse_err(Algorithm::RS256, certificate),
            KeyError::UnsupportedPem {
                what: "a certificate",
                ..
            }
        ));
        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(matches!(
            parse_err(Algorithm::RS256, encrypted),
            KeyError::UnsupportedPem { .. }
        ));
        let truncated = &RSA_PUBLIC[..RSA_PUBLIC.len() / 2];
        let err = parse_err(Algorithm::RS256, truncated);
        assert_eq!(err, KeyError::BadPem);
        assert_not_quoted(&err, truncated);
        let corrupted = RSA_PUBLIC.replacen("MII", "MIX", 1);
        assert_eq!(parse_err(Algorithm::RS256, &corrupted), KeyError::BadPem);
        let two = format!("{RSA_PUBLIC}{RSA_PUBLIC}");
        assert_eq!(parse_err(Algorithm::RS256, &two), KeyError::BadPem);
        let garbage_first = format!("garbage {RSA_PUBLIC}");
        assert_eq!(
            parse_err(Algorithm::RS256, &garbage_first),
            KeyError::BadPem
        );
        let other_label = RSA_PUBLIC.replace("PUBLIC KEY", "SOMETHING");
        assert_eq!(parse_err(Algorithm::RS256, &other_label), KeyError::BadPem);
    }

    #[test]
    fn small_rsa_keys_are_refused() {
        assert_eq!(
            parse_err(Algorithm::RS256, RSA1024_PUBLIC),
            KeyError::RsaKeySize { bits: 1024 }
        );
    }

    #[test]
    fn empty_and_huge_texts_are_refused() {
        for algorithm in Algorithm::ALL {
            assert_eq!(parse_err(algorithm, ""), KeyError::Empty);
            assert_eq!(parse_err(algorithm, " \n\t"), KeyError::Empty);
            assert_eq!(
                parse_err(algorithm, &"k".repeat(MAX_KEY_TEXT_BYTES + 1)),
                KeyError::TooLong {
                    limit: MAX_KEY_TEXT_BYTES
                }
            );
        }
        assert!(ParsedKey::parse(Algorithm::HS512, &"k".repeat(MAX_KEY_TEXT_BYTES)).is_ok());
    }

    #[test]
    fn public_jwks_are_read() {
        for (algorithm, public, _) in asymmetric_keys() {
            let jwk = VerifyingKey::parse(algorithm, public)
                .expect("public PEM")
                .public_jwk(Some("k1"))
                .expect("asymmetric");
            assert_eq!(jwk["kid"], "k1");
            assert_eq!(jwk["use"], "sig");
            assert_eq!(jwk["alg"], algorithm.as_str());
            let text = jwk.to_string();
            let parsed = ParsedKey::parse(algorithm, &text).expect("its own JWK");
            assert_eq!(parsed.form(), KeyForm::Jwk);
            assert!(!parsed.can_sign());
            // Without alg, use or kid too.
            let mut bare = jwk.clone();
            for member in ["alg", "use", "kid"] {
                bare.as_object_mut().expect("object").remove(member);
            }
            assert!(ParsedKey::parse(algorithm, &bare.to_string()).is_ok());
        }
    }

    #[test]
    fn oct_jwks_are_secrets() {
        let secret = [7u8; 32];
        let jwk = serde_json::json!({"kty": "oct", "k": URL_SAFE_NO_PAD.encode(secret)});
        let parsed = ParsedKey::parse(Algorithm::HS256, &jwk.to_string()).expect("oct JWK");
        assert_eq!(parsed.form(), KeyForm::Jwk);
        assert!(parsed.can_sign());
        assert_eq!(parsed.verifying_key().public_jwk(Some("k")), None);
        assert_eq!(
            parse_err(Algorithm::HS384, &jwk.to_string()),
            KeyError::SecretTooShort {
                algorithm: Algorithm::HS384,
                min_bytes: 48
            }
        );
        assert_eq!(
            parse_err(Algorithm::RS256, &jwk.to_string()),
            KeyError::WrongKeyType {
                algorithm: Algorithm::RS256,
                found: KeyKind::Secret
            }
        );
        let bad_k = serde_json::json!({"kty": "oct", "k": "!!!"});
        assert!(matches!(
            parse_err(Algorithm::HS256, &bad_k.to_string()),
            KeyError::BadJwk { .. }
        ));
    }

    #[test]
    fn bad_jwks_are_refused() {
        let rsa = VerifyingKey::parse(Algorithm::RS256, RSA_PUBLIC)
            .expect("PEM")
            .public_jwk(None)
            .expect("asymmetric");
        let with = |member: &str, value: Value| {
            let mut jwk = rsa.clone();
            jwk[member] = value;
            jwk.to_string()
        };
        let without = |member: &str| {
            let mut jwk = rsa.clone();
            jwk.as_object_mut().expect("object").remove(member);
            jwk.to_string()
        };
        let algorithm = Algorithm::RS256;
        assert_eq!(
            parse_err(algorithm, &with("alg", "RS384".into())),
            KeyError::JwkAlgorithmMismatch { algorithm }
        );
        assert_eq!(
            parse_err(algorithm, &with("alg", "none".into())),
            KeyError::JwkAlgorithmMismatch { algorithm }
        );
        assert_eq!(
            parse_err(algorithm, &with("alg", 5.into())),
            KeyError::JwkAlgorithmMismatch { algorithm }
        );
        assert_eq!(
            parse_err(algorithm, &with("use", "enc".into())),
            KeyError::JwkNotForSignatures
        );
        assert_eq!(
            parse_err(algorithm, &with("d", "AQAB".into())),
            KeyError::PrivateJwk
        );
        assert_eq!(
            parse_err(Algorithm::ES256, &rsa.to_string()),
            KeyError::JwkAlgorithmMismatch {
                algorithm: Algorithm::ES256
            }
        );
        assert_eq!(
            parse_err(Algorithm::ES256, &without("alg")),
            KeyError::WrongKeyType {
                algorithm: Algorithm::ES256,
                found: KeyKind::Rsa
            }
        );
        // An RSA JWK is a JWK even for HS256: refused as the wrong key type.
        assert_eq!(
            parse_err(Algorithm::HS256, &without("alg")),
            KeyError::WrongKeyType {
                algorithm: Algorithm::HS256,
                found: KeyKind::Rsa
            }
        );
        for text in [
            without("kty"),
            without("n"),
            with("n", "not base64!".into()),
            with("kty", 1.into()),
            "{not json".to_owned(),
            "{}".to_owned(),
        ] {
            let err = parse_err(algorithm, &text);
            assert!(matches!(err, KeyError::BadJwk { .. }), "{err:?}");
            assert_not_quoted(&err, &text);
        }
        assert_eq!(
            parse_err(algorithm, &with("kty", "XYZ".into())),
            KeyError::WrongKeyType {
                algorithm,
                found: KeyKind::Unknown
            }
        );
        assert_eq!(
            parse_err(algorithm, &with("e", "AQ".into())),
            KeyError::InvalidKey { algorithm }
        );
        assert_eq!(
            parse_err(algorithm, &with("n", "AQAB".into())),
            KeyError::RsaKeySize { bits: 17 }
        );
    }

    #[test]
    fn bad_curve_points_are_refused() {
        let mut p256 = VerifyingKey::parse(Algorithm::ES256, P256_PUBLIC)
            .expect("PEM")
            .public_jwk(None)
            .expect("asymmetric");
        // (1, 1) is not on P-256.
        let one = URL_SAFE_NO_PAD.encode({
            let mut coordinate = [0u8; 32];
            coordinate[31] = 1;
            coordinate
        });
        p256["x"] = one.clone().into();
        p256["y"] = one.into();
        assert_eq!(
            parse_err(Algorithm::ES256, &p256.to_string()),
            KeyError::InvalidKey {
                algorithm: Algorithm::ES256
            }
        );
        let mut ed = VerifyingKey::parse(Algorithm::EdDSA, ED25519_PUBLIC)
            .expect("PEM")
            .public_jwk(None)
            .expect("asymmetric");
        ed["x"] = URL_SAFE_NO_PAD.encode([1u8; 16]).into();
        assert_eq!(
            parse_err(Algorithm::EdDSA, &ed.to_string()),
            KeyError::InvalidKey {
                algorithm: Algorithm::EdDSA
            }
        );
        // Points of small order decode, but verify forged signatures: the identity (with it,
        // R = identity and S = 0 verify any message) and the point of order 2.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut order_two = [0xffu8; 32];
        order_two[0] = 0xec;
        order_two[31] = 0x7f;
        for weak in [identity, order_two] {
            assert!(ed25519_dalek::VerifyingKey::from_bytes(&weak).is_ok());
            ed["x"] = URL_SAFE_NO_PAD.encode(weak).into();
            assert_eq!(
                parse_err(Algorithm::EdDSA, &ed.to_string()),
                KeyError::InvalidKey {
                    algorithm: Algorithm::EdDSA
                }
            );
        }
        ed["crv"] = "Ed448".into();
        assert_eq!(
            parse_err(Algorithm::EdDSA, &ed.to_string()),
            KeyError::WrongKeyType {
                algorithm: Algorithm::EdDSA,
                found: KeyKind::OtherOctetKeyPair
            }
        );
    }

    #[test]
    fn debug_never_shows_key_material() {
        let secret = "a very secret shared secret, 32+ bytes long";
        let parsed = ParsedKey::parse(Algorithm::HS256, secret).expect("secret");
        let (verifying, signing) = parsed.clone().into_parts();
        let signing = signing.expect("a secret signs");
        let entry = KeyEntry::new(Some("kid-1".to_owned()), verifying.clone());
        for debug in [
            format!("{parsed:?}"),
            format!("{verifying:?}"),
            format!("{signing:?}"),
            format!("{entry:?}"),
            format!("{entry:#?}"),
        ] {
            assert!(!debug.contains("secret"), "{debug}");
            assert!(debug.contains("HS256"), "{debug}");
        }
        assert_eq!(
            format!("{verifying:?}"),
            "VerifyingKey { algorithm: HS256, .. }"
        );
        assert_eq!(
            format!("{signing:?}"),
            "SigningKey { algorithm: HS256, .. }"
        );
        assert!(format!("{entry:?}").contains("kid-1"));

        let private = SigningKey::parse(Algorithm::RS256, RSA_PRIVATE).expect("private PEM");
        let debug = format!("{private:?}");
        assert_eq!(debug, "SigningKey { algorithm: RS256, .. }");
    }

    #[test]
    fn key_windows_are_half_open() {
        let key = VerifyingKey::parse(Algorithm::HS256, &"s".repeat(32)).expect("secret");
        let mut entry = KeyEntry::new(None, key);
        assert_eq!(entry.algorithm(), Algorithm::HS256);
        assert!(entry.usable_at(i64::MIN) && entry.usable_at(i64::MAX));
        entry.not_before = Some(100);
        entry.not_after = Some(200);
        assert!(!entry.usable_at(99));
        assert!(entry.usable_at(100));
        assert!(entry.usable_at(199));
        assert!(!entry.usable_at(200));
    }
}
