//! `#[pg_test]`s for permissions: inheritance, wildcards, organizations, what a change leaves in
//! the derived tables, bad input, and the table layout the direct index reads rely on.

#[pgrx::pg_schema]
mod tests {
    use pgrx::datum::DatumWithOid;
    use pgrx::prelude::*;
    use pgrx::{PgSqlErrorCode, Spi};

    use crate::permissions::col;
    use crate::tests::sqlstate_of;

    fn run(sql: &str) {
        Spi::run(sql).expect("SPI");
    }

    fn has(user_id: Option<&str>, permission: &str, org_id: Option<&str>) -> bool {
        let args: [DatumWithOid; 3] = [user_id.into(), permission.into(), org_id.into()];
        Spi::get_one_with_args::<bool>("SELECT auth_pg.has_permission($1, $2, $3)", &args)
            .expect("has_permission")
            .expect("never NULL")
    }

    fn listed(function: &str, user_id: &str, org_id: Option<&str>) -> Vec<String> {
        let args: [DatumWithOid; 2] = [user_id.into(), org_id.into()];
        Spi::get_one_with_args::<Vec<String>>(&format!("SELECT auth_pg.{function}($1, $2)"), &args)
            .expect("SPI")
            .expect("an array")
    }

    /// viewer <- editor <- org admin (acme), billing:* on the admin, * on a global superuser.
    fn model() {
        run(
            "SELECT auth_pg.create_role('viewer'), auth_pg.create_role('editor'), \
                    auth_pg.create_role('admin', 'acme'), auth_pg.create_role('root')",
        );
        run("SELECT auth_pg.add_role_parent('editor', 'viewer'), \
                    auth_pg.add_role_parent('admin', 'editor', 'acme')");
        run(
            "SELECT auth_pg.grant_permission('viewer', 'documents:read'), \
                    auth_pg.grant_permission('editor', 'documents:write'), \
                    auth_pg.grant_permission('admin', 'billing:*', 'acme'), \
                    auth_pg.grant_permission('root', '*')",
        );
        run("SELECT auth_pg.assign_role('ada', 'admin', 'acme'), \
                    auth_pg.assign_role('ada', 'viewer', 'globex'), \
                    auth_pg.assign_role('bo', 'viewer', NULL)");
    }

    #[pg_test]
    fn admin_in_one_organization_member_in_another() {
        model();
        assert!(has(Some("ada"), "documents:write", Some("acme")));
        assert!(has(Some("ada"), "billing:invoices:export", Some("acme")));
        assert!(!has(Some("ada"), "documents:write", Some("globex")));
        assert!(has(Some("ada"), "documents:read", Some("globex")));
        assert!(!has(Some("ada"), "billing:view", Some("globex")));
        // No organization, or one the user holds nothing in: global roles only (none).
        assert!(!has(Some("ada"), "documents:read", None));
        assert!(!has(Some("ada"), "documents:read", Some("initech")));
        assert_eq!(
            listed("user_permissions", "ada", Some("acme")),
            ["billing:*", "documents:read", "documents:write"]
        );
        assert_eq!(
            listed("user_roles", "ada", Some("acme")),
            ["admin", "editor", "viewer"]
        );
        assert_eq!(listed("user_roles", "ada", Some("globex")), ["viewer"]);
    }

    #[pg_test]
    fn global_roles_hold_everywhere_and_add_to_organizations() {
        model();
        for org in [None, Some("acme"), Some("anything")] {
            assert!(has(Some("bo"), "documents:read", org));
            assert!(!has(Some("bo"), "documents:write", org));
        }
        run("SELECT auth_pg.assign_role('bo', 'editor', 'acme')");
        assert!(has(Some("bo"), "documents:write", Some("acme")));
        assert!(!has(Some("bo"), "documents:write", Some("globex")));
        run("SELECT auth_pg.assign_role('bo', 'root', NULL)");
        assert!(has(Some("bo"), "anything:at:all", Some("globex")));
        assert!(has(Some("bo"), "*", None));
        // A global role given in one organization holds only there.
        run("SELECT auth_pg.assign_role('cy', 'root', 'acme')");
        assert!(has(Some("cy"), "documents:read", Some("acme")));
        assert!(!has(Some("cy"), "documents:read", Some("globex")));
    }

