//! The credential format: a kind prefix, 256 random bits in base62, and a checksum.
//!
//! ```text
//! apgt_ 3kTMd0aVq9cWx...(43 base62 digits) Xy12Ab
//! └┬──┘ └──────────────┬──────────────┘ └──┬─┘
//! kind   32 bytes from the operating system  checksum: the first 4 bytes of
//!                                             BLAKE3(prefix || body), 6 digits
//! ```
//!
//! Every credential of a kind has the same length (54 characters), so a parser rejects a wrong
//! length, prefix, alphabet or checksum without touching any table, and a secret scanner can
//! recognise a leaked credential, and tell a real one from a look-alike, with no database at all.

use std::fmt;

use crate::base62;

/// Random bytes in every credential: 256 bits.
pub const SECRET_BYTES: usize = 32;
/// Base62 digits that encode [`SECRET_BYTES`] (62^43 > 2^256).
pub const BODY_LEN: usize = 43;
/// Base62 digits of the checksum (62^6 > 2^32).
pub const CHECKSUM_LEN: usize = 6;
/// Length of every kind's prefix, separator included.
pub const PREFIX_LEN: usize = 5;
/// Length of every credential, in bytes (all of them ASCII).
pub const CREDENTIAL_LEN: usize = PREFIX_LEN + BODY_LEN + CHECKSUM_LEN;

/// What a credential is for. Each kind has its own prefix, so one kind is never accepted as
/// another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CredentialKind {
    /// An opaque bearer token, from `issue_token`.
    Token,
    /// An organization's API key, from `create_api_key`.
    ApiKey,
    /// A session token, from `create_session`.
    Session,
}

impl CredentialKind {
    /// All kinds, for table-driven code and tests.
    pub const ALL: [CredentialKind; 3] = [Self::Token, Self::ApiKey, Self::Session];

    /// The prefix that starts every credential of this kind, separator included.
    pub const fn prefix(self) -> &'static str {
        match self {
            Self::Token => "apgt_",
            Self::ApiKey => "apgk_",
            Self::Session => "apgs_",
        }
    }

    /// The kind whose prefix starts `candidate`, if any.
    pub fn from_prefix(candidate: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| candidate.starts_with(kind.prefix()))
    }

    /// A lowercase name for messages: `token`, `API key`, `session token`.
    pub const fn describe(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::ApiKey => "API key",
            Self::Session => "session token",
        }
    }
}

/// Why a string is not a well-formed credential of the expected kind.
///
/// The variants say what is wrong and never carry any part of the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The string is empty.
    #[error("the credential is empty")]
    Empty,
    /// The string has the wrong length for any credential.
    #[error("the credential has the wrong length")]
    WrongLength,
    /// The string is a credential of another kind.
    #[error("the credential is {}, not {}", .found.describe(), .expected.describe())]
    WrongKind {
        /// The kind the caller asked for.
        expected: CredentialKind,
        /// The kind its prefix names.
        found: CredentialKind,
    },
    /// The string does not start with any credential prefix.
    #[error("the credential does not start with a known prefix")]
    UnknownPrefix,
    /// The string has a character outside the base62 alphabet.
    #[error("the credential contains a character outside its alphabet")]
    BadAlphabet,
    /// The checksum does not match: a mistyped or truncated credential.
    #[error("the credential's checksum does not match")]
    BadChecksum,
}

/// A credential in clear text: shown once at creation, never stored.
///
/// `Debug` and `Display` show only the kind's prefix, so a credential that reaches a log line by
/// accident does not leak. Use [`Credential::expose_secret`] to hand it to its owner.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    kind: CredentialKind,
    text: String,
}

impl Credential {
    /// A new credential of `kind`, with [`SECRET_BYTES`] bytes from the operating system.
    pub fn generate(kind: CredentialKind) -> Result<Self, getrandom::Error> {
        let mut secret = [0u8; SECRET_BYTES];
        getrandom::fill(&mut secret)?;
        Ok(Self::from_secret_bytes(kind, &secret))
    }

    /// The credential of `kind` whose random part is `secret`. Deterministic: for tests, and for
    /// callers that bring their own randomness.
    pub fn from_secret_bytes(kind: CredentialKind, secret: &[u8; SECRET_BYTES]) -> Self {
        let mut text = String::with_capacity(CREDENTIAL_LEN);
        text.push_str(kind.prefix());
        base62::encode_fixed(secret, BODY_LEN, &mut text);
        let checksum = checksum(text.as_bytes());
        base62::encode_fixed(&checksum, CHECKSUM_LEN, &mut text);
        debug_assert_eq!(text.len(), CREDENTIAL_LEN);
        Self { kind, text }
    }

