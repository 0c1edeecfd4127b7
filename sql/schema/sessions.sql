-- auth_pg: sessions with an idle deadline that slides and an absolute one that does not.
--
-- A session token is stored only as its BLAKE3 hash. Checking reads one row through the hash
-- index; touching writes at most once per auth_pg.session_touch_interval, and only the two
-- columns no index covers (last_activity_at, idle_expires_at), so the write is a HOT update.

CREATE TABLE auth_pg.sessions (
    session_id           text PRIMARY KEY,
    session_hash         bytea NOT NULL,
    user_id              text NOT NULL,
    metadata             jsonb,
    idle_timeout         interval NOT NULL,
    created_at           timestamptz NOT NULL,
    last_activity_at     timestamptz NOT NULL,
    idle_expires_at      timestamptz NOT NULL,
    absolute_expires_at  timestamptz NOT NULL,
    revoked_at           timestamptz,
    CONSTRAINT sessions_hash_is_blake3 CHECK (pg_catalog.octet_length(session_hash) OPERATOR(pg_catalog.=) 32),
    CONSTRAINT sessions_user_id_not_empty CHECK (user_id OPERATOR(pg_catalog.<>) ''),
    CONSTRAINT sessions_idle_within_absolute CHECK (idle_expires_at OPERATOR(pg_catalog.<=) absolute_expires_at)
) WITH (fillfactor = 90);  -- room on each page for the new versions of HOT-updated rows
-- The index a check probes (see tokens.sql for why a hash index).
CREATE INDEX sessions_session_hash_idx ON auth_pg.sessions USING hash (session_hash);
-- For listing, revoking and counting a user's sessions.
CREATE INDEX sessions_user_id_idx ON auth_pg.sessions (user_id);
-- For cleanup: sessions past their absolute deadline, and revoked ones. Sessions past their
-- idle deadline are found by a scan: an index on idle_expires_at would make every touch a
-- non-HOT update, paying on the hot path for what cleanup does once in a while.
CREATE INDEX sessions_absolute_expires_at_idx ON auth_pg.sessions (absolute_expires_at);
CREATE INDEX sessions_revoked_at_idx ON auth_pg.sessions (revoked_at) WHERE revoked_at IS NOT NULL;

COMMENT ON TABLE auth_pg.sessions IS 'Sessions; the session token itself is never stored';
COMMENT ON COLUMN auth_pg.sessions.session_hash IS
    'BLAKE3 of the session token, keyed with the key in auth_pg.hash_key_file when one is set';
COMMENT ON COLUMN auth_pg.sessions.idle_expires_at IS
    'The sliding deadline: last_activity_at + idle_timeout, never past absolute_expires_at';

-- Refuses a bad row without printing it (see tokens.sql).
CREATE TRIGGER sessions_check_row
    BEFORE INSERT OR UPDATE ON auth_pg.sessions
    FOR EACH ROW EXECUTE FUNCTION auth_pg.check_row();
ALTER TABLE auth_pg.sessions ENABLE ALWAYS TRIGGER sessions_check_row;

-- Announces a change made by hand (see tokens.sql): caches forget every session. auth_pg's
-- own writes (touches included) do not fire it.
CREATE TRIGGER sessions_edited
    AFTER UPDATE OR DELETE OR TRUNCATE ON auth_pg.sessions
    FOR EACH STATEMENT EXECUTE FUNCTION auth_pg.credentials_edited();

SELECT pg_catalog.pg_extension_config_dump('auth_pg.sessions', '');

-- One check's answer. Only status is set unless status is 'valid'.
CREATE TYPE auth_pg.session_validation AS (
    status               text,
    user_id              text,
    session_id           text,
    idle_expires_at      timestamptz,
    absolute_expires_at  timestamptz,
    metadata             jsonb
);
COMMENT ON TYPE auth_pg.session_validation IS
    'status is one of valid, idle_expired, absolute_expired, revoked, unknown, malformed; the other fields are NULL unless valid';

-- Version-1 C functions, as the token checks (see tokens.sql).
CREATE FUNCTION auth_pg.validate_session(token text) RETURNS auth_pg.session_validation
    STABLE PARALLEL SAFE
    LANGUAGE c AS 'MODULE_PATHNAME', 'auth_pg_validate_session';
COMMENT ON FUNCTION auth_pg.validate_session(text) IS
    'Checks a session token: valid, idle_expired, absolute_expired, revoked, unknown or malformed. Reads only.';
CREATE FUNCTION auth_pg.validate_session_packed(token text) RETURNS bytea
    STABLE PARALLEL SAFE
    LANGUAGE c AS 'MODULE_PATHNAME', 'auth_pg_validate_session_packed';
COMMENT ON FUNCTION auth_pg.validate_session_packed(text) IS
    'validate_session, answering in the packed form (a bytea; layout in the README).';

-- touch_session writes (at most once per auth_pg.session_touch_interval per session) through
-- statements in which every name and operator is schema-qualified.
CREATE FUNCTION auth_pg.touch_session(token text) RETURNS auth_pg.session_validation
    VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    LANGUAGE c AS 'MODULE_PATHNAME', 'auth_pg_touch_session';
COMMENT ON FUNCTION auth_pg.touch_session(text) IS
    'Checks a session token and, when valid, slides its idle deadline (never past the absolute one).';
CREATE FUNCTION auth_pg.touch_session_packed(token text) RETURNS bytea
    VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    LANGUAGE c AS 'MODULE_PATHNAME', 'auth_pg_touch_session_packed';
COMMENT ON FUNCTION auth_pg.touch_session_packed(text) IS
    'touch_session, answering in the packed form (a bytea; layout in the README).';
