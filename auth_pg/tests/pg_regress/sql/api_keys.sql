-- Organizations and their API keys from SQL. Keys are random, so they are captured with \gset
-- and never printed; ids are random too, and shown only as whether they match.
SET ROLE app_admin;
SELECT auth_pg.create_organization('acme', 'Acme Inc');
SELECT auth_pg.create_organization('globex', 'Globex');
SELECT key AS ci_key, key_id AS ci_id
FROM auth_pg.create_api_key('acme', 'CI deploys', '{deploy,read}', NULL, '{"team": "platform"}') \gset
SELECT key AS batch_key, key_id AS batch_id
FROM auth_pg.create_api_key('acme', 'Nightly batch', '{read}', now() + interval '30 days') \gset
SELECT key AS globex_key FROM auth_pg.create_api_key('globex', 'Reporting') \gset
SELECT left(:'ci_key', 5) AS prefix, length(:'ci_key') AS length, left(:'ci_id', 4) AS id_prefix;

-- Checking a key: the organization, the key and what it may do.
SET ROLE app_validator;
SELECT status, org_id, key_id = :'ci_id' AS right_key, name, scopes, expires_at, metadata
FROM auth_pg.validate_api_key(:'ci_key');
SELECT status, org_id, name, expires_at > now() AS expires_later
FROM auth_pg.validate_api_key(:'batch_key');
SELECT ordinality, status, org_id
FROM auth_pg.validate_api_keys(ARRAY[:'ci_key', NULL, :'globex_key', 'apgk_forged']) WITH ORDINALITY;

-- Not keys: malformed before any table is read; a token is not a key.
SELECT input, (auth_pg.validate_api_key(candidate)).status
FROM (VALUES
    ('NULL', NULL),
    ('empty', ''),
    ('one megabyte', repeat('k', 1024 * 1024)),
    ('quotes and semicolons', $q$'; DROP TABLE auth_pg.organizations; --$q$),
    ('a token', 'apgt_' || substr(:'ci_key', 6)),
    ('truncated', left(:'ci_key', 53))
) AS t(input, candidate);

-- Listing: everything but the keys and their hashes.
SET ROLE app_admin;
SELECT key_id = :'ci_id' AS ci, left(prefix, 5) AS prefix, length(prefix) AS prefix_length,
       name, scopes, metadata, expires_at IS NOT NULL AS expires, revoked_at, status
FROM auth_pg.list_api_keys('acme');

-- Rotation: a new key with the same name and scopes; the old one lasts for the grace period.
SELECT key AS new_ci_key, key_id AS new_ci_id FROM auth_pg.rotate_api_key('acme', :'ci_id', '1 hour') \gset
SET ROLE app_validator;
SELECT status, name, scopes, expires_at IS NULL AS no_expiry FROM auth_pg.validate_api_key(:'new_ci_key');
SELECT status, expires_at BETWEEN now() + interval '59 minutes' AND now() + interval '61 minutes' AS grace
FROM auth_pg.validate_api_key(:'ci_key');

-- Revocation is immediate.
SET ROLE app_admin;
SELECT auth_pg.revoke_api_key('acme', :'new_ci_id') AS revoked,
       auth_pg.revoke_api_key('acme', :'new_ci_id') AS again,
       auth_pg.revoke_api_key('acme', 'key_nonexistent') AS unknown_key,
       auth_pg.revoke_api_key('nobody', :'new_ci_id') AS unknown_organization;
SELECT status FROM auth_pg.validate_api_key(:'new_ci_key');
SELECT name, status FROM auth_pg.list_api_keys('acme');

-- Misuse is an ERROR with a hint; nothing is stored.
SELECT auth_pg.create_organization('acme', 'Again');
SELECT auth_pg.create_organization('', 'Empty');
SELECT auth_pg.create_api_key('nobody', 'Orphan');
SELECT auth_pg.create_api_key('acme', '');
SELECT auth_pg.create_api_key('acme', 'Stale', '{}', now() - interval '1 day');
SELECT auth_pg.create_api_key('acme', 'Spaced', '{"read all"}');
SELECT auth_pg.create_api_key('acme', 'Listy', '{}', NULL, '[1, 2]');
SELECT auth_pg.rotate_api_key('acme', :'new_ci_id', '1 hour');
SELECT auth_pg.rotate_api_key('acme', 'key_nonexistent', '1 hour');
SELECT auth_pg.rotate_api_key('acme', :'batch_id', '-1 hour');
SELECT * FROM auth_pg.list_api_keys('nobody');
RESET ROLE;
SELECT org_id, count(*) FROM auth_pg.api_key_lookup GROUP BY org_id ORDER BY org_id;

-- The document holds the same keys, as applications model them (hashes, never keys).
SELECT e->>'name' AS name, length(e->>'hash') AS hash_length, e ? 'revoked_at' AS has_revoked_at,
       (e->>'revoked_at') IS NOT NULL AS revoked
FROM auth_pg.organizations, jsonb_array_elements(api_keys) e WHERE org_id = 'acme';
SELECT count(*) AS documents_holding_a_key FROM auth_pg.organizations
WHERE api_keys::text LIKE '%' || substr(:'batch_key', 6) || '%';

-- A hand edit is checked, then followed: removing the batch key's element removes the key.
UPDATE auth_pg.organizations SET api_keys = '[{"id": "k1"}]' WHERE org_id = 'acme';
\set VERBOSITY terse
UPDATE auth_pg.organizations SET api_keys = '"not an array"' WHERE org_id = 'acme';
\set VERBOSITY default
UPDATE auth_pg.organizations
SET api_keys = (SELECT jsonb_agg(e) FROM jsonb_array_elements(api_keys) e WHERE e->>'name' <> 'Nightly batch')
WHERE org_id = 'acme';
SELECT status FROM auth_pg.validate_api_key(:'batch_key');
SELECT name, status FROM auth_pg.list_api_keys('acme');

-- A key is found by its hash through the hash index, whatever the organization's size.
EXPLAIN (COSTS OFF) SELECT org_id FROM auth_pg.api_key_lookup WHERE key_hash = '\x00'::bytea;

-- Deleting an organization removes its keys.
SET ROLE app_admin;
SELECT auth_pg.delete_organization('globex') AS deleted, auth_pg.delete_organization('globex') AS again;
SELECT status FROM auth_pg.validate_api_key(:'globex_key');
SELECT action, org_id, detail - 'new_key_id' - 'grace_ends_at' AS detail,
       detail ? 'new_key_id' AND detail ? 'grace_ends_at' AS names_new_key_and_grace
FROM auth_pg.audit_events
WHERE action LIKE 'api_key%' OR action LIKE 'organization%' ORDER BY event_id;
RESET ROLE;
