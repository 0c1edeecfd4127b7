-- auth_pg: organizations and their API keys.
--
-- The keys live in the organization's api_keys document, as applications model them: a JSON
-- array of objects, one per key, holding everything but the key itself (its BLAKE3 hash, in
-- hex). Validating a key must not read that document, which grows with the number of keys
-- (760 kB for 10 000 keys; every match would re-read it), so each key also has a row in
-- auth_pg.api_key_lookup, found through a hash index on the key's hash. auth_pg's functions
-- write both in one transaction; a trigger rebuilds an organization's rows from its document
-- when the document is edited by hand, and refuses a document it cannot read.

CREATE TABLE auth_pg.organizations (
    org_id      text PRIMARY KEY,
    name        text NOT NULL,
    api_keys    jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT organizations_org_id_not_empty CHECK (org_id OPERATOR(pg_catalog.<>) '')
    -- The document's shape is checked by the triggers below (22023, naming what is wrong).
);
COMMENT ON TABLE auth_pg.organizations IS
    'Organizations (the application''s ids) and their API keys, as a JSON array';
COMMENT ON COLUMN auth_pg.organizations.api_keys IS
    'One object per key: id, hash (BLAKE3 hex), prefix, name, scopes, metadata, created_at, '
    'expires_at, revoked_at, last_used_at. Never the key itself.';

CREATE TABLE auth_pg.api_key_lookup (
    key_hash      bytea NOT NULL,
    org_id        text NOT NULL REFERENCES auth_pg.organizations (org_id)
                      ON DELETE CASCADE ON UPDATE CASCADE,
    key_id        text NOT NULL,
    prefix        text NOT NULL,
    name          text NOT NULL,
    scopes        text[] NOT NULL DEFAULT '{}',
    metadata      jsonb,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz,
    position      integer NOT NULL,
    PRIMARY KEY (org_id, key_id),
    CONSTRAINT api_key_lookup_hash_is_blake3
        CHECK (pg_catalog.octet_length(key_hash) OPERATOR(pg_catalog.=) 32)
);
-- The one index a validation probes (see tokens.sql for why a hash index).
CREATE INDEX api_key_lookup_key_hash_idx ON auth_pg.api_key_lookup USING hash (key_hash);
COMMENT ON TABLE auth_pg.api_key_lookup IS
    'One row per API key, kept equal to the organizations'' api_keys documents; '
    'position is the key''s index in its document';

SELECT pg_catalog.pg_extension_config_dump('auth_pg.organizations', '');
-- api_key_lookup is not dumped: the trigger below rebuilds it as the documents are restored.

-- One validation's answer. Only status is set unless status is 'valid'.
CREATE TYPE auth_pg.api_key_validation AS (
    status      text,
    org_id      text,
    key_id      text,
    name        text,
    scopes      text[],
    expires_at  timestamptz,
    metadata    jsonb
);
COMMENT ON TYPE auth_pg.api_key_validation IS
    'status is one of valid, expired, revoked, unknown, malformed; the other fields are NULL unless valid';

-- See tokens.sql for why the checks are C functions without a SET clause.
CREATE FUNCTION auth_pg.validate_api_key(key text) RETURNS auth_pg.api_key_validation
    STABLE PARALLEL SAFE
    LANGUAGE c AS 'MODULE_PATHNAME', 'auth_pg_validate_api_key';
COMMENT ON FUNCTION auth_pg.validate_api_key(text) IS
    'Checks an API key: valid, expired, revoked, unknown or malformed. Reads only; one index probe.';
CREATE FUNCTION auth_pg.validate_api_key_packed(key text) RETURNS bytea
    STABLE PARALLEL SAFE
    LANGUAGE c AS 'MODULE_PATHNAME', 'auth_pg_validate_api_key_packed';
COMMENT ON FUNCTION auth_pg.validate_api_key_packed(text) IS
    'validate_api_key, answering in the packed form (a bytea; layout in the README).';

CREATE FUNCTION auth_pg.validate_api_keys(keys text[]) RETURNS SETOF auth_pg.api_key_validation
    STABLE PARALLEL SAFE ROWS 10
    LANGUAGE c AS 'MODULE_PATHNAME', 'auth_pg_validate_api_keys';
COMMENT ON FUNCTION auth_pg.validate_api_keys(text[]) IS
    'Checks many API keys: one row per element, in order (use WITH ORDINALITY to number them).';

-- Refuses a bad row without printing it (see tokens.sql); the sync trigger below checks the
-- document itself.
CREATE TRIGGER organizations_check_row
    BEFORE INSERT OR UPDATE ON auth_pg.organizations
    FOR EACH ROW EXECUTE FUNCTION auth_pg.check_row();
ALTER TABLE auth_pg.organizations ENABLE ALWAYS TRIGGER organizations_check_row;
CREATE TRIGGER api_key_lookup_check_row
    BEFORE INSERT OR UPDATE ON auth_pg.api_key_lookup
    FOR EACH ROW EXECUTE FUNCTION auth_pg.check_row();
ALTER TABLE auth_pg.api_key_lookup ENABLE ALWAYS TRIGGER api_key_lookup_check_row;

-- Keeps api_key_lookup equal to the documents when they are written by anything but auth_pg's
-- functions (which write both themselves): checks the document, rebuilds the organization's
-- rows, announces and audits the change. "UPDATE ... SET api_keys = api_keys" forces a rebuild.
CREATE FUNCTION auth_pg.sync_api_key_lookup() RETURNS trigger
    VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', 'auth_pg_sync_api_key_lookup';
CREATE TRIGGER organizations_sync_api_key_lookup
    AFTER INSERT OR UPDATE OF api_keys, org_id OR DELETE ON auth_pg.organizations
    FOR EACH ROW EXECUTE FUNCTION auth_pg.sync_api_key_lookup();
-- A TRUNCATE by hand fires no row trigger: caches forget every API key.
CREATE TRIGGER organizations_truncated
    AFTER TRUNCATE ON auth_pg.organizations
    FOR EACH STATEMENT EXECUTE FUNCTION auth_pg.credentials_edited();
CREATE TRIGGER api_key_lookup_truncated
    AFTER TRUNCATE ON auth_pg.api_key_lookup
    FOR EACH STATEMENT EXECUTE FUNCTION auth_pg.credentials_edited();

-- Finds the next position quickly and keeps positions unique within an organization.
CREATE UNIQUE INDEX api_key_lookup_position_key ON auth_pg.api_key_lookup (org_id, position);

-- Documents are rewritten whole on every change; lz4 compresses and decompresses them several
-- times faster than the default pglz (where the server was built with it).
DO $compression$
BEGIN
    ALTER TABLE auth_pg.organizations ALTER COLUMN api_keys SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    NULL;
END
$compression$;
