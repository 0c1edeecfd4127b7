//! Verifying a token: its shape, its header, the key, the signature, then the claims.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Number, Value};

use super::algorithm::Algorithm;
use super::keys::KeyEntry;

/// The default for [`Policy::max_token_bytes`]: far above any real token (a few hundred bytes
/// to a few KiB), far below what could cost time.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 16 * 1024;
/// The default for [`Policy::leeway_seconds`].
pub const DEFAULT_LEEWAY_SECONDS: u32 = 60;
/// The deepest nesting of arrays and objects accepted in a header or claims (the top object is
/// level 1). `serde_json` stops at 128 levels by itself, so a deeper document is an error while
/// it is parsed, never a stack overflow.
pub const MAX_JSON_DEPTH: usize = 64;
/// The longest `kid` accepted, in bytes, in a token header, a JWKS or a signed token.
pub const MAX_KID_BYTES: usize = 256;

/// What a verification checks besides the key's own rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// A longer token is `malformed` before any parsing.
    pub max_token_bytes: usize,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    pub leeway_seconds: u32,
    /// Whether a token without `exp` is `malformed` (a token that never expires is rarely
    /// meant).
    pub require_exp: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            leeway_seconds: DEFAULT_LEEWAY_SECONDS,
            require_exp: true,
        }
    }
}

/// The outcome of a verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// The signature verified and every claim check passed.
    Valid,
    /// `exp` is past, beyond the leeway.
    Expired,
    /// `nbf` or `iat` is in the future, beyond the leeway.
    NotYetValid,
    /// The signature does not verify with the key, or the header names another algorithm
    /// than the key's.
    BadSignature,
    /// No key has the token's `kid` (or the token has none and one is needed), or the key is
    /// outside its validity window.
    UnknownKey,
    /// The key expects an issuer and `iss` is not it.
    WrongIssuer,
    /// The key expects an audience and `aud` does not contain it.
    WrongAudience,
    /// The token is not a well-formed signed JWT, or a claim has the wrong type.
    Malformed,
}

impl Status {
    /// Every status.
    pub const ALL: [Self; 8] = [
        Self::Valid,
        Self::Expired,
        Self::NotYetValid,
        Self::BadSignature,
        Self::UnknownKey,
        Self::WrongIssuer,
        Self::WrongAudience,
        Self::Malformed,
    ];

    /// The status named `name` (as [`Status::as_str`] spells it), if there is one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == name)
    }

    /// The status's name in snake case, as the extension reports it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::BadSignature => "bad_signature",
            Self::UnknownKey => "unknown_key",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::Malformed => "malformed",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a token's header says, read without verifying anything, so that the caller can find
/// the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenHeader {
    /// `alg`.
    pub algorithm: Algorithm,
    /// `kid`, when present.
    pub kid: Option<String>,
}

/// The outcome of [`verify`], [`verify_with_key`] or a [`VerifiedCache`](super::VerifiedCache)
/// hit.
#[derive(Clone, Debug)]
pub struct Verification {
    /// The outcome.
    pub status: Status,
    /// The header's `kid`, when the header could be read (also when verification failed; it is
    /// not authenticated then).
    pub kid: Option<String>,
    /// The claims, only when `status` is [`Status::Valid`].
    pub claims: Option<Arc<Value>>,
    pub(super) window: Window,
}

impl Verification {
    fn failure(status: Status, kid: Option<String>) -> Self {
        Self {
            status,
            kid,
            claims: None,
            window: Window::default(),
        }
    }

    /// Whether the token is valid.
    pub fn is_valid(&self) -> bool {
        self.status == Status::Valid
    }

    /// A valid token's `exp` (rounded down to a whole second), if it has one.
    pub fn expires_at(&self) -> Option<i64> {
        self.window.expires
    }
}

/// The times that bound a valid verification, kept so that a cached one is re-checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Window {
    /// `exp`, rounded down.
    pub(super) expires: Option<i64>,
    /// The later of `nbf` and `iat`, rounded up.
    pub(super) not_before: Option<i64>,
    /// The key's window.
    pub(super) key_not_before: Option<i64>,
    pub(super) key_not_after: Option<i64>,
}

impl Window {
    /// The token's own time rules: `now > exp + leeway` is expired, `now + leeway < nbf` (or
    /// `iat`) is not yet valid.
    pub(super) fn token_status(&self, now: i64, leeway_seconds: u32) -> Result<(), Status> {
        let leeway = i64::from(leeway_seconds);
        if self
            .expires
            .is_some_and(|exp| now > exp.saturating_add(leeway))
        {
            return Err(Status::Expired);
        }
        if self
            .not_before
            .is_some_and(|nbf| now.saturating_add(leeway) < nbf)
        {
            return Err(Status::NotYetValid);
        }
        Ok(())
    }