    #[pg_test]
    fn changes_reach_every_holder_and_descendant() {
        model();
        assert!(!has(Some("ada"), "comments:write", Some("acme")));
        // Granted to the grandparent: the admin of acme inherits it, through editor.
        run("SELECT auth_pg.grant_permission('viewer', 'comments:write')");
        assert!(has(Some("ada"), "comments:write", Some("acme")));
        assert!(has(Some("ada"), "comments:write", Some("globex")));
        assert!(has(Some("bo"), "comments:write", None));
        run("SELECT auth_pg.remove_role_parent('editor', 'viewer')");
        assert!(!has(Some("ada"), "comments:write", Some("acme")));
        assert!(has(Some("ada"), "documents:write", Some("acme")));
        assert!(has(Some("ada"), "comments:write", Some("globex")));
        run("SELECT auth_pg.revoke_permission('editor', 'documents:write')");
        assert!(!has(Some("ada"), "documents:write", Some("acme")));
        run("SELECT auth_pg.unassign_role('ada', 'admin', 'acme')");
        assert!(!has(Some("ada"), "billing:view", Some("acme")));
        assert!(listed("user_roles", "ada", Some("acme")).is_empty());
        run("SELECT auth_pg.delete_role('viewer')");
        assert!(!has(Some("bo"), "documents:read", None));
        assert!(listed("user_permissions", "ada", Some("globex")).is_empty());
        let leftover = Spi::get_one::<i64>(
            "SELECT count(*) FROM auth_pg.user_grants WHERE user_id IN ('ada', 'bo')",
        )
        .expect("SPI");
        assert_eq!(leftover, Some(0), "users with no role keep no row");
    }

    /// The closure rows a hierarchy change writes are those of the roles at and below it, and
    /// after any sequence of changes the closure is exactly what a full recomputation gives.
    #[pg_test]
    fn hierarchy_changes_rewrite_only_the_closure_below_them() {
        run("SELECT auth_pg.create_role('unrelated-' || i) FROM generate_series(1, 300) i");
        for role in ["top", "middle", "bottom", "side"] {
            run(&format!("SELECT auth_pg.create_role('{role}')"));
        }
        let written = || {
            Spi::get_one::<i64>(
                "SELECT pg_stat_get_xact_tuples_inserted('auth_pg.role_closure'::regclass) \
                      + pg_stat_get_xact_tuples_deleted('auth_pg.role_closure'::regclass)",
            )
            .expect("stats")
            .expect("a count")
        };
        let exact = || {
            Spi::get_one::<bool>(
                "WITH RECURSIVE full_closure (role_id, ancestor_id) AS ( \
                     SELECT role_id, role_id FROM auth_pg.roles \
                     UNION \
                     SELECT c.role_id, p.parent_id FROM full_closure c \
                     JOIN auth_pg.role_parents p ON p.role_id = c.ancestor_id) \
                 SELECT NOT EXISTS ( \
                     (SELECT * FROM full_closure EXCEPT SELECT * FROM auth_pg.role_closure) \
                     UNION ALL \
                     (SELECT * FROM auth_pg.role_closure EXCEPT SELECT * FROM full_closure))",
            )
            .expect("compare")
            .expect("a boolean")
        };
        let steps = [
            "SELECT auth_pg.add_role_parent('bottom', 'middle')",
            "SELECT auth_pg.add_role_parent('middle', 'top')",
            "SELECT auth_pg.add_role_parent('bottom', 'side')",
            "SELECT auth_pg.add_role_parent('side', 'top')",
            "SELECT auth_pg.remove_role_parent('middle', 'top')",
            "SELECT auth_pg.delete_role('side')",
            "SELECT auth_pg.delete_role('middle')",
        ];
        for step in steps {
            let before = written();
            run(step);
            assert!(exact(), "after {step}");
            // At most three roles below the change, each with at most four ancestors, deleted
            // and inserted: far fewer rows than the 300 unrelated roles' own.
            assert!(
                written() - before <= 24,
                "{step} wrote {}",
                written() - before
            );
        }
    }

    /// Rows loaded by hand that the functions would refuse make rebuild_permissions raise and
    /// change nothing; checks keep answering from the state before the load.
    #[pg_test]
    fn rebuild_refuses_loaded_rows_that_break_the_rules() {
        model();
        let before = listed("user_permissions", "ada", Some("acme"));
        let id = |name: &str, org: &str| {
            format!(
                "(SELECT role_id FROM auth_pg.roles WHERE name = '{name}' \
                 AND org_id IS NOT DISTINCT FROM {org})"
            )
        };
        use PgSqlErrorCode::*;
        let cases = [
            (
                format!(
                    "INSERT INTO auth_pg.role_assignments (user_id, org_id, role_id) \
                     VALUES ('ada', 'globex', {})",
                    id("admin", "'acme'")
                ),
                ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION,
            ),
            (
                format!(
                    "INSERT INTO auth_pg.roles (name, org_id) VALUES ('auditor', 'globex'); \
                     INSERT INTO auth_pg.role_parents VALUES ({}, {})",
                    id("auditor", "'globex'"),
                    id("admin", "'acme'")
                ),
                ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION,
            ),
            (
                "INSERT INTO auth_pg.roles (name, org_id) VALUES ('viewer', 'globex')".into(),
                ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION,
            ),
            (
                format!(
                    "INSERT INTO auth_pg.role_permissions VALUES ({}, 'doc*')",
                    id("viewer", "NULL")
                ),
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                format!(
                    "INSERT INTO auth_pg.role_parents VALUES ({}, {})",
                    id("viewer", "NULL"),
                    id("editor", "NULL")
                ),
                ERRCODE_INVALID_GRANT_OPERATION,
            ),
        ];
        for (load, expected) in cases {
            let sql = format!("{load}; SELECT auth_pg.rebuild_permissions()");
            assert_eq!(sqlstate_of(&sql), Some(expected), "{load}");
        }
        assert_eq!(listed("user_permissions", "ada", Some("acme")), before);
        Spi::run("SELECT auth_pg.rebuild_permissions()").expect("the model itself passes");
        assert_eq!(listed("user_permissions", "ada", Some("acme")), before);
    }

