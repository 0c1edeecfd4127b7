//! The `api_keys` document of an organization: what a valid one looks like.
//!
//! auth_pg writes these documents itself, but applications may edit them by hand (or restore
//! them from a dump); a document is checked before its keys are trusted. Errors name the
//! element and the field, never a value (a hash does not belong in a log).

use std::collections::HashSet;

use serde_json::Value;

/// Why a document cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// The document is not a JSON array.
    #[error("api_keys must be a JSON array")]
    NotAnArray,
    /// An element is not a JSON object.
    #[error("api_keys[{index}] must be a JSON object")]
    NotAnObject {
        /// The element's index.
        index: usize,
    },
    /// A required field is missing or null.
    #[error("api_keys[{index}] has no {field}")]
    Missing {
        /// The element's index.
        index: usize,
        /// The field.
        field: &'static str,
    },
    /// A field has the wrong JSON type, or is empty where it must not be.
    #[error("api_keys[{index}].{field} must be {expected}")]
    Invalid {
        /// The element's index.
        index: usize,
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// Two elements share a key id.
    #[error("api_keys[{index}].id repeats the id of an earlier key")]
    DuplicateId {
        /// The later element's index.
        index: usize,
    },
    /// Two elements share a hash.
    #[error("api_keys[{index}].hash repeats the hash of an earlier key")]
    DuplicateHash {
        /// The later element's index.
        index: usize,
    },
}

/// How each field of an element is checked.
enum Rule {
    /// A non-empty string, required.
    RequiredText,
    /// A string, or absent or null.
    OptionalText,
    /// A non-empty string (another element's id), or absent or null.
    OptionalId,
    /// 64 hexadecimal digits, required.
    Hash,
    /// An array of non-empty strings, or absent or null.
    Scopes,
    /// An object, or absent or null.
    Object,
    /// A string (PostgreSQL parses it as a timestamp), required.
    RequiredTime,
    /// A string, or absent or null.
    OptionalTime,
}

const FIELDS: [(&str, Rule); 11] = [
    ("id", Rule::RequiredText),
    ("hash", Rule::Hash),
    ("prefix", Rule::OptionalText),
    ("name", Rule::RequiredText),
    ("scopes", Rule::Scopes),
    ("metadata", Rule::Object),
    ("created_at", Rule::RequiredTime),
    ("expires_at", Rule::OptionalTime),
    ("revoked_at", Rule::OptionalTime),
    ("last_used_at", Rule::OptionalTime),
    ("replaced_by", Rule::OptionalId),
];

