-- Who may do what. Tables are closed; roles are granted functions.
SET ROLE app_nobody;
SELECT * FROM auth_pg.tokens;
SELECT * FROM auth_pg.audit_events;
SELECT auth_pg.validate_token('x');
SELECT auth_pg.issue_token('user-1', '1 hour');

SET ROLE app_validator;
SELECT status FROM auth_pg.validate_token('x');
SELECT * FROM auth_pg.tokens;
SELECT auth_pg.issue_token('user-1', '1 hour');
SELECT auth_pg.revoke_user_tokens('user-1');
SELECT * FROM auth_pg.audit_events;

SET ROLE app_admin;
SELECT auth_pg.issue_token('user-1', '1 hour') IS NOT NULL AS issued;
SELECT count(*) >= 0 AS can_read_audit FROM auth_pg.audit_events;
SELECT * FROM auth_pg.tokens;
UPDATE auth_pg.audit_events SET action = 'forged';
DELETE FROM auth_pg.audit_events;
RESET ROLE;

-- Superusers cannot rewrite history either, short of dropping the trigger.
UPDATE auth_pg.audit_events SET action = 'forged';

-- What each role holds, from the catalog.
SELECT p.proname, p.prosecdef AS security_definer,
       coalesce(array_to_string(p.proconfig, ', '), '') AS settings,
       has_function_privilege('app_validator', p.oid, 'EXECUTE') AS validator,
       has_function_privilege('app_admin', p.oid, 'EXECUTE') AS admin,
       has_function_privilege('app_nobody', p.oid, 'EXECUTE') AS nobody
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'auth_pg'
ORDER BY p.proname, p.pronargs;
SELECT c.relname, has_table_privilege('app_admin', c.oid, 'SELECT') AS admin_select,
       has_table_privilege('app_validator', c.oid, 'SELECT') AS validator_select,
       has_table_privilege('app_nobody', c.oid, 'SELECT') AS nobody_select
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'auth_pg' AND c.relkind = 'r'
ORDER BY c.relname;