    /// Parses `candidate` as a credential of `expected` kind.
    pub fn parse(expected: CredentialKind, candidate: &str) -> Result<Self, FormatError> {
        check_format(expected, candidate.as_bytes())?;
        Ok(Self {
            kind: expected,
            text: candidate.to_owned(),
        })
    }

    /// The credential's kind.
    pub fn kind(&self) -> CredentialKind {
        self.kind
    }

    /// The credential itself. Give it to its owner once; never log or store it.
    pub fn expose_secret(&self) -> &str {
        &self.text
    }

    /// Consumes the credential, returning its text.
    pub fn into_secret(self) -> String {
        self.text
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SECURITY: only the public prefix is shown.
        write!(f, "Credential({}<redacted>)", self.kind.prefix())
    }
}

impl fmt::Display for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}<redacted>", self.kind.prefix())
    }
}

/// Characters of a credential shown to identify it in lists and logs: the kind's prefix and the
/// first 7 characters of the random part (about 42 of its 256 bits).
pub const DISPLAY_PREFIX_LEN: usize = PREFIX_LEN + 7;

impl Credential {
    /// The start of the credential, safe to show in lists so that its owner can recognise it.
    pub fn display_prefix(&self) -> &str {
        &self.text[..DISPLAY_PREFIX_LEN]
    }
}

/// A new random, non-secret identifier: `prefix` followed by 17 base62 characters (96 bits).
pub fn random_id(prefix: &str) -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes)?;
    let mut id = String::with_capacity(prefix.len() + 17);
    id.push_str(prefix);
    base62::encode_fixed(&bytes, 17, &mut id);
    Ok(id)
}

/// Checks that `candidate` is a well-formed credential of `expected` kind, without allocating.
///
/// Works on bytes, as they arrive from SQL (a credential is ASCII). The length is checked
/// first, so a huge input costs no more than a short one.
pub fn check_format(expected: CredentialKind, candidate: &[u8]) -> Result<(), FormatError> {
    check_shape(expected, candidate)?;
    let (signed, given) = candidate.split_at(PREFIX_LEN + BODY_LEN);
    // Compare numbers rather than encoding the expected checksum: no allocation on a path that
    // runs for every request.
    let expected = u64::from(u32::from_be_bytes(checksum(signed)));
    if base62::decode_u64(given) != Some(expected) {
        return Err(FormatError::BadChecksum);
    }
    Ok(())
}

/// [`check_format`] without the checksum: the length, the kind's prefix and the alphabet. A
/// client runs this before a call, which answers anything else without sending it; the server
/// runs the whole check, so a wrong checksum costs that one call a round trip instead of every
/// call a BLAKE3 hash.
pub fn check_shape(expected: CredentialKind, candidate: &[u8]) -> Result<(), FormatError> {
    if candidate.is_empty() {
        return Err(FormatError::Empty);
    }
    if candidate.len() != CREDENTIAL_LEN {
        return Err(FormatError::WrongLength);
    }
    if !candidate.starts_with(expected.prefix().as_bytes()) {
        let found = CredentialKind::ALL
            .into_iter()
            .find(|kind| candidate.starts_with(kind.prefix().as_bytes()));
        return Err(match found {
            Some(found) => FormatError::WrongKind { expected, found },
            None => FormatError::UnknownPrefix,
        });
    }
    if !base62::all_digits(&candidate[PREFIX_LEN..]) {
        return Err(FormatError::BadAlphabet);
    }
    Ok(())
}

