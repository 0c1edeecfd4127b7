//! Roles and permissions: per organization or global, with inheritance and wildcards.
//!
//! Reads are one probe: each user's effective roles and permissions per organization are kept,
//! sorted, in `auth_pg.user_grants`, and `has_permission` finds the row by its hash index and
//! answers with a binary search (see `auth_core::permissions`). Every change recomputes the
//! rows it affects in its own transaction, after taking the one row of
//! `auth_pg.permission_state`; changes are therefore serialized, each derives from everything
//! committed before it, and a query in any session sees either all of a change or none of it.
//!
//! Naming: a role is named by its name and its organization (NULL for a global role). The
//! role a function changes is named exactly; a role it refers to (a parent, a role to assign)
//! is looked up among the organization's roles and then the global ones. An organization's
//! role never shares its name with a global role, so that lookup is never ambiguous.

use auth_core::input::{self, MAX_ORG_ID_BYTES, MAX_USER_ID_BYTES};
use auth_core::permissions::{self as rules, covers};
use auth_core::{InputError, Invalidation};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiError};

use crate::audit::{self, AuditEvent};
use crate::error::{AuthPgError, OrRaise, RoleScope};
use crate::fmgr::{self, function_info_v1};
use crate::notify;
use crate::storage::{KeyLookup, Rel, Row};

/// Attribute numbers of `auth_pg.user_grants`, checked against the catalog by a test.
#[cfg_attr(not(any(test, feature = "pg_test")), allow(dead_code))]
pub(crate) mod col {
    pub(crate) const GRANT_KEY: usize = 1;
    pub(crate) const USER_ID: usize = 2;
    pub(crate) const ORG_ID: usize = 3;
    pub(crate) const ROLES: usize = 4;
    pub(crate) const PERMISSIONS: usize = 5;
}

// ---------------------------------------------------------------------------------------------
// Reads
// ---------------------------------------------------------------------------------------------

/// The key of a `user_grants` row: the user id, a zero byte, the organization id (empty for
/// the global row). Text cannot contain a zero byte, so distinct pairs have distinct keys.
fn grant_key(user_id: &[u8], org_id: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(user_id.len() + 1 + org_id.len());
    key.extend_from_slice(user_id);
    key.push(0);
    key.extend_from_slice(org_id);
    key
}

/// Reads the user's effective names in attribute `attno` (roles or permissions) for `org_id`,
/// falling back to the user's global row when the user holds no role in the organization, and
/// hands them, sorted by bytes, to `read`. `None` when the user holds no role there at all.
fn with_effective<R>(
    user_id: &[u8],
    org_id: Option<&[u8]>,
    attno: usize,
    read: impl Fn(&[&[u8]]) -> R,
) -> Option<R> {
    with_effective_row(user_id, org_id, |row| {
        read(&row.text_array(attno).unwrap_or_default())
    })
}

/// Finds the user's `user_grants` row for `org_id`, or else the user's global row, and lets
/// `read` look at it; `None` when the user holds no role there at all.
fn with_effective_row<R>(
    user_id: &[u8],
    org_id: Option<&[u8]>,
    read: impl Fn(&Row<'_>) -> R,
) -> Option<R> {
    // Ids longer than any stored one cannot hold a role: nothing to probe.
    if user_id.is_empty() || user_id.len() > MAX_USER_ID_BYTES {
        return None;
    }
    let org_id = org_id.filter(|org| org.len() <= MAX_ORG_ID_BYTES && !org.is_empty());
    let mut lookup = KeyLookup::new(Rel::UserGrants, Rel::UserGrantsKeyIndex, col::GRANT_KEY);
    let mut probe = |org: &[u8]| lookup.find(&grant_key(user_id, org), &read);
    match org_id {
        Some(org) => probe(org).or_else(|| probe(b"")),
        None => probe(b""),
    }
}

/// Raises the error of a permission argument that breaks the rules.
fn check_permission<'a>(
    argument: &'static str,
    permission: Option<&'a [u8]>,
    function: &'static str,
) -> &'a [u8] {
    let text = permission.map(|bytes| std::str::from_utf8(bytes).unwrap_or("\u{0}"));
    rules::check_permission(argument, text)
        .or_raise(function)
        .as_bytes()
}

function_info_v1!(pg_finfo_auth_pg_has_permission);