    /// Whether the key was usable at `now` (see [`KeyEntry::usable_at`]).
    pub(super) fn key_usable_at(&self, now: i64) -> bool {
        self.key_not_before.is_none_or(|start| start <= now)
            && self.key_not_after.is_none_or(|end| now < end)
    }
}

/// Reads a token's header without verifying anything: `Err(Status::Malformed)` when the token
/// is longer than the policy allows, is not three base64url parts, or its header is not a JSON
/// object with a known `alg` (never `none`), a string `kid` of at most [`MAX_KID_BYTES`] if
/// any, and no `crit` (no extension is understood, so RFC 7515 section 4.1.11 requires
/// refusing the token).
pub fn parse_header(token: &str, policy: &Policy) -> Result<TokenHeader, Status> {
    split(token, policy).map(|parts| parts.header)
}

/// Verifies a token with the key that `lookup` finds for its header's `kid` (`None` when the
/// token has no `kid`; the lookup decides whether a default key applies).
///
/// The checks run in this order, and the first that fails gives the status:
/// 1. the token's size, then its shape and header ([`parse_header`]): `malformed`;
/// 2. the key: none found, a `kid` other than the entry's, or outside its window:
///    `unknown_key`;
/// 3. the header's `alg` is the key's, then the signature: `bad_signature`;
/// 4. the claims are a JSON object no deeper than [`MAX_JSON_DEPTH`], `exp`, `nbf` and `iat`
///    are numbers, `iss` and `sub` strings, `aud` a string or an array of strings, and `exp` is
///    present when the policy requires it: `malformed`;
/// 5. `exp`: `expired`; `nbf` and `iat`: `not_yet_valid`;
/// 6. `iss` is the key's issuer, if it has one: `wrong_issuer`;
/// 7. `aud` contains the key's audience, if it has one: `wrong_audience`.
///
/// The claims are parsed only after the signature verified, and returned only when valid.
pub fn verify<'k, F>(token: &str, lookup: F, policy: &Policy, now: i64) -> Verification
where
    F: FnOnce(Option<&str>) -> Option<&'k KeyEntry>,
{
    let parts = match split(token, policy) {
        Ok(parts) => parts,
        Err(status) => return Verification::failure(status, None),
    };
    let entry = lookup(parts.header.kid.as_deref());
    check(parts, entry, policy, now)
}

/// Verifies a token with one given key, as [`verify`] does with a lookup that finds it. An
/// entry without a `kid` is used whatever `kid` the token names.
pub fn verify_with_key(token: &str, entry: &KeyEntry, policy: &Policy, now: i64) -> Verification {
    verify(token, |_| Some(entry), policy, now)
}

struct Parts<'a> {
    header: TokenHeader,
    signing_input: &'a str,
    signature: &'a str,
    payload: Vec<u8>,
}

fn split<'a>(token: &'a str, policy: &Policy) -> Result<Parts<'a>, Status> {
    // First, before anything reads the token.
    if token.len() > policy.max_token_bytes {
        return Err(Status::Malformed);
    }
    let mut pieces = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (pieces.next(), pieces.next(), pieces.next(), pieces.next())
    else {
        return Err(Status::Malformed);
    };
    let is_base64url = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !(is_base64url(header) && is_base64url(payload) && is_base64url(signature)) {
        return Err(Status::Malformed);
    }
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| Status::Malformed);
    let header_json = decode(header)?;
    let payload_bytes = decode(payload)?;
    decode(signature)?;
    Ok(Parts {
        header: read_header(&header_json)?,
        signing_input: &token[..header.len() + 1 + payload.len()],
        signature,
        payload: payload_bytes,
    })
}

fn read_header(json: &[u8]) -> Result<TokenHeader, Status> {
    let value = parse_json_object(json).ok_or(Status::Malformed)?;
    let Value::Object(header) = &value else {
        return Err(Status::Malformed);
    };
    let algorithm = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(|alg| Algorithm::parse(alg).ok())
        .ok_or(Status::Malformed)?;
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) if kid.len() <= MAX_KID_BYTES => Some(kid.clone()),
        Some(_) => return Err(Status::Malformed),
    };
    if header.contains_key("crit") {
        return Err(Status::Malformed);
    }
    Ok(TokenHeader { algorithm, kid })
}

/// A JSON object no deeper than [`MAX_JSON_DEPTH`], or `None`.
pub(super) fn parse_json_object(json: &[u8]) -> Option<Value> {
    let value: Value = serde_json::from_slice(json).ok()?;
    (value.is_object() && within_depth(&value, MAX_JSON_DEPTH)).then_some(value)
}

/// Whether no array or object in `value` is nested deeper than `limit` (the top is level 1).
/// Iterative, so that it needs no stack whatever the depth.
pub(super) fn within_depth(value: &Value, limit: usize) -> bool {
    let mut pending = vec![(value, 1usize)];
    while let Some((value, depth)) = pending.pop() {
        let is_container = matches!(value, Value::Array(_) | Value::Object(_));
        if is_container && depth > limit {
            return false;
        }
        match value {
            Value::Array(items) => pending.extend(items.iter().map(|child| (child, depth + 1))),
            Value::Object(members) => {
                pending.extend(members.values().map(|child| (child, depth + 1)));
            }
            _ => {}
        }
    }
    true
}

