//! Set-up for the permission benchmarks: 100 000 users, 1 000 organizations, 500 roles in
//! chains three parents deep, 2 000 permission names, loaded in bulk into auth_pg's tables and
//! into the five tables an application keeps without it, and the five-way join it runs on
//! every request.
//!
//! The model (the same in both): roles `role-0` to `role-499` in four tiers of 125; a role of
//! tiers 1 to 3 has the role 125 below it as its parent, so the chains are three parents deep.
//! Tiers 0 to 2 are global; tier 3 roles each belong to one organization. Each role is granted
//! eight permissions out of 2 000 (`res0:read` to `res399:export`), and one tier-0 role in ten
//! a family wildcard. Each user holds two roles of tiers 1 to 3, each in an organization, and
//! one user in a hundred also a global role everywhere.
//!
//! The baseline flattens inheritance when it writes (each role's rows hold its ancestors'
//! permissions too), as applications that join do, so that its join answers exactly what
//! auth_pg answers.

use std::sync::Arc;

use auth_client::AuthClient;
use auth_pg_e2e::{Cluster, roles};

use crate::load::Workload;
use crate::{DATABASE, bench_cluster, select_one, warmed_client};

/// The five-way join: a user's permissions in an organization, with `array_agg`.
pub const PLAIN_JOIN: &str = "SELECT array_agg(DISTINCT p.name ORDER BY p.name) \
     FROM bench_plain.users u \
     JOIN bench_plain.user_roles ur ON ur.user_id = u.user_id \
     JOIN bench_plain.roles r ON r.role_id = ur.role_id \
     JOIN bench_plain.role_permissions rp ON rp.role_id = r.role_id \
     JOIN bench_plain.permissions p ON p.permission_id = rp.permission_id \
     WHERE u.user_id = $1 AND (ur.org_id = $2 OR ur.org_id IS NULL)";

/// The bulk load, in order, run as the superuser.
const LOAD: &[&str] = &[
    "INSERT INTO auth_pg.roles (name, org_id) \
     SELECT 'role-' || i, CASE WHEN i >= 375 THEN 'org-' || ((i - 375) * 8) END \
     FROM generate_series(0, 499) AS i ORDER BY i",
    "INSERT INTO auth_pg.role_parents (role_id, parent_id) \
     SELECT c.role_id, p.role_id FROM generate_series(125, 499) AS i \
     JOIN auth_pg.roles c ON c.name = 'role-' || i \
     JOIN auth_pg.roles p ON p.name = 'role-' || (i - 125)",
    "INSERT INTO auth_pg.role_permissions (role_id, permission) \
     SELECT DISTINCT r.role_id, 'res' || ((i * 7 + k * 13) % 400) || ':' || \
            (ARRAY['read', 'write', 'delete', 'share', 'export'])[1 + (i + k) % 5] \
     FROM generate_series(0, 499) AS i CROSS JOIN generate_series(0, 7) AS k \
     JOIN auth_pg.roles r ON r.name = 'role-' || i",
    "INSERT INTO auth_pg.role_permissions (role_id, permission) \
     SELECT r.role_id, 'res' || (i * 3 % 400) || ':*' FROM generate_series(0, 124, 10) AS i \
     JOIN auth_pg.roles r ON r.name = 'role-' || i ON CONFLICT DO NOTHING",
    "CREATE TEMP TABLE picks AS \
     SELECT 'user-' || u AS user_id, a, 125 + ((u * 7919 + a * 104729) % 375) AS j, \
            (u * 31 + a * 17) % 1000 AS org \
     FROM generate_series(0, 99999) AS u CROSS JOIN generate_series(0, 1) AS a",
    "INSERT INTO auth_pg.role_assignments (user_id, org_id, role_id) \
     SELECT DISTINCT p.user_id, \
            'org-' || CASE WHEN p.j >= 375 THEN (p.j - 375) * 8 ELSE p.org END, r.role_id \
     FROM picks p JOIN auth_pg.roles r ON r.name = 'role-' || p.j",
    "INSERT INTO auth_pg.role_assignments (user_id, org_id, role_id) \
     SELECT 'user-' || u, NULL, r.role_id FROM generate_series(0, 99999, 100) AS u \
     JOIN auth_pg.roles r ON r.name = 'role-' || (125 + u % 125)",
    "SELECT auth_pg.rebuild_permissions()",
    // The baseline: five tables, inheritance flattened into role_permissions.
    "CREATE SCHEMA bench_plain",
    "CREATE TABLE bench_plain.users (user_id text PRIMARY KEY)",
    "CREATE TABLE bench_plain.roles (role_id bigint PRIMARY KEY, name text NOT NULL)",
    "CREATE TABLE bench_plain.permissions (permission_id bigint PRIMARY KEY, name text UNIQUE NOT NULL)",
    "CREATE TABLE bench_plain.role_permissions (role_id bigint, permission_id bigint, \
         PRIMARY KEY (role_id, permission_id))",
    "CREATE TABLE bench_plain.user_roles (user_id text, org_id text, role_id bigint)",
    "CREATE INDEX ON bench_plain.user_roles (user_id, org_id)",
    "INSERT INTO bench_plain.users SELECT DISTINCT user_id FROM auth_pg.role_assignments",
    "INSERT INTO bench_plain.roles SELECT role_id, name FROM auth_pg.roles",
    "INSERT INTO bench_plain.permissions \
     SELECT row_number() OVER (ORDER BY permission), permission \
     FROM (SELECT DISTINCT permission FROM auth_pg.role_permissions) AS d",
    "INSERT INTO bench_plain.role_permissions \
     SELECT DISTINCT c.role_id, p.permission_id FROM auth_pg.role_closure c \
     JOIN auth_pg.role_permissions g ON g.role_id = c.ancestor_id \
     JOIN bench_plain.permissions p ON p.name = g.permission",
    "INSERT INTO bench_plain.user_roles SELECT user_id, org_id, role_id FROM auth_pg.role_assignments",
    "GRANT USAGE ON SCHEMA bench_plain TO app_validator",
    "GRANT SELECT ON ALL TABLES IN SCHEMA bench_plain TO app_validator",
    "VACUUM ANALYZE",
    "CREATE EXTENSION pg_prewarm",
    "SELECT pg_prewarm(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname IN ('auth_pg', 'bench_plain') AND c.relkind IN ('r', 'i')",
];

