-- A caller cannot redirect auth_pg's functions with its search_path or temporary objects:
-- here a role puts a schema of its own before pg_catalog, shadows the tables, the functions
-- and the operators auth_pg uses, and creates temporary tables of the same names.
CREATE SCHEMA evil AUTHORIZATION app_admin;
SET ROLE app_admin;
CREATE TABLE evil.tokens (token_hash bytea, user_id text, revoked_at timestamptz);
CREATE TABLE evil.audit_events (action text);
CREATE FUNCTION evil.statement_timestamp() RETURNS timestamptz
    LANGUAGE sql AS $$ SELECT 'infinity'::timestamptz $$;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT 'infinity'::timestamptz $$;
CREATE FUNCTION evil.always(bytea, bytea) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
CREATE OPERATOR evil.= (LEFTARG = bytea, RIGHTARG = bytea, FUNCTION = evil.always);
CREATE FUNCTION evil.always(text, text) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.always);
CREATE TEMP TABLE tokens (token_hash bytea, user_id text, revoked_at timestamptz);
CREATE TEMP TABLE audit_events (action text);
SET search_path = evil, pg_catalog, auth_pg;

SELECT auth_pg.issue_token('victim', '1 hour') AS victim \gset
SELECT auth_pg.issue_token('attacker', '1 hour') AS attacker \gset
SELECT status, user_id FROM auth_pg.validate_token(:'victim');
-- Revoking one token revokes that token only, and is audited in auth_pg's table.
SELECT auth_pg.revoke_token(:'attacker');
SELECT status FROM auth_pg.validate_token(:'victim');
SELECT status FROM auth_pg.validate_token(:'attacker');
SELECT auth_pg.revoke_user_tokens('nobody-at-all') AS revoked;
SELECT status FROM auth_pg.validate_token(:'victim');
SELECT count(*) AS shadow_rows FROM evil.tokens;
SELECT count(*) AS temp_rows FROM pg_temp.tokens;
SELECT action FROM auth_pg.audit_events ORDER BY event_id;
RESET search_path;
RESET ROLE;
DROP SCHEMA evil CASCADE;