/// `auth_pg.has_permission(user_id text, permission text, org_id text) RETURNS boolean`
/// (permissions.sql).
///
/// A NULL or unknown user holds nothing (false), so that a policy written with
/// `auth_pg.uid()` denies anonymous requests; a permission that breaks the naming rules is a
/// mistake in the caller's code and raises.
///
/// # Safety
///
/// Called by fmgr only, with the arguments and result declared in permissions.sql.
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_pg_has_permission(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: fmgr calls this with three text arguments, as declared.
    let (user_id, permission, org_id) = unsafe {
        (
            fmgr::text_arg(fcinfo, 0),
            fmgr::text_arg(fcinfo, 1),
            fmgr::text_arg(fcinfo, 2),
        )
    };
    let permission = check_permission("permission", permission, "has_permission");
    let granted = user_id.is_some_and(|user_id| {
        with_effective(user_id, org_id, col::PERMISSIONS, |granted| {
            covers(granted, permission)
        })
        .unwrap_or(false)
    });
    pg_sys::Datum::from(granted)
}

/// Whether the user holds all (`require_all`, the default) or any of `permissions` in the
/// organization. An empty list is held entirely and has nothing in it to hold, so it answers
/// `require_all`.
#[pg_extern(stable, parallel_safe, requires = ["permissions_schema"])]
fn has_permissions(
    user_id: Option<&str>,
    permissions: Option<Array<'_, &str>>,
    org_id: default!(Option<&str>, "NULL"),
    require_all: default!(Option<bool>, "true"),
) -> bool {
    const FUNCTION: &str = "has_permissions";
    let Some(permissions) = permissions else {
        AuthPgError::from(InputError::Null {
            argument: "permissions",
        })
        .raise(FUNCTION);
    };
    let wanted = rules::check_permission_list(permissions.iter()).or_raise(FUNCTION);
    let Some(require_all) = require_all else {
        AuthPgError::from(InputError::Null {
            argument: "require_all",
        })
        .raise(FUNCTION);
    };
    let Some(user_id) = user_id else {
        return require_all && wanted.is_empty();
    };
    let org_id = org_id.map(str::as_bytes);
    with_effective(user_id.as_bytes(), org_id, col::PERMISSIONS, |granted| {
        let mut answers = wanted.iter().map(|w| covers(granted, w.as_bytes()));
        if require_all {
            answers.all(|held| held)
        } else {
            answers.any(|held| held)
        }
    })
    .unwrap_or(require_all && wanted.is_empty())
}

/// The user's effective names in `attno` (a `text[]`, already sorted and distinct) for the
/// organization, as a `text[]` datum of its own; an empty array when the user holds nothing
/// there.
///
/// # Safety
///
/// `fcinfo` must be a live call with two `text` arguments (user_id, org_id).
unsafe fn effective_array(fcinfo: pg_sys::FunctionCallInfo, attno: usize) -> pg_sys::Datum {
    // SAFETY: as documented.
    let (user_id, org_id) = unsafe { (fmgr::text_arg(fcinfo, 0), fmgr::text_arg(fcinfo, 1)) };
    let stored = user_id.and_then(|user_id| {
        with_effective_row(user_id, org_id, |row| {
            // SAFETY: the attribute is a text[] (col constants are checked against the
            // catalog); the copy is made in the call's memory context before the row goes.
            row.datum(attno).map(|datum| unsafe {
                pg_sys::Datum::from(pg_sys::pg_detoast_datum_copy(datum.cast_mut_ptr()))
            })
        })
        .flatten()
    });
    // SAFETY: construct_empty_array builds a valid empty text[] in the current context.
    stored.unwrap_or_else(|| unsafe {
        pg_sys::Datum::from(pg_sys::construct_empty_array(pg_sys::TEXTOID))
    })
}

function_info_v1!(pg_finfo_auth_pg_user_permissions);

/// `auth_pg.user_permissions(user_id text, org_id text) RETURNS text[]` (permissions.sql).
///
/// # Safety
///
/// Called by fmgr only, with the arguments and result declared in permissions.sql.
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_pg_user_permissions(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: fmgr calls this as declared.
    unsafe { effective_array(fcinfo, col::PERMISSIONS) }
}

function_info_v1!(pg_finfo_auth_pg_user_roles);

/// `auth_pg.user_roles(user_id text, org_id text) RETURNS text[]` (permissions.sql).
///
/// # Safety
///
/// Called by fmgr only, with the arguments and result declared in permissions.sql.
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn auth_pg_user_roles(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: fmgr calls this as declared.
    unsafe { effective_array(fcinfo, col::ROLES) }
}

