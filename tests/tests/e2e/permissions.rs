//! Permissions through auth_client: an admin in one organization who is a member in another,
//! who may change what, what changes announce, and role changes racing each other and the
//! checks while every snapshot stays exact.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use auth_client::reexports::tokio_postgres::error::SqlState;
use auth_client::reexports::tokio_postgres::{self, IsolationLevel};
use auth_core::Invalidation;
use auth_pg_e2e::{TestDb, roles};

#[tokio::test]
async fn admin_in_one_organization_member_in_another() {
    let db = TestDb::new("permissions_orgs");
    let admin = db.client(roles::ADMIN);
    let app = db.client(roles::VALIDATOR);
    let mut events = db.listen(roles::NOBODY).await;

    admin
        .create_role("member", None, Some("Reads"))
        .await
        .expect("create");
    admin
        .create_role("admin", Some("acme"), None)
        .await
        .expect("create");
    assert!(
        admin
            .add_role_parent("admin", "member", Some("acme"))
            .await
            .expect("parent")
    );
    assert!(
        admin
            .grant_permission("member", "documents:read", None)
            .await
            .expect("grant")
    );
    assert!(
        admin
            .grant_permission("admin", "documents:*", Some("acme"))
            .await
            .expect("grant")
    );
    assert!(
        admin
            .assign_role("ada", "admin", Some("acme"))
            .await
            .expect("assign")
    );
    assert!(
        admin
            .assign_role("ada", "member", Some("globex"))
            .await
            .expect("assign")
    );
    for expected in [
        // Created: no one holds them yet, but every change is announced.
        Invalidation::RoleChanged {
            role: "member".into(),
            org_id: None,
        },
        Invalidation::RoleChanged {
            role: "admin".into(),
            org_id: Some("acme".into()),
        },
        Invalidation::RoleChanged {
            role: "admin".into(),
            org_id: Some("acme".into()),
        },
        Invalidation::RoleChanged {
            role: "member".into(),
            org_id: None,
        },
        Invalidation::RoleChanged {
            role: "admin".into(),
            org_id: Some("acme".into()),
        },
        Invalidation::UserRolesChanged {
            user_id: "ada".into(),
            org_id: Some("acme".into()),
        },
        Invalidation::UserRolesChanged {
            user_id: "ada".into(),
            org_id: Some("globex".into()),
        },
    ] {
        assert_eq!(events.next().await, expected);
    }

    assert!(
        app.has_permission("ada", "documents:delete", Some("acme"))
            .await
            .expect("check")
    );
    assert!(
        !app.has_permission("ada", "documents:delete", Some("globex"))
            .await
            .expect("check")
    );
    assert!(
        app.has_permission("ada", "documents:read", Some("globex"))
            .await
            .expect("check")
    );
    assert!(
        !app.has_permission("ada", "documents:read", None)
            .await
            .expect("check")
    );
    assert_eq!(
        app.user_permissions("ada", Some("acme"))
            .await
            .expect("list"),
        ["documents:*", "documents:read"]
    );
    assert_eq!(
        app.user_roles("ada", Some("acme")).await.expect("list"),
        ["admin", "member"]
    );
    assert_eq!(
        app.user_roles("ada", Some("globex")).await.expect("list"),
        ["member"]
    );
    assert!(
        app.user_permissions("nobody", Some("acme"))
            .await
            .expect("list")
            .is_empty()
    );
    assert!(
        app.has_permissions(
            "ada",
            &["documents:read", "documents:write"],
            Some("acme"),
            true
        )
        .await
        .expect("check")
    );
    assert!(
        !app.has_permissions(
            "ada",
            &["documents:read", "documents:write"],
            Some("globex"),
            true
        )
        .await
        .expect("check")
    );

    // A cycle, a clash of names and a bad permission: specific SQLSTATEs.
    let cycle = admin
        .add_role_parent("member", "admin", None)
        .await
        .expect_err("member is global: admin of acme is not visible to it");
    assert_eq!(cycle.code(), Some(&SqlState::UNDEFINED_OBJECT));
    admin
        .create_role("owner", Some("acme"), None)
        .await
        .expect("create");
    admin
        .add_role_parent("owner", "admin", Some("acme"))
        .await
        .expect("parent");
    let cycle = admin
        .add_role_parent("admin", "owner", Some("acme"))
        .await
        .expect_err("owner inherits from admin");
    assert_eq!(cycle.code(), Some(&SqlState::INVALID_GRANT_OPERATION));
    let clash = admin
        .create_role("member", Some("acme"), None)
        .await
        .expect_err("clash");
    assert_eq!(clash.code(), Some(&SqlState::DUPLICATE_OBJECT));
    let bad = app
        .has_permission("ada", "documents:*:read", Some("acme"))
        .await
        .expect_err("bad");
    assert_eq!(bad.code(), Some(&SqlState::INVALID_PARAMETER_VALUE));

    // The validator may ask, not change; a role with neither may not even ask.
    let refused = app
        .assign_role("mallory", "admin", Some("acme"))
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    let nobody = db.client(roles::NOBODY);
    let refused = nobody
        .has_permission("ada", "documents:read", None)
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
}

