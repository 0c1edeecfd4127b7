-- Sessions from SQL. Session tokens are random, so they are captured with \gset and never
-- printed.
SET ROLE app_admin;
SELECT auth_pg.create_session('user-42', '30 minutes', '12 hours',
                              '{"ip": "203.0.113.7", "user_agent": "curl/8"}') AS session \gset
SELECT length(:'session') AS length, left(:'session', 5) AS prefix;

-- The application checks, and touches on every request.
SET ROLE app_validator;
SELECT status, user_id, left(session_id, 4) AS id_prefix,
       idle_expires_at - now() BETWEEN '29 minutes' AND '30 minutes' AS idle_in_30_minutes,
       absolute_expires_at - now() BETWEEN '11 hours 59 minutes' AND '12 hours' AS absolute_in_12_hours,
       metadata
FROM auth_pg.validate_session(:'session');
SELECT (auth_pg.touch_session(:'session')).status;
-- Not session tokens: malformed, never an error.
SELECT (auth_pg.validate_session(NULL)).status AS null_token,
       (auth_pg.validate_session('')).status AS empty,
       (auth_pg.validate_session(repeat('x', 1024 * 1024))).status AS one_megabyte,
       (auth_pg.validate_session('apgt_' || substr(:'session', 6))).status AS a_token;

-- Listing shows no secret; revoking by id is announced and audited.
SET ROLE app_admin;
SELECT status, revoked_at IS NULL AS in_force, metadata->>'ip' AS ip
FROM auth_pg.list_user_sessions('user-42');
SELECT auth_pg.revoke_session_by_id(session_id) FROM auth_pg.list_user_sessions('user-42');
SELECT status FROM auth_pg.validate_session(:'session');
SELECT auth_pg.revoke_user_sessions('user-42') AS still_in_force;

-- Wrong arguments: a specific SQLSTATE and a hint, and nothing stored.
\set VERBOSITY default
SELECT auth_pg.create_session(NULL, '30 minutes', '12 hours');
SELECT auth_pg.create_session('user-42', '0 seconds', '12 hours');
SELECT auth_pg.create_session('user-42', '13 hours', '12 hours');
SELECT auth_pg.create_session('user-42', '30 minutes', '1000 years');
SELECT auth_pg.create_session('user-42', '30 minutes', '12 hours', '[1, 2]');
SELECT auth_pg.cleanup_expired_sessions(0);
\set VERBOSITY terse
SELECT count(*) AS sessions_of_user_42 FROM auth_pg.list_user_sessions('user-42');

-- At the per-user limit, refuse.
RESET ROLE;
SET auth_pg.max_sessions_per_user = 1;
SET auth_pg.session_limit_action = 'refuse';
SET ROLE app_admin;
SELECT auth_pg.create_session('user-7', '30 minutes', '12 hours') IS NOT NULL AS created;
\set VERBOSITY default
SELECT auth_pg.create_session('user-7', '30 minutes', '12 hours');
\set VERBOSITY terse
RESET ROLE;
RESET auth_pg.max_sessions_per_user;
RESET auth_pg.session_limit_action;
