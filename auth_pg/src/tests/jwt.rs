//! `#[pg_test]`s for JWT: every algorithm signed and verified, every status, the bad input of
//! the issue, the SQLSTATEs of misuse, key changes reaching the cache within a transaction,
//! the transaction's claims, and the table layout the key cache relies on.

#[pgrx::pg_schema]
mod tests {
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use auth_core::jwt::{Algorithm, SigningKey, VerifyingKey};
    use pgrx::datum::DatumWithOid;
    use pgrx::prelude::*;
    use pgrx::{JsonB, PgSqlErrorCode, Spi};
    use serde_json::{Value, json};

    use crate::jwt::col;
    use crate::tests::{error_of, sqlstate_of};

    use auth_core::jwt::test_keys::{
        ED25519_PRIVATE, ED25519_PUBLIC, HMAC_SECRET as SECRET, P256_PRIVATE, P256_PUBLIC,
        P384_PUBLIC, RSA_OTHER_PUBLIC, RSA_PRIVATE, RSA_PRIVATE_PKCS1, RSA_PUBLIC, every_algorithm,
    };

    fn now() -> i64 {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970");
        i64::try_from(since.as_secs()).expect("small")
    }

    fn run(sql: &str) {
        Spi::run(sql).expect("SPI");
    }

    fn add_key(kid: &str, algorithm: &str, key: &str) {
        Spi::run_with_args(
            "SELECT auth_pg.add_jwt_key($1, $2, $3)",
            &[kid.into(), algorithm.into(), key.into()],
        )
        .expect("add_jwt_key");
    }

    fn sign(claims: Value, kid: &str) -> String {
        let args: [DatumWithOid; 2] = [JsonB(claims).into(), kid.into()];
        Spi::get_one_with_args::<String>("SELECT auth_pg.jwt_sign($1, $2)", &args)
            .expect("jwt_sign")
            .expect("a token")
    }

    /// `(status, claims, kid)` of `jwt_verify(token)`.
    fn verify(token: Option<&str>) -> (String, Option<Value>, Option<String>) {
        let args: [DatumWithOid; 1] = [token.into()];
        let (status, claims, kid) = Spi::get_three_with_args::<String, JsonB, String>(
            "SELECT status, claims, kid FROM auth_pg.jwt_verify($1)",
            &args,
        )
        .expect("jwt_verify");
        (
            status.expect("a status"),
            claims.map(|claims| claims.0),
            kid,
        )
    }

    fn status(token: &str) -> String {
        verify(Some(token)).0
    }

    fn status_with_key(token: &str, key: &str, algorithm: &str) -> String {
        Spi::get_one_with_args::<String>(
            "SELECT status FROM auth_pg.jwt_verify($1, $2, $3)",
            &[token.into(), key.into(), algorithm.into()],
        )
        .expect("jwt_verify")
        .expect("a status")
    }

    fn base64url(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }

    fn sha256(bytes: &[u8]) -> Vec<u8> {
        Spi::get_one_with_args::<Vec<u8>>("SELECT sha256($1)", &[bytes.into()])
            .expect("sha256")
            .expect("a digest")
    }

    /// HMAC-SHA-256 (RFC 2104), from PostgreSQL's sha256(): signs anything, with any secret,
    /// including what auth_pg refuses to sign (a string exp) or to use (a PEM as a secret).
    fn hmac_sha256(secret: &[u8], message: &[u8]) -> Vec<u8> {
        let mut block = if secret.len() > 64 {
            sha256(secret)
        } else {
            secret.to_vec()
        };
        block.resize(64, 0);
        let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
        let inner = sha256(&[pad(0x36), message.to_vec()].concat());
        sha256(&[pad(0x5c), inner].concat())
    }

    /// A token with any header and payload, signed with HS256 and `secret`.
    fn hand_made(header: &str, payload: &str, secret: &[u8]) -> String {
        let input = format!(
            "{}.{}",
            base64url(header.as_bytes()),
            base64url(payload.as_bytes())
        );
        let signature = hmac_sha256(secret, input.as_bytes());
        format!("{input}.{}", base64url(&signature))
    }

    /// Runs `f` in a subtransaction, then commits (releases) or rolls it back.
    fn in_subtransaction<R>(commit: bool, f: impl FnOnce() -> R) -> R {
        // SAFETY: the subtransaction begun here is released or rolled back below, and the memory
        // context and resource owner are restored after either (as in sqlstate_of).
        unsafe {
            let context = pg_sys::CurrentMemoryContext;
            let owner = pg_sys::CurrentResourceOwner;
            pg_sys::BeginInternalSubTransaction(std::ptr::null());
            let result = f();
            if commit {
                pg_sys::ReleaseCurrentSubTransaction();
            } else {
                pg_sys::RollbackAndReleaseCurrentSubTransaction();
            }
            pg_sys::MemoryContextSwitchTo(context);
            pg_sys::CurrentResourceOwner = owner;
            result
        }
    }