    #[pg_test]
    fn answers_report_whether_anything_changed() {
        model();
        let one = |sql: &str| Spi::get_one::<bool>(sql).expect("SPI").expect("a boolean");
        assert!(!one(
            "SELECT auth_pg.grant_permission('viewer', 'documents:read')"
        ));
        assert!(!one(
            "SELECT auth_pg.revoke_permission('viewer', 'documents:delete')"
        ));
        assert!(!one("SELECT auth_pg.assign_role('bo', 'viewer', NULL)"));
        assert!(!one("SELECT auth_pg.unassign_role('bo', 'viewer', 'acme')"));
        assert!(!one("SELECT auth_pg.add_role_parent('editor', 'viewer')"));
        assert!(!one("SELECT auth_pg.remove_role_parent('root', 'viewer')"));
        assert!(!one("SELECT auth_pg.delete_role('nobody')"));
        let version = Spi::get_one::<i64>("SELECT version FROM auth_pg.permission_state")
            .expect("SPI")
            .expect("one row");
        assert!(
            version >= 14,
            "every change, even one that changed nothing, took the lock"
        );
    }

    #[pg_test]
    fn has_permissions_all_or_any() {
        model();
        let ask = |sql: &str| Spi::get_one::<bool>(sql).expect("SPI");
        assert_eq!(
            ask(
                "SELECT auth_pg.has_permissions('ada', ARRAY['documents:read', 'billing:x'], 'acme')"
            ),
            Some(true)
        );
        assert_eq!(
            ask(
                "SELECT auth_pg.has_permissions('ada', ARRAY['documents:read', 'billing:x'], 'globex')"
            ),
            Some(false)
        );
        assert_eq!(
            ask(
                "SELECT auth_pg.has_permissions('ada', ARRAY['documents:read', 'billing:x'], 'globex', false)"
            ),
            Some(true)
        );
        assert_eq!(
            ask("SELECT auth_pg.has_permissions('ada', '{}', 'acme')"),
            Some(true)
        );
        assert_eq!(
            ask("SELECT auth_pg.has_permissions('ada', '{}', 'acme', false)"),
            Some(false)
        );
        assert_eq!(
            ask("SELECT auth_pg.has_permissions('nobody', '{}')"),
            Some(true)
        );
        assert_eq!(
            ask("SELECT auth_pg.has_permissions(NULL, ARRAY['a:b'])"),
            Some(false)
        );
    }

    #[pg_test]
    fn unknown_and_hostile_queries_answer_false_or_raise() {
        model();
        assert!(!has(None, "documents:read", Some("acme")));
        assert!(!has(Some("nobody"), "documents:read", Some("acme")));
        assert!(!has(
            Some(&"u".repeat(100_000)),
            "documents:read",
            Some("acme")
        ));
        assert!(!has(
            Some("ada"),
            "documents:read",
            Some(&"o".repeat(100_000))
        ));
        assert!(!has(Some("ada"), "documents:'--\";DROP", Some("acme")));
        for bad in [
            "SELECT auth_pg.has_permission('ada', NULL, 'acme')",
            "SELECT auth_pg.has_permission('ada', '', 'acme')",
            "SELECT auth_pg.has_permission('ada', 'doc*', 'acme')",
            "SELECT auth_pg.has_permission('ada', '*:read', 'acme')",
            "SELECT auth_pg.has_permission('ada', 'a b', 'acme')",
            "SELECT auth_pg.has_permission('ada', repeat('x', 1000000), 'acme')",
            "SELECT auth_pg.has_permissions('ada', ARRAY['a:b', NULL])",
            "SELECT auth_pg.has_permissions('ada', NULL)",
        ] {
            assert!(sqlstate_of(bad).is_some(), "{bad}");
        }
        assert_eq!(
            sqlstate_of("SELECT auth_pg.has_permission('ada', 'documents:*:read', 'acme')"),
            Some(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE)
        );
        assert_eq!(
            sqlstate_of("SELECT auth_pg.has_permission('ada', repeat('x', 257), 'acme')"),
            Some(PgSqlErrorCode::ERRCODE_STRING_DATA_RIGHT_TRUNCATION)
        );
    }

