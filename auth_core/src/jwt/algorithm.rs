//! The signature algorithms accepted, by their JOSE names (RFC 7518 section 3.1).

use std::fmt;
use std::str::FromStr;

/// A JWS signature algorithm.
///
/// `none` is deliberately not one: an unsigned token proves nothing, so it is refused wherever an
/// algorithm is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// HMAC with SHA-256.
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// EdDSA on Ed25519.
    EdDSA,
}

/// The kind of key that an algorithm needs, or that a key turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// A shared secret (HMAC).
    Secret,
    /// An RSA key.
    Rsa,
    /// An EC key on P-256.
    EcP256,
    /// An EC key on P-384.
    EcP384,
    /// An EC key on another curve (P-521, secp256k1...), which no accepted algorithm uses.
    EcOtherCurve,
    /// An Ed25519 key.
    Ed25519,
    /// An octet key pair on another curve (Ed448, X25519...), which no accepted algorithm uses.
    OtherOctetKeyPair,
    /// A key type this module does not know.
    Unknown,
}

impl KeyKind {
    fn describe(self) -> &'static str {
        match self {
            Self::Secret => "a shared secret",
            Self::Rsa => "an RSA key",
            Self::EcP256 => "an EC key on P-256",
            Self::EcP384 => "an EC key on P-384",
            Self::EcOtherCurve => "an EC key on an unsupported curve",
            Self::Ed25519 => "an Ed25519 key",
            Self::OtherOctetKeyPair => "an OKP key on an unsupported curve",
            Self::Unknown => "a key of an unknown type",
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// Why a text is not an accepted algorithm.
///
/// Never quotes the text: an algorithm argument swapped with a key argument by mistake must not
/// put the key into an error message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AlgorithmError {
    /// The text is `none` (in any case): an unsigned token is never accepted.
    #[error("the algorithm \"none\" is never accepted: an unsigned token proves nothing")]
    None,
    /// The text is not one of the accepted names (they are case-sensitive).
    #[error(
        "unsupported algorithm; expected one of HS256, HS384, HS512, RS256, RS384, RS512, \
         PS256, PS384, PS512, ES256, ES384, EdDSA (case-sensitive)"
    )]
    Unknown,
}

impl Algorithm {
    /// Every accepted algorithm.
    pub const ALL: [Self; 12] = [
        Self::HS256,
        Self::HS384,
        Self::HS512,
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
        Self::ES256,
        Self::ES384,
        Self::EdDSA,
    ];

    /// Reads a JOSE algorithm name. Names are case-sensitive, as in RFC 7518.
    pub fn parse(text: &str) -> Result<Self, AlgorithmError> {
        if let Some(algorithm) = Self::ALL.into_iter().find(|a| a.as_str() == text) {
            return Ok(algorithm);
        }
        if text.eq_ignore_ascii_case("none") {
            Err(AlgorithmError::None)
        } else {
            Err(AlgorithmError::Unknown)
        }
    }

    /// The JOSE name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::HS256 => "HS256",
            Self::HS384 => "HS384",
            Self::HS512 => "HS512",
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::EdDSA => "EdDSA",
        }
    }

    /// Whether the algorithm uses a shared secret (HMAC) rather than a key pair.
    pub const fn is_symmetric(self) -> bool {
        matches!(self, Self::HS256 | Self::HS384 | Self::HS512)
    }

    /// The kind of key the algorithm needs.
    pub const fn key_kind(self) -> KeyKind {
        match self {
            Self::HS256 | Self::HS384 | Self::HS512 => KeyKind::Secret,
            Self::RS256 | Self::RS384 | Self::RS512 | Self::PS256 | Self::PS384 | Self::PS512 => {
                KeyKind::Rsa
            }
            Self::ES256 => KeyKind::EcP256,
            Self::ES384 => KeyKind::EcP384,
            Self::EdDSA => KeyKind::Ed25519,
        }
    }

    /// For an HMAC algorithm, the shortest secret accepted, in bytes: the size of the hash
    /// output, as RFC 7518 section 3.2 requires ("a key of the same size as the hash output or
    /// larger MUST be used"). `None` for the other algorithms.
    pub const fn min_secret_bytes(self) -> Option<usize> {
        match self {
            Self::HS256 => Some(32),
            Self::HS384 => Some(48),
            Self::HS512 => Some(64),
            _ => None,
        }
    }
}