fn check(parts: Parts<'_>, entry: Option<&KeyEntry>, policy: &Policy, now: i64) -> Verification {
    let kid = parts.header.kid.clone();
    match check_parts(&parts, entry, policy, now) {
        Ok((claims, window)) => Verification {
            status: Status::Valid,
            kid,
            claims: Some(Arc::new(claims)),
            window,
        },
        Err(status) => Verification::failure(status, kid),
    }
}

fn check_parts(
    parts: &Parts<'_>,
    entry: Option<&KeyEntry>,
    policy: &Policy,
    now: i64,
) -> Result<(Value, Window), Status> {
    let entry = entry.ok_or(Status::UnknownKey)?;
    if let (Some(expected), Some(named)) = (&entry.kid, &parts.header.kid)
        && expected != named
    {
        return Err(Status::UnknownKey);
    }
    if !entry.usable_at(now) {
        return Err(Status::UnknownKey);
    }
    // SECURITY: the key decides the algorithm, never the token: a token that names another
    // algorithm than its key's (an RS256 public key used as an HS256 secret, say) is refused
    // before any cryptography. It is `bad_signature`, as its signature cannot be the key's.
    let algorithm = entry.algorithm();
    if parts.header.algorithm != algorithm {
        return Err(Status::BadSignature);
    }
    // Signature only: no claim is validated by jsonwebtoken (there is no `Validation` to get
    // wrong); this module checks them, strictly typed, below.
    if !entry
        .key
        .verifies(parts.signature, parts.signing_input.as_bytes())
    {
        return Err(Status::BadSignature);
    }
    let claims = parse_json_object(&parts.payload).ok_or(Status::Malformed)?;
    let window = check_claims(&claims, entry, policy, now)?;
    Ok((claims, window))
}

fn check_claims(
    claims: &Value,
    entry: &KeyEntry,
    policy: &Policy,
    now: i64,
) -> Result<Window, Status> {
    let Value::Object(members) = claims else {
        return Err(Status::Malformed);
    };
    let registered = RegisteredClaims::read(members).map_err(|_| Status::Malformed)?;
    if policy.require_exp && registered.exp.is_none() {
        return Err(Status::Malformed);
    }
    let window = Window {
        expires: registered.exp,
        not_before: registered.nbf.max(registered.iat),
        key_not_before: entry.not_before,
        key_not_after: entry.not_after,
    };
    window.token_status(now, policy.leeway_seconds)?;
    if let Some(issuer) = &entry.issuer
        && registered.iss != Some(issuer.as_str())
    {
        return Err(Status::WrongIssuer);
    }
    if let Some(audience) = &entry.audience
        && !registered.aud.contains(&audience.as_str())
    {
        return Err(Status::WrongAudience);
    }
    Ok(window)
}

/// The registered claims this module checks, read with strict types: a claim of the wrong type
/// is an error, never ignored (a string `"exp": "999"` must not make a token that never
/// expires).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct RegisteredClaims<'a> {
    /// `exp`, rounded down: a token is expired from the first whole second after it.
    pub(super) exp: Option<i64>,
    /// `nbf`, rounded up.
    pub(super) nbf: Option<i64>,
    /// `iat`, rounded up.
    pub(super) iat: Option<i64>,
    pub(super) iss: Option<&'a str>,
    pub(super) sub: Option<&'a str>,
    /// `aud` as a list (a single string is a list of one).
    pub(super) aud: Vec<&'a str>,
}

impl<'a> RegisteredClaims<'a> {
    /// Reads the registered claims; `Err` names the first claim of the wrong type.
    pub(super) fn read(members: &'a Map<String, Value>) -> Result<Self, &'static str> {
        let aud = match members.get("aud") {
            None => Vec::new(),
            Some(Value::String(audience)) => vec![audience.as_str()],
            Some(Value::Array(audiences)) => audiences
                .iter()
                .map(|audience| audience.as_str().ok_or("aud"))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("aud"),
        };
        Ok(Self {
            exp: numeric_date(members, "exp", false)?,
            nbf: numeric_date(members, "nbf", true)?,
            iat: numeric_date(members, "iat", true)?,
            iss: string_claim(members, "iss")?,
            sub: string_claim(members, "sub")?,
            aud,
        })
    }
}

/// A NumericDate claim (RFC 7519 section 2): a JSON number, integer or not, in whole seconds
/// rounded down or up. Out-of-range values saturate.
fn numeric_date(
    members: &Map<String, Value>,
    name: &'static str,
    round_up: bool,
) -> Result<Option<i64>, &'static str> {
    match members.get(name) {
        None => Ok(None),
        Some(Value::Number(number)) => whole_seconds(number, round_up).map(Some).ok_or(name),
        Some(_) => Err(name),
    }
}