// ---------------------------------------------------------------------------------------------
// Changes
// ---------------------------------------------------------------------------------------------

/// The longest role description accepted, in bytes.
const MAX_DESCRIPTION_BYTES: usize = 4096;

fn check_org_id<'a>(org_id: Option<&'a str>, function: &'static str) -> Option<&'a str> {
    org_id.map(|org| {
        input::check_identifier("org_id", Some(org), MAX_ORG_ID_BYTES).or_raise(function)
    })
}

/// A role found by name.
struct Role {
    id: i64,
    org_id: Option<String>,
}

/// One change of roles, in progress: holds the serializing lock from its start.
struct Change<'conn, 'c> {
    client: &'c mut SpiClient<'conn>,
    function: &'static str,
}

impl<'conn, 'c> Change<'conn, 'c> {
    /// Takes the lock every change takes first (see permissions.sql).
    fn begin(client: &'c mut SpiClient<'conn>, function: &'static str) -> Self {
        client
            .update(
                "UPDATE auth_pg.permission_state \
                 SET version = version OPERATOR(pg_catalog.+) 1",
                None,
                &[],
            )
            .expect("SPI reports errors as ERRORs");
        Self { client, function }
    }

    fn run(&mut self, sql: &str, args: &[DatumWithOid<'_>]) -> usize {
        self.client
            .update(sql, None, args)
            .map(|table| table.len())
            .expect("SPI reports errors as ERRORs")
    }

    fn find(&mut self, sql: &str, args: &[DatumWithOid<'_>]) -> Option<Role> {
        let table = self
            .client
            .update(sql, Some(1), args)
            .expect("SPI reports errors as ERRORs");
        if table.is_empty() {
            return None;
        }
        let (id, org_id) = table
            .first()
            .get_two::<i64, String>()
            .expect("role_id and org_id");
        Some(Role {
            id: id.expect("role_id is NOT NULL"),
            org_id,
        })
    }

    /// The role named exactly `name` in `org_id` (NULL: the global role), or an ERROR.
    fn exact(&mut self, argument: &'static str, name: &str, org_id: Option<&str>) -> Role {
        let args: [DatumWithOid; 2] = [name.into(), org_id.into()];
        self.find(
            "SELECT role_id, org_id FROM auth_pg.roles \
             WHERE name OPERATOR(pg_catalog.=) $1 \
               AND (org_id OPERATOR(pg_catalog.=) $2 OR (org_id IS NULL AND $2 IS NULL))",
            &args,
        )
        .unwrap_or_else(|| {
            let scope = match org_id {
                Some(_) => RoleScope::Organization,
                None => RoleScope::Global,
            };
            AuthPgError::UnknownRole { argument, scope }.raise(self.function)
        })
    }

    /// The role `name` as seen from `org_id`: the organization's role of that name, else the
    /// global one; or an ERROR.
    fn visible(&mut self, argument: &'static str, name: &str, org_id: Option<&str>) -> Role {
        let args: [DatumWithOid; 2] = [name.into(), org_id.into()];
        self.find(
            "SELECT role_id, org_id FROM auth_pg.roles \
             WHERE name OPERATOR(pg_catalog.=) $1 \
               AND (org_id IS NULL OR org_id OPERATOR(pg_catalog.=) $2) \
             ORDER BY org_id NULLS LAST LIMIT 1",
            &args,
        )
        .unwrap_or_else(|| {
            let scope = match org_id {
                Some(_) => RoleScope::OrganizationOrGlobal,
                None => RoleScope::Global,
            };
            AuthPgError::UnknownRole { argument, scope }.raise(self.function)
        })
    }

    /// Whether the query (one boolean, no arguments) answers true.
    fn exists(&mut self, sql: &str) -> bool {
        self.client
            .update(sql, Some(1), &[])
            .expect("SPI reports errors as ERRORs")
            .first()
            .get_one::<bool>()
            .expect("one boolean")
            .unwrap_or(false)
    }

    /// Checks rows loaded into the tables by hand, before `rebuild_permissions` derives from
    /// them, against the rules the functions keep: what they would refuse is refused here too.
    fn check_loaded(&mut self, function: &'static str) {
        let rules = [
            (
                "an organization's role assigned in another organization or everywhere",
                "SELECT EXISTS (SELECT FROM auth_pg.role_assignments a \
                 JOIN auth_pg.roles r ON r.role_id OPERATOR(pg_catalog.=) a.role_id \
                 WHERE r.org_id IS NOT NULL AND a.org_id IS DISTINCT FROM r.org_id)",
            ),
            (
                "a role whose parent is another organization's role",
                "SELECT EXISTS (SELECT FROM auth_pg.role_parents p \
                 JOIN auth_pg.roles c ON c.role_id OPERATOR(pg_catalog.=) p.role_id \
                 JOIN auth_pg.roles a ON a.role_id OPERATOR(pg_catalog.=) p.parent_id \
                 WHERE a.org_id IS NOT NULL AND a.org_id IS DISTINCT FROM c.org_id)",
            ),
            (
                "a global role and an organization's role of the same name",
                "SELECT EXISTS (SELECT FROM auth_pg.roles g \
                 JOIN auth_pg.roles o ON o.name OPERATOR(pg_catalog.=) g.name \
                 WHERE g.org_id IS NULL AND o.org_id IS NOT NULL)",
            ),
        ];
        for (rule, sql) in rules {
            if self.exists(sql) {
                AuthPgError::LoadedRowsBreakRule { rule }.raise(function);
            }
        }
        let names: Vec<String> = self
            .client
            .update(
                "SELECT DISTINCT permission FROM auth_pg.role_permissions",
                None,
                &[],
            )
            .expect("SPI reports errors as ERRORs")
            .map(|row| row.get::<String>(1).ok().flatten().unwrap_or_default())
            .collect();
        for name in &names {
            rules::check_permission("role_permissions.permission", Some(name)).or_raise(function);
        }
    }

    /// `role` and every role that inherits from it, as the closure has them now.
    fn descendants(&mut self, role_id: i64) -> Vec<i64> {
        let args: [DatumWithOid; 1] = [role_id.into()];
        self.client
            .update(
                "SELECT role_id FROM auth_pg.role_closure \
                 WHERE ancestor_id OPERATOR(pg_catalog.=) $1",
                None,
                &args,
            )
            .expect("SPI reports errors as ERRORs")
            .map(|row| row.get::<i64>(1).ok().flatten().unwrap_or_default())
            .collect()
    }

    /// Recomputes the closure rows of `roles` from their parents, or of every role for `None`
    /// (after a bulk load). After a change to the parents of a role, `roles` is its
    /// descendants, found before the change: a role's ancestors depend only on the parent links
    /// above it, so no other row changes, and the work grows with the part of the hierarchy
    /// below the change, not with every role.
    fn recompute_closure(&mut self, roles: Option<Vec<i64>>) {
        let args: [DatumWithOid; 1] = [roles.into()];
        self.run(
            "DELETE FROM auth_pg.role_closure \
             WHERE $1 IS NULL OR role_id OPERATOR(pg_catalog.=) ANY ($1)",
            &args,
        );
        self.run(
            "INSERT INTO auth_pg.role_closure (role_id, ancestor_id) \
             WITH RECURSIVE closure (role_id, ancestor_id) AS ( \
                 SELECT r.role_id, r.role_id FROM auth_pg.roles r \
                 WHERE $1 IS NULL OR r.role_id OPERATOR(pg_catalog.=) ANY ($1) \
                 UNION \
                 SELECT closure.role_id, p.parent_id \
                 FROM closure JOIN auth_pg.role_parents p \
                   ON p.role_id OPERATOR(pg_catalog.=) closure.ancestor_id) \
             SELECT role_id, ancestor_id FROM closure",
            &args,
        );
    }

    /// The distinct users the query (over `args`) returns in its one column.
    fn users(&mut self, sql: &str, args: &[DatumWithOid<'_>]) -> Vec<String> {
        self.client
            .update(sql, None, args)
            .expect("SPI reports errors as ERRORs")
            .map(|row| row.get::<String>(1).ok().flatten().unwrap_or_default())
            .collect()
    }

    /// Recomputes the `user_grants` rows of `users` (distinct); returns how many users.
    ///
    /// The effective sets are aggregated per scope number rather than per (user_id, org_id)
    /// text pair, and permissions sort bytewise (their column is `COLLATE "C"`): at 1 600
    /// users that halves the time of the aggregation.
    fn refresh(&mut self, users: Vec<String>) -> usize {
        let count = users.len();
        let args: [DatumWithOid; 1] = [users.into()];
        self.run(
            "DELETE FROM auth_pg.user_grants WHERE user_id OPERATOR(pg_catalog.=) ANY ($1)",
            &args,
        );
        self.run(
            "INSERT INTO auth_pg.user_grants (grant_key, user_id, org_id, roles, permissions) \
                 WITH held AS ( \
                     SELECT ur.user_id, COALESCE(ur.org_id, '') AS org_id, \
                            c.ancestor_id AS role_id \
                     FROM auth_pg.role_assignments ur \
                     JOIN auth_pg.role_closure c ON c.role_id OPERATOR(pg_catalog.=) ur.role_id \
                     WHERE ur.user_id OPERATOR(pg_catalog.=) ANY ($1)), \
                 scopes AS ( \
                     SELECT user_id, org_id, pg_catalog.row_number() OVER () AS scope \
                     FROM (SELECT DISTINCT user_id, org_id FROM held) AS distinct_scopes), \
                 effective AS ( \
                     SELECT DISTINCT s.scope, h.role_id \
                     FROM scopes s JOIN held h \
                       ON h.user_id OPERATOR(pg_catalog.=) s.user_id \
                      AND (h.org_id OPERATOR(pg_catalog.=) s.org_id \
                           OR h.org_id OPERATOR(pg_catalog.=) '')), \
                 named AS ( \
                     SELECT e.scope, \
                            pg_catalog.array_agg(DISTINCT r.name COLLATE \"C\" \
                                                 ORDER BY r.name COLLATE \"C\") AS roles \
                     FROM effective e \
                     JOIN auth_pg.roles r ON r.role_id OPERATOR(pg_catalog.=) e.role_id \
                     GROUP BY e.scope), \
                 granted AS ( \
                     SELECT e.scope, \
                            pg_catalog.array_agg(DISTINCT p.permission \
                                                 ORDER BY p.permission) AS permissions \
                     FROM effective e \
                     JOIN auth_pg.role_permissions p \
                       ON p.role_id OPERATOR(pg_catalog.=) e.role_id \
                     GROUP BY e.scope) \
                 SELECT pg_catalog.convert_to(s.user_id, pg_catalog.getdatabaseencoding()) \
                            OPERATOR(pg_catalog.||) '\\x00'::bytea \
                            OPERATOR(pg_catalog.||) \
                        pg_catalog.convert_to(s.org_id, pg_catalog.getdatabaseencoding()), \
                        s.user_id, s.org_id, n.roles, \
                        COALESCE(g.permissions, '{}') \
                 FROM scopes s \
                 JOIN named n ON n.scope OPERATOR(pg_catalog.=) s.scope \
                 LEFT JOIN granted g ON g.scope OPERATOR(pg_catalog.=) s.scope",
            &args,
        );
        count
    }

    /// Recomputes the rows of every user who holds `role_id` or a role inheriting from it.
    fn refresh_holders(&mut self, role_id: i64) -> usize {
        let holders = self.holders(role_id);
        self.refresh(holders)
    }

    /// The users who hold `role_id` or a role inheriting from it.
    fn holders(&mut self, role_id: i64) -> Vec<String> {
        let args: [DatumWithOid; 1] = [role_id.into()];
        self.users(
            "SELECT DISTINCT ur.user_id FROM auth_pg.role_assignments ur \
             JOIN auth_pg.role_closure c ON c.role_id OPERATOR(pg_catalog.=) ur.role_id \
             WHERE c.ancestor_id OPERATOR(pg_catalog.=) $1",
            &args,
        )
    }

    /// Tells caches that the role changed and records the act.
    fn role_changed(
        &mut self,
        action: &'static str,
        role: &str,
        org_id: Option<&str>,
        detail: serde_json::Value,
    ) {
        notify::send(&Invalidation::RoleChanged {
            role: role.to_owned(),
            org_id: org_id.map(str::to_owned),
        });
        audit::record(AuditEvent {
            action,
            user_id: None,
            org_id,
            subject_id: Some(role.to_owned()),
            detail,
        });
    }
}

/// Runs `change` as one change of roles (see [`Change::begin`]).
fn change<R>(function: &'static str, change: impl FnOnce(&mut Change<'_, '_>) -> R) -> R {
    Spi::connect_mut(|client| {
        let mut started = Change::begin(client, function);
        Ok::<_, SpiError>(change(&mut started))
    })
    .expect("SPI reports errors as ERRORs")
}

/// Creates a role, global (`org_id` NULL) or of one organization. An organization's role may
/// not share its name with a global role, nor a global role with any organization's role.
#[pg_extern(volatile, parallel_unsafe, security_definer, requires = ["permissions_schema"])]
#[search_path(pg_catalog, pg_temp)]
fn create_role(
    name: Option<&str>,
    org_id: default!(Option<&str>, "NULL"),
    description: default!(Option<&str>, "NULL"),
) {
    const FUNCTION: &str = "create_role";
    let name = rules::check_role_name("name", name).or_raise(FUNCTION);
    let org_id = check_org_id(org_id, FUNCTION);
    if description.is_some_and(|text| text.len() > MAX_DESCRIPTION_BYTES) {
        AuthPgError::from(InputError::TooLong {
            argument: "description",
            limit: MAX_DESCRIPTION_BYTES,
        })
        .raise(FUNCTION);
    }
    change(FUNCTION, |change| {
        let args: [DatumWithOid; 2] = [name.into(), org_id.into()];
        let clash = change.find(
            "SELECT role_id, org_id FROM auth_pg.roles \
             WHERE name OPERATOR(pg_catalog.=) $1 \
               AND (org_id IS NULL OR $2 IS NULL OR org_id OPERATOR(pg_catalog.=) $2) \
             LIMIT 1",
            &args,
        );
        if let Some(clash) = clash {
            AuthPgError::RoleExists {
                same_scope: clash.org_id.as_deref() == org_id,
            }
            .raise(FUNCTION);
        }
        let args: [DatumWithOid; 3] = [name.into(), org_id.into(), description.into()];
        change.run(
            "WITH created AS ( \
                 INSERT INTO auth_pg.roles (name, org_id, description) VALUES ($1, $2, $3) \
                 RETURNING role_id) \
             INSERT INTO auth_pg.role_closure (role_id, ancestor_id) \
             SELECT role_id, role_id FROM created",
            &args,
        );
        // No one holds the new role yet; announced all the same, as every change is.
        change.role_changed("role.create", name, org_id, serde_json::json!({}));
    });
}

/// Deletes a role, its grants, its links to parents and children, and every assignment of it.
/// Returns false when there is no such role.
#[pg_extern(volatile, parallel_unsafe, security_definer, requires = ["permissions_schema"])]
#[search_path(pg_catalog, pg_temp)]
fn delete_role(name: Option<&str>, org_id: default!(Option<&str>, "NULL")) -> bool {
    const FUNCTION: &str = "delete_role";
    let name = rules::check_role_name("name", name).or_raise(FUNCTION);
    let org_id = check_org_id(org_id, FUNCTION);
    change(FUNCTION, |change| {
        let args: [DatumWithOid; 2] = [name.into(), org_id.into()];
        let Some(role) = change.find(
            "SELECT role_id, org_id FROM auth_pg.roles \
             WHERE name OPERATOR(pg_catalog.=) $1 \
               AND (org_id OPERATOR(pg_catalog.=) $2 OR (org_id IS NULL AND $2 IS NULL))",
            &args,
        ) else {
            return false;
        };
        // The holders and the roles below it are found before the role and its links go.
        let holders = change.holders(role.id);
        let below: Vec<i64> = change
            .descendants(role.id)
            .into_iter()
            .filter(|&id| id != role.id)
            .collect();
        let args: [DatumWithOid; 1] = [role.id.into()];
        change.run(
            "DELETE FROM auth_pg.roles WHERE role_id OPERATOR(pg_catalog.=) $1",
            &args,
        );
        change.recompute_closure(Some(below));
        let refreshed = change.refresh(holders);
        change.role_changed(
            "role.delete",
            name,
            org_id,
            serde_json::json!({ "refreshed_users": refreshed }),
        );
        true
    })
}

/// Links `role` (named exactly, in `org_id`) to `parent` (the organization's role of that
/// name, else the global one) or, when `add` is false, unlinks them. Returns whether anything
/// changed.
fn set_parent(
    function: &'static str,
    role: Option<&str>,
    parent: Option<&str>,
    org_id: Option<&str>,
    add: bool,
) -> bool {
    let name = rules::check_role_name("role", role).or_raise(function);
    let parent_name = rules::check_role_name("parent", parent).or_raise(function);
    let org_id = check_org_id(org_id, function);
    change(function, |change| {
        let role = change.exact("role", name, org_id);
        let parent = change.visible("parent", parent_name, role.org_id.as_deref());
        if add {
            let args: [DatumWithOid; 2] = [parent.id.into(), role.id.into()];
            let cycle = change.find(
                "SELECT role_id, NULL::text FROM auth_pg.role_closure \
                 WHERE role_id OPERATOR(pg_catalog.=) $1 \
                   AND ancestor_id OPERATOR(pg_catalog.=) $2",
                &args,
            );
            if cycle.is_some() {
                AuthPgError::RoleCycle.raise(function);
            }
        }
        let args: [DatumWithOid; 2] = [role.id.into(), parent.id.into()];
        let changed = change.run(
            if add {
                "INSERT INTO auth_pg.role_parents (role_id, parent_id) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING RETURNING 1"
            } else {
                "DELETE FROM auth_pg.role_parents \
                 WHERE role_id OPERATOR(pg_catalog.=) $1 \
                   AND parent_id OPERATOR(pg_catalog.=) $2 RETURNING 1"
            },
            &args,
        );
        if changed == 0 {
            return false;
        }
        let below = change.descendants(role.id);
        change.recompute_closure(Some(below));
        let refreshed = change.refresh_holders(role.id);
        change.role_changed(
            if add {
                "role.add_parent"
            } else {
                "role.remove_parent"
            },
            name,
            org_id,
            serde_json::json!({ "parent": parent_name, "refreshed_users": refreshed }),
        );
        true
    })
}

/// Makes `role` (named exactly, in `org_id`) inherit every permission of `parent` (the
/// organization's role of that name, else the global one). A global role's parents are
/// global. Refuses (0LP01) a parent that already inherits from `role`. Returns false when
/// `parent` is already a parent of `role`.
#[pg_extern(volatile, parallel_unsafe, security_definer, requires = ["permissions_schema"])]
#[search_path(pg_catalog, pg_temp)]
fn add_role_parent(
    role: Option<&str>,
    parent: Option<&str>,
    org_id: default!(Option<&str>, "NULL"),
) -> bool {
    set_parent("add_role_parent", role, parent, org_id, true)
}

/// Stops `role` inheriting from `parent` (named as in `add_role_parent`). Returns false when
/// `parent` was not a parent of `role`.
#[pg_extern(volatile, parallel_unsafe, security_definer, requires = ["permissions_schema"])]
#[search_path(pg_catalog, pg_temp)]
fn remove_role_parent(
    role: Option<&str>,
    parent: Option<&str>,
    org_id: default!(Option<&str>, "NULL"),
) -> bool {
    set_parent("remove_role_parent", role, parent, org_id, false)
}

/// Grants `permission` to `role` (named exactly, in `org_id`) or, when `grant` is false,
/// revokes it. Returns whether anything changed.
fn set_permission(
    function: &'static str,
    role: Option<&str>,
    permission: Option<&str>,
    org_id: Option<&str>,
    grant: bool,
) -> bool {
    let name = rules::check_role_name("role", role).or_raise(function);
    let permission = rules::check_permission("permission", permission).or_raise(function);
    let org_id = check_org_id(org_id, function);
    change(function, |change| {
        let role = change.exact("role", name, org_id);
        let args: [DatumWithOid; 2] = [role.id.into(), permission.into()];
        let changed = change.run(
            if grant {
                "INSERT INTO auth_pg.role_permissions (role_id, permission) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING RETURNING 1"
            } else {
                "DELETE FROM auth_pg.role_permissions \
                 WHERE role_id OPERATOR(pg_catalog.=) $1 \
                   AND permission OPERATOR(pg_catalog.=) $2 RETURNING 1"
            },
            &args,
        );
        if changed == 0 {
            return false;
        }
        let refreshed = change.refresh_holders(role.id);
        change.role_changed(
            if grant { "role.grant" } else { "role.revoke" },
            name,
            org_id,
            serde_json::json!({ "permission": permission, "refreshed_users": refreshed }),
        );
        true
    })
}

/// Grants `permission` (such as `documents:read`, `documents:*` or `*`) to the role `role` of
/// `org_id` (NULL: the global role). Returns false when the role already had it.
#[pg_extern(volatile, parallel_unsafe, security_definer, requires = ["permissions_schema"])]
#[search_path(pg_catalog, pg_temp)]
fn grant_permission(
    role: Option<&str>,
    permission: Option<&str>,
    org_id: default!(Option<&str>, "NULL"),
) -> bool {
    set_permission("grant_permission", role, permission, org_id, true)
}

/// Revokes a permission granted to the role directly (inherited ones are revoked from the
/// parent). Returns false when the role did not have it.
#[pg_extern(volatile, parallel_unsafe, security_definer, requires = ["permissions_schema"])]
#[search_path(pg_catalog, pg_temp)]
fn revoke_permission(
    role: Option<&str>,
    permission: Option<&str>,
    org_id: default!(Option<&str>, "NULL"),
) -> bool {
    set_permission("revoke_permission", role, permission, org_id, false)
}

/// Recomputes both derived tables from scratch, for every user: the call to make after loading
/// roles, parents, grants and assignments in bulk (COPY or INSERT into auth_pg's tables, as the
/// extension's owner) instead of through the functions. Returns how many users it recomputed.
#[pg_extern(volatile, parallel_unsafe, security_definer, requires = ["permissions_schema"])]
#[search_path(pg_catalog, pg_temp)]
fn rebuild_permissions() -> i64 {
    const FUNCTION: &str = "rebuild_permissions";
    change(FUNCTION, |change| {
        change.check_loaded(FUNCTION);
        change.recompute_closure(None);
        if change.exists(
            "SELECT EXISTS (SELECT FROM auth_pg.role_parents p \
             JOIN auth_pg.role_closure c ON c.role_id OPERATOR(pg_catalog.=) p.parent_id \
                                        AND c.ancestor_id OPERATOR(pg_catalog.=) p.role_id)",
        ) {
            AuthPgError::RoleCycle.raise(FUNCTION);
        }
        change.run("DELETE FROM auth_pg.user_grants", &[]);
        let everyone = change.users("SELECT DISTINCT user_id FROM auth_pg.role_assignments", &[]);
        let refreshed = change.refresh(everyone);
        notify::send(&Invalidation::PermissionsRebuilt);
        audit::record(AuditEvent {
            action: "permissions.rebuild",
            user_id: None,
            org_id: None,
            subject_id: None,
            detail: serde_json::json!({ "refreshed_users": refreshed }),
        });
        i64::try_from(refreshed).unwrap_or(i64::MAX)
    })
}

/// Gives (or, when `assign` is false, takes) `role` to `user_id` in `org_id`.
fn set_assignment(
    function: &'static str,
    user_id: Option<&str>,
    role: Option<&str>,
    org_id: Option<&str>,
    assign: bool,
) -> bool {
    let user_id = input::check_user_id(user_id).or_raise(function);
    let name = rules::check_role_name("role", role).or_raise(function);
    let org_id = check_org_id(org_id, function);
    change(function, |change| {
        let role = change.visible("role", name, org_id);
        let args: [DatumWithOid; 3] = [user_id.into(), org_id.into(), role.id.into()];
        let changed = change.run(
            if assign {
                "INSERT INTO auth_pg.role_assignments (user_id, org_id, role_id) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING RETURNING 1"
            } else {
                "DELETE FROM auth_pg.role_assignments \
                 WHERE user_id OPERATOR(pg_catalog.=) $1 \
                   AND (org_id OPERATOR(pg_catalog.=) $2 OR (org_id IS NULL AND $2 IS NULL)) \
                   AND role_id OPERATOR(pg_catalog.=) $3 RETURNING 1"
            },
            &args,
        );
        if changed == 0 {
            return false;
        }
        change.refresh(vec![user_id.to_owned()]);
        notify::send(&Invalidation::UserRolesChanged {
            user_id: user_id.to_owned(),
            org_id: org_id.map(str::to_owned),
        });
        audit::record(AuditEvent {
            action: if assign {
                "role.assign"
            } else {
                "role.unassign"
            },
            user_id: Some(user_id),
            org_id,
            subject_id: Some(name.to_owned()),
            detail: serde_json::json!({}),
        });
        true
    })
}

/// Gives `role` to `user_id` in the organization `org_id`, or everywhere when `org_id` is
/// NULL (only a global role can be held everywhere). The role is the organization's role of
/// that name, else the global one. Returns false when the user already held it there.
#[pg_extern(volatile, parallel_unsafe, security_definer, requires = ["permissions_schema"])]
#[search_path(pg_catalog, pg_temp)]
fn assign_role(user_id: Option<&str>, role: Option<&str>, org_id: Option<&str>) -> bool {
    set_assignment("assign_role", user_id, role, org_id, true)
}

/// Takes `role` from `user_id` in `org_id` (NULL: the global assignment). Returns false when
/// the user did not hold it there.
#[pg_extern(volatile, parallel_unsafe, security_definer, requires = ["permissions_schema"])]
#[search_path(pg_catalog, pg_temp)]
fn unassign_role(user_id: Option<&str>, role: Option<&str>, org_id: Option<&str>) -> bool {
    set_assignment("unassign_role", user_id, role, org_id, false)
}
