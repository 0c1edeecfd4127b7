-- Opaque tokens from SQL, the way any language uses them. Tokens are random, so they are
-- captured with \gset and never printed.
SET ROLE app_admin;
SELECT auth_pg.issue_token('user-42', '1 hour', '{orders:read,orders:write,orders:read}',
                           '{"device": "laptop"}') AS token \gset
SELECT length(:'token') AS length, left(:'token', 5) AS prefix;

-- A valid token: who, what, until when.
SET ROLE app_validator;
SELECT status, token_id, user_id, scopes, expires_at > now() AS expires_later, metadata
FROM auth_pg.validate_token(:'token');
-- The same answer as one composite value, as clients fetch it.
SELECT (auth_pg.validate_token(:'token')).status;

-- Many at once, in order; NULL and garbage are malformed, not errors.
SELECT ordinality, status, user_id
FROM auth_pg.validate_tokens(ARRAY[:'token', NULL, 'garbage', :'token']) WITH ORDINALITY;
SELECT count(*) FROM auth_pg.validate_tokens(NULL);

-- Not tokens: every one is malformed, decided before any table access.
SELECT input, (auth_pg.validate_token(candidate)).status
FROM (VALUES
    ('NULL', NULL),
    ('empty', ''),
    ('one megabyte', repeat('x', 1024 * 1024)),
    ('quotes and semicolons', $q$'; DROP TABLE auth_pg.tokens; --$q$),
    ('one character changed', overlay(:'token' placing
        CASE WHEN substr(:'token', 11, 1) = 'a' THEN 'b' ELSE 'a' END from 11 for 1)),
    ('truncated', left(:'token', 53)),
    ('another kind', 'apgk_' || substr(:'token', 6))
) AS t(input, candidate);

-- Revocation: true once, then false; the token now reads as revoked.
SET ROLE app_admin;
SELECT auth_pg.revoke_token(:'token') AS revoked, auth_pg.revoke_token(:'token') AS again;
SELECT status, user_id FROM auth_pg.validate_token(:'token');
SELECT auth_pg.revoke_token('not a token') AS revoked, auth_pg.revoke_token(NULL) AS revoked_null;

-- Every token of a user.
SELECT auth_pg.issue_token('user-7', '1 day') IS NOT NULL AS issued;
SELECT auth_pg.issue_token('user-7', '1 day') IS NOT NULL AS issued;
SELECT auth_pg.revoke_user_tokens('user-7') AS revoked, auth_pg.revoke_user_tokens('user-7') AS again;

-- The audit trail: acts, ids and roles, never a token.
SELECT action, actor, user_id, subject_id, detail FROM auth_pg.audit_events ORDER BY event_id;

-- Misuse is an ERROR with a hint; nothing is stored.
SELECT auth_pg.issue_token(NULL, '1 hour');
SELECT auth_pg.issue_token('', '1 hour');
SELECT auth_pg.issue_token('user-1', '0 seconds');
SELECT auth_pg.issue_token('user-1', '-5 minutes');
SELECT auth_pg.issue_token('user-1', '100 years');
SELECT auth_pg.issue_token('user-1', '1 hour', '{"read write"}');
SELECT auth_pg.issue_token('user-1', '1 hour', '{read,NULL}');
SELECT auth_pg.issue_token('user-1', '1 hour', '{}', '"just a string"');
SELECT auth_pg.revoke_user_tokens('');
RESET ROLE;
SELECT count(*) AS tokens FROM auth_pg.tokens;
