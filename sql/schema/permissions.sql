-- auth_pg: roles and permissions, per organization, with inheritance and wildcards.
--
-- The tables an administrator changes (roles, role_parents, role_permissions, role_assignments) are
-- the truth. Two tables are derived from them, always in the same transaction as the change:
-- role_closure (every role with each of its ancestors) and user_grants (each user's effective
-- roles and permissions per organization, sorted), which is what a check reads, in one probe
-- of a hash index. Every change goes through auth_pg's functions, which serialize on the one
-- row of permission_state, so the derived tables are exactly what the truth implies after
-- every commit, whatever runs concurrently.

-- Serializes every change of roles, and makes one made from a stale snapshot fail: each change
-- first updates this row, so in REPEATABLE READ or SERIALIZABLE a change that started before
-- another one committed raises a serialization failure (40001) instead of deriving from data
-- it cannot see; retry it.
CREATE TABLE auth_pg.permission_state (
    id       boolean PRIMARY KEY DEFAULT true CHECK (id),
    version  bigint NOT NULL
);
INSERT INTO auth_pg.permission_state (version) VALUES (0);
COMMENT ON TABLE auth_pg.permission_state IS
    'One row, updated by every change of roles: it serializes them and counts them';

CREATE TABLE auth_pg.roles (
    role_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text NOT NULL,
    org_id       text,
    description  text,
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT roles_name_not_empty CHECK (name OPERATOR(pg_catalog.<>) ''),
    CONSTRAINT roles_org_id_not_empty CHECK (org_id OPERATOR(pg_catalog.<>) ''),
    CONSTRAINT roles_name_org_id_key UNIQUE NULLS NOT DISTINCT (name, org_id)
);
COMMENT ON TABLE auth_pg.roles IS
    'Roles, global (org_id NULL) or of one organization; an organization''s role never shares its name with a global role';

CREATE TABLE auth_pg.role_parents (
    role_id    bigint NOT NULL REFERENCES auth_pg.roles ON DELETE CASCADE,
    parent_id  bigint NOT NULL REFERENCES auth_pg.roles ON DELETE CASCADE,
    PRIMARY KEY (role_id, parent_id),
    CONSTRAINT role_parents_not_self CHECK (role_id OPERATOR(pg_catalog.<>) parent_id)
);
CREATE INDEX role_parents_parent_id_idx ON auth_pg.role_parents (parent_id);
COMMENT ON TABLE auth_pg.role_parents IS 'A role inherits every permission of its parents';

CREATE TABLE auth_pg.role_permissions (
    role_id     bigint NOT NULL REFERENCES auth_pg.roles ON DELETE CASCADE,
    permission  text COLLATE "C" NOT NULL,
    PRIMARY KEY (role_id, permission)
);
COMMENT ON TABLE auth_pg.role_permissions IS
    'Permissions granted to a role directly; names like documents:read, documents:* or *';

CREATE TABLE auth_pg.role_assignments (
    user_id     text NOT NULL,
    org_id      text,
    role_id     bigint NOT NULL REFERENCES auth_pg.roles ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT role_assignments_user_id_not_empty CHECK (user_id OPERATOR(pg_catalog.<>) ''),
    CONSTRAINT role_assignments_org_id_not_empty CHECK (org_id OPERATOR(pg_catalog.<>) ''),
    CONSTRAINT role_assignments_key UNIQUE NULLS NOT DISTINCT (user_id, org_id, role_id)
);
CREATE INDEX role_assignments_role_id_idx ON auth_pg.role_assignments (role_id);
COMMENT ON TABLE auth_pg.role_assignments IS
    'Roles held by users in an organization, or everywhere (org_id NULL)';

-- Derived: each role with itself and every ancestor.
CREATE TABLE auth_pg.role_closure (
    role_id      bigint NOT NULL REFERENCES auth_pg.roles ON DELETE CASCADE,
    ancestor_id  bigint NOT NULL REFERENCES auth_pg.roles ON DELETE CASCADE,
    PRIMARY KEY (role_id, ancestor_id)
);
CREATE INDEX role_closure_ancestor_id_idx ON auth_pg.role_closure (ancestor_id);
COMMENT ON TABLE auth_pg.role_closure IS
    'Derived from roles and role_parents: each role paired with itself and each ancestor';

-- Derived: what a check reads. One row per user and organization the user holds a role in,
-- plus one for the user's global roles (org_id ''); an organization's row includes the global
-- ones. grant_key is user_id, a zero byte, then org_id, as bytes: one hash-index probe finds
-- the row (text cannot hold a zero byte, so no two pairs share a key).
CREATE TABLE auth_pg.user_grants (
    grant_key    bytea NOT NULL,
    user_id      text NOT NULL,
    org_id       text NOT NULL,
    roles        text[] NOT NULL,
    permissions  text[] NOT NULL
);
CREATE INDEX user_grants_grant_key_idx ON auth_pg.user_grants USING hash (grant_key);
CREATE INDEX user_grants_user_id_idx ON auth_pg.user_grants (user_id);
COMMENT ON TABLE auth_pg.user_grants IS
    'Derived from the other permission tables: effective roles and permissions per user and organization (org_id '''' for global), sorted by bytes';

SELECT pg_catalog.pg_extension_config_dump('auth_pg.roles', '');
SELECT pg_catalog.pg_extension_config_dump('auth_pg.roles_role_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('auth_pg.role_parents', '');
SELECT pg_catalog.pg_extension_config_dump('auth_pg.role_permissions', '');
SELECT pg_catalog.pg_extension_config_dump('auth_pg.role_assignments', '');
SELECT pg_catalog.pg_extension_config_dump('auth_pg.role_closure', '');
SELECT pg_catalog.pg_extension_config_dump('auth_pg.user_grants', '');

-- The check, a version-1 C function like the token checks (see tokens.sql): one probe of
-- user_grants by OID, no names resolved at run time.
CREATE FUNCTION auth_pg.has_permission(user_id text, permission text, org_id text DEFAULT NULL)
    RETURNS boolean
    STABLE PARALLEL SAFE
    LANGUAGE c AS 'MODULE_PATHNAME', 'auth_pg_has_permission';
COMMENT ON FUNCTION auth_pg.has_permission(text, text, text) IS
    'Whether the user holds the permission in the organization (NULL: global roles only), directly, by inheritance or by a wildcard. Reads only; one index probe.';

CREATE FUNCTION auth_pg.user_permissions(user_id text, org_id text DEFAULT NULL)
    RETURNS text[]
    STABLE PARALLEL SAFE
    LANGUAGE c AS 'MODULE_PATHNAME', 'auth_pg_user_permissions';
COMMENT ON FUNCTION auth_pg.user_permissions(text, text) IS
    'The user''s effective permissions in the organization (NULL: global roles only), inherited and global ones included: sorted by bytes, distinct, wildcards as granted. One index probe.';

CREATE FUNCTION auth_pg.user_roles(user_id text, org_id text DEFAULT NULL)
    RETURNS text[]
    STABLE PARALLEL SAFE
    LANGUAGE c AS 'MODULE_PATHNAME', 'auth_pg_user_roles';
COMMENT ON FUNCTION auth_pg.user_roles(text, text) IS
    'The user''s effective roles in the organization (NULL: global roles only): held there or everywhere, and their ancestors; sorted by bytes. One index probe.';
