-- Runs first, in a fresh database. Roles are cluster-wide; the test runner may have made them.
CREATE EXTENSION auth_pg;
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_admin') THEN
        CREATE ROLE app_admin LOGIN IN ROLE auth_pg_admin;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_validator') THEN
        CREATE ROLE app_validator LOGIN IN ROLE auth_pg_validator;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_nobody') THEN
        CREATE ROLE app_nobody LOGIN;
    END IF;
END
$$;