/// One request's question: a user, an organization the user holds a role in, and one of the
/// permissions the user holds there.
#[derive(Clone, Debug)]
pub struct Question {
    /// The user.
    pub user_id: String,
    /// The organization.
    pub org_id: String,
    /// A permission held there (exactly as granted: a name, or a family wildcard).
    pub held: String,
}

/// A cluster holding the model twice: in auth_pg, and in the baseline's five tables.
pub struct PermissionBench {
    /// The cluster (stopped and removed when this is dropped).
    pub cluster: Cluster,
    /// Every (user, organization) pair with a role, and a permission held there.
    pub questions: Vec<Question>,
}

impl PermissionBench {
    /// Starts a cluster and loads the model.
    pub async fn setup() -> Self {
        let cluster = bench_cluster();
        cluster.create_database(DATABASE);
        let db = cluster.connect(roles::SUPERUSER, DATABASE).await;
        eprintln!("loading 100 000 users, 1 000 organizations, 500 roles...");
        for statement in LOAD {
            db.batch_execute(statement).await.expect(statement);
        }
        let questions = db
            .query(
                "SELECT user_id, org_id, permissions[1 + abs(hashtext(user_id)) % \
                        array_length(permissions, 1)] \
                 FROM auth_pg.user_grants WHERE org_id <> '' AND cardinality(permissions) > 0",
                &[],
            )
            .await
            .expect("questions")
            .iter()
            .map(|row| Question {
                user_id: row.get(0),
                org_id: row.get(1),
                held: row.get(2),
            })
            .collect();
        Self { cluster, questions }
    }

    /// A client as `role` with `pool_size` connections, all opened and statements prepared.
    pub async fn client(&self, role: &str, pool_size: usize) -> AuthClient {
        // Only a validator can run the checks; another role's connections are opened by a
        // ping alone.
        let (rounds, question) = if role == roles::VALIDATOR {
            (20, Some(self.questions[0].clone()))
        } else {
            (1, None)
        };
        warmed_client(
            &self.cluster,
            role,
            DATABASE,
            pool_size,
            rounds,
            move |client| {
                let question = question.clone();
                async move {
                    if let Some(q) = question {
                        ask(&client, &q).await;
                        list(&client, &q).await;
                        join(&client, &q).await;
                    }
                }
            },
        )
        .await
    }
}

async fn ask(client: &AuthClient, q: &Question) {
    // A held wildcard is asked about as a member of its family.
    let wanted = q.held.replace('*', "any");
    let held = client
        .has_permission(&q.user_id, &wanted, Some(&q.org_id))
        .await
        .expect("has_permission");
    assert!(held, "{} holds {} in {}", q.user_id, q.held, q.org_id);
}

async fn list(client: &AuthClient, q: &Question) {
    let permissions = client
        .user_permissions(&q.user_id, Some(&q.org_id))
        .await
        .expect("user_permissions");
    assert!(permissions.contains(&q.held));
}

async fn join(client: &AuthClient, q: &Question) {
    let connection = client.pool().get().await.expect("connection");
    let statement = connection
        .prepare_cached(PLAIN_JOIN)
        .await
        .expect("prepare");
    let row = connection
        .query_one(&statement, &[&q.user_id, &q.org_id])
        .await
        .expect("join");
    let permissions: Vec<String> = row.get(0);
    assert!(permissions.contains(&q.held));
}

/// The permission workloads, `SELECT 1` first: the five-way join, `user_permissions`,
/// `has_permission`, each for a random (user, organization) pair that has a role.
pub fn workloads(client: &AuthClient, questions: &[Question]) -> Vec<Workload> {
    let questions = Arc::new(questions.to_vec());
    let mut workloads = vec![select_one(client)];
    #[derive(Clone, Copy)]
    enum Call {
        Join,
        List,
        Ask,
    }
    for (name, call) in [
        ("five-way join with `array_agg`", Call::Join),
        ("`user_permissions`", Call::List),
        ("`has_permission`", Call::Ask),
    ] {
        let (client, questions) = (client.clone(), questions.clone());
        workloads.push(Workload::new(name, move |_, random| {
            let (client, q) = (client.clone(), questions[random % questions.len()].clone());
            async move {
                match call {
                    Call::Join => join(&client, &q).await,
                    Call::List => list(&client, &q).await,
                    Call::Ask => ask(&client, &q).await,
                }
            }
        }));
    }
    workloads
}