impl FromStr for Algorithm {
    type Err = AlgorithmError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Algorithm> for jsonwebtoken::Algorithm {
    fn from(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::HS256 => Self::HS256,
            Algorithm::HS384 => Self::HS384,
            Algorithm::HS512 => Self::HS512,
            Algorithm::RS256 => Self::RS256,
            Algorithm::RS384 => Self::RS384,
            Algorithm::RS512 => Self::RS512,
            Algorithm::PS256 => Self::PS256,
            Algorithm::PS384 => Self::PS384,
            Algorithm::PS512 => Self::PS512,
            Algorithm::ES256 => Self::ES256,
            Algorithm::ES384 => Self::ES384,
            Algorithm::EdDSA => Self::EdDSA,
        }
    }
}

impl TryFrom<jsonwebtoken::Algorithm> for Algorithm {
    type Error = AlgorithmError;

    /// `jsonwebtoken`'s enum is non-exhaustive: an algorithm it adds later is refused here
    /// until this module learns it.
    fn try_from(algorithm: jsonwebtoken::Algorithm) -> Result<Self, Self::Error> {
        Self::ALL
            .into_iter()
            .find(|a| jsonwebtoken::Algorithm::from(*a) == algorithm)
            .ok_or(AlgorithmError::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for algorithm in Algorithm::ALL {
            assert_eq!(Algorithm::parse(algorithm.as_str()), Ok(algorithm));
            assert_eq!(algorithm.as_str().parse(), Ok(algorithm));
            assert_eq!(algorithm.to_string(), algorithm.as_str());
            let theirs = jsonwebtoken::Algorithm::from(algorithm);
            assert_eq!(Algorithm::try_from(theirs), Ok(algorithm));
            // The names are the same as jsonwebtoken's, so the header it writes says ours.
            assert_eq!(
                theirs,
                algorithm
                    .as_str()
                    .parse::<jsonwebtoken::Algorithm>()
                    .expect("known name")
            );
        }
    }

    #[test]
    fn none_and_unknown_names_are_refused() {
        for none in ["none", "None", "NONE"] {
            assert_eq!(Algorithm::parse(none), Err(AlgorithmError::None));
        }
        for unknown in [
            "", "hs256", "Hs256", "HS256 ", " HS256", "ES512", "RS1", "EDDSA", "Ed25519", "HS",
        ] {
            assert_eq!(Algorithm::parse(unknown), Err(AlgorithmError::Unknown));
        }
    }

    #[test]
    fn errors_do_not_quote_the_text() {
        let secret = "-----BEGIN PRIVATE KEY-----abc";
        let err = Algorithm::parse(secret).expect_err("not an algorithm");
        assert!(!err.to_string().contains("abc"));
    }

    #[test]
    fn families_and_secret_sizes() {
        assert_eq!(Algorithm::HS256.min_secret_bytes(), Some(32));
        assert_eq!(Algorithm::HS384.min_secret_bytes(), Some(48));
        assert_eq!(Algorithm::HS512.min_secret_bytes(), Some(64));
        for algorithm in Algorithm::ALL {
            assert_eq!(
                algorithm.is_symmetric(),
                algorithm.min_secret_bytes().is_some()
            );
            assert_eq!(
                algorithm.is_symmetric(),
                algorithm.key_kind() == KeyKind::Secret
            );
        }
        assert_eq!(Algorithm::PS384.key_kind(), KeyKind::Rsa);
        assert_eq!(Algorithm::ES384.key_kind(), KeyKind::EcP384);
        assert_eq!(Algorithm::EdDSA.key_kind(), KeyKind::Ed25519);
    }
}
