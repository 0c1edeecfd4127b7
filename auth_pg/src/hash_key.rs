//! The server-side key for credential hashes, and hashing with it.
//!
//! The key lives in a file, named by the setting `auth_pg.hash_key_file`, that only the server's
//! operating-system user can read (like `ssl_key_file`). It is never a setting's value: a value
//! written in `postgresql.conf` is readable by every role through `SHOW` in any backend that has
//! not loaded the library yet, where it is only a placeholder. A path is not a secret; the
//! file's contents never reach SQL, an error message or a log line.
//!
//! Each backend reads the file the first time it hashes a credential, and again after each
//! configuration reload that sets `auth_pg.hash_key_file` (`pg_reload_conf()`), whether the
//! path changed or the file was rewritten in place. A file that cannot be used is an ERROR,
//! never a silent fall back to unkeyed hashes.

use std::cell::{Cell, RefCell};
use std::ffi::CStr;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;

use auth_core::hash::HASH_LEN;
use auth_core::{HashKey, credential_hash};

use crate::error::AuthPgError;
use crate::gucs;

/// A key file is 64 hexadecimal digits and a newline; anything much larger is a mistake.
const MAX_KEY_FILE_BYTES: u64 = 4096;

thread_local! {
    /// The key read from the file, until the setting is assigned again.
    static LOADED: RefCell<Option<HashKey>> = const { RefCell::new(None) };
    /// Raised whenever the setting is assigned (at load and at every configuration reload,
    /// whether its value changed or not): the key must be read again before the next hash.
    static STALE: Cell<bool> = const { Cell::new(false) };
}

/// Makes the next hash read the key file again. Called by the setting's assign hook, which
/// must not fail, so it only raises a flag.
pub(crate) fn forget_loaded_key() {
    STALE.set(true);
}

/// The stored form of `credential`: BLAKE3, keyed when `auth_pg.hash_key_file` is set.
pub(crate) fn hash_credential(credential: &[u8]) -> [u8; HASH_LEN] {
    let hashed = gucs::with_hash_key_file(|path| match path {
        None => Ok(credential_hash(None, credential)),
        Some(path) => LOADED.with(|loaded| {
            let mut loaded = loaded.borrow_mut();
            // Every change of the path goes through the assign hook, so the flag covers it.
            if STALE.replace(false) || loaded.is_none() {
                *loaded = None;
                *loaded = Some(load(path)?);
            }
            Ok(credential_hash(loaded.as_ref(), credential))
        }),
    });
    hashed.unwrap_or_else(|err: AuthPgError| err.raise("auth_pg hash key"))
}

/// Reads and checks the key file at `path`.
fn load(path: &CStr) -> Result<HashKey, AuthPgError> {
    let fail = |reason: &str| AuthPgError::HashKey {
        reason: reason.to_owned(),
    };
    let path = path
        .to_str()
        .map_err(|_| fail("the path is not valid UTF-8"))?;
    let metadata = std::fs::metadata(path).map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound => fail("the file does not exist"),
        std::io::ErrorKind::PermissionDenied => fail("the file is not readable by the server"),
        _ => fail("the file cannot be examined"),
    })?;
    if !metadata.is_file() {
        return Err(fail("it is not a regular file"));
    }
    if metadata.permissions().mode() & 0o077 != 0 {
        return Err(fail("the file has group or world access"));
    }
    if metadata.len() > MAX_KEY_FILE_BYTES {
        return Err(fail("the file is too large to hold a key"));
    }
    let mut contents = String::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_KEY_FILE_BYTES).read_to_string(&mut contents))
        .map_err(|_| fail("the file cannot be read as text"))?;
    HashKey::from_hex(&contents).map_err(|err| fail(&err.to_string()))
}
