-- auth_pg: objects every other part of the schema builds on.
--
-- Roles are cluster-wide and outlive the extension (another database may use them), so they
-- are created only when missing and never dropped by DROP EXTENSION.

-- Credentials, ids and names cross into Rust as UTF-8 strings: a database in another encoding
-- could hand auth_pg text it cannot read, so it is refused here, before anything is created.
DO $encoding$
BEGIN
    IF pg_catalog.getdatabaseencoding() OPERATOR(pg_catalog.<>) 'UTF8' THEN
        RAISE EXCEPTION 'auth_pg needs a database whose encoding is UTF8, not %',
                pg_catalog.getdatabaseencoding()
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Create a database with ENCODING ''UTF8'' and install auth_pg there.';
    END IF;
END
$encoding$;

-- CREATE EXTENSION reuses a schema named auth_pg that already exists, whoever made it. Its
-- owner could later rename it and put look-alike tables in a new auth_pg schema, which the
-- SECURITY DEFINER functions would then write into as the extension's owner. So the schema
-- must belong to a superuser, let no other role create objects in it, and be empty.
DO $schema$
DECLARE
    schema_oid oid := 'auth_pg'::pg_catalog.regnamespace;
BEGIN
    IF NOT (SELECT r.rolsuper
              FROM pg_catalog.pg_namespace n
              JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
             WHERE n.oid OPERATOR(pg_catalog.=) schema_oid)
       OR EXISTS (SELECT
                    FROM pg_catalog.pg_namespace n,
                         pg_catalog.aclexplode(n.nspacl) a
                    LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.grantee
                   WHERE n.oid OPERATOR(pg_catalog.=) schema_oid
                     AND a.privilege_type OPERATOR(pg_catalog.=) 'CREATE'
                     AND NOT coalesce(r.rolsuper, false)) THEN
        RAISE EXCEPTION 'schema auth_pg already exists and is not under a superuser''s sole control'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Drop the schema auth_pg (or rename it) and run CREATE EXTENSION auth_pg again: the extension creates its own schema.';
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_class WHERE relnamespace OPERATOR(pg_catalog.=) schema_oid)
       OR EXISTS (SELECT FROM pg_catalog.pg_proc WHERE pronamespace OPERATOR(pg_catalog.=) schema_oid)
       OR EXISTS (SELECT FROM pg_catalog.pg_type WHERE typnamespace OPERATOR(pg_catalog.=) schema_oid)
       OR EXISTS (SELECT FROM pg_catalog.pg_operator WHERE oprnamespace OPERATOR(pg_catalog.=) schema_oid) THEN
        RAISE EXCEPTION 'schema auth_pg already exists and holds objects'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Drop the schema auth_pg (or rename it) and run CREATE EXTENSION auth_pg again: the extension creates its own schema.';
    END IF;
END
$schema$;

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'auth_pg_validator') THEN
        CREATE ROLE auth_pg_validator NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'auth_pg_admin') THEN
        CREATE ROLE auth_pg_admin NOLOGIN;
    END IF;
END
$roles$;

COMMENT ON SCHEMA auth_pg IS 'auth_pg: authentication checks inside PostgreSQL';

-- Every administrative act, appended and never changed.
CREATE TABLE auth_pg.audit_events (
    event_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    action       text NOT NULL,
    actor        text NOT NULL,
    session_role text NOT NULL,
    user_id      text,
    org_id       text,
    subject_id   text,
    detail       jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_events_occurred_at_idx ON auth_pg.audit_events (occurred_at);
CREATE INDEX audit_events_user_id_idx ON auth_pg.audit_events (user_id) WHERE user_id IS NOT NULL;

COMMENT ON TABLE auth_pg.audit_events IS
    'Administrative acts (issue, revoke, rotate, role changes): append-only, never holds a secret';
COMMENT ON COLUMN auth_pg.audit_events.actor IS
    'The database role that acted (after SET ROLE), not the owner of the SECURITY DEFINER function';
COMMENT ON COLUMN auth_pg.audit_events.session_role IS 'The role that logged in';
COMMENT ON COLUMN auth_pg.audit_events.subject_id IS
    'The id of what was acted on: a token id, key id, session id or role name';

CREATE FUNCTION auth_pg.audit_events_are_append_only() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RAISE EXCEPTION 'auth_pg.audit_events is append-only'
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Audit events cannot be changed or deleted.';
END
$fn$;

CREATE TRIGGER audit_events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON auth_pg.audit_events
    FOR EACH ROW EXECUTE FUNCTION auth_pg.audit_events_are_append_only();
CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON auth_pg.audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION auth_pg.audit_events_are_append_only();

SELECT pg_catalog.pg_extension_config_dump('auth_pg.audit_events', '');
SELECT pg_catalog.pg_extension_config_dump('auth_pg.audit_events_event_id_seq', '');