/// The first four bytes of the unkeyed BLAKE3 hash of prefix and body. Public by design: it
/// catches typos and lets scanners verify a find; it protects nothing.
fn checksum(prefix_and_body: &[u8]) -> [u8; 4] {
    let hash = blake3::hash(prefix_and_body);
    let mut out = [0u8; 4];
    out.copy_from_slice(&hash.as_bytes()[..4]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: [u8; SECRET_BYTES] = [7; SECRET_BYTES];

    #[test]
    fn generated_credentials_parse_as_their_own_kind_only() {
        for kind in CredentialKind::ALL {
            let credential = Credential::generate(kind).expect("OS randomness");
            let text = credential.expose_secret();
            assert_eq!(text.len(), CREDENTIAL_LEN);
            assert!(text.starts_with(kind.prefix()));
            assert_eq!(check_format(kind, text.as_bytes()), Ok(()));
            for other in CredentialKind::ALL.into_iter().filter(|&k| k != kind) {
                assert_eq!(
                    check_format(other, text.as_bytes()),
                    Err(FormatError::WrongKind {
                        expected: other,
                        found: kind
                    })
                );
            }
        }
    }

    #[test]
    fn generation_is_random() {
        let a = Credential::generate(CredentialKind::Token).expect("OS randomness");
        let b = Credential::generate(CredentialKind::Token).expect("OS randomness");
        assert_ne!(a.expose_secret(), b.expose_secret());
    }

    #[test]
    fn from_secret_bytes_is_deterministic() {
        let a = Credential::from_secret_bytes(CredentialKind::Token, &SECRET);
        let b = Credential::from_secret_bytes(CredentialKind::Token, &SECRET);
        assert_eq!(a, b);
        let c = Credential::from_secret_bytes(CredentialKind::Token, &[8; SECRET_BYTES]);
        assert_ne!(a, c);
    }

    #[test]
    fn rejects_malformed_strings() {
        let good = Credential::from_secret_bytes(CredentialKind::Token, &SECRET).into_secret();
        let kind = CredentialKind::Token;

        let mut flipped_body = good.clone().into_bytes();
        flipped_body[10] = if flipped_body[10] == b'a' { b'b' } else { b'a' };
        let flipped_body = String::from_utf8(flipped_body).expect("ascii");

        let mut flipped_checksum = good.clone().into_bytes();
        let last = CREDENTIAL_LEN - 1;
        flipped_checksum[last] = if flipped_checksum[last] == b'a' {
            b'b'
        } else {
            b'a'
        };
        let flipped_checksum = String::from_utf8(flipped_checksum).expect("ascii");

        let cases: Vec<(String, FormatError)> = vec![
            (String::new(), FormatError::Empty),
            ("apgt_".into(), FormatError::WrongLength),
            (good[..CREDENTIAL_LEN - 1].into(), FormatError::WrongLength),
            (format!("{good}x"), FormatError::WrongLength),
            ("x".repeat(1 << 20), FormatError::WrongLength),
            (
                format!("xxxx_{}", &good[PREFIX_LEN..]),
                FormatError::UnknownPrefix,
            ),
            (
                format!("APGT_{}", &good[PREFIX_LEN..]),
                FormatError::UnknownPrefix,
            ),
            (
                "';--".repeat(CREDENTIAL_LEN / 4 + 1)[..CREDENTIAL_LEN].into(),
                FormatError::UnknownPrefix,
            ),
            (
                format!("apgt_{}", "'".repeat(BODY_LEN + CHECKSUM_LEN)),
                FormatError::BadAlphabet,
            ),
            (
                format!("{}-{}", &good[..20], &good[21..]),
                FormatError::BadAlphabet,
            ),
            (flipped_body, FormatError::BadChecksum),
            (flipped_checksum, FormatError::BadChecksum),
        ];
        for (input, expected) in cases {
            assert_eq!(
                check_format(kind, input.as_bytes()),
                Err(expected),
                "input of length {}",
                input.len()
            );
            // The shape alone finds every fault but a wrong checksum.
            let shape = (expected != FormatError::BadChecksum).then_some(expected);
            assert_eq!(
                check_shape(kind, input.as_bytes()).err(),
                shape,
                "input of length {}",
                input.len()
            );
        }
        assert_eq!(check_shape(kind, good.as_bytes()), Ok(()));
    }

    #[test]
    fn multibyte_input_of_the_right_length_is_rejected_without_panicking() {
        // 54 bytes, but not all ASCII: slicing at byte offsets must not split a character.
        let input = format!("apgt_{}", "é".repeat((BODY_LEN + CHECKSUM_LEN - 1) / 2));
        let input = format!("{input}{}", "a".repeat(CREDENTIAL_LEN - input.len()));
        assert_eq!(input.len(), CREDENTIAL_LEN);
        assert_eq!(
            check_format(CredentialKind::Token, input.as_bytes()),
            Err(FormatError::BadAlphabet)
        );
    }

    #[test]
    fn display_prefixes_and_ids() {
        let credential = Credential::from_secret_bytes(CredentialKind::ApiKey, &SECRET);
        assert_eq!(
            credential.display_prefix(),
            &credential.expose_secret()[..12]
        );
        let a = random_id("key_").expect("random");
        let b = random_id("key_").expect("random");
        assert_eq!(a.len(), 21);
        assert!(a.starts_with("key_") && a[4..].bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn debug_and_display_redact_the_secret() {
        let credential = Credential::from_secret_bytes(CredentialKind::ApiKey, &SECRET);
        let secret_part = &credential.expose_secret()[PREFIX_LEN..];
        for shown in [format!("{credential:?}"), credential.to_string()] {
            assert!(!shown.contains(secret_part), "{shown}");
            assert!(shown.contains("apgk_"), "{shown}");
        }
    }

    #[test]
    fn format_errors_never_quote_the_input() {
        let good = Credential::from_secret_bytes(CredentialKind::Session, &SECRET);
        let err = check_format(CredentialKind::Token, good.expose_secret().as_bytes())
            .expect_err("wrong kind");
        assert_eq!(
            err.to_string(),
            "the credential is session token, not token"
        );
    }
}