/// Checks a whole document: an array of key objects with the fields auth_pg reads, each of the
/// right type, with unique ids and hashes. Other fields are allowed and kept.
pub fn check_document(document: &Value) -> Result<(), DocumentError> {
    let elements = document.as_array().ok_or(DocumentError::NotAnArray)?;
    let mut ids = HashSet::with_capacity(elements.len());
    let mut hashes = HashSet::with_capacity(elements.len());
    for (index, element) in elements.iter().enumerate() {
        let object = element
            .as_object()
            .ok_or(DocumentError::NotAnObject { index })?;
        for (field, rule) in &FIELDS {
            let value = object.get(*field).filter(|v| !v.is_null());
            let invalid = |expected| DocumentError::Invalid {
                index,
                field,
                expected,
            };
            let missing = DocumentError::Missing { index, field };
            match rule {
                Rule::RequiredText => match value {
                    None => return Err(missing),
                    Some(Value::String(s)) if !s.is_empty() => {}
                    Some(_) => return Err(invalid("a non-empty string")),
                },
                Rule::RequiredTime => match value {
                    None => return Err(missing),
                    Some(Value::String(_)) => {}
                    Some(_) => return Err(invalid("a timestamp string")),
                },
                Rule::OptionalId => match value {
                    None => {}
                    Some(Value::String(s)) if !s.is_empty() => {}
                    Some(_) => return Err(invalid("a non-empty string or null")),
                },
                Rule::OptionalText | Rule::OptionalTime => {
                    if value.is_some_and(|v| !v.is_string()) {
                        return Err(invalid("a string or null"));
                    }
                }
                Rule::Hash => match value {
                    None => return Err(missing),
                    Some(Value::String(s))
                        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {}
                    Some(_) => return Err(invalid("64 hexadecimal digits")),
                },
                Rule::Scopes => {
                    let ok = match value {
                        None => true,
                        Some(Value::Array(items)) => items
                            .iter()
                            .all(|i| i.as_str().is_some_and(|s| !s.is_empty())),
                        Some(_) => false,
                    };
                    if !ok {
                        return Err(invalid("an array of non-empty strings"));
                    }
                }
                Rule::Object => {
                    if value.is_some_and(|v| !v.is_object()) {
                        return Err(invalid("an object or null"));
                    }
                }
            }
        }
        let id = object.get("id").and_then(Value::as_str).unwrap_or_default();
        if !ids.insert(id) {
            return Err(DocumentError::DuplicateId { index });
        }
        let hash = object
            .get("hash")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !hashes.insert(hash.to_ascii_lowercase()) {
            return Err(DocumentError::DuplicateHash { index });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn key(id: &str, hash_digit: char) -> Value {
        json!({
            "id": id, "hash": hash_digit.to_string().repeat(64), "prefix": "apgk_abcdefg",
            "name": "ci", "scopes": ["read"], "metadata": {"env": "prod"},
            "created_at": "2026-11-23T10:00:00+00:00", "expires_at": null,
            "revoked_at": null, "last_used_at": null
        })
    }

    #[test]
    fn accepts_documents_auth_pg_writes_and_minimal_ones() {
        assert_eq!(check_document(&json!([])), Ok(()));
        assert_eq!(
            check_document(&json!([key("a", 'a'), key("b", 'b')])),
            Ok(())
        );
        let minimal = json!([{"id": "k", "hash": "0".repeat(64), "name": "n",
                              "created_at": "2026-01-01", "extra": [1, 2]}]);
        assert_eq!(check_document(&minimal), Ok(()));
    }

    #[test]
    fn rejects_broken_documents_naming_element_and_field() {
        let with = |field: &str, value: Value| {
            let mut k = key("a", 'a');
            k[field] = value;
            json!([key("z", 'f'), k])
        };
        let without = |field: &str| {
            let mut k = key("a", 'a');
            k.as_object_mut().expect("object").remove(field);
            json!([key("z", 'f'), k])
        };
        let invalid = |field, expected| DocumentError::Invalid {
            index: 1,
            field,
            expected,
        };
        let cases = [
            (json!({"keys": []}), DocumentError::NotAnArray),
            (json!("[]"), DocumentError::NotAnArray),
            (
                json!([key("z", 'f'), 42]),
                DocumentError::NotAnObject { index: 1 },
            ),
            (
                without("id"),
                DocumentError::Missing {
                    index: 1,
                    field: "id",
                },
            ),
            (
                with("hash", Value::Null),
                DocumentError::Missing {
                    index: 1,
                    field: "hash",
                },
            ),
            (
                without("created_at"),
                DocumentError::Missing {
                    index: 1,
                    field: "created_at",
                },
            ),
            (with("id", json!("")), invalid("id", "a non-empty string")),
            (
                with("name", json!(7)),
                invalid("name", "a non-empty string"),
            ),
            (
                with("hash", json!("abc")),
                invalid("hash", "64 hexadecimal digits"),
            ),
            (
                with("hash", json!("g".repeat(64))),
                invalid("hash", "64 hexadecimal digits"),
            ),
            (
                with("scopes", json!("read")),
                invalid("scopes", "an array of non-empty strings"),
            ),
            (
                with("scopes", json!(["read", ""])),
                invalid("scopes", "an array of non-empty strings"),
            ),
            (
                with("metadata", json!([1])),
                invalid("metadata", "an object or null"),
            ),
            (
                with("replaced_by", json!("")),
                invalid("replaced_by", "a non-empty string or null"),
            ),
            (
                with("expires_at", json!(1_700_000_000)),
                invalid("expires_at", "a string or null"),
            ),
            (
                with("created_at", json!(true)),
                invalid("created_at", "a timestamp string"),
            ),
            (
                json!([key("a", 'a'), key("a", 'b')]),
                DocumentError::DuplicateId { index: 1 },
            ),
            (
                json!([key("a", 'a'), key("b", 'a')]),
                DocumentError::DuplicateHash { index: 1 },
            ),
        ];
        for (document, expected) in cases {
            assert_eq!(
                check_document(&document),
                Err(expected.clone()),
                "{document}"
            );
        }
    }

    #[test]
    fn errors_never_quote_values() {
        let mut k = key("a", 'a');
        k["hash"] = json!("secret-looking-value");
        let err = check_document(&json!([k])).expect_err("bad hash");
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}
