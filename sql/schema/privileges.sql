-- auth_pg: who may do what. Runs after every other object is created.
--
-- Nothing is open to PUBLIC. auth_pg_validator may check credentials; auth_pg_admin may also
-- issue and revoke them and read the audit trail. Grant these roles to your application's
-- login roles: GRANT auth_pg_validator TO my_api;

REVOKE ALL ON SCHEMA auth_pg FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA auth_pg FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA auth_pg FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA auth_pg FROM PUBLIC;

GRANT USAGE ON SCHEMA auth_pg TO auth_pg_validator, auth_pg_admin;
GRANT auth_pg_validator TO auth_pg_admin;

-- Checks.
GRANT EXECUTE ON FUNCTION
    auth_pg.validate_token(text),
    auth_pg.validate_token_packed(text),
    auth_pg.validate_tokens(text[]),
    auth_pg.validate_api_key(text),
    auth_pg.validate_api_key_packed(text),
    auth_pg.validate_api_keys(text[]),
    auth_pg.validate_session(text),
    auth_pg.validate_session_packed(text),
    auth_pg.touch_session(text),
    auth_pg.touch_session_packed(text),
    auth_pg.has_permission(text, text, text),
    auth_pg.has_permissions(text, text[], text, boolean),
    auth_pg.user_permissions(text, text),
    auth_pg.user_roles(text, text),
    auth_pg.jwt_verify(text),
    auth_pg.jwt_verify(text, text, text, text, text),
    auth_pg.authenticate(text),
    auth_pg.claims(),
    auth_pg.uid()
TO auth_pg_validator;

-- Administration.
GRANT EXECUTE ON FUNCTION
    auth_pg.issue_token(text, interval, text[], jsonb),
    auth_pg.revoke_token(text),
    auth_pg.revoke_user_tokens(text),
    auth_pg.create_organization(text, text),
    auth_pg.delete_organization(text),
    auth_pg.create_api_key(text, text, text[], timestamptz, jsonb),
    auth_pg.revoke_api_key(text, text),
    auth_pg.rotate_api_key(text, text, interval),
    auth_pg.list_api_keys(text),
    auth_pg.flush_api_key_usage(),
    auth_pg.create_session(text, interval, interval, jsonb),
    auth_pg.revoke_session(text),
    auth_pg.revoke_session_by_id(text),
    auth_pg.revoke_user_sessions(text),
    auth_pg.list_user_sessions(text),
    auth_pg.cleanup_expired_sessions(integer),
    auth_pg.create_role(text, text, text),
    auth_pg.delete_role(text, text),
    auth_pg.add_role_parent(text, text, text),
    auth_pg.remove_role_parent(text, text, text),
    auth_pg.grant_permission(text, text, text),
    auth_pg.revoke_permission(text, text, text),
    auth_pg.assign_role(text, text, text),
    auth_pg.unassign_role(text, text, text),
    auth_pg.rebuild_permissions(),
    auth_pg.add_jwt_key(text, text, text, text, text, timestamptz, timestamptz),
    auth_pg.import_jwks(jsonb, text, text),
    auth_pg.retire_jwt_key(text),
    auth_pg.list_jwt_keys(),
    auth_pg.jwt_sign(jsonb, text)
TO auth_pg_admin;
GRANT SELECT ON auth_pg.audit_events TO auth_pg_admin;
-- Roles are read directly; they are changed only through the functions above, which keep the
-- derived tables (role_closure, user_grants) exact.
GRANT SELECT ON auth_pg.roles, auth_pg.role_parents, auth_pg.role_permissions, auth_pg.role_assignments
TO auth_pg_admin;
-- auth_pg.jwt_keys holds key material: no role but its owner reads it. list_jwt_keys shows the
-- rest, and the public part of public keys.