    #[pg_test]
    fn every_algorithm_signs_and_verifies() {
        let claims =
            json!({"sub": "u-1", "exp": now() + 3600, "aud": ["a", "b"], "n": [1, {"x": null}]});
        for (algorithm, private, public) in every_algorithm() {
            let kid = format!("rt-{algorithm}");
            add_key(&kid, algorithm.as_str(), private);
            let token = sign(claims.clone(), &kid);
            let (status, verified, named) = verify(Some(&token));
            assert_eq!(status, "valid", "{algorithm}");
            assert_eq!(verified.as_ref(), Some(&claims), "{algorithm}");
            assert_eq!(named.as_deref(), Some(kid.as_str()));
            // Again: answered by the cache, the same.
            assert_eq!(verify(Some(&token)), (status, verified, named));
            // Inline, with the public key; with another algorithm of the family, refused.
            assert_eq!(
                status_with_key(&token, public, algorithm.as_str()),
                "valid",
                "{algorithm}"
            );
            let sibling = match algorithm {
                Algorithm::HS256 => "HS384",
                Algorithm::HS384 | Algorithm::HS512 => "HS256",
                Algorithm::RS256 => "PS256",
                Algorithm::PS256 => "RS256",
                Algorithm::ES256 | Algorithm::ES384 | Algorithm::EdDSA => continue,
                _ => "RS256",
            };
            assert_eq!(
                status_with_key(&token, public, sibling),
                "bad_signature",
                "{algorithm} as {sibling}"
            );
        }
        // A PKCS#1 RSA private key signs too, and a public key only verifies.
        add_key("rt-pkcs1", "RS512", RSA_PRIVATE_PKCS1);
        let token = sign(json!({"exp": now() + 60}), "rt-pkcs1");
        assert_eq!(status(&token), "valid");
        add_key("rt-public", "ES256", P256_PUBLIC);
        assert_eq!(
            sqlstate_of("SELECT auth_pg.jwt_sign('{}', 'rt-public')"),
            Some(PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE)
        );
    }

    #[pg_test]
    fn public_jwks_verify_tokens_signed_elsewhere() {
        // The key is a JWK; the token is signed by someone else's private key.
        let jwk = VerifyingKey::parse(Algorithm::ES256, P256_PUBLIC)
            .expect("PEM")
            .public_jwk(Some("jwk-es"))
            .expect("public");
        add_key("jwk-es", "ES256", &jwk.to_string());
        let signing = SigningKey::parse(Algorithm::ES256, P256_PRIVATE).expect("private PEM");
        let token = auth_core::jwt::sign(&json!({"exp": now() + 60}), &signing, Some("jwk-es"))
            .expect("sign");
        assert_eq!(status(&token), "valid");
    }

