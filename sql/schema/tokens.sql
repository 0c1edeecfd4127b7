-- auth_pg: opaque bearer tokens, stored only as their BLAKE3 hash.

CREATE TABLE auth_pg.tokens (
    token_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash  bytea NOT NULL,
    user_id     text NOT NULL,
    scopes      text[] NOT NULL DEFAULT '{}',
    metadata    jsonb,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    CONSTRAINT tokens_hash_is_blake3 CHECK (pg_catalog.octet_length(token_hash) OPERATOR(pg_catalog.=) 32),
    CONSTRAINT tokens_user_id_not_empty CHECK (user_id OPERATOR(pg_catalog.<>) '')
);
-- The one index a validation probes. A hash index: one bucket page per probe at any table size,
-- half the size of a B-tree over the same 32-byte keys. Hashes of 256-bit random credentials
-- never collide, so no unique index is kept.
CREATE INDEX tokens_token_hash_idx ON auth_pg.tokens USING hash (token_hash);
-- For revoke_user_tokens: only tokens still in force.
CREATE INDEX tokens_user_id_active_idx ON auth_pg.tokens (user_id) WHERE revoked_at IS NULL;

COMMENT ON TABLE auth_pg.tokens IS 'Opaque bearer tokens; the token itself is never stored';
COMMENT ON COLUMN auth_pg.tokens.token_hash IS
    'BLAKE3 of the token, keyed with the key in auth_pg.hash_key_file when one is set';

-- Refuses a row with NULL in a NOT NULL column or breaking a CHECK constraint before
-- PostgreSQL's own constraints do: their errors print the whole row in DETAIL, and so in the
-- server log, hashes included. The same rules, reported with the column or constraint only
-- (auth_pg/src/edits.rs). The constraints stay, as the schema's statement of the rules. The
-- trigger fires under session_replication_role = replica too (ENABLE ALWAYS).
-- A C function that resolves no names, so without a SET clause (which would cost every write).
CREATE FUNCTION auth_pg.check_row() RETURNS trigger
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'auth_pg_check_row';
CREATE TRIGGER tokens_check_row
    BEFORE INSERT OR UPDATE ON auth_pg.tokens
    FOR EACH ROW EXECUTE FUNCTION auth_pg.check_row();
ALTER TABLE auth_pg.tokens ENABLE ALWAYS TRIGGER tokens_check_row;

-- Announces a change made by hand (not through auth_pg's functions, which announce each of
-- theirs): caches forget every token.
CREATE FUNCTION auth_pg.credentials_edited() RETURNS trigger
    VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', 'auth_pg_credentials_edited';
CREATE TRIGGER tokens_edited
    AFTER UPDATE OR DELETE OR TRUNCATE ON auth_pg.tokens
    FOR EACH STATEMENT EXECUTE FUNCTION auth_pg.credentials_edited();

SELECT pg_catalog.pg_extension_config_dump('auth_pg.tokens', '');
SELECT pg_catalog.pg_extension_config_dump('auth_pg.tokens_token_id_seq', '');

-- One validation's answer. Only status is set unless status is 'valid'.
CREATE TYPE auth_pg.token_validation AS (
    status      text,
    token_id    bigint,
    user_id     text,
    scopes      text[],
    expires_at  timestamptz,
    metadata    jsonb
);
COMMENT ON TYPE auth_pg.token_validation IS
    'status is one of valid, expired, revoked, unknown, malformed; the other fields are NULL unless valid';

-- The checks are version-1 C functions written for the hot path (see auth_pg/src/fmgr.rs).
-- They read the tokens table through its hash index by OID and resolve no names at run time,
-- so no caller's search_path or temporary objects can reach them. Reading a relation by OID
-- checks no table privilege, so they run as their caller (SECURITY INVOKER): EXECUTE is the
-- only gate, and SECURITY DEFINER would add nothing but a user switch on every call.
CREATE FUNCTION auth_pg.validate_token(token text) RETURNS auth_pg.token_validation
    STABLE PARALLEL SAFE
    LANGUAGE c AS 'MODULE_PATHNAME', 'auth_pg_validate_token';
COMMENT ON FUNCTION auth_pg.validate_token(text) IS
    'Checks a token: valid, expired, revoked, unknown or malformed. Reads only; one index probe.';

-- The same check, answering in the packed form: one bytea that a driver reads without the
-- per-field type lookups a composite costs PostgreSQL on every query (see auth_pg/src/packed.rs
-- and the README). auth_client calls these.
CREATE FUNCTION auth_pg.validate_token_packed(token text) RETURNS bytea
    STABLE PARALLEL SAFE
    LANGUAGE c AS 'MODULE_PATHNAME', 'auth_pg_validate_token_packed';
COMMENT ON FUNCTION auth_pg.validate_token_packed(text) IS
    'validate_token, answering in the packed form (a bytea; layout in the README).';

CREATE FUNCTION auth_pg.validate_tokens(tokens text[]) RETURNS SETOF auth_pg.token_validation
    STABLE PARALLEL SAFE ROWS 10
    LANGUAGE c AS 'MODULE_PATHNAME', 'auth_pg_validate_tokens';
COMMENT ON FUNCTION auth_pg.validate_tokens(text[]) IS
    'Checks many tokens: one row per element, in order (use WITH ORDINALITY to number them).';
