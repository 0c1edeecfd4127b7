//! Roles and permissions: checks, the effective sets, and administration.
//!
//! Organizations are the application's ids. `org: None` means "global": a check with no
//! organization sees only the roles a user holds everywhere, and a role created or assigned
//! with no organization is a global one.

use crate::cache::{Answer, Forget};
use crate::{AuthClient, Error};

const HAS_PERMISSION: &str = "SELECT auth_pg.has_permission($1, $2, $3)";
const HAS_PERMISSIONS: &str = "SELECT auth_pg.has_permissions($1, $2, $3, $4)";
const USER_PERMISSIONS: &str = "SELECT auth_pg.user_permissions($1, $2)";
const USER_ROLES: &str = "SELECT auth_pg.user_roles($1, $2)";
const CREATE_ROLE: &str = "SELECT auth_pg.create_role($1, $2, $3)";
const DELETE_ROLE: &str = "SELECT auth_pg.delete_role($1, $2)";
const ADD_ROLE_PARENT: &str = "SELECT auth_pg.add_role_parent($1, $2, $3)";
const REMOVE_ROLE_PARENT: &str = "SELECT auth_pg.remove_role_parent($1, $2, $3)";
const GRANT_PERMISSION: &str = "SELECT auth_pg.grant_permission($1, $2, $3)";
const REVOKE_PERMISSION: &str = "SELECT auth_pg.revoke_permission($1, $2, $3)";
const ASSIGN_ROLE: &str = "SELECT auth_pg.assign_role($1, $2, $3)";
const UNASSIGN_ROLE: &str = "SELECT auth_pg.unassign_role($1, $2, $3)";

impl AuthClient {
    /// Whether `user_id` holds `permission` in `org` (or, with `None`, everywhere), directly,
    /// through a parent role, or through a wildcard (`documents:*`, `*`). Answered from the
    /// state committed when the call runs: a change made by anyone is seen by the next call.
    /// Needs the `auth_pg_validator` role.
    ///
    /// Fails with SQLSTATE 22023 for a permission that is not names separated by `:` (with `*`
    /// only as the whole last part), 22001 for one longer than 256 bytes.
    pub async fn has_permission(
        &self,
        user_id: &str,
        permission: &str,
        org: Option<&str>,
    ) -> Result<bool, Error> {
        self.through_cache(
            |cache| cache.question_key("has_permission", &[Some(user_id), Some(permission), org]),
            || self.two_names_and_org(HAS_PERMISSION, user_id, permission, org),
            Some(|answer: &Answer| match answer {
                Answer::Allowed { allowed, .. } => Some(*allowed),
                _ => None,
            }),
            |allowed| {
                let answer = Answer::Allowed {
                    user_id: user_id.to_owned(),
                    org_id: org.map(str::to_owned),
                    allowed: *allowed,
                };
                Some((answer, None))
            },
        )
        .await
    }

    /// Whether `user_id` holds all of `permissions` in `org` (`require_all`), or any of them.
    pub async fn has_permissions(
        &self,
        user_id: &str,
        permissions: &[&str],
        org: Option<&str>,
        require_all: bool,
    ) -> Result<bool, Error> {
        Ok(self
            .query_one(
                HAS_PERMISSIONS,
                &[&user_id, &permissions, &org, &require_all],
            )
            .await?
            .try_get(0)?)
    }

    /// The user's effective permissions in `org`: sorted by bytes, without duplicates,
    /// inherited and global ones included, wildcards as granted.
    pub async fn user_permissions(
        &self,
        user_id: &str,
        org: Option<&str>,
    ) -> Result<Vec<String>, Error> {
        let fetch = || async {
            let row = self.query_one(USER_PERMISSIONS, &[&user_id, &org]).await?;
            Ok(row.try_get(0)?)
        };
        self.through_cache(
            |cache| cache.question_key("user_permissions", &[Some(user_id), org]),
            fetch,
            Some(|answer: &Answer| match answer {
                Answer::Permissions { permissions, .. } => Some(permissions.clone()),
                _ => None,
            }),
            |permissions| {
                let answer = Answer::Permissions {
                    user_id: user_id.to_owned(),
                    org_id: org.map(str::to_owned),
                    permissions: permissions.clone(),
                };
                Some((answer, None))
            },
        )
        .await
    }

    /// The user's effective roles in `org`: those held there or everywhere, and their
    /// ancestors; sorted by bytes.
    pub async fn user_roles(&self, user_id: &str, org: Option<&str>) -> Result<Vec<String>, Error> {
        let row = self.query_one(USER_ROLES, &[&user_id, &org]).await?;
        Ok(row.try_get(0)?)
    }