    #[pg_test]
    fn every_status() {
        let exp = now() + 3600;
        add_key("st-hs", "HS256", SECRET);
        run(
            "SELECT auth_pg.add_jwt_key('st-rules', 'HS256', repeat('r', 32), \
                 issuer => 'https://issuer.example', audience => 'api')",
        );
        let valid = sign(json!({"sub": "ada", "exp": exp}), "st-hs");
        assert_eq!(status(&valid), "valid");
        assert_eq!(
            status(&sign(json!({"exp": now() - 3600}), "st-hs")),
            "expired"
        );
        assert_eq!(
            status(&sign(json!({"exp": exp, "nbf": now() + 3600}), "st-hs")),
            "not_yet_valid"
        );
        assert_eq!(
            status(&sign(json!({"exp": exp, "iat": now() + 3600}), "st-hs")),
            "not_yet_valid"
        );
        // The first character of the signature changed: its first six bits.
        let mut forged = valid.clone().into_bytes();
        let first = valid.rfind('.').expect("three parts") + 1;
        forged[first] = if forged[first] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).expect("ascii");
        assert_eq!(status(&forged), "bad_signature");
        let unknown = hand_made(
            r#"{"alg":"HS256","kid":"st-nobody"}"#,
            &format!(r#"{{"exp":{exp}}}"#),
            SECRET.as_bytes(),
        );
        assert_eq!(status(&unknown), "unknown_key");
        let no_kid = hand_made(
            r#"{"alg":"HS256"}"#,
            &format!(r#"{{"exp":{exp}}}"#),
            SECRET.as_bytes(),
        );
        assert_eq!(status(&no_kid), "unknown_key");
        let iss = "https://issuer.example";
        assert_eq!(
            status(&sign(
                json!({"exp": exp, "iss": iss, "aud": "api"}),
                "st-rules"
            )),
            "valid"
        );
        assert_eq!(
            status(&sign(
                json!({"exp": exp, "iss": "https://evil.example", "aud": "api"}),
                "st-rules"
            )),
            "wrong_issuer"
        );
        assert_eq!(
            status(&sign(
                json!({"exp": exp, "iss": iss, "aud": ["web"]}),
                "st-rules"
            )),
            "wrong_audience"
        );
        assert_eq!(status("a.b.c"), "malformed");
        assert_eq!(verify(None).0, "malformed");
        // Only a valid answer carries claims; the kid is the header's, whatever the status.
        let (_, claims, kid) = verify(Some(&forged));
        assert_eq!((claims, kid.as_deref()), (None, Some("st-hs")));
    }

    #[pg_test]
    fn bad_input_is_a_status_never_an_error() {
        let exp = now() + 3600;
        add_key("bad-hs", "HS256", SECRET);
        add_key("bad-rs", "RS256", RSA_PUBLIC);
        let valid = sign(json!({"sub": "ada", "exp": exp}), "bad-hs");
        let parts: Vec<&str> = valid.split('.').collect();
        let payload = format!(r#"{{"exp":{exp}}}"#);
        let header = r#"{"alg":"HS256","kid":"bad-hs"}"#;
        let nested = format!("{}1{}", "[".repeat(1000), "]".repeat(1000));
        let megabyte = "a".repeat(1 << 20);
        let cases: Vec<(&str, String)> = vec![
            ("two parts", format!("{}.{}", parts[0], parts[1])),
            ("four parts", format!("{valid}.{}", parts[2])),
            ("empty", String::new()),
            ("dots", "..".to_owned()),
            ("base64 garbage", format!("{}.{}.!!!*", parts[0], parts[1])),
            ("not base64 JSON", "eyJhbGciOi.e30.c2ln".to_owned()),
            ("a megabyte", format!("{megabyte}.{megabyte}.{megabyte}")),
            (
                "deeply nested header",
                hand_made(
                    &format!(r#"{{"alg":"HS256","kid":"bad-hs","x":{nested}}}"#),
                    &payload,
                    SECRET.as_bytes(),
                ),
            ),
            (
                "deeply nested claims",
                hand_made(
                    header,
                    &format!(r#"{{"exp":{exp},"x":{nested}}}"#),
                    SECRET.as_bytes(),
                ),
            ),
            (
                "string exp",
                hand_made(header, r#"{"exp":"9999999999"}"#, SECRET.as_bytes()),
            ),
            (
                "null exp",
                hand_made(header, r#"{"exp":null}"#, SECRET.as_bytes()),
            ),
            (
                "numeric sub",
                hand_made(
                    header,
                    &format!(r#"{{"exp":{exp},"sub":42}}"#),
                    SECRET.as_bytes(),
                ),
            ),
            (
                "no exp",
                hand_made(header, r#"{"sub":"ada"}"#, SECRET.as_bytes()),
            ),
            (
                "alg none, no signature",
                format!(
                    "{}.{}.",
                    base64url(br#"{"alg":"none","kid":"bad-hs"}"#),
                    parts[1]
                ),
            ),
            (
                "alg none, signed",
                hand_made(
                    r#"{"alg":"none","kid":"bad-hs"}"#,
                    &payload,
                    SECRET.as_bytes(),
                ),
            ),
            (
                "alg None",
                hand_made(
                    r#"{"alg":"None","kid":"bad-hs"}"#,
                    &payload,
                    SECRET.as_bytes(),
                ),
            ),
            (
                "kid not a string",
                hand_made(r#"{"alg":"HS256","kid":5}"#, &payload, SECRET.as_bytes()),
            ),
            (
                "kid too long",
                hand_made(
                    &format!(r#"{{"alg":"HS256","kid":"{}"}}"#, "k".repeat(300)),
                    &payload,
                    SECRET.as_bytes(),
                ),
            ),
            (
                "crit",
                hand_made(
                    r#"{"alg":"HS256","kid":"bad-hs","crit":["b64"]}"#,
                    &payload,
                    SECRET.as_bytes(),
                ),
            ),
            (
                "claims jsonb cannot hold",
                hand_made(
                    header,
                    &format!(r#"{{"exp":{exp},"x":"a\u0000b"}}"#),
                    SECRET.as_bytes(),
                ),
            ),
            (
                "a number numeric cannot hold",
                hand_made(
                    header,
                    &format!(r#"{{"exp":{exp},"x":1e200000}}"#),
                    SECRET.as_bytes(),
                ),
            ),
        ];
        for (what, token) in &cases {
            let started = Instant::now();
            assert_eq!(status(token), "malformed", "{what}");
            assert!(started.elapsed() < Duration::from_secs(2), "{what}");
        }
        // Hostile kids name no key.
        for kid in [
            "'; DROP TABLE auth_pg.jwt_keys; --",
            "../../../etc/passwd",
            "\u{0}",
            "bad-hs ",
            "BAD-HS",
        ] {
            let token = hand_made(
                &json!({"alg": "HS256", "kid": kid}).to_string(),
                &payload,
                SECRET.as_bytes(),
            );
            assert_eq!(status(&token), "unknown_key", "{kid}");
        }
        // An RSA public key used as an HMAC secret: the key decides the algorithm.
        let confused = hand_made(
            r#"{"alg":"HS256","kid":"bad-rs"}"#,
            &payload,
            RSA_PUBLIC.as_bytes(),
        );
        assert_eq!(status(&confused), "bad_signature");
        assert_eq!(
            status_with_key(&confused, RSA_PUBLIC, "RS256"),
            "bad_signature"
        );
        assert_eq!(
            sqlstate_of(&format!(
                "SELECT auth_pg.jwt_verify('{confused}', $${RSA_PUBLIC}$$, 'HS256')"
            )),
            Some(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE)
        );
        // Nothing was lost.
        assert_eq!(status(&valid), "valid");
    }

    #[pg_test]
    fn misuse_raises_specific_sqlstates_and_never_quotes_keys() {
        use PgSqlErrorCode::*;
        add_key("mis-hs", "HS256", SECRET);
        add_key("mis-rs", "RS256", RSA_PUBLIC);
        let long_kid = format!(
            "SELECT auth_pg.add_jwt_key('{}', 'HS256', repeat('s', 32))",
            "k".repeat(257)
        );
        let pem_as_secret = format!("SELECT auth_pg.add_jwt_key('k', 'HS256', $${RSA_PUBLIC}$$)");
        let private_for_es = format!("SELECT auth_pg.add_jwt_key('k', 'ES256', $${RSA_PRIVATE}$$)");
        let secret_for_rs = format!("SELECT auth_pg.add_jwt_key('k', 'RS256', '{SECRET}')");
        let swapped = format!("SELECT auth_pg.add_jwt_key('k', '{SECRET}', 'HS256')");
        let inline_swapped = format!("SELECT auth_pg.jwt_verify('a.b.c', 'HS256', '{SECRET}')");
        let duplicate = format!("SELECT auth_pg.add_jwt_key('mis-hs', 'HS512', '{SECRET}')");
        // The Ed25519 identity point, a valid encoding of a point of small order: with it as
        // the key, the signature R = identity, S = 0 would verify any claims.
        let weak =
            r#"{"kty":"OKP","crv":"Ed25519","x":"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#;
        let forged = format!(
            "{}.{}.{}",
            base64url(br#"{"alg":"EdDSA","kid":"k"}"#),
            base64url(format!(r#"{{"sub":"admin","exp":{}}}"#, now() + 3600).as_bytes()),
            base64url(&{
                let mut signature = [0u8; 64];
                signature[0] = 1;
                signature
            })
        );
        let weak_key = format!("SELECT auth_pg.add_jwt_key('k', 'EdDSA', '{weak}')");
        let weak_jwks = format!(
            "SELECT auth_pg.import_jwks('{{\"keys\": [{}]}}')",
            weak.replace('}', r#","kid":"k","alg":"EdDSA"}"#)
        );
        let weak_inline = format!("SELECT auth_pg.jwt_verify('{forged}', '{weak}', 'EdDSA')");
        let cases: Vec<(&str, PgSqlErrorCode)> = vec![
            (weak_key.as_str(), ERRCODE_INVALID_PARAMETER_VALUE),
            (weak_jwks.as_str(), ERRCODE_INVALID_PARAMETER_VALUE),
            (weak_inline.as_str(), ERRCODE_INVALID_PARAMETER_VALUE),
            (
                "SELECT auth_pg.add_jwt_key(NULL, 'HS256', repeat('s', 32))",
                ERRCODE_NULL_VALUE_NOT_ALLOWED,
            ),
            (
                "SELECT auth_pg.add_jwt_key('', 'HS256', repeat('s', 32))",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.add_jwt_key(E'a\\nb', 'HS256', repeat('s', 32))",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (long_kid.as_str(), ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
            (
                "SELECT auth_pg.add_jwt_key('k', NULL, repeat('s', 32))",
                ERRCODE_NULL_VALUE_NOT_ALLOWED,
            ),
            (
                "SELECT auth_pg.add_jwt_key('k', 'none', repeat('s', 32))",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.add_jwt_key('k', 'hs256', repeat('s', 32))",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.add_jwt_key('k', 'HS256', NULL)",
                ERRCODE_NULL_VALUE_NOT_ALLOWED,
            ),
            (
                "SELECT auth_pg.add_jwt_key('k', 'HS256', repeat('s', 31))",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.add_jwt_key('k', 'HS512', repeat('s', 20000))",
                ERRCODE_STRING_DATA_RIGHT_TRUNCATION,
            ),
            (pem_as_secret.as_str(), ERRCODE_INVALID_PARAMETER_VALUE),
            (private_for_es.as_str(), ERRCODE_INVALID_PARAMETER_VALUE),
            (secret_for_rs.as_str(), ERRCODE_INVALID_PARAMETER_VALUE),
            (swapped.as_str(), ERRCODE_INVALID_PARAMETER_VALUE),
            (duplicate.as_str(), ERRCODE_DUPLICATE_OBJECT),
            (
                "SELECT auth_pg.add_jwt_key('k', 'HS256', repeat('s', 32), \
                     not_before => now(), not_after => now())",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.add_jwt_key('k', 'HS256', repeat('s', 32), issuer => '')",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.jwt_sign('{}', 'nobody')",
                ERRCODE_UNDEFINED_OBJECT,
            ),
            (
                "SELECT auth_pg.jwt_sign('{}', 'mis-rs')",
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            ),
            (
                "SELECT auth_pg.jwt_sign('[1]', 'mis-hs')",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.jwt_sign('{\"exp\": \"999\"}', 'mis-hs')",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.jwt_sign('{\"aud\": [1]}', 'mis-hs')",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.jwt_sign(NULL, 'mis-hs')",
                ERRCODE_NULL_VALUE_NOT_ALLOWED,
            ),
            (
                "SELECT auth_pg.jwt_sign(jsonb_build_object('pad', repeat('p', 20000)), 'mis-hs')",
                ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            ),
            (
                "SELECT auth_pg.jwt_sign('{}', NULL)",
                ERRCODE_NULL_VALUE_NOT_ALLOWED,
            ),
            (
                "SELECT auth_pg.jwt_verify('a.b.c', NULL, 'HS256')",
                ERRCODE_NULL_VALUE_NOT_ALLOWED,
            ),
            (
                "SELECT auth_pg.jwt_verify('a.b.c', repeat('s', 32), NULL)",
                ERRCODE_NULL_VALUE_NOT_ALLOWED,
            ),
            (
                "SELECT auth_pg.jwt_verify('a.b.c', 'short', 'HS256')",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (inline_swapped.as_str(), ERRCODE_INVALID_PARAMETER_VALUE),
            (
                "SELECT auth_pg.import_jwks(NULL)",
                ERRCODE_NULL_VALUE_NOT_ALLOWED,
            ),
            (
                "SELECT auth_pg.import_jwks('[]')",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.import_jwks('{\"keys\": [{\"kty\": \"oct\", \"k\": \"c2VjcmV0\"}]}')",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.retire_jwt_key(NULL)",
                ERRCODE_NULL_VALUE_NOT_ALLOWED,
            ),
        ];
        let secrets = [
            SECRET,
            "ssssssss",
            "MII",
            &RSA_PRIVATE[40..80],
            &RSA_PUBLIC[40..80],
        ];
        for (sql, expected) in cases {
            let error = error_of(sql).unwrap_or_else(|| panic!("{sql} succeeded"));
            assert_eq!(error.code, expected, "{sql}: {}", error.message);
            for secret in secrets {
                assert!(!error.message.contains(secret), "{sql}: {}", error.message);
                assert!(
                    !error.hint.as_deref().unwrap_or("").contains(secret),
                    "{sql}"
                );
            }
            assert!(error.hint.is_some(), "{sql} has a hint");
        }
        let stored = Spi::get_one::<i64>("SELECT count(*) FROM auth_pg.jwt_keys").expect("SPI");
        assert_eq!(stored, Some(2), "nothing refused was stored");
    }

    #[pg_test]
    fn key_changes_reach_the_cache_within_the_transaction() {
        add_key("ch-1", "HS256", SECRET);
        let first = sign(json!({"exp": now() + 3600}), "ch-1");
        assert_eq!(status(&first), "valid");
        assert_eq!(status(&first), "valid");
        // Retired: the cached verification goes at once.
        let retired = Spi::get_one::<bool>("SELECT auth_pg.retire_jwt_key('ch-1')").expect("SPI");
        assert_eq!(retired, Some(true));
        assert_eq!(status(&first), "unknown_key");
        assert_eq!(
            Spi::get_one::<bool>("SELECT auth_pg.retire_jwt_key('ch-1')").expect("SPI"),
            Some(false)
        );
        assert_eq!(
            sqlstate_of("SELECT auth_pg.jwt_sign('{}', 'ch-1')"),
            Some(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT)
        );
        // Rotated: the new key verifies its tokens at once.
        add_key("ch-2", "HS512", SECRET);
        let second = sign(json!({"exp": now() + 3600}), "ch-2");
        assert_eq!(status(&second), "valid");
        // Changed by hand: an issuer added, a window closed, the row deleted, the table
        // truncated; each reaches a verification already cached.
        run("UPDATE auth_pg.jwt_keys SET issuer = 'https://issuer.example' WHERE kid = 'ch-2'");
        assert_eq!(status(&second), "wrong_issuer");
        run("UPDATE auth_pg.jwt_keys SET issuer = NULL WHERE kid = 'ch-2'");
        assert_eq!(status(&second), "valid");
        run("UPDATE auth_pg.jwt_keys SET not_after = now() WHERE kid = 'ch-2'");
        assert_eq!(status(&second), "unknown_key");
        run("UPDATE auth_pg.jwt_keys SET not_after = NULL WHERE kid = 'ch-2'");
        assert_eq!(status(&second), "valid");
        run("DELETE FROM auth_pg.jwt_keys WHERE kid = 'ch-2'");
        assert_eq!(status(&second), "unknown_key");
        add_key("ch-3", "HS256", SECRET);
        let third = sign(json!({"exp": now() + 3600}), "ch-3");
        assert_eq!(status(&third), "valid");
        run("TRUNCATE auth_pg.jwt_keys");
        assert_eq!(status(&third), "unknown_key");
        // A key added in a subtransaction that rolls back never verifies afterwards, though
        // it did (and was cached) inside it.
        let fourth = in_subtransaction(false, || {
            add_key("ch-4", "HS256", SECRET);
            let token = sign(json!({"exp": now() + 3600}), "ch-4");
            assert_eq!(status(&token), "valid");
            token
        });
        assert_eq!(status(&fourth), "unknown_key");
        // One that commits does.
        let fifth = in_subtransaction(true, || {
            add_key("ch-5", "HS256", SECRET);
            sign(json!({"exp": now() + 3600}), "ch-5")
        });
        assert_eq!(status(&fifth), "valid");
        // A retirement rolled back is undone.
        in_subtransaction(false, || {
            run("SELECT auth_pg.retire_jwt_key('ch-5')");
            assert_eq!(status(&fifth), "unknown_key");
        });
        assert_eq!(status(&fifth), "valid");
    }

    #[pg_test]
    fn key_windows_and_lists() {
        run(
            "SELECT auth_pg.add_jwt_key('win-later', 'HS256', repeat('l', 32), \
                 not_before => now() + interval '1 hour')",
        );
        run(
            "SELECT auth_pg.add_jwt_key('win-over', 'HS256', repeat('o', 32), \
                 not_after => now() - interval '1 second')",
        );
        add_key("win-rs", "RS256", RSA_PRIVATE);
        add_key("win-gone", "ES384", P384_PUBLIC);
        run("SELECT auth_pg.retire_jwt_key('win-gone')");
        let later = hand_made(
            r#"{"alg":"HS256","kid":"win-later"}"#,
            &format!(r#"{{"exp":{}}}"#, now() + 7200),
            "l".repeat(32).as_bytes(),
        );
        assert_eq!(status(&later), "unknown_key");
        assert_eq!(
            sqlstate_of("SELECT auth_pg.jwt_sign('{}', 'win-over')"),
            Some(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT)
        );
        let listed: Vec<(String, String, bool, bool)> = Spi::connect(|client| {
            client
                .select(
                    "SELECT kid, status, can_sign, public_jwk IS NOT NULL \
                     FROM auth_pg.list_jwt_keys() ORDER BY kid",
                    None,
                    &[],
                )?
                .map(|row| {
                    Ok((
                        row.get::<String>(1)?.unwrap_or_default(),
                        row.get::<String>(2)?.unwrap_or_default(),
                        row.get::<bool>(3)?.unwrap_or_default(),
                        row.get::<bool>(4)?.unwrap_or_default(),
                    ))
                })
                .collect::<Result<Vec<_>, spi::SpiError>>()
        })
        .expect("list_jwt_keys");
        let expected = [
            ("win-gone", "retired", false, true),
            ("win-later", "not_yet_valid", true, false),
            ("win-over", "expired", true, false),
            ("win-rs", "active", true, true),
        ];
        let listed: Vec<(&str, &str, bool, bool)> = listed
            .iter()
            .map(|(k, s, c, p)| (k.as_str(), s.as_str(), *c, *p))
            .collect();
        assert_eq!(listed, expected);
        // Everything the list shows, as text: no secret, no private key.
        let shown = Spi::get_one::<String>(
            "SELECT string_agg(l::text, ' ') FROM auth_pg.list_jwt_keys() l",
        )
        .expect("SPI")
        .expect("rows");
        assert!(!shown.contains("llllllll") && !shown.contains("oooooooo"));
        assert!(!shown.contains("PRIVATE") && !shown.contains("\"d\""));
        let jwk = Spi::get_one::<JsonB>(
            "SELECT public_jwk FROM auth_pg.list_jwt_keys() WHERE kid = 'win-rs'",
        )
        .expect("SPI")
        .expect("a JWK");
        assert_eq!(jwk.0["kid"], "win-rs");
        assert_eq!(jwk.0["alg"], "RS256");
        assert_eq!(jwk.0["kty"], "RSA");
    }

    #[pg_test]
    fn jwks_are_imported_once() {
        let jwk = |algorithm: Algorithm, public: &str, kid: &str| {
            VerifyingKey::parse(algorithm, public)
                .expect("PEM")
                .public_jwk(Some(kid))
                .expect("public")
        };
        let encryption = json!({"kty": "RSA", "use": "enc", "kid": "enc-1", "n": "x", "e": "AQAB"});
        let document = json!({"keys": [
            jwk(Algorithm::RS256, RSA_PUBLIC, "idp-rs"),
            jwk(Algorithm::ES256, P256_PUBLIC, "idp-es"),
            jwk(Algorithm::EdDSA, ED25519_PUBLIC, "idp-ed"),
            encryption,
        ]});
        let import = |document: &Value| {
            Spi::get_one_with_args::<i32>(
                "SELECT auth_pg.import_jwks($1, issuer => 'https://idp.example')",
                &[JsonB(document.clone()).into()],
            )
            .expect("import_jwks")
            .expect("a count")
        };
        assert_eq!(import(&document), 3);
        assert_eq!(import(&document), 0, "the same document adds nothing");
        for (algorithm, private, kid) in [
            (Algorithm::RS256, RSA_PRIVATE, "idp-rs"),
            (Algorithm::ES256, P256_PRIVATE, "idp-es"),
            (Algorithm::EdDSA, ED25519_PRIVATE, "idp-ed"),
        ] {
            let key = SigningKey::parse(algorithm, private).expect("private PEM");
            let claims = json!({"exp": now() + 60, "iss": "https://idp.example"});
            let token = auth_core::jwt::sign(&claims, &key, Some(kid)).expect("sign");
            assert_eq!(status(&token), "valid", "{kid}");
            let claims = json!({"exp": now() + 60});
            let token = auth_core::jwt::sign(&claims, &key, Some(kid)).expect("sign");
            assert_eq!(status(&token), "wrong_issuer", "{kid}");
        }
        // A kid stored with another key refuses the document, which adds nothing.
        let conflicting = json!({"keys": [
            jwk(Algorithm::ES384, P384_PUBLIC, "idp-new"),
            jwk(Algorithm::RS256, RSA_OTHER_PUBLIC, "idp-rs"),
        ]});
        let error =
            error_of(&format!("SELECT auth_pg.import_jwks('{conflicting}')")).expect("a conflict");
        assert_eq!(error.code, PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT);
        assert!(error.message.contains("keys[1]"), "{}", error.message);
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM auth_pg.jwt_keys").expect("SPI"),
            Some(3)
        );
    }

    #[pg_test]
    fn claims_belong_to_the_transaction_and_only_to_a_verification() {
        add_key("cl-hs", "HS256", SECRET);
        let exp = now() + 3600;
        let ada = sign(json!({"sub": "ada", "exp": exp, "role": "editor"}), "cl-hs");
        let bob = sign(json!({"sub": "bob", "exp": exp}), "cl-hs");
        let authenticate = |token: Option<&str>| {
            let args: [DatumWithOid; 1] = [token.into()];
            Spi::get_one_with_args::<String>("SELECT auth_pg.authenticate($1)", &args)
                .expect("authenticate")
                .expect("a status")
        };
        let uid = || Spi::get_one::<String>("SELECT auth_pg.uid()").expect("uid");
        let request = || {
            Spi::get_one::<String>("SELECT current_setting('request.jwt.claims', true)")
                .expect("current_setting")
        };
        assert_eq!(uid(), None);
        assert_eq!(
            Spi::get_one::<JsonB>("SELECT auth_pg.claims()")
                .expect("claims")
                .map(|c| c.0),
            None
        );
        assert_eq!(authenticate(Some(&ada)), "valid");
        assert_eq!(uid().as_deref(), Some("ada"));
        assert_eq!(
            Spi::get_one::<String>("SELECT auth_pg.claims() ->> 'role'").expect("claims"),
            Some("editor".to_owned())
        );
        let set: Value =
            serde_json::from_str(&request().expect("set")).expect("request.jwt.claims is JSON");
        assert_eq!(set["sub"], "ada");
        // A setting written by hand impersonates no one.
        run("SELECT set_config('request.jwt.claims', '{\"sub\": \"mallory\"}', true)");
        run("SET LOCAL request.jwt.claims = '{\"sub\": \"mallory\"}'");
        assert_eq!(uid().as_deref(), Some("ada"));
        // A subtransaction that rolls back takes its claims with it; one that commits keeps
        // them.
        in_subtransaction(false, || {
            assert_eq!(authenticate(Some(&bob)), "valid");
            assert_eq!(uid().as_deref(), Some("bob"));
        });
        assert_eq!(uid().as_deref(), Some("ada"));
        in_subtransaction(true, || {
            assert_eq!(authenticate(Some(&bob)), "valid");
        });
        assert_eq!(uid().as_deref(), Some("bob"));
        // A failed authentication leaves no claims at all, never the previous ones.
        assert_eq!(authenticate(Some("not.a.token")), "malformed");
        assert_eq!(uid(), None);
        assert_eq!(request().as_deref(), Some(""));
        assert_eq!(authenticate(Some(&ada)), "valid");
        let expired = sign(json!({"sub": "ada", "exp": now() - 3600}), "cl-hs");
        assert_eq!(authenticate(Some(&expired)), "expired");
        assert_eq!(uid(), None);
        assert_eq!(authenticate(None), "malformed");
        assert_eq!(uid(), None);
        // A token without sub authenticates, with no uid.
        let anonymous = sign(json!({"exp": exp, "role": "anon"}), "cl-hs");
        assert_eq!(authenticate(Some(&anonymous)), "valid");
        assert_eq!(uid(), None);
        assert_eq!(
            Spi::get_one::<String>("SELECT auth_pg.claims() ->> 'role'").expect("claims"),
            Some("anon".to_owned())
        );
    }

    #[pg_test]
    fn settings_bound_what_verifies() {
        add_key("set-hs", "HS256", SECRET);
        let recently_expired = sign(json!({"exp": now() - 30}), "set-hs");
        assert_eq!(status(&recently_expired), "valid", "within the 60 s leeway");
        run("SET LOCAL auth_pg.jwt_leeway = 0");
        assert_eq!(status(&recently_expired), "expired");
        let forever = sign(json!({"sub": "ada"}), "set-hs");
        assert_eq!(status(&forever), "malformed");
        run("SET LOCAL auth_pg.jwt_require_exp = off");
        assert_eq!(status(&forever), "valid");
        let big = sign(json!({"exp": now() + 60, "pad": "p".repeat(300)}), "set-hs");
        run("SET LOCAL auth_pg.jwt_max_token_bytes = 256");
        assert_eq!(status(&big), "malformed");
        assert_eq!(
            sqlstate_of(
                "SELECT auth_pg.jwt_sign(jsonb_build_object('pad', repeat('p', 300)), 'set-hs')"
            ),
            Some(PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED)
        );
        run("RESET auth_pg.jwt_max_token_bytes");
        assert_eq!(status(&big), "valid");
        run("SET LOCAL auth_pg.jwt_cache_size = 0");
        assert_eq!(status(&big), "valid");
        assert_eq!(status(&big), "valid");
        assert_eq!(
            sqlstate_of("SET auth_pg.jwt_leeway = -1"),
            Some(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE)
        );
    }

    #[pg_test]
    fn changes_are_audited() {
        add_key("au-1", "HS256", SECRET);
        run("SELECT auth_pg.retire_jwt_key('au-1')");
        run("UPDATE auth_pg.jwt_keys SET issuer = 'x' WHERE kid = 'au-1'");
        let actions = Spi::get_one::<Vec<String>>(
            "SELECT array_agg(action || ':' || coalesce(subject_id, '') ORDER BY event_id) \
             FROM auth_pg.audit_events WHERE action LIKE 'jwt%'",
        )
        .expect("SPI")
        .expect("rows");
        assert_eq!(
            actions,
            ["jwt_key.add:au-1", "jwt_key.retire:au-1", "jwt_keys.edit:"]
        );
        let detail = Spi::get_one::<String>(
            "SELECT string_agg(detail::text, ' ') FROM auth_pg.audit_events",
        )
        .expect("SPI")
        .expect("rows");
        assert!(!detail.contains(SECRET));
    }

    #[pg_test]
    fn jwt_key_columns_match_the_catalog() {
        let expected = [
            (col::KID, "kid"),
            (col::ALGORITHM, "algorithm"),
            (col::KEY, "key"),
            (col::ISSUER, "issuer"),
            (col::AUDIENCE, "audience"),
            (col::ACTIVE, "active"),
            (col::NOT_BEFORE, "not_before"),
            (col::NOT_AFTER, "not_after"),
            (col::CREATED_AT, "created_at"),
            (col::RETIRED_AT, "retired_at"),
        ];
        crate::tests::assert_columns("jwt_keys", &expected);
    }
}
