-- A caller cannot redirect auth_pg's functions with its search_path or temporary objects:
-- here a role puts a schema of its own before pg_catalog, shadows the tables, the functions
-- and the operators auth_pg uses, and creates temporary tables of the same names.
CREATE SCHEMA evil AUTHORIZATION app_admin;
SET auth_pg.session_touch_interval = 0;
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
CREATE TABLE evil.organizations (org_id text, name text, api_keys jsonb);
CREATE TABLE evil.api_key_lookup (key_hash bytea, org_id text, key_id text, position int);
CREATE FUNCTION evil.jsonb_set(jsonb, text[], jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '[]'::jsonb $$;
CREATE FUNCTION evil.max(integer) RETURNS integer LANGUAGE sql AS $$ SELECT 0 $$;
CREATE TABLE evil.sessions (session_id text, session_hash bytea, user_id text, revoked_at timestamptz);
CREATE FUNCTION evil.later(timestamptz, timestamptz) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
CREATE OPERATOR evil.< (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.later);
CREATE OPERATOR evil.> (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.later);
CREATE FUNCTION evil.shift(timestamptz, interval) RETURNS timestamptz
    LANGUAGE sql AS $$ SELECT 'infinity'::timestamptz $$;
CREATE OPERATOR evil.+ (LEFTARG = timestamptz, RIGHTARG = interval, FUNCTION = evil.shift);
CREATE TEMP TABLE sessions (session_id text, session_hash bytea, user_id text, revoked_at timestamptz);
CREATE TEMP TABLE tokens (token_hash bytea, user_id text, revoked_at timestamptz);
CREATE TEMP TABLE audit_events (action text);
CREATE TEMP TABLE organizations (org_id text, name text, api_keys jsonb);
CREATE TEMP TABLE api_key_lookup (key_hash bytea, org_id text, key_id text, position int);
CREATE TABLE evil.roles (role_id bigint, name text, org_id text);
CREATE TABLE evil.user_grants (grant_key bytea, user_id text, org_id text, roles text[], permissions text[]);
CREATE FUNCTION evil.always(bigint, bigint) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
CREATE OPERATOR evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.always);
CREATE FUNCTION evil.convert_to(text, name) RETURNS bytea LANGUAGE sql AS $$ SELECT '\x00'::bytea $$;
CREATE TEMP TABLE roles (role_id bigint, name text, org_id text);
CREATE TEMP TABLE role_assignments (user_id text, org_id text, role_id bigint);
CREATE TEMP TABLE permission_state (version bigint);
SET search_path = evil, pg_catalog, auth_pg;

SELECT auth_pg.issue_token('victim', '1 hour') AS victim \gset
SELECT auth_pg.issue_token('attacker', '1 hour') AS attacker \gset
SELECT status, user_id FROM auth_pg.validate_token(:'victim');
-- Revoking one token revokes that token only, and is audited in auth_pg's table.
SELECT auth_pg.revoke_token(:'attacker');
SELECT status FROM auth_pg.validate_token(:'victim');
SELECT status FROM auth_pg.validate_token(:'attacker');
-- The packed answers say the same (the status is the first field, from byte 7 on).
SELECT pg_catalog.convert_from(pg_catalog.substring(p, 7, pg_catalog.get_byte(p, 5)), 'UTF8') AS packed_status
FROM (SELECT auth_pg.validate_token_packed(:'victim') AS p) AS answer;
SELECT pg_catalog.convert_from(pg_catalog.substring(p, 7, pg_catalog.get_byte(p, 5)), 'UTF8') AS packed_status
FROM (SELECT auth_pg.validate_token_packed(:'attacker') AS p) AS answer;
SELECT auth_pg.revoke_user_tokens('nobody-at-all') AS revoked;
SELECT status FROM auth_pg.validate_token(:'victim');
SELECT status, user_id FROM auth_pg.validate_tokens(ARRAY[:'victim', :'attacker']);
-- The same for organizations and API keys.
SELECT auth_pg.create_organization('victim-org', 'Victim');
SELECT key AS victim_key, key_id AS victim_key_id FROM auth_pg.create_api_key('victim-org', 'Prod') \gset
SELECT key AS second_key, key_id AS second_key_id FROM auth_pg.create_api_key('victim-org', 'Staging') \gset
SELECT status, org_id, name FROM auth_pg.validate_api_key(:'victim_key');
SELECT key_id IS NOT NULL AS rotated FROM auth_pg.rotate_api_key('victim-org', :'second_key_id', '1 hour');
SELECT auth_pg.revoke_api_key('victim-org', :'second_key_id');
SELECT name, status FROM auth_pg.list_api_keys('victim-org');
SELECT status FROM auth_pg.validate_api_key(:'victim_key');
SELECT pg_catalog.convert_from(pg_catalog.substring(p, 7, pg_catalog.get_byte(p, 5)), 'UTF8') AS packed_status
FROM (SELECT auth_pg.validate_api_key_packed(:'victim_key') AS p) AS answer;
SELECT status, org_id FROM auth_pg.validate_api_keys(ARRAY[:'victim_key', :'second_key']);
-- The same for sessions; touches write on every call here.
SELECT auth_pg.create_session('victim', '30 minutes', '12 hours') AS victim_session \gset
SELECT auth_pg.create_session('attacker', '30 minutes', '12 hours') AS attacker_session \gset
SELECT status, user_id, idle_expires_at < 'infinity' AS finite FROM auth_pg.touch_session(:'victim_session');
SELECT auth_pg.revoke_session(:'attacker_session');
SELECT auth_pg.revoke_session_by_id('ses_nothing_like_it');
SELECT auth_pg.revoke_user_sessions('nobody-at-all') AS revoked;
SELECT auth_pg.cleanup_expired_sessions() AS deleted;
SELECT status, revoked_at, last_activity_at > created_at AS touched, idle_expires_at < 'infinity' AS finite
FROM auth_pg.list_user_sessions('victim');
SELECT status FROM auth_pg.validate_session(:'victim_session');
SELECT status FROM auth_pg.validate_session(:'attacker_session');
SELECT pg_catalog.convert_from(pg_catalog.substring(p, 7, pg_catalog.get_byte(p, 5)), 'UTF8') AS packed_status
FROM (SELECT auth_pg.validate_session_packed(:'victim_session') AS p) AS answer;
SELECT pg_catalog.convert_from(pg_catalog.substring(p, 7, pg_catalog.get_byte(p, 5)), 'UTF8') AS packed_status
FROM (SELECT auth_pg.touch_session_packed(:'victim_session') AS p) AS answer;
SELECT pg_catalog.convert_from(pg_catalog.substring(p, 7, pg_catalog.get_byte(p, 5)), 'UTF8') AS packed_status
FROM (SELECT auth_pg.touch_session_packed(:'attacker_session') AS p) AS answer;
-- The same for roles and permissions.
SELECT auth_pg.create_role('victim-role', 'victim-org'), auth_pg.create_role('victim-parent');
SELECT auth_pg.add_role_parent('victim-role', 'victim-parent', 'victim-org');
SELECT auth_pg.grant_permission('victim-parent', 'reports:read');
SELECT auth_pg.assign_role('victim', 'victim-role', 'victim-org');
SELECT auth_pg.assign_role('attacker', 'victim-parent', 'attacker-org');
SELECT auth_pg.unassign_role('attacker', 'victim-parent', 'attacker-org');
SELECT auth_pg.has_permission('victim', 'reports:read', 'victim-org') AS victim_reads,
       auth_pg.has_permission('attacker', 'reports:read', 'attacker-org') AS attacker_reads;