    /// A digest of every permission table, base and derived.
    fn stored() -> Option<String> {
        Spi::get_one::<String>(
            "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM ( \
             SELECT r::text AS t FROM auth_pg.roles r UNION ALL \
             SELECT p::text FROM auth_pg.role_parents p UNION ALL \
             SELECT g::text FROM auth_pg.role_permissions g UNION ALL \
             SELECT u::text FROM auth_pg.role_assignments u UNION ALL \
             SELECT c::text FROM auth_pg.role_closure c UNION ALL \
             SELECT ug::text FROM auth_pg.user_grants ug) s",
        )
        .expect("SPI")
    }

    #[pg_test]
    fn bad_changes_raise_and_store_nothing() {
        model();
        let before = stored();
        use PgSqlErrorCode::*;
        let cases = [
            (
                "SELECT auth_pg.add_role_parent('viewer', 'editor')",
                ERRCODE_INVALID_GRANT_OPERATION,
            ),
            (
                "SELECT auth_pg.add_role_parent('viewer', 'viewer')",
                ERRCODE_INVALID_GRANT_OPERATION,
            ),
            // A global role cannot inherit from an organization's role.
            (
                "SELECT auth_pg.add_role_parent('viewer', 'admin')",
                ERRCODE_UNDEFINED_OBJECT,
            ),
            (
                "SELECT auth_pg.create_role('viewer')",
                ERRCODE_DUPLICATE_OBJECT,
            ),
            (
                "SELECT auth_pg.create_role('viewer', 'acme')",
                ERRCODE_DUPLICATE_OBJECT,
            ),
            (
                "SELECT auth_pg.create_role('admin')",
                ERRCODE_DUPLICATE_OBJECT,
            ),
            (
                "SELECT auth_pg.create_role('')",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.create_role(NULL)",
                ERRCODE_NULL_VALUE_NOT_ALLOWED,
            ),
            (
                "SELECT auth_pg.create_role(repeat('r', 257))",
                ERRCODE_STRING_DATA_RIGHT_TRUNCATION,
            ),
            (
                "SELECT auth_pg.create_role('r', '')",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.create_role('r', NULL, repeat('d', 5000))",
                ERRCODE_STRING_DATA_RIGHT_TRUNCATION,
            ),
            (
                "SELECT auth_pg.grant_permission('nobody', 'a:b')",
                ERRCODE_UNDEFINED_OBJECT,
            ),
            (
                "SELECT auth_pg.grant_permission('admin', 'a:b')",
                ERRCODE_UNDEFINED_OBJECT,
            ),
            (
                "SELECT auth_pg.grant_permission('viewer', 'a:*:b')",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.grant_permission('viewer', '')",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.grant_permission('viewer', NULL)",
                ERRCODE_NULL_VALUE_NOT_ALLOWED,
            ),
            (
                "SELECT auth_pg.assign_role('ada', 'admin', 'globex')",
                ERRCODE_UNDEFINED_OBJECT,
            ),
            (
                "SELECT auth_pg.assign_role('ada', 'admin', NULL)",
                ERRCODE_UNDEFINED_OBJECT,
            ),
            (
                "SELECT auth_pg.assign_role('', 'viewer', NULL)",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT auth_pg.assign_role(NULL, 'viewer', NULL)",
                ERRCODE_NULL_VALUE_NOT_ALLOWED,
            ),
            (
                "SELECT auth_pg.assign_role(repeat('u', 513), 'viewer', NULL)",
                ERRCODE_STRING_DATA_RIGHT_TRUNCATION,
            ),
            (
                "SELECT auth_pg.assign_role('ada', 'viewer', E'a\\nb')",
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
        ];
        for (sql, expected) in cases {
            assert_eq!(sqlstate_of(sql), Some(expected), "{sql}");
        }
        let after = stored();
        assert_eq!(before, after);
    }

    #[pg_test]
    fn user_grant_columns_match_the_catalog() {
        let expected = [
            (col::GRANT_KEY, "grant_key"),
            (col::USER_ID, "user_id"),
            (col::ORG_ID, "org_id"),
            (col::ROLES, "roles"),
            (col::PERMISSIONS, "permissions"),
        ];
        crate::tests::assert_columns("user_grants", &expected);
    }
}
