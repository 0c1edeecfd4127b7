-- JSON Web Tokens from SQL: keys by kid, signing and verifying, every status, rotation and
-- retirement, what is refused, and row-level security driven by authenticate, as
-- non-superusers. Tokens are kept in psql variables and never shown; the keys are the test-only
-- keys of auth_core/tests/keys, and the claims are fixed, so HS256 and EdDSA signatures (which
-- are deterministic) give the same digests on every run.
SHOW auth_pg.jwt_leeway;
SHOW auth_pg.jwt_max_token_bytes;
SHOW auth_pg.jwt_require_exp;

SET ROLE app_admin;
-- An HMAC secret, an Ed25519 private key (it signs; its public part verifies) that expects an
-- issuer and an audience, and an RSA public key (it only verifies).
SELECT auth_pg.add_jwt_key('hs-2024', 'HS256',
    'test-only shared secret, long enough for HS512: 0123456789abcdef0123456789');
SELECT auth_pg.add_jwt_key('ed-2024', 'EdDSA', $$-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIKlLGGSd9t/NJlT4ZfUUsoojPi+19+XG+7a9xJKk020A
-----END PRIVATE KEY-----$$,
    issuer => 'https://issuer.example', audience => 'api');
SELECT auth_pg.add_jwt_key('rs-2024', 'RS256', $$-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA3MhECyHP5Or98MMN5ELg
Fo6racwXbcl58+9+P8nupfEniE99mJlZdHbw/QUWEddmqoK1k9BtwiIbag3Ncfid
1PrtWIdWUj+f1z49EU+08paRHYrgytdhb+KtdiZKAwXHE2zcMXV8UUQ819CybCS5
jSIxAJioZ7JMrGLJHODWzkw+r0HN7WrqKsgth6R36Pj95g6GD4oh7cvZ/R34Hjzz
NhE1LyAUA5LMr9Wf3xLAIV+OuOnOaCQ5zT3UgbzpqDqg1N3+W5H0I3XbuwKCasT/
JvWcpBStcgTXMwZwUkyBNevNsdVkppoJ7J+a0fyHvN3BJEQn37WzELmAE8Mwn+Fq
WQIDAQAB
-----END PUBLIC KEY-----$$);
-- Listed without key material: the public JWK of public keys, nothing of secrets.
SELECT kid, algorithm, status, can_sign, issuer, audience, retired_at FROM auth_pg.list_jwt_keys();
SELECT kid, public_jwk FROM auth_pg.list_jwt_keys();
-- The table itself is closed to everyone but its owner.
SELECT key FROM auth_pg.jwt_keys;

-- Signing: the header names alg, kid and typ; the claims are signed as given.
SELECT auth_pg.jwt_sign('{"sub": "ada", "exp": 4102444800, "role": "editor"}', 'hs-2024') AS ada_token \gset
SELECT auth_pg.jwt_sign('{"sub": "bob", "exp": 4102444800, "iss": "https://issuer.example", "aud": "api"}',
                        'ed-2024') AS bob_token \gset
SELECT length(:'ada_token') AS length, md5(:'ada_token') AS digest;
SELECT length(:'bob_token') AS length, md5(:'bob_token') AS digest;
SELECT convert_from(decode(rpad(translate(h, '-_', '+/'), (length(h) + 3) / 4 * 4, '='), 'base64'),
                    'UTF8') AS header
FROM split_part(:'ada_token', '.', 1) AS h;
-- Tokens for the other statuses.
SELECT auth_pg.jwt_sign('{"sub": "ada", "exp": 946684800}', 'hs-2024') AS expired_token \gset
SELECT auth_pg.jwt_sign('{"sub": "ada", "exp": 4102444800, "nbf": 4102444000}', 'hs-2024') AS early_token \gset
SELECT auth_pg.jwt_sign('{"sub": "bob", "exp": 4102444800, "iss": "https://other.example", "aud": "api"}',
                        'ed-2024') AS other_issuer_token \gset
SELECT auth_pg.jwt_sign('{"sub": "bob", "exp": 4102444800, "iss": "https://issuer.example", "aud": ["web"]}',
                        'ed-2024') AS other_audience_token \gset
SELECT split_part(:'ada_token', '.', 1) || '.' || split_part(:'ada_token', '.', 2) || '.'
       || split_part(:'bob_token', '.', 3) AS forged_token \gset
SELECT auth_pg.add_jwt_key('hs-gone', 'HS384', repeat('g', 48));
SELECT auth_pg.jwt_sign('{"sub": "ada", "exp": 4102444800}', 'hs-gone') AS gone_token \gset
SELECT auth_pg.retire_jwt_key('hs-gone');

-- The application verifies.
SET ROLE app_validator;
SELECT status, claims, kid FROM auth_pg.jwt_verify(:'ada_token');
SELECT status, claims, kid FROM auth_pg.jwt_verify(:'bob_token');
SELECT t.name, v.status, v.claims IS NOT NULL AS has_claims, v.kid
FROM (VALUES ('expired', :'expired_token'), ('early', :'early_token'),
             ('other issuer', :'other_issuer_token'), ('other audience', :'other_audience_token'),
             ('forged signature', :'forged_token'), ('retired key', :'gone_token'))
     AS t(name, token),
     LATERAL auth_pg.jwt_verify(t.token) AS v;
