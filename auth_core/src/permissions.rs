//! Permission names, role names, and how a set of granted permissions answers a question.
//!
//! A permission is a name made of segments separated by `:`, such as `documents:read` or
//! `billing:invoices:export`. A grant may end in a wildcard segment: `documents:*` grants every
//! permission whose name starts with `documents:`, and `*` alone grants everything. A wildcard
//! is only ever a whole final segment; `doc*`, `*:read` and `documents:*:read` are refused, so
//! that what a grant covers is always a plain prefix and never a pattern to interpret.
//!
//! The extension keeps each user's effective permissions sorted by their bytes; [`covers`]
//! answers "does this set grant that permission" with at most one binary search per segment.

use crate::input::{InputError, MAX_NAME_BYTES, check_identifier};

/// The longest permission name accepted, in bytes.
pub const MAX_PERMISSION_BYTES: usize = 256;
/// The most permissions one `has_permissions` call asks about.
pub const MAX_PERMISSIONS_PER_CHECK: usize = 1_000;
/// The separator between a permission's segments.
pub const SEPARATOR: u8 = b':';
/// The wildcard segment.
pub const WILDCARD: &str = "*";

/// Checks a role name: see [`check_identifier`], at most [`MAX_NAME_BYTES`].
pub fn check_role_name<'a>(
    argument: &'static str,
    name: Option<&'a str>,
) -> Result<&'a str, InputError> {
    check_identifier(argument, name, MAX_NAME_BYTES)
}

/// Checks a permission name as granted or asked about: present, not empty, at most
/// [`MAX_PERMISSION_BYTES`], no white space or control characters, no empty segment, and `*`
/// only as the whole last segment.
pub fn check_permission<'a>(
    argument: &'static str,
    permission: Option<&'a str>,
) -> Result<&'a str, InputError> {
    let permission = permission.ok_or(InputError::Null { argument })?;
    if permission.is_empty() {
        return Err(InputError::Empty { argument });
    }
    if permission.len() > MAX_PERMISSION_BYTES {
        return Err(InputError::TooLong {
            argument,
            limit: MAX_PERMISSION_BYTES,
        });
    }
    if permission
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(InputError::BadCharacters { argument });
    }
    let mut segments = permission.split(char::from(SEPARATOR)).peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        let bad = segment.is_empty() || (segment.contains('*') && !(last && segment == WILDCARD));
        if bad {
            return Err(InputError::BadPermission { argument });
        }
    }
    Ok(permission)
}

/// Checks the permissions of one `has_permissions` call: at most
/// [`MAX_PERMISSIONS_PER_CHECK`], none NULL, each as [`check_permission`] says.
pub fn check_permission_list<'a, I>(permissions: I) -> Result<Vec<&'a str>, InputError>
where
    I: IntoIterator<Item = Option<&'a str>>,
{
    let argument = "permissions";
    let mut out = Vec::new();
    for permission in permissions {
        if out.len() == MAX_PERMISSIONS_PER_CHECK {
            return Err(InputError::TooMany {
                argument,
                limit: MAX_PERMISSIONS_PER_CHECK,
            });
        }
        let permission = permission.ok_or(InputError::NullElement { argument })?;
        out.push(check_permission(argument, Some(permission))?);
    }
    Ok(out)
}