SELECT auth_pg.user_roles('victim', 'victim-org');
SELECT auth_pg.user_permissions('victim', 'victim-org'),
       auth_pg.has_permissions('victim', ARRAY['reports:read'], 'victim-org') AS victim_reads_all;
SELECT (SELECT count(*) FROM evil.tokens) + (SELECT count(*) FROM evil.organizations)
       + (SELECT count(*) FROM evil.api_key_lookup)
       + (SELECT count(*) FROM evil.sessions) + (SELECT count(*) FROM evil.roles)
       + (SELECT count(*) FROM evil.user_grants) AS shadow_rows;
SELECT (SELECT count(*) FROM pg_temp.tokens) + (SELECT count(*) FROM pg_temp.organizations)
       + (SELECT count(*) FROM pg_temp.api_key_lookup)
       + (SELECT count(*) FROM pg_temp.sessions) + (SELECT count(*) FROM pg_temp.roles)
       + (SELECT count(*) FROM pg_temp.role_assignments)
       + (SELECT count(*) FROM pg_temp.permission_state) AS temp_rows;
-- The same for JWT keys: the key table is read by OID, written through qualified names.
CREATE TEMP TABLE jwt_keys (kid text, algorithm text, key text, active boolean);
SELECT auth_pg.add_jwt_key('victim-kid', 'HS256', repeat('v', 32));
SELECT auth_pg.jwt_sign('{"sub": "victim", "exp": 4102444800}', 'victim-kid') AS victim_jwt \gset
SELECT status, claims ->> 'sub' AS sub FROM auth_pg.jwt_verify(:'victim_jwt');
BEGIN;
SELECT auth_pg.authenticate(:'victim_jwt') AS status;
SELECT auth_pg.uid() AS uid;
COMMIT;
SELECT auth_pg.retire_jwt_key('attacker-kid') AS retired;
SELECT auth_pg.import_jwks('{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "victim-idp",
    "x": "uDzQrWW1yf2X6yYknbjg8eQmSzzgjfTQSYb5I5L1uUo"}]}') AS imported;
SELECT kid, algorithm, status FROM auth_pg.list_jwt_keys() WHERE kid LIKE 'victim%';
SELECT auth_pg.retire_jwt_key('victim-kid') AS retired;
SELECT status FROM auth_pg.jwt_verify(:'victim_jwt');
SELECT count(*) AS temp_jwt_keys FROM pg_temp.jwt_keys;
RESET search_path;
-- Every act was audited in auth_pg's table.
SELECT action FROM auth_pg.audit_events
WHERE user_id IN ('victim', 'attacker', 'nobody-at-all') OR org_id = 'victim-org'
   OR subject_id = 'victim-parent' ORDER BY event_id;
RESET ROLE;
DROP SCHEMA evil CASCADE;
