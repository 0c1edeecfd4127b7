-- auth_pg: JSON Web Tokens, verified and signed with keys kept by kid.
--
-- The key table holds key material (HMAC secrets and private keys), so it is closed to every
-- role but its owner; auth_pg.list_jwt_keys shows everything but the secrets. Each backend
-- parses a key the first time a token names it and keeps it, with the tokens it verified, until
-- the table changes: the trigger below invalidates the table's relcache entry, which PostgreSQL
-- delivers to every backend once the change commits (see auth_pg/src/jwt/keys.rs).

CREATE TABLE auth_pg.jwt_keys (
    kid         text PRIMARY KEY,
    algorithm   text NOT NULL,
    key         text NOT NULL,
    issuer      text,
    audience    text,
    active      boolean NOT NULL DEFAULT true,
    not_before  timestamptz,
    not_after   timestamptz,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    retired_at  timestamptz,
    CONSTRAINT jwt_keys_kid_length
        CHECK (pg_catalog.octet_length(kid) OPERATOR(pg_catalog.>) 0
               AND pg_catalog.octet_length(kid) OPERATOR(pg_catalog.<=) 256),
    CONSTRAINT jwt_keys_algorithm_known CHECK (algorithm OPERATOR(pg_catalog.=) ANY (ARRAY[
        'HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512',
        'ES256', 'ES384', 'EdDSA'])),
    CONSTRAINT jwt_keys_window CHECK (not_after OPERATOR(pg_catalog.>) not_before)
);
COMMENT ON TABLE auth_pg.jwt_keys IS
    'Keys that verify (and, for HMAC secrets and private keys, sign) JWTs, by kid. Holds key material: closed to every role but the owner.';
COMMENT ON COLUMN auth_pg.jwt_keys.key IS
    'An HMAC secret, a PEM (public or private key) or a public JWK';
COMMENT ON COLUMN auth_pg.jwt_keys.active IS
    'false once retired: a retired key verifies and signs nothing, and its kid is never reused';
COMMENT ON COLUMN auth_pg.jwt_keys.issuer IS 'When set, a token''s iss must equal it';
COMMENT ON COLUMN auth_pg.jwt_keys.audience IS 'When set, a token''s aud must contain it';

SELECT pg_catalog.pg_extension_config_dump('auth_pg.jwt_keys', '');

-- One verification's answer. claims is NULL unless status is 'valid'; kid is the token header's
-- (also when the token is not valid, when it could be read: it is then not authenticated).
CREATE TYPE auth_pg.jwt_verification AS (
    status  text,
    claims  jsonb,
    kid     text
);
COMMENT ON TYPE auth_pg.jwt_verification IS
    'status is one of valid, expired, not_yet_valid, bad_signature, unknown_key, wrong_issuer, wrong_audience, malformed; claims is NULL unless valid';

-- The checks are version-1 C functions, as the token checks (see tokens.sql). Those that use
-- the key table are PARALLEL UNSAFE: a key is read with the newest snapshot, which PostgreSQL
-- does not take in parallel mode.
CREATE FUNCTION auth_pg.jwt_verify(token text) RETURNS auth_pg.jwt_verification
    STABLE PARALLEL UNSAFE
    LANGUAGE c AS 'MODULE_PATHNAME', 'auth_pg_jwt_verify';
COMMENT ON FUNCTION auth_pg.jwt_verify(text) IS
    'Verifies a JWT with the key its header''s kid names in auth_pg.jwt_keys. Reads only.';

CREATE FUNCTION auth_pg.jwt_verify(token text, key text, algorithm text,
                                   issuer text DEFAULT NULL, audience text DEFAULT NULL)
    RETURNS auth_pg.jwt_verification
    STABLE PARALLEL SAFE
    LANGUAGE c AS 'MODULE_PATHNAME', 'auth_pg_jwt_verify_with_key';
COMMENT ON FUNCTION auth_pg.jwt_verify(text, text, text, text, text) IS
    'Verifies a JWT with the key given (an HMAC secret, a PEM or a JWK) for the algorithm given, whatever kid the token names.';

-- authenticate keeps the verified claims in the backend's memory for the current transaction
-- (and sets request.jwt.claims, transaction-local, for PostgREST-style policies). claims() and
-- uid() read only that memory: no setting can impersonate anyone. PARALLEL RESTRICTED, as the
-- memory is the leader's: a policy that calls them is evaluated in the leader.
CREATE FUNCTION auth_pg.authenticate(token text) RETURNS text
    VOLATILE PARALLEL UNSAFE
    LANGUAGE c AS 'MODULE_PATHNAME', 'auth_pg_authenticate';
COMMENT ON FUNCTION auth_pg.authenticate(text) IS
    'Verifies a JWT as jwt_verify(token) does and returns the status; when valid, its claims are the transaction''s (auth_pg.claims(), auth_pg.uid(), request.jwt.claims), otherwise the transaction has none.';

CREATE FUNCTION auth_pg.claims() RETURNS jsonb
    STABLE PARALLEL RESTRICTED
    LANGUAGE c AS 'MODULE_PATHNAME', 'auth_pg_claims';
COMMENT ON FUNCTION auth_pg.claims() IS
    'The claims of the token auth_pg.authenticate verified in this transaction, or NULL.';

CREATE FUNCTION auth_pg.uid() RETURNS text
    STABLE PARALLEL RESTRICTED
    LANGUAGE c AS 'MODULE_PATHNAME', 'auth_pg_uid';
COMMENT ON FUNCTION auth_pg.uid() IS
    'The sub claim of the token auth_pg.authenticate verified in this transaction, or NULL.';

-- Refuses a row with NULL in a NOT NULL column without printing it (see tokens.sql), and checks
-- a key written by anything but auth_pg's functions (which check it first), so that the table
-- holds only keys that parse for their algorithm, with the errors add_jwt_key gives for the
-- CHECK constraints above. Fires under session_replication_role = replica too.
CREATE FUNCTION auth_pg.check_jwt_key() RETURNS trigger
    VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', 'auth_pg_check_jwt_key';
CREATE TRIGGER jwt_keys_check
    BEFORE INSERT OR UPDATE ON auth_pg.jwt_keys
    FOR EACH ROW EXECUTE FUNCTION auth_pg.check_jwt_key();
ALTER TABLE auth_pg.jwt_keys ENABLE ALWAYS TRIGGER jwt_keys_check;

-- Tells every backend's key cache that the table changed (once per statement, TRUNCATE
-- included), and, for changes made by hand, announces and audits them.
CREATE FUNCTION auth_pg.jwt_keys_changed() RETURNS trigger
    VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', 'auth_pg_jwt_keys_changed';
CREATE TRIGGER jwt_keys_invalidate
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON auth_pg.jwt_keys
    FOR EACH STATEMENT EXECUTE FUNCTION auth_pg.jwt_keys_changed();