/// Whether `granted`, sorted by bytes and without duplicates, grants `wanted`.
///
/// `wanted` is granted by itself, by `*`, and by the wildcard of each of its proper prefixes
/// that ends at a separator: `a:b:c` by `a:b:*` and `a:*`. A wildcard asked about is taken
/// literally: `documents:*` is granted only by `documents:*` itself or a wider wildcard, never
/// by holding `documents:read`.
pub fn covers<T: AsRef<[u8]>>(granted: &[T], wanted: &[u8]) -> bool {
    let held = |name: &[u8]| {
        granted
            .binary_search_by(|probe| probe.as_ref().cmp(name))
            .is_ok()
    };
    if held(wanted) || held(WILDCARD.as_bytes()) {
        return true;
    }
    let mut wildcard = Vec::with_capacity(wanted.len() + 1);
    // Separators followed by at least one byte: each ends a prefix whose wildcard counts.
    let separators = wanted[..wanted.len().saturating_sub(1)]
        .iter()
        .enumerate()
        .filter(|&(_, &byte)| byte == SEPARATOR);
    for (at, _) in separators {
        wildcard.clear();
        wildcard.extend_from_slice(&wanted[..=at]);
        wildcard.extend_from_slice(WILDCARD.as_bytes());
        if held(&wildcard) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(names: &[&'static str]) -> Vec<&'static [u8]> {
        let mut out: Vec<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    #[test]
    fn permission_names() {
        for good in [
            "documents:read",
            "billing:invoices:export",
            "admin",
            "documents:*",
            "*",
            "a:b:c:*",
            "reports:\"quoted\"",
            "o'brien:read",
            "документы:читать",
        ] {
            assert_eq!(check_permission("permission", Some(good)), Ok(good));
        }
        let bad_form = InputError::BadPermission {
            argument: "permission",
        };
        for bad in [
            "doc*", "*:read", "a:*:b", ":read", "read:", "a::b", "**", "a:**", ":", "*:*",
        ] {
            assert_eq!(
                check_permission("permission", Some(bad)),
                Err(bad_form.clone()),
                "{bad}"
            );
        }
        assert_eq!(
            check_permission("permission", None),
            Err(InputError::Null {
                argument: "permission"
            })
        );
        assert_eq!(
            check_permission("permission", Some("")),
            Err(InputError::Empty {
                argument: "permission"
            })
        );
        for spaced in ["documents: read", "a\tb", "a\nb", "a\0b"] {
            assert_eq!(
                check_permission("permission", Some(spaced)),
                Err(InputError::BadCharacters {
                    argument: "permission"
                })
            );
        }
        let longest = format!("a:{}", "b".repeat(MAX_PERMISSION_BYTES - 2));
        assert!(check_permission("permission", Some(&longest)).is_ok());
        let too_long = format!("{longest}c");
        assert_eq!(
            check_permission("permission", Some(&too_long)),
            Err(InputError::TooLong {
                argument: "permission",
                limit: MAX_PERMISSION_BYTES
            })
        );
    }

    #[test]
    fn permission_lists() {
        assert_eq!(
            check_permission_list([Some("a:read"), Some("b:*")]),
            Ok(vec!["a:read", "b:*"])
        );
        assert_eq!(check_permission_list([]), Ok(vec![]));
        assert_eq!(
            check_permission_list([Some("a:read"), None]),
            Err(InputError::NullElement {
                argument: "permissions"
            })
        );
        assert_eq!(
            check_permission_list([Some("a:read"), Some("a:*b")]),
            Err(InputError::BadPermission {
                argument: "permissions"
            })
        );
        let many = vec![Some("a:read"); MAX_PERMISSIONS_PER_CHECK + 1];
        assert_eq!(
            check_permission_list(many),
            Err(InputError::TooMany {
                argument: "permissions",
                limit: MAX_PERMISSIONS_PER_CHECK
            })
        );
    }

    #[test]
    fn exact_grants() {
        let granted = sorted(&["documents:read", "documents:write", "billing:view"]);
        assert!(covers(&granted, b"documents:read"));
        assert!(covers(&granted, b"billing:view"));
        assert!(!covers(&granted, b"documents:delete"));
        assert!(!covers(&granted, b"documents"));
        assert!(!covers(&granted, b"documents:read:own"));
        assert!(!covers(&granted, b"documents:*"));
        assert!(!covers::<&[u8]>(&[], b"documents:read"));
    }

    #[test]
    fn family_wildcards() {
        let granted = sorted(&["documents:*", "billing:invoices:*"]);
        assert!(covers(&granted, b"documents:read"));
        assert!(covers(&granted, b"documents:drafts:read"));
        assert!(covers(&granted, b"documents:*"));
        assert!(covers(&granted, b"billing:invoices:export"));
        assert!(covers(&granted, b"billing:invoices:*"));
        assert!(!covers(&granted, b"billing:view"));
        assert!(!covers(&granted, b"billing:*"));
        // A wildcard grants the family, not the bare name, nor names that merely share a prefix.
        assert!(!covers(&granted, b"documents"));
        assert!(!covers(&granted, b"documentsx:read"));
    }

    #[test]
    fn everything() {
        let granted = sorted(&["*"]);
        for wanted in ["documents:read", "*", "a:b:c:d", "billing:*"] {
            assert!(covers(&granted, wanted.as_bytes()), "{wanted}");
        }
    }

    #[test]
    fn agrees_with_a_plain_scan() {
        // Every permission over a small alphabet, against grants over it, checked against the
        // definition written the slow way.
        let names = [
            "a", "b", "a:x", "a:y", "b:x", "a:x:1", "a:x:2", "a:*", "b:*", "a:x:*", "*",
        ];
        let slow = |granted: &[&str], wanted: &str| {
            granted.iter().any(|g| {
                *g == wanted
                    || *g == "*"
                    || g.strip_suffix('*').is_some_and(|prefix| {
                        prefix.ends_with(':')
                            && wanted.starts_with(prefix)
                            && wanted.len() > prefix.len()
                    })
            })
        };
        for mask in 0u32..(1 << names.len()) {
            let granted: Vec<&str> = names
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, n)| *n)
                .collect();
            let mut bytes: Vec<&[u8]> = granted.iter().map(|g| g.as_bytes()).collect();
            bytes.sort_unstable();
            for wanted in names {
                assert_eq!(
                    covers(&bytes, wanted.as_bytes()),
                    slow(&granted, wanted),
                    "{granted:?} {wanted}"
                );
            }
        }
    }

    #[test]
    fn role_names() {
        assert_eq!(
            check_role_name("name", Some("billing admin")),
            Ok("billing admin")
        );
        assert_eq!(
            check_role_name("parent", Some("")),
            Err(InputError::Empty { argument: "parent" })
        );
        assert_eq!(
            check_role_name("role", Some(&"r".repeat(MAX_NAME_BYTES + 1))),
            Err(InputError::TooLong {
                argument: "role",
                limit: MAX_NAME_BYTES
            })
        );
    }
}
