-- Roles and permissions from SQL: a user who is an admin in one organization and a member in
-- another, global roles, inheritance, wildcards, and what changes announce.
SET ROLE app_admin;
SELECT auth_pg.create_role('member', description => 'Reads documents');
SELECT auth_pg.create_role('editor');
SELECT auth_pg.create_role('admin', 'acme', 'Runs Acme');
SELECT auth_pg.create_role('support');
SELECT auth_pg.add_role_parent('editor', 'member');
SELECT auth_pg.add_role_parent('admin', 'editor', 'acme');
SELECT auth_pg.grant_permission('member', 'documents:read');
SELECT auth_pg.grant_permission('editor', 'documents:write');
SELECT auth_pg.grant_permission('admin', 'billing:*', 'acme');
SELECT auth_pg.grant_permission('support', 'tickets:*');
SELECT auth_pg.assign_role('ada', 'admin', 'acme');
SELECT auth_pg.assign_role('ada', 'member', 'globex');
SELECT auth_pg.assign_role('ada', 'support', NULL);
SELECT name, org_id, description FROM auth_pg.roles ORDER BY role_id;

-- The application asks.
SET ROLE app_validator;
SELECT org, auth_pg.has_permission('ada', 'documents:write', org) AS writes,
       auth_pg.has_permission('ada', 'billing:invoices:export', org) AS exports_invoices,
       auth_pg.has_permission('ada', 'tickets:close', org) AS closes_tickets
FROM unnest(ARRAY['acme', 'globex', 'initech', NULL]) AS org;
SELECT auth_pg.user_permissions('ada', 'acme');
SELECT auth_pg.user_permissions('ada', 'globex');
SELECT auth_pg.user_roles('ada', 'acme');
SELECT auth_pg.has_permissions('ada', ARRAY['documents:read', 'billing:refund'], 'acme') AS all_in_acme,
       auth_pg.has_permissions('ada', ARRAY['documents:read', 'billing:refund'], 'globex') AS all_in_globex,
       auth_pg.has_permissions('ada', ARRAY['documents:read', 'billing:refund'], 'globex', false) AS any_in_globex;
-- Unknown users and organizations hold nothing beyond global roles; NULL users hold nothing.
SELECT auth_pg.has_permission('nobody', 'documents:read', 'acme') AS nobody,
       auth_pg.has_permission(NULL, 'documents:read', 'acme') AS null_user,
       auth_pg.has_permission('ada', 'tickets:close', repeat('x', 100000)) AS huge_org;
-- Wildcards asked about are taken literally, quotes are plain characters.
SELECT auth_pg.has_permission('ada', 'billing:*', 'acme') AS billing_family,
       auth_pg.has_permission('ada', 'documents:*', 'acme') AS documents_family,
       auth_pg.has_permission('ada', $$billing:'--";x$$, 'acme') AS quoted;
-- Permission names that break the rules are mistakes in the caller's code.
\set VERBOSITY default
SELECT auth_pg.has_permission('ada', 'doc*', 'acme');
SELECT auth_pg.has_permission('ada', '', 'acme');
SELECT auth_pg.has_permission('ada', 'documents: read', 'acme');
SELECT auth_pg.has_permission('ada', repeat('x', 300), 'acme');
SELECT auth_pg.has_permissions('ada', ARRAY['documents:read', NULL], 'acme');
-- The validator may ask, not change.
SELECT auth_pg.assign_role('ada', 'admin', 'globex');
\set VERBOSITY terse

-- Changes: refused ones say why and store nothing.
SET ROLE app_admin;
\set VERBOSITY default
SELECT auth_pg.add_role_parent('member', 'admin', 'acme');
SELECT auth_pg.add_role_parent('member', 'editor');
SELECT auth_pg.create_role('admin');
SELECT auth_pg.create_role('member', 'acme');
SELECT auth_pg.assign_role('ada', 'admin', 'globex');
SELECT auth_pg.grant_permission('editor', '*:write');
SELECT auth_pg.grant_permission('ghost', 'documents:read');
SELECT auth_pg.assign_role('', 'member', NULL);
\set VERBOSITY terse
SELECT count(*) AS roles FROM auth_pg.roles;

-- Changes are audited (and announced on auth_pg_invalidate; see the end-to-end tests), and
-- each reaches every holder at once.
SELECT auth_pg.grant_permission('member', 'comments:write');
SELECT auth_pg.has_permission('ada', 'comments:write', 'acme') AS inherited_at_once;
SELECT auth_pg.unassign_role('ada', 'member', 'globex');
SELECT auth_pg.delete_role('support');
SELECT org, auth_pg.has_permission('ada', 'comments:write', org) AS comments,
       auth_pg.has_permission('ada', 'tickets:close', org) AS tickets
FROM unnest(ARRAY['acme', 'globex']) AS org;
SELECT action, user_id, org_id, subject_id, detail FROM auth_pg.audit_events
WHERE action LIKE 'role.%' ORDER BY event_id;
RESET ROLE;