/// The roles, parents, grants and assignments of one snapshot, and what auth_pg answered in it.
struct Snapshot {
    roles: HashMap<i64, String>,
    parents: HashMap<i64, Vec<i64>>,
    grants: HashMap<i64, BTreeSet<String>>,
    assignments: Vec<(String, Option<String>, i64)>,
}

impl Snapshot {
    /// The effective (roles, permissions) of `user` in `org`, computed from the base tables
    /// the plain way: the assigned roles there and everywhere, walked up to every ancestor.
    fn truth(&self, user: &str, org: Option<&str>) -> (Vec<String>, Vec<String>) {
        let mut pending: Vec<i64> = self
            .assignments
            .iter()
            .filter(|(u, o, _)| u == user && (o.is_none() || o.as_deref() == org))
            .map(|(_, _, role)| *role)
            .collect();
        let mut seen = BTreeSet::new();
        while let Some(role) = pending.pop() {
            if seen.insert(role) {
                pending.extend(self.parents.get(&role).into_iter().flatten());
            }
        }
        let roles: BTreeSet<String> = seen.iter().map(|r| self.roles[r].clone()).collect();
        let permissions: BTreeSet<String> = seen
            .iter()
            .flat_map(|r| self.grants.get(r).into_iter().flatten().cloned())
            .collect();
        (
            roles.into_iter().collect(),
            permissions.into_iter().collect(),
        )
    }
}

const USERS: &[&str] = &["u0", "u1", "u2", "u3", "u4", "u5"];
const ORGS: &[Option<&str>] = &[Some("o1"), Some("o2"), Some("o3"), None];
const GLOBAL_ROLES: &[&str] = &["g0", "g1", "g2", "g3", "g4"];
const PERMISSIONS: &[&str] = &["p:0", "p:1", "p:2", "q:0", "q:*", "*"];

/// Reads one snapshot and checks every answer in it against the plain computation.
async fn check_one_snapshot(client: &mut tokio_postgres::Client) -> usize {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .expect("begin");
    let mut snapshot = Snapshot {
        roles: HashMap::new(),
        parents: HashMap::new(),
        grants: HashMap::new(),
        assignments: Vec::new(),
    };
    for row in tx
        .query("SELECT role_id, name FROM auth_pg.roles", &[])
        .await
        .expect("roles")
    {
        snapshot.roles.insert(row.get(0), row.get(1));
    }
    for row in tx
        .query("SELECT role_id, parent_id FROM auth_pg.role_parents", &[])
        .await
        .expect("parents")
    {
        snapshot
            .parents
            .entry(row.get(0))
            .or_default()
            .push(row.get(1));
    }
    for row in tx
        .query(
            "SELECT role_id, permission FROM auth_pg.role_permissions",
            &[],
        )
        .await
        .expect("grants")
    {
        snapshot
            .grants
            .entry(row.get(0))
            .or_default()
            .insert(row.get(1));
    }
    for row in tx
        .query(
            "SELECT user_id, org_id, role_id FROM auth_pg.role_assignments",
            &[],
        )
        .await
        .expect("assignments")
    {
        snapshot
            .assignments
            .push((row.get(0), row.get(1), row.get(2)));
    }
    let listed = tx
        .prepare("SELECT auth_pg.user_roles($1, $2), auth_pg.user_permissions($1, $2)")
        .await
        .expect("prepare");
    let has = tx
        .prepare("SELECT auth_pg.has_permission($1, $2, $3)")
        .await
        .expect("prepare");
    let mut checked = 0;
    for user in USERS {
        for org in ORGS {
            let (roles, permissions) = snapshot.truth(user, *org);
            let row = tx.query_one(&listed, &[user, org]).await.expect("listed");
            let answered: (Vec<String>, Vec<String>) = (row.get(0), row.get(1));
            assert_eq!(answered, (roles, permissions.clone()), "{user} in {org:?}");
            for wanted in ["p:0", "p:2", "q:0", "q:7", "r:0"] {
                let held: bool = tx
                    .query_one(&has, &[user, &wanted, org])
                    .await
                    .expect("has")
                    .get(0);
                let expected = auth_core::permissions::covers(&permissions, wanted.as_bytes());
                assert_eq!(held, expected, "{user} {wanted} in {org:?}");
                checked += 1;
            }
        }
    }
    tx.commit().await.expect("commit");
    checked
}