-- Bad input is a status, never an error.
SELECT t.name, v.status, v.kid
FROM (VALUES ('NULL', NULL), ('empty', ''), ('two parts', 'eyJhbGciOiJIUzI1NiJ9.e30'),
             ('four parts', 'a.b.c.d'), ('base64 garbage', '!!!.???.***'),
             ('alg none', 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZGEiLCJleHAiOjQxMDI0NDQ4MDB9.'),
             ('a megabyte', repeat('a', 1048576)),
             ('deep nesting', 'eyJhbGciOiJIUzI1NiIsIngiOltbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbMV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dfQ.e30.c2ln'))
     AS t(name, token),
     LATERAL auth_pg.jwt_verify(t.token) AS v;
-- A key given inline: for a service that is handed its key rather than kid-named ones.
SELECT status, claims ->> 'sub' AS sub FROM auth_pg.jwt_verify(:'bob_token', $$-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAuDzQrWW1yf2X6yYknbjg8eQmSzzgjfTQSYb5I5L1uUo=
-----END PUBLIC KEY-----$$, 'EdDSA');
SELECT status FROM auth_pg.jwt_verify(:'bob_token', $$-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAuDzQrWW1yf2X6yYknbjg8eQmSzzgjfTQSYb5I5L1uUo=
-----END PUBLIC KEY-----$$, 'EdDSA', audience => 'web');
SELECT status FROM auth_pg.jwt_verify(:'bob_token', $$-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA3MhECyHP5Or98MMN5ELg
Fo6racwXbcl58+9+P8nupfEniE99mJlZdHbw/QUWEddmqoK1k9BtwiIbag3Ncfid
1PrtWIdWUj+f1z49EU+08paRHYrgytdhb+KtdiZKAwXHE2zcMXV8UUQ819CybCS5
jSIxAJioZ7JMrGLJHODWzkw+r0HN7WrqKsgth6R36Pj95g6GD4oh7cvZ/R34Hjzz
NhE1LyAUA5LMr9Wf3xLAIV+OuOnOaCQ5zT3UgbzpqDqg1N3+W5H0I3XbuwKCasT/
JvWcpBStcgTXMwZwUkyBNevNsdVkppoJ7J+a0fyHvN3BJEQn37WzELmAE8Mwn+Fq
WQIDAQAB
-----END PUBLIC KEY-----$$, 'RS256');
-- The validator may verify, not sign or manage keys.
SELECT auth_pg.jwt_sign('{}', 'hs-2024');
SELECT auth_pg.add_jwt_key('mine', 'HS256', repeat('m', 32));
SELECT * FROM auth_pg.list_jwt_keys();

-- Misuse: a specific error with a hint, never a key in the message.
SET ROLE app_admin;
\set VERBOSITY default
SELECT auth_pg.add_jwt_key('confused', 'HS256', $$-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA3MhECyHP5Or98MMN5ELg
Fo6racwXbcl58+9+P8nupfEniE99mJlZdHbw/QUWEddmqoK1k9BtwiIbag3Ncfid
1PrtWIdWUj+f1z49EU+08paRHYrgytdhb+KtdiZKAwXHE2zcMXV8UUQ819CybCS5
jSIxAJioZ7JMrGLJHODWzkw+r0HN7WrqKsgth6R36Pj95g6GD4oh7cvZ/R34Hjzz
NhE1LyAUA5LMr9Wf3xLAIV+OuOnOaCQ5zT3UgbzpqDqg1N3+W5H0I3XbuwKCasT/
JvWcpBStcgTXMwZwUkyBNevNsdVkppoJ7J+a0fyHvN3BJEQn37WzELmAE8Mwn+Fq
WQIDAQAB
-----END PUBLIC KEY-----$$);
SELECT auth_pg.add_jwt_key('short', 'HS256', 'too short a secret');
SELECT auth_pg.add_jwt_key('unsigned', 'none', repeat('n', 32));
SELECT auth_pg.add_jwt_key('swapped', 'test-only shared secret, long enough for HS512: 0123456789abcdef0123456789', 'HS256');
SELECT auth_pg.add_jwt_key('hs-2024', 'HS256', repeat('h', 32));
SELECT auth_pg.add_jwt_key('hs-gone', 'HS256', repeat('h', 32));
SELECT auth_pg.add_jwt_key(repeat('k', 300), 'HS256', repeat('h', 32));
SELECT auth_pg.jwt_sign('{"sub": "ada", "exp": "4102444800"}', 'hs-2024');
SELECT auth_pg.jwt_sign('["not", "an", "object"]', 'hs-2024');
SELECT auth_pg.jwt_sign('{"sub": "ada"}', 'rs-2024');
SELECT auth_pg.jwt_sign('{"sub": "ada"}', 'hs-gone');
SELECT auth_pg.jwt_verify(:'ada_token', $$-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA3MhECyHP5Or98MMN5ELg
Fo6racwXbcl58+9+P8nupfEniE99mJlZdHbw/QUWEddmqoK1k9BtwiIbag3Ncfid
1PrtWIdWUj+f1z49EU+08paRHYrgytdhb+KtdiZKAwXHE2zcMXV8UUQ819CybCS5
jSIxAJioZ7JMrGLJHODWzkw+r0HN7WrqKsgth6R36Pj95g6GD4oh7cvZ/R34Hjzz
NhE1LyAUA5LMr9Wf3xLAIV+OuOnOaCQ5zT3UgbzpqDqg1N3+W5H0I3XbuwKCasT/
JvWcpBStcgTXMwZwUkyBNevNsdVkppoJ7J+a0fyHvN3BJEQn37WzELmAE8Mwn+Fq
WQIDAQAB
-----END PUBLIC KEY-----$$, 'HS256');
SELECT auth_pg.import_jwks('{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}');
\set VERBOSITY terse
SELECT count(*) AS keys FROM auth_pg.list_jwt_keys();

-- Rotation: a new key signs from now on; the old one is retired, and every backend refuses its
-- tokens at their next verification.
SELECT auth_pg.add_jwt_key('hs-2025', 'HS512',
    'test-only shared secret, long enough for HS512: 0123456789abcdef0123456789');
SELECT auth_pg.jwt_sign('{"sub": "ada", "exp": 4102444800, "role": "editor"}', 'hs-2025') AS ada_token_2025 \gset
SELECT auth_pg.retire_jwt_key('hs-2024') AS retired, auth_pg.retire_jwt_key('hs-2024') AS again;
SELECT status, kid FROM auth_pg.jwt_verify(:'ada_token');
SELECT status, kid FROM auth_pg.jwt_verify(:'ada_token_2025');
-- A JWKS document (here, the public part of ed-2024 under another kid) is imported once.
SELECT auth_pg.import_jwks(jsonb_build_object('keys', jsonb_build_array(public_jwk || '{"kid": "ed-idp"}')),
                           issuer => 'https://issuer.example')
FROM auth_pg.list_jwt_keys() WHERE kid = 'ed-2024';
SELECT auth_pg.import_jwks(jsonb_build_object('keys', jsonb_build_array(public_jwk || '{"kid": "ed-idp"}')))
FROM auth_pg.list_jwt_keys() WHERE kid = 'ed-2024';
SELECT kid, algorithm, status, can_sign, issuer, audience, retired_at IS NOT NULL AS retired
FROM auth_pg.list_jwt_keys();
SELECT action, subject_id, detail FROM auth_pg.audit_events
WHERE action LIKE 'jwt%' ORDER BY event_id;

-- Row-level security: a policy on auth_pg.uid(), for a role that does not own the table. The
-- claims come only from a token verified in this transaction; a setting written by hand
-- impersonates no one, though a policy on request.jwt.claims believes it.
RESET ROLE;
CREATE TABLE jwt_documents (owner text NOT NULL, body text NOT NULL);
INSERT INTO jwt_documents VALUES ('ada', 'ada''s plan'), ('bob', 'bob''s diary');
ALTER TABLE jwt_documents ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_documents ON jwt_documents USING (owner = auth_pg.uid());
CREATE TABLE jwt_notes (owner text NOT NULL, body text NOT NULL);
INSERT INTO jwt_notes VALUES ('ada', 'ada''s note'), ('bob', 'bob''s note');
ALTER TABLE jwt_notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_notes ON jwt_notes
    USING (owner = nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub');
GRANT SELECT ON jwt_documents, jwt_notes TO app_validator;
SET ROLE app_validator;
SELECT body FROM jwt_documents;
BEGIN;
SELECT auth_pg.authenticate(:'ada_token_2025');
SELECT auth_pg.uid(), auth_pg.claims() ->> 'role' AS role,
       current_setting('request.jwt.claims')::jsonb ->> 'sub' AS request_sub;
SELECT body FROM jwt_documents;
SELECT body FROM jwt_notes;
SELECT set_config('request.jwt.claims', '{"sub": "bob"}', true) IS NOT NULL AS forged;
SELECT auth_pg.uid();
SELECT body FROM jwt_documents;
SELECT body FROM jwt_notes;
-- A token that is not valid leaves no one authenticated, even after a valid one.
SELECT auth_pg.authenticate(:'ada_token');
SELECT auth_pg.uid(), current_setting('request.jwt.claims') AS request_claims;
SELECT body FROM jwt_documents;
SELECT auth_pg.authenticate(:'ada_token_2025');
COMMIT;
-- The next transaction (the next user of a pooled connection) has no claims.
SELECT auth_pg.uid(), auth_pg.claims();
SELECT body FROM jwt_documents;
RESET ROLE;
DROP TABLE jwt_documents, jwt_notes;