fn whole_seconds(number: &Number, round_up: bool) -> Option<i64> {
    if let Some(seconds) = number.as_i64() {
        return Some(seconds);
    }
    if number.as_u64().is_some() {
        return Some(i64::MAX);
    }
    let seconds = number.as_f64().filter(|f| f.is_finite())?;
    // `as` saturates at i64's bounds.
    Some(if round_up {
        seconds.ceil() as i64
    } else {
        seconds.floor() as i64
    })
}

fn string_claim<'a>(
    members: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, &'static str> {
    match members.get(name) {
        None => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(name),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::keys::{ParsedKey, SigningKey, VerifyingKey};
    use super::super::sign::sign;
    use super::super::test_keys::*;
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn b64(bytes: impl AsRef<[u8]>) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn hs256() -> (SigningKey, KeyEntry) {
        let (verifying, signing) = ParsedKey::parse(Algorithm::HS256, HMAC_SECRET)
            .expect("secret")
            .into_parts();
        (
            signing.expect("a secret signs"),
            KeyEntry::new(Some("k1".to_owned()), verifying),
        )
    }

    /// A token with any header and payload bytes, signed with the HMAC test secret.
    fn hand_made(header: &[u8], payload: &[u8]) -> String {
        let input = format!("{}.{}", b64(header), b64(payload));
        let key = jsonwebtoken::EncodingKey::from_secret(HMAC_SECRET.as_bytes());
        let signature =
            jsonwebtoken::crypto::sign(input.as_bytes(), &key, jsonwebtoken::Algorithm::HS256)
                .expect("sign");
        format!("{input}.{signature}")
    }

    fn hs256_header() -> &'static [u8] {
        br#"{"alg":"HS256","typ":"JWT","kid":"k1"}"#
    }

    fn status_of(token: &str, entry: &KeyEntry) -> Status {
        verify_with_key(token, entry, &Policy::default(), NOW).status
    }

    #[test]
    fn statuses_have_snake_case_names() {
        let names: Vec<_> = Status::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "valid",
                "expired",
                "not_yet_valid",
                "bad_signature",
                "unknown_key",
                "wrong_issuer",
                "wrong_audience",
                "malformed"
            ]
        );
        assert_eq!(Status::NotYetValid.to_string(), "not_yet_valid");
    }

    #[test]
    fn every_algorithm_signs_and_verifies() {
        let claims = json!({"sub": "u1", "exp": NOW + 60, "scope": ["a", "b"]});
        for (algorithm, text) in signing_texts() {
            let parsed = ParsedKey::parse(algorithm, text).expect("signing key");
            let signing = parsed.signing_key().expect("signs");
            let token = sign(&claims, signing, Some("k1")).expect("sign");
            let header = parse_header(&token, &Policy::default()).expect("header");
            assert_eq!(header.algorithm, algorithm);
            assert_eq!(header.kid.as_deref(), Some("k1"));
            let entry = KeyEntry::new(Some("k1".to_owned()), parsed.verifying_key().clone());
            let verification = verify(
                &token,
                |kid| (kid == Some("k1")).then_some(&entry),
                &Policy::default(),
                NOW,
            );
            assert_eq!(verification.status, Status::Valid, "{algorithm}");
            assert_eq!(verification.claims.as_deref(), Some(&claims));
            assert_eq!(verification.kid.as_deref(), Some("k1"));
            assert_eq!(verification.expires_at(), Some(NOW + 60));
            // The public key alone verifies too.
            if !algorithm.is_symmetric() {
                let public = asymmetric_keys()
                    .into_iter()
                    .find(|(a, _, _)| *a == algorithm)
                    .map(|(_, public, _)| public)
                    .expect("listed");
                let entry = KeyEntry::new(
                    None,
                    VerifyingKey::parse(algorithm, public).expect("public"),
                );
                assert_eq!(status_of(&token, &entry), Status::Valid, "{algorithm}");
            }
        }
    }

    #[test]
    fn another_key_is_a_bad_signature() {
        let claims = json!({"exp": NOW + 60});
        let cases = [
            (Algorithm::RS256, RSA_PRIVATE, RSA_OTHER_PUBLIC),
            (Algorithm::EdDSA, ED25519_PRIVATE, ED25519_OTHER_PUBLIC),
        ];
        for (algorithm, private, other) in cases {
            let token = sign(
                &claims,
                &SigningKey::parse(algorithm, private).expect("private"),
                None,
            )
            .expect("sign");
            let entry = KeyEntry::new(None, VerifyingKey::parse(algorithm, other).expect("public"));
            assert_eq!(status_of(&token, &entry), Status::BadSignature);
        }
        let (signing, _) = hs256();
        let token = sign(&claims, &signing, None).expect("sign");
        let other =
            VerifyingKey::parse(Algorithm::HS256, &HMAC_SECRET.replace('0', "1")).expect("secret");
        assert_eq!(
            status_of(&token, &KeyEntry::new(None, other)),
            Status::BadSignature
        );
        // A tampered payload or signature.
        let (_, entry) = hs256();
        let mut pieces: Vec<String> = token.split('.').map(str::to_owned).collect();
        pieces[1] = b64(json!({"exp": NOW + 6000}).to_string());
        assert_eq!(status_of(&pieces.join("."), &entry), Status::BadSignature);
        let mut pieces: Vec<String> = token.split('.').map(str::to_owned).collect();
        pieces[2] = b64([0u8; 32]);
        assert_eq!(status_of(&pieces.join("."), &entry), Status::BadSignature);
    }

    #[test]
    fn the_key_decides_the_algorithm() {
        let claims = json!({"exp": NOW + 60});
        // An HS384 token for an HS256 key, though the secret is the same.
        let hs384 = SigningKey::parse(Algorithm::HS384, HMAC_SECRET).expect("secret");
        let token = sign(&claims, &hs384, None).expect("sign");
        let (_, entry) = hs256();
        assert_eq!(status_of(&token, &entry), Status::BadSignature);
        // RS256 and PS256 share keys, not signatures.
        let ps256 = SigningKey::parse(Algorithm::PS256, RSA_PRIVATE).expect("private");
        let token = sign(&claims, &ps256, None).expect("sign");
        let rs256 = KeyEntry::new(
            None,
            VerifyingKey::parse(Algorithm::RS256, RSA_PUBLIC).expect("public"),
        );
        assert_eq!(status_of(&token, &rs256), Status::BadSignature);
    }

    #[test]
    fn an_rsa_public_key_used_as_an_hmac_secret_is_refused() {
        // The classic attack: the public key PEM, which anyone has, as an HS256 secret.
        let forged = {
            let header = br#"{"alg":"HS256","typ":"JWT"}"#;
            let input = format!(
                "{}.{}",
                b64(header),
                b64(json!({"exp": NOW + 60}).to_string())
            );
            let key = jsonwebtoken::EncodingKey::from_secret(RSA_PUBLIC.as_bytes());
            let signature =
                jsonwebtoken::crypto::sign(input.as_bytes(), &key, jsonwebtoken::Algorithm::HS256)
                    .expect("sign");
            format!("{input}.{signature}")
        };
        let rs256 = KeyEntry::new(
            None,
            VerifyingKey::parse(Algorithm::RS256, RSA_PUBLIC).expect("public"),
        );
        assert_eq!(status_of(&forged, &rs256), Status::BadSignature);
        // And the key itself is refused as an HMAC secret.
        assert!(VerifyingKey::parse(Algorithm::HS256, RSA_PUBLIC).is_err());
    }

    #[test]
    fn none_and_unknown_algorithms_are_malformed() {
        let (_, entry) = hs256();
        let payload = json!({"exp": NOW + 60}).to_string();
        for header in [
            json!({"alg": "none"}),
            json!({"alg": "None"}),
            json!({"alg": "hs256"}),
            json!({"alg": "HS999"}),
            json!({"alg": 256}),
            json!({"alg": null}),
            json!({"typ": "JWT"}),
            json!({"alg": "HS256", "kid": 5}),
            json!({"alg": "HS256", "kid": "k".repeat(MAX_KID_BYTES + 1)}),
            json!({"alg": "HS256", "crit": ["exp"]}),
            json!(["alg", "HS256"]),
            json!("HS256"),
        ] {
            let token = hand_made(header.to_string().as_bytes(), payload.as_bytes());
            assert_eq!(status_of(&token, &entry), Status::Malformed, "{header}");
            assert_eq!(
                parse_header(&token, &Policy::default()),
                Err(Status::Malformed)
            );
        }
        // An unsigned token: `alg` none and an empty signature.
        let unsigned = format!(
            "{}.{}.",
            b64(r#"{"alg":"none"}"#),
            b64(json!({"exp": NOW + 60}).to_string())
        );
        assert_eq!(status_of(&unsigned, &entry), Status::Malformed);
    }

    #[test]
    fn shapes_other_than_three_base64url_parts_are_malformed() {
        let (signing, entry) = hs256();
        let token = sign(&json!({"exp": NOW + 60}), &signing, Some("k1")).expect("sign");
        assert_eq!(status_of(&token, &entry), Status::Valid);
        let pieces: Vec<&str> = token.split('.').collect();
        let cases = [
            String::new(),
            ".".to_owned(),
            "..".to_owned(),
            format!("{}.{}", pieces[0], pieces[1]),
            format!("{token}.{}", pieces[2]),
            format!("{token}."),
            format!(".{token}"),
            format!("{}..{}", pieces[0], pieces[2]),
            format!("{} ", token),
            format!("{}.{}.{}=", pieces[0], pieces[1], pieces[2]),
            format!("{}+.{}.{}", pieces[0], pieces[1], pieces[2]),
            format!("{}.{}.{}", pieces[0], "!!!!", pieces[2]),
            // Four characters of base64url too many or too few bits.
            format!("{}.{}.{}", pieces[0], pieces[1], "A"),
            format!("{}.{}.{}", "eyJ", pieces[1], pieces[2]),
            "not a token".to_owned(),
            "a.b.c".to_owned(),
        ];
        for case in cases {
            assert_eq!(status_of(&case, &entry), Status::Malformed, "{case:?}");
        }
        // A payload that is base64url but not JSON, once signed, is malformed too.
        let not_json = hand_made(hs256_header(), b"\xff\xfenot json");
        assert_eq!(status_of(&not_json, &entry), Status::Malformed);
        for payload in [&b"[1, 2]"[..], b"\"claims\"", b"42", b"null", b""] {
            let token = hand_made(hs256_header(), payload);
            assert_eq!(status_of(&token, &entry), Status::Malformed);
        }
    }

    #[test]
    fn huge_tokens_are_malformed_at_once() {
        let (_, entry) = hs256();
        let megabyte = "a".repeat(1 << 20);
        let huge = format!("{megabyte}.{megabyte}.{megabyte}");
        let started = std::time::Instant::now();
        assert_eq!(status_of(&huge, &entry), Status::Malformed);
        assert_eq!(
            parse_header(&huge, &Policy::default()),
            Err(Status::Malformed)
        );
        // Also when the policy lets it through the size check: a megabyte of dots, or of
        // nested arrays in the header.
        let lenient = Policy {
            max_token_bytes: 4 << 20,
            ..Policy::default()
        };
        let dots = ".".repeat(1 << 20);
        assert_eq!(
            verify_with_key(&dots, &entry, &lenient, NOW).status,
            Status::Malformed
        );
        let nested_header = hand_made(&b"[".repeat(1 << 20), b"{}");
        assert_eq!(
            verify_with_key(&nested_header, &entry, &lenient, NOW).status,
            Status::Malformed
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn deep_nesting_is_malformed_and_never_overflows() {
        let (_, entry) = hs256();
        let lenient = Policy {
            max_token_bytes: 1 << 20,
            ..Policy::default()
        };
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let token = hand_made(hs256_header(), deep.as_bytes());
        assert_eq!(
            verify_with_key(&token, &entry, &lenient, NOW).status,
            Status::Malformed
        );
        let unclosed = hand_made(hs256_header(), "{\"a\":".repeat(100_000).as_bytes());
        assert_eq!(
            verify_with_key(&unclosed, &entry, &lenient, NOW).status,
            Status::Malformed
        );
        // Within serde_json's limit but past ours.
        let nested = |levels: usize| {
            let mut claims = json!(1);
            for _ in 1..levels {
                claims = json!({ "a": claims });
            }
            let mut top = json!({"exp": NOW + 60});
            top["a"] = claims;
            top
        };
        for (levels, expected) in [
            (MAX_JSON_DEPTH - 1, Status::Valid),
            (MAX_JSON_DEPTH, Status::Malformed),
            (100, Status::Malformed),
        ] {
            // `levels` objects under the top one.
            let token = hand_made(hs256_header(), nested(levels + 1).to_string().as_bytes());
            assert_eq!(status_of(&token, &entry), expected, "{levels}");
        }
        let deep_header = format!(
            r#"{{"alg":"HS256","x":{}{}}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        let token = hand_made(deep_header.as_bytes(), br#"{"exp":1900000000}"#);
        assert_eq!(status_of(&token, &entry), Status::Malformed);
    }

    #[test]
    fn depth_is_counted_from_the_top_object() {
        assert!(within_depth(&json!({}), 1));
        assert!(within_depth(&json!({"a": 1}), 1));
        assert!(!within_depth(&json!({"a": []}), 1));
        assert!(within_depth(&json!({"a": []}), 2));
        assert!(within_depth(&json!({"a": [[], {"b": 1}]}), 3));
        assert!(!within_depth(&json!({"a": [[], {"b": {}}]}), 3));
    }

    fn claims_status(claims: Value) -> Status {
        let (signing, entry) = hs256();
        status_of(&sign_unchecked(&claims, &signing), &entry)
    }

    /// Signs any claims, even of the wrong types that `sign` refuses.
    fn sign_unchecked(claims: &Value, key: &SigningKey) -> String {
        let header = jsonwebtoken::Header::new(key.algorithm().into());
        jsonwebtoken::encode(&header, claims, key.encoding_key()).expect("sign")
    }

    #[test]
    fn claims_of_the_wrong_type_are_malformed() {
        let exp = NOW + 60;
        for claims in [
            json!({"exp": "999"}),
            json!({"exp": format!("{exp}")}),
            json!({"exp": null}),
            json!({"exp": true}),
            json!({"exp": [exp]}),
            json!({"exp": {"at": exp}}),
            json!({"exp": exp, "nbf": "x"}),
            json!({"exp": exp, "nbf": null}),
            json!({"exp": exp, "iat": "0"}),
            json!({"exp": exp, "aud": 5}),
            json!({"exp": exp, "aud": ["a", 5]}),
            json!({"exp": exp, "aud": {"a": true}}),
            json!({"exp": exp, "aud": null}),
            json!({"exp": exp, "iss": 5}),
            json!({"exp": exp, "iss": ["a"]}),
            json!({"exp": exp, "sub": 42}),
            json!({"exp": exp, "sub": null}),
        ] {
            assert_eq!(claims_status(claims.clone()), Status::Malformed, "{claims}");
        }
        // Other claims may have any type.
        assert_eq!(
            claims_status(json!({"exp": exp, "jti": 5, "roles": {"a": [1, null]}})),
            Status::Valid
        );
    }

    #[test]
    fn exp_is_required_unless_the_policy_says_otherwise() {
        let (signing, entry) = hs256();
        let token = sign(&json!({"sub": "u1"}), &signing, None).expect("sign");
        assert_eq!(status_of(&token, &entry), Status::Malformed);
        let lenient = Policy {
            require_exp: false,
            ..Policy::default()
        };
        let verification = verify_with_key(&token, &entry, &lenient, NOW);
        assert_eq!(verification.status, Status::Valid);
        assert_eq!(verification.expires_at(), None);
    }

    #[test]
    fn time_claims_have_leeway_and_edges() {
        let (signing, entry) = hs256();
        let policy = Policy {
            leeway_seconds: 30,
            ..Policy::default()
        };
        let at = |claims: Value, now: i64| {
            let token = sign_unchecked(&claims, &signing);
            verify_with_key(&token, &entry, &policy, now).status
        };
        let exp = NOW;
        assert_eq!(at(json!({"exp": exp}), exp - 1), Status::Valid);
        assert_eq!(at(json!({"exp": exp}), exp), Status::Valid);
        assert_eq!(at(json!({"exp": exp}), exp + 30), Status::Valid);
        assert_eq!(at(json!({"exp": exp}), exp + 31), Status::Expired);
        // Fractional seconds: expired from the first whole second after exp + leeway.
        assert_eq!(
            at(json!({"exp": exp as f64 + 0.5}), exp + 30),
            Status::Valid
        );
        assert_eq!(
            at(json!({"exp": exp as f64 + 0.5}), exp + 31),
            Status::Expired
        );
        let later = NOW + 1000;
        assert_eq!(
            at(json!({"exp": later, "nbf": NOW}), NOW - 30),
            Status::Valid
        );
        assert_eq!(
            at(json!({"exp": later, "nbf": NOW}), NOW - 31),
            Status::NotYetValid
        );
        assert_eq!(
            at(json!({"exp": later, "nbf": NOW as f64 + 0.5}), NOW - 30),
            Status::NotYetValid
        );
        assert_eq!(
            at(json!({"exp": later, "iat": NOW}), NOW - 30),
            Status::Valid
        );
        assert_eq!(
            at(json!({"exp": later, "iat": NOW}), NOW - 31),
            Status::NotYetValid
        );
        // Extreme values saturate instead of overflowing.
        assert_eq!(at(json!({"exp": u64::MAX}), i64::MAX), Status::Valid);
        assert_eq!(at(json!({"exp": i64::MAX}), i64::MAX), Status::Valid);
        assert_eq!(at(json!({"exp": -1e300}), NOW), Status::Expired);
        assert_eq!(at(json!({"exp": 1e300}), NOW), Status::Valid);
        assert_eq!(
            at(json!({"exp": later, "nbf": 1e300}), NOW),
            Status::NotYetValid
        );
        assert_eq!(at(json!({"exp": i64::MIN}), i64::MIN), Status::Valid);
    }

    fn with_rules(issuer: Option<&str>, audience: Option<&str>) -> (SigningKey, KeyEntry) {
        let (signing, mut entry) = hs256();
        entry.issuer = issuer.map(str::to_owned);
        entry.audience = audience.map(str::to_owned);
        (signing, entry)
    }

    #[test]
    fn issuer_and_audience() {
        let exp = NOW + 60;
        let (signing, entry) = with_rules(Some("https://issuer.example"), Some("api"));
        let status =
            |claims: Value| status_of(&sign(&claims, &signing, None).expect("sign"), &entry);
        let iss = "https://issuer.example";
        assert_eq!(
            status(json!({"exp": exp, "iss": iss, "aud": "api"})),
            Status::Valid
        );
        assert_eq!(
            status(json!({"exp": exp, "iss": iss, "aud": ["web", "api"]})),
            Status::Valid
        );
        assert_eq!(
            status(json!({"exp": exp, "iss": "https://other.example", "aud": "api"})),
            Status::WrongIssuer
        );
        assert_eq!(
            status(json!({"exp": exp, "aud": "api"})),
            Status::WrongIssuer
        );
        assert_eq!(
            status(json!({"exp": exp, "iss": "https://ISSUER.example", "aud": "api"})),
            Status::WrongIssuer
        );
        assert_eq!(
            status(json!({"exp": exp, "iss": iss, "aud": "web"})),
            Status::WrongAudience
        );
        assert_eq!(
            status(json!({"exp": exp, "iss": iss, "aud": ["web", "API"]})),
            Status::WrongAudience
        );
        assert_eq!(
            status(json!({"exp": exp, "iss": iss, "aud": []})),
            Status::WrongAudience
        );
        assert_eq!(
            status(json!({"exp": exp, "iss": iss})),
            Status::WrongAudience
        );
        // Checks run in order: time first.
        assert_eq!(
            status(json!({"exp": NOW - 3600, "iss": "x", "aud": "y"})),
            Status::Expired
        );
        // A key with no rules accepts any issuer and audience.
        let (signing, entry) = with_rules(None, None);
        let token = sign(
            &json!({"exp": exp, "iss": "anyone", "aud": ["a", "b"]}),
            &signing,
            None,
        )
        .expect("sign");
        assert_eq!(status_of(&token, &entry), Status::Valid);
    }

    #[test]
    fn keys_are_looked_up_by_kid() {
        let (signing, entry) = hs256();
        let policy = Policy::default();
        let claims = json!({"exp": NOW + 60});
        let table = [entry];
        let lookup = |kid: Option<&str>| table.iter().find(|e| e.kid.as_deref() == kid);
        let token = sign(&claims, &signing, Some("k1")).expect("sign");
        assert_eq!(verify(&token, lookup, &policy, NOW).status, Status::Valid);
        let unknown = sign(&claims, &signing, Some("k2")).expect("sign");
        let verification = verify(&unknown, lookup, &policy, NOW);
        assert_eq!(verification.status, Status::UnknownKey);
        assert_eq!(verification.kid.as_deref(), Some("k2"));
        assert!(verification.claims.is_none());
        let no_kid = sign(&claims, &signing, None).expect("sign");
        assert_eq!(
            verify(&no_kid, lookup, &policy, NOW).status,
            Status::UnknownKey
        );
        // A lookup that returns another kid's key is not trusted.
        let mismatched = verify(&unknown, |_| Some(&table[0]), &policy, NOW);
        assert_eq!(mismatched.status, Status::UnknownKey);
        // An inline key has no kid and takes any.
        let inline = KeyEntry::new(None, table[0].key.clone());
        assert_eq!(status_of(&unknown, &inline), Status::Valid);
        assert_eq!(status_of(&no_kid, &inline), Status::Valid);
    }

    #[test]
    fn a_key_outside_its_window_is_unknown() {
        let (signing, mut entry) = hs256();
        entry.not_before = Some(NOW - 10);
        entry.not_after = Some(NOW + 10);
        let token = sign(&json!({"exp": NOW + 3600}), &signing, Some("k1")).expect("sign");
        let at = |now| verify_with_key(&token, &entry, &Policy::default(), now).status;
        assert_eq!(at(NOW - 11), Status::UnknownKey);
        assert_eq!(at(NOW - 10), Status::Valid);
        assert_eq!(at(NOW + 9), Status::Valid);
        assert_eq!(at(NOW + 10), Status::UnknownKey);
    }

    #[test]
    fn claims_are_returned_only_when_valid() {
        let (signing, entry) = hs256();
        let expired = sign(&json!({"exp": NOW - 3600, "sub": "u"}), &signing, None).expect("sign");
        let verification = verify_with_key(&expired, &entry, &Policy::default(), NOW);
        assert_eq!(verification.status, Status::Expired);
        assert!(verification.claims.is_none());
        assert!(!verification.is_valid());
        assert_eq!(verification.expires_at(), None);
    }

    #[test]
    fn registered_claims_are_read_strictly() {
        let claims =
            json!({"exp": 10.9, "nbf": 5.1, "iat": 4, "iss": "i", "sub": "s", "aud": ["a", "b"]});
        let members = claims.as_object().expect("object");
        assert_eq!(
            RegisteredClaims::read(members),
            Ok(RegisteredClaims {
                exp: Some(10),
                nbf: Some(6),
                iat: Some(4),
                iss: Some("i"),
                sub: Some("s"),
                aud: vec!["a", "b"],
            })
        );
        let claims = json!({"aud": "a"});
        assert_eq!(
            RegisteredClaims::read(claims.as_object().expect("object")).map(|c| c.aud),
            Ok(vec!["a"])
        );
        let claims = json!({"exp": 1, "sub": 1});
        assert_eq!(
            RegisteredClaims::read(claims.as_object().expect("object")),
            Err("sub")
        );
    }
}