/// A small deterministic generator (xorshift64*), so that a failure can be replayed.
struct Dice(u64);

impl Dice {
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let n = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33;
        &items[usize::try_from(n).expect("fits") % items.len()]
    }
}

#[tokio::test]
async fn role_changes_race_checks_and_every_snapshot_stays_exact() {
    let db = TestDb::new("permissions_race");
    let admin = db.client(roles::ADMIN);
    for role in GLOBAL_ROLES {
        admin.create_role(role, None, None).await.expect("create");
    }
    admin
        .create_role("a1", Some("o1"), None)
        .await
        .expect("create");
    admin
        .create_role("a2", Some("o2"), None)
        .await
        .expect("create");

    let writing = Arc::new(AtomicBool::new(true));
    let reader = {
        let writing = writing.clone();
        let mut client = db.connect(roles::SUPERUSER).await;
        tokio::spawn(async move {
            let mut snapshots = 0;
            while writing.load(Ordering::Relaxed) {
                check_one_snapshot(&mut client).await;
                snapshots += 1;
            }
            snapshots
        })
    };

    let mut writers = Vec::new();
    for seed in 1..=4u64 {
        let admin = db.client(roles::ADMIN);
        writers.push(tokio::spawn(async move {
            let mut dice = Dice(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut cycles_refused = 0;
            for _ in 0..120 {
                let (role, org) = *dice.pick(&[
                    ("g0", None),
                    ("g1", None),
                    ("g2", None),
                    ("g3", None),
                    ("g4", None),
                    ("a1", Some("o1")),
                    ("a2", Some("o2")),
                ]);
                let permission = *dice.pick(PERMISSIONS);
                let user = *dice.pick(USERS);
                let parent = *dice.pick(GLOBAL_ROLES);
                let result = match dice.pick(&[0, 1, 2, 3, 4, 5, 6, 7]) {
                    0 | 1 => admin.grant_permission(role, permission, org).await,
                    2 => admin.revoke_permission(role, permission, org).await,
                    3 => admin.add_role_parent(role, parent, org).await,
                    4 => admin.remove_role_parent(role, parent, org).await,
                    5 | 6 => admin.assign_role(user, role, org).await,
                    _ => admin.unassign_role(user, role, org).await,
                };
                match result {
                    Ok(_) => {}
                    Err(err) if err.code() == Some(&SqlState::INVALID_GRANT_OPERATION) => {
                        cycles_refused += 1;
                    }
                    Err(err) => panic!("unexpected error: {err}"),
                }
            }
            cycles_refused
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    writing.store(false, Ordering::Relaxed);
    let snapshots = reader.await.expect("reader");
    assert!(snapshots > 0, "the checks ran while roles changed");

    // And once everything has settled.
    let mut client = db.connect(roles::SUPERUSER).await;
    let checked = check_one_snapshot(&mut client).await;
    assert_eq!(checked, USERS.len() * ORGS.len() * 5);
}
