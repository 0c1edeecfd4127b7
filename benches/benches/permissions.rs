//! Criterion benchmarks of permissions through auth_client, with 100 000 users, 1 000
//! organizations, 500 roles three parents deep and 2 000 permissions: `has_permission` and
//! `user_permissions` beside `SELECT 1` and the five-way join with `array_agg`, one caller and
//! eight; then the cost of one role change of each kind at that size.
//!
//! `cargo bench -p auth_pg_benches --bench permissions` (scripts/bench.sh installs what it
//! needs).

use auth_pg_benches::criterion_groups::{bench_workloads, runtime};
use auth_pg_benches::permissions::{PermissionBench, workloads};
use auth_pg_e2e::roles;
use criterion::{Criterion, criterion_group, criterion_main};

fn benches(c: &mut Criterion) {
    let runtime = runtime();
    let bench = runtime.block_on(PermissionBench::setup());
    let client = runtime.block_on(bench.client(roles::VALIDATOR, 8));
    let workloads = workloads(&client, &bench.questions);
    bench_workloads(c, &runtime, "permissions_100k_users", &workloads, &[1, 8]);

    // Changes, one at a time, each undone by the next call so that every iteration does the
    // same work. role-0 is an ancestor of role-125, role-250 and role-375; role-130 is held,
    // with its children, by about as many users.
    let admin = runtime.block_on(bench.client(roles::ADMIN, 1));
    let holders = bench.cluster.psql(
        "bench",
        "SELECT count(DISTINCT ur.user_id) FROM auth_pg.role_assignments ur \
         JOIN auth_pg.role_closure c ON c.role_id = ur.role_id \
         JOIN auth_pg.roles r ON r.role_id = c.ancestor_id WHERE r.name = 'role-0'",
    );
    eprintln!("role-0 is held, directly or by inheritance, by {holders} users");
    let mut group = c.benchmark_group("permissions_100k_users/changes");
    group.sample_size(20);
    // Each benchmark alternates from the state the load left.
    let mut flip = false;
    group.bench_function("assign_role or unassign_role (one user)", |b| {
        b.to_async(&runtime).iter(|| {
            flip = !flip;
            let (admin, assign) = (admin.clone(), flip);
            async move {
                let changed = if assign {
                    admin.assign_role("user-7", "role-200", Some("org-3")).await
                } else {
                    admin
                        .unassign_role("user-7", "role-200", Some("org-3"))
                        .await
                };
                assert!(changed.expect("change"));
            }
        })
    });
    flip = false;
    group.bench_function(
        format!("grant_permission or revoke_permission ({holders} holders)"),
        |b| {
            b.to_async(&runtime).iter(|| {
                flip = !flip;
                let (admin, grant) = (admin.clone(), flip);
                async move {
                    let changed = if grant {
                        admin.grant_permission("role-0", "audit:read", None).await
                    } else {
                        admin.revoke_permission("role-0", "audit:read", None).await
                    };
                    assert!(changed.expect("change"));
                }
            })
        },
    );
    flip = false;
    group.bench_function("add_role_parent or remove_role_parent (role-130)", |b| {
        b.to_async(&runtime).iter(|| {
            flip = !flip;
            let (admin, add) = (admin.clone(), flip);
            async move {
                let changed = if add {
                    admin.add_role_parent("role-130", "role-1", None).await
                } else {
                    admin.remove_role_parent("role-130", "role-1", None).await
                };
                assert!(changed.expect("change"));
            }
        })
    });
    group.finish();
    drop(bench);
}

criterion_group!(permissions, benches);
criterion_main!(permissions);
