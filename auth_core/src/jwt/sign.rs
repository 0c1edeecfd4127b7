//! Signing a token.

use serde_json::Value;

use super::keys::SigningKey;
use super::verify::{MAX_JSON_DEPTH, MAX_KID_BYTES, RegisteredClaims, within_depth};

/// Why claims could not be signed. Never quotes the claims or the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The claims are not a JSON object.
    #[error("claims must be a JSON object")]
    ClaimsNotAnObject,
    /// The claims are nested deeper than verification accepts.
    #[error("claims must not be nested deeper than {MAX_JSON_DEPTH} levels")]
    TooDeep,
    /// A registered claim has a type that verification refuses.
    #[error("the claim \"{claim}\" has the wrong type: {expected}")]
    BadClaim {
        /// The claim.
        claim: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// The `kid` is empty, longer than [`MAX_KID_BYTES`] or has control characters.
    #[error("kid must be 1 to {MAX_KID_BYTES} bytes with no control characters")]
    BadKid,
    /// The backend could not sign.
    #[error("the token could not be signed")]
    Failed,
}

/// Signs `claims` (a JSON object) with `key`, with the header `{"typ":"JWT","alg":...,"kid":...}`
/// (no `kid` when `None`).
///
/// Claims that verification would refuse are refused here: `exp`, `nbf` and `iat` must be
/// numbers, `iss` and `sub` strings, `aud` a string or an array of strings, and the nesting at
/// most [`MAX_JSON_DEPTH`]. Whether `exp` is present is the caller's choice.
pub fn sign(claims: &Value, key: &SigningKey, kid: Option<&str>) -> Result<String, SignError> {
    let Value::Object(members) = claims else {
        return Err(SignError::ClaimsNotAnObject);
    };
    if !within_depth(claims, MAX_JSON_DEPTH) {
        return Err(SignError::TooDeep);
    }
    RegisteredClaims::read(members).map_err(|claim| SignError::BadClaim {
        claim,
        expected: match claim {
            "exp" | "nbf" | "iat" => "a number of seconds since 1970",
            "aud" => "a string or an array of strings",
            _ => "a string",
        },
    })?;
    if let Some(kid) = kid
        && (kid.is_empty() || kid.len() > MAX_KID_BYTES || kid.chars().any(char::is_control))
    {
        return Err(SignError::BadKid);
    }
    let mut header = jsonwebtoken::Header::new(key.algorithm().into());
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key.encoding_key()).map_err(|_| SignError::Failed)
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    use super::super::test_keys::HMAC_SECRET;
    use super::super::{Algorithm, SigningKey};
    use super::*;

    fn key() -> SigningKey {
        SigningKey::parse(Algorithm::HS256, HMAC_SECRET).expect("secret")
    }

    #[test]
    fn the_header_names_alg_kid_and_typ() {
        let token = sign(&json!({"sub": "u"}), &key(), Some("k1")).expect("sign");
        let header = token.split('.').next().expect("three parts");
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64url"))
                .expect("JSON");
        assert_eq!(header, json!({"alg": "HS256", "typ": "JWT", "kid": "k1"}));
        let token = sign(&json!({}), &key(), None).expect("sign");
        let header = token.split('.').next().expect("three parts");
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64url"))
                .expect("JSON");
        assert_eq!(header, json!({"alg": "HS256", "typ": "JWT"}));
    }

    #[test]
    fn claims_verification_would_refuse_are_refused() {
        for claims in [json!([]), json!("claims"), json!(null), json!(1)] {
            assert_eq!(
                sign(&claims, &key(), None),
                Err(SignError::ClaimsNotAnObject)
            );
        }
        let cases = [
            (json!({"exp": "999"}), "exp"),
            (json!({"nbf": "x"}), "nbf"),
            (json!({"iat": null}), "iat"),
            (json!({"aud": 5}), "aud"),
            (json!({"aud": ["a", 1]}), "aud"),
            (json!({"iss": 1}), "iss"),
            (json!({"sub": false}), "sub"),
        ];
        for (claims, claim) in cases {
            assert!(
                matches!(sign(&claims, &key(), None), Err(SignError::BadClaim { claim: c, .. }) if c == claim),
                "{claims}"
            );
        }
        let mut deep = json!(1);
        for _ in 0..=MAX_JSON_DEPTH {
            deep = json!({ "a": deep });
        }
        assert_eq!(sign(&deep, &key(), None), Err(SignError::TooDeep));
        // One level less is accepted, as verification accepts it.
        assert!(sign(&deep["a"], &key(), None).is_ok());
    }

    #[test]
    fn bad_kids_are_refused() {
        let long = "k".repeat(MAX_KID_BYTES + 1);
        for kid in ["", "a\nb", long.as_str()] {
            assert_eq!(sign(&json!({}), &key(), Some(kid)), Err(SignError::BadKid));
        }
        assert!(sign(&json!({}), &key(), Some(&"k".repeat(MAX_KID_BYTES))).is_ok());
    }
}