    /// Creates a role of `org`, or a global one. Needs the `auth_pg_admin` role; every change
    /// below is announced on `auth_pg_invalidate` and recorded in the audit trail.
    ///
    /// Fails with SQLSTATE 42710 when the name is taken in that scope, or when a global role and
    /// an organization's role would share it.
    pub async fn create_role(
        &self,
        name: &str,
        org: Option<&str>,
        description: Option<&str>,
    ) -> Result<(), Error> {
        self.query_one(CREATE_ROLE, &[&name, &org, &description])
            .await?;
        Ok(())
    }

    /// Deletes a role with its grants, links and assignments; false when there was none.
    pub async fn delete_role(&self, name: &str, org: Option<&str>) -> Result<bool, Error> {
        let deleted = self
            .query_one(DELETE_ROLE, &[&name, &org])
            .await?
            .try_get(0)?;
        self.forget(&Forget::AllPermissions);
        Ok(deleted)
    }

    /// Makes the role `role` of `org` inherit from `parent` (the organization's role of that
    /// name, else the global one); false when it already did. Fails with SQLSTATE 0LP01 when
    /// `parent` already inherits from `role`, 42704 when either is unknown.
    pub async fn add_role_parent(
        &self,
        role: &str,
        parent: &str,
        org: Option<&str>,
    ) -> Result<bool, Error> {
        self.change(ADD_ROLE_PARENT, role, parent, org, Forget::AllPermissions)
            .await
    }

    /// Stops `role` inheriting from `parent`; false when it did not.
    pub async fn remove_role_parent(
        &self,
        role: &str,
        parent: &str,
        org: Option<&str>,
    ) -> Result<bool, Error> {
        self.change(
            REMOVE_ROLE_PARENT,
            role,
            parent,
            org,
            Forget::AllPermissions,
        )
        .await
    }

    /// Grants `permission` to the role `role` of `org`; false when it already had it.
    pub async fn grant_permission(
        &self,
        role: &str,
        permission: &str,
        org: Option<&str>,
    ) -> Result<bool, Error> {
        self.change(
            GRANT_PERMISSION,
            role,
            permission,
            org,
            Forget::AllPermissions,
        )
        .await
    }

    /// Revokes a permission granted to the role directly; false when it did not have it.
    pub async fn revoke_permission(
        &self,
        role: &str,
        permission: &str,
        org: Option<&str>,
    ) -> Result<bool, Error> {
        self.change(
            REVOKE_PERMISSION,
            role,
            permission,
            org,
            Forget::AllPermissions,
        )
        .await
    }

    /// Gives `role` to `user_id` in `org`, or everywhere with `None` (a global role only);
    /// false when the user already held it there.
    pub async fn assign_role(
        &self,
        user_id: &str,
        role: &str,
        org: Option<&str>,
    ) -> Result<bool, Error> {
        self.change(
            ASSIGN_ROLE,
            user_id,
            role,
            org,
            Forget::UserPermissions(user_id, org),
        )
        .await
    }

    /// Takes `role` from `user_id` in `org`; false when the user did not hold it there.
    pub async fn unassign_role(
        &self,
        user_id: &str,
        role: &str,
        org: Option<&str>,
    ) -> Result<bool, Error> {
        self.change(
            UNASSIGN_ROLE,
            user_id,
            role,
            org,
            Forget::UserPermissions(user_id, org),
        )
        .await
    }

    /// Runs an administrative change taking two names and an organization, then forgets in
    /// this client's cache the permission answers it may change (`forget`: every user's for a
    /// change to a role, whose heirs are not known here; the user's for an assignment).
    async fn change(
        &self,
        statement: &str,
        first: &str,
        second: &str,
        org: Option<&str>,
        forget: Forget<'_>,
    ) -> Result<bool, Error> {
        let changed = self
            .two_names_and_org(statement, first, second, org)
            .await?;
        self.forget(&forget);
        Ok(changed)
    }

    /// Runs one of this module's statements that take two names and an organization and
    /// answer with a boolean (`has_permission` and the administrative changes).
    async fn two_names_and_org(
        &self,
        statement: &str,
        first: &str,
        second: &str,
        org: Option<&str>,
    ) -> Result<bool, Error> {
        Ok(self
            .query_one(statement, &[&first, &second, &org])
            .await?
            .try_get(0)?)
    }
}
