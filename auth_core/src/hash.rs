//! Hashing credentials for storage and lookup.
//!
//! Only `BLAKE3(credential)` is stored, keyed with the server's hash key when one is configured.
//! A credential carries 256 random bits, so a stored hash cannot be reversed or guessed; the key
//! adds that a copy of the database alone (a backup, a replica's disk, an injection that reads
//! a table) is not enough to check a candidate credential offline.

use std::fmt;

/// Length of a stored credential hash, in bytes.
pub const HASH_LEN: usize = blake3::OUT_LEN;
/// Length of a hash key, in bytes.
pub const KEY_LEN: usize = blake3::KEY_LEN;

/// The server-side secret that keys credential hashes.
///
/// `Debug` never shows the key. Two keys compare equal in constant time.
#[derive(Clone)]
pub struct HashKey([u8; KEY_LEN]);

/// Why the contents of a hash key file are not a key. Never carries any part of the contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    /// The file is empty, or holds only white space.
    #[error("the hash key file is empty")]
    Empty,
    /// The file has characters other than hexadecimal digits and surrounding white space.
    #[error("the hash key file must hold hexadecimal digits only")]
    NotHex,
    /// The file has the wrong number of hexadecimal digits.
    #[error("the hash key file holds {digits} hexadecimal digits; a key is exactly 64 (32 bytes)")]
    WrongLength {
        /// How many digits it held.
        digits: usize,
    },
}

impl HashKey {
    /// A key from its 32 bytes.
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// Parses a key file's contents: 64 hexadecimal digits (as printed by
    /// `openssl rand -hex 32`), with optional white space around them.
    pub fn from_hex(contents: &str) -> Result<Self, KeyFormatError> {
        let digits = contents.trim();
        if digits.is_empty() {
            return Err(KeyFormatError::Empty);
        }
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(KeyFormatError::NotHex);
        }
        if digits.len() != KEY_LEN * 2 {
            return Err(KeyFormatError::WrongLength {
                digits: digits.len(),
            });
        }
        let mut key = [0u8; KEY_LEN];
        for (byte, pair) in key.iter_mut().zip(digits.as_bytes().chunks_exact(2)) {
            *byte = (hex_value(pair[0]) << 4) | hex_value(pair[1]);
        }
        Ok(Self(key))
    }

    /// A short, non-secret fingerprint of the key (the first 8 bytes of its BLAKE3 hash, in
    /// hex), so that operators can tell which key a server uses without seeing it.
    pub fn fingerprint(&self) -> String {
        let digest = blake3::derive_key("auth_pg 2026 hash key fingerprint", &self.0);
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl PartialEq for HashKey {
    fn eq(&self, other: &Self) -> bool {
        blake3::Hash::from(self.0) == blake3::Hash::from(other.0)
    }
}

impl Eq for HashKey {}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SECURITY: the key itself is never formatted.
        f.write_str("HashKey(<redacted>)")
    }
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        b'A'..=b'F' => digit - b'A' + 10,
        _ => unreachable!("checked by is_ascii_hexdigit"),
    }
}

/// The stored form of `credential`: its BLAKE3 hash, keyed with `key` when there is one.
pub fn credential_hash(key: Option<&HashKey>, credential: &[u8]) -> [u8; HASH_LEN] {
    let hash = match key {
        Some(key) => blake3::keyed_hash(&key.0, credential),
        None => blake3::hash(credential),
    };
    *hash.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn parses_hex_keys_with_surrounding_white_space() {
        let key = HashKey::from_hex(&format!("  {HEX}\n")).expect("valid key");
        let expected: [u8; KEY_LEN] = std::array::from_fn(|i| i as u8);
        assert_eq!(key, HashKey::from_bytes(expected));
        assert_eq!(HashKey::from_hex(&HEX.to_uppercase()), Ok(key));
    }

    #[test]
    fn rejects_bad_key_files_without_quoting_them() {
        let cases = [
            ("", KeyFormatError::Empty),
            (" \n\t", KeyFormatError::Empty),
            ("zz", KeyFormatError::NotHex),
            (&HEX[..62], KeyFormatError::WrongLength { digits: 62 }),
            ("00 11", KeyFormatError::NotHex),
        ];
        for (contents, expected) in cases {
            let err = HashKey::from_hex(contents).expect_err("invalid key");
            assert_eq!(err, expected);
            if contents.len() > 4 {
                assert!(!err.to_string().contains(contents));
            }
        }
        let long = format!("{HEX}00");
        assert_eq!(
            HashKey::from_hex(&long),
            Err(KeyFormatError::WrongLength { digits: 66 })
        );
    }

    #[test]
    fn keyed_and_unkeyed_hashes_differ_and_are_stable() {
        let key = HashKey::from_hex(HEX).expect("valid key");
        let other = HashKey::from_bytes([9; KEY_LEN]);
        let credential = b"apgt_example";
        let unkeyed = credential_hash(None, credential);
        assert_eq!(unkeyed, *blake3::hash(credential).as_bytes());
        let keyed = credential_hash(Some(&key), credential);
        assert_ne!(keyed, unkeyed);
        assert_ne!(keyed, credential_hash(Some(&other), credential));
        assert_eq!(keyed, credential_hash(Some(&key), credential));
    }

    #[test]
    fn debug_and_fingerprint_hide_the_key() {
        let key = HashKey::from_hex(HEX).expect("valid key");
        assert_eq!(format!("{key:?}"), "HashKey(<redacted>)");
        let fingerprint = key.fingerprint();
        assert_eq!(fingerprint.len(), 16);
        assert!(!HEX.contains(&fingerprint));
        assert_ne!(fingerprint, HashKey::from_bytes([9; KEY_LEN]).fingerprint());
    }
}
